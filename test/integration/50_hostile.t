#!/bin/bash
# 50_hostile.t - malformed and hostile protocol input (rawclient): truncated and
# oversized startup packets, random bytes, messages out of order, plaintext pipelined
# after SSLRequest, absurd message lengths, unknown message types, unterminated strings,
# connection floods. After each, shardpool must still be running and serving. Then the
# signals: SIGHUP reloads the config (checked on the admin console, a broken file keeps
# the old config), SIGTERM lets an open transaction finish while refusing new clients.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
[ -x "$RAW" ] || skip_all "rawclient not built (make check builds it)"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SP_PID/status"; }

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0
T=hostile_t_$$
pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS $T" -c "CREATE TABLE $T (id int)" >/dev/null
at_exit "pg_psql $PGPORT0 -c 'DROP TABLE IF EXISTS $T' >/dev/null 2>&1"

# pool_size 20: a bug that loses a server connection per hostile client shows in its own
# test ("no server stuck"), not as a pool exhausted for every test after it
sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction default_pool_size=20 \
	shutdown_timeout=10 client_login_timeout=5 log_level=info query_wait_timeout=5
printf '\n[database core]\n[shard core.0]\nprimary = host=127.0.0.1 port=%s dbname=app\n' "$PGPORT0" >>"$SP_CONFIG"
sp_start

