/*
 * admin.c - the admin console. A client that logs in to database
 * "shardpool" (or "pgbouncer", for tools written for it) as one of
 * admin_users / stats_users gets SHOW, PAUSE [db], RESUME [db], RELOAD and
 * SHUTDOWN answered by shardpool itself, as ordinary RowDescription/DataRow messages
 * so psql and every driver can read them. stats_users may only SHOW.
 * Only the simple query protocol is supported here, like pgbouncer.
 *
 * It also owns the pgbouncer-compatible process controls that need more than a
 * flag: PAUSE and WAIT_CLOSE answer only when the server connections they wait
 * for are gone (the admin client is parked in a list of waiters, checked after
 * every loop iteration and by a timer; a client that leaves is dropped from it),
 * KILL, RECONNECT, DISABLE/ENABLE; and the SHOW STATS averages, from snapshots
 * of the per-pool counters taken every stats_period. The counters themselves
 * are bumped where transactions, queries and clients end (pool.h).
 */
#include "admin.h"

#include <ctype.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analyze.h"
#include "client.h"
#include "config.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "prepared.h"
#include "resolve.h"
#include "router.h"
#include "server.h"
#include "userlist.h"

#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25

/* Counts and ids are sent as int4 / int8, as pgbouncer sends them, so a script reads
 * numbers (Python's row["cl_waiting"] > 0) rather than strings; names as text. */
#define I4 OID_INT4
#define I8 OID_INT8
#define TX OID_TEXT

void sp_admin_login(sp_client_t *c)
{
	sp_buf_t *out = &c->sock.out;
	c->state = SP_CLIENT_ADMIN;
	sp_msg_write_parameter_status(out, "server_version", "15.0 (shardpool " PACKAGE_VERSION ")");
	sp_msg_write_parameter_status(out, "server_encoding", "UTF8");
	sp_msg_write_parameter_status(out, "client_encoding", "UTF8");
	sp_msg_write_parameter_status(out, "DateStyle", "ISO, MDY");
	sp_msg_write_parameter_status(out, "standard_conforming_strings", "on");
	sp_msg_write_parameter_status(out, "integer_datetimes", "on");
	sp_client_assign_cancel_key(c); /* Ctrl-C ends a PAUSE that waits (sp_admin_cancel) */
	sp_msg_write_backend_key_data(out, c->cancel_pid, c->cancel_key);
	sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
}

typedef struct table {
	sp_buf_t *out;
	int ncols;
	long rows;
} table_t;

static void t_begin_typed(table_t *t, sp_buf_t *out, int ncols, const char *const *names, const int32_t *oids)
{
	t->out = out;
	t->ncols = ncols;
	t->rows = 0;
	sp_msg_write_row_description(out, ncols, names, oids);
}

static void t_begin(table_t *t, sp_buf_t *out, int ncols, const char *const *names)
{
	t_begin_typed(t, out, ncols, names, NULL);
}

static void t_row(table_t *t, const char *const *vals)
{
	sp_msg_write_data_row(t->out, t->ncols, vals);
	t->rows++;
}

static void t_end(table_t *t, const char *verb)
{
	char tag[64];
	snprintf(tag, sizeof(tag), "%s %ld", verb, t->rows);
	sp_msg_write_command_complete(t->out, tag);
}

static const char *mode_str(int m)
{
	return m == SP_POOL_SESSION ? "session" : m == SP_POOL_STATEMENT ? "statement" : "transaction";
}

static void show_pools(sp_buf_t *out)
{
	static const char *const cols[] = {
	    "database",	 "user",       "shard",	    "role",    "host",	   "port",
	    "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login", "sv_other",
	    "maxwait",	 "maxwait_us", "pool_mode", "xacts",   "queries",  "last_error"};
	static const int32_t oids[] = {TX, TX, I4, TX, TX, I4, I4, I4, I4,
				       I4, I4, I4, I4, I4, TX, I8, I8, TX};
	table_t t;
	t_begin_typed(&t, out, 18, cols, oids);
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		char v[18][300];
		const char *vals[18];
		int cl_active = sp_pool_active_clients(p);
		/* as pgbouncer: maxwait whole seconds, maxwait_us the microseconds beyond them */
		long long maxwait_us = (long long)(sp_pool_maxwait(p) * 1e6);
		snprintf(v[0], 64, "%s", p->dbname);
		snprintf(v[1], 64, "%s", p->user);
		snprintf(v[2], 64, "%d", p->shard);
		snprintf(v[3], 64, "%s", p->role == SP_ROLE_PRIMARY ? "primary" : "replica");
		snprintf(v[4], 64, "%s", p->node->host);
		snprintf(v[5], 64, "%d", p->node->port);
		snprintf(v[6], 64, "%d", cl_active);
		snprintf(v[7], 64, "%d", p->n_waiting);
		snprintf(v[8], 64, "%d", p->n_active);
		snprintf(v[9], 64, "%d", p->n_idle);
		snprintf(v[10], 64, "%d", p->n_connecting);
		snprintf(v[11], 64, "%d", p->n_other);
		snprintf(v[12], 64, "%lld", maxwait_us / 1000000);
		snprintf(v[13], 64, "%lld", maxwait_us % 1000000);
		{
			const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, p->dbname);
			snprintf(v[14], 64, "%s",
				 mode_str(db ? (int)sp_config_db_pool_mode(sp_g.cfg, db)
					     : (int)sp_g.cfg->pool_mode));
		}
		snprintf(v[15], 64, "%llu", (unsigned long long)p->total_xacts);
		snprintf(v[16], 64, "%llu", (unsigned long long)p->total_queries);
		snprintf(v[17], 300, "%s", p->last_error);
		for (int i = 0; i < 18; i++)
			vals[i] = v[i];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

