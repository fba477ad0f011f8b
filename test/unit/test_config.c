/*
 * test_config.c - the config loader: fixtures in test/data/config (good and
 * bad files, each bad one checked for its line number and message), value
 * syntax through small temporary files, SHOW CONFIG helpers, RELOAD copying,
 * the generated reference and the shipped etc/shardpool.ini.
 */
#include "config.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char datadir[4096];
static char srcdir[2048];

static void find_dirs(void)
{
	const char *env = getenv("SP_SRCDIR");
	const char *tries[] = {".", ".."};
	char probe[4200];

	if (env && *env) {
		snprintf(srcdir, sizeof(srcdir), "%s", env);
	} else {
		snprintf(srcdir, sizeof(srcdir), ".");
		for (size_t i = 0; i < 2; i++) {
			snprintf(probe, sizeof(probe), "%s/test/data/config/good_minimal.ini",
				 tries[i]);
			if (access(probe, R_OK) == 0) {
				snprintf(srcdir, sizeof(srcdir), "%s", tries[i]);
				break;
			}
		}
	}
	snprintf(datadir, sizeof(datadir), "%s/test/data/config", srcdir);
}

static const char *fixture(const char *name)
{
	static char bufs[4][4400];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", datadir, name);
	return b;
}

static char tmp_path[64];

/* Writes text to a temporary file and loads it. */
static sp_config_t *load_text(const char *text, char *err, size_t errlen)
{
	sp_config_t *cfg;
	int fd;
	FILE *f;

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/sp_test_config_XXXXXX");
	fd = mkstemp(tmp_path);
	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	cfg = sp_config_load(tmp_path, err, errlen);
	unlink(tmp_path);
	return cfg;
}

/* A valid file with extra [shardpool] lines. */
static sp_config_t *load_global(const char *lines, char *err, size_t errlen)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "[shardpool]\nauth_type = trust\n%s\n[database a]\n[shard a.0]\nprimary = "
		 "host=x\n",
		 lines);
	return load_text(text, err, errlen);
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- bad files: each names its line and says what was expected ---- */

static const struct bad_case {
	const char *file;
	int line; /* 0: a whole-file problem, "FILE: message" */
	const char *msg;
	const char *msg2;
} bad_cases[] = {
    {"bad_unknown_section.ini", 5, "unknown section [databse app]", "[database NAME]"},
    {"bad_unknown_key.ini", 3, "unknown key 'listen_prot'", "did you mean 'listen_port'?"},
    {"bad_port.ini", 4, "listen_port: expected an integer from 1 to 65535, got '70000'", NULL},
    {"bad_bool.ini", 4, "log_connections: expected yes or no", "got 'maybe'"},
    {"bad_duration.ini", 4, "server_idle_timeout: expected a duration", "'10 minutes'"},
    {"bad_size.ini", 4, "pkt_buf: expected a size", "'4 parsecs'"},
    {"bad_enum.ini", 4, "pool_mode: expected session, transaction or statement, got 'txn'", NULL},
    {"bad_shard_gap.ini", 10, "[shard app.1] is missing", "0 to 2 without gaps"},
    {"bad_shards_count.ini", 5, "shards = 3, but there are 2 [shard app.N] sections", NULL},
    {"bad_no_primary.ini", 9, "[shard app.1] has no 'primary = CONNINFO'", NULL},
    {"bad_undeclared_db.ini", 9, "database 'other' is not declared",
     "add a [database other] section"},
    {"bad_dup_primary.ini", 8, "[shard app.0] primary: already set at line 7", "replica = ..."},
    {"bad_table_nokey.ini", 9, "[table app.users] needs 'key = COLUMN'", "replicated = yes"},
    {"bad_table_replicated_key.ini", 11, "a replicated table has no shard key", NULL},
    {"bad_types_count.ini", 11, "2 types for 3 key columns", NULL},
    {"bad_key_type.ini", 11, "unsupported key type 'numeric'", "smallint, integer"},
    {"bad_auth_file.ini", 3, "auth_type = md5 needs auth_file = PATH", "auth_type = trust"},
    {"bad_auth_default.ini", 0, "auth_type = md5 (the default) needs auth_file", NULL},
    {"bad_conninfo_key.ini", 7, "primary: sslmode=require cannot be honoured",
     "use sslmode=disable or prefer"},
    {"bad_conninfo_port.ini", 8, "replica: port: expected a port number from 1 to 65535",
     "'99999'"},
    {"bad_range_overlap.ini", 13, "range 100.. overlaps range ..150 of shard 0 (line 9)", NULL},
    {"bad_range_gap.ini", 13, "range 200..300 leaves a gap", "values from 100 to 200"},
    {"bad_range_missing.ini", 11, "[shard app.1] needs 'range = LO..HI'", NULL},
    {"bad_range_empty.ini", 9, "range 100..50 is empty", NULL},
    {"bad_range_mixed.ini", 13, "mix integers ('100', line 9) and text ('m', line 13)", NULL},
    {"bad_range_on_hash.ini", 8, "range: needs 'sharding = range' in [database app]", NULL},
    {"bad_list_dup.ini", 15, "list: value 'de' already belongs to shard 0 (line 9)", NULL},
    {"bad_list_missing.ini", 11, "[shard app.1] needs at least one 'list = VALUE'", NULL},
    {"bad_list_keytype.ini", 11, "the key column is bigint, but the list values", "are text"},
    {"bad_syntax.ini", 4, "expected 'key = value'", "'listen_port'"},
    {"bad_outside.ini", 1, "'listen_port' is outside any section", NULL},
    {"bad_dup_section.ini", 9, "[database app] already appears at line 4", NULL},
    {"bad_unterminated_section.ini", 4, "missing ']'", NULL},
    {"bad_default_shard.ini", 5, "default_shard = 2, but the shards are 0 to 1", NULL},
    {"bad_no_database.ini", 0, "no [database NAME] section", NULL},
    {"bad_no_shards.ini", 4, "[database app] has no [shard app.0] section", NULL},
    {"bad_wrong_section_key.ini", 8, "'pool_size' belongs in a [database NAME] section",
     "not in [shard app.0]"},
    {"bad_long_line.ini", 3,
     "line too long (max 199 characters); split the value or repeat the key", NULL},
};

