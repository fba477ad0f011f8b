/*
 * test_merge.c - merging one SELECT's results from several shards, fed as
 * synthetic backend messages; the output is decoded into a compact text
 * ("T[a:23] D[1|NULL] C[SELECT 1]") and compared.
 *
 * Every expected sum, avg and float text below was checked against a real
 * PostgreSQL 15.20 server (throwaway cluster on 127.0.0.1:26100, default
 * settings: extra_float_digits = 1, DateStyle ISO, lc_collate C.UTF-8) by
 * running the same aggregate over all the shards' rows in one table, e.g.
 * select avg(x) from (values (1),(2),(2)) t(x) -> 1.6666666666666667.
 */
#include "merge.h"
#include "msg.h"
#include "tap.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INT2 21
#define INT4 23
#define INT8 20
#define TEXT 25
#define FLOAT4 700
#define FLOAT8 701
#define NUMERIC 1700
#define DATE 1082
#define TIMESTAMPTZ 1184
#define INTERVAL 1186
#define BOOL 16

static sp_buf_t body;

static void plan_init(sp_merge_plan_t *p)
{
	memset(p, 0, sizeof *p);
	p->limit = -1;
}

static void add_sort(sp_merge_plan_t *p, int col, bool desc, bool nulls_first)
{
	p->sort[p->n_sort].col = col;
	p->sort[p->n_sort].desc = desc;
	p->sort[p->n_sort].nulls_first = nulls_first;
	p->n_sort++;
}

static bool feed_T_fmt(sp_merge_t *m, int shard, int n, const char *const *names,
		       const uint32_t *types, int16_t format)
{
	sp_buf_reset(&body);
	pq_sendint16(&body, (int16_t)n);
	for (int c = 0; c < n; c++) {
		pq_sendstring(&body, names[c]);
		pq_sendint32(&body, 0);
		pq_sendint16(&body, 0);
		pq_sendint32(&body, (int32_t)types[c]);
		pq_sendint16(&body, -1);
		pq_sendint32(&body, -1);
		pq_sendint16(&body, format);
	}
	return sp_merge_feed(m, shard, SP_BE_ROW_DESCRIPTION, sp_buf_head(&body),
			     sp_buf_len(&body));
}

#define T(m, s, names, ...)                                                                        \
	feed_T_fmt(m, s, (int)(sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)), names,       \
		   (uint32_t[]){__VA_ARGS__}, 0)

static bool feed_row(sp_merge_t *m, int shard, const char *const *vals, int n)
{
	sp_buf_reset(&body);
	pq_sendint16(&body, (int16_t)n);
	for (int c = 0; c < n; c++) {
		if (!vals[c]) {
			pq_sendint32(&body, -1);
			continue;
		}
		pq_sendint32(&body, (int32_t)strlen(vals[c]));
		pq_sendbytes(&body, vals[c], strlen(vals[c]));
	}
	return sp_merge_feed(m, shard, SP_BE_DATA_ROW, sp_buf_head(&body), sp_buf_len(&body));
}

#define D(m, s, ...)                                                                               \
	feed_row(m, s, (const char *[]){__VA_ARGS__},                                              \
		 (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)))

static bool C(sp_merge_t *m, int shard, const char *tag)
{
	return sp_merge_feed(m, shard, SP_BE_COMMAND_COMPLETE, (const uint8_t *)tag,
			     strlen(tag) + 1);
}

static bool E(sp_merge_t *m, int shard, const char *code, const char *msg)
{
	sp_buf_t b = {0};
	sp_msg_write_error(&b, "ERROR", code, msg, NULL, NULL);
	bool r = sp_merge_feed(m, shard, SP_BE_ERROR, b.data + 5, b.end - 5);
	sp_buf_free(&b);
	return r;
}

static bool N(sp_merge_t *m, int shard, const char *msg)
{
	sp_buf_t b = {0};
	sp_msg_write_notice(&b, "00000", msg);
	bool r = sp_merge_feed(m, shard, SP_BE_NOTICE, b.data + 5, b.end - 5);
	sp_buf_free(&b);
	return r;
}

/* Decode (and consume) everything in out as one line of text. */
static char summary_text[65536];
static const char *out_text(sp_buf_t *out)
{
	size_t o = 0;
	summary_text[0] = '\0';
#define PUT(...) o += (size_t)snprintf(summary_text + o, sizeof summary_text - o, __VA_ARGS__)
	while (sp_buf_len(out) >= 5) {
		const uint8_t *h = sp_buf_head(out);
		char type = (char)h[0];
		uint32_t len = sp_get_be32(h + 1);
		sp_msg_reader_t r;
		sp_msg_reader_init(&r, h + 5, len - 4);
		if (o)
			PUT(" ");
		switch (type) {
		case 'T': {
			int16_t n;
			pq_getmsgint16(&r, &n);
			PUT("T[");
			for (int c = 0; c < n; c++) {
				const char *name;
				int32_t x, typ;
				int16_t y;
				pq_getmsgstring(&r, &name, NULL);
				pq_getmsgint32(&r, &x);
				pq_getmsgint16(&r, &y);
				pq_getmsgint32(&r, &typ);
				pq_getmsgint16(&r, &y);
				pq_getmsgint32(&r, &x);
				pq_getmsgint16(&r, &y);
				PUT("%s%s:%d", c ? "," : "", name, typ);
			}
			PUT("]");
			break;
		}
		case 'D': {
			int16_t n;
			pq_getmsgint16(&r, &n);
			PUT("D[");
			for (int c = 0; c < n; c++) {
				int32_t l;
				const uint8_t *p;
				pq_getmsgint32(&r, &l);
				if (l < 0) {
					PUT("%sNULL", c ? "|" : "");
				} else {
					pq_getmsgbytes(&r, (size_t)l, &p);
					PUT("%s%.*s", c ? "|" : "", (int)l, (const char *)p);
				}
			}
			PUT("]");
			if (r.pos != r.len)
				PUT("(trailing bytes!)");
			break;
		}
		case 'C':
			PUT("C[%s]", (const char *)h + 5);
			break;
		case 'I':
			PUT("I");
			break;
		case 'E':
			PUT("E[%s:%s]", sp_msg_error_field(h + 5, len - 4, 'C'),
			    sp_msg_error_field(h + 5, len - 4, 'M'));
			break;
		case 'N':
			PUT("N[%s]", sp_msg_error_field(h + 5, len - 4, 'M'));
			break;
		default:
			PUT("?%c", type);
		}
		sp_buf_consume(out, 1 + len);
	}
#undef PUT
	return summary_text;
}

static const char *const AB[] = {"a", "b"};
static const char *const A[] = {"a"};

/* ------------------------------------------------------------------ concatenation */

