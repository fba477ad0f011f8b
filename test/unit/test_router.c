/*
 * test_router.c - the router on databases built in code: hash (2 and 4
 * shards), range, list and single-shard. Expected shards are computed with
 * sp_shard_of_keys(), never hard-coded, so the test checks the routing and
 * not a copy of the hash.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "router.h"
#include "shard_hash.h"
#include "tap.h"

static char *k_user[] = {"user_id"};
static sp_key_type_t t_bigint[] = {SP_KEY_BIGINT};
static char *k_item[] = {"tenant_id", "item_id"};
static sp_key_type_t t_item[] = {SP_KEY_INTEGER, SP_KEY_BIGINT};
static char *k_region[] = {"region"};
static sp_key_type_t t_text[] = {SP_KEY_TEXT};
static char *k_acct[] = {"acct"};

static sp_table_conf_t hash_tables[] = {
    {.name = "users", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
    {.name = "orders", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
    {.name = "countries", .replicated = true},
    {.name = "items", .key_cols = k_item, .key_types = t_item, .n_keys = 2},
};

/* a text-keyed table next to bigint ones: shard_key without a table is ambiguous */
static sp_table_conf_t mixed_tables[] = {
    {.name = "users", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
    {.name = "accounts", .key_cols = k_acct, .key_types = t_text, .n_keys = 1},
};

static sp_table_conf_t range_tables[] = {
    {.name = "users", .key_cols = k_user, .key_types = t_bigint, .n_keys = 1},
};

static sp_table_conf_t list_tables[] = {
    {.name = "shops", .key_cols = k_region, .key_types = t_text, .n_keys = 1},
};

static sp_shard_bound_t range_bounds[] = {
    {.shard = 0, .lo = NULL, .hi = "100"},
    {.shard = 1, .lo = "100", .hi = "200"},
    {.shard = 2, .lo = "200", .hi = "300"},
};

static char *eu_vals[] = {"eu", "fr"};
static char *us_vals[] = {"us"};
static sp_shard_bound_t list_bounds[] = {
    {.shard = 0, .values = eu_vals, .n_values = 2},
    {.shard = 1, .values = us_vals, .n_values = 1},
};

static sp_db_conf_t db2 = {.name = "app2",
			   .n_shards = 2,
			   .sharding = SP_SHARDING_HASH,
			   .tables = hash_tables,
			   .n_tables = 4};
static sp_db_conf_t db4 = {.name = "app4",
			   .n_shards = 4,
			   .sharding = SP_SHARDING_HASH,
			   .tables = hash_tables,
			   .n_tables = 4};
static sp_db_conf_t dbm = {.name = "mixed",
			   .n_shards = 2,
			   .sharding = SP_SHARDING_HASH,
			   .tables = mixed_tables,
			   .n_tables = 2};
static sp_db_conf_t dbr = {.name = "ranged",
			   .n_shards = 3,
			   .sharding = SP_SHARDING_RANGE,
			   .tables = range_tables,
			   .n_tables = 1,
			   .bounds = range_bounds,
			   .n_bounds = 3};
static sp_db_conf_t dbl = {.name = "listed",
			   .n_shards = 2,
			   .sharding = SP_SHARDING_LIST,
			   .tables = list_tables,
			   .n_tables = 1,
			   .bounds = list_bounds,
			   .n_bounds = 2};
static sp_db_conf_t db1 = {.name = "single",
			   .n_shards = 1,
			   .sharding = SP_SHARDING_HASH,
			   .tables = hash_tables,
			   .n_tables = 4};

static sp_router_session_t sess;
static sp_target_t T;

static int bigint_shard(int64_t v, int n)
{
	sp_shard_value_t x = {.i = v};
	return sp_shard_of_keys(t_bigint, &x, NULL, 1, n);
}

static int text_shard(const char *v, int n)
{
	sp_shard_value_t x = {.text = {.ptr = v, .len = strlen(v)}};
	return sp_shard_of_keys(t_text, &x, NULL, 1, n);
}

static uint64_t bit(int s)
{
	return (uint64_t)1 << s;
}

/* Two bigint keys that land on different shards of n (and the first on shard 0). */
static void two_keys(int n, int64_t *a, int64_t *b)
{
	*a = -1;
	*b = -1;
	for (int64_t v = 1; v < 1000 && (*a < 0 || *b < 0); v++) {
		int s = bigint_shard(v, n);
		if (s == 0 && *a < 0)
			*a = v;
		else if (s == 1 && *b < 0)
			*b = v;
	}
}

static const sp_target_t *q(const sp_db_conf_t *db, const char *sql)
{
	sp_router_query(db, &sess, sql, strlen(sql), -1, &T);
	return &T;
}

static const sp_target_t *qtx(const sp_db_conf_t *db, const char *sql, int txn)
{
	sp_router_query(db, &sess, sql, strlen(sql), txn, &T);
	return &T;
}

static const char *kind(const sp_target_t *t)
{
	static const char *names[] = {"ANY", "SHARD", "FANOUT", "LOCAL", "ERROR"};
	return names[t->kind];
}

static const char *shard_sql(const sp_target_t *t, int shard)
{
	if (!t->per_shard_sql || !t->sql)
		return "(no per-shard sql)";
	return (const char *)t->sql[shard].data;
}

#define IS_SHARD(t, s, ...)                                                                        \
	do {                                                                                       \
		const sp_target_t *t_ = (t);                                                       \
		if (!ok(t_->kind == SP_TARGET_SHARD && t_->shard == (s), __VA_ARGS__))             \
			printf("#   got %s shard %d (%s %s), expected shard %d\n", kind(t_),       \
			       t_->shard, t_->sqlstate, t_->message, (s));                         \
	} while (0)

#define IS_KIND(t, k, ...)                                                                         \
	do {                                                                                       \
		const sp_target_t *t_ = (t);                                                       \
		if (!ok(t_->kind == (k), __VA_ARGS__))                                             \
			printf("#   got %s (%s %s)\n", kind(t_), t_->sqlstate, t_->message);       \
	} while (0)

#define IS_ERROR(t, state, needle, ...)                                                            \
	do {                                                                                       \
		const sp_target_t *t_ = (t);                                                       \
		if (!ok(t_->kind == SP_TARGET_ERROR && strcmp(t_->sqlstate, (state)) == 0 &&       \
			    strstr(t_->message, (needle)),                                         \
			__VA_ARGS__))                                                              \
			printf("#   got %s %s '%s' (hint '%s'), expected %s containing '%s'\n",    \
			       kind(t_), t_->sqlstate, t_->message, t_->hint, (state), (needle));  \
	} while (0)

static void test_keys(void)
{
	char sql[256];
	int64_t a, b;

	two_keys(2, &a, &b);
	ok(a > 0 && b > 0, "found keys on shard 0 (%lld) and shard 1 (%lld)", (long long)a,
	   (long long)b);
	for (int64_t v = 1; v <= 6; v++) {
		snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = %lld",
			 (long long)v);
		IS_SHARD(q(&db4, sql), bigint_shard(v, 4), "4 shards: user_id = %lld",
			 (long long)v);
	}
	snprintf(sql, sizeof(sql), "select name from users where user_id = '%lld'", (long long)b);
	IS_SHARD(q(&db2, sql), 1, "quoted literal key");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = -%lld", (long long)a);
	IS_SHARD(q(&db4, sql), bigint_shard(-a, 4), "negative literal key");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = - %lld", (long long)a);
	IS_SHARD(q(&db4, sql), bigint_shard(-a, 4), "negative literal key with a space");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 9223372036854775807"),
		 bigint_shard(INT64_MAX, 4), "bigint max");
	IS_ERROR(q(&db4, "SELECT * FROM users WHERE user_id = 'abc'"), "22P02",
		 "invalid input syntax", "non-numeric key for a bigint column: 22P02");
	IS_ERROR(q(&db4, "SELECT * FROM users WHERE user_id = '99999999999999999999'"), "22003",
		 "out of range", "quoted key out of bigint range: 22003");
	/* unquoted, it is a numeric constant: bigint = numeric matches no row (PostgreSQL
	 * answers, with no rows), so any one shard answers */
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 99999999999999999999"), 0,
		 "numeric constant beyond bigint: no row can match, one shard");

	/* joins on the key pin both tables */
	snprintf(
	    sql, sizeof(sql),
	    "SELECT o.* FROM users u JOIN orders o ON o.user_id = u.user_id WHERE u.user_id = %lld",
	    (long long)b);
	IS_SHARD(q(&db2, sql), 1, "join on the key: pinned through the join");
	snprintf(sql, sizeof(sql),
		 "SELECT * FROM users u, countries c WHERE u.user_id = %lld AND c.code = u.cc",
		 (long long)b);
	IS_SHARD(q(&db2, sql), 1, "a replicated table joins anywhere");

	/* composite key */
	sp_shard_value_t iv[2] = {{.i = 7}, {.i = 123}};
	int want = sp_shard_of_keys(t_item, iv, NULL, 2, 4);
	IS_SHARD(q(&db4, "SELECT * FROM items WHERE tenant_id = 7 AND item_id = 123"), want,
		 "composite key");
	IS_SHARD(q(&db4, "SELECT * FROM items WHERE (tenant_id, item_id) = (7, 123)"), want,
		 "composite row compare");
	IS_KIND(q(&db4, "SELECT * FROM items WHERE tenant_id = 7"), SP_TARGET_FANOUT,
		"half a composite key: fan-out");

	/* IN-lists and ANY */
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id IN (%lld, %lld)",
		 (long long)a, (long long)b);
	const sp_target_t *t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->shard_mask == 3 && t->fanout_merge,
	   "IN on two shards: fan-out mask 3");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id IN (%lld, %lld)",
		 (long long)a, (long long)a + 0);
	IS_SHARD(q(&db2, sql), 0, "IN with one shard's keys");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = ANY('{%lld,%lld}')",
		 (long long)a, (long long)b);
	t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->shard_mask == 3, "= ANY('{...}') literal: mask 3");
	uint64_t m4 = 0;
	for (int v = 1; v <= 3; v++)
		m4 |= bit(bigint_shard(v, 4));
	t = q(&db4, "SELECT user_id FROM users WHERE user_id IN (1, 2, 3) ORDER BY user_id");
	if (!ok(t->kind == (m4 & (m4 - 1) ? SP_TARGET_FANOUT : SP_TARGET_SHARD) &&
		    (t->kind != SP_TARGET_FANOUT || t->shard_mask == m4),
		"IN (1,2,3) over 4 shards: mask %llx", (unsigned long long)m4))
		printf("#   got %s mask %llx: %s\n", kind(t), (unsigned long long)t->shard_mask,
		       t->message);
}

/* Bind a statement's parameters as text. */
static const sp_target_t *bind_text(const sp_db_conf_t *db, const char *sql, int n,
				    const char *const *v, int txn)
{
	const uint8_t *vals[8];
	int32_t lens[8];
	int16_t fmts[8] = {0};
	sp_plan_t *p = sp_router_prepare(db, sql, strlen(sql));

	for (int i = 0; i < n && i < 8; i++) {
		vals[i] = (const uint8_t *)v[i];
		lens[i] = v[i] ? (int32_t)strlen(v[i]) : -1;
	}
	sp_router_bind(db, &sess, p, n, vals, lens, fmts, NULL, 0, txn, &T);
	sp_plan_unref(p);
	return &T;
}

/* Bind one parameter of declared type oid, in format fmt (0 text, 1 binary). */
static const sp_target_t *bind_typed(const sp_db_conf_t *db, const char *sql, const void *v,
				     int32_t len, int16_t fmt, uint32_t oid)
{
	const uint8_t *vals[1] = {v};
	uint8_t pt[4] = {(uint8_t)(oid >> 24), (uint8_t)(oid >> 16), (uint8_t)(oid >> 8), (uint8_t)oid};
	sp_plan_t *p = sp_router_prepare(db, sql, strlen(sql));

	sp_router_bind(db, &sess, p, 1, vals, &len, &fmt, pt, 1, -1, &T);
	sp_plan_unref(p);
	return &T;
}

/*
 * Bind parameters declared real / double precision or character(n), and arrays of
 * them: they compare and convert as their own type, not as numbers or text.
 */