static void test_bad_files(void)
{
	char err[1024], prefix[4600];

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		const char *path = fixture(c->file);
		sp_config_t *cfg = sp_config_load(path, err, sizeof(err));

		ok(cfg == NULL, "%s is rejected", c->file);
		sp_config_free(cfg);
		if (c->line)
			snprintf(prefix, sizeof(prefix), "%s:%d: ", path, c->line);
		else
			snprintf(prefix, sizeof(prefix), "%s: ", path);
		if (!ok(starts_with(err, prefix), "%s: error names line %d", c->file, c->line))
			printf("#   got '%s'\n#   expected prefix '%s'\n", err, prefix);
		if (!ok(strstr(err, c->msg) != NULL, "%s: message says '%s'", c->file, c->msg))
			printf("#   got '%s'\n", err);
		if (c->msg2 &&
		    !ok(strstr(err, c->msg2) != NULL, "%s: message says '%s'", c->file, c->msg2))
			printf("#   got '%s'\n", err);
	}

	ok(sp_config_load(fixture("no_such_file.ini"), err, sizeof(err)) == NULL,
	   "a missing file is an error");
	ok(strstr(err, "no_such_file.ini: cannot open: No such file") != NULL,
	   "missing file message: %s", err);
	ok(sp_config_load(fixture("bad_port.ini"), NULL, 0) == NULL,
	   "errors without an error buffer do not crash");
}

/* ---- good files ---- */

static void test_defaults(void)
{
	char err[1024] = "";
	sp_config_t *cfg = sp_config_load(fixture("good_minimal.ini"), err, sizeof(err));
	const sp_db_conf_t *db;

	if (!ok(cfg != NULL, "good_minimal.ini loads")) {
		printf("#   %s\n", err);
		return;
	}
	is_str(cfg->listen_addr, "127.0.0.1", "default listen_addr");
	is_int(cfg->listen_port, 6432, "default listen_port");
	is_str(cfg->unix_socket_dir, "/tmp", "default unix_socket_dir");
	is_int(cfg->workers, 1, "default workers");
	is_int(cfg->pool_mode, SP_POOL_TRANSACTION, "default pool_mode");
	is_int(cfg->default_pool_size, 20, "default default_pool_size");
	is_int(cfg->min_pool_size, 0, "default min_pool_size");
	is_int(cfg->reserve_pool_size, 0, "default reserve_pool_size");
	ok(cfg->reserve_pool_timeout == 5.0, "default reserve_pool_timeout");
	is_int(cfg->max_client_conn, 100, "default max_client_conn");
	is_int(cfg->max_db_connections, 0, "default max_db_connections");
	is_int(cfg->auth_type, SP_AUTH_TRUST, "auth_type from the file");
	is_str(cfg->auth_file, "", "default auth_file is empty, not NULL");
	is_str(cfg->admin_users, "", "default admin_users");
	is_str(cfg->stats_users, "", "default stats_users");
	is_str(cfg->server_reset_query, "DISCARD ALL", "default server_reset_query");
	ok(!cfg->server_reset_query_always, "default server_reset_query_always");
	ok(cfg->server_connect_timeout == 15.0, "default server_connect_timeout");
	ok(cfg->server_login_retry == 15.0, "default server_login_retry");
	ok(cfg->server_idle_timeout == 600.0, "default server_idle_timeout");
	ok(cfg->server_lifetime == 3600.0, "default server_lifetime");
	ok(cfg->query_wait_timeout == 120.0, "default query_wait_timeout");
	ok(cfg->client_idle_timeout == 0.0, "default client_idle_timeout");
	ok(cfg->client_login_timeout == 60.0, "default client_login_timeout");
	ok(cfg->idle_transaction_timeout == 0.0, "default idle_transaction_timeout");
	ok(cfg->shutdown_timeout == 30.0, "default shutdown_timeout");
	is_int(cfg->max_prepared_statements, 200, "default max_prepared_statements");
	is_int(cfg->pkt_buf, 4096, "default pkt_buf");
	is_int(cfg->max_packet_size, 1073741823, "default max_packet_size");
	is_int(cfg->max_route_query_size, 1048576, "default max_route_query_size 1MB");
	is_str(cfg->log_file, "", "default log_file");
	is_str(cfg->pid_file, "", "default pid_file");
	is_int(cfg->log_level, 2, "default log_level is info");
	ok(cfg->log_connections, "default log_connections");
	ok(cfg->log_disconnections, "default log_disconnections");
	ok(cfg->health_check_period == 1.0, "default health_check_period");
	ok(cfg->health_check_timeout == 2.0, "default health_check_timeout");
	is_int(cfg->max_replica_lag, 16 * 1024 * 1024, "default max_replica_lag");
	is_int(cfg->max_replica_lag_ms, 0, "default max_replica_lag_ms");
	ok(cfg->read_your_writes, "default read_your_writes");
	is_int(cfg->causal_wait_ms, 0, "default causal_wait_ms");

	is_int(cfg->n_dbs, 1, "one database");
	db = sp_config_find_db(cfg, "app");
	ok(db != NULL, "find_db app");
	ok(sp_config_find_db(cfg, "nope") == NULL, "find_db unknown");
	if (db) {
		is_int(db->pool_size, -1, "db pool_size inherits");
		is_int(db->pool_mode, -1, "db pool_mode inherits");
		is_int(db->min_pool_size, -1, "db min_pool_size inherits");
		is_int(db->max_db_connections, -1, "db max_db_connections inherits");
		is_int(db->shards_declared, -1, "shards not declared");
		is_int(db->sharding, SP_SHARDING_HASH, "default sharding");
		is_int(db->default_shard, 0, "default default_shard");
		ok(db->read_replicas, "default read_replicas");
		is_int(db->primary_reads, SP_PRIMARY_READS_FALLBACK, "default primary_reads");
		is_int(db->n_shards, 1, "one shard");
		is_int(db->n_bounds, 0, "no bounds for hash sharding");
		is_int(db->n_tables, 0, "no tables");
		is_int(sp_config_db_pool_size(cfg, db), 20, "effective pool size is global");
		is_int(sp_config_db_pool_mode(cfg, db), SP_POOL_TRANSACTION,
		       "effective pool mode is global");
		ok(db->shards[0].has_primary, "shard 0 has a primary");
		is_str(db->shards[0].primary.host, "127.0.0.1", "primary host");
		is_int(db->shards[0].primary.port, 5432, "primary default port");
		ok(db->shards[0].primary.dbname == NULL, "primary dbname defaults to NULL");
		ok(db->shards[0].primary.user == NULL, "primary user defaults to NULL");
		ok(db->shards[0].primary.password == NULL, "primary password defaults to NULL");
		is_int(db->shards[0].primary.weight, 1, "default weight");
		is_int(db->shards[0].primary.line, 8, "primary line recorded");
		is_int(db->shards[0].n_replicas, 0, "no replicas");
	}

	/* every [shardpool] key shows its documented default in SHOW CONFIG */
	{
		sp_config_item_t it;
		char buf[256];
		int n_global = 0, bad = 0;

		for (int i = 0; sp_config_key_at(i, &it); i++) {
			if (strcmp(it.section, "shardpool") != 0)
				continue;
			n_global++;
			if (strcmp(it.name, "auth_type") == 0)
				continue; /* the fixture sets it */
			if (!sp_config_value_str(cfg, it.name, buf, sizeof(buf)) ||
			    strcmp(buf, it.def) != 0) {
				printf("#   %s: value '%s', documented default '%s'\n", it.name,
				       buf, it.def);
				bad++;
			}
		}
		is_int(n_global, 49, "[shardpool] keys in the table");
		is_int(bad, 0, "value_str of every default equals the documented default");
	}
	sp_config_free(cfg);
}

