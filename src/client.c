/*
 * client.c - the client side of the proxy: accepting a connection, the
 * startup packet (SSLRequest, GSSENCRequest, CancelRequest, protocol 3.0),
 * the client state machine, and forwarding of the client's messages to its
 * server. It owns the cancel-key registry and the rewriting of named prepared
 * statements in transaction pooling (with prepared.c). Responses travel the
 * other way in server.c. Authentication lives in auth.c, pools in pool.c.
 *
 * Invariants: a client is linked to at most one server, and only in
 * SP_CLIENT_ACTIVE; its input is consumed only in states that can act on it,
 * so bytes a client pipelines while waiting stay in its buffer, in order.
 * A closed client is unlinked at once and freed after the current loop
 * iteration, so callers up the stack may still read it (state CLOSED).
 */
#include "client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "admin.h"
#include "auth.h"
#include "daemon.h"
#include "fanout.h"
#include "health.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "server.h"

static sp_client_t *all_clients;
static int n_clients;
static sp_client_t *graveyard;
static ev_check reaper;
static bool reaper_started;

#define KEY_BUCKETS 4096
static sp_client_t *key_buckets[KEY_BUCKETS];

const char *sp_client_state_str(sp_client_state_t st)
{
	static const char *const names[] = {"startup", "auth", "welcome", "idle", "waiting",
					    "active", "admin", "fanout", "closed"};
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

void sp_client_set_state(sp_client_t *c, sp_client_state_t st)
{
	/* Legal moves only; anything else is a bug worth a loud log line. */
	static const unsigned legal[] = {
		[SP_CLIENT_STARTUP] = 1u << SP_CLIENT_AUTH | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_AUTH] = 1u << SP_CLIENT_WELCOME | 1u << SP_CLIENT_IDLE |
				   1u << SP_CLIENT_ADMIN | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_WELCOME] = 1u << SP_CLIENT_IDLE | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_IDLE] = 1u << SP_CLIENT_WAITING | 1u << SP_CLIENT_ACTIVE | 1u << SP_CLIENT_FANOUT |
				   1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_WAITING] = 1u << SP_CLIENT_ACTIVE | 1u << SP_CLIENT_IDLE | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_ACTIVE] = 1u << SP_CLIENT_IDLE | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_ADMIN] = 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_FANOUT] = 1u << SP_CLIENT_IDLE | 1u << SP_CLIENT_CLOSED,
		[SP_CLIENT_CLOSED] = 0,
	};
	if (!(legal[c->state] & (1u << st)))
		sp_error("client %llu: illegal state change %s -> %s", (unsigned long long)c->id,
			 sp_client_state_str(c->state), sp_client_state_str(st));
	c->state = st;
}

void sp_client_prefix(const sp_client_t *c, char *buf, size_t len)
{
	snprintf(buf, len, "C-%llu %s@%s %s", (unsigned long long)c->id, c->user ? c->user : "?",
		 c->dbname ? c->dbname : "?", c->peer_str);
}

static void cl_log(const sp_client_t *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cl_log(const sp_client_t *c, int level, const char *fmt, ...)
{
	char prefix[256];
	va_list ap;
	if (level > sp_log_level)
		return;
	sp_client_prefix(c, prefix, sizeof(prefix));
	va_start(ap, fmt);
	sp_log_vwrite(level, prefix, fmt, ap);
	va_end(ap);
}

sp_client_t *sp_client_first(void)
{
	return all_clients;
}

int sp_client_count(void)
{
	return n_clients;
}

static void reap(struct ev_loop *loop, ev_check *w, int revents)
{
	while (graveyard) {
		sp_client_t *c = graveyard;
		graveyard = c->next;
		sp_params_clear(&c->params);
		sp_params_clear(&c->startup);
		sp_params_clear(&c->custom_names);
		sp_params_clear(&c->reset_names);
		sp_pstmt_map_clear(&c->pstmts);
		if (c->scram_active)
			sp_scram_server_free(&c->scram);
		free(c->user);
		free(c->dbname);
		free(c->begin_sql);
		free(c->unnamed_parse);
		free(c->bind_shards);
		free(c->bind_fmts);
		free(c->bind_vals);
		free(c->bind_lens);
		free(c->bind_expanded);
		free(c->split_groups);
		sp_buf_free(&c->split_texts);
		free(c->rw_used);
		sp_buf_free(&c->rw_text);
		free(c->written_lsn);
		free(c);
	}
	ev_check_stop(sp_loop, &reaper);
	reaper_started = false;
}

static void key_register(sp_client_t *c)
{
	unsigned b = (unsigned)c->cancel_pid % KEY_BUCKETS;
	c->key_next = key_buckets[b];
	key_buckets[b] = c;
}

static int32_t random_int31(void)
{
	int32_t v = 0;
	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		v = (int32_t)random();
	return v & 0x7fffffff;
}

void sp_client_assign_cancel_key(sp_client_t *c)
{
	do {
		c->cancel_pid = random_int31();
		c->cancel_key = random_int31();
	} while (c->cancel_pid == 0);
	key_register(c);
}

static void key_unregister(sp_client_t *c)
{
	sp_client_t **pp = &key_buckets[(unsigned)c->cancel_pid % KEY_BUCKETS];
	for (; *pp; pp = &(*pp)->key_next)
		if (*pp == c) {
			*pp = c->key_next;
			return;
		}
}

static void flush(sp_client_t *c)
{
	if (c->state == SP_CLIENT_CLOSED)
		return;
	if (!sp_sock_flush(&c->sock))
		sp_client_close(c, "write to client failed");
}

static void read_done(sp_client_t *c)
{
	if (c->read_node) {
		c->read_node->outstanding--;
		c->read_node = NULL;
	}
}

/* A CancelRequest on its way to a server (see sp_client_cancel_request). */
struct cancel_conn {
	sp_sock_t sock;
	sp_client_t *requester; /* the client connection that sent the CancelRequest, or NULL */
	uint64_t server_id;     /* the server it cancels: not reused until this is done */
	struct cancel_conn *next; /* the requester's other cancels (one per shard of a fan-out) */
};

void sp_client_close(sp_client_t *c, const char *reason)
{
	if (c->state == SP_CLIENT_CLOSED)
		return;
	/* it left before its cancels were taken: they go on without it */
	for (struct cancel_conn *cc = c->cancel_wait; cc; cc = cc->next)
		cc->requester = NULL;
	c->cancel_wait = NULL;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
	sp_pool_client_gone(c->home_pool, c->sock.bytes_in, c->sock.bytes_out);
	if (c->is_admin)
		sp_admin_client_gone(c);
	if (sp_g.cfg && sp_g.cfg->log_disconnections)
		cl_log(c, SP_LOG_INFO, "closing: %s", reason);
	else
		cl_log(c, SP_LOG_DEBUG, "closing: %s", reason);
	if (c->state == SP_CLIENT_WAITING || c->state == SP_CLIENT_WELCOME || c->state == SP_CLIENT_FANOUT)
		sp_pool_unwait(c->pool, c);
	if (c->fan)
		sp_fanout_abort(c->fan);
	if (c->server) {
		sp_server_t *s = c->server;
		c->server = NULL;
		s->client = NULL;
		if ((sp_server_busy(s) && !sp_server_only_internal(s)) || c->in_copy || c->fwd_remaining > 0 ||
		    (c->in_batch && !c->describe_detach)) {
			/* Mid-transaction or mid-COPY: never hand this session to anyone else,
			 * and stop what it runs (PostgreSQL would finish a statement whose
			 * client is gone before it notices). Extended-protocol messages not yet
			 * followed by a Sync count: the server runs them in an implicit
			 * transaction, which the next client's Sync would commit. */
			sp_client_cancel_abandoned(s);
			sp_server_close(s, "client disconnected inside a transaction");
		} else if (sp_server_busy(s)) {
			/* Only shardpool's own queries are running: let them finish
			 * without a client; the pool gets the connection back after. */
			s->pool->n_active--;
			s->pool->n_other++;
			s->state = SP_SERVER_RESET;
			s->finishing = false;
			sp_server_send(s);
		} else if (sp_buf_len(&s->sock.out) > 0) {
			/* a parameter sync queued for this client, never sent: not worth keeping */
			sp_server_close(s, "client left before its first message");
		} else {
			sp_server_release(s);
		}
	}
	read_done(c);
	if (c->causal_waiting) {
		ev_timer_stop(sp_loop, &c->causal_timer);
		c->causal_waiting = false;
	}
	c->state = SP_CLIENT_CLOSED;
	if (c->sock.fd >= 0) {
		/* Best effort: let a final ErrorResponse out before closing. */
		sp_sock_flush(&c->sock);
		sp_sock_close(&c->sock);
	}
	key_unregister(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		all_clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	n_clients--;
	c->next = graveyard;
	graveyard = c;
	if (!reaper_started) {
		ev_check_init(&reaper, reap);
		ev_check_start(sp_loop, &reaper);
		reaper_started = true;
	}
}

void sp_client_copy_violation(sp_client_t *c, char type)
{
	/* PostgreSQL's two errors; then it ends the session, and the COPY with it */
	char msg[80];
	snprintf(msg, sizeof(msg), "unexpected message type 0x%02X during COPY from stdin",
		 (unsigned)(unsigned char)type);
	sp_msg_write_error(&c->sock.out, "ERROR", SP_SQLSTATE_PROTOCOL_VIOLATION, msg, NULL, NULL);
	sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
			"terminating connection because protocol synchronization was lost");
}

void sp_client_fatal(sp_client_t *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->state == SP_CLIENT_CLOSED)
		return;
	sp_msg_write_error(&c->sock.out, "FATAL", sqlstate, msg, NULL, NULL);
	sp_client_close(c, msg);
}

static void local_error(sp_client_t *c, const char *sqlstate, const char *msg, const char *hint, bool rfq);

void sp_client_error(sp_client_t *c, const char *sqlstate, const char *msg, const char *hint)
{
	local_error(c, sqlstate, msg, hint, true); /* fails a transaction BEGIN opened here */
	flush(c);
}

static void sock_cb(sp_sock_t *s, sp_sock_event_t ev)
{
	sp_client_t *c = container_of(s, sp_client_t, sock);
	switch (ev) {
	case SP_SOCK_READ:
		c->last_active = ev_now(sp_loop);
		sp_client_process(c);
		break;
	case SP_SOCK_DRAINED:
		if (c->server)
			sp_server_resume(c->server);
		else if (c->fan) {
			/* resuming may finish the fan-out: stop as soon as it is gone */
			sp_fanout_t *f = c->fan;
			uint64_t gen = c->fan_gen;
			for (sp_server_t *s2 = sp_server_first(), *nx; s2 && c->fan == f && c->fan_gen == gen; s2 = nx) {
				nx = s2->all_next;
				if (s2->fan == f && !s2->sock.reading && sp_fanout_wants(f, s2))
					sp_server_resume(s2);
			}
		}
		break;
	case SP_SOCK_EOF:
		sp_client_close(c, c->in_copy ? "client disconnected during COPY" : "client disconnected");
		break;
	case SP_SOCK_ERROR:
	default:
		sp_client_close(c, strerror(s->err));
		break;
	}
}

void sp_client_accept(int fd, const struct sockaddr *addr, socklen_t len)
{
	sp_client_t *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->id = sp_next_id();
	c->ser_n_params = c->ser_n_startup = -1;
	memcpy(&c->peer, addr, len < sizeof(c->peer) ? len : sizeof(c->peer));
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(c->peer_str, sizeof(c->peer_str), "%s:%d", ip, ntohs(in->sin_port));
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(c->peer_str, sizeof(c->peer_str), "[%s]:%d", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(c->peer_str, sizeof(c->peer_str), "unix");
	}
	c->connect_at = c->last_active = ev_now(sp_loop);
	c->txn = SP_TXN_IDLE;
	c->next = all_clients;
	if (all_clients)
		all_clients->prev = c;
	all_clients = c;
	n_clients++;
	sp_sock_init(&c->sock, fd, sock_cb);
	sp_sock_read_start(&c->sock);
	if (sp_g.cfg->log_connections)
		cl_log(c, SP_LOG_INFO, "new connection");
}

/* ---------------- startup ---------------- */

static void handle_cancel(sp_client_t *c, const uint8_t *p, size_t len)
{
	if (len != 16) {
		sp_client_close(c, "malformed CancelRequest");
		return;
	}
	/* The connection stays open until the server has taken the cancel (it closes its
	 * side then), as PostgreSQL's own does: a driver that waits for that close before
	 * its next query (asyncpg, libpq's PQcancel) must not see the cancel land on it. */
	if (!sp_client_cancel_request((int32_t)sp_get_be32(p + 8), (int32_t)sp_get_be32(p + 12), c))
		sp_client_close(c, "cancel request handled");
}

/*
 * A client that asks for protocol 3.1 or later, or for protocol options
 * ("_pq_." names), is told what shardpool speaks, as PostgreSQL does: a
 * NegotiateProtocolVersion with 3.0 and the options it did not take.
 */
static void negotiate_protocol(sp_client_t *c, const uint8_t *p, size_t len)
{
	uint32_t minor = sp_get_be32(p + 4) & 0xffff;
	sp_msg_reader_t r;
	int n = 0;

	sp_msg_reader_init(&r, p + 8, len - 8);
	for (const char *k, *v; pq_getmsgstring(&r, &k, NULL) && *k && pq_getmsgstring(&r, &v, NULL);)
		n += strncmp(k, "_pq_.", 5) == 0;
	if (minor == 0 && n == 0)
		return;
	size_t at = sp_msg_begin(&c->sock.out, 'v');
	pq_sendint32(&c->sock.out, 3 << 16); /* the newest version spoken: 3.0 */
	pq_sendint32(&c->sock.out, n);
	sp_msg_reader_init(&r, p + 8, len - 8);
	for (const char *k, *v; pq_getmsgstring(&r, &k, NULL) && *k && pq_getmsgstring(&r, &v, NULL);)
		if (strncmp(k, "_pq_.", 5) == 0)
			pq_sendstring(&c->sock.out, k);
	sp_msg_end(&c->sock.out, at);
}

static void handle_startup(sp_client_t *c, const uint8_t *p, size_t len)
{
	sp_msg_reader_t r;
	const char *options = NULL;

	sp_msg_reader_init(&r, p + 8, len - 8);
	for (;;) {
		const char *k, *v;
		if (!pq_getmsgstring(&r, &k, NULL)) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid startup packet layout: expected terminator as last byte");
			return;
		}
		if (!*k)
			break;
		if (!pq_getmsgstring(&r, &v, NULL)) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid startup packet layout: missing value for \"%s\"", k);
			return;
		}
		if (strcmp(k, "user") == 0) {
			free(c->user);
			c->user = strdup(v);
		} else if (strcmp(k, "database") == 0) {
			free(c->dbname);
			c->dbname = strdup(v);
		} else if (strcmp(k, "options") == 0) {
			options = v;
		} else if (strcmp(k, "replication") == 0) {
			if (strcasecmp(v, "false") != 0 && strcasecmp(v, "off") != 0 && strcmp(v, "0") != 0 &&
			    strcasecmp(v, "no") != 0) {
				sp_client_fatal(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
						"replication connections are not supported through shardpool; connect to the server directly");
				return;
			}
		} else if (!sp_params_is_readonly(k) && strncmp(k, "_pq_.", 5) != 0 &&
			   strcasecmp(k, "session_authorization") != 0) {
			sp_params_set(&c->startup, k, v);
		}
	}
	if (r.pos != r.len) {
		sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid startup packet layout: expected terminator as last byte");
		return;
	}
	if (!c->user || !*c->user) {
		sp_client_fatal(c, SP_SQLSTATE_INVALID_AUTH, "no PostgreSQL user name specified in startup packet");
		return;
	}
	if (!c->dbname || !*c->dbname) {
		free(c->dbname);
		c->dbname = strdup(c->user);
	}
	if (options && !sp_params_parse_options(&c->startup, options)) {
		sp_client_fatal(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				"unsupported startup option \"%s\": only -c name=value and --name=value are accepted", options);
		return;
	}
	sp_params_remove(&c->startup, "session_authorization"); /* not a startup setting */
	if (n_clients > sp_g.cfg->max_client_conn) {
		sp_client_fatal(c, SP_SQLSTATE_TOO_MANY_CONNECTIONS,
				"no more connections allowed (max_client_conn = %d); retry later or raise max_client_conn",
				sp_g.cfg->max_client_conn);
		return;
	}
	if (sp_g.shutting_down) {
		sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "shardpool is shutting down");
		return;
	}
	if (strcmp(c->dbname, "shardpool") == 0 || strcmp(c->dbname, "pgbouncer") == 0) {
		c->is_admin = true;
	} else {
		c->db = sp_config_find_db(sp_g.cfg, c->dbname);
		if (c->db && c->db->removed)
			c->db = NULL; /* a RELOAD took it out of the file */
		if (!c->db) {
			/* Authenticate first so an unknown database does not reveal users. */
			c->auth_failed = false;
		}
	}
	negotiate_protocol(c, p, len);
	sp_client_set_state(c, SP_CLIENT_AUTH);
	sp_auth_client_start(c);
}

/* Parse everything that can arrive before authentication. */
static bool process_startup(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;
	uint32_t len, code;
	const uint8_t *p;

	if (sp_buf_len(in) < 4)
		return false;
	p = sp_buf_head(in);
	len = sp_get_be32(p);
	if (len < 8 || len > SP_MAX_STARTUP_PACKET) {
		/* as soon as the length is known: no waiting for bytes that cannot help */
		sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid length of startup packet (%u bytes)", len);
		return false;
	}
	if (sp_buf_len(in) < 8)
		return false;
	code = sp_get_be32(p + 4);
	if (sp_buf_len(in) < len)
		return false;
	if (code == SP_SSL_REQUEST_CODE || code == SP_GSSENC_REQUEST_CODE) {
		if (len != 8) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "malformed SSLRequest");
			return false;
		}
		sp_buf_consume(in, 8);
		if (sp_buf_len(in) > 0) {
			/* Bytes sent before our answer could be injected plaintext (CVE-2021-23222). */
			sp_client_close(c, "received unencrypted data after SSL request");
			return false;
		}
		sp_buf_append(&c->sock.out, "N", 1);
		flush(c);
		return c->state != SP_CLIENT_CLOSED;
	}
	if (code == SP_CANCEL_REQUEST_CODE) {
		handle_cancel(c, p, len);
		return false;
	}
	if (code >> 16 != 3) {
		sp_client_fatal(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				"unsupported frontend protocol %u.%u: server supports 3.0", code >> 16, code & 0xffff);
		return false;
	}
	{
		/* Consumed before it is handled: a trust login finishes inside
		 * handle_startup and goes on reading the input. */
		uint8_t pkt[SP_MAX_STARTUP_PACKET];
		memcpy(pkt, p, len);
		sp_buf_consume(in, len);
		handle_startup(c, pkt, len);
	}
	return c->state != SP_CLIENT_CLOSED;
}

/* ---------------- after login ---------------- */

static void start_transaction(sp_client_t *c);

