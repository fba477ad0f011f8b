#!/bin/bash
# 60_jdbc.t - pgjdbc, a real Java driver, through shardpool in transaction pooling.
#
# JdbcTest.java is compiled here with javac against Debian's postgresql.jar and run
# twice, each time against a fresh shardpool: with prepareThreshold=1 (every
# PreparedStatement becomes a named server-side statement on its first execution) and
# with the driver's default of 5. It connects as app (SCRAM) to database plain over a
# pool of two server connections and checks concurrent prepared executions from 10
# threads, batches, transactions, metadata, SET/SHOW, binary transfer, recovery after
# errors, query timeouts, COPY, cursors, large messages, DEALLOCATE ALL, plan
# invalidation and a large statement that has to wait for a server. Each of its checks
# becomes one TAP line here.
#
# Before that, the first connection of a fresh pool whose server answers slowly (a
# forwarder that delays each connection by half a second, as a distant server would).
#
# Deliberately not here: what every driver needs from the pooler in general (the
# protocol tests do that); this is what pgjdbc in particular sends.
. "$(dirname "$0")/lib.sh"

JAR=/usr/share/java/postgresql.jar
command -v javac >/dev/null || skip_all "javac is not installed (apt-get install default-jdk-headless)"
[ -f "$JAR" ] || skip_all "$JAR is missing (apt-get install libpostgresql-jdbc-java)"
[ -x /usr/bin/python3 ] || skip_all "/usr/bin/python3 is needed for the delaying forwarder"


sandbox_ensure 2 1
CLASSES=$SP_TMP/classes
mkdir -p "$CLASSES"
ok "JdbcTest.java and JdbcShardTest.java compile" javac -d "$CLASSES" -cp "$JAR" "$SP_SRCDIR/test/integration/JdbcTest.java" \
	"$SP_SRCDIR/test/integration/JdbcShardTest.java" ||
	bail_out "cannot compile JdbcTest.java"
JAVA=(java -cp "$CLASSES:$JAR")

# A forwarder to shard 0's primary that waits half a second before connecting.
FWD_PORT=$(free_port) || bail_out "no free port"
cat >"$SP_TMP/forwarder.py" <<'EOF'
import asyncio, sys
lport, tport, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def handle(cr, cw):
    await asyncio.sleep(delay)
    sr, sw = await asyncio.open_connection('127.0.0.1', tport)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw), return_exceptions=True)
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', lport)
    print('listening', flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
EOF
/usr/bin/python3 "$SP_TMP/forwarder.py" "$FWD_PORT" "$SB_PRIMARY_PORT_0" 0.5 >"$SP_TMP/forwarder.log" 2>&1 &
FWD_PID=$!
at_exit "kill $FWD_PID 2>/dev/null"

TABLE=jdbc_t_$$_$RANDOM
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS ${TABLE}_1, ${TABLE}_5, ${TABLE}_slow, ${TABLE}_a1, ${TABLE}_a2, ${TABLE}_a3, ${TABLE}_a2_pi' >/dev/null 2>&1"

# JdbcShardTest's rows: sharded by id in database app, and an unsharded copy in plain
STAB=${TABLE}_sh FLAT=${TABLE}_flat
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS $STAB, $FLAT' >/dev/null 2>&1; pg_psql $SB_PRIMARY_PORT_1 -c 'DROP TABLE IF EXISTS $STAB' >/dev/null 2>&1"
for port in "$SB_PRIMARY_PORT_0" "$SB_PRIMARY_PORT_1"; do
	pg_psql "$port" -c "CREATE TABLE $STAB (id bigint PRIMARY KEY, grp int, amount numeric(10, 2), name text)" >/dev/null ||
		bail_out "cannot create $STAB"
done
pg_psql "$SB_PRIMARY_PORT_0" -c "CREATE TABLE $FLAT (LIKE $STAB)" >/dev/null || bail_out "cannot create $FLAT"

# start_pooler NAME: a fresh shardpool, pool_size 2, plus database slowplain behind the forwarder
start_pooler() { # NAME
	sp_write_config "$SP_TMP/$1.ini" pool_mode=transaction default_pool_size=2 \
		max_client_conn=200 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info}
	printf '\n[database slowplain]\nshards = 1\n\n[shard slowplain.0]\nprimary = host=127.0.0.1 port=%s dbname=app\n' \
		"$FWD_PORT" >>"$SP_CONFIG"
	sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
	printf '\n[table app.%s]\nkey = id\ntype = bigint\n' "$STAB" >>"$SP_CONFIG"
	sp_start
	URL="jdbc:postgresql://127.0.0.1:$SP_PORT/plain?user=app&password=secret&connectTimeout=20&socketTimeout=10"
}

