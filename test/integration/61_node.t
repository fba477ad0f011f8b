#!/bin/bash
# 61_node.t - node-postgres (npm package pg), a real JavaScript driver, through
# shardpool in transaction pooling.
#
# pg is installed from the npm registry into $SP_TEST_TMP/node (once per machine; later
# runs reuse it). node_test.js connects as app (SCRAM) to database plain over a pool of
# two server connections: named queries ({name, text, values}) from 8 clients in
# parallel with the same names meaning different SQL, query errors (at execution and at
# Parse), transactions, a pg.Pool of 10 doing 2000 named queries, notices, multi-
# statement queries, binary results, SET, and a 4 MB parameter. Each of its checks
# becomes one TAP line here.
. "$(dirname "$0")/lib.sh"

command -v node >/dev/null || skip_all "node is not installed (apt-get install nodejs)"
command -v npm >/dev/null || skip_all "npm is not installed (apt-get install npm)"


NODE_DIR=$SP_TEST_TMP/node
(
	flock -w 300 9 || exit 1
	[ -f "$NODE_DIR/node_modules/pg/package.json" ] && exit 0
	mkdir -p "$NODE_DIR"
	timeout 180 npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error pg@8 >"$SP_TMP/npm.log" 2>&1
) 9>"$SP_TEST_TMP/node.lock" || skip_all "cannot install pg from the npm registry: $(tail -n 3 "$SP_TMP/npm.log" 2>/dev/null | tr '\n' ' ')"
[ -f "$NODE_DIR/node_modules/pg/package.json" ] || skip_all "npm did not install pg into $NODE_DIR"
diag "node $(node --version), pg $(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$NODE_DIR/node_modules/pg/package.json")"

sandbox_ensure 2 1
sp_write_config "$SP_TMP/shardpool.ini" pool_mode=transaction default_pool_size=2 \
	max_client_conn=200 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info}
sp_start
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through shardpool to plain"

TABLE=node_t_$$_$RANDOM
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS $TABLE' >/dev/null 2>&1"
run_checks "node-postgres" env NODE_PATH="$NODE_DIR/node_modules" node "$SP_SRCDIR/test/integration/node_test.js" \
	"$SP_PORT" plain "$TABLE"
is "$(sp_psql -d plain -c 'SELECT 42' 2>&1)" 42 "shardpool still answers psql"
done_testing
