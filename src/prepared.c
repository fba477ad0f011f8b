/*
 * prepared.c - interning of named prepared statements for transaction
 * pooling. Identical Parse bodies from any client with the same settings that change
 * what a statement's text means (SP_PSTMT_SCOPE) share one sp_pstmt_t and one
 * server-side name, so a server connection prepares each distinct statement
 * once no matter how many clients use it. Reference counts: one per client
 * mapping and one per server cache entry; the statement is freed when the
 * last goes. This module sends nothing: server.c/client.c emit the Parse and
 * Close messages.
 */
#include "prepared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 4096
static sp_pstmt_t *buckets[NBUCKETS];
static uint32_t next_id = 1;
static size_t n_pstmts;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

const char *const sp_pstmt_scope_names[SP_PSTMT_SCOPE_N] = {"search_path", "client_encoding", "TimeZone",
								"DateStyle", "standard_conforming_strings"};

/* Is the NUL-separated list have (of have_len bytes) the values of scope? */
static bool same_scope(const char *have, size_t have_len, const char *const scope[SP_PSTMT_SCOPE_N])
{
	size_t at = 0;
	for (int i = 0; i < SP_PSTMT_SCOPE_N; i++) {
		const char *v = scope[i] ? scope[i] : "";
		size_t n = strlen(v) + 1;
		if (at + n > have_len || memcmp(have + at, v, n) != 0)
			return false;
		at += n;
	}
	return at == have_len;
}

sp_pstmt_t *sp_pstmt_intern(const uint8_t *body, size_t len, const char *const scope[SP_PSTMT_SCOPE_N])
{
	uint64_t h = fnv1a(body, len);
	size_t scope_len = 0;
	sp_pstmt_t *ps;
	for (int i = 0; i < SP_PSTMT_SCOPE_N; i++) {
		const char *v = scope[i] ? scope[i] : "";
		size_t n = strlen(v);
		scope_len += n + 1;
		h ^= (uint8_t)(0xff - i); /* a byte no Parse body ends with, one per setting */
		h *= 1099511628211ULL;
		h ^= fnv1a((const uint8_t *)v, n);
	}
	for (ps = buckets[h % NBUCKETS]; ps; ps = ps->next)
		if (ps->hash == h && ps->body_len == len && memcmp(ps->body, body, len) == 0 &&
		    same_scope(ps->scope, ps->scope_len, scope)) {
			ps->refs++;
			return ps;
		}
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->body = malloc(len + scope_len);
	if (!ps->body) {
		free(ps);
		return NULL;
	}
	memcpy(ps->body, body, len);
	ps->scope = (const char *)ps->body + len;
	ps->scope_len = scope_len;
	for (size_t i = 0, at = len; i < SP_PSTMT_SCOPE_N; i++) {
		const char *v = scope[i] ? scope[i] : "";
		size_t n = strlen(v) + 1;
		memcpy(ps->body + at, v, n);
		at += n;
	}
	ps->body_len = len;
	ps->hash = h;
	ps->id = next_id++;
	ps->refs = 1;
	ps->ncols = -1;
	snprintf(ps->name, sizeof(ps->name), "sp_%u", ps->id);
	ps->next = buckets[h % NBUCKETS];
	buckets[h % NBUCKETS] = ps;
	n_pstmts++;
	return ps;
}

void sp_pstmt_ref(sp_pstmt_t *ps)
{
	ps->refs++;
}

void sp_pstmt_unref(sp_pstmt_t *ps)
{
	sp_pstmt_t **pp;
	if (--ps->refs > 0)
		return;
	for (pp = &buckets[ps->hash % NBUCKETS]; *pp; pp = &(*pp)->next)
		if (*pp == ps) {
			*pp = ps->next;
			break;
		}
	n_pstmts--;
	free(ps->body);
	free(ps);
}

size_t sp_pstmt_count(void)
{
	return n_pstmts;
}

sp_pstmt_t *sp_pstmt_map_lookup(const sp_pstmt_map_t *m, const char *name, bool *stale)
{
	return sp_pstmt_map_lookup_gen(m, name, stale, NULL);
}

sp_pstmt_t *sp_pstmt_map_lookup_gen(const sp_pstmt_map_t *m, const char *name, bool *stale,
				    uint32_t *gen)
{
	*stale = false;
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->slots[i].name, name) == 0) {
			*stale = m->slots[i].epoch != m->slots[i].ps->epoch;
			if (gen)
				*gen = m->slots[i].gen;
			return m->slots[i].ps;
		}
	return NULL;
}

sp_pstmt_t *sp_pstmt_map_get(const sp_pstmt_map_t *m, const char *name)
{
	bool stale;
	return sp_pstmt_map_lookup(m, name, &stale);
}

void sp_pstmt_map_set_gen(sp_pstmt_map_t *m, const char *name, uint32_t gen)
{
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->slots[i].name, name) == 0) {
			m->slots[i].gen = gen;
			return;
		}
}

void sp_pstmt_map_put(sp_pstmt_map_t *m, const char *name, sp_pstmt_t *ps)
{
	sp_pstmt_ref(ps);
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->slots[i].name, name) == 0) {
			sp_pstmt_unref(m->slots[i].ps);
			m->slots[i].ps = ps;
			m->slots[i].epoch = ps->epoch;
			m->slots[i].gen = sp_pstmt_ddl_gen;
			return;
		}
	if (m->n == m->cap) {
		int ncap = m->cap ? m->cap * 2 : 8;
		sp_pstmt_entry_t *n = realloc(m->slots, sizeof(*n) * (size_t)ncap);
		if (!n) {
			sp_pstmt_unref(ps);
			return;
		}
		m->slots = n;
		m->cap = ncap;
	}
	m->slots[m->n].name = strdup(name);
	m->slots[m->n].ps = ps;
	m->slots[m->n].epoch = ps->epoch;
	m->slots[m->n].gen = sp_pstmt_ddl_gen;
	m->n++;
}

