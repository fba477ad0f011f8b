/*
 * health.c - the health checker: one probe per server every
 * health_check_period over a persistent libpq connection driven by the libev
 * loop (PQconnectStart/PQconnectPoll, PQsendQuery, PQconsumeInput), and the
 * read/write split built on its answers (sp_health_pick_read,
 * sp_health_write_target).
 *
 * Objects: a target is one server (host + port); every configured node entry
 * (database, shard, primary or replica index) points to one target, so a
 * server named by several entries is probed once. A target connects with the
 * parameters of the first entry that names it:
 *   host, port; dbname = the entry's dbname, else the [database] name;
 *   user = the entry's user, else the first admin_users name that has a plain
 *   (non-empty, not md5/SCRAM) password in auth_file, else the first user of
 *   auth_file with a plain password, else libpq's default (the OS user);
 *   password = the entry's password, else that user's plain password from
 *   auth_file, else none (trust, .pgpass).
 * A host name is not resolved by libpq (it would block the loop): the probe
 * passes the resolver's cached addresses as hostaddr; while the name has no
 * answer yet the round is skipped (the node stays as it is) and the probe runs
 * when the answer arrives; a name that does not resolve fails the probe.
 * The connection is kept between probes; a probe that fails on a reused
 * connection reconnects and retries once within the same health_check_timeout,
 * so a server restart between probes is not a failure. A failed probe bans the
 * server for health_check_period * 2^(failures - 1), at most 30 s (or one
 * period if that is longer); a banned server is not probed and gets no reads.
 * A server that is (or is configured as) some shard's writer is banned for one
 * period only: its writes are refused while it is down and must come back with
 * it. A pool that logs in to a server the last probe found down has it probed at
 * once (sp_health_server_up).
 *
 * Rules, recomputed for a shard whenever a probe of one of its nodes ends:
 * - lag of a replica: bytes = the shard's writer's current LSN (as of its last
 *   good probe) - the replica's replay LSN, clamped at 0, -1 while unknown;
 *   ms = now() - pg_last_xact_replay_timestamp() on the replica, but 0 when
 *   replay LSN >= receive LSN and >= the writer's LSN (an idle primary must not
 *   make a caught-up replica look late), -1 while unknown (no transaction
 *   replayed since the replica started). Lag is computed when the replica's
 *   probe ends, against the newest writer LSN known then, so sampling skew
 *   understates lag rather than inventing it.
 * - a replica is in rotation when probed, reachable, in recovery, and
 *   within max_replica_lag bytes (0 = no limit; unknown lag counts as too much
 *   unless the writer is known to be down) and max_replica_lag_ms (0 = off;
 *   unknown ms passes). With health_check_period = 0 nothing is probed and
 *   every replica is in rotation.
 * - fencing: the shard remembers the highest timeline any node claimed
 *   primary on (not in recovery); a reachable node that claims primary on a
 *   lower timeline is fenced, and stays fenced until a probe sees it in
 *   recovery or on that timeline. The memory lasts for the life of the process.
 * - writer: the configured primary if it is reachable, not in recovery and not
 *   fenced; else the unfenced replica that claims primary on the highest
 *   timeline (lowest index on a tie); else -1 while the primary has never been
 *   probed (start-up, or health checks disabled); else -2.
 * - reads (sp_health_pick_read): candidates are the replicas in rotation with
 *   weight > 0, not excluded, at or past min_lsn, plus the writer when
 *   primary_reads = yes (by its weight). "Reads on the primary" go to the
 *   writer: -1, or the promoted replica's index. Among candidates the least
 *   loaded wins, load being outstanding / weight; equally loaded candidates
 *   share by smooth weighted round robin (nginx's algorithm), so with nothing
 *   outstanding N picks split exactly by weight.
 * Every change of reachability, role, fencing, writer and rotation is logged.
 *
 * Catalog reads for the router, on a primary's probe connection once per
 * generation: volatile functions (the read/write split) and the column order
 * of sharded tables (INSERT without a column list); see "column orders".
 *
 * Not here: opening pooled server connections (pool.c asks us where), waiting
 * for a replica to catch up (causal_wait_ms, router), multi-threading (all
 * calls must come from sp_loop's thread), and forgetting a timeline on its own
 * (a re-initialised cluster on a lower timeline stays fenced until restart).
 * Pointers from sp_health_node/sp_health_at stay valid across
 * sp_health_reload for nodes whose entry is unchanged, until sp_health_stop.
 */
#include "health.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "daemon.h"
#include "log.h"
#include "resolve.h"
#include "server.h"
#include "router.h"
#include "sock.h"
#include "sp_types.h"
#include "userlist.h"

#define MAX_BAN 30.0
/* seconds the start waits for a primary whose host name has no answer yet */
#define UNRESOLVED_START_WAIT 1.0

/*
 * One round trip. pg_is_in_recovery() is read once (FROM) so every column
 * agrees on the role; the CASE keeps primary-only functions from running on
 * a standby, where they raise an error.
 */
static const char PROBE_SQL[] =
    "SELECT r, CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
    "pg_last_wal_receive_lsn(), "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp()), "
    "CASE WHEN r THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, "
    "CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver) END "
    "FROM pg_is_in_recovery() AS r";

enum probe_state { PROBE_IDLE, PROBE_CONNECTING, PROBE_QUERYING, PROBE_CATALOG };

/*
 * The read/write split needs to know which functions write: after a good
 * probe of a primary, once per generation (start, and each RELOAD), the
 * same connection reads pg_proc's volatile functions and hands the set to
 * the router. Failures only log: the next probe of a primary tries again.
 */
/*
 * The same round trip reads the collation of every database on the server
 * ("name=" provider letter, collation; one line each; the provider column
 * exists from PostgreSQL 15, to_jsonb gives NULL before): it tells the
 * fan-out merge how each configured database orders text (a server is probed
 * in one database, but entries of several databases may name it).
 */
static const char VOLATILE_SQL[] =
    "SELECT n.nspname, p.proname, bool_or(p.provolatile = 'v') FROM pg_catalog.pg_proc p "
    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace GROUP BY 1, 2; "
    "SELECT string_agg(datname || '=' || coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') || "
    "datcollate, E'\\n') FROM pg_catalog.pg_database d";
/*
 * Each reachable primary contributes its function names once per generation
 * (start, every RELOAD, and when routing met a name no read knew of, at most
 * every CATALOG_AGAIN_DELAY); the router gets the union, since a function may
 * exist on some shards only: the names with a volatile overload, and all
 * names (a call to a name outside both was created since: the primary).
 * Between RELOADs the names only accumulate: a dropped function cannot be
 * called, and a function once volatile stays a write until the next RELOAD.
 */
#define CATALOG_AGAIN_DELAY 5.0
static unsigned catalog_gen = 1;
static unsigned catalog_union_gen;
static bool catalog_fresh = true; /* the next generation starts from no names (start, RELOAD) */
static unsigned catalog_seen_requests;
static ev_tstamp catalog_again_at;

/* A set of names that can be copied for the router (which owns its sets). */
struct namelist {
	char **names;
	int n, cap;
	sp_funcset_t *seen;
	uint64_t sig, installed_sig; /* order-independent hash of the names */
};
static struct namelist vol_list, known_list;

static void names_reset(struct namelist *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->names[i]);
	l->n = 0;
	l->sig = 0;
	sp_funcset_free(l->seen);
	l->seen = sp_funcset_new();
}

static void names_add(struct namelist *l, const char *name)
{
	if (!l->seen)
		l->seen = sp_funcset_new();
	if (!l->seen || sp_funcset_contains(l->seen, name) || !sp_funcset_add(l->seen, name))
		return;
	if (l->n == l->cap) {
		int ncap = l->cap ? l->cap * 2 : 512;
		char **n = realloc(l->names, sizeof(*n) * (size_t)ncap);
		if (!n)
			return;
		l->names = n;
		l->cap = ncap;
	}
	l->names[l->n] = strdup(name);
	if (!l->names[l->n])
		return;
	l->n++;
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	l->sig += h * 2 + 1;
}

static sp_funcset_t *names_copy(const struct namelist *l)
{
	sp_funcset_t *copy = sp_funcset_new();
	for (int i = 0; copy && i < l->n; i++)
		sp_funcset_add(copy, l->names[i]);
	return copy;
}

static void names_free(struct namelist *l)
{
	names_reset(l);
	sp_funcset_free(l->seen);
	l->seen = NULL;
	free(l->names);
	l->names = NULL;
	l->cap = 0;
	l->installed_sig = 0;
}

