/*
 * pool.c - server connection pools, one per (database, shard, role, user),
 * and the FIFO of clients waiting for a server. It decides when to open
 * connections (waiters, min_pool_size, reserve_pool_size after
 * reserve_pool_timeout), and backs off after failed logins so a dead server
 * costs one attempt per backoff period, not a busy loop. It does not talk
 * the protocol: server.c logs in, client.c forwards.
 *
 * PAUSE closes server connections as they come back (and idle ones), RECONNECT
 * those up to the pool's close_upto_id; the admin console waits for that.
 *
 * Counters: every server of a pool is in exactly one of n_connecting (TCP +
 * login), n_idle (idle list), n_active (linked to a client) or n_other
 * (running a reset without a client, or in hand-over inside this module).
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "daemon.h"
#include "log.h"
#include "msg.h"
#include "server.h"

static sp_pool_t *pools;
/* a set of database names, for the databases paused or disabled by name */
typedef struct name_set {
	char **names;
	int n;
} name_set_t;

/* databases paused by PAUSE db, so the pools created later are paused too */
static name_set_t paused_dbs;
/* databases refused to new clients by DISABLE db */
static name_set_t disabled_dbs;

/* sp_pool_get runs for every routed statement: pools are found by hash, not by a
 * walk over all of them (databases x users x shards x servers) */
#define POOL_BUCKETS 1024 /* power of two */
static sp_pool_t *buckets[POOL_BUCKETS];

static unsigned pool_hash(const char *dbname, const char *user, int shard, sp_role_t role, int replica)
{
	uint32_t h = 2166136261u;
	for (const char *q = dbname; *q; q++)
		h = (h ^ (uint8_t)*q) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (const char *q = user; *q; q++)
		h = (h ^ (uint8_t)*q) * 16777619u;
	h ^= (uint32_t)shard * 0x9e3779b1u ^ (uint32_t)role * 0x85ebca6bu ^ (uint32_t)(replica + 1) * 0xc2b2ae35u;
	h ^= h >> 15;
	return h & (POOL_BUCKETS - 1);
}

sp_pool_t *sp_pool_first(void)
{
	return pools;
}

sp_pool_t *sp_pool_get(const char *dbname, const char *user, int shard, sp_role_t role, int replica)
{
	unsigned h = pool_hash(dbname, user, shard, role, replica);
	const sp_db_conf_t *db;
	sp_pool_t *p;
	for (p = buckets[h]; p; p = p->hnext)
		if (p->shard == shard && p->role == role && p->replica == replica && strcmp(p->dbname, dbname) == 0 &&
		    strcmp(p->user, user) == 0)
			return p;
	db = sp_config_find_db(sp_g.cfg, dbname);
	if (!db || shard < 0 || shard >= db->n_shards)
		return NULL;
	if (role == SP_ROLE_REPLICA && (replica < 0 || replica >= db->shards[shard].n_replicas))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->dbname = strdup(dbname);
	p->user = strdup(user);
	p->shard = shard;
	p->role = role;
	p->replica = replica;
	p->node = role == SP_ROLE_PRIMARY ? &db->shards[shard].primary : &db->shards[shard].replicas[replica];
	p->pool_mode = sp_config_db_pool_mode(sp_g.cfg, db);
	p->paused = sp_pool_db_paused(dbname);
	p->next = pools;
	pools = p;
	p->hnext = buckets[h];
	buckets[h] = p;
	return p;
}

int sp_pool_size(const sp_pool_t *p)
{
	const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, p->dbname);
	return db ? sp_config_db_pool_size(sp_g.cfg, db) : sp_g.cfg->default_pool_size;
}

static int total(const sp_pool_t *p)
{
	return p->n_idle + p->n_active + p->n_connecting + p->n_other;
}

static int db_connections(const char *dbname)
{
	int n = 0;
	for (sp_pool_t *p = pools; p; p = p->next)
		if (strcmp(p->dbname, dbname) == 0)
			n += total(p);
	return n;
}

static void enqueue(sp_pool_t *p, sp_client_t *c)
{
	c->wait_next = NULL;
	if (p->wait_tail)
		p->wait_tail->wait_next = c;
	else
		p->wait_head = c;
	p->wait_tail = c;
	p->n_waiting++;
	if (p->n_waiting == 1)
		p->reserve_since = ev_now(sp_loop);
}

