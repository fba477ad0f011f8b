/*
 * analyze.h - what a SQL string asks for, as the router, the pooler and the
 * read/write split need to know it.
 *
 * sp_analyze() parses a Query message's text (one or several statements) with
 * libpg_query, PostgreSQL's own grammar, and reports per statement:
 *   - its kind (SELECT, INSERT, ..., SET, BEGIN, DDL, ...) and its byte span;
 *   - whether it must run on a primary (is_write) and why;
 *   - every table it names, with schema, alias and whether it is read,
 *     written or locked;
 *   - for sharded tables (as the caller's lookup describes them) the key values
 *     the statement is restricted to, and a verdict for the whole statement;
 *   - INSERT rows, COPY layout, UPDATE of key columns;
 *   - for a SELECT that fans out: the shape of its output (aggregates, GROUP
 *     BY, ORDER BY, LIMIT, DISTINCT, windows, set operations);
 *   - routing hints found in the statement's leading comments.
 *
 * The analyzer is a pure library: no I/O, no logging, no global state (the
 * built-in function lists are constant). Any number of threads may call it at
 * once; each call allocates its result from its own arena, freed with one
 * sp_analysis_free(). An sp_funcset_t is built by one thread and only read
 * afterwards.
 *
 * One sp_analyze() of a 100-byte SELECT costs about 35 us of CPU (measured
 * numbers in src/analyze.c); callers cache analyses by normalised text or
 * prepared statement name. sp_analyze_first_keyword() and sp_analyze_hints()
 * need no parse (about 0.01 us) and are meant for the hot path.
 *
 * Never crashes on bad input: a statement PostgreSQL's grammar rejects, an
 * input nested too deeply, or an unterminated string yields a statement of
 * kind SP_STMT_ERROR with the parser's message. Input that would make
 * PostgreSQL's scanner quadratic (thousands of nested comments, very long
 * runs of operator characters) is refused the same way before it is parsed,
 * so one message cannot stall a worker.
 */
#ifndef SP_ANALYZE_H
#define SP_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* sp_table_conf_t */

/* At most this many key columns per sharded table (sp_table_conf_t.n_keys). */
#define SP_ANALYZE_MAX_KEYS 8
/*
 * A WHERE clause that allows more distinct key tuples than this (IN lists,
 * ORs, products of both over a composite key) leaves the table unpinned.
 * INSERT ... VALUES rows are not limited.
 */
#define SP_ANALYZE_MAX_PIN 1024
/* Parse trees nested deeper than this (JSON levels) are refused, not analysed. */
#define SP_ANALYZE_MAX_DEPTH 3000
/* Longest hint value (shard_key) kept by sp_hints_t, including the NUL. */
#define SP_HINT_VALUE_MAX 128

/* ------------------------------------------------------------------ kinds */

typedef enum sp_stmt_kind {
	SP_STMT_NONE = 0, /* only as inner_kind: there is no inner statement */
	SP_STMT_ERROR,	  /* the parser rejected it: see error, error_pos */
	SP_STMT_SELECT,	  /* also VALUES, TABLE t, SELECT INTO (is_write) */
	SP_STMT_INSERT,
	SP_STMT_UPDATE,
	SP_STMT_DELETE,
	SP_STMT_MERGE,
	SP_STMT_COPY,	     /* see copy */
	SP_STMT_TXN,	     /* BEGIN, COMMIT, SAVEPOINT, ...: see txn */
	SP_STMT_SET,	     /* SET, SET LOCAL, SET TRANSACTION, RESET, RESET ALL: see set */
	SP_STMT_SHOW,	     /* name: the parameter ("all" for SHOW ALL) */
	SP_STMT_LISTEN,	     /* name: the channel */
	SP_STMT_UNLISTEN,    /* name: the channel, NULL for UNLISTEN * */
	SP_STMT_NOTIFY,	     /* name: the channel, payload: the payload or NULL */
	SP_STMT_PREPARE,     /* name; the prepared statement is analysed: inner_kind, tables, keys,
			      * shape, insert, and is_write is the prepared statement's */
	SP_STMT_EXECUTE,     /* name; params: the EXECUTE arguments */
	SP_STMT_DEALLOCATE,  /* name, NULL for DEALLOCATE ALL */
	SP_STMT_DISCARD,     /* discard */
	SP_STMT_DECLARE,     /* DECLARE CURSOR: name, cursor_hold; the query is analysed */
	SP_STMT_FETCH,	     /* FETCH or MOVE (fetch_move): name is the cursor */
	SP_STMT_CLOSE,	     /* CLOSE cursor: name, NULL for CLOSE ALL */
	SP_STMT_DDL,	     /* CREATE/ALTER/DROP/TRUNCATE/GRANT/COMMENT/...: node says which */
	SP_STMT_LOCK,	     /* LOCK TABLE: tables carry SP_TABLE_LOCK */
	SP_STMT_EXPLAIN,     /* explain_analyze; the explained statement is analysed; is_write
			      * only when ANALYZE runs a write */
	SP_STMT_MAINTENANCE, /* VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT */
	SP_STMT_CALL,	     /* CALL procedure: name */
	SP_STMT_DO,	     /* DO block */
	SP_STMT_OTHER	     /* anything else PostgreSQL accepts (LOAD, SET CONSTRAINTS, ...) */
} sp_stmt_kind_t;

