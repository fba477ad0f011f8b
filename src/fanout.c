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
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "server.h"

struct sp_fanout {
	sp_client_t *c;
	int n;
	int shards[SP_ROUTER_MAX_SHARDS];
	sp_server_t *servers[SP_ROUTER_MAX_SHARDS];
	bool done[SP_ROUTER_MAX_SHARDS];
	sp_buf_t sql[SP_ROUTER_MAX_SHARDS]; /* Query message per shard */
	int acquired, finished;
	bool write;
	bool merge_mode;
	sp_merge_t *merge;
	/* sum mode */
	bool sent_rowdesc;
	uint64_t rows;
	char verb[32];
	bool error_sent;
	bool aborted;
};

static void acquire_next(sp_fanout_t *f);

static void finish(sp_fanout_t *f)
{
	sp_client_t *c = f->c;
	sp_buf_t *out = &c->sock.out;
	if (f->merge_mode) {
		if (!sp_merge_failed(f->merge))
			sp_merge_finish(f->merge);
		sp_merge_free(f->merge);
	} else if (!f->error_sent) {
		char tag[64];
		if (strcmp(f->verb, "INSERT") == 0)
			snprintf(tag, sizeof(tag), "INSERT 0 %llu", (unsigned long long)f->rows);
		else if (f->verb[0])
			snprintf(tag, sizeof(tag), "%s %llu", f->verb, (unsigned long long)f->rows);
		else
			snprintf(tag, sizeof(tag), "SELECT %llu", (unsigned long long)f->rows);
		sp_msg_write_command_complete(out, tag);
	}
	sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
	for (int i = 0; i < f->n; i++)
		sp_buf_free(&f->sql[i]);
	c->fan = NULL;
	free(f);
	sp_client_set_state(c, SP_CLIENT_IDLE);
	c->n_xacts++;
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

void sp_fanout_start(sp_client_t *c, const sp_target_t *t, const uint8_t *msg, size_t total, bool write)
{
	sp_fanout_t *f = calloc(1, sizeof(*f));
	if (!f) {
		sp_client_error(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL);
		return;
	}
	f->c = c;
	f->write = write;
	for (int i = 0; i < c->db->n_shards && i < SP_ROUTER_MAX_SHARDS; i++) {
		if (!(t->shard_mask & (1ULL << i)))
			continue;
		f->shards[f->n] = i;
		if (t->per_shard_sql) {
			sp_msg_write_query(&f->sql[f->n], (const char *)t->sql[i].data);
		} else {
			sp_buf_append(&f->sql[f->n], msg, total);
		}
		f->n++;
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
	if (f->merge)
		sp_merge_free(f->merge);
	for (int i = 0; i < f->n; i++)
		sp_buf_free(&f->sql[i]);
	c->fan = NULL;
	free(f);
	sp_client_set_state(c, SP_CLIENT_IDLE);
	sp_client_error(c, sqlstate, msg, NULL);
	if (c->state != SP_CLIENT_CLOSED && sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
}

static void sum_feed(sp_fanout_t *f, char type, const uint8_t *msg, size_t total)
{
	sp_buf_t *out = &f->c->sock.out;
	if (f->error_sent)
		return;
	switch (type) {
	case SP_BE_ROW_DESCRIPTION:
		if (!f->sent_rowdesc) {
			sp_buf_append(out, msg, total);
			f->sent_rowdesc = true;
		}
		return;
	case SP_BE_DATA_ROW:
		sp_buf_append(out, msg, total);
		return;
	case SP_BE_COMMAND_COMPLETE: {
		const char *tag = (const char *)msg + 5;
		const char *sp = strrchr(tag, ' ');
		size_t vl = strcspn(tag, " ");
		if (vl >= sizeof(f->verb))
			vl = sizeof(f->verb) - 1;
		memcpy(f->verb, tag, vl);
		f->verb[vl] = 0;
		if (sp)
			f->rows += strtoull(sp + 1, NULL, 10);
		return;
	}
	case SP_BE_ERROR:
		sp_buf_append(out, msg, total);
		f->error_sent = true;
		return;
	case SP_BE_NOTICE:
		sp_buf_append(out, msg, total);
		return;
	default:
		return;
	}
}

void sp_fanout_feed(sp_fanout_t *f, sp_server_t *s, const uint8_t *msg, size_t total)
{
	char type = (char)msg[0];
	if (type != SP_BE_ROW_DESCRIPTION && type != SP_BE_DATA_ROW && type != SP_BE_COMMAND_COMPLETE &&
	    type != SP_BE_EMPTY_QUERY && type != SP_BE_ERROR && type != SP_BE_NOTICE)
		return; /* ReadyForQuery, ParameterStatus ... are the fan-out's business */
	if (!f->merge_mode) {
		sum_feed(f, type, msg, total);
		return;
	}
	if (!sp_merge_feed(f->merge, s->fan_idx, type, msg + 5, total - 5) && !f->error_sent) {
		f->error_sent = true;
		sp_msg_write_error(&f->c->sock.out, "ERROR", sp_merge_sqlstate(f->merge), sp_merge_error(f->merge), NULL,
				   NULL);
	}
	if (type == SP_BE_DATA_ROW)
		for (int k = 0; k < f->n; k++) {
			sp_server_t *o = f->servers[k];
			if (o && o != s && !o->sock.reading && sp_merge_wants_more(f->merge, k))
				sp_server_resume(o);
		}
}

bool sp_fanout_wants(sp_fanout_t *f, sp_server_t *s)
{
	return !f->merge_mode || sp_merge_wants_more(f->merge, s->fan_idx);
}

void sp_fanout_server_done(sp_fanout_t *f, int i)
{
	f->done[i] = true;
	f->finished++;
	f->servers[i] = NULL;
	if (f->merge_mode) {
		/* A finished shard may unblock the merge for the others. */
		for (int k = 0; k < f->n; k++)
			if (f->servers[k] && !f->done[k] && sp_fanout_wants(f, f->servers[k]))
				sp_server_resume(f->servers[k]);
	}
	if (f->finished == f->n)
		finish(f);
}

void sp_fanout_forget(sp_fanout_t *f, int i)
{
	f->servers[i] = NULL;
}

void sp_fanout_abort(sp_fanout_t *f)
{
	sp_client_t *c = f->c;
	for (int i = 0; i < f->n; i++) {
		sp_server_t *s = f->servers[i];
		if (!s)
			continue;
		f->servers[i] = NULL;
		s->fan = NULL;
		s->client = NULL;
		if (sp_server_busy(s))
			sp_server_close(s, "client disconnected during a fan-out");
		else
			sp_server_release(s);
	}
	if (f->merge)
		sp_merge_free(f->merge);
	for (int i = 0; i < f->n; i++)
		sp_buf_free(&f->sql[i]);
	c->fan = NULL;
	free(f);
}
