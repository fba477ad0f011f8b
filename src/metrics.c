/*
 * metrics.c - the Prometheus endpoint: an HTTP listener on metrics_addr:
 * metrics_port (off when the port is 0) that answers GET /metrics with the
 * text exposition format (version 0.0.4): clients by state, each pool's
 * clients, servers and counters (the figures of SHOW POOLS and SHOW STATS),
 * each server's health (SHOW HEALTH) and the routing plan cache (SHOW ROUTE
 * CACHE).
 *
 * The HTTP side is the least a scraper needs: one request per connection
 * (Connection: close), GET and HEAD, a request head of at most 8 kB read
 * within 5 s, at most 16 connections at a time (more are closed at once), no
 * TLS or authentication (bind it to a private address). It runs on the event
 * loop: a slow scraper costs a descriptor, never a stall.
 */
#include "metrics.h"

#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "router.h"
#include "sp_types.h"

#define MAX_CONNS 16
#define MAX_REQUEST 8192
#define REQUEST_TIMEOUT 5.0

typedef struct mconn {
	struct mconn *next;
	int fd;
	ev_io io;
	ev_timer timer;
	char req[MAX_REQUEST];
	size_t req_len;
	sp_buf_t out;
} mconn_t;

static int listen_fd = -1;
static ev_io listen_io;
static mconn_t *conns;
static int n_conns;
static uint64_t scrapes;

/* ------------------------------------------------------------------ the exposition */

static void put(sp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sp_buf_t *b, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		sp_buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* A label value with \, " and newlines escaped, as the format wants. */
static const char *esc(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; s && *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = 0;
	return buf;
}

static void head(sp_buf_t *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP shardpool_%s %s\n# TYPE shardpool_%s %s\n", name, help, name, type);
}

static void pool_labels(const sp_pool_t *p, char *buf, size_t len)
{
	char db[200], user[200], host[300];
	snprintf(buf, len, "database=\"%s\",user=\"%s\",shard=\"%d\",role=\"%s\",replica=\"%d\",host=\"%s\",port=\"%d\"",
		 esc(p->dbname, db, sizeof(db)), esc(p->user, user, sizeof(user)), p->shard,
		 p->role == SP_ROLE_PRIMARY ? "primary" : "replica", p->role == SP_ROLE_PRIMARY ? -1 : p->replica,
		 esc(p->node->host, host, sizeof(host)), p->node->port);
}

static void node_labels(const sp_node_health_t *n, char *buf, size_t len)
{
	char db[200], host[300];
	snprintf(buf, len, "database=\"%s\",shard=\"%d\",role=\"%s\",replica=\"%d\",host=\"%s\",port=\"%d\"",
		 esc(n->dbname, db, sizeof(db)), n->shard, n->replica < 0 ? "primary" : "replica", n->replica,
		 esc(n->conf ? n->conf->host : "", host, sizeof(host)), n->conf ? n->conf->port : 0);
}

/* One family over every pool: name, type, help, and the value of a pool. */
typedef double (*pool_value_fn)(const sp_pool_t *p);
static void pool_family(sp_buf_t *b, const char *name, const char *type, const char *help, pool_value_fn fn)
{
	char labels[1200];
	head(b, name, type, help);
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		pool_labels(p, labels, sizeof(labels));
		put(b, "shardpool_%s{%s} %.17g\n", name, labels, fn(p));
	}
}

static double pv_waiting(const sp_pool_t *p)
{
	return p->n_waiting;
}
static double pv_active_clients(const sp_pool_t *p)
{
	return sp_pool_active_clients(p);
}
static double pv_xacts(const sp_pool_t *p)
{
	return (double)p->total_xacts;
}
static double pv_queries(const sp_pool_t *p)
{
	return (double)p->total_queries;
}
static double pv_xact_s(const sp_pool_t *p)
{
	return (double)p->total_xact_us / 1e6;
}
static double pv_query_s(const sp_pool_t *p)
{
	return (double)p->total_query_us / 1e6;
}
static double pv_wait_s(const sp_pool_t *p)
{
	return (double)p->total_wait_us / 1e6;
}
static double pv_size(const sp_pool_t *p)
{
	return sp_pool_size(p);
}
static double pv_paused(const sp_pool_t *p)
{
	return p->paused || sp_g.paused;
}

