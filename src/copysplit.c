/*
 * copysplit.c - splits the data of COPY table FROM STDIN (text and csv) into
 * rows, reads each row's shard key columns, and appends the row's raw bytes,
 * unchanged and with its line end, to the output buffer of the shard that
 * owns it.
 *
 * Rows are found the way PostgreSQL 15's CopyReadLineText() finds them:
 * text format: a backslash takes the next byte with it (so "\<newline>" is
 * data), "\." followed by a line end ends the data (what stood before it on
 * that line is the last row); csv: line ends inside quotes are data, the
 * quote toggles (with a distinct escape char, escape+quote is a literal
 * quote), "\." alone on a line ends the data. The line end is "\n", "\r\n"
 * or "\r", decided by the first line as PostgreSQL does. Key fields are
 * split and de-escaped the way CopyReadAttributesText/CSV do: \N (the NULL
 * string, compared on the raw field) is NULL; in csv an unquoted field equal
 * to the NULL string (default empty) is NULL, a quoted one never is, unless
 * FORCE_NOT_NULL / FORCE_NULL name the key column (NextCopyFrom).
 *
 * Invariants: only the incomplete tail of the last row is kept between feeds
 * (its scan state with it, so a long row is scanned once, not once per
 * feed); buffers are reused, so the hot path does not allocate once they
 * have grown. A row is forwarded whole or not at all.
 *
 * Binary format (FORMAT binary, as asyncpg's copy_records_to_table and
 * pgx's CopyFrom send): the header goes to every shard, each tuple (a field
 * count, then each field's length and bytes) whole to its key's shard, the
 * trailer to every shard. A key is read from its column's binary send format.
 *
 * Deliberately not done here: checking what only the shard can check
 * (column counts beyond the key, types, encodings, mixed line end styles:
 * the shard that receives the row reports those, as PostgreSQL would),
 * and the CopyData framing (the caller wraps out[shard] into CopyData
 * messages).
 */
#include "copysplit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL refuses a line longer than this (MaxAllocSize); so do we. */
#define MAX_ROW ((size_t)0x3fffffff)

enum eol { EOL_UNKNOWN = 0, EOL_NL, EOL_CRNL, EOL_CR };

/* Scanner states between two bytes of one line. */
enum st {
	ST_NORMAL = 0,
	ST_ESC,	     /* text: after a backslash */
	ST_CR,	     /* after an unquoted \r: is it \r\n, or a line end of its own? */
	ST_BS_START, /* csv: the line began with a backslash */
	ST_BSDOT,    /* after the end marker "\." */
	ST_BSDOT_CR  /* after "\.\r" in \r\n mode */
};

enum scan { SCAN_MORE, SCAN_ROW, SCAN_EOD, SCAN_ERR };

struct sp_copysplit {
	bool csv;
	bool binary;
	bool bin_header_done;
	bool bin_trailer_seen;
	sp_key_type_t *key_types; /* binary only */
	char delim, quote, escape;
	char *null_str;
	size_t null_len;
	bool header_pending;
	uint32_t force_not_null, force_null; /* csv, bit k = key k */

	int *key_cols;
	int n_keys;
	int max_key;
	sp_copy_shard_fn shard_of;
	void *arg;
	int n_shards;

	/* the current, incomplete line */
	sp_buf_t pend;
	size_t pos; /* bytes of the current line scanned so far */
	enum st st;
	bool in_quote, last_was_esc;
	size_t marker_at; /* offset of the end marker's backslash in the line */
	size_t eol_len;	  /* bytes of the line end that closed the line (0, 1 or 2) */
	enum eol eol;
	bool eod; /* end marker seen: everything after it is ignored */

	uint64_t rows; /* data rows forwarded */
	uint64_t line; /* data lines read, for messages (the header is not counted) */

