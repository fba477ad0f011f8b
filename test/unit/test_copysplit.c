/*
 * test_copysplit.c - splitting COPY FROM STDIN data into rows per shard.
 *
 * The expected rows and key values follow what PostgreSQL 15 itself makes of
 * the same bytes; the less obvious cases were checked on a real 15.20 server
 * (psycopg's cursor.copy() sending the raw bytes): "ab\.\n" is the row "ab"
 * then end of data; "\." at the very end without a line end is an error in
 * text ("end-of-copy marker corrupt") and data in csv; "x\\\ny" is one value
 * "x<newline>y"; a lone \r ends lines when the first line ended that way;
 * in csv a quoted "\." line is data and ,"" is NULL then an empty string.
 *
 * Every input is also fed split at every byte position, and one byte at a
 * time, and must give exactly the same result.
 */
#include "copysplit.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 3

typedef struct rec {
	char log[8192]; /* one "[k1|k2]" per call, <NULL> for NULL */
	size_t o;
} rec_t;

/* Integer keys go to key % NSHARDS, anything else by a small hash, NULL to shard 0. */
static int shard_cb(void *arg, const char *const *kt, const bool *kn, int n, char *err,
		    size_t errlen)
{
	rec_t *r = arg;
	unsigned h = 0;
	r->o += (size_t)snprintf(r->log + r->o, sizeof r->log - r->o, "[");
	for (int k = 0; k < n; k++) {
		r->o += (size_t)snprintf(r->log + r->o, sizeof r->log - r->o, "%s%s", k ? "|" : "",
					 kn[k] ? "<NULL>" : kt[k]);
		if (kn[k])
			continue;
		if (strcmp(kt[k], "bad") == 0) {
			snprintf(err, errlen, "invalid input syntax for type integer: \"bad\"");
			return -1;
		}
		char *end;
		long v = strtol(kt[k], &end, 10);
		if (*kt[k] && !*end)
			h += (unsigned)v;
		else
			for (const char *c = kt[k]; *c; c++)
				h = h * 31 + (unsigned char)*c;
	}
	r->o += (size_t)snprintf(r->log + r->o, sizeof r->log - r->o, "]");
	return (int)(h % NSHARDS);
}

typedef struct result {
	bool ok;
	char err[256];
	char out[NSHARDS][4096];
	uint64_t rows;
	char log[8192];
} result_t;

static void run(const sp_copy_opts_t *opts, const int *keys, int n_keys, const char *data,
		size_t len, const size_t *cuts, int n_cuts, result_t *res)
{
	rec_t r = {{0}, 0};
	sp_buf_t out[NSHARDS] = {{0}};
	sp_copysplit_t *cs = sp_copysplit_new(opts, keys, n_keys, shard_cb, &r, NSHARDS);
	size_t at = 0;
	memset(res, 0, sizeof *res);
	res->ok = true;
	for (int c = 0; c <= n_cuts && res->ok; c++) {
		size_t end = c < n_cuts ? cuts[c] : len;
		res->ok = sp_copysplit_feed(cs, (const uint8_t *)data + at, end - at, out, res->err,
					    sizeof res->err);
		at = end;
	}
	if (res->ok)
		res->ok = sp_copysplit_finish(cs, out, res->err, sizeof res->err);
	for (int s = 0; s < NSHARDS; s++) {
		snprintf(res->out[s], sizeof res->out[s], "%.*s", (int)sp_buf_len(&out[s]),
			 (const char *)sp_buf_head(&out[s]));
		sp_buf_free(&out[s]);
	}
	res->rows = sp_copysplit_rows(cs);
	snprintf(res->log, sizeof res->log, "%s", r.log);
	sp_copysplit_free(cs);
}

static bool same(const result_t *a, const result_t *b)
{
	if (a->ok != b->ok || strcmp(a->err, b->err) != 0 || a->rows != b->rows ||
	    strcmp(a->log, b->log) != 0)
		return false;
	for (int s = 0; s < NSHARDS; s++)
		if (strcmp(a->out[s], b->out[s]) != 0)
			return false;
	return true;
}

