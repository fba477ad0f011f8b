#!/bin/bash
# 70_health.t - the health checker (src/health.c) against real servers: rotation by
# replication lag (bytes and ms), weights and least-outstanding in sp_health_pick_read,
# read-your-writes by min_lsn, a stopped replica leaving rotation and being banned with
# backoff, promotion of a replica taking the writes, and fencing of the old primary
# when it comes back on an older timeline.
#
# It stops and promotes servers, so it runs on a sandbox of its own (1 shard x 2
# replicas, ports from HEALTH_T_BASE_PORT, default 26500), never the shared one.
# test/integration/healthprobe runs the health checker and answers commands on a pipe
# (coproc) while its event loop keeps running; see healthprobe.c for the commands.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/initdb ] || skip_all "PostgreSQL 15 is not installed"
PROBE=$SP_BUILDDIR/test/integration/healthprobe
[ -x "$PROBE" ] || bail_out "$PROBE is not built (make check builds it)"

PERIOD=0.5
BASE=${HEALTH_T_BASE_PORT:-26500}
sandbox_private 1 2 "$BASE"
P=$SB_PRIMARY_PORT_0 R0=$SB_REPLICA_PORT_0_0 R1=$SB_REPLICA_PORT_0_1
diag "sandbox: primary $P, replicas $R0 $R1"

DATA_P=$SB/shard0/primary DATA_R0=$SB/shard0/replica0

CFG=$SP_TMP/health.ini
cat >"$CFG" <<EOF
[shardpool]
auth_file = $SB/userlist.txt
admin_users = app
health_check_period = ${PERIOD}s
health_check_timeout = 2s
max_replica_lag = 16MB

[database app]
shards = 1

[shard app.0]
primary = host=127.0.0.1 port=$P dbname=app
replica = host=127.0.0.1 port=$R0 dbname=app weight=1
replica = host=127.0.0.1 port=$R1 dbname=app weight=3

; the same primary again: probed once
[database plain]
shards = 1

[shard plain.0]
primary = host=127.0.0.1 port=$P dbname=app
EOF

coproc HP { exec "$PROBE" --log "$SP_TMP/healthprobe.log" "$CFG" 2>"$SP_TMP/healthprobe.stderr"; }
PROBE_PID=$HP_PID # bash unsets HP_PID when the coproc ends
at_exit "kill $PROBE_PID 2>/dev/null"
exec {HP_IN}>&"${HP[1]}" {HP_OUT}<&"${HP[0]}"

# hp CMD...: one command, its one-line answer on stdout
hp() {
	local line
	echo "$*" >&$HP_IN || { echo "healthprobe is gone"; return 1; }
	IFS= read -r -t 90 line <&$HP_OUT || { echo "healthprobe did not answer '$*'"; return 1; }
	echo "$line"
}
# node R: the node line of app.0's primary (p) or replica R
node() { hp node app 0 "$1"; }
# field LINE NAME: NAME's value in a node line
field() {
	local re=" $2=([^ ]*)"
	[[ $1 =~ $re ]] && echo "${BASH_REMATCH[1]}"
}
# waited ANSWER MAX: the answer of a wait is "waited S" with S <= MAX
waited_within() {
	local re='^waited ([0-9.]+)$'
	[[ $1 =~ $re ]] && awk -v s="${BASH_REMATCH[1]}" -v m="$2" 'BEGIN { exit !(s <= m) }'
}
log_has() { grep -q -- "$1" "$SP_TMP/healthprobe.log"; }
LIMIT2=$(awk -v p=$PERIOD 'BEGIN { print 2 * p + 0.3 }') # two periods, plus scheduling slack

# ---------------------------------------------------------------- all healthy
like "$(hp wait app 0 0 rotation 1 15)" '^waited' "replica 0 enters rotation"
like "$(hp wait app 0 1 rotation 1 15)" '^waited' "replica 1 enters rotation"
line=$(node p)
is "$(field "$line" reachable),$(field "$line" recovery),$(field "$line" timeline),$(field "$line" fenced)" \
	"1,0,1,0" "primary: reachable, not in recovery, timeline 1, not fenced"
