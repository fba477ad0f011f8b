/*
 * client.h - one application connection to shardpool.
 */
#ifndef SP_CLIENT_H
#define SP_CLIENT_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth_scram.h"
#include "config.h"
#include "params.h"
#include "prepared.h"
#include "router.h"
#include "sock.h"
#include "sp_types.h"

typedef enum {
	SP_CLIENT_STARTUP = 0, /* waiting for the startup packet */
	SP_CLIENT_AUTH,        /* authentication exchange */
	SP_CLIENT_WELCOME,     /* authenticated, waiting for the pool's server parameters */
	SP_CLIENT_IDLE,        /* between transactions, no server */
	SP_CLIENT_WAITING,     /* queued for a server */
	SP_CLIENT_ACTIVE,      /* linked to a server */
	SP_CLIENT_ADMIN,       /* on the admin console */
	SP_CLIENT_FANOUT,      /* one statement running on several shards */
	SP_CLIENT_CLOSED
} sp_client_state_t;

struct sp_client {
	sp_sock_t sock;
	sp_client_state_t state;
	uint64_t id;
	struct sockaddr_storage peer;
	char peer_str[64];
	char *user, *dbname;
	const sp_db_conf_t *db;
	sp_pool_t *pool;             /* the pool of the current transaction */
	sp_pool_t *home_pool;        /* default shard's primary: login parameters */
	sp_server_t *server;
	struct sp_fanout *fan;
	uint64_t fan_gen;            /* counts fan-outs: tells a new one from a freed one at the same address */

	/* routing */
	bool routed;                 /* the database needs per-statement routing */
	sp_router_session_t rsess;
	int txn_shard;               /* shard the open transaction is bound to, -1 */
	bool virtual_txn;            /* BEGIN answered by shardpool, no server yet */
	bool virtual_failed;         /* ... and a statement in it was refused */
	char *begin_sql;             /* the BEGIN to replay on the server */
	bool txn_read_only;
	bool txn_wrote;              /* the current server transaction wrote (read-your-writes) */
	uint64_t *written_lsn;       /* per shard: WAL position of the client's last write */
	uint32_t replica_retry_mask; /* replicas that failed to connect for this read */
	uint32_t welcome_tried; /* login: other nodes tried for the server's parameters */
	bool login_check;            /* login: its startup values are being tried on a server */
	bool prerouted;              /* the message at the head of the input was routed already */
	bool lsn_pipeline;           /* that message is an autocommit write: its WAL position query
				      * may follow it to the server at once (see lsn_pipelinable) */
	struct sp_node_health *read_node; /* replica serving this client's read (outstanding count) */
	bool in_batch;               /* extended-protocol messages sent since the last Sync */
	bool query_flush_sent;       /* a Query waits for the server: a Flush went out to get its answers */
	bool fanout_replay;          /* forwarding a batch again, to a fan-out's second or later shard */
	size_t batch_at;             /* sp_client_forward_batch: 1 + the offset of the message it forwards */
	size_t batch_refused;        /* ... of a Parse the first shard's copy of the batch refused (0: none):
				      * the other shards refuse it too */
	bool batch_error;            /* an extended-protocol error reached the client since its last Sync */
	bool processing, process_again; /* sp_client_process is running / must look again */
	void *cancel_wait;           /* a cancel this connection asked for, not yet taken by the server */
	bool describe_detach;
	int16_t *bind_shards;        /* the shard of each Bind of the batch being routed (-1: any,
				      * -2: a group, see split_groups) */
	int n_bind_shards, cap_bind_shards;
	int16_t *bind_fmts, *bind_expanded; /* scratch for routing a Bind: its format codes, */
	const uint8_t **bind_vals;   /* values ... */
	int32_t *bind_lens;          /* ... and lengths */
	int cap_bind_fmts, cap_bind_expanded, cap_bind_vals, cap_bind_lens;
	struct sp_split_group *split_groups; /* Binds of the batch that run on several shards */
	int n_split_groups, cap_split_groups;
	sp_buf_t split_texts;        /* their per-shard texts */
	int *rw_used;                /* scratch for a per-shard rewrite's Bind: the client's */
	int cap_rw_used;             /* parameter numbers its text uses ... */
	sp_buf_t rw_text;            /* ... and the text renumbered */
	int16_t unnamed_config_param; /* the unnamed statement's set_config($n): see sp_pstmt_t */
	uint8_t *unnamed_parse;      /* the unnamed Parse of a describe-only batch (whole message), sent
				      * again before its Bind on the server the Bind is routed to */
	bool unnamed_in_batch;       /* this server has the unnamed statement for the current batch */        /* shardpool's own Sync ends the server's part of a describe-only batch */
	bool describe_only;          /* Parse/Describe up to a Flush, no Bind yet: the server answers them,
				      * then shardpool ends its implicit transaction and lets it go, so the
				      * Bind that follows is routed by its own key */
	bool skip_to_sync;           /* a refused extended batch: drop messages up to Sync */
	bool reset_seen;             /* RESET / DISCARD ran: startup values must come back */
	bool reset_then_rollback;    /* ... and the last command since was a ROLLBACK */
	ev_timer causal_timer;       /* causal_wait_ms: polling for a replica that replayed our write */
	ev_tstamp causal_deadline;   /* 0: not waiting (and allowed to wait for the next read) */
	bool causal_waiting;
	int causal_shard;
	sp_params_t custom_names;    /* custom (dotted) settings the client SET: read back by name */
	sp_params_t reset_names;     /* names RESET in this transaction ("*": all) */
	sp_client_t *wait_next;      /* pool wait queue */
	sp_client_t *next, *prev;    /* all clients */
	sp_client_t *key_next;       /* cancel key hash chain */
	sp_pool_mode_t pool_mode;

