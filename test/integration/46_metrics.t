#!/bin/bash
# 46_metrics.t - the Prometheus endpoint (metrics_port): GET /metrics answers the text
# exposition format, every sample line well formed; its counters follow the traffic
# (transactions of a pool, plan cache hits and misses) and its gauges the state
# (servers of a pool by state, health of each server); HEAD, 404, 405, 400 and 431
# answers; a scraper that sends nothing holds no one up, and more than 16 at once are
# turned away without harm.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
command -v curl >/dev/null || skip_all "curl is not installed"

sandbox_ensure
MPORT=$(free_port)
sp_write_config "$SP_TMP/sp.ini" pool_mode=transaction default_pool_size=3 "metrics_port=$MPORT" \
	health_check_period=1
printf '\n[table app.t46]\nkey = id\ntype = integer\n' >>"$SP_CONFIG"
sp_start

q() { PGPASSWORD=secret timeout 10 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$1" -c "$2" 2>&1; }
scrape() { curl -s -m 5 "http://127.0.0.1:$MPORT/metrics"; }
# metric NAME LABEL_REGEX: the value of the first sample of NAME whose labels match
metric() { scrape | awk -v n="$1" -v l="$2" '$1 ~ "^shardpool_" n "({|$)" && $1 ~ l {print $2; exit}'; }

out=$(curl -s -m 5 -D "$SP_TMP/h" "http://127.0.0.1:$MPORT/metrics")
like "$(head -n 1 "$SP_TMP/h")" "^HTTP/1.1 200 OK" "GET /metrics: 200"
like "$(cat "$SP_TMP/h")" "Content-Type: text/plain; version=0.0.4" "... in the text exposition format"
like "$out" $'\n''shardpool_up 1'$'\n' "... shardpool_up 1"
bad=$(grep -v '^#' <<<"$out" | grep -cvE '^shardpool_[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9][0-9.e+-]*$')
is "$bad" 0 "every sample line is well formed"
is "$(grep -c '^# TYPE shardpool_pool_transactions_total counter$' <<<"$out")" 1 "a TYPE line per family"

on_all "CREATE TABLE IF NOT EXISTS t46 (id int primary key, v text)"
before=$(metric pool_transactions_total 'database="plain".*role="primary"')
for i in 1 2 3 4 5; do q plain "SELECT $i" >/dev/null; done
after=$(metric pool_transactions_total 'database="plain".*role="primary"')
is "$((${after:-0} - ${before:-0}))" 5 "five transactions on plain: its primary pool's counter grows by 5"
ok "... and the transaction time is there" test -n "$(metric pool_transaction_seconds_total 'database="plain"')"
idle=$(metric pool_servers 'database="plain".*role="primary".*state="idle"')
ok "pool_servers: plain's primary pool has an idle server after them ($idle)" test "${idle:-0}" -ge 1

m0=$(metric route_cache_misses_total '')
h0=$(metric route_cache_hits_total '')
q app "SELECT v FROM t46 WHERE id = 1" >/dev/null
q app "SELECT v FROM t46 WHERE id = 2" >/dev/null
is "$(($(metric route_cache_misses_total '') - m0))" 1 "a routed statement's first run: one plan cache miss"
is "$(($(metric route_cache_hits_total '') - h0))" 1 "... the same statement with another key: one hit"

sleep 1.5
is "$(metric server_up 'database="app",shard="0",role="primary"')" 1 "server_up: shard 0's primary answers its probes"
is "$(metric server_in_recovery 'database="app",shard="0",role="replica"')" 1 "server_in_recovery: its replica is a standby"
is "$(metric server_in_rotation 'database="app",shard="0",role="replica"')" 1 "server_in_rotation: the replica takes reads"
like "$(metric clients 'state="idle"')" "^[0-9]+$" "clients by state"

# HTTP edges
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$MPORT/metrics")" 200 "HEAD /metrics: 200"
is "$(curl -s -m 5 -I "http://127.0.0.1:$MPORT/metrics" | grep -c '^shardpool_')" 0 "... without a body"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/")" 404 "GET /: 404"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/metrics?x=1")" 200 "a query string is ignored"
is "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$MPORT/metrics")" 405 "POST: 405"
# raw BYTES: send them (Python escapes such as \r\n) and print the status line of the answer
raw() {
	/usr/bin/python3 - "$MPORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
except OSError:
    pass
print(data.split(b"\r\n")[0].decode(errors="replace"))
PY
}
is "$(raw 'garbage\r\n\r\n')" "HTTP/1.1 400 Bad Request" "a request line that is not HTTP: 400"
is "$(raw "GET /metrics HTTP/1.1\\r\\nX: $(head -c 9000 /dev/zero | tr '\0' a)")" \
	"HTTP/1.1 431 Request Header Fields Too Large" "a request head over 8 kB: 431"

# scrapers that send nothing
/usr/bin/python3 - "$MPORT" >"$SP_TMP/idle.out" 2>&1 <<'PY' &
import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) for _ in range(20)]
print("holding", len(socks), flush=True)
time.sleep(3)
PY
holder=$!
for ((i = 0; i < 50; i++)); do grep -q holding "$SP_TMP/idle.out" && break; sleep 0.1; done
like "$(cat "$SP_TMP/idle.out")" "holding 20" "20 connections that send nothing are accepted or turned away"
is "$(q plain "SELECT 'served'")" served "... and clients are served meanwhile"
wait "$holder"
sleep 0.3
is "$(metric up '')" 1 "once they are gone, /metrics answers again"
ok "shardpool is still running" kill -0 "$SP_PID"

sp_stop
is "$?" 0 "shardpool exits cleanly on SIGTERM"
done_testing
