/*
 * fanout.c - drives one client statement on several shards: acquires one
 * server per shard (in shard order, one at a time, so concurrent fan-outs
 * cannot deadlock on small pools), sends each its SQL (the client's text,
 * or the router's per-shard rewrite), feeds the shards' responses to the
 * merge (reads) or sums their row counts (writes to every shard), and
 * answers the client once, with one ReadyForQuery, when every shard is done.
 *
 * Only the simple query protocol fans out, and only outside an explicit
 * transaction: the router refuses the other cases. Servers go back to their
 * pools as soon as their own part is done.
 *
 * COPY: for COPY ... FROM STDIN the client gets one CopyInResponse once every
 * shard is ready; its data is split into rows (copysplit.c), each row sent
 * to the shard of its key (or every row to every shard for a replicated
 * table); a shard's error or a bad row makes every shard fail the COPY, so
 * no shard keeps a partial load. For COPY ... TO STDOUT the shards' CopyData
 * are concatenated, with one CopyOutResponse, one header (csv HEADER,
 * binary) and one CopyDone / trailer.
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "copysplit.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "server.h"

/* One answer a shard owes a split batch; fwd: it goes to the client (else dropped). */
enum { U_PARSE = 1, U_BIND, U_DESC_S, U_DESC_P, U_EXEC, U_CLOSE };
struct split_unit {
	uint8_t kind;
	bool fwd;
	int16_t group; /* a group's (split INSERT) unit: -1 for none */
};

struct sp_fanout {
	sp_client_t *c;
	int n;
	int shards[SP_ROUTER_MAX_SHARDS];
	sp_server_t *servers[SP_ROUTER_MAX_SHARDS];
	bool done[SP_ROUTER_MAX_SHARDS];
	sp_buf_t sql[SP_ROUTER_MAX_SHARDS]; /* Query message per shard; extended protocol with
					     * a rewrite: the slot's statement text */
	int acquired, finished;
	bool write;
	bool merge_mode;
	sp_merge_t *merge;
	/* sum mode */
	bool sent_rowdesc;
	uint64_t rows;
	char verb[32];
	bool error_sent;
	char lost[200];   /* a shard's FATAL message: its connection is ending, the client's is not */
	bool aborted;
	bool first_only;  /* replicated write: only the lowest shard's result reaches the client */
	/* split INSERT ... RETURNING: the slot of each VALUES row; a shard's rows wait in
	 * rowq until their turn, so the client gets them in its row order */
	int *row_slot;
	int n_row_slot, row_pos;
	sp_buf_t rowq[SP_ROUTER_MAX_SHARDS];
	ev_timer kick;    /* resumes paused servers from the loop, never from inside another's processing */
	char tag[64];     /* first shard's CommandComplete, for tags without a row count */
	bool query_txn;   /* the client's Query runs as "BEGIN; ..." on every shard (COPY FROM, a
			   * write over several shards): all COMMIT, or all ROLLBACK */
	bool batch_txn;   /* the same for an extended batch that writes over several shards:
			   * BEGIN goes before it (see sp_fanout_split_txn) */
	int txn_open;     /* shards whose transaction waits for COMMIT or ROLLBACK */
	size_t batch_len; /* extended protocol: the client's batch, still at the head of its input */
	bool extended;
	bool leader_ready; /* slot 0 sent its RowDescription (or ended): others may feed the merge */
	bool hidden_describe; /* shardpool added a Describe the client did not send: its RowDescription stays here */
	bool collation_set;   /* the merge was told the database's collation */
	/* split batch: each Bind (and its Describe/Execute/Close) goes to its own shard,
	 * Parse, statement Describe/Close, Flush and Sync to all; the answers reach the
	 * client in the order of the client's messages (see split_pump) */
	bool split_batch;
	bool split_txn;       /* the batch writes: each shard runs it inside BEGIN, and all
			       * commit only if every shard got through without an error */
	bool split_failed;    /* an error went to the client: nothing more until ReadyForQuery */
	int16_t *owner;       /* per message of the batch: its slot, -1 for every slot */
	int n_msgs;
	struct split_unit *units[SP_ROUTER_MAX_SHARDS]; /* per slot: the answers it owes, in order */
	int n_units[SP_ROUTER_MAX_SHARDS], cap_units[SP_ROUTER_MAX_SHARDS], unit_head[SP_ROUTER_MAX_SHARDS];
	bool desc_half[SP_ROUTER_MAX_SHARDS]; /* Describe('S'): ParameterDescription seen */
	int32_t *order;       /* the answers the client gets, in its order: a slot, or
			       * -(g + 1) for group g, whose member slots answer in turn */
	int n_order, order_pos;
	sp_split_group_t *groups; /* the batch's split INSERTs (copied from the client) */
	int n_groups;
	sp_buf_t texts;       /* their per-shard texts */
	int16_t *msg_group;   /* per message: its group, -1 for none */
	int grp_member;       /* the group answer being assembled: members done so far ... */
	uint64_t grp_rows;    /* ... the rows their CommandCompletes counted ... */
	char grp_verb[16];    /* ... the command they name ... */
	uint8_t grp_kind;     /* ... and the kind of message they answer */
	bool rewrite;         /* extended protocol: each shard runs its own text (sql[slot]) */
	int rw_cols;          /* columns of the rewritten text (visible and hidden) */
	int raw_desc[SP_ROUTER_MAX_SHARDS]; /* statement Describes in flight per slot: their
					     * RowDescriptions describe the client's statement,
					     * not what the merge gets */
	sp_buf_t pending[SP_ROUTER_MAX_SHARDS]; /* other slots' messages held until then */

	/* COPY FROM STDIN */
	sp_router_copy_t copy;
	const sp_db_conf_t *db;
	sp_copysplit_t *split;
	sp_buf_t *shard_rows;       /* per shard number: rows waiting to be wrapped */
	int slot_of[SP_ROUTER_MAX_SHARDS];
	int copy_in_ready;          /* shards that answered CopyInResponse */
	bool copy_started;          /* the client got its CopyInResponse */
	bool copy_ended;            /* the client sent CopyDone or CopyFail */
	bool copy_failed;           /* a shard or a row failed: every shard gets CopyFail */
	uint8_t *copy_in_msg;       /* the first shard's CopyInResponse */
	size_t copy_in_len;
	uint64_t copy_fwd_remaining; /* CopyData body bytes of the client not yet fed */

	/* COPY TO STDOUT */
	bool copy_out_sent;         /* CopyOutResponse went to the client */
	bool copy_out_binary;
	bool copy_out_header;       /* csv HEADER: each shard's first CopyData is the header */
	bool first_data_seen[SP_ROUTER_MAX_SHARDS];
	bool header_sent;
	int copy_out_done;
};

static void acquire_next(sp_fanout_t *f);
static void free_split(sp_fanout_t *f);

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	sp_fanout_t *f = container_of(w, sp_fanout_t, kick);
	sp_client_t *c = f->c;
	uint64_t gen = c->fan_gen;
	int n = f->n;
	/* A resume may finish (and free) the fan-out: look at f only while it is still
	 * the client's same fan-out. */
	for (int k = 0; k < n && c->fan == f && c->fan_gen == gen; k++) {
		sp_server_t *s = f->servers[k];
		if (s && !f->done[k] && !s->sock.reading && sp_fanout_wants(f, s))
			sp_server_resume(s);
	}
}