	sp_buf_t keys; /* de-escaped key values, NUL-terminated, back to back */
	size_t *key_off, *key_len;
	bool *key_null;
	const char **key_text;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

sp_copysplit_t *sp_copysplit_new(const sp_copy_opts_t *opts, const int *key_cols, int n_keys,
				 sp_copy_shard_fn shard_of, void *arg, int n_shards)
{
	if (!opts || n_keys <= 0 || !key_cols || !shard_of || n_shards <= 0)
		return NULL;
	sp_copysplit_t *cs = calloc(1, sizeof *cs);
	if (!cs)
		return NULL;
	cs->csv = opts->format == SP_CSPLIT_CSV;
	cs->binary = opts->format == SP_CSPLIT_BINARY;
	if (cs->binary) {
		cs->key_types = malloc((size_t)n_keys * sizeof *cs->key_types);
		if (!cs->key_types || !opts->key_types) {
			free(cs->key_types);
			free(cs);
			return NULL;
		}
		memcpy(cs->key_types, opts->key_types, (size_t)n_keys * sizeof *cs->key_types);
	}
	cs->delim = opts->delimiter ? opts->delimiter : (cs->csv ? ',' : '\t');
	cs->quote = opts->quote ? opts->quote : '"';
	cs->escape = opts->escape ? opts->escape : cs->quote;
	const char *ns = opts->null_str ? opts->null_str : (cs->csv ? "" : "\\N");
	cs->null_str = strdup(ns);
	cs->null_len = strlen(ns);
	cs->header_pending = opts->header;
	if (cs->csv) {
		cs->force_not_null = opts->force_not_null;
		cs->force_null = opts->force_null;
	}
	cs->key_cols = malloc((size_t)n_keys * sizeof *cs->key_cols);
	cs->key_off = malloc((size_t)n_keys * sizeof *cs->key_off);
	cs->key_len = malloc((size_t)n_keys * sizeof *cs->key_len);
	cs->key_null = malloc((size_t)n_keys * sizeof *cs->key_null);
	cs->key_text = malloc((size_t)n_keys * sizeof *cs->key_text);
	if (!cs->null_str || !cs->key_cols || !cs->key_off || !cs->key_len || !cs->key_null ||
	    !cs->key_text) {
		sp_copysplit_free(cs);
		return NULL;
	}
	cs->max_key = -1;
	for (int k = 0; k < n_keys; k++) {
		if (key_cols[k] < 0) {
			sp_copysplit_free(cs);
			return NULL;
		}
		cs->key_cols[k] = key_cols[k];
		if (key_cols[k] > cs->max_key)
			cs->max_key = key_cols[k];
	}
	cs->n_keys = n_keys;
	cs->shard_of = shard_of;
	cs->arg = arg;
	cs->n_shards = n_shards;
	return cs;
}

void sp_copysplit_free(sp_copysplit_t *cs)
{
	if (!cs)
		return;
	free(cs->null_str);
	free(cs->key_types);
	free(cs->key_cols);
	free(cs->key_off);
	free(cs->key_len);
	free(cs->key_null);
	free(cs->key_text);
	sp_buf_free(&cs->pend);
	sp_buf_free(&cs->keys);
	free(cs);
}

uint64_t sp_copysplit_rows(const sp_copysplit_t *cs)
{
	return cs->rows;
}

/* ------------------------------------------------------------------ finding line ends */

/*
 * Scan p[0..n) as the continuation of the current line. SCAN_ROW / SCAN_EOD:
 * *used bytes of p complete the line (for a lone \r that can be 0 more than
 * were looked at: the byte after it starts the next line). SCAN_MORE: all
 * of p belongs to the line, which goes on.
 */
static enum scan scan_line(sp_copysplit_t *cs, const uint8_t *p, size_t n, size_t *used, char *err,
			   size_t errlen)
{
	/* as PostgreSQL: with quote == escape the escape plays no part in finding line ends */
	int escapec = cs->escape == cs->quote ? -1 : (uint8_t)cs->escape;
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];
		switch (cs->st) {
		case ST_CR:
			cs->st = ST_NORMAL;
			if (c == '\n') {
				if (cs->eol == EOL_UNKNOWN)
					cs->eol = EOL_CRNL;
				cs->eol_len = 2;
				*used = i + 1;
				return SCAN_ROW;
			}
			if (cs->eol == EOL_UNKNOWN || cs->eol == EOL_CR) {
				cs->eol = EOL_CR;
				cs->eol_len = 1;
				*used = i; /* the line ended at the \r; c starts the next */
				return SCAN_ROW;
			}
			/* a lone \r in \r\n mode: data here, the shard will reject it */
			continue;
		case ST_BSDOT:
			if (c == '\n') {
				*used = i + 1;
				return SCAN_EOD;
			}
			if (c == '\r') {
				if (cs->eol == EOL_CRNL) {
					cs->st = ST_BSDOT_CR;
					i++;
					cs->pos++;
					continue;
				}
				*used = i + 1;
				return SCAN_EOD;
			}
			if (!cs->csv) {
				set_err(err, errlen, "end-of-copy marker corrupt");
				return SCAN_ERR;
			}
			cs->st = ST_NORMAL; /* csv: "\.x" is data */
			continue;
		case ST_BSDOT_CR:
			if (c == '\n') {
				*used = i + 1;
				return SCAN_EOD;
			}
			if (!cs->csv) {
				set_err(err, errlen, "end-of-copy marker corrupt");
				return SCAN_ERR;
			}
			cs->st = ST_NORMAL;
			continue;
		case ST_ESC:
			cs->st = ST_NORMAL;
			if (c == '.') {
				cs->st = ST_BSDOT;
				cs->marker_at = cs->pos - 1;
			}
			/* anything else after a backslash is data, a line end too */
			i++;
			cs->pos++;
			continue;
		case ST_BS_START:
			cs->st = ST_NORMAL;
			if (c == '.') {
				cs->st = ST_BSDOT;
				cs->marker_at = 0;
				i++;
				cs->pos++;
				continue;
			}
			continue;
		case ST_NORMAL:
			break;
		}

