#!/usr/bin/python3
"""py_edges.py - the edges of psycopg 3 and asyncpg that applications reach, against
shardpool in transaction pooling; driven by test/integration/64_driver_edges.t.

    /usr/bin/python3 py_edges.py psycopg|asyncpg PORT DATABASE TABLE [sharded]

Connects as app/secret. Every check prints one line
    check<TAB>description<TAB>got<TAB>expected
which the .t turns into a TAP `is`; other lines are diagnostics; `end` comes last.
The same program runs unchanged against PostgreSQL itself (DATABASE app on the
primary's port), which is how a failing check is told apart from a driver quirk.

psycopg: pipeline mode (with an error in it and recovery), executemany with and
without returning, named (server-side) cursors in a transaction, prepare=True with
prepare_threshold=0, COPY write (text and binary) and read, conn.cancel() of a pg_sleep.
asyncpg: executemany, a cursor with prefetch in a transaction, copy_records_to_table
(also into the sharded table, where shardpool splits the binary COPY by key),
copy_from_query, a pool of 10 connections sharing statement names, multi-statement
execute(), introspection of enum and composite types, cancellation by a timeout.
With `sharded`, TABLE is sharded by id in DATABASE (created on every shard by the
caller), and statements name the key or fan out outside a transaction; nested
transactions (a SAVEPOINT before the first key) land on the key's shard.

Deliberately not here: what 62_python.t already covers in plain form.
"""
import sys
import threading
import time


# the TAP plumbing (check lines, diagnostics, groups) is py_drivers.py's
from py_drivers import check, describe, diag, group  # noqa: E402


def sqlstate(e):
    code = getattr(e, 'sqlstate', None)
    if code is None:
        code = getattr(getattr(e, 'diag', None), 'sqlstate', None)
    return code or type(e).__name__


# ------------------------------------------------------------------ psycopg 3

