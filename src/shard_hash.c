/*
 * shard_hash.c - shard key parsing and PostgreSQL-compatible hashing.
 *
 * Owns the one place where shardpool decides which hash shard a key belongs
 * to. The invariant is bit-for-bit agreement with a PostgreSQL 15 server on
 * x86_64 (little-endian): per column the type's extended hash support
 * function (hashint2/4/8extended, hashtextextended, uuid_hash_extended) with
 * HASH_PARTITION_SEED, columns combined left to right with hash_combine64
 * from 0, NULL columns skipped, and the unsigned remainder by the modulus.
 * Input parsing accepts exactly what the server's type input functions do, so
 * a literal the server would reject is never routed as if it were valid.
 *
 * Deliberately not here: nondeterministic (ICU) collations, whose text hash
 * depends on the collation's sort key, and encoding conversion: text bytes are
 * hashed as given, so callers must hand over bytes in the server encoding
 * (client_encoding equal to server_encoding). Nothing here allocates.
 */
#include "shard_hash.h"

#include <stdio.h>
#include <string.h>

static const char *const type_names[] = {
    [SP_KEY_SMALLINT] = "smallint",
    [SP_KEY_INTEGER] = "integer",
    [SP_KEY_BIGINT] = "bigint",
    [SP_KEY_TEXT] = "text",
    [SP_KEY_VARCHAR] = "character varying",
    [SP_KEY_UUID] = "uuid",
};

const char *sp_shard_type_name(sp_key_type_t type)
{
	if ((unsigned)type < sizeof(type_names) / sizeof(type_names[0]) && type_names[type])
		return type_names[type];
	return "unknown";
}

const char *sp_shard_parse_sqlstate(sp_shard_parse_t rc)
{
	switch (rc) {
	case SP_SHARD_OK:
		return "00000";
	case SP_SHARD_EINVAL:
		return "22P02";
	case SP_SHARD_ERANGE:
		return "22003";
	case SP_SHARD_EBINARY:
		return "22P03";
	}
	return "XX000";
}

/* ---- the hash itself (Bob Jenkins' lookup3, as PostgreSQL adapted it) ---- */

static inline uint32_t rot32(uint32_t x, int k)
{
	return (x << k) | (x >> (32 - k));
}

#define MIX(a, b, c)                                                                               \
	do {                                                                                       \
		a -= c;                                                                            \
		a ^= rot32(c, 4);                                                                  \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rot32(a, 6);                                                                  \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rot32(b, 8);                                                                  \
		b += a;                                                                            \
		a -= c;                                                                            \
		a ^= rot32(c, 16);                                                                 \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rot32(a, 19);                                                                 \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rot32(b, 4);                                                                  \
		b += a;                                                                            \
	} while (0)

#define FINAL(a, b, c)                                                                             \
	do {                                                                                       \
		c ^= b;                                                                            \
		c -= rot32(b, 14);                                                                 \
		a ^= c;                                                                            \
		a -= rot32(c, 11);                                                                 \
		b ^= a;                                                                            \
		b -= rot32(a, 25);                                                                 \
		c ^= b;                                                                            \
		c -= rot32(b, 16);                                                                 \
		a ^= c;                                                                            \
		a -= rot32(c, 4);                                                                  \
		b ^= a;                                                                            \
		b -= rot32(a, 14);                                                                 \
		c ^= b;                                                                            \
		c -= rot32(b, 24);                                                                 \
	} while (0)

/* Initial state: golden ratio plus the length plus PostgreSQL's extra constant. */
#define HASH_INIT(len) (0x9e3779b9u + (uint32_t)(len) + 3923095u)

/*
 * Up to four bytes as a little-endian word. A little-endian server reads its
 * words this way whether or not the key is aligned, so assembling bytes
 * explicitly gives the server's answer on any host, without unaligned loads.
 */
static inline uint32_t le_word(const uint8_t *p, size_t n)
{
	uint32_t w = 0;

	for (size_t i = 0; i < n; i++)
		w |= (uint32_t)p[i] << (8 * i);
	return w;
}

static inline void seed_state(uint32_t *a, uint32_t *b, uint32_t *c, uint64_t seed)
{
	/* a zero seed means "unseeded" to PostgreSQL: no extra mixing round */
	if (seed != 0) {
		*a += (uint32_t)(seed >> 32);
		*b += (uint32_t)seed;
		MIX(*a, *b, *c);
	}
}