		if (cs->csv) {
			if (cs->in_quote && c == escapec)
				cs->last_was_esc = !cs->last_was_esc;
			if (c == (uint8_t)cs->quote && !cs->last_was_esc)
				cs->in_quote = !cs->in_quote;
			if (c != escapec)
				cs->last_was_esc = false;
		}
		if (!cs->csv || !cs->in_quote) {
			if (c == '\n' && cs->eol != EOL_CR) {
				if (cs->eol == EOL_UNKNOWN)
					cs->eol = EOL_NL;
				cs->eol_len = 1;
				*used = i + 1;
				return SCAN_ROW;
			}
			if (c == '\r' && cs->eol != EOL_NL) {
				if (cs->eol == EOL_CR) {
					cs->eol_len = 1;
					*used = i + 1;
					return SCAN_ROW;
				}
				cs->st = ST_CR;
			} else if (c == '\\') {
				if (!cs->csv)
					cs->st = ST_ESC;
				else if (cs->pos == 0)
					cs->st = ST_BS_START;
			}
		}
		i++;
		cs->pos++;
	}
	*used = n;
	return SCAN_MORE;
}

/* ------------------------------------------------------------------ one row */

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* CopyReadAttributesText's de-escaping of one raw field, appended to b. */
static void text_unescape(sp_buf_t *b, const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i++];
		if (c != '\\') {
			sp_buf_append(b, &c, 1);
			continue;
		}
		if (i >= n)
			break; /* a backslash at the very end is dropped, as PostgreSQL does */
		c = s[i++];
		if (c >= '0' && c <= '7') {
			int v = c - '0';
			for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
				v = (v << 3) + (s[i++] - '0');
			c = (uint8_t)(v & 0377);
		} else if (c == 'x' && i < n && hexval(s[i]) >= 0) {
			int v = hexval(s[i++]);
			if (i < n && hexval(s[i]) >= 0)
				v = (v << 4) + hexval(s[i++]);
			c = (uint8_t)v;
		} else {
			switch (c) {
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'n':
				c = '\n';
				break;
			case 'r':
				c = '\r';
				break;
			case 't':
				c = '\t';
				break;
			case 'v':
				c = '\v';
				break;
			default:
				break; /* any other char stands for itself */
			}
		}
		sp_buf_append(b, &c, 1);
	}
}

