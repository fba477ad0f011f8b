/*
 * server.c - shardpool's connections to PostgreSQL: connect, log in (with
 * auth.c), and carry the server's responses back to the linked client.
 *
 * Every message sent to a server that the server will answer is recorded in
 * a per-connection FIFO of sp_req_t, so each response can be matched to its
 * request: responses to shardpool's own requests (parameter sync, Parse of a
 * client's statement on a new connection, cache evictions, reset queries)
 * are swallowed; answers to client messages that shardpool handled itself
 * (Parse of an already prepared statement, Close of a statement) are
 * synthesised in order when the queue reaches them. An ErrorResponse in the
 * extended protocol drops the queue up to the next Sync, as PostgreSQL skips
 * those messages. A connection goes back to its pool only when the queue is
 * empty, no COPY runs and the last ReadyForQuery said 'I'.
 */
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "client.h"
#include "daemon.h"
#include "fanout.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"

static sp_server_t *all_servers;
static int n_servers;
static sp_server_t *graveyard;
static ev_check reaper;
static bool reaper_started;

const char *sp_server_state_str(sp_server_state_t st)
{
	static const char *const names[] = {"connecting", "login", "idle", "active", "reset", "closed"};
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

sp_server_t *sp_server_first(void)
{
	return all_servers;
}

int sp_server_count(void)
{
	return n_servers;
}

void sp_server_prefix(const sp_server_t *s, char *buf, size_t len)
{
	const sp_pool_t *p = s->pool;
	snprintf(buf, len, "S-%llu %s@%s/%d/%s%s %s:%d", (unsigned long long)s->id, p->user, p->dbname, p->shard,
		 p->role == SP_ROLE_PRIMARY ? "primary" : "replica", "", p->node->host, p->node->port);
}

static void slog(const sp_server_t *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void slog(const sp_server_t *s, int level, const char *fmt, ...)
{
	char prefix[256];
	va_list ap;
	if (level > sp_log_level)
		return;
	sp_server_prefix(s, prefix, sizeof(prefix));
	va_start(ap, fmt);
	sp_log_vwrite(level, prefix, fmt, ap);
	va_end(ap);
}

static void set_state(sp_server_t *s, sp_server_state_t st)
{
	static const unsigned legal[] = {
		[SP_SERVER_CONNECTING] = 1u << SP_SERVER_LOGIN | 1u << SP_SERVER_CLOSED,
		[SP_SERVER_LOGIN] = 1u << SP_SERVER_IDLE | 1u << SP_SERVER_ACTIVE | 1u << SP_SERVER_CLOSED,
		[SP_SERVER_IDLE] = 1u << SP_SERVER_ACTIVE | 1u << SP_SERVER_CLOSED,
		[SP_SERVER_ACTIVE] = 1u << SP_SERVER_IDLE | 1u << SP_SERVER_RESET | 1u << SP_SERVER_CLOSED,
		[SP_SERVER_RESET] = 1u << SP_SERVER_IDLE | 1u << SP_SERVER_ACTIVE | 1u << SP_SERVER_CLOSED,
		[SP_SERVER_CLOSED] = 0,
	};
	if (!(legal[s->state] & (1u << st)))
		slog(s, SP_LOG_ERROR, "illegal state change %s -> %s", sp_server_state_str(s->state),
		     sp_server_state_str(st));
	s->state = st;
}

static void reap(struct ev_loop *loop, ev_check *w, int revents)
{
	while (graveyard) {
		sp_server_t *s = graveyard;
		graveyard = s->all_next;
		free(s);
	}
	ev_check_stop(sp_loop, &reaper);
	reaper_started = false;
}

static inline sp_req_t *req_head(sp_server_t *s)
{
	return s->req_n ? &s->reqs[s->req_head] : NULL;
}

static void req_pop(sp_server_t *s)
{
	sp_req_t *r = &s->reqs[s->req_head];
	if (r->kind == SP_REQ_QUERY) {
		s->n_query_reqs--;
		if (r->may_copy)
			s->n_copy_query_reqs--;
	}
	else if (r->kind == SP_REQ_EXECUTE)
		s->n_exec_reqs--;
	if (r->ps)
		sp_pstmt_unref(r->ps);
	r->ps = NULL;
	free(r->text);
	r->text = NULL;
	s->req_head = (s->req_head + 1) & (s->req_cap - 1);
	s->req_n--;
}

/* p..n is always one whole message when the server serves a fan-out. */
static void write_client(sp_server_t *s, const uint8_t *p, size_t n)
{
	if (s->fan)
		sp_fanout_feed(s->fan, s, p, n);
	else if (s->client)
		sp_buf_append(&s->client->sock.out, p, n);
}

static bool is_synth(unsigned kind)
{
	return kind == SP_REQ_SYNTH_PARSE || kind == SP_REQ_SYNTH_CLOSE || kind == SP_REQ_SYNTH_ERROR ||
	       kind == SP_REQ_SYNTH_COMMAND;
}

static void write_synth(sp_server_t *s, unsigned kind, const char *text)
{
	sp_buf_t *out, own = {0};
	bool split = s->fan && sp_fanout_is_split(s->fan);
	if (!s->client || (s->fan && !split && !sp_fanout_is_leader(s->fan, s)))
		return;
	if (split && (kind == SP_REQ_SYNTH_PARSE || kind == SP_REQ_SYNTH_CLOSE)) {
		/* five bytes, straight to the fan-out, which puts the answers in order */
		uint8_t m[5] = {kind == SP_REQ_SYNTH_PARSE ? SP_BE_PARSE_COMPLETE : SP_BE_CLOSE_COMPLETE, 0, 0, 0, 4};
		sp_fanout_feed(s->fan, s, m, sizeof(m));
		return;
	}
	/* a split batch puts every answer in the client's order: through the fan-out */
	out = split ? &own : &s->client->sock.out;
	switch (kind) {
	case SP_REQ_SYNTH_PARSE:
		sp_msg_write_empty(out, SP_BE_PARSE_COMPLETE);
		break;
	case SP_REQ_SYNTH_CLOSE:
		sp_msg_write_empty(out, SP_BE_CLOSE_COMPLETE);
		break;
	case SP_REQ_SYNTH_ERROR: {
		char code[6];
		snprintf(code, sizeof(code), "%.5s", text ? text : "XX000");
		sp_msg_write_error(out, "ERROR", code, text && strlen(text) > 6 ? text + 6 : "error", NULL, NULL);
		break;
	}
	case SP_REQ_SYNTH_COMMAND:
		sp_msg_write_command_complete(out, text ? text : "");
		sp_msg_write_ready_for_query(out, s->txn);
		break;
	}
	if (split) {
		while (sp_buf_len(&own) >= 5) {
			size_t total = (size_t)sp_get_be32(sp_buf_head(&own) + 1) + 1;
			sp_fanout_feed(s->fan, s, sp_buf_head(&own), total);
			sp_buf_consume(&own, total);
		}
		sp_buf_free(&own);
	}
}

/* Is this ErrorResponse PostgreSQL's 08P01 "bind message has N result formats but query
 * has M columns"? (Only the English text says so; another lc_messages passes it on.) */
/*
 * The server refused a Bind's result formats because the statement, prepared afresh
 * here, has another number of columns than when the client described it (DDL in
 * between)? Not when the count the server reports is the one the client was told:
 * then the client sent a wrong Bind, and hears PostgreSQL's 08P01 as it is.
 */
static bool changed_shape(const char *code, const uint8_t *body, size_t len, const sp_pstmt_t *ps)
{
	const char *m = sp_msg_error_field(body, len, 'M');
	int formats, cols;
	if (!code || !m || strcmp(code, "08P01") != 0 || !strstr(m, "result formats but query has"))
		return false;
	if (!ps || ps->ncols < 0 || sscanf(m, "bind message has %d result formats but query has %d", &formats, &cols) != 2)
		return false;
	return cols != ps->ncols;
}

/*
 * PostgreSQL's error for a prepared statement whose result type changed, with the
 * fields it sends: drivers tell it from other 0A000 errors by its routine, not its
 * localised text (asyncpg turns RevalidateCachedQuery into InvalidCachedStatementError
 * and prepares the statement again; without it the application gets the error).
 */
static void write_stale_error(sp_buf_t *b)
{
	size_t at = sp_msg_begin(b, SP_BE_ERROR);
	static const char *const fields[][2] = {
	    {"S", "ERROR"},
	    {"V", "ERROR"},
	    {"C", "0A000"},
	    {"M", "cached plan must not change result type"},
	    {"H", "The statement's tables changed since it was prepared; prepare it again."},
	    {"F", "plancache.c"},
	    {"R", "RevalidateCachedQuery"},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		pq_sendbyte(b, (uint8_t)fields[i][0][0]);
		pq_sendstring(b, fields[i][1]);
	}
	pq_sendbyte(b, 0);
	sp_msg_end(b, at);
}

/*
 * A Describe of ps answered with ncols result columns. Another count than before means
 * DDL changed its result type on a copy prepared afresh: the clients that were told
 * the old shape must get 0A000 rather than rows they cannot decode (see
 * sp_pstmt_reshaped).
 */
static void note_ncols(sp_server_t *s, sp_pstmt_t *ps, int32_t ncols)
{
	if (ps->ncols >= 0 && ps->ncols != ncols)
		sp_pstmt_reshaped(ps, &s->pstmts, s->client ? &s->client->pstmts : NULL);
	ps->ncols = ncols;
}

/* Answer synthesised requests that have reached the front of the queue. */
static void emit_synth(sp_server_t *s)
{
	sp_req_t *r;
	while ((r = req_head(s)) && is_synth(r->kind)) {
		write_synth(s, r->kind, r->text);
		req_pop(s);
	}
}

static void add_stale(sp_server_t *s, sp_pstmt_t *ps)
{
	for (int i = 0; i < s->n_stale; i++)
		if (s->stale[i] == ps)
			return;
	if (s->n_stale == (int)(sizeof(s->stale) / sizeof(s->stale[0]))) {
		s->dirty_close = true; /* too much to clean up: drop the connection at release */
		return;
	}
	sp_pstmt_ref(ps);
	s->stale[s->n_stale++] = ps;
}

void sp_server_close_stale(sp_server_t *s, sp_pstmt_t *ps)
{
	for (int i = 0; i < s->n_stale; i++)
		if (s->stale[i] == ps) {
			s->stale[i] = s->stale[--s->n_stale];
			sp_msg_write_close(&s->sock.out, 'S', ps->name);
			sp_server_push_req(s, SP_REQ_INT_CLOSE, ps, SP_INTQ_NONE);
			sp_pstmt_unref(ps);
			return;
		}
}

bool sp_server_push_req_text(sp_server_t *s, sp_req_kind_t kind, sp_pstmt_t *ps, const char *text)
{
	unsigned before = s->req_n;
	if (is_synth(kind) && s->req_n == 0 && !s->error_in_batch) {
		write_synth(s, kind, text); /* nothing before it: answer now */
		return true;
	}
	if (!sp_server_push_req(s, kind, ps, SP_INTQ_NONE))
		return false;
	if (s->req_n > before) {
		sp_req_t *r = &s->reqs[(s->req_head + s->req_n - 1) & (s->req_cap - 1)];
		r->text = text ? strdup(text) : NULL;
	}
	return true;
}

bool sp_server_push_req(sp_server_t *s, sp_req_kind_t kind, sp_pstmt_t *ps, sp_intq_t intq)
{
	sp_req_t *r;
	if (s->error_in_batch && kind != SP_REQ_SYNC && kind != SP_REQ_INT_QUERY)
		return true; /* the server skips everything up to Sync after an error, a Query too */
	if (kind == SP_REQ_SYNC)
		s->error_in_batch = false;
	if ((kind == SP_REQ_SYNTH_PARSE || kind == SP_REQ_SYNTH_CLOSE) && s->req_n == 0) {
		write_synth(s, kind, NULL);
		return true;
	}
	if (s->req_n == s->req_cap) {
		unsigned ncap = s->req_cap ? s->req_cap * 2 : 32; /* a power of two: indexes are masked */
		sp_req_t *n = malloc(sizeof(*n) * ncap);
		if (!n)
			return false;
		for (unsigned i = 0; i < s->req_n; i++)
			n[i] = s->reqs[(s->req_head + i) & (s->req_cap - 1)];
		free(s->reqs);
		s->reqs = n;
		s->req_head = 0;
		s->req_cap = ncap;
	}
	r = &s->reqs[(s->req_head + s->req_n) & (s->req_cap - 1)];
	r->kind = (uint8_t)kind;
	r->intq = (uint8_t)intq;
	r->copy_ends = s->copy_ends;
	r->copy_datas = s->copy_datas;
	r->may_copy = kind == SP_REQ_QUERY;
	if (kind == SP_REQ_QUERY) {
		s->n_query_reqs++;
		s->n_copy_query_reqs++;
	} else if (kind == SP_REQ_EXECUTE) {
		s->n_exec_reqs++;
		s->exec_copy_ends = s->copy_ends;
		s->exec_copy_datas = s->copy_datas;
	}
	r->ps = ps;
	r->text = NULL;
	if (ps)
		sp_pstmt_ref(ps);
	s->req_n++;
	return true;
}

void sp_server_send(sp_server_t *s)
{
	if (s->state == SP_SERVER_CLOSED)
		return;
	if (!sp_sock_flush(&s->sock)) {
		char why[160];
		snprintf(why, sizeof(why), "write to server failed: %s", strerror(s->sock.err));
		sp_server_close(s, why);
	}
}

static void unlink_from_pool(sp_server_t *s)
{
	sp_pool_t *p = s->pool;
	switch (s->state) {
	case SP_SERVER_IDLE:
		if (s->prev)
			s->prev->next = s->next;
		else
			p->idle = s->next;
		if (s->next)
			s->next->prev = s->prev;
		s->prev = s->next = NULL;
		p->n_idle--;
		break;
	case SP_SERVER_CONNECTING:
	case SP_SERVER_LOGIN:
		p->n_connecting--;
		break;
	case SP_SERVER_ACTIVE:
		p->n_active--;
		break;
	case SP_SERVER_RESET:
		p->n_other--;
		break;
	default:
		break;
	}
}

void sp_server_close_node(const char *host, int port, const char *reason)
{
	int n = 0;
	for (;;) { /* from the start each time: a close may close or open others */
		sp_server_t *s = all_servers;
		while (s && !(s->pool->node->port == port && strcmp(s->pool->node->host, host) == 0))
			s = s->all_next;
		if (!s)
			break;
		sp_server_close(s, reason);
		n++;
	}
	if (n)
		sp_warn("closed %d server connection(s) to %s:%d: %s", n, host, port, reason);
}

void sp_server_close(sp_server_t *s, const char *reason)
{
	sp_client_t *c;
	bool was_login;
	if (s->state == SP_SERVER_CLOSED)
		return;
	snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
	slog(s, SP_LOG_DEBUG, "closing: %s", reason);
	was_login = s->state == SP_SERVER_CONNECTING || s->state == SP_SERVER_LOGIN;
	unlink_from_pool(s);
	s->state = SP_SERVER_CLOSED;
	c = s->client;
	s->client = NULL;
	if (s->fan) {
		/* a shard of a fan-out: the statement fails, the client's session goes on */
		sp_fanout_t *f = s->fan;
		s->fan = NULL;
		if (c && !was_login && sp_fanout_server_lost(f, s->fan_idx, reason))
			c = NULL;
		else
			sp_fanout_forget(f, s->fan_idx);
	}
	if (s->sock.fd >= 0 || s->sock.resolving) {
		if (!was_login) {
			sp_msg_write_terminate(&s->sock.out);
			sp_sock_flush(&s->sock);
		}
		sp_sock_close(&s->sock);
	}
	while (s->req_n)
		req_pop(s);
	free(s->reqs);
	s->reqs = NULL;
	sp_params_clear(&s->params);
	sp_pstmt_cache_clear(&s->pstmts);
	for (int i = 0; i < s->n_stale; i++)
		sp_pstmt_unref(s->stale[i]);
	s->n_stale = 0;
	if (s->scram_active)
		sp_scram_client_free(&s->scram);
	free(s->password);
	s->password = NULL;
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else
		all_servers = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	n_servers--;
	s->all_next = graveyard;
	graveyard = s;
	if (!reaper_started) {
		ev_check_init(&reaper, reap);
		ev_check_start(sp_loop, &reaper);
		reaper_started = true;
	}
	if (c) {
		char msg[300];
		c->server = NULL;
		snprintf(msg, sizeof(msg), "server connection lost: %s", reason);
		sp_client_fatal(c, SP_SQLSTATE_CONNECTION_FAILURE, "%s", msg);
	}
	if (was_login) {
		char msg[300];
		snprintf(msg, sizeof(msg), "%s", reason);
		sp_pool_login_failed(s->pool, msg);
	} else {
		sp_pool_maintain(s->pool);
	}
}

/* ---------------- login ---------------- */

static void send_startup(sp_server_t *s)
{
	const sp_node_conf_t *n = s->pool->node;
	const char *kv[16];
	int i = 0;
	kv[i++] = "user";
	kv[i++] = n->user ? n->user : s->pool->user;
	kv[i++] = "database";
	kv[i++] = n->dbname ? n->dbname : s->pool->dbname;
	if (n->application_name) {
		kv[i++] = "application_name";
		kv[i++] = n->application_name;
	}
	if (n->options) {
		kv[i++] = "options";
		kv[i++] = n->options;
	}
	kv[i++] = NULL;
	kv[i] = NULL;
	sp_msg_write_startup(&s->sock.out, kv);
}

static void login_message(sp_server_t *s, char type, const uint8_t *body, size_t len)
{
	char err[300];
	switch (type) {
	case SP_BE_AUTH:
		if (!sp_auth_server_request(s, body, len, err, sizeof(err))) {
			sp_server_close(s, err);
			return;
		}
		sp_server_send(s);
		return;
	case SP_BE_PARAMETER_STATUS: {
		sp_msg_reader_t r;
		const char *name, *value;
		sp_msg_reader_init(&r, body, len);
		if (pq_getmsgstring(&r, &name, NULL) && pq_getmsgstring(&r, &value, NULL))
			sp_params_set(&s->params, name, value);
		return;
	}
	case SP_BE_BACKEND_KEY_DATA:
		if (len >= 8) {
			s->be_pid = (int32_t)sp_get_be32(body);
			s->be_key = (int32_t)sp_get_be32(body + 4);
		}
		return;
	case SP_BE_ERROR: {
		const char *m = sp_msg_error_field(body, len, 'M');
		const char *code = sp_msg_error_field(body, len, 'C');
		snprintf(err, sizeof(err), "server refused login: %s%s%s%s", m ? m : "unknown error",
			 code ? " (SQLSTATE " : "", code ? code : "", code ? ")" : "");
		sp_server_close(s, err);
		return;
	}
	case SP_BE_NOTICE:
	case SP_BE_NEGOTIATE_VERSION:
		return;
	case SP_BE_READY_FOR_QUERY:
		s->txn = len ? (char)body[0] : 'I';
		if (s->scram_active) {
			sp_scram_client_free(&s->scram);
			s->scram_active = false;
		}
		slog(s, SP_LOG_DEBUG, "login done");
		if (s->pool->node)
			sp_health_server_up(s->pool->node->host, s->pool->node->port);
		s->pool->backoff = 0;
		s->pool->n_connecting--;
		s->pool->n_other++;
		s->state = SP_SERVER_RESET; /* transient: sp_pool_server_free parks or hands it */
		sp_pool_server_free(s->pool, s);
		return;
	default:
		snprintf(err, sizeof(err), "unexpected message type '%c' during login", type);
		sp_server_close(s, err);
		return;
	}
}

/* ---------------- responses ---------------- */

static void finish_syncback_row(sp_server_t *s, const uint8_t *body, size_t len)
{
	/* DataRow of (name, setting) from the settings read-back query. */
	sp_msg_reader_t r;
	int16_t n;
	int32_t l1, l2;
	const uint8_t *v1, *v2;
	char name[128], value[1024];
	sp_msg_reader_init(&r, body, len);
	if (!pq_getmsgint16(&r, &n) || n != 2 || !pq_getmsgint32(&r, &l1) || l1 < 0 || l1 >= (int32_t)sizeof(name) ||
	    !pq_getmsgbytes(&r, (size_t)l1, &v1) || !pq_getmsgint32(&r, &l2) || l2 < 0 ||
	    l2 >= (int32_t)sizeof(value) || !pq_getmsgbytes(&r, (size_t)l2, &v2))
		return;
	memcpy(name, v1, (size_t)l1);
	name[l1] = 0;
	memcpy(value, v2, (size_t)l2);
	value[l2] = 0;
	if (sp_params_is_reported(name) || sp_params_is_readonly(name))
		return;
	sp_params_set(&s->params, name, value);
	if (s->client)
		sp_params_set(&s->client->params, name, value);
}

static void lsn_row(sp_server_t *s, const uint8_t *body, size_t len)
{
	sp_msg_reader_t r;
	int16_t n;
	int32_t l;
	const uint8_t *v;
	char text[64];
	uint64_t lsn;
	sp_client_t *c = s->client;
	sp_msg_reader_init(&r, body, len);
	if (!c || !c->written_lsn || !pq_getmsgint16(&r, &n) || n != 1 || !pq_getmsgint32(&r, &l) || l <= 0 ||
	    l >= (int32_t)sizeof(text) || !pq_getmsgbytes(&r, (size_t)l, &v))
		return;
	memcpy(text, v, (size_t)l);
	text[l] = 0;
	if (sp_lsn_parse(text, &lsn) && s->pool->shard < c->db->n_shards && lsn > c->written_lsn[s->pool->shard]) {
		c->written_lsn[s->pool->shard] = lsn;
		/* learn soon that the replicas replayed it, so this client's reads go back to
		 * them within milliseconds, not a health period (rate-limited per server) */
		if (c->db->read_replicas && c->db->shards[s->pool->shard].n_replicas > 0)
			sp_health_probe_now(c->db, s->pool->shard);
	}
	slog(s, SP_LOG_DEBUG, "client wrote up to %s on shard %d", text, s->pool->shard);
}

void sp_server_query_cannot_copy(sp_server_t *s)
{
	sp_req_t *r = s->req_n ? &s->reqs[(s->req_head + s->req_n - 1) & (s->req_cap - 1)] : NULL;
	if (r && r->kind == SP_REQ_QUERY && r->may_copy) {
		r->may_copy = false;
		s->n_copy_query_reqs--;
	}
}

/*
 * Where this client's write ended in the WAL: its next reads wait for it. The insert
 * position, not the write position: with synchronous_commit = off the commit record
 * may not have been written out yet. Queued after whatever the server runs now (the
 * client's own autocommit write, when client.c pipelines it; see lsn_pipelinable).
 */
void sp_server_queue_lsn_query(sp_server_t *s)
{
	sp_msg_write_query(&s->sock.out, "SELECT pg_catalog.pg_current_wal_insert_lsn()");
	sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_LSN);
}

static void start_syncback(sp_server_t *s)
{
	/* Settings the server does not report: read back what this session changed.
	 * Both sides first forget their unreported settings; the rows bring back
	 * the ones still in effect (after a ROLLBACK or RESET they are gone). */
	for (int i = s->params.n - 1; i >= 0; i--)
		if (!sp_params_is_reported(s->params.items[i].name))
			sp_params_remove(&s->params, s->params.items[i].name);
	if (s->client)
		for (int i = s->client->params.n - 1; i >= 0; i--)
			if (!sp_params_is_reported(s->client->params.items[i].name) &&
			    !sp_params_get(&s->client->startup, s->client->params.items[i].name))
				sp_params_remove(&s->client->params, s->client->params.items[i].name);
	{
		/* pg_settings does not list placeholders (custom "app.x" settings): the
		 * ones the client SET are read back by name. */
		sp_buf_t q = {0};
		static const char base[] = "SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings "
					   "WHERE source IN ('session', 'client')";
		sp_buf_append(&q, base, sizeof(base) - 1);
		if (s->client && s->client->custom_names.n > 0) {
			sp_buf_append(&q, " UNION ALL SELECT n, v FROM (SELECT n, pg_catalog.current_setting(n, true) AS v FROM pg_catalog.unnest(ARRAY[", 109);
			for (int i = 0; i < s->client->custom_names.n; i++) {
				if (i)
					sp_buf_append(&q, ",", 1);
				sp_sql_append_literal(&q, s->client->custom_names.items[i].name);
			}
			sp_buf_append(&q, "]::text[]) AS n) AS c WHERE v IS NOT NULL AND v <> ''", 53);
		}
		sp_buf_append(&q, "", 1);
		sp_msg_write_query(&s->sock.out, (const char *)q.data);
		sp_buf_free(&q);
	}
	sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_SYNCBACK);
	sp_server_send(s);
}