/*
 * Startup values neither the server's defaults nor known to be taken by this pool's
 * server (a login brought them before): PostgreSQL refuses a login whose startup
 * values it refuses (22023, 42704, 55P02, 42501 ...), so they are tried on a server
 * first. Most logins bring values already seen, and pay nothing; no transaction
 * ever pays for it.
 */
static bool startup_needs_check(const sp_client_t *c)
{
	const sp_params_t *w = &c->pool->welcome;
	for (int i = 0; i < c->startup.n; i++) {
		const char *name = c->startup.items[i].name, *value = c->startup.items[i].value;
		const char *def = sp_params_get(w, name);
		if (sp_params_is_readonly(name) || sp_params_takes_any_value(name) ||
		    (def && strcmp(def, value) == 0))
			continue;
		if (!sp_params_checked(c->pool, name, value))
			return true;
	}
	return false;
}

static void send_welcome(sp_client_t *c);

void sp_client_welcome(sp_client_t *c)
{
	sp_params_t *w = &c->pool->welcome;

	/* The session the client expects: the server's defaults, then its own startup values. */
	sp_params_copy(&c->params, w);
	sp_params_copy(&c->params, &c->startup);
	for (int i = 0; i < c->startup.n; i++)
		if (strchr(c->startup.items[i].name, '.'))
			sp_params_set(&c->custom_names, c->startup.items[i].name, "");
	if (startup_needs_check(c)) {
		/* set on a server like before any transaction (sp_server_attach); the
		 * answer comes to sp_client_login_checked, or a refusal closes the client */
		cl_log(c, SP_LOG_DEBUG, "login: trying the startup parameters on a server");
		c->login_check = true;
		sp_client_set_state(c, SP_CLIENT_IDLE);
		start_transaction(c);
		return;
	}
	send_welcome(c);
}

void sp_client_login_checked(sp_client_t *c)
{
	c->login_check = false;
	c->server = NULL;
	for (int i = 0; i < c->startup.n; i++)
		if (!sp_params_is_readonly(c->startup.items[i].name))
			sp_params_note_checked(c->pool, c->startup.items[i].name,
					       c->startup.items[i].value);
	sp_client_set_state(c, SP_CLIENT_IDLE);
	send_welcome(c);
}

static void send_welcome(sp_client_t *c)
{
	sp_buf_t *out = &c->sock.out;

	for (int i = 0; i < c->params.n; i++)
		if (sp_params_is_reported(c->params.items[i].name))
			sp_msg_write_parameter_status(out, c->params.items[i].name, c->params.items[i].value);
	sp_client_assign_cancel_key(c);
	sp_msg_write_backend_key_data(out, c->cancel_pid, c->cancel_key);
	sp_msg_write_ready_for_query(out, SP_TXN_IDLE);
	if (c->state == SP_CLIENT_WELCOME || c->state == SP_CLIENT_AUTH)
		sp_client_set_state(c, SP_CLIENT_IDLE);
	flush(c);
	if (c->state != SP_CLIENT_CLOSED)
		sp_client_process(c);
}

void sp_client_server_ready(sp_client_t *c, sp_server_t *s)
{
	ev_tstamp now = ev_now(sp_loop);
	c->pool->total_wait_us += (uint64_t)((now - c->wait_since) * 1e6);
	if (c->fan) {
		sp_fanout_server_ready(c->fan, s);
		return;
	}
	if (c->login_check) {
		/* only the startup values go to it; what the client sent meanwhile waits */
		sp_client_set_state(c, SP_CLIENT_ACTIVE);
		c->server = s;
		sp_server_attach(s, c);
		if (s->req_n == 0) {
			/* this session has those values already: they are fine */
			s->client = NULL;
			sp_server_release(s);
			sp_client_login_checked(c);
			return;
		}
		s->finishing = true;
		sp_server_send(s);
		return;
	}
	sp_client_set_state(c, SP_CLIENT_ACTIVE);
	c->server = s;
	c->xact_start = now;
	c->replica_retry_mask = 0;
	sp_sock_read_start(&c->sock);
	sp_server_attach(s, c);
	if (c->virtual_txn && !c->describe_only) {
		/* The BEGIN the client was told succeeded runs now, on the chosen shard. */
		sp_msg_write_query(&s->sock.out, c->begin_sql ? c->begin_sql : "BEGIN");
		sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_BEGIN);
		free(c->begin_sql);
		c->begin_sql = NULL;
		c->virtual_txn = false;
		c->virtual_failed = false;
	}
	if (c->routed)
		c->txn_shard = s->pool->shard;
	sp_client_process(c);
}

static void local_reply(sp_client_t *c, const char *tag, char txn);
static char virtual_status(const sp_client_t *c);

/*
 * A login waits for the server's parameters from the database's home pool; when
 * that server is down, any other node of the database will do (a replica, or the
 * one promoted in the primary's place): the session goes on and its statements
 * are routed as usual. False when every node was tried.
 */
static bool welcome_elsewhere(sp_client_t *c, const char *why)
{
	const sp_db_conf_t *db = c->db;
	uint32_t i = 0;

	if (!c->routed || !db)
		return false;
	/* candidates in a fixed order: the home shard's replicas, then each other shard's
	 * primary and replicas; c->welcome_tried counts the ones already tried */
	for (int k = 0; k < db->n_shards; k++) {
		int shard = (db->default_shard + k) % db->n_shards;
		for (int r = k == 0 ? 0 : -1; r < db->shards[shard].n_replicas; r++, i++) {
			if (i < c->welcome_tried)
				continue;
			c->welcome_tried = i + 1;
			sp_pool_t *p = sp_pool_get(c->dbname, c->user, shard,
						   r < 0 ? SP_ROLE_PRIMARY : SP_ROLE_REPLICA, r < 0 ? 0 : r);
			if (!p || p == c->pool ||
			    (p->retry_at > ev_now(sp_loop) && p->n_idle + p->n_active + p->n_connecting + p->n_other == 0))
				continue;
			cl_log(c, SP_LOG_INFO, "login: %s; taking the server's parameters from %s %s:%d",
			       why, r < 0 ? "primary" : "replica", p->node->host, p->node->port);
			c->pool = p;
			sp_pool_acquire(p, c);
			return true;
		}
	}
	return false;
}

/* The statement a client waits with (for a server) fails; the session goes on. */
static void fail_waiting(sp_client_t *c, const char *sqlstate, const char *msg, const char *hint)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	uint32_t len = sp_get_be32(p + 1);
	read_done(c);
	sp_client_set_state(c, SP_CLIENT_IDLE);
	c->pool = c->routed ? NULL : c->pool;
	sp_msg_write_error(&c->sock.out, "ERROR", sqlstate, msg, NULL, hint);
	if (c->virtual_txn)
		c->virtual_failed = true;
	if (p[0] == SP_FE_QUERY || p[0] == SP_FE_FUNCTION_CALL) {
		if (sp_buf_len(&c->sock.in) >= (size_t)len + 1)
			sp_buf_consume(&c->sock.in, (size_t)len + 1);
		local_reply(c, NULL, virtual_status(c));
	} else {
		c->skip_to_sync = true; /* the rest of the batch is dropped, Sync answered */
	}
	flush(c);
	if (c->state != SP_CLIENT_CLOSED && sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
}

void sp_client_server_failed(sp_client_t *c, const char *sqlstate, const char *msg)
{
	if (c->fan) {
		sp_fanout_server_failed(c->fan, sqlstate, msg);
		return;
	}
	if (c->login_check) {
		sp_client_fatal(c, sqlstate, "%s", msg);
		return;
	}
	if (c->state == SP_CLIENT_WAITING && c->routed && c->pool && c->pool->role == SP_ROLE_REPLICA) {
		/* A read whose replica cannot be reached: nothing was sent yet, try elsewhere. */
		int shard = c->pool->shard, r;
		read_done(c);
		c->replica_retry_mask |= 1u << (c->pool->replica & 31);
		r = sp_health_pick_read(c->db, shard, c->written_lsn ? c->written_lsn[shard] : 0, c->replica_retry_mask);
		cl_log(c, SP_LOG_INFO, "replica unavailable (%s); retrying the read on %s", msg, r >= 0 ? "another replica" : "the primary");
		c->pool = r >= 0 ? sp_pool_get(c->dbname, c->user, shard, SP_ROLE_REPLICA, r)
				 : sp_pool_get(c->dbname, c->user, shard, SP_ROLE_PRIMARY, 0);
		if (c->pool) {
			c->wait_since = ev_now(sp_loop);
			sp_pool_acquire(c->pool, c);
			return;
		}
	}
	if (c->state == SP_CLIENT_WELCOME && welcome_elsewhere(c, msg))
		return;
	if (c->state == SP_CLIENT_WELCOME) {
		sp_client_fatal(c, sqlstate, "%s", msg);
		return;
	}
	cl_log(c, SP_LOG_WARNING, "no server: %s", msg);
	if (c->state == SP_CLIENT_WAITING && sp_buf_len(&c->sock.in) >= 5) {
		fail_waiting(c, sqlstate, msg,
			     "The server is unreachable; retry later or check SHOW HEALTH on the admin console.");
		return;
	}
	if (c->state == SP_CLIENT_WAITING)
		sp_client_set_state(c, SP_CLIENT_IDLE);
	sp_client_fatal(c, sqlstate, "%s", msg);
}

void sp_client_detached(sp_client_t *c)
{
	read_done(c);
	c->query_flush_sent = false;
	c->copy_wait = false;
	c->causal_deadline = 0;
	c->server = NULL;
	c->txn_shard = -1;
	if (!c->virtual_txn) {
		/* (still virtual after a describe-only batch: its SET LOCAL routing stays) */
		c->rsess.local_shard = -1;
		c->rsess.local_has_key = false;
		c->rsess.local_role = 0;
	}
	if (c->routed)
		c->pool = NULL;
	sp_client_set_state(c, SP_CLIENT_IDLE);
	if (sp_g.shutting_down) {
		sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "shardpool is shutting down; reconnect later");
		return;
	}
	sp_sock_read_start(&c->sock);
	if (sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
}

void sp_client_resume(sp_client_t *c)
{
	if (c->state == SP_CLIENT_CLOSED)
		return;
	sp_sock_read_start(&c->sock);
	if (sp_buf_len(&c->sock.in) > 0)
		sp_client_process(c);
}

/* ---------------- forwarding ---------------- */

/* Bytes of white space, comments and '(' at the start of sql. */
static size_t leading_blank(const char *sql, size_t len)
{
	size_t i = 0;
	while (i < len) {
		char ch = sql[i];
		if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v' || ch == '(') {
			i++;
		} else if (sql[i] == '-' && i + 1 < len && sql[i + 1] == '-') {
			while (i < len && sql[i] != '\n')
				i++;
		} else if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
			int depth = 1;
			i += 2;
			while (i < len && depth > 0) {
				if (sql[i] == '*' && i + 1 < len && sql[i + 1] == '/') {
					depth--;
					i += 2;
				} else if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
					depth++;
					i += 2;
				} else {
					i++;
				}
			}
		} else {
			break;
		}
	}
	return i;
}

/* First SQL keyword of a statement, skipping white space and comments. */
static size_t first_word(const char *sql, size_t len, char *word, size_t wlen)
{
	size_t i = leading_blank(sql, len), n = 0;
	/* ASCII only (keywords are): no locale lookups on every Query */
	while (i < len && n + 1 < wlen) {
		char ch = sql[i];
		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		else if (!((ch >= 'A' && ch <= 'Z') || ch == '_'))
			break;
		word[n++] = ch;
		i++;
	}
	word[n] = 0;
	return n;
}

/*
 * Can this Query text start a COPY? Only a COPY statement does (it cannot be
 * PREPAREd, run by EXECUTE or from a function), and its keyword cannot be quoted or
 * split: a text without the letters "copy" in any case cannot. The answer lets the
 * client's next messages go to the server before this Query's answer (see
 * sp_server_copy_undecided). One pass over the text, no copy.
 */
static bool mentions_copy(const char *sql, size_t len)
{
	/* x | 0x20 is 'c' for 'c' and 'C' only (and likewise for o, p, y) */
	for (size_t i = 0; i + 3 < len; i++)
		if ((sql[i] | 0x20) == 'c' && (sql[i + 1] | 0x20) == 'o' && (sql[i + 2] | 0x20) == 'p' &&
		    (sql[i + 3] | 0x20) == 'y')
			return true;
	return false;
}

/*
 * The statement heads shardpool acts on before a Query or Parse goes to the server.
 * head_of() reads only the first word (white space, comments and '(' skipped), in
 * place, case-insensitively, as a whole word: no copy, no strcmp, since it runs on
 * every Query and every unnamed Parse.
 */
enum { HEAD_OTHER, HEAD_SET, HEAD_RESET, HEAD_DISCARD, HEAD_DEALLOCATE, HEAD_LISTEN };

/* p[0..n) starts with kw (lowercase letters) as a whole word */
static bool head_is(const char *p, size_t n, const char *kw, size_t kl)
{
	if (n < kl)
		return false;
	for (size_t i = 1; i < kl; i++) /* p[0] was matched by the caller */
		if ((p[i] | 0x20) != kw[i])
			return false;
	if (n == kl)
		return true;
	char ch = p[kl];
	return !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_');
}

/* Kind of the word at p (no blanks skipped). */
static int head_kind(const char *p, size_t n)
{
	if (n < 3)
		return HEAD_OTHER;
	switch (p[0] | 0x20) {
	case 's':
		return head_is(p, n, "set", 3) ? HEAD_SET : HEAD_OTHER;
	case 'r':
		return head_is(p, n, "reset", 5) ? HEAD_RESET : HEAD_OTHER;
	case 'd':
		return head_is(p, n, "discard", 7)	  ? HEAD_DISCARD
		       : head_is(p, n, "deallocate", 10) ? HEAD_DEALLOCATE
							  : HEAD_OTHER;
	case 'l':
		return head_is(p, n, "listen", 6) ? HEAD_LISTEN : HEAD_OTHER;
	default:
		return HEAD_OTHER;
	}
}

static int head_of(const char *sql, size_t len)
{
	size_t i = leading_blank(sql, len);
	return head_kind(sql + i, len - i);
}

static inline bool ident_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* Length of a NUL-terminated string inside n bytes (memchr: libpg_query
 * exports a byte-at-a-time strnlen that would replace glibc's). */
static inline size_t text_len(const uint8_t *p, size_t n)
{
	const uint8_t *z = memchr(p, 0, n);
	return z ? (size_t)(z - p) : n;
}

/* Offset of the first keyword at or after i (white space, comments and '(' skipped). */
static size_t skip_blank(const char *sql, size_t len, size_t i)
{
	return i + leading_blank(sql + i, len - i);
}

/*
 * Could this SQL change session settings the server does not report? A
 * cheap scan, run on every Query: a statement starting with SET, RESET or
 * DISCARD (at the start or after a ';'), or a set_config( call anywhere. A
 * false positive costs one read-back query after the transaction (so
 * "UPDATE t SET" must not count); a false negative would leak a setting.
 * *resets tells RESET / DISCARD, after which startup values come back. The
 * same walk over the statements sets *later_drops (when asked) for a DEALLOCATE
 * ALL or DISCARD ALL after the first statement: which statements the server
 * still has after such a text is not known here (one failing before it keeps
 * them all).
 */
static bool drops_statements(int head, const char *sql, size_t len);

static bool may_change_settings_names(const char *sql, size_t len, bool *resets, sp_params_t *reset_names,
				      bool *later_drops)
{
	bool found = false;
	size_t i = 0;
	while (i < len) {
		size_t j = skip_blank(sql, len, i);
		const char *semi = memchr(sql + j, ';', len - j);
		int head = head_kind(sql + j, len - j);
		if (later_drops && i > 0 && drops_statements(head, sql + j, semi ? (size_t)(semi - sql) - j : len - j))
			*later_drops = true;
		if (head == HEAD_SET || head == HEAD_RESET || head == HEAD_DISCARD) {
			found = true;
			if (head != HEAD_SET && resets) {
				/* RESET name: that name; RESET ALL, DISCARD ALL: every name ("*") */
				size_t k = skip_blank(sql, len, j + (head == HEAD_RESET ? 5 : 7)), m = 0;
				char name[128];
				while (k < len && m + 1 < sizeof(name) && (ident_char(sql[k]) || sql[k] == '.' || sql[k] == '"')) {
					if (sql[k] != '"')
						name[m++] = (char)tolower((unsigned char)sql[k]);
					k++;
				}
				name[m] = 0;
				*resets = true;
				if (reset_names) {
					if (head == HEAD_DISCARD || strcmp(name, "all") == 0 || m == 0)
						sp_params_set(reset_names, "*", "");
					else
						sp_params_set(reset_names, name, "");
				}
			}
		}
		/* next statement: after the next ';' (one inside a string only costs a false positive) */
		if (!semi)
			break;
		i = (size_t)(semi - sql) + 1;
	}
	if (!found && len >= 10) {
		for (const char *q = sql; (q = memchr(q, '(', (size_t)(sql + len - q))) != NULL; q++)
			if (q - sql >= 10 && strncasecmp(q - 10, "set_config", 10) == 0)
				return true;
	}
	return found;
}

static bool may_change_settings(const char *sql, size_t len, bool *resets)
{
	return may_change_settings_names(sql, len, resets, NULL, NULL);
}

/* Is name a setting pg_settings does not list, which the read-back after the
 * transaction must ask for by name? Custom (dotted) ones, and role and
 * session_authorization (hidden from SHOW ALL). */
static bool unlisted_setting(const char *name, size_t m)
{
	return (m && strchr(name, '.') && name[0] != '.' && name[m - 1] != '.') ||
	       strcmp(name, "role") == 0 || strcmp(name, "session_authorization") == 0;
}

/*
 * Remember the settings this SQL may change that pg_settings does not list: SET of a
 * custom name, SET ROLE, SET SESSION AUTHORIZATION, and set_config() with the name
 * written as a literal. (A name passed as a parameter is seen at its Bind: note_bound_name.)
 */
/* The offset of the first argument of the next "set_config(" at or after from, or len. */
static size_t next_set_config_arg(const char *sql, size_t len, size_t from)
{
	for (const char *q = sql + from; from < len && (q = memchr(q, '(', (size_t)(sql + len - q))) != NULL;
	     q++)
		if (q - sql >= 10 && strncasecmp(q - 10, "set_config", 10) == 0)
			return skip_blank(sql, len, (size_t)(q - sql) + 1);
	return len;
}

/* set_config($n, ...) in sql: n (the first such call), else 0. */
static int16_t config_name_param(const char *sql, size_t len)
{
	for (size_t k = 0; (k = next_set_config_arg(sql, len, k)) < len;) {
		long n = 0;
		if (sql[k] != '$')
			continue;
		for (k++; k < len && isdigit((unsigned char)sql[k]) && n < 100000; k++)
			n = n * 10 + (sql[k] - '0');
		if (n > 0 && n <= INT16_MAX)
			return (int16_t)n;
	}
	return 0;
}

/*
 * The Bind (p[0..n): from its parameter format codes on) of a statement that calls
 * set_config($param, ...): the setting it names, remembered like a literal name.
 */
static void note_bound_name(sp_client_t *c, const uint8_t *p, size_t n, int param)
{
	sp_msg_reader_t r;
	int16_t nf, np, fmt = 0;
	sp_msg_reader_init(&r, p, n);
	if (!pq_getmsgint16(&r, &nf) || nf < 0)
		return;
	for (int i = 0; i < nf; i++) {
		int16_t f;
		if (!pq_getmsgint16(&r, &f))
			return;
		if (nf == 1 || i == param - 1)
			fmt = f;
	}
	/* binary too: set_config's name is text, whose binary form is its bytes as well
	 * (asyncpg sends every parameter in binary) */
	if (!pq_getmsgint16(&r, &np) || param > np || (fmt != 0 && fmt != 1))
		return;
	for (int i = 1; i <= param; i++) {
		int32_t l;
		const uint8_t *v;
		if (!pq_getmsgint32(&r, &l))
			return;
		if (l < 0) {
			if (i == param)
				return;
			continue;
		}
		if (!pq_getmsgbytes(&r, (size_t)l, &v))
			return;
		if (i == param && l > 0 && l < 128) {
			char name[128];
			for (int k = 0; k < l; k++)
				name[k] = (char)tolower(v[k]);
			name[l] = 0;
			if (unlisted_setting(name, (size_t)l))
				sp_params_set(&c->custom_names, name, "");
		}
	}
}

static void note_custom_names(sp_client_t *c, const char *sql, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t j = skip_blank(sql, len, i), k;
		char w[16], name[128];
		size_t n = first_word(sql + j, len - j, w, sizeof(w)), m = 0;
		if (n && strcmp(w, "SET") == 0) {
			k = j + leading_blank(sql + j, len - j) + n;
			for (int pass = 0; pass < 2; pass++) {
				size_t nn;
				k = skip_blank(sql, len, k);
				nn = first_word(sql + k, len - k, w, sizeof(w));
				if (nn && (strcmp(w, "SESSION") == 0 || strcmp(w, "LOCAL") == 0))
					k += nn;
			}
			k = skip_blank(sql, len, k);
			while (k < len && m + 1 < sizeof(name) && (ident_char(sql[k]) || sql[k] == '.' || sql[k] == '"')) {
				if (sql[k] != '"')
					name[m++] = (char)tolower((unsigned char)sql[k]);
				k++;
			}
			name[m] = 0;
			if (strcmp(name, "authorization") == 0) /* SET SESSION AUTHORIZATION */
				m = (size_t)snprintf(name, sizeof(name), "session_authorization");
			if (unlisted_setting(name, m))
				sp_params_set(&c->custom_names, name, "");
		}
		{
			const char *semi = memchr(sql + j, ';', len - j);
			if (!semi)
				break;
			i = (size_t)(semi - sql) + 1;
		}
	}
	for (size_t k = 0; (k = next_set_config_arg(sql, len, k)) < len;) {
		size_t m = 0;
		char name[128];
		if (sql[k] != '\'')
			continue;
		for (k++; k < len && sql[k] != '\'' && m + 1 < sizeof(name); k++)
			name[m++] = (char)tolower((unsigned char)sql[k]);
		name[m] = 0;
		if (k < len && sql[k] == '\'' && unlisted_setting(name, m))
			sp_params_set(&c->custom_names, name, "");
	}
}

