/*
 * copysplit.h - splitting the data stream of COPY table FROM STDIN (text
 * and csv formats) into rows, and finding each row's shard key columns, so
 * each row can be sent to the shard that owns it. Rows may span CopyData
 * messages, and one CopyData may hold many rows; the splitter keeps only
 * the incomplete tail of the last row.
 */
#ifndef SP_COPYSPLIT_H
#define SP_COPYSPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

typedef enum { SP_CSPLIT_TEXT = 0, SP_CSPLIT_CSV = 1, SP_CSPLIT_BINARY = 2 } sp_copysplit_format_t;

typedef struct sp_copy_opts {
	sp_copysplit_format_t format;
	char delimiter;      /* default '\t' text, ',' csv */
	char quote;          /* csv, default '"' */
	char escape;         /* csv, default = quote */
	const char *null_str; /* default "\\N" text, "" csv */
	bool header;         /* HEADER: the first line is not data; it is copied to every shard, which runs the COPY with the same HEADER option */
	/*
	 * csv: bit k set when key k (in key order) is named in FORCE_NOT_NULL
	 * (an unquoted NULL string is that string, not NULL) or FORCE_NULL (a
	 * quoted value equal to the NULL string is NULL), as PostgreSQL reads them.
	 */
	uint32_t force_not_null, force_null;
	/* binary: the key columns' types (in key order), which say how to read a key's
	 * bytes (integers of 2, 4 or 8 bytes, text, a 16-byte uuid) */
	const sp_key_type_t *key_types;
} sp_copy_opts_t;

typedef struct sp_copysplit sp_copysplit_t;

/*
 * key_cols: 0-based positions of the key columns within each row (in key
 * order), n_keys of them; key_types their types; modulus the number of
 * shards (hash sharding) or a caller-supplied function for range/list.
 */
typedef int (*sp_copy_shard_fn)(void *arg, const char *const *key_text, const bool *key_null, int n_keys, char *err, size_t errlen);
sp_copysplit_t *sp_copysplit_new(const sp_copy_opts_t *opts, const int *key_cols, int n_keys,
				 sp_copy_shard_fn shard_of, void *arg, int n_shards);
void sp_copysplit_free(sp_copysplit_t *cs);
/*
 * Feed CopyData payload bytes. Each complete row is appended, as raw bytes
 * including its line end, to out[shard] (caller-owned buffers, one per
 * shard); the caller wraps them into CopyData messages. Returns false on a
 * malformed row or a key that cannot be hashed (err says which row and why:
 * the caller aborts the COPY with that message).
 */
bool sp_copysplit_feed(sp_copysplit_t *cs, const uint8_t *data, size_t len, sp_buf_t *out, char *err, size_t errlen);
/* End of data (CopyDone): a final row without a line end is flushed. */
bool sp_copysplit_finish(sp_copysplit_t *cs, sp_buf_t *out, char *err, size_t errlen);
uint64_t sp_copysplit_rows(const sp_copysplit_t *cs);

/*
 * Behaviour notes (added with the implementation in src/copysplit.c):
 * - opts: a zero delimiter / quote / escape or a NULL null_str means
 *   PostgreSQL's default for the format. header works for text too
 *   (PostgreSQL 15 allows it): the first line is skipped and never forwarded.
 * - shard_of gets the de-escaped key values NUL-terminated (key_text[k] is
 *   "" when key_null[k]); it returns a shard in [0, n_shards), or -1 with a
 *   message in err, which becomes "row N: <message>". N counts data lines
 *   (the header is not counted) and is 1-based.
 * - A key containing a zero byte (\0, \x00) is refused, as PostgreSQL
 *   refuses it for any text type. A line longer than 1 GB is refused.
 * - The end-of-data marker \. (text: anywhere on a line, followed by the
 *   line end; csv: alone on a line) is not forwarded, except as part of the
 *   row "abc\." whose data "abc" comes first; everything fed after it is
 *   ignored (feed returns true).
 * - Line ends: \n, \r\n or \r, the first line decides. Rows are forwarded
 *   with their own line end; the last row may have none.
 * - Binary format: the file header (signature, flags, extension) goes to every
 *   shard, each tuple whole to its key's shard, and the trailer (a field count
 *   of -1) to every shard; data after the trailer is refused, as PostgreSQL
 *   refuses it. A key is read as its column's binary send format (a 2, 4 or
 *   8-byte integer for the integer key types, the bytes for text, 16 bytes for
 *   uuid) and given to shard_of as text. Data that ends inside the header or a
 *   tuple is refused at finish.
 */

#endif
