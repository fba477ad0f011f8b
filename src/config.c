/*
 * config.c - reads shardpool.ini into an sp_config_t and checks it.
 *
 * Owns the key table keys[]: every setting shardpool understands is one row
 * (section, name, type, default, reloadable, help, where it is stored). The
 * parser, the defaults, validation, SHOW CONFIG (sp_config_key_at,
 * sp_config_value_str), RELOAD (sp_config_apply_reloadable) and the Markdown
 * reference (sp_config_write_reference) all walk that one table, so a key
 * added there is parsed, documented and shown everywhere at once.
 *
 * inih does the INI tokenising, but through our own line reader: it counts
 * lines (inih r55 does not pass line numbers to the handler), strips inline
 * comments introduced by ';' or '#' after whitespace (the library only knows
 * ';'), drops indentation (so an indented line is never glued to the previous
 * value as an inih continuation line), rejects lines that would not fit inih's
 * 200-byte buffer instead of letting them be cut silently, parses section
 * headers itself and stops at the first error.
 *
 * Invariants: a returned config passed every check; the first problem found
 * stops loading and is reported as "FILE:LINE: message" (or "FILE: message"
 * for problems of the whole file). [database NAME] must come before its
 * [shard] and [table] sections; shard indexes run 0..N-1 without gaps.
 *
 * Deliberately not done here: reading auth_file (userlist.c), opening log or
 * pid files, resolving host names, connecting to servers. Out of memory while
 * loading the configuration aborts: nothing sensible can run without it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SHARDS 1024
#define MAX_FILE_SIZE (16 * 1024 * 1024)

enum sec { SEC_GLOBAL = 0, SEC_DATABASE, SEC_SHARD, SEC_TABLE, SEC_COUNT, SEC_NONE = -1 };

static const struct section_doc {
	const char *name;   /* as in sp_config_item_t.section */
	const char *header; /* how it is written in the file */
	const char *help;
} sections[SEC_COUNT] = {
    {"shardpool", "[shardpool]",
     "Global settings: listening, pooling, authentication, timeouts, logging, replica "
     "routing. Optional; every key has a default. Key names follow pgbouncer where "
     "the concept exists."},
    {"database", "[database NAME]",
     "One section per database name that clients connect to. NAME must not contain "
     "'.' or spaces. It must appear before the [shard] and [table] sections of that "
     "database. Every database needs at least one shard: an unsharded database is "
     "a database with only [shard NAME.0]. A RELOAD adds a new section at once; a "
     "section taken out refuses new logins (\"database does not exist\") while its "
     "connected clients keep working until they leave. Changes to shards, sharding, "
     "default_shard and [table] sections need a restart."},
    {"shard", "[shard DB.N]",
     "Shard N (0, 1, 2, ... without gaps) of database DB: its primary and replicas. "
     "Servers are written as libpq-style connection strings: space-separated "
     "key=value pairs with keys host (default 127.0.0.1; a path starting with / is a "
     "unix socket directory), port (default 5432), dbname, user, password (default: "
     "the client's own) and weight (share of reads, default 1); a value may be "
     "single-quoted. With sharding = range each shard has one range key, with "
     "sharding = list one list key per value. At a RELOAD a changed primary or "
     "replica line (or a replica added or removed) takes effect at once: connections "
     "to a server no longer named are closed when idle, or when their transaction "
     "ends."},
    {"table", "[table DB.TABLE]",
     "How a table of database DB is spread over its shards; also [table "
     "DB.SCHEMA.TABLE] to match one schema only. A table has either a shard key "
     "(key and type) or replicated = yes. Tables without a section live on the "
     "database's default_shard. Names are compared as PostgreSQL stores them "
     "(unquoted identifiers are lower case)."},
};

enum ktype {
	KT_INT,
	KT_STRING,
	KT_PATH,
	KT_BOOL,
	KT_SECONDS, /* double seconds; a plain number means seconds */
	KT_MSEC,    /* int milliseconds; a plain number means milliseconds */
	KT_BYTES,   /* int */
	KT_BYTES64, /* int64_t */
	KT_ENUM,    /* int */
	KT_SPECIAL  /* parsed by keydef.set */
};

struct enumval {
	const char *name;
	int value;
	bool alias; /* accepted but not shown */
};

struct pctx;
struct keydef;
typedef bool (*setter_fn)(struct pctx *p, const struct keydef *k, void *obj, const char *val);

struct keydef {
	enum sec sec;
	const char *name;
	enum ktype type;
	const char *type_name; /* KT_SPECIAL: what the reference calls the type */
	const char *def;       /* parsed at init; NULL or "(...)" = no default value */
	bool reloadable;
	bool repeatable;
	size_t off;
	long long min, max; /* KT_INT, KT_BYTES*, KT_MSEC */
	const struct enumval *enums;
	setter_fn set;
	bool (*check)(struct pctx *p, const struct keydef *k, const char *val);
	const char *dup_hint;
	const char *help;
};

static const struct enumval pool_modes[] = {{"session", SP_POOL_SESSION, false},
					    {"transaction", SP_POOL_TRANSACTION, false},
					    {"statement", SP_POOL_STATEMENT, false},
					    {NULL, 0, false}};
static const struct enumval auth_types[] = {{"trust", SP_AUTH_TRUST, false},
					    {"md5", SP_AUTH_MD5, false},
					    {"scram-sha-256", SP_AUTH_SCRAM, false},
					    {"scram", SP_AUTH_SCRAM, true},
					    {NULL, 0, false}};
/* values of sp_log_level_t in log.h */
static const struct enumval log_levels[] = {
    {"error", 0, false}, {"warning", 1, false}, {"info", 2, false},
    {"debug", 3, false}, {"trace", 4, false},	{"warn", 1, true},
    {"notice", 2, true}, {"log", 2, true},	{NULL, 0, false}};
static const struct enumval shardings[] = {{"hash", SP_SHARDING_HASH, false},
					   {"range", SP_SHARDING_RANGE, false},
					   {"list", SP_SHARDING_LIST, false},
					   {NULL, 0, false}};
static const struct enumval primary_reads[] = {{"no", SP_PRIMARY_READS_NO, false},
					       {"yes", SP_PRIMARY_READS_YES, false},
					       {"fallback", SP_PRIMARY_READS_FALLBACK, false},
					       {NULL, 0, false}};
static const struct enumval key_types[] = {{"smallint", SP_KEY_SMALLINT, false},
					   {"integer", SP_KEY_INTEGER, false},
					   {"bigint", SP_KEY_BIGINT, false},
					   {"text", SP_KEY_TEXT, false},
					   {"varchar", SP_KEY_VARCHAR, false},
					   {"uuid", SP_KEY_UUID, false},
					   {"int2", SP_KEY_SMALLINT, true},
					   {"int4", SP_KEY_INTEGER, true},
					   {"int", SP_KEY_INTEGER, true},
					   {"int8", SP_KEY_BIGINT, true},
					   {NULL, 0, false}};