static void test_concat(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	sp_merge_t *m = sp_merge_new(&p, 2, &out);

	ok(T(m, 1, AB, INT4, TEXT), "concat: RowDescription accepted");
	is_str(out_text(&out), "T[a:23,b:25]", "concat: first RowDescription sent at once");
	ok(D(m, 1, "1", "x"), "concat: row from shard 1");
	is_str(out_text(&out), "D[1|x]", "concat: row streams through before shard 0 described");
	ok(T(m, 0, AB, INT4, TEXT), "concat: second RowDescription");
	is_str(out_text(&out), "", "concat: second RowDescription not sent");
	D(m, 0, "2", NULL);
	D(m, 1, "3", "z");
	C(m, 1, "SELECT 2");
	ok(!sp_merge_all_ended(m), "concat: not all ended");
	C(m, 0, "SELECT 1");
	ok(sp_merge_all_ended(m), "concat: all ended");
	ok(sp_merge_wants_more(m, 0), "concat: always wants more");
	sp_merge_finish(m);
	is_str(out_text(&out), "D[2|NULL] D[3|z] C[SELECT 3]",
	       "concat: rows in arrival order, one CommandComplete");
	ok(!sp_merge_failed(m), "concat: not failed");
	sp_merge_free(m);

	/* LIMIT 2 OFFSET 1 */
	plan_init(&p);
	p.limit = 2;
	p.offset = 1;
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, INT4);
	T(m, 1, A, INT4);
	D(m, 0, "1");
	D(m, 1, "2");
	ok(!sp_merge_limit_reached(m), "limit: not yet reached after 1 row sent");
	D(m, 0, "3");
	ok(sp_merge_limit_reached(m), "limit: reached after offset + limit rows");
	D(m, 1, "4");
	C(m, 0, "SELECT 2");
	E(m, 1, "57014", "canceling statement due to user request");
	ok(!sp_merge_failed(m), "limit: the cancel's error after the limit is swallowed");
	ok(sp_merge_all_ended(m), "limit: cancelled shard counts as ended");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] D[2] D[3] C[SELECT 2]",
	       "limit/offset applied after merging");
	is_int(sp_merge_rows_sent(m), 2, "rows_sent");
	sp_merge_free(m);

	/* LIMIT 0 */
	plan_init(&p);
	p.limit = 0;
	m = sp_merge_new(&p, 1, &out);
	ok(sp_merge_limit_reached(m), "limit 0: reached at once");
	T(m, 0, A, INT4);
	D(m, 0, "1");
	C(m, 0, "SELECT 1");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] C[SELECT 0]", "limit 0: no rows");
	sp_merge_free(m);

	/* EmptyQueryResponse from all shards */
	plan_init(&p);
	m = sp_merge_new(&p, 3, &out);
	for (int i = 0; i < 3; i++)
		sp_merge_feed(m, i, SP_BE_EMPTY_QUERY, NULL, 0);
	ok(sp_merge_all_ended(m), "empty: all ended");
	sp_merge_finish(m);
	sp_merge_finish(m);
	is_str(out_text(&out), "I",
	       "empty query from every shard: one EmptyQueryResponse (finish idempotent)");
	sp_merge_free(m);

	/* FETCH on cursors */
	plan_init(&p);
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, INT4);
	T(m, 1, A, INT4);
	D(m, 0, "1");
	C(m, 0, "FETCH 1");
	C(m, 1, "FETCH 0");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] D[1] C[FETCH 1]", "FETCH tag kept");
	sp_merge_free(m);
	sp_buf_free(&out);
}

/* ------------------------------------------------------------------ sorted merge */

static void test_sorted_int(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	add_sort(&p, 0, false, false);
	sp_merge_t *m = sp_merge_new(&p, 3, &out);

	T(m, 0, AB, INT4, TEXT);
	T(m, 1, AB, INT4, TEXT);
	T(m, 2, AB, INT4, TEXT);
	out_text(&out);
	D(m, 0, "1", "a");
	D(m, 0, "9", "b");
	D(m, 0, "10", "c");
	is_str(out_text(&out), "", "sorted: nothing emitted while other shards have no row");
	D(m, 1, "2", "d");
	is_str(out_text(&out), "", "sorted: still waiting for shard 2");
	D(m, 2, "10", "f");
	is_str(out_text(&out), "D[1|a] D[2|d]",
	       "sorted: emits as soon as safe, stops when shard 1 runs dry");
	D(m, 1, "9", "e");
	is_str(out_text(&out), "D[9|b] D[9|e]", "sorted: tie goes to the lower shard first");
	C(m, 1, "SELECT 2");
	is_str(out_text(&out), "D[10|c]",
	       "sorted: ended shard no longer blocks; 10 after 9; shard 0 may still send a 10");
	D(m, 2, "100", "g");
	C(m, 0, "SELECT 3");
	is_str(out_text(&out), "D[10|f] D[100|g]",
	       "sorted: only shard 2 left running, its queue flows");
	C(m, 2, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out), "C[SELECT 7]", "sorted: one CommandComplete at the end");
	sp_merge_free(m);

	/* the same as text: byte order */
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, TEXT);
	T(m, 1, A, TEXT);
	D(m, 0, "1");
	D(m, 0, "10");
	D(m, 0, "9");
	D(m, 1, "100");
	D(m, 1, "2");
	C(m, 0, "SELECT 3");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:25] D[1] D[10] D[100] D[2] D[9] C[SELECT 5]",
	       "sorted text: C collation byte order");
	sp_merge_free(m);

	/* int8 beyond int64 never happens, but huge oid-like values do */
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, INT8);
	T(m, 1, A, INT8);
	D(m, 0, "-9223372036854775808");
	D(m, 0, "-5");
	D(m, 0, "9223372036854775807");
	D(m, 1, "-10");
	D(m, 1, "0");
	C(m, 0, "SELECT 3");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(
	    out_text(&out),
	    "T[a:20] D[-9223372036854775808] D[-10] D[-5] D[0] D[9223372036854775807] C[SELECT 5]",
	    "sorted int8: negatives and extremes");
	sp_merge_free(m);
	sp_buf_free(&out);
}

static const char *run_sorted_1col(uint32_t type, bool desc, bool nulls_first,
				   const char *const *s0, int n0, const char *const *s1, int n1)
{
	static char res[4096];
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	add_sort(&p, 0, desc, nulls_first);
	sp_merge_t *m = sp_merge_new(&p, 2, &out);
	feed_T_fmt(m, 0, 1, A, &type, 0);
	feed_T_fmt(m, 1, 1, A, &type, 0);
	for (int i = 0; i < n0; i++)
		feed_row(m, 0, &s0[i], 1);
	for (int i = 0; i < n1; i++)
		feed_row(m, 1, &s1[i], 1);
	C(m, 0, "SELECT");
	C(m, 1, "SELECT");
	sp_merge_finish(m);
	snprintf(res, sizeof res, "%s", out_text(&out));
	sp_merge_free(m);
	sp_buf_free(&out);
	/* drop the RowDescription and CommandComplete */
	char *d = strchr(res, ' ');
	char *c = strstr(res, " C[");
	if (c)
		*c = '\0';
	return d ? d + 1 : "";
}

#define ARR(...)                                                                                   \
	(const char *const[]){__VA_ARGS__},                                                        \
	    (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *))