/* "SELECT", "INSERT", ..., "ERROR"; never NULL. */
const char *sp_stmt_kind_str(sp_stmt_kind_t kind);

/* ------------------------------------------------------------------ values */

typedef enum sp_value_kind {
	SP_VAL_NONE = 0, /* no value here (absent LIMIT, key column not assigned, ...) */
	SP_VAL_CONST,	 /* a literal: text */
	SP_VAL_PARAM,	 /* $n: param; its value arrives in Bind (or EXECUTE's arguments) */
	SP_VAL_NULL,	 /* the NULL literal (also `key IS NULL`) */
	SP_VAL_DEFAULT,	 /* DEFAULT in INSERT ... VALUES */
	SP_VAL_EXPR	 /* anything else: known only when the server evaluates it */
} sp_value_kind_t;

typedef enum sp_lit {
	SP_LIT_NONE = 0,
	SP_LIT_INT,	/* 42, -7 (after folding a unary minus) */
	SP_LIT_NUMERIC, /* 1.5, 1e3, and integers too big for int4 */
	SP_LIT_STRING,	/* 'abc', E'..', $$..$$, also uuid '...' and array elements */
	SP_LIT_BOOL,	/* TRUE / FALSE: text "true" / "false" */
	SP_LIT_BITS	/* B'101' / X'1F': text "b101" / "x1F" as PostgreSQL keeps it */
} sp_lit_t;

/*
 * A value the statement compares a key with, inserts, assigns or limits by.
 * text is PostgreSQL's text input form of the literal without quotes or
 * escapes ("42", "-7", "it's", "6ecd8c99-4036-403d-bf84-cf8400f67836"), ready
 * for sp_shard_value_from_text() with the key column's configured type.
 * cast is the last name of an explicit cast around it ('42'::bigint -> "int8",
 * CAST($1 AS text) -> "text", uuid '...' -> "uuid"), NULL without one; a cast
 * that may cut a string is marked: char(3) and char -> "bpchar(n)", varchar(3) ->
 * "varchar(n)", "char" -> "char(n)".
 */
typedef struct sp_value {
	sp_value_kind_t kind;
	sp_lit_t lit; /* SP_VAL_CONST: which literal form */
	bool
	    array; /* SP_VAL_PARAM from `key = ANY($n)`: $n is an array, each element a candidate */
	int param; /* SP_VAL_PARAM: n of $n, 1-based */
	const char *text; /* SP_VAL_CONST: the value; SP_VAL_EXPR: a column reference as
			   * "alias.col" when the expression is one, else NULL */
	const char *cast;
} sp_value_t;

/* ------------------------------------------------------------------ tables */

#define SP_TABLE_READ 1u  /* rows are read (FROM, JOIN, USING, subqueries, COPY TO, ...) */
#define SP_TABLE_WRITE 2u /* INSERT/UPDATE/DELETE/MERGE target, COPY FROM, SELECT INTO, DDL */
#define SP_TABLE_LOCK 4u  /* SELECT ... FOR UPDATE/SHARE on it, or LOCK TABLE */
#define SP_TABLE_NESTED 8u /* in a subquery, CTE, derived table or set-operation arm: a
			    * statement run on several shards would evaluate that part on
			    * each shard's rows alone */
#define SP_TABLE_KEPT_OUTER 16u /* a replicated table on the kept side of an outer join
				 * whose other side reads a sharded table: each shard of a
				 * fan-out would add its own unmatched copies of its rows */

typedef enum sp_pin {
	SP_PIN_NOT_SHARDED = 0, /* the lookup returned NULL or a replicated table */
	SP_PIN_ALL,		/* sharded, and rows may be on any shard: see why */
	SP_PIN_SET		/* sharded, and only rows whose key is one of the tuples matter */
} sp_pin_t;