static void show_clients(sp_buf_t *out)
{
	static const char *const cols[] = {"id", "user", "database", "state", "addr", "connect_time_s",
					   "queries", "xacts", "server_id", "close_reason"};
	static const int32_t oids[] = {I8, TX, TX, TX, TX, I8, I8, I8, I8, TX};
	table_t t;
	ev_tstamp now = ev_now(sp_loop);
	t_begin_typed(&t, out, 10, cols, oids);
	for (sp_client_t *c = sp_client_first(); c; c = c->next) {
		char v[10][160];
		const char *vals[10];
		snprintf(v[0], 160, "%llu", (unsigned long long)c->id);
		snprintf(v[1], 160, "%s", c->user ? c->user : "");
		snprintf(v[2], 160, "%s", c->dbname ? c->dbname : "");
		snprintf(v[3], 160, "%s", sp_client_state_str(c->state));
		snprintf(v[4], 160, "%s", c->peer_str);
		snprintf(v[5], 160, "%.0f", now - c->connect_at);
		snprintf(v[6], 160, "%llu", (unsigned long long)c->n_queries);
		snprintf(v[7], 160, "%llu", (unsigned long long)c->n_xacts);
		snprintf(v[8], 160, "%llu", c->server ? (unsigned long long)c->server->id : 0ULL);
		snprintf(v[9], 160, "%s", c->close_reason);
		for (int i = 0; i < 10; i++)
			vals[i] = v[i];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

static void show_servers(sp_buf_t *out)
{
	static const char *const cols[] = {"id", "user", "database", "shard", "role", "state", "addr",
					   "backend_pid", "client_id", "age_s", "xacts", "prepared"};
	static const int32_t oids[] = {I8, TX, TX, I4, TX, TX, TX, I4, I8, I8, I8, I4};
	table_t t;
	ev_tstamp now = ev_now(sp_loop);
	t_begin_typed(&t, out, 12, cols, oids);
	for (sp_server_t *s = sp_server_first(); s; s = s->all_next) {
		char v[12][128];
		const char *vals[12];
		snprintf(v[0], 128, "%llu", (unsigned long long)s->id);
		snprintf(v[1], 128, "%s", s->pool->user);
		snprintf(v[2], 128, "%s", s->pool->dbname);
		snprintf(v[3], 128, "%d", s->pool->shard);
		snprintf(v[4], 128, "%s", s->pool->role == SP_ROLE_PRIMARY ? "primary" : "replica");
		snprintf(v[5], 128, "%s", sp_server_state_str(s->state));
		snprintf(v[6], 128, "%s:%d", s->pool->node->host, s->pool->node->port);
		snprintf(v[7], 128, "%d", s->be_pid);
		snprintf(v[8], 128, "%llu", s->client ? (unsigned long long)s->client->id : 0ULL);
		snprintf(v[9], 128, "%.0f", now - s->created_at);
		snprintf(v[10], 128, "%llu", (unsigned long long)s->n_xacts);
		snprintf(v[11], 128, "%d", s->pstmts.n);
		for (int i = 0; i < 12; i++)
			vals[i] = v[i];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

static void show_databases(sp_buf_t *out)
{
	static const char *const cols[] = {"name", "shards", "pool_mode", "pool_size", "shard", "primary", "replicas", "paused", "disabled"};
	static const int32_t oids[] = {TX, I4, TX, I4, I4, TX, TX, TX, TX};
	table_t t;
	t_begin_typed(&t, out, 9, cols, oids);
	for (int i = 0; i < sp_g.cfg->n_dbs; i++) {
		const sp_db_conf_t *db = sp_g.cfg->dbs[i];
		for (int k = 0; !db->removed && k < db->n_shards; k++) {
			char v[9][160];
			const char *vals[9];
			size_t o = 0;
			snprintf(v[0], 160, "%s", db->name);
			snprintf(v[1], 160, "%d", db->n_shards);
			snprintf(v[2], 160, "%s", mode_str(sp_config_db_pool_mode(sp_g.cfg, db)));
			snprintf(v[3], 160, "%d", sp_config_db_pool_size(sp_g.cfg, db));
			snprintf(v[4], 160, "%d", k);
			snprintf(v[5], 160, "%s:%d", db->shards[k].primary.host, db->shards[k].primary.port);
			v[6][0] = 0;
			for (int r = 0; r < db->shards[k].n_replicas && o < 150; r++)
				o += (size_t)snprintf(v[6] + o, 160 - o, "%s%s:%d", r ? "," : "", db->shards[k].replicas[r].host,
						      db->shards[k].replicas[r].port);
			snprintf(v[7], 160, "%s", sp_g.paused || sp_pool_db_paused(db->name) ? "yes" : "no");
			snprintf(v[8], 160, "%s", sp_pool_db_disabled(db->name) ? "yes" : "no");
			for (int j = 0; j < 9; j++)
				vals[j] = v[j];
			t_row(&t, vals);
		}
	}
	t_end(&t, "SHOW");
}

static void show_config(sp_buf_t *out)
{
	static const char *const cols[] = {"key", "value", "default", "changeable"};
	table_t t;
	sp_config_item_t it;
	t_begin(&t, out, 4, cols);
	for (int i = 0; sp_config_key_at(i, &it); i++) {
		char buf[512];
		const char *vals[4];
		if (strcmp(it.section, "shardpool") != 0)
			continue;
		vals[0] = it.name;
		vals[1] = sp_config_value_str(sp_g.cfg, it.name, buf, sizeof(buf));
		if (!vals[1])
			vals[1] = "";
		vals[2] = it.def ? it.def : "";
		vals[3] = it.reloadable ? "yes" : "no";
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

static void show_mem(sp_buf_t *out)
{
	static const char *const cols[] = {"name", "count"};
	static const int32_t oids[] = {TX, I8};
	table_t t;
	char v[3][32];
	const char *row[2];
	t_begin_typed(&t, out, 2, cols, oids);
	snprintf(v[0], 32, "%d", sp_client_count());
	row[0] = "clients";
	row[1] = v[0];
	t_row(&t, row);
	snprintf(v[1], 32, "%d", sp_server_count());
	row[0] = "servers";
	row[1] = v[1];
	t_row(&t, row);
	snprintf(v[2], 32, "%zu", sp_pstmt_count());
	row[0] = "prepared_statements";
	row[1] = v[2];
	t_row(&t, row);
	t_end(&t, "SHOW");
}

static void show_route_cache(sp_buf_t *out)
{
	static const char *const cols[] = {"hits", "misses", "evictions", "parse_errors", "not_lifted",
					   "entries", "bytes", "max_entries", "max_bytes"};
	static const int32_t oids[] = {I8, I8, I8, I8, I8, I8, I8, I8, I8};
	sp_router_stats_t st;
	char v[9][32];
	const char *vals[9];
	table_t t;
	sp_router_get_stats(&st);
	snprintf(v[0], 32, "%llu", (unsigned long long)st.hits);
	snprintf(v[1], 32, "%llu", (unsigned long long)st.misses);
	snprintf(v[2], 32, "%llu", (unsigned long long)st.evictions);
	snprintf(v[3], 32, "%llu", (unsigned long long)st.parse_errors);
	snprintf(v[4], 32, "%llu", (unsigned long long)st.no_lift);
	snprintf(v[5], 32, "%zu", st.entries);
	snprintf(v[6], 32, "%zu", st.bytes);
	snprintf(v[7], 32, "%zu", st.max_entries);
	snprintf(v[8], 32, "%zu", st.max_bytes);
	for (int i = 0; i < 9; i++)
		vals[i] = v[i];
	t_begin_typed(&t, out, 9, cols, oids);
	t_row(&t, vals);
	t_end(&t, "SHOW");
}

static void show_health(sp_buf_t *out)
{
	static const char *const cols[] = {"database", "shard", "role", "host", "port", "reachable",
					   "in_recovery", "in_rotation", "fenced", "lag_bytes", "lag_ms",
					   "timeline", "reads", "last_error"};
	static const int32_t oids[] = {TX, I4, TX, TX, I4, TX, TX, TX, TX, I8, I8, I8, I8, TX};
	table_t t;
	t_begin_typed(&t, out, 14, cols, oids);
	for (int i = 0; i < sp_health_count(); i++) {
		sp_node_health_t *n = sp_health_at(i);
		char v[14][220];
		const char *vals[14];
		if (!n)
			continue;
		snprintf(v[0], 220, "%s", n->dbname);
		snprintf(v[1], 220, "%d", n->shard);
		if (n->replica < 0)
			snprintf(v[2], 220, "primary");
		else
			snprintf(v[2], 220, "replica %d", n->replica);
		snprintf(v[3], 220, "%s", n->conf->host);
		snprintf(v[4], 220, "%d", n->conf->port);
		snprintf(v[5], 220, "%s", !n->probed ? "unknown" : n->reachable ? "yes" : "no");
		snprintf(v[6], 220, "%s", n->in_recovery ? "yes" : "no");
		snprintf(v[7], 220, "%s", n->replica < 0 ? "" : n->in_rotation ? "yes" : "no");
		snprintf(v[8], 220, "%s", n->fenced ? "yes" : "no");
		snprintf(v[9], 220, "%lld", (long long)n->lag_bytes);
		snprintf(v[10], 220, "%.0f", n->lag_ms);
		snprintf(v[11], 220, "%u", n->timeline);
		snprintf(v[12], 220, "%llu", (unsigned long long)n->reads);
		snprintf(v[13], 220, "%s", n->last_error);
		for (int k = 0; k < 14; k++)
			vals[k] = v[k];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

/* ------------------------------------------------------------------ SHOW STATS */

/*
 * Per database: the sum of its pools' counters, and the bytes of its clients
 * (live ones from their sockets, gone ones kept by their login pool). The
 * averages compare two snapshots of these taken stats_period apart.
 */
typedef struct db_totals {
	uint64_t xacts, queries, received, sent, xact_us, query_us, wait_us;
} db_totals_t;

static db_totals_t *snap_old, *snap_new; /* per configured database, by index */
static int snap_n;                         /* entries in each */
static ev_tstamp snap_old_at, snap_new_at; /* 0: not taken yet */
static ev_timer stats_timer;
static bool stats_started;

static int db_index(const char *dbname)
{
	const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, dbname);
	return db ? db->index : -1;
}

/* Fill t[0 .. n_dbs-1] with the totals now. */
static void collect_totals(db_totals_t *t, int n)
{
	memset(t, 0, (size_t)n * sizeof(*t));
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		int i = db_index(p->dbname);
		if (i < 0 || i >= n)
			continue;
		t[i].xacts += p->total_xacts;
		t[i].queries += p->total_queries;
		t[i].xact_us += p->total_xact_us;
		t[i].query_us += p->total_query_us;
		t[i].wait_us += p->total_wait_us;
		t[i].received += p->gone_received;
		t[i].sent += p->gone_sent;
	}
	for (sp_client_t *c = sp_client_first(); c; c = c->next) {
		int i;
		if (!c->home_pool || c->state == SP_CLIENT_CLOSED)
			continue;
		i = db_index(c->home_pool->dbname);
		if (i < 0 || i >= n)
			continue;
		t[i].received += c->sock.bytes_in;
		t[i].sent += c->sock.bytes_out;
	}
}

static void stats_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	int n = sp_g.cfg->n_dbs;
	db_totals_t *fresh;
	(void)loop;
	(void)revents;
	if (n != snap_n) {
		/* the databases changed under us: start over */
		free(snap_old);
		free(snap_new);
		snap_old = snap_new = NULL;
		snap_old_at = snap_new_at = 0;
		snap_n = 0;
	}
	fresh = snap_old ? snap_old : calloc((size_t)(n ? n : 1), sizeof(*fresh));
	if (fresh) {
		collect_totals(fresh, n);
		snap_old = snap_new;
		snap_old_at = snap_new_at;
		snap_new = fresh;
		snap_new_at = ev_now(sp_loop);
		snap_n = n;
	}
	w->repeat = sp_g.cfg->stats_period > 0 ? sp_g.cfg->stats_period : 60;
	ev_timer_again(sp_loop, w);
}

void sp_admin_settings_changed(void)
{
	double period = sp_g.cfg->stats_period > 0 ? sp_g.cfg->stats_period : 60;
	/* a new stats_period counts from now, not from the next tick of the old one (up
	 * to a minute away) */
	if (stats_started && period != stats_timer.repeat) {
		stats_timer.repeat = period;
		ev_timer_again(sp_loop, &stats_timer);
	}
}

static uint64_t per_second(uint64_t a, uint64_t b, double dt)
{
	return b > a && dt > 0 ? (uint64_t)((double)(b - a) / dt) : 0;
}

static uint64_t per_item(uint64_t a, uint64_t b, uint64_t items)
{
	return b > a && items > 0 ? (b - a) / items : 0;
}

/* The avg_* of database i over the last stats period (zeros before the first one ended). */
static void averages(int i, db_totals_t *avg)
{
	const db_totals_t *a, *b;
	double dt = snap_new_at - snap_old_at;
	memset(avg, 0, sizeof(*avg));
	if (!snap_old || !snap_new || i >= snap_n || snap_old_at == 0)
		return;
	a = &snap_old[i];
	b = &snap_new[i];
	avg->xacts = per_second(a->xacts, b->xacts, dt);
	avg->queries = per_second(a->queries, b->queries, dt);
	avg->received = per_second(a->received, b->received, dt);
	avg->sent = per_second(a->sent, b->sent, dt);
	avg->xact_us = per_item(a->xact_us, b->xact_us, b->xacts - a->xacts);
	avg->query_us = per_item(a->query_us, b->query_us, b->queries - a->queries);
	avg->wait_us = per_second(a->wait_us, b->wait_us, dt);
}

static void put_totals(char v[][24], const db_totals_t *t)
{
	snprintf(v[0], 24, "%llu", (unsigned long long)t->xacts);
	snprintf(v[1], 24, "%llu", (unsigned long long)t->queries);
	snprintf(v[2], 24, "%llu", (unsigned long long)t->received);
	snprintf(v[3], 24, "%llu", (unsigned long long)t->sent);
	snprintf(v[4], 24, "%llu", (unsigned long long)t->xact_us);
	snprintf(v[5], 24, "%llu", (unsigned long long)t->query_us);
	snprintf(v[6], 24, "%llu", (unsigned long long)t->wait_us);
}

typedef enum { STATS_ALL, STATS_TOTALS, STATS_AVERAGES } stats_kind_t;

static void show_stats_kind(sp_buf_t *out, stats_kind_t kind)
{
	static const char *const all[] = {"database", "total_xact_count", "total_query_count", "total_received",
					  "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
					  "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
					  "avg_query_time", "avg_wait_time"};
	/* STATS_TOTALS and STATS_AVERAGES share these names, as in pgbouncer */
	static const char *const part[] = {"database", "xact_count", "query_count", "bytes_received",
					   "bytes_sent", "xact_time", "query_time", "wait_time"};
	int32_t oids[15];
	int n = sp_g.cfg->n_dbs, ncols = kind == STATS_ALL ? 15 : 8;
	db_totals_t *now = calloc((size_t)(n ? n : 1), sizeof(*now));
	table_t t;

	if (!now) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL, NULL);
		return;
	}
	collect_totals(now, n);
	oids[0] = OID_TEXT;
	for (int i = 1; i < 15; i++)
		oids[i] = OID_INT8;
	t_begin_typed(&t, out, ncols, kind == STATS_ALL ? all : part, oids);
	for (int i = 0; i < n; i++) {
		char v[15][24];
		const char *vals[15];
		db_totals_t avg;
		averages(i, &avg);
		vals[0] = sp_g.cfg->dbs[i]->name;
		if (kind == STATS_AVERAGES) {
			put_totals(v + 1, &avg);
		} else {
			put_totals(v + 1, &now[i]);
			put_totals(v + 8, &avg);
		}
		for (int k = 1; k < ncols; k++)
			vals[k] = v[k];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
	free(now);
}

static void show_stats(sp_buf_t *out)
{
	show_stats_kind(out, STATS_ALL);
}

static void show_stats_totals(sp_buf_t *out)
{
	show_stats_kind(out, STATS_TOTALS);
}

static void show_stats_averages(sp_buf_t *out)
{
	show_stats_kind(out, STATS_AVERAGES);
}

/* SHOW TOTALS: SHOW STATS summed over every database, one (name, value) row per column. */
static void show_totals(sp_buf_t *out)
{
	static const char *const cols[] = {"name", "value"};
	static const char *const names[] = {"total_xact_count", "total_query_count", "total_received", "total_sent",
					    "total_xact_time",  "total_query_time",  "total_wait_time", "avg_xact_count",
					    "avg_query_count",  "avg_recv",	     "avg_sent",	"avg_xact_time",
					    "avg_query_time",   "avg_wait_time"};
	static const int32_t oids[] = {OID_TEXT, OID_INT8};
	int n = sp_g.cfg->n_dbs;
	db_totals_t *now = calloc((size_t)(n ? n : 1), sizeof(*now));
	db_totals_t sum = {0}, avg = {0}, old = {0}, cur = {0};
	char v[14][24];
	table_t t;

	if (!now) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL, NULL);
		return;
	}
	collect_totals(now, n);
	for (int i = 0; i < n; i++) {
		sum.xacts += now[i].xacts;
		sum.queries += now[i].queries;
		sum.received += now[i].received;
		sum.sent += now[i].sent;
		sum.xact_us += now[i].xact_us;
		sum.query_us += now[i].query_us;
		sum.wait_us += now[i].wait_us;
		if (snap_old && snap_new && i < snap_n) {
			const db_totals_t *a = &snap_old[i], *b = &snap_new[i];
			old.xacts += a->xacts, cur.xacts += b->xacts;
			old.queries += a->queries, cur.queries += b->queries;
			old.received += a->received, cur.received += b->received;
			old.sent += a->sent, cur.sent += b->sent;
			old.xact_us += a->xact_us, cur.xact_us += b->xact_us;
			old.query_us += a->query_us, cur.query_us += b->query_us;
			old.wait_us += a->wait_us, cur.wait_us += b->wait_us;
		}
	}
	if (snap_old_at > 0) {
		double dt = snap_new_at - snap_old_at;
		avg.xacts = per_second(old.xacts, cur.xacts, dt);
		avg.queries = per_second(old.queries, cur.queries, dt);
		avg.received = per_second(old.received, cur.received, dt);
		avg.sent = per_second(old.sent, cur.sent, dt);
		avg.xact_us = per_item(old.xact_us, cur.xact_us, cur.xacts - old.xacts);
		avg.query_us = per_item(old.query_us, cur.query_us, cur.queries - old.queries);
		avg.wait_us = per_second(old.wait_us, cur.wait_us, dt);
	}
	put_totals(v, &sum);
	put_totals(v + 7, &avg);
	t_begin_typed(&t, out, 2, cols, oids);
	for (int i = 0; i < 14; i++) {
		const char *row[2] = {names[i], v[i]};
		t_row(&t, row);
	}
	t_end(&t, "SHOW");
	free(now);
}

/* ------------------------------------------------------------------ SHOW LISTS, USERS, STATE, HELP */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every user shardpool knows: auth_file's, and those with a pool (trust without a file).
 * Sorted, without duplicates; *n gets the count. NULL with *n = -1 when out of memory. */
static const char **known_users(int *n)
{
	int cap = sp_g.users ? sp_g.users->n_users : 0, k = 0, m = 0;
	const char **names;
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		cap++;
	names = malloc((size_t)(cap ? cap : 1) * sizeof(*names));
	if (!names) {
		*n = -1;
		return NULL;
	}
	for (int i = 0; sp_g.users && i < sp_g.users->n_users; i++)
		names[k++] = sp_g.users->users[i].name;
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		names[k++] = p->user;
	qsort(names, (size_t)k, sizeof(*names), cmp_str);
	for (int i = 0; i < k; i++)
		if (m == 0 || strcmp(names[m - 1], names[i]) != 0)
			names[m++] = names[i];
	*n = m;
	return names;
}

static void show_users(sp_buf_t *out)
{
	static const char *const cols[] = {"name", "pool_mode"};
	int n;
	const char **names = known_users(&n);
	table_t t;
	if (n < 0) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL, NULL);
		return;
	}
	t_begin(&t, out, 2, cols);
	for (int i = 0; i < n; i++) {
		/* pool_mode: a per-user override, which shardpool does not have: NULL, as pgbouncer
		 * shows for a user without one */
		const char *row[2] = {names[i], NULL};
		t_row(&t, row);
	}
	t_end(&t, "SHOW");
	free(names);
}

