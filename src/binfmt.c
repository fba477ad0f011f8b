/*
 * binfmt.c - conversions between PostgreSQL's binary (send/recv) and text
 * forms for the types the fan-out merge computes with, and the order of
 * binary numerics.
 *
 * Owns: the byte layouts of int2/int4/int8/oid (big-endian), float4/float8
 * (IEEE bits, big-endian), bool (one byte), the text types (the bytes
 * themselves) and numeric (int16 ndigits, int16 weight, uint16 sign, int16
 * dscale, then ndigits base-10000 digits), as numeric_send/numeric_recv in
 * PostgreSQL's utils/adt/numeric.c define them.
 *
 * Deliberately not here: date and timestamp text (the merge compares those
 * as integers in binary and never converts them), and any type whose order
 * is not that of its value (enums, intervals): callers refuse those.
 */
#include "binfmt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"
#include "msg.h"

#define NUMERIC_POS 0x0000
#define NUMERIC_NEG 0x4000
#define NUMERIC_NAN 0xC000
#define NUMERIC_PINF 0xD000
#define NUMERIC_NINF 0xF000
#define NBASE 10000
#define NUMERIC_MAX_DIGITS 32768 /* more than any numeric PostgreSQL stores */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)sp_get_be32(p) << 32) | sp_get_be32(p + 4);
}

