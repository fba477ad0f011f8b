#!/bin/bash
# test/bench/pooler_bench.sh - shardpool's pooler against PostgreSQL direct and pgbouncer.
#
# One run measures three targets side by side on this machine, so the ratios between
# them mean something even where absolute figures drift between machines and runs:
#   direct     pgbench -> PostgreSQL 15 (one sandbox primary, TCP on 127.0.0.1)
#   pgbouncer  pgbench -> pgbouncer (Debian's 1.18) -> the same primary
#   shardpool  pgbench -> src/shardpool               -> the same primary
# Both poolers: transaction pooling, pool size 20, max_client_conn 1000, one thread
# (pgbouncer has only one; shardpool gets workers = 1), listen on 127.0.0.1 only, and
# auth_type = trust with the same userlist.txt (pgbench connects once per client, so
# the auth method does not weigh on these figures). Both run as user postgres when the
# script runs as root (pgbouncer refuses root).
#
# Measured, for each target and each pgbench protocol mode (-M simple, extended,
# prepared; pgbouncer 1.18 cannot carry named prepared statements in transaction
# pooling, so its prepared row is n/a):
#   tps         pgbench -S -c CLIENTS -j THREADS -T DURATION, "without initial
#               connection time"
#   cpu us/txn  the proxy process's utime+stime from /proc/PID/stat (all its threads),
#               in clock ticks (getconf CLK_TCK), over the run, divided by the
#               transactions pgbench counted. Not measured for direct.
#   latency     pgbench -S -M simple -c 1 -j 1 -T LAT_DURATION, "latency average"
# Every measurement is taken ROUNDS times; each round walks the targets in the
# opposite order from the previous one, and the table shows the median of the rounds.
# Then the ratios shardpool/pgbouncer are printed next to the project's targets (tps
# >= 1.10x, CPU per transaction <= 0.80x, one-client latency <= 1.00x).
#
# Usage (from anywhere; needs root or a user that can run PostgreSQL, and pgbouncer):
#   make -C REPO                          # the script builds nothing; src/shardpool
#   test/bench/pooler_bench.sh            # must exist
# Environment (defaults in brackets):
#   DURATION [20]  seconds per throughput run     LAT_DURATION [10]  per latency run
#   ROUNDS [2]     runs per measurement           CLIENTS [16]  THREADS [2]  SCALE [10]
#   MODES ["simple extended prepared"]            TARGETS ["direct pgbouncer shardpool"]
#   BASE_PORT [25000]  first port tried for PostgreSQL, pgbouncer, shardpool (the
#                      next free ports upward are used)
#   SHARDPOOL [REPO/src/shardpool]  binary to measure     PGBOUNCER [pgbouncer]
#   RESULTS [/tmp/pooler_bench-DATE.txt]  where the report is written as well
#   WORKDIR [mktemp -d /tmp/sp_pooler_bench.XXXXXX]  sandbox, configs and logs;
#            removed on exit unless KEEP=1
# Whatever the script starts (sandbox, pgbouncer, shardpool) is stopped when it exits,
# also on Ctrl-C or SIGTERM.
#
# Deliberately not here: building shardpool, sharding or replica routing (one shard,
# no replica: this measures the pooler alone), and pass/fail: it is a benchmark, not a
# test, and is not part of make check.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SHARDPOOL=${SHARDPOOL:-$REPO/src/shardpool}
PGBOUNCER=${PGBOUNCER:-pgbouncer}
DURATION=${DURATION:-20}
LAT_DURATION=${LAT_DURATION:-10}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
MODES=${MODES:-simple extended prepared}
TARGETS=${TARGETS:-direct pgbouncer shardpool}
BASE_PORT=${BASE_PORT:-25000}
POOL_SIZE=20
RESULTS=${RESULTS:-/tmp/pooler_bench-$(date +%Y%m%d-%H%M%S).txt}
KEEP=${KEEP:-0}
PROG=${0##*/}

die() { echo "$PROG: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }
# report lines: to the terminal and to the results file
say() { printf '%s\n' "$*"; printf '%s\n' "$*" >>"$RESULTS"; }

case "$DURATION$LAT_DURATION$ROUNDS$CLIENTS$THREADS$SCALE$BASE_PORT" in
*[!0-9]*) die "DURATION, LAT_DURATION, ROUNDS, CLIENTS, THREADS, SCALE, BASE_PORT: numbers expected" ;;
esac
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"

if [ ! -x "$SHARDPOOL" ]; then
	cat >&2 <<EOF
$PROG: $SHARDPOOL is not built. Build it first:
  cd $REPO && autoreconf -fi && ./configure && make -j2
(or point SHARDPOOL at a binary)
EOF
	exit 1
fi
command -v "$PGBOUNCER" >/dev/null || die "$PGBOUNCER not found (apt-get install pgbouncer)"
[ -x "$PGBIN/pgbench" ] || die "$PGBIN/pgbench not found (apt-get install postgresql-15)"
[ -x "$REPO/test/sandbox" ] || die "$REPO/test/sandbox not found"

export LC_ALL=C.UTF-8
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE PGSSLROOTCERT
export PGCONNECT_TIMEOUT=10

AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
if [ "$AS_ROOT" = 1 ]; then
	getent passwd postgres >/dev/null || die "running as root needs the system user postgres"
fi

# ------------------------------------------------------------------ clean-up
SB_DIR=
PGB_PID=
SP_PID=
CLEANED=0

stop_pid() {
	local pid=$1 sig=$2 i
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	note "pid $pid ignored SIG$sig; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null
}

cleanup() {
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	trap '' INT TERM
	stop_pid "$SP_PID" TERM
	stop_pid "$PGB_PID" TERM  # pgbouncer: SIGTERM is its immediate shutdown
	[ -n "$SB_DIR" ] && "$REPO/test/sandbox" stop "$SB_DIR" >/dev/null 2>&1
	if [ -n "${WORKDIR:-}" ] && [ -d "$WORKDIR" ]; then
		if [ "$KEEP" = 1 ]; then
			note "kept $WORKDIR"
		else
			rm -rf "$WORKDIR"
		fi
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

# first free port at or above $1
free_port() {
	local p=$1
	while port_in_use "$p"; do
		p=$((p + 1))
		[ "$p" -le 65535 ] || die "no free port above $1"
	done
	echo "$p"
}

# run a pooler as the user that owns the servers (keeps the raised descriptor limit)
as_pg() {
	(
		ulimit -n 4096 2>/dev/null
		if [ "$AS_ROOT" = 1 ]; then
			exec setpriv --reuid=postgres --regid=postgres --clear-groups -- "$@"
		else
			exec "$@"
		fi
	)
}

# wait until a SELECT 1 through host 127.0.0.1 port $1 works
wait_ready() {
	local port=$1 what=$2 i
	for ((i = 0; i < 100; i++)); do
		"$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U postgres -d app -c 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$what does not answer on port $port"
}

# utime+stime of a process (all threads), in clock ticks. Fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that closes the command name.
cpu_ticks() {
	local stat rest
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
	rest=${stat##*) }
	# rest starts at field 3 (state): utime is its 12th word, stime its 13th
	set -- $rest
	echo $((${12} + ${13}))
}

port_of() {
	case $1 in
	direct) echo "$PG_PORT" ;;
	pgbouncer) echo "$PGB_PORT" ;;
	shardpool) echo "$SP_PORT" ;;
	esac
}

