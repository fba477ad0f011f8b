/*
 * resolve.h - host names of servers resolved off the event loop: a cache of
 * name -> addresses filled by worker threads, answered to the loop.
 */
#ifndef SP_RESOLVE_H
#define SP_RESOLVE_H

#include <stdbool.h>
#include <sys/socket.h>

#include "config.h"

/* One answer: every address getaddrinfo gave, in its order. Immutable and
 * reference counted (loop thread only): a connection trying them one after the
 * other keeps its answer while the cache moves on to a newer one. */
typedef struct sp_resolve_addr {
	socklen_t len;
	struct sockaddr_storage ss; /* port 0: the caller sets it */
} sp_resolve_addr_t;

typedef struct sp_resolve_addrs {
	int refs;
	int n;
	sp_resolve_addr_t a[];
} sp_resolve_addrs_t;

typedef enum {
	SP_RESOLVE_OK,	    /* addresses known (perhaps stale: a refresh runs meanwhile) */
	SP_RESOLVE_PENDING, /* no answer yet: the waiter is called when one comes */
	SP_RESOLVE_FAILED   /* the name did not resolve (remembered up to dns_nxdomain_ttl) */
} sp_resolve_status_t;

typedef struct sp_resolve_wait sp_resolve_wait_t;
/* The answer a waiter waited for: addrs is a reference the callee owns (release with
 * sp_resolve_addrs_unref), or NULL and err an EAI_* code. Called from the loop, never
 * from inside sp_resolve_lookup; the waiter is no longer queued when it runs. */
typedef void (*sp_resolve_cb)(sp_resolve_wait_t *w, sp_resolve_addrs_t *addrs, int err);

/* Embedded in whatever waits (a socket, a health target); zeroed = not waiting. */
struct sp_resolve_wait {
	sp_resolve_wait_t *next, **pprev;
	sp_resolve_cb cb;
};

/* true if host must be looked up: not empty, not a unix socket directory, not a
 * numeric IPv4/IPv6 address and not "localhost" (which means 127.0.0.1). */
bool sp_resolve_is_name(const char *host);

/*
 * What the cache knows of name (starting a lookup if it knows nothing or the answer
 * is stale). OK: *addrs is a new reference. FAILED: *err is the EAI_* code. PENDING:
 * if w is not NULL it is queued (after leaving any queue it was in) and cb runs
 * when the answer arrives. Never blocks.
 */
sp_resolve_status_t sp_resolve_lookup(const char *name, sp_resolve_wait_t *w, sp_resolve_cb cb,
				      sp_resolve_addrs_t **addrs, int *err);
/* Stop waiting; harmless if w is not queued. */
void sp_resolve_cancel(sp_resolve_wait_t *w);
static inline bool sp_resolve_waiting(const sp_resolve_wait_t *w)
{
	return w->pprev != NULL;
}
void sp_resolve_addrs_unref(sp_resolve_addrs_t *a);
/* "Name or service not known" and the like (gai_strerror, with errno for EAI_SYSTEM). */
const char *sp_resolve_strerror(int err);
/* addr as text without the port ("10.0.0.1", "::1"); buf holds at least 46 bytes. */
const char *sp_resolve_addr_str(const sp_resolve_addr_t *addr, char *buf, size_t len);

/* Start the workers' hand-back and the refresh timer, and look up every host name
 * of cfg. Needs sp_loop. */
void sp_resolve_start(const sp_config_t *cfg);
/* After RELOAD: take the new TTLs and look up every host name of cfg again (the
 * answers known so far are served until the new ones arrive). */
void sp_resolve_reload(const sp_config_t *cfg);
/* Forget everything; lookups still running in a worker are dropped when they end. */
void sp_resolve_stop(void);

/* The cache's mechanics, for unit tests: TTLs, a clock and a way to start lookups
 * other than the workers, the hand-back of one answer (err 0: res holds addresses)
 * and the refresh step the timer runs. */
struct addrinfo;
void sp_resolve_set_ttl(double max_ttl, double nxdomain_ttl);
void sp_resolve_set_hooks(void (*start_lookup)(const char *name), double (*now)(void));
void sp_resolve_deliver(const char *name, int err, const struct addrinfo *res);
void sp_resolve_refresh(void);
/* Host names in the cache. */
int sp_resolve_count(void);

#endif
