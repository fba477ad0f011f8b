#!/usr/bin/python3
"""py_drivers.py - psycopg 3 and asyncpg against shardpool in transaction pooling;
driven by test/integration/62_python.t.

    /usr/bin/python3 py_drivers.py psycopg|psycopg-evict|asyncpg|asyncpg-evict PORT DATABASE TABLE

Connects as app/secret (SCRAM). Every check prints one line
    check<TAB>description<TAB>got<TAB>expected
which the .t turns into a TAP `is`; other lines are diagnostics; `end` comes last.
Must run under Debian's /usr/bin/python3, where python3-psycopg and python3-asyncpg
are installed.

psycopg: prepare=True executions (named statements _pg3_N, the same names on every
connection), executemany (pipelined), pipeline mode with an error in the middle,
COPY in and out with cursor.copy(), transactions and savepoints, binary results, the
same statement from clients with other client_encoding, TimeZone and DateStyle.
psycopg-evict: a statement evicted from shardpool's per-server cache in a pipeline
that fails (run against max_prepared_statements = 2, pool_size = 1). asyncpg-evict:
a statement evicted the same way, then ALTER TABLE, then run again.
asyncpg: every query is a named prepared statement; prepared statements, fetch,
executemany, copy_records_to_table (binary COPY), transactions, a pool of 10
connections doing 2000 queries, statements prepared and not yet executed (the pool's
servers must not wait for them), set_config() with the setting's name as a parameter,
one statement text under two search_paths (a
schema per tenant), and re-preparing after a schema change.

Deliberately not here: anything specific to sharding (database plain has one shard).
"""
import sys
import threading
import time


def clean(v):
    return str(v).replace('\t', ' ').replace('\n', ' ')


_lock = threading.Lock()


def check(desc, got, expected):
    with _lock:
        print(f'check\t{clean(desc)}\t{clean(got)}\t{clean(expected)}', flush=True)


def diag(s):
    with _lock:
        print(clean(s), flush=True)


def describe(e):
    code = getattr(e, 'sqlstate', None)
    if code is None:
        diag_ = getattr(e, 'diag', None)
        code = getattr(diag_, 'sqlstate', None)
    return f'{type(e).__name__} {code}: {e}'


def group(name):
    def deco(fn):
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # a group failing must not stop the others
            check(f'{name}: completes without an exception', describe(e), 'no exception')
        diag(f'{name} took {int((time.monotonic() - t0) * 1000)} ms')
        return fn
    return deco


# ------------------------------------------------------------------ psycopg 3

