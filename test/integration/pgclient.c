/*
 * pgclient.c - a libpq client for the integration tests: it exercises the
 * protocol features a pooler must carry (pipelines, named prepared
 * statements, COPY in three formats, FunctionCall, cancel, notices,
 * notifications, huge rows) and prints what came back in a line format the
 * test scripts compare with what PostgreSQL itself answers.
 *
 *   pgclient CONNINFO COMMAND [ARGS...]
 *
 * Every result prints as one line: rows joined by ',' with columns joined by
 * '|' (NULL prints as NULL, no rows as "(none)"), a command tag ("OK" for a
 * result without one, such as PQprepare's), "EMPTY",
 * or "ERROR <sqlstate> <message>". Notices print as "NOTICE <sqlstate>
 * <message>", notifications as "NOTIFY <channel> <payload>". A command that
 * checks values itself prints "ok ..." when every check passed and a
 * "FAIL: ..." line per failed check otherwise, and exits 1.
 *
 * The "script" command reads lines from standard input and drives several
 * named connections, so a test can interleave the transactions of clients
 * that share one server connection in a fixed order.
 *
 * Deliberately not here: assertions about shardpool itself; the .t scripts
 * decide what is right by comparing with PostgreSQL's behaviour.
 */
#include <libpq-fe.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;
static const char *prefix = "";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	printf("%sFAIL: ", prefix);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failures++;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* First line of a message, without the "ERROR:  " decoration libpq adds. */
static const char *one_line(const char *msg, char *buf, size_t len)
{
	size_t n = 0;
	if (!msg)
		msg = "";
	while (*msg == ' ')
		msg++;
	while (msg[n] && msg[n] != '\n' && n + 1 < len)
		n++;
	memcpy(buf, msg, n);
	buf[n] = 0;
	return buf;
}

static void notice_receiver(void *arg, const PGresult *res)
{
	const char *name = arg;
	char line[1024];
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	printf("%s%sNOTICE %s %s\n", name ? name : "", name ? ": " : "", st ? st : "-----",
	       one_line(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), line, sizeof(line)));
	fflush(stdout);
}

static void print_notifies(PGconn *conn, const char *name)
{
	PGnotify *n;
	PQconsumeInput(conn);
	while ((n = PQnotifies(conn)) != NULL) {
		printf("%s%sNOTIFY %s %s\n", name ? name : "", name ? ": " : "", n->relname, n->extra);
		PQfreemem(n);
	}
	fflush(stdout);
}

/* The line for one result; returns 1 for an error result. */
static int print_result(const PGresult *res, PGconn *conn, const char *name)
{
	char line[2048];
	const char *pre = name ? name : "", *sep = name ? ": " : "";
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE: {
		int nr = PQntuples(res), nf = PQnfields(res);
		printf("%s%s", pre, sep);
		if (nr == 0)
			printf("(none)");
		for (int i = 0; i < nr; i++) {
			if (i)
				putchar(',');
			for (int j = 0; j < nf; j++) {
				if (j)
					putchar('|');
				if (PQgetisnull(res, i, j))
					printf("NULL");
				else
					fwrite(PQgetvalue(res, i, j), 1, (size_t)PQgetlength(res, i, j), stdout);
			}
		}
		putchar('\n');
		break;
	}
	case PGRES_COMMAND_OK:
		/* PQprepare and PQdescribePrepared results carry no tag */
		printf("%s%s%s\n", pre, sep, *PQcmdStatus((PGresult *)res) ? PQcmdStatus((PGresult *)res) : "OK");
		break;
	case PGRES_EMPTY_QUERY:
		printf("%s%sEMPTY\n", pre, sep);
		break;
	case PGRES_PIPELINE_SYNC:
		printf("%s%sSYNC\n", pre, sep);
		break;
	case PGRES_PIPELINE_ABORTED:
		printf("%s%sABORTED\n", pre, sep);
		break;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		printf("%s%sCOPY\n", pre, sep);
		break;
	default: {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		printf("%s%sERROR %s %s\n", pre, sep, st ? st : "-----",
		       one_line(m ? m : PQerrorMessage(conn), line, sizeof(line)));
		fflush(stdout);
		return 1;
	}
	}
	fflush(stdout);
	return 0;
}