/*
 * The key tuples a sharded table is restricted to. Tuple t, key column k (in
 * the order of sp_table_conf_t.key_cols) is values[t * n_keys + k]; its kind
 * is SP_VAL_CONST, SP_VAL_PARAM or SP_VAL_NULL. Hash every tuple: if they all
 * land on one shard, the table's part of the statement runs there.
 */
typedef struct sp_keyset {
	sp_pin_t state;
	int n_keys;
	int n_tuples;
	const sp_value_t *values;
	const char *why; /* SP_PIN_ALL: a human reason ("no condition on key column user_id") */
} sp_keyset_t;

typedef struct sp_table_ref {
	const char *schema; /* NULL when the name is not schema-qualified */
	const char *name;
	const char *alias; /* NULL without AS alias */
	unsigned ctx;	   /* SP_TABLE_* bits */
	int location;	   /* byte offset of the name in the caller's input, -1 if unknown */
	const sp_table_conf_t *conf; /* what the lookup returned; NULL: not sharded */
	sp_keyset_t keys;
	int pinned_via; /* keys copied through a key = key join from tables[pinned_via]; -1 */
	/*
	 * This sharded table is joined to the first sharded table of the statement's
	 * FROM by equality of every key column, directly or through other tables,
	 * with key types that hash alike (integers, text/varchar, uuid): the rows it
	 * joins with live on the same shard, so each shard can run the join alone.
	 */
	bool colocated;
	/*
	 * UPDATE ... SET, INSERT ... ON CONFLICT DO UPDATE SET and MERGE ... UPDATE
	 * SET of a key column: key_new[k] is the value assigned to key column k,
	 * kind SP_VAL_NONE where k is not assigned. A router refuses a change that
	 * would move the row to another shard.
	 */
	bool key_assigned;
	sp_value_t key_new[SP_ANALYZE_MAX_KEYS];
} sp_table_ref_t;

/* The verdict for a whole statement, over all its sharded tables. */
typedef enum sp_route {
	SP_ROUTE_NO_SHARDED = 0, /* no sharded table at all */
	SP_ROUTE_PINNED,	 /* every sharded table has SP_PIN_SET with the same tuples:
				  * tables[route_table].keys */
	SP_ROUTE_PINNED_MIXED,	 /* every sharded table is pinned, but to different tuples:
				  * hash each table's keys; one shard only if all agree */
	SP_ROUTE_UNPINNED	 /* tables[route_table] may be on any shard (route_why says why) */
} sp_route_t;

/* ------------------------------------------------------------------ kind details */

typedef enum sp_txn_op {
	SP_TXN_BEGIN = 0,	 /* BEGIN [WORK|TRANSACTION] */
	SP_TXN_START,		 /* START TRANSACTION */
	SP_TXN_COMMIT,		 /* COMMIT / END */
	SP_TXN_ROLLBACK,	 /* ROLLBACK / ABORT */
	SP_TXN_SAVEPOINT,	 /* name */
	SP_TXN_RELEASE,		 /* RELEASE [SAVEPOINT] name */
	SP_TXN_ROLLBACK_TO,	 /* ROLLBACK TO [SAVEPOINT] name */
	SP_TXN_PREPARE,		 /* PREPARE TRANSACTION 'gid': name is the gid */
	SP_TXN_COMMIT_PREPARED,	 /* name is the gid */
	SP_TXN_ROLLBACK_PREPARED /* name is the gid */
} sp_txn_op_t;

/* Transaction modes of BEGIN / START TRANSACTION / SET TRANSACTION. */
typedef struct sp_txn_modes {
	int read_only;	       /* -1 not given, 0 READ WRITE, 1 READ ONLY */
	int deferrable;	       /* -1 not given, 0 NOT DEFERRABLE, 1 DEFERRABLE */
	const char *isolation; /* "serializable", "repeatable read", "read committed",
				* "read uncommitted", NULL if not given */
} sp_txn_modes_t;

typedef struct sp_txn {
	sp_txn_op_t op;
	sp_txn_modes_t modes;
	bool chain; /* COMMIT/ROLLBACK AND CHAIN */
} sp_txn_t;

