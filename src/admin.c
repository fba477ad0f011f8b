/*
 * admin.c - the admin console. A client that logs in to database
 * "shardpool" (or "pgbouncer", for tools written for it) as one of
 * admin_users / stats_users gets SHOW, PAUSE, RESUME, RELOAD and SHUTDOWN
 * answered by shardpool itself, as ordinary RowDescription/DataRow messages
 * so psql and every driver can read them. stats_users may only SHOW.
 * Only the simple query protocol is supported here, like pgbouncer.
 */
#include "admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "prepared.h"
#include "router.h"
#include "server.h"

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
	sp_msg_write_backend_key_data(out, 0, 0);
	sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
}

typedef struct table {
	sp_buf_t *out;
	int ncols;
	long rows;
} table_t;

static void t_begin(table_t *t, sp_buf_t *out, int ncols, const char *const *names)
{
	t->out = out;
	t->ncols = ncols;
	t->rows = 0;
	sp_msg_write_row_description(out, ncols, names, NULL);
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
	static const char *const cols[] = {"database", "user", "shard", "role", "host", "port", "cl_active",
					   "cl_waiting", "sv_active", "sv_idle", "sv_login", "sv_other",
					   "maxwait_us", "pool_mode", "xacts", "queries", "last_error"};
	table_t t;
	t_begin(&t, out, 17, cols);
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		char v[17][300];
		const char *vals[17];
		int cl_active = 0;
		double maxwait = 0;
		ev_tstamp now = ev_now(sp_loop);
		for (sp_client_t *c = sp_client_first(); c; c = c->next)
			if (c->pool == p && c->state == SP_CLIENT_ACTIVE)
				cl_active++;
		for (sp_client_t *c = p->wait_head; c; c = c->wait_next)
			if (now - c->wait_since > maxwait)
				maxwait = now - c->wait_since;
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
		snprintf(v[12], 64, "%lld", (long long)(maxwait * 1e6));
		{
			const sp_db_conf_t *db = sp_config_find_db(sp_g.cfg, p->dbname);
			snprintf(v[13], 64, "%s", mode_str(db ? (int)sp_config_db_pool_mode(sp_g.cfg, db) : (int)sp_g.cfg->pool_mode));
		}
		snprintf(v[14], 64, "%llu", (unsigned long long)p->total_xacts);
		snprintf(v[15], 64, "%llu", (unsigned long long)p->total_queries);
		snprintf(v[16], 300, "%s", p->last_error);
		for (int i = 0; i < 17; i++)
			vals[i] = v[i];
		t_row(&t, vals);
	}
	t_end(&t, "SHOW");
}