bool sp_pstmt_map_del(sp_pstmt_map_t *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->slots[i].name, name) == 0) {
			free(m->slots[i].name);
			sp_pstmt_unref(m->slots[i].ps);
			m->slots[i] = m->slots[--m->n];
			return true;
		}
	return false;
}

void sp_pstmt_map_clear(sp_pstmt_map_t *m)
{
	for (int i = 0; i < m->n; i++) {
		free(m->slots[i].name);
		sp_pstmt_unref(m->slots[i].ps);
	}
	free(m->slots);
	m->slots = NULL;
	m->n = m->cap = 0;
}

uint32_t sp_pstmt_ddl_gen;

void sp_pstmt_ddl_seen(void)
{
	sp_pstmt_ddl_gen++;
}

bool sp_pstmt_cache_has(sp_pstmt_cache_t *c, sp_pstmt_t *ps)
{
	return sp_pstmt_cache_has_since(c, ps, 0, NULL);
}

bool sp_pstmt_cache_has_since(sp_pstmt_cache_t *c, sp_pstmt_t *ps, uint32_t gen, uint32_t *copy_gen)
{
	for (int i = 0; i < c->n; i++)
		if (c->items[i] == ps) {
			if (c->epochs[i] != ps->epoch || (int32_t)(c->gens[i] - gen) < 0)
				return false;
			if (copy_gen)
				*copy_gen = c->gens[i];
			c->used[i] = ++c->clock;
			return true;
		}
	return false;
}

static void cache_drop_at(sp_pstmt_cache_t *c, int i)
{
	c->items[i] = c->items[c->n - 1];
	c->used[i] = c->used[c->n - 1];
	c->epochs[i] = c->epochs[c->n - 1];
	c->gens[i] = c->gens[c->n - 1];
	c->n--;
}

sp_pstmt_t *sp_pstmt_cache_take_old(sp_pstmt_cache_t *c, sp_pstmt_t *ps, uint32_t gen)
{
	for (int i = 0; i < c->n; i++)
		if (c->items[i] == ps) {
			if (c->epochs[i] == ps->epoch && (int32_t)(c->gens[i] - gen) >= 0)
				return NULL;
			cache_drop_at(c, i);
			return ps;
		}
	return NULL;
}

sp_pstmt_t *sp_pstmt_cache_add(sp_pstmt_cache_t *c, sp_pstmt_t *ps, int max)
{
	sp_pstmt_t *victim = NULL;
	if (c->n >= max && c->n > 0) {
		int lru = 0;
		for (int i = 1; i < c->n; i++)
			if (c->used[i] < c->used[lru])
				lru = i;
		victim = c->items[lru];
		cache_drop_at(c, lru);
	}
	if (c->n == c->cap) {
		int ncap = c->cap ? c->cap * 2 : 16;
		sp_pstmt_t **ni = realloc(c->items, sizeof(*ni) * (size_t)ncap);
		uint64_t *nu;
		uint32_t *ne, *ng;
		if (!ni)
			return victim;
		c->items = ni;
		nu = realloc(c->used, sizeof(*nu) * (size_t)ncap);
		if (!nu)
			return victim;
		c->used = nu;
		ne = realloc(c->epochs, sizeof(*ne) * (size_t)ncap);
		if (!ne)
			return victim;
		c->epochs = ne;
		ng = realloc(c->gens, sizeof(*ng) * (size_t)ncap);
		if (!ng)
			return victim;
		c->gens = ng;
		c->cap = ncap;
	}
	sp_pstmt_ref(ps);
	c->items[c->n] = ps;
	c->used[c->n] = ++c->clock;
	c->epochs[c->n] = ps->epoch;
	c->gens[c->n] = sp_pstmt_ddl_gen;
	c->n++;
	return victim;
}

void sp_pstmt_cache_remove(sp_pstmt_cache_t *c, sp_pstmt_t *ps)
{
	for (int i = 0; i < c->n; i++)
		if (c->items[i] == ps) {
			cache_drop_at(c, i);
			sp_pstmt_unref(ps);
			return;
		}
}

void sp_pstmt_cache_clear(sp_pstmt_cache_t *c)
{
	for (int i = 0; i < c->n; i++)
		sp_pstmt_unref(c->items[i]);
	free(c->items);
	free(c->used);
	free(c->epochs);
	free(c->gens);
	c->items = NULL;
	c->used = NULL;
	c->epochs = NULL;
	c->gens = NULL;
	c->n = c->cap = 0;
}

void sp_pstmt_reshaped(sp_pstmt_t *ps, sp_pstmt_cache_t *c, sp_pstmt_map_t *m)
{
	uint32_t old = ps->epoch++;
	for (int i = 0; c && i < c->n; i++)
		if (c->items[i] == ps && c->epochs[i] == old)
			c->epochs[i] = ps->epoch;
	for (int i = 0; m && i < m->n; i++)
		if (m->slots[i].ps == ps && m->slots[i].epoch == old)
			m->slots[i].epoch = ps->epoch;
}