static void test_typed_params(void)
{
	const char *sel = "SELECT * FROM users WHERE user_id = $1";
	const char *any = "SELECT * FROM users WHERE user_id = ANY($1)";
	const char *ins = "INSERT INTO users (user_id) VALUES ($1)";

	IS_KIND(bind_typed(&db4, sel, "9007199254740993", 16, 0, 701), SP_TARGET_FANOUT,
		"double precision parameter beyond 2^53 (equals several bigints): every shard");
	IS_KIND(bind_typed(&db4, sel, "16777217", 8, 0, 700), SP_TARGET_FANOUT,
		"real parameter beyond 2^24: every shard");
	IS_SHARD(bind_typed(&db4, sel, "7", 1, 0, 701), bigint_shard(7, 4),
		 "double precision parameter 7: the shard of 7");
	IS_ERROR(bind_typed(&db4, ins, "2.5", 3, 0, 701), "0A000", "double precision",
		 "INSERT of a double precision 2.5 (rint: 2, numeric: 3) refused");
	IS_ERROR(bind_typed(&db4, ins, "9007199254740993", 16, 0, 701), "0A000", "bigint",
		 "INSERT of a double precision beyond 2^53 refused");
	IS_SHARD(bind_typed(&db4, ins, "12", 2, 0, 700), bigint_shard(12, 4),
		 "INSERT of a real 12: the shard of 12");

	/* binary arrays: elements are laid out by their own type */
	uint8_t arr[20 + 2 * 12];
	const uint8_t hdr[20] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 189 /* 701 */, 0, 0, 0, 2, 0, 0, 0, 1};
	const uint8_t five[8] = {0x40, 0x14, 0, 0, 0, 0, 0, 0}, seven[8] = {0x40, 0x1c, 0, 0, 0, 0, 0, 0};
	memcpy(arr, hdr, 20);
	memcpy(arr + 20, (const uint8_t[]){0, 0, 0, 8}, 4);
	memcpy(arr + 24, five, 8);
	memcpy(arr + 32, (const uint8_t[]){0, 0, 0, 8}, 4);
	memcpy(arr + 36, seven, 8);
	const sp_target_t *t = bind_typed(&db4, any, arr, (int32_t)sizeof(arr), 1, 1022);
	ok(t->kind == SP_TARGET_FANOUT ||
	       (t->kind == SP_TARGET_SHARD && bigint_shard(5, 4) == bigint_shard(7, 4) &&
		t->shard == bigint_shard(5, 4)),
	   "binary double precision[] for a bigint key: not read as bigints (%s)", kind(t));
	IS_KIND(bind_typed(&db4, any, "{9007199254740993}", 18, 0, 1022), SP_TARGET_FANOUT,
		"text double precision[] beyond 2^53: every shard");

	/* character(n): the trailing spaces go, as in bpchar's cast to text */
	char k[16], kp[16];
	int i;
	for (i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "x%d", i);
		snprintf(kp, sizeof(kp), "x%d ", i);
		if (text_shard(k, 2) != text_shard(kp, 2))
			break;
	}
	ok(i < 100, "a key whose shard differs with a trailing space: '%s'", k);
	const char *tsel = "SELECT * FROM accounts WHERE acct = $1";
	IS_SHARD(bind_typed(&dbm, tsel, kp, (int32_t)strlen(kp), 0, 1042), text_shard(k, 2),
		 "character parameter '%s ' (text format): the shard of '%s'", k, k);
	IS_SHARD(bind_typed(&dbm, tsel, kp, (int32_t)strlen(kp), 1, 1042), text_shard(k, 2),
		 "... binary format: the same");
	IS_SHARD(bind_typed(&dbm, tsel, kp, (int32_t)strlen(kp), 0, 25), text_shard(kp, 2),
		 "a text parameter keeps its trailing space");
	char ta[32];
	snprintf(ta, sizeof(ta), "{\"%s\"}", kp);
	IS_SHARD(bind_typed(&dbm, "SELECT * FROM accounts WHERE acct = ANY($1)", ta,
			    (int32_t)strlen(ta), 0, 1014),
		 text_shard(k, 2), "character[] parameter (text format): trailing spaces dropped");
}

/*
 * Integer keys compared with or assigned a numeric value, as PostgreSQL takes them:
 * bigint = numeric compares exactly (id = 2.0 is id = 2, id = 1.5 matches no row), an
 * INSERT rounds half away from zero (2.5 -> 3, -2.5 -> -3), and only a '...' literal
 * is read with the key type's own input (id = '2.0' is 22P02).
 */
static void test_numeric_keys(void)
{
	char sql[256];
	int64_t a, b;
	const sp_target_t *t;

	for (int pass = 0; pass < 2; pass++) { /* again: from the plan cache and the shape memo */
		IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 2.0"), bigint_shard(2, 4),
			 "user_id = 2.0 is user_id = 2 (pass %d)", pass);
		IS_ERROR(q(&db4, "SELECT * FROM users WHERE user_id = '2.0'"), "22P02",
			 "invalid input syntax for type bigint",
			 "user_id = '2.0': the key type's input, 22P02 as PostgreSQL (pass %d)",
			 pass);
		IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 1e2"), bigint_shard(100, 4),
			 "user_id = 1e2 is user_id = 100 (pass %d)", pass);
		IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 1.5"), 0,
			 "user_id = 1.5 matches no row: one shard answers (pass %d)", pass);
		IS_ERROR(q(&db4, "SELECT * FROM users WHERE user_id = 'abc'"), "22P02",
			 "invalid input syntax", "user_id = 'abc' still 22P02 (pass %d)", pass);
	}
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = -2.0"), bigint_shard(-2, 4),
		 "user_id = -2.0");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = .7e1"), bigint_shard(7, 4),
		 "user_id = .7e1");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id IN (1.5, 7)"), bigint_shard(7, 4),
		 "IN (1.5, 7): only 7 can match");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 2.5::bigint"), bigint_shard(3, 4),
		 "2.5::bigint is 3 (the cast rounds)");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = -2.5::int8"), bigint_shard(-3, 4),
		 "-2.5::int8 is -3");
	IS_ERROR(q(&db4, "SELECT * FROM users WHERE user_id = '2.5'::int8"), "22P02", "bigint",
		 "'2.5'::int8: 22P02");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 2::numeric"), bigint_shard(2, 4),
		 "2::numeric");
	IS_KIND(q(&db4, "SELECT * FROM users WHERE user_id = 2.9::numeric(10,0)"), SP_TARGET_FANOUT,
		"2.9::numeric(10,0) may be 3: not pinned");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 5::float8"), bigint_shard(5, 4),
		 "5::float8");
	IS_KIND(q(&db4, "SELECT * FROM users WHERE user_id = 9007199254740993::float8"),
		SP_TARGET_FANOUT, "a float8 beyond 2^53 equals several bigints: not pinned");
	IS_SHARD(qtx(&db4, "SELECT * FROM users WHERE user_id = 1.5", 2), 2,
		 "no row can match inside a transaction: the transaction's shard");
	IS_SHARD(q(&db4, "DELETE FROM users WHERE user_id = 2.0"), bigint_shard(2, 4),
		 "DELETE ... WHERE user_id = 2.0 by key");

	/* an integer key narrower than the constant */
	sp_shard_value_t iv[2] = {{.i = 7}, {.i = 5}};
	IS_SHARD(q(&db4, "SELECT * FROM items WHERE tenant_id = 7.0 AND item_id = 5"),
		 sp_shard_of_keys(t_item, iv, NULL, 2, 4), "composite key, tenant_id = 7.0");
	IS_SHARD(q(&db4, "SELECT * FROM items WHERE tenant_id = 3000000000 AND item_id = 5"), 0,
		 "integer = 3000000000 matches no row");
	IS_ERROR(q(&db4, "SELECT * FROM items WHERE tenant_id = '3000000000' AND item_id = 5"),
		 "22003", "out of range", "integer = '3000000000': 22003");
	IS_ERROR(q(&db4, "INSERT INTO items (tenant_id, item_id) VALUES (3000000000, 1)"), "22003",
		 "integer out of range", "INSERT of 3000000000 into an integer key: 22003");

	/* INSERT rounds numeric to the key, half away from zero */
	IS_SHARD(q(&db4, "INSERT INTO users (user_id) VALUES (2.5)"), bigint_shard(3, 4),
		 "INSERT 2.5: the row's key is 3");
	IS_SHARD(q(&db4, "INSERT INTO users (user_id) VALUES (-2.5)"), bigint_shard(-3, 4),
		 "INSERT -2.5: the row's key is -3");
	IS_SHARD(q(&db4, "INSERT INTO users (user_id) VALUES (2.4999)"), bigint_shard(2, 4),
		 "INSERT 2.4999: the row's key is 2");
	IS_SHARD(q(&db4, "INSERT INTO users (user_id) VALUES (1.5e1)"), bigint_shard(15, 4),
		 "INSERT 1.5e1: 15");
	IS_ERROR(q(&db4, "INSERT INTO users (user_id) VALUES ('2.5')"), "22P02", "bigint",
		 "INSERT '2.5': 22P02 as PostgreSQL");
	IS_ERROR(q(&db4, "INSERT INTO users (user_id) VALUES (1e30)"), "22003",
		 "bigint out of range", "INSERT 1e30: bigint out of range");
	IS_ERROR(q(&db4, "INSERT INTO users (user_id) VALUES (2.5::numeric)"), "0A000",
		 "cannot tell", "INSERT 2.5::numeric (a typmod may round it): refused");
	two_keys(2, &a, &b);
	snprintf(sql, sizeof(sql), "INSERT INTO users (user_id) VALUES (%lld.4), (%lld.5)",
		 (long long)a, (long long)b - 1);
	t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->shard_mask == 3 && t->per_shard_sql,
	   "a multi-row INSERT of numerics split by their rounded keys");
	snprintf(sql, sizeof(sql), "UPDATE users SET user_id = %lld.4 WHERE user_id = %lld",
		 (long long)a, (long long)a);
	IS_SHARD(q(&db2, sql), 0, "UPDATE SET key = a.4 WHERE key = a: stays");
	snprintf(sql, sizeof(sql), "UPDATE users SET user_id = %lld.5 WHERE user_id = %lld",
		 (long long)b - 1, (long long)a);
	IS_ERROR(q(&db2, sql), "0A000", "move", "UPDATE SET key = (b-1).5 moves the row to b");

	/* text Bind parameters: the declared type may be numeric (a driver's BigDecimal) */
	const char *v42[] = {"42.0"}, *v425[] = {"42.5"}, *vabc[] = {"abc"}, *v25[] = {"2.5"};
	IS_SHARD(bind_text(&db4, "SELECT * FROM users WHERE user_id = $1", 1, v42, -1),
		 bigint_shard(42, 4), "Bind '42.0': the rows of 42");
	IS_SHARD(bind_text(&db4, "SELECT * FROM users WHERE user_id = $1", 1, v425, -1), 0,
		 "Bind '42.5': no row can match, one shard");
	IS_ERROR(bind_text(&db4, "SELECT * FROM users WHERE user_id = $1", 1, vabc, -1), "22P02",
		 "bigint", "Bind 'abc': 22P02");
	IS_SHARD(bind_text(&db4, "INSERT INTO users (user_id) VALUES ($1)", 1, v25, -1),
		 bigint_shard(3, 4), "INSERT with Bind '2.5': key 3");
	const char *arr[] = {"{2.0, 7, 1.5}"};
	uint64_t m = bit(bigint_shard(2, 4)) | bit(bigint_shard(7, 4));
	t = bind_text(&db4, "SELECT * FROM users WHERE user_id = ANY($1)", 1, arr, -1);
	ok((t->kind == SP_TARGET_SHARD && bit(t->shard) == m) ||
	       (t->kind == SP_TARGET_FANOUT && t->shard_mask == m),
	   "ANY('{2.0, 7, 1.5}'): the shards of 2 and 7");
}

