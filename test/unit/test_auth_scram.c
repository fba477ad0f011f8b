/*
 * test_auth_scram.c - SCRAM-SHA-256 on both sides.
 *
 * Reference values come from outside the code under test:
 *  - RFC 7677 section 3 (user "user", password "pencil"): the messages below
 *    are copied from the RFC.
 *  - RFC_SECRET: the RFC's salt with StoredKey/ServerKey computed with
 *    Python's hashlib.pbkdf2_hmac and hmac at test-writing time.
 *  - PG_SECRET: pg_authid.rolpassword of a role created on PostgreSQL 15 with
 *    SET password_encryption = 'scram-sha-256';
 *    CREATE ROLE bob LOGIN PASSWORD 'correct horse battery staple';
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth_scram.h"
#include "tap.h"

#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define RFC_SECRET                                                                                 \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":"                                                                                        \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define PG_PASSWORD "correct horse battery staple"
#define PG_SECRET                                                                                  \
	"SCRAM-SHA-256$4096:X1VmrmGwsVabnC7Y03ChOA==$zog7WT0WnjgAzYvg6VXItDXRL6TgePDQ9xFf/"        \
	"Guiwzg=:"                                                                                 \
	"tP9Xok3ogmVb7KWaC1y8DwR5/ufsJVqWRlUjakRZQ18="

static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
				     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

static char err[256];

/* Run a whole exchange between a client and a server; true if both accept. */
static bool login(sp_scram_client_t *c, const sp_scram_secret_t *secret, uint8_t *client_key_out)
{
	sp_scram_server_t s;
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	bool ok;

	sp_scram_server_init(&s, secret);
	ok = (m1 = sp_scram_client_first(c)) != NULL &&
	     sp_scram_server_first(&s, m1, strlen(m1), &m2, err, sizeof(err)) &&
	     sp_scram_client_final(c, m2, strlen(m2), &m3, err, sizeof(err)) &&
	     sp_scram_server_final(&s, m3, strlen(m3), &m4, err, sizeof(err)) &&
	     sp_scram_client_verify(c, m4, strlen(m4), err, sizeof(err));
	if (ok && client_key_out != NULL)
		memcpy(client_key_out, s.client_key, SP_SCRAM_KEY_LEN);
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	sp_scram_server_free(&s);
	return ok;
}

/* A server that has seen a valid client-first with nonce "abc"; returns its server nonce. */
static void server_after_first(sp_scram_server_t *s, const sp_scram_secret_t *secret, char flag)
{
	char first[64], *out = NULL;

	snprintf(first, sizeof(first), "%c,,n=,r=abc", flag);
	sp_scram_server_init(s, secret);
	sp_scram_test_set_nonce("SRV");
	if (!sp_scram_server_first(s, first, strlen(first), &out, err, sizeof(err)))
		printf("# setup failed: %s\n", err);
	free(out);
}

static bool server_final_with(const sp_scram_secret_t *secret, char flag, const char *final,
			      size_t len)
{
	sp_scram_server_t s;
	char *out = NULL;
	bool ok;

	server_after_first(&s, secret, flag);
	err[0] = '\0';
	ok = sp_scram_server_final(&s, final, len, &out, err, sizeof(err));
	if (!ok && err[0] == '\0')
		printf("# rejected without a reason\n");
	free(out);
	sp_scram_server_free(&s);
	return ok;
}

static bool server_first_with(const char *msg, size_t len)
{
	sp_scram_server_t s;
	sp_scram_secret_t secret;
	char *out = NULL;
	bool ok;

	sp_scram_secret_from_password_salt("x", rfc_salt, 16, 1, &secret);
	sp_scram_server_init(&s, &secret);
	err[0] = '\0';
	ok = sp_scram_server_first(&s, msg, len, &out, err, sizeof(err));
	if (!ok && err[0] == '\0')
		printf("# rejected without a reason\n");
	free(out);
	sp_scram_server_free(&s);
	return ok;
}

