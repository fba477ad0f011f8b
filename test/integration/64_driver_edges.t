#!/bin/bash
# 64_driver_edges.t - the protocol edges real drivers reach, through shardpool in
# transaction pooling with a pool of two server connections and many clients.
#
# postgresjs_test.js: postgres.js (npm package postgres) pipelining named statements,
# sql.begin with savepoints, cursors (Execute with a row limit and Flush, no Sync between
# batches), forEach, COPY streams, multi-statement strings, errors in the middle of a
# pipeline, 50 queries in flight on one connection; node-postgres's pg-cursor and
# pg-query-stream (PortalSuspended, then more Executes) in and out of transactions.
# py_edges.py: psycopg 3 pipeline mode, executemany (with returning), named cursors,
# prepare_threshold=0, COPY, conn.cancel(); asyncpg executemany, cursors with prefetch,
# binary COPY, a pool sharing statement names, multi-statement execute(), enum and
# composite introspection, cancellation by timeout.
#
# Each program runs against database plain, and again against database app with its
# table sharded by id over the sandbox's two shards, where a statement's shard comes from
# its Bind parameters. Each check becomes one TAP line here (run_checks, lib.sh); the
# same programs pass directly against PostgreSQL (DATABASE app on the primary's port).
#
# Deliberately not here: what 61_node.t and 62_python.t already cover in plain form.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
have_node=1 have_py=1
command -v node >/dev/null && command -v npm >/dev/null || have_node=0
[ -x "$PY" ] && "$PY" -c 'import psycopg, asyncpg' 2>/dev/null || have_py=0
[ $have_node = 1 ] || [ $have_py = 1 ] || skip_all "neither node/npm nor $PY with psycopg and asyncpg is installed"



NODE_DIR=$SP_TEST_TMP/node
if [ $have_node = 1 ]; then
	(
		flock -w 300 9 || exit 1
		[ -f "$NODE_DIR/node_modules/postgres/package.json" ] && [ -f "$NODE_DIR/node_modules/pg-query-stream/package.json" ] &&
			[ -f "$NODE_DIR/node_modules/pg/package.json" ] && exit 0
		mkdir -p "$NODE_DIR"
		timeout 180 npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
			pg@8 postgres@3 pg-cursor@2 pg-query-stream@4 >"$SP_TMP/npm.log" 2>&1
	) 9>"$SP_TEST_TMP/node.lock" || { diag "cannot install postgres.js and pg-cursor from npm: $(tail -n 3 "$SP_TMP/npm.log" 2>/dev/null | tr '\n' ' ')"; have_node=0; }
fi
[ $have_node = 1 ] && diag "node $(node --version), postgres $(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$NODE_DIR/node_modules/postgres/package.json")"
[ $have_py = 1 ] && diag "psycopg $("$PY" -c 'import psycopg; print(psycopg.__version__)'), asyncpg $("$PY" -c 'import asyncpg; print(asyncpg.__version__)')"

sandbox_ensure 2 1
T=drv_$$_$RANDOM
STAB=${T}_sh
at_exit "on_all 'DROP TABLE IF EXISTS $STAB' 2>/dev/null"
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS ${T}_js, ${T}_psycopg, ${T}_asyncpg; DROP TYPE IF EXISTS drv_comp; DROP TYPE IF EXISTS drv_mood' >/dev/null 2>&1"
on_all "CREATE TABLE $STAB (id bigint PRIMARY KEY, v text NOT NULL)" || bail_out "cannot create $STAB on the shards"

sp_write_config "$SP_TMP/shardpool.ini" pool_mode=transaction default_pool_size=2 \
	max_client_conn=300 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info}
# rows one client writes are read back at once: no replica reads in app
sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
printf '\n[table app.%s]\nkey = id\ntype = bigint\n' "$STAB" >>"$SP_CONFIG"
sp_start
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through shardpool to plain"
# rows on both shards, placed by shardpool from simple-protocol INSERTs
is "$(for k in 900001 900002 900003 900004; do sp_psql -d app -c "INSERT INTO $STAB (id, v) VALUES ($k, 'simple')"; done 2>&1)" "" \
	"simple-protocol INSERTs into the sharded table"
is "$(pg_psql "$SB_PRIMARY_PORT_0" -c "SELECT count(*) FROM $STAB")$(pg_psql "$SB_PRIMARY_PORT_1" -c "SELECT count(*) FROM $STAB")" 22 \
	"the four keys are spread over both shards"

if [ $have_node = 1 ]; then
	JS=(env NODE_PATH="$NODE_DIR/node_modules" node "$SP_SRCDIR/test/integration/postgresjs_test.js" "$SP_PORT")
	run_checks "postgres.js plain" "${JS[@]}" plain "${T}_js"
	run_checks "postgres.js sharded" "${JS[@]}" app "$STAB" sharded
fi
if [ $have_py = 1 ]; then
	for m in psycopg asyncpg; do
		run_checks "$m plain" "$PY" "$SP_SRCDIR/test/integration/py_edges.py" $m "$SP_PORT" plain "${T}_$m"
		run_checks "$m sharded" "$PY" "$SP_SRCDIR/test/integration/py_edges.py" $m "$SP_PORT" app "$STAB" sharded
	done
fi
is "$(sp_psql -d plain -c 'SELECT 42' 2>&1)" 42 "shardpool still answers psql"
done_testing