/* Append to s (cap bytes, *w used): bounded, and the end stays NUL-terminated. */
static void catf(char *s, size_t cap, size_t *w, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void catf(char *s, size_t cap, size_t *w, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (*w >= cap)
		return;
	va_start(ap, fmt);
	k = vsnprintf(s + *w, cap - *w, fmt, ap);
	va_end(ap);
	if (k > 0)
		*w = *w + (size_t)k < cap ? *w + (size_t)k : cap - 1;
}

/* "PREFIX SELECT * FROM users WHERE user_id = KEY AND (v = 0 OR v = 1 ...)" of at least n bytes */
static char *long_select(const char *prefix, long long key, size_t n)
{
	size_t cap = n + 256, w = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	catf(s, cap, &w, "%sSELECT * FROM users WHERE user_id = %lld AND (v = 0", prefix, key);
	for (int i = 1; w < n; i++)
		catf(s, cap, &w, " OR v = %d", i);
	catf(s, cap, &w, ")");
	return s;
}

/*
 * max_route_query_size: a longer text is never parsed (libpg_query needs hundreds of
 * bytes of memory per byte of SQL); it goes by its leading hint or the session's shard,
 * to the primary of a one-shard database, or is refused with 54000.
 */
static void test_oversize(void)
{
	int64_t a, b;
	char pre[128];
	char *s;
	const sp_target_t *t;
	sp_router_stats_t s0, s1;

	two_keys(2, &a, &b);
	ok(sp_router_max_query_size() == 1048576, "the default limit is 1MB");
	/* the QA statement: 200,000 OR terms, 2.9 MB, is refused at once by default */
	s = malloc(3100000);
	if (s) {
		size_t w = 0;
		catf(s, 3100000, &w, "SELECT * FROM users WHERE nosuchcol=1 AND (id=0");
		for (int i = 1; i < 200000; i++)
			catf(s, 3100000, &w, " OR id=%d", i);
		catf(s, 3100000, &w, ")");
		t = q(&db2, s);
		IS_ERROR(t, "54000", "max_route_query_size",
			 "a 2.9 MB statement is not parsed: 54000");
		ok(strstr(t->message, "1048576 bytes") && strstr(t->hint, "shard: N") &&
		       strstr(t->hint, "max_route_query_size"),
		   "the refusal names the size, the limit, the hint and the key");
		free(s);
	}

	sp_router_set_max_query_size(300);
	s = long_select("", b, 250);
	if (s && strlen(s) < 300) {
		memset(s + strlen(s), ' ', 301 - strlen(s));
		s[300] = '\0';
		IS_SHARD(q(&db2, s), 1,
			 "a text of exactly the limit is analysed and routed by key");
		s[300] = ' ';
		s[301] = '\0';
		IS_ERROR(q(&db2, s), "54000", "301 bytes", "one byte more is not");
	}
	free(s);
	s = long_select("", b, 400);
	t = q(&db2, s);
	IS_ERROR(t, "54000", "max_route_query_size", "a text above the limit, no hint: 54000");
	ok(strstr(t->message, "(300 bytes)"), "the message names the limit: %s", t->message);
	free(s);

	snprintf(pre, sizeof(pre), "/* shard: 1 */ ");
	s = long_select(pre, a, 400);
	t = q(&db2, s);
	IS_SHARD(t, 1, "/* shard: 1 */ in front: shard 1, whatever its key says");
	ok(t->write && !t->read, "  as a write");
	free(s);
	s = long_select("-- shard: 0\n  /* role: primary */\n", b, 400);
	IS_SHARD(q(&db2, s), 0, "-- shard: 0 comment in front");
	free(s);
	snprintf(pre, sizeof(pre), "/* shard_key: %lld */", (long long)b);
	s = long_select(pre, a, 400);
	IS_SHARD(q(&db2, s), 1, "/* shard_key: K */ in front: the shard of K");
	free(s);
	s = long_select("/* shard: 7 */", a, 400);
	IS_ERROR(q(&db2, s), "22023", "shard 7", "a shard hint out of range");
	free(s);
	s = long_select("/* shard: x */", a, 400);
	IS_ERROR(q(&db2, s), "22023", "hint", "an invalid hint");
	free(s);
	s = long_select("SELECT 1; /* shard: 1 */ ", a, 400);
	IS_ERROR(q(&db2, s), "54000", "max_route_query_size",
		 "a hint after the first token is not one");
	free(s);

	q(&db2, "SET shardpool.shard = 1");
	s = long_select("", a, 400);
	IS_SHARD(q(&db2, s), 1, "SET shardpool.shard = 1: there");
	IS_ERROR(qtx(&db2, s, 0), "0A000", "transaction is on shard 0",
		 "  but not out of a transaction on shard 0");
	sp_router_session_init(&sess);
	IS_ERROR(qtx(&db2, s, 1), "54000", "max_route_query_size",
		 "in a transaction, no hint: 54000 (its keys may be elsewhere)");
	t = q(&db1, s);
	ok(t->kind == SP_TARGET_ANY && t->write,
	   "one shard (replicas): to the primary, as a write");
	free(s);

	/* Parse texts */
	sp_router_get_stats(&s0);
	s = long_select("", b, 400);
	sp_plan_t *p = sp_router_prepare(&db2, s, strlen(s));
	ok(p != NULL, "a long Parse text gets a plan");
	sp_router_bind(&db2, &sess, p, 0, NULL, NULL, NULL, NULL, 0, -1, &T);
	IS_ERROR(&T, "54000", "max_route_query_size", "  Bind: 54000");
	sp_plan_unref(p);
	free(s);
	snprintf(pre, sizeof(pre), "/* shard_key: %lld */", (long long)b);
	s = long_select(pre, a, 400);
	p = sp_router_prepare(&db2, s, strlen(s));
	sp_router_bind(&db2, &sess, p, 0, NULL, NULL, NULL, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "  with a shard_key hint: its shard");
	sp_plan_unref(p);
	sp_router_get_stats(&s1);
	ok(s1.misses == s0.misses && s1.entries == s0.entries,
	   "long Parse texts are neither analysed nor cached");

	sp_router_set_max_query_size(0);
	p = sp_router_prepare(&db2, s, strlen(s));
	sp_router_bind(&db2, &sess, p, 0, NULL, NULL, NULL, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "limit 0: analysed, the hint still rules");
	sp_plan_unref(p);
	free(s);
	s = long_select("", b, 400);
	IS_SHARD(q(&db2, s), 1, "limit 0: a long text is analysed and routed by key");
	free(s);
	sp_router_set_max_query_size(SP_ROUTER_DEFAULT_MAX_QUERY_SIZE);
	sp_router_session_init(&sess);
}

static void test_bind(void)
{
	int64_t a, b;
	char txt[32];
	two_keys(2, &a, &b);
	sp_plan_t *p = sp_router_prepare(&db2, "SELECT * FROM users WHERE user_id = $1", 38);
	ok(p != NULL, "prepare");
	snprintf(txt, sizeof(txt), "%lld", (long long)b);
	const uint8_t *vals[1] = {(const uint8_t *)txt};
	int32_t lens[1] = {(int32_t)strlen(txt)};
	int16_t fmt_text[1] = {0}, fmt_bin[1] = {1};
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_text, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "Bind text parameter");
	uint8_t be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)((uint64_t)b >> (56 - 8 * i));
	vals[0] = be;
	lens[0] = 8;
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_bin, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "Bind binary int8 parameter");
	uint8_t be4[4] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a};
	vals[0] = be4;
	lens[0] = 4;
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_bin, NULL, 0, -1, &T);
	IS_SHARD(&T, 0, "Bind binary int4 parameter against a bigint key");
	lens[0] = 3;
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_bin, NULL, 0, -1, &T);
	IS_ERROR(&T, "22P03", "", "binary parameter of a wrong length: 22P03");
	lens[0] = -1;
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_bin, NULL, 0, -1, &T);
	IS_SHARD(&T, 0, "NULL key hashes to shard 0, like PostgreSQL's hash partitioning");
	sp_router_bind(&db2, &sess, p, 0, NULL, NULL, NULL, NULL, 0, -1, &T);
	IS_KIND(&T, SP_TARGET_FANOUT, "Describe without Bind values: not pinned");
	sp_plan_t *p2 = sp_router_prepare(&db2, "SELECT * FROM users WHERE user_id = $1", 38);
	ok(p2 == p, "the same Parse text finds the same plan");
	sp_plan_unref(p2);
	sp_plan_unref(p);

	/* = ANY($1) with an array parameter, text and binary */
	p = sp_router_prepare(&db2, "SELECT * FROM users WHERE user_id = ANY($1)", 43);
	char arr[64];
	snprintf(arr, sizeof(arr), "{%lld, \"%lld\"}", (long long)a, (long long)b);
	vals[0] = (const uint8_t *)arr;
	lens[0] = (int32_t)strlen(arr);
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_text, NULL, 0, -1, &T);
	ok(T.kind == SP_TARGET_FANOUT && T.shard_mask == 3, "ANY($1) text array over both shards");
	snprintf(arr, sizeof(arr), "{%lld}", (long long)b);
	lens[0] = (int32_t)strlen(arr);
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_text, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "ANY($1) text array of one key");
	uint8_t bin[20 + 12];
	memset(bin, 0, sizeof(bin));
	bin[3] = 1;		  /* ndim */
	bin[8] = 0, bin[11] = 20; /* int8 oid */
	bin[15] = 1;		  /* one element */
	bin[19] = 1;		  /* lbound */
	bin[23] = 8;
	for (int i = 0; i < 8; i++)
		bin[24 + i] = (uint8_t)((uint64_t)a >> (56 - 8 * i));
	vals[0] = bin;
	lens[0] = sizeof(bin);
	sp_router_bind(&db2, &sess, p, 1, vals, lens, fmt_bin, NULL, 0, -1, &T);
	IS_SHARD(&T, 0, "ANY($1) binary array of one key");
	sp_plan_unref(p);

	/* an INSERT with parameters */
	p = sp_router_prepare(&db2, "INSERT INTO orders (user_id, total) VALUES ($1, $2)", 51);
	snprintf(txt, sizeof(txt), "%lld", (long long)b);
	const uint8_t *v2[2] = {(const uint8_t *)txt, (const uint8_t *)"10"};
	int32_t l2[2] = {(int32_t)strlen(txt), 2};
	int16_t f2[2] = {0, 0};
	sp_router_bind(&db2, &sess, p, 2, v2, l2, f2, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "INSERT with a Bind key");
	ok(T.write && !T.read, "INSERT is a write");
	sp_plan_unref(p);

	/* a binary parameter is read by the type Parse declared for it */
	{
		static const uint8_t oid_int8[] = {0, 0, 0, 20}, oid_text[] = {0, 0, 0, 25},
				     oid_numeric[] = {0, 0, 6, 0xa4}, oid_bpchar[] = {0, 0, 4, 0x12};
		static const uint8_t i8_42[] = {0, 0, 0, 0, 0, 0, 0, 42};
		static const int16_t one_bin[] = {1};
		const uint8_t *v1[1] = {i8_42};
		int32_t l1[1] = {8};
		int want = q(&dbm, "SELECT * FROM accounts WHERE acct = '42'")->shard;
		int other = q(&dbm, "SELECT * FROM accounts WHERE acct = '4'")->shard;

		p = sp_router_prepare(&dbm, "SELECT * FROM accounts WHERE acct = $1::text", 44);
		sp_router_bind(&dbm, &sess, p, 1, v1, l1, one_bin, oid_int8, 1, -1, &T);
		IS_SHARD(&T, want, "binary int8 42 (declared bigint) to a text key: routed as '42'");
		sp_router_bind(&dbm, &sess, p, 1, v1, l1, one_bin, oid_numeric, 1, -1, &T);
		IS_KIND(&T, SP_TARGET_FANOUT, "a binary numeric to a text key: no shard from it, the read fans out");
		v1[0] = (const uint8_t *)"42  ";
		l1[0] = 4;
		sp_router_bind(&dbm, &sess, p, 1, v1, l1, one_bin, oid_bpchar, 1, -1, &T);
		IS_SHARD(&T, want, "binary char(4) '42  ' to a text key: routed as '42'");
		v1[0] = (const uint8_t *)"4";
		l1[0] = 1;
		sp_router_bind(&dbm, &sess, p, 1, v1, l1, one_bin, oid_text, 1, -1, &T);
		IS_SHARD(&T, other, "binary text '4' (declared text): its bytes");
		sp_plan_unref(p);
		/* a character literal compared with a text key loses its trailing spaces */
		IS_SHARD(q(&dbm, "SELECT * FROM accounts WHERE acct = '42  '::bpchar"), want,
			 "'42  '::bpchar to a text key: routed as '42'");
		IS_KIND(q(&dbm, "SELECT * FROM accounts WHERE acct = '42  '::char(3)"), SP_TARGET_FANOUT,
			"'42  '::char(3) (cut and trimmed): no shard from it, the read fans out");
		IS_KIND(q(&dbm, "SELECT * FROM accounts WHERE acct = '4242'::varchar(2)"), SP_TARGET_FANOUT,
			"'4242'::varchar(2) (cut to '42'): the read fans out");
		IS_ERROR(q(&dbm, "INSERT INTO accounts (acct) VALUES ('42  '::char(4))"), "0A000",
			 "cannot tell which text", "INSERT of a char(n) value into a text key: refused, not misplaced");
		IS_SHARD(q(&dbm, "SELECT * FROM accounts WHERE acct = '42'::varchar"), want,
			 "::varchar without a length: the value as written");

		p = sp_router_prepare(&db2, "SELECT * FROM users WHERE user_id = $1::bigint", 46);
		v1[0] = (const uint8_t *)"42";
		l1[0] = 2;
		sp_router_bind(&db2, &sess, p, 1, v1, l1, one_bin, oid_text, 1, -1, &T);
		IS_SHARD(&T, bigint_shard(42, 2), "binary text '42' (declared text) cast to bigint: shard of 42, not of 0x3432");
		sp_plan_unref(p);
	}
}

