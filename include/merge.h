/*
 * merge.h - merging the results of one SELECT that ran on several shards
 * into the single result the client expects: one RowDescription, the rows
 * (concatenated, or k-way merged for ORDER BY, or combined for aggregates
 * with or without GROUP BY), LIMIT/OFFSET applied after merging, and one
 * CommandComplete with the total row count.
 *
 * The caller (the fan-out driver in the pooler) feeds every backend message
 * of each shard's result, whole, in order, and reads what to send to the
 * client from the output buffer. Merging is streaming where it can be:
 * concatenation and ORDER BY never hold a shard's whole result; only
 * aggregates with GROUP BY (one row per group) are held until all shards end.
 */
#ifndef SP_MERGE_H
#define SP_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SP_MERGE_MAX_SORT 16
#define SP_MERGE_MAX_COLS 256
/* Sorted merge: sp_merge_wants_more() turns false when a shard has this much queued. */
#define SP_MERGE_QUEUE_ROWS 64
#define SP_MERGE_QUEUE_BYTES (1024 * 1024)

typedef enum {
	SP_MAGG_NONE = 0, /* a plain output column (a GROUP BY key, or any column when there is no aggregate) */
	SP_MAGG_COUNT,    /* count(*) / count(x): sum of the shards' counts (int8) */
	SP_MAGG_SUM,      /* sum(x): exact sum of the shards' sums (int, numeric, float) */
	SP_MAGG_MIN,
	SP_MAGG_MAX,
	SP_MAGG_AVG_SUM,  /* the sum half of a rewritten avg(x); avg_count_col names its count */
	SP_MAGG_HIDDEN    /* a column the router added (the count half of avg): not sent to the client */
} sp_merge_agg_t;

typedef struct sp_merge_sort {
	int col;          /* output column index (0-based) as the shards return it; -1: by name */
	char name[64];    /* with col -1: the one result column of this name (SELECT * ... ORDER BY name) */
	bool desc;
	bool nulls_first; /* PostgreSQL's default: NULLS LAST for ASC, NULLS FIRST for DESC */
	bool bytewise;    /* ORDER BY x COLLATE "C": text by bytes whatever the database's collation */
} sp_merge_sort_t;

typedef struct sp_merge_plan {
	int n_sort;
	sp_merge_sort_t sort[SP_MERGE_MAX_SORT];
	int64_t limit;    /* -1: no LIMIT */
	int64_t offset;   /* 0: none. The shards must have run with OFFSET 0 and LIMIT limit+offset. */
	bool has_aggs;    /* combine rows: one row per group (or one row in all without GROUP BY) */
	int n_cols;       /* columns the shards return (including hidden ones); 0 when has_aggs is false */
	sp_merge_agg_t agg[SP_MERGE_MAX_COLS];
	int avg_count_col[SP_MERGE_MAX_COLS]; /* for SP_MAGG_AVG_SUM: index of its SP_MAGG_HIDDEN count */
	/*
	 * For a refusal found only when the columns arrive (a type without a known
	 * order or sum): the sharded table read ("public.orders") and its key
	 * ("orders.user_id"), named in the message and the hint. Empty: not named.
	 */
	char table[96];
	char key[128];
} sp_merge_plan_t;

typedef struct sp_merge sp_merge_t;

/* Start merging n_shards results into out. plan is copied. */
sp_merge_t *sp_merge_new(const sp_merge_plan_t *plan, int n_shards, sp_buf_t *out);
void sp_merge_free(sp_merge_t *m);

/*
 * Feed one whole backend message (type, body without the 5-byte header) that
 * shard i sent for this statement: RowDescription, DataRow, CommandComplete,
 * EmptyQueryResponse, ErrorResponse, NoticeResponse. Returns false if the
 * message makes merging impossible (then sp_merge_error() says why and the
 * caller sends that error to the client); an ErrorResponse from a shard is
 * passed on once (the first one wins) and the merged result is abandoned.
 * false is returned once: after any failure later messages are swallowed
 * (true). An ErrorResponse that arrives after the LIMIT was reached (the
 * cancel) only ends that shard. NoticeResponse, NotificationResponse and
 * ParameterStatus pass through, the same message from several shards once.
 * Other message types (PortalSuspended included) are refused (08P01).
 */
