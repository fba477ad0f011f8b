/*
 * test_userlist.c - auth_file parsing: quoting, comments, secret kinds,
 * sorted lookup, and errors that name the line.
 */
#include "userlist.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *md5_a = "md5f2b2ab8e8a0c0e1c3c6e96b5b0e6c4c1";
static const char *scram_a = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$Zm9vYmFyZm9vYmFy:YmF6cXV4YmF6cXV4";

static void test_good(void)
{
	char err[512] = "x";
	char text[1024];
	sp_userlist_t *ul;
	const sp_user_t *u;

	snprintf(text, sizeof(text),
		 "; comment\n"
		 "# another comment\n"
		 "\n"
		 "   \t\n"
		 "\"zoe\" \"plain pass\"\n"
		 "\"bob\"\t\"%s\"\r\n"
		 "  \"alice\"   \"%s\"  \"old third field\"\n"
		 "\"o\"\"brien\" \"pa\"\"ss\"\"\"\n"
		 "\"nopass\" \"\"\n"
		 "\"Upper\" \"MD5F2B2AB8E8A0C0E1C3C6E96B5B0E6C4C1\"\n"
		 "\"carol\" \"md5F2B2AB8E8A0C0E1C3C6E96B5B0E6C4C1\"\n"
		 "\"dave\" \"md5nothexnothexnothexnothexnothexno\"\n"
		 "\"last\" \"no newline at end\"",
		 md5_a, scram_a);
	ul = sp_userlist_parse("mem", text, err, sizeof(err));
	if (!ok(ul != NULL, "good list parses")) {
		printf("#   %s\n", err);
		return;
	}
	is_str(err, "", "no error text on success");
	is_int(ul->n_users, 9, "nine users");
	for (int i = 1; i < ul->n_users; i++)
		ok(strcmp(ul->users[i - 1].name, ul->users[i].name) < 0, "sorted at %d", i);

	u = sp_userlist_find(ul, "zoe");
	ok(u && strcmp(u->secret, "plain pass") == 0 && u->kind == SP_SECRET_PLAIN, "plain");
	u = sp_userlist_find(ul, "bob");
	ok(u && strcmp(u->secret, md5_a) == 0 && u->kind == SP_SECRET_MD5, "md5, CRLF stripped");
	u = sp_userlist_find(ul, "alice");
	ok(u && strcmp(u->secret, scram_a) == 0 && u->kind == SP_SECRET_SCRAM,
	   "scram; text after the secret ignored");
	u = sp_userlist_find(ul, "o\"brien");
	ok(u != NULL, "doubled quote in a name");
	ok(u && strcmp(u->secret, "pa\"ss\"") == 0, "doubled quotes in a secret");
	u = sp_userlist_find(ul, "nopass");
	ok(u && u->secret[0] == '\0' && u->kind == SP_SECRET_PLAIN, "empty secret");
	u = sp_userlist_find(ul, "Upper");
	ok(u && u->kind == SP_SECRET_PLAIN, "'MD5' prefix in capitals is a plain password");
	u = sp_userlist_find(ul, "carol");
	ok(u && u->kind == SP_SECRET_MD5 && strcmp(u->secret, md5_a) == 0,
	   "md5 hex digits are normalised to lower case");
	u = sp_userlist_find(ul, "dave");
	ok(u && u->kind == SP_SECRET_PLAIN, "md5 + 32 non-hex characters is plain");
	u = sp_userlist_find(ul, "last");
	ok(u && strcmp(u->secret, "no newline at end") == 0, "last line without newline");
	ok(sp_userlist_find(ul, "nobody") == NULL, "unknown user");
	ok(sp_userlist_find(ul, "upper") == NULL, "names are case-sensitive");
	ok(sp_userlist_find(ul, "") == NULL, "empty name");
	ok(sp_userlist_find(NULL, "bob") == NULL, "NULL list");
	sp_userlist_free(ul);

	ul = sp_userlist_parse("mem", "", err, sizeof(err));
	ok(ul && ul->n_users == 0, "empty file is an empty list");
	ok(ul && sp_userlist_find(ul, "x") == NULL, "find in an empty list");
	sp_userlist_free(ul);
	sp_userlist_free(NULL);
}