def run_psycopg(port, db, table, sharded):
    import psycopg
    conninfo = f'host=127.0.0.1 port={port} dbname={db} user=app password=secret connect_timeout=20'

    def connect(**kw):
        c = psycopg.connect(conninfo, autocommit=True, **kw)
        c.execute("SET statement_timeout = '20s'")
        return c

    @group('setup')
    def _():
        with connect() as c:
            if not sharded:
                c.execute(f'DROP TABLE IF EXISTS {table}')
                c.execute(f'CREATE TABLE {table} (id bigint PRIMARY KEY, v text NOT NULL)')
            check('SELECT 1 through shardpool', c.execute('SELECT 1').fetchone()[0], 1)

    if sharded:
        @group('sharded: keys on both shards')
        def _():
            ids = list(range(80000, 80040))
            with connect(prepare_threshold=0) as c:
                for i in ids:
                    c.execute(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', (i, f'k{i}'))
                got = [c.execute(f'SELECT v FROM {table} WHERE id = %s', (i,)).fetchone() for i in ids]
                check('prepared by-key inserts read back by key', sum(1 for i, r in zip(ids, got) if r and r[0] == f'k{i}'), 40)
                with c.pipeline() as p:
                    for i in ids:
                        c.execute(f'UPDATE {table} SET v = %s WHERE id = %s', (f'u{i}', i))
                        p.sync()
                got = [c.execute(f'SELECT v FROM {table} WHERE id = %s', (i,)).fetchone() for i in ids]
                check('pipeline, one Sync per by-key update', sum(1 for i, r in zip(ids, got) if r and r[0] == f'u{i}'), 40)
                n = c.execute(f'SELECT count(*) FROM {table} WHERE id >= %s AND id < %s', (80000, 80040)).fetchone()[0]
                check('count(*) over every shard with parameters', n, 40)
                # one implicit transaction over several shards: split by shard, each
                # part inside BEGIN, all committed only if every shard's part succeeded
                cur = c.cursor()
                cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', [(i, f'x{i}') for i in range(80100, 80110)])
                check('executemany over several shards before one Sync: rowcount', cur.rowcount, 10)
                got = [c.execute(f'SELECT v FROM {table} WHERE id = %s', (i,)).fetchone() for i in range(80100, 80110)]
                check('... every row readable by its key', sum(1 for i, r in zip(range(80100, 80110), got) if r and r[0] == f'x{i}'), 10)
                try:
                    cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', [(i, 'y') for i in range(80200, 80210)] + [(80105, 'dup')])
                    st = 'no error'
                except psycopg.Error as e:
                    st = sqlstate(e)
                n = c.execute(f'SELECT count(*) FROM {table} WHERE id >= %s AND id < %s', (80200, 80210)).fetchone()[0]
                check('executemany over several shards with a duplicate key: 23505, and no row of it stays', (st, n), ('23505', 0))
                # returning=True asks for answers before the Sync (Flush): not split,
                # refused with a hint that says why and what to do
                try:
                    cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s) RETURNING id',
                                    [(i, 'r') for i in range(80300, 80310)], returning=True)
                    st = 'no error'
                except psycopg.Error as e:
                    st = (sqlstate(e), 'returning=True' in (e.diag.message_hint or ''))
                check('executemany(returning=True) over several shards: 0A000 with a hint', st, ('0A000', True))

        @group('sharded: a nested transaction first')
        def _():
            # transaction() inside transaction(): BEGIN, then SAVEPOINT before the
            # first statement with a key, which may be on any shard
            with connect() as c:
                got = []
                for i in range(80000, 80008):
                    with c.transaction():
                        with c.transaction():
                            c.execute(f'UPDATE {table} SET v = %s WHERE id = %s', (f'n{i}', i))
                        with c.transaction():
                            c.execute(f'UPDATE {table} SET v = %s WHERE id = %s', (f'r{i}', i))
                            raise psycopg.Rollback()
                    got.append(c.execute(f'SELECT v FROM {table} WHERE id = %s', (i,)).fetchone()[0])
                check('BEGIN, SAVEPOINT, then keys on either shard (one rolled back to its savepoint)',
                      got, [f'n{i}' for i in range(80000, 80008)])
        return

    @group('pipeline mode')
    def _():
        with connect() as c:
            with c.pipeline():
                curs = [c.execute('SELECT %s::int * 2', (i,)) for i in range(100)]
                ins = [c.execute(f'INSERT INTO {table} (id, v) VALUES (%s, %s)', (i, f'p{i}'))
                       for i in range(1, 51)]
            got = sum(1 for i, cur in enumerate(curs) if cur.fetchone()[0] == i * 2)
            check('100 selects in one pipeline', got, 100)
            check('50 inserts in the same pipeline', sum(cur.rowcount for cur in ins), 50)
            # an error in the middle: what follows in the same sync group is aborted
            res = []
            # psycopg raises the error at the first call that sees it: the execute()
            # of a later statement or the sync, depending on timing
            a = cc = None
            try:
                with c.pipeline() as p:
                    a = c.execute('SELECT 1')
                    b = c.execute('SELECT 1 / %s::int', (0,))
                    cc = c.execute('SELECT 3')
                    p.sync()
            except psycopg.Error as e:
                res.append(sqlstate(e))
            check('error inside a pipeline raises it', res, ['22012'])
            check('statement before the error has its row', a.fetchone()[0], 1)
            try:
                st = 'aborted' if cc is None else f'row {cc.fetchone()}'
            except psycopg.Error:
                st = 'aborted'
            check('statement after the error is aborted', st, 'aborted')
            # recovery: the next pipeline and a plain query work
            with c.pipeline():
                r1 = c.execute('SELECT 41 + 1')
                r2 = c.execute(f'SELECT v FROM {table} WHERE id = %s', (7,))
            check('pipeline after the failed one', (r1.fetchone()[0], r2.fetchone()[0]), (42, 'p7'))
            # explicit syncs: three groups, the middle one fails, the last one runs
            out = []
            with c.pipeline() as p:
                x1 = c.execute('SELECT 1')
                p.sync()
                try:
                    c.execute('SELECT * FROM no_such_table_drv')
                    p.sync()
                except psycopg.Error as e:
                    out.append(sqlstate(e))
                x3 = c.execute('SELECT 3')
                p.sync()
            try:
                third = x3.fetchone()[0]
            except psycopg.Error as e:
                third = type(e).__name__
            check('three sync groups, the middle fails', (out, x1.fetchone()[0], third), (['42P01'], 1, 3))
            check('plain query after the pipelines', c.execute('SELECT 5').fetchone()[0], 5)
            # a transaction inside pipeline mode, one key
            with c.pipeline():
                with c.transaction():
                    c.execute(f'UPDATE {table} SET v = %s WHERE id = %s', ('tx', 9))
                    r = c.execute(f'SELECT v FROM {table} WHERE id = %s', (9,))
            check('transaction in pipeline mode', r.fetchone()[0], 'tx')

    @group('executemany')
    def _():
        with connect() as c:
            cur = c.cursor()
            cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)',
                            [(i, f'm{i}') for i in range(1000, 1200)])
            check('executemany of 200 inserts: rowcount', cur.rowcount, 200)
            cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s) RETURNING id, v',
                            [(i, f'r{i}') for i in range(2000, 2050)], returning=True)
            rows = []
            while True:
                rows.append(cur.fetchone())
                if not cur.nextset():
                    break
            check('executemany returning: one row per insert, in order',
                  (len(rows), rows[0], rows[-1]), (50, (2000, 'r2000'), (2049, 'r2049')))
            try:
                cur.executemany(f'INSERT INTO {table} (id, v) VALUES (%s, %s)',
                                [(3000, 'a'), (3001, 'b'), (3000, 'dup'), (3002, 'c')])
                st = 'no error'
            except psycopg.Error as e:
                st = sqlstate(e)
            check('executemany with a duplicate key fails', st, '23505')
            n = c.execute(f'SELECT count(*) FROM {table} WHERE id = %s', (3001,)).fetchone()[0]
            # executemany in autocommit runs as one implicit transaction: all or nothing
            check('rows of the failed executemany', n, 0)
            cur.executemany(f'UPDATE {table} SET v = %s WHERE id = %s', [('u', i) for i in range(1000, 1010)])
            check('executemany of updates', cur.rowcount, 10)

    @group('server-side cursors')
    def _():
        with connect() as c:
            with c.transaction():
                cur = c.cursor('drv_cur')
                cur.itersize = 7
                if sharded:
                    cur.execute(f'SELECT id, v FROM {table} WHERE id = %s', (1005,))
                else:
                    cur.execute(f'SELECT id, v FROM {table} WHERE id >= %s AND id < %s ORDER BY id', (1000, 1200))
                rows = list(cur)
                cur.close()
                n = c.execute('SELECT 7').fetchone()[0]
            exp = (1, 1005, 7) if sharded else (200, 1000, 7)
            check('named cursor, itersize 7, in a transaction', (len(rows), rows[0][0], n), exp)
            with c.transaction():
                cur = c.cursor('drv_big', scrollable=True)
                cur.execute('SELECT x FROM generate_series(1, 1000) AS x')
                a = cur.fetchmany(10)
                cur.scroll(500, mode='absolute')
                b = cur.fetchone()
                cur.close()
            check('scrollable named cursor', (a[-1][0], b[0]), (10, 501))
            try:
                with c.transaction():
                    cur = c.cursor('drv_fail')
                    cur.execute('SELECT 1 / (x - 30) FROM generate_series(1, 100) AS x')
                    while cur.fetchmany(10):
                        pass
                st = 'no error'
            except psycopg.Error as e:
                st = sqlstate(e)
            check('named cursor failing in a later fetch', st, '22012')
            check('query after it', c.execute('SELECT 8').fetchone()[0], 8)

    @group('prepare_threshold=0 from threads')
    def _():
        bad, errs = [], []

        def worker(k):
            try:
                with connect(prepare_threshold=0) as c:
                    for i in range(60):
                        q = ['SELECT %s::int + 1', 'SELECT %s::int * 3', 'SELECT %s::text || %s::text'][i % 3]
                        args = (i,) if i % 3 < 2 else (k, i)
                        r = c.execute(q, args).fetchone()[0]
                        want = [i + 1, i * 3, f'{k}{i}'][i % 3]
                        if r != want:
                            bad.append((k, i, r))
                        if i % 20 == 0:
                            c.execute('SELECT %s::int', (i,), prepare=True)
            except Exception as e:
                errs.append(describe(e))
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check('12 threads x 60 prepared executions: wrong answers', len(bad), 0)
        check('12 threads x 60 prepared executions: errors', errs[:1], [])

    @group('COPY')
    def _():
        with connect() as c:
            cur = c.cursor()
            with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                for i in range(5000, 6000):
                    cp.write_row((i, f'c{i}'))
            if sharded:
                n = c.execute(f'SELECT count(*) FROM {table} WHERE id >= 5000 AND id < 6000').fetchone()[0]
            else:
                n = c.execute(f'SELECT count(*) FROM {table} WHERE id >= %s AND id < %s', (5000, 6000)).fetchone()[0]
            check('COPY FROM STDIN of 1000 rows', n, 1000)
            with cur.copy(f'COPY {table} (id, v) FROM STDIN (FORMAT BINARY)') as cp:
                cp.set_types(['int8', 'text'])
                for i in range(6100, 6400):
                    cp.write_row((i, f'b{i}'))
            n = c.execute(f'SELECT count(*) FROM {table} WHERE id = ANY(%s)', (list(range(6100, 6400)),)).fetchone()[0]
            check('COPY FROM STDIN (FORMAT BINARY) of 300 rows', (n, c.execute(f'SELECT v FROM {table} WHERE id = %s', (6399,)).fetchone()[0]), (300, 'b6399'))
            got = []
            with cur.copy('COPY (SELECT x, md5(x::text) FROM generate_series(1, 2000) AS x) TO STDOUT') as cp:
                for row in cp.rows():
                    got.append(row)
            check('COPY TO STDOUT rows', (len(got), got[-1][0]), (2000, '2000'))
            with c.transaction():
                with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                    cp.write(''.join(f'{i}\tt{i}\n' for i in (6001, 6002, 6003)))
                cur.execute(f'SELECT v FROM {table} WHERE id = %s', (6002,))
                v = cur.fetchone()[0]
            check('COPY inside a transaction, then a query', v, 't6002')
            try:
                with cur.copy(f'COPY {table} (id, v) FROM STDIN') as cp:
                    cp.write_row((7000, 'a'))
                    cp.write_row((7000, 'b'))
                st = 'no error'
            except psycopg.Error as e:
                st = sqlstate(e)
            check('COPY with a duplicate key', st, '23505')
            check('query after the failed COPY', c.execute('SELECT 9').fetchone()[0], 9)

    @group('cancel')
    def _():
        with connect() as c, connect() as other:
            threading.Timer(0.5, c.cancel).start()
            t0 = time.monotonic()
            try:
                c.execute('SELECT pg_sleep(10)')
                st = 'no error'
            except psycopg.Error as e:
                st = sqlstate(e)
            dt = time.monotonic() - t0
            check('conn.cancel() of pg_sleep(10)', st, '57014')
            check('cancel arrived within 5 s', dt < 5, True)
            check('the cancelled connection works', c.execute('SELECT 10').fetchone()[0], 10)
            # a cancel of an idle connection must not hit another client's query
            res = {}

            def sleeper():
                t1 = time.monotonic()
                try:
                    res['v'] = other.execute('SELECT pg_sleep(1.5), 11').fetchone()[1]
                except psycopg.Error as e:
                    # the message tells a cancel ("user request") from a statement timeout
                    res['v'] = f'{sqlstate(e)} after {time.monotonic() - t1:.2f} s: {str(e).splitlines()[0]}'

            t = threading.Thread(target=sleeper)
            t.start()
            time.sleep(0.4)
            c.cancel()
            t.join()
            check('cancel of an idle client leaves another client alone', res.get('v'), 11)
            check('the idle client still works', c.execute('SELECT 12').fetchone()[0], 12)
            # a cancel inside a transaction: the transaction is aborted, ROLLBACK recovers
            c.autocommit = False
            c.execute('SELECT 1')
            threading.Timer(0.4, c.cancel).start()
            try:
                c.execute('SELECT pg_sleep(10)')
                st = 'no error'
            except psycopg.Error as e:
                st = sqlstate(e)
            c.rollback()
            c.autocommit = True
            check('cancel inside a transaction, then ROLLBACK', (st, c.execute('SELECT 13').fetchone()[0]), ('57014', 13))