spq() { PGPASSWORD=secret timeout 15 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "${1:-core}" -c "${2:-SELECT 1}" 2>&1; }
admin() { spq shardpool "$1"; }
# still_ok WHAT: one test that shardpool is alive and a normal client gets an answer
still_ok() {
	local out
	if ! kill -0 "$SP_PID" 2>/dev/null; then
		ok "after $1: shardpool is still running" false
		bail_out "shardpool died after $1"
	fi
	out=$(spq core "SELECT 'alive'")
	is "$out" alive "after $1: shardpool is alive and serves a normal client"
}
# the startup packet for user app, database app, as hex
STARTUP_HEX=$(printf '\0\003\0\0user\0app\0database\0app\0\0' | od -An -tx1 | tr -d ' \n')
STARTUP_HEX=$(printf '%08x' $((${#STARTUP_HEX} / 2 + 4)))$STARTUP_HEX
LOGIN=(startup:app:core auth:secret)

# ---------------------------------------------------------------- before login
# protocol 3.2 with a protocol option: NegotiateProtocolVersion (3.0, the option not
# taken) before authentication, as PostgreSQL answers; the login then goes on in 3.0
out=$(raw "$SP_PORT" startup:app:core:_protocol=3.2:_pq_.test_opt=on auth:secret Q:"SELECT 'in 3.0'" read 2>&1)
like "$out" $'^v 196608 _pq_.test_opt\n(.*\n)*login ok\n.*D in 3.0' \
	"protocol 3.2 with a _pq_ option: NegotiateProtocolVersion 3.0 naming the option, then a normal session"
out=$(raw "$SP_PORT" "${LOGIN[@]}" Q:"SELECT 1" read 2>&1)
unlike "$out" $'(^|\n)v ' "protocol 3.0 without options: no NegotiateProtocolVersion"

out=$(raw "$SP_PORT" hex:0000005000030000757365 close 2>&1)
still_ok "a truncated startup packet and a close"

out=$(raw "$SP_PORT" timeout:3000 hex:0000000400030000 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "startup length 4 (< 8): error 08P01 or closed, at once"
still_ok "a startup length below 8"

out=$(raw "$SP_PORT" timeout:3000 hex:00000004 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "only a startup length of 4, nothing after it: refused at once, not at client_login_timeout"

out=$(raw "$SP_PORT" timeout:3000 hex:0000271100030000 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "startup length 10001: refused at once, without waiting for 10001 bytes"
still_ok "a startup length of 10001"

out=$(raw "$SP_PORT" timeout:3000 hex:7fffffff00030000 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "startup length 0x7fffffff: refused at once"

out=$(raw "$SP_PORT" timeout:3000 hex:0000000800020000 drain 2>&1)
like "$out" "^E 0A000 [^"$'\n'"]*protocol[^"$'\n'"]*"$'\n'"closed$" "protocol 2.0 is refused with 0A000, like PostgreSQL"

out=$(raw "$SP_PORT" timeout:3000 hex:0000001100030000757365720061707000 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "a startup packet without its final terminator: 08P01"
still_ok "malformed startup packets"

for seed in 1 2 3; do
	out=$(raw "$SP_PORT" timeout:3000 "random:200000:$seed" drain 2>&1)
	like "$out" "(closed|reset)$" "200 kB of random bytes (seed $seed): the connection is closed"
done
still_ok "random bytes"

out=$(raw "$SP_PORT" timeout:3000 msg:p:77726f6e6700 drain 2>&1)
like "$out" "^(E 08P01 [^"$'\n'"]*"$'\n'")?closed$" "a password message before the startup packet: closed"
still_ok "a password message before startup"

out=$(raw "$SP_PORT" timeout:3000 "hex:0000000804d2162f$STARTUP_HEX" bytes 2>&1)
is "$out" "bytes 0, closed" "plaintext pipelined after SSLRequest: the connection is closed, not answered"
out=$(raw "$SP_PORT" timeout:3000 "hex:0000000804d21630$STARTUP_HEX" bytes 2>&1)
is "$out" "bytes 0, closed" "plaintext pipelined after GSSENCRequest: the connection is closed, not answered"
out=$(raw "$SP_PORT" timeout:3000 ssl ssl gss "${LOGIN[@]}" 2>&1)
like "$out" "answer N"$'\n'"answer N"$'\n'"answer N"$'\n'"auth: md5"$'\n'"auth: ok"$'\n'"login ok" \
	"SSLRequest twice and GSSENCRequest: answered 'N' each time, then login works"
out=$(raw "$SP_PORT" timeout:3000 hex:00000010 hex:04d2162e0000000100000002 bytes 2>&1)
is "$out" "bytes 0, closed" "a CancelRequest with an unknown key: closed without an answer"
out=$(raw "$SP_PORT" timeout:3000 hex:0000000c04d2162e00000001 bytes 2>&1)
is "$out" "bytes 0, closed" "a CancelRequest that is too short: closed"
still_ok "SSL, GSS and cancel oddities"

t0=$(now_ms)
out=$(raw "$SP_PORT" timeout:9000 hex:00000050 drain 2>&1)
t1=$(now_ms)
like "$out" "(closed|reset)$" "a client that never finishes its startup packet is closed by client_login_timeout"
ok "... after about client_login_timeout = 5 s ($((t1 - t0)) ms)" test $((t1 - t0)) -ge 4000 -a $((t1 - t0)) -le 8000

# ---------------------------------------------------------------- after login
out=$(raw "$SP_PORT" "${LOGIN[@]}" Q:"SELECT 41 + 1" read 2>&1)
like "$out" "login ok"$'\n'"T [^"$'\n'"]*"$'\n'"D 42"$'\n'"C SELECT 1"$'\n'"Z I" "rawclient logs in with md5 and queries"

r0=$(rss_kb)
t0=$(now_ms)
out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 hdr:Q:0x7fffffff drain 2>&1)
t1=$(now_ms)
r1=$(rss_kb)
like "$out" "(E 08P01 [^"$'\n'"]*"$'\n'")?(closed|reset)$" "a message claiming 0x7fffffff bytes after login: refused"
ok "... at once, not after the client gives up ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 2000
ok "... without reserving memory for it (RSS $((r0 / 1024)) MB -> $((r1 / 1024)) MB)" test $((r1 - r0)) -lt $((64 * 1024))
still_ok "an absurd message length"

out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 hdr:Q:2 drain 2>&1)
like "$out" "(E 08P01 [^"$'\n'"]*"$'\n'")?(closed|reset)$" "a message length below 4: refused"
still_ok "a message length below 4"

out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 msg:z: drain 2>&1)
like "$out" "E 08P01 [^"$'\n'"]*"$'\n'"(closed|reset)$" "an unknown message type: 08P01 and closed"
still_ok "an unknown message type"

out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 "Qnonul:SELECT 1" drain 2>&1)
like "$out" "E 08P01 " "a Query without its NUL terminator: 08P01"
still_ok "an unterminated Query"

out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 "msg:P:0053454c45435420310000" drain 2>&1)
like "$out" "E 08P01 |E 42601 " "a Parse message cut short (no parameter count): an error"
still_ok "a truncated Parse"

out=$(raw "$SP_PORT" "${LOGIN[@]}" "B::no_such_statement" E: S read Q:"SELECT 'next'" read 2>&1)
like "$out" "E 26000 [^"$'\n'"]*no_such_statement[^"$'\n'"]*"$'\n'"Z I"$'\n'"T [^"$'\n'"]*"$'\n'"D next" \
	"Bind to a statement that does not exist: 26000, and the connection goes on"
out=$(raw "$SP_PORT" "${LOGIN[@]}" E:no_such_portal S read "D:P:no_such_portal" S read "C:P:no_such_portal" S read 2>&1)
like "$out" "E 34000 [^"$'\n'"]*"$'\n'"Z I"$'\n'"E 34000 [^"$'\n'"]*"$'\n'"Z I"$'\n'"3"$'\n'"Z I" \
	"Execute and Describe of a missing portal: 34000; Close of one: CloseComplete"
out=$(raw "$SP_PORT" "${LOGIN[@]}" S S H S read read read Q:"SELECT 'after syncs'" read 2>&1)
like "$out" "Z I"$'\n'"Z I"$'\n'"Z I"$'\n'"T [^"$'\n'"]*"$'\n'"D after syncs" "Sync, Sync, Flush, Sync outside a transaction: three ReadyForQuery"
out=$(raw "$SP_PORT" "${LOGIN[@]}" timeout:3000 "random:100000:7" drain 2>&1)
like "$out" "(closed|reset)$" "random bytes after login: the connection is closed"
still_ok "random bytes after login"

# a client that logs in, opens a transaction and then sends garbage: its server must not be reused dirty
out=$(raw "$SP_PORT" "${LOGIN[@]}" Q:BEGIN read Q:"INSERT INTO $T VALUES (666)" read timeout:3000 msg:z: drain 2>&1)
like "$out" "E 08P01 " "garbage inside a transaction: 08P01"
is "$(spq core "SELECT count(*) FROM $T")" 0 "... and the transaction was rolled back"

n=$(admin "SHOW SERVERS" | awk -F'|' '$6 == "reset"' | wc -l)
is "$n" 0 "after the hostile clients above, no server connection is stuck in state reset"

# A client whose first message is garbage, right after a client with other settings
# (psql sets application_name, rawclient does not) used the same server: shardpool
# queues a parameter sync for the server, then closes the client. The server must come
# back to the pool, not stay in state "reset" for ever.
for i in 1 2 3; do
	spq core "SELECT 'psql was here'" >/dev/null
	raw "$SP_PORT" "${LOGIN[@]}" timeout:2000 msg:z: drain >/dev/null 2>&1
done
sleep 1
is "$(admin "SHOW SERVERS" | awk -F'|' '$6 == "reset"' | wc -l)" 0 \
	"clients closed for a bad first message leave no server stuck in state reset"
still_ok "three clients closed right after a parameter sync was queued"

# ---------------------------------------------------------------- floods
out=$(raw "$SP_PORT" flood:200 2>&1)
like "$out" "flood: 200 of 200 connections opened and dropped" "200 connections that vanish mid-startup"
still_ok "200 connections that vanished mid-startup"
sleep 0.5
n=$(admin "SHOW CLIENTS" | awk -F'|' '$4 == "startup" || $4 == "auth"' | wc -l)
is "$n" 0 "no half-started client is left behind"
pids=()
for i in $(seq 1 20); do
	raw "$SP_PORT" "${LOGIN[@]}" Q:"SELECT pg_sleep(0.2)" close >/dev/null 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
still_ok "20 clients that left in the middle of a query"
sleep 0.5
is "$(admin "SHOW POOLS" | awk -F'|' '$1 == "core" {print $7 + $8}')" 0 "no client is left active or waiting in the pool"

# ---------------------------------------------------------------- SIGHUP
cfg() { admin "SHOW CONFIG" | awk -F'|' -v k="$1" '$1 == k {print $2}'; }
is "$(cfg default_pool_size)" 20 "SHOW CONFIG: default_pool_size = 20"
is "$(cfg log_level)" info "SHOW CONFIG: log_level = info"
sed -i 's/^default_pool_size = .*/default_pool_size = 27/; s/^log_level = .*/log_level = debug/' "$SP_CONFIG"
kill -HUP "$SP_PID"
sleep 0.5
is "$(cfg default_pool_size)" 27 "after SIGHUP: default_pool_size = 27"
is "$(cfg log_level)" debug "after SIGHUP: log_level = debug"
cp "$SP_CONFIG" "$SP_TMP/good.ini"
echo "this line is not a key = value pair" >>"$SP_CONFIG"
sed -i 's/^default_pool_size = .*/default_pool_size = 9/' "$SP_CONFIG"
kill -HUP "$SP_PID"
sleep 0.5
is "$(cfg default_pool_size)" 27 "a broken config on SIGHUP is refused: default_pool_size stays 27"
still_ok "a SIGHUP with a broken config"
cp "$SP_TMP/good.ini" "$SP_CONFIG"

# ---------------------------------------------------------------- SIGTERM
raw "$SP_PORT" "${LOGIN[@]}" Q:BEGIN read Q:"INSERT INTO $T VALUES (1)" read sleep:2500 \
	Q:COMMIT read timeout:3000 Q:"SELECT 'after commit'" drain >"$SP_TMP/txn.out" 2>&1 &
txpid=$!
sleep 0.8
pid=$SP_PID
t0=$(now_ms)
kill -TERM "$pid"
sleep 0.5
out=$(spq core "SELECT 'new client'")
unlike "$out" "new client" "during shutdown: a new client is refused"
like "$out" "refused|shutting down" "... with connection refused or a shutdown error"
ok "during shutdown, with a transaction open: shardpool is still running" kill -0 "$pid"
wait $txpid
like "$(cat "$SP_TMP/txn.out")" "C INSERT 0 1"$'\n'"Z T"$'\n'"C COMMIT"$'\n'"Z I" \
	"the open transaction could finish: COMMIT succeeded during shutdown"
is "$(pg_psql "$PGPORT0" -c "SELECT count(*) FROM $T WHERE id = 1")" 1 "the committed row is there"
for ((i = 0; i < 100; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
t1=$(now_ms)
ok "shardpool exits once the transaction is over ($((t1 - t0)) ms after SIGTERM, shutdown_timeout 10 s)" \
	test $((t1 - t0)) -lt 8000
SP_PID=
wait "$pid"
is "$?" 0 "shardpool's exit status after SIGTERM is 0"

done_testing
