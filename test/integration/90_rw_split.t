#!/bin/bash
# 90_rw_split.t - the read/write split (issue 4) against real streaming replication:
# where reads and writes land, seen from the servers (inet_server_port() of the
# answer, and the servers' own per-table statistics), for the simple and the extended
# protocol; every classification rule of the router (writes, DDL, FOR UPDATE/SHARE
# anywhere in a statement, CTEs that write, SELECT INTO, LOCK, COPY FROM, nextval,
# volatile functions from pg_proc, read_functions / write_functions, BEGIN READ ONLY,
# hints and SET shardpool.role); and the per-database keys read_replicas,
# primary_reads and replica weights.
#
# A write that reached a replica fails there (25006, read-only transaction), so a
# write that succeeds and reports the primary's port was routed right. pg_is_in_recovery()
# is volatile in pg_proc, so the config lists it in read_functions.
#
# It runs on a sandbox of its own (2 shards x 2 replicas, ports from
# RW_SPLIT_T_BASE_PORT, default 29100): it terminates server backends to make them
# flush their statistics, which would disturb other tests.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
command -v pgbench >/dev/null || skip_all "pgbench is not installed"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/initdb ] || skip_all "PostgreSQL 15 is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"
RWC=$SP_SRCDIR/test/integration/rwclient.py

BASE=${RW_SPLIT_T_BASE_PORT:-29100}
sandbox_private 2 2 "$BASE"
P0=$SB_PRIMARY_PORT_0 R00=$SB_REPLICA_PORT_0_0 R01=$SB_REPLICA_PORT_0_1
P1=$SB_PRIMARY_PORT_1 R10=$SB_REPLICA_PORT_1_0 R11=$SB_REPLICA_PORT_1_1
ALL_PORTS="$P0 $R00 $R01 $P1 $R10 $R11"
diag "sandbox: shard 0 $P0 ($R00 $R01), shard 1 $P1 ($R10 $R11)"