static void pool_servers(sp_buf_t *b)
{
	static const char *const states[] = {"active", "idle", "login", "other"};
	char labels[1200];
	head(b, "pool_servers", "gauge", "Server connections of the pool, by state (SHOW POOLS sv_*).");
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next) {
		int v[4] = {p->n_active, p->n_idle, p->n_connecting, p->n_other};
		pool_labels(p, labels, sizeof(labels));
		for (int i = 0; i < 4; i++)
			put(b, "shardpool_pool_servers{%s,state=\"%s\"} %d\n", labels, states[i], v[i]);
	}
}

static void clients(sp_buf_t *b)
{
	int n[8] = {0};
	head(b, "clients", "gauge", "Client connections by state.");
	for (sp_client_t *c = sp_client_first(); c; c = c->next)
		if ((int)c->state >= 0 && (int)c->state < 8)
			n[c->state]++;
	put(b, "shardpool_clients{state=\"login\"} %d\n", n[SP_CLIENT_STARTUP] + n[SP_CLIENT_AUTH] + n[SP_CLIENT_WELCOME]);
	put(b, "shardpool_clients{state=\"idle\"} %d\n", n[SP_CLIENT_IDLE]);
	put(b, "shardpool_clients{state=\"waiting\"} %d\n", n[SP_CLIENT_WAITING]);
	put(b, "shardpool_clients{state=\"active\"} %d\n", n[SP_CLIENT_ACTIVE] + n[SP_CLIENT_FANOUT]);
	put(b, "shardpool_clients{state=\"admin\"} %d\n", n[SP_CLIENT_ADMIN]);
}

static void nodes(sp_buf_t *b)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
	    {"server_up", "gauge", "1 if the last health probe reached the server, 0 if not, -1 before the first."},
	    {"server_in_recovery", "gauge", "1 for a server in recovery (a standby)."},
	    {"server_in_rotation", "gauge", "Replicas: 1 while the replica takes reads."},
	    {"server_fenced", "gauge", "1 for a server that claims to be primary on an older timeline."},
	    {"replica_lag_bytes", "gauge", "Replicas: WAL bytes behind the primary (-1 unknown)."},
	    {"replica_lag_seconds", "gauge", "Replicas: replay delay in seconds."},
	    {"server_reads_total", "counter", "Reads routed to the server."},
	};
	char labels[800];
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		head(b, fam[f].name, fam[f].type, fam[f].help);
		for (int i = 0; i < sp_health_count(); i++) {
			const sp_node_health_t *n = sp_health_at(i);
			double v;
			if (!n || (f == 2 && n->replica < 0) || ((f == 4 || f == 5) && n->replica < 0))
				continue;
			switch (f) {
			case 0: v = !n->probed ? -1 : n->reachable; break;
			case 1: v = n->in_recovery; break;
			case 2: v = n->in_rotation; break;
			case 3: v = n->fenced; break;
			case 4: v = (double)n->lag_bytes; break;
			case 5: v = n->lag_ms / 1000.0; break;
			default: v = (double)n->reads; break;
			}
			node_labels(n, labels, sizeof(labels));
			put(b, "shardpool_%s{%s} %.17g\n", fam[f].name, labels, v);
		}
	}
}

