/*
 * admin.c - the admin console. A client that logs in to database
 * "shardpool" (or "pgbouncer", for tools written for it) as one of
 * admin_users / stats_users gets SHOW, PAUSE [db], RESUME [db], RELOAD and
 * SHUTDOWN answered by shardpool itself, as ordinary RowDescription/DataRow messages
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
	static const char *const cols[] = {"name", "shards", "pool_mode", "pool_size", "shard", "primary", "replicas", "paused"};
	table_t t;
	t_begin(&t, out, 8, cols);
	for (int i = 0; i < sp_g.cfg->n_dbs; i++) {
		const sp_db_conf_t *db = &sp_g.cfg->dbs[i];
		for (int k = 0; k < db->n_shards; k++) {
			char v[8][160];
			const char *vals[8];
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
			for (int j = 0; j < 8; j++)
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

/* ------------------------------------------------------------------ the command language */

/*
 * A query string is a list of statements separated by ';', each one command
 * with at most its argument: SHOW subject, PAUSE [db], RESUME [db], RELOAD,
 * SHUTDOWN. Keywords are case-insensitive; a name may be double-quoted ("" for
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

typedef enum { C_SHOW, C_PAUSE, C_RESUME, C_RELOAD, C_SHUTDOWN } verb_t;

#define NAME_MAX_LEN 255

typedef struct cmd {
	verb_t verb;
	show_fn show;               /* C_SHOW */
	char name[NAME_MAX_LEN + 1]; /* C_PAUSE, C_RESUME: the database, "" for all */
	bool quoted;                /* the name was double-quoted: matched exactly */
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

static const struct {
	const char *name;
	show_fn fn;
} show_subjects[] = {
    {"POOLS", show_pools},	      {"CLIENTS", show_clients}, {"SERVERS", show_servers},
    {"DATABASES", show_databases}, {"SHARDS", show_databases}, {"CONFIG", show_config},
    {"MEM", show_mem},		      {"ROUTE", show_route_cache}, {"ROUTES", show_route_cache},
    {"HEALTH", show_health},	      {"REPLICAS", show_health},  {"VERSION", show_version},
};

