/*
 * listener.c - the listening sockets: TCP on listen_addr:listen_port and a
 * unix socket in unix_socket_dir, named like PostgreSQL's (.s.PGSQL.PORT) so
 * psql -h DIR works. Accepted sockets are made non-blocking with TCP_NODELAY
 * and handed to sp_client_accept(). On EMFILE it pauses accepting briefly
 * instead of spinning.
 *
 * Several processes on one port (so_reuseport, for an upgrade without refused
 * connections): the TCP sockets get SO_REUSEPORT; the unix socket of a running
 * process is taken over by binding a new one beside it and renaming it into
 * place, so connections from then on reach the newest process. A process
 * removes the socket file at exit only if it is still its own. Without
 * so_reuseport a unix socket another process accepts on is an error (a stale
 * one, left by a crash, is replaced).
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "daemon.h"
#include "log.h"
#include "msg.h"
#include "sock.h"

#define MAX_LISTENERS 8

typedef struct listener {
	ev_io io;
	int fd;
	bool is_unix;
	char path[128];
	dev_t dev; /* the unix socket file we bound: removed at exit if it is still there */
	ino_t ino;
} listener_t;

static listener_t listeners[MAX_LISTENERS];
static int n_listeners;
static ev_timer resume_timer;
static int spare_fd = -1; /* kept open so that, out of descriptors, a client can still be told why */

/*
 * Out of file descriptors: give the spare one up for a moment to accept a waiting
 * connection and tell it so (53300, as for max_client_conn) instead of leaving it in
 * the backlog with no answer. True if one was answered.
 */
static bool refuse_one(int lfd)
{
	sp_buf_t b = {0};
	int fd;
	char msg[200];
	struct rlimit rl;

	if (spare_fd < 0)
		return false;
	close(spare_fd);
	spare_fd = -1;
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		/* a client that asks for TLS first (psql does) reads the error only after
		 * our 'N': wait briefly for its first bytes (only when out of descriptors) */
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint8_t first[8];
		uint8_t junk[2048];
		if (poll(&pfd, 1, 100) == 1 && recv(fd, first, 8, MSG_PEEK) == 8 &&
		    sp_get_be32(first) == 8 &&
		    (sp_get_be32(first + 4) == SP_SSL_REQUEST_CODE ||
		     sp_get_be32(first + 4) == SP_GSSENC_REQUEST_CODE) &&
		    recv(fd, first, 8, 0) == 8) {
			if (write(fd, "N", 1) == 1)
				(void)poll(&pfd, 1, 100); /* its startup packet */
		}
		/* read what it sent: closing with unread input would reset the connection
		 * before the client reads the error */
		while (recv(fd, junk, sizeof(junk), 0) > 0)
			;
		snprintf(msg, sizeof(msg),
			 "no more connections allowed: shardpool is out of file descriptors (limit %llu)",
			 getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0ULL);
		sp_msg_write_error(&b, "FATAL", SP_SQLSTATE_TOO_MANY_CONNECTIONS, msg, NULL,
				   "Retry later, or raise the open-file limit (ulimit -n, LimitNOFILE=).");
		if (write(fd, sp_buf_head(&b), sp_buf_len(&b)) < 0) {
			/* it left already */
		}
		sp_buf_free(&b);
		close(fd);
	}
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0;
}

static void resume_accept(struct ev_loop *loop, ev_timer *w, int revents)
{
	for (int i = 0; i < n_listeners; i++)
		if (listeners[i].fd >= 0)
			ev_io_start(sp_loop, &listeners[i].io);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	listener_t *l = container_of(w, listener_t, io);
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if ((errno == EMFILE || errno == ENFILE) && refuse_one(l->fd)) {
				sp_warn("accept: %s; a client was refused with 53300", strerror(errno));
				continue;
			}
			if (errno == EMFILE || errno == ENFILE) {
				sp_warn("accept: %s; pausing accepts for 1 s", strerror(errno));
				for (int k = 0; k < n_listeners; k++)
					ev_io_stop(sp_loop, &listeners[k].io);
				ev_timer_init(&resume_timer, resume_accept, 1.0, 0);
				ev_timer_start(sp_loop, &resume_timer);
			}
			return;
		}
		if (!l->is_unix) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		}
		sp_client_accept(fd, (struct sockaddr *)&ss, len);
	}
}

static bool add(int fd, bool is_unix, const char *path)
{
	listener_t *l = &listeners[n_listeners++];
	l->fd = fd;
	l->is_unix = is_unix;
	snprintf(l->path, sizeof(l->path), "%s", path ? path : "");
	ev_io_init(&l->io, on_accept, fd, EV_READ);
	ev_io_start(sp_loop, &l->io);
	return true;
}

