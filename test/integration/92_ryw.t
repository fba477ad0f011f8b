#!/bin/bash
# 92_ryw.t - read-your-writes (issue 4) against replicas that replay 500 ms late
# (recovery_min_apply_delay): a client that inserts a row and reads it back at once,
# 1,000 times on one connection in transaction pooling, always finds it, and its reads
# still go to the replicas once they have caught up; with read_your_writes = off the
# same loop misses rows (which shows the test can see the difference); causal_wait_ms
# makes such a read wait for a replica instead of going to the primary.
#
# It changes the replicas' settings, so it runs on a sandbox of its own (2 shards x 2
# replicas, ports from RYW_T_BASE_PORT, default 29300), never the shared one.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/initdb ] || skip_all "PostgreSQL 15 is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"
RWC=$SP_SRCDIR/test/integration/rwclient.py

PERIOD=0.25
BASE=${RYW_T_BASE_PORT:-29300}
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
# field LINE NAME: NAME=VALUE in rwclient's ryw line
field() {
	local re="(^| )$2=([^ ]*)"
	[[ $1 =~ $re ]] && echo "${BASH_REMATCH[2]}"
}
# on_replicas PORTLIST: how many of "PORT:N,PORT:N" landed on a replica
on_replicas() {
	local n=0 item
	for item in ${1//,/ }; do
		case $(role "${item%%:*}") in r*) n=$((n + ${item##*:})) ;; esac
	done
	echo $n
}

for p in $P0 $P1; do
	pg_psql "$p" -c "CREATE TABLE ryw_s (id bigint PRIMARY KEY, tag text)" >/dev/null ||
		bail_out "cannot create the table on $p"
done
for p in $R00 $R01 $R10 $R11; do
	pg_psql "$p" -c "ALTER SYSTEM SET recovery_min_apply_delay = '500ms'" -c "SELECT pg_reload_conf()" >/dev/null ||
		bail_out "cannot set recovery_min_apply_delay on $p"
done
sleep 0.2
is "$(pg_psql "$R00" -c "SHOW recovery_min_apply_delay")" 500ms "the replicas replay 500 ms late"

SP_PORT=$(free_port) || bail_out "no free port"
SP_CONFIG=$SP_TMP/sp.ini SP_LOG=$SP_TMP/sp.log SP_PIDFILE=$SP_TMP/sp.pid
export SP_PORT SP_CONFIG SP_LOG SP_PIDFILE
# write_config KEY=VALUE...: the config with these [shardpool] keys added
write_config() {
	{
		cat <<EOF
[shardpool]
listen_addr = 127.0.0.1
listen_port = $SP_PORT
unix_socket_dir =
auth_type = md5
auth_file = $SB/userlist.txt
admin_users = app
pool_mode = transaction
default_pool_size = 4
log_file = $SP_LOG
pid_file = $SP_PIDFILE
health_check_period = ${PERIOD}s
EOF
		printf '%s\n' "$@" | sed 's/=/ = /'
		cat <<EOF

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

[table app.ryw_s]
key = id
type = bigint
EOF
	} >"$SP_CONFIG"
}
write_config
sp_start "$SP_CONFIG"
DSN="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app connect_timeout=10"
reload() {
	write_config "$@"
	PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c RELOAD
}

# the replicas are in rotation
for ((i = 0; i < 50; i++)); do
	got=$(for s in 0 1; do yes "/* shard: $s */ SELECT inet_server_port();" | head -n 4 |
		PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d app; done | sort -u | tr '\n' ' ')
	[ "$got" = "$(printf '%s\n' $R00 $R01 $R10 $R11 | sort | tr '\n' ' ')" ] && break
	sleep 0.2
done
is "$got" "$(printf '%s\n' $R00 $R01 $R10 $R11 | sort | tr '\n' ' ')" "every replica takes reads"

# ---------------------------------------------------------------- read_your_writes = on
for proto in simple extended; do
	line=$($PY "$RWC" "$DSN" ryw $proto 1000 ryw_s 40 2>&1)
	diag "$proto: $line"
	is "$(field "$line" iterations)/$(field "$line" misses)" 1000/0 \
		"$proto protocol: 1,000 times insert + read back on one connection: every read finds its row"
	n=$(on_replicas "$(field "$line" pause_ports)")
	ok "  after a pause (replicas caught up), reads land on replicas again ($n of 40)" test "${n:-0}" -gt 0
	ok "  in under 30 s ($(field "$line" seconds) s)" awk -v s="$(field "$line" seconds)" 'BEGIN { exit !(s != "" && s < 30) }'
done

# A read pipelined behind a write: the client sends both Queries before any answer
# (the write's WAL position query follows the write to the server in the same send;
# the read must wait for that position, not go to a replica at once).
[ -x "$RAW" ] || bail_out "$RAW is missing (make check builds it)"
misses=0 replica_reads=0
for ((i = 1; i <= 60; i++)); do
	id=$((900000 + i))
	out=$(raw 127.0.0.1:"$SP_PORT" startup:app:app auth:secret \
		"Q:INSERT INTO ryw_s VALUES ($id, 'pipe$i')" \
		"Q:SELECT inet_server_port(), max(tag) FROM ryw_s WHERE id = $id" read read 2>&1)
	case $out in
	*"D "*"|pipe$i"*) ;;
	*) misses=$((misses + 1)); [ "$misses" = 1 ] && diag "$out" ;;
	esac
	port=$(sed -n 's/^D \([0-9]*\)|.*/\1/p' <<<"$out")
	case $(role "$port") in r*) replica_reads=$((replica_reads + 1)) ;; esac