/* Resume paused servers on the next loop iteration: resuming one from inside another
 * server's processing would nest the merge into itself. */
static void schedule_kick(sp_fanout_t *f)
{
	if (!ev_is_active(&f->kick)) {
		ev_timer_set(&f->kick, 0, 0);
		ev_timer_start(sp_loop, &f->kick);
	}
}

static void free_copy(sp_fanout_t *f)
{
	if (f->split)
		sp_copysplit_free(f->split);
	f->split = NULL;
	if (f->shard_rows) {
		for (int i = 0; i < f->db->n_shards; i++)
			sp_buf_free(&f->shard_rows[i]);
		free(f->shard_rows);
		f->shard_rows = NULL;
	}
	free(f->copy_in_msg);
	f->copy_in_msg = NULL;
}

static int copy_shard_of(void *arg, const char *const *key_text, const bool *key_null, int n_keys, char *err,
			 size_t errlen)
{
	sp_fanout_t *f = arg;
	(void)n_keys;
	return sp_router_shard_of_text(f->db, f->copy.table, key_text, key_null, err, errlen);
}

/* Free f and what it owns (not its servers: drop_servers); the client leaves the fan-out. */
static void dispose(sp_fanout_t *f)
{
	if (f->merge)
		sp_merge_free(f->merge);
	free_copy(f);
	free_split(f);
	ev_timer_stop(sp_loop, &f->kick);
	for (int i = 0; i < f->n; i++) {
		sp_buf_free(&f->sql[i]);
		sp_buf_free(&f->pending[i]);
		sp_buf_free(&f->rowq[i]);
	}
	free(f->row_slot);
	f->c->fan = NULL;
	free(f);
}

/* Let go of the servers f still holds: idle ones back to their pools, busy ones closed
 * (what they run is cancelled first: nobody will read it). */
static void drop_servers(sp_fanout_t *f, const char *why)
{
	for (int i = 0; i < f->n; i++) {
		sp_server_t *s = f->servers[i];
		if (!s)
			continue;
		f->servers[i] = NULL;
		s->fan = NULL;
		s->client = NULL;
		if (sp_server_busy(s)) {
			sp_client_cancel_abandoned(s);
			sp_server_close(s, why);
		} else {
			sp_server_release(s);
		}
	}
}

/* Pass on the queued RETURNING rows whose turn has come; all: every one left, in slot
 * order (a shard returned fewer rows than it was given: ON CONFLICT DO NOTHING). */
static void drain_rows(sp_fanout_t *f, sp_buf_t *out, bool all)
{
	while (f->row_pos < f->n_row_slot) {
		sp_buf_t *q = &f->rowq[f->row_slot[f->row_pos]];
		if (sp_buf_len(q) < 5)
			break;
		size_t total = (size_t)sp_get_be32(sp_buf_head(q) + 1) + 1;
		sp_buf_append(out, sp_buf_head(q), total);
		sp_buf_consume(q, total);
		f->row_pos++;
	}
	if (all)
		for (int i = 0; i < f->n; i++) {
			sp_buf_append(out, sp_buf_head(&f->rowq[i]), sp_buf_len(&f->rowq[i]));
			sp_buf_reset(&f->rowq[i]);
		}
}

