#!/bin/bash
# 83_shard_txn.t - transactions on a sharded database (issue 3): a transaction lives on
# the shard of its first statement with a key; a statement that needs another shard is
# refused with 0A000 and fails the transaction (25P02 until ROLLBACK), after which
# nothing of it is left on any shard and the connection (client and server side) is
# clean. Also: empty transactions, READ ONLY, savepoints, SET LOCAL before the first
# keyed statement, transactions written as one query string, transactions through the
# extended protocol (psycopg with autocommit off), and a short pgbench run keyed by
# :aid through shardpool with zero errors and every update accounted for.
#
# Runs on the shared 2-shard sandbox; tables are named t83_*.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
SHARDSQL=$SP_SRCDIR/test/integration/shardsql.py
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"

DSN() { echo "host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app"; }
sess() {
	timeout 60 $PY "$SHARDSQL" "$(DSN)" || { [ $? = 124 ] && echo "TIMEOUT: no answer within 60 s"; }
}
# where COND: "shard:rows" of t83_users matching COND, for every shard that has some
where() {
	local i n out=
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM t83_users WHERE $1") || n=error
		[ "$n" != 0 ] && out+="$i:$n "
	done
	echo "${out% }"
}
# server connections of user app left inside a transaction that touched t83 tables
# (after a short grace period: the server sees the client's last message late)
left_in_txn() {
	local i n sum=0 try
	for try in 1 2 3 4 5; do
		sum=0
		for ((i = 0; i < SB_SHARDS; i++)); do
			n=$(on "$i" "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state LIKE 'idle in transaction%' AND query LIKE '%t83%'")
			sum=$((sum + n))
		done
		[ "$sum" = 0 ] && break
		sleep 0.2
	done
	echo "$sum"
}

# warm_up: the first logins after start-up, retried. A login right after start-up is
# sometimes refused at once with "query_wait_timeout (120 s) ..." (reported as a bug
# of its own); retrying keeps that out of the sharding tests, and the diag shows it.
warm_up() {
	local db try out
	for db in app plain; do
		for try in 1 2 3 4 5; do
			out=$(PGPASSWORD=secret timeout 10 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$db" -c "SELECT 1" 2>&1)
			[ "$out" = 1 ] && break
			diag "warm-up login to $db, try $try: $out"
			sleep 0.2
		done
	done
}

sandbox_ensure 2 1
on_all "DROP TABLE IF EXISTS t83_users, t83_accounts, t83_pl CASCADE;
	CREATE TABLE t83_users (user_id bigint PRIMARY KEY, name text);
	CREATE TABLE t83_accounts (aid bigint PRIMARY KEY, abalance int NOT NULL, filler text);
	CREATE TABLE t83_pl (k bigint) PARTITION BY HASH (k)" || bail_out "cannot create the t83 tables"
at_exit "on_all 'DROP TABLE IF EXISTS t83_users, t83_accounts, t83_pl CASCADE' >/dev/null 2>&1"

sp_write_config "$SP_TMP/sp.ini"
sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
cat >>"$SP_CONFIG" <<EOF

[table app.t83_users]
key = user_id
type = bigint

[table app.t83_accounts]
key = aid
type = bigint
EOF
sp_start "$SP_CONFIG"
warm_up

# keys on shard 0 (A*) and shard 1 (B*), by PostgreSQL's own hash partitioning
mapfile -t A < <(on 0 "SELECT k FROM generate_series(1, 200) AS k WHERE satisfies_hash_partition('t83_pl'::regclass, 2, 0, k::bigint) LIMIT 16")
mapfile -t B < <(on 0 "SELECT k FROM generate_series(1, 200) AS k WHERE satisfies_hash_partition('t83_pl'::regclass, 2, 1, k::bigint) LIMIT 16")
diag "keys on shard 0: ${A[*]}; on shard 1: ${B[*]}"

# ---------------------------------------------------------------- one shard
out=$(sess <<EOF
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${B[0]}, 'b0')
UPDATE t83_users SET name = 'b0x' WHERE user_id = ${B[0]}
INSERT INTO t83_users (user_id, name) VALUES (${B[1]}, 'b1')
SELECT count(*) FROM t83_users WHERE user_id IN (${B[0]}, ${B[1]})
SELECT 1
\\status
COMMIT
\\status
EOF
)
is "$out" $'BEGIN\nINSERT 0 1\nUPDATE 1\nINSERT 0 1\nSELECT 1 2\nSELECT 1 1\nINTRANS\nCOMMIT\nIDLE' "a transaction whose statements are all on shard 1 runs"
is "$(where "user_id IN (${B[0]}, ${B[1]})") $(where "name = 'b0x'")" "1:2 1:1" "... and its rows are on shard 1 only"

