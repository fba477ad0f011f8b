#!/bin/bash
# 91_rw_faults.t - the read/write split when servers fail (issue 4), through shardpool
# with real clients: a replica stopped under a pgbench read load (reads fail at most
# during the first health period, never after), a replica whose replay is paused
# leaving rotation and coming back, a stopped primary (writes fail fast with 08006
# while reads go on on the replicas), and a promoted replica taking the writes (the
# old primary, restarted, gets none).
#
# It stops and promotes servers, so it runs on a sandbox of its own (2 shards x 2
# replicas, ports from RW_FAULTS_T_BASE_PORT, default 29200), never the shared one.
# Shard 0 is used for the stopped replica, shard 1 for the rest.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
command -v pgbench >/dev/null || skip_all "pgbench is not installed"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/initdb ] || skip_all "PostgreSQL 15 is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"
RWC=$SP_SRCDIR/test/integration/rwclient.py

PERIOD=0.5
CONNECT_TIMEOUT=2
BASE=${RW_FAULTS_T_BASE_PORT:-29200}
sandbox_private 2 2 "$BASE"
P0=$SB_PRIMARY_PORT_0 R00=$SB_REPLICA_PORT_0_0 R01=$SB_REPLICA_PORT_0_1
P1=$SB_PRIMARY_PORT_1 R10=$SB_REPLICA_PORT_1_0 R11=$SB_REPLICA_PORT_1_1
diag "sandbox: shard 0 $P0 ($R00 $R01), shard 1 $P1 ($R10 $R11)"