static bool check_listen_addr(struct pctx *p, const struct keydef *k, const char *val);
static bool set_primary(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_replica(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_range(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_list(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_key_cols(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_key_types(struct pctx *p, const struct keydef *k, void *obj, const char *val);
static bool set_funclist(struct pctx *p, const struct keydef *k, void *obj, const char *val);

#define RELOAD .reloadable = true
#define G(field) .sec = SEC_GLOBAL, .name = #field, .off = offsetof(sp_config_t, field)
#define D(field) .sec = SEC_DATABASE, .name = #field, .off = offsetof(sp_db_conf_t, field)

/* The key table. Order here is the order of the reference and SHOW CONFIG. */
static const struct keydef keys[] = {
    /* [shardpool]: listening */
    {G(listen_addr), .type = KT_STRING, .def = "127.0.0.1", .check = check_listen_addr,
     .help = "TCP address to listen on: one IP address or host name, or * for all "
	     "interfaces; empty disables TCP."},
    {G(listen_port), .type = KT_INT, .def = "6432", .min = 1, .max = 65535,
     .help = "TCP port; also names the unix socket (.s.PGSQL.PORT)."},
    {G(unix_socket_dir), .type = KT_STRING, .def = "/tmp",
     .help = "Directory of the unix socket; empty disables it."},
    {G(metrics_addr), .type = KT_STRING, .def = "127.0.0.1", .check = check_listen_addr,
     .help = "Address of the Prometheus endpoint (http://ADDR:PORT/metrics): one IP address "
	     "or host name, or * for all interfaces. It has no authentication: keep it private."},
    {G(metrics_port), .type = KT_INT, .def = "0", .min = 0, .max = 65535,
     .help = "Port of the Prometheus endpoint, other than listen_port; 0 turns it off."},
    {G(so_reuseport), .type = KT_BOOL, .def = "no",
     .help = "Let several shardpool processes listen on the same port, for an upgrade or "
	     "restart without refused connections: start the new process beside the running "
	     "one, then stop the old one with SIGTERM. The kernel spreads new TCP connections "
	     "over the processes (SO_REUSEPORT); the newest process takes over the unix socket "
	     "and the pid file. Without it a second process on the same port or unix socket "
	     "refuses to start."},
    {G(workers), .type = KT_INT, .def = "1", .min = 1, .max = 1,
     .help = "Number of event-loop threads; this version runs one (a single core "
	     "serves tens of thousands of transactions per second)."},
    /* pooling */
    {G(pool_mode), .type = KT_ENUM, .def = "transaction", .enums = pool_modes, RELOAD,
     .help = "When a server connection goes back to the pool: at the end of the client "
	     "session, of each transaction, or of each statement."},
    {G(default_pool_size), .type = KT_INT, .def = "20", .min = 1, .max = 100000, RELOAD,
     .help = "Server connections per pool (one pool per shard, role, user and database)."},
    {G(min_pool_size), .type = KT_INT, .def = "0", .min = 0, .max = 100000, RELOAD,
     .help = "Keep at least this many server connections open in each pool."},
    {G(reserve_pool_size), .type = KT_INT, .def = "0", .min = 0, .max = 100000, RELOAD,
     .help = "Extra connections a pool may open for clients that waited "
	     "reserve_pool_timeout."},
    {G(reserve_pool_timeout), .type = KT_SECONDS, .def = "5s", RELOAD,
     .help = "How long a client waits before the reserve pool is used."},
    {G(max_client_conn), .type = KT_INT, .def = "100", .min = 1, .max = 1000000, RELOAD,
     .help = "Maximum number of client connections."},
    {G(max_db_connections), .type = KT_INT, .def = "0", .min = 0, .max = 1000000, RELOAD,
     .help = "Maximum server connections per database and shard over all users; "
	     "0 means no limit."},
    /* authentication */
    {G(auth_type), .type = KT_ENUM, .def = "md5", .enums = auth_types, RELOAD,
     .help = "How clients authenticate (scram is accepted for scram-sha-256); md5 and "
	     "scram-sha-256 need auth_file."},
    {G(auth_file), .type = KT_PATH, .def = "", RELOAD,
     .help = "File of \"user\" \"secret\" lines in pgbouncer's userlist.txt format."},
    {G(admin_users), .type = KT_STRING, .def = "", RELOAD,
     .help = "Comma-separated users allowed to run admin commands in database "
	     "shardpool."},
    {G(stats_users), .type = KT_STRING, .def = "", RELOAD,
     .help = "Comma-separated users allowed to run SHOW commands in database shardpool."},
    {G(stats_period), .type = KT_SECONDS, .def = "1min", RELOAD,
     .help = "SHOW STATS averages (avg_*) are taken over the last period of this length."},
    /* server connections */
    {G(server_reset_query), .type = KT_STRING, .def = "DISCARD ALL", RELOAD,
     .help = "Run on a server connection before another client gets it in session "
	     "pooling; empty for none."},
    {G(server_reset_query_always), .type = KT_BOOL, .def = "no", RELOAD,
     .help = "Run server_reset_query in transaction and statement pooling too."},
    {G(server_connect_timeout), .type = KT_SECONDS, .def = "15s", RELOAD,
     .help = "Give up connecting and logging in to a server after this long."},
    {G(server_login_retry), .type = KT_SECONDS, .def = "15s", RELOAD,
     .help = "After a failed server login, wait this long before trying again."},
    {G(dns_max_ttl), .type = KT_SECONDS, .def = "15s", RELOAD,
     .help = "How long the addresses a server's host name resolved to are used before it is "
	     "looked up again (in the background: the old addresses serve meanwhile)."},
    {G(dns_nxdomain_ttl), .type = KT_SECONDS, .def = "15s", RELOAD,
     .help = "A host name that did not resolve is tried again after 1 s, 2 s, 4 s ... at most "
	     "this far apart; meanwhile connections to it fail at once."},
    {G(server_idle_timeout), .type = KT_SECONDS, .def = "10min", RELOAD,
     .help = "Close server connections unused for this long; 0 means never."},
    {G(server_lifetime), .type = KT_SECONDS, .def = "1h", RELOAD,
     .help = "Close a server connection older than this when it is released; 0 means "
	     "never."},
    /* client connections */
    {G(query_wait_timeout), .type = KT_SECONDS, .def = "2min", RELOAD,
     .help = "Fail a client that waited this long for a server connection; 0 means "
	     "wait forever."},
    {G(client_idle_timeout), .type = KT_SECONDS, .def = "0", RELOAD,
     .help = "Close client connections idle for this long; 0 means never."},
    {G(client_login_timeout), .type = KT_SECONDS, .def = "1min", RELOAD,
     .help = "Close a client that has not finished logging in after this long."},
    {G(idle_transaction_timeout), .type = KT_SECONDS, .def = "0", RELOAD,
     .help = "Close a client idle inside a transaction for this long; 0 means never."},
    {G(shutdown_timeout), .type = KT_SECONDS, .def = "30s", RELOAD,
     .help = "On shutdown, wait this long for running transactions to finish."},
    /* protocol */
    {G(max_prepared_statements), .type = KT_INT, .def = "200", .min = 0, .max = 1000000,
     .help = "Named prepared statements tracked per server connection so they work in "
	     "transaction pooling; 0 disables tracking."},
    {G(pkt_buf), .type = KT_BYTES, .def = "4kB", .min = 1024, .max = 16 * 1024 * 1024,
     .help = "Initial size of each connection's buffer."},
    {G(max_packet_size), .type = KT_BYTES, .def = "1073741823", .min = 1024, .max = 1073741824, RELOAD,
     .help = "Reject protocol messages larger than this (PostgreSQL's own limit is 1 GB - 1); "
	     "control messages (Sync, Execute, ...) are limited to 10000 bytes, as in PostgreSQL."},
    {G(max_route_query_size), .type = KT_BYTES, .def = "1MB", .min = 0, .max = 1073741824, RELOAD,
     .help = "On a sharded or read/write-split database, statements longer than this are not "
	     "parsed to be routed (parsing costs some 200 to 700 bytes of memory per byte of SQL "
	     "and stalls every client): they go, as writes, to the shard of a leading shard or "
	     "shard_key hint or of SET shardpool.shard; on a database of one shard to its "
	     "primary; else they are refused (SQLSTATE 54000). The default holds a multi-row "
	     "INSERT of some 10,000 rows of 100 bytes; 0 means no limit."},
    /* logging */
    {G(log_file), .type = KT_PATH, .def = "",
     .help = "Append the log to this file; empty logs to stderr."},
    {G(pid_file), .type = KT_PATH, .def = "",
     .help = "Write the process id to this file; empty for none."},
    {G(log_level), .type = KT_ENUM, .def = "info", .enums = log_levels, RELOAD,
     .help = "Log verbosity (warn is accepted for warning, log and notice for info)."},
    {G(log_connections), .type = KT_BOOL, .def = "yes", RELOAD, .help = "Log every client login."},
    {G(log_disconnections), .type = KT_BOOL, .def = "yes", RELOAD,
     .help = "Log every client disconnection with its reason."},
    /* health and replica routing */
    {G(health_check_period), .type = KT_SECONDS, .def = "1s", RELOAD,
     .help = "How often each server is probed; 0 disables health checks."},
    {G(health_check_timeout), .type = KT_SECONDS, .def = "2s", RELOAD,
     .help = "A probe that takes longer marks the server down."},
    {G(max_replica_lag), .type = KT_BYTES64, .def = "16MB", .min = 0, .max = INT64_MAX, RELOAD,
     .help = "A replica further behind its primary than this much WAL gets no reads; "
	     "0 means no limit."},
    {G(max_replica_lag_ms), .type = KT_MSEC, .def = "0", .min = 0, .max = INT_MAX, RELOAD,
     .help = "A replica whose replay is further behind than this gets no reads; 0 means "
	     "no limit."},
    {G(read_your_writes), .type = KT_BOOL, .def = "yes", RELOAD,
     .help = "After a client writes, its reads go to the primary or to a replica that "
	     "has replayed the write."},
    {G(causal_wait_ms), .type = KT_MSEC, .def = "0", .min = 0, .max = INT_MAX, RELOAD,
     .help = "With read_your_writes, wait up to this long for a replica to catch up "
	     "before reading from the primary; 0 goes to the primary at once."},
    {G(read_functions), .type = KT_SPECIAL, .type_name = "function name", .repeatable = true,
     .set = set_funclist, RELOAD,
     .help = "A function that may run on a replica although pg_proc marks it volatile "
	     "(name or schema.name); repeat the key for each function."},
    {G(write_functions), .type = KT_SPECIAL, .type_name = "function name", .repeatable = true,
     .set = set_funclist, RELOAD,
     .help = "A function whose callers must run on the primary although pg_proc does "
	     "not mark it volatile; repeat the key for each function."},

    /* [database NAME] */
    {D(pool_size), .type = KT_INT, .def = "(default_pool_size)", .min = 1, .max = 100000, RELOAD,
     .help = "Server connections per pool for this database."},
    {D(pool_mode), .type = KT_ENUM, .def = "(pool_mode)", .enums = pool_modes, RELOAD,
     .help = "Pool mode for this database; a RELOAD applies it to clients that log in after."},
    {D(min_pool_size), .type = KT_INT, .def = "(min_pool_size)", .min = 0, .max = 100000, RELOAD,
     .help = "Minimum open server connections per pool for this database."},
    {D(max_db_connections), .type = KT_INT, .def = "(max_db_connections)", .min = 0, .max = 1000000, RELOAD,
     .help = "Limit of server connections per shard for this database."},
    {.sec = SEC_DATABASE,
     .name = "shards",
     .off = offsetof(sp_db_conf_t, shards_declared),
     .type = KT_INT,
     .def = "(number of [shard] sections)",
     .min = 1,
     .max = MAX_SHARDS,
     .help = "Number of shards; if given it must match the [shard DB.N] sections."},
    {D(sharding), .type = KT_ENUM, .def = "hash", .enums = shardings,
     .help = "How a shard key value picks its shard: hash (compatible with PostgreSQL's "
	     "PARTITION BY HASH), or the range or list keys of the [shard] sections."},
    {D(default_shard), .type = KT_INT, .def = "0", .min = 0, .max = MAX_SHARDS - 1,
     .help = "Shard holding the tables that have no [table] section."},
    {D(read_replicas), .type = KT_BOOL, .def = "yes", RELOAD,
     .help = "Send read-only statements outside write transactions to replicas."},
    {D(primary_reads), .type = KT_ENUM, .def = "fallback", .enums = primary_reads, RELOAD,
     .help = "Whether the primary also serves reads: no, yes (by its weight, like a "
	     "replica) or fallback (only when no replica is usable)."},

    /* [shard DB.N] */
    {.sec = SEC_SHARD,
     .name = "primary",
     .type = KT_SPECIAL,
     .type_name = "conninfo",
     .set = set_primary, RELOAD,
     .dup_hint = "a shard has one primary; add other servers with 'replica = ...'",
     .help = "The shard's primary server, as a libpq key=value string (host=10.0.0.1 "
	     "port=5432 dbname=app) or a postgresql:// URI, one server. Keys: host (an address, "
	     "a name resolved in the background and kept dns_max_ttl, or a unix socket "
	     "directory), hostaddr, port, dbname and user (default: "
	     "the client's), password (default: the client's secret from auth_file), "
	     "connect_timeout (overrides server_connect_timeout), application_name (when the "
	     "client sends none), options (sent at login, e.g. '-c statement_timeout=5s'); "
	     "sslmode, gssencmode and channel_binding accept disable or prefer (shardpool "
	     "talks to servers without TLS); keepalives, TLS file and other libpq-only keys "
	     "are accepted and have no effect. Required."},
    {.sec = SEC_SHARD,
     .name = "replica",
     .type = KT_SPECIAL,
     .type_name = "conninfo",
     .repeatable = true,
     .set = set_replica, RELOAD,
     .help = "A streaming replica of the primary, written like primary; repeat the key "
	     "for each replica. weight=N sets its share of reads."},
    {.sec = SEC_SHARD,
     .name = "range",
     .type = KT_SPECIAL,
     .type_name = "LO..HI",
     .set = set_range,
     .help = "With sharding = range: the key values of this shard, LO inclusive, HI "
	     "exclusive; leave a side empty for an open end. Ranges must not overlap nor "
	     "leave gaps."},
    {.sec = SEC_SHARD,
     .name = "list",
     .type = KT_SPECIAL,
     .type_name = "value",
     .repeatable = true,
     .set = set_list,
     .help = "With sharding = list: one key value stored on this shard; repeat the key "
	     "for each value. A value belongs to one shard only."},

    /* [table DB.TABLE] */
    {.sec = SEC_TABLE,
     .name = "key",
     .type = KT_SPECIAL,
     .type_name = "columns",
     .set = set_key_cols,
     .help = "Shard key column, or comma-separated columns of a composite key."},
    {.sec = SEC_TABLE,
     .name = "type",
     .type = KT_SPECIAL,
     .type_name = "types",
     .set = set_key_types,
     .help = "Type of the key columns: smallint, integer, bigint, text, varchar or uuid "
	     "(int2, int4, int8 accepted); one per key column, or one for all."},
    {.sec = SEC_TABLE,
     .name = "replicated",
     .off = offsetof(sp_table_conf_t, replicated),
     .type = KT_BOOL,
     .def = "no",
     .help = "The table has the same rows on every shard: reads go to one shard, writes "
	     "to all. Excludes key."},
};

#define N_KEYS ((int)(sizeof(keys) / sizeof(keys[0])))

/* parse-time facts about one database that the final checks need */
struct dbinfo {
	int key_line[N_KEYS];
};

struct pctx {
	const char *path;
	char *err;
	size_t errlen;
	bool failed;
	sp_config_t *cfg;
	char *dir; /* directory of the file, for relative paths */

	/* line reader */
	const char *text;
	size_t len, pos;
	int line;

	/* the section being read */
	enum sec sec;
	char title[256]; /* e.g. "[shard app.1]", for messages */
	int db;
	int shard;
	int table;
	int *seen; /* line where each key was set in this section */
	int scratch_seen[N_KEYS];
	int global_seen[N_KEYS];
	int global_line;
	struct dbinfo *dbi; /* parallel to cfg->dbs */

	/* [table]: "type" may come before "key", so types wait for the section end */
	sp_key_type_t *types;
	int n_types;
};

/* ---- small helpers ---- */

static void *xrealloc(void *ptr, size_t size)
{
	void *q = realloc(ptr, size ? size : 1);

	if (!q) {
		fputs("shardpool: out of memory while loading the configuration\n", stderr);
		abort();
	}
	return q;
}

static void *xcalloc(size_t n, size_t size)
{
	void *q = calloc(n ? n : 1, size ? size : 1);

	if (!q) {
		fputs("shardpool: out of memory while loading the configuration\n", stderr);
		abort();
	}
	return q;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

static void replace_str(char **dst, const char *src)
{
	char *copy = xstrdup(src);

	free(*dst);
	*dst = copy;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* a trimmed copy of s[0..n) */
static char *trimmed_dup(const char *s, size_t n)
{
	while (n > 0 && is_space(*s)) {
		s++;
		n--;
	}
	while (n > 0 && is_space(s[n - 1]))
		n--;
	return xstrndup(s, n);
}

static __attribute__((format(printf, 3, 4))) bool fail(struct pctx *p, int line, const char *fmt,
						       ...)
{
	va_list ap;
	int n;

	if (p->failed)
		return false;
	p->failed = true;
	if (!p->err || p->errlen == 0)
		return false;
	if (line > 0)
		n = snprintf(p->err, p->errlen, "%s:%d: ", p->path, line);
	else
		n = snprintf(p->err, p->errlen, "%s: ", p->path);
	if (n < 0 || (size_t)n >= p->errlen)
		return false;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

/* an error about key k on the current line: "[section] key: ..." */
static __attribute__((format(printf, 3, 4))) bool key_fail(struct pctx *p, const struct keydef *k,
							   const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(p, p->line, "%s %s: %s", p->title, k->name, msg);
}

static const struct keydef *find_key(enum sec sec, const char *name)
{
	for (int i = 0; i < N_KEYS; i++)
		if (keys[i].sec == sec && strcasecmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int key_index(const struct keydef *k)
{
	return (int)(k - keys);
}

/* edit distance, for "did you mean" on unknown keys */
static int distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];

		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			int best = diag + cost;

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *enum_name(const struct enumval *e, int value)
{
	for (; e->name; e++)
		if (e->value == value && !e->alias)
			return e->name;
	return "?";
}

/* "a, b or c" from the visible names of an enum */
static void enum_choices(const struct enumval *e, char *buf, size_t len, const char *last_sep)
{
	int n = 0, i = 0;
	size_t used = 0;

	for (const struct enumval *v = e; v->name; v++)
		if (!v->alias)
			n++;
	buf[0] = '\0';
	for (const struct enumval *v = e; v->name; v++) {
		if (v->alias)
			continue;
		const char *sep = i == 0 ? "" : (i == n - 1 ? last_sep : ", ");
		int w = snprintf(buf + used, len - used, "%s%s", sep, v->name);

		if (w < 0 || (size_t)w >= len - used)
			return;
		used += (size_t)w;
		i++;
	}
}

/* ---- value parsers ---- */

static bool parse_ll(const char *s, long long *out)
{
	char *end;

	if (!*s || is_space(*s))
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "on", "true", "1"};
	static const char *const no[] = {"no", "off", "false", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/*
 * "1500ms", "15s", "15", "2min", "1h", "0.5s": returns seconds. plain_unit says
 * what a number without a unit means (1 for seconds, 0.001 for milliseconds).
 */
static bool parse_duration(const char *s, double plain_unit, double *out)
{
	static const struct {
		const char *suffix;
		double mult;
	} units[] = {{"ms", 0.001}, {"s", 1}, {"sec", 1}, {"min", 60}, {"h", 3600}};
	const char *end = s;
	char num[64];
	double v;

	/* digits with an optional fraction; strtod alone would take 1e3, 0x10, inf */
	while (isdigit((unsigned char)*end))
		end++;
	if (*end == '.')
		end++;
	while (isdigit((unsigned char)*end))
		end++;
	if (end == s || (end == s + 1 && *s == '.') || (size_t)(end - s) >= sizeof(num))
		return false;
	memcpy(num, s, (size_t)(end - s));
	num[end - s] = '\0';
	v = strtod(num, NULL);
	if (!isfinite(v))
		return false;
	while (is_space(*end))
		end++;
	if (*end == '\0') {
		*out = v * plain_unit;
		return true;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) == 0) {
			*out = v * units[i].mult;
			return true;
		}
	}
	return false;
}

/* "4096", "4kB", "16MB", "1GB" (1024-based, unit case ignored) */
static bool parse_size(const char *s, int64_t *out)
{
	static const struct {
		const char *suffix;
		int64_t mult;
	} units[] = {{"b", 1},	     {"kb", 1024},    {"k", 1024},    {"mb", 1 << 20},
		     {"m", 1 << 20}, {"gb", 1 << 30}, {"g", 1 << 30}, {"tb", 1LL << 40}};
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v < 0)
		return false;
	while (is_space(*end))
		end++;
	if (*end == '\0') {
		*out = v;
		return true;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) == 0) {
			if (v > INT64_MAX / units[i].mult)
				return false;
			*out = v * units[i].mult;
			return true;
		}
	}
	return false;
}

static bool parse_enum(const struct enumval *e, const char *s, int *out)
{
	for (; e->name; e++) {
		if (strcasecmp(e->name, s) == 0) {
			*out = e->value;
			return true;
		}
	}
	return false;
}

/* an optionally signed decimal integer that fits int64 */
static bool is_int_text(const char *s, long long *v)
{
	long long dummy;

	return parse_ll(s, v ? v : &dummy);
}

/* ---- formatting (SHOW CONFIG, summary) ---- */

static void fmt_ms(long long ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%lldh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%lldmin", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llds", ms / 1000);
	else
		snprintf(buf, len, "%lldms", ms);
}

static void fmt_seconds(double s, char *buf, size_t len)
{
	double ms = s * 1000.0;
	long long whole = llround(ms);

	if (fabs(ms - (double)whole) > 1e-6 || fabs(ms) > 9e15)
		snprintf(buf, len, "%gs", s);
	else
		fmt_ms(whole, buf, len);
}

static void fmt_bytes(int64_t v, char *buf, size_t len)
{
	if (v != 0 && v % (1LL << 30) == 0)
		snprintf(buf, len, "%lldGB", (long long)(v >> 30));
	else if (v != 0 && v % (1 << 20) == 0)
		snprintf(buf, len, "%lldMB", (long long)(v >> 20));
	else if (v != 0 && v % 1024 == 0)
		snprintf(buf, len, "%lldkB", (long long)(v >> 10));
	else
		snprintf(buf, len, "%lld", (long long)v);
}

static void *field(void *obj, const struct keydef *k)
{
	return (char *)obj + k->off;
}

static const void *cfield(const void *obj, const struct keydef *k)
{
	return (const char *)obj + k->off;
}

static void format_value(const struct keydef *k, const void *obj, char *buf, size_t len)
{
	const void *f = cfield(obj, k);

	switch (k->type) {
	case KT_INT:
		snprintf(buf, len, "%d", *(const int *)f);
		break;
	case KT_STRING:
	case KT_PATH: {
		const char *s = *(char *const *)f;

		snprintf(buf, len, "%s", s ? s : "");
		break;
	}
	case KT_BOOL:
		snprintf(buf, len, "%s", *(const bool *)f ? "yes" : "no");
		break;
	case KT_SECONDS:
		fmt_seconds(*(const double *)f, buf, len);
		break;
	case KT_MSEC:
		fmt_ms(*(const int *)f, buf, len);
		break;
	case KT_BYTES:
		fmt_bytes(*(const int *)f, buf, len);
		break;
	case KT_BYTES64:
		fmt_bytes(*(const int64_t *)f, buf, len);
		break;
	case KT_ENUM:
		snprintf(buf, len, "%s", enum_name(k->enums, *(const int *)f));
		break;
	case KT_SPECIAL:
		if (k->sec == SEC_GLOBAL && *(char *const *)f)
			snprintf(buf, len, "%s", *(char *const *)f);
		else
			snprintf(buf, len, "%s", "");
		break;
	}
}

/* ---- generic setters ---- */

static bool check_listen_addr(struct pctx *p, const struct keydef *k, const char *val)
{
	for (const char *c = val; *c; c++)
		if (*c == ',' || is_space(*c))
			return key_fail(p, k, "expected one address, a host name or *, got '%s'",
					val);
	return true;
}

static bool set_value(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	void *f = field(obj, k);
	char choices[256];
	long long ll;
	int64_t size;
	double secs;
	int e;
	bool b;

	if (k->check && !k->check(p, k, val))
		return false;
	switch (k->type) {
	case KT_INT:
		if (!parse_ll(val, &ll) || ll < k->min || ll > k->max)
			return key_fail(p, k, "expected an integer from %lld to %lld, got '%s'",
					k->min, k->max, val);
		*(int *)f = (int)ll;
		return true;
	case KT_STRING:
		replace_str((char **)f, val);
		return true;
	case KT_PATH:
		if (val[0] != '\0' && val[0] != '/' && p->dir) {
			size_t n = strlen(p->dir) + strlen(val) + 2;
			char *full = xrealloc(NULL, n);

			snprintf(full, n, "%s/%s", p->dir, val);
			free(*(char **)f);
			*(char **)f = full;
		} else {
			replace_str((char **)f, val);
		}
		return true;
	case KT_BOOL:
		if (!parse_bool(val, &b))
			return key_fail(p, k,
					"expected yes or no (also on/off, true/false, 1/0), "
					"got '%s'",
					val);
		*(bool *)f = b;
		return true;
	case KT_SECONDS:
		if (!parse_duration(val, 1.0, &secs))
			return key_fail(p, k,
					"expected a duration such as 30, 30s, 500ms, 5min or "
					"1h (a plain number is seconds), got '%s'",
					val);
		*(double *)f = secs;
		return true;
	case KT_MSEC:
		if (!parse_duration(val, 0.001, &secs) || secs * 1000.0 > (double)k->max ||
		    secs * 1000.0 < (double)k->min)
			return key_fail(p, k,
					"expected a duration such as 250, 250ms, 2s or 1min "
					"(a plain number is milliseconds), got '%s'",
					val);
		*(int *)f = (int)llround(secs * 1000.0);
		return true;
	case KT_BYTES:
	case KT_BYTES64:
		if (!parse_size(val, &size) || size < k->min || size > k->max) {
			char lo[32], hi[32];

			fmt_bytes(k->min, lo, sizeof(lo));
			fmt_bytes(k->max, hi, sizeof(hi));
			return key_fail(p, k,
					"expected a size from %s to %s in bytes or with a "
					"unit (kB, MB, GB), got '%s'",
					lo, hi, val);
		}
		if (k->type == KT_BYTES)
			*(int *)f = (int)size;
		else
			*(int64_t *)f = size;
		return true;
	case KT_ENUM:
		if (!parse_enum(k->enums, val, &e)) {
			enum_choices(k->enums, choices, sizeof(choices), " or ");
			return key_fail(p, k, "expected %s, got '%s'", choices, val);
		}
		*(int *)f = e;
		return true;
	case KT_SPECIAL:
		return k->set(p, k, obj, val);
	}
	return false;
}

/* Set every key of sec that has a default; inherited db keys become -1. */
static bool apply_defaults(struct pctx *p, enum sec sec, void *obj)
{
	for (int i = 0; i < N_KEYS; i++) {
		const struct keydef *k = &keys[i];

		if (k->sec != sec || k->type == KT_SPECIAL)
			continue;
		if (!k->def || k->def[0] == '(') {
			if (k->type == KT_INT || k->type == KT_ENUM)
				*(int *)field(obj, k) = -1;
			continue;
		}
		if (!set_value(p, k, obj, k->def))
			return false;
	}
	return true;
}

/* ---- databases, shards, tables ---- */

static sp_db_conf_t *cur_db(struct pctx *p)
{
	return p->cfg->dbs[p->db];
}

static int find_db_index(const sp_config_t *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_dbs; i++)
		if (cfg->dbs[i] && strcmp(cfg->dbs[i]->name, name) == 0)
			return i;
	return -1;
}

static void free_node(sp_node_conf_t *n)
{
	free(n->conninfo);
	free(n->host);
	free(n->dbname);
	free(n->user);
	free(n->password);
	free(n->application_name);
	free(n->options);
	memset(n, 0, sizeof(*n));
}

static void free_db(sp_db_conf_t *db)
{
	for (int i = 0; i < db->n_shards; i++) {
		sp_shard_conf_t *s = &db->shards[i];

		if (s->has_primary)
			free_node(&s->primary);
		for (int j = 0; j < s->n_replicas; j++)
			free_node(&s->replicas[j]);
		free(s->replicas);
	}
	free(db->shards);
	for (int i = 0; i < db->n_tables; i++) {
		sp_table_conf_t *t = &db->tables[i];

		free(t->schema);
		free(t->name);
		for (int j = 0; j < t->n_keys; j++)
			free(t->key_cols[j]);
		free(t->key_cols);
		free(t->key_types);
	}
	free(db->tables);
	for (int i = 0; i < db->n_bounds; i++) {
		sp_shard_bound_t *b = &db->bounds[i];

		free(b->lo);
		free(b->hi);
		for (int j = 0; j < b->n_values; j++)
			free(b->values[j]);
		free(b->values);
	}
	free(db->bounds);
	free(db->name);
}

/* ------------------------------------------------------------------ conninfo */

/* The libpq keys a [shard] line understands; see parse_conninfo. */
enum ci_key {
	CI_HOST,
	CI_HOSTADDR,
	CI_PORT,
	CI_DBNAME,
	CI_USER,
	CI_PASSWORD,
	CI_WEIGHT,
	CI_SSLMODE,
	CI_GSSENCMODE,
	CI_CHANNEL_BINDING,
	CI_CONNECT_TIMEOUT,
	CI_APPLICATION_NAME,
	CI_OPTIONS,
	CI_N
};
static const char *const ci_names[CI_N] = {
    "host",	   "hostaddr",	     "port",	       "dbname",	   "user",
    "password",	   "weight",	     "sslmode",	       "gssencmode",	   "channel_binding",
    "connect_timeout", "application_name", "options"};
/* libpq keys that change nothing for shardpool's plain connections: accepted so that
 * a DBA's existing connection string works (TLS files mean nothing without TLS) */
static const char *const ci_ignored[] = {
    "target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "sslrootcert", "sslcert", "sslkey", "sslcrl",
    "sslcrldir", "sslsni", "sslcompression", "sslpassword", "sslcertmode",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname", "gsslib",
    "load_balance_hosts", "fallback_application_name"};

/* Append key='value' (quote and backslash escaped) to *out. */
static void ci_append(char **out, size_t *len, const char *key, const char *v, size_t vlen)
{
	size_t need = *len + strlen(key) + 2 * vlen + 5;
	char *o = xrealloc(*out, need);

	*len += (size_t)snprintf(o + *len, need - *len, "%s%s='", *len ? " " : "", key);
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] == '\'' || v[i] == '\\')
			o[(*len)++] = '\\';
		o[(*len)++] = v[i];
	}
	o[(*len)++] = '\'';
	o[*len] = '\0';
	*out = o;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				       : -1;
}

