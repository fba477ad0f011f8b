/*
 * router.h - where a statement goes: which shard(s), primary or replica,
 * and whether shardpool must refuse it, answer it itself, or rewrite it.
 *
 * The router sits on the analyzer (analyze.h) and a bounded plan cache:
 * a statement is analysed once per normalised text (literals lifted into
 * parameters) or per prepared statement, and later executions only read the
 * key values (literals or Bind parameters) and hash them (shard_hash.h).
 * It keeps no per-connection state of its own: the caller owns an
 * sp_router_session_t per client.
 */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "merge.h"

#define SP_ROUTER_MAX_SHARDS 64
/* Most key columns of a table that a COPY split reports (= SP_ANALYZE_MAX_KEYS). */
#define SP_ROUTER_MAX_KEYS 8

/* analyze.h's function-name set (a repeated typedef is legal C11). */
typedef struct sp_funcset sp_funcset_t;

typedef enum {
	SP_TARGET_ANY = 0,  /* no sharded table: the session/transaction shard, else db->default_shard */
	SP_TARGET_SHARD,    /* exactly one shard: target.shard */
	SP_TARGET_FANOUT,   /* several shards: target.shard_mask (see fanout_*) */
	SP_TARGET_LOCAL,    /* answered by shardpool itself: target.local_tag is the CommandComplete tag */
	SP_TARGET_ERROR     /* refused: sqlstate, message, hint */
} sp_target_kind_t;

typedef enum {
	SP_TXNOP_NONE = 0,
	SP_TXNOP_BEGIN,     /* BEGIN / START TRANSACTION (read_only tells READ ONLY) */
	SP_TXNOP_COMMIT,    /* COMMIT / END */
	SP_TXNOP_ROLLBACK,  /* ROLLBACK / ABORT */
	SP_TXNOP_OTHER      /* SAVEPOINT, RELEASE, ROLLBACK TO, PREPARE TRANSACTION ... */
} sp_txnop_t;

/* Per-client routing state, owned by the client. */
typedef struct sp_router_session {
	int shard;              /* SET shardpool.shard = N; -1 unset */
	bool has_key;           /* SET shardpool.shard_key = '...' */
	char key[128];
	int role;               /* SET shardpool.role: 0 unset, 1 primary, 2 replica */
	int local_shard;        /* SET LOCAL shardpool.shard: cleared by the caller at transaction end */
	bool local_has_key;
	char local_key[128];
	int local_role;
	/*
	 * client_encoding is not UTF8 (or SQL_ASCII): key text arrives in another
	 * encoding than the shards hash, so a text key with a non-ASCII byte is
	 * refused rather than hashed. enc_other follows SET client_encoding /
	 * SET NAMES / RESET; enc_startup_other is the startup value RESET returns
	 * to (sp_router_session_set_client_encoding).
	 */
	bool enc_other;
	bool enc_startup_other;
	/* the router's shape memo entry of this client's last simple query, + 1 (0: none):
	 * tried first for the next one (a hint, checked in full before use) */
	int memo_slot;
} sp_router_session_t;

/*
 * COPY ... FROM STDIN that runs on several shards (sp_target_t.copy). The
 * caller feeds the client's CopyData to copysplit.h with these settings
 * (SP_ROUTER_COPY_SPLIT) or sends every byte to every shard of shard_mask
 * (SP_ROUTER_COPY_ALL, a replicated table).
 */
typedef enum {
	SP_ROUTER_COPY_NONE = 0,
	SP_ROUTER_COPY_SPLIT, /* each row to the shard of its key columns */
	SP_ROUTER_COPY_ALL    /* every row to every shard */
} sp_router_copy_mode_t;

typedef struct sp_router_copy {
	sp_router_copy_mode_t mode;
	const sp_table_conf_t *table; /* the configured table (key types) */
	int n_keys;
	int key_pos[SP_ROUTER_MAX_KEYS]; /* 0-based column of each key column within a row */
	bool csv;                     /* FORMAT csv */
	bool binary;                  /* FORMAT binary (else text) */
	char delimiter, quote, escape;
	bool header;                  /* csv HEADER: the first line is not data */
	char null_str[64];
	/* csv: bit k set when key k is named in FORCE_NOT_NULL / FORCE_NULL */
	uint32_t force_not_null, force_null;
} sp_router_copy_t;