/* After RESET or DISCARD ALL, startup-packet values apply again (PostgreSQL's RESET semantics). */
static void restore_startup(sp_server_t *s, sp_client_t *c)
{
	sp_buf_t q = {0};
	int n = 0;
	bool all = sp_params_get(&c->reset_names, "*") != NULL;
	for (int i = 0; i < c->startup.n; i++) {
		const sp_param_t *p = &c->startup.items[i];
		if (sp_params_is_readonly(p->name) || (!all && !sp_params_get(&c->reset_names, p->name)))
			continue;
		sp_params_append_set(&q, p->name, p->value, n++ == 0);
	}
	if (n) {
		sp_buf_append(&q, "", 1);
		sp_msg_write_query(&s->sock.out, (const char *)q.data);
		sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_PARAMS);
		/* Reported ones arrive as ParameterStatus, which tells the client too. */
		for (int i = 0; i < c->startup.n; i++)
			if ((all || sp_params_get(&c->reset_names, c->startup.items[i].name)) &&
			    !sp_params_is_reported(c->startup.items[i].name))
				sp_params_set(&c->params, c->startup.items[i].name, c->startup.items[i].value);
	}
	sp_buf_free(&q);
	sp_params_clear(&c->reset_names);
}

/* The transaction is over and nothing is outstanding: let the client go. */
static void transaction_done(sp_server_t *s)
{
	sp_client_t *c = s->client;
	if (!c) {
		/* Reset finished without a client. */
		if (s->txn == SP_TXN_IDLE && !s->dirty_close) {
			sp_pool_server_free(s->pool, s);
		} else {
			sp_server_close(s, "unclean state after reset");
		}
		return;
	}
	if (c->login_check) {
		/* the server took the startup values of a login: the client may come in */
		s->finishing = false;
		s->client = NULL;
		sp_server_release(s);
		sp_client_login_checked(c);
		return;
	}
	if (c->fwd_remaining > 0 && !s->fan)
		/* the client is midway through a message it streams to this server (a large
		 * CopyData): nothing of ours may come between its bytes, and the server is not
		 * free until the message is whole; the next answer brings us back here */
		return;
	if (s->fan) {
		sp_fanout_t *f = s->fan;
		int idx = s->fan_idx;
		if (s->txn != SP_TXN_IDLE && sp_fanout_txn_open(f, s))
			return; /* COMMIT or ROLLBACK comes when every shard got this far */
		if (s->txn != SP_TXN_IDLE)
			s->dirty_close = true;
		if (sp_fanout_is_write(f) && !s->lsn_taken && s->txn == SP_TXN_IDLE && sp_g.cfg->read_your_writes &&
		    c->written_lsn) {
			s->lsn_taken = true;
			sp_server_queue_lsn_query(s);
			sp_server_send(s);
			return;
		}
		s->lsn_taken = false;
		s->fan = NULL;
		s->client = NULL;
		sp_server_release(s);
		sp_fanout_server_done(f, idx);
		return;
	}
	if (c->pool_mode == SP_POOL_SESSION) {
		/* a routed client's next statements, pipelined, waited for this one */
		if (c->routed && sp_buf_len(&c->sock.in) > 0)
			sp_client_process(c);
		return;
	}
	if (s->txn != SP_TXN_IDLE) {
		if (c->routed && sp_buf_len(&c->sock.in) > 0 && c->pool_mode != SP_POOL_STATEMENT) {
			/* Statements held back until this one finished may go now. */
			sp_client_process(c);
			return;
		}
		if (c->pool_mode == SP_POOL_STATEMENT) {
			s->dirty_close = true;
			sp_client_fatal(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					"transaction blocks are not allowed in statement pooling mode; use pool_mode = transaction");
		}
		return;
	}
	if (s->need_syncback) {
		s->need_syncback = false;
		s->finishing = true;
		if (c->reset_seen) {
			c->reset_seen = false;
			restore_startup(s, c);
		}
		start_syncback(s);
		return;
	}
	if (c->txn_wrote) {
		c->txn_wrote = false;
		if (sp_g.cfg->read_your_writes && c->written_lsn) {
			s->finishing = true;
			sp_server_queue_lsn_query(s);
			sp_server_send(s);
			return;
		}
	}
	s->finishing = false;
	s->lsn_retried = false;
	s->n_xacts++;
	c->n_xacts++;
	sp_pool_xact_end(s->pool, c->xact_start);
	if (!sp_sock_flush(&c->sock)) {
		sp_client_close(c, "write to client failed");
		return;
	}
	s->client = NULL;
	c->server = NULL;
	sp_server_release(s);
	if (c->describe_detach) {
		/* a describe-only batch (see describe_only) ended by shardpool's own Sync: if
		 * it failed, the client's messages up to its Sync are dropped, as the server
		 * would have */
		c->describe_detach = false;
		if (c->batch_error)
			c->skip_to_sync = true;
		c->batch_error = false;
	}
	sp_client_detached(c);
}