#define SHOW_HINT "Try SHOW POOLS, CLIENTS, SERVERS, DATABASES, SHARDS, HEALTH, ROUTE CACHE, CONFIG, MEM or VERSION."
#define COMMANDS_HINT "Commands: SHOW ..., PAUSE [db], RESUME [db], RELOAD, SHUTDOWN; separate several with ';'."

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
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
			continue;
		}
		if (p[0] == '/' && p[1] == '*') {
			const char *open = p;
			int depth = 1;
			for (p += 2; *p && depth > 0;) {
				if (p[0] == '/' && p[1] == '*') {
					depth++;
					p += 2;
				} else if (p[0] == '*' && p[1] == '/') {
					depth--;
					p += 2;
				} else {
					p++;
				}
			}
			if (depth > 0)
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

/* Parse the statement at *pp, up to and including its ';'. */
static parsed_t parse_statement(const char **pp, cmd_t *cmd, perr_t *e)
{
	tok_t t;
	const char *hint;
	char word[NAME_MAX_LEN + 1];

	memset(cmd, 0, sizeof(*cmd));
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
		if (!cmd->show) {
			char near[80];
			tok_quote(&t, near, sizeof(near));
			e->sqlstate = SP_SQLSTATE_SYNTAX_ERROR;
			snprintf(e->msg, sizeof(e->msg), "unknown SHOW command \"%s\"", near);
			e->hint = SHOW_HINT;
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
	} else if (keyword_is(&t, "PAUSE") || keyword_is(&t, "RESUME")) {
		const char *save;
		cmd->verb = keyword_is(&t, "PAUSE") ? C_PAUSE : C_RESUME;
		hint = cmd->verb == C_PAUSE ? "PAUSE takes at most a database name; separate several commands with ';'."
					    : "RESUME takes at most a database name; separate several commands with ';'.";
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
		} else {
			*pp = save;
		}
	} else if (keyword_is(&t, "RELOAD")) {
		cmd->verb = C_RELOAD;
		hint = "RELOAD takes no arguments; separate several commands with ';'.";
	} else if (keyword_is(&t, "SHUTDOWN")) {
		cmd->verb = C_SHUTDOWN;
		hint = "SHUTDOWN takes no arguments; separate several commands with ';'.";
	} else {
		char near[80];
		tok_quote(&t, near, sizeof(near));
		e->sqlstate = SP_SQLSTATE_SYNTAX_ERROR;
		snprintf(e->msg, sizeof(e->msg), "unknown admin command \"%s\"", near);
		e->hint = COMMANDS_HINT;
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

/* The database a PAUSE or RESUME names: a quoted name exactly, a plain one as written or folded to lower case. */
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

/* Run one command; false if it failed (an ErrorResponse was written): the rest of the string is skipped. */
static bool run(sp_client_t *c, const cmd_t *cmd)
{
	sp_buf_t *out = &c->sock.out;
	const sp_db_conf_t *db = NULL;

	if (cmd->verb == C_SHOW) {
		cmd->show(out);
		return true;
	}
	if (!sp_config_user_in_list(sp_g.cfg->admin_users, c->user)) {
		sp_msg_write_error(out, "ERROR", SP_SQLSTATE_INVALID_AUTH, "only admin_users may run this command", NULL, NULL);
		return false;
	}
	if ((cmd->verb == C_PAUSE || cmd->verb == C_RESUME) && cmd->name[0]) {
		db = named_db(cmd);
		if (!db) {
			char msg[NAME_MAX_LEN + 64];
			snprintf(msg, sizeof(msg), "database \"%s\" is not configured", cmd->name);
			sp_msg_write_error(out, "ERROR", SP_SQLSTATE_UNDEFINED_DATABASE, msg, NULL,
					   "SHOW DATABASES lists the databases; quote a name to match it exactly.");
			return false;
		}
	}
	switch (cmd->verb) {
	case C_PAUSE:
		if (db) {
			sp_pool_pause_db(db->name, true);
			sp_info("admin %s: PAUSE %s: new transactions of database %s wait", c->user, db->name, db->name);
		} else {
			sp_g.paused = true;
			sp_info("admin %s: PAUSE: new transactions wait", c->user);
		}
		sp_msg_write_command_complete(out, "PAUSE");
		return true;
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
		} else {
			sp_g.paused = false;
			sp_pool_resume_all_dbs();
			sp_info("admin %s: RESUME", c->user);
		}
		for (sp_pool_t *pl = sp_pool_first(); pl; pl = pl->next)
			if (!db || strcmp(pl->dbname, db->name) == 0)
				sp_pool_wake(pl);
		sp_msg_write_command_complete(out, "RESUME");
		return true;
	case C_RELOAD: {
		char err[4096];
		if (!sp_daemon_reload(err, sizeof(err))) {
			sp_msg_write_error(out, "ERROR", "F0000", err, NULL, "Fix the file; the old configuration stays in effect.");
			return false;
		}
		/* on success err lists the changes the reload could not apply */
		if (err[0]) {
			char msg[4200];
			snprintf(msg, sizeof(msg), "RELOAD applied the reloadable keys; these changes need a restart and were not applied: %s",
				 err);
			sp_msg_write_notice(out, "01000", msg);
		}
		sp_msg_write_command_complete(out, "RELOAD");
		return true;
	}
	case C_SHUTDOWN:
		sp_msg_write_command_complete(out, "SHUTDOWN");
		sp_daemon_shutdown(false);
		return true;
	case C_SHOW:
		break;
	}
	return true;
}

/*
 * One Query message: check every statement first (a syntax error anywhere runs
 * none), then run them in order, each with its own result, as PostgreSQL does
 * with a multi-statement simple query; an error skips the rest. The caller
 * sends the one ReadyForQuery.
 */
static void query(sp_client_t *c, const char *sql)
{
	const char *p = sql;
	cmd_t cmd;
	perr_t e;
	parsed_t r;
	int n = 0;

	while ((r = parse_statement(&p, &cmd, &e)) != P_END) {
		if (r == P_ERROR) {
			sp_msg_write_error(&c->sock.out, "ERROR", e.sqlstate, e.msg, NULL, e.hint);
			return;
		}
		if (r == P_CMD)
			n++;
	}
	if (n == 0) {
		sp_msg_write_empty(&c->sock.out, SP_BE_EMPTY_QUERY);
		return;
	}
	p = sql;
	while ((r = parse_statement(&p, &cmd, &e)) != P_END) {
		if (r != P_CMD)
			continue;
		if (!run(c, &cmd) || c->state != SP_CLIENT_ADMIN)
			break;
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
				query(c, sql);
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
