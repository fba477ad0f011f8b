/*
 * auth_scram.c - SCRAM-SHA-256 (RFC 5802, RFC 7677) the way PostgreSQL speaks
 * it, on both sides: shardpool as the server a client logs in to, and as the
 * client of a PostgreSQL server.
 *
 * Owns: the secret text form ("SCRAM-SHA-256$iter:salt$StoredKey:ServerKey"),
 * the message parsers and builders, nonces, the key arithmetic, and the
 * recovery of a client's ClientKey so shardpool can log in to a server that
 * holds the same secret without ever knowing the password.
 *
 * Invariants: every peer message is length-checked, copied into a private
 * NUL-terminated buffer and parsed with a cursor that never passes the NUL;
 * base64 is decoded strictly (alphabet, padding, length) into buffers of a
 * known size; secret comparisons are constant-time; an exchange that failed
 * once cannot be continued; keys and passwords are wiped when freed.
 *
 * Deliberately does not: offer channel binding (SCRAM-SHA-256-PLUS; shardpool
 * does not terminate TLS yet), support authorization identities or mandatory
 * extensions, do full SASLprep (see prepare_password()), or do any I/O: the
 * caller frames these payloads in SASL messages.
 */
#include "auth_scram.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define RAW_NONCE_LEN 18 /* what PostgreSQL and libpq use */
#define SECRET_PREFIX "SCRAM-SHA-256$"
#define MAX_SERVER_SALT 512 /* decoded; real servers send 16 bytes */

static _Thread_local char test_nonce[128];
static _Thread_local bool have_test_nonce;

