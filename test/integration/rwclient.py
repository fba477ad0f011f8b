#!/usr/bin/python3
"""rwclient.py - a psycopg client for the read/write split tests (90_rw_split.t,
91_rw_faults.t, 92_ryw.t) and test/bench/rw_bench.sh.

    rwclient.py DSN COMMAND ARGS...

It exists because those tests need the extended protocol with server-side
parameters (psycopg's default cursor: Parse/Bind/Execute with $1), the simple
protocol on the same connection (psycopg's ClientCursor merges parameters
into the text and sends a Query message), and loops that time or count things
per statement, which psql and pgbench do not report. It checks nothing
itself: it prints what happened, one line per answer, and the .t file decides.

Commands (PROTO is "simple", "extended" or "prepared": extended with a named
prepared statement, psycopg's prepare=True):

  ports PROTO N SQL [PARAM]
        Run SQL N times on one connection (autocommit: transaction pooling
        gives every statement its own server). Prints "PORT COUNT" lines for
        the first column of each result, sorted by PORT. PARAM, if given, is
        bound as the statement's only parameter ($1 / %s).
  ryw PROTO N TABLE [PAUSE_READS]
        N times: insert a row (id, tag) into TABLE, then read it back by id on
        the same connection with SELECT inet_server_port(), max(tag) ... WHERE
        id = ... (a miss is a NULL tag).
        Then, if PAUSE_READS > 0, sleeps 1.5 s and reads that many of the rows
        again. Prints "iterations=N misses=M loop_ports=P:C,... pause_ports=P:C,...
        seconds=S" (S: the loop only).
  load SECONDS THREADS SQL
        THREADS threads each run SQL in a loop for SECONDS, reconnecting after
        an error. Prints "ok=N errors=M" and then one line per error:
        "error EPOCH SQLSTATE message" (EPOCH: time.time() when it happened).
  until SECONDS SQL
        Run SQL (simple protocol) every 20 ms, reconnecting after errors, until it
        succeeds or SECONDS pass. Prints "ok EPOCH ERRORS FIRST_COLUMN" (EPOCH:
        time.time() of the success, ERRORS: failed tries before it) or
        "timeout EPOCH ERRORS LAST_ERROR".
  one SQL
        One statement (simple protocol). Prints "ok SECONDS FIRST_COLUMN" or
        "error SECONDS SQLSTATE message"; SECONDS includes connecting.
"""
import sys
import threading
import time

import psycopg


def connect(dsn):
    return psycopg.connect(dsn, autocommit=True)


def run(conn, proto, sql, params=None):
    if proto == "simple":
        cur = psycopg.ClientCursor(conn)
        cur.execute(sql, params)
    elif proto == "prepared":
        cur = conn.cursor()
        cur.execute(sql, params, prepare=True)
    elif proto == "extended":
        cur = conn.cursor()
        cur.execute(sql, params, prepare=False)
    else:
        raise SystemExit("unknown protocol %r" % proto)
    return cur


def portlist(counts):
    return ",".join("%s:%d" % (k, counts[k]) for k in sorted(counts)) or "-"


def cmd_ports(dsn, proto, n, sql, param=None):
    counts = {}
    params = (param,) if param is not None else None
    with connect(dsn) as conn:
        for _ in range(int(n)):
            row = run(conn, proto, sql, params).fetchone()
            key = str(row[0]) if row else "none"
            counts[key] = counts.get(key, 0) + 1
    for k in sorted(counts):
        print(k, counts[k])


def cmd_ryw(dsn, proto, n, table, pause_reads="0"):
    n = int(n)
    base = int(time.time() * 1000) % 1000000000 * 1000
    misses = 0
    loop_ports = {}
    with connect(dsn) as conn:
        t0 = time.monotonic()
        for i in range(n):
            key = base + i
            run(conn, proto, "INSERT INTO %s (id, tag) VALUES (%%s, %%s)" % table, (key, "r%d" % i))
            # an aggregate answers one row even when the row is not there yet
            row = run(conn, proto, "SELECT inet_server_port(), max(tag) FROM %s WHERE id = %%s" % table,
                      (key,)).fetchone()
            if row[1] != "r%d" % i:
                misses += 1
            port = str(row[0])
            loop_ports[port] = loop_ports.get(port, 0) + 1
        secs = time.monotonic() - t0
        pause_ports = {}
        m = int(pause_reads)
        if m > 0:
            time.sleep(1.5)
            for i in range(min(m, n)):
                row = run(conn, proto, "SELECT inet_server_port() FROM %s WHERE id = %%s" % table,
                          (base + i,)).fetchone()
                port = str(row[0]) if row else "miss"
                pause_ports[port] = pause_ports.get(port, 0) + 1
    print("iterations=%d misses=%d loop_ports=%s pause_ports=%s seconds=%.2f"
          % (n, misses, portlist(loop_ports), portlist(pause_ports), secs))


def cmd_load(dsn, seconds, threads, sql):
    seconds = float(seconds)
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    stats = {"ok": 0, "errors": []}

    def worker():
        conn = None
        ok = 0
        errors = []
        while time.monotonic() < stop_at:
            try:
                if conn is None or conn.closed:
                    conn = connect(dsn)
                conn.execute(sql).fetchall()
                ok += 1
            except psycopg.Error as e:
                errors.append((time.time(), getattr(e, "sqlstate", None) or "-",
                               str(e).strip().replace("\n", " ")))
                try:
                    if conn is not None:
                        conn.close()
                except psycopg.Error:
                    pass
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()
        with lock:
            stats["ok"] += ok
            stats["errors"].extend(errors)

    ts = [threading.Thread(target=worker) for _ in range(int(threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("ok=%d errors=%d" % (stats["ok"], len(stats["errors"])))
    for when, state, msg in sorted(stats["errors"]):
        print("error %.3f %s %s" % (when, state, msg))


def cmd_until(dsn, seconds, sql):
    deadline = time.monotonic() + float(seconds)
    conn = None
    errors = 0
    last = ""
    while time.monotonic() < deadline:
        try:
            if conn is None or conn.closed:
                conn = connect(dsn)
            row = run(conn, "simple", sql).fetchone()
            print("ok %.3f %d %s" % (time.time(), errors, row[0] if row else ""))
            conn.close()
            return
        except psycopg.Error as e:
            errors += 1
            last = str(e).strip().replace("\n", " ")
            if conn is not None and conn.closed:
                conn = None
            time.sleep(0.02)
    print("timeout %.3f %d %s" % (time.time(), errors, last))


def cmd_one(dsn, sql):
    t0 = time.monotonic()
    try:
        with connect(dsn) as conn:
            row = run(conn, "simple", sql).fetchone()
        print("ok %.3f %s" % (time.monotonic() - t0, row[0] if row else ""))
    except psycopg.Error as e:
        print("error %.3f %s %s" % (time.monotonic() - t0, getattr(e, "sqlstate", None) or "-",
                                    str(e).strip().replace("\n", " ")))


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    dsn, cmd, args = argv[1], argv[2], argv[3:]
    fn = {"ports": cmd_ports, "ryw": cmd_ryw, "load": cmd_load, "until": cmd_until, "one": cmd_one}.get(cmd)
    if fn is None:
        raise SystemExit("unknown command %r" % cmd)
    fn(dsn, *args)


if __name__ == "__main__":
    main(sys.argv)