/* Client that sent client-first with nonce "abc" and is handed server_first. */
static bool client_final_with(const char *server_first)
{
	sp_scram_client_t c;
	char *m1, *out = NULL;
	bool ok;

	sp_scram_client_init_password(&c, "pw");
	sp_scram_test_set_nonce("abc");
	m1 = sp_scram_client_first(&c);
	free(m1);
	err[0] = '\0';
	ok = sp_scram_client_final(&c, server_first, strlen(server_first), &out, err, sizeof(err));
	free(out);
	sp_scram_client_free(&c);
	return ok;
}

static bool client_verify_with(const char *server_final)
{
	sp_scram_client_t c;
	char *m1, *m3 = NULL;
	bool ok;

	sp_scram_client_init_password(&c, "pencil");
	sp_scram_test_set_nonce(RFC_CLIENT_NONCE);
	m1 = sp_scram_client_first_user(&c, "user");
	free(m1);
	sp_scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &m3, err,
			      sizeof(err));
	free(m3);
	err[0] = '\0';
	ok = sp_scram_client_verify(&c, server_final, strlen(server_final), err, sizeof(err));
	sp_scram_client_free(&c);
	return ok;
}

static void test_rfc7677(void)
{
	sp_scram_client_t c;
	sp_scram_server_t s;
	sp_scram_secret_t secret;
	char text[SP_SCRAM_SECRET_MAX];
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	uint8_t client_key[SP_SCRAM_KEY_LEN];

	ok(sp_scram_secret_from_password_salt("pencil", rfc_salt, 16, 4096, &secret),
	   "RFC 7677: secret from password and salt");
	ok(sp_scram_secret_format(&secret, text, sizeof(text)), "RFC 7677: format secret");
	is_str(text, RFC_SECRET, "RFC 7677: secret text (StoredKey, ServerKey)");

	/* client side */
	sp_scram_client_init_password(&c, "pencil");
	sp_scram_test_set_nonce(RFC_CLIENT_NONCE);
	m1 = sp_scram_client_first_user(&c, "user");
	is_str(m1, RFC_CLIENT_FIRST, "RFC 7677: client-first-message");
	if (!ok(sp_scram_client_final(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &m3, err,
				      sizeof(err)),
		"RFC 7677: client accepts server-first"))
		printf("#   %s\n", err);
	is_str(m3, RFC_CLIENT_FINAL, "RFC 7677: client-final-message with ClientProof");
	ok(sp_scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err, sizeof(err)),
	   "RFC 7677: client verifies ServerSignature");
	memcpy(client_key, c.client_key, SP_SCRAM_KEY_LEN);
	sp_scram_client_free(&c);
	free(m1);
	free(m3);
	m1 = m3 = NULL;

	/* server side, fed the RFC's client messages */
	sp_scram_server_init(&s, &secret);
	sp_scram_test_set_nonce(RFC_SERVER_NONCE);
	ok(sp_scram_server_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &m2, err,
				 sizeof(err)),
	   "RFC 7677: server accepts client-first");
	is_str(m2, RFC_SERVER_FIRST, "RFC 7677: server-first-message");
	ok(sp_scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &m4, err,
				 sizeof(err)),
	   "RFC 7677: server accepts ClientProof");
	is_str(m4, RFC_SERVER_FINAL, "RFC 7677: server-final-message with ServerSignature");
	ok(s.have_client_key && memcmp(s.client_key, client_key, SP_SCRAM_KEY_LEN) == 0,
	   "RFC 7677: server recovered the client's ClientKey");
	free(m2);
	free(m4);
	m2 = m4 = NULL;
	ok(!sp_scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &m4, err,
				  sizeof(err)) &&
	       m4 == NULL,
	   "replayed client-final after success refused");
	sp_scram_server_free(&s);

	/* the RFC's proof against a server whose password differs */
	sp_scram_secret_from_password_salt("pencil2", rfc_salt, 16, 4096, &secret);
	sp_scram_server_init(&s, &secret);
	sp_scram_test_set_nonce(RFC_SERVER_NONCE);
	sp_scram_server_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &m2, err,
			      sizeof(err));
	ok(!sp_scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &m4, err,
				  sizeof(err)) &&
	       m4 == NULL && !s.have_client_key,
	   "RFC 7677 proof refused by a server with another password");
	ok(strstr(err, "wrong password") != NULL, "wrong password reason: %s", err);
	free(m2);
	sp_scram_server_free(&s);
}