/* DISCARD ALL, DISCARD PLANS? no: only ALL and DEALLOCATE [PREPARE] ALL drop statements.
 * head is the statement's head_of(), which every caller has already. */
static bool drops_statements(int head, const char *sql, size_t len)
{
	size_t i = 0;
	if (head != HEAD_DISCARD && head != HEAD_DEALLOCATE)
		return false;
	for (i = 0; i + 3 <= len; i++)
		if (strncasecmp(sql + i, "all", 3) == 0 && (i == 0 || !ident_char(sql[i - 1])) &&
		    (i + 3 == len || !ident_char(sql[i + 3])))
			return true;
	return false;
}

static sp_pstmt_t *deallocates(sp_client_t *c, const char *sql, size_t len, char *name, size_t nlen);

/*
 * Will the server run this DISCARD ALL / DEALLOCATE ALL? Not in a failed transaction
 * (25P02), and DISCARD ALL not inside a transaction block or after other messages of
 * an extended batch (25001): the statements the client prepared then survive, as they
 * do in PostgreSQL.
 */
static bool drop_runs(const sp_client_t *c, const sp_server_t *s, int head)
{
	if (s->txn == SP_TXN_FAILED)
		return false;
	return head != HEAD_DISCARD || (s->txn == SP_TXN_IDLE && !c->in_batch);
}

/* COMMIT, END, ROLLBACK [TO], ABORT, PREPARE TRANSACTION: what PostgreSQL still
 * parses in a failed transaction (IsTransactionExitStmt). */
static bool ends_transaction(const char *sql, size_t len)
{
	char w[16];
	size_t n = first_word(sql, len, w, sizeof(w));
	if (!n)
		return false;
	if (!strcmp(w, "PREPARE")) { /* PREPARE TRANSACTION, not PREPARE name AS */
		size_t k = skip_blank(sql, len, leading_blank(sql, len) + n);
		return first_word(sql + k, len - k, w, sizeof(w)) && !strcmp(w, "TRANSACTION");
	}
	return !strcmp(w, "COMMIT") || !strcmp(w, "END") || !strcmp(w, "ROLLBACK") ||
	       !strcmp(w, "ABORT");
}

/* The throwaway statement an extended-protocol DEALLOCATE of a client's statement deallocates. */
#define DEALLOC_STATEMENT "shardpool: deallocated"

/*
 * An unnamed Parse of "DEALLOCATE name" for one of the client's own statements
 * (psycopg sends it so when its cache of prepared statements is full): the
 * server knows that statement under its shared name, which other clients keep
 * using, so the client forgets the name and the server deallocates a
 * throwaway statement instead. The client's Bind, Describe and Execute then get
 * PostgreSQL's own answers (CommandComplete DEALLOCATE). False: not such a Parse.
 */
static bool parse_deallocate(sp_client_t *c, sp_server_t *s, const char *q, size_t ql)
{
	char dname[128];
	sp_buf_t *out = &s->sock.out;

	if (head_of(q, ql) != HEAD_DEALLOCATE || !deallocates(c, q, ql, dname, sizeof(dname)))
		return false;
	sp_pstmt_map_del(&c->pstmts, dname);
	sp_msg_write_close(out, 'S', DEALLOC_STATEMENT); /* one left over by a Parse never run */
	sp_server_push_req(s, SP_REQ_INT_CLOSE, NULL, SP_INTQ_NONE);
	sp_msg_write_parse(out, DEALLOC_STATEMENT, "SELECT 1");
	sp_server_push_req(s, SP_REQ_INT_PARSE, NULL, SP_INTQ_NONE);
	sp_msg_write_parse(out, "", "DEALLOCATE \"" DEALLOC_STATEMENT "\"");
	sp_server_push_req(s, SP_REQ_PARSE, NULL, SP_INTQ_NONE);
	free(c->unnamed_parse); /* a Bind in a later batch re-parses it on its server: not this one */
	c->unnamed_parse = NULL;
	c->unnamed_in_batch = true;
	return true;
}

static bool tracking_statements(const sp_client_t *c)
{
	return c->pool_mode != SP_POOL_SESSION && sp_g.cfg->max_prepared_statements > 0;
}

/* The shared statement for this Parse body, under the client's settings as of now. */
static sp_pstmt_t *intern_statement(const sp_client_t *c, const uint8_t *body, size_t len)
{
	const char *scope[SP_PSTMT_SCOPE_N];
	for (int i = 0; i < SP_PSTMT_SCOPE_N; i++)
		scope[i] = sp_params_get(&c->params, sp_pstmt_scope_names[i]);
	return sp_pstmt_intern(body, len, scope);
}

/* Make sure the server has ps prepared under its shared name, prepared in DDL generation
 * gen or later (see sp_pstmt_ddl_gen); queue the Parse if not. Returns true when it
 * queued one: the server prepares ps afresh. *copy_gen (may be NULL): the generation
 * of the copy the server has. */
static bool ensure_prepared_since(sp_server_t *s, sp_pstmt_t *ps, uint32_t gen, uint32_t *copy_gen)
{
	sp_buf_t *out = &s->sock.out;
	sp_pstmt_t *victim;
	size_t at;
	if (sp_pstmt_cache_has_since(&s->pstmts, ps, gen, copy_gen))
		return false;
	if ((victim = sp_pstmt_cache_take_old(&s->pstmts, ps, gen))) {
		/* prepared here before its result type changed, or before DDL the client
		 * prepared it after: replace it */
		sp_msg_write_close(out, 'S', victim->name);
		sp_server_push_req(s, SP_REQ_INT_CLOSE, victim, SP_INTQ_NONE);
		sp_pstmt_unref(victim);
	}
	sp_server_close_stale(s, ps);
	victim = sp_pstmt_cache_add(&s->pstmts, ps, sp_g.cfg->max_prepared_statements);
	if (victim) {
		sp_msg_write_close(out, 'S', victim->name);
		sp_server_push_req(s, SP_REQ_INT_CLOSE, victim, SP_INTQ_NONE);
		sp_pstmt_unref(victim);
	}
	at = sp_msg_begin(out, SP_FE_PARSE);
	pq_sendstring(out, ps->name);
	pq_sendbytes(out, ps->body, ps->body_len);
	sp_msg_end(out, at);
	sp_server_push_req(s, SP_REQ_INT_PARSE, ps, SP_INTQ_NONE);
	return true;
}

static bool ensure_prepared(sp_server_t *s, sp_pstmt_t *ps)
{
	return ensure_prepared_since(s, ps, 0, NULL);
}

/*
 * The rest of a Bind (from its parameter format codes on) for a statement the server
 * prepares afresh for it, with one result format code per column the client was
 * described (ps->ncols) where the client sent none or one for all. PostgreSQL refuses a
 * client's statement prepared before DDL changed its result type (0A000); a copy
 * prepared afresh after the DDL would instead return rows of another shape than the
 * driver decodes (asyncpg: "the number of columns in the result row is different from
 * what was described"). With a code per column the server refuses the Bind when the
 * count no longer fits (08P01), which server.c turns into that 0A000. Only on a fresh
 * prepare, never per Bind of a statement the server has.
 */
static void send_bind_tail(sp_buf_t *out, const sp_pstmt_t *ps, const uint8_t *p, size_t n)
{
	sp_msg_reader_t r;
	const uint8_t *skip;
	int16_t nfmt, nparams, nres, code = 0;
	int32_t vlen;
	size_t tail;
	sp_msg_reader_init(&r, p, n);
	if (ps->ncols <= 0 || ps->ncols > 1600 || !pq_getmsgint16(&r, &nfmt) || nfmt < 0 ||
	    !pq_getmsgbytes(&r, (size_t)nfmt * 2, &skip) || !pq_getmsgint16(&r, &nparams) ||
	    nparams < 0)
		goto as_is;
	for (int i = 0; i < nparams; i++) {
		if (!pq_getmsgint32(&r, &vlen))
			goto as_is;
		if (vlen > 0 && !pq_getmsgbytes(&r, (size_t)vlen, &skip))
			goto as_is;
	}
	tail = r.pos;
	if (!pq_getmsgint16(&r, &nres) || nres > 1 || nres < 0 ||
	    (nres == 1 && !pq_getmsgint16(&r, &code)) || r.pos != n)
		goto as_is;
	pq_sendbytes(out, p, tail);
	pq_sendint16(out, (int16_t)ps->ncols);
	for (int i = 0; i < ps->ncols; i++)
		pq_sendint16(out, code);
	return;
as_is:
	pq_sendbytes(out, p, n);
}

static void forward_raw(sp_server_t *s, const uint8_t *p, size_t n)
{
	sp_buf_append(&s->sock.out, p, n);
}

/*
 * The client's statement name was prepared before its result type changed (DDL seen
 * by another client's execution): PostgreSQL refuses such a statement with 0A000 until
 * the client prepares it again, and so does shardpool. The server is sent a Bind or
 * Describe of a name no server has, so it fails the message (and the transaction, and
 * skips to Sync) as it would have; server.c answers the client with the 0A000.
 */
static void refuse_stale(sp_server_t *s, char type, const char *portal)
{
	size_t at = sp_msg_begin(&s->sock.out, type);
	if (type == SP_FE_BIND) {
		pq_sendstring(&s->sock.out, portal);
		pq_sendstring(&s->sock.out, SP_STALE_STATEMENT);
		pq_sendint16(&s->sock.out, 0);
		pq_sendint16(&s->sock.out, 0);
		pq_sendint16(&s->sock.out, 0);
	} else {
		pq_sendbyte(&s->sock.out, 'S');
		pq_sendstring(&s->sock.out, SP_STALE_STATEMENT);
	}
	sp_msg_end(&s->sock.out, at);
	sp_server_push_req_text(s, type == SP_FE_BIND ? SP_REQ_BIND : SP_REQ_DESCRIBE, NULL,
				SP_STALE_STATEMENT);
}

/*
 * Refuse a client's message with err ("SQLSTATE message", then SP_REFUSED_HINT and a
 * hint if any) the way PostgreSQL refuses one: the server is made to fail it too (a
 * Describe of a statement it does not have), so an implicit transaction with the
 * batch's earlier work is rolled back, an explicit one fails, and the messages up to
 * Sync are skipped by the server itself. server.c puts err in place of its error.
 */
static void refuse_by_server(sp_server_t *s, const char *err)
{
	char text[512];
	size_t at = sp_msg_begin(&s->sock.out, SP_FE_DESCRIBE);
	pq_sendbyte(&s->sock.out, 'S');
	pq_sendstring(&s->sock.out, SP_REFUSED_STATEMENT);
	sp_msg_end(&s->sock.out, at);
	text[0] = SP_REFUSED_MARK;
	snprintf(text + 1, sizeof(text) - 1, "%s", err);
	sp_server_push_req_text(s, SP_REQ_DESCRIBE, NULL, text);
}

/*
 * Handle one complete message (hdr+body in buf) from an ACTIVE client.
 * Returns false if the client was closed.
 */