def run_psycopg(port, db, table):
    import psycopg
    conninfo = f'host=127.0.0.1 port={port} dbname={db} user=app password=secret connect_timeout=20'

    def connect(**kw):
        c = psycopg.connect(conninfo, autocommit=True, **kw)
        c.execute("SET statement_timeout = '20s'")
        return c

    @group('connect')
    def _():
        with connect() as c:
            check('SELECT 1 through shardpool', c.execute('SELECT 1').fetchone()[0], 1)
            check('psycopg version', psycopg.__version__.split('.')[0], '3')
            c.execute(f'DROP TABLE IF EXISTS {table}')
            c.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, v text NOT NULL, b bytea)')

    @group('prepare=True from 10 threads')
    def _():
        good = [0]
        bad = []

        def work(k):
            try:
                with connect() as c:
                    qs = [(f'SELECT %s::int * 5 + {k}', lambda i: (i,), lambda i: i * 5 + k),
                          ("SELECT %s::text || '-' || %s::text", lambda i: (f't{k}', i), lambda i: f't{k}-{i}'),
                          (f'SELECT count(*) FROM generate_series(1, %s::int + {k % 3})', lambda i: (i % 30,), lambda i: i % 30 + k % 3)]
                    if k % 2:
                        qs.reverse()
                    for i in range(100):
                        for q, args, exp in qs:
                            got = c.execute(q, args(i), prepare=True).fetchone()[0]
                            if got == exp(i):
                                with _lock:
                                    good[0] += 1
                            else:
                                bad.append(f'thread {k} round {i} {q}: got {got!r}, expected {exp(i)!r}')
            except Exception as e:
                bad.append(f'thread {k}: {describe(e)}')

        ts = [threading.Thread(target=work, args=(k,)) for k in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        for b in bad[:5]:
            diag(b)
        check('10 threads x 100 rounds x 3 prepared queries: right results', good[0], 3000)
        check('10 threads x 100 rounds x 3 prepared queries: no wrong result or error', len(bad), 0)

    @group('executemany')
    def _():
        with connect() as c:
            cur = c.cursor()
            cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', [(i, f'row {i}') for i in range(1, 1001)])
            check('executemany inserted 1000 rows', c.execute(f'SELECT count(*), sum(id) FROM {table}').fetchone(), (1000, 500500))
            cur.executemany(f'UPDATE {table} SET v = v || %s WHERE id = %s', [('!', i) for i in range(1, 201)])
            check('executemany updated 200 rows', c.execute(f"SELECT count(*) FROM {table} WHERE v LIKE '%!'").fetchone()[0], 200)
            # an error half way through a pipelined executemany
            err = 'none'
            try:
                cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', [(i, 'dup') for i in (2001, 2002, 5, 2003, 2004, 2005, 2006, 2007)])
            except psycopg.Error as e:
                err = e.sqlstate
            check('executemany with a duplicate key raises 23505', err, '23505')
            check('the connection works after a failed executemany', c.execute('SELECT 7').fetchone()[0], 7)
            got = c.execute(f'SELECT count(*) FROM {table} WHERE id > 2000').fetchone()[0]
            check('the failed executemany left no row (one pipeline, one implicit transaction)', got, 0)
            # the same statement again, now prepared, with no error
            cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', [(i, 'again') for i in range(3001, 3011)])
            check('executemany of the same statement works after its error',
                  c.execute(f"SELECT count(*) FROM {table} WHERE v = 'again'").fetchone()[0], 10)

    @group('pipeline mode')
    def _():
        with connect() as c:
            # statements prepared inside a pipeline, an error, statements after it
            err = 'none'
            try:
                with c.pipeline() as p:
                    c.execute('SELECT %s::int + 1', (1,), prepare=True)
                    c.execute('SELECT 1 / %s::int', (0,), prepare=True)
                    c.execute('SELECT %s::int + 2', (1,), prepare=True)
                    c.execute('SELECT %s::int + 3', (1,), prepare=True)
                    p.sync()
            except psycopg.Error as e:
                err = e.sqlstate
            check('an error in a pipeline raises 22012', err, '22012')
            # (psycopg 3.1 itself believes the skipped statements were prepared, even
            # against PostgreSQL, so this connection is not asked to run them again)
            check('the connection works after the pipeline error', c.execute('SELECT %s::int + 20', (1,), prepare=True).fetchone()[0], 21)
            other = connect()
            res = []
            for n in (1, 2, 3):
                try:
                    res.append(other.execute(f'SELECT %s::int + {n}', (10,), prepare=True).fetchone()[0])
                except psycopg.Error as e:
                    res.append(describe(e))
            check('the statements around the error work for another connection', res, [11, 12, 13])
            other.close()
            # a longer pipeline of prepared statements without errors
            with c.pipeline():
                curs = [c.execute('SELECT %s::int * 2', (i,), prepare=True) for i in range(200)]
            check('200 prepared statements in one pipeline', sum(cu.fetchone()[0] for cu in curs), 2 * sum(range(200)))

    @group('a full statement cache: psycopg DEALLOCATEs over the extended protocol')
    def _():
        # psycopg keeps prepared_max (default 100) statements and then sends
        # "DEALLOCATE _pg3_N" with exec_params; the names live on shardpool, not the server
        with connect() as c:
            c.prepared_max = 3
            got = []
            for rnd in range(3):
                for n in range(10):
                    try:
                        got.append(c.execute(f'SELECT %s::int + {n}', (rnd,), prepare=True).fetchone()[0])
                    except psycopg.Error as e:
                        got.append(describe(e))
            check('30 executions of 10 statements through a cache of 3 (7 DEALLOCATEs a round)',
                  got, [r + n for r in range(3) for n in range(10)])
            try:
                c.pgconn.prepare(b's_dealloc', b'SELECT 42')
                r1 = c.pgconn.exec_prepared(b's_dealloc', []).get_value(0, 0)
                r2 = c.pgconn.exec_params(b'DEALLOCATE s_dealloc', [])
                r3 = c.pgconn.exec_prepared(b's_dealloc', [])
                got = (r1, psycopg.pq.ExecStatus(r2.status).name, r2.command_status, r3.error_field(psycopg.pq.DiagnosticField.SQLSTATE))
            except psycopg.Error as e:
                got = describe(e)
            check('DEALLOCATE name by exec_params: tag DEALLOCATE, then the name is gone (26000)',
                  got, (b'42', 'COMMAND_OK', b'DEALLOCATE', b'26000'))
            r4 = c.pgconn.exec_params(b'DEALLOCATE no_such_statement', [])
            check('DEALLOCATE of an unknown name: the server\'s 26000',
                  r4.error_field(psycopg.pq.DiagnosticField.SQLSTATE), b'26000')
            check('the connection still works', c.execute('SELECT %s::int', (7,), prepare=True).fetchone()[0], 7)

    @group('COPY')
    def _():
        with connect() as c:
            cur = c.cursor()
            with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                for i in range(10000):
                    cp.write_row((100000 + i, f'copied\t{i}\\'))
            check('COPY FROM STDIN row count', cur.rowcount, 10000)
            check('the copied rows are there', c.execute(f'SELECT count(*), sum(id - 100000) FROM {table} WHERE id >= 100000').fetchone(),
                  (10000, 10000 * 9999 // 2))
            rows = []
            with cur.copy(f'COPY (SELECT id, v FROM {table} WHERE id >= 100000 ORDER BY id) TO STDOUT') as cp:
                for row in cp.rows():
                    rows.append(row)
            check('COPY TO STDOUT gives back what went in', rows == [(str(100000 + i), f'copied\t{i}\\') for i in range(10000)], True)
            with cur.copy(f'COPY {table} (id, v, b) FROM STDIN (FORMAT BINARY)') as cp:
                cp.set_types(['int4', 'text', 'bytea'])
                for i in range(1000):
                    cp.write_row((200000 + i, 'bin', bytes([i % 256]) * (i % 50)))
            check('binary COPY FROM STDIN', c.execute(f'SELECT count(*), sum(length(b)) FROM {table} WHERE id >= 200000').fetchone(),
                  (1000, sum(i % 50 for i in range(1000))))
            err = 'none'
            try:
                with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                    cp.write_row((300001, 'a'))
                    cp.write_row(('not a number', 'b'))
            except psycopg.Error as e:
                err = e.sqlstate
            check('a COPY with a bad row fails with 22P02', err, '22P02')
            check('the connection works after a failed COPY', c.execute('SELECT 8').fetchone()[0], 8)
            err = 'none'
            try:
                with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                    cp.write_row((300002, 'a'))
                    raise RuntimeError('application gives up')
            except RuntimeError:
                err = 'RuntimeError'
            except psycopg.Error as e:
                err = e.sqlstate
            check('a COPY the client abandons (CopyFail) ends with 57014', err, '57014')
            check('the connection works after CopyFail', c.execute(f'SELECT count(*) FROM {table} WHERE id > 300000').fetchone()[0], 0)
            c.execute(f'DELETE FROM {table} WHERE id >= 100000')

    @group('transactions')
    def _():
        with connect() as c, connect() as other:
            with c.transaction():
                pid = c.execute('SELECT pg_backend_pid()').fetchone()[0]
                c.execute(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', (5001, 'committed'), prepare=True)
                check('a transaction stays on one server connection', c.execute('SELECT pg_backend_pid()').fetchone()[0], pid)
                check('uncommitted row is invisible to another connection',
                      other.execute(f'SELECT count(*) FROM {table} WHERE id = 5001').fetchone()[0], 0)
            check('committed row is visible', other.execute(f'SELECT v FROM {table} WHERE id = 5001').fetchone()[0], 'committed')
            try:
                with c.transaction():
                    c.execute(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', (5002, 'rolled back'), prepare=True)
                    raise psycopg.Rollback()
            except psycopg.Rollback:
                pass
            check('rolled-back row is gone', other.execute(f'SELECT count(*) FROM {table} WHERE id = 5002').fetchone()[0], 0)
            with c.transaction():
                c.execute(f'INSERT INTO {table} (id, v) VALUES (5003, %s)', ('outer',))
                try:
                    with c.transaction():
                        c.execute(f'INSERT INTO {table} (id, v) VALUES (5004, %s)', ('inner',))
                        c.execute('SELECT 1/0')
                except psycopg.errors.DivisionByZero:
                    pass
                c.execute(f'INSERT INTO {table} (id, v) VALUES (5005, %s)', ('after savepoint',))
            check('a failed savepoint rolls back only its part',
                  other.execute(f'SELECT string_agg(id::text, \',\' ORDER BY id) FROM {table} WHERE id BETWEEN 5003 AND 5005').fetchone()[0],
                  '5003,5005')
            # non-autocommit connection: psycopg sends BEGIN itself
            with psycopg.connect(conninfo) as nc:
                nc.execute(f'INSERT INTO {table} (id, v) VALUES (5006, %s)', ('implicit',), prepare=True)
                nc.rollback()
                nc.execute(f'INSERT INTO {table} (id, v) VALUES (5007, %s)', ('implicit',), prepare=True)
                nc.commit()
            check('implicit transactions: rollback and commit',
                  other.execute(f'SELECT string_agg(id::text, \',\') FROM {table} WHERE id IN (5006, 5007)').fetchone()[0], '5007')

    @group('binary values')
    def _():
        with connect() as c:
            cur = c.cursor(binary=True)
            row = cur.execute('SELECT %b::int8, %b::float8, %b::bytea, %b::text', (2 ** 62, 1.5, b'\x00\x01\xff', 'ü'), prepare=True).fetchone()
            check('binary parameters and results', row, (2 ** 62, 1.5, b'\x00\x01\xff', 'ü'))

    @group('settings that change what a statement means')
    def _():
        # The same statement bytes from a LATIN1 client and a UTF8 one are other
        # characters: 'Ã©' in LATIN1 is the bytes of 'é' in UTF8. Each client must get
        # its own string back, as from PostgreSQL, not the one of the client that
        # prepared the statement first on the server connection.
        with connect(client_encoding='latin1') as a, connect() as b:
            got = []
            for i in range(3):
                got.append(a.execute("SELECT 'Ã©', %s::int", (i,), prepare=True).fetchone()[0])
                got.append(b.execute("SELECT 'é', %s::int", (i,), prepare=True).fetchone()[0])
            check('one prepared statement text from a LATIN1 and a UTF8 client', got, ['Ã©', 'é'] * 3)
        # Literals of timestamptz and date are read at Parse under TimeZone and DateStyle.
        q = "SELECT extract(epoch FROM '2024-01-01 10:00'::timestamptz)::int, '01/02/2024'::date::text, %s::int"
        with connect(options='-c TimeZone=Asia/Tokyo -c DateStyle=ISO,DMY') as a, connect() as b:
            got = []
            for i in range(3):
                got.append(a.execute(q, (i,), prepare=True).fetchone()[:2])
                got.append(b.execute(q, (i,), prepare=True).fetchone()[:2])
            check('one prepared statement with literals from clients with other TimeZone and DateStyle', got,
                  [(1704070800, '2024-02-01'), (1704103200, '2024-01-02')] * 3)

    @group('large values')
    def _():
        # libpq sends Parse, Bind (4 MB), Describe, Execute and Sync in one go. psycopg
        # has no client-side timeout: a thread that does not come back in 10 s is a
        # failure (and is left behind; the connection goes with the process).
        import hashlib
        big = b'\x00\xffab' * (1 << 20)
        res = ['no answer within 10 s']

        def work():
            try:
                c = connect()
                res[0] = c.execute('SELECT length(%b::bytea), md5(%b::bytea)', (big, big), prepare=True).fetchone()
                c.close()
            except Exception as e:
                res[0] = describe(e)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(10)
        check('a 4 MB bytea parameter, sent twice in one statement', res[0], (len(big), hashlib.md5(big).hexdigest()))

    @group('drop table')
    def _():
        with connect() as c:
            c.execute("SET lock_timeout = '2s'")
            c.execute(f'DROP TABLE {table}')


def run_psycopg_evict(port, db, table):
    """Against a shardpool with max_prepared_statements = 2 and pool_size = 1: a
    statement evicted from the server's cache by a Parse that comes after an error in
    the same pipeline. PostgreSQL skips both shardpool's Close of the evicted statement
    and the Parse, so the evicted statement is still on the server."""
    import psycopg
    c = psycopg.connect(f'host=127.0.0.1 port={port} dbname={db} user=app password=secret connect_timeout=20', autocommit=True)
    A, B, C = 'SELECT %s::int + 100', 'SELECT %s::int + 200', 'SELECT %s::int + 300'
    check('two prepared statements', (c.execute(A, (1,), prepare=True).fetchone()[0], c.execute(B, (1,), prepare=True).fetchone()[0]), (101, 201))
    err = 'none'
    try:
        with c.pipeline() as p:
            # the error comes late, so the rest of the pipeline reaches shardpool first
            c.execute('SELECT 1 / (SELECT %s::int FROM pg_sleep(0.3))', (0,))
            c.execute(C, (1,), prepare=True)
            p.sync()
    except psycopg.Error as e:
        err = e.sqlstate
    check('a pipeline: an error, then a third prepared statement', err, '22012')
    for round_ in (1, 2):
        res = []
        for q in (A, B):
            try:
                res.append(c.execute(q, (1,), prepare=True).fetchone()[0])
            except psycopg.Error as e:
                res.append(f'{e.sqlstate}: {e}')
        check(f'the first two statements still work (round {round_})', res, [101, 201])
    o = psycopg.connect(f'host=127.0.0.1 port={port} dbname={db} user=app password=secret connect_timeout=20', autocommit=True)
    res = []
    for q in (A, B, C):
        try:
            res.append(o.execute(q, (2,), prepare=True).fetchone()[0])
        except psycopg.Error as e:
            res.append(f'{e.sqlstate}: {e}')
    check('all three statements work for another connection', res, [102, 202, 302])
    o.close()
    c.close()


def run_asyncpg_evict(port, db, table):
    """Against a shardpool with max_prepared_statements = 2 and pool_size = 1: a
    statement evicted from the server's cache, then ALTER TABLE, then run again. The
    server prepares it afresh, of the new shape; the client prepared it before the
    ALTER, so PostgreSQL would say 0A000 "cached plan must not change result type"
    (asyncpg then prepares again), never send rows of a shape it was not told of."""
    import asyncio
    import asyncpg

    async def run():
        c = await asyncpg.connect(host='127.0.0.1', port=int(port), user='app', password='secret',
                                  database=db, timeout=20, command_timeout=10)
        t = table.replace('-', '_') + '_ev'
        await c.execute(f'DROP TABLE IF EXISTS {t}')
        await c.execute(f'CREATE TABLE {t} (id int, a text)')
        await c.execute(f"INSERT INTO {t} VALUES (1, 'one')")
        q = f'SELECT * FROM {t} WHERE id = $1'
        got = [len(await c.fetchrow(q, 1))]
        # two other statements push it out of the server's cache of two
        await c.fetchval('SELECT $1::int + 1', 1)
        await c.fetchval('SELECT $1::int + 2', 1)
        await c.execute(f'ALTER TABLE {t} ADD COLUMN b int DEFAULT 5')
        for _i in range(2):
            try:
                got.append(len(await c.fetchrow(q, 1)))
            except Exception as e:
                got.append(describe(e))
        check('a statement evicted from the server, then ALTER TABLE: the new shape', got, [2, 3, 3])
        # the same once more, but another connection prepares the text first after
        # the ALTER: the server's copy is then of the new shape when c runs it
        await c.fetchval('SELECT $1::int + 1', 1)
        await c.fetchval('SELECT $1::int + 2', 1)
        await c.execute(f'ALTER TABLE {t} ADD COLUMN c int DEFAULT 6')
        o = await asyncpg.connect(host='127.0.0.1', port=int(port), user='app', password='secret',
                                  database=db, timeout=20, command_timeout=10)
        got = [len(await o.fetchrow(q, 1))]
        for _i in range(2):
            try:
                got.append(len(await c.fetchrow(q, 1)))
            except Exception as e:
                got.append(describe(e))
        check('... and when another connection prepared it after the ALTER', got, [4, 4, 4])
        # the server still has its copy from before the next ALTER: a connection that
        # prepares the text after it must not get that copy's 0A000 (asyncpg raises
        # it from its prepare step, which it does not retry)
        got = [len(await c.fetchrow(q, 1))]
        await c.execute(f'ALTER TABLE {t} ADD COLUMN d int DEFAULT 7')
        o2 = await asyncpg.connect(host='127.0.0.1', port=int(port), user='app', password='secret',
                                   database=db, timeout=20, command_timeout=10)
        for cc in (o2, c, o2, c):
            try:
                got.append(len(await cc.fetchrow(q, 1)))
            except Exception as e:
                got.append(describe(e))
        check('... and when the server still has its copy from before the ALTER', got, [4, 5, 5, 5, 5])
        await o2.close()
        await o.close()
        await c.execute(f'DROP TABLE {t}')
        await c.close()

    asyncio.run(asyncio.wait_for(run(), 60))


# ------------------------------------------------------------------ asyncpg

def run_asyncpg(port, db, table):
    import asyncio
    import asyncpg

    kw = dict(host='127.0.0.1', port=int(port), user='app', password='secret', database=db, timeout=20,
              command_timeout=10)

    def agroup(name):
        def deco(fn):
            t0 = time.monotonic()
            try:
                asyncio.run(asyncio.wait_for(fn(), 60))
            except Exception as e:
                check(f'{name}: completes without an exception', describe(e), 'no exception')
            diag(f'{name} took {int((time.monotonic() - t0) * 1000)} ms')
            return fn
        return deco

    @agroup('connect')
    async def _():
        c = await asyncpg.connect(**kw)
        check('SELECT 1 through shardpool', await c.fetchval('SELECT 1'), 1)
        await c.execute(f'DROP TABLE IF EXISTS {table}')
        await c.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, v text NOT NULL, ts timestamptz, n numeric)')
        await c.close()

    @agroup('prepared statements')
    async def _():
        c = await asyncpg.connect(**kw)
        st = await c.prepare('SELECT $1::int * 2 + $2::int AS r')
        res = [await st.fetchval(i, 1) for i in range(100)]
        check('a prepared statement, 100 executions', res, [i * 2 + 1 for i in range(100)])
        check('its parameter types', [t.name for t in st.get_parameters()], ['int4', 'int4'])
        check('its result columns', [a.name for a in st.get_attributes()], ['r'])
        rows = await c.fetch('SELECT g, g::text AS t FROM generate_series(1, $1) g', 500)
        check('fetch 500 rows', (len(rows), rows[-1]['t']), (500, '500'))
        check('fetchrow', tuple(await c.fetchrow('SELECT $1::text, $2::numeric', 'x', '1.5')), ('x', __import__('decimal').Decimal('1.5')))
        err = 'none'
        try:
            await c.fetchval('SELECT 1 / $1::int', 0)
        except asyncpg.PostgresError as e:
            err = e.sqlstate
        check('an error raises 22012', err, '22012')
        check('the connection works after the error', await c.fetchval('SELECT 1 / $1::int', 1), 1)
        await c.close()

    @agroup('executemany and COPY')
    async def _():
        c = await asyncpg.connect(**kw)
        await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(i, f'r{i}') for i in range(1, 2001)])
        check('executemany inserted 2000 rows', tuple(await c.fetchrow(f'SELECT count(*), sum(id) FROM {table}')), (2000, 2001000))
        err = 'none'
        try:
            await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(5001, 'a'), (5002, 'b'), (7, 'dup'), (5003, 'c')])
        except asyncpg.PostgresError as e:
            err = e.sqlstate
        check('executemany with a duplicate key raises 23505', err, '23505')
        check('the failed executemany left no row (it is one transaction)', await c.fetchval(f'SELECT count(*) FROM {table} WHERE id > 5000'), 0)
        import datetime
        import decimal
        recs = [(10000 + i, f'copy {i}', datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i),
                 decimal.Decimal(i) / 7) for i in range(5000)]
        r = await c.copy_records_to_table(table, records=recs, columns=['id', 'v', 'ts', 'n'])
        check('copy_records_to_table', r, 'COPY 5000')
        back = await c.fetch(f'SELECT id, v, ts, n FROM {table} WHERE id >= 10000 ORDER BY id')
        check('the copied records come back equal', [tuple(x) for x in back] == recs, True)
        out = []
        await c.copy_from_query(f'SELECT id FROM {table} WHERE id >= 10000 ORDER BY id LIMIT 3', output=lambda d: out.append(d) or asyncio.sleep(0))
        check('copy_from_query', b''.join(out), b'10000\n10001\n10002\n')
        await c.close()

    @agroup('transactions')
    async def _():
        c = await asyncpg.connect(**kw)
        o = await asyncpg.connect(**kw)
        async with c.transaction():
            pid = await c.fetchval('SELECT pg_backend_pid()')
            await c.execute(f"INSERT INTO {table} (id, v) VALUES (90001, 'committed')")
            check('a transaction stays on one server connection', await c.fetchval('SELECT pg_backend_pid()'), pid)
            check('uncommitted row invisible to another connection', await o.fetchval(f'SELECT count(*) FROM {table} WHERE id = 90001'), 0)
        check('committed row visible', await o.fetchval(f'SELECT v FROM {table} WHERE id = 90001'), 'committed')
        tr = c.transaction()
        await tr.start()
        await c.execute(f"INSERT INTO {table} (id, v) VALUES (90002, 'rolled back')")
        await tr.rollback()
        check('rolled-back row is gone', await o.fetchval(f'SELECT count(*) FROM {table} WHERE id = 90002'), 0)
        async with c.transaction():
            await c.execute(f"INSERT INTO {table} (id, v) VALUES (90003, 'outer')")
            try:
                async with c.transaction():
                    await c.execute(f"INSERT INTO {table} (id, v) VALUES (90004, 'inner')")
                    await c.execute('SELECT 1/0')
            except asyncpg.DivisionByZeroError:
                pass
        check('a failed nested transaction (savepoint) rolls back only its part',
              await o.fetchval(f'SELECT string_agg(id::text, \',\' ORDER BY id) FROM {table} WHERE id IN (90003, 90004)'), '90003')
        await c.close()
        await o.close()

    @agroup('pool of 10, 2000 queries')
    async def _():
        pool = await asyncpg.create_pool(min_size=10, max_size=10, **kw)
        bad = []

        async def q(i):
            try:
                async with pool.acquire() as con:
                    r = await con.fetchval(f'SELECT $1::int + {i % 5}', i)
                    if r != i + i % 5:
                        bad.append(f'query {i}: got {r}')
                    if i % 100 == 0:
                        async with con.transaction():
                            await con.execute(f"INSERT INTO {table} (id, v) VALUES ($1, 'pool')", 200000 + i)
            except Exception as e:
                bad.append(f'query {i}: {describe(e)}')

        await asyncio.gather(*(q(i) for i in range(2000)))
        for b in bad[:5]:
            diag(b)
        check('2000 queries over a pool of 10: no wrong result or error', len(bad), 0)
        async with pool.acquire() as con:
            check('the pool\'s transactions committed', await con.fetchval(f"SELECT count(*) FROM {table} WHERE v = 'pool'"), 20)
        await pool.close()

    @agroup('prepare without executing')
    async def _():
        # prepare() sends Parse, Describe and Flush, and the Bind comes only when the
        # statement runs. A server must not stay with a connection that prepared and now
        # waits for something else: here two of them hold back a third, which needs one
        # of the pool's two server connections (with PostgreSQL: no wait at all).
        a, b, o = [await asyncpg.connect(**kw) for _i in range(3)]
        u = await asyncpg.connect(statement_cache_size=0, **kw)  # unnamed statements
        sa = await a.prepare('SELECT $1::int + 1')
        sb = await b.prepare('SELECT $1::text || \'b\'')
        su = await u.prepare('SELECT $1::int * 3')
        try:
            got = await asyncio.wait_for(o.fetchval('SELECT 7'), 5)
        except asyncio.TimeoutError:
            got = 'no answer within 5 s'
        check('a query while two connections hold prepared, unexecuted statements', got, 7)
        check('the prepared statements run afterwards', (await sa.fetchval(1), await sb.fetchval('a'), await su.fetchval(5)),
              (2, 'ab', 15))
        err = 'none'
        try:
            await a.prepare('SELEC 1')
        except asyncpg.PostgresError as e:
            err = e.sqlstate
        check('prepare of a bad statement raises 42601', err, '42601')
        check('that connection goes on', await a.fetchval('SELECT 8'), 8)
        check('no server connection left in a transaction',
              await o.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND state LIKE 'idle in%'"), 0)
        for c in (a, b, o, u):
            await c.close()

    @agroup('set_config with its name as a parameter')
    async def _():
        # asyncpg sends every parameter in binary; for text that is its bytes. The
        # setting stays with its connection: another one (with the pool's two servers
        # taking turns) must not read it, as from PostgreSQL (NULL; '' once a backend
        # has seen the name, doc/usage.md).
        a, o = [await asyncpg.connect(**kw) for _i in range(2)]
        await a.fetchval('SELECT set_config($1, $2, false)', 'pydrv.tenant', '42')
        got = []
        for _i in range(4):
            got.append(await o.fetchval("SELECT coalesce(current_setting('pydrv.tenant', true), '')"))
            got.append(await a.fetchval("SELECT current_setting('pydrv.tenant', true)"))
        check('a setting named by a Bind parameter, read by its connection and another', got, ['', '42'] * 4)
        for x in (a, o):
            await x.close()

    @agroup('a schema per tenant')
    async def _():
        # The same statement text under two search_paths names two tables, here with
        # other column types: each connection must get its own tenant's table, as from
        # PostgreSQL, not a statement another connection prepared under its own path.
        c = await asyncpg.connect(**kw)
        s1, s2 = table + '_t1', table + '_t2'
        for sch, ddl, row in ((s1, 'a int, b int', '1, 10'), (s2, 'a text', "'two'")):
            await c.execute(f'DROP SCHEMA IF EXISTS {sch} CASCADE; CREATE SCHEMA {sch}; '
                            f'CREATE TABLE {sch}.tenant ({ddl}); INSERT INTO {sch}.tenant VALUES ({row})')
        a = await asyncpg.connect(server_settings={'search_path': s1}, **kw)  # in the startup packet
        b = await asyncpg.connect(**kw)
        await b.execute(f'SET search_path = {s2}')
        got = []
        for _i in range(3):
            for x in (a, b):
                try:
                    got.append([tuple(r) for r in await x.fetch('SELECT * FROM tenant')])
                except Exception as e:
                    got.append(describe(e))
        check('the same SELECT * from connections with other search_paths', got, [[(1, 10)], [('two',)]] * 3)
        for x in (a, b):
            await x.close()
        await c.execute(f'DROP SCHEMA {s1} CASCADE; DROP SCHEMA {s2} CASCADE')
        await c.close()

    @agroup('schema change')
    async def _():
        # asyncpg caches statements; after ALTER TABLE it gets "cached plan must not
        # change result type", drops its statement, prepares again and retries.
        c = await asyncpg.connect(**kw)
        t = table + '_sc'
        await c.execute(f'DROP TABLE IF EXISTS {t}')
        await c.execute(f'CREATE TABLE {t} (id int, a text)')
        await c.execute(f"INSERT INTO {t} VALUES (1, 'one')")
        for _i in range(3):
            await c.fetchrow(f'SELECT * FROM {t} WHERE id = $1', 1)
        await c.execute(f'ALTER TABLE {t} ADD COLUMN b int DEFAULT 5')
        try:
            row = await c.fetchrow(f'SELECT * FROM {t} WHERE id = $1', 1)
            got = f'{len(row)} columns, b={row["b"]}'
        except Exception as e:
            got = describe(e)
        check('a cached SELECT * works after ALTER TABLE ADD COLUMN', got, '3 columns, b=5')
        await c.execute(f'DROP TABLE {t}')
        await c.close()

    @agroup('schema change, several connections')
    async def _():
        # Connections that prepared the same text before an ALTER TABLE each get the
        # 0A000 as asyncpg recognises it (routine RevalidateCachedQuery: it prepares
        # again and retries), never rows of the new shape decoded as the old one
        # ("the number of columns in the result row is different from what was
        # described"); and a connection that prepares the text after the ALTER gets
        # it of the new shape, never the 0A000 of a server's copy from before.
        cs = [await asyncpg.connect(**kw) for _i in range(4)]
        t = table + '_sc2'
        await cs[0].execute(f'DROP TABLE IF EXISTS {t}')
        await cs[0].execute(f'CREATE TABLE {t} (id int, a text)')
        await cs[0].execute(f"INSERT INTO {t} VALUES (1, 'one')")
        q = f'SELECT * FROM {t} WHERE id = $1'
        for c in cs:
            await c.fetchrow(q, 1)
        got = []
        for rnd, ddl in enumerate((f'ALTER TABLE {t} ADD COLUMN b int DEFAULT 5',
                                   f'ALTER TABLE {t} ADD COLUMN c int DEFAULT 6')):
            await cs[0].execute(ddl)
            for c in cs + cs:
                try:
                    got.append(len(await c.fetchrow(q, 1)))
                except Exception as e:
                    got.append(describe(e))
        check('4 connections, 2 ALTER TABLEs: every cached SELECT * sees the new columns',
              got, [3] * 8 + [4] * 8)
        fresh, worst = [], 0
        for _i in range(4):
            c = await asyncpg.connect(**kw)
            for tries in range(1, 4):
                worst = max(worst, tries)
                try:
                    fresh.append(len(await c.fetchrow(q, 1)))
                    break
                except asyncpg.InvalidCachedStatementError:
                    pass
            await c.close()
        check('new connections after the ALTERs: the new shape, never a failed prepare',
              (fresh, worst), ([4] * 4, 1))
        await cs[0].execute(f'DROP TABLE {t}')
        for c in cs:
            await c.close()

    @agroup('drop table')
    async def _():
        c = await asyncpg.connect(**kw)
        await c.execute("SET lock_timeout = '2s'")
        await c.execute(f'DROP TABLE {table}')
        await c.close()


def main():
    which, port, db, table = sys.argv[1:5]
    if which == 'psycopg':
        run_psycopg(port, db, table)
    elif which == 'psycopg-evict':
        run_psycopg_evict(port, db, table)
    elif which == 'asyncpg-evict':
        run_asyncpg_evict(port, db, table)
    else:
        run_asyncpg(port, db, table)
    print('end', flush=True)


if __name__ == '__main__':
    main()
