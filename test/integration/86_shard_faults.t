#!/bin/bash
# 86_shard_faults.t - faults on a sharded database (issues 2 and 3): a client that
# vanishes mid-COPY (rows split over shards) or right after sending a batch whose
# writes span shards leaves no half-done work and no dirty server connection; a shard
# backend killed under a fan-out read fails that statement with a lost-connection
# SQLSTATE within seconds and the session goes on, and a client's cancel of a fan-out
# reaches every shard; a shard that is down fails the statements that need it with
# 08006 naming the shard, quickly, while keys on the other shard keep working, and
# everything works again once the shard is back.
#
# It stops a server, so it runs on a sandbox of its own (2 shards, no replica, ports
# from SHARD_FAULTS_T_BASE_PORT, default 29400), never the shared one. The pool is
# small (2 per shard), so a dirty server connection would be handed to the next client.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"
PGCLIENT=$SP_BUILDDIR/test/integration/pgclient
FAULTS=$SP_SRCDIR/test/integration/shard_faults.py

BASE=${SHARD_FAULTS_T_BASE_PORT:-29400}
sandbox_private 2 0 "$BASE"
P0=$SB_PRIMARY_PORT_0 P1=$SB_PRIMARY_PORT_1
diag "sandbox: shard 0 on $P0, shard 1 on $P1"

on_all "CREATE TABLE t86 (id bigint PRIMARY KEY, t text)" || bail_out "cannot create t86"

# the sandbox's own config (sandbox_private set SB_DIR), with a small pool and quick
# health checks
sp_write_config "$SP_TMP/sp.ini" default_pool_size=2 health_check_period=1s server_connect_timeout=2s \
	"health_check_timeout=$([ "${SP_VALGRIND:-0}" = 1 ] && echo 20s || echo 2s)"
printf '\n[table app.t86]\nkey = id\ntype = bigint\n' >>"$SP_CONFIG"
sp_start "$SP_CONFIG"

DSN="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app"
spq() { PGPASSWORD=secret timeout 30 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d app "$@" 2>&1; }
faults() { timeout 120 $PY "$FAULTS" "$DSN" "$P0" "$P1" "$@"; }
total() { echo $(($(on 0 "SELECT count(*) FROM t86 $1") + $(on 1 "SELECT count(*) FROM t86 $1"))); }
# server connections of user app that are not idle (inside a transaction, or still
# running something), on both shards, after a grace period for the servers to notice
busy_servers() {
	local try n
	for try in $(seq 1 25); do
		n=$(($(on 0 "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state <> 'idle' AND backend_type = 'client backend'") +
			$(on 1 "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state <> 'idle' AND backend_type = 'client backend'")))
		[ "$n" = 0 ] && break
		sleep 0.2
	done
	echo "$n"
}
# values A B TEXT: a VALUES list of (id, 'TEXT') for ids A..B (INSERT ... SELECT has
# no key shardpool can read: the rows are spelled out, and split by shard)
values() { seq "$1" "$2" | sed "s/.*/(&, '$3')/" | paste -sd, -; }
# every client after a fault gets a clean server: 10 short transactions per shard
clean_pool() {
	local i k bad=0
	for i in $(seq 1 10); do
		for k in "$K0" "$K1"; do
			out=$(spq -c "BEGIN" -c "SELECT t FROM t86 WHERE id = $k" -c "COMMIT")
			[ "$out" = "k$([ "$k" = "$K0" ] && echo 0 || echo 1)" ] || { bad=$((bad + 1)); diag "after $1: $out"; }
		done
	done
	is "$bad" 0 "after $1, 20 transactions of new clients on both shards run clean"
}

# ---------------------------------------------------------------- keys on each shard
spq -c "INSERT INTO t86 (id, t) VALUES $(values 101 140 seed)" >/dev/null
K0=$(on 0 "SELECT min(id) FROM t86")
K1=$(on 1 "SELECT min(id) FROM t86")
is "$(total)" 40 "40 seed rows inserted through shardpool"
ok "the seed rows are on both shards (key $K0 on shard 0, $K1 on shard 1)" test -n "$K0" -a -n "$K1"
spq -c "UPDATE t86 SET t = 'k0' WHERE id = $K0" -c "UPDATE t86 SET t = 'k1' WHERE id = $K1" >/dev/null

# ---------------------------------------------------------------- vanish mid-COPY
# pgclient copy-die: COPY t86 (id, t) FROM STDIN, rows 1..100, then the process exits
# without ending the COPY
before=$(total)
out=$(timeout 60 "$PGCLIENT" "$DSN" copy-die t86 2>&1)
like "$out" "vanishing mid-COPY" "a client starts a sharded COPY FROM STDIN, sends rows for both shards, and vanishes"
is "$(busy_servers)" 0 "no server is left inside the vanished client's COPY on either shard"
is "$(total)" "$before" "no row of the vanished COPY landed on any shard"
clean_pool "the vanished COPY"