/*
 * CopyInResponse to request r, the Query or Execute that started a COPY FROM STDIN:
 * the server now reads the client's messages as COPY input up to a CopyDone or
 * CopyFail, and ignores the Syncs among them. Syncs the client sent after r and
 * before that end (pipelined ahead of this answer; after it, client.c drops them)
 * get no ReadyForQuery, so they leave the queue. A Sync sent after some CopyData is
 * only likely ignored: the COPY may fail on that data before the server reads the
 * Sync, and answer it; if the COPY fails, the connection is not reused.
 */
static void copy_in_started(sp_server_t *s, sp_req_t *r)
{
	sp_client_t *c = s->client;
	unsigned mask = s->req_cap - 1, keep = 1;
	uint8_t w;
	if (!r) {
		if (c && !s->fan)
			c->in_copy = true;
		return;
	}
	w = r->copy_ends;
	r->copy_ends++; /* a second COPY of the same Query reads what follows this one's end */
	for (unsigned i = 1; i < s->req_n; i++) {
		sp_req_t q = s->reqs[(s->req_head + i) & mask];
		if (q.kind == SP_REQ_SYNC && q.copy_ends == w) {
			if (q.copy_datas != r->copy_datas)
				s->copy_syncs_dropped = true;
			continue;
		}
		s->reqs[(s->req_head + keep++) & mask] = q;
	}
	s->req_n = keep;
	/* the fan-out says when its client is in COPY (every shard ready); a client whose
	 * CopyDone or CopyFail went out already is not */
	if (c && !s->fan)
		c->in_copy = s->copy_ends == w;
}

