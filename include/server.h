/*
 * server.h - one connection from shardpool to a PostgreSQL server.
 */
#ifndef SP_SERVER_H
#define SP_SERVER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth_scram.h"
#include "params.h"
#include "prepared.h"
#include "sock.h"
#include "sp_types.h"

typedef enum {
	SP_SERVER_CONNECTING = 0, /* host name lookup or TCP connect in progress */
	SP_SERVER_LOGIN,          /* startup and authentication */
	SP_SERVER_IDLE,           /* in the pool's idle list */
	SP_SERVER_ACTIVE,         /* linked to a client */
	SP_SERVER_RESET,          /* running internal clean-up without a client */
	SP_SERVER_CLOSED
} sp_server_state_t;

/* The statement name a Bind or Describe of a stale client statement is sent with: no
 * server has it, so the server fails the message, and the client is told 0A000
 * "cached plan must not change result type" instead (client.c refuse_stale). */
#define SP_STALE_STATEMENT "shardpool: prepared before its result type changed"
/* A Describe of this statement name (which no server has) makes the server refuse a
 * message shardpool refuses, so its transaction fails as PostgreSQL's would; the
 * request's text, SP_REFUSED_MARK then "SQLSTATE message" (and SP_REFUSED_HINT and a
 * hint), is what the client hears instead of the server's error. */
#define SP_REFUSED_STATEMENT "shardpool: refused"
#define SP_REFUSED_MARK '\x01'
#define SP_REFUSED_HINT '\x02'

/* What the server owes us, in the order it will answer (see server.c). */
typedef enum {
	SP_REQ_QUERY = 1,      /* client's simple query: forward until ReadyForQuery */
	SP_REQ_FUNCTION,       /* FunctionCall: forward until ReadyForQuery */
	SP_REQ_PARSE,          /* client's Parse: forward ParseComplete */
	SP_REQ_BIND,
	SP_REQ_DESCRIBE,
	SP_REQ_EXECUTE,
	SP_REQ_CLOSE,
	SP_REQ_SYNC,           /* forward ReadyForQuery */
	SP_REQ_INT_QUERY,      /* shardpool's own simple query: swallow until ReadyForQuery */
	SP_REQ_INT_PARSE,      /* shardpool's own Parse of a client statement: swallow ParseComplete */
	SP_REQ_INT_CLOSE,      /* shardpool's own Close (cache eviction): swallow CloseComplete */
	SP_REQ_SYNTH_PARSE,    /* answer ParseComplete ourselves when reached */
	SP_REQ_SYNTH_CLOSE,    /* answer CloseComplete ourselves when reached */
	SP_REQ_SYNTH_ERROR,    /* answer an ErrorResponse (text: "SQLSTATE message") when reached */
	SP_REQ_SYNTH_COMMAND   /* answer CommandComplete (text: the tag) + ReadyForQuery when reached */
} sp_req_kind_t;

typedef enum {
	SP_INTQ_NONE = 0,
	SP_INTQ_PARAMS,   /* set_config()/RESET before the client's transaction */
	SP_INTQ_SYNCBACK, /* read back session settings after a SET */
	SP_INTQ_RESET,    /* server_reset_query */
	SP_INTQ_LSN,      /* pg_current_wal_lsn() after a write (read-your-writes) */
	SP_INTQ_BEGIN,    /* the client's deferred BEGIN */
	SP_INTQ_ABORT     /* fail the open transaction on purpose (a refused statement inside it) */
} sp_intq_t;

typedef struct sp_req {
	uint8_t kind;
	uint8_t intq;        /* sp_intq_t for SP_REQ_INT_QUERY */
	/* the server's copy_ends and copy_datas when it was queued: which COPY input it
	 * was sent in, and after how much of it (see copy_in_started in server.c) */
	uint8_t copy_ends, copy_datas;
	bool may_copy;       /* QUERY: its text mentions COPY (counted in n_copy_query_reqs) */
	sp_pstmt_t *ps;      /* for PARSE/INT_PARSE/INT_CLOSE/BIND: which statement (referenced) */
	char *text;          /* PARSE: the client's statement name; SYNTH_*: what to answer (owned) */
} sp_req_t;

struct sp_server {
	sp_sock_t sock;
	sp_server_state_t state;
	sp_pool_t *pool;
	sp_client_t *client;
	struct sp_fanout *fan;  /* set while serving one shard of a fan-out */
	int fan_idx;
	sp_server_t *prev, *next; /* pool list (idle) */
	sp_server_t *all_prev, *all_next; /* every server */
	uint64_t id;

	int32_t be_pid, be_key; /* PostgreSQL's BackendKeyData, for cancels */
	sp_params_t params;     /* the session's settings as we know them */
	sp_pstmt_cache_t pstmts;
	/* statements the server still has under their shared name but that our cache
	 * dropped (a skipped eviction, a plan invalidated by DDL): closed before reuse */
	sp_pstmt_t *stale[16];
	int n_stale;