static void test_secrets(void)
{
	sp_scram_secret_t a, b;
	char text[SP_SCRAM_SECRET_MAX];
	sp_scram_client_t c;
	static const char *bad[] = {
	    "",
	    "SCRAM-SHA-256",
	    "SCRAM-SHA-256$",
	    "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "md54d45974e13472b5a0be3533de4666414",
	    /* iterations: zero, sign, junk, overflow, missing */
	    "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$40x:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuL"
	    "mtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    /* salt: empty, unpadded, bad character */
	    "SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7s*EsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    /* keys: short, long, missing, whitespace, trailing junk, '=' inside */
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT"
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qYA"
	    "AAAA:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= ",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=$x",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtb="
	    "T4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    /* salt longer than 64 bytes */
	    "SCRAM-SHA-256$4096:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAA$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZq"
	    "QxSrmfPwDl2dU=",
	};
	size_t i;
	int refused = 0;

	ok(sp_scram_parse_secret(RFC_SECRET, &a), "parse RFC secret");
	is_int(a.iterations, 4096, "parsed iterations");
	is_int(a.salt_len, 16, "parsed salt length");
	ok(memcmp(a.salt, rfc_salt, 16) == 0, "parsed salt bytes");
	sp_scram_secret_from_password_salt("pencil", rfc_salt, 16, 4096, &b);
	ok(memcmp(a.stored_key, b.stored_key, SP_SCRAM_KEY_LEN) == 0 &&
	       memcmp(a.server_key, b.server_key, SP_SCRAM_KEY_LEN) == 0,
	   "parsed keys equal derived keys");

	/* a secret written by PostgreSQL 15 itself */
	ok(sp_scram_parse_secret(PG_SECRET, &a), "parse PostgreSQL 15 secret");
	ok(sp_scram_secret_from_password_salt(PG_PASSWORD, a.salt, a.salt_len, a.iterations, &b) &&
	       sp_scram_secret_format(&b, text, sizeof(text)),
	   "derive with PostgreSQL's salt");
	is_str(text, PG_SECRET, "same secret as PostgreSQL derives");
	sp_scram_client_init_password(&c, PG_PASSWORD);
	if (!ok(login(&c, &a, NULL), "password login against PostgreSQL's secret"))
		printf("#   %s\n", err);
	sp_scram_client_free(&c);
	sp_scram_client_init_password(&c, "correct horse battery stapler");
	ok(!login(&c, &a, NULL), "wrong password refused against PostgreSQL's secret");
	sp_scram_client_free(&c);

	/* random secret, formatted and parsed back */
	ok(sp_scram_secret_from_password("s3cret", &a), "secret from password");
	is_int(a.iterations, 4096, "default iterations");
	is_int(a.salt_len, 16, "default salt length");
	ok(sp_scram_secret_format(&a, text, sizeof(text)), "format random secret");
	ok(strncmp(text, "SCRAM-SHA-256$4096:", 19) == 0, "text form prefix: %s", text);
	ok(sp_scram_parse_secret(text, &b) && memcmp(&a, &b, sizeof(a)) == 0,
	   "format/parse round trip");
	ok(!sp_scram_secret_format(&a, text, 20), "format refuses a short buffer");
	sp_scram_secret_from_password("s3cret", &b);
	ok(memcmp(a.salt, b.salt, 16) != 0, "salts are random");

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&b, 0x5a, sizeof(b));
		if (!sp_scram_parse_secret(bad[i], &b) && b.iterations == 0x5a5a5a5a)
			refused++;
		else
			printf("# accepted bad secret %zu: %s\n", i, bad[i]);
	}
	is_int(refused, sizeof(bad) / sizeof(bad[0]),
	       "malformed secrets refused, output untouched");
	ok(!sp_scram_parse_secret(NULL, &b), "NULL secret refused");
	ok(!sp_scram_secret_from_password_salt("x", rfc_salt, 0, 4096, &b), "empty salt refused");
	ok(!sp_scram_secret_from_password_salt("x", rfc_salt, 16, 0, &b), "0 iterations refused");
}

