/*
 * merge.c - combines the results of one SELECT that ran on several shards
 * into the one result the client expects.
 *
 * It owns: the choice of the RowDescription sent (the first one that
 * arrives, with hidden columns removed and avg columns retyped), the check
 * that every other shard described the same columns, the three merge modes
 * (concatenation, streaming k-way merge for ORDER BY, grouping for
 * aggregates), LIMIT/OFFSET after merging, the final CommandComplete, and
 * what happens to errors and notices from the shards.
 *
 * Invariants: a row is written to the output only in the order the merged
 * result defines; in a sorted merge a row leaves a shard's queue only when
 * every shard still running has a row queued (or ended), so nothing smaller
 * can arrive later; after the first failure nothing more is written. Values
 * are compared and combined in their text form exactly as PostgreSQL 15
 * prints them (ISO DateStyle, extra_float_digits >= 1), or in binary for
 * columns the client asked in binary (src/binfmt.c); sums, averages and
 * float output reproduce PostgreSQL's text byte for byte (checked against a
 * real server, see test/unit/test_merge.c). Text is ordered as the shards'
 * database orders it: by bytes under C/POSIX, with strcoll_l under another
 * libc collation (sp_merge_set_collation), and not at all (0A000) when the
 * collation is ICU or unknown, unless the query says COLLATE "C".
 *
 * Deliberately not done here: reading sockets, cancelling shards, deciding
 * which queries can be merged (the router does that and hands over a plan),
 * column-level collations (a column declared with its own COLLATE is ordered
 * by the database's collation here), ICU collations.
 */
#include "merge.h"
#include "binfmt.h"

#include "msg.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's numeric.c constants used by select_div_scale(). */
#define NUMERIC_MIN_SIG_DIGITS 16
#define NUMERIC_MAX_DISPLAY_SCALE 1000
#define DEC_DIGITS 4

#define MAX_NOTICES 32

/* How values of a column compare; CMP_BIN_* for binary-format columns. CMP_NONE:
 * a type whose order shardpool does not know (enum, interval, ...): never merged. */
enum cmp_kind {
	CMP_NONE = 0,
	CMP_BYTES,
	CMP_INT,
	CMP_FLOAT,
	CMP_NUMERIC,
	CMP_BPCHAR,
	CMP_DATETIME,
	CMP_BIN_INT, /* big-endian signed: int2/4/8, date, time, timestamp(tz) */
	CMP_BIN_OID,
	CMP_BIN_F4,
	CMP_BIN_F8,
	CMP_BIN_NUMERIC,
	CMP_TEXT_LOCALE,  /* text, varchar: strcoll_l in the database's libc collation */
	CMP_BPCHAR_LOCALE /* the same without trailing blanks */
};

/* How the shards order text: their database's collation, learnt by the health checker. */
enum text_order { TEXT_BYTES = 0, TEXT_LOCALE, TEXT_UNKNOWN };

enum acc_kind { ACC_INT = 1, ACC_DEC, ACC_F4, ACC_F8, ACC_MIN, ACC_MAX };

#define SPECIAL_NAN 1
#define SPECIAL_PINF 2
#define SPECIAL_NINF 4

typedef struct val {
	const uint8_t *p;
	int32_t len; /* -1: NULL */
} val_t;

typedef struct col {
	uint32_t type;	   /* as the shards report it */
	uint32_t out_type; /* what the client is told (differs for avg) */
	int16_t format;
	bool hidden;
	uint8_t cmp; /* enum cmp_kind for out_type */
	int acc;     /* index into the group's accumulators, -1 for a group key */
} col_t;

typedef struct shard {
	bool described, ended, empty;
	sp_buf_t q; /* sorted merge: queued DataRow bodies, each [u32 len][body] */
	uint32_t q_rows;
	int32_t head_off[SP_MERGE_MAX_SORT]; /* sort key values of the queue head, */
	int32_t head_len[SP_MERGE_MAX_SORT]; /* as offsets into its body */
} shard_t;

typedef struct acc {
	uint8_t kind;
	uint8_t special; /* ACC_DEC: SPECIAL_* seen */
	bool null;	 /* no non-NULL input yet */
	bool neg;	 /* ACC_DEC sign */
	uint32_t n, cap; /* ACC_DEC digits or ACC_MIN/MAX value bytes */
	int32_t scale;	 /* ACC_DEC: digits after the point (kept as the max of the inputs) */
	uint8_t *p;	 /* in the arena */
	int64_t i;
	double d;
	float f;
} acc_t;

typedef struct group {
	uint64_t hash;
	uint8_t *key; /* encoded key columns: per column int32 length (-1 NULL) + bytes */
	uint32_t key_len;
	uint8_t *ckey; /* the same in canonical form (see canon_value), or key itself */
	uint32_t ckey_len;
} group_t;

typedef struct chunk {
	struct chunk *next;
	size_t used, cap;
	uint8_t data[];
} chunk_t;

typedef struct notice {
	uint64_t hash;
	char type;
	uint32_t len;
	int *count; /* per shard, points into the same allocation */
	uint8_t *body;
} notice_t;

struct sp_merge {
	sp_merge_plan_t plan;
	int n_shards;
	sp_buf_t *out;
	shard_t *shards;

	bool sorted, agg;
	uint8_t sort_cmp[SP_MERGE_MAX_SORT]; /* enum cmp_kind of each ORDER BY item */
	enum text_order text_order;
	locale_t text_loc; /* TEXT_LOCALE: the collation (owned by the locale cache) */
	char collate[96];  /* why text cannot be ordered, for errors */
	int8_t canon_keys; /* a grouping column needs canon_value: -1 not known yet, 0, 1 */
	int ncols; /* -1 until a RowDescription (or the plan) says */
	col_t *cols;
	val_t *vals; /* scratch: one row's values */
	int n_visible;
	bool rewrite; /* rows must be rebuilt (hidden columns) before they are sent */
	int first_desc_shard;
	bool desc_sent;
	char tag_word[8];
	bool have_tag;

	int64_t skipped, sent;
	bool limit_reached, failed, finished;
	int64_t max_rows; /* the client's Execute row limit (0: none): PortalSuspended at it */
	char error[512];
	char hint[256];
	const char *sqlstate;
	char shard_sqlstate[6];

	notice_t *notices[MAX_NOTICES];
	int n_notices;

	/* aggregates */
	int n_acc;
	group_t *groups;
	acc_t *accs;
	size_t n_groups, cap_groups;
	uint32_t *slots; /* open addressing: group index + 1, 0 empty */
	size_t n_slots;
	chunk_t *arena;
	sp_buf_t keybuf, ckeybuf, operand, scratch, rows;
	sp_buf_t bintext, bintext2; /* binary columns: a value as text, a result as text */
};

/* ------------------------------------------------------------------ small helpers */

static bool fail(sp_merge_t *m, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(sp_merge_t *m, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof m->error, fmt, ap);
	va_end(ap);
	if (!strcmp(sqlstate, SP_SQLSTATE_FEATURE_NOT_SUPPORTED) && m->plan.table[0]) {
		/* as the router's refusals: name the table, say what makes it routable */
		size_t o = strlen(m->error);
		snprintf(m->error + o, sizeof m->error - o,
			 ": the statement reads sharded table %s on several shards", m->plan.table);
		snprintf(m->hint, sizeof m->hint,
			 "Add a condition on %s (key = value), or a /* shard: N */ hint.",
			 m->plan.key[0] ? m->plan.key : m->plan.table);
	}
	m->sqlstate = sqlstate;
	m->failed = true;
	return false;
}