/* Print every result of what was sent; returns the number of error results. */
static int drain_results(PGconn *conn, const char *name)
{
	PGresult *res;
	int errors = 0;
	while ((res = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		errors += print_result(res, conn, name);
		PQclear(res);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
			break; /* a COPY needs data this command does not have */
	}
	if (PQstatus(conn) == CONNECTION_BAD) {
		char line[1024];
		printf("%s%sCONNECTION LOST %s\n", name ? name : "", name ? ": " : "",
		       one_line(PQerrorMessage(conn), line, sizeof(line)));
		errors++;
	}
	print_notifies(conn, name);
	return errors;
}

static PGconn *connect_or_die(const char *conninfo, const char *name)
{
	PGconn *conn = PQconnectdb(conninfo);
	char line[1024];
	if (PQstatus(conn) != CONNECTION_OK) {
		printf("%s%sCONNFAIL %s\n", name ? name : "", name ? ": " : "",
		       one_line(PQerrorMessage(conn), line, sizeof(line)));
		fflush(stdout);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeReceiver(conn, notice_receiver, (void *)name);
	return conn;
}

static int exec_sql(PGconn *conn, const char *sql, const char *name)
{
	if (!PQsendQuery(conn, sql)) {
		char line[1024];
		printf("%s%sERROR ----- %s\n", name ? name : "", name ? ": " : "",
		       one_line(PQerrorMessage(conn), line, sizeof(line)));
		return 1;
	}
	return drain_results(conn, name);
}

/* One result expected; fails the check and returns NULL on anything else. */
static PGresult *expect(PGconn *conn, PGresult *res, ExecStatusType want, const char *what)
{
	if (!res) {
		fail("%s: no result (%s)", what, PQerrorMessage(conn));
		return NULL;
	}
	if (PQresultStatus(res) != want) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		char line[1024];
		fail("%s: status %s, sqlstate %s: %s", what, PQresStatus(PQresultStatus(res)), st ? st : "-",
		     one_line(PQresultErrorMessage(res), line, sizeof(line)));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* ---------------- pipeline ---------------- */

static int cmd_pipeline(PGconn *conn, int n)
{
	char val[32];
	const char *params[1] = {val};
	int got = 0;
	if (!PQenterPipelineMode(conn)) {
		fail("cannot enter pipeline mode: %s", PQerrorMessage(conn));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		snprintf(val, sizeof(val), "%d", i);
		if (!PQsendQueryParams(conn, "SELECT $1::int * 2, repeat('p', $1::int % 50)", 1, NULL, params, NULL, NULL, 0)) {
			fail("send %d: %s", i, PQerrorMessage(conn));
			return 1;
		}
	}
	if (!PQpipelineSync(conn)) {
		fail("pipeline sync: %s", PQerrorMessage(conn));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		PGresult *res = expect(conn, PQgetResult(conn), PGRES_TUPLES_OK, "pipelined query");
		if (!res)
			return 1;
		if (atoi(PQgetvalue(res, 0, 0)) != 2 * i || PQgetlength(res, 0, 1) != i % 50)
			fail("query %d: got %s and a string of %d", i, PQgetvalue(res, 0, 0), PQgetlength(res, 0, 1));
		else
			got++;
		PQclear(res);
		res = PQgetResult(conn);
		if (res) {
			fail("query %d: more than one result", i);
			PQclear(res);
			return 1;
		}
	}
	{
		PGresult *res = expect(conn, PQgetResult(conn), PGRES_PIPELINE_SYNC, "pipeline sync result");
		PQclear(res);
	}
	if (!PQexitPipelineMode(conn))
		fail("exit pipeline mode: %s", PQerrorMessage(conn));
	if (failures == 0)
		printf("ok %d pipelined results\n", got);
	return failures ? 1 : 0;
}

/*
 * q1 ok, q2 fails, q3 is skipped, Sync; q4 ok, Sync; q5 fails, Sync; q6 ok, Sync.
 * Prints one word per result so the script can compare the sequence.
 */
static int cmd_pipeline_errors(PGconn *conn)
{
	static const char *const qs[] = {"SELECT 1", "SELECT 1/0", "SELECT 3", NULL, "SELECT 4", NULL,
					 "SELECT * FROM no_such_table_xyz", NULL, "SELECT 6", NULL};
	int nsync = 0;
	if (!PQenterPipelineMode(conn)) {
		fail("cannot enter pipeline mode");
		return 1;
	}
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		if (qs[i]) {
			if (!PQsendQueryParams(conn, qs[i], 0, NULL, NULL, NULL, NULL, 0))
				fail("send: %s", PQerrorMessage(conn));
		} else {
			if (!PQpipelineSync(conn))
				fail("sync: %s", PQerrorMessage(conn));
			nsync++;
		}
	}
	while (nsync > 0) {
		PGresult *res = PQgetResult(conn);
		if (!res)
			continue; /* end of one query's results */
		switch (PQresultStatus(res)) {
		case PGRES_TUPLES_OK:
			printf("%s ", PQgetvalue(res, 0, 0));
			break;
		case PGRES_FATAL_ERROR:
			printf("E%s ", PQresultErrorField(res, PG_DIAG_SQLSTATE));
			break;
		case PGRES_PIPELINE_ABORTED:
			printf("skipped ");
			break;
		case PGRES_PIPELINE_SYNC:
			printf("sync ");
			nsync--;
			break;
		default:
			printf("%s ", PQresStatus(PQresultStatus(res)));
			break;
		}
		PQclear(res);
		if (PQstatus(conn) == CONNECTION_BAD) {
			printf("lost\n");
			return 1;
		}
	}
	if (!PQexitPipelineMode(conn))
		fail("exit pipeline mode: %s", PQerrorMessage(conn));
	/* the connection is still usable */
	exec_sql(conn, "SELECT 'after'", NULL);
	return failures ? 1 : 0;
}

/* ---------------- prepared statements ---------------- */

/* NAME prepared as "SELECT $1::int + OFFSET", executed N times with fresh values. */
static int cmd_prepared(PGconn *conn, const char *name, int n, int offset, int describe)
{
	char sql[128], val[32];
	const char *params[1] = {val};
	PGresult *res;
	snprintf(sql, sizeof(sql), "SELECT $1::int + %d AS v, %d AS off", offset, offset);
	res = expect(conn, PQprepare(conn, name, sql, 1, NULL), PGRES_COMMAND_OK, "prepare");
	if (!res)
		return 1;
	PQclear(res);
	for (int i = 0; i < n; i++) {
		snprintf(val, sizeof(val), "%d", i);
		res = expect(conn, PQexecPrepared(conn, name, 1, params, NULL, NULL, 0), PGRES_TUPLES_OK, "execute");
		if (!res)
			return 1;
		if (PQntuples(res) != 1 || atoi(PQgetvalue(res, 0, 0)) != i + offset ||
		    atoi(PQgetvalue(res, 0, 1)) != offset) {
			fail("execution %d of %s: got %s|%s, want %d|%d", i, name, PQgetvalue(res, 0, 0),
			     PQgetvalue(res, 0, 1), i + offset, offset);
			PQclear(res);
			return 1;
		}
		PQclear(res);
		if (describe && i % 100 == 0) {
			res = expect(conn, PQdescribePrepared(conn, name), PGRES_COMMAND_OK, "describe");
			if (!res)
				return 1;
			if (PQnparams(res) != 1 || PQparamtype(res, 0) != 23 || PQnfields(res) != 2 ||
			    strcmp(PQfname(res, 0), "v") != 0 || PQftype(res, 0) != 23)
				fail("describe %s: %d params (type %u), %d fields (%s, type %u)", name, PQnparams(res),
				     PQnparams(res) ? PQparamtype(res, 0) : 0, PQnfields(res),
				     PQnfields(res) ? PQfname(res, 0) : "-", PQnfields(res) ? PQftype(res, 0) : 0);
			PQclear(res);
		}
	}
	if (failures == 0)
		printf("ok %d executions of %s\n", n, name);
	return failures ? 1 : 0;
}

/* Prepare NAME, then prepare it again: PostgreSQL answers 42P05. */
static int cmd_prepare_twice(PGconn *conn, const char *name)
{
	PGresult *res = PQprepare(conn, name, "SELECT 1", 0, NULL);
	print_result(res, conn, NULL);
	PQclear(res);
	res = PQprepare(conn, name, "SELECT 2", 0, NULL);
	print_result(res, conn, NULL);
	PQclear(res);
	res = PQexecPrepared(conn, name, 0, NULL, NULL, NULL, 0);
	print_result(res, conn, NULL);
	PQclear(res);
	return 0;
}

/* ---------------- COPY ---------------- */

static void put_be16(char *p, uint16_t v)
{
	v = htons(v);
	memcpy(p, &v, 2);
}

static void put_be32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

/* COPY TABLE (id int, t text) FROM STDIN in FORMAT (text, csv, binary), N rows. */
static int cmd_copy_in(PGconn *conn, const char *table, const char *format, int n)
{
	char sql[256], row[256];
	PGresult *res;
	int binary = strcmp(format, "binary") == 0;
	snprintf(sql, sizeof(sql), "COPY %s (id, t) FROM STDIN (FORMAT %s)", table, format);
	res = expect(conn, PQexec(conn, sql), PGRES_COPY_IN, "COPY FROM STDIN");
	if (!res)
		return 1;
	PQclear(res);
	if (binary) {
		static const char hdr[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
		PQputCopyData(conn, hdr, 19);
	}
	for (int i = 0; i < n; i++) {
		int len;
		if (binary) {
			char text[64];
			int tl = snprintf(text, sizeof(text), "row %d, \"q\"", i);
			put_be16(row, 2);
			put_be32(row + 2, 4);
			put_be32(row + 6, (uint32_t)i);
			put_be32(row + 10, (uint32_t)tl);
			memcpy(row + 14, text, (size_t)tl);
			len = 14 + tl;
		} else if (strcmp(format, "csv") == 0) {
			len = snprintf(row, sizeof(row), "%d,\"row %d, \"\"q\"\"\"\n", i, i);
		} else {
			len = snprintf(row, sizeof(row), "%d\trow %d, \"q\"\n", i, i);
		}
		if (PQputCopyData(conn, row, len) != 1) {
			fail("PQputCopyData: %s", PQerrorMessage(conn));
			return 1;
		}
	}
	if (binary) {
		char trailer[2];
		put_be16(trailer, 0xffff);
		PQputCopyData(conn, trailer, 2);
	}
	if (PQputCopyEnd(conn, NULL) != 1) {
		fail("PQputCopyEnd: %s", PQerrorMessage(conn));
		return 1;
	}
	res = expect(conn, PQgetResult(conn), PGRES_COMMAND_OK, "COPY end");
	if (!res)
		return 1;
	printf("%s\n", PQcmdStatus(res));
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return failures ? 1 : 0;
}

/* COPY (SQL) TO STDOUT in FORMAT: prints "rows N bytes B". */
static int cmd_copy_out(PGconn *conn, const char *query, const char *format)
{
	char sql[1024];
	PGresult *res;
	long rows = 0, bytes = 0;
	char *buf;
	int n, binary = strcmp(format, "binary") == 0;
	snprintf(sql, sizeof(sql), "COPY (%s) TO STDOUT (FORMAT %s)", query, format);
	res = expect(conn, PQexec(conn, sql), PGRES_COPY_OUT, "COPY TO STDOUT");
	if (!res)
		return 1;
	PQclear(res);
	while ((n = PQgetCopyData(conn, &buf, 0)) > 0) {
		/* libpq hands over one CopyData message at a time: PostgreSQL sends a row per message */
		bytes += n;
		if (binary) {
			/* first message carries the 19-byte header; the last is the -1 trailer */
			int off = rows == 0 && n >= 19 && memcmp(buf, "PGCOPY\n", 7) == 0 ? 19 : 0;
			if (n - off >= 2 && (unsigned char)buf[off] == 0xff && (unsigned char)buf[off + 1] == 0xff)
				;
			else
				rows++;
		} else {
			rows++;
		}
		PQfreemem(buf);
	}
	if (n == -2) {
		fail("PQgetCopyData: %s", PQerrorMessage(conn));
		return 1;
	}
	res = expect(conn, PQgetResult(conn), PGRES_COMMAND_OK, "COPY TO end");
	if (!res)
		return 1;
	printf("rows %ld bytes %ld tag %s\n", rows, bytes, PQcmdStatus(res));
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return failures ? 1 : 0;
}

/* Start COPY FROM STDIN, send a few rows, then vanish without a word. */
static int cmd_copy_die(PGconn *conn, const char *table)
{
	char sql[256];
	PGresult *res;
	snprintf(sql, sizeof(sql), "COPY %s (id, t) FROM STDIN", table);
	res = expect(conn, PQexec(conn, sql), PGRES_COPY_IN, "COPY FROM STDIN");
	if (!res)
		return 1;
	PQclear(res);
	for (int i = 0; i < 100; i++) {
		char row[64];
		int len = snprintf(row, sizeof(row), "%d\tmid-copy\n", i);
		PQputCopyData(conn, row, len);
	}
	PQflush(conn);
	sleep_ms(200);
	printf("vanishing mid-COPY\n");
	fflush(stdout);
	_exit(0);
}

/* ---------------- FunctionCall ---------------- */

static int cmd_fn(PGconn *conn)
{
	PQArgBlock args[2];
	int result = 0, rlen = 0;
	PGresult *res;
	args[0].len = 4;
	args[0].isint = 1;
	args[0].u.integer = 40;
	args[1].len = 4;
	args[1].isint = 1;
	args[1].u.integer = 2;
	/* 177 is int4pl */
	res = PQfn(conn, 177, &result, &rlen, 1, args, 2);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		fail("PQfn(int4pl): %s", PQerrorMessage(conn));
		PQclear(res);
		return 1;
	}
	PQclear(res);
	printf("int4pl(40, 2) = %d (len %d)\n", result, rlen);
	/* 1317 is length(text): a variable-length argument */
	args[0].len = 11;
	args[0].isint = 0;
	args[0].u.ptr = (int *)"hello world";
	res = PQfn(conn, 1317, &result, &rlen, 1, args, 1);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		fail("PQfn(length): %s", PQerrorMessage(conn));
		PQclear(res);
		return 1;
	}
	PQclear(res);
	printf("length('hello world') = %d\n", result);
	/* a function that raises: the error comes back and the connection stays usable */
	args[0].len = 4;
	args[0].isint = 1;
	args[0].u.integer = 1;
	args[1].len = 4;
	args[1].isint = 1;
	args[1].u.integer = 0;
	/* 154 is int4div */
	res = PQfn(conn, 154, &result, &rlen, 1, args, 2);
	printf("int4div(1, 0): %s %s\n", res ? PQresStatus(PQresultStatus(res)) : "no result",
	       res && PQresultErrorField(res, PG_DIAG_SQLSTATE) ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : "");
	PQclear(res);
	exec_sql(conn, "SELECT 'still usable'", NULL);
	return 0;
}

/* ---------------- big values ---------------- */

/* Send SQL, wait DELAY ms before reading, write the first value to FILE, print its length. */
static int cmd_bigrow(PGconn *conn, const char *sql, const char *file, long delay)
{
	PGresult *res;
	FILE *fp;
	double t0 = now_ms();
	if (!PQsendQuery(conn, sql)) {
		fail("send: %s", PQerrorMessage(conn));
		return 1;
	}
	sleep_ms(delay);
	res = expect(conn, PQgetResult(conn), PGRES_TUPLES_OK, "big row");
	if (!res)
		return 1;
	fp = fopen(file, "w");
	if (!fp) {
		fail("cannot write %s", file);
		return 1;
	}
	fwrite(PQgetvalue(res, 0, 0), 1, (size_t)PQgetlength(res, 0, 0), fp);
	fclose(fp);
	printf("length %d in %.0f ms\n", PQgetlength(res, 0, 0), now_ms() - t0);
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return 0;
}

/* INSERT INTO TABLE (t) a BYTES-long parameter made of "0123456789abcdef". */
static int cmd_bigparam(PGconn *conn, const char *table, long bytes)
{
	char sql[256];
	char *val = malloc((size_t)bytes + 1);
	const char *params[1] = {val};
	PGresult *res;
	if (!val) {
		fail("out of memory");
		return 1;
	}
	for (long i = 0; i < bytes; i++)
		val[i] = "0123456789abcdef"[i % 16];
	val[bytes] = 0;
	snprintf(sql, sizeof(sql), "INSERT INTO %s (id, t) VALUES (1, $1)", table);
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	free(val);
	if (print_result(res, conn, NULL)) {
		PQclear(res);
		return 1;
	}
	PQclear(res);
	return 0;
}

/* ---------------- cancel and notifications ---------------- */

static int cmd_cancel(PGconn *conn, const char *sql, long delay)
{
	char err[256];
	double t0;
	PGcancel *cn = PQgetCancel(conn);
	if (!PQsendQuery(conn, sql)) {
		fail("send: %s", PQerrorMessage(conn));
		return 1;
	}
	sleep_ms(delay);
	t0 = now_ms();
	if (!PQcancel(cn, err, sizeof(err)))
		fail("PQcancel: %s", err);
	PQfreeCancel(cn);
	drain_results(conn, NULL);
	printf("answered %.0f ms after the cancel\n", now_ms() - t0);
	exec_sql(conn, "SELECT 'after cancel'", NULL);
	return 0;
}

/* LISTEN CHANNEL, say "listening", print notifications until TIMEOUT ms pass. */
static int cmd_listen(PGconn *conn, const char *channel, long timeout)
{
	char sql[256];
	double end = now_ms() + timeout;
	int got = 0;
	snprintf(sql, sizeof(sql), "LISTEN %s", channel);
	if (exec_sql(conn, sql, NULL))
		return 1;
	printf("listening\n");
	fflush(stdout);
	while (now_ms() < end) {
		struct pollfd pfd = {PQsocket(conn), POLLIN, 0};
		PGnotify *n;
		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			break;
		if (!PQconsumeInput(conn)) {
			printf("CONNECTION LOST %s", PQerrorMessage(conn));
			return 1;
		}
		while ((n = PQnotifies(conn)) != NULL) {
			printf("NOTIFY %s %s\n", n->relname, n->extra);
			fflush(stdout);
			PQfreemem(n);
			got++;
		}
		if (got)
			break;
	}
	if (!got)
		printf("no notification\n");
	return got ? 0 : 1;
}

/* ---------------- script ---------------- */

#define MAX_CONNS 16

static struct {
	char name[32];
	PGconn *conn;
	double sent_at, done_at;
} conns[MAX_CONNS];

static int find_conn(const char *name)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].conn && strcmp(conns[i].name, name) == 0)
			return i;
	printf("%s: no such connection\n", name);
	fflush(stdout);
	return -1;
}

