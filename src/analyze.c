/*
 * analyze.c - the statement analyzer: libpg_query's parse tree (read as JSON
 * with json-c) turned into the plain structs of analyze.h.
 *
 * Owns: statement kinds, the read/write verdict, table references, shard key
 * extraction (a small algebra of key tuples over AND/OR, plus key = key
 * equalities that carry a pin from one table to another), INSERT rows, COPY
 * layout, the output shape of a SELECT, leading-comment hints, and the cheap
 * text helpers (first keyword, fingerprint, normalize).
 *
 * Invariants: everything a result points to lives in its arena or in the
 * json-c trees it keeps, all released by sp_analysis_free(); no static
 * mutable state (the built-in name lists are const and sorted for bsearch);
 * recursion over the tree is bounded because trees deeper than
 * SP_ANALYZE_MAX_DEPTH are refused before the walk. Out of memory inside the
 * analysis unwinds with longjmp to sp_analyze(), which frees and returns NULL;
 * all state the unwinding needs lives on the heap.
 *
 * Deliberately not done: catalog look-ups (the caller's callbacks stand in),
 * hashing keys to shards (shard_hash.c), deciding what to do with a verdict
 * (the router), deparsing (no rewriting here).
 *
 * libpg_query 15-4.0.0 quirk handled here: its JSON output drops Integer
 * values that are not positive, so A_Const 0 and negative integers print as
 * "ival":{}; such values are read back from the SQL text at the constant's
 * location (which points at the minus sign of a folded negative number).
 *
 * Measured on the project machine (2 cores, shared, gcc -O2; command in
 * test/bench/analyze_bench.c), CPU time per call for a 98-byte SELECT with a
 * key condition: sp_analyze about 35 us, of which pg_query_parse to JSON is
 * about 5 us, json-c tokenising and freeing the 1.3 kB tree about 22 us, and
 * this file's walk about 8 us. sp_analyze_normalize about 4 us,
 * sp_analyze_fingerprint about 7 us, sp_analyze_first_keyword and
 * sp_analyze_hints about 0.01 us. A 1 MB INSERT of 46,000 rows takes about
 * 0.4 s. json-c dominates; an arena JSON reader (or libpg_query's protobuf
 * output) would be the next step if misses of the plan cache matter.
 */
#include "analyze.h"

#include <json-c/json.h>
#include <pg_query.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ arena */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

struct jroot {
	struct jroot *next;
	json_object *obj;
};

struct arena {
	struct chunk *head;
	struct jroot *roots; /* json-c trees whose strings the result borrows */
	jmp_buf *oom;	     /* where to unwind on allocation failure */
};

