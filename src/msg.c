/*
 * msg.c - framing of PostgreSQL v3 messages: bounds-checked readers over one
 * message body and writers named after the messages they build. Everything
 * here is pure: no sockets, no connection state. Writers append to a caller's
 * sp_buf_t; an allocation failure there is fatal for the caller's connection,
 * which checks buffer growth separately, so writers stay void.
 */
#include "msg.h"

#include <string.h>

bool pq_getmsgbyte(sp_msg_reader_t *r, uint8_t *out)
{
	if (r->len - r->pos < 1)
		return false;
	*out = r->data[r->pos++];
	return true;
}

bool pq_getmsgint16(sp_msg_reader_t *r, int16_t *out)
{
	if (r->len - r->pos < 2)
		return false;
	*out = (int16_t)((r->data[r->pos] << 8) | r->data[r->pos + 1]);
	r->pos += 2;
	return true;
}

bool pq_getmsgint32(sp_msg_reader_t *r, int32_t *out)
{
	if (r->len - r->pos < 4)
		return false;
	*out = (int32_t)sp_get_be32(r->data + r->pos);
	r->pos += 4;
	return true;
}

bool pq_getmsgstring(sp_msg_reader_t *r, const char **out, size_t *len)
{
	const uint8_t *start = r->data + r->pos;
	const uint8_t *nul = memchr(start, 0, r->len - r->pos);
	if (!nul)
		return false;
	*out = (const char *)start;
	if (len)
		*len = (size_t)(nul - start);
	r->pos += (size_t)(nul - start) + 1;
	return true;
}

bool pq_getmsgbytes(sp_msg_reader_t *r, size_t n, const uint8_t **out)
{
	if (r->len - r->pos < n)
		return false;
	*out = r->data + r->pos;
	r->pos += n;
	return true;
}

/*
 * The returned position is relative to the buffer's unread start, not an index
 * into data: appends between begin and end may compact the buffer (move the
 * unread bytes to the front), which keeps relative positions valid.
 */
size_t sp_msg_begin(sp_buf_t *b, char type)
{
	size_t at;
	sp_buf_reserve(b, 64);
	at = b->end - b->start;
	b->data[b->end++] = (uint8_t)type;
	b->end += 4;
	return at;
}

void sp_msg_end(sp_buf_t *b, size_t start)
{
	uint8_t *p = b->data + b->start + start;
	sp_put_be32(p + 1, (uint32_t)(b->end - b->start - start - 1));
}

void pq_sendbyte(sp_buf_t *b, uint8_t v)
{
	sp_buf_append(b, &v, 1);
}

