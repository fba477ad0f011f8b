#!/bin/bash
# 15_dns.t - servers named by host name (src/resolve.c): pools and health checks
# work with a name (and with localhost); a name that does not resolve gives its
# clients 08006 "could not resolve host" at once while other databases work; and a
# DNS server that never answers freezes nobody: other databases answer in well under
# a second, the clients of the silent name get server_connect_timeout's error.
#
# shardpool runs in a mount namespace of its own (unshare -m, root) with this test's
# /etc/hosts and /etc/resolv.conf bound over the machine's, which are never touched;
# the silent DNS server is a UDP socket on a 127.53.x.y address that reads nothing.
# Without root or unshare only the localhost checks run, the others are skipped.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
[ -x "$RAW" ] || skip_all "rawclient not built (make check builds it)"
admin() { SP_DB=shardpool sp_psql -F'|' -c "$1"; }
# fast SQL: one query to database fast, 40 s at most (a frozen shardpool fails it)
fast() {
	PGPASSWORD=secret timeout 40 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d fast -c "$1" 2>&1 ||
		echo "(failed: $?)"
}

sandbox_ensure
P0=$SB_PRIMARY_PORT_0
R0=$SB_REPLICA_PORT_0_0
NAME=sp-dns-$$.test # in the test's /etc/hosts
SLOW=sp-slow-$$.test # in no /etc/hosts: asked of the DNS server
NX=no-such-host.invalid

NS=0
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -m true 2>/dev/null; then
	NS=1
else
	diag "not root or no unshare: only localhost is checked"
fi

HOSTS=$SP_TMP/hosts
{
	cat /etc/hosts
	echo "127.0.0.1 $NAME"
} >"$HOSTS"
# a DNS server address where nothing listens: lookups fail at once (port unreachable)
DNS_ADDR=127.53.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
printf 'nameserver %s\noptions timeout:1 attempts:1\n' "$DNS_ADDR" >"$SP_TMP/resolv.refused"
cat >"$SP_TMP/nswrap" <<'EOF'
#!/bin/sh
# nswrap HOSTS RESOLV CMD...: CMD (exec'ed, same pid) with HOSTS as /etc/hosts and
# RESOLV as /etc/resolv.conf, in a mount namespace of its own
h=$1 r=$2
shift 2
exec unshare -m -- sh -c 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' "$h" "$r" "$@"
EOF
chmod +x "$SP_TMP/nswrap"

# ---------------------------------------------------------------- names that resolve, and one that does not
sp_write_config "$SP_TMP/sp.ini" auth_type=md5 server_connect_timeout=3 server_login_retry=1 \
	health_check_period=1s health_check_timeout=2s dns_nxdomain_ttl=2s
cat >>"$SP_CONFIG" <<EOF

[database local]
[shard local.0]
primary = host=localhost port=$P0 dbname=app
EOF
if [ "$NS" = 1 ]; then
	cat >>"$SP_CONFIG" <<EOF

[database named]
[shard named.0]
primary = host=$NAME port=$P0 dbname=app
replica = host=$NAME port=$R0 dbname=app

[database nx]
[shard nx.0]
primary = host=$NX port=$P0 dbname=app
EOF
	SP_WRAPPER="$SP_TMP/nswrap $HOSTS $SP_TMP/resolv.refused"
fi
sp_start

is "$(SP_DB=local sp_psql -c "SELECT 'by localhost'")" "by localhost" "localhost: a pool connects"

# health probes run about every second: give the first ones time
health_row() { admin "SHOW HEALTH" | awk -F'|' -v db="$1" -v role="$2" '$1 == db && $3 == role'; }
wait_health() {
	local i row
	for ((i = 0; i < 50; i++)); do
		row=$(health_row "$1" "$2")
		[[ $row =~ $3 ]] && break
		sleep 0.1
	done
	echo "$row"
}
like "$(wait_health local primary '\|yes\|')" "^local\|0\|primary\|localhost\|$P0\|yes\|" \
	"localhost: the health check reaches the primary"