out=$(sess <<EOF
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${A[0]}, 'a0')
ROLLBACK
EOF
)
is "$out" $'BEGIN\nINSERT 0 1\nROLLBACK' "a transaction on shard 0 rolled back"
is "$(where "user_id = ${A[0]}")" "" "... leaves nothing"

# ---------------------------------------------------------------- a second shard fails the transaction
out=$(sess <<EOF
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${A[1]}, 'a1')
INSERT INTO t83_users (user_id, name) VALUES (${B[2]}, 'b2')
\\status
SELECT 1
INSERT INTO t83_users (user_id, name) VALUES (${A[2]}, 'a2')
ROLLBACK
\\status
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${B[3]}, 'b3')
COMMIT
SELECT name FROM t83_users WHERE user_id = ${B[3]}
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN INSERT 0 ERROR 0A000 INERROR ERROR 25P02 ERROR 25P02 ROLLBACK IDLE BEGIN INSERT 0 COMMIT SELECT 1 " \
	"a statement on another shard: 0A000, the transaction is failed (25P02), ROLLBACK ends it, the next transaction works" || diag "$out"
like "$(grep 0A000 <<<"$out")" "shard 1.*shard 0|shard 0.*shard 1" "the refusal names both shards"
is "$(where "user_id IN (${A[1]}, ${B[2]}, ${A[2]})")" "" "nothing of the refused transaction is on any shard"
is "$(where "user_id = ${B[3]}")" "1:1" "the next transaction's row is on its shard"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction"