/* Percent-decode s[0..n) into a new string; NULL on a bad escape or an escaped NUL. */
static char *pct_decode(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(d);
				return NULL;
			}
			d[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			d[o++] = s[i];
		}
	}
	d[o] = '\0';
	return d;
}

/* Append a percent-encoded piece of a URI as key='value'; false on a bad escape. */
static bool uri_piece(struct pctx *p, const struct keydef *k, char **out, size_t *len,
		      const char *key, const char *v, size_t n)
{
	char *d = pct_decode(v, n);

	if (!d)
		return key_fail(p, k, "bad %%-escape in the %s of the URI", key);
	ci_append(out, len, key, d, strlen(d));
	free(d);
	return true;
}

/*
 * postgresql://[user[:password]@][host][:port][/dbname][?key=value&...] (also
 * postgres://), as libpq reads it, turned into key='value' pairs. One host only.
 */
static char *uri_to_conninfo(struct pctx *p, const struct keydef *k, const char *uri)
{
	const char *s = uri + (strncmp(uri, "postgres://", 11) == 0 ? 11 : 13);
	const char *auth_end = s + strcspn(s, "/?"), *at = NULL, *h, *hend, *colon = NULL;
	char *out = NULL;
	size_t len = 0;

	for (const char *q = s; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at) {
		const char *pw = memchr(s, ':', (size_t)(at - s));
		if (!uri_piece(p, k, &out, &len, "user", s, (size_t)((pw ? pw : at) - s)) ||
		    (pw && !uri_piece(p, k, &out, &len, "password", pw + 1, (size_t)(at - pw - 1))))
			goto bad;
	}
	h = at ? at + 1 : s;
	if (memchr(h, ',', (size_t)(auth_end - h))) {
		key_fail(p, k, "one server per line: give each replica its own 'replica =' line");
		goto bad;
	}
	if (*h == '[') { /* [IPv6 address] */
		hend = memchr(h, ']', (size_t)(auth_end - h));
		if (!hend) {
			key_fail(p, k, "unterminated [ in the host of the URI");
			goto bad;
		}
		if (hend > h + 1)
			ci_append(&out, &len, "host", h + 1, (size_t)(hend - h - 1));
		colon = hend + 1 < auth_end && hend[1] == ':' ? hend + 1 : NULL;
		if (!colon && hend + 1 != auth_end) {
			key_fail(p, k, "expected ':port' after the ] of the host");
			goto bad;
		}
	} else {
		colon = memchr(h, ':', (size_t)(auth_end - h));
		hend = colon ? colon : auth_end;
		if (hend > h && !uri_piece(p, k, &out, &len, "host", h, (size_t)(hend - h)))
			goto bad;
	}
	if (colon && colon + 1 < auth_end)
		ci_append(&out, &len, "port", colon + 1, (size_t)(auth_end - colon - 1));
	s = auth_end;
	if (*s == '/') {
		size_t n = strcspn(++s, "?");
		if (n && !uri_piece(p, k, &out, &len, "dbname", s, n))
			goto bad;
		s += n;
	}
	if (*s == '?')
		s++;
	while (*s) {
		size_t n = strcspn(s, "&");
		const char *eq = memchr(s, '=', n);
		char *key;
		if (!eq) {
			key_fail(p, k, "expected key=value after '?' in the URI, got '%.*s'", (int)n, s);
			goto bad;
		}
		if (!(key = pct_decode(s, (size_t)(eq - s)))) {
			key_fail(p, k, "bad %%-escape in the URI's parameters");
			goto bad;
		}
		bool good = uri_piece(p, k, &out, &len, key, eq + 1, (size_t)(s + n - eq - 1));
		free(key);
		if (!good)
			goto bad;
		s += n + (s[n] == '&');
	}
	return out ? out : xstrdup("");
bad:
	free(out);
	return NULL;
}