/* A shard sent an aggregate value that does not parse as its type. */
static bool bad_value(sp_merge_t *m, const uint8_t *p, size_t n)
{
	return fail(m, SP_SQLSTATE_INTERNAL, "cannot combine aggregate value \"%.*s\"", (int)(n > 64 ? 64 : n),
		    (const char *)p);
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static void *arena_alloc(sp_merge_t *m, size_t n)
{
	chunk_t *c = m->arena;
	n = (n + 7) & ~(size_t)7;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		c = malloc(sizeof(chunk_t) + cap);
		if (!c)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = m->arena;
		m->arena = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

static bool parse_int64(const uint8_t *p, size_t n, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	uint64_t v = 0;
	if (n > 0 && (p[0] == '-' || p[0] == '+')) {
		neg = p[0] == '-';
		i = 1;
	}
	if (i == n)
		return false;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return false;
		*out = (int64_t)(0 - v);
	} else {
		if (v > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)v;
	}
	return true;
}

static bool parse_double(const uint8_t *p, size_t n, double *out)
{
	char tmp[64], *end;
	if (n == 0 || n >= sizeof tmp)
		return false;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	*out = strtod(tmp, &end);
	return end == tmp + n;
}

static bool parse_float(const uint8_t *p, size_t n, float *out)
{
	char tmp[64], *end;
	if (n == 0 || n >= sizeof tmp)
		return false;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	*out = strtof(tmp, &end);
	return end == tmp + n;
}

/* ------------------------------------------------------------------ numeric text */

/* A numeric (or integer) in PostgreSQL's output form, borrowed from the message. */
typedef struct numtxt {
	int special; /* 0 finite, else SPECIAL_* */
	bool neg;
	const uint8_t *ip; /* integer digits, as written */
	size_t in;
	const uint8_t *fp; /* fraction digits, as written */
	size_t fn;
} numtxt_t;

static bool eq_word(const uint8_t *p, size_t n, const char *w)
{
	return n == strlen(w) && memcmp(p, w, n) == 0;
}

static bool num_parse(const uint8_t *p, size_t n, numtxt_t *o)
{
	size_t i = 0;
	memset(o, 0, sizeof *o);
	if (eq_word(p, n, "NaN")) {
		o->special = SPECIAL_NAN;
		return true;
	}
	if (eq_word(p, n, "Infinity")) {
		o->special = SPECIAL_PINF;
		return true;
	}
	if (eq_word(p, n, "-Infinity")) {
		o->special = SPECIAL_NINF;
		return true;
	}
	if (i < n && (p[i] == '-' || p[i] == '+')) {
		o->neg = p[i] == '-';
		i++;
	}
	o->ip = p + i;
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	o->in = (size_t)(p + i - o->ip);
	o->fp = p + i;
	if (i < n && p[i] == '.') {
		i++;
		o->fp = p + i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		o->fn = (size_t)(p + i - o->fp);
	}
	return i == n && o->in + o->fn > 0;
}

/* NaN sorts above +Infinity, as in PostgreSQL (cmp_numerics). */
static int num_rank(int special)
{
	switch (special) {
	case SPECIAL_NINF:
		return 0;
	case SPECIAL_PINF:
		return 2;
	case SPECIAL_NAN:
		return 3;
	default:
		return 1;
	}
}

static int num_cmp(const numtxt_t *a, const numtxt_t *b)
{
	int ra = num_rank(a->special), rb = num_rank(b->special);
	if (ra != rb || ra != 1)
		return ra < rb ? -1 : ra > rb;

	/* strip leading zeros of the integer part, trailing zeros of the fraction */
	const uint8_t *ai = a->ip, *bi = b->ip;
	size_t an = a->in, bn = b->in, af = a->fn, bf = b->fn;
	while (an > 0 && *ai == '0')
		ai++, an--;
	while (bn > 0 && *bi == '0')
		bi++, bn--;
	while (af > 0 && a->fp[af - 1] == '0')
		af--;
	while (bf > 0 && b->fp[bf - 1] == '0')
		bf--;
	int sa = (an + af == 0) ? 0 : (a->neg ? -1 : 1);
	int sb = (bn + bf == 0) ? 0 : (b->neg ? -1 : 1);
	if (sa != sb)
		return sa < sb ? -1 : 1;
	if (sa == 0)
		return 0;

	int c;
	if (an != bn) {
		c = an < bn ? -1 : 1;
	} else {
		c = memcmp(ai, bi, an);
		if (c == 0) {
			size_t k = af < bf ? af : bf;
			c = memcmp(a->fp, b->fp, k);
			if (c == 0 && af != bf)
				c = af < bf ? -1 : 1;
		}
		c = c < 0 ? -1 : c > 0;
	}
	return sa < 0 ? -c : c;
}

/* ------------------------------------------------------------------ date/time text */

static int64_t days_from_civil(int64_t y, int64_t mo, int64_t d)
{
	/* proleptic Gregorian, astronomical year numbering (1 BC = year 0) */
	y -= mo <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool read_digits(const uint8_t *p, size_t n, size_t *i, size_t min, size_t max, int64_t *v)
{
	size_t start = *i;
	*v = 0;
	while (*i < n && *i - start < max && p[*i] >= '0' && p[*i] <= '9')
		*v = *v * 10 + (p[(*i)++] - '0');
	return *i - start >= min;
}

/*
 * The ISO DateStyle text of a date, timestamp or timestamptz as microseconds
 * since 1970-01-01 UTC (dates: at midnight): "[-]infinity",
 * "YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HH[:MM[:SS]]][ BC]", years of 4 or more
 * digits. Equal instants written with different offsets compare equal.
 */
static bool parse_datetime(const uint8_t *p, size_t n, __int128 *out)
{
	const __int128 big = (__int128)1 << 100;
	size_t i = 0;
	int64_t y, mo, d, h = 0, mi = 0, s = 0, us = 0, off = 0;

	if (eq_word(p, n, "infinity")) {
		*out = big;
		return true;
	}
	if (eq_word(p, n, "-infinity")) {
		*out = -big;
		return true;
	}
	if (!read_digits(p, n, &i, 4, 9, &y) || i >= n || p[i++] != '-' ||
	    !read_digits(p, n, &i, 2, 2, &mo) || i >= n || p[i++] != '-' ||
	    !read_digits(p, n, &i, 2, 2, &d))
		return false;
	if (i + 1 < n && p[i] == ' ' && p[i + 1] >= '0' && p[i + 1] <= '9') {
		i++;
		if (!read_digits(p, n, &i, 2, 2, &h) || i >= n || p[i++] != ':' ||
		    !read_digits(p, n, &i, 2, 2, &mi) || i >= n || p[i++] != ':' ||
		    !read_digits(p, n, &i, 2, 2, &s))
			return false;
		if (i < n && p[i] == '.') {
			size_t start = ++i;
			int64_t frac;
			if (!read_digits(p, n, &i, 1, 6, &frac))
				return false;
			for (size_t k = i - start; k < 6; k++)
				frac *= 10;
			us = frac;
		}
		if (i < n && (p[i] == '+' || p[i] == '-')) {
			int sign = p[i++] == '-' ? -1 : 1;
			int64_t oh, om = 0, os = 0;
			if (!read_digits(p, n, &i, 2, 2, &oh))
				return false;
			if (i < n && p[i] == ':') {
				i++;
				if (!read_digits(p, n, &i, 2, 2, &om))
					return false;
				if (i < n && p[i] == ':') {
					i++;
					if (!read_digits(p, n, &i, 2, 2, &os))
						return false;
				}
			}
			off = sign * (oh * 3600 + om * 60 + os);
		}
	}
	if (n - i == 3 && memcmp(p + i, " BC", 3) == 0) {
		y = 1 - y;
		i += 3;
	}
	if (i != n)
		return false;
	__int128 t = (__int128)days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off;
	*out = t * 1000000 + us;
	return true;
}

/* ------------------------------------------------------------------ comparison */

static int cmp_kind_of(uint32_t type, int16_t format)
{
	if (format == 1) {
		switch (type) {
		case SP_OID_INT2:
		case SP_OID_INT4:
		case SP_OID_INT8:
		case SP_OID_DATE:
		case SP_OID_TIME:
		case SP_OID_TIMESTAMP:
		case SP_OID_TIMESTAMPTZ:
			return CMP_BIN_INT;
		case SP_OID_OID:
			return CMP_BIN_OID;
		case SP_OID_FLOAT4:
			return CMP_BIN_F4;
		case SP_OID_FLOAT8:
			return CMP_BIN_F8;
		case SP_OID_NUMERIC:
			return CMP_BIN_NUMERIC;
		case SP_OID_BPCHAR:
			return CMP_BPCHAR;
		case SP_OID_BOOL: /* 0 < 1 */
		case SP_OID_BYTEA:
		case SP_OID_CHAR:
		case SP_OID_NAME:
		case SP_OID_TEXT:
		case SP_OID_VARCHAR:
		case SP_OID_UUID: /* 16 bytes, compared as memcmp (uuid_cmp) */
			return CMP_BYTES;
		default:
			return CMP_NONE;
		}
	}
	switch (type) {
	case SP_OID_INT2:
	case SP_OID_INT4:
	case SP_OID_INT8:
	case SP_OID_OID:
		return CMP_INT;
	case SP_OID_FLOAT4:
	case SP_OID_FLOAT8:
		return CMP_FLOAT;
	case SP_OID_NUMERIC:
		return CMP_NUMERIC;
	case SP_OID_BPCHAR:
		return CMP_BPCHAR;
	case SP_OID_DATE:
	case SP_OID_TIMESTAMP:
	case SP_OID_TIMESTAMPTZ:
		return CMP_DATETIME;
	case SP_OID_BOOL:    /* 'f' < 't' */
	case SP_OID_BYTEA:   /* lower-case hex keeps the order of the bytes */
	case SP_OID_CHAR:
	case SP_OID_NAME:
	case SP_OID_TEXT:
	case SP_OID_VARCHAR:
	case SP_OID_UUID:    /* lower-case hex */
	case SP_OID_TIME:    /* zero-padded HH:MM:SS[.frac] */
		return CMP_BYTES;
	default:
		return CMP_NONE;
	}
}

/* strcoll_l of two values that are not NUL-terminated (copied, on the stack when short). */
static int cmp_collated(locale_t loc, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	char sa[256], sb[256];
	char *x = an < sizeof sa ? sa : malloc(an + 1), *y = bn < sizeof sb ? sb : malloc(bn + 1);
	int c = 0;
	if (x && y) {
		memcpy(x, a, an);
		x[an] = 0;
		memcpy(y, b, bn);
		y[bn] = 0;
		c = strcoll_l(x, y, loc);
	}
	if (x != sa)
		free(x);
	if (y != sb)
		free(y);
	return c < 0 ? -1 : c > 0;
}

/* Big-endian signed integer of 2, 4 or 8 bytes. */
static int64_t be_signed(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	if (n < 8 && (p[0] & 0x80))
		v |= ~UINT64_C(0) << (8 * n);
	return (int64_t)v;
}

/* float8_cmp_internal: NaN equals NaN and sorts above everything */
static int cmp_double(double x, double y)
{
	if (isnan(x))
		return isnan(y) ? 0 : 1;
	if (isnan(y))
		return -1;
	return x < y ? -1 : x > y;
}

static int cmp_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);
	if (c != 0)
		return c < 0 ? -1 : 1;
	return an < bn ? -1 : an > bn;
}

/* Two non-NULL values of one column, ascending. */
static int cmp_values(locale_t loc, int kind, val_t a, val_t b)
{
	size_t an = (size_t)a.len, bn = (size_t)b.len;
	switch (kind) {
	case CMP_TEXT_LOCALE:
	case CMP_BPCHAR_LOCALE:
		if (kind == CMP_BPCHAR_LOCALE) {
			while (an > 0 && a.p[an - 1] == ' ')
				an--;
			while (bn > 0 && b.p[bn - 1] == ' ')
				bn--;
		}
		if (loc) {
			int c = cmp_collated(loc, a.p, an, b.p, bn);
			if (c != 0)
				return c;
		}
		break; /* varstr_cmp: equal under the collation, the bytes decide */
	case CMP_INT: {
		int64_t x, y;
		if (parse_int64(a.p, an, &x) && parse_int64(b.p, bn, &y))
			return x < y ? -1 : x > y;
		numtxt_t nx, ny; /* out of int64 range (oid is unsigned): compare as decimals */
		if (num_parse(a.p, an, &nx) && num_parse(b.p, bn, &ny))
			return num_cmp(&nx, &ny);
		break;
	}
	case CMP_NUMERIC: {
		numtxt_t x, y;
		if (num_parse(a.p, an, &x) && num_parse(b.p, bn, &y))
			return num_cmp(&x, &y);
		break;
	}
	case CMP_FLOAT: {
		double x, y;
		if (parse_double(a.p, an, &x) && parse_double(b.p, bn, &y))
			return cmp_double(x, y);
		break;
	}
	case CMP_BIN_INT:
		if (an == bn && (an == 2 || an == 4 || an == 8)) {
			int64_t x = be_signed(a.p, an), y = be_signed(b.p, bn);
			return x < y ? -1 : x > y;
		}
		break;
	case CMP_BIN_OID:
		if (an == 4 && bn == 4) {
			uint32_t x = sp_get_be32(a.p), y = sp_get_be32(b.p);
			return x < y ? -1 : x > y;
		}
		break;
	case CMP_BIN_F4:
		if (an == 4 && bn == 4) {
			uint32_t xb = sp_get_be32(a.p), yb = sp_get_be32(b.p);
			float x, y;
			memcpy(&x, &xb, sizeof x);
			memcpy(&y, &yb, sizeof y);
			return cmp_double(x, y);
		}
		break;
	case CMP_BIN_F8:
		if (an == 8 && bn == 8) {
			uint64_t xb = (uint64_t)be_signed(a.p, 8), yb = (uint64_t)be_signed(b.p, 8);
			double x, y;
			memcpy(&x, &xb, sizeof x);
			memcpy(&y, &yb, sizeof y);
			return cmp_double(x, y);
		}
		break;
	case CMP_BIN_NUMERIC: {
		bool ok;
		int c = sp_binfmt_numeric_cmp(a.p, an, b.p, bn, &ok);
		if (ok)
			return c;
		break;
	}
	case CMP_DATETIME: {
		__int128 x, y;
		if (parse_datetime(a.p, an, &x) && parse_datetime(b.p, bn, &y))
			return x < y ? -1 : x > y;
		break;
	}
	case CMP_BPCHAR:
		/* bpchar comparisons ignore trailing blanks */
		while (an > 0 && a.p[an - 1] == ' ')
			an--;
		while (bn > 0 && b.p[bn - 1] == ' ')
			bn--;
		break;
	default:
		break;
	}
	return cmp_bytes(a.p, an, b.p, bn);
}