# role PORT: p0, r0.0, r0.1, p1, r1.0, r1.1 (anything else is printed as is)
role() {
	case $1 in
	"$P0") echo p0 ;; "$R00") echo r0.0 ;; "$R01") echo r0.1 ;;
	"$P1") echo p1 ;; "$R10") echo r1.0 ;; "$R11") echo r1.1 ;;
	*) echo "${1:-none}" ;;
	esac
}
# roles: "PORT COUNT" lines (rwclient ports, uniq -c swapped) -> "role:count ..." sorted
roles() {
	local port n out=()
	while read -r port n; do
		[ -n "$port" ] && out+=("$(role "$port"):$n")
	done
	printf '%s\n' "${out[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
# count_ports: port per line on stdin -> "PORT COUNT" lines
count_ports() { sort | uniq -c | awk '{ print $2, $1 }'; }

# ---------------------------------------------------------------- schema
SCHEMA="
CREATE TABLE rw_t (id int PRIMARY KEY, v text);
INSERT INTO rw_t SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE TABLE rw_stat (id bigserial PRIMARY KEY, v int);
INSERT INTO rw_stat (v) SELECT g FROM generate_series(1, 100) g;
CREATE TABLE rw_s (id bigint PRIMARY KEY, v text);
CREATE TABLE rw_copy (id int, v text);
CREATE SEQUENCE rw_seq;
CREATE FUNCTION rw_ins(i int) RETURNS int LANGUAGE sql VOLATILE
	AS \$\$ INSERT INTO rw_t VALUES (i, 'fn') RETURNING inet_server_port() \$\$;
CREATE FUNCTION rw_volread() RETURNS int LANGUAGE sql VOLATILE AS \$\$ SELECT inet_server_port() \$\$;
CREATE FUNCTION rw_stable() RETURNS int LANGUAGE sql STABLE AS \$\$ SELECT inet_server_port() \$\$;
"
for p in $P0 $P1; do
	echo "$SCHEMA" | pg_psql "$p" -f - >/dev/null || bail_out "cannot create the schema on $p"
done
# replicas have the schema before shardpool reads pg_proc
for p in $R00 $R01 $R10 $R11; do
	for ((i = 0; i < 100; i++)); do
		[ "$(pg_psql "$p" -c "SELECT count(*) FROM pg_proc WHERE proname = 'rw_stable'" 2>/dev/null)" = 1 ] && break
		sleep 0.1
	done
done

# ---------------------------------------------------------------- shardpool
SP_PORT=$(free_port) || bail_out "no free port"
SP_CONFIG=$SP_TMP/sp.ini SP_LOG=$SP_TMP/sp.log SP_PIDFILE=$SP_TMP/sp.pid
export SP_PORT SP_CONFIG SP_LOG SP_PIDFILE
shards() { # shards DB [WEIGHT0 WEIGHT1]: the [shard] sections of DB over the sandbox
	local w0=${2:+ weight=$2} w1=${3:+ weight=$3}
	cat <<EOF
[shard $1.0]
primary = host=127.0.0.1 port=$P0 dbname=app
replica = host=127.0.0.1 port=$R00 dbname=app$w0
replica = host=127.0.0.1 port=$R01 dbname=app$w1

[shard $1.1]
primary = host=127.0.0.1 port=$P1 dbname=app
replica = host=127.0.0.1 port=$R10 dbname=app$w0
replica = host=127.0.0.1 port=$R11 dbname=app$w1

EOF
}
{
	cat <<EOF
[shardpool]
listen_addr = 127.0.0.1
listen_port = $SP_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $SB/userlist.txt
admin_users = app
pool_mode = transaction
default_pool_size = 4
log_file = $SP_LOG
pid_file = $SP_PIDFILE
health_check_period = 0.5s
read_functions = pg_is_in_recovery
read_functions = rw_volread
write_functions = rw_stable

[database app]
shards = 2

EOF
	shards app
	cat <<EOF
[table app.rw_s]
key = id
type = bigint

[database ronly]
read_replicas = off

EOF
	shards ronly
	echo "[database prim]"
	echo "primary_reads = yes"
	echo
	shards prim
	echo "[database wt]"
	echo
	shards wt 3 1
	echo "[database sess]"
	echo "pool_mode = session"
	echo
	shards sess
} >"$SP_CONFIG"
sp_start "$SP_CONFIG"

# spq [psql args]: psql through shardpool to database ${DB:-app}; errors (with their
# SQLSTATE) on stdout too
spq() {
	PGPASSWORD=secret psql -X -q -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U app -d "${DB:-app}" "$@" 2>&1
}
# where SQL: the role of the port the statement returns
where() { role "$(spq -c "$1" | tail -n 1)"; }
DSN="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app connect_timeout=10"

# every replica in rotation: reads of each shard reach both its replicas
wait_rotation() {
	local db=$1 i got
	for ((i = 0; i < 100; i++)); do
		got=$(for s in 0 1; do yes "/* shard: $s */ SELECT inet_server_port();" | head -n 12 | DB=$db spq; done |
			count_ports | roles)
		[[ $got =~ ^(p0:[0-9]+\ p1:[0-9]+\ )?r0\.0:[0-9]+\ r0\.1:[0-9]+\ r1\.0:[0-9]+\ r1\.1:[0-9]+$ ]] && return 0
		sleep 0.2
	done
	echo "reads of database $db: $got"
	return 1
}
ok "every replica of both shards takes reads (database app)" wait_rotation app

# ---------------------------------------------------------------- placement: simple protocol
got=$(yes "SELECT inet_server_port();" | head -n 40 | spq | count_ports | roles)
like "$got" '^r0\.0:[0-9]+ r0\.1:[0-9]+$' "simple protocol: 40 reads of shard 0 land on its two replicas only ($got)"
is "$(spq -c "SELECT pg_is_in_recovery()")" t "pg_is_in_recovery() (in read_functions) answers t: a replica"
got=$(yes "/* shard: 1 */ SELECT inet_server_port();" | head -n 20 | spq | count_ports | roles)
like "$got" '^r1\.0:[0-9]+ r1\.1:[0-9]+$' "reads of shard 1 land on shard 1's replicas ($got)"
is "$(where "INSERT INTO rw_t VALUES (1001, 'w') RETURNING inet_server_port()")" p0 "INSERT lands on the primary"
for k in 1 2 3 4 5 6 7 8; do
	spq -c "INSERT INTO rw_s (id, v) VALUES ($k, 'k$k')" >/dev/null
done
# one session per read: read-your-writes would send a read right after a write to the primary
sleep 1
bad=
for k in 1 2 3 4 5 6 7 8; do
	r=$(spq -c "SELECT inet_server_port(), v FROM rw_s WHERE id = $k")
	p=$(where "/* role: primary */ SELECT inet_server_port() FROM rw_s WHERE id = $k")
	case "$(role "${r%%|*}")/${r#*|}/$p" in
	r0.?/k$k/p0 | r1.?/k$k/p1) ;;
	*) bad+=" id $k: read on $(role "${r%%|*}") got '${r#*|}', row on $p;" ;;
	esac