static void test_fanout(void)
{
	const sp_target_t *t;
	int64_t ka, kb;
	char sql[256];

	/* a sharded table inside a subquery, CTE, derived table: each shard would see only
	 * its own rows there, so the statement is refused rather than answered wrongly */
	IS_ERROR(q(&db2, "SELECT (SELECT count(*) FROM users) AS n"), "0A000", "subquery",
		 "scalar subquery over a sharded table, unpinned: refused");
	IS_ERROR(q(&db2, "SELECT * FROM (SELECT count(*) FROM users) s"), "0A000", "users",
		 "derived table: refused, naming the table");
	IS_ERROR(q(&db2, "WITH c AS (SELECT max(user_id) m FROM users) SELECT m FROM c"), "0A000",
		 "subquery", "CTE: refused");
	IS_ERROR(q(&db2, "SELECT count(*) FROM (SELECT user_id FROM users LIMIT 5) s"), "0A000",
		 "subquery", "LIMIT inside a derived table: refused");
	IS_ERROR(q(&db2, "SELECT (SELECT count(*) FROM orders) FROM countries"), "0A000", "orders",
		 "a sharded subquery under a replicated table: refused");
	/* a replicated table kept by an outer join against a sharded one: each shard would
	 * add its own unmatched copies of the replicated rows */
	IS_ERROR(q(&db2, "SELECT c.code, u.user_id FROM countries c LEFT JOIN users u ON u.cc = c.code"),
		 "0A000", "replicated table countries", "replicated LEFT JOIN sharded, fanned out: refused");
	IS_ERROR(q(&db2, "SELECT count(*) FROM users u RIGHT JOIN countries c ON u.cc = c.code"),
		 "0A000", "unmatched copies", "sharded RIGHT JOIN replicated: refused");
	IS_ERROR(q(&db2, "SELECT * FROM countries c FULL JOIN users u ON u.cc = c.code"), "0A000",
		 "countries", "FULL JOIN of replicated and sharded: refused");
	IS_KIND(q(&db2, "SELECT u.user_id, c.code FROM users u LEFT JOIN countries c ON u.cc = c.code"),
		SP_TARGET_FANOUT, "sharded LEFT JOIN replicated: fans out (each sharded row once)");
	IS_KIND(q(&db2, "SELECT * FROM countries c LEFT JOIN users u ON u.cc = c.code WHERE u.user_id = 5"),
		SP_TARGET_SHARD, "replicated LEFT JOIN sharded pinned to one shard: fine");
	IS_KIND(q(&db2, "SELECT * FROM countries c JOIN users u ON u.cc = c.code"), SP_TARGET_FANOUT,
		"inner join of replicated and sharded: fans out");
	two_keys(2, &ka, &kb);
	snprintf(sql, sizeof(sql),
		 "SELECT * FROM users WHERE user_id IN (%lld, %lld) AND EXISTS (SELECT 1 FROM orders)",
		 (long long)ka, (long long)kb);
	IS_ERROR(q(&db2, sql), "0A000", "orders", "IN over two shards with an unpinned EXISTS: refused");
	snprintf(sql, sizeof(sql), "SELECT (SELECT count(*) FROM users WHERE user_id = %lld)",
		 (long long)kb);
	IS_SHARD(q(&db2, sql), 1, "a pinned subquery alone: its shard");
	snprintf(sql, sizeof(sql),
		 "SELECT u.user_id, (SELECT count(*) FROM orders o WHERE o.user_id = u.user_id) "
		 "FROM users u WHERE u.user_id IN (%lld, %lld)",
		 (long long)ka, (long long)kb);
	t = q(&db2, sql);
	IS_KIND(t, SP_TARGET_FANOUT,
		"a subquery correlated on the shard key (co-located rows): still fanned out");
	t = q(&db2, "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.user_id)");
	IS_KIND(t, SP_TARGET_FANOUT, "unpinned EXISTS correlated on the shard key: fanned out (%s)", t->message);
	{
		int64_t ka2, kb2;
		two_keys(2, &ka2, &kb2);
		char qq[300];
		snprintf(qq, sizeof(qq), "SELECT u.user_id, count(o.total) FROM users u LEFT JOIN orders o USING (user_id) WHERE user_id IN (%lld, %lld) GROUP BY 1", (long long)ka2, (long long)kb2);
		const sp_target_t *tt = q(&db2, qq);
		ok(tt->kind == SP_TARGET_FANOUT && tt->shard_mask == 3,
		   "LEFT JOIN ... USING (key) WHERE key IN (keys on two shards): both shards (%s)", tt->message);
	}
	IS_KIND(q(&db2, "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.user_id"),
		SP_TARGET_FANOUT, "unpinned join of co-located tables on the key: fanned out");
	IS_KIND(q(&db2, "SELECT count(*) FROM users u JOIN orders o USING (user_id)"), SP_TARGET_FANOUT,
		"... with USING");
	IS_KIND(q(&db2, "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.user_id"),
		SP_TARGET_FANOUT, "... a LEFT JOIN on the key");
	IS_KIND(q(&db2, "SELECT * FROM users u, orders o WHERE o.user_id = u.user_id AND o.total > 5"),
		SP_TARGET_FANOUT, "... the key equality in WHERE");
	IS_ERROR(q(&db2, "SELECT * FROM users u JOIN orders o ON o.user_id = u.user_id + 1"), "0A000",
		 "joined on their shard keys", "a join on an expression of the key: refused");
	IS_ERROR(q(&db2, "SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.user_id"), "0A000",
		 "joined on their shard keys", "a FULL JOIN (no key edge taken): refused");
	IS_ERROR(q(&db2, "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.total = u.score)"),
		 "0A000", "orders", "an EXISTS correlated off the key: refused");

	t = q(&db2, "SELECT name, user_id FROM users ORDER BY user_id DESC, 1 LIMIT 10");
	ok(t->kind == SP_TARGET_FANOUT && t->shard_mask == 3 && t->fanout_merge,
	   "unpinned read: fan-out to all");
	ok(!t->write && t->read, "a fan-out read is a read");
	is_int(t->merge.n_sort, 2, "two sort keys");
	is_int(t->merge.sort[0].col, 1, "ORDER BY user_id: column index 1");
	ok(t->merge.sort[0].desc && t->merge.sort[0].nulls_first, "DESC, NULLS FIRST by default");
	is_int(t->merge.sort[1].col, 0, "ORDER BY 1: column index 0");
	ok(!t->merge.sort[1].desc && !t->merge.sort[1].nulls_first, "ASC, NULLS LAST by default");
	is_int(t->merge.limit, 10, "LIMIT 10");
	is_int(t->merge.offset, 0, "no OFFSET");
	ok(!t->per_shard_sql, "LIMIT alone needs no rewrite");
	{
		const sp_target_t *u = q(&db2, "SELECT name, user_id FROM users x ORDER BY x.user_id DESC, x.name");
		ok(u->kind == SP_TARGET_FANOUT && u->merge.n_sort == 2 && u->merge.sort[0].col == 1 &&
		       u->merge.sort[1].col == 0,
		   "ORDER BY alias.col matches the select list's col (one table read)");
		u = q(&db2, "SELECT users.cc, count(*) FROM users GROUP BY cc ORDER BY users.cc");
		ok(u->kind == SP_TARGET_FANOUT && u->merge.has_aggs && u->merge.n_sort == 1,
		   "GROUP BY col with users.cc selected: merged (%s)", u->message);
		u = q(&db2, "SELECT * FROM users u JOIN orders o ON o.user_id = u.score WHERE u.user_id = 5");
		ok(u->kind == SP_TARGET_ERROR && strstr(u->message, "users") && strstr(u->message, "orders"),
		   "a join off the key, one side pinned: the refusal names both tables (%s)", u->message);
		IS_ERROR(q(&db2, "SELECT u.cc FROM users u JOIN countries c ON c.code = u.cc ORDER BY c.cc"),
			 "0A000", "not in the select list", "two tables read: c.cc is not taken for the selected cc");
	}
	ok(!t->merge.has_aggs, "no aggregates");

	t = q(&db2, "SELECT user_id, name FROM users ORDER BY user_id LIMIT 10 OFFSET 20");
	ok(t->kind == SP_TARGET_FANOUT && t->per_shard_sql, "OFFSET: per-shard rewrite");
	is_int(t->merge.limit, 10, "merge LIMIT 10");
	is_int(t->merge.offset, 20, "merge OFFSET 20");
	is_str(shard_sql(t, 0), "SELECT user_id, name FROM users ORDER BY user_id LIMIT 30",
	       "shard 0 runs LIMIT 30");
	is_str(shard_sql(t, 1), "SELECT user_id, name FROM users ORDER BY user_id LIMIT 30",
	       "shard 1 too");
	t = q(&db2,
	      "SELECT user_id FROM users ORDER BY user_id OFFSET 5 ROWS FETCH FIRST 3 ROWS ONLY");
	is_str(shard_sql(t, 0), "SELECT user_id FROM users ORDER BY user_id LIMIT 8",
	       "OFFSET ... FETCH FIRST rewritten");
	t = q(&db2, "SELECT user_id FROM users ORDER BY user_id OFFSET 5");
	is_str(shard_sql(t, 1), "SELECT user_id FROM users ORDER BY user_id",
	       "OFFSET without LIMIT: dropped");
	is_int(t->merge.limit, -1, "no LIMIT");

	t = q(&db2, "SELECT count(*), sum(total), min(total), max(total) FROM orders");
	ok(t->kind == SP_TARGET_FANOUT && t->merge.has_aggs, "aggregates: merged");
	is_int(t->merge.n_cols, 4, "four columns");
	ok(t->merge.agg[0] == SP_MAGG_COUNT && t->merge.agg[1] == SP_MAGG_SUM &&
	       t->merge.agg[2] == SP_MAGG_MIN && t->merge.agg[3] == SP_MAGG_MAX,
	   "count, sum, min, max");
	ok(!t->per_shard_sql, "no rewrite for count/sum/min/max");

	t = q(&db2, "SELECT country, avg(total), count(*) FROM orders GROUP BY country ORDER BY 2 "
		    "DESC LIMIT 5");
	ok(t->kind == SP_TARGET_FANOUT && t->merge.has_aggs && t->per_shard_sql,
	   "avg with GROUP BY: rewritten");
	is_int(t->merge.n_cols, 4, "three columns plus the hidden count");
	ok(t->merge.agg[0] == SP_MAGG_NONE && t->merge.agg[1] == SP_MAGG_AVG_SUM &&
	       t->merge.agg[2] == SP_MAGG_COUNT && t->merge.agg[3] == SP_MAGG_HIDDEN,
	   "group key, avg sum, count, hidden count");
	is_int(t->merge.avg_count_col[1], 3, "avg's count is column 3");
	is_int(t->merge.limit, 5, "LIMIT applied after merging");
	is_str(shard_sql(t, 0),
	       "SELECT country, sum(total) AS \"avg\", count(*), count(total) FROM orders GROUP BY "
	       "country ORDER BY 2 DESC",
	       "per-shard SQL: avg -> sum + count, LIMIT removed");
	t = q(&db2, "SELECT avg(total) AS mean FROM orders");
	is_str(shard_sql(t, 1), "SELECT sum(total) AS mean, count(total) FROM orders",
	       "avg with an alias");

	/* refusals */
	IS_ERROR(q(&db2, "SELECT DISTINCT name FROM users"), "0A000", "DISTINCT",
		 "DISTINCT refused");
	ok(strstr(T.hint, "users.user_id") && strstr(T.hint, "/* shard: N */"),
	   "the hint names the key and the shard hint");
	IS_ERROR(q(&db2, "SELECT DISTINCT ON (name) name FROM users"), "0A000", "DISTINCT ON",
		 "DISTINCT ON refused");
	IS_ERROR(q(&db2, "SELECT name, row_number() OVER () FROM users"), "0A000", "window",
		 "window refused");
	IS_ERROR(
	    q(&db2, "SELECT country, count(*) FROM orders GROUP BY country HAVING count(*) > 1"),
	    "0A000", "HAVING", "HAVING refused");
	IS_ERROR(q(&db2, "SELECT name FROM users UNION SELECT name FROM users"), "0A000", "UNION",
		 "UNION refused");
	IS_ERROR(q(&db2, "SELECT count(DISTINCT name) FROM users"), "0A000", "count(DISTINCT",
		 "count(DISTINCT) refused");
	IS_ERROR(q(&db2, "SELECT string_agg(name, ',') FROM users"), "0A000", "string_agg",
		 "string_agg refused");
	IS_ERROR(q(&db2, "SELECT sum(total) / count(*) FROM orders"), "0A000",
		 "expression over aggregates", "expression over aggregates refused");
	IS_ERROR(q(&db2, "SELECT name FROM users ORDER BY created"), "0A000",
		 "add the column to the select list", "ORDER BY a column not selected");
	IS_KIND(q(&db2, "SELECT * FROM users ORDER BY user_id"), SP_TARGET_FANOUT,
		"ORDER BY a column with SELECT *: merged, the column found by name");
	IS_ERROR(q(&db2, "SELECT * FROM users ORDER BY lower(name)"), "0A000", "SELECT *",
		 "ORDER BY an expression with SELECT * refused");
	IS_ERROR(q(&db2, "SELECT count(*) FROM orders GROUP BY country"), "0A000", "GROUP BY",
		 "GROUP BY not selected");
	IS_ERROR(q(&db2, "SELECT *, count(*) FROM users"), "0A000", "SELECT *",
		 "SELECT * with aggregates");
	IS_ERROR(q(&db2, "SELECT name FROM users LIMIT (SELECT 1)"), "0A000", "LIMIT",
		 "LIMIT expression refused");
	IS_ERROR(q(&db2, "SELECT * FROM users u JOIN orders o ON o.note = u.name"), "0A000",
		 "joined on their shard keys", "join of two unpinned sharded tables refused");
	IS_KIND(q(&db2, "SELECT * FROM users"), SP_TARGET_FANOUT,
		"SELECT * without ORDER BY: concatenation");
	IS_KIND(q(&db2, "EXPLAIN SELECT * FROM users"), SP_TARGET_FANOUT,
		"EXPLAIN of an unpinned read: every shard");
	IS_KIND(q(&db1, "SELECT DISTINCT name FROM users"), SP_TARGET_ANY,
		"single-shard database: anything goes to the one shard");
}