static bool listen_tcp(const char *addr, int port, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	char portstr[16];
	int rc, opened = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(strcmp(addr, "*") == 0 ? NULL : addr, portstr, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen_addr %s: %s", addr, gai_strerror(rc));
		return false;
	}
	for (ai = res; ai && n_listeners < MAX_LISTENERS; ai = ai->ai_next) {
		int one = 1;
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (sp_g.cfg->so_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
			snprintf(err, errlen, "so_reuseport: %s", strerror(errno));
			close(fd);
			freeaddrinfo(res);
			return false;
		}
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
			snprintf(err, errlen, "could not listen on %s:%d: %s%s", addr, port, strerror(errno),
				 errno == EADDRINUSE && !sp_g.cfg->so_reuseport
				     ? " (another process listens there; so_reuseport = yes lets several "
				       "shardpool processes share the port)"
				     : "");
			close(fd);
			freeaddrinfo(res);
			return false;
		}
		add(fd, false, NULL);
		opened++;
	}
	freeaddrinfo(res);
	if (!opened) {
		snprintf(err, errlen, "could not listen on %s:%d", addr, port);
		return false;
	}
	return true;
}

/* Does a process accept connections on the unix socket un? (A stale file refuses.) */
static bool unix_socket_live(const struct sockaddr_un *un)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;
	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)un, sizeof(*un)) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

static bool listen_unix(const char *dir, int port, char *err, size_t errlen)
{
	struct sockaddr_un un, at;
	struct stat st;
	bool take_over = false;
	int fd, n;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	n = snprintf(un.sun_path, sizeof(un.sun_path), "%s/.s.PGSQL.%d", dir, port);
	at = un;
	if (n < 0 || (size_t)n >= sizeof(un.sun_path)) {
		snprintf(err, errlen, "unix_socket_dir %s: the path is too long for a unix socket", dir);
		return false;
	}
	if (lstat(un.sun_path, &st) == 0) {
		if (unix_socket_live(&un)) {
			if (!sp_g.cfg->so_reuseport) {
				snprintf(err, errlen,
					 "another process listens on %s (is shardpool already running? "
					 "so_reuseport = yes lets a new one take over)",
					 un.sun_path);
				return false;
			}
			/* bind beside it, then rename into place: the switch is atomic */
			take_over = true;
			n = snprintf(at.sun_path, sizeof(at.sun_path), "%s/.s.PGSQL.%d.%ld", dir, port, (long)getpid());
			if (n < 0 || (size_t)n >= sizeof(at.sun_path)) {
				snprintf(err, errlen, "unix_socket_dir %s: the path is too long for a unix socket", dir);
				return false;
			}
			unlink(at.sun_path);
		} else {
			unlink(un.sun_path); /* left by a process that is gone */
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "unix socket: %s", strerror(errno));
		return false;
	}
	if (bind(fd, (struct sockaddr *)&at, sizeof(at)) < 0 || listen(fd, 4096) < 0 ||
	    chmod(at.sun_path, 0777) < 0 || (take_over && rename(at.sun_path, un.sun_path) < 0) ||
	    stat(un.sun_path, &st) < 0) {
		snprintf(err, errlen, "could not listen on %s: %s", un.sun_path, strerror(errno));
		if (take_over)
			unlink(at.sun_path);
		close(fd);
		return false;
	}
	if (take_over)
		sp_info("so_reuseport: took the unix socket %s over from the process listening there", un.sun_path);
	add(fd, true, un.sun_path);
	listeners[n_listeners - 1].dev = st.st_dev;
	listeners[n_listeners - 1].ino = st.st_ino;
	return true;
}

bool sp_listener_start(char *err, size_t errlen)
{
	const sp_config_t *cfg = sp_g.cfg;
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (cfg->listen_addr && *cfg->listen_addr && !listen_tcp(cfg->listen_addr, cfg->listen_port, err, errlen))
		return false;
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir &&
	    !listen_unix(cfg->unix_socket_dir, cfg->listen_port, err, errlen))
		return false;
	if (n_listeners == 0) {
		snprintf(err, errlen, "nothing to listen on: set listen_addr or unix_socket_dir");
		return false;
	}
	return true;
}

void sp_listener_hold(bool hold)
{
	for (int i = 0; i < n_listeners; i++) {
		if (listeners[i].fd < 0)
			continue;
		if (hold)
			ev_io_stop(sp_loop, &listeners[i].io);
		else
			ev_io_start(sp_loop, &listeners[i].io);
	}
}

void sp_listener_stop(void)
{
	for (int i = 0; i < n_listeners; i++) {
		if (listeners[i].fd < 0)
			continue;
		ev_io_stop(sp_loop, &listeners[i].io);
		close(listeners[i].fd);
		listeners[i].fd = -1;
		if (listeners[i].is_unix) {
			/* unless a newer process took the name over (so_reuseport) */
			struct stat st;
			if (stat(listeners[i].path, &st) == 0 && st.st_dev == listeners[i].dev &&
			    st.st_ino == listeners[i].ino)
				unlink(listeners[i].path);
		}
	}
	if (ev_is_active(&resume_timer))
		ev_timer_stop(sp_loop, &resume_timer);
	if (spare_fd >= 0) {
		close(spare_fd);
		spare_fd = -1;
	}
}