done
is "$bad" "" "sharded table: a read by key lands on a replica of the key's shard and finds the row"

# ---------------------------------------------------------------- placement: extended protocol
got=$($PY "$RWC" "$DSN" ports extended 20 "SELECT inet_server_port() FROM rw_t WHERE id = %s" 7 | roles)
like "$got" '^r0\.0:[0-9]+ r0\.1:[0-9]+$' "extended protocol (unnamed statement, \$1 bound): reads land on the replicas ($got)"
got=$($PY "$RWC" "$DSN" ports prepared 20 "SELECT inet_server_port() FROM rw_t WHERE id = %s" 7 | roles)
like "$got" '^r0\.0:[0-9]+ r0\.1:[0-9]+$' "extended protocol (named prepared statement): reads land on the replicas ($got)"
got=$($PY "$RWC" "$DSN" ports extended 20 "SELECT inet_server_port() FROM rw_s WHERE id = %s" 3 | roles)
like "$got" '^r[01]\.0:[0-9]+ r[01]\.1:[0-9]+$' "extended protocol, sharded table by key: reads land on replicas ($got)"
got=$($PY "$RWC" "$DSN" ports extended 1 "INSERT INTO rw_t VALUES (%s, 'x') RETURNING inet_server_port()" 1002 2>&1 | roles)
is "$got" "p0:1" "extended protocol: INSERT ... RETURNING lands on the primary"
got=$($PY "$RWC" "$DSN" ports prepared 5 "UPDATE rw_t SET v = 'p' WHERE id = %s RETURNING inet_server_port()" 1002 2>&1 | roles)
is "$got" "p0:5" "extended protocol: prepared UPDATE lands on the primary"