static void test_full(void)
{
	char err[1024] = "", buf[256], want[4400];
	sp_config_t *cfg = sp_config_load(fixture("good_full.ini"), err, sizeof(err));
	const sp_db_conf_t *db, *legacy;

	if (!ok(cfg != NULL, "good_full.ini loads")) {
		printf("#   %s\n", err);
		return;
	}
	is_str(cfg->listen_addr, "*", "listen_addr");
	is_int(cfg->listen_port, 7432, "listen_port with a ';' comment");
	is_str(cfg->unix_socket_dir, "", "unix_socket_dir empty, '#' comment stripped");
	is_int(cfg->workers, 1, "workers");
	is_int(cfg->pool_mode, SP_POOL_TRANSACTION, "pool_mode");
	is_int(cfg->default_pool_size, 30, "default_pool_size");
	is_int(cfg->min_pool_size, 2, "min_pool_size");
	is_int(cfg->reserve_pool_size, 5, "reserve_pool_size");
	ok(fabs(cfg->reserve_pool_timeout - 1.5) < 1e-9, "reserve_pool_timeout 1500ms");
	is_int(cfg->max_client_conn, 5000, "max_client_conn");
	is_int(cfg->max_db_connections, 90, "max_db_connections");
	is_int(cfg->auth_type, SP_AUTH_SCRAM, "auth_type scram");
	snprintf(want, sizeof(want), "%s/userlist.txt", datadir);
	is_str(cfg->auth_file, want, "relative auth_file resolved against the config dir");
	ok(access(cfg->auth_file, R_OK) == 0, "resolved auth_file exists");
	is_str(cfg->admin_users, "admin, root", "admin_users");
	is_str(cfg->stats_users, "stats", "stats_users");
	is_str(cfg->server_reset_query, "DISCARD ALL; SELECT 1",
	       "';' without a space before it is not a comment");
	ok(cfg->server_reset_query_always, "server_reset_query_always on");
	ok(cfg->server_connect_timeout == 3.0, "plain number is seconds");
	ok(fabs(cfg->server_login_retry - 0.5) < 1e-9, "500ms");
	ok(cfg->server_idle_timeout == 300.0, "5min");
	ok(cfg->server_lifetime == 7200.0, "2h");
	ok(cfg->query_wait_timeout == 0.0, "0");
	ok(cfg->client_idle_timeout == 3600.0, "1h");
	ok(cfg->client_login_timeout == 10.0, "10s");
	ok(cfg->idle_transaction_timeout == 30.0, "30s");
	ok(fabs(cfg->shutdown_timeout - 0.5) < 1e-9, "0.5s");
	is_int(cfg->max_prepared_statements, 0, "max_prepared_statements");
	is_int(cfg->pkt_buf, 8192, "pkt_buf 8kB");
	is_int(cfg->max_packet_size, 1048576, "max_packet_size 1MB");
	snprintf(want, sizeof(want), "%s/log/shardpool.log", datadir);
	is_str(cfg->log_file, want, "relative log_file resolved");
	is_str(cfg->pid_file, "/run/shardpool.pid", "absolute pid_file kept");
	is_int(cfg->log_level, 3, "log_level debug");
	ok(!cfg->log_connections, "log_connections no");
	ok(!cfg->log_disconnections, "log_disconnections false");
	ok(fabs(cfg->health_check_period - 0.25) < 1e-9, "health_check_period 250ms");
	ok(cfg->health_check_timeout == 1.0, "health_check_timeout");
	ok(cfg->max_replica_lag == 1073741824LL, "max_replica_lag 1GB");
	is_int(cfg->max_replica_lag_ms, 1500, "max_replica_lag_ms plain number is ms");
	ok(!cfg->read_your_writes, "read_your_writes 0");
	is_int(cfg->causal_wait_ms, 2000, "causal_wait_ms 2s");

	is_str(sp_config_value_str(cfg, "listen_port", buf, sizeof(buf)), "7432", "show port");
	is_str(sp_config_value_str(cfg, "reserve_pool_timeout", buf, sizeof(buf)), "1500ms",
	       "show ms");
	is_str(sp_config_value_str(cfg, "server_idle_timeout", buf, sizeof(buf)), "5min",
	       "show min");
	is_str(sp_config_value_str(cfg, "server_lifetime", buf, sizeof(buf)), "2h", "show h");
	is_str(sp_config_value_str(cfg, "pkt_buf", buf, sizeof(buf)), "8kB", "show kB");
	is_str(sp_config_value_str(cfg, "max_replica_lag", buf, sizeof(buf)), "1GB", "show GB");
	is_str(sp_config_value_str(cfg, "auth_type", buf, sizeof(buf)), "scram-sha-256",
	       "show canonical enum name");
	is_str(sp_config_value_str(cfg, "log_connections", buf, sizeof(buf)), "no", "show bool");
	is_str(sp_config_value_str(cfg, "causal_wait_ms", buf, sizeof(buf)), "2s", "show msec key");
	ok(sp_config_value_str(cfg, "no_such_key", buf, sizeof(buf)) == NULL,
	   "value_str of an unknown key is NULL");
	ok(sp_config_value_str(cfg, "pool_size", buf, sizeof(buf)) == NULL,
	   "value_str only knows [shardpool] keys");

	ok(sp_config_user_in_list(cfg->admin_users, "root"), "root is admin");
	ok(sp_config_user_in_list(cfg->admin_users, "admin"), "admin is admin");
	ok(!sp_config_user_in_list(cfg->admin_users, "roo"), "prefix is not a match");
	ok(!sp_config_user_in_list(cfg->admin_users, "admin, root"), "whole list is no user");
	ok(!sp_config_user_in_list(NULL, "root"), "NULL list");
	ok(!sp_config_user_in_list("", "root"), "empty list");
	ok(sp_config_user_in_list(" a ,b,  c", "c"), "spaces around names");

	is_int(cfg->n_dbs, 2, "two databases");
	db = sp_config_find_db(cfg, "app");
	legacy = sp_config_find_db(cfg, "legacy");
	ok(db && legacy, "both databases found");
	if (!db || !legacy) {
		sp_config_free(cfg);
		return;
	}
	is_int(db->pool_size, 10, "db pool_size");
	is_int(db->pool_mode, SP_POOL_SESSION, "db pool_mode");
	is_int(db->min_pool_size, 1, "db min_pool_size");
	is_int(db->max_db_connections, 40, "db max_db_connections");
	is_int(db->shards_declared, 2, "shards = 2");
	is_int(db->sharding, SP_SHARDING_HASH, "sharding hash");
	is_int(db->default_shard, 1, "default_shard");
	ok(!db->read_replicas, "read_replicas no");
	is_int(db->primary_reads, SP_PRIMARY_READS_YES, "primary_reads yes");
	is_int(sp_config_db_pool_size(cfg, db), 10, "effective pool size override");
	is_int(sp_config_db_pool_mode(cfg, db), SP_POOL_SESSION, "effective pool mode override");
	is_int(sp_config_db_pool_size(cfg, legacy), 30, "legacy inherits pool size");
	is_int(sp_config_db_pool_mode(cfg, legacy), SP_POOL_TRANSACTION,
	       "legacy inherits pool mode");

	is_int(db->n_shards, 2, "two shards");
	{
		const sp_shard_conf_t *s0 = &db->shards[0], *s1 = &db->shards[1];

		is_int(s0->index, 0, "shard 0 index");
		is_str(s0->primary.host, "10.0.0.1", "indented primary host");
		is_int(s0->primary.port, 5433, "primary port");
		is_str(s0->primary.dbname, "app_0", "primary dbname");
		is_str(s0->primary.user, "app", "primary user");
		is_str(s0->primary.password, "s3cr et", "quoted password with a space");
		is_str(s0->primary.conninfo,
		       "host=10.0.0.1 port=5433 dbname=app_0 user=app password='s3cr et'",
		       "conninfo kept as written");
		is_int(s0->n_replicas, 2, "indented lines are two replicas, not a continuation");
		if (s0->n_replicas == 2) {
			is_str(s0->replicas[0].host, "10.0.0.2", "replica 0 host");
			is_int(s0->replicas[0].weight, 3, "replica 0 weight");
			is_int(s0->replicas[0].port, 5433, "replica 0 port");
			is_str(s0->replicas[1].host, "10.0.0.3", "replica 1 host");
			is_int(s0->replicas[1].port, 5432, "replica 1 default port");
			is_int(s0->replicas[1].weight, 0, "replica 1 weight 0");
		}
		is_int(s1->index, 1, "shard 1 index");
		is_str(s1->primary.host, "/var/run/postgresql", "unix socket host");
		is_str(s1->primary.dbname, "app_1", "shard 1 dbname");
		is_int(s1->n_replicas, 0, "shard 1 has no replica");
	}

	is_int(db->n_tables, 4, "four tables");
	if (db->n_tables == 4) {
		const sp_table_conf_t *t = db->tables;

		is_str(t[0].name, "users", "table users");
		ok(t[0].schema == NULL, "no schema: any schema");
		is_int(t[0].n_keys, 1, "users: one key column");
		is_str(t[0].key_cols[0], "id", "users key id");
		is_int(t[0].key_types[0], SP_KEY_BIGINT, "users key bigint");
		ok(!t[0].replicated, "users not replicated");

		is_str(t[1].schema, "public", "orders schema");
		is_str(t[1].name, "orders", "orders name");
		is_int(t[1].n_keys, 2, "orders: composite key");
		is_str(t[1].key_cols[0], "tenant_id", "orders col 0");
		is_str(t[1].key_cols[1], "order_id", "orders col 1");
		is_int(t[1].key_types[0], SP_KEY_BIGINT, "int8 is bigint");
		is_int(t[1].key_types[1], SP_KEY_UUID, "uuid");

		is_int(t[2].n_keys, 3, "events: three key columns");
		is_int(t[2].key_types[0], SP_KEY_TEXT, "one type for all: col 0");
		is_int(t[2].key_types[2], SP_KEY_TEXT, "one type for all: col 2");

		is_str(t[3].name, "countries", "countries");
		ok(t[3].replicated, "countries replicated");
		is_int(t[3].n_keys, 0, "replicated table has no key");
	}
	is_int(legacy->n_shards, 1, "legacy has one shard");
	is_str(legacy->shards[0].primary.host, "db.example.com", "legacy primary");

	/* --check-config summary */
	{
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		sp_config_print_summary(cfg, f);
		fclose(f);
		ok(strstr(text, "*:7432") != NULL, "summary: listen address");
		ok(strstr(text, "pool mode: transaction") != NULL, "summary: pool mode");
		ok(strstr(text, "database app: 2 shards by hash") != NULL, "summary: database");
		ok(strstr(text, "primary  10.0.0.1:5433/app_0") != NULL, "summary: primary");
		ok(strstr(text, "replica  10.0.0.2:5433/app_0") != NULL, "summary: replica");
		ok(strstr(text, "/var/run/postgresql:5432/app_1") != NULL, "summary: socket");
		ok(strstr(text, "table public.orders: key (tenant_id bigint, order_id uuid)") !=
		       NULL,
		   "summary: composite key");
		ok(strstr(text, "table countries: replicated") != NULL, "summary: replicated");
		ok(strstr(text, "database legacy: 1 shard") != NULL, "summary: legacy");
		ok(strstr(text, "s3cr") == NULL, "summary never shows a password");
		ok(strstr(text, "pool session/10") != NULL, "summary: effective pool");
		free(text);
	}
	sp_config_free(cfg);
}