static bool ci_one_of(struct pctx *p, const struct keydef *k, const char *key, const char *v,
		      const char *const *good, const char *const *no_tls)
{
	for (; *good; good++)
		if (!strcmp(v, *good))
			return true;
	for (; no_tls && *no_tls; no_tls++)
		if (!strcmp(v, *no_tls))
			return key_fail(p, k,
					"%s=%s cannot be honoured: shardpool does not use TLS or GSSAPI "
					"encryption to servers yet; use %s=disable or prefer (plain "
					"connections)",
					key, v, key);
	return key_fail(p, k, "%s: unknown value '%s'", key, v);
}

/*
 * Parse a libpq connection string, "key=value key='quoted value'" or a
 * postgresql:// URI. Only keys shardpool uses or can safely ignore are
 * accepted, so a typo cannot be ignored silently.
 */
static bool parse_conninfo(struct pctx *p, const struct keydef *k, const char *val,
			   sp_node_conf_t *n)
{
	char *vals[CI_N] = {NULL};
	char *uri = NULL;
	const char *s;
	bool ok = false, any = false;

	memset(n, 0, sizeof(*n));
	if (!strncmp(val, "postgresql://", 13) || !strncmp(val, "postgres://", 11)) {
		if (!(uri = uri_to_conninfo(p, k, val)))
			return false;
		val = uri;
	}
	s = val;
	while (*s) {
		const char *kstart;
		size_t klen, cap = 16, used = 0;
		char *v;
		int which = -1;
		bool ignored = false;

		while (is_space(*s))
			s++;
		if (!*s)
			break;
		kstart = s;
		while (*s && *s != '=' && !is_space(*s))
			s++;
		klen = (size_t)(s - kstart);
		while (is_space(*s))
			s++;
		if (*s != '=') {
			key_fail(p, k,
				 "expected key=value pairs such as host=10.0.0.1 port=5432 "
				 "dbname=app, got '%.*s' without '='",
				 (int)klen, kstart);
			goto out;
		}
		s++;
		while (is_space(*s))
			s++;
		for (int i = 0; i < CI_N; i++)
			if (strlen(ci_names[i]) == klen && strncmp(ci_names[i], kstart, klen) == 0)
				which = i;
		for (size_t i = 0; which < 0 && i < sizeof(ci_ignored) / sizeof(*ci_ignored); i++)
			if (strlen(ci_ignored[i]) == klen && strncmp(ci_ignored[i], kstart, klen) == 0)
				ignored = true;
		if (which < 0 && !ignored) {
			key_fail(p, k,
				 "unknown connection key '%.*s' (expected host, hostaddr, port, "
				 "dbname, user, password, weight, sslmode, gssencmode, "
				 "channel_binding, connect_timeout, application_name or options)",
				 (int)klen, kstart);
			goto out;
		}
		if (which >= 0 && vals[which]) {
			key_fail(p, k, "'%s' is given twice", ci_names[which]);
			goto out;
		}
		v = xrealloc(NULL, cap);
		if (*s == '\'') {
			s++;
			while (*s && *s != '\'') {
				if (*s == '\\' && s[1])
					s++;
				if (used + 2 > cap)
					v = xrealloc(v, cap *= 2);
				v[used++] = *s++;
			}
			if (*s != '\'') {
				free(v);
				key_fail(p, k, "unterminated quoted value of '%.*s'", (int)klen, kstart);
				goto out;
			}
			s++;
		} else {
			while (*s && !is_space(*s)) {
				if (*s == '\\' && s[1])
					s++;
				if (used + 2 > cap)
					v = xrealloc(v, cap *= 2);
				v[used++] = *s++;
			}
		}
		v[used] = '\0';
		any = true;
		if (ignored) {
			free(v);
			continue;
		}
		vals[which] = v;
		if (used == 0 && which != CI_APPLICATION_NAME && which != CI_OPTIONS &&
		    which != CI_PASSWORD) {
			key_fail(p, k, "'%s' has an empty value", ci_names[which]);
			goto out;
		}
	}
	if (!any) {
		key_fail(p, k,
			 "expected a connection string such as host=10.0.0.1 port=5432 "
			 "dbname=app");
		goto out;
	}
	if ((vals[CI_HOST] && strchr(vals[CI_HOST], ',')) ||
	    (vals[CI_HOSTADDR] && strchr(vals[CI_HOSTADDR], ',')) ||
	    (vals[CI_PORT] && strchr(vals[CI_PORT], ','))) {
		key_fail(p, k, "one server per line: give each replica its own 'replica =' line");
		goto out;
	}
	n->port = 5432;
	n->weight = 1;
	if (vals[CI_PORT]) {
		long long port;

		if (!parse_ll(vals[CI_PORT], &port) || port < 1 || port > 65535) {
			key_fail(p, k, "port: expected a port number from 1 to 65535, got '%s'",
				 vals[CI_PORT]);
			goto out;
		}
		n->port = (int)port;
	}
	if (vals[CI_WEIGHT]) {
		long long w;

		if (!parse_ll(vals[CI_WEIGHT], &w) || w < 0 || w > 1000) {
			key_fail(p, k, "weight: expected an integer from 0 to 1000, got '%s'",
				 vals[CI_WEIGHT]);
			goto out;
		}
		n->weight = (int)w;
	}
	if (vals[CI_CONNECT_TIMEOUT]) {
		long long t;

		if (!parse_ll(vals[CI_CONNECT_TIMEOUT], &t) || t < 0 || t > 86400) {
			key_fail(p, k, "connect_timeout: expected seconds from 0 to 86400, got '%s'",
				 vals[CI_CONNECT_TIMEOUT]);
			goto out;
		}
		n->connect_timeout = (double)t;
	}
	{
		static const char *const ssl_ok[] = {"disable", "allow", "prefer", NULL};
		static const char *const ssl_no[] = {"require", "verify-ca", "verify-full", NULL};
		static const char *const pref_ok[] = {"disable", "prefer", NULL};
		static const char *const req[] = {"require", NULL};
		if ((vals[CI_SSLMODE] && !ci_one_of(p, k, "sslmode", vals[CI_SSLMODE], ssl_ok, ssl_no)) ||
		    (vals[CI_GSSENCMODE] &&
		     !ci_one_of(p, k, "gssencmode", vals[CI_GSSENCMODE], pref_ok, req)) ||
		    (vals[CI_CHANNEL_BINDING] &&
		     !ci_one_of(p, k, "channel_binding", vals[CI_CHANNEL_BINDING], pref_ok, req)))
			goto out;
	}
	n->conninfo = xstrdup(val);
	/* hostaddr is where libpq connects; host then only names the server */
	if (vals[CI_HOSTADDR]) {
		n->host = vals[CI_HOSTADDR];
		vals[CI_HOSTADDR] = NULL;
	} else {
		n->host = vals[CI_HOST] ? vals[CI_HOST] : xstrdup("127.0.0.1");
		vals[CI_HOST] = NULL;
	}
	n->dbname = vals[CI_DBNAME];
	n->user = vals[CI_USER];
	n->password = vals[CI_PASSWORD];
	n->application_name = vals[CI_APPLICATION_NAME];
	n->options = vals[CI_OPTIONS];
	vals[CI_DBNAME] = vals[CI_USER] = vals[CI_PASSWORD] = NULL;
	vals[CI_APPLICATION_NAME] = vals[CI_OPTIONS] = NULL;
	n->line = p->line;
	ok = true;
out:
	for (int i = 0; i < CI_N; i++)
		free(vals[i]);
	free(uri);
	return ok;
}