static int cmp_sort(locale_t loc, const sp_merge_sort_t *s, int kind, val_t a, val_t b)
{
	if (a.len < 0 || b.len < 0) {
		if (a.len < 0 && b.len < 0)
			return 0;
		/* NULLS FIRST/LAST is absolute: it does not flip with DESC */
		if (a.len < 0)
			return s->nulls_first ? -1 : 1;
		return s->nulls_first ? 1 : -1;
	}
	int c = cmp_values(loc, kind, a, b);
	return s->desc ? -c : c;
}

/* ------------------------------------------------------------------ float output */

/* C * 10^q == odd * 2^k exactly? (odd is odd and below 2^56) */
static bool dec_eq_dyadic(uint64_t C, int q, uint64_t odd, int k)
{
	unsigned __int128 x = C;
	int e2 = q; /* 10^q = 2^q * 5^q */
	if (q >= 0) {
		for (int i = 0; i < q; i++) {
			x *= 5;
			if (x >> 100)
				return false;
		}
	} else {
		for (int i = 0; i < -q; i++) {
			if (x % 5)
				return false;
			x /= 5;
		}
	}
	if (x == 0)
		return false;
	while ((x & 1) == 0) {
		x >>= 1;
		e2++;
	}
	return x == odd && e2 == k;
}

/*
 * Is C * 10^q exactly halfway between v (> 0) and one of its neighbours?
 * PostgreSQL's Ryu runs with acceptBounds off: such a decimal is never
 * printed even though strtod would read it back as v (ties to even).
 */
static bool on_boundary(double v, bool single, uint64_t C, int q)
{
	int e, bits = single ? 24 : 53, emin = single ? -149 : -1074;
	double fr = frexp(v, &e);
	int E = e - bits;
	uint64_t M = (uint64_t)ldexp(fr, bits);
	if (E < emin) {
		M >>= (emin - E);
		E = emin;
	}
	if (dec_eq_dyadic(C, q, 2 * M + 1, E - 1))
		return true;
	if (M == (UINT64_C(1) << (bits - 1)) && E > emin)
		return dec_eq_dyadic(C, q, 4 * M - 1, E - 2); /* the gap below is half as wide */
	return dec_eq_dyadic(C, q, 2 * M - 1, E - 1);
}

/*
 * The shortest decimal that reads back as the same value, formatted like
 * PostgreSQL's float4out/float8out with extra_float_digits > 0 (its Ryu
 * code, src/common/d2s.c and f2s.c): fixed notation for decimal exponents
 * -4 .. fixed_max-1, else d.ddde+XX. Of the shortest candidates the nearest
 * is taken, and one lying exactly on the rounding boundary is not accepted.
 */
static int format_shortest(double d, bool single, char *out, size_t outlen)
{
	char tmp[48];
	int p;
	uint64_t mant = 0;
	int exp10 = 0;
	bool neg = signbit(d) != 0;
	double a = fabs(d);

	if (isnan(d))
		return snprintf(out, outlen, "NaN");
	if (isinf(d))
		return snprintf(out, outlen, "%s", neg ? "-Infinity" : "Infinity");
	if (d == 0)
		return snprintf(out, outlen, "%s", neg ? "-0" : "0");

	for (p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof tmp, "%.*e", p - 1, a);
		/* digits and exponent of the correctly rounded p-digit decimal */
		const char *e = strchr(tmp, 'e');
		mant = 0;
		for (const char *c = tmp; c < e; c++)
			if (*c != '.')
				mant = mant * 10 + (uint64_t)(*c - '0');
		exp10 = atoi(e + 1);
		/*
		 * At a power of two the interval that reads back is narrower below
		 * the value than above it, and a boundary value is refused: the
		 * next p-digit decimal up may then be the one. Try both.
		 */
		for (int delta = 0; delta <= 1; delta++) {
			char cand[48];
			uint64_t mm = mant + (uint64_t)delta;
			int q = exp10 - (p - 1);
			snprintf(cand, sizeof cand, "%llue%d", (unsigned long long)mm, q);
			bool same =
			    single ? strtof(cand, NULL) == (float)a : strtod(cand, NULL) == a;
			if (same && !on_boundary(a, single, mm, q)) {
				mant = mm;
				goto found;
			}
		}
	}
	/* not reached: 17 significant digits always identify a double */
	p = 17;