static void test_range_list(void)
{
	char err[1024] = "";
	sp_config_t *cfg = sp_config_load(fixture("good_range.ini"), err, sizeof(err));
	const sp_db_conf_t *db;

	if (ok(cfg != NULL, "good_range.ini loads")) {
		db = sp_config_find_db(cfg, "metrics");
		is_int(db->sharding, SP_SHARDING_RANGE, "range sharding");
		is_int(db->n_shards, 3, "sections out of order make 3 shards");
		is_int(db->n_bounds, 3, "one bound per shard");
		for (int i = 0; i < db->n_bounds; i++)
			is_int(db->bounds[i].shard, i, "bounds[%d].shard", i);
		ok(db->bounds[0].lo == NULL, "shard 0 open below");
		is_str(db->bounds[0].hi, "1000", "shard 0 hi");
		is_str(db->bounds[1].lo, "1000", "shard 1 lo (spaces trimmed)");
		is_str(db->bounds[1].hi, "2000", "shard 1 hi");
		is_str(db->bounds[2].lo, "2000", "shard 2 lo");
		ok(db->bounds[2].hi == NULL, "shard 2 open above");
		is_int(db->bounds[2].line, 10, "bound line");
		is_str(db->shards[2].primary.host, "10.0.1.3", "shard 2 primary");
	} else {
		printf("#   %s\n", err);
	}
	sp_config_free(cfg);

	cfg = sp_config_load(fixture("good_list.ini"), err, sizeof(err));
	if (ok(cfg != NULL, "good_list.ini loads")) {
		db = sp_config_find_db(cfg, "geo");
		is_int(db->sharding, SP_SHARDING_LIST, "list sharding");
		is_int(db->n_bounds, 2, "two bounds");
		is_int(db->bounds[0].n_values, 3, "shard 0: three values");
		is_str(db->bounds[0].values[0], "fr", "value fr");
		is_str(db->bounds[0].values[2], "it", "value it");
		is_int(db->bounds[1].n_values, 2, "shard 1: two values");
		is_str(db->bounds[1].values[1], "ca", "value ca");
		is_int(db->n_tables, 2, "two tables");
	} else {
		printf("#   %s\n", err);
	}
	sp_config_free(cfg);

	/* integer ranges compare as numbers: 9..10 is not empty, 10 == 010 meets */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database d]\nsharding = range\n"
			"[shard d.0]\nprimary = host=a\nrange = -5..010\n"
			"[shard d.1]\nprimary = host=b\nrange = 10..\n",
			err, sizeof(err));
	ok(cfg != NULL, "numeric ranges compare as numbers: %s", cfg ? "" : err);
	sp_config_free(cfg);

	/* text ranges compare bytewise */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database d]\nsharding = range\n"
			"[shard d.0]\nprimary = host=a\nrange = ..m\n"
			"[shard d.1]\nprimary = host=b\nrange = m..\n"
			"[table d.t]\nkey = name\ntype = text\n",
			err, sizeof(err));
	ok(cfg != NULL, "text ranges: %s", cfg ? "" : err);
	sp_config_free(cfg);

	/* two shards both open below overlap */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database d]\nsharding = range\n"
			"[shard d.0]\nprimary = host=a\nrange = ..5\n"
			"[shard d.1]\nprimary = host=b\nrange = ..9\n",
			err, sizeof(err));
	ok(cfg == NULL && strstr(err, ":10: ") && strstr(err, "overlaps"),
	   "two ranges open below overlap: %s", err);
	sp_config_free(cfg);

	/* range sharding needs a single key column */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database d]\nsharding = range\n"
			"[shard d.0]\nprimary = host=a\nrange = ..\n"
			"[table d.t]\nkey = a, b\ntype = int4\n",
			err, sizeof(err));
	ok(cfg == NULL && strstr(err, ":8: ") && strstr(err, "single key column"),
	   "range with a composite key: %s", err);
	sp_config_free(cfg);

	/* list value twice in the same shard */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database d]\nsharding = list\n"
			"[shard d.0]\nprimary = host=a\nlist = 1\nlist = 01\n",
			err, sizeof(err));
	ok(cfg == NULL && strstr(err, ":8: ") && strstr(err, "listed twice"),
	   "list value twice (01 == 1): %s", err);
	sp_config_free(cfg);
}

