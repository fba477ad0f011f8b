/*
 * fuzzclient.c - a seeded protocol fuzzer for shardpool's integration tests.
 * Each iteration logs in for real (startup, md5 or cleartext or trust), then
 * sends a generated stream of frontend messages: extended-protocol sequences
 * with wrong parameter counts and format codes, unknown statements and
 * portals, Sync storms, Copy messages outside COPY, COPY started and then
 * abandoned, FunctionCall with bad arguments, Query with a NUL inside, long
 * pipelines, and framing mutations (lengths too short, too long, absurd,
 * flipped bytes). The stream goes out in one write, in random chunks or one
 * byte at a time, and ends gracefully (CopyFail, Sync, a marker query whose
 * answer must come back), with a Terminate, or with an abrupt close.
 *
 *   fuzzclient [HOST:]PORT [--seed N] [--iters N] [--from I] [--user U]
 *              [--password P] [--db D]... [--table D:T]... [--timeout MS]
 *              [--connect-db D] [--avoid WHAT,...] [--trace] [--skeleton]
 *
 * Every iteration draws from its own xorshift generator seeded from (seed,
 * iteration), so `--seed S --from I --iters 1 --trace` replays iteration I of
 * a longer run alone and prints the messages it sends. --db names the
 * databases to pick from (default plain), --table D:T the table the SQL uses
 * in database D (int columns id and v; default t for every database).
 * --connect-db names another database at startup (to replay against PostgreSQL
 * directly: the same --db list keeps the same choices). --avoid steers around
 * known shardpool bugs (see avoid_qib below) so a run can still find others.
 * --skeleton prints, per iteration, the answer's shape (message types, SQLSTATEs,
 * command tags), so two servers can be compared on the same seed.
 *
 * Problems, one line each, "PROBLEM iter I seed S: ...": a login that fails, a
 * malformed message from the server, a graceful ending whose marker never
 * comes back although the stream was well framed and the server did not end
 * the session with an error, no progress for --timeout ms (a hang). The last
 * line sums up; the exit status is 1 when there was a problem.
 *
 * Deliberately not here: SCRAM (it needs HMAC and PBKDF2, which this program
 * does not link), TLS, and judging whether an error is the right one (the
 * skeletons are there to compare against PostgreSQL by hand or in a test).
 */
#include "auth_md5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------- options ---------------- */

static const char *host = "127.0.0.1";
static int port;
static uint64_t base_seed = 1;
static long iters = 100, first_iter;
static const char *user = "app";
static const char *connect_db; /* --connect-db: the database named at startup, if not the --db label */
static const char *password = "secret";
static const char *dbs[8];
static const char *tables[8];
static int n_dbs;
static int stall_ms = 10000;
static int trace, skeleton, quiet;
/* --avoid query-in-batch,terminate-in-batch,function-in-batch: on a sharded
 * database, close an extended-protocol batch with Sync before a Query, a Terminate
 * or a FunctionCall (known shardpool bugs: such a Query is never answered; such a
 * Terminate after a fan-out crashes; such a FunctionCall after an error hangs the
 * session) */
static int avoid_qib, avoid_tib, avoid_fib;

/* ---------------- the generator ---------------- */

static uint64_t rs;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 2685821657736338717ULL;
}