/*
 * Run data whole; check every two-way split and byte-at-a-time feeding give
 * the same; then compare with the expected outputs (NULL: not checked).
 */
static void check(const char *name, const sp_copy_opts_t *opts, const int *keys, int n_keys,
		  const char *data, size_t len, const char *o0, const char *o1, const char *o2,
		  const char *log, const char *err)
{
	result_t whole, part;
	run(opts, keys, n_keys, data, len, NULL, 0, &whole);
	int bad_split = -1;
	for (size_t k = 0; k <= len && bad_split < 0; k++) {
		run(opts, keys, n_keys, data, len, &k, 1, &part);
		if (!same(&whole, &part))
			bad_split = (int)k;
	}
	ok(bad_split < 0, "%s: same result split at every byte position%s", name,
	   bad_split < 0 ? "" : " (differs)");
	if (bad_split >= 0)
		printf("#   first differing split at %d: ok=%d err='%s' log='%s'\n", bad_split,
		       part.ok, part.err, part.log);
	size_t *cuts = malloc((len + 1) * sizeof *cuts);
	for (size_t k = 0; k < len; k++)
		cuts[k] = k;
	run(opts, keys, n_keys, data, len, cuts, (int)len, &part);
	free(cuts);
	ok(same(&whole, &part), "%s: same result fed one byte at a time", name);

	if (err) {
		ok(!whole.ok, "%s: fails", name);
		is_str(whole.err, err, "%s: error text", name);
	} else {
		ok(whole.ok, "%s: succeeds%s%s", name, whole.ok ? "" : ": ", whole.err);
	}
	if (o0)
		is_str(whole.out[0], o0, "%s: shard 0 rows", name);
	if (o1)
		is_str(whole.out[1], o1, "%s: shard 1 rows", name);
	if (o2)
		is_str(whole.out[2], o2, "%s: shard 2 rows", name);
	if (log)
		is_str(whole.log, log, "%s: keys handed to shard_of", name);
}

#define CHECK(name, opts, keys, data, ...)                                                         \
	check(name, opts, keys, (int)(sizeof(keys) / sizeof(int)), data, sizeof(data) - 1,         \
	      __VA_ARGS__)

static const int K0[] = {0};
static const int K1[] = {1};
static const int K2[] = {2};
static const int K20[] = {2, 0};