/* Handle one whole response message. Returns false if s was closed. */
static bool response(sp_server_t *s, char type, const uint8_t *msg, size_t total)
{
	const uint8_t *body = msg + 5;
	size_t len = total - 5;
	sp_req_t *r = req_head(s);
	bool internal = r && (r->kind == SP_REQ_INT_QUERY || r->kind == SP_REQ_INT_PARSE || r->kind == SP_REQ_INT_CLOSE);
	sp_client_t *c = s->client;

	switch (type) {
	case SP_BE_PARAMETER_STATUS: {
		sp_msg_reader_t rd;
		const char *name, *value;
		sp_msg_reader_init(&rd, body, len);
		if (!pq_getmsgstring(&rd, &name, NULL) || !pq_getmsgstring(&rd, &value, NULL))
			break;
		sp_params_set(&s->params, name, value);
		if (c && strcasecmp(name, "client_encoding") == 0)
			sp_router_session_note_client_encoding(&c->rsess, value);
		if (c) {
			const char *cur = sp_params_get(&c->params, name);
			if (!cur || strcmp(cur, value) != 0) {
				sp_params_set(&c->params, name, value);
				write_client(s, msg, total);
			}
		}
		return true;
	}
	case SP_BE_NOTICE:
		if (!internal)
			write_client(s, msg, total);
		return true;
	case SP_BE_NOTIFICATION:
		write_client(s, msg, total);
		return true;
	case SP_BE_PARSE_COMPLETE:
	case SP_BE_BIND_COMPLETE:
	case SP_BE_CLOSE_COMPLETE:
	case SP_BE_NO_DATA:
		if (type == SP_BE_NO_DATA && r && r->kind == SP_REQ_DESCRIBE && r->ps)
			note_ncols(s, r->ps, 0);
		if (!r) {
			sp_server_close(s, "server sent an unexpected response");
			return false;
		}
		if (!internal)
			write_client(s, msg, total);
		req_pop(s);
		emit_synth(s);
		return true;
	case SP_BE_ROW_DESCRIPTION:
		if (!internal)
			write_client(s, msg, total);
		if (r && r->kind == SP_REQ_DESCRIBE && r->ps && len >= 2)
			note_ncols(s, r->ps, (int32_t)(((uint32_t)body[0] << 8) | body[1]));
		if (r && r->kind == SP_REQ_DESCRIBE) {
			req_pop(s);
			emit_synth(s);
		}
		return true;
	case SP_BE_DATA_ROW:
		if (r && r->kind == SP_REQ_INT_QUERY && r->intq == SP_INTQ_SYNCBACK)
			finish_syncback_row(s, body, len);
		else if (r && r->kind == SP_REQ_INT_QUERY && r->intq == SP_INTQ_LSN)
			lsn_row(s, body, len);
		else if (!internal)
			write_client(s, msg, total);
		return true;
	case SP_BE_COMMAND_COMPLETE:
	case SP_BE_EMPTY_QUERY:
	case SP_BE_PORTAL_SUSPENDED:
		if (!internal)
			write_client(s, msg, total);
		if (type == SP_BE_COMMAND_COMPLETE && len > 7 &&
		    (body[0] == 'A' || body[0] == 'C' || body[0] == 'D') &&
		    (memcmp(body, "ALTER ", 6) == 0 || memcmp(body, "CREATE ", 7) == 0 ||
		     memcmp(body, "DROP ", 5) == 0))
			sp_pstmt_ddl_seen(); /* statements prepared before may have changed shape */
		if (type == SP_BE_COMMAND_COMPLETE && len == 7 && memcmp(body, "LISTEN", 7) == 0 && c &&
		    c->pool_mode != SP_POOL_SESSION && !s->dirty_close) {
			/* a LISTEN that got past the refusal (in a Query of several statements, or
			 * in an extended batch after other messages): the session now receives
			 * notifications, which must not reach the clients that get it next */
			s->dirty_close = true;
			slog(s, SP_LOG_WARNING, "LISTEN ran in transaction pooling: the connection is closed at release");
		}
		s->copy_in = s->copy_out = false;
		s->copy_syncs_dropped = false;
		if (c) {
			c->in_copy = false;
			if (c->reset_seen && type == SP_BE_COMMAND_COMPLETE)
				c->reset_then_rollback = len >= 8 && memcmp(body, "ROLLBACK", 8) == 0;
		}
		if (r && r->kind == SP_REQ_EXECUTE) {
			req_pop(s);
			emit_synth(s);
		}
		return true;
	case SP_BE_COPY_IN:
		s->copy_in = true;
		copy_in_started(s, r);
		write_client(s, msg, total);
		return true;
	case SP_BE_COPY_OUT:
		s->copy_out = true;
		write_client(s, msg, total);
		return true;
	case SP_BE_COPY_DONE:
		s->copy_out = false;
		write_client(s, msg, total);
		return true;
	case SP_BE_ERROR:
		if (s->copy_in && s->copy_syncs_dropped) {
			s->dirty_close = true;
			slog(s, SP_LOG_DEBUG,
			     "COPY failed after Syncs pipelined into its data: the connection is not reused");
		}
		s->copy_syncs_dropped = false;
		s->copy_in = s->copy_out = false;
		if (c)
			c->in_copy = false;
		const char *code = sp_msg_error_field(body, len, 'C');
		if (r && r->kind == SP_REQ_INT_QUERY && r->intq == SP_INTQ_ABORT)
			return true; /* the error we asked for: the transaction is now aborted */
		if (r && r->kind == SP_REQ_INT_QUERY && r->intq == SP_INTQ_PARAMS && c) {
			/* The client's settings were refused (and the whole sync rolled back:
			 * the session still has the previous client's). At login (c->login_check)
			 * this is PostgreSQL's refusal of a startup value, and ends the login as
			 * PostgreSQL's does. Later (values another server or an older
			 * configuration took), the client's statements must not run with
			 * someone else's settings either: the session ends. */
			const char *m = sp_msg_error_field(body, len, 'M');
			char why[300];
			sp_params_forget_checked();
			s->dirty_close = true;
			snprintf(why, sizeof(why), "%s: %s",
				 c->login_check
				     ? "login refused, the server refused a startup parameter"
				     : "the server refused the client's session settings",
				 m ? m : "?");
			slog(s, c->login_check ? SP_LOG_INFO : SP_LOG_WARNING, "%s", why);
			sp_msg_write_error(
			    &c->sock.out, "FATAL", code && strlen(code) == 5 ? code : "22023",
			    m ? m : "invalid value for a session parameter",
			    sp_msg_error_field(body, len, 'D'), sp_msg_error_field(body, len, 'H'));
			sp_client_close(c, why);
			return s->state != SP_SERVER_CLOSED;
		}
		if (r && r->kind == SP_REQ_INT_QUERY && r->intq == SP_INTQ_LSN && c && !s->fan && !s->lsn_retried &&
		    code && strcmp(code, SP_SQLSTATE_QUERY_CANCELED) == 0) {
			/* a cancel meant for the client's write landed on the query after it: without
			 * the position, this client's reads could miss its write; ask once more */
			s->lsn_retried = true;
			c->txn_wrote = true;
			return true;
		}
		if (r && r->kind == SP_REQ_INT_QUERY) {
			const char *m = sp_msg_error_field(body, len, 'M');
			slog(s, SP_LOG_WARNING, "internal query failed: %s", m ? m : "?");
			s->dirty_close = true;
			if (c && r->intq == SP_INTQ_BEGIN)
				write_client(s, msg, total); /* the client's own BEGIN failed */
			return true;
		}
		/* A statement the client described before DDL, prepared afresh on this server
		 * since: its Bind's result formats no longer fit. PostgreSQL would have refused
		 * it with 0A000 (which drivers answer by preparing again), and the cleanup below
		 * treats it so. */
		bool reshaped = r && r->kind == SP_REQ_BIND && r->ps && changed_shape(code, body, len, r->ps);
		if (reshaped)
			code = "0A000";
		if (r && r->kind == SP_REQ_DESCRIBE && r->text && r->text[0] == SP_REFUSED_MARK && strlen(r->text) > 7) {
			/* a message shardpool refused, which the server refused for it (see
			 * SP_REFUSED_STATEMENT): the client hears shardpool's error */
			char text[512], own_code[6];
			char *hint;
			snprintf(text, sizeof(text), "%s", r->text + 7);
			snprintf(own_code, sizeof(own_code), "%.5s", r->text + 1);
			hint = strchr(text, SP_REFUSED_HINT);
			if (hint)
				*hint++ = 0;
			sp_buf_t e = {0};
			sp_msg_write_error(&e, "ERROR", own_code, text, NULL, hint);
			write_client(s, sp_buf_head(&e), sp_buf_len(&e));
			sp_buf_free(&e);
		} else if (reshaped || (r && (r->kind == SP_REQ_BIND || r->kind == SP_REQ_DESCRIBE) && r->text &&
					strcmp(r->text, SP_STALE_STATEMENT) == 0)) {
			/* the client hears what PostgreSQL would have said */
			sp_buf_t e = {0};
			write_stale_error(&e);
			write_client(s, sp_buf_head(&e), sp_buf_len(&e));
			sp_buf_free(&e);
		} else {
			write_client(s, msg, total);
		}
		if (r && r->kind != SP_REQ_QUERY && r->kind != SP_REQ_FUNCTION) {
			if (c)
				c->batch_error = true;
			/* Extended protocol: PostgreSQL skips everything up to Sync, a Query or
			 * FunctionCall sent before it included (they get no answer). */
			bool first = true;
			while ((r = req_head(s)) && r->kind != SP_REQ_SYNC && r->kind != SP_REQ_INT_QUERY) {
				if ((r->kind == SP_REQ_PARSE || r->kind == SP_REQ_INT_PARSE ||
				     r->kind == SP_REQ_SYNTH_PARSE) &&
				    r->ps) {
					/* not prepared after all (failed, or skipped up to the Sync): forget
					 * it here, and the client's name too; a copy the server already had
					 * (a synthesised ParseComplete) stays */
					if (r->kind != SP_REQ_SYNTH_PARSE)
						sp_pstmt_cache_remove(&s->pstmts, r->ps);
					if (c && r->text && sp_pstmt_map_get(&c->pstmts, r->text) == r->ps)
						sp_pstmt_map_del(&c->pstmts, r->text);
				} else if (r->kind == SP_REQ_INT_CLOSE && r->ps && !first) {
					/* skipped eviction: the server still has it */
					add_stale(s, r->ps);
				} else if ((r->kind == SP_REQ_BIND || r->kind == SP_REQ_DESCRIBE) &&
					   r->ps && first && code &&
					   (strcmp(code, "0A000") == 0 ||
					    strcmp(code, "26000") == 0)) {
					/* e.g. "cached plan must not change result type" after DDL
					 * (at Bind, or at a Describe of the copy this server had
					 * when another client prepared the same text): prepare it
					 * again (after a Close) on next use. Seen on a current
					 * copy, it makes every client's earlier name stale, and
					 * every other server's copy. */
					if (strcmp(code, "0A000") == 0 && sp_pstmt_cache_has(&s->pstmts, r->ps))
						r->ps->epoch++;
					sp_pstmt_cache_remove(&s->pstmts, r->ps);
					if (strcmp(code, "0A000") == 0)
						add_stale(s, r->ps);
				}
				first = false;
				req_pop(s);
			}
			if (!r)
				s->error_in_batch = true;
		}
		return true;
	case SP_BE_READY_FOR_QUERY:
		s->txn = len ? (char)body[0] : 'I';
		if (c && c->reset_seen && c->reset_then_rollback && s->txn == SP_TXN_IDLE) {
			/* the transaction with the RESET ended in ROLLBACK (not ROLLBACK TO, after
			 * which it goes on): the startup values do not come back; the read-back
			 * of the settings says what holds */
			c->reset_seen = false;
			sp_params_clear(&c->reset_names);
		}
		if (c)
			c->reset_then_rollback = false;
		s->copy_in = s->copy_out = false;
		s->last_used = ev_now(sp_loop);
		if (r && (r->kind == SP_REQ_SYNC || r->kind == SP_REQ_QUERY || r->kind == SP_REQ_FUNCTION ||
			  r->kind == SP_REQ_INT_QUERY)) {
			req_pop(s);
		} else {
			slog(s, SP_LOG_WARNING, "unexpected ReadyForQuery");
		}
		if (!internal) {
			write_client(s, msg, total);
			if (c)
				c->txn = s->txn;
			if (c && !s->fan)
				sp_pool_query_end(s->pool, &c->query_start, c->xact_start, s->txn, c->pool_mode == SP_POOL_SESSION);
		}
		emit_synth(s);
		if (s->req_n == 0 && !s->copy_in && !s->copy_out)
			transaction_done(s);
		return s->state != SP_SERVER_CLOSED;
	case SP_BE_BACKEND_KEY_DATA:
	case SP_BE_AUTH:
		sp_server_close(s, "server sent a login message after login");
		return false;
	default:
		/* ParameterDescription, CopyData, FunctionCallResponse, CopyBoth ... */
		if (!internal)
			write_client(s, msg, total);
		return true;
	}
	if (!internal)
		write_client(s, msg, total);
	return true;
}

