/*
 * sock.h - one non-blocking socket with its libev watchers and its two
 * buffers. Protocol code never calls read()/write(): it gets "data arrived",
 * "output drained" and "closed" events and works on the buffers.
 */
#ifndef SP_SOCK_H
#define SP_SOCK_H

#include <ev.h>
#include <stdbool.h>

#include "buf.h"
#include "resolve.h"
#include "sp_types.h"

typedef enum {
	SP_SOCK_READ = 1,    /* new bytes in s->in */
	SP_SOCK_DRAINED = 2, /* s->out became empty after a blocked write */
	SP_SOCK_EOF = 3,     /* peer closed */
	SP_SOCK_ERROR = 4,   /* read/write failed, errno saved in s->err */
	SP_SOCK_CONNECTED = 5
} sp_sock_event_t;

typedef void (*sp_sock_cb)(sp_sock_t *s, sp_sock_event_t ev);

struct sp_sock {
	int fd;
	ev_io rio, wio;
	sp_buf_t in, out;
	sp_sock_cb cb;
	bool reading;    /* rio started */
	bool writing;    /* wio started */
	bool connecting; /* non-blocking connect in progress (or waiting for the host's addresses) */
	bool resolving;  /* waiting for the resolver: no fd yet */
	int err;         /* errno of the failure */
	int gai_err;     /* ... or the EAI_* code of a host name that did not resolve (err is 0) */
	int port;
	sp_resolve_wait_t rwait;
	sp_resolve_addrs_t *addrs; /* a host name's addresses, tried in turn while connecting */
	int addr_i;
	unsigned long long bytes_in, bytes_out;
};

/* Above this many unsent bytes in a peer's output, stop reading our side. */
#define SP_SOCK_HIGH_WATER (256 * 1024)

void sp_sock_init(sp_sock_t *s, int fd, sp_sock_cb cb);
void sp_sock_read_start(sp_sock_t *s);
void sp_sock_read_stop(sp_sock_t *s);
/* Try to write s->out now; returns false on a hard error (cb not called). */
bool sp_sock_flush(sp_sock_t *s);
/*
 * Start a non-blocking connect to host:port (or a unix socket dir if host starts with
 * '/'). A host name is looked up in the resolver's cache, never resolved here: with no
 * answer yet the socket waits (resolving) and connects when the answer arrives. Each
 * address of the answer is tried in turn. The outcome is SP_SOCK_CONNECTED or
 * SP_SOCK_ERROR; false means it failed at once (cb not called).
 */
bool sp_sock_connect(sp_sock_t *s, const char *host, int port, sp_sock_cb cb);
/* Why a connect failed: "could not resolve host \"NAME\": ..." or "connect failed: ...". */
void sp_sock_connect_error(const sp_sock_t *s, const char *host, char *buf, size_t len);
void sp_sock_close(sp_sock_t *s);
static inline bool sp_sock_backed_up(const sp_sock_t *s)
{
	return sp_buf_len(&s->out) > SP_SOCK_HIGH_WATER;
}

extern struct ev_loop *sp_loop;

#endif
