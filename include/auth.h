/*
 * auth.h - authentication on both sides of the proxy: clients logging in to
 * shardpool (trust, md5, scram-sha-256 against auth_file), and shardpool
 * logging in to PostgreSQL servers (trust, cleartext, md5, scram-sha-256).
 */
#ifndef SP_AUTH_H
#define SP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_types.h"

/* Start authenticating a client whose startup packet has been read. */
void sp_auth_client_start(sp_client_t *c);
/* A PasswordMessage / SASL message arrived from a client in SP_CLIENT_AUTH. */
void sp_auth_client_message(sp_client_t *c, const uint8_t *body, size_t len);
/* An AuthenticationXXX request arrived from a server during login. Returns
 * false with err filled if the login cannot proceed. */
bool sp_auth_server_request(sp_server_t *s, const uint8_t *body, size_t len, char *err, size_t errlen);

/* Free the cache of SCRAM secrets derived from plain passwords (at exit). */
void sp_auth_cache_free(void);

#endif