static void put_be(sp_buf_t *out, uint64_t v, int bytes)
{
	uint8_t b[8];
	for (int i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	sp_buf_append(out, b, (size_t)bytes);
}

static void put_str(sp_buf_t *out, const char *s)
{
	sp_buf_append(out, s, strlen(s));
}

/* ------------------------------------------------------------------ numeric */

typedef struct numeric_bin {
	int ndigits, weight, dscale;
	uint16_t sign;
	const uint8_t *digits; /* ndigits big-endian int16 */
} numeric_bin_t;

static bool numeric_read(const uint8_t *p, size_t n, numeric_bin_t *v)
{
	if (n < 8)
		return false;
	v->ndigits = (int16_t)get16(p);
	v->weight = (int16_t)get16(p + 2);
	v->sign = get16(p + 4);
	v->dscale = (int16_t)get16(p + 6);
	v->digits = p + 8;
	if (v->ndigits < 0 || v->dscale < 0 || n != 8 + 2 * (size_t)v->ndigits)
		return false;
	if (v->sign != NUMERIC_POS && v->sign != NUMERIC_NEG && v->sign != NUMERIC_NAN &&
	    v->sign != NUMERIC_PINF && v->sign != NUMERIC_NINF)
		return false;
	for (int i = 0; i < v->ndigits; i++)
		if (get16(v->digits + 2 * i) >= NBASE)
			return false;
	/* leading zero digits (not produced by PostgreSQL, but legal) */
	while (v->ndigits > 0 && get16(v->digits) == 0) {
		v->digits += 2;
		v->ndigits--;
		v->weight--;
	}
	while (v->ndigits > 0 && get16(v->digits + 2 * (v->ndigits - 1)) == 0)
		v->ndigits--;
	return true;
}

static int digit_at(const numeric_bin_t *v, int i)
{
	return i >= 0 && i < v->ndigits ? get16(v->digits + 2 * i) : 0;
}

/* get_str_from_var(): the integer part, then dscale fraction digits */
static void numeric_text(const numeric_bin_t *v, sp_buf_t *out)
{
	char tmp[8];
	switch (v->sign) {
	case NUMERIC_NAN:
		put_str(out, "NaN");
		return;
	case NUMERIC_PINF:
		put_str(out, "Infinity");
		return;
	case NUMERIC_NINF:
		put_str(out, "-Infinity");
		return;
	default:
		break;
	}
	if (v->sign == NUMERIC_NEG && v->ndigits > 0)
		put_str(out, "-");
	if (v->weight < 0 || v->ndigits == 0) {
		put_str(out, "0");
	} else {
		for (int d = 0; d <= v->weight; d++) {
			int n = snprintf(tmp, sizeof tmp, d == 0 ? "%d" : "%04d", digit_at(v, d));
			sp_buf_append(out, tmp, (size_t)n);
		}
	}
	if (v->dscale > 0) {
		static const int pow10[4] = {1000, 100, 10, 1};
		put_str(out, ".");
		for (int i = 0; i < v->dscale; i++) {
			int g = v->ndigits == 0 ? 0 : digit_at(v, v->weight + 1 + i / 4);
			char ch = (char)('0' + (g / pow10[i % 4]) % 10);
			sp_buf_append(out, &ch, 1);
		}
	}
}

static bool numeric_from_text(const char *p, size_t n, sp_buf_t *out)
{
	size_t i = 0, ip, in = 0, fp = 0, fn = 0;
	bool neg = false;

	if (n == 3 && strncasecmp(p, "NaN", 3) == 0) {
		put_be(out, 0, 2), put_be(out, 0, 2), put_be(out, NUMERIC_NAN, 2), put_be(out, 0, 2);
		return true;
	}
	if ((n == 8 && strncasecmp(p, "Infinity", 8) == 0) ||
	    (n == 9 && strncasecmp(p, "-Infinity", 9) == 0)) {
		put_be(out, 0, 2), put_be(out, 0, 2);
		put_be(out, p[0] == '-' ? NUMERIC_NINF : NUMERIC_PINF, 2);
		/* numeric_send sends the dscale bits of the short header: 32 for both infinities */
		put_be(out, 32, 2);
		return true;
	}
	if (i < n && (p[i] == '-' || p[i] == '+'))
		neg = p[i++] == '-';
	ip = i;
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	in = i - ip;
	if (i < n && p[i] == '.') {
		fp = ++i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		fn = i - fp;
	}
	if (i != n || in + fn == 0 || fn > 0x3fff)
		return false;
	while (in > 0 && p[ip] == '0')
		ip++, in--;

	/* base-10000 groups: the integer part aligned on its end, the fraction on its start */
	int igroups = (int)((in + 3) / 4), fgroups = (int)((fn + 3) / 4);
	int total = igroups + fgroups;
	if (total > NUMERIC_MAX_DIGITS)
		return false;
	int16_t *g = calloc((size_t)(total ? total : 1), sizeof *g);
	if (!g)
		return false;
	for (size_t k = 0; k < in; k++) {
		size_t pos = (size_t)igroups * 4 - in + k; /* digit position from the left */
		g[pos / 4] = (int16_t)(g[pos / 4] * 10 + (p[ip + k] - '0'));
	}
	for (size_t k = 0; k < (size_t)fgroups * 4; k++) {
		int d = k < fn ? p[fp + k] - '0' : 0;
		size_t gi = (size_t)igroups + k / 4;
		g[gi] = (int16_t)(g[gi] * 10 + d);
	}
	int first = 0, last = total, weight = igroups - 1;
	while (first < last && g[first] == 0)
		first++, weight--;
	while (last > first && g[last - 1] == 0)
		last--;
	if (first == last) {
		weight = 0;
		neg = false;
	}
	put_be(out, (uint64_t)(last - first), 2);
	put_be(out, (uint16_t)(int16_t)weight, 2);
	put_be(out, neg ? NUMERIC_NEG : NUMERIC_POS, 2);
	put_be(out, fn, 2);
	for (int k = first; k < last; k++)
		put_be(out, (uint16_t)g[k], 2);
	free(g);
	return true;
}

static int special_rank(uint16_t sign)
{
	return sign == NUMERIC_NINF ? -1 : sign == NUMERIC_PINF ? 1 : sign == NUMERIC_NAN ? 2 : 0;
}

int sp_binfmt_numeric_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn, bool *ok)
{
	numeric_bin_t x, y;
	if (!numeric_read(a, an, &x) || !numeric_read(b, bn, &y)) {
		*ok = false;
		return 0;
	}
	*ok = true;
	int rx = special_rank(x.sign), ry = special_rank(y.sign);
	if (rx || ry)
		return rx < ry ? -1 : rx > ry;
	int sx = x.ndigits == 0 ? 0 : x.sign == NUMERIC_NEG ? -1 : 1;
	int sy = y.ndigits == 0 ? 0 : y.sign == NUMERIC_NEG ? -1 : 1;
	if (sx != sy)
		return sx < sy ? -1 : 1;
	if (sx == 0)
		return 0;
	int mag = 0;
	if (x.weight != y.weight) {
		mag = x.weight < y.weight ? -1 : 1;
	} else {
		int n = x.ndigits > y.ndigits ? x.ndigits : y.ndigits;
		for (int i = 0; i < n && !mag; i++) {
			int dx = digit_at(&x, i), dy = digit_at(&y, i);
			if (dx != dy)
				mag = dx < dy ? -1 : 1;
		}
	}
	return sx * mag;
}