# ---------------------------------------------------------------- placement: servers' statistics
# Table statistics of idle backends reach the server's counters up to 10 s late; a
# backend that exits flushes them. Terminating shardpool's server backends (not the
# health checks) makes the counters current.
flush_stats() {
	local p i n
	for p in $ALL_PORTS; do
		pg_psql "$p" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE usename = 'app' AND backend_type = 'client backend'
			AND application_name <> 'shardpool health check' AND pid <> pg_backend_pid()" >/dev/null
	done
	for p in $ALL_PORTS; do
		for ((i = 0; i < 50; i++)); do
			n=$(pg_psql "$p" -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'
				AND backend_type = 'client backend' AND application_name <> 'shardpool health check'")
			[ "$n" = 0 ] && break
			sleep 0.1
		done
	done
}
# stats: "reads inserts" of rw_stat on each shard 0 server: p0 r0.0 r0.1
stats() {
	local p
	for p in $P0 $R00 $R01; do
		pg_psql "$p" -c "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins
			FROM pg_stat_user_tables WHERE relname = 'rw_stat'" | tr '|' ' '
	done | tr '\n' ' '
}
# delta BEFORE AFTER: "p0 reads/ins r0.0 reads/ins r0.1 reads/ins" differences
delta() {
	local -a a=($1) b=($2)
	echo "$((b[0] - a[0]))/$((b[1] - a[1])) $((b[2] - a[2]))/$((b[3] - a[3])) $((b[4] - a[4]))/$((b[5] - a[5]))"
}
printf '%s\n' '\set id random(1, 100)' 'SELECT v FROM rw_stat WHERE id = :id;' >"$SP_TMP/read.sql"
printf '%s\n' '\set v random(1, 1000000)' 'INSERT INTO rw_stat (v) VALUES (:v);' >"$SP_TMP/write.sql"
bench() { # bench MODE SCRIPT: 2 clients x 100 transactions through shardpool
	PGPASSWORD=secret pgbench -n -M "$1" -f "$2" -c 2 -t 100 -h 127.0.0.1 -p "$SP_PORT" -U app app >"$SP_TMP/pgbench.out" 2>&1 ||
		diag "pgbench -M $1 failed: $(tail -n 5 "$SP_TMP/pgbench.out")"
}
for mode in simple extended prepared; do
	flush_stats
	s0=$(stats)
	bench $mode "$SP_TMP/read.sql"
	flush_stats
	s1=$(stats)
	d=$(delta "$s0" "$s1")
	read -r dp dr0 dr1 <<<"$d"
	ok "pgbench -M $mode, 200 reads: the replicas' statistics count them all, the primary's none (p0 r0.0 r0.1 reads/inserts: $d)" \
		test "${dp%/*}" = 0 -a "$((${dr0%/*} + ${dr1%/*}))" = 200 -a "${dr0%/*}" -gt 0 -a "${dr1%/*}" -gt 0
	bench $mode "$SP_TMP/write.sql"
	flush_stats
	s2=$(stats)
	d=$(delta "$s1" "$s2")
	is "$d" "0/200 0/0 0/0" "pgbench -M $mode, 200 inserts: counted by the primary only (p0 r0.0 r0.1 reads/inserts)"
done

# ---------------------------------------------------------------- classification
is "$(where "UPDATE rw_t SET v = 'u' WHERE id = 2 RETURNING inet_server_port()")" p0 "UPDATE: primary"
is "$(where "DELETE FROM rw_t WHERE id = 3 RETURNING inet_server_port()")" p0 "DELETE: primary"
is "$(spq -c "CREATE TABLE rw_ddl (i int)" -c "SELECT 1")" 1 "DDL (CREATE TABLE) succeeds"
is "$(pg_psql "$P0" -c "SELECT to_regclass('rw_ddl') IS NOT NULL")" t "and created the table on the primary"
is "$(spq -c "DROP TABLE rw_ddl" -c "SELECT 1")" 1 "DDL (DROP TABLE) succeeds"
is "$(where "SELECT inet_server_port() FROM rw_t WHERE id = 1 FOR UPDATE")" p0 "SELECT ... FOR UPDATE: primary"
is "$(where "SELECT inet_server_port() FROM rw_t WHERE id = 1 FOR SHARE")" p0 "SELECT ... FOR SHARE: primary"
is "$(where "SELECT inet_server_port() FROM (SELECT * FROM rw_t WHERE id = 1 FOR UPDATE) s")" p0 \
	"FOR UPDATE inside a subquery: primary"
is "$(where "SELECT inet_server_port() WHERE EXISTS (SELECT 1 FROM rw_t WHERE id = 1 FOR UPDATE)")" p0 \
	"FOR UPDATE inside an EXISTS sublink: primary"
is "$(where "WITH s AS (SELECT * FROM rw_t WHERE id = 1 FOR NO KEY UPDATE) SELECT inet_server_port() FROM s")" p0 \
	"FOR NO KEY UPDATE inside a CTE: primary"
is "$(spq -c "WITH s AS (INSERT INTO rw_t VALUES (1003, 'cte') RETURNING id) SELECT inet_server_port(), id FROM s")" \
	"$P0|1003" "a CTE that inserts, read by a SELECT: primary"
is "$(where "WITH d AS (DELETE FROM rw_t WHERE id = 1003 RETURNING id) SELECT inet_server_port() FROM d")" p0 \
	"a CTE that deletes: primary"
is "$(spq -c "SELECT inet_server_port() AS port INTO rw_into" -c "SELECT 1")" 1 "SELECT INTO succeeds"
is "$(pg_psql "$P0" -c "SELECT port FROM rw_into")" "$P0" "and ran on the primary (the new table says so)"
is "$(spq -c "BEGIN" -c "LOCK TABLE rw_t IN ACCESS SHARE MODE" -c "SELECT inet_server_port()" -c "COMMIT")" "$P0" \
	"LOCK (ACCESS SHARE, which a standby would allow) in a transaction: primary"
is "$(spq -c "BEGIN; LOCK TABLE rw_t; SELECT inet_server_port(); COMMIT")" "$P0" \
	"LOCK (ACCESS EXCLUSIVE) in one query string: primary"
printf '1\tone\n2\ttwo\n3\tthree\n' | spq -c "COPY rw_copy FROM STDIN" >"$SP_TMP/copy.out"
is "$(cat "$SP_TMP/copy.out")" "" "COPY FROM STDIN succeeds"
is "$(pg_psql "$P0" -c "SELECT count(*) FROM rw_copy")" 3 "and its rows are on the primary"
is "$(spq -c "SELECT inet_server_port(), nextval('rw_seq') > 0")" "$P0|t" "nextval() in a SELECT: primary"
is "$(spq -c "SELECT inet_server_port(), rw_ins(1004)")" "$P0|$P0" \
	"a user-defined VOLATILE function (from pg_proc at start) that inserts: primary"
like "$(where "SELECT rw_volread()")" '^r0\.' "a VOLATILE function listed in read_functions: a replica"
is "$(where "SELECT rw_stable()")" p0 "a STABLE function listed in write_functions: primary"

# functions created while shardpool runs: a call to a name no pg_proc read knew of goes
# to the primary at once (its volatility is unknown) and makes shardpool read pg_proc
# again; a STABLE one then reads on replicas without a RELOAD. rw_ins2 on both
# primaries; rw_only0 on shard 0's primary only and rw_only1 on shard 1's only (as
# CREATE FUNCTION through shardpool goes to default_shard only), so a set read from one
# primary misses one of them
mkfn() { # mkfn PORT NAME
	pg_psql "$1" -c "CREATE FUNCTION $2(i int) RETURNS int LANGUAGE sql VOLATILE
		AS \$\$ INSERT INTO rw_t VALUES (i, '$2') RETURNING inet_server_port() \$\$" >/dev/null
}
mkfn "$P0" rw_ins2
mkfn "$P1" rw_ins2
mkfn "$P0" rw_only0
mkfn "$P1" rw_only1
for p in "$P0" "$P1"; do
	pg_psql "$p" -c "CREATE FUNCTION rw_new_stable() RETURNS int LANGUAGE sql STABLE
		AS \$\$ SELECT inet_server_port() \$\$" >/dev/null
done
nread=$(grep -c "functions read from pg_proc" "$SP_LOG")
is "$(where "SELECT rw_new_stable()")" p0 \
	"a STABLE function created after start: primary until pg_proc is read again"
is "$(spq -c "SELECT inet_server_port(), rw_ins2(1005)")" "$P0|$P0" \
	"a VOLATILE function created after start, before any RELOAD: primary (not 25006 from a replica)"
# the router asked for a new read: within CATALOG_AGAIN_DELAY (5 s) and a health period
for ((i = 0; i < 150; i++)); do
	[ "$(grep -c "functions read from pg_proc" "$SP_LOG")" -ge $((nread + 2)) ] && break
	sleep 0.1
done
like "$(where "SELECT rw_new_stable()")" '^r0\.' \
	"... and a replica once shardpool has read pg_proc again on its own"
is "$(spq -c "SELECT inet_server_port(), rw_ins2(1011)")" "$P0|$P0" \
	"the new VOLATILE function stays on the primary after that read"
nvol=$(grep -c "functions read from pg_proc" "$SP_LOG")
is "$(DB=shardpool spq -c "RELOAD")" "" "RELOAD"
# the set is the union over both primaries: wait for both to be read again (one alone
# may miss rw_only0 or rw_only1; slow under valgrind)
for ((i = 0; i < 200; i++)); do
	[ "$(grep -c "functions read from pg_proc" "$SP_LOG")" -ge $((nvol + 2)) ] && break
	sleep 0.1
done
ok "RELOAD re-reads the functions from pg_proc on both primaries" \
	test "$(grep -c "functions read from pg_proc" "$SP_LOG")" -ge $((nvol + 2))
diag "$(grep "functions read from pg_proc" "$SP_LOG" | tail -n 1 | sed 's/.*LOG //')"
is "$(spq -c "SELECT inet_server_port(), rw_ins2(1006)")" "$P0|$P0" \
	"a VOLATILE function created after start goes to the primary after RELOAD"
is "$(spq -c "SELECT inet_server_port(), rw_only0(1009)")" "$P0|$P0" \
	"a VOLATILE function that exists on shard 0 only goes to shard 0's primary"
is "$(spq -c "/* shard: 1 */ SELECT inet_server_port(), rw_only1(1010)")" "$P1|$P1" \
	"a VOLATILE function that exists on shard 1 only goes to shard 1's primary"

# a hot standby refuses these: they go to the primary
is "$(spq -c "SELECT txid_current() > 0, inet_server_port()")" "t|$P0" \
	"txid_current() (stable in pg_proc, refused by a standby): primary"
is "$(spq -c "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE" -c "SELECT inet_server_port()" -c "COMMIT")" "$P0" \
	"BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE: primary (a standby cannot run SERIALIZABLE)"
is "$(PGOPTIONS='-c default_transaction_isolation=serializable' spq -c "SELECT inet_server_port()")" "$P0" \
	"default_transaction_isolation = serializable from the startup packet: reads on the primary"
is "$(spq -c "SET default_transaction_isolation = serializable" -c "SELECT inet_server_port()" -c "BEGIN READ ONLY" -c "SELECT inet_server_port()" -c "COMMIT" | tr '\n' ' ')" "$P0 $P0 " \
	"SET default_transaction_isolation = serializable: later reads and BEGIN READ ONLY on the primary"
# session pooling keeps the first server for the whole session: the primary
is "$(DB=sess spq -c "SELECT inet_server_port()" -c "INSERT INTO rw_t VALUES (1012, 'sess') RETURNING inet_server_port()" | tr '\n' ' ')" "$P0 $P0 " \
	"session pooling: a read then a write in one session both run on the primary (no 25006)"

is "$(spq -c "BEGIN READ ONLY" -c "SELECT inet_server_port()" -c "COMMIT" | while read -r p; do role "$p"; done | cut -c1-3)" \
	r0. "BEGIN READ ONLY: a replica"
is "$(spq -c "START TRANSACTION READ ONLY; SELECT inet_server_port(); COMMIT" | while read -r p; do role "$p"; done | cut -c1-3)" \
	r0. "START TRANSACTION READ ONLY in one query string: a replica"
is "$(spq -c "BEGIN" -c "SELECT inet_server_port()" -c "COMMIT")" "$P0" "plain BEGIN, then a read: primary"
is "$(spq -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT inet_server_port()" -c "COMMIT")" "$P0" \
	"BEGIN ISOLATION LEVEL REPEATABLE READ: primary"