uint64_t sp_shard_hash_bytes(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *k = data;
	uint32_t a, b, c;
	size_t rest = len;

	a = b = c = HASH_INIT(len);
	seed_state(&a, &b, &c, seed);

	while (rest >= 12) {
		a += le_word(k, 4);
		b += le_word(k + 4, 4);
		c += le_word(k + 8, 4);
		MIX(a, b, c);
		k += 12;
		rest -= 12;
	}
	/*
	 * The last 0..11 bytes fill a, then b, then c from its second byte up:
	 * the lowest byte of c is "reserved for the length" in lookup3.
	 */
	if (rest > 0)
		a += le_word(k, rest < 4 ? rest : 4);
	if (rest > 4)
		b += le_word(k + 4, rest < 8 ? rest - 4 : 4);
	if (rest > 8)
		c += le_word(k + 8, rest - 8) << 8;

	FINAL(a, b, c);
	return ((uint64_t)b << 32) | c;
}

uint64_t sp_shard_hash_uint32(uint32_t k, uint64_t seed)
{
	uint32_t a, b, c;

	a = b = c = HASH_INIT(sizeof(uint32_t));
	seed_state(&a, &b, &c, seed);
	a += k;
	FINAL(a, b, c);
	return ((uint64_t)b << 32) | c;
}

/*
 * hashint8extended folds a bigint into 32 bits so that equal smallint,
 * integer and bigint values hash alike (cross-type hash joins). For a value in
 * int32 range the fold is the identity on the low word, which is exactly what
 * hashint2extended and hashint4extended hash, so one path serves all three.
 */
static inline uint64_t hash_int(int64_t v)
{
	uint32_t lo = (uint32_t)(uint64_t)v;
	uint32_t hi = (uint32_t)((uint64_t)v >> 32);

	lo ^= v >= 0 ? hi : ~hi;
	return sp_shard_hash_uint32(lo, SP_SHARD_HASH_SEED);
}

uint64_t sp_shard_hash_value(sp_key_type_t type, const sp_shard_value_t *value)
{
	switch (type) {
	case SP_KEY_SMALLINT:
	case SP_KEY_INTEGER:
	case SP_KEY_BIGINT:
		return hash_int(value->i);
	case SP_KEY_TEXT:
	case SP_KEY_VARCHAR:
		/* varchar has no hash opclass of its own: it uses text's */
		return sp_shard_hash_bytes(value->text.ptr, value->text.len, SP_SHARD_HASH_SEED);
	case SP_KEY_UUID:
		return sp_shard_hash_bytes(value->uuid, SP_SHARD_UUID_LEN, SP_SHARD_HASH_SEED);
	}
	return 0;
}

uint64_t sp_shard_hash_combine(uint64_t acc, uint64_t column_hash)
{
	acc ^= column_hash + UINT64_C(0x49a0f4dd15e5a8e3) + (acc << 54) + (acc >> 7);
	return acc;
}

uint64_t sp_shard_hash_row(const sp_key_type_t *types, const sp_shard_value_t *values,
			   const bool *is_null, int n)
{
	uint64_t h = 0;

	for (int i = 0; i < n; i++) {
		if (is_null && is_null[i])
			continue;
		h = sp_shard_hash_combine(h, sp_shard_hash_value(types[i], &values[i]));
	}
	return h;
}

int sp_shard_for_hash(uint64_t row_hash, int modulus)
{
	if (modulus < 1)
		return -1;
	return (int)(row_hash % (uint64_t)modulus);
}

int sp_shard_of_keys(const sp_key_type_t *types, const sp_shard_value_t *values,
		     const bool *is_null, int n, int modulus)
{
	if (n < 0)
		return -1;
	return sp_shard_for_hash(sp_shard_hash_row(types, values, is_null, n), modulus);
}

/* ---- parsing ---- */

/* The server quotes the whole input; an error buffer need not hold a huge key. */
static int quoted_len(size_t len)
{
	return len > 256 ? 256 : (int)len;
}

static sp_shard_parse_t syntax_error(sp_key_type_t type, const char *s, size_t len, char *err,
				     size_t errlen)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "invalid input syntax for type %s: \"%.*s\"",
			 sp_shard_type_name(type), quoted_len(len), s);
	return SP_SHARD_EINVAL;
}

static sp_shard_parse_t range_error(sp_key_type_t type, const char *s, size_t len, char *err,
				    size_t errlen)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "value \"%.*s\" is out of range for type %s", quoted_len(len),
			 s, sp_shard_type_name(type));
	return SP_SHARD_ERANGE;
}

/* isspace() in the C locale; the server never treats bytes >= 0x80 as space. */
static inline bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static inline int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The range of the key's own type; binary parameters of a wider type are checked against it. */
static void int_limits(sp_key_type_t type, int64_t *min, int64_t *max)
{
	switch (type) {
	case SP_KEY_SMALLINT:
		*min = INT16_MIN;
		*max = INT16_MAX;
		break;
	case SP_KEY_INTEGER:
		*min = INT32_MIN;
		*max = INT32_MAX;
		break;
	default:
		*min = INT64_MIN;
		*max = INT64_MAX;
		break;
	}
}

