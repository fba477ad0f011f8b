#!/bin/bash
# 85_insert_columns.t - INSERT ... VALUES without a column list into sharded tables.
# PostgreSQL fills such VALUES in the table's column order; shardpool learns that order
# from each primary's catalog (health.c, once per generation) and finds the key there.
# Every row is looked for on every shard's primary, and the shard it must be on is the
# remainder PostgreSQL's own hash partitioning gives its key (satisfies_hash_partition on
# an empty PARTITION BY HASH parent), never a copy of shardpool's hash.
#
# Covered: an INSERT as soon as shardpool accepts clients (start-up waits for the first
# probes), one row and several rows over both shards (split), RETURNING, ON CONFLICT DO
# NOTHING, the extended protocol with parameters (psycopg's libpq), a key that is not
# the first column, a dropped column before the key, INSERT ... SELECT without a list, a
# table created through shardpool after start (works after the re-read its DDL asks
# for), ALTER TABLE DROP / ADD COLUMN through shardpool (never a row on a wrong shard,
# the new order once read), a table created on the shards directly (known after RELOAD,
# or after the re-read a refused INSERT asks for), and the 0A000 refusal with its hint
# while the order is unknown.
#
# Runs on the shared 2-shard sandbox; tables are named t85_*.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"

q() { printf '%s\n' "$1" | sess; }
# where TABLE COND: "shard:rows" for every shard holding rows that match COND
where() {
	local i n out=
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1 WHERE $2") || n="error"
		[ "$n" != 0 ] && out+="$i:$n "
	done
	echo "${out% }"
}
total() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}
# misplaced TABLE KEYCOL: rows that PostgreSQL's hash partitioning would put elsewhere
misplaced() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1 WHERE NOT satisfies_hash_partition('t85_pl'::regclass, $SB_SHARDS, $i, $2::bigint)") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}
# key_on SHARD [NOT...]: a bigint key in 1..1000 on that shard, other than the ones given
key_on() {
	local s=$1 not=0 k
	shift
	for k in "$@"; do not+=",$k"; done
	on 0 "SELECT k FROM generate_series(1, 1000) AS k WHERE satisfies_hash_partition('t85_pl'::regclass, $SB_SHARDS, $s, k::bigint) AND k NOT IN ($not) LIMIT 1"
}
# sorted OUTPUT: a shardsql result line with its rows sorted (a split INSERT returns
# the rows of each shard in turn)
sorted() {
	local tag=${1% *} rows=${1##* }
	echo "$tag $(tr ',' '\n' <<<"$rows" | sort | paste -sd,)"
}
# reads: lines of the log that report a column-order read
reads() { grep -c "column order of .* read on" "$SP_LOG"; }
# wait_reads N: until the log has more than N such lines (10 s at most)
wait_reads() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(reads)" -gt "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
# until_ok SQL: retry SQL (a simple query) for up to 15 s while it is refused with
# 0A000; prints the last answer and, on stderr, how many refusals came first
until_ok() {
	local i out
	for ((i = 0; i < 150; i++)); do
		out=$(q "$1")
		[[ $out == "ERROR 0A000"* ]] || break
		sleep 0.1
	done
	echo "$out"
	echo "$i" >"$SP_TMP/refusals"
}

sandbox_ensure 2 1
tables="t85_a, t85_b, t85_c, t85_new, t85_alt, t85_direct, t85_direct2, t85_pl"
on_all "DROP TABLE IF EXISTS $tables CASCADE;
	CREATE TABLE t85_a (id bigint PRIMARY KEY, name text, score int);
	CREATE TABLE t85_b (note text, n int, k bigint PRIMARY KEY);
	CREATE TABLE t85_c (x int, gone int, k bigint, v text);
	ALTER TABLE t85_c DROP COLUMN gone;
	CREATE TABLE t85_alt (a int, k bigint, v text);
	CREATE TABLE t85_pl (k bigint) PARTITION BY HASH (k);" ||
	bail_out "cannot create the t85 tables on the shards"
at_exit 'on_all "DROP TABLE IF EXISTS $tables CASCADE" 2>/dev/null'

sp_write_config "$SP_TMP/sp.ini"
sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
for t in "t85_a id" "t85_b k" "t85_c k" "t85_new k" "t85_alt k" "t85_direct k" "t85_direct2 k"; do
	set -- $t
	printf '\n[table app.%s]\nkey = %s\ntype = bigint\n' "$1" "$2" >>"$SP_CONFIG"
done
sp_start "$SP_CONFIG"
# start-up waits (a bounded time) for the primaries' first probes, which read the
# column orders: the first client can rely on them
is "$(q "INSERT INTO t85_a VALUES (999999, 'first', 0)")" "INSERT 0 1" \
	"an INSERT without a column list as soon as shardpool accepts clients"
q "DELETE FROM t85_a WHERE id = 999999" >/dev/null
ok "both primaries report their column orders after start" wait_reads 1
diag "$(grep "column order of" "$SP_LOG" | head -n 2 | sed 's/.*health: //')"

A0=$(key_on 0)
A1=$(key_on 0 "$A0")
B0=$(key_on 1)
B1=$(key_on 1 "$B0")
diag "keys on shard 0: $A0 $A1, on shard 1: $B0 $B1"

# ---------------------------------------------------------------- key first
is "$(q "INSERT INTO t85_a VALUES ($A0, 'a0', 1)")" "INSERT 0 1" "one row without a column list"
is "$(where t85_a "id = $A0")" "0:1" "it is on shard 0, where PostgreSQL's hash partitioning puts it"
is "$(sorted "$(q "INSERT INTO t85_a VALUES ($B0, 'b0', 2), ($A1, 'a1', 3), ($B1, 'b1', 4) RETURNING id, name")")" \
	"$(sorted "INSERT 0 3 $B0|b0,$A1|a1,$B1|b1")" "three rows over both shards: split, RETURNING of every row"
is "$(where t85_a "id IN ($B0, $B1)")" "1:2" "the shard-1 rows are on shard 1"
is "$(where t85_a "id = $A1")" "0:1" "the shard-0 row is on shard 0"
is "$(q "INSERT INTO t85_a VALUES ($B0, 'dup', 9), ($A0, 'dup', 9) ON CONFLICT DO NOTHING")" "INSERT 0 0" \
	"ON CONFLICT DO NOTHING over both shards: nothing inserted"
is "$(q "INSERT INTO t85_a VALUES ($B0, 'dup', 9) ON CONFLICT (id) DO UPDATE SET score = EXCLUDED.score RETURNING score")" \
	"INSERT 0 1 9" "ON CONFLICT DO UPDATE on the key's shard"
out=$(sess <<EOF
\\p INSERT INTO t85_a VALUES (\$1, \$2, \$3) RETURNING id ;; $B1 ;; ext ;; 5
EOF
)
is "$out" "ERROR 23505 duplicate key value violates unique constraint \"t85_a_pkey\"" \
	"extended protocol with \$n: the row reaches the key's shard (its duplicate key is seen there)"
k1=$(key_on 1 "$B0" "$B1")
k2=$(key_on 1 "$B0" "$B1" "$k1")
out=$(sess <<EOF
\\p INSERT INTO t85_a VALUES (\$1, \$2, \$3) RETURNING id ;; $k1 ;; ext ;; 5
\\p INSERT INTO t85_a VALUES (\$1, 'x', 1), (\$2, 'y', 2) ;; $k2 ;; $k2
EOF
)
is "$out" "INSERT 0 1 $k1"$'\n'"ERROR 23505 duplicate key value violates unique constraint \"t85_a_pkey\"" \
	"extended protocol: one row by \$1, and two rows with \$n on one shard (duplicates meet there)"
is "$(where t85_a "id = $k1")" "1:1" "the extended-protocol row is on shard 1"
is "$(q "INSERT INTO t85_a SELECT $k2, 'sel', 7")" "INSERT 0 1" "INSERT ... SELECT of constants without a list"
is "$(where t85_a "id = $k2")" "1:1" "and it is on its key's shard"
is "$(misplaced t85_a id)" 0 "no t85_a row is on another shard than PostgreSQL's hash partitioning gives it"

# ---------------------------------------------------------------- key not first
script=
for k in $(seq 1 20); do script+="INSERT INTO t85_b VALUES ('n$k', $k, $k)"$'\n'; done
script+="INSERT INTO t85_b VALUES ('m', 1, 101), ('m', 2, 102), ('m', 3, 103), ('m', 4, 104), ('m', 5, 105), ('m', 6, 106)"
out=$(sess <<<"$script")
is "$(grep -c '^INSERT 0 1$' <<<"$out")" 20 "key in column 3: 20 single-row INSERTs" || diag "$out"
is "$(tail -n 1 <<<"$out")" "INSERT 0 6" "key in column 3: a six-row INSERT split over the shards"
is "$(total t85_b)" 26 "every t85_b row stored once"
is "$(misplaced t85_b k)" 0 "every t85_b row is on the shard of its key (column 3), not of column 2"

script=
for k in $(seq 200 219); do script+="INSERT INTO t85_c VALUES ($k, $k, 'v$k')"$'\n'; done
out=$(sess <<<"$script")
is "$(grep -c '^INSERT 0 1$' <<<"$out")" 20 "a dropped column before the key: 20 INSERTs" || diag "$out"
is "$(misplaced t85_c k)" 0 "every t85_c row is on the shard of its key (value 2 of 3, attnum 3)"

# ---------------------------------------------------------------- RELOAD
# created on the shards directly: RELOAD re-reads the catalog
n=$(reads)
on_all "CREATE TABLE t85_direct2 (v text, k bigint)"
is "$(PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c RELOAD 2>&1)" "" "RELOAD"
ok "RELOAD reads the column orders again" wait_reads $((n + 1))
is "$(q "INSERT INTO t85_direct2 VALUES ('r', $B0), ('r', $A0)")" "INSERT 0 2" \
	"a table created on the shards after start: known after RELOAD (first try)"
is "$(where t85_direct2 "k = $B0")/$(where t85_direct2 "k = $A0")" "1:1/0:1" "its rows are on their keys' shards"

# ---------------------------------------------------------------- unknown order
out=$(q "INSERT INTO t85_direct VALUES (1, 'x')")
like "$out" "^ERROR 0A000 INSERT without a column list into sharded table t85_direct: shardpool does not know the table's column order" \
	"a configured table that does not exist yet: 0A000 that says what is missing"
out=$(PGPASSWORD=secret psql -X -q -h 127.0.0.1 -p "$SP_PORT" -U app -d app -c "INSERT INTO t85_direct VALUES (1, 'x')" 2>&1)
like "$out" "HINT: +Name the columns \(INSERT INTO t85_direct \(k, \.\.\.\) VALUES \.\.\.\), or, if the table was created after shardpool last read the catalog, retry in a few seconds or RELOAD shardpool\." \
	"the hint: name the columns, or retry / RELOAD after creating the table"

# created on the shards directly, no RELOAD: the refused INSERT asks for a re-read
on_all "CREATE TABLE t85_direct (k bigint, v text)"
out=$(until_ok "INSERT INTO t85_direct VALUES ($B1, 'later'), ($A1, 'later')")
is "$out" "INSERT 0 2" "a table created on the shards directly: an INSERT works after the re-read it asked for"
diag "refused $(cat "$SP_TMP/refusals") time(s) before the re-read"
is "$(misplaced t85_direct k)" 0 "and its rows are on their keys' shards"

# ---------------------------------------------------------------- DDL through shardpool
is "$(q "CREATE TABLE t85_new (v text, n int, k bigint PRIMARY KEY)")" "CREATE TABLE" "CREATE TABLE through shardpool"
is "$(on 0 "SELECT count(*) FROM pg_class WHERE relname = 't85_new'")$(on 1 "SELECT count(*) FROM pg_class WHERE relname = 't85_new'")" \
	11 "it was created on both shards"
out=$(until_ok "INSERT INTO t85_new VALUES ('x', 1, $A0), ('y', 2, $B0), ('z', 3, $B1) RETURNING k")
is "$(sorted "$out")" "$(sorted "INSERT 0 3 $A0,$B0,$B1")" "a table created through shardpool: INSERT without a list works after the refresh"
diag "refused $(cat "$SP_TMP/refusals") time(s) before the re-read"
is "$(misplaced t85_new k)" 0 "its rows are on their keys' shards"

is "$(q "INSERT INTO t85_alt VALUES (1, $A0, 'before')")" "INSERT 0 1" "t85_alt (a, k, v): key in column 2"
is "$(q "ALTER TABLE t85_alt DROP COLUMN a")" "ALTER TABLE" "ALTER TABLE DROP COLUMN (before the key) through shardpool"
# right after the DDL the order is forgotten: refused or routed by the new order, never the old one
out=$(q "INSERT INTO t85_alt VALUES ($B0, 'right after')")
like "$out" '^(INSERT 0 1|ERROR 0A000 INSERT without a column list)' "right after the ALTER: refused (order unknown) or routed by the new order"
out=$(until_ok "INSERT INTO t85_alt VALUES ($B1, 'after'), ($A1, 'after')")
is "$out" "INSERT 0 2" "after ALTER TABLE DROP COLUMN: the key is column 1 now"
is "$(misplaced t85_alt k)" 0 "every t85_alt row is on its key's shard"
is "$(q "ALTER TABLE t85_alt ADD COLUMN extra int")" "ALTER TABLE" "ALTER TABLE ADD COLUMN through shardpool"
k3=$(key_on 1 "$B0" "$B1" "$k1" "$k2")
out=$(until_ok "INSERT INTO t85_alt VALUES ($k3, 'added', 5) RETURNING extra")
is "$out" "INSERT 0 1 5" "after ADD COLUMN: three values, the new column filled"
is "$(where t85_alt "k = $k3")" "1:1" "and the row is on its key's shard"
is "$(q "DROP TABLE t85_alt")" "DROP TABLE" "DROP TABLE through shardpool"
n=$(reads)
wait_reads $((n + 1))
like "$(q "INSERT INTO t85_alt VALUES ($k3, 'gone')")" "^ERROR 0A000 INSERT without a column list into sharded table t85_alt: shardpool does not know" \
	"after DROP TABLE and the re-read: the order is forgotten"

done_testing