static bool handle_message(sp_client_t *c, char type, const uint8_t *msg, size_t total)
{
	sp_server_t *s = c->server;
	const uint8_t *body = msg + 5;
	size_t len = total - 5;
	sp_msg_reader_t r;
	const char *name, *name2;
	size_t nlen;

	sp_msg_reader_init(&r, body, len);
	if (c->skip_to_sync && type != SP_FE_SYNC)
		return true; /* after an error shardpool answered itself, up to Sync */
	if (c->skip_to_sync)
		c->skip_to_sync = false;
	if (s->error_in_batch && (type == SP_FE_PARSE || type == SP_FE_BIND || type == SP_FE_DESCRIBE ||
				  type == SP_FE_CLOSE || type == SP_FE_EXECUTE || type == SP_FE_QUERY ||
				  type == SP_FE_FUNCTION_CALL)) {
		/* The server discards these until Sync, a Query or FunctionCall too (no answer
		 * comes for them); nothing to rewrite or track. */
		forward_raw(s, msg, total);
		return true;
	}
	switch (type) {
	case SP_FE_QUERY: {
		const char *sql = (const char *)body;
		bool pipeline_lsn = c->lsn_pipeline;
		c->lsn_pipeline = false;
		/* a simple Query drops the unnamed statement (PostgreSQL does the same) */
		free(c->unnamed_parse);
		c->unnamed_parse = NULL;
		if (len == 0 || body[len - 1] != 0) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid Query message: string not terminated");
			return false;
		}
		c->n_queries++;
		c->pool->total_queries++;
		sp_pool_query_begin(&c->query_start, &c->xact_start, c->txn);
		if (c->pool_mode != SP_POOL_SESSION) {
			int head = head_of(sql, len - 1);
			if (head == HEAD_LISTEN) {
				/* Refuse without the server: nothing was sent for this message. */
				sp_msg_write_error(&c->sock.out, "ERROR", SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
						   "LISTEN is not supported in transaction pooling mode",
						   NULL, "Use a database with pool_mode = session for LISTEN/NOTIFY.");
				sp_msg_write_ready_for_query(&c->sock.out, s->txn);
				return true;
			}
			bool later_drops = false;
			if (may_change_settings_names(sql, len - 1, &c->reset_seen, &c->reset_names, &later_drops)) {
				s->need_syncback = true;
				note_custom_names(c, sql, len - 1);
			}
			if (drops_statements(head, sql, len - 1)) {
				/* DISCARD ALL / DEALLOCATE ALL: the server forgets every prepared
				 * statement, and so does this client; unless it will refuse it */
				if (drop_runs(c, s, head)) {
					sp_pstmt_cache_clear(&s->pstmts);
					sp_pstmt_map_clear(&c->pstmts);
				}
			} else if (later_drops) {
				/* "SELECT 1; DEALLOCATE ALL": the client's statements go, as in
				 * PostgreSQL; what the server still has is unknown, so this
				 * connection is closed after the transaction, not reused */
				sp_pstmt_cache_clear(&s->pstmts);
				sp_pstmt_map_clear(&c->pstmts);
				s->dirty_close = true;
			} else if (len < 4096 && head == HEAD_DEALLOCATE) {
				char dname[128];
				if (deallocates(c, sql, len - 1, dname, sizeof(dname))) {
					/* a protocol-level name: the server knows it by its shared name */
					sp_pstmt_map_del(&c->pstmts, dname);
					sp_server_push_req_text(s, SP_REQ_SYNTH_COMMAND, NULL, "DEALLOCATE");
					return true;
				}
			}
		}
		sp_server_push_req(s, SP_REQ_QUERY, NULL, SP_INTQ_NONE);
		if (!mentions_copy(sql, len - 1))
			sp_server_query_cannot_copy(s); /* what the client pipelines after it need not wait */
		forward_raw(s, msg, total);
		if (pipeline_lsn && c->txn_wrote && s->req_n == 1 && s->txn == SP_TXN_IDLE && !s->need_syncback &&
		    !s->fan && !c->reset_seen) {
			/* see lsn_pipelinable: the client's next messages wait for the answer */
			sp_server_queue_lsn_query(s);
			c->txn_wrote = false;
			s->finishing = true;
		}
		return true;
	}
	case SP_FE_PARSE:
		if (!pq_getmsgstring(&r, &name, &nlen))
			goto bad;
		if (c->pool_mode != SP_POOL_SESSION && !s->fan &&
		    head_of((const char *)body + nlen + 1, text_len(body + nlen + 1, len - nlen - 1)) == HEAD_LISTEN) {
			/* refused as in a Query (JDBC sends LISTEN so) */
			refuse_by_server(s, "0A000 LISTEN is not supported in transaction pooling mode\x02"
					    "Use a database with pool_mode = session for LISTEN/NOTIFY.");
			return true;
		}
		if (*name && tracking_statements(c)) {
			sp_pstmt_t *ps = sp_pstmt_map_get(&c->pstmts, name);
			if (s->error_in_batch)
				return true; /* the server skips it up to the Sync: it creates nothing */
			if (ps && c->fanout_replay && c->batch_refused != c->batch_at) {
				/* the same batch for another shard of a fan-out: the client's name was
				 * taken by this very Parse; only this server needs the statement */
				if (sp_pstmt_cache_has(&s->pstmts, ps)) {
					sp_server_push_req(s, SP_REQ_SYNTH_PARSE, NULL, SP_INTQ_NONE);
				} else {
					ensure_prepared(s, ps);
					sp_req_t *last = &s->reqs[(s->req_head + s->req_n - 1) & (s->req_cap - 1)];
					last->kind = SP_REQ_PARSE;
					last->text = strdup(name);
				}
				return true;
			}
			if (ps) {
				/* As PostgreSQL: an error (which fails the server's transaction
				 * too), then everything up to Sync is skipped. On every shard of
				 * a fan-out: the others would run what the name already has. */
				char err[200];
				if (s->fan && !c->fanout_replay && !c->batch_refused)
					c->batch_refused = c->batch_at;
				snprintf(err, sizeof(err), "42P05 prepared statement \"%s\" already exists", name);
				refuse_by_server(s, err);
				return true;
			}
			ps = intern_statement(c, body + nlen + 1, len - nlen - 1);
			if (!ps) {
				sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
				return false;
			}
			if (s->txn == SP_TXN_FAILED && sp_pstmt_cache_has(&s->pstmts, ps) &&
			    !ends_transaction((const char *)body + nlen + 1,
					      text_len(body + nlen + 1, len - nlen - 1))) {
				/* the server would refuse a Parse now: so does shardpool, for the copy
				 * it already has, and the name is not taken */
				sp_pstmt_unref(ps);
				sp_server_push_req_text(s, SP_REQ_SYNTH_ERROR, NULL,
							"25P02 current transaction is aborted, commands ignored until end of transaction block");
				c->skip_to_sync = true;
				return true;
			}
			if (!ps->classified) {
				const char *q = (const char *)body + nlen + 1;
				size_t ql = text_len(body + nlen + 1, len - nlen - 1);
				ps->sets = may_change_settings(q, ql, &ps->resets);
				ps->drops = drops_statements(head_of(q, ql), q, ql);
				ps->config_param = ps->sets ? config_name_param(q, ql) : 0;
				ps->classified = true;
			}
			sp_pstmt_map_put(&c->pstmts, name, ps);
			sp_pstmt_unref(ps);
			if (ps->sets)
				s->need_syncback = true;
			if (ps->resets) {
				c->reset_seen = true;
				sp_params_set(&c->reset_names, "*", "");
			}
			if (ps->drops) {
				sp_pstmt_cache_clear(&s->pstmts);
			}
			if (sp_pstmt_cache_has_since(&s->pstmts, ps, sp_pstmt_ddl_gen, NULL)) {
				/* the name goes with it: skipped after an error, the name is dropped */
				sp_server_push_req_text(s, SP_REQ_SYNTH_PARSE, ps, name);
			} else {
				sp_req_t *last;
				/* a copy from before DDL seen since could fail its Describe with
				 * 0A000, which PostgreSQL would not say to a fresh Parse */
				ensure_prepared_since(s, ps, sp_pstmt_ddl_gen, NULL);
				/* The Parse we just queued answers for the client's. */
				last = &s->reqs[(s->req_head + s->req_n - 1) & (s->req_cap - 1)];
				last->kind = SP_REQ_PARSE;
				last->text = strdup(name);
			}
			return true;
		}
		if (c->pool_mode != SP_POOL_SESSION) {
			const char *q = (const char *)body + nlen + 1;
			size_t ql = text_len(body + nlen + 1, len - nlen - 1);
			if (!*name && ql < 4096 && tracking_statements(c) && parse_deallocate(c, s, q, ql))
				return true;
			if (!*name)
				c->unnamed_config_param = 0;
			if (may_change_settings_names(q, ql, &c->reset_seen, &c->reset_names, NULL)) {
				s->need_syncback = true;
				if (!*name)
					c->unnamed_config_param = config_name_param(q, ql);
			}
			if (drops_statements(head_of(q, ql), q, ql) && drop_runs(c, s, head_of(q, ql))) {
				sp_pstmt_cache_clear(&s->pstmts);
				sp_pstmt_map_clear(&c->pstmts);
			}
		}
		if (!*name) {
			/* a describe-only batch lets its server go: keep the unnamed statement for
			 * the Bind that comes later, on whatever server (see the Bind below) */
			free(c->unnamed_parse);
			c->unnamed_parse = c->describe_only ? malloc(total) : NULL;
			if (c->unnamed_parse)
				memcpy(c->unnamed_parse, msg, total);
			c->unnamed_in_batch = true;
		}
		sp_server_push_req(s, SP_REQ_PARSE, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	case SP_FE_BIND:
		if (!pq_getmsgstring(&r, &name, NULL) || !pq_getmsgstring(&r, &name2, NULL))
			goto bad;
		if (*name2 && tracking_statements(c)) {
			bool stale;
			uint32_t gen = 0;
			sp_pstmt_t *ps = sp_pstmt_map_lookup_gen(&c->pstmts, name2, &stale, &gen);
			if (ps && stale) {
				refuse_stale(s, SP_FE_BIND, name);
				return true;
			}
			if (ps) {
				sp_buf_t *out = &s->sock.out;
				size_t at;
				if (ps->sets) {
					s->need_syncback = true;
					note_custom_names(c, (const char *)ps->body,
							  text_len(ps->body, ps->body_len));
					if (ps->config_param)
						note_bound_name(c, body + r.pos, len - r.pos, ps->config_param);
				}
				if (ps->resets) {
					c->reset_seen = true;
					sp_params_set(&c->reset_names, "*", "");
				}
				if (ps->drops) {
					/* DEALLOCATE ALL / DISCARD ALL run again: the server forgets
					 * all statements, and the client its own */
					sp_pstmt_ref(ps);
					ensure_prepared(s, ps);
					sp_pstmt_cache_clear(&s->pstmts);
					at = sp_msg_begin(out, SP_FE_BIND);
					pq_sendstring(out, name);
					pq_sendstring(out, ps->name);
					pq_sendbytes(out, body + r.pos, len - r.pos);
					sp_msg_end(out, at);
					sp_server_push_req(s, SP_REQ_BIND, NULL, SP_INTQ_NONE);
					sp_pstmt_unref(ps);
					return true;
				}
				uint32_t copy_gen = gen;
				bool fresh = ensure_prepared_since(s, ps, gen, &copy_gen);
				at = sp_msg_begin(out, SP_FE_BIND);
				pq_sendstring(out, name);
				pq_sendstring(out, ps->name);
				if (fresh || (int32_t)(copy_gen - gen) > 0) {
					/* a copy prepared after the client's (DDL since): its shape
					 * is checked once, then the name counts as of the copy's
					 * time */
					send_bind_tail(out, ps, body + r.pos, len - r.pos);
					sp_pstmt_map_set_gen(&c->pstmts, name2,
							     fresh ? sp_pstmt_ddl_gen : copy_gen);
				} else {
					pq_sendbytes(out, body + r.pos, len - r.pos);
				}
				sp_msg_end(out, at);
				sp_server_push_req(s, SP_REQ_BIND, ps, SP_INTQ_NONE);
				return true;
			}
		}
		if (!*name2 && c->unnamed_config_param)
			note_bound_name(c, body + r.pos, len - r.pos, c->unnamed_config_param);
		if (!*name2 && c->unnamed_parse && !c->unnamed_in_batch) {
			/* the unnamed statement was described on a server since let go */
			forward_raw(s, c->unnamed_parse, (size_t)sp_get_be32(c->unnamed_parse + 1) + 1);
			sp_server_push_req(s, SP_REQ_INT_PARSE, NULL, SP_INTQ_NONE);
			c->unnamed_in_batch = true;
		}
		sp_server_push_req(s, SP_REQ_BIND, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	case SP_FE_DESCRIBE: {
		uint8_t kind;
		if (!pq_getmsgbyte(&r, &kind) || !pq_getmsgstring(&r, &name, NULL))
			goto bad;
		if (kind == 'S' && *name && tracking_statements(c)) {
			bool stale;
			uint32_t gen = 0;
			sp_pstmt_t *ps = sp_pstmt_map_lookup_gen(&c->pstmts, name, &stale, &gen);
			if (ps && stale) {
				refuse_stale(s, SP_FE_DESCRIBE, NULL);
				return true;
			}
			if (ps) {
				sp_buf_t *out = &s->sock.out;
				size_t at;
				ensure_prepared_since(s, ps, gen, NULL);
				at = sp_msg_begin(out, SP_FE_DESCRIBE);
				pq_sendbyte(out, 'S');
				pq_sendstring(out, ps->name);
				sp_msg_end(out, at);
				/* with ps: its column count is noted (changed_shape() in server.c) */
				sp_server_push_req(s, SP_REQ_DESCRIBE, ps, SP_INTQ_NONE);
				return true;
			}
		}
		sp_server_push_req(s, SP_REQ_DESCRIBE, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	}
	case SP_FE_CLOSE: {
		uint8_t kind;
		if (!pq_getmsgbyte(&r, &kind) || !pq_getmsgstring(&r, &name, NULL))
			goto bad;
		if (kind == 'S' && *name && tracking_statements(c)) {
			/* The server keeps its copy for other clients; answer ourselves. */
			sp_pstmt_map_del(&c->pstmts, name);
			sp_server_push_req(s, SP_REQ_SYNTH_CLOSE, NULL, SP_INTQ_NONE);
			return true;
		}
		sp_server_push_req(s, SP_REQ_CLOSE, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	}
	case SP_FE_EXECUTE:
		c->n_queries++;
		c->pool->total_queries++;
		sp_pool_query_begin(&c->query_start, &c->xact_start, c->txn);
		sp_server_push_req(s, SP_REQ_EXECUTE, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	case SP_FE_SYNC:
		c->batch_error = false;
		c->unnamed_in_batch = false;
		sp_server_push_req(s, SP_REQ_SYNC, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	case SP_FE_FLUSH:
		forward_raw(s, msg, total);
		if (c->describe_only) {
			/* end the server's implicit transaction ourselves (its ReadyForQuery is
			 * swallowed) so the server goes back to the pool: see route_idle */
			c->describe_only = false;
			c->describe_detach = true;
			c->unnamed_in_batch = false; /* the next batch runs on another server */
			sp_msg_write_sync(&s->sock.out);
			sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_NONE);
			s->finishing = true; /* what the client sends next waits for the release */
		}
		return true;
	case SP_FE_FUNCTION_CALL:
		sp_server_push_req(s, SP_REQ_FUNCTION, NULL, SP_INTQ_NONE);
		forward_raw(s, msg, total);
		return true;
	case SP_FE_COPY_DONE:
	case SP_FE_COPY_FAIL:
		c->in_copy = false;
		s->copy_ends++;
		forward_raw(s, msg, total);
		return true;
	case SP_FE_COPY_DATA:
		s->copy_datas++;
		forward_raw(s, msg, total);
		return true;
	default:
		break;
	}
bad:
	sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d ('%c') or malformed message",
			(int)(unsigned char)type, isprint((unsigned char)type) ? type : '?');
	return false;
}

/*
 * The parameter types the client gave its statement (Parse body after the name:
 * text, int16 count, int32 oids): of the batch's last Parse of that name before
 * `before`, else of the statement shardpool keeps for the client. NULL if unknown.
 */
static const uint8_t *statement_body(sp_client_t *c, const char *stmt, size_t before, size_t *blen)
{
	const uint8_t *p = sp_buf_head(&c->sock.in), *found = NULL;
	size_t pos = 0;
	while (pos < before) {
		uint32_t len = sp_get_be32(p + pos + 1);
		const char *name = (const char *)p + pos + 5;
		if (p[pos] == SP_FE_PARSE && memchr(name, 0, len - 4) && strcmp(name, stmt) == 0) {
			size_t nl = strlen(name) + 1;
			found = p + pos + 5 + nl;
			*blen = len - 4 - nl;
		}
		pos += 1 + len;
	}
	if (found)
		return found;
	if (!*stmt && c->unnamed_parse) {
		*blen = sp_get_be32(c->unnamed_parse + 1) - 4 - 1;
		return c->unnamed_parse + 6;
	}
	if (*stmt) {
		sp_pstmt_t *ps = sp_pstmt_map_get(&c->pstmts, stmt);
		if (ps) {
			*blen = ps->body_len;
			return ps->body;
		}
	}
	return NULL;
}

/*
 * A rewritten fan-out (sp_fanout_rewrite_sql): in place of the client's Bind
 * (msg), server s gets Parse of its shard's text as the unnamed statement, with
 * the parameters it uses renumbered, and a Bind of the client's portal to it that
 * carries only those values. Returns false (nothing sent) when the statement or
 * the Bind cannot be read; the caller then forwards the Bind as it is.
 */
static bool send_rewritten_bind(sp_client_t *c, sp_server_t *s, const char *sql, int n_cols,
				const uint8_t *msg, size_t at_pos)
{
	uint32_t len = sp_get_be32(msg + 1);
	sp_msg_reader_t r;
	const char *portal, *stmt;
	int16_t nf, np, nr, *fmts, n_oids = 0;
	const uint8_t **vals, *body, *oids = NULL;
	int32_t *lens;
	size_t blen = 0;
	sp_buf_t *text = &c->rw_text;
	sp_buf_t *out = &s->sock.out;

	/* the client's Bind scratch arrays are free here (routing is done) */
	sp_msg_reader_init(&r, msg + 5, len - 4);
	if (!pq_getmsgstring(&r, &portal, NULL) || !pq_getmsgstring(&r, &stmt, NULL) ||
	    !pq_getmsgint16(&r, &nf) || nf < 0 || !sp_grow_array(&c->bind_fmts, &c->cap_bind_fmts, nf, sizeof(int16_t)))
		return false;
	fmts = c->bind_fmts;
	for (int i = 0; i < nf; i++)
		if (!pq_getmsgint16(&r, &fmts[i]))
			return false;
	if (!pq_getmsgint16(&r, &np) || np < 0 || !sp_grow_array(&c->bind_vals, &c->cap_bind_vals, np, sizeof(*vals)) ||
	    !sp_grow_array(&c->bind_lens, &c->cap_bind_lens, np, sizeof(*lens)))
		return false;
	vals = c->bind_vals;
	lens = c->bind_lens;
	for (int i = 0; i < np; i++) {
		vals[i] = NULL;
		if (!pq_getmsgint32(&r, &lens[i]) || (lens[i] >= 0 && !pq_getmsgbytes(&r, (size_t)lens[i], &vals[i])))
			return false;
	}
	if (!pq_getmsgint16(&r, &nr) || nr < 0)
		return false;
	const uint8_t *rfmts = msg + 5 + r.pos;
	if ((size_t)nr * 2 > len - 4 - r.pos)
		return false;
	body = statement_body(c, stmt, at_pos, &blen);
	if (body) {
		const uint8_t *z = memchr(body, 0, blen);
		if (z && (size_t)(z + 1 - body) + 2 <= blen) {
			n_oids = (int16_t)(((unsigned)z[1] << 8) | z[2]);
			oids = z + 3;
			if (n_oids < 0 || (size_t)(oids - body) + 4 * (size_t)n_oids > blen)
				n_oids = 0;
		}
	}
	int max_used = (int)(strlen(sql) / 2 + 1); /* a $n takes two bytes at least */
	if (!body || !sp_grow_array(&c->rw_used, &c->cap_rw_used, max_used, sizeof(int)))
		return false;
	int *used = c->rw_used;
	int k = sp_router_renumber_params(sql, text, used, max_used);
	if (k < 0)
		return false;
	for (int i = 0; i < k; i++)
		if (used[i] < 1 || used[i] > np)
			return false;
	size_t at = sp_msg_begin(out, SP_FE_PARSE);
	pq_sendstring(out, "");
	pq_sendstring(out, (const char *)sp_buf_head(text));
	pq_sendint16(out, (int16_t)k);
	for (int i = 0; i < k; i++)
		pq_sendint32(out, used[i] <= n_oids ? (int32_t)sp_get_be32(oids + 4 * (used[i] - 1)) : 0);
	sp_msg_end(out, at);
	sp_server_push_req(s, SP_REQ_INT_PARSE, NULL, SP_INTQ_NONE);

	at = sp_msg_begin(out, SP_FE_BIND);
	pq_sendstring(out, portal);
	pq_sendstring(out, "");
	pq_sendint16(out, (int16_t)k);
	for (int i = 0; i < k; i++)
		pq_sendint16(out, nf == 0 ? 0 : nf == 1 ? fmts[0] : used[i] <= nf ? fmts[used[i] - 1] : 0);
	pq_sendint16(out, (int16_t)k);
	for (int i = 0; i < k; i++) {
		int j = used[i] - 1;
		pq_sendint32(out, lens[j]);
		if (lens[j] > 0)
			pq_sendbytes(out, vals[j], (size_t)lens[j]);
	}
	/* per-column result formats: the columns the rewrite adds (avg's counts) in text */
	int16_t nout = nr > 1 && n_cols > nr ? (int16_t)n_cols : nr;
	pq_sendint16(out, nout);
	pq_sendbytes(out, rfmts, (size_t)nr * 2);
	for (int i = nr; i < nout; i++)
		pq_sendint16(out, 0);
	sp_msg_end(out, at);
	sp_server_push_req(s, SP_REQ_BIND, NULL, SP_INTQ_NONE);
	return true;
}

/*
 * A rewrite took the server's unnamed statement (send_rewritten_bind): a later Bind of
 * the client's own unnamed statement, without a Parse, must bring it again. The
 * client's unnamed Parse as of message pos is kept for that.
 */
static void keep_unnamed(sp_client_t *c, size_t pos)
{
	if (!c->unnamed_parse) {
		size_t blen;
		const uint8_t *b = statement_body(c, "", pos, &blen);
		if (b && (c->unnamed_parse = malloc(blen + 6))) {
			c->unnamed_parse[0] = SP_FE_PARSE;
			sp_put_be32(c->unnamed_parse + 1, (uint32_t)(blen + 5));
			c->unnamed_parse[5] = 0;
			memcpy(c->unnamed_parse + 6, b, blen);
		}
	}
	c->unnamed_in_batch = false;
}

void sp_client_forward_batch(sp_client_t *c, sp_server_t *s, size_t end)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0;
	sp_server_t *saved = c->server;
	/* handle_message works on c->server: point it at each shard's server in turn.
	 * Its effects on the client (statement names) are the same every time. */
	bool described = false;
	int rw_cols = 0;
	const char *rw_sql = s->fan ? sp_fanout_rewrite_sql(s->fan, s->fan_idx, &rw_cols) : NULL;
	bool split = s->fan && sp_fanout_is_split(s->fan);
	int msg_index = 0;
	c->server = s;
	c->fanout_replay = s->fan_idx > 0;
	if (!c->fanout_replay)
		c->batch_refused = 0;
	c->unnamed_in_batch = false; /* each shard's server needs its own copy */
	if (s->fan && sp_fanout_split_txn(s->fan)) {
		/* a split batch that writes: all shards commit, or none (see sp_fanout_txn_open) */
		sp_msg_write_query(&s->sock.out, "BEGIN");
		sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_NONE);
	}
	while (pos < end && c->state != SP_CLIENT_CLOSED) {
		uint32_t len = sp_get_be32(p + pos + 1);
		c->batch_at = pos + 1;
		if (split) {
			int mi = msg_index++;
			int owner = sp_fanout_split_owner(s->fan, mi);
			if ((owner >= 0 && owner != s->fan_idx) ||
			    (owner == -2 && !sp_fanout_split_member(s->fan, mi, s->fan_idx))) {
				pos += 1 + len; /* another shard's Bind, or what uses its portal */
				continue;
			}
			const char *gtext = owner == -2 && p[pos] == SP_FE_BIND ? sp_fanout_split_text(s->fan, mi, s->fan_idx)
										 : NULL;
			if (gtext) {
				/* this shard's rows of a split INSERT */
				if (!send_rewritten_bind(c, s, gtext, 0, p + pos, pos)) {
					sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
							"malformed Bind of a statement split over shards");
					break;
				}
				keep_unnamed(c, pos);
				pos += 1 + len;
				continue;
			}
		}
		if (p[pos] == SP_FE_DESCRIBE && len >= 5) {
			if (p[pos + 5] == 'S' && s->fan)
				sp_fanout_statement_describe(s->fan, s->fan_idx);
			else
				described = true;
		}
		if (p[pos] == SP_FE_BIND && rw_sql && send_rewritten_bind(c, s, rw_sql, rw_cols, p + pos, pos)) {
			keep_unnamed(c, pos);
			pos += 1 + len;
			continue;
		}
		if (p[pos] == SP_FE_EXECUTE && !described && s->fan && sp_fanout_merges(s->fan)) {
			/* the merge needs the columns the client already knows: ask for them */
			const char *portal = (const char *)p + pos + 5;
			size_t at = sp_msg_begin(&s->sock.out, SP_FE_DESCRIBE);
			pq_sendbyte(&s->sock.out, 'P');
			pq_sendstring(&s->sock.out, memchr(portal, 0, len - 4) ? portal : "");
			sp_msg_end(&s->sock.out, at);
			sp_server_push_req(s, SP_REQ_DESCRIBE, NULL, SP_INTQ_NONE);
			sp_fanout_hide_row_description(s->fan);
			described = true;
		}
		if (p[pos] == SP_FE_EXECUTE && s->fan && len >= 9 && len <= 10000 &&
		    (int32_t)sp_get_be32(p + pos + len - 3) > 0) {
			/* a row limit: the merge applies it; the shards get it or none */
			uint8_t ex[10001];
			int32_t want = (int32_t)sp_get_be32(p + pos + len - 3);
			int32_t lim = sp_fanout_execute_limit(s->fan, want);
			memcpy(ex, p + pos, (size_t)len + 1);
			sp_put_be32(ex + len - 3, (uint32_t)lim);
			if (!handle_message(c, SP_FE_EXECUTE, ex, (size_t)len + 1))
				break;
			pos += 1 + len;
			continue;
		}
		if (!handle_message(c, (char)p[pos], p + pos, (size_t)len + 1))
			break;
		pos += 1 + len;
	}
	c->fanout_replay = false;
	c->batch_at = 0;
	c->server = saved;
}

