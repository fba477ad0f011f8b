/*
 * sock.c - the connection layer under client.c and server.c: non-blocking
 * read into a per-socket input buffer, write from a per-socket output buffer,
 * connect, and close. Writes are attempted at once (most complete without
 * waiting); only a short write arms the write watcher, and "drained" is
 * reported so the other side of the proxy can resume reading. It knows
 * nothing about the PostgreSQL protocol.
 *
 * Connect takes numeric addresses and unix socket directories as they are; a
 * host name is never resolved here (getaddrinfo would block the loop): the
 * resolver's cache answers at once, or the socket waits without a descriptor
 * (resolving) until resolve.c calls back. The addresses of an answer are
 * tried in turn until one connects.
 */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct ev_loop *sp_loop;

#define READ_CHUNK 16384
#define SHRINK_ABOVE (1024 * 1024)

static bool connect_next(sp_sock_t *s);
static void drop_addrs(sp_sock_t *s);

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	sp_sock_t *s = container_of(w, sp_sock_t, rio);
	ssize_t n;

	if (sp_buf_len(&s->in) == 0 && s->in.cap > SHRINK_ABOVE)
		sp_buf_free(&s->in); /* a big message passed: give the memory back */
	if (!sp_buf_reserve(&s->in, READ_CHUNK)) {
		s->err = ENOMEM;
		s->cb(s, SP_SOCK_ERROR);
		return;
	}
	n = read(s->fd, s->in.data + s->in.end, s->in.cap - s->in.end);
	if (n > 0) {
		s->in.end += (size_t)n;
		s->bytes_in += (unsigned long long)n;
		s->cb(s, SP_SOCK_READ);
	} else if (n == 0) {
		s->cb(s, SP_SOCK_EOF);
	} else if (errno != EAGAIN && errno != EINTR) {
		s->err = errno;
		s->cb(s, SP_SOCK_ERROR);
	}
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	sp_sock_t *s = container_of(w, sp_sock_t, wio);

	if (s->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		s->connecting = false;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			ev_io_stop(sp_loop, &s->wio);
			s->writing = false;
			s->err = err;
			if (s->addrs && s->addr_i + 1 < s->addrs->n) {
				/* the host name has more addresses: try the next one */
				close(s->fd);
				s->fd = -1;
				s->addr_i++;
				if (connect_next(s))
					return;
				s->err = err;
			}
			drop_addrs(s);
			s->cb(s, SP_SOCK_ERROR);
			return;
		}
		drop_addrs(s);
		if (sp_buf_len(&s->out) == 0) {
			ev_io_stop(sp_loop, &s->wio);
			s->writing = false;
		}
		s->cb(s, SP_SOCK_CONNECTED);
		return;
	}
	if (!sp_sock_flush(s)) {
		s->cb(s, SP_SOCK_ERROR);
		return;
	}
	if (sp_buf_len(&s->out) == 0)
		s->cb(s, SP_SOCK_DRAINED);
}

void sp_sock_init(sp_sock_t *s, int fd, sp_sock_cb cb)
{
	s->fd = fd;
	s->cb = cb;
	s->reading = s->writing = s->connecting = false;
	s->err = 0;
	ev_io_init(&s->rio, on_read, fd, EV_READ);
	ev_io_init(&s->wio, on_write, fd, EV_WRITE);
}

void sp_sock_read_start(sp_sock_t *s)
{
	if (!s->reading && s->fd >= 0) {
		ev_io_start(sp_loop, &s->rio);
		s->reading = true;
	}
}

void sp_sock_read_stop(sp_sock_t *s)
{
	if (s->reading) {
		ev_io_stop(sp_loop, &s->rio);
		s->reading = false;
	}
}

bool sp_sock_flush(sp_sock_t *s)
{
	/* A caller that found this socket backed up may have stopped reading its peer
	 * before calling here, and waits for "drained" to resume it. */
	bool was_backed_up = sp_sock_backed_up(s);

	while (sp_buf_len(&s->out) > 0 && !s->connecting) {
		ssize_t n = send(s->fd, sp_buf_head(&s->out), sp_buf_len(&s->out), MSG_NOSIGNAL);
		if (n > 0) {
			s->bytes_out += (unsigned long long)n;
			sp_buf_consume(&s->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!s->writing) {
				ev_io_start(sp_loop, &s->wio);
				s->writing = true;
			}
			return true;
		}
		s->err = n < 0 ? errno : EPIPE;
		return false;
	}
	if (was_backed_up && !s->connecting && s->fd >= 0) {
		/* The whole backlog went out here, so no short write armed the watcher and
		 * "drained" would never come: arm it (the socket is writable, so it fires on
		 * the next loop iteration, never from inside this call) and on_write reports
		 * "drained" then. */
		if (!s->writing) {
			ev_io_start(sp_loop, &s->wio);
			s->writing = true;
		}
	} else if (s->writing && !s->connecting) {
		ev_io_stop(sp_loop, &s->wio);
		s->writing = false;
	}
	if (s->out.cap > SHRINK_ABOVE)
		sp_buf_free(&s->out);
	return true;
}