static void *aalloc(struct arena *ar, size_t n)
{
	struct chunk *c = ar->head;

	n = (n + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < n) {
		size_t cap = c ? c->cap * 2 : 4096;

		if (cap > (1u << 20))
			cap = 1u << 20;
		if (cap < n)
			cap = n;
		c = malloc(sizeof(*c) + cap);
		if (!c) {
			if (ar->oom)
				longjmp(*ar->oom, 1);
			abort();
		}
		c->next = ar->head;
		c->used = 0;
		c->cap = cap;
		ar->head = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

static char *astrndup(struct arena *ar, const char *s, size_t n)
{
	char *p = aalloc(ar, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *astrdup(struct arena *ar, const char *s)
{
	return s ? astrndup(ar, s, strlen(s)) : NULL;
}

__attribute__((format(printf, 2, 3))) static char *aprintf(struct arena *ar, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return astrdup(ar, "");
	if ((size_t)n < sizeof(small))
		return astrndup(ar, small, (size_t)n);
	char *p = aalloc(ar, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

/* Grow an arena array to hold one more element; the old copy is left behind. */
static void *vgrow(struct arena *ar, void *old, int n, int *cap, size_t elem)
{
	if (n < *cap)
		return old;
	int ncap = *cap ? *cap * 2 : 8;
	void *p = aalloc(ar, (size_t)ncap * elem);
	if (n)
		memcpy(p, old, (size_t)n * elem);
	*cap = ncap;
	return p;
}

#define VPUSH(ar, arr, n, cap)                                                                     \
	((arr) = vgrow((ar), (arr), (n), &(cap), sizeof(*(arr))), &(arr)[(n)++])

static void arena_free(struct arena *ar)
{
	struct chunk *c = ar->head;
	struct jroot *r;

	/* the roots list itself lives in the chunks: walk it before freeing them */
	for (r = ar->roots; r; r = r->next)
		json_object_put(r->obj);
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	free(ar);
}

/* ------------------------------------------------------------------ lexing */

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool is_ident_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool is_ident_char(char ch)
{
	return is_ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '$';
}

/* see analyze.h */
const char *sp_sql_skip_comment(const char *p, bool *unterminated)
{
	if (unterminated)
		*unterminated = false;
	if (p[0] == '-' && p[1] == '-') {
		p += 2;
		while (*p && *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	if (p[0] == '/' && p[1] == '*') {
		int depth = 1; /* PostgreSQL's block comments nest */

		p += 2;
		while (*p && depth) {
			if (p[0] == '/' && p[1] == '*') {
				depth++;
				p += 2;
			} else if (p[0] == '*' && p[1] == '/') {
				depth--;
				p += 2;
			} else {
				p++;
			}
		}
		if (depth && unterminated)
			*unterminated = true;
		return p;
	}
	return p;
}

static const char *skip_ws(const char *p)
{
	for (;;) {
		while (is_space(*p))
			p++;
		const char *q = sp_sql_skip_comment(p, NULL);
		if (q == p)
			return p;
		p = q;
	}
}

/*
 * p at a quote or '$': returns the byte after the literal / quoted identifier
 * / dollar-quoted string, or p + 1 if it is not one. backslash: an E'' string.
 */
static const char *skip_quoted(const char *p, bool backslash)
{
	char q = *p;

	if (q == '\'' || q == '"') {
		p++;
		while (*p) {
			if (backslash && q == '\'' && *p == '\\' && p[1]) {
				p += 2;
			} else if (*p == q) {
				if (p[1] == q) {
					p += 2;
				} else {
					return p + 1;
				}
			} else {
				p++;
			}
		}
		return p;
	}
	if (q == '$') {
		const char *t = p + 1;

		if (*t >= '0' && *t <= '9')
			return p + 1; /* $1: a parameter */
		while (is_ident_char(*t) && *t != '$')
			t++;
		if (*t != '$')
			return p + 1;
		size_t taglen = (size_t)(t - p) + 1;
		const char *s = t + 1;
		while (*s) {
			if (*s == '$' && strncmp(s, p, taglen) == 0)
				return s + taglen;
			s++;
		}
		return s;
	}
	return p + 1;
}

/*
 * From p (a function name), find the parenthesised argument list and return
 * its inside as [*b, *e). False if there is none.
 */
static bool paren_args(const char *p, const char **b, const char **e)
{
	int depth = 0;

	while (*p) {
		const char *q = skip_ws(p);

		if (q != p) {
			p = q;
			continue;
		}
		char ch = *p;
		if (ch == '\'' || ch == '"' || ch == '$') {
			bool bs = (ch == '\'' && p > *b && (p[-1] == 'E' || p[-1] == 'e'));
			p = skip_quoted(p, bs);
			continue;
		}
		if (ch == '(') {
			if (depth++ == 0)
				*b = p + 1;
		} else if (ch == ')') {
			if (depth == 0)
				return false;
			if (--depth == 0) {
				*e = p;
				return true;
			}
		} else if (depth == 0 && !is_ident_char(ch) && ch != '.') {
			return false;
		}
		p++;
	}
	return false;
}

/*
 * PostgreSQL's scanner (scan.l, inside libpg_query) is quadratic on two
 * inputs: an operator-character run in code is re-scanned after every token
 * cut from it (trailing + and - are trimmed with yyless), and every comment
 * opener (slash-star) matches the whole operator run after it before
 * yyless(2) puts it back, so 100,000 nested comments take minutes.
 * lexer_cost() estimates that re-scanning in one linear pass; over
 * SCAN_BUDGET the input is refused before libpg_query sees it. Ordinary SQL
 * costs next to nothing: operators are one to three characters, a banner
 * comment holds one opener.
 */
#define SCAN_BUDGET 2000000u

static bool is_op_char(char ch)
{
	return ch && strchr("~!@#^&|`?+-*/%<>=", ch) != NULL;
}

static const char *op_run_end(const char *p)
{
	while (is_op_char(*p))
		p++;
	return p;
}

static uint64_t lexer_cost(const char *p)
{
	const char *start = p, *run_end = p;
	uint64_t cost = 0;
	int64_t depth = 0;

	while (*p) {
		if (p[0] == '/' && p[1] == '*') {
			if (p >= run_end)
				run_end = op_run_end(p);
			cost += (uint64_t)(run_end - p);
			depth++;
			p += 2;
			continue;
		}
		if (depth > 0) {
			if (p[0] == '*' && p[1] == '/') {
				depth--;
				p += 2;
			} else {
				p++;
			}
			continue;
		}
		char ch = *p;
		if (ch == '-' && p[1] == '-') {
			while (*p && *p != '\n' && *p != '\r')
				p++;
		} else if (ch == '\'' || ch == '"' || ch == '$') {
			bool bs = ch == '\'' && p > start && (p[-1] == 'E' || p[-1] == 'e');
			p = skip_quoted(p, bs);
		} else if (is_op_char(ch)) {
			const char *b = p;
			while (is_op_char(*p) && !(p[0] == '/' && p[1] == '*') &&
			       !(p[0] == '-' && p[1] == '-'))
				p++;
			uint64_t l = (uint64_t)(p - b);
			cost += l * (l - 1) / 2;
		} else {
			p++;
		}
	}
	return cost;
}

/* True if sql is cheap enough to hand to libpg_query. */
static bool scan_ok(const char *sql)
{
	return lexer_cost(sql) <= SCAN_BUDGET;
}

/* ------------------------------------------------------------------ hints */

static bool word_eq(const char *b, const char *e, const char *w)
{
	size_t n = (size_t)(e - b);
	return strlen(w) == n && strncasecmp(b, w, n) == 0;
}

static void parse_hint_body(const char *p, const char *end, sp_hints_t *h)
{
	if (p < end && *p == '+') /* tolerate pg_hint_plan-style comments */
		p++;
	while (p < end) {
		while (p < end && (is_space(*p) || *p == ','))
			p++;
		const char *kb = p;
		while (p < end && (is_ident_char(*p) || *p == '-'))
			p++;
		const char *ke = p;
		while (p < end && is_space(*p))
			p++;
		if (ke == kb || p >= end || (*p != ':' && *p != '=')) {
			/* not "key: value": skip to the next item */
			while (p < end && *p != ',')
				p++;
			continue;
		}
		p++;
		while (p < end && is_space(*p))
			p++;
		char val[SP_HINT_VALUE_MAX];
		size_t n = 0;
		bool toolong = false, quoted = false;
		if (p < end && *p == '\'') {
			quoted = true;
			p++;
			while (p < end) {
				if (*p == '\'') {
					if (p + 1 < end && p[1] == '\'') {
						p++;
					} else {
						p++;
						break;
					}
				}
				if (n + 1 < sizeof(val))
					val[n++] = *p;
				else
					toolong = true;
				p++;
			}
			while (p < end && *p != ',')
				p++;
		} else {
			const char *vb = p;
			while (p < end && *p != ',')
				p++;
			const char *ve = p;
			while (ve > vb && is_space(ve[-1]))
				ve--;
			n = (size_t)(ve - vb);
			if (n >= sizeof(val)) {
				toolong = true;
				n = 0;
			}
			memcpy(val, vb, n);
		}
		val[n] = '\0';

		if (word_eq(kb, ke, "shard")) {
			char *endp;
			long v = strtol(val, &endp, 10);
			if (!quoted && n > 0 && *endp == '\0' && val[0] >= '0' && val[0] <= '9' &&
			    v <= 0x7fffffffL)
				h->shard = (int)v;
			else
				h->error = "hint shard: expected a shard number";
		} else if (word_eq(kb, ke, "shard_key")) {
			if (toolong) {
				h->error = "hint shard_key: value too long";
			} else if (n == 0 && !quoted) {
				h->error = "hint shard_key: empty value";
			} else {
				memcpy(h->shard_key, val, n + 1);
				h->has_shard_key = true;
			}
		} else if (word_eq(kb, ke, "role")) {
			if (!strcasecmp(val, "primary") || !strcasecmp(val, "master"))
				h->role = SP_ROLE_HINT_PRIMARY;
			else if (!strcasecmp(val, "replica") || !strcasecmp(val, "standby"))
				h->role = SP_ROLE_HINT_REPLICA;
			else
				h->error = "hint role: expected primary or replica";
		}
	}
}

void sp_analyze_hints(const char *sql, sp_hints_t *h)
{
	const char *p = sql;

	memset(h, 0, sizeof(*h));
	h->shard = -1;
	if (!p)
		return;
	for (;;) {
		while (is_space(*p))
			p++;
		if (p[0] == '-' && p[1] == '-') {
			const char *e = sp_sql_skip_comment(p, NULL);
			parse_hint_body(p + 2, e, h);
			p = e;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = sp_sql_skip_comment(p, NULL);
			const char *be = e;
			if (be - p >= 4 && be[-1] == '/' && be[-2] == '*')
				be -= 2;
			parse_hint_body(p + 2, be, h);
			p = e;
		} else {
			return;
		}
	}
}

size_t sp_analyze_first_keyword(const char *sql, char *buf, size_t buflen, size_t *next)
{
	const char *p = sql, *q;
	size_t n, i;

	if (buflen)
		buf[0] = '\0';
	for (;;) {
		p = skip_ws(p);
		if (*p != '(')
			break;
		p++;
	}
	if (next)
		*next = (size_t)(p - sql);
	if (!is_ident_start(*p))
		return 0;
	for (q = p; is_ident_char(*q); q++)
		;
	n = (size_t)(q - p);
	if (n + 1 > buflen)
		return 0;
	for (i = 0; i < n; i++) {
		char ch = p[i];
		buf[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
	}
	buf[n] = '\0';
	if (next)
		*next = (size_t)(q - sql);
	return n;
}

/* ------------------------------------------------------------------ function sets */

struct sp_funcset {
	char **slots;
	size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = UINT64_C(14695981039346656037);
	while (*s) {
		h ^= (unsigned char)*s++;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

sp_funcset_t *sp_funcset_new(void)
{
	sp_funcset_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cap = 64;
	s->slots = calloc(s->cap, sizeof(char *));
	if (!s->slots) {
		free(s);
		return NULL;
	}
	return s;
}

bool sp_funcset_contains(const sp_funcset_t *s, const char *name)
{
	if (!s || !name)
		return false;
	size_t i = (size_t)fnv1a(name) & (s->cap - 1);
	while (s->slots[i]) {
		if (strcmp(s->slots[i], name) == 0)
			return true;
		i = (i + 1) & (s->cap - 1);
	}
	return false;
}

bool sp_funcset_add(sp_funcset_t *s, const char *name)
{
	if (!s || !name)
		return false;
	if (sp_funcset_contains(s, name))
		return true;
	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap * 2;
		char **ns = calloc(ncap, sizeof(char *));
		if (!ns)
			return false;
		for (size_t j = 0; j < s->cap; j++) {
			if (!s->slots[j])
				continue;
			size_t i = (size_t)fnv1a(s->slots[j]) & (ncap - 1);
			while (ns[i])
				i = (i + 1) & (ncap - 1);
			ns[i] = s->slots[j];
		}
		free(s->slots);
		s->slots = ns;
		s->cap = ncap;
	}
	char *copy = strdup(name);
	if (!copy)
		return false;
	size_t i = (size_t)fnv1a(name) & (s->cap - 1);
	while (s->slots[i])
		i = (i + 1) & (s->cap - 1);
	s->slots[i] = copy;
	s->n++;
	return true;
}

size_t sp_funcset_size(const sp_funcset_t *s)
{
	return s ? s->n : 0;
}

void sp_funcset_free(sp_funcset_t *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
	free(s);
}

/* Sorted (LC_ALL=C): functions that change state or need the primary. */
/* clang-format off */
static const char *const builtin_write_funcs[] = {
	"currval", "dblink", "dblink_exec", "dblink_open", "dblink_send_query", "lastval",
	"lo_close", "lo_creat", "lo_create", "lo_export", "lo_from_bytea", "lo_import",
	"lo_open", "lo_put", "lo_truncate", "lo_truncate64", "lo_unlink", "lowrite", "nextval",
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock",
	"pg_advisory_unlock_all", "pg_advisory_unlock_shared", "pg_advisory_xact_lock",
	"pg_advisory_xact_lock_shared", "pg_backup_start", "pg_backup_stop", "pg_cancel_backend",
	"pg_copy_logical_replication_slot", "pg_copy_physical_replication_slot",
	"pg_create_logical_replication_slot", "pg_create_physical_replication_slot",
	"pg_create_restore_point", "pg_current_wal_flush_lsn", "pg_current_wal_insert_lsn",
	"pg_current_wal_lsn", "pg_current_xact_id", "pg_current_xact_id_if_assigned",
	"pg_drop_replication_slot", "pg_file_rename", "pg_file_sync", "pg_file_unlink",
	"pg_file_write", "pg_import_system_collations", "pg_logical_emit_message",
	"pg_logical_slot_get_binary_changes", "pg_logical_slot_get_changes", "pg_notify",
	"pg_promote", "pg_reload_conf", "pg_replication_origin_advance",
	"pg_replication_origin_create", "pg_replication_origin_drop",
	"pg_replication_origin_session_setup", "pg_replication_slot_advance",
	"pg_rotate_logfile", "pg_start_backup", "pg_stat_reset",
	"pg_stat_reset_replication_slot", "pg_stat_reset_shared",
	"pg_stat_reset_single_function_counters", "pg_stat_reset_single_table_counters",
	"pg_stat_reset_slru", "pg_stop_backup", "pg_switch_wal", "pg_terminate_backend",
	"pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
	"pg_try_advisory_xact_lock_shared", "pg_walfile_name", "pg_walfile_name_offset",
	"set_config", "setval", "txid_current", "txid_current_if_assigned",
};
/* clang-format on */

/* Sorted: volatile in pg_proc, but they only read (or are not repeatable): fine on a
 * replica. Replica state and size functions are here so that placement can be
 * checked with pg_is_in_recovery() through shardpool. */
/* clang-format off */
static const char *const builtin_read_safe_funcs[] = {
	"clock_timestamp", "current_query", "gen_random_uuid", "pg_blocking_pids",
	"pg_collation_actual_version", "pg_control_checkpoint", "pg_control_init",
	"pg_control_recovery", "pg_control_system", "pg_current_logfile", "pg_current_snapshot",
	"pg_database_collation_actual_version", "pg_database_size", "pg_get_backend_memory_contexts",
	"pg_get_multixact_members", "pg_get_shmem_allocations", "pg_get_wal_replay_pause_state",
	"pg_get_wal_resource_managers", "pg_hba_file_rules", "pg_ident_file_mappings",
	"pg_indexes_size", "pg_is_in_recovery", "pg_is_wal_replay_paused", "pg_jit_available",
	"pg_last_committed_xact", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn",
	"pg_last_xact_replay_timestamp", "pg_lock_status", "pg_notification_queue_usage",
	"pg_partition_ancestors", "pg_partition_tree", "pg_prepared_xact", "pg_relation_size",
	"pg_safe_snapshot_blocking_pids", "pg_sequence_last_value", "pg_show_all_file_settings",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_stat_clear_snapshot",
	"pg_stat_get_recovery_prefetch", "pg_stat_get_xact_blocks_fetched",
	"pg_stat_get_xact_blocks_hit", "pg_stat_get_xact_function_calls",
	"pg_stat_get_xact_function_self_time", "pg_stat_get_xact_function_total_time",
	"pg_stat_get_xact_numscans", "pg_stat_get_xact_tuples_deleted",
	"pg_stat_get_xact_tuples_fetched", "pg_stat_get_xact_tuples_hot_updated",
	"pg_stat_get_xact_tuples_inserted", "pg_stat_get_xact_tuples_returned",
	"pg_stat_get_xact_tuples_updated", "pg_stat_have_stats", "pg_table_size",
	"pg_tablespace_size", "pg_total_relation_size", "pg_xact_commit_timestamp",
	"pg_xact_commit_timestamp_origin", "pg_xact_status", "query_to_xml",
	"query_to_xml_and_xmlschema", "query_to_xmlschema", "random", "random_normal", "setseed",
	"timeofday", "ts_stat", "txid_current_snapshot", "txid_status", "uuid_generate_v1",
	"uuid_generate_v1mc", "uuid_generate_v4",
};
/* clang-format on */

/* Sorted: built-in aggregate function names. */
/* clang-format off */
static const char *const builtin_aggs[] = {
	"any_value", "array_agg", "avg", "bit_and", "bit_or", "bit_xor",
	"bool_and", "bool_or", "corr", "count", "covar_pop", "covar_samp", "cume_dist",
	"dense_rank", "every", "json_agg", "json_object_agg", "jsonb_agg", "jsonb_object_agg",
	"max", "min", "mode", "percent_rank", "percentile_cont", "percentile_disc", "range_agg",
	"range_intersect_agg", "rank", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept",
	"regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy", "stddev", "stddev_pop",
	"stddev_samp", "string_agg", "sum", "var_pop", "var_samp", "variance", "xmlagg",
};
/* clang-format on */

static int cmp_name(const void *key, const void *elem)
{
	return strcmp((const char *)key, *(const char *const *)elem);
}

static bool in_list(const char *const *list, size_t n, const char *name)
{
	return name && bsearch(name, list, n, sizeof(list[0]), cmp_name) != NULL;
}

#define IN_LIST(list, name) in_list((list), sizeof(list) / sizeof((list)[0]), (name))

/* ------------------------------------------------------------------ JSON access */

static json_object *jget(json_object *o, const char *k)
{
	json_object *v;

	if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, k, &v))
		return v;
	return NULL;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v = jget(o, k);
	return (v && json_object_is_type(v, json_type_string)) ? json_object_get_string(v) : NULL;
}

static int jint(json_object *o, const char *k, int def)
{
	json_object *v = jget(o, k);
	return (v && json_object_is_type(v, json_type_int)) ? json_object_get_int(v) : def;
}

static bool jbool(json_object *o, const char *k)
{
	json_object *v = jget(o, k);
	return v && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

static int jlen(json_object *a)
{
	return (a && json_object_is_type(a, json_type_array)) ? (int)json_object_array_length(a)
							      : 0;
}

static json_object *jat(json_object *a, int i)
{
	return json_object_array_get_idx(a, (size_t)i);
}

/* A node is an object with one key, its type: {"SelectStmt": {...}}. */
static const char *node_type(json_object *n, json_object **body)
{
	struct lh_table *t;

	if (!n || !json_object_is_type(n, json_type_object))
		return NULL;
	t = json_object_get_object(n);
	if (!t || !t->head || t->head != t->tail)
		return NULL;
	if (body)
		*body = (json_object *)lh_entry_v(t->head);
	return (const char *)lh_entry_k(t->head);
}

static json_object *node_as(json_object *n, const char *type)
{
	json_object *b;
	const char *t = node_type(n, &b);
	return (t && strcmp(t, type) == 0) ? b : NULL;
}

/* {"String": {"sval": "x"}} -> "x" */
static const char *str_node(json_object *n)
{
	json_object *b = node_as(n, "String");
	if (!b)
		return NULL;
	const char *s = jstr(b, "sval");
	return s ? s : "";
}

/* Depth of JSON nesting, without parsing it. */
static int json_depth(const char *s)
{
	int d = 0, max = 0;

	for (; *s; s++) {
		char ch = *s;
		if (ch == '"') {
			for (s++; *s && *s != '"'; s++)
				if (*s == '\\' && s[1])
					s++;
			if (!*s)
				break;
		} else if (ch == '{' || ch == '[') {
			if (++d > max)
				max = d;
		} else if (ch == '}' || ch == ']') {
			d--;
		}
	}
	return max;
}

/* ------------------------------------------------------------------ analysis state */

struct item { /* a FROM item visible by name at one query level */
	const char *refname;
	const char *schema; /* of an unaliased table, to match schema.table.col */
	int table;	    /* index in tables, -1 for a subquery, CTE, function, join alias */
};

struct cond {
	json_object *expr;
	bool outer;	/* an outer join's ON clause */
	int n_lo, n_hi; /* outer: tables [n_lo, n_hi) form its nullable side */
	int p_lo, p_hi; /* outer: and [p_lo, p_hi) its preserved side */
};

struct scope {
	struct scope *parent;
	struct item *items;
	int n_items, cap_items;
	const char **ctes;
	int n_ctes, cap_ctes;
	int *local; /* tables of this level's FROM (and DML target) */
	int n_local, cap_local;
	struct cond *conds;
	int n_conds, cap_conds;
};

struct edge { /* tables[to] may take tables[from]'s keys if all key positions are equated */
	int from, to, k;
};

struct tinfo {
	bool nullable; /* on the nullable side of an outer join of its level */
	bool fixed;    /* keys set by the statement itself (INSERT rows): not recomputed */
};

struct ctx {
	struct arena *ar;
	const sp_analyze_opts_t *opts;
	const char *src; /* the text that locations refer to */
	size_t src_len;
	int base;     /* offset of src in the caller's input */
	int depth;    /* nesting of subqueries, CTEs, derived tables, set-operation arms */
	int stmt_end; /* end of the current statement in src */
	sp_stmt_t *st;
	sp_table_ref_t *tables;
	struct tinfo *ti;
	int n_tables, cap_tables, cap_ti;
	struct edge *edges;
	int n_edges, cap_edges;
	/* sp_analyze's resources, on the heap so that longjmp leaves them intact */
	PgQueryParseResult pr;
	bool pr_live;
	bool unknown_funcs; /* see sp_analysis_t */
	const char *shape_from; /* the shape being built reads one table: its alias or name */
	jmp_buf oom;
};

static void set_write(struct ctx *c, const char *why)
{
	if (!c->st->is_write) {
		c->st->is_write = true;
		c->st->write_reason = why;
	}
}

static struct scope *new_scope(struct ctx *c, struct scope *parent)
{
	struct scope *s = aalloc(c->ar, sizeof(*s));
	s->parent = parent;
	return s;
}

static bool cte_visible(struct scope *s, const char *name)
{
	for (; s; s = s->parent)
		for (int i = 0; i < s->n_ctes; i++)
			if (strcmp(s->ctes[i], name) == 0)
				return true;
	return false;
}

static void add_item(struct ctx *c, struct scope *s, const char *refname, const char *schema,
		     int table)
{
	struct item *it = VPUSH(c->ar, s->items, s->n_items, s->cap_items);
	it->refname = refname;
	it->schema = schema;
	it->table = table;
	if (table >= 0)
		*VPUSH(c->ar, s->local, s->n_local, s->cap_local) = table;
}

static bool is_local(struct scope *s, int t)
{
	for (int i = 0; i < s->n_local; i++)
		if (s->local[i] == t)
			return true;
	return false;
}

/* True for a table whose key the analysis tracks. */
static bool sharded(struct ctx *c, int t)
{
	return c->tables[t].keys.state != SP_PIN_NOT_SHARDED && c->tables[t].conf &&
	       c->tables[t].conf->n_keys <= SP_ANALYZE_MAX_KEYS;
}

static int key_index(const sp_table_conf_t *conf, const char *col)
{
	if (!conf || !col)
		return -1;
	for (int i = 0; i < conf->n_keys && i < SP_ANALYZE_MAX_KEYS; i++)
		if (conf->key_cols[i] && strcmp(conf->key_cols[i], col) == 0)
			return i;
	return -1;
}

static int add_table(struct ctx *c, const char *schema, const char *name, const char *alias,
		     unsigned bits, int loc)
{
	sp_table_ref_t *r = VPUSH(c->ar, c->tables, c->n_tables, c->cap_tables);
	int t = c->n_tables - 1;
	int n_ti = t;
	struct tinfo *ti = VPUSH(c->ar, c->ti, n_ti, c->cap_ti);

	(void)ti;
	r->schema = schema;
	r->name = name;
	r->alias = alias;
	r->ctx = bits | (c->depth > 0 ? SP_TABLE_NESTED : 0u);
	r->location = loc >= 0 ? c->base + loc : -1;
	r->pinned_via = -1;
	if (c->opts && c->opts->table_lookup)
		r->conf = c->opts->table_lookup(c->opts->table_arg, schema, name);
	if (r->conf && !r->conf->replicated && r->conf->n_keys > 0) {
		r->keys.state = SP_PIN_ALL;
		r->keys.n_keys = r->conf->n_keys;
		if (r->conf->n_keys > SP_ANALYZE_MAX_KEYS)
			r->keys.why = "more key columns than the analyzer tracks";
		else
			r->keys.why = aprintf(c->ar, "no usable condition on its key column %s",
					      r->conf->key_cols[0]);
	}
	return t;
}

static int add_rangevar(struct ctx *c, json_object *rv, unsigned bits)
{
	const char *alias = jstr(jget(rv, "alias"), "aliasname");
	return add_table(c, jstr(rv, "schemaname"), jstr(rv, "relname"), alias, bits,
			 jint(rv, "location", -1));
}

static void add_edge(struct ctx *c, int from, int to, int k)
{
	struct edge *e = VPUSH(c->ar, c->edges, c->n_edges, c->cap_edges);
	e->from = from;
	e->to = to;
	e->k = k;
}

/* ------------------------------------------------------------------ values */

/*
 * libpg_query prints Integer nodes <= 0 as {}: read the number at loc in the
 * SQL text (a folded "- 5" starts at the minus sign).
 */
static const char *recover_int(struct ctx *c, int loc)
{
	const char *p;
	bool neg = false;

	if (loc < 0 || (size_t)loc >= c->src_len)
		return "0";
	p = c->src + loc;
	for (;;) {
		p = skip_ws(p);
		if (*p == '-')
			neg = !neg;
		else if (*p != '+' && *p != '(')
			break;
		p++;
	}
	while (*p == '0')
		p++;
	const char *d = p;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == d)
		return "0";
	return aprintf(c->ar, "%s%.*s", neg ? "-" : "", (int)(p - d), d);
}

static void const_value(struct ctx *c, json_object *b, sp_value_t *v)
{
	json_object *x;

	v->kind = SP_VAL_CONST;
	if (jbool(b, "isnull")) {
		v->kind = SP_VAL_NULL;
	} else if ((x = jget(b, "ival"))) {
		json_object *iv = jget(x, "ival");
		v->lit = SP_LIT_INT;
		if (iv)
			v->text = aprintf(c->ar, "%d", json_object_get_int(iv));
		else
			v->text = recover_int(c, jint(b, "location", -1));
	} else if ((x = jget(b, "fval"))) {
		v->lit = SP_LIT_NUMERIC;
		v->text = jstr(x, "fval");
		if (!v->text)
			v->text = "0";
	} else if ((x = jget(b, "sval"))) {
		v->lit = SP_LIT_STRING;
		v->text = jstr(x, "sval");
		if (!v->text)
			v->text = "";
	} else if ((x = jget(b, "boolval"))) {
		v->lit = SP_LIT_BOOL;
		v->text = jbool(x, "boolval") ? "true" : "false";
	} else if ((x = jget(b, "bsval"))) {
		v->lit = SP_LIT_BITS;
		v->text = jstr(x, "bsval");
		if (!v->text)
			v->text = "";
	} else {
		v->kind = SP_VAL_EXPR;
	}
}

/* "a.b.c" of a ColumnRef (or NULL for a.*). */
static const char *colref_text(struct ctx *c, json_object *b)
{
	json_object *f = jget(b, "fields");
	size_t len = 0;
	int n = jlen(f);

	for (int i = 0; i < n; i++) {
		const char *s = str_node(jat(f, i));
		if (!s)
			return NULL;
		len += strlen(s) + 1;
	}
	if (!n)
		return NULL;
	char *out = aalloc(c->ar, len), *p = out;
	for (int i = 0; i < n; i++) {
		const char *s = str_node(jat(f, i));
		size_t l = strlen(s);
		if (i)
			*p++ = '.';
		memcpy(p, s, l);
		p += l;
	}
	*p = '\0';
	return out;
}

static const char *type_name_str(struct ctx *c, json_object *tn)
{
	json_object *names = jget(tn, "names");
	int n = jlen(names);
	const char *last = n ? str_node(jat(names, n - 1)) : NULL;

	if (!last)
		return NULL;
	if (jlen(jget(tn, "arrayBounds")) > 0)
		return aprintf(c->ar, "%s[]", last);
	return last;
}

static void note_param(struct ctx *c, int n)
{
	if (n > c->st->max_param)
		c->st->max_param = n;
}

static bool value_usable(const sp_value_t *v)
{
	return v->kind == SP_VAL_CONST || v->kind == SP_VAL_PARAM || v->kind == SP_VAL_NULL;
}

/* A number, or a string such as '9' cast to a number type ("-'9'::int" folds to -9). */
static bool numeric_text(const sp_value_t *v)
{
	char *end;

	if (v->lit == SP_LIT_INT || v->lit == SP_LIT_NUMERIC)
		return true;
	if (v->lit != SP_LIT_STRING || !v->cast || !v->text[0] || is_space(v->text[0]))
		return false;
	(void)strtod(v->text, &end);
	return *end == '\0' && v->text[0] != '-' && v->text[0] != '+';
}

static void get_value(struct ctx *c, json_object *n, sp_value_t *v)
{
	json_object *b;
	const char *t = node_type(n, &b);

	memset(v, 0, sizeof(*v));
	v->kind = SP_VAL_EXPR;
	if (!t)
		return;
	if (!strcmp(t, "A_Const")) {
		const_value(c, b, v);
	} else if (!strcmp(t, "ParamRef")) {
		v->kind = SP_VAL_PARAM;
		v->param = jint(b, "number", 0);
		note_param(c, v->param);
	} else if (!strcmp(t, "TypeCast")) {
		get_value(c, jget(b, "arg"), v);
		if (value_usable(v)) {
			json_object *tn = jget(b, "typeName");
			v->cast = type_name_str(c, tn);
			/* char(n), varchar(n) and "char" may cut the value: marked "name(n)" */
			if (v->cast && ((jlen(jget(tn, "typmods")) > 0 &&
					 (!strcmp(v->cast, "bpchar") || !strcmp(v->cast, "varchar"))) ||
					!strcmp(v->cast, "char")))
				v->cast = aprintf(c->ar, "%s(n)", v->cast);
		} else {
			memset(v, 0, sizeof(*v));
			v->kind = SP_VAL_EXPR;
		}
	} else if (!strcmp(t, "SetToDefault")) {
		v->kind = SP_VAL_DEFAULT;
	} else if (!strcmp(t, "A_Expr") && !jget(b, "lexpr") &&
		   !strcmp(jstr(b, "kind") ? jstr(b, "kind") : "", "AEXPR_OP") &&
		   jlen(jget(b, "name")) == 1) {
		const char *op = str_node(jat(jget(b, "name"), 0));
		sp_value_t in;
		get_value(c, jget(b, "rexpr"), &in);
		if (op && in.kind == SP_VAL_CONST && numeric_text(&in) &&
		    (!strcmp(op, "-") || !strcmp(op, "+"))) {
			*v = in;
			if (!strcmp(op, "-")) {
				if (in.text[0] == '-')
					v->text = in.text + 1;
				else if (strcmp(in.text, "0") != 0)
					v->text = aprintf(c->ar, "-%s", in.text);
			}
		}
	} else if (!strcmp(t, "ColumnRef")) {
		v->text = colref_text(c, b);
	}
}

static bool value_eq(const sp_value_t *a, const sp_value_t *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case SP_VAL_CONST:
		return strcmp(a->text, b->text) == 0;
	case SP_VAL_PARAM:
		return a->param == b->param && a->array == b->array;
	default:
		return true;
	}
}

/* ------------------------------------------------------------------ key tuple sets */

/*
 * A set of partial assignments to the key columns of one table: the rows that
 * satisfy a condition have keys matching one of them. "all" is the
 * unconstrained set. A NULL slot is an unassigned column.
 */
struct kset {
	bool all;
	int n;
	const sp_value_t **a; /* n * nk */
	const char *why;
};

static struct kset ks_all(const char *why)
{
	struct kset k = {.all = true, .why = why};
	return k;
}

static struct kset ks_one(struct ctx *c, int nk, int k, const sp_value_t *v)
{
	struct kset s = {.n = 1};
	s.a = aalloc(c->ar, sizeof(*s.a) * (size_t)nk);
	s.a[k] = v;
	return s;
}

static struct kset ks_and(struct ctx *c, struct kset x, struct kset y, int nk)
{
	if (x.all && y.all)
		return x.why ? x : y;
	if (x.all)
		return y;
	if (y.all)
		return x;
	if ((long)x.n * y.n > SP_ANALYZE_MAX_PIN)
		return ks_all("too many key values");
	struct kset r = {.n = x.n * y.n};
	r.a = aalloc(c->ar, sizeof(*r.a) * (size_t)r.n * (size_t)nk);
	for (int i = 0; i < x.n; i++) {
		for (int j = 0; j < y.n; j++) {
			const sp_value_t **d = r.a + ((size_t)i * y.n + j) * nk;
			for (int k = 0; k < nk; k++) {
				/* both set and different: no row can match; either is correct */
				d[k] = x.a[i * nk + k] ? x.a[i * nk + k] : y.a[j * nk + k];
			}
		}
	}
	return r;
}

static struct kset ks_or(struct ctx *c, struct kset x, struct kset y, int nk)
{
	if (x.all)
		return ks_all(x.why ? x.why : "OR with a condition that does not fix the key");
	if (y.all)
		return ks_all("OR with a condition that does not fix the key");
	if (x.n + y.n > SP_ANALYZE_MAX_PIN)
		return ks_all("too many key values");
	struct kset r = {.n = x.n + y.n};
	r.a = aalloc(c->ar, sizeof(*r.a) * (size_t)r.n * (size_t)nk);
	memcpy(r.a, x.a, sizeof(*r.a) * (size_t)x.n * (size_t)nk);
	memcpy(r.a + (size_t)x.n * nk, y.a, sizeof(*r.a) * (size_t)y.n * (size_t)nk);
	return r;
}

/* Resolved key column references. */
struct keyref {
	int table, k;
};

/* Resolve a ColumnRef body to key columns of sharded tables; returns the count. */
static int resolve_key(struct ctx *c, struct scope *s, json_object *cref, struct keyref *out,
		       int max)
{
	json_object *f = jget(cref, "fields");
	int nf = jlen(f), n = 0;
	const char *col, *rel, *schema;

	if (nf < 1)
		return 0;
	col = str_node(jat(f, nf - 1));
	if (!col)
		return 0; /* a.* */
	if (nf == 1) {
		for (int i = 0; i < s->n_items && n < max; i++) {
			int t = s->items[i].table;
			if (t < 0 || !sharded(c, t))
				continue;
			int k = key_index(c->tables[t].conf, col);
			if (k >= 0) {
				out[n].table = t;
				out[n].k = k;
				n++;
			}
		}
		return n;
	}
	rel = str_node(jat(f, nf - 2));
	schema = nf >= 3 ? str_node(jat(f, nf - 3)) : NULL;
	if (!rel)
		return 0;
	for (; s; s = s->parent) {
		for (int i = 0; i < s->n_items; i++) {
			struct item *it = &s->items[i];
			if (!it->refname || strcmp(it->refname, rel) != 0)
				continue;
			if (schema && (!it->schema || strcmp(it->schema, schema) != 0))
				continue;
			if (it->table < 0 || !sharded(c, it->table))
				return 0;
			int k = key_index(c->tables[it->table].conf, col);
			if (k < 0)
				return 0;
			out[0].table = it->table;
			out[0].k = k;
			return 1;
		}
	}
	return 0;
}

/* Which key column of table t does node n name (-1: none)? */
static int key_of(struct ctx *c, struct scope *s, json_object *n, int t)
{
	json_object *b = node_as(n, "ColumnRef");
	struct keyref r[16];

	if (!b)
		return -1;
	int m = resolve_key(c, s, b, r, 16);
	for (int i = 0; i < m; i++)
		if (r[i].table == t)
			return r[i].k;
	return -1;
}

static struct kset ks_eval(struct ctx *c, struct scope *s, json_object *e, int t, int nk);

/* x = y where one side is t's key column and the other a usable value. */
static struct kset ks_pair(struct ctx *c, struct scope *s, json_object *x, json_object *y, int t,
			   int nk)
{
	json_object *rx = node_as(x, "RowExpr"), *ry = node_as(y, "RowExpr");

	if (rx && ry) {
		json_object *ax = jget(rx, "args"), *ay = jget(ry, "args");
		int n = jlen(ax);
		struct kset r = ks_all(NULL);
		if (n != jlen(ay))
			return ks_all(NULL);
		for (int i = 0; i < n; i++)
			r = ks_and(c, r, ks_pair(c, s, jat(ax, i), jat(ay, i), t, nk), nk);
		return r;
	}
	int k = key_of(c, s, x, t);
	json_object *other = y;
	if (k < 0) {
		k = key_of(c, s, y, t);
		other = x;
	}
	if (k < 0)
		return ks_all(NULL);
	if (node_as(other, "ColumnRef"))
		return ks_all(NULL); /* a join condition: edges handle it */
	sp_value_t *v = aalloc(c->ar, sizeof(*v));
	get_value(c, other, v);
	if (!value_usable(v))
		return ks_all(aprintf(c->ar, "key column %s compared with an expression",
				      c->tables[t].conf->key_cols[k]));
	return ks_one(c, nk, k, v);
}

/* Elements of an array literal '{1,2,"x y"}'; false if it is not a plain 1-D one. */
static bool array_literal(struct ctx *c, const char *s, const char *cast, sp_value_t **out,
			  int *n_out)
{
	int n = 0, cap = 0;
	sp_value_t *vals = NULL;
	const char *p = s;

	while (is_space(*p))
		p++;
	if (*p++ != '{')
		return false;
	while (is_space(*p))
		p++;
	if (*p == '}') {
		*out = NULL;
		*n_out = 0;
		return true;
	}
	for (;;) {
		while (is_space(*p))
			p++;
		sp_value_t *v = VPUSH(c->ar, vals, n, cap);
		v->kind = SP_VAL_CONST;
		v->lit = SP_LIT_STRING;
		v->cast = cast;
		if (*p == '"') {
			size_t len = 0;
			const char *q;
			for (q = p + 1; *q && *q != '"'; q++) {
				if (*q == '\\' && q[1])
					q++;
				len++;
			}
			if (*q != '"')
				return false;
			char *d = aalloc(c->ar, len + 1), *w = d;
			for (q = p + 1; *q != '"'; q++) {
				if (*q == '\\')
					q++;
				*w++ = *q;
			}
			v->text = d;
			p = q + 1;
		} else {
			const char *q = p;
			while (*q && *q != ',' && *q != '}' && *q != '{' && *q != '"')
				q++;
			if (*q == '{' || *q == '"' || !*q)
				return false;
			const char *e = q;
			while (e > p && is_space(e[-1]))
				e--;
			if (e == p)
				return false;
			if (e - p == 4 && strncasecmp(p, "null", 4) == 0)
				v->kind = SP_VAL_NULL;
			else
				v->text = astrndup(c->ar, p, (size_t)(e - p));
			p = q;
		}
		while (is_space(*p))
			p++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p != '}')
			return false;
		p++;
		while (is_space(*p))
			p++;
		if (*p)
			return false;
		break;
	}
	*out = vals;
	*n_out = n;
	return true;
}

/* key = ANY(array): the array as a set of values. */
static struct kset ks_any(struct ctx *c, json_object *arr, int nk, int k, const char *cast)
{
	json_object *b;
	const char *t = node_type(arr, &b);
	struct kset r = {.n = 0};

	if (!t)
		return ks_all(NULL);
	if (!strcmp(t, "TypeCast")) {
		const char *tn = type_name_str(c, jget(b, "typeName"));
		if (tn) {
			size_t l = strlen(tn);
			if (l > 2 && !strcmp(tn + l - 2, "[]"))
				tn = astrndup(c->ar, tn, l - 2);
		}
		return ks_any(c, jget(b, "arg"), nk, k, tn);
	}
	if (!strcmp(t, "ParamRef")) {
		sp_value_t *v = aalloc(c->ar, sizeof(*v));
		v->kind = SP_VAL_PARAM;
		v->array = true;
		v->param = jint(b, "number", 0);
		v->cast = cast;
		note_param(c, v->param);
		return ks_one(c, nk, k, v);
	}
	if (!strcmp(t, "A_ArrayExpr")) {
		json_object *el = jget(b, "elements");
		int n = jlen(el);
		if (n > SP_ANALYZE_MAX_PIN)
			return ks_all("too many key values");
		r.n = n;
		r.a = aalloc(c->ar, sizeof(*r.a) * (size_t)(n ? n : 1) * (size_t)nk);
		for (int i = 0; i < n; i++) {
			sp_value_t *v = aalloc(c->ar, sizeof(*v));
			get_value(c, jat(el, i), v);
			if (!value_usable(v))
				return ks_all("key compared with an array holding expressions");
			if (!v->cast)
				v->cast = cast;
			r.a[(size_t)i * nk + k] = v;
		}
		return r;
	}
	if (!strcmp(t, "A_Const")) {
		sp_value_t lit, *vals;
		int n;
		const_value(c, b, &lit);
		if (lit.kind != SP_VAL_CONST || lit.lit != SP_LIT_STRING ||
		    !array_literal(c, lit.text, cast, &vals, &n))
			return ks_all("key compared with an array the analyzer cannot read");
		if (n > SP_ANALYZE_MAX_PIN)
			return ks_all("too many key values");
		r.n = n;
		r.a = aalloc(c->ar, sizeof(*r.a) * (size_t)(n ? n : 1) * (size_t)nk);
		for (int i = 0; i < n; i++)
			r.a[(size_t)i * nk + k] = &vals[i];
		return r;
	}
	return ks_all(NULL);
}

static struct kset ks_eval(struct ctx *c, struct scope *s, json_object *e, int t, int nk)
{
	json_object *b;
	const char *type = node_type(e, &b);

	if (!type)
		return ks_all(NULL);
	if (!strcmp(type, "BoolExpr")) {
		const char *op = jstr(b, "boolop");
		json_object *args = jget(b, "args");
		int n = jlen(args);
		if (op && !strcmp(op, "AND_EXPR")) {
			struct kset r = ks_all(NULL);
			for (int i = 0; i < n; i++)
				r = ks_and(c, r, ks_eval(c, s, jat(args, i), t, nk), nk);
			return r;
		}
		if (op && !strcmp(op, "OR_EXPR") && n > 0) {
			struct kset r = ks_eval(c, s, jat(args, 0), t, nk);
			for (int i = 1; i < n && !r.all; i++)
				r = ks_or(c, r, ks_eval(c, s, jat(args, i), t, nk), nk);
			if (r.all && !r.why)
				r.why = "OR with a condition that does not fix the key";
			return r;
		}
		return ks_all(NULL);
	}
	if (!strcmp(type, "A_Expr")) {
		const char *kind = jstr(b, "kind");
		json_object *name = jget(b, "name");
		const char *op = jlen(name) == 1 ? str_node(jat(name, 0)) : NULL;
		json_object *l = jget(b, "lexpr"), *r = jget(b, "rexpr");
		if (!kind || !op || strcmp(op, "=") != 0 || !l || !r)
			return ks_all(NULL);
		if (!strcmp(kind, "AEXPR_OP"))
			return ks_pair(c, s, l, r, t, nk);
		if (!strcmp(kind, "AEXPR_IN")) {
			json_object *items = jget(node_as(r, "List"), "items");
			int n = jlen(items);
			if (!n)
				return ks_all(NULL);
			struct kset acc = ks_pair(c, s, l, jat(items, 0), t, nk);
			for (int i = 1; i < n && !acc.all; i++)
				acc = ks_or(c, acc, ks_pair(c, s, l, jat(items, i), t, nk), nk);
			return acc;
		}
		if (!strcmp(kind, "AEXPR_OP_ANY")) {
			int k = key_of(c, s, l, t);
			if (k < 0)
				return ks_all(NULL);
			return ks_any(c, r, nk, k, NULL);
		}
		return ks_all(NULL);
	}
	if (!strcmp(type, "NullTest")) {
		const char *nt = jstr(b, "nulltesttype");
		int k = key_of(c, s, jget(b, "arg"), t);
		if (k < 0 || !nt || strcmp(nt, "IS_NULL") != 0)
			return ks_all(NULL);
		sp_value_t *v = aalloc(c->ar, sizeof(*v));
		v->kind = SP_VAL_NULL;
		return ks_one(c, nk, k, v);
	}
	return ks_all(NULL);
}

/* Tuple hashing for dedupe and set comparison. */
static uint64_t tuple_hash(const sp_value_t *const *tup, int nk)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (int k = 0; k < nk; k++) {
		const sp_value_t *v = tup[k];
		h = (h ^ (uint64_t)v->kind) * UINT64_C(1099511628211);
		if (v->kind == SP_VAL_CONST)
			h = (h ^ fnv1a(v->text)) * UINT64_C(1099511628211);
		else if (v->kind == SP_VAL_PARAM)
			h = (h ^ ((uint64_t)(uint32_t)v->param * 2 + (uint64_t)v->array)) * UINT64_C(1099511628211);
	}
	return h;
}

static bool tuple_eq(const sp_value_t *const *x, const sp_value_t *const *y, int nk)
{
	for (int k = 0; k < nk; k++)
		if (!value_eq(x[k], y[k]))
			return false;
	return true;
}

/* Open-addressing index of tuples (slots hold tuple numbers + 1). */
struct tindex {
	int *slots;
	size_t cap;
};

static void tindex_init(struct ctx *c, struct tindex *ix, int n)
{
	ix->cap = 16;
	while (ix->cap < (size_t)n * 2)
		ix->cap *= 2;
	ix->slots = aalloc(c->ar, sizeof(int) * ix->cap);
}

/* Returns the index of an equal tuple already present, or inserts i and returns -1. */
static int tindex_put(struct tindex *ix, const sp_value_t *const *base, int nk, int i, bool insert)
{
	size_t h = (size_t)tuple_hash(base + (size_t)i * nk, nk) & (ix->cap - 1);
	while (ix->slots[h]) {
		int j = ix->slots[h] - 1;
		if (tuple_eq(base + (size_t)j * nk, base + (size_t)i * nk, nk))
			return j;
		h = (h + 1) & (ix->cap - 1);
	}
	if (insert)
		ix->slots[h] = i + 1;
	return -1;
}

/* Turn a finished kset into table keys. */
static void ks_store(struct ctx *c, int t, struct kset s, bool dedupe)
{
	sp_table_ref_t *r = &c->tables[t];
	int nk = r->keys.n_keys;

	if (s.all) {
		r->keys.state = SP_PIN_ALL;
		if (s.why)
			r->keys.why = s.why;
		return;
	}
	for (int i = 0; i < s.n; i++) {
		for (int k = 0; k < nk; k++) {
			if (!s.a[(size_t)i * nk + k]) {
				r->keys.state = SP_PIN_ALL;
				r->keys.why =
				    aprintf(c->ar, "no usable condition on its key column %s",
					    r->conf->key_cols[k]);
				return;
			}
		}
	}
	sp_value_t *vals = aalloc(c->ar, sizeof(*vals) * (size_t)(s.n ? s.n : 1) * (size_t)nk);
	int n = 0;
	struct tindex ix;
	if (dedupe)
		tindex_init(c, &ix, s.n);
	for (int i = 0; i < s.n; i++) {
		if (dedupe && tindex_put(&ix, s.a, nk, i, true) >= 0)
			continue;
		for (int k = 0; k < nk; k++)
			vals[(size_t)n * nk + k] = *s.a[(size_t)i * nk + k];
		n++;
	}
	r->keys.state = SP_PIN_SET;
	r->keys.n_tuples = n;
	r->keys.values = vals;
	r->keys.why = NULL;
}

static bool kset_has_null(struct kset s, int nk)
{
	if (s.all)
		return false;
	for (int i = 0; i < s.n * nk; i++)
		if (s.a[i] && s.a[i]->kind == SP_VAL_NULL)
			return true;
	return false;
}

/* Flatten top-level ANDs of e into a list of conjuncts. */
static void conjuncts(struct ctx *c, json_object *e, json_object ***out, int *n, int *cap)
{
	json_object *b = node_as(e, "BoolExpr");
	const char *op = b ? jstr(b, "boolop") : NULL;

	if (op && !strcmp(op, "AND_EXPR")) {
		json_object *args = jget(b, "args");
		for (int i = 0; i < jlen(args); i++)
			conjuncts(c, jat(args, i), out, n, cap);
		return;
	}
	*VPUSH(c->ar, *out, *n, *cap) = e;
}

static bool in_range(int t, int lo, int hi)
{
	return t >= lo && t < hi;
}

/* Record key = key equalities of one condition as edges. */
static void cond_edges(struct ctx *c, struct scope *s, struct cond *cd)
{
	json_object **cj = NULL;
	int n = 0, cap = 0;

	conjuncts(c, cd->expr, &cj, &n, &cap);
	for (int i = 0; i < n; i++) {
		json_object *b = node_as(cj[i], "A_Expr");
		const char *kind = b ? jstr(b, "kind") : NULL;
		json_object *name = b ? jget(b, "name") : NULL;
		const char *op = jlen(name) == 1 ? str_node(jat(name, 0)) : NULL;
		json_object *l, *r;
		struct keyref lr[16], rr[16];

		if (!kind || strcmp(kind, "AEXPR_OP") || !op || strcmp(op, "="))
			continue;
		l = node_as(jget(b, "lexpr"), "ColumnRef");
		r = node_as(jget(b, "rexpr"), "ColumnRef");
		if (!l || !r)
			continue;
		int nl = resolve_key(c, s, l, lr, 16), nr = resolve_key(c, s, r, rr, 16);
		for (int x = 0; x < nl; x++) {
			for (int y = 0; y < nr; y++) {
				int a = lr[x].table, bt = rr[y].table;
				if (a == bt || lr[x].k != rr[y].k ||
				    c->tables[a].keys.n_keys != c->tables[bt].keys.n_keys)
					continue;
				int k = lr[x].k;
				bool la = is_local(s, a), lb = is_local(s, bt);
				if (!cd->outer) {
					if (la && lb) {
						add_edge(c, a, bt, k);
						add_edge(c, bt, a, k);
					} else if (la) {
						add_edge(c, bt, a, k);
					} else if (lb) {
						add_edge(c, a, bt, k);
					}
					continue;
				}
				bool na = la && in_range(a, cd->n_lo, cd->n_hi);
				bool nb = lb && in_range(bt, cd->n_lo, cd->n_hi);
				bool pa = la && in_range(a, cd->p_lo, cd->p_hi);
				bool pb = lb && in_range(bt, cd->p_lo, cd->p_hi);
				if (na && nb) {
					add_edge(c, a, bt, k);
					add_edge(c, bt, a, k);
				} else if (nb && (pa || !la)) {
					add_edge(c, a, bt, k);
				} else if (na && (pb || !lb)) {
					add_edge(c, bt, a, k);
				}
			}
		}
	}
}

/* Pins of the sharded tables of one query level, from its conditions. */
static void scope_pins(struct ctx *c, struct scope *s)
{
	for (int i = 0; i < s->n_local; i++) {
		int t = s->local[i];
		if (!sharded(c, t) || c->ti[t].fixed)
			continue;
		int nk = c->tables[t].keys.n_keys;
		struct kset inner = ks_all(NULL), outer = ks_all(NULL);
		for (int j = 0; j < s->n_conds; j++) {
			struct cond *cd = &s->conds[j];
			if (!cd->outer)
				inner = ks_and(c, inner, ks_eval(c, s, cd->expr, t, nk), nk);
			else if (in_range(t, cd->n_lo, cd->n_hi))
				outer = ks_and(c, outer, ks_eval(c, s, cd->expr, t, nk), nk);
		}
		/*
		 * A null-extended row of t passes "t.k IS NULL": such a condition
		 * needs all of t's rows to find the missing matches.
		 */
		if (c->ti[t].nullable && kset_has_null(inner, nk))
			inner = ks_all("IS NULL on the nullable side of an outer join");
		ks_store(c, t, ks_and(c, inner, outer, nk), true);
	}
	for (int j = 0; j < s->n_conds; j++)
		cond_edges(c, s, &s->conds[j]);
}

static void add_cond(struct ctx *c, struct scope *s, json_object *e, bool outer, int n_lo, int n_hi,
		     int p_lo, int p_hi)
{
	if (!e)
		return;
	struct cond *cd = VPUSH(c->ar, s->conds, s->n_conds, s->cap_conds);
	cd->expr = e;
	cd->outer = outer;
	cd->n_lo = n_lo;
	cd->n_hi = n_hi;
	cd->p_lo = p_lo;
	cd->p_hi = p_hi;
}

/* ------------------------------------------------------------------ functions */

/* *uncatalogued: the name is in no pg_proc set read so far (a write, to be safe). */
static sp_func_class_t class_of(struct ctx *c, const char *schema, const char *name,
				bool *uncatalogued)
{
	const sp_analyze_opts_t *o = c->opts;
	char q[256];
	const char *qual = NULL;

	if (schema && (size_t)snprintf(q, sizeof(q), "%s.%s", schema, name) < sizeof(q))
		qual = q;
#define HAS(set) ((qual && sp_funcset_contains((set), qual)) || sp_funcset_contains((set), name))
	if (o && o->write_funcs && HAS(o->write_funcs))
		return SP_FUNC_WRITE;
	if (o && o->read_funcs && HAS(o->read_funcs))
		return SP_FUNC_READ;
	if (o && o->func_lookup) {
		sp_func_class_t r = o->func_lookup(o->func_arg, schema, name);
		if (r != SP_FUNC_UNKNOWN)
			return r;
	}
	if (!(o && o->no_builtin_read_safe) && IN_LIST(builtin_read_safe_funcs, name))
		return SP_FUNC_READ;
	/* some need the primary although pg_proc calls them stable (txid_current) or
	 * immutable (pg_walfile_name): a standby refuses them */
	if (IN_LIST(builtin_write_funcs, name))
		return SP_FUNC_WRITE;
	if (o && o->volatile_funcs) {
		if (HAS(o->volatile_funcs))
			return SP_FUNC_WRITE;
		if (!o->known_funcs || HAS(o->known_funcs))
			return SP_FUNC_READ;
		*uncatalogued = c->unknown_funcs = true; /* created since pg_proc was read */
		return SP_FUNC_WRITE;
	}
#undef HAS
	return SP_FUNC_READ;
}

static void check_func(struct ctx *c, json_object *fc)
{
	json_object *names = jget(fc, "funcname");
	int n = jlen(names);
	const char *name = n ? str_node(jat(names, n - 1)) : NULL;
	const char *schema = n >= 2 ? str_node(jat(names, n - 2)) : NULL;

	if (!name || c->st->is_write)
		return;
	bool uncatalogued = false;
	if (class_of(c, schema, name, &uncatalogued) == SP_FUNC_WRITE)
		set_write(c, aprintf(c->ar, "%s function %s%s%s()",
				     uncatalogued ? "not yet catalogued" : "volatile",
				     schema ? schema : "", schema ? "." : "", name));
}

/* ------------------------------------------------------------------ walking */

static struct scope *analyze_query(struct ctx *c, json_object *node, struct scope *parent);
static struct scope *analyze_query_at(struct ctx *c, json_object *node, struct scope *parent);

/* Key types whose equal values PostgreSQL's partition hash puts on the same shard. */
static int hash_family(sp_key_type_t t)
{
	switch (t) {
	case SP_KEY_SMALLINT:
	case SP_KEY_INTEGER:
	case SP_KEY_BIGINT:
		return 1; /* hashint2/4/8 agree on every value the smaller type holds */
	case SP_KEY_TEXT:
	case SP_KEY_VARCHAR:
		return 2; /* varchar hashes as text */
	default:
		return 3;
	}
}

/* Do the edges equate every key column of a and b, with types that hash alike? */
static bool key_joined(const struct ctx *c, int a, int b)
{
	const sp_table_conf_t *ca = c->tables[a].conf, *cb = c->tables[b].conf;
	unsigned mask = 0, full;
	if (!ca || !cb || !ca->key_types || !cb->key_types || ca->n_keys != cb->n_keys ||
	    ca->n_keys > SP_ANALYZE_MAX_KEYS)
		return false;
	full = (1u << ca->n_keys) - 1;
	for (int k = 0; k < ca->n_keys; k++)
		if (hash_family(ca->key_types[k]) != hash_family(cb->key_types[k]))
			return false;
	for (int j = 0; j < c->n_edges; j++)
		if ((c->edges[j].from == a && c->edges[j].to == b) ||
		    (c->edges[j].from == b && c->edges[j].to == a))
			mask |= 1u << c->edges[j].k;
	return mask == full;
}

/*
 * Mark the sharded tables joined on the key (colocated) to the first sharded table
 * of the statement's own FROM. A table inside a subquery is
 * colocated only through such a join (a correlated subquery on the key); without a
 * sharded table at the top, none is.
 */
static void mark_colocated(struct ctx *c)
{
	bool changed = true;
	int root = -1;
	for (int t = 0; t < c->n_tables && root < 0; t++)
		if (sharded(c, t) && !(c->tables[t].ctx & SP_TABLE_NESTED))
			root = t;
	if (root < 0)
		return;
	c->tables[root].colocated = true;
	for (int guard = 0; changed && guard <= c->n_tables; guard++) {
		changed = false;
		for (int t = 0; t < c->n_tables; t++) {
			if (c->tables[t].colocated || !sharded(c, t))
				continue;
			for (int u = 0; u < c->n_tables; u++)
				if (c->tables[u].colocated && sharded(c, u) && key_joined(c, u, t)) {
					c->tables[t].colocated = true;
					changed = true;
					break;
				}
		}
	}
}

/* Visit an expression tree: subqueries, function calls, parameters. */
static void walk(struct ctx *c, struct scope *s, json_object *n)
{
	if (!n)
		return;
	if (json_object_is_type(n, json_type_array)) {
		int len = jlen(n);
		for (int i = 0; i < len; i++)
			walk(c, s, jat(n, i));
		return;
	}
	if (!json_object_is_type(n, json_type_object))
		return;
	json_object *b;
	const char *t = node_type(n, &b);
	if (t && json_object_is_type(b, json_type_object)) {
		if (!strcmp(t, "SubLink")) {
			walk(c, s, jget(b, "testexpr"));
			analyze_query(c, jget(b, "subselect"), s);
			return;
		}
		if (!strcmp(t, "SelectStmt") || !strcmp(t, "InsertStmt") ||
		    !strcmp(t, "UpdateStmt") || !strcmp(t, "DeleteStmt") ||
		    !strcmp(t, "MergeStmt")) {
			analyze_query(c, n, s);
			return;
		}
		if (!strcmp(t, "FuncCall"))
			check_func(c, b);
		else if (!strcmp(t, "ParamRef"))
			note_param(c, jint(b, "number", 0));
		walk(c, s, b);
		return;
	}
	json_object_object_foreach(n, key, val)
	{
		(void)key;
		if (json_object_is_type(val, json_type_object) ||
		    json_object_is_type(val, json_type_array))
			walk(c, s, val);
	}
}

static void register_ctes(struct ctx *c, struct scope *s, json_object *with)
{
	json_object *ctes = jget(with, "ctes");
	int n = jlen(ctes);
	bool recursive = jbool(with, "recursive");

	if (recursive) {
		for (int i = 0; i < n; i++) {
			const char *name =
			    jstr(node_as(jat(ctes, i), "CommonTableExpr"), "ctename");
			if (name)
				*VPUSH(c->ar, s->ctes, s->n_ctes, s->cap_ctes) = name;
		}
	}
	for (int i = 0; i < n; i++) {
		json_object *cte = node_as(jat(ctes, i), "CommonTableExpr");
		json_object *q = jget(cte, "ctequery");
		const char *qt = node_type(q, NULL);
		if (qt && strcmp(qt, "SelectStmt") != 0)
			set_write(c, "data-modifying statement in WITH");
		analyze_query(c, q, s);
		const char *name = jstr(cte, "ctename");
		if (!recursive && name)
			*VPUSH(c->ar, s->ctes, s->n_ctes, s->cap_ctes) = name;
	}
}

/* A table of [lo, hi) (any depth) that is sharded, or replicated; -1 if none. */
static int side_table(struct ctx *c, int lo, int hi, bool want_sharded)
{
	for (int t = lo; t < hi; t++) {
		const sp_table_conf_t *conf = c->tables[t].conf;
		if (conf && (want_sharded ? sharded(c, t) : conf->replicated))
			return t;
	}
	return -1;
}

/* The kept side [klo, khi) of an outer join against [olo, ohi): see SP_TABLE_KEPT_OUTER. */
static void mark_kept(struct ctx *c, int klo, int khi, int olo, int ohi)
{
	if (side_table(c, klo, khi, true) >= 0 || side_table(c, olo, ohi, true) < 0)
		return; /* sharded rows on the kept side exist once: so do their results */
	for (int t = klo; t < khi; t++)
		if (c->tables[t].conf && c->tables[t].conf->replicated)
			c->tables[t].ctx |= SP_TABLE_KEPT_OUTER;
}

static void mark_nullable(struct ctx *c, struct scope *s, int lo, int hi)
{
	for (int t = lo; t < hi; t++)
		if (is_local(s, t))
			c->ti[t].nullable = true;
}

/* Equalities implied by USING (cols) or NATURAL between two join sides. */
static void join_using_edges(struct ctx *c, struct scope *s, json_object *using, bool natural,
			     const char *jt, int l0, int l1, int r1)
{
	bool inner = !strcmp(jt, "JOIN_INNER"), left = !strcmp(jt, "JOIN_LEFT"),
	     right = !strcmp(jt, "JOIN_RIGHT");

	if (!inner && !left && !right)
		return;
	for (int a = l0; a < l1; a++) {
		if (!is_local(s, a) || !sharded(c, a))
			continue;
		for (int b = l1; b < r1; b++) {
			if (!is_local(s, b) || !sharded(c, b))
				continue;
			const sp_table_conf_t *ca = c->tables[a].conf, *cb = c->tables[b].conf;
			if (ca->n_keys != cb->n_keys)
				continue;
			for (int k = 0; k < ca->n_keys; k++) {
				bool joined = false;
				if (strcmp(ca->key_cols[k], cb->key_cols[k]) != 0)
					continue;
				if (natural) {
					joined = true;
				} else {
					for (int i = 0; i < jlen(using); i++) {
						const char *u = str_node(jat(using, i));
						if (u && !strcmp(u, ca->key_cols[k]))
							joined = true;
					}
				}
				if (!joined)
					continue;
				if (inner || left)
					add_edge(c, a, b, k);
				if (inner || right)
					add_edge(c, b, a, k);
			}
		}
	}
}

static void add_from_item(struct ctx *c, struct scope *s, json_object *n)
{
	json_object *b;
	const char *t = node_type(n, &b);

	if (!t)
		return;
	if (!strcmp(t, "RangeVar")) {
		const char *name = jstr(b, "relname");
		const char *alias = jstr(jget(b, "alias"), "aliasname");
		const char *schema = jstr(b, "schemaname");
		if (!name)
			return;
		if (!schema && cte_visible(s, name)) {
			add_item(c, s, alias ? alias : name, NULL, -1);
			return;
		}
		int tb = add_rangevar(c, b, SP_TABLE_READ);
		add_item(c, s, alias ? alias : name, alias ? NULL : schema, tb);
	} else if (!strcmp(t, "JoinExpr")) {
		const char *jt = jstr(b, "jointype");
		int l0 = c->n_tables;
		add_from_item(c, s, jget(b, "larg"));
		int l1 = c->n_tables;
		add_from_item(c, s, jget(b, "rarg"));
		int r1 = c->n_tables;
		json_object *quals = jget(b, "quals");
		if (!jt)
			jt = "JOIN_INNER";
		if (!strcmp(jt, "JOIN_LEFT")) {
			mark_nullable(c, s, l1, r1);
			mark_kept(c, l0, l1, l1, r1);
			add_cond(c, s, quals, true, l1, r1, l0, l1);
		} else if (!strcmp(jt, "JOIN_RIGHT")) {
			mark_nullable(c, s, l0, l1);
			mark_kept(c, l1, r1, l0, l1);
			add_cond(c, s, quals, true, l0, l1, l1, r1);
		} else if (!strcmp(jt, "JOIN_FULL")) {
			mark_nullable(c, s, l0, r1);
			mark_kept(c, l0, l1, l1, r1);
			mark_kept(c, l1, r1, l0, l1);
		} else {
			add_cond(c, s, quals, false, 0, 0, 0, 0);
		}
		join_using_edges(c, s, jget(b, "usingClause"), jbool(b, "isNatural"), jt, l0, l1,
				 r1);
		walk(c, s, quals);
		const char *alias = jstr(jget(b, "alias"), "aliasname");
		if (alias)
			add_item(c, s, alias, NULL, -1);
	} else if (!strcmp(t, "RangeSubselect")) {
		analyze_query(c, jget(b, "subquery"), s);
		add_item(c, s, jstr(jget(b, "alias"), "aliasname"), NULL, -1);
	} else if (!strcmp(t, "RangeFunction") || !strcmp(t, "RangeTableFunc")) {
		walk(c, s, b);
		add_item(c, s, jstr(jget(b, "alias"), "aliasname"), NULL, -1);
	} else if (!strcmp(t, "RangeTableSample")) {
		add_from_item(c, s, jget(b, "relation"));
		walk(c, s, jget(b, "args"));
		walk(c, s, jget(b, "repeatable"));
	} else {
		walk(c, s, n);
	}
}

/* FOR UPDATE / SHARE: a write; mark the locked tables. */
static void locking(struct ctx *c, struct scope *s, json_object *lc)
{
	int n = jlen(lc);

	if (!n)
		return;
	set_write(c, "SELECT ... FOR UPDATE/SHARE");
	for (int i = 0; i < n; i++) {
		json_object *l = node_as(jat(lc, i), "LockingClause");
		json_object *rels = jget(l, "lockedRels");
		if (!jlen(rels)) {
			for (int j = 0; j < s->n_local; j++)
				c->tables[s->local[j]].ctx |= SP_TABLE_LOCK;
			continue;
		}
		for (int r = 0; r < jlen(rels); r++) {
			const char *name = jstr(node_as(jat(rels, r), "RangeVar"), "relname");
			for (int j = 0; name && j < s->n_items; j++)
				if (s->items[j].table >= 0 && s->items[j].refname &&
				    !strcmp(s->items[j].refname, name))
					c->tables[s->items[j].table].ctx |= SP_TABLE_LOCK;
		}
	}
}

static struct scope *analyze_select(struct ctx *c, json_object *b, struct scope *parent)
{
	struct scope *s = new_scope(c, parent);
	const char *op = jstr(b, "op");

	if (jget(b, "withClause"))
		register_ctes(c, s, jget(b, "withClause"));
	if (op && strcmp(op, "SETOP_NONE") != 0) {
		c->depth++; /* each arm is a query of its own */
		analyze_select(c, jget(b, "larg"), s);
		analyze_select(c, jget(b, "rarg"), s);
		c->depth--;
		walk(c, s, jget(b, "sortClause"));
		walk(c, s, jget(b, "limitCount"));
		walk(c, s, jget(b, "limitOffset"));
		locking(c, s, jget(b, "lockingClause"));
		return s;
	}
	json_object *from = jget(b, "fromClause");
	for (int i = 0; i < jlen(from); i++)
		add_from_item(c, s, jat(from, i));
	add_cond(c, s, jget(b, "whereClause"), false, 0, 0, 0, 0);
	walk(c, s, jget(b, "whereClause"));
	walk(c, s, jget(b, "targetList"));
	walk(c, s, jget(b, "valuesLists"));
	walk(c, s, jget(b, "distinctClause"));
	walk(c, s, jget(b, "groupClause"));
	walk(c, s, jget(b, "havingClause"));
	walk(c, s, jget(b, "windowClause"));
	walk(c, s, jget(b, "sortClause"));
	walk(c, s, jget(b, "limitCount"));
	walk(c, s, jget(b, "limitOffset"));
	json_object *into = jget(b, "intoClause");
	if (into) {
		set_write(c, "SELECT INTO creates a table");
		json_object *rel = jget(into, "rel");
		if (rel)
			add_rangevar(c, rel, SP_TABLE_WRITE);
	}
	locking(c, s, jget(b, "lockingClause"));
	scope_pins(c, s);
	return s;
}

/* The DML target: a table written (and read). */
static int dml_target(struct ctx *c, struct scope *s, json_object *rel)
{
	if (!rel)
		return -1;
	const char *name = jstr(rel, "relname");
	const char *alias = jstr(jget(rel, "alias"), "aliasname");
	if (!name)
		return -1;
	int t = add_rangevar(c, rel, SP_TABLE_WRITE);
	add_item(c, s, alias ? alias : name, alias ? NULL : jstr(rel, "schemaname"), t);
	return t;
}

/* SET col = value lists: record values assigned to key columns of t. */
static void key_assignments(struct ctx *c, int t, json_object *targets)
{
	if (t < 0 || !sharded(c, t))
		return;
	sp_table_ref_t *r = &c->tables[t];
	for (int i = 0; i < jlen(targets); i++) {
		json_object *rt = node_as(jat(targets, i), "ResTarget");
		int k = key_index(r->conf, jstr(rt, "name"));
		if (k < 0)
			continue;
		json_object *val = jget(rt, "val");
		json_object *mar = node_as(val, "MultiAssignRef");
		sp_value_t v;
		if (mar) {
			json_object *src = node_as(jget(mar, "source"), "RowExpr");
			int colno = jint(mar, "colno", 0);
			if (src && colno >= 1 && colno <= jlen(jget(src, "args")))
				get_value(c, jat(jget(src, "args"), colno - 1), &v);
			else
				memset(&v, 0, sizeof(v)), v.kind = SP_VAL_EXPR;
		} else {
			get_value(c, val, &v);
		}
		r->key_assigned = true;
		r->key_new[k] = v;
	}
}

static struct scope *analyze_update(struct ctx *c, json_object *b, struct scope *parent)
{
	struct scope *s = new_scope(c, parent);

	set_write(c, "UPDATE");
	if (jget(b, "withClause"))
		register_ctes(c, s, jget(b, "withClause"));
	int t = dml_target(c, s, jget(b, "relation"));
	json_object *from = jget(b, "fromClause");
	for (int i = 0; i < jlen(from); i++)
		add_from_item(c, s, jat(from, i));
	add_cond(c, s, jget(b, "whereClause"), false, 0, 0, 0, 0);
	walk(c, s, jget(b, "whereClause"));
	walk(c, s, jget(b, "targetList"));
	walk(c, s, jget(b, "returningList"));
	key_assignments(c, t, jget(b, "targetList"));
	if (jlen(jget(b, "returningList")) && parent == NULL)
		c->st->has_returning = true;
	scope_pins(c, s);
	return s;
}

static struct scope *analyze_delete(struct ctx *c, json_object *b, struct scope *parent)
{
	struct scope *s = new_scope(c, parent);

	set_write(c, "DELETE");
	if (jget(b, "withClause"))
		register_ctes(c, s, jget(b, "withClause"));
	dml_target(c, s, jget(b, "relation"));
	json_object *using = jget(b, "usingClause");
	for (int i = 0; i < jlen(using); i++)
		add_from_item(c, s, jat(using, i));
	add_cond(c, s, jget(b, "whereClause"), false, 0, 0, 0, 0);
	walk(c, s, jget(b, "whereClause"));
	walk(c, s, jget(b, "returningList"));
	if (jlen(jget(b, "returningList")) && parent == NULL)
		c->st->has_returning = true;
	scope_pins(c, s);
	return s;
}

static struct scope *analyze_merge(struct ctx *c, json_object *b, struct scope *parent)
{
	struct scope *s = new_scope(c, parent);
	bool inserts = false;

	set_write(c, "MERGE");
	if (jget(b, "withClause"))
		register_ctes(c, s, jget(b, "withClause"));
	int t = dml_target(c, s, jget(b, "relation"));
	add_from_item(c, s, jget(b, "sourceRelation"));
	add_cond(c, s, jget(b, "joinCondition"), false, 0, 0, 0, 0);
	walk(c, s, jget(b, "joinCondition"));
	json_object *whens = jget(b, "mergeWhenClauses");
	for (int i = 0; i < jlen(whens); i++) {
		json_object *w = node_as(jat(whens, i), "MergeWhenClause");
		const char *cmd = jstr(w, "commandType");
		walk(c, s, w);
		if (cmd && !strcmp(cmd, "CMD_UPDATE"))
			key_assignments(c, t, jget(w, "targetList"));
		if (cmd && !strcmp(cmd, "CMD_INSERT"))
			inserts = true;
	}
	scope_pins(c, s);
	if (inserts && t >= 0 && sharded(c, t)) {
		c->tables[t].keys.state = SP_PIN_ALL;
		c->tables[t].keys.why = "MERGE ... WHEN NOT MATCHED THEN INSERT can add any key";
		c->ti[t].fixed = true;
	}
	return s;
}

/* INSERT ... SELECT: does output column pos carry a pinnable key? */
static void insert_select_pin(struct ctx *c, int t, json_object *sel, struct scope *ss,
			      const int *key_pos)
{
	sp_table_ref_t *r = &c->tables[t];
	int nk = r->keys.n_keys;
	json_object *tl = jget(sel, "targetList");
	const char *op = jstr(sel, "op");
	int src = -1;
	bool consts = true;
	struct kset k1 = {.n = 1};

	if (!ss || (op && strcmp(op, "SETOP_NONE") != 0) || jget(sel, "valuesLists"))
		return;
	k1.a = aalloc(c->ar, sizeof(*k1.a) * (size_t)nk);
	for (int k = 0; k < nk; k++) {
		if (key_pos[k] < 0 || key_pos[k] >= jlen(tl))
			return;
		json_object *rt = node_as(jat(tl, key_pos[k]), "ResTarget");
		json_object *val = jget(rt, "val");
		json_object *cref = node_as(val, "ColumnRef");
		if (cref) {
			struct keyref kr[16];
			int m = resolve_key(c, ss, cref, kr, 16);
			consts = false;
			if (m != 1 || kr[0].k != k || (src >= 0 && src != kr[0].table) ||
			    !is_local(ss, kr[0].table))
				return;
			src = kr[0].table;
			continue;
		}
		sp_value_t *v = aalloc(c->ar, sizeof(*v));
		get_value(c, val, v);
		if (!value_usable(v))
			return;
		k1.a[k] = v;
	}
	if (consts && src < 0 && !jget(sel, "fromClause")) {
		ks_store(c, t, k1, false);
		c->ti[t].fixed = true;
	} else if (!consts && src >= 0 && c->tables[src].keys.n_keys == nk) {
		for (int k = 0; k < nk; k++)
			add_edge(c, src, t, k);
		r->keys.why = "INSERT ... SELECT from a table that is not pinned";
	}
}

static struct scope *analyze_insert(struct ctx *c, json_object *b, struct scope *parent)
{
	struct scope *s = new_scope(c, parent);
	bool top = parent == NULL;
	sp_insert_t ins;
	int nk = 0;

	memset(&ins, 0, sizeof(ins));
	set_write(c, "INSERT");
	if (jget(b, "withClause"))
		register_ctes(c, s, jget(b, "withClause"));
	int t = dml_target(c, s, jget(b, "relation"));
	add_item(c, s, "excluded", NULL, -1);
	ins.table = t;
	for (int k = 0; k < SP_ANALYZE_MAX_KEYS; k++)
		ins.key_pos[k] = -1;
	json_object *cols = jget(b, "cols");
	ins.n_cols = jlen(cols);
	ins.has_column_list = ins.n_cols > 0;
	if (ins.n_cols) {
		ins.cols = aalloc(c->ar, sizeof(char *) * (size_t)ins.n_cols);
		for (int i = 0; i < ins.n_cols; i++)
			ins.cols[i] = jstr(node_as(jat(cols, i), "ResTarget"), "name");
	}
	bool tracked = t >= 0 && sharded(c, t);
	if (tracked && !ins.has_column_list && c->opts && c->opts->columns_lookup) {
		/* VALUES fill the table's columns in order: use them as the list */
		int n = 0;
		const char *const *names =
		    c->opts->columns_lookup(c->opts->columns_arg, c->tables[t].schema,
					    c->tables[t].name, c->tables[t].conf, &n);
		if (names && n > 0) {
			ins.columns_known = true;
			ins.n_cols = n;
			ins.cols = aalloc(c->ar, sizeof(char *) * (size_t)n);
			for (int i = 0; i < n; i++)
				ins.cols[i] = astrdup(c->ar, names[i]);
		}
	}
	if (tracked) {
		nk = c->tables[t].keys.n_keys;
		for (int k = 0; k < nk; k++)
			for (int i = 0; i < ins.n_cols; i++)
				if (ins.cols[i] &&
				    !strcmp(ins.cols[i], c->tables[t].conf->key_cols[k]))
					ins.key_pos[k] = i;
	}

	json_object *sel = jget(b, "selectStmt");
	json_object *selb = node_as(sel, "SelectStmt");
	json_object *vl = jget(selb, "valuesLists");
	if (!sel) {
		ins.source = SP_INSERT_DEFAULT_VALUES;
		if (tracked) {
			c->tables[t].keys.why =
			    "INSERT ... DEFAULT VALUES: the key comes from its default";
			c->ti[t].fixed = true;
		}
	} else if (vl && jlen(vl)) {
		ins.source = SP_INSERT_VALUES;
		ins.n_rows = jlen(vl);
		ins.width = jlen(jget(node_as(jat(vl, 0), "List"), "items"));
		sp_value_t *rows = aalloc(c->ar, sizeof(*rows) * (size_t)ins.n_rows *
						     (size_t)(ins.width ? ins.width : 1));
		for (int r = 0; r < ins.n_rows; r++) {
			json_object *items = jget(node_as(jat(vl, r), "List"), "items");
			if (jlen(items) != ins.width)
				ins.ragged = true;
			for (int i = 0; i < ins.width && i < jlen(items); i++)
				get_value(c, jat(items, i), &rows[(size_t)r * ins.width + i]);
		}
		ins.rows = rows;
		walk(c, s, vl);
		if (tracked) {
			const char *why = NULL;
			for (int k = 0; k < nk && !why; k++) {
				if (!ins.has_column_list && !ins.columns_known)
					why = "INSERT without a column list: the key's position is "
					      "unknown";
				else if (ins.key_pos[k] < 0)
					why =
					    aprintf(c->ar,
						    ins.has_column_list
							? "key column %s is not in the column list"
							: "the table has no column %s",
						    c->tables[t].conf->key_cols[k]);
				else if (ins.key_pos[k] >= ins.width)
					/* fewer values than columns: the key gets its default */
					why = aprintf(c->ar,
						      "key column %s (column %d) has no value in "
						      "the VALUES rows",
						      c->tables[t].conf->key_cols[k],
						      ins.key_pos[k] + 1);
			}
			for (int r = 0; r < ins.n_rows && !why; r++)
				for (int k = 0; k < nk && !why; k++)
					if (!value_usable(
						&rows[(size_t)r * ins.width + ins.key_pos[k]]))
						why = aprintf(
						    c->ar, "row %d: key column %s is %s", r + 1,
						    c->tables[t].conf->key_cols[k],
						    rows[(size_t)r * ins.width + ins.key_pos[k]]
								.kind == SP_VAL_DEFAULT
							? "DEFAULT"
							: "an expression");
			if (why) {
				c->tables[t].keys.why = why;
			} else {
				struct kset ks = {.n = ins.n_rows};
				ks.a =
				    aalloc(c->ar, sizeof(*ks.a) * (size_t)ins.n_rows * (size_t)nk);
				for (int r = 0; r < ins.n_rows; r++)
					for (int k = 0; k < nk; k++)
						ks.a[(size_t)r * nk + k] =
						    &rows[(size_t)r * ins.width + ins.key_pos[k]];
				ks_store(c, t, ks, false);
			}
			c->ti[t].fixed = true;
		}
	} else {
		ins.source = SP_INSERT_SELECT;
		struct scope *ss = analyze_query(c, sel, s);
		if (tracked) {
			c->tables[t].keys.why =
			    ins.has_column_list || ins.columns_known
				? "INSERT ... SELECT whose key column is not the key of a pinned "
				  "table"
				: "INSERT without a column list: the key's position is unknown";
			c->ti[t].fixed = true;
			if (ins.has_column_list || ins.columns_known)
				insert_select_pin(c, t, selb, ss, ins.key_pos);
		}
	}
	json_object *occ = jget(b, "onConflictClause");
	if (occ) {
		const char *act = jstr(occ, "action");
		ins.on_conflict = true;
		ins.on_conflict_update = act && !strcmp(act, "ONCONFLICT_UPDATE");
		walk(c, s, occ);
		key_assignments(c, t, jget(occ, "targetList"));
	}
	walk(c, s, jget(b, "returningList"));
	if (top) {
		c->st->has_returning = jlen(jget(b, "returningList")) > 0;
		c->st->insert = ins;
	}
	scope_pins(c, s);
	return s;
}

static struct scope *analyze_query(struct ctx *c, json_object *node, struct scope *parent)
{
	c->depth++;
	struct scope *s = analyze_query_at(c, node, parent);
	c->depth--;
	return s;
}

static struct scope *analyze_query_at(struct ctx *c, json_object *node, struct scope *parent)
{
	json_object *b;
	const char *t = node_type(node, &b);

	if (!t) {
		/* set-operation arms are bare SelectStmt bodies */
		if (node && jget(node, "op"))
			return analyze_select(c, node, parent);
		return NULL;
	}
	if (!strcmp(t, "SelectStmt"))
		return analyze_select(c, b, parent);
	if (!strcmp(t, "InsertStmt"))
		return analyze_insert(c, b, parent);
	if (!strcmp(t, "UpdateStmt"))
		return analyze_update(c, b, parent);
	if (!strcmp(t, "DeleteStmt"))
		return analyze_delete(c, b, parent);
	if (!strcmp(t, "MergeStmt"))
		return analyze_merge(c, b, parent);
	walk(c, parent, node);
	return NULL;
}

/* ------------------------------------------------------------------ SELECT shape */

/* Structural equality of two expressions, ignoring locations. */
static bool jeq(struct ctx *c, json_object *a, json_object *b)
{
	if (!a || !b)
		return a == b;
	json_type ta = json_object_get_type(a);
	if (ta != json_object_get_type(b))
		return false;
	switch (ta) {
	case json_type_object: {
		json_object *ca = node_as(a, "A_Const"), *cb = node_as(b, "A_Const");
		if (ca || cb) {
			sp_value_t va, vb;
			if (!ca || !cb)
				return false;
			const_value(c, ca, &va);
			const_value(c, cb, &vb);
			return va.kind == vb.kind && va.lit == vb.lit && value_eq(&va, &vb);
		}
		int na = 0, nb = 0;
		json_object_object_foreach(a, ka, va)
		{
			if (!strcmp(ka, "location"))
				continue;
			na++;
			if (!jeq(c, va, jget(b, ka)))
				return false;
		}
		json_object_object_foreach(b, kb, vb)
		{
			(void)vb;
			if (strcmp(kb, "location") != 0)
				nb++;
		}
		return na == nb;
	}
	case json_type_array: {
		int n = jlen(a);
		if (n != jlen(b))
			return false;
		for (int i = 0; i < n; i++)
			if (!jeq(c, jat(a, i), jat(b, i)))
				return false;
		return true;
	}
	case json_type_string:
		return strcmp(json_object_get_string(a), json_object_get_string(b)) == 0;
	case json_type_int:
		return json_object_get_int64(a) == json_object_get_int64(b);
	case json_type_boolean:
		return json_object_get_boolean(a) == json_object_get_boolean(b);
	case json_type_double:
		return json_object_get_double(a) == json_object_get_double(b);
	default:
		return true;
	}
}

static bool is_agg_call(json_object *fc)
{
	json_object *names = jget(fc, "funcname");
	int n = jlen(names);
	const char *name = n ? str_node(jat(names, n - 1)) : NULL;

	if (jget(fc, "over"))
		return false;
	return jbool(fc, "agg_star") || jbool(fc, "agg_distinct") || jget(fc, "agg_filter") ||
	       jget(fc, "agg_order") || jbool(fc, "agg_within_group") ||
	       IN_LIST(builtin_aggs, name);
}

/* Aggregates (bit 1) and window functions (bit 2) in an expression, not in subqueries. */
static int agg_flags(json_object *n)
{
	int f = 0;

	if (!n)
		return 0;
	if (json_object_is_type(n, json_type_array)) {
		for (int i = 0; i < jlen(n); i++)
			f |= agg_flags(jat(n, i));
		return f;
	}
	if (!json_object_is_type(n, json_type_object))
		return 0;
	json_object *b;
	const char *t = node_type(n, &b);
	if (t && json_object_is_type(b, json_type_object)) {
		if (!strcmp(t, "SubLink"))
			return agg_flags(jget(b, "testexpr"));
		if (!strcmp(t, "FuncCall")) {
			if (jget(b, "over"))
				f |= 2;
			else if (is_agg_call(b))
				f |= 1;
		}
		return f | agg_flags(b);
	}
	json_object_object_foreach(n, key, val)
	{
		(void)key;
		f |= agg_flags(val);
	}
	return f;
}

/* PostgreSQL's FigureColname, for the common node types. */
static const char *figure_colname(json_object *n)
{
	json_object *b;
	const char *t = node_type(n, &b);

	if (!t)
		return "?column?";
	if (!strcmp(t, "ColumnRef")) {
		json_object *f = jget(b, "fields");
		const char *s = jlen(f) ? str_node(jat(f, jlen(f) - 1)) : NULL;
		return s ? s : "?column?";
	}
	if (!strcmp(t, "FuncCall")) {
		json_object *f = jget(b, "funcname");
		const char *s = jlen(f) ? str_node(jat(f, jlen(f) - 1)) : NULL;
		return s ? s : "?column?";
	}
	if (!strcmp(t, "TypeCast")) {
		const char *s = figure_colname(jget(b, "arg"));
		if (strcmp(s, "?column?") != 0)
			return s;
		json_object *names = jget(jget(b, "typeName"), "names");
		s = jlen(names) ? str_node(jat(names, jlen(names) - 1)) : NULL;
		return s ? s : "?column?";
	}
	if (!strcmp(t, "CaseExpr"))
		return "case";
	if (!strcmp(t, "CoalesceExpr"))
		return "coalesce";
	if (!strcmp(t, "A_ArrayExpr"))
		return "array";
	if (!strcmp(t, "RowExpr"))
		return "row";
	if (!strcmp(t, "MinMaxExpr")) {
		const char *op = jstr(b, "op");
		return (op && !strcmp(op, "IS_GREATEST")) ? "greatest" : "least";
	}
	if (!strcmp(t, "NullIfExpr"))
		return "nullif";
	if (!strcmp(t, "SubLink")) {
		const char *lt = jstr(b, "subLinkType");
		if (lt && !strcmp(lt, "EXISTS_SUBLINK"))
			return "exists";
		if (lt && !strcmp(lt, "ARRAY_SUBLINK"))
			return "array";
		if (lt && !strcmp(lt, "EXPR_SUBLINK")) {
			json_object *tl =
			    jget(node_as(jget(b, "subselect"), "SelectStmt"), "targetList");
			json_object *rt = node_as(jat(tl, 0), "ResTarget");
			if (rt)
				return jstr(rt, "name") ? jstr(rt, "name")
							: figure_colname(jget(rt, "val"));
		}
	}
	return "?column?";
}

static sp_agg_t agg_kind(const char *name, json_object *fc)
{
	if (jget(fc, "agg_filter") || jget(fc, "agg_order") || jbool(fc, "agg_within_group"))
		return SP_AGG_OTHER;
	if (!strcmp(name, "count"))
		return SP_AGG_COUNT;
	if (!strcmp(name, "sum"))
		return SP_AGG_SUM;
	if (!strcmp(name, "min"))
		return SP_AGG_MIN;
	if (!strcmp(name, "max"))
		return SP_AGG_MAX;
	if (!strcmp(name, "avg"))
		return SP_AGG_AVG;
	return SP_AGG_OTHER;
}

static void out_col(struct ctx *c, json_object *rt, sp_out_col_t *oc)
{
	json_object *val = jget(rt, "val");
	json_object *fc = node_as(val, "FuncCall");
	json_object *cref = node_as(val, "ColumnRef");
	int f = agg_flags(val);

	oc->name = jstr(rt, "name") ? jstr(rt, "name") : figure_colname(val);
	if (cref) {
		json_object *fields = jget(cref, "fields");
		if (node_as(jat(fields, jlen(fields) - 1), "A_Star")) {
			oc->kind = SP_COL_STAR;
			oc->name = "*";
			return;
		}
	}
	if (f & 2) {
		oc->kind = SP_COL_WINDOW;
	} else if (fc && is_agg_call(fc)) {
		json_object *names = jget(fc, "funcname");
		const char *name = str_node(jat(names, jlen(names) - 1));
		oc->kind = SP_COL_AGG;
		oc->func = name;
		oc->agg = agg_kind(name ? name : "", fc);
		oc->agg_star = jbool(fc, "agg_star");
		oc->agg_distinct = jbool(fc, "agg_distinct");
		oc->agg_filter = jget(fc, "agg_filter") != NULL;
		int loc = jint(fc, "location", -1);
		const char *ab = NULL, *ae = NULL;
		if (loc >= 0 && (size_t)loc < c->src_len) {
			ab = c->src + loc;
			if (paren_args(c->src + loc, &ab, &ae)) {
				ab = skip_ws(ab);
				if (ab > ae)
					ab = ae;
				if (oc->agg_distinct && ae - ab > 8 &&
				    !strncasecmp(ab, "distinct", 8) && !is_ident_char(ab[8]))
					ab += 8;
				else if (ae - ab > 3 && !strncasecmp(ab, "all", 3) &&
					 !is_ident_char(ab[3]))
					ab += 3;
				ab = skip_ws(ab);
				if (ab > ae)
					ab = ae;
				while (ae > ab && is_space(ae[-1]))
					ae--;
				oc->arg_text = astrndup(c->ar, ab, (size_t)(ae - ab));
			}
		}
	} else if (f & 1) {
		oc->kind = SP_COL_AGG_EXPR;
	} else {
		oc->kind = SP_COL_PLAIN;
	}
}

/* Output position (1-based) an ORDER BY / GROUP BY / DISTINCT ON item refers to, 0 if none. */
/* col, or t.col where t is the only table read (c->shape_from): its column name. */
static const char *plain_column(struct ctx *c, json_object *n)
{
	json_object *cref = node_as(n, "ColumnRef"), *f = cref ? jget(cref, "fields") : NULL;
	if (jlen(f) == 1)
		return str_node(jat(f, 0));
	if (jlen(f) == 2 && c->shape_from && str_node(jat(f, 0)) &&
	    !strcmp(str_node(jat(f, 0)), c->shape_from))
		return str_node(jat(f, 1));
	return NULL;
}

static int target_pos(struct ctx *c, json_object *item, json_object *tl, const sp_shape_t *sh,
		      bool names_first)
{
	json_object *ac = node_as(item, "A_Const");
	int n = jlen(tl);

	if (ac) {
		sp_value_t v;
		const_value(c, ac, &v);
		if (v.kind == SP_VAL_CONST && v.lit == SP_LIT_INT) {
			long p = strtol(v.text, NULL, 10);
			return (p >= 1 && p <= n && !sh->has_star) ? (int)p : 0;
		}
	}
	json_object *cref = node_as(item, "ColumnRef");
	const char *single = NULL;
	if (cref && jlen(jget(cref, "fields")) == 1)
		single = str_node(jat(jget(cref, "fields"), 0));
	if (single && names_first) {
		for (int i = 0; i < n; i++)
			if (sh->cols[i].name && !strcmp(sh->cols[i].name, single) &&
			    sh->cols[i].kind != SP_COL_STAR)
				return i + 1;
	}
	for (int i = 0; i < n; i++) {
		json_object *rt = node_as(jat(tl, i), "ResTarget");
		if (jeq(c, jget(rt, "val"), item))
			return i + 1;
	}
	if (single && !names_first) {
		for (int i = 0; i < n; i++)
			if (jstr(node_as(jat(tl, i), "ResTarget"), "name") &&
			    !strcmp(jstr(node_as(jat(tl, i), "ResTarget"), "name"), single))
				return i + 1;
	}
	/* t.col and col name the same column when t is the only table read */
	const char *col = plain_column(c, item);
	if (col)
		for (int i = 0; i < n; i++) {
			const char *tc = plain_column(c, jget(node_as(jat(tl, i), "ResTarget"), "val"));
			if (tc && !strcmp(tc, col))
				return i + 1;
		}
	return 0;
}

/*
 * ORDER BY x COLLATE "C": the shards sort x in byte order whatever their
 * collation, so the merge can too; the item is x. Other collations are left
 * in place (and the item then matches no output column unless selected so).
 */
static json_object *strip_collate_c(json_object *item, bool *bytewise)
{
	json_object *cc = node_as(item, "CollateClause");
	json_object *names = cc ? jget(cc, "collname") : NULL;
	int n = jlen(names);
	const char *last = n ? str_node(jat(names, n - 1)) : NULL;

	const char *schema = n == 2 ? str_node(jat(names, 0)) : NULL;

	*bytewise = false;
	if (!last || (strcmp(last, "C") && strcmp(last, "POSIX")) || !jget(cc, "arg"))
		return item;
	if (n > 2 || (n == 2 && (!schema || strcmp(schema, "pg_catalog"))))
		return item;
	*bytewise = true;
	return jget(cc, "arg");
}

/* Keep an ORDER BY item's column name or position for a merge that resolves it by RowDescription. */
static void sort_item_as_written(struct ctx *c, json_object *item, sp_sort_item_t *si)
{
	json_object *cref = node_as(item, "ColumnRef"), *ac = node_as(item, "A_Const");
	int nf = cref ? jlen(jget(cref, "fields")) : 0;

	si->name[0] = 0;
	si->ordinal = 0;
	if (nf > 0) {
		const char *last = str_node(jat(jget(cref, "fields"), nf - 1));
		size_t n = last ? strlen(last) : 0;
		if (n > 0 && n < sizeof(si->name)) {
			memcpy(si->name, last, n);
			si->name[n] = 0;
		}
	} else if (ac) {
		sp_value_t v;
		const_value(c, ac, &v);
		if (v.kind == SP_VAL_CONST && v.lit == SP_LIT_INT)
			si->ordinal = (int)strtol(v.text, NULL, 10);
	}
}

static void sort_items(struct ctx *c, json_object *list, json_object *tl, sp_shape_t *sh,
		       sp_sort_item_t **out, int *n_out, bool sortby)
{
	int n = jlen(list);

	*n_out = n;
	*out = n ? aalloc(c->ar, sizeof(**out) * (size_t)n) : NULL;
	for (int i = 0; i < n; i++) {
		sp_sort_item_t *si = &(*out)[i];
		json_object *item = jat(list, i);
		json_object *sb = sortby ? node_as(item, "SortBy") : NULL;
		if (sb) {
			const char *dir = jstr(sb, "sortby_dir");
			const char *nulls = jstr(sb, "sortby_nulls");
			item = jget(sb, "node");
			si->desc = dir && !strcmp(dir, "SORTBY_DESC");
			si->using_op = dir && !strcmp(dir, "SORTBY_USING");
			if (nulls && !strcmp(nulls, "SORTBY_NULLS_FIRST"))
				si->nulls_first = true;
			else if (nulls && !strcmp(nulls, "SORTBY_NULLS_LAST"))
				si->nulls_first = false;
			else
				si->nulls_first = si->desc;
		}
		item = strip_collate_c(item, &si->bytewise);
		si->target = target_pos(c, item, tl, sh, true);
		sort_item_as_written(c, item, si);
	}
}

static void limit_value(struct ctx *c, json_object *n, sp_value_t *v)
{
	memset(v, 0, sizeof(*v));
	if (!n)
		return;
	get_value(c, n, v);
	if (v->kind == SP_VAL_NULL)
		memset(v, 0, sizeof(*v)); /* LIMIT ALL / LIMIT NULL */
}

static void fill_shape(struct ctx *c, json_object *top, sp_shape_t *sh)
{
	json_object *b = top, *leaf;
	const char *op = jstr(b, "op");

	memset(sh, 0, sizeof(*sh));
	sh->valid = true;
	if (op && !strcmp(op, "SETOP_UNION"))
		sh->setop = SP_SETOP_UNION;
	else if (op && !strcmp(op, "SETOP_INTERSECT"))
		sh->setop = SP_SETOP_INTERSECT;
	else if (op && !strcmp(op, "SETOP_EXCEPT"))
		sh->setop = SP_SETOP_EXCEPT;
	sh->setop_all = jbool(b, "all");
	leaf = b;
	for (int guard = 0; guard < SP_ANALYZE_MAX_DEPTH; guard++) {
		const char *lop = jstr(leaf, "op");
		if (!lop || !strcmp(lop, "SETOP_NONE") || !jget(leaf, "larg"))
			break;
		leaf = jget(leaf, "larg");
	}
	json_object *tl = jget(leaf, "targetList");
	json_object *vl = jget(leaf, "valuesLists");
	if (vl) {
		sh->values = true;
		sh->n_cols = jlen(jget(node_as(jat(vl, 0), "List"), "items"));
		sh->cols = aalloc(c->ar, sizeof(*sh->cols) * (size_t)(sh->n_cols ? sh->n_cols : 1));
		for (int i = 0; i < sh->n_cols; i++)
			sh->cols[i].name = aprintf(c->ar, "column%d", i + 1);
	} else {
		sh->n_cols = jlen(tl);
		sh->cols = aalloc(c->ar, sizeof(*sh->cols) * (size_t)(sh->n_cols ? sh->n_cols : 1));
		for (int i = 0; i < sh->n_cols; i++) {
			out_col(c, node_as(jat(tl, i), "ResTarget"), &sh->cols[i]);
			if (sh->cols[i].kind == SP_COL_STAR)
				sh->has_star = true;
			if (sh->cols[i].kind == SP_COL_AGG || sh->cols[i].kind == SP_COL_AGG_EXPR)
				sh->has_agg = true;
			if (sh->cols[i].kind == SP_COL_WINDOW)
				sh->has_window = true;
		}
	}
	json_object *having = jget(leaf, "havingClause");
	sh->has_having = having != NULL;
	if (agg_flags(having) & 1)
		sh->has_agg = true;
	if (jget(leaf, "windowClause"))
		sh->has_window = sh->has_window || (agg_flags(tl) & 2);

	/* FROM one table (no join, no subquery): t.col and col are the same column */
	json_object *from = jget(leaf, "fromClause");
	json_object *rv = jlen(from) == 1 ? node_as(jat(from, 0), "RangeVar") : NULL;
	c->shape_from = rv ? (jstr(jget(rv, "alias"), "aliasname") ? jstr(jget(rv, "alias"), "aliasname")
								  : jstr(rv, "relname"))
			   : NULL;
	json_object *group = jget(leaf, "groupClause");
	sh->n_group = jlen(group);
	sh->has_group_by = sh->n_group > 0;
	sh->group_all_in_target = true;
	if (sh->n_group) {
		sh->group_target = aalloc(c->ar, sizeof(int) * (size_t)sh->n_group);
		for (int i = 0; i < sh->n_group; i++) {
			json_object *g = jat(group, i);
			if (node_as(g, "GroupingSet")) {
				sh->grouping_sets = true;
				sh->group_target[i] = 0;
			} else {
				sh->group_target[i] = target_pos(c, g, tl, sh, false);
			}
			if (!sh->group_target[i])
				sh->group_all_in_target = false;
		}
	}
	json_object *dc = jget(leaf, "distinctClause");
	if (dc) {
		if (jlen(dc) == 1 && json_object_is_type(jat(dc, 0), json_type_object) &&
		    json_object_object_length(jat(dc, 0)) == 0)
			sh->distinct = true;
		else
			sort_items(c, dc, tl, sh, &sh->distinct_on, &sh->n_distinct_on, false);
	}
	sort_items(c, jget(b, "sortClause"), tl, sh, &sh->sort, &sh->n_sort, true);
	c->shape_from = NULL;
	sh->sort_all_in_target = true;
	for (int i = 0; i < sh->n_sort; i++)
		if (!sh->sort[i].target)
			sh->sort_all_in_target = false;
	limit_value(c, jget(b, "limitCount"), &sh->limit);
	limit_value(c, jget(b, "limitOffset"), &sh->offset);
	const char *lo = jstr(b, "limitOption");
	sh->limit_with_ties = lo && !strcmp(lo, "LIMIT_OPTION_WITH_TIES");
	sh->locking = jlen(jget(b, "lockingClause")) > 0;
}

/* ------------------------------------------------------------------ statements */

static void txn_modes(struct ctx *c, json_object *opts, sp_txn_modes_t *m)
{
	m->read_only = -1;
	m->deferrable = -1;
	for (int i = 0; i < jlen(opts); i++) {
		json_object *d = node_as(jat(opts, i), "DefElem");
		const char *name = jstr(d, "defname");
		sp_value_t v;
		get_value(c, jget(d, "arg"), &v);
		if (!name || v.kind != SP_VAL_CONST)
			continue;
		if (!strcmp(name, "transaction_read_only"))
			m->read_only = strcmp(v.text, "0") != 0;
		else if (!strcmp(name, "transaction_deferrable"))
			m->deferrable = strcmp(v.text, "0") != 0;
		else if (!strcmp(name, "transaction_isolation"))
			m->isolation = v.text;
	}
}

static void stmt_txn(struct ctx *c, json_object *b)
{
	sp_stmt_t *st = c->st;
	const char *k = jstr(b, "kind");
	static const struct {
		const char *name;
		sp_txn_op_t op;
	} map[] = {
	    {"TRANS_STMT_BEGIN", SP_TXN_BEGIN},
	    {"TRANS_STMT_START", SP_TXN_START},
	    {"TRANS_STMT_COMMIT", SP_TXN_COMMIT},
	    {"TRANS_STMT_ROLLBACK", SP_TXN_ROLLBACK},
	    {"TRANS_STMT_SAVEPOINT", SP_TXN_SAVEPOINT},
	    {"TRANS_STMT_RELEASE", SP_TXN_RELEASE},
	    {"TRANS_STMT_ROLLBACK_TO", SP_TXN_ROLLBACK_TO},
	    {"TRANS_STMT_PREPARE", SP_TXN_PREPARE},
	    {"TRANS_STMT_COMMIT_PREPARED", SP_TXN_COMMIT_PREPARED},
	    {"TRANS_STMT_ROLLBACK_PREPARED", SP_TXN_ROLLBACK_PREPARED},
	};

	st->kind = SP_STMT_TXN;
	for (size_t i = 0; k && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(k, map[i].name))
			st->txn.op = map[i].op;
	txn_modes(c, jget(b, "options"), &st->txn.modes);
	st->txn.chain = jbool(b, "chain");
	st->name = jstr(b, "savepoint_name");
	if (!st->name)
		st->name = jstr(b, "gid");
	if (st->txn.op == SP_TXN_PREPARE || st->txn.op == SP_TXN_COMMIT_PREPARED ||
	    st->txn.op == SP_TXN_ROLLBACK_PREPARED)
		set_write(c, "two-phase commit runs on the primary");
}

/* A string literal quoted to be sent back: 'x', 'it''s', E'a\\b'. */
static const char *sql_quote(struct ctx *c, const char *s)
{
	size_t n = 3;
	bool bs = strchr(s, '\\') != NULL;

	for (const char *p = s; *p; p++)
		n += (*p == '\'' || *p == '\\') ? 2 : 1;
	char *out = aalloc(c->ar, n + 1), *w = out;
	if (bs)
		*w++ = 'E';
	*w++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'' || (bs && *p == '\\'))
			*w++ = *p;
		*w++ = *p;
	}
	*w++ = '\'';
	*w = '\0';
	return out;
}

/* Source text from loc to the end of the statement, trailing blanks and comments cut. */
static const char *source_tail(struct ctx *c, int loc)
{
	if (loc < 0 || loc >= c->stmt_end)
		return NULL;
	const char *b = c->src + loc, *p = b, *last = b;
	const char *end = c->src + c->stmt_end;
	while (p < end) {
		const char *q = skip_ws(p);
		if (q != p) {
			p = q;
			continue;
		}
		if (*p == '\'' || *p == '"' || *p == '$')
			p = skip_quoted(p, p > b && (p[-1] == 'E' || p[-1] == 'e'));
		else
			p++;
		last = p;
	}
	if (last > end)
		last = end;
	return astrndup(c->ar, b, (size_t)(last - b));
}

static const char *set_value_text(struct ctx *c, json_object *args)
{
	size_t total = 0;
	int n = jlen(args);
	const char **parts = aalloc(c->ar, sizeof(char *) * (size_t)(n ? n : 1));

	for (int i = 0; i < n; i++) {
		json_object *a = jat(args, i), *b;
		const char *t = node_type(a, &b);
		sp_value_t v;
		const char *p = NULL;
		if (t && !strcmp(t, "TypeCast")) {
			int loc = jint(jget(b, "typeName"), "location", -1);
			if (loc < 0)
				loc = jint(b, "location", -1);
			p = source_tail(c, loc);
		} else {
			get_value(c, a, &v);
			if (v.kind == SP_VAL_CONST)
				p = v.lit == SP_LIT_STRING ? sql_quote(c, v.text) : v.text;
		}
		if (!p)
			p = "DEFAULT";
		parts[i] = p;
		total += strlen(p) + 2;
	}
	char *out = aalloc(c->ar, total + 1), *w = out;
	for (int i = 0; i < n; i++) {
		if (i) {
			memcpy(w, ", ", 2);
			w += 2;
		}
		size_t l = strlen(parts[i]);
		memcpy(w, parts[i], l);
		w += l;
	}
	*w = '\0';
	return out;
}

static const char *lower_dup(struct ctx *c, const char *s)
{
	if (!s)
		return NULL;
	char *d = astrdup(c->ar, s);
	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

static void stmt_set(struct ctx *c, json_object *b)
{
	sp_set_t *set = &c->st->set;
	const char *k = jstr(b, "kind");

	c->st->kind = SP_STMT_SET;
	set->name = jstr(b, "name");
	set->local = jbool(b, "is_local");
	set->modes.read_only = set->modes.deferrable = -1;
	if (!k)
		k = "";
	if (!strcmp(k, "VAR_SET_VALUE")) {
		set->op = SP_SET_VALUE;
		set->value = set_value_text(c, jget(b, "args"));
	} else if (!strcmp(k, "VAR_SET_DEFAULT")) {
		set->op = SP_SET_DEFAULT;
	} else if (!strcmp(k, "VAR_SET_CURRENT")) {
		set->op = SP_SET_FROM_CURRENT;
	} else if (!strcmp(k, "VAR_SET_MULTI")) {
		set->op = SP_SET_TRANSACTION;
		set->name = lower_dup(c, set->name);
		if (set->name && !strcmp(set->name, "transaction snapshot"))
			set->value = set_value_text(c, jget(b, "args"));
		else
			txn_modes(c, jget(b, "args"), &set->modes);
	} else if (!strcmp(k, "VAR_RESET")) {
		set->op = SP_SET_RESET;
	} else if (!strcmp(k, "VAR_RESET_ALL")) {
		set->op = SP_SET_RESET_ALL;
		set->name = NULL;
	}
}

static const char *opt_text(json_object *arg)
{
	json_object *b;
	const char *t = node_type(arg, &b);

	if (!t)
		return NULL;
	if (!strcmp(t, "String"))
		return jstr(b, "sval") ? jstr(b, "sval") : "";
	if (!strcmp(t, "Boolean"))
		return jbool(b, "boolval") ? "true" : "false";
	if (!strcmp(t, "Integer"))
		return jint(b, "ival", 0) ? "1" : "0";
	return NULL;
}

/* Boolean option value as PostgreSQL's defGetBoolean reads it; no arg = true. */
static int opt_bool(json_object *arg)
{
	const char *s = opt_text(arg);

	if (!arg)
		return 1;
	if (!s)
		return 1;
	if (!strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcmp(s, "0") ||
	    !strcasecmp(s, "no"))
		return 0;
	if (!strcasecmp(s, "match"))
		return 2;
	return 1;
}

static void stmt_copy(struct ctx *c, json_object *b)
{
	sp_stmt_t *st = c->st;
	sp_copy_t *cp = &st->copy;
	const char *delim = NULL, *null_str = NULL, *quote = NULL, *escape = NULL;
	json_object *query = jget(b, "query");
	json_object *rel = jget(b, "relation");

	cp->is_from = jbool(b, "is_from");
	cp->is_program = jbool(b, "is_program");
	cp->filename = jstr(b, "filename");
	cp->table = -1;
	for (int k = 0; k < SP_ANALYZE_MAX_KEYS; k++)
		cp->key_pos[k] = -1;
	if (query) {
		const char *qt = node_type(query, NULL);
		analyze_query_at(c, query, NULL); /* COPY (query): the statement itself */
		if (qt && !strcmp(qt, "SelectStmt")) {
			fill_shape(c, node_as(query, "SelectStmt"), &st->shape);
			st->inner_kind = SP_STMT_SELECT;
		} else if (qt && !strcmp(qt, "InsertStmt")) {
			st->inner_kind = SP_STMT_INSERT;
		} else if (qt && !strcmp(qt, "UpdateStmt")) {
			st->inner_kind = SP_STMT_UPDATE;
		} else if (qt && !strcmp(qt, "DeleteStmt")) {
			st->inner_kind = SP_STMT_DELETE;
		} else {
			st->inner_kind = SP_STMT_OTHER;
		}
	} else if (rel) {
		cp->table = add_rangevar(c, rel, cp->is_from ? SP_TABLE_WRITE : SP_TABLE_READ);
		if (cp->is_from)
			set_write(c, "COPY FROM");
	}
	json_object *att = jget(b, "attlist");
	cp->n_cols = jlen(att);
	cp->has_column_list = cp->n_cols > 0;
	if (cp->n_cols) {
		cp->cols = aalloc(c->ar, sizeof(char *) * (size_t)cp->n_cols);
		for (int i = 0; i < cp->n_cols; i++)
			cp->cols[i] = str_node(jat(att, i));
	}
	if (cp->table >= 0 && sharded(c, cp->table)) {
		const sp_table_conf_t *conf = c->tables[cp->table].conf;
		for (int k = 0; k < conf->n_keys; k++)
			for (int i = 0; i < cp->n_cols; i++)
				if (cp->cols[i] && !strcmp(cp->cols[i], conf->key_cols[k]))
					cp->key_pos[k] = i;
		c->tables[cp->table].keys.why = cp->is_from ? "COPY FROM: keys are in the data rows"
							    : "COPY TO reads every row";
		c->ti[cp->table].fixed = true;
	}
	json_object *opts = jget(b, "options");
	for (int i = 0; i < jlen(opts); i++) {
		json_object *d = node_as(jat(opts, i), "DefElem");
		const char *name = jstr(d, "defname");
		json_object *arg = jget(d, "arg");
		if (!name)
			continue;
		if (!strcmp(name, "format")) {
			const char *f = opt_text(arg);
			if (f && !strcasecmp(f, "csv"))
				cp->format = SP_COPY_CSV;
			else if (f && !strcasecmp(f, "binary"))
				cp->format = SP_COPY_BINARY;
			else
				cp->format = SP_COPY_TEXT;
		} else if (!strcmp(name, "delimiter")) {
			delim = opt_text(arg);
		} else if (!strcmp(name, "null")) {
			null_str = opt_text(arg);
		} else if (!strcmp(name, "header")) {
			cp->header = opt_bool(arg);
		} else if (!strcmp(name, "quote")) {
			quote = opt_text(arg);
		} else if (!strcmp(name, "escape")) {
			escape = opt_text(arg);
		} else if (!strcmp(name, "encoding")) {
			cp->encoding = opt_text(arg);
		} else if (!strcmp(name, "force_not_null") || !strcmp(name, "force_null")) {
			uint32_t *bits = name[6] == 'n' && name[7] == 'o' ? &cp->force_not_null_keys
									  : &cp->force_null_keys;
			const sp_table_conf_t *conf =
			    cp->table >= 0 && sharded(c, cp->table) ? c->tables[cp->table].conf : NULL;
			json_object *items = jget(node_as(arg, "List"), "items");
			for (int k = 0; conf && k < conf->n_keys && k < 32; k++) {
				if (!items) /* FORCE_... * (PostgreSQL 17): every column */
					*bits |= (uint32_t)1 << k;
				for (int j = 0; j < jlen(items); j++) {
					const char *col = str_node(jat(items, j));
					if (col && !strcmp(col, conf->key_cols[k]))
						*bits |= (uint32_t)1 << k;
				}
			}
		} else if (!strcmp(name, "freeze")) {
			cp->freeze = opt_bool(arg) != 0;
		}
	}
	bool csv = cp->format == SP_COPY_CSV;
	cp->delimiter = delim ? delim : (csv ? "," : "\t");
	cp->null_str = null_str ? null_str : (csv ? "" : "\\N");
	cp->quote = quote ? quote : "\"";
	cp->escape = escape ? escape : cp->quote;
	if (!csv) {
		cp->quote = NULL;
		cp->escape = NULL;
	}
	cp->has_where = jget(b, "whereClause") != NULL;
	walk(c, NULL, jget(b, "whereClause"));
	st->kind = SP_STMT_COPY;
}

static void collect_rels(struct ctx *c, json_object *n, unsigned bits)
{
	if (!n)
		return;
	if (json_object_is_type(n, json_type_array)) {
		for (int i = 0; i < jlen(n); i++)
			collect_rels(c, jat(n, i), bits);
		return;
	}
	if (!json_object_is_type(n, json_type_object))
		return;
	if (jstr(n, "relname")) {
		add_rangevar(c, n, bits);
		return;
	}
	json_object_object_foreach(n, key, val)
	{
		(void)key;
		collect_rels(c, val, bits);
	}
}

static void stmt_drop(struct ctx *c, json_object *b)
{
	const char *rt = jstr(b, "removeType");
	json_object *objs = jget(b, "objects");

	if (!rt || (strcmp(rt, "OBJECT_TABLE") && strcmp(rt, "OBJECT_VIEW") &&
		    strcmp(rt, "OBJECT_MATVIEW") && strcmp(rt, "OBJECT_FOREIGN_TABLE")))
		return;
	for (int i = 0; i < jlen(objs); i++) {
		json_object *items = jget(node_as(jat(objs, i), "List"), "items");
		int n = jlen(items);
		if (!n)
			continue;
		add_table(c, n >= 2 ? str_node(jat(items, n - 2)) : NULL,
			  str_node(jat(items, n - 1)), NULL, SP_TABLE_WRITE, -1);
	}
}

static void stmt_node(struct ctx *c, json_object *n);

/* EXPLAIN / PREPARE / DECLARE: analyse the inner statement, then restore the outer kind. */
static void stmt_inner(struct ctx *c, json_object *inner, sp_stmt_kind_t outer, const char *node)
{
	sp_stmt_t *st = c->st;

	stmt_node(c, inner);
	st->inner_kind = st->kind;
	st->kind = outer;
	st->node = node;
}

static void stmt_node(struct ctx *c, json_object *n)
{
	sp_stmt_t *st = c->st;
	json_object *b;
	const char *t = node_type(n, &b);

	st->node = t;
	if (!t) {
		st->kind = SP_STMT_OTHER;
		set_write(c, "statement the analyzer does not know");
		return;
	}
	if (!strcmp(t, "SelectStmt")) {
		st->kind = SP_STMT_SELECT;
		analyze_select(c, b, NULL);
		fill_shape(c, b, &st->shape);
	} else if (!strcmp(t, "InsertStmt")) {
		st->kind = SP_STMT_INSERT;
		analyze_insert(c, b, NULL);
	} else if (!strcmp(t, "UpdateStmt")) {
		st->kind = SP_STMT_UPDATE;
		analyze_update(c, b, NULL);
	} else if (!strcmp(t, "DeleteStmt")) {
		st->kind = SP_STMT_DELETE;
		analyze_delete(c, b, NULL);
	} else if (!strcmp(t, "MergeStmt")) {
		st->kind = SP_STMT_MERGE;
		analyze_merge(c, b, NULL);
	} else if (!strcmp(t, "CopyStmt")) {
		stmt_copy(c, b);
	} else if (!strcmp(t, "TransactionStmt")) {
		stmt_txn(c, b);
	} else if (!strcmp(t, "VariableSetStmt")) {
		stmt_set(c, b);
	} else if (!strcmp(t, "VariableShowStmt")) {
		st->kind = SP_STMT_SHOW;
		st->name = jstr(b, "name");
	} else if (!strcmp(t, "ListenStmt") || !strcmp(t, "UnlistenStmt") ||
		   !strcmp(t, "NotifyStmt")) {
		st->kind = t[0] == 'L'	 ? SP_STMT_LISTEN
			   : t[0] == 'U' ? SP_STMT_UNLISTEN
					 : SP_STMT_NOTIFY;
		st->name = jstr(b, "conditionname");
		st->payload = jstr(b, "payload");
		set_write(c, "LISTEN/NOTIFY needs the primary");
	} else if (!strcmp(t, "PrepareStmt")) {
		stmt_inner(c, jget(b, "query"), SP_STMT_PREPARE, t);
		st->name = jstr(b, "name");
	} else if (!strcmp(t, "ExecuteStmt")) {
		json_object *params = jget(b, "params");
		st->kind = SP_STMT_EXECUTE;
		st->name = jstr(b, "name");
		st->n_params = jlen(params);
		if (st->n_params) {
			sp_value_t *v = aalloc(c->ar, sizeof(*v) * (size_t)st->n_params);
			for (int i = 0; i < st->n_params; i++)
				get_value(c, jat(params, i), &v[i]);
			st->params = v;
		}
		walk(c, NULL, params);
		set_write(c, "EXECUTE: look up the prepared statement's analysis");
	} else if (!strcmp(t, "DeallocateStmt")) {
		st->kind = SP_STMT_DEALLOCATE;
		st->name = jstr(b, "name");
	} else if (!strcmp(t, "DiscardStmt")) {
		const char *tg = jstr(b, "target");
		st->kind = SP_STMT_DISCARD;
		st->discard = !tg || !strcmp(tg, "DISCARD_ALL")	 ? SP_DISCARD_ALL
			      : !strcmp(tg, "DISCARD_PLANS")	 ? SP_DISCARD_PLANS
			      : !strcmp(tg, "DISCARD_SEQUENCES") ? SP_DISCARD_SEQUENCES
								 : SP_DISCARD_TEMP;
	} else if (!strcmp(t, "DeclareCursorStmt")) {
		stmt_inner(c, jget(b, "query"), SP_STMT_DECLARE, t);
		st->name = jstr(b, "portalname");
		st->cursor_hold = (jint(b, "options", 0) & 0x0020) != 0; /* CURSOR_OPT_HOLD */
	} else if (!strcmp(t, "FetchStmt")) {
		st->kind = SP_STMT_FETCH;
		st->name = jstr(b, "portalname");
		st->fetch_move = jbool(b, "ismove");
	} else if (!strcmp(t, "ClosePortalStmt")) {
		st->kind = SP_STMT_CLOSE;
		st->name = jstr(b, "portalname");
	} else if (!strcmp(t, "ExplainStmt")) {
		json_object *opts = jget(b, "options");
		bool analyze = false;
		for (int i = 0; i < jlen(opts); i++) {
			json_object *d = node_as(jat(opts, i), "DefElem");
			const char *name = jstr(d, "defname");
			if (name && !strcmp(name, "analyze"))
				analyze = opt_bool(jget(d, "arg")) != 0;
		}
		stmt_inner(c, jget(b, "query"), SP_STMT_EXPLAIN, t);
		st->explain_analyze = analyze;
		if (!analyze) {
			st->is_write = false;
			st->write_reason = NULL;
		} else if (st->is_write) {
			st->write_reason =
			    aprintf(c->ar, "EXPLAIN ANALYZE runs it: %s", st->write_reason);
		}
	} else if (!strcmp(t, "LockStmt")) {
		st->kind = SP_STMT_LOCK;
		collect_rels(c, jget(b, "relations"), SP_TABLE_LOCK);
		set_write(c, "LOCK");
	} else if (!strcmp(t, "VacuumStmt") || !strcmp(t, "ClusterStmt") ||
		   !strcmp(t, "ReindexStmt") || !strcmp(t, "CheckPointStmt")) {
		st->kind = SP_STMT_MAINTENANCE;
		collect_rels(c, b, SP_TABLE_WRITE);
		set_write(c, "maintenance command");
	} else if (!strcmp(t, "CallStmt")) {
		json_object *fc = jget(b, "funccall");
		json_object *names = jget(fc, "funcname");
		st->kind = SP_STMT_CALL;
		st->name = jlen(names) ? str_node(jat(names, jlen(names) - 1)) : NULL;
		walk(c, NULL, jget(fc, "args"));
		set_write(c, "CALL of a procedure");
	} else if (!strcmp(t, "DoStmt")) {
		st->kind = SP_STMT_DO;
		set_write(c, "DO block");
	} else if (!strcmp(t, "LoadStmt") || !strcmp(t, "ConstraintsSetStmt")) {
		st->kind = SP_STMT_OTHER;
	} else if (!strcmp(t, "AlterSystemStmt")) {
		st->kind = SP_STMT_OTHER;
		set_write(c, "ALTER SYSTEM");
	} else {
		st->kind = SP_STMT_DDL;
		set_write(c, "DDL");
		if (!strcmp(t, "CreateTableAsStmt")) {
			collect_rels(c, jget(b, "into"), SP_TABLE_WRITE);
			analyze_query_at(c, jget(b, "query"), NULL);
		} else if (!strcmp(t, "ViewStmt")) {
			collect_rels(c, jget(b, "view"), SP_TABLE_WRITE);
			analyze_query_at(c, jget(b, "query"), NULL);
		} else if (!strcmp(t, "DropStmt")) {
			stmt_drop(c, b);
		} else {
			collect_rels(c, b, SP_TABLE_WRITE);
		}
	}
}

/* Carry pins along key = key edges, then judge the statement. */
static void finish_routing(struct ctx *c)
{
	sp_stmt_t *st = c->st;
	bool changed = true;

	if (st->kind == SP_STMT_DDL || st->kind == SP_STMT_MAINTENANCE ||
	    st->kind == SP_STMT_LOCK) {
		const char *why = aprintf(c->ar, "%s applies to every shard",
					  st->kind == SP_STMT_LOCK  ? "LOCK"
					  : st->kind == SP_STMT_DDL ? "DDL"
								    : "maintenance");
		for (int t = 0; t < c->n_tables; t++)
			if (c->tables[t].keys.state == SP_PIN_ALL &&
			    !(c->tables[t].ctx & SP_TABLE_READ))
				c->tables[t].keys.why = why;
	}

	for (int guard = 0; changed && guard <= c->n_tables; guard++) {
		changed = false;
		for (int i = 0; i < c->n_edges; i++) {
			int from = c->edges[i].from, to = c->edges[i].to;
			sp_table_ref_t *f = &c->tables[from], *t = &c->tables[to];
			if (f->keys.state != SP_PIN_SET || t->keys.state != SP_PIN_ALL ||
			    f->keys.n_keys != t->keys.n_keys)
				continue;
			unsigned mask = 0, full = (1u << t->keys.n_keys) - 1;
			for (int j = 0; j < c->n_edges; j++)
				if (c->edges[j].from == from && c->edges[j].to == to)
					mask |= 1u << c->edges[j].k;
			if (mask != full)
				continue;
			t->keys.state = SP_PIN_SET;
			t->keys.n_tuples = f->keys.n_tuples;
			t->keys.values = f->keys.values;
			t->keys.why = NULL;
			t->pinned_via = from;
			changed = true;
		}
	}

	mark_colocated(c);
	st->tables = c->tables;
	st->n_tables = c->n_tables;
	st->route = SP_ROUTE_NO_SHARDED;
	st->route_table = -1;
	int first = -1;
	for (int t = 0; t < c->n_tables; t++) {
		sp_table_ref_t *r = &c->tables[t];
		if (r->keys.state == SP_PIN_NOT_SHARDED)
			continue;
		if (r->keys.state == SP_PIN_ALL) {
			st->route = SP_ROUTE_UNPINNED;
			st->route_table = t;
			st->route_why = aprintf(c->ar, "%s%s%s: %s", r->schema ? r->schema : "",
						r->schema ? "." : "", r->name,
						r->keys.why ? r->keys.why : "not pinned");
			return;
		}
		if (first < 0) {
			first = t;
			st->route = SP_ROUTE_PINNED;
			st->route_table = t;
			continue;
		}
		/* compare as sets */
		const sp_keyset_t *a = &c->tables[first].keys, *k = &r->keys;
		bool same = a->n_keys == k->n_keys;
		for (int pass = 0; same && pass < 2; pass++) {
			const sp_keyset_t *x = pass ? a : k, *y = pass ? k : a;
			int nk = x->n_keys;
			const sp_value_t **xa =
			    aalloc(c->ar, sizeof(*xa) * (size_t)(x->n_tuples + 1) * nk);
			const sp_value_t **ya =
			    aalloc(c->ar, sizeof(*ya) * (size_t)(y->n_tuples + 1) * nk);
			for (int i = 0; i < x->n_tuples * nk; i++)
				xa[i] = &x->values[i];
			for (int i = 0; i < y->n_tuples * nk; i++)
				ya[i] = &y->values[i];
			struct tindex ix;
			tindex_init(c, &ix, x->n_tuples);
			for (int i = 0; i < x->n_tuples; i++)
				tindex_put(&ix, xa, nk, i, true);
			for (int i = 0; i < y->n_tuples && same; i++) {
				/* look y's tuple up in x's index */
				size_t h =
				    (size_t)tuple_hash(ya + (size_t)i * nk, nk) & (ix.cap - 1);
				bool found = false;
				while (ix.slots[h]) {
					int j = ix.slots[h] - 1;
					if (tuple_eq(xa + (size_t)j * nk, ya + (size_t)i * nk,
						     nk)) {
						found = true;
						break;
					}
					h = (h + 1) & (ix.cap - 1);
				}
				same = found;
			}
		}
		if (!same && st->route == SP_ROUTE_PINNED)
			st->route = SP_ROUTE_PINNED_MIXED;
	}
}

static sp_stmt_t *new_stmt(sp_analysis_t *a, struct arena *ar, int *cap)
{
	sp_stmt_t *st = VPUSH(ar, a->stmts, a->n_stmts, *cap);
	memset(st, 0, sizeof(*st));
	st->route_table = -1;
	st->error_pos = -1;
	st->inner_kind = SP_STMT_NONE;
	return st;
}

static void analyze_one(struct ctx *c, json_object *n, sp_stmt_t *st)
{
	c->st = st;
	c->tables = NULL;
	c->ti = NULL;
	c->n_tables = c->cap_tables = c->cap_ti = 0;
	c->edges = NULL;
	c->n_edges = c->cap_edges = 0;
	stmt_node(c, n);
	finish_routing(c);
}

/* Byte offset of a 1-based character position (UTF-8 assumed) in s. */
static int char_to_byte(const char *s, int cursorpos)
{
	int chars = 0;
	const char *p = s;

	if (cursorpos <= 0)
		return -1;
	while (*p) {
		if (((unsigned char)*p & 0xC0) != 0x80) {
			if (++chars == cursorpos)
				return (int)(p - s);
		}
		p++;
	}
	return (int)(p - s);
}

static void error_stmt(sp_analysis_t *a, struct arena *ar, int *cap, int off, int len,
		       const char *msg, int pos)
{
	sp_stmt_t *st = new_stmt(a, ar, cap);
	st->kind = SP_STMT_ERROR;
	st->offset = off;
	st->length = len;
	st->error = astrdup(ar, msg ? msg : "syntax error");
	st->error_pos = pos;
	st->is_write = true;
	st->write_reason = "not parsed";
	a->has_error = true;
}

static json_object *read_tree(struct arena *ar, const char *js, int *depth)
{
	*depth = json_depth(js);
	if (*depth > SP_ANALYZE_MAX_DEPTH)
		return NULL;
	json_tokener *tok = json_tokener_new_ex(*depth + 2);
	if (!tok)
		return NULL;
	json_object *o = json_tokener_parse_ex(tok, js, (int)strlen(js));
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	if (o) {
		struct jroot *r = aalloc(ar, sizeof(*r));
		r->obj = o;
		r->next = ar->roots;
		ar->roots = r;
	}
	return o;
}

/* Analyse every statement of one parse tree; src is the text parsed, base its offset. */
static void analyze_tree(sp_analysis_t *a, struct ctx *c, json_object *root, int *cap)
{
	json_object *stmts = jget(root, "stmts");

	for (int i = 0; i < jlen(stmts); i++) {
		json_object *raw = jat(stmts, i);
		int loc = jint(raw, "stmt_location", 0);
		int len = jint(raw, "stmt_len", 0);
		if (len == 0)
			len = (int)c->src_len - loc;
		sp_stmt_t *st = new_stmt(a, c->ar, cap);
		st->offset = c->base + loc;
		st->length = len;
		c->stmt_end = loc + len;
		sp_analyze_hints(c->src + loc, &st->hints);
		analyze_one(c, jget(raw, "stmt"), st);
	}
}

/*
 * End of the statement starting at p: the first ';' outside strings, quoted
 * identifiers, comments and parentheses, or the terminating NUL.
 * (libpg_query's scanner-based splitter is not used: it crashes on an
 * unterminated string in 15-4.0.0.)
 */
static const char *stmt_end(const char *p)
{
	int depth = 0;

	while (*p) {
		const char *q = skip_ws(p);
		if (q != p) {
			p = q;
			continue;
		}
		char ch = *p;
		if (ch == '\'' || ch == '"' || ch == '$') {
			bool bs = ch == '\'' && (p[-1] == 'E' || p[-1] == 'e');
			p = skip_quoted(p, bs);
			continue;
		}
		if (ch == '(')
			depth++;
		else if (ch == ')' && depth > 0)
			depth--;
		else if (ch == ';' && depth == 0)
			return p;
		p++;
	}
	return p;
}

/* The whole input failed (or is too deep): split it and try each statement alone. */
static void analyze_pieces(sp_analysis_t *a, struct ctx *c, const char *sql, const char *msg,
			   int pos, int *cap)
{
	int before = a->n_stmts;
	const char *p = sql;

	/* a NUL in front keeps stmt_end's look-behind (p[-1]) inside the buffer */
	size_t sql_len = strlen(sql);
	char *copy = aalloc(c->ar, sql_len + 2);
	memcpy(copy + 1, sql, sql_len + 1);
	p = copy + 1;
	for (;;) {
		const char *e = stmt_end(p);
		int loc = (int)(p - (copy + 1)), len = (int)(e - p);
		if (*skip_ws(p) && skip_ws(p) < e) {
			char *piece = astrndup(c->ar, p, (size_t)len);
			c->pr = pg_query_parse(piece);
			c->pr_live = true;
			if (c->pr.error) {
				int bp = char_to_byte(piece, c->pr.error->cursorpos);
				error_stmt(a, c->ar, cap, loc, len, c->pr.error->message,
					   bp >= 0 ? loc + bp : -1);
			} else {
				int depth;
				json_object *root = read_tree(c->ar, c->pr.parse_tree, &depth);
				if (!root) {
					char m[128];
					snprintf(
					    m, sizeof(m),
					    depth > SP_ANALYZE_MAX_DEPTH
						? "statement nested too deeply for the analyzer "
						  "(%d levels)"
						: "analyzer could not read the parse tree (%d)",
					    depth);
					error_stmt(a, c->ar, cap, loc, len, m, -1);
				} else {
					c->src = piece;
					c->src_len = (size_t)len;
					c->base = loc;
					analyze_tree(a, c, root, cap);
				}
			}
			pg_query_free_parse_result(c->pr);
			c->pr_live = false;
		}
		if (!*e)
			break;
		p = e + 1;
	}
	if (!a->has_error) {
		/* no statement fails alone: the message as a whole is rejected */
		a->n_stmts = before;
		error_stmt(a, c->ar, cap, 0, (int)strlen(sql), msg, pos);
	}
}

/* The work of sp_analyze(), below its setjmp: everything it changes lives on the heap. */
static sp_analysis_t *analyze_input(struct ctx *c, const char *sql)
{
	struct arena *ar = c->ar;
	sp_analysis_t *a = aalloc(ar, sizeof(*a));
	int cap = 0;

	a->arena_ = ar;
	sp_analyze_hints(sql, &a->hints);
	c->src = sql;
	c->src_len = strlen(sql);
	c->base = 0;
	if (!scan_ok(sql)) {
		error_stmt(
		    a, ar, &cap, 0, (int)c->src_len,
		    "statement refused: its operator-character runs or nested comments would "
		    "make the SQL scanner quadratic",
		    -1);
		return a;
	}
	c->pr = pg_query_parse(sql);
	c->pr_live = true;
	if (c->pr.error) {
		char *msg = astrdup(ar, c->pr.error->message);
		int pos = char_to_byte(sql, c->pr.error->cursorpos);
		pg_query_free_parse_result(c->pr);
		c->pr_live = false;
		analyze_pieces(a, c, sql, msg, pos, &cap);
		return a;
	}
	int depth;
	json_object *root = read_tree(ar, c->pr.parse_tree, &depth);
	pg_query_free_parse_result(c->pr);
	c->pr_live = false;
	if (root) {
		analyze_tree(a, c, root, &cap);
	} else {
		char m[128];
		snprintf(m, sizeof(m), "statement nested too deeply for the analyzer (%d levels)",
			 depth);
		analyze_pieces(a, c, sql, m, -1, &cap);
	}
	return a;
}

sp_analysis_t *sp_analyze(const char *sql, const sp_analyze_opts_t *opts)
{
	struct arena *const ar = calloc(1, sizeof(*ar));
	struct ctx *const c = malloc(sizeof(*c));
	sp_analysis_t *a;

	if (!ar || !c) {
		free(ar);
		free(c);
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->ar = ar;
	c->opts = opts;
	ar->oom = &c->oom;
	if (setjmp(c->oom)) {
		if (c->pr_live)
			pg_query_free_parse_result(c->pr);
		arena_free(ar);
		free(c);
		return NULL;
	}
	a = analyze_input(c, sql ? sql : "");
	if (a)
		a->unknown_funcs = c->unknown_funcs;
	ar->oom = NULL;
	free(c);
	return a;
}

void sp_analysis_free(sp_analysis_t *a)
{
	if (a)
		arena_free(a->arena_);
}

const char *sp_stmt_kind_str(sp_stmt_kind_t kind)
{
	/* clang-format off */
	static const char *const names[] = {
		"NONE",     "ERROR",     "SELECT",     "INSERT",  "UPDATE",  "DELETE",
		"MERGE",    "COPY",      "TXN",        "SET",     "SHOW",    "LISTEN",
		"UNLISTEN", "NOTIFY",    "PREPARE",    "EXECUTE", "DEALLOCATE", "DISCARD",
		"DECLARE",  "FETCH",     "CLOSE",      "DDL",     "LOCK",    "EXPLAIN",
		"MAINTENANCE", "CALL",   "DO",         "OTHER",
	};
	/* clang-format on */
	if ((unsigned)kind < sizeof(names) / sizeof(names[0]))
		return names[kind];
	return "?";
}

bool sp_analyze_fingerprint(const char *sql, uint64_t *out)
{
	if (!sql)
		sql = "";
	if (!scan_ok(sql))
		return false;
	PgQueryFingerprintResult r = pg_query_fingerprint(sql);
	bool ok = r.error == NULL;

	if (ok && out)
		*out = r.fingerprint;
	pg_query_free_fingerprint_result(r);
	return ok;
}

char *sp_analyze_normalize(const char *sql)
{
	if (!sql)
		sql = "";
	if (!scan_ok(sql))
		return NULL;
	PgQueryNormalizeResult r = pg_query_normalize(sql);
	char *out = NULL;

	if (!r.error && r.normalized_query)
		out = strdup(r.normalized_query);
	pg_query_free_normalize_result(r);
	return out;
}