static void show_lists(sp_buf_t *out)
{
	static const char *const cols[] = {"list", "items"};
	static const int32_t oids[] = {OID_TEXT, OID_INT4};
	int n_pools = 0, n_login = 0, n_users;
	const char **names = known_users(&n_users);
	struct {
		const char *name;
		int n;
	} rows[12];
	table_t t;

	free(names);
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		n_pools++;
	for (sp_client_t *c = sp_client_first(); c; c = c->next)
		if (c->state == SP_CLIENT_STARTUP || c->state == SP_CLIENT_AUTH || c->state == SP_CLIENT_WELCOME)
			n_login++;
	rows[0].name = "databases", rows[0].n = sp_g.cfg->n_dbs;
	rows[1].name = "users", rows[1].n = n_users < 0 ? 0 : n_users;
	rows[2].name = "pools", rows[2].n = n_pools;
	/* client and server structs are allocated per connection, not kept on free lists */
	rows[3].name = "free_clients", rows[3].n = 0;
	rows[4].name = "used_clients", rows[4].n = sp_client_count();
	rows[5].name = "login_clients", rows[5].n = n_login;
	rows[6].name = "free_servers", rows[6].n = 0;
	rows[7].name = "used_servers", rows[7].n = sp_server_count();
	/* the host names of servers in the cache of resolve.c; it has no zones, and its
	 * lookups in flight are not counted */
	rows[8].name = "dns_names", rows[8].n = sp_resolve_count();
	rows[9].name = "dns_zones", rows[9].n = 0;
	rows[10].name = "dns_queries", rows[10].n = 0;
	rows[11].name = "dns_pending", rows[11].n = 0;
	t_begin_typed(&t, out, 2, cols, oids);
	for (int i = 0; i < 12; i++) {
		char v[16];
		const char *row[2] = {rows[i].name, v};
		snprintf(v, sizeof(v), "%d", rows[i].n);
		t_row(&t, row);
	}
	t_end(&t, "SHOW");
}