/* Hand the union so far to the router, unless it already has these names. */
static void vol_install(void)
{
	if (vol_list.sig == vol_list.installed_sig && known_list.sig == known_list.installed_sig)
		return;
	sp_funcset_t *vol = names_copy(&vol_list), *known = names_copy(&known_list);
	if (!vol || !known) {
		sp_funcset_free(vol);
		sp_funcset_free(known);
		return;
	}
	sp_router_set_volatile_funcs(vol, known); /* the router owns the copies */
	vol_list.installed_sig = vol_list.sig;
	known_list.installed_sig = known_list.sig;
}

static void vol_free(void)
{
	names_free(&vol_list);
	names_free(&known_list);
}

/* At the end of every probe: a routing request starts a new generation, not too often. */
static void catalog_poll(ev_tstamp now)
{
	unsigned req = sp_router_catalog_requests();
	if (req != catalog_seen_requests && now >= catalog_again_at) {
		catalog_seen_requests = req;
		catalog_again_at = now + CATALOG_AGAIN_DELAY;
		catalog_gen++;
	}
}

struct target {
	char *host;
	int port;
	/* libpq never resolves host: it gets the resolver's addresses as hostaddr (and host
	 * repeated as many times, as libpq wants), or the probe round is skipped until they
	 * are known */
	char *hostaddr, *hostlist;
	char resolve_err[200]; /* the host name did not resolve: the probe fails with this */
	sp_resolve_wait_t rwait;
	ev_tstamp unresolved_since; /* a probe was skipped for want of an answer (0: not) */
	/* the entry whose parameters are used to connect (see top of file) */
	const sp_node_conf_t *conf;
	const char *default_db;
	char *sig; /* parameters the open connection was made with */
	PGconn *conn;
	enum probe_state state;
	bool fresh; /* conn opened by the running probe: a failure is final */
	ev_io io;
	ev_timer timer; /* idle: time of the next probe; probing: the timeout */
	ev_tstamp started;
	bool seen;

	/* the running probe's row */
	bool got_row;
	bool catalog_tried; /* this probe already ran the pg_proc query */
	unsigned catalog_gen; /* generation whose pg_proc this server contributed */
	bool cols_tried;      /* this probe already ran the column-order query */
	bool cols_busy;	      /* a table was locked by DDL: read again at the next probe */
	unsigned cols_gen;    /* generation whose column orders this server contributed */
	bool catalog_cols;    /* the catalog query running is the column-order one */
	char qerr[200];

	/* results */
	bool probed, reachable, in_recovery;
	uint64_t lsn, receive_lsn;
	uint64_t primary_lsn; /* lsn of the last good probe outside recovery */
	bool have_delay;
	double delay; /* seconds */
	uint32_t timeline;
	int fail_count;
	int timeouts; /* probes in a row that got no answer at all */
	bool login_refused; /* the last probe's login was refused by the server itself */
	unsigned probes_ended; /* probes that ran to their end, good or failed */
	ev_tstamp banned_until, last_ok;
	char last_error[200];
	struct target *next;
};

struct shard;

struct node {
	sp_node_health_t pub;
	struct target *t;
	struct shard *sh;
	char *conninfo; /* own copy: the identity of the entry across reloads */
	int cw;		/* smooth weighted round robin: current weight */
	bool sample;	/* a probe ended since lag was computed */
	bool seen;
	struct node *retired_next; /* out of the table since a RELOAD (build) */
};

struct shard {
	char *dbname;
	const sp_db_conf_t *db;
	int index;
	struct node *primary; /* NULL if the shard has none */
	struct node **replicas;
	int n_replicas;
	uint32_t max_tli; /* highest timeline a node claimed primary on */
	int writer;	  /* sp_health_write_target's answer */
};

static struct node **nodes;
static int n_nodes;
static struct node *retired; /* see build() */
static struct shard **shards;
static int n_shards;
/* build() lays a database's shards out one after the other, by index: find_shard looks
 * up where a database starts once and keeps it (every routed statement asks) */
static const char *found_db;
static int found_base = -1;
static struct target *targets;
static bool running;

static void probe_start(struct target *t);
static void connect_start(struct target *t);
static void update_all(void);

static void *must(void *p)
{
	if (!p) {
		sp_error("health: out of memory");
		abort();
	}
	return p;
}

static char *dupstr(const char *s)
{
	return must(strdup(s));
}

static bool enabled(void)
{
	return sp_g.cfg && sp_g.cfg->health_check_period > 0;
}

static const char *node_name(const struct node *n, char *buf, size_t len)
{
	if (n->pub.replica < 0)
		snprintf(buf, len, "%s.%d primary (%s:%d)", n->pub.dbname, n->pub.shard, n->t->host,
			 n->t->port);
	else
		snprintf(buf, len, "%s.%d replica %d (%s:%d)", n->pub.dbname, n->pub.shard,
			 n->pub.replica, n->t->host, n->t->port);
	return buf;
}

/* ------------------------------------------------------------ credentials */

static const sp_user_t *plain_user(const char *name)
{
	const sp_user_t *u;
	if (!sp_g.users || !name)
		return NULL;
	u = sp_userlist_find(sp_g.users, name);
	if (u && u->kind == SP_SECRET_PLAIN && u->secret && *u->secret)
		return u;
	return NULL;
}

/* The rule is described at the top of the file. */
static void credentials(const sp_node_conf_t *c, const char **user, const char **password)
{
	const sp_user_t *u = NULL;

	*user = c->user;
	*password = c->password;
	if (c->user) {
		if (!*password && (u = plain_user(c->user)))
			*password = u->secret;
		return;
	}
	if (sp_g.cfg && sp_g.cfg->admin_users && *sp_g.cfg->admin_users) {
		const char *s = sp_g.cfg->admin_users;
		while (*s && !u) {
			char name[128];
			size_t len = 0;
			while (*s == ',' || *s == ' ' || *s == '\t')
				s++;
			while (s[len] && s[len] != ',' && s[len] != ' ' && s[len] != '\t')
				len++;
			if (len > 0 && len < sizeof(name)) {
				memcpy(name, s, len);
				name[len] = '\0';
				u = plain_user(name);
			}
			s += len;
		}
	}
	for (int i = 0; !u && sp_g.users && i < sp_g.users->n_users; i++)
		u = plain_user(sp_g.users->users[i].name);
	if (u) {
		*user = u->name;
		if (!*password)
			*password = u->secret;
	}
}

/* ------------------------------------------------------------ probing */

static void copy_error(char *dst, size_t len, const char *msg)
{
	size_t j = 0;
	/* libpq messages end in newlines and may hold several lines: keep one */
	for (size_t i = 0; msg && msg[i] && j + 1 < len; i++) {
		char ch = msg[i];
		if (ch == '\n' || ch == '\r' || ch == '\t')
			ch = ' ';
		if (ch == ' ' && (j == 0 || dst[j - 1] == ' '))
			continue;
		dst[j++] = ch;
	}
	while (j > 0 && dst[j - 1] == ' ')
		j--;
	dst[j] = '\0';
	if (j == 0)
		snprintf(dst, len, "unknown error");
}

static void close_conn(struct target *t)
{
	ev_io_stop(sp_loop, &t->io);
	if (t->conn)
		PQfinish(t->conn);
	t->conn = NULL;
	free(t->sig);
	t->sig = NULL;
}

static void schedule(struct target *t, double delay)
{
	ev_timer_stop(sp_loop, &t->timer);
	if (!enabled())
		return;
	ev_timer_set(&t->timer, delay > 0 ? delay : 0, 0);
	ev_timer_start(sp_loop, &t->timer);
}

/* The collation of database db from a probe's list (see PROBE_SQL); unchanged if absent. */
static void set_collation(sp_node_health_t *p, const char *list, const char *db)
{
	size_t dl = strlen(db);
	for (const char *l = list; l && *l;) {
		const char *nl = strchr(l, '\n'), *end = nl ? nl : l + strlen(l);
		if ((size_t)(end - l) > dl + 1 && !strncmp(l, db, dl) && l[dl] == '=') {
			p->locprovider = l[dl + 1];
			snprintf(p->collate, sizeof(p->collate), "%.*s", (int)(end - l - dl - 2), l + dl + 2);
			return;
		}
		l = nl ? nl + 1 : end;
	}
}

/* Every entry that names this target learns its own database's collation. */
static void publish_collations(struct target *t, const char *list)
{
	for (int i = 0; i < n_nodes; i++) {
		struct node *n = nodes[i];
		if (n->t == t)
			set_collation(&n->pub, list, n->pub.conf->dbname ? n->pub.conf->dbname : n->pub.dbname);
	}
}