if [ "$NS" = 1 ]; then
	is "$(SP_DB=named sp_psql -c "SELECT 'by name'")" "by name" "host name: a pool connects"
	like "$(cat "$SP_LOG")" "host $NAME resolves to 127\.0\.0\.1" "host name: the log says what it resolved to"
	like "$(wait_health named primary '\|yes\|')" "^named\|0\|primary\|$NAME\|$P0\|yes\|no\|" \
		"host name: the health check reaches the primary (and sees it is one)"
	like "$(wait_health named 'replica 0' '\|yes\|yes\|yes\|')" "^named\|0\|replica 0\|$NAME\|$R0\|yes\|yes\|yes\|" \
		"host name: the replica is probed, in recovery, and in rotation"

	t0=$(now_ms)
	out=$(raw "$SP_PORT" startup:app:nx auth:secret 2>&1)
	t1=$(now_ms)
	like "$out" "E 08006 .*could not resolve host \"$NX\": " \
		"a name that does not resolve: 08006 could not resolve host"
	unlike "$out" "No route to host" "... not EHOSTUNREACH"
	ok "... at once ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1000
	like "$(wait_health nx primary 'resolve')" "^nx\|0\|primary\|$NX\|$P0\|no\|.*could not resolve host \"$NX\"" \
		"... the health check reports it down, saying why"
	is "$(SP_DB=named sp_psql -c "SELECT 'still fine'")" "still fine" "... other databases keep working"
	sleep 2.5 # dns_nxdomain_ttl: the name was looked up again meanwhile
	out=$(raw "$SP_PORT" startup:app:nx auth:secret 2>&1)
	like "$out" "E 08006 .*could not resolve host \"$NX\": " "... and it still fails clearly after a retry"

	is "$(admin "RELOAD")" "" "RELOAD (looks every name up again)"
	is "$(SP_DB=named sp_psql -c "SELECT 'after reload'")" "after reload" "host name: pools work after RELOAD"
	like "$(admin "SHOW CONFIG")" "dns_max_ttl\|15" "SHOW CONFIG lists dns_max_ttl"
else
	skip 13 "needs root and unshare for a private /etc/hosts and resolv.conf"
fi
ok "shardpool exits cleanly" sp_stop

# ---------------------------------------------------------------- a DNS server that never answers
if [ "$NS" = 1 ]; then
	# reads nothing, answers nothing: every lookup of SLOW waits for the resolver's timeout
	/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
time.sleep(600)
' "$DNS_ADDR" >"$SP_TMP/blackhole.out" 2>&1 </dev/null &
	HOLEPID=$!
	at_exit "kill $HOLEPID 2>/dev/null"
	for ((i = 0; i < 50; i++)); do
		grep -q ready "$SP_TMP/blackhole.out" && break
		sleep 0.1
	done
	ok "a silent DNS server on $DNS_ADDR:53" grep -q ready "$SP_TMP/blackhole.out"
	printf 'nameserver %s\noptions timeout:30 attempts:1\n' "$DNS_ADDR" >"$SP_TMP/resolv.silent"

	sp_write_config "$SP_TMP/slow.ini" auth_type=md5 server_connect_timeout=2 server_login_retry=1 \
		health_check_period=1s health_check_timeout=2s
	cat >>"$SP_CONFIG" <<EOF

[database slow]
[shard slow.0]
primary = host=$SLOW port=$P0 dbname=app
replica = host=$SLOW port=$R0 dbname=app

[database fast]
[shard fast.0]
primary = host=127.0.0.1 port=$P0 dbname=app
EOF
	SP_WRAPPER="$SP_TMP/nswrap $HOSTS $SP_TMP/resolv.silent"
	sp_start
	# serving (the start waits up to a second for the silent name's first probe)
	is "$(fast "SELECT 'up'")" "up" "silent DNS: shardpool starts"
	(
		t0=$(now_ms)
		raw "$SP_PORT" startup:app:slow auth:secret 2>&1
		echo "elapsed $(($(now_ms) - t0))"
	) >"$SP_TMP/slowclient.out" &
	SLOWCLIENT=$!
	sleep 0.3 # the slow client's server connection now waits for the resolver
	worst=0
	answers=
	for ((i = 0; i < 5; i++)); do
		t0=$(now_ms)
		answers+=$(fast "SELECT 'fast'")
		t1=$(now_ms)
		[ $((t1 - t0)) -gt "$worst" ] && worst=$((t1 - t0))
		sleep 0.2
	done
	is "$answers" "fastfastfastfastfast" "silent DNS: another database answers every query"
	ok "silent DNS: ... each in well under a second (slowest $worst ms)" test "$worst" -lt 1000
	t0=$(now_ms)
	like "$(admin "SHOW HEALTH")" "slow\|0\|primary\|$SLOW\|$P0\|unknown\|" \
		"silent DNS: the admin console answers; the unresolved node is not marked down"
	ok "... at once ($(($(now_ms) - t0)) ms)" test $(($(now_ms) - t0)) -lt 1000
	wait "$SLOWCLIENT"
	out=$(cat "$SP_TMP/slowclient.out")
	like "$out" "E 08006 .*server_connect_timeout \(2\.0 s\) expired during resolving host \"$SLOW\"" \
		"silent DNS: its client gets 08006 when server_connect_timeout expires"
	# the login tries the primary, then the replica for the server's parameters: 2 x 2 s
	elapsed=$(sed -n 's/^elapsed //p' <<<"$out")
	ok "... after server_connect_timeout on the primary and on the replica ($elapsed ms)" \
		test "${elapsed:-0}" -ge 3500 -a "${elapsed:-99999}" -lt 6000
	ok "silent DNS: shardpool exits cleanly with a lookup still hanging" sp_stop
else
	skip 10 "needs root and unshare for a private resolv.conf"
fi

done_testing
