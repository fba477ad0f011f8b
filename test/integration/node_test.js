/*
 * node_test.js - node-postgres (npm package pg) against shardpool in transaction
 * pooling; driven by test/integration/61_node.t.
 *
 *   NODE_PATH=DIR/node_modules node node_test.js PORT DATABASE TABLE
 *
 * Connects as app/secret (SCRAM). Every check prints one line
 *   check<TAB>description<TAB>got<TAB>expected
 * which the .t turns into a TAP `is`; other lines are diagnostics; `end` comes last.
 * Named queries ({name, text, values}) are the point: node-postgres prepares them once
 * per connection under the client's own name and afterwards sends only Bind/Execute,
 * so shardpool must map each client's names onto its server connections.
 *
 * Deliberately not here: LISTEN/NOTIFY (refused in transaction pooling by design).
 */
'use strict';
const pg = require('pg');

const [port, database, table] = process.argv.slice(2);
const config = {
	host: '127.0.0.1',
	port: Number(port),
	user: 'app',
	password: 'secret',
	database,
	connectionTimeoutMillis: 20000,
	query_timeout: 10000,
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

async function connect(extra)
{
	const c = new pg.Client({...config, ...extra});
	await c.connect();
	return c;
}

async function group(name, fn)
{
	const t0 = Date.now();
	try {
		await fn();
	} catch (e) {
		check(`${name}: completes without an exception`, describe(e), 'no exception');
	}
	console.log(`${name} took ${Date.now() - t0} ms`);
}

async function one(c, q)
{
	const r = await c.query(q);
	const row = r.rows[0];
	return row ? String(Object.values(row)[0]) : '(no row)';
}

async function main()
{
	await group('connect', async () => {
		const c = await connect();
		check('SELECT 1 through shardpool', await one(c, 'SELECT 1 AS x'), '1');
		check('current_user is app', await one(c, 'SELECT current_user'), 'app');
		await c.query(`DROP TABLE IF EXISTS ${table}`);
		await c.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`);
		await c.end();
	});

	/*
	 * 8 clients in parallel, each with the same query names for different SQL,
	 * 500 rounds of three named queries, all over two server connections.
	 */
	await group('named queries from 8 clients', async () => {
		const clients = await Promise.all([...Array(8).keys()].map(() => connect()));
		let good = 0, bad = 0;
		const errs = [];
		await Promise.all(clients.map(async (c, k) => {
			for (let i = 0; i < 500; i++) {
				const qs = [
					[{name: 'q1', text: `SELECT $1::int * 3 + ${k} AS r`, values: [i]}, String(i * 3 + k)],
					[{name: 'q2', text: `SELECT $1::text || '/' || $2::text || '/${k}' AS r`, values: ['c' + k, i]}, `c${k}/${i}/${k}`],
					[{name: `q3_${k % 2}`, text: `SELECT count(*) AS r FROM generate_series(1, $1::int + ${k % 2})`, values: [i % 20]}, String(i % 20 + k % 2)],
				];
				for (const [q, exp] of qs) {
					try {
						const r = await c.query(q);
						const got = String(r.rows[0].r);
						if (got === exp) {
							good++;
						} else if (++bad <= 5) {
							errs.push(`client ${k} round ${i} ${q.name}: got ${got}, expected ${exp}`);
						}
					} catch (e) {
						if (++bad <= 5)
							errs.push(`client ${k} round ${i} ${q.name}: ${describe(e)}`);
					}
				}
			}
		}));
		errs.forEach((e) => console.log(e));
		check('8 clients x 500 rounds x 3 named queries: right results', good, 8 * 500 * 3);
		check('8 clients x 500 rounds x 3 named queries: no wrong result or error', bad, 0);
		await Promise.all(clients.map((c) => c.end()));
	});

	await group('errors', async () => {
		const c = await connect();
		let code = 'none';
		try {
			await c.query('SELECT 1/0');
		} catch (e) {
			code = e.code;
		}
		check('division by zero raises 22012', code, '22012');
		check('the connection works after an error', await one(c, "SELECT 'alive'"), 'alive');
		/* a named query that fails at execution, then runs again fine */
		const q = (v) => ({name: 'div', text: 'SELECT 100 / $1::int AS r', values: [v]});
		check('named query before its error', (await c.query(q(4))).rows[0].r, 25);
		code = 'none';
		try {
			await c.query(q(0));
		} catch (e) {
			code = e.code;
		}
		check('named query with a zero divisor raises 22012', code, '22012');
		check('the same named query works after its error', (await c.query(q(5))).rows[0].r, 20);
		/* a named query whose Parse fails, then one with the same name and good SQL */
		code = 'none';
		try {
			await c.query({name: 'broken', text: 'SELEC $1::int', values: [1]});
		} catch (e) {
			code = e.code;
		}
		check('a named query with a syntax error raises 42601', code, '42601');
		check('the connection works after a failed Parse', await one(c, 'SELECT 3'), '3');
		let got;
		try {
			got = (await c.query({name: 'broken', text: 'SELECT $1::int AS r', values: [7]})).rows[0].r;
		} catch (e) {
			got = describe(e);
		}
		check('the name of a statement that failed to parse can be used again', got, 7);
		/* errors in a transaction */
		await c.query('BEGIN');
		code = 'none';
		try {
			await c.query({name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [1, 'a']});
			await c.query({name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [1, 'b']});
		} catch (e) {
			code = e.code;
		}
		check('duplicate key raises 23505', code, '23505');
		code = 'none';
		try {
			await c.query('SELECT 1');
		} catch (e) {
			code = e.code;
		}
		check('the aborted transaction refuses statements with 25P02', code, '25P02');
		await c.query('ROLLBACK');
		check('after ROLLBACK the row is gone', await one(c, `SELECT count(*) FROM ${table} WHERE id = 1`), '0');
		await c.end();
	});

	await group('transactions', async () => {
		const c = await connect(), other = await connect();
		await c.query('BEGIN');
		const pid = await one(c, 'SELECT pg_backend_pid()');
		await c.query({name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [100, 'committed']});
		check('a transaction stays on one server connection', await one(c, 'SELECT pg_backend_pid()'), pid);
		check('uncommitted row is invisible to another client', await one(other, `SELECT count(*) FROM ${table} WHERE id = 100`), '0');
		await c.query('COMMIT');
		check('committed row is visible to another client', await one(other, `SELECT v FROM ${table} WHERE id = 100`), 'committed');
		await c.query('BEGIN');
		await c.query({name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [101, 'rolled back']});
		check('row is visible inside its own transaction', await one(c, `SELECT count(*) FROM ${table} WHERE id = 101`), '1');
		await c.query('ROLLBACK');
		check('rolled-back row is gone', await one(other, `SELECT count(*) FROM ${table} WHERE id = 101`), '0');
		/* many short transactions from several clients at once */
		const cs = await Promise.all([...Array(6).keys()].map(() => connect()));
		await Promise.all(cs.map(async (x, k) => {
			for (let i = 0; i < 50; i++) {
				await x.query('BEGIN');
				await x.query({name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [1000 + k * 100 + i, 'tx']});
				await x.query(i % 2 ? 'COMMIT' : 'ROLLBACK');
			}
		}));
		check('6 clients x 50 transactions: the committed half is there',
		      await one(other, `SELECT count(*) FROM ${table} WHERE v = 'tx'`), '150');
		await Promise.all(cs.map((x) => x.end()));
		await c.end();
		await other.end();
	});

	/* pg.Pool of 10 clients, 2000 named queries */
	await group('pg.Pool', async () => {
		const pool = new pg.Pool({...config, max: 10});
		let good = 0, bad = 0;
		const errs = [];
		await Promise.all([...Array(2000).keys()].map(async (i) => {
			try {
				const r = await pool.query({name: `p${i % 7}`, text: `SELECT $1::int + ${i % 7} AS r`, values: [i]});
				if (r.rows[0].r === i + i % 7)
					good++;
				else if (++bad <= 5)
					errs.push(`query ${i}: got ${r.rows[0].r}`);
			} catch (e) {
				if (++bad <= 5)
					errs.push(`query ${i}: ${describe(e)}`);
			}
		}));
		errs.forEach((e) => console.log(e));
		check('2000 pooled named queries: right results', good, 2000);
		check('2000 pooled named queries: no error', bad, 0);
		await pool.end();
	});

	await group('other protocol features', async () => {
		const c = await connect({application_name: 'node app'});
		check('application_name from the startup packet', await one(c, 'SHOW application_name'), 'node app');
		const notices = [];
		c.on('notice', (n) => notices.push(n.message));
		await c.query("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$");
		check('a NOTICE reaches the client', notices.join(','), 'hello from plpgsql');
		const multi = await c.query('SELECT 1 AS a; SELECT 2 AS b');
		check('two statements in one simple query', multi.map((r) => Object.values(r.rows[0])[0]).join(','), '1,2');
		const bin = await c.query({text: 'SELECT $1::int AS i, $2::bool AS b', values: [42, true], binary: true});
		check('binary results: int4 and bool', `${bin.rows[0].i},${bin.rows[0].b}`, '42,true');
		await c.query("SET TimeZone = 'Asia/Tokyo'");
		const other = await connect();
		let wrong = 0;
		for (let i = 0; i < 50; i++) {
			if ((await one(c, 'SHOW TimeZone')) !== 'Asia/Tokyo' || (await one(other, 'SHOW TimeZone')) === 'Asia/Tokyo')
				wrong++;
		}
		check('SET TimeZone holds for its client only', wrong, 0);
		await other.end();
		await c.end();
	});

	/* a 4 MB parameter: node-postgres writes Parse, Bind, Describe, Execute, Sync at once */
	await group('large values', async () => {
		const c = await connect();
		const big = 'x'.repeat(4 << 20);
		let got = '';
		for (let i = 0; i < 3; i++) {
			const r = await c.query({name: 'len', text: 'SELECT length($1::text) AS n, md5($1::text) = md5(repeat(\'x\', 4194304)) AS same', values: [big]});
			got += `${r.rows[0].n}:${r.rows[0].same},`;
		}
		check('a 4 MB parameter, three times', got, '4194304:true,'.repeat(3));
		await c.end();
	});

	await group('drop table', async () => {
		const c = await connect();
		await c.query("SET lock_timeout = '2s'");
		await c.query(`DROP TABLE ${table}`);
		await c.end();
	});
	console.log('end');
}

main().then(() => process.exit(0), (e) => {
	console.log(`fatal: ${describe(e)}`);
	process.exit(1);
});