static bool stream_type(char type)
{
	return type == SP_BE_DATA_ROW || type == SP_BE_COPY_DATA;
}

static void process(sp_server_t *s)
{
	sp_buf_t *in = &s->sock.in;
	sp_client_t *c0 = s->client;

	while (s->state != SP_SERVER_CLOSED) {
		sp_client_t *c = s->client;
		const uint8_t *p;
		uint32_t len;
		char type;

		if (c && sp_sock_backed_up(&c->sock) && (sp_sock_flush(&c->sock), sp_sock_backed_up(&c->sock))) {
			/* The client reads slower than the server sends: wait for it to
			 * drain (its write watcher is armed, so "drained" will come). */
			sp_sock_read_stop(&s->sock);
			break;
		}
		if (s->fwd_remaining > 0) {
			size_t n = sp_buf_len(in);
			if (n == 0)
				break;
			if (n > s->fwd_remaining)
				n = (size_t)s->fwd_remaining;
			if (!s->fwd_swallow)
				write_client(s, sp_buf_head(in), n);
			sp_buf_consume(in, n);
			s->fwd_remaining -= n;
			continue;
		}
		if (s->fan && !sp_fanout_wants(s->fan, s)) {
			sp_sock_read_stop(&s->sock);
			break;
		}
		if (sp_buf_len(in) < 5)
			break;
		p = sp_buf_head(in);
		type = (char)p[0];
		len = sp_get_be32(p + 1);
		if (len < 4 || len > 0x40000000u) {
			sp_server_close(s, "invalid message length from server");
			return;
		}
		if (s->state == SP_SERVER_LOGIN) {
			uint8_t *copy;
			if (sp_buf_len(in) < (size_t)len + 1) {
				if (len > 65536) {
					sp_server_close(s, "oversized login message from server");
					return;
				}
				break;
			}
			copy = malloc(len);
			if (!copy) {
				sp_server_close(s, "out of memory");
				return;
			}
			memcpy(copy, p + 5, len - 4);
			sp_buf_consume(in, (size_t)len + 1);
			login_message(s, type, copy, len - 4);
			free(copy);
			continue;
		}
		if (stream_type(type) && !s->fan && sp_buf_len(in) < (size_t)len + 1) {
			sp_req_t *r = req_head(s);
			bool internal = r && (r->kind == SP_REQ_INT_QUERY || r->kind == SP_REQ_INT_PARSE ||
					      r->kind == SP_REQ_INT_CLOSE);
			if (!internal) {
				size_t n = sp_buf_len(in);
				write_client(s, p, n);
				sp_buf_consume(in, n);
				s->fwd_remaining = (uint64_t)len + 1 - n;
				s->fwd_swallow = false;
				continue;
			}
		}
		if (sp_buf_len(in) < (size_t)len + 1) {
			if (!sp_buf_reserve(in, (size_t)len + 1 - sp_buf_len(in))) {
				sp_server_close(s, "out of memory for a server message");
				return;
			}
			break;
		}
		if (!response(s, type, p, (size_t)len + 1))
			break;
		/* response() may have recycled the buffer's offsets only through consume. */
		sp_buf_consume(in, (size_t)len + 1);
		if (s->client != c) {
			if (c && c->state != SP_CLIENT_CLOSED)
				sp_sock_flush(&c->sock);
		}
	}
	if (c0 && c0->state != SP_CLIENT_CLOSED && c0->sock.fd >= 0) {
		if (!sp_sock_flush(&c0->sock))
			sp_client_close(c0, "write to client failed");
	}
	if (s->client && s->client != c0 && s->client->sock.fd >= 0)
		sp_sock_flush(&s->client->sock);
	if (s->state != SP_SERVER_CLOSED && s->client && s->client->query_flush_sent && s->req_n == 0 &&
	    s->client->state == SP_CLIENT_ACTIVE)
		/* the answers a held-back Query waited for are in: let it go now */
		sp_client_process(s->client);
	else if (s->state != SP_SERVER_CLOSED && s->client &&
		 s->client->state == SP_CLIENT_ACTIVE && s->client->copy_wait &&
		 (s->client->in_copy || !sp_server_copy_undecided(s)))
		/* what the client sent after a Query waited to know whether it is COPY data */
		sp_client_resume(s->client);
}