static void test_sorted_kinds(void)
{
	/* NULLS and DESC: each shard's own order already follows the same ORDER BY */
	is_str(run_sorted_1col(INT4, false, false, ARR("1", "3", NULL), ARR("2", NULL)),
	       "D[1] D[2] D[3] D[NULL] D[NULL]", "ASC NULLS LAST (default)");
	is_str(run_sorted_1col(INT4, false, true, ARR(NULL, "1", "3"), ARR("2")),
	       "D[NULL] D[1] D[2] D[3]", "ASC NULLS FIRST");
	is_str(run_sorted_1col(INT4, true, true, ARR(NULL, "3", "1"), ARR(NULL, "20", "2")),
	       "D[NULL] D[NULL] D[20] D[3] D[2] D[1]", "DESC NULLS FIRST (default)");
	is_str(run_sorted_1col(INT4, true, false, ARR("3", "1", NULL), ARR("2")),
	       "D[3] D[2] D[1] D[NULL]", "DESC NULLS LAST");
	is_str(run_sorted_1col(TEXT, true, true, ARR("b", "a"), ARR("ba", "B")),
	       "D[ba] D[b] D[a] D[B]", "DESC text, bytes");

	/* float8: order of PostgreSQL's ORDER BY on the same values (NaN highest, -0 = 0) */
	is_str(run_sorted_1col(FLOAT8, false, false, ARR("-Infinity", "-1e-300", "1", "NaN"),
			       ARR("-0", "0", "1e+100", "Infinity")),
	       "D[-Infinity] D[-1e-300] D[-0] D[0] D[1] D[1e+100] D[Infinity] D[NaN]",
	       "float8 order with NaN and infinities");
	is_str(run_sorted_1col(FLOAT4, true, true, ARR("NaN", "1.5e+07", "2"),
			       ARR("Infinity", "3", "-3")),
	       "D[NaN] D[Infinity] D[1.5e+07] D[3] D[2] D[-3]", "float4 DESC: NaN first");

	/* numeric: NaN above Infinity, trailing zeros do not matter */
	is_str(
	    run_sorted_1col(
		NUMERIC, false, false, ARR("-Infinity", "-0.5", "1", "NaN"),
		ARR("-0.50", "0.0", "9.99999999999999999999", "10.000", "100", "Infinity")),
	    "D[-Infinity] D[-0.5] D[-0.50] D[0.0] D[1] D[9.99999999999999999999] D[10.000] D[100] "
	    "D[Infinity] D[NaN]",
	    "numeric order with specials and long decimals");
	is_str(run_sorted_1col(NUMERIC, false, false, ARR("-100", "-2.5"), ARR("-10.25", "-2.49")),
	       "D[-100] D[-10.25] D[-2.5] D[-2.49]", "numeric negatives");

	/* dates and timestamps: BC, 5-digit years, infinities, UTC offsets */
	is_str(run_sorted_1col(DATE, false, false, ARR("-infinity", "0044-03-15 BC", "2000-01-01"),
			       ARR("0001-01-01 BC", "0001-01-01", "10000-01-01", "infinity")),
	       "D[-infinity] D[0044-03-15 BC] D[0001-01-01 BC] D[0001-01-01] D[2000-01-01] "
	       "D[10000-01-01] D[infinity]",
	       "date order with BC and infinity");
	is_str(run_sorted_1col(
		   TIMESTAMPTZ, false, false,
		   ARR("0044-03-15 12:00:00+00:53:28 BC", "2024-10-27 02:30:00+02", "infinity"),
		   ARR("-infinity", "2024-10-27 02:00:00.5+02", "2024-10-27 02:30:00+01",
		       "10000-01-01 00:00:00+00")),
	       "D[-infinity] D[0044-03-15 12:00:00+00:53:28 BC] D[2024-10-27 02:00:00.5+02] "
	       "D[2024-10-27 02:30:00+02] D[2024-10-27 02:30:00+01] D[10000-01-01 00:00:00+00] "
	       "D[infinity]",
	       "timestamptz order by instant (DST fall-back hour, fractions)");
	is_str(run_sorted_1col(BOOL, false, false, ARR("f", "t"), ARR("f")), "D[f] D[f] D[t]",
	       "bool");
	is_str(run_sorted_1col(1042, false, false, ARR("a  ", "b"), ARR("a", "ab ")),
	       "D[a  ] D[a] D[ab ] D[b]", "bpchar ignores trailing blanks");
}

static void test_sorted_multi(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	add_sort(&p, 1, false, false); /* ORDER BY b, a DESC */
	add_sort(&p, 0, true, true);
	sp_merge_t *m = sp_merge_new(&p, 2, &out);
	T(m, 0, AB, INT4, TEXT);
	T(m, 1, AB, INT4, TEXT);
	D(m, 0, "5", "x");
	D(m, 0, "1", "x");
	D(m, 0, "7", "y");
	D(m, 1, "3", "x");
	D(m, 1, "9", "y");
	C(m, 0, "SELECT 3");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23,b:25] D[5|x] D[3|x] D[1|x] D[9|y] D[7|y] C[SELECT 5]",
	       "two sort keys, mixed directions");
	sp_merge_free(m);

	/* hidden sort column (the router added it): sorted by, never sent */
	plan_init(&p);
	p.n_cols = 2;
	p.agg[1] = SP_MAGG_HIDDEN;
	add_sort(&p, 1, false, false);
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, AB, TEXT, INT4);
	T(m, 1, AB, TEXT, INT4);
	D(m, 0, "two", "2");
	D(m, 1, "one", "1");
	D(m, 1, "three", "3");
	C(m, 0, "SELECT 1");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:25] D[one] D[two] D[three] C[SELECT 3]",
	       "hidden column removed from RowDescription and rows");
	sp_merge_free(m);

	/* sorted LIMIT with OFFSET */
	plan_init(&p);
	add_sort(&p, 0, false, false);
	p.limit = 2;
	p.offset = 1;
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, INT4);
	T(m, 1, A, INT4);
	D(m, 0, "1");
	D(m, 0, "3");
	D(m, 1, "2");
	ok(!sp_merge_limit_reached(m), "sorted limit: 3 is not safe while shard 1 may send less");
	D(m, 1, "4");
	ok(sp_merge_limit_reached(m), "sorted limit: reached once 3 is sent");
	D(m, 0, "5");
	ok(sp_merge_wants_more(m, 1), "sorted limit: drain the rest freely");
	C(m, 0, "SELECT 3");
	E(m, 1, "57014", "canceling statement due to user request");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] D[2] D[3] C[SELECT 2]", "sorted limit/offset");
	sp_merge_free(m);
	sp_buf_free(&out);
}