found:;
	/* mant * 10^(exp10 - (p - 1)); normalise the digit string */
	char digits[24];
	int nd = snprintf(digits, sizeof digits, "%llu", (unsigned long long)mant);
	exp10 += nd - p; /* mant + 1 may have gained a digit (9.99 -> 10.0) */
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';

	int fixed_max = single ? 6 : 15;
	size_t o = 0;
	char buf[64];
	if (neg)
		buf[o++] = '-';
	if (exp10 >= -4 && exp10 < fixed_max) {
		if (exp10 < 0) {
			buf[o++] = '0';
			buf[o++] = '.';
			for (int k = -1; k > exp10; k--)
				buf[o++] = '0';
			memcpy(buf + o, digits, (size_t)nd);
			o += (size_t)nd;
		} else {
			for (int k = 0; k <= exp10; k++)
				buf[o++] = k < nd ? digits[k] : '0';
			if (nd > exp10 + 1) {
				buf[o++] = '.';
				memcpy(buf + o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
				o += (size_t)(nd - exp10 - 1);
			}
		}
		buf[o] = '\0';
	} else {
		buf[o++] = digits[0];
		if (nd > 1) {
			buf[o++] = '.';
			memcpy(buf + o, digits + 1, (size_t)(nd - 1));
			o += (size_t)(nd - 1);
		}
		snprintf(buf + o, sizeof buf - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
	}
	return snprintf(out, outlen, "%s", buf);
}

int sp_merge_format_float8(double d, char *out, size_t outlen)
{
	return format_shortest(d, false, out, outlen);
}

int sp_merge_format_float4(float f, char *out, size_t outlen)
{
	return format_shortest((double)f, true, out, outlen);
}

/* ------------------------------------------------------------------ exact decimals */

static int dec_digit(const uint8_t *d, uint32_t n, int32_t scale, int32_t S, long k)
{
	long idx = k - (long)(S - scale); /* counted from the right end of d */
	if (idx < 0 || idx >= (long)n)
		return 0;
	return d[n - 1 - idx] - '0';
}

/*
 * r = a + b on decimal digit strings (value = digits * 10^-scale), result
 * scale = max of the two, like PostgreSQL's add_var(). The result is built
 * in m->scratch and returned through *rd (valid until the next use).
 */
static void dec_add_raw(sp_merge_t *m, bool aneg, const uint8_t *ad, uint32_t an, int32_t as,
			bool bneg, const uint8_t *bd, uint32_t bn, int32_t bs, bool *rneg,
			const uint8_t **rd, uint32_t *rn, int32_t *rs)
{
	int32_t S = as > bs ? as : bs;
	long ia = (long)an - as, ib = (long)bn - bs;
	long L = (ia > ib ? ia : ib) + S + 1;
	if (L < S + 1)
		L = S + 1;
	sp_buf_reset(&m->scratch);
	sp_buf_reserve(&m->scratch, (size_t)L);
	uint8_t *r = m->scratch.data;
	bool neg;

	if (aneg == bneg) {
		int carry = 0;
		for (long k = 0; k < L; k++) {
			int v = dec_digit(ad, an, as, S, k) + dec_digit(bd, bn, bs, S, k) + carry;
			carry = v >= 10;
			r[L - 1 - k] = (uint8_t)('0' + v % 10);
		}
		neg = aneg;
	} else {
		int c = 0;
		for (long k = L - 1; k >= 0 && c == 0; k--) {
			int x = dec_digit(ad, an, as, S, k), y = dec_digit(bd, bn, bs, S, k);
			c = x < y ? -1 : x > y;
		}
		bool a_big = c >= 0;
		int borrow = 0;
		for (long k = 0; k < L; k++) {
			int x = dec_digit(ad, an, as, S, k), y = dec_digit(bd, bn, bs, S, k);
			int v = a_big ? x - y - borrow : y - x - borrow;
			borrow = v < 0;
			r[L - 1 - k] = (uint8_t)('0' + (v + 10) % 10);
		}
		neg = a_big ? aneg : bneg;
	}
	long start = 0;
	while (L - start > S + 1 && r[start] == '0')
		start++;
	bool zero = true;
	for (long k = start; k < L; k++)
		if (r[k] != '0')
			zero = false;
	*rneg = zero ? false : neg;
	*rd = r + start;
	*rn = (uint32_t)(L - start);
	*rs = S;
}

static bool acc_store(sp_merge_t *m, acc_t *a, const uint8_t *p, uint32_t n)
{
	if (n > a->cap) {
		uint8_t *np = arena_alloc(m, n + 8);
		if (!np)
			return false;
		a->p = np;
		a->cap = n + 8;
	}
	memcpy(a->p, p, n);
	a->n = n;
	return true;
}

/* Append the text of a decimal digit string to b (numeric_out's layout). */
static void dec_text(sp_buf_t *b, bool neg, const uint8_t *d, uint32_t n, int32_t scale)
{
	uint32_t ni = n - (uint32_t)scale, k = 0;
	while (k + 1 < ni && d[k] == '0')
		k++;
	bool zero = true;
	for (uint32_t i = 0; i < n; i++)
		if (d[i] != '0')
			zero = false;
	if (neg && !zero)
		sp_buf_append(b, "-", 1);
	if (ni == 0)
		sp_buf_append(b, "0", 1);
	else
		sp_buf_append(b, d + k, ni - k);
	if (scale > 0) {
		sp_buf_append(b, ".", 1);
		sp_buf_append(b, d + ni, (size_t)scale);
	}
}

/*
 * |sum| / count rounded like PostgreSQL's numeric_div(): the result scale is
 * select_div_scale()'s (at least 16 significant digits, not less than the
 * dividend's scale), rounded half away from zero. count > 0.
 */
static void dec_div_count(sp_merge_t *m, sp_buf_t *b, bool neg, const uint8_t *d, uint32_t n,
			  int32_t scale, int64_t count)
{
	/* weight and first base-10000 digit of each operand, as in select_div_scale() */
	int w1 = 0, fd1 = 0, w2, fd2;
	for (uint32_t j = 0; j < n; j++) {
		if (d[j] == '0')
			continue;
		int p = (int)(n - 1 - j) - scale;
		w1 = p >= 0 ? p / DEC_DIGITS : -((-p + DEC_DIGITS - 1) / DEC_DIGITS);
		int g = w1 * DEC_DIGITS, pow = 1;
		for (int q = g; q < g + DEC_DIGITS; q++, pow *= 10) {
			long idx = (long)n - 1 - (q + scale);
			if (idx >= 0 && idx < (long)n)
				fd1 += (d[idx] - '0') * pow;
		}
		break;
	}
	{
		int nd = 0;
		for (int64_t c = count; c > 0; c /= 10)
			nd++;
		w2 = (nd - 1) / DEC_DIGITS;
		int64_t div = 1;
		for (int k = 0; k < w2 * DEC_DIGITS; k++)
			div *= 10;
		fd2 = (int)(count / div);
	}
	int qweight = w1 - w2;
	if (fd1 <= fd2)
		qweight--;
	int rscale = NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS;
	if (rscale < scale)
		rscale = scale;
	if (rscale < 0)
		rscale = 0;
	if (rscale > NUMERIC_MAX_DISPLAY_SCALE)
		rscale = NUMERIC_MAX_DISPLAY_SCALE;

	/* long division of digits * 10^(rscale - scale) by count */
	uint32_t qn = n + (uint32_t)(rscale - scale);
	sp_buf_reset(&m->scratch);
	sp_buf_reserve(&m->scratch, qn + 1);
	uint8_t *q = m->scratch.data + 1;
	unsigned __int128 rem = 0;
	for (uint32_t i = 0; i < qn; i++) {
		rem = rem * 10 + (i < n ? (unsigned)(d[i] - '0') : 0u);
		q[i] = (uint8_t)('0' + (int)(rem / (uint64_t)count));
		rem %= (uint64_t)count;
	}
	if (rem * 2 >= (uint64_t)count) {
		long i = (long)qn - 1;
		while (i >= 0 && q[i] == '9')
			q[i--] = '0';
		if (i >= 0) {
			q[i]++;
		} else {
			q--;
			q[0] = '1';
			qn++;
		}
	}
	dec_text(b, neg, q, qn, rscale);
}

/* ------------------------------------------------------------------ output */

static void emit_body(sp_merge_t *m, const uint8_t *body, size_t len, const val_t *vals)
{
	size_t at = sp_msg_begin(m->out, SP_BE_DATA_ROW);
	if (!m->rewrite) {
		pq_sendbytes(m->out, body, len);
	} else {
		pq_sendint16(m->out, (int16_t)m->n_visible);
		for (int c = 0; c < m->ncols; c++) {
			if (m->cols[c].hidden)
				continue;
			pq_sendint32(m->out, vals[c].len);
			if (vals[c].len > 0)
				pq_sendbytes(m->out, vals[c].p, (size_t)vals[c].len);
		}
	}
	sp_msg_end(m->out, at);
}

/* Parse a DataRow body into vals (ncols entries); false if malformed. */
static bool parse_row(const uint8_t *body, size_t len, int ncols, val_t *vals)
{
	sp_msg_reader_t r;
	int16_t n;
	sp_msg_reader_init(&r, body, len);
	if (!pq_getmsgint16(&r, &n) || (ncols >= 0 && n != ncols))
		return false;
	for (int c = 0; c < n; c++) {
		int32_t l;
		const uint8_t *p = NULL;
		if (!pq_getmsgint32(&r, &l) || l < -1)
			return false;
		if (l > 0 && !pq_getmsgbytes(&r, (size_t)l, &p))
			return false;
		if (vals) {
			vals[c].p = l > 0 ? p : (const uint8_t *)"";
			vals[c].len = l;
		}
	}
	return r.pos == r.len;
}

/* One merged row is ready: apply OFFSET and LIMIT, then send it. */
static void offer_row(sp_merge_t *m, const uint8_t *body, size_t len, const val_t *vals)
{
	if (m->limit_reached)
		return;
	if (m->skipped < m->plan.offset) {
		m->skipped++;
		return;
	}
	emit_body(m, body, len, vals);
	m->sent++;
	if ((m->plan.limit >= 0 && m->sent >= m->plan.limit) || (m->max_rows > 0 && m->sent >= m->max_rows))
		m->limit_reached = true;
}

/* ------------------------------------------------------------------ RowDescription */

static int acc_kind_for(sp_merge_agg_t agg, uint32_t type)
{
	switch (agg) {
	case SP_MAGG_COUNT:
	case SP_MAGG_HIDDEN:
		return ACC_INT;
	case SP_MAGG_MIN:
		return ACC_MIN;
	case SP_MAGG_MAX:
		return ACC_MAX;
	case SP_MAGG_SUM:
		switch (type) {
		case SP_OID_INT2:
		case SP_OID_INT4:
		case SP_OID_INT8:
			return ACC_INT;
		case SP_OID_NUMERIC:
			return ACC_DEC;
		case SP_OID_FLOAT4:
			return ACC_F4;
		case SP_OID_FLOAT8:
			return ACC_F8;
		default:
			return 0;
		}
	case SP_MAGG_AVG_SUM:
		switch (type) {
		case SP_OID_INT2:
		case SP_OID_INT4:
		case SP_OID_INT8:
		case SP_OID_NUMERIC:
			return ACC_DEC;
		case SP_OID_FLOAT4:
		case SP_OID_FLOAT8:
			return ACC_F8;
		default:
			return 0;
		}
	default:
		return 0;
	}
}

static bool read_field(sp_msg_reader_t *r, const char **name, int32_t *tableoid, int16_t *attnum,
		       int32_t *typoid, int16_t *typlen, int32_t *typmod, int16_t *format)
{
	return pq_getmsgstring(r, name, NULL) && pq_getmsgint32(r, tableoid) &&
	       pq_getmsgint16(r, attnum) && pq_getmsgint32(r, typoid) &&
	       pq_getmsgint16(r, typlen) && pq_getmsgint32(r, typmod) && pq_getmsgint16(r, format);
}

/* Send the RowDescription the client sees: hidden columns left out, avg retyped. */
static void send_row_description(sp_merge_t *m, const uint8_t *body, size_t len)
{
	sp_msg_reader_t r;
	int16_t n;
	sp_msg_reader_init(&r, body, len);
	pq_getmsgint16(&r, &n);
	size_t at = sp_msg_begin(m->out, SP_BE_ROW_DESCRIPTION);
	pq_sendint16(m->out, (int16_t)m->n_visible);
	for (int c = 0; c < n; c++) {
		const char *name;
		int32_t tableoid, typoid, typmod;
		int16_t attnum, typlen, format;
		read_field(&r, &name, &tableoid, &attnum, &typoid, &typlen, &typmod, &format);
		const col_t *col = &m->cols[c];
		if (col->hidden)
			continue;
		if (col->out_type != col->type) {
			typoid = (int32_t)col->out_type;
			typlen = col->out_type == SP_OID_FLOAT8 ? 8 : -1;
			typmod = -1;
		}
		pq_sendstring(m->out, name);
		pq_sendint32(m->out, tableoid);
		pq_sendint16(m->out, attnum);
		pq_sendint32(m->out, typoid);
		pq_sendint16(m->out, typlen);
		pq_sendint32(m->out, typmod);
		pq_sendint16(m->out, format);
	}
	sp_msg_end(m->out, at);
}

/* Types whose order follows the collation (name and "char" always sort as C). */
static bool collatable(uint32_t type)
{
	return type == SP_OID_TEXT || type == SP_OID_VARCHAR || type == SP_OID_BPCHAR;
}

/* A text column c is compared as the shards' collation orders it: *kind says how. */
static bool collate_text(sp_merge_t *m, int c, uint8_t *kind, const char *what)
{
	switch (m->text_order) {
	case TEXT_BYTES:
		return true;
	case TEXT_LOCALE:
		*kind = *kind == CMP_BPCHAR ? CMP_BPCHAR_LOCALE : CMP_TEXT_LOCALE;
		return true;
	default:
		return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "%s on text column %d cannot be merged across shards: %s; write "
			    "COLLATE \"C\" after the column in the ORDER BY, or sort by a "
			    "non-text column",
			    what, c + 1,
			    m->collate[0] ? m->collate
					  : "the database's collation is not known yet (the health "
					    "check has not reached the shards' primaries)");
	}
}

