/*
 * prepared.h - named prepared statements in transaction pooling.
 * A statement is interned once per distinct (query, parameter types, and the
 * settings of the client that prepared it that change what its text means) and gets
 * a shardpool-wide name "sp_N"; each client maps its own names to interned
 * statements; each server connection keeps a bounded LRU set of the
 * statements it has prepared.
 */
#ifndef SP_PREPARED_H
#define SP_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_types.h"

struct sp_pstmt {
	uint64_t hash;
	uint32_t id;
	int refs;
	char name[24];     /* "sp_<id>" as sent to servers */
	uint8_t *body;     /* Parse body after the statement name */
	bool classified;   /* the flags below were computed */
	bool sets;         /* its SQL may change session settings (SET, RESET, set_config) */
	bool resets;       /* ... brings startup values back (RESET, DISCARD) */
	bool drops;        /* DISCARD ALL / DEALLOCATE ALL: the server forgets every statement */
	int16_t config_param; /* set_config($n, ...): n, whose Bind value names a setting; 0 none */
	int32_t ncols;     /* result columns a Describe of it last reported; -1 unknown */
	uint32_t epoch;    /* bumped when a server found its result type changed (DDL): client
			    * names and server copies made before are stale, as PostgreSQL's own
			    * prepared statements would be ("cached plan must not change result type") */
	size_t body_len;
	const char *scope; /* the SP_PSTMT_SCOPE values it was prepared under, each ended by a
			    * NUL ("" for the server's default), in body's allocation */
	size_t scope_len;
	sp_pstmt_t *next;  /* hash chain */
};

/*
 * The session settings a statement is parsed under, which PostgreSQL applies once, at
 * Parse: with another search_path the same text names other tables (of other column
 * types), with another client_encoding the same bytes are other characters, and
 * literals such as '2024-01-02 10:00'::timestamptz or '01/02/2024'::date (TimeZone,
 * DateStyle) and backslashes in strings (standard_conforming_strings) are read by them.
 */
#define SP_PSTMT_SCOPE_N 5
extern const char *const sp_pstmt_scope_names[SP_PSTMT_SCOPE_N];

/* scope: the preparing client's values of sp_pstmt_scope_names, NULL for the server's
 * default. Clients share a server-side statement only when every one is equal. */
sp_pstmt_t *sp_pstmt_intern(const uint8_t *body, size_t len, const char *const scope[SP_PSTMT_SCOPE_N]);
void sp_pstmt_ref(sp_pstmt_t *ps);
void sp_pstmt_unref(sp_pstmt_t *ps);
size_t sp_pstmt_count(void);

/* A client's name -> statement map. */
typedef struct sp_pstmt_entry {
	char *name;
	sp_pstmt_t *ps;
	uint32_t epoch; /* ps->epoch when the client prepared it */
	uint32_t gen;   /* sp_pstmt_ddl_gen when the client prepared it */
} sp_pstmt_entry_t;
typedef struct sp_pstmt_map {
	sp_pstmt_entry_t *slots;
	int n, cap;
} sp_pstmt_map_t;

sp_pstmt_t *sp_pstmt_map_get(const sp_pstmt_map_t *m, const char *name);
/* The same, and *stale: the statement's result type changed since the client prepared
 * it (PostgreSQL would refuse it with 0A000 until prepared again). */
sp_pstmt_t *sp_pstmt_map_lookup(const sp_pstmt_map_t *m, const char *name, bool *stale);
/* The same, and the DDL generation the client prepared it in (gen may be NULL). */
sp_pstmt_t *sp_pstmt_map_lookup_gen(const sp_pstmt_map_t *m, const char *name, bool *stale,
				    uint32_t *gen);
/* The client's name now counts as prepared in DDL generation gen. */
void sp_pstmt_map_set_gen(sp_pstmt_map_t *m, const char *name, uint32_t gen);
/* Takes a reference on ps; replaces (and unrefs) an older mapping. */
void sp_pstmt_map_put(sp_pstmt_map_t *m, const char *name, sp_pstmt_t *ps);
bool sp_pstmt_map_del(sp_pstmt_map_t *m, const char *name);
void sp_pstmt_map_clear(sp_pstmt_map_t *m);

/* A server connection's LRU set of prepared statements. */
typedef struct sp_pstmt_cache {
	sp_pstmt_t **items;
	uint64_t *used;
	uint32_t *epochs; /* the statement's epoch when this server prepared it */
	uint32_t *gens;   /* sp_pstmt_ddl_gen when this server prepared it */
	int n, cap;
	uint64_t clock;
} sp_pstmt_cache_t;

/*
 * DDL seen to complete (a CommandComplete ALTER, CREATE or DROP ...) counts up
 * sp_pstmt_ddl_gen. A copy a server prepared before may describe a result that the
 * statement no longer has, which PostgreSQL would tell only at its next use: a client
 * that prepares (or prepared) the text after the DDL gets a copy made after it too,
 * as it would from PostgreSQL; clients that prepared it before keep PostgreSQL's
 * 0A000 on their next use.
 */
extern uint32_t sp_pstmt_ddl_gen;
void sp_pstmt_ddl_seen(void);

/* Does the server have ps prepared, and not from before its result type changed? */
bool sp_pstmt_cache_has(sp_pstmt_cache_t *c, sp_pstmt_t *ps);
/* The same, and prepared in DDL generation gen or later; *copy_gen (may be NULL) is
 * the generation the server prepared it in. */
bool sp_pstmt_cache_has_since(sp_pstmt_cache_t *c, sp_pstmt_t *ps, uint32_t gen,
			      uint32_t *copy_gen);
/* Remove a copy of ps prepared before its result type changed or before DDL generation
 * gen; returns ps with the cache's reference (the caller closes it on the server and
 * unrefs it), or NULL. */
sp_pstmt_t *sp_pstmt_cache_take_old(sp_pstmt_cache_t *c, sp_pstmt_t *ps, uint32_t gen);
/* Adds ps (taking a reference). If the cache is full, the least recently used
 * statement is removed and returned (the caller closes it on the server and
 * unrefs it); otherwise NULL. */
sp_pstmt_t *sp_pstmt_cache_add(sp_pstmt_cache_t *c, sp_pstmt_t *ps, int max);
void sp_pstmt_cache_remove(sp_pstmt_cache_t *c, sp_pstmt_t *ps);

/*
 * A Describe of ps reported another number of result columns than the last one (DDL
 * since): client names and server copies made before are stale, as PostgreSQL's own
 * would be, except the copy on the server that answered (c) and the name of the client
 * that was told the new shape (m, either may be NULL).
 */
void sp_pstmt_reshaped(sp_pstmt_t *ps, sp_pstmt_cache_t *c, sp_pstmt_map_t *m);
void sp_pstmt_cache_clear(sp_pstmt_cache_t *c);

#endif