static void sock_cb(sp_sock_t *sock, sp_sock_event_t ev)
{
	sp_server_t *s = container_of(sock, sp_server_t, sock);
	char why[200];
	switch (ev) {
	case SP_SOCK_CONNECTED:
		set_state(s, SP_SERVER_LOGIN);
		send_startup(s);
		sp_sock_read_start(&s->sock);
		sp_server_send(s);
		break;
	case SP_SOCK_READ:
		process(s);
		break;
	case SP_SOCK_DRAINED:
		if (s->client)
			sp_client_resume(s->client);
		break;
	case SP_SOCK_EOF:
		sp_server_close(s, s->state == SP_SERVER_LOGIN ? "server closed the connection during login"
							       : "server closed the connection");
		break;
	default:
		if (s->state == SP_SERVER_CONNECTING)
			sp_sock_connect_error(sock, s->pool->node->host, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "I/O error: %s", strerror(sock->err));
		sp_server_close(s, why);
		break;
	}
}

sp_server_t *sp_server_connect(sp_pool_t *p)
{
	sp_server_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = sp_next_id();
	s->pool = p;
	s->txn = SP_TXN_IDLE;
	s->state = SP_SERVER_CONNECTING;
	s->connect_at = s->created_at = s->last_used = ev_now(sp_loop);
	s->all_next = all_servers;
	if (all_servers)
		all_servers->all_prev = s;
	all_servers = s;
	n_servers++;
	p->n_connecting++;
	if (!sp_sock_connect(&s->sock, p->node->host, p->node->port, sock_cb)) {
		char why[200];
		sp_sock_connect_error(&s->sock, p->node->host, why, sizeof(why));
		s->sock.fd = -1;
		sp_server_close(s, why);
		return NULL;
	}
	return s;
}