static void test_values(void)
{
	char err[1024];
	sp_config_t *cfg;
	static const struct {
		const char *text;
		double secs;
	} durations[] = {{"90", 90},	  {"1500ms", 1.5}, {"2min", 120}, {"1h", 3600},
			 {"0.25s", 0.25}, {"3 s", 3},	   {"0", 0},	  {"45sec", 45},
			 {"1.5h", 5400},  {"10MIN", 600}};
	static const char *bad_durations[] = {"-1", "10m", "1d", "abc", "", "5 mins", "1e3", "inf"};
	static const struct {
		const char *text;
		int bytes;
	} sizes[] = {{"8192", 8192},   {"8kB", 8192},	 {"8KB", 8192},	    {"8kb", 8192},
		     {"1MB", 1 << 20}, {"2048 B", 2048}, {"16MB", 16 << 20}};
	static const char *bad_sizes[] = {"512", "-4kB", "4.5kB", "17MB", "4 parsecs", "kB"};
	static const struct {
		const char *text;
		bool val;
	} bools[] = {{"yes", true},  {"no", false},    {"on", true}, {"off", false},
		     {"true", true}, {"FALSE", false}, {"1", true},  {"0", false}};
	static const struct {
		const char *text;
		int level;
	} levels[] = {{"error", 0}, {"warning", 1}, {"warn", 1},  {"info", 2},
		      {"log", 2},   {"notice", 2},  {"debug", 3}, {"trace", 4}};
	char line[512];

	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		snprintf(line, sizeof(line), "server_idle_timeout = %s", durations[i].text);
		cfg = load_global(line, err, sizeof(err));
		ok(cfg && fabs(cfg->server_idle_timeout - durations[i].secs) < 1e-9,
		   "duration '%s' = %g s", durations[i].text, durations[i].secs);
		sp_config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++) {
		snprintf(line, sizeof(line), "server_idle_timeout = %s", bad_durations[i]);
		cfg = load_global(line, err, sizeof(err));
		ok(!cfg && strstr(err, ":3: [shardpool] server_idle_timeout: expected a duration"),
		   "bad duration '%s' rejected at line 3", bad_durations[i]);
		sp_config_free(cfg);
	}
	cfg = load_global("causal_wait_ms = 250\nmax_replica_lag_ms = 1min", err, sizeof(err));
	ok(cfg && cfg->causal_wait_ms == 250 && cfg->max_replica_lag_ms == 60000,
	   "millisecond keys: plain = ms, units work");
	sp_config_free(cfg);
	cfg = load_global("causal_wait_ms = 1000h", err, sizeof(err));
	ok(!cfg && strstr(err, "causal_wait_ms: expected a duration"),
	   "millisecond key overflow rejected");
	sp_config_free(cfg);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(line, sizeof(line), "pkt_buf = %s", sizes[i].text);
		cfg = load_global(line, err, sizeof(err));
		ok(cfg && cfg->pkt_buf == sizes[i].bytes, "size '%s' = %d", sizes[i].text,
		   sizes[i].bytes);
		sp_config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		snprintf(line, sizeof(line), "pkt_buf = %s", bad_sizes[i]);
		cfg = load_global(line, err, sizeof(err));
		ok(!cfg && strstr(err, ":3: [shardpool] pkt_buf: expected a size from 1kB to 16MB"),
		   "bad size '%s' rejected: %s", bad_sizes[i], err);
		sp_config_free(cfg);
	}
	cfg = load_global("max_replica_lag = 8GB", err, sizeof(err));
	ok(cfg && cfg->max_replica_lag == 8LL * 1024 * 1024 * 1024, "64-bit size 8GB");
	sp_config_free(cfg);

	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		snprintf(line, sizeof(line), "read_your_writes = %s", bools[i].text);
		cfg = load_global(line, err, sizeof(err));
		ok(cfg && cfg->read_your_writes == bools[i].val, "bool '%s'", bools[i].text);
		sp_config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(line, sizeof(line), "log_level = %s", levels[i].text);
		cfg = load_global(line, err, sizeof(err));
		ok(cfg && cfg->log_level == levels[i].level, "log_level '%s' = %d", levels[i].text,
		   levels[i].level);
		sp_config_free(cfg);
	}
	cfg = load_global("log_level = verbose", err, sizeof(err));
	ok(!cfg && strstr(err, "expected error, warning, info, debug or trace, got 'verbose'"),
	   "bad log level lists the choices: %s", err);
	sp_config_free(cfg);

	cfg = load_text("[shardpool]\nauth_type = scram-sha-256\nauth_file = /etc/x\n"
			"[database a]\n[shard a.0]\nprimary = host=x\n",
			err, sizeof(err));
	ok(cfg && cfg->auth_type == SP_AUTH_SCRAM, "auth_type scram-sha-256: %s", cfg ? "" : err);
	sp_config_free(cfg);
	cfg = load_global("pool_mode = Statement", err, sizeof(err));
	ok(cfg && cfg->pool_mode == SP_POOL_STATEMENT, "enum names ignore case");
	sp_config_free(cfg);
	cfg = load_global("read_functions = random\nread_functions = myschema.peek\nwrite_functions = audit_log",
			  err, sizeof(err));
	ok(cfg != NULL, "read_functions / write_functions parse: %s", cfg ? "" : err);
	if (cfg) {
		is_str(cfg->read_functions, "random,myschema.peek", "read_functions repeat into a list");
		is_str(cfg->write_functions, "audit_log", "write_functions");
	}
	sp_config_free(cfg);
	cfg = load_global("read_functions = a, b", err, sizeof(err));
	ok(!cfg && strstr(err, "one function name"), "read_functions takes one name per line: %s", err);
	sp_config_free(cfg);
	cfg = load_global("LISTEN_PORT = 7000", err, sizeof(err));
	ok(cfg && cfg->listen_port == 7000, "key names ignore case");
	sp_config_free(cfg);
	cfg = load_global("listen_addr = 10.1.1.1 # trailing comment", err, sizeof(err));
	ok(cfg && strcmp(cfg->listen_addr, "10.1.1.1") == 0, "'#' inline comment");
	sp_config_free(cfg);
	cfg = load_global("listen_addr = 10.0.0.1,10.0.0.2", err, sizeof(err));
	ok(!cfg && strstr(err, ":3: [shardpool] listen_addr: expected one address"),
	   "listen_addr with two addresses rejected: %s", err);
	sp_config_free(cfg);
	cfg = load_global("workers = 0", err, sizeof(err));
	ok(!cfg && strstr(err, "workers: expected an integer from 1 to 1, got '0'"),
	   "workers = 0 rejected");
	sp_config_free(cfg);
	cfg = load_global("listen_port = 6432\nlisten_port = 6433", err, sizeof(err));
	ok(!cfg && strstr(err, ":4: [shardpool] listen_port: already set at line 3"),
	   "key set twice: %s", err);
	sp_config_free(cfg);
	cfg = load_global("min_pool_size = 50", err, sizeof(err));
	ok(!cfg && strstr(err, ":3: [shardpool] min_pool_size = 50 is larger than "
			       "default_pool_size = 20"),
	   "min_pool_size above pool size: %s", err);
	sp_config_free(cfg);
	cfg = load_global("listen_port = 6432\nmetrics_port = 6432", err, sizeof(err));
	ok(!cfg && strstr(err, ":4: [shardpool] metrics_port = 6432 is listen_port too"),
	   "metrics_port = listen_port: %s", err);
	sp_config_free(cfg);
	cfg = load_global("listen_port = 6432\nmetrics_port = 6432\nmetrics_addr = 10.0.0.1", err, sizeof(err));
	ok(cfg != NULL, "metrics_port = listen_port on another address: %s", cfg ? "valid" : err);
	sp_config_free(cfg);

	/* Windows line endings, a BOM, comments of any length */
	{
		char big[401];

		memset(big, 'x', 400);
		big[400] = '\0';
		snprintf(line, sizeof(line), "; %s", big);
		cfg =
		    load_text("\xEF\xBB\xBF[shardpool]\r\nauth_type = trust\r\nlisten_port = 7001 "
			      "\r\n[database a]\r\n[shard a.0]\r\nprimary = host=x\r\n",
			      err, sizeof(err));
		ok(cfg && cfg->listen_port == 7001, "BOM and CRLF: %s", cfg ? "" : err);
		sp_config_free(cfg);
		cfg = load_global(line, err, sizeof(err));
		ok(cfg != NULL, "a 400-character comment line is fine");
		sp_config_free(cfg);
	}

	/* exactly 199 characters fit, 200 do not */
	{
		char text[1024], val[256];
		size_t prefix = strlen("server_reset_query = ");

		memset(val, 'q', sizeof(val));
		val[199 - prefix] = '\0';
		snprintf(text, sizeof(text), "server_reset_query = %s", val);
		is_int(strlen(text), 199, "test line is 199 characters");
		cfg = load_global(text, err, sizeof(err));
		ok(cfg && strlen(cfg->server_reset_query) == 199 - prefix,
		   "a 199-character line is read whole");
		sp_config_free(cfg);
		snprintf(text, sizeof(text), "server_reset_query = %sq", val);
		cfg = load_global(text, err, sizeof(err));
		ok(!cfg && strstr(err, ":3: line too long (max 199 characters)"),
		   "a 200-character line is an error: %s", err);
		sp_config_free(cfg);
		snprintf(text, sizeof(text), "   server_reset_query = %s    ; comment", val);
		cfg = load_global(text, err, sizeof(err));
		ok(cfg != NULL, "indentation and comments do not count");
		sp_config_free(cfg);
	}

	/* conninfo details */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=x port=0\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, ":5: [shard a.0] primary: port: expected a port number"),
	   "port 0 rejected: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=x host=y\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "'host' is given twice"), "host twice rejected: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host='x\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "unterminated quoted value of 'host'"), "unterminated quote");
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host x\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "without '='"), "conninfo without '=': %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=x\nreplica = port=5433 weight=7 password='a\\'b'\n",
			err, sizeof(err));
	ok(cfg && cfg->dbs[0]->shards[0].n_replicas == 1 &&
	       strcmp(cfg->dbs[0]->shards[0].replicas[0].host, "127.0.0.1") == 0 &&
	       cfg->dbs[0]->shards[0].replicas[0].weight == 7 &&
	       strcmp(cfg->dbs[0]->shards[0].replicas[0].password, "a'b") == 0,
	   "replica: default host, weight, escaped quote: %s", cfg ? "" : err);
	sp_config_free(cfg);

	/* libpq keys beyond the ones shardpool needs, and URIs */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=db1 hostaddr=10.1.2.3 port=6000 sslmode=prefer gssencmode=disable "
			"connect_timeout=3 application_name='my app' options='-c statement_timeout=5s' "
			"keepalives=1\n",
			err, sizeof(err));
	{
		const sp_node_conf_t *n = cfg ? &cfg->dbs[0]->shards[0].primary : NULL;
		ok(n && !strcmp(n->host, "10.1.2.3") && n->port == 6000 && n->connect_timeout == 3 &&
		       !strcmp(n->application_name, "my app") &&
		       !strcmp(n->options, "-c statement_timeout=5s"),
		   "hostaddr, connect_timeout, application_name, options; libpq-only keys accepted: %s",
		   cfg ? "" : err);
	}
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=x sslmod=disable\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "unknown connection key 'sslmod'"), "a misspelt key: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=x channel_binding=require\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "channel_binding=require cannot be honoured"),
	   "channel_binding=require refused: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = host=a,b port=5432\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "one server per line"), "several hosts refused: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = postgresql://app:p%40ss%3Aw'd@db.example:6543/my%20db?sslmode=disable"
			"&application_name=x\n"
			"replica = postgres://[::1]:5433\n"
			"replica = postgresql://%2Fvar%2Frun%2Fpostgresql/app\n",
			err, sizeof(err));
	{
		const sp_shard_conf_t *sh = cfg ? &cfg->dbs[0]->shards[0] : NULL;
		ok(sh && !strcmp(sh->primary.user, "app") && !strcmp(sh->primary.password, "p@ss:w'd") &&
		       !strcmp(sh->primary.host, "db.example") && sh->primary.port == 6543 &&
		       !strcmp(sh->primary.dbname, "my db") &&
		       !strcmp(sh->primary.application_name, "x"),
		   "postgresql:// URI with %%-escapes: %s", cfg ? "" : err);
		ok(sh && sh->n_replicas == 2 && !strcmp(sh->replicas[0].host, "::1") &&
		       sh->replicas[0].port == 5433 && !sh->replicas[0].dbname &&
		       !strcmp(sh->replicas[1].host, "/var/run/postgresql") &&
		       !strcmp(sh->replicas[1].dbname, "app"),
		   "URIs: [IPv6]:port, a socket directory as the host");
	}
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = postgresql://h1:5432,h2:5432/app\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "one server per line"), "URI with two hosts refused: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = postgresql://h/app?port\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "expected key=value after '?'"), "bad URI parameter: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\n"
			"primary = postgresql://u%zz@h/app\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, "bad %-escape"), "bad %%-escape: %s", err);
	sp_config_free(cfg);

	/* names */
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a.b]\n", err, sizeof(err));
	ok(!cfg && strstr(err, ":3: [database a.b]: a database name must"), "dot in db name");
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.x]\n", err,
			sizeof(err));
	ok(!cfg && strstr(err, ":4: [shard a.x]: expected [shard DATABASE.N]"), "bad shard index");
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\nprimary = "
			"host=x\n[table a.s.t.u]\nreplicated = yes\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, ":6: [table a.s.t.u]: expected [table DATABASE.TABLE]"),
	   "table name with too many dots: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\nprimary = "
			"host=x\n[table a.t]\nkey = id\ntype = int\n[table a.t]\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, ":9: [table a.t] already appears at line 6"), "table twice: %s",
	   err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\nprimary = "
			"host=x\n[table a.t]\nkey = id,,x\ntype = int\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, ":7: [table a.t] key: expected a column name"),
	   "empty column name: %s", err);
	sp_config_free(cfg);
	cfg = load_text("[shardpool]\nauth_type = trust\n[database a]\n[shard a.0]\nprimary = "
			"host=x\n[pgbouncer]\n",
			err, sizeof(err));
	ok(!cfg && strstr(err, ":6: unknown section [pgbouncer]") &&
	       strstr(err, "global settings go in [shardpool]"),
	   "pgbouncer section hint: %s", err);
	sp_config_free(cfg);
}