static void test_text(void)
{
	sp_copy_opts_t t = {.format = SP_CSPLIT_TEXT};

	CHECK("basic", &t, K0, "1\ta\n2\tb\n3\tc\n4\td\n", "3\tc\n", "1\ta\n4\td\n", "2\tb\n",
	      "[1][2][3][4]", NULL);
	CHECK("key in the second column", &t, K1, "a\t1\nb\t2\n", "", "a\t1\n", "b\t2\n", "[1][2]",
	      NULL);
	CHECK("escapes in the key are undone before hashing", &t, K1,
	      "1\tA\\x42\\103\\n\\\\z\\t\\r\\b\\f\\v\\Z\trest\n", NULL, NULL, NULL,
	      "[ABC\n\\z\t\r\b\f\vZ]", NULL);
	CHECK("octal with 1-3 digits, hex with 1-2", &t, K0, "\\101\\7\\1010\\x4\\x41g\tx\n", NULL,
	      NULL, NULL,
	      "[A\a"
	      "A0\x04"
	      "Ag]",
	      NULL);
	CHECK("\\N is NULL only as the whole raw field", &t, K20, "\\N\tx\t\\N\n\\\\N\tx\t5\n",
	      "\\N\tx\t\\N\n", NULL, NULL, "[<NULL>|<NULL>][5|\\N]", NULL);
	CHECK("escaped delimiter inside a key", &t, K0, "a\\\tb\tc\n", NULL, NULL, NULL, "[a\tb]",
	      NULL);
	CHECK("backslash-newline is data, not a line end", &t, K0, "k\\\nv\tw\nz\ty\n", NULL, NULL,
	      NULL, "[k\nv][z]", NULL);
	CHECK("end marker: the rest is ignored", &t, K0, "1\ta\n\\.\n2\tb\n", "", "1\ta\n", "",
	      "[1]", NULL);
	CHECK("end marker after data on the same line", &t, K0, "1\ta\n2\\.\n7\tb\n", "", "1\ta\n",
	      "2\\.\n", "[1][2]", NULL);
	CHECK("\\\\. is data", &t, K0, "\\\\.\tx\n", NULL, NULL, NULL, "[\\.]", NULL);
	CHECK("end marker without a line end", &t, K0, "1\ta\n\\.", NULL, NULL, NULL, "[1]",
	      "row 2: end-of-copy marker corrupt");
	CHECK("end marker followed by junk", &t, K0, "1\ta\n\\.x\n", NULL, NULL, NULL, "[1]",
	      "row 2: end-of-copy marker corrupt");
	CHECK("CRLF kept raw, not part of the key", &t, K1, "1\ta\r\n2\t3\r\n\\.\r\n9\t9\r\n",
	      "2\t3\r\n", "1\ta\r\n", "", "[a][3]", NULL);
	CHECK("lone CR line ends (decided by the first line)", &t, K1, "1\t2\r2\t4\r3\t6", "3\t6",
	      "2\t4\r", "1\t2\r", "[2][4][6]", NULL);
	CHECK("last line without a line end", &t, K0, "1\ta\n2\tb", "", "1\ta\n", "2\tb", "[1][2]",
	      NULL);
	CHECK("empty input", &t, K0, "", "", "", "", "", NULL);
	CHECK("empty line is one empty field", &t, K0, "\n", "\n", "", "", "[]", NULL);
	CHECK("missing key column", &t, K2, "1\t2\t3\n1\t2\n", NULL, NULL, NULL, "[3]",
	      "row 2: missing data for shard key column 3");
	CHECK("shard_of error is reported with the row", &t, K0, "1\tx\nbad\ty\n", NULL, NULL, NULL,
	      "[1][bad", "row 2: invalid input syntax for type integer: \"bad\"");
	CHECK("zero byte in a key", &t, K0, "a\\0b\tx\n", NULL, NULL, NULL, "",
	      "row 1: shard key column 1 contains a zero byte");
	CHECK("trailing backslash at the very end is dropped", &t, K0, "x\\", NULL, NULL, NULL,
	      "[x]", NULL);

	sp_copy_opts_t pipe = {.format = SP_CSPLIT_TEXT, .delimiter = '|'};
	CHECK("custom delimiter", &pipe, K1, "1|a\\|b|c\n2|\t|d\n", NULL, NULL, NULL, "[a|b][\t]",
	      NULL);
	sp_copy_opts_t nul = {.format = SP_CSPLIT_TEXT, .null_str = "NULL"};
	CHECK("custom NULL string", &t, K0, "NULL\tx\n", NULL, NULL, NULL, "[NULL]", NULL);
	CHECK("custom NULL string honoured", &nul, K0, "NULL\tx\n\\N\ty\n", NULL, NULL, NULL,
	      "[<NULL>][N]", NULL);
	sp_copy_opts_t hdr = {.format = SP_CSPLIT_TEXT, .header = true};
	CHECK("header line not hashed, copied to every shard", &hdr, K0, "id\tname\n1\tx\n", "id\tname\n",
	      "id\tname\n1\tx\n", "id\tname\n", "[1]", NULL);
	CHECK("header only", &hdr, K0, "id\tname\n", "id\tname\n", "id\tname\n", "id\tname\n", "", NULL);
}

