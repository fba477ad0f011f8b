#!/bin/bash
# 40_pooling.t - pooling safety and pool behaviour: a client that vanishes inside a
# transaction, a COPY or an extended-protocol batch without its Sync leaves no dirty
# server connection behind; session pooling runs server_reset_query between clients;
# LISTEN is refused in transaction pooling (and the refusal holds no server; a LISTEN
# that gets past it costs its server connection), works in session pooling; statement
# pooling refuses transaction blocks; cancel; query_wait_timeout; idle_transaction_timeout
# (also for a server held across a Flush); a server that is down
# or never answers; pgbench with 50 clients over 5 server connections in all three
# query modes.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
command -v pgbench >/dev/null || skip_all "pgbench is not installed"
PGCLIENT=$SP_BUILDDIR/test/integration/pgclient
[ -x "$PGCLIENT" ] && [ -x "$RAW" ] || skip_all "pgclient/rawclient not built (make check builds them)"
pgc() { timeout 60 "$PGCLIENT" "$@"; }
# CPU time (user + system, clock ticks) a process has used so far
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0
T=pool_t_$$
BENCHDB=pool_t_bench_$$
DOWNPORT=$(free_port)
HOLEPORT=$(free_port)

# a TCP server that accepts connections and never says a word
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
conns = []
end = time.time() + 600
while time.time() < end:
    c, _ = s.accept()
    conns.append(c)
' "$HOLEPORT" </dev/null >/dev/null 2>&1 &
HOLEPID=$!
at_exit "kill $HOLEPID 2>/dev/null"

pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS $T" -c "CREATE TABLE $T (id int, t text)" >/dev/null
PGPASSWORD= psql -X -q -h 127.0.0.1 -p "$PGPORT0" -U postgres -d postgres -c "CREATE DATABASE $BENCHDB" >/dev/null ||
	bail_out "cannot create database $BENCHDB"
at_exit "pg_psql $PGPORT0 -c 'DROP TABLE IF EXISTS $T' >/dev/null 2>&1"
at_exit "PGPASSWORD= psql -X -q -h 127.0.0.1 -p $PGPORT0 -U postgres -d postgres -c 'DROP DATABASE IF EXISTS $BENCHDB WITH (FORCE)' >/dev/null 2>&1"

sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction default_pool_size=5 \
	query_wait_timeout=4 server_connect_timeout=2 server_login_retry=1
sed -i 's/^\[database plain\]$/&\npool_size = 1/' "$SP_CONFIG"
cat >>"$SP_CONFIG" <<EOF

