/*
 * daemon.c - the process: loading config and auth_file, the pid file,
 * daemonizing, the event loop with its signal watchers, RELOAD/SIGHUP,
 * graceful shutdown (SIGTERM/SIGINT: stop accepting, let transactions
 * finish until shutdown_timeout; a second signal exits at once) and the
 * final teardown that frees everything, so valgrind sees no leaks.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "analyze.h"
#include "auth.h"
#include "auth_scram.h"
#include "client.h"
#include "health.h"
#include "admin.h"
#include "janitor.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "pool.h"
#include "reload.h"
#include "resolve.h"
#include "router.h"
#include "server.h"
#include "sock.h"

sp_daemon_t sp_g;
static uint64_t id_counter;
static ev_signal sig_term, sig_int, sig_hup, sig_usr1, sig_usr2;

uint64_t sp_next_id(void)
{
	return ++id_counter;
}

/* read_functions / write_functions from the config, as the router's overrides. */
static sp_funcset_t *funcset_of(const char *list)
{
	sp_funcset_t *set;
	char *copy, *save = NULL;
	if (!list || !*list)
		return NULL;
	set = sp_funcset_new();
	copy = strdup(list);
	if (!set || !copy) {
		sp_funcset_free(set);
		free(copy);
		return NULL;
	}
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		sp_funcset_add(set, tok);
	free(copy);
	return set;
}

static void apply_router_config(void)
{
	sp_router_set_func_overrides(funcset_of(sp_g.cfg->read_functions), funcset_of(sp_g.cfg->write_functions));
	sp_router_set_max_query_size((size_t)sp_g.cfg->max_route_query_size);
	sp_router_reset();
}

static bool load_users(const sp_config_t *cfg, sp_userlist_t **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!cfg->auth_file || !*cfg->auth_file)
		return true;
	*out = sp_userlist_load(cfg->auth_file, err, errlen);
	return *out != NULL;
}

/*
 * Before the first client: let every primary answer a first health probe, which
 * also reads the column order of sharded tables (INSERT without a column list) and
 * the volatile functions (the read/write split). At most health_check_timeout plus
 * a second; a server that is down does not hold start-up longer. The listening
 * sockets are open already: connections made meanwhile wait in the backlog.
 */