/*
 * Commands, one a line ('#' starts a comment line):
 *   connect NAME CONNINFO     open a connection
 *   exec NAME SQL             run SQL, print every result
 *   prepare NAME STMT SQL     PQprepare (prints OK on success)
 *   execprep NAME STMT [P...] PQexecPrepared with text parameters
 *   params NAME               the reported parameters as libpq knows them
 *   send NAME SQL             send SQL, do not wait
 *   wait NAME                 print the results of what was sent
 *   elapsed NAME             milliseconds between the last send and the end of its wait
 *   cancel NAME               PQcancel for NAME's running query
 *   die NAME                  close NAME's socket without a Terminate message
 *   close NAME                PQfinish
 *   sleep MS
 *   echo TEXT
 */
static int cmd_script(void)
{
	char line[65536];
	int errors = 0;
	while (fgets(line, sizeof(line), stdin)) {
		char *cmd, *name, *rest, *save = NULL;
		int i;
		line[strcspn(line, "\n")] = 0;
		if (!*line || *line == '#')
			continue;
		cmd = strtok_r(line, " ", &save);
		if (strcmp(cmd, "sleep") == 0) {
			sleep_ms(atol(save ? save : "0"));
			continue;
		}
		if (strcmp(cmd, "echo") == 0) {
			printf("%s\n", save ? save : "");
			fflush(stdout);
			continue;
		}
		name = strtok_r(NULL, " ", &save);
		rest = save ? save : "";
		if (!name) {
			printf("bad script line: %s\n", cmd);
			return 2;
		}
		if (strcmp(cmd, "connect") == 0) {
			for (i = 0; i < MAX_CONNS && conns[i].conn; i++)
				;
			if (i == MAX_CONNS)
				return 2;
			snprintf(conns[i].name, sizeof(conns[i].name), "%s", name);
			conns[i].conn = connect_or_die(rest, conns[i].name);
			if (!conns[i].conn)
				errors++;
			continue;
		}
		if ((i = find_conn(name)) < 0) {
			errors++;
			continue;
		}
		if (strcmp(cmd, "exec") == 0) {
			conns[i].sent_at = now_ms();
			errors += exec_sql(conns[i].conn, rest, conns[i].name);
			conns[i].done_at = now_ms();
		} else if (strcmp(cmd, "prepare") == 0) {
			char *stmt = strtok_r(NULL, " ", &save);
			PGresult *res = PQprepare(conns[i].conn, stmt ? stmt : "", save ? save : "", 0, NULL);
			errors += print_result(res, conns[i].conn, conns[i].name);
			PQclear(res);
		} else if (strcmp(cmd, "execprep") == 0) {
			const char *params[16];
			int np = 0;
			char *stmt = strtok_r(NULL, " ", &save), *tok;
			PGresult *res;
			while (np < 16 && (tok = strtok_r(NULL, " ", &save)) != NULL)
				params[np++] = tok;
			res = PQexecPrepared(conns[i].conn, stmt ? stmt : "", np, params, NULL, NULL, 0);
			errors += print_result(res, conns[i].conn, conns[i].name);
			PQclear(res);
		} else if (strcmp(cmd, "params") == 0) {
			/* what libpq believes from ParameterStatus messages */
			static const char *const names[] = {"application_name", "client_encoding", "DateStyle",
							    "IntervalStyle", "TimeZone",
							    "standard_conforming_strings", NULL};
			printf("%s: params", name);
			for (int k = 0; names[k]; k++) {
				const char *v = PQparameterStatus(conns[i].conn, names[k]);
				printf("%s%s", k ? "|" : " ", v ? v : "NULL");
			}
			printf("\n");
		} else if (strcmp(cmd, "send") == 0) {
			conns[i].sent_at = now_ms();
			if (!PQsendQuery(conns[i].conn, rest)) {
				printf("%s: ERROR ----- cannot send\n", name);
				errors++;
			}
		} else if (strcmp(cmd, "wait") == 0) {
			errors += drain_results(conns[i].conn, conns[i].name);
			conns[i].done_at = now_ms();
		} else if (strcmp(cmd, "elapsed") == 0) {
			printf("%s: elapsed %.0f\n", name, conns[i].done_at - conns[i].sent_at);
		} else if (strcmp(cmd, "cancel") == 0) {
			char err[256];
			PGcancel *cn = PQgetCancel(conns[i].conn);
			if (!cn || !PQcancel(cn, err, sizeof(err)))
				printf("%s: cancel failed: %s\n", name, cn ? err : "no cancel key");
			PQfreeCancel(cn);
		} else if (strcmp(cmd, "die") == 0) {
			close(PQsocket(conns[i].conn));
			conns[i].conn = NULL; /* leaked on purpose: PQfinish would send Terminate */
		} else if (strcmp(cmd, "close") == 0) {
			PQfinish(conns[i].conn);
			conns[i].conn = NULL;
		} else {
			printf("bad script command: %s\n", cmd);
			return 2;
		}
		fflush(stdout);
	}
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].conn)
			PQfinish(conns[i].conn);
	return errors ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pgclient script < SCRIPT\n"
		"       pgclient CONNINFO COMMAND [ARGS...]\n"
		"commands: exec SQL... | die SQL... | pipeline N | pipeline-errors | prepared NAME N OFFSET [describe]\n"
		"          prepare-twice NAME | copy-in TABLE FORMAT N | copy-out QUERY FORMAT | copy-die TABLE\n"
		"          fn | bigrow SQL FILE DELAY_MS | bigparam TABLE BYTES | cancel SQL DELAY_MS\n"
		"          listen CHANNEL TIMEOUT_MS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	PGconn *conn;
	const char *cmd;
	int rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "script") == 0)
		return cmd_script();
	if (argc < 3)
		usage();
	cmd = argv[2];
	conn = connect_or_die(argv[1], NULL);
	if (!conn)
		return 2;
	if (strcmp(cmd, "exec") == 0 || strcmp(cmd, "die") == 0) {
		for (int i = 3; i < argc; i++)
			rc |= exec_sql(conn, argv[i], NULL) ? 1 : 0;
		if (strcmp(cmd, "die") == 0) {
			/* as if killed: the kernel closes the socket, no Terminate message */
			fflush(stdout);
			_exit(rc);
		}
	} else if (strcmp(cmd, "pipeline") == 0 && argc == 4) {
		rc = cmd_pipeline(conn, atoi(argv[3]));
	} else if (strcmp(cmd, "pipeline-errors") == 0) {
		rc = cmd_pipeline_errors(conn);
	} else if (strcmp(cmd, "prepared") == 0 && argc >= 6) {
		rc = cmd_prepared(conn, argv[3], atoi(argv[4]), atoi(argv[5]), argc > 6);
	} else if (strcmp(cmd, "prepare-twice") == 0 && argc == 4) {
		rc = cmd_prepare_twice(conn, argv[3]);
	} else if (strcmp(cmd, "copy-in") == 0 && argc == 6) {
		rc = cmd_copy_in(conn, argv[3], argv[4], atoi(argv[5]));
	} else if (strcmp(cmd, "copy-out") == 0 && argc == 5) {
		rc = cmd_copy_out(conn, argv[3], argv[4]);
	} else if (strcmp(cmd, "copy-die") == 0 && argc == 4) {
		rc = cmd_copy_die(conn, argv[3]);
	} else if (strcmp(cmd, "fn") == 0) {
		rc = cmd_fn(conn);
	} else if (strcmp(cmd, "bigrow") == 0 && argc == 6) {
		rc = cmd_bigrow(conn, argv[3], argv[4], atol(argv[5]));
	} else if (strcmp(cmd, "bigparam") == 0 && argc == 5) {
		rc = cmd_bigparam(conn, argv[3], atol(argv[4]));
	} else if (strcmp(cmd, "cancel") == 0 && argc == 5) {
		rc = cmd_cancel(conn, argv[3], atol(argv[4]));
	} else if (strcmp(cmd, "listen") == 0 && argc == 5) {
		rc = cmd_listen(conn, argv[3], atol(argv[4]));
	} else {
		PQfinish(conn);
		usage();
	}
	PQfinish(conn);
	return rc;
}
