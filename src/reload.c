/*
 * reload.c - what a RELOAD (or SIGHUP) changes in the running configuration:
 * the comparison of the running configuration with the file just read, the
 * changes applied to live objects, and the list of changes that need a restart.
 *
 * Applied:
 * - the [shardpool] keys marked reloadable (sp_config_apply_reloadable);
 * - a [database] added: new clients may log in to it at once;
 * - a [database] removed: new logins get "database does not exist"; its
 *   connected clients keep working until they leave (their configuration
 *   entry stays, marked removed);
 * - a database's pool_size, pool_mode (for clients that log in after),
 *   min_pool_size, max_db_connections, read_replicas and primary_reads;
 * - a primary or replica line changed, a replica added or removed: pools
 *   point at the new entry, and when the server it names changed, their
 *   connections to the old one are closed when idle or as they are released
 *   (like RECONNECT), so a transaction running on it finishes there.
 *
 * Not applied (listed for the admin client, logged as WARNINGs): the other
 * [shardpool] keys, and a database's layout: shards, sharding, the range/list
 * bounds, default_shard and its [table] sections. Live objects depend on the
 * layout: a client's open transaction and its prepared statements hold routing
 * plans made by the old rule, so a changed rule would route the same table two
 * ways at once.
 *
 * Lifetimes: entries move, they are not copied. A changed server line is
 * swapped into the running entry (pools keep its address); a replica list of
 * another length replaces the old one, which stays allocated with the
 * configuration (sp_config_replace_replicas) because servers still connected
 * point into it; an added database moves from the new configuration to the
 * running one (sp_config_adopt_db).
 */
#include "reload.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pool.h"

typedef struct restart_list {
	char *buf; /* the caller's err buffer: "what; what; ..." */
	size_t cap, len;
	int n, left_out;
} restart_list_t;