typedef struct sp_target {
	sp_target_kind_t kind;
	int shard;              /* SP_TARGET_SHARD */
	uint64_t shard_mask;    /* SP_TARGET_FANOUT: bit i = shard i */
	bool write;             /* must run on a primary (write, DDL, FOR UPDATE, volatile function, hint role primary) */
	bool read;              /* may run on a replica (a plain read; hint role replica) */
	sp_txnop_t txnop;
	int n_stmts;            /* statements in the text (a simple Query may hold several) */
	bool read_only;         /* BEGIN READ ONLY / START TRANSACTION READ ONLY */
	bool session_changed;   /* SET [LOCAL] shardpool.*: the session was updated, answer locally */
	bool listen;            /* LISTEN */

	/* SP_TARGET_FANOUT */
	bool fanout_merge;      /* a read: merge the shards' results with merge */
	sp_merge_plan_t merge;
	bool fanout_sum;        /* a write to every shard (replicated table, split INSERT): one
				 * CommandComplete with the summed row count, RETURNING rows concatenated */
	/* Rewritten SQL per shard (split INSERT, OFFSET or avg() rewrites): when
	 * per_shard_sql, shard i runs sql[i] (NUL-terminated in the buffer);
	 * otherwise every shard runs the client's text unchanged. */
	bool per_shard_sql;
	sp_buf_t *sql;          /* array of SP_ROUTER_MAX_SHARDS buffers owned by the router (per thread) */

	const char *local_tag;  /* SP_TARGET_LOCAL */
	char sqlstate[6];
	char message[400];
	char hint[300];

	/*
	 * With fanout_sum: every shard ran the same write on a replicated table,
	 * so the client gets the result (RETURNING rows and row count) of the
	 * lowest shard of shard_mask only; the other shards' results are checked
	 * for errors and dropped.
	 */
	bool fanout_first;
	/* A write (INSERT, UPDATE, DELETE, MERGE) over several shards: each shard runs it
	 * inside BEGIN, and all COMMIT only if every shard succeeded, so a statement that
	 * fails on one shard changes nothing anywhere (as in PostgreSQL). */
	bool fanout_txn;
	/* A split INSERT ... RETURNING: the shard of each VALUES row, in order, so the
	 * RETURNING rows reach the client in its row order (ORMs match them by position).
	 * Points into the router's per-thread state: valid until the next routing. */
	const int *row_shard;
	int n_row_shard;
	sp_router_copy_t copy;  /* COPY FROM STDIN fanned out (mode != SP_ROUTER_COPY_NONE) */
} sp_target_t;

void sp_router_session_init(sp_router_session_t *s);
/* The client_encoding the client logged in with (startup parameter); NULL: the default (UTF8). */
void sp_router_session_set_client_encoding(sp_router_session_t *s, const char *name);
/* The server reported the session's client_encoding (ParameterStatus): whatever set it
 * (SET, set_config(), a function), the router follows. */
void sp_router_session_note_client_encoding(sp_router_session_t *s, const char *name);
/* A target that goes anywhere, with nothing else set: every scalar field, not the
 * (large) arrays behind the counts, which a memset of the whole would clear too. */
void sp_router_target_init(sp_target_t *t);

/*
 * A per-shard rewrite run with the extended protocol: the text sql (NUL-terminated)
 * with its $n parameters renumbered $1..$k in ascending order of n, into out
 * (NUL-terminated); used[i] is the original number of new parameter i + 1, so the
 * shard's Bind carries only the values its text uses (a split INSERT drops other
 * rows' parameters, a LIMIT/OFFSET rewrite the clause's). Returns k, or -1 when the
 * text cannot be read or uses more than max distinct parameters.
 */
int sp_router_renumber_params(const char *sql, sp_buf_t *out, int *used, int max);

/*
 * Route a simple Query message's text (all its statements: the target is the
 * one place they can all run, or an error). in_txn_shard is the shard the
 * client's open transaction is bound to (-1 when none); a statement that needs
 * another shard gets SP_TARGET_ERROR 0A000.
 */
bool sp_router_query(const sp_db_conf_t *db, sp_router_session_t *sess, const char *sql, size_t len,
		     int in_txn_shard, sp_target_t *out);

/* A prepared statement's routing plan (extended protocol), cached by text. */
typedef struct sp_plan sp_plan_t;
/* Analyse (or find in the cache) the SQL of a Parse message. Never NULL for valid input
 * (a statement the parser rejects gets a plan that routes by hints or errors). */
sp_plan_t *sp_router_prepare(const sp_db_conf_t *db, const char *sql, size_t len);
void sp_plan_ref(sp_plan_t *p);
void sp_plan_unref(sp_plan_t *p);

/*
 * Route one execution of a plan with its Bind parameters: values[i] (len
 * lens[i], -1 = NULL), formats[i] 0 text / 1 binary (Bind's format codes,
 * already expanded to one per parameter). ptypes: the nptypes parameter type OIDs of
 * the statement's Parse, as sent (big-endian int32 each), NULL if none; a binary value is
 * read by its declared type.
 */