void sp_pool_unwait(sp_pool_t *p, sp_client_t *c)
{
	sp_client_t **pp, *prev = NULL;
	if (!p)
		return;
	for (pp = &p->wait_head; *pp; prev = *pp, pp = &(*pp)->wait_next)
		if (*pp == c) {
			*pp = c->wait_next;
			if (p->wait_tail == c)
				p->wait_tail = prev;
			p->n_waiting--;
			if (c->state == SP_CLIENT_WELCOME)
				p->n_welcome_waiting--;
			c->wait_next = NULL;
			return;
		}
}

static sp_client_t *dequeue(sp_pool_t *p)
{
	sp_client_t *c = p->wait_head;
	if (!c)
		return NULL;
	p->wait_head = c->wait_next;
	if (!p->wait_head)
		p->wait_tail = NULL;
	p->n_waiting--;
	if (c->state == SP_CLIENT_WELCOME)
		p->n_welcome_waiting--;
	c->wait_next = NULL;
	if (p->wait_head)
		p->reserve_since = ev_now(sp_loop);
	return c;
}

void sp_pool_maintain(sp_pool_t *p)
{
	ev_tstamp now = ev_now(sp_loop);
	const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, p->dbname);
	int size = sp_pool_size(p);
	int want, min_size, max_db;

	if (!db || sp_g.shutting_down || p->paused || sp_g.paused)
		return; /* a paused pool opens nothing: PAUSE is there to let the servers go */
	if (p->retry_at > now)
		return;
	min_size = db->min_pool_size >= 0 ? db->min_pool_size : sp_g.cfg->min_pool_size;
	if (p->retired || db->removed)
		min_size = 0; /* gone from the file: only clients still connected are served */
	max_db = db->max_db_connections >= 0 ? db->max_db_connections : sp_g.cfg->max_db_connections;
	if (p->n_waiting > 0 && p->n_waiting > p->n_connecting) {
		int limit = size;
		if (sp_g.cfg->reserve_pool_size > 0 && now - p->reserve_since >= sp_g.cfg->reserve_pool_timeout)
			limit += sp_g.cfg->reserve_pool_size;
		want = p->n_waiting - p->n_connecting;
		if (want > limit - total(p))
			want = limit - total(p);
	} else {
		want = min_size - total(p);
	}
	/* Open at most two at a time so a storm of clients does not storm the server. */
	if (p->n_connecting >= 2)
		return;
	if (want > 2 - p->n_connecting)
		want = 2 - p->n_connecting;
	while (want-- > 0) {
		if (max_db > 0 && db_connections(p->dbname) >= max_db)
			break;
		if (!sp_server_connect(p))
			break;
		if (p->retry_at > ev_now(sp_loop))
			break;
	}
}

/* Take the first idle server off the idle list (the caller counts it elsewhere). */
static sp_server_t *pop_idle(sp_pool_t *p)
{
	sp_server_t *s = p->idle;
	p->idle = s->next;
	if (s->next)
		s->next->prev = NULL;
	s->next = s->prev = NULL;
	p->n_idle--;
	return s;
}

void sp_pool_acquire(sp_pool_t *p, sp_client_t *c)
{
	ev_tstamp now = ev_now(sp_loop);

	if (c->state == SP_CLIENT_WELCOME) {
		/* the server's parameters, from this pool or another of the database and
		 * user (every node of a database reports the same) */
		for (sp_pool_t *o = pools; !p->have_welcome && o; o = o->next)
			if (o->have_welcome && !strcmp(o->dbname, p->dbname) && !strcmp(o->user, p->user)) {
				sp_params_copy(&p->welcome, &o->welcome);
				p->have_welcome = true;
			}
		if (p->have_welcome) {
			sp_client_welcome(c);
			return;
		}
		p->n_welcome_waiting++;
	} else if (p->idle && !p->paused && !sp_g.paused && p->n_waiting == 0) {
		sp_server_t *s = pop_idle(p);
		p->n_active++;
		s->state = SP_SERVER_ACTIVE;
		sp_client_server_ready(c, s);
		return;
	}
	if (p->retry_at > now && total(p) == 0) {
		char msg[400];
		snprintf(msg, sizeof(msg), "server %s:%d (database %s, shard %d %s) is unavailable: %s; retrying in %.1f s",
			 p->node->host, p->node->port, p->dbname, p->shard,
			 p->role == SP_ROLE_PRIMARY ? "primary" : "replica", p->last_error, p->retry_at - now);
		sp_client_server_failed(c, SP_SQLSTATE_CONNECTION_FAILURE, msg);
		return;
	}
	enqueue(p, c);
	if (!p->paused && !sp_g.paused)
		sp_pool_maintain(p);
}