static void wake(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static void wait_first_probes(void)
{
	double limit = sp_g.cfg->health_check_timeout + 1.0;
	ev_tstamp deadline = ev_time() + limit;
	ev_timer tick;
	if (sp_health_first_round_done())
		return;
	sp_listener_hold(true);
	ev_timer_init(&tick, wake, 0.05, 0.05); /* look at the clock while nothing happens */
	ev_timer_start(sp_loop, &tick);
	while (!sp_health_first_round_done() && ev_time() < deadline && !sp_g.shutting_down)
		ev_run(sp_loop, EVRUN_ONCE);
	ev_timer_stop(sp_loop, &tick);
	sp_listener_hold(false);
	if (!sp_health_first_round_done())
		sp_warn("health: not every primary answered its first probe within %.1f s; accepting clients anyway",
			limit);
}

/* The running [shardpool] keys changed (RELOAD, SET): what depends on them follows. */
void sp_daemon_settings_changed(void)
{
	apply_router_config();
	sp_resolve_reload(sp_g.cfg);
	sp_health_reload();
	sp_log_apply_level(sp_g.cfg->log_level);
	sp_admin_settings_changed();
}

/*
 * Re-read the file and auth_file and apply what can be (reload.c). On failure:
 * false, the reason in err. On success: true, and err holds the changes that
 * need a restart ("listen_port changed (6432 -> 6433); [table app.t] added"),
 * or "" when there are none; each is also logged as a WARNING.
 */
bool sp_daemon_reload(char *err, size_t errlen)
{
	sp_config_t *ncfg;
	sp_userlist_t *users;
	int n_restart;
	/* first, and whatever the file holds: logrotate's SIGHUP must move the log to the
	 * new file even when the configuration has an error (which is then logged there) */
	sp_log_reopen();
	ncfg = sp_config_load(sp_g.cfg->path, err, errlen);
	if (!ncfg) {
		sp_warn("reload failed, keeping the running configuration: %s", err);
		return false;
	}
	if (!load_users(ncfg, &users, err, errlen)) {
		sp_warn("reload failed, keeping the running configuration: %s", err);
		sp_config_free(ncfg);
		return false;
	}
	if (users) {
		sp_userlist_free(sp_g.users);
		sp_g.users = users;
	}
	n_restart = sp_reload_apply(sp_g.cfg, ncfg, err, errlen);
	sp_config_free(ncfg);
	sp_daemon_settings_changed();
	if (n_restart > 0)
		sp_info("configuration reloaded from %s; %d change%s not applied: %s need%s a restart", sp_g.cfg->path,
			n_restart, n_restart == 1 ? "" : "s", n_restart == 1 ? "it" : "they", n_restart == 1 ? "s" : "");
	else
		sp_info("configuration reloaded from %s", sp_g.cfg->path);
	return true;
}

void sp_daemon_shutdown_wait_for_clients(void)
{
	if (sp_g.shutting_down || sp_g.wait_for_clients)
		return;
	sp_info("shutdown: no new connections; exiting when the last client has left");
	/* not shutting_down: the clients still here are served as before, pools and all */
	sp_g.wait_for_clients = true;
	sp_listener_stop();
}

void sp_daemon_shutdown(bool immediate)
{
	sp_g.wait_for_clients = false; /* a signal meanwhile: the ordinary shutdown */
	if (immediate || sp_g.shutting_down) {
		sp_info("shutting down now");
		ev_break(sp_loop, EVBREAK_ALL);
		return;
	}
	sp_info("graceful shutdown: no new connections; waiting up to %.0f s for transactions to finish",
		sp_g.cfg->shutdown_timeout);
	sp_g.shutting_down = true;
	sp_g.shutdown_deadline = ev_now(sp_loop) + sp_g.cfg->shutdown_timeout;
	sp_listener_stop();
	for (sp_client_t *c = sp_client_first(), *next; c; c = next) {
		next = c->next;
		/* a statement running on several shards finishes too; the janitor closes the
		 * clients that are left between transactions (janitor.c) */
		if (c->state != SP_CLIENT_ACTIVE && c->state != SP_CLIENT_FANOUT)
			sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "shardpool is shutting down");
	}
	for (sp_server_t *s = sp_server_first(), *next; s; s = next) {
		next = s->all_next;
		if (s->state == SP_SERVER_IDLE)
			sp_server_close(s, "shutting down");
	}
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	if (w->signum == SIGHUP) {
		char err[1024];
		sp_log_reopen(); /* so this line goes to the new file after a logrotate */
		sp_info("SIGHUP: reloading");
		sp_daemon_reload(err, sizeof(err));
		return;
	}
	if (w->signum == SIGUSR1 || w->signum == SIGUSR2) {
		sp_admin_pause_all(w->signum == SIGUSR1,
				   w->signum == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
		return;
	}
	sp_daemon_shutdown(false);
}

/* The process id the pid file names, 0 if none. */
static long pidfile_pid(const char *path)
{
	FILE *fp = fopen(path, "r");
	long pid = 0;
	if (!fp)
		return 0;
	if (fscanf(fp, "%ld", &pid) != 1 || pid < 0)
		pid = 0;
	fclose(fp);
	return pid;
}

static long pid_taken_from; /* so_reuseport: the running process the pid file named */

static bool put_pid(const char *path, long pid)
{
	FILE *fp = fopen(path, "w");
	if (!fp) {
		fprintf(stderr, "shardpool: cannot write pid file %s: %s\n", path, strerror(errno));
		return false;
	}
	fprintf(fp, "%ld\n", pid);
	fclose(fp);
	return true;
}

/* A running process named there is refused, unless so_reuseport: the new process takes
 * the file over, and the old one leaves it alone at its exit (remove_pidfile). */
static bool write_pidfile(const char *path)
{
	long pid;
	if (!path || !*path)
		return true;
	pid = pidfile_pid(path);
	if (pid > 0 && pid != getpid() && kill((pid_t)pid, 0) == 0) {
		if (!sp_g.cfg->so_reuseport) {
			fprintf(stderr, "shardpool: pid file %s names running process %ld; is shardpool already running?\n",
				path, pid);
			return false;
		}
		sp_info("so_reuseport: the pid file %s names running process %ld; it names this one from now on",
			path, pid);
		pid_taken_from = pid;
	}
	return put_pid(path, (long)getpid());
}

/* At exit: remove the pid file if it still names this process; a start that failed
 * after taking it over gives it back. */
static void remove_pidfile(bool start_failed)
{
	const char *path = sp_g.cfg->pid_file;
	if (!path || !*path || pidfile_pid(path) != (long)getpid())
		return;
	if (start_failed && pid_taken_from > 0 && kill((pid_t)pid_taken_from, 0) == 0)
		put_pid(path, pid_taken_from);
	else
		unlink(path);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	/* each client and each server connection is a descriptor, plus a few of our own */
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)sp_g.cfg->max_client_conn + 100)
		sp_warn("the open-file limit (%llu) is below max_client_conn (%d) plus the server "
			"connections: clients beyond it are refused with 53300; raise it (ulimit -n, "
			"LimitNOFILE=) or lower max_client_conn",
			(unsigned long long)rl.rlim_cur, sp_g.cfg->max_client_conn);
}

