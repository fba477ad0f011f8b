#!/bin/bash
# 62_python.t - psycopg 3 and asyncpg, real Python drivers, through shardpool in
# transaction pooling.
#
# py_drivers.py runs under Debian's /usr/bin/python3 (python3-psycopg,
# python3-asyncpg), each driver against a fresh shardpool with a pool of two server
# connections, as app (SCRAM) to database plain. psycopg: prepare=True from 10
# threads, executemany, pipeline mode with an error in it, COPY in and out (text and
# binary, a failing one, CopyFail), transactions and savepoints, binary values, one
# statement from clients with other client_encoding, TimeZone and DateStyle, a 4 MB
# parameter. asyncpg (every query a named prepared statement): prepared statements,
# fetch, executemany, copy_records_to_table, transactions, a pool of 10 connections
# doing 2000 queries, statements prepared and not yet run while another connection
# needs a server, set_config($1, ...) in binary, the same statement under two
# search_paths, and a cached statement after ALTER TABLE (also on 4 connections at
# once, where asyncpg must recognise shardpool's 0A000 as its InvalidCachedStatement).
# A third shardpool with max_prepared_statements = 2 and one server connection checks
# statement eviction in a pipeline that fails, and a statement evicted before an ALTER
# TABLE (prepared afresh, by itself or by another connection first, it must still be
# refused, not return rows of the new shape). Each check becomes one TAP line here.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "$PY is missing"
"$PY" -c 'import psycopg' 2>/dev/null || skip_all "psycopg 3 is not installed for $PY (apt-get install python3-psycopg)"
"$PY" -c 'import asyncpg' 2>/dev/null || skip_all "asyncpg is not installed for $PY (apt-get install python3-asyncpg)"
diag "psycopg $("$PY" -c 'import psycopg; print(psycopg.__version__)'), asyncpg $("$PY" -c 'import asyncpg; print(asyncpg.__version__)')"


sandbox_ensure 2 1
TABLE=py_t_$$_$RANDOM
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS ${TABLE}_psycopg, ${TABLE}_asyncpg, ${TABLE}_asyncpg_sc, ${TABLE}_asyncpg_sc2, ${TABLE}_asyncpg_evict_ev' >/dev/null 2>&1"

# run_driver MODE [KEY=VALUE...]: MODE of py_drivers.py against a fresh shardpool
run_driver() {
	local mode=$1
	shift
	sp_write_config "$SP_TMP/$mode.ini" pool_mode=transaction default_pool_size=2 \
		max_client_conn=200 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info} "$@"
	sp_start
	is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "$mode: psql through shardpool to plain"
	run_checks "$mode" "$PY" "$SP_SRCDIR/test/integration/py_drivers.py" "$mode" "$SP_PORT" plain "${TABLE}_$mode"
	ok "$mode: shardpool exits cleanly on SIGTERM" sp_stop
}

run_driver psycopg
run_driver asyncpg
run_driver psycopg-evict max_prepared_statements=2 default_pool_size=1
run_driver asyncpg-evict max_prepared_statements=2 default_pool_size=1
done_testing