static bool set_primary(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	sp_shard_conf_t *s = obj;

	if (!parse_conninfo(p, k, val, &s->primary))
		return false;
	s->has_primary = true;
	return true;
}

/* read_functions / write_functions: one name per line, kept comma-separated. */
static bool set_funclist(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	char **list = (char **)field(obj, k);
	size_t old = *list ? strlen(*list) : 0, n = strlen(val);
	char *joined;

	if (n == 0 || strchr(val, ',') || strchr(val, ' ') || strchr(val, '('))
		return key_fail(p, k, "expected one function name (name or schema.name), got '%s'", val);
	joined = xrealloc(*list, old + n + 2);
	if (old)
		joined[old++] = ',';
	memcpy(joined + old, val, n + 1);
	*list = joined;
	return true;
}

static bool set_replica(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	sp_shard_conf_t *s = obj;
	sp_node_conf_t n;

	if (!parse_conninfo(p, k, val, &n))
		return false;
	s->replicas = xrealloc(s->replicas, sizeof(*s->replicas) * (size_t)(s->n_replicas + 1));
	s->replicas[s->n_replicas++] = n;
	return true;
}

static bool need_sharding(struct pctx *p, const struct keydef *k, sp_sharding_t want)
{
	sp_db_conf_t *db = cur_db(p);

	if (db->sharding == want)
		return true;
	return key_fail(p, k,
			"needs 'sharding = %s' in [database %s] (line %d), which uses "
			"sharding = %s",
			enum_name(shardings, (int)want), db->name, db->line,
			enum_name(shardings, (int)db->sharding));
}

static bool set_range(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	sp_db_conf_t *db = cur_db(p);
	const char *dots = strstr(val, "..");
	sp_shard_bound_t *b;

	if (!need_sharding(p, k, SP_SHARDING_RANGE))
		return false;
	b = &db->bounds[p->shard];
	if (!dots)
		return key_fail(p, k,
				"expected LO..HI such as 0..1000, 1000.. or ..0 (a side "
				"may be empty for an open end), got '%s'",
				val);
	b->lo = trimmed_dup(val, (size_t)(dots - val));
	b->hi = trimmed_dup(dots + 2, strlen(dots + 2));
	if (!b->lo[0]) {
		free(b->lo);
		b->lo = NULL;
	}
	if (!b->hi[0]) {
		free(b->hi);
		b->hi = NULL;
	}
	b->line = p->line;
	return true;
}

/* Equal as bounds: numerically if both are integers, else as text. */
static bool same_value(const char *a, const char *b)
{
	long long x, y;

	if (is_int_text(a, &x) && is_int_text(b, &y))
		return x == y;
	return strcmp(a, b) == 0;
}

static bool set_list(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	sp_db_conf_t *db = cur_db(p);
	sp_shard_bound_t *b;

	if (!need_sharding(p, k, SP_SHARDING_LIST))
		return false;
	b = &db->bounds[p->shard];
	if (!val[0])
		return key_fail(p, k, "expected a key value");
	for (int i = 0; i < db->n_bounds; i++) {
		for (int j = 0; j < db->bounds[i].n_values; j++) {
			if (!same_value(db->bounds[i].values[j], val))
				continue;
			if (i == p->shard)
				return key_fail(p, k, "value '%s' is listed twice", val);
			return key_fail(p, k, "value '%s' already belongs to shard %d (line %d)",
					val, i, db->bounds[i].line);
		}
	}
	b->values = xrealloc(b->values, sizeof(char *) * (size_t)(b->n_values + 1));
	b->values[b->n_values++] = xstrdup(val);
	if (!b->line)
		b->line = p->line;
	return true;
}

/* Split "a, b,c" into trimmed non-empty parts; false if a part is empty. */
static bool split_commas(const char *val, char ***out, int *n)
{
	const char *s = val;

	*out = NULL;
	*n = 0;
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		char *part = trimmed_dup(s, len);

		*out = xrealloc(*out, sizeof(char *) * (size_t)(*n + 1));
		(*out)[(*n)++] = part;
		if (!part[0])
			return false;
		if (!comma)
			return true;
		s = comma + 1;
	}
}

static void free_strv(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static bool set_key_cols(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	sp_table_conf_t *t = obj;
	char **cols;
	int n;

	if (!split_commas(val, &cols, &n)) {
		free_strv(cols, n);
		return key_fail(p, k,
				"expected a column name or comma-separated column names, "
				"got '%s'",
				val);
	}
	for (int i = 0; i < n; i++) {
		for (const char *c = cols[i]; *c; c++) {
			if (is_space(*c) || *c == '"' || *c == '\'') {
				key_fail(p, k,
					 "'%s' is not a column name (use commas between "
					 "columns; write names without quotes)",
					 cols[i]);
				free_strv(cols, n);
				return false;
			}
		}
		for (int j = 0; j < i; j++) {
			if (strcmp(cols[i], cols[j]) == 0) {
				key_fail(p, k, "column '%s' appears twice", cols[i]);
				free_strv(cols, n);
				return false;
			}
		}
	}
	t->key_cols = cols;
	t->n_keys = n;
	return true;
}

static bool set_key_types(struct pctx *p, const struct keydef *k, void *obj, const char *val)
{
	char **names;
	int n, e;

	if (!split_commas(val, &names, &n)) {
		free_strv(names, n);
		return key_fail(p, k, "expected a type or comma-separated types, got '%s'", val);
	}
	p->types = xcalloc((size_t)n, sizeof(*p->types));
	p->n_types = n;
	for (int i = 0; i < n; i++) {
		if (!parse_enum(key_types, names[i], &e)) {
			key_fail(p, k,
				 "unsupported key type '%s' (expected smallint, integer, "
				 "bigint, text, varchar or uuid)",
				 names[i]);
			free_strv(names, n);
			return false;
		}
		p->types[i] = (sp_key_type_t)e;
	}
	free_strv(names, n);
	return true;
}

/* ---- sections ---- */

/* Checks that need the whole section: run when the next one starts or at EOF. */
static bool finish_section(struct pctx *p)
{
	bool ok = true;

	if (p->sec == SEC_SHARD) {
		sp_shard_conf_t *s = &cur_db(p)->shards[p->shard];

		if (!s->has_primary)
			ok = fail(p, s->line,
				  "%s has no 'primary = CONNINFO' (every shard needs "
				  "exactly one primary)",
				  p->title);
	} else if (p->sec == SEC_TABLE) {
		sp_table_conf_t *t = &cur_db(p)->tables[p->table];
		int key_line = p->seen[key_index(find_key(SEC_TABLE, "key"))];
		int type_line = p->seen[key_index(find_key(SEC_TABLE, "type"))];

		if (t->replicated && t->n_keys > 0)
			ok = fail(p, key_line,
				  "%s: a replicated table has no shard key; remove "
				  "'key' or set replicated = no",
				  p->title);
		else if (t->replicated && p->n_types > 0)
			ok = fail(p, type_line,
				  "%s: a replicated table has no key type; remove "
				  "'type'",
				  p->title);
		else if (!t->replicated && t->n_keys == 0 && p->n_types > 0)
			ok = fail(p, type_line, "%s: 'type' without 'key = COLUMN'", p->title);
		else if (!t->replicated && t->n_keys == 0)
			ok = fail(p, t->line,
				  "%s needs 'key = COLUMN' (a sharded table) or "
				  "'replicated = yes'",
				  p->title);
		else if (t->n_keys > 0 && p->n_types == 0)
			ok = fail(p, key_line,
				  "%s: the key needs 'type = ...' (one type for all "
				  "key columns, or one per column)",
				  p->title);
		else if (t->n_keys > 0 && p->n_types != 1 && p->n_types != t->n_keys)
			ok = fail(p, type_line,
				  "%s: %d types for %d key columns; give one type "
				  "per key column or a single type for all",
				  p->title, p->n_types, t->n_keys);
		if (ok && t->n_keys > 0) {
			t->key_types = xcalloc((size_t)t->n_keys, sizeof(*t->key_types));
			for (int i = 0; i < t->n_keys; i++)
				t->key_types[i] = p->types[p->n_types == 1 ? 0 : i];
		}
		free(p->types);
		p->types = NULL;
		p->n_types = 0;
	}
	p->sec = SEC_NONE;
	return ok;
}

static bool valid_name(const char *s, bool allow_dot)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (is_space(*s) || *s == '[' || *s == ']' || (!allow_dot && *s == '.'))
			return false;
	return true;
}

static bool begin_database(struct pctx *p, const char *name)
{
	sp_config_t *cfg = p->cfg;
	int prev;
	sp_db_conf_t *db;

	if (!valid_name(name, false))
		return fail(p, p->line,
			    "[database %s]: a database name must be non-empty and "
			    "contain no '.' or spaces",
			    name);
	if (!strcmp(name, "shardpool") || !strcmp(name, "pgbouncer"))
		return fail(p, p->line,
			    "[database %s]: the name is taken by the admin console; name the "
			    "database otherwise",
			    name);
	prev = find_db_index(cfg, name);
	if (prev >= 0)
		return fail(p, p->line, "[database %s] already appears at line %d", name,
			    cfg->dbs[prev]->line);
	cfg->dbs = xrealloc(cfg->dbs, sizeof(*cfg->dbs) * (size_t)(cfg->n_dbs + 1));
	p->dbi = xrealloc(p->dbi, sizeof(*p->dbi) * (size_t)(cfg->n_dbs + 1));
	db = cfg->dbs[cfg->n_dbs] = xcalloc(1, sizeof(*db));
	db->index = cfg->n_dbs;
	memset(&p->dbi[cfg->n_dbs], 0, sizeof(p->dbi[0]));
	db->name = xstrdup(name);
	db->line = p->line;
	p->db = cfg->n_dbs++;
	p->seen = p->dbi[p->db].key_line;
	p->sec = SEC_DATABASE;
	return apply_defaults(p, SEC_DATABASE, db);
}

static bool lookup_db(struct pctx *p, const char *name, const char *what)
{
	p->db = find_db_index(p->cfg, name);
	if (p->db < 0)
		return fail(p, p->line,
			    "%s: database '%s' is not declared; add a [database %s] "
			    "section before this one",
			    what, name, name);
	return true;
}