void pq_sendint16(sp_buf_t *b, int16_t v)
{
	uint8_t p[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
	sp_buf_append(b, p, 2);
}

void pq_sendint32(sp_buf_t *b, int32_t v)
{
	uint8_t p[4];
	sp_put_be32(p, (uint32_t)v);
	sp_buf_append(b, p, 4);
}

void pq_sendstring(sp_buf_t *b, const char *s)
{
	sp_buf_append(b, s, strlen(s) + 1);
}

void pq_sendbytes(sp_buf_t *b, const void *p, size_t n)
{
	sp_buf_append(b, p, n);
}

static void error_or_notice(sp_buf_t *b, char type, const char *severity, const char *sqlstate,
			    const char *message, const char *detail, const char *hint)
{
	size_t at = sp_msg_begin(b, type);
	pq_sendbyte(b, 'S');
	pq_sendstring(b, severity);
	pq_sendbyte(b, 'V');
	pq_sendstring(b, severity);
	pq_sendbyte(b, 'C');
	pq_sendstring(b, sqlstate);
	pq_sendbyte(b, 'M');
	pq_sendstring(b, message);
	if (detail) {
		pq_sendbyte(b, 'D');
		pq_sendstring(b, detail);
	}
	if (hint) {
		pq_sendbyte(b, 'H');
		pq_sendstring(b, hint);
	}
	pq_sendbyte(b, 0);
	sp_msg_end(b, at);
}

void sp_msg_write_error(sp_buf_t *b, const char *severity, const char *sqlstate, const char *message,
			const char *detail, const char *hint)
{
	error_or_notice(b, SP_BE_ERROR, severity, sqlstate, message, detail, hint);
}

void sp_msg_write_notice(sp_buf_t *b, const char *sqlstate, const char *message)
{
	error_or_notice(b, SP_BE_NOTICE, "NOTICE", sqlstate, message, NULL, NULL);
}

void sp_msg_write_notice_detail(sp_buf_t *b, const char *sqlstate, const char *message, const char *detail)
{
	error_or_notice(b, SP_BE_NOTICE, "NOTICE", sqlstate, message, detail, NULL);
}

void sp_msg_write_ready_for_query(sp_buf_t *b, char txn_status)
{
	size_t at = sp_msg_begin(b, SP_BE_READY_FOR_QUERY);
	pq_sendbyte(b, (uint8_t)txn_status);
	sp_msg_end(b, at);
}

void sp_msg_write_auth(sp_buf_t *b, int32_t code, const void *payload, size_t n)
{
	size_t at = sp_msg_begin(b, SP_BE_AUTH);
	pq_sendint32(b, code);
	if (n)
		pq_sendbytes(b, payload, n);
	sp_msg_end(b, at);
}

void sp_msg_write_parameter_status(sp_buf_t *b, const char *name, const char *value)
{
	size_t at = sp_msg_begin(b, SP_BE_PARAMETER_STATUS);
	pq_sendstring(b, name);
	pq_sendstring(b, value);
	sp_msg_end(b, at);
}

void sp_msg_write_backend_key_data(sp_buf_t *b, int32_t pid, int32_t key)
{
	size_t at = sp_msg_begin(b, SP_BE_BACKEND_KEY_DATA);
	pq_sendint32(b, pid);
	pq_sendint32(b, key);
	sp_msg_end(b, at);
}

void sp_msg_write_empty(sp_buf_t *b, char type)
{
	size_t at = sp_msg_begin(b, type);
	sp_msg_end(b, at);
}

void sp_msg_write_command_complete(sp_buf_t *b, const char *tag)
{
	size_t at = sp_msg_begin(b, SP_BE_COMMAND_COMPLETE);
	pq_sendstring(b, tag);
	sp_msg_end(b, at);
}

void sp_msg_write_row_description(sp_buf_t *b, int ncols, const char *const *names, const int32_t *type_oids)
{
	size_t at = sp_msg_begin(b, SP_BE_ROW_DESCRIPTION);
	pq_sendint16(b, (int16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		pq_sendstring(b, names[i]);
		pq_sendint32(b, 0);  /* table oid */
		pq_sendint16(b, 0);  /* column number */
		pq_sendint32(b, type_oids ? type_oids[i] : 25);
		pq_sendint16(b, -1); /* type size */
		pq_sendint32(b, -1); /* typmod */
		pq_sendint16(b, 0);  /* text format */
	}
	sp_msg_end(b, at);
}

void sp_msg_write_data_row(sp_buf_t *b, int ncols, const char *const *values)
{
	size_t at = sp_msg_begin(b, SP_BE_DATA_ROW);
	pq_sendint16(b, (int16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		if (!values[i]) {
			pq_sendint32(b, -1);
		} else {
			size_t n = strlen(values[i]);
			pq_sendint32(b, (int32_t)n);
			pq_sendbytes(b, values[i], n);
		}
	}
	sp_msg_end(b, at);
}

void sp_msg_write_startup(sp_buf_t *b, const char *const *kv)
{
	size_t at;
	sp_buf_reserve(b, 64);
	at = b->end - b->start; /* relative, as in sp_msg_begin */
	b->end += 4;
	pq_sendint32(b, SP_PROTO_V3);
	for (int i = 0; kv[i] && kv[i + 1]; i += 2) {
		pq_sendstring(b, kv[i]);
		pq_sendstring(b, kv[i + 1]);
	}
	pq_sendbyte(b, 0);
	sp_put_be32(b->data + b->start + at, (uint32_t)(b->end - b->start - at));
}

void sp_msg_write_query(sp_buf_t *b, const char *sql)
{
	size_t at = sp_msg_begin(b, SP_FE_QUERY);
	pq_sendstring(b, sql);
	sp_msg_end(b, at);
}

void sp_msg_write_password(sp_buf_t *b, const char *password)
{
	size_t at = sp_msg_begin(b, SP_FE_PASSWORD);
	pq_sendstring(b, password);
	sp_msg_end(b, at);
}

void sp_msg_write_sasl_initial(sp_buf_t *b, const char *mech, const char *data, size_t n)
{
	size_t at = sp_msg_begin(b, SP_FE_PASSWORD);
	pq_sendstring(b, mech);
	pq_sendint32(b, (int32_t)n);
	pq_sendbytes(b, data, n);
	sp_msg_end(b, at);
}

void sp_msg_write_sasl_response(sp_buf_t *b, const char *data, size_t n)
{
	size_t at = sp_msg_begin(b, SP_FE_PASSWORD);
	pq_sendbytes(b, data, n);
	sp_msg_end(b, at);
}

void sp_msg_write_cancel_request(sp_buf_t *b, int32_t pid, int32_t key)
{
	pq_sendint32(b, 16);
	pq_sendint32(b, SP_CANCEL_REQUEST_CODE);
	pq_sendint32(b, pid);
	pq_sendint32(b, key);
}

void sp_msg_write_terminate(sp_buf_t *b)
{
	sp_msg_write_empty(b, SP_FE_TERMINATE);
}

void sp_msg_write_sync(sp_buf_t *b)
{
	sp_msg_write_empty(b, SP_FE_SYNC);
}

void sp_msg_write_parse(sp_buf_t *b, const char *name, const char *sql)
{
	size_t at = sp_msg_begin(b, SP_FE_PARSE);
	pq_sendstring(b, name);
	pq_sendstring(b, sql);
	pq_sendint16(b, 0);
	sp_msg_end(b, at);
}

void sp_msg_write_close(sp_buf_t *b, char kind, const char *name)
{
	size_t at = sp_msg_begin(b, SP_FE_CLOSE);
	pq_sendbyte(b, (uint8_t)kind);
	pq_sendstring(b, name);
	sp_msg_end(b, at);
}

const char *sp_msg_error_field(const uint8_t *body, size_t len, char field)
{
	size_t pos = 0;
	while (pos < len && body[pos] != 0) {
		char f = (char)body[pos++];
		const uint8_t *nul = memchr(body + pos, 0, len - pos);
		if (!nul)
			return NULL;
		if (f == field)
			return (const char *)body + pos;
		pos = (size_t)(nul - body) + 1;
	}
	return NULL;
}
