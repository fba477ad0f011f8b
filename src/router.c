/*
 * router.c - decides where a statement goes: one shard, several shards (with
 * a merge plan or a per-shard rewrite), shardpool itself (SET shardpool.*),
 * or nowhere (an error that says what would make it routable).
 *
 * Owns: the plan cache and its literal-lifting lexer, the routing rules over
 * the analyzer's verdicts (analyze.h), the shard map (hash through
 * shard_hash.h, range and list bounds from the config), the read/write
 * classification, SET shardpool.* session state, the per-shard SQL
 * rewrites (split multi-row INSERT, LIMIT/OFFSET, avg()), and the column
 * order of sharded tables for INSERT without a column list (read from the
 * catalog by health.c, forgotten here when DDL on the table passes through;
 * plans that used an order are re-analysed once it changes).
 *
 * Hot path: a simple query is lexed once (no parse): literals become $N
 * placeholders numbered after the text's own highest $n, whitespace and
 * comments collapse, and the resulting text keys the plan cache. A hit
 * hashes the lifted key literals (or Bind parameters) and picks the shard
 * with no allocation: the lexer's arrays and the per-shard SQL buffers are
 * per thread and reused. A miss analyses the normalised text once and keeps
 * a compact copy of the analysis (strings and arrays in one arena, no parse
 * tree). Text that no longer parses once its literals are lifted (typed
 * literals such as DATE '2020-01-01' that the lexer did not recognise) is
 * remembered with a "do not lift" entry and analysed as written each time.
 *
 * Invariants: a cached plan is immutable and reference counted, so a thread
 * may route with it while another evicts it; the cache (hash table + LRU) is
 * guarded by one mutex held only for lookups and inserts, never during an
 * analysis; plans are keyed by (database, text), and sp_router_reset() runs
 * on RELOAD because plans point into the database's table configuration.
 * Session changes of a query string (SET shardpool.*) are committed only
 * when the string is not refused.
 *
 * Deliberately not done here: parsing SQL (analyze.c), running anything,
 * merging results (merge.c), splitting COPY data (copysplit.c), choosing a
 * replica (health.c). Fan-out plans with per-shard SQL are built only for the
 * simple query protocol: the extended protocol gets a plain target or a
 * refusal.
 */
#include "router.h"

#include <errno.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analyze.h"
#include "shard_hash.h"

#define SQLSTATE_FEATURE "0A000"
#define SQLSTATE_PARAM "22023"
#define SQLSTATE_SYNTAX "42601"
#define SQLSTATE_UNDEFINED "42704"
#define SQLSTATE_OOM "53200"
#define SQLSTATE_INVALID_TEXT "22P02"
#define SQLSTATE_OUT_OF_RANGE "22003"
#define SQLSTATE_TOO_COMPLEX "54000" /* program_limit_exceeded */

#define DEFAULT_MAX_ENTRIES 10000
#define DEFAULT_MAX_BYTES ((size_t)32 << 20)
#define HASH_BUCKETS 16384 /* power of two */

/* Per-thread buffers above this size are given back after use. */
#define TLS_KEEP_BYTES (256 * 1024)

/*
 * After analysing a statement at least this long, give the freed memory back to the
 * system (malloc_trim): libpg_query's parse tree and its JSON take some 200 to 700 bytes
 * per byte of SQL, and glibc would keep the whole peak resident once freed. Smaller
 * statements leave too little behind to be worth the walk over the heap. Nor is it
 * trimmed while the process is within TRIM_SLACK_BYTES of its size after the last
 * trim: the next large statement reuses that memory, where trimming every time made
 * back-to-back 70 kB to 1 MB INSERTs 20 to 35% slower (all of it faulted in again).
 */
#define TRIM_AFTER_BYTES (64 * 1024)
#define TRIM_SLACK_BYTES ((size_t)64 << 20)

/* max_route_query_size: longer statements are routed without an analysis; 0 = no limit */
static atomic_size_t max_query_size = SP_ROUTER_DEFAULT_MAX_QUERY_SIZE;

/* ------------------------------------------------------------------ lexer */

enum tok_type {
	T_WORD = 1, /* identifier or keyword */
	T_QIDENT,   /* "quoted identifier", U&"..." */
	T_STRING,   /* '...' (liftable) */
	T_XSTRING,  /* E'...', U&'...', B'...', X'...', N'...' (never lifted) */
	T_DOLLAR,   /* $tag$...$tag$ (liftable) */
	T_NUMBER,
	T_PARAM, /* $n */
	T_OP,	 /* one operator character */
	T_LPAREN,
	T_RPAREN,
	T_LBRACK,
	T_RBRACK,
	T_COMMA,
	T_SEMI
};

/* lift marks */
#define LIFT_LITERAL 1
#define LIFT_SIGN 2 /* a unary sign folded into the next literal */

struct tok {
	uint32_t start, len;
	uint8_t type;
	uint8_t space; /* whitespace or a comment before it */
	uint8_t lift;
	uint8_t kw;    /* keyword id (enum kw) of a T_WORD the lifter cares about, else KW_NONE */
	int32_t depth; /* ( and [ nesting outside the token; a pair's brackets share it */
};

/* One statement of the text: tokens [first, end), end excludes the ';'. */
struct lstmt {
	int first, end;
	uint32_t start; /* byte offset where the statement's text begins (after the previous ';') */
	bool comment;	/* a comment precedes its first token: read hints from it */
};

struct lit {
	int tok;
	uint32_t voff, vlen; /* unescaped value in lexer.v, NUL-terminated */
	bool number;	     /* a numeric constant (42, 2.5, 1e3), else a '...' or $$...$$ string */
};

struct lexer {
	struct tok *t;
	int nt, capt;
	struct lstmt *s;
	int ns, caps;
	struct lit *l;
	int nl, capl;
	char *v;
	size_t vn, vcap;
	char *norm;
	size_t nn, ncap;
	int max_param;
	bool bad; /* unterminated string, identifier or comment: lift nothing */
	bool notok; /* filled by the shape memo: literals and one statement, no tokens */
	const char *src;
	size_t n; /* length of src */
};

struct tls {
	struct lexer lx;
	struct lexer rlx; /* sp_router_renumber_params's (a rewrite at Bind, after routing) */
	char *copy; /* NUL-terminated copies of the client's text */
	size_t copy_cap;
	sp_buf_t sql[SP_ROUTER_MAX_SHARDS];
	sp_buf_t scratch;
	int *tshard; /* shard of each key tuple */
	int tshard_cap;
	struct memo_ent *memo; /* MEMO_ENTRIES, allocated on first use */
};

static _Thread_local struct tls *tls_state;

static struct tls *tls_get(void)
{
	if (!tls_state)
		tls_state = calloc(1, sizeof(*tls_state));
	return tls_state;
}

static void memo_free(struct tls *tl);

static void lexer_free(struct lexer *lx)
{
	free(lx->t);
	free(lx->s);
	free(lx->l);
	free(lx->v);
	free(lx->norm);
	memset(lx, 0, sizeof(*lx));
}

void sp_router_thread_free(void)
{
	struct tls *tl = tls_state;
	if (!tl)
		return;
	memo_free(tl);
	lexer_free(&tl->lx);
	lexer_free(&tl->rlx);
	free(tl->copy);
	for (int i = 0; i < SP_ROUTER_MAX_SHARDS; i++)
		sp_buf_free(&tl->sql[i]);
	sp_buf_free(&tl->scratch);
	free(tl->tshard);
	free(tl);
	tls_state = NULL;
}

/* Give back the buffers of a lexer that one huge statement grew. */
static void lexer_trim(struct lexer *lx)
{
	if ((size_t)lx->capt * sizeof(struct tok) > TLS_KEEP_BYTES || lx->ncap > TLS_KEEP_BYTES ||
	    lx->vcap > TLS_KEEP_BYTES || (size_t)lx->capl * sizeof(struct lit) > TLS_KEEP_BYTES)
		lexer_free(lx);
}

/* Give back buffers that one huge statement grew. */
static void tls_trim(struct tls *tl)
{
	lexer_trim(&tl->lx);
	if (tl->copy_cap > TLS_KEEP_BYTES) {
		free(tl->copy);
		tl->copy = NULL;
		tl->copy_cap = 0;
	}
	sp_buf_shrink(&tl->scratch, TLS_KEEP_BYTES);
}

