/*
 * test_analyze.c - unit tests for the statement analyzer (analyze.h).
 *
 * A fixed catalog stands in for the configuration: users(id), orders(user_id),
 * items(user_id), events(tenant, id) sharded, countries replicated,
 * billing.invoices(user_id) sharded only under its schema. Every rule of the
 * analyzer has statements here, including the tricky ones the router relies
 * on; keys are compared through a compact rendering "{(1)($2)}".
 */
#include "analyze.h"
#include "tap.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *k_id[] = {"id"};
static char *k_user[] = {"user_id"};
static char *k_event[] = {"tenant", "id"};
static sp_table_conf_t t_users = {.name = "users", .key_cols = k_id, .n_keys = 1};
static sp_table_conf_t t_orders = {.name = "orders", .key_cols = k_user, .n_keys = 1};
static sp_table_conf_t t_items = {.name = "items", .key_cols = k_user, .n_keys = 1};
static sp_table_conf_t t_events = {.name = "events", .key_cols = k_event, .n_keys = 2};
static sp_table_conf_t t_countries = {.name = "countries", .replicated = true};
static sp_table_conf_t t_invoices = {
    .schema = "billing", .name = "invoices", .key_cols = k_user, .n_keys = 1};

static int lookups;

static char *k_wide[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
static sp_table_conf_t t_wide = {.name = "wide", .key_cols = k_wide, .n_keys = 9};

static const sp_table_conf_t *lookup(void *arg, const char *schema, const char *name)
{
	(void)arg;
	__atomic_add_fetch(&lookups, 1, __ATOMIC_RELAXED);
	if (!strcmp(name, "wide"))
		return &t_wide;
	if (schema && !strcmp(schema, "billing"))
		return !strcmp(name, "invoices") ? &t_invoices : NULL;
	if (!strcmp(name, "users"))
		return &t_users;
	if (!strcmp(name, "orders"))
		return &t_orders;
	if (!strcmp(name, "items"))
		return &t_items;
	if (!strcmp(name, "events"))
		return &t_events;
	if (!strcmp(name, "countries"))
		return &t_countries;
	return NULL;
}

static sp_analyze_opts_t opts = {.table_lookup = lookup};

static sp_analysis_t *cur;

/* Analyse sql with the test catalog; the previous result is freed. */
static const sp_stmt_t *A(const char *sql)
{
	sp_analysis_free(cur);
	cur = sp_analyze(sql, &opts);
	return cur && cur->n_stmts ? &cur->stmts[0] : NULL;
}

static const sp_stmt_t *AO(const char *sql, const sp_analyze_opts_t *o)
{
	sp_analysis_free(cur);
	cur = sp_analyze(sql, o);
	return cur && cur->n_stmts ? &cur->stmts[0] : NULL;
}

static void value_str(const sp_value_t *v, char *out, size_t len)
{
	switch (v->kind) {
	case SP_VAL_NONE:
		snprintf(out, len, "-");
		break;
	case SP_VAL_CONST:
		snprintf(out, len, "%s", v->text);
		break;
	case SP_VAL_PARAM:
		snprintf(out, len, "$%d%s", v->param, v->array ? "[]" : "");
		break;
	case SP_VAL_NULL:
		snprintf(out, len, "NULL");
		break;
	case SP_VAL_DEFAULT:
		snprintf(out, len, "DEFAULT");
		break;
	case SP_VAL_EXPR:
		snprintf(out, len, "EXPR");
		break;
	}
}

/* "{(1)($2)}", "{('a',1)}" rendered without quotes: "{(a,1)}"; "ALL"; "-" not sharded. */
static const char *keys(const sp_stmt_t *st, int t)
{
	static char buf[4096];
	size_t n = 0;

	if (!st || t < 0 || t >= st->n_tables)
		return "(no such table)";
	const sp_keyset_t *k = &st->tables[t].keys;
	if (k->state == SP_PIN_NOT_SHARDED)
		return "-";
	if (k->state == SP_PIN_ALL)
		return "ALL";
	n += snprintf(buf + n, sizeof(buf) - n, "{");
	for (int i = 0; i < k->n_tuples && n < sizeof(buf) - 64; i++) {
		n += snprintf(buf + n, sizeof(buf) - n, "(");
		for (int j = 0; j < k->n_keys; j++) {
			char v[128];
			value_str(&k->values[i * k->n_keys + j], v, sizeof(v));
			n += snprintf(buf + n, sizeof(buf) - n, "%s%s", j ? "," : "", v);
		}
		n += snprintf(buf + n, sizeof(buf) - n, ")");
	}
	snprintf(buf + n, sizeof(buf) - n, "}");
	return buf;
}

static const char *val(const sp_value_t *v)
{
	static char buf[256];
	value_str(v, buf, sizeof(buf));
	return buf;
}

static const char *why(const sp_stmt_t *st, int t)
{
	return st && t < st->n_tables && st->tables[t].keys.why ? st->tables[t].keys.why : "";
}

static void test_kinds(void)
{
	const sp_stmt_t *s;

	s = A("SELECT 1");
	is_int(s->kind, SP_STMT_SELECT, "SELECT kind");
	is_str(s->node, "SelectStmt", "node name");
	ok(!s->is_write && !s->write_reason, "plain SELECT is a read");
	is_int(A("VALUES (1), (2)")->kind, SP_STMT_SELECT, "VALUES is a SELECT");
	ok(!A("VALUES (1)")->is_write, "VALUES is a read");
	is_int(A("TABLE users")->kind, SP_STMT_SELECT, "TABLE t is a SELECT");
	is_int(A("INSERT INTO t VALUES (1)")->kind, SP_STMT_INSERT, "INSERT kind");
	is_int(A("UPDATE t SET a = 1")->kind, SP_STMT_UPDATE, "UPDATE kind");
	is_int(A("DELETE FROM t")->kind, SP_STMT_DELETE, "DELETE kind");
	s = A("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE");
	is_int(s->kind, SP_STMT_MERGE, "MERGE kind");
	ok(s->is_write, "MERGE is a write");
	is_int(A("SHOW search_path")->kind, SP_STMT_SHOW, "SHOW kind");
	is_str(cur->stmts[0].name, "search_path", "SHOW name");
	ok(!cur->stmts[0].is_write, "SHOW is a read");
	is_str(A("SHOW ALL")->name, "all", "SHOW ALL");

	s = A("LISTEN chan");
	is_int(s->kind, SP_STMT_LISTEN, "LISTEN kind");
	is_str(s->name, "chan", "LISTEN channel");
	ok(s->is_write, "LISTEN needs the primary");
	s = A("UNLISTEN *");
	is_int(s->kind, SP_STMT_UNLISTEN, "UNLISTEN kind");
	ok(s->name == NULL, "UNLISTEN * has no channel");
	is_str(A("UNLISTEN chan")->name, "chan", "UNLISTEN channel");
	s = A("NOTIFY chan, 'hello'");
	is_int(s->kind, SP_STMT_NOTIFY, "NOTIFY kind");
	is_str(s->payload, "hello", "NOTIFY payload");
	ok(A("NOTIFY chan")->payload == NULL, "NOTIFY without payload");

	s = A("PREPARE p (int) AS SELECT * FROM users WHERE id = $1");
	is_int(s->kind, SP_STMT_PREPARE, "PREPARE kind");
	is_str(s->name, "p", "PREPARE name");
	is_int(s->inner_kind, SP_STMT_SELECT, "PREPARE inner kind");
	is_str(keys(s, 0), "{($1)}", "PREPARE analyses the statement: key $1");
	is_int(s->route, SP_ROUTE_PINNED, "PREPARE route pinned by $1");
	ok(s->shape.valid, "PREPARE of a SELECT has a shape");
	ok(!s->is_write, "PREPARE of a read is a read");
	ok(A("PREPARE w AS INSERT INTO users (id) VALUES ($1)")->is_write,
	   "PREPARE of an INSERT is a write");
	is_int(cur->stmts[0].insert.n_rows, 1, "PREPARE of an INSERT has its rows");

	s = A("EXECUTE p(5, 'x')");
	is_int(s->kind, SP_STMT_EXECUTE, "EXECUTE kind");
	is_str(s->name, "p", "EXECUTE name");
	is_int(s->n_params, 2, "EXECUTE argument count");
	is_str(val(&s->params[0]), "5", "EXECUTE first argument");
	is_str(val(&s->params[1]), "x", "EXECUTE second argument");
	ok(s->is_write, "EXECUTE is a write until the router looks up the PREPARE");

	s = A("DEALLOCATE p");
	is_int(s->kind, SP_STMT_DEALLOCATE, "DEALLOCATE kind");
	is_str(s->name, "p", "DEALLOCATE name");
	ok(A("DEALLOCATE ALL")->name == NULL, "DEALLOCATE ALL has no name");
	ok(A("DEALLOCATE PREPARE ALL")->name == NULL, "DEALLOCATE PREPARE ALL");

	is_int(A("DISCARD ALL")->kind, SP_STMT_DISCARD, "DISCARD kind");
	is_int(cur->stmts[0].discard, SP_DISCARD_ALL, "DISCARD ALL");
	is_int(A("DISCARD PLANS")->discard, SP_DISCARD_PLANS, "DISCARD PLANS");
	is_int(A("DISCARD SEQUENCES")->discard, SP_DISCARD_SEQUENCES, "DISCARD SEQUENCES");
	is_int(A("DISCARD TEMP")->discard, SP_DISCARD_TEMP, "DISCARD TEMP");

	s = A("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM users WHERE id = 3");
	is_int(s->kind, SP_STMT_DECLARE, "DECLARE kind");
	is_str(s->name, "c", "DECLARE cursor name");
	ok(s->cursor_hold, "DECLARE WITH HOLD");
	is_str(keys(s, 0), "{(3)}", "DECLARE analyses its query");
	ok(!A("DECLARE c CURSOR FOR SELECT 1")->cursor_hold, "DECLARE without HOLD");
	ok(A("DECLARE c CURSOR FOR SELECT * FROM users FOR UPDATE")->is_write,
	   "DECLARE ... FOR UPDATE is a write");
	s = A("FETCH 10 FROM c");
	is_int(s->kind, SP_STMT_FETCH, "FETCH kind");
	is_str(s->name, "c", "FETCH cursor");
	ok(!s->fetch_move, "FETCH is not MOVE");
	ok(A("MOVE c")->fetch_move, "MOVE");
	is_int(A("CLOSE c")->kind, SP_STMT_CLOSE, "CLOSE kind");
	ok(A("CLOSE ALL")->name == NULL, "CLOSE ALL has no name");

	s = A("CREATE TABLE x (a int)");
	is_int(s->kind, SP_STMT_DDL, "CREATE TABLE is DDL");
	is_str(s->node, "CreateStmt", "CREATE TABLE node");
	ok(s->is_write, "DDL is a write");
	is_str(s->write_reason, "DDL", "DDL write reason");
	is_str(s->tables[0].name, "x", "DDL table named");
	is_int(A("TRUNCATE users")->kind, SP_STMT_DDL, "TRUNCATE is DDL");
	is_str(cur->stmts[0].node, "TruncateStmt", "TRUNCATE node");
	is_str(why(&cur->stmts[0], 0), "DDL applies to every shard", "DDL on a sharded table: why");
	s = A("DROP TABLE a, s.b");
	is_int(s->n_tables, 2, "DROP TABLE names two tables");
	is_str(s->tables[1].schema, "s", "DROP TABLE schema");
	is_str(s->tables[1].name, "b", "DROP TABLE name");
	ok(A("ALTER TABLE users ADD c int")->tables[0].ctx & SP_TABLE_WRITE, "ALTER TABLE writes");
	ok(A("GRANT SELECT ON users TO bob")->kind == SP_STMT_DDL, "GRANT is DDL");
	s = A("CREATE TABLE z AS SELECT * FROM users");
	is_int(s->kind, SP_STMT_DDL, "CREATE TABLE AS is DDL");
	ok(s->tables[0].ctx == SP_TABLE_WRITE && s->tables[1].ctx == SP_TABLE_READ,
	   "CREATE TABLE AS writes the new table, reads the source");

	s = A("LOCK TABLE users, other IN SHARE MODE");
	is_int(s->kind, SP_STMT_LOCK, "LOCK kind");
	ok(s->is_write, "LOCK is a write");
	is_int(s->n_tables, 2, "LOCK tables");
	ok(s->tables[0].ctx & SP_TABLE_LOCK, "LOCK marks tables locked");

	s = A("VACUUM ANALYZE users");
	is_int(s->kind, SP_STMT_MAINTENANCE, "VACUUM kind");
	ok(s->is_write, "VACUUM needs the primary");
	is_str(s->tables[0].name, "users", "VACUUM table");
	is_int(A("ANALYZE users")->kind, SP_STMT_MAINTENANCE, "ANALYZE kind");
	is_int(A("CHECKPOINT")->kind, SP_STMT_MAINTENANCE, "CHECKPOINT kind");
	is_int(A("REINDEX TABLE users")->kind, SP_STMT_MAINTENANCE, "REINDEX kind");
	s = A("CALL proc(1)");
	is_int(s->kind, SP_STMT_CALL, "CALL kind");
	is_str(s->name, "proc", "CALL procedure name");
	ok(s->is_write, "CALL is a write");
	ok(A("DO $$ BEGIN END $$")->kind == SP_STMT_DO && cur->stmts[0].is_write, "DO is a write");
	is_int(A("LOAD 'auto_explain'")->kind, SP_STMT_OTHER, "LOAD is other");
	ok(!cur->stmts[0].is_write, "LOAD is not a write");
	is_int(A("SET CONSTRAINTS ALL DEFERRED")->kind, SP_STMT_OTHER, "SET CONSTRAINTS is other");
	is_str(sp_stmt_kind_str(SP_STMT_MAINTENANCE), "MAINTENANCE", "kind names");
	is_str(sp_stmt_kind_str(SP_STMT_OTHER), "OTHER", "last kind name");
}

static void test_explain(void)
{
	const sp_stmt_t *s;

	s = A("EXPLAIN SELECT * FROM users WHERE id = 1");
	is_int(s->kind, SP_STMT_EXPLAIN, "EXPLAIN kind");
	is_int(s->inner_kind, SP_STMT_SELECT, "EXPLAIN of SELECT");
	ok(!s->explain_analyze, "EXPLAIN without ANALYZE");
	ok(!s->is_write, "EXPLAIN of a read is a read");
	ok(!A("EXPLAIN DELETE FROM users")->is_write,
	   "EXPLAIN of a write without ANALYZE is a read");
	ok(!A("EXPLAIN SELECT nextval('s')")->is_write, "EXPLAIN does not call nextval");
	s = A("EXPLAIN ANALYZE DELETE FROM users WHERE id = 1");
	ok(s->explain_analyze, "EXPLAIN ANALYZE flag");
	ok(s->is_write, "EXPLAIN ANALYZE of a write is a write");
	is_int(s->inner_kind, SP_STMT_DELETE, "EXPLAIN ANALYZE of DELETE");
	is_str(keys(s, 0), "{(1)}", "EXPLAIN keys from the inner statement");
	ok(A("EXPLAIN (ANALYZE, BUFFERS) UPDATE users SET a = 1")->is_write,
	   "EXPLAIN (ANALYZE) write");
	ok(!A("EXPLAIN (ANALYZE false) UPDATE users SET a = 1")->is_write,
	   "EXPLAIN (ANALYZE false) does not run it");
	ok(!A("EXPLAIN ANALYZE SELECT 1")->is_write, "EXPLAIN ANALYZE of a read is a read");
}

static void test_txn(void)
{
	const sp_stmt_t *s;

	s = A("BEGIN");
	is_int(s->kind, SP_STMT_TXN, "BEGIN is txn control");
	is_int(s->txn.op, SP_TXN_BEGIN, "BEGIN op");
	is_int(s->txn.modes.read_only, -1, "BEGIN: read_only not given");
	ok(s->txn.modes.isolation == NULL, "BEGIN: no isolation");
	ok(!s->is_write, "BEGIN is not a write");
	s = A("BEGIN READ ONLY");
	is_int(s->txn.modes.read_only, 1, "BEGIN READ ONLY");
	s = A("START TRANSACTION READ WRITE, ISOLATION LEVEL SERIALIZABLE, DEFERRABLE");
	is_int(s->txn.op, SP_TXN_START, "START TRANSACTION op");
	is_int(s->txn.modes.read_only, 0, "READ WRITE");
	is_str(s->txn.modes.isolation, "serializable", "isolation level");
	is_int(s->txn.modes.deferrable, 1, "DEFERRABLE");
	is_str(A("BEGIN ISOLATION LEVEL REPEATABLE READ")->txn.modes.isolation, "repeatable read",
	       "repeatable read");
	is_int(A("BEGIN NOT DEFERRABLE")->txn.modes.deferrable, 0, "NOT DEFERRABLE");
	is_int(A("COMMIT")->txn.op, SP_TXN_COMMIT, "COMMIT");
	is_int(A("END")->txn.op, SP_TXN_COMMIT, "END is COMMIT");
	ok(A("COMMIT AND CHAIN")->txn.chain, "COMMIT AND CHAIN");
	is_int(A("ROLLBACK")->txn.op, SP_TXN_ROLLBACK, "ROLLBACK");
	is_int(A("ABORT")->txn.op, SP_TXN_ROLLBACK, "ABORT is ROLLBACK");
	s = A("SAVEPOINT sp1");
	is_int(s->txn.op, SP_TXN_SAVEPOINT, "SAVEPOINT");
	is_str(s->name, "sp1", "SAVEPOINT name");
	s = A("RELEASE SAVEPOINT sp1");
	is_int(s->txn.op, SP_TXN_RELEASE, "RELEASE");
	is_str(s->name, "sp1", "RELEASE name");
	is_int(A("RELEASE sp1")->txn.op, SP_TXN_RELEASE, "RELEASE without SAVEPOINT");
	s = A("ROLLBACK TO SAVEPOINT sp1");
	is_int(s->txn.op, SP_TXN_ROLLBACK_TO, "ROLLBACK TO");
	is_str(s->name, "sp1", "ROLLBACK TO name");
	s = A("PREPARE TRANSACTION 'gid-1'");
	is_int(s->txn.op, SP_TXN_PREPARE, "PREPARE TRANSACTION");
	is_str(s->name, "gid-1", "PREPARE TRANSACTION gid");
	ok(s->is_write, "two-phase commit is a write");
	is_int(A("COMMIT PREPARED 'gid-1'")->txn.op, SP_TXN_COMMIT_PREPARED, "COMMIT PREPARED");
	is_int(A("ROLLBACK PREPARED 'gid-1'")->txn.op, SP_TXN_ROLLBACK_PREPARED,
	       "ROLLBACK PREPARED");
}

static void test_set(void)
{
	const sp_stmt_t *s;

	s = A("SET search_path TO a, b");
	is_int(s->kind, SP_STMT_SET, "SET kind");
	is_int(s->set.op, SP_SET_VALUE, "SET value");
	is_str(s->set.name, "search_path", "SET name");
	is_str(s->set.value, "'a', 'b'", "SET search_path TO a, b: list re-quoted");
	ok(!s->set.local, "SET is session-level");
	ok(!s->is_write, "SET is not a write");
	s = A("SET LOCAL search_path = public");
	ok(s->set.local, "SET LOCAL");
	is_str(s->set.value, "'public'", "SET LOCAL value");
	ok(!A("SET SESSION search_path = public")->set.local, "SET SESSION is not local");
	s = A("SET TIME ZONE 'UTC'");
	is_str(s->set.name, "timezone", "SET TIME ZONE name");
	is_str(s->set.value, "'UTC'", "SET TIME ZONE value");
	is_str(A("SET statement_timeout = 0")->set.value, "0",
	       "zero (printed as {} by libpg_query)");
	is_str(A("SET extra_float_digits = -3")->set.value, "-3", "negative integer value");
	is_str(A("SET x.y = 1.5")->set.value, "1.5", "numeric value");
	is_str(A("SET application_name = 'it''s'")->set.value, "'it''s'", "quote doubled");
	is_str(A("SET application_name = 'a\\b'")->set.value, "E'a\\\\b'",
	       "backslash: E'' string with the backslash doubled");
	is_str(A("SET search_path = \"$user\", public")->set.value, "'$user', 'public'",
	       "quoted identifier in a list");
	s = A("SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE; SELECT 1");
	is_str(s->set.value, "INTERVAL '+02:00' HOUR TO MINUTE",
	       "interval time zone from the text");
	is_str(A("SET NAMES 'UTF8'")->set.name, "client_encoding", "SET NAMES");
	is_str(A("SET ROLE admin")->set.value, "'admin'", "SET ROLE value");
	is_str(cur->stmts[0].set.name, "role", "SET ROLE name");
	is_str(A("SET SESSION AUTHORIZATION bob")->set.name, "session_authorization",
	       "SET SESSION AUTHORIZATION");
	s = A("SET x TO DEFAULT");
	is_int(s->set.op, SP_SET_DEFAULT, "SET TO DEFAULT");
	ok(s->set.value == NULL, "SET TO DEFAULT has no value");
	is_int(A("SET TIME ZONE LOCAL")->set.op, SP_SET_DEFAULT, "SET TIME ZONE LOCAL");
	is_int(A("SET search_path FROM CURRENT")->set.op, SP_SET_FROM_CURRENT, "SET FROM CURRENT");
	s = A("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY");
	is_int(s->set.op, SP_SET_TRANSACTION, "SET TRANSACTION");
	is_str(s->set.name, "transaction", "SET TRANSACTION name");
	is_str(s->set.modes.isolation, "serializable", "SET TRANSACTION isolation");
	is_int(s->set.modes.read_only, 1, "SET TRANSACTION READ ONLY");
	s = A("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE");
	is_str(s->set.name, "session characteristics", "SET SESSION CHARACTERISTICS");
	is_int(s->set.modes.read_only, 0, "session characteristics READ WRITE");
	s = A("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'");
	is_str(s->set.name, "transaction snapshot", "SET TRANSACTION SNAPSHOT");
	is_str(s->set.value, "'00000003-0000001B-1'", "snapshot id");
	s = A("RESET search_path");
	is_int(s->set.op, SP_SET_RESET, "RESET");
	is_str(s->set.name, "search_path", "RESET name");
	s = A("RESET ALL");
	is_int(s->set.op, SP_SET_RESET_ALL, "RESET ALL");
	ok(s->set.name == NULL, "RESET ALL has no name");
}

static void test_copy(void)
{
	const sp_stmt_t *s;

	s = A(
	    "COPY users (name, id) FROM STDIN WITH (FORMAT csv, DELIMITER '|', HEADER, NULL 'x')");
	is_int(s->kind, SP_STMT_COPY, "COPY kind");
	ok(s->copy.is_from, "COPY FROM");
	ok(s->is_write, "COPY FROM is a write");
	is_str(s->write_reason, "COPY FROM", "COPY FROM reason");
	is_int(s->copy.table, 0, "COPY table index");
	is_str(s->tables[0].name, "users", "COPY table name");
	ok(s->tables[0].ctx == SP_TABLE_WRITE, "COPY FROM writes the table");
	ok(s->copy.has_column_list, "COPY column list");
	is_int(s->copy.n_cols, 2, "COPY column count");
	is_str(s->copy.cols[1], "id", "COPY second column");
	is_int(s->copy.key_pos[0], 1, "COPY: key column position in rows");
	is_int(s->copy.format, SP_COPY_CSV, "COPY csv");
	is_str(s->copy.delimiter, "|", "COPY delimiter");
	is_str(s->copy.null_str, "x", "COPY null string");
	is_int(s->copy.header, 1, "COPY header");
	is_str(s->copy.quote, "\"", "COPY csv quote default");
	ok(s->copy.filename == NULL, "COPY FROM STDIN");
	is_int(s->route, SP_ROUTE_UNPINNED, "COPY FROM: the router splits rows");

	s = A("COPY users TO STDOUT");
	ok(!s->copy.is_from && !s->is_write, "COPY TO is a read");
	is_int(s->copy.format, SP_COPY_TEXT, "COPY default format text");
	is_str(s->copy.delimiter, "\t", "text delimiter default");
	is_str(s->copy.null_str, "\\N", "text null default");
	is_int(s->copy.header, 0, "no header");
	is_int(s->copy.key_pos[0], -1, "no column list: key position unknown");
	ok(s->tables[0].ctx == SP_TABLE_READ, "COPY TO reads the table");

	s = A("COPY users FROM STDIN CSV HEADER DELIMITER ';' NULL ''");
	is_int(s->copy.format, SP_COPY_CSV, "legacy CSV option");
	is_int(s->copy.header, 1, "legacy HEADER");
	is_str(s->copy.delimiter, ";", "legacy DELIMITER");
	is_str(s->copy.null_str, "", "legacy NULL ''");
	is_int(A("COPY users FROM STDIN (FORMAT csv, HEADER match)")->copy.header, 2,
	       "HEADER MATCH");
	is_int(A("COPY users FROM STDIN (FORMAT csv, HEADER false)")->copy.header, 0,
	       "HEADER false");
	is_int(A("COPY users TO STDOUT (FORMAT binary)")->copy.format, SP_COPY_BINARY, "binary");
	s = A("COPY users FROM '/tmp/data.csv' (FORMAT csv)");
	is_str(s->copy.filename, "/tmp/data.csv", "COPY file name");
	is_str(s->copy.delimiter, ",", "csv delimiter default");
	ok(A("COPY users TO PROGRAM 'gzip > x'")->copy.is_program, "COPY TO PROGRAM");
	ok(A("COPY users FROM STDIN WHERE id > 5")->copy.has_where, "COPY FROM ... WHERE");

	s = A("COPY (SELECT * FROM orders WHERE user_id = 7) TO STDOUT WITH CSV HEADER");
	is_int(s->copy.table, -1, "COPY (query) has no table");
	is_int(s->inner_kind, SP_STMT_SELECT, "COPY (SELECT)");
	is_str(keys(s, 0), "{(7)}", "COPY (query) keys");
	is_int(s->route, SP_ROUTE_PINNED, "COPY (query) pinned");
	ok(!s->is_write, "COPY (SELECT) TO is a read");
	ok(A("COPY (INSERT INTO users (id) VALUES (1) RETURNING *) TO STDOUT")->is_write,
	   "COPY (INSERT ... RETURNING) TO is a write");
}

static void test_read_write(void)
{
	const sp_stmt_t *s;

	ok(A("INSERT INTO x VALUES (1)")->is_write, "INSERT is a write");
	is_str(cur->stmts[0].write_reason, "INSERT", "INSERT reason");
	ok(A("UPDATE x SET a = 1")->is_write, "UPDATE is a write");
	ok(A("DELETE FROM x")->is_write, "DELETE is a write");
	s = A("SELECT * FROM x FOR UPDATE");
	ok(s->is_write, "SELECT FOR UPDATE is a write");
	is_str(s->write_reason, "SELECT ... FOR UPDATE/SHARE", "FOR UPDATE reason");
	ok(s->tables[0].ctx & SP_TABLE_LOCK, "FOR UPDATE locks the table");
	ok(A("SELECT * FROM x FOR SHARE")->is_write, "FOR SHARE");
	ok(A("SELECT * FROM x FOR NO KEY UPDATE")->is_write, "FOR NO KEY UPDATE");
	ok(A("SELECT * FROM x FOR KEY SHARE SKIP LOCKED")->is_write, "FOR KEY SHARE");
	s = A("SELECT * FROM a JOIN b ON a.x = b.x FOR UPDATE OF b");
	ok(!(s->tables[0].ctx & SP_TABLE_LOCK) && (s->tables[1].ctx & SP_TABLE_LOCK),
	   "FOR UPDATE OF b locks only b");
	s = A("WITH c AS (SELECT * FROM orders WHERE user_id = 1 FOR UPDATE) SELECT * FROM c");
	ok(s->is_write, "FOR UPDATE inside a CTE is a write");
	ok(A("SELECT * FROM t WHERE a IN (SELECT b FROM u FOR SHARE)")->is_write,
	   "FOR SHARE inside a subquery is a write");
	ok(A("SELECT * FROM (SELECT * FROM u FOR UPDATE) s")->is_write,
	   "FOR UPDATE inside a derived table is a write");
	s = A("WITH d AS (DELETE FROM orders WHERE user_id = 3 RETURNING *) SELECT * FROM d");
	ok(s->is_write, "write CTE in a SELECT");
	is_str(s->write_reason, "data-modifying statement in WITH", "write CTE reason");
	is_int(s->kind, SP_STMT_SELECT, "write CTE statement is still a SELECT");
	ok(s->tables[0].ctx & SP_TABLE_WRITE, "the CTE's target is written");
	ok(A("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1")->is_write, "INSERT CTE");
	ok(!A("WITH r AS (SELECT * FROM t) SELECT * FROM r")->is_write, "read-only CTE is a read");
	s = A("SELECT a INTO newtable FROM t");
	ok(s->is_write, "SELECT INTO is a write");
	is_str(s->write_reason, "SELECT INTO creates a table", "SELECT INTO reason");
	ok(s->tables[1].ctx == SP_TABLE_WRITE && !strcmp(s->tables[1].name, "newtable"),
	   "SELECT INTO names the new table as written");

	s = A("SELECT nextval('seq')");
	ok(s->is_write, "nextval in a SELECT is a write");
	is_str(s->write_reason, "volatile function nextval()", "nextval reason");
	ok(A("SELECT pg_catalog.setval('s', 1)")->is_write, "schema-qualified setval");
	ok(A("SELECT pg_advisory_lock(1)")->is_write, "advisory lock");
	ok(A("SELECT pg_try_advisory_xact_lock(1)")->is_write, "try advisory xact lock");
	ok(A("SELECT txid_current()")->is_write, "txid_current");
	ok(A("SELECT pg_current_xact_id()")->is_write, "pg_current_xact_id");
	ok(A("SELECT set_config('a.b', '1', false)")->is_write, "set_config");
	ok(A("SELECT lo_create(0)")->is_write, "lo_create");
	ok(A("SELECT dblink_exec('x', 'y')")->is_write, "dblink_exec");
	ok(A("SELECT pg_notify('c', 'x')")->is_write, "pg_notify");
	ok(A("SELECT * FROM t WHERE id = (SELECT nextval('s'))")->is_write,
	   "nextval in a subquery");
	ok(A("SELECT * FROM generate_series(1, nextval('s'))")->is_write, "nextval in FROM");
	ok(!A("SELECT random(), now(), clock_timestamp(), gen_random_uuid()")->is_write,
	   "random/now/clock_timestamp/gen_random_uuid are read-safe");
	ok(!A("SELECT lower(name), count(*) FROM t GROUP BY 1")->is_write,
	   "ordinary functions read");
	ok(!A("SELECT my_func(1)")->is_write, "unknown function: read without a list");
}

static sp_func_class_t func_cb(void *arg, const char *schema, const char *name)
{
	(void)arg;
	if (!strcmp(name, "audit_log"))
		return SP_FUNC_WRITE;
	if (schema && !strcmp(schema, "app") && !strcmp(name, "touch"))
		return SP_FUNC_WRITE;
	if (!strcmp(name, "nextval"))
		return SP_FUNC_READ; /* a callback may override the built-ins */
	return SP_FUNC_UNKNOWN;
}

static void test_volatile(void)
{
	sp_funcset_t *vol = sp_funcset_new(), *rd = sp_funcset_new(), *wr = sp_funcset_new();
	sp_analyze_opts_t o = opts;

	ok(vol && rd && wr, "funcsets created");
	ok(sp_funcset_add(vol, "myschema.bump_counter"), "add qualified name");
	ok(sp_funcset_add(vol, "bump_counter2"), "add bare name");
	ok(sp_funcset_add(vol, "random"), "pg_proc lists random as volatile");
	ok(sp_funcset_add(vol, "nextval"), "add nextval");
	for (int i = 0; i < 500; i++) {
		char name[32];
		snprintf(name, sizeof(name), "vol_%d", i);
		sp_funcset_add(vol, name);
	}
	ok(sp_funcset_add(vol, "vol_7"), "adding twice is fine");
	is_int(sp_funcset_size(vol), 504, "funcset size (grew past its first table)");
	ok(sp_funcset_contains(vol, "vol_499") && !sp_funcset_contains(vol, "vol_500"),
	   "funcset contains");
	o.volatile_funcs = vol;

	ok(AO("SELECT myschema.bump_counter()", &o)->is_write, "user volatile function, qualified");
	ok(!AO("SELECT bump_counter()", &o)->is_write,
	   "unqualified call does not match a schema-qualified entry");
	ok(AO("SELECT x FROM t WHERE y = bump_counter2()", &o)->is_write, "bare name in WHERE");
	ok(AO("SELECT s.bump_counter2()", &o)->is_write, "qualified call matches a bare entry");
	ok(AO("SELECT vol_123(1)", &o)->is_write, "volatile set lookup");
	ok(!AO("SELECT random()", &o)->is_write, "random stays read-safe with a pg_proc set");
	ok(AO("SELECT txid_current()", &o)->is_write && AO("SELECT pg_walfile_name('0/0')", &o)->is_write,
	   "with a caller set, built-in writers that pg_proc calls stable or immutable still write");
	o.no_builtin_read_safe = true;
	ok(AO("SELECT random()", &o)->is_write, "no_builtin_read_safe: random is volatile");
	o.no_builtin_read_safe = false;

	sp_funcset_t *known = sp_funcset_new();
	sp_funcset_add(known, "lower");
	sp_funcset_add(known, "app.price");
	o.known_funcs = known;
	ok(!AO("SELECT lower('A')", &o)->is_write && !cur->unknown_funcs,
	   "known_funcs: a catalogued stable function is a read");
	ok(!AO("SELECT random()", &o)->is_write, "known_funcs: read-safe list still first");
	const sp_stmt_t *un = AO("SELECT x FROM t WHERE y = brand_new(1)", &o);
	ok(un->is_write && cur->unknown_funcs,
	   "known_funcs: an uncatalogued function is a write, reported");
	ok(un->write_reason && strstr(un->write_reason, "not yet catalogued"),
	   "... and the reason says why");
	ok(!AO("SELECT app.price(1)", &o)->is_write, "known_funcs: qualified entry");
	ok(AO("SELECT other.price(1)", &o)->is_write, "known_funcs: bare price is not known");
	o.known_funcs = NULL;

	sp_funcset_add(rd, "nextval");
	o.read_funcs = rd;
	ok(!AO("SELECT nextval('s')", &o)->is_write, "read override beats the volatile set");
	sp_funcset_add(wr, "lower");
	sp_funcset_add(wr, "app.price");
	o.write_funcs = wr;
	ok(AO("SELECT lower('A')", &o)->is_write, "write override");
	ok(AO("SELECT app.price(1)", &o)->is_write, "qualified write override");
	ok(!AO("SELECT other.price(1)", &o)->is_write, "other schema not overridden");

	sp_analyze_opts_t p = opts;
	p.func_lookup = func_cb;
	ok(AO("SELECT audit_log('x')", &p)->is_write,
	   "user-defined volatile function via callback");
	ok(AO("SELECT app.touch(1)", &p)->is_write, "callback sees the schema");
	ok(!AO("SELECT touch(1)", &p)->is_write, "callback: unqualified differs");
	ok(!AO("SELECT nextval('s')", &p)->is_write, "callback can declare nextval read");
	ok(AO("SELECT setval('s', 1)", &p)->is_write, "unknown to the callback: built-in set");

	sp_funcset_free(vol);
	sp_funcset_free(known);
	sp_funcset_free(rd);
	sp_funcset_free(wr);
	sp_funcset_free(NULL);
}

static void test_tables(void)
{
	const sp_stmt_t *s;

	s = A("SELECT * FROM public.users u JOIN orders ON orders.user_id = u.id");
	is_int(s->n_tables, 2, "two tables");
	is_str(s->tables[0].schema, "public", "schema");
	is_str(s->tables[0].name, "users", "name");
	is_str(s->tables[0].alias, "u", "alias");
	ok(s->tables[1].schema == NULL && s->tables[1].alias == NULL, "no schema, no alias");
	is_int(s->tables[0].location, 14, "location of the table name");
	ok(s->tables[0].conf == &t_users, "lookup result kept");

	s = A("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent r JOIN users ON true");
	is_int(s->n_tables, 2, "CTE name is not a table");
	is_str(s->tables[0].name, "orders", "table inside the CTE");
	is_str(s->tables[1].name, "users", "table after the CTE");
	s = A("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t");
	is_int(s->n_tables, 0, "recursive CTE referring to itself is not a table");
	s = A("WITH x AS (SELECT 1) SELECT * FROM public.x");
	is_int(s->n_tables, 1, "schema-qualified name is a table even if a CTE has its name");
	s = A("SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.x = a.x) AND y IN (SELECT y "
	      "FROM c)");
	is_int(s->n_tables, 3, "tables in subqueries");
	is_str(s->tables[2].name, "c", "IN subquery table");
	s = A("SELECT * FROM a LEFT JOIN (b JOIN c ON true) ON true, LATERAL (SELECT * FROM d) x");
	is_int(s->n_tables, 4, "tables in joins and LATERAL");
	s = A("UPDATE users u SET a = 1 FROM orders o WHERE o.user_id = u.id");
	ok(s->tables[0].ctx == SP_TABLE_WRITE && s->tables[1].ctx == SP_TABLE_READ,
	   "UPDATE target written, FROM read");
	is_str(s->tables[0].alias, "u", "UPDATE alias");
	s = A("DELETE FROM users USING orders WHERE orders.user_id = users.id");
	ok(s->tables[0].ctx == SP_TABLE_WRITE && s->tables[1].ctx == SP_TABLE_READ,
	   "DELETE target written, USING read");
	s = A("INSERT INTO orders (user_id) SELECT id FROM users");
	ok(s->tables[0].ctx == SP_TABLE_WRITE && s->tables[1].ctx == (SP_TABLE_READ | SP_TABLE_NESTED),
	   "INSERT SELECT: target written, source read (in a query of its own)");
	s = A("SELECT u.id, (SELECT count(*) FROM orders) FROM users u JOIN items i ON true "
	      "WHERE EXISTS (SELECT 1 FROM countries) AND u.id IN (SELECT 1 FROM t4)");
	ok(s->n_tables == 5 && !(s->tables[0].ctx & SP_TABLE_NESTED) && !(s->tables[1].ctx & SP_TABLE_NESTED) &&
	       (s->tables[2].ctx & SP_TABLE_NESTED) && (s->tables[3].ctx & SP_TABLE_NESTED) &&
	       (s->tables[4].ctx & SP_TABLE_NESTED),
	   "FROM and JOIN tables are the statement's own; scalar, EXISTS and IN subqueries nested");
	s = A("WITH c AS (SELECT * FROM orders) SELECT * FROM (SELECT * FROM users) d, c "
	      "UNION ALL SELECT * FROM items");
	ok(s->n_tables == 3 && (s->tables[0].ctx & SP_TABLE_NESTED) && (s->tables[1].ctx & SP_TABLE_NESTED) &&
	       (s->tables[2].ctx & SP_TABLE_NESTED),
	   "CTE, derived table and set-operation arms nested");
	s = A("SELECT * FROM t TABLESAMPLE SYSTEM (10)");
	is_str(s->tables[0].name, "t", "TABLESAMPLE table");
}

static void test_shard_keys(void)
{
	const sp_stmt_t *s;

	s = A("SELECT * FROM users WHERE id = 42");
	is_str(keys(s, 0), "{(42)}", "key = const");
	is_int(s->route, SP_ROUTE_PINNED, "pinned");
	is_int(s->route_table, 0, "route table");
	is_str(keys(A("SELECT * FROM users WHERE 42 = id"), 0), "{(42)}", "const = key");
	is_str(keys(A("SELECT * FROM users WHERE id = $1"), 0), "{($1)}", "key = $1");
	is_int(cur->stmts[0].max_param, 1, "max_param");
	is_str(keys(A("SELECT * FROM users u WHERE u.id = 5"), 0), "{(5)}", "alias-qualified");
	is_str(keys(A("SELECT * FROM users WHERE users.id = 5"), 0), "{(5)}", "table-qualified");
	is_str(keys(A("SELECT * FROM public.users WHERE public.users.id = 5"), 0), "{(5)}",
	       "schema.table.col");
	is_str(keys(A("SELECT * FROM users u WHERE users.id = 5"), 0), "ALL",
	       "aliased table is not reachable by its name");
	is_str(keys(A("SELECT * FROM users WHERE id = -5"), 0), "{(-5)}", "negative constant");
	is_str(keys(A("SELECT * FROM users WHERE id = - 7"), 0), "{(-7)}",
	       "unary minus with space");
	is_str(keys(A("SELECT * FROM users WHERE id = -(8)"), 0), "{(-8)}", "minus of parenthesis");
	is_str(keys(A("SELECT * FROM users WHERE id = 0"), 0), "{(0)}", "zero");
	is_str(keys(A("SELECT * FROM users WHERE id = -'9'::int"), 0), "{(-9)}",
	       "minus applied to a cast number");
	s = A("SELECT * FROM users WHERE id = '42'::bigint");
	is_str(keys(s, 0), "{(42)}", "text cast to bigint");
	is_str(s->tables[0].keys.values[0].cast, "int8", "cast type recorded");
	is_int(s->tables[0].keys.values[0].lit, SP_LIT_STRING, "literal was a string");
	s = A("SELECT * FROM users WHERE id = 42::int8");
	is_str(keys(s, 0), "{(42)}", "int cast");
	is_int(s->tables[0].keys.values[0].lit, SP_LIT_INT, "literal was an integer");
	is_str(keys(A("SELECT * FROM users WHERE id = CAST($2 AS bigint)"), 0), "{($2)}",
	       "CAST($2)");
	is_str(keys(A("SELECT * FROM users WHERE id = 3000000000"), 0), "{(3000000000)}",
	       "big integer (numeric literal)");
	is_str(keys(A("SELECT * FROM users WHERE id = 'abc'"), 0), "{(abc)}", "text literal");
	s = A("SELECT * FROM users WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid");
	is_str(keys(s, 0), "{(a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)}", "uuid literal");
	is_str(s->tables[0].keys.values[0].cast, "uuid", "uuid cast");
	is_str(keys(A("SELECT * FROM users WHERE id = uuid 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
		    0),
	       "{(a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)}", "typed literal uuid '...'");
	is_str(keys(A("SELECT * FROM users WHERE id = E'x\\'y'"), 0), "{(x'y)}",
	       "E'' string unescaped");
	is_str(keys(A("SELECT * FROM users WHERE id IS NULL"), 0), "{(NULL)}", "IS NULL");

	s = A("SELECT * FROM users WHERE id IN (1, $2, 3) AND name = 'x'");
	is_str(keys(s, 0), "{(1)($2)(3)}", "IN list with a parameter");
	is_int(s->max_param, 2, "max_param from IN");
	is_str(keys(A("SELECT * FROM users WHERE id IN (1, 1, 2)"), 0), "{(1)(2)}",
	       "IN list deduped");
	is_str(keys(A("SELECT * FROM users WHERE id IN (1, lower('x'))"), 0), "ALL",
	       "IN list with an expression");
	is_str(keys(A("SELECT * FROM users WHERE id = ANY('{1,2,3}')"), 0), "{(1)(2)(3)}",
	       "= ANY('{...}')");
	s = A("SELECT * FROM users WHERE id = ANY('{4,\"5\",NULL}'::bigint[])");
	is_str(keys(s, 0), "{(4)(5)(NULL)}", "= ANY('{...}'::bigint[])");
	is_str(s->tables[0].keys.values[0].cast, "int8", "array element type as cast");
	is_str(keys(A("SELECT * FROM users WHERE id = ANY($1)"), 0), "{($1[])}", "= ANY($1)");
	is_str(keys(A("SELECT * FROM users WHERE id = ANY($1::bigint[])"), 0), "{($1[])}",
	       "= ANY($1::bigint[])");
	is_str(keys(A("SELECT * FROM users WHERE id = ANY(ARRAY[7, $2])"), 0), "{(7)($2)}",
	       "= ANY(ARRAY[...])");
	is_str(keys(A("SELECT * FROM users WHERE id = ANY('{{1,2}}')"), 0), "ALL",
	       "nested array literal is not read");

	is_str(keys(A("SELECT * FROM users WHERE id = 1 OR id = 2"), 0), "{(1)(2)}", "OR of keys");
	s = A("SELECT * FROM users WHERE id = 1 OR name = 'x'");
	is_str(keys(s, 0), "ALL", "OR with a non-key condition");
	is_int(s->route, SP_ROUTE_UNPINNED, "OR with a non-key condition: unpinned");
	is_str(s->route_why, "users: OR with a condition that does not fix the key",
	       "why unpinned");
	is_str(
	    keys(A("SELECT * FROM users WHERE (id = 1 OR id = 2) AND (name = 'a' OR name = 'b')"),
		 0),
	    "{(1)(2)}", "AND of an OR on the key with another OR");
	is_str(keys(A("SELECT * FROM users WHERE NOT (id = 1)"), 0), "ALL",
	       "NOT is not understood");
	is_str(keys(A("SELECT * FROM users WHERE id <> 1"), 0), "ALL", "<> does not pin");
	is_str(keys(A("SELECT * FROM users WHERE id + 0 = 1"), 0), "ALL", "expression of the key");
	is_str(keys(A("SELECT * FROM users WHERE id = other_col"), 0), "ALL", "key = column");
	is_str(keys(A("SELECT * FROM users"), 0), "ALL", "no WHERE");
	is_str(why(A("SELECT * FROM users"), 0), "no usable condition on its key column id",
	       "no WHERE: why");
	is_str(keys(A("SELECT * FROM users WHERE id = 1 AND id = 2"), 0), "{(1)}",
	       "contradiction keeps one value (no row matches anyway)");

	/* composite keys */
	is_str(keys(A("SELECT * FROM events WHERE tenant = 't1' AND id IN (1, 2)"), 0),
	       "{(t1,1)(t1,2)}", "composite key: product of AND");
	is_str(keys(A("SELECT * FROM events WHERE (tenant, id) IN (('a', 1), ('b', $2))"), 0),
	       "{(a,1)(b,$2)}", "composite key: row IN");
	is_str(keys(A("SELECT * FROM events WHERE (tenant, id) = ('a', 1)"), 0), "{(a,1)}",
	       "composite key: row =");
	is_str(keys(A("SELECT * FROM events WHERE (tenant = 'a' AND id = 1) OR (tenant = 'b' AND "
		      "id = 2)"),
		    0),
	       "{(a,1)(b,2)}", "composite key: OR of ANDs");
	s = A("SELECT * FROM events WHERE tenant = 'a'");
	is_str(keys(s, 0), "ALL", "composite key: one column only");
	is_str(why(s, 0), "no usable condition on its key column id", "names the missing column");

	/* unqualified resolution */
	s = A("SELECT * FROM users u JOIN orders o ON true WHERE user_id = 9");
	is_str(keys(s, 1), "{(9)}", "unqualified name resolves to the one table whose key it is");
	is_str(keys(s, 0), "ALL", "the other table is not pinned by it");
	s = A("SELECT * FROM users WHERE EXISTS (SELECT 1 FROM logs WHERE id = 5)");
	is_str(keys(s, 0), "ALL", "unqualified name never resolves to an outer level");
	is_str(keys(A("SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM logs WHERE u.id = 5)"), 0),
	       "ALL", "a constant on an outer table inside a subquery does not pin it");

	s = A("SELECT * FROM wide WHERE a = 1 AND b = 2 AND c = 3 AND d = 4 AND e = 5 AND f = 6 "
	      "AND g = 7 AND h = 8 AND i = 9");
	is_str(keys(s, 0), "ALL", "more key columns than SP_ANALYZE_MAX_KEYS: never pinned");
	is_str(why(s, 0), "more key columns than the analyzer tracks", "and says why");

	/* replicated and unknown tables */
	s = A("SELECT * FROM countries c JOIN users u ON true WHERE u.id = 4");
	is_str(keys(s, 0), "-", "replicated table is not sharded");
	is_int(s->route, SP_ROUTE_PINNED, "replicated table does not unpin");
	is_int(s->route_table, 1, "route table skips the replicated one");
	s = A("SELECT * FROM logs");
	is_int(s->route, SP_ROUTE_NO_SHARDED, "no sharded table");
	is_int(s->route_table, -1, "no route table");
	is_str(keys(A("SELECT * FROM billing.invoices WHERE user_id = 1"), 0), "{(1)}",
	       "schema-qualified sharded table");
	is_str(keys(A("SELECT * FROM invoices WHERE user_id = 1"), 0), "-",
	       "the lookup decides what an unqualified name means");
}

static void test_joins(void)
{
	const sp_stmt_t *s;

	s = A("SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 5");
	is_str(keys(s, 0), "{(5)}", "join: pinned table");
	is_str(keys(s, 1), "{(5)}", "join: the other table pinned through the key equality");
	is_int(s->tables[1].pinned_via, 0, "pinned_via");
	is_int(s->route, SP_ROUTE_PINNED, "join pinned");
	s = A("SELECT * FROM users u, orders o WHERE o.user_id = u.id AND o.user_id = $1");
	is_str(keys(s, 0), "{($1)}", "comma join: pin flows both ways");
	s = A("SELECT * FROM orders JOIN items USING (user_id) WHERE user_id = 9");
	is_str(keys(s, 0), "{(9)}", "USING: merged column pins the left");
	is_str(keys(s, 1), "{(9)}", "USING: and the right");
	s = A("SELECT * FROM orders o JOIN items i USING (user_id) WHERE o.user_id = 9");
	is_str(keys(s, 1), "{(9)}", "USING carries a pin");
	s = A("SELECT * FROM orders NATURAL JOIN items WHERE orders.user_id = 3");
	is_str(keys(s, 1), "{(3)}", "NATURAL JOIN over the key names carries a pin");
	s = A("SELECT * FROM users u JOIN orders o ON o.user_id = u.id");
	is_int(s->route, SP_ROUTE_UNPINNED, "co-located join without a key value: unpinned");
	s = A("SELECT * FROM users u JOIN orders o ON o.status = u.status WHERE u.id = 1");
	is_str(keys(s, 1), "ALL", "join on a non-key column does not carry the pin");
	is_int(s->route, SP_ROUTE_UNPINNED, "so the statement is unpinned");
	is_int(s->route_table, 1, "and names orders");
	s = A("SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id = 1");
	is_str(keys(s, 1), "{(1)}", "LEFT JOIN: preserved side pins the nullable side");
	s = A("SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.user_id = 1");
	is_str(keys(s, 1), "{(1)}", "LEFT JOIN: WHERE pins the nullable side");
	is_str(keys(s, 0), "ALL", "but not the preserved side");
	s = A("SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.user_id = 2");
	is_str(keys(s, 1), "{(2)}", "outer join ON pins the nullable side");
	is_str(keys(s, 0), "ALL", "outer join ON does not pin the preserved side");
	s = A("SELECT * FROM users u LEFT JOIN orders o ON o.x = u.x WHERE o.user_id IS NULL");
	is_str(keys(s, 1), "ALL", "IS NULL on the nullable side does not pin (anti-join)");
	s = A("SELECT * FROM users u RIGHT JOIN orders o ON o.user_id = u.id WHERE o.user_id = 4");
	is_str(keys(s, 0), "{(4)}", "RIGHT JOIN: preserved right side pins the left");
	s = A("SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.id WHERE u.id = 4");
	is_str(keys(s, 1), "ALL", "FULL JOIN carries nothing through ON");
	s = A("SELECT * FROM users u JOIN orders o ON o.user_id = u.id JOIN items i ON i.user_id = "
	      "o.user_id WHERE u.id = 6");
	is_str(keys(s, 2), "{(6)}", "pins propagate along a chain of joins");
	s = A("SELECT * FROM events e JOIN events f ON f.tenant = e.tenant WHERE e.tenant = 'a' "
	      "AND e.id = 1");
	is_str(keys(s, 1), "ALL",
	       "composite key: equality on part of the key does not carry the pin");
	s = A("SELECT * FROM events e JOIN events f ON f.tenant = e.tenant AND f.id = e.id WHERE "
	      "e.tenant = 'a' AND e.id = 1");
	is_str(keys(s, 1), "{(a,1)}", "composite key: equality on all key columns carries the pin");

	/* subqueries and CTEs */
	s = A("SELECT * FROM users u WHERE u.id = 5 AND EXISTS (SELECT 1 FROM orders o WHERE "
	      "o.user_id = u.id)");
	is_str(keys(s, 1), "{(5)}", "correlated subquery pinned from the outer query");
	is_int(s->route, SP_ROUTE_PINNED, "correlated subquery: pinned");
	s = A("SELECT * FROM users u WHERE u.id = 5 AND NOT EXISTS (SELECT 1 FROM orders o WHERE "
	      "o.user_id = u.id)");
	is_str(keys(s, 1), "{(5)}", "NOT EXISTS subquery pinned from the outer query");
	s = A("SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id "
	      "AND o.user_id = 5)");
	is_str(keys(s, 0), "ALL", "a subquery's pin does not flow out to the outer table");
	s = A("SELECT * FROM users u WHERE u.id = 5 AND EXISTS (SELECT 1 FROM orders o WHERE "
	      "o.status = 'x')");
	is_int(s->route, SP_ROUTE_UNPINNED, "subquery with an unpinned sharded table");
	is_int(s->route_table, 1, "reports the unpinned table");
	is_str(s->route_why, "orders: no usable condition on its key column user_id", "and why");
	s = A("SELECT * FROM users WHERE id = 1 AND x IN (SELECT x FROM orders WHERE user_id = 1)");
	is_int(s->route, SP_ROUTE_PINNED, "uncorrelated subquery pinned to the same value");
	s = A("SELECT * FROM users WHERE id = 1 AND x IN (SELECT x FROM orders WHERE user_id = 2)");
	is_int(s->route, SP_ROUTE_PINNED_MIXED, "pinned to different values: mixed");
	s = A("WITH o AS (SELECT * FROM orders WHERE user_id = 3) SELECT * FROM o JOIN users u ON "
	      "u.id = o.user_id WHERE u.id = 3");
	is_int(s->route, SP_ROUTE_PINNED, "CTE pinned on its own, same value");
	s = A("WITH o AS (SELECT * FROM orders) SELECT * FROM o WHERE user_id = 3");
	is_str(keys(s, 0), "ALL", "a condition outside a CTE does not pin its tables");
	s = A("SELECT * FROM (SELECT * FROM orders WHERE user_id = $1) s JOIN users u ON u.id = "
	      "s.user_id WHERE u.id = $1");
	is_int(s->route, SP_ROUTE_PINNED, "derived table pinned on its own");
	s = A("SELECT * FROM users WHERE id = 1 UNION ALL SELECT * FROM users WHERE id = 2");
	is_int(s->route, SP_ROUTE_PINNED_MIXED, "UNION arms pinned to different keys");
	s = A("SELECT * FROM users WHERE id = 1 UNION SELECT * FROM users WHERE id = 1");
	is_int(s->route, SP_ROUTE_PINNED, "UNION arms pinned to the same key");
}

static void test_dml_keys(void)
{
	const sp_stmt_t *s;

	s = A("INSERT INTO users (id, name) VALUES (1, 'a'), ($1, 'b'), (-3, 'c') RETURNING id");
	is_int(s->insert.source, SP_INSERT_VALUES, "INSERT VALUES");
	is_int(s->insert.n_rows, 3, "three rows");
	is_int(s->insert.width, 2, "two columns");
	is_int(s->insert.key_pos[0], 0, "key position");
	ok(s->insert.has_column_list, "column list");
	is_str(s->insert.cols[1], "name", "column names");
	is_str(val(&s->insert.rows[2 * 2 + 0]), "-3", "row 3 key value");
	is_str(val(&s->insert.rows[1 * 2 + 0]), "$1", "row 2 key parameter");
	is_str(val(&s->insert.rows[0 * 2 + 1]), "a", "row 1 other value");
	is_str(keys(s, 0), "{(1)($1)(-3)}", "multi-row INSERT: one key tuple per row");
	ok(s->has_returning, "RETURNING");
	is_int(s->route, SP_ROUTE_PINNED, "rows with mixed keys: pinned, the router hashes each");
	s = A("INSERT INTO users (name, id) VALUES ('a', 7), ('b', 7)");
	is_str(keys(s, 0), "{(7)(7)}", "INSERT rows keep duplicates in row order");
	is_int(s->insert.key_pos[0], 1, "key in second position");
	s = A("INSERT INTO users VALUES (1, 'a')");
	ok(!s->insert.has_column_list, "INSERT without a column list");
	is_int(s->insert.key_pos[0], -1, "key position unknown");
	is_int(s->insert.width, 2, "values are still reported");
	is_str(keys(s, 0), "ALL", "no column list: not pinned");
	is_str(why(s, 0), "INSERT without a column list: the key's position is unknown",
	       "no column list: why");
	s = A("INSERT INTO users (name) VALUES ('a')");
	is_str(why(s, 0), "key column id is not in the column list", "key column missing");
	s = A("INSERT INTO users (id) VALUES (1), (DEFAULT)");
	is_str(why(s, 0), "row 2: key column id is DEFAULT", "DEFAULT key");
	is_str(val(&s->insert.rows[1]), "DEFAULT", "DEFAULT value");
	s = A("INSERT INTO users (id) VALUES (nextval('s'))");
	is_str(why(s, 0), "row 1: key column id is an expression", "expression key");
	s = A("INSERT INTO users DEFAULT VALUES");
	is_int(s->insert.source, SP_INSERT_DEFAULT_VALUES, "DEFAULT VALUES");
	is_str(keys(s, 0), "ALL", "DEFAULT VALUES not pinned");
	s = A("INSERT INTO events (id, tenant) VALUES (1, 'a'), (2, 'b')");
	is_str(keys(s, 0), "{(a,1)(b,2)}", "composite key INSERT, columns reordered");

	s = A("INSERT INTO orders (user_id, x) SELECT id, 1 FROM users WHERE id = 5");
	is_int(s->insert.source, SP_INSERT_SELECT, "INSERT SELECT");
	is_str(keys(s, 0), "{(5)}", "INSERT SELECT of a pinned key");
	is_int(s->route, SP_ROUTE_PINNED, "INSERT SELECT pinned");
	s = A("INSERT INTO orders (user_id, x) SELECT id, 1 FROM users");
	is_int(s->route, SP_ROUTE_UNPINNED, "INSERT SELECT from an unpinned table");
	s = A("INSERT INTO orders (user_id, x) SELECT 7, 1");
	is_str(keys(s, 0), "{(7)}", "INSERT SELECT of constants without FROM");
	s = A("INSERT INTO orders (user_id, x) SELECT 7, x FROM users WHERE id = 7");
	is_str(keys(s, 0), "ALL", "INSERT SELECT of a constant with FROM is not pinned");
	s = A("INSERT INTO orders (user_id, x) SELECT u.x, 1 FROM users u WHERE u.id = 5");
	is_str(keys(s, 0), "ALL", "INSERT SELECT of a non-key column");

	s = A("INSERT INTO users (id, n) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET n = "
	      "excluded.n");
	ok(s->insert.on_conflict && s->insert.on_conflict_update, "ON CONFLICT DO UPDATE");
	is_str(keys(s, 0), "{(1)}", "upsert pinned by its row");
	ok(!s->tables[0].key_assigned, "upsert not touching the key");
	s = A("INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = excluded.id + "
	      "1");
	ok(s->tables[0].key_assigned, "upsert assigning the key");
	is_int(s->tables[0].key_new[0].kind, SP_VAL_EXPR, "assigned an expression");
	s = A("INSERT INTO users (id) VALUES (1) ON CONFLICT DO NOTHING");
	ok(s->insert.on_conflict && !s->insert.on_conflict_update, "ON CONFLICT DO NOTHING");

	s = A("UPDATE users SET name = 'x' WHERE id = 5");
	is_str(keys(s, 0), "{(5)}", "UPDATE by key");
	ok(!s->tables[0].key_assigned, "UPDATE not touching the key");
	s = A("UPDATE users SET id = 6, name = 'x' WHERE id = 5");
	ok(s->tables[0].key_assigned, "UPDATE changing the key");
	is_str(val(&s->tables[0].key_new[0]), "6", "new key value");
	s = A("UPDATE users u SET (name, id) = ('x', $1) WHERE u.id = $2");
	is_str(val(&s->tables[0].key_new[0]), "$1", "multi-assignment new key parameter");
	is_str(keys(s, 0), "{($2)}", "UPDATE by key parameter");
	s = A("UPDATE events SET id = 9 WHERE tenant = 'a' AND id = 1");
	is_str(val(&s->tables[0].key_new[1]), "9", "composite key: second column assigned");
	is_str(val(&s->tables[0].key_new[0]), "-", "composite key: first column not assigned");
	s = A("UPDATE users SET name = 'x'");
	is_int(s->route, SP_ROUTE_UNPINNED, "UPDATE without WHERE");
	s = A("DELETE FROM users WHERE id = $1 RETURNING *");
	is_str(keys(s, 0), "{($1)}", "DELETE by key");
	ok(s->has_returning, "DELETE RETURNING");
	s = A("DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.id = 4");
	is_str(keys(s, 0), "{(4)}", "DELETE USING pinned through a join");
	s = A("MERGE INTO users t USING orders s ON t.id = s.user_id AND t.id = 3 WHEN MATCHED "
	      "THEN UPDATE SET name = 'x'");
	is_str(keys(s, 0), "{(3)}", "MERGE target pinned by its join condition");
	is_str(keys(s, 1), "{(3)}", "MERGE source pinned through the key equality");
	s = A("MERGE INTO users t USING orders s ON t.id = s.user_id AND t.id = 3 WHEN NOT MATCHED "
	      "THEN INSERT (id) VALUES (s.user_id)");
	is_str(keys(s, 0), "ALL", "MERGE with an INSERT action is not pinned");
	s = A("MERGE INTO users t USING orders s ON t.id = s.user_id WHEN MATCHED THEN UPDATE SET "
	      "id = 5");
	is_str(val(&s->tables[0].key_new[0]), "5", "MERGE UPDATE SET key");
}

static void test_shape(void)
{
	const sp_stmt_t *s;
	const sp_shape_t *h;

	s = A("SELECT status, count(*), sum(amount) AS total, avg(x), min(y), max(z), "
	      "count(DISTINCT w) "
	      "FROM orders GROUP BY status ORDER BY total DESC, 1 LIMIT 10 OFFSET $1");
	h = &s->shape;
	ok(h->valid, "shape valid");
	is_int(h->n_cols, 7, "seven output columns");
	is_int(h->cols[0].kind, SP_COL_PLAIN, "plain column");
	is_str(h->cols[0].name, "status", "plain column name");
	is_int(h->cols[1].kind, SP_COL_AGG, "count(*) is an aggregate");
	is_int(h->cols[1].agg, SP_AGG_COUNT, "count");
	ok(h->cols[1].agg_star, "count(*) star");
	is_str(h->cols[1].arg_text, "*", "count(*) argument text");
	is_int(h->cols[2].agg, SP_AGG_SUM, "sum");
	is_str(h->cols[2].name, "total", "alias is the name");
	is_str(h->cols[2].arg_text, "amount", "sum argument");
	is_int(h->cols[3].agg, SP_AGG_AVG, "avg");
	is_int(h->cols[4].agg, SP_AGG_MIN, "min");
	is_int(h->cols[5].agg, SP_AGG_MAX, "max");
	ok(h->cols[6].agg_distinct, "count(DISTINCT w)");
	is_str(h->cols[6].arg_text, "w", "DISTINCT stripped from the argument");
	ok(h->has_agg && h->has_group_by, "aggregates and GROUP BY");
	is_int(h->n_group, 1, "one GROUP BY item");
	is_int(h->group_target[0], 1, "GROUP BY status is output column 1");
	ok(h->group_all_in_target, "all GROUP BY items in the target list");
	is_int(h->n_sort, 2, "two ORDER BY items");
	is_int(h->sort[0].target, 3, "ORDER BY alias -> column 3");
	ok(h->sort[0].desc && h->sort[0].nulls_first, "DESC (NULLS FIRST by default)");
	is_int(h->sort[1].target, 1, "ORDER BY 1");
	ok(!h->sort[1].desc && !h->sort[1].nulls_first, "ASC NULLS LAST by default");
	is_str(val(&h->limit), "10", "LIMIT const");
	is_str(val(&h->offset), "$1", "OFFSET param");
	is_int(s->route, SP_ROUTE_UNPINNED, "fan-out query");

	h = &A("SELECT a, b FROM t GROUP BY b, a, c ORDER BY c, a DESC NULLS LAST, b ASC NULLS "
	       "FIRST")
		 ->shape;
	is_int(h->group_target[0], 2, "GROUP BY b -> 2");
	is_int(h->group_target[2], 0, "GROUP BY c not in the target list");
	ok(!h->group_all_in_target, "group_all_in_target false");
	is_int(h->sort[0].target, 0, "ORDER BY c not in the target list");
	ok(!h->sort_all_in_target, "sort_all_in_target false");
	ok(h->sort[1].desc && !h->sort[1].nulls_first, "DESC NULLS LAST");
	ok(!h->sort[2].desc && h->sort[2].nulls_first, "ASC NULLS FIRST");
	ok(h->limit.kind == SP_VAL_NONE && h->offset.kind == SP_VAL_NONE, "no LIMIT / OFFSET");

	h = &A("SELECT x.a + 1, lower(name) AS ln FROM t x ORDER BY x.a + 1, lower(name)")->shape;
	is_int(h->sort[0].target, 1, "ORDER BY expression matched structurally");
	is_int(h->sort[1].target, 2, "ORDER BY function call matched structurally");
	is_str(h->cols[0].name, "?column?", "expression name");
	h = &A("SELECT a AS b, b AS a FROM t ORDER BY a")->shape;
	is_int(h->sort[0].target, 2, "ORDER BY prefers output names (like PostgreSQL)");
	h = &A("SELECT DISTINCT a FROM t")->shape;
	ok(h->distinct && !h->n_distinct_on, "DISTINCT");
	h = &A("SELECT DISTINCT ON (b) a, b FROM t ORDER BY b, a DESC")->shape;
	ok(!h->distinct, "DISTINCT ON is not plain DISTINCT");
	is_int(h->n_distinct_on, 1, "DISTINCT ON one item");
	is_int(h->distinct_on[0].target, 2, "DISTINCT ON (b) -> column 2");
	h = &A("SELECT a, row_number() OVER (PARTITION BY a ORDER BY b) FROM t")->shape;
	ok(h->has_window, "window function");
	is_int(h->cols[1].kind, SP_COL_WINDOW, "window column");
	ok(!h->has_agg, "a window function is not an aggregate");
	h = &A("SELECT sum(x) OVER () FROM t")->shape;
	is_int(h->cols[0].kind, SP_COL_WINDOW, "aggregate used as window function");
	h = &A("SELECT sum(x) / count(*) AS r, string_agg(y, ',' ORDER BY y), count(*) FILTER "
	       "(WHERE z), "
	       "percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t HAVING count(*) > 1")
		 ->shape;
	is_int(h->cols[0].kind, SP_COL_AGG_EXPR, "expression over aggregates");
	is_int(h->cols[1].agg, SP_AGG_OTHER, "string_agg is other");
	is_int(h->cols[2].agg, SP_AGG_OTHER, "count with FILTER is other");
	ok(h->cols[2].agg_filter, "FILTER flag");
	is_int(h->cols[3].kind, SP_COL_AGG, "ordered-set aggregate");
	is_int(h->cols[3].agg, SP_AGG_OTHER, "WITHIN GROUP is other");
	ok(h->has_having && h->has_agg, "HAVING");
	ok(!h->has_group_by, "no GROUP BY");
	h = &A("SELECT a, count(*) FROM t GROUP BY ROLLUP (a)")->shape;
	ok(h->grouping_sets, "ROLLUP is grouping sets");
	is_int(h->group_target[0], 0, "grouping set has no single position");
	h = &A("SELECT pg_catalog.count(*), COUNT ( /* c */ DISTINCT  \"X\" ) FROM t")->shape;
	is_int(h->cols[0].agg, SP_AGG_COUNT, "schema-qualified aggregate");
	is_str(h->cols[1].arg_text, "\"X\"", "argument text after comment and DISTINCT");
	h = &A("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1 LIMIT 5")->shape;
	is_int(h->setop, SP_SETOP_UNION, "UNION");
	ok(!h->setop_all, "UNION without ALL");
	is_int(h->sort[0].target, 1, "set operation ORDER BY");
	is_str(val(&h->limit), "5", "set operation LIMIT");
	h = &A("SELECT 1 INTERSECT ALL SELECT 2")->shape;
	ok(h->setop == SP_SETOP_INTERSECT && h->setop_all, "INTERSECT ALL");
	is_int(A("SELECT 1 EXCEPT SELECT 2")->shape.setop, SP_SETOP_EXCEPT, "EXCEPT");
	h = &A("SELECT * FROM t ORDER BY a")->shape;
	ok(h->has_star, "SELECT *");
	is_int(h->cols[0].kind, SP_COL_STAR, "star column");
	is_int(h->sort[0].target, 0, "ORDER BY with * cannot be mapped");
	h = &A("SELECT t.*, 1 FROM t ORDER BY 2")->shape;
	ok(h->has_star && h->sort[0].target == 0, "t.* makes ordinal positions unknowable");
	h = &A("VALUES (1, 2), (3, 4)")->shape;
	ok(h->values, "VALUES shape");
	is_int(h->n_cols, 2, "VALUES width");
	is_str(h->cols[1].name, "column2", "VALUES column name");
	h = &A("SELECT a FROM t ORDER BY a FETCH FIRST 3 ROWS WITH TIES")->shape;
	ok(h->limit_with_ties, "WITH TIES");
	is_str(val(&h->limit), "3", "FETCH FIRST count");
	h = &A("SELECT a FROM t LIMIT ALL OFFSET 0")->shape;
	ok(h->limit.kind == SP_VAL_NONE, "LIMIT ALL is no limit");
	is_str(val(&h->offset), "0", "OFFSET 0");
	ok(A("SELECT * FROM t FOR UPDATE")->shape.locking, "shape locking flag");
	h = &A("SELECT coalesce(a, 1), CASE WHEN true THEN 1 END, b::text, (SELECT max(z) FROM u) "
	       "FROM t")
		 ->shape;
	is_str(h->cols[0].name, "coalesce", "coalesce name");
	is_str(h->cols[1].name, "case", "case name");
	is_str(h->cols[2].name, "b", "cast keeps the column name");
	is_str(h->cols[3].name, "max", "scalar subquery name");
	is_int(h->cols[3].kind, SP_COL_PLAIN, "aggregate inside a subquery does not count");
	ok(!h->has_agg, "no aggregate at this level");
	ok(!A("INSERT INTO t VALUES (1)")->shape.valid, "no shape for INSERT");
}

static void test_hints(void)
{
	sp_hints_t h;
	const sp_stmt_t *s;

	sp_analyze_hints("/* shard: 2 */ SELECT 1", &h);
	is_int(h.shard, 2, "shard hint");
	ok(!h.has_shard_key && h.role == SP_ROLE_HINT_NONE && !h.error, "only shard");
	sp_analyze_hints("/* shard_key: 42 */ SELECT 1", &h);
	ok(h.has_shard_key, "shard_key hint");
	is_str(h.shard_key, "42", "shard_key value");
	is_int(h.shard, -1, "no shard");
	sp_analyze_hints("/* role: primary */ SELECT 1", &h);
	is_int(h.role, SP_ROLE_HINT_PRIMARY, "role primary");
	sp_analyze_hints("/*role=REPLICA*/SELECT 1", &h);
	is_int(h.role, SP_ROLE_HINT_REPLICA, "role replica, '=' and upper case");
	sp_analyze_hints("/* shard: 1, role: replica, shard_key: 'a''b,c' */ SELECT 1", &h);
	ok(h.shard == 1 && h.role == SP_ROLE_HINT_REPLICA, "several hints in one comment");
	is_str(h.shard_key, "a'b,c", "quoted shard_key with quote and comma");
	sp_analyze_hints("-- shard: 3\n  -- role: primary\nSELECT 1", &h);
	ok(h.shard == 3 && h.role == SP_ROLE_HINT_PRIMARY, "-- comments");
	sp_analyze_hints("/* app: web, controller: x */ /* shard: 4 */ SELECT 1", &h);
	is_int(h.shard, 4, "unknown keys ignored, later comment read");
	ok(!h.error, "unknown keys are not errors");
	sp_analyze_hints("/* just a note */ SELECT 1", &h);
	ok(h.shard == -1 && !h.error, "plain comment");
	sp_analyze_hints("/* shard: x */ SELECT 1", &h);
	ok(h.shard == -1 && h.error, "bad shard number is an error");
	sp_analyze_hints("/* role: leader */ SELECT 1", &h);
	ok(h.role == SP_ROLE_HINT_NONE && h.error, "bad role is an error");
	sp_analyze_hints("SELECT 1 /* shard: 5 */", &h);
	is_int(h.shard, -1, "comment after the first token is not a hint");
	sp_analyze_hints("/* outer /* shard: 6 */ still outer */ SELECT 1", &h);
	is_int(h.shard, -1, "a nested comment is part of the outer comment's text");
	sp_analyze_hints("/* shard: 7 */ /* unterminated", &h);
	is_int(h.shard, 7, "unterminated comment after a hint");
	sp_analyze_hints("/*+ shard: 8 */ SELECT 1", &h);
	is_int(h.shard, 8, "pg_hint_plan-style /*+");
	sp_analyze_hints(NULL, &h);
	is_int(h.shard, -1, "NULL input");

	s = A("/* shard: 2, role: replica */ SELECT 1; /* shard_key: 9 */ SELECT 2; SELECT 3");
	is_int(cur->hints.shard, 2, "analysis: leading hints");
	is_int(s->hints.shard, 2, "first statement's hints");
	ok(cur->stmts[1].hints.has_shard_key && !strcmp(cur->stmts[1].hints.shard_key, "9"),
	   "second statement's own hint");
	is_int(cur->stmts[1].hints.shard, -1, "hints do not leak between statements");
	ok(!cur->stmts[2].hints.has_shard_key, "third statement has none");
}

static void test_multi(void)
{
	const sp_stmt_t *s;

	s = A("SELECT 1; /* c */ INSERT INTO users (id) VALUES (3);\nBEGIN");
	is_int(cur->n_stmts, 3, "three statements");
	is_int(s->offset, 0, "first span offset");
	is_int(s->length, 8, "first span length");
	is_int(cur->stmts[1].offset, 9, "second span starts after ';'");
	is_int(cur->stmts[1].length, 42, "second span length (with leading comment)");
	is_int(cur->stmts[1].kind, SP_STMT_INSERT, "second kind");
	is_str(keys(&cur->stmts[1], 0), "{(3)}", "second statement keys");
	is_int(cur->stmts[0].n_tables, 0, "tables are per statement");
	is_int(cur->stmts[2].kind, SP_STMT_TXN, "third kind");
	is_int(cur->stmts[2].offset + cur->stmts[2].length, 58,
	       "last span ends at the input's end");
	A("SELECT ';'; SELECT $$;$$");
	is_int(cur->n_stmts, 2, "semicolons in strings do not split");
	A("");
	ok(cur && cur->n_stmts == 0 && !cur->has_error, "empty input");
	A("  ; ; -- nothing\n");
	ok(cur->n_stmts == 0 && !cur->has_error, "only semicolons and comments");
}

static void test_errors(void)
{
	const sp_stmt_t *s;

	s = A("SELEC 1");
	ok(cur->has_error, "parse error flagged");
	is_int(s->kind, SP_STMT_ERROR, "error kind");
	is_str(s->error, "syntax error at or near \"SELEC\"", "parser message");
	is_int(s->error_pos, 0, "error position");
	ok(s->is_write, "unparsed statement goes to the primary");
	ok(s->node == NULL, "no node");
	s = A("SELECT 1; SELEC 2; SELECT * FROM users WHERE id = 3");
	is_int(cur->n_stmts, 3, "statements around an error are still analysed");
	is_int(cur->stmts[0].kind, SP_STMT_SELECT, "before the error");
	is_int(cur->stmts[1].kind, SP_STMT_ERROR, "the error");
	is_int(cur->stmts[1].error_pos, 10, "error position in the whole input");
	is_int(cur->stmts[1].offset, 9, "error statement span");
	is_str(keys(&cur->stmts[2], 0), "{(3)}", "after the error");
	is_int(cur->stmts[2].offset, 18, "span offsets relative to the whole input");
	s = A("SELECT 'unterminated");
	ok(cur->has_error && s->kind == SP_STMT_ERROR, "unterminated string");
	is_str(s->error, "unterminated quoted string at or near \"'unterminated\"", "its message");
	s = A("SELECT 1; SELECT 'x");
	ok(cur->has_error && cur->n_stmts == 2, "unterminated string after a good statement");
	s = A("SELECT $$abc");
	ok(cur->has_error, "unterminated dollar quote");
	s = A("SELECT /* never closed");
	ok(cur->has_error, "unterminated comment");
	s = A("SELECT (1");
	ok(cur->has_error, "unbalanced parenthesis");
	s = A("SELECT 'é' FROM nope WHERE");
	ok(cur->has_error, "error after multibyte text");
	is_int(s->error_pos, 27, "error position in bytes, not characters");
}

/* Append printf-style text at q[n], never past cap; returns the new length. */
static size_t put(char *q, size_t cap, size_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static size_t put(char *q, size_t cap, size_t n, const char *fmt, ...)
{
	va_list ap;
	int w;
	if (n >= cap)
		return n;
	va_start(ap, fmt);
	w = vsnprintf(q + n, cap - n, fmt, ap);
	va_end(ap);
	if (w < 0)
		return n;
	return (size_t)w >= cap - n ? cap - 1 : n + (size_t)w;
}

/* "SELECT * FROM users WHERE id = 1 AND (id = 1 AND (... true ...))", depth deep. */
static void nested_ands(char *q, size_t cap, int depth)
{
	size_t n = put(q, cap, 0, "SELECT * FROM users WHERE ");
	for (int i = 0; i < depth; i++)
		n = put(q, cap, n, "id = 1 AND (");
	n = put(q, cap, n, "true");
	for (int i = 0; i < depth; i++)
		n = put(q, cap, n, ")");
}

static void test_hostile(void)
{
	size_t cap = (size_t)2 << 20;
	char *q = malloc(cap);
	size_t n;
	const sp_stmt_t *s;

	/* 1 MB INSERT */
	n = put(q, cap, 0, "INSERT INTO users (id, name) VALUES ");
	for (int i = 0; n < ((size_t)1 << 20); i++)
		n = put(q, cap, n, "%s(%d, 'name %d')", i ? ", " : "", i, i);
	s = A(q);
	ok(s && s->kind == SP_STMT_INSERT && !cur->has_error, "1 MB INSERT analysed");
	ok(s->insert.n_rows > 40000, "all its rows");
	is_int(s->tables[0].keys.n_tuples, s->insert.n_rows, "one key tuple per row");
	/* 1 MB SELECT with a huge IN list */
	n = put(q, cap, 0, "SELECT * FROM users WHERE id IN (");
	for (int i = 0; n < ((size_t)1 << 20); i++)
		n = put(q, cap, n, "%s%d", i ? "," : "", i);
	n = put(q, cap, n, ")");
	s = A(q);
	ok(s && s->kind == SP_STMT_SELECT, "1 MB IN list analysed");
	is_str(why(s, 0), "too many key values", "too many values: unpinned");
	/* unterminated 1 MB string */
	n = put(q, cap, 0, "SELECT '");
	memset(q + n, 'x', (size_t)1 << 20);
	q[n + ((size_t)1 << 20)] = '\0';
	s = A(q);
	ok(cur->has_error && s->kind == SP_STMT_ERROR, "unterminated 1 MB string");
	/* nested comments: quadratic in PostgreSQL's scanner, refused */
	n = 0;
	for (int i = 0; i < 100000; i++)
		n = put(q, cap, n, "/*");
	for (int i = 0; i < 100000; i++)
		n = put(q, cap, n, "*/");
	n = put(q, cap, n, " SELECT 1");
	s = A(q);
	ok(cur->has_error && s->kind == SP_STMT_ERROR && strstr(s->error, "quadratic"),
	   "100,000 nested comments refused before parsing");
	ok(!sp_analyze_fingerprint(q, NULL), "fingerprint refuses it too");
	ok(!sp_analyze_normalize(q), "normalize refuses it too");
	/* long operator run */
	n = put(q, cap, 0, "SELECT 1 ");
	memset(q + n, '+', 20000);
	n = put(q, cap, n + 20000, " 1");
	ok(A(q)->kind == SP_STMT_ERROR, "20,000 '+' refused");
	/* ordinary banner comments are fine */
	n = 0;
	for (int i = 0; i < 100; i++)
		n = put(q, cap, n, "/****************************************************/\n");
	n = put(q, cap, n, "SELECT 1");
	ok(A(q)->kind == SP_STMT_SELECT, "banner comments are not refused");
	/* deep nesting */
	n = put(q, cap, 0, "SELECT ");
	for (int i = 0; i < 100000; i++)
		q[n++] = '(';
	q[n++] = '1';
	for (int i = 0; i < 100000; i++)
		q[n++] = ')';
	q[n] = '\0';
	ok(A(q)->kind == SP_STMT_ERROR, "100,000 parentheses: error, no crash");
	nested_ands(q, cap, 5000);
	s = A(q);
	ok(s->kind == SP_STMT_ERROR, "5,000 nested ANDs: refused, no crash");
	nested_ands(q, cap, 200);
	s = A(q);
	is_str(keys(s, 0), "{(1)}", "200 nested ANDs analysed");
	n = 0;
	for (int i = 0; i < 3000; i++)
		n = put(q, cap, n, "SELECT * FROM (");
	n = put(q, cap, n, "SELECT 1");
	for (int i = 0; i < 3000; i++)
		n = put(q, cap, n, ") s%d", i);
	ok(A(q)->kind == SP_STMT_ERROR, "3,000 nested subqueries: error, no crash");
	/* binary junk */
	for (size_t i = 0; i < 4096; i++)
		q[i] = (char)(1 + (i * 7919) % 255);
	q[4096] = '\0';
	ok(A(q) != NULL || cur != NULL, "binary junk does not crash");
	free(q);
}

static void test_helpers(void)
{
	char kw[32];
	size_t next = 0;

	is_int(sp_analyze_first_keyword("  select 1", kw, sizeof(kw), &next), 6, "keyword length");
	is_str(kw, "SELECT", "keyword upper-cased");
	is_int(next, 8, "offset after the keyword");
	sp_analyze_first_keyword("/* x */ -- y\n (( SET LOCAL a = 1", kw, sizeof(kw), &next);
	is_str(kw, "SET", "after comments and parentheses");
	sp_analyze_first_keyword("/* x */ -- y\n (( SET LOCAL a = 1" + next, kw, sizeof(kw), NULL);
	is_str(kw, "LOCAL", "second keyword via next");
	is_int(sp_analyze_first_keyword("/* /* nested */ */listen x", kw, sizeof(kw), NULL), 6,
	       "nested comment skipped");
	is_str(kw, "LISTEN", "LISTEN");
	is_int(sp_analyze_first_keyword("", kw, sizeof(kw), NULL), 0, "empty input");
	is_str(kw, "", "empty keyword");
	is_int(sp_analyze_first_keyword("'x'", kw, sizeof(kw), NULL), 0, "literal first");
	is_int(sp_analyze_first_keyword("/* open", kw, sizeof(kw), NULL), 0, "only a comment");
	is_int(sp_analyze_first_keyword("PREPARE", kw, 4, NULL), 0, "does not fit");

	uint64_t f1 = 0, f2 = 0, f3 = 0;
	ok(sp_analyze_fingerprint("SELECT * FROM users WHERE id = 1", &f1), "fingerprint");
	ok(sp_analyze_fingerprint("select *  from users /* c */ where id = 42", &f2),
	   "fingerprint 2");
	ok(sp_analyze_fingerprint("SELECT * FROM users WHERE name = 1", &f3), "fingerprint 3");
	ok(f1 == f2, "fingerprint ignores constants, case, whitespace and comments");
	ok(f1 != f3, "fingerprint differs for another column");
	ok(!sp_analyze_fingerprint("SELEC 1", &f1), "fingerprint of a parse error");
	char *norm = sp_analyze_normalize("SELECT * FROM users WHERE id = 42 AND name = 'x'");
	is_str(norm, "SELECT * FROM users WHERE id = $1 AND name = $2", "normalize");
	free(norm);
	ok(sp_analyze_normalize("SELEC 1") == NULL, "normalize of a parse error");

	sp_analysis_t *a = sp_analyze("SELECT nextval('s') FROM users WHERE id = 1", NULL);
	ok(a && a->n_stmts == 1 && a->stmts[0].is_write, "NULL options: built-in function list");
	ok(a && a->stmts[0].route == SP_ROUTE_NO_SHARDED && a->stmts[0].tables[0].conf == NULL,
	   "NULL options: nothing is sharded");
	sp_analysis_free(a);
	a = sp_analyze(NULL, &opts);
	ok(a && a->n_stmts == 0 && !a->has_error, "NULL input is empty");
	sp_analysis_free(a);
	sp_analysis_free(NULL);
}

struct thread_arg {
	int failures;
};

static void *thread_main(void *p)
{
	struct thread_arg *ta = p;
	for (int i = 0; i < 300; i++) {
		sp_analysis_t *a = sp_analyze(
		    "SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 77; "
		    "SET LOCAL search_path TO a, b",
		    &opts);
		if (!a || a->n_stmts != 2 || a->stmts[0].route != SP_ROUTE_PINNED ||
		    strcmp(a->stmts[0].tables[1].keys.values[0].text, "77") != 0 ||
		    strcmp(a->stmts[1].set.value, "'a', 'b'") != 0)
			ta->failures++;
		sp_analysis_free(a);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[4];
	struct thread_arg args[4];
	int failures = 0;

	memset(args, 0, sizeof(args));
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, thread_main, &args[i]);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		failures += args[i].failures;
	}
	is_int(failures, 0, "4 threads x 300 analyses agree");
}

int main(void)
{
	test_kinds();
	test_explain();
	test_txn();
	test_set();
	test_copy();
	test_read_write();
	test_volatile();
	test_tables();
	test_shard_keys();
	test_joins();
	test_dml_keys();
	test_shape();
	test_hints();
	test_multi();
	test_errors();
	test_hostile();
	test_helpers();
	test_threads();
	ok(lookups > 0, "the table lookup was used");
	sp_analysis_free(cur);
	return done_testing();
}