static bool fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* ---- base64, strict ---- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* out must hold 4 * ceil(len / 3) + 1 bytes. */
static size_t b64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_chars[v >> 18 & 63];
		out[o++] = b64_chars[v >> 12 & 63];
		out[o++] = b64_chars[v >> 6 & 63];
		out[o++] = b64_chars[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64_chars[v >> 18 & 63];
		out[o++] = b64_chars[v >> 12 & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_chars[v >> 18 & 63];
		out[o++] = b64_chars[v >> 12 & 63];
		out[o++] = b64_chars[v >> 6 & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode len characters into at most cap bytes. Like PostgreSQL's decoder
 * the input must be padded to a multiple of 4 and contain no whitespace;
 * '=' may only be the last one or two characters. Returns the decoded length,
 * or -1 when the input is invalid or would not fit.
 */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	size_t i, j, o = 0, pad = 0;
	int v[4];
	uint32_t w;

	if (len % 4 != 0)
		return -1;
	if (len > 0 && in[len - 1] == '=')
		pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
	if (len / 4 * 3 - pad > cap)
		return -1;
	for (i = 0; i < len; i += 4) {
		for (j = 0; j < 4; j++) {
			if (i + 4 == len && j >= 4 - pad)
				v[j] = 0;
			else if ((v[j] = b64_value((unsigned char)in[i + j])) < 0)
				return -1;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		    (uint32_t)v[3];
		out[o++] = (uint8_t)(w >> 16);
		if (i + 4 < len || pad < 2)
			out[o++] = (uint8_t)(w >> 8);
		if (i + 4 < len || pad < 1)
			out[o++] = (uint8_t)w;
	}
	return (long)o;
}

/* ---- primitives ---- */

static bool sha256(const void *in, size_t len, uint8_t out[SP_SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	return EVP_Digest(in, len, out, &n, EVP_sha256(), NULL) == 1 && n == SP_SCRAM_KEY_LEN;
}

static bool hmac256(const uint8_t *key, size_t klen, const void *msg, size_t mlen,
		    uint8_t out[SP_SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &n) != NULL &&
	       n == SP_SCRAM_KEY_LEN;
}

/*
 * SASLprep (RFC 4013), as far as this file goes. PostgreSQL (pg_saslprep)
 * uses an all-ASCII password unchanged, and so do we. For non-ASCII input
 * PostgreSQL normalizes to NFKC, maps some characters to space or to nothing
 * and refuses prohibited ones, falling back to the raw bytes when the input
 * is not valid UTF-8 or is refused. We always use the raw bytes: identical
 * for the common case of a password already in NFKC with no mapped
 * characters, but a password written with combining sequences, compatibility
 * characters, non-ASCII spaces or soft hyphens will derive different keys
 * than PostgreSQL does. Full SASLprep needs Unicode tables we do not carry.
 */
static const char *prepare_password(const char *password)
{
	return password;
}

static bool keys_from_password(const char *password, const uint8_t *salt, int salt_len,
			       int iterations, uint8_t client_key[SP_SCRAM_KEY_LEN],
			       uint8_t server_key[SP_SCRAM_KEY_LEN])
{
	const char *pw = prepare_password(password);
	size_t pwlen = strlen(pw);
	uint8_t salted[SP_SCRAM_KEY_LEN];
	bool ok;

	if (pwlen > INT_MAX || salt_len < 1 || iterations < 1)
		return false;
	ok = PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, salt_len, iterations, EVP_sha256(),
			       SP_SCRAM_KEY_LEN, salted) == 1 &&
	     hmac256(salted, sizeof(salted), "Client Key", 10, client_key) &&
	     hmac256(salted, sizeof(salted), "Server Key", 10, server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	return ok;
}

/*
 * Keys for server logins. A server answers a role's logins with the same salt and
 * iteration count, so the keys of a password are derived once and kept: without this,
 * every server connection a pool opens (and reopens after server_lifetime) ran 4096
 * PBKDF2 iterations, about a millisecond in which the event loop served no one. Keyed
 * by password, salt and iteration count; the process holds the passwords anyway.
 */
#define KEY_CACHE 16
#define KEY_CACHE_SALT 64
static struct key_cache_ent {
	char *password; /* NULL: empty */
	uint8_t salt[KEY_CACHE_SALT];
	int salt_len, iterations;
	uint8_t client_key[SP_SCRAM_KEY_LEN], server_key[SP_SCRAM_KEY_LEN];
} key_cache[KEY_CACHE];
static unsigned key_cache_next;
static pthread_mutex_t key_cache_mu = PTHREAD_MUTEX_INITIALIZER;

static bool cached_keys(const char *password, const uint8_t *salt, int salt_len,
			int iterations, uint8_t client_key[SP_SCRAM_KEY_LEN],
			uint8_t server_key[SP_SCRAM_KEY_LEN])
{
	bool found = false;

	if (salt_len < 1 || salt_len > KEY_CACHE_SALT)
		return keys_from_password(password, salt, salt_len, iterations, client_key,
					  server_key);
	pthread_mutex_lock(&key_cache_mu);
	for (int i = 0; i < KEY_CACHE && !found; i++) {
		const struct key_cache_ent *e = &key_cache[i];
		if (e->password && e->salt_len == salt_len && e->iterations == iterations &&
		    memcmp(e->salt, salt, (size_t)salt_len) == 0 && strcmp(e->password, password) == 0) {
			memcpy(client_key, e->client_key, SP_SCRAM_KEY_LEN);
			memcpy(server_key, e->server_key, SP_SCRAM_KEY_LEN);
			found = true;
		}
	}
	pthread_mutex_unlock(&key_cache_mu);
	if (found)
		return true;
	if (!keys_from_password(password, salt, salt_len, iterations, client_key, server_key))
		return false;
	char *copy = strdup(password);
	if (!copy)
		return true; /* derived, just not kept */
	pthread_mutex_lock(&key_cache_mu);
	struct key_cache_ent *e = &key_cache[key_cache_next++ % KEY_CACHE];
	if (e->password) {
		OPENSSL_cleanse(e->password, strlen(e->password));
		free(e->password);
	}
	e->password = copy;
	memcpy(e->salt, salt, (size_t)salt_len);
	e->salt_len = salt_len;
	e->iterations = iterations;
	memcpy(e->client_key, client_key, SP_SCRAM_KEY_LEN);
	memcpy(e->server_key, server_key, SP_SCRAM_KEY_LEN);
	pthread_mutex_unlock(&key_cache_mu);
	return true;
}

void sp_scram_key_cache_clear(void)
{
	pthread_mutex_lock(&key_cache_mu);
	for (int i = 0; i < KEY_CACHE; i++) {
		struct key_cache_ent *e = &key_cache[i];
		if (e->password) {
			OPENSSL_cleanse(e->password, strlen(e->password));
			free(e->password);
		}
		OPENSSL_cleanse(e, sizeof(*e));
	}
	pthread_mutex_unlock(&key_cache_mu);
}

/* Printable as RFC 5802 defines it for nonces: %x21-2B / %x2D-7E. */
static bool is_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* out must hold at least RAW_NONCE_LEN / 3 * 4 + 1 bytes (25). */
static bool make_nonce(char *out, size_t outlen)
{
	uint8_t raw[RAW_NONCE_LEN];

	if (have_test_nonce) {
		have_test_nonce = false;
		size_t n = strlen(test_nonce);
		if (n >= outlen)
			return false;
		memcpy(out, test_nonce, n + 1);
		return true;
	}
	if (outlen < RAW_NONCE_LEN / 3 * 4 + 1 || RAND_bytes(raw, sizeof(raw)) != 1)
		return false;
	b64_encode(raw, sizeof(raw), out);
	return true;
}

void sp_scram_test_set_nonce(const char *nonce)
{
	have_test_nonce = false;
	size_t n = nonce ? strlen(nonce) : 0;
	if (nonce != NULL && n < sizeof(test_nonce) && is_printable(nonce, n)) {
		memcpy(test_nonce, nonce, n + 1);
		have_test_nonce = true;
	}
}

/* ---- message parsing ---- */

/*
 * Copy a peer message into a NUL-terminated buffer, refusing empty, overlong
 * and NUL-containing input (one trailing NUL is forgiven, for callers that
 * pass a C string's size).
 */
static char *copy_msg(const char *msg, size_t len, const char *what, char *err, size_t errlen)
{
	char *buf;

	if (msg != NULL && len > 0 && msg[len - 1] == '\0')
		len--;
	if (msg == NULL || len == 0) {
		fail(err, errlen, "malformed SCRAM message: empty %s", what);
		return NULL;
	}
	if (len > SP_SCRAM_MAX_MSG_LEN) {
		fail(err, errlen, "malformed SCRAM message: %s is too long (%zu bytes)", what, len);
		return NULL;
	}
	if (memchr(msg, '\0', len) != NULL) {
		fail(err, errlen, "malformed SCRAM message: %s contains a NUL byte", what);
		return NULL;
	}
	buf = malloc(len + 1);
	if (buf == NULL) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(buf, msg, len);
	buf[len] = '\0';
	return buf;
}

/*
 * Read "<attr>=<value>" at *p. The value runs to the next ',' or the end;
 * a ',' is consumed and must be followed by another attribute. With want
 * non-zero the attribute letter must be want; otherwise any ASCII letter is
 * taken and stored in *attr. Returns false, leaving *p alone, on mismatch.
 */
static bool read_attr(const char **p, char want, char *attr, const char **val, size_t *vlen)
{
	const char *s = *p, *end;
	char a = s[0];

	if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || (want && a != want) ||
	    s[1] != '=')
		return false;
	end = strchr(s + 2, ',');
	if (end == NULL)
		end = s + 2 + strlen(s + 2);
	*val = s + 2;
	*vlen = (size_t)(end - (s + 2));
	if (attr != NULL)
		*attr = a;
	if (*end == ',') {
		if (end[1] == '\0')
			return false;
		end++;
	}
	*p = end;
	return true;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* Parse a run of decimal digits (no sign, no spaces) as an int in 1..max. */
static bool parse_count(const char *s, size_t len, long max, int *out)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 10)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > max)
		return false;
	*out = (int)v;
	return true;
}

/* ---- secrets ---- */

bool sp_scram_secret_from_password_salt(const char *password, const uint8_t *salt, int salt_len,
					int iterations, sp_scram_secret_t *out)
{
	sp_scram_secret_t s;
	uint8_t client_key[SP_SCRAM_KEY_LEN];
	bool ok;

	if (password == NULL || salt == NULL || salt_len < 1 || salt_len > (int)sizeof(s.salt) ||
	    iterations < 1)
		return false;
	memset(&s, 0, sizeof(s));
	s.iterations = iterations;
	s.salt_len = salt_len;
	memcpy(s.salt, salt, (size_t)salt_len);
	ok = keys_from_password(password, salt, salt_len, iterations, client_key, s.server_key) &&
	     sha256(client_key, sizeof(client_key), s.stored_key);
	if (ok)
		*out = s;
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s, sizeof(s));
	return ok;
}