static void test_round_trips(void)
{
	sp_scram_secret_t secret, parsed, other;
	sp_scram_client_t c;
	char text[SP_SCRAM_SECRET_MAX];
	uint8_t ck[SP_SCRAM_KEY_LEN], ck2[SP_SCRAM_KEY_LEN];
	char *m1;

	sp_scram_secret_from_password("hunter2", &secret);
	sp_scram_client_init_password(&c, "hunter2");
	if (!ok(login(&c, &secret, ck), "round trip with password"))
		printf("#   %s\n", err);
	sp_scram_client_free(&c);

	sp_scram_secret_format(&secret, text, sizeof(text));
	sp_scram_parse_secret(text, &parsed);
	sp_scram_client_init_password(&c, "hunter2");
	ok(login(&c, &parsed, NULL), "round trip against a parsed secret text");
	sp_scram_client_free(&c);

	sp_scram_client_init_password(&c, "hunter3");
	ok(!login(&c, &parsed, NULL), "wrong password fails");
	ok(strstr(err, "wrong password") != NULL, "reason: %s", err);
	sp_scram_client_free(&c);

	sp_scram_client_init_password(&c, "");
	ok(!login(&c, &parsed, NULL), "empty password fails");
	sp_scram_client_free(&c);

	/* ClientKey passthrough: keys recovered by the server log in elsewhere. */
	sp_scram_client_init_keys(&c, ck, secret.server_key);
	ok(login(&c, &parsed, ck2), "keys-only client logs in to a server with the same secret");
	ok(memcmp(ck, ck2, SP_SCRAM_KEY_LEN) == 0, "the second server recovers the same ClientKey");
	sp_scram_client_free(&c);

	/* Same password, new salt: the ClientKey no longer fits. */
	sp_scram_secret_from_password("hunter2", &other);
	sp_scram_client_init_keys(&c, ck, secret.server_key);
	ok(!login(&c, &other, NULL), "keys-only client refused by a server with another salt");
	sp_scram_client_free(&c);

	/* Wrong ServerKey: the server's proof check passes, the client's signature check fails. */
	sp_scram_client_init_keys(&c, ck, other.server_key);
	ok(!login(&c, &secret, NULL), "client with wrong ServerKey rejects server signature");
	ok(strstr(err, "server signature") != NULL, "reason: %s", err);
	sp_scram_client_free(&c);

	/* Mock secrets for unknown users: stable salt, never verifies. */
	sp_scram_secret_mock("nobody", &secret);
	sp_scram_secret_mock("nobody", &other);
	ok(secret.salt_len == 16 && memcmp(secret.salt, other.salt, 16) == 0,
	   "mock salt is stable per user");
	sp_scram_secret_mock("somebody", &other);
	ok(memcmp(secret.salt, other.salt, 16) != 0, "mock salt differs between users");
	sp_scram_client_init_password(&c, "");
	ok(!login(&c, &secret, NULL), "login against a mock secret fails");
	sp_scram_client_free(&c);
	sp_scram_client_init_password(&c, "x");
	ok(!login(&c, NULL, NULL), "login against a NULL secret fails");
	sp_scram_client_free(&c);

	/* Nonces: 18 random bytes in base64, distinct. */
	sp_scram_client_init_password(&c, "x");
	m1 = sp_scram_client_first(&c);
	ok(m1 != NULL && strncmp(m1, "n,,n=,r=", 8) == 0 && strlen(m1) == 8 + 24,
	   "client-first shape: %s", m1);
	ok(strlen(c.client_nonce) == 24 &&
	       strspn(c.client_nonce, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
				      "tuvwxyz0123456789+/") == 24,
	   "nonce is 24 base64 characters");
	snprintf(text, sizeof(text), "%s", c.client_nonce);
	ok(sp_scram_client_first(&c) == NULL, "second client-first refused");
	free(m1);
	sp_scram_client_free(&c);
	sp_scram_client_init_password(&c, "x");
	m1 = sp_scram_client_first(&c);
	ok(strcmp(text, c.client_nonce) != 0, "nonces differ between exchanges");
	free(m1);
	sp_scram_client_free(&c);

	/* user name escaping in client-first */
	sp_scram_client_init_password(&c, "x");
	sp_scram_test_set_nonce("N");
	m1 = sp_scram_client_first_user(&c, "a,b=c");
	is_str(m1, "n,,n=a=2Cb=3Dc,r=N", "user name escaped");
	free(m1);
	sp_scram_client_free(&c);
}