/*
 * Is this a frontend message type, and is len (as sent, including itself)
 * allowed for it? As PostgreSQL: messages that carry data may be large
 * (up to max_packet_size), control messages are small.
 */
static bool valid_header(char type, uint32_t len)
{
	uint32_t large = (uint32_t)sp_g.cfg->max_packet_size;
	if (len < 4)
		return false;
	switch (type) {
	case SP_FE_QUERY:
	case SP_FE_PARSE:
	case SP_FE_BIND:
	case SP_FE_FUNCTION_CALL:
	case SP_FE_COPY_DATA:
		return len <= large;
	case SP_FE_DESCRIBE:
	case SP_FE_EXECUTE:
	case SP_FE_CLOSE:
	case SP_FE_SYNC:
	case SP_FE_FLUSH:
	case SP_FE_TERMINATE:
	case SP_FE_COPY_DONE:
	case SP_FE_COPY_FAIL:
		return len <= 10000;
	default:
		return false;
	}
}

/* Messages that may stream through without being held whole. */
static inline bool streamable(char type)
{
	return type == SP_FE_COPY_DATA;
}

/* ---------------- routing (sharded or read/write split databases) ---------------- */

static void local_reply(sp_client_t *c, const char *tag, char txn)
{
	if (tag)
		sp_msg_write_command_complete(&c->sock.out, tag);
	sp_msg_write_ready_for_query(&c->sock.out, txn);
	c->txn = txn;
}

char sp_client_txn_status(const sp_client_t *c)
{
	return virtual_status(c);
}

static char virtual_status(const sp_client_t *c)
{
	return c->virtual_txn ? (c->virtual_failed ? SP_TXN_FAILED : SP_TXN_BLOCK) : SP_TXN_IDLE;
}

static void local_error(sp_client_t *c, const char *sqlstate, const char *msg, const char *hint, bool rfq)
{
	sp_msg_write_error(&c->sock.out, "ERROR", sqlstate, msg, NULL, hint && *hint ? hint : NULL);
	if (c->virtual_txn)
		c->virtual_failed = true;
	if (rfq)
		local_reply(c, NULL, virtual_status(c));
}

static void start_transaction(sp_client_t *c);

/* The pool of this client's user on that node (replica -1: the primary), from its memo. */
static sp_pool_t *node_pool(sp_client_t *c, int shard, int replica)
{
	struct sp_pool_memo *m = &c->pool_memo[((unsigned)shard * 3u + (unsigned)(replica + 1)) & 3u];
	if (!m->pool || m->shard != shard || m->replica != replica) {
		sp_pool_t *p = replica < 0 ? sp_pool_get(c->dbname, c->user, shard, SP_ROLE_PRIMARY, 0)
					   : sp_pool_get(c->dbname, c->user, shard, SP_ROLE_REPLICA, replica);
		if (!p)
			return NULL;
		m->pool = p;
		m->shard = shard;
		m->replica = replica;
	}
	return m->pool;
}

static sp_pool_t *replica_pool(sp_client_t *c, int shard, int replica)
{
	sp_node_health_t *n = sp_health_node(c->db->name, shard, replica);
	if (n) {
		n->outstanding++;
		c->read_node = n;
	}
	return node_pool(c, shard, replica);
}

static void causal_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	sp_client_t *c = container_of(w, sp_client_t, causal_timer);
	int shard = c->causal_shard, r;
	bool expired = ev_now(sp_loop) >= c->causal_deadline;
	r = sp_health_pick_read(c->db, shard, c->written_lsn[shard], 0);
	if (r < 0 && !expired) {
		sp_health_probe_now(c->db, shard);
		return;
	}
	ev_timer_stop(sp_loop, &c->causal_timer);
	c->causal_waiting = false;
	sp_client_set_state(c, SP_CLIENT_IDLE);
	if (r >= 0) {
		c->pool = replica_pool(c, shard, r);
	} else {
		int wt = sp_health_write_target(c->db, shard);
		cl_log(c, SP_LOG_DEBUG, "causal_wait_ms expired: reading from the primary");
		c->pool = wt >= 0 ? sp_pool_get(c->dbname, c->user, shard, SP_ROLE_REPLICA, wt)
				  : sp_pool_get(c->dbname, c->user, shard, SP_ROLE_PRIMARY, 0);
	}
	if (!c->pool) {
		sp_client_fatal(c, SP_SQLSTATE_INTERNAL, "no pool for shard %d", shard);
		return;
	}
	c->prerouted = true;
	start_transaction(c);
}

static void start_causal_wait(sp_client_t *c, int shard)
{
	c->causal_waiting = true;
	c->causal_shard = shard;
	c->causal_deadline = ev_now(sp_loop) + sp_g.cfg->causal_wait_ms / 1000.0;
	c->wait_since = ev_now(sp_loop);
	sp_client_set_state(c, SP_CLIENT_WAITING);
	sp_health_probe_now(c->db, shard);
	ev_timer_init(&c->causal_timer, causal_tick, 0.002, 0.002);
	ev_timer_start(sp_loop, &c->causal_timer);
}

/*
 * The pool for a transaction on this shard: a replica for reads when the
 * database splits them (read-your-writes respected), the primary (or a
 * promoted replica) otherwise. NULL after sending the client an error.
 */
/* The client's transactions are SERIALIZABLE by default: a hot standby cannot run them. */
static bool serializable_by_default(sp_client_t *c)
{
	const char *v;
	if (c->ser_n_params == c->params.n && c->ser_sig_params == c->params.sig &&
	    c->ser_n_startup == c->startup.n && c->ser_sig_startup == c->startup.sig)
		return c->ser_default;
	v = sp_params_get(&c->params, "default_transaction_isolation");
	if (!v)
		v = sp_params_get(&c->startup, "default_transaction_isolation");
	c->ser_default = v && strcasecmp(v, "serializable") == 0;
	c->ser_n_params = c->params.n;
	c->ser_sig_params = c->params.sig;
	c->ser_n_startup = c->startup.n;
	c->ser_sig_startup = c->startup.sig;
	return c->ser_default;
}

static sp_pool_t *choose_pool(sp_client_t *c, int shard, bool write, bool read)
{
	const sp_db_conf_t *db = c->db;
	int role_hint = c->rsess.local_role ? c->rsess.local_role : c->rsess.role;
	bool want_replica = c->virtual_txn ? c->txn_read_only : (read && !write);
	int replica = -1;

	/* A session-pooled client keeps the server of its first statement for the whole
	 * session, writes included: the primary, unless the session asked for a replica. */
	if (c->pool_mode == SP_POOL_SESSION || serializable_by_default(c))
		want_replica = false;
	if (role_hint == 1)
		want_replica = false;
	else if (role_hint == 2 && !write)
		want_replica = true; /* a session role never sends a write to a replica */
	if (shard < 0 || shard >= db->n_shards)
		shard = db->default_shard;
	if (want_replica && db->read_replicas && db->shards[shard].n_replicas > 0) {
		uint64_t min_lsn = c->written_lsn ? c->written_lsn[shard] : 0;
		replica = sp_health_pick_read(db, shard, min_lsn, 0);
		if (replica < 0 && min_lsn > 0 && sp_g.cfg->causal_wait_ms > 0 && c->causal_deadline == 0 &&
		    sp_health_pick_read(db, shard, 0, 0) >= 0) {
			/* A replica is usable but has not replayed our write yet: give it
			 * causal_wait_ms to catch up before the read goes to the primary. */
			start_causal_wait(c, shard);
			return NULL;
		}
		if (replica < 0 && min_lsn > 0)
			/* this read goes to the primary because no replica is known to have our
			 * write: ask them now (at most once per 5 ms per server), so later reads,
			 * ours and other clients', see fresh positions and can use them */
			sp_health_probe_now(db, shard);
		if (replica >= 0)
			return replica_pool(c, shard, replica);
	}
	/* the shard's writer: its primary, or the replica promoted in its place */
	int w = sp_health_write_target(db, shard);
	if (w == -2 && !want_replica) {
		char msg[300];
		snprintf(msg, sizeof(msg), "the primary of shard %d of database \"%s\" is unavailable and no replica has been promoted",
			 shard, db->name);
		local_error(c, SP_SQLSTATE_CONNECTION_FAILURE, msg, "Retry when the primary is back or a replica is promoted.", true);
		return NULL;
	}
	if (!want_replica && (write || c->virtual_txn))
		c->txn_wrote = true;
	cl_log(c, SP_LOG_DEBUG, "routed to shard %d %s%s (min lsn %llx)", shard, w >= 0 ? "promoted replica" : "primary",
	       want_replica ? " for a read" : "", c->written_lsn ? (unsigned long long)c->written_lsn[shard] : 0ULL);
	return node_pool(c, shard, w >= 0 ? w : -1);
}

static bool valid_header(char type, uint32_t len);

/* Offset just past the last whole message in the input. */
static size_t whole_messages(const sp_client_t *c)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0, n = sp_buf_len(&c->sock.in);
	while (pos + 5 <= n) {
		uint32_t len = sp_get_be32(p + pos + 1);
		if (len < 4 || pos + 1 + len > n)
			break;
		pos += 1 + len;
	}
	return pos;
}

/*
 * Every message of a batch about to be routed is one a client may send: a
 * Terminate closes the connection (PostgreSQL too drops the batch's work, which
 * no Sync committed), anything else invalid is a protocol violation. Checked
 * before any of it goes anywhere, so a fan-out never meets a bad message midway.
 * False if the client is gone.
 */
static bool batch_messages_ok(sp_client_t *c, size_t end)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0;
	while (pos + 5 <= end) {
		uint32_t len = sp_get_be32(p + pos + 1);
		char type = (char)p[pos];
		if (type == SP_FE_TERMINATE) {
			sp_client_close(c, "client terminated");
			return false;
		}
		if (!valid_header(type, len)) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d or length %u",
					(int)(unsigned char)type, len);
			return false;
		}
		pos += 1 + (size_t)len;
	}
	return true;
}

/* Offset just past the first Sync (or Flush, Query, Terminate) in the input, 0 if not there yet. */
static size_t batch_end(const sp_client_t *c)
{
	const sp_buf_t *in = &c->sock.in;
	size_t pos = 0, n = sp_buf_len(in);
	const uint8_t *p = sp_buf_head(in);
	while (pos + 5 <= n) {
		uint32_t len = sp_get_be32(p + pos + 1);
		if (len < 4)
			return pos + 5; /* malformed: let the normal path reject it */
		if (pos + 1 + len > n)
			return 0;
		if (p[pos] == SP_FE_SYNC || p[pos] == SP_FE_FLUSH || p[pos] == SP_FE_QUERY ||
		    p[pos] == SP_FE_TERMINATE)
			return pos + 1 + len;
		pos += 1 + len;
	}
	return 0;
}

/*
 * An unsharded client's batch of Parse and Describe (of a statement) up to a Flush, as
 * asyncpg's prepare() sends, with nothing of it needing the server afterwards: the
 * server is let go once it answered (see describe_only), instead of being held until
 * the client's next message, which may come only after it waited for another client
 * of the same pool. Only the message headers are read, and only for a batch that opens
 * with a Parse or a Describe.
 */
static bool describe_only_batch(const sp_client_t *c)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0, end;
	if (!tracking_statements(c) || (p[0] != SP_FE_PARSE && p[0] != SP_FE_DESCRIBE))
		return false;
	end = batch_end(c);
	if (end == 0 || p[end - 5] != SP_FE_FLUSH)
		return false;
	while (pos + 5 < end) {
		uint32_t len = sp_get_be32(p + pos + 1);
		if (len < 5 || (p[pos] != SP_FE_PARSE && (p[pos] != SP_FE_DESCRIBE || p[pos + 5] != 'S')))
			return false;
		pos += 1 + (size_t)len;
	}
	return pos + 5 == end;
}