/* Open the socket and start connecting to ss; false with s->err set if that failed at once. */
static bool connect_to(sp_sock_t *s, const struct sockaddr_storage *ss, socklen_t sslen,
		       sp_sock_cb cb)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		s->err = errno;
		return false;
	}
	if (ss->ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	sp_sock_init(s, fd, cb);
	if (connect(fd, (const struct sockaddr *)ss, sslen) < 0 && errno != EINPROGRESS) {
		s->err = errno;
		close(fd);
		s->fd = -1;
		return false;
	}
	s->connecting = true;
	ev_io_start(sp_loop, &s->wio);
	s->writing = true;
	return true;
}

/* Connect to the resolved addresses from s->addr_i on; false when none is left. */
static bool connect_next(sp_sock_t *s)
{
	for (; s->addrs && s->addr_i < s->addrs->n; s->addr_i++) {
		struct sockaddr_storage ss = s->addrs->a[s->addr_i].ss;
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)s->port);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)s->port);
		if (connect_to(s, &ss, s->addrs->a[s->addr_i].len, s->cb))
			return true;
	}
	return false;
}

static void drop_addrs(sp_sock_t *s)
{
	sp_resolve_addrs_unref(s->addrs);
	s->addrs = NULL;
}

static void on_resolved(sp_resolve_wait_t *w, sp_resolve_addrs_t *addrs, int err)
{
	sp_sock_t *s = container_of(w, sp_sock_t, rwait);
	s->resolving = false;
	s->connecting = false;
	if (!addrs) {
		s->gai_err = err;
		s->cb(s, SP_SOCK_ERROR);
		return;
	}
	s->addrs = addrs;
	s->addr_i = 0;
	if (!connect_next(s)) {
		drop_addrs(s);
		s->cb(s, SP_SOCK_ERROR);
	}
}

bool sp_sock_connect(sp_sock_t *s, const char *host, int port, sp_sock_cb cb)
{
	struct sockaddr_storage ss;
	socklen_t sslen;

	memset(&ss, 0, sizeof(ss));
	s->err = s->gai_err = 0;
	s->port = port;
	s->addrs = NULL;
	s->resolving = false;
	if (host && host[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", host, port);
		sslen = sizeof(*un);
	} else if (sp_resolve_is_name(host)) {
		sp_resolve_addrs_t *addrs = NULL;
		switch (sp_resolve_lookup(host, &s->rwait, on_resolved, &addrs, &s->gai_err)) {
		case SP_RESOLVE_OK:
			s->addrs = addrs;
			s->addr_i = 0;
			s->cb = cb;
			if (connect_next(s))
				return true;
			drop_addrs(s);
			return false;
		case SP_RESOLVE_PENDING:
			/* no descriptor until the answer: flush and close see "connecting" */
			s->fd = -1;
			s->cb = cb;
			s->reading = s->writing = false;
			s->connecting = s->resolving = true;
			return true;
		default:
			return false;
		}
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		const char *h = (host && *host) ? host : "127.0.0.1";
		if (strcmp(h, "localhost") == 0)
			h = "127.0.0.1";
		if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
			in4->sin_family = AF_INET;
			in4->sin_port = htons((uint16_t)port);
			sslen = sizeof(*in4);
		} else if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			sslen = sizeof(*in6);
		} else {
			s->err = EINVAL; /* not reached: sp_resolve_is_name said it is numeric */
			return false;
		}
	}
	return connect_to(s, &ss, sslen, cb);
}

void sp_sock_connect_error(const sp_sock_t *s, const char *host, char *buf, size_t len)
{
	if (s->gai_err)
		snprintf(buf, len, "could not resolve host \"%s\": %s", host ? host : "",
			 sp_resolve_strerror(s->gai_err));
	else
		snprintf(buf, len, "connect failed: %s", strerror(s->err));
}

void sp_sock_close(sp_sock_t *s)
{
	if (s->resolving) {
		sp_resolve_cancel(&s->rwait);
		s->resolving = s->connecting = false;
		sp_buf_free(&s->in);
		sp_buf_free(&s->out);
	}
	drop_addrs(s);
	if (s->fd < 0)
		return;
	sp_sock_read_stop(s);
	if (s->writing) {
		ev_io_stop(sp_loop, &s->wio);
		s->writing = false;
	}
	close(s->fd);
	s->fd = -1;
	sp_buf_free(&s->in);
	sp_buf_free(&s->out);
}
