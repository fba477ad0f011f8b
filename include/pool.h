/*
 * pool.h - pools of server connections, one per (database, shard, role,
 * user), and the FIFO of clients waiting for one.
 */
#ifndef SP_POOL_H
#define SP_POOL_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth_scram.h"
#include "config.h"
#include "params.h"
#include "sock.h"
#include "sp_types.h"

typedef enum { SP_ROLE_PRIMARY = 0, SP_ROLE_REPLICA = 1 } sp_role_t;

struct sp_pool {
	sp_pool_t *next;  /* all pools */
	sp_pool_t *hnext; /* the next pool in its lookup bucket (sp_pool_get) */
	char *dbname;    /* client-visible database */
	char *user;      /* client user */
	int shard;
	sp_role_t role;
	int replica; /* index when role is replica */
	const sp_node_conf_t *node;
	sp_pool_mode_t pool_mode; /* the database's, cached: checked on every release */
	bool retired; /* a RELOAD took its replica out of the file: it gets no new work */

	/* server connections by state (doubly linked lists through sp_server_t) */
	sp_server_t *idle;
	int n_idle, n_active, n_connecting, n_other;
	/* clients waiting for a server, FIFO */
	sp_client_t *wait_head, *wait_tail;
	int n_waiting;
	int n_welcome_waiting; /* of them, clients waiting only for the login parameters */

	sp_params_t welcome;  /* parameters reported by the first server login */
	bool have_welcome;
	/* SCRAM keys from a client's login, to log in to servers without a password */
	uint8_t scram_client_key[SP_SCRAM_KEY_LEN], scram_server_key[SP_SCRAM_KEY_LEN];
	bool have_scram_keys;

	/* login failure backoff: no new connection before this time */
	ev_tstamp retry_at;
	double backoff;
	char last_error[256];
	ev_tstamp reserve_since; /* when the oldest waiter started waiting */

	/* SHOW STATS: transactions and queries ended, microseconds spent in them and
	 * waiting for a server; bytes of clients that have left (live ones are summed
	 * from their sockets) whose login pool this is */
	uint64_t total_xacts, total_queries, total_wait_us;
	uint64_t total_xact_us, total_query_us;
	uint64_t gone_received, gone_sent;
	bool paused; /* its database is paused (PAUSE db): hand out no server */
	/* RECONNECT / WAIT_CLOSE: servers with an id up to this one (those there when it
	 * ran) are closed when they come back to the pool, not reused (0: none) */
	uint64_t close_upto_id;
	ev_tstamp resumed_at; /* the last RESUME that woke it: query_wait_timeout counts from there */
};

/* A client query (Query, or the first Execute of a batch) goes to a server: its time
 * runs until the ReadyForQuery; the first one after an idle status starts a transaction. */
static inline void sp_pool_query_begin(ev_tstamp *query_start, ev_tstamp *xact_start, char txn)
{
	if (*query_start == 0) {
		*query_start = ev_now(sp_loop);
		if (txn == 'I')
			*xact_start = *query_start;
	}
}

/* A ReadyForQuery reaches the client: the query started at *query_start is done. In
 * session pooling, where no release marks the end, an idle status ends a transaction. */
static inline void sp_pool_query_end(sp_pool_t *p, ev_tstamp *query_start, ev_tstamp xact_start, char txn,
				     bool session)
{
	ev_tstamp now;
	if (*query_start == 0)
		return;
	now = ev_now(sp_loop);
	p->total_query_us += (uint64_t)((now - *query_start) * 1e6);
	*query_start = 0;
	if (session && txn == 'I') {
		p->total_xacts++;
		p->total_xact_us += (uint64_t)((now - xact_start) * 1e6);
	}
}

/* A statement that fanned out to several shards is done: one query and one
 * transaction, counted in the client's login pool (p may be NULL). */
static inline void sp_pool_fanout_end(sp_pool_t *p, ev_tstamp start)
{
	uint64_t us;
	if (!p)
		return;
	us = (uint64_t)((ev_now(sp_loop) - start) * 1e6);
	p->total_queries++;
	p->total_query_us += us;
	p->total_xacts++;
	p->total_xact_us += us;
}

/* A transaction ends (the server goes back to the pool); it started at xact_start. */
static inline void sp_pool_xact_end(sp_pool_t *p, ev_tstamp xact_start)
{
	p->total_xacts++;
	p->total_xact_us += (uint64_t)((ev_now(sp_loop) - xact_start) * 1e6);
}

sp_pool_t *sp_pool_get(const char *dbname, const char *user, int shard, sp_role_t role, int replica);
/* Queue c for a server; it is handed one by sp_client_server_ready() (maybe at once). */
void sp_pool_acquire(sp_pool_t *p, sp_client_t *c);
/* Remove c from the waiting queue (client gave up). */
void sp_pool_unwait(sp_pool_t *p, sp_client_t *c);
/* A server became free (after login or release); give it to a waiter or park it. */
void sp_pool_server_free(sp_pool_t *p, sp_server_t *s);
/* A server login failed: fail the waiters and back off. */
void sp_pool_login_failed(sp_pool_t *p, const char *reason);
/* After a RESUME (remembered in resumed_at): hand the idle servers of an unpaused
 * pool to its waiters, then open what they still need. */
void sp_pool_wake(sp_pool_t *p);
/* Start new connections if waiters (or min_pool_size) need them. */
void sp_pool_maintain(sp_pool_t *p);
int sp_pool_size(const sp_pool_t *p);
sp_pool_t *sp_pool_first(void);
void sp_pool_free_all(void);
/*
 * PAUSE db / RESUME db: mark every pool of the database paused or not, and
 * remember it for the pools created later (a user's first login). On resume the
 * caller wakes the pools (sp_pool_wake).
 */
void sp_pool_pause_db(const char *dbname, bool pause);
bool sp_pool_db_paused(const char *dbname);
/* RESUME without a name: no database is paused any more. */
void sp_pool_resume_all_dbs(void);
/* DISABLE db / ENABLE db: new clients of a disabled database are refused at login. */
void sp_pool_disable_db(const char *dbname, bool disable);
bool sp_pool_db_disabled(const char *dbname);
/* RECONNECT one pool: its idle server connections are closed now (why), the others
 * as they come back; connections opened later are kept. */
void sp_pool_reconnect(sp_pool_t *p, const char *why);
/* RELOAD changed the server entry node in place; moved: it names another server now,
 * so its pools reconnect and forget the old server's login failures. */
void sp_pool_node_changed(const sp_node_conf_t *node, bool moved);
/* RELOAD gave shard's replica list another length: the pools of replica index i take
 * node (reconnecting when it names another server), or retire when node is NULL (idle
 * connections close, busy ones as they are released, nothing is opened for them). */
void sp_pool_replica_reloaded(const char *dbname, int shard, int replica, const sp_node_conf_t *node);
/* RELOAD changed db's keys: its pools take the new pool_mode and pool_size. */
void sp_pool_db_reloaded(const sp_db_conf_t *db);
/* Clients linked to a server of p (SHOW POOLS cl_active); one pass over the clients. */
int sp_pool_active_clients(const sp_pool_t *p);
/* How long p's oldest waiting client has waited, in seconds (0: none waits). */
double sp_pool_maxwait(const sp_pool_t *p);
/* A client leaves: its socket's byte counts stay in the stats of its login pool (may be NULL). */
void sp_pool_client_gone(sp_pool_t *home, unsigned long long received, unsigned long long sent);

#endif