role() {
	case $1 in
	"$P0") echo p0 ;; "$R00") echo r0.0 ;; "$R01") echo r0.1 ;;
	"$P1") echo p1 ;; "$R10") echo r1.0 ;; "$R11") echo r1.1 ;;
	*) echo "${1:-none}" ;;
	esac
}
roles() { # port per line on stdin -> "role:count ..." sorted
	local port n out=()
	while read -r n port; do
		out+=("$(role "$port"):$n")
	done < <(sort | uniq -c)
	printf '%s\n' "${out[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }


for p in $P0 $P1; do
	pg_psql "$p" -c "CREATE TABLE rw_f (id serial PRIMARY KEY, v text)" \
		-c "INSERT INTO rw_f (v) SELECT 'v' || g FROM generate_series(1, 100) g" >/dev/null ||
		bail_out "cannot create the table on $p"
done

SP_PORT=$(free_port) || bail_out "no free port"
SP_CONFIG=$SP_TMP/sp.ini SP_LOG=$SP_TMP/sp.log SP_PIDFILE=$SP_TMP/sp.pid
export SP_PORT SP_CONFIG SP_LOG SP_PIDFILE
cat >"$SP_CONFIG" <<EOF
[shardpool]
listen_addr = 127.0.0.1
listen_port = $SP_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $SB/userlist.txt
admin_users = app
pool_mode = transaction
default_pool_size = 8
log_file = $SP_LOG
pid_file = $SP_PIDFILE
health_check_period = ${PERIOD}s
health_check_timeout = 1s
server_connect_timeout = ${CONNECT_TIMEOUT}s
max_replica_lag = 64kB

[database app]
shards = 2

[shard app.0]
primary = host=127.0.0.1 port=$P0 dbname=app
replica = host=127.0.0.1 port=$R00 dbname=app
replica = host=127.0.0.1 port=$R01 dbname=app

[shard app.1]
primary = host=127.0.0.1 port=$P1 dbname=app
replica = host=127.0.0.1 port=$R10 dbname=app
replica = host=127.0.0.1 port=$R11 dbname=app

# shard 1's servers as a database of their own, first used after its primary stopped
[database one]
[shard one.0]
primary = host=127.0.0.1 port=$P1 dbname=app
replica = host=127.0.0.1 port=$R10 dbname=app
replica = host=127.0.0.1 port=$R11 dbname=app
EOF
sp_start "$SP_CONFIG"
DSN="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app connect_timeout=10"
spq() {
	PGPASSWORD=secret psql -X -q -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U app -d app "$@" 2>&1
}
# reads SHARD N: N reads of SHARD through shardpool, "role:count ..." of where they landed
reads() { yes "/* shard: $1 */ SELECT inet_server_port();" | head -n "$2" | spq | roles; }
# wait_reads SHARD REGEX SECS: until 20 reads of SHARD land as REGEX says
wait_reads() {
	local deadline got
	deadline=$(awk -v s="$3" -v t="$(now)" 'BEGIN { printf "%.3f", t + s }')
	while :; do
		got=$(reads "$1" 20)
		[[ $got =~ $2 ]] && return 0
		le "$(now)" "$deadline" || break
		sleep 0.1
	done
	echo "reads of shard $1: $got"
	return 1
}
ok "both replicas of both shards take reads" wait_reads 0 '^r0\.0:[0-9]+ r0\.1:[0-9]+$' 10
ok "(shard 1)" wait_reads 1 '^r1\.0:[0-9]+ r1\.1:[0-9]+$' 10

# ---------------------------------------------------------------- a replica stops under load
# pgbench aborts a client on its first error: the first run (10 s) shows how many reads
# the stop broke; a second run, started one health period plus the connect timeout
# after the stop, must see none. rwclient's load reconnects after errors and records
# when each happened.
printf '%s\n' '\set id random(1, 100)' 'SELECT v FROM rw_f WHERE id = :id;' >"$SP_TMP/read.sql"
pgb() { # pgb NAME SECONDS
	PGPASSWORD=secret pgbench -n -M simple -f "$SP_TMP/read.sql" -c 4 -j 2 -T "$2" -h 127.0.0.1 -p "$SP_PORT" -U app app \
		>"$SP_TMP/$1.out" 2>&1
}
# pgb_result NAME: "exit/aborted/failed/processed"
pgb_result() {
	local rc=$1 f=$SP_TMP/$2.out
	echo "$rc/$(grep -c 'aborted in command' "$f")/$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$f")/$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$f")"
}
window=$(awk -v p=$PERIOD -v c=$CONNECT_TIMEOUT 'BEGIN { print p + c }')
pgb pgbench1 10 &
PGB1=$!
$PY "$RWC" "$DSN" load 10 2 "SELECT inet_server_port()" >"$SP_TMP/load.out" 2>&1 &
LOADER=$!
at_exit "kill $PGB1 $LOADER 2>/dev/null"
sleep 3
t_stop=$(now)
pgctl stop -w -m fast -D "$SB/shard0/replica0"
diag "replica r0.0 stopped in $(elapsed "$t_stop" "$(now)") s"
sleep "$window"
pgb pgbench2 4
res2=$(pgb_result $? pgbench2)
wait $PGB1
res1=$(pgb_result $? pgbench1)
wait $LOADER
IFS=/ read -r rc1 ab1 f1 n1 <<<"$res1"
IFS=/ read -r rc2 ab2 f2 n2 <<<"$res2"
diag "pgbench under the stop: exit $rc1, $ab1 client(s) aborted, $f1 failed, $n1 transactions"
[ "$ab1" = 0 ] || diag "$(grep 'aborted in command' "$SP_TMP/pgbench1.out" | head -n 4)"
ok "pgbench (4 clients, 10 s, replica stopped after 3 s): at most the reads in flight on it failed ($ab1 clients aborted)" \
	test "${ab1:-9}" -le 4 -a "${n1:-0}" -gt 1000
is "$rc2/$ab2/$f2" "0/0/0" "pgbench started ${window} s after the stop (health period + connect timeout): no error ($n2 transactions)"
ok "and it read ($n2 transactions)" test "${n2:-0}" -gt 500
summary=$(head -n 1 "$SP_TMP/load.out")
like "$summary" '^ok=[1-9][0-9]* errors=[0-9]+$' "a reconnecting load (2 threads, 10 s) ran: $summary"
late=$(awk -v t="$t_stop" -v w="$window" '$1 == "error" && $2 > t + w' "$SP_TMP/load.out")
early=$(awk -v t="$t_stop" -v w="$window" '$1 == "error" && $2 <= t + w' "$SP_TMP/load.out" | wc -l)
is "$late" "" "none of its reads failed later than ${window} s after the stop"
ok "few failed before that ($early)" test "$early" -le 2
[ "$early" = 0 ] || diag "$(awk '$1 == "error"' "$SP_TMP/load.out" | head -n 4)"
got=$(reads 0 20)
is "$got" "r0.1:20" "reads of shard 0 go to the remaining replica"
ok "the log says the replica left rotation" grep -q "app.0 replica 0 .*unreachable\|app.0 replica 0 .*left rotation" "$SP_LOG"

