/*
 * auth_scram.h - SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it,
 * for both sides: shardpool as the server its clients log in to, and as the
 * client of a PostgreSQL server. Channel binding is not offered ("n,,"), since
 * shardpool does not terminate TLS yet; a client that demands it ("p=...") is
 * refused with a clear message.
 */
#ifndef SP_AUTH_SCRAM_H
#define SP_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_SCRAM_KEY_LEN 32
#define SP_SCRAM_MECH "SCRAM-SHA-256"
#define SP_SCRAM_DEFAULT_ITERATIONS 4096 /* PostgreSQL's default */
#define SP_SCRAM_DEFAULT_SALT_LEN 16     /* PostgreSQL's default */
/* Upper bound on the iteration count a server may ask the client side for:
 * PBKDF2 runs on the event loop, so a hostile or misconfigured server must not
 * be able to stall it for minutes (1e6 rounds take about 0.25 s here). */
#define SP_SCRAM_MAX_ITERATIONS 1000000
/* Longest SCRAM message accepted from a peer (real ones are under 200 bytes). */
#define SP_SCRAM_MAX_MSG_LEN 8192
/* Room for sp_scram_secret_format()'s output, NUL included. */
#define SP_SCRAM_SECRET_MAX 256

typedef struct sp_scram_secret {
	int iterations;
	uint8_t salt[64];
	int salt_len;
	uint8_t stored_key[SP_SCRAM_KEY_LEN];
	uint8_t server_key[SP_SCRAM_KEY_LEN];
} sp_scram_secret_t;

/* Parse "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>". */
bool sp_scram_parse_secret(const char *text, sp_scram_secret_t *out);
/* Derive a secret from a plain password (random salt, 4096 iterations, SASLprep
 * applied as far as ASCII goes: non-ASCII passwords are used as raw bytes, as
 * PostgreSQL does when SASLprep fails). */
bool sp_scram_secret_from_password(const char *password, sp_scram_secret_t *out);
/* Same with a given salt (1..64 bytes) and iteration count (>= 1). */
bool sp_scram_secret_from_password_salt(const char *password, const uint8_t *salt, int salt_len,
					int iterations, sp_scram_secret_t *out);
/* Text form PostgreSQL stores in pg_authid.rolpassword; the inverse of
 * sp_scram_parse_secret(). out needs SP_SCRAM_SECRET_MAX bytes. */
bool sp_scram_secret_format(const sp_scram_secret_t *secret, char *out, size_t outlen);
/* A secret for a user that does not exist, so the exchange runs to the end and
 * fails like a wrong password instead of telling the client the user is
 * unknown (PostgreSQL's "mock authentication"). The salt is stable per user
 * for the life of the process; no proof verifies against it. */
void sp_scram_secret_mock(const char *user, sp_scram_secret_t *out);

/* ---- server side (a client logs in to shardpool) ---- */
typedef struct sp_scram_server {
	sp_scram_secret_t secret;
	char client_nonce[128];
	char server_nonce[64];
	char *client_first_bare;  /* malloc'd */
	char *server_first;       /* malloc'd */
	uint8_t client_key[SP_SCRAM_KEY_LEN]; /* recovered from the proof on success */
	bool have_client_key;
	int state; /* 0 init, 1 sent server-first, 2 done (success or failure) */
	char cbind_flag; /* 'n' or 'y' from the GS2 header, checked again in client-final */
} sp_scram_server_t;

/* secret NULL behaves as a mock secret: the exchange can never succeed. */
void sp_scram_server_init(sp_scram_server_t *s, const sp_scram_secret_t *secret);
/* In both functions msg is len bytes, not necessarily NUL-terminated (one
 * trailing NUL is tolerated); after a failure the exchange is over. */
/* Handle client-first-message (the SASLInitialResponse payload). On success
 * returns a malloc'd server-first-message in *out. On failure returns false
 * with a reason in err. */
bool sp_scram_server_first(sp_scram_server_t *s, const char *msg, size_t len, char **out, char *err, size_t errlen);
/* Handle client-final-message; on a valid proof returns true and a malloc'd
 * server-final-message ("v=...") in *out. */
bool sp_scram_server_final(sp_scram_server_t *s, const char *msg, size_t len, char **out, char *err, size_t errlen);
void sp_scram_server_free(sp_scram_server_t *s);

/* ---- client side (shardpool logs in to PostgreSQL) ---- */
typedef struct sp_scram_client {
	char *password;          /* plain password, or NULL when keys are given */
	uint8_t client_key[SP_SCRAM_KEY_LEN];
	uint8_t server_key[SP_SCRAM_KEY_LEN];
	bool have_keys;          /* keys taken from a client's SCRAM login */
	char client_nonce[64];
	char *client_first_bare;
	char *server_first;
	uint8_t expected_server_sig[SP_SCRAM_KEY_LEN];
	int state; /* 0 init, 1 sent client-first, 2 sent client-final, 3 done or failed */
} sp_scram_client_t;

void sp_scram_client_init_password(sp_scram_client_t *c, const char *password);
/* Use ClientKey/ServerKey recovered from a client's own SCRAM login, so shardpool
 * can log in to a server holding the same SCRAM secret without the plain password. */
void sp_scram_client_init_keys(sp_scram_client_t *c, const uint8_t client_key[SP_SCRAM_KEY_LEN],
			       const uint8_t server_key[SP_SCRAM_KEY_LEN]);
/* client-first-message, malloc'd ("n,,n=,r=<nonce>": PostgreSQL takes the user
 * name from the startup packet, so it is left empty); NULL on failure. */
char *sp_scram_client_first(sp_scram_client_t *c);
/* Same with a user name in "n=" (escaped as RFC 5802 says), for servers or
 * tests that want one. */
char *sp_scram_client_first_user(sp_scram_client_t *c, const char *user);
/* From server-first-message, build the client-final-message (malloc'd). With
 * keys given, the server's salt and iterations must match the secret the keys
 * came from (they do if the server holds the same secret). */
bool sp_scram_client_final(sp_scram_client_t *c, const char *server_first, size_t len, char **out, char *err, size_t errlen);
/* Check server-final-message ("v=..."). */
bool sp_scram_client_verify(sp_scram_client_t *c, const char *server_final, size_t len, char *err, size_t errlen);
void sp_scram_client_free(sp_scram_client_t *c);

/* Forget the keys kept for server logins (at exit). */
void sp_scram_key_cache_clear(void);

/* Test hook: the next nonce generated in this thread (client or server side)
 * is this printable string instead of 18 random bytes in base64. One-shot;
 * NULL clears it. Only for reproducing published test vectors. */
void sp_scram_test_set_nonce(const char *nonce);

#endif