# ------------------------------------------------------------------ asyncpg

def run_asyncpg(port, db, table, sharded):
    import asyncio
    import io
    import asyncpg

    async def connect(**kw):
        return await asyncpg.connect(host='127.0.0.1', port=port, user='app', password='secret',
                                     database=db, timeout=20, command_timeout=20, **kw)

    async def group(name, coro):
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(coro, 60)
        except Exception as e:
            check(f'{name}: completes without an exception', describe(e), 'no exception')
        diag(f'{name} took {int((time.monotonic() - t0) * 1000)} ms')

    async def setup():
        c = await connect()
        if not sharded:
            await c.execute(f'DROP TABLE IF EXISTS {table}')
            await c.execute(f'CREATE TABLE {table} (id bigint PRIMARY KEY, v text NOT NULL)')
        check('asyncpg SELECT', await c.fetchval('SELECT 1'), 1)
        await c.close()

    async def executemany():
        c = await connect()
        await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(i, f'e{i}') for i in range(1, 301)])
        n = await c.fetchval(f'SELECT count(*) FROM {table} WHERE id >= $1 AND id <= $2', 1, 300)
        check('executemany of 300 inserts', n, 300)
        try:
            await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(400, 'a'), (401, 'b'), (400, 'c')])
            st = 'no error'
        except asyncpg.PostgresError as e:
            st = e.sqlstate
        check('executemany with a duplicate key fails', st, '23505')
        check('executemany is atomic', await c.fetchval(f'SELECT count(*) FROM {table} WHERE id = $1', 401), 0)
        check('query after it', await c.fetchval('SELECT $1::int + 1', 1), 2)
        await c.close()

    async def cursors():
        c = await connect()
        async with c.transaction():
            n = s = 0
            if sharded:
                q, args = f'SELECT id FROM {table} WHERE id = $1', (150,)
            else:
                q, args = f'SELECT id FROM {table} WHERE id >= $1 AND id <= $2 ORDER BY id', (1, 300)
            async for r in c.cursor(q, *args, prefetch=16):
                n += 1
                s += r['id']
            check('cursor(prefetch=16) in a transaction', (n, s), (1, 150) if sharded else (300, 45150))
            cur = await c.cursor('SELECT x FROM generate_series(1, 1000) AS x')
            a = await cur.fetch(10)
            await cur.forward(480)
            b = await cur.fetchrow()
            check('cursor fetch/forward/fetchrow', (a[-1]['x'], b['x']), (10, 491))
            check('query in the same transaction', await c.fetchval('SELECT 3'), 3)
        # portals in two prepared statements interleaved
        async with c.transaction():
            s1 = await c.prepare('SELECT x FROM generate_series(1, 100) AS x')
            s2 = await c.prepare("SELECT 'y' || x FROM generate_series(1, 100) AS x")
            c1 = await s1.cursor()
            c2 = await s2.cursor()
            got = []
            for _ in range(5):
                got.append((await c1.fetch(3))[-1][0])
                got.append((await c2.fetch(2))[-1][0])
            check('two cursors interleaved', got[-2:], [15, 'y10'])
        await c.close()

    async def copies():
        c = await connect()
        recs = [(i, f'cp{i}') for i in range(10000, 11000)]
        r = await c.copy_records_to_table(table, records=recs, columns=['id', 'v'])
        check('copy_records_to_table', r, 'COPY 1000')
        buf = io.BytesIO()
        r = await c.copy_from_query('SELECT x, x * 2 FROM generate_series(1, 500) AS x', output=buf)
        lines = buf.getvalue().decode().splitlines()
        check('copy_from_query', (r, len(lines), lines[-1]), ('COPY 500', 500, '500\t1000'))
        buf = io.BytesIO()
        r = await c.copy_from_query(f'SELECT id, v FROM {table} WHERE id = $1', 10500, output=buf)
        check('copy_from_query with a parameter', (r, buf.getvalue().decode()), ('COPY 1', '10500\tcp10500\n'))
        check('query after the copies', await c.fetchval('SELECT 4'), 4)
        await c.close()

    async def pool():
        p = await asyncpg.create_pool(host='127.0.0.1', port=port, user='app', password='secret',
                                      database=db, min_size=10, max_size=10, command_timeout=20)
        qs = ['SELECT $1::int + 1', 'SELECT $1::int * 2', "SELECT $1::int || 'x'", f'SELECT v FROM {table} WHERE id = $1']

        async def one(i):
            async with p.acquire() as c:
                k = i % 4
                r = await c.fetchval(qs[k], i % 300 + 1)
                return r == [i % 300 + 2, (i % 300 + 1) * 2, f'{i % 300 + 1}x', f'e{i % 300 + 1}'][k]
        res = await asyncio.gather(*[one(i) for i in range(2000)])
        check('pool of 10 x 2000 cached statements', sum(res), 2000)
        await p.close()

    async def multi():
        c = await connect()
        r = await c.execute(f"SELECT 1; UPDATE {table} SET v = 'mx' WHERE id = 5; SELECT 2")
        check('execute() of a multi-statement string: last status', r, 'SELECT 1')
        check('its update took effect', await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', 5), 'mx')
        try:
            await c.execute('SELECT 1; SELECT 1/0; SELECT 3')
            st = 'no error'
        except asyncpg.PostgresError as e:
            st = e.sqlstate
        check('multi-statement string with an error', st, '22012')
        check('query after it', await c.fetchval('SELECT 5'), 5)
        await c.close()

    async def types():
        c = await connect()
        if not sharded:
            await c.execute("DROP TYPE IF EXISTS drv_comp; DROP TYPE IF EXISTS drv_mood; "
                            "CREATE TYPE drv_mood AS ENUM ('sad', 'ok', 'happy'); "
                            "CREATE TYPE drv_comp AS (a int, b text, m drv_mood)")
        await c.close()
        # fresh connections: each introspects the types with its own prepared statements
        async def one(k):
            cc = await connect()
            m = await cc.fetchval("SELECT 'happy'::drv_mood")
            arr = await cc.fetchval("SELECT ARRAY['sad', 'ok']::drv_mood[]")
            comp = await cc.fetchval("SELECT ROW($1::int, 'x', 'ok')::drv_comp", k)
            back = await cc.fetchval('SELECT $1::drv_comp', (k, 'y', 'sad'))
            await cc.close()
            return (m, list(arr), tuple(comp), tuple(back))
        res = await asyncio.gather(*[one(k) for k in range(8)])
        check('enum, enum[] and composite through introspection (8 connections)',
              sum(1 for k, r in enumerate(res) if r == ('happy', ['sad', 'ok'], (k, 'x', 'ok'), (k, 'y', 'sad'))), 8)

    async def cancel():
        c = await connect()
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(c.fetchval('SELECT pg_sleep(10)'), 0.5)
            st = 'no error'
        except asyncio.TimeoutError:
            st = 'timeout'
        check('wait_for(pg_sleep(10), 0.5) times out', st, 'timeout')
        check('the connection works after the timeout', await c.fetchval('SELECT 6'), 6)
        check('within 5 s', time.monotonic() - t0 < 5, True)
        try:
            await c.fetchval('SELECT pg_sleep(10)', timeout=0.5)
            st = 'no error'
        except asyncio.TimeoutError:
            st = 'timeout'
        check('timeout= argument, then a query', (st, await c.fetchval('SELECT 7')), ('timeout', 7))
        async with c.transaction():
            try:
                await c.fetchval('SELECT pg_sleep(10)', timeout=0.5)
                st = 'no error'
            except asyncio.TimeoutError:
                st = 'timeout'
            try:
                await c.fetchval('SELECT 1')
                st2 = 'no error'
            except asyncpg.PostgresError as e:
                st2 = e.sqlstate
        check('timeout inside a transaction aborts it', (st, st2), ('timeout', '25P02'))
        check('query after that transaction', await c.fetchval('SELECT 8'), 8)
        await c.close()

    async def sharded_keys():
        c = await connect()
        # inserted through shardpool by the caller with the simple protocol
        v = await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', 900001)
        check('first execution of a by-key statement (Parse/Describe/Flush, then Bind)', v, 'simple')
        v = await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', 900001)
        check('second execution (Bind/Execute/Sync)', v, 'simple')
        ids = list(range(70000, 70040))
        # asyncpg: Parse/Describe/Flush, then Bind/Execute per row and one Sync: the
        # batch is split by shard, every row lands on its key's shard
        try:
            await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(i, f'k{i}') for i in ids])
            st = 'inserted'
        except asyncpg.PostgresError as e:
            st = e.sqlstate
        got = [await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', i) for i in ids]
        n = sum(1 for i, v in zip(ids, got) if v == f'k{i}')
        n_all = int((await c.fetch(f"SELECT count(*) FROM {table} WHERE id BETWEEN 70000 AND 70039"))[0][0])
        check('executemany across shards: every row where its key says', (st, n, n_all), ('inserted', 40, 40))
        # all or nothing: a duplicate key on one shard rolls back every shard's part
        try:
            await c.executemany(f'INSERT INTO {table} (id, v) VALUES ($1, $2)', [(i, 'n') for i in range(70100, 70120)] + [(70003, 'dup')])
            st = 'inserted'
        except asyncpg.PostgresError as e:
            st = e.sqlstate
        n_all = int((await c.fetch(f"SELECT count(*) FROM {table} WHERE id BETWEEN 70100 AND 70119"))[0][0])
        check('executemany across shards with a duplicate key: 23505, no row of it stays', (st, n_all), ('23505', 0))
        await c.executemany(f'UPDATE {table} SET v = $2 WHERE id = $1', [(i, f'u{i}') for i in ids])
        got = [await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', i) for i in ids]
        check('executemany of updates across shards', sum(1 for i, v in zip(ids, got) if v == f'u{i}'), 40)
        await c.execute(f"INSERT INTO {table} (id, v) VALUES {', '.join(f'({i}, {chr(39)}m{chr(39)})' for i in range(71000, 71010))}")
        for what in ('count(*) over every shard with a parameter', 'the same statement again (cached, no Describe)'):
            try:
                n = await c.fetchval(f'SELECT count(*) FROM {table} WHERE id >= $1 AND id < $2', 71000, 71010)
            except asyncpg.PostgresError as e:
                n = f'{e.sqlstate}: {e}'
            check(what, n, 10)
        # a statement first prepared inside a transaction (Parse/Describe/Flush before any
        # statement with a key): the transaction still goes to the key's shard
        for k in (73001, 73002, 73003, 73004):
            async with c.transaction():
                await c.execute(f'INSERT INTO {table} (v, id) VALUES ($2, $1)', k, f't{k}')
        got = [await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', k) for k in (73001, 73002, 73003, 73004)]
        check('statements first prepared inside transactions land on their keys', got, ['t73001', 't73002', 't73003', 't73004'])
        try:
            async with c.transaction():
                await c.execute(f'INSERT INTO {table} (v, id) VALUES ($2, $1)', 73005, 'gone')
                raise RuntimeError('roll back')
        except RuntimeError:
            pass
        check('rolled back insert is not there', await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', 73005), None)
        await c.close()

    async def sharded_copy():
        # copy_records_to_table sends binary COPY: split by key like text COPY
        c = await connect()
        ids = list(range(74000, 74500))
        r = await c.copy_records_to_table(table, records=[(i, f'bc{i}') for i in ids], columns=['id', 'v'])
        n = await c.fetchval(f'SELECT count(*) FROM {table} WHERE id = ANY($1::bigint[])', ids)
        v = await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', 74321)
        check('copy_records_to_table (binary COPY) over the shards', (r, n, v), ('COPY 500', 500, 'bc74321'))
        try:
            await c.copy_records_to_table(table, records=[(74600, 'a'), (74601, 'b'), (74321, 'dup')],
                                          columns=['id', 'v'])
            st = 'no error'
        except asyncpg.PostgresError as e:
            st = e.sqlstate
        n = await c.fetchval(f'SELECT count(*) FROM {table} WHERE id = ANY($1::bigint[])', [74600, 74601])
        check('a binary COPY with a duplicate key on one shard: 23505, no row of it stays', (st, n), ('23505', 0))
        check('query after it', await c.fetchval('SELECT 11'), 11)
        got = []
        for i in range(74000, 74008):
            async with c.transaction():
                async with c.transaction():
                    await c.execute(f'UPDATE {table} SET v = $1 WHERE id = $2', f'n{i}', i)
            got.append(await c.fetchval(f'SELECT v FROM {table} WHERE id = $1', i))
        check('nested transactions (SAVEPOINT first) on keys of either shard', got, [f'n{i}' for i in range(74000, 74008)])
        await c.close()

    async def main():
        await group('setup', setup())
        if sharded:
            await group('sharded keys', sharded_keys())
            await group('sharded binary copy', sharded_copy())
            return
        await group('executemany', executemany())
        await group('cursors', cursors())
        await group('copy', copies())
        await group('pool', pool())
        await group('multi-statement execute', multi())
        await group('types', types())
        await group('cancel', cancel())

    asyncio.run(main())


def main():
    mode, port, db, table = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sharded = len(sys.argv) > 5 and sys.argv[5] == 'sharded'
    if mode == 'psycopg':
        run_psycopg(port, db, table, sharded)
    elif mode == 'asyncpg':
        run_asyncpg(port, db, table, sharded)
    else:
        sys.exit(f'unknown mode {mode}')
    print('end', flush=True)


if __name__ == '__main__':
    main()