void sp_server_attach(sp_server_t *s, sp_client_t *c)
{
	sp_buf_t sql = {0};
	s->client = c;
	s->last_used = ev_now(sp_loop);
	if (sp_params_write_sync(&sql, &c->params, &s->params) > 0) {
		sp_buf_append(&sql, "", 1);
		sp_msg_write_query(&s->sock.out, (const char *)sql.data);
		sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_PARAMS);
		/* Assume success; ParameterStatus brings canonical values, an error closes it. */
		for (int i = s->params.n - 1; i >= 0; i--)
			if (!sp_params_is_readonly(s->params.items[i].name) &&
			    !sp_params_get(&c->params, s->params.items[i].name))
				sp_params_remove(&s->params, s->params.items[i].name);
		for (int i = 0; i < c->params.n; i++)
			if (!sp_params_is_readonly(c->params.items[i].name))
				sp_params_set(&s->params, c->params.items[i].name, c->params.items[i].value);
	}
	sp_buf_free(&sql);
}

void sp_server_cancel_done(uint64_t id)
{
	for (sp_server_t *s = all_servers; s; s = s->all_next) {
		if (s->id != id)
			continue;
		if (s->cancels_in_flight > 0)
			s->cancels_in_flight--;
		if (s->cancels_in_flight == 0 && s->release_held && s->state != SP_SERVER_CLOSED) {
			s->release_held = false;
			sp_server_release(s);
		}
		return;
	}
}