	int32_t cancel_pid, cancel_key;
	sp_params_t params;          /* the session the client expects */
	sp_params_t startup;         /* what the client sent in its startup packet */
	/* serializable_by_default's answer for the parameter sets of these signatures
	 * (looked up once per change, not by name on every transaction) */
	uint64_t ser_sig_params, ser_sig_startup;
	/* the pools this client's transactions went to lately (pools live until exit):
	 * found here, a routed transaction does not hash its database and user names */
	struct sp_pool_memo {
		sp_pool_t *pool;
		int shard, replica; /* replica -1: the primary */
	} pool_memo[4];
	int ser_n_params, ser_n_startup; /* -1: not computed yet */
	bool ser_default;
	sp_pstmt_map_t pstmts;

	/* auth */
	int auth_method;
	uint8_t md5_salt[4];
	sp_scram_server_t scram;
	bool scram_active;
	bool auth_failed;            /* unknown user or bad secret: fail at the end */
	bool is_admin;

	uint64_t fwd_remaining;      /* body bytes of the current message still to pass on */
	char txn;                    /* as last reported to the client */
	bool in_copy;                /* COPY FROM STDIN in progress */
	bool copy_wait;              /* input after a Query waits for its answer: COPY data or not */
	bool closing;
	bool pipelined_after_ssl;

	ev_tstamp connect_at, wait_since, last_active, xact_start, query_start;
	uint64_t n_queries, n_xacts;
	char close_reason[128];
};

void sp_client_accept(int fd, const struct sockaddr *addr, socklen_t len);
/* Give c a BackendKeyData key its CancelRequests are found by. */
void sp_client_assign_cancel_key(sp_client_t *c);
/* Send an ErrorResponse (severity FATAL) and close; reason reaches the log. */
void sp_client_fatal(sp_client_t *c, const char *sqlstate, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A message other than CopyData, CopyDone, CopyFail, Flush or Sync during COPY FROM
 * STDIN: the errors PostgreSQL sends, then the session ends. */
void sp_client_copy_violation(sp_client_t *c, char type);
void sp_client_close(sp_client_t *c, const char *reason);
/* Send an ERROR (not FATAL) + ReadyForQuery and go on. */
void sp_client_error(sp_client_t *c, const char *sqlstate, const char *msg, const char *hint);
/* s is about to be closed while it runs a client's statement that nobody will read:
 * ask PostgreSQL to cancel it (a backend notices a closed connection only when it next
 * reads or writes, so a long statement would run to its end, holding its locks). */
void sp_client_cancel_abandoned(sp_server_t *s);
/* The pool hands a server to a waiting client. */
void sp_client_server_ready(sp_client_t *c, sp_server_t *s);
/* The pool could not get a server. */
void sp_client_server_failed(sp_client_t *c, const char *sqlstate, const char *msg);
/* The server side released the link (transaction done); continue with buffered input. */
void sp_client_detached(sp_client_t *c);
/* Continue reading after backpressure. */
void sp_client_resume(sp_client_t *c);
/* Pool parameters became known: finish a login (after trying the client's startup
 * values on a server, when the pool has not seen them taken yet). */
void sp_client_welcome(sp_client_t *c);
/* The server took the startup values being tried (c->login_check): it was released,
 * the login ends. (Refused, the client was closed with the server's error.) */
void sp_client_login_checked(sp_client_t *c);
void sp_client_process(sp_client_t *c);
/* The transaction status shardpool reports while no server is linked ('T' in a BEGIN
 * that has no shard yet). */
char sp_client_txn_status(const sp_client_t *c);
/* Send the first end bytes of the client's input (whole extended-protocol
 * messages) to server s, with statement-name rewriting (fan-out). */
void sp_client_forward_batch(sp_client_t *c, sp_server_t *s, size_t end);
/* Set the state with the legality check (fanout.c uses it). */
void sp_client_set_state(sp_client_t *c, sp_client_state_t st);
sp_client_t *sp_client_first(void);
int sp_client_count(void);
const char *sp_client_state_str(sp_client_state_t st);
/* Forward a CancelRequest to the server running that client's query. True if it
 * was sent: requester (the connection that asked, may be NULL) is then closed
 * when the server has taken it; false: nothing to cancel, close it now. */
bool sp_client_cancel_request(int32_t pid, int32_t key, sp_client_t *requester);
void sp_client_prefix(const sp_client_t *c, char *buf, size_t len);

#endif