typedef enum sp_set_op {
	SP_SET_VALUE = 0,    /* SET [SESSION|LOCAL] name = value */
	SP_SET_DEFAULT,	     /* SET name TO DEFAULT, SET TIME ZONE LOCAL (value NULL) */
	SP_SET_FROM_CURRENT, /* SET name FROM CURRENT (value NULL) */
	SP_SET_TRANSACTION,  /* SET TRANSACTION ... (name "transaction"), SET SESSION
			      * CHARACTERISTICS AS TRANSACTION ... (name "session characteristics"):
			      * modes; SET TRANSACTION SNAPSHOT 'x' (name "transaction snapshot",
			      * value the quoted snapshot id) */
	SP_SET_RESET,	     /* RESET name */
	SP_SET_RESET_ALL     /* RESET ALL (name NULL) */
} sp_set_op_t;

typedef struct sp_set {
	sp_set_op_t op;
	/*
	 * The parameter as PostgreSQL names it: lower case unless quoted; SET TIME
	 * ZONE is "timezone", SET ROLE "role", SET SESSION AUTHORIZATION
	 * "session_authorization", SET NAMES "client_encoding".
	 */
	const char *name;
	/*
	 * SP_SET_VALUE: text such that `SET name = value` (or `SET LOCAL ...`) sets
	 * the same thing: strings re-quoted ('UTC', E'a\\b' when there is a
	 * backslash), numbers as written, lists joined by ", ":
	 *   SET search_path TO a, b        -> 'a', 'b'
	 *   SET TIME ZONE 'UTC'            -> 'UTC'
	 *   SET statement_timeout = 0      -> 0
	 *   SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE -> INTERVAL '+02:00' HOUR TO MINUTE
	 */
	const char *value;
	bool local;	      /* SET LOCAL */
	sp_txn_modes_t modes; /* SP_SET_TRANSACTION */
} sp_set_t;

typedef enum sp_copy_format { SP_COPY_TEXT = 0, SP_COPY_CSV, SP_COPY_BINARY } sp_copy_format_t;

typedef struct sp_copy {
	bool is_from; /* COPY ... FROM (a write) */
	int table;    /* index in tables, -1 for COPY (query) TO */
	bool has_column_list;
	int n_cols;
	const char **cols; /* the column list as written */
	/*
	 * Position of each key column in cols; -1 when it is not listed, or when
	 * there is no column list (rows then follow the table's column order).
	 */
	int key_pos[SP_ANALYZE_MAX_KEYS];
	const char *filename; /* NULL for STDIN / STDOUT */
	bool is_program;      /* FROM/TO PROGRAM */
	sp_copy_format_t format;
	const char *delimiter; /* effective: given, else "\t" (text) or "," (csv) */
	const char *null_str;  /* effective: given, else "\\N" (text) or "" (csv) */
	int header;	       /* 0 no, 1 yes, 2 MATCH */
	const char *quote;     /* csv: effective, default "\"" */
	const char *escape;    /* csv: effective, default = quote */
	const char *encoding;  /* NULL if not given */
	/* csv: bit k is set when key column k is named in FORCE_NOT_NULL / FORCE_NULL */
	uint32_t force_not_null_keys, force_null_keys;
	bool freeze;
	bool has_where; /* COPY ... FROM ... WHERE */
} sp_copy_t;

typedef enum sp_insert_source {
	SP_INSERT_VALUES = 0, /* INSERT ... VALUES (...), (...): rows */
	SP_INSERT_SELECT,     /* INSERT ... SELECT */
	SP_INSERT_DEFAULT_VALUES
} sp_insert_source_t;

typedef struct sp_insert {
	int table; /* index of the target in tables */
	bool has_column_list;
	int n_cols;
	const char **cols;
	/*
	 * Position of each key column in cols (and in each row), -1 when the key
	 * column is not listed (its default applies: the router cannot know it) or
	 * when there is no column list: then rows hold the values in the table's
	 * column order, and the key's position is known only through
	 * sp_analyze_opts_t.columns_lookup (else "unknown").
	 */
	int key_pos[SP_ANALYZE_MAX_KEYS];
	/*
	 * Without a column list, when the caller's columns_lookup knew the
	 * table's columns: cols/n_cols are those columns in the table's order
	 * and key_pos is filled as if the client had written them
	 * (has_column_list stays false, columns_known is true).
	 */
	bool columns_known;
	sp_insert_source_t source;
	/* SP_INSERT_VALUES: row r, column c is rows[r * width + c] */
	int n_rows;
	int width;
	const sp_value_t *rows;
	bool on_conflict;	 /* ON CONFLICT ... */
	bool on_conflict_update; /* ... DO UPDATE (key_new of the target may be set) */
	/*
	 * The VALUES lists do not all have the same length: PostgreSQL refuses
	 * the statement (42601), but each shard's part of a split INSERT could
	 * be uniform and run.
	 */
	bool ragged;
} sp_insert_t;

