/*
 * postgresjs_test.js - postgres.js (npm package postgres) and node-postgres's
 * pg-cursor / pg-query-stream against shardpool in transaction pooling; driven by
 * test/integration/64_driver_edges.t.
 *
 *   NODE_PATH=DIR/node_modules node postgresjs_test.js PORT DATABASE TABLE [sharded]
 *
 * Connects as app/secret. Every check prints one line
 *   check<TAB>description<TAB>got<TAB>expected
 * which the .t turns into a TAP `is`; other lines are diagnostics; `end` comes last.
 * The same program runs unchanged against PostgreSQL itself (DATABASE app on the
 * primary's port), which is how a failing check is told apart from a driver quirk.
 *
 * What these drivers do that simpler ones do not: postgres.js pipelines every query as
 * its own Parse/Bind/Describe/Execute/Sync (named statements, the same names on every
 * connection), streams cursors with Execute(max rows) + Flush and no Sync between
 * batches, and copies with CopyData streams; pg-cursor and pg-query-stream suspend a
 * portal (PortalSuspended) and come back for more rows.
 *
 * With `sharded`, TABLE is sharded by id in DATABASE, and only statements that name the
 * key (or fan out outside a transaction) are used.
 *
 * Deliberately not here: LISTEN/NOTIFY (refused in transaction pooling by design).
 */
'use strict';
const postgres = require('postgres');
const pg = require('pg');
const Cursor = require('pg-cursor');
const QueryStream = require('pg-query-stream');
const {Readable, Writable} = require('stream');
const {pipeline} = require('stream/promises');

const [port, database, table, mode] = process.argv.slice(2);
const sharded = mode === 'sharded';
const opts = {
	host: '127.0.0.1',
	port: Number(port),
	user: 'app',
	password: 'secret',
	database,
	connect_timeout: 20,
	idle_timeout: 5,
	onnotice: () => {},
};

function clean(v)
{
	return String(v).replace(/[\t\n]/g, ' ');
}

function check(desc, got, expected)
{
	console.log(`check\t${clean(desc)}\t${clean(got)}\t${clean(expected)}`);
}

function describe(e)
{
	return e && e.code ? `${e.code}: ${e.message}` : String(e);
}

function code(e)
{
	return e && e.code ? e.code : String(e);
}

/* a group that hangs must not hang the whole program */
function within(ms, p, what)
{
	let t;
	return Promise.race([p, new Promise((_, rej) => {
		t = setTimeout(() => rej(new Error(`timeout: ${what} took more than ${ms} ms`)), ms);
	})]).finally(() => clearTimeout(t));
}

async function group(name, fn)
{
	const t0 = Date.now();
	try {
		await within(40000, fn(), name);
	} catch (e) {
		check(`${name}: completes without an exception`, describe(e), 'no exception');
	}
	console.log(`${name} took ${Date.now() - t0} ms`);
}

async function pgclient()
{
	const c = new pg.Client({host: opts.host, port: opts.port, user: 'app', password: 'secret',
		database, connectionTimeoutMillis: 20000});
	await c.connect();
	return c;
}

function cursorRead(cursor, n)
{
	return new Promise((res, rej) => cursor.read(n, (err, rows) => err ? rej(err) : res(rows)));
}

function cursorClose(cursor)
{
	return new Promise((res) => cursor.close(() => res()));
}

/* background load: other clients keep both server connections busy */
function load(stop)
{
	const ps = [];
	for (let i = 0; i < 6; i++) {
		ps.push((async () => {
			const s = postgres({...opts, max: 1});
			let n = 0;
			try {
				while (!stop.done) {
					const r = await s`SELECT ${n}::int + 1 AS x`;
					if (r[0].x !== n + 1)
						stop.bad++;
					n++;
				}
			} catch (e) {
				stop.err = describe(e);
			}
			await s.end({timeout: 5});
			return n;
		})());
	}
	return ps;
}