static void finish(sp_fanout_t *f)
{
	sp_client_t *c = f->c;
	sp_buf_t *out = &c->sock.out;
	if (f->merge_mode) {
		if (!sp_merge_failed(f->merge))
			sp_merge_finish(f->merge);
	} else if (f->copy_out_sent && !f->error_sent) {
		if (f->copy_out_binary) {
			static const uint8_t trailer[] = {0xff, 0xff};
			size_t at = sp_msg_begin(out, SP_BE_COPY_DATA);
			pq_sendbytes(out, trailer, 2);
			sp_msg_end(out, at);
		}
		sp_msg_write_empty(out, SP_BE_COPY_DONE);
		{
			char tag[64];
			snprintf(tag, sizeof(tag), "COPY %llu", (unsigned long long)f->rows);
			sp_msg_write_command_complete(out, tag);
		}
	} else if (f->split_batch) {
		/* every answer went to the client as it came */
	} else if (!f->error_sent) {
		char tag[64];
		if (f->row_slot)
			drain_rows(f, out, true);
		if (strcmp(f->verb, "INSERT") == 0)
			snprintf(tag, sizeof(tag), "INSERT 0 %llu", (unsigned long long)f->rows);
		else if (f->verb[0])
			snprintf(tag, sizeof(tag), "%s %llu", f->verb, (unsigned long long)f->rows);
		else if (f->tag[0])
			snprintf(tag, sizeof(tag), "%s", f->tag);
		else
			snprintf(tag, sizeof(tag), "SELECT %llu", (unsigned long long)f->rows);
		sp_msg_write_command_complete(out, tag);
	}
	/* A read may fan out as the first statement of a BEGIN that has no shard yet: it
	 * runs outside that transaction, which stays open for the client. */
	sp_msg_write_ready_for_query(out, sp_client_txn_status(c));
	dispose(f);
	c->in_copy = false;
	sp_client_set_state(c, SP_CLIENT_IDLE);
	c->n_xacts++;
	sp_pool_fanout_end(c->home_pool, c->wait_since);
	c->pool = NULL;
	if (!sp_sock_flush(&c->sock)) {
		sp_client_close(c, "write to client failed");
		return;
	}
	if (sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
	else
		sp_sock_read_start(&c->sock);
}

static void start(sp_client_t *c, const sp_target_t *t, const uint8_t *msg, size_t total, bool write,
		  size_t batch_len, const int16_t *bind_shards, int n_binds, const sp_split_group_t *groups,
		  int n_groups, const sp_buf_t *texts);

void sp_fanout_start(sp_client_t *c, const sp_target_t *t, const uint8_t *msg, size_t total, bool write)
{
	start(c, t, msg, total, write, 0, NULL, 0, NULL, 0, NULL);
}

void sp_fanout_start_batch(sp_client_t *c, const sp_target_t *t, size_t batch_len, bool write)
{
	start(c, t, NULL, 0, write, batch_len, NULL, 0, NULL, 0, NULL);
}

void sp_fanout_start_split(sp_client_t *c, const sp_target_t *t, size_t batch_len, bool write,
			   const int16_t *bind_shards, int n_binds, const sp_split_group_t *groups,
			   int n_groups, const sp_buf_t *texts)
{
	start(c, t, NULL, 0, write, batch_len, bind_shards, n_binds, groups, n_groups, texts);
}

bool sp_fanout_merges(const sp_fanout_t *f)
{
	return f->merge_mode;
}

void sp_fanout_hide_row_description(sp_fanout_t *f)
{
	f->hidden_describe = true;
}

const char *sp_fanout_rewrite_sql(const sp_fanout_t *f, int slot, int *n_cols)
{
	if (!f->rewrite || slot < 0 || slot >= f->n || !sp_buf_len(&f->sql[slot]))
		return NULL;
	*n_cols = f->rw_cols;
	return (const char *)sp_buf_head(&f->sql[slot]);
}

int32_t sp_fanout_execute_limit(sp_fanout_t *f, int32_t max_rows)
{
	if (!f->merge_mode || max_rows <= 0)
		return max_rows;
	sp_merge_set_max_rows(f->merge, max_rows);
	return sp_merge_needs_all_rows(f->merge) ? 0 : max_rows;
}

void sp_fanout_statement_describe(sp_fanout_t *f, int slot)
{
	if (f->merge_mode && slot >= 0 && slot < f->n)
		f->raw_desc[slot]++;
}

bool sp_fanout_is_leader(const sp_fanout_t *f, const sp_server_t *s)
{
	return !f->extended || s->fan_idx == 0;
}

static void free_split(sp_fanout_t *f)
{
	free(f->owner);
	free(f->order);
	free(f->groups);
	free(f->msg_group);
	sp_buf_free(&f->texts);
	for (int i = 0; i < SP_ROUTER_MAX_SHARDS; i++)
		free(f->units[i]);
}

static bool add_unit(sp_fanout_t *f, int slot, uint8_t kind, bool fwd, int group)
{
	if (!sp_grow_array(&f->units[slot], &f->cap_units[slot], f->n_units[slot] + 1, sizeof(struct split_unit)))
		return false;
	f->units[slot][f->n_units[slot]++] = (struct split_unit){kind, fwd, (int16_t)group};
	if (fwd && group < 0)
		f->order[f->n_order++] = slot;
	return true;
}

/*
 * Which slot each message of the batch (the head of the client's input) goes to, and
 * what every slot owes: a Bind to its shard's slot, the Describe/Execute/Close of its
 * portal to the same slot; Parse, statement Describe/Close, Flush and Sync to every
 * slot, answered to the client by slot 0. Routing checked that each portal is bound
 * in the batch before it is used.
 */
static bool plan_split(sp_fanout_t *f, const uint8_t *p, size_t len, const int16_t *bind_shards, int n_binds)
{
	size_t pos = 0;
	int n = 0, b = 0, gi = 0, n_portals = 0, unnamed_owner = 0;
	const char *portal_name[8];
	int portal_owner[8]; /* a slot, or -(g + 2) for group g */
	while (pos < len) {
		n++;
		pos += 1 + sp_get_be32(p + pos + 1);
	}
	f->owner = malloc((size_t)n * sizeof(*f->owner));
	f->order = malloc((size_t)n * sizeof(*f->order));
	f->msg_group = malloc((size_t)n * sizeof(*f->msg_group));
	if (!f->owner || !f->order || !f->msg_group)
		return false;
	f->n_msgs = n;
	pos = 0;
	for (int i = 0; i < n; i++) {
		char type = (char)p[pos];
		const char *body = (const char *)p + pos + 5;
		int owner = -1; /* a slot, -1 every slot, or -(g + 2) for group g */
		uint8_t kind = 0;
		if (type == SP_FE_BIND) {
			int shard = b < n_binds ? bind_shards[b] : -1;
			if (shard == -2) {
				while (gi < f->n_groups && f->groups[gi].bind < b)
					gi++;
				if (gi >= f->n_groups || f->groups[gi].bind != b)
					return false;
				owner = -(gi + 2);
			} else {
				owner = shard >= 0 ? f->slot_of[shard] : 0;
			}
			b++;
			kind = U_BIND;
			if (!*body) {
				unnamed_owner = owner;
			} else if (n_portals < 8) {
				portal_name[n_portals] = body;
				portal_owner[n_portals++] = owner;
			}
		} else if (type == SP_FE_EXECUTE || ((type == SP_FE_DESCRIBE || type == SP_FE_CLOSE) && body[0] == 'P')) {
			const char *portal = type == SP_FE_EXECUTE ? body : body + 1;
			owner = unnamed_owner;
			if (*portal)
				for (int k = n_portals - 1; k >= 0; k--)
					if (strcmp(portal_name[k], portal) == 0) {
						owner = portal_owner[k];
						break;
					}
			kind = type == SP_FE_EXECUTE ? U_EXEC : type == SP_FE_DESCRIBE ? U_DESC_P : U_CLOSE;
		} else if (type == SP_FE_PARSE) {
			kind = U_PARSE;
		} else if (type == SP_FE_DESCRIBE) {
			kind = U_DESC_S;
		} else if (type == SP_FE_CLOSE) {
			kind = U_CLOSE;
		}
		f->owner[i] = (int16_t)(owner >= 0 ? owner : owner == -1 ? -1 : -2);
		f->msg_group[i] = (int16_t)(owner <= -2 ? -(owner + 2) : -1);
		if (kind && owner >= 0 && !add_unit(f, owner, kind, true, -1))
			return false;
		for (int k = 0; kind && owner == -1 && k < f->n; k++)
			if (!add_unit(f, k, kind, k == 0, -1))
				return false;
		if (kind && owner <= -2) {
			int g = -(owner + 2);
			for (int k = 0; k < f->n; k++)
				if ((f->groups[g].mask & (1ULL << f->shards[k])) && !add_unit(f, k, kind, true, g))
					return false;
			f->order[f->n_order++] = -(g + 1);
		}
		pos += 1 + sp_get_be32(p + pos + 1);
	}
	return true;
}

int sp_fanout_split_owner(const sp_fanout_t *f, int msg_index)
{
	if (!f->split_batch || msg_index < 0 || msg_index >= f->n_msgs)
		return -1;
	return f->owner[msg_index];
}

bool sp_fanout_split_member(const sp_fanout_t *f, int msg_index, int slot)
{
	if (!f->split_batch || msg_index < 0 || msg_index >= f->n_msgs || slot < 0 || slot >= f->n)
		return false;
	int g = f->msg_group[msg_index];
	return g >= 0 && (f->groups[g].mask & (1ULL << f->shards[slot]));
}

const char *sp_fanout_split_text(const sp_fanout_t *f, int msg_index, int slot)
{
	if (!sp_fanout_split_member(f, msg_index, slot))
		return NULL;
	const sp_split_group_t *g = &f->groups[f->msg_group[msg_index]];
	return (const char *)sp_buf_head(&f->texts) + g->off[f->shards[slot]];
}

bool sp_fanout_is_split(const sp_fanout_t *f)
{
	return f->split_batch;
}

bool sp_fanout_split_txn(const sp_fanout_t *f)
{
	return (f->split_batch && f->split_txn) || f->batch_txn;
}

/* "BEGIN;" before the SQL of a Query message, in place: each shard's part commits only
 * if every shard's did (sp_fanout_txn_open). */
static void bracket_query(sp_buf_t *m)
{
	sp_buf_t q = {0};
	const char *sql = (const char *)sp_buf_head(m) + 5;
	sp_buf_append(&q, "BEGIN;", 6);
	sp_buf_append(&q, sql, strlen(sql) + 1);
	sp_buf_reset(m);
	sp_msg_write_query(m, (const char *)q.data);
	sp_buf_free(&q);
}

static void start(sp_client_t *c, const sp_target_t *t, const uint8_t *msg, size_t total, bool write,
		  size_t batch_len, const int16_t *bind_shards, int n_binds, const sp_split_group_t *groups,
		  int n_groups, const sp_buf_t *texts)
{
	sp_fanout_t *f = calloc(1, sizeof(*f));
	if (!f) {
		sp_client_error(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL);
		return;
	}
	f->c = c;
	f->write = write;
	ev_timer_init(&f->kick, kick_cb, 0, 0);
	for (int i = 0; i < c->db->n_shards && i < SP_ROUTER_MAX_SHARDS; i++) {
		if (!(t->shard_mask & (1ULL << i)))
			continue;
		f->shards[f->n] = i;
		if (batch_len) {
			/* the batch is sent from the client's input when the servers are ready;
			 * a rewrite's text replaces the statement at the Bind */
			if (t->per_shard_sql)
				sp_buf_append(&f->sql[f->n], t->sql[i].data, strlen((const char *)t->sql[i].data) + 1);
		} else if (t->per_shard_sql) {
			sp_msg_write_query(&f->sql[f->n], (const char *)t->sql[i].data);
		} else {
			sp_buf_append(&f->sql[f->n], msg, total);
		}
		f->n++;
	}
	f->db = c->db;
	f->batch_len = batch_len;
	f->extended = batch_len > 0;
	f->first_only = t->fanout_first;
	f->rewrite = batch_len && t->per_shard_sql;
	f->rw_cols = t->merge.n_cols;
	f->copy = t->copy;
	f->copy_out_header = t->copy.header;
	for (int k = 0; k < f->n; k++)
		f->slot_of[f->shards[k]] = k;
	if (t->row_shard && t->n_row_shard > 0 && !t->fanout_merge && !t->fanout_first) {
		f->row_slot = malloc((size_t)t->n_row_shard * sizeof(int));
		for (int r = 0; f->row_slot && r < t->n_row_shard; r++)
			f->row_slot[r] = f->slot_of[t->row_shard[r]];
		f->n_row_slot = f->row_slot ? t->n_row_shard : 0;
	}
	if (t->copy.mode == SP_ROUTER_COPY_SPLIT) {
		sp_copy_opts_t o = {.format = t->copy.binary ? SP_CSPLIT_BINARY
					      : t->copy.csv  ? SP_CSPLIT_CSV
							     : SP_CSPLIT_TEXT,
				    .key_types = t->copy.table ? t->copy.table->key_types : NULL,
				    .delimiter = t->copy.delimiter,
				    .quote = t->copy.quote,
				    .escape = t->copy.escape,
				    .null_str = t->copy.null_str,
				    .header = t->copy.header,
				    .force_not_null = t->copy.force_not_null,
				    .force_null = t->copy.force_null};
		f->shard_rows = calloc((size_t)c->db->n_shards, sizeof(sp_buf_t));
		f->split = f->shard_rows ? sp_copysplit_new(&o, t->copy.key_pos, t->copy.n_keys, copy_shard_of, f, c->db->n_shards)
				   : NULL;
		if (f->split && !batch_len) {
			/* "BEGIN; COPY ...": each shard's part commits only if every shard's did */
			for (int k = 0; k < f->n; k++)
				bracket_query(&f->sql[k]);
			f->query_txn = true;
		}
		if (!f->split || f->n != c->db->n_shards) {
			free_copy(f);
			for (int i = 0; i < f->n; i++)
				sp_buf_free(&f->sql[i]);
			free(f);
			sp_client_error(c, SP_SQLSTATE_INTERNAL, "cannot split this COPY across shards", NULL);
			return;
		}
	}
	if (t->fanout_txn && t->copy.mode == SP_ROUTER_COPY_NONE && !bind_shards && f->n > 1) {
		if (!batch_len) {
			for (int k = 0; k < f->n; k++)
				bracket_query(&f->sql[k]);
			f->query_txn = true;
		} else {
			f->batch_txn = true;
		}
	}
	if (bind_shards) {
		f->split_batch = true;
		f->split_txn = write;
		if (n_groups > 0) {
			f->groups = malloc((size_t)n_groups * sizeof(*f->groups));
			if (f->groups)
				memcpy(f->groups, groups, (size_t)n_groups * sizeof(*f->groups));
			f->n_groups = f->groups ? n_groups : 0;
			sp_buf_append(&f->texts, sp_buf_head(texts), sp_buf_len(texts));
		}
		if ((n_groups > 0 && !f->groups) ||
		    !plan_split(f, sp_buf_head(&c->sock.in), batch_len, bind_shards, n_binds)) {
			free_split(f);
			free(f);
			sp_client_error(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL);
			return;
		}
	}
	f->merge_mode = t->fanout_merge;
	if (f->merge_mode) {
		f->merge = sp_merge_new(&t->merge, f->n, &c->sock.out);
		if (!f->merge) {
			for (int i = 0; i < f->n; i++)
				sp_buf_free(&f->sql[i]);
			free(f);
			sp_client_error(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL);
			return;
		}
	}
	c->fan = f;
	c->fan_gen++;
	sp_client_set_state(c, SP_CLIENT_FANOUT);
	c->wait_since = ev_now(sp_loop);
	c->n_queries++;
	acquire_next(f);
}

static sp_pool_t *pool_for(sp_fanout_t *f, int shard)
{
	sp_client_t *c = f->c;
	int replica = -1;
	if (!f->write && c->db->read_replicas) {
		uint64_t min_lsn = c->written_lsn ? c->written_lsn[shard] : 0;
		replica = sp_health_pick_read(c->db, shard, min_lsn, 0);
	} else if (f->write) {
		int w = sp_health_write_target(c->db, shard);
		if (w >= 0)
			replica = w; /* a promoted replica takes the writes */
	}
	if (replica >= 0)
		return sp_pool_get(c->dbname, c->user, shard, SP_ROLE_REPLICA, replica);
	return sp_pool_get(c->dbname, c->user, shard, SP_ROLE_PRIMARY, 0);
}

static void acquire_next(sp_fanout_t *f)
{
	sp_client_t *c = f->c;
	sp_pool_t *p;
	if (f->acquired == f->n)
		return;
	p = pool_for(f, f->shards[f->acquired]);
	if (!p) {
		sp_fanout_server_failed(f, SP_SQLSTATE_INTERNAL, "no pool for a shard of the fan-out");
		return;
	}
	c->pool = p;
	sp_pool_acquire(p, c);
}

void sp_fanout_server_ready(sp_fanout_t *f, sp_server_t *s)
{
	sp_client_t *c = f->c;
	int i = f->acquired++;
	f->servers[i] = s;
	s->fan = f;
	s->fan_idx = i;
	sp_server_attach(s, c);
	if (f->acquired < f->n) {
		acquire_next(f);
		return;
	}
	/* Every shard has a server: send all queries at once. */
	if (f->extended) {
		/* forwarding or sending may end the client (and free f): check before touching f */
		uint64_t gen = c->fan_gen;
		size_t batch_len = f->batch_len;
		for (int k = 0;; k++) {
			if (c->state == SP_CLIENT_CLOSED || c->fan != f || c->fan_gen != gen)
				return;
			if (k >= f->n)
				break;
			sp_server_t *sk = f->servers[k];
			sp_client_forward_batch(c, sk, batch_len);
			if (c->state == SP_CLIENT_CLOSED || c->fan != f || c->fan_gen != gen)
				return;
			sp_server_send(sk);
		}
		sp_buf_consume(&c->sock.in, batch_len);
		return;
	}
	for (int k = 0; k < f->n; k++) {
		sp_server_t *sk = f->servers[k];
		sp_server_push_req(sk, SP_REQ_QUERY, NULL, SP_INTQ_NONE);
		sp_buf_append(&sk->sock.out, f->sql[k].data, sp_buf_len(&f->sql[k]));
		sp_server_send(sk);
		if (c->state == SP_CLIENT_CLOSED)
			return;
	}
}

void sp_fanout_server_failed(sp_fanout_t *f, const char *sqlstate, const char *msg)
{
	sp_client_t *c = f->c;
	/* Give back what we hold; none of them has been sent anything yet. */
	for (int i = 0; i < f->acquired; i++) {
		sp_server_t *s = f->servers[i];
		s->fan = NULL;
		s->client = NULL;
		sp_server_release(s);
	}
	f->acquired = 0;
	dispose(f);
	sp_client_set_state(c, SP_CLIENT_IDLE);
	sp_client_error(c, sqlstate, msg, NULL);
	if (c->state != SP_CLIENT_CLOSED && sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
}

static void fail_copy(sp_fanout_t *f, const char *why)
{
	/* Every shard still copying aborts, so no shard keeps part of the data. */
	if (f->copy_failed)
		return;
	f->copy_failed = true;
	for (int k = 0; k < f->n; k++) {
		sp_server_t *s = f->servers[k];
		size_t at;
		if (!s || !s->copy_in)
			continue;
		at = sp_msg_begin(&s->sock.out, SP_FE_COPY_FAIL);
		pq_sendstring(&s->sock.out, why);
		sp_msg_end(&s->sock.out, at);
		sp_server_send(s);
	}
}

static void copy_out_feed(sp_fanout_t *f, int slot, char type, const uint8_t *msg, size_t total)
{
	sp_buf_t *out = &f->c->sock.out;
	if (type == SP_BE_COPY_OUT) {
		if (!f->copy_out_sent) {
			f->copy_out_sent = true;
			f->copy_out_binary = total > 5 && msg[5] == 1;
			sp_buf_append(out, msg, total);
		}
		return;
	}
	if (type == SP_BE_COPY_DATA) {
		bool first = !f->first_data_seen[slot];
		f->first_data_seen[slot] = true;
		if (f->copy_out_binary) {
			if (total - 5 == 2 && msg[5] == 0xff && msg[6] == 0xff)
				return; /* this shard's trailer: one is sent at the end */
			if (first && total - 5 >= 19 && memcmp(msg + 5, "PGCOPY\n\377\r\n", 11) == 0) {
				/* signature, flags, extension length + extension: once; a
				 * tuple may follow in the same message */
				size_t hdr = 19 + sp_get_be32(msg + 5 + 15);
				if (f->header_sent && hdr <= total - 5) {
					size_t at;
					if (total - 5 == hdr)
						return;
					at = sp_msg_begin(out, SP_BE_COPY_DATA);
					pq_sendbytes(out, msg + 5 + hdr, total - 5 - hdr);
					sp_msg_end(out, at);
					return;
				}
				f->header_sent = true;
			}
		} else if (first && f->copy_out_header) {
			if (f->header_sent)
				return;
			f->header_sent = true;
		}
		sp_buf_append(out, msg, total);
	}
	/* CopyDone: one is sent when every shard is done */
}

static void sum_feed(sp_fanout_t *f, int slot, char type, const uint8_t *msg, size_t total)
{
	sp_buf_t *out = &f->c->sock.out;
	bool mine = !f->first_only || slot == 0;
	if (type == SP_BE_ERROR) {
		if (f->copy.mode != SP_ROUTER_COPY_NONE)
			fail_copy(f, "COPY failed on another shard");
		if (!f->error_sent)
			sp_buf_append(out, msg, total);
		f->error_sent = true;
		return;
	}
	if (type == SP_BE_COPY_IN) {
		if (!f->copy_in_msg) {
			f->copy_in_msg = malloc(total);
			if (f->copy_in_msg) {
				memcpy(f->copy_in_msg, msg, total);
				f->copy_in_len = total;
			}
		}
		if (++f->copy_in_ready == f->n && !f->error_sent && f->copy_in_msg) {
			f->copy_started = true;
			f->c->in_copy = true;
			sp_buf_append(out, f->copy_in_msg, f->copy_in_len);
			sp_sock_flush(&f->c->sock);
			sp_sock_read_start(&f->c->sock);
			if (sp_buf_len(&f->c->sock.in) > 0)
				sp_fanout_client_input(f);
		}
		return;
	}
	if (type == SP_BE_COPY_OUT || type == SP_BE_COPY_DATA || type == SP_BE_COPY_DONE) {
		if (!f->error_sent)
			copy_out_feed(f, slot, type, msg, total);
		return;
	}
	if (f->error_sent)
		return;
	if (!mine && type != SP_BE_NOTICE)
		return;
	switch (type) {
	case SP_BE_ROW_DESCRIPTION:
		if (!f->sent_rowdesc) {
			sp_buf_append(out, msg, total);
			f->sent_rowdesc = true;
		}
		return;
	case SP_BE_DATA_ROW:
		if (f->row_slot) {
			sp_buf_append(&f->rowq[slot], msg, total);
			drain_rows(f, out, false);
			return;
		}
		sp_buf_append(out, msg, total);
		return;
	case SP_BE_COMMAND_COMPLETE: {
		const char *tag = (const char *)msg + 5;
		const char *sp = strrchr(tag, ' ');
		size_t vl = strcspn(tag, " ");
		bool counted = sp && sp[1] && strspn(sp + 1, "0123456789") == strlen(sp + 1);
		if (strcmp(tag, "BEGIN") == 0 || strcmp(tag, "COMMIT") == 0 || strcmp(tag, "ROLLBACK") == 0)
			return; /* the COPY transaction's own */
		if (!f->tag[0])
			snprintf(f->tag, sizeof(f->tag), "%s", tag);
		if (!counted)
			return; /* CREATE INDEX, ALTER TABLE ...: the tag as it is */
		if (vl >= sizeof(f->verb))
			vl = sizeof(f->verb) - 1;
		memcpy(f->verb, tag, vl);
		f->verb[vl] = 0;
		f->rows += strtoull(sp + 1, NULL, 10);
		return;
	}
	case SP_BE_NOTICE:
		sp_buf_append(out, msg, total);
		return;
	default:
		return;
	}
}

static void feed(sp_fanout_t *f, int slot, const uint8_t *msg, size_t total);
static void release_pending(sp_fanout_t *f);

/*
 * One answer unit at the head of slot's held messages, if it is all there: its length
 * in bytes (0: not yet). An ErrorResponse ends any unit (*error set). An Execute's
 * rows are passed on as they come (pass_rows), so its unit is what follows them.
 */
static size_t unit_len(const sp_buf_t *b, uint8_t kind, bool *error)
{
	const uint8_t *p = sp_buf_head(b);
	size_t n = sp_buf_len(b), pos = 0;
	int need = kind == U_DESC_S ? 2 : 1;
	*error = false;
	while (pos + 5 <= n) {
		size_t total = (size_t)sp_get_be32(p + pos + 1) + 1;
		char type = (char)p[pos];
		if (pos + total > n)
			return 0;
		pos += total;
		if (type == SP_BE_ERROR) {
			*error = true;
			return pos;
		}
		if (type == SP_BE_NOTICE || type == SP_BE_NOTIFICATION || type == SP_BE_PARAMETER_STATUS)
			continue;
		if (kind == U_EXEC && type == SP_BE_DATA_ROW)
			continue;
		if (--need == 0)
			return pos;
	}
	return 0;
}

/* Pass the DataRows at the head of b to out as they are. True if there were any. */
static bool pass_rows(sp_buf_t *out, sp_buf_t *b)
{
	bool moved = false;
	while (sp_buf_len(b) >= 5) {
		const uint8_t *q = sp_buf_head(b);
		size_t t = (size_t)sp_get_be32(q + 1) + 1;
		if (sp_buf_len(b) < t || q[0] != SP_BE_DATA_ROW)
			break;
		sp_buf_append(out, q, t);
		sp_buf_consume(b, t);
		moved = true;
	}
	return moved;
}

/* A shard's unit (the first l bytes of b) ended with an error: the client gets the
 * ErrorResponse, and nothing more of the batch until ReadyForQuery. */
static void split_fail(sp_fanout_t *f, const sp_buf_t *b, size_t l)
{
	const uint8_t *e = sp_buf_head(b);
	for (size_t at = 0; at < l;) {
		size_t t = (size_t)sp_get_be32(e + at + 1) + 1;
		if (e[at] == SP_BE_ERROR)
			sp_buf_append(&f->c->sock.out, e + at, t);
		at += t;
	}
	f->split_failed = true;
	f->error_sent = true;
}

/* The slot of the m-th member (in slot order) of group g, or -1 past the last. */
static int grp_member_slot(const sp_fanout_t *f, int g, int m)
{
	for (int k = 0; k < f->n; k++)
		if ((f->groups[g].mask & (1ULL << f->shards[k])) && m-- == 0)
			return k;
	return -1;
}

/*
 * The answer of a group (a split INSERT's Bind, Describe, Execute or Close) at the head
 * of the client's order: its members answer in turn. The first member's BindComplete
 * or RowDescription goes to the client, the others' are dropped; an Execute passes
 * every member's rows and then one CommandComplete counting them all. True if it
 * moved on.
 */
static bool group_step(sp_fanout_t *f)
{
	sp_buf_t *out = &f->c->sock.out;
	int g = -f->order[f->order_pos] - 1;
	bool moved = false;
	for (;;) {
		int k = grp_member_slot(f, g, f->grp_member);
		if (k < 0)
			break;
		sp_buf_t *b = &f->pending[k];
		if (f->unit_head[k] >= f->n_units[k])
			return moved;
		const struct split_unit *u = &f->units[k][f->unit_head[k]];
		if (u->group != g)
			return moved;
		f->grp_kind = u->kind;
		if (u->kind == U_EXEC && pass_rows(out, b))
			moved = true;
		bool err;
		size_t l = unit_len(b, u->kind, &err);
		if (!l)
			return moved;
		if (err) {
			split_fail(f, b, l);
			return true;
		}
		if (u->kind == U_EXEC) {
			/* the unit ends with its CommandComplete: "INSERT 0 n", "UPDATE n" ... */
			const uint8_t *q = sp_buf_head(b) + l;
			size_t t = 0;
			for (size_t at = 0; at < l;) {
				t = (size_t)sp_get_be32(sp_buf_head(b) + at + 1) + 1;
				q = sp_buf_head(b) + at;
				at += t;
			}
			if (q[0] == SP_BE_COMMAND_COMPLETE && t > 5) {
				const char *tag = (const char *)q + 5;
				const char *sp = strrchr(tag, ' ');
				if (f->grp_member == 0)
					snprintf(f->grp_verb, sizeof(f->grp_verb), "%.*s",
						 (int)strcspn(tag, " "), tag);
				if (sp)
					f->grp_rows += strtoull(sp + 1, NULL, 10);
			}
		} else if (f->grp_member == 0) {
			sp_buf_append(out, sp_buf_head(b), l);
		}
		sp_buf_consume(b, l);
		f->unit_head[k]++;
		f->grp_member++;
		moved = true;
	}
	/* every member answered */
	if (f->grp_kind == U_EXEC) {
		char tag[64];
		if (strcmp(f->grp_verb, "INSERT") == 0)
			snprintf(tag, sizeof(tag), "INSERT 0 %llu", (unsigned long long)f->grp_rows);
		else
			snprintf(tag, sizeof(tag), "%s %llu", f->grp_verb[0] ? f->grp_verb : "SELECT",
				 (unsigned long long)f->grp_rows);
		sp_msg_write_command_complete(out, tag);
	}
	f->grp_member = 0;
	f->grp_rows = 0;
	f->grp_verb[0] = '\0';
	f->order_pos++;
	return true;
}

/* Hand the answers the client may have now to it, in the order of its messages. */
static void split_pump(sp_fanout_t *f)
{
	sp_buf_t *out = &f->c->sock.out;
	bool progress = true;
	while (progress) {
		progress = false;
		for (int k = 0; k < f->n; k++) {
			sp_buf_t *b = &f->pending[k];
			if (f->split_failed) {
				sp_buf_reset(b);
				continue;
			}
			/* answers nobody waits for (other slots' copies of a Parse ...) go first */
			while (f->unit_head[k] < f->n_units[k] && !f->units[k][f->unit_head[k]].fwd) {
				bool err;
				size_t l = unit_len(b, f->units[k][f->unit_head[k]].kind, &err);
				if (!l)
					break;
				if (err) {
					/* the shard skips the rest of its part: the batch failed */
					split_fail(f, b, l);
					progress = true;
					break;
				}
				sp_buf_consume(b, l);
				f->unit_head[k]++;
				progress = true;
			}
		}
		if (f->split_failed || f->order_pos >= f->n_order)
			continue;
		if (f->order[f->order_pos] < 0) {
			if (group_step(f))
				progress = true;
			continue;
		}
		int k = f->order[f->order_pos];
		sp_buf_t *b = &f->pending[k];
		if (f->unit_head[k] >= f->n_units[k] || !f->units[k][f->unit_head[k]].fwd)
			continue;
		uint8_t kind = f->units[k][f->unit_head[k]].kind;
		if (kind == U_EXEC && pass_rows(out, b))
			progress = true; /* rows go on as they come */
		bool err;
		size_t l = unit_len(b, kind, &err);
		if (!l)
			continue;
		sp_buf_append(out, sp_buf_head(b), l);
		sp_buf_consume(b, l);
		f->unit_head[k]++;
		f->order_pos++;
		progress = true;
		if (err) {
			f->split_failed = true;
			f->error_sent = true;
		}
	}
}

static void split_feed(sp_fanout_t *f, int slot, const uint8_t *msg, size_t total)
{
	char type = (char)msg[0];
	if (type == SP_BE_READY_FOR_QUERY)
		return; /* the fan-out's business */
	if (f->split_failed)
		return;
	if (type == SP_BE_NOTICE || type == SP_BE_NOTIFICATION || type == SP_BE_PARAMETER_STATUS) {
		if (slot == 0 || type != SP_BE_PARAMETER_STATUS)
			sp_buf_append(&f->c->sock.out, msg, total);
		return;
	}
	sp_buf_append(&f->pending[slot], msg, total);
	split_pump(f);
}

void sp_fanout_feed(sp_fanout_t *f, sp_server_t *s, const uint8_t *msg, size_t total)
{
	char type = (char)msg[0];
	int slot = s->fan_idx;
	if (type == SP_BE_COPY_IN && f->copy.mode == SP_ROUTER_COPY_NONE) {
		/* A COPY FROM STDIN this fan-out was not planned for (the router refuses one
		 * over several shards): nobody would send its data. It fails on that shard,
		 * whose error answers the statement. The batch's Sync went in as COPY data
		 * (server.c copy_in_started), so another ends the failed batch. */
		sp_buf_t *out = &s->sock.out;
		size_t at = sp_msg_begin(out, SP_FE_COPY_FAIL);
		pq_sendstring(out,
			      "COPY FROM STDIN is not possible in a statement over several shards");
		sp_msg_end(out, at);
		s->copy_ends++;
		if (f->extended) {
			sp_msg_write_empty(out, SP_FE_SYNC);
			sp_server_push_req(s, SP_REQ_SYNC, NULL, SP_INTQ_NONE);
		}
		sp_server_send(s);
		return;
	}
	if (type == SP_BE_ERROR) {
		const char *sev = sp_msg_error_field(msg + 5, total - 5, 'V');
		if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
			/* the server is going away; sp_fanout_server_lost tells the client, as an
			 * ERROR, once the connection has closed */
			const char *m = sp_msg_error_field(msg + 5, total - 5, 'M');
			snprintf(f->lost, sizeof(f->lost), "%s", m ? m : sev);
			return;
		}
	}
	if (f->split_batch) {
		split_feed(f, slot, msg, total);
		return;
	}
	if (f->extended) {
		if (type == SP_BE_PARSE_COMPLETE || type == SP_BE_BIND_COMPLETE || type == SP_BE_CLOSE_COMPLETE ||
		    type == SP_BE_PARAMETER_DESCRIPTION || type == SP_BE_NO_DATA ||
		    (type == SP_BE_PORTAL_SUSPENDED && !f->merge_mode)) {
			/* answers to the batch's own messages: the leader's go to the client */
			if (slot == 0 && !f->error_sent)
				sp_buf_append(&f->c->sock.out, msg, total);
			return;
		}
		if (type == SP_BE_ROW_DESCRIPTION && f->raw_desc[slot] > 0) {
			/* Describe('S'): the client's statement as it is, from the leader */
			f->raw_desc[slot]--;
			if (slot == 0 && !f->error_sent)
				sp_buf_append(&f->c->sock.out, msg, total);
			return;
		}
		if (slot != 0 && !f->leader_ready) {
			sp_buf_append(&f->pending[slot], msg, total);
			return;
		}
		feed(f, slot, msg, total);
		if (slot == 0 && !f->leader_ready &&
		    (type == SP_BE_ROW_DESCRIPTION || type == SP_BE_COMMAND_COMPLETE || type == SP_BE_EMPTY_QUERY ||
		     type == SP_BE_ERROR || type == SP_BE_PORTAL_SUSPENDED))
			release_pending(f);
		return;
	}
	feed(f, slot, msg, total);
}

/* The leader's RowDescription is out: replay what the other shards sent meanwhile. */
static void release_pending(sp_fanout_t *f)
{
	f->leader_ready = true;
	for (int k = 1; k < f->n; k++) {
		sp_buf_t *b = &f->pending[k];
		while (sp_buf_len(b) >= 5) {
			const uint8_t *p = sp_buf_head(b);
			size_t total = (size_t)sp_get_be32(p + 1) + 1;
			feed(f, k, p, total);
			sp_buf_consume(b, total);
		}
		sp_buf_free(b);
	}
}

static void feed(sp_fanout_t *f, int slot, const uint8_t *msg, size_t total)
{
	char type = (char)msg[0];
	sp_server_t *s = f->servers[slot];
	if (type != SP_BE_ROW_DESCRIPTION && type != SP_BE_DATA_ROW && type != SP_BE_COMMAND_COMPLETE &&
	    type != SP_BE_EMPTY_QUERY && type != SP_BE_ERROR && type != SP_BE_NOTICE && type != SP_BE_COPY_IN &&
	    type != SP_BE_COPY_OUT && type != SP_BE_COPY_DATA && type != SP_BE_COPY_DONE &&
	    !(type == SP_BE_PORTAL_SUSPENDED && f->merge_mode))
		return; /* ReadyForQuery, ParameterStatus ... are the fan-out's business */
	if (!f->merge_mode) {
		sum_feed(f, slot, type, msg, total);
		return;
	}
	if (type == SP_BE_ROW_DESCRIPTION && !f->collation_set) {
		/* text sorts as shard 0's primary says its database collates (all shards alike);
		 * asked as late as possible, so a probe that ends meanwhile still counts */
		f->collation_set = true;
		const sp_node_health_t *h = sp_health_node(f->c->db->name, 0, -1);
		sp_merge_set_collation(f->merge, h && h->collate[0] ? h->collate : NULL,
				       h ? h->locprovider : 0);
	}
	if (type == SP_BE_ROW_DESCRIPTION && f->hidden_describe &&
	    !sp_merge_set_columns(f->merge, msg + 5, total - 5) && !f->error_sent) {
		/* the columns of a Describe the client did not ask for: learnt, not sent */
		f->error_sent = true;
		sp_msg_write_error(&f->c->sock.out, "ERROR", sp_merge_sqlstate(f->merge), sp_merge_error(f->merge), NULL,
				   sp_merge_hint(f->merge));
		return;
	}
	if (!sp_merge_feed(f->merge, slot, type, msg + 5, total - 5) && !f->error_sent) {
		f->error_sent = true;
		sp_msg_write_error(&f->c->sock.out, "ERROR", sp_merge_sqlstate(f->merge), sp_merge_error(f->merge), NULL,
				   sp_merge_hint(f->merge));
	}
	if (type == SP_BE_DATA_ROW)
		for (int k = 0; k < f->n; k++) {
			sp_server_t *o = f->servers[k];
			if (o && o != s && !o->sock.reading && sp_merge_wants_more(f->merge, k)) {
				schedule_kick(f);
				break;
			}
		}
}

bool sp_fanout_wants(sp_fanout_t *f, sp_server_t *s)
{
	return !f->merge_mode || sp_merge_wants_more(f->merge, s->fan_idx);
}

void sp_fanout_server_done(sp_fanout_t *f, int i)
{
	if (f->extended && i == 0 && !f->leader_ready && !f->split_batch)
		release_pending(f);
	f->done[i] = true;
	f->finished++;
	f->servers[i] = NULL;
	if (f->finished == f->n) {
		finish(f);
		return;
	}
	if (f->merge_mode)
		schedule_kick(f); /* a finished shard may unblock the merge for the others */
}

void sp_fanout_forget(sp_fanout_t *f, int i)
{
	f->servers[i] = NULL;
}

int sp_fanout_width(const sp_fanout_t *f)
{
	return f->n;
}

sp_server_t *sp_fanout_server(const sp_fanout_t *f, int i)
{
	return i >= 0 && i < f->n ? f->servers[i] : NULL;
}

bool sp_fanout_server_lost(sp_fanout_t *f, int idx, const char *reason)
{
	sp_client_t *c = f->c;
	char msg[400];
	if (f->acquired < f->n || sp_fanout_takes_input(f))
		return false;
	snprintf(msg, sizeof(msg), "the server connection of shard %d was lost during a statement over several shards: %s%s%s",
		 f->shards[idx], f->lost[0] ? f->lost : reason, f->lost[0] ? "; " : "", f->lost[0] ? reason : "");
	f->servers[idx] = NULL;
	drop_servers(f, "another shard's server of the same fan-out was lost");
	dispose(f);
	c->in_copy = false;
	c->pool = NULL;
	sp_client_set_state(c, SP_CLIENT_IDLE);
	sp_client_error(c, SP_SQLSTATE_CONNECTION_FAILURE, msg,
			"The statement did not complete on every shard; run it again.");
	return true;
}

void sp_fanout_abort(sp_fanout_t *f)
{
	drop_servers(f, "client disconnected during a fan-out");
	dispose(f);
}

bool sp_fanout_takes_input(const sp_fanout_t *f)
{
	return f->copy_started && !f->copy_ended;
}

/* Wrap the rows copysplit produced into CopyData messages for their shards. */
static void send_rows(sp_fanout_t *f)
{
	for (int sh = 0; sh < f->db->n_shards; sh++) {
		sp_buf_t *r = &f->shard_rows[sh];
		sp_server_t *s;
		size_t at;
		if (sp_buf_len(r) == 0)
			continue;
		s = f->servers[f->slot_of[sh]];
		if (s && !f->copy_failed) {
			at = sp_msg_begin(&s->sock.out, SP_FE_COPY_DATA);
			pq_sendbytes(&s->sock.out, sp_buf_head(r), sp_buf_len(r));
			sp_msg_end(&s->sock.out, at);
		}
		sp_buf_reset(r);
	}
}

static void feed_data(sp_fanout_t *f, const uint8_t *p, size_t n)
{
	char err[300];
	if (f->copy_failed)
		return;
	if (f->copy.mode == SP_ROUTER_COPY_ALL) {
		for (int k = 0; k < f->n; k++) {
			sp_server_t *s = f->servers[k];
			size_t at;
			if (!s)
				continue;
			at = sp_msg_begin(&s->sock.out, SP_FE_COPY_DATA);
			pq_sendbytes(&s->sock.out, p, n);
			sp_msg_end(&s->sock.out, at);
		}
		return;
	}
	if (!sp_copysplit_feed(f->split, p, n, f->shard_rows, err, sizeof(err))) {
		send_rows(f);
		if (!f->error_sent) {
			const char *code = strstr(err, "out of range") ? "22003"
					   : strstr(err, "invalid input syntax") ? "22P02" : "22P04";
			sp_msg_write_error(&f->c->sock.out, "ERROR", code, err, NULL,
					   "No shard kept any row of this COPY; fix the row and run it again.");
			f->error_sent = true;
		}
		fail_copy(f, err);
		return;
	}
	send_rows(f);
}

void sp_fanout_client_input(sp_fanout_t *f)
{
	sp_client_t *c = f->c;
	sp_buf_t *in = &c->sock.in;

	while (sp_fanout_takes_input(f) && c->state == SP_CLIENT_FANOUT) {
		const uint8_t *p;
		uint32_t len;
		for (int k = 0; k < f->n; k++)
			if (f->servers[k] && sp_sock_backed_up(&f->servers[k]->sock)) {
				sp_sock_read_stop(&c->sock);
				goto send;
			}
		if (f->copy_fwd_remaining > 0) {
			size_t n = sp_buf_len(in);
			if (n == 0)
				break;
			if (n > f->copy_fwd_remaining)
				n = (size_t)f->copy_fwd_remaining;
			feed_data(f, sp_buf_head(in), n);
			sp_buf_consume(in, n);
			f->copy_fwd_remaining -= n;
			continue;
		}
		if (sp_buf_len(in) < 5)
			break;
		p = sp_buf_head(in);
		len = sp_get_be32(p + 1);
		if (len < 4) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid message length during COPY");
			return;
		}
		if (p[0] == SP_FE_COPY_DATA) {
			/* Streamed: a row may be larger than any buffer we want to hold. */
			size_t n = sp_buf_len(in) - 5;
			if (n > len - 4)
				n = len - 4;
			feed_data(f, p + 5, n);
			f->copy_fwd_remaining = len - 4 - n;
			sp_buf_consume(in, 5 + n);
			continue;
		}
		if (sp_buf_len(in) < (size_t)len + 1)
			break;
		if (p[0] == SP_FE_COPY_DONE || p[0] == SP_FE_COPY_FAIL) {
			char err[300];
			bool done = p[0] == SP_FE_COPY_DONE;
			if (done && !f->copy_failed && f->split) {
				if (!sp_copysplit_finish(f->split, f->shard_rows, err, sizeof(err))) {
					if (!f->error_sent) {
						sp_msg_write_error(&c->sock.out, "ERROR", "22P04", err, NULL, NULL);
						f->error_sent = true;
					}
					fail_copy(f, err);
				} else {
					send_rows(f);
				}
			}
			if (!done)
				fail_copy(f, "COPY failed on the client");
			if (!f->copy_failed)
				for (int k = 0; k < f->n; k++)
					if (f->servers[k])
						sp_msg_write_empty(&f->servers[k]->sock.out, SP_FE_COPY_DONE);
			f->copy_ended = true;
			c->in_copy = false;
			sp_buf_consume(in, (size_t)len + 1);
			break;
		}
		if (p[0] == SP_FE_FLUSH || p[0] == SP_FE_SYNC) {
			sp_buf_consume(in, (size_t)len + 1); /* ignored during COPY, as PostgreSQL does */
			continue;
		}
		sp_client_copy_violation(c, (char)p[0]);
		return;
	}
send:
	for (int k = 0; k < f->n; k++)
		if (f->servers[k])
			sp_server_send(f->servers[k]);
	if (c->state != SP_CLIENT_CLOSED)
		sp_sock_flush(&c->sock);
}