static void show_state(sp_buf_t *out)
{
	static const char *const cols[] = {"key", "value"};
	static const char *const active[] = {"active", NULL}, *const paused[] = {"paused", NULL},
				 *const suspended[] = {"suspended", "no"};
	const char *row[2];
	table_t t;
	t_begin(&t, out, 2, cols);
	row[0] = active[0];
	row[1] = sp_g.paused ? "no" : "yes";
	t_row(&t, row);
	row[0] = paused[0];
	row[1] = sp_g.paused ? "yes" : "no";
	t_row(&t, row);
	t_row(&t, suspended);
	t_end(&t, "SHOW");
}

#define HELP_TEXT                                                                                  \
	"\n\tSHOW HELP|CONFIG|DATABASES|SHARDS|POOLS|CLIENTS|SERVERS|USERS|VERSION"                 \
	"\n\tSHOW LISTS|MEM|STATE|HEALTH|REPLICAS|ROUTE CACHE"                                      \
	"\n\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS"                                         \
	"\n\tRELOAD"                                                                                \
	"\n\tSET <key> = <value>"                                                                   \
	"\n\tPAUSE [<db>]"                                                                          \
	"\n\tRESUME [<db>]"                                                                         \
	"\n\tDISABLE <db>"                                                                          \
	"\n\tENABLE <db>"                                                                           \
	"\n\tRECONNECT [<db>]"                                                                      \
	"\n\tKILL <db>"                                                                             \
	"\n\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]"                                          \
	"\n\tWAIT_CLOSE [<db>]"

static void show_help(sp_buf_t *out)
{
	sp_msg_write_notice_detail(out, "00000", "Console usage", HELP_TEXT);
	sp_msg_write_command_complete(out, "SHOW");
}

/* ------------------------------------------------------------------ the command language */

/*
 * A query string is a list of statements separated by ';', each one command
 * with at most its argument: SHOW subject, PAUSE [db], RESUME [db], RELOAD,
 * SHUTDOWN, RECONNECT [db], WAIT_CLOSE [db], KILL db, DISABLE db, ENABLE db. Keywords are case-insensitive; a name may be double-quoted ("" for
 * a quote inside); whitespace, -- and (nested) block comments are skipped, as
 * PostgreSQL's lexer does. The whole string is checked before anything runs:
 * a word left over after a command is a syntax error, never ignored.
 */
typedef enum { T_END, T_SEMI, T_WORD, T_QUOTED, T_STRING, T_OTHER } tok_kind_t;

typedef struct tok {
	tok_kind_t kind;
	const char *at; /* where it starts in the query text */
	size_t len;     /* its length there, quotes included */
} tok_t;

typedef struct perr {
	const char *sqlstate;
	char msg[300];
	const char *hint;
} perr_t;

typedef void (*show_fn)(sp_buf_t *out);

typedef enum {
	C_SHOW,
	C_PAUSE,
	C_RESUME,
	C_RELOAD,
	C_SHUTDOWN,
	C_RECONNECT,
	C_WAIT_CLOSE,
	C_KILL,
	C_DISABLE,
	C_ENABLE,
	C_SUSPEND,
	C_SET
} verb_t;

/* The commands that take a database name: its keyword, and whether the name is required. */
static const struct {
	const char *kw;
	verb_t verb;
	bool need_name;
} db_verbs[] = {
    {"PAUSE", C_PAUSE, false},	   {"RESUME", C_RESUME, false}, {"RECONNECT", C_RECONNECT, false},
    {"WAIT_CLOSE", C_WAIT_CLOSE, false}, {"KILL", C_KILL, true},	{"DISABLE", C_DISABLE, true},
    {"ENABLE", C_ENABLE, true},
};

#define NAME_MAX_LEN 255

typedef struct cmd {
	verb_t verb;
	show_fn show;               /* C_SHOW */
	int fake;                   /* C_SHOW, C_SET: index in fake_params, or -1 */
	char name[NAME_MAX_LEN + 1]; /* the database of PAUSE, KILL ...; "" for all */
	bool quoted;                /* the name was double-quoted: matched exactly */
	bool wait_for_clients;      /* SHUTDOWN WAIT_FOR_CLIENTS */
	char key[64];               /* SET key = value */
	char value[512];
} cmd_t;

static void show_version(sp_buf_t *out)
{
	static const char *const cols[] = {"version"};
	static const char *const v[] = {"shardpool " PACKAGE_VERSION};
	table_t t;
	t_begin(&t, out, 1, cols);
	t_row(&t, v);
	t_end(&t, "SHOW");
}

/*
 * Session settings that drivers and GUI tools set or read on every connection
 * without asking whether they must (psycopg's set_client_encoding, a tool's SET
 * application_name, SHOW client_encoding). As pgbouncer does, SET of one of them is
 * accepted and ignored (a NOTICE says so), by stats users too, and SHOW answers the
 * value the console works with, instead of failing the tool's connection.
 */
static const struct {
	const char *name;
	const char *value;
} fake_params[] = {
    {"client_encoding", "UTF8"},
    {"default_transaction_isolation", "read committed"},
    {"standard_conforming_strings", "on"},
    {"DateStyle", "ISO, MDY"},
    {"TimeZone", "GMT"},
    {"application_name", ""},
    {"extra_float_digits", "1"},
    {"client_min_messages", "notice"},
};

static int fake_param(const char *name)
{
	for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
		if (strcasecmp(name, fake_params[i].name) == 0)
			return (int)i;
	return -1;
}

static void fake_show(sp_buf_t *out, int i)
{
	const char *const cols[] = {fake_params[i].name};
	const char *const v[] = {fake_params[i].value};
	table_t t;
	t_begin(&t, out, 1, cols);
	t_row(&t, v);
	sp_msg_write_command_complete(out, "SHOW");
}

