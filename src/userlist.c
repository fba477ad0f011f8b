/*
 * userlist.c - reads auth_file, pgbouncer's userlist.txt format.
 *
 * Owns the parsing of `"user" "secret"` lines into a name-sorted array that
 * sp_userlist_find() searches with bsearch. Blank lines and lines whose first
 * non-blank character is ';' or '#' are skipped; inside a quoted string a
 * doubled quote ("") stands for one quote. Like pgbouncer, text after the
 * secret is ignored (old files carry a third field). Each secret is
 * classified once: "md5" + 32 hex digits (stored lower case), a well-formed
 * "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>", or a plain password.
 *
 * Invariants: names are unique and non-empty; the first malformed line stops
 * parsing with "FILE:LINE: message". A secret that starts like a SCRAM secret
 * but is malformed is an error rather than a plain password, because it
 * would silently never match.
 *
 * Deliberately not done here: verifying passwords (auth_md5.c, auth_scram.c)
 * or watching the file for changes (RELOAD reloads it).
 */
#include "userlist.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_SIZE (64 * 1024 * 1024)

struct entry {
	sp_user_t user;
	int line;
};

static __attribute__((format(printf, 5, 6))) void
set_err(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || errlen == 0)
		return;
	if (line > 0)
		n = snprintf(err, errlen, "%s:%d: ", name, line);
	else
		n = snprintf(err, errlen, "%s: ", name);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/*
 * Reads one quoted string at *pp (which points at the opening quote) into a
 * new string. Returns NULL if the closing quote is missing before the end
 * of the line.
 */
static char *read_quoted(const char **pp, const char *eol)
{
	const char *s = *pp + 1;
	size_t cap = 32, n = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	for (;;) {
		if (s >= eol) {
			free(out);
			return NULL;
		}
		if (*s == '"') {
			if (s + 1 < eol && s[1] == '"') {
				s++; /* "" is one quote */
			} else {
				s++;
				break;
			}
		}
		if (n + 2 > cap) {
			char *bigger = realloc(out, cap *= 2);

			if (!bigger) {
				free(out);
				return NULL;
			}
			out = bigger;
		}
		out[n++] = *s++;
	}
	out[n] = '\0';
	*pp = s;
	return out;
}

static bool is_b64(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
			return false;
	return true;
}

/* SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> */
static bool scram_well_formed(const char *s)
{
	const char *p = s + strlen("SCRAM-SHA-256$");
	const char *colon, *dollar, *colon2;

	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p != ':' || atoi(s + strlen("SCRAM-SHA-256$")) <= 0)
		return false;
	colon = p;
	dollar = strchr(colon + 1, '$');
	if (!dollar || !is_b64(colon + 1, (size_t)(dollar - colon - 1)))
		return false;
	colon2 = strchr(dollar + 1, ':');
	if (!colon2 || !is_b64(dollar + 1, (size_t)(colon2 - dollar - 1)))
		return false;
	return is_b64(colon2 + 1, strlen(colon2 + 1));
}

static bool is_md5_secret(char *s)
{
	if (strncmp(s, "md5", 3) != 0 || strlen(s) != 35)
		return false;
	for (int i = 3; i < 35; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	for (int i = 3; i < 35; i++)
		s[i] = (char)tolower((unsigned char)s[i]);
	return true;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->user.name, y->user.name);

	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_key(const void *key, const void *elem)
{
	return strcmp(key, ((const sp_user_t *)elem)->name);
}

static void free_entries(struct entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		free(e[i].user.name);
		free(e[i].user.secret);
	}
	free(e);
}

