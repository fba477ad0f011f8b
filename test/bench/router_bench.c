/*
 * router_bench.c - cost of routing one statement: plan-cache hit and miss
 * for a 100-byte SELECT with one shard key (simple query, literal lifted),
 * the extended protocol's prepare + bind on a hit, and a 10-row INSERT that
 * is split over 4 shards. `make check` builds it (so it keeps compiling) but
 * never runs it; run it from the top of the tree:
 *
 *   make check TESTS= && test/bench/router_bench
 *
 * Prints microseconds of CPU time per call (best of 5 runs of N calls each;
 * CPU time, not wall time, so other load on the machine matters less).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router.h"

static char *k_user[] = {"user_id"};
static sp_key_type_t t_bigint[] = {SP_KEY_BIGINT};
static sp_table_conf_t tables[] = {
    {.name = "users", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
    {.name = "orders", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
};
static sp_db_conf_t db = {
    .name = "bench", .n_shards = 4, .sharding = SP_SHARDING_HASH, .tables = tables, .n_tables = 2};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile int sink;

/* 100 bytes: the shape of an ORM's primary-key lookup */
#define SELECT_FMT                                                                                 \
	"SELECT id, name, email, created_at, status FROM users WHERE user_id = %d AND status <> "  \
	"'deleted'"

static double bench_hit(int n)
{
	sp_router_session_t s;
	sp_target_t t;
	char sql[256];
	sp_router_session_init(&s);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		int len = snprintf(sql, sizeof(sql), SELECT_FMT, i);
		sp_router_query(&db, &s, sql, (size_t)len, -1, &t);
		sink += t.shard;
	}
	return (now() - t0) / n * 1e6;
}

static double bench_snprintf(int n)
{
	char sql[256];
	double t0 = now();
	for (int i = 0; i < n; i++)
		sink += snprintf(sql, sizeof(sql), SELECT_FMT, i);
	return (now() - t0) / n * 1e6;
}

static int miss_seq;

static double bench_miss(int n)
{
	sp_router_session_t s;
	sp_target_t t;
	char sql[256];
	sp_router_session_init(&s);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		/* a new column alias each time: a new normalised text */
		int len = snprintf(sql, sizeof(sql),
				   "SELECT id, name, email, created_at AS c%d FROM users WHERE "
				   "user_id = 42 AND status <> 'x'",
				   miss_seq++);
		sp_router_query(&db, &s, sql, (size_t)len, -1, &t);
		sink += t.shard;
	}
	return (now() - t0) / n * 1e6;
}

static double bench_bind(int n)
{
	sp_router_session_t s;
	sp_target_t t;
	const char *sql = "SELECT id, name, email, created_at, status FROM users WHERE user_id = "
			  "$1 AND status <> 'deleted'";
	char v[16];
	const uint8_t *vals[1] = {(const uint8_t *)v};
	int32_t lens[1];
	int16_t fmts[1] = {0};
	sp_router_session_init(&s);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		lens[0] = snprintf(v, sizeof(v), "%d", i);
		sp_plan_t *p = sp_router_prepare(&db, sql, strlen(sql));
		sp_router_bind(&db, &s, p, 1, vals, lens, fmts, NULL, 0, -1, &t);
		sp_plan_unref(p);
		sink += t.shard;
	}
	return (now() - t0) / n * 1e6;
}

static double bench_insert_split(int n)
{
	sp_router_session_t s;
	sp_target_t t;
	char sql[1024];
	sp_router_session_init(&s);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		int len = snprintf(sql, sizeof(sql), "INSERT INTO orders (user_id, total) VALUES ");
		for (int r = 0; r < 10; r++)
			len += snprintf(sql + len, sizeof(sql) - (size_t)len, "%s(%d, %d)",
					r ? ", " : "", i * 10 + r, r);
		sp_router_query(&db, &s, sql, (size_t)len, -1, &t);
		sink += t.kind;
	}
	return (now() - t0) / n * 1e6;
}

static double best(double (*f)(int), int n)
{
	double b = 1e9;
	for (int r = 0; r < 5; r++) {
		double x = f(n);
		if (x < b)
			b = x;
	}
	return b;
}

int main(void)
{
	sp_router_stats_t st;
	double fmt = best(bench_snprintf, 200000);

	bench_hit(1000); /* warm the cache and the per-thread buffers */
	printf("route, cache hit (100-byte SELECT, one key): %.3f us (incl. %.3f us to format the "
	       "text)\n",
	       best(bench_hit, 200000), fmt);
	printf("prepare + bind, cache hit:                   %.3f us\n", best(bench_bind, 200000));
	printf("route, cache miss (parse + plan):            %.3f us\n", best(bench_miss, 5000));
	printf("10-row INSERT split over 4 shards (hit):     %.3f us\n",
	       best(bench_insert_split, 50000));
	sp_router_get_stats(&st);
	printf("cache: %zu entries, %zu bytes, %llu hits, %llu misses, %llu evictions\n",
	       st.entries, st.bytes, (unsigned long long)st.hits, (unsigned long long)st.misses,
	       (unsigned long long)st.evictions);
	sp_router_shutdown();
	return sink == 42 ? 1 : 0;
}
