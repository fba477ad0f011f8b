/*
 * resolve.c - name resolution of server host names, off the event loop.
 *
 * getaddrinfo() blocks for as long as the DNS server takes (10 s and more when
 * it does not answer), so the loop never calls it: it asks this cache. The
 * cache (loop thread only, no locks) maps a host name to its last answer: all
 * of getaddrinfo's IPv4/IPv6 addresses, or the EAI_* error of a failed lookup.
 * Lookups run in up to MAX_WORKERS worker threads, each doing one blocking
 * getaddrinfo() at a time; an answer goes back to the loop through a list
 * under a mutex plus an ev_async, and the loop alone applies it to the cache
 * and calls the waiters.
 *
 * Lifetimes, like pgbouncer's dns_max_ttl and dns_nxdomain_ttl:
 * - a good answer is fresh for dns_max_ttl; after that the next use, or the
 *   refresh timer (every second), looks the name up again in the background
 *   and the last good answer is served meanwhile. A refresh that fails
 *   temporarily (no answer, EAI_AGAIN, ...) keeps that answer; one that says
 *   the name does not exist (EAI_NONAME, EAI_NODATA) drops it.
 * - a failed lookup is remembered and retried in the background after 1 s,
 *   2 s, 4 s ... at most dns_nxdomain_ttl apart; meanwhile a connection to the
 *   name fails at once with the remembered error.
 * - a name nobody asked about yet has no answer: the first user waits (PENDING)
 *   and is called back when the lookup ends. sp_resolve_start and
 *   sp_resolve_reload look up every host of the configuration, so the first
 *   connection normally finds an answer.
 *
 * Invariants: at most one lookup per name is in flight; an entry is never freed
 * while the process runs (names come from the configuration; a name a RELOAD
 * drops keeps its entry, a few bytes), only by sp_resolve_stop, after which answers of lookups still
 * running are dropped by their worker.
 *
 * Not here: numeric addresses and unix socket paths (sock.c uses them as they
 * are), trying the addresses of an answer in turn (sock.c), libpq's own
 * resolution (health.c passes it hostaddr).
 */
#include "resolve.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sock.h"

#define MAX_WORKERS 4
#define MAX_ADDRS 16
#define FIRST_RETRY 1.0 /* seconds after a first failed lookup */
#define REFRESH_EVERY 1.0

struct entry {
	char *name;
	sp_resolve_addrs_t *addrs; /* last good answer, NULL if none */
	int err;		   /* EAI_* of the last lookup, 0 if it succeeded */
	bool answered;		   /* a lookup has ended */
	bool in_flight;
	double expires; /* the answer (good or failed) is fresh until then */
	double backoff; /* delay before the next retry after a failure */
	sp_resolve_wait_t *waiters;
	struct entry *next;
};

static struct entry *entries;
static int n_entries;
static double max_ttl = 15, nxdomain_ttl = 15;

/* worker side, under mu */
struct job {
	struct job *next;
	int err;
	struct addrinfo *res;
	char name[]; /* copy: the worker never touches the cache */
};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *todo_head, *todo_tail, *done;
static int n_todo, n_workers, n_idle;
static bool accepting; /* the loop takes answers: async_w is live */

static ev_async async_w;
static ev_timer refresh_w;
static bool started;

static void thread_start_lookup(const char *name);
static double loop_now(void)
{
	return ev_now(sp_loop);
}
static void (*start_lookup)(const char *name) = thread_start_lookup;
static double (*now)(void) = loop_now;

bool sp_resolve_is_name(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	if (!host || !*host || host[0] == '/' || strcmp(host, "localhost") == 0)
		return false;
	return inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1;
}

const char *sp_resolve_strerror(int err)
{
	return gai_strerror(err);
}