static void merge_target(sp_target_t *acc, const sp_target_t *t, bool *have)
{
	if (acc->kind == SP_TARGET_ERROR)
		return;
	/* a read only if every statement of the batch is one */
	acc->read = acc->read && t->read && !t->write;
	if (t->kind == SP_TARGET_ERROR) {
		*acc = *t;
		return;
	}
	acc->write |= t->write;
	if (t->txnop == SP_TXNOP_BEGIN) {
		acc->txnop = SP_TXNOP_BEGIN;
		acc->read_only = t->read_only;
	}
	if (t->kind == SP_TARGET_ANY || t->kind == SP_TARGET_LOCAL)
		return;
	if (t->kind == SP_TARGET_FANOUT && !*have) {
		/* keep the whole target: merge plan, sum mode */
		bool w = acc->write, rd = acc->read;
		sp_txnop_t op = acc->txnop;
		bool ro = acc->read_only;
		*acc = *t;
		acc->write |= w;
		acc->read = rd;
		if (op == SP_TXNOP_BEGIN) {
			acc->txnop = op;
			acc->read_only = ro;
		}
		*have = true;
		return;
	}
	if (!*have) {
		acc->kind = t->kind;
		acc->shard = t->shard;
		acc->shard_mask = t->shard_mask;
		*have = true;
		return;
	}
	if (t->kind != SP_TARGET_SHARD || acc->kind != SP_TARGET_SHARD || t->shard != acc->shard) {
		acc->kind = SP_TARGET_ERROR;
		snprintf(acc->sqlstate, sizeof(acc->sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
		snprintf(acc->message, sizeof(acc->message),
			 "statements sent together before one Sync need different shards");
		snprintf(acc->hint, sizeof(acc->hint), "Send them in separate transactions, or give them the same shard key.");
	}
}

/* Route the extended-protocol messages up to end; in_txn_shard as for sp_router_query. */
/* What the Binds of a batch are: only BEGIN, only COMMIT/ROLLBACK, or anything. */
/* The command tag of a SAVEPOINT, RELEASE or ROLLBACK TO, else NULL. */
static const char *savepoint_tag(const char *sql, size_t len)
{
	char w[16];
	first_word(sql, len, w, sizeof(w));
	return strcmp(w, "SAVEPOINT") == 0  ? "SAVEPOINT"
	       : strcmp(w, "RELEASE") == 0  ? "RELEASE"
	       : strcmp(w, "ROLLBACK") == 0 ? "ROLLBACK"
					    : NULL;
}

/* Add a statement to the virtual transaction's BEGIN, to run with it on the shard its
 * first statement with a key picks. */
static bool defer_to_begin(sp_client_t *c, const char *sql, size_t len)
{
	size_t bl = c->begin_sql ? strlen(c->begin_sql) : 0;
	char *nb;
	if (!c->begin_sql || !(nb = realloc(c->begin_sql, bl + 1 + len + 1)))
		return false;
	nb[bl] = ';';
	memcpy(nb + bl + 1, sql, len);
	nb[bl + 1 + len] = 0;
	c->begin_sql = nb;
	return true;
}

typedef struct batch_kind {
	int binds, begins, ends, rollbacks;
	int others; /* Describe, Execute, FunctionCall, unnamed Parse: need a server */
	int execs, funcs, unnamed_parses;
	bool flush_end; /* the batch ends with a Flush, not a Sync */
	const char *begin_sql; /* inside the client's input: valid until the batch is consumed */
	size_t begin_len;
	int savepoints; /* SAVEPOINT, RELEASE, ROLLBACK TO (savepoint_sql, as begin_sql) */
	const char *savepoint_sql;
	/* a batch of statements on different shards, split by shard (see split_batch): each
	 * Bind's shard in c->bind_shards (-1: any), in Bind order */
	bool split;
} batch_kind_t;

/* Does sql hold anything but blanks after a ';'? (A ';' in a string only makes us
 * careful: the statement then goes to a server instead of being answered here.) */
static bool more_after_semicolon(const char *sql)
{
	const char *semi = strchr(sql, ';');
	if (!semi)
		return false;
	for (const char *q = semi + 1; *q; q++)
		if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != ';')
			return true;
	return false;
}

/* Free a scratch array that grew past keep elements (one huge Bind or batch). */
static void give_back(void *pp, int *cap, int keep)
{
	if (*cap > keep) {
		free(*(void **)pp);
		*(void **)pp = NULL;
		*cap = 0;
	}
}

/* Give back the routing scratch that one huge Bind (thousands of parameters) or batch
 * (thousands of Binds) grew; the previous batch is done with it. */
static void trim_bind_scratch(sp_client_t *c)
{
	give_back(&c->bind_vals, &c->cap_bind_vals, 4096);
	give_back(&c->bind_lens, &c->cap_bind_lens, 4096);
	give_back(&c->bind_expanded, &c->cap_bind_expanded, 4096);
	give_back(&c->bind_fmts, &c->cap_bind_fmts, 4096);
	give_back(&c->bind_shards, &c->cap_bind_shards, 4096);
	give_back(&c->rw_used, &c->cap_rw_used, 4096);
	if (c->split_texts.cap > 256 * 1024)
		sp_buf_free(&c->split_texts);
	if (c->rw_text.cap > 256 * 1024)
		sp_buf_free(&c->rw_text);
}

/*
 * Whether a batch can be split by shard (split_batch): every Bind routed to one shard
 * (or any), no transaction control, no portal used that the batch did not bind.
 */
typedef struct split_state {
	bool ok, multi;
	int first;	  /* the first Bind's shard */
	int noted;	  /* Binds noted */
	uint64_t mask;	  /* the shards of the Binds */
	int n_portals;
	const char *portals[8]; /* named portals bound so far (the unnamed one: "" always counts) */
	bool unnamed;
} split_state_t;

/* A split INSERT among other Binds: its per-shard texts are kept (the router's buffers
 * are reused by the next Bind). False when out of memory or too many. */
static bool split_group(sp_client_t *c, const sp_target_t *t, int bind)
{
	if (c->n_split_groups >= 256 ||
	    !sp_grow_array(&c->split_groups, &c->cap_split_groups, c->n_split_groups + 1, sizeof(sp_split_group_t)))
		return false;
	sp_split_group_t *g = &c->split_groups[c->n_split_groups];
	g->bind = bind;
	g->mask = t->shard_mask;
	for (int i = 0; i < 64; i++) {
		if (!(g->mask & (1ULL << i)))
			continue;
		const char *txt = (const char *)t->sql[i].data;
		size_t at = sp_buf_len(&c->split_texts);
		if (at > UINT32_MAX / 2 || !sp_buf_append(&c->split_texts, txt, strlen(txt) + 1))
			return false;
		g->off[i] = (uint32_t)at;
	}
	c->n_split_groups++;
	return true;
}

static void split_note(sp_client_t *c, const sp_target_t *t, const char *portal, split_state_t *st)
{
	int shard = t->kind == SP_TARGET_SHARD ? t->shard : -1;
	bool group = t->kind == SP_TARGET_FANOUT && t->fanout_sum && t->per_shard_sql && !t->fanout_merge &&
		     !t->fanout_first;
	if (!st->ok)
		return;
	if ((t->kind != SP_TARGET_SHARD && t->kind != SP_TARGET_ANY && !group) || t->txnop != SP_TXNOP_NONE ||
	    t->session_changed || t->copy.mode != SP_ROUTER_COPY_NONE || shard >= 64) {
		st->ok = false;
		return;
	}
	if (*portal) {
		if (st->n_portals == (int)(sizeof(st->portals) / sizeof(st->portals[0]))) {
			st->ok = false;
			return;
		}
		st->portals[st->n_portals++] = portal;
	} else {
		st->unnamed = true;
	}
	if (!sp_grow_array(&c->bind_shards, &c->cap_bind_shards, c->n_bind_shards + 1, sizeof(int16_t))) {
		st->ok = false;
		return;
	}
	if (st->noted++ == 0) {
		c->n_bind_shards = 0; /* the first Bind of this batch */
		c->n_split_groups = 0;
		sp_buf_reset(&c->split_texts);
	}
	if (group) {
		if (!split_group(c, t, c->n_bind_shards)) {
			st->ok = false;
			return;
		}
		c->bind_shards[c->n_bind_shards++] = -2;
		st->multi = true; /* several shards already */
		st->mask |= t->shard_mask;
		return;
	}
	c->bind_shards[c->n_bind_shards++] = (int16_t)shard;
	if (shard < 0)
		return;
	if (st->mask && !(st->mask & (1ULL << shard)))
		st->multi = true;
	if (st->first < 0)
		st->first = shard;
	st->mask |= 1ULL << shard;
}

/* Was the portal (a name inside the batch) bound earlier in the same batch? */
static bool split_bound(const split_state_t *st, const char *portal)
{
	if (!*portal)
		return st->unnamed;
	for (int i = 0; i < st->n_portals; i++)
		if (strcmp(st->portals[i], portal) == 0)
			return true;
	return false;
}

/*
 * The parameter types a Parse declared: after its SQL (sql, sql_len bytes and a NUL, inside a
 * Parse body that ends at end) come an int16 count and that many int32 OIDs. Returns
 * the count (0 when none or malformed) and sets *oids to the first, big-endian.
 */
static int parse_param_types(const char *sql, size_t sql_len, const uint8_t *end, const uint8_t **oids)
{
	const uint8_t *q = (const uint8_t *)sql + sql_len + 1;
	int n;
	*oids = NULL;
	if (q + 2 > end)
		return 0;
	n = (int16_t)(q[0] << 8 | q[1]);
	if (n <= 0 || q + 2 + 4 * (size_t)n > end)
		return 0;
	*oids = q + 2;
	return n;
}

static void route_batch(sp_client_t *c, size_t end, int in_txn_shard, sp_target_t *out, batch_kind_t *bk)
{
	trim_bind_scratch(c);
	memset(bk, 0, sizeof(*bk));
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0;
	const char *unnamed_sql = NULL;
	const uint8_t *unnamed_end = NULL, *last_parse_end = NULL;
	bool have = false;
	int n_exec = 0, n_sync = 0, n_bind = 0;
	bool exec_limit = false, named_parses = false;
	const char *last_parse_name = NULL, *last_parse_sql = NULL;
	split_state_t sp_state = {.ok = in_txn_shard < 0 && !c->virtual_txn, .first = -1};

	sp_router_target_init(out); /* not memset: the target is kilobytes of arrays */
	out->read = true;
	while (pos < end) {
		uint32_t len = sp_get_be32(p + pos + 1);
		const uint8_t *body = p + pos + 5;
		sp_msg_reader_t r;
		const char *name, *stmt;
		sp_msg_reader_init(&r, body, len - 4);
		if (p[pos] == SP_FE_DESCRIBE || p[pos] == SP_FE_EXECUTE || p[pos] == SP_FE_FUNCTION_CALL)
			bk->others++;
		bk->flush_end = p[pos] == SP_FE_FLUSH;
		if (p[pos] == SP_FE_EXECUTE)
			bk->execs++;
		else if (p[pos] == SP_FE_FUNCTION_CALL)
			bk->funcs++;
		if (p[pos] == SP_FE_PARSE && pq_getmsgstring(&r, &name, NULL) && pq_getmsgstring(&r, &stmt, NULL)) {
			if (!*name) {
				unnamed_sql = stmt;
				unnamed_end = body + len - 4;
				bk->others++;
				bk->unnamed_parses++;
			} else {
				named_parses = true;
				last_parse_name = name;
				last_parse_sql = stmt;
				last_parse_end = body + len - 4;
			}
		} else if (p[pos] == SP_FE_BIND && pq_getmsgstring(&r, &name, NULL) && pq_getmsgstring(&r, &stmt, NULL)) {
			const char *sql = NULL;
			const uint8_t *sql_end = NULL, *ptypes = NULL;
			int nptypes = 0;
			int16_t nf = 0, np = 0;
			int16_t *fmts;
			const uint8_t **vals;
			int32_t *lens;
			bool ok = true;
			if (!*stmt) {
				if (unnamed_sql) {
					sql = unnamed_sql;
					sql_end = unnamed_end;
				} else if (c->unnamed_parse) {
					sql = (const char *)c->unnamed_parse + 6; /* type, length, "" */
					sql_end = c->unnamed_parse + 1 + sp_get_be32(c->unnamed_parse + 1);
				}
			} else {
				/* A Parse of this name earlier in the batch wins over the client's map
				 * (the last one seen answers the Binds of a long batch at once). */
				size_t q = 0;
				if (last_parse_name && strcmp(last_parse_name, stmt) == 0) {
					sql = last_parse_sql;
					sql_end = last_parse_end;
				}
				while (!sql && named_parses && q < pos) {
					uint32_t l2 = sp_get_be32(p + q + 1);
					if (p[q] == SP_FE_PARSE && strcmp((const char *)p + q + 5, stmt) == 0) {
						sql = (const char *)p + q + 5 + strlen(stmt) + 1;
						sql_end = p + q + 1 + l2;
					}
					q += 1 + l2;
				}
				if (!sql) {
					sp_pstmt_t *ps = sp_pstmt_map_get(&c->pstmts, stmt);
					if (ps) {
						sql = (const char *)ps->body;
						sql_end = ps->body + ps->body_len;
					}
				}
			}
			size_t sql_len = sql ? strlen(sql) : 0;
			if (sql && sql_end)
				nptypes = parse_param_types(sql, sql_len, sql_end, &ptypes);
			if (pq_getmsgint16(&r, &nf) && nf >= 0 && sp_grow_array(&c->bind_fmts, &c->cap_bind_fmts, nf, sizeof(int16_t))) {
				fmts = c->bind_fmts;
				for (int i = 0; i < nf && ok; i++)
					ok = pq_getmsgint16(&r, &fmts[i]);
			} else {
				ok = false;
				fmts = NULL;
			}
			/* as many parameters as the protocol allows (a multi-row INSERT has
			 * hundreds): a Bind not routed would run on the default shard */
			if (ok && pq_getmsgint16(&r, &np) && np >= 0 &&
			    sp_grow_array(&c->bind_vals, &c->cap_bind_vals, np, sizeof(*vals)) &&
			    sp_grow_array(&c->bind_lens, &c->cap_bind_lens, np, sizeof(*lens)) &&
			    sp_grow_array(&c->bind_expanded, &c->cap_bind_expanded, np, sizeof(int16_t))) {
				vals = c->bind_vals;
				lens = c->bind_lens;
				for (int i = 0; i < np && ok; i++) {
					ok = pq_getmsgint32(&r, &lens[i]);
					vals[i] = NULL;
					if (ok && lens[i] >= 0)
						ok = pq_getmsgbytes(&r, (size_t)lens[i], &vals[i]);
				}
				if (ok) {
					int16_t *expanded = c->bind_expanded;
					for (int i = 0; i < np; i++)
						expanded[i] = nf == 0 ? 0 : nf == 1 ? fmts[0] : (i < nf ? fmts[i] : 0);
					if (sql) {
						sp_target_t t;
						sp_plan_t *plan = sp_router_prepare(c->db, sql, sql_len);
						if (plan) {
							sp_router_bind(c->db, &c->rsess, plan, np, vals, lens, expanded, ptypes,
								       nptypes, in_txn_shard, &t);
							sp_plan_unref(plan);
							merge_target(out, &t, &have);
							bk->binds++;
							split_note(c, &t, name, &sp_state);
							if (t.txnop != SP_TXNOP_NONE && t.kind == SP_TARGET_ANY &&
							    more_after_semicolon(sql)) {
								/* "BEGIN; SELECT 1" as one prepared statement: the
								 * server refuses it (42601), never answered here */
								bk->others++;
							} else if (t.txnop == SP_TXNOP_BEGIN && t.kind == SP_TARGET_ANY) {
								bk->begins++;
								bk->begin_sql = sql;
								bk->begin_len = strlen(sql);
							} else if (t.txnop == SP_TXNOP_OTHER &&
								   t.kind == SP_TARGET_ANY &&
								   savepoint_tag(sql,
										 strlen(sql))) {
								bk->savepoints++;
								bk->savepoint_sql = sql;
							} else if ((t.txnop == SP_TXNOP_COMMIT ||
								    t.txnop == SP_TXNOP_ROLLBACK) &&
								   t.kind == SP_TARGET_ANY) {
								bk->ends++;
								if (t.txnop == SP_TXNOP_ROLLBACK)
									bk->rollbacks++;
							}
						}
					}
				}
			}
		} else if (p[pos] == SP_FE_FUNCTION_CALL) {
			out->write = true;
			sp_state.ok = false;
		} else if (p[pos] == SP_FE_EXECUTE) {
			if (!split_bound(&sp_state, (const char *)body))
				sp_state.ok = false;
			n_exec++;
			if (len >= 9 && (int32_t)sp_get_be32(p + pos + len - 3) > 0)
				exec_limit = true;
		} else if (p[pos] == SP_FE_SYNC) {
			n_sync++;
		}
		if (p[pos] == SP_FE_BIND)
			n_bind++;
		else if ((p[pos] == SP_FE_DESCRIBE || p[pos] == SP_FE_CLOSE) && len >= 6 && body[0] == 'P' &&
			 !split_bound(&sp_state, (const char *)body + 1))
			sp_state.ok = false;
		else if (p[pos] == SP_FE_QUERY || (p[pos] == SP_FE_SYNC && pos + 1 + len != end))
			sp_state.ok = false;
		pos += 1 + len;
	}
	if (n_exec == 0)
		out->read = out->read && !out->write;
	if (out->kind == SP_TARGET_ANY && !have && unnamed_sql) {
		/* Parse/Describe without Bind: any shard can describe it. */
		sp_plan_t *plan = sp_router_prepare(c->db, unnamed_sql, strlen(unnamed_sql));
		if (plan) {
			sp_target_t t;
			if (sp_router_bind(c->db, &c->rsess, plan, 0, NULL, NULL, NULL, NULL, 0, in_txn_shard, &t) &&
			    t.kind != SP_TARGET_ERROR && t.kind != SP_TARGET_FANOUT)
				merge_target(out, &t, &have);
			sp_plan_unref(plan);
		}
	}
	if (out->kind == SP_TARGET_FANOUT &&
	    ((n_exec == 0 && n_bind > 0 && (c->virtual_txn || n_sync == 0)) || (exec_limit && c->virtual_txn))) {
		/* A portal that outlives this batch (inside a transaction, or before a Flush)
		 * would be read later from one shard only: never a silently partial result. */
		out->kind = SP_TARGET_ERROR;
		snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
		snprintf(out->message, sizeof(out->message),
			 "this statement needs several shards, and its portal would stay open for a later Execute%s; shardpool runs a statement over several shards only as Bind, Execute and Sync together",
			 c->virtual_txn ? " inside the transaction (a cursor or a fetch size)" : "");
		snprintf(out->hint, sizeof(out->hint),
			 "Read the whole result at once (no fetch size or cursor), run it outside the transaction, or add a condition on the shard key.");
	} else if (out->kind == SP_TARGET_FANOUT && n_exec == 0) {
		/* Parse/Bind/Describe without Execute: any shard can answer. */
		out->kind = SP_TARGET_ANY;
	} else if (out->kind == SP_TARGET_FANOUT &&
		   (n_exec > 1 || n_sync != 1 || (out->per_shard_sql && n_bind != 1) ||
		    out->copy.mode != SP_ROUTER_COPY_NONE)) {
		/* a rewrite's per-shard text (router buffers) stays valid only as long as no
		 * other Bind was routed after it: one Bind then */
		out->kind = SP_TARGET_ERROR;
		snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
		snprintf(out->message, sizeof(out->message),
			 "this statement needs several shards; with the extended protocol shardpool runs such a statement only alone between two Syncs (one Bind, one Execute)%s",
			 out->copy.mode != SP_ROUTER_COPY_NONE ? ", and COPY only with the simple query protocol" : "");
		snprintf(out->hint, sizeof(out->hint),
			 "Add a condition on the shard key, send the statement alone before a Sync, or use the simple query protocol.");
	}
	if (out->kind == SP_TARGET_LOCAL)
		out->kind = SP_TARGET_ANY;
	if (sp_state.ok && sp_state.multi && n_bind == bk->binds && n_bind > 1 && n_sync == 1 && !bk->flush_end &&
	    out->copy.mode == SP_ROUTER_COPY_NONE) {
		/* every Bind has its one shard, and they differ: the batch is split by shard */
		bool w = out->write, rd = out->read;
		sp_router_target_init(out);
		out->kind = SP_TARGET_FANOUT;
		out->shard_mask = sp_state.mask;
		out->write = w;
		out->read = rd;
		bk->split = true;
	} else if (out->kind == SP_TARGET_ERROR && bk->flush_end && in_txn_shard < 0 &&
		   !c->virtual_txn && strncmp(out->message, "statements sent together", 24) == 0) {
		/* not split because the client asks for answers before its Sync */
		snprintf(out->hint, sizeof(out->hint),
			 "Outside a transaction shardpool splits such a batch by shard only when "
			 "it comes whole before "
			 "its Sync; this one asks for answers first (a Flush, as psycopg's "
			 "executemany(returning=True) "
			 "sends). Send it without returning=True, one statement at a time, or with "
			 "one shard key.");
	}
}

static void start_transaction(sp_client_t *c);

/* Drop extended-protocol messages up to and including the batch end, after an error. */
static void consume_batch_status(sp_client_t *c, size_t end, char status);

static void consume_batch(sp_client_t *c, size_t end)
{
	consume_batch_status(c, end, 0);
}

/* status: the ReadyForQuery status to answer a Sync with (0: the client's own). */
static void consume_batch_status(sp_client_t *c, size_t end, char status)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0;
	bool synced = false;
	while (pos < end) {
		uint32_t len = sp_get_be32(p + pos + 1);
		if (p[pos] == SP_FE_SYNC)
			synced = true;
		pos += 1 + len;
	}
	sp_buf_consume(&c->sock.in, end);
	if (synced)
		local_reply(c, NULL, status ? status : virtual_status(c));
	else
		c->skip_to_sync = true;
}

/* A BEGIN or an empty transaction's end is an extended batch shardpool answers itself, as
 * PostgreSQL would: ParseComplete, BindComplete, NoData, CommandComplete, ReadyForQuery. */
/*
 * The length of a leading [Parse] Bind Execute of one statement when more messages
 * than a Sync follow it before the batch's end; 0 otherwise. (Whether that statement
 * is a BEGIN is the router's to say.)
 */
static size_t begin_prefix(sp_client_t *c, size_t end)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	size_t pos = 0;
	if (pos < end && p[pos] == SP_FE_PARSE)
		pos += 1 + sp_get_be32(p + pos + 1);
	if (pos >= end || p[pos] != SP_FE_BIND)
		return 0;
	pos += 1 + sp_get_be32(p + pos + 1);
	if (pos >= end || p[pos] != SP_FE_EXECUTE)
		return 0;
	pos += 1 + sp_get_be32(p + pos + 1);
	if (pos >= end || p[pos] == SP_FE_SYNC)
		return 0;
	return pos;
}

