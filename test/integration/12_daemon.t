#!/bin/bash
# 12_daemon.t - how operators start shardpool: -d (daemon) returns once shardpool
# listens, hands the caller's standard error back (a caller that reads it to its end,
# such as $(shardpool -d ...), does not wait for shardpool's exit), and reports why a
# start failed (pid file, log file, port in use) on standard error with status 1;
# --check-config reads the auth_file and refuses the admin console's names; an
# open-file limit below max_client_conn is warned about at start, and clients beyond
# it are refused with 53300 instead of waiting unanswered in the listen backlog. A
# second process on a unix socket in use is refused; with so_reuseport two share the
# port and the socket, and the old one can be stopped without a refused client.
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

# ---------------------------------------------------------------- log_level, -q and -v
# the file's log_level applies from the start (a client's login is a LOG line, so
# warning shows none); -q and -v apply over it, also after a SIGHUP
# log_run NAME LEVEL [OPTION]: start shardpool as a daemon with log_level LEVEL and the
# command-line OPTION, send a SIGHUP, and query it before and after
log_run() {
	cfg "$SP_TMP/$1.ini" "pid_file = $SP_TMP/$1.pid" "log_file = $SP_TMP/$1.log" "log_level = $2"
	at_exit "stop_pid $SP_TMP/$1.pid"
	timeout 20 "$BIN" ${3:+"$3"} -d "$SP_TMP/$1.ini" >/dev/null 2>&1
	q "SELECT 1" >/dev/null
	kill -HUP "$(cat "$SP_TMP/$1.pid")"
	sleep 0.3
	q "SELECT 1" >/dev/null
}
log_run l1 warning
unlike "$(cat "$SP_TMP/l1.log")" " LOG " "log_level = warning in the file: no LOG line from the start"
stop_pid "$SP_TMP/l1.pid"
log_run l2 info -q
unlike "$(cat "$SP_TMP/l2.log")" " LOG " "-q over log_level = info: errors only, also after a SIGHUP"
stop_pid "$SP_TMP/l2.pid"
log_run l3 warning -v
like "$(cat "$SP_TMP/l3.log")" " LOG .*new connection" "-v over log_level = warning: one level more (LOG), also after a SIGHUP"
stop_pid "$SP_TMP/l3.pid"

# logrotate: the log is moved away, then SIGHUP; the new file is opened even when the
# configuration has an error just then, and the error is logged there
cfg "$SP_TMP/r1.ini" "pid_file = $SP_TMP/r1.pid" "log_file = $SP_TMP/r1.log"
at_exit "stop_pid $SP_TMP/r1.pid"
timeout 20 "$BIN" -d "$SP_TMP/r1.ini" >/dev/null 2>&1
mv "$SP_TMP/r1.log" "$SP_TMP/r1.log.1"
echo "this line is broken" >>"$SP_TMP/r1.ini"
kill -HUP "$(cat "$SP_TMP/r1.pid")"
sleep 0.5
like "$(cat "$SP_TMP/r1.log" 2>&1)" "WARNING reload failed, keeping the running configuration: .*r1.ini:[0-9]+: .*this line is broken" \
	"SIGHUP after logrotate with a broken file: the new log file says what is wrong"
is "$(q "SELECT 'still served'")" "still served" "  the running configuration serves on"
stop_pid "$SP_TMP/r1.pid"

# ---------------------------------------------------------------- SHUTDOWN on the admin console
# psql -c SHUTDOWN succeeds (the command completes before the console is closed), a
# transaction that runs finishes, then shardpool exits and removes its pid file
cfg "$SP_TMP/s1.ini" "pid_file = $SP_TMP/s1.pid" "log_file = $SP_TMP/s1.log" "admin_users = app"
at_exit "stop_pid $SP_TMP/s1.pid"
timeout 20 "$BIN" -d "$SP_TMP/s1.ini" >/dev/null 2>&1
PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d plain \
	-c "BEGIN" -c "SELECT pg_sleep(1.5)" -c "SELECT 'txn done'" -c "COMMIT" >"$SP_TMP/s1.out" 2>&1 &