static const struct {
	const char *name;
	show_fn fn;
} show_subjects[] = {
    {"POOLS", show_pools},	      {"CLIENTS", show_clients}, {"SERVERS", show_servers},
    {"DATABASES", show_databases}, {"SHARDS", show_databases}, {"CONFIG", show_config},
    {"MEM", show_mem},		      {"ROUTE", show_route_cache}, {"ROUTES", show_route_cache},
    {"HEALTH", show_health},	      {"REPLICAS", show_health},  {"VERSION", show_version},
    {"STATS", show_stats},	      {"STATS_TOTALS", show_stats_totals}, {"STATS_AVERAGES", show_stats_averages},
    {"TOTALS", show_totals},	      {"LISTS", show_lists},	  {"USERS", show_users},
    {"STATE", show_state},	      {"HELP", show_help},
};

#define SHOW_HINT "SHOW HELP lists the subjects: POOLS, CLIENTS, SERVERS, DATABASES, STATS, USERS, LISTS, STATE, HEALTH, ..."
#define COMMANDS_HINT                                                                                                  \
	"Commands: SHOW ..., PAUSE [db], RESUME [db], RECONNECT [db], WAIT_CLOSE [db], KILL db, DISABLE db, ENABLE db, " \
	"RELOAD, SET key = value, SHUTDOWN; separate several with ';'. SHOW HELP lists them."

static bool word_char(unsigned char ch)
{
	return isalnum(ch) || ch == '_' || ch == '$' || ch >= 0x80;
}

/* The token as written, for a message: at most about 60 bytes, cut at a character boundary. */
static void tok_quote(const tok_t *t, char *buf, size_t len)
{
	size_t n = t->len;
	const char *more = "";
	if (n > 60) {
		n = 60;
		while (n > 0 && ((unsigned char)t->at[n] & 0xC0) == 0x80)
			n--;
		more = "...";
	}
	snprintf(buf, len, "%.*s%s", (int)n, t->at, more);
}

/* e says that the token t is no known command of that kind; false. */
static bool unknown_word(perr_t *e, const tok_t *t, const char *kind, const char *hint)
{
	char near[80];
	tok_quote(t, near, sizeof(near));
	e->sqlstate = SP_SQLSTATE_SYNTAX_ERROR;
	snprintf(e->msg, sizeof(e->msg), "unknown %s \"%s\"", kind, near);
	e->hint = hint;
	return false;
}

static bool lex_fail(perr_t *e, const char *what, const char *at, size_t n)
{
	tok_t t = {T_OTHER, at, n};
	char near[80];
	tok_quote(&t, near, sizeof(near));
	e->sqlstate = SP_SQLSTATE_SYNTAX_ERROR;
	snprintf(e->msg, sizeof(e->msg), "%s at or near \"%s\"", what, near);
	e->hint = NULL;
	return false;
}

/* The next token after *pp; false with e filled on an unterminated quote or comment. */
static bool lex(const char **pp, tok_t *t, perr_t *e)
{
	const char *p = *pp;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
			const char *open = p;
			bool unterminated;
			p = sp_sql_skip_comment(p, &unterminated);
			if (unterminated)
				return lex_fail(e, "unterminated /* comment", open, strlen(open));
			continue;
		}
		break;
	}
	t->at = p;
	if (!*p) {
		t->kind = T_END;
		t->len = 0;
	} else if (*p == ';') {
		t->kind = T_SEMI;
		t->len = 1;
	} else if (*p == '"' || *p == '\'') {
		char q = *p;
		const char *s = p + 1;
		for (;;) {
			if (!*s)
				return lex_fail(e, q == '"' ? "unterminated quoted identifier" : "unterminated quoted string",
						p, strlen(p));
			if (*s == q && s[1] == q) {
				s += 2;
				continue;
			}
			if (*s == q)
				break;
			s++;
		}
		t->kind = q == '"' ? T_QUOTED : T_STRING;
		t->len = (size_t)(s + 1 - p);
		if (q == '"' && t->len == 2)
			return lex_fail(e, "zero-length delimited identifier", p, 2);
	} else if (word_char((unsigned char)*p)) {
		const char *s = p;
		while (word_char((unsigned char)*s))
			s++;
		t->kind = T_WORD;
		t->len = (size_t)(s - p);
	} else {
		t->kind = T_OTHER;
		t->len = 1;
	}
	*pp = p + t->len;
	return true;
}

static bool is_name(const tok_t *t)
{
	return t->kind == T_WORD || t->kind == T_QUOTED;
}

/* The value of a name token: a word as written, a quoted identifier without its quotes. */
static bool tok_value(const tok_t *t, char *buf, size_t len)
{
	size_t n = 0;
	if (t->kind == T_WORD) {
		if (t->len >= len)
			return false;
		memcpy(buf, t->at, t->len);
		n = t->len;
	} else {
		for (size_t i = 1; i + 1 < t->len; i++) {
			if (n + 1 >= len)
				return false;
			buf[n++] = t->at[i];
			if (t->at[i] == '"')
				i++; /* "" stands for one quote */
		}
	}
	buf[n] = 0;
	return true;
}

static bool syntax_error(perr_t *e, const tok_t *t, const char *hint);

/* SET's value: a '...' string (unquoted), or the text up to ';' or the end, trimmed. */
static bool set_value_text(const char **pp, char *buf, size_t len, const char *hint, perr_t *e)
{
	const char *p = *pp, *end;
	size_t n = 0;
	tok_t t;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\'') {
		*pp = p;
		if (!lex(pp, &t, e))
			return false;
		for (size_t i = 1; i + 1 < t.len; i++) {
			if (n + 1 >= len)
				return lex_fail(e, "SET value too long", p, t.len);
			buf[n++] = t.at[i];
			if (t.at[i] == '\'')
				i++; /* '' stands for one quote */
		}
		buf[n] = 0;
		return true;
	}
	for (end = p; *end && *end != ';' && !(end[0] == '-' && end[1] == '-') && !(end[0] == '/' && end[1] == '*');)
		end++;
	*pp = end;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	if (end == p) {
		t.kind = **pp ? T_SEMI : T_END;
		t.at = *pp;
		t.len = **pp ? 1 : 0;
		return syntax_error(e, &t, hint);
	}
	if ((size_t)(end - p) >= len)
		return lex_fail(e, "SET value too long", p, (size_t)(end - p));
	memcpy(buf, p, (size_t)(end - p));
	buf[end - p] = 0;
	return true;
}

static bool keyword_is(const tok_t *t, const char *kw)
{
	return t->kind == T_WORD && strlen(kw) == t->len && strncasecmp(t->at, kw, t->len) == 0;
}

static bool syntax_error(perr_t *e, const tok_t *t, const char *hint)
{
	char near[80];
	e->sqlstate = SP_SQLSTATE_SYNTAX_ERROR;
	if (t->kind == T_END) {
		snprintf(e->msg, sizeof(e->msg), "syntax error at end of input");
	} else {
		tok_quote(t, near, sizeof(near));
		snprintf(e->msg, sizeof(e->msg), "syntax error at or near \"%s\"", near);
	}
	e->hint = hint;
	return false;
}

typedef enum { P_END, P_EMPTY, P_CMD, P_ERROR } parsed_t;

static bool db_verbs_need_name(verb_t v)
{
	for (size_t i = 0; i < sizeof(db_verbs) / sizeof(db_verbs[0]); i++)
		if (db_verbs[i].verb == v)
			return db_verbs[i].need_name;
	return false;
}

/* t is one of the commands that take a database name: set cmd->verb. */
static bool db_verb(const tok_t *t, cmd_t *cmd)
{
	for (size_t i = 0; i < sizeof(db_verbs) / sizeof(db_verbs[0]); i++)
		if (keyword_is(t, db_verbs[i].kw)) {
			cmd->verb = db_verbs[i].verb;
			return true;
		}
	return false;
}