bool sp_fanout_is_write(const sp_fanout_t *f)
{
	return f->write;
}

/* Every shard's transaction ends the same way: COMMIT if ok, else ROLLBACK. */
static void end_txns(sp_fanout_t *f, bool ok, sp_req_kind_t kind)
{
	for (int k = 0; k < f->n; k++) {
		sp_server_t *o = f->servers[k];
		if (!o)
			continue;
		sp_server_push_req(o, kind, NULL, SP_INTQ_NONE);
		sp_msg_write_query(&o->sock.out, ok ? "COMMIT" : "ROLLBACK");
		sp_server_send(o);
	}
}

bool sp_fanout_txn_open(sp_fanout_t *f, sp_server_t *s)
{
	(void)s;
	if (f->split_txn || f->batch_txn) {
		/* a shard ran its part of a batch inside BEGIN: all commit, or none */
		if (++f->txn_open < f->n)
			return true;
		f->split_txn = f->batch_txn = false;
		end_txns(f, !f->error_sent, SP_REQ_INT_QUERY);
		return true;
	}
	/* Called when a shard finished its part of the client's Query inside BEGIN. */
	if (!f->query_txn)
		return false;
	if (++f->txn_open < f->n)
		return true;
	f->query_txn = false;
	end_txns(f, !f->error_sent && !f->copy_failed, SP_REQ_QUERY);
	return true;
}