typedef enum sp_discard {
	SP_DISCARD_ALL = 0,
	SP_DISCARD_PLANS,
	SP_DISCARD_SEQUENCES,
	SP_DISCARD_TEMP
} sp_discard_t;

/* ------------------------------------------------------------------ SELECT shape */

typedef enum sp_col_kind {
	SP_COL_PLAIN = 0, /* a column or an expression without aggregate or window function */
	SP_COL_STAR,	  /* * or alias.*: the number of output columns is not known here */
	SP_COL_AGG,	  /* an aggregate call, nothing around it: agg says which */
	SP_COL_AGG_EXPR,  /* an expression containing aggregates (sum(x) / count(*)) */
	SP_COL_WINDOW	  /* contains a window function (... OVER (...)) */
} sp_col_kind_t;

typedef enum sp_agg {
	SP_AGG_NONE = 0,
	SP_AGG_COUNT,
	SP_AGG_SUM,
	SP_AGG_MIN,
	SP_AGG_MAX,
	SP_AGG_AVG,
	SP_AGG_OTHER /* array_agg, string_agg, bool_and, stddev, ... or a call with
		      * FILTER / ORDER BY / WITHIN GROUP: not mergeable as is */
} sp_agg_t;

typedef struct sp_out_col {
	sp_col_kind_t kind;
	/*
	 * The column's label as PostgreSQL would print it: the AS alias, else the
	 * column or function name, else "?column?" (FigureColname's rules for
	 * columns, calls, casts, CASE, COALESCE, ...).
	 */
	const char *name;
	/* SP_COL_AGG only: */
	sp_agg_t agg;
	const char *func;  /* the aggregate's name as written, without schema */
	bool agg_star;	   /* count(*) */
	bool agg_distinct; /* count(DISTINCT x) */
	bool agg_filter;   /* FILTER (WHERE ...) */
	const char
	    *arg_text; /* source text of the arguments without DISTINCT ("x", "*", "a + b") */
} sp_out_col_t;

/* One ORDER BY (or DISTINCT ON) item. */
typedef struct sp_sort_item {
	int target; /* 1-based output column it sorts by; 0 = not in the target list */
	bool desc;
	bool nulls_first; /* effective: NULLS FIRST given, or DESC without NULLS LAST */
	bool using_op;	  /* ORDER BY x USING <op>: desc/nulls_first are meaningless */
	bool bytewise;	  /* ORDER BY x COLLATE "C" (or "POSIX"): text in byte order */
	/* The item as written, for a select list with *, whose output positions only
	 * the RowDescription tells: a column's name (the last part of a column
	 * reference, "" otherwise) or a position (ORDER BY 2; 0 otherwise). */
	char name[64];
	int ordinal;
} sp_sort_item_t;

typedef enum sp_setop {
	SP_SETOP_NONE = 0,
	SP_SETOP_UNION,
	SP_SETOP_INTERSECT,
	SP_SETOP_EXCEPT
} sp_setop_t;

/*
 * What a router needs to merge the results of one SELECT sent to several
 * shards, or to refuse it with a precise message. Filled for SP_STMT_SELECT
 * and for a SELECT inside PREPARE, DECLARE, EXPLAIN and COPY (query) TO.
 * For a set operation the columns are those of its leftmost SELECT and the
 * ORDER BY / LIMIT those of the whole.
 */
typedef struct sp_shape {
	bool valid;
	int n_cols;
	sp_out_col_t *cols;
	bool has_star;
	bool has_agg; /* an aggregate anywhere in the target list or HAVING */
	bool has_window;
	bool has_having;
	bool has_group_by;
	bool grouping_sets; /* GROUPING SETS / ROLLUP / CUBE */
	int n_group;
	int *group_target; /* 1-based output position of each GROUP BY item, 0 = not output */
	bool group_all_in_target;
	int n_sort;
	sp_sort_item_t *sort;
	bool sort_all_in_target;
	sp_value_t limit; /* SP_VAL_NONE when absent (or LIMIT ALL / NULL) */
	sp_value_t offset;
	bool limit_with_ties; /* FETCH FIRST n ROWS WITH TIES */
	bool distinct;	      /* SELECT DISTINCT (without ON) */
	int n_distinct_on;    /* SELECT DISTINCT ON (...): items mapped like ORDER BY */
	sp_sort_item_t *distinct_on;
	sp_setop_t setop;
	bool setop_all; /* UNION ALL, ... */
	bool locking;	/* FOR UPDATE / SHARE at the top level */
	bool values;	/* a VALUES list */
} sp_shape_t;