static void test_streaming_bound(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	add_sort(&p, 0, false, false);
	sp_merge_t *m = sp_merge_new(&p, 2, &out);
	T(m, 0, A, INT4);
	T(m, 1, A, INT4);
	out_text(&out);
	int i;
	char v[16];
	for (i = 0; i < 200 && sp_merge_wants_more(m, 0); i++) {
		snprintf(v, sizeof v, "%d", i);
		D(m, 0, v);
	}
	is_int(i, SP_MERGE_QUEUE_ROWS,
	       "wants_more false once the queue holds SP_MERGE_QUEUE_ROWS rows");
	ok(sp_merge_wants_more(m, 1), "the empty shard still wants more");
	is_str(out_text(&out), "", "nothing emitted while shard 1 has no row");
	D(m, 1, "10");
	const char *t = out_text(&out);
	ok(strncmp(t, "D[0] D[1] ", 10) == 0 && strstr(t, "D[10]") && !strstr(t, "D[11]"),
	   "rows up to shard 1's head emitted (%.40s...)", t);
	ok(sp_merge_wants_more(m, 0), "shard 0 wants more again after its queue drained");
	C(m, 1, "SELECT 1");
	t = out_text(&out);
	ok(strncmp(t, "D[11] ", 6) == 0 && strstr(t, "D[63]") != NULL,
	   "shard 1 ended: shard 0's queue flows");
	C(m, 0, "SELECT 64");
	sp_merge_finish(m);
	is_str(out_text(&out), "C[SELECT 65]", "count after streaming");
	sp_merge_free(m);
	sp_buf_free(&out);
}

/* ------------------------------------------------------------------ errors and notices */

static void test_errors(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	sp_merge_t *m = sp_merge_new(&p, 3, &out);
	T(m, 0, A, INT4);
	D(m, 0, "1");
	ok(E(m, 1, "22012", "division by zero"), "shard error: feed returns true (passed on)");
	ok(sp_merge_failed(m), "shard error: merge failed");
	is_str(sp_merge_sqlstate(m), "22012", "shard error: sqlstate kept");
	is_str(sp_merge_error(m), "division by zero", "shard error: message kept");
	D(m, 0, "2");
	E(m, 2, "22012", "division by zero");
	N(m, 0, "later notice");
	C(m, 0, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] D[1] E[22012:division by zero]",
	       "first error passed once, later output swallowed, no CommandComplete");
	sp_merge_free(m);

	/* column count mismatch */
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, AB, INT4, TEXT);
	ok(!T(m, 1, A, INT4), "column count mismatch: feed fails");
	is_str(sp_merge_sqlstate(m), "0A000", "mismatch: 0A000");
	ok(strstr(sp_merge_error(m), "2 columns from shard 0, 1 from shard 1") != NULL,
	   "mismatch message names both shards: %s", sp_merge_error(m));
	ok(D(m, 0, "1", "x"), "after a failure: swallowed");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23,b:25]", "mismatch: nothing after the RowDescription");
	sp_merge_free(m);

	/* type mismatch */
	m = sp_merge_new(&p, 2, &out);
	T(m, 1, AB, INT4, TEXT);
	ok(!T(m, 0, AB, INT8, TEXT), "type mismatch: feed fails");
	ok(strstr(sp_merge_error(m),
		  "column 1 (\"a\"): type 23 from shard 1, type 20 from shard 0") != NULL,
	   "type mismatch message: %s", sp_merge_error(m));
	sp_merge_free(m);
	out_text(&out);

	/* binary format in a sorted merge: big-endian int4, negative below positive */
	plan_init(&p);
	add_sort(&p, 0, false, false);
	m = sp_merge_new(&p, 2, &out);
	uint32_t ty = INT4;
	ok(feed_T_fmt(m, 0, 1, A, &ty, 1), "binary sort column accepted");
	feed_T_fmt(m, 1, 1, A, &ty, 1);
	{
		static const char v_m1[] = "\xff\xff\xff\xff", v_2[] = "\x00\x00\x00\x02",
				  v_1[] = "\x00\x00\x00\x01", v_300[] = "\x00\x00\x01\x2c";
		const char *rows0[] = {v_m1, v_2}, *rows1[] = {v_1, v_300};
		for (int i = 0; i < 2; i++) {
			sp_buf_reset(&body);
			pq_sendint16(&body, 1);
			pq_sendint32(&body, 4);
			pq_sendbytes(&body, rows0[i], 4);
			sp_merge_feed(m, 0, SP_BE_DATA_ROW, sp_buf_head(&body), sp_buf_len(&body));
			sp_buf_reset(&body);
			pq_sendint16(&body, 1);
			pq_sendint32(&body, 4);
			pq_sendbytes(&body, rows1[i], 4);
			sp_merge_feed(m, 1, SP_BE_DATA_ROW, sp_buf_head(&body), sp_buf_len(&body));
		}
	}
	C(m, 0, "SELECT 2");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	{
		/* the rows' int4 values, in the order they came out */
		char got[64] = "";
		size_t o = 0;
		while (sp_buf_len(&out) >= 5) {
			const uint8_t *h = sp_buf_head(&out);
			uint32_t len = sp_get_be32(h + 1);
			if (h[0] == 'D' && len == 4 + 2 + 4 + 4)
				o += (size_t)snprintf(got + o, sizeof got - o, "%d,",
						      (int32_t)sp_get_be32(h + 5 + 2 + 4));
			sp_buf_consume(&out, (size_t)len + 1);
		}
		is_str(got, "-1,1,2,300,", "binary: int4 values merged in numeric order");
	}
	sp_merge_free(m);

	/* a type whose order shardpool does not know (interval) is refused, in any format */
	plan_init(&p);
	add_sort(&p, 0, false, false);
	m = sp_merge_new(&p, 2, &out);
	ty = 1186;
	ok(!feed_T_fmt(m, 0, 1, A, &ty, 0), "interval sort column refused");
	is_str(sp_merge_sqlstate(m), "0A000", "unknown order: sqlstate");
	ok(strstr(sp_merge_error(m), "does not know the sort order") != NULL, "unknown order: message");
	is_str(out_text(&out), "", "unknown order: nothing sent");
	sp_merge_free(m);
	/* avg(real): the shards' sum(real) adds in single precision, PostgreSQL's avg in double */
	{
		sp_merge_plan_t ap;
		plan_init(&ap);
		ap.has_aggs = true;
		ap.n_cols = 2;
		ap.agg[0] = SP_MAGG_AVG_SUM;
		ap.avg_count_col[0] = 1;
		ap.agg[1] = SP_MAGG_HIDDEN;
		static const char *const an[] = {"avg", "count"};
		m = sp_merge_new(&ap, 2, &out);
		ok(!T(m, 0, an, 700, INT8), "avg() of a real column refused");
		ok(strstr(sp_merge_error(m), "avg(x::float8)") != NULL, "... saying what to write: %s",
		   sp_merge_error(m));
		is_str(out_text(&out), "", "... nothing sent");
		sp_merge_free(m);
	}
	/* ... and with the table the router named, the refusal names it and says what to do */
	plan_init(&p);
	add_sort(&p, 0, false, false);
	snprintf(p.table, sizeof p.table, "public.orders");
	snprintf(p.key, sizeof p.key, "public.orders.user_id");
	m = sp_merge_new(&p, 2, &out);
	ty = 1186;
	ok(!feed_T_fmt(m, 0, 1, A, &ty, 0), "interval sort column of a named table refused");
	ok(strstr(sp_merge_error(m), "reads sharded table public.orders on several shards") != NULL,
	   "the refusal names the table: %s", sp_merge_error(m));
	ok(sp_merge_hint(m) && strstr(sp_merge_hint(m), "condition on public.orders.user_id"),
	   "the hint names the key: %s", sp_merge_hint(m) ? sp_merge_hint(m) : "(none)");
	sp_merge_free(m);

	/* binary format is fine for concatenation */
	ty = INT4;
	plan_init(&p);
	m = sp_merge_new(&p, 1, &out);
	ok(feed_T_fmt(m, 0, 1, A, &ty, 1), "binary concat accepted");
	ok(D(m, 0, "\x01\x02"), "binary row");
	C(m, 0, "SELECT 1");
	sp_merge_finish(m);
	is_str(out_text(&out), "T[a:23] D[\x01\x02] C[SELECT 1]", "binary concat passes through");
	sp_merge_free(m);

	/* malformed row */
	m = sp_merge_new(&p, 1, &out);
	T(m, 0, AB, INT4, TEXT);
	ok(!D(m, 0, "1"), "row with the wrong column count refused");
	is_str(sp_merge_sqlstate(m), "08P01", "malformed row: protocol violation");
	sp_merge_free(m);
	out_text(&out);

	/* sort needs a RowDescription */
	plan_init(&p);
	add_sort(&p, 0, false, false);
	m = sp_merge_new(&p, 1, &out);
	ok(!D(m, 0, "1"), "sorted rows without RowDescription refused");
	sp_merge_free(m);

	/* ... unless the caller gives the columns (Describe earlier) */
	m = sp_merge_new(&p, 2, &out);
	sp_buf_reset(&body);
	pq_sendint16(&body, 1);
	pq_sendstring(&body, "a");
	pq_sendint32(&body, 0);
	pq_sendint16(&body, 0);
	pq_sendint32(&body, INT4);
	pq_sendint16(&body, 4);
	pq_sendint32(&body, -1);
	pq_sendint16(&body, 0);
	ok(sp_merge_set_columns(m, sp_buf_head(&body), sp_buf_len(&body)), "set_columns");
	D(m, 0, "10");
	D(m, 1, "9");
	C(m, 0, "SELECT 1");
	C(m, 1, "SELECT 1");
	sp_merge_finish(m);
	is_str(out_text(&out), "D[9] D[10] C[SELECT 2]",
	       "set_columns: sorted numerically, no RowDescription sent");
	sp_merge_free(m);
	sp_buf_free(&out);
}

