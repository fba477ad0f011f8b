/*
 * auth_md5.c - PostgreSQL's md5 password scheme and a constant-time string
 * comparison shared by the password checks.
 *
 * Owns: the stored form "md5" + hex(md5(password || user)), the salted wire
 * form "md5" + hex(md5(hex_part || salt)), and the check of a client's wire
 * response against a secret that is either a plain password or such a stored
 * hash.  Invariants: an empty plain password never verifies (PostgreSQL refuses
 * empty passwords too); a SCRAM secret never verifies here (md5 cannot be
 * checked against it, and it must not be mistaken for a plain password);
 * comparisons of secret material take time that depends on lengths only.
 *
 * Deliberately does not: choose between md5 and SCRAM, talk the protocol, or
 * keep any state.  MD5 goes through OpenSSL's EVP interface (MD5() itself is
 * deprecated in OpenSSL 3).
 */
#include "auth_md5.h"

#include <string.h>

#include <openssl/evp.h>

#define MD5_HEX_CHARS "0123456789abcdef"

static void md5_hex(const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	unsigned int i;

	/*
	 * EVP_Digest only fails when the digest is unavailable (e.g. a FIPS
	 * provider without MD5).  Produce a string that no client response can
	 * match rather than leave the buffer undefined.
	 */
	if (EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16) {
		memset(out, 'x', 32);
		out[32] = '\0';
		return;
	}
	for (i = 0; i < 16; i++) {
		out[2 * i] = MD5_HEX_CHARS[md[i] >> 4];
		out[2 * i + 1] = MD5_HEX_CHARS[md[i] & 0x0f];
	}
	out[32] = '\0';
}

/* Same test as PostgreSQL's get_password_type(): lower-case hex only. */
static bool is_md5_stored(const char *s)
{
	return strncmp(s, "md5", 3) == 0 && strlen(s) == SP_MD5_PASSWD_LEN &&
	       strspn(s + 3, MD5_HEX_CHARS) == SP_MD5_PASSWD_LEN - 3;
}

void sp_md5_stored(const char *password, const char *user, char *out)
{
	size_t plen = strlen(password), ulen = strlen(user);
	unsigned char buf[1024];
	unsigned char *p = buf;
	EVP_MD_CTX *ctx;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	memcpy(out, "md5", 3);
	if (plen + ulen <= sizeof(buf)) {
		memcpy(p, password, plen);
		memcpy(p + plen, user, ulen);
		md5_hex(buf, plen + ulen, out + 3);
		OPENSSL_cleanse(buf, plen + ulen);
		return;
	}
	/* Unusually long inputs: stream them instead of copying. */
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, password, plen) != 1 || EVP_DigestUpdate(ctx, user, ulen) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 16) {
		EVP_MD_CTX_free(ctx);
		memset(out + 3, 'x', 32);
		out[SP_MD5_PASSWD_LEN] = '\0';
		return;
	}
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < 16; i++) {
		out[3 + 2 * i] = MD5_HEX_CHARS[md[i] >> 4];
		out[3 + 2 * i + 1] = MD5_HEX_CHARS[md[i] & 0x0f];
	}
	out[SP_MD5_PASSWD_LEN] = '\0';
}

void sp_md5_salted(const char *stored, const uint8_t salt[4], char *out)
{
	unsigned char buf[32 + 4];

	/* Hash the 32 hex characters after "md5", then the salt. */
	memcpy(buf, stored + 3, 32);
	memcpy(buf + 32, salt, 4);
	memcpy(out, "md5", 3);
	md5_hex(buf, sizeof(buf), out + 3);
	OPENSSL_cleanse(buf, sizeof(buf));
}

bool sp_md5_verify(const char *secret, const char *user, const uint8_t salt[4],
		   const char *response)
{
	char stored[SP_MD5_PASSWD_LEN + 1];
	char expected[SP_MD5_PASSWD_LEN + 1];
	bool ok;

	if (secret == NULL || user == NULL || response == NULL || secret[0] == '\0')
		return false;
	if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0)
		return false;
	if (is_md5_stored(secret))
		memcpy(stored, secret, SP_MD5_PASSWD_LEN + 1);
	else
		sp_md5_stored(secret, user, stored);
	sp_md5_salted(stored, salt, expected);
	ok = sp_secure_streq(expected, response);
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}

bool sp_secure_streq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	volatile unsigned char diff = 0;

	/*
	 * Walk the whole of a whatever b holds, so the time depends on the
	 * lengths only; bytes of b past its end compare as NUL, which differs
	 * from any byte of a, and a length mismatch is folded in as well.
	 */
	for (i = 0; i < la; i++)
		diff |= (unsigned char)a[i] ^ (unsigned char)(i < lb ? b[i] : 0);
	diff |= (unsigned char)((la ^ lb) != 0);
	return diff == 0;
}
