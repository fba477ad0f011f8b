/*
 * config.h - shardpool's configuration: the in-memory form of the INI file.
 *
 * One static key table (config.c) drives parsing, validation, SHOW CONFIG and
 * doc/configuration.md. A loaded sp_config_t is immutable: RELOAD/SIGHUP builds
 * a new one and the caller swaps it in, copying only reloadable keys.
 */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
	SP_POOL_SESSION = 0,
	SP_POOL_TRANSACTION = 1,
	SP_POOL_STATEMENT = 2
} sp_pool_mode_t;

typedef enum { SP_AUTH_TRUST = 0, SP_AUTH_MD5 = 1, SP_AUTH_SCRAM = 2 } sp_auth_type_t;

typedef enum { SP_SHARDING_HASH = 0, SP_SHARDING_RANGE = 1, SP_SHARDING_LIST = 2 } sp_sharding_t;

typedef enum {
	SP_KEY_SMALLINT = 0,
	SP_KEY_INTEGER,
	SP_KEY_BIGINT,
	SP_KEY_TEXT,
	SP_KEY_VARCHAR,
	SP_KEY_UUID
} sp_key_type_t;

typedef enum { SP_PRIMARY_READS_NO = 0, SP_PRIMARY_READS_YES, SP_PRIMARY_READS_FALLBACK } sp_primary_reads_t;

/* One PostgreSQL server, parsed from a libpq-style "key=value ..." string or URI. */
typedef struct sp_node_conf {
	char *conninfo; /* the string as written, a URI as key='value' pairs */
	char *host;     /* default "127.0.0.1"; a path starting with '/' is a unix socket dir;
			   hostaddr when given */
	int port;       /* default 5432 */
	char *dbname;   /* NULL: the client's database name */
	char *user;     /* NULL: the client's user name */
	char *password; /* NULL: use the client's secret from auth_file */
	int weight;     /* replicas: relative share of reads, default 1 */
	double connect_timeout; /* seconds; 0: server_connect_timeout */
	char *application_name; /* NULL: none; sent at login, a client's own value wins */
	char *options;		/* NULL: none; the startup packet's options ("-c name=value") */
	int line;       /* line in the config file, for messages */
} sp_node_conf_t;

typedef struct sp_shard_conf {
	int index;
	bool has_primary;
	sp_node_conf_t primary;
	sp_node_conf_t *replicas;
	int n_replicas;
	int line;
} sp_shard_conf_t;

/*
 * range / list boundaries: one entry per shard, bounds[i].shard == i. Bounds
 * are either all integers (compared as numbers) or all text (compared
 * bytewise); consecutive ranges meet exactly and list values are unique.
 */
typedef struct sp_shard_bound {
	int shard;
	char *lo; /* range: inclusive lower bound (NULL = -infinity), as text */
	char *hi; /* range: exclusive upper bound (NULL = +infinity), as text */
	char **values; /* list: values assigned to this shard, as text */
	int n_values;
	int line; /* line of the range key or of the first list value */
} sp_shard_bound_t;

typedef struct sp_table_conf {
	char *schema; /* NULL: any schema */
	char *name;
	char **key_cols;
	sp_key_type_t *key_types;
	int n_keys;
	bool replicated;
	int line;
} sp_table_conf_t;

typedef struct sp_db_conf {
	char *name;          /* the dbname= clients ask for */
	int pool_size;       /* -1: default_pool_size */
	int pool_mode;       /* -1: global pool_mode, else sp_pool_mode_t */
	int min_pool_size;   /* -1: global */
	int max_db_connections; /* -1: global */
	int shards_declared; /* "shards =" key, -1 if absent */
	sp_sharding_t sharding;
	sp_shard_conf_t *shards; /* indexed by shard index, n_shards entries, no gaps */
	int n_shards;
	sp_table_conf_t *tables;
	int n_tables;
	sp_shard_bound_t *bounds; /* range/list: n_bounds entries */
	int n_bounds;
	int default_shard;   /* unsharded tables go here, default 0 */
	bool read_replicas;  /* default true */
	sp_primary_reads_t primary_reads; /* default fallback */
	int line;
	int index;    /* its place in sp_config_t.dbs */
	bool removed; /* gone from the file at a RELOAD: no new logins; its clients keep it */
} sp_db_conf_t;

/*
 * String fields are never NULL after sp_config_load: an empty string means
 * "not set". Relative auth_file, log_file and pid_file paths are resolved
 * against the config file's directory.
 */
