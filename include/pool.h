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

	uint64_t total_xacts, total_queries, total_wait_us;
	bool paused; /* its database is paused (PAUSE db): hand out no server */
};

sp_pool_t *sp_pool_get(const char *dbname, const char *user, int shard, sp_role_t role, int replica);
/* Queue c for a server; it is handed one by sp_client_server_ready() (maybe at once). */
void sp_pool_acquire(sp_pool_t *p, sp_client_t *c);
/* Remove c from the waiting queue (client gave up). */
void sp_pool_unwait(sp_pool_t *p, sp_client_t *c);
/* A server became free (after login or release); give it to a waiter or park it. */
void sp_pool_server_free(sp_pool_t *p, sp_server_t *s);
/* A server login failed: fail the waiters and back off. */
void sp_pool_login_failed(sp_pool_t *p, const char *reason);
/* After a RESUME: hand the idle servers of an unpaused pool to its waiters, then open
 * what they still need. */
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

#endif
