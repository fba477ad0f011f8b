/*
 * msg.h - PostgreSQL v3 protocol framing: message type bytes, a bounds-checked
 * reader over one message body, and writers named after the messages.
 */
#ifndef SP_MSG_H
#define SP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Startup-phase codes (int32 after the length). */
#define SP_PROTO_V3 196608
#define SP_CANCEL_REQUEST_CODE 80877102
#define SP_SSL_REQUEST_CODE 80877103
#define SP_GSSENC_REQUEST_CODE 80877104
#define SP_MAX_STARTUP_PACKET 10000

/* Frontend (client -> server) message types. */
#define SP_FE_QUERY 'Q'
#define SP_FE_PARSE 'P'
#define SP_FE_BIND 'B'
#define SP_FE_DESCRIBE 'D'
#define SP_FE_EXECUTE 'E'
#define SP_FE_CLOSE 'C'
#define SP_FE_SYNC 'S'
#define SP_FE_FLUSH 'H'
#define SP_FE_FUNCTION_CALL 'F'
#define SP_FE_COPY_DATA 'd'
#define SP_FE_COPY_DONE 'c'
#define SP_FE_COPY_FAIL 'f'
#define SP_FE_TERMINATE 'X'
#define SP_FE_PASSWORD 'p' /* also SASLInitialResponse / SASLResponse */

/* Backend (server -> client) message types. */
#define SP_BE_AUTH 'R'
#define SP_BE_PARAMETER_STATUS 'S'
#define SP_BE_BACKEND_KEY_DATA 'K'
#define SP_BE_READY_FOR_QUERY 'Z'
#define SP_BE_ERROR 'E'
#define SP_BE_NOTICE 'N'
#define SP_BE_NOTIFICATION 'A'
#define SP_BE_ROW_DESCRIPTION 'T'
#define SP_BE_DATA_ROW 'D'
#define SP_BE_COMMAND_COMPLETE 'C'
#define SP_BE_EMPTY_QUERY 'I'
#define SP_BE_PARSE_COMPLETE '1'
#define SP_BE_BIND_COMPLETE '2'
#define SP_BE_CLOSE_COMPLETE '3'
#define SP_BE_PARAMETER_DESCRIPTION 't'
#define SP_BE_NO_DATA 'n'
#define SP_BE_PORTAL_SUSPENDED 's'
#define SP_BE_COPY_IN 'G'
#define SP_BE_COPY_OUT 'H'
#define SP_BE_COPY_BOTH 'W'
#define SP_BE_COPY_DATA 'd'
#define SP_BE_COPY_DONE 'c'
#define SP_BE_FUNCTION_CALL_RESPONSE 'V'
#define SP_BE_NEGOTIATE_VERSION 'v'

/* Authentication request codes. */
#define SP_AUTHREQ_OK 0
#define SP_AUTHREQ_CLEARTEXT 3
#define SP_AUTHREQ_MD5 5
#define SP_AUTHREQ_SASL 10
#define SP_AUTHREQ_SASL_CONTINUE 11
#define SP_AUTHREQ_SASL_FINAL 12

/* ReadyForQuery transaction status. */
#define SP_TXN_IDLE 'I'
#define SP_TXN_BLOCK 'T'
#define SP_TXN_FAILED 'E'

/* SQLSTATEs used by shardpool itself. */
#define SP_SQLSTATE_PROTOCOL_VIOLATION "08P01"
#define SP_SQLSTATE_CONNECTION_FAILURE "08006"
#define SP_SQLSTATE_CANNOT_CONNECT "08001"
#define SP_SQLSTATE_INVALID_PASSWORD "28P01"
#define SP_SQLSTATE_INVALID_AUTH "28000"
#define SP_SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define SP_SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SP_SQLSTATE_UNDEFINED_DATABASE "3D000"
#define SP_SQLSTATE_ADMIN_SHUTDOWN "57P01"
#define SP_SQLSTATE_QUERY_CANCELED "57014"
#define SP_SQLSTATE_INTERNAL "XX000"
#define SP_SQLSTATE_OUT_OF_MEMORY "53200"
#define SP_SQLSTATE_IDLE_TXN_TIMEOUT "25P03"
#define SP_SQLSTATE_IDLE_SESSION_TIMEOUT "57P05"
#define SP_SQLSTATE_PROGRAM_LIMIT "54000"
#define SP_SQLSTATE_SYNTAX_ERROR "42601"
#define SP_SQLSTATE_INVALID_PARAMETER "22023"
#define SP_SQLSTATE_OBJECT_NOT_IN_STATE "55000"