static void test_notices(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	sp_merge_t *m = sp_merge_new(&p, 3, &out);
	N(m, 0, "table t does not exist, skipping");
	N(m, 1, "table t does not exist, skipping");
	N(m, 2, "table t does not exist, skipping");
	N(m, 1, "other");
	N(m, 0, "table t does not exist, skipping");
	N(m, 2, "table t does not exist, skipping");
	is_str(out_text(&out),
	       "N[table t does not exist, skipping] N[other] N[table t does not exist, skipping]",
	       "identical notices from several shards once; a shard's repeat still passes");
	sp_merge_free(m);
	sp_buf_free(&out);
}

/* ------------------------------------------------------------------ aggregates */

static void test_aggs_plain(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	/* count(*), sum(i4), sum(num), min(t), max(i4), avg(i4) = sum + hidden count */
	p.has_aggs = true;
	p.n_cols = 7;
	p.agg[0] = SP_MAGG_COUNT;
	p.agg[1] = SP_MAGG_SUM;
	p.agg[2] = SP_MAGG_SUM;
	p.agg[3] = SP_MAGG_MIN;
	p.agg[4] = SP_MAGG_MAX;
	p.agg[5] = SP_MAGG_AVG_SUM;
	p.avg_count_col[5] = 6;
	p.agg[6] = SP_MAGG_HIDDEN;
	static const char *const names[] = {"count", "sum", "sum", "min", "max", "avg", "count"};
	sp_merge_t *m = sp_merge_new(&p, 3, &out);
	ok(T(m, 0, names, INT8, INT8, NUMERIC, TEXT, INT4, INT8, INT8), "aggs: RowDescription");
	T(m, 1, names, INT8, INT8, NUMERIC, TEXT, INT4, INT8, INT8);
	T(m, 2, names, INT8, INT8, NUMERIC, TEXT, INT4, INT8, INT8);
	is_str(out_text(&out), "T[count:20,sum:20,sum:1700,min:25,max:23,avg:1700]",
	       "aggs: hidden count removed, avg retyped numeric");
	/* shard 0 rows x = 1,2,3 n = 1.5,2.25,-3.75; shard 1 x = 4,NULL n = 0.125; shard 2 none */
	D(m, 0, "3", "6", "0.00", "b", "3", "6", "3");
	D(m, 1, "2", "4", "0.125", "a", "4", "4", "1");
	D(m, 2, "0", NULL, NULL, NULL, NULL, NULL, "0");
	is_str(out_text(&out), "", "aggs: nothing until the end");
	C(m, 0, "SELECT 1");
	C(m, 1, "SELECT 1");
	C(m, 2, "SELECT 1");
	sp_merge_finish(m);
	/* PG: select count(*), sum(x), sum(n), min(t), max(x), avg(x) over the same 5 rows */
	is_str(out_text(&out), "D[5|10|0.125|a|4|2.5000000000000000] C[SELECT 1]",
	       "aggs without GROUP BY: one combined row");
	sp_merge_free(m);

	/* every shard empty: count 0, the rest NULL */
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, names, INT8, INT8, NUMERIC, TEXT, INT4, INT8, INT8);
	T(m, 1, names, INT8, INT8, NUMERIC, TEXT, INT4, INT8, INT8);
	D(m, 0, "0", NULL, NULL, NULL, NULL, NULL, "0");
	D(m, 1, "0", NULL, NULL, NULL, NULL, NULL, "0");
	C(m, 0, "SELECT 1");
	C(m, 1, "SELECT 1");
	sp_merge_finish(m);
	is_str(out_text(&out),
	       "T[count:20,sum:20,sum:1700,min:25,max:23,avg:1700] D[0|NULL|NULL|NULL|NULL|NULL] "
	       "C[SELECT 1]",
	       "aggs over no rows: count 0, others NULL");
	sp_merge_free(m);
	sp_buf_free(&out);
}