	sp_req_t *reqs;         /* ring buffer of outstanding requests */
	unsigned req_head, req_n, req_cap;
	uint64_t fwd_remaining; /* body bytes of the current message still to pass on */
	bool fwd_swallow;       /* ... to be dropped rather than passed on */
	char txn;               /* last ReadyForQuery status */
	bool copy_in, copy_out;
	unsigned n_query_reqs;  /* SP_REQ_QUERY among the requests */
	unsigned n_copy_query_reqs; /* those whose text may start a COPY (may_copy) */
	unsigned n_exec_reqs;   /* SP_REQ_EXECUTE among the requests ... */
	uint8_t exec_copy_ends, exec_copy_datas; /* ... and the last one's copy_ends, copy_datas */
	uint8_t copy_ends;      /* CopyDone and CopyFail the client sent (wraps) */
	uint8_t copy_datas;     /* CopyData the client sent (wraps) */
	bool copy_syncs_dropped; /* Syncs sent before the CopyInResponse after some CopyData were
				  * taken as ignored: if the COPY fails, the server may answer them */
	bool error_in_batch;    /* an ErrorResponse arrived since the last Sync */
	bool need_syncback;     /* client ran something that may have changed settings */
	bool dirty_close;       /* close instead of reuse when released */
	bool lsn_taken;         /* fan-out write: the WAL position was read */
	bool lsn_retried;       /* the WAL position query was cancelled once and asked again */
	bool finishing;         /* transaction over, shardpool's own follow-up queries run: hold the client */
	int cancels_in_flight;  /* forwarded CancelRequests PostgreSQL has not taken yet */
	bool release_held;      /* released while a cancel was in flight: back to the pool after it */

	/* login */
	sp_scram_client_t scram;
	bool scram_active;
	char *password;         /* secret to log in with (plain or md5 stored), owned */

	ev_tstamp connect_at, created_at, last_used;
	uint64_t n_xacts;
	char close_reason[128];
};

/* Open a new connection for the pool (state CONNECTING). */
sp_server_t *sp_server_connect(sp_pool_t *p);
/* Close with a reason for the log; idempotent; removes it from its pool. */
void sp_server_close(sp_server_t *s, const char *reason);
/* Close every connection to that server (the health checker found it hung): a client
 * with a statement there gets 08006, a login or a wait goes elsewhere. */
void sp_server_close_node(const char *host, int port, const char *reason);
/* Link to a client and make its session settings match the client's. */
void sp_server_attach(sp_server_t *s, sp_client_t *c);
/* Client let go of it (ReadyForQuery 'I' in transaction mode, or disconnect). While a
 * cancel forwarded for its last client is in flight, it waits (sp_server_cancel_done):
 * a late cancel must not land on the next client's query. */
void sp_server_release(sp_server_t *s);
/* A forwarded CancelRequest for the server with this id was taken (or failed). */
void sp_server_cancel_done(uint64_t id);
/* Queue a request record. */
bool sp_server_push_req(sp_server_t *s, sp_req_kind_t kind, sp_pstmt_t *ps, sp_intq_t intq);
/* Same, with a text the request owns (a copy is made). */
bool sp_server_push_req_text(sp_server_t *s, sp_req_kind_t kind, sp_pstmt_t *ps, const char *text);
/* If ps is stale on this server, queue its Close (before it is prepared again). */
void sp_server_close_stale(sp_server_t *s, sp_pstmt_t *ps);
/*
 * May what the client sends next be the data of a COPY FROM STDIN the server has not
 * yet said it starts? After a Query not answered yet; after an Execute not answered
 * yet when CopyData followed it (no CopyDone or CopyFail). client.c holds the
 * client's other messages until the answer says.
 */
static inline bool sp_server_copy_undecided(const sp_server_t *s)
{
	return s->n_copy_query_reqs > 0 || (s->n_exec_reqs > 0 && s->exec_copy_ends == s->copy_ends &&
				       s->exec_copy_datas != s->copy_datas);
}
static inline bool sp_server_busy(const sp_server_t *s)
{
	return s->req_n > 0 || s->copy_in || s->copy_out || s->txn != 'I' || s->error_in_batch;
}
/* Outstanding work is only shardpool's own (parameter sync, read-back, reset). */
static inline bool sp_server_only_internal(const sp_server_t *s)
{
	if (s->req_n == 0 || s->error_in_batch)
		return false; /* nothing of ours to wait for, or a batch the server is skipping */
	for (unsigned i = 0; i < s->req_n; i++) {
		unsigned k = s->reqs[(s->req_head + i) & (s->req_cap - 1)].kind;
		if (k != SP_REQ_INT_QUERY && k != SP_REQ_INT_PARSE && k != SP_REQ_INT_CLOSE)
			return false;
	}
	return !s->copy_in && !s->copy_out && s->txn == 'I';
}
void sp_server_send(sp_server_t *s);
/* The Query just pushed cannot start a COPY: its text does not mention one. */
void sp_server_query_cannot_copy(sp_server_t *s);
/* Queue "SELECT pg_current_wal_insert_lsn()" (read-your-writes) after what s runs; not sent yet. */
void sp_server_queue_lsn_query(sp_server_t *s);
/* Resume reading from the server when its client drained. */
void sp_server_resume(sp_server_t *s);
const char *sp_server_state_str(sp_server_state_t st);
sp_server_t *sp_server_first(void);
int sp_server_count(void);
void sp_server_prefix(const sp_server_t *s, char *buf, size_t len);

#endif