/* ------------------------------------------------------------------ API */

bool sp_binfmt_to_text(uint32_t type, const uint8_t *p, size_t n, sp_buf_t *out)
{
	char tmp[64];
	int len;
	switch (type) {
	case SP_OID_INT2:
		if (n != 2)
			return false;
		len = snprintf(tmp, sizeof tmp, "%d", (int16_t)get16(p));
		break;
	case SP_OID_INT4:
		if (n != 4)
			return false;
		len = snprintf(tmp, sizeof tmp, "%d", (int32_t)sp_get_be32(p));
		break;
	case SP_OID_OID:
		if (n != 4)
			return false;
		len = snprintf(tmp, sizeof tmp, "%u", sp_get_be32(p));
		break;
	case SP_OID_INT8:
		if (n != 8)
			return false;
		len = snprintf(tmp, sizeof tmp, "%lld", (long long)(int64_t)get64(p));
		break;
	case SP_OID_FLOAT4: {
		if (n != 4)
			return false;
		uint32_t bits = sp_get_be32(p);
		float f;
		memcpy(&f, &bits, sizeof f);
		len = sp_merge_format_float4(f, tmp, sizeof tmp);
		break;
	}
	case SP_OID_FLOAT8: {
		if (n != 8)
			return false;
		uint64_t bits = get64(p);
		double d;
		memcpy(&d, &bits, sizeof d);
		len = sp_merge_format_float8(d, tmp, sizeof tmp);
		break;
	}
	case SP_OID_BOOL:
		if (n != 1)
			return false;
		len = snprintf(tmp, sizeof tmp, "%s", p[0] ? "t" : "f");
		break;
	case SP_OID_NUMERIC: {
		numeric_bin_t v;
		if (!numeric_read(p, n, &v))
			return false;
		numeric_text(&v, out);
		return true;
	}
	case SP_OID_TEXT:
	case SP_OID_VARCHAR:
	case SP_OID_BPCHAR:
	case SP_OID_NAME:
		sp_buf_append(out, p, n);
		return true;
	default:
		return false;
	}
	if (len < 0 || (size_t)len >= sizeof tmp)
		return false;
	sp_buf_append(out, tmp, (size_t)len);
	return true;
}

bool sp_binfmt_from_text(uint32_t type, const char *p, size_t n, sp_buf_t *out)
{
	char tmp[128], *end;
	if (type == SP_OID_NUMERIC)
		return numeric_from_text(p, n, out);
	if (n == 0 || n >= sizeof tmp)
		return false;
	memcpy(tmp, p, n);
	tmp[n] = 0;
	errno = 0;
	switch (type) {
	case SP_OID_INT2:
	case SP_OID_INT4:
	case SP_OID_INT8: {
		long long v = strtoll(tmp, &end, 10);
		if (*end || errno)
			return false;
		if ((type == SP_OID_INT2 && (v < INT16_MIN || v > INT16_MAX)) ||
		    (type == SP_OID_INT4 && (v < INT32_MIN || v > INT32_MAX)))
			return false;
		put_be(out, (uint64_t)v, type == SP_OID_INT2 ? 2 : type == SP_OID_INT4 ? 4 : 8);
		return true;
	}
	case SP_OID_FLOAT4: {
		float f = strtof(tmp, &end);
		uint32_t bits;
		if (*end)
			return false;
		memcpy(&bits, &f, sizeof bits);
		put_be(out, bits, 4);
		return true;
	}
	case SP_OID_FLOAT8: {
		double d = strtod(tmp, &end);
		uint64_t bits;
		if (*end)
			return false;
		memcpy(&bits, &d, sizeof bits);
		put_be(out, bits, 8);
		return true;
	}
	default:
		return false;
	}
}