/* Index of key k for column col, or -1. */
static int key_index(const sp_copysplit_t *cs, int col, int from)
{
	for (int k = from; k < cs->n_keys; k++)
		if (cs->key_cols[k] == col)
			return k;
	return -1;
}

/* The value of column col now ends cs->keys (NUL-terminated) from off on. */
static void store_key(sp_copysplit_t *cs, int col, bool is_null, size_t off)
{
	sp_buf_append(&cs->keys, "", 1);
	for (int k = key_index(cs, col, 0); k >= 0; k = key_index(cs, col, k + 1)) {
		cs->key_null[k] = is_null;
		cs->key_off[k] = off;
		cs->key_len[k] = sp_buf_len(&cs->keys) - 1 - off;
	}
}

/*
 * Read the key fields of one line (without its line end) into cs->keys.
 * Returns the number of fields seen up to the last key (max_key + 1 when
 * all are there).
 */
static int read_keys_text(sp_copysplit_t *cs, const uint8_t *s, size_t n)
{
	int col = 0;
	size_t start = 0, i = 0;
	for (;;) {
		/* find the field's end: an unescaped delimiter or the line's end */
		while (i < n && s[i] != (uint8_t)cs->delim) {
			if (s[i] == '\\' && i + 1 < n)
				i++;
			i++;
		}
		if (key_index(cs, col, 0) >= 0) {
			size_t off = sp_buf_len(&cs->keys);
			bool is_null = i - start == cs->null_len &&
				       memcmp(s + start, cs->null_str, cs->null_len) == 0;
			if (!is_null)
				text_unescape(&cs->keys, s + start, i - start);
			store_key(cs, col, is_null, off);
		}
		if (col == cs->max_key)
			return col + 1;
		if (i >= n)
			return col + 1;
		col++;
		start = ++i;
	}
}

/* CopyReadAttributesCSV for the fields up to the last key; -1: unterminated quote. */
static int read_keys_csv(sp_copysplit_t *cs, const uint8_t *s, size_t n)
{
	int col = 0;
	size_t i = 0;
	uint8_t q = (uint8_t)cs->quote, e = (uint8_t)cs->escape, d = (uint8_t)cs->delim;
	for (;;) {
		bool want = key_index(cs, col, 0) >= 0;
		size_t start = i, off = sp_buf_len(&cs->keys), end;
		bool saw_quote = false, found_delim = false;
		for (;;) {
			/* not in quotes */
			for (;;) {
				end = i;
				if (i >= n)
					goto endfield;
				uint8_t c = s[i++];
				if (c == d) {
					found_delim = true;
					goto endfield;
				}
				if (c == q) {
					saw_quote = true;
					break;
				}
				if (want)
					sp_buf_append(&cs->keys, &c, 1);
			}
			/* in quotes */
			for (;;) {
				end = i;
				if (i >= n)
					return -1;
				uint8_t c = s[i++];
				if (c == e && i < n && (s[i] == e || s[i] == q)) {
					if (want)
						sp_buf_append(&cs->keys, &s[i], 1);
					i++;
					continue;
				}
				if (c == q)
					break;
				if (want)
					sp_buf_append(&cs->keys, &c, 1);
			}
		}
	endfield:
		if (want) {
			bool is_null = !saw_quote && end - start == cs->null_len &&
				       memcmp(s + start, cs->null_str, cs->null_len) == 0;
			/* NextCopyFrom: FORCE_NOT_NULL makes it the NULL string itself (the raw
			 * bytes kept), FORCE_NULL makes a (quoted) value equal to it NULL */
			int k0 = key_index(cs, col, 0);
			uint32_t bit = k0 < 32 ? (uint32_t)1 << k0 : 0;
			if (is_null && (cs->force_not_null & bit))
				is_null = false;
			else if (!is_null && (cs->force_null & bit) &&
				 sp_buf_len(&cs->keys) - off == cs->null_len &&
				 (cs->null_len == 0 || /* an empty buffer may have no memory at all */
				  memcmp(cs->keys.data + cs->keys.start + off, cs->null_str, cs->null_len) == 0))
				is_null = true;
			if (is_null)
				cs->keys.end = cs->keys.start + off;
			store_key(cs, col, is_null, off);
		}
		if (col == cs->max_key || !found_delim)
			return col + 1;
		col++;
	}
}