txn=$!
sleep 0.5
out=$(PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHUTDOWN" 2>&1)
is "$?" 0 "psql -c SHUTDOWN: exit status 0"
unlike "$out" "closed the connection unexpectedly" "  the console is not cut off before its answer"
wait "$txn"
like "$(cat "$SP_TMP/s1.out")" "txn done" "  the transaction that ran finishes"
for ((i = 0; i < 50; i++)); do [ -e "$SP_TMP/s1.pid" ] || break; sleep 0.1; done
ok "  shardpool exits and removes its pid file" test ! -e "$SP_TMP/s1.pid"

# ---------------------------------------------------------------- SIGTERM in session pooling
# a session client between transactions holds its server but runs nothing: the
# graceful shutdown closes it at once (57P01) instead of waiting out shutdown_timeout
# (30 s); a transaction that runs still finishes first
cfg "$SP_TMP/g1.ini" "pid_file = $SP_TMP/g1.pid" "log_file = $SP_TMP/g1.log" "pool_mode = session"
at_exit "stop_pid $SP_TMP/g1.pid"
timeout 20 "$BIN" -d "$SP_TMP/g1.ini" >/dev/null 2>&1
"$PY" - "$SP_PORT" >"$SP_TMP/g1-idle.out" 2>&1 <<'PYEOF' &
import sys, time, psycopg
c = psycopg.connect("host=127.0.0.1 port=%s user=app dbname=plain" % sys.argv[1], autocommit=True)
c.execute("SELECT 1")
print("connected", flush=True)
try:
    time.sleep(20)
    c.execute("SELECT 1")
    print("still served")
except psycopg.Error as e:
    print("closed:", e.sqlstate)
PYEOF
idle=$!
at_exit "kill $idle 2>/dev/null"
PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d plain \
	-c "BEGIN" -c "SELECT pg_sleep(1.5)" -c "SELECT 'txn done'" -c "COMMIT" >"$SP_TMP/g1.out" 2>&1 &
txn=$!
for ((i = 0; i < 50; i++)); do grep -q connected "$SP_TMP/g1-idle.out" && break; sleep 0.1; done
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$(cat "$SP_TMP/g1.pid")"
for ((i = 0; i < 150; i++)); do [ -e "$SP_TMP/g1.pid" ] || break; sleep 0.1; done
ms=$((($(date +%s%N) - t0) / 1000000))
ok "session pooling, SIGTERM: shardpool exits once the transaction is done (${ms} ms), not after shutdown_timeout" \
	test "$ms" -lt 8000
wait "$txn"
like "$(cat "$SP_TMP/g1.out")" "txn done" "  the transaction that ran finished"
unlike "$(cat "$SP_TMP/g1.log")" "shutdown_timeout reached" "  no transaction was cut off by shutdown_timeout"
kill "$idle" 2>/dev/null
wait "$idle" 2>/dev/null

# a statement fanned out to every shard when SIGTERM comes finishes, then shardpool exits
on_all "CREATE TABLE IF NOT EXISTS t12_fan (id int)" || bail_out "cannot create t12_fan"
cfg "$SP_TMP/g2.ini" "pid_file = $SP_TMP/g2.pid" "log_file = $SP_TMP/g2.log"
printf '[database fan]\n[shard fan.0]\nprimary = host=127.0.0.1 port=%s dbname=app user=app password=secret\n[shard fan.1]\nprimary = host=127.0.0.1 port=%s dbname=app user=app password=secret\n[table fan.t12_fan]\nkey = id\ntype = integer\n' \
	"$SB_PRIMARY_PORT_0" "$SB_PRIMARY_PORT_1" >>"$SP_TMP/g2.ini"
at_exit "stop_pid $SP_TMP/g2.pid"
timeout 20 "$BIN" -d "$SP_TMP/g2.ini" >/dev/null 2>&1
PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d fan \
	-c "SELECT 'fanned out', count(*) FROM t12_fan, pg_sleep(1.5)" >"$SP_TMP/g2.out" 2>&1 &
fan=$!
sleep 0.7
kill -TERM "$(cat "$SP_TMP/g2.pid")"
wait "$fan"
is "$(cat "$SP_TMP/g2.out")" "fanned out|0" "SIGTERM during a fanned-out statement: it finishes"
for ((i = 0; i < 50; i++)); do [ -e "$SP_TMP/g2.pid" ] || break; sleep 0.1; done
ok "  then shardpool exits" test ! -e "$SP_TMP/g2.pid"

# SHOW LISTS counts the host names in the DNS cache (dns_names), as pgbouncer's does
cfg "$SP_TMP/n1.ini" "pid_file = $SP_TMP/n1.pid" "log_file = $SP_TMP/n1.log" "admin_users = app"
printf '[database named]\n[shard named.0]\nprimary = host=nosuchhost.invalid port=5432 dbname=app\n' >>"$SP_TMP/n1.ini"
at_exit "stop_pid $SP_TMP/n1.pid"
timeout 20 "$BIN" -d "$SP_TMP/n1.ini" >/dev/null 2>&1
is "$(PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHOW LISTS" |
	awk -F'|' '$1 == "dns_names" {print $2}')" 1 "SHOW LISTS: dns_names = 1, the one server host name"