static void needs_restart(restart_list_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void needs_restart(restart_list_t *r, const char *fmt, ...)
{
	char what[600];
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	sp_warn("%s: needs a restart", what);
	r->n++;
	n = strlen(what);
	/* keep room for the " and N more" of the end */
	if (r->cap < 80 || r->len + n + 2 >= r->cap - 64) {
		r->left_out++;
		return;
	}
	r->len += (size_t)snprintf(r->buf + r->len, r->cap - r->len, "%s%s", r->len ? "; " : "", what);
}

static bool node_same(const sp_node_conf_t *a, const sp_node_conf_t *b)
{
	return sp_config_same_server(a, b) && a->weight == b->weight && sp_config_str_same(a->conninfo, b->conninfo);
}

static const sp_shard_bound_t *bound_of(const sp_db_conf_t *db, int shard)
{
	for (int i = 0; i < db->n_bounds; i++)
		if (db->bounds[i].shard == shard)
			return &db->bounds[i];
	return NULL;
}

static bool bound_same(const sp_shard_bound_t *a, const sp_shard_bound_t *b)
{
	if (!a || !b)
		return a == b;
	if (!sp_config_str_same(a->lo, b->lo) || !sp_config_str_same(a->hi, b->hi) || a->n_values != b->n_values)
		return false;
	for (int i = 0; i < a->n_values; i++)
		if (!sp_config_str_same(a->values[i], b->values[i]))
			return false;
	return true;
}

static const sp_table_conf_t *table_of(const sp_db_conf_t *db, const sp_table_conf_t *like)
{
	for (int i = 0; i < db->n_tables; i++)
		if (sp_config_str_same(db->tables[i].schema, like->schema) && strcmp(db->tables[i].name, like->name) == 0)
			return &db->tables[i];
	return NULL;
}

static bool table_same(const sp_table_conf_t *a, const sp_table_conf_t *b)
{
	if (a->replicated != b->replicated || a->n_keys != b->n_keys)
		return false;
	for (int i = 0; i < a->n_keys; i++)
		if (strcmp(a->key_cols[i], b->key_cols[i]) != 0 || a->key_types[i] != b->key_types[i])
			return false;
	return true;
}

static void table_label(const sp_db_conf_t *db, const sp_table_conf_t *t, char *buf, size_t len)
{
	snprintf(buf, len, "[table %s.%s%s%s]", db->name, t->schema ? t->schema : "", t->schema ? "." : "", t->name);
}

/* List what differs in db's layout (not applied); true if nothing does. */
static bool layout_same(restart_list_t *r, const sp_db_conf_t *o, const sp_db_conf_t *n)
{
	char label[600];
	int before = r->n;
	if (o->n_shards != n->n_shards)
		needs_restart(r, "[database %s] shards changed (%d -> %d)", n->name, o->n_shards, n->n_shards);
	if (o->sharding != n->sharding)
		needs_restart(r, "[database %s] sharding changed", n->name);
	if (o->default_shard != n->default_shard)
		needs_restart(r, "[database %s] default_shard changed", n->name);
	for (int k = 0; k < n->n_shards && k < o->n_shards; k++)
		if (o->sharding == n->sharding && n->sharding != SP_SHARDING_HASH &&
		    !bound_same(bound_of(o, k), bound_of(n, k)))
			needs_restart(r, "[shard %s.%d] %s changed", n->name, k,
				      n->sharding == SP_SHARDING_RANGE ? "range" : "list");
	for (int i = 0; i < n->n_tables; i++) {
		const sp_table_conf_t *ot = table_of(o, &n->tables[i]);
		table_label(n, &n->tables[i], label, sizeof(label));
		if (!ot)
			needs_restart(r, "%s added", label);
		else if (!table_same(ot, &n->tables[i]))
			needs_restart(r, "%s changed", label);
	}
	for (int i = 0; i < o->n_tables; i++)
		if (!table_of(n, &o->tables[i])) {
			table_label(o, &o->tables[i], label, sizeof(label));
			needs_restart(r, "%s removed", label);
		}
	return r->n == before;
}

static void node_label(const sp_db_conf_t *db, int shard, int replica, char *buf, size_t len)
{
	if (replica < 0)
		snprintf(buf, len, "[shard %s.%d] primary", db->name, shard);
	else
		snprintf(buf, len, "[shard %s.%d] replica %d", db->name, shard, replica);
}

/* Swap the line just read into the running entry, whose address pools keep. */
static void reload_node(const sp_db_conf_t *db, int shard, int replica, sp_node_conf_t *run, sp_node_conf_t *fresh)
{
	char label[300];
	bool moved;
	sp_node_conf_t tmp;
	if (node_same(run, fresh))
		return;
	moved = !sp_config_same_server(run, fresh);
	node_label(db, shard, replica, label, sizeof(label));
	if (moved)
		sp_info("RELOAD: %s: now %s:%d (was %s:%d); connections to the old server close as they are released",
			label, fresh->host, fresh->port, run->host, run->port);
	else
		sp_info("RELOAD: %s: weight %d (was %d)", label, fresh->weight, run->weight);
	tmp = *run;
	*run = *fresh;
	*fresh = tmp; /* freed with the configuration just read */
	sp_pool_node_changed(run, moved);
}

static void reload_replicas(sp_config_t *run_cfg, const sp_db_conf_t *db, int k, sp_shard_conf_t *run,
			    sp_shard_conf_t *fresh)
{
	int n_was = run->n_replicas;
	if (fresh->n_replicas == n_was) {
		for (int i = 0; i < n_was; i++)
			reload_node(db, k, i, &run->replicas[i], &fresh->replicas[i]);
		return;
	}
	sp_info("RELOAD: [shard %s.%d]: %d replica%s (was %d)", db->name, k, fresh->n_replicas,
		fresh->n_replicas == 1 ? "" : "s", n_was);
	sp_config_replace_replicas(run_cfg, run, fresh);
	/* by index: a pool of replica i takes the new entry i; pools of replicas that are
	 * gone retire, still pointing into the old list, which keeps its address */
	for (int i = 0; i < n_was || i < run->n_replicas; i++)
		sp_pool_replica_reloaded(db->name, k, i, i < run->n_replicas ? &run->replicas[i] : NULL);
}

/* The keys of a [database] section that take effect at once. */
static void reload_db_keys(sp_db_conf_t *o, const sp_db_conf_t *n)
{
#define DB_KEY(field)                                                                                     \
	do {                                                                                              \
		if (o->field != n->field) {                                                               \
			sp_info("RELOAD: [database %s] " #field " %d (was %d)", n->name, (int)n->field,  \
				(int)o->field);                                                          \
			o->field = n->field;                                                              \
		}                                                                                         \
	} while (0)
	DB_KEY(pool_size);
	DB_KEY(pool_mode);
	DB_KEY(min_pool_size);
	DB_KEY(max_db_connections);
	DB_KEY(read_replicas);
	DB_KEY(primary_reads);
#undef DB_KEY
}

static void reload_db(restart_list_t *r, sp_config_t *run, sp_db_conf_t *o, sp_db_conf_t *n)
{
	bool same = layout_same(r, o, n);
	if (o->removed) {
		if (!same) {
			needs_restart(r, "[database %s] added again with another layout", n->name);
			return;
		}
		o->removed = false;
		sp_info("RELOAD: [database %s] added again", n->name);
	}
	reload_db_keys(o, n);
	if (o->n_shards == n->n_shards)
		for (int k = 0; k < n->n_shards; k++) {
			reload_node(o, k, -1, &o->shards[k].primary, &n->shards[k].primary);
			reload_replicas(run, o, k, &o->shards[k], &n->shards[k]);
		}
	sp_pool_db_reloaded(o);
}

int sp_reload_apply(sp_config_t *run, sp_config_t *fresh, char *err, size_t errlen)
{
	restart_list_t r = {err, errlen, 0, 0, 0};
	sp_config_item_t it;
	int n_run = run->n_dbs;

	if (errlen > 0)
		err[0] = 0;
	for (int i = 0; sp_config_key_at(i, &it); i++) {
		char a[512], b[512];
		const char *va, *vb;
		if (strcmp(it.section, "shardpool") != 0 || it.reloadable)
			continue;
		va = sp_config_value_str(run, it.name, a, sizeof(a));
		vb = sp_config_value_str(fresh, it.name, b, sizeof(b));
		if (!sp_config_str_same(va ? va : "", vb ? vb : ""))
			needs_restart(&r, "%s changed (%s -> %s)", it.name, va ? va : "", vb ? vb : "");
	}
	sp_config_apply_reloadable(run, fresh);

	for (int i = 0; i < n_run; i++) {
		sp_db_conf_t *o = run->dbs[i];
		if (!o->removed && !sp_config_find_db(fresh, o->name)) {
			o->removed = true;
			sp_info("RELOAD: [database %s] removed: no new logins; connected clients keep it until they leave",
				o->name);
		}
	}
	for (int i = 0; i < fresh->n_dbs; i++) {
		sp_db_conf_t *n = fresh->dbs[i];
		sp_db_conf_t *o = (sp_db_conf_t *)sp_config_find_db(run, n->name);
		if (o) {
			reload_db(&r, run, o, n);
		} else {
			sp_config_adopt_db(run, fresh, i);
			sp_info("RELOAD: [database %s] added (%d shard%s)", n->name, n->n_shards,
				n->n_shards == 1 ? "" : "s");
		}
	}
	if (r.left_out > 0 && r.len + 40 < errlen)
		snprintf(err + r.len, errlen - r.len, "; and %d more (see the log)", r.left_out);
	return r.n;
}