for r in 0 1; do
	line=$(node $r)
	is "$(field "$line" reachable),$(field "$line" recovery),$(field "$line" timeline)" "1,1,1" \
		"replica $r: reachable, in recovery, timeline 1 (from pg_stat_wal_receiver)"
	like "$(field "$line" lag_bytes),$(field "$line" lag_ms)" '^[0-9]+,0$' "replica $r: lag known, 0 ms while caught up"
done
is "$(hp write app 0)" "write -1" "writes go to the configured primary"
is "$(hp write plain 0)" "write -1" "database plain: writes go to the same primary"
is "$(pg_psql "$P" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardpool health check'")" 1 \
	"a server named by two databases is probed over one connection"
hp run 2 >/dev/null
is "$(pg_psql "$P" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardpool health check'")" 1 \
	"the probe connection is kept, not reopened every period"

# ---------------------------------------------------------------- picking replicas
is "$(hp pick app 0 1000)" "picks p=0 r0=250 r1=750" "1000 reads split 1:3 by weight; the primary (fallback) gets none"
hp setdb app primary_reads yes >/dev/null
is "$(hp pick app 0 1000)" "picks p=200 r0=200 r1=600" "primary_reads = yes: the primary takes part with its weight 1"
hp setdb app primary_reads no >/dev/null
is "$(hp pick app 0 100 0 2)" "picks p=0 r0=100 r1=0" "exclude_mask 2 skips replica 1"
is "$(hp pick app 0 100 0 3)" "picks p=100 r0=0 r1=0" "all replicas excluded: the primary"
hp setdb app primary_reads fallback >/dev/null
hp outstanding app 0 1 3 >/dev/null
is "$(hp pick app 0 100)" "picks p=0 r0=100 r1=0" "replica 1 with 3 reads outstanding (weight 3) loses to idle replica 0"
hp outstanding app 0 0 2 >/dev/null
is "$(hp pick app 0 90)" "picks p=0 r0=0 r1=90" "replica 0 with 2 outstanding (weight 1) is busier than replica 1 (3 of weight 3)"
hp outstanding app 0 0 0 >/dev/null
hp outstanding app 0 1 0 >/dev/null
hp setdb app read_replicas 0 >/dev/null
is "$(hp pick app 0 100)" "picks p=100 r0=0 r1=0" "read_replicas = no: every read on the primary"
hp setdb app read_replicas 1 >/dev/null

reads0=$(field "$(node 0)" reads)
is "$(hp reload)" ok "sp_health_reload with an unchanged config"
is "$(field "$(node 0)" reads),$(field "$(node 0)" rotation)" "$reads0,1" "nodes keep their state and counters across a reload"
hp run 1 >/dev/null
is "$(pg_psql "$P" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardpool health check'")" 1 \
	"and the probe connection"

# sp_lsn_parse
is "$(hp lsn 16/B374D848)" "lsn 16B374D848" "LSN 16/B374D848"
is "$(hp lsn FFFFFFFF/ffffffff)" "lsn FFFFFFFFFFFFFFFF" "LSN FFFFFFFF/ffffffff"
is "$(hp lsn 0/0)" "lsn 0" "LSN 0/0"
for bad in /1 1/ 1 123456789/0 0/123456789 G/1 1/2x -1/2 1//2; do
	is "$(hp lsn "$bad")" "lsn invalid" "LSN '$bad' is refused"
done

# ---------------------------------------------------------------- min_lsn (read-your-writes)
pg_psql "$R1" -c "SELECT pg_wal_replay_pause()" >/dev/null
# the pause takes effect asynchronously: wait until replay has really stopped, or the
# write below may still be replayed on replica 1
for ((i = 0; i < 100; i++)); do
	[ "$(pg_psql "$R1" -c "SELECT pg_get_wal_replay_pause_state()")" = paused ] && break
	sleep 0.05