# ---------------------------------------------------------------- vanish after a split batch
# keys 1001..1010 (on both shards: checked), the first INSERT slow, Sync, vanish
keys=$(seq 1001 1010 | tr '\n' ' ')
spq -c "INSERT INTO t86 (id, t) VALUES $(values 1001 1010 probe)" >/dev/null
ok "the batch's keys span both shards" test "$(on 0 "SELECT count(*) FROM t86 WHERE id > 1000")" -gt 0 -a \
	"$(on 1 "SELECT count(*) FROM t86 WHERE id > 1000")" -gt 0
spq -c "/* shard: 0 */ DELETE FROM t86 WHERE id > 1000" -c "/* shard: 1 */ DELETE FROM t86 WHERE id > 1000" >/dev/null
faults vanish-batch $keys
is "$?" 0 "a client sends ten INSERTs for both shards in one batch, Sync, and vanishes"
n=$(busy_servers)
is "$n" 0 "no server is left inside the vanished batch on either shard"
n=$(total "WHERE id > 1000")
ok "the vanished batch is all or nothing over the shards ($n of 10 rows)" test "$n" = 0 -o "$n" = 10
clean_pool "the vanished batch"

# ---------------------------------------------------------------- vanish while a statement runs
# PostgreSQL notices a closed connection only when it next reads or writes: shardpool
# cancels what the server runs before it closes it, or a 30 s statement would go on
faults vanish-mid-statement "$K1"
is "$?" 0 "a client starts a 30 s statement on shard 1 and vanishes"
is "$(busy_servers)" 0 "shard 1 stops running it within seconds"
faults vanish-mid-fanout
is "$?" 0 "a client starts a 30 s statement on every shard and vanishes"
is "$(busy_servers)" 0 "no shard goes on running it"
clean_pool "the vanished statements"

# ---------------------------------------------------------------- a shard backend dies under a fan-out
spq -c "/* shard: 0 */ DELETE FROM t86 WHERE id NOT IN ($K0, $K1)" -c "/* shard: 1 */ DELETE FROM t86 WHERE id NOT IN ($K0, $K1)" >/dev/null
spq -c "INSERT INTO t86 (id, t) VALUES $(values 2001 2006 x)" >/dev/null
run_checks fanout-kill $PY "$FAULTS" "$DSN" "$P0" "$P1" fanout-kill
clean_pool "the killed fan-out"
run_checks fanout-cancel $PY "$FAULTS" "$DSN" "$P0" "$P1" fanout-cancel
clean_pool "the cancelled fan-out"

# ---------------------------------------------------------------- a shard is down
pgctl stop -m immediate -w -D "$SB/shard1/primary"
ok "shard 1 is stopped" sh -c "! pg_isready -q -h 127.0.0.1 -p $P1"
run_checks shard-down $PY "$FAULTS" "$DSN" "$P0" "$P1" shard-down "$K0" "$K1"
# a second shardpool started while shard 1 is down: start-up waits for the primaries'
# first probes (a refused connection ends a probe at once), never longer than
# health_check_timeout + 1 s
SP2_CONFIG=$SP_TMP/sp2.ini SP2_PORT=$(free_port) || bail_out "no free port"
sed -e "s/^listen_port = .*/listen_port = $SP2_PORT/" -e "s|^log_file = .*|log_file = $SP_TMP/sp2.log|" \
	-e "s|^pid_file = .*|pid_file = $SP_TMP/sp2.pid|" "$SP_CONFIG" >"$SP2_CONFIG"
t0=$(date +%s%N)
"$SP_BUILDDIR/src/shardpool" "$SP2_CONFIG" </dev/null >"$SP_TMP/sp2.stderr" 2>&1 &
SP2_PID=$!
at_exit "kill $SP2_PID 2>/dev/null"
for ((i = 0; i < 200; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$SP2_PORT") 2>/dev/null && break; sleep 0.05; done
ms=$((($(date +%s%N) - t0) / 1000000))
diag "a shardpool started with shard 1 down accepted clients after $ms ms"
ok "... it accepts clients within health_check_timeout + 1 s and a little ($ms ms)" test "$ms" -lt 5000
is "$(PGPASSWORD=secret timeout 30 psql -X -q -A -t -h 127.0.0.1 -p "$SP2_PORT" -U app -d app \
	-c "SELECT t FROM t86 WHERE id = $K0" 2>&1)" "k0" "... and serves shard 0"
kill -TERM "$SP2_PID" 2>/dev/null
wait "$SP2_PID" 2>/dev/null
pgctl start -w -D "$SB/shard1/primary" -l "$SB/log/shard1-primary.log"
ok "shard 1 is started again" pg_isready -q -t 10 -h 127.0.0.1 -p "$P1"
run_checks shard-back $PY "$FAULTS" "$DSN" "$P0" "$P1" shard-back
clean_pool "shard 1 came back"

ok "shardpool is still running" kill -0 "$SP_PID"
done_testing