/*
 * A complete line: raw is what is forwarded, content the part that holds
 * the fields (no line end, no end marker).
 */
static bool route_row(sp_copysplit_t *cs, const uint8_t *raw, size_t raw_len, size_t content_len,
		      sp_buf_t *out, char *err, size_t errlen)
{
	if (cs->header_pending) {
		/* Every shard runs the COPY with the same HEADER option, so each gets
		 * the header line (HEADER MATCH checks it there). */
		cs->header_pending = false;
		for (int i = 0; i < cs->n_shards; i++)
			sp_buf_append(&out[i], raw, raw_len);
		return true;
	}
	cs->line++;
	sp_buf_reset(&cs->keys);
	int got =
	    cs->csv ? read_keys_csv(cs, raw, content_len) : read_keys_text(cs, raw, content_len);
	if (got < 0) {
		set_err(err, errlen, "row %llu: unterminated CSV quoted field",
			(unsigned long long)cs->line);
		return false;
	}
	if (got <= cs->max_key) {
		set_err(err, errlen, "row %llu: missing data for shard key column %d",
			(unsigned long long)cs->line, cs->max_key + 1);
		return false;
	}
	for (int k = 0; k < cs->n_keys; k++) {
		const char *t = (const char *)cs->keys.data + cs->keys.start + cs->key_off[k];
		/* a zero byte (\0, \x00) in a key: PostgreSQL rejects it for any text type */
		if (!cs->key_null[k] && memchr(t, 0, cs->key_len[k])) {
			set_err(err, errlen, "row %llu: shard key column %d contains a zero byte",
				(unsigned long long)cs->line, cs->key_cols[k] + 1);
			return false;
		}
		cs->key_text[k] = cs->key_null[k] ? "" : t;
	}
	char why[200] = "";
	int shard = cs->shard_of(cs->arg, cs->key_text, cs->key_null, cs->n_keys, why, sizeof why);
	if (shard < 0 || shard >= cs->n_shards) {
		set_err(err, errlen, "row %llu: %s", (unsigned long long)cs->line,
			why[0] ? why : "no shard for this key");
		return false;
	}
	if (!sp_buf_append(&out[shard], raw, raw_len)) {
		set_err(err, errlen, "row %llu: out of memory", (unsigned long long)cs->line);
		return false;
	}
	cs->rows++;
	return true;
}

/* The current line is complete: raw bytes, and whether it ended with the end marker. */
static bool line_done(sp_copysplit_t *cs, const uint8_t *raw, size_t len, bool eod, sp_buf_t *out,
		      char *err, size_t errlen)
{
	size_t content = len;
	bool ok = true;
	if (eod) {
		content = cs->marker_at;
		/* "\." alone ends the data; "abc\." is the row abc, then the end */
		if (content > 0)
			ok = route_row(cs, raw, len, content, out, err, errlen);
		cs->eod = true;
	} else {
		content = len - cs->eol_len;
		ok = route_row(cs, raw, len, content, out, err, errlen);
	}
	cs->pos = 0;
	cs->eol_len = 0;
	cs->st = ST_NORMAL;
	cs->in_quote = cs->last_was_esc = false;
	return ok;
}