/* Copy a target's results into every entry that names it. */
static void publish(struct target *t)
{
	char name[300];
	for (int i = 0; i < n_nodes; i++) {
		struct node *n = nodes[i];
		sp_node_health_t *p = &n->pub;
		if (n->t != t)
			continue;
		if (t->login_refused) {
			/* up, role unknown: probe_refused says so once */
		} else if (p->probed && p->reachable != t->reachable) {
			if (t->reachable)
				sp_info("health: %s is reachable again",
					node_name(n, name, sizeof(name)));
			else
				sp_warn("health: %s is unreachable: %s",
					node_name(n, name, sizeof(name)), t->last_error);
		} else if (!p->probed && !t->reachable) {
			sp_warn("health: %s is unreachable: %s", node_name(n, name, sizeof(name)),
				t->last_error);
		}
		/* last_ok: the role is known from an earlier good probe */
		if (t->reachable && p->last_ok > 0 && p->in_recovery != t->in_recovery) {
			if (t->in_recovery)
				sp_warn("health: %s is now in recovery (a standby)",
					node_name(n, name, sizeof(name)));
			else
				sp_warn("health: %s left recovery: promoted, timeline %u",
					node_name(n, name, sizeof(name)), t->timeline);
		}
		p->probed = t->probed; /* false after a refused login: treated as not probed yet */
		p->reachable = t->reachable;
		p->fail_count = t->fail_count;
		p->banned_until = t->banned_until;
		p->last_ok = t->last_ok;
		snprintf(p->last_error, sizeof(p->last_error), "%s", t->last_error);
		if (t->reachable) {
			p->in_recovery = t->in_recovery;
			p->lsn = t->lsn;
			p->receive_lsn = t->receive_lsn;
			p->timeline = t->timeline;
		}
		n->sample = true;
	}
	update_all();
}

static struct node *writer_node(const struct shard *sh);

/* Does t serve (or is it configured to serve) some shard's writes? */
static bool takes_writes(const struct target *t)
{
	for (int i = 0; i < n_shards; i++) {
		const struct node *w = writer_node(shards[i]);
		if ((shards[i]->primary && shards[i]->primary->t == t) || (w && w->t == t))
			return true;
	}
	return false;
}

static void probe_failed(struct target *t, const char *why, bool refused);

/*
 * A login the server itself refused (a password the health check does not have,
 * a database that does not exist, too many clients): the server is up, but its
 * role and position cannot be read. It is left unprobed: a primary keeps its
 * configured role and takes writes, a replica stays out of rotation. Messages of
 * a server starting up or shutting down mean it is not up.
 */
static bool server_refused_login(const char *msg)
{
	return msg && (strstr(msg, "FATAL:") || strstr(msg, "fe_sendauth")) &&
	       !strstr(msg, "the database system is");
}

static void probe_refused(struct target *t, const char *why)
{
	bool was = t->login_refused;
	probe_failed(t, why, true);
	if (!was)
		sp_warn("health: %s:%d answers, but the health check cannot log in (%s); until it "
			"can, a primary there keeps its configured role and a replica gets no reads. "
			"Give the check a password: password= in the server's line, or a plain "
			"password in auth_file for its user (see doc/usage.md)",
			t->host, t->port, t->last_error);
}

static void probe_fail(struct target *t, const char *why)
{
	probe_failed(t, why, false);
}

static void probe_failed(struct target *t, const char *why, bool refused)
{
	double period = sp_g.cfg->health_check_period, ban = period, cap;
	ev_tstamp now = ev_now(sp_loop);

	/* why may be libpq's message: copy it before the connection goes */
	copy_error(t->last_error, sizeof(t->last_error), why);
	ev_timer_stop(sp_loop, &t->timer);
	close_conn(t);
	t->state = PROBE_IDLE;
	t->probed = !refused; /* refused: up, but role and position unknown */
	t->reachable = false;
	t->login_refused = refused;
	t->timeouts = 0; /* timer_cb counts the failures that were timeouts */
	if (t->fail_count < 30)
		t->fail_count++;
	/* a primary is probed every period: writes are refused while it is down, and
	 * must come back as soon as it does */
	cap = takes_writes(t) ? period : period > MAX_BAN ? period : MAX_BAN;
	for (int i = 1; i < t->fail_count && ban < cap; i++)
		ban *= 2;
	if (ban > cap)
		ban = cap;
	t->banned_until = now + ban;
	t->probes_ended++;
	sp_debug("health: %s:%d probe failed (%d in a row), banned for %.1f s: %s", t->host,
		 t->port, t->fail_count, ban, t->last_error);
	publish(t);
	schedule(t, ban);
}

static bool parse_u32(const char *s, int base, uint32_t *out)
{
	char *end;
	unsigned long v;
	if (!s || !*s)
		return false;
	v = strtoul(s, &end, base);
	if (*end || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Read the probe's row into t; false (with t->qerr) if it is not what we asked for. */
static bool read_row(struct target *t, const PGresult *res)
{
	const char *v;
	uint64_t lsn = 0, recv = 0;
	uint32_t tli = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_error(t->qerr, sizeof(t->qerr), PQresultErrorMessage(res));
		return false;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 6 || PQgetisnull(res, 0, 0)) {
		snprintf(t->qerr, sizeof(t->qerr), "probe returned %d rows of %d columns",
			 PQntuples(res), PQnfields(res));
		return false;
	}
	t->in_recovery = PQgetvalue(res, 0, 0)[0] == 't';
	if (!PQgetisnull(res, 0, 1) && !sp_lsn_parse(PQgetvalue(res, 0, 1), &lsn)) {
		snprintf(t->qerr, sizeof(t->qerr), "bad LSN '%.40s'", PQgetvalue(res, 0, 1));
		return false;
	}
	if (!PQgetisnull(res, 0, 2) && !sp_lsn_parse(PQgetvalue(res, 0, 2), &recv)) {
		snprintf(t->qerr, sizeof(t->qerr), "bad LSN '%.40s'", PQgetvalue(res, 0, 2));
		return false;
	}
	t->lsn = lsn;
	t->receive_lsn = recv;
	t->have_delay = !PQgetisnull(res, 0, 3);
	t->delay = t->have_delay ? strtod(PQgetvalue(res, 0, 3), NULL) : 0;
	if (!isfinite(t->delay) || t->delay < 0)
		t->delay = 0; /* clocks of primary and replica disagree */
	if (t->in_recovery)
		v = PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5);
	else
		v = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	if (v && parse_u32(v, t->in_recovery ? 10 : 16, &tli))
		t->timeline = tli;
	else if (!t->in_recovery)
		t->timeline = 0;
	/* a standby without a WAL receiver keeps its last known timeline */
	return true;
}

static void probe_ok(struct target *t);
static bool watch(struct target *t, int events);

/* ------------------------------------------------------------ column orders */

/*
 * INSERT ... VALUES without a column list fills the table's columns in
 * order, so the router needs each sharded table's column order. After the
 * volatile-function read, a primary (a server not in recovery) answers one
 * more query on the same connection: the non-dropped columns, by attnum, of
 * every relation named like a sharded table of a configured database the
 * connection's database serves, in any schema, whether the unqualified name
 * resolves to it (to_regclass under the health user's search_path), and
 * whether a DDL holds or waits for an ACCESS EXCLUSIVE lock on it (then it is
 * skipped and read again at the next probe: its columns may be moving).
 *
 * A generation (cols_gen) asks every primary once: start, each RELOAD, and
 * whenever the router's request counter moves (DDL on a sharded table passed
 * through, or an INSERT met a table of unknown order); a request is answered
 * twice, the second time a few seconds later, because the router asks
 * before the DDL reaches the shards. Per (database, schema, table) the first
 * answer of a generation replaces the older one; a later shard that answers
 * differently makes the order unknown (logged: the shards disagree), a shard
 * without the table changes nothing. A table no shard reported in the
 * generation is forgotten.
 */
static unsigned cols_gen = 1;
static unsigned cols_seen_requests;
static ev_tstamp cols_again_at; /* second read of a request; 0 = none due */
#define COLS_AGAIN_DELAY 3.0

enum col_state { COL_ABSENT, COL_KNOWN, COL_BUSY, COL_CONFLICT };

struct colrec {
	char *db, *schema, *table; /* schema NULL: what the unqualified name resolves to */
	unsigned gen;
	enum col_state state;
	char **names;
	int n;
	struct colrec *next;
};
static struct colrec *colrecs;

static void colrec_set_names(struct colrec *r, char **names, int n)
{
	for (int i = 0; i < r->n; i++)
		free(r->names[i]);
	free(r->names);
	r->names = names;
	r->n = n;
}

static void colrecs_free(void)
{
	while (colrecs) {
		struct colrec *r = colrecs;
		colrecs = r->next;
		colrec_set_names(r, NULL, 0);
		free(r->db);
		free(r->schema);
		free(r->table);
		free(r);
	}
}

