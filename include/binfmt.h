/*
 * binfmt.h - PostgreSQL's binary send/receive formats of the types a
 * fan-out merge computes with: integers, oid, floats, numeric, bool, the
 * text types, date, time and timestamps.
 *
 * A driver that asks for binary results (asyncpg always, pgx, JDBC after
 * prepareThreshold) gets them from the shards; the merge compares such
 * values in binary and, for sum/count/avg, reads them as text and writes the
 * combined value back in binary, with these conversions.
 */
#ifndef SP_BINFMT_H
#define SP_BINFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SP_OID_BOOL 16
#define SP_OID_BYTEA 17
#define SP_OID_CHAR 18
#define SP_OID_NAME 19
#define SP_OID_INT8 20
#define SP_OID_INT2 21
#define SP_OID_INT4 23
#define SP_OID_TEXT 25
#define SP_OID_OID 26
#define SP_OID_FLOAT4 700
#define SP_OID_FLOAT8 701
#define SP_OID_BPCHAR 1042
#define SP_OID_VARCHAR 1043
#define SP_OID_DATE 1082
#define SP_OID_TIME 1083
#define SP_OID_TIMESTAMP 1114
#define SP_OID_TIMESTAMPTZ 1184
#define SP_OID_INTERVAL 1186
#define SP_OID_NUMERIC 1700
#define SP_OID_UUID 2950

/*
 * Append the text form of a binary value of type (int2, int4, int8, oid,
 * float4, float8, numeric, bool, text, varchar, bpchar, name) to out.
 * Floats come out in the shortest exact form, numeric with its display
 * scale, as PostgreSQL prints them. False for another type or a malformed
 * value.
 */
bool sp_binfmt_to_text(uint32_t type, const uint8_t *p, size_t n, sp_buf_t *out);

/*
 * Append the binary form of the text value p[0..n) of type (int2, int4,
 * int8, float4, float8, numeric) to out. False for another type or text
 * that is not a value of it.
 */
bool sp_binfmt_from_text(uint32_t type, const char *p, size_t n, sp_buf_t *out);

/*
 * Order of two binary numeric values, as numeric_cmp (NaN above +Infinity,
 * equal to itself). Sets *ok to false (and returns 0) if either is malformed.
 */
int sp_binfmt_numeric_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn, bool *ok);

#endif
