/*
 * auth_md5.h - PostgreSQL's md5 password scheme.
 *
 * Stored form: "md5" + hex(md5(password || username)).
 * On the wire:  "md5" + hex(md5(hex_part_of_stored || salt[4])).
 */
#ifndef SP_AUTH_MD5_H
#define SP_AUTH_MD5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_MD5_PASSWD_LEN 35 /* "md5" + 32 hex, without the NUL */

/* out must hold SP_MD5_PASSWD_LEN + 1 bytes. */
void sp_md5_stored(const char *password, const char *user, char *out);
/* stored is "md5..." (35 chars); out gets the wire response, NUL-terminated. */
void sp_md5_salted(const char *stored, const uint8_t salt[4], char *out);
/* Check a client's wire response against a secret that is plain or "md5...". */
bool sp_md5_verify(const char *secret, const char *user, const uint8_t salt[4], const char *response);
/* Constant-time comparison of two NUL-terminated strings of possibly different length. */
bool sp_secure_streq(const char *a, const char *b);

#endif
