/*
 * params.h - session parameters (name -> value) of a client or a server
 * connection, and the statement that makes a server's session match a client's.
 */
#ifndef SP_PARAMS_H
#define SP_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "sp_types.h"

typedef struct sp_param {
	char *name;
	char *value;
} sp_param_t;

struct sp_params {
	sp_param_t *items;
	int n, cap;
	/* XOR of a hash of every (lower-cased name, value): equal sets have equal
	 * signatures, so the common "already in sync" case is one comparison. */
	uint64_t sig;
	/* The same over the settings a client can change (not sp_params_is_readonly()),
	 * and their count: a server that differs from a client only in what no client
	 * sets (a replica's in_hot_standby) is in sync. */
	uint64_t rw_sig;
	int rw_n;
};

void sp_params_set(sp_params_t *p, const char *name, const char *value);
const char *sp_params_get(const sp_params_t *p, const char *name);
bool sp_params_remove(sp_params_t *p, const char *name);
void sp_params_copy(sp_params_t *dst, const sp_params_t *src);
void sp_params_clear(sp_params_t *p);
/* Parameters that describe the server and cannot be SET (server_version ...). */
bool sp_params_is_readonly(const char *name);
/* Parameters PostgreSQL reports with ParameterStatus (GUC_REPORT). */
bool sp_params_is_reported(const char *name);
/*
 * Append to sql the statements that turn the server session (have) into the
 * client's (want): set_config() for differing values, RESET for settings the
 * server has but the client never made. Returns how many settings differ.
 */
int sp_params_write_sync(sp_buf_t *sql, const sp_params_t *want, const sp_params_t *have);
/* Append a SQL string literal ('it''s'). */
void sp_sql_append_literal(sp_buf_t *b, const char *s);
/* Append "SELECT pg_catalog.set_config('name', 'value', false)" (first) or ", set_config(...)". */
void sp_params_append_set(sp_buf_t *sql, const char *name, const char *value, bool first);
/*
 * Startup values a server of that scope (a pool; pools live until exit) took at a
 * login: a login that brings only such values needs no check on a server. A fixed
 * table of hashes, no allocation; a value found wrong later makes it forget all.
 */
bool sp_params_checked(const void *scope, const char *name, const char *value);
void sp_params_note_checked(const void *scope, const char *name, const char *value);
void sp_params_forget_checked(void);
/* Settings that take any value (the server cleans it up rather than refuse it). */
bool sp_params_takes_any_value(const char *name);
/* Parse a startup "options" value ("-c a=b --c=d") into p. Returns false on bad syntax. */
bool sp_params_parse_options(sp_params_t *p, const char *options);

#endif