/* A cursor over one message body; readers never read past len. */
typedef struct sp_msg_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
} sp_msg_reader_t;

static inline void sp_msg_reader_init(sp_msg_reader_t *r, const void *data, size_t len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
}

bool pq_getmsgbyte(sp_msg_reader_t *r, uint8_t *out);
bool pq_getmsgint16(sp_msg_reader_t *r, int16_t *out);
bool pq_getmsgint32(sp_msg_reader_t *r, int32_t *out);
/* A NUL-terminated string inside the message; *out points into the message. */
bool pq_getmsgstring(sp_msg_reader_t *r, const char **out, size_t *len);
bool pq_getmsgbytes(sp_msg_reader_t *r, size_t n, const uint8_t **out);

static inline uint32_t sp_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void sp_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Building a message into a buffer: begin reserves the header, end patches the length. */
size_t sp_msg_begin(sp_buf_t *b, char type);
void sp_msg_end(sp_buf_t *b, size_t start);
void pq_sendbyte(sp_buf_t *b, uint8_t v);
void pq_sendint16(sp_buf_t *b, int16_t v);
void pq_sendint32(sp_buf_t *b, int32_t v);
void pq_sendstring(sp_buf_t *b, const char *s); /* with the NUL */
void pq_sendbytes(sp_buf_t *b, const void *p, size_t n);

/* Backend messages. */
void sp_msg_write_error(sp_buf_t *b, const char *severity, const char *sqlstate, const char *message,
			const char *detail, const char *hint);
void sp_msg_write_notice(sp_buf_t *b, const char *sqlstate, const char *message);
void sp_msg_write_notice_detail(sp_buf_t *b, const char *sqlstate, const char *message, const char *detail);
void sp_msg_write_ready_for_query(sp_buf_t *b, char txn_status);
void sp_msg_write_auth(sp_buf_t *b, int32_t code, const void *payload, size_t n);
void sp_msg_write_parameter_status(sp_buf_t *b, const char *name, const char *value);
void sp_msg_write_backend_key_data(sp_buf_t *b, int32_t pid, int32_t key);
void sp_msg_write_empty(sp_buf_t *b, char type); /* ParseComplete, CloseComplete, NoData ... */
void sp_msg_write_command_complete(sp_buf_t *b, const char *tag);
void sp_msg_write_row_description(sp_buf_t *b, int ncols, const char *const *names, const int32_t *type_oids);
void sp_msg_write_data_row(sp_buf_t *b, int ncols, const char *const *values);

/* Frontend messages. */
void sp_msg_write_startup(sp_buf_t *b, const char *const *kv); /* NULL-terminated name,value,... */
void sp_msg_write_query(sp_buf_t *b, const char *sql);
void sp_msg_write_password(sp_buf_t *b, const char *password);
void sp_msg_write_sasl_initial(sp_buf_t *b, const char *mech, const char *data, size_t n);
void sp_msg_write_sasl_response(sp_buf_t *b, const char *data, size_t n);
void sp_msg_write_cancel_request(sp_buf_t *b, int32_t pid, int32_t key);
void sp_msg_write_terminate(sp_buf_t *b);
void sp_msg_write_sync(sp_buf_t *b);
void sp_msg_write_parse(sp_buf_t *b, const char *name, const char *sql); /* no parameter types */
void sp_msg_write_close(sp_buf_t *b, char kind, const char *name);

/* Parse an ErrorResponse/NoticeResponse body; returns the field (e.g. 'C', 'M') or NULL. */
const char *sp_msg_error_field(const uint8_t *body, size_t len, char field);

#endif