async function main()
{
	const sql = postgres({...opts, max: 1});

	await group('setup', async () => {
		/* a sharded table is created on every shard by the caller */
		if (!sharded) {
			await sql.unsafe(`DROP TABLE IF EXISTS ${table}`);
			await sql.unsafe(`CREATE TABLE ${table} (id bigint PRIMARY KEY, v text NOT NULL)`);
		}
		check('postgres.js SELECT through shardpool', (await sql`SELECT 1 AS x`)[0].x, 1);
	});

	await group('pipelined named statements on one connection', async () => {
		/* max: 1 and Promise.all: 50 Parse/Bind/Execute/Sync in flight on one socket */
		const ps = [];
		for (let i = 0; i < 50; i++)
			ps.push(sql`SELECT ${i}::int * ${i % 7}::int AS x, ${'k' + i}::text AS k`);
		const rs = await Promise.all(ps);
		let good = 0;
		rs.forEach((r, i) => { if (r[0].x === i * (i % 7) && r[0].k === 'k' + i) good++; });
		check('50 concurrent queries on one connection each get their own answer', good, 50);
		/* 120 different statement texts, each prepared (named) once and run twice */
		const qs = [];
		for (let round = 0; round < 2; round++)
			for (let k = 0; k < 120; k++)
				qs.push(sql.unsafe(`SELECT $1::int + ${k} AS x`, [round], {prepare: true}));
		const r2 = await Promise.all(qs);
		good = 0;
		r2.forEach((r, i) => { if (r[0].x === Math.floor(i / 120) + (i % 120)) good++; });
		check('240 pipelined executions of 120 named statements', good, 240);
	});

	await group('errors in the middle of a pipeline', async () => {
		const rs = await Promise.allSettled([
			sql`SELECT 1 AS x`,
			sql`SELECT 1 / ${0}::int AS x`,
			sql`SELECT 3 AS x`,
			sql.unsafe('SELEC 4'),
			sql`SELECT ${5}::int AS x`,
			sql`SELECT * FROM no_such_table_drv`,
			sql`SELECT 7 AS x`,
		]);
		const got = rs.map((r) => r.status === 'fulfilled' ? r.value[0].x : code(r.reason)).join(',');
		check('each query of a pipeline gets its own result or error', got, '1,22012,3,42601,5,42P01,7');
		check('the connection works after the pipeline', (await sql`SELECT 8 AS x`)[0].x, 8);
	});

	await group('sql.begin', async () => {
		const n = await sql.begin(async (tx) => {
			const ins = [];
			/* one key per transaction when sharded: no cross-shard transactions */
			for (let i = 1; i <= (sharded ? 1 : 20); i++)
				ins.push(tx`INSERT INTO ${tx(table)} (id, v) VALUES (${i}, ${'v' + i})`);
			await Promise.all(ins);
			try {
				await tx.savepoint(async (sp) => {
					await sp`INSERT INTO ${sp(table)} (id, v) VALUES (${sharded ? 1 : 21}, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'`;
					await sp`INSERT INTO ${sp(table)} (id, v) VALUES (${1}, 'dup')`;
				});
			} catch (e) {
				check('duplicate key inside a savepoint', code(e), '23505');
			}
			const r = sharded ?
				await tx`SELECT v FROM ${tx(table)} WHERE id = ${1}` :
				await tx`SELECT count(*)::int AS n FROM ${tx(table)} WHERE v <> 'x'`;
			return sharded ? r[0].v : r[0].n;
		});
		check('rows seen inside the transaction after the savepoint rolled back', n, sharded ? 'v1' : 20);
		const k = sharded ? 1 : 7;
		const r = await sql`SELECT v FROM ${sql(table)} WHERE id = ${k}`;
		check('committed row is there', r.length ? r[0].v : '(none)', `v${k}`);
		if (sharded) {
			/* fill the other keys the later groups read, one transaction each */
			for (let i = 2; i <= 20; i++)
				await sql.begin((tx) => tx`INSERT INTO ${tx(table)} (id, v) VALUES (${i}, ${'v' + i})`);
		}
		let err = 'no error';
		try {
			await sql.begin(async (tx) => {
				await tx`INSERT INTO ${tx(table)} (id, v) VALUES (${100}, 'rolled back')`;
				/* three in flight: the second fails, the third is skipped by the server */
				const a = tx`SELECT 1 AS x`;
				const b = tx`SELECT 1 / ${0}::int AS x`;
				const c = tx`SELECT 3 AS x`;
				const rs = await Promise.allSettled([a, b, c]);
				check('pipeline inside a transaction: ok, error, aborted',
					rs.map((x) => x.status === 'fulfilled' ? x.value[0].x : code(x.reason)).join(','),
					'1,22012,25P02');
				throw new Error('rollback please');
			});
		} catch (e) {
			err = e.message;
		}
		check('sql.begin rolls back on an exception', err, 'rollback please');
		const r3 = await sql`SELECT count(*)::int AS n FROM ${sql(table)} WHERE id = ${100}`;
		check('the rolled-back row is not there', r3[0].n, 0);
	});

	await group('cursors', async () => {
		let rows = 0, sum = 0, batches = 0;
		await sql`SELECT x FROM generate_series(1, 1000) AS x`.cursor(100, async (batch) => {
			batches++;
			for (const r of batch) { rows++; sum += r.x; }
			await new Promise((res) => setTimeout(res, 2));
		});
		check('cursor(100) outside a transaction: rows, sum, batches', `${rows} ${sum} ${batches}`, '1000 500500 10');
		/* the same while 6 other clients compete for the 2 server connections */
		const stop = {done: false, bad: 0};
		const bg = load(stop);
		rows = 0; sum = 0;
		await sql`SELECT x FROM generate_series(1, 2000) AS x`.cursor(50, async (batch) => {
			for (const r of batch) { rows++; sum += r.x; }
			await new Promise((res) => setTimeout(res, 1));
		});
		stop.done = true;
		const done = await Promise.all(bg);
		check('cursor(50) under load: rows, sum', `${rows} ${sum}`, '2000 2001000');
		check('the other clients got right answers meanwhile', `${stop.bad} ${stop.err || 'no error'}`, '0 no error');
		console.log(`background queries during the cursor: ${done.join(',')}`);
		/* closed early with sql.CLOSE, then the connection goes on */
		rows = 0;
		await sql`SELECT x FROM generate_series(1, 1000) AS x`.cursor(10, (batch) => {
			rows += batch.length;
			return rows >= 30 && sql.CLOSE;
		});
		check('cursor closed early after three batches', rows, 30);
		check('query after a closed cursor', (await sql`SELECT 9 AS x`)[0].x, 9);
		/* inside a transaction, reading the table */
		const got = await sql.begin(async (tx) => {
			let n = 0, s = 0;
			const q = sharded ?
				tx`SELECT id FROM ${tx(table)} WHERE id = ${5} OR id = ${5}` :
				tx`SELECT id FROM ${tx(table)} ORDER BY id`;
			for await (const batch of q.cursor(3)) {
				for (const r of batch) { n++; s += Number(r.id); }
			}
			const after = await tx`SELECT ${'still in'}::text AS t`;
			return `${n} ${s} ${after[0].t}`;
		});
		check('cursor(3) inside sql.begin, then another query', got, sharded ? '1 5 still in' : '20 210 still in');
		/* an error in the middle of a cursor */
		let e1 = 'no error';
		rows = 0;
		try {
			await sql`SELECT 1 / (x - 250) AS y FROM generate_series(1, 1000) AS x`.cursor(100, (b) => { rows += b.length; });
		} catch (e) {
			e1 = code(e);
		}
		check('cursor over a query that fails on row 250', `${e1} ${rows}`, '22012 200');
		/* postgres.js 3.4 pads the first result after a failed cursor with empty
		 * slots (directly against PostgreSQL too): look at its last row */
		const after = await sql`SELECT 10 AS x`;
		check('query after the failed cursor', after[after.length - 1].x, 10);
	});

	await group('forEach', async () => {
		let n = 0, s = 0;
		await sql`SELECT x FROM generate_series(1, 5000) AS x`.forEach((r) => { n++; s += r.x; });
		check('forEach over 5000 rows', `${n} ${s}`, '5000 12502500');
	});

	await group('COPY streams', async () => {
		const lines = [];
		for (let i = 1000; i < 3000; i++)
			lines.push(`${i}\trow ${i}\n`);
		const w = await sql`COPY ${sql(table)} (id, v) FROM STDIN`.writable();
		await pipeline(Readable.from(lines), w);
		const c = sharded ?
			await sql`SELECT count(*)::int AS n FROM ${sql(table)} WHERE id = ${1999}` :
			await sql`SELECT count(*)::int AS n FROM ${sql(table)} WHERE id >= 1000`;
		check('COPY FROM STDIN via writable()', c[0].n, sharded ? 1 : 2000);
		/* a connection of its own, used for nothing else: postgres.js 3.4 may hang
		 * the next query after a readable() (directly against PostgreSQL too) */
		const rsql = postgres({...opts, max: 1});
		const r = await rsql`COPY (SELECT x, 'r' || x FROM generate_series(1, 3000) AS x) TO STDOUT`.readable();
		let text = '';
		/* pipeline(), not for await: postgres.js 3.4 leaves the connection busy after a
		 * readable() consumed with for await (directly against PostgreSQL too) */
		await pipeline(r, new Writable({write(chunk, enc, cb) { text += chunk.toString(); cb(); }}));
		const ls = text.split('\n').filter((l) => l);
		let s = 0;
		for (const l of ls) s += Number(l.split('\t')[0]);
		check('COPY TO STDOUT via readable()', `${ls.length} ${s} ${ls[2999]}`, '3000 4501500 3000\tr3000');
		/* not here: a COPY FROM that the server fails, which postgres.js 3.4's
		 * writable() never settles (directly against PostgreSQL too) */
		rsql.end({timeout: 1}).catch(() => {});
		check('query after COPY FROM', (await sql`SELECT 12 AS x`)[0].x, 12);
	});

	await group('unsafe and simple', async () => {
		const r = await sql.unsafe('SELECT 1 AS a; SELECT 2 AS b, 3 AS c').simple();
		check('simple multi-statement: two results', `${r.length} ${r[0][0].a} ${r[1][0].b} ${r[1][0].c}`, '2 1 2 3');
		/* one key: a query string runs as one transaction, on one shard */
		const r2 = await sql.unsafe(`INSERT INTO ${table} (id, v) VALUES (9002, 'a'); UPDATE ${table} SET v = 'b' WHERE id = 9002; SELECT v FROM ${table} WHERE id = 9002`);
		check('sql.unsafe with three statements (no parameters)', r2[r2.length - 1][0].v, 'b');
		let e1 = 'no error';
		try {
			await sql.unsafe(`SELECT 1; SELECT 1/0; SELECT 3`).simple();
		} catch (e) {
			e1 = code(e);
		}
		check('simple multi-statement with an error in the middle', e1, '22012');
		const r3 = await sql.unsafe('SELECT $1::int + 1 AS x', [41]);
		check('sql.unsafe with a parameter (unnamed statement)', r3[0].x, 42);
		const d = await sql`SELECT ${1}::int AS a, ${'x'}::text AS b`.describe();
		check('describe(): parameter and column types', `${d.types.join(',')} ${d.columns.map((c) => c.name).join(',')}`, '23,25 a,b');
	});

	await group('many postgres.js clients', async () => {
		/* 20 instances x 2 connections over a pool of 2: the same statement names everywhere */
		const clients = [];
		for (let i = 0; i < 20; i++)
			clients.push(postgres({...opts, max: 2}));
		const per = await Promise.all(clients.map(async (s, ci) => {
			const ps = [];
			for (let j = 0; j < 60; j++) {
				if (j % 3 === 0)
					ps.push(s`SELECT ${ci}::int * 1000 + ${j}::int AS x`.then((r) => r[0].x === ci * 1000 + j));
				else if (j % 3 === 1)
					ps.push(s`SELECT ${'c' + ci}::text || ${j}::text AS x`.then((r) => r[0].x === `c${ci}${j}`));
				else
					ps.push(s.begin((tx) => tx`SELECT ${j}::int AS x`).then((r) => r[0].x === j));
			}
			const ok = await Promise.all(ps);
			await s.end({timeout: 5});
			return ok.filter((x) => x).length;
		}));
		check('20 clients x 60 queries (plain, text, in sql.begin)', per.reduce((a, b) => a + b, 0), 1200);
	});

	await sql.end({timeout: 5});

	await group('pg-cursor in a transaction', async () => {
		const c = await pgclient();
		await c.query('BEGIN');
		const cur = c.query(new Cursor('SELECT x, md5(x::text) AS h FROM generate_series(1, 1000) AS x WHERE x > $1', [0]));
		let n = 0, s = 0, reads = 0;
		for (;;) {
			const rows = await cursorRead(cur, 64);
			reads++;
			if (!rows.length)
				break;
			for (const r of rows) { n++; s += r.x; }
		}
		await cursorClose(cur);
		check('pg-cursor read(64) until empty: rows, sum, reads', `${n} ${s} ${reads}`, '1000 500500 17');
		const r = await c.query('SELECT 2 AS x');
		check('query after the cursor, same transaction', r.rows[0].x, 2);
		await c.query('COMMIT');
		/* a portal left open half-read, closed, and the transaction goes on */
		await c.query('BEGIN');
		const cur2 = c.query(new Cursor('SELECT x FROM generate_series(1, 100) AS x'));
		const first = await cursorRead(cur2, 10);
		await cursorClose(cur2);
		const r2 = await c.query('SELECT 3 AS x');
		await c.query('COMMIT');
		check('half-read cursor closed, then a query', `${first.length} ${first[9].x} ${r2.rows[0].x}`, '10 10 3');
		/* an error in the third batch */
		await c.query('BEGIN');
		const cur3 = c.query(new Cursor('SELECT 1 / (x - 25) AS y FROM generate_series(1, 100) AS x'));
		let got = 0, e1 = 'no error';
		try {
			for (;;) {
				const rows = await cursorRead(cur3, 10);
				if (!rows.length) break;
				got += rows.length;
			}
		} catch (e) {
			e1 = code(e);
		}
		check('cursor failing in its third batch', `${e1} ${got}`, '22012 20');
		let e2 = 'no error';
		try { await c.query('SELECT 1'); } catch (e) { e2 = code(e); }
		check('the transaction is aborted after the failed cursor', e2, '25P02');
		await c.query('ROLLBACK');
		check('query after ROLLBACK', (await c.query('SELECT 4 AS x')).rows[0].x, 4);
		await c.end();
	});

	await group('pg-cursor outside a transaction, under load', async () => {
		/* Execute(max rows) + Flush with no Sync: the portal lives only as long as the
		 * server connection stays with this client */
		const c = await pgclient();
		const stop = {done: false, bad: 0};
		const bg = load(stop);
		const cur = c.query(new Cursor('SELECT x FROM generate_series(1, 500) AS x'));
		let n = 0, s = 0;
		for (;;) {
			const rows = await cursorRead(cur, 25);
			if (!rows.length) break;
			for (const r of rows) { n++; s += r.x; }
			await new Promise((res) => setTimeout(res, 3));
		}
		await cursorClose(cur);
		stop.done = true;
		await Promise.all(bg);
		check('pg-cursor read(25) outside a transaction while others run', `${n} ${s}`, '500 125250');
		check('the other clients got right answers meanwhile', `${stop.bad} ${stop.err || 'no error'}`, '0 no error');
		check('query afterwards', (await c.query('SELECT 5 AS x')).rows[0].x, 5);
		await c.end();
	});

	await group('pg-query-stream', async () => {
		const c = await pgclient();
		await c.query('BEGIN');
		const stream = c.query(new QueryStream('SELECT x FROM generate_series(1, $1::int) AS x', [10000], {batchSize: 100}));
		let n = 0, s = 0;
		for await (const r of stream) { n++; s += r.x; }
		check('pg-query-stream of 10000 rows, batchSize 100, in a transaction', `${n} ${s}`, '10000 50005000');
		await c.query('COMMIT');
		/* two clients streaming at once, each in its own transaction, pool of 2 */
		const twos = await Promise.all([1, 2, 3].map(async (k) => {
			const cc = await pgclient();
			await cc.query('BEGIN');
			const st = cc.query(new QueryStream('SELECT x * $1::int AS x FROM generate_series(1, 3000) AS x', [k], {batchSize: 7}));
			let t = 0;
			for await (const r of st) t += r.x;
			await cc.query('COMMIT');
			await cc.end();
			return t;
		}));
		check('three streams at once (pool of 2)', twos.join(','), '4501500,9003000,13504500');
		await c.end();
	});

	if (sharded) {
		await group('sharded: keys on both shards', async () => {
			const s = postgres({...opts, max: 1});
			const ids = [];
			for (let i = 0; i < 40; i++) ids.push(50000 + i);
			/* 40 inserts pipelined on one connection, keys on every shard */
			await Promise.all(ids.map((id) => s`INSERT INTO ${s(table)} (id, v) VALUES (${id}, ${'s' + id})`));
			/* read back with the simple protocol, whose routing sees the key in the text */
			const rs = await Promise.all(ids.map((id) => s.unsafe(`SELECT v FROM ${table} WHERE id = ${id}`).simple()));
			check('40 pipelined by-key inserts read back by key', rs.filter((r, i) => r.length && r[0].v === 's' + ids[i]).length, 40);
			/* count(*) itself: an expression over it would not merge across shards */
			const c = await s`SELECT count(*) AS n FROM ${s(table)} WHERE id >= 50000 AND id < 50040`;
			check('count over all shards', c[0].n, '40');
			await s.end({timeout: 5});
		});
	}

	console.log('end');
}

main().then(() => process.exit(0), (e) => {
	console.log(`fatal: ${describe(e)}`);
	process.exit(1);
});