[database core]
[shard core.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app

[database sess]
pool_mode = session
pool_size = 1

[shard sess.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app

[database sessbig]
pool_mode = session

[shard sessbig.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app

[database stmt]
pool_mode = statement
pool_size = 2

[shard stmt.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app

[database down]
[shard down.0]
primary = host=127.0.0.1 port=$DOWNPORT dbname=app

[database hole]
[shard hole.0]
primary = host=127.0.0.1 port=$HOLEPORT dbname=app

# shard 1 is down: logins work (shard 0), statements for keys of shard 1 fail
[database halfdown]
shards = 2
[shard halfdown.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app
[shard halfdown.1]
primary = host=127.0.0.1 port=$DOWNPORT dbname=app
[table halfdown.t40]
key = id
type = integer

[database bench]
[shard bench.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=$BENCHDB
EOF
sp_start

ci() { echo "host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=$1"; }
spq() { # DB SQL...: psql through shardpool, errors included in the output
	local db=$1
	shift
	PGPASSWORD=secret timeout 60 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$db" "$@" 2>&1
}

# warm DB: a first successful query, so the pool has logged in to its server (the first
# login of a pool has its own test, "mute server" below; here it must not get in the way)
warm() {
	local i
	for ((i = 0; i < 5; i++)); do
		[ "$(spq "$1" -c "SELECT 'warm'")" = warm ] && return 0
		sleep 0.2
	done
	diag "could not warm up database $1"
}
for db in core plain sess sessbig stmt bench; do warm $db; done

# ---------------------------------------------------------------- vanishing clients
out=$(pgc "$(ci plain)" die "BEGIN" "INSERT INTO $T VALUES (1, 'uncommitted')" "SELECT pg_backend_pid()")
like "$out" $'BEGIN\nINSERT 0 1\n[0-9]+' "a client opens a transaction, inserts, and vanishes without a word"
is "$(pgc "$(ci plain)" exec "BEGIN" "SELECT count(*) FROM $T" "COMMIT" 2>&1)" $'BEGIN\n0\nCOMMIT' \
	"the next client (pool_size 1) is not inside a transaction and does not see the insert"
is "$(pg_psql "$PGPORT0" -c "SELECT count(*) FROM $T")" 0 "the vanished client's insert was rolled back"

out=$(pgc "$(ci plain)" copy-die "$T" 2>&1)
is "$out" "vanishing mid-COPY" "a client starts COPY FROM STDIN, sends 100 rows, and vanishes"
is "$(pgc "$(ci plain)" exec "BEGIN" "SELECT count(*) FROM $T" "COMMIT" 2>&1)" $'BEGIN\n0\nCOMMIT' \
	"the next client is not in a COPY nor a transaction, and no copied row is there"
is "$(pgc "$(ci plain)" copy-in "$T" text 10 2>&1)" "COPY 10" "COPY works on the pool afterwards"
pg_psql "$PGPORT0" -c "TRUNCATE $T" >/dev/null

# An extended-protocol error makes PostgreSQL skip every message until Sync. A client
# that vanishes after such an error, before its Sync, must not hand that state on.
out=$(raw "$SP_PORT" startup:app:plain auth:secret "P::SELEC 1" "B::" "E:" timeout:1000 drain 2>&1)
like "$out" "E 42601 " "a client sends Parse with a syntax error, no Sync, and vanishes"
out=$(timeout 15 "$PGCLIENT" "$(ci plain)" exec "SELECT 'next client'" 2>&1)
is "$out" "next client" "the next client (pool_size 1) gets answers: the server is not left skipping until Sync"

# An INSERT run by Parse/Bind/Execute (and a Flush, as pipelining drivers send) is in
# the server's implicit transaction until Sync. A client that vanishes before its Sync
# leaves nothing: PostgreSQL rolls that transaction back. The next client's Sync must
# not commit it for it.
for end in H none; do
	out=$(raw "$SP_PORT" startup:app:plain auth:secret "P:vanish:INSERT INTO $T VALUES (2, 'no sync')" "B::vanish" "E:" \
		"${end/none/sleep:1}" timeout:500 drain 2>&1)
	if [ $end = H ]; then
		like "$out" $'\n1\n2\nC INSERT 0 1' "a client runs an INSERT by Parse/Bind/Execute and Flush, no Sync, and vanishes"
	else
		like "$out" $'login ok\ntimeout' "a client sends Parse/Bind/Execute of an INSERT, no Flush nor Sync, and vanishes"
	fi
	out=$(timeout 15 "$PGCLIENT" "$(ci plain)" exec "SELECT txid_current_if_assigned() IS NULL" "SELECT count(*) FROM $T" 2>&1)
	is "$out" $'t\n0' "the next client (pool_size 1) is not inside its implicit transaction, and the INSERT is not there"
done
is "$(pg_psql "$PGPORT0" -c "SELECT count(*) FROM $T")" 0 "the vanished clients' INSERTs were rolled back"

# ---------------------------------------------------------------- session pooling
out=$(spq sess -c "PREPARE sess_p(int) AS SELECT \$1 * 2" -c "EXECUTE sess_p(21)" \
	-c "CREATE TEMP TABLE sess_tmp (i int)" -c "INSERT INTO sess_tmp VALUES (7)" -c "SELECT i FROM sess_tmp" \
	-c "SET search_path = sessonly" -c "SELECT pg_backend_pid()")
like "$out" $'^42\n7\n[0-9]+$' "session pooling: SQL PREPARE/EXECUTE and a temp table work across statements"
pid1=$(tail -n1 <<<"$out")
out=$(spq sess -c "SELECT pg_backend_pid()" -c "SELECT count(*) FROM pg_prepared_statements" \
	-c "SELECT count(*) FROM pg_class WHERE relname = 'sess_tmp' AND relpersistence = 't'" -c "SHOW search_path")
is "$(head -n1 <<<"$out")" "$pid1" "session pooling, pool_size 1: the next client gets the same server connection"
is "$(tail -n +2 <<<"$out")" $'0\n0\n"$user", public' \
	"server_reset_query ran: no prepared statement, no temp table, no SET left for the next client"

# LISTEN/NOTIFY in session pooling
pgc "$(ci sessbig)" listen pool_t_chan 8000 >"$SP_TMP/listen.out" 2>&1 &
lpid=$!
for ((i = 0; i < 50; i++)); do grep -q listening "$SP_TMP/listen.out" 2>/dev/null && break; sleep 0.1; done
spq sessbig -c "NOTIFY pool_t_chan, 'hello from shardpool'" >/dev/null
wait $lpid
is "$(cat "$SP_TMP/listen.out")" $'LISTEN\nlistening\nNOTIFY pool_t_chan hello from shardpool' \
	"session pooling: LISTEN, and a NOTIFY from another client arrives"

# ---------------------------------------------------------------- LISTEN in transaction pooling
out=$(spq core -c "LISTEN pool_t_chan")
like "$out" '0A000|not supported' "transaction pooling: LISTEN is refused"
like "$out" 'HINT:.*session' "... with a hint to use session pooling"
out=$(pgc script <<EOF 2>&1
connect A $(ci plain)
connect B $(ci plain)
exec A LISTEN pool_t_chan
exec B SELECT 'B gets the server'
exec A SELECT 'A goes on'
EOF
)
like "$out" "A: ERROR 0A000 " "LISTEN via pgclient: 0A000"
like "$out" "B: B gets the server" "the refused LISTEN holds no server connection: another client runs (pool_size 1)"
like "$out" "A: A goes on" "... and the refused client goes on"
# JDBC sends LISTEN by Parse/Bind/Execute: refused the same way. A LISTEN that gets past
# the refusal (after another statement of one Query) must not leave the server
# connection listening for the clients that get it next (pool_size 1).
out=$(raw "$SP_PORT" startup:app:plain auth:secret "P::LISTEN pool_t_chan" "B::" "E:" S read \
	"Q:SELECT count(*) FROM pg_listening_channels()" read 2>&1)
like "$out" $'E 0A000 LISTEN is not supported in transaction pooling mode\nZ I\n' "transaction pooling: LISTEN by the extended protocol is refused"
like "$out" $'\nD 0\n' "... and nothing listens"
out=$(raw "$SP_PORT" startup:app:plain auth:secret "Q:BEGIN" read "P::LISTEN pool_t_chan" "B::" "E:" S read "Q:COMMIT" read 2>&1)
like "$out" $'E 0A000 LISTEN is not supported in transaction pooling mode\nZ E\nC ROLLBACK' \
	"... inside a transaction too, which fails with it, as with an error from PostgreSQL"
out=$(spq plain -c "SELECT 1; LISTEN pool_t_chan")
is "$(spq plain -c "SELECT count(*) FROM pg_listening_channels()")" 0 \
	"after a LISTEN inside a Query of two statements, the next client's server connection listens to nothing"

# ---------------------------------------------------------------- statement pooling
is "$(spq stmt -c "SELECT 1" -c "SELECT 2")" $'1\n2' "statement pooling: single statements work"
is "$(spq stmt -c "BEGIN; SELECT 3; COMMIT")" "3" "statement pooling: a whole transaction in one Query works"
out=$(spq stmt -c "BEGIN" -c "SELECT 4" -c "COMMIT")
like "$out" "statement pool|transaction block" "statement pooling: BEGIN ... is refused with a clear error"
unlike "$out" $'(^|\n)4(\n|$)' "... and the statement after BEGIN does not run inside a transaction block"
is "$(spq stmt -c "SELECT 'pool fine'")" "pool fine" "statement pooling: the pool still works afterwards"

# ---------------------------------------------------------------- cancel
out=$(pgc "$(ci plain)" cancel "SELECT pg_sleep(10)" 500 2>&1)
like "$out" "^ERROR 57014 " "pg_sleep(10) cancelled with PQcancel: 57014"
ms=$(sed -n 's/^answered \([0-9]*\) ms after the cancel$/\1/p' <<<"$out")
ok "... the answer came within 2 s of the cancel (${ms:-?} ms)" test "${ms:-99999}" -lt 2000
like "$out" "after cancel$" "... and the connection goes on"
out=$(pgc script <<EOF 2>&1
connect X $(ci plain)
connect Y $(ci plain)
exec X SELECT 'x idle now'
send Y SELECT 'y not disturbed' FROM pg_sleep(1.5)
sleep 300
cancel X
sleep 200
cancel X
wait Y
exec X SELECT 'x still fine'
EOF
)
is "$out" $'X: x idle now\nY: y not disturbed\nX: x still fine' \
	"cancelling an idle client does not cancel the query another client runs on the same server"
pgc "$(ci plain)" exec "SELECT 'z' FROM pg_sleep(1.5)" >"$SP_TMP/z.out" 2>&1 &
zpid=$!
sleep 0.4
raw "$SP_PORT" cancel:12345:67890 >/dev/null 2>&1
raw "$SP_PORT" cancel:0:0 >/dev/null 2>&1
wait $zpid
is "$(cat "$SP_TMP/z.out")" "z" "cancel requests with unknown keys disturb nobody"
# a statement still waiting for a server (pool_size 1, held by A's transaction): a cancel
# takes it out of the queue with 57014, and it never runs
pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS t40_cq" -c "CREATE TABLE t40_cq (x int)" >/dev/null
out=$(pgc script <<EOF 2>&1
connect A $(ci plain)
connect B $(ci plain)
exec A BEGIN
send B INSERT INTO t40_cq VALUES (1)
sleep 300
cancel B
wait B
exec A COMMIT
exec B SELECT count(*) FROM t40_cq
EOF
)
like "$out" "B: ERROR 57014 canceling statement due to user request" \
	"a cancel of a statement waiting for a server: 57014 at once"
like "$out" "B: 0$" "... the statement never ran, and the session goes on"
pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS t40_cq" >/dev/null

# ---------------------------------------------------------------- query_wait_timeout
out=$(pgc script <<EOF 2>&1
connect A $(ci plain)
connect B $(ci plain)
exec A BEGIN
exec B SELECT 'should not run'
elapsed B
exec A COMMIT
EOF
)
like "$out" "B: ERROR [0-9A-Z]{5} [^"$'\n'"]*query_wait_timeout" \
	"a client that waits longer than query_wait_timeout gets an error naming query_wait_timeout"
ms=$(sed -n 's/^B: elapsed \([0-9]*\)$/\1/p' <<<"$out")
ok "... after about query_wait_timeout = 4 s (${ms:-?} ms)" test "${ms:-0}" -ge 3500 -a "${ms:-0}" -le 6000
like "$out" "A: COMMIT" "... while the client holding the server commits normally"

# FIFO: a client that waits gets the server before a busy client's next transactions.
# A (rawclient: it sends its next query the moment it has read ReadyForQuery) holds the
# server in a transaction while B queues; then A commits and runs 20 more UPDATE
# transactions back to back. B must run after at most two of them.
TS="(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
steps=()
for i in $(seq 1 20); do steps+=("Q:WITH u AS (UPDATE $T SET t = 'x' WHERE false) SELECT 'A', $TS" read); done
raw "$SP_PORT" startup:app:plain auth:secret Q:BEGIN read sleep:600 "Q:UPDATE $T SET t = 'x' WHERE false" read \
	Q:COMMIT read "${steps[@]}" >"$SP_TMP/fifoA.out" 2>&1 &
apid=$!
sleep 0.2
bts=$(pgc "$(ci plain)" exec "SELECT $TS" 2>&1)
wait $apid
n_a=$(grep -c '^D A|' "$SP_TMP/fifoA.out")
n_before=$(sed -n 's/^D A|//p' "$SP_TMP/fifoA.out" | awk -v b="$bts" '$1 < b + 0' | wc -l)
is "$n_a" 20 "FIFO: the busy client ran its 20 transactions"
ok "FIFO: a waiting client is served in turn: B ran after $n_before of A's 20 later transactions (at most 2)" \
	test -n "$bts" -a "$n_before" -le 2

# ---------------------------------------------------------------- servers down or mute
t0=$(now_ms)
out=$(spq down -c "SELECT 1")
t1=$(now_ms)
like "$out" "127\.0\.0\.1:$DOWNPORT" "server down: the error names the server"
like "$(raw "$SP_PORT" startup:app:down auth:secret 2>&1)" "E 08006 " "server down: SQLSTATE 08006"
ok "server down: the error comes within server_connect_timeout ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 2500
c0=$(cpu_ticks "$SP_PID")
for ((i = 0; i < 10; i++)); do
	spq down -c "SELECT 1" >/dev/null
	sleep 0.3
done
c1=$(cpu_ticks "$SP_PID")
diag "shardpool used $((c1 - c0)) clock ticks of CPU in ~3 s of clients hitting a dead server"
ok "server down: shardpool does not busy-loop (under 0.3 s of CPU in ~3 s)" test $((c1 - c0)) -lt 30
is "$(spq core -c "SELECT 'others fine'")" "others fine" "server down: other databases are not affected"
# 20,000 queries pipelined in one write for a shard whose server is down (id 7 is on
# shard 1): each gets its 08006 and ReadyForQuery, one after the other (this used to
# recurse once per query inside shardpool and overflow its stack)
out=$(timeout 60 /usr/bin/python3 - "$SP_PORT" <<-'EOF' 2>&1
	import hashlib, socket, struct, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
	def msg(t, b): return t + struct.pack("!I", len(b) + 4) + b
	body = struct.pack("!I", 196608) + b"user\0app\0database\0halfdown\0\0"
	s.sendall(struct.pack("!I", len(body) + 4) + body)
	buf = b""
	def read():
	    global buf
	    while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
	        d = s.recv(1 << 20)
	        if not d: raise EOFError
	        buf += d
	    n = struct.unpack("!I", buf[1:5])[0]
	    t, b, buf = buf[:1], buf[5:1 + n], buf[1 + n:]
	    return t, b
	t, b = read()
	salt = b[4:8]
	inner = hashlib.md5(b"secret" + b"app").hexdigest().encode()
	s.sendall(msg(b"p", b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0"))
	while read()[0] != b"Z": pass
	N = 20000
	s.sendall(msg(b"Q", b"SELECT * FROM t40 WHERE id = 7\0") * N)
	errors = zs = 0
	while zs < N:
	    t, b = read()
	    errors += t == b"E" and b"08006" in b
	    zs += t == b"Z"
	print(zs, errors)
	EOF
)
is "$out" "20000 20000" "server down: 20,000 pipelined queries each get 08006 and ReadyForQuery"
ok "shardpool survives the pipeline against a dead server" kill -0 "$SP_PID"

t0=$(now_ms)
out=$(spq hole -c "SELECT 1")
t1=$(now_ms)
like "$out" "server_connect_timeout|127\.0\.0\.1:$HOLEPORT" \
	"mute server: the error names server_connect_timeout or the server"
# at most server_connect_timeout = 2 s; sooner when the health checker, which found the
# server hung earlier, closes the connection at its next unanswered probe
ok "mute server: the client waited at most server_connect_timeout = 2 s ($((t1 - t0)) ms)" \
	test $((t1 - t0)) -lt 2800
unlike "$out" "query_wait_timeout" "mute server: the error is not a query_wait_timeout"

# ---------------------------------------------------------------- pgbench
out=$(PGPASSWORD=secret timeout 120 pgbench -i -s 1 -q -h 127.0.0.1 -p "$SP_PORT" -U app bench 2>&1)
ok "pgbench -i through shardpool (DDL, COPY, VACUUM)" test $? = 0 || diag "$out"
# -j 50: a thread per client, like 50 application processes. (With fewer threads,
# pgbench -M prepared deadlocks by itself over any pool smaller than the client count:
# its first PQprepare of each command is synchronous and blocks a thread whose other
# clients hold servers inside open transactions.)
bench() { # MODE SECONDS
	local out rc maxwait=0 w
	PGPASSWORD=secret timeout $(($2 + 60)) pgbench -n -c 50 -j 50 -T "$2" -M "$1" -h 127.0.0.1 -p "$SP_PORT" -U app bench \
		>"$SP_TMP/pgbench.out" 2>&1 &
	local bpid=$!
	# the longest wait of a client for a server, sampled from the admin console
	while kill -0 $bpid 2>/dev/null; do
		w=$(PGPASSWORD=secret psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHOW POOLS" 2>/dev/null |
			awk -F'|' '$1 == "bench" {print $13 * 1000000 + $14}')
		[ "${w:-0}" -gt "$maxwait" ] && maxwait=$w
		sleep 0.5
	done
	wait $bpid
	rc=$?
	out=$(cat "$SP_TMP/pgbench.out")
	diag "pgbench -M $1: $(grep -E '^(number of (failed )?transactions|tps)' <<<"$out" | tr '\n' ';')"
	ok "pgbench -M $1, 50 clients over pool_size 5, $2 s: exits 0" test $rc = 0 || diag "$(tail -n 20 <<<"$out")"
	like "$out" "number of failed transactions: 0 " "pgbench -M $1: zero failed transactions"
	like "$out" "number of transactions actually processed: [1-9]" "pgbench -M $1: transactions were processed"
	unlike "$out" "aborted|ERROR|FATAL" "pgbench -M $1: no client aborted, no error"
	ok "pgbench -M $1: no client waited more than 2 s for a server (longest seen: $((maxwait / 1000)) ms)" \
		test "$maxwait" -lt 2000000
}
bench simple 10
bench extended 10
bench prepared 20
is "$(PGPASSWORD=secret psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHOW POOLS" 2>&1 |
	awk -F'|' '$1 == "bench" {print ($9 + $10 <= 5) ? "ok" : "too many: " $9 + $10}')" ok \
	"the bench pool never holds more than pool_size = 5 server connections"
is "$(pg_psql "$PGPORT0" -c "SELECT count(*) <= 5 FROM pg_stat_activity WHERE datname = '$BENCHDB'")" t \
	"PostgreSQL sees at most 5 connections for the bench database"

# ---------------------------------------------------------------- idle_transaction_timeout
# set on the running process with the admin console's SET
adm() { PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "$1" 2>&1; }
is "$(adm "SET idle_transaction_timeout = 1")" "" "SET idle_transaction_timeout = 1 on the admin console"
out=$(raw "$SP_PORT" startup:app:core auth:secret Q:BEGIN read "Q:SELECT 1" read sleep:2500 drain 2>&1)
like "$out" "E 25P03 [^"$'\n'"]*idle_transaction_timeout" \
	"a client idle in a transaction for longer: 25P03 naming idle_transaction_timeout"
# a portal read in steps (Execute with a row limit, then Flush, no Sync) holds the
# server just the same: a client that then goes quiet is timed out too
out=$(raw "$SP_PORT" startup:app:core auth:secret "P::SELECT generate_series(1, 10)" B:: E::2 H sleep:2500 drain 2>&1)
like "$out" "E 25P03 [^"$'\n'"]*idle_transaction_timeout" \
	"a client holding its server across a Flush (a suspended portal) for longer: 25P03 too"
out=$(raw "$SP_PORT" startup:app:core auth:secret "Q:SELECT 1" read sleep:2500 "Q:SELECT 'still here'" read 2>&1)
like "$out" "D still here" "a client idle outside a transaction is not timed out"
is "$(adm "SET idle_transaction_timeout = 0")" "" "SET idle_transaction_timeout = 0"

done_testing
