/*
 * params.c - session parameter sets and the SQL that reconciles a server
 * session with a client's. Values are kept exactly as the server reports
 * them (or as the client sent them before the server canonicalised them), and
 * always applied with set_config(), which takes any value in SHOW form and any
 * parameter name without identifier quoting rules. Sets are small (a handful
 * of entries), so they are plain arrays searched linearly.
 */
#include "params.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t entry_hash(const char *name, const char *value)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *name; name++) {
		h ^= (uint8_t)tolower((unsigned char)*name);
		h *= 1099511628211ULL;
	}
	h ^= '=';
	h *= 1099511628211ULL;
	for (; *value; value++) {
		h ^= (uint8_t)*value;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static int find(const sp_params_t *p, const char *name)
{
	for (int i = 0; i < p->n; i++)
		if (strcasecmp(p->items[i].name, name) == 0)
			return i;
	return -1;
}

/* Add (or take out: XOR) one entry's hash to the signatures; ro: a read-only name. */
static void sign(sp_params_t *p, bool ro, const char *name, const char *value)
{
	uint64_t h = entry_hash(name, value);
	p->sig ^= h;
	if (!ro)
		p->rw_sig ^= h;
}

void sp_params_set(sp_params_t *p, const char *name, const char *value)
{
	int i = find(p, name);
	bool ro;
	if (i >= 0) {
		if (strcmp(p->items[i].value, value) != 0) {
			ro = sp_params_is_readonly(name);
			sign(p, ro, p->items[i].name, p->items[i].value);
			free(p->items[i].value);
			p->items[i].value = strdup(value);
			sign(p, ro, p->items[i].name, p->items[i].value);
		}
		return;
	}
	if (p->n == p->cap) {
		int ncap = p->cap ? p->cap * 2 : 16;
		sp_param_t *n = realloc(p->items, sizeof(*n) * (size_t)ncap);
		if (!n)
			return;
		p->items = n;
		p->cap = ncap;
	}
	p->items[p->n].name = strdup(name);
	p->items[p->n].value = strdup(value);
	ro = sp_params_is_readonly(name);
	sign(p, ro, name, value);
	p->rw_n += !ro;
	p->n++;
}

const char *sp_params_get(const sp_params_t *p, const char *name)
{
	int i = find(p, name);
	return i >= 0 ? p->items[i].value : NULL;
}

bool sp_params_remove(sp_params_t *p, const char *name)
{
	int i = find(p, name);
	if (i < 0)
		return false;
	bool ro = sp_params_is_readonly(name);
	sign(p, ro, p->items[i].name, p->items[i].value);
	p->rw_n -= !ro;
	free(p->items[i].name);
	free(p->items[i].value);
	p->items[i] = p->items[--p->n];
	return true;
}

void sp_params_clear(sp_params_t *p)
{
	for (int i = 0; i < p->n; i++) {
		free(p->items[i].name);
		free(p->items[i].value);
	}
	free(p->items);
	p->items = NULL;
	p->n = p->cap = 0;
	p->sig = p->rw_sig = 0;
	p->rw_n = 0;
}

void sp_params_copy(sp_params_t *dst, const sp_params_t *src)
{
	for (int i = 0; i < src->n; i++)
		sp_params_set(dst, src->items[i].name, src->items[i].value);
}

/* Settings a client cannot change. (session_authorization can: SET SESSION
 * AUTHORIZATION, which the next client of that server must not inherit. It cannot
 * come in a startup packet; client.c refuses it there.) */
bool sp_params_is_readonly(const char *name)
{
	static const char *const ro[] = {"server_version", "server_encoding", "integer_datetimes",
					 "is_superuser", "in_hot_standby",
					 "server_version_num", "user", "database", "replication",
					 "options", NULL};
	for (int i = 0; ro[i]; i++)
		if (strcasecmp(name, ro[i]) == 0)
			return true;
	return false;
}

bool sp_params_is_reported(const char *name)
{
	static const char *const rep[] = {"application_name", "client_encoding", "DateStyle",
					  "default_transaction_read_only", "in_hot_standby",
					  "integer_datetimes", "IntervalStyle", "is_superuser",
					  "server_encoding", "server_version", "session_authorization",
					  "standard_conforming_strings", "TimeZone", NULL};
	for (int i = 0; rep[i]; i++)
		if (strcasecmp(name, rep[i]) == 0)
			return true;
	return false;
}

void sp_sql_append_literal(sp_buf_t *b, const char *s)
{
	sp_buf_append(b, "'", 1);
	for (; *s; s++) {
		if (*s == '\'')
			sp_buf_append(b, "'", 1);
		sp_buf_append(b, s, 1);
	}
	sp_buf_append(b, "'", 1);
}

static void append_ident(sp_buf_t *b, const char *s)
{
	sp_buf_append(b, "\"", 1);
	for (; *s; s++) {
		char c = (char)tolower((unsigned char)*s);
		if (c == '"')
			sp_buf_append(b, "\"", 1);
		sp_buf_append(b, &c, 1);
	}
	sp_buf_append(b, "\"", 1);
}

void sp_params_append_set(sp_buf_t *sql, const char *name, const char *value, bool first)
{
	sp_buf_append(sql, first ? "SELECT " : ", ", first ? 7 : 2);
	sp_buf_append(sql, "pg_catalog.set_config(", 22);
	sp_sql_append_literal(sql, name);
	sp_buf_append(sql, ", ", 2);
	sp_sql_append_literal(sql, value);
	sp_buf_append(sql, ", false)", 8);
}

int sp_params_write_sync(sp_buf_t *sql, const sp_params_t *want, const sp_params_t *have)
{
	int diffs = 0, sets = 0;

	if (want->rw_sig == have->rw_sig && want->rw_n == have->rw_n)
		return 0; /* the same settings a client can change: nothing to write */
	for (int i = 0; i < have->n; i++) {
		const char *name = have->items[i].name;
		if (sp_params_is_readonly(name) || find(want, name) >= 0)
			continue;
		/* The server has a setting this client never made: back to default. */
		sp_buf_append(sql, "RESET ", 6);
		append_ident(sql, name);
		sp_buf_append(sql, ";", 1);
		diffs++;
	}
	for (int i = 0; i < want->n; i++) {
		const char *name = want->items[i].name;
		const char *cur;
		if (sp_params_is_readonly(name))
			continue;
		cur = sp_params_get(have, name);
		if (cur && strcmp(cur, want->items[i].value) == 0)
			continue;
		sp_params_append_set(sql, name, want->items[i].value, sets == 0);
		sets++;
		diffs++;
	}
	if (sets)
		sp_buf_append(sql, ";", 1);
	return diffs;
}

#define CHECKED_SLOTS 1024 /* a power of two */
static uint64_t checked[CHECKED_SLOTS];

static uint64_t checked_key(const void *scope, const char *name, const char *value)
{
	uint64_t k = entry_hash(name, value) ^ ((uint64_t)(uintptr_t)scope * 0x9E3779B97F4A7C15ULL);
	return k ? k : 1; /* 0 marks a free slot */
}

bool sp_params_checked(const void *scope, const char *name, const char *value)
{
	uint64_t k = checked_key(scope, name, value);
	for (unsigned i = 0; i < 4; i++)
		if (checked[(k + i) & (CHECKED_SLOTS - 1)] == k)
			return true;
	return false;
}

void sp_params_note_checked(const void *scope, const char *name, const char *value)
{
	uint64_t k = checked_key(scope, name, value);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t *slot = &checked[(k + i) & (CHECKED_SLOTS - 1)];
		if (*slot == k)
			return;
		if (*slot == 0) {
			*slot = k;
			return;
		}
	}
	checked[k & (CHECKED_SLOTS - 1)] = k; /* full around there: the oldest guess goes */
}