typedef struct sp_config {
	char *path;

	/* [shardpool] */
	char *listen_addr;       /* "*" or comma-free address; default "127.0.0.1" */
	int listen_port;         /* 6432 */
	char *unix_socket_dir;   /* "" disables; default "/tmp" */
	bool so_reuseport;       /* several processes share the port (rolling upgrade) */
	char *metrics_addr;      /* Prometheus endpoint; default "127.0.0.1" */
	int metrics_port;        /* 0: off */
	int workers;             /* event-loop threads; default 1 */
	sp_pool_mode_t pool_mode;
	int default_pool_size;   /* 20 */
	int min_pool_size;       /* 0 */
	int reserve_pool_size;   /* 0 */
	double reserve_pool_timeout; /* seconds, 5 */
	int max_client_conn;     /* 100 */
	int max_db_connections;  /* 0 = unlimited */
	sp_auth_type_t auth_type;
	char *auth_file;
	char *admin_users;       /* comma separated */
	char *stats_users;       /* comma separated */
	double stats_period;     /* seconds, 60: SHOW STATS averages are over this period */
	char *server_reset_query; /* "DISCARD ALL" */
	bool server_reset_query_always; /* false */
	double server_connect_timeout; /* seconds, 15 */
	double server_login_retry;     /* seconds, 15: first backoff after a failed login */
	double dns_max_ttl;            /* seconds, 15: a host name's answer is used this long */
	double dns_nxdomain_ttl;       /* seconds, 15: longest wait before retrying a failed lookup */
	double server_idle_timeout;    /* seconds, 600 */
	double server_lifetime;        /* seconds, 3600 */
	double query_wait_timeout;     /* seconds, 120 */
	double client_idle_timeout;    /* seconds, 0 = off */
	double client_login_timeout;   /* seconds, 60 */
	double idle_transaction_timeout; /* seconds, 0 = off */
	double shutdown_timeout;       /* seconds, 30 */
	int max_prepared_statements;   /* per server connection, 200; 0 disables tracking */
	int pkt_buf;                   /* 4096: initial per-connection buffer */
	int max_packet_size;           /* bytes; 1073741823, PostgreSQL's own limit */
	int max_route_query_size;      /* bytes, 1MB: longer ones are not parsed; 0 = no limit */
	char *log_file;
	char *pid_file;
	int log_level;                 /* sp_log_level_t: 0 error .. 4 trace */
	bool log_connections;
	bool log_disconnections;
	/* health / replicas (issue 4) */
	double health_check_period;    /* seconds, 1 */
	double health_check_timeout;   /* seconds, 2 */
	int64_t max_replica_lag;       /* bytes, 16MB */
	int max_replica_lag_ms;        /* 0 = off */
	bool read_your_writes;         /* true */
	int causal_wait_ms;            /* 0 */
	char *read_functions;          /* comma-separated, NULL when unset */
	char *write_functions;         /* comma-separated, NULL when unset */

	sp_db_conf_t **dbs; /* never NULL entries once loaded; a removed database stays, marked */
	int n_dbs;
	/* replica lists a RELOAD replaced: pools of servers still connected point into
	 * them, so they live as long as the configuration (sp_config_replace_replicas) */
	sp_shard_conf_t *retired;
	int n_retired;
} sp_config_t;

/*
 * Load and validate FILE. On error returns NULL and writes one line per problem
 * to err (each "FILE:LINE: what was expected"); the first error stops loading.
 */
sp_config_t *sp_config_load(const char *path, char *err, size_t errlen);
void sp_config_free(sp_config_t *cfg);

/* Find a database by the name clients use; NULL if not configured. A database a
 * RELOAD removed is found too, with its removed flag set. */
const sp_db_conf_t *sp_config_find_db(const sp_config_t *cfg, const char *name);

/* Two optional strings (NULL: unset) are the same. */
bool sp_config_str_same(const char *a, const char *b);
/* The same server, reached the same way (all but weight): its connections may be kept. */
bool sp_config_same_server(const sp_node_conf_t *a, const sp_node_conf_t *b);
/* RELOAD: move database i of from (a configuration just read) to the end of cfg's. */
void sp_config_adopt_db(sp_config_t *cfg, sp_config_t *from, int i);
/* RELOAD: give run (a shard of cfg) the replica list of fresh (the same shard as
 * just read); run's old list stays allocated, at the same address, until cfg is
 * freed, so pointers to its entries stay valid. */
void sp_config_replace_replicas(sp_config_t *cfg, sp_shard_conf_t *run, sp_shard_conf_t *fresh);

/* Effective per-database values (database override, else global). */
int sp_config_db_pool_size(const sp_config_t *cfg, const sp_db_conf_t *db);
sp_pool_mode_t sp_config_db_pool_mode(const sp_config_t *cfg, const sp_db_conf_t *db);

/* True if user is listed in the comma-separated list (admin_users, stats_users). */
bool sp_config_user_in_list(const char *list, const char *user);

/*
 * The admin console's SET: change a reloadable [shardpool] key of the running
 * configuration (until the next RELOAD reads the file). Paths and function lists
 * are not set this way. On an error, err says why.
 */
typedef enum {
	SP_CONFIG_SET_OK,
	SP_CONFIG_SET_UNKNOWN, /* no such [shardpool] key */
	SP_CONFIG_SET_FIXED,   /* not reloadable, or set only in the file */
	SP_CONFIG_SET_INVALID, /* a bad value, or against another key's value */
} sp_config_set_result_t;
sp_config_set_result_t sp_config_set(sp_config_t *cfg, const char *name, const char *value, char *err,
				     size_t errlen);

/* Print a human summary (databases, shards, pools) for --check-config. */
void sp_config_print_summary(const sp_config_t *cfg, FILE *out);

/* Iterate the key table for SHOW CONFIG: returns false past the last key. */
typedef struct sp_config_item {
	const char *section; /* "shardpool", "database", "shard", "table" */
	const char *name;
	const char *type;    /* "int", "string", "bool", "seconds", "enum", "bytes", ... */
	const char *def;     /* default as text */
	bool reloadable;
	const char *help;
} sp_config_item_t;
bool sp_config_key_at(int i, sp_config_item_t *out);
/* Current value of a [shardpool] key as text (for SHOW CONFIG); buf is filled. */
const char *sp_config_value_str(const sp_config_t *cfg, const char *name, char *buf, size_t len);

/* Write the Markdown reference (doc/configuration.md) generated from the key table. */
void sp_config_write_reference(FILE *out);

/* Copy the reloadable [shardpool] keys from src into dst (both already validated). */
void sp_config_apply_reloadable(sp_config_t *dst, const sp_config_t *src);

#endif