/*
 * PostgreSQL 15's pg_strtoint16/32/64: optional whitespace, optional sign, at
 * least one decimal digit, optional whitespace, nothing else (no hex, no
 * underscores: those came in 16). Overflow is reported as soon as it happens,
 * even if a syntax error follows, as the server does.
 */
static sp_shard_parse_t parse_int(sp_key_type_t type, const char *s, size_t len, int64_t *out,
				  char *err, size_t errlen)
{
	size_t i = 0;
	bool neg = false;
	int64_t min, max;
	uint64_t limit, mag = 0;

	int_limits(type, &min, &max);
	while (i < len && is_space(s[i]))
		i++;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	if (i >= len || s[i] < '0' || s[i] > '9')
		return syntax_error(type, s, len, err, errlen);
	limit = neg ? (uint64_t)(-(min + 1)) + 1 : (uint64_t)max;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned digit = (unsigned)(s[i] - '0');

		if (mag > (limit - digit) / 10)
			return range_error(type, s, len, err, errlen);
		mag = mag * 10 + digit;
	}
	while (i < len && is_space(s[i]))
		i++;
	if (i != len)
		return syntax_error(type, s, len, err, errlen);
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return SP_SHARD_OK;
}

/*
 * uuid_in: 32 hex digits; after every second byte except the last a single
 * '-' may follow; optionally the whole thing in braces.
 */
static sp_shard_parse_t parse_uuid(const char *s, size_t len, uint8_t *out, char *err,
				   size_t errlen)
{
	size_t i = 0;
	bool braces = false;

	if (len > 0 && s[0] == '{') {
		braces = true;
		i++;
	}
	for (int byte = 0; byte < SP_SHARD_UUID_LEN; byte++) {
		int hi, lo;

		if (len - i < 2)
			return syntax_error(SP_KEY_UUID, s, len, err, errlen);
		hi = hex_value(s[i]);
		lo = hex_value(s[i + 1]);
		if (hi < 0 || lo < 0)
			return syntax_error(SP_KEY_UUID, s, len, err, errlen);
		out[byte] = (uint8_t)(hi << 4 | lo);
		i += 2;
		if (i < len && s[i] == '-' && byte % 2 == 1 && byte < SP_SHARD_UUID_LEN - 1)
			i++;
	}
	if (braces) {
		if (i >= len || s[i] != '}')
			return syntax_error(SP_KEY_UUID, s, len, err, errlen);
		i++;
	}
	if (i != len)
		return syntax_error(SP_KEY_UUID, s, len, err, errlen);
	return SP_SHARD_OK;
}

sp_shard_parse_t sp_shard_value_from_text(sp_key_type_t type, const char *s, size_t len,
					  sp_shard_value_t *out, char *err, size_t errlen)
{
	switch (type) {
	case SP_KEY_SMALLINT:
	case SP_KEY_INTEGER:
	case SP_KEY_BIGINT:
	{
		/* the server's input functions stop at a NUL; its protocol layer rejects one.
		 * A NUL fails parse_int too, so only a failure needs the search for one. */
		sp_shard_parse_t rc = parse_int(type, s, len, &out->i, err, errlen);
		if (rc != SP_SHARD_OK && len > 0 && memchr(s, '\0', len))
			return syntax_error(type, s, len, err, errlen);
		return rc;
	}
	case SP_KEY_TEXT:
	case SP_KEY_VARCHAR:
		out->text.ptr = s;
		out->text.len = len;
		return SP_SHARD_OK;
	case SP_KEY_UUID:
		return parse_uuid(s, len, out->uuid, err, errlen);
	}
	if (err && errlen > 0)
		snprintf(err, errlen, "unsupported shard key type %d", (int)type);
	return SP_SHARD_EINVAL;
}

static bool word_is(const char *s, size_t n, const char *w)
{
	size_t wl = strlen(w);

	if (n != wl)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((s[i] | 0x20) != w[i])
			return false;
	return true;
}