static void route_cache(sp_buf_t *b)
{
	sp_router_stats_t st;
	sp_router_get_stats(&st);
	head(b, "route_cache_hits_total", "counter", "Statements routed from a cached plan.");
	put(b, "shardpool_route_cache_hits_total %llu\n", (unsigned long long)st.hits);
	head(b, "route_cache_misses_total", "counter", "Statements parsed with libpg_query to make a plan.");
	put(b, "shardpool_route_cache_misses_total %llu\n", (unsigned long long)st.misses);
	head(b, "route_cache_evictions_total", "counter", "Plans dropped to stay within the cache's bounds.");
	put(b, "shardpool_route_cache_evictions_total %llu\n", (unsigned long long)st.evictions);
	head(b, "route_cache_entries", "gauge", "Plans in the cache.");
	put(b, "shardpool_route_cache_entries %zu\n", st.entries);
	head(b, "route_cache_bytes", "gauge", "Memory of the cached plans.");
	put(b, "shardpool_route_cache_bytes %zu\n", st.bytes);
}

static void expose(sp_buf_t *b)
{
	char v[100];
	head(b, "up", "gauge", "1: shardpool answers.");
	put(b, "shardpool_up 1\n");
	head(b, "info", "gauge", "The running version.");
	put(b, "shardpool_info{version=\"%s\"} 1\n", esc(PACKAGE_VERSION, v, sizeof(v)));
	head(b, "scrapes_total", "counter", "Requests for /metrics answered.");
	put(b, "shardpool_scrapes_total %llu\n", (unsigned long long)scrapes);
	clients(b);
	pool_family(b, "pool_clients_active", "gauge", "Clients linked to a server of the pool (SHOW POOLS cl_active).",
		    pv_active_clients);
	pool_family(b, "pool_clients_waiting", "gauge", "Clients queued for a server of the pool.", pv_waiting);
	pool_family(b, "pool_maxwait_seconds", "gauge", "How long the oldest waiting client has waited.", sp_pool_maxwait);
	pool_servers(b);
	pool_family(b, "pool_size", "gauge", "The pool's configured size.", pv_size);
	pool_family(b, "pool_paused", "gauge", "1 while the pool is paused (PAUSE).", pv_paused);
	pool_family(b, "pool_transactions_total", "counter", "Transactions ended on the pool's servers.", pv_xacts);
	pool_family(b, "pool_queries_total", "counter", "Queries ended on the pool's servers.", pv_queries);
	pool_family(b, "pool_transaction_seconds_total", "counter", "Time spent in those transactions.", pv_xact_s);
	pool_family(b, "pool_query_seconds_total", "counter", "Time spent in those queries.", pv_query_s);
	pool_family(b, "pool_wait_seconds_total", "counter", "Time clients waited for a server of the pool.",
		    pv_wait_s);
	nodes(b);
	route_cache(b);
}

/* ------------------------------------------------------------------ HTTP */

