/*
 * healthprobe.c - drives shardpool's health checker (src/health.c) against
 * real servers for test/integration/70_health.t.
 *
 *   healthprobe [--log FILE] [--debug] CONFIG
 *
 * Loads CONFIG (and its auth_file) into sp_g like the daemon does, starts the
 * health checker on the default libev loop, and keeps the loop running while
 * it reads commands from stdin, one per line; every answer is one line (state:
 * one line per node, then "end"):
 *
 *   state                          node lines for every node
 *   node DB SHARD R                one node line (R: p for the primary, or a replica index)
 *   write DB SHARD                 "write N": sp_health_write_target
 *   pick DB SHARD N [MIN_LSN [MASK]]  N calls of sp_health_pick_read:
 *                                  "picks p=C r0=C r1=C ..." (p: the answer -1)
 *   wait DB SHARD R FIELD VALUE SECS  until FIELD of the node line equals VALUE
 *                                  (or ">=X", "<=X": numbers, LSNs for lsn):
 *                                  "waited S" (seconds since the command) or "timeout S"
 *   waitwrite DB SHARD N SECS      until sp_health_write_target answers N
 *   run SECS                       let the loop run, then "ok"
 *   set KEY VALUE                  health_check_period, health_check_timeout,
 *                                  max_replica_lag (bytes), max_replica_lag_ms: "ok"
 *   setdb DB KEY VALUE             primary_reads (no|yes|fallback), read_replicas (0|1)
 *   outstanding DB SHARD R N       set a node's outstanding reads
 *   reload                         sp_health_reload(): "ok"
 *   lsn TEXT                       sp_lsn_parse: "lsn HEX" or "lsn invalid"
 *   quit
 *
 * A node line: "node DB.SHARD.R probed=0|1 reachable= recovery= rotation= fenced=
 * banned= lag_bytes= lag_ms= timeline= lsn=X/X fail= reads= error=TEXT"
 * (error last, as it may contain spaces).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "daemon.h"
#include "health.h"
#include "log.h"
#include "sock.h"
#include "userlist.h"

static char inbuf[8192];
static size_t inlen;
static ev_io in_io;
static ev_timer wait_timer;
static bool quitting;

/* the command that holds further input until it answers */
static struct {
	bool active;
	bool is_write;
	bool is_run;
	char db[128];
	int shard, replica;
	char field[64], value[128];
	int want_write;
	ev_tstamp start, deadline;
} pend;

static void process_lines(void);

static const sp_db_conf_t *db_conf(const char *name)
{
	return sp_config_find_db(sp_g.cfg, name);
}

static int parse_replica(const char *s)
{
	if (strcmp(s, "p") == 0 || strcmp(s, "-1") == 0)
		return -1;
	return atoi(s);
}

static void format_node(const sp_node_health_t *n, char *buf, size_t len)
{
	char r[16];
	if (n->replica < 0)
		snprintf(r, sizeof(r), "p");
	else
		snprintf(r, sizeof(r), "r%d", n->replica);
	snprintf(buf, len,
		 "node %s.%d.%s probed=%d reachable=%d recovery=%d rotation=%d fenced=%d banned=%d "
		 "lag_bytes=%" PRId64 " lag_ms=%.0f timeline=%u lsn=%X/%X fail=%d reads=%" PRIu64
		 " error=%s",
		 n->dbname, n->shard, r, n->probed, n->reachable, n->in_recovery, n->in_rotation,
		 n->fenced, n->banned_until > ev_now(sp_loop), n->lag_bytes, n->lag_ms, n->timeline,
		 (unsigned)(n->lsn >> 32), (unsigned)n->lsn, n->fail_count, n->reads,
		 n->last_error);
}

/* Value of " FIELD=" in a node line (up to the next space; error: the rest). */
static bool field_of(const char *line, const char *field, char *out, size_t len)
{
	char key[80];
	const char *p;
	size_t n = 0;
	snprintf(key, sizeof(key), " %s=", field);
	p = strstr(line, key);
	if (!p)
		return false;
	p += strlen(key);
	while (p[n] && (strcmp(field, "error") == 0 || p[n] != ' '))
		n++;
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

/* VALUE is a string to equal, or ">=X" / "<=X" (numbers; LSNs for the lsn field). */
static bool compare(const char *field, const char *have, const char *want)
{
	bool ge = strncmp(want, ">=", 2) == 0, le = strncmp(want, "<=", 2) == 0;
	if (!ge && !le)
		return strcmp(have, want) == 0;
	want += 2;
	if (strcmp(field, "lsn") == 0) {
		uint64_t a, b;
		if (!sp_lsn_parse(have, &a) || !sp_lsn_parse(want, &b))
			return false;
		return ge ? a >= b : a <= b;
	}
	return ge ? strtod(have, NULL) >= strtod(want, NULL)
		  : strtod(have, NULL) <= strtod(want, NULL);
}

static bool pending_done(void)
{
	ev_tstamp now = ev_now(sp_loop);
	if (pend.is_run)
		return now >= pend.deadline;
	if (pend.is_write) {
		const sp_db_conf_t *db = db_conf(pend.db);
		return db && sp_health_write_target(db, pend.shard) == pend.want_write;
	}
	{
		sp_node_health_t *n = sp_health_node(pend.db, pend.shard, pend.replica);
		char line[1024], v[256];
		if (!n)
			return false;
		format_node(n, line, sizeof(line));
		if (!field_of(line, pend.field, v, sizeof(v)))
			return false;
		return compare(pend.field, v, pend.value);
	}
}

static void finish_pending(void)
{
	ev_tstamp now = ev_now(sp_loop);
	bool done = pending_done();
	if (!done && now < pend.deadline)
		return;
	ev_timer_stop(sp_loop, &wait_timer);
	if (pend.is_run)
		printf("ok\n");
	else
		printf("%s %.3f\n", done ? "waited" : "timeout", now - pend.start);
	pend.active = false;
	ev_io_start(sp_loop, &in_io);
	process_lines();
}

static void wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	finish_pending();
}