static void test_server_first_hostile(void)
{
	sp_scram_server_t s;
	sp_scram_secret_t secret;
	char *out = NULL, *big;
	char nonce[200];
	size_t i;
	static const char *bad[] = {
	    "",
	    "n",
	    "n,",
	    "n,,",
	    "x,,n=,r=abc",
	    "N,,n=,r=abc",
	    "n,n=,r=abc",
	    "n,,,n=,r=abc",
	    "n,a=user,n=,r=abc",
	    "n,,m=ext,n=,r=abc",
	    "n,,r=abc",
	    "n,,n=",
	    "n,,n=,",
	    "n,,n=,r=",
	    "n,,n=,r",
	    "n,,n=,x=abc",
	    "n,,n=,r=abc,",
	    "n,,n=,r=abc,,",
	    "n,,n=,r=abc,b",
	    "n,,n=,r=abc,1=x",
	    "n,,n=,r=ab c",
	    "n,,n=,r=ab\tc",
	    "n,,n=,r=\xc3\xa9t\xc3\xa9",
	    "n,,n=r=abc",
	    "n=,r=abc",
	};
	int refused = 0;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!server_first_with(bad[i], strlen(bad[i])))
			refused++;
		else
			printf("# accepted bad client-first %zu: %s\n", i, bad[i]);
	}
	is_int(refused, sizeof(bad) / sizeof(bad[0]), "malformed client-first messages refused");

	ok(!server_first_with("p=tls-server-end-point,,n=,r=abc", 32),
	   "channel binding required by the client refused");
	ok(strstr(err, "channel binding") != NULL && strstr(err, "not supported") != NULL,
	   "clear reason: %s", err);
	ok(!server_first_with("n,,m=foo,n=,r=abc", 17) && strstr(err, "extension") != NULL,
	   "mandatory extension refused: %s", err);
	ok(!server_first_with("n,a=bob,n=,r=abc", 16) && strstr(err, "authorization") != NULL,
	   "authzid refused: %s", err);
	ok(!server_first_with("n,,n=,r=a\0c", 11), "embedded NUL refused");
	ok(server_first_with("n,,n=,r=abc", 12), "one trailing NUL tolerated");
	ok(!server_first_with(NULL, 0), "NULL message refused");

	memset(nonce, 'x', sizeof(nonce));
	memcpy(nonce, "n,,n=,r=", 8);
	nonce[8 + 127] = '\0';
	ok(server_first_with(nonce, strlen(nonce)), "127-character nonce accepted");
	nonce[8 + 127] = 'x';
	nonce[8 + 128] = '\0';
	ok(!server_first_with(nonce, strlen(nonce)), "128-character nonce refused");

	big = malloc(SP_SCRAM_MAX_MSG_LEN + 100);
	memset(big, 'a', SP_SCRAM_MAX_MSG_LEN + 100);
	memcpy(big, "n,,n=", 5);
	memcpy(big + SP_SCRAM_MAX_MSG_LEN + 90, ",r=abcdef", 9);
	big[SP_SCRAM_MAX_MSG_LEN + 99] = '\0';
	ok(!server_first_with(big, SP_SCRAM_MAX_MSG_LEN + 99) && strstr(err, "too long"),
	   "overlong client-first refused: %s", err);
	free(big);

	/* accepted forms */
	ok(server_first_with("n,,n=,r=abc", 11), "libpq's form accepted");
	ok(server_first_with("n,,n=someone,r=abc", 18), "user name present and ignored");
	ok(server_first_with("y,,n=,r=abc", 11), "'y' flag accepted");
	ok(server_first_with("n,,n=,r=abc,x=ext,y=", 20), "optional extensions skipped");

	/* server-first shape, and out-of-order calls */
	sp_scram_secret_from_password_salt("x", rfc_salt, 16, 4096, &secret);
	sp_scram_server_init(&s, &secret);
	ok(sp_scram_server_first(&s, "n,,n=,r=abc", 11, &out, err, sizeof(err)),
	   "server-first built");
	ok(out != NULL && strncmp(out, "r=abc", 5) == 0 && strlen(s.server_nonce) == 24 &&
	       strstr(out, ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096") != NULL,
	   "server-first shape: %s", out ? out : "(null)");
	free(out);
	out = NULL;
	ok(!sp_scram_server_first(&s, "n,,n=,r=abc", 11, &out, err, sizeof(err)) && out == NULL,
	   "second client-first refused");
	sp_scram_server_free(&s);
	sp_scram_server_init(&s, &secret);
	ok(!sp_scram_server_final(&s, "c=biws,r=abc,p=AAAA", 19, &out, err, sizeof(err)) &&
	       out == NULL,
	   "client-final before client-first refused");
	sp_scram_server_free(&s);
}