done
is "$misses" 0 "a read pipelined behind its write (simple Queries sent together) finds the row, 60 times"
is "$replica_reads" 0 "  and goes to the primary while the replicas lag 500 ms"
out=$(raw 127.0.0.1:"$SP_PORT" startup:app:app auth:secret "Q:INSERT INTO ryw_s VALUES (900100, 'x')" read \
	"Q:INSERT INTO ryw_s VALUES (900100, 'x')" read "Q:SELECT count(*) FROM ryw_s WHERE id = 900100" read 2>&1)
like "$out" "E 23505" "a failed pipelined write gets its error"
like "$out" "D 1" "  and the session goes on: the next read finds the first row"
printf '%s\n' "900200	copy" | PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d app \
	-c "/* shard: 0 */ COPY ryw_s FROM STDIN" \
	-c "/* shard: 0 */ SELECT tag, pg_is_in_recovery() FROM ryw_s WHERE id = 900200" >"$SP_TMP/copy.out" 2>&1
is "$(cat "$SP_TMP/copy.out")" "copy|f" \
	"COPY FROM STDIN on one shard (a write that is not pipelined) works, and the same client reads its row at once"

# ---------------------------------------------------------------- read_your_writes = off
is "$(reload read_your_writes=off)" "" "RELOAD with read_your_writes = off"
sleep 0.3
line=$($PY "$RWC" "$DSN" ryw simple 200 ryw_s 2>&1)
diag "read_your_writes = off: $line"
m=$(field "$line" misses)
ok "read_your_writes = off: reads right after the write miss their row (${m:-?} of 200)" test "${m:-0}" -gt 0
n=$(on_replicas "$(field "$line" loop_ports)")
ok "  because they go to the lagging replicas ($n of 200)" test "${n:-0}" -gt 0

# ---------------------------------------------------------------- causal_wait_ms
is "$(reload causal_wait_ms=1500)" "" "RELOAD with read_your_writes = on, causal_wait_ms = 1500"
sleep 0.3
line=$($PY "$RWC" "$DSN" ryw simple 4 ryw_s 2>&1)
diag "causal_wait_ms = 1500: $line"
is "$(field "$line" misses)" 0 "causal_wait_ms: every read finds its row"
n=$(on_replicas "$(field "$line" loop_ports)")
is "$n" 4 "causal_wait_ms: a read right after a write waits for a replica instead of using the primary"
done_testing