done
pg_psql "$P" -c "CREATE TABLE IF NOT EXISTS health_t (id int, pad text)" -c "INSERT INTO health_t VALUES (1, 'x')" >/dev/null
# the insert position: with synchronous_commit = off the write position may not cover
# the commit yet, and a paused replica could already be past it
L=$(pg_psql "$P" -c "SELECT pg_current_wal_insert_lsn()")
like "$(hp wait app 0 0 lsn ">=$L" 10)" '^waited' "replica 0 replays the write ($L)"
like "$(hp wait app 0 p lsn ">=$L" 10)" '^waited' "the primary's probe sees the write"
line=$(node 1)
is "$(field "$line" rotation)" 1 "replica 1 (replay paused, a few hundred bytes behind) stays in rotation under 16MB"
is "$(hp pick app 0 200 "$L")" "picks p=0 r0=200 r1=0" "min_lsn past replica 1's replay LSN: only replica 0"
like "$(hp pick app 0 200)" '^picks p=0 r0=[1-9][0-9]* r1=[1-9][0-9]*$' "without min_lsn both replicas read"
FAR=$(pg_psql "$P" -c "SELECT '$L'::pg_lsn + 1073741824")
is "$(hp pick app 0 100 "$FAR")" "picks p=100 r0=0 r1=0" "min_lsn past every replica: the primary"

# ---------------------------------------------------------------- lag in bytes
hp set max_replica_lag 1024 >/dev/null
pg_psql "$P" -c "INSERT INTO health_t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g" >/dev/null
ans=$(hp wait app 0 1 rotation 0 10)
like "$ans" '^waited' "replica 1 (replay paused) leaves rotation when its lag passes 1kB"
line=$(node 1)
lag=$(field "$line" lag_bytes)
ok "its lag_bytes ($lag) is above max_replica_lag" test "${lag:-0}" -gt 1024
like "$(hp wait app 0 0 rotation 1 10)" '^waited' "replica 0 (replaying) is in rotation"
is "$(hp pick app 0 100)" "picks p=0 r0=100 r1=0" "reads avoid the lagging replica"
ok "the log says why replica 1 left rotation" log_has "replica 1 .* left rotation: replay lag"
pg_psql "$R1" -c "SELECT pg_wal_replay_resume()" >/dev/null
like "$(hp wait app 0 1 rotation 1 10)" '^waited' "replica 1 returns to rotation after pg_wal_replay_resume()"
ok "its lag is back under the limit" test "$(field "$(node 1)" lag_bytes)" -le 1024

# ---------------------------------------------------------------- lag in ms
hp set max_replica_lag 0 >/dev/null
hp set max_replica_lag_ms 400 >/dev/null
pg_psql "$R1" -c "SELECT pg_wal_replay_pause()" >/dev/null
pg_psql "$P" -c "INSERT INTO health_t VALUES (2, 'y')" >/dev/null
sleep 0.5
pg_psql "$P" -c "INSERT INTO health_t VALUES (3, 'z')" >/dev/null
like "$(hp wait app 0 1 rotation 0 10)" '^waited' "max_replica_lag_ms: replica 1 (paused) leaves rotation on replay delay"
ok "the log names the delay" log_has "replica 1 .* left rotation: replay lag [0-9]* ms"
# replica 0's last replayed commit is older than 400 ms by now: only "caught up" keeps it in
like "$(hp wait app 0 0 lag_ms 0 5)" '^waited' "replica 0, caught up with an idle primary, has lag 0 ms"
hp run 1 >/dev/null
is "$(field "$(node 0)" rotation)" 1 "and stays in rotation although its last replayed commit is old"
pg_psql "$R1" -c "SELECT pg_wal_replay_resume()" >/dev/null
like "$(hp wait app 0 1 rotation 1 10)" '^waited' "replica 1 returns when it has caught up"
hp set max_replica_lag_ms 0 >/dev/null
hp set max_replica_lag 16777216 >/dev/null