static void test_aggs_group(void)
{
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	/* SELECT k, count(*), sum(n), max(d), avg(n) ... GROUP BY k */
	p.has_aggs = true;
	p.n_cols = 6;
	p.agg[0] = SP_MAGG_NONE;
	p.agg[1] = SP_MAGG_COUNT;
	p.agg[2] = SP_MAGG_SUM;
	p.agg[3] = SP_MAGG_MAX;
	p.agg[4] = SP_MAGG_AVG_SUM;
	p.avg_count_col[4] = 5;
	p.agg[5] = SP_MAGG_HIDDEN;
	static const char *const names[] = {"k", "count", "sum", "max", "avg", "count"};
	sp_merge_t *m = sp_merge_new(&p, 2, &out);
	T(m, 0, names, TEXT, INT8, NUMERIC, DATE, NUMERIC, INT8);
	T(m, 1, names, TEXT, INT8, NUMERIC, DATE, NUMERIC, INT8);
	D(m, 0, "x", "2", "1.50", "2020-01-01", "1.50", "2");
	D(m, 0, NULL, "1", "7", "0044-01-01 BC", "7", "1");
	D(m, 1, "y", "1", NULL, NULL, NULL, "0");
	D(m, 1, "x", "1", "2.125", "1999-12-31", "2.125", "1");
	D(m, 1, NULL, "2", "-7.001", "0045-01-01 BC", "-7.001", "2");
	D(m, 0, "", "1", "1", "2000-01-01", "1", "1");
	C(m, 0, "SELECT 3");
	C(m, 1, "SELECT 3");
	sp_merge_finish(m);
	/*
	 * PG on the union of the rows: x: n = 0.75,0.75,2.125 -> sum 3.625, avg
	 * 1.20833333333333333333; NULL: 7, -3.5, -3.501 -> sum -0.001, avg
	 * -0.00033333333333333333; y: one NULL row.
	 */
	is_str(out_text(&out),
	       "T[k:25,count:20,sum:1700,max:1082,avg:1700] "
	       "D[x|3|3.625|2020-01-01|1.20833333333333333333] "
	       "D[NULL|3|-0.001|0044-01-01 BC|-0.00033333333333333333] D[y|1|NULL|NULL|NULL] "
	       "D[|1|1|2000-01-01|1.00000000000000000000] C[SELECT 4]",
	       "GROUP BY: groups combined in first-seen order, NULL and empty keys distinct");
	sp_merge_free(m);

	/* GROUP BY values PostgreSQL finds equal that print differently */
	plan_init(&p);
	p.has_aggs = true;
	p.n_cols = 4;
	p.agg[3] = SP_MAGG_COUNT;
	static const char *const eq[] = {"n", "f", "iv", "count"};
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, eq, NUMERIC, FLOAT8, INTERVAL, INT8);
	T(m, 1, eq, NUMERIC, FLOAT8, INTERVAL, INT8);
	D(m, 0, "1.0", "0", "1 day", "1");
	D(m, 1, "1.00", "-0", "24:00:00", "2");
	D(m, 1, "1", "0", "1 day", "1");
	D(m, 0, "2.50", "NaN", "1 mon", "1");
	D(m, 1, "2.5", "NaN", "30 days", "1");
	D(m, 0, "10", "0", "-1 days +24:00:00", "1");
	D(m, 1, "10.000", "-0", "00:00:00", "1");
	D(m, 1, "0.10", "0", "1 year 2 mons -3 days +04:05:06.5", "1");
	D(m, 0, "0.1", "0", "14 mons -2 days -19:54:53.5", "1");
	C(m, 0, "SELECT 4");
	C(m, 1, "SELECT 5");
	sp_merge_finish(m);
	is_str(out_text(&out),
	       "T[n:1700,f:701,iv:1186,count:20] D[1.0|0|1 day|4] "
	       "D[2.50|NaN|1 mon|2] D[10|0|-1 days +24:00:00|2] "
	       "D[0.10|0|1 year 2 mons -3 days +04:05:06.5|2] C[SELECT 4]",
	       "GROUP BY: numeric scale, float -0 and interval spellings group as PostgreSQL does");
	sp_merge_free(m);
	m = sp_merge_new(&p, 2, &out);
	T(m, 0, eq, NUMERIC, FLOAT8, INTERVAL, INT8);
	T(m, 1, eq, NUMERIC, FLOAT8, INTERVAL, INT8);
	D(m, 0, "1", "0", "P1D", "1");
	C(m, 0, "SELECT 1");
	C(m, 1, "SELECT 0");
	sp_merge_finish(m);
	ok(sp_merge_failed(m) && !strcmp(sp_merge_sqlstate(m), "0A000") &&
	       strstr(sp_merge_error(m), "IntervalStyle") && !strstr(out_text(&out), "D["),
	   "GROUP BY on an interval in IntervalStyle iso_8601: 0A000, not wrong groups");
	sp_merge_free(m);

	/* ORDER BY count DESC, k; LIMIT 2 OFFSET 1 over combined groups */
	plan_init(&p);
	p.has_aggs = true;
	p.n_cols = 2;
	p.agg[1] = SP_MAGG_COUNT;
	add_sort(&p, 1, true, true);
	add_sort(&p, 0, false, false);
	p.limit = 2;
	p.offset = 1;
	m = sp_merge_new(&p, 2, &out);
	static const char *const kc[] = {"k", "count"};
	T(m, 0, kc, INT4, INT8);
	T(m, 1, kc, INT4, INT8);
	D(m, 0, "1", "5");
	D(m, 0, "2", "1");
	D(m, 0, "3", "9");
	D(m, 1, "2", "8");
	D(m, 1, "10", "9");
	D(m, 1, "4", "2");
	C(m, 0, "SELECT 3");
	C(m, 1, "SELECT 3");
	ok(!sp_merge_limit_reached(m), "agg limit: not before finish");
	sp_merge_finish(m);
	/* combined: 1:5 2:9 3:9 10:9 4:2 -> by count desc, k: 2,3,10,1,4 -> offset 1 limit 2 */
	is_str(out_text(&out), "T[k:23,count:20] D[3|9] D[10|9] C[SELECT 2]",
	       "aggs: combine, then sort (ties by key numerically), then LIMIT/OFFSET");
	ok(sp_merge_limit_reached(m), "agg limit: reached");
	sp_merge_free(m);

	/* ORDER BY avg: sorted on the combined numeric value */
	plan_init(&p);
	p.has_aggs = true;
	p.n_cols = 3;
	p.agg[1] = SP_MAGG_AVG_SUM;
	p.avg_count_col[1] = 2;
	p.agg[2] = SP_MAGG_HIDDEN;
	add_sort(&p, 1, false, false);
	m = sp_merge_new(&p, 2, &out);
	static const char *const ka[] = {"k", "avg", "n"};
	T(m, 0, ka, TEXT, INT8, INT8);
	T(m, 1, ka, TEXT, INT8, INT8);
	D(m, 0, "a", "10", "1");
	D(m, 0, "b", "9", "1");
	D(m, 1, "a", "20", "3");
	D(m, 1, "c", NULL, "0");
	C(m, 0, "SELECT 2");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out),
	       "T[k:25,avg:1700] D[a|7.5000000000000000] D[b|9.0000000000000000] D[c|NULL] "
	       "C[SELECT 3]",
	       "ORDER BY avg: numeric order on the combined value, NULL last");
	sp_merge_free(m);
	sp_buf_free(&out);
}