static void emulate_batch(sp_client_t *c, size_t end, const char *tag, char status)
{
	const uint8_t *p = sp_buf_head(&c->sock.in);
	sp_buf_t *out = &c->sock.out;
	size_t pos = 0;
	while (pos < end) {
		uint32_t len = sp_get_be32(p + pos + 1);
		const uint8_t *body = p + pos + 5;
		sp_msg_reader_t r;
		const char *name;
		size_t nlen;
		uint8_t kind;
		sp_msg_reader_init(&r, body, len - 4);
		switch (p[pos]) {
		case SP_FE_PARSE:
			if (pq_getmsgstring(&r, &name, &nlen) && *name && tracking_statements(c)) {
				sp_pstmt_t *ps = intern_statement(c, body + nlen + 1, len - 4 - nlen - 1);
				if (ps) {
					sp_pstmt_map_put(&c->pstmts, name, ps);
					sp_pstmt_unref(ps);
				}
			}
			sp_msg_write_empty(out, SP_BE_PARSE_COMPLETE);
			break;
		case SP_FE_BIND:
			sp_msg_write_empty(out, SP_BE_BIND_COMPLETE);
			break;
		case SP_FE_DESCRIBE:
			if (pq_getmsgbyte(&r, &kind) && kind == 'S') {
				size_t at = sp_msg_begin(out, SP_BE_PARAMETER_DESCRIPTION);
				pq_sendint16(out, 0);
				sp_msg_end(out, at);
			}
			sp_msg_write_empty(out, SP_BE_NO_DATA);
			break;
		case SP_FE_EXECUTE:
			sp_msg_write_command_complete(out, tag);
			break;
		case SP_FE_CLOSE:
			if (pq_getmsgbyte(&r, &kind) && kind == 'S' && pq_getmsgstring(&r, &name, NULL) && *name)
				sp_pstmt_map_del(&c->pstmts, name);
			sp_msg_write_empty(out, SP_BE_CLOSE_COMPLETE);
			break;
		case SP_FE_SYNC:
			sp_msg_write_ready_for_query(out, status);
			c->txn = status;
			break;
		default:
			break;
		}
		pos += 1 + len;
	}
	sp_buf_consume(&c->sock.in, end);
}

/*
 * The batch's first end bytes are a BEGIN (bk->begin_sql): answer it here and keep it
 * for the server the transaction's first statement with a shard lands on.
 */
static void open_virtual_txn(sp_client_t *c, const batch_kind_t *bk, bool read_only, size_t end)
{
	char w[16];
	first_word(bk->begin_sql, bk->begin_len, w, sizeof(w));
	c->begin_sql = strndup(bk->begin_sql, bk->begin_len);
	c->virtual_txn = true;
	c->virtual_failed = false;
	c->txn_read_only = read_only;
	emulate_batch(c, end, strcmp(w, "START") == 0 ? "START TRANSACTION" : "BEGIN", SP_TXN_BLOCK);
	c->txn = SP_TXN_BLOCK; /* also when the batch goes on past its BEGIN (no Sync yet) */
}

/*
 * Read-your-writes needs the WAL position after each write transaction (see
 * transaction_done in server.c). For one autocommit write statement in a Query, the
 * position query can go to the server right behind it, in the same send: the server
 * runs it as soon as the write commits, and the proxy and server save a round trip.
 * Only where the statement surely ends with the server idle and reading Queries: one
 * statement, not BEGIN/COMMIT/SAVEPOINT..., not COPY (a Query in COPY FROM STDIN data
 * would fail the COPY), not CALL or DO (a procedure may COMMIT and go on).
 */
static bool lsn_pipelinable(const sp_client_t *c, const sp_target_t *t, const char *sql, size_t len)
{
	char w[8];
	if (!sp_g.cfg->read_your_writes || !c->written_lsn || c->pool_mode == SP_POOL_SESSION || c->virtual_txn ||
	    t->kind == SP_TARGET_FANOUT || t->n_stmts != 1 || t->txnop != SP_TXNOP_NONE || c->txn != SP_TXN_IDLE)
		return false;
	first_word(sql, len, w, sizeof(w));
	return strcmp(w, "INSERT") == 0 || strcmp(w, "UPDATE") == 0 || strcmp(w, "DELETE") == 0 ||
	       strcmp(w, "MERGE") == 0 || strcmp(w, "WITH") == 0 || strcmp(w, "SELECT") == 0;
}

/*
 * Decide where the transaction starting with the message(s) at the head of
 * the input goes, or answer it here. Returns false to wait for more input.
 */
static bool route_idle(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;
	const uint8_t *p = sp_buf_head(in);
	uint32_t len = sp_get_be32(p + 1);
	char type = (char)p[0];
	sp_target_t t;

	c->lsn_pipeline = false;
	if (!valid_header(type, len)) {
		sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d or length %u",
				(int)(unsigned char)type, len);
		return true;
	}
	if (type == SP_FE_COPY_DATA || type == SP_FE_COPY_DONE || type == SP_FE_COPY_FAIL) {
		/* Outside COPY these are ignored, as PostgreSQL does. */
		if (sp_buf_len(in) < (size_t)len + 1)
			return false;
		sp_buf_consume(in, (size_t)len + 1);
		return true;
	}
	if (c->skip_to_sync) {
		if (sp_buf_len(in) < (size_t)len + 1)
			return false;
		sp_buf_consume(in, (size_t)len + 1);
		if (type == SP_FE_SYNC) {
			c->skip_to_sync = false;
			local_reply(c, NULL, virtual_status(c));
		}
		return true;
	}
	if (type == SP_FE_QUERY) {
		const char *sql = (const char *)p + 5;
		if (sp_buf_len(in) < (size_t)len + 1) {
			if (!sp_buf_reserve(in, (size_t)len + 1 - sp_buf_len(in)))
				sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			return false;
		}
		if (len < 5 || p[len] != 0) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid Query message: string not terminated");
			return true;
		}
		sp_router_query(c->db, &c->rsess, sql, len - 5, -1, &t);
		if (c->virtual_txn && c->virtual_failed && t.txnop != SP_TXNOP_COMMIT && t.txnop != SP_TXNOP_ROLLBACK) {
			sp_buf_consume(in, (size_t)len + 1);
			local_error(c, "25P02", "current transaction is aborted, commands ignored until end of transaction block", NULL, true);
			return true;
		}
		if (t.kind == SP_TARGET_ERROR) {
			sp_buf_consume(in, (size_t)len + 1);
			local_error(c, t.sqlstate, t.message, t.hint, true);
			return true;
		}
		if (t.kind == SP_TARGET_LOCAL) {
			sp_buf_consume(in, (size_t)len + 1);
			local_reply(c, t.local_tag, virtual_status(c));
			return true;
		}
		if (t.txnop == SP_TXNOP_BEGIN && t.kind == SP_TARGET_ANY && !c->virtual_txn && t.n_stmts == 1) {
			/* Which shard (and whether a replica) is known only from the next statement.
			 * A BEGIN alone: "SELECT 1; BEGIN" runs its SELECT now, on a server. */
			char w[16];
			first_word(sql, len - 5, w, sizeof(w));
			c->begin_sql = strndup(sql, len - 5);
			c->virtual_txn = true;
			c->virtual_failed = false;
			c->txn_read_only = t.read_only;
			sp_buf_consume(in, (size_t)len + 1);
			local_reply(c, strcmp(w, "START") == 0 ? "START TRANSACTION" : "BEGIN", SP_TXN_BLOCK);
			return true;
		}
		if (c->virtual_txn && t.kind == SP_TARGET_ANY &&
		    (t.txnop == SP_TXNOP_NONE || t.txnop == SP_TXNOP_OTHER) &&
		    (t.txnop == SP_TXNOP_NONE ? !strchr(sql, ';') : t.n_stmts == 1)) {
			/* SET / SET LOCAL before the first statement with a key: it belongs to the
			 * transaction, so it waits with the BEGIN for the shard to be known. So
			 * does a SAVEPOINT (a nested transaction of psycopg, asyncpg, Django or
			 * SQLAlchemy opened before the first statement), and its RELEASE or
			 * ROLLBACK TO. */
			char w[16];
			const char *tag;
			first_word(sql, len - 5, w, sizeof(w));
			tag = t.txnop == SP_TXNOP_NONE ? (strcmp(w, "SET") == 0 ? "SET" : NULL)
						       : savepoint_tag(sql, len - 5);
			if (tag && defer_to_begin(c, sql, len - 5)) {
				sp_buf_consume(in, (size_t)len + 1);
				local_reply(c, tag, SP_TXN_BLOCK);
				return true;
			}
		}
		if (c->virtual_txn && t.kind == SP_TARGET_ANY &&
		    (t.txnop == SP_TXNOP_COMMIT || t.txnop == SP_TXNOP_ROLLBACK)) {
			const char *tag = (t.txnop == SP_TXNOP_ROLLBACK || c->virtual_failed) ? "ROLLBACK" : "COMMIT";
			sp_buf_consume(in, (size_t)len + 1);
			free(c->begin_sql);
			c->begin_sql = NULL;
			c->virtual_txn = c->virtual_failed = false;
			c->rsess.local_shard = -1;
			c->rsess.local_has_key = false;
			c->rsess.local_role = 0;
			local_reply(c, tag, SP_TXN_IDLE);
			return true;
		}
		if (t.kind == SP_TARGET_FANOUT) {
			if (c->virtual_txn && t.write) {
				sp_buf_consume(in, (size_t)len + 1);
				local_error(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "this statement needs several shards, which is not possible inside a transaction",
					    "Run it outside the transaction, or add a condition on the shard key.", true);
				return true;
			}
			{
				uint8_t *copy = malloc((size_t)len + 1);
				if (!copy) {
					sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
					return true;
				}
				memcpy(copy, p, (size_t)len + 1);
				sp_buf_consume(in, (size_t)len + 1);
				sp_fanout_start(c, &t, copy, (size_t)len + 1, t.write);
				free(copy);
			}
			return true;
		}
		c->pool = choose_pool(c, t.kind == SP_TARGET_SHARD ? t.shard : -1, t.write, t.read);
		if (!c->pool) {
			if (!c->causal_waiting)
				sp_buf_consume(in, (size_t)len + 1);
			return true;
		}
		c->prerouted = true;
		c->lsn_pipeline = c->txn_wrote && lsn_pipelinable(c, &t, sql, len - 5);
		start_transaction(c);
		return true;
	}
	if (type == SP_FE_FUNCTION_CALL) {
		c->pool = choose_pool(c, -1, true, false);
		if (!c->pool) {
			if (sp_buf_len(in) >= (size_t)len + 1)
				sp_buf_consume(in, (size_t)len + 1);
			return true;
		}
		c->prerouted = true;
		start_transaction(c);
		return true;
	}
	{
		size_t end = batch_end(c);
		if (end == 0) {
			if (sp_buf_len(in) < 1024 * 1024)
				return false;
			end = whole_messages(c); /* no Sync in sight: route by what is here */
		}
		if (!batch_messages_ok(c, end))
			return true;
		batch_kind_t last_batch;
		size_t pre = c->db->n_shards > 1 && !c->virtual_txn ? begin_prefix(c, end) : 0;
		if (pre) {
			/* JDBC with autocommit off: BEGIN's Parse/Bind/Execute, then the first
			 * statement, before one Sync. The BEGIN is answered here, as when it comes
			 * alone, and the rest is routed on its own: a read over every shard can
			 * then open the transaction as it can after a lone BEGIN. */
			route_batch(c, pre, -1, &t, &last_batch);
			if (t.kind == SP_TARGET_ANY && last_batch.binds == 1 && last_batch.begins == 1 &&
			    last_batch.execs == 1) {
				open_virtual_txn(c, &last_batch, t.read_only, pre);
				return true;
			}
		}
		route_batch(c, end, -1, &t, &last_batch);
		cl_log(c, SP_LOG_TRACE, "batch of %zu bytes: %d binds (%d BEGIN, %d COMMIT/ROLLBACK), target %d shard %d",
		       end, last_batch.binds, last_batch.begins, last_batch.ends, (int)t.kind, t.shard);
		if (t.kind != SP_TARGET_ERROR && last_batch.binds > 0 && last_batch.begins == last_batch.binds &&
		    last_batch.binds == 1 && !c->virtual_txn) {
			/* BEGIN alone: the shard is known only from the next statement */
			open_virtual_txn(c, &last_batch, t.read_only, end);
			return true;
		}
		if (t.kind != SP_TARGET_ERROR && c->virtual_txn && last_batch.binds == 0 && last_batch.others == 0 &&
		    tracking_statements(c)) {
			/* Named Parse(s) only, before the transaction has a shard: answered here
			 * (each server gets the statement when a Bind needs it), so preparing does
			 * not bind the transaction to the default shard. */
			emulate_batch(c, end, NULL, virtual_status(c));
			return true;
		}
		if (t.kind != SP_TARGET_ERROR && c->virtual_txn && !c->virtual_failed &&
		    last_batch.binds == 1 && last_batch.savepoints == 1 && last_batch.execs == 1 &&
		    defer_to_begin(c, last_batch.savepoint_sql, strlen(last_batch.savepoint_sql))) {
			/* a SAVEPOINT (psycopg's nested transaction()) before the transaction's
			 * first statement with a key: it waits with the BEGIN, as a Query's does */
			emulate_batch(c, end,
				      savepoint_tag(last_batch.savepoint_sql,
						    strlen(last_batch.savepoint_sql)),
				      SP_TXN_BLOCK);
			return true;
		}
		if (t.kind != SP_TARGET_ERROR && last_batch.binds > 0 && last_batch.ends == last_batch.binds &&
		    last_batch.binds == 1 && c->virtual_txn) {
			bool rb = last_batch.rollbacks > 0 || c->virtual_failed;
			free(c->begin_sql);
			c->begin_sql = NULL;
			c->virtual_txn = c->virtual_failed = false;
			c->rsess.local_shard = -1;
			c->rsess.local_has_key = false;
			c->rsess.local_role = 0;
			emulate_batch(c, end, rb ? "ROLLBACK" : "COMMIT", SP_TXN_IDLE);
			return true;
		}
		if (t.kind == SP_TARGET_ERROR || (c->virtual_txn && c->virtual_failed)) {
			if (t.kind == SP_TARGET_ERROR)
				local_error(c, t.sqlstate, t.message, t.hint, false);
			else
				local_error(c, "25P02", "current transaction is aborted, commands ignored until end of transaction block", NULL, false);
			consume_batch(c, end);
			return true;
		}
		if (t.kind == SP_TARGET_FANOUT) {
			if (c->virtual_txn && t.write) {
				local_error(c, SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
					    "this statement needs several shards, which is not possible inside a transaction",
					    "Run it outside the transaction, or add a condition on the shard key.", false);
				consume_batch(c, end);
				return true;
			}
			if (last_batch.split) {
				sp_fanout_start_split(c, &t, end, t.write, c->bind_shards, c->n_bind_shards,
						      c->split_groups, c->n_split_groups, &c->split_texts);
			} else {
				sp_fanout_start_batch(c, &t, end, t.write);
			}
			return true;
		}
		/* Parse/Describe of named statements up to a Flush (asyncpg, postgres.js: the
		 * Bind with the key comes after the answers): any shard can describe them, and
		 * the server is let go at the Flush, so the Bind is routed by its key and the
		 * statement prepared again wherever that is. */
		c->describe_only = last_batch.flush_end && last_batch.binds == 0 && last_batch.execs == 0 &&
				   last_batch.funcs == 0 && tracking_statements(c) && t.kind == SP_TARGET_ANY;
		c->batch_error = false;
		c->pool = choose_pool(c, t.kind == SP_TARGET_SHARD ? t.shard : -1,
				      t.write || (t.txnop == SP_TXNOP_BEGIN && !t.read_only), t.read);
		if (!c->pool) {
			if (!c->causal_waiting) {
				c->describe_only = false;
				consume_batch(c, end);
			}
			return true;
		}
		c->prerouted = true;
		start_transaction(c);
		return true;
	}
}

/* A statement refused inside an open server transaction: PostgreSQL semantics
 * say the transaction is now failed, so make the server's fail too. */
static void abort_server_txn(sp_client_t *c, sp_server_t *s)
{
	if (c->txn == SP_TXN_FAILED && s->txn == SP_TXN_FAILED && s->req_n == 0)
		return; /* already failed: nothing more to do on the server */
	sp_msg_write_query(&s->sock.out, "DO $sp$BEGIN RAISE EXCEPTION 'statement refused by shardpool'; END$sp$");
	sp_server_push_req(s, SP_REQ_INT_QUERY, NULL, SP_INTQ_ABORT);
	c->txn = SP_TXN_FAILED;
}

/*
 * A routed client inside a transaction bound to a shard: check the next
 * statement before it goes to that shard. Returns 0 to forward it, 1 if it
 * was answered here, -1 to wait (the server is still busy with earlier work).
 */