static void test_csv(void)
{
	sp_copy_opts_t c = {.format = SP_CSPLIT_CSV};

	CHECK("csv basic", &c, K0, "1,a\n2,b\n", "", "1,a\n", "2,b\n", "[1][2]", NULL);
	CHECK("quoted delimiter and newline", &c, K1, "1,\"a,b\nc\",x\n2,\"say \"\"hi\"\"\",y\n",
	      NULL, NULL, NULL, "[a,b\nc][say \"hi\"]", NULL);
	CHECK("partly quoted field", &c, K0, "\"a\"\"b\"x,y\n", NULL, NULL, NULL, "[a\"bx]", NULL);
	CHECK("unquoted empty is NULL, quoted empty is not", &c, K0, ",x\n\"\",y\n", NULL, NULL,
	      NULL, "[<NULL>][]", NULL);
	CHECK("quoted line end inside the key", &c, K0, "\"a\r\nb\",1\r\nc,2\r\n", NULL, NULL, NULL,
	      "[a\r\nb][c]", NULL);
	CHECK("end marker alone on a line", &c, K0, "x,y\n\\.\nq,w\n", NULL, NULL, NULL, "[x]",
	      NULL);
	CHECK("end marker in quotes is data", &c, K1, "x,\"a\n\\.\nb\"\n", NULL, NULL, NULL,
	      "[a\n\\.\nb]", NULL);
	CHECK("\\.x at line start is data", &c, K0, "\\.x,w\n", NULL, NULL, NULL, "[\\.x]", NULL);
	CHECK("\\. at the very end is data in csv", &c, K0, "x,y\n\\.", NULL, NULL, NULL,
	      "[x][\\.]", NULL);
	CHECK("CRLF end marker", &c, K0, "x,y\r\n\\.\r\nq,w\r\n", NULL, NULL, NULL, "[x]", NULL);
	CHECK("unterminated quote at the end", &c, K0, "1,a\n\"abc,d", NULL, NULL, NULL, "[1]",
	      "row 2: unterminated CSV quoted field");
	CHECK("unterminated quote in a key field", &c, K1, "1,\"ab", NULL, NULL, NULL, "",
	      "row 1: unterminated CSV quoted field");
	CHECK("quoted key with a delimiter after other columns", &c, K20, "a,b,\"c,d\"\n", NULL,
	      NULL, NULL, "[c,d|a]", NULL);
	CHECK("missing key column", &c, K2, "1,2\n", NULL, NULL, NULL, "",
	      "row 1: missing data for shard key column 3");

	sp_copy_opts_t esc = {.format = SP_CSPLIT_CSV, .escape = '\\'};
	CHECK("escape char distinct from quote", &esc, K0,
	      "\"a\\\"b\",1\n\"c\\\\d\",2\n\"e\\f\",3\n", NULL, NULL, NULL, "[a\"b][c\\d][e\\f]",
	      NULL);
	CHECK("escaped quote does not end the quotes", &esc, K1, "1,\"x\\\",\ny\"\n", NULL, NULL,
	      NULL, "[x\",\ny]", NULL);
	sp_copy_opts_t sq = {.format = SP_CSPLIT_CSV, .quote = '\'', .delimiter = ';'};
	CHECK("custom quote and delimiter", &sq, K1, "1;'a;b'\n2;'it''s'\n", NULL, NULL, NULL,
	      "[a;b][it's]", NULL);
	sp_copy_opts_t nl = {.format = SP_CSPLIT_CSV, .null_str = "NULL"};
	CHECK("csv NULL string: only unquoted", &nl, K20, "NULL,x,\"NULL\"\n,y,z\n", NULL, NULL,
	      NULL, "[NULL|<NULL>][z|]", NULL);
	/* FORCE_NOT_NULL / FORCE_NULL of a key column, as NextCopyFrom reads them */
	sp_copy_opts_t fnn = {.format = SP_CSPLIT_CSV, .force_not_null = 1};
	CHECK("csv FORCE_NOT_NULL key: an empty unquoted key is the empty string", &fnn, K20,
	      ",x,\n,y,\"\"\n", NULL, NULL, NULL, "[|<NULL>][|<NULL>]", NULL);
	sp_copy_opts_t fnn2 = {.format = SP_CSPLIT_CSV, .null_str = "NULL", .force_not_null = 2};
	CHECK("csv FORCE_NOT_NULL of the second key: the NULL string itself", &fnn2, K20,
	      "NULL,x,NULL\n", NULL, NULL, NULL, "[<NULL>|NULL]", NULL);
	sp_copy_opts_t fn = {.format = SP_CSPLIT_CSV, .force_null = 1};
	CHECK("csv FORCE_NULL key: a quoted empty key is NULL", &fn, K0, "\"\",1\n\"a\",2\n,3\n",
	      NULL, NULL, NULL, "[<NULL>][a][<NULL>]", NULL);
	sp_copy_opts_t fn2 = {.format = SP_CSPLIT_CSV, .null_str = "N", .force_null = 1};
	CHECK("csv FORCE_NULL key with NULL 'N': quoted N is NULL, NN is not", &fn2, K0,
	      "\"N\",1\n\"NN\",2\n", NULL, NULL, NULL, "[<NULL>][NN]", NULL);
	sp_copy_opts_t hdr = {.format = SP_CSPLIT_CSV, .header = true};
	CHECK("csv header with a quoted newline", &hdr, K0, "\"h\n1\",h2\nx,y\n", NULL, NULL, NULL,
	      "[x]", NULL);
	CHECK("csv lone CR line ends", &c, K0, "a,b\rc,d\r", NULL, NULL, NULL, "[a][c]", NULL);
}