bool sp_scram_secret_from_password(const char *password, sp_scram_secret_t *out)
{
	uint8_t salt[SP_SCRAM_DEFAULT_SALT_LEN];

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return false;
	return sp_scram_secret_from_password_salt(password, salt, sizeof(salt),
						  SP_SCRAM_DEFAULT_ITERATIONS, out);
}

bool sp_scram_secret_format(const sp_scram_secret_t *secret, char *out, size_t outlen)
{
	char salt[sizeof(secret->salt) / 3 * 4 + 8];
	char stored[SP_SCRAM_KEY_LEN / 3 * 4 + 8];
	char server[SP_SCRAM_KEY_LEN / 3 * 4 + 8];
	int n;

	if (secret == NULL || out == NULL || secret->iterations < 1 || secret->salt_len < 1 ||
	    secret->salt_len > (int)sizeof(secret->salt))
		return false;
	b64_encode(secret->salt, (size_t)secret->salt_len, salt);
	b64_encode(secret->stored_key, SP_SCRAM_KEY_LEN, stored);
	b64_encode(secret->server_key, SP_SCRAM_KEY_LEN, server);
	n = snprintf(out, outlen, SECRET_PREFIX "%d:%s$%s:%s", secret->iterations, salt, stored,
		     server);
	return n > 0 && (size_t)n < outlen;
}