/* Learn the result's columns from the first RowDescription and check the plan against them. */
static bool setup_columns(sp_merge_t *m, const uint8_t *body, size_t len, bool send)
{
	sp_msg_reader_t r;
	int16_t n;
	sp_msg_reader_init(&r, body, len);
	if (!pq_getmsgint16(&r, &n) || n < 0)
		return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
			    "malformed RowDescription from a shard");
	if ((m->plan.n_cols > 0 || m->agg) && m->plan.n_cols != n)
		return fail(m, SP_SQLSTATE_INTERNAL,
			    "merge plan expects %d result columns, the shards returned %d",
			    m->plan.n_cols, n);
	m->cols = calloc((size_t)n + 1, sizeof(col_t));
	m->vals = calloc((size_t)n + 1, sizeof(val_t));
	if (!m->cols || !m->vals)
		return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	m->ncols = n;
	m->n_visible = 0;
	/* sort items given by name (SELECT * hides the positions): the one field of that name */
	int by_name_col[SP_MERGE_MAX_SORT], by_name_hits[SP_MERGE_MAX_SORT] = {0};
	for (int c = 0; c < n; c++) {
		const char *name;
		int32_t tableoid, typoid, typmod;
		int16_t attnum, typlen, format;
		if (!read_field(&r, &name, &tableoid, &attnum, &typoid, &typlen, &typmod, &format))
			return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
				    "malformed RowDescription from a shard");
		for (int k = 0; k < m->plan.n_sort; k++)
			if (m->plan.sort[k].col < 0 && !strcmp(name, m->plan.sort[k].name) &&
			    by_name_hits[k]++ == 0)
				by_name_col[k] = c;
		col_t *col = &m->cols[c];
		sp_merge_agg_t agg = c < m->plan.n_cols ? m->plan.agg[c] : SP_MAGG_NONE;
		col->type = (uint32_t)typoid;
		col->out_type = col->type;
		col->format = format;
		col->hidden = agg == SP_MAGG_HIDDEN;
		col->acc = -1;
		if (agg == SP_MAGG_AVG_SUM && m->agg)
			/* avg(real/double precision) is double precision, any other avg numeric */
			col->out_type = col->type == SP_OID_FLOAT4 || col->type == SP_OID_FLOAT8
					    ? SP_OID_FLOAT8
					    : SP_OID_NUMERIC;
		col->cmp = (uint8_t)cmp_kind_of(col->out_type, format);
		if (!col->hidden)
			m->n_visible++;
	}
	m->rewrite = m->n_visible != m->ncols;

	for (int k = 0; k < m->plan.n_sort; k++) {
		sp_merge_sort_t *sk = &m->plan.sort[k];
		if (sk->col < 0) {
			/* none or several (ORDER BY t.id over a join returning two id columns) */
			if (by_name_hits[k] != 1)
				return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "ORDER BY %s cannot be merged across shards: the result has %s "
					    "column named \"%s\" (list the columns instead of *, or give the "
					    "sort column a unique name with AS)",
					    sk->name, by_name_hits[k] ? "more than one" : "no", sk->name);
			sk->col = by_name_col[k];
		}
		int c = sk->col;
		if (c < 0 || c >= n)
			return fail(m, SP_SQLSTATE_INTERNAL,
				    "merge plan sorts by column %d of a %d-column result", c + 1,
				    n);
		if (m->cols[c].cmp == CMP_NONE)
			return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "ORDER BY column %d cannot be merged across shards: shardpool "
				    "does not know the sort order of its type (oid %u); sort by a "
				    "column of a numeric, text, boolean, uuid, date or timestamp type",
				    c + 1, m->cols[c].type);
		m->sort_cmp[k] = m->cols[c].cmp;
		if (m->plan.sort[k].bytewise || !collatable(m->cols[c].type))
			continue;
		if (!collate_text(m, c, &m->sort_cmp[k], "ORDER BY"))
			return false;
	}
	if (m->agg) {
		for (int c = 0; c < n; c++) {
			sp_merge_agg_t agg = m->plan.agg[c];
			col_t *col = &m->cols[c];
			bool is_count_of_avg = false;
			for (int k = 0; k < n; k++)
				if (m->plan.agg[k] == SP_MAGG_AVG_SUM &&
				    m->plan.avg_count_col[k] == c)
					is_count_of_avg = true;
			/* a hidden column that is no avg's count is grouped on, like a plain one */
			if (agg == SP_MAGG_NONE || (agg == SP_MAGG_HIDDEN && !is_count_of_avg))
				continue;
			if (agg == SP_MAGG_AVG_SUM) {
				int cc = m->plan.avg_count_col[c];
				if (cc < 0 || cc >= n || m->plan.agg[cc] != SP_MAGG_HIDDEN)
					return fail(
					    m, SP_SQLSTATE_INTERNAL,
					    "merge plan: avg column %d has no hidden count column",
					    c + 1);
			}
			if ((agg == SP_MAGG_MIN || agg == SP_MAGG_MAX) && col->cmp == CMP_NONE)
				return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "%s() of column %d cannot be combined across shards: "
					    "shardpool does not know the order of its type (oid %u)",
					    agg == SP_MAGG_MIN ? "min" : "max", c + 1, col->type);
			if ((agg == SP_MAGG_MIN || agg == SP_MAGG_MAX) && collatable(col->type) &&
			    !collate_text(m, c, &col->cmp, agg == SP_MAGG_MIN ? "min()" : "max()"))
				return false;
			if (agg == SP_MAGG_AVG_SUM && col->type == SP_OID_FLOAT4)
				/* PostgreSQL's avg(real) adds in double precision, the shards'
				 * sum(real) in single: the result would be off from the 7th digit */
				return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "avg() of a real column (column %d) cannot be combined "
					    "across shards exactly (write avg(x::float8), which "
					    "PostgreSQL computes alike)",
					    c + 1);
			if (!acc_kind_for(agg, col->type))
				return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "%s of type %u cannot be combined across shards",
					    agg == SP_MAGG_AVG_SUM ? "avg()" : "sum()", col->type);
			col->acc = m->n_acc++;
		}
	}
	if (send)
		send_row_description(m, body, len);
	m->desc_sent = true;
	return true;
}

static bool check_columns(sp_merge_t *m, int shard, const uint8_t *body, size_t len)
{
	sp_msg_reader_t r;
	int16_t n;
	sp_msg_reader_init(&r, body, len);
	if (!pq_getmsgint16(&r, &n) || n < 0)
		return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
			    "malformed RowDescription from a shard");
	if (n != m->ncols)
		return fail(
		    m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
		    "shards returned different result columns: %d columns from shard %d, %d "
		    "from shard %d",
		    m->ncols, m->first_desc_shard, n, shard);
	for (int c = 0; c < n; c++) {
		const char *name;
		int32_t tableoid, typoid, typmod;
		int16_t attnum, typlen, format;
		if (!read_field(&r, &name, &tableoid, &attnum, &typoid, &typlen, &typmod, &format))
			return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
				    "malformed RowDescription from a shard");
		if ((uint32_t)typoid != m->cols[c].type)
			return fail(
			    m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "shards returned different types for result column %d (\"%s\"): "
			    "type %u from shard %d, type %u from shard %d",
			    c + 1, name, m->cols[c].type, m->first_desc_shard, (uint32_t)typoid,
			    shard);
		if (format != m->cols[c].format)
			return fail(
			    m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "shards returned different formats for result column %d (\"%s\")",
			    c + 1, name);
	}
	return true;
}

/* ------------------------------------------------------------------ sorted merge */

static void set_head(sp_merge_t *m, shard_t *s)
{
	const uint8_t *body = sp_buf_head(&s->q) + 4;
	uint32_t len = sp_get_be32(sp_buf_head(&s->q));
	parse_row(body, len, m->ncols, m->vals);
	for (int k = 0; k < m->plan.n_sort; k++) {
		val_t v = m->vals[m->plan.sort[k].col];
		s->head_off[k] = v.len > 0 ? (int32_t)(v.p - body) : 0;
		s->head_len[k] = v.len;
	}
}

static int cmp_heads(const sp_merge_t *m, const shard_t *a, const shard_t *b)
{
	const uint8_t *ab = sp_buf_head(&a->q) + 4, *bb = sp_buf_head(&b->q) + 4;
	for (int k = 0; k < m->plan.n_sort; k++) {
		const sp_merge_sort_t *s = &m->plan.sort[k];
		val_t x = {ab + a->head_off[k], a->head_len[k]};
		val_t y = {bb + b->head_off[k], b->head_len[k]};
		int c = cmp_sort(m->text_loc, s, m->sort_cmp[k], x, y);
		if (c != 0)
			return c;
	}
	return 0;
}

static void drop_queues(sp_merge_t *m)
{
	for (int i = 0; i < m->n_shards; i++) {
		sp_buf_reset(&m->shards[i].q);
		m->shards[i].q_rows = 0;
	}
}

/* Send every row that no shard still running could precede. */
static void drain_sorted(sp_merge_t *m)
{
	while (!m->failed && !m->limit_reached) {
		shard_t *best = NULL;
		for (int i = 0; i < m->n_shards; i++) {
			shard_t *s = &m->shards[i];
			if (s->q_rows == 0) {
				if (!s->ended)
					return; /* it may still send something smaller */
				continue;
			}
			/* strict: on ties the lower shard goes first */
			if (!best || cmp_heads(m, s, best) < 0)
				best = s;
		}
		if (!best)
			return;
		const uint8_t *rec = sp_buf_head(&best->q);
		uint32_t len = sp_get_be32(rec);
		if (m->rewrite)
			parse_row(rec + 4, len, m->ncols, m->vals);
		offer_row(m, rec + 4, len, m->vals);
		sp_buf_consume(&best->q, 4 + (size_t)len);
		if (--best->q_rows > 0)
			set_head(m, best);
	}
	if (m->limit_reached)
		drop_queues(m);
}

/* ------------------------------------------------------------------ aggregates */

static bool grow_groups(sp_merge_t *m)
{
	if (m->n_groups == m->cap_groups) {
		size_t cap = m->cap_groups ? m->cap_groups * 2 : 64;
		group_t *g = realloc(m->groups, cap * sizeof *g);
		if (!g)
			return false;
		m->groups = g;
		acc_t *a = realloc(m->accs, cap * (size_t)(m->n_acc ? m->n_acc : 1) * sizeof *a);
		if (!a)
			return false;
		m->accs = a;
		m->cap_groups = cap;
	}
	if ((m->n_groups + 1) * 2 > m->n_slots) {
		size_t ns = m->n_slots ? m->n_slots * 2 : 128;
		uint32_t *slots = calloc(ns, sizeof *slots);
		if (!slots)
			return false;
		for (size_t g = 0; g < m->n_groups; g++) {
			size_t h = (size_t)m->groups[g].hash & (ns - 1);
			while (slots[h])
				h = (h + 1) & (ns - 1);
			slots[h] = (uint32_t)g + 1;
		}
		free(m->slots);
		m->slots = slots;
		m->n_slots = ns;
	}
	return true;
}