/* ------------------------------------------------------------------ binary format */

/* "PGCOPY\n\377\r\n\0", then flags and the header extension's length */
static const uint8_t bin_signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
#define BIN_HEADER_FIXED 19

static uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* One key field's bytes as the text shard_of reads, appended to cs->keys. */
static bool bin_key_text(sp_copysplit_t *cs, int k, const uint8_t *v, uint32_t n, char *why,
			 size_t whylen)
{
	char tmp[40];
	size_t off = sp_buf_len(&cs->keys);
	switch (cs->key_types[k]) {
	case SP_KEY_SMALLINT:
	case SP_KEY_INTEGER:
	case SP_KEY_BIGINT: {
		/* the column's own width: equal int2, int4 and int8 values hash alike */
		int64_t x;
		if (n == 2)
			x = (int16_t)(uint16_t)((v[0] << 8) | v[1]);
		else if (n == 4)
			x = (int32_t)be32(v);
		else if (n == 8)
			x = (int64_t)(((uint64_t)be32(v) << 32) | be32(v + 4));
		else {
			set_err(
			    why, whylen,
			    "shard key column %d has a binary value of %u bytes, not an integer",
			    cs->key_cols[k] + 1, n);
			return false;
		}
		snprintf(tmp, sizeof tmp, "%lld", (long long)x);
		sp_buf_append(&cs->keys, tmp, strlen(tmp));
		break;
	}
	case SP_KEY_UUID:
		if (n != 16) {
			set_err(why, whylen,
				"shard key column %d has a binary value of %u bytes, not a uuid",
				cs->key_cols[k] + 1, n);
			return false;
		}
		for (int i = 0, o = 0; i < 16; i++) {
			static const char hex[] = "0123456789abcdef";
			if (i == 4 || i == 6 || i == 8 || i == 10)
				tmp[o++] = '-';
			tmp[o++] = hex[v[i] >> 4];
			tmp[o++] = hex[v[i] & 15];
			tmp[o] = 0;
		}
		sp_buf_append(&cs->keys, tmp, 36);
		break;
	default:
		if (memchr(v, 0, n)) {
			set_err(why, whylen, "shard key column %d contains a zero byte",
				cs->key_cols[k] + 1);
			return false;
		}
		sp_buf_append(&cs->keys, v, n);
		break;
	}
	sp_buf_append(&cs->keys, "", 1);
	cs->key_off[k] = off;
	cs->key_len[k] = sp_buf_len(&cs->keys) - 1 - off;
	cs->key_null[k] = false;
	return true;
}

/*
 * One step over p[0..n): the header, a tuple or the trailer. Returns the bytes it
 * took, 0 when p holds only part of it (more data needed), -1 on an error.
 */