static void test_reload(void)
{
	char err[1024];
	sp_config_t *dst = sp_config_load(fixture("good_minimal.ini"), err, sizeof(err));
	sp_config_t *src = sp_config_load(fixture("good_full.ini"), err, sizeof(err));

	if (!ok(dst && src, "two configs for reload")) {
		sp_config_free(dst);
		sp_config_free(src);
		return;
	}
	sp_config_apply_reloadable(dst, src);
	is_int(dst->default_pool_size, 30, "reload copies default_pool_size");
	is_int(dst->log_level, 3, "reload copies log_level");
	ok(dst->server_idle_timeout == 300.0, "reload copies server_idle_timeout");
	is_str(dst->auth_file, src->auth_file, "reload copies auth_file");
	ok(dst->auth_file != src->auth_file, "reload copies strings, not pointers");
	is_int(dst->auth_type, SP_AUTH_SCRAM, "reload copies auth_type");
	is_str(dst->admin_users, "admin, root", "reload copies admin_users");
	ok(dst->max_replica_lag == 1073741824LL, "reload copies max_replica_lag");
	is_int(dst->listen_port, 6432, "reload keeps listen_port");
	is_str(dst->listen_addr, "127.0.0.1", "reload keeps listen_addr");
	is_str(dst->unix_socket_dir, "/tmp", "reload keeps unix_socket_dir");
	is_int(dst->workers, 1, "reload keeps workers");
	is_str(dst->pid_file, "", "reload keeps pid_file");
	is_int(dst->pkt_buf, 4096, "reload keeps pkt_buf");
	is_int(dst->n_dbs, 1, "reload keeps the databases");

	{
		sp_config_item_t it;
		const char *fixed[] = {"listen_addr", "listen_port", "unix_socket_dir", "workers",
				       "pid_file"};
		int wrong = 0;

		for (int i = 0; sp_config_key_at(i, &it); i++)
			for (size_t j = 0; j < 5; j++)
				if (strcmp(it.section, "shardpool") == 0 &&
				    strcmp(it.name, fixed[j]) == 0 && it.reloadable)
					wrong++;
		is_int(wrong, 0, "listen/socket/workers/pid_file are not reloadable");
	}
	sp_config_free(dst);
	sp_config_free(src);
}

