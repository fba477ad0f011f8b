/*
 * health.h - health, role and replication lag of every configured server,
 * probed with libpq's non-blocking API from the libev loop, and the choice
 * of the server a read or a write goes to.
 *
 * Every health_check_period each node (primary and replicas of every shard
 * of every database; a node listed twice is probed once) gets one probe with
 * a timeout of health_check_timeout: pg_is_in_recovery(), its WAL position
 * (current LSN on a primary, replay and receive LSN on a replica), replay
 * timestamp, and timeline. A replica is in rotation when it is reachable, in
 * recovery, and its lag is within max_replica_lag (bytes, against its shard's
 * primary's current LSN) and max_replica_lag_ms (when set). A node that fails
 * probes is banned with exponential backoff. A replica that reports it is no
 * longer in recovery has been promoted: writes go to it; a node that still
 * claims to be primary on an older timeline than the promoted one is fenced.
 * Every change of role or rotation is logged. After a good probe of a
 * primary, once per generation (start, RELOAD, and when the router asks,
 * sp_router_columns_requests), the same connection reads catalog facts for
 * the router: volatile functions and the column order of sharded tables.
 */
#ifndef SP_HEALTH_H
#define SP_HEALTH_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

typedef struct sp_node_health {
	const char *dbname; /* the [database] it belongs to */
	int shard;
	int replica;        /* -1: the configured primary; else replica index */
	const sp_node_conf_t *conf;

	bool probed;        /* at least one probe finished */
	bool reachable;     /* last probe succeeded */
	bool in_recovery;
	bool fenced;        /* claims primary but on an older timeline than a promoted node */
	bool in_rotation;   /* usable for reads (replicas) */
	uint64_t lsn;       /* primary: pg_current_wal_lsn; replica: pg_last_wal_replay_lsn */
	uint64_t receive_lsn;
	int64_t lag_bytes;  /* replicas: primary lsn - replay lsn (0 if caught up), -1 unknown */
	double lag_ms;      /* replicas: replay delay, 0 when caught up */
	uint32_t timeline;
	char collate[64];   /* the database's datcollate ("" until probed) */
	char locprovider;   /* 'c' libc, 'i' ICU, 0 until probed */
	int fail_count;
	ev_tstamp banned_until;
	ev_tstamp last_ok;
	char last_error[200];
	int outstanding;    /* reads in flight through shardpool (least-outstanding balancing) */
	uint64_t reads;     /* reads routed here */
} sp_node_health_t;

/* Start probing every node of the loaded config (sp_g.cfg); call after the loop exists. */
void sp_health_start(void);
void sp_health_stop(void);
/* Re-read the node list after RELOAD. */
void sp_health_reload(void);

/* The state of a node; NULL if not configured. replica -1 is the primary. */
sp_node_health_t *sp_health_node(const char *dbname, int shard, int replica);

/*
 * Where a read of (dbname, shard) should go: a replica index, or -1 for the
 * primary. Honours read_replicas, primary_reads (yes: the primary takes part
 * in the rotation; no: never, unless no replica is usable; fallback: only
 * when no replica is usable), weight, and round robin among equals weighted
 * by outstanding reads (least outstanding first). min_lsn > 0 restricts to
 * replicas whose replay LSN is at or past it (read-your-writes); if none
 * qualifies the answer is -1. Replicas listed in exclude_mask (bit = index)
 * are skipped (a retry after a failed connect).
 */
int sp_health_pick_read(const sp_db_conf_t *db, int shard, uint64_t min_lsn, uint32_t exclude_mask);

/*
 * Where writes of (dbname, shard) go: -1 for the configured primary, or the
 * index of a replica that has been promoted. Returns -2 when no node may take
 * writes (the primary is down or fenced and nothing was promoted).
 */
int sp_health_write_target(const sp_db_conf_t *db, int shard);

/* Probe the replicas of (db, shard) now rather than at the next period
 * (causal_wait_ms: a reader waits for a replica to replay its write). */
void sp_health_probe_now(const sp_db_conf_t *db, int shard);

/* Has every shard's primary answered (or failed) a first probe, catalogs included? True
 * too when health checks are off. The daemon waits for it, a bounded time, before it
 * accepts clients: INSERT without a column list and the read/write split need what
 * that first probe reads. */
bool sp_health_first_round_done(void);

/* A pool logged in to host:port: if the last probe found it down, probe it now, so
 * writes refused while it was down come back at once. */
void sp_health_server_up(const char *host, int port);

/* Iterate all nodes (admin console SHOW SERVERS HEALTH). */
int sp_health_count(void);
sp_node_health_t *sp_health_at(int i);

/* Parse "16/B374D848" into a 64-bit LSN; false on bad input. */
bool sp_lsn_parse(const char *text, uint64_t *out);

#endif