static void test_writes(void)
{
	char sql[512];
	int64_t a, b, a2 = 0;
	const sp_target_t *t;

	two_keys(2, &a, &b);
	for (int64_t v = a + 1; v < 1000; v++)
		if (bigint_shard(v, 2) == 0) {
			a2 = v;
			break;
		}
	snprintf(sql, sizeof(sql), "UPDATE users SET name = 'x' WHERE user_id = %lld",
		 (long long)b);
	IS_SHARD(q(&db2, sql), 1, "UPDATE by key");
	ok(T.write && !T.read, "UPDATE is a write");
	snprintf(sql, sizeof(sql), "DELETE FROM users WHERE user_id IN (%lld, %lld)", (long long)a,
		 (long long)b);
	t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->fanout_sum && !t->fanout_merge && !t->per_shard_sql &&
	       t->shard_mask == 3,
	   "DELETE by keys on two shards: the same statement on both, counts summed");
	IS_ERROR(q(&db2, "UPDATE users SET name = 'x' WHERE name = 'y'"), "0A000", "users",
		 "unpinned UPDATE refused");
	ok(strstr(T.hint, "users.user_id") != NULL, "the hint names users.user_id");
	IS_ERROR(q(&db2, "DELETE FROM orders"), "0A000", "orders", "unpinned DELETE refused");
	IS_ERROR(q(&db2, "INSERT INTO users (name) VALUES ('x')"), "0A000", "user_id",
		 "INSERT without the key column");
	IS_ERROR(q(&db2, "INSERT INTO users (user_id, name) VALUES (DEFAULT, 'x')"), "0A000",
		 "DEFAULT", "INSERT with DEFAULT key");
	IS_ERROR(q(&db2, "INSERT INTO users (user_id, name) VALUES (1 + 1, 'x')"), "0A000",
		 "expression", "INSERT with an expression key");
	IS_ERROR(q(&db2, "INSERT INTO users VALUES (1, 'x')"), "0A000", "column list",
		 "INSERT without a column list");

	snprintf(sql, sizeof(sql), "UPDATE users SET user_id = %lld WHERE user_id = %lld",
		 (long long)b, (long long)a);
	IS_ERROR(q(&db2, sql), "0A000", "move the row from shard 0 to shard 1",
		 "UPDATE moving a row refused");
	snprintf(sql, sizeof(sql), "UPDATE users SET user_id = %lld WHERE user_id = %lld",
		 (long long)a2, (long long)a);
	IS_SHARD(q(&db2, sql), 0, "UPDATE of the key within one shard");
	snprintf(sql, sizeof(sql), "UPDATE users SET user_id = user_id * 2 WHERE user_id = %lld",
		 (long long)a);
	IS_ERROR(q(&db2, sql), "0A000", "expression", "UPDATE of the key to an expression refused");

	/* multi-row INSERT split */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO orders (user_id, total) VALUES (%lld, 1), (%lld, 2), (%lld, 'three') "
		 "RETURNING id",
		 (long long)a, (long long)b, (long long)a2);
	t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->fanout_sum && t->per_shard_sql && t->shard_mask == 3,
	   "multi-row INSERT on two shards: split");
	char want0[256], want1[256];
	snprintf(
	    want0, sizeof(want0),
	    "INSERT INTO orders (user_id, total) VALUES (%lld, 1), (%lld, 'three') RETURNING id",
	    (long long)a, (long long)a2);
	snprintf(want1, sizeof(want1),
		 "INSERT INTO orders (user_id, total) VALUES (%lld, 2) RETURNING id", (long long)b);
	is_str(shard_sql(t, 0), want0, "shard 0 gets its two rows, RETURNING kept");
	is_str(shard_sql(t, 1), want1, "shard 1 gets its row");
	snprintf(sql, sizeof(sql),
		 "INSERT INTO orders (user_id, total) VALUES (%lld, 1), (%lld, 2) ON CONFLICT (id) "
		 "DO NOTHING",
		 (long long)a, (long long)a2);
	IS_SHARD(q(&db2, sql), 0, "multi-row INSERT on one shard: not split");
	/* rows of different lengths: PostgreSQL refuses them, each shard's part could run */
	snprintf(sql, sizeof(sql), "INSERT INTO orders (user_id, total) VALUES (%lld, 1), (%lld)",
		 (long long)a, (long long)b);
	IS_ERROR(q(&db2, sql), "42601", "same length",
		 "multi-row INSERT with VALUES lists of different lengths refused, not split");
	snprintf(sql, sizeof(sql), "INSERT INTO orders (user_id) VALUES (%lld), (%lld, 2)",
		 (long long)a, (long long)b);
	IS_ERROR(q(&db2, sql), "42601", "same length",
		 "... also when a later row is the longer one");

	/* client_encoding other than UTF8: non-ASCII text keys are not the bytes the shards hash */
	IS_KIND(q(&dbm, "SET client_encoding = 'LATIN1'"), SP_TARGET_ANY,
		"SET client_encoding goes to the server");
	IS_ERROR(q(&dbm, "SELECT * FROM accounts WHERE acct = '\xe9t\xe9'"), "0A000", "client_encoding",
		 "client_encoding LATIN1: a non-ASCII text key is refused, not hashed as UTF8");
	IS_ERROR(q(&dbm, "INSERT INTO accounts (acct) VALUES ('ok'), ('\xe9')"), "0A000",
		 "client_encoding", "... also in a multi-row INSERT");
	IS_ERROR(q(&dbm, "COPY accounts (acct) FROM STDIN"), "0A000", "client_encoding",
		 "... and a COPY into a text-keyed table");
	IS_SHARD(q(&dbm, "SELECT * FROM accounts WHERE acct = 'plain'"), text_shard("plain", 2),
		 "client_encoding LATIN1: an ASCII text key still routes");
	IS_SHARD(q(&dbm, "SELECT * FROM users WHERE user_id = 7"), bigint_shard(7, 2),
		 "client_encoding LATIN1: integer keys are not affected");
	IS_KIND(q(&dbm, "SET NAMES 'UTF8'"), SP_TARGET_ANY, "SET NAMES 'UTF8'");
	IS_SHARD(q(&dbm, "SELECT * FROM accounts WHERE acct = '\xc3\xa9t\xc3\xa9'"),
		 text_shard("\xc3\xa9t\xc3\xa9", 2), "back in UTF8: the non-ASCII key routes again");
	sp_router_session_set_client_encoding(&sess, "WIN1252");
	IS_ERROR(q(&dbm, "SELECT * FROM accounts WHERE acct = '\xe9'"), "0A000", "client_encoding",
		 "a startup client_encoding WIN1252: refused");
	q(&dbm, "SET client_encoding TO 'utf-8'");
	IS_SHARD(q(&dbm, "SELECT * FROM accounts WHERE acct = '\xc3\xa9'"), text_shard("\xc3\xa9", 2),
		 "SET client_encoding TO 'utf-8': routed");
	q(&dbm, "RESET ALL");
	IS_ERROR(q(&dbm, "SELECT * FROM accounts WHERE acct = '\xe9'"), "0A000", "client_encoding",
		 "RESET ALL: back to the startup encoding");
	sp_router_session_init(&sess);

	/* EXPLAIN ANALYZE runs the write on every shard it is sent to, all of it */
	snprintf(sql, sizeof(sql), "EXPLAIN ANALYZE INSERT INTO orders (user_id) VALUES (%lld), (%lld)",
		 (long long)a, (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "EXPLAIN ANALYZE",
		 "EXPLAIN ANALYZE of an INSERT whose rows belong to two shards refused");
	snprintf(sql, sizeof(sql), "EXPLAIN ANALYZE UPDATE orders SET total = 0 WHERE user_id IN (%lld, %lld)",
		 (long long)a, (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "EXPLAIN ANALYZE",
		 "EXPLAIN ANALYZE of an UPDATE on two shards refused");
	snprintf(sql, sizeof(sql), "EXPLAIN INSERT INTO orders (user_id) VALUES (%lld), (%lld)",
		 (long long)a, (long long)b);
	IS_KIND(q(&db2, sql), SP_TARGET_FANOUT, "EXPLAIN (no ANALYZE) of it: every shard's plan");
	snprintf(sql, sizeof(sql), "EXPLAIN ANALYZE INSERT INTO orders (user_id) VALUES (%lld)",
		 (long long)b);
	IS_SHARD(q(&db2, sql), 1, "EXPLAIN ANALYZE of a one-shard INSERT: that shard");

	/* SQL PREPARE / EXECUTE: EXECUTE runs where PREPARE ran, whatever its arguments */
	IS_ERROR(q(&db2, "PREPARE p(bigint) AS SELECT * FROM users WHERE user_id = $1"), "0A000",
		 "sharded table users", "SQL PREPARE of a read of a sharded table refused");
	IS_ERROR(q(&db2, "PREPARE p AS UPDATE users SET name = 'x' WHERE user_id = 1"), "0A000",
		 "PREPARE", "... also with a literal key (EXECUTE would not follow it)");
	IS_KIND(q(&db2, "PREPARE p AS SELECT * FROM countries"), SP_TARGET_ANY,
		"SQL PREPARE of a statement without a sharded table: the default shard");
	IS_KIND(q(&db2, "EXECUTE p(1)"), SP_TARGET_ANY, "EXECUTE: where PREPARE ran");
	IS_SHARD(q(&db2, "/* shard: 1 */ PREPARE p(bigint) AS SELECT * FROM users WHERE user_id = $1"),
		 1, "SQL PREPARE on a sharded table with a shard hint: that shard");
	sp_router_query(&db2, &sess, "SET shardpool.shard = 1", 23, -1, &T);
	IS_SHARD(q(&db2, "PREPARE p(bigint) AS SELECT * FROM users WHERE user_id = $1"), 1,
		 "SQL PREPARE on a sharded table with a session shard: that shard");
	sp_router_query(&db2, &sess, "RESET shardpool.shard", 21, -1, &T);

	/* replicated tables */
	t = q(&db2, "INSERT INTO countries (code) VALUES ('fr') RETURNING code");
	ok(t->kind == SP_TARGET_FANOUT && t->fanout_sum && t->fanout_first && t->shard_mask == 3,
	   "write to a replicated table: every shard, first shard's result");
	IS_KIND(q(&db2, "SELECT * FROM countries"), SP_TARGET_ANY,
		"read of a replicated table: any shard");
	IS_ERROR(q(&db2, "INSERT INTO countries SELECT cc FROM users WHERE user_id = 1"), "0A000",
		 "replicated", "replicated write fed by a sharded table refused");

	/* DDL */
	t = q(&db2, "CREATE INDEX ON users (name)");
	ok(t->kind == SP_TARGET_FANOUT && t->fanout_sum && t->write,
	   "DDL on a sharded table: every shard");
	IS_KIND(q(&db2, "CREATE TABLE misc (a int)"), SP_TARGET_ANY,
		"DDL on another table: the default shard");

	/* COPY */
	t = q(&db2, "COPY users (name, user_id) FROM STDIN WITH (FORMAT csv)");
	ok(t->kind == SP_TARGET_FANOUT && t->copy.mode == SP_ROUTER_COPY_SPLIT &&
	       t->copy.key_pos[0] == 1 && t->copy.csv && t->copy.delimiter == ',',
	   "COPY FROM STDIN into a sharded table: split by key column 1");
	IS_ERROR(q(&db2, "COPY users FROM STDIN"), "0A000", "column list",
		 "COPY without a column list refused");
	t = q(&db2, "COPY users (name, user_id) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (name, "
		    "user_id), FORCE_NULL (user_id))");
	ok(t->kind == SP_TARGET_FANOUT && t->copy.force_not_null == 1 && t->copy.force_null == 1,
	   "COPY FROM STDIN: FORCE_NOT_NULL / FORCE_NULL of the key column reach the splitter");
	t = q(&db4, "COPY items (item_id, tenant_id) FROM STDIN WITH CSV FORCE NOT NULL item_id");
	ok(t->kind == SP_TARGET_FANOUT && t->copy.force_not_null == 2 && t->copy.force_null == 0,
	   "... by key position, also in the old syntax");
	IS_ERROR(q(&db2, "COPY users (name, user_id) FROM STDIN (FORMAT csv, ENCODING 'LATIN1')"),
		 "0A000", "ENCODING 'LATIN1'",
		 "COPY FROM STDIN with a non-UTF8 ENCODING refused (its key bytes are not UTF8)");
	t = q(&db2, "COPY users (name, user_id) FROM STDIN (FORMAT csv, ENCODING 'utf-8')");
	ok(t->kind == SP_TARGET_FANOUT && t->copy.mode == SP_ROUTER_COPY_SPLIT,
	   "COPY FROM STDIN with ENCODING 'utf-8' is split");
	IS_ERROR(q(&db2, "COPY users (name, user_id) FROM STDIN (NULL "
			 "'NNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN')"),
		 "0A000", "NULL string",
		 "COPY FROM STDIN with a NULL string longer than the splitter keeps refused");
	t = q(&db2, "COPY users TO STDOUT (FORMAT csv, HEADER)");
	ok(t->kind == SP_TARGET_FANOUT && t->fanout_sum && t->read && !t->write && t->copy.header &&
	       t->copy.mode == SP_ROUTER_COPY_NONE,
	   "COPY TO STDOUT of a sharded table fans out (one csv header)");
	IS_ERROR(q(&db2, "COPY users TO '/tmp/x'"), "0A000", "COPY users TO",
		 "COPY TO a server file of a sharded table refused");
	t = q(&db2, "COPY countries FROM STDIN");
	ok(t->kind == SP_TARGET_FANOUT && t->copy.mode == SP_ROUTER_COPY_ALL,
	   "COPY into a replicated table: all rows everywhere");
	snprintf(sql, sizeof(sql), "COPY (SELECT * FROM users WHERE user_id = %lld) TO STDOUT",
		 (long long)b);
	IS_SHARD(q(&db2, sql), 1, "COPY (pinned query) TO");
}

static void test_range_list(void)
{
	IS_SHARD(q(&dbr, "SELECT * FROM users WHERE user_id = 5"), 0, "range: 5 in ..100");
	IS_SHARD(q(&dbr, "SELECT * FROM users WHERE user_id = -50"), 0, "range: -50 in ..100");
	IS_SHARD(q(&dbr, "SELECT * FROM users WHERE user_id = 100"), 1,
		 "range: 100 in 100..200 (inclusive low)");
	IS_SHARD(q(&dbr, "SELECT * FROM users WHERE user_id = 299"), 2, "range: 299 in 200..300");
	IS_ERROR(q(&dbr, "SELECT * FROM users WHERE user_id = 300"), "22023", "300",
		 "range: 300 outside every range");
	ok(strstr(T.message, "users") != NULL, "the message names the table");
	IS_KIND(q(&dbr, "SELECT * FROM users WHERE user_id IN (1, 150)"), SP_TARGET_FANOUT,
		"range: IN over two ranges");
	IS_SHARD(q(&dbl, "SELECT * FROM shops WHERE region = 'fr'"), 0, "list: fr on shard 0");
	IS_SHARD(q(&dbl, "SELECT * FROM shops WHERE region = 'us'"), 1, "list: us on shard 1");
	IS_ERROR(q(&dbl, "INSERT INTO shops (region) VALUES ('jp')"), "22023", "jp",
		 "list: jp in no list");
	IS_ERROR(q(&dbl, "INSERT INTO shops (region) VALUES (NULL)"), "22023", "NULL",
		 "list: NULL key insert refused");
}

static void test_hints_and_session(void)
{
	int64_t a, b;
	char sql[256];

	two_keys(2, &a, &b);
	IS_SHARD(q(&db2, "/* shard: 1 */ SELECT DISTINCT name FROM users"), 1,
		 "shard hint routes anything");
	IS_ERROR(q(&db2, "/* shard: 2 */ SELECT 1"), "22023", "shard 2", "shard hint out of range");
	snprintf(sql, sizeof(sql), "/* shard_key: %lld */ UPDATE users SET name = 'x'",
		 (long long)b);
	IS_SHARD(q(&db2, sql), 1, "shard_key hint on an unpinned UPDATE");
	snprintf(sql, sizeof(sql), "-- shard_key: %lld\nSELECT 1", (long long)b);
	IS_SHARD(q(&db2, sql), 1, "shard_key hint on a statement without tables (db key type)");
	IS_ERROR(q(&dbm, "/* shard_key: 42 */ SELECT 1"), "0A000", "different key types",
		 "shard_key hint with mixed key types refused");
	IS_ERROR(q(&db2, "/* shard: x */ SELECT 1"), "22023", "hint", "malformed hint");
	q(&db2, "/* role: replica */ SELECT now()");
	ok(T.read && !T.write, "role: replica");
	q(&db2, "/* role: primary */ SELECT now()");
	ok(T.write && !T.read, "role: primary");
	q(&db2, "/* role: replica */ DELETE FROM countries");
	ok(T.write, "role: replica never turns a write into a read");
	snprintf(sql, sizeof(sql), "/* shard: 0 */ SELECT 1; /* shard: 1 */ SELECT 2");
	IS_ERROR(q(&db2, sql), "0A000", "different shards", "per-statement hints that disagree");

	sp_router_session_init(&sess);
	q(&db2, "SET shardpool.shard = 1");
	ok(T.kind == SP_TARGET_LOCAL && T.session_changed && T.local_tag &&
	       !strcmp(T.local_tag, "SET"),
	   "SET shardpool.shard: answered locally");
	is_int(sess.shard, 1, "session shard 1");
	IS_SHARD(q(&db2, "SELECT 1"), 1, "session shard applies to a statement without tables");
	IS_SHARD(q(&db2, "SELECT * FROM users"), 1, "session shard instead of a fan-out");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = %lld", (long long)a);
	IS_SHARD(q(&db2, sql), 0, "a statement's own key wins over the session shard");
	IS_KIND(q(&db2, "BEGIN"), SP_TARGET_ANY, "BEGIN stays ANY");
	q(&db2, "RESET shardpool.shard");
	ok(T.kind == SP_TARGET_LOCAL && !strcmp(T.local_tag, "RESET") && sess.shard == -1,
	   "RESET shardpool.shard");
	IS_ERROR(q(&db2, "SET shardpool.shard = 5"), "22023", "shardpool.shard",
		 "SET shardpool.shard out of range");
	is_int(sess.shard, -1, "a refused SET leaves the session alone");
	snprintf(sql, sizeof(sql), "SET shardpool.shard_key = '%lld'", (long long)b);
	IS_KIND(q(&db2, sql), SP_TARGET_LOCAL, "SET shardpool.shard_key");
	ok(sess.has_key && !strcmp(sess.key, sql + strlen("SET shardpool.shard_key = '")) == 0,
	   "session key stored");
	IS_SHARD(q(&db2, "UPDATE users SET name = 'z'"), 1,
		 "session key routes an unpinned UPDATE");
	IS_ERROR(q(&db2, "SET shardpool.shard_key = 'abc'"), "22P02", "bigint",
		 "SET shard_key checks the key type");
	q(&db2, "SET LOCAL shardpool.shard = 0");
	ok(T.kind == SP_TARGET_LOCAL && sess.local_shard == 0, "SET LOCAL shardpool.shard");
	IS_SHARD(q(&db2, "SELECT 1"), 0, "SET LOCAL wins over the session key");
	q(&db2, "SET shardpool.role = 'replica'");
	ok(sess.role == 2, "SET shardpool.role = replica");
	q(&db2, "SELECT 1");
	ok(T.read && !T.write, "session role replica: reads");
	IS_ERROR(q(&db2, "SET shardpool.role = 'leader'"), "22023", "role", "bad role refused");
	IS_ERROR(q(&db2, "SET shardpool.nonsense = 1"), "42704", "shardpool.nonsense",
		 "unknown shardpool parameter");
	sp_router_session_init(&sess);
	q(&db2, "SET shardpool.shard = 1; SELECT 1");
	ok(T.kind == SP_TARGET_SHARD && T.shard == 1 && T.session_changed,
	   "SET shardpool.* in a query string applies to the next statements");
	{
		sp_shard_value_t tv = {.text = {"abc", 3}};
		int ts = sp_shard_of_keys(t_text, &tv, NULL, 1, 2);
		sp_router_session_init(&sess);
		IS_KIND(q(&dbm, "SET shardpool.shard_key = 'abc'"), SP_TARGET_LOCAL,
			"mixed key types: SET shard_key is accepted, checked at use");
		IS_SHARD(q(&dbm, "SELECT * FROM accounts"), ts,
			 "the session key hashed as the table's text key");
		IS_ERROR(q(&dbm, "SELECT * FROM users"), "22P02", "bigint",
			 "the same key is no bigint");
		IS_KIND(q(&dbm, "SELECT now()"), SP_TARGET_ANY,
			"a statement without tables ignores a session key without a type");
	}
	q(&db2, "RESET ALL");
	ok(T.kind == SP_TARGET_ANY && sess.shard == -1 && sess.role == 0 && !sess.has_key,
	   "RESET ALL clears the session");
	sp_router_session_init(&sess);

	/* parse errors */
	IS_ERROR(q(&db2, "SELEC 1"), "42601", "syntax error", "parse error on a sharded database");
	ok(strstr(T.hint, "/* shard: N */") != NULL, "with a hint about /* shard: N */");
	IS_SHARD(q(&db2, "/* shard: 1 */ SELEC 1"), 1, "parse error with a shard hint: forwarded");
	IS_KIND(q(&db1, "SELEC 1"), SP_TARGET_ANY,
		"parse error on an unsharded database: the server answers");
	IS_KIND(qtx(&db2, "SELEC 1", 1), SP_TARGET_ANY,
		"parse error inside a transaction: the server answers");
}

static void test_classify(void)
{
	q(&db2, "WITH x AS (SELECT * FROM countries FOR UPDATE) SELECT * FROM x");
	ok(T.write && !T.read, "SELECT FOR UPDATE in a CTE is a write");
	q(&db2, "SELECT nextval('s')");
	ok(T.write && !T.read, "nextval() is a write");
	q(&db2, "SELECT random(), now()");
	ok(!T.write && T.read, "random() and now() are reads");
	q(&db2, "BEGIN READ ONLY");
	ok(T.txnop == SP_TXNOP_BEGIN && T.read_only && !T.write, "BEGIN READ ONLY");
	q(&db2, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE");
	ok(T.txnop == SP_TXNOP_BEGIN && !T.read_only && T.write, "START TRANSACTION is read-write");
	q(&db2, "COMMIT");
	ok(T.txnop == SP_TXNOP_COMMIT && T.kind == SP_TARGET_ANY, "COMMIT");
	q(&db2, "ROLLBACK");
	ok(T.txnop == SP_TXNOP_ROLLBACK, "ROLLBACK");
	q(&db2, "SAVEPOINT a");
	ok(T.txnop == SP_TXNOP_OTHER, "SAVEPOINT");
	q(&db2, "SHOW search_path");
	ok(T.read && !T.write && T.kind == SP_TARGET_ANY, "SHOW is a read");
	q(&db2, "EXPLAIN UPDATE countries SET code = 'x'");
	ok(T.read && !T.write, "EXPLAIN without ANALYZE of a write is a read");
	q(&db2, "EXPLAIN ANALYZE DELETE FROM countries");
	ok(T.write, "EXPLAIN ANALYZE of a write is a write");
	q(&db2, "VALUES (1), (2)");
	ok(T.read && T.kind == SP_TARGET_ANY, "VALUES is a read");
	q(&db2, "LOCK TABLE countries");
	ok(T.write, "LOCK is a write");
	q(&db2, "LISTEN ch");
	ok(T.listen && T.write, "LISTEN");
	q(&db2, "BEGIN READ ONLY; SELECT 1; COMMIT");
	ok(T.read && !T.write && T.txnop == SP_TXNOP_COMMIT,
	   "BEGIN READ ONLY; SELECT; COMMIT is a read");
	int64_t a, b;
	char sql[256];
	two_keys(2, &a, &b);
	snprintf(sql, sizeof(sql),
		 "BEGIN; UPDATE users SET name = 'a' WHERE user_id = %lld; COMMIT", (long long)b);
	IS_SHARD(q(&db2, sql), 1, "BEGIN; stmt; COMMIT routes by its statement");
	ok(T.write, "and is a write");
	snprintf(
	    sql, sizeof(sql),
	    "SELECT * FROM users WHERE user_id = %lld; SELECT * FROM users WHERE user_id = %lld",
	    (long long)a, (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "different shards", "two statements on two shards refused");
	IS_ERROR(q(&db2, "SELECT 1; SELECT * FROM users"), "0A000", "statement 2",
		 "fan-out inside a query string refused");
	snprintf(sql, sizeof(sql), "SELECT * FROM users WHERE user_id = %lld", (long long)b);
	IS_ERROR(qtx(&db2, sql, 0), "0A000", "transaction is on shard 0",
		 "other shard than the transaction's");
	IS_ERROR(qtx(&db2, "SELECT * FROM users", 0), "0A000", "several shards",
		 "fan-out inside a transaction");

	/* volatile functions installed from pg_proc */
	sp_funcset_t *fs = sp_funcset_new();
	sp_funcset_add(fs, "my_counter");
	sp_funcset_t *known = sp_funcset_new();
	sp_funcset_add(known, "my_counter");
	sp_funcset_add(known, "nextval");
	sp_funcset_add(known, "lower");
	unsigned req0 = sp_router_catalog_requests();
	sp_router_set_volatile_funcs(fs, known);
	q(&db2, "SELECT my_counter()");
	ok(T.write, "an installed volatile function is a write");
	q(&db2, "SELECT txid_current()");
	ok(T.write, "txid_current() (stable in pg_proc) is still a write: a standby refuses it");
	q(&db2, "SELECT lower('A')");
	ok(!T.write && sp_router_catalog_requests() == req0,
	   "a catalogued non-volatile function is a read, no catalog request");
	q(&db2, "SELECT made_after_start(1)");
	ok(T.write, "a function no pg_proc read knew of is a write (created since)");
	ok(sp_router_catalog_requests() != req0, "... and asks the catalog reader to read again");
	sp_funcset_t *rd = sp_funcset_new();
	sp_funcset_add(rd, "my_counter");
	sp_router_set_func_overrides(rd, NULL);
	q(&db2, "SELECT my_counter()");
	ok(!T.write && T.read, "read_functions override");
	sp_router_set_func_overrides(NULL, NULL);
	sp_router_set_volatile_funcs(NULL, NULL);
	q(&db2, "SELECT nextval('s')");
	ok(T.write, "back to the built-in list");
}

static void test_cache_and_lifting(void)
{
	sp_router_stats_t s0, s1;
	char sql[128];

	sp_router_reset();
	sp_router_get_stats(&s0);
	for (int i = 0; i < 50; i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT name FROM users   WHERE user_id = %d /* trace %d */", i, i);
		q(&db4, sql);
		if (T.kind != SP_TARGET_SHARD || T.shard != bigint_shard(i, 4))
			break;
	}
	sp_router_get_stats(&s1);
	is_int(s1.misses - s0.misses, 1,
	       "50 literal values, whitespace and comments: one analysis");
	is_int(s1.hits - s0.hits, 49, "49 cache hits");
	IS_SHARD(&T, bigint_shard(49, 4), "and every one routed by its own literal");
	is_int(s1.entries, 1, "one cache entry");

	/* typed literals are not lifted; lifting that breaks parsing falls back */
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 3 AND d > DATE '2020-01-01'"),
		 bigint_shard(3, 4), "typed literal DATE '...' stays in the text");
	sp_router_get_stats(&s0);
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 3 AND s = 'a'\n'b'"),
		 bigint_shard(3, 4),
		 "'a' newline 'b' (one literal): lifting breaks it, the text as written routes");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 5 AND s = 'c'\n'b'"),
		 bigint_shard(5, 4), "and again from the do-not-lift entry");
	sp_router_get_stats(&s1);
	is_int(s1.no_lift - s0.no_lift, 2, "two analyses of the text as written");
	is_int(s1.misses - s0.misses, 1, "one miss (the second found the do-not-lift entry)");

	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = E'\\x31' "), bigint_shard(1, 4),
		 "E-string key (not lifted)");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = $$7$$"), bigint_shard(7, 4),
		 "dollar-quoted key");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = $tag$8$tag$"), bigint_shard(8, 4),
		 "tagged dollar quote");
	IS_SHARD(q(&db4, "SELECT 'a;b', $$x;y$$ FROM users WHERE user_id = 9 -- ; trailing"),
		 bigint_shard(9, 4), "semicolons inside literals and comments");
	IS_SHARD(q(&db4, "SELECT \"user_id\" FROM users WHERE \"user_id\" = 10"),
		 bigint_shard(10, 4), "quoted identifiers");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE name = 'it''s' AND user_id = 11"),
		 bigint_shard(11, 4), "doubled quotes inside a literal");
	sp_router_get_stats(&s0);
	IS_SHARD(q(&db4, "SELECT x -2, 3-1 FROM users WHERE user_id = 11"), bigint_shard(11, 4),
		 "binary minus after an operand");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = (-11)"), bigint_shard(-11, 4),
		 "(-11)");
	{
		uint64_t m = bit(bigint_shard(4, 4)) | bit(bigint_shard(-12, 4));
		const sp_target_t *t2 =
		    q(&db4, "SELECT user_id FROM users WHERE user_id IN (4, -12)");
		ok((t2->kind == SP_TARGET_SHARD && bit(t2->shard) == m) ||
		       (t2->kind == SP_TARGET_FANOUT && t2->shard_mask == m),
		   "IN (4, -12): the shards of 4 and -12");
	}
	sp_router_get_stats(&s1);
	is_int(s1.no_lift - s0.no_lift, 0, "signs are lifted without breaking the text");
	const sp_target_t *t = q(&db4, "SELECT user_id FROM users ORDER BY 1 LIMIT 3");
	ok(t->kind == SP_TARGET_FANOUT && t->merge.n_sort == 1 && t->merge.sort[0].col == 0 &&
	       t->merge.limit == 3,
	   "ORDER BY 1 stays a position (not lifted), LIMIT 3 is lifted and resolved");
	t = q(&db4, "SELECT user_id FROM users ORDER BY 1 LIMIT 7");
	is_int(t->merge.limit, 7, "the next LIMIT value from the same plan");
	IS_SHARD(q(&db4, "SELECT user_id::varchar(10) FROM users WHERE user_id = 12"),
		 bigint_shard(12, 4), "varchar(10) keeps its type modifier");
	IS_SHARD(q(&db4, "SELECT * FROM users WHERE user_id = 13 AND s = U&'d\\0061t'"),
		 bigint_shard(13, 4), "U& string left alone");

	/* eviction */
	sp_router_set_cache_limits(3, 1 << 20);
	for (int i = 0; i < 5; i++) {
		snprintf(sql, sizeof(sql), "SELECT c%d FROM users WHERE user_id = 1", i);
		q(&db4, sql);
	}
	sp_router_get_stats(&s1);
	is_int(s1.entries, 3, "LRU keeps 3 entries");
	ok(s1.evictions >= 2, "evictions counted");
	sp_router_set_cache_limits(10000, 32 << 20);
}