static long bin_step(sp_copysplit_t *cs, const uint8_t *p, size_t n, sp_buf_t *out, char *err,
		     size_t errlen)
{
	if (!cs->bin_header_done) {
		if (n < BIN_HEADER_FIXED)
			return 0;
		if (memcmp(p, bin_signature, sizeof bin_signature) != 0) {
			set_err(err, errlen, "COPY file signature not recognized");
			return -1;
		}
		uint32_t ext = be32(p + 15);
		if (ext > MAX_ROW) {
			set_err(err, errlen, "invalid COPY file header (wrong length)");
			return -1;
		}
		if (n - BIN_HEADER_FIXED < ext)
			return 0;
		for (int i = 0; i < cs->n_shards; i++)
			sp_buf_append(&out[i], p, BIN_HEADER_FIXED + ext);
		cs->bin_header_done = true;
		return (long)(BIN_HEADER_FIXED + ext);
	}
	if (n < 2)
		return 0;
	int16_t nf = (int16_t)(uint16_t)((p[0] << 8) | p[1]);
	if (nf == -1) {
		for (int i = 0; i < cs->n_shards; i++)
			sp_buf_append(&out[i], p, 2);
		cs->bin_trailer_seen = true;
		cs->eod = true;
		return 2;
	}
	if (nf < 0 || nf <= cs->max_key) {
		set_err(err, errlen, "row %llu: %d fields, the shard key is field %d",
			(unsigned long long)cs->line + 1, nf < 0 ? 0 : nf, cs->max_key + 1);
		return -1;
	}
	size_t pos = 2;
	sp_buf_reset(&cs->keys);
	for (int col = 0; col < nf; col++) {
		if (n - pos < 4)
			return 0;
		uint32_t fl = be32(p + pos);
		pos += 4;
		if (fl == 0xffffffffu) {
			for (int k = key_index(cs, col, 0); k >= 0; k = key_index(cs, col, k + 1))
				cs->key_null[k] = true;
			continue;
		}
		if (fl > MAX_ROW) {
			set_err(err, errlen, "row %llu: invalid field size",
				(unsigned long long)cs->line + 1);
			return -1;
		}
		if (n - pos < fl)
			return 0;
		for (int k = key_index(cs, col, 0); k >= 0; k = key_index(cs, col, k + 1)) {
			char why[160];
			if (!bin_key_text(cs, k, p + pos, fl, why, sizeof why)) {
				set_err(err, errlen, "row %llu: %s",
					(unsigned long long)cs->line + 1, why);
				return -1;
			}
		}
		pos += fl;
		if (pos > MAX_ROW) {
			set_err(err, errlen, "row %llu: longer than %zu bytes",
				(unsigned long long)cs->line + 1, MAX_ROW);
			return -1;
		}
	}
	cs->line++;
	for (int k = 0; k < cs->n_keys; k++)
		cs->key_text[k] =
		    cs->key_null[k] ? ""
				    : (const char *)cs->keys.data + cs->keys.start + cs->key_off[k];
	char why[200] = "";
	int shard = cs->shard_of(cs->arg, cs->key_text, cs->key_null, cs->n_keys, why, sizeof why);
	if (shard < 0 || shard >= cs->n_shards) {
		set_err(err, errlen, "row %llu: %s", (unsigned long long)cs->line,
			why[0] ? why : "no shard for this key");
		return -1;
	}
	if (!sp_buf_append(&out[shard], p, pos)) {
		set_err(err, errlen, "row %llu: out of memory", (unsigned long long)cs->line);
		return -1;
	}
	cs->rows++;
	return (long)pos;
}

/* Complete steps are taken from data itself; only an incomplete tail is kept (pend). */
static bool bin_feed(sp_copysplit_t *cs, const uint8_t *data, size_t len, sp_buf_t *out, char *err,
		     size_t errlen)
{
	const uint8_t *p = data;
	size_t n = len, used = 0;
	bool from_pend = sp_buf_len(&cs->pend) > 0;
	if (cs->eod && len > 0)
		goto after_trailer;
	if (from_pend) {
		if (!sp_buf_append(&cs->pend, data, len)) {
			set_err(err, errlen, "out of memory");
			return false;
		}
		p = sp_buf_head(&cs->pend);
		n = sp_buf_len(&cs->pend);
	}
	while (!cs->eod && used < n) {
		long r = bin_step(cs, p + used, n - used, out, err, errlen);
		if (r < 0)
			return false;
		if (r == 0)
			break;
		used += (size_t)r;
	}
	if (cs->eod && used < n)
		goto after_trailer;
	if (from_pend) {
		sp_buf_consume(&cs->pend, used);
	} else if (used < n && !sp_buf_append(&cs->pend, p + used, n - used)) {
		set_err(err, errlen, "out of memory");
		return false;
	}
	return true;
after_trailer:
	set_err(err, errlen, "received copy data after EOF marker");
	return false;
}