bool sp_merge_feed(sp_merge_t *m, int shard, char type, const uint8_t *body, size_t len);

/*
 * For ORDER BY merges: false while shard i has enough rows buffered that the
 * caller should stop reading its socket until other shards catch up (bounded
 * memory). Always true for concatenation.
 */
bool sp_merge_wants_more(const sp_merge_t *m, int shard);

/*
 * A shard's result ends when its CommandComplete (or EmptyQueryResponse) is
 * fed; that alone emits whatever became ready. Once every shard has ended
 * (sp_merge_all_ended), call sp_merge_finish: it emits the rest and one
 * CommandComplete ("SELECT n", n = rows sent to the client; "FETCH n" when
 * the shards answered FETCH), or one EmptyQueryResponse when every shard sent
 * one. Shards that have not ended are taken as ended (e.g. cancelled after
 * the LIMIT was reached). Nothing is emitted after a failure. Idempotent.
 */
void sp_merge_finish(sp_merge_t *m);
bool sp_merge_failed(const sp_merge_t *m);
const char *sp_merge_error(const sp_merge_t *m); /* message; SQLSTATE via sp_merge_sqlstate */
const char *sp_merge_sqlstate(const sp_merge_t *m);
/* A hint for the client with the error (what would make the read routable), or NULL. */
const char *sp_merge_hint(const sp_merge_t *m);
/* True once the LIMIT is satisfied: the caller may cancel the remaining shards' queries. */
bool sp_merge_limit_reached(const sp_merge_t *m);
/*
 * The client's Execute asked for at most n rows (n > 0): the merge sends the first n
 * rows of the merged result, then PortalSuspended in place of CommandComplete when it
 * sent n, as PostgreSQL does. The shards may run the Execute with the same limit
 * (each returns its first n, then PortalSuspended, which ends its part) unless
 * sp_merge_needs_all_rows: aggregates and OFFSET need every row of every shard.
 */
void sp_merge_set_max_rows(sp_merge_t *m, int64_t n);
bool sp_merge_needs_all_rows(const sp_merge_t *m);

/*
 * Added by the merge implementation:
 *
 * sp_merge_set_columns: the result's columns from a RowDescription the client
 * already has (Describe earlier, Execute now): the merge learns types and
 * formats without sending it. A RowDescription that shards send later is
 * only checked against it.
 */
bool sp_merge_set_columns(sp_merge_t *m, const uint8_t *rowdesc_body, size_t len);
/*
 * sp_merge_set_collation: how the shards' database orders text (its
 * datcollate and datlocprovider, 'c', 'i' or 'b'), before the first message.
 * C, POSIX, C.* and the builtin provider (code point order) compare bytes; another libc locale compares with strcoll_l,
 * if the locale exists on this host; an ICU or unknown (NULL) collation
 * makes ORDER BY / min / max on text columns fail with 0A000. Without this
 * call text compares by bytes.
 */
void sp_merge_set_collation(sp_merge_t *m, const char *collate, char provider);
/* Every shard's result has ended (CommandComplete, EmptyQueryResponse or, after the LIMIT, an error). */
bool sp_merge_all_ended(const sp_merge_t *m);
/* Rows sent to the client so far. */
uint64_t sp_merge_rows_sent(const sp_merge_t *m);
/*
 * PostgreSQL 15's text output of float8 / float4 with extra_float_digits >= 1
 * (shortest exact decimal, as its Ryu code prints it). Returns the length.
 */
int sp_merge_format_float8(double d, char *out, size_t outlen);
int sp_merge_format_float4(float f, char *out, size_t outlen);

#endif
