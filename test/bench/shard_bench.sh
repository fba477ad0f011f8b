#!/bin/bash
# test/bench/shard_bench.sh - the cost of sharding: the same key lookup through shardpool,
# once to an unsharded pool and once routed by key over two shards, in one run.
#
#   plain    pgbench -> shardpool, database "plain" (one shard: no parse, no routing)
#   sharded  pgbench -> shardpool, database "app" (2 shards, pgbench_accounts sharded by
#            aid: every statement is routed from its cached plan and the key is hashed)
#
# Both use a pgbench -S-style custom script (SELECT abalance ... WHERE aid = :aid) in
# each protocol mode (-M simple: literals lifted from the text and the plan looked up
# per statement; -M prepared: the plan is found per Bind). Every shard holds all rows
# (pgbench -i on each), so both runs do the same work on the servers; only the routing
# differs. Reported per mode: tps and shardpool's CPU microseconds per transaction
# (utime+stime from /proc over the run), with the ratio sharded/plain against the
# target (<= 1.10x), and the plan cache counters from the admin console.
#
# Usage: test/bench/shard_bench.sh   (src/shardpool must be built; runs as root or as a
# user that can run PostgreSQL). Environment: DURATION [15], CLIENTS [16], THREADS [2],
# SCALE [5], ROUNDS [2], MODES ["simple prepared"], BASE_PORT [25500], KEEP=1 keeps the
# work directory. Everything it starts is stopped on exit. Not part of make check.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SHARDPOOL=${SHARDPOOL:-$REPO/src/shardpool}
DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
SCALE=${SCALE:-5}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-"simple prepared"}
BASE_PORT=${BASE_PORT:-25500}
WORK=$(mktemp -d /tmp/sp_shard_bench.XXXXXX)
chmod 755 "$WORK"
SB=$WORK/sb
SP_PID=

die() { echo "shard_bench: $*" >&2; exit 1; }

cleanup() {
	[ -n "$SP_PID" ] && kill -TERM "$SP_PID" 2>/dev/null && wait "$SP_PID" 2>/dev/null
	"$REPO/test/sandbox" stop "$SB" >/dev/null 2>&1
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$SHARDPOOL" ] || die "build shardpool first: autoreconf -fi && ./configure && make"

"$REPO/test/sandbox" start "$SB" --shards 2 --replicas 0 --base-port "$BASE_PORT" \
	--listen-port $((BASE_PORT + 10)) >"$WORK/sandbox.out" 2>&1 || die "sandbox: $(tail -3 "$WORK/sandbox.out")"
eval "$("$REPO/test/sandbox" env "$SB")"
export PGPASSWORD=secret
for port in "$SB_PRIMARY_PORT_0" "$SB_PRIMARY_PORT_1"; do
	"$PGBIN/pgbench" -i -q -s "$SCALE" "host=127.0.0.1 port=$port dbname=app user=app" >/dev/null 2>&1 ||
		die "pgbench -i on port $port failed"
done

SP_PORT=$((BASE_PORT + 10))
CONF=$WORK/shardpool.ini
sed -e "s/^listen_port = .*/listen_port = $SP_PORT/" -e "s/^default_pool_size = .*/default_pool_size = 20/" \
	-e "s|^log_file = .*|log_file = $WORK/shardpool.log|" "$SB/shardpool.ini" >"$CONF"
sed -i '/^\[shardpool\]/a log_level = warning\nlog_connections = no\nlog_disconnections = no\nhealth_check_period = 0' "$CONF"
cat >>"$CONF" <<EOF

[table app.pgbench_accounts]
key = aid
type = integer
EOF
"$SHARDPOOL" "$CONF" >"$WORK/shardpool.out" 2>&1 &
SP_PID=$!
for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$SP_PORT") 2>/dev/null && break; sleep 0.1; done

cat >"$WORK/select.sql" <<EOF
\set aid random(1, 100000 * $SCALE)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF

ticks() { awk '{print $14 + $15}' "/proc/$SP_PID/stat"; }
HZ=$(getconf CLK_TCK)

# run DB MODE -> "tps cpu_us_per_txn"
run() {
	local db=$1 mode=$2 t0 t1 out tps txns
	t0=$(ticks)
	out=$("$PGBIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -M "$mode" -f "$WORK/select.sql" \
		"host=127.0.0.1 port=$SP_PORT dbname=$db user=app" 2>&1)
	t1=$(ticks)
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -1)
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	if [ -z "$tps" ] || [ -z "$txns" ] || [ "$txns" = 0 ]; then
		echo "pgbench failed: $(tail -3 <<<"$out")" >&2
		echo "0 0"
		return
	fi
	grep -q "failed transactions: 0 " <<<"$out" || echo "warning: failed transactions: $(grep failed <<<"$out")" >&2
	awk -v t="$tps" -v d=$((t1 - t0)) -v n="$txns" -v hz="$HZ" 'BEGIN { printf "%.0f %.2f\n", t, d * 1e6 / hz / n }'
}

median() { sort -n | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "shard_bench: $(nproc) cores, $CLIENTS clients, scale $SCALE, $DURATION s per run, $ROUNDS rounds (median)"
printf '%-9s %-8s %10s %14s\n' mode target tps "cpu us/txn"
for mode in $MODES; do
	declare -A TPS=() CPU=()
	for ((r = 0; r < ROUNDS; r++)); do
		for db in plain app; do
			read -r t c < <(run "$db" "$mode")
			TPS[$db]+="$t "
			CPU[$db]+="$c "
		done
	done
	for db in plain app; do
		mt=$(tr ' ' '\n' <<<"${TPS[$db]}" | grep . | median)
		mc=$(tr ' ' '\n' <<<"${CPU[$db]}" | grep . | median)
		printf '%-9s %-8s %10s %14s\n' "$mode" "$([ "$db" = app ] && echo sharded || echo plain)" "$mt" "$mc"
		eval "M_${db}_tps=$mt M_${db}_cpu=$mc"
	done
	awk -v a="$M_app_cpu" -v p="$M_plain_cpu" -v ta="$M_app_tps" -v tp="$M_plain_tps" -v m="$mode" \
		'BEGIN { printf "%-9s ratio sharded/plain: cpu %.2fx (target <= 1.10x), tps %.2fx\n", m, a / p, ta / tp }'
	unset TPS CPU
done
echo
echo "plan cache (SHOW ROUTE CACHE):"
psql -X -h 127.0.0.1 -p "$SP_PORT" -U app shardpool -c "SHOW ROUTE CACHE"