pid_of() {
	case $1 in
	pgbouncer) echo "$PGB_PID" ;;
	shardpool) echo "$SP_PID" ;;
	*) echo "" ;;
	esac
}

# median of the numbers given (mean of the middle two for an even count)
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
		else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ------------------------------------------------------------------ set-up
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/sp_pooler_bench.XXXXXX)} || die "cannot create a work directory"
mkdir -p "$WORKDIR" && chmod 755 "$WORKDIR"
: >"$RESULTS" || die "cannot write $RESULTS"
SB_DIR=$WORKDIR/sb

PG_BASE=$(free_port "$BASE_PORT")
PGB_PORT=$(free_port $((PG_BASE + 1)))
SP_PORT=$(free_port $((PGB_PORT + 1)))

note "starting the sandbox in $SB_DIR"
"$REPO/test/sandbox" start "$SB_DIR" --shards 1 --replicas 0 --base-port "$PG_BASE" \
	--listen-port "$SP_PORT" >"$WORKDIR/sandbox.out" 2>&1 ||
	{ cat "$WORKDIR/sandbox.out" >&2; die "the sandbox did not start"; }
# shellcheck disable=SC1091
. "$SB_DIR/sandbox.env"
PG_PORT=$SB_PRIMARY_PORT_0
[ "$PG_PORT" != "$PGB_PORT" ] && [ "$PG_PORT" != "$SP_PORT" ] ||
	die "port clash: PostgreSQL took $PG_PORT"

note "pgbench -i -s $SCALE on 127.0.0.1:$PG_PORT"
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres app >"$WORKDIR/pgbench-init.out" 2>&1 ||
	{ cat "$WORKDIR/pgbench-init.out" >&2; die "pgbench -i failed"; }

