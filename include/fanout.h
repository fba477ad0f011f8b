/*
 * fanout.h - one client statement running on several shards at once.
 */
#ifndef SP_FANOUT_H
#define SP_FANOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "merge.h"
#include "router.h"
#include "sp_types.h"

typedef struct sp_fanout sp_fanout_t;

/*
 * Start running the client's current simple Query (msg, total bytes incl.
 * header) on every shard of t->shard_mask. The client must be in
 * SP_CLIENT_IDLE; it moves to SP_CLIENT_FANOUT until every shard answered,
 * then back to idle. Servers are acquired one shard at a time, in shard
 * order, so two fan-outs never wait on each other.
 */
void sp_fanout_start(sp_client_t *c, const sp_target_t *t, const uint8_t *msg, size_t total, bool write);
/*
 * The same for an extended-protocol batch: the first batch_len bytes of the
 * client's input (Parse/Bind/Describe/Execute ... Sync, one Execute) run on
 * every shard. Shard 0's server leads: its answers to Parse, Bind, Close
 * and Describe reach the client, the others' are dropped, and the other
 * shards' rows wait until shard 0's RowDescription went out.
 */
void sp_fanout_start_batch(sp_client_t *c, const sp_target_t *t, size_t batch_len, bool write);
/*
 * A batch whose Binds need different shards (each Bind one shard, outside any
 * transaction): bind_shards[i] is the shard of the batch's i-th Bind (-1: any). Each
 * shard gets its Binds with their Describe/Execute/Close, and every Parse, statement
 * Describe/Close, Flush and Sync; the answers reach the client in the order of its
 * messages. A batch that writes runs inside BEGIN on every shard, and all commit only
 * when every shard got through without an error (else all roll back): the batch stays
 * all-or-nothing as it is on one server, short of a shard failing between the commits.
 */
/* A Bind of a split batch that itself runs on several shards, each with its own text (a
 * multi-row INSERT split by rows, as pgjdbc's reWriteBatchedInserts sends): its shards,
 * and where each shard's text starts in the batch's text buffer. Its Execute answers
 * with every shard's rows and one CommandComplete counting them all. */
typedef struct sp_split_group {
	int bind;            /* index of the Bind among the batch's Binds */
	uint64_t mask;       /* its shards */
	uint32_t off[64];    /* per shard: offset of its NUL-terminated text */
} sp_split_group_t;

void sp_fanout_start_split(sp_client_t *c, const sp_target_t *t, size_t batch_len, bool write,
			   const int16_t *bind_shards, int n_binds, const sp_split_group_t *groups,
			   int n_groups, const sp_buf_t *texts);
/* In a split batch: the text slot's shard runs for message msg_index (a Bind of a
 * group), or NULL when slot takes no part in it or the Bind is not a group's. */
const char *sp_fanout_split_text(const sp_fanout_t *f, int msg_index, int slot);
/* In a split batch: the slot message msg_index of the batch goes to, -1 for all, -2
 * for the slots of a group (sp_fanout_split_member). */
int sp_fanout_split_owner(const sp_fanout_t *f, int msg_index);
bool sp_fanout_split_member(const sp_fanout_t *f, int msg_index, int slot);
bool sp_fanout_is_split(const sp_fanout_t *f);
/* The split batch runs inside BEGIN on every shard. */
bool sp_fanout_split_txn(const sp_fanout_t *f);
/* Whether server s of a fan-out may answer the client directly (synthesised
 * ParseComplete/CloseComplete): only the leader's. */
bool sp_fanout_is_leader(const sp_fanout_t *f, const sp_server_t *s);
/* The shards' rows are merged (ORDER BY, aggregates), not passed through. */
bool sp_fanout_merges(const sp_fanout_t *f);
/*
 * A merged extended-protocol fan-out whose batch has no Describe before its
 * Execute (a driver reusing a statement it described earlier) still needs the
 * columns: the caller adds Describe('P') for every shard and calls this, so
 * the RowDescriptions that brings are learnt, not sent on.
 */
void sp_fanout_hide_row_description(sp_fanout_t *f);
/*
 * An extended-protocol fan-out whose statement is rewritten per shard (avg(),
 * OFFSET, LIMIT with GROUP BY, a split INSERT): the text slot's shard runs in
 * place of the client's statement, and the number of columns it returns (for the
 * Bind's result formats). NULL when the fan-out runs the client's text.
 */
const char *sp_fanout_rewrite_sql(const sp_fanout_t *f, int slot, int *n_cols);
/*
 * A merged fan-out forwards a Describe('S') to slot's server: the RowDescription
 * it brings describes the client's statement and goes to the client as it is
 * (the leader's), not into the merge, which learns its columns from the portal.
 */
void sp_fanout_statement_describe(sp_fanout_t *f, int slot);
/*
 * The client's Execute asks for at most max_rows rows (0: all): a merged fan-out
 * gives the client the first max_rows merged rows and then PortalSuspended. Returns
 * the row limit to send each shard (0 when the merge needs every row).
 */
int32_t sp_fanout_execute_limit(sp_fanout_t *f, int32_t max_rows);
/* The pool hands shard idx's server to the fan-out. */
void sp_fanout_server_ready(sp_fanout_t *f, sp_server_t *s);
void sp_fanout_server_failed(sp_fanout_t *f, const char *sqlstate, const char *msg);
/* A whole response message from one of the fan-out's servers. */
void sp_fanout_feed(sp_fanout_t *f, sp_server_t *s, const uint8_t *msg, size_t total);
/* The server of shard slot idx finished (ReadyForQuery, nothing outstanding) and was released. */
void sp_fanout_server_done(sp_fanout_t *f, int idx);
/* The server of slot idx is being closed: forget it. */
void sp_fanout_forget(sp_fanout_t *f, int idx);
/* The fan-out's shard slots, and the server of slot i (NULL: none, or done). */
int sp_fanout_width(const sp_fanout_t *f);
sp_server_t *sp_fanout_server(const sp_fanout_t *f, int i);
/*
 * Server idx of the fan-out is closing under it (killed, crashed, connection lost):
 * the statement fails with 08006 naming the shard and why, the other shards'
 * servers are closed if they are still running it (what they did rolls back) or
 * given back, and the client goes on with its session. Returns false, changing
 * nothing, when the fan-out cannot end that way (still acquiring its servers, or the
 * client is sending COPY data): the caller then closes the client.
 */
bool sp_fanout_server_lost(sp_fanout_t *f, int idx, const char *reason);
/* The client went away: drop the servers (closing those with work in flight). */
void sp_fanout_abort(sp_fanout_t *f);
/* The fan-out writes (its WAL positions matter for read-your-writes). */
bool sp_fanout_is_write(const sp_fanout_t *f);
/* COPY FROM STDIN in progress: the client's CopyData goes to sp_fanout_client_input(). */
bool sp_fanout_takes_input(const sp_fanout_t *f);
void sp_fanout_client_input(sp_fanout_t *f);
/* Server s ended its part of a COPY transaction (ReadyForQuery 'T' or 'E'): returns
 * true if the fan-out keeps it for the COMMIT or ROLLBACK it sends once all shards did. */
bool sp_fanout_txn_open(sp_fanout_t *f, sp_server_t *s);
/* Whether server s may read more (ORDER BY merge backpressure). */
bool sp_fanout_wants(sp_fanout_t *f, sp_server_t *s);

#endif