/* ------------------------------------------------------------------ hints */

typedef enum sp_role_hint {
	SP_ROLE_HINT_NONE = 0,
	SP_ROLE_HINT_PRIMARY,
	SP_ROLE_HINT_REPLICA
} sp_role_hint_t;

/*
 * Routing hints, read from the comments in front of a statement's first
 * token (comments later in the text are not hints). A hint comment holds
 * "key: value" items separated by commas, in a block comment or a -- line:
 *     shard: 2              (a shard index)
 *     shard_key: 42         (a key value; may be single-quoted, '' for a quote)
 *     role: replica         (primary, also "master"; replica, also "standby")
 * e.g. a block comment holding "shard: 1, role: primary" before SELECT.
 * Keys are case-insensitive; '=' may stand for ':'. Unknown keys are ignored
 * (other tools' comments pass through); a known key with a bad value sets
 * error and is otherwise ignored. Text inside a nested comment belongs to the
 * outer comment's items. Later hints override earlier ones.
 */
typedef struct sp_hints {
	int shard; /* -1 when absent */
	bool has_shard_key;
	char shard_key[SP_HINT_VALUE_MAX];
	sp_role_hint_t role;
	const char *error; /* a static message, NULL if every known hint was valid */
} sp_hints_t;

/* Read the leading hints of sql (NUL-terminated). No allocation, no parse. */
void sp_analyze_hints(const char *sql, sp_hints_t *out);

/* ------------------------------------------------------------------ one statement */

typedef struct sp_stmt {
	int offset; /* byte span in the caller's input: the span starts right */
	int length; /* after the previous ';' (so it includes leading comments) and
		     * excludes this statement's ';' */
	sp_stmt_kind_t kind;
	const char *node;  /* libpg_query's node name ("SelectStmt", "CreateStmt",
			    * "TruncateStmt", ...), NULL for SP_STMT_ERROR */
	const char *error; /* SP_STMT_ERROR: the parser's message */
	int error_pos;	   /* SP_STMT_ERROR: byte offset in the input, -1 if unknown */
	sp_hints_t hints;  /* from this statement's leading comments */

	bool is_write;
	const char *write_reason; /* why is_write, e.g. "SELECT ... FOR UPDATE",
				   * "volatile function nextval()"; NULL when read */
	/* PREPARE, DECLARE, EXPLAIN, COPY (query): kind of the statement inside */
	sp_stmt_kind_t inner_kind;

	/* every table named, in order of appearance, each occurrence separately */
	int n_tables;
	sp_table_ref_t *tables;
	sp_route_t route;
	int route_table; /* see sp_route_t; -1 for SP_ROUTE_NO_SHARDED */
	const char
	    *route_why; /* SP_ROUTE_UNPINNED: tables[route_table].keys.why with the table name */
	int max_param;	/* highest $n used anywhere, 0 if none */

	sp_txn_t txn;	    /* SP_STMT_TXN */
	sp_set_t set;	    /* SP_STMT_SET */
	sp_copy_t copy;	    /* SP_STMT_COPY */
	sp_insert_t insert; /* SP_STMT_INSERT (and PREPARE of one) */
	sp_shape_t shape;   /* see sp_shape_t */
	bool has_returning; /* INSERT/UPDATE/DELETE ... RETURNING */

	/*
	 * SHOW, LISTEN, UNLISTEN, NOTIFY: parameter or channel; PREPARE, EXECUTE,
	 * DEALLOCATE: statement name; DECLARE, FETCH, CLOSE: cursor; CALL:
	 * procedure; TXN SAVEPOINT/RELEASE/ROLLBACK TO: savepoint, PREPARE
	 * TRANSACTION / COMMIT|ROLLBACK PREPARED: gid. NULL for the ALL / * forms.
	 */
	const char *name;
	const char *payload; /* NOTIFY */
	int n_params;	     /* EXECUTE: the arguments */
	const sp_value_t *params;
	sp_discard_t discard; /* DISCARD */
	bool cursor_hold;     /* DECLARE ... WITH HOLD */
	bool fetch_move;      /* MOVE rather than FETCH */
	bool explain_analyze; /* EXPLAIN ANALYZE (runs the statement) */
} sp_stmt_t;

typedef struct sp_analysis {
	int n_stmts;
	sp_stmt_t *stmts;
	bool has_error; /* some statement is SP_STMT_ERROR (PostgreSQL rejects the whole message) */
	bool unknown_funcs; /* a call named a function in neither volatile_funcs nor known_funcs */
	sp_hints_t hints; /* leading hints of the whole input (= stmts[0].hints) */
	void *arena_;	  /* private */
} sp_analysis_t;