/* Parse the statement at *pp, up to and including its ';'. */
static parsed_t parse_statement(const char **pp, cmd_t *cmd, perr_t *e)
{
	tok_t t;
	const char *hint;
	char word[NAME_MAX_LEN + 1];

	memset(cmd, 0, sizeof(*cmd));
	cmd->fake = -1;
	if (!lex(pp, &t, e))
		return P_ERROR;
	if (t.kind == T_END)
		return P_END;
	if (t.kind == T_SEMI)
		return P_EMPTY;
	if (t.kind != T_WORD) {
		syntax_error(e, &t, COMMANDS_HINT);
		return P_ERROR;
	}
	if (keyword_is(&t, "SHOW")) {
		hint = "SHOW takes one subject; separate several commands with ';'.";
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (!is_name(&t)) {
			syntax_error(e, &t, SHOW_HINT);
			return P_ERROR;
		}
		cmd->verb = C_SHOW;
		if (tok_value(&t, word, sizeof(word)))
			for (size_t i = 0; i < sizeof(show_subjects) / sizeof(show_subjects[0]); i++)
				if (strcasecmp(word, show_subjects[i].name) == 0)
					cmd->show = show_subjects[i].fn;
		if (!cmd->show && t.kind == T_WORD)
			cmd->fake = fake_param(word);
		if (!cmd->show && cmd->fake < 0) {
			unknown_word(e, &t, "SHOW command", SHOW_HINT);
			return P_ERROR;
		}
		if (strcasecmp(word, "ROUTE") == 0) {
			/* SHOW ROUTE CACHE, or SHOW ROUTE */
			const char *save = *pp;
			if (!lex(pp, &t, e))
				return P_ERROR;
			if (!keyword_is(&t, "CACHE"))
				*pp = save;
		}
	} else if (db_verb(&t, cmd)) {
		const char *save;
		static char hint_buf[128];
		snprintf(hint_buf, sizeof(hint_buf), "%.*s takes %s database name; separate several commands with ';'.",
			 (int)t.len, t.at, db_verbs_need_name(cmd->verb) ? "one" : "at most a");
		hint = hint_buf;
		save = *pp;
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (is_name(&t)) {
			if (!tok_value(&t, cmd->name, sizeof(cmd->name))) {
				e->sqlstate = "42622"; /* name_too_long */
				snprintf(e->msg, sizeof(e->msg), "database name too long (more than %d bytes)", NAME_MAX_LEN);
				e->hint = NULL;
				return P_ERROR;
			}
			cmd->quoted = t.kind == T_QUOTED;
		} else if (db_verbs_need_name(cmd->verb)) {
			syntax_error(e, &t, hint);
			return P_ERROR;
		} else {
			*pp = save;
		}
	} else if (keyword_is(&t, "SUSPEND")) {
		cmd->verb = C_SUSPEND;
		hint = "SUSPEND takes no arguments; separate several commands with ';'.";
	} else if (keyword_is(&t, "RELOAD")) {
		cmd->verb = C_RELOAD;
		hint = "RELOAD takes no arguments; separate several commands with ';'.";
	} else if (keyword_is(&t, "SET")) {
		cmd->verb = C_SET;
		hint = "SET changes one setting: SET name = value (or TO value); separate several commands with ';'.";
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (t.kind != T_WORD || !tok_value(&t, cmd->key, sizeof(cmd->key))) {
			syntax_error(e, &t, hint);
			return P_ERROR;
		}
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (!(t.kind == T_OTHER && *t.at == '=') && !keyword_is(&t, "TO")) {
			syntax_error(e, &t, hint);
			return P_ERROR;
		}
		if (!set_value_text(pp, cmd->value, sizeof(cmd->value), hint, e))
			return P_ERROR;
		cmd->fake = fake_param(cmd->key);
	} else if (keyword_is(&t, "SHUTDOWN")) {
		const char *save = *pp;
		cmd->verb = C_SHUTDOWN;
		hint = "SHUTDOWN takes WAIT_FOR_SERVERS, WAIT_FOR_CLIENTS or nothing; separate several "
		       "commands with ';'.";
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (keyword_is(&t, "WAIT_FOR_CLIENTS"))
			cmd->wait_for_clients = true;
		else if (!keyword_is(&t, "WAIT_FOR_SERVERS"))
			*pp = save;
	} else {
		unknown_word(e, &t, "admin command", COMMANDS_HINT);
		return P_ERROR;
	}
	/* the command is complete: only ';' or the end may follow */
	{
		const char *save = *pp;
		if (!lex(pp, &t, e))
			return P_ERROR;
		if (t.kind == T_END)
			*pp = save;
		else if (t.kind != T_SEMI) {
			syntax_error(e, &t, hint);
			return P_ERROR;
		}
	}
	return P_CMD;
}

/* The database a command names: a quoted name exactly, a plain one as written or folded to lower case. */
static const sp_db_conf_t *named_db(const cmd_t *cmd)
{
	const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, cmd->name);
	char lower[NAME_MAX_LEN + 1];
	size_t i;
	if (db || cmd->quoted)
		return db;
	for (i = 0; cmd->name[i]; i++)
		lower[i] = (char)tolower((unsigned char)cmd->name[i]);
	lower[i] = 0;
	return sp_config_find_db(sp_g.cfg, lower);
}

static const char *verb_tag(verb_t v)
{
	switch (v) {
	case C_SHOW:
		return "SHOW";
	case C_PAUSE:
		return "PAUSE";
	case C_RESUME:
		return "RESUME";
	case C_RELOAD:
		return "RELOAD";
	case C_SHUTDOWN:
		return "SHUTDOWN";
	case C_RECONNECT:
		return "RECONNECT";
	case C_WAIT_CLOSE:
		return "WAIT_CLOSE";
	case C_KILL:
		return "KILL";
	case C_DISABLE:
		return "DISABLE";
	case C_ENABLE:
		return "ENABLE";
	case C_SUSPEND:
		return "SUSPEND";
	case C_SET:
		return "SET";
	}
	return "?";
}

static bool pool_of(const sp_pool_t *p, const char *dbname)
{
	return !dbname || strcmp(p->dbname, dbname) == 0;
}

/* After a RESUME (or an undone PAUSE): the pools of dbname (NULL: every pool) hand out
 * servers again. */
static void wake_pools(const char *dbname)
{
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		if (pool_of(p, dbname))
			sp_pool_wake(p);
}

/* Close the idle server connections of the pools of dbname (NULL: every pool). */
static void close_idle(const char *dbname, const char *reason)
{
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		sp_server_t *s, *next;
		if (!pool_of(p, dbname))
			continue;
		for (s = p->idle; s; s = next) {
			next = s->next;
			sp_server_close(s, reason);
		}
	}
}

/* PAUSE or RESUME of every database: what the console's commands without a name and
 * the signals share (the console's PAUSE then waits for the running transactions). */
static void pause_every_db(bool pause)
{
	sp_g.paused = pause;
	if (pause) {
		close_idle(NULL, "PAUSE: closed while paused");
	} else {
		sp_pool_resume_all_dbs();
		wake_pools(NULL);
	}
}

void sp_admin_pause_all(bool pause, const char *by)
{
	if (pause)
		sp_info("%s: PAUSE: new transactions wait; server connections are closed as they "
			"are released",
			by);
	else
		sp_info("%s: RESUME", by);
	pause_every_db(pause);
}

/* ------------------------------------------------------------------ commands that wait */

/*
 * PAUSE and WAIT_CLOSE answer when their condition holds. Until then the admin
 * client is parked here with the rest of its query string, and reads nothing
 * more; a client that leaves is forgotten (sp_admin_client_gone). The check runs
 * before the loop sleeps (after any event, among them a server going back to its
 * pool) and on a timer.
 */
typedef struct waiter {
	struct waiter *next;
	sp_client_t *c;
	verb_t verb;               /* C_PAUSE or C_WAIT_CLOSE */
	bool all;                  /* every database */
	char db[NAME_MAX_LEN + 1]; /* else this one */
	char *rest;                /* the statements after this one in the query string (owned) */
	ev_tstamp since;
} waiter_t;

static waiter_t *waiters;
static ev_prepare wait_prepare;
static ev_timer wait_timer;
static bool wait_watching;

static bool run_from(sp_client_t *c, const char *p);
static void check_waiters(void);

static void on_wait_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	check_waiters();
}

static void on_wait_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	check_waiters();
}

static void watch_waiters(bool on)
{
	if (on && !wait_watching) {
		ev_prepare_init(&wait_prepare, on_wait_prepare);
		ev_prepare_start(sp_loop, &wait_prepare);
		ev_timer_init(&wait_timer, on_wait_timer, 0.1, 0.1);
		ev_timer_start(sp_loop, &wait_timer);
		wait_watching = true;
	} else if (!on && wait_watching) {
		ev_prepare_stop(sp_loop, &wait_prepare);
		ev_timer_stop(sp_loop, &wait_timer);
		wait_watching = false;
	}
}

static bool is_waiting(const sp_client_t *c)
{
	for (waiter_t *w = waiters; w; w = w->next)
		if (w->c == c)
			return true;
	return false;
}