# ---------------------------------------------------------------- replay paused: out of rotation
pg_psql "$R10" -c "SELECT pg_wal_replay_pause()" >/dev/null
pg_psql "$P1" -c "INSERT INTO rw_f (v) SELECT repeat('x', 200) FROM generate_series(1, 2000)" >/dev/null
t0=$(now)
ok "replica r1.0 with replay paused leaves rotation once 64kB behind" wait_reads 1 '^r1\.1:20$' 5
diag "out of rotation after $(elapsed "$t0" "$(now)") s"
is "$(reads 1 40)" "r1.1:40" "40 more reads: none on the paused replica"
ok "the log says why" grep -q "app.1 replica 0 .*left rotation: replay lag" "$SP_LOG"
pg_psql "$R10" -c "SELECT pg_wal_replay_resume()" >/dev/null
t0=$(now)
ok "after pg_wal_replay_resume() it returns to rotation" wait_reads 1 '^r1\.0:[0-9]+ r1\.1:[0-9]+$' 5
diag "back in rotation after $(elapsed "$t0" "$(now)") s"

# ---------------------------------------------------------------- the primary of shard 1 stops
before=$(pg_psql "$P1" -c "SELECT count(*) FROM rw_f")
# the pools hold server connections to it: they must not hand a dead one to a writer
spq -c "/* shard: 1 */ INSERT INTO rw_f (v) VALUES ('warm')" >/dev/null
before=$((before + 1))
pgctl stop -w -m fast -D "$SB/shard1/primary"
# at once (before a probe has seen it), and after the health checker has; the
# session should survive a write that found no server (the next read works)
for when in "at once" "after a health period"; do
	[ "$when" = "at once" ] || sleep 1
	t0=$(now)
	r=$(spq -c "/* shard: 1 */ INSERT INTO rw_f (v) VALUES ('lost') RETURNING inet_server_port()" -c "/* shard: 1 */ SELECT 'alive'")
	t=$(elapsed "$t0" "$(now)")
	like "$r" '(ERROR|FATAL):  08006: ' "a write to shard 1 $when: 08006 ($(head -n 1 <<<"$r"))"
	ok "  quickly ($t s < 2 s)" le "$t" 2
	like "$r" 'alive' "  and the session goes on (an ERROR, not a FATAL)"
done
r=$(spq -c "/* shard: 1 */ BEGIN; UPDATE rw_f SET v = 'x' WHERE id = 1; COMMIT")
like "$r" '(ERROR|FATAL):  08006: ' "a write transaction to shard 1: 08006 ($(head -n 1 <<<"$r"))"
got=$(reads 1 40)
like "$got" '^r1\.0:[0-9]+ r1\.1:[0-9]+$' "reads of shard 1 go on on its replicas ($got)"
is "$(spq -c "/* shard: 1 */ SELECT count(*) FROM rw_f WHERE v = 'warm'")" 1 "and find the rows"
r=$($PY "$RWC" "$DSN" one "INSERT INTO rw_f (v) VALUES ('s0') RETURNING inet_server_port()")
like "$r" "^ok [0-9.]+ $P0\$" "writes to shard 0 are not affected ($r)"
# a login needs the server's parameters: with the database's primary down, from a replica
r=$(PGPASSWORD=secret timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d one -c "SELECT inet_server_port()" 2>&1)
like "$(role "$r")" '^r1\.[01]$' "a first login to a database whose primary is down works, and reads on a replica ($r)"