static void test_server_final_hostile(void)
{
	sp_scram_secret_t secret;
	sp_scram_client_t c;
	char good[256], msg[512], proof[64], *m1, *m3 = NULL, *p;
	const char *srv_first = "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
	static const char *bad[] = {
	    "",
	    "c=biws",
	    "c=biws,",
	    "c=biws,r=abcSRV",
	    "c=biws,r=abcSRV,",
	    "c=biws,r=abcSRV,p=",
	    "c=biws,r=abcSRV,p=!!!!",
	    "c=biws,r=abcSRV,p=AAAA",
	    "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
	    "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "r=abcSRV,c=biws,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=eSws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=abcSRV,p="
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,r=abc,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,r=abcSRVX,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,r=xbcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,r=,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "c=biws,r=abcSRV,x",
	    "c=biws,r=abcSRV,,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    /* a well-formed but wrong proof */
	    "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	size_t i;
	int refused = 0;

	sp_scram_secret_from_password_salt("pencil", rfc_salt, 16, 4096, &secret);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!server_final_with(&secret, 'n', bad[i], strlen(bad[i])))
			refused++;
		else
			printf("# accepted bad client-final %zu: %s\n", i, bad[i]);
	}
	is_int(refused, sizeof(bad) / sizeof(bad[0]), "malformed client-final messages refused");

	/* A correct client-final for nonce abc+SRV, built by our client. */
	sp_scram_client_init_password(&c, "pencil");
	sp_scram_test_set_nonce("abc");
	m1 = sp_scram_client_first(&c);
	sp_scram_client_final(&c, srv_first, strlen(srv_first), &m3, err, sizeof(err));
	snprintf(good, sizeof(good), "%s", m3 ? m3 : "");
	free(m1);
	free(m3);
	sp_scram_client_free(&c);
	ok(server_final_with(&secret, 'n', good, strlen(good)), "valid client-final accepted: %s",
	   good);
	ok(!server_final_with(&secret, 'y', good, strlen(good)) && strstr(err, "channel-binding"),
	   "c=biws after a 'y' header refused: %s", err);

	p = strstr(good, ",p=");
	snprintf(proof, sizeof(proof), "%s", p ? p + 3 : "");
	snprintf(msg, sizeof(msg), "%s,x=1", good);
	ok(!server_final_with(&secret, 'n', msg, strlen(msg)) && strstr(err, "garbage"),
	   "attribute after the proof refused: %s", err);
	snprintf(msg, sizeof(msg), "%.*s", (int)strlen(good) - 1, good);
	ok(!server_final_with(&secret, 'n', msg, strlen(msg)), "truncated proof refused");
	snprintf(msg, sizeof(msg), "%s", good);
	msg[strlen(msg) - 3] ^= 1;
	ok(!server_final_with(&secret, 'n', msg, strlen(msg)), "proof with a flipped bit refused");
	snprintf(msg, sizeof(msg), "c=biws,r=abcSRV,x=ext,p=%s", proof);
	ok(!server_final_with(&secret, 'n', msg, strlen(msg)) && strstr(err, "wrong password"),
	   "extension not covered by the proof fails verification: %s", err);
	ok(!server_final_with(&secret, 'n', good, strlen(good) - 5), "length cut refused");
}