static void conn_close(mconn_t *m)
{
	mconn_t **pp;
	ev_io_stop(sp_loop, &m->io);
	ev_timer_stop(sp_loop, &m->timer);
	close(m->fd);
	for (pp = &conns; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	n_conns--;
	sp_buf_free(&m->out);
	free(m);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	mconn_t *m = container_of(w, mconn_t, io);
	(void)loop;
	(void)revents;
	while (sp_buf_len(&m->out) > 0) {
		ssize_t n = send(m->fd, sp_buf_head(&m->out), sp_buf_len(&m->out), MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(m);
			return;
		}
		sp_buf_consume(&m->out, (size_t)n);
	}
	conn_close(m);
}

static void respond(mconn_t *m, const char *status, const char *type, const sp_buf_t *body, bool head_only)
{
	char h[300];
	int n = snprintf(h, sizeof(h),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
			 type, body ? sp_buf_len(body) : 0);
	sp_buf_append(&m->out, h, (size_t)n);
	if (body && !head_only)
		sp_buf_append(&m->out, sp_buf_head(body), sp_buf_len(body));
	ev_io_stop(sp_loop, &m->io);
	ev_io_set(&m->io, m->fd, EV_WRITE);
	ev_set_cb(&m->io, on_write);
	ev_io_start(sp_loop, &m->io);
}

static void respond_text(mconn_t *m, const char *status, const char *text)
{
	sp_buf_t b = {0};
	sp_buf_append(&b, text, strlen(text));
	respond(m, status, "text/plain; charset=utf-8", &b, false);
	sp_buf_free(&b);
}

/* The request head is complete: answer it. */
static void handle(mconn_t *m)
{
	char method[16], path[256], version[16];
	char *q;
	if (sscanf(m->req, "%15s %255s %15s", method, path, version) != 3 || strncmp(version, "HTTP/", 5) != 0) {
		respond_text(m, "400 Bad Request", "a request line is: GET /metrics HTTP/1.1\n");
		return;
	}
	if ((q = strchr(path, '?')))
		*q = 0;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		respond_text(m, "405 Method Not Allowed", "only GET and HEAD are answered\n");
		return;
	}
	if (strcmp(path, "/metrics") != 0) {
		respond_text(m, "404 Not Found", "the metrics are at /metrics\n");
		return;
	}
	{
		sp_buf_t body = {0};
		scrapes++;
		expose(&body);
		respond(m, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body, strcmp(method, "HEAD") == 0);
		sp_buf_free(&body);
	}
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	mconn_t *m = container_of(w, mconn_t, io);
	ssize_t n;
	(void)loop;
	(void)revents;
	n = recv(m->fd, m->req + m->req_len, MAX_REQUEST - 1 - m->req_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(m);
		return;
	}
	m->req_len += (size_t)n;
	m->req[m->req_len] = 0;
	if (strstr(m->req, "\r\n\r\n") || strstr(m->req, "\n\n")) {
		handle(m);
		return;
	}
	if (m->req_len >= MAX_REQUEST - 1)
		respond_text(m, "431 Request Header Fields Too Large", "the request head is over 8 kB\n");
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	mconn_t *m = container_of(w, mconn_t, timer);
	(void)loop;
	(void)revents;
	conn_close(m);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		mconn_t *m;
		if (fd < 0)
			return;
		if (n_conns >= MAX_CONNS || !(m = calloc(1, sizeof(*m)))) {
			close(fd);
			continue;
		}
		m->fd = fd;
		m->next = conns;
		conns = m;
		n_conns++;
		ev_io_init(&m->io, on_read, fd, EV_READ);
		ev_io_start(sp_loop, &m->io);
		ev_timer_init(&m->timer, on_timeout, REQUEST_TIMEOUT, 0);
		ev_timer_start(sp_loop, &m->timer);
	}
}

bool sp_metrics_start(char *err, size_t errlen)
{
	const sp_config_t *cfg = sp_g.cfg;
	struct addrinfo hints, *res = NULL;
	char port[16];
	int one = 1, rc;

	if (cfg->metrics_port <= 0)
		return true;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", cfg->metrics_port);
	rc = getaddrinfo(strcmp(cfg->metrics_addr, "*") == 0 ? NULL : cfg->metrics_addr, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "metrics_addr %s: %s", cfg->metrics_addr, gai_strerror(rc));
		return false;
	}
	listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd >= 0) {
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (cfg->so_reuseport)
			setsockopt(listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	}
	if (listen_fd < 0 || bind(listen_fd, res->ai_addr, res->ai_addrlen) < 0 || listen(listen_fd, 64) < 0) {
		snprintf(err, errlen, "could not listen on %s:%d for metrics: %s", cfg->metrics_addr,
			 cfg->metrics_port, strerror(errno));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		freeaddrinfo(res);
		return false;
	}
	freeaddrinfo(res);
	ev_io_init(&listen_io, on_accept, listen_fd, EV_READ);
	ev_io_start(sp_loop, &listen_io);
	sp_info("metrics at http://%s:%d/metrics", cfg->metrics_addr, cfg->metrics_port);
	return true;
}

void sp_metrics_stop(void)
{
	while (conns)
		conn_close(conns);
	if (listen_fd >= 0) {
		ev_io_stop(sp_loop, &listen_io);
		close(listen_fd);
		listen_fd = -1;
	}
}