static struct colrec *colrec_get(const char *db, const char *schema, const char *table)
{
	struct colrec *r;
	for (r = colrecs; r; r = r->next)
		if (!strcmp(r->db, db) && !strcmp(r->table, table) &&
		    (r->schema == schema || (r->schema && schema && !strcmp(r->schema, schema))))
			return r;
	r = must(calloc(1, sizeof(*r)));
	r->db = dupstr(db);
	r->schema = schema ? dupstr(schema) : NULL;
	r->table = dupstr(table);
	r->next = colrecs;
	colrecs = r;
	return r;
}

static void colrec_install(const struct colrec *r)
{
	if (r->state == COL_KNOWN)
		sp_router_set_columns(r->db, r->schema, r->table, (const char *const *)r->names,
				      r->n);
	else
		sp_router_set_columns(r->db, r->schema, r->table, NULL, 0);
}

/* Called at the end of every probe: a router request starts a new generation. */
static void cols_poll(ev_tstamp now)
{
	unsigned req = sp_router_columns_requests();
	if (req != cols_seen_requests) {
		cols_seen_requests = req;
		cols_gen++;
		cols_again_at = now + COLS_AGAIN_DELAY;
	} else if (cols_again_at > 0 && now >= cols_again_at) {
		cols_again_at = 0;
		cols_gen++;
	}
}

static bool is_sharded_table(const sp_table_conf_t *tc)
{
	return tc->name && !tc->replicated && tc->n_keys > 0;
}

static const char *target_dbname(const struct target *t)
{
	return t->conf->dbname ? t->conf->dbname : t->default_db;
}

/* Does shard sh keep its data where t's connection points (same server and database)? */
static bool serves(const struct target *t, const struct shard *sh)
{
	const char *tdb = target_dbname(t);
	for (int i = -1; i < sh->n_replicas; i++) {
		const struct node *n = i < 0 ? sh->primary : sh->replicas[i];
		if (!n || n->t != t)
			continue;
		const sp_node_conf_t *nc = n->pub.conf;
		if (!strcmp(nc->dbname ? nc->dbname : sh->dbname, tdb))
			return true;
	}
	return false;
}

/* The column-order query for t, or NULL when no sharded table is served there. */
static char *cols_sql(struct target *t)
{
	static const char head[] =
	    "SELECT n.nspname, c.relname, c.oid = to_regclass(quote_ident(c.relname)), "
	    "EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'relation' "
	    "AND l.relation = c.oid AND l.mode = 'AccessExclusiveLock' AND l.database = "
	    "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())), "
	    "a.attname FROM pg_catalog.pg_class c "
	    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT "
	    "a.attisdropped "
	    "WHERE c.relkind IN ('r', 'p', 'f', 'v') AND c.relname IN (";
	static const char tail[] = ") ORDER BY 1, 2, a.attnum";
	size_t len = sizeof(head) + sizeof(tail), used;
	int n = 0;
	char *sql;

	for (int i = 0; i < n_shards; i++) {
		if (!serves(t, shards[i]))
			continue;
		for (int k = 0; k < shards[i]->db->n_tables; k++)
			if (is_sharded_table(&shards[i]->db->tables[k]))
				len += 2 * strlen(shards[i]->db->tables[k].name) + 8;
	}
	sql = must(malloc(len));
	used = (size_t)snprintf(sql, len, "%s", head);
	for (int i = 0; i < n_shards; i++) {
		if (!serves(t, shards[i]))
			continue;
		for (int k = 0; k < shards[i]->db->n_tables; k++) {
			const sp_table_conf_t *tc = &shards[i]->db->tables[k];
			char *lit;
			if (!is_sharded_table(tc) ||
			    !(lit = PQescapeLiteral(t->conn, tc->name, strlen(tc->name))))
				continue;
			used +=
			    (size_t)snprintf(sql + used, len - used, "%s%s", n ? ", " : "", lit);
			PQfreemem(lit);
			n++;
		}
	}
	snprintf(sql + used, len - used, "%s", tail);
	if (n == 0) {
		free(sql);
		return NULL;
	}
	return sql;
}

static bool same_names(char **a, int na, char **b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* One relation's answer (rows [from, to) of res) for configured database db. */
static void cols_apply(struct target *t, const char *db, const char *schema, const char *table,
		       bool busy, const PGresult *res, int from, int to)
{
	struct colrec *r = colrec_get(db, schema, table);
	int n = to - from;
	char **names = must(calloc((size_t)n, sizeof(char *)));

	for (int i = 0; i < n; i++)
		names[i] = dupstr(PQgetvalue(res, from + i, 4));
	if (busy)
		t->cols_busy = true;
	if (r->gen != cols_gen || r->state == COL_ABSENT || r->state == COL_BUSY) {
		r->gen = cols_gen;
		r->state = busy ? COL_BUSY : COL_KNOWN;
		colrec_set_names(r, names, n);
	} else {
		if (r->state == COL_KNOWN && busy) {
			r->state = COL_BUSY;
		} else if (r->state == COL_KNOWN && !same_names(r->names, r->n, names, n)) {
			r->state = COL_CONFLICT;
			sp_warn("health: the shards of database %s disagree on the column order of "
				"%s%s%s "
				"(%s:%d differs): INSERT without a column list into it is refused",
				db, schema ? schema : "", schema ? "." : "", table, t->host,
				t->port);
		}
		colrec_set_names(r, names, n);
	}
	colrec_install(r);
}

static void cols_done(struct target *t, PGresult *res)
{
	int rows, known = 0;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 5) {
		sp_warn("health: could not read the column order of sharded tables from %s:%d: %s",
			t->host, t->port,
			res ? PQresultErrorMessage(res) : PQerrorMessage(t->conn));
		return;
	}
	rows = PQntuples(res);
	t->cols_gen = cols_gen;
	t->cols_busy = false;
	for (int i = 0; i < n_shards; i++) {
		const sp_db_conf_t *db = shards[i]->db;
		bool first = true;
		if (!serves(t, shards[i]))
			continue;
		for (int j = 0; j < i; j++)
			if (shards[j]->db == db && serves(t, shards[j]))
				first = false;
		if (!first)
			continue; /* several shards of one database on this server: one answer */
		for (int a = 0; a < rows;) {
			const char *nsp = PQgetvalue(res, a, 0), *rel = PQgetvalue(res, a, 1);
			bool on_path = PQgetvalue(res, a, 2)[0] == 't',
			     busy = PQgetvalue(res, a, 3)[0] == 't';
			bool wanted = false;
			int b = a + 1;
			while (b < rows && !strcmp(PQgetvalue(res, b, 0), nsp) &&
			       !strcmp(PQgetvalue(res, b, 1), rel))
				b++;
			for (int k = 0; k < db->n_tables && !wanted; k++)
				wanted = is_sharded_table(&db->tables[k]) &&
					 !strcmp(db->tables[k].name, rel);
			if (wanted) {
				cols_apply(t, db->name, nsp, rel, busy, res, a, b);
				if (on_path)
					cols_apply(t, db->name, NULL, rel, busy, res, a, b);
				known++;
			}
			a = b;
		}
		/* tables no shard has reported in this generation: forget them */
		for (struct colrec *r = colrecs; r; r = r->next)
			if (!strcmp(r->db, db->name) && r->gen != cols_gen &&
			    r->state != COL_ABSENT) {
				r->gen = cols_gen;
				r->state = COL_ABSENT;
				colrec_install(r);
			}
	}
	sp_info("health: column order of %d sharded relation(s) read on %s:%d%s", known, t->host,
		t->port, t->cols_busy ? " (some locked by DDL: read again at the next probe)" : "");
}

static void catalog_done(struct target *t, PGresult *res)
{
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
		if (catalog_union_gen != catalog_gen) {
			if (catalog_fresh) { /* first primary of a start or RELOAD generation */
				names_reset(&vol_list);
				names_reset(&known_list);
				catalog_fresh = false;
			}
			catalog_union_gen = catalog_gen;
		}
		for (int i = 0; i < PQntuples(res); i++) {
			char q[256];
			const char *nsp = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1);
			bool vol = PQgetvalue(res, i, 2)[0] == 't';
			snprintf(q, sizeof(q), "%s.%s", nsp, name);
			names_add(&known_list, name);
			names_add(&known_list, q);
			if (vol) {
				names_add(&vol_list, name);
				names_add(&vol_list, q);
			}
		}
		t->catalog_gen = catalog_gen;
		vol_install();
		sp_info("health: functions read from pg_proc on %s:%d (%d volatile names of %d); statements calling a volatile one, or one created since, go to the primary",
			t->host, t->port, vol_list.n, known_list.n);
	} else {
		sp_warn("health: could not read volatile functions from %s:%d: %s", t->host, t->port,
			res ? PQresultErrorMessage(res) : PQerrorMessage(t->conn));
	}
}