/* A target as one string, to compare two routings of the same text. */
static void describe(const sp_target_t *t, int n_shards, char *buf, size_t n)
{
	size_t w = (size_t)snprintf(buf, n, "%s shard=%d mask=%llx w=%d r=%d txn=%d ro=%d sc=%d l=%d "
				    "merge=%d sum=%d first=%d lim=%lld off=%lld sort=%d copy=%d [%s] [%s]",
				    kind(t), t->shard, (unsigned long long)t->shard_mask, t->write,
				    t->read, (int)t->txnop, t->read_only, t->session_changed,
				    t->listen, t->fanout_merge, t->fanout_sum, t->fanout_first,
				    (long long)t->merge.limit, (long long)t->merge.offset,
				    t->merge.n_sort, (int)t->copy.mode, t->sqlstate, t->message);
	for (int i = 0; t->per_shard_sql && i < n_shards && w < n; i++)
		w += (size_t)snprintf(buf + w, n - w, " {%d: %s}", i, shard_sql(t, i));
}

/* fmt with its two %s replaced by v[0] and v[1] */
static void fill(char *out, size_t n, const char *fmt, const char *const v[2])
{
	size_t w = 0;
	int k = 0;
	for (const char *p = fmt; *p && w + 1 < n; p++) {
		if (p[0] == '%' && p[1] == 's' && k < 2) {
			for (const char *x = v[k++]; *x && w + 1 < n; x++)
				out[w++] = *x;
			p++;
		} else {
			out[w++] = *p;
		}
	}
	out[w] = '\0';
}