/*
 * p at "--" or at a block comment's opening: the first byte after the comment, as
 * PostgreSQL's scanner reads it (block comments nest; a line comment ends at a newline
 * or carriage return). At an unterminated block comment, the NUL at the end, with
 * *unterminated set (unterminated may be NULL). p anywhere else: p.
 */
const char *sp_sql_skip_comment(const char *p, bool *unterminated);

/* ------------------------------------------------------------------ options */

/*
 * Function classes for the read/write split. A statement calling a function
 * classed SP_FUNC_WRITE must run on a primary.
 */
typedef enum sp_func_class { SP_FUNC_UNKNOWN = 0, SP_FUNC_READ, SP_FUNC_WRITE } sp_func_class_t;

/* A set of function names: "name" or "schema.name", compared byte for byte. */
typedef struct sp_funcset sp_funcset_t;

sp_funcset_t *sp_funcset_new(void);			  /* NULL on out of memory */
bool sp_funcset_add(sp_funcset_t *set, const char *name); /* false on out of memory */
bool sp_funcset_contains(const sp_funcset_t *set, const char *name);
size_t sp_funcset_size(const sp_funcset_t *set);
void sp_funcset_free(sp_funcset_t *set);

/*
 * Returns the sharding description of a table, or NULL if it is not sharded.
 * schema is NULL for an unqualified name (the lookup decides what the
 * search_path means). A replicated table (conf->replicated) is reported but
 * never pins or unpins a statement. The pointer must stay valid as long as the
 * analysis does. Called once per table occurrence; must be thread-safe if the
 * analyzer is used from several threads.
 */
typedef const sp_table_conf_t *(*sp_table_lookup_fn)(void *arg, const char *schema,
						     const char *name);

/*
 * The columns of a sharded table in PostgreSQL's order (the non-dropped
 * attributes by attnum: the order INSERT ... VALUES without a column list
 * fills), for an INSERT without a column list. schema is NULL for an
 * unqualified name; conf is what table_lookup returned for it. Returns the
 * names and sets *n, or NULL when the order is unknown. The names must stay
 * valid as long as the sp_analyze() call (the analysis copies them). Called
 * only for such INSERTs; must be thread-safe like table_lookup.
 */
typedef const char *const *(*sp_columns_lookup_fn)(void *arg, const char *schema, const char *name,
						   const sp_table_conf_t *conf, int *n);

/* Classify one function call; return SP_FUNC_UNKNOWN to fall through to the sets. */
typedef sp_func_class_t (*sp_func_lookup_fn)(void *arg, const char *schema, const char *name);

typedef struct sp_analyze_opts {
	sp_table_lookup_fn table_lookup; /* NULL: nothing is sharded */
	void *table_arg;
	sp_columns_lookup_fn columns_lookup; /* NULL: column order always unknown */
	void *columns_arg;
	/*
	 * How a function call is classed, first match wins (a schema-qualified
	 * call is looked up as "schema.name", then as "name"):
	 *   1. write_funcs            -> write
	 *   2. read_funcs             -> read
	 *   3. func_lookup            -> its answer unless SP_FUNC_UNKNOWN
	 *   4. built-in read-safe list (unless no_builtin_read_safe) -> read:
	 *      volatile only because they are not repeatable (random, setseed,
	 *      clock_timestamp, timeofday, gen_random_uuid, uuid_generate_v1/v4,
	 *      pg_sleep*, txid_current_snapshot, pg_current_snapshot)
	 *   5. volatile_funcs, or the built-in default set when it is NULL -> write
	 *   5b. with known_funcs (every name in pg_proc): a name in neither set is
	 *      a function created after the catalog was read, its volatility
	 *      unknown -> write, and the analysis says so (unknown_funcs)
	 *      (nextval, setval, currval, lastval, pg_advisory_* and
	 *      pg_try_advisory_* locks, txid_current, pg_current_xact_id,
	 *      set_config, lo_* writers, dblink_exec, dblink, pg_notify,
	 *      pg_terminate_backend, pg_cancel_backend, replication-slot and
	 *      WAL functions, ...)
	 *   6. otherwise read.
	 * A set built from pg_proc (provolatile = 'v') includes random() and
	 * friends: step 4 keeps them readable. Stable functions such as now()
	 * are reads.
	 */
	const sp_funcset_t *write_funcs;
	const sp_funcset_t *read_funcs;
	sp_func_lookup_fn func_lookup;
	void *func_arg;
	const sp_funcset_t *volatile_funcs;
	const sp_funcset_t *known_funcs; /* only used together with volatile_funcs */
	bool no_builtin_read_safe;
} sp_analyze_opts_t;