const char *sp_resolve_addr_str(const sp_resolve_addr_t *addr, char *buf, size_t len)
{
	const void *src = addr->ss.ss_family == AF_INET6
			      ? (const void *)&((const struct sockaddr_in6 *)&addr->ss)->sin6_addr
			      : (const void *)&((const struct sockaddr_in *)&addr->ss)->sin_addr;
	if (!inet_ntop(addr->ss.ss_family, src, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

void sp_resolve_addrs_unref(sp_resolve_addrs_t *a)
{
	if (a && --a->refs == 0)
		free(a);
}

static sp_resolve_addrs_t *addrs_ref(sp_resolve_addrs_t *a)
{
	a->refs++;
	return a;
}

void sp_resolve_set_ttl(double max, double nxdomain)
{
	max_ttl = max >= 0 ? max : 0;
	nxdomain_ttl = nxdomain >= 0 ? nxdomain : 0;
}

void sp_resolve_set_hooks(void (*start)(const char *name), double (*clock)(void))
{
	start_lookup = start ? start : thread_start_lookup;
	now = clock ? clock : loop_now;
}

int sp_resolve_count(void)
{
	return n_entries;
}

static struct entry *find(const char *name)
{
	for (struct entry *e = entries; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void begin(struct entry *e)
{
	if (e->in_flight)
		return;
	e->in_flight = true;
	start_lookup(e->name);
}

void sp_resolve_cancel(sp_resolve_wait_t *w)
{
	if (!w->pprev)
		return;
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	w->next = NULL;
	w->pprev = NULL;
}

sp_resolve_status_t sp_resolve_lookup(const char *name, sp_resolve_wait_t *w, sp_resolve_cb cb,
				      sp_resolve_addrs_t **addrs, int *err)
{
	struct entry *e = find(name);
	double t = now();

	if (w)
		sp_resolve_cancel(w);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->name = strdup(name))) {
			free(e);
			*err = EAI_MEMORY;
			return SP_RESOLVE_FAILED;
		}
		e->next = entries;
		entries = e;
		n_entries++;
	}
	if (!e->in_flight && (!e->answered || t >= e->expires))
		begin(e);
	if (e->addrs) {
		*addrs = addrs_ref(e->addrs);
		return SP_RESOLVE_OK;
	}
	if (e->answered) {
		*err = e->err;
		return SP_RESOLVE_FAILED;
	}
	if (w) {
		w->cb = cb;
		w->next = e->waiters;
		if (w->next)
			w->next->pprev = &w->next;
		w->pprev = &e->waiters;
		e->waiters = w;
	}
	return SP_RESOLVE_PENDING;
}

static sp_resolve_addrs_t *addrs_from(const struct addrinfo *res)
{
	sp_resolve_addrs_t *a;
	int n = 0;
	for (const struct addrinfo *r = res; r; r = r->ai_next)
		if ((r->ai_family == AF_INET || r->ai_family == AF_INET6) &&
		    r->ai_addrlen <= sizeof(struct sockaddr_storage))
			n++;
	if (n == 0)
		return NULL;
	if (n > MAX_ADDRS)
		n = MAX_ADDRS;
	a = calloc(1, sizeof(*a) + (size_t)n * sizeof(a->a[0]));
	if (!a)
		return NULL;
	a->refs = 1;
	for (const struct addrinfo *r = res; r && a->n < n; r = r->ai_next) {
		if ((r->ai_family != AF_INET && r->ai_family != AF_INET6) ||
		    r->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		memcpy(&a->a[a->n].ss, r->ai_addr, r->ai_addrlen);
		a->a[a->n].len = r->ai_addrlen;
		a->n++;
	}
	return a;
}

static bool same_addrs(const sp_resolve_addrs_t *x, const sp_resolve_addrs_t *y)
{
	if (!x || !y || x->n != y->n)
		return false;
	for (int i = 0; i < x->n; i++)
		if (x->a[i].len != y->a[i].len ||
		    memcmp(&x->a[i].ss, &y->a[i].ss, x->a[i].len) != 0)
			return false;
	return true;
}

static void describe(const sp_resolve_addrs_t *a, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < a->n && used + 2 < len; i++) {
		char one[INET6_ADDRSTRLEN];
		int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
				 sp_resolve_addr_str(&a->a[i], one, sizeof(one)));
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

void sp_resolve_deliver(const char *name, int err, const struct addrinfo *res)
{
	struct entry *e = find(name);
	sp_resolve_addrs_t *got;
	sp_resolve_wait_t *w;
	double t = now();

	if (!e)
		return;
	e->in_flight = false;
	got = err == 0 ? addrs_from(res) : NULL;
	if (err == 0 && !got)
		err = EAI_NONAME; /* an answer without one usable address */
	if (got) {
		char list[512];
		describe(got, list, sizeof(list));
		if (!same_addrs(got, e->addrs))
			sp_info("host %s resolves to %s", name, list);
		else
			sp_debug("host %s still resolves to %s", name, list);
		sp_resolve_addrs_unref(e->addrs);
		e->addrs = got;
		e->err = 0;
		e->backoff = 0;
		e->expires = t + max_ttl;
	} else {
		bool gone = err == EAI_NONAME
#ifdef EAI_NODATA
			    || err == EAI_NODATA
#endif
		    ;
		e->backoff = e->backoff > 0 ? e->backoff * 2 : FIRST_RETRY;
		if (e->backoff > nxdomain_ttl)
			e->backoff = nxdomain_ttl;
		e->expires = t + e->backoff;
		if (e->addrs && !gone) {
			sp_warn("could not resolve host \"%s\" again: %s; using its last answer, "
				"next try in %.1f s",
				name, gai_strerror(err), e->backoff);
		} else {
			if (!e->answered || e->err != err || e->addrs)
				sp_warn("could not resolve host \"%s\": %s; next try in %.1f s",
					name, gai_strerror(err), e->backoff);
			else
				sp_debug("could not resolve host \"%s\": %s; next try in %.1f s",
					 name, gai_strerror(err), e->backoff);
			sp_resolve_addrs_unref(e->addrs);
			e->addrs = NULL;
		}
		e->err = err;
	}
	e->answered = true;
	/* a waiter's callback may cancel other waiters (or queue itself again): take
	 * them one at a time from the head */
	while ((w = e->waiters)) {
		sp_resolve_cancel(w);
		if (e->addrs)
			w->cb(w, addrs_ref(e->addrs), 0);
		else
			w->cb(w, NULL, e->err);
	}
}

void sp_resolve_refresh(void)
{
	double t = now();
	for (struct entry *e = entries; e; e = e->next)
		if (!e->in_flight && t >= e->expires)
			begin(e);
}

/* ------------------------------------------------------------ workers */

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (accepting) {
		struct addrinfo hints;
		struct job *j;
		if (!todo_head) {
			n_idle++;
			pthread_cond_wait(&cv, &mu);
			n_idle--;
			continue;
		}
		j = todo_head;
		todo_head = j->next;
		if (!todo_head)
			todo_tail = NULL;
		n_todo--;
		pthread_mutex_unlock(&mu);
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		j->res = NULL;
		j->err = getaddrinfo(j->name, NULL, &hints, &j->res);
		pthread_mutex_lock(&mu);
		if (!accepting) {
			if (j->res)
				freeaddrinfo(j->res);
			free(j);
			break;
		}
		j->next = done;
		done = j;
		ev_async_send(sp_loop, &async_w);
	}
	n_workers--;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void thread_start_lookup(const char *name)
{
	size_t len = strlen(name) + 1;
	struct job *j = malloc(sizeof(*j) + len);
	if (!j) {
		/* answered at once as a failure; retried after the backoff */
		sp_resolve_deliver(name, EAI_MEMORY, NULL);
		return;
	}
	memcpy(j->name, name, len);
	j->next = NULL;
	j->res = NULL;
	j->err = 0;
	pthread_mutex_lock(&mu);
	if (todo_tail)
		todo_tail->next = j;
	else
		todo_head = j;
	todo_tail = j;
	n_todo++;
	if (n_todo > n_idle && n_workers < MAX_WORKERS) {
		pthread_attr_t attr;
		pthread_t tid;
		sigset_t all, old;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 512 * 1024);
		/* signals belong to the loop's thread */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		if (pthread_create(&tid, &attr, worker, NULL) == 0)
			n_workers++;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
		if (n_workers == 0)
			sp_warn("resolve: cannot start a worker thread; host names wait until one "
				"starts");
	}
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
	struct job *list, *rev = NULL;
	(void)loop;
	(void)w;
	(void)revents;
	pthread_mutex_lock(&mu);
	list = done;
	done = NULL;
	pthread_mutex_unlock(&mu);
	while (list) { /* oldest first */
		struct job *j = list;
		list = j->next;
		j->next = rev;
		rev = j;
	}
	while (rev) {
		struct job *j = rev;
		rev = j->next;
		sp_resolve_deliver(j->name, j->err, j->res);
		if (j->res)
			freeaddrinfo(j->res);
		free(j);
	}
}

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	sp_resolve_refresh();
}

/* ------------------------------------------------------------ configuration */

static void want(const sp_node_conf_t *n, bool again)
{
	sp_resolve_addrs_t *a = NULL;
	struct entry *e;
	int err;
	if (!sp_resolve_is_name(n->host))
		return;
	if (again && (e = find(n->host)) && !e->in_flight) {
		begin(e);
		return;
	}
	if (sp_resolve_lookup(n->host, NULL, NULL, &a, &err) == SP_RESOLVE_OK)
		sp_resolve_addrs_unref(a);
}

static void want_all(const sp_config_t *cfg, bool again)
{
	for (int d = 0; cfg && d < cfg->n_dbs; d++) {
		const sp_db_conf_t *db = cfg->dbs[d];
		for (int s = 0; !db->removed && s < db->n_shards; s++) {
			if (db->shards[s].has_primary)
				want(&db->shards[s].primary, again);
			for (int r = 0; r < db->shards[s].n_replicas; r++)
				want(&db->shards[s].replicas[r], again);
		}
	}
}

void sp_resolve_start(const sp_config_t *cfg)
{
	if (started)
		return;
	started = true;
	sp_resolve_set_ttl(cfg->dns_max_ttl, cfg->dns_nxdomain_ttl);
	pthread_mutex_lock(&mu);
	accepting = true;
	pthread_mutex_unlock(&mu);
	ev_async_init(&async_w, on_async);
	ev_async_start(sp_loop, &async_w);
	ev_timer_init(&refresh_w, on_refresh, REFRESH_EVERY, REFRESH_EVERY);
	ev_timer_start(sp_loop, &refresh_w);
	want_all(cfg, false);
}

void sp_resolve_reload(const sp_config_t *cfg)
{
	sp_resolve_set_ttl(cfg->dns_max_ttl, cfg->dns_nxdomain_ttl);
	if (started)
		want_all(cfg, true);
}

void sp_resolve_stop(void)
{
	struct job *j;
	pthread_mutex_lock(&mu);
	accepting = false;
	while ((j = todo_head)) {
		todo_head = j->next;
		free(j);
	}
	todo_tail = NULL;
	n_todo = 0;
	while ((j = done)) {
		done = j->next;
		if (j->res)
			freeaddrinfo(j->res);
		free(j);
	}
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	if (started) {
		ev_async_stop(sp_loop, &async_w);
		ev_timer_stop(sp_loop, &refresh_w);
		started = false;
	}
	while (entries) {
		struct entry *e = entries;
		entries = e->next;
		while (e->waiters)
			sp_resolve_cancel(e->waiters);
		sp_resolve_addrs_unref(e->addrs);
		free(e->name);
		free(e);
	}
	n_entries = 0;
}