/*
 * The shape memo against the slow path: every variant of a template is routed right
 * after another variant of the same shape (a memo hit where the memo takes it) and
 * again after sp_router_reset() (lexed, lifted and looked up afresh); both routings
 * must agree in every field.
 */
static void test_shape_memo(void)
{
	static const struct {
		const sp_db_conf_t *db;
		const char *fmt;
		const char *v[4][2];
	} cases[] = {
	    {&db4, "SELECT * FROM users WHERE user_id = %s%s", {{"1", ""}, {"2", ""}, {"42", ""}, {"-7", ""}}},
	    {&db4, "SELECT * FROM users WHERE user_id = - %s%s", {{"5", ""}, {"6", ""}, {"123456789012", ""}, {"0", ""}}},
	    {&db4, "SELECT * FROM users WHERE user_id = %s%s", {{"5", ""}, {"'6'", ""}, {"7", ""}, {"'8'", ""}}},
	    {&db4, "SELECT * FROM users WHERE user_id = -%s%s", {{"5", ""}, {"'6'", ""}, {"7", ""}, {"'8'", ""}}},
	    {&db4, "SELECT * FROM users WHERE user_id = %s AND name = %s", {{"3", "'a'"}, {"4", "'it''s'"}, {"5", "''"}, {"6", "'{x}'"}}},
	    {&db4, "SELECT * FROM users WHERE user_id IN (%s, %s)", {{"1", "2"}, {"3", "4"}, {"5", "5"}, {"-1", "99"}}},
	    {&db4, "SELECT count(*), sum(v) FROM users WHERE user_id IN (%s, %s)", {{"1", "2"}, {"3", "4"}, {"7", "8"}, {"10", "11"}}},
	    {&db4, "SELECT avg(v) FROM orders WHERE user_id IN (%s, %s)", {{"1", "2"}, {"3", "4"}, {"7", "8"}, {"10", "11"}}},
	    {&db4, "SELECT user_id FROM users ORDER BY %s LIMIT %s", {{"1", "3"}, {"1", "7"}, {"2", "7"}, {"1", "0"}}},
	    {&db4, "SELECT user_id FROM users ORDER BY 1 LIMIT %s OFFSET %s", {{"3", "1"}, {"7", "2"}, {"1", "0"}, {"100", "5"}}},
	    {&db4, "INSERT INTO users (user_id, name) VALUES (%s, 'a'), (%s, 'b')", {{"1", "2"}, {"3", "4"}, {"5", "6"}, {"8", "8"}}},
	    {&db4, "INSERT INTO users (user_id, name) VALUES (%s, 'a'), (%s, 'b') RETURNING user_id", {{"1", "2"}, {"3", "4"}, {"5", "6"}, {"8", "8"}}},
	    {&db4, "UPDATE users SET name = %s WHERE user_id = %s", {{"'x'", "1"}, {"'y'", "2"}, {"'it''s'", "3"}, {"NULL", "4"}}},
	    {&db4, "UPDATE users SET user_id = %s WHERE user_id = %s", {{"1", "1"}, {"1", "2"}, {"3", "3"}, {"4", "9"}}},
	    {&db4, "DELETE FROM users WHERE user_id = %s OR user_id = %s", {{"1", "2"}, {"3", "3"}, {"5", "6"}, {"7", "8"}}},
	    {&db4, "SELECT * FROM items WHERE tenant_id = %s AND item_id = %s", {{"1", "2"}, {"3", "4"}, {"1", "5"}, {"-2", "6"}}},
	    {&db4, "SELECT * FROM users WHERE user_id = $1 AND v > %s%s", {{"1", ""}, {"2.5", ""}, {"1e3", ""}, {".5", ""}}},
	    {&db4, "SELECT %s::numeric(10,%s) FROM users WHERE user_id = 1", {{"1", "2"}, {"3", "4"}, {"1.5", "2"}, {"7", "3"}}},
	    {&db4, "SELECT * FROM users WHERE user_id = %s; SELECT * FROM users WHERE user_id = %s", {{"1", "1"}, {"2", "2"}, {"1", "2"}, {"3", "3"}}},
	    {&db4, "SELECT * FROM users WHERE user_id = %s -- %s", {{"1", "x"}, {"2", "y"}, {"3", "z"}, {"4", "w"}}},
	    {&db4, "SELECT * FROM countries WHERE code = %s%s", {{"'fr'", ""}, {"'de'", ""}, {"'x'", ""}, {"'y'", ""}}},
	    {&db4, "SELECT 'a' %s FROM users WHERE user_id = %s", {{"'b'", "1"}, {"'c'", "2"}, {"'d'", "3"}, {"'e'", "4"}}},
	    {&dbm, "SELECT * FROM accounts WHERE acct = %s%s", {{"'abc'", ""}, {"'x''y'", ""}, {"'{1,2}'", ""}, {"''", ""}}},
	    {&dbl, "SELECT * FROM shops WHERE region = %s%s", {{"'eu'", ""}, {"'us'", ""}, {"'zz'", ""}, {"'fr'", ""}}},
	    {&dbr, "SELECT * FROM users WHERE user_id = %s%s", {{"50", ""}, {"150", ""}, {"250", ""}, {"350", ""}}},
	    {&dbr, "INSERT INTO users (user_id) VALUES (%s), (%s)", {{"50", "150"}, {"250", "251"}, {"1", "2"}, {"350", "1"}}},
	};
	char sql[256], a[4096], b[4096];
	sp_router_stats_t s0, s1;
	int bad = 0, n = 0;

	sp_router_get_stats(&s0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const sp_db_conf_t *db = cases[c].db;
		for (int txn = -1; txn <= 0; txn++)
			for (int i = 0; i < 4; i++) {
				const int j = (i + 1) % 4;
				sp_router_session_init(&sess);
				fill(sql, sizeof(sql), cases[c].fmt, cases[c].v[j]);
				qtx(db, sql, txn); /* another variant first: the memo learns the shape */
				fill(sql, sizeof(sql), cases[c].fmt, cases[c].v[i]);
				sp_router_session_init(&sess);
				describe(qtx(db, sql, txn), db->n_shards, a, sizeof(a));
				sp_router_reset();
				sp_router_session_init(&sess);
				describe(qtx(db, sql, txn), db->n_shards, b, sizeof(b));
				n++;
				if (strcmp(a, b) != 0 && bad++ < 5)
					printf("# %s (txn %d)\n#   memo:  %s\n#   fresh: %s\n", sql, txn, a, b);
			}
	}
	sp_router_get_stats(&s1);
	is_int(bad, 0, "shape memo: %d routings agree with the slow path", n);
	ok(s1.memo_hits - s0.memo_hits >= 100, "and most of them came from the memo (%llu hits)",
	   (unsigned long long)(s1.memo_hits - s0.memo_hits));
	sp_router_session_init(&sess);
}