static void test_misc(void)
{
	sp_copy_opts_t t = {.format = SP_CSPLIT_TEXT};
	rec_t r = {{0}, 0};
	sp_buf_t out[NSHARDS] = {{0}};
	char err[256] = "";
	sp_copysplit_t *cs = sp_copysplit_new(&t, K0, 1, shard_cb, &r, NSHARDS);

	/* a 1 MB row fed in 1000-byte pieces: kept whole, scanned once */
	size_t big = 1 << 20;
	char *row = malloc(big + 3);
	memcpy(row, "7\t", 2);
	memset(row + 2, 'x', big - 3);
	row[big - 1] = '\n';
	bool good = true;
	for (size_t at = 0; at < big && good; at += 1000)
		good = sp_copysplit_feed(cs, (uint8_t *)row + at,
					 at + 1000 <= big ? 1000 : big - at, out, err, sizeof err);
	ok(good, "big row fed in pieces");
	is_int(sp_buf_len(&out[1]), big, "big row forwarded whole to its shard");
	ok(memcmp(sp_buf_head(&out[1]), row, big) == 0, "big row bytes unchanged");
	is_int(sp_copysplit_rows(cs), 1, "rows counted");
	ok(sp_copysplit_feed(cs, (const uint8_t *)"\\.\nignored\n", 11, out, err, sizeof err),
	   "end marker");
	ok(sp_copysplit_feed(cs, (const uint8_t *)"more\tjunk\n", 10, out, err, sizeof err),
	   "data after the end marker is ignored");
	ok(sp_copysplit_finish(cs, out, err, sizeof err), "finish");
	is_int(sp_copysplit_rows(cs), 1, "nothing counted after the marker");
	free(row);
	sp_copysplit_free(cs);
	for (int s = 0; s < NSHARDS; s++)
		sp_buf_free(&out[s]);

	/* many rows in one feed go out without any pending copy */
	cs = sp_copysplit_new(&t, K0, 1, shard_cb, &r, NSHARDS);
	char many[8000];
	size_t o = 0;
	for (int i = 0; i < 900; i++)
		o += (size_t)snprintf(many + o, sizeof many - o, "%d\n", i % 3);
	ok(sp_copysplit_feed(cs, (uint8_t *)many, o, out, err, sizeof err), "900 rows in one feed");
	ok(sp_copysplit_finish(cs, out, err, sizeof err), "finish");
	is_int(sp_copysplit_rows(cs), 900, "900 rows forwarded");
	is_int(sp_buf_len(&out[0]), 600, "shard 0 got its 300 rows");
	is_int(sp_buf_len(&out[2]), 600, "shard 2 got its 300 rows");
	sp_copysplit_free(cs);
	for (int s = 0; s < NSHARDS; s++)
		sp_buf_free(&out[s]);

	ok(sp_copysplit_new(&t, K0, 0, shard_cb, &r, NSHARDS) == NULL, "no key columns: refused");
	int neg[] = {-1};
	ok(sp_copysplit_new(&t, neg, 1, shard_cb, &r, NSHARDS) == NULL,
	   "negative key column: refused");
}

int main(void)
{
	test_text();
	test_csv();
	test_misc();
	return done_testing();
}