bool sp_copysplit_feed(sp_copysplit_t *cs, const uint8_t *data, size_t len, sp_buf_t *out,
		       char *err, size_t errlen)
{
	size_t i = 0;
	if (cs->binary)
		return bin_feed(cs, data, len, out, err, errlen);
	while (i < len && !cs->eod) {
		size_t used;
		enum scan r = scan_line(cs, data + i, len - i, &used, err, errlen);
		if (r == SCAN_ERR) {
			char tmp[160];
			snprintf(tmp, sizeof tmp, "%s", err ? err : "");
			set_err(err, errlen, "row %llu: %s", (unsigned long long)cs->line + 1, tmp);
			return false;
		}
		if (sp_buf_len(&cs->pend) + used > MAX_ROW) {
			set_err(err, errlen, "row %llu: longer than %zu bytes",
				(unsigned long long)cs->line + 1, MAX_ROW);
			return false;
		}
		if (r == SCAN_MORE) {
			if (!sp_buf_append(&cs->pend, data + i, used)) {
				set_err(err, errlen, "out of memory");
				return false;
			}
			return true;
		}
		bool ok;
		if (sp_buf_len(&cs->pend) == 0) {
			/* the whole line is in this feed: no copy */
			ok = line_done(cs, data + i, used, r == SCAN_EOD, out, err, errlen);
		} else {
			if (!sp_buf_append(&cs->pend, data + i, used)) {
				set_err(err, errlen, "out of memory");
				return false;
			}
			ok = line_done(cs, sp_buf_head(&cs->pend), sp_buf_len(&cs->pend),
				       r == SCAN_EOD, out, err, errlen);
			sp_buf_reset(&cs->pend);
		}
		if (!ok)
			return false;
		i += used;
	}
	return true; /* after the end marker PostgreSQL ignores the rest too */
}

bool sp_copysplit_finish(sp_copysplit_t *cs, sp_buf_t *out, char *err, size_t errlen)
{
	if (cs->binary && !cs->eod && (sp_buf_len(&cs->pend) > 0 || !cs->bin_header_done)) {
		/* PostgreSQL: the data ended inside the header or a tuple */
		set_err(err, errlen, "unexpected EOF in COPY data");
		return false;
	}
	if (cs->binary)
		return true; /* no trailer: each shard reports it as PostgreSQL does */
	if (cs->eod || sp_buf_len(&cs->pend) == 0)
		return true;
	const uint8_t *raw = sp_buf_head(&cs->pend);
	size_t len = sp_buf_len(&cs->pend);
	bool ok = true;

	switch (cs->st) {
	case ST_BSDOT:
	case ST_BSDOT_CR:
		if (!cs->csv) {
			/* "\." must be followed by a line end (PostgreSQL 15: "end-of-copy marker
			 * corrupt") */
			set_err(err, errlen, "row %llu: end-of-copy marker corrupt",
				(unsigned long long)cs->line + 1);
			ok = false;
			break;
		}
		/* csv: "\." at the very end without a line end is data */
		ok = line_done(cs, raw, len, false, out, err, errlen);
		break;
	case ST_CR:
		cs->eol_len = 1; /* a \r as the very last byte ends the last line */
		ok = line_done(cs, raw, len, false, out, err, errlen);
		break;
	default:
		if (cs->csv && cs->in_quote) {
			set_err(err, errlen, "row %llu: unterminated CSV quoted field",
				(unsigned long long)cs->line + 1);
			ok = false;
			break;
		}
		/* the last line may lack its line end */
		ok = line_done(cs, raw, len, false, out, err, errlen);
		break;
	}
	sp_buf_reset(&cs->pend);
	cs->eod = true;
	return ok;
}
