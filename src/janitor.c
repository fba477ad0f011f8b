/*
 * janitor.c - one periodic timer (every 100 ms) that enforces every timeout
 * shardpool has: server_connect_timeout, query_wait_timeout,
 * client_login_timeout, client_idle_timeout, idle_transaction_timeout,
 * server_idle_timeout, server_lifetime; keeps min_pool_size connections
 * open; and ends a graceful shutdown when the last transaction is done or
 * shutdown_timeout has passed. Per-connection timers would be more precise
 * but cost a timer update per message; 100 ms is precise enough for all of these.
 */
#include "janitor.h"

#include <ev.h>
#include <stdio.h>

#include "client.h"
#include "daemon.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "server.h"
#include "sock.h"

static ev_timer timer;

static void check_servers(ev_tstamp now)
{
	const sp_config_t *cfg = sp_g.cfg;
	sp_server_t *s, *next;
	for (s = sp_server_first(); s; s = next) {
		next = s->all_next;
		if (s->state == SP_SERVER_CONNECTING || s->state == SP_SERVER_LOGIN) {
			double limit = s->pool->node->connect_timeout > 0 ? s->pool->node->connect_timeout
									  : cfg->server_connect_timeout;
			if (limit > 0 && now - s->connect_at > limit) {
				char why[300], during[200];
				if (s->sock.resolving)
					snprintf(during, sizeof(during), "resolving host \"%s\" (no answer from the resolver)",
						 s->pool->node->host);
				else
					snprintf(during, sizeof(during), "%s",
						 s->state == SP_SERVER_CONNECTING ? "connect" : "login");
				snprintf(why, sizeof(why), "%s (%.1f s) expired during %s",
					 s->pool->node->connect_timeout > 0 ? "connect_timeout" : "server_connect_timeout",
					 limit, during);
				sp_server_close(s, why);
			}
		} else if (s->state == SP_SERVER_IDLE) {
			const sp_db_conf_t *db = sp_config_find_db(cfg, s->pool->dbname);
			int min = db && db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size;
			int tot = s->pool->n_idle + s->pool->n_active + s->pool->n_connecting + s->pool->n_other;
			if (db && db->removed)
				min = 0;
			if (!db || s->pool->retired) {
				sp_server_close(s, "its database or replica was removed from the config");
			} else if (cfg->server_lifetime > 0 && now - s->created_at > cfg->server_lifetime) {
				sp_server_close(s, "server_lifetime reached");
			} else if (cfg->server_idle_timeout > 0 && now - s->last_used > cfg->server_idle_timeout &&
				   tot > min) {
				sp_server_close(s, "server_idle_timeout reached");
			} else if (tot > sp_pool_size(s->pool) + cfg->reserve_pool_size) {
				sp_server_close(s, "pool_size lowered");
			}
		}
	}
}