static int check_in_txn(sp_client_t *c, sp_server_t *s, char type, const uint8_t *p, uint32_t len)
{
	sp_target_t t;
	if (c->prerouted)
		return 0;
	if (s->error_in_batch && s->req_n == 0) {
		c->query_flush_sent = false;
		return 0; /* the server ignores everything up to the Sync: nothing to route */
	}
	if (type == SP_FE_QUERY) {
		if (s->req_n > 0) {
			/* A Query after extended messages without a Sync: PostgreSQL holds their
			 * answers until a Flush, and we hold the Query until they come */
			if (!c->query_flush_sent) {
				sp_msg_write_empty(&s->sock.out, SP_FE_FLUSH);
				sp_server_send(s);
				c->query_flush_sent = true;
			}
			return -1;
		}
		c->query_flush_sent = false;
		if (sp_buf_len(&c->sock.in) < (size_t)len + 1)
			return 0; /* the normal path waits for the whole message */
		sp_router_query(c->db, &c->rsess, (const char *)p + 5, len - 5, s->pool->shard, &t);
		if (t.kind == SP_TARGET_FANOUT) {
			t.kind = SP_TARGET_ERROR;
			snprintf(t.sqlstate, sizeof(t.sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
			snprintf(t.message, sizeof(t.message), "this statement needs several shards, but the transaction is on shard %d", s->pool->shard);
			snprintf(t.hint, sizeof(t.hint), "Run it outside the transaction, or add a condition on the shard key.");
		} else if (t.kind == SP_TARGET_SHARD && t.shard != s->pool->shard) {
			t.kind = SP_TARGET_ERROR;
			snprintf(t.sqlstate, sizeof(t.sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
			snprintf(t.message, sizeof(t.message), "this statement needs shard %d, but the transaction is on shard %d; cross-shard transactions are not supported", t.shard, s->pool->shard);
			snprintf(t.hint, sizeof(t.hint), "Keep each transaction to one shard key, or commit and start another transaction.");
		}
		if (t.kind != SP_TARGET_ERROR) {
			if (t.write && s->pool->role == SP_ROLE_PRIMARY)
				c->txn_wrote = true;
			return 0;
		}
		sp_buf_consume(&c->sock.in, (size_t)len + 1);
		sp_msg_write_error(&c->sock.out, "ERROR", t.sqlstate, t.message, NULL, t.hint[0] ? t.hint : NULL);
		abort_server_txn(c, s);
		sp_msg_write_ready_for_query(&c->sock.out, SP_TXN_FAILED);
		return 1;
	}
	if (type == SP_FE_COPY_DATA || type == SP_FE_COPY_DONE || type == SP_FE_COPY_FAIL || type == SP_FE_SYNC ||
	    type == SP_FE_FLUSH || c->in_batch)
		return 0;
	if (type == SP_FE_FUNCTION_CALL)
		return s->req_n > 0 ? -1 : 0; /* runs where the transaction is */
	/* The first message of an extended batch. */
	if (s->req_n > 0)
		return -1;
	{
		size_t end = batch_end(c);
		if (end == 0)
			return sp_buf_len(&c->sock.in) < 1024 * 1024 ? -1 : 0;
		if (!batch_messages_ok(c, end))
			return 1;
		batch_kind_t bk;
		route_batch(c, end, s->pool->shard, &t, &bk);
		if (t.kind == SP_TARGET_SHARD && t.shard != s->pool->shard) {
			t.kind = SP_TARGET_ERROR;
			snprintf(t.sqlstate, sizeof(t.sqlstate), "%s", SP_SQLSTATE_FEATURE_NOT_SUPPORTED);
			snprintf(t.message, sizeof(t.message), "this statement needs shard %d, but the transaction is on shard %d; cross-shard transactions are not supported", t.shard, s->pool->shard);
		}
		if (t.kind != SP_TARGET_ERROR) {
			if (t.write && s->pool->role == SP_ROLE_PRIMARY)
				c->txn_wrote = true;
			return 0;
		}
		sp_msg_write_error(&c->sock.out, "ERROR", t.sqlstate, t.message, NULL, t.hint[0] ? t.hint : NULL);
		abort_server_txn(c, s);
		consume_batch_status(c, end, SP_TXN_FAILED);
		c->txn = SP_TXN_FAILED;
		return 1;
	}
}

/* "DEALLOCATE [PREPARE] name": the client's protocol-level statement name, if it is one. */
static sp_pstmt_t *deallocates(sp_client_t *c, const char *sql, size_t len, char *name, size_t nlen)
{
	char w[16];
	size_t next = 0, n = 0;
	const char *q;
	if (first_word(sql, len, w, sizeof(w)) == 0 || strcmp(w, "DEALLOCATE") != 0)
		return NULL;
	q = strcasestr(sql, "deallocate") + 10;
	while (*q && isspace((unsigned char)*q))
		q++;
	if (strncasecmp(q, "prepare", 7) == 0 && (isspace((unsigned char)q[7]))) {
		q += 7;
		while (*q && isspace((unsigned char)*q))
			q++;
	}
	if (*q == '"') {
		q++;
		while (*q && *q != '"' && n + 1 < nlen)
			name[n++] = *q++;
		if (*q != '"')
			return NULL;
		q++;
	} else {
		while (*q && ident_char(*q) && n + 1 < nlen)
			name[n++] = (char)tolower((unsigned char)*q++);
	}
	name[n] = 0;
	while (*q && (isspace((unsigned char)*q) || *q == ';'))
		q++;
	(void)next;
	if (!n || *q || strcasecmp(name, "all") == 0)
		return NULL;
	return sp_pstmt_map_get(&c->pstmts, name);
}

/*
 * Simple queries answered without a server between transactions: LISTEN
 * in transaction pooling (refused) and DEALLOCATE of a protocol-level
 * statement (which the server knows under shardpool's shared name).
 * Returns 1 if answered, 0 to go on, -1 to wait for the whole message.
 */
static int idle_query_locally(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;
	const uint8_t *p = sp_buf_head(in);
	uint32_t len = sp_get_be32(p + 1);
	const char *sql = (const char *)p + 5;
	char name[128];
	if (len > 4096)
		return 0; /* a long statement is neither */
	if (sp_buf_len(in) < (size_t)len + 1)
		return -1;
	if (len < 5 || p[len] != 0)
		return 0; /* the normal path reports it */
	int head = head_of(sql, len - 5);
	if (head == HEAD_LISTEN) {
		sp_buf_consume(in, (size_t)len + 1);
		sp_msg_write_error(&c->sock.out, "ERROR", SP_SQLSTATE_FEATURE_NOT_SUPPORTED,
				   "LISTEN is not supported in transaction pooling mode", NULL,
				   "Use a database with pool_mode = session for LISTEN/NOTIFY.");
		sp_msg_write_ready_for_query(&c->sock.out, c->virtual_txn ? virtual_status(c) : SP_TXN_IDLE);
		return 1;
	}
	if (head == HEAD_DEALLOCATE && !c->virtual_txn && deallocates(c, sql, len - 5, name, sizeof(name))) {
		sp_pstmt_map_del(&c->pstmts, name);
		sp_buf_consume(in, (size_t)len + 1);
		local_reply(c, "DEALLOCATE", SP_TXN_IDLE);
		return 1;
	}
	return 0;
}

static void start_transaction(sp_client_t *c)
{
	sp_pool_t *p = c->pool;
	if (p->paused || sp_g.paused) {
		/* PAUSE: the client waits in the queue like any other. */
	}
	sp_client_set_state(c, SP_CLIENT_WAITING);
	c->wait_since = ev_now(sp_loop);
	sp_pool_acquire(p, c);
}

static void process_input(sp_client_t *c);

/*
 * Handle what the client sent, as far as it can go now. Not re-entered: a
 * call made while one is running for the same client (a pool that fails a
 * statement at once, a server callback) only asks the running one to look
 * again, so a long pipeline against an unreachable server cannot recurse
 * once per statement and overflow the stack.
 */
void sp_client_process(sp_client_t *c)
{
	if (c->processing) {
		c->process_again = true;
		return;
	}
	c->processing = true;
	do {
		c->process_again = false;
		process_input(c);
	} while (c->process_again && c->state != SP_CLIENT_CLOSED);
	c->processing = false;
}

static void process_input(sp_client_t *c)
{
	sp_buf_t *in = &c->sock.in;

	while (c->state != SP_CLIENT_CLOSED) {
		switch (c->state) {
		case SP_CLIENT_STARTUP:
			if (!process_startup(c))
				goto out;
			continue;
		case SP_CLIENT_AUTH: {
			uint32_t len;
			const uint8_t *p;
			if (sp_buf_len(in) < 5)
				goto out;
			p = sp_buf_head(in);
			len = sp_get_be32(p + 1);
			if (p[0] != SP_FE_PASSWORD) {
				sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
						"expected password response, got message type %d", p[0]);
				goto out;
			}
			if (len < 4 || len > 65536) {
				sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid password packet size");
				goto out;
			}
			if (sp_buf_len(in) < (size_t)len + 1)
				goto out;
			{
				/* Copied: handling it may run the client further and reuse the buffer. */
				uint8_t *copy = malloc(len);
				if (!copy) {
					sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
					goto out;
				}
				memcpy(copy, p + 5, len - 4);
				sp_buf_consume(in, (size_t)len + 1);
				sp_auth_client_message(c, copy, len - 4);
				free(copy);
			}
			continue;
		}
		case SP_CLIENT_FANOUT:
			if (c->fan && sp_fanout_takes_input(c->fan)) {
				sp_fanout_client_input(c->fan);
				goto out;
			}
			/* fall through */
		case SP_CLIENT_WELCOME:
		case SP_CLIENT_WAITING:
			/* Keep pipelined input in order; stop reading if it piles up. */
			if (sp_buf_len(in) > SP_SOCK_HIGH_WATER)
				sp_sock_read_stop(&c->sock);
			goto out;
		case SP_CLIENT_ADMIN:
			sp_admin_process(c);
			goto out;
		case SP_CLIENT_IDLE: {
			const uint8_t *p;
			if (sp_buf_len(in) < 5)
				goto out;
			p = sp_buf_head(in);
			if (p[0] == SP_FE_TERMINATE) {
				sp_client_close(c, "client terminated");
				goto out;
			}
			if (p[0] == SP_FE_SYNC && sp_get_be32(p + 1) == 4) {
				/* A lone Sync between transactions needs no server. */
				sp_buf_consume(in, 5);
				c->skip_to_sync = false;
				local_reply(c, NULL, virtual_status(c));
				continue;
			}
			if (p[0] == SP_FE_FLUSH && sp_get_be32(p + 1) == 4) {
				sp_buf_consume(in, 5);
				continue;
			}
			if (sp_g.shutting_down) {
				sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "shardpool is shutting down; reconnect later");
				goto out;
			}
			if (!valid_header((char)p[0], sp_get_be32(p + 1))) {
				sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d or length %u",
						p[0], sp_get_be32(p + 1));
				goto out;
			}
			if (c->skip_to_sync) {
				/* the rest of a batch whose statement failed here: dropped up to Sync */
				uint32_t l = sp_get_be32(p + 1);
				char t = (char)p[0];
				if (sp_buf_len(in) < (size_t)l + 1)
					goto out;
				sp_buf_consume(in, (size_t)l + 1);
				if (t == SP_FE_SYNC) {
					c->skip_to_sync = false;
					local_reply(c, NULL, virtual_status(c));
				}
				continue;
			}
			if (p[0] == SP_FE_QUERY && c->pool_mode != SP_POOL_SESSION) {
				int r = idle_query_locally(c);
				if (r < 0)
					goto out;
				if (r > 0)
					continue;
			}
			if (c->routed) {
				if (!route_idle(c))
					goto out;
				continue;
			}
			c->pool = c->home_pool;
			c->describe_only = describe_only_batch(c);
			c->batch_error = false;
			start_transaction(c);
			continue;
		}
		case SP_CLIENT_ACTIVE: {
			sp_server_t *s = c->server;
			const uint8_t *p;
			uint32_t len;
			char type;

			if (s->finishing)
				goto flush_out; /* the transaction is over: next one waits its turn in the pool */
			if (sp_sock_backed_up(&s->sock)) {
				sp_server_send(s);
				if (c->state == SP_CLIENT_CLOSED)
					goto out;
				if (sp_sock_backed_up(&s->sock)) {
					/* the server's write watcher is armed: "drained" resumes us */
					sp_sock_read_stop(&c->sock);
					goto flush_out;
				}
			}
			if (c->fwd_remaining > 0) {
				size_t n = sp_buf_len(in);
				if (n == 0)
					goto flush_out;
				if (n > c->fwd_remaining)
					n = (size_t)c->fwd_remaining;
				forward_raw(s, sp_buf_head(in), n);
				sp_buf_consume(in, n);
				c->fwd_remaining -= n;
				continue;
			}
			if (sp_buf_len(in) < 5)
				goto flush_out;
			p = sp_buf_head(in);
			type = (char)p[0];
			len = sp_get_be32(p + 1);
			if (!valid_header(type, len)) {
				sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
						"invalid frontend message type %d or length %u", (int)(unsigned char)type, len);
				goto out;
			}
			if (type == SP_FE_TERMINATE) {
				sp_buf_consume(in, 5);
				sp_client_close(c, "client terminated");
				goto out;
			}
			if (type != SP_FE_COPY_DATA && type != SP_FE_COPY_DONE &&
			    type != SP_FE_COPY_FAIL) {
				if (c->in_copy) {
					/* as PostgreSQL during COPY FROM STDIN: Flush and Sync
					 * are ignored, anything else ends the session */
					if (type != SP_FE_SYNC && type != SP_FE_FLUSH) {
						sp_client_copy_violation(c, type);
						goto out;
					}
					if (sp_buf_len(in) < (size_t)len + 1)
						goto flush_out;
					sp_buf_consume(in, (size_t)len + 1);
					continue;
				}
				if (sp_server_copy_undecided(s)) {
					/* A Query or Execute before it may start a COPY FROM
					 * STDIN: then this is COPY input (a Sync ignored,
					 * anything else a protocol violation). It waits for the
					 * answer, CopyInResponse or not; the server sends an
					 * Execute's at a Flush (a Query's at its end), which goes
					 * out at flush_out. server.c resumes the client. */
					if (!c->copy_wait && s->n_query_reqs == 0)
						sp_msg_write_empty(&s->sock.out, SP_FE_FLUSH);
					c->copy_wait = true;
					if (sp_buf_len(in) > SP_SOCK_HIGH_WATER)
						sp_sock_read_stop(&c->sock);
					goto flush_out;
				}
			}
			c->copy_wait = false;
			if (c->routed && !c->in_copy) {
				int rc = check_in_txn(c, s, type, p, len);
				if (rc < 0)
					goto flush_out;
				if (rc > 0)
					continue;
			}
			if (streamable(type) && sp_buf_len(in) < (size_t)len + 1) {
				size_t n = sp_buf_len(in);
				s->copy_datas++;
				forward_raw(s, p, n);
				sp_buf_consume(in, n);
				c->fwd_remaining = (uint64_t)len + 1 - n;
				continue;
			}
			if (sp_buf_len(in) < (size_t)len + 1) {
				if (!sp_buf_reserve(in, (size_t)len + 1 - sp_buf_len(in))) {
					sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory for a %u-byte message", len);
					goto out;
				}
				goto flush_out;
			}
			if (!handle_message(c, type, p, (size_t)len + 1))
				goto out;
			sp_buf_consume(in, (size_t)len + 1);
			c->prerouted = false;
			if (type == SP_FE_SYNC || type == SP_FE_QUERY)
				c->in_batch = false;
			else if (type == SP_FE_PARSE || type == SP_FE_BIND || type == SP_FE_DESCRIBE ||
				 type == SP_FE_EXECUTE || type == SP_FE_CLOSE || type == SP_FE_FLUSH)
				c->in_batch = true;
			continue;
		flush_out:
			sp_server_send(s);
			goto out;
		}
		default:
			goto out;
		}
	}
out:
	flush(c);
}

/* ---------------- cancel ---------------- */

typedef struct cancel_conn cancel_conn_t;

static void cancel_cb(sp_sock_t *s, sp_sock_event_t ev)
{
	cancel_conn_t *cc = container_of(s, cancel_conn_t, sock);
	if (ev == SP_SOCK_CONNECTED) {
		if (!sp_sock_flush(s))
			goto done;
		if (sp_buf_len(&s->out) > 0)
			return;
		sp_sock_read_start(s); /* wait for the server to close */
		return;
	}
	if (ev == SP_SOCK_DRAINED) {
		sp_sock_read_start(s);
		return;
	}
	if (ev == SP_SOCK_READ) {
		sp_buf_reset(&s->in);
		return;
	}
done:
	sp_sock_close(s);
	if (cc->requester) {
		/* the requester's connection closes when its last cancel was taken */
		sp_client_t *r = cc->requester;
		struct cancel_conn **pp = (struct cancel_conn **)&r->cancel_wait;
		while (*pp && *pp != cc)
			pp = &(*pp)->next;
		if (*pp)
			*pp = cc->next;
		if (!r->cancel_wait)
			sp_client_close(r, "cancel request handled");
	}
	sp_server_cancel_done(cc->server_id);
	free(cc);
}

/*
 * The address s is connected to, as sp_sock_connect takes it: a CancelRequest must
 * reach that server, not whatever its entry names now (a RELOAD may have changed it)
 * or another address of the same host name.
 */
static bool server_address(const sp_server_t *s, char *host, size_t len, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (s->sock.fd < 0 || getpeername(s->sock.fd, (struct sockaddr *)&ss, &sl) != 0)
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		*port = ntohs(in->sin_port);
		return inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)len) != NULL;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		*port = ntohs(in6->sin6_port);
		return inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)len) != NULL;
	}
	if (ss.ss_family == AF_UNIX) { /* DIR/.s.PGSQL.PORT */
		const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
		const char *base = strrchr(un->sun_path, '/');
		if (!base || sscanf(base, "/.s.PGSQL.%d", port) != 1 || (size_t)(base - un->sun_path) >= len)
			return false;
		memcpy(host, un->sun_path, (size_t)(base - un->sun_path));
		host[base - un->sun_path] = 0;
		return true;
	}
	return false;
}

/* Send PostgreSQL a CancelRequest for what s runs; the requester (if any) waits for it. */
static bool cancel_server(sp_server_t *s, sp_client_t *requester)
{
	cancel_conn_t *cc;
	char host[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int port;
	if (!server_address(s, host, sizeof(host), &port)) {
		if (!s->pool->node)
			return false;
		snprintf(host, sizeof(host), "%s", s->pool->node->host);
		port = s->pool->node->port;
	}
	if (!(cc = calloc(1, sizeof(*cc))))
		return false;
	sp_msg_write_cancel_request(&cc->sock.out, s->be_pid, s->be_key);
	cc->server_id = s->id;
	if (!sp_sock_connect(&cc->sock, host, port, cancel_cb)) {
		sp_buf_free(&cc->sock.out);
		free(cc);
		return false;
	}
	s->cancels_in_flight++;
	if (requester) {
		cc->requester = requester;
		cc->next = requester->cancel_wait;
		requester->cancel_wait = cc;
	}
	return true;
}

void sp_client_cancel_abandoned(sp_server_t *s)
{
	if (s->state != SP_SERVER_CLOSED && sp_server_busy(s) && !sp_server_only_internal(s) &&
	    cancel_server(s, NULL))
		sp_debug("S-%llu: cancelling what it runs before it is closed", (unsigned long long)s->id);
}

bool sp_client_cancel_request(int32_t pid, int32_t key, sp_client_t *requester)
{
	sp_client_t *c;
	for (c = key_buckets[(unsigned)pid % KEY_BUCKETS]; c; c = c->key_next)
		if (c->cancel_pid == pid && c->cancel_key == key)
			break;
	if (!c) {
		sp_debug("cancel request with unknown key ignored");
		return false;
	}
	if (c->is_admin) {
		/* Ctrl-C on a PAUSE or WAIT_CLOSE that waits too long */
		sp_admin_cancel(c);
		return false;
	}
	int sent = 0;
	if (c->server) {
		/* nothing of the client's runs when only shardpool's own follow-up queries
		 * (parameter read-back, WAL position) are left: PostgreSQL ignores a cancel
		 * that comes between statements, and so does shardpool */
		if (!sp_server_only_internal(c->server))
			sent = cancel_server(c->server, requester);
	} else if (c->fan) {
		/* a statement over several shards: every shard's server still running it */
		for (int i = 0; i < sp_fanout_width(c->fan); i++) {
			sp_server_t *s = sp_fanout_server(c->fan, i);
			if (s && sp_server_busy(s))
				sent += cancel_server(s, requester);
		}
	}
	if (!sent && c->state == SP_CLIENT_WAITING && !c->fan && c->pool && sp_buf_len(&c->sock.in) >= 5) {
		/* waiting for a server: the statement has not started, so it never will */
		cl_log(c, SP_LOG_INFO, "cancel request while waiting for a server: the statement is cancelled");
		sp_pool_unwait(c->pool, c);
		fail_waiting(c, SP_SQLSTATE_QUERY_CANCELED, "canceling statement due to user request", NULL);
		return false;
	}
	if (!sent) {
		cl_log(c, SP_LOG_DEBUG, "cancel request while no query is running: ignored");
		return false;
	}
	cl_log(c, SP_LOG_INFO, "forwarding cancel request to %d server%s", sent, sent > 1 ? "s" : "");
	if (requester)
		sp_sock_read_stop(&requester->sock); /* nothing more is expected from it */
	return true;
}