sp_userlist_t *sp_userlist_parse(const char *name, const char *text, char *err, size_t errlen)
{
	struct entry *ents = NULL;
	int n = 0, cap = 0, line = 0;
	const char *s = text;
	sp_userlist_t *ul;

	if (err && errlen)
		err[0] = '\0';
	while (*s) {
		const char *eol = strchr(s, '\n');
		const char *p = s;
		char *user, *secret;

		if (!eol)
			eol = s + strlen(s);
		line++;
		while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p == eol || *p == ';' || *p == '#')
			goto next;
		if (*p != '"') {
			set_err(err, errlen, name, line,
				"expected \"user\" \"secret\" (both in double quotes)");
			goto fail;
		}
		user = read_quoted(&p, eol);
		if (!user) {
			set_err(err, errlen, name, line,
				"unterminated quoted user name (a quote inside is written \"\")");
			goto fail;
		}
		if (!user[0]) {
			free(user);
			set_err(err, errlen, name, line, "empty user name");
			goto fail;
		}
		while (p < eol && (*p == ' ' || *p == '\t'))
			p++;
		if (p == eol || *p != '"') {
			set_err(err, errlen, name, line,
				"expected the secret in double quotes after the user name \"%s\"",
				user);
			free(user);
			goto fail;
		}
		secret = read_quoted(&p, eol);
		if (!secret) {
			set_err(err, errlen, name, line,
				"unterminated quoted secret (a quote inside is written \"\")");
			free(user);
			goto fail;
		}
		if (n == cap) {
			struct entry *bigger;

			cap = cap ? cap * 2 : 16;
			bigger = realloc(ents, sizeof(*ents) * (size_t)cap);
			if (!bigger) {
				free(user);
				free(secret);
				set_err(err, errlen, name, line, "out of memory");
				goto fail;
			}
			ents = bigger;
		}
		ents[n].user.name = user;
		ents[n].user.secret = secret;
		ents[n].line = line;
		n++;
		if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0) {
			if (!scram_well_formed(secret)) {
				set_err(err, errlen, name, line,
					"malformed SCRAM secret for \"%s\": expected "
					"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
					user);
				goto fail;
			}
			ents[n - 1].user.kind = SP_SECRET_SCRAM;
		} else if (is_md5_secret(secret)) {
			ents[n - 1].user.kind = SP_SECRET_MD5;
		} else {
			ents[n - 1].user.kind = SP_SECRET_PLAIN;
		}
	next:
		s = *eol ? eol + 1 : eol;
	}

	if (n > 1)
		qsort(ents, (size_t)n, sizeof(*ents), cmp_entry);
	for (int i = 1; i < n; i++) {
		if (strcmp(ents[i].user.name, ents[i - 1].user.name) == 0) {
			set_err(err, errlen, name, ents[i].line,
				"user \"%s\" is already listed at line %d", ents[i].user.name,
				ents[i - 1].line);
			goto fail;
		}
	}
	ul = calloc(1, sizeof(*ul));
	if (!ul || (n > 0 && !(ul->users = malloc(sizeof(*ul->users) * (size_t)n)))) {
		free(ul);
		set_err(err, errlen, name, 0, "out of memory");
		goto fail;
	}
	for (int i = 0; i < n; i++)
		ul->users[i] = ents[i].user;
	ul->n_users = n;
	free(ents);
	return ul;
fail:
	free_entries(ents, n);
	return NULL;
}

sp_userlist_t *sp_userlist_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	sp_userlist_t *ul;

	if (!f) {
		set_err(err, errlen, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			char *bigger;

			if (cap >= MAX_FILE_SIZE) {
				set_err(err, errlen, path, 0, "file larger than %d bytes",
					MAX_FILE_SIZE);
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			bigger = realloc(buf, cap + 1);
			if (!bigger) {
				set_err(err, errlen, path, 0, "out of memory");
				goto fail;
			}
			buf = bigger;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		set_err(err, errlen, path, 0, "read error: %s", strerror(errno));
		goto fail;
	}
	fclose(f);
	buf[n] = '\0';
	if (strlen(buf) != n) {
		int line = 1;

		for (size_t i = 0; buf[i]; i++)
			line += buf[i] == '\n';
		set_err(err, errlen, path, line, "NUL byte in the file");
		free(buf);
		return NULL;
	}
	ul = sp_userlist_parse(path, buf, err, errlen);
	free(buf);
	return ul;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

void sp_userlist_free(sp_userlist_t *ul)
{
	if (!ul)
		return;
	for (int i = 0; i < ul->n_users; i++) {
		free(ul->users[i].name);
		free(ul->users[i].secret);
	}
	free(ul->users);
	free(ul);
}

const sp_user_t *sp_userlist_find(const sp_userlist_t *ul, const char *user)
{
	if (!ul || !user || ul->n_users == 0)
		return NULL;
	return bsearch(user, ul->users, (size_t)ul->n_users, sizeof(*ul->users), cmp_key);
}