is "$(where "/* role: primary */ SELECT inet_server_port()")" p0 "/* role: primary */ hint on a read: primary"
like "$(where "/* role: replica */ SELECT inet_server_port()")" '^r0\.' "/* role: replica */ hint on a read: replica"
is "$(where "/* role: replica */ INSERT INTO rw_t VALUES (1007, 'h') RETURNING inet_server_port()")" p0 \
	"/* role: replica */ hint on a write: still the primary"
is "$(where "/* shard: 1, role: primary */ SELECT inet_server_port()")" p1 "/* shard: 1, role: primary */: shard 1's primary"
# (a read that ran on the primary counts as a write for read-your-writes: the next reads
# wait for the replicas to be seen past the primary's WAL position, up to a health period)
got=$(spq -c "SET shardpool.role = 'primary'" -c "SELECT inet_server_port()" -c "SELECT inet_server_port()" \
	-c "RESET shardpool.role" -c '\! sleep 1.2' -c "SELECT inet_server_port()" | while read -r p; do role "$p"; done | tr '\n' ' ')
like "$got" '^p0 p0 r0\.[01] $' "SET shardpool.role = 'primary': reads on the primary until RESET ($got)"
got=$(spq -c "SET shardpool.role = 'replica'" -c "SELECT inet_server_port()" \
	-c "INSERT INTO rw_t VALUES (1008, 's') RETURNING inet_server_port()" | while read -r p; do role "$p"; done | tr '\n' ' ')