start_pooler shardpool1
# The first client of a pool waits for the pool's first server login; a login that
# takes longer than a moment must not fail it.
run_checks "first connection, slow server" "${JAVA[@]}" -Donly=none JdbcTest \
	"jdbc:postgresql://127.0.0.1:$SP_PORT/slowplain?user=app&password=secret&connectTimeout=20&socketTimeout=10" "${TABLE}_slow"

# The groups that leave shardpool damaged when they fail run alone, each against a
# fresh shardpool, so that one bug does not show up as many.
ALONE="DEALLOCATE|plan invalidation|big message while waiting"

# warm the plain pool so the runs below do not depend on the first-login path
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through shardpool to plain"
run_checks "prepareThreshold=1" "${JAVA[@]}" -Dskip="$ALONE" JdbcTest "$URL&prepareThreshold=1" "${TABLE}_1"

# a sharded database: 500 rows loaded with one split INSERT, then pgjdbc's reads checked
# against the unsharded copy
rows=$(for ((i = 1; i <= 500; i++)); do printf "(%d, %d, %d.%02d, 'n%d')," $i $((i % 7)) $((i * 37 % 1000)) $((i % 100)) $i; done)
is "$(sp_psql -d app -c "INSERT INTO $STAB (id, grp, amount, name) VALUES ${rows%,}" -c "SELECT count(*) FROM $STAB" 2>&1)" 500 "500 rows into the sharded table through shardpool (one split INSERT)"
is "$(sp_psql -d plain -c "INSERT INTO $FLAT VALUES ${rows%,}" -c "SELECT count(*) FROM $FLAT" 2>&1)" 500 "the same rows into the unsharded copy"
run_checks "sharded" "${JAVA[@]}" JdbcShardTest "${URL/\/plain\?//app?}" "$URL" "$STAB" "$FLAT"
# the same with every statement prepared under a name from its first execution, and
# with pgjdbc rewriting each batch into multi-row INSERTs (a batch of several INSERTs,
# each split by shard at Bind)
run_checks "sharded, prepareThreshold=1" "${JAVA[@]}" JdbcShardTest \
	"${URL/\/plain\?//app?}&prepareThreshold=1" "$URL" "$STAB" "$FLAT"
run_checks "sharded, reWriteBatchedInserts" "${JAVA[@]}" JdbcShardTest \
	"${URL/\/plain\?//app?}&reWriteBatchedInserts=true" "$URL" "$STAB" "$FLAT"
is "$(sp_psql -d plain -c 'SELECT 42' 2>&1)" 42 "shardpool still answers psql"
ok "shardpool exits cleanly on SIGTERM" sp_stop

start_pooler shardpool5
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through the second shardpool to plain"
run_checks "prepareThreshold=5" "${JAVA[@]}" -Dskip="$ALONE" JdbcTest "$URL" "${TABLE}_5"
is "$(sp_psql -d plain -c 'SELECT 42' 2>&1)" 42 "shardpool still answers psql"
ok "shardpool exits cleanly on SIGTERM" sp_stop

n=0
IFS='|' read -ra groups <<<"$ALONE"
for g in "${groups[@]}"; do
	n=$((n + 1))
	start_pooler "shardpool_alone$n"
	sp_psql -d plain -c 'SELECT 1' >/dev/null 2>&1
	run_checks "$g" "${JAVA[@]}" -Donly="$g" JdbcTest "$URL&prepareThreshold=1" "${TABLE}_a$n"
	ok "$g: shardpool exits cleanly on SIGTERM" sp_stop
done
done_testing