static sp_key_type_t t_small[] = {SP_KEY_SMALLINT};
static sp_key_type_t t_uuid[] = {SP_KEY_UUID};
static sp_key_type_t t_varchar[] = {SP_KEY_VARCHAR};
static sp_table_conf_t small_tables[] = {
    {.name = "counters", .key_cols = k_user, .key_types = t_small, .n_keys = 1},
    {.name = "tokens", .key_cols = k_acct, .key_types = t_uuid, .n_keys = 1},
    {.name = "names", .key_cols = k_acct, .key_types = t_varchar, .n_keys = 1},
};
static sp_db_conf_t dbs = {.name = "small",
			   .n_shards = 3,
			   .sharding = SP_SHARDING_HASH,
			   .tables = small_tables,
			   .n_tables = 3};

/*
 * The compiled route of a shape memo entry (a client's repeated simple query routed by
 * its key alone) against the slow path: one session routes every variant in turn, as
 * a client repeating a statement would (every other one after another statement, so
 * that it is found by its shape); each answer must equal a fresh routing of the
 * same text after sp_router_reset(), in every field, inside and outside a transaction
 * and with a session role set.
 */
static void test_compiled_route(void)
{
	static const struct {
		const sp_db_conf_t *db;
		const char *fmt;
	} cases[] = {
	    {&db4, "SELECT * FROM users WHERE user_id = %s"},
	    {&db4, "select abalance from users where user_id = %s;"},
	    {&db4, "SELECT * FROM users WHERE user_id = %s FOR UPDATE"},
	    {&db4, "UPDATE users SET v = v + 1 WHERE user_id = %s"},
	    {&db4, "DELETE FROM users WHERE user_id = %s"},
	    {&db4, "UPDATE users SET user_id = 5 WHERE user_id = %s"},
	    {&db4, "SELECT * FROM users WHERE user_id = -%s"},
	    {&db4, "SELECT * FROM users WHERE user_id = %s::int8"},
	    {&db4, "SELECT * FROM users u JOIN orders o USING (user_id) WHERE u.user_id = %s"},
	    {&db4, "SELECT nextval('s') FROM users WHERE user_id = %s"},
	    {&db2, "SELECT * FROM users WHERE user_id = %s AND v = 2"},
	    {&db1, "SELECT * FROM users WHERE user_id = %s"},
	    {&db1, "SELECT * FROM users WHERE user_id = %s FOR SHARE"},
	    {&db1, "SELECT nextval('s'), %s"},
	    {&db1, "INSERT INTO users (user_id) VALUES (%s)"},
	    {&db1, "UPDATE users SET v = %s WHERE user_id = 1"},
	    {&dbr, "SELECT * FROM users WHERE user_id = %s"},
	    {&dbs, "SELECT * FROM counters WHERE user_id = %s"},
	    {&dbm, "SELECT * FROM accounts WHERE acct = %s"},
	    {&dbm, "UPDATE accounts SET v = 1 WHERE acct = %s"},
	    {&dbl, "SELECT * FROM shops WHERE region = %s"},
	    {&dbs, "SELECT * FROM tokens WHERE acct = %s"},
	    {&dbs, "DELETE FROM names WHERE acct = %s"},
	};
	static const char *vals[] = {"1", "2", "42", "007", "0", "150", "250", "299", "300",
				     "1.5", "2.0", "1e3", ".5", "'5'", "32767", "32768",
				     "2147483648", "123456789012345678", "9223372036854775807",
				     "99999999999999999999", "17", "18", "19", "20",
				     "'abc'", "'it''s'", "''", "'eu'", "'us'", "'fr'", "'zz'",
				     "'caf\xc3\xa9'", "'{1,2}'",
				     "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
				     "'A0EEBC999C0B4EF8BB6D6BB9BD380A11'",
				     "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}'", "'not-a-uuid'"};
	static const char *encs[] = {"SET client_encoding = 'LATIN1'", "RESET client_encoding"};
	static const char *sets[] = {NULL, "SET shardpool.role = 'replica'", "RESET shardpool.role",
				     "SET shardpool.role = 'primary'", "RESET shardpool.role"};
	const int nv = (int)(sizeof(vals) / sizeof(vals[0]));
	char sql[256], a[4096], b[4096];
	sp_router_stats_t s0, s1;
	int bad = 0, n = 0;

	sp_router_get_stats(&s0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const sp_db_conf_t *db = cases[c].db;
		for (int txn = -1; txn < db->n_shards; txn++) {
			sp_router_session_t mine, fresh;
			sp_router_session_init(&mine);
			for (int round = 0; round < 7; round++) {
				const char *set = round < 5 ? sets[round] : encs[round - 5];
				if (set) {
					sess = mine;
					q(db, set);
					mine = sess;
				}
				for (int i = 0; i < nv; i++) {
					const char *v[2] = {vals[(i * 7 + round) % nv], ""};
					fill(sql, sizeof(sql), cases[c].fmt, v);
					sess = mine;
					if (i % 2) /* another shape in between: found by its shape, not as the last one */
						qtx(db, i % 4 == 1 ? "SELECT 1 + 2" : "SELECT 3 + 4", txn);
					describe(qtx(db, sql, txn), db->n_shards, a, sizeof(a));
					mine = sess;
					fresh = mine;
					fresh.memo_slot = 0;
					sp_router_reset();
					sess = fresh;
					describe(qtx(db, sql, txn), db->n_shards, b, sizeof(b));
					/* the reset dropped the entry: teach the memo again */
					sess = mine;
					qtx(db, sql, txn);
					qtx(db, sql, txn);
					mine = sess;
					n++;
					if (strcmp(a, b) != 0 && bad++ < 5)
						printf("# %s (txn %d, round %d)\n#   compiled: %s\n#   fresh:    %s\n",
						       sql, txn, round, a, b);
				}
			}
		}
	}
	sp_router_get_stats(&s1);
	is_int(bad, 0, "compiled routes: %d routings agree with the slow path", n);
	ok(s1.fast_hits - s0.fast_hits >= 1000, "and many came from a compiled route (%llu)",
	   (unsigned long long)(s1.fast_hits - s0.fast_hits));
	sp_router_session_init(&sess);
}

/* INSERT without a column list: the column order comes from sp_router_set_columns. */
static void test_insert_columns(void)
{
	char sql[512], buf[128];
	int64_t a, b;
	const sp_target_t *t;
	unsigned req;
	const char *users_cols[] = {"name", "user_id", "score"}; /* the key is not first */
	const char *public_cols[] = {"user_id", "name", "score"};
	const char *items_cols[] = {"item_id", "note", "tenant_id"};

	two_keys(2, &a, &b);
	req = sp_router_columns_requests();
	snprintf(sql, sizeof(sql), "INSERT INTO users VALUES ('x', %lld, 1)", (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "column order",
		 "order unknown: INSERT without a list refused");
	ok(strstr(T.hint, "Name the columns") && strstr(T.hint, "user_id") &&
	       strstr(T.hint, "RELOAD"),
	   "the hint says to name the columns or RELOAD");
	if (!ok(sp_router_columns_requests() != req,
		"the refusal asks for the catalog to be read again"))
		printf("#   hint: %s\n", T.hint);
	sp_plan_t *p = sp_router_prepare(&db2, "INSERT INTO users VALUES ($1, $2, $3)", 37);
	snprintf(buf, sizeof(buf), "%lld", (long long)b);
	const uint8_t *v3[3] = {(const uint8_t *)"n", (const uint8_t *)buf, (const uint8_t *)"1"};
	int32_t l3[3] = {1, (int32_t)strlen(buf), 1};
	int16_t f3[3] = {0, 0, 0};
	sp_router_bind(&db2, &sess, p, 3, v3, l3, f3, NULL, 0, -1, &T);
	IS_ERROR(&T, "0A000", "column order", "prepared before the order is known: refused");

	sp_router_set_columns("app2", NULL, "users", users_cols, 3);
	ok(sp_router_get_columns("app2", NULL, "users", buf, sizeof(buf)) &&
	       !strcmp(buf, "name,user_id,score"),
	   "the order is stored");
	IS_SHARD(q(&db2, sql), 1, "the same text, cached as a refusal, now routes by column 2");
	snprintf(buf, sizeof(buf), "%lld", (long long)b);
	sp_router_bind(&db2, &sess, p, 3, v3, l3, f3, NULL, 0, -1, &T);
	IS_SHARD(&T, 1, "the statement prepared earlier routes by its $2 now");
	sp_plan_unref(p);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO users VALUES ('x', %lld, 1) ON CONFLICT DO NOTHING RETURNING *",
		 (long long)a);
	IS_SHARD(q(&db2, sql), 0, "ON CONFLICT DO NOTHING RETURNING *");
	snprintf(sql, sizeof(sql),
		 "INSERT INTO users VALUES ('x', %lld, 1), ('y', %lld, 2) RETURNING user_id",
		 (long long)a, (long long)b);
	t = q(&db2, sql);
	ok(t->kind == SP_TARGET_FANOUT && t->per_shard_sql && t->fanout_sum && t->shard_mask == 3,
	   "multi-row INSERT without a list on two shards: split");
	snprintf(buf, sizeof(buf), "INSERT INTO users VALUES ('y', %lld, 2) RETURNING user_id",
		 (long long)b);
	is_str(shard_sql(t, 1), buf, "shard 1 gets its row, RETURNING kept");
	IS_ERROR(q(&db2, "INSERT INTO users VALUES ('x')"), "0A000", "no value",
		 "fewer values than the key's position: refused");
	snprintf(sql, sizeof(sql), "INSERT INTO users SELECT 'x', %lld, 1", (long long)b);
	IS_SHARD(q(&db2, sql), 1, "INSERT ... SELECT of constants without a list");

	/* a qualified name uses that schema's order, not the unqualified one */
	snprintf(sql, sizeof(sql), "INSERT INTO public.users VALUES (%lld, 'x', 1)", (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "column order", "public.users: its own order, unknown yet");
	sp_router_set_columns("app2", "public", "users", public_cols, 3);
	IS_SHARD(q(&db2, sql), 1, "public.users routes by its first column");

	/* composite key, other key columns in between */
	sp_router_set_columns("app4", NULL, "items", items_cols, 3);
	sp_shard_value_t iv[2] = {{.i = 7}, {.i = 123}};
	IS_SHARD(q(&db4, "INSERT INTO items VALUES (123, 'n', 7)"),
		 sp_shard_of_keys(t_item, iv, NULL, 2, 4),
		 "composite key found at columns 3 and 1");
	ok(!sp_router_get_columns("app2", NULL, "items", buf, sizeof(buf)),
	   "orders are per database");

	/* DDL on the table forgets its order at once and asks for a new read */
	req = sp_router_columns_requests();
	q(&db2, "ALTER TABLE users DROP COLUMN name");
	ok(!sp_router_get_columns("app2", NULL, "users", buf, sizeof(buf)) &&
	       !sp_router_get_columns("app2", "public", "users", buf, sizeof(buf)),
	   "ALTER TABLE forgets the order of every schema's users");
	ok(sp_router_columns_requests() != req, "ALTER TABLE asks for a new read");
	snprintf(sql, sizeof(sql), "INSERT INTO users VALUES ('x', %lld, 1)", (long long)b);
	IS_ERROR(q(&db2, sql), "0A000", "column order", "after the DDL: refused until read again");
	const char *after[] = {"user_id", "score"};
	sp_router_set_columns("app2", NULL, "users", after, 2);
	snprintf(sql, sizeof(sql), "INSERT INTO users VALUES (%lld, 1)", (long long)a);
	IS_SHARD(q(&db2, sql), 0, "the new order is used");
	sp_router_set_columns("app2", NULL, "users", NULL, 0);
	ok(!sp_router_get_columns("app2", NULL, "users", buf, sizeof(buf)), "NULL forgets");
	IS_ERROR(q(&db2, sql), "0A000", "column order", "forgotten: refused again");
}

int main(void)
{
	sp_router_session_init(&sess);
	test_keys();
	test_numeric_keys();
	test_typed_params();
	test_oversize();
	test_bind();
	test_fanout();
	test_writes();
	test_range_list();
	test_hints_and_session();
	test_classify();
	test_cache_and_lifting();
	test_insert_columns();
	test_shape_memo();
	test_compiled_route();
	sp_router_shutdown();
	return done_testing();
}