static void test_reference(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	sp_config_item_t it;
	int n = 0, missing = 0;
	char needle[128];

	sp_config_write_reference(f);
	fclose(f);
	for (int i = 0; sp_config_key_at(i, &it); i++) {
		n++;
		snprintf(needle, sizeof(needle), "| `%s` | ", it.name);
		if (!strstr(text, needle)) {
			printf("#   %s missing from the reference\n", it.name);
			missing++;
		}
		if (!it.help || !*it.help || !it.type || !*it.type)
			missing++;
	}
	ok(n >= 55, "key table has %d keys", n);
	is_int(missing, 0, "every key has a row, a type and help in the reference");
	ok(!sp_config_key_at(n, &it) && !sp_config_key_at(-1, &it), "key_at stops at the ends");
	ok(strstr(text, "## [shardpool]") && strstr(text, "## [database NAME]") &&
	       strstr(text, "## [shard DB.N]") && strstr(text, "## [table DB.TABLE]"),
	   "one section per INI section");
	ok(strstr(text, "| `pool_mode` | enum: session, transaction, statement | `transaction` | yes |"),
	   "enum row lists the choices");
	ok(strstr(text, "| `server_idle_timeout` | seconds | `10min` | yes |"),
	   "duration row with default and reloadable");
	ok(strstr(text, "| `replica` | conninfo | (none) | yes |") && strstr(text, "Repeatable."),
	   "special keys documented");
	ok(strstr(text, "199 characters") != NULL, "file format rules documented");
	free(text);
}