static void show_clients(sp_buf_t *out)
{
	static const char *const cols[] = {"id", "user", "database", "state", "addr", "connect_time_s",
					   "queries", "xacts", "server_id", "close_reason"};
	table_t t;
	ev_tstamp now = ev_now(sp_loop);
	t_begin(&t, out, 10, cols);
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
	table_t t;
	ev_tstamp now = ev_now(sp_loop);
	t_begin(&t, out, 12, cols);
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
	static const char *const cols[] = {"name", "shards", "pool_mode", "pool_size", "shard", "primary", "replicas"};
	table_t t;
	t_begin(&t, out, 7, cols);
	for (int i = 0; i < sp_g.cfg->n_dbs; i++) {
		const sp_db_conf_t *db = &sp_g.cfg->dbs[i];
		for (int k = 0; k < db->n_shards; k++) {
			char v[7][160];
			const char *vals[7];
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
			for (int j = 0; j < 7; j++)
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
	table_t t;
	char v[3][32];
	const char *row[2];
	t_begin(&t, out, 2, cols);
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
	t_begin(&t, out, 9, cols);
	t_row(&t, vals);
	t_end(&t, "SHOW");
}

static void show_health(sp_buf_t *out)
{
	static const char *const cols[] = {"database", "shard", "role", "host", "port", "reachable",
					   "in_recovery", "in_rotation", "fenced", "lag_bytes", "lag_ms",
					   "timeline", "reads", "last_error"};
	table_t t;
	t_begin(&t, out, 14, cols);
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

static void command(sp_client_t *c, const char *sql)
{
	sp_buf_t *out = &c->sock.out;
	char words[3][32] = {{0}};
	int nw = 0;
	const char *p = sql;
	bool admin = sp_config_user_in_list(sp_g.cfg->admin_users, c->user);

	while (*p && nw < 3) {
		size_t n = 0;
		while (*p && (isspace((unsigned char)*p) || *p == ';'))
			p++;
		while (*p && !isspace((unsigned char)*p) && *p != ';') {
			if (n + 1 < sizeof(words[0]))
				words[nw][n++] = (char)toupper((unsigned char)*p);
			p++;
		}
		if (n)
			words[nw++][n] = 0;
	}
	if (nw == 0) {
		sp_msg_write_empty(out, SP_BE_EMPTY_QUERY);
		return;
	}
	if (strcmp(words[0], "SHOW") == 0 && nw >= 2) {
		if (strcmp(words[1], "POOLS") == 0)
			show_pools(out);
		else if (strcmp(words[1], "CLIENTS") == 0)
			show_clients(out);
		else if (strcmp(words[1], "SERVERS") == 0)
			show_servers(out);
		else if (strcmp(words[1], "DATABASES") == 0 || strcmp(words[1], "SHARDS") == 0)
			show_databases(out);
		else if (strcmp(words[1], "CONFIG") == 0)
			show_config(out);
		else if (strcmp(words[1], "MEM") == 0)
			show_mem(out);
		else if (strcmp(words[1], "ROUTE") == 0 || strcmp(words[1], "ROUTES") == 0)
			show_route_cache(out);
		else if (strcmp(words[1], "HEALTH") == 0 || strcmp(words[1], "REPLICAS") == 0)
			show_health(out);
		else if (strcmp(words[1], "VERSION") == 0) {
			static const char *const cols[] = {"version"};
			static const char *const v[] = {"shardpool " PACKAGE_VERSION};
			table_t t;
			t_begin(&t, out, 1, cols);
			t_row(&t, v);
			t_end(&t, "SHOW");
		} else
			sp_msg_write_error(out, "ERROR", SP_SQLSTATE_SYNTAX_ERROR, "unknown SHOW command", NULL,
					   "Try SHOW POOLS, CLIENTS, SERVERS, DATABASES, SHARDS, HEALTH, ROUTE CACHE, CONFIG, MEM or VERSION.");
		return;
	}
	if (!admin) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_INVALID_AUTH, "only admin_users may run this command", NULL, NULL);
		return;
	}
	if (strcmp(words[0], "PAUSE") == 0) {
		sp_g.paused = true;
		sp_msg_write_command_complete(out, "PAUSE");
	} else if (strcmp(words[0], "RESUME") == 0) {
		sp_g.paused = false;
		for (sp_pool_t *pl = sp_pool_first(); pl; pl = pl->next) {
			while (pl->wait_head && pl->idle) {
				sp_server_t *s = pl->idle;
				pl->idle = s->next;
				if (s->next)
					s->next->prev = NULL;
				s->next = s->prev = NULL;
				pl->n_idle--;
				pl->n_other++;
				s->state = SP_SERVER_RESET;
				sp_pool_server_free(pl, s);
			}
			sp_pool_maintain(pl);
		}
		sp_msg_write_command_complete(out, "RESUME");
	} else if (strcmp(words[0], "RELOAD") == 0) {
		char err[1024];
		if (sp_daemon_reload(err, sizeof(err)))
			sp_msg_write_command_complete(out, "RELOAD");
		else
			sp_msg_write_error(out, "ERROR", "F0000", err, NULL, "Fix the file; the old configuration stays in effect.");
	} else if (strcmp(words[0], "SHUTDOWN") == 0) {
		sp_msg_write_command_complete(out, "SHUTDOWN");
		sp_daemon_shutdown(false);
	} else {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_SYNTAX_ERROR, "unknown admin command", NULL,
				   "Commands: SHOW ..., PAUSE, RESUME, RELOAD, SHUTDOWN.");
	}
}

void sp_admin_process(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;
	while (c->state == SP_CLIENT_ADMIN && sp_buf_len(in) >= 5) {
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
			sp_buf_consume(in, (size_t)len + 1);
			if (sql) {
				command(c, sql);
				free(sql);
			}
			if (c->state == SP_CLIENT_ADMIN)
				sp_msg_write_ready_for_query(&c->sock.out, SP_TXN_IDLE);
			continue;
		}
		sp_buf_consume(in, (size_t)len + 1);
		if (p[0] == SP_FE_SYNC) {
			sp_msg_write_error(&c->sock.out, "ERROR", SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					   "the admin console supports only the simple query protocol", NULL, NULL);
			sp_msg_write_ready_for_query(&c->sock.out, SP_TXN_IDLE);
		}
	}
}