void sp_params_forget_checked(void)
{
	memset(checked, 0, sizeof(checked));
}

bool sp_params_takes_any_value(const char *name)
{
	/* application_name: non-ASCII bytes become '?', a long one is cut, none is refused */
	return strcasecmp(name, "application_name") == 0;
}

bool sp_params_parse_options(sp_params_t *p, const char *options)
{
	/* PostgreSQL splits on unescaped whitespace; backslash escapes the next byte. */
	char word[1024];
	const char *s = options;
	bool want_value = false;

	while (*s) {
		size_t n = 0;
		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		while (*s && !isspace((unsigned char)*s)) {
			if (*s == '\\' && s[1])
				s++;
			if (n + 1 >= sizeof(word))
				return false;
			word[n++] = *s++;
		}
		word[n] = 0;
		if (want_value || strncmp(word, "--", 2) == 0) {
			char *kv = want_value ? word : word + 2;
			char *eq = strchr(kv, '=');
			if (!eq || eq == kv)
				return false;
			*eq = 0;
			for (char *c = kv; *c; c++)
				if (*c == '-')
					*c = '_';
			sp_params_set(p, kv, eq + 1);
			want_value = false;
		} else if (strcmp(word, "-c") == 0) {
			want_value = true;
		} else if (strncmp(word, "-c", 2) == 0) {
			char *kv = word + 2;
			char *eq = strchr(kv, '=');
			if (!eq || eq == kv)
				return false;
			*eq = 0;
			sp_params_set(p, kv, eq + 1);
		} else {
			return false;
		}
	}
	return !want_value;
}