bool sp_scram_parse_secret(const char *text, sp_scram_secret_t *out)
{
	sp_scram_secret_t s;
	const char *p, *colon, *dollar;
	long n;
	bool ok = false;

	if (text == NULL || strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return false;
	memset(&s, 0, sizeof(s));
	p = text + strlen(SECRET_PREFIX);

	colon = strchr(p, ':');
	if (colon == NULL || !parse_count(p, (size_t)(colon - p), INT_MAX, &s.iterations))
		goto out;
	p = colon + 1;

	dollar = strchr(p, '$');
	if (dollar == NULL)
		goto out;
	n = b64_decode(p, (size_t)(dollar - p), s.salt, sizeof(s.salt));
	if (n < 1)
		goto out;
	s.salt_len = (int)n;
	p = dollar + 1;

	colon = strchr(p, ':');
	if (colon == NULL ||
	    b64_decode(p, (size_t)(colon - p), s.stored_key, SP_SCRAM_KEY_LEN) != SP_SCRAM_KEY_LEN)
		goto out;
	p = colon + 1;
	if (b64_decode(p, strlen(p), s.server_key, SP_SCRAM_KEY_LEN) != SP_SCRAM_KEY_LEN)
		goto out;
	*out = s;
	ok = true;
out:
	OPENSSL_cleanse(&s, sizeof(s));
	return ok;
}

static uint8_t mock_key[SP_SCRAM_KEY_LEN];
static pthread_once_t mock_once = PTHREAD_ONCE_INIT;

static void mock_init(void)
{
	/* On RAND failure the key stays zero: salts become predictable, nothing worse. */
	if (RAND_bytes(mock_key, sizeof(mock_key)) != 1)
		memset(mock_key, 0, sizeof(mock_key));
}

void sp_scram_secret_mock(const char *user, sp_scram_secret_t *out)
{
	uint8_t h[SP_SCRAM_KEY_LEN];

	pthread_once(&mock_once, mock_init);
	memset(out, 0, sizeof(*out));
	out->iterations = SP_SCRAM_DEFAULT_ITERATIONS;
	out->salt_len = SP_SCRAM_DEFAULT_SALT_LEN;
	if (user == NULL)
		user = "";
	if (!hmac256(mock_key, sizeof(mock_key), user, strlen(user), h))
		memset(h, 0, sizeof(h));
	memcpy(out->salt, h, SP_SCRAM_DEFAULT_SALT_LEN);
	/*
	 * A proof verifies only if H(ClientKey) equals stored_key: with random
	 * (or, failing that, all-zero) bytes nobody knows a preimage.
	 */
	if (RAND_bytes(out->stored_key, SP_SCRAM_KEY_LEN) != 1)
		memset(out->stored_key, 0, SP_SCRAM_KEY_LEN);
	if (RAND_bytes(out->server_key, SP_SCRAM_KEY_LEN) != 1)
		memset(out->server_key, 0, SP_SCRAM_KEY_LEN);
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static char *auth_message(const char *client_first_bare, const char *server_first,
			  const char *final_wo_proof, size_t final_len)
{
	return dup_printf("%s,%s,%.*s", client_first_bare, server_first, (int)final_len,
			  final_wo_proof);
}

/* ---- server side ---- */

void sp_scram_server_init(sp_scram_server_t *s, const sp_scram_secret_t *secret)
{
	memset(s, 0, sizeof(*s));
	if (secret != NULL)
		s->secret = *secret;
	else
		sp_scram_secret_mock("", &s->secret);
}

bool sp_scram_server_first(sp_scram_server_t *s, const char *msg, size_t len, char **out, char *err,
			   size_t errlen)
{
	char *buf;
	const char *p, *bare, *val;
	size_t vlen;
	char salt[sizeof(s->secret.salt) / 3 * 4 + 8];
	bool ok = false;

	*out = NULL;
	if (s->state != 0)
		return fail(err, errlen,
			    "SCRAM exchange out of order: unexpected client-first-message");
	s->state = 2; /* until it succeeds, the exchange is over */
	if (s->secret.salt_len < 1 || s->secret.salt_len > (int)sizeof(s->secret.salt) ||
	    s->secret.iterations < 1)
		return fail(err, errlen, "invalid SCRAM secret");
	buf = copy_msg(msg, len, "client-first-message", err, errlen);
	if (buf == NULL)
		return false;
	p = buf;

	switch (*p) {
	case 'n':
	case 'y':
		/*
		 * 'y': the client could bind but believes we cannot. True, we do
		 * not offer SCRAM-SHA-256-PLUS, so this is no downgrade.
		 */
		s->cbind_flag = *p;
		break;
	case 'p':
		fail(err, errlen,
		     "channel binding is not supported: the client requires it (\"p=\"), "
		     "but shardpool does not offer SCRAM-SHA-256-PLUS");
		goto out;
	default:
		fail(err, errlen,
		     "malformed SCRAM message: unexpected channel-binding flag in "
		     "client-first-message");
		goto out;
	}
	p++;
	if (*p != ',') {
		fail(err, errlen,
		     "malformed SCRAM message: comma expected after the channel-binding flag");
		goto out;
	}
	p++;
	if (*p == 'a') {
		fail(err, errlen, "SCRAM authorization identity (\"a=\") is not supported");
		goto out;
	}
	if (*p != ',') {
		fail(err, errlen, "malformed SCRAM message: unexpected attribute in GS2 header");
		goto out;
	}
	p++;
	bare = p;
	if (*p == 'm') {
		fail(err, errlen, "client requires an unsupported SCRAM extension (\"m=\")");
		goto out;
	}
	/* The user name is ignored, as PostgreSQL does: the startup packet names the user. */
	if (!read_attr(&p, 'n', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected user name attribute \"n\" in "
		     "client-first-message");
		goto out;
	}
	if (!read_attr(&p, 'r', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected nonce attribute \"r\" in "
		     "client-first-message");
		goto out;
	}
	if (vlen == 0 || vlen >= sizeof(s->client_nonce) || !is_printable(val, vlen)) {
		fail(err, errlen, "malformed SCRAM message: invalid client nonce");
		goto out;
	}
	memcpy(s->client_nonce, val, vlen);
	s->client_nonce[vlen] = '\0';
	/* Optional extensions may follow; like PostgreSQL we support none and skip them. */
	while (*p != '\0') {
		if (!read_attr(&p, 0, NULL, &val, &vlen)) {
			fail(err, errlen,
			     "malformed SCRAM message: garbage at the end of client-first-message");
			goto out;
		}
	}

	if (!make_nonce(s->server_nonce, sizeof(s->server_nonce))) {
		fail(err, errlen, "could not generate a SCRAM nonce");
		goto out;
	}
	b64_encode(s->secret.salt, (size_t)s->secret.salt_len, salt);
	s->client_first_bare = strdup(bare);
	s->server_first = dup_printf("r=%s%s,s=%s,i=%d", s->client_nonce, s->server_nonce, salt,
				     s->secret.iterations);
	*out = s->server_first ? strdup(s->server_first) : NULL;
	if (s->client_first_bare == NULL || *out == NULL) {
		free(*out);
		*out = NULL;
		fail(err, errlen, "out of memory");
		goto out;
	}
	s->state = 1;
	ok = true;
out:
	free(buf);
	return ok;
}

bool sp_scram_server_final(sp_scram_server_t *s, const char *msg, size_t len, char **out, char *err,
			   size_t errlen)
{
	char *buf, *authmsg = NULL;
	const char *p, *val, *proof_attr;
	size_t vlen, cn = strlen(s->client_nonce), sn = strlen(s->server_nonce);
	char attr = 0;
	uint8_t proof[SP_SCRAM_KEY_LEN], sig[SP_SCRAM_KEY_LEN], key[SP_SCRAM_KEY_LEN];
	uint8_t h[SP_SCRAM_KEY_LEN];
	char b64[SP_SCRAM_KEY_LEN / 3 * 4 + 8];
	int i;
	bool ok = false;

	*out = NULL;
	if (s->state != 1)
		return fail(err, errlen,
			    "SCRAM exchange out of order: unexpected client-final-message");
	s->state = 2;
	buf = copy_msg(msg, len, "client-final-message", err, errlen);
	if (buf == NULL)
		return false;
	p = buf;

	if (!read_attr(&p, 'c', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected channel-binding attribute \"c\" in "
		     "client-final-message");
		goto out;
	}
	/* base64 of the GS2 header the client sent first: "n,," or "y,," */
	if (vlen != 4 || memcmp(val, s->cbind_flag == 'y' ? "eSws" : "biws", 4) != 0) {
		fail(err, errlen,
		     "unexpected SCRAM channel-binding attribute in client-final-message "
		     "(it does not match the client-first-message)");
		goto out;
	}
	if (!read_attr(&p, 'r', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected nonce attribute \"r\" in "
		     "client-final-message");
		goto out;
	}
	if (vlen != cn + sn || memcmp(val, s->client_nonce, cn) != 0 ||
	    memcmp(val + cn, s->server_nonce, sn) != 0) {
		fail(err, errlen, "SCRAM nonce in client-final-message does not match");
		goto out;
	}
	/* Skip extensions up to the proof, which must come last. */
	do {
		proof_attr = p;
		if (*p == '\0' || !read_attr(&p, 0, &attr, &val, &vlen)) {
			fail(err, errlen,
			     "malformed SCRAM message: expected proof attribute \"p\" in "
			     "client-final-message");
			goto out;
		}
	} while (attr != 'p');
	if (*p != '\0') {
		fail(err, errlen,
		     "malformed SCRAM message: garbage at the end of client-final-message");
		goto out;
	}
	if (b64_decode(val, vlen, proof, sizeof(proof)) != SP_SCRAM_KEY_LEN) {
		fail(err, errlen,
		     "malformed SCRAM message: malformed proof in client-final-message");
		goto out;
	}

	/* proof_attr points at "p=", just after the ',' that ends the part signed. */
	authmsg = auth_message(s->client_first_bare, s->server_first, buf,
			       (size_t)(proof_attr - 1 - buf));
	if (authmsg == NULL) {
		fail(err, errlen, "out of memory");
		goto out;
	}
	if (!hmac256(s->secret.stored_key, SP_SCRAM_KEY_LEN, authmsg, strlen(authmsg), sig)) {
		fail(err, errlen, "SCRAM computation failed");
		goto out;
	}
	for (i = 0; i < SP_SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	if (!sha256(key, sizeof(key), h) ||
	    CRYPTO_memcmp(h, s->secret.stored_key, SP_SCRAM_KEY_LEN) != 0) {
		fail(err, errlen, "SCRAM proof does not match: wrong password");
		goto out;
	}
	if (!hmac256(s->secret.server_key, SP_SCRAM_KEY_LEN, authmsg, strlen(authmsg), sig)) {
		fail(err, errlen, "SCRAM computation failed");
		goto out;
	}
	b64_encode(sig, sizeof(sig), b64);
	*out = dup_printf("v=%s", b64);
	if (*out == NULL) {
		fail(err, errlen, "out of memory");
		goto out;
	}
	memcpy(s->client_key, key, SP_SCRAM_KEY_LEN);
	s->have_client_key = true;
	ok = true;
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(proof, sizeof(proof));
	free(authmsg);
	free(buf);
	return ok;
}

void sp_scram_server_free(sp_scram_server_t *s)
{
	free(s->client_first_bare);
	free(s->server_first);
	OPENSSL_cleanse(s, sizeof(*s));
}

/* ---- client side ---- */

void sp_scram_client_init_password(sp_scram_client_t *c, const char *password)
{
	memset(c, 0, sizeof(*c));
	c->password = strdup(password != NULL ? password : "");
}

void sp_scram_client_init_keys(sp_scram_client_t *c, const uint8_t client_key[SP_SCRAM_KEY_LEN],
			       const uint8_t server_key[SP_SCRAM_KEY_LEN])
{
	memset(c, 0, sizeof(*c));
	memcpy(c->client_key, client_key, SP_SCRAM_KEY_LEN);
	memcpy(c->server_key, server_key, SP_SCRAM_KEY_LEN);
	c->have_keys = true;
}

char *sp_scram_client_first_user(sp_scram_client_t *c, const char *user)
{
	char *name, *q, *msg;
	const char *u;

	if (c->state != 0 || (c->password == NULL && !c->have_keys))
		return NULL;
	if (user == NULL)
		user = "";
	/* saslname: ',' and '=' are escaped as "=2C" and "=3D". */
	name = malloc(strlen(user) * 3 + 1);
	if (name == NULL)
		return NULL;
	for (u = user, q = name; *u; u++) {
		if (*u == ',' || *u == '=') {
			memcpy(q, *u == ',' ? "=2C" : "=3D", 3);
			q += 3;
		} else {
			*q++ = *u;
		}
	}
	*q = '\0';
	if (!make_nonce(c->client_nonce, sizeof(c->client_nonce))) {
		free(name);
		return NULL;
	}
	c->client_first_bare = dup_printf("n=%s,r=%s", name, c->client_nonce);
	free(name);
	if (c->client_first_bare == NULL)
		return NULL;
	msg = dup_printf("n,,%s", c->client_first_bare);
	if (msg == NULL) {
		free(c->client_first_bare);
		c->client_first_bare = NULL;
		return NULL;
	}
	c->state = 1;
	return msg;
}

char *sp_scram_client_first(sp_scram_client_t *c)
{
	return sp_scram_client_first_user(c, "");
}

bool sp_scram_client_final(sp_scram_client_t *c, const char *server_first, size_t len, char **out,
			   char *err, size_t errlen)
{
	char *buf, *authmsg = NULL, *without_proof = NULL;
	const char *p, *nonce, *val;
	size_t nlen, vlen, cn = strlen(c->client_nonce);
	uint8_t salt[MAX_SERVER_SALT];
	long salt_len;
	int iterations, i;
	uint8_t stored[SP_SCRAM_KEY_LEN], sig[SP_SCRAM_KEY_LEN], proof[SP_SCRAM_KEY_LEN];
	char b64[SP_SCRAM_KEY_LEN / 3 * 4 + 8];
	bool ok = false;

	*out = NULL;
	if (c->state != 1)
		return fail(err, errlen,
			    "SCRAM exchange out of order: unexpected server-first-message");
	c->state = 3;
	buf = copy_msg(server_first, len, "server-first-message", err, errlen);
	if (buf == NULL)
		return false;
	p = buf;

	if (*p == 'm') {
		fail(err, errlen, "server requires an unsupported SCRAM extension (\"m=\")");
		goto out;
	}
	if (!read_attr(&p, 'r', NULL, &nonce, &nlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected nonce attribute \"r\" in "
		     "server-first-message");
		goto out;
	}
	if (nlen <= cn || memcmp(nonce, c->client_nonce, cn) != 0 || !is_printable(nonce, nlen)) {
		fail(err, errlen, "invalid SCRAM response (nonce mismatch)");
		goto out;
	}
	if (!read_attr(&p, 's', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected salt attribute \"s\" in "
		     "server-first-message");
		goto out;
	}
	salt_len = b64_decode(val, vlen, salt, sizeof(salt));
	if (salt_len < 1) {
		fail(err, errlen, "malformed SCRAM message: invalid salt in server-first-message");
		goto out;
	}
	if (!read_attr(&p, 'i', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected iteration count attribute \"i\" in "
		     "server-first-message");
		goto out;
	}
	if (!parse_count(val, vlen, SP_SCRAM_MAX_ITERATIONS, &iterations)) {
		fail(err, errlen,
		     "malformed SCRAM message: invalid iteration count in server-first-message "
		     "(must be 1..%d)",
		     SP_SCRAM_MAX_ITERATIONS);
		goto out;
	}
	if (*p != '\0') {
		fail(err, errlen,
		     "malformed SCRAM message: garbage at the end of server-first-message");
		goto out;
	}

	/*
	 * With keys taken from a client's login the salt and iteration count
	 * play no part: the proof needs ClientKey and the signature ServerKey.
	 */
	if (!c->have_keys) {
		if (c->password == NULL) {
			fail(err, errlen, "out of memory");
			goto out;
		}
		if (!cached_keys(c->password, salt, (int)salt_len, iterations, c->client_key,
				 c->server_key)) {
			fail(err, errlen, "SCRAM key derivation failed");
			goto out;
		}
	}
	without_proof = dup_printf("c=biws,r=%.*s", (int)nlen, nonce);
	if (without_proof == NULL ||
	    (authmsg = auth_message(c->client_first_bare, buf, without_proof,
				    strlen(without_proof))) == NULL) {
		fail(err, errlen, "out of memory");
		goto out;
	}
	if (!sha256(c->client_key, SP_SCRAM_KEY_LEN, stored) ||
	    !hmac256(stored, sizeof(stored), authmsg, strlen(authmsg), sig) ||
	    !hmac256(c->server_key, SP_SCRAM_KEY_LEN, authmsg, strlen(authmsg),
		     c->expected_server_sig)) {
		fail(err, errlen, "SCRAM computation failed");
		goto out;
	}
	for (i = 0; i < SP_SCRAM_KEY_LEN; i++)
		proof[i] = c->client_key[i] ^ sig[i];
	b64_encode(proof, sizeof(proof), b64);
	*out = dup_printf("%s,p=%s", without_proof, b64);
	c->server_first = strdup(buf);
	if (*out == NULL || c->server_first == NULL) {
		free(*out);
		*out = NULL;
		fail(err, errlen, "out of memory");
		goto out;
	}
	c->state = 2;
	ok = true;
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	free(without_proof);
	free(authmsg);
	free(buf);
	return ok;
}

bool sp_scram_client_verify(sp_scram_client_t *c, const char *server_final, size_t len, char *err,
			    size_t errlen)
{
	char *buf;
	const char *p, *val;
	size_t vlen;
	uint8_t sig[SP_SCRAM_KEY_LEN];
	bool ok = false;

	if (c->state != 2)
		return fail(err, errlen,
			    "SCRAM exchange out of order: unexpected server-final-message");
	c->state = 3;
	buf = copy_msg(server_final, len, "server-final-message", err, errlen);
	if (buf == NULL)
		return false;
	p = buf;
	if (strncmp(p, "e=", 2) == 0) {
		/* The server's reason is peer text: bound it and keep it printable. */
		for (vlen = 2; buf[vlen]; vlen++)
			if ((unsigned char)buf[vlen] < 0x20 || (unsigned char)buf[vlen] > 0x7e)
				buf[vlen] = '?';
		fail(err, errlen, "error received from server in SCRAM exchange: %.100s", buf + 2);
		goto out;
	}
	if (!read_attr(&p, 'v', NULL, &val, &vlen)) {
		fail(err, errlen,
		     "malformed SCRAM message: expected verifier attribute \"v\" in "
		     "server-final-message");
		goto out;
	}
	if (*p != '\0') {
		fail(err, errlen,
		     "malformed SCRAM message: garbage at the end of server-final-message");
		goto out;
	}
	if (b64_decode(val, vlen, sig, sizeof(sig)) != SP_SCRAM_KEY_LEN) {
		fail(err, errlen, "malformed SCRAM message: invalid server signature");
		goto out;
	}
	if (CRYPTO_memcmp(sig, c->expected_server_sig, SP_SCRAM_KEY_LEN) != 0) {
		fail(err, errlen,
		     "incorrect server signature: the server does not know the secret");
		goto out;
	}
	ok = true;
out:
	free(buf);
	return ok;
}

void sp_scram_client_free(sp_scram_client_t *c)
{
	if (c->password != NULL) {
		OPENSSL_cleanse(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->client_first_bare);
	free(c->server_first);
	OPENSSL_cleanse(c, sizeof(*c));
}