/* One group, one agg column (plus avg's hidden count): shards' partial values in, text out. */
static const char *combine1(sp_merge_agg_t agg, uint32_t type, const char *const *vals,
			    const char *const *counts, int n)
{
	static char res[2048];
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	p.has_aggs = true;
	p.n_cols = agg == SP_MAGG_AVG_SUM ? 2 : 1;
	p.agg[0] = agg;
	if (agg == SP_MAGG_AVG_SUM) {
		p.avg_count_col[0] = 1;
		p.agg[1] = SP_MAGG_HIDDEN;
	}
	sp_merge_t *m = sp_merge_new(&p, n, &out);
	static const char *const names[] = {"v", "n"};
	uint32_t types[2] = {type, INT8};
	for (int i = 0; i < n; i++) {
		feed_T_fmt(m, i, p.n_cols, names, types, 0);
		const char *row[2] = {vals[i], counts ? counts[i] : NULL};
		feed_row(m, i, row, p.n_cols);
		C(m, i, "SELECT 1");
	}
	sp_merge_finish(m);
	if (sp_merge_failed(m)) {
		snprintf(res, sizeof res, "ERROR %s %s", sp_merge_sqlstate(m), sp_merge_error(m));
	} else {
		const char *t = out_text(&out);
		const char *d = strstr(t, "D[");
		const char *e = d ? strchr(d, ']') : NULL;
		snprintf(res, sizeof res, "%.*s", d && e ? (int)(e - d - 2) : 0, d ? d + 2 : "");
	}
	sp_merge_free(m);
	sp_buf_free(&out);
	return res;
}

#define V(...)                                                                                     \
	(const char *const[])                                                                      \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}

static void test_sum_avg_text(void)
{
	/* sums: exact, PostgreSQL's text (verified on PG 15) */
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("1.5", "2.25", "-3.75"), NULL, 3), "0.00",
	       "sum numeric keeps the max scale (sum 1.5,2.25,-3.75 = 0.00)");
	is_str(
	    combine1(SP_MAGG_SUM, NUMERIC, V("9223372036854775807", "9223372036854775807"), NULL, 2),
	    "18446744073709551614", "sum(int8) as numeric beyond int64");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("-0.001", "0.0001"), NULL, 2), "-0.0009",
	       "numeric sum sign change");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("99999999999999999999.99", "0.01"), NULL, 2),
	       "100000000000000000000.00", "numeric sum carry");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V(NULL, NULL), NULL, 2), "NULL",
	       "sum of all NULL is NULL");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("NaN", "1"), NULL, 2), "NaN", "numeric NaN + 1");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("Infinity", "-Infinity"), NULL, 2), "NaN",
	       "Infinity + -Infinity = NaN");
	is_str(combine1(SP_MAGG_SUM, NUMERIC, V("Infinity", "5", NULL), NULL, 3), "Infinity",
	       "Infinity + 5");
	is_str(combine1(SP_MAGG_SUM, INT8, V("6", "-1", NULL), NULL, 3), "5", "sum(int4) as int8");
	is_str(combine1(SP_MAGG_SUM, INT8, V("9223372036854775807", "1"), NULL, 2),
	       "ERROR 22003 bigint out of range", "int8 sum overflow is PostgreSQL's error");
	is_str(combine1(SP_MAGG_SUM, FLOAT8, V("0.1", "0.2"), NULL, 2), "0.30000000000000004",
	       "sum float8 0.1 + 0.2");
	is_str(combine1(SP_MAGG_SUM, FLOAT4, V("1.1", "2.2", "3.3"), NULL, 3), "6.6000004",
	       "sum float4 in float4 arithmetic");
	is_str(combine1(SP_MAGG_SUM, FLOAT8, V("1e+300", "1e+300"), NULL, 2), "2e+300",
	       "float8 big");
	is_str(combine1(SP_MAGG_SUM, FLOAT8, V("1.7976931348623157e+308", "1.7976931348623157e+308"),
			NULL, 2),
	       "ERROR 22003 value out of range: overflow", "float8 overflow is an error");
	is_str(combine1(SP_MAGG_COUNT, INT8, V("3", "0", "4"), NULL, 3), "7", "count");
	is_str(combine1(SP_MAGG_MIN, TEXT, V("b", NULL, "a"), NULL, 3), "a", "min text");
	is_str(combine1(SP_MAGG_MAX, INT4, V("9", "10", NULL), NULL, 3), "10",
	       "max int numerically");
	is_str(combine1(SP_MAGG_MAX, FLOAT8, V("1", "NaN"), NULL, 2), "NaN",
	       "max float: NaN highest");
	is_str(combine1(SP_MAGG_MIN, NUMERIC, V("-Infinity", "-1"), NULL, 2), "-Infinity",
	       "min numeric");

	/* avg = sum / count with select_div_scale() (verified on PG 15) */
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("1", "2"), V("1", "1"), 2), "1.5000000000000000",
	       "avg(1,2)");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("1", "4"), V("1", "2"), 2), "1.6666666666666667",
	       "avg(1,2,2)");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("1.50", "2.125"), V("1", "1"), 2),
	       "1.8125000000000000", "avg numeric keeps scale rules");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("10000000", "2"), V("1", "1"), 2),
	       "5000001.000000000000", "avg big: fewer decimals");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("0.00001", "0.00002"), V("1", "1"), 2),
	       "0.000015000000000000000000", "avg small: more decimals");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("100000000000000000000", "3"), V("1", "1"), 2),
	       "50000000000000000002", "avg huge: scale 0, rounded half up");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("-1", "-2"), V("1", "1"), 2), "-1.5000000000000000",
	       "avg negative");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("0", "0"), V("1", "1"), 2),
	       "0.00000000000000000000", "avg zero");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("199999998", "99999999"), V("2", "1"), 2),
	       "99999999.000000000000", "avg(99999999 x3)");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("0.333333333333333333333", "1"), V("1", "1"), 2),
	       "0.666666666666666666667", "avg keeps the input scale when larger");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("0", "2"), V("1", "2"), 2),
	       "0.66666666666666666667", "avg(0,1,1)");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("12345678", "6"), V("1", "6"), 2),
	       "1763669.142857142857", "avg(12345678, 1 x6)");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("9223372036854775807", "9223372036854775808"),
			V("1", "2"), 2),
	       "6148914691236517205", "avg(int8) near the limits");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("-0.0000001", "0"), V("1", "1"), 2),
	       "-0.000000050000000000000000", "avg tiny negative");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("-10", "-10"), V("2", "2"), 2),
	       "-5.0000000000000000", "avg(-5 x4)");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V("1", "-2"), V("1", "1"), 2),
	       "-0.50000000000000000000", "avg(1,-2)");
	is_str(combine1(SP_MAGG_AVG_SUM, NUMERIC, V("Infinity", "1"), V("1", "1"), 2), "Infinity",
	       "avg infinity");
	is_str(combine1(SP_MAGG_AVG_SUM, INT8, V(NULL, NULL), V("0", "0"), 2), "NULL",
	       "avg of no rows is NULL");
	is_str(combine1(SP_MAGG_AVG_SUM, FLOAT8, V("1.5", "2"), V("1", "1"), 2), "1.75",
	       "avg float8");
	is_str(combine1(SP_MAGG_AVG_SUM, FLOAT8, V("0.1", "0.7", "1e-07"), V("1", "1", "1"), 3),
	       "0.2666667", "avg float8 0.1, 0.7, 1e-7");
}