static bool acc_add(sp_merge_t *m, const col_t *col, acc_t *a, val_t v)
{
	if (v.len < 0)
		return true; /* aggregates skip NULLs */
	if (col->format == 1 && a->kind != ACC_MIN && a->kind != ACC_MAX) {
		/* sums and counts are computed on the text form */
		sp_buf_reset(&m->bintext);
		if (!sp_binfmt_to_text(col->type, v.p, (size_t)v.len, &m->bintext))
			return bad_value(m, v.p, (size_t)v.len);
		v.p = m->bintext.data;
		v.len = (int32_t)sp_buf_len(&m->bintext);
	}
	size_t n = (size_t)v.len;
	switch (a->kind) {
	case ACC_INT: {
		int64_t x;
		if (!parse_int64(v.p, n, &x))
			return bad_value(m, v.p, n);
		if (a->null) {
			a->i = x;
		} else if (__builtin_add_overflow(a->i, x, &a->i)) {
			return fail(m, "22003", "bigint out of range");
		}
		break;
	}
	case ACC_F8: {
		double x;
		if (!parse_double(v.p, n, &x))
			return bad_value(m, v.p, n);
		if (a->null) {
			a->d = x;
		} else {
			double r = a->d + x;
			/* float8pl(): overflow is an error, not Infinity */
			if (isinf(r) && !isinf(a->d) && !isinf(x))
				return fail(m, "22003", "value out of range: overflow");
			a->d = r;
		}
		break;
	}
	case ACC_F4: {
		float x;
		if (!parse_float(v.p, n, &x))
			return bad_value(m, v.p, n);
		if (a->null) {
			a->f = x;
		} else {
			float r = a->f + x;
			if (isinf(r) && !isinf(a->f) && !isinf(x))
				return fail(m, "22003", "value out of range: overflow");
			a->f = r;
		}
		break;
	}
	case ACC_DEC: {
		numtxt_t t;
		if (!num_parse(v.p, n, &t))
			return bad_value(m, v.p, n);
		if (t.special) {
			a->special |= (uint8_t)t.special;
			a->null = false;
			return true;
		}
		/* digits = integer part then fraction, scale = fraction length */
		if (a->null) {
			sp_buf_reset(&m->scratch);
			sp_buf_append(&m->scratch, t.ip, t.in);
			sp_buf_append(&m->scratch, t.fp, t.fn);
			if (!acc_store(m, a, m->scratch.data, (uint32_t)(t.in + t.fn)))
				return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			a->scale = (int32_t)t.fn;
			a->neg = t.neg;
		} else {
			/* the operand's digits are split by the point: join them */
			sp_buf_reset(&m->operand);
			sp_buf_append(&m->operand, t.ip, t.in);
			sp_buf_append(&m->operand, t.fp, t.fn);
			bool rneg;
			const uint8_t *rd;
			uint32_t rn;
			int32_t rs;
			dec_add_raw(m, a->neg, a->p, a->n, a->scale, t.neg, m->operand.data,
				    (uint32_t)(t.in + t.fn), (int32_t)t.fn, &rneg, &rd, &rn, &rs);
			if (!acc_store(m, a, rd, rn))
				return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			a->scale = rs;
			a->neg = rneg;
		}
		break;
	}
	case ACC_MIN:
	case ACC_MAX:
		if (!a->null) {
			int c = cmp_values(m->text_loc, col->cmp, v, (val_t){a->p, (int32_t)a->n});
			if (a->kind == ACC_MIN ? c >= 0 : c <= 0)
				return true;
		}
		if (!acc_store(m, a, v.p, (uint32_t)n))
			return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
		break;
	default:
		return fail(m, SP_SQLSTATE_INTERNAL, "merge: bad accumulator");
	}
	a->null = false;
	return true;
}

/*
 * Values that PostgreSQL's GROUP BY puts together but that print (or send)
 * differently: numeric 1.0 and 1.00, float -0 and 0 (and every NaN), interval
 * '1 day' and '24:00:00'. canon_value writes a form equal exactly when the
 * values are: the digits without trailing fraction zeros or scale, a float's
 * zero and NaN made one, an interval as PostgreSQL compares it (months of 30
 * days, days of 24 hours, in microseconds). Returns 1 if it wrote one, 0 if
 * the bytes already are canonical, -1 if it cannot read the value (an
 * interval printed in another IntervalStyle than postgres).
 */
static bool parse_interval_text(const char *p, size_t n, __int128 *span)
{
	__int128 months = 0, days = 0, usec = 0; /* wide: no overflow on any printed value */
	size_t i = 0;

	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		if (i == n)
			break;
		size_t t = i;
		while (i < n && p[i] != ' ')
			i++;
		const char *tok = p + t;
		size_t tl = i - t;
		if (memchr(tok, ':', tl)) { /* [+-]H:MM:SS[.ffffff] */
			bool neg = *tok == '-';
			size_t k = (*tok == '-' || *tok == '+') ? 1 : 0;
			int64_t part[3] = {0, 0, 0}, frac = 0;
			int np = 0, fd = 0;
			for (; k < tl && np < 3; k++) {
				if (tok[k] >= '0' && tok[k] <= '9') {
					if (part[np] > INT64_MAX / 100)
						return false;
					part[np] = part[np] * 10 + (tok[k] - '0');
				} else if (tok[k] == ':') {
					np++;
				} else if (tok[k] == '.' && np == 2) {
					for (k++; k < tl && fd < 6; k++, fd++) {
						if (tok[k] < '0' || tok[k] > '9')
							return false;
						frac = frac * 10 + (tok[k] - '0');
					}
					if (k < tl)
						return false;
					break;
				} else {
					return false;
				}
			}
			if (np != 2)
				return false;
			for (; fd < 6; fd++)
				frac *= 10;
			__int128 v = (((__int128)part[0] * 60 + part[1]) * 60 + part[2]) * 1000000 + frac;
			usec += neg ? -v : v;
			continue;
		}
		char *end;
		long long num = strtoll(tok, &end, 10);
		if (end != tok + tl || i == n)
			return false;
		while (i < n && p[i] == ' ')
			i++;
		size_t u = i;
		while (i < n && p[i] != ' ')
			i++;
		size_t ul = i - u;
		if ((ul == 4 || ul == 5) && !memcmp(p + u, "year", 4))
			months += num * 12;
		else if ((ul == 3 || ul == 4) && !memcmp(p + u, "mon", 3))
			months += num;
		else if ((ul == 3 || ul == 4) && !memcmp(p + u, "day", 3))
			days += num;
		else
			return false;
	}
	*span = (months * 30 + days) * INT64_C(86400000000) + usec;
	return true;
}

static int canon_value(const col_t *col, const uint8_t *p, int32_t len, sp_buf_t *out)
{
	if (len <= 0)
		return 0;
	switch (col->type) {
	case SP_OID_NUMERIC:
		if (col->format == 1) { /* ndigits, weight, sign, dscale, digits: forget dscale */
			if (len < 8)
				return 0;
			sp_buf_append(out, p, 6);
			sp_buf_append(out, "\0\0", 2);
			sp_buf_append(out, p + 8, (size_t)len - 8);
			return 1;
		} else {
			const uint8_t *dot = memchr(p, '.', (size_t)len);
			if (!dot)
				return 0;
			size_t n = (size_t)len;
			while (n > (size_t)(dot - p) + 1 && p[n - 1] == '0')
				n--;
			if (n == (size_t)(dot - p) + 1)
				n--;
			sp_buf_append(out, p, n);
			return 1;
		}
	case SP_OID_FLOAT4:
	case SP_OID_FLOAT8:
		if (col->format == 1) {
			uint8_t z[8] = {0}, nan[8] = {0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
			if (len != 4 && len != 8)
				return 0;
			double d;
			if (len == 8) {
				uint64_t u = 0;
				for (int i = 0; i < 8; i++)
					u = u << 8 | p[i];
				memcpy(&d, &u, 8);
			} else {
				uint32_t u = sp_get_be32(p);
				float f;
				memcpy(&f, &u, 4);
				d = f;
			}
			if (d == 0)
				sp_buf_append(out, z, (size_t)len);
			else if (isnan(d))
				sp_buf_append(out, len == 8 ? nan : (const uint8_t *)"\x7f\xc0\0\0", (size_t)len);
			else
				return 0;
			return 1;
		}
		if (len == 2 && p[0] == '-' && p[1] == '0') {
			sp_buf_append(out, "0", 1);
			return 1;
		}
		return 0;
	case SP_OID_INTERVAL: {
		__int128 span;
		uint8_t b[16];
		if (col->format == 1) {
			if (len != 16)
				return 0;
			int64_t t = 0;
			for (int i = 0; i < 8; i++)
				t = (int64_t)((uint64_t)t << 8 | p[i]);
			int32_t day = (int32_t)sp_get_be32(p + 8), mon = (int32_t)sp_get_be32(p + 12);
			span = ((__int128)mon * 30 + day) * INT64_C(86400000000) + t;
		} else if (!parse_interval_text((const char *)p, (size_t)len, &span)) {
			return -1;
		}
		unsigned __int128 u = (unsigned __int128)span;
		for (int i = 15; i >= 0; i--, u >>= 8)
			b[i] = (uint8_t)u;
		sp_buf_append(out, b, 16);
		return 1;
	}
	default:
		return 0;
	}
}

/* Can values of this column be equal in PostgreSQL's eyes with other bytes? */
static bool needs_canon(const col_t *col)
{
	return col->type == SP_OID_NUMERIC || col->type == SP_OID_FLOAT4 ||
	       col->type == SP_OID_FLOAT8 || col->type == SP_OID_INTERVAL;
}

static bool combine_row(sp_merge_t *m)
{
	bool canon = false;
	if (m->canon_keys < 0) { /* once: the columns are known from the first row on */
		m->canon_keys = 0;
		for (int c = 0; c < m->ncols; c++)
			if (m->cols[c].acc < 0 && needs_canon(&m->cols[c]))
				m->canon_keys = 1;
	}
	sp_buf_reset(&m->keybuf);
	if (m->canon_keys)
		sp_buf_reset(&m->ckeybuf);
	for (int c = 0; c < m->ncols; c++) {
		if (m->cols[c].acc >= 0)
			continue;
		uint8_t l[4];
		sp_put_be32(l, (uint32_t)m->vals[c].len);
		sp_buf_append(&m->keybuf, l, 4);
		if (m->vals[c].len > 0)
			sp_buf_append(&m->keybuf, m->vals[c].p, (size_t)m->vals[c].len);
		if (!m->canon_keys)
			continue; /* the bytes are the group key */
		size_t at = sp_buf_len(&m->ckeybuf);
		sp_buf_append(&m->ckeybuf, l, 4);
		int r = canon_value(&m->cols[c], m->vals[c].p, m->vals[c].len, &m->ckeybuf);
		if (r < 0)
			return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "GROUP BY over several shards cannot compare interval values printed in "
				    "this IntervalStyle; SET IntervalStyle = postgres, or group on one shard");
		if (r > 0) {
			canon = true;
			sp_put_be32(m->ckeybuf.data + m->ckeybuf.start + at,
				    (uint32_t)(sp_buf_len(&m->ckeybuf) - at - 4));
		} else if (m->vals[c].len > 0) {
			sp_buf_append(&m->ckeybuf, m->vals[c].p, (size_t)m->vals[c].len);
		}
	}
	const uint8_t *key = m->keybuf.data ? sp_buf_head(&m->keybuf) : (const uint8_t *)"";
	size_t klen = sp_buf_len(&m->keybuf);
	const uint8_t *ckey = canon ? sp_buf_head(&m->ckeybuf) : key;
	size_t cklen = canon ? sp_buf_len(&m->ckeybuf) : klen;
	uint64_t h = fnv1a(UINT64_C(14695981039346656037), ckey, cklen);

	if (!grow_groups(m))
		return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	size_t slot = (size_t)h & (m->n_slots - 1);
	group_t *g = NULL;
	size_t gi = 0;
	while (m->slots[slot]) {
		gi = m->slots[slot] - 1;
		group_t *cand = &m->groups[gi];
		if (cand->hash == h && cand->ckey_len == cklen && memcmp(cand->ckey, ckey, cklen) == 0) {
			g = cand;
			break;
		}
		slot = (slot + 1) & (m->n_slots - 1);
	}
	if (!g) {
		gi = m->n_groups++;
		g = &m->groups[gi];
		g->hash = h;
		g->key_len = (uint32_t)klen;
		g->key = arena_alloc(m, klen ? klen : 1);
		if (!g->key)
			return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
		memcpy(g->key, key, klen);
		g->ckey = g->key;
		g->ckey_len = (uint32_t)klen;
		if (canon) {
			g->ckey = arena_alloc(m, cklen);
			if (!g->ckey)
				return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			memcpy(g->ckey, ckey, cklen);
			g->ckey_len = (uint32_t)cklen;
		}
		m->slots[slot] = (uint32_t)gi + 1;
		for (int c = 0; c < m->ncols; c++) {
			if (m->cols[c].acc < 0)
				continue;
			acc_t *a = &m->accs[gi * (size_t)m->n_acc + (size_t)m->cols[c].acc];
			memset(a, 0, sizeof *a);
			a->null = true;
			a->kind = (uint8_t)acc_kind_for(m->plan.agg[c], m->cols[c].type);
		}
	}
	for (int c = 0; c < m->ncols; c++) {
		if (m->cols[c].acc < 0)
			continue;
		acc_t *a = &m->accs[gi * (size_t)m->n_acc + (size_t)m->cols[c].acc];
		if (!acc_add(m, &m->cols[c], a, m->vals[c]))
			return false;
	}
	return true;
}