/* ------------------------------------------------------------------ the calls */

/*
 * Analyse sql (NUL-terminated, any length). opts may be NULL (nothing
 * sharded, built-in function lists). Returns NULL only when out of memory.
 *
 * Sharding rules, in short (the router's authors: read this):
 *  - A sharded table is pinned by conditions on all its key columns that hold
 *    for every row it contributes: key = const | $n | cast of one | -number,
 *    key IN (...), key = ANY(ARRAY[...] | '{...}' | $n), key IS NULL,
 *    (k1, k2) = (v1, v2), (k1, k2) IN ((..), (..)), combined by AND and OR
 *    (an OR branch that does not pin the table unpins it). The conditions
 *    come from WHERE, inner JOIN ... ON, MERGE ... ON and, for the nullable
 *    side only, outer JOIN ... ON. NOT, <>, IS DISTINCT FROM, casts on the
 *    column, functions of the key: not understood, so the table is not
 *    pinned. key IS NULL in WHERE does not pin a table on the nullable side
 *    of an outer join (an anti-join needs all its rows).
 *  - Column references: alias.col or table.col names the FROM item of that
 *    name, searched from the innermost query level outwards. An unqualified
 *    col is looked for only in the FROM of the query level where it is
 *    written; it names every sharded table there whose key has a column of
 *    that name (PostgreSQL rejects such a name as ambiguous unless USING or
 *    NATURAL merged the columns, and merged columns are equal). It is never
 *    resolved to an outer level, because a table of the inner level whose
 *    columns the analyzer does not know could own that name.
 *  - Joins: a.k = b.k on all key columns (same positions), USING (k) or
 *    NATURAL JOIN over the key names, makes a pinned table pin the other,
 *    both ways for inner joins and WHERE, from the preserved to the nullable
 *    side for outer joins, from an outer query level into a correlated
 *    subquery. Derived tables (FROM (SELECT ...)) and CTEs are analysed on
 *    their own: a condition outside them does not pin their tables.
 *  - INSERT ... VALUES pins the target to its rows' key tuples (listed in
 *    row order, duplicates kept) when every row gives every key column a
 *    constant, $n or NULL; without a column list the key's position
 *    comes from columns_lookup (unknown without it: the table is unpinned).
 *    INSERT ... SELECT is pinned when the key's output column is the key of
 *    a pinned sharded table, or a constant / $n in a SELECT without FROM.
 *  - MERGE with WHEN NOT MATCHED THEN INSERT leaves the target unpinned.
 *  - The statement's route compares all sharded tables (sp_route_t).
 */
sp_analysis_t *sp_analyze(const char *sql, const sp_analyze_opts_t *opts);
void sp_analysis_free(sp_analysis_t *a);

/*
 * The first keyword of sql after whitespace, comments and '(' characters,
 * upper-cased into buf (NUL-terminated). Returns its length, or 0 when sql has
 * no keyword there (empty, only comments, a literal or punctuation first) or
 * the word does not fit in buf (a buffer of 32 holds every SQL keyword). When
 * next is not NULL it receives the offset just past the word, so
 * sp_analyze_first_keyword(sql + next, ...) reads the second word (SET LOCAL,
 * START TRANSACTION, ...). No parse, no allocation.
 */
size_t sp_analyze_first_keyword(const char *sql, char *buf, size_t buflen, size_t *next);

/*
 * Plan-cache keys. sp_analyze_normalize() returns sql with every constant
 * replaced by $n (malloc'd, the caller frees it), or NULL if the parser
 * rejects it or on out of memory; whitespace and comments are kept.
 * sp_analyze_fingerprint() hashes the parse tree with constants and $n
 * ignored (libpg_query's fingerprint): statements that differ only in
 * literal values, case, whitespace or comments get the same 64-bit value;
 * false if the parser rejects sql. Measured on a 100-byte SELECT: normalize
 * about 4 us, fingerprint about 7 us of CPU, so normalize (plus a hash of its
 * text) is the cheaper key, and its text can be analysed directly; the
 * fingerprint merges more spellings of one statement into one entry.
 */
bool sp_analyze_fingerprint(const char *sql, uint64_t *out);
char *sp_analyze_normalize(const char *sql);

#endif