static void check_clients(ev_tstamp now)
{
	const sp_config_t *cfg = sp_g.cfg;
	sp_client_t *c, *next;
	for (c = sp_client_first(); c; c = next) {
		next = c->next;
		switch (c->state) {
		case SP_CLIENT_STARTUP:
		case SP_CLIENT_AUTH:
			if (cfg->client_login_timeout > 0 && now - c->connect_at > cfg->client_login_timeout)
				sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
						"client_login_timeout (%.0f s) expired before login completed",
						cfg->client_login_timeout);
			break;
		case SP_CLIENT_WAITING:
		case SP_CLIENT_WELCOME:
			/* a client waiting out a PAUSE (of all, or of its database) is not timed out;
			 * after the RESUME its wait counts from there (PAUSE closed the servers: the
			 * pool logs in again) */
			if (cfg->query_wait_timeout > 0 && now - c->wait_since > cfg->query_wait_timeout && !sp_g.paused &&
			    !(c->pool && c->pool->paused) && !(c->pool && now - c->pool->resumed_at <= cfg->query_wait_timeout))
				sp_client_fatal(c, SP_SQLSTATE_CONNECTION_FAILURE,
						"query_wait_timeout (%.0f s): no server connection became free; the pool (size %d) is exhausted or the server is unreachable",
						cfg->query_wait_timeout, c->pool ? sp_pool_size(c->pool) : 0);
			break;
		case SP_CLIENT_IDLE:
			if (cfg->client_idle_timeout > 0 && now - c->last_active > cfg->client_idle_timeout)
				sp_client_fatal(c, SP_SQLSTATE_IDLE_SESSION_TIMEOUT,
						"client_idle_timeout (%.0f s) expired", cfg->client_idle_timeout);
			break;
		case SP_CLIENT_ACTIVE:
			/* in a transaction, or holding its server across a Flush (an extended
			 * batch not ended by Sync: a cursor read in steps, then nothing) */
			if (cfg->idle_transaction_timeout > 0 && c->server && c->server->req_n == 0 &&
			    (c->server->txn != SP_TXN_IDLE || c->in_batch) &&
			    now - c->last_active > cfg->idle_transaction_timeout)
				sp_client_fatal(c, SP_SQLSTATE_IDLE_TXN_TIMEOUT,
						"idle_transaction_timeout (%.0f s) expired; the transaction was rolled back",
						cfg->idle_transaction_timeout);
			else if (cfg->client_idle_timeout > 0 && c->pool_mode == SP_POOL_SESSION && c->server &&
				 c->server->req_n == 0 && now - c->last_active > cfg->client_idle_timeout)
				sp_client_fatal(c, SP_SQLSTATE_IDLE_SESSION_TIMEOUT,
						"client_idle_timeout (%.0f s) expired", cfg->client_idle_timeout);
			break;
		default:
			break;
		}
	}
}

/*
 * During a graceful shutdown: a client that has nothing running and no transaction
 * open, so it can be closed now. In session pooling such a client still holds its
 * server (SP_CLIENT_ACTIVE) and would otherwise hold the shutdown for the whole
 * shutdown_timeout; a fanned-out statement that ended leaves its client idle.
 */
static bool between_transactions(const sp_client_t *c)
{
	if (c->txn != SP_TXN_IDLE || c->in_batch || c->in_copy)
		return false;
	if (c->state == SP_CLIENT_IDLE)
		return !c->virtual_txn;
	return c->state == SP_CLIENT_ACTIVE && c->server && c->server->req_n == 0 &&
	       c->server->txn == SP_TXN_IDLE;
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_tstamp now = ev_now(sp_loop);
	check_servers(now);
	check_clients(now);
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		sp_pool_maintain(p);
	if (sp_g.wait_for_clients) {
		/* SHUTDOWN WAIT_FOR_CLIENTS: until the last client (other than admin
		 * consoles) is gone, however long that takes */
		bool left = false;
		for (sp_client_t *c = sp_client_first(); c && !left; c = c->next)
			left = c->state != SP_CLIENT_CLOSED && !c->is_admin;
		if (!left)
			ev_break(sp_loop, EVBREAK_ALL);
	} else if (sp_g.shutting_down) {
		bool busy = false;
		sp_client_t *c, *next;
		for (c = sp_client_first(); c; c = next) {
			next = c->next;
			if (between_transactions(c))
				sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN,
						"shardpool is shutting down; reconnect later");
			else if (c->state == SP_CLIENT_ACTIVE || c->state == SP_CLIENT_FANOUT ||
				 c->state == SP_CLIENT_IDLE)
				busy = true;
		}
		if (!busy || now >= sp_g.shutdown_deadline) {
			if (busy)
				sp_warn("shutdown_timeout reached with transactions still running; closing them");
			ev_break(sp_loop, EVBREAK_ALL);
		}
	}
}

void sp_janitor_start(void)
{
	ev_timer_init(&timer, tick, 0.1, 0.1);
	ev_timer_start(sp_loop, &timer);
}

void sp_janitor_stop(void)
{
	ev_timer_stop(sp_loop, &timer);
}