static void start_pending(double secs)
{
	ev_now_update(sp_loop);
	pend.active = true;
	pend.start = ev_now(sp_loop);
	pend.deadline = pend.start + secs;
	ev_io_stop(sp_loop, &in_io);
	ev_timer_set(&wait_timer, 0.01, 0.01);
	ev_timer_start(sp_loop, &wait_timer);
}

static void cmd_pick(const char *dbname, int shard, int n, const char *min_lsn, unsigned mask)
{
	const sp_db_conf_t *db = db_conf(dbname);
	uint64_t lsn = 0;
	int counts[33] = {0}, prim = 0, other = 0;
	if (!db) {
		printf("error no database %s\n", dbname);
		return;
	}
	if (min_lsn && strcmp(min_lsn, "0") != 0 && !sp_lsn_parse(min_lsn, &lsn)) {
		printf("error bad lsn %s\n", min_lsn);
		return;
	}
	for (int i = 0; i < n; i++) {
		int r = sp_health_pick_read(db, shard, lsn, mask);
		if (r == -1)
			prim++;
		else if (r >= 0 && r < 33)
			counts[r]++;
		else
			other++;
	}
	printf("picks p=%d", prim);
	for (int i = 0; i < db->shards[shard].n_replicas && i < 33; i++)
		printf(" r%d=%d", i, counts[i]);
	if (other)
		printf(" other=%d", other);
	printf("\n");
}

static void command(char *line)
{
	char *argv[16];
	int argc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(line, " \t", &save); tok && argc < 16;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (argc == 0)
		return;
	if (strcmp(argv[0], "quit") == 0) {
		quitting = true;
		ev_break(sp_loop, EVBREAK_ALL);
	} else if (strcmp(argv[0], "state") == 0) {
		char buf[1024];
		for (int i = 0; i < sp_health_count(); i++) {
			format_node(sp_health_at(i), buf, sizeof(buf));
			printf("%s\n", buf);
		}
		printf("end\n");
	} else if (strcmp(argv[0], "node") == 0 && argc == 4) {
		sp_node_health_t *n =
		    sp_health_node(argv[1], atoi(argv[2]), parse_replica(argv[3]));
		char buf[1024];
		if (!n) {
			printf("error no such node\n");
			return;
		}
		format_node(n, buf, sizeof(buf));
		printf("%s\n", buf);
	} else if (strcmp(argv[0], "write") == 0 && argc == 3) {
		const sp_db_conf_t *db = db_conf(argv[1]);
		printf("write %d\n", db ? sp_health_write_target(db, atoi(argv[2])) : -99);
	} else if (strcmp(argv[0], "pick") == 0 && argc >= 4) {
		cmd_pick(argv[1], atoi(argv[2]), atoi(argv[3]), argc > 4 ? argv[4] : NULL,
			 argc > 5 ? (unsigned)strtoul(argv[5], NULL, 0) : 0);
	} else if (strcmp(argv[0], "wait") == 0 && argc == 7) {
		memset(&pend, 0, sizeof(pend));
		snprintf(pend.db, sizeof(pend.db), "%s", argv[1]);
		pend.shard = atoi(argv[2]);
		pend.replica = parse_replica(argv[3]);
		snprintf(pend.field, sizeof(pend.field), "%s", argv[4]);
		snprintf(pend.value, sizeof(pend.value), "%s", argv[5]);
		start_pending(atof(argv[6]));
	} else if (strcmp(argv[0], "waitwrite") == 0 && argc == 5) {
		memset(&pend, 0, sizeof(pend));
		snprintf(pend.db, sizeof(pend.db), "%s", argv[1]);
		pend.shard = atoi(argv[2]);
		pend.is_write = true;
		pend.want_write = atoi(argv[3]);
		start_pending(atof(argv[4]));
	} else if (strcmp(argv[0], "run") == 0 && argc == 2) {
		memset(&pend, 0, sizeof(pend));
		pend.is_run = true;
		start_pending(atof(argv[1]));
	} else if (strcmp(argv[0], "set") == 0 && argc == 3) {
		sp_config_t *cfg = sp_g.cfg;
		if (strcmp(argv[1], "health_check_period") == 0)
			cfg->health_check_period = atof(argv[2]);
		else if (strcmp(argv[1], "health_check_timeout") == 0)
			cfg->health_check_timeout = atof(argv[2]);
		else if (strcmp(argv[1], "max_replica_lag") == 0)
			cfg->max_replica_lag = strtoll(argv[2], NULL, 10);
		else if (strcmp(argv[1], "max_replica_lag_ms") == 0)
			cfg->max_replica_lag_ms = atoi(argv[2]);
		else {
			printf("error unknown key %s\n", argv[1]);
			return;
		}
		printf("ok\n");
	} else if (strcmp(argv[0], "setdb") == 0 && argc == 4) {
		sp_db_conf_t *db = (sp_db_conf_t *)db_conf(argv[1]);
		if (!db) {
			printf("error no database %s\n", argv[1]);
		} else if (strcmp(argv[2], "primary_reads") == 0) {
			db->primary_reads = strcmp(argv[3], "yes") == 0 ? SP_PRIMARY_READS_YES
					    : strcmp(argv[3], "no") == 0
						? SP_PRIMARY_READS_NO
						: SP_PRIMARY_READS_FALLBACK;
			printf("ok\n");
		} else if (strcmp(argv[2], "read_replicas") == 0) {
			db->read_replicas = atoi(argv[3]) != 0;
			printf("ok\n");
		} else {
			printf("error unknown key %s\n", argv[2]);
		}
	} else if (strcmp(argv[0], "outstanding") == 0 && argc == 5) {
		sp_node_health_t *n =
		    sp_health_node(argv[1], atoi(argv[2]), parse_replica(argv[3]));
		if (n)
			n->outstanding = atoi(argv[4]);
		printf(n ? "ok\n" : "error no such node\n");
	} else if (strcmp(argv[0], "lsn") == 0 && argc == 2) {
		uint64_t v;
		if (sp_lsn_parse(argv[1], &v))
			printf("lsn %" PRIX64 "\n", v);
		else
			printf("lsn invalid\n");
	} else if (strcmp(argv[0], "reload") == 0) {
		sp_health_reload();
		printf("ok\n");
	} else {
		printf("error unknown command %s\n", argv[0]);
	}
}