static bool begin_shard(struct pctx *p, const char *arg)
{
	const char *dot = strrchr(arg, '.');
	char *dbname;
	long long idx;
	sp_db_conf_t *db;
	bool ok;

	if (!dot || !parse_ll(dot + 1, &idx) || !isdigit((unsigned char)dot[1]) || idx < 0 ||
	    idx >= MAX_SHARDS || dot == arg)
		return fail(p, p->line,
			    "[shard %s]: expected [shard DATABASE.N] with N from 0 to "
			    "%d",
			    arg, MAX_SHARDS - 1);
	dbname = xstrndup(arg, (size_t)(dot - arg));
	ok = lookup_db(p, dbname, p->title);
	free(dbname);
	if (!ok)
		return false;
	db = cur_db(p);
	if (idx < db->n_shards && db->shards[idx].line)
		return fail(p, p->line, "%s already appears at line %d", p->title,
			    db->shards[idx].line);
	if (idx >= db->n_shards) {
		int n = (int)idx + 1;

		db->shards = xrealloc(db->shards, sizeof(*db->shards) * (size_t)n);
		memset(&db->shards[db->n_shards], 0,
		       sizeof(*db->shards) * (size_t)(n - db->n_shards));
		for (int i = db->n_shards; i < n; i++)
			db->shards[i].index = i;
		if (db->sharding != SP_SHARDING_HASH) {
			db->bounds = xrealloc(db->bounds, sizeof(*db->bounds) * (size_t)n);
			memset(&db->bounds[db->n_bounds], 0,
			       sizeof(*db->bounds) * (size_t)(n - db->n_bounds));
			for (int i = db->n_bounds; i < n; i++)
				db->bounds[i].shard = i;
			db->n_bounds = n;
		}
		db->n_shards = n;
	}
	db->shards[idx].line = p->line;
	p->shard = (int)idx;
	memset(p->scratch_seen, 0, sizeof(p->scratch_seen));
	p->seen = p->scratch_seen;
	p->sec = SEC_SHARD;
	return true;
}

static bool same_opt_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool begin_table(struct pctx *p, const char *arg)
{
	const char *d1 = strchr(arg, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	char *dbname, *schema = NULL, *name;
	sp_db_conf_t *db;
	sp_table_conf_t *t;

	if (!d1 || d1 == arg || !d1[1] || (d2 && (d2 == d1 + 1 || !d2[1] || strchr(d2 + 1, '.'))))
		return fail(p, p->line,
			    "[table %s]: expected [table DATABASE.TABLE] or [table "
			    "DATABASE.SCHEMA.TABLE]",
			    arg);
	dbname = xstrndup(arg, (size_t)(d1 - arg));
	if (!lookup_db(p, dbname, p->title)) {
		free(dbname);
		return false;
	}
	free(dbname);
	if (d2) {
		schema = xstrndup(d1 + 1, (size_t)(d2 - d1 - 1));
		name = xstrdup(d2 + 1);
	} else {
		name = xstrdup(d1 + 1);
	}
	db = cur_db(p);
	for (int i = 0; i < db->n_tables; i++) {
		if (same_opt_str(db->tables[i].schema, schema) &&
		    strcmp(db->tables[i].name, name) == 0) {
			free(schema);
			free(name);
			return fail(p, p->line, "%s already appears at line %d", p->title,
				    db->tables[i].line);
		}
	}
	db->tables = xrealloc(db->tables, sizeof(*db->tables) * (size_t)(db->n_tables + 1));
	t = &db->tables[db->n_tables];
	memset(t, 0, sizeof(*t));
	t->schema = schema;
	t->name = name;
	t->line = p->line;
	p->table = db->n_tables++;
	memset(p->scratch_seen, 0, sizeof(p->scratch_seen));
	p->seen = p->scratch_seen;
	p->sec = SEC_TABLE;
	return apply_defaults(p, SEC_TABLE, t);
}

/* s[0..n) is "[...]" (trimmed, comment removed) */
static bool begin_section(struct pctx *p, const char *s, size_t n)
{
	const char *close = memchr(s, ']', n);
	char *inner, *word, *arg;
	bool ok;

	if (!finish_section(p))
		return false;
	if (!close)
		return fail(p, p->line, "missing ']' at the end of the section header");
	if (close != s + n - 1)
		return fail(p, p->line,
			    "unexpected text after ']' (a comment needs a space before "
			    "';' or '#')");
	inner = trimmed_dup(s + 1, n - 2);
	word = inner;
	arg = inner;
	while (*arg && !is_space(*arg))
		arg++;
	if (*arg) {
		*arg++ = '\0';
		while (is_space(*arg))
			arg++;
	}
	snprintf(p->title, sizeof(p->title), "[%s%s%s]", word, *arg ? " " : "", arg);

	if (strcmp(word, "shardpool") == 0 && !*arg) {
		if (p->global_line) {
			ok = fail(p, p->line, "[shardpool] already appears at line %d",
				  p->global_line);
		} else {
			p->global_line = p->line;
			p->seen = p->global_seen;
			p->sec = SEC_GLOBAL;
			ok = true;
		}
	} else if (strcmp(word, "database") == 0 && *arg) {
		ok = begin_database(p, arg);
	} else if (strcmp(word, "shard") == 0 && *arg) {
		ok = begin_shard(p, arg);
	} else if (strcmp(word, "table") == 0 && *arg) {
		ok = begin_table(p, arg);
	} else {
		const char *hint = "";

		if (strcmp(word, "pgbouncer") == 0)
			hint = " (global settings go in [shardpool])";
		else if (strcmp(word, "databases") == 0)
			hint = " (each database has its own [database NAME] section)";
		ok = fail(p, p->line,
			  "unknown section %s: expected [shardpool], [database NAME], "
			  "[shard DATABASE.N] or [table DATABASE.TABLE]%s",
			  p->title, hint);
	}
	free(inner);
	return ok;
}

static void *section_obj(struct pctx *p)
{
	switch (p->sec) {
	case SEC_GLOBAL:
		return p->cfg;
	case SEC_DATABASE:
		return cur_db(p);
	case SEC_SHARD:
		return &cur_db(p)->shards[p->shard];
	case SEC_TABLE:
		return &cur_db(p)->tables[p->table];
	default:
		return NULL;
	}
}

/* ---- inih glue ---- */

/*
 * Hands inih one cleaned line at a time (see the file comment). Returns NULL
 * at the end of the text or after the first error, which ends ini_parse.
 */
static char *read_line(char *buf, int num, void *stream)
{
	struct pctx *p = stream;
	const char *s, *nl;
	size_t n;

	if (p->failed || p->pos >= p->len)
		return NULL;
	s = p->text + p->pos;
	nl = memchr(s, '\n', p->len - p->pos);
	n = nl ? (size_t)(nl - s) : p->len - p->pos;
	p->pos += n + (nl ? 1 : 0);
	p->line++;
	if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		n -= 3;
	}
	if (memchr(s, '\0', n)) {
		fail(p, p->line, "NUL byte in the file");
		return NULL;
	}
	while (n > 0 && is_space(*s)) {
		s++;
		n--;
	}
	if (n > 0 && (*s == ';' || *s == '#'))
		n = 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] == ';' || s[i] == '#') && is_space(s[i - 1])) {
			n = i;
			break;
		}
	}
	while (n > 0 && is_space(s[n - 1]))
		n--;
	if (n + 1 > (size_t)num) {
		fail(p, p->line,
		     "line too long (max %d characters); split the value or repeat "
		     "the key",
		     num - 1);
		return NULL;
	}
	if (n > 0 && *s == '[') {
		if (!begin_section(p, s, n))
			return NULL;
	} else if (n > 0 && !memchr(s, '=', n) && !memchr(s, ':', n)) {
		fail(p, p->line,
		     "expected 'key = value', a [section] header or a comment, got "
		     "'%.*s'",
		     (int)(n > 60 ? 60 : n), s);
		return NULL;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *p = user;
	const struct keydef *k;
	const char *best = NULL;
	int idx, best_d = 3;

	(void)section; /* read_line tracks sections itself, with line numbers */
	if (p->failed)
		return 0;
	if (p->sec == SEC_NONE)
		return fail(p, p->line,
			    "'%s' is outside any section; put it under [shardpool] "
			    "or a [database NAME] section",
			    name);
	k = find_key(p->sec, name);
	if (!k) {
		for (int s = 0; s < SEC_COUNT; s++)
			if (s != (int)p->sec && find_key((enum sec)s, name))
				return fail(p, p->line,
					    "key '%s' belongs in a %s section, not in %s", name,
					    sections[s].header, p->title);
		for (int i = 0; i < N_KEYS; i++) {
			int d;

			if (keys[i].sec != p->sec)
				continue;
			d = distance(name, keys[i].name);
			if (d < best_d) {
				best_d = d;
				best = keys[i].name;
			}
		}
		if (best)
			return fail(p, p->line, "unknown key '%s' in %s; did you mean '%s'?", name,
				    p->title, best);
		return fail(p, p->line,
			    "unknown key '%s' in %s (see shardpool --describe-config "
			    "for the keys of each section)",
			    name, p->title);
	}
	idx = key_index(k);
	if (p->seen[idx] && !k->repeatable) {
		if (k->dup_hint)
			return key_fail(p, k, "already set at line %d; %s", p->seen[idx],
					k->dup_hint);
		return key_fail(p, k, "already set at line %d", p->seen[idx]);
	}
	if (!p->seen[idx])
		p->seen[idx] = p->line;
	return set_value(p, k, section_obj(p), value) ? 1 : 0;
}

/* ---- checks of the whole file ---- */

static int db_key_line(struct pctx *p, int db, const char *name)
{
	return p->dbi[db].key_line[key_index(find_key(SEC_DATABASE, name))];
}

static int global_key_line(struct pctx *p, const char *name)
{
	return p->global_seen[key_index(find_key(SEC_GLOBAL, name))];
}

/* Compares range bounds; NULL is -infinity for lo and +infinity for hi. */
static int cmp_bound(const char *a, const char *b, bool numeric)
{
	if (numeric) {
		long long x = 0, y = 0;

		is_int_text(a, &x);
		is_int_text(b, &y);
		return x < y ? -1 : x > y;
	}
	return strcmp(a, b);
}

/* lo order, -infinity first */
static int cmp_lo(const sp_shard_bound_t *x, const sp_shard_bound_t *y, bool numeric)
{
	if (!x->lo || !y->lo)
		return (x->lo != NULL) - (y->lo != NULL);
	return cmp_bound(x->lo, y->lo, numeric);
}

static const char *show(const char *s, const char *open)
{
	return s ? s : open;
}