like "$got" '^r0\.[01] p0 $' "SET shardpool.role = 'replica': reads on a replica, writes still on the primary ($got)"

# ---------------------------------------------------------------- per-database keys
got=$(for s in 0 1; do yes "/* shard: $s */ SELECT inet_server_port();" | head -n 20 | DB=ronly spq; done | count_ports | roles)
is "$got" "p0:20 p1:20" "read_replicas = off: every read on the primaries"
ok "database prim: every node in rotation" wait_rotation prim
got=$(yes "SELECT inet_server_port();" | head -n 90 | DB=prim spq | count_ports | roles)
like "$got" '^p0:[0-9]+ r0\.0:[0-9]+ r0\.1:[0-9]+$' "primary_reads = yes: reads spread over the primary and both replicas ($got)"
n=$(sed -n 's/^p0:\([0-9]*\) .*/\1/p' <<<"$got")
ok "the primary takes about a third of them (${n:-0} of 90)" test "${n:-0}" -ge 15 -a "${n:-0}" -le 45
got=$(yes "SELECT inet_server_port();" | head -n 400 | DB=wt spq | count_ports | roles)
like "$got" '^r0\.0:[0-9]+ r0\.1:[0-9]+$' "weights: 400 reads on the replicas only ($got)"
a=$(sed -n 's/^r0\.0:\([0-9]*\) .*/\1/p' <<<"$got") b=$(sed -n 's/.* r0\.1:\([0-9]*\)$/\1/p' <<<"$got")
ok "weight=3 vs weight=1: split about 3:1 (${a:-0}:${b:-0})" \
	awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { exit !(b > 0 && a / b >= 2.5 && a / b <= 3.5) }'
got=$($PY "$RWC" "host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=wt" ports extended 400 \
	"SELECT inet_server_port() FROM rw_t WHERE id = %s" 9 | roles)
a=$(sed -n 's/^r0\.0:\([0-9]*\) .*/\1/p' <<<"$got") b=$(sed -n 's/.* r0\.1:\([0-9]*\)$/\1/p' <<<"$got")
ok "weights with the extended protocol: about 3:1 ($got)" \
	awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { exit !(b > 0 && a / b >= 2.5 && a / b <= 3.5) }'

done_testing