/* NULL: the condition holds; else why the wait can end no more (an error for the client). */
static bool wait_over(const waiter_t *w, const char **error)
{
	const char *db = w->all ? NULL : w->db;
	*error = NULL;
	if (w->verb == C_PAUSE) {
		if (w->all ? !sp_g.paused : !(sp_pool_db_paused(db) || sp_g.paused)) {
			*error = "RESUME ended this PAUSE before the server connections were released";
			return true;
		}
		for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
			if (pool_of(p, db) && p->n_active + p->n_other + p->n_connecting > 0)
				return false;
		return true;
	}
	/* WAIT_CLOSE: no server left that was there when it started */
	for (sp_server_t *s = sp_server_first(); s; s = s->all_next)
		if (pool_of(s->pool, db) && s->id <= s->pool->close_upto_id)
			return false;
	return true;
}

static void flush_admin(sp_client_t *c)
{
	if (c->state != SP_CLIENT_CLOSED && !sp_sock_flush(&c->sock))
		sp_client_close(c, "write to client failed");
}

/* The condition of w holds (or never will): answer, run the rest of its query string. */
static void wait_finish(waiter_t *w, const char *error)
{
	sp_client_t *c = w->c;
	char *rest = w->rest;
	bool done = true;
	sp_buf_t *out = &c->sock.out;

	if (error) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_QUERY_CANCELED, error, NULL, NULL);
	} else {
		if (w->verb == C_PAUSE)
			close_idle(w->all ? NULL : w->db, "PAUSE: closed while paused");
		sp_info("admin %s: %s%s%s done after %.1f s", c->user, verb_tag(w->verb), w->all ? "" : " ",
			w->all ? "" : w->db, ev_now(sp_loop) - w->since);
		sp_msg_write_command_complete(out, verb_tag(w->verb));
	}
	free(w);
	if (!error)
		done = run_from(c, rest);
	free(rest);
	if (!done) {
		flush_admin(c);
		return; /* a later command of the string waits in turn */
	}
	if (c->state == SP_CLIENT_ADMIN)
		sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
	flush_admin(c);
	if (c->state == SP_CLIENT_ADMIN) {
		sp_admin_process(c); /* what the client sent meanwhile */
		flush_admin(c);
	}
}

static void check_waiters(void)
{
	bool again = true;
	while (again) {
		again = false;
		for (waiter_t **pp = &waiters; *pp; pp = &(*pp)->next) {
			waiter_t *w = *pp;
			const char *error;
			if (!wait_over(w, &error))
				continue;
			*pp = w->next;
			wait_finish(w, error); /* may add or drop waiters: look again from the start */
			again = true;
			break;
		}
	}
	watch_waiters(waiters != NULL);
}

/* Park c until cmd's condition holds; rest: the statements after it. False when out of memory. */
static bool wait_add(sp_client_t *c, const cmd_t *cmd, const sp_db_conf_t *db, const char *rest)
{
	waiter_t *w = calloc(1, sizeof(*w)), **tail;
	if (!w || !(w->rest = strdup(rest))) {
		free(w);
		return false;
	}
	w->c = c;
	w->verb = cmd->verb;
	w->all = !db;
	if (db)
		snprintf(w->db, sizeof(w->db), "%s", db->name);
	w->since = ev_now(sp_loop);
	for (tail = &waiters; *tail; tail = &(*tail)->next)
		;
	*tail = w; /* in order: two PAUSEs of one client answer in turn */
	watch_waiters(true);
	return true;
}

/* PAUSE waits no more: undo it (the command failed), so transactions run again. */
static void undo_pause(const waiter_t *w)
{
	if (w->all)
		sp_g.paused = false;
	else
		sp_pool_pause_db(w->db, false);
	wake_pools(w->all ? NULL : w->db);
}

bool sp_admin_cancel(sp_client_t *c)
{
	waiter_t *first = NULL;
	for (waiter_t **pp = &waiters; *pp;) {
		waiter_t *w = *pp;
		if (w->c != c) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		if (w->verb == C_PAUSE)
			undo_pause(w);
		sp_info("admin %s: %s%s%s cancelled after %.1f s%s", c->user, verb_tag(w->verb), w->all ? "" : " ",
			w->all ? "" : w->db, ev_now(sp_loop) - w->since,
			w->verb == C_PAUSE ? "; the pause is undone" : "");
		if (first) {
			free(w->rest);
			free(w);
		} else {
			first = w;
		}
	}
	if (!waiters)
		watch_waiters(false);
	if (!first)
		return false;
	wait_finish(first, first->verb == C_PAUSE ? "canceling statement due to user request (the PAUSE is undone)"
						: "canceling statement due to user request");
	return true;
}

void sp_admin_client_gone(sp_client_t *c)
{
	for (waiter_t **pp = &waiters; *pp;) {
		waiter_t *w = *pp;
		if (w->c == c) {
			sp_info("admin %s: left while %s waited", c->user, verb_tag(w->verb));
			*pp = w->next;
			free(w->rest);
			free(w);
		} else {
			pp = &w->next;
		}
	}
	if (!waiters)
		watch_waiters(false);
}

/* ------------------------------------------------------------------ running commands */

typedef enum { RUN_OK, RUN_ERROR, RUN_WAIT } run_t;

/* KILL db: every client of the database gets 57P01 and is closed, then every server. */
static void kill_db(const char *dbname)
{
	char msg[NAME_MAX_LEN + 80];
	sp_client_t *c, *next;
	int n_clients = 0, n_servers = 0;

	snprintf(msg, sizeof(msg), "terminated by KILL %s on the admin console", dbname);
	for (c = sp_client_first(); c; c = next) {
		next = c->next;
		if (c->is_admin || !c->dbname || strcmp(c->dbname, dbname) != 0) {
			continue;
		}
		sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "%s", msg);
		n_clients++;
		if (next && next->state == SP_CLIENT_CLOSED)
			next = sp_client_first(); /* closing c took others with it: start over */
	}
	for (;;) { /* from the start each time: a close may close others */
		sp_server_t *s = sp_server_first();
		while (s && strcmp(s->pool->dbname, dbname) != 0)
			s = s->all_next;
		if (!s)
			break;
		sp_server_close(s, msg);
		n_servers++;
	}
	/* a login it cut short is no failure of the server: RESUME connects without a backoff */
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		if (strcmp(p->dbname, dbname) == 0) {
			p->retry_at = 0;
			p->backoff = 0;
		}
	sp_info("KILL %s: closed %d client(s) and %d server connection(s); the database is paused until RESUME", dbname,
		n_clients, n_servers);
}

/* Run one command: RUN_ERROR if it failed (an ErrorResponse was written; the rest of the
 * string is skipped), RUN_WAIT if it answers later (see waiter_t). */