# Both poolers: one userlist, trust.
POOLDIR=$WORKDIR/poolers
mkdir -p "$POOLDIR"
printf '"postgres" ""\n' >"$POOLDIR/userlist.txt"

cat >"$POOLDIR/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $POOLDIR/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 1000
logfile = $POOLDIR/pgbouncer.log
pidfile = $POOLDIR/pgbouncer.pid
EOF

# shardpool: the sandbox's config, with the settings that differ from pgbouncer's
# made equal. A key set twice in a section is an error, so the [shardpool] keys the
# sandbox wrote are rewritten in place and the others are added after the header (the
# file is read twice: first to see which keys it has).
awk -v pooldir="$POOLDIR" -v pool="$POOL_SIZE" '
	BEGIN {
		n = split("auth_type auth_file pool_mode default_pool_size max_client_conn " \
			"workers log_level log_file pid_file listen_addr", order, " ")
		set["auth_type"] = "trust"
		set["auth_file"] = pooldir "/userlist.txt"
		set["pool_mode"] = "transaction"
		set["default_pool_size"] = pool
		set["max_client_conn"] = "1000"
		set["workers"] = "1"
		set["log_level"] = "warning"
		set["log_file"] = pooldir "/shardpool.log"
		set["pid_file"] = pooldir "/shardpool.pid"
		set["listen_addr"] = "127.0.0.1"
	}
	/^\[/ { insec = (tolower($0) == "[shardpool]") }
	insec && /^[ \t]*[A-Za-z_]+[ \t]*=/ {
		k = $0; sub(/^[ \t]*/, "", k); sub(/[ \t]*=.*/, "", k); k = tolower(k)
		if (NR == FNR) { have[k] = 1; next }
		if (k in set) { print k " = " set[k]; next }
	}
	NR == FNR { next }
	{ print }
	insec && /^\[/ {
		for (i = 1; i <= n; i++)
			if (!(order[i] in have)) print order[i] " = " set[order[i]]
	}
' "$SB_DIR/shardpool.ini" "$SB_DIR/shardpool.ini" >"$POOLDIR/shardpool.ini"
# a build without the workers key is single-threaded anyway
if ! "$SHARDPOOL" --describe-config 2>/dev/null | grep -q '^| `workers`'; then
	sed -i '/^workers = /d' "$POOLDIR/shardpool.ini"
fi
"$SHARDPOOL" --check-config "$POOLDIR/shardpool.ini" >"$POOLDIR/check-config.out" 2>&1 ||
	{ cat "$POOLDIR/check-config.out" >&2; die "shardpool rejects $POOLDIR/shardpool.ini"; }

[ "$AS_ROOT" = 1 ] && chown -R postgres:postgres "$POOLDIR"

note "starting pgbouncer on 127.0.0.1:$PGB_PORT"
as_pg "$PGBOUNCER" -d "$POOLDIR/pgbouncer.ini" >"$POOLDIR/pgbouncer.out" 2>&1 ||
	{ cat "$POOLDIR/pgbouncer.out" "$POOLDIR/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
for ((i = 0; i < 50; i++)); do
	[ -s "$POOLDIR/pgbouncer.pid" ] && break
	sleep 0.1
done
PGB_PID=$(cat "$POOLDIR/pgbouncer.pid" 2>/dev/null)
[ -n "$PGB_PID" ] || die "pgbouncer wrote no pidfile"
wait_ready "$PGB_PORT" pgbouncer

note "starting shardpool on 127.0.0.1:$SP_PORT"
as_pg "$SHARDPOOL" -d "$POOLDIR/shardpool.ini" >"$POOLDIR/shardpool.out" 2>&1 ||
	{ cat "$POOLDIR/shardpool.out" "$POOLDIR/shardpool.log" >&2 2>/dev/null; die "shardpool did not start"; }
for ((i = 0; i < 50; i++)); do
	[ -s "$POOLDIR/shardpool.pid" ] && break
	sleep 0.1
done
SP_PID=$(cat "$POOLDIR/shardpool.pid" 2>/dev/null)
[ -n "$SP_PID" ] || die "shardpool wrote no pid_file"
wait_ready "$SP_PORT" shardpool

CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------ measuring
# run_pgbench TARGET MODE CLIENTS THREADS SECONDS: sets R_TPS R_TXN R_LAT_MS R_CPU_US
# (per transaction, "-" for direct); R_OK=0 when pgbench failed or lost transactions.
run_pgbench() {
	local target=$1 mode=$2 c=$3 j=$4 t=$5 port pid t0 t1 out
	port=$(port_of "$target")
	pid=$(pid_of "$target")
	out=$WORKDIR/pgbench.out
	R_OK=1 R_TPS='' R_TXN='' R_LAT_MS='' R_CPU_US=-
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	"$PGBIN/pgbench" -n -S -M "$mode" -c "$c" -j "$j" -T "$t" -h 127.0.0.1 -p "$port" \
		-U postgres app >"$out" 2>&1 || R_OK=0
	[ -n "$pid" ] && t1=$(cpu_ticks "$pid")
	cat "$out" >>"$WORKDIR/pgbench.log"
	R_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
	R_TXN=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	R_LAT_MS=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$out")
	grep -qE '^number of failed transactions: [1-9]' "$out" && R_OK=0
	[ -n "$R_TPS" ] && [ -n "$R_TXN" ] && [ "$R_TXN" -gt 0 ] || R_OK=0
	if [ "$R_OK" = 1 ] && [ -n "$pid" ]; then
		if [ "$t0" -lt 0 ] || [ "$t1" -lt 0 ]; then
			note "$target (pid $pid) is gone"
			R_OK=0
		else
			R_CPU_US=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_TXN" \
				'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
		fi
	fi
	if [ "$R_OK" = 0 ]; then
		note "pgbench against $target (-M $mode -c $c) failed:"
		tail -n 5 "$out" >&2
	fi
}

supported() {
	[ "$1" = pgbouncer ] && [ "$2" = prepared ] && return 1
	return 0
}

# per-measurement samples: TPS[target.mode] CPU[target.mode] LAT[target] as lists
declare -A TPS CPU LAT FAIL

note "warming up each target (3 s each)"
for target in $TARGETS; do
	run_pgbench "$target" simple "$CLIENTS" "$THREADS" 3
	[ "$R_OK" = 1 ] || die "warm-up against $target failed (logs in $WORKDIR; KEEP=1 keeps them)"
done

read -r -a order <<<"$TARGETS"
for ((round = 1; round <= ROUNDS; round++)); do
	for mode in $MODES; do
		for target in "${order[@]}"; do
			supported "$target" "$mode" || continue
			run_pgbench "$target" "$mode" "$CLIENTS" "$THREADS" "$DURATION"
			if [ "$R_OK" = 1 ]; then
				TPS[$target.$mode]+="$R_TPS "
				CPU[$target.$mode]+="$R_CPU_US "
				note "round $round  $(printf '%-9s %-8s' "$target" "$mode")  tps $R_TPS  cpu/txn ${R_CPU_US} us"
			else
				FAIL[$target.$mode]=1
			fi
			printf 'raw round=%d target=%s mode=%s clients=%d tps=%s txn=%s cpu_us_per_txn=%s ok=%d\n' \
				"$round" "$target" "$mode" "$CLIENTS" "${R_TPS:-}" "${R_TXN:-}" "$R_CPU_US" "$R_OK" >>"$RESULTS"
		done
	done
	for target in "${order[@]}"; do
		run_pgbench "$target" simple 1 1 "$LAT_DURATION"
		if [ "$R_OK" = 1 ]; then
			LAT[$target]+="$R_LAT_MS "
			note "round $round  $(printf '%-9s' "$target") 1 client  latency $R_LAT_MS ms"
		else
			FAIL[$target.lat]=1
		fi
		printf 'raw round=%d target=%s mode=simple clients=1 tps=%s latency_ms=%s ok=%d\n' \
			"$round" "$target" "${R_TPS:-}" "${R_LAT_MS:-}" "$R_OK" >>"$RESULTS"
	done
	# next round in the opposite order, so drift does not always favour one target
	rev=()
	for ((k = ${#order[@]} - 1; k >= 0; k--)); do rev+=("${order[k]}"); done
	order=("${rev[@]}")
done

# ------------------------------------------------------------------ report
fmt_med() { # fmt_med FORMAT SAMPLES...
	local f=$1
	shift
	[ $# -gt 0 ] || { echo "n/a"; return; }
	printf "$f" "$(median "$@")"
}

declare -A MED_TPS MED_CPU MED_LAT
sp_version=$("$SHARDPOOL" -V 2>&1 | head -n1)
# The binary may not be the repo's HEAD (SHARDPOOL elsewhere, sources edited since
# the build): say which file was measured and how it relates to the tree.
sp_commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
sp_built=$(date -u -r "$SHARDPOOL" '+%Y-%m-%d %H:%M UTC' 2>/dev/null)
sp_src="repo HEAD $sp_commit"
if [ "$SHARDPOOL" != "$REPO/src/shardpool" ]; then
	sp_src="binary from outside this tree, whose HEAD is $sp_commit"
elif [ -n "$(git -C "$REPO" status --porcelain -- src include 2>/dev/null)" ]; then
	sp_src="$sp_src, with uncommitted changes in src/ or include/"
fi
pgb_version=$("$PGBOUNCER" --version 2>&1 | head -n1)
pg_version=$("$PGBIN/postgres" --version 2>&1)

say ""
say "== pooler benchmark $(date -u '+%Y-%m-%d %H:%M UTC') =="
say "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
say "versions: $sp_version ($SHARDPOOL, built $sp_built; $sp_src), $pgb_version, $pg_version"
say "pgbench -n -S -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE; latency: -S -M simple -c 1 -j 1 -T $LAT_DURATION"
say "poolers: transaction pooling, pool size $POOL_SIZE, one thread, auth_type trust; medians of $ROUNDS rounds"
say ""
say "$(printf '%-10s %-9s %12s %14s' target mode tps 'cpu us/txn')"
for mode in $MODES; do
	for target in $TARGETS; do
		key=$target.$mode
		if ! supported "$target" "$mode"; then
			say "$(printf '%-10s %-9s %12s %14s' "$target" "$mode" n/a n/a)"
			continue
		fi
		# shellcheck disable=SC2086
		MED_TPS[$key]=$(fmt_med '%.0f' ${TPS[$key]:-})
		if [ "$target" = direct ]; then
			MED_CPU[$key]=-
		else
			# shellcheck disable=SC2086
			MED_CPU[$key]=$(fmt_med '%.2f' ${CPU[$key]:-})
		fi
		extra=
		[ -n "${FAIL[$key]:-}" ] && extra="  (some runs failed)"
		say "$(printf '%-10s %-9s %12s %14s%s' "$target" "$mode" "${MED_TPS[$key]}" "${MED_CPU[$key]}" "$extra")"
	done
done
say ""
say "one client, -M simple: average latency (us)"
for target in $TARGETS; do
	# shellcheck disable=SC2086
	m=$(fmt_med '%.6f' ${LAT[$target]:-})
	if [ "$m" = n/a ]; then
		MED_LAT[$target]=n/a
	else
		MED_LAT[$target]=$(awk -v v="$m" 'BEGIN { printf "%.0f", v * 1000 }')
	fi
	say "$(printf '%-10s %8s' "$target" "${MED_LAT[$target]}")"
done

# ratio A B: A/B with two decimals, or n/a
ratio() {
	case "$1$2" in *n/a* | *-*) echo n/a; return ;; esac
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
}
# verdict RATIO OP LIMIT
verdict() {
	[ "$1" = n/a ] && { echo "-"; return; }
	awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN {
		ok = (op == ">=") ? (r >= l) : (r <= l); print ok ? "met" : "MISSED" }'
}

if [[ " $TARGETS " == *" shardpool "* && " $TARGETS " == *" pgbouncer "* ]]; then
	say ""
	say "shardpool / pgbouncer (targets: tps >= 1.10, cpu/txn <= 0.80, latency <= 1.00)"
	for mode in $MODES; do
		supported pgbouncer "$mode" || { say "$(printf '  %-9s n/a (pgbouncer 1.18 cannot do it)' "$mode")"; continue; }
		rt=$(ratio "${MED_TPS[shardpool.$mode]}" "${MED_TPS[pgbouncer.$mode]}")
		rc=$(ratio "${MED_CPU[shardpool.$mode]}" "${MED_CPU[pgbouncer.$mode]}")
		say "$(printf '  %-9s tps %5s (%s)   cpu/txn %5s (%s)' "$mode" "$rt" "$(verdict "$rt" '>=' 1.10)" "$rc" "$(verdict "$rc" '<=' 0.80)")"
	done
	rl=$(ratio "${MED_LAT[shardpool]}" "${MED_LAT[pgbouncer]}")
	say "$(printf '  latency   1 client %5s (%s)' "$rl" "$(verdict "$rl" '<=' 1.00)")"
fi
if [[ " $TARGETS " == *" direct "* ]]; then
	say ""
	say "each pooler / direct (tps)"
	for mode in $MODES; do
		line=$(printf '  %-9s' "$mode")
		for target in pgbouncer shardpool; do
			[[ " $TARGETS " == *" $target "* ]] || continue
			if supported "$target" "$mode"; then
				line+=$(printf '  %s %s' "$target" "$(ratio "${MED_TPS[$target.$mode]}" "${MED_TPS[direct.$mode]}")")
			else
				line+="  $target n/a"
			fi
		done
		say "$line"
	done
fi
say ""
say "results written to $RESULTS (per-run figures on the lines starting with raw)"
