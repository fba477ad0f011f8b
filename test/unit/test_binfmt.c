/*
 * test_binfmt.c - binary <-> text conversions of the merge's types.
 *
 * The numeric vectors are what PostgreSQL 15.20 printed for
 * encode(numeric_send(x), 'hex') and x::text on a sandbox server.
 */
#include "binfmt.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sp_buf_t out;

static char *hex(const uint8_t *p, size_t n)
{
	static char h[1024];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 < sizeof h; i++)
		o += (size_t)snprintf(h + o, sizeof h - o, "%02x", p[i]);
	h[o] = 0;
	return h;
}

static size_t unhex(const char *h, uint8_t *b)
{
	size_t n = strlen(h) / 2;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		b[i] = (uint8_t)v;
	}
	return n;
}

static const char *to_text(uint32_t type, const char *h)
{
	static char t[512];
	uint8_t b[256];
	size_t n = unhex(h, b);
	sp_buf_reset(&out);
	if (!sp_binfmt_to_text(type, b, n, &out))
		return "(false)";
	snprintf(t, sizeof t, "%.*s", (int)sp_buf_len(&out), (const char *)out.data);
	return t;
}

static const char *from_text(uint32_t type, const char *t)
{
	sp_buf_reset(&out);
	if (!sp_binfmt_from_text(type, t, strlen(t), &out))
		return "(false)";
	return hex(out.data, sp_buf_len(&out));
}

static const struct {
	const char *hex, *text;
} numerics[] = {
	{"0000000000000000", "0"},
	{"000200000000000100011388", "1.5"},
	{"0003000140000006007b11d70001", "-1234567.000100"},
	{"0001fffe0000000503e8", "0.00001"},
	{"0009000700000003000c0d801ed204d2162e23340d801ed204ce",
	 "123456789012345678901234567890.123"},
	{"00000000c0000000", "NaN"},
	{"00000000d0000020", "Infinity"},
	{"00000000f0000020", "-Infinity"},
	{"00010001000000000001", "10000"},
	{"0000000000000001", "0.0"},
};

static int ncmp(const char *a, const char *b)
{
	uint8_t x[256], y[256];
	size_t xn, yn;
	bool ok;
	sp_buf_reset(&out);
	sp_binfmt_from_text(SP_OID_NUMERIC, a, strlen(a), &out);
	xn = sp_buf_len(&out);
	memcpy(x, out.data, xn);
	sp_buf_reset(&out);
	sp_binfmt_from_text(SP_OID_NUMERIC, b, strlen(b), &out);
	yn = sp_buf_len(&out);
	memcpy(y, out.data, yn);
	int c = sp_binfmt_numeric_cmp(x, xn, y, yn, &ok);
	return ok ? c : 99;
}

int main(void)
{
	for (size_t i = 0; i < sizeof numerics / sizeof numerics[0]; i++) {
		is_str(to_text(SP_OID_NUMERIC, numerics[i].hex), numerics[i].text,
		       "numeric_send bytes of %s read as text", numerics[i].text);
		is_str(from_text(SP_OID_NUMERIC, numerics[i].text), numerics[i].hex,
		       "%s written as numeric_send would", numerics[i].text);
	}
	is_str(from_text(SP_OID_NUMERIC, "-0.0"), "0000000000000001", "-0.0 is a positive zero");
	is_str(from_text(SP_OID_NUMERIC, "00012.50"), "0002000000000002000c1388",
	       "leading zeros dropped, scale kept");
	is_str(from_text(SP_OID_NUMERIC, "1e5"), "(false)", "exponents are not numeric output");
	is_str(from_text(SP_OID_NUMERIC, "12a"), "(false)", "garbage refused");
	is_str(to_text(SP_OID_NUMERIC, "0001"), "(false)", "truncated numeric refused");
	is_str(to_text(SP_OID_NUMERIC, "000100000000000027100000"), "(false)",
	       "digit >= 10000 refused");

	is_str(to_text(SP_OID_INT2, "ff85"), "-123", "int2");
	is_str(to_text(SP_OID_INT4, "80000000"), "-2147483648", "int4 minimum");
	is_str(to_text(SP_OID_INT8, "7fffffffffffffff"), "9223372036854775807", "int8 maximum");
	is_str(to_text(SP_OID_OID, "ffffffff"), "4294967295", "oid is unsigned");
	is_str(to_text(SP_OID_FLOAT8, "3fb999999999999a"), "0.1", "float8 shortest form");
	is_str(to_text(SP_OID_FLOAT4, "3dcccccd"), "0.1", "float4 shortest form");
	is_str(to_text(SP_OID_FLOAT8, "7ff8000000000000"), "NaN", "float8 NaN");
	is_str(to_text(SP_OID_BOOL, "01"), "t", "bool");
	is_str(to_text(SP_OID_TEXT, "6869"), "hi", "text is its bytes");
	is_str(to_text(SP_OID_INT4, "0102"), "(false)", "int4 of 2 bytes refused");
	is_str(to_text(SP_OID_DATE, "00000000"), "(false)", "date is not converted");

	is_str(from_text(SP_OID_INT8, "-2"), "fffffffffffffffe", "int8 from text");
	is_str(from_text(SP_OID_INT4, "2147483648"), "(false)", "int4 overflow refused");
	is_str(from_text(SP_OID_FLOAT8, "0.1"), "3fb999999999999a", "float8 from text");
	is_str(from_text(SP_OID_FLOAT4, "0.1"), "3dcccccd", "float4 from text");
	is_str(from_text(SP_OID_FLOAT8, "Infinity"), "7ff0000000000000", "float8 Infinity");
	is_str(from_text(SP_OID_TEXT, "x"), "(false)", "text is never converted back");

	ok(ncmp("1.5", "1.50") == 0, "numeric order: 1.5 = 1.50");
	ok(ncmp("-2", "1") < 0, "numeric order: -2 < 1");
	ok(ncmp("-2", "-1") < 0, "numeric order: -2 < -1");
	ok(ncmp("0", "-0.001") > 0, "numeric order: 0 > -0.001");
	ok(ncmp("10000", "9999.9999") > 0, "numeric order: weight decides");
	ok(ncmp("1.0001", "1.00009") > 0, "numeric order: fraction digits");
	ok(ncmp("NaN", "Infinity") > 0, "numeric order: NaN above Infinity");
	ok(ncmp("-Infinity", "-1e0") == 99 || ncmp("-Infinity", "-99999") < 0,
	   "numeric order: -Infinity below everything");
	ok(ncmp("NaN", "NaN") == 0, "numeric order: NaN equals NaN");
	sp_buf_free(&out);
	return done_testing();
}