/* Text of one combined column, appended to b; false for NULL. */
static bool acc_text(sp_merge_t *m, sp_buf_t *b, int c, size_t gi)
{
	const acc_t *a = &m->accs[gi * (size_t)m->n_acc + (size_t)m->cols[c].acc];
	char tmp[64];
	int n;

	if (m->plan.agg[c] == SP_MAGG_AVG_SUM) {
		int cc = m->plan.avg_count_col[c];
		const acc_t *ca = &m->accs[gi * (size_t)m->n_acc + (size_t)m->cols[cc].acc];
		if (a->null || ca->null || ca->i <= 0)
			return false;
		if (a->kind == ACC_F8) {
			n = sp_merge_format_float8(a->d / (double)ca->i, tmp, sizeof tmp);
			sp_buf_append(b, tmp, (size_t)n);
			return true;
		}
	}
	if (a->null)
		return false;
	switch (a->kind) {
	case ACC_INT:
		n = snprintf(tmp, sizeof tmp, "%lld", (long long)a->i);
		sp_buf_append(b, tmp, (size_t)n);
		break;
	case ACC_F8:
		n = sp_merge_format_float8(a->d, tmp, sizeof tmp);
		sp_buf_append(b, tmp, (size_t)n);
		break;
	case ACC_F4:
		n = sp_merge_format_float4(a->f, tmp, sizeof tmp);
		sp_buf_append(b, tmp, (size_t)n);
		break;
	case ACC_DEC: {
		if (a->special) {
			const char *s = (a->special & SPECIAL_NAN) ||
						(a->special & (SPECIAL_PINF | SPECIAL_NINF)) ==
						    (SPECIAL_PINF | SPECIAL_NINF)
					    ? "NaN"
					: (a->special & SPECIAL_PINF) ? "Infinity"
								      : "-Infinity";
			sp_buf_append(b, s, strlen(s));
		} else if (m->plan.agg[c] == SP_MAGG_AVG_SUM) {
			int cc = m->plan.avg_count_col[c];
			const acc_t *ca = &m->accs[gi * (size_t)m->n_acc + (size_t)m->cols[cc].acc];
			dec_div_count(m, b, a->neg, a->p, a->n, a->scale, ca->i);
		} else {
			dec_text(b, a->neg, a->p, a->n, a->scale);
		}
		break;
	}
	default: /* ACC_MIN, ACC_MAX */
		sp_buf_append(b, a->p, a->n);
		break;
	}
	return true;
}

/* min()/max() keep one input value as it came, in either format. */
static bool acc_is_minmax(const sp_merge_t *m, int c)
{
	return m->plan.agg[c] == SP_MAGG_MIN || m->plan.agg[c] == SP_MAGG_MAX;
}

typedef struct final_row {
	size_t off; /* into m->rows: [u32 len][DataRow body] */
} final_row_t;

static int cmp_final(sp_merge_t *m, size_t x, size_t y, val_t *vx, val_t *vy)
{
	const uint8_t *a = m->rows.data + x, *b = m->rows.data + y;
	parse_row(a + 4, sp_get_be32(a), m->ncols, vx);
	parse_row(b + 4, sp_get_be32(b), m->ncols, vy);
	for (int k = 0; k < m->plan.n_sort; k++) {
		const sp_merge_sort_t *s = &m->plan.sort[k];
		int c = cmp_sort(m->text_loc, s, m->sort_cmp[k], vx[s->col], vy[s->col]);
		if (c != 0)
			return c;
	}
	return 0;
}

/* Stable merge sort of row offsets (ties keep group order). */
static void sort_rows(sp_merge_t *m, size_t *v, size_t *tmp, size_t n, val_t *vx, val_t *vy)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	sort_rows(m, v, tmp, h, vx, vy);
	sort_rows(m, v + h, tmp, n - h, vx, vy);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = cmp_final(m, v[j], v[i], vx, vy) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof *v);
}

static void finish_aggs(sp_merge_t *m)
{
	/* build every group's row: [u32 len][int16 ncols, per column int32 len + bytes] */
	size_t *offs = calloc(m->n_groups + 1, sizeof *offs);
	if (!offs) {
		fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return;
	}
	sp_buf_reset(&m->rows);
	for (size_t gi = 0; gi < m->n_groups; gi++) {
		const group_t *g = &m->groups[gi];
		size_t start = m->rows.end;
		offs[gi] = start;
		uint8_t hdr[6] = {0};
		sp_buf_append(&m->rows, hdr, 6);
		m->rows.data[start + 4] = (uint8_t)(m->ncols >> 8);
		m->rows.data[start + 5] = (uint8_t)m->ncols;
		size_t kpos = 0;
		for (int c = 0; c < m->ncols; c++) {
			uint8_t l[4] = {0};
			if (m->cols[c].acc < 0) {
				uint32_t kl = sp_get_be32(g->key + kpos);
				sp_buf_append(&m->rows, g->key + kpos, 4);
				kpos += 4;
				if ((int32_t)kl > 0) {
					sp_buf_append(&m->rows, g->key + kpos, kl);
					kpos += kl;
				}
				continue;
			}
			size_t lpos = m->rows.end;
			sp_buf_append(&m->rows, l, 4);
			size_t vstart = m->rows.end;
			bool notnull;
			if (m->cols[c].format == 1 && !acc_is_minmax(m, c)) {
				sp_buf_reset(&m->bintext2);
				notnull = acc_text(m, &m->bintext2, c, gi);
				if (notnull &&
				    !sp_binfmt_from_text(m->cols[c].out_type,
							 (const char *)m->bintext2.data,
							 sp_buf_len(&m->bintext2), &m->rows)) {
					free(offs);
					fail(m, SP_SQLSTATE_INTERNAL,
					     "cannot send the combined value of column %d in binary",
					     c + 1);
					return;
				}
			} else {
				notnull = acc_text(m, &m->rows, c, gi);
			}
			sp_put_be32(m->rows.data + lpos,
				    notnull ? (uint32_t)(m->rows.end - vstart) : UINT32_MAX);
		}
		sp_put_be32(m->rows.data + start, (uint32_t)(m->rows.end - start - 4));
	}
	if (m->plan.n_sort > 0 && m->n_groups > 1) {
		size_t *tmp = calloc(m->n_groups, sizeof *tmp);
		val_t *vy = calloc((size_t)m->ncols + 1, sizeof *vy);
		if (!tmp || !vy) {
			free(tmp);
			free(vy);
			free(offs);
			fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			return;
		}
		sort_rows(m, offs, tmp, m->n_groups, m->vals, vy);
		free(tmp);
		free(vy);
	}
	for (size_t k = 0; k < m->n_groups && !m->limit_reached; k++) {
		const uint8_t *rec = m->rows.data + offs[k];
		uint32_t len = sp_get_be32(rec);
		if (m->rewrite)
			parse_row(rec + 4, len, m->ncols, m->vals);
		offer_row(m, rec + 4, len, m->vals);
	}
	free(offs);
}

/* ------------------------------------------------------------------ notices */

/*
 * The same notice from several shards reaches the client once; a shard that
 * sends it twice (say, once per row) still has it passed twice: each copy
 * beyond the highest count any shard already reached is sent.
 */
static void pass_notice(sp_merge_t *m, int shard, char type, const uint8_t *body, size_t len)
{
	uint64_t h = fnv1a(UINT64_C(14695981039346656037) ^ (uint8_t)type, body, len);
	notice_t *nt = NULL;
	for (int k = 0; k < m->n_notices; k++) {
		notice_t *c = m->notices[k];
		if (c->hash == h && c->type == type && c->len == len &&
		    memcmp(c->body, body, len) == 0) {
			nt = c;
			break;
		}
	}
	if (!nt && m->n_notices < MAX_NOTICES) {
		nt = malloc(sizeof *nt + (size_t)m->n_shards * sizeof(int) + len + 1);
		if (nt) {
			nt->hash = h;
			nt->type = type;
			nt->len = (uint32_t)len;
			nt->count = (int *)(nt + 1);
			memset(nt->count, 0, (size_t)m->n_shards * sizeof(int));
			nt->body = (uint8_t *)(nt->count + m->n_shards);
			memcpy(nt->body, body, len);
			m->notices[m->n_notices++] = nt;
		}
	}
	if (nt) {
		int max = 0;
		for (int i = 0; i < m->n_shards; i++)
			if (nt->count[i] > max)
				max = nt->count[i];
		nt->count[shard]++;
		if (nt->count[shard] <= max)
			return;
	}
	size_t at = sp_msg_begin(m->out, type);
	pq_sendbytes(m->out, body, len);
	sp_msg_end(m->out, at);
}

/* ------------------------------------------------------------------ API */

sp_merge_t *sp_merge_new(const sp_merge_plan_t *plan, int n_shards, sp_buf_t *out)
{
	if (!plan || n_shards <= 0 || !out || plan->n_sort < 0 ||
	    plan->n_sort > SP_MERGE_MAX_SORT || plan->n_cols < 0 ||
	    plan->n_cols > SP_MERGE_MAX_COLS)
		return NULL;
	sp_merge_t *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->plan = *plan;
	m->plan.table[sizeof m->plan.table - 1] = m->plan.key[sizeof m->plan.key - 1] = '\0';
	m->canon_keys = -1;
	if (m->plan.offset < 0)
		m->plan.offset = 0;
	m->n_shards = n_shards;
	m->out = out;
	m->shards = calloc((size_t)n_shards, sizeof *m->shards);
	if (!m->shards) {
		free(m);
		return NULL;
	}
	m->agg = plan->has_aggs;
	m->sorted = plan->n_sort > 0 && !plan->has_aggs;
	m->ncols = -1;
	m->first_desc_shard = -1;
	m->sqlstate = "00000";
	m->limit_reached = plan->limit == 0;
	return m;
}