out=$(sess <<EOF
BEGIN
SELECT name FROM t83_users WHERE user_id = ${B[0]}
SELECT name FROM t83_users WHERE user_id = ${A[3]}
COMMIT
\\status
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN SELECT 1 ERROR 0A000 ROLLBACK IDLE " \
	"a read on another shard is refused too, and COMMIT of the failed transaction answers ROLLBACK"

out=$(sess <<EOF
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${A[4]}, 'a4')
SELECT count(*) FROM t83_users
UPDATE t83_users SET name = 'x' WHERE user_id = ${A[4]}
ROLLBACK
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN INSERT 0 ERROR 0A000 ERROR 25P02 ROLLBACK " "an unpinned (fan-out) read inside a transaction is refused with 0A000"
is "$(where "user_id = ${A[4]} OR name = 'x'")" "" "... and nothing of that transaction stays"

out=$(sess <<EOF
BEGIN
UPDATE t83_users SET name = 'y' WHERE user_id IN (${B[0]}, ${B[1]})
UPDATE t83_users SET name = 'z' WHERE user_id IN (${B[0]}, ${A[0]})
ROLLBACK
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN UPDATE 2 ERROR 0A000 ROLLBACK " "keys on one shard (IN) run in a transaction; keys on two shards are refused"
is "$(where "name IN ('y', 'z')")" "" "... and the rolled-back UPDATE left nothing"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction"

# ---------------------------------------------------------------- empty, READ ONLY, savepoints
out=$(sess <<EOF
BEGIN
COMMIT
BEGIN
ROLLBACK
START TRANSACTION
END
ROLLBACK
COMMIT
BEGIN READ ONLY
SELECT name FROM t83_users WHERE user_id = ${B[1]}
COMMIT
START TRANSACTION READ ONLY
INSERT INTO t83_users (user_id, name) VALUES (${B[4]}, 'ro')
ROLLBACK
\\status
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN COMMIT BEGIN ROLLBACK START TRANSACTION COMMIT ROLLBACK COMMIT BEGIN SELECT 1 COMMIT START TRANSACTION ERROR 25006 ROLLBACK IDLE " \
	"empty transactions, ROLLBACK / COMMIT outside one, BEGIN READ ONLY (reads by key; a write gets 25006)" || diag "$out"
is "$(where "user_id = ${B[4]}")" "" "the READ ONLY transaction wrote nothing"

out=$(sess <<EOF
BEGIN
INSERT INTO t83_users (user_id, name) VALUES (${A[5]}, 'sp1')
SAVEPOINT s1
INSERT INTO t83_users (user_id, name) VALUES (${A[6]}, 'sp2')
ROLLBACK TO SAVEPOINT s1
RELEASE SAVEPOINT s1
COMMIT
EOF
)
is "$out" $'BEGIN\nINSERT 0 1\nSAVEPOINT\nINSERT 0 1\nROLLBACK\nRELEASE\nCOMMIT' "savepoints inside a one-shard transaction"
is "$(where "user_id IN (${A[5]}, ${A[6]})")" "0:1" "only the row before the savepoint stays"

# SET / SET LOCAL before the first keyed statement wait with the BEGIN and go with the
# transaction (doc/sharding.md). A statement that needs a server but has no key
# (SELECT 1) binds the transaction to the default shard, as documented: checked below.
out=$(sess <<EOF
BEGIN
SET LOCAL application_name = 't83_local'
INSERT INTO t83_users (user_id, name) VALUES (${B[5]}, current_setting('application_name'))
SELECT current_setting('application_name')
COMMIT
EOF
)
is "$out" $'BEGIN\nSET\nINSERT 0 1\nSELECT 1 t83_local\nCOMMIT' \
	"BEGIN; SET LOCAL; then a keyed INSERT on shard 1: one transaction, the SET LOCAL applies"
is "$(on 1 "SELECT name FROM t83_users WHERE user_id = ${B[5]}")" "t83_local" "... the row on shard 1 saw the SET LOCAL of its transaction"

# ---------------------------------------------------------------- one query string
out=$(sess <<EOF
BEGIN; UPDATE t83_users SET name = 'qs' WHERE user_id = ${B[1]}; COMMIT
BEGIN; INSERT INTO t83_users (user_id, name) VALUES (${A[7]}, 'q'); INSERT INTO t83_users (user_id, name) VALUES (${B[6]}, 'q'); COMMIT
\\status
SELECT 2
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN UPDATE 1 COMMIT ERROR 0A000 IDLE SELECT 1 " \
	"BEGIN; UPDATE by key; COMMIT as one query string runs; one whose statements need two shards is refused" || diag "$out"
is "$(where "name = 'qs'") / $(where "user_id IN (${A[7]}, ${B[6]})")" "1:1 / " "the one-string transaction changed shard 1; the refused one stored nothing"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction"

# ---------------------------------------------------------------- extended protocol
# BEGIN itself sent with Parse/Bind/Execute (as psycopg, JDBC and pgbench -M extended do)
out=$(sess <<EOF
\\p BEGIN
\\p INSERT INTO t83_users (user_id, name) VALUES (\$1, 'xb') ;; ${B[6]}
\\status
\\p COMMIT
\\p BEGIN
\\p INSERT INTO t83_users (user_id, name) VALUES (\$1, 'xa') ;; ${A[7]}
\\p INSERT INTO t83_users (user_id, name) VALUES (\$1, 'xb') ;; ${B[7]}
\\status
\\p SELECT 1
\\p ROLLBACK
\\status
\\p SELECT 2
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "BEGIN INSERT 0 INTRANS COMMIT BEGIN INSERT 0 ERROR 0A000 INERROR ERROR 25P02 ROLLBACK IDLE SELECT 1 " \
	"extended protocol: BEGIN, then a keyed INSERT on shard 1 commits; a second shard gets 0A000 and ReadyForQuery says the transaction failed" || diag "$out"
is "$(where "user_id = ${B[6]}") / $(where "user_id IN (${A[7]}, ${B[7]})")" "1:1 / " "the committed row is on shard 1; the refused transaction left nothing"

out=$(timeout 60 $PY - "$(DSN)" "${A[8]}" "${B[8]}" "${B[9]}" "${A[5]}" "${B[3]}" <<'EOF'
# psycopg with autocommit off: BEGIN goes first, the statements follow with the
# extended protocol (Parse/Bind/Execute), the transaction binds to the first key
import sys
import psycopg
dsn = sys.argv[1]
a8, b8, b9, a5, b3 = (int(x) for x in sys.argv[2:7])
conn = psycopg.connect(dsn)
out = []


def step(label, fn):
    try:
        r = fn()
        out.append("%s: %s %s" % (label, r, conn.info.transaction_status.name))
    except psycopg.Error as e:
        out.append("%s: %s %s" % (label, e.sqlstate, conn.info.transaction_status.name))


def one(sql, args, **kw):
    return lambda: conn.execute(sql, args, **kw).fetchone()[0]


def ex(sql, args):
    return lambda: conn.execute(sql, args).statusmessage


step("insert", ex("INSERT INTO t83_users (user_id, name) VALUES (%s, %s)", (b8, "ext")))
step("update", ex("UPDATE t83_users SET name = %s WHERE user_id = %s", ("ext2", b8)))
step("select", one("SELECT name FROM t83_users WHERE user_id = %s", (b8,), prepare=True))
step("commit", conn.commit)
step("insert on shard 0", ex("INSERT INTO t83_users (user_id, name) VALUES (%s, %s)", (a8, "x")))
step("insert on shard 1", ex("INSERT INTO t83_users (user_id, name) VALUES (%s, %s)", (b9, "x")))
step("rollback", conn.rollback)
step("count", one("SELECT count(*) FROM t83_users WHERE user_id IN (%s, %s)", (a8, b9)))
step("commit", conn.commit)
for k in (a5, b3):
    step("txn on shard %d" % (0 if k == a5 else 1), one("SELECT count(*) FROM t83_users WHERE user_id = %s", (k,), prepare=True))
    step("commit", conn.commit)
conn.close()
print("\n".join(out))
EOF
)
is "$out" "insert: INSERT 0 1 INTRANS
update: UPDATE 1 INTRANS
select: ext2 INTRANS
commit: None IDLE
insert on shard 0: INSERT 0 1 INTRANS
insert on shard 1: 0A000 INERROR
rollback: None IDLE
count: 0 INTRANS
commit: None IDLE
txn on shard 0: 1 INTRANS
commit: None IDLE
txn on shard 1: 1 INTRANS
commit: None IDLE" \
	"psycopg, autocommit off: a transaction routes by its first keyed statement; a second shard gets 0A000; the connection goes on" || diag "$out"
is "$(where "user_id = ${B[8]} AND name = 'ext2'") / $(where "user_id IN (${A[8]}, ${B[9]})")" "1:1 / " \
	"psycopg: the committed row is on shard 1; the refused transaction left nothing"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction"

# ---------------------------------------------------------------- a write over several shards is all or nothing
# PostgreSQL: a statement that fails changes nothing. Over several shards each shard runs
# its part inside BEGIN, and all COMMIT only if every shard succeeded.
K="${A[12]}, ${B[12]}, ${A[13]}, ${B[13]}"
out=$(sess <<EOF
INSERT INTO t83_users (user_id, name) VALUES (${A[12]}, 'w'), (${B[12]}, 'w'), (${A[13]}, 'w'), (${B[13]}, 'w')
UPDATE t83_users SET name = 'x' || (1 / (user_id - ${B[13]}))::text WHERE user_id IN ($K)
INSERT INTO t83_users (user_id, name) VALUES (${A[14]}, 'n'), (${B[14]}, 'n'), (${B[12]}, 'dup')
\\p UPDATE t83_users SET name = 'y' || (1 / (user_id - \$1))::text WHERE user_id = ANY(\$2) ;; ${A[13]} ;; {${A[12]},${B[12]},${A[13]}}
DELETE FROM t83_users WHERE user_id IN ($K) AND 1 / (user_id - ${A[12]}) > -1000
\\status
UPDATE t83_users SET name = 'ok' WHERE user_id IN (${A[12]}, ${B[12]})
EOF
)
is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "INSERT 0 ERROR 22012 ERROR 23505 ERROR 22012 ERROR 22012 IDLE UPDATE 2 " \
	"writes over both shards that fail on one shard: errors as from PostgreSQL, then a good one" || diag "$out"
is "$(where "user_id IN ($K) AND name <> 'w' AND name <> 'ok'")" "" "an UPDATE or DELETE that failed on one shard changed nothing on the other"
is "$(where "user_id IN ($K)")" "0:2 1:2" "the failed DELETE removed nothing"
is "$(where "user_id IN (${A[14]}, ${B[14]})")" "" "a split INSERT that failed on one shard left no row on the other"
is "$(where "name = 'ok'")" "0:1 1:1" "a write over both shards that succeeds commits on both"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction"


# ---------------------------------------------------------------- pgbench keyed by :aid
NACC=2000
out=$(awk -v n=$NACC 'BEGIN { for (i = 1; i <= n; i++) printf "%d\t0\tfiller %d\n", i, i; print "\\." }' |
	PGPASSWORD=secret timeout 30 psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d app -c "COPY t83_accounts (aid, abalance, filler) FROM STDIN" 2>&1)
is "$out" "COPY $NACC" "pgbench_accounts-like table loaded through shardpool with COPY"
n0=$(on 0 "SELECT count(*) FROM t83_accounts WHERE satisfies_hash_partition('t83_pl'::regclass, 2, 0, aid)")
n1=$(on 1 "SELECT count(*) FROM t83_accounts WHERE satisfies_hash_partition('t83_pl'::regclass, 2, 1, aid)")
is "$((n0 + n1)) $(on 0 "SELECT count(*) FROM t83_accounts") $(on 1 "SELECT count(*) FROM t83_accounts")" "$NACC $n0 $n1" "each account is on its key's shard"
cat >"$SP_TMP/bench.sql" <<EOF
\\set aid random(1, $NACC)
BEGIN;
UPDATE t83_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT abalance FROM t83_accounts WHERE aid = :aid;
END;
EOF
processed=0
for mode in simple extended prepared; do
	out=$(PGPASSWORD=secret timeout 60 pgbench -n -h 127.0.0.1 -p "$SP_PORT" -U app -c 4 -j 2 -T 3 -M "$mode" -f "$SP_TMP/bench.sql" app 2>&1)
	rc=$?
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
	is "$rc ${failed:-?}" "0 0" "pgbench -M $mode through shardpool for 3 s: exit 0, no failed transaction (${n:-0} processed)" ||
		diag "$(grep -iv '^progress' <<<"$out" | tail -n 15)"
	ok "pgbench -M $mode processed transactions" test "${n:-0}" -gt 0
	processed=$((processed + ${n:-0}))
done
sum=$(($(on 0 "SELECT sum(abalance) FROM t83_accounts") + $(on 1 "SELECT sum(abalance) FROM t83_accounts")))
is "$sum" "$processed" "every pgbench transaction's UPDATE landed exactly once (sum of balances = transactions)"
is "$(left_in_txn)" 0 "no server connection is left inside a transaction after pgbench"

done_testing