static uint32_t below(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

static int chance(int percent)
{
	return (int)below(100) < percent;
}

static uint64_t mix(uint64_t seed, uint64_t iter)
{
	/* splitmix64, so neighbouring seeds and iterations share nothing */
	uint64_t z = seed * 0x9E3779B97F4A7C15ULL + iter + 0x632BE59BD9B4E019ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return z ? z : 1;
}

/* ---------------- byte buffers ---------------- */

typedef struct {
	uint8_t *p;
	size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			fprintf(stderr, "fuzzclient: out of memory\n");
			exit(2);
		}
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put8(buf_t *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put16(buf_t *b, uint16_t v)
{
	v = htons(v);
	put(b, &v, 2);
}

static void put32(buf_t *b, uint32_t v)
{
	v = htonl(v);
	put(b, &v, 4);
}

static void puts0(buf_t *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

static void set32(buf_t *b, size_t at, uint32_t v)
{
	v = htonl(v);
	memcpy(b->p + at, &v, 4);
}

/* ---------------- one iteration's stream ---------------- */

static buf_t st;	/* the bytes to send */
static int framing_bad; /* a mutation the server may fairly answer by closing */
static int sent_terminate;
static int pending_ext; /* extended-protocol messages since the last Sync */
static const char *tbl; /* the table of this iteration's database */
static int sharded;

static void tr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tr(const char *fmt, ...)
{
	va_list ap;
	if (!trace)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "  ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static size_t begin(char type)
{
	size_t at;
	if (((type == 'Q' && avoid_qib) || (type == 'X' && avoid_tib) || (type == 'F' && avoid_fib)) && sharded &&
	    pending_ext) {
		/* a Sync first: see --avoid */
		put8(&st, 'S');
		put32(&st, 4);
		pending_ext = 0;
		tr("Sync (added: --avoid)");
	}
	if (strchr("PBDECH", type))
		pending_ext = 1;
	else if (type == 'S')
		pending_ext = 0;
	put8(&st, (uint8_t)type);
	at = st.n;
	put32(&st, 0);
	return at;
}

/*
 * Close a message: usually with its true length; sometimes (when mutating) with
 * a wrong one. Returns a description of what was done, for the trace.
 */
static const char *end(size_t at, int mutate)
{
	uint32_t len = (uint32_t)(st.n - at);
	if (mutate && chance(15)) {
		framing_bad = 1;
		switch (below(6)) {
		case 0:
			set32(&st, at, len + 1 + below(64));
			return "length too long";
		case 1:
			set32(&st, at, len > 4 ? len - 1 - below(len - 4) : 3);
			return "length too short";
		case 2:
			set32(&st, at, below(4));
			return "length below 4";
		case 3:
			set32(&st, at, 0x7fffffff - below(16));
			return "length absurd";
		case 4:
			set32(&st, at, len);
			if (st.n - at > 4) {
				size_t i = at + 4 + below((uint32_t)(st.n - at - 4));
				st.p[i] ^= (uint8_t)(1 + below(255));
			}
			return "a body byte flipped";
		default:
			/* cut the body: the length stays, the bytes stop early */
			set32(&st, at, len);
			if (st.n - at > 4)
				st.n -= 1 + below((uint32_t)(st.n - at - 4));
			return "body cut short";
		}
	}
	set32(&st, at, len);
	return "";
}

static const char *stmt_name(void)
{
	static const char *const names[] = {"", "", "s1", "s2", "s1", "fz_stmt", "no_such_stmt", "S",
					    "a_name_that_is_longer_than_sixty_three_bytes_which_postgres_would_truncate_xx"};
	return names[below(sizeof(names) / sizeof(names[0]))];
}

static const char *portal_name(void)
{
	static const char *const names[] = {"", "", "p1", "p2", "no_such_portal"};
	return names[below(sizeof(names) / sizeof(names[0]))];
}

/* SQL for this iteration's database; T stands for the table */
static const char *const plain_sql[] = {
	"SELECT 1", "SELECT $1::int", "SELECT $1::text, $2::int", "SELECT $1", "BEGIN", "COMMIT",
	"ROLLBACK", "SELECT 1/0", "SAVEPOINT sp", "RELEASE sp", "ROLLBACK TO sp",
	"INSERT INTO T (id, v) VALUES ($1, $2)", "INSERT INTO T (id, v) VALUES (7, 7)",
	"SELECT * FROM T ORDER BY id LIMIT 5", "UPDATE T SET v = v + 1 WHERE id = $1",
	"DELETE FROM T WHERE id = $1", "SET application_name = 'fuzz'", "SET statement_timeout = 0",
	"RESET ALL", "DEALLOCATE ALL", "DEALLOCATE s1", "DISCARD ALL", "PREPARE q AS SELECT 1",
	"EXECUTE q", "COPY T FROM STDIN", "COPY T TO STDOUT", "COPY (SELECT 1) TO STDOUT",
	"SELECT generate_series(1, 300)", "LISTEN fz", "SELECT pg_sleep(0.01)", "syntax error here", "",
	";", "SELECT 1; SELECT 2", "BEGIN; SELECT 1", "SELECT 1; COMMIT", "SET LOCAL fz.x = 1",
	"SELECT set_config('fz.y', 'z', false)", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
	"FETCH c", "CLOSE c", "SELECT txid_current()", "LOCK TABLE T", "SELECT $1::int + $2::int",
	"SELECT * FROM no_such_table", "BEGIN ISOLATION LEVEL SERIALIZABLE", "END", "ABORT",
	"SHOW application_name"};
static const char *const shard_sql[] = {
	"SELECT * FROM T", "SELECT * FROM T ORDER BY id", "SELECT * FROM T ORDER BY v DESC, id LIMIT 3",
	"SELECT count(*), sum(v), min(id), max(id) FROM T", "SELECT v, count(*) FROM T GROUP BY v",
	"SELECT v, count(*) FROM T GROUP BY v ORDER BY v", "SELECT avg(v) FROM T",
	"SELECT * FROM T WHERE id = $1", "SELECT * FROM T WHERE id = 3", "SELECT * FROM T WHERE id IN (1, 2, 3)",
	"INSERT INTO T (id, v) VALUES ($1, $2)", "INSERT INTO T (id, v) VALUES (11, 1)",
	"UPDATE T SET v = v + 1 WHERE id = $1", "DELETE FROM T WHERE id = $1", "UPDATE T SET v = 0",
	"COPY T FROM STDIN", "COPY T (id, v) FROM STDIN (FORMAT csv)", "COPY T TO STDOUT",
	"COPY T FROM STDIN (FORMAT binary)", "SELECT count(*) FROM T WHERE v > $1",
	"SELECT DISTINCT v FROM T", "SELECT * FROM T ORDER BY id LIMIT 2 OFFSET 1", "BEGIN", "COMMIT",
	"ROLLBACK", "SELECT 1", "SELECT * FROM T WHERE id = 1; SELECT * FROM T WHERE id = 2",
	"SELECT * FROM T t1 JOIN T t2 ON t1.v = t2.v", "SELECT 1/0 FROM T",
	/* rewritten per shard at Bind, split over shards at Bind */
	"SELECT * FROM T ORDER BY id LIMIT $1 OFFSET $2", "SELECT v, avg(id) FROM T GROUP BY v ORDER BY v LIMIT $1",
	"INSERT INTO T (id, v) VALUES ($1, $2), ($2, $1)", "SELECT avg(v), count(*) FROM T WHERE id > $1"};

static char sqlbuf[512];

static const char *gen_sql(void)
{
	const char *s;
	char *o = sqlbuf;
	if (sharded && chance(75))
		s = shard_sql[below(sizeof(shard_sql) / sizeof(shard_sql[0]))];
	else
		s = plain_sql[below(sizeof(plain_sql) / sizeof(plain_sql[0]))];
	/* replace the table placeholder: a T standing alone as a word */
	for (size_t i = 0; s[i] && o < sqlbuf + sizeof(sqlbuf) - 64; i++) {
		if (s[i] == 'T' && i > 0 && s[i - 1] == ' ' && (s[i + 1] == 0 || s[i + 1] == ' ' || s[i + 1] == ';')) {
			o += snprintf(o, 64, "%s", tbl);
			continue;
		}
		*o++ = s[i];
	}
	*o = 0;
	return sqlbuf;
}

static void gen_value(buf_t *b, int16_t fmt)
{
	uint32_t k = below(10);
	char v[32];
	if (k == 0) {
		put32(b, 0xffffffff); /* NULL */
	} else if (k == 1) {
		uint32_t n = below(12);
		put32(b, n);
		for (uint32_t i = 0; i < n; i++)
			put8(b, (uint8_t)rnd());
	} else if (fmt == 1 || k == 2) {
		put32(b, 4);
		put32(b, below(1000));
	} else {
		int n = snprintf(v, sizeof(v), "%u", below(1000));
		put32(b, (uint32_t)n);
		put(b, v, (size_t)n);
	}
}

static int16_t gen_format(void)
{
	static const int16_t f[] = {0, 0, 0, 1, 1, 2, -1, 7};
	return f[below(8)];
}

static void m_query(int mutate)
{
	size_t at = begin('Q');
	const char *sql = gen_sql();
	const char *how;
	if (chance(5)) {
		/* a NUL in the middle, then more text */
		put(&st, sql, strlen(sql));
		put8(&st, 0);
		puts0(&st, "SELECT 'after the nul'");
		how = end(at, mutate);
		tr("Query \"%s\\0SELECT 'after the nul'\" %s", sql, how);
		return;
	}
	puts0(&st, sql);
	how = end(at, mutate);
	tr("Query \"%s\" %s", sql, how);
}

static void m_parse(int mutate)
{
	size_t at = begin('P');
	const char *name = stmt_name(), *sql = gen_sql(), *how;
	uint16_t n = (uint16_t)(chance(70) ? below(3) : below(40));
	puts0(&st, name);
	puts0(&st, sql);
	put16(&st, n);
	for (uint16_t i = 0; i < n; i++) {
		static const uint32_t oids[] = {0, 23, 25, 20, 16, 99999, 0xffffffff};
		put32(&st, oids[below(7)]);
	}
	how = end(at, mutate);
	tr("Parse \"%s\" \"%s\" %u types %s", name, sql, n, how);
}

static void m_bind(int mutate)
{
	size_t at = begin('B');
	const char *portal = portal_name(), *name = stmt_name(), *how;
	uint16_t nf = (uint16_t)below(4), np = (uint16_t)(chance(80) ? below(3) : below(20)), nr;
	int16_t f0 = 0;
	puts0(&st, portal);
	puts0(&st, name);
	put16(&st, nf);
	for (uint16_t i = 0; i < nf; i++) {
		int16_t f = gen_format();
		if (i == 0)
			f0 = f;
		put16(&st, (uint16_t)f);
	}
	put16(&st, np);
	for (uint16_t i = 0; i < np; i++)
		gen_value(&st, f0);
	nr = (uint16_t)(chance(70) ? below(2) : below(5));
	put16(&st, nr);
	for (uint16_t i = 0; i < nr; i++)
		put16(&st, (uint16_t)gen_format());
	how = end(at, mutate);
	tr("Bind \"%s\" \"%s\" %u formats (first %d) %u params %u result formats %s", portal, name, nf, f0, np,
	   nr, how);
}

static void m_describe_close(char type, int mutate)
{
	size_t at = begin(type);
	char kind = chance(45) ? 'S' : chance(90) ? 'P' : 'X';
	const char *name = kind == 'S' ? stmt_name() : portal_name(), *how;
	put8(&st, (uint8_t)kind);
	puts0(&st, name);
	how = end(at, mutate);
	tr("%s %c \"%s\" %s", type == 'D' ? "Describe" : "Close", kind, name, how);
}

static void m_execute(int mutate)
{
	size_t at = begin('E');
	const char *portal = portal_name(), *how;
	uint32_t rows = chance(60) ? 0 : chance(70) ? 1 + below(3) : (uint32_t)rnd();
	puts0(&st, portal);
	put32(&st, rows);
	how = end(at, mutate);
	tr("Execute \"%s\" %d rows %s", portal, (int32_t)rows, how);
}

static void m_empty(char type, int mutate)
{
	size_t at = begin(type);
	const char *how = end(at, mutate);
	if (type == 'X')
		sent_terminate = 1;
	tr("%s %s", type == 'S' ? "Sync" : type == 'H' ? "Flush" : type == 'c' ? "CopyDone" : "Terminate", how);
}

static void m_copydata(int mutate)
{
	size_t at = begin('d');
	const char *how;
	uint32_t k = below(5);
	if (k == 0) {
		uint32_t n = below(200);
		for (uint32_t i = 0; i < n; i++)
			put8(&st, (uint8_t)rnd());
	} else if (k == 1) {
		put(&st, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
	} else {
		char row[64];
		int n = snprintf(row, sizeof(row), k == 2 ? "%u,%u\n" : "%u\t%u\n", below(1000), below(100));
		put(&st, row, (size_t)n);
		if (chance(20))
			put(&st, "\\.\n", 3);
	}
	how = end(at, mutate);
	tr("CopyData (kind %u) %s", k, how);
}

static void m_copyfail(int mutate)
{
	size_t at = begin('f');
	const char *how;
	puts0(&st, "fuzz says no");
	how = end(at, mutate);
	tr("CopyFail %s", how);
}

static void m_function(int mutate)
{
	static const uint32_t fns[] = {177 /* int4pl */, 1299 /* now */, 0, 99999999, 2050};
	size_t at = begin('F');
	uint32_t fn = fns[below(5)];
	uint16_t nf = (uint16_t)below(3), na = (uint16_t)below(4);
	const char *how;
	put32(&st, fn);
	put16(&st, nf);
	for (uint16_t i = 0; i < nf; i++)
		put16(&st, (uint16_t)gen_format());
	put16(&st, na);
	for (uint16_t i = 0; i < na; i++)
		gen_value(&st, 1);
	put16(&st, (uint16_t)gen_format());
	how = end(at, mutate);
	tr("FunctionCall %u %u formats %u args %s", fn, nf, na, how);
}

static void m_garbage(void)
{
	uint32_t k = below(4), n;
	framing_bad = 1;
	if (k == 0) {
		static const char types[] = "zp!\0\377ARKx";
		char t = types[below(sizeof(types) - 1)];
		size_t at = begin(t);
		n = below(20);
		for (uint32_t i = 0; i < n; i++)
			put8(&st, (uint8_t)rnd());
		end(at, 0);
		tr("message of type %d, %u bytes", (int)(unsigned char)t, n);
	} else if (k == 1) {
		n = 1 + below(300);
		for (uint32_t i = 0; i < n; i++)
			put8(&st, (uint8_t)rnd());
		tr("%u random bytes", n);
	} else if (k == 2) {
		/* a header only, claiming a big body that never comes */
		put8(&st, (uint8_t)"QPBd"[below(4)]);
		put32(&st, 100 + below(100000));
		tr("a header claiming a body that never comes");
	} else {
		/* a second startup packet after login */
		size_t at = st.n;
		put32(&st, 0);
		put32(&st, 196608);
		puts0(&st, "user");
		puts0(&st, user);
		put8(&st, 0);
		set32(&st, at, (uint32_t)(st.n - at));
		tr("a startup packet after login");
	}
}

/* an extended-protocol sequence that makes sense, to be mutated around */
static void m_extended(int mutate)
{
	m_parse(mutate);
	if (chance(80))
		m_bind(mutate);
	if (chance(50))
		m_describe_close('D', mutate);
	if (chance(80))
		m_execute(mutate);
	if (chance(85))
		m_empty('S', mutate);
}

static void m_copy_session(int mutate)
{
	size_t at = begin('Q');
	char q[128];
	uint32_t n = below(8);
	snprintf(q, sizeof(q), chance(50) ? "COPY %s FROM STDIN" : "COPY %s (id, v) FROM STDIN (FORMAT csv)", tbl);
	puts0(&st, q);
	end(at, 0);
	tr("Query \"%s\"", q);
	for (uint32_t i = 0; i < n; i++)
		m_copydata(mutate);
	switch (below(6)) {
	case 0:
		m_empty('c', mutate);
		break;
	case 1:
		m_copyfail(mutate);
		break;
	case 2:
		m_empty('S', mutate); /* Sync in the middle of COPY */
		break;
	case 3:
		m_query(mutate); /* a Query in the middle of COPY */
		break;
	default:
		break; /* nothing: the ending decides */
	}
}

static void gen_stream(void)
{
	int mutate = chance(35);
	uint32_t n = 1 + below(chance(80) ? 12 : 60);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = below(100);
		if (k < 22)
			m_extended(mutate);
		else if (k < 32)
			m_query(mutate);
		else if (k < 40)
			m_parse(mutate);
		else if (k < 47)
			m_bind(mutate);
		else if (k < 52)
			m_execute(mutate);
		else if (k < 57)
			m_describe_close(chance(50) ? 'D' : 'C', mutate);
		else if (k < 63)
			m_empty(chance(75) ? 'S' : 'H', mutate);
		else if (k < 67) {
			uint32_t syncs = 10 + below(500);
			for (uint32_t j = 0; j < syncs; j++) {
				size_t at = begin(chance(90) ? 'S' : 'H');
				end(at, 0);
			}
			tr("%u Sync/Flush messages", syncs);
		} else if (k < 71) {
			if (chance(50))
				m_copydata(mutate);
			else if (chance(50))
				m_empty('c', mutate);
			else
				m_copyfail(mutate);
		} else if (k < 77) {
			m_copy_session(mutate);
		} else if (k < 80) {
			m_function(mutate);
		} else if (k < 83) {
			uint32_t m = 50 + below(1500), mode = below(3);
			int save = trace;
			trace = 0;
			for (uint32_t j = 0; j < m; j++) {
				if (mode == 0) {
					size_t at = begin('Q');
					puts0(&st, "SELECT 1");
					end(at, 0);
				} else {
					m_extended(0);
				}
			}
			trace = save;
			tr("a pipeline of %u %s", m, mode == 0 ? "Query messages" : "extended sequences");
		} else if (k < 85) {
			m_empty('X', 0);
			if (chance(50))
				break;
		} else if (k < 88) {
			m_garbage();
		} else if (k < 90) {
			/* a password message after login */
			size_t at = begin('p');
			puts0(&st, "secret");
			end(at, 0);
			tr("PasswordMessage after login");
		} else {
			m_extended(mutate);
		}
	}
}

/* ---------------- the connection ---------------- */

static int fd = -1;
static uint8_t in[1 << 20];
static size_t inlen;
static int eof, rst;
static char skel[8192];
static size_t skel_n;
static int got_marker, marker_done, got_fatal, got_error, bad_reply, n_rfq;
/* the last answer was an error saying the server is unavailable (class 08, 57P0x):
 * a PostgreSQL that crashed (or restarts) cannot answer the marker with its row */
static int last_unavailable;
static char bad_what[128];
static long long progress_at;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void skel_add(const char *s)
{
	size_t n = strlen(s);
	if (skel_n + n + 2 >= sizeof(skel))
		return;
	if (skel_n)
		skel[skel_n++] = ' ';
	memcpy(skel + skel_n, s, n);
	skel_n += n;
	skel[skel_n] = 0;
}

static const char *field(const uint8_t *b, size_t len, char f)
{
	size_t i = 0;
	while (i < len && b[i]) {
		char t = (char)b[i++];
		const char *v = (const char *)b + i;
		i += strnlen(v, len - i) + 1;
		if (t == f)
			return v;
	}
	return "";
}

/* one message from the server; sets the iteration's flags */
static void on_message(char type, const uint8_t *b, size_t len)
{
	char w[96];
	switch (type) {
	case 'E':
		got_error = 1;
		last_unavailable = strncmp(field(b, len, 'C'), "08", 2) == 0 || strncmp(field(b, len, 'C'), "57P0", 4) == 0;
		if (strcmp(field(b, len, 'S'), "FATAL") == 0 || strcmp(field(b, len, 'S'), "PANIC") == 0)
			got_fatal = 1;
		snprintf(w, sizeof(w), "E%s", field(b, len, 'C'));
		skel_add(w);
		if (trace)
			fprintf(stderr, "  <- E %s %s %s\n", field(b, len, 'S'), field(b, len, 'C'), field(b, len, 'M'));
		return;
	case 'C': {
		size_t n = strnlen((const char *)b, len);
		const char *sp = memchr(b, ' ', n);
		snprintf(w, sizeof(w), "C%.*s", (int)(sp ? (size_t)(sp - (const char *)b) : n), (const char *)b);
		skel_add(w);
		break;
	}
	case 'Z':
		n_rfq++;
		snprintf(w, sizeof(w), "Z%c", len ? b[0] : '?');
		skel_add(w);
		if (got_marker)
			marker_done = 1;
		break;
	case 'D':
		last_unavailable = 0;
		if (len == 14 && memcmp(b + 6, "fz-ended", 8) == 0)
			got_marker = 1;
		skel_add("D");
		break;
	case 'S':
	case 'K':
	case 'N':
	case 'A':
		break;
	case 'R':
	case 'T':
	case 'I':
	case '1':
	case '2':
	case '3':
	case 't':
	case 'n':
	case 's':
	case 'G':
	case 'H':
	case 'W':
	case 'd':
	case 'c':
	case 'V':
	case 'v':
		w[0] = type;
		w[1] = 0;
		skel_add(w);
		break;
	default:
		bad_reply = 1;
		snprintf(bad_what, sizeof(bad_what), "unknown message type %d from the server", (int)(unsigned char)type);
		break;
	}
	if (trace && type != 'D' && type != 'd')
		fprintf(stderr, "  <- %c\n", type);
}

/* parse whatever whole messages are in the input buffer */
static void parse_in(void)
{
	size_t pos = 0;
	while (!bad_reply && inlen - pos >= 5) {
		uint32_t l;
		memcpy(&l, in + pos + 1, 4);
		l = ntohl(l);
		if (l < 4 || l > (1u << 30)) {
			bad_reply = 1;
			snprintf(bad_what, sizeof(bad_what), "message length %u from the server (type %d)", l, in[pos]);
			return;
		}
		if (l + 1 > sizeof(in)) {
			bad_reply = 1;
			snprintf(bad_what, sizeof(bad_what), "a message of %u bytes (more than this client buffers)", l);
			return;
		}
		if (inlen - pos < l + 1)
			break;
		on_message((char)in[pos], in + pos + 5, l - 4);
		pos += l + 1;
	}
	memmove(in, in + pos, inlen - pos);
	inlen -= pos;
}

static void read_some(void)
{
	ssize_t n = recv(fd, in + inlen, sizeof(in) - inlen, 0);
	if (n > 0) {
		inlen += (size_t)n;
		progress_at = now_ms();
		parse_in();
	} else if (n == 0) {
		eof = 1;
	} else if (errno != EAGAIN && errno != EINTR) {
		eof = 1;
		rst = errno == ECONNRESET;
	}
}

static int open_conn(void)
{
	struct sockaddr_in sa;
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (s < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(s);
		return -1;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	return s;
}

/*
 * Send p[0..n) in chunks of at most `chunk` bytes (0: as much as the socket
 * takes), reading whatever comes back meanwhile. Returns 0 when all was sent,
 * 1 when the server closed, -1 on a stall of stall_ms.
 */
static int pump(const uint8_t *p, size_t n, size_t chunk)
{
	size_t off = 0;
	progress_at = now_ms();
	while (off < n) {
		struct pollfd pfd = {fd, POLLIN | POLLOUT, 0};
		int r = poll(&pfd, 1, 100);
		if (r < 0 && errno != EINTR)
			return 1;
		if (r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
			read_some();
			if (eof || bad_reply)
				return 1;
		}
		if (r > 0 && (pfd.revents & POLLOUT)) {
			size_t k = n - off;
			ssize_t w;
			if (chunk && k > chunk)
				k = chunk;
			w = send(fd, p + off, k, MSG_NOSIGNAL);
			if (w > 0) {
				off += (size_t)w;
				progress_at = now_ms();
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				return 1;
			}
		}
		if (now_ms() - progress_at > stall_ms)
			return -1;
	}
	return 0;
}

/* read until done() or EOF; -1 on a stall */
static int wait_for(int (*done)(void))
{
	progress_at = now_ms();
	while (!eof && !bad_reply && !done()) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int r = poll(&pfd, 1, 100);
		if (r > 0)
			read_some();
		if (now_ms() - progress_at > stall_ms)
			return -1;
	}
	return 0;
}

static int is_marker_done(void)
{
	return marker_done;
}

static int never(void)
{
	return 0;
}

/* ---------------- login ---------------- */


static int login_done, login_failed;
static char login_err[160];

static void send_password(const char *pw, size_t n)
{
	buf_t b = {0};
	put8(&b, 'p');
	put32(&b, (uint32_t)(n + 4));
	put(&b, pw, n);
	pump(b.p, b.n, 0);
	free(b.p);
}

/* the login exchange: read until ReadyForQuery or an error */
static int login(const char *db)
{
	buf_t b = {0};
	size_t pos;
	login_done = login_failed = 0;
	put32(&b, 0);
	put32(&b, 196608);
	puts0(&b, "user");
	puts0(&b, user);
	puts0(&b, "database");
	puts0(&b, db);
	put8(&b, 0);
	set32(&b, 0, (uint32_t)b.n);
	if (pump(b.p, b.n, 0) != 0) {
		free(b.p);
		snprintf(login_err, sizeof(login_err), "sending the startup packet failed");
		return -1;
	}
	free(b.p);
	progress_at = now_ms();
	while (!login_done && !login_failed) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t n;
		if (poll(&pfd, 1, 100) <= 0) {
			if (now_ms() - progress_at > stall_ms) {
				snprintf(login_err, sizeof(login_err), "no answer to the login for %d ms", stall_ms);
				return -1;
			}
			continue;
		}
		n = recv(fd, in + inlen, sizeof(in) - inlen, 0);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			snprintf(login_err, sizeof(login_err), "connection closed during the login");
			return -1;
		}
		progress_at = now_ms();
		inlen += (size_t)n;
		pos = 0;
		while (inlen - pos >= 5 && !login_done && !login_failed) {
			uint32_t l;
			char t = (char)in[pos];
			const uint8_t *body = in + pos + 5;
			memcpy(&l, in + pos + 1, 4);
			l = ntohl(l);
			if (l < 4 || l + 1 > sizeof(in)) {
				snprintf(login_err, sizeof(login_err), "bad length %u during the login", l);
				return -1;
			}
			if (inlen - pos < l + 1)
				break;
			if (t == 'R' && l >= 8) {
				uint32_t code;
				memcpy(&code, body, 4);
				code = ntohl(code);
				if (code == 3) {
					send_password(password, strlen(password) + 1);
				} else if (code == 5 && l >= 12) {
					/* shardpool's own md5 code (src/auth_md5.c) computes the answer */
					char stored[SP_MD5_PASSWD_LEN + 1], resp[SP_MD5_PASSWD_LEN + 1];
					sp_md5_stored(password, user, stored);
					sp_md5_salted(stored, (const uint8_t *)body + 4, resp);
					send_password(resp, SP_MD5_PASSWD_LEN + 1);
				} else if (code != 0) {
					snprintf(login_err, sizeof(login_err), "authentication request %u is not supported", code);
					return -1;
				}
			} else if (t == 'E') {
				snprintf(login_err, sizeof(login_err), "login refused: %s %s", field(body, l - 4, 'C'),
					 field(body, l - 4, 'M'));
				login_failed = 1;
			} else if (t == 'Z') {
				login_done = 1;
			}
			pos += l + 1;
		}
		memmove(in, in + pos, inlen - pos);
		inlen -= pos;
	}
	return login_done ? 0 : -1;
}

/* ---------------- one iteration ---------------- */

static long n_unavailable;
static long n_waits, n_problems, n_graceful, n_closed, n_abrupt, n_term, n_marker, n_server_closed, n_fatal;

static void problem(long it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(long it, const char *fmt, ...)
{
	va_list ap;
	printf("PROBLEM iter %ld seed %llu: ", it, (unsigned long long)base_seed);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (replay: --seed %llu --from %ld --iters 1 --trace)\n", (unsigned long long)base_seed, it);
	fflush(stdout);
	n_problems++;
}

static void iteration(long it)
{
	int di, ending, r;
	size_t chunk = 0, cut;
	const char *db;
	rs = mix(base_seed, (uint64_t)it);
	di = (int)below((uint32_t)n_dbs);
	db = dbs[di];
	tbl = tables[di] ? tables[di] : "t";
	sharded = strcmp(db, "plain") != 0;
	st.n = 0;
	framing_bad = sent_terminate = pending_ext = 0;
	inlen = 0;
	eof = rst = 0;
	skel_n = 0;
	skel[0] = 0;
	got_marker = marker_done = got_fatal = got_error = bad_reply = n_rfq = last_unavailable = 0;

	if (trace)
		fprintf(stderr, "iteration %ld (seed %llu) on database %s, table %s:\n", it,
			(unsigned long long)base_seed, db, tbl);
	gen_stream();
	/* 0 graceful, 1 Terminate, 2 cut anywhere and close, 3 send all and vanish */
	r = (int)below(100);
	ending = r < 60 ? 0 : r < 70 ? 1 : r < 85 ? 2 : 3;
	if (ending == 0) {
		size_t at;
		at = begin('f');
		puts0(&st, "fuzz ends the copy");
		end(at, 0);
		at = begin('S');
		end(at, 0);
		/* out of a failed transaction first, or the marker gets 25P02 */
		at = begin('Q');
		puts0(&st, "ROLLBACK");
		end(at, 0);
		at = begin('Q');
		puts0(&st, "SELECT 'fz-ended'");
		end(at, 0);
		tr("ending: CopyFail, Sync, Query \"ROLLBACK\", Query \"SELECT 'fz-ended'\"");
	} else if (ending == 1) {
		m_empty('X', 0);
	}
	cut = st.n;
	if (ending == 2) {
		cut = below((uint32_t)st.n + 1);
		tr("ending: the connection is closed after %zu of %zu bytes%s", cut, st.n,
		   chance(50) ? ", with a reset" : "");
	} else if (ending == 3) {
		tr("ending: the client vanishes after sending everything");
	}
	switch (below(10)) {
	case 0:
		chunk = 1;
		if (cut > 8192)
			chunk = 7;
		break;
	case 1:
	case 2:
		chunk = 1 + below(64);
		break;
	default:
		chunk = 0;
	}
	tr("%zu bytes, written %s", cut, chunk ? "in small pieces" : "at once");

	fd = open_conn();
	if (fd < 0) {
		problem(it, "cannot connect: %s", strerror(errno));
		return;
	}
	if (login(connect_db ? connect_db : db) != 0) {
		problem(it, "login to %s failed: %s", db, login_err);
		close(fd);
		return;
	}
	r = pump(st.p, cut, chunk);
	if (r < 0) {
		problem(it, "hang: the server took no bytes and sent none for %d ms (%zu bytes of %zu sent)", stall_ms,
			cut, st.n);
	} else if (r == 1 || eof) {
		n_server_closed++;
	}
	if (r >= 0 && !bad_reply) {
		if (ending == 0) {
			n_graceful++;
			if (!eof && wait_for(is_marker_done) < 0) {
				/* a mangled length may leave the server waiting for bytes that never
				 * come, as PostgreSQL would: only a well-framed stream must be answered */
				if (!framing_bad && !last_unavailable)
					problem(it, "hang: no answer to the closing marker query for %d ms%s; last answers: %.200s",
						stall_ms, sent_terminate ? " (nor a close after Terminate)" : "",
						skel_n > 200 ? skel + skel_n - 200 : skel);
				else if (last_unavailable)
					n_unavailable++; /* its answer was "server unavailable": no row to wait for */
				else
					n_waits++;
			} else if (marker_done) {
				n_marker++;
			} else if (!framing_bad && !sent_terminate && !got_fatal) {
				problem(it, "the server closed a well-framed session without a FATAL error; last answers: %.200s",
					skel_n > 200 ? skel + skel_n - 200 : skel);
			}
		} else if (ending == 1) {
			n_term++;
			/* a Terminate must end the session: wait for the close */
			if (wait_for(never) < 0) {
				if (!framing_bad)
					problem(it, "hang: the connection stays open %d ms after Terminate; last answers: %.200s",
						stall_ms, skel_n > 200 ? skel + skel_n - 200 : skel);
				else
					n_waits++;
			}
		} else {
			n_abrupt++;
		}
	}
	if (bad_reply)
		problem(it, "%s", bad_what);
	if (got_fatal)
		n_fatal++;
	if (eof)
		n_closed++;
	if (skeleton)
		printf("skeleton %ld %s%s: %s\n", it, db, framing_bad ? " (framing errors)" : "", skel);
	if (ending == 2 && (rnd() & 1)) {
		struct linger lg = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
	fd = -1;
}

/* ---------------- main ---------------- */

static void usage(void)
{
	fprintf(stderr, "usage: fuzzclient [HOST:]PORT [--seed N] [--iters N] [--from I] [--user U] [--password P]\n"
			"                  [--db D]... [--table D:T]... [--connect-db D] [--avoid WHAT,...]\n"
			"                  [--timeout MS] [--trace] [--skeleton] [--quiet]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	char *colon;
	long long t0;
	if (argc < 2)
		usage();
	colon = strrchr(argv[1], ':');
	if (colon) {
		*colon = 0;
		host = argv[1];
		port = atoi(colon + 1);
	} else {
		port = atoi(argv[1]);
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--trace") == 0) {
			trace = 1;
			continue;
		}
		if (strcmp(a, "--skeleton") == 0) {
			skeleton = 1;
			continue;
		}
		if (strcmp(a, "--quiet") == 0) {
			quiet = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--seed") == 0) {
			base_seed = strtoull(v, NULL, 0);
		} else if (strcmp(a, "--iters") == 0) {
			iters = atol(v);
		} else if (strcmp(a, "--from") == 0) {
			first_iter = atol(v);
		} else if (strcmp(a, "--user") == 0) {
			user = v;
		} else if (strcmp(a, "--password") == 0) {
			password = v;
		} else if (strcmp(a, "--avoid") == 0) {
			avoid_qib |= strstr(v, "query-in-batch") != NULL;
			avoid_tib |= strstr(v, "terminate-in-batch") != NULL;
			avoid_fib |= strstr(v, "function-in-batch") != NULL;
		} else if (strcmp(a, "--connect-db") == 0) {
			connect_db = v;
		} else if (strcmp(a, "--timeout") == 0) {
			stall_ms = atoi(v);
		} else if (strcmp(a, "--db") == 0 && n_dbs < 8) {
			dbs[n_dbs++] = v;
		} else if (strcmp(a, "--table") == 0 && strchr(v, ':')) {
			size_t dl = (size_t)(strchr(v, ':') - v);
			for (int k = 0; k < n_dbs; k++)
				if (strlen(dbs[k]) == dl && strncmp(dbs[k], v, dl) == 0)
					tables[k] = v + dl + 1;
		} else {
			usage();
		}
	}
	if (n_dbs == 0)
		dbs[n_dbs++] = "plain";
	setvbuf(stdout, NULL, _IOLBF, 0);
	t0 = now_ms();
	for (long it = first_iter; it < first_iter + iters; it++)
		iteration(it);
	printf("fuzz seed %llu iterations %ld-%ld in %lld ms: %ld graceful (%ld answered the marker), %ld terminated, "
	       "%ld cut or vanished, %ld closed by the server (%ld after a FATAL), %ld left waiting for bytes after a "
	       "mangled length, %ld marker(s) answered \"server unavailable\", %ld problem(s)\n",
	       (unsigned long long)base_seed, first_iter, first_iter + iters - 1, now_ms() - t0, n_graceful, n_marker,
	       n_term, n_abrupt, n_closed, n_fatal, n_waits, n_unavailable, n_problems);
	(void)quiet;
	(void)n_server_closed;
	free(st.p);
	return n_problems ? 1 : 0;
}
