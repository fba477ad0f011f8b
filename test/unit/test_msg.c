/*
 * test_msg.c - message framing: readers never read past the message, writers
 * produce the bytes PostgreSQL's protocol documentation specifies.
 */
#include <string.h>

#include "msg.h"
#include "tap.h"

static void test_readers(void)
{
	static const uint8_t body[] = {0x12, 0x00, 0x05, 0xff, 0xff, 0xff, 0xfe, 'a', 'b', 0, 'x'};
	sp_msg_reader_t r;
	uint8_t b;
	int16_t i16;
	int32_t i32;
	const char *s;
	size_t n;
	const uint8_t *bytes;

	sp_msg_reader_init(&r, body, sizeof(body));
	ok(pq_getmsgbyte(&r, &b) && b == 0x12, "byte");
	ok(pq_getmsgint16(&r, &i16) && i16 == 5, "int16 big-endian");
	ok(pq_getmsgint32(&r, &i32) && i32 == -2, "int32 negative");
	ok(pq_getmsgstring(&r, &s, &n) && strcmp(s, "ab") == 0 && n == 2, "NUL-terminated string");
	ok(!pq_getmsgstring(&r, &s, &n), "unterminated string is refused");
	is_int(r.pos, 10, "a failed read does not move the cursor");
	ok(pq_getmsgbytes(&r, 1, &bytes) && bytes[0] == 'x', "bytes");
	ok(!pq_getmsgbyte(&r, &b), "no read past the end");
	ok(!pq_getmsgint16(&r, &i16) && !pq_getmsgint32(&r, &i32), "no int read past the end");
	ok(!pq_getmsgbytes(&r, 1, &bytes), "no bytes past the end");

	/* a length that would wrap around must not pass the bounds check */
	sp_msg_reader_init(&r, body, 3);
	r.pos = 2;
	ok(!pq_getmsgint32(&r, &i32), "int32 with 1 byte left is refused");
	ok(!pq_getmsgbytes(&r, (size_t)-1, &bytes), "huge byte count is refused");
}

static void test_writers(void)
{
	sp_buf_t b = {0};
	const uint8_t *p;

	sp_msg_write_ready_for_query(&b, 'T');
	is_int(sp_buf_len(&b), 6, "ReadyForQuery is 6 bytes");
	p = sp_buf_head(&b);
	ok(p[0] == 'Z' && sp_get_be32(p + 1) == 5 && p[5] == 'T', "ReadyForQuery bytes");
	sp_buf_reset(&b);

	sp_msg_write_parameter_status(&b, "TimeZone", "UTC");
	p = sp_buf_head(&b);
	ok(p[0] == 'S' && sp_get_be32(p + 1) == 4 + 9 + 4 && memcmp(p + 5, "TimeZone\0UTC\0", 13) == 0,
	   "ParameterStatus bytes");
	sp_buf_reset(&b);

	sp_msg_write_error(&b, "ERROR", "0A000", "not supported", NULL, "do this");
	p = sp_buf_head(&b);
	ok(p[0] == 'E', "ErrorResponse type");
	is_int(sp_get_be32(p + 1), sp_buf_len(&b) - 1, "ErrorResponse length covers the body");
	is_str(sp_msg_error_field(p + 5, sp_buf_len(&b) - 5, 'C'), "0A000", "SQLSTATE field");
	is_str(sp_msg_error_field(p + 5, sp_buf_len(&b) - 5, 'M'), "not supported", "message field");
	is_str(sp_msg_error_field(p + 5, sp_buf_len(&b) - 5, 'H'), "do this", "hint field");
	ok(sp_msg_error_field(p + 5, sp_buf_len(&b) - 5, 'D') == NULL, "absent detail field");
	ok(p[sp_buf_len(&b) - 1] == 0, "ErrorResponse ends with a zero byte");
	sp_buf_reset(&b);

	{
		static const uint8_t bad[] = {'M', 'a', 'b'}; /* field without its NUL */
		ok(sp_msg_error_field(bad, sizeof(bad), 'M') == NULL, "truncated error field is not read");
	}

	{
		const char *kv[] = {"user", "app", "database", "db", NULL};
		sp_msg_write_startup(&b, kv);
		p = sp_buf_head(&b);
		is_int(sp_get_be32(p), sp_buf_len(&b), "startup length includes itself");
		is_int(sp_get_be32(p + 4), SP_PROTO_V3, "protocol 3.0");
		ok(memcmp(p + 8, "user\0app\0database\0db\0\0", 22) == 0, "startup parameters, final NUL");
		sp_buf_reset(&b);
	}

	sp_msg_write_cancel_request(&b, 1234, -5);
	p = sp_buf_head(&b);
	ok(sp_buf_len(&b) == 16 && sp_get_be32(p) == 16 && sp_get_be32(p + 4) == SP_CANCEL_REQUEST_CODE &&
	       sp_get_be32(p + 8) == 1234 && (int32_t)sp_get_be32(p + 12) == -5,
	   "CancelRequest bytes");
	sp_buf_reset(&b);

	{
		const char *names[] = {"a", "b"};
		const char *vals[] = {"1", NULL};
		sp_msg_reader_t r;
		int16_t n;
		int32_t l;
		sp_msg_write_data_row(&b, 2, vals);
		p = sp_buf_head(&b);
		sp_msg_reader_init(&r, p + 5, sp_buf_len(&b) - 5);
		ok(p[0] == 'D' && pq_getmsgint16(&r, &n) && n == 2, "DataRow column count");
		ok(pq_getmsgint32(&r, &l) && l == 1 && r.data[r.pos] == '1', "DataRow value");
		r.pos += 1;
		ok(pq_getmsgint32(&r, &l) && l == -1 && r.pos == r.len, "DataRow NULL, nothing after");
		sp_buf_reset(&b);
		sp_msg_write_row_description(&b, 2, names, NULL);
		p = sp_buf_head(&b);
		is_int(sp_get_be32(p + 1), 4 + 2 + 2 * (2 + 18), "RowDescription length");
		sp_buf_reset(&b);
	}

	/* many messages: the buffer grows and keeps earlier ones intact */
	for (int i = 0; i < 5000; i++)
		sp_msg_write_command_complete(&b, "SELECT 1");
	is_int(sp_buf_len(&b), 5000 * 14, "5000 CommandComplete messages");
	p = sp_buf_head(&b);
	ok(p[0] == 'C' && memcmp(p + 4999 * 14 + 5, "SELECT 1", 9) == 0, "first and last intact");
	sp_buf_consume(&b, 14 * 4999);
	is_int(sp_buf_len(&b), 14, "consume leaves the rest");
	sp_buf_free(&b);
}

int main(void)
{
	test_readers();
	test_writers();
	return done_testing();
}