# ---------------------------------------------------------------- a replica is promoted
# a writer keeps trying (one connection: the refusals are ERRORs) while the replica is
# promoted; the time is from pg_ctl promote's return to its first write that succeeds
$PY "$RWC" "$DSN" until 15 "/* shard: 1 */ INSERT INTO rw_f (v) VALUES ('after') RETURNING inet_server_port()" \
	>"$SP_TMP/until.out" 2>&1 &
WRITER=$!
sleep 0.5
pgctl promote -w -D "$SB/shard1/replica0"
t0=$(now)
wait $WRITER
r=$(cat "$SP_TMP/until.out")
limit=$(awk -v p=$PERIOD 'BEGIN { print 2 * p + 0.3 }')
t=$(elapsed "$t0" "$(awk '{ print $2 }' <<<"$r")")
like "$r" "^ok [0-9.]+ [0-9]+ $R10\$" "after pg_ctl promote, writes to shard 1 go to the promoted replica ($r)"
ok "within two health periods ($t s <= $limit s)" le "$t" "$limit"
for i in 1 2 3 4 5; do
	spq -c "/* shard: 1 */ INSERT INTO rw_f (v) VALUES ('after')" >/dev/null
done
pgctl start -w -D "$SB/shard1/primary" -l "$SB/log/shard1-primary.log"
sleep 1.5
got=$(for i in 1 2 3 4 5 6 7 8 9 10; do spq -c "/* shard: 1 */ INSERT INTO rw_f (v) VALUES ('after2') RETURNING inet_server_port()"; done |
	roles)
is "$got" "r1.0:10" "with the old primary back (timeline 1), writes stay on the promoted node"
got=$(yes "/* shard: 1 */ SELECT inet_server_port();" | head -n 20 | spq | roles)
unlike "$got" "p1" "the old primary gets no reads either ($got)"
# replica 1 still follows the old primary (timeline 1): it never sees the new writes
unlike "$got" "r1\.1" "nor the replica left on the old timeline ($got)"
is "$(PGPASSWORD=secret psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d one -c "SELECT count(*) FROM rw_f WHERE v IN ('after', 'after2')" 2>&1)" 16 \
	"reads see every write made after the promotion"
ok "the log says why replica 1 left rotation" grep -q "behind the shard's timeline" "$SP_LOG"
is "$(pg_psql "$P1" -c "SELECT count(*) FROM rw_f")" "$before" "the old primary's table did not change after it was stopped"
is "$(pg_psql "$R10" -c "SELECT count(*) FROM rw_f WHERE v IN ('after', 'after2')")" 16 "the promoted node has every write"
ok "the log reports the promotion" grep -q "writes go to promoted replica 0" "$SP_LOG"

# ---------------------------------------------------------------- a replica hangs
# SIGSTOP on replica r0.1 (shard 0's only running replica) with a read running there:
# the read must not wait forever, and reads go on elsewhere
hang_pids() {
	local pm
	pm=$(head -n 1 "$SB/shard0/replica1/postmaster.pid")
	echo "$pm" $(pgrep -P "$pm")
}
at_exit "kill -CONT $(hang_pids) 2>/dev/null"
t0=$(now)
PGPASSWORD=secret timeout 30 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d app \
	-c "/* shard: 0 */ SELECT inet_server_port(), pg_sleep(8)" >"$SP_TMP/hung.out" 2>&1 &
HUNG=$!
sleep 0.5
kill -STOP $(hang_pids)
wait $HUNG
t=$(elapsed "$t0" "$(now)")
like "$(cat "$SP_TMP/hung.out")" "08006|does not answer health checks|server connection lost" \
	"a read running on a replica that hangs (SIGSTOP) ends with an error"
ok "  within 2 failed probes, not its 8 s of pg_sleep ($t s < 6 s)" le "$t" 6
got=$(reads 0 10)
is "$got" "p0:10" "reads of shard 0 meanwhile go to the primary"
kill -CONT $(hang_pids)
ok "the replica comes back into rotation after SIGCONT" wait_reads 0 '^r0\.1:20$' 10
ok "the log says the connections were closed" grep -q "does not answer health checks" "$SP_LOG"
done_testing
