/*
 * shard_hash.h - shard keys hashed exactly as PostgreSQL 15's PARTITION BY HASH.
 *
 * For a table sharded by hash over N shards, the shard of a row is the
 * remainder PostgreSQL would give it in a table declared
 * PARTITION BY HASH (same key columns, same types) with MODULUS N, so a DBA
 * can check placement with satisfies_hash_partition() on any shard.
 *
 * Keys are first parsed into an sp_shard_value_t (from the text form of a SQL
 * literal or text-format Bind parameter, or from a binary-format Bind
 * parameter), then hashed. Parsing and hashing never allocate; a text value
 * borrows the caller's bytes, which must outlive the value.
 */
#ifndef SP_SHARD_HASH_H
#define SP_SHARD_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* sp_key_type_t */

/* HASH_PARTITION_SEED (catalog/partition.h); as a signed bigint 8816678312871386365 */
#define SP_SHARD_HASH_SEED UINT64_C(0x7A5B22367996DCFD)

#define SP_SHARD_UUID_LEN 16

/* One parsed key column. Which member is valid depends on the column's sp_key_type_t. */
typedef union sp_shard_value {
	int64_t i; /* SP_KEY_SMALLINT, SP_KEY_INTEGER, SP_KEY_BIGINT */
	struct {
		const char *ptr; /* borrowed, not NUL-terminated; in the server encoding */
		size_t len;
	} text;				 /* SP_KEY_TEXT, SP_KEY_VARCHAR */
	uint8_t uuid[SP_SHARD_UUID_LEN]; /* SP_KEY_UUID, in storage (network) order */
} sp_shard_value_t;

typedef enum {
	SP_SHARD_OK = 0,
	SP_SHARD_EINVAL, /* not a valid literal of the type: SQLSTATE 22P02 */
	SP_SHARD_ERANGE, /* a number outside the type's range: SQLSTATE 22003 */
	SP_SHARD_EBINARY /* a binary parameter of the wrong length: SQLSTATE 22P03 */
} sp_shard_parse_t;

/* "smallint", "integer", "bigint", "text", "character varying", "uuid" */
const char *sp_shard_type_name(sp_key_type_t type);

/* The SQLSTATE PostgreSQL reports for the same failure ("00000" for SP_SHARD_OK). */
const char *sp_shard_parse_sqlstate(sp_shard_parse_t rc);

/*
 * Parse the text form of a value of type `type` (len bytes at s, no NUL needed),
 * accepting exactly what PostgreSQL 15's input function accepts: integers in
 * decimal with optional surrounding whitespace and sign, range-checked; uuids as
 * 32 hex digits, either case, with an optional '-' after any group of four and
 * optional surrounding braces; text and varchar as is (borrowed). On failure
 * writes PostgreSQL's wording of the error to err (if errlen > 0).
 */
sp_shard_parse_t sp_shard_value_from_text(sp_key_type_t type, const char *s, size_t len,
					  sp_shard_value_t *out, char *err, size_t errlen);

/*
 * A numeric value as it bears on an integer key: sp_shard_numeric_from_text().
 * PostgreSQL compares an integer column with a numeric one exactly (bigint =
 * numeric casts the bigint), and assigns a numeric to an integer column by
 * rounding half away from zero (2.5 -> 3, -2.5 -> -3).
 */
typedef enum {
	SP_NUMERIC_FINITE = 0,
	SP_NUMERIC_NAN,
	SP_NUMERIC_POS_INF,
	SP_NUMERIC_NEG_INF
} sp_numeric_kind_t;

typedef struct sp_shard_numeric {
	sp_numeric_kind_t kind;
	bool integral;	 /* finite and no nonzero digit after the point: 2.0, 1e2, -0.00 */
	bool overflow;	 /* finite, and the rounded value is outside int64 */
	int64_t rounded; /* finite and !overflow: the value rounded half away from zero */
} sp_shard_numeric_t;

/*
 * Read the text form of a numeric as PostgreSQL 15's numeric_in does: optional
 * surrounding whitespace, an optional sign, digits with at most one decimal point
 * (at least one digit), an optional exponent (e or E, optional sign, digits); or NaN,
 * [+-]Infinity, [+-]inf in any case. SP_SHARD_EINVAL (22P02, with PostgreSQL's
 * wording in err) for anything else. Exponents of any size are accepted: the value
 * only overflows.
 */
sp_shard_parse_t sp_shard_numeric_from_text(const char *s, size_t len, sp_shard_numeric_t *out,
					    char *err, size_t errlen);

/*
 * Parse a binary-format Bind parameter: integers as 2, 4 or 8 bytes in network
 * order (any width for any integer key type, range-checked against the key's
 * type, since a driver may bind an int8 against an integer column), uuid as 16
 * bytes, text and varchar as their bytes (borrowed).
 */
sp_shard_parse_t sp_shard_value_from_binary(sp_key_type_t type, const void *data, size_t len,
					    sp_shard_value_t *out, char *err, size_t errlen);

/* PostgreSQL's hash_bytes_extended() and hash_bytes_uint32_extended(), as computed on x86_64. */
uint64_t sp_shard_hash_bytes(const void *data, size_t len, uint64_t seed);
uint64_t sp_shard_hash_uint32(uint32_t k, uint64_t seed);

/* The type's extended hash support function with seed SP_SHARD_HASH_SEED. */
uint64_t sp_shard_hash_value(sp_key_type_t type, const sp_shard_value_t *value);

/* PostgreSQL's hash_combine64(); a row hash starts at 0 and skips NULL columns. */
uint64_t sp_shard_hash_combine(uint64_t acc, uint64_t column_hash);

/*
 * Row hash of an n-column key (PostgreSQL's compute_partition_hash_value):
 * is_null may be NULL when no column is NULL.
 */
uint64_t sp_shard_hash_row(const sp_key_type_t *types, const sp_shard_value_t *values,
			   const bool *is_null, int n);

/* Remainder of the row hash for this modulus (number of shards); -1 if modulus < 1. */
int sp_shard_for_hash(uint64_t row_hash, int modulus);

/* sp_shard_for_hash(sp_shard_hash_row(...), modulus): the shard of a (composite) key. */
int sp_shard_of_keys(const sp_key_type_t *types, const sp_shard_value_t *values,
		     const bool *is_null, int n, int modulus);

#endif