void sp_merge_free(sp_merge_t *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n_shards; i++)
		sp_buf_free(&m->shards[i].q);
	free(m->shards);
	for (int k = 0; k < m->n_notices; k++)
		free(m->notices[k]);
	while (m->arena) {
		chunk_t *next = m->arena->next;
		free(m->arena);
		m->arena = next;
	}
	free(m->cols);
	free(m->vals);
	free(m->groups);
	free(m->accs);
	free(m->slots);
	sp_buf_free(&m->keybuf);
	sp_buf_free(&m->ckeybuf);
	sp_buf_free(&m->operand);
	sp_buf_free(&m->scratch);
	sp_buf_free(&m->rows);
	sp_buf_free(&m->bintext);
	sp_buf_free(&m->bintext2);
	free(m);
}

/* newlocale() reads locale files: keep the ones already opened (few databases, few collations). */
#define LOCALE_CACHE 8
static struct {
	char name[64];
	locale_t loc;
} locales[LOCALE_CACHE];

static locale_t collation_locale(const char *name)
{
	int i;
	for (i = 0; i < LOCALE_CACHE && locales[i].loc; i++)
		if (!strcmp(locales[i].name, name))
			return locales[i].loc;
	locale_t loc = newlocale(LC_COLLATE_MASK, name, (locale_t)0);
	if (loc && i < LOCALE_CACHE) {
		snprintf(locales[i].name, sizeof locales[i].name, "%s", name);
		locales[i].loc = loc;
	} else if (loc) {
		freelocale(loc); /* cache full: an unusual config; the next call opens it again */
		loc = (locale_t)0;
	}
	return loc;
}

void sp_merge_set_collation(sp_merge_t *m, const char *collate, char provider)
{
	m->text_loc = (locale_t)0;
	m->collate[0] = 0;
	if (!collate || !*collate) {
		m->text_order = TEXT_UNKNOWN;
		return;
	}
	if (provider == 'b') {
		m->text_order = TEXT_BYTES; /* PostgreSQL 17's builtin provider: code point order */
		return;
	}
	if (provider == 'i') {
		snprintf(m->collate, sizeof m->collate, "ICU collations are not supported");
		m->text_order = TEXT_UNKNOWN;
		return;
	}
	if (!strcmp(collate, "C") || !strcmp(collate, "POSIX") ||
	    !strncmp(collate, "C.", 2)) {
		m->text_order = TEXT_BYTES; /* C.UTF-8: code point order, which is byte order */
		return;
	}
	m->text_loc = collation_locale(collate);
	if (m->text_loc) {
		m->text_order = TEXT_LOCALE;
		return;
	}
	snprintf(m->collate, sizeof m->collate, "locale %.40s is not installed here", collate);
	m->text_order = TEXT_UNKNOWN;
}

bool sp_merge_set_columns(sp_merge_t *m, const uint8_t *body, size_t len)
{
	if (m->failed || m->ncols >= 0)
		return !m->failed;
	return setup_columns(m, body, len, false);
}

/* Columns known from the plan alone: a concatenation whose rows came without a RowDescription. */
static bool columns_from_plan(sp_merge_t *m)
{
	if (m->ncols >= 0)
		return true;
	if (m->sorted || m->agg)
		return fail(m, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "cannot merge rows from shards without a RowDescription");
	if (m->plan.n_cols == 0)
		return true; /* rows pass through unchanged */
	m->ncols = m->plan.n_cols;
	m->cols = calloc((size_t)m->ncols, sizeof(col_t));
	m->vals = calloc((size_t)m->ncols, sizeof(val_t));
	if (!m->cols || !m->vals)
		return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	m->n_visible = 0;
	for (int c = 0; c < m->ncols; c++) {
		m->cols[c].hidden = m->plan.agg[c] == SP_MAGG_HIDDEN;
		m->cols[c].acc = -1;
		m->n_visible += !m->cols[c].hidden;
	}
	m->rewrite = m->n_visible != m->ncols;
	return true;
}

bool sp_merge_feed(sp_merge_t *m, int shard, char type, const uint8_t *body, size_t len)
{
	if (m->failed || m->finished)
		return true; /* already reported, or abandoned: swallow */
	if (shard < 0 || shard >= m->n_shards)
		return fail(m, SP_SQLSTATE_INTERNAL, "merge: no shard %d", shard);
	shard_t *s = &m->shards[shard];

	switch (type) {
	case SP_BE_ROW_DESCRIPTION:
		if (s->described || s->ended)
			return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
				    "shard %d sent a second RowDescription", shard);
		s->described = true;
		if (m->ncols < 0) {
			m->first_desc_shard = shard;
			return setup_columns(m, body, len, true);
		}
		if (m->first_desc_shard < 0)
			m->first_desc_shard = shard; /* set_columns gave the layout */
		return check_columns(m, shard, body, len);

	case SP_BE_DATA_ROW:
		if (s->ended)
			return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
				    "shard %d sent a row after the end of its result", shard);
		if (!columns_from_plan(m))
			return false;
		if (!parse_row(body, len, m->ncols, m->vals))
			return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
				    "malformed DataRow from shard %d", shard);
		if (m->agg)
			return combine_row(m);
		if (m->limit_reached)
			return true;
		if (!m->sorted) {
			offer_row(m, body, len, m->vals);
			return true;
		}
		{
			uint8_t l[4];
			sp_put_be32(l, (uint32_t)len);
			if (!sp_buf_append(&s->q, l, 4) || !sp_buf_append(&s->q, body, len))
				return fail(m, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			if (++s->q_rows == 1) {
				set_head(m, s);
				drain_sorted(m);
			}
		}
		return true;

	case SP_BE_PORTAL_SUSPENDED:
		/* the shard's Execute row limit: as many rows as the client asked, in order */
		s->ended = true;
		if (m->sorted)
			drain_sorted(m);
		return true;

	case SP_BE_COMMAND_COMPLETE:
		if (!m->have_tag) {
			/* FETCH from a cursor on every shard answers FETCH n, anything else SELECT
			 * n */
			const char *w =
			    len >= 6 && memcmp(body, "FETCH ", 6) == 0 ? "FETCH" : "SELECT";
			snprintf(m->tag_word, sizeof m->tag_word, "%s", w);
			m->have_tag = true;
		}
		s->ended = true;
		if (m->sorted)
			drain_sorted(m);
		return true;

	case SP_BE_EMPTY_QUERY:
		s->ended = true;
		s->empty = true;
		if (m->sorted)
			drain_sorted(m);
		return true;

	case SP_BE_ERROR: {
		if (m->limit_reached) {
			/*
			 * The client has every row it asked for; this is most likely
			 * the cancel the caller sent, and a single server would have
			 * stopped before reaching it anyway.
			 */
			s->ended = true;
			return true;
		}
		const char *msg = sp_msg_error_field(body, len, 'M');
		const char *code = sp_msg_error_field(body, len, 'C');
		snprintf(m->error, sizeof m->error, "%s", msg ? msg : "error on a shard");
		snprintf(m->shard_sqlstate, sizeof m->shard_sqlstate, "%s",
			 code && strlen(code) == 5 ? code : "XX000");
		m->sqlstate = m->shard_sqlstate;
		size_t at = sp_msg_begin(m->out, SP_BE_ERROR);
		pq_sendbytes(m->out, body, len);
		sp_msg_end(m->out, at);
		m->failed = true;
		drop_queues(m);
		return true;
	}

	case SP_BE_NOTICE:
	case SP_BE_NOTIFICATION:
	case SP_BE_PARAMETER_STATUS:
		pass_notice(m, shard, type, body, len);
		return true;

	default:
		return fail(m, SP_SQLSTATE_PROTOCOL_VIOLATION,
			    "unexpected message '%c' from shard %d in a merged result", type,
			    shard);
	}
}

bool sp_merge_wants_more(const sp_merge_t *m, int shard)
{
	if (!m->sorted || m->failed || m->limit_reached || shard < 0 || shard >= m->n_shards)
		return true;
	const shard_t *s = &m->shards[shard];
	return s->q_rows < SP_MERGE_QUEUE_ROWS && sp_buf_len(&s->q) < SP_MERGE_QUEUE_BYTES;
}

bool sp_merge_all_ended(const sp_merge_t *m)
{
	for (int i = 0; i < m->n_shards; i++)
		if (!m->shards[i].ended)
			return false;
	return true;
}

void sp_merge_finish(sp_merge_t *m)
{
	if (m->finished)
		return;
	for (int i = 0; i < m->n_shards; i++)
		m->shards[i].ended = true;
	if (!m->failed && m->sorted)
		drain_sorted(m);
	if (!m->failed && m->agg && m->ncols >= 0)
		finish_aggs(m);
	m->finished = true;
	if (m->failed)
		return;

	bool all_empty = true;
	for (int i = 0; i < m->n_shards; i++)
		if (!m->shards[i].empty)
			all_empty = false;
	if (all_empty) {
		sp_msg_write_empty(m->out, SP_BE_EMPTY_QUERY);
		return;
	}
	if (m->max_rows > 0 && m->sent >= m->max_rows) {
		/* as PostgreSQL: the row limit reached, the portal is suspended (even when no
		 * row is left; the client's next Execute finds out) */
		size_t at = sp_msg_begin(m->out, SP_BE_PORTAL_SUSPENDED);
		sp_msg_end(m->out, at);
		return;
	}
	char tag[48];
	snprintf(tag, sizeof tag, "%s %lld", m->have_tag ? m->tag_word : "SELECT",
		 (long long)m->sent);
	sp_msg_write_command_complete(m->out, tag);
}

void sp_merge_set_max_rows(sp_merge_t *m, int64_t n)
{
	m->max_rows = n > 0 ? n : 0;
}

bool sp_merge_needs_all_rows(const sp_merge_t *m)
{
	return m->plan.has_aggs || m->plan.offset > 0;
}

bool sp_merge_failed(const sp_merge_t *m)
{
	return m->failed;
}

const char *sp_merge_error(const sp_merge_t *m)
{
	return m->error;
}

const char *sp_merge_sqlstate(const sp_merge_t *m)
{
	return m->sqlstate;
}

const char *sp_merge_hint(const sp_merge_t *m)
{
	return m->hint[0] ? m->hint : NULL;
}

bool sp_merge_limit_reached(const sp_merge_t *m)
{
	return m->limit_reached;
}

uint64_t sp_merge_rows_sent(const sp_merge_t *m)
{
	return (uint64_t)m->sent;
}
