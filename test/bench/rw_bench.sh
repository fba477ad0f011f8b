#!/bin/bash
# test/bench/rw_bench.sh - shardpool's read/write split against Pgpool-II's load balancing.
#
# One run measures both proxies side by side on this machine, in front of the same
# servers, so the ratios between them mean something even where absolute figures drift:
#   pgpool      pgbench -> Pgpool-II 4.3 (Debian's pgpool2), streaming replication
#               mode, load_balance_mode = on -> primary + 2 streaming replicas
#   shardpool   pgbench -> src/shardpool (read_your_writes = on, the default)
#               -> the same primary + replicas
#   shardpool-noryw  the same with read_your_writes = off: Pgpool-II's default
#               (disable_load_balance_on_write = transaction) gives no read-your-writes
#               guarantee outside transactions either, so this row is the like-for-like
#               comparison; the row above shows what the guarantee costs.
# The servers: test/sandbox, 1 shard = 1 primary + 2 replicas on 127.0.0.1, pgbench -i.
# Reads go to the replicas only on both proxies (shardpool primary_reads = fallback,
# Pgpool-II backend_weight0 = 0); both check replication every second and take a
# replica out beyond 16MB of lag (shardpool health_check_period = 1s, max_replica_lag
# = 16MB; Pgpool-II sr_check_period = 1, delay_threshold = 16MB). Both run as user
# postgres when the script runs as root, and pgbench connects as postgres with trust.
#
# The load: a read-mostly mix, pgbench -f read.sql@9 -f write.sql@1, each transaction
# one autocommit statement: 90 % SELECT abalance FROM pgbench_accounts WHERE aid = ?,
# 10 % UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?.
# Measured, per target and per pgbench protocol mode (MODES):
#   tps         pgbench -c CLIENTS -j THREADS -T DURATION, "without initial connection
#               time"; the median of ROUNDS runs, the targets in alternating order
#   cpu us/txn  utime+stime of every process of the proxy (Pgpool-II forks a child per
#               client: the sum over its process group, plus cutime+cstime for children
#               that exited), from /proc/PID/stat, over the run, divided by the
#               transactions pgbench counted
#   placement   (simple mode, one 5 s run per target) the share of transactions each
#               server committed, from the servers' own pg_stat_database.xact_commit
#               (read 11 s after the run: idle backends flush their counters up to 10 s
#               late), and the proxies' own counters (SHOW pool_nodes select_cnt).
# The report ends with the ratio shardpool / Pgpool-II for tps and CPU per transaction
# (the project's target: tps >= 2x).
#
# Usage (needs root or a user that can run PostgreSQL, and pgpool2 installed):
#   make -C REPO                 # the script builds nothing; src/shardpool must exist
#   test/bench/rw_bench.sh
# Environment (defaults in brackets):
#   DURATION [15]  seconds per run    ROUNDS [2]    CLIENTS [16]   THREADS [2]   SCALE [10]
#   MODES ["simple extended"]         TARGETS ["pgpool shardpool shardpool-noryw"]
#   PLACEMENT [1]  0 skips the placement runs (they take 16 s per target)
#   BASE_PORT [29400]  first port tried (the next free ports upward are used)
#   SHARDPOOL [REPO/src/shardpool]    PGPOOL [pgpool]
#   RESULTS [/tmp/rw_bench-DATE.txt]  the report, with one "raw" line per run
#   WORKDIR [mktemp -d /tmp/sp_rw_bench.XXXXXX]  removed on exit unless KEEP=1
# Whatever the script starts is stopped when it exits, also on Ctrl-C or SIGTERM.
#
# Deliberately not here: building, sharding (one shard), and pass/fail: it is a
# benchmark, not a test, and is not part of make check.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SHARDPOOL=${SHARDPOOL:-$REPO/src/shardpool}
PGPOOL=${PGPOOL:-pgpool}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
MODES=${MODES:-simple extended}
TARGETS=${TARGETS:-pgpool shardpool shardpool-noryw}
BASE_PORT=${BASE_PORT:-29400}
RESULTS=${RESULTS:-/tmp/rw_bench-$(date +%Y%m%d-%H%M%S).txt}
KEEP=${KEEP:-0}
PLACEMENT=${PLACEMENT:-1}
PROG=${0##*/}

die() { echo "$PROG: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }
say() { printf '%s\n' "$*"; printf '%s\n' "$*" >>"$RESULTS"; }

case "$DURATION$ROUNDS$CLIENTS$THREADS$SCALE$BASE_PORT" in
*[!0-9]*) die "DURATION, ROUNDS, CLIENTS, THREADS, SCALE, BASE_PORT: numbers expected" ;;
esac
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"
[ -x "$SHARDPOOL" ] || die "$SHARDPOOL is not built (cd $REPO && autoreconf -fi && ./configure && make -j2)"
command -v "$PGPOOL" >/dev/null || die "$PGPOOL not found (apt-get install pgpool2)"
[ -x "$PGBIN/pgbench" ] || die "$PGBIN/pgbench not found (apt-get install postgresql-15)"

export LC_ALL=C.UTF-8
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE
export PGCONNECT_TIMEOUT=10
AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1

# ------------------------------------------------------------------ clean-up
SB_DIR=
declare -A PID=()
CLEANED=0
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	note "pid $pid ignored SIGTERM; sending SIGKILL to its process group"
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
}
cleanup() {
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	trap '' INT TERM
	local t
	for t in "${!PID[@]}"; do stop_pid "${PID[$t]}"; done
	[ -n "$SB_DIR" ] && "$REPO/test/sandbox" stop "$SB_DIR" >/dev/null 2>&1
	if [ -n "${WORKDIR:-}" ] && [ -d "$WORKDIR" ]; then
		if [ "$KEEP" = 1 ]; then note "kept $WORKDIR"; else rm -rf "$WORKDIR"; fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

# ------------------------------------------------------------------ helpers
port_in_use() {
	[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
free_port() {
	local p=$1
	while port_in_use "$p"; do
		p=$((p + 1))
		[ "$p" -le 65535 ] || die "no free port above $1"
	done
	echo "$p"
}
# as_pg CMD... &: as the servers' owner, in a session (and process group) of its own
# whose id is the process's pid ($!), so the CPU of all its processes can be summed.
# Only in the background: it execs, replacing the subshell that & made.
as_pg() {
	ulimit -n 4096 2>/dev/null
	if [ "$AS_ROOT" = 1 ]; then
		exec setpriv --reuid=postgres --regid=postgres --clear-groups -- setsid "$@"
	else
		exec setsid "$@"
	fi
}
psql_to() { "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d app "${@:2}"; }
wait_ready() {
	local i
	for ((i = 0; i < 150; i++)); do
		psql_to "$1" -c 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$2 does not answer on port $1"
}
# group_ticks PGID: utime+stime+cutime+cstime of every process in the group, in ticks
# (cat, not awk on the files: awk stops at a process that exited after the glob)
group_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$1" '
		{
			line = $0
			sub(/^.*\) /, "", line)   # fields from 3 (state) on
			n = split(line, f, " ")
			if (n >= 15 && f[3] == g) s += f[12] + f[13] + f[14] + f[15]
		}
		END { print s + 0 }'
}
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
		else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ------------------------------------------------------------------ set-up
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/sp_rw_bench.XXXXXX)} || die "cannot create a work directory"
mkdir -p "$WORKDIR" && chmod 755 "$WORKDIR"
: >"$RESULTS" || die "cannot write $RESULTS"
SB_DIR=$WORKDIR/sb

