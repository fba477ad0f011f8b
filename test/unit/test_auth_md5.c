/*
 * test_auth_md5.c - PostgreSQL md5 password scheme and sp_secure_streq().
 *
 * Expected hashes were computed independently with coreutils at test-writing
 * time, not with the code under test:
 *   printf %s "passworduser"   | md5sum  -> 4d45974e13472b5a0be3533de4666414
 *   printf %s "pencilpostgres" | md5sum  -> 4c21b325d75177d5e9b9789a50ab0c9c
 *   printf "%s\x01\x02\x03\x04" 4d45974e13472b5a0be3533de4666414 | md5sum
 *                                         -> a3576f1ae039b8996bc4fc2720f9c71a
 *   printf "%s\xde\xad\xbe\xef" 4c21b325d75177d5e9b9789a50ab0c9c | md5sum
 *                                         -> ced99751bea390968e795eaedb0a4935
 *   (1000 x 'a' followed by 100 x 'u') | md5sum
 *                                         -> 3a0c19f0ff166656a92470d2c5915cf2
 */
#include <stdlib.h>
#include <string.h>

#include "auth_md5.h"
#include "tap.h"

int main(void)
{
	static const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
	static const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
	char stored[SP_MD5_PASSWD_LEN + 1], wire[SP_MD5_PASSWD_LEN + 1];
	char pw[1001], user[101];

	sp_md5_stored("password", "user", stored);
	is_str(stored, "md54d45974e13472b5a0be3533de4666414", "stored form of password/user");
	is_int(strlen(stored), SP_MD5_PASSWD_LEN, "stored form length");
	sp_md5_salted(stored, salt1, wire);
	is_str(wire, "md5a3576f1ae039b8996bc4fc2720f9c71a", "salted wire form, salt 01020304");

	sp_md5_stored("pencil", "postgres", stored);
	is_str(stored, "md54c21b325d75177d5e9b9789a50ab0c9c", "stored form of pencil/postgres");
	sp_md5_salted(stored, salt2, wire);
	is_str(wire, "md5ced99751bea390968e795eaedb0a4935", "salted wire form, salt deadbeef");

	memset(pw, 'a', 1000);
	pw[1000] = '\0';
	memset(user, 'u', 100);
	user[100] = '\0';
	sp_md5_stored(pw, user, stored);
	is_str(stored, "md53a0c19f0ff166656a92470d2c5915cf2", "long password (streamed digest)");

	/* verify with a plain secret and with a stored md5 secret */
	ok(sp_md5_verify("password", "user", salt1, "md5a3576f1ae039b8996bc4fc2720f9c71a"),
	   "plain secret verifies");
	ok(sp_md5_verify("md54d45974e13472b5a0be3533de4666414", "user", salt1,
			 "md5a3576f1ae039b8996bc4fc2720f9c71a"),
	   "md5 secret verifies");
	ok(!sp_md5_verify("password", "user", salt2, "md5a3576f1ae039b8996bc4fc2720f9c71a"),
	   "wrong salt fails");
	ok(!sp_md5_verify("passwore", "user", salt1, "md5a3576f1ae039b8996bc4fc2720f9c71a"),
	   "wrong password fails");
	ok(!sp_md5_verify("password", "usex", salt1, "md5a3576f1ae039b8996bc4fc2720f9c71a"),
	   "wrong user fails (user is part of the hash)");
	ok(!sp_md5_verify("password", "user", salt1, "md5a3576f1ae039b8996bc4fc2720f9c71"),
	   "truncated response fails");
	ok(!sp_md5_verify("password", "user", salt1, "md5a3576f1ae039b8996bc4fc2720f9c71a0"),
	   "overlong response fails");
	ok(!sp_md5_verify("password", "user", salt1, "MD5A3576F1AE039B8996BC4FC2720F9C71A"),
	   "upper-case response fails");
	ok(!sp_md5_verify("password", "user", salt1, ""), "empty response fails");
	ok(!sp_md5_verify("password", "user", salt1, "password"),
	   "plain password as response fails");

	/* empty plain secret: never verifies, even against the matching hash */
	sp_md5_stored("", "user", stored);
	sp_md5_salted(stored, salt1, wire);
	ok(!sp_md5_verify("", "user", salt1, wire), "empty plain secret never verifies");
	ok(!sp_md5_verify(NULL, "user", salt1, wire), "NULL secret never verifies");

	/* A SCRAM secret must not be taken for a plain password. */
	sp_md5_stored("SCRAM-SHA-256$4096:abc$def:ghi", "user", stored);
	sp_md5_salted(stored, salt1, wire);
	ok(!sp_md5_verify("SCRAM-SHA-256$4096:abc$def:ghi", "user", salt1, wire),
	   "SCRAM secret is not used as a plain password");

	/* Looks like md5 but is not (upper-case hex, wrong length): plain. */
	sp_md5_stored("md54D45974E13472B5A0BE3533DE4666414", "user", stored);
	sp_md5_salted(stored, salt1, wire);
	ok(sp_md5_verify("md54D45974E13472B5A0BE3533DE4666414", "user", salt1, wire),
	   "upper-case md5-looking secret is a plain password, as in PostgreSQL");

	ok(sp_secure_streq("abc", "abc"), "streq equal");
	ok(!sp_secure_streq("abc", "abd"), "streq differ last");
	ok(!sp_secure_streq("abc", "ab"), "streq shorter b");
	ok(!sp_secure_streq("ab", "abc"), "streq longer b");
	ok(!sp_secure_streq("", "a"), "streq empty a");
	ok(!sp_secure_streq("a", ""), "streq empty b");
	ok(sp_secure_streq("", ""), "streq both empty");

	return done_testing();
}
