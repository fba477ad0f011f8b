#!/bin/bash
# 12_daemon.t - how operators start shardpool: -d (daemon) returns once shardpool
# listens, hands the caller's standard error back (a caller that reads it to its end,
# such as $(shardpool -d ...), does not wait for shardpool's exit), and reports why a
# start failed (pid file, log file, port in use) on standard error with status 1;
# --check-config reads the auth_file and refuses the admin console's names; an
# open-file limit below max_client_conn is warned about at start, and clients beyond
# it are refused with 53300 instead of waiting unanswered in the listen backlog.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
BIN=$SP_BUILDDIR/src/shardpool
PY=/usr/bin/python3
sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0

# cfg FILE [KEY=VALUE...]: a config with database plain over the sandbox, trust auth
cfg() {
	local file=$1
	shift
	SP_PORT=$(free_port) || bail_out "no free port"
	{
		printf '[shardpool]\nlisten_addr = 127.0.0.1\nlisten_port = %s\nunix_socket_dir =\n' "$SP_PORT"
		printf 'auth_type = trust\nhealth_check_period = 0\n'
		printf '%s\n' "$@"
		printf '[database plain]\n[shard plain.0]\nprimary = host=127.0.0.1 port=%s dbname=app user=app password=secret\n' "$PGPORT0"
	} >"$file"
}
q() { PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d plain -c "$1" 2>&1; }
stop_pid() { [ -s "$1" ] && kill "$(cat "$1")" 2>/dev/null; for ((i = 0; i < 50; i++)); do [ -e "$1" ] || break; sleep 0.1; done; }

# ---------------------------------------------------------------- -d
cfg "$SP_TMP/d1.ini" "pid_file = $SP_TMP/d1.pid"
at_exit "stop_pid $SP_TMP/d1.pid"
t0=$(date +%s%N)
out=$(timeout 20 "$BIN" -d "$SP_TMP/d1.ini" 2>&1)
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
is "$rc" 0 "-d without log_file: exit status 0 once listening"
ok "  and \$(shardpool -d ...) returns at once, not at shardpool's exit (${ms} ms)" test "$ms" -lt 5000
like "$out" "without log_file: the log is discarded" "  and warns that the log goes nowhere"
is "$(q "SELECT 'served'")" served "  the daemon serves clients"
ok "  its pid file names a running process" kill -0 "$(cat "$SP_TMP/d1.pid")"
# a second instance on the same pid file and port
out=$(timeout 20 "$BIN" -d "$SP_TMP/d1.ini" 2>&1)
rc=$?
is "$rc" 1 "a second -d with the same pid file: exit status 1"
like "$out" "pid file .* names running process" "  saying why, on standard error"
stop_pid "$SP_TMP/d1.pid"

cfg "$SP_TMP/d2.ini" "pid_file = $SP_TMP/no/such/dir/x.pid" "log_file = $SP_TMP/d2.log"
out=$(timeout 20 "$BIN" -d "$SP_TMP/d2.ini" 2>&1)
is "$?" 1 "-d with a pid file in a missing directory: exit status 1"
like "$out" "cannot write pid file .*no/such/dir" "  the reason reaches the caller's standard error"
cfg "$SP_TMP/d3.ini" "pid_file = $SP_TMP/d3.pid" "log_file = $SP_TMP/no/such/dir/x.log"
out=$(timeout 20 "$BIN" -d "$SP_TMP/d3.ini" 2>&1)
is "$?" 1 "-d with a log_file in a missing directory: exit status 1"
like "$out" "cannot open log_file" "  the reason reaches the caller's standard error"
cfg "$SP_TMP/d4.ini" "pid_file = $SP_TMP/d4.pid" "log_file = $SP_TMP/d4.log"
at_exit "stop_pid $SP_TMP/d4.pid"
timeout 20 "$BIN" -d "$SP_TMP/d4.ini" >/dev/null 2>&1
sed -i "s#^pid_file = .*#pid_file = $SP_TMP/d5.pid#" "$SP_TMP/d4.ini"
out=$(timeout 20 "$BIN" -d "$SP_TMP/d4.ini" 2>&1)
is "$?" 1 "-d on a port another shardpool listens on: exit status 1"
like "$out" "[Aa]ddress already in use|cannot listen" "  the reason reaches the caller's standard error"
sed -i "s#^pid_file = .*#pid_file = $SP_TMP/d4.pid#" "$SP_TMP/d4.ini"
stop_pid "$SP_TMP/d4.pid"

# ---------------------------------------------------------------- --check-config
cfg "$SP_TMP/c1.ini" "auth_type = md5" "auth_file = $SP_TMP/missing-userlist.txt"
sed -i 's/^auth_type = trust$//' "$SP_TMP/c1.ini"
out=$("$BIN" --check-config "$SP_TMP/c1.ini" 2>&1)
is "$?" 1 "--check-config reads the auth_file: a missing one fails"
like "$out" "missing-userlist.txt" "  naming the file"
cfg "$SP_TMP/c2.ini"
printf '[database pgbouncer]\n[shard pgbouncer.0]\nprimary = host=127.0.0.1 port=%s\n' "$PGPORT0" >>"$SP_TMP/c2.ini"
out=$("$BIN" --check-config "$SP_TMP/c2.ini" 2>&1)
is "$?" 1 "--check-config refuses [database pgbouncer] (the admin console's name)"
like "$out" "taken by the admin console" "  saying why"

# ---------------------------------------------------------------- open-file limit
cfg "$SP_TMP/f.ini" "pid_file = $SP_TMP/f.pid" "log_file = $SP_TMP/f.log" "max_client_conn = 1000"
at_exit "stop_pid $SP_TMP/f.pid"
(ulimit -n 64 && exec "$BIN" -d "$SP_TMP/f.ini") || bail_out "cannot start shardpool with ulimit -n 64"
ok "an open-file limit below max_client_conn is warned about at start" grep -q "open-file limit (64) is below max_client_conn" "$SP_TMP/f.log"
# hold 80 idle connections (more than the limit allows), then one more client
"$PY" - "$SP_PORT" >"$SP_TMP/hold.out" 2>&1 <<'PYEOF' &
import socket, sys, time
socks = []
for i in range(80):
    try:
        socks.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5))
    except OSError as e:
        print("connect failed:", e)
print("holding", len(socks), flush=True)
time.sleep(8)
PYEOF
HOLDER=$!
at_exit "kill $HOLDER 2>/dev/null"
for ((i = 0; i < 50; i++)); do grep -q holding "$SP_TMP/hold.out" && break; sleep 0.1; done
t0=$(date +%s%N)
out=$(q "SELECT 1")
ms=$((($(date +%s%N) - t0) / 1000000))
like "$out" "out of file descriptors" "a client beyond the open-file limit is refused with a reason"
ok "  at once, not left in the backlog (${ms} ms)" test "$ms" -lt 3000
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
sleep 0.5
is "$(q "SELECT 'again'")" again "once the descriptors are free, clients are served again"
ok "shardpool is still running" kill -0 "$(cat "$SP_TMP/f.pid")"
stop_pid "$SP_TMP/f.pid"

done_testing