static void process_lines(void)
{
	char *nl;
	while (!pend.active && !quitting && (nl = memchr(inbuf, '\n', inlen))) {
		size_t n = (size_t)(nl - inbuf) + 1;
		char line[sizeof(inbuf)];
		memcpy(line, inbuf, n - 1);
		line[n - 1] = '\0';
		memmove(inbuf, inbuf + n, inlen - n);
		inlen -= n;
		command(line);
	}
}

static void in_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	ssize_t r;
	(void)loop;
	(void)revents;
	if (inlen == sizeof(inbuf)) {
		fprintf(stderr, "healthprobe: command line too long\n");
		exit(2);
	}
	r = read(w->fd, inbuf + inlen, sizeof(inbuf) - inlen);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		quitting = true;
		ev_break(sp_loop, EVBREAK_ALL);
		return;
	}
	inlen += (size_t)r;
	process_lines();
}

int main(int argc, char **argv)
{
	const char *log_path = NULL, *config = NULL;
	bool debug = false;
	char err[1024];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
			log_path = argv[++i];
		else if (strcmp(argv[i], "--debug") == 0)
			debug = true;
		else
			config = argv[i];
	}
	if (!config) {
		fprintf(stderr, "usage: healthprobe [--log FILE] [--debug] CONFIG\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	sp_g.cfg = sp_config_load(config, err, sizeof(err));
	if (!sp_g.cfg) {
		fprintf(stderr, "healthprobe: %s\n", err);
		return 1;
	}
	if (sp_g.cfg->auth_file && *sp_g.cfg->auth_file) {
		sp_g.users = sp_userlist_load(sp_g.cfg->auth_file, err, sizeof(err));
		if (!sp_g.users) {
			fprintf(stderr, "healthprobe: %s\n", err);
			sp_config_free(sp_g.cfg);
			return 1;
		}
	}
	sp_log_level = debug ? SP_LOG_DEBUG : sp_g.cfg->log_level;
	if (log_path && !sp_log_open(log_path)) {
		fprintf(stderr, "healthprobe: cannot open %s\n", log_path);
		return 1;
	}
	sp_loop = ev_default_loop(0);
	ev_io_init(&in_io, in_cb, 0, EV_READ);
	ev_io_start(sp_loop, &in_io);
	ev_init(&wait_timer, wait_cb);

	sp_health_start();
	ev_run(sp_loop, 0);
	sp_health_stop();

	ev_io_stop(sp_loop, &in_io);
	ev_timer_stop(sp_loop, &wait_timer);
	ev_loop_destroy(sp_loop);
	sp_userlist_free(sp_g.users);
	sp_config_free(sp_g.cfg);
	sp_log_close();
	return 0;
}
