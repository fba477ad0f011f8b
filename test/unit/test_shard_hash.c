/*
 * test_shard_hash.c - shard hashing against values a real PostgreSQL computed.
 *
 * Every expected hash below was printed by PostgreSQL 15.x (Debian 12, x86_64,
 * initdb -E UTF8 --locale=C.UTF-8) for the query shown next to it; the seed
 * 8816678312871386365 is HASH_PARTITION_SEED (0x7A5B22367996DCFD) as a signed
 * bigint. psql prints the hashes as signed bigints, so they are kept that way
 * here and compared as the same 64 bits. Composite-key remainders were checked
 * with satisfies_hash_partition() on a table PARTITION BY HASH (a bigint, b text).
 */
#include "shard_hash.h"
#include "tap.h"

#include <stdint.h>
#include <string.h>

static sp_shard_value_t text_value(const char *s)
{
	sp_shard_value_t v;

	v.text.ptr = s;
	v.text.len = strlen(s);
	return v;
}

static void test_int_hashes(void)
{
	static const struct {
		int64_t v;
		int64_t want;
	} cases[] = {
	    /* SELECT hashint8extended(V, 8816678312871386365) */
	    {42, 7363975540656877951LL},
	    {0, -4403592609991167795LL},
	    {-1, -5017072347659237694LL},
	    {INT64_MIN, -6050265599104649060LL},
	    {INT64_MAX, 4938542303000433043LL},
	    {5000000000LL, -2799505259769899283LL},
	    {-5000000000LL, -4482100988868492312LL},
	    /* SELECT hashint4extended(V, ...) */
	    {INT32_MAX, -6050265599104649060LL},
	    {INT32_MIN, 4938542303000433043LL},
	    /* SELECT hashint2extended('V'::int2, ...) */
	    {-32768, 5885242512097991578LL},
	    {32767, -6436696229286267413LL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sp_shard_value_t v = {.i = cases[i].v};

		is_int((int64_t)sp_shard_hash_value(SP_KEY_BIGINT, &v), cases[i].want,
		       "bigint %lld hashes as hashint8extended", (long long)cases[i].v);
	}

	/* hashint2extended(42::int2) = hashint4extended(42) = hashint8extended(42) */
	{
		sp_shard_value_t v = {.i = 42};

		is_int((int64_t)sp_shard_hash_value(SP_KEY_SMALLINT, &v), 7363975540656877951LL,
		       "smallint 42 hashes like hashint2extended");
		is_int((int64_t)sp_shard_hash_value(SP_KEY_INTEGER, &v), 7363975540656877951LL,
		       "integer 42 hashes like hashint4extended");
		v.i = -1;
		/* SELECT hashint4extended(-1, ...) */
		is_int((int64_t)sp_shard_hash_value(SP_KEY_INTEGER, &v), -5017072347659237694LL,
		       "integer -1 hashes like hashint4extended");
	}

	/* SELECT hashint4extended(42, 0): seed 0 means no seeding round */
	is_int((int64_t)sp_shard_hash_uint32(42, 0), 8010225493015854792LL,
	       "hash_bytes_uint32_extended with seed 0");
}

static void test_text_hashes(void)
{
	static const struct {
		const char *s;
		int64_t want;
	} cases[] = {
	    /* SELECT hashtextextended('S', 8816678312871386365) */
	    {"abc", 3628778498291917250LL},
	    {"", -5700645584453517373LL},
	    {"gr\xc3\xb6\xc3\x9f"
	     "e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x90\x98",
	     445488767354005132LL},		      /* 'größe 日本語 🐘' */
	    {"abcdefghijkl", -7876791541613377658LL}, /* exactly one 12-byte block */
	    {"abcdefghijk", -2046435308545367432LL},  /* 11-byte tail: c gets 3 bytes */
	    {"The quick brown fox jumps", 5652438115739902581LL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sp_shard_value_t v = text_value(cases[i].s);

		is_int((int64_t)sp_shard_hash_value(SP_KEY_TEXT, &v), cases[i].want,
		       "text '%s' hashes as hashtextextended", cases[i].s);
		is_int((int64_t)sp_shard_hash_value(SP_KEY_VARCHAR, &v), cases[i].want,
		       "varchar '%s' hashes as text", cases[i].s);
	}

	/* SELECT hashtextextended('abc', 0) */
	is_int((int64_t)sp_shard_hash_bytes("abc", 3, 0), -6747756470228489321LL,
	       "hash_bytes_extended with seed 0");

	/* the server's aligned and unaligned paths agree on x86_64; so must ours */
	{
		char buf[64];
		const char *s = "The quick brown fox jumps";
		int same = 1;

		for (int off = 0; off < 4; off++) {
			memcpy(buf + off, s, strlen(s));
			if ((int64_t)sp_shard_hash_bytes(
				buf + off, strlen(s), SP_SHARD_HASH_SEED) != 5652438115739902581LL)
				same = 0;
		}
		ok(same, "hash does not depend on the key's alignment");
	}
}

static void test_uuid_hashes(void)
{
	static const struct {
		const char *s;
		int64_t want;
	} cases[] = {
	    /* SELECT uuid_hash_extended('S', 8816678312871386365) */
	    {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 424513190990560493LL},
	    {"00000000-0000-0000-0000-000000000000", -5281082146396728638LL},
	    {"ffffffff-ffff-ffff-ffff-ffffffffffff", -148986464341306210LL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sp_shard_value_t v;
		char err[256] = "";

		is_int(sp_shard_value_from_text(SP_KEY_UUID, cases[i].s, strlen(cases[i].s), &v,
						err, sizeof(err)),
		       SP_SHARD_OK, "uuid %s parses %s", cases[i].s, err);
		is_int((int64_t)sp_shard_hash_value(SP_KEY_UUID, &v), cases[i].want,
		       "uuid %s hashes as uuid_hash_extended", cases[i].s);
	}
}

static void test_composite(void)
{
	/*
	 * CREATE TABLE c (a bigint, b text) PARTITION BY HASH (a, b); each row
	 * below gave true for satisfies_hash_partition('c', M, R, a, b) with
	 * M = 2147483647, 1073741824, 4, 7 and the remainders listed, and false
	 * for modulus 7 with the next remainder.
	 */
	static const struct {
		int64_t a;
		const char *b; /* NULL: SQL NULL */
		bool a_null;
		int r_maxint, r_2_30, r4, r7;
	} rows[] = {
	    {42, "abc", false, 474293733, 673580347, 3, 1},
	    {-1, "", false, 2062642734, 727207840, 0, 0},
	    {INT64_MIN,
	     "gr\xc3\xb6\xc3\x9f"
	     "e",
	     false, 77348364, 554053044, 0, 3},
	    {7, NULL, false, 1827655690, 708953367, 3, 6},
	    {0, "only text", true, 766214129, 53771144, 0, 0},
	    {0, NULL, true, 0, 0, 0, 0},
	    {123456789012LL, "The quick brown fox jumps", false, 1569514585, 1018095978, 2, 1},
	};
	const sp_key_type_t types[2] = {SP_KEY_BIGINT, SP_KEY_TEXT};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		sp_shard_value_t v[2];
		bool nulls[2] = {rows[i].a_null, rows[i].b == NULL};
		uint64_t h;

		v[0].i = rows[i].a;
		v[1] = text_value(rows[i].b ? rows[i].b : "");
		h = sp_shard_hash_row(types, v, nulls, 2);
		is_int(sp_shard_for_hash(h, 2147483647), rows[i].r_maxint,
		       "row %zu: remainder for modulus 2147483647", i);
		is_int(sp_shard_for_hash(h, 1073741824), rows[i].r_2_30,
		       "row %zu: remainder for modulus 2^30", i);
		is_int(sp_shard_of_keys(types, v, nulls, 2, 4), rows[i].r4, "row %zu: shard of 4",
		       i);
		is_int(sp_shard_of_keys(types, v, nulls, 2, 7), rows[i].r7, "row %zu: shard of 7",
		       i);
	}

	/* all-NULL keys hash to 0, like an empty key */
	{
		sp_shard_value_t v[1] = {{.i = 5}};
		bool null1[1] = {true};

		is_int((int64_t)sp_shard_hash_row(types, v, null1, 1), 0, "NULL key hashes to 0");
		is_int((int64_t)sp_shard_hash_row(types, v, NULL, 0), 0, "empty key hashes to 0");
	}

	/* a single non-NULL column still goes through hash_combine64(0, h) */
	{
		sp_shard_value_t v = {.i = 42};
		uint64_t h = sp_shard_hash_value(SP_KEY_BIGINT, &v);

		ok(sp_shard_hash_row(types, &v, NULL, 1) == sp_shard_hash_combine(0, h),
		   "one column: row hash is combine(0, column hash)");
		ok(sp_shard_hash_combine(0, h) != h, "combine(0, h) is not h");
	}
}

static void test_for_hash(void)
{
	/* unsigned: a hash with the top bit set must not give a negative remainder */
	is_int(sp_shard_for_hash(UINT64_MAX, 3), (int)(UINT64_MAX % 3), "unsigned remainder");
	is_int(sp_shard_for_hash(UINT64_C(0x8000000000000000), 7),
	       (int)(UINT64_C(0x8000000000000000) % 7), "top bit set, modulus 7");
	is_int(sp_shard_for_hash(12345, 1), 0, "modulus 1");
	is_int(sp_shard_for_hash(12345, 0), -1, "modulus 0 is refused");
	is_int(sp_shard_for_hash(12345, -4), -1, "negative modulus is refused");
	is_int(sp_shard_of_keys(NULL, NULL, NULL, -1, 4), -1, "negative column count is refused");
}

/* a test description must stay on one line: show control bytes as \ooo */
static const char *printable(const char *s)
{
	static char buf[256];
	size_t o = 0;

	for (; *s && o + 5 < sizeof(buf); s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\%03o", ch);
		else
			buf[o++] = (char)ch;
	}
	buf[o] = '\0';
	return buf;
}

static void parse_ok(sp_key_type_t type, const char *s, int64_t want)
{
	sp_shard_value_t v = {.i = 0x5a5a};
	char err[256] = "";
	sp_shard_parse_t rc = sp_shard_value_from_text(type, s, strlen(s), &v, err, sizeof(err));

	if (!ok(rc == SP_SHARD_OK && v.i == want, "%s '%s' parses to %lld",
		sp_shard_type_name(type), printable(s), (long long)want))
		printf("#   rc %d, value %lld, err %s\n", (int)rc, (long long)v.i, err);
}

static void parse_bad(sp_key_type_t type, const char *s, sp_shard_parse_t want_rc,
		      const char *want_err)
{
	sp_shard_value_t v;
	char err[256] = "";
	sp_shard_parse_t rc = sp_shard_value_from_text(type, s, strlen(s), &v, err, sizeof(err));

	is_int(rc, want_rc, "%s '%s' is rejected", sp_shard_type_name(type), printable(s));
	if (want_err)
		is_str(err, want_err, "  with the server's message");
}

static void test_parse_ints(void)
{
	parse_ok(SP_KEY_INTEGER, "42", 42);
	parse_ok(SP_KEY_INTEGER, " +42 ", 42); /* SELECT ' +42 '::int4 -> 42 */
	parse_ok(SP_KEY_BIGINT, "\t-7\n", -7); /* SELECT E'\t-7\n'::int8 -> -7 */
	parse_ok(SP_KEY_INTEGER, "007", 7);
	parse_ok(SP_KEY_SMALLINT, "-32768", INT16_MIN);
	parse_ok(SP_KEY_SMALLINT, "32767", INT16_MAX);
	parse_ok(SP_KEY_INTEGER, "-2147483648", INT32_MIN);
	parse_ok(SP_KEY_INTEGER, "2147483647", INT32_MAX);
	parse_ok(SP_KEY_BIGINT, "-9223372036854775808", INT64_MIN);
	parse_ok(SP_KEY_BIGINT, "9223372036854775807", INT64_MAX);
	parse_ok(SP_KEY_BIGINT, "-0", 0);
	parse_ok(SP_KEY_BIGINT, "0", 0);

	/* messages as PostgreSQL 15 printed them for SELECT 'S'::type */
	parse_bad(SP_KEY_SMALLINT, "-32769", SP_SHARD_ERANGE,
		  "value \"-32769\" is out of range for type smallint");
	parse_bad(SP_KEY_SMALLINT, "32768", SP_SHARD_ERANGE, NULL);
	parse_bad(SP_KEY_INTEGER, "2147483648", SP_SHARD_ERANGE, NULL);
	parse_bad(SP_KEY_INTEGER, "-2147483649", SP_SHARD_ERANGE, NULL);
	parse_bad(SP_KEY_BIGINT, "9223372036854775808", SP_SHARD_ERANGE, NULL);
	parse_bad(SP_KEY_BIGINT, "-9223372036854775809", SP_SHARD_ERANGE, NULL);
	parse_bad(SP_KEY_BIGINT, "99999999999999999999999", SP_SHARD_ERANGE, NULL);
	/* the server reports overflow before it notices the trailing garbage */
	parse_bad(SP_KEY_INTEGER, "99999999999x", SP_SHARD_ERANGE,
		  "value \"99999999999x\" is out of range for type integer");
	parse_bad(SP_KEY_BIGINT, "", SP_SHARD_EINVAL, "invalid input syntax for type bigint: \"\"");
	parse_bad(SP_KEY_BIGINT, "   ", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_BIGINT, "-", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_BIGINT, "+", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_BIGINT, "--1", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_BIGINT, "- 1", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_INTEGER, "0x10", SP_SHARD_EINVAL,
		  "invalid input syntax for type integer: \"0x10\"");
	parse_bad(SP_KEY_INTEGER, "1_000", SP_SHARD_EINVAL, NULL); /* PostgreSQL 16 only */
	parse_bad(SP_KEY_INTEGER, "1.5", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_INTEGER, "1e3", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_INTEGER, "1 2", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_INTEGER, "12a", SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_INTEGER,
		  "\xc2\xa0"
		  "1",
		  SP_SHARD_EINVAL, NULL); /* NBSP is no space */

	/* a length-delimited Bind value: no NUL terminator, and an embedded NUL is bad */
	{
		sp_shard_value_t v;

		is_int(sp_shard_value_from_text(SP_KEY_INTEGER, "1234xyz", 4, &v, NULL, 0),
		       SP_SHARD_OK, "only len bytes are read");
		is_int(v.i, 1234, "  and give 1234");
		is_int(sp_shard_value_from_text(SP_KEY_INTEGER,
						"12\0"
						"3",
						4, &v, NULL, 0),
		       SP_SHARD_EINVAL, "embedded NUL is a syntax error");
	}

	is_str(sp_shard_parse_sqlstate(SP_SHARD_EINVAL), "22P02", "syntax error SQLSTATE");
	is_str(sp_shard_parse_sqlstate(SP_SHARD_ERANGE), "22003", "range error SQLSTATE");
	is_str(sp_shard_parse_sqlstate(SP_SHARD_EBINARY), "22P03", "binary format SQLSTATE");
}

static void test_parse_uuid(void)
{
	static const char *const forms[] = {
	    /* all accepted by SELECT 'S'::uuid as a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",   "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
	    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
	    "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",     "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
	    "{A0EE-BC99-9c0b4ef8-BB6D6BB9-BD380a11}",
	};
	static const uint8_t want[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
					 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
	static const char *const bad[] = {
	    /* all rejected by SELECT 'S'::uuid */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", /* no dash after the last group */
	    "a0eebc99-9c0b4ef8-bb6d-6bb9bd380a1-1",  /* dash inside a group */
	    "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* dash after 3 digits */
	    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* unclosed brace */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", /* unopened brace */
	    " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", /* no whitespace allowed */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",   /* 31 digits */
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111", /* 33 digits */
	    "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  /* not hex */
	    "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", /* two dashes */
	    "",
	    "{}",
	};

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		sp_shard_value_t v;
		char err[256] = "";
		sp_shard_parse_t rc = sp_shard_value_from_text(
		    SP_KEY_UUID, forms[i], strlen(forms[i]), &v, err, sizeof(err));

		ok(rc == SP_SHARD_OK && memcmp(v.uuid, want, 16) == 0, "uuid form %s", forms[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(SP_KEY_UUID, bad[i], SP_SHARD_EINVAL, NULL);
	parse_bad(SP_KEY_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", SP_SHARD_EINVAL,
		  "invalid input syntax for type uuid: \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-\"");

	/* the closing brace must be inside len, not just after it in memory */
	{
		sp_shard_value_t v;
		const char *s = "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}";

		is_int(sp_shard_value_from_text(SP_KEY_UUID, s, strlen(s) - 1, &v, NULL, 0),
		       SP_SHARD_EINVAL, "brace beyond len is not seen");
	}
}

static void test_parse_text(void)
{
	const char *s = "multi\xc3\xa9";
	sp_shard_value_t v;

	is_int(sp_shard_value_from_text(SP_KEY_TEXT, s, strlen(s), &v, NULL, 0), SP_SHARD_OK,
	       "text parses");
	ok(v.text.ptr == s && v.text.len == strlen(s), "text is borrowed, not copied");
	is_int(sp_shard_value_from_text(SP_KEY_VARCHAR, "", 0, &v, NULL, 0), SP_SHARD_OK,
	       "empty varchar parses");
	is_int((int64_t)sp_shard_hash_value(SP_KEY_VARCHAR, &v), -5700645584453517373LL,
	       "empty varchar hashes like hashtextextended('')");
	is_int(sp_shard_value_from_text((sp_key_type_t)99, "1", 1, &v, NULL, 0), SP_SHARD_EINVAL,
	       "unknown key type is refused");
}

static void test_parse_binary(void)
{
	sp_shard_value_t v;
	char err[256];
	static const uint8_t i2[] = {0xff, 0xfe};		 /* -2 */
	static const uint8_t i4[] = {0x80, 0x00, 0x00, 0x00};	 /* INT32_MIN */
	static const uint8_t i8[] = {0x80, 0, 0, 0, 0, 0, 0, 0}; /* INT64_MIN */
	static const uint8_t i8small[] = {0, 0, 0, 0, 0, 0, 0, 42};
	static const uint8_t i8neg[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t u[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
				      0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};

	is_int(sp_shard_value_from_binary(SP_KEY_SMALLINT, i2, 2, &v, err, sizeof(err)),
	       SP_SHARD_OK, "binary int2");
	is_int(v.i, -2, "  is -2");
	is_int(sp_shard_value_from_binary(SP_KEY_INTEGER, i4, 4, &v, err, sizeof(err)), SP_SHARD_OK,
	       "binary int4");
	is_int(v.i, INT32_MIN, "  is INT32_MIN");
	is_int(sp_shard_value_from_binary(SP_KEY_BIGINT, i8, 8, &v, err, sizeof(err)), SP_SHARD_OK,
	       "binary int8");
	is_int(v.i, INT64_MIN, "  is INT64_MIN");
	is_int((int64_t)sp_shard_hash_value(SP_KEY_BIGINT, &v), -6050265599104649060LL,
	       "  and hashes as hashint8extended(INT64_MIN)");
	is_int(sp_shard_value_from_binary(SP_KEY_SMALLINT, i8small, 8, &v, err, sizeof(err)),
	       SP_SHARD_OK, "an int8 parameter for a smallint key, in range");
	is_int(v.i, 42, "  is 42");
	is_int(sp_shard_value_from_binary(SP_KEY_INTEGER, i8neg, 8, &v, err, sizeof(err)),
	       SP_SHARD_OK, "int8 -1 for an integer key");
	is_int(v.i, -1, "  is -1");
	is_int(sp_shard_value_from_binary(SP_KEY_INTEGER, i8, 8, &v, err, sizeof(err)),
	       SP_SHARD_ERANGE, "int8 INT64_MIN for an integer key is out of range");
	is_str(err, "value -9223372036854775808 is out of range for type integer", "  message");
	is_int(sp_shard_value_from_binary(SP_KEY_SMALLINT, i4, 4, &v, NULL, 0), SP_SHARD_ERANGE,
	       "int4 INT32_MIN for a smallint key is out of range");
	is_int(sp_shard_value_from_binary(SP_KEY_BIGINT, i4, 3, &v, NULL, 0), SP_SHARD_EBINARY,
	       "3-byte integer is refused");
	is_int(sp_shard_value_from_binary(SP_KEY_BIGINT, i4, 0, &v, NULL, 0), SP_SHARD_EBINARY,
	       "0-byte integer is refused");
	is_int(sp_shard_value_from_binary(SP_KEY_UUID, u, 16, &v, err, sizeof(err)), SP_SHARD_OK,
	       "binary uuid");
	is_int((int64_t)sp_shard_hash_value(SP_KEY_UUID, &v), 424513190990560493LL,
	       "  hashes as uuid_hash_extended");
	is_int(sp_shard_value_from_binary(SP_KEY_UUID, u, 15, &v, err, sizeof(err)),
	       SP_SHARD_EBINARY, "15-byte uuid is refused");
	is_str(err, "incorrect binary data format for type uuid (15 bytes)", "  message");
	is_int(sp_shard_value_from_binary(SP_KEY_TEXT, "abc", 3, &v, NULL, 0), SP_SHARD_OK,
	       "binary text");
	is_int((int64_t)sp_shard_hash_value(SP_KEY_TEXT, &v), 3628778498291917250LL,
	       "  hashes as hashtextextended('abc')");
}

/*
 * numeric_in's syntax, and the value as an integer key sees it: integral or not, and
 * rounded half away from zero as numeric's casts to smallint/integer/bigint do
 * (SELECT 2.5::int8 -> 3, -2.5::int8 -> -3, 2.4999::int8 -> 2).
 */
static void test_parse_numeric(void)
{
	static const struct {
		const char *s;
		bool integral, overflow;
		int64_t rounded;
	} good[] = {
	    {"2.0", true, false, 2},
	    {"1e2", true, false, 100},
	    {"1E+2", true, false, 100},
	    {"2.5", false, false, 3},
	    {"-2.5", false, false, -3},
	    {"2.4999", false, false, 2},
	    {"0.5", false, false, 1},
	    {"-0.5", false, false, -1},
	    {"-0.4", false, false, 0},
	    {".5", false, false, 1},
	    {"5.", true, false, 5},
	    {"+.5e1", true, false, 5},
	    {"1.5e3", true, false, 1500},
	    {"15e-1", false, false, 2},
	    {"5e-2", false, false, 0},
	    {"0.05", false, false, 0},
	    {"1e-400", false, false, 0},
	    {"0e999999999999", true, false, 0},
	    {"000123.000", true, false, 123},
	    {" \t42 \n", true, false, 42},
	    {"9223372036854775807", true, false, INT64_MAX},
	    {"9223372036854775807.4", false, false, INT64_MAX},
	    {"9223372036854775807.5", false, true, 0},
	    {"-9223372036854775808", true, false, INT64_MIN},
	    {"-9223372036854775808.4", false, false, INT64_MIN},
	    {"-9223372036854775808.5", false, true, 0},
	    {"9223372036854775808", true, true, 0},
	    {"1e19", true, true, 0},
	    {"99999999999999999999", true, true, 0},
	    {"1e999999999999", true, true, 0},
	};
	static const char *const bad[] = {"", " ", ".", "-", "+", "abc", "1e", "1e+", "1.2.3",
					  "1 2", "--1", "0x10", "1_000", "e5", "NaN1", "-NaN"};
	sp_shard_numeric_t n;
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		sp_shard_parse_t rc = sp_shard_numeric_from_text(good[i].s, strlen(good[i].s), &n,
								 err, sizeof(err));
		if (!ok(rc == SP_SHARD_OK && n.kind == SP_NUMERIC_FINITE &&
			    n.integral == good[i].integral && n.overflow == good[i].overflow &&
			    (n.overflow || n.rounded == good[i].rounded),
			"numeric '%s'", good[i].s[0] == ' ' ? "(whitespace around 42)" : good[i].s))
			printf("#   rc %d kind %d integral %d overflow %d rounded %lld\n", rc,
			       n.kind, n.integral, n.overflow, (long long)n.rounded);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(sp_shard_numeric_from_text(bad[i], strlen(bad[i]), &n, NULL, 0),
		       SP_SHARD_EINVAL, "not a numeric: '%s'", bad[i]);
	is_int(sp_shard_numeric_from_text("1\0", 2, &n, NULL, 0), SP_SHARD_EINVAL,
	       "a NUL inside is not a numeric");
	is_int(sp_shard_numeric_from_text("12.5x", 5, &n, err, sizeof(err)), SP_SHARD_EINVAL,
	       "12.5x refused");
	is_str(err, "invalid input syntax for type numeric: \"12.5x\"",
	       "  with PostgreSQL's words");
	ok(sp_shard_numeric_from_text("NaN", 3, &n, NULL, 0) == SP_SHARD_OK &&
	       n.kind == SP_NUMERIC_NAN,
	   "NaN");
	ok(sp_shard_numeric_from_text(" nan ", 5, &n, NULL, 0) == SP_SHARD_OK &&
	       n.kind == SP_NUMERIC_NAN,
	   "nan, any case, spaces around");
	ok(sp_shard_numeric_from_text("-Infinity", 9, &n, NULL, 0) == SP_SHARD_OK &&
	       n.kind == SP_NUMERIC_NEG_INF,
	   "-Infinity");
	ok(sp_shard_numeric_from_text("+inf", 4, &n, NULL, 0) == SP_SHARD_OK &&
	       n.kind == SP_NUMERIC_POS_INF,
	   "+inf");
	ok(sp_shard_numeric_from_text("2.55", 3, &n, NULL, 0) == SP_SHARD_OK && n.rounded == 3 &&
	       !n.integral,
	   "only len bytes are read (2.5 of 2.55)");
}

int main(void)
{
	test_int_hashes();
	test_text_hashes();
	test_uuid_hashes();
	test_composite();
	test_for_hash();
	test_parse_ints();
	test_parse_uuid();
	test_parse_text();
	test_parse_binary();
	test_parse_numeric();
	return done_testing();
}