static void test_bad(void)
{
	static const struct {
		const char *text;
		const char *prefix;
		const char *msg;
	} cases[] = {
	    {"\"a\" \"x\"\nb \"x\"\n", "mem:2: ", "expected \"user\" \"secret\""},
	    {"\"a\" \"x\"\n\n\"b \"x\n", "mem:3: ", "expected the secret in double quotes"},
	    {"\"a\" \"x\"\n\"b\n\"c\" \"y\"\n", "mem:2: ", "unterminated quoted user name"},
	    {"; c\n\"a\" \"x\n", "mem:2: ", "unterminated quoted secret"},
	    {"\"a\"\n", "mem:1: ",
	     "expected the secret in double quotes after the user name "
	     "\"a\""},
	    {"\"\" \"x\"\n", "mem:1: ", "empty user name"},
	    {"\"a\" \"x\"\n\"b\" \"y\"\n\"a\" \"z\"\n",
	     "mem:3: ", "user \"a\" is already listed at line 1"},
	    {"\"a\" \"SCRAM-SHA-256$4096:salt\"\n", "mem:1: ", "malformed SCRAM secret for \"a\""},
	    {"\"a\" \"SCRAM-SHA-256$x:c2FsdA==$YQ==:Yg==\"\n", "mem:1: ", "malformed SCRAM secret"},
	    {"\"a\" \"SCRAM-SHA-256$0:c2FsdA==$YQ==:Yg==\"\n", "mem:1: ", "malformed SCRAM secret"},
	    {"\"a\" \"SCRAM-SHA-256$4096:c2FsdA==$YQ==:\"\n", "mem:1: ", "malformed SCRAM secret"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sp_userlist_t *ul = sp_userlist_parse("mem", cases[i].text, err, sizeof(err));

		ok(ul == NULL, "bad case %zu rejected", i);
		sp_userlist_free(ul);
		if (!ok(strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) == 0 &&
			    strstr(err, cases[i].msg) != NULL,
			"bad case %zu: '%s%s'", i, cases[i].prefix, cases[i].msg))
			printf("#   got '%s'\n", err);
	}
	ok(sp_userlist_parse("mem", "oops\n", NULL, 0) == NULL, "no error buffer: no crash");
}

static void test_files(void)
{
	const char *env = getenv("SP_SRCDIR");
	char path[4200], err[512], tmp[] = "/tmp/sp_test_userlist_XXXXXX";
	sp_userlist_t *ul;
	const char *dirs[] = {".", ".."};
	FILE *f;
	int fd;

	if (env && *env) {
		snprintf(path, sizeof(path), "%s/test/data/config/userlist.txt", env);
	} else {
		for (size_t i = 0; i < 2; i++) {
			snprintf(path, sizeof(path), "%s/test/data/config/userlist.txt", dirs[i]);
			if (access(path, R_OK) == 0)
				break;
		}
	}
	ul = sp_userlist_load(path, err, sizeof(err));
	if (ok(ul != NULL, "fixture userlist.txt loads")) {
		is_int(ul->n_users, 3, "three users in the fixture");
		ok(sp_userlist_find(ul, "app") &&
		       sp_userlist_find(ul, "app")->kind == SP_SECRET_MD5,
		   "fixture: app has an md5 secret");
		ok(sp_userlist_find(ul, "admin") &&
		       sp_userlist_find(ul, "admin")->kind == SP_SECRET_SCRAM,
		   "fixture: admin has a SCRAM secret");
		ok(sp_userlist_find(ul, "stats") &&
		       strcmp(sp_userlist_find(ul, "stats")->secret, "pa\"ss") == 0,
		   "fixture: stats has a quoted plain password");
	} else {
		printf("#   %s\n", err);
	}
	sp_userlist_free(ul);

	ok(sp_userlist_load("/nonexistent/userlist.txt", err, sizeof(err)) == NULL, "missing file");
	is_str(err, "/nonexistent/userlist.txt: cannot open: No such file or directory",
	       "missing file message");

	fd = mkstemp(tmp);
	f = fdopen(fd, "w");
	fputs("\"a\" \"x\"\n\"b\" \"y\"\n\"c\" \"z\n", f);
	fclose(f);
	ul = sp_userlist_load(tmp, err, sizeof(err));
	ok(ul == NULL, "bad file rejected");
	{
		char want[128];

		snprintf(want, sizeof(want), "%s:3: unterminated quoted secret", tmp);
		ok(strncmp(err, want, strlen(want)) == 0, "file error names file and line: %s",
		   err);
	}
	f = fopen(tmp, "w");
	fwrite("\"a\" \"x\"\n\"b\0\" \"y\"\n", 1, 17, f);
	fclose(f);
	ul = sp_userlist_load(tmp, err, sizeof(err));
	ok(ul == NULL && strstr(err, ":2: NUL byte"), "NUL byte rejected: %s", err);
	unlink(tmp);
}

int main(void)
{
	test_good();
	test_bad();
	test_files();
	return done_testing();
}