bool sp_router_bind(const sp_db_conf_t *db, sp_router_session_t *sess, sp_plan_t *plan, int nparams,
		    const uint8_t *const *values, const int32_t *lens, const int16_t *formats,
		    const uint8_t *ptypes, int nptypes, int in_txn_shard, sp_target_t *out);

/* The shard of a key given as text (shard_key hints, COPY rows); -1 + err on failure. */
int sp_router_shard_of_text(const sp_db_conf_t *db, const sp_table_conf_t *t, const char *const *key_text,
			    const bool *key_null, char *err, size_t errlen);

/* Plan cache counters (admin console SHOW ROUTE CACHE). */
typedef struct sp_router_stats {
	uint64_t hits, misses, evictions, parse_errors;
	size_t entries, bytes, max_entries;
	uint64_t no_lift;       /* simple queries analysed as written: their normalised text did not parse */
	size_t max_bytes;
	uint64_t memo_hits;     /* of hits: simple queries found by their shape, without lexing */
	uint64_t fast_hits;     /* of memo_hits: routed by their key alone (a compiled route) */
} sp_router_stats_t;
void sp_router_get_stats(sp_router_stats_t *out);
/* Drop every cached plan (RELOAD changes the shard map). */
void sp_router_reset(void);

/* Bound the plan cache (defaults 10,000 plans, 32 MB); evicts down to the new limits. */
void sp_router_set_cache_limits(size_t max_entries, size_t max_bytes);

/*
 * max_route_query_size: sp_router_query and sp_router_prepare do not analyse a text
 * longer than this many bytes (libpg_query's parse tree takes some 200 to 700 bytes
 * of memory per byte of SQL, and the time of a single-threaded event loop). Such a
 * text goes to the shard of its leading hint (shard: N or shard_key: K), else of the
 * session's SET shardpool.shard / shard_key, as a write; without either, a database of
 * one shard sends it to its primary and a sharded one refuses it with SQLSTATE 54000.
 * 0: no limit. Any thread.
 */
#define SP_ROUTER_DEFAULT_MAX_QUERY_SIZE ((size_t)1 << 20)
void sp_router_set_max_query_size(size_t bytes);
size_t sp_router_max_query_size(void);

/*
 * Function classes for the read/write split (analyze.h sp_analyze_opts_t).
 * The router takes ownership of the sets (NULL: the analyzer's built-in
 * list), frees the sets it replaces once no analysis uses them, and drops
 * the cached plans, which were classified with the old sets. Any thread.
 *   volatile: functions that make a statement a write (pg_proc provolatile = 'v');
 *   known: every function name in pg_proc (NULL: not known); a call to a name
 *     in neither set (created after the read) is then a write, and bumps
 *     sp_router_catalog_requests();
 *   read_funcs / write_funcs: explicit overrides, checked first.
 */
void sp_router_set_volatile_funcs(sp_funcset_t *set, sp_funcset_t *known);
/* Moves when a statement called a function no pg_proc read knew of: the
 * catalog reader (health.c) polls it and reads pg_proc again. Any thread. */
unsigned sp_router_catalog_requests(void);
void sp_router_set_func_overrides(sp_funcset_t *read_funcs, sp_funcset_t *write_funcs);

/*
 * Column order of a sharded table, for INSERT ... VALUES without a column
 * list (PostgreSQL fills the table's non-dropped columns in attnum order):
 * db is the [database] name, schema the table's schema, or NULL for what an
 * unqualified name resolves to. names[0..n-1] replace older data for that
 * table; names NULL or n <= 0 forgets it (the order is unknown: such INSERTs
 * are refused with a hint). The router copies the names. Plans that used the
 * old order are re-analysed on their next use (cached and prepared alike).
 * Any thread.
 */
void sp_router_set_columns(const char *db, const char *schema, const char *table,
			   const char *const *names, int n);
/* The stored order as "a,b,c" into buf; false when unknown (tests, diagnostics). */
bool sp_router_get_columns(const char *db, const char *schema, const char *table, char *buf,
			   size_t len);
/*
 * A counter that moves when routing saw a reason to read the column orders
 * again: DDL on a sharded table (whose stored order the router forgets at
 * once), or an INSERT without a column list into a table whose order is
 * unknown. The catalog reader (health.c) polls it. Any thread.
 */
unsigned sp_router_columns_requests(void);

/* Free the calling thread's routing buffers (target.sql, scratch); call before a worker exits. */
void sp_router_thread_free(void);
/* Free the cache and the installed function sets (at exit, for leak checkers). */
void sp_router_shutdown(void);

#endif