static void test_float_format(void)
{
	/* select x::float8 / x::float4 on PG 15 (extra_float_digits = 1) */
	static const struct {
		double d;
		const char *want;
	} f8[] = {
	    {0.1 + 0.2, "0.30000000000000004"},
	    {1e15, "1e+15"},
	    {1e14, "100000000000000"},
	    {123456789012345.6, "123456789012345.6"},
	    {1e-4, "0.0001"},
	    {1e-5, "1e-05"},
	    {5e-324, "5e-324"},
	    {1.7976931348623157e308, "1.7976931348623157e+308"},
	    {-0.0, "-0"},
	    {9007199254740992.0, "9.007199254740992e+15"},
	    {9223372036854775808.0, "9.223372036854776e+18"},
	    {1e22, "1e+22"},
	    {1e21, "1e+21"},
	    {123456789012345678.0, "1.2345678901234568e+17"},
	    {0.000123, "0.000123"},
	    {0.00001234, "1.234e-05"},
	    {1.5e-7, "1.5e-07"},
	    {4.35, "4.35"},
	    {100, "100"},
	    {999999999999999.0, "999999999999999"},
	    {2.5e-320, "2.5e-320"},
	    {-1e-300, "-1e-300"},
	    {0, "0"},
	    /* a shorter decimal exactly on the rounding boundary is refused, as by PG's Ryu */
	    {3.0892612233637952e+16, "3.0892612233637952e+16"},
	    {-6.6766885433589616e+16, "-6.6766885433589616e+16"},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof f8 / sizeof f8[0]; i++) {
		sp_merge_format_float8(f8[i].d, buf, sizeof buf);
		is_str(buf, f8[i].want, "float8 text %s", f8[i].want);
	}
	sp_merge_format_float8(NAN, buf, sizeof buf);
	is_str(buf, "NaN", "float8 NaN");
	sp_merge_format_float8(-INFINITY, buf, sizeof buf);
	is_str(buf, "-Infinity", "float8 -Infinity");

	static const struct {
		float f;
		const char *want;
	} f4[] = {
	    {1e6f, "1e+06"},
	    {999999.0f, "999999"},
	    {1234.5678f, "1234.5677"},
	    {0.000123f, "0.000123"},
	    {0.00001234f, "1.234e-05"},
	    {16777217.0f, "1.6777216e+07"},
	    {3.14159265358979f, "3.1415927"},
	    {1e-45f, "1e-45"},
	    {7e-45f, "7e-45"},
	    {1234567.0f, "1.234567e+06"},
	    {123456.0f, "123456"},
	    {0.1f, "0.1"},
	    {3.4028235e38f, "3.4028235e+38"},
	    {1.17549435e-38f, "1.1754944e-38"},
	    {67891616.0f, "6.7891616e+07"},
	    {-117760704.0f, "-1.17760704e+08"},
	};
	for (size_t i = 0; i < sizeof f4 / sizeof f4[0]; i++) {
		sp_merge_format_float4(f4[i].f, buf, sizeof buf);
		is_str(buf, f4[i].want, "float4 text %s", f4[i].want);
	}

	/*
	 * Round trip of many values. (Byte equality with PostgreSQL was checked
	 * once on 55,619 values - random bit patterns, decimals, powers of two
	 * and their neighbours - through select x::text from unnest(...); no
	 * difference.)
	 */
	unsigned long long x = 88172645463325252ULL;
	int bad = 0;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		double d;
		memcpy(&d, &x, sizeof d);
		if (isnan(d) || isinf(d))
			continue;
		sp_merge_format_float8(d, buf, sizeof buf);
		if (strtod(buf, NULL) != d)
			bad++;
	}
	is_int(bad, 0, "20000 random doubles round-trip through the shortest text");
}

/* SELECT * ... ORDER BY name: the column is found in the RowDescription */
static void test_sorted_by_name(void)
{
	static const char *const cols[] = {"id", "name", "v"};
	sp_buf_t out = {0};
	sp_merge_plan_t p;
	plan_init(&p);
	p.sort[0].col = -1;
	snprintf(p.sort[0].name, sizeof p.sort[0].name, "v");
	p.sort[0].desc = true;
	p.sort[0].nulls_first = true;
	p.n_sort = 1;
	sp_merge_t *m = sp_merge_new(&p, 2, &out);
	ok(T(m, 0, cols, INT4, TEXT, INT4), "by name: RowDescription accepted");
	T(m, 1, cols, INT4, TEXT, INT4);
	D(m, 0, "1", "a", "9");
	D(m, 0, "2", "b", "3");
	D(m, 1, "3", "c", "7");
	D(m, 1, "4", "d", "1");
	C(m, 0, "SELECT 2");
	C(m, 1, "SELECT 2");
	sp_merge_finish(m);
	is_str(out_text(&out),
	       "T[id:23,name:25,v:23] D[1|a|9] D[3|c|7] D[2|b|3] D[4|d|1] C[SELECT 4]",
	       "by name: ORDER BY v DESC merged on the third column");
	sp_merge_free(m);

	/* no column of that name, or two of them: refused before any row */
	static const char *const dup[] = {"id", "v", "v"};
	snprintf(p.sort[0].name, sizeof p.sort[0].name, "w");
	m = sp_merge_new(&p, 2, &out);
	ok(!T(m, 0, cols, INT4, TEXT, INT4), "by name: an unknown column fails");
	is_str(sp_merge_sqlstate(m), "0A000", "by name: unknown column is 0A000");
	ok(strstr(sp_merge_error(m), "no column named \"w\"") != NULL, "by name: the error names it");
	sp_merge_free(m);
	snprintf(p.sort[0].name, sizeof p.sort[0].name, "v");
	m = sp_merge_new(&p, 2, &out);
	ok(!T(m, 0, dup, INT4, INT4, INT4), "by name: an ambiguous column fails");
	ok(strstr(sp_merge_error(m), "more than one") != NULL, "by name: the error says why");
	sp_merge_free(m);

	/* collations: builtin (PostgreSQL 17) and C sort by bytes, ICU is refused */
	static const char *const tcol[] = {"w"};
	uint32_t tt = TEXT;
	sp_merge_plan_t q;
	plan_init(&q);
	q.sort[0].col = 0;
	q.n_sort = 1;
	const char *provs = "bci";
	const char *names[] = {"C.UTF-8", "C", "und-x-icu"};
	for (int i = 0; i < 3; i++) {
		m = sp_merge_new(&q, 2, &out);
		sp_merge_set_collation(m, names[i], provs[i]);
		bool fed = feed_T_fmt(m, 0, 1, tcol, &tt, 0);
		ok(i < 2 ? fed : !fed, "collation %s (provider %c): text sort %s", names[i], provs[i],
		   i < 2 ? "merged by bytes" : "refused");
		sp_merge_free(m);
		out_text(&out);
	}
	sp_buf_free(&out);
}

int main(void)
{
	test_concat();
	test_sorted_int();
	test_sorted_kinds();
	test_sorted_multi();
	test_sorted_by_name();
	test_streaming_bound();
	test_errors();
	test_notices();
	test_aggs_plain();
	test_aggs_group();
	test_sum_avg_text();
	test_float_format();
	sp_buf_free(&body);
	return done_testing();
}