# ---------------------------------------------------------------- a replica goes down
pgctl stop -w -m fast -D "$DATA_R0" >/dev/null 2>&1
ans=$(hp wait app 0 0 rotation 0 10)
ok "a stopped replica leaves rotation within two periods ($ans)" waited_within "$ans" "$LIMIT2"
line=$(node 0)
is "$(field "$line" reachable),$(field "$line" banned)" "0,1" "it is unreachable and banned"
like "$line" ' error=.*Connection refused' "its last error is libpq's: $(field "$line" error)"
hp run 3 >/dev/null
fails=$(field "$(node 0)" fail)
ok "backoff: $fails failed probes in ~3 s, not one per period" test "$fails" -ge 2 -a "$fails" -le 4
is "$(hp pick app 0 100)" "picks p=0 r0=0 r1=100" "reads go to the other replica"
ok "the log says it is unreachable" log_has "replica 0 .* is unreachable"
pgctl start -w -D "$DATA_R0" -l "$SB/log/shard0-replica0.log" >/dev/null 2>&1
like "$(hp wait app 0 0 rotation 1 35)" '^waited' "restarted, it returns to rotation when its ban expires"
is "$(field "$(node 0)" fail)" 0 "failure count reset"

# ---------------------------------------------------------------- promotion and fencing
pgctl stop -w -m fast -D "$DATA_P" >/dev/null 2>&1
ans=$(hp wait app 0 p reachable 0 10)
ok "the stopped primary is seen down within two periods ($ans)" waited_within "$ans" "$LIMIT2"
is "$(hp write app 0)" "write -2" "no server can take writes"
like "$(hp pick app 0 100)" '^picks p=0 ' "reads stay on the replicas while the primary is down"
pgctl promote -w -D "$DATA_R0" >/dev/null 2>&1
ans=$(hp waitwrite app 0 0 10)
ok "writes go to the promoted replica 0 within two periods ($ans)" waited_within "$ans" "$LIMIT2"
line=$(node 0)
is "$(field "$line" recovery),$(field "$line" timeline),$(field "$line" rotation)" "0,2,0" \
	"replica 0: out of recovery on timeline 2, no longer a read replica"
ok "the log reports the promotion" log_has "writes go to promoted replica 0"
is "$(hp write plain 0)" "write -2" "database plain (no replicas) has no writer"

pgctl start -w -D "$DATA_P" -l "$SB/log/shard0-primary.log" >/dev/null 2>&1
like "$(hp wait app 0 p fenced 1 10)" '^waited' "the old primary, back on timeline 1, is fenced"
line=$(node p)
is "$(field "$line" reachable),$(field "$line" recovery),$(field "$line" timeline),$(field "$line" rotation)" \
	"1,0,1,0" "it is reachable, claims primary on timeline 1, takes no reads"
is "$(hp write app 0)" "write 0" "writes stay on the promoted replica"
hp setdb app primary_reads yes >/dev/null
like "$(hp pick app 0 100)" '^picks p=0 r0=[0-9]+ r1=[0-9]+$' "primary_reads = yes: reads for the primary go to the promoted node, never the fenced one"
ok "the log reports the fencing" log_has "primary .* fenced: claims to be primary on timeline 1"
like "$(hp write plain 0)" "write -1" "database plain: the old primary is the only claimant of its own shard"

# ---------------------------------------------------------------- the end
echo quit >&$HP_IN
wait "$PROBE_PID"
is "$?" 0 "healthprobe exits cleanly"
[ -s "$SP_TMP/healthprobe.stderr" ] && diag "$(cat "$SP_TMP/healthprobe.stderr")"
done_testing