void sp_server_release(sp_server_t *s)
{
	sp_pool_t *p = s->pool;
	const char *reset = sp_g.cfg->server_reset_query;
	/* the client's mode: a RELOAD may have changed the pool's since it logged in */
	sp_pool_mode_t mode = s->client ? s->client->pool_mode : p->pool_mode;
	bool need_reset = reset && *reset && (mode == SP_POOL_SESSION || sp_g.cfg->server_reset_query_always);
	s->client = NULL;
	if (s->cancels_in_flight > 0 && !s->dirty_close) {
		/* PostgreSQL has not taken the cancel yet: the next client's query must not
		 * get it (the pool counts the connection as active meanwhile) */
		s->release_held = true;
		return;
	}
	if (s->dirty_close) {
		sp_server_close(s, "connection state could not be restored");
		return;
	}
	if (need_reset) {
		p->n_active--;
		p->n_other++;
		set_state(s, SP_SERVER_RESET);
		sp_msg_write_query(&s->sock.out, reset);
		sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_RESET);
		if (strncasecmp(reset, "DISCARD ALL", 11) == 0) {
			sp_pstmt_cache_clear(&s->pstmts);
			for (int i = s->params.n - 1; i >= 0; i--)
				if (!sp_params_is_reported(s->params.items[i].name))
					sp_params_remove(&s->params, s->params.items[i].name);
		}
		sp_server_send(s);
		return;
	}
	p->n_active--;
	p->n_other++;
	s->state = SP_SERVER_RESET;
	sp_pool_server_free(p, s);
}

void sp_server_resume(sp_server_t *s)
{
	if (s->state == SP_SERVER_CLOSED)
		return;
	sp_sock_read_start(&s->sock);
	if (sp_buf_len(&s->sock.in) > 0)
		process(s);
}