/*
 * "y,," exchange. Our client always sends "n,,", so the client-final with
 * "c=eSws" is signed here with OpenSSL directly (ClientKey from the RFC run).
 */
static void test_y_flag(void)
{
	sp_scram_secret_t secret;
	sp_scram_server_t s;
	sp_scram_client_t c;
	char *m1, *m3 = NULL, *m4 = NULL, authmsg[512], final[256], b64[64];
	const char *srv_first = "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
	uint8_t ck[SP_SCRAM_KEY_LEN], stored[SP_SCRAM_KEY_LEN], sig[SP_SCRAM_KEY_LEN];
	unsigned int n = 0;
	int i;

	sp_scram_secret_from_password_salt("pencil", rfc_salt, 16, 4096, &secret);
	sp_scram_client_init_password(&c, "pencil");
	sp_scram_test_set_nonce("abc");
	m1 = sp_scram_client_first(&c);
	sp_scram_client_final(&c, srv_first, strlen(srv_first), &m3, err, sizeof(err));
	memcpy(ck, c.client_key, sizeof(ck));
	free(m1);
	free(m3);
	sp_scram_client_free(&c);

	server_after_first(&s, &secret, 'y');
	snprintf(authmsg, sizeof(authmsg), "n=,r=abc,%s,c=eSws,r=abcSRV", s.server_first);
	EVP_Digest(ck, sizeof(ck), stored, &n, EVP_sha256(), NULL);
	HMAC(EVP_sha256(), stored, sizeof(stored), (const unsigned char *)authmsg, strlen(authmsg),
	     sig, &n);
	for (i = 0; i < SP_SCRAM_KEY_LEN; i++)
		sig[i] ^= ck[i];
	EVP_EncodeBlock((unsigned char *)b64, sig, sizeof(sig));
	snprintf(final, sizeof(final), "c=eSws,r=abcSRV,p=%s", b64);
	if (!ok(sp_scram_server_final(&s, final, strlen(final), &m4, err, sizeof(err)),
		"'y,,' exchange with c=eSws accepted"))
		printf("#   %s\n", err);
	ok(s.have_client_key && memcmp(s.client_key, ck, sizeof(ck)) == 0,
	   "'y,,' exchange recovers ClientKey");
	free(m4);
	m4 = NULL;
	sp_scram_server_free(&s);
	ok(!server_final_with(&secret, 'n', final, strlen(final)) && strstr(err, "channel-binding"),
	   "c=eSws after an 'n' header refused: %s", err);
}