static void test_example(void)
{
	char path[4200], err[1024];
	sp_config_t *cfg;
	int sharded = 0, unsharded = 0, replicas = 1, tables = 0;

	snprintf(path, sizeof(path), "%s/etc/shardpool.ini", srcdir);
	cfg = sp_config_load(path, err, sizeof(err));
	if (!ok(cfg != NULL, "etc/shardpool.ini loads")) {
		printf("#   %s\n", err);
		return;
	}
	for (int i = 0; i < cfg->n_dbs; i++) {
		const sp_db_conf_t *db = cfg->dbs[i];

		if (db->n_shards == 2) {
			sharded++;
			for (int j = 0; j < 2; j++)
				if (db->shards[j].n_replicas < 1)
					replicas = 0;
			tables += db->n_tables;
		} else if (db->n_shards == 1) {
			unsharded++;
		}
	}
	ok(sharded >= 1, "example has a database with 2 shards");
	ok(replicas, "each shard of it has a replica");
	ok(unsharded >= 1, "example has an unsharded database");
	ok(tables >= 2, "example declares tables");
	sp_config_free(cfg);
}

/* max_route_query_size: a size, 0 for no limit, reloadable. */
static void test_route_query_size(void)
{
	char err[1024], buf[64];
	sp_config_t *cfg, *next;
	sp_config_item_t it;
	bool found = false;

	cfg = load_global("max_route_query_size = 256kB", err, sizeof(err));
	ok(cfg && cfg->max_route_query_size == 262144, "max_route_query_size 256kB");
	if (cfg)
		is_str(sp_config_value_str(cfg, "max_route_query_size", buf, sizeof(buf)), "256kB",
		       "show max_route_query_size");
	sp_config_free(cfg);
	cfg = load_global("max_route_query_size = 0", err, sizeof(err));
	ok(cfg && cfg->max_route_query_size == 0, "max_route_query_size 0: no limit");
	sp_config_free(cfg);
	cfg = load_global("max_route_query_size = -1", err, sizeof(err));
	ok(!cfg && strstr(err, "max_route_query_size: expected a size from 0"),
	   "a negative max_route_query_size is refused: %s", err);
	sp_config_free(cfg);
	cfg = load_global("max_route_query_size = 2GB", err, sizeof(err));
	ok(!cfg && strstr(err, "max_route_query_size"), "max_route_query_size above 1GB refused");
	sp_config_free(cfg);

	cfg = load_global("", err, sizeof(err));
	next = load_global("max_route_query_size = 4MB", err, sizeof(err));
	if (ok(cfg && next, "two configs")) {
		sp_config_apply_reloadable(cfg, next);
		is_int(cfg->max_route_query_size, 4 << 20, "reload copies max_route_query_size");
	}
	sp_config_free(cfg);
	sp_config_free(next);
	for (int i = 0; sp_config_key_at(i, &it); i++)
		if (!strcmp(it.name, "max_route_query_size") && !strcmp(it.section, "shardpool"))
			found = it.reloadable && !strcmp(it.def, "1MB") && strstr(it.help, "54000");
	ok(found, "max_route_query_size is documented: reloadable, 1MB, says what happens");
}

int main(void)
{
	find_dirs();
	test_bad_files();
	test_defaults();
	test_full();
	test_range_list();
	test_values();
	test_reload();
	test_route_query_size();
	test_reference();
	test_example();
	return done_testing();
}