PG_BASE=$(free_port "$BASE_PORT")
note "starting the sandbox (1 primary, 2 replicas) in $SB_DIR"
"$REPO/test/sandbox" start "$SB_DIR" --shards 1 --replicas 2 --base-port "$PG_BASE" >"$WORKDIR/sandbox.out" 2>&1 ||
	{ cat "$WORKDIR/sandbox.out" >&2; die "the sandbox did not start"; }
# shellcheck disable=SC1091
. "$SB_DIR/sandbox.env"
P=$SB_PRIMARY_PORT_0 R0=$SB_REPLICA_PORT_0_0 R1=$SB_REPLICA_PORT_0_1
NODES="$P $R0 $R1"
PORT_pgpool=$(free_port $((R1 + 1)))
PORT_shardpool=$(free_port $((PORT_pgpool + 1)))
PCP_PORT=$(free_port $((PORT_shardpool + 1)))
PORT_shardpool_noryw=$(free_port $((PCP_PORT + 1)))

note "pgbench -i -s $SCALE"
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$P" -U postgres app >"$WORKDIR/pgbench-init.out" 2>&1 ||
	{ cat "$WORKDIR/pgbench-init.out" >&2; die "pgbench -i failed"; }
# the replicas have the data before anything reads it
lsn=$(psql_to "$P" -c "SELECT pg_current_wal_lsn()")
for r in $R0 $R1; do
	for ((i = 0; i < 300; i++)); do
		[ "$(psql_to "$r" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
		sleep 0.1
	done
done

POOLDIR=$WORKDIR/proxies
mkdir -p "$POOLDIR"
printf '"postgres" ""\n' >"$POOLDIR/userlist.txt"

# shardpool: two instances, read_your_writes on and off
sp_conf() { # sp_conf NAME PORT RYW
	cat >"$POOLDIR/$1.ini" <<EOF
[shardpool]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = trust
auth_file = $POOLDIR/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
log_level = warning
log_file = $POOLDIR/$1.log
admin_users = postgres
health_check_period = 1s
max_replica_lag = 16MB
read_your_writes = $3

[database app]
shards = 1
primary_reads = fallback

[shard app.0]
primary = host=127.0.0.1 port=$P dbname=app
replica = host=127.0.0.1 port=$R0 dbname=app
replica = host=127.0.0.1 port=$R1 dbname=app
EOF
	"$SHARDPOOL" --check-config "$POOLDIR/$1.ini" >"$POOLDIR/$1.check" 2>&1 ||
		{ cat "$POOLDIR/$1.check" >&2; die "shardpool rejects $POOLDIR/$1.ini"; }
}
sp_conf shardpool "$PORT_shardpool" on
sp_conf shardpool-noryw "$PORT_shardpool_noryw" off

# Pgpool-II: streaming replication mode, load balancing over the replicas only
cat >"$POOLDIR/pgpool.conf" <<EOF
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = $PORT_pgpool
socket_dir = '$POOLDIR'
pcp_listen_addresses = ''
pcp_port = $PCP_PORT
pcp_socket_dir = '$POOLDIR'
wd_ipc_socket_dir = '$POOLDIR'
pid_file_name = '$POOLDIR/pgpool.pid'
logdir = '$POOLDIR'
log_destination = 'stderr'
log_min_messages = warning
backend_hostname0 = '127.0.0.1'
backend_port0 = $P
backend_weight0 = 0
backend_flag0 = 'DISALLOW_TO_FAILOVER'
backend_hostname1 = '127.0.0.1'
backend_port1 = $R0
backend_weight1 = 1
backend_flag1 = 'DISALLOW_TO_FAILOVER'
backend_hostname2 = '127.0.0.1'
backend_port2 = $R1
backend_weight2 = 1
backend_flag2 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = off
pool_passwd = ''
num_init_children = $((CLIENTS + 4))
max_pool = 1
connection_cache = on
load_balance_mode = on
statement_level_load_balance = off
disable_load_balance_on_write = 'transaction'
sr_check_period = 1
sr_check_user = 'postgres'
sr_check_password = ''
sr_check_database = 'app'
delay_threshold = 16777216
health_check_period = 0
failover_on_backend_error = off
use_watchdog = off
memory_cache_enabled = off
EOF
: >"$POOLDIR/pcp.conf"
[ "$AS_ROOT" = 1 ] && chown -R postgres:postgres "$POOLDIR"

start_target() { # start_target NAME
	local t=$1 port
	case $t in
	pgpool) as_pg "$PGPOOL" -n -D -f "$POOLDIR/pgpool.conf" -F "$POOLDIR/pcp.conf" >"$POOLDIR/pgpool.out" 2>&1 & ;;
	shardpool*) as_pg "$SHARDPOOL" "$POOLDIR/$t.ini" >"$POOLDIR/$t.out" 2>&1 & ;;
	*) die "unknown target $t" ;;
	esac
	PID[$t]=$!
	port=PORT_${t//-/_}
	note "started $t (pid ${PID[$t]}) on 127.0.0.1:${!port}"
	wait_ready "${!port}" "$t"
}
for t in $TARGETS; do start_target "$t"; done
sleep 2 # health checks and sr_check have seen the replicas