static void catalog_step(struct target *t, int revents)
{
	PGresult *res;
	if (revents & EV_WRITE) {
		int r = PQflush(t->conn);
		if (r < 0 || (r == 0 && !watch(t, EV_READ)))
			goto broken;
	}
	if (!(revents & EV_READ))
		return;
	if (!PQconsumeInput(t->conn))
		goto broken;
	while (!PQisBusy(t->conn)) {
		res = PQgetResult(t->conn);
		if (!res) {
			t->state = PROBE_QUERYING; /* probe_ok finishes from a query state */
			probe_ok(t);
			return;
		}
		if (t->catalog_cols) {
			if (t->cols_gen != cols_gen)
				cols_done(t, res);
		} else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == 1) {
			/* the second statement: the databases' collations (see VOLATILE_SQL) */
			if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
				publish_collations(t, PQgetvalue(res, 0, 0));
		} else if (t->catalog_gen != catalog_gen) {
			catalog_done(t, res);
		}
		PQclear(res);
	}
	return;
broken:
	sp_warn("health: catalog query on %s:%d failed: %s", t->host, t->port, PQerrorMessage(t->conn));
	close_conn(t);
	t->state = PROBE_QUERYING;
	probe_ok(t);
}

static bool start_catalog(struct target *t)
{
	int r;
	if (!PQsendQuery(t->conn, VOLATILE_SQL))
		return false;
	r = PQflush(t->conn);
	if (r < 0)
		return false;
	t->state = PROBE_CATALOG;
	t->catalog_tried = true;
	t->catalog_cols = false;
	return watch(t, r == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* Send the column-order query (cols_sql); false if there is nothing to ask or it cannot be sent. */
static bool start_cols(struct target *t)
{
	char *sql;
	int r;

	t->cols_tried = true;
	if (!(sql = cols_sql(t))) {
		t->cols_gen = cols_gen; /* no sharded table to read here */
		t->cols_busy = false;
		return false;
	}
	r = PQsendQuery(t->conn, sql) ? PQflush(t->conn) : -1;
	free(sql);
	if (r < 0)
		return false;
	t->state = PROBE_CATALOG;
	t->catalog_cols = true;
	return watch(t, r == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void probe_ok(struct target *t)
{
	ev_tstamp now = ev_now(sp_loop);
	double next;

	if (t->catalog_gen != catalog_gen && !t->catalog_tried && t->state == PROBE_QUERYING && !t->in_recovery && t->conn &&
	    PQstatus(t->conn) == CONNECTION_OK && start_catalog(t))
		return;
	catalog_poll(now);
	cols_poll(now);
	if ((t->cols_gen != cols_gen || t->cols_busy) && !t->cols_tried &&
	    t->state == PROBE_QUERYING && !t->in_recovery && t->conn &&
	    PQstatus(t->conn) == CONNECTION_OK && start_cols(t))
		return;

	ev_timer_stop(sp_loop, &t->timer);
	ev_io_stop(sp_loop, &t->io); /* idle connection: nothing to wait for */
	t->state = PROBE_IDLE;
	t->probed = true;
	t->reachable = true;
	t->fail_count = 0;
	t->timeouts = 0;
	if (t->login_refused)
		sp_info("health: %s:%d: the health check logs in again", t->host, t->port);
	t->login_refused = false;
	t->banned_until = 0;
	t->last_ok = now;
	t->last_error[0] = '\0';
	if (!t->in_recovery)
		t->primary_lsn = t->lsn;
	t->probes_ended++;
	publish(t);
	/* keep the cadence of probe starts, not of probe ends */
	next = t->started + sp_g.cfg->health_check_period - now;
	schedule(t, next);
}

/* False if the probe failed (and was wound up) instead. */
static bool watch(struct target *t, int events)
{
	int fd = PQsocket(t->conn);
	ev_io_stop(sp_loop, &t->io);
	if (fd < 0) {
		probe_fail(t, "libpq has no socket");
		return false;
	}
	/* the socket may change while libpq tries other addresses: set it each time */
	ev_io_set(&t->io, fd, events);
	ev_io_start(sp_loop, &t->io);
	return true;
}

static void quiet_notices(void *arg, const char *msg)
{
	(void)arg;
	sp_debug("health: server notice: %s", msg);
}

static char *conn_sig(const struct target *t, const char **kw, const char **val, char *port)
{
	const char *user, *password;
	const char *db = t->conf->dbname ? t->conf->dbname : t->default_db;
	size_t len;
	char *sig;
	int i = 0;

	credentials(t->conf, &user, &password);
	snprintf(port, 12, "%d", t->port);
	kw[i] = "host", val[i++] = t->hostlist ? t->hostlist : t->host;
	if (t->hostaddr)
		kw[i] = "hostaddr", val[i++] = t->hostaddr;
	kw[i] = "port", val[i++] = port;
	kw[i] = "dbname", val[i++] = db;
	kw[i] = "application_name", val[i++] = "shardpool health check";
	if (user)
		kw[i] = "user", val[i++] = user;
	if (password)
		kw[i] = "password", val[i++] = password;
	kw[i] = NULL, val[i] = NULL;
	len = strlen(t->host) + (t->hostaddr ? strlen(t->hostaddr) : 0) + strlen(db) +
	      (user ? strlen(user) : 0) + (password ? strlen(password) : 0) + 40;
	sig = must(malloc(len));
	/* a new address of the host name means a new connection */
	snprintf(sig, len, "%s\n%s\n%d\n%s\n%s\n%s", t->host, t->hostaddr ? t->hostaddr : "", t->port, db,
		 user ? user : "", password ? password : "");
	return sig;
}

static void send_query(struct target *t)
{
	int r;
	t->state = PROBE_QUERYING;
	t->got_row = false;
	t->qerr[0] = '\0';
	if (!PQsendQuery(t->conn, PROBE_SQL)) {
		copy_error(t->qerr, sizeof(t->qerr), PQerrorMessage(t->conn));
		goto failed;
	}
	r = PQflush(t->conn);
	if (r < 0) {
		copy_error(t->qerr, sizeof(t->qerr), PQerrorMessage(t->conn));
		goto failed;
	}
	watch(t, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return;
failed:
	if (!t->fresh) {
		/* the kept connection died since the last probe: one fresh try */
		sp_debug("health: %s:%d: kept connection failed (%s), reconnecting", t->host,
			 t->port, t->qerr);
		close_conn(t);
		connect_start(t);
		return;
	}
	probe_fail(t, t->qerr);
}

static void connect_start(struct target *t)
{
	const char *kw[10], *val[10];
	char port[12];

	close_conn(t);
	t->fresh = true;
	t->state = PROBE_CONNECTING;
	if (t->resolve_err[0]) {
		probe_fail(t, t->resolve_err);
		return;
	}
	t->sig = conn_sig(t, kw, val, port);
	t->conn = PQconnectStartParams(kw, val, 0);
	if (!t->conn) {
		probe_fail(t, "out of memory starting a connection");
		return;
	}
	if (PQstatus(t->conn) == CONNECTION_BAD) {
		if (server_refused_login(PQerrorMessage(t->conn)))
			probe_refused(t, PQerrorMessage(t->conn));
		else
			probe_fail(t, PQerrorMessage(t->conn));
		return;
	}
	PQsetNoticeProcessor(t->conn, quiet_notices, NULL);
	/* libpq's protocol: start as if PQconnectPoll had said "writing" */
	watch(t, EV_WRITE);
}

static void connect_step(struct target *t)
{
	switch (PQconnectPoll(t->conn)) {
	case PGRES_POLLING_READING:
		watch(t, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(t, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(t->conn, 1) != 0) {
			probe_fail(t, PQerrorMessage(t->conn));
			return;
		}
		send_query(t);
		break;
	default:
		if (server_refused_login(PQerrorMessage(t->conn)))
			probe_refused(t, PQerrorMessage(t->conn));
		else
			probe_fail(t, PQerrorMessage(t->conn));
		break;
	}
}

static void query_step(struct target *t, int revents)
{
	PGresult *res;

	if (revents & EV_WRITE) {
		int r = PQflush(t->conn);
		if (r < 0)
			goto broken;
		if (r == 0 && !watch(t, EV_READ))
			return;
	}
	if (!(revents & EV_READ))
		return;
	if (!PQconsumeInput(t->conn))
		goto broken;
	while (!PQisBusy(t->conn)) {
		res = PQgetResult(t->conn);
		if (!res) {
			if (t->got_row) {
				probe_ok(t);
				return;
			}
			if (!t->qerr[0])
				snprintf(t->qerr, sizeof(t->qerr), "probe returned no row");
			goto failed;
		}
		if (!t->got_row && !t->qerr[0])
			t->got_row = read_row(t, res);
		else if (PQresultStatus(res) == PGRES_FATAL_ERROR)
			copy_error(t->qerr, sizeof(t->qerr), PQresultErrorMessage(res));
		PQclear(res);
		if (PQstatus(t->conn) == CONNECTION_BAD)
			goto broken;
	}
	return;
broken:
	copy_error(t->qerr, sizeof(t->qerr), PQerrorMessage(t->conn));
failed:
	if (!t->fresh) {
		/* e.g. the server restarted since the last probe: one fresh try */
		sp_debug("health: %s:%d: kept connection failed (%s), reconnecting", t->host,
			 t->port, t->qerr);
		close_conn(t);
		connect_start(t);
		return;
	}
	probe_fail(t, t->qerr);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct target *t = container_of(w, struct target, io);
	(void)loop;
	if (t->state == PROBE_CONNECTING)
		connect_step(t);
	else if (t->state == PROBE_QUERYING)
		query_step(t, revents);
	else if (t->state == PROBE_CATALOG)
		catalog_step(t, revents);
	else
		ev_io_stop(sp_loop, &t->io);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct target *t = container_of(w, struct target, timer);
	char why[120];
	(void)loop;
	(void)revents;
	if (t->state == PROBE_IDLE) {
		probe_start(t);
		return;
	}
	snprintf(why, sizeof(why), "no answer within health_check_timeout (%g s) while %s",
		 sp_g.cfg->health_check_timeout,
		 t->state == PROBE_CONNECTING ? "connecting" : "waiting for the probe");
	int timeouts = t->timeouts + 1;
	probe_fail(t, why);
	t->timeouts = timeouts;
	/* twice in a row without an answer: the server hangs (stopped, or its machine
	 * is gone without a reset). Statements running there would wait forever and
	 * connections being opened until server_connect_timeout: close them all. */
	if (timeouts >= 2) {
		char reason[200];
		snprintf(reason, sizeof(reason), "server %s:%d does not answer health checks (%s)",
			 t->host, t->port, why);
		sp_server_close_node(t->host, t->port, reason);
	}
}

/* The resolver answered a name whose probe round was skipped: probe now. */
static void on_resolved(sp_resolve_wait_t *w, sp_resolve_addrs_t *addrs, int err)
{
	struct target *t = container_of(w, struct target, rwait);
	(void)err;
	sp_resolve_addrs_unref(addrs);
	if (running && enabled() && t->state == PROBE_IDLE && ev_now(sp_loop) >= t->banned_until)
		schedule(t, 0);
}

/*
 * Fill t->hostaddr / t->hostlist from the resolver (t->resolve_err if the name did
 * not resolve). false: no answer yet, the caller skips this round (on_resolved runs
 * when the answer comes).
 */
static bool resolve_target(struct target *t)
{
	sp_resolve_addrs_t *a = NULL;
	size_t alen, hlen;
	int err = 0, n;

	free(t->hostaddr);
	free(t->hostlist);
	t->hostaddr = t->hostlist = NULL;
	t->resolve_err[0] = '\0';
	if (!sp_resolve_is_name(t->host)) {
		/* pools connect to 127.0.0.1 for localhost (sock.c): so does the probe */
		if (strcmp(t->host, "localhost") == 0)
			t->hostaddr = dupstr("127.0.0.1");
		return true;
	}
	switch (sp_resolve_lookup(t->host, &t->rwait, on_resolved, &a, &err)) {
	case SP_RESOLVE_PENDING:
		if (!t->unresolved_since)
			t->unresolved_since = ev_now(sp_loop);
		return false;
	case SP_RESOLVE_FAILED:
		t->unresolved_since = 0;
		snprintf(t->resolve_err, sizeof(t->resolve_err), "could not resolve host \"%s\": %s", t->host,
			 sp_resolve_strerror(err));
		return true;
	default:
		t->unresolved_since = 0;
		break;
	}
	n = a->n < 8 ? a->n : 8;
	alen = (size_t)n * (INET6_ADDRSTRLEN + 1) + 1;
	hlen = (size_t)n * (strlen(t->host) + 1) + 1;
	t->hostaddr = must(malloc(alen));
	t->hostlist = must(malloc(hlen));
	t->hostaddr[0] = t->hostlist[0] = '\0';
	for (int i = 0, ao = 0, ho = 0; i < n; i++) {
		char one[INET6_ADDRSTRLEN];
		ao += snprintf(t->hostaddr + ao, alen - (size_t)ao, "%s%s", i ? "," : "",
			       sp_resolve_addr_str(&a->a[i], one, sizeof(one)));
		ho += snprintf(t->hostlist + ho, hlen - (size_t)ho, "%s%s", i ? "," : "", t->host);
	}
	sp_resolve_addrs_unref(a);
	return true;
}

static void forget_target(struct target *t)
{
	sp_resolve_cancel(&t->rwait);
	ev_timer_stop(sp_loop, &t->timer);
	close_conn(t);
	free(t->hostaddr);
	free(t->hostlist);
	free(t->host);
	free(t);
}

static void probe_start(struct target *t)
{
	double timeout = sp_g.cfg->health_check_timeout;
	const char *kw[10], *val[10];
	char port[12], *sig;

	if (!enabled())
		return;
	if (t->state == PROBE_IDLE && !resolve_target(t)) {
		/* never block on DNS: the node stays as it is until the name has an answer */
		sp_debug("health: %s:%d: host name not resolved yet; probe skipped until it is", t->host, t->port);
		schedule(t, sp_g.cfg->health_check_period);
		return;
	}
	t->catalog_tried = false;
	t->cols_tried = false;
	if (t->state == PROBE_IDLE) {
		t->started = ev_now(sp_loop);
		ev_timer_stop(sp_loop, &t->timer);
		ev_timer_set(&t->timer, timeout > 0 ? timeout : 2.0, 0);
		ev_timer_start(sp_loop, &t->timer);
	}
	sig = conn_sig(t, kw, val, port);
	if (t->conn && PQstatus(t->conn) == CONNECTION_OK &&
	    PQtransactionStatus(t->conn) == PQTRANS_IDLE && t->sig && strcmp(sig, t->sig) == 0) {
		free(sig);
		t->fresh = false;
		send_query(t);
		return;
	}
	free(sig);
	connect_start(t);
}

/* ------------------------------------------------------------ rules */

static struct node *writer_node(const struct shard *sh)
{
	if (sh->writer >= 0 && sh->writer < sh->n_replicas)
		return sh->replicas[sh->writer];
	return sh->primary;
}

static bool claims_primary(const struct node *n)
{
	return n && n->pub.probed && n->pub.reachable && !n->pub.in_recovery;
}

static bool can_write(const struct node *n)
{
	return claims_primary(n) && !n->pub.fenced;
}

static int compute_writer(const struct shard *sh)
{
	int best = -2;
	if (!enabled())
		return -1;
	if (can_write(sh->primary))
		return -1;
	for (int i = 0; i < sh->n_replicas; i++) {
		const struct node *r = sh->replicas[i];
		if (can_write(r) &&
		    (best == -2 || r->pub.timeline > sh->replicas[best]->pub.timeline))
			best = i;
	}
	if (best != -2)
		return best;
	if (sh->primary && !sh->primary->pub.probed)
		return -1;
	return -2;
}

static void compute_lag(struct node *n, uint64_t plsn)
{
	sp_node_health_t *p = &n->pub;
	bool caught;

	p->lag_bytes = plsn == 0 ? -1 : plsn > p->lsn ? (int64_t)(plsn - p->lsn) : 0;
	caught = (p->receive_lsn == 0 || p->lsn >= p->receive_lsn) && (plsn == 0 || p->lsn >= plsn);
	if (caught)
		p->lag_ms = 0;
	else if (n->t->have_delay)
		p->lag_ms = n->t->delay * 1000.0;
	else
		p->lag_ms = -1;
}

static bool replica_usable(const struct shard *sh, const struct node *n, char *why, size_t len)
{
	const sp_config_t *cfg = sp_g.cfg;
	const sp_node_health_t *p = &n->pub;
	const struct node *w = writer_node(sh);
	bool writer_down = sh->writer == -2 || !w || (w->pub.probed && !w->pub.reachable);

	if (!enabled())
		return true;
	if (!p->probed) {
		snprintf(why, len, "not probed yet");
		return false;
	}
	if (!p->reachable) {
		snprintf(why, len, "unreachable: %s", p->last_error);
		return false;
	}
	if (!p->in_recovery) {
		snprintf(why, len, "not in recovery");
		return false;
	}
	if (p->timeline != 0 && p->timeline < sh->max_tli) {
		/* it follows a primary that was replaced (or nothing): it never sees new writes */
		snprintf(why, len, "on timeline %u, behind the shard's timeline %u (it does not follow the new primary)",
			 p->timeline, sh->max_tli);
		return false;
	}
	if (cfg->max_replica_lag > 0 && p->lag_bytes > cfg->max_replica_lag) {
		snprintf(why, len, "replay lag %" PRId64 " bytes > max_replica_lag %" PRId64,
			 p->lag_bytes, cfg->max_replica_lag);
		return false;
	}
	if (cfg->max_replica_lag > 0 && p->lag_bytes < 0 && !writer_down) {
		snprintf(why, len, "lag unknown: the primary's WAL position is not known yet");
		return false;
	}
	if (cfg->max_replica_lag_ms > 0 && p->lag_ms > cfg->max_replica_lag_ms) {
		snprintf(why, len, "replay lag %.0f ms > max_replica_lag_ms %d", p->lag_ms,
			 cfg->max_replica_lag_ms);
		return false;
	}
	return true;
}

static void update_shard(struct shard *sh)
{
	char name[300], why[300];
	int w;
	const struct node *wn;
	uint64_t plsn;

	for (int i = -1; i < sh->n_replicas; i++) {
		const struct node *n = i < 0 ? sh->primary : sh->replicas[i];
		if (claims_primary(n) && n->pub.timeline > sh->max_tli)
			sh->max_tli = n->pub.timeline;
	}
	for (int i = -1; i < sh->n_replicas; i++) {
		struct node *n = i < 0 ? sh->primary : sh->replicas[i];
		sp_node_health_t *p;
		bool f;
		if (!n || !n->pub.probed || !n->pub.reachable)
			continue; /* keep the verdict until we hear from it again */
		p = &n->pub;
		f = !p->in_recovery && p->timeline != 0 && p->timeline < sh->max_tli;
		if (f && !p->fenced)
			sp_warn(
			    "health: %s fenced: claims to be primary on timeline %u, but a node "
			    "was promoted to timeline %u",
			    node_name(n, name, sizeof(name)), p->timeline, sh->max_tli);
		else if (!f && p->fenced)
			sp_info("health: %s no longer fenced (%s, timeline %u)",
				node_name(n, name, sizeof(name)),
				p->in_recovery ? "now in recovery" : "primary", p->timeline);
		p->fenced = f;
	}

	w = compute_writer(sh);
	if (w != sh->writer) {
		if (w == -2)
			sp_warn("health: %s.%d: no server can take writes", sh->dbname, sh->index);
		else if (w == -1)
			sp_info("health: %s.%d: writes go to the configured primary", sh->dbname,
				sh->index);
		else
			sp_warn(
			    "health: %s.%d: writes go to promoted replica %d (%s:%d, timeline %u)",
			    sh->dbname, sh->index, w, sh->replicas[w]->t->host,
			    sh->replicas[w]->t->port, sh->replicas[w]->pub.timeline);
		sh->writer = w;
	}
	wn = writer_node(sh);
	plsn = wn && wn->t->probed ? wn->t->primary_lsn : 0;

	if (sh->primary) {
		sp_node_health_t *p = &sh->primary->pub;
		p->in_rotation = !enabled() || can_write(sh->primary);
		p->lag_bytes = 0;
		p->lag_ms = 0;
		sh->primary->sample = false;
	}
	for (int i = 0; i < sh->n_replicas; i++) {
		struct node *n = sh->replicas[i];
		sp_node_health_t *p = &n->pub;
		bool r;
		if (p->probed && p->reachable && p->in_recovery) {
			if (n->sample || p->lag_bytes < 0)
				compute_lag(n, plsn);
		} else if (p->probed && p->reachable) {
			p->lag_bytes = 0; /* a primary itself */
			p->lag_ms = 0;
		} else {
			p->lag_bytes = -1;
			p->lag_ms = -1;
		}
		n->sample = false;
		r = replica_usable(sh, n, why, sizeof(why));
		if (r != p->in_rotation && enabled()) {
			if (r)
				sp_info("health: %s in rotation (lag %" PRId64 " bytes, %.0f ms)",
					node_name(n, name, sizeof(name)), p->lag_bytes, p->lag_ms);
			else if (p->probed)
				sp_warn("health: %s left rotation: %s",
					node_name(n, name, sizeof(name)), why);
		}
		if (r && !p->in_rotation)
			n->cw = 0;
		p->in_rotation = r;
	}
}

static void update_all(void)
{
	for (int i = 0; i < n_shards; i++)
		update_shard(shards[i]);
}

/* ------------------------------------------------------------ node table */

static struct target *find_target(const char *host, int port)
{
	for (struct target *t = targets; t; t = t->next)
		if (t->port == port && strcmp(t->host, host) == 0)
			return t;
	return NULL;
}

static struct node *reuse_node(struct node **old, int n_old, const char *db, int shard, int replica,
			       const sp_node_conf_t *c)
{
	for (int i = 0; i < n_old; i++) {
		struct node *n = old[i];
		if (n && !n->seen && n->pub.shard == shard && n->pub.replica == replica &&
		    strcmp(n->pub.dbname, db) == 0 && strcmp(n->conninfo, c->conninfo) == 0) {
			old[i] = NULL;
			return n;
		}
	}
	return NULL;
}

static struct node *add_node(struct shard *sh, int replica, const sp_node_conf_t *c,
			     struct node **old, int n_old)
{
	struct node *n = reuse_node(old, n_old, sh->dbname, sh->index, replica, c);
	struct target *t;

	if (!n) {
		n = must(calloc(1, sizeof(*n)));
		n->conninfo = dupstr(c->conninfo ? c->conninfo : "");
		n->pub.shard = sh->index;
		n->pub.replica = replica;
		n->pub.lag_bytes = -1;
		n->pub.lag_ms = -1;
		n->pub.in_rotation = !enabled();
	}
	n->seen = true;
	n->sh = sh;
	n->pub.dbname = sh->dbname;
	n->pub.conf = c;
	t = find_target(c->host, c->port);
	if (!t) {
		t = must(calloc(1, sizeof(*t)));
		t->host = dupstr(c->host);
		t->port = c->port;
		ev_io_init(&t->io, io_cb, -1, EV_READ);
		ev_timer_init(&t->timer, timer_cb, 0, 0);
		t->next = targets;
		targets = t;
	}
	if (!t->seen) {
		t->seen = true;
		t->conf = c;
		t->default_db = sh->dbname;
	}
	if (n->t != t && n->t)
		n->pub.probed = false; /* a different server now: forget the old verdict */
	n->t = t;
	nodes = must(realloc(nodes, sizeof(*nodes) * (size_t)(n_nodes + 1)));
	nodes[n_nodes++] = n;
	return n;
}

static void free_node(struct node *n)
{
	free(n->conninfo);
	free(n);
}

static void free_shard(struct shard *sh)
{
	free(sh->dbname);
	free(sh->replicas);
	free(sh);
}

static void build(void)
{
	const sp_config_t *cfg = sp_g.cfg;
	struct node **old = nodes;
	int n_old = n_nodes;
	struct shard **old_sh = shards;
	int n_old_sh = n_shards;

	nodes = NULL;
	n_nodes = 0;
	shards = NULL;
	n_shards = 0;
	found_db = NULL; /* find_shard's memory of the old layout */
	for (struct target *t = targets; t; t = t->next)
		t->seen = false;
	for (int i = 0; i < n_old; i++)
		old[i]->seen = false;

	for (int d = 0; cfg && d < cfg->n_dbs; d++) {
		const sp_db_conf_t *db = cfg->dbs[d];
		for (int s = 0; !db->removed && s < db->n_shards; s++) {
			const sp_shard_conf_t *sc = &db->shards[s];
			struct shard *sh = must(calloc(1, sizeof(*sh)));
			sh->dbname = dupstr(db->name);
			sh->db = db;
			sh->index = s;
			sh->writer = -1;
			for (int k = 0; k < n_old_sh; k++)
				if (old_sh[k]->index == s &&
				    strcmp(old_sh[k]->dbname, db->name) == 0) {
					sh->max_tli = old_sh[k]->max_tli;
					sh->writer = old_sh[k]->writer;
				}
			shards = must(realloc(shards, sizeof(*shards) * (size_t)(n_shards + 1)));
			shards[n_shards++] = sh;
			if (sc->has_primary)
				sh->primary = add_node(sh, -1, &sc->primary, old, n_old);
			sh->replicas =
			    must(calloc((size_t)sc->n_replicas + 1, sizeof(*sh->replicas)));
			sh->n_replicas = sc->n_replicas;
			for (int r = 0; r < sc->n_replicas; r++)
				sh->replicas[r] = add_node(sh, r, &sc->replicas[r], old, n_old);
		}
	}
	/* entries gone or changed: clients that routed a read there still hold them
	 * (sp_health_node, outstanding), so they are kept until sp_health_stop */
	for (int i = 0; i < n_old; i++)
		if (old[i]) {
			old[i]->sh = NULL;
			old[i]->t = NULL;
			old[i]->pub.dbname = "";
			old[i]->pub.conf = NULL;
			old[i]->retired_next = retired;
			retired = old[i];
		}
	free(old);
	for (int i = 0; i < n_old_sh; i++)
		free_shard(old_sh[i]);
	free(old_sh);

	/* servers no longer named by any entry */
	for (struct target **pt = &targets; *pt;) {
		struct target *t = *pt;
		if (t->seen) {
			pt = &t->next;
			continue;
		}
		*pt = t->next;
		forget_target(t);
	}
}

static void free_all(void)
{
	while (retired) {
		struct node *n = retired;
		retired = n->retired_next;
		free_node(n);
	}
	for (int i = 0; i < n_nodes; i++)
		free_node(nodes[i]);
	free(nodes);
	nodes = NULL;
	n_nodes = 0;
	for (int i = 0; i < n_shards; i++)
		free_shard(shards[i]);
	free(shards);
	shards = NULL;
	n_shards = 0;
	found_db = NULL;
	while (targets) {
		struct target *t = targets;
		targets = t->next;
		forget_target(t);
	}
}

/* Start idle targets that have no probe scheduled; stop everything if disabled. */
static void kick(void)
{
	for (struct target *t = targets; t; t = t->next) {
		if (!enabled()) {
			ev_timer_stop(sp_loop, &t->timer);
			close_conn(t);
			t->state = PROBE_IDLE;
			continue;
		}
		if (t->state == PROBE_IDLE && !ev_is_active(&t->timer))
			schedule(t, t->banned_until - ev_now(sp_loop));
	}
}

/* ------------------------------------------------------------ API */

void sp_health_start(void)
{
	if (running)
		return;
	running = true;
	build();
	update_all();
	kick();
	if (enabled())
		sp_info("health: probing %d node(s) every %g s", n_nodes,
			sp_g.cfg->health_check_period);
	else
		sp_info("health: health_check_period is 0: no probes, every replica takes reads");
}

void sp_health_stop(void)
{
	if (!running)
		return;
	running = false;
	free_all();
	vol_free();
	catalog_fresh = true;
	colrecs_free();
}

void sp_health_reload(void)
{
	catalog_gen++;
	catalog_fresh = true;
	cols_gen++;
	if (!running)
		return;
	build();
	update_all();
	kick();
}

static struct shard *find_shard(const char *dbname, int shard)
{
	struct shard *sh;
	if (!dbname || shard < 0)
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		if (dbname != found_db) {
			found_db = NULL;
			for (int i = 0; i < n_shards; i++)
				if (shards[i]->index == 0 && strcmp(shards[i]->dbname, dbname) == 0) {
					found_db = dbname;
					found_base = i;
					break;
				}
			if (!found_db)
				return NULL;
		}
		if (found_base + shard < n_shards) {
			sh = shards[found_base + shard];
			if (sh->index == shard && strcmp(sh->dbname, dbname) == 0)
				return sh;
		}
		found_db = NULL; /* the kept start was not this database's: look again */
	}
	return NULL;
}

void sp_health_probe_now(const sp_db_conf_t *db, int shard)
{
	struct shard *sh = find_shard(db->name, shard);
	ev_tstamp now = ev_now(sp_loop);
	if (!sh || !enabled())
		return;
	for (int i = 0; i < sh->n_replicas; i++) {
		struct target *t = sh->replicas[i] ? sh->replicas[i]->t : NULL;
		/* at most one early probe per 5 ms per server: many waiting clients share it */
		if (t && t->state == PROBE_IDLE && now >= t->banned_until && now - t->started > 0.005)
			schedule(t, 0);
	}
}

bool sp_health_first_round_done(void)
{
	if (!running || !enabled())
		return true;
	for (int i = 0; i < n_shards; i++) {
		const struct target *t = shards[i]->primary ? shards[i]->primary->t : NULL;
		/* a DNS server answers in milliseconds: one that has not for a second does not
		 * hold the start (the probe runs when the answer comes) */
		if (t && t->probes_ended == 0 &&
		    !(t->unresolved_since && ev_now(sp_loop) - t->unresolved_since > UNRESOLVED_START_WAIT))
			return false;
	}
	return true;
}

void sp_health_server_up(const char *host, int port)
{
	struct target *t = enabled() ? find_target(host, port) : NULL;
	if (t && t->probed && !t->reachable && t->state == PROBE_IDLE) {
		/* a pool just logged in to a server the last probe found down: ask now
		 * rather than at the end of its ban */
		t->banned_until = 0;
		schedule(t, 0);
	}
}

sp_node_health_t *sp_health_node(const char *dbname, int shard, int replica)
{
	struct shard *sh = find_shard(dbname, shard);
	if (!sh)
		return NULL;
	if (replica < 0)
		return sh->primary ? &sh->primary->pub : NULL;
	if (replica >= sh->n_replicas)
		return NULL;
	return &sh->replicas[replica]->pub;
}

int sp_health_write_target(const sp_db_conf_t *db, int shard)
{
	struct shard *sh = db ? find_shard(db->name, shard) : NULL;
	return sh ? sh->writer : -1;
}

static int node_weight(const struct node *n)
{
	return n->pub.conf ? n->pub.conf->weight : 1;
}

/* Is replica i (or the writer, i = -1) a candidate for this read? */
static bool candidate(const struct shard *sh, const sp_db_conf_t *db, int i, int w,
		      uint64_t min_lsn, uint32_t exclude_mask)
{
	const struct node *n;
	if (i < 0) {
		n = writer_node(sh);
		return n && db->primary_reads == SP_PRIMARY_READS_YES && node_weight(n) > 0 &&
		       (!enabled() || can_write(n));
	}
	n = sh->replicas[i];
	if (i == w || !n->pub.in_rotation || node_weight(n) <= 0)
		return false;
	if (i < 32 && (exclude_mask & (1u << i)))
		return false;
	return min_lsn == 0 || (n->pub.probed && n->pub.lsn >= min_lsn);
}

int sp_health_pick_read(const sp_db_conf_t *db, int shard, uint64_t min_lsn, uint32_t exclude_mask)
{
	struct shard *sh = db ? find_shard(db->name, shard) : NULL;
	struct node *wn, *best = NULL;
	int w, n_rep = 0, best_i = -1;
	int64_t total = 0, min_out = 0, min_w = 0;

	if (!sh)
		return -1;
	w = sh->writer < -1 ? -1 : sh->writer;
	wn = writer_node(sh);
	/* pass 1: total weight and the lightest load (outstanding / weight) */
	for (int i = db->read_replicas ? -1 : sh->n_replicas; i < sh->n_replicas; i++) {
		struct node *n = i < 0 ? wn : sh->replicas[i];
		int64_t wt;
		if (!candidate(sh, db, i, w, min_lsn, exclude_mask))
			continue;
		wt = node_weight(n);
		if (min_w == 0 || (int64_t)n->pub.outstanding * min_w < min_out * wt) {
			min_out = n->pub.outstanding;
			min_w = wt;
		}
		if (i >= 0)
			n_rep++;
		total += wt;
	}
	if (n_rep == 0) {
		/* no usable replica: the primary (whichever node takes writes now) */
		if (wn)
			wn->pub.reads++;
		return w;
	}
	/* pass 2: smooth weighted round robin among the least loaded */
	for (int i = -1; i < sh->n_replicas; i++) {
		struct node *n = i < 0 ? wn : sh->replicas[i];
		int64_t wt;
		if (!candidate(sh, db, i, w, min_lsn, exclude_mask))
			continue;
		wt = node_weight(n);
		n->cw += (int)wt;
		if (n->cw > total)
			n->cw = (int)total; /* a node skipped for its load must not hoard turns */
		if ((int64_t)n->pub.outstanding * min_w != min_out * wt)
			continue;
		if (!best || n->cw > best->cw) {
			best = n;
			best_i = i < 0 ? w : i;
		}
	}
	best->cw -= (int)total;
	best->pub.reads++;
	return best_i;
}

int sp_health_count(void)
{
	return n_nodes;
}

sp_node_health_t *sp_health_at(int i)
{
	return i >= 0 && i < n_nodes ? &nodes[i]->pub : NULL;
}

bool sp_lsn_parse(const char *text, uint64_t *out)
{
	uint64_t hi = 0, lo = 0;
	int digits = 0;
	const char *s = text;

	if (!s)
		return false;
	for (; *s && *s != '/'; s++) {
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return false;
		if (++digits > 8)
			return false;
		hi = hi * 16 + (uint64_t)v;
	}
	if (*s != '/' || digits == 0)
		return false;
	digits = 0;
	for (s++; *s; s++) {
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return false;
		if (++digits > 8)
			return false;
		lo = lo * 16 + (uint64_t)v;
	}
	if (digits == 0)
		return false;
	*out = hi << 32 | lo;
	return true;
}
