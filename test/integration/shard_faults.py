#!/usr/bin/python3
"""shard_faults.py - the client side of 86_shard_faults.t: what a client of a sharded
database sees when a shard's server dies under it or when another client vanishes in
the middle of a batch that spans shards.

    shard_faults.py DSN SHARD0_PORT SHARD1_PORT COMMAND [ARGS...]

DSN reaches shardpool's sharded database "app" (table t86 (id bigint, t text), sharded
by id over two shards); SHARD1_PORT is shard 1's primary, reached directly as user
postgres to terminate backends. Commands:

    vanish-batch K...   one pipeline of INSERTs (the first one slow), Sync, and the
                        process exits without reading an answer
    vanish-mid-statement K, vanish-mid-fanout
                        a 30 s statement on key K's shard / on every shard, and the
                        process exits while it runs
    fanout-kill         a fan-out read while shard 1's backend running it is terminated
    fanout-cancel       a fan-out read cancelled by the client (CancelRequest)
    shard-down K0 K1    shard 1 is stopped: fan-out, a key on shard 0, a key on shard 1
    shard-back          shard 1 is back: fan-outs work again (within 15 s)

Output is run_checks' format (lib.sh): `check<TAB>desc<TAB>got<TAB>expected` per check,
other lines are diagnostics, `end` last.

Deliberately not here: stopping and starting servers (the .t script does that with
pg_ctl) and looking at the shards' contents (the .t script reads them directly).
"""
import os
import sys
import threading
import time

import psycopg

DSN, SHARD0_PORT, SHARD1_PORT, CMD = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ARGS = sys.argv[5:]
CONNECTION_LOST = {"57P01", "57P02", "57P03", "08006", "08003", "08000", "08001"}


def check(desc, got, expected):
    print(f"check\t{desc}\t{got}\t{expected}", flush=True)


def sqlstate(exc):
    return getattr(exc, "sqlstate", None) or "no-sqlstate"


def run(conn, sql, params=None):
    """rows, or ('ERROR', sqlstate, message)"""
    try:
        return conn.execute(sql, params).fetchall()
    except psycopg.Error as e:
        return ("ERROR", sqlstate(e), str(e).strip().splitlines()[0] if str(e).strip() else "")


def connect():
    return psycopg.connect(DSN, autocommit=True, connect_timeout=10)


def failed_fanouts(n):
    """the answers of n new clients' fan-out reads that were errors"""
    bad = []
    for _ in range(n):
        with connect() as c:
            r = run(c, "SELECT count(*) FROM t86")
            if not isinstance(r, list):
                bad.append(r)
    return bad


def vanish_batch(keys):
    # libpq's pipeline, so the client decides when the bytes go and never reads
    conn = connect()
    pg = conn.pgconn
    pg.enter_pipeline_mode()
    for i, k in enumerate(keys):
        if i == 0:
            sql = b"INSERT INTO t86 (id, t) VALUES ($1, (SELECT 'slow' FROM pg_sleep(0.5)))"
        else:
            sql = b"INSERT INTO t86 (id, t) VALUES ($1, 'fast')"
        pg.send_query_params(sql, [str(k).encode()])
    pg.pipeline_sync()
    while pg.flush() != 0:
        time.sleep(0.01)
    time.sleep(0.1)  # on its way; now vanish without a word (no Terminate)
    os._exit(0)


def kill_shard1_sleepers(delay, found):
    time.sleep(delay)
    with psycopg.connect(f"host=127.0.0.1 port={SHARD1_PORT} user=postgres dbname=app",
                         autocommit=True) as d:
        found.append(d.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = 'app' AND query LIKE '%pg_sleep%t86%' AND pid <> pg_backend_pid()"
        ).fetchone()[0])


def fanout_kill():
    conn = connect()
    check("a fan-out read works before the fault", run(conn, "SELECT count(*) FROM t86")[0][0] > 0, True)
    killed = []
    killer = threading.Thread(target=kill_shard1_sleepers, args=(0.5, killed))
    killer.start()
    t0 = time.time()
    r = run(conn, "SELECT id, pg_sleep(1) FROM t86 ORDER BY id")
    elapsed = time.time() - t0
    killer.join()
    time.sleep(0.5)
    check("shard 0 stops running the failed fan-out (cancelled, not left to finish)", sleepers(), 0)
    check("shard 1's backend running the fan-out was terminated", killed, [1])
    got = r[1] if isinstance(r, tuple) else f"{len(r)} rows"
    print(f"fan-out answer: {r if isinstance(r, tuple) else got}")
    check("the fan-out fails with a lost-connection SQLSTATE",
          "lost" if got in CONNECTION_LOST else got, "lost")
    check("the fan-out fails with 08006", got, "08006")
    check("... naming shard 1 and why", isinstance(r, tuple) and "shard 1" in r[2] and "administrator" in r[2], True)
    check("the failure comes within 5 s", elapsed < 5, True)
    r = run(conn, "SELECT count(*) FROM t86")
    check("the same client's next fan-out works", isinstance(r, list), True)
    check("20 new clients' fan-outs after the fault all work", failed_fanouts(20), [])