static void test_client_hostile(void)
{
	static const char *bad_first[] = {
	    "",
	    "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=xbcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=ab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=abc SRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "m=x,r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=abcSRV,i=4096",
	    "r=abcSRV,s=,i=4096",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096",
	    "r=abcSRV,s=W22Z aJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=+4096",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,",
	    "r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=y",
	    "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=abcSRV,i=4096",
	    "e=other-error",
	};
	static const char *bad_final[] = {
	    "",
	    "v=",
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=",
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=y",
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=A",
	    "V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	    "e=invalid-proof",
	};
	sp_scram_client_t c;
	char *out = NULL, *m1;
	size_t i;
	int refused = 0;

	for (i = 0; i < sizeof(bad_first) / sizeof(bad_first[0]); i++) {
		if (!client_final_with(bad_first[i]))
			refused++;
		else
			printf("# client accepted bad server-first %zu: %s\n", i, bad_first[i]);
	}
	is_int(refused, sizeof(bad_first) / sizeof(bad_first[0]),
	       "malformed server-first messages refused");
	ok(!client_final_with("r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001") &&
	       strstr(err, "iteration"),
	   "iteration bound reason: %s", err);
	ok(!client_final_with("r=xbcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1") && strstr(err, "nonce"),
	   "nonce mismatch reason: %s", err);
	ok(client_final_with("r=abcSRV,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1"), "valid server-first");

	refused = 0;
	for (i = 0; i < sizeof(bad_final) / sizeof(bad_final[0]); i++) {
		if (!client_verify_with(bad_final[i]))
			refused++;
		else
			printf("# client accepted bad server-final %zu: %s\n", i, bad_final[i]);
	}
	is_int(refused, sizeof(bad_final) / sizeof(bad_final[0]),
	       "malformed or wrong server-final messages refused");
	ok(!client_verify_with("e=invalid-proof") && strstr(err, "invalid-proof"),
	   "server error passed on: %s", err);
	ok(client_verify_with(RFC_SERVER_FINAL), "the right signature still verifies");

	sp_scram_client_init_password(&c, "x");
	ok(!sp_scram_client_final(&c, "r=a,s=AAAA,i=1", 14, &out, err, sizeof(err)) && out == NULL,
	   "client-final before client-first refused");
	sp_scram_client_free(&c);
	sp_scram_client_init_password(&c, "x");
	m1 = sp_scram_client_first(&c);
	ok(!sp_scram_client_verify(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err,
				   sizeof(err)),
	   "server-final before client-final refused");
	free(m1);
	sp_scram_client_free(&c);
}

/* The client-final-message of the RFC 7677 exchange for password pw, and its time in seconds. */
static char *rfc_client_final(const char *pw, const char *server_first, double *secs)
{
	sp_scram_client_t c;
	struct timespec t0, t1;
	char *m1, *m3 = NULL;

	sp_scram_client_init_password(&c, pw);
	sp_scram_test_set_nonce(RFC_CLIENT_NONCE);
	m1 = sp_scram_client_first_user(&c, "user");
	free(m1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!sp_scram_client_final(&c, server_first, strlen(server_first), &m3, err, sizeof(err)))
		m3 = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sp_scram_client_free(&c);
	*secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return m3;
}

/*
 * Server logins keep the keys of a password, salt and iteration count: the second
 * login of a pool must give the same proof without the key derivation, and another
 * password, salt or count must not reuse them.
 */
static void test_server_key_cache(void)
{
	const char *slow_first = "r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=400000";
	const char *other_salt = "r=" RFC_NONCE ",s=AAAAaJ0SNY7soEsUEjb6gQ==,i=4096";
	double first, again, t;
	char *a, *b;

	sp_scram_key_cache_clear();
	a = rfc_client_final("pencil", RFC_SERVER_FIRST, &t);
	b = rfc_client_final("pencil", RFC_SERVER_FIRST, &t);
	is_str(a ? a : "(failed)", RFC_CLIENT_FINAL, "key cache: first login gives RFC 7677's proof");
	is_str(b ? b : "(failed)", RFC_CLIENT_FINAL, "key cache: a second login, from the cache, too");
	free(a);
	free(b);
	a = rfc_client_final("pencil2", RFC_SERVER_FIRST, &t);
	ok(a && strcmp(a, RFC_CLIENT_FINAL) != 0, "key cache: another password, another proof");
	free(a);
	a = rfc_client_final("pencil", other_salt, &t);
	ok(a && strcmp(a, RFC_CLIENT_FINAL) != 0, "key cache: another salt, another proof");
	free(a);
	a = rfc_client_final("pencil", slow_first, &first);
	b = rfc_client_final("pencil", slow_first, &again);
	ok(a && b && strcmp(a, b) == 0 && strcmp(a, RFC_CLIENT_FINAL) != 0,
	   "key cache: 400,000 iterations: the same proof twice, not the 4,096-iteration one");
	ok(again * 20 < first, "key cache: the second login skips the derivation (%.1f ms, then %.3f ms)",
	   first * 1e3, again * 1e3);
	free(a);
	free(b);
	sp_scram_key_cache_clear();
}

int main(void)
{
	test_rfc7677();
	test_secrets();
	test_round_trips();
	test_server_first_hostile();
	test_server_final_hostile();
	test_y_flag();
	test_client_hostile();
	test_server_key_cache();
	return done_testing();
}