sp_shard_parse_t sp_shard_numeric_from_text(const char *s, size_t len, sp_shard_numeric_t *out,
					    char *err, size_t errlen)
{
	size_t i = 0, end = len, k, digits;
	bool neg = false, point = false, over = false, frac = false;
	long long intdigits = 0, exp10 = 0, place;
	uint64_t mag = 0, limit;
	int round_digit = 0;

	memset(out, 0, sizeof(*out));
	while (i < end && is_space(s[i]))
		i++;
	while (end > i && is_space(s[end - 1]))
		end--;
	if (word_is(s + i, end - i, "nan")) {
		out->kind = SP_NUMERIC_NAN;
		return SP_SHARD_OK;
	}
	k = i;
	if (k < end && (s[k] == '+' || s[k] == '-'))
		neg = s[k++] == '-';
	if (word_is(s + k, end - k, "infinity") || word_is(s + k, end - k, "inf")) {
		out->kind = neg ? SP_NUMERIC_NEG_INF : SP_NUMERIC_POS_INF;
		return SP_SHARD_OK;
	}
	digits = k;
	for (; k < end; k++) {
		if (s[k] >= '0' && s[k] <= '9')
			intdigits += !point;
		else if (s[k] == '.' && !point)
			point = true;
		else
			break;
	}
	if (k == digits + (point ? 1 : 0)) /* no digit at all */
		goto invalid;
	size_t digits_end = k;
	if (k < end && (s[k] == 'e' || s[k] == 'E')) {
		bool eneg = false;
		k++;
		if (k < end && (s[k] == '+' || s[k] == '-'))
			eneg = s[k++] == '-';
		if (k >= end || s[k] < '0' || s[k] > '9')
			goto invalid;
		for (; k < end && s[k] >= '0' && s[k] <= '9'; k++)
			if (exp10 < 1000000000LL) /* beyond that the value overflows anyway */
				exp10 = exp10 * 10 + (s[k] - '0');
		if (eneg)
			exp10 = -exp10;
	}
	if (k != end)
		goto invalid;
	/* digit j (the point skipped) stands for d * 10^place, place = intdigits - 1 - j + exp10 */
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	place = intdigits - 1 + exp10;
	long long lowest = 0;
	bool any_int = false;
	for (k = digits; k < digits_end; k++) {
		if (s[k] == '.')
			continue;
		unsigned d = (unsigned)(s[k] - '0');
		if (place >= 0) {
			if (!over) {
				if (mag > (limit - d) / 10)
					over = true;
				else
					mag = mag * 10 + d;
			}
			any_int = true;
			lowest = place;
		} else {
			if (place == -1)
				round_digit = (int)d;
			if (d)
				frac = true;
		}
		place--;
	}
	/* the integer digits end above the units (1.5e3: 15, then * 10^2) */
	if (any_int && mag != 0)
		for (long long z = 0; z < lowest && !over; z++) {
			if (mag > limit / 10)
				over = true;
			else
				mag *= 10;
		}
	if (!over && round_digit >= 5) {
		if (mag >= limit)
			over = true;
		else
			mag++;
	}
	out->kind = SP_NUMERIC_FINITE;
	out->integral = !frac;
	out->overflow = over;
	if (!over)
		out->rounded = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return SP_SHARD_OK;
invalid:
	if (err && errlen > 0)
		snprintf(err, errlen, "invalid input syntax for type numeric: \"%.*s\"",
			 quoted_len(len), s);
	return SP_SHARD_EINVAL;
}

sp_shard_parse_t sp_shard_value_from_binary(sp_key_type_t type, const void *data, size_t len,
					    sp_shard_value_t *out, char *err, size_t errlen)
{
	const uint8_t *p = data;

	switch (type) {
	case SP_KEY_SMALLINT:
	case SP_KEY_INTEGER:
	case SP_KEY_BIGINT: {
		uint64_t u = 0;
		int64_t v, min, max;

		if (len != 2 && len != 4 && len != 8)
			break;
		for (size_t i = 0; i < len; i++)
			u = u << 8 | p[i];
		/* sign-extend from the sent width */
		if (len == 2)
			v = (int16_t)(uint16_t)u;
		else if (len == 4)
			v = (int32_t)(uint32_t)u;
		else
			v = (int64_t)u;
		int_limits(type, &min, &max);
		if (v < min || v > max) {
			if (err && errlen > 0)
				snprintf(err, errlen, "value %lld is out of range for type %s",
					 (long long)v, sp_shard_type_name(type));
			return SP_SHARD_ERANGE;
		}
		out->i = v;
		return SP_SHARD_OK;
	}
	case SP_KEY_TEXT:
	case SP_KEY_VARCHAR:
		out->text.ptr = data;
		out->text.len = len;
		return SP_SHARD_OK;
	case SP_KEY_UUID:
		if (len != SP_SHARD_UUID_LEN)
			break;
		memcpy(out->uuid, p, SP_SHARD_UUID_LEN);
		return SP_SHARD_OK;
	default:
		if (err && errlen > 0)
			snprintf(err, errlen, "unsupported shard key type %d", (int)type);
		return SP_SHARD_EINVAL;
	}
	if (err && errlen > 0)
		snprintf(err, errlen, "incorrect binary data format for type %s (%zu bytes)",
			 sp_shard_type_name(type), len);
	return SP_SHARD_EBINARY;
}