void sp_pool_server_free(sp_pool_t *p, sp_server_t *s)
{
	ev_tstamp now = ev_now(sp_loop);
	sp_client_t *c;

	/* s is counted in n_other (hand-over). */
	if (!p->have_welcome) {
		sp_params_copy(&p->welcome, &s->params);
		p->have_welcome = true;
	}
	/* Clients that only waited for the server's parameters can log in now. */
	for (sp_client_t **pp = &p->wait_head; p->n_welcome_waiting > 0 && *pp;) {
		sp_client_t *w = *pp;
		if (w->state == SP_CLIENT_WELCOME) {
			*pp = w->wait_next;
			if (p->wait_tail == w) {
				p->wait_tail = NULL;
				for (sp_client_t *t = p->wait_head; t; t = t->wait_next)
					p->wait_tail = t;
			}
			p->n_waiting--;
			p->n_welcome_waiting--;
			w->wait_next = NULL;
			sp_client_welcome(w);
			if (s->state == SP_SERVER_CLOSED)
				return;
			pp = &p->wait_head;
			continue;
		}
		pp = &w->wait_next;
	}
	if (s->state != SP_SERVER_RESET)
		return; /* someone took it meanwhile */
	if (sp_g.shutting_down && !p->wait_head) {
		sp_server_close(s, "shutting down");
		return;
	}
	if (p->paused || sp_g.paused) {
		sp_server_close(s, "paused: closed as it was released");
		return;
	}
	if (s->id <= p->close_upto_id) {
		sp_server_close(s, "RECONNECT or RELOAD: closed as it was released");
		return;
	}
	if (sp_g.cfg->server_lifetime > 0 && now - s->created_at > sp_g.cfg->server_lifetime && !p->wait_head) {
		sp_server_close(s, "server_lifetime reached");
		return;
	}
	if (!p->paused && !sp_g.paused && (c = dequeue(p))) {
		p->n_other--;
		p->n_active++;
		s->state = SP_SERVER_ACTIVE;
		sp_client_server_ready(c, s);
		return;
	}
	p->n_other--;
	p->n_idle++;
	s->state = SP_SERVER_IDLE;
	s->last_used = now;
	s->prev = NULL;
	s->next = p->idle;
	if (p->idle)
		p->idle->prev = s;
	p->idle = s;
	sp_sock_read_start(&s->sock); /* notice if the server goes away while idle */
}

void sp_pool_wake(sp_pool_t *p)
{
	if (p->paused || sp_g.paused)
		return;
	p->resumed_at = ev_now(sp_loop);
	while (p->wait_head && p->idle) {
		sp_server_t *s = pop_idle(p);
		p->n_other++;
		s->state = SP_SERVER_RESET;
		sp_pool_server_free(p, s); /* hands it to the first waiter */
	}
	sp_pool_maintain(p);
}

void sp_pool_login_failed(sp_pool_t *p, const char *reason)
{
	ev_tstamp now = ev_now(sp_loop);
	double max_backoff = sp_g.cfg->server_login_retry > 0 ? sp_g.cfg->server_login_retry : 15;
	char msg[512];

	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
	p->backoff = p->backoff > 0 ? p->backoff * 2 : 0.25;
	if (p->backoff > max_backoff)
		p->backoff = max_backoff;
	p->retry_at = now + p->backoff;
	sp_warn("pool %s/%s shard %d %s %s:%d: login failed: %s (next attempt in %.2f s)", p->dbname, p->user, p->shard,
		p->role == SP_ROLE_PRIMARY ? "primary" : "replica", p->node->host, p->node->port, reason, p->backoff);
	if (p->n_active + p->n_idle + p->n_connecting > 0)
		return; /* other connections may still serve the waiters */
	snprintf(msg, sizeof(msg), "could not connect to server %s:%d (database %s, shard %d %s): %s", p->node->host,
		 p->node->port, p->dbname, p->shard, p->role == SP_ROLE_PRIMARY ? "primary" : "replica", reason);
	while (p->wait_head) {
		sp_client_t *c = dequeue(p);
		sp_client_server_failed(c, SP_SQLSTATE_CONNECTION_FAILURE, msg);
	}
}

static bool set_has(const name_set_t *set, const char *name)
{
	for (int i = 0; i < set->n; i++)
		if (strcmp(set->names[i], name) == 0)
			return true;
	return false;
}

/* Add or remove name; false when out of memory. */
static bool set_put(name_set_t *set, const char *name, bool in)
{
	char **grown, *copy;
	for (int i = 0; i < set->n; i++)
		if (strcmp(set->names[i], name) == 0) {
			if (!in) {
				free(set->names[i]);
				set->names[i] = set->names[--set->n];
			}
			return true;
		}
	if (!in)
		return true;
	grown = realloc(set->names, (size_t)(set->n + 1) * sizeof(*grown));
	if (grown)
		set->names = grown;
	copy = strdup(name);
	if (!grown || !copy) {
		free(copy);
		return false;
	}
	set->names[set->n++] = copy;
	return true;
}

