/*
 * analyze_bench.c - micro benchmark of the statement analyzer. `make check` builds it
 * (so it keeps compiling) but never runs it; run it from the top of the tree:
 *
 *   make check TESTS= && test/bench/analyze_bench [iterations]
 *
 * Prints microseconds per call for a 100-byte SELECT: the whole sp_analyze()
 * and its parts (libpg_query's parse to JSON, json-c's tokenising), the two
 * plan-cache keys (fingerprint, normalize) and the no-parse helpers. CPU time
 * of this process is reported next to wall time because the machines it runs
 * on are shared: compare ratios within one run, not absolute numbers.
 */
#include "analyze.h"

#include <json-c/json.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const sql =
    "SELECT id, name, email FROM users WHERE id = 42 AND status = 'active' ORDER BY created_at "
    "LIMIT 10";

static char *key_cols[] = {"id"};
static sp_table_conf_t users = {.name = "users", .key_cols = key_cols, .n_keys = 1};

static const sp_table_conf_t *lookup(void *arg, const char *schema, const char *name)
{
	(void)arg;
	(void)schema;
	return strcmp(name, "users") == 0 ? &users : NULL;
}

static double now(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;

#define BENCH(label, n, body)                                                                      \
	do {                                                                                       \
		double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);              \
		for (long i_ = 0; i_ < (n); i_++) {                                                \
			body;                                                                      \
		}                                                                                  \
		double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);              \
		printf("%-34s %8.2f us cpu  %8.2f us wall\n", label,                               \
		       (c1 - c0) * 1e6 / (double)(n), (w1 - w0) * 1e6 / (double)(n));              \
	} while (0)

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	sp_analyze_opts_t opts = {.table_lookup = lookup};
	char kw[32];

	printf("query (%zu bytes): %s\n", strlen(sql), sql);
	printf("%ld iterations each\n", n);
	{
		sp_analysis_t *a = sp_analyze(sql, &opts);
		printf("route %d, key %s, %d tables\n", a->stmts[0].route,
		       a->stmts[0].tables[0].keys.values[0].text, a->stmts[0].n_tables);
		sp_analysis_free(a);
	}
	BENCH("sp_analyze (whole)", n, {
		sp_analysis_t *a = sp_analyze(sql, &opts);
		sink += (uint64_t)a->n_stmts;
		sp_analysis_free(a);
	});
	BENCH("  pg_query_parse (to JSON)", n, {
		PgQueryParseResult r = pg_query_parse(sql);
		sink += strlen(r.parse_tree);
		pg_query_free_parse_result(r);
	});
	PgQueryParseResult pr = pg_query_parse(sql);
	BENCH("  json-c tokenise + free", n, {
		json_object *o = json_tokener_parse(pr.parse_tree);
		sink += (uint64_t)(o != NULL);
		json_object_put(o);
	});
	printf("  (JSON of the parse tree: %zu bytes)\n", strlen(pr.parse_tree));
	pg_query_free_parse_result(pr);
	BENCH("sp_analyze_fingerprint", n, {
		uint64_t f;
		sp_analyze_fingerprint(sql, &f);
		sink += f;
	});
	BENCH("sp_analyze_normalize", n, {
		char *s = sp_analyze_normalize(sql);
		sink += (uint64_t)s[0];
		free(s);
	});
	BENCH("sp_analyze_first_keyword", n * 10,
	      { sink += sp_analyze_first_keyword(sql, kw, sizeof(kw), NULL); });
	BENCH("sp_analyze_hints", n * 10, {
		sp_hints_t h;
		sp_analyze_hints(sql, &h);
		sink += (uint64_t)h.shard;
	});
	return 0;
}