static void teardown(void)
{
	for (sp_client_t *c = sp_client_first(), *next; c; c = next) {
		next = c->next;
		sp_client_fatal(c, SP_SQLSTATE_ADMIN_SHUTDOWN, "shardpool is shutting down");
	}
	for (sp_server_t *s = sp_server_first(), *next; s; s = next) {
		next = s->all_next;
		sp_server_close(s, "shutting down");
	}
	/* Let the reapers free what was closed. */
	ev_run(sp_loop, EVRUN_NOWAIT);
	sp_pool_free_all();
}

int sp_daemon_run(const char *config_path, bool daemonize)
{
	char err[2048];
	int ready_pipe[2] = {-1, -1};

	sp_g.cfg = sp_config_load(config_path, err, sizeof(err));
	if (!sp_g.cfg) {
		fprintf(stderr, "shardpool: %s\n", err);
		return 1;
	}
	if (!load_users(sp_g.cfg, &sp_g.users, err, sizeof(err))) {
		fprintf(stderr, "shardpool: %s\n", err);
		sp_config_free(sp_g.cfg);
		return 1;
	}
	sp_log_apply_level(sp_g.cfg->log_level);
	if (daemonize) {
		pid_t pid;
		if (pipe(ready_pipe) < 0) {
			perror("pipe");
			return 1;
		}
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid > 0) {
			/* Until it is ready the child's standard error is this pipe: pass on what
			 * it says (why start-up failed, warnings); a NUL byte means ready. */
			char buf[4096];
			ssize_t n;
			bool ready = false;
			close(ready_pipe[1]);
			while ((n = read(ready_pipe[0], buf, sizeof(buf))) > 0 ||
			       (n < 0 && errno == EINTR)) {
				if (n <= 0)
					continue;
				char *nul = memchr(buf, '\0', (size_t)n);
				if (nul) {
					ready = true;
					n = nul - buf;
				}
				if (n > 0 && write(2, buf, (size_t)n) < 0)
					break;
				if (ready)
					break;
			}
			_exit(ready ? 0 : 1);
		}
		close(ready_pipe[0]);
		setsid();
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			close(devnull);
		}
		dup2(ready_pipe[1], 2); /* start-up errors reach the caller */
		if (!sp_g.cfg->log_file || !*sp_g.cfg->log_file)
			fprintf(stderr, "shardpool: warning: running in the background without log_file: "
					"the log is discarded\n");
	}
	if (sp_g.cfg->log_file && *sp_g.cfg->log_file && !sp_log_open(sp_g.cfg->log_file)) {
		fprintf(stderr, "shardpool: cannot open log_file %s: %s\n", sp_g.cfg->log_file, strerror(errno));
		return 1;
	}
	if (!write_pidfile(sp_g.cfg->pid_file))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	sp_loop = ev_default_loop(EVFLAG_AUTO);
	if (!sp_listener_start(err, sizeof(err))) {
		sp_error("%s", err);
		fprintf(stderr, "shardpool: %s\n", err);
		remove_pidfile(true);
		return 1;
	}
	if (!sp_metrics_start(err, sizeof(err))) {
		sp_error("%s", err);
		fprintf(stderr, "shardpool: %s\n", err);
		sp_listener_stop();
		remove_pidfile(true);
		return 1;
	}
	ev_signal_init(&sig_term, on_signal, SIGTERM);
	ev_signal_init(&sig_int, on_signal, SIGINT);
	ev_signal_init(&sig_hup, on_signal, SIGHUP);
	ev_signal_start(sp_loop, &sig_term);
	ev_signal_start(sp_loop, &sig_int);
	ev_signal_start(sp_loop, &sig_hup);
	/* as pgbouncer's: PAUSE and RESUME (unhandled, they would end the process at once) */
	ev_signal_init(&sig_usr1, on_signal, SIGUSR1);
	ev_signal_init(&sig_usr2, on_signal, SIGUSR2);
	ev_signal_start(sp_loop, &sig_usr1);
	ev_signal_start(sp_loop, &sig_usr2);
	sp_janitor_start();
	sp_admin_start();
	apply_router_config();
	sp_resolve_start(sp_g.cfg); /* before the health checker asks for addresses */
	sp_health_start();
	wait_first_probes();
	for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
		sp_pool_maintain(p);
	sp_info("shardpool %s listening on %s:%d (pool_mode %s)", PACKAGE_VERSION, sp_g.cfg->listen_addr,
		sp_g.cfg->listen_port,
		sp_g.cfg->pool_mode == SP_POOL_SESSION ? "session" : sp_g.cfg->pool_mode == SP_POOL_STATEMENT ? "statement" : "transaction");
	if (ready_pipe[1] >= 0) {
		/* ready: tell the caller, and let go of its standard error (a caller that
		 * reads it to its end, such as $(shardpool -d ...), must not wait for our exit) */
		int devnull = open("/dev/null", O_WRONLY);
		if (write(ready_pipe[1], "", 1) != 1)
			sp_warn("could not signal readiness to the parent process");
		if (devnull >= 0) {
			dup2(devnull, 2);
			close(devnull);
		}
		close(ready_pipe[1]);
	}
	ev_run(sp_loop, 0);

	sp_listener_stop();
	sp_metrics_stop();
	sp_janitor_stop();
	sp_admin_stop();
	sp_health_stop();
	ev_signal_stop(sp_loop, &sig_term);
	ev_signal_stop(sp_loop, &sig_int);
	ev_signal_stop(sp_loop, &sig_hup);
	ev_signal_stop(sp_loop, &sig_usr1);
	ev_signal_stop(sp_loop, &sig_usr2);
	teardown();
	sp_resolve_stop();
	sp_info("shardpool stopped");
	remove_pidfile(false);
	sp_router_shutdown();
	sp_auth_cache_free();
	sp_scram_key_cache_clear();
	sp_userlist_free(sp_g.users);
	sp_config_free(sp_g.cfg);
	sp_log_close();
	ev_loop_destroy(sp_loop);
	return sp_g.exit_code;
}