static run_t run(sp_client_t *c, const cmd_t *cmd, const char *rest)
{
	sp_buf_t *out = &c->sock.out;
	const sp_db_conf_t *db = NULL;

	if (cmd->verb == C_SHOW) {
		if (cmd->show)
			cmd->show(out);
		else
			fake_show(out, cmd->fake);
		return RUN_OK;
	}
	if (cmd->verb == C_SET && cmd->fake >= 0) {
		sp_msg_write_notice(out, "00000", "SET ignored");
		sp_msg_write_command_complete(out, "SET");
		return RUN_OK;
	}
	if (!sp_config_user_in_list(sp_g.cfg->admin_users, c->user)) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_INVALID_AUTH, "only admin_users may run this command", NULL, NULL);
		return RUN_ERROR;
	}
	if (cmd->name[0]) {
		db = named_db(cmd);
		if (!db) {
			char msg[NAME_MAX_LEN + 64];
			snprintf(msg, sizeof(msg), "database \"%s\" is not configured", cmd->name);
			sp_msg_write_error(out, "ERROR", SP_SQLSTATE_UNDEFINED_DATABASE, msg, NULL,
					   "SHOW DATABASES lists the databases; quote a name to match it exactly.");
			return RUN_ERROR;
		}
	}
	switch (cmd->verb) {
	case C_PAUSE:
		if (db) {
			sp_pool_pause_db(db->name, true);
			sp_info("admin %s: PAUSE %s: new transactions of database %s wait; waiting for the running ones",
				c->user, db->name, db->name);
			close_idle(db->name, "PAUSE: closed while paused");
		} else {
			sp_info("admin %s: PAUSE: new transactions wait; waiting for the running ones", c->user);
			pause_every_db(true);
		}
		if (!wait_add(c, cmd, db, rest)) {
			sp_msg_write_error(out, "ERROR", SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL, NULL);
			return RUN_ERROR;
		}
		return RUN_WAIT;
	case C_RECONNECT:
	case C_WAIT_CLOSE: {
		for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
			if (pool_of(p, db ? db->name : NULL))
				sp_pool_reconnect(p, "RECONNECT: closed while idle");
		sp_info("admin %s: %s%s%s: server connections are closed as they are released", c->user,
			verb_tag(cmd->verb), db ? " " : "", db ? db->name : "");
		if (cmd->verb == C_RECONNECT) {
			sp_msg_write_command_complete(out, "RECONNECT");
			return RUN_OK;
		}
		if (!wait_add(c, cmd, db, rest)) {
			sp_msg_write_error(out, "ERROR", SP_SQLSTATE_OUT_OF_MEMORY, "out of memory", NULL, NULL);
			return RUN_ERROR;
		}
		return RUN_WAIT;
	}
	case C_KILL:
		sp_pool_pause_db(db->name, true);
		kill_db(db->name);
		sp_msg_write_command_complete(out, "KILL");
		return RUN_OK;
	case C_DISABLE:
	case C_ENABLE:
		sp_pool_disable_db(db->name, cmd->verb == C_DISABLE);
		sp_info("admin %s: %s %s", c->user, verb_tag(cmd->verb), db->name);
		sp_msg_write_command_complete(out, verb_tag(cmd->verb));
		return RUN_OK;
	case C_SUSPEND:
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				   "SUSPEND is not supported: shardpool hands no sockets over to a new process", NULL,
				   "Use PAUSE to let the servers go, RESUME to go on; for an upgrade without refused "
				   "connections see so_reuseport and SHUTDOWN WAIT_FOR_CLIENTS.");
		return RUN_ERROR;
	case C_SET: {
		char err[600];
		switch (sp_config_set(sp_g.cfg, cmd->key, cmd->value, err, sizeof(err))) {
		case SP_CONFIG_SET_OK:
			sp_daemon_settings_changed();
			sp_info("admin %s: SET %s = %s", c->user, cmd->key, cmd->value);
			sp_msg_write_command_complete(out, "SET");
			return RUN_OK;
		case SP_CONFIG_SET_UNKNOWN:
			sp_msg_write_error(out, "ERROR", "42704", err, NULL, "SHOW CONFIG lists the settings.");
			return RUN_ERROR;
		case SP_CONFIG_SET_FIXED:
			sp_msg_write_error(out, "ERROR", "55P02", err, NULL,
					   "SHOW CONFIG says which settings are changeable.");
			return RUN_ERROR;
		case SP_CONFIG_SET_INVALID:
			sp_msg_write_error(out, "ERROR", "22023", err, NULL, NULL);
			return RUN_ERROR;
		}
		return RUN_ERROR;
	}
	case C_RESUME:
		if (db) {
			sp_pool_pause_db(db->name, false);
			sp_info("admin %s: RESUME %s", c->user, db->name);
			if (sp_g.paused) {
				char msg[NAME_MAX_LEN + 160];
				snprintf(msg, sizeof(msg),
					 "database \"%s\" is resumed, but shardpool is still paused for every database: "
					 "RESUME without a name ends that PAUSE",
					 db->name);
				sp_msg_write_notice(out, "01000", msg);
			}
			wake_pools(db->name);
		} else {
			sp_info("admin %s: RESUME", c->user);
			pause_every_db(false);
		}
		sp_msg_write_command_complete(out, "RESUME");
		return RUN_OK;
	case C_RELOAD: {
		char err[4096];
		if (!sp_daemon_reload(err, sizeof(err))) {
			sp_msg_write_error(out, "ERROR", "F0000", err, NULL, "Fix the file; the old configuration stays in effect.");
			return RUN_ERROR;
		}
		/* on success err lists the changes the reload could not apply */
		if (err[0]) {
			char msg[4200];
			snprintf(msg, sizeof(msg), "RELOAD applied the rest of the file; these changes need a restart and were not applied: %s",
				 err);
			sp_msg_write_notice(out, "01000", msg);
		}
		sp_msg_write_command_complete(out, "RELOAD");
		return RUN_OK;
	}
	case C_SHUTDOWN:
		sp_msg_write_command_complete(out, "SHUTDOWN");
		if (cmd->wait_for_clients) {
			sp_daemon_shutdown_wait_for_clients();
			return RUN_OK;
		}
		/* The shutdown closes this client (57P01) with the other idle ones: let its
		 * command complete first, so `psql -c SHUTDOWN` succeeds (exit status 0). */
		sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
		sp_daemon_shutdown(false);
		return RUN_OK;
	case C_SHOW:
		break;
	}
	return RUN_OK;
}

/* Run the statements from p on (checked already). False if one waits: it answers later,
 * and the caller sends no ReadyForQuery. */
static bool run_from(sp_client_t *c, const char *p)
{
	cmd_t cmd;
	perr_t e;
	parsed_t r;
	while ((r = parse_statement(&p, &cmd, &e)) != P_END) {
		run_t rr;
		if (r == P_ERROR)
			break;
		if (r != P_CMD)
			continue;
		rr = run(c, &cmd, p);
		if (rr == RUN_WAIT)
			return false;
		if (rr == RUN_ERROR || c->state != SP_CLIENT_ADMIN)
			break;
	}
	return true;
}

/*
 * One Query message: check every statement first (a syntax error anywhere runs
 * none), then run them in order, each with its own result, as PostgreSQL does
 * with a multi-statement simple query; an error skips the rest. The caller
 * sends the one ReadyForQuery, unless a command waits (false).
 */
static bool query(sp_client_t *c, const char *sql)
{
	const char *p = sql;
	cmd_t cmd;
	perr_t e;
	parsed_t r;
	int n = 0;

	while ((r = parse_statement(&p, &cmd, &e)) != P_END) {
		if (r == P_ERROR) {
			sp_msg_write_error(&c->sock.out, "ERROR", e.sqlstate, e.msg, NULL, e.hint);
			return true;
		}
		if (r == P_CMD)
			n++;
	}
	if (n == 0) {
		sp_msg_write_empty(&c->sock.out, SP_BE_EMPTY_QUERY);
		return true;
	}
	return run_from(c, sql);
}

void sp_admin_process(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;
	while (c->state == SP_CLIENT_ADMIN && sp_buf_len(in) >= 5 && !is_waiting(c)) {
		const uint8_t *p = sp_buf_head(in);
		uint32_t len = sp_get_be32(p + 1);
		if (len < 4 || len > 1000000) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
			return;
		}
		if (sp_buf_len(in) < (size_t)len + 1)
			return;
		if (p[0] == SP_FE_TERMINATE) {
			sp_client_close(c, "client terminated");
			return;
		}
		if (p[0] == SP_FE_QUERY) {
			char *sql = strndup((const char *)p + 5, len - 4);
			bool done = true;
			sp_buf_consume(in, (size_t)len + 1);
			if (sql) {
				done = query(c, sql);
				free(sql);
			}
			if (done && c->state == SP_CLIENT_ADMIN)
				sp_msg_write_ready_for_query(&c->sock.out, SP_TXN_IDLE);
			continue;
		}
		sp_buf_consume(in, (size_t)len + 1);
		/* As PostgreSQL answers a failed extended batch: the error at its first message
		 * (so a client that sent Parse and Flush gets it without a Sync), the rest
		 * dropped up to the Sync, which gets the ReadyForQuery. */
		if (p[0] == SP_FE_SYNC) {
			c->skip_to_sync = false;
			sp_msg_write_ready_for_query(&c->sock.out, SP_TXN_IDLE);
		} else if (!c->skip_to_sync &&
			   (p[0] == SP_FE_PARSE || p[0] == SP_FE_BIND || p[0] == SP_FE_DESCRIBE ||
			    p[0] == SP_FE_EXECUTE || p[0] == SP_FE_CLOSE ||
			    p[0] == SP_FE_FUNCTION_CALL)) {
			c->skip_to_sync = true;
			sp_msg_write_error(
			    &c->sock.out, "ERROR", SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "the admin console supports only the simple query protocol", NULL,
			    "Use simple queries: psql, psycopg's ClientCursor, JDBC's "
			    "preferQueryMode=simple.");
		}
	}
}

void sp_admin_start(void)
{
	double period = sp_g.cfg->stats_period > 0 ? sp_g.cfg->stats_period : 60;
	ev_timer_init(&stats_timer, stats_tick, period, period);
	ev_timer_start(sp_loop, &stats_timer);
	stats_started = true;
	stats_tick(sp_loop, &stats_timer, 0); /* the first snapshot: averages start one period later */
}

void sp_admin_stop(void)
{
	if (stats_started) {
		ev_timer_stop(sp_loop, &stats_timer);
		stats_started = false;
	}
	watch_waiters(false);
	while (waiters) {
		waiter_t *w = waiters;
		waiters = w->next;
		free(w->rest);
		free(w);
	}
	free(snap_old);
	free(snap_new);
	snap_old = snap_new = NULL;
	snap_old_at = snap_new_at = 0;
	snap_n = 0;
}