def sleepers():
    """backends of user app running the test's pg_sleep, on both shards"""
    n = 0
    for port in (SHARD0_PORT, SHARD1_PORT):
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=app", autocommit=True) as d:
            n += d.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                           "AND state = 'active' AND query LIKE '%pg_sleep%t86%'").fetchone()[0]
    return n


def vanish_mid_statement(key):
    conn = connect()
    pg = conn.pgconn
    pg.send_query(f"SELECT pg_sleep(30), t FROM t86 WHERE id = {key}".encode())
    while pg.flush() != 0:
        time.sleep(0.01)
    time.sleep(0.5)  # running on its shard; now vanish
    os._exit(0)


def vanish_mid_fanout():
    conn = connect()
    pg = conn.pgconn
    pg.send_query(b"SELECT pg_sleep(30), t FROM t86 ORDER BY id")
    while pg.flush() != 0:
        time.sleep(0.01)
    time.sleep(0.5)
    os._exit(0)


def fanout_cancel():
    conn = connect()
    timer = threading.Timer(0.6, conn.cancel)
    timer.start()
    t0 = time.time()
    r = run(conn, "SELECT id, pg_sleep(0.5) FROM t86 ORDER BY id")
    elapsed = time.time() - t0
    timer.join()
    print(f"cancelled fan-out: {r if isinstance(r, tuple) else f'{len(r)} rows'} after {elapsed:.2f} s")
    check("a cancelled fan-out fails with 57014", r[1] if isinstance(r, tuple) else "no error", "57014")
    check("... well before the shards would have finished (2 s)", elapsed < 1.8, True)
    time.sleep(0.3)
    check("no shard is still running the cancelled statement", sleepers(), 0)
    r = run(conn, "SELECT count(*) FROM t86")
    check("the same client's next fan-out works", isinstance(r, list), True)


def shard_down(k0, k1):
    conn = connect()
    t0 = time.time()
    r = run(conn, "SELECT count(*) FROM t86")
    elapsed = time.time() - t0
    print(f"fan-out with shard 1 down: {r}")
    check("with shard 1 down, a fan-out fails with 08006",
          r[1] if isinstance(r, tuple) else "no error", "08006")
    check("... within 5 s", elapsed < 5, True)
    msg = r[2] if isinstance(r, tuple) else ""
    check("... and the message names shard 1", "shard 1" in msg, True)
    r = run(conn, "SELECT t FROM t86 WHERE id = %s", (k0,))
    check("a read by a key on shard 0 still works", r, [("k0",)])
    try:
        conn.execute("UPDATE t86 SET t = 'k0' WHERE id = %s", (k0,))
        r = "ok"
    except psycopg.Error as e:
        r = ("ERROR", sqlstate(e), str(e))
    check("a write by a key on shard 0 still works", r, "ok")
    t0 = time.time()
    r = run(conn, "SELECT t FROM t86 WHERE id = %s", (k1,))
    elapsed = time.time() - t0
    check("a read by a key on shard 1 fails with 08006", r[1] if isinstance(r, tuple) else r, "08006")
    check("... within 5 s", elapsed < 5, True)
    r = run(conn, "SELECT t FROM t86 WHERE id = %s", (k0,))
    check("the same session goes on with shard 0", r, [("k0",)])


def shard_back():
    deadline = time.time() + 15
    last = None
    while time.time() < deadline:
        try:
            with connect() as c:
                last = run(c, "SELECT count(*) FROM t86")
                if isinstance(last, list):
                    break
        except psycopg.Error as e:
            last = ("ERROR", sqlstate(e), str(e))
        time.sleep(0.3)
    print(f"last answer: {last}")
    check("shard 1 back: a fan-out works again within 15 s", isinstance(last, list), True)
    check("... and keeps working for 10 new clients", failed_fanouts(10), [])


if CMD == "vanish-batch":
    vanish_batch([int(k) for k in ARGS])
elif CMD == "fanout-kill":
    fanout_kill()
elif CMD == "vanish-mid-statement":
    vanish_mid_statement(int(ARGS[0]))
elif CMD == "vanish-mid-fanout":
    vanish_mid_fanout()
elif CMD == "fanout-cancel":
    fanout_cancel()
elif CMD == "shard-down":
    shard_down(int(ARGS[0]), int(ARGS[1]))
elif CMD == "shard-back":
    shard_back()
else:
    sys.exit(f"unknown command {CMD}")
print("end")