static void set_clear(name_set_t *set)
{
	for (int i = 0; i < set->n; i++)
		free(set->names[i]);
	free(set->names);
	set->names = NULL;
	set->n = 0;
}

bool sp_pool_db_paused(const char *dbname)
{
	return set_has(&paused_dbs, dbname);
}

void sp_pool_pause_db(const char *dbname, bool pause)
{
	for (sp_pool_t *p = pools; p; p = p->next)
		if (strcmp(p->dbname, dbname) == 0)
			p->paused = pause;
	/* on failure the pools there now are paused; one created later would not be */
	if (!set_put(&paused_dbs, dbname, pause))
		sp_warn("PAUSE %s: out of memory", dbname);
}

void sp_pool_resume_all_dbs(void)
{
	for (sp_pool_t *p = pools; p; p = p->next)
		p->paused = false;
	set_clear(&paused_dbs);
}

bool sp_pool_db_disabled(const char *dbname)
{
	return set_has(&disabled_dbs, dbname);
}

void sp_pool_disable_db(const char *dbname, bool disable)
{
	if (!set_put(&disabled_dbs, dbname, disable))
		sp_warn("DISABLE %s: out of memory", dbname);
}

void sp_pool_reconnect(sp_pool_t *p, const char *why)
{
	sp_server_t *s, *next;
	for (s = sp_server_first(); s; s = s->all_next)
		if (s->pool == p && s->id > p->close_upto_id)
			p->close_upto_id = s->id;
	for (s = p->idle; s; s = next) {
		next = s->next;
		sp_server_close(s, why);
	}
}

/* RELOAD: p's entry is node now; moved: it names another server than before. */
static void repoint(sp_pool_t *p, const sp_node_conf_t *node, bool moved)
{
	p->node = node;
	if (!moved)
		return;
	sp_pool_reconnect(p, "RELOAD: its server entry changed");
	/* a failed login was the old server's: the new one gets a chance at once */
	p->retry_at = 0;
	p->backoff = 0;
	p->last_error[0] = 0;
	sp_pool_maintain(p);
}

void sp_pool_node_changed(const sp_node_conf_t *node, bool moved)
{
	for (sp_pool_t *p = pools; p; p = p->next)
		if (p->node == node)
			repoint(p, node, moved);
}

void sp_pool_replica_reloaded(const char *dbname, int shard, int replica, const sp_node_conf_t *node)
{
	for (sp_pool_t *p = pools; p; p = p->next) {
		if (p->role != SP_ROLE_REPLICA || p->shard != shard || p->replica != replica ||
		    strcmp(p->dbname, dbname) != 0)
			continue;
		if (!node) {
			p->retired = true;
			sp_pool_reconnect(p, "RELOAD: its replica was taken out of the file");
			continue;
		}
		p->retired = false;
		repoint(p, node, p->node != node && !sp_config_same_server(p->node, node));
	}
}

void sp_pool_db_reloaded(const sp_db_conf_t *db)
{
	for (sp_pool_t *p = pools; p; p = p->next)
		if (strcmp(p->dbname, db->name) == 0) {
			p->pool_mode = sp_config_db_pool_mode(sp_g.cfg, db);
			sp_pool_maintain(p); /* a larger pool_size serves the waiters now */
		}
}

int sp_pool_active_clients(const sp_pool_t *p)
{
	int n = 0;
	for (sp_client_t *c = sp_client_first(); c; c = c->next)
		if (c->pool == p && c->state == SP_CLIENT_ACTIVE)
			n++;
	return n;
}

double sp_pool_maxwait(const sp_pool_t *p)
{
	double maxwait = 0;
	ev_tstamp now = ev_now(sp_loop);
	for (sp_client_t *c = p->wait_head; c; c = c->wait_next)
		if (now - c->wait_since > maxwait)
			maxwait = now - c->wait_since;
	return maxwait;
}

void sp_pool_client_gone(sp_pool_t *home, unsigned long long received, unsigned long long sent)
{
	if (home) {
		home->gone_received += received;
		home->gone_sent += sent;
	}
}

void sp_pool_free_all(void)
{
	sp_pool_resume_all_dbs();
	set_clear(&disabled_dbs);
	while (pools) {
		sp_pool_t *p = pools;
		pools = p->next;
		sp_params_clear(&p->welcome);
		free(p->dbname);
		free(p->user);
		free(p);
	}
	memset(buckets, 0, sizeof(buckets));
}