stop_pid "$SP_TMP/n1.pid"

# ---------------------------------------------------------------- SIGUSR1, SIGUSR2
# PAUSE and RESUME, as in pgbouncer (not the default action of ending the process)
cfg "$SP_TMP/p1.ini" "pid_file = $SP_TMP/p1.pid" "log_file = $SP_TMP/p1.log" "admin_users = app"
at_exit "stop_pid $SP_TMP/p1.pid"
timeout 20 "$BIN" -d "$SP_TMP/p1.ini" >/dev/null 2>&1
state() { PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHOW STATE" | awk -F'|' '$1 == "paused" {print $2}'; }
kill -USR1 "$(cat "$SP_TMP/p1.pid")"
sleep 0.3
ok "SIGUSR1: shardpool is still running" kill -0 "$(cat "$SP_TMP/p1.pid")"
is "$(state)" yes "  and paused (SHOW STATE)"
q "SELECT 'waited for the resume'" >"$SP_TMP/p1.out" 2>&1 &
waiter=$!
sleep 1
ok "  a client's transaction waits" kill -0 "$waiter"
kill -USR2 "$(cat "$SP_TMP/p1.pid")"
wait "$waiter"
is "$(cat "$SP_TMP/p1.out")" "waited for the resume" "SIGUSR2: RESUME, the waiting client proceeds"
is "$(state)" no "  and SHOW STATE says paused no"
stop_pid "$SP_TMP/p1.pid"

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

# ---------------------------------------------------------------- the unix socket of a running process
sock=$SP_TMP/sock
mkdir -p "$sock"
qs() { PGCONNECT_TIMEOUT=10 timeout 20 psql -X -A -t -h "$sock" -p "$SP_PORT" -U app -d plain -c "$1" 2>&1; }
cfg "$SP_TMP/u1.ini" "pid_file = $SP_TMP/u1.pid" "log_file = $SP_TMP/u1.log"
sed -i "s#^listen_addr = .*#listen_addr =#; s#^unix_socket_dir =.*#unix_socket_dir = $sock#" "$SP_TMP/u1.ini"
at_exit "stop_pid $SP_TMP/u1.pid"
timeout 20 "$BIN" -d "$SP_TMP/u1.ini" >/dev/null 2>&1 || bail_out "cannot start shardpool on a unix socket"
is "$(qs "SELECT 'on the socket'")" "on the socket" "a shardpool on a unix socket only serves clients"
sed "s#^pid_file = .*#pid_file = $SP_TMP/u2.pid#" "$SP_TMP/u1.ini" >"$SP_TMP/u2.ini"
out=$(timeout 20 "$BIN" -d "$SP_TMP/u2.ini" 2>&1)
is "$?" 1 "a second shardpool on the same unix socket: exit status 1"
like "$out" "another process listens on .*s.PGSQL.$SP_PORT" "  saying another process listens there"
is "$(qs "SELECT 'still mine'")" "still mine" "  and the socket file was not taken from the first one"
stop_pid "$SP_TMP/u1.pid"
ok "the socket file is removed at exit" test ! -e "$sock/.s.PGSQL.$SP_PORT"

# ---------------------------------------------------------------- so_reuseport: an upgrade without a gap
# gone PID: wait (5 s at most) until the process has exited
gone() { for ((i = 0; i < 50; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
cfg "$SP_TMP/r.ini" "pid_file = $SP_TMP/r.pid" "log_file = $SP_TMP/r.log" "so_reuseport = yes" \
	"shutdown_timeout = 5" "admin_users = app"
sed -i "s#^unix_socket_dir =.*#unix_socket_dir = $sock#" "$SP_TMP/r.ini"
at_exit "stop_pid $SP_TMP/r.pid"
timeout 20 "$BIN" -d "$SP_TMP/r.ini" >/dev/null 2>&1 || bail_out "cannot start shardpool with so_reuseport"
old=$(cat "$SP_TMP/r.pid")
at_exit "kill $old 2>/dev/null"
out=$(timeout 20 "$BIN" -d "$SP_TMP/r.ini" 2>&1)
is "$?" 0 "so_reuseport: a second shardpool on the same port and socket starts"
new=$(cat "$SP_TMP/r.pid")
isnt "$new" "$old" "  the pid file names the new process"
ok "  and the old one still runs" kill -0 "$old"
mark=$(wc -l <"$SP_TMP/r.log")
fails=0
for ((i = 0; i < 40; i++)); do [ "$(q "SELECT 1")" = 1 ] || fails=$((fails + 1)); done
is "$fails" 0 "40 clients while both run: all served"
pids=$(tail -n +"$((mark + 1))" "$SP_TMP/r.log" | grep "new connection" | sed -n 's/^[^[]*\[\([0-9]*\)\].*/\1/p' | sort -u | wc -l)
is "$pids" 2 "  by both processes (the kernel spreads them)"
kill -TERM "$old"
ok "SIGTERM: the old process exits" gone "$old"
is "$(cat "$SP_TMP/r.pid" 2>&1)" "$new" "  leaving the pid file to the new one"
ok "  and the unix socket file too" test -S "$sock/.s.PGSQL.$SP_PORT"
fails=0
for ((i = 0; i < 20; i++)); do
	[ "$(q "SELECT 1")" = 1 ] || fails=$((fails + 1))
	[ "$(qs "SELECT 1")" = 1 ] || fails=$((fails + 1))
done
is "$fails" 0 "40 clients after the old process left (TCP and unix socket): all served by the new one"

# SHUTDOWN WAIT_FOR_CLIENTS on the admin console: the old process keeps serving the
# clients it has until they leave, new ones reach the new process
cat >"$SP_TMP/wait_clients.py" <<'PY'
import os, subprocess, sys, time
import psycopg
port, ini, pidfile, binary = sys.argv[1:5]
def check(desc, got, exp):
    print("check\t%s\t%s\t%s" % (desc, got, exp), flush=True)
def conn(db):
    c = psycopg.connect("host=127.0.0.1 port=%s user=app dbname=%s" % (port, db), autocommit=True)
    return c
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
old = int(open(pidfile).read())
held = conn("plain")            # only one process runs: these reach it
adm = conn("shardpool")
r = subprocess.run([binary, "-d", ini], capture_output=True, text=True, timeout=30)
check("a third process starts beside it", r.returncode, 0)
new = int(open(pidfile).read())
adm.execute("SHUTDOWN WAIT_FOR_CLIENTS")
ok = 0
for i in range(10):
    ok += held.execute("SELECT %s::int", (i,)).fetchone()[0] == i
    time.sleep(0.1)
check("after SHUTDOWN WAIT_FOR_CLIENTS its client is still served (10 transactions)", ok, 10)
check("  and the process still runs", alive(old), True)
served = 0
for i in range(20):
    c = conn("plain")
    served += c.execute("SELECT 1").fetchone()[0] == 1
    c.close()
check("20 new clients meanwhile: all served (by the new process)", served, 20)
held.close()
for i in range(50):
    if not alive(old):
        break
    time.sleep(0.1)
check("the old process exits once its last client has left (admin consoles do not count)", alive(old), False)
check("the new one runs on", alive(new), True)
print("end")
PY
if $PY -c 'import psycopg' 2>/dev/null; then
	run_checks wait_clients "$PY" "$SP_TMP/wait_clients.py" "$SP_PORT" "$SP_TMP/r.ini" "$SP_TMP/r.pid" "$BIN"
else
	skip "psycopg is not installed: SHUTDOWN WAIT_FOR_CLIENTS" 1
fi
stop_pid "$SP_TMP/r.pid"
ok "the last process removes its pid file" test ! -e "$SP_TMP/r.pid"
ok "  and its socket file" test ! -e "$sock/.s.PGSQL.$SP_PORT"

done_testing