static bool growz(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t ncap = *cap ? *cap : 256;
	while (ncap < need)
		ncap *= 2;
	char *np = realloc(*p, ncap);
	if (!np)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

/* Character classes of the lexer, one table lookup each (it runs on every simple query). */
enum { CC_SPACE = 1, CC_IDSTART = 2, CC_IDCHAR = 4, CC_DIGIT = 8 };
#define CC_LETTERS(a) [a] = CC_IDSTART | CC_IDCHAR
#define CC_8(a) CC_LETTERS(a), CC_LETTERS(a + 1), CC_LETTERS(a + 2), CC_LETTERS(a + 3), \
		CC_LETTERS(a + 4), CC_LETTERS(a + 5), CC_LETTERS(a + 6), CC_LETTERS(a + 7)
#define CC_DIG(a) [a] = CC_IDCHAR | CC_DIGIT
static const uint8_t cclass[256] = {
	[' '] = CC_SPACE, ['\t'] = CC_SPACE, ['\n'] = CC_SPACE, ['\r'] = CC_SPACE, ['\f'] = CC_SPACE,
	['\v'] = CC_SPACE, ['_'] = CC_IDSTART | CC_IDCHAR, ['$'] = CC_IDCHAR,
	CC_DIG('0'), CC_DIG('1'), CC_DIG('2'), CC_DIG('3'), CC_DIG('4'),
	CC_DIG('5'), CC_DIG('6'), CC_DIG('7'), CC_DIG('8'), CC_DIG('9'),
	CC_8('a'), CC_8('a' + 8), CC_8('a' + 16), CC_LETTERS('y'), CC_LETTERS('z'),
	CC_8('A'), CC_8('A' + 8), CC_8('A' + 16), CC_LETTERS('Y'), CC_LETTERS('Z'),
	CC_8(0x80), CC_8(0x88), CC_8(0x90), CC_8(0x98), CC_8(0xa0), CC_8(0xa8), CC_8(0xb0), CC_8(0xb8),
	CC_8(0xc0), CC_8(0xc8), CC_8(0xd0), CC_8(0xd8), CC_8(0xe0), CC_8(0xe8), CC_8(0xf0), CC_8(0xf8),
};

static inline bool is_space(char c)
{
	return cclass[(unsigned char)c] & CC_SPACE;
}

static inline bool ident_start(unsigned char c)
{
	return cclass[c] & CC_IDSTART;
}

static inline bool ident_char(unsigned char c)
{
	return cclass[c] & CC_IDCHAR;
}

static inline bool is_digit(char c)
{
	return cclass[(unsigned char)c] & CC_DIGIT;
}

/* End of a '...' string starting at s[p] (the quote); backslash escapes for E''. */
static size_t skip_quote(const char *s, size_t n, size_t p, bool backslash, bool *bad)
{
	p++;
	while (p < n) {
		if (backslash && s[p] == '\\' && p + 1 < n) {
			p += 2;
			continue;
		}
		if (s[p] == '\'') {
			if (p + 1 < n && s[p + 1] == '\'') {
				p += 2;
				continue;
			}
			return p + 1;
		}
		p++;
	}
	*bad = true;
	return n;
}

static size_t skip_qident(const char *s, size_t n, size_t p, bool *bad)
{
	p++;
	while (p < n) {
		if (s[p] == '"') {
			if (p + 1 < n && s[p + 1] == '"') {
				p += 2;
				continue;
			}
			return p + 1;
		}
		p++;
	}
	*bad = true;
	return n;
}

/* Does a number start at s[p] (a digit, or a '.' before one)? */
static inline bool number_start(const char *s, size_t n, size_t p)
{
	return is_digit(s[p]) || (s[p] == '.' && p + 1 < n && is_digit(s[p + 1]));
}

/* End of the number starting at s[p]: digits, a fraction, an exponent. */
static size_t skip_number(const char *s, size_t n, size_t p)
{
	while (p < n && is_digit(s[p]))
		p++;
	if (p < n && s[p] == '.' && !(p + 1 < n && s[p + 1] == '.')) {
		p++;
		while (p < n && is_digit(s[p]))
			p++;
	}
	if (p < n && (s[p] == 'e' || s[p] == 'E')) {
		size_t q = p + 1;
		if (q < n && (s[q] == '+' || s[q] == '-'))
			q++;
		if (q < n && is_digit(s[q])) {
			p = q;
			while (p < n && is_digit(s[p]))
				p++;
		}
	}
	return p;
}

/* End of the parameter $N at s[p]; *max_param becomes N if that is larger. */
static size_t skip_param(const char *s, size_t n, size_t p, int *max_param)
{
	long v = 0;
	p++;
	while (p < n && is_digit(s[p])) {
		if (v < 100000000)
			v = v * 10 + (s[p] - '0');
		p++;
	}
	if (v > *max_param)
		*max_param = (int)v;
	return p;
}

/* End of the block comment starting at s[p] ("/" "*"); they nest, as in PostgreSQL.
 * *bad is set when the text ends inside it. */
static size_t skip_block_comment(const char *s, size_t n, size_t p, bool *bad)
{
	int nest = 1;
	p += 2;
	while (p < n && nest > 0) {
		if (s[p] == '*' && p + 1 < n && s[p + 1] == '/') {
			nest--;
			p += 2;
		} else if (s[p] == '/' && p + 1 < n && s[p + 1] == '*') {
			nest++;
			p += 2;
		} else {
			p++;
		}
	}
	if (nest > 0)
		*bad = true;
	return p;
}

/* s[p] == '$': length of a dollar-quote tag "$tag$" starting there, 0 if none. */
static size_t dollar_tag(const char *s, size_t n, size_t p)
{
	size_t q = p + 1;
	if (q < n && s[q] == '$')
		return 2;
	if (q >= n || !ident_start((unsigned char)s[q]))
		return 0;
	while (q < n && (ident_start((unsigned char)s[q]) || is_digit(s[q])))
		q++;
	if (q < n && s[q] == '$')
		return q + 1 - p;
	return 0;
}

/*
 * The keywords the lifter looks at, found by a small hash instead of string
 * compares (the lexer runs on every simple query).
 */
enum kw {
	KW_NONE = 0,
	KW_ALL,
	KW_AND,
	KW_ANY,
	KW_BETWEEN,
	KW_BIT,
	KW_BY,
	KW_CASE,
	KW_CHAR,
	KW_CHARACTER,
	KW_DEC,
	KW_DECIMAL,
	KW_DELETE,
	KW_DISTINCT,
	KW_ELSE,
	KW_ESCAPE,
	KW_EXCEPT,
	KW_FETCH,
	KW_FLOAT,
	KW_FOR,
	KW_FROM,
	KW_GROUP,
	KW_HAVING,
	KW_ILIKE,
	KW_IN,
	KW_INSERT,
	KW_INTERSECT,
	KW_INTERVAL,
	KW_IS,
	KW_LIKE,
	KW_LIMIT,
	KW_MERGE,
	KW_NCHAR,
	KW_NOT,
	KW_NUMERIC,
	KW_OFFSET,
	KW_ON,
	KW_OR,
	KW_ORDER,
	KW_PARTITION,
	KW_RETURN,
	KW_RETURNING,
	KW_SECOND,
	KW_SELECT,
	KW_SET,
	KW_SIMILAR,
	KW_SOME,
	KW_SYMMETRIC,
	KW_THEN,
	KW_TIME,
	KW_TIMESTAMP,
	KW_TIMESTAMPTZ,
	KW_TIMETZ,
	KW_TO,
	KW_UNION,
	KW_UPDATE,
	KW_VALUES,
	KW_VARBIT,
	KW_VARCHAR,
	KW_VARYING,
	KW_WHEN,
	KW_WHERE,
	KW_WINDOW,
	KW_WITH
};

#define KF_LIFT 1u    /* a statement starting with it has its literals lifted */
#define KF_VALUE 2u   /* a literal after it is a value, not part of a typed literal (DATE '...') */
#define KF_TYPMOD 4u  /* name(n): n is a type modifier and stays a constant (varchar(10)) */
#define KF_BYSTART 8u /* ORDER / GROUP / PARTITION ... BY */
#define KF_BYEND 16u  /* ends an ORDER BY / GROUP BY list at its level */

static const struct kwdef {
	const char *name;
	uint8_t id;
	uint8_t flags;
} kwdefs[] = {
    {"all", KW_ALL, KF_VALUE},
    {"and", KW_AND, KF_VALUE},
    {"any", KW_ANY, KF_VALUE},
    {"between", KW_BETWEEN, KF_VALUE},
    {"bit", KW_BIT, KF_TYPMOD},
    {"by", KW_BY, KF_VALUE},
    {"case", KW_CASE, KF_VALUE},
    {"char", KW_CHAR, KF_TYPMOD},
    {"character", KW_CHARACTER, KF_TYPMOD},
    {"dec", KW_DEC, KF_TYPMOD},
    {"decimal", KW_DECIMAL, KF_TYPMOD},
    {"delete", KW_DELETE, KF_LIFT},
    {"distinct", KW_DISTINCT, KF_VALUE},
    {"else", KW_ELSE, KF_VALUE},
    {"escape", KW_ESCAPE, KF_VALUE},
    {"except", KW_EXCEPT, KF_BYEND},
    {"fetch", KW_FETCH, KF_BYEND},
    {"float", KW_FLOAT, KF_TYPMOD},
    {"for", KW_FOR, KF_BYEND},
    {"from", KW_FROM, KF_VALUE},
    {"group", KW_GROUP, KF_BYSTART},
    {"having", KW_HAVING, KF_VALUE | KF_BYEND},
    {"ilike", KW_ILIKE, KF_VALUE},
    {"in", KW_IN, KF_VALUE},
    {"insert", KW_INSERT, KF_LIFT},
    {"intersect", KW_INTERSECT, KF_BYEND},
    {"interval", KW_INTERVAL, KF_TYPMOD},
    {"is", KW_IS, KF_VALUE},
    {"like", KW_LIKE, KF_VALUE},
    {"limit", KW_LIMIT, KF_VALUE | KF_BYEND},
    {"merge", KW_MERGE, KF_LIFT},
    {"nchar", KW_NCHAR, KF_TYPMOD},
    {"not", KW_NOT, KF_VALUE},
    {"numeric", KW_NUMERIC, KF_TYPMOD},
    {"offset", KW_OFFSET, KF_VALUE | KF_BYEND},
    {"on", KW_ON, KF_VALUE},
    {"or", KW_OR, KF_VALUE},
    {"order", KW_ORDER, KF_BYSTART},
    {"partition", KW_PARTITION, KF_BYSTART},
    {"return", KW_RETURN, KF_VALUE},
    {"returning", KW_RETURNING, KF_VALUE | KF_BYEND},
    {"second", KW_SECOND, KF_TYPMOD},
    {"select", KW_SELECT, KF_LIFT | KF_VALUE},
    {"set", KW_SET, KF_VALUE},
    {"similar", KW_SIMILAR, KF_VALUE},
    {"some", KW_SOME, KF_VALUE},
    {"symmetric", KW_SYMMETRIC, KF_VALUE},
    {"then", KW_THEN, KF_VALUE},
    {"time", KW_TIME, KF_TYPMOD},
    {"timestamp", KW_TIMESTAMP, KF_TYPMOD},
    {"timestamptz", KW_TIMESTAMPTZ, KF_TYPMOD},
    {"timetz", KW_TIMETZ, KF_TYPMOD},
    {"to", KW_TO, KF_VALUE},
    {"union", KW_UNION, KF_BYEND},
    {"update", KW_UPDATE, KF_LIFT},
    {"values", KW_VALUES, KF_LIFT | KF_VALUE},
    {"varbit", KW_VARBIT, KF_TYPMOD},
    {"varchar", KW_VARCHAR, KF_TYPMOD},
    {"varying", KW_VARYING, KF_TYPMOD},
    {"when", KW_WHEN, KF_VALUE},
    {"where", KW_WHERE, KF_VALUE},
    {"window", KW_WINDOW, KF_BYEND},
    {"with", KW_WITH, KF_LIFT},
};

#define KW_MAXLEN 11
#define KW_SLOTS 256

static uint8_t kw_flags[KW_WITH + 1];
static uint8_t kw_slot[KW_SLOTS]; /* index + 1 into kwdefs, 0 empty; open addressing */
static pthread_once_t kw_once = PTHREAD_ONCE_INIT;
static atomic_bool kw_ready; /* kw_init ran: lex() skips pthread_once */

static unsigned kw_hash(const char *w, size_t n)
{
	return ((unsigned)n * 31u + (unsigned)(w[0] | 0x20) * 7u +
		(unsigned)(w[n - 1] | 0x20) * 3u + (unsigned)(w[n / 2] | 0x20)) &
	       (KW_SLOTS - 1);
}

static void kw_init(void)
{
	for (size_t i = 0; i < sizeof(kwdefs) / sizeof(kwdefs[0]); i++) {
		unsigned h = kw_hash(kwdefs[i].name, strlen(kwdefs[i].name));
		while (kw_slot[h])
			h = (h + 1) & (KW_SLOTS - 1);
		kw_slot[h] = (uint8_t)(i + 1);
		kw_flags[kwdefs[i].id] = kwdefs[i].flags;
	}
}

static uint8_t kw_lookup(const char *w, size_t n)
{
	if (n > KW_MAXLEN || n == 0)
		return KW_NONE;
	for (unsigned h = kw_hash(w, n); kw_slot[h]; h = (h + 1) & (KW_SLOTS - 1)) {
		const char *k = kwdefs[kw_slot[h] - 1].name;
		size_t i = 0;
		while (i < n && k[i] && k[i] == (char)(w[i] | 0x20))
			i++;
		if (i == n && !k[i])
			return kwdefs[kw_slot[h] - 1].id;
	}
	return KW_NONE;
}

static bool kw_has(const struct tok *t, unsigned flag)
{
	return t->type == T_WORD && (kw_flags[t->kw] & flag);
}

static inline bool push_tok(struct lexer *lx, uint8_t type, size_t start, size_t end, bool space,
			    int depth)
{
	if (lx->nt >= lx->capt && !sp_grow_array(&lx->t, &lx->capt, lx->nt + 1, sizeof(*lx->t)))
		return false;
	struct tok *t = &lx->t[lx->nt++];
	t->start = (uint32_t)start;
	t->len = (uint32_t)(end - start);
	t->type = type;
	t->space = space;
	t->lift = 0;
	t->kw = type == T_WORD ? kw_lookup(lx->src + start, end - start) : KW_NONE;
	t->depth = depth;
	return true;
}

static bool close_stmt(struct lexer *lx, int first, uint32_t start, bool comment)
{
	if (lx->nt - (lx->nt > first && lx->t[lx->nt - 1].type == T_SEMI ? 1 : 0) <= first)
		return true; /* empty statement */
	if (!sp_grow_array(&lx->s, &lx->caps, lx->ns + 1, sizeof(*lx->s)))
		return false;
	struct lstmt *st = &lx->s[lx->ns++];
	st->first = first;
	st->end = lx->nt;
	if (st->end > first && lx->t[st->end - 1].type == T_SEMI)
		st->end--;
	st->start = start;
	st->comment = comment;
	return true;
}

/* Split s into tokens and statements. False only when out of memory. */
static bool lex(const char *s, size_t n, struct lexer *lx)
{
	size_t p = 0;
	int depth = 0, first = 0;
	bool space = false, comment = false;
	uint32_t stmt_start = 0;

	lx->nt = lx->ns = lx->nl = 0;
	lx->vn = lx->nn = 0;
	lx->max_param = 0;
	lx->bad = false;
	lx->notok = false;
	lx->src = s;
	lx->n = n;
	if (!atomic_load_explicit(&kw_ready, memory_order_acquire)) {
		pthread_once(&kw_once, kw_init);
		atomic_store_explicit(&kw_ready, true, memory_order_release);
	}
	while (p < n) {
		unsigned char c = (unsigned char)s[p];
		size_t start = p;
		uint8_t type;

		if (is_space((char)c)) {
			space = true;
			p++;
			continue;
		}
		if (c == '-' && p + 1 < n && s[p + 1] == '-') {
			while (p < n && s[p] != '\n')
				p++;
			space = true;
			if (lx->nt == first)
				comment = true;
			continue;
		}
		if (c == '/' && p + 1 < n && s[p + 1] == '*') {
			p = skip_block_comment(s, n, p, &lx->bad);
			space = true;
			if (lx->nt == first)
				comment = true;
			continue;
		}
		if (ident_start(c)) {
			char lc = (char)(c | 0x20);
			if ((lc == 'e') && p + 1 < n && s[p + 1] == '\'') {
				p = skip_quote(s, n, p + 1, true, &lx->bad);
				type = T_XSTRING;
			} else if ((lc == 'b' || lc == 'x' || lc == 'n') && p + 1 < n &&
				   s[p + 1] == '\'') {
				p = skip_quote(s, n, p + 1, false, &lx->bad);
				type = T_XSTRING;
			} else if (lc == 'u' && p + 2 < n && s[p + 1] == '&' &&
				   (s[p + 2] == '\'' || s[p + 2] == '"')) {
				if (s[p + 2] == '\'') {
					p = skip_quote(s, n, p + 2, false, &lx->bad);
					type = T_XSTRING;
				} else {
					p = skip_qident(s, n, p + 2, &lx->bad);
					type = T_QIDENT;
				}
			} else {
				while (p < n && ident_char((unsigned char)s[p]))
					p++;
				type = T_WORD;
			}
		} else if (c == '"') {
			p = skip_qident(s, n, p, &lx->bad);
			type = T_QIDENT;
		} else if (c == '\'') {
			p = skip_quote(s, n, p, false, &lx->bad);
			type = T_STRING;
		} else if (c == '$' && p + 1 < n && is_digit(s[p + 1])) {
			p = skip_param(s, n, p, &lx->max_param);
			type = T_PARAM;
		} else if (c == '$' && dollar_tag(s, n, p)) {
			size_t tl = dollar_tag(s, n, p), q = p + tl;
			type = T_DOLLAR;
			for (;;) {
				const char *hit = q < n ? memchr(s + q, '$', n - q) : NULL;
				if (!hit) {
					lx->bad = true;
					p = n;
					break;
				}
				q = (size_t)(hit - s);
				if (q + tl <= n && memcmp(s + q, s + start, tl) == 0) {
					p = q + tl;
					break;
				}
				q++;
			}
		} else if (number_start(s, n, p)) {
			p = skip_number(s, n, p);
			type = T_NUMBER;
		} else {
			p++;
			switch (c) {
			case '(':
				type = T_LPAREN;
				break;
			case ')':
				type = T_RPAREN;
				if (depth > 0)
					depth--;
				break;
			case '[':
				type = T_LBRACK;
				break;
			case ']':
				type = T_RBRACK;
				if (depth > 0)
					depth--;
				break;
			case ',':
				type = T_COMMA;
				break;
			case ';':
				type = T_SEMI;
				break;
			default:
				type = T_OP;
			}
		}
		if (!push_tok(lx, type, start, p, space, depth))
			return false;
		space = false;
		if (type == T_LPAREN || type == T_LBRACK)
			depth++;
		if (type == T_SEMI && depth == 0) {
			if (!close_stmt(lx, first, stmt_start, comment))
				return false;
			first = lx->nt;
			stmt_start = (uint32_t)p;
			comment = false;
		}
	}
	return close_stmt(lx, first, stmt_start, comment);
}

static bool tok_is(const char *s, const struct tok *t, const char *kw)
{
	size_t l = strlen(kw);
	return t->type == T_WORD && t->len == l && strncasecmp(s + t->start, kw, l) == 0;
}

static bool tok_in(const char *s, const struct tok *t, const char *const *list)
{
	if (t->type != T_WORD)
		return false;
	for (; *list; list++)
		if (tok_is(s, t, *list))
			return true;
	return false;
}

static bool push_value(struct lexer *lx, int tok, const char *p, size_t n, bool unquote,
		       bool number)
{
	if (!sp_grow_array(&lx->l, &lx->capl, lx->nl + 1, sizeof(*lx->l)) ||
	    !growz(&lx->v, &lx->vcap, lx->vn + n + 1))
		return false;
	struct lit *l = &lx->l[lx->nl++];
	char *w = lx->v + lx->vn;
	l->tok = tok;
	l->number = number;
	l->voff = (uint32_t)lx->vn;
	if (unquote) {
		for (size_t i = 0; i < n; i++) {
			*w++ = p[i];
			if (p[i] == '\'' && i + 1 < n && p[i + 1] == '\'')
				i++;
		}
	} else {
		for (size_t i = 0; i < n; i++)
			if (!is_space(p[i]))
				*w++ = p[i];
	}
	l->vlen = (uint32_t)(w - (lx->v + lx->vn));
	*w++ = '\0';
	lx->vn = (size_t)(w - lx->v);
	return true;
}

/* Mark the literals of lifted statements. False only when out of memory. */
static bool lift(const char *s, struct lexer *lx)
{
	if (lx->bad)
		return true;
	for (int si = 0; si < lx->ns; si++) {
		const struct lstmt *st = &lx->s[si];
		uint64_t inby = 0;
		int w = st->first;
		while (w < st->end && lx->t[w].type != T_WORD)
			w++;
		if (w >= st->end || !kw_has(&lx->t[w], KF_LIFT))
			continue;
		for (int i = st->first; i < st->end; i++) {
			struct tok *t = &lx->t[i];
			uint64_t bit = t->depth < 64 ? (uint64_t)1 << t->depth : 0;

			switch (t->type) {
			case T_WORD: /* identifiers (KW_NONE) change nothing */
				if (t->kw != KW_NONE) {
					if (i > st->first && t->kw == KW_BY && kw_has(&lx->t[i - 1], KF_BYSTART))
						inby |= bit;
					else if (kw_has(t, KF_BYEND))
						inby &= ~bit;
				}
				continue;
			case T_RPAREN:
			case T_RBRACK:
				inby &= t->depth < 63 ? ((uint64_t)1 << (t->depth + 1)) - 1
						      : ~(uint64_t)0;
				continue;
			case T_STRING:
			case T_DOLLAR:
			case T_NUMBER:
				break; /* a literal: read on */
			default:
				continue;
			}
			const struct tok *prev = i > st->first ? &lx->t[i - 1] : NULL;
			const struct tok *pp = i > st->first + 1 ? &lx->t[i - 2] : NULL;
			if (t->type == T_STRING || t->type == T_DOLLAR) {
				const char *body;
				size_t blen;
				if (prev && ((prev->type == T_WORD && !kw_has(prev, KF_VALUE)) ||
					     prev->type == T_RPAREN || prev->type == T_STRING ||
					     prev->type == T_XSTRING || prev->type == T_QIDENT))
					continue;
				if (t->type == T_STRING) {
					body = s + t->start + 1;
					blen = t->len - 2;
				} else {
					size_t tl = dollar_tag(s, t->start + t->len, t->start);
					body = s + t->start + tl;
					blen = t->len - 2 * tl;
				}
				if (blen > 0 && body[0] == '{')
					continue; /* an array literal: the analyzer expands it
						     itself */
				if (!push_value(lx, i, body, blen, t->type == T_STRING, false))
					return false;
				t->lift = LIFT_LITERAL;
				continue;
			}
			if (prev && prev->type == T_WORD && prev->kw == KW_BY)
				continue; /* ORDER BY 1: a column position, not a value */
			if (prev && prev->type == T_COMMA && (inby & bit))
				continue;
			if (prev && prev->type == T_LPAREN && pp && kw_has(pp, KF_TYPMOD))
				continue;
			if (prev && prev->type == T_OP && prev->len == 1 &&
			    (s[prev->start] == '-' || s[prev->start] == '+') &&
			    (!pp || pp->type == T_OP || pp->type == T_LPAREN ||
			     pp->type == T_LBRACK || pp->type == T_COMMA || kw_has(pp, KF_VALUE)) &&
			    !(pp && pp->type == T_OP && pp->len == 1 &&
			      (s[pp->start] == '-' || s[pp->start] == '+'))) {
				/* a unary sign: -5 is one constant for the grammar */
				lx->t[i - 1].lift = LIFT_SIGN;
				if (!push_value(lx, i, s + prev->start,
						t->start + t->len - prev->start, false, true))
					return false;
			} else if (!push_value(lx, i, s + t->start, t->len, false, true)) {
				return false;
			}
			t->lift = LIFT_LITERAL;
		}
	}
	return true;
}

/* The cache key: tokens separated by one space where the text had any, literals as $N. */
static bool normalise(const char *s, struct lexer *lx)
{
	int next = lx->max_param;
	bool carry = false;
	size_t need = 1;
	char *w;

	/* tokens are disjoint parts of the text; each gets at most one space before it,
	 * and a literal (with its sign token) becomes $N of at most 12 bytes */
	need += lx->n + (size_t)lx->nt + 24 * (size_t)lx->nl;
	if (!growz(&lx->norm, &lx->ncap, need))
		return false;
	w = lx->norm;
	for (int i = 0; i < lx->nt; i++) {
		const struct tok *t = &lx->t[i];
		if (t->lift == LIFT_SIGN) {
			carry = carry || t->space;
			continue;
		}
		if ((t->space || carry) && w > lx->norm)
			*w++ = ' ';
		carry = false;
		if (t->lift == LIFT_LITERAL) {
			char num[12];
			int k = 0;
			unsigned v = (unsigned)++next;
			do
				num[k++] = (char)('0' + v % 10);
			while ((v /= 10) > 0);
			*w++ = '$';
			while (k > 0)
				*w++ = num[--k];
		} else {
			memcpy(w, s + t->start, t->len);
			w += t->len;
		}
	}
	*w = '\0';
	lx->nn = (size_t)(w - lx->norm);
	return true;
}

/* ------------------------------------------------------------------ plans */

enum { NS_QUERY = 0, NS_PARSE = 1 };

struct pchunk {
	struct pchunk *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

struct parena {
	struct pchunk *head;
	size_t bytes;
	size_t first; /* size of the first chunk: an estimate of the whole plan */
	bool oom;
};

static void *pa_alloc(struct parena *pa, size_t n)
{
	struct pchunk *c = pa->head;
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	if (!c || c->cap - c->used < n) {
		size_t cap = c ? c->cap * 2 : (pa->first ? pa->first : 1024);
		if (cap > 65536)
			cap = 65536;
		if (cap < n)
			cap = n;
		c = malloc(sizeof(*c) + cap);
		if (!c) {
			pa->oom = true;
			return NULL;
		}
		c->next = pa->head;
		c->used = 0;
		c->cap = cap;
		pa->head = c;
		pa->bytes += sizeof(*c) + cap;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

static void pa_free(struct parena *pa)
{
	struct pchunk *c = pa->head;
	while (c) {
		struct pchunk *n = c->next;
		free(c);
		c = n;
	}
	pa->head = NULL;
}

static const char *pa_strdup(struct parena *pa, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = pa_alloc(pa, n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static void *pa_dup(struct parena *pa, const void *src, size_t n)
{
	if (!src || n == 0)
		return NULL;
	void *d = pa_alloc(pa, n);
	if (d)
		memcpy(d, src, n);
	return d;
}

static void copy_value(struct parena *pa, sp_value_t *v)
{
	v->text = pa_strdup(pa, v->text);
	v->cast = pa_strdup(pa, v->cast);
}

static sp_value_t *copy_values(struct parena *pa, const sp_value_t *src, int n)
{
	sp_value_t *d = pa_dup(pa, src, sizeof(*src) * (size_t)(n > 0 ? n : 0));
	for (int i = 0; d && i < n; i++)
		copy_value(pa, &d[i]);
	return d;
}

/* What the router reads of a statement, copied out of the analysis arena. */
static void copy_stmt(struct parena *pa, sp_stmt_t *d, const sp_stmt_t *s)
{
	*d = *s;
	d->node = pa_strdup(pa, s->node);
	d->error = pa_strdup(pa, s->error);
	d->write_reason = pa_strdup(pa, s->write_reason);
	d->route_why = pa_strdup(pa, s->route_why);
	d->name = pa_strdup(pa, s->name);
	d->payload = NULL;
	d->params = NULL;
	d->n_params = 0;
	d->tables = pa_dup(pa, s->tables, sizeof(*s->tables) * (size_t)s->n_tables);
	for (int i = 0; d->tables && i < s->n_tables; i++) {
		sp_table_ref_t *t = &d->tables[i];
		t->schema = pa_strdup(pa, t->schema);
		t->name = pa_strdup(pa, t->name);
		t->alias = pa_strdup(pa, t->alias);
		t->keys.why = pa_strdup(pa, t->keys.why);
		t->keys.values = copy_values(pa, t->keys.values, t->keys.n_tuples * t->keys.n_keys);
		for (int k = 0; k < SP_ANALYZE_MAX_KEYS; k++)
			copy_value(pa, &t->key_new[k]);
	}
	d->txn.modes.isolation = pa_strdup(pa, s->txn.modes.isolation);
	d->set.name = pa_strdup(pa, s->set.name);
	d->set.value = pa_strdup(pa, s->set.value);
	d->set.modes.isolation = pa_strdup(pa, s->set.modes.isolation);
	d->copy.cols = NULL;
	d->copy.filename = pa_strdup(pa, s->copy.filename);
	d->copy.delimiter = pa_strdup(pa, s->copy.delimiter);
	d->copy.null_str = pa_strdup(pa, s->copy.null_str);
	d->copy.quote = pa_strdup(pa, s->copy.quote);
	d->copy.escape = pa_strdup(pa, s->copy.escape);
	d->copy.encoding = pa_strdup(pa, s->copy.encoding);
	d->insert.cols = NULL;
	d->insert.rows = NULL;
	d->shape.cols = pa_dup(pa, s->shape.cols, sizeof(*s->shape.cols) * (size_t)s->shape.n_cols);
	for (int i = 0; d->shape.cols && i < s->shape.n_cols; i++) {
		sp_out_col_t *c = &d->shape.cols[i];
		c->name = pa_strdup(pa, c->name);
		c->func = pa_strdup(pa, c->func);
		c->arg_text = pa_strdup(pa, c->arg_text);
	}
	d->shape.group_target =
	    pa_dup(pa, s->shape.group_target, sizeof(int) * (size_t)s->shape.n_group);
	d->shape.sort = pa_dup(pa, s->shape.sort, sizeof(*s->shape.sort) * (size_t)s->shape.n_sort);
	d->shape.distinct_on =
	    pa_dup(pa, s->shape.distinct_on,
		   sizeof(*s->shape.distinct_on) * (size_t)s->shape.n_distinct_on);
	copy_value(pa, &d->shape.limit);
	copy_value(pa, &d->shape.offset);
}

struct sp_plan {
	atomic_int refs;
	struct sp_plan *hnext;	       /* hash chain */
	struct sp_plan *lprev, *lnext; /* LRU, most recent first */
	bool cached;
	bool nolift;  /* the text does not parse once literals are lifted: analyse the client's text
		       */
	uint8_t kind; /* key namespace: NS_QUERY (normalised simple query) or NS_PARSE */
	uint64_t hash;
	const sp_db_conf_t *db;
	char *text;
	size_t text_len;
	size_t bytes;
	int n_stmts;
	sp_stmt_t *stmts;
	bool has_error;
	/* the analysis asked for a table's column order (INSERT without a column
	 * list): the plan is stale once cols_gen moves past the one it saw */
	bool uses_cols;
	unsigned cols_gen;
	/* a Parse text longer than max_route_query_size: not analysed, not cached (text is
	 * empty); routed by its leading hints, else by the session (route_oversize) */
	size_t oversize, oversize_limit;
	sp_hints_t hints;
	struct parena pa;
};

static void plan_free(sp_plan_t *p)
{
	pa_free(&p->pa);
	free(p->text);
	free(p);
}

void sp_plan_ref(sp_plan_t *p)
{
	if (p)
		atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void sp_plan_unref(sp_plan_t *p)
{
	if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		plan_free(p);
}

static sp_plan_t *plan_new(const sp_db_conf_t *db, uint8_t kind, const char *text, size_t len,
			   uint64_t hash)
{
	sp_plan_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->text = malloc(len + 1);
	if (!p->text) {
		free(p);
		return NULL;
	}
	memcpy(p->text, text, len);
	p->text[len] = '\0';
	p->text_len = len;
	p->db = db;
	p->kind = kind;
	p->hash = hash;
	atomic_init(&p->refs, 1);
	p->bytes = sizeof(*p) + len + 1;
	return p;
}

/* Fill a plan from an analysis (the plan does not keep the analysis). */
static bool plan_fill(sp_plan_t *p, const sp_analysis_t *a)
{
	size_t est = 64;
	for (int i = 0; i < a->n_stmts; i++) {
		const sp_stmt_t *st = &a->stmts[i];
		est += sizeof(*st) + 128 + (size_t)st->shape.n_cols * (sizeof(sp_out_col_t) + 48) +
		       (size_t)st->shape.n_sort * sizeof(sp_sort_item_t) +
		       (size_t)st->shape.n_group * 16;
		for (int t = 0; t < st->n_tables; t++)
			est += sizeof(sp_table_ref_t) + 48 +
			       (size_t)st->tables[t].keys.n_tuples *
				   (size_t)st->tables[t].keys.n_keys * (sizeof(sp_value_t) + 24);
	}
	p->pa.first = est;
	p->n_stmts = a->n_stmts;
	p->has_error = a->has_error;
	p->stmts = a->n_stmts ? pa_alloc(&p->pa, sizeof(*p->stmts) * (size_t)a->n_stmts) : NULL;
	for (int i = 0; p->stmts && i < a->n_stmts; i++)
		copy_stmt(&p->pa, &p->stmts[i], &a->stmts[i]);
	p->bytes += p->pa.bytes;
	return !p->pa.oom && (a->n_stmts == 0 || p->stmts);
}

/*
 * Column orders of sharded tables (sp_router_set_columns): bumped on every
 * change, so a plan that used them can tell it is stale.
 */
static atomic_uint cols_gen = 1;
/* Bumped whenever a statement shows the column orders should be re-read. */
static atomic_uint cols_requests;

static bool plan_stale(const sp_plan_t *p)
{
	return p->uses_cols && p->cols_gen != atomic_load_explicit(&cols_gen, memory_order_acquire);
}

/* ------------------------------------------------------------------ cache */

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static sp_plan_t *buckets[HASH_BUCKETS];
static sp_plan_t *lru_head, *lru_tail;
static size_t cache_entries, cache_bytes;
static size_t max_entries = DEFAULT_MAX_ENTRIES, max_bytes = DEFAULT_MAX_BYTES;
static uint64_t st_hits, st_misses, st_evictions, st_parse_errors, st_no_lift;
/* Bumped when every cached plan is dropped (reload, new function lists): entries of the
 * per-thread shape memo made before it are not used again. Hits of that memo. */
static atomic_uint memo_epoch = 1;
static atomic_uint_fast64_t st_memo_hits, st_fast_hits;

#define HASH_MUL UINT64_C(0x9E3779B97F4A7C15)

/* h with n bytes of s mixed in, 8 bytes per step, their count first. */
static uint64_t hash_more(uint64_t h, const char *s, size_t n)
{
	h = (h ^ n) * HASH_MUL;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * HASH_MUL;
		h ^= h >> 29;
		s += 8;
		n -= 8;
	}
	if (n) {
		uint64_t w = 0;
		memcpy(&w, s, n);
		h = (h ^ w) * HASH_MUL;
		h ^= h >> 29;
	}
	return h;
}

/* A fast 64-bit hash of the key; the db pointer and kind are mixed in. */
static uint64_t key_hash(const sp_db_conf_t *db, uint8_t kind, const char *s, size_t n)
{
	uint64_t h = hash_more((uint64_t)(uintptr_t)db * HASH_MUL ^ ((uint64_t)kind << 56), s, n);
	h ^= h >> 32;
	h *= UINT64_C(0xD6E8FEB86659FD93);
	h ^= h >> 32;
	return h;
}

static void lru_unlink(sp_plan_t *p)
{
	if (p->lprev)
		p->lprev->lnext = p->lnext;
	else
		lru_head = p->lnext;
	if (p->lnext)
		p->lnext->lprev = p->lprev;
	else
		lru_tail = p->lprev;
	p->lprev = p->lnext = NULL;
}

static void lru_push(sp_plan_t *p)
{
	p->lprev = NULL;
	p->lnext = lru_head;
	if (lru_head)
		lru_head->lprev = p;
	lru_head = p;
	if (!lru_tail)
		lru_tail = p;
}

/* Caller holds cache_mu. Drops the cache's reference. */
static void cache_remove(sp_plan_t *p)
{
	sp_plan_t **pp = &buckets[p->hash & (HASH_BUCKETS - 1)];
	while (*pp && *pp != p)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->hnext;
	lru_unlink(p);
	p->cached = false;
	cache_entries--;
	cache_bytes -= p->bytes;
	sp_plan_unref(p);
}

static void cache_evict_to(size_t entries, size_t bytes)
{
	while (lru_tail && (cache_entries > entries || cache_bytes > bytes)) {
		cache_remove(lru_tail);
		st_evictions++;
	}
}

/* A referenced plan for (db, kind, text), or NULL. Counts a hit. */
static sp_plan_t *cache_get(const sp_db_conf_t *db, uint8_t kind, const char *s, size_t n,
			    uint64_t h)
{
	pthread_mutex_lock(&cache_mu);
	for (sp_plan_t *p = buckets[h & (HASH_BUCKETS - 1)]; p; p = p->hnext) {
		if (p->hash == h && p->db == db && p->kind == kind && p->text_len == n &&
		    memcmp(p->text, s, n) == 0) {
			if (plan_stale(p)) {
				/* analysed with a column order that has changed since */
				cache_remove(p);
				break;
			}
			if (lru_head != p) {
				lru_unlink(p);
				lru_push(p);
			}
			atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
			st_hits++;
			pthread_mutex_unlock(&cache_mu);
			return p;
		}
	}
	pthread_mutex_unlock(&cache_mu);
	return NULL;
}

/*
 * Insert p (the caller keeps its own reference). If another thread cached the
 * same key meanwhile, p stays uncached. Plans larger than an eighth of the
 * byte budget are not cached at all.
 */
static void cache_put(sp_plan_t *p)
{
	pthread_mutex_lock(&cache_mu);
	if (p->bytes > max_bytes / 8 || max_entries == 0) {
		pthread_mutex_unlock(&cache_mu);
		return;
	}
	sp_plan_t **b = &buckets[p->hash & (HASH_BUCKETS - 1)];
	for (sp_plan_t *q = *b; q; q = q->hnext) {
		if (q->hash == p->hash && q->db == p->db && q->kind == p->kind &&
		    q->text_len == p->text_len && memcmp(q->text, p->text, p->text_len) == 0) {
			pthread_mutex_unlock(&cache_mu);
			return;
		}
	}
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	p->cached = true;
	p->hnext = *b;
	*b = p;
	lru_push(p);
	cache_entries++;
	cache_bytes += p->bytes;
	cache_evict_to(max_entries, max_bytes);
	pthread_mutex_unlock(&cache_mu);
}

void sp_router_get_stats(sp_router_stats_t *out)
{
	pthread_mutex_lock(&cache_mu);
	out->memo_hits = atomic_load_explicit(&st_memo_hits, memory_order_relaxed);
	out->fast_hits = atomic_load_explicit(&st_fast_hits, memory_order_relaxed);
	out->hits = st_hits + out->memo_hits;
	out->misses = st_misses;
	out->evictions = st_evictions;
	out->parse_errors = st_parse_errors;
	out->no_lift = st_no_lift;
	out->entries = cache_entries;
	out->bytes = cache_bytes;
	out->max_entries = max_entries;
	out->max_bytes = max_bytes;
	pthread_mutex_unlock(&cache_mu);
}

void sp_router_reset(void)
{
	atomic_fetch_add_explicit(&memo_epoch, 1, memory_order_relaxed);
	pthread_mutex_lock(&cache_mu);
	cache_evict_to(0, 0);
	pthread_mutex_unlock(&cache_mu);
}

void sp_router_set_cache_limits(size_t entries, size_t bytes)
{
	pthread_mutex_lock(&cache_mu);
	max_entries = entries;
	max_bytes = bytes;
	cache_evict_to(max_entries, max_bytes);
	pthread_mutex_unlock(&cache_mu);
}

/* ------------------------------------------------------------------ analysis options */

static pthread_rwlock_t funcs_lock = PTHREAD_RWLOCK_INITIALIZER;
static sp_funcset_t *vol_funcs, *known_funcs, *read_funcs, *write_funcs;
static atomic_uint catalog_requests;

void sp_router_set_volatile_funcs(sp_funcset_t *set, sp_funcset_t *known)
{
	pthread_rwlock_wrlock(&funcs_lock);
	sp_funcset_free(vol_funcs);
	sp_funcset_free(known_funcs);
	vol_funcs = set;
	known_funcs = set ? known : (sp_funcset_free(known), NULL);
	pthread_rwlock_unlock(&funcs_lock);
	sp_router_reset();
}

unsigned sp_router_catalog_requests(void)
{
	return atomic_load_explicit(&catalog_requests, memory_order_relaxed);
}

void sp_router_set_func_overrides(sp_funcset_t *rd, sp_funcset_t *wr)
{
	pthread_rwlock_wrlock(&funcs_lock);
	sp_funcset_free(read_funcs);
	sp_funcset_free(write_funcs);
	read_funcs = rd;
	write_funcs = wr;
	pthread_rwlock_unlock(&funcs_lock);
	sp_router_reset();
}

/*
 * Column orders, keyed by (database name, schema or NULL for the unqualified
 * name, table). Written by the health checker's catalog reads and by DDL
 * routing (forget); read during analyses, which hold the read lock for the
 * whole sp_analyze() call so the names they are given stay valid.
 */
struct colent {
	char *db, *schema, *table;
	char **names;
	int n;
};
static pthread_rwlock_t cols_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct colent *colents;
static int n_colents, cap_colents;

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Caller holds cols_lock. */
static struct colent *colent_find(const char *db, const char *schema, const char *table)
{
	for (int i = 0; i < n_colents; i++)
		if (!strcmp(colents[i].db, db) && str_eq(colents[i].schema, schema) &&
		    !strcmp(colents[i].table, table))
			return &colents[i];
	return NULL;
}

static void colent_clear(struct colent *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->names[i]);
	free(e->names);
	free(e->db);
	free(e->schema);
	free(e->table);
}

/* Caller holds cols_lock for writing. */
static void colent_remove(struct colent *e)
{
	colent_clear(e);
	*e = colents[--n_colents];
}

static bool same_names(const struct colent *e, const char *const *names, int n)
{
	if (e->n != n)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(e->names[i], names[i] ? names[i] : "") != 0)
			return false;
	return true;
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;
	if (!s)
		return NULL;
	if (!(d = strdup(s)))
		*oom = true;
	return d;
}

void sp_router_set_columns(const char *db, const char *schema, const char *table,
			   const char *const *names, int n)
{
	struct colent ne;
	bool oom = false, changed = false;

	if (!db || !table)
		return;
	if (!names || n <= 0) {
		pthread_rwlock_wrlock(&cols_lock);
		struct colent *e = colent_find(db, schema, table);
		if (e) {
			colent_remove(e);
			changed = true;
		}
		goto out;
	}
	memset(&ne, 0, sizeof(ne));
	ne.db = dup_or_null(db, &oom);
	ne.schema = dup_or_null(schema, &oom);
	ne.table = dup_or_null(table, &oom);
	ne.names = calloc((size_t)n, sizeof(char *));
	oom |= !ne.names;
	for (int i = 0; ne.names && i < n; i++, ne.n++)
		if (!(ne.names[i] = dup_or_null(names[i] ? names[i] : "", &oom)))
			break;
	pthread_rwlock_wrlock(&cols_lock);
	struct colent *e = colent_find(db, schema, table);
	if (e && !oom && same_names(e, names, n)) {
		colent_clear(&ne);
		goto out;
	}
	/* a replacement that cannot be stored makes the order unknown, never stale */
	if (e) {
		colent_remove(e);
		changed = true;
	}
	if (oom || (n_colents == cap_colents &&
		    !sp_grow_array(&colents, &cap_colents, n_colents + 1, sizeof(*colents)))) {
		colent_clear(&ne);
		goto out;
	}
	colents[n_colents++] = ne;
	changed = true;
out:
	if (changed)
		atomic_fetch_add_explicit(&cols_gen, 1, memory_order_release);
	pthread_rwlock_unlock(&cols_lock);
}

/* DDL on a table: its column order is unknown until the catalog is read again. */
static void forget_columns(const char *db, const char *table)
{
	bool changed = false;

	pthread_rwlock_wrlock(&cols_lock);
	for (int i = 0; i < n_colents;) {
		if (!strcmp(colents[i].db, db) && !strcmp(colents[i].table, table)) {
			colent_remove(&colents[i]);
			changed = true;
		} else {
			i++;
		}
	}
	if (changed)
		atomic_fetch_add_explicit(&cols_gen, 1, memory_order_release);
	pthread_rwlock_unlock(&cols_lock);
	atomic_fetch_add_explicit(&cols_requests, 1, memory_order_relaxed);
}

unsigned sp_router_columns_requests(void)
{
	return atomic_load_explicit(&cols_requests, memory_order_relaxed);
}

bool sp_router_get_columns(const char *db, const char *schema, const char *table, char *buf,
			   size_t len)
{
	bool found = false;
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	pthread_rwlock_rdlock(&cols_lock);
	const struct colent *e = colent_find(db, schema, table);
	for (int i = 0; e && i < e->n; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? "," : "", e->names[i]);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	found = e != NULL;
	pthread_rwlock_unlock(&cols_lock);
	return found;
}

static void free_columns(void)
{
	pthread_rwlock_wrlock(&cols_lock);
	while (n_colents > 0)
		colent_remove(&colents[n_colents - 1]);
	free(colents);
	colents = NULL;
	cap_colents = 0;
	pthread_rwlock_unlock(&cols_lock);
}

struct col_arg {
	const sp_db_conf_t *db;
	bool used;
};

/*
 * An unqualified name uses the catalog reader's own resolution of it (its
 * search_path), else the configured schema, else public.
 */
static const char *const *columns_lookup(void *arg, const char *schema, const char *name,
					 const sp_table_conf_t *conf, int *n)
{
	struct col_arg *ca = arg;
	const struct colent *e;

	ca->used = true;
	e = colent_find(ca->db->name, schema, name);
	if (!e && !schema)
		e = colent_find(ca->db->name, conf && conf->schema ? conf->schema : "public", name);
	if (!e)
		return NULL;
	*n = e->n;
	return (const char *const *)e->names;
}

void sp_router_shutdown(void)
{
	sp_router_reset();
	pthread_rwlock_wrlock(&funcs_lock);
	sp_funcset_free(vol_funcs);
	sp_funcset_free(read_funcs);
	sp_funcset_free(write_funcs);
	vol_funcs = read_funcs = write_funcs = NULL;
	pthread_rwlock_unlock(&funcs_lock);
	free_columns();
	sp_router_thread_free();
}

/*
 * Tables by name: [table DB.SCHEMA.T] matches only that schema; [table DB.T]
 * any schema. An unqualified name matches a section without schema, else one
 * for schema public (the default search_path).
 */
static const sp_table_conf_t *table_lookup(void *arg, const char *schema, const char *name)
{
	const sp_db_conf_t *db = arg;
	const sp_table_conf_t *fallback = NULL;

	for (int i = 0; i < db->n_tables; i++) {
		const sp_table_conf_t *t = &db->tables[i];
		if (!t->name || strcmp(t->name, name) != 0)
			continue;
		if (schema) {
			if (t->schema && strcmp(t->schema, schema) == 0)
				return t;
			if (!t->schema)
				fallback = t;
		} else {
			if (!t->schema)
				return t;
			if (strcmp(t->schema, "public") == 0)
				fallback = t;
		}
	}
	return fallback;
}

/*
 * sp_analyze with the database's tables and the installed function sets.
 * count_errors: count a rejected text in the parse_errors statistic (not for
 * a normalised text that may fail only because of lifting).
 */
static sp_analysis_t *analyze(const sp_db_conf_t *db, const char *sql, bool count_errors,
			      bool *uses_cols, unsigned *gen)
{
	sp_analyze_opts_t o;
	sp_analysis_t *a;
	struct col_arg ca = {.db = db};

	memset(&o, 0, sizeof(o));
	o.table_lookup = table_lookup;
	o.table_arg = (void *)db;
	o.columns_lookup = columns_lookup;
	o.columns_arg = &ca;
	pthread_rwlock_rdlock(&funcs_lock);
	pthread_rwlock_rdlock(&cols_lock);
	*gen = atomic_load_explicit(&cols_gen, memory_order_acquire);
	o.volatile_funcs = vol_funcs;
	o.known_funcs = known_funcs;
	o.read_funcs = read_funcs;
	o.write_funcs = write_funcs;
	a = sp_analyze(sql, &o);
	pthread_rwlock_unlock(&cols_lock);
	pthread_rwlock_unlock(&funcs_lock);
	*uses_cols = ca.used;
	if (a && a->unknown_funcs)
		atomic_fetch_add_explicit(&catalog_requests, 1, memory_order_relaxed);
	if (a && a->has_error && count_errors) {
		pthread_mutex_lock(&cache_mu);
		st_parse_errors++;
		pthread_mutex_unlock(&cache_mu);
	}
	return a;
}

/* ------------------------------------------------------------------ values and shards */

/* Everything one routing call knows besides the plan. */
struct rctx {
	const sp_db_conf_t *db;
	sp_router_session_t *sess; /* working copy, committed by the caller */
	int in_txn;
	const char *sql;	/* simple query: the client's text */
	const struct lexer *lx; /* its tokens and lifted literals; NULL for Bind */
	int lift_base;		/* $n above this are lifted literals */
	int nparams;
	const uint8_t *const *values;
	const int32_t *lens;
	const int16_t *formats;
	const uint8_t *ptypes; /* Parse's parameter type OIDs, big-endian; NULL: none declared */
	int nptypes;
	struct tls *tl;
	int lstmt; /* lexer statement of the statement being routed, -1 if unknown */
	int n_stmts;
	const char *ptext; /* Bind: the prepared statement's text, lexed only for a rewrite */
	size_t ptext_len;
};

/*
 * The tokens of the statement being routed, for a per-shard rewrite: a simple query
 * has them already; a Bind's statement text is lexed now (rewrites are rare, and a
 * cached plan keeps no tokens). False when there is no single statement to rewrite.
 */
static bool lex_for_rewrite(struct rctx *rc)
{
	if (rc->lx && rc->lx->notok) {
		/* the shape memo skipped lexing: lex now, into the other lexer, so the
		 * literal values already read from rc->lx stay where they are */
		struct lexer *lx = &rc->tl->rlx;
		if (!lex(rc->sql, rc->lx->n, lx) || lx->bad || lx->ns != 1 || !lift(rc->sql, lx))
			return false;
		rc->lx = lx;
		rc->lstmt = 0;
		return rc->n_stmts == 1;
	}
	if (rc->lx)
		return rc->lstmt >= 0 && rc->n_stmts == 1;
	if (!rc->ptext || rc->n_stmts != 1)
		return false;
	struct lexer *lx = &rc->tl->lx;
	if (!lex(rc->ptext, rc->ptext_len, lx) || lx->bad || lx->ns != 1)
		return false;
	rc->lx = lx;
	rc->sql = rc->ptext;
	rc->lstmt = 0;
	return true;
}

/* The shards a statement needs; mask holds shards below 64 only. */
struct shards {
	uint64_t mask;
	int one;
	bool any, multi, big;
};

static void shards_add(struct shards *s, int shard)
{
	if (!s->any) {
		s->any = true;
		s->one = shard;
	} else if (shard != s->one) {
		s->multi = true;
	}
	if (shard < 64)
		s->mask |= (uint64_t)1 << shard;
	else
		s->big = true;
}

static uint64_t all_mask(const sp_db_conf_t *db)
{
	return db->n_shards >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << db->n_shards) - 1;
}

static void fail(sp_target_t *t, const char *sqlstate, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(sp_target_t *t, const char *sqlstate, const char *hint, const char *fmt, ...)
{
	va_list ap;

	t->kind = SP_TARGET_ERROR;
	snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", sqlstate);
	va_start(ap, fmt);
	vsnprintf(t->message, sizeof(t->message), fmt, ap);
	va_end(ap);
	snprintf(t->hint, sizeof(t->hint), "%s", hint ? hint : "");
}

static const char *tc_name(const sp_table_conf_t *tc, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s", tc->schema ? tc->schema : "", tc->schema ? "." : "", tc->name);
	return buf;
}

static const char *ref_name(const sp_table_ref_t *tr, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s", tr->schema ? tr->schema : "", tr->schema ? "." : "", tr->name);
	return buf;
}

/* "users.user_id" or "t.(a, b)" */
static const char *key_desc(const sp_table_ref_t *tr, char *buf, size_t n)
{
	const sp_table_conf_t *tc = tr->conf;
	size_t o = 0;
	char nb[160];

	ref_name(tr, nb, sizeof(nb));
	o += (size_t)snprintf(buf + o, n - o, "%s.%s", nb, tc->n_keys > 1 ? "(" : "");
	for (int k = 0; k < tc->n_keys && o < n; k++)
		o += (size_t)snprintf(buf + o, n - o, "%s%s", k ? ", " : "", tc->key_cols[k]);
	if (tc->n_keys > 1 && o < n)
		snprintf(buf + o, n - o, ")");
	return buf;
}

static bool is_sharded_conf(const sp_table_conf_t *tc)
{
	return tc && !tc->replicated && tc->n_keys > 0;
}

static bool is_int_type(sp_key_type_t t)
{
	return t == SP_KEY_SMALLINT || t == SP_KEY_INTEGER || t == SP_KEY_BIGINT;
}

/*
 * A key value as the client wrote or bound it. number: PostgreSQL types it as a number
 * of its own (a numeric constant such as 42, 2.0, 1e2 or 99999999999999999999, or a
 * text Bind parameter, whose declared type may be numeric: a driver's BigDecimal),
 * which it compares with an integer key exactly and assigns to one rounded; else the
 * key column types it (a '...' literal, a hint), with the key type's input rules.
 */
struct raw {
	const char *p;
	size_t n;
	bool binary;
	bool number;
	uint32_t ptype; /* a Bind parameter: the type Parse declared for it, 0 if none */
	char buf[24];	/* p points here when binary_for_key() rewrote the value */
};

/* V_NOROW: no row can have this key value (id = 1.5 on an integer key) */
enum { V_OK = 0, V_NULL, V_UNKNOWN, V_ERROR, V_NOROW };

static uint32_t be32(const uint8_t *p);

static int raw_of(const struct rctx *rc, const sp_value_t *v, struct raw *r)
{
	int n;

	r->ptype = 0;
	switch (v->kind) {
	case SP_VAL_CONST:
		r->p = v->text ? v->text : "";
		r->n = strlen(r->p);
		r->binary = false;
		r->number = v->lit == SP_LIT_INT || v->lit == SP_LIT_NUMERIC;
		return V_OK;
	case SP_VAL_NULL:
		return V_NULL;
	case SP_VAL_PARAM:
		n = v->param;
		if (rc->lx && n > rc->lift_base && n - rc->lift_base <= rc->lx->nl) {
			const struct lit *l = &rc->lx->l[n - rc->lift_base - 1];
			r->p = rc->lx->v + l->voff;
			r->n = l->vlen;
			r->binary = false;
			r->number = l->number;
			return V_OK;
		}
		if (n >= 1 && n <= rc->nparams && rc->values && rc->lens) {
			if (rc->lens[n - 1] < 0)
				return V_NULL;
			r->p = (const char *)rc->values[n - 1];
			r->n = (size_t)rc->lens[n - 1];
			r->binary = rc->formats && rc->formats[n - 1] == 1;
			r->number = !r->binary;
			r->ptype = rc->ptypes && n <= rc->nptypes ? be32(rc->ptypes + 4 * (size_t)(n - 1)) : 0;
			return V_OK;
		}
		return V_UNKNOWN;
	default:
		return V_UNKNOWN;
	}
}

static int parse_raw(sp_key_type_t type, const struct raw *r, sp_shard_value_t *out, sp_target_t *t)
{
	char err[300];
	sp_shard_parse_t rc =
	    r->binary ? sp_shard_value_from_binary(type, r->p, r->n, out, err, sizeof(err))
		      : sp_shard_value_from_text(type, r->p, r->n, out, err, sizeof(err));
	if (rc == SP_SHARD_OK)
		return 0;
	fail(t, sp_shard_parse_sqlstate(rc), NULL, "%s", err);
	return -1;
}

/* Type OIDs (PostgreSQL's pg_type.dat) that say how a binary parameter is laid out. */
enum {
	OID_NAME = 19,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_TEXT = 25,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_UNKNOWN = 705,
	OID_BPCHAR = 1042,
	OID_VARCHAR = 1043,
	OID_UUID = 2950
};

/*
 * A binary parameter is laid out by the type Parse declared for it, which need not be
 * the key's: psycopg sends a Python int as a binary int8 to "k = $1::text" on a text
 * key. Turn r into what the key's parser reads (the text the server's cast would make),
 * or V_UNKNOWN when the shard cannot be told from it. Undeclared (0): the server gave
 * the parameter the key's type, so the bytes are the key's.
 */
static int binary_for_key(struct raw *r, sp_key_type_t key)
{
	switch (r->ptype) {
	case 0:
		return V_OK;
	case OID_INT2:
	case OID_INT4:
	case OID_INT8: {
		const uint8_t *b = (const uint8_t *)r->p;
		uint64_t u = 0;
		int64_t v;
		if (is_int_type(key))
			return V_OK;
		if ((key != SP_KEY_TEXT && key != SP_KEY_VARCHAR) || (r->n != 2 && r->n != 4 && r->n != 8))
			return V_UNKNOWN;
		for (size_t i = 0; i < r->n; i++)
			u = u << 8 | b[i];
		v = r->n == 2 ? (int16_t)(uint16_t)u : r->n == 4 ? (int32_t)(uint32_t)u : (int64_t)u;
		r->n = (size_t)snprintf(r->buf, sizeof(r->buf), "%lld", (long long)v);
		r->p = r->buf;
		r->binary = false;
		return V_OK;
	}
	case OID_BPCHAR: /* char(n) to text drops the trailing blanks */
		while (r->n > 0 && r->p[r->n - 1] == ' ')
			r->n--;
		/* fall through */
	case OID_TEXT:
	case OID_VARCHAR:
	case OID_NAME:
	case OID_UNKNOWN: /* a string type's binary form is its bytes */
		r->binary = false;
		r->number = false;
		return V_OK;
	case OID_UUID:
		return key == SP_KEY_UUID ? V_OK : V_UNKNOWN;
	default:
		return V_UNKNOWN;
	}
}

/* Explicit casts that change what an integer key's value means. */
enum cast_class { CAST_NONE = 0, CAST_INT, CAST_NUMERIC, CAST_FLOAT, CAST_OTHER };

/* The class of cast (sp_value_t.cast, "[]" of an array ignored); *int_type for CAST_INT,
 * *bits for CAST_FLOAT: integers below 2^bits in magnitude are exact in that type. */
static enum cast_class cast_class(const char *cast, sp_key_type_t *int_type, int *bits)
{
	static const struct {
		const char *name;
		enum cast_class c;
		int arg;
	} casts[] = {
	    {"int2", CAST_INT, SP_KEY_SMALLINT},
	    {"smallint", CAST_INT, SP_KEY_SMALLINT},
	    {"int4", CAST_INT, SP_KEY_INTEGER},
	    {"int", CAST_INT, SP_KEY_INTEGER},
	    {"integer", CAST_INT, SP_KEY_INTEGER},
	    {"int8", CAST_INT, SP_KEY_BIGINT},
	    {"bigint", CAST_INT, SP_KEY_BIGINT},
	    {"numeric", CAST_NUMERIC, 0},
	    {"decimal", CAST_NUMERIC, 0},
	    {"float4", CAST_FLOAT, 24},
	    {"real", CAST_FLOAT, 24},
	    {"float8", CAST_FLOAT, 53},
	    {"float", CAST_FLOAT, 53},
	    {"double precision", CAST_FLOAT, 53},
	};
	size_t n;

	if (!cast)
		return CAST_NONE;
	n = strlen(cast);
	if (n >= 2 && cast[n - 2] == '[' && cast[n - 1] == ']')
		n -= 2;
	for (size_t i = 0; i < sizeof(casts) / sizeof(casts[0]); i++)
		if (strlen(casts[i].name) == n && memcmp(casts[i].name, cast, n) == 0) {
			if (casts[i].c == CAST_INT)
				*int_type = (sp_key_type_t)casts[i].arg;
			else
				*bits = casts[i].arg;
			return casts[i].c;
		}
	return CAST_OTHER;
}

static bool int_fits(sp_key_type_t type, int64_t v)
{
	if (type == SP_KEY_SMALLINT)
		return v >= INT16_MIN && v <= INT16_MAX;
	if (type == SP_KEY_INTEGER)
		return v >= INT32_MIN && v <= INT32_MAX;
	return true;
}

/* Does a float of `bits` mantissa bits equal v and no other integer? */
static bool float_exact(int64_t v, int bits)
{
	return v < (int64_t)1 << bits && v > -((int64_t)1 << bits);
}

/* PostgreSQL's error for a numeric or wider integer cast to an integer type it does not fit. */
static int out_of_range(sp_key_type_t type, sp_target_t *t)
{
	fail(t, SQLSTATE_OUT_OF_RANGE, NULL, "%s out of range", sp_shard_type_name(type));
	return V_ERROR;
}

/* An integer that is the value of an integer key: compared, one outside the key's type
 * matches no row (int4 = int8 compares as int8); assigned, it is an error. */
static int int_in_key(sp_key_type_t type, int64_t v, bool assign, sp_target_t *t)
{
	if (int_fits(type, v))
		return V_OK;
	return assign ? out_of_range(type, t) : V_NOROW;
}

/*
 * The value of one key column of type `type`, compared with rows (assign false: WHERE,
 * JOIN ... ON, IN, ANY) or assigned to the key (INSERT ... VALUES, UPDATE ... SET),
 * as PostgreSQL would take it: V_OK (out set), V_NOROW (no row can have that key),
 * V_UNKNOWN (only the server can tell) or V_ERROR (t holds PostgreSQL's error, or a
 * refusal where the value is assigned and shardpool cannot tell which it becomes).
 *
 * Integer keys (other types are read with the key type's input rules):
 *   '...', hint       the key type's input (id = '2.5': 22P02, as PostgreSQL)
 *   number, text Bind numeric semantics: compared, only an integral value in the
 *                     key's range can match (id = 2.0 is id = 2; id = 1.5 and
 *                     id = 1e30 match no row); assigned, rounded half away from
 *                     zero as numeric's cast to an integer (2.5 -> 3, -2.5 -> -3)
 *   ::int2/int4/int8  a string: that type's input; a number: rounded by the cast
 *   ::numeric         an integral value as above, else unknown (a typmod such as
 *                     numeric(10,0), which the analysis does not keep, may round it)
 *   ::float4/float8   an integer exact in the type, else unknown (float equality
 *                     matches several integers beyond 2^24 / 2^53)
 *   other casts       the key type's input; the server reports any type mismatch
 */
static int key_value(sp_key_type_t type, const struct raw *r, const char *cast, bool assign,
		     sp_shard_value_t *out, sp_target_t *t)
{
	sp_key_type_t ctype = type;
	int bits = 0;
	enum cast_class cc;
	sp_shard_numeric_t num;
	sp_shard_parse_t prc;
	char err[300];

	if ((type == SP_KEY_TEXT || type == SP_KEY_VARCHAR) && !r->binary &&
	    r->ptype == OID_BPCHAR && !(cast && strchr(cast, '('))) {
		/* a Bind parameter declared character(n): as text it loses its trailing spaces */
		struct raw trimmed = *r;
		while (trimmed.n > 0 && trimmed.p[trimmed.n - 1] == ' ')
			trimmed.n--;
		return parse_raw(type, &trimmed, out, t) < 0 ? V_ERROR : V_OK;
	}
	if (is_int_type(type) && !r->binary && (r->ptype == OID_FLOAT4 || r->ptype == OID_FLOAT8)) {
		/*
		 * A Bind parameter declared real / double precision compares and converts as
		 * a float: beyond 2^24 / 2^53 it equals several integers, and its conversion
		 * to an integer rounds half to even. Only an integer exact in the type is
		 * the same value in every reading.
		 */
		sp_shard_numeric_t fl;
		if (sp_shard_numeric_from_text(r->p, r->n, &fl, NULL, 0) != SP_SHARD_OK ||
		    fl.kind != SP_NUMERIC_FINITE || !fl.integral || fl.overflow ||
		    !float_exact(fl.rounded, r->ptype == OID_FLOAT4 ? 24 : 53))
			goto inexact;
	}
	if ((type == SP_KEY_TEXT || type == SP_KEY_VARCHAR) && cast && !r->binary) {
		if (strchr(cast, '(')) /* char(n), varchar(n): the cut is not known here */
			goto inexact;
		if (!strcmp(cast, "bpchar")) {
			/* compared or stored as text, a character value loses its trailing spaces */
			struct raw trimmed = *r;
			while (trimmed.n > 0 && trimmed.p[trimmed.n - 1] == ' ')
				trimmed.n--;
			return parse_raw(type, &trimmed, out, t) < 0 ? V_ERROR : V_OK;
		}
	}
	if (!is_int_type(type) || r->binary)
		return parse_raw(type, r, out, t) < 0 ? V_ERROR : V_OK;
	cc = cast_class(cast, &ctype, &bits);
	/* a plain integer of the key's (or the integer cast's) type: nearly every key */
	prc = sp_shard_value_from_text(ctype, r->p, r->n, out, err, sizeof(err));
	if (prc == SP_SHARD_OK) {
		if (cc == CAST_FLOAT && !float_exact(out->i, bits))
			goto inexact;
		return cc == CAST_INT ? int_in_key(type, out->i, assign, t) : V_OK;
	}
	if (cc == CAST_OTHER || ((cc == CAST_NONE || cc == CAST_INT) && !r->number) ||
	    sp_shard_numeric_from_text(r->p, r->n, &num, NULL, 0) != SP_SHARD_OK) {
		if (cc == CAST_FLOAT)
			goto inexact; /* float input has rules of its own: the server decides */
		if (cc == CAST_NUMERIC)
			sp_shard_numeric_from_text(r->p, r->n, &num, err, sizeof(err));
		fail(t, cc == CAST_NUMERIC ? SQLSTATE_INVALID_TEXT : sp_shard_parse_sqlstate(prc),
		     NULL, "%s", err);
		return V_ERROR;
	}
	if (num.kind != SP_NUMERIC_FINITE) {
		/* NaN and infinity equal no integer, and convert to none */
		if (cc == CAST_FLOAT)
			goto inexact;
		if (!assign && cc != CAST_INT)
			return V_NOROW;
		fail(t, SQLSTATE_FEATURE, NULL, "cannot convert %s to %s",
		     num.kind == SP_NUMERIC_NAN ? "NaN" : "infinity", sp_shard_type_name(ctype));
		return V_ERROR;
	}
	switch (cc) {
	case CAST_INT: /* the cast rounds, and fails outside its type */
		if (num.overflow || !int_fits(ctype, num.rounded))
			return out_of_range(ctype, t);
		out->i = num.rounded;
		return int_in_key(type, out->i, assign, t);
	case CAST_NUMERIC:
	case CAST_FLOAT:
		if (!num.integral || num.overflow ||
		    (cc == CAST_FLOAT && !float_exact(num.rounded, bits)))
			goto inexact;
		break;
	default: /* a number: exact when compared, rounded when assigned */
		if (!assign && !num.integral)
			return V_NOROW;
		if (num.overflow)
			return assign ? out_of_range(type, t) : V_NOROW;
		break;
	}
	out->i = num.rounded;
	return int_in_key(type, out->i, assign, t);
inexact:
	if (!assign)
		return V_UNKNOWN;
	fail(t, SQLSTATE_FEATURE,
	     is_int_type(type) ? "Give the shard key an integer literal or parameter."
			       : "Give the shard key a literal or parameter without this cast.",
	     "shardpool cannot tell which %s the shard key value %.*s::%s becomes",
	     sp_shard_type_name(type), r->n > 64 ? 64 : (int)r->n, r->p,
	     cast		       ? cast
	     : r->ptype == OID_FLOAT4 ? "real"
	     : r->ptype == OID_FLOAT8 ? "double precision"
				       : "");
	return V_ERROR;
}

static void value_text(sp_key_type_t type, const sp_shard_value_t *v, char *buf, size_t n)
{
	if (is_int_type(type))
		snprintf(buf, n, "%lld", (long long)v->i);
	else if (type == SP_KEY_UUID)
		snprintf(buf, n,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 v->uuid[0], v->uuid[1], v->uuid[2], v->uuid[3], v->uuid[4], v->uuid[5],
			 v->uuid[6], v->uuid[7], v->uuid[8], v->uuid[9], v->uuid[10], v->uuid[11],
			 v->uuid[12], v->uuid[13], v->uuid[14], v->uuid[15]);
	else
		snprintf(buf, n, "%.*s", (int)(v->text.len > 64 ? 64 : v->text.len), v->text.ptr);
}

/* Compare a key with a bound written in the config: numbers numerically, else bytewise. */
static int bound_cmp(sp_key_type_t type, const sp_shard_value_t *v, const char *vtext, size_t vlen,
		     const char *b)
{
	if (is_int_type(type)) {
		long long x = strtoll(b, NULL, 10);
		return v->i < x ? -1 : v->i > x;
	}
	size_t bl = strlen(b);
	int c = memcmp(vtext, b, vlen < bl ? vlen : bl);
	if (c)
		return c;
	return vlen < bl ? -1 : vlen > bl;
}

/*
 * The shard of one parsed key tuple: -1 when it has none (a NULL key under
 * range/list sharding), -2 on error (err and *sqlstate filled).
 */
static int shard_of_parsed(const sp_db_conf_t *db, const sp_table_conf_t *tc,
			   const sp_shard_value_t *vals, const bool *nulls, char *err,
			   size_t errlen, const char **sqlstate)
{
	char ubuf[40], name[160];
	const char *vt = NULL;
	size_t vl = 0;
	sp_key_type_t type;

	if (db->sharding == SP_SHARDING_HASH || db->n_bounds == 0)
		return sp_shard_of_keys(tc->key_types, vals, nulls, tc->n_keys, db->n_shards);
	if (nulls && nulls[0])
		return -1;
	type = tc->key_types[0];
	if (type == SP_KEY_UUID) {
		value_text(type, &vals[0], ubuf, sizeof(ubuf));
		vt = ubuf;
		vl = strlen(ubuf);
	} else if (!is_int_type(type)) {
		vt = vals[0].text.ptr;
		vl = vals[0].text.len;
	}
	for (int i = 0; i < db->n_bounds; i++) {
		const sp_shard_bound_t *b = &db->bounds[i];
		if (db->sharding == SP_SHARDING_RANGE) {
			if (b->lo && bound_cmp(type, &vals[0], vt, vl, b->lo) < 0)
				continue;
			if (b->hi && bound_cmp(type, &vals[0], vt, vl, b->hi) >= 0)
				continue;
			return b->shard;
		}
		for (int j = 0; j < b->n_values; j++)
			if (bound_cmp(type, &vals[0], vt, vl, b->values[j]) == 0)
				return b->shard;
	}
	value_text(type, &vals[0], ubuf, sizeof(ubuf));
	snprintf(err, errlen, "shard key value %s of table %s is outside every %s of database %s",
		 ubuf, tc_name(tc, name, sizeof(name)),
		 db->sharding == SP_SHARDING_RANGE ? "range" : "list", db->name ? db->name : "");
	*sqlstate = SQLSTATE_PARAM;
	return -2;
}

int sp_router_shard_of_text(const sp_db_conf_t *db, const sp_table_conf_t *t,
			    const char *const *key_text, const bool *key_null, char *err,
			    size_t errlen)
{
	sp_shard_value_t vals[SP_ANALYZE_MAX_KEYS];
	bool nulls[SP_ANALYZE_MAX_KEYS];
	const char *state = NULL;
	char name[160];

	if (!t || t->n_keys < 1 || t->n_keys > SP_ANALYZE_MAX_KEYS) {
		snprintf(err, errlen, "table has no usable shard key");
		return -1;
	}
	for (int k = 0; k < t->n_keys; k++) {
		nulls[k] = (key_null && key_null[k]) || !key_text[k];
		if (nulls[k])
			continue;
		if (sp_shard_value_from_text(t->key_types[k], key_text[k], strlen(key_text[k]),
					     &vals[k], err, errlen) != SP_SHARD_OK)
			return -1;
	}
	int s = shard_of_parsed(db, t, vals, nulls, err, errlen, &state);
	if (s == -1)
		snprintf(err, errlen, "a NULL shard key of table %s has no shard under %s sharding",
			 tc_name(t, name, sizeof(name)),
			 db->sharding == SP_SHARDING_RANGE ? "range" : "list");
	return s < 0 ? -1 : s;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Shard of a tuple whose values are parsed, added to *out. -1: error in t. */
static int add_parsed(struct rctx *rc, const sp_table_conf_t *tc, const sp_shard_value_t *pv,
		      const bool *nulls, bool write, struct shards *out, sp_target_t *t)
{
	const char *state = SQLSTATE_PARAM;
	char err[300], name[160];
	int s = shard_of_parsed(rc->db, tc, pv, nulls, err, sizeof(err), &state);

	if (s == -2) {
		fail(t, state, "Add a [shard] range or list value that covers it.", "%s", err);
		return -1;
	}
	if (s == -1) {
		if (write) {
			fail(t, SQLSTATE_PARAM, NULL,
			     "a NULL shard key of table %s has no shard under %s sharding",
			     tc_name(tc, name, sizeof(name)),
			     rc->db->sharding == SP_SHARDING_RANGE ? "range" : "list");
			return -1;
		}
		return 0; /* no row can have it */
	}
	shards_add(out, s);
	return 0;
}

/* Elements of an array parameter ($n in key = ANY($n)): text "{1,2}" or binary; cast is
 * the parameter's (numeric[]). */
/* The element type of an array type Parse may declare (pg_type.dat), 0 if not listed. */
static uint32_t array_elem_type(uint32_t array_type)
{
	switch (array_type) {
	case 1003: return OID_NAME;
	case 1005: return OID_INT2;
	case 1007: return OID_INT4;
	case 1009: return OID_TEXT;
	case 1014: return OID_BPCHAR;
	case 1015: return OID_VARCHAR;
	case 1016: return OID_INT8;
	case 1021: return OID_FLOAT4;
	case 1022: return OID_FLOAT8;
	case 2951: return OID_UUID;
	default: return 0;
	}
}

static int array_shards(struct rctx *rc, const sp_table_conf_t *tc, const struct raw *r,
			const char *cast, bool write, struct shards *out, sp_target_t *t)
{
	sp_shard_value_t pv;
	bool isnull;
	int kv;
	sp_buf_t *sb = &rc->tl->scratch;

	if (tc->n_keys != 1)
		return V_UNKNOWN;
	if (r->binary) {
		const uint8_t *p = (const uint8_t *)r->p, *end = p + r->n;
		if (r->n < 12)
			return V_UNKNOWN;
		uint32_t ndim = be32(p);
		if (ndim == 0)
			return V_OK;
		if (ndim != 1 || r->n < 20)
			return V_UNKNOWN;
		uint32_t elem_type = be32(p + 8); /* the elements are laid out by their own type */
		int32_t count = (int32_t)be32(p + 12);
		p += 20;
		for (int32_t i = 0; i < count; i++) {
			if (end - p < 4)
				return V_UNKNOWN;
			int32_t len = (int32_t)be32(p);
			p += 4;
			isnull = len < 0;
			if (!isnull) {
				if (end - p < len)
					return V_UNKNOWN;
				struct raw e = {.p = (const char *)p,
						.n = (size_t)len,
						.binary = true,
						.ptype = elem_type};
				if (binary_for_key(&e, tc->key_types[0]) != V_OK)
					return V_UNKNOWN;
				kv = e.binary ? (parse_raw(tc->key_types[0], &e, &pv, t) < 0 ? V_ERROR
											: V_OK)
					      : key_value(tc->key_types[0], &e, NULL, write, &pv, t);
				if (kv == V_ERROR || kv == V_UNKNOWN)
					return kv;
				p += len;
				if (kv == V_NOROW)
					continue;
			}
			if (add_parsed(rc, tc, &pv, &isnull, write, out, t) < 0)
				return V_ERROR;
		}
		return V_OK;
	}
	const char *p = r->p, *end = r->p + r->n;
	while (p < end && is_space(*p))
		p++;
	if (p >= end || *p != '{')
		return V_UNKNOWN;
	p++;
	while (p < end && is_space(*p))
		p++;
	if (p < end && *p == '}')
		return V_OK;
	for (;;) {
		bool quoted = false;
		sp_buf_reset(sb);
		while (p < end && is_space(*p))
			p++;
		if (p >= end || *p == '{')
			return V_UNKNOWN;
		if (*p == '"') {
			quoted = true;
			p++;
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (!sp_buf_append(sb, p, 1))
					return V_UNKNOWN;
				p++;
			}
			if (p >= end)
				return V_UNKNOWN;
			p++;
		} else {
			while (p < end && *p != ',' && *p != '}') {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (!sp_buf_append(sb, p, 1))
					return V_UNKNOWN;
				p++;
			}
			while (sp_buf_len(sb) > 0 && is_space((char)sb->data[sb->end - 1]))
				sb->end--;
		}
		isnull = !quoted && sp_buf_len(sb) == 4 &&
			 strncasecmp((const char *)sp_buf_head(sb), "null", 4) == 0;
		kv = V_OK;
		if (!isnull) {
			/* the elements of a text parameter: numbers if it was bound as numeric[] */
			struct raw e = {.p = (const char *)sp_buf_head(sb),
					.n = sp_buf_len(sb),
					.number = true,
					.ptype = array_elem_type(r->ptype)};
			kv = key_value(tc->key_types[0], &e, cast, write, &pv, t);
			if (kv == V_ERROR || kv == V_UNKNOWN)
				return kv;
		}
		if (kv != V_NOROW && add_parsed(rc, tc, &pv, &isnull, write, out, t) < 0)
			return V_ERROR;
		while (p < end && is_space(*p))
			p++;
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == '}')
			return V_OK;
		return V_UNKNOWN;
	}
}

/*
 * Add the shards of one key tuple (vals[0 .. n_keys)) to *out. write: the values are
 * assigned to the key (INSERT ... VALUES, UPDATE ... SET), else compared with it.
 * Returns V_OK (nothing added when no row can have the tuple), V_UNKNOWN (a parameter
 * without a value yet, an expression) or V_ERROR (t holds the error).
 */
/*
 * An encoding name PostgreSQL takes for UTF8 (it ignores case and punctuation);
 * with sql_ascii also SQL_ASCII, whose bytes the server takes as they are.
 */
static bool utf8_name(const char *name, bool sql_ascii)
{
	char clean[16];
	size_t n = 0;
	for (const char *p = name; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
			clean[n++] = (char)ch;
		else if (ch >= 'A' && ch <= 'Z')
			clean[n++] = (char)(ch - 'A' + 'a');
		if (n + 1 >= sizeof(clean))
			return false;
	}
	clean[n] = 0;
	return !strcmp(clean, "utf8") || !strcmp(clean, "unicode") ||
	       (sql_ascii && !strcmp(clean, "sqlascii"));
}

/* A text key value with a byte outside ASCII, in a session whose client_encoding
 * is not UTF8: its bytes are not what the server will store and hash. */
static bool foreign_text(const struct rctx *rc, sp_key_type_t type, const struct raw *r)
{
	if (!rc->sess || !rc->sess->enc_other || (type != SP_KEY_TEXT && type != SP_KEY_VARCHAR))
		return false;
	for (size_t i = 0; i < r->n; i++)
		if ((unsigned char)r->p[i] >= 0x80)
			return true;
	return false;
}

static int tuple_shards(struct rctx *rc, const sp_table_conf_t *tc, const sp_value_t *vals,
			bool write, struct shards *out, sp_target_t *t)
{
	sp_shard_value_t pv[SP_ANALYZE_MAX_KEYS];
	struct raw raws[SP_ANALYZE_MAX_KEYS]; /* a text value in pv may point into one */
	bool nulls[SP_ANALYZE_MAX_KEYS];
	bool norow = false;
	int nk = tc->n_keys;

	if (nk > SP_ANALYZE_MAX_KEYS)
		return V_UNKNOWN;
	for (int k = 0; k < nk; k++) {
		struct raw *r = &raws[k];
		int rv = raw_of(rc, &vals[k], r);
		if (rv == V_OK && foreign_text(rc, tc->key_types[k], r)) {
			char nb[160];
			fail(t, SQLSTATE_FEATURE, "SET client_encoding = 'UTF8' for this statement.",
			     "a value of text shard key %s.%s with non-ASCII characters cannot be "
			     "hashed while client_encoding is not UTF8",
			     tc_name(tc, nb, sizeof(nb)), tc->key_cols[k]);
			return V_ERROR;
		}
		if (vals[k].kind == SP_VAL_PARAM && vals[k].array) {
			if (rv == V_NULL)
				return V_OK; /* = ANY(NULL) matches nothing */
			if (rv != V_OK)
				return V_UNKNOWN;
			return array_shards(rc, tc, r, vals[k].cast, write, out, t);
		}
		if (rv == V_OK && r->binary)
			rv = binary_for_key(r, tc->key_types[k]);
		if (rv == V_UNKNOWN)
			return V_UNKNOWN;
		nulls[k] = rv == V_NULL;
		if (!nulls[k]) {
			int kv = key_value(tc->key_types[k], r, vals[k].cast, write, &pv[k], t);
			if (kv == V_ERROR || kv == V_UNKNOWN)
				return kv;
			norow |= kv == V_NOROW;
		}
	}
	if (norow)
		return V_OK;
	return add_parsed(rc, tc, pv, nulls, write, out, t) < 0 ? V_ERROR : V_OK;
}

/* Shards of every tuple a pinned table is restricted to. */
static int table_shards(struct rctx *rc, const sp_table_ref_t *tr, bool write, struct shards *out,
			sp_target_t *t)
{
	const sp_keyset_t *ks = &tr->keys;
	if (ks->state != SP_PIN_SET || ks->n_keys != tr->conf->n_keys)
		return V_UNKNOWN;
	for (int i = 0; i < ks->n_tuples; i++) {
		int rv =
		    tuple_shards(rc, tr->conf, ks->values + (size_t)i * ks->n_keys, write, out, t);
		if (rv != V_OK)
			return rv;
	}
	return V_OK;
}

/* A table whose key type stands for the database's (shard_key hints, session keys), or NULL. */
static const sp_table_conf_t *common_key_table(const sp_db_conf_t *db, sp_target_t *t)
{
	const sp_table_conf_t *rep = NULL;
	char a[160], b[160];

	for (int i = 0; i < db->n_tables; i++) {
		const sp_table_conf_t *tc = &db->tables[i];
		if (!is_sharded_conf(tc) || tc->n_keys != 1)
			continue;
		if (!rep) {
			rep = tc;
			continue;
		}
		sp_key_type_t x = rep->key_types[0], y = tc->key_types[0];
		bool same = (is_int_type(x) && is_int_type(y)) ||
			    ((x == SP_KEY_TEXT || x == SP_KEY_VARCHAR) &&
			     (y == SP_KEY_TEXT || y == SP_KEY_VARCHAR)) ||
			    x == y;
		if (!same) {
			fail(t, SQLSTATE_FEATURE,
			     "Use /* shard: N */, or run the statement with a condition on the "
			     "table's key.",
			     "a shard key given without a table is ambiguous: tables %s (%s) and "
			     "%s (%s) have different key types",
			     tc_name(rep, a, sizeof(a)), sp_shard_type_name(x),
			     tc_name(tc, b, sizeof(b)), sp_shard_type_name(y));
			return NULL;
		}
	}
	if (!rep)
		fail(t, SQLSTATE_FEATURE, "Use /* shard: N */ instead.",
		     "a shard key was given, but database %s has no table sharded by a single key "
		     "column",
		     db->name ? db->name : "");
	return rep;
}

/* The shard of a key given as text (hint or session) for statement st; -1 with t set on error. */
static int key_text_shard(struct rctx *rc, const sp_stmt_t *st, const char *key, sp_target_t *t)
{
	const sp_table_conf_t *tc = NULL;
	struct shards s = {0};
	char name[160];

	if (st) {
		for (int i = 0; i < st->n_tables && !tc; i++)
			if (is_sharded_conf(st->tables[i].conf))
				tc = st->tables[i].conf;
		if (st->route_table >= 0 && st->route_table < st->n_tables &&
		    is_sharded_conf(st->tables[st->route_table].conf))
			tc = st->tables[st->route_table].conf;
	}
	if (!tc && !(tc = common_key_table(rc->db, t)))
		return -1;
	if (tc->n_keys != 1) {
		fail(t, SQLSTATE_FEATURE, "Use /* shard: N */ instead.",
		     "table %s has a composite shard key: a single shard_key value cannot name its "
		     "shard",
		     tc_name(tc, name, sizeof(name)));
		return -1;
	}
	sp_value_t v = {.kind = SP_VAL_CONST, .text = key};
	if (tuple_shards(rc, tc, &v, false, &s, t) == V_ERROR)
		return -1;
	if (!s.any) {
		fail(t, SQLSTATE_PARAM, NULL, "shard key '%s' has no shard", key);
		return -1;
	}
	return s.one;
}

static bool shard_in_range(const sp_db_conf_t *db, int shard, const char *what, sp_target_t *t)
{
	if (shard >= 0 && shard < db->n_shards)
		return true;
	fail(t, SQLSTATE_PARAM, NULL, "%s names shard %d, but database %s has shards 0 to %d", what,
	     shard, db->name ? db->name : "", db->n_shards - 1);
	return false;
}

/*
 * The shard the session names (SET [LOCAL] shardpool.shard / shard_key), -1
 * when none; -2 with t set on error.
 */
/*
 * Whether a session key can be hashed for st: st has a sharded table, or all
 * the database's sharded tables share one key type. A session key must not
 * make a statement without tables (SELECT now()) fail.
 */
static bool session_key_typed(struct rctx *rc, const sp_stmt_t *st)
{
	sp_target_t *probe;
	bool ok;

	for (int i = 0; st && i < st->n_tables; i++)
		if (is_sharded_conf(st->tables[i].conf))
			return true;
	probe = malloc(sizeof(*probe));
	if (!probe)
		return false;
	ok = common_key_table(rc->db, probe) != NULL;
	free(probe);
	return ok;
}

static int session_shard(struct rctx *rc, const sp_stmt_t *st, sp_target_t *t)
{
	const sp_router_session_t *s = rc->sess;
	int r;

	if (s->local_shard >= 0)
		return shard_in_range(rc->db, s->local_shard, "SET LOCAL shardpool.shard", t)
			   ? s->local_shard
			   : -2;
	if (s->shard >= 0 && !s->local_has_key)
		return shard_in_range(rc->db, s->shard, "SET shardpool.shard", t) ? s->shard : -2;
	if (!s->local_has_key && !s->has_key)
		return -1;
	if (!session_key_typed(rc, st))
		return -1; /* no table gives the key a type: the statement goes anywhere */
	return (r = key_text_shard(rc, st, s->local_has_key ? s->local_key : s->key, t)) < 0 ? -2
											     : r;
}

/* ------------------------------------------------------------------ per-shard rewrites */

#define MAX_EDITS (2 * SP_MERGE_MAX_COLS + 32)

/* Replace bytes [at, end) of the client's text by scratch[off, off + len). */
struct edit {
	uint32_t at, end, off, len;
};

struct rewrite {
	struct edit e[MAX_EDITS];
	int n;
	sp_buf_t *sb;
	bool fail;
};

static void rw_edit(struct rewrite *w, uint32_t at, uint32_t end, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rw_edit(struct rewrite *w, uint32_t at, uint32_t end, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->n >= MAX_EDITS) {
		w->fail = true;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sp_buf_reserve(w->sb, (size_t)n + 1)) {
		w->fail = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf((char *)w->sb->data + w->sb->end, (size_t)n + 1, fmt, ap);
	va_end(ap);
	struct edit *e = &w->e[w->n++];
	e->at = at;
	e->end = end;
	e->off = (uint32_t)(w->sb->end - w->sb->start);
	e->len = (uint32_t)n;
	w->sb->end += (size_t)n;
}

/* The text [from, to) with the edits applied, NUL-terminated, into out. */
static bool rw_apply(const char *s, struct rewrite *w, uint32_t from, uint32_t to, sp_buf_t *out)
{
	/* stable insertion sort: edits at one position keep their order */
	for (int i = 1; i < w->n; i++) {
		struct edit x = w->e[i];
		int j = i - 1;
		while (j >= 0 && w->e[j].at > x.at) {
			w->e[j + 1] = w->e[j];
			j--;
		}
		w->e[j + 1] = x;
	}
	sp_buf_reset(out);
	uint32_t pos = from;
	for (int i = 0; i < w->n; i++) {
		const struct edit *e = &w->e[i];
		if (e->at > pos && !sp_buf_append(out, s + pos, e->at - pos))
			return false;
		if (!sp_buf_append(out, sp_buf_head(w->sb) + e->off, e->len))
			return false;
		if (e->end > pos)
			pos = e->end;
	}
	if (to > pos && !sp_buf_append(out, s + pos, to - pos))
		return false;
	return sp_buf_append(out, "", 1);
}

/* Copy the text of shard `from` to every other shard of mask. */
static bool copy_to_mask(struct tls *tl, int from, uint64_t mask)
{
	for (int i = 0; i < SP_ROUTER_MAX_SHARDS; i++) {
		if (i == from || !(mask & ((uint64_t)1 << i)))
			continue;
		sp_buf_reset(&tl->sql[i]);
		if (!sp_buf_append(&tl->sql[i], sp_buf_head(&tl->sql[from]),
				   sp_buf_len(&tl->sql[from])))
			return false;
	}
	return true;
}

static int lowest(uint64_t mask)
{
	return mask ? __builtin_ctzll(mask) : -1;
}

static const char *const tlist_end_kw[] = {"from",  "where",	 "group",  "having", "window",
					   "order", "limit",	 "offset", "fetch",  "for",
					   "union", "intersect", "except", "into",   NULL};
static const char *const limit_stop[] = {"offset", "fetch", "for", NULL};
static const char *const offset_stop[] = {"limit", "fetch", "for", NULL};
static const char *const fetch_stop[] = {"limit", "offset", "for", NULL};

/*
 * Per-shard text of a fanned-out SELECT: each avg(x) of the select list
 * becomes sum(x) (keeping its output name) and a count(x) is appended to the
 * list; with cut_limit the top-level LIMIT / OFFSET / FETCH clauses become
 * LIMIT new_limit (dropped when new_limit < 0). Every shard of mask gets it.
 */
static bool rewrite_select(struct rctx *rc, const sp_stmt_t *st, int n_avg, bool cut_limit,
			   int64_t new_limit, uint64_t mask)
{
	const struct lexer *lx = rc->lx;
	const char *s = rc->sql;
	const struct lstmt *ls = &lx->s[rc->lstmt];
	const struct tok *T = lx->t;
	int a = ls->first, b = ls->end, base, sel = -1;
	struct rewrite *w;
	uint32_t arg_at[SP_MERGE_MAX_COLS], arg_end[SP_MERGE_MAX_COLS];
	int na = 0;
	bool ok;

	if (a >= b)
		return false;
	base = T[a].depth;
	for (int i = a; i < b; i++)
		if (T[i].depth == base && tok_is(s, &T[i], "select")) {
			sel = i;
			break;
		}
	if (sel < 0)
		return false;
	int t0 = sel + 1;
	if (t0 < b && tok_is(s, &T[t0], "all"))
		t0++;
	int te = t0;
	while (te < b && !(T[te].depth == base && tok_in(s, &T[te], tlist_end_kw)))
		te++;
	if (te == t0)
		return false;
	w = malloc(sizeof(*w));
	if (!w)
		return false;
	w->n = 0;
	w->fail = false;
	w->sb = &rc->tl->scratch;
	sp_buf_reset(w->sb);
	if (n_avg) {
		int col = 0, ia = t0;
		for (int i = t0; i <= te && !w->fail; i++) {
			if (i < te && !(T[i].type == T_COMMA && T[i].depth == base))
				continue;
			if (col >= st->shape.n_cols) {
				w->fail = true;
				break;
			}
			const sp_out_col_t *oc = &st->shape.cols[col];
			if (oc->kind == SP_COL_AGG && oc->agg == SP_AGG_AVG) {
				int lp = -1, rp;
				for (int j = ia; j < i; j++)
					if (T[j].type == T_LPAREN && T[j].depth == base) {
						lp = j;
						break;
					}
				if (lp <= ia || !tok_is(s, &T[lp - 1], "avg") ||
				    na >= SP_MERGE_MAX_COLS) {
					w->fail = true;
					break;
				}
				rp = lp + 1;
				while (rp < i && !(T[rp].type == T_RPAREN && T[rp].depth == base))
					rp++;
				if (rp >= i || rp == lp + 1) {
					w->fail = true;
					break;
				}
				rw_edit(w, T[lp - 1].start, T[lp - 1].start + T[lp - 1].len, "sum");
				if (rp + 1 == i) {
					/* keep the column's name: avg, not sum */
					char q[2 * 64 + 3];
					size_t k = 0;
					for (const char *p = oc->name ? oc->name : "avg";
					     *p && k < sizeof(q) - 3; p++) {
						if (*p == '"')
							q[k++] = '"';
						q[k++] = *p;
					}
					q[k] = '\0';
					rw_edit(w, T[rp].start + 1, T[rp].start + 1, " AS \"%s\"",
						q);
				}
				arg_at[na] = T[lp + 1].start;
				arg_end[na] = T[rp - 1].start + T[rp - 1].len;
				na++;
			}
			col++;
			ia = i + 1;
		}
		if (col != st->shape.n_cols || na != n_avg)
			w->fail = true;
		uint32_t endpos = T[te - 1].start + T[te - 1].len;
		for (int j = 0; j < na && !w->fail; j++)
			rw_edit(w, endpos, endpos, ", count(%.*s)", (int)(arg_end[j] - arg_at[j]),
				s + arg_at[j]);
	}
	if (cut_limit) {
		bool first = true;
		for (int i = te; i < b && !w->fail; i++) {
			const char *const *stop;
			bool fetch = false;
			if (T[i].depth != base)
				continue;
			if (tok_is(s, &T[i], "limit"))
				stop = limit_stop;
			else if (tok_is(s, &T[i], "offset"))
				stop = offset_stop;
			else if (tok_is(s, &T[i], "fetch") && i + 1 < b &&
				 (tok_is(s, &T[i + 1], "first") || tok_is(s, &T[i + 1], "next"))) {
				stop = fetch_stop;
				fetch = true;
			} else
				continue;
			int j = i + 1;
			while (j < b) {
				if (T[j].depth == base && tok_in(s, &T[j], stop))
					break;
				if (fetch && T[j].depth == base &&
				    (tok_is(s, &T[j], "only") || tok_is(s, &T[j], "ties"))) {
					j++;
					break;
				}
				j++;
			}
			if (first && new_limit >= 0)
				rw_edit(w, T[i].start, T[j - 1].start + T[j - 1].len, "LIMIT %lld",
					(long long)new_limit);
			else /* drop the clause with the blank in front of it */
				rw_edit(w, T[i - 1].start + T[i - 1].len,
					T[j - 1].start + T[j - 1].len, "%s", "");
			first = false;
			i = j - 1;
		}
	}
	int sh = lowest(mask);
	ok = !w->fail && sh >= 0 &&
	     rw_apply(s, w, T[a].start, T[b - 1].start + T[b - 1].len, &rc->tl->sql[sh]) &&
	     copy_to_mask(rc->tl, sh, mask);
	free(w);
	return ok;
}

/*
 * One INSERT per shard with only that shard's VALUES rows; the text before
 * VALUES and after the last row (ON CONFLICT, RETURNING) is kept.
 */
static bool split_insert(struct rctx *rc, const int *row_shard, int n_rows, uint64_t mask)
{
	const struct lexer *lx = rc->lx;
	const char *s = rc->sql;
	const struct lstmt *ls = &lx->s[rc->lstmt];
	const struct tok *T = lx->t;
	int a = ls->first, b = ls->end, base, v = -1, i;
	uint64_t started = 0;
	struct tls *tl = rc->tl;

	if (a >= b)
		return false;
	base = T[a].depth;
	for (i = a; i < b; i++)
		if (T[i].depth == base && tok_is(s, &T[i], "values")) {
			v = i;
			break;
		}
	if (v < 0)
		return false;
	for (int k = 0; k < SP_ROUTER_MAX_SHARDS; k++) {
		if (!(mask & ((uint64_t)1 << k)))
			continue;
		sp_buf_reset(&tl->sql[k]);
		if (!sp_buf_append(&tl->sql[k], s + T[a].start,
				   T[v].start + T[v].len - T[a].start) ||
		    !sp_buf_append(&tl->sql[k], " ", 1))
			return false;
	}
	i = v + 1;
	for (int r = 0; r < n_rows; r++) {
		int j;
		if (i >= b || T[i].type != T_LPAREN || T[i].depth != base)
			return false;
		j = i + 1;
		while (j < b && !(T[j].type == T_RPAREN && T[j].depth == base))
			j++;
		if (j >= b)
			return false;
		int k = row_shard[r];
		if (k < 0 || k >= SP_ROUTER_MAX_SHARDS || !(mask & ((uint64_t)1 << k)))
			return false;
		sp_buf_t *out = &tl->sql[k];
		if ((started & ((uint64_t)1 << k)) && !sp_buf_append(out, ", ", 2))
			return false;
		started |= (uint64_t)1 << k;
		if (!sp_buf_append(out, s + T[i].start, T[j].start + 1 - T[i].start))
			return false;
		i = j + 1;
		if (r + 1 < n_rows) {
			if (i >= b || T[i].type != T_COMMA)
				return false;
			i++;
		}
	}
	if (i < b && T[i].type == T_COMMA)
		return false; /* more rows than the analysis saw */
	uint32_t tail = T[i - 1].start + T[i - 1].len, end = T[b - 1].start + T[b - 1].len;
	for (int k = 0; k < SP_ROUTER_MAX_SHARDS; k++) {
		if (!(mask & ((uint64_t)1 << k)))
			continue;
		if (!sp_buf_append(&tl->sql[k], s + tail, end - tail) ||
		    !sp_buf_append(&tl->sql[k], "", 1))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ fan-out reads */

static int int_value(struct rctx *rc, const sp_value_t *v, int64_t *out)
{
	struct raw r;
	int rv;

	if (v->kind == SP_VAL_NONE) {
		*out = -1;
		return V_OK;
	}
	rv = raw_of(rc, v, &r);
	if (rv == V_NULL) {
		*out = -1;
		return V_OK;
	}
	if (rv != V_OK)
		return V_UNKNOWN;
	if (r.binary) {
		const uint8_t *p = (const uint8_t *)r.p;
		if (r.n == 8)
			*out = (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
		else if (r.n == 4)
			*out = (int32_t)be32(p);
		else if (r.n == 2)
			*out = (int16_t)(p[0] << 8 | p[1]);
		else
			return V_UNKNOWN;
		return V_OK;
	}
	char buf[32], *end;
	if (r.n == 0 || r.n >= sizeof(buf))
		return V_UNKNOWN;
	memcpy(buf, r.p, r.n);
	buf[r.n] = '\0';
	errno = 0;
	long long x = strtoll(buf, &end, 10);
	while (*end && is_space(*end))
		end++;
	if (errno || *end)
		return V_UNKNOWN;
	*out = x;
	return V_OK;
}

static void refuse(sp_target_t *t, const sp_table_ref_t *tr, const char *what)
{
	char kd[200], nb[160], hint[512];

	key_desc(tr, kd, sizeof(kd));
	snprintf(hint, sizeof(hint),
		 "Add a condition on %s (key = value), or a /* shard: N */ hint.", kd);
	fail(t, SQLSTATE_FEATURE, hint,
	     "%s: the statement reads sharded table %s on several shards", what,
	     ref_name(tr, nb, sizeof(nb)));
}

/*
 * A sharded table read inside a subquery, CTE, derived table or set-operation arm, or
 * NULL. On several shards that part runs on each shard's rows alone: a count, a LIMIT,
 * an EXISTS or a scalar subquery over the table would be wrong, so such statements are
 * refused unless the table is joined to another on their shard keys (co-located rows).
 */
static const sp_table_ref_t *nested_sharded(const sp_stmt_t *st)
{
	for (int i = 0; i < st->n_tables; i++) {
		const sp_table_ref_t *x = &st->tables[i];
		if ((x->ctx & SP_TABLE_NESTED) && is_sharded_conf(x->conf) && x->pinned_via < 0 &&
		    !x->colocated)
			return x;
	}
	return NULL;
}

/*
 * A read that runs on the shards of mask: the merge plan from the SELECT's
 * shape, and per-shard SQL where the shards must run something else.
 */
static void fanout_read(struct rctx *rc, const sp_stmt_t *st, const sp_table_ref_t *tr,
			uint64_t mask, sp_target_t *t)
{
	sp_merge_plan_t *m = &t->merge;
	const sp_shape_t *h = &st->shape;
	char what[300];
	int n_avg = 0;
	int64_t limit = -1, offset = 0;

	t->kind = SP_TARGET_FANOUT;
	t->shard_mask = mask;
	t->fanout_merge = true;
	m->n_sort = 0;
	m->limit = -1;
	m->offset = 0;
	m->has_aggs = false;
	m->n_cols = 0;
	m->table[0] = m->key[0] = 0;
	if (tr && is_sharded_conf(tr->conf)) {
		ref_name(tr, m->table, sizeof(m->table));
		key_desc(tr, m->key, sizeof(m->key));
	}
	if (st->kind == SP_STMT_EXPLAIN)
		return; /* every shard's plan, one after the other */
	if (st->kind != SP_STMT_SELECT || !h->valid) {
		snprintf(what, sizeof(what), "%s over several shards is not supported",
			 sp_stmt_kind_str(st->kind));
		refuse(t, tr, what);
		return;
	}
	const char *no = h->setop	      ? "UNION/INTERSECT/EXCEPT"
			 : h->distinct	      ? "SELECT DISTINCT"
			 : h->n_distinct_on   ? "SELECT DISTINCT ON"
			 : h->has_window      ? "a window function"
			 : h->has_having      ? "HAVING"
			 : h->grouping_sets   ? "GROUPING SETS, ROLLUP or CUBE"
			 : h->limit_with_ties ? "FETCH ... WITH TIES"
			 : h->values	      ? "VALUES"
					      : NULL;
	if (no) {
		snprintf(what, sizeof(what), "%s cannot be merged across shards", no);
		refuse(t, tr, what);
		return;
	}
	const sp_table_ref_t *in = nested_sharded(st);
	if (in) {
		/* each shard would count, limit or test only its own rows there */
		refuse(t, in, "a subquery, CTE or derived table would run on each shard alone");
		return;
	}
	for (int i = 0; i < st->n_tables; i++)
		if (st->tables[i].ctx & SP_TABLE_KEPT_OUTER) {
			char nb[100];
			snprintf(what, sizeof(what),
				 "an outer join keeps every row of replicated table %.100s on each shard, "
				 "which would add its own unmatched copies (keep the sharded side)",
				 ref_name(&st->tables[i], nb, sizeof(nb)));
			refuse(t, tr, what);
			return;
		}
	bool aggs = h->has_agg || h->has_group_by;
	if (aggs) {
		if (h->has_star) {
			refuse(
			    t, tr,
			    "SELECT * with aggregates or GROUP BY cannot be merged across shards");
			return;
		}
		if (!h->group_all_in_target) {
			refuse(t, tr,
			       "GROUP BY items must be in the select list to merge groups across "
			       "shards (add them "
			       "to the select list)");
			return;
		}
		if (h->n_cols > SP_MERGE_MAX_COLS) {
			refuse(t, tr, "too many columns to merge across shards");
			return;
		}
		for (int i = 0; i < h->n_cols; i++) {
			const sp_out_col_t *c = &h->cols[i];
			switch (c->kind) {
			case SP_COL_PLAIN:
				m->agg[i] = SP_MAGG_NONE;
				continue;
			case SP_COL_AGG:
				break;
			case SP_COL_AGG_EXPR:
				snprintf(what, sizeof(what),
					 "the expression over aggregates in column %d (%s) cannot "
					 "be merged across "
					 "shards (select the aggregates themselves)",
					 i + 1, c->name ? c->name : "?column?");
				refuse(t, tr, what);
				return;
			default:
				refuse(t, tr, "this select list cannot be merged across shards");
				return;
			}
			if (c->agg_distinct || c->agg_filter || c->agg == SP_AGG_OTHER) {
				snprintf(what, sizeof(what),
					 "aggregate %s(%s%s)%s cannot be merged across shards",
					 c->func ? c->func : "?",
					 c->agg_distinct ? "DISTINCT " : "",
					 c->arg_text ? c->arg_text : "",
					 c->agg_filter ? " FILTER (...)" : "");
				refuse(t, tr, what);
				return;
			}
			switch (c->agg) {
			case SP_AGG_COUNT:
				m->agg[i] = SP_MAGG_COUNT;
				break;
			case SP_AGG_SUM:
				m->agg[i] = SP_MAGG_SUM;
				break;
			case SP_AGG_MIN:
				m->agg[i] = SP_MAGG_MIN;
				break;
			case SP_AGG_MAX:
				m->agg[i] = SP_MAGG_MAX;
				break;
			case SP_AGG_AVG:
				if (h->n_cols + n_avg + 1 > SP_MERGE_MAX_COLS) {
					refuse(t, tr, "too many columns to merge across shards");
					return;
				}
				m->agg[i] = SP_MAGG_AVG_SUM;
				m->avg_count_col[i] = h->n_cols + n_avg;
				m->agg[h->n_cols + n_avg] = SP_MAGG_HIDDEN;
				n_avg++;
				break;
			default:
				refuse(t, tr, "this aggregate cannot be merged across shards");
				return;
			}
		}
	}
	if (h->n_sort > SP_MERGE_MAX_SORT) {
		refuse(t, tr, "too many ORDER BY items to merge across shards");
		return;
	}
	for (int i = 0; i < h->n_sort; i++) {
		const sp_sort_item_t *si = &h->sort[i];
		if (si->using_op) {
			refuse(t, tr, "ORDER BY ... USING cannot be merged across shards");
			return;
		}
		m->sort[i].desc = si->desc;
		m->sort[i].nulls_first = si->nulls_first;
		m->sort[i].bytewise = si->bytewise;
		m->sort[i].name[0] = 0;
		if (h->has_star) {
			/* * hides the output positions: the merge finds the column in the RowDescription */
			if (si->ordinal > 0) {
				m->sort[i].col = si->ordinal - 1;
			} else if (si->name[0]) {
				m->sort[i].col = -1;
				memcpy(m->sort[i].name, si->name, sizeof(m->sort[i].name));
			} else {
				snprintf(what, sizeof(what),
					 "ORDER BY item %d is an expression, which cannot be merged "
					 "across shards with SELECT * (list the columns, with the "
					 "expression among them)",
					 i + 1);
				refuse(t, tr, what);
				return;
			}
			continue;
		}
		if (!si->target) {
			snprintf(what, sizeof(what),
				 "ORDER BY item %d is not in the select list, so the shards' rows "
				 "cannot be merged in "
				 "order (add the column to the select list)",
				 i + 1);
			refuse(t, tr, what);
			return;
		}
		m->sort[i].col = si->target - 1;
	}
	m->n_sort = h->n_sort;
	if (int_value(rc, &h->limit, &limit) != V_OK ||
	    int_value(rc, &h->offset, &offset) != V_OK) {
		refuse(t, tr, "LIMIT or OFFSET with an expression cannot be applied across shards");
		return;
	}
	if (offset < 0)
		offset = 0;
	if (limit < -1)
		limit = -1;
	bool cut = offset > 0 || (aggs && limit >= 0);
	if (n_avg || cut) {
		if (!lex_for_rewrite(rc)) {
			refuse(t, tr,
			       "this statement must be rewritten for each shard (avg(), OFFSET, or "
			       "LIMIT with GROUP BY), which shardpool does only for a statement "
			       "sent alone");
			return;
		}
		int64_t nl = aggs || limit < 0
				 ? -1
				 : (limit > INT64_MAX - offset ? INT64_MAX : limit + offset);
		if (!rewrite_select(rc, st, n_avg, cut, nl, mask)) {
			refuse(t, tr, "shardpool could not rewrite this statement for each shard");
			return;
		}
		t->per_shard_sql = true;
		t->sql = rc->tl->sql;
	}
	m->limit = limit;
	m->offset = offset;
	if (aggs) {
		m->has_aggs = true;
		m->n_cols = h->n_cols + n_avg;
	}
}

/* ------------------------------------------------------------------ one statement */

void sp_router_target_init(sp_target_t *t)
{
	t->kind = SP_TARGET_ANY;
	t->shard = -1;
	t->shard_mask = 0;
	t->write = t->read = false;
	t->txnop = SP_TXNOP_NONE;
	t->n_stmts = 1;
	t->read_only = false;
	t->session_changed = false;
	t->listen = false;
	t->fanout_merge = false;
	t->fanout_sum = false;
	t->fanout_first = false;
	t->fanout_txn = false;
	t->per_shard_sql = false;
	t->sql = NULL;
	t->row_shard = NULL;
	t->n_row_shard = 0;
	t->local_tag = NULL;
	t->sqlstate[0] = t->message[0] = t->hint[0] = '\0';
	t->merge.n_sort = 0;
	t->merge.limit = -1;
	t->merge.offset = 0;
	t->merge.has_aggs = false;
	t->merge.n_cols = 0;
	t->merge.table[0] = t->merge.key[0] = '\0';
	/* the whole COPY description: callers read its flags for every fan-out */
	memset(&t->copy, 0, sizeof(t->copy));
	t->copy.mode = SP_ROUTER_COPY_NONE;
}

static void classify(const sp_stmt_t *st, sp_target_t *t)
{
	switch (st->kind) {
	case SP_STMT_SELECT:
	case SP_STMT_EXPLAIN:
		t->write = st->is_write;
		t->read = !st->is_write;
		break;
	case SP_STMT_SHOW:
		t->read = true;
		break;
	case SP_STMT_COPY:
		t->write = st->is_write || st->copy.is_from;
		t->read = !t->write;
		break;
	case SP_STMT_TXN:
		switch (st->txn.op) {
		case SP_TXN_BEGIN:
		case SP_TXN_START:
			t->txnop = SP_TXNOP_BEGIN;
			/* a hot standby cannot run SERIALIZABLE: such a transaction needs the primary */
			t->read_only = st->txn.modes.read_only == 1 &&
				       !(st->txn.modes.isolation &&
					 strcmp(st->txn.modes.isolation, "serializable") == 0);
			t->write = !t->read_only;
			t->read = t->read_only;
			break;
		case SP_TXN_COMMIT:
			t->txnop = SP_TXNOP_COMMIT;
			t->write = true;
			break;
		case SP_TXN_ROLLBACK:
			t->txnop = SP_TXNOP_ROLLBACK;
			t->write = true;
			break;
		default:
			t->txnop = SP_TXNOP_OTHER;
			t->write = true;
		}
		break;
	case SP_STMT_LISTEN:
		t->listen = true;
		t->write = true;
		break;
	case SP_STMT_SET:
	case SP_STMT_DISCARD:
	case SP_STMT_DEALLOCATE:
		break;
	default:
		t->write = st->is_write || st->kind == SP_STMT_DDL || st->kind == SP_STMT_LOCK ||
			   st->kind == SP_STMT_MAINTENANCE || st->kind == SP_STMT_ERROR;
	}
}

static void apply_role(const struct rctx *rc, const sp_hints_t *h, sp_target_t *t)
{
	int role = h->role == SP_ROLE_HINT_PRIMARY   ? 1
		   : h->role == SP_ROLE_HINT_REPLICA ? 2
		   : rc->sess->local_role	     ? rc->sess->local_role
						     : rc->sess->role;
	if (role == 1) {
		t->write = true;
		t->read = false;
	} else if (role == 2 && !t->write) {
		t->read = true; /* a replica never gets a write */
	}
}

/* RESET ALL / DISCARD ALL: shardpool.* unset, client_encoding back to the startup value */
static void session_clear(sp_router_session_t *s)
{
	bool startup_other = s->enc_startup_other;
	sp_router_session_init(s);
	s->enc_other = s->enc_startup_other = startup_other;
}

/* SET 'x' / E'x' / 42 as the analyzer re-quotes them -> the bare value. */
static void unquote(const char *v, char *out, size_t n)
{
	size_t k = 0;
	bool e = false;

	if (!v)
		v = "";
	if ((v[0] == 'E' || v[0] == 'e') && v[1] == '\'') {
		e = true;
		v++;
	}
	if (v[0] != '\'') {
		snprintf(out, n, "%s", v);
		return;
	}
	for (v++; *v && k + 1 < n; v++) {
		if (*v == '\'') {
			if (v[1] != '\'')
				break;
			v++;
		} else if (e && *v == '\\' && v[1]) {
			v++;
		}
		out[k++] = *v;
	}
	out[k] = '\0';
}

/*
 * SET / RESET shardpool.*: true when handled here (t is LOCAL or an error).
 * RESET ALL also clears the routing session but still goes to the server.
 */
static bool route_set(struct rctx *rc, const sp_stmt_t *st, sp_target_t *t)
{
	const sp_set_t *set = &st->set;
	sp_router_session_t *s = rc->sess;
	char val[256];
	const char *hint =
	    "shardpool understands shardpool.shard, shardpool.shard_key and shardpool.role.";

	if (set->op == SP_SET_RESET_ALL) {
		session_clear(s);
		t->session_changed = true;
		return false;
	}
	if (set->name && !strcmp(set->name, "client_encoding")) {
		/* the server runs it; the router only notes whether key text stays UTF8 */
		if (set->op == SP_SET_RESET || set->op == SP_SET_DEFAULT) {
			if (!set->local)
				s->enc_other = s->enc_startup_other;
		} else if (set->op == SP_SET_VALUE) {
			unquote(set->value, val, sizeof(val));
			bool other = !utf8_name(val, true);
			if (other || !set->local) /* SET LOCAL ... UTF8 ends with the transaction */
				s->enc_other = other;
		}
		return false;
	}
	if (!set->name || strncmp(set->name, "shardpool.", 10) != 0)
		return false;
	const char *var = set->name + 10;
	bool clear = set->op == SP_SET_RESET || set->op == SP_SET_DEFAULT;
	if (!clear && set->op != SP_SET_VALUE) {
		fail(t, SQLSTATE_FEATURE, hint, "SET %s in this form is not supported", set->name);
		return true;
	}
	unquote(set->value, val, sizeof(val));
	if (!strcmp(var, "shard")) {
		int v = -1;
		if (!clear) {
			char *end;
			long x = strtol(val, &end, 10);
			if (!val[0] || *end || x < 0 || x >= rc->db->n_shards) {
				fail(t, SQLSTATE_PARAM, NULL,
				     "invalid value for parameter \"shardpool.shard\": \"%s\" "
				     "(database %s has shards 0 to %d)",
				     val, rc->db->name ? rc->db->name : "", rc->db->n_shards - 1);
				return true;
			}
			v = (int)x;
		}
		if (set->local) {
			s->local_shard = v;
			if (!clear)
				s->local_has_key = false;
		} else {
			s->shard = v;
			if (!clear)
				s->has_key = false;
		}
	} else if (!strcmp(var, "shard_key")) {
		if (!clear) {
			if (strlen(val) >= sizeof(s->key)) {
				fail(t, SQLSTATE_PARAM, NULL,
				     "value for parameter \"shardpool.shard_key\" is too long");
				return true;
			}
			/* check the value now when the database has one key type; else at use */
			if (session_key_typed(rc, NULL) && key_text_shard(rc, NULL, val, t) < 0)
				return true;
		}
		if (set->local) {
			s->local_has_key = !clear;
			memcpy(s->local_key, clear ? "" : val, clear ? 1 : strlen(val) + 1);
			if (!clear)
				s->local_shard = -1;
		} else {
			s->has_key = !clear;
			memcpy(s->key, clear ? "" : val, clear ? 1 : strlen(val) + 1);
			if (!clear)
				s->shard = -1;
		}
	} else if (!strcmp(var, "role")) {
		int r = 0;
		if (!clear) {
			if (!strcasecmp(val, "primary") || !strcasecmp(val, "master"))
				r = 1;
			else if (!strcasecmp(val, "replica") || !strcasecmp(val, "standby"))
				r = 2;
			else if (!strcasecmp(val, "any") || !val[0])
				r = 0;
			else {
				fail(t, SQLSTATE_PARAM, "Use primary or replica.",
				     "invalid value for parameter \"shardpool.role\": \"%s\"", val);
				return true;
			}
		}
		if (set->local)
			s->local_role = r;
		else
			s->role = r;
	} else {
		fail(t, SQLSTATE_UNDEFINED, hint, "unrecognized configuration parameter \"%s\"",
		     set->name);
		return true;
	}
	t->kind = SP_TARGET_LOCAL;
	t->local_tag = set->op == SP_SET_RESET ? "RESET" : "SET";
	t->session_changed = true;
	t->write = t->read = false;
	return true;
}

/* Does "col", "alias.col", "table.col" or "excluded.col" name key column col of tr? */
static bool same_column(const char *text, const sp_table_ref_t *tr, const char *col)
{
	const char *dot;

	if (!text)
		return false;
	dot = strrchr(text, '.');
	if (!dot)
		return strcmp(text, col) == 0;
	if (strcmp(dot + 1, col) != 0)
		return false;
	size_t q = (size_t)(dot - text);
	const char *names[] = {tr->alias, tr->name, "excluded"};
	for (int i = 0; i < 3; i++)
		if (names[i] && strlen(names[i]) == q && strncmp(text, names[i], q) == 0)
			return true;
	return false;
}

/* An UPDATE (or ON CONFLICT DO UPDATE) must not move a row to another shard. */
static bool check_key_move(struct rctx *rc, const sp_stmt_t *st, sp_target_t *t)
{
	char nb[160];

	for (int i = 0; i < st->n_tables; i++) {
		const sp_table_ref_t *tr = &st->tables[i];
		const sp_table_conf_t *tc = tr->conf;
		bool moves = false;

		if (!tr->key_assigned || !is_sharded_conf(tc) || !(tr->ctx & SP_TABLE_WRITE) ||
		    tc->n_keys > SP_ANALYZE_MAX_KEYS)
			continue;
		for (int k = 0; k < tc->n_keys; k++) {
			const sp_value_t *nv = &tr->key_new[k];
			if (nv->kind == SP_VAL_NONE)
				continue;
			if (nv->kind == SP_VAL_EXPR || nv->kind == SP_VAL_DEFAULT) {
				if (nv->kind == SP_VAL_EXPR &&
				    same_column(nv->text, tr, tc->key_cols[k]))
					continue;
				fail(t, SQLSTATE_FEATURE,
				     "Set the key to a constant or parameter that stays on the "
				     "same shard, or DELETE the "
				     "row and INSERT it with the new key.",
				     "UPDATE sets shard key %s.%s to an expression: shardpool "
				     "cannot tell which shard the "
				     "row would move to",
				     ref_name(tr, nb, sizeof(nb)), tc->key_cols[k]);
				return false;
			}
			moves = true;
		}
		if (!moves || tr->keys.state != SP_PIN_SET)
			continue;
		for (int j = 0; j < tr->keys.n_tuples; j++) {
			sp_value_t nt[SP_ANALYZE_MAX_KEYS];
			const sp_value_t *old = tr->keys.values + (size_t)j * tr->keys.n_keys;
			struct shards so = {0}, sn = {0};
			for (int k = 0; k < tc->n_keys; k++)
				nt[k] =
				    tr->key_new[k].kind == SP_VAL_NONE ? old[k] : tr->key_new[k];
			int r1 = tuple_shards(rc, tc, old, false, &so, t);
			if (r1 == V_ERROR)
				return false;
			int r2 = tuple_shards(rc, tc, nt, true, &sn, t);
			if (r2 == V_ERROR)
				return false;
			if (r1 != V_OK || r2 != V_OK || !so.any || !sn.any)
				continue;
			if (so.multi || sn.multi || so.one != sn.one) {
				fail(t, SQLSTATE_FEATURE,
				     "shardpool cannot move rows between shards: DELETE the row "
				     "and INSERT it with the "
				     "new key.",
				     "UPDATE would move the row from shard %d to shard %d (table "
				     "%s)",
				     so.one, sn.one, ref_name(tr, nb, sizeof(nb)));
				return false;
			}
		}
	}
	return true;
}

static bool fanout_all(struct rctx *rc, sp_target_t *t, const char *what)
{
	if (rc->db->n_shards > SP_ROUTER_MAX_SHARDS) {
		fail(t, SQLSTATE_FEATURE, "Use /* shard: N */ for each shard.",
		     "%s would need all %d shards; shardpool fans out to at most %d", what,
		     rc->db->n_shards, SP_ROUTER_MAX_SHARDS);
		return false;
	}
	t->kind = SP_TARGET_FANOUT;
	t->shard_mask = all_mask(rc->db);
	return true;
}

/* COPY table FROM / TO. */
static void route_copy(struct rctx *rc, const sp_stmt_t *st, sp_target_t *t)
{
	const sp_copy_t *cp = &st->copy;
	const sp_table_ref_t *tr = &st->tables[cp->table];
	const sp_table_conf_t *tc = tr->conf;
	char nb[160], kd[200], hint[512];

	if (!tc)
		return; /* ANY */
	ref_name(tr, nb, sizeof(nb));
	if (!cp->is_from) {
		if (tc->replicated)
			return;
		if (cp->filename || cp->is_program) {
			snprintf(hint, sizeof(hint),
				 "Use COPY ... TO STDOUT through shardpool, or /* shard: N */ COPY ... "
				 "for each shard (key %s).",
				 key_desc(tr, kd, sizeof(kd)));
			fail(t, SQLSTATE_FEATURE, hint,
			     "COPY %s TO a server file or program would need every shard", nb);
			return;
		}
		/* The fan-out concatenates the shards' CopyData (one header, one trailer). */
		if (!fanout_all(rc, t, "COPY TO"))
			return;
		t->fanout_sum = true;
		t->read = true;
		t->write = false;
		t->copy.csv = cp->format == SP_COPY_CSV;
		t->copy.header = cp->header != 0 && cp->format == SP_COPY_CSV;
		return;
	}
	if (cp->filename || cp->is_program) {
		fail(t, SQLSTATE_FEATURE, "Use COPY ... FROM STDIN through shardpool.",
		     "COPY %s FROM a server file or program is refused for a table on several "
		     "shards",
		     nb);
		return;
	}
	if (!fanout_all(rc, t, "COPY FROM"))
		return;
	t->fanout_sum = true;
	t->write = true;
	t->read = false;
	if (tc->replicated) {
		t->fanout_first = true;
		t->copy.mode = SP_ROUTER_COPY_ALL;
		return;
	}
	if (cp->has_where) {
		fail(t, SQLSTATE_FEATURE, NULL,
		     "COPY %s FROM ... WHERE cannot be split across shards", nb);
		return;
	}
	for (int k = 0; rc->sess && rc->sess->enc_other && !cp->encoding && k < tc->n_keys; k++)
		if (tc->key_types[k] == SP_KEY_TEXT || tc->key_types[k] == SP_KEY_VARCHAR) {
			fail(t, SQLSTATE_FEATURE, "SET client_encoding = 'UTF8' for the COPY.",
			     "COPY %s FROM STDIN cannot be split across shards while client_encoding "
			     "is not UTF8: shardpool reads the text key column %s as UTF8",
			     nb, tc->key_cols[k]);
			return;
		}
	if (cp->encoding && !utf8_name(cp->encoding, false)) {
		/* the key bytes would be hashed before the server converts them */
		fail(t, SQLSTATE_FEATURE, "Send the rows in UTF8 (leave out ENCODING).",
		     "COPY %s FROM STDIN with ENCODING '%s' cannot be split across shards: "
		     "shardpool reads the key columns as UTF8",
		     nb, cp->encoding);
		return;
	}
	if (cp->null_str && strlen(cp->null_str) >= sizeof(t->copy.null_str)) {
		fail(t, SQLSTATE_FEATURE, "Use a shorter NULL string.",
		     "COPY %s FROM STDIN with a NULL string of %zu bytes cannot be split across "
		     "shards (at most %zu)",
		     nb, strlen(cp->null_str), sizeof(t->copy.null_str) - 1);
		return;
	}
	t->copy.n_keys = tc->n_keys;
	for (int k = 0; k < tc->n_keys && k < SP_ROUTER_MAX_KEYS; k++) {
		if (!cp->has_column_list || cp->key_pos[k] < 0) {
			fail(t, SQLSTATE_FEATURE, "List the columns: COPY t (col, ...) FROM STDIN.",
			     "COPY %s FROM STDIN needs a column list that includes the shard key "
			     "column %s",
			     nb, tc->key_cols[k]);
			return;
		}
		t->copy.key_pos[k] = cp->key_pos[k];
	}
	t->copy.mode = SP_ROUTER_COPY_SPLIT;
	t->copy.table = tc;
	t->copy.csv = cp->format == SP_COPY_CSV;
	t->copy.binary = cp->format == SP_COPY_BINARY;
	t->copy.delimiter =
	    cp->delimiter && cp->delimiter[0] ? cp->delimiter[0] : (t->copy.csv ? ',' : '\t');
	t->copy.quote = cp->quote && cp->quote[0] ? cp->quote[0] : '"';
	t->copy.escape = cp->escape && cp->escape[0] ? cp->escape[0] : t->copy.quote;
	t->copy.header = cp->header != 0;
	snprintf(t->copy.null_str, sizeof(t->copy.null_str), "%s",
		 cp->null_str ? cp->null_str : (t->copy.csv ? "" : "\\N"));
	t->copy.force_not_null = cp->force_not_null_keys;
	t->copy.force_null = cp->force_null_keys;
}

static bool writes_sharded(const sp_stmt_t *st, const sp_table_ref_t **which)
{
	for (int i = 0; i < st->n_tables; i++)
		if (is_sharded_conf(st->tables[i].conf) && (st->tables[i].ctx & SP_TABLE_WRITE)) {
			*which = &st->tables[i];
			return true;
		}
	return false;
}

static void refuse_write(const sp_stmt_t *st, const sp_table_ref_t *tr, sp_target_t *t)
{
	char nb[160], kd[200], hint[512];
	const char *why = tr->keys.why ? tr->keys.why : "no condition on the shard key";

	key_desc(tr, kd, sizeof(kd));
	ref_name(tr, nb, sizeof(nb));
	if (st->kind == SP_STMT_INSERT && st->insert.table >= 0 &&
	    st->insert.table < st->n_tables && tr == &st->tables[st->insert.table] &&
	    !st->insert.has_column_list && !st->insert.columns_known &&
	    st->insert.source != SP_INSERT_DEFAULT_VALUES) {
		char keys[200];
		size_t o = 0;
		keys[0] = '\0';
		for (int k = 0; k < tr->conf->n_keys && o < sizeof(keys); k++)
			o += (size_t)snprintf(keys + o, sizeof(keys) - o, "%s%s", k ? ", " : "",
					      tr->conf->key_cols[k]);
		/* perhaps a table the catalog reader has not seen yet: look again */
		atomic_fetch_add_explicit(&cols_requests, 1, memory_order_relaxed);
		snprintf(
		    hint, sizeof(hint),
		    "Name the columns (INSERT INTO %s (%s, ...) VALUES ...), or, if the table "
		    "was created after shardpool last read the catalog, retry in a few seconds "
		    "or RELOAD shardpool.",
		    nb, keys);
		fail(t, SQLSTATE_FEATURE, hint,
		     "INSERT without a column list into sharded table %s: shardpool does not know "
		     "the table's column order, so it cannot find the shard key",
		     nb);
		return;
	}
	if (st->kind == SP_STMT_INSERT) {
		snprintf(hint, sizeof(hint),
			 "Name %s in the column list and give it a constant or parameter in every "
			 "row, or add a "
			 "/* shard: N */ hint.",
			 kd);
		fail(t, SQLSTATE_FEATURE, hint,
		     "INSERT into sharded table %s needs its shard key: %s", nb, why);
		return;
	}
	snprintf(hint, sizeof(hint),
		 "Add a condition on %s (key = value or key IN (...)), or a /* shard: N */ hint.",
		 kd);
	fail(t, SQLSTATE_FEATURE, hint, "%s on sharded table %s would need every shard: %s",
	     st->kind == SP_STMT_SELECT ? "a write" : sp_stmt_kind_str(st->kind), nb, why);
}

/* Every sharded table of an unpinned statement is joined to its route table on the key. */
static bool all_colocated(const sp_stmt_t *st)
{
	for (int i = 0; i < st->n_tables; i++)
		if (is_sharded_conf(st->tables[i].conf) && !st->tables[i].colocated)
			return false;
	return true;
}

/* A statement on a sharded table that may touch every shard (no session shard). */
static void route_unpinned(struct rctx *rc, const sp_stmt_t *st, const sp_table_ref_t *rt,
			   int n_sharded, const sp_table_ref_t *second, sp_target_t *t)
{
	const sp_table_ref_t *w;
	char nb[160], nb2[160], kd[200], hint[512];

	switch (st->kind) {
	case SP_STMT_SELECT:
		if (writes_sharded(st, &w)) {
			refuse_write(st, w, t);
			return;
		}
		if (n_sharded > 1 && !st->shape.setop && !all_colocated(st)) {
			snprintf(hint, sizeof(hint),
				 "Join the tables on their shard keys, add a condition on %s (key = "
				 "value), or a /* shard: N */ hint.",
				 key_desc(rt, kd, sizeof(kd)));
			fail(t, SQLSTATE_FEATURE, hint,
			     "a statement over every shard may read several sharded tables only "
			     "when they are joined on their shard keys, but it reads %s and %s "
			     "without such a join",
			     ref_name(rt, nb, sizeof(nb)),
			     ref_name(second ? second : rt, nb2, sizeof(nb2)));
			return;
		}
		if (fanout_all(rc, t, "this SELECT"))
			fanout_read(rc, st, rt, t->shard_mask, t);
		return;
	case SP_STMT_EXPLAIN:
		if (st->explain_analyze && st->is_write && writes_sharded(st, &w)) {
			refuse_write(st, w, t);
			return;
		}
		if (fanout_all(rc, t, "EXPLAIN"))
			fanout_read(rc, st, rt, t->shard_mask, t);
		return;
	case SP_STMT_UPDATE:
	case SP_STMT_DELETE:
	case SP_STMT_MERGE:
	case SP_STMT_INSERT:
		refuse_write(st, writes_sharded(st, &w) ? w : rt, t);
		return;
	case SP_STMT_DDL:
	case SP_STMT_MAINTENANCE:
		if (fanout_all(rc, t, sp_stmt_kind_str(st->kind)))
			t->fanout_sum = true;
		return;
	default:
		snprintf(hint, sizeof(hint), "Add a condition on %s, or a /* shard: N */ hint.",
			 key_desc(rt, kd, sizeof(kd)));
		fail(t, SQLSTATE_FEATURE, hint,
		     "%s%s on sharded table %s would need every shard, which is not supported",
		     sp_stmt_kind_str(st->kind), st->kind == SP_STMT_DECLARE ? " CURSOR" : "",
		     ref_name(rt, nb, sizeof(nb)));
	}
}

/* Several shards, each with its own key tuples. */
static void route_multi(struct rctx *rc, const sp_stmt_t *st, const sp_table_ref_t *rt,
			uint64_t mask, sp_target_t *t)
{
	const sp_table_ref_t *w;
	char nb[160];

	switch (st->kind) {
	case SP_STMT_SELECT:
		if (writes_sharded(st, &w)) {
			fail(t, SQLSTATE_FEATURE, "Write one shard key at a time.",
			     "a write to sharded table %s inside a SELECT cannot run on several "
			     "shards",
			     ref_name(w, nb, sizeof(nb)));
			return;
		}
		fanout_read(rc, st, rt, mask, t);
		return;
	case SP_STMT_EXPLAIN:
		if (st->explain_analyze && st->is_write && writes_sharded(st, &w)) {
			/* every shard would run the whole statement: a multi-row INSERT would
			 * store each row on every shard, and nothing spans one transaction */
			fail(t, SQLSTATE_FEATURE,
			     "EXPLAIN ANALYZE the statement for one shard key at a time, or put "
			     "/* shard: N */ in front of it.",
			     "EXPLAIN ANALYZE of a write to sharded table %s on several shards is "
			     "not supported: each shard would run all of it",
			     ref_name(w, nb, sizeof(nb)));
			return;
		}
		t->kind = SP_TARGET_FANOUT;
		t->shard_mask = mask;
		fanout_read(rc, st, rt, mask, t);
		return;
	case SP_STMT_UPDATE:
	case SP_STMT_DELETE:
	case SP_STMT_MERGE:
		if (!check_key_move(rc, st, t))
			return;
		/* each shard changes only its own rows: the same statement everywhere */
		t->kind = SP_TARGET_FANOUT;
		t->shard_mask = mask;
		t->fanout_sum = true;
		t->fanout_txn = true;
		return;
	case SP_STMT_INSERT: {
		const sp_insert_t *ins = &st->insert;
		const sp_table_ref_t *tr =
		    ins->table >= 0 && ins->table < st->n_tables ? &st->tables[ins->table] : NULL;
		if (!check_key_move(rc, st, t))
			return;
		if (ins->ragged) {
			/* each shard's rows could be uniform: answer as the one server would */
			fail(t, SQLSTATE_SYNTAX, NULL, "VALUES lists must all be the same length");
			return;
		}
		if (!tr || ins->source != SP_INSERT_VALUES || tr->keys.state != SP_PIN_SET ||
		    tr->keys.n_tuples != ins->n_rows) {
			fail(t, SQLSTATE_FEATURE, "Insert the rows of each shard separately.",
			     "this INSERT needs several shards and cannot be split by rows");
			return;
		}
		if (!lex_for_rewrite(rc)) {
			fail(t, SQLSTATE_FEATURE,
			     "Send one INSERT per shard key, or send the INSERT as a statement of "
			     "its own.",
			     "an INSERT whose rows belong to several shards is split only for a "
			     "statement sent alone");
			return;
		}
		struct tls *tl = rc->tl;
		if (!sp_grow_array(&tl->tshard, &tl->tshard_cap, ins->n_rows, sizeof(int))) {
			fail(t, SQLSTATE_OOM, NULL, "out of memory");
			return;
		}
		for (int r = 0; r < ins->n_rows; r++) {
			struct shards one = {0};
			int rv = tuple_shards(rc, tr->conf,
					      tr->keys.values + (size_t)r * tr->keys.n_keys, true,
					      &one, t);
			if (rv == V_ERROR)
				return;
			if (rv != V_OK || !one.any || one.multi) {
				fail(t, SQLSTATE_FEATURE, NULL,
				     "row %d of the INSERT has no single shard", r + 1);
				return;
			}
			tl->tshard[r] = one.one;
		}
		if (!split_insert(rc, tl->tshard, ins->n_rows, mask)) {
			fail(t, SQLSTATE_FEATURE, "Insert the rows of each shard separately.",
			     "shardpool could not split this INSERT by shard");
			return;
		}
		t->kind = SP_TARGET_FANOUT;
		t->shard_mask = mask;
		t->fanout_sum = true;
		t->fanout_txn = true;
		t->per_shard_sql = true;
		t->sql = tl->sql;
		if (st->has_returning) {
			t->row_shard = tl->tshard;
			t->n_row_shard = ins->n_rows;
		}
		return;
	}
	default:
		fail(t, SQLSTATE_FEATURE, "Use one shard key, or a /* shard: N */ hint.",
		     "%s on sharded table %s needs several shards, which is not supported",
		     sp_stmt_kind_str(st->kind), ref_name(rt, nb, sizeof(nb)));
	}
}

/*
 * CREATE / ALTER / DROP of a sharded table may move its columns: forget
 * their order now (an INSERT without a column list is refused rather than
 * routed by a stale key position) and ask for the catalog to be read again.
 * This runs before the DDL reaches the shards; the catalog reader skips a
 * table that a DDL still holds locked (see health.c).
 */
static void ddl_forgets_columns(struct rctx *rc, const sp_stmt_t *st)
{
	for (int i = 0; i < st->n_tables; i++)
		if (is_sharded_conf(st->tables[i].conf) && st->tables[i].name)
			forget_columns(rc->db->name, st->tables[i].name);
}

static void route_stmt(struct rctx *rc, const sp_stmt_t *st, const sp_hints_t *h, sp_target_t *t)
{
	const sp_db_conf_t *db = rc->db;
	const sp_table_ref_t *rt = NULL, *second = NULL, *repl = NULL;
	int n_sharded = 0, n_free = 0, ss;
	char nb[160], nb2[160];

	classify(st, t);
	if (st->kind == SP_STMT_DDL)
		ddl_forgets_columns(rc, st);
	if (h->error) {
		fail(t, SQLSTATE_PARAM,
		     "Hints look like /* shard: 1 */, /* shard_key: 42 */ or /* role: replica */.",
		     "invalid shardpool hint: %s", h->error);
		return;
	}
	if (st->kind == SP_STMT_SET && route_set(rc, st, t))
		return;
	if (st->kind == SP_STMT_DISCARD && st->discard == SP_DISCARD_ALL) {
		session_clear(rc->sess);
		t->session_changed = true;
	}
	apply_role(rc, h, t);
	if (h->shard >= 0) {
		if (shard_in_range(db, h->shard, "the shard hint", t)) {
			t->kind = SP_TARGET_SHARD;
			t->shard = h->shard;
		}
		return;
	}
	if (h->has_shard_key) {
		int s = key_text_shard(rc, st, h->shard_key, t);
		if (s >= 0) {
			t->kind = SP_TARGET_SHARD;
			t->shard = s;
		}
		return;
	}
	switch (st->kind) {
	case SP_STMT_TXN:
	case SP_STMT_SET:
	case SP_STMT_DISCARD:
	case SP_STMT_DEALLOCATE:
		return; /* ANY: the transaction's or session's server */
	default:
		break;
	}
	if (db->n_shards <= 1)
		return;
	if (st->kind == SP_STMT_PREPARE || st->kind == SP_STMT_EXECUTE) {
		if ((ss = session_shard(rc, st, t)) >= 0) {
			t->kind = SP_TARGET_SHARD;
			t->shard = ss;
			return;
		}
		if (ss == -2)
			return;
		/*
		 * EXECUTE runs where the PREPARE ran (default_shard), whatever its
		 * arguments: a statement on a sharded table would answer from that
		 * one shard only, silently missing the rows of the others.
		 */
		for (int i = 0; st->kind == SP_STMT_PREPARE && i < st->n_tables; i++) {
			const sp_table_ref_t *tr = &st->tables[i];
			if (!is_sharded_conf(tr->conf))
				continue;
			fail(t, SQLSTATE_FEATURE,
			     "Use the protocol's prepared statements (Parse/Bind: every driver's "
			     "prepare), or name one shard with /* shard: N */ or SET shardpool.shard.",
			     "SQL PREPARE of a statement on sharded table %s is not supported: "
			     "EXECUTE would run it on one shard whatever its arguments",
			     ref_name(tr, nb, sizeof(nb)));
			return;
		}
		return;
	}
	for (int i = 0; i < st->n_tables; i++) {
		const sp_table_ref_t *tr = &st->tables[i];
		if (tr->conf && tr->conf->replicated && (tr->ctx & SP_TABLE_WRITE) && !repl)
			repl = tr;
		if (!is_sharded_conf(tr->conf))
			continue;
		n_sharded++;
		if (tr->pinned_via < 0)
			n_free++;
		if (!rt)
			rt = tr;
		else if (!second)
			second = tr;
	}
	if (st->route_table >= 0 && st->route_table < st->n_tables &&
	    is_sharded_conf(st->tables[st->route_table].conf)) {
		const sp_table_ref_t *first = rt;
		rt = &st->tables[st->route_table];
		if (second == rt)
			second = first; /* "the other one", in messages */
	}
	if (st->kind == SP_STMT_COPY && st->copy.table >= 0 && st->copy.table < st->n_tables &&
	    (st->tables[st->copy.table].conf || !rt)) {
		if ((ss = session_shard(rc, st, t)) == -2)
			return;
		if (ss >= 0) {
			t->kind = SP_TARGET_SHARD;
			t->shard = ss;
			return;
		}
		route_copy(rc, st, t);
		return;
	}
	if (!rt) {
		if (repl) {
			/* the same write on every shard: one result goes back */
			if (fanout_all(rc, t, "a write to a replicated table")) {
				t->fanout_sum = true;
				t->fanout_first = true;
				/* DML only: some DDL cannot run inside a transaction block */
				t->fanout_txn = st->kind == SP_STMT_INSERT || st->kind == SP_STMT_UPDATE ||
						st->kind == SP_STMT_DELETE || st->kind == SP_STMT_MERGE;
			}
			return;
		}
		if ((ss = session_shard(rc, st, t)) >= 0) {
			t->kind = SP_TARGET_SHARD;
			t->shard = ss;
		}
		return;
	}
	if (repl) {
		fail(t, SQLSTATE_FEATURE, "Write the replicated table in a statement of its own.",
		     "the statement writes replicated table %s, which must run on every shard, and "
		     "uses sharded table %s",
		     ref_name(repl, nb, sizeof(nb)), ref_name(rt, nb2, sizeof(nb2)));
		return;
	}
	if (st->route != SP_ROUTE_UNPINNED) {
		struct shards all = {0};
		bool unknown = false;
		for (int i = 0; i < st->n_tables && !unknown; i++) {
			const sp_table_ref_t *tr = &st->tables[i];
			struct shards one = {0};
			if (!is_sharded_conf(tr->conf) || tr->keys.state != SP_PIN_SET)
				continue;
			bool w = st->kind == SP_STMT_INSERT && (tr->ctx & SP_TABLE_WRITE);
			int rv = table_shards(rc, tr, w, &one, t);
			if (rv == V_ERROR)
				return;
			if (rv == V_UNKNOWN) {
				unknown = true;
				break;
			}
			if (!one.any)
				continue;
			all.mask |= one.mask;
			all.big |= one.big;
			if (!all.any) {
				all.any = true;
				all.one = one.one;
				all.multi = one.multi;
			} else if (one.multi || one.one != all.one) {
				if (st->route == SP_ROUTE_PINNED_MIXED) {
					fail(t, SQLSTATE_FEATURE,
					     "Join sharded tables on their shard keys, or query "
					     "them separately.",
					     "the statement joins rows of %s and %s that live on "
					     "different shards",
					     ref_name(rt, nb, sizeof(nb)),
					     ref_name(tr, nb2, sizeof(nb2)));
					return;
				}
				all.multi = true;
			}
		}
		if (!unknown) {
			if (!all.any) {
				/* no row can match (a NULL key under range/list, id = 1.5 on an
				 * integer key): any one shard answers, the transaction's first */
				if (rc->in_txn >= 0) {
					t->kind = SP_TARGET_SHARD;
					t->shard = rc->in_txn;
				} else if ((ss = session_shard(rc, st, t)) >= 0) {
					t->kind = SP_TARGET_SHARD;
					t->shard = ss;
				} else if (ss == -1) {
					t->kind = SP_TARGET_SHARD;
					t->shard = db->default_shard;
				}
				return;
			}
			if (!all.multi) {
				if (check_key_move(rc, st, t)) {
					t->kind = SP_TARGET_SHARD;
					t->shard = all.one;
				}
				return;
			}
			if (all.big) {
				fail(t, SQLSTATE_FEATURE, "Query fewer keys at a time.",
				     "the statement needs several shards, and shardpool fans out "
				     "to shards 0 to %d only",
				     SP_ROUTER_MAX_SHARDS - 1);
				return;
			}
			if (st->route == SP_ROUTE_PINNED_MIXED ||
			    (n_free > 1 && st->kind != SP_STMT_INSERT && !all_colocated(st))) {
				fail(t, SQLSTATE_FEATURE,
				     "Join sharded tables on their shard keys, or query one key at "
				     "a time.",
				     "the statement needs several shards, but %s and %s are not "
				     "joined on their shard keys",
				     ref_name(rt, nb, sizeof(nb)),
				     ref_name(second ? second : rt, nb2, sizeof(nb2)));
				return;
			}
			route_multi(rc, st, rt, all.mask, t);
			return;
		}
	}
	/* unpinned, or pinned by parameters that have no value yet */
	if ((ss = session_shard(rc, st, t)) == -2)
		return;
	if (ss >= 0) {
		t->kind = SP_TARGET_SHARD;
		t->shard = ss;
		return;
	}
	if (rt->keys.state == SP_PIN_ALL || st->route == SP_ROUTE_UNPINNED) {
		const sp_table_ref_t *u = st->route_table >= 0 && st->route_table < st->n_tables
					      ? &st->tables[st->route_table]
					      : rt;
		route_unpinned(rc, st, is_sharded_conf(u->conf) ? u : rt, n_sharded, second, t);
		return;
	}
	/* parameters without values (Describe before Bind): any shard can describe it */
	if (st->kind == SP_STMT_SELECT || st->kind == SP_STMT_EXPLAIN)
		fanout_read(rc, st, rt, all_mask(db), t);
	else
		route_unpinned(rc, st, rt, n_sharded, second, t);
}

/* ------------------------------------------------------------------ whole query strings */

static void stmt_hints(struct rctx *rc, const sp_stmt_t *stmts, int n, int i, sp_hints_t *h)
{
	struct tls *tl = rc->tl;
	const struct lexer *lx = rc->lx;

	if (!lx) {
		*h = stmts[i].hints;
		return;
	}
	memset(h, 0, sizeof(*h));
	h->shard = -1;
	int li = lx->ns == n ? i : (i == 0 ? 0 : -1);
	if (li < 0 || li >= lx->ns || !lx->s[li].comment)
		return;
	const struct lstmt *ls = &lx->s[li];
	size_t a = ls->start, b = lx->t[ls->first].start;
	sp_buf_t *hb = &tl->scratch;
	sp_buf_reset(hb);
	if (!sp_buf_append(hb, rc->sql + a, b - a) || !sp_buf_append(hb, "", 1))
		return;
	sp_analyze_hints((const char *)sp_buf_head(hb), h);
}

/*
 * A statement shardpool did not parse (the grammar rejected it, or it is longer than
 * max_route_query_size): only its hints and the session can say where it goes. True
 * when they did (t routed, or failed on a bad hint); false when nothing named a shard.
 */
static bool route_by_hints(struct rctx *rc, const sp_hints_t *h, sp_target_t *t)
{
	int ss;

	t->write = true;
	if (h->error) {
		fail(t, SQLSTATE_PARAM,
		     "Hints look like /* shard: 1 */, /* shard_key: 42 */ or /* role: replica */.",
		     "invalid shardpool hint: %s", h->error);
		return true;
	}
	apply_role(rc, h, t);
	if (h->shard >= 0) {
		if (shard_in_range(rc->db, h->shard, "the shard hint", t)) {
			t->kind = SP_TARGET_SHARD;
			t->shard = h->shard;
		}
		return true;
	}
	if (h->has_shard_key) {
		int k = key_text_shard(rc, NULL, h->shard_key, t);
		if (k >= 0) {
			t->kind = SP_TARGET_SHARD;
			t->shard = k;
		}
		return true;
	}
	if ((ss = session_shard(rc, NULL, t)) == -2)
		return true;
	if (ss >= 0) {
		t->kind = SP_TARGET_SHARD;
		t->shard = ss;
		return true;
	}
	return false;
}

/* A text PostgreSQL's grammar rejects. */
static void route_error(struct rctx *rc, const sp_stmt_t *stmts, int n, const sp_hints_t *h,
			sp_target_t *t)
{
	const char *msg = "syntax error";

	for (int i = 0; i < n; i++)
		if (stmts[i].kind == SP_STMT_ERROR && stmts[i].error) {
			msg = stmts[i].error;
			break;
		}
	if (route_by_hints(rc, h, t))
		return;
	if (rc->in_txn >= 0 || rc->db->n_shards <= 1)
		return; /* the server reports the syntax error itself */
	fail(t, SQLSTATE_SYNTAX,
	     "shardpool parses a statement to choose its shard; put /* shard: N */ in front of it "
	     "to send it to "
	     "shard N as it is.",
	     "%s", msg);
}

/* A target that leaves the shard of the client's open transaction: refused. */
static void txn_conflict(const struct rctx *rc, sp_target_t *out)
{
	if (out->kind == SP_TARGET_FANOUT && rc->in_txn >= 0)
		fail(out, SQLSTATE_FEATURE,
		     "Run it outside the transaction, or add a condition on the shard key.",
		     "this statement needs several shards, but the transaction is on shard %d",
		     rc->in_txn);
	else if (out->kind == SP_TARGET_SHARD && rc->in_txn >= 0 && out->shard != rc->in_txn)
		fail(out, SQLSTATE_FEATURE,
		     "Keep each transaction to one shard key, or commit and start another "
		     "transaction.",
		     "this statement needs shard %d, but the transaction is on shard %d; "
		     "cross-shard transactions are "
		     "not supported",
		     out->shard, rc->in_txn);
}

static void route_all(struct rctx *rc, const sp_stmt_t *stmts, int n, bool has_error,
		      sp_target_t *out)
{
	sp_router_session_t work = *rc->sess, *orig = rc->sess;
	sp_hints_t h;

	rc->sess = &work;
	rc->n_stmts = n;
	rc->lstmt = -1;
	sp_router_target_init(out);
	if (has_error) {
		stmt_hints(rc, stmts, n, 0, &h);
		route_error(rc, stmts, n, &h, out);
	} else if (n == 1) {
		rc->lstmt = rc->lx && rc->lx->ns == 1 ? 0 : -1;
		stmt_hints(rc, stmts, n, 0, &h);
		route_stmt(rc, &stmts[0], &h, out);
	} else if (n > 1) {
		sp_target_t *tmp = malloc(sizeof(*tmp));
		bool have = false, has_begin = false, has_read = false;
		if (!tmp) {
			fail(out, SQLSTATE_OOM, NULL, "out of memory");
			goto done;
		}
		for (int i = 0; i < n; i++)
			if (stmts[i].kind == SP_STMT_TXN &&
			    (stmts[i].txn.op == SP_TXN_BEGIN || stmts[i].txn.op == SP_TXN_START))
				has_begin = true;
		for (int i = 0; i < n; i++) {
			rc->lstmt = rc->lx && rc->lx->ns == n ? i : -1;
			stmt_hints(rc, stmts, n, i, &h);
			sp_router_target_init(tmp);
			route_stmt(rc, &stmts[i], &h, tmp);
			if (tmp->kind == SP_TARGET_ERROR) {
				fail(out, tmp->sqlstate, tmp->hint, "%s", tmp->message);
				break;
			}
			if (tmp->kind == SP_TARGET_FANOUT) {
				fail(out, SQLSTATE_FEATURE,
				     "Send that statement as a query of its own, outside a "
				     "transaction.",
				     "statement %d of this query string needs several shards, "
				     "which shardpool supports only "
				     "for a statement sent alone",
				     i + 1);
				break;
			}
			out->session_changed |= tmp->session_changed;
			/*
			 * SET shardpool.* among other statements: the session changes
			 * here, and the text still goes to the server, which accepts
			 * (and answers) the placeholder setting itself.
			 */
			if (tmp->kind == SP_TARGET_LOCAL)
				continue;
			out->listen |= tmp->listen;
			if (tmp->txnop != SP_TXNOP_NONE) {
				out->txnop = tmp->txnop;
				if (tmp->txnop == SP_TXNOP_BEGIN)
					out->read_only = tmp->read_only;
			}
			/* COMMIT after this string's own BEGIN READ ONLY does not make it a write
			 */
			if (!(stmts[i].kind == SP_STMT_TXN && has_begin &&
			      tmp->txnop != SP_TXNOP_BEGIN))
				out->write |= tmp->write;
			if (tmp->read)
				has_read = true;
			if (tmp->kind == SP_TARGET_SHARD) {
				if (!have) {
					out->kind = SP_TARGET_SHARD;
					out->shard = tmp->shard;
					have = true;
				} else if (tmp->shard != out->shard) {
					fail(out, SQLSTATE_FEATURE,
					     "Send them separately, or give them the same shard "
					     "key.",
					     "the statements of this query string need different "
					     "shards (%d and %d); a query "
					     "string runs as one transaction, and cross-shard "
					     "transactions are not supported",
					     out->shard, tmp->shard);
					break;
				}
			}
		}
		free(tmp);
		if (out->kind != SP_TARGET_ERROR)
			out->read = has_read && !out->write;
	}
done:
	out->n_stmts = n;
	txn_conflict(rc, out);
	if (out->kind != SP_TARGET_ERROR)
		*orig = work;
	rc->sess = orig;
}

/*
 * The hints of a text that is not lexed: those of the comments in front of its first
 * token, read from a copy of that part only.
 */
static void leading_hints(struct tls *tl, const char *s, size_t n, sp_hints_t *h)
{
	size_t p = 0;

	memset(h, 0, sizeof(*h));
	h->shard = -1;
	for (;;) {
		while (p < n && is_space(s[p]))
			p++;
		if (p + 1 < n && s[p] == '-' && s[p + 1] == '-') {
			while (p < n && s[p] != '\n')
				p++;
		} else if (p + 1 < n && s[p] == '/' && s[p + 1] == '*') {
			bool unterminated = false;
			p = skip_block_comment(s, n, p, &unterminated);
		} else {
			break;
		}
	}
	if (p == 0)
		return;
	sp_buf_reset(&tl->scratch);
	if (sp_buf_append(&tl->scratch, s, p) && sp_buf_append(&tl->scratch, "", 1))
		sp_analyze_hints((const char *)sp_buf_head(&tl->scratch), h);
}

/*
 * A statement longer than max_route_query_size (len bytes, limit the limit then): it is
 * not analysed, so it goes where a leading shard or shard_key hint or the session's
 * SET shardpool.shard / shard_key says, as a write (shardpool cannot tell a read).
 * Without one, a database of one shard sends it to its primary; a sharded one refuses
 * it (54000) rather than guess.
 */
static void route_oversize(struct rctx *rc, size_t len, size_t limit, const sp_hints_t *h,
			   sp_target_t *t)
{
	char hint[300];

	sp_router_target_init(t);
	if (!route_by_hints(rc, h, t) && rc->db->n_shards > 1) {
		snprintf(hint, sizeof(hint),
			 "Put /* shard: N */ or /* shard_key: value */ in front of it, SET "
			 "shardpool.shard first, send it in smaller statements, or raise "
			 "max_route_query_size (now %zu bytes).",
			 limit);
		fail(t, SQLSTATE_TOO_COMPLEX, hint,
		     "statement of %zu bytes is longer than max_route_query_size (%zu bytes): "
		     "shardpool does not parse it to choose a shard",
		     len, limit);
		return;
	}
	txn_conflict(rc, t);
}

/* ------------------------------------------------------------------ shape memo */

/*
 * A per-thread memo in front of the plan cache, for simple-protocol texts that differ
 * from one seen before only in their literals (pgbench's "... WHERE aid = 4711").
 * shape_scan() reads the text once: it finds the literal slots (numbers and '...'
 * strings) and hashes everything else. A hit needs the text to equal the remembered one
 * byte for byte outside the slots the slow path lifted (slots it kept, like ORDER BY 1,
 * are compared too), so the normalised text, and with it the plan, would be the same:
 * lex(), lift(), normalise() and the locked cache lookup are skipped, and the lifted
 * values are read straight from the slots. Only plain single statements take part:
 * a text with a comment (hints live there), an E'', B'', X'', N'' or U& literal or a
 * dollar quote goes the slow way, and an entry is made only when the scanner's slots
 * are exactly the lexer's number and string tokens.
 */
#define MEMO_ENTRIES 256 /* per thread, power of two */
#define MEMO_MAX_TEXT 2048
#define MEMO_MAX_SLOTS 32

#define SLOT_LIFT 1   /* the slow path lifted this literal */
#define SLOT_STRING 2 /* a '...' string, else a number */

struct slot {
	uint32_t at, len;
	uint16_t sign; /* a unary sign folded into a lifted number: its distance before at */
	uint8_t flags;
};

struct shape {
	uint64_t hash;
	int nslots, max_param;
	struct slot slot[MEMO_MAX_SLOTS];
};

/*
 * The compiled route of an entry (fast_route()): its plan is one SELECT, UPDATE or
 * DELETE of one sharded table with a one-column key, pinned by one lifted literal (a
 * number for an integer key, a string for the others), so the target is a function of
 * that literal alone; or one SELECT, INSERT, UPDATE or DELETE on a database of one
 * shard, whose target (read or write) is the same for every value. Checked against the
 * generic route the first time (fast_compile()); after that a hit reads the literal,
 * hashes it and fills the target.
 */
#define FAST_UNTRIED 0
#define FAST_YES 1
#define FAST_NO 2

struct memo_ent {
	uint64_t hash;
	const sp_db_conf_t *db;
	unsigned epoch;
	sp_plan_t *plan; /* a reference; NULL: empty */
	int nslots, max_param;
	uint32_t len;
	char *text;	   /* the text the entry was made from */
	struct slot *slot; /* nslots, allocated with text */
	uint8_t fast;	   /* FAST_* */
	uint8_t fast_slot; /* the key's slot */
	bool fast_any;	   /* an unsharded database: the target is the same for every value */
	bool fast_write, fast_read;
	const sp_table_conf_t *fast_tc;
};


/*
 * Find the literal slots of s and hash the rest. False when the text is not one the
 * memo takes (see above); the token rules are lex()'s, through the same helpers.
 */
static bool shape_scan(const char *s, size_t n, struct shape *sh)
{
	size_t p = 0, seg = 0;
	uint64_t h = UINT64_C(0x243F6A8885A308D3);
	bool bad = false;

	sh->nslots = 0;
	sh->max_param = 0;
	if (n > MEMO_MAX_TEXT)
		return false;
	while (p < n) {
		unsigned char c = (unsigned char)s[p];
		size_t start = p;
		bool string = false;

		if (ident_start(c)) {
			char lc = (char)(c | 0x20);
			if (p + 1 < n &&
			    ((s[p + 1] == '\'' && (lc == 'e' || lc == 'b' || lc == 'x' || lc == 'n')) ||
			     (s[p + 1] == '&' && lc == 'u')))
				return false;
			p++;
			while (p < n && ident_char((unsigned char)s[p]))
				p++;
			continue;
		}
		switch (c) {
		case '-':
			if (p + 1 < n && s[p + 1] == '-')
				return false;
			p++;
			continue;
		case '/':
			if (p + 1 < n && s[p + 1] == '*')
				return false;
			p++;
			continue;
		case '"':
			p = skip_qident(s, n, p, &bad);
			if (bad)
				return false;
			continue;
		case '$':
			if (p + 1 < n && is_digit(s[p + 1])) {
				p = skip_param(s, n, p, &sh->max_param);
				continue;
			}
			if (dollar_tag(s, n, p))
				return false;
			p++;
			continue;
		case '\'':
			p = skip_quote(s, n, p, false, &bad);
			if (bad)
				return false;
			string = true;
			break;
		default:
			if (!number_start(s, n, p)) {
				p++;
				continue;
			}
			p = skip_number(s, n, p);
		}
		/* a literal slot [start, p) */
		if (sh->nslots >= MEMO_MAX_SLOTS)
			return false;
		h = hash_more(h, s + seg, start - seg);
		sh->slot[sh->nslots++] = (struct slot){(uint32_t)start, (uint32_t)(p - start), 0,
						       string ? SLOT_STRING : 0};
		seg = p;
	}
	h = hash_more(h, s + seg, n - seg);
	sh->hash = h ^ (uint64_t)sh->nslots << 56;
	return true;
}

static void memo_clear(struct memo_ent *e)
{
	sp_plan_unref(e->plan);
	free(e->slot); /* the block that holds the text too */
	memset(e, 0, sizeof(*e));
}

static void memo_free(struct tls *tl)
{
	if (!tl->memo)
		return;
	for (int i = 0; i < MEMO_ENTRIES; i++)
		memo_clear(&tl->memo[i]);
	free(tl->memo);
	tl->memo = NULL;
}

/* Is entry e in use, for database db, and made since the plans were last dropped? */
static bool memo_usable(const struct memo_ent *e, const sp_db_conf_t *db)
{
	return e->plan && e->db == db &&
	       e->epoch == atomic_load_explicit(&memo_epoch, memory_order_relaxed);
}

/*
 * Does s have entry e's shape, with the entry's bytes outside its lifted slots? The
 * answer shape_scan() would lead to, without needing its scan: the bytes before each
 * slot are the entry's, so the scanner reaches the slot in the same state, and the slot
 * is read with the scanner's own rules. sh gets s's slots (the entry's flags).
 */
static bool memo_match(const struct memo_ent *e, const char *s, size_t n, struct shape *sh)
{
	size_t a = 0, b = 0;

	if (n > MEMO_MAX_TEXT)
		return false;
	for (int k = 0; k < e->nslots; k++) {
		const struct slot *os = &e->slot[k];
		size_t seg = os->at - b, p = a + seg, end;
		bool bad = false;

		if (p >= n || memcmp(s + a, e->text + b, seg) != 0)
			return false;
		if (os->flags & SLOT_STRING) {
			if (s[p] != '\'')
				return false;
			end = skip_quote(s, n, p, false, &bad);
			if (bad)
				return false;
			if ((os->flags & SLOT_LIFT) && end - p > 2 && s[p + 1] == '{')
				return false; /* an array literal: lift() leaves it to the analyzer */
		} else {
			if (!number_start(s, n, p))
				return false;
			end = skip_number(s, n, p);
		}
		if (!(os->flags & SLOT_LIFT) &&
		    (end - p != os->len || memcmp(s + p, e->text + os->at, os->len) != 0))
			return false;
		sh->slot[k] = (struct slot){(uint32_t)p, (uint32_t)(end - p), os->sign, os->flags};
		a = end;
		b = os->at + os->len;
	}
	if (n - a != e->len - b || memcmp(s + a, e->text + b, n - a) != 0)
		return false;
	sh->nslots = e->nslots;
	sh->max_param = e->max_param;
	return true;
}

/* The entry of this thread's memo for text s of shape sh, or NULL. */
static struct memo_ent *memo_find(struct tls *tl, const sp_db_conf_t *db, const char *s, size_t n,
				  struct shape *sh)
{
	struct memo_ent *e;
	struct shape m;

	if (!tl->memo)
		return NULL;
	e = &tl->memo[sh->hash & (MEMO_ENTRIES - 1)];
	if (!memo_usable(e, db) || e->hash != sh->hash || e->nslots != sh->nslots ||
	    !memo_match(e, s, n, &m))
		return NULL;
	memcpy(sh->slot, m.slot, (size_t)m.nslots * sizeof(m.slot[0]));
	return e;
}

/*
 * Fill the lexer as lex() and lift() would have for s, which has entry e's shape with
 * the slots sh: one statement, no comment, the lifted literals' values in order, no
 * tokens (lex_for_rewrite() makes them if needed). The entry's plan, with a reference
 * for the caller, or NULL when out of memory.
 */
static sp_plan_t *memo_fill(struct tls *tl, struct memo_ent *e, const char *s, size_t n,
			    const struct shape *sh)
{
	struct lexer *lx = &tl->lx;

	lx->nt = lx->nl = 0;
	lx->vn = lx->nn = 0;
	lx->max_param = sh->max_param;
	lx->bad = false;
	lx->notok = true;
	lx->src = s;
	lx->n = n;
	if (!sp_grow_array(&lx->s, &lx->caps, 1, sizeof(*lx->s)))
		return NULL;
	lx->s[0] = (struct lstmt){0, 0, 0, false};
	lx->ns = 1;
	for (int k = 0; k < sh->nslots; k++) {
		const struct slot *ns = &sh->slot[k], *os = &e->slot[k];
		bool ok;
		if (!(os->flags & SLOT_LIFT))
			continue;
		if (os->flags & SLOT_STRING)
			ok = push_value(lx, -1, s + ns->at + 1, ns->len - 2, true, false);
		else
			ok = push_value(lx, -1, s + ns->at - os->sign, ns->len + os->sign, false,
					true);
		if (!ok)
			return NULL;
	}
	atomic_fetch_add_explicit(&st_memo_hits, 1, memory_order_relaxed);
	sp_plan_ref(e->plan);
	return e->plan;
}

/*
 * Remember plan p for texts of shape sh, after the slow path lexed and lifted s into lx
 * and found p without lifting trouble. Nothing is remembered unless the scanner's slots
 * are exactly the lexer's number and string tokens.
 */
static void memo_put(struct tls *tl, const sp_db_conf_t *db, const char *s, size_t n,
		     struct shape *sh, const struct lexer *lx, sp_plan_t *p)
{
	int k = 0, lifted = 0;

	if (lx->bad || lx->ns != 1 || lx->s[0].comment || p->nolift || p->has_error)
		return;
	for (int i = 0; i < lx->nt; i++) {
		const struct tok *t = &lx->t[i];
		if (t->type == T_XSTRING || t->type == T_DOLLAR)
			return;
		if (t->type != T_NUMBER && t->type != T_STRING)
			continue;
		struct slot *sl = &sh->slot[k];
		if (k >= sh->nslots || sl->at != t->start || sl->len != t->len ||
		    !(sl->flags & SLOT_STRING) != (t->type == T_NUMBER))
			return;
		if (t->lift == LIFT_LITERAL) {
			sl->flags |= SLOT_LIFT;
			lifted++;
			if (i > 0 && lx->t[i - 1].lift == LIFT_SIGN) {
				uint32_t d = t->start - lx->t[i - 1].start;
				if (d > UINT16_MAX)
					return;
				sl->sign = (uint16_t)d;
			}
		}
		k++;
	}
	if (k != sh->nslots || lifted != lx->nl)
		return;
	if (!tl->memo && !(tl->memo = calloc(MEMO_ENTRIES, sizeof(*tl->memo))))
		return;
	struct memo_ent *e = &tl->memo[sh->hash & (MEMO_ENTRIES - 1)];
	size_t sz = (size_t)sh->nslots * sizeof(struct slot);
	char *mem = malloc(sz + n + 1);
	if (!mem)
		return;
	memo_clear(e);
	e->slot = (struct slot *)(void *)mem;
	memcpy(e->slot, sh->slot, sz);
	e->text = mem + sz;
	memcpy(e->text, s, n);
	e->text[n] = '\0';
	e->hash = sh->hash;
	e->db = db;
	e->epoch = atomic_load_explicit(&memo_epoch, memory_order_relaxed);
	e->nslots = sh->nslots;
	e->max_param = sh->max_param;
	e->len = (uint32_t)n;
	sp_plan_ref(p);
	e->plan = p;
}

/*
 * The shard of the entry's key for text s with slots sh: an integer key's slot read as
 * a decimal integer, a text, varchar or uuid key's '...' read with the type's input.
 * -1 when the fast route cannot tell (a fraction, an exponent, too many digits, a
 * value outside the key's type or every range, a doubled quote, a text key while
 * client_encoding is not UTF8): the generic route answers.
 */
static int fast_shard(const struct memo_ent *e, const sp_db_conf_t *db,
		      const sp_router_session_t *sess, const char *s, const struct shape *sh)
{
	const struct slot *sl = &sh->slot[e->fast_slot];
	const sp_table_conf_t *tc = e->fast_tc;
	sp_key_type_t type = tc->key_types[0];
	sp_shard_value_t pv;
	const char *state = NULL;
	char err[300];

	if (is_int_type(type)) {
		int64_t v = 0;
		if (sl->len == 0 || sl->len > 18)
			return -1;
		for (uint32_t i = 0; i < sl->len; i++) {
			char c = s[sl->at + i];
			if (!is_digit(c))
				return -1;
			v = v * 10 + (c - '0');
		}
		if (!int_fits(type, v))
			return -1;
		pv.i = v;
	} else {
		const char *v = s + sl->at + 1;
		size_t n = sl->len - 2; /* a '...' slot: at least the two quotes */
		if (sl->len < 2 || memchr(v, '\'', n) ||
		    (sess->enc_other && (type == SP_KEY_TEXT || type == SP_KEY_VARCHAR)) ||
		    sp_shard_value_from_text(type, v, n, &pv, err, sizeof(err)) != SP_SHARD_OK)
			return -1;
	}
	int shard = shard_of_parsed(db, tc, &pv, NULL, err, sizeof(err), &state);
	return shard >= 0 ? shard : -1;
}

/*
 * After the generic route of a memo hit gave out: can the entry route later hits by
 * their key alone? Only when its plan is one SELECT, UPDATE (not of the key) or DELETE
 * of one table with a one-column key, pinned to one lifted literal, and the generic route
 * of this text went to exactly the shard the fast route finds, with no session setting
 * in play. Anything else is routed the generic way.
 */
static void fast_compile(struct memo_ent *e, const sp_db_conf_t *db, const struct rctx *rc,
			 const char *s, const struct shape *sh, const sp_target_t *out)
{
	const sp_plan_t *p = e->plan;
	const sp_stmt_t *st;
	const sp_table_ref_t *tr;
	const sp_table_conf_t *tc;
	const sp_value_t *v;
	int lit, k, seen = 0;

	if (e->fast != FAST_UNTRIED)
		return;
	if (rc->sess->role || rc->sess->local_role)
		return; /* not now: the session decides the role */
	e->fast = FAST_NO;
	if (p->n_stmts != 1 || p->has_error || p->nolift || out->txnop != SP_TXNOP_NONE ||
	    out->listen || out->session_changed || out->read_only)
		return;
	st = &p->stmts[0];
	if (db->n_shards <= 1) {
		/* route_stmt() only classifies these: no value plays a part */
		if ((st->kind != SP_STMT_SELECT && st->kind != SP_STMT_INSERT &&
		     st->kind != SP_STMT_UPDATE && st->kind != SP_STMT_DELETE) ||
		    out->kind != SP_TARGET_ANY)
			return;
		e->fast_any = true;
		e->fast_write = out->write;
		e->fast_read = out->read;
		e->fast = FAST_YES;
		return;
	}
	if ((st->kind != SP_STMT_SELECT && st->kind != SP_STMT_UPDATE &&
	     st->kind != SP_STMT_DELETE) ||
	    st->n_tables != 1 || st->route == SP_ROUTE_UNPINNED)
		return;
	tr = &st->tables[0];
	tc = tr->conf;
	if (!is_sharded_conf(tc) || tc->replicated || tc->n_keys != 1 || tr->key_assigned ||
	    tr->keys.state != SP_PIN_SET || tr->keys.n_tuples != 1 || tr->keys.n_keys != 1)
		return;
	v = &tr->keys.values[0];
	if (v->kind != SP_VAL_PARAM || v->array || v->cast || v->param <= e->max_param)
		return;
	lit = v->param - e->max_param - 1; /* the lifted literal's index */
	for (k = 0; k < e->nslots; k++) {
		if (!(e->slot[k].flags & SLOT_LIFT))
			continue;
		if (seen++ == lit)
			break;
	}
	/* an integer key by a number, another key type by a string */
	if (k >= e->nslots || e->slot[k].sign || k > UINT8_MAX ||
	    !(e->slot[k].flags & SLOT_STRING) != is_int_type(tc->key_types[0]))
		return;
	e->fast_slot = (uint8_t)k;
	e->fast_tc = tc;
	if (out->kind != SP_TARGET_SHARD || fast_shard(e, db, rc->sess, s, sh) != out->shard)
		return;
	e->fast_write = out->write;
	e->fast_read = out->read;
	e->fast = FAST_YES;
}

/* Route s by entry e's compiled route into out; false: route it the generic way. */
static bool fast_route(const struct memo_ent *e, const sp_db_conf_t *db,
		       const sp_router_session_t *sess, const char *s, const struct shape *sh,
		       int in_txn, sp_target_t *out)
{
	int shard = -1;

	if (sess->role || sess->local_role)
		return false;
	if (!e->fast_any &&
	    ((shard = fast_shard(e, db, sess, s, sh)) < 0 || (in_txn >= 0 && shard != in_txn)))
		return false;
	sp_router_target_init(out);
	if (!e->fast_any) {
		out->kind = SP_TARGET_SHARD;
		out->shard = shard;
	}
	out->write = e->fast_write;
	out->read = e->fast_read;
	return true;
}

/* ------------------------------------------------------------------ entry points */

void sp_router_set_max_query_size(size_t bytes)
{
	atomic_store_explicit(&max_query_size, bytes, memory_order_relaxed);
}

size_t sp_router_max_query_size(void)
{
	return atomic_load_explicit(&max_query_size, memory_order_relaxed);
}

#if defined(__GLIBC__)
static atomic_size_t rss_after_trim; /* bytes; 0 before the first trim */

/* The resident size of the process in bytes, 0 if unknown. */
static size_t rss_now(void)
{
	char buf[96];
	unsigned long pages, resident;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%lu %lu", &pages, &resident) != 2)
		return 0;
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

/* After a large analysis: its parse tree is freed, now unmap it (glibc keeps it otherwise). */
static void give_back_memory(void)
{
#if defined(__GLIBC__)
	size_t rss = rss_now(), base = atomic_load_explicit(&rss_after_trim, memory_order_relaxed);
	if (rss && base && rss < base + TRIM_SLACK_BYTES)
		return;
	malloc_trim(0);
	atomic_store_explicit(&rss_after_trim, rss_now(), memory_order_relaxed);
#endif
}

void sp_router_session_init(sp_router_session_t *s)
{
	memset(s, 0, sizeof(*s));
	s->shard = -1;
	s->local_shard = -1;
}

void sp_router_session_set_client_encoding(sp_router_session_t *s, const char *name)
{
	s->enc_startup_other = name && name[0] && !utf8_name(name, true);
	s->enc_other = s->enc_startup_other;
}

void sp_router_session_note_client_encoding(sp_router_session_t *s, const char *name)
{
	s->enc_other = name && name[0] && !utf8_name(name, true);
}

static const char *nul_copy(struct tls *tl, const char *s, size_t n)
{
	if (!growz(&tl->copy, &tl->copy_cap, n + 1))
		return NULL;
	memcpy(tl->copy, s, n);
	tl->copy[n] = '\0';
	return tl->copy;
}

static void count(uint64_t *c)
{
	pthread_mutex_lock(&cache_mu);
	(*c)++;
	pthread_mutex_unlock(&cache_mu);
}

/* After lifting, does an ORDER BY / GROUP BY / DISTINCT ON item no longer match its
 * select-list twin? Lifted literals get distinct $n, so "qty * 2" twice stops being equal. */
static bool lifting_hid_targets(const sp_analysis_t *a)
{
	for (int i = 0; i < a->n_stmts; i++) {
		const sp_shape_t *sh = &a->stmts[i].shape;
		if (!sh->valid)
			continue;
		if ((sh->n_sort > 0 && !sh->sort_all_in_target) || (sh->has_group_by && !sh->group_all_in_target))
			return true;
		for (int k = 0; k < sh->n_distinct_on; k++)
			if (sh->distinct_on[k].target == 0)
				return true;
	}
	return false;
}

bool sp_router_query(const sp_db_conf_t *db, sp_router_session_t *sess, const char *sql, size_t len,
		     int in_txn_shard, sp_target_t *out)
{
	struct tls *tl = tls_get();
	struct rctx rc;
	sp_plan_t *p = NULL;
	sp_analysis_t *a = NULL;
	const char *orig;
	bool uses_cols = false, shaped = false, analysed = false;
	struct memo_ent *e = NULL, *memo_e = NULL; /* memo_e: the memo entry that gave p */
	unsigned gen = 0;
	struct shape sh;

	if (!tl) {
		sp_router_target_init(out);
		fail(out, SQLSTATE_OOM, NULL, "out of memory");
		return false;
	}
	memset(&rc, 0, sizeof(rc));
	rc.db = db;
	rc.sess = sess;
	rc.in_txn = in_txn_shard;
	rc.sql = sql;
	rc.lx = &tl->lx;
	rc.tl = tl;
	size_t limit = atomic_load_explicit(&max_query_size, memory_order_relaxed);
	if (limit > 0 && len > limit) {
		/* too costly to parse (and to lex: only the leading comments are read) */
		sp_hints_t hints;
		sp_router_session_t work = *sess;
		rc.lx = NULL;
		rc.sess = &work;
		leading_hints(tl, sql, len, &hints);
		route_oversize(&rc, len, limit, &hints, out);
		tls_trim(tl);
		return true;
	}
	/* the memo: the entry of this client's last simple query first (no scan), else the
	 * entry of the text's shape; a compiled route needs nothing more */
	if (sess->memo_slot > 0 && tl->memo) {
		e = &tl->memo[(sess->memo_slot - 1) & (MEMO_ENTRIES - 1)];
		if (!memo_usable(e, db) || !memo_match(e, sql, len, &sh))
			e = NULL;
	}
	if (!e && (shaped = shape_scan(sql, len, &sh)))
		e = memo_find(tl, db, sql, len, &sh);
	if (e && plan_stale(e->plan)) {
		memo_clear(e);
		e = NULL;
	}
	if (e) {
		sess->memo_slot = (int)(e - tl->memo) + 1;
		if (e->fast == FAST_YES && fast_route(e, db, sess, sql, &sh, in_txn_shard, out)) {
			atomic_fetch_add_explicit(&st_memo_hits, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&st_fast_hits, 1, memory_order_relaxed);
			return true;
		}
		if ((p = memo_fill(tl, e, sql, len, &sh))) {
			memo_e = e;
			rc.lift_base = tl->lx.max_param;
			goto route;
		}
	}
	if (!lex(sql, len, &tl->lx) || !lift(sql, &tl->lx) || !normalise(sql, &tl->lx))
		goto oom;
	rc.lift_base = tl->lx.max_param;
	uint64_t h = key_hash(db, NS_QUERY, tl->lx.norm, tl->lx.nn);
	p = cache_get(db, NS_QUERY, tl->lx.norm, tl->lx.nn, h);
	if (p && p->nolift) {
		sp_plan_unref(p);
		p = NULL;
		count(&st_no_lift);
		analysed = true;
		if (!(orig = nul_copy(tl, sql, len)) ||
		    !(a = analyze(db, orig, true, &uses_cols, &gen)))
			goto oom;
		rc.lift_base = INT_MAX;
	} else if (!p) {
		count(&st_misses);
		analysed = true;
		if (!(a = analyze(db, tl->lx.norm, tl->lx.nl == 0, &uses_cols, &gen)))
			goto oom;
		if (tl->lx.nl > 0 && (a->has_error || lifting_hid_targets(a))) {
			/* lifting broke it (a typed literal), or made equal expressions look
			 * different (ORDER BY qty * 2 with qty * 2 selected: $1 vs $2):
			 * analyse the text as written */
			sp_analysis_t *b;
			if (!(orig = nul_copy(tl, sql, len)) ||
			    !(b = analyze(db, orig, true, &uses_cols, &gen)))
				goto oom;
			sp_analysis_free(a);
			a = b;
			rc.lift_base = INT_MAX;
			count(&st_no_lift);
			sp_plan_t *np = plan_new(db, NS_QUERY, tl->lx.norm, tl->lx.nn, h);
			if (np) {
				np->nolift = true;
				cache_put(np);
				sp_plan_unref(np);
			}
		} else if ((p = plan_new(db, NS_QUERY, tl->lx.norm, tl->lx.nn, h))) {
			p->uses_cols = uses_cols;
			p->cols_gen = gen;
			if (plan_fill(p, a)) {
				cache_put(p);
				sp_analysis_free(a);
				a = NULL;
			} else {
				sp_plan_unref(p);
				p = NULL;
			}
		}
	}
	if (p && shaped) {
		memo_put(tl, db, sql, len, &sh, &tl->lx, p);
		if (tl->memo && tl->memo[sh.hash & (MEMO_ENTRIES - 1)].plan == p)
			sess->memo_slot = (int)(sh.hash & (MEMO_ENTRIES - 1)) + 1;
	}
route:
	if (p)
		route_all(&rc, p->stmts, p->n_stmts, p->has_error, out);
	else
		route_all(&rc, a->stmts, a->n_stmts, a->has_error, out);
	if (memo_e) {
		fast_compile(memo_e, db, &rc, sql, &sh, out);
		sess->memo_slot = (int)(memo_e - tl->memo) + 1;
	}
	sp_plan_unref(p);
	sp_analysis_free(a);
	if (!memo_e)
		tls_trim(tl);
	if (analysed && len >= TRIM_AFTER_BYTES)
		give_back_memory();
	return true;
oom:
	sp_analysis_free(a);
	if (analysed && len >= TRIM_AFTER_BYTES)
		give_back_memory();
	sp_router_target_init(out); /* route_all inits it on every other path */
	fail(out, SQLSTATE_OOM, NULL, "out of memory");
	return false;
}

sp_plan_t *sp_router_prepare(const sp_db_conf_t *db, const char *sql, size_t len)
{
	struct tls *tl = tls_get();
	size_t limit = atomic_load_explicit(&max_query_size, memory_order_relaxed);
	uint64_t h;
	sp_plan_t *p;
	const char *copy;
	sp_analysis_t *a;
	bool uses_cols = false;
	unsigned gen = 0;

	if (limit > 0 && len > limit) {
		/* not analysed, not cached: a plan of its leading hints (route_oversize) */
		if (!tl || !(p = plan_new(db, NS_PARSE, "", 0, 0)))
			return NULL;
		p->oversize = len;
		p->oversize_limit = limit;
		leading_hints(tl, sql, len, &p->hints);
		tls_trim(tl);
		return p;
	}
	h = key_hash(db, NS_PARSE, sql, len);
	if ((p = cache_get(db, NS_PARSE, sql, len, h)))
		return p;
	count(&st_misses);
	if (!tl || !(copy = nul_copy(tl, sql, len)))
		return NULL;
	a = analyze(db, copy, true, &uses_cols, &gen);
	if (!a) {
		if (len >= TRIM_AFTER_BYTES)
			give_back_memory();
		return NULL;
	}
	p = plan_new(db, NS_PARSE, sql, len, h);
	if (p) {
		p->uses_cols = uses_cols;
		p->cols_gen = gen;
	}
	if (p && !plan_fill(p, a)) {
		sp_plan_unref(p);
		p = NULL;
	}
	sp_analysis_free(a);
	if (p)
		cache_put(p);
	if (len >= TRIM_AFTER_BYTES)
		give_back_memory();
	return p;
}

bool sp_router_bind(const sp_db_conf_t *db, sp_router_session_t *sess, sp_plan_t *plan, int nparams,
		    const uint8_t *const *values, const int32_t *lens, const int16_t *formats,
		    const uint8_t *ptypes, int nptypes, int in_txn_shard, sp_target_t *out)
{
	struct tls *tl = tls_get();
	struct rctx rc;

	if (!tl || !plan) {
		sp_router_target_init(out);
		fail(out, SQLSTATE_OOM, NULL, "out of memory");
		return false;
	}
	memset(&rc, 0, sizeof(rc));
	rc.db = db;
	rc.sess = sess;
	rc.in_txn = in_txn_shard;
	rc.tl = tl;
	rc.lift_base = INT_MAX;
	rc.nparams = nparams;
	rc.values = values;
	rc.lens = lens;
	rc.formats = formats;
	rc.ptypes = ptypes;
	rc.nptypes = ptypes ? nptypes : 0;
	rc.ptext = plan->text;
	rc.ptext_len = plan->text_len;
	if (plan->oversize) {
		sp_router_session_t work = *sess;
		rc.sess = &work;
		route_oversize(&rc, plan->oversize, plan->oversize_limit, &plan->hints, out);
		return true;
	}
	if (plan_stale(plan)) {
		/* prepared before the table's column order changed (or became
		 * known): route with a fresh analysis of the same text */
		sp_plan_t *fresh = sp_router_prepare(db, plan->text, plan->text_len);
		if (fresh && fresh->oversize) {
			/* the limit went down meanwhile */
			sp_router_bind(db, sess, fresh, nparams, values, lens, formats, ptypes, nptypes,
				       in_txn_shard, out);
			sp_plan_unref(fresh);
			return true;
		}
		if (fresh) {
			route_all(&rc, fresh->stmts, fresh->n_stmts, fresh->has_error, out);
			sp_plan_unref(fresh);
			return true;
		}
	}
	route_all(&rc, plan->stmts, plan->n_stmts, plan->has_error, out);
	return true;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

int sp_router_renumber_params(const char *sql, sp_buf_t *out, int *used, int max)
{
	struct tls *tl = tls_get();
	struct lexer *lx = tl ? &tl->rlx : NULL;
	size_t n = strlen(sql), pos = 0;
	int k = 0, nu = 0;

	sp_buf_reset(out);
	if (!lx || !lex(sql, n, lx) || lx->bad)
		goto fail;
	for (int i = 0; i < lx->nt; i++) {
		if (lx->t[i].type != T_PARAM)
			continue;
		if (k >= max)
			goto fail;
		used[k++] = atoi(sql + lx->t[i].start + 1);
	}
	qsort(used, (size_t)k, sizeof(int), cmp_int);
	for (int i = 0; i < k; i++)
		if (i == 0 || used[i] != used[nu - 1])
			used[nu++] = used[i];
	for (int i = 0; i < lx->nt; i++) {
		const struct tok *t = &lx->t[i];
		if (t->type != T_PARAM)
			continue;
		int v = atoi(sql + t->start + 1);
		int *hit = bsearch(&v, used, (size_t)nu, sizeof(int), cmp_int);
		char num[16];
		int len = snprintf(num, sizeof(num), "$%d", hit ? (int)(hit - used) + 1 : v);
		if (!sp_buf_append(out, sql + pos, t->start - pos) || !sp_buf_append(out, num, (size_t)len))
			goto fail;
		pos = t->start + t->len;
	}
	lexer_trim(lx);
	if (!sp_buf_append(out, sql + pos, n - pos) || !sp_buf_append(out, "", 1))
		return -1;
	return nu;
fail:
	if (lx)
		lexer_trim(lx);
	return -1;
}