printf '%s\n' "\\set aid random(1, $((100000 * SCALE)))" \
	'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;' >"$WORKDIR/read.sql"
printf '%s\n' "\\set aid random(1, $((100000 * SCALE)))" '\set delta random(-5000, 5000)' \
	'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;' >"$WORKDIR/write.sql"
CLK_TCK=$(getconf CLK_TCK)

# run_pgbench TARGET MODE SECONDS: sets R_OK R_TPS R_TXN R_CPU_US
run_pgbench() {
	local t=$1 mode=$2 secs=$3 port t0 t1 out=$WORKDIR/pgbench.out
	port=PORT_${t//-/_}
	R_OK=1 R_TPS= R_TXN= R_CPU_US=
	t0=$(group_ticks "${PID[$t]}")
	"$PGBIN/pgbench" -n -M "$mode" -f "$WORKDIR/read.sql@9" -f "$WORKDIR/write.sql@1" -c "$CLIENTS" -j "$THREADS" \
		-T "$secs" -h 127.0.0.1 -p "${!port}" -U postgres app >"$out" 2>&1 || R_OK=0
	t1=$(group_ticks "${PID[$t]}")
	cat "$out" >>"$WORKDIR/pgbench.log"
	R_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
	R_TXN=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	grep -qE '^number of failed transactions: [1-9]' "$out" && R_OK=0
	[ -n "$R_TPS" ] && [ "${R_TXN:-0}" -gt 0 ] || R_OK=0
	kill -0 "${PID[$t]}" 2>/dev/null || { note "$t is gone"; R_OK=0; }
	[ "$R_OK" = 1 ] && R_CPU_US=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_TXN" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
	[ "$R_OK" = 1 ] || { note "pgbench against $t (-M $mode) failed:"; tail -n 5 "$out" >&2; }
}
xacts() { # xact_commit of database app on every node
	local p
	for p in $NODES; do psql_to "$p" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'app'"; done | tr '\n' ' '
}

# ------------------------------------------------------------------ placement
declare -A PLACE PROXYCNT
[ "$PLACEMENT" = 1 ] && note "placement: one 5 s run per target, servers' counters read 11 s later" && sleep 11
for t in $TARGETS; do
	[ "$PLACEMENT" = 1 ] || break
	x0=$(xacts)
	run_pgbench "$t" simple 5
	sleep 11
	x1=$(xacts)
	PLACE[$t]=$(awk -v a="$x0" -v b="$x1" 'BEGIN {
		n = split(a, x, " "); split(b, y, " "); s = 0
		for (i = 1; i <= n; i++) { d[i] = y[i] - x[i]; s += d[i] }
		printf "primary %.0f%%  replica0 %.0f%%  replica1 %.0f%%  (%d commits)", 100 * d[1] / s, 100 * d[2] / s, 100 * d[3] / s, s }')
	# the proxies' own view (counted since they started: the placement run comes first)
	if [ "$t" = pgpool ]; then
		PROXYCNT[$t]=$(psql_to "$PORT_pgpool" -F '|' -c "SHOW pool_nodes" 2>/dev/null |
			awk -F '|' '{ printf "node %s (%s) select_cnt %s; ", $1, $7, $9 }')
	else
		port=PORT_${t//-/_}
		PROXYCNT[$t]=$(psql_to "${!port}" -d shardpool -F '|' -c "SHOW HEALTH" 2>/dev/null |
			awk -F '|' '{ printf "%s reads %s; ", $3, $13 }')
	fi
	note "placement $t: ${PLACE[$t]}"
done

# ------------------------------------------------------------------ throughput
declare -A TPS CPU FAIL
note "warming up each target (3 s each)"
for t in $TARGETS; do run_pgbench "$t" simple 3; done
read -r -a order <<<"$TARGETS"
for ((round = 1; round <= ROUNDS; round++)); do
	for mode in $MODES; do
		for t in "${order[@]}"; do
			run_pgbench "$t" "$mode" "$DURATION"
			if [ "$R_OK" = 1 ]; then
				TPS[$t.$mode]+="$R_TPS "
				CPU[$t.$mode]+="$R_CPU_US "
				note "round $round  $(printf '%-16s %-8s' "$t" "$mode")  tps $R_TPS  cpu/txn $R_CPU_US us"
			else
				FAIL[$t.$mode]=1
			fi
			printf 'raw round=%d target=%s mode=%s clients=%d tps=%s txn=%s cpu_us_per_txn=%s ok=%d\n' \
				"$round" "$t" "$mode" "$CLIENTS" "$R_TPS" "$R_TXN" "$R_CPU_US" "$R_OK" >>"$RESULTS"
		done
	done
	rev=()
	for ((k = ${#order[@]} - 1; k >= 0; k--)); do rev+=("${order[k]}"); done
	order=("${rev[@]}")
done

# ------------------------------------------------------------------ report
sp_commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
sp_dirty=
[ -n "$(git -C "$REPO" status --porcelain -- src include 2>/dev/null)" ] && sp_dirty=", with uncommitted changes in src/ or include/"
say ""
say "== read/write split benchmark $(date -u '+%Y-%m-%d %H:%M UTC') =="
say "machine: $(nproc) CPUs, load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
say "versions: $("$SHARDPOOL" -V 2>&1 | head -n1) (repo HEAD $sp_commit$sp_dirty), $("$PGPOOL" --version 2>&1 | head -n1), $("$PGBIN/postgres" --version)"
say "load: pgbench -f read.sql@9 -f write.sql@1 -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE (90% SELECT by aid, 10% UPDATE by aid); medians of $ROUNDS rounds"
say "servers: 1 primary + 2 streaming replicas (test/sandbox, fsync off) on the same machine"
say ""
say "placement (simple mode, 5 s; share of commits per server from pg_stat_database):"
for t in $TARGETS; do
	say "$(printf '  %-16s %s' "$t" "${PLACE[$t]}")"
	say "$(printf '  %-16s proxy counters: %s' "" "${PROXYCNT[$t]:-n/a}")"
done
say ""
say "$(printf '%-16s %-9s %10s %14s' target mode tps 'cpu us/txn')"
declare -A MT MC
for mode in $MODES; do
	for t in $TARGETS; do
		# shellcheck disable=SC2086
		MT[$t.$mode]=$(median ${TPS[$t.$mode]:-} | awk '{ if ($1 == "n/a") print; else printf "%.0f", $1 }')
		# shellcheck disable=SC2086
		MC[$t.$mode]=$(median ${CPU[$t.$mode]:-} | awk '{ if ($1 == "n/a") print; else printf "%.2f", $1 }')
		extra=
		[ -n "${FAIL[$t.$mode]:-}" ] && extra="  (some runs failed)"
		say "$(printf '%-16s %-9s %10s %14s%s' "$t" "$mode" "${MT[$t.$mode]}" "${MC[$t.$mode]}" "$extra")"
	done
done
ratio() {
	case "$1$2" in *n/a*) echo n/a; return ;; esac
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
}
if [[ " $TARGETS " == *" pgpool "* ]]; then
	say ""
	say "ratios to Pgpool-II (target: tps >= 2.00)"
	for mode in $MODES; do
		for t in $TARGETS; do
			[ "$t" = pgpool ] && continue
			rt=$(ratio "${MT[$t.$mode]}" "${MT[pgpool.$mode]}")
			rc=$(ratio "${MC[$t.$mode]}" "${MC[pgpool.$mode]}")
			v=$(awk -v r="$rt" 'BEGIN { print (r != "n/a" && r >= 2.0) ? "met" : "MISSED" }')
			say "$(printf '  %-16s %-9s tps %5s (%s)   cpu/txn %5s' "$t" "$mode" "$rt" "$v" "$rc")"
		done
	done
fi
say ""
say "results written to $RESULTS"