static bool check_ranges(struct pctx *p, sp_db_conf_t *db, bool numeric)
{
	int *order = xcalloc((size_t)db->n_bounds, sizeof(int));
	bool ok = true;

	for (int i = 0; i < db->n_bounds; i++) {
		const sp_shard_bound_t *b = &db->bounds[i];

		order[i] = i;
		if (b->lo && b->hi && cmp_bound(b->lo, b->hi, numeric) >= 0) {
			free(order);
			return fail(p, b->line,
				    "[shard %s.%d] range %s..%s is empty: the lower "
				    "bound must be below the upper bound",
				    db->name, i, b->lo, b->hi);
		}
	}
	/* insertion sort: a few shards, and no global state for qsort */
	for (int i = 1; i < db->n_bounds; i++) {
		int v = order[i], j = i;

		while (j > 0 && cmp_lo(&db->bounds[order[j - 1]], &db->bounds[v], numeric) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	for (int i = 1; i < db->n_bounds && ok; i++) {
		const sp_shard_bound_t *a = &db->bounds[order[i - 1]], *b = &db->bounds[order[i]];
		int c;

		if (!a->hi || !b->lo) {
			c = 1; /* an open end reaching into the next range: overlap */
		} else {
			c = cmp_bound(a->hi, b->lo, numeric);
		}
		if (c > 0)
			ok = fail(p, b->line,
				  "[shard %s.%d] range %s..%s overlaps range %s..%s of "
				  "shard %d (line %d)",
				  db->name, b->shard, show(b->lo, ""), show(b->hi, ""),
				  show(a->lo, ""), show(a->hi, ""), a->shard, a->line);
		else if (c < 0)
			ok =
			    fail(p, b->line,
				 "[shard %s.%d] range %s..%s leaves a gap after range "
				 "%s..%s of shard %d (line %d): values from %s to %s "
				 "have no shard; make each range start where the "
				 "previous one ends",
				 db->name, b->shard, show(b->lo, ""), show(b->hi, ""),
				 show(a->lo, ""), show(a->hi, ""), a->shard, a->line, a->hi, b->lo);
	}
	free(order);
	return ok;
}

/* Bounds are all integers (numeric) or all text; *numeric tells which. */
static bool bound_kind(struct pctx *p, sp_db_conf_t *db, bool *numeric)
{
	const char *first_int = NULL, *first_text = NULL;
	int int_line = 0, text_line = 0;

	for (int i = 0; i < db->n_bounds; i++) {
		sp_shard_bound_t *b = &db->bounds[i];
		const char *vals[2] = {b->lo, b->hi};

		for (int j = 0; j < 2 + b->n_values; j++) {
			const char *v = j < 2 ? vals[j] : b->values[j - 2];

			if (!v)
				continue;
			if (is_int_text(v, NULL)) {
				if (!first_int) {
					first_int = v;
					int_line = b->line;
				}
			} else if (!first_text) {
				first_text = v;
				text_line = b->line;
			}
		}
	}
	if (first_int && first_text)
		return fail(p, text_line > int_line ? text_line : int_line,
			    "[database %s]: %s values mix integers ('%s', line %d) and text ('%s', "
			    "line %d); use one kind for all shards",
			    db->name, db->sharding == SP_SHARDING_RANGE ? "range" : "list",
			    first_int, int_line, first_text, text_line);
	*numeric = first_int != NULL;
	return true;
}

static bool is_int_key(sp_key_type_t t)
{
	return t == SP_KEY_SMALLINT || t == SP_KEY_INTEGER || t == SP_KEY_BIGINT;
}

static bool check_db(struct pctx *p, int di)
{
	sp_db_conf_t *db = p->cfg->dbs[di];
	bool numeric = false;
	int line;

	if (db->n_shards == 0)
		return fail(p, db->line,
			    "[database %s] has no [shard %s.0] section; every database "
			    "needs at least one shard with a primary",
			    db->name, db->name);
	for (int i = 0; i < db->n_shards; i++) {
		if (db->shards[i].line)
			continue;
		int next = i + 1;

		while (!db->shards[next].line)
			next++;
		return fail(
		    p, db->shards[next].line,
		    "[shard %s.%d] is missing: the shards of database %s must be numbered 0 "
		    "to %d without gaps",
		    db->name, i, db->name, db->n_shards - 1);
	}
	if (db->shards_declared >= 0 && db->shards_declared != db->n_shards)
		return fail(p, db_key_line(p, di, "shards"),
			    "[database %s] shards = %d, but there are %d [shard %s.N] sections "
			    "(0 to %d)",
			    db->name, db->shards_declared, db->n_shards, db->name,
			    db->n_shards - 1);
	if (db->default_shard >= db->n_shards)
		return fail(p, db_key_line(p, di, "default_shard"),
			    "[database %s] default_shard = %d, but the shards are 0 to %d",
			    db->name, db->default_shard, db->n_shards - 1);
	line = db_key_line(p, di, "min_pool_size");
	if (db->min_pool_size > sp_config_db_pool_size(p->cfg, db))
		return fail(p, line,
			    "[database %s] min_pool_size = %d is larger than its pool size %d",
			    db->name, db->min_pool_size, sp_config_db_pool_size(p->cfg, db));
	if (db->sharding == SP_SHARDING_HASH)
		return true;

	for (int i = 0; i < db->n_bounds; i++) {
		const sp_shard_bound_t *b = &db->bounds[i];

		if (db->sharding == SP_SHARDING_RANGE && !b->line)
			return fail(p, db->shards[i].line,
				    "[shard %s.%d] needs 'range = LO..HI' "
				    "because [database %s] uses sharding = "
				    "range",
				    db->name, i, db->name);
		if (db->sharding == SP_SHARDING_LIST && b->n_values == 0)
			return fail(p, db->shards[i].line,
				    "[shard %s.%d] needs at least one "
				    "'list = VALUE' because [database %s] "
				    "uses sharding = list",
				    db->name, i, db->name);
	}
	if (!bound_kind(p, db, &numeric))
		return false;
	if (db->sharding == SP_SHARDING_RANGE && !check_ranges(p, db, numeric))
		return false;
	for (int i = 0; i < db->n_tables; i++) {
		const sp_table_conf_t *t = &db->tables[i];

		if (t->replicated)
			continue;
		if (t->n_keys != 1)
			return fail(p, t->line,
				    "[table %s.%s%s%s]: %s sharding uses a single key "
				    "column, this key has %d",
				    db->name, t->schema ? t->schema : "", t->schema ? "." : "",
				    t->name, enum_name(shardings, (int)db->sharding), t->n_keys);
		if (numeric && !is_int_key(t->key_types[0]))
			return fail(p, t->line,
				    "[table %s.%s%s%s]: the key column is %s, but the "
				    "%s values of database %s are integers",
				    db->name, t->schema ? t->schema : "", t->schema ? "." : "",
				    t->name, enum_name(key_types, (int)t->key_types[0]),
				    enum_name(shardings, (int)db->sharding), db->name);
		if (!numeric && is_int_key(t->key_types[0]))
			return fail(p, t->line,
				    "[table %s.%s%s%s]: the key column is %s, but the "
				    "%s values of database %s are text",
				    db->name, t->schema ? t->schema : "", t->schema ? "." : "",
				    t->name, enum_name(key_types, (int)t->key_types[0]),
				    enum_name(shardings, (int)db->sharding), db->name);
	}
	return true;
}

/* The rules between [shardpool] keys. */
static bool check_globals(struct pctx *p)
{
	sp_config_t *cfg = p->cfg;

	if ((cfg->auth_type == SP_AUTH_MD5 || cfg->auth_type == SP_AUTH_SCRAM) &&
	    !cfg->auth_file[0]) {
		int line = global_key_line(p, "auth_type");

		return fail(p, line,
			    "[shardpool] auth_type = %s%s needs auth_file = PATH (a file "
			    "of \"user\" \"secret\" lines); or set auth_type = trust",
			    enum_name(auth_types, (int)cfg->auth_type),
			    line ? "" : " (the default)");
	}
	if (cfg->min_pool_size > cfg->default_pool_size)
		return fail(p, global_key_line(p, "min_pool_size"),
			    "[shardpool] min_pool_size = %d is larger than default_pool_size = %d",
			    cfg->min_pool_size, cfg->default_pool_size);
	/* caught here rather than as "Address already in use" at start (--check-config) */
	if (cfg->metrics_port > 0 && cfg->metrics_port == cfg->listen_port &&
	    cfg->listen_addr[0] &&
	    (strcmp(cfg->metrics_addr, cfg->listen_addr) == 0 ||
	     strcmp(cfg->metrics_addr, "*") == 0 || strcmp(cfg->listen_addr, "*") == 0))
		return fail(p, global_key_line(p, "metrics_port"),
			    "[shardpool] metrics_port = %d is listen_port too: give the metrics "
			    "endpoint a port of its own (or another metrics_addr)",
			    cfg->metrics_port);
	return true;
}

static bool check_all(struct pctx *p)
{
	sp_config_t *cfg = p->cfg;

	if (!check_globals(p))
		return false;
	if (cfg->n_dbs == 0)
		return fail(p, 0, "no [database NAME] section: there is nothing to serve");
	for (int i = 0; i < cfg->n_dbs; i++)
		if (!check_db(p, i))
			return false;
	return true;
}

static char *read_whole_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			if (cap >= MAX_FILE_SIZE) {
				snprintf(err, errlen, "%s: file larger than %d bytes", path,
					 MAX_FILE_SIZE);
				free(buf);
				fclose(f);
				return NULL;
			}
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap + 1);
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* ---- public API ---- */

sp_config_t *sp_config_load(const char *path, char *err, size_t errlen)
{
	struct pctx p;
	const char *slash;
	char dummy[1];
	char *text;
	size_t len = 0;
	int rc;

	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	text = read_whole_file(path, &len, err, errlen);
	if (!text)
		return NULL;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	p.text = text;
	p.len = len;
	p.sec = SEC_NONE;
	slash = strrchr(path, '/');
	p.dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
	p.cfg = xcalloc(1, sizeof(*p.cfg));
	p.cfg->path = xstrdup(path);

	if (apply_defaults(&p, SEC_GLOBAL, p.cfg)) {
		rc = ini_parse_stream(read_line, &p, on_key, &p);
		if (!p.failed && rc != 0)
			fail(&p, rc > 0 ? rc : 0, "the INI parser rejected this line (%d)", rc);
		if (!p.failed && finish_section(&p))
			check_all(&p);
	}
	free(p.types);
	free(p.dbi);
	free(p.dir);
	free(text);
	if (p.failed) {
		sp_config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

void sp_config_free(sp_config_t *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < N_KEYS; i++)
		if (keys[i].sec == SEC_GLOBAL &&
		    (keys[i].type == KT_STRING || keys[i].type == KT_PATH || keys[i].type == KT_SPECIAL))
			free(*(char **)field(cfg, &keys[i]));
	for (int i = 0; i < cfg->n_dbs; i++)
		if (cfg->dbs[i]) {
			free_db(cfg->dbs[i]);
			free(cfg->dbs[i]);
		}
	free(cfg->dbs);
	for (int i = 0; i < cfg->n_retired; i++) {
		for (int j = 0; j < cfg->retired[i].n_replicas; j++)
			free_node(&cfg->retired[i].replicas[j]);
		free(cfg->retired[i].replicas);
	}
	free(cfg->retired);
	free(cfg->path);
	free(cfg);
}

bool sp_config_str_same(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

bool sp_config_same_server(const sp_node_conf_t *a, const sp_node_conf_t *b)
{
	return sp_config_str_same(a->host, b->host) && a->port == b->port && sp_config_str_same(a->dbname, b->dbname) &&
	       sp_config_str_same(a->user, b->user) && sp_config_str_same(a->password, b->password) &&
	       a->connect_timeout == b->connect_timeout && sp_config_str_same(a->application_name, b->application_name) &&
	       sp_config_str_same(a->options, b->options);
}

void sp_config_adopt_db(sp_config_t *cfg, sp_config_t *from, int i)
{
	sp_db_conf_t *db = from->dbs[i];

	from->dbs[i] = NULL;
	cfg->dbs = xrealloc(cfg->dbs, sizeof(*cfg->dbs) * (size_t)(cfg->n_dbs + 1));
	db->index = cfg->n_dbs;
	cfg->dbs[cfg->n_dbs++] = db;
}

void sp_config_replace_replicas(sp_config_t *cfg, sp_shard_conf_t *run, sp_shard_conf_t *fresh)
{
	sp_shard_conf_t *old;

	cfg->retired = xrealloc(cfg->retired, sizeof(*cfg->retired) * (size_t)(cfg->n_retired + 1));
	old = &cfg->retired[cfg->n_retired++];
	memset(old, 0, sizeof(*old));
	old->replicas = run->replicas;
	old->n_replicas = run->n_replicas;
	run->replicas = fresh->replicas;
	run->n_replicas = fresh->n_replicas;
	fresh->replicas = NULL;
	fresh->n_replicas = 0;
}

const sp_db_conf_t *sp_config_find_db(const sp_config_t *cfg, const char *name)
{
	int i = cfg && name ? find_db_index(cfg, name) : -1;

	return i >= 0 ? cfg->dbs[i] : NULL;
}

int sp_config_db_pool_size(const sp_config_t *cfg, const sp_db_conf_t *db)
{
	return db && db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
}

sp_pool_mode_t sp_config_db_pool_mode(const sp_config_t *cfg, const sp_db_conf_t *db)
{
	return db && db->pool_mode >= 0 ? (sp_pool_mode_t)db->pool_mode : cfg->pool_mode;
}

bool sp_config_user_in_list(const char *list, const char *user)
{
	size_t ulen;

	if (!list || !user || !*user)
		return false;
	ulen = strlen(user);
	while (*list) {
		const char *end = strchr(list, ',');
		size_t n = end ? (size_t)(end - list) : strlen(list);
		const char *s = list;

		while (n > 0 && is_space(*s)) {
			s++;
			n--;
		}
		while (n > 0 && is_space(s[n - 1]))
			n--;
		if (n == ulen && memcmp(s, user, n) == 0)
			return true;
		if (!end)
			break;
		list = end + 1;
	}
	return false;
}

static void print_node(FILE *out, const char *role, const sp_node_conf_t *n)
{
	fprintf(out, "    %-8s %s:%d/%s", role, n->host, n->port,
		n->dbname ? n->dbname : "(client's database)");
	if (n->user)
		fprintf(out, " user %s", n->user);
	if (n->password)
		fprintf(out, " (password set)");
	if (n->weight != 1)
		fprintf(out, " weight %d", n->weight);
	fputc('\n', out);
}

static const char *key_type_name(sp_key_type_t t)
{
	return enum_name(key_types, (int)t);
}

void sp_config_print_summary(const sp_config_t *cfg, FILE *out)
{
	char buf[64];

	fprintf(out, "configuration %s\n", cfg->path ? cfg->path : "(none)");
	fprintf(out, "listen: %s:%d", cfg->listen_addr[0] ? cfg->listen_addr : "(no TCP)",
		cfg->listen_port);
	if (cfg->unix_socket_dir[0])
		fprintf(out, ", unix socket %s/.s.PGSQL.%d", cfg->unix_socket_dir,
			cfg->listen_port);
	fprintf(out, ", %d worker%s\n", cfg->workers, cfg->workers == 1 ? "" : "s");
	fprintf(out, "pool mode: %s, pool size %d (min %d, reserve %d), max_client_conn %d\n",
		enum_name(pool_modes, (int)cfg->pool_mode), cfg->default_pool_size,
		cfg->min_pool_size, cfg->reserve_pool_size, cfg->max_client_conn);
	fprintf(out, "auth: %s%s%s\n", enum_name(auth_types, (int)cfg->auth_type),
		cfg->auth_file[0] ? ", auth_file " : "", cfg->auth_file);
	fmt_bytes(cfg->max_replica_lag, buf, sizeof(buf));
	fprintf(out, "replicas: health check every %gs, max lag %s%s\n", cfg->health_check_period,
		buf, cfg->read_your_writes ? ", read-your-writes" : "");
	for (int i = 0; i < cfg->n_dbs; i++) {
		const sp_db_conf_t *db = cfg->dbs[i];

		fprintf(out, "\ndatabase %s: %d shard%s", db->name, db->n_shards,
			db->n_shards == 1 ? "" : "s");
		if (db->n_shards > 1)
			fprintf(out, " by %s", enum_name(shardings, (int)db->sharding));
		fprintf(out, ", pool %s/%d, reads %s, primary reads %s\n",
			enum_name(pool_modes, (int)sp_config_db_pool_mode(cfg, db)),
			sp_config_db_pool_size(cfg, db),
			db->read_replicas ? "on replicas" : "on the primary",
			enum_name(primary_reads, (int)db->primary_reads));
		for (int j = 0; j < db->n_shards; j++) {
			const sp_shard_conf_t *s = &db->shards[j];

			fprintf(out, "  shard %d", s->index);
			if (db->sharding == SP_SHARDING_RANGE && j < db->n_bounds)
				fprintf(out, " range %s..%s", show(db->bounds[j].lo, ""),
					show(db->bounds[j].hi, ""));
			if (db->sharding == SP_SHARDING_LIST && j < db->n_bounds) {
				fprintf(out, " list");
				for (int v = 0; v < db->bounds[j].n_values; v++)
					fprintf(out, "%s%s", v ? ", " : " ",
						db->bounds[j].values[v]);
			}
			if (db->n_shards > 1 && j == db->default_shard)
				fprintf(out, " (default shard)");
			fputc('\n', out);
			print_node(out, "primary", &s->primary);
			for (int r = 0; r < s->n_replicas; r++)
				print_node(out, "replica", &s->replicas[r]);
		}
		for (int j = 0; j < db->n_tables; j++) {
			const sp_table_conf_t *t = &db->tables[j];

			fprintf(out, "  table %s%s%s: ", t->schema ? t->schema : "",
				t->schema ? "." : "", t->name);
			if (t->replicated) {
				fprintf(out, "replicated on every shard\n");
				continue;
			}
			fprintf(out, "key");
			for (int c = 0; c < t->n_keys; c++)
				fprintf(out, "%s%s %s", c ? ", " : " (", t->key_cols[c],
					key_type_name(t->key_types[c]));
			fprintf(out, ")\n");
		}
	}
}

static const char *type_label(const struct keydef *k)
{
	switch (k->type) {
	case KT_INT:
		return "int";
	case KT_STRING:
		return "string";
	case KT_PATH:
		return "path";
	case KT_BOOL:
		return "bool";
	case KT_SECONDS:
		return "seconds";
	case KT_MSEC:
		return "milliseconds";
	case KT_BYTES:
	case KT_BYTES64:
		return "bytes";
	case KT_ENUM:
		return "enum";
	case KT_SPECIAL:
		return k->type_name;
	}
	return "?";
}

bool sp_config_key_at(int i, sp_config_item_t *out)
{
	const struct keydef *k;

	if (i < 0 || i >= N_KEYS)
		return false;
	k = &keys[i];
	out->section = sections[k->sec].name;
	out->name = k->name;
	out->type = type_label(k);
	out->def = k->def ? k->def : "";
	out->reloadable = k->reloadable;
	out->help = k->help;
	return true;
}

const char *sp_config_value_str(const sp_config_t *cfg, const char *name, char *buf, size_t len)
{
	const struct keydef *k = find_key(SEC_GLOBAL, name);

	if (len > 0)
		buf[0] = '\0';
	if (!k || !cfg || len == 0)
		return NULL;
	format_value(k, cfg, buf, len);
	return buf;
}

/* Markdown table cell: '|' would end the cell */
static void md_cell(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else
			fputc(*s, out);
	}
}

void sp_config_write_reference(FILE *out)
{
	fputs("# shardpool configuration reference\n\n"
	      "This page is generated from the key table in src/config.c by\n"
	      "`shardpool --describe-config`; edit the table, not this page.\n\n"
	      "## File format\n\n"
	      "- An INI file: `[section]` headers, then `key = value` lines. Key names are "
	      "case-insensitive.\n"
	      "- Comments: a line starting with `;` or `#`, or the rest of a line after a `;` or "
	      "`#` that follows a space (`pool_size = 10 ; comment`). A value therefore cannot "
	      "contain ` ;` or ` #`.\n"
	      "- One value per line. A line may hold at most 199 characters (indentation and "
	      "comments do not count); keys such as `replica` and `list` are repeated rather "
	      "than written as long lists. Indentation is ignored: there are no continuation "
	      "lines.\n"
	      "- A key may be set once per section, except `replica` and `list`.\n"
	      "- Durations: a number with an optional unit `ms`, `s`, `min` or `h`. A plain "
	      "number is seconds, or milliseconds for keys whose name ends in `_ms`.\n"
	      "- Sizes: bytes, with an optional unit `kB`, `MB` or `GB` (1024-based).\n"
	      "- Booleans: `yes`/`no`, `on`/`off`, `true`/`false`, `1`/`0`.\n"
	      "- Relative paths (auth_file, log_file, pid_file) are relative to the directory of "
	      "the configuration file.\n"
	      "- Errors stop loading and read `FILE:LINE: message`. "
	      "`shardpool --check-config` loads the file and prints a summary.\n"
	      "- Only the keys marked reloadable change on RELOAD or SIGHUP; the others need a "
	      "restart.\n",
	      out);
	for (int s = 0; s < SEC_COUNT; s++) {
		fprintf(out, "\n## %s\n\n%s\n\n", sections[s].header, sections[s].help);
		fputs("| Key | Type | Default | Reloadable | Description |\n", out);
		fputs("| --- | --- | --- | --- | --- |\n", out);
		for (int i = 0; i < N_KEYS; i++) {
			const struct keydef *k = &keys[i];

			if ((int)k->sec != s)
				continue;
			fprintf(out, "| `%s` | ", k->name);
			if (k->type == KT_ENUM) {
				char choices[256];

				enum_choices(k->enums, choices, sizeof(choices), ", ");
				fprintf(out, "enum: ");
				md_cell(out, choices);
			} else {
				md_cell(out, type_label(k));
			}
			fputs(" | ", out);
			if (!k->def)
				fputs("(none)", out);
			else if (k->def[0] == '(')
				md_cell(out, k->def);
			else if (!k->def[0])
				fputs("(empty)", out);
			else
				fprintf(out, "`%s`", k->def);
			fprintf(out, " | %s | ", k->reloadable ? "yes" : "no");
			md_cell(out, k->help);
			if (k->repeatable)
				fputs(" Repeatable.", out);
			fputs(" |\n", out);
		}
	}
}

static size_t value_size(enum ktype t)
{
	switch (t) {
	case KT_BOOL:
		return sizeof(bool);
	case KT_SECONDS:
		return sizeof(double);
	case KT_BYTES64:
		return sizeof(int64_t);
	case KT_STRING:
	case KT_PATH:
		return sizeof(char *);
	default:
		return sizeof(int);
	}
}

sp_config_set_result_t sp_config_set(sp_config_t *cfg, const char *name, const char *value, char *err,
				     size_t errlen)
{
	const struct keydef *k = find_key(SEC_GLOBAL, name);
	struct pctx p;
	sp_config_t tmp;
	char **str = NULL;

	if (!k) {
		snprintf(err, errlen, "unrecognized configuration parameter \"%s\"", name);
		return SP_CONFIG_SET_UNKNOWN;
	}
	if (!k->reloadable || k->type == KT_PATH || k->type == KT_SPECIAL) {
		snprintf(err, errlen, "%s cannot be changed with SET: %s", k->name,
			 k->reloadable ? "edit the file and RELOAD" : "edit the file and restart shardpool");
		return SP_CONFIG_SET_FIXED;
	}
	/* set it on a copy, check the rules between keys, then keep it */
	tmp = *cfg;
	if (k->type == KT_STRING) {
		str = (char **)field(&tmp, k);
		*str = NULL; /* set_value replaces the copy's string, never the running one */
	}
	memset(&p, 0, sizeof(p));
	p.path = "SET";
	p.err = err;
	p.errlen = errlen;
	p.cfg = &tmp;
	snprintf(p.title, sizeof(p.title), "[shardpool]");
	if (!set_value(&p, k, &tmp, value) || !check_globals(&p)) {
		if (str)
			free(*str);
		return SP_CONFIG_SET_INVALID;
	}
	if (str) {
		char **run = (char **)field(cfg, k);
		free(*run);
		*run = *str;
	} else {
		memcpy(field(cfg, k), cfield(&tmp, k), value_size(k->type));
	}
	return SP_CONFIG_SET_OK;
}

void sp_config_apply_reloadable(sp_config_t *dst, const sp_config_t *src)
{
	for (int i = 0; i < N_KEYS; i++) {
		const struct keydef *k = &keys[i];

		if (k->sec != SEC_GLOBAL || !k->reloadable)
			continue;
		if (k->type == KT_SPECIAL) {
			/* global special keys are the function lists: strings, NULL when unset */
			const char *s = *(char *const *)cfield(src, k);
			char **d = (char **)field(dst, k);

			free(*d);
			*d = s ? xstrdup(s) : NULL;
		} else if (k->type == KT_STRING || k->type == KT_PATH) {
			const char *s = *(char *const *)cfield(src, k);

			replace_str((char **)field(dst, k), s ? s : "");
		} else {
			memcpy(field(dst, k), cfield(src, k), value_size(k->type));
		}
	}
}
