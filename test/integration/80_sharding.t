#!/bin/bash
# 80_sharding.t - statements routed by shard key through shardpool (issue 3), checked
# against the shards themselves: every row is looked for on every shard's primary, and
# the shard it must be on is the remainder PostgreSQL's own hash partitioning gives it
# (satisfies_hash_partition on an empty PARTITION BY HASH parent with MODULUS N), never
# a copy of shardpool's hash.
#
# Runs on the shared 2-shard sandbox (everything) and the shared 4-shard sandbox
# (placement, splits, reads and writes by key). Covered: INSERT by key for bigint, text,
# uuid and a composite (bigint, text) key; multi-row INSERT split over shards with
# RETURNING; ON CONFLICT; UPDATE / DELETE by key, IN and ANY; the extended protocol with
# text and binary parameters; co-located joins, subqueries and CTEs pinned to a key;
# refusals (0A000) of key-moving and unkeyed writes, cross-shard joins and query
# strings; hints and SET [LOCAL] shardpool.*; replicated and unconfigured tables;
# range and list sharding; statements the parser rejects; bad hint values; reading
# one's own fan-out writes when replicas take reads.
#
# Tables are named t80_* so that tests sharing the sandbox do not meet.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"

# ---------------------------------------------------------------- helpers




# q SQL [DB]: one statement in a session of its own
q() { printf '%s\n' "$1" | sess "${2:-app}"; }

# state OUTPUT: the SQLSTATE of the first ERROR line of shardsql output, or OK
state() { awk '$1 == "ERROR" { print $2; found = 1; exit } END { if (!found) print "OK" }' <<<"$1"; }

# where TABLE COND: "shard:rows" for every shard holding rows that match COND
where() {
	local i n out=
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1 WHERE $2") || n="error"
		[ "$n" != 0 ] && out+="$i:$n "
	done
	echo "${out% }"
}

# total TABLE: rows of TABLE over all shards
total() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}

# misplaced TABLE PARENT COLS: rows, over all shards, that PostgreSQL's hash
# partitioning with MODULUS SB_SHARDS would put in another remainder than their shard
misplaced() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1 WHERE NOT satisfies_hash_partition('$2'::regclass, $SB_SHARDS, $i, $3)") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}

# shard_of PARENT VALUE...: the remainder PostgreSQL gives the key (on shard 0)
shard_of() {
	local parent=$1
	shift
	local args
	args=$(IFS=,; echo "$*")
	on 0 "SELECT r FROM generate_series(0, $SB_SHARDS - 1) AS r WHERE satisfies_hash_partition('$parent'::regclass, $SB_SHARDS, r, $args)"
}

# a bigint key on shard S (of those in 2000..3000, which no other step uses) other than the ones given
key_on() {
	local s=$1
	shift
	local not=0 k
	for k in "$@"; do not+=",$k"; done
	on 0 "SELECT k FROM generate_series(2000, 3000) AS k WHERE satisfies_hash_partition('t80_pl_b'::regclass, $SB_SHARDS, $s, k::bigint) AND k NOT IN ($not) LIMIT 1"
}

create_tables() {
	on_all "DROP TABLE IF EXISTS t80_users, t80_orders, t80_texts, t80_uuids, t80_comp, t80_nulls, t80_ref, t80_local, t80_rng, t80_lst, t80_pl_b, t80_pl_t, t80_pl_u, t80_pl_c CASCADE;
		DROP SCHEMA IF EXISTS t80s CASCADE;
		CREATE TABLE t80_users (user_id bigint PRIMARY KEY, name text, score int);
		CREATE TABLE t80_orders (order_id int, user_id bigint, total numeric, PRIMARY KEY (user_id, order_id));
		CREATE TABLE t80_texts (tkey text PRIMARY KEY, val int);
		CREATE TABLE t80_uuids (ukey uuid PRIMARY KEY, val int);
		CREATE TABLE t80_comp (tenant bigint, item text, val int, PRIMARY KEY (tenant, item));
		CREATE TABLE t80_nulls (k bigint, val int);
		CREATE TABLE t80_ref (code text PRIMARY KEY, name text);
		CREATE TABLE t80_local (id int, v text);
		CREATE TABLE t80_rng (k int PRIMARY KEY, v text);
		CREATE TABLE t80_lst (country text PRIMARY KEY, v int);
		CREATE SCHEMA t80s;
		CREATE TABLE t80s.items (user_id bigint, x int);
		CREATE TABLE t80_pl_b (k bigint) PARTITION BY HASH (k);
		CREATE TABLE t80_pl_t (k text) PARTITION BY HASH (k);
		CREATE TABLE t80_pl_u (k uuid) PARTITION BY HASH (k);
		CREATE TABLE t80_pl_c (a bigint, b text) PARTITION BY HASH (a, b);" ||
		bail_out "cannot create the t80 tables on the shards"
}

drop_tables() {
	on_all "DROP TABLE IF EXISTS t80_users, t80_orders, t80_texts, t80_uuids, t80_comp, t80_nulls, t80_ref, t80_local, t80_rng, t80_lst, t80_pl_b, t80_pl_t, t80_pl_u, t80_pl_c CASCADE; DROP SCHEMA IF EXISTS t80s CASCADE" 2>/dev/null
}

# write_config NAME: shardpool config for the current sandbox with the t80 tables
write_config() {
	local f=$SP_TMP/$1.ini i v
	sp_write_config "$f"
	# Rows one client writes are read back by other clients: no replica reads in "app".
	# default_shard = 1 so that "goes to the default shard" is not "goes to shard 0".
	sed -i '/^\[database app\]/a read_replicas = no\ndefault_shard = 1' "$f"
	cat >>"$f" <<-EOF

	[table app.t80_users]
	key = user_id
	type = bigint

	[table app.t80_orders]
	key = user_id
	type = bigint

	[table app.t80_texts]
	key = tkey
	type = text

	[table app.t80_uuids]
	key = ukey
	type = uuid

	[table app.t80_comp]
	key = tenant, item
	type = bigint, text

	[table app.t80_nulls]
	key = k
	type = bigint

	[table app.t80s.items]
	key = user_id
	type = bigint

	[table app.t80_ref]
	replicated = yes

	; the same shards with replica reads, for reading one's own writes
	[database t80rep]
	read_replicas = yes
	EOF
	for ((i = 0; i < SB_SHARDS; i++)); do
		v=SB_PRIMARY_PORT_$i
		printf '\n[shard t80rep.%d]\nprimary = host=127.0.0.1 port=%s dbname=app\n' "$i" "${!v}" >>"$f"
		v=SB_REPLICA_PORT_${i}_0
		[ -n "${!v:-}" ] && printf 'replica = host=127.0.0.1 port=%s dbname=app\n' "${!v}" >>"$f"
	done
	cat >>"$f" <<-EOF

	[table t80rep.t80_users]
	key = user_id
	type = bigint
	EOF
	[ "$SB_SHARDS" = 2 ] || return 0
	cat >>"$f" <<-EOF

	[database t80rng]
	sharding = range
	read_replicas = no

	[shard t80rng.0]
	primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_0 dbname=app
	range = ..100

	[shard t80rng.1]
	primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_1 dbname=app
	range = 100..200

	[table t80rng.t80_rng]
	key = k
	type = integer

	[database t80lst]
	sharding = list
	read_replicas = no

	[shard t80lst.0]
	primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_0 dbname=app
	list = fr
	list = de

	[shard t80lst.1]
	primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_1 dbname=app
	list = us
	list = ca

	[table t80lst.t80_lst]
	key = country
	type = text
	EOF
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

# ---------------------------------------------------------------- placement, any N

# Keys of every kind, each INSERTed on its own; every row must be on the remainder
# PostgreSQL gives its key, exactly once.
BIG_KEYS=(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
	-1 0 42 2147483647 2147483648 -2147483649 1000000007 9223372036854775807 -9223372036854775808)
TEXT_KEYS=(a b c alice bob '' 'Zürich' 'with space' "o''brien" 'x;y' "$(printf 'k%.0s' {1..300})" '日本' 'tab	in')

placement_suite() {
	local N=$SB_SHARDS k out exp i script

	# bigint
	script=
	for k in "${BIG_KEYS[@]}"; do
		script+="INSERT INTO t80_users (user_id, name, score) VALUES ($k, 'u$k', 0)"$'\n'
	done
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out")" "${#BIG_KEYS[@]}" "$N shards: ${#BIG_KEYS[@]} single-row INSERTs by bigint key succeed" || diag "$out"
	is "$(total t80_users)" "${#BIG_KEYS[@]}" "$N shards: each bigint row is stored exactly once"
	is "$(misplaced t80_users t80_pl_b user_id)" 0 "$N shards: every bigint row is on the shard PostgreSQL's hash partitioning gives its key"
	for k in 42 -9223372036854775808; do
		exp=$(shard_of t80_pl_b "'$k'::bigint")
		is "$(where t80_users "user_id = $k")" "$exp:1" "$N shards: key $k is on shard $exp and nowhere else"
	done

	# text
	script=
	for k in "${TEXT_KEYS[@]}"; do
		script+="INSERT INTO t80_texts (tkey, val) VALUES ('$k', 1)"$'\n'
	done
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out")" "${#TEXT_KEYS[@]}" "$N shards: INSERTs by text key (empty, non-ASCII, quotes, 300 bytes) succeed" || diag "$out"
	is "$(total t80_texts)" "${#TEXT_KEYS[@]}" "$N shards: each text row is stored exactly once"
	is "$(misplaced t80_texts t80_pl_t tkey)" 0 "$N shards: every text row is on PostgreSQL's hash remainder of its key"
	# client_encoding LATIN1: the UTF-8 bytes of 'é' are two Latin-1 characters to the
	# server, which stores (and hashes) their UTF-8 form; shardpool refuses rather than
	# hash bytes the server does not store. ASCII keys still route.
	out=$(sess <<<"SET client_encoding = 'LATIN1'
INSERT INTO t80_texts (tkey, val) VALUES ('enc-é', 1)
SELECT val FROM t80_texts WHERE tkey = 'enc-é'
INSERT INTO t80_texts (tkey, val) VALUES ('enc-ascii', 1)
RESET client_encoding
INSERT INTO t80_texts (tkey, val) VALUES ('enc-é', 1)")
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "SET ERROR 0A000 ERROR 0A000 INSERT 0 RESET INSERT 0 " \
		"$N shards: client_encoding LATIN1: a non-ASCII text key is refused, an ASCII one routes; after RESET both route" || diag "$out"
	is "$(misplaced t80_texts t80_pl_t tkey)" 0 "$N shards: ... and no row is misplaced"
	# the same when the encoding comes from the startup packet (PGCLIENTENCODING) or
	# from set_config(), which the router learns from the server's ParameterStatus
	out=$(PGCLIENTENCODING=LATIN1 sess <<<"INSERT INTO t80_texts (tkey, val) VALUES ('enc-é2', 1)
INSERT INTO t80_texts (tkey, val) VALUES ('enc-ascii2', 1)")
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "ERROR 0A000 INSERT 0 " \
		"$N shards: client_encoding LATIN1 from the startup packet: a non-ASCII text key is refused" || diag "$out"
	out=$(sess <<<"SELECT set_config('client_encoding', 'LATIN1', false)
INSERT INTO t80_texts (tkey, val) VALUES ('enc-é3', 1)
SELECT set_config('client_encoding', 'UTF8', false)
INSERT INTO t80_texts (tkey, val) VALUES ('enc-é3', 1)")
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "SELECT 1 ERROR 0A000 SELECT 1 INSERT 0 " \
		"$N shards: client_encoding set by set_config(): refused, and routed again after UTF8" || diag "$out"
	is "$(misplaced t80_texts t80_pl_t tkey)" 0 "$N shards: ... and no row is misplaced"
	on_all "DELETE FROM t80_texts WHERE tkey LIKE 'enc-%'"

	# Bind parameters declared double precision or character(n) (JDBC setDouble, a
	# driver's char(n)): the server compares and converts them as their own type
	script="INSERT INTO t80_users (user_id, name) VALUES (9007199254740992, 'f'), (9007199254740993, 'f')"$'\n'
	script+="\\p SELECT count(*) FROM t80_users WHERE user_id = \$1 ;; t701:9007199254740993"$'\n'
	script+="\\p SELECT count(*) FROM t80_users WHERE user_id = ANY(\$1) ;; t1022:{9007199254740993}"$'\n'
	script+="\\p INSERT INTO t80_users (user_id, name) VALUES (\$1, 'f') ;; t701:2.5"$'\n'
	script+="DELETE FROM t80_users WHERE user_id IN (9007199254740992, 9007199254740993)"$'\n'
	out=$(sess <<<"$script")
	is "$(cut -d' ' -f1-3 <<<"$out" | tr '\n' ' ')" "INSERT 0 2 SELECT 1 2 SELECT 1 2 ERROR 0A000 shardpool DELETE 2 " \
		"$N shards: a double precision parameter equal to two bigints finds both; one that would round is refused" || diag "$out"
	script=
	for i in 0 1 2 3 4 5 6 7 8 9; do script+="INSERT INTO t80_texts (tkey, val) VALUES ('bp-$i', 1)"$'\n'; done
	for i in 0 1 2 3 4 5 6 7 8 9; do script+="\\p SELECT count(*) FROM t80_texts WHERE tkey = \$1 ;; t1042:bp-$i  "$'\n'; done
	out=$(sess <<<"$script")
	is "$(grep -c '^SELECT 1 1$' <<<"$out")" 10 "$N shards: a character(n) parameter 'k  ' finds key 'k' (its trailing spaces dropped)" || diag "$out"
	on_all "DELETE FROM t80_texts WHERE tkey LIKE 'bp-%'"

	# EXPLAIN ANALYZE runs the statement: on several shards each would run all of it
	local k2=970002
	while [ "$(shard_of t80_pl_b "'$k2'::bigint")" = "$(shard_of t80_pl_b "'970001'::bigint")" ]; do k2=$((k2 + 1)); done
	out=$(sess <<<"EXPLAIN ANALYZE INSERT INTO t80_users (user_id, name) VALUES (970001, 'x'), ($k2, 'x')")
	is "$(state "$out") [$(where t80_users "user_id BETWEEN 970001 AND $k2")]" "0A000 []" \
		"$N shards: EXPLAIN ANALYZE of an INSERT whose rows belong to two shards is refused, nothing stored" || diag "$out"
	on_all "DELETE FROM t80_users WHERE user_id BETWEEN 970001 AND $k2"

	# uuid, one written in upper case and one without hyphens: the value is hashed, not the text
	local uuids
	mapfile -t uuids < <(on 0 "SELECT md5(g::text)::uuid FROM generate_series(1, 16) AS g")
	script=
	for ((i = 0; i < 14; i++)); do
		script+="INSERT INTO t80_uuids (ukey, val) VALUES ('${uuids[i]}', $i)"$'\n'
	done
	script+="INSERT INTO t80_uuids (ukey, val) VALUES ('${uuids[14]^^}', 14)"$'\n'
	script+="INSERT INTO t80_uuids (ukey, val) VALUES ('${uuids[15]//-/}', 15)"$'\n'
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out")" 16 "$N shards: INSERTs by uuid key succeed" || diag "$out"
	is "$(total t80_uuids)" 16 "$N shards: each uuid row is stored exactly once"
	is "$(misplaced t80_uuids t80_pl_u ukey)" 0 "$N shards: every uuid row (also upper case, no hyphens) is on PostgreSQL's hash remainder"

	# composite (bigint, text)
	script=
	for k in 1 2 3 4 5; do
		for i in a b c; do
			script+="INSERT INTO t80_comp (tenant, item, val) VALUES ($k, '$i', 0)"$'\n'
		done
	done
	# key columns in another order than the table's and the key's
	script+="INSERT INTO t80_comp (item, val, tenant) VALUES ('z', 0, 9)"$'\n'
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out")" 16 "$N shards: INSERTs by composite (bigint, text) key succeed" || diag "$out"
	is "$(total t80_comp)" 16 "$N shards: each composite-key row is stored exactly once"
	is "$(misplaced t80_comp t80_pl_c 'tenant, item')" 0 "$N shards: every composite-key row is on PostgreSQL's hash remainder of (tenant, item)"

	# a NULL key: PostgreSQL puts it in remainder 0 (its hash is skipped); so must shardpool
	out=$(q "INSERT INTO t80_nulls (k, val) VALUES (NULL, 1)")
	is "$out" "INSERT 0 1" "$N shards: INSERT with a NULL hash key is accepted"
	exp=$(shard_of t80_pl_b "NULL::bigint")
	is "$(where t80_nulls "k IS NULL")" "$exp:1" "$N shards: the NULL-key row is on remainder $exp, as in PostgreSQL"

	# multi-row INSERT spanning shards: split, one tag with the total, all RETURNING rows
	out=$(q "INSERT INTO t80_users (user_id, name, score) VALUES (101, 'u101', 1), (102, 'u102', 1), (103, 'u103', 1), (104, 'u104', 1), (105, 'u105', 1), (106, 'u106', 1), (107, 'u107', 1), (108, 'u108', 1), (109, 'u109', 1), (110, 'u110', 1), (111, 'u111', 1), (112, 'u112', 1) RETURNING user_id, name")
	is "$(wc -l <<<"$out")" 1 "$N shards: a split INSERT gives the client one result" || diag "$out"
	is "$(cut -d' ' -f1-3 <<<"$out")" "INSERT 0 12" "$N shards: the split INSERT's tag counts all 12 rows"
	is "$(tr ',' '\n' <<<"${out#INSERT 0 12 }" | sort -n | tr '\n' ',')" \
		"$(for k in {101..112}; do printf '%s|u%s,' "$k" "$k"; done)" "$N shards: the split INSERT returns every row once"
	is "$(tr ',' '\n' <<<"${out#INSERT 0 12 }" | tr '\n' ',')" \
		"$(for k in {101..112}; do printf '%s|u%s,' "$k" "$k"; done)" "$N shards: ... in the order of its VALUES rows (as PostgreSQL returns them)"
	is "$(where t80_users "user_id BETWEEN 101 AND 112" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }')" 12 "$N shards: the split INSERT stored 12 rows"
	is "$(misplaced t80_users t80_pl_b user_id)" 0 "$N shards: every row of the split INSERT is on its key's shard"
	out=$(q "INSERT INTO t80_comp (tenant, item, val) VALUES (20, 'a', 1), (21, 'b', 1), (22, 'c', 1), (23, 'd', 1), (24, 'e', 1), (25, 'f', 1)")
	is "$out" "INSERT 0 6" "$N shards: a split INSERT with a composite key"
	is "$(misplaced t80_comp t80_pl_c 'tenant, item')" 0 "$N shards: split composite-key rows are on their shards"
	out=$(q "INSERT INTO t80_texts (tkey, val) VALUES ('m1', 2), ('m2', 2), ('m3', 2), ('m4', 2), ('m5', 2), ('m6', 2) RETURNING tkey")
	is "$(tr ',' '\n' <<<"${out#INSERT 0 6 }" | sort | tr '\n' ' ')" "m1 m2 m3 m4 m5 m6 " "$N shards: a split INSERT by text key returns every row"
	is "$(misplaced t80_texts t80_pl_t tkey)" 0 "$N shards: split text-key rows are on their shards"

	# ON CONFLICT: the conflict is found on the key's shard
	out=$(q "INSERT INTO t80_users (user_id, name) VALUES (5, 'c5'), (6, 'c6'), (200, 'c200') ON CONFLICT (user_id) DO UPDATE SET name = excluded.name")
	is "$out" "INSERT 0 3" "$N shards: multi-row INSERT ... ON CONFLICT DO UPDATE over shards"
	is "$(for k in 5 6 200; do on "$(shard_of t80_pl_b "$k::bigint")" "SELECT name FROM t80_users WHERE user_id = $k"; done | tr '\n' ' ')" "c5 c6 c200 " \
		"$N shards: ON CONFLICT updated the existing rows and inserted the new one on their shards"
	is "$(total t80_users)" $((${#BIG_KEYS[@]} + 13)) "$N shards: ON CONFLICT added no duplicate"
	is "$(q "INSERT INTO t80_users (user_id, name) VALUES (7, 'dup') ON CONFLICT DO NOTHING")" "INSERT 0 0" \
		"$N shards: ON CONFLICT DO NOTHING on the key's shard inserts nothing"

	# reads by key: every key of BIG_KEYS answers its own name
	script=
	for k in "${BIG_KEYS[@]}"; do
		script+="SELECT name FROM t80_users WHERE user_id = $k"$'\n'
	done
	out=$(sess <<<"$script")
	exp=$(for k in "${BIG_KEYS[@]}"; do
		case $k in 5 | 6) echo "SELECT 1 c$k" ;; *) echo "SELECT 1 u$k" ;; esac
	done)
	is "$out" "$exp" "$N shards: SELECT ... WHERE key = literal finds each row"
	out=$(q "SELECT val FROM t80_texts WHERE tkey = 'Zürich'")$'\n'$(q "SELECT val FROM t80_uuids WHERE ukey = '${uuids[3]}'")$'\n'$(q "SELECT val FROM t80_comp WHERE tenant = 3 AND item = 'b'")$'\n'$(q "SELECT val FROM t80_comp WHERE (tenant, item) = (9, 'z')")
	is "$out" $'SELECT 1 1\nSELECT 1 3\nSELECT 1 0\nSELECT 1 0' "$N shards: reads by text, uuid and composite key"
	is "$(q "SELECT user_id FROM t80_users WHERE user_id IN (1, 2, 3, 4, 5, 6, 7, 8) ORDER BY user_id")" "SELECT 8 1,2,3,4,5,6,7,8" \
		"$N shards: key IN (...) over shards, merged in order"
	is "$(q "SELECT count(*) FROM t80_users WHERE user_id = ANY(ARRAY[9, 10, 11, 12, 13])")" "SELECT 1 5" \
		"$N shards: key = ANY(ARRAY[...]) counted over shards"
	is "$(q "SELECT tkey FROM t80_texts WHERE tkey IN ('a', 'b', 'c', 'alice', 'bob') ORDER BY tkey")" "SELECT 5 a,alice,b,bob,c" \
		"$N shards: text key IN (...)"

	# writes by key
	out=$(sess <<-'EOF'
	UPDATE t80_users SET score = 77 WHERE user_id = 9
	DELETE FROM t80_users WHERE user_id = 10
	UPDATE t80_users SET score = 88 WHERE user_id IN (11, 12, 13, 14)
	DELETE FROM t80_users WHERE user_id = ANY(ARRAY[15, 16])
	UPDATE t80_texts SET val = 5 WHERE tkey = 'alice'
	DELETE FROM t80_comp WHERE tenant = 2 AND item = 'b'
	UPDATE t80_users SET score = 99 WHERE user_id = 424242
	EOF
	)
	is "$out" $'UPDATE 1\nDELETE 1\nUPDATE 4\nDELETE 2\nUPDATE 1\nDELETE 1\nUPDATE 0' "$N shards: UPDATE / DELETE by key, IN and ANY report the rows changed"
	is "$(where t80_users "user_id = 9 AND score = 77")" "$(shard_of t80_pl_b 9::bigint):1" "$N shards: UPDATE by key changed the row on its shard"
	is "$(where t80_users "user_id IN (10, 15, 16)")" "" "$N shards: DELETE by key removed the rows from every shard"
	is "$(where t80_users "score = 88" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }')" 4 "$N shards: UPDATE ... IN changed 4 rows over the shards"
	is "$(where t80_comp "tenant = 2 AND item = 'b'")" "" "$N shards: DELETE by composite key"

	# the extended protocol: routed at Bind by the parameter values, text and binary
	script=
	for k in 1 2 3 4 17 18 19 20; do
		script+="\\p SELECT name FROM t80_users WHERE user_id = \$1 ;; $k"$'\n'
	done
	for k in 21 22 23 24; do
		script+="\\p SELECT name FROM t80_users WHERE user_id = \$1 ;; b8:$k"$'\n'
	done
	script+="\\p SELECT name FROM t80_users WHERE user_id = \$1::bigint ;; 25"$'\n'
	script+="\\p SELECT val FROM t80_texts WHERE tkey = \$1 ;; alice"$'\n'
	script+="\\p SELECT val FROM t80_uuids WHERE ukey = \$1 ;; ${uuids[5]}"$'\n'
	script+="\\p SELECT val FROM t80_comp WHERE tenant = \$1 AND item = \$2 ;; 4 ;; c"$'\n'
	out=$(sess <<<"$script")
	exp=$(for k in 1 2 3 4 17 18 19 20 21 22 23 24 25; do echo "SELECT 1 u$k"; done; echo "SELECT 1 5"; echo "SELECT 1 5"; echo "SELECT 1 0")
	is "$out" "$exp" "$N shards: extended protocol SELECT ... WHERE key = \$1 (text, binary int8, cast, text, uuid, composite)"
	script=
	for k in {300..315}; do
		script+="\\p INSERT INTO t80_users (user_id, name, score) VALUES (\$1, \$2, \$3) ;; $k ;; p$k ;; 0"$'\n'
	done
	for k in {316..319}; do
		script+="\\p INSERT INTO t80_users (user_id, name, score) VALUES (\$1, \$2, 0) ;; b8:$k ;; p$k"$'\n'
	done
	script+="\\p UPDATE t80_users SET score = \$2 WHERE user_id = \$1 ;; 301 ;; 5"$'\n'
	script+="\\p DELETE FROM t80_users WHERE user_id = \$1 ;; b8:302"$'\n'
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out") $(tail -n 2 <<<"$out" | tr '\n' ' ')" "20 UPDATE 1 DELETE 1 " "$N shards: extended protocol INSERT / UPDATE / DELETE by parameter"
	is "$(where t80_users "user_id BETWEEN 300 AND 319" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }')" 19 "$N shards: rows inserted with parameters are stored once"
	# a binary int8 (psycopg's Python int) cast to text for a text key: routed by the
	# text the cast makes, not by the int8's bytes
	script=
	for k in 4711 4712 4713 4714 4715 4716; do
		script+="\\p INSERT INTO t80_texts (tkey, val) VALUES (\$1::text, 9) ;; b8:$k"$'\n'
	done
	script+="\\p SELECT val FROM t80_texts WHERE tkey = \$1::text ;; b8:4713"$'\n'
	out=$(sess <<<"$script")
	is "$(grep -c '^INSERT 0 1$' <<<"$out") $(tail -n 1 <<<"$out")" "6 SELECT 1 9" "$N shards: a binary int8 cast to text as a text key: INSERT and SELECT by it" || diag "$out"
	is "$(misplaced t80_texts t80_pl_t tkey)" 0 "$N shards: ... and those rows are on PostgreSQL's hash remainder of the text"
	# a multi-row INSERT with parameters whose rows need several shards: split at Bind,
	# each shard's Bind carrying only its rows' values (text, binary int8, a literal)
	script="\\p INSERT INTO t80_users (user_id, name, score) VALUES (\$1, \$2, 0), (\$3, \$4, 0), (\$5, 'lit', \$6), (\$7, \$8, 0), (\$9, \$10, 0), (\$11, \$12, 0) RETURNING user_id, name"
	script+=" ;; 330 ;; q330 ;; b8:331 ;; q331 ;; 332 ;; 7 ;; b8:333 ;; q333 ;; 334 ;; q334 ;; 335 ;; q335"$'\n'
	out=$(sess <<<"$script")
	is "$(cut -d' ' -f1-3 <<<"$out") $(cut -d' ' -f4- <<<"$out" | tr ',' '\n' | sort | tr '\n' ' ')" \
		"INSERT 0 6 330|q330 331|q331 332|lit 333|q333 334|q334 335|q335 " "$N shards: extended protocol: a multi-row INSERT over shards is split at Bind, RETURNING every row" || diag "$out"
	is "$(cut -d' ' -f4- <<<"$out" | tr ',' ' ')" "330|q330 331|q331 332|lit 333|q333 334|q334 335|q335" \
		"$N shards: extended protocol: ... in the order of its VALUES rows"
	is "$(where t80_users "user_id BETWEEN 330 AND 335" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }') $(where t80_users "user_id = 332 AND score = 7")" \
		"6 $(shard_of t80_pl_b 332::bigint):1" "$N shards: the split rows are stored once, with their own values"
	# more than 256 parameters (90 rows of 3): every Bind is routed however many values
	# it carries (one that is not would run on the default shard)
	local vals= params= k
	for ((k = 0; k < 90; k++)); do
		vals+="${vals:+, }(\$$((3 * k + 1)), \$$((3 * k + 2)), \$$((3 * k + 3)))"
		params+=" ;; $((400 + k)) ;; m$((400 + k)) ;; 1"
	done
	out=$(sess <<<"\\p INSERT INTO t80_users (user_id, name, score) VALUES $vals$params")
	is "$out" "INSERT 0 90" "$N shards: extended protocol: a 90-row INSERT with 270 parameters is split by shard" || diag "$(head -c 300 <<<"$out")"
	is "$(where t80_users "user_id BETWEEN 400 AND 489" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }') $(misplaced t80_users t80_pl_b user_id)" \
		"90 0" "$N shards: its rows are stored once, each on its key's shard"

	# named prepared statements: prepared once, executed with keys of every shard (in
	# transaction pooling each execution may meet another server connection)
	script="\\prepare t80sel SELECT name FROM t80_users WHERE user_id = \$1"$'\n'
	script+="\\prepare t80upd UPDATE t80_users SET score = \$2 WHERE user_id = \$1"$'\n'
	script+="\\prepare t80two SELECT user_id FROM t80_users WHERE name = \$1 AND user_id = \$2"$'\n'
	exp=$'OK\nOK\nOK'
	for k in 1 2 3 4 17 18 19 20 1 2; do
		script+="\\execute t80sel ;; $k"$'\n'
		exp+=$'\n'"SELECT 1 u$k"
	done
	for k in 21 22 23 24; do
		script+="\\execute t80upd ;; b8:$k ;; 66"$'\n'"\\execute t80two ;; u$k ;; $k"$'\n'
		exp+=$'\n'"UPDATE 1"$'\n'"SELECT 1 $k"
	done
	out=$(sess <<<"$script")
	is "$out" "$exp" "$N shards: named prepared statements executed with keys on every shard (text and binary, key as the 2nd parameter)"
	is "$(where t80_users "score = 66" | tr ' ' '\n' | awk -F: '{ s += $2 } END { print s }')" 4 "$N shards: the prepared UPDATEs changed 4 rows"
	is "$(misplaced t80_users t80_pl_b user_id)" 0 "$N shards: no row moved"
	is "$(misplaced t80_users t80_pl_b user_id)" 0 "$N shards: rows inserted with text and binary parameters are on their key's shard"
}

# ---------------------------------------------------------------- 2 shards: everything else

routing_suite() {
	local out k0 k1 k0b k1b n0 n1 n42 s42

	k0=$(key_on 0) k1=$(key_on 1) k0b=$(key_on 0 "$k0") k1b=$(key_on 1 "$k1")
	diag "keys on shard 0: $k0 $k0b, on shard 1: $k1 $k1b"
	# users k0, k0b, k1 with orders; the users of BIG_KEYS are there already
	out=$(sess <<-EOF
	INSERT INTO t80_users (user_id, name, score) VALUES ($k0, 'u$k0', 0), ($k1, 'u$k1', 0) ON CONFLICT (user_id) DO UPDATE SET name = excluded.name
	DELETE FROM t80_users WHERE user_id = $k0b
	INSERT INTO t80_orders (order_id, user_id, total) VALUES (1, $k0, 10.5), (2, $k0, 4), (3, $k1, 7), (4, $k1, 1), (5, $k1, 2)
	INSERT INTO t80s.items (user_id, x) VALUES ($k0, 1), ($k1, 2), ($k1, 3)
	EOF
	)
	is "$(tail -n 2 <<<"$out" | tr '\n' ' ')" "INSERT 0 5 INSERT 0 3 " "set-up rows for joins" || diag "$out"
	is "$(where t80_orders "user_id = $k1")" "1:3" "orders of a shard-1 user are on shard 1"
	is "$(where t80s.items "user_id = $k1")" "1:2" "[table app.t80s.items] (schema-qualified section): rows on their key's shard"

	# ways of writing a key condition
	out=$(sess <<-EOF
	SELECT name FROM t80_users WHERE user_id = '$k1'
	SELECT name FROM t80_users WHERE user_id = $k1::bigint
	SELECT name FROM t80_users WHERE user_id = CAST('$k1' AS bigint)
	SELECT name FROM t80_users WHERE $k1 = user_id
	SELECT name FROM t80_users u WHERE u.user_id = $k1 AND u.score >= 0
	SELECT name FROM public.t80_users WHERE public.t80_users.user_id = $k1
	SELECT name FROM t80_users WHERE user_id = $k1 FOR UPDATE
	SELECT user_id FROM t80_users WHERE user_id = $k0 OR user_id = $k1 ORDER BY user_id
	SELECT user_id FROM t80_users WHERE user_id IN ($k0, NULL) ORDER BY user_id
	SELECT val FROM t80_uuids WHERE ukey = '$(on 0 "SELECT upper(md5('4')::uuid::text)")'
	SELECT val FROM t80_texts WHERE tkey = 'alice'::varchar
	/* role: replica */ SELECT name FROM t80_users WHERE user_id = $k1
	EOF
	)
	is "$out" "SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 2 $k0,$k1"$'\n'"SELECT 1 $k0"$'\n'"SELECT 1 3"$'\n'"SELECT 1 5"$'\n'"SELECT 1 u$k1" \
		"key conditions: quoted, cast, reversed, aliased, schema-qualified, FOR UPDATE, OR, IN with NULL, upper-case uuid, varchar cast, role hint"
	out=$(SP_DB=app sp_psql -c $'-- shard: 1\nSELECT count(*) FROM t80_users' 2>&1)
	is "$out" "$(on 1 "SELECT count(*) FROM t80_users")" "a -- shard: 1 line comment routes like the /* */ hint"

	# DDL naming a sharded table runs on every shard, answered once
	out=$(sess <<-'EOF'
	CREATE INDEX t80_users_name_idx ON t80_users (name)
	ALTER TABLE t80_users ADD COLUMN extra int
	TRUNCATE t80_nulls
	EOF
	)
	is "$out" $'CREATE INDEX\nALTER TABLE\nTRUNCATE TABLE' "DDL and TRUNCATE of a sharded table answered once"
	is "$(on 0 "SELECT count(*) FROM pg_indexes WHERE indexname = 't80_users_name_idx'")$(on 1 "SELECT count(*) FROM pg_indexes WHERE indexname = 't80_users_name_idx'")" 11 \
		"CREATE INDEX ran on every shard"
	is "$(on 0 "SELECT count(*) FROM information_schema.columns WHERE table_name = 't80_users' AND column_name = 'extra'")$(on 1 "SELECT count(*) FROM information_schema.columns WHERE table_name = 't80_users' AND column_name = 'extra'")" 11 \
		"ALTER TABLE ran on every shard"
	is "$(total t80_nulls)" 0 "TRUNCATE ran on every shard"

	# joins of co-located tables on the key
	is "$(q "SELECT u.name, o.order_id FROM t80_users u JOIN t80_orders o ON o.user_id = u.user_id WHERE u.user_id = $k1 ORDER BY o.order_id")" \
		"SELECT 3 u$k1|3,u$k1|4,u$k1|5" "join on the key, pinned by the users side"
	is "$(q "SELECT u.name, sum(o.total) FROM public.t80_users AS u JOIN public.t80_orders AS o USING (user_id) WHERE o.user_id = $k0 GROUP BY u.name")" \
		"SELECT 1 u$k0|14.5" "schema-qualified join USING (key), pinned by the orders side"
	is "$(q "SELECT u.name, count(*) FROM t80_users u, t80_orders o WHERE u.user_id = o.user_id AND u.user_id = $k1 GROUP BY u.name")" \
		"SELECT 1 u$k1|3" "join written in WHERE, pinned"
	is "$(q "SELECT u.name, i.x FROM t80_users u JOIN t80s.items i ON i.user_id = u.user_id WHERE u.user_id = $k0")" \
		"SELECT 1 u$k0|1" "join with a table in another schema"
	is "$(q "SELECT u.user_id, o.order_id FROM t80_users u JOIN t80_orders o ON o.user_id = u.user_id WHERE u.user_id IN ($k0, $k1) ORDER BY 1, 2")" \
		"SELECT 5 $k0|1,$k0|2,$k1|3,$k1|4,$k1|5" "join on the key pinned to keys on both shards: merged"
	out=$(q "SELECT u.name FROM t80_users u JOIN t80_orders o ON o.user_id = u.user_id WHERE u.user_id = $k0 AND o.user_id = $k1")
	is "$(state "$out")" 0A000 "join of tables pinned to keys on different shards is refused" || diag "$out"
	# tables joined on their keys are co-located: without a key condition the join runs
	# on every shard, and gives what the shards hold together
	out=$(q "SELECT count(*), sum(o.total) FROM t80_users u JOIN t80_orders o ON o.user_id = u.user_id")
	local want_n=0 want_sum=0 row i
	for ((i = 0; i < SB_SHARDS; i++)); do
		row=$(on "$i" "SELECT count(*), coalesce(sum(o.total), 0) FROM t80_users u JOIN t80_orders o ON o.user_id = u.user_id")
		want_n=$((want_n + ${row%%|*}))
		want_sum=$(awk -v a="$want_sum" -v b="${row#*|}" 'BEGIN { print a + b }')
	done
	is "$(sed 's/^SELECT [0-9]* //' <<<"$out" | awk -F'|' '{ printf "%s|%g", $1, $2 }')" \
		"$(awk -v n="$want_n" -v s="$want_sum" 'BEGIN { printf "%s|%g", n, s }')" \
		"$SB_SHARDS shards: unpinned join of two sharded tables on their keys: every shard's rows, merged" || diag "$out"
	out=$(q "SELECT u.name, o.order_id FROM t80_users u JOIN t80_orders o ON o.order_id = u.score")
	is "$(state "$out")" 0A000 "unpinned join of two sharded tables off their keys is refused" || diag "$out"
	out=$(q "SELECT u.name FROM t80_users u JOIN t80_orders o ON o.order_id = u.score WHERE u.user_id = $k0 AND o.user_id = $k1")
	is "$(state "$out")" 0A000 "join of rows pinned on two shards, not on the key, is refused" || diag "$out"

	# subqueries and CTEs pinned to one key
	out=$(sess <<-EOF
	WITH x AS (SELECT name FROM t80_users WHERE user_id = $k1) SELECT name FROM x
	SELECT s.name FROM (SELECT name, user_id FROM t80_users WHERE user_id = $k1) AS s
	SELECT name FROM t80_users WHERE user_id = $k1 AND EXISTS (SELECT 1 FROM t80_orders o WHERE o.user_id = $k1 AND o.total > 5)
	SELECT (SELECT count(*) FROM t80_orders WHERE user_id = $k1) AS n
	SELECT count(*) FROM t80_orders WHERE user_id = $k1 AND order_id IN (SELECT order_id FROM t80_orders WHERE user_id = $k1 AND total < 5)
	WITH d AS (UPDATE t80_orders SET total = total + 1 WHERE user_id = $k1 RETURNING total) SELECT sum(total) FROM d
	EOF
	)
	is "$out" "SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 u$k1"$'\n'"SELECT 1 3"$'\n'"SELECT 1 2"$'\n'"SELECT 1 13" \
		"CTE, subquery in FROM, EXISTS, scalar subquery, IN (subquery) and a data-modifying CTE pinned to one key"
	is "$(on 1 "SELECT sum(total) FROM t80_orders WHERE user_id = $k1")" 13 "the data-modifying CTE ran once, on the key's shard"

	# UPDATE that moves a key
	out=$(q "UPDATE t80_users SET user_id = $k1b WHERE user_id = $k0")
	is "$(state "$out")" 0A000 "UPDATE setting the key to a value on another shard is refused" || diag "$out"
	like "$out" "shard 0 to shard 1" "the refusal names both shards"
	is "$(where t80_users "user_id = $k0")" "0:1" "the refused UPDATE left the row where it was"
	out=$(q "UPDATE t80_users SET user_id = $k0b WHERE user_id = $k0")
	is "$out" "UPDATE 1" "UPDATE setting the key to a value on the same shard runs"
	is "$(where t80_users "user_id = $k0b")" "0:1" "the row got its new key on the same shard"
	q "UPDATE t80_users SET user_id = $k0 WHERE user_id = $k0b" >/dev/null
	out=$(q "UPDATE t80_users SET user_id = user_id + 1 WHERE user_id = $k0")
	is "$(state "$out")" 0A000 "UPDATE setting the key to an expression is refused" || diag "$out"

	# unkeyed writes
	out=$(q "UPDATE t80_users SET score = 0")
	is "$(state "$out")" 0A000 "UPDATE without a key condition is refused"
	like "$out" "t80_users" "the refusal names the table"
	out=$(q "DELETE FROM t80_orders WHERE total > 1")
	is "$(state "$out")" 0A000 "DELETE without a key condition is refused"
	like "$out" "t80_orders" "the refusal names the table"
	out=$(q "DELETE FROM t80_users WHERE user_id > 5")
	is "$(state "$out")" 0A000 "DELETE with a range on the key (no pin) is refused"
	out=$(q "UPDATE t80_users SET score = 1 WHERE NOT (user_id = 5)")
	is "$(state "$out")" 0A000 "UPDATE with NOT (key = v) is refused"
	is "$(total t80_orders)" 5 "refused writes changed nothing"
	out=$(q "INSERT INTO t80_users (name) VALUES ('nokey')")
	is "$(state "$out")" 0A000 "INSERT without the key column is refused"
	like "$out" "user_id" "the refusal names the key column"
	out=$(q "INSERT INTO t80_users (user_id, name) VALUES (DEFAULT, 'x')")
	is "$(state "$out")" 0A000 "INSERT with DEFAULT as key is refused"
	out=$(q "INSERT INTO t80_users (user_id, name) VALUES ('notanumber', 'x')")
	is "$(state "$out")" 22P02 "INSERT with a key that is not a bigint: 22P02, as PostgreSQL"
	out=$(q "SELECT name FROM t80_users WHERE user_id = 99999999999999999999")
	like "$(state "$out")" "^(22003|OK)$" "a key literal out of bigint range does not crash the router"

	# query strings of several statements
	out=$(q "INSERT INTO t80_users (user_id, name) VALUES ($k0b, 'a'); INSERT INTO t80_users (user_id, name) VALUES ($k1b, 'b')")
	is "$(state "$out")" 0A000 "a query string whose statements need different shards is refused" || diag "$out"
	is "$(where t80_users "user_id = $k0b")" "" "... and none of its statements ran"
	out=$(q "SELECT 1; SELECT name FROM t80_users WHERE user_id = $k1")
	is "$out" $'SELECT 1 1\nSELECT 1 u'"$k1" "a query string of an unkeyed and a keyed statement runs on the key's shard"

	# hints
	n0=$(on 0 "SELECT count(*) FROM t80_users") n1=$(on 1 "SELECT count(*) FROM t80_users")
	s42=$(shard_of t80_pl_b 42::bigint)
	n42=$(on "$s42" "SELECT count(*) FROM t80_users")
	out=$(sess <<-EOF
	/* shard: 1 */ SELECT count(*) FROM t80_users
	/* shard: 0 */ SELECT count(*) FROM t80_users
	/* shard_key: 42 */ SELECT count(*) FROM t80_users
	/* SHARD = 1 */ SELECT count(*) FROM t80_users
	/* shard: 1 */ SELECT name FROM t80_users WHERE user_id = $k0
	/* shard: 0, role: primary */ SELECT count(*) FROM t80_users
	/* app: reports, shard: 1 */ SELECT count(*) FROM t80_users
	/* unknown: 5 */ SELECT 1
	EOF
	)
	is "$out" "SELECT 1 $n1"$'\n'"SELECT 1 $n0"$'\n'"SELECT 1 $n42"$'\n'"SELECT 1 $n1"$'\n'"SELECT 0 (none)"$'\n'"SELECT 1 $n0"$'\n'"SELECT 1 $n1"$'\n'"SELECT 1 1" \
		"hints: shard, shard_key, case, a hint winning over the statement's key, several items, unknown keys ignored"
	out=$(q "/* shard: 1 */ UPDATE t80_users SET score = 3")
	is "$out" "UPDATE $n1" "an unkeyed UPDATE with a shard hint runs on that shard only"
	is "$(where t80_users "score = 3")" "1:$n1" "... and changed only that shard's rows"
	out=$(q "/* shard_key: $k0 */ DELETE FROM t80_orders WHERE total > 100")
	is "$out" "DELETE 0" "an unkeyed DELETE with a shard_key hint runs"

	# bad hint values: 22023, and the connection goes on
	out=$(sess <<-'EOF'
	/* shard: 99 */ SELECT 1
	/* shard: -1 */ SELECT 1
	/* shard: abc */ SELECT 1
	/* shard: 1.5 */ SELECT 1
	/* shard: */ SELECT 1
	/* role: leader */ SELECT 1
	/* shard: 2 */ SELECT 1
	SELECT 2
	EOF
	)
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "ERROR 22023 ERROR 22023 ERROR 22023 ERROR 22023 ERROR 22023 ERROR 22023 ERROR 22023 SELECT 1 " \
		"bad hint values (too big, negative, not a number, fraction, empty, unknown role, shard 2 of 2) are refused with 22023" || diag "$out"
	out=$(q "/* shard_key: abc */ SELECT count(*) FROM t80_users")
	like "$(state "$out")" "^(22023|22P02)$" "a shard_key hint that is not a bigint is refused" || diag "$out"

	# SET shardpool.*
	out=$(sess <<-EOF
	SET shardpool.shard = 1
	SELECT count(*) FROM t80_users
	SELECT name FROM t80_users WHERE user_id = $k0
	UPDATE t80_users SET score = 4
	RESET shardpool.shard
	SELECT count(*) FROM t80_users
	SET shardpool.shard_key = '42'
	SELECT count(*) FROM t80_users
	RESET ALL
	SELECT count(*) FROM t80_users
	EOF
	)
	is "$out" "SET"$'\n'"SELECT 1 $n1"$'\n'"SELECT 1 u$k0"$'\n'"UPDATE $n1"$'\n'"RESET"$'\n'"SELECT 1 $((n0 + n1))"$'\n'"SET"$'\n'"SELECT 1 $n42"$'\n'"RESET"$'\n'"SELECT 1 $((n0 + n1))" \
		"SET shardpool.shard / shard_key steer unkeyed statements; keyed ones keep their shard; RESET and RESET ALL clear them"
	is "$(where t80_users "score = 4")" "1:$n1" "the UPDATE under SET shardpool.shard = 1 changed shard 1 only"
	out=$(sess <<-EOF
	SET shardpool.shard = 0
	BEGIN
	SET LOCAL shardpool.shard = 1
	SELECT count(*) FROM t80_users
	COMMIT
	SELECT count(*) FROM t80_users
	BEGIN
	SET LOCAL shardpool.shard_key = '$k1'
	SELECT count(*) FROM t80_users
	ROLLBACK
	SELECT count(*) FROM t80_users
	EOF
	)
	is "$out" "SET"$'\n'"BEGIN"$'\n'"SET"$'\n'"SELECT 1 $n1"$'\n'"COMMIT"$'\n'"SELECT 1 $n0"$'\n'"BEGIN"$'\n'"SET"$'\n'"SELECT 1 $n1"$'\n'"ROLLBACK"$'\n'"SELECT 1 $n0" \
		"SET LOCAL shardpool.* wins over SET inside the transaction and ends with it"
	out=$(sess <<-'EOF'
	SET shardpool.shard = 5
	SET shardpool.shard = 'x'
	SET shardpool.role = 'leader'
	SET shardpool.nope = 1
	SELECT 3
	EOF
	)
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "ERROR 22023 ERROR 22023 ERROR 22023 ERROR 42704 SELECT 1 " \
		"bad SET shardpool.* values: 22023; an unknown shardpool.* name: 42704; the session goes on" || diag "$out"
	# This database's tables have keys of several types, so a shard_key is checked
	# against the type of each statement's table (doc/sharding.md section 7).
	out=$(sess <<-'EOF'
	SET shardpool.shard_key = 'abc'
	SELECT count(*) FROM t80_users
	SELECT count(*) FROM t80_texts
	EOF
	)
	like "$(sed -n 2p <<<"$out")" "^ERROR (22023|22P02) " "shard_key 'abc' with a statement on a bigint-keyed table is refused" || diag "$out"
	is "$(sed -n 3p <<<"$out")" "SELECT 1 $(on "$(shard_of t80_pl_t "'abc'::text")" "SELECT count(*) FROM t80_texts")" \
		"shard_key 'abc' with a statement on a text-keyed table goes to the shard of 'abc'"

	# replicated table
	out=$(sess <<-'EOF'
	INSERT INTO t80_ref (code, name) VALUES ('r1', 'one'), ('r2', 'two')
	INSERT INTO t80_ref (code, name) VALUES ('r3', 'three') RETURNING code
	SELECT count(*) FROM t80_ref
	SELECT code FROM t80_ref ORDER BY code
	UPDATE t80_ref SET name = 'uno' WHERE code = 'r1'
	DELETE FROM t80_ref WHERE code = 'r2'
	EOF
	)
	is "$out" $'INSERT 0 2\nINSERT 0 1 r3\nSELECT 1 3\nSELECT 3 r1,r2,r3\nUPDATE 1\nDELETE 1' \
		"replicated table: writes answered once, reads return each row once"
	is "$(on 0 "SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM t80_ref") $(on 1 "SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM t80_ref")" \
		"r1=uno,r3=three r1=uno,r3=three" "replicated table: every shard got every write"
	out=$(q "SELECT u.name, r.name FROM t80_users u JOIN t80_ref r ON r.code = 'r1' WHERE u.user_id = $k1")
	is "$out" "SELECT 1 u$k1|uno" "a sharded table joined with a replicated one, pinned"
	out=$(q "INSERT INTO t80_ref (code, name) SELECT 'r9', name FROM t80_users WHERE user_id = $k1")
	is "$(state "$out")" 0A000 "a write to a replicated table that reads a sharded table is refused"

	# unconfigured table: default_shard (1 here)
	out=$(sess <<-'EOF'
	INSERT INTO t80_local (id, v) VALUES (1, 'a'), (2, 'b')
	SELECT count(*) FROM t80_local
	UPDATE t80_local SET v = 'c'
	EOF
	)
	is "$out" $'INSERT 0 2\nSELECT 1 2\nUPDATE 2' "a table without a [table] section: any statement runs"
	is "$(where t80_local "true")" "1:2" "... on default_shard = 1 only"

	# statements the parser rejects
	out=$(sess <<-EOF
	SELEC 1
	SELECT 4
	/* shard: 1 */ SELEC 1
	BEGIN
	SELECT name FROM t80_users WHERE user_id = $k1
	SELEC 1
	ROLLBACK
	SELECT 5
	EOF
	)
	is "$(cut -d' ' -f1,2 <<<"$out" | tr '\n' ' ')" "ERROR 42601 SELECT 1 ERROR 42601 BEGIN SELECT 1 ERROR 42601 ROLLBACK SELECT 1 " \
		"unparsable statements: 42601 on the sharded database, with a hint, in a transaction; the session goes on"
	out=$(SP_DB=app sp_psql -v VERBOSITY=verbose -c "SELEC 1" 2>&1)
	like "$out" "shard: N|shard:" "the sharded database's 42601 says how to route the statement with a hint"
	out=$(SP_DB=plain sp_psql -v VERBOSITY=verbose -c "SELEC 1" 2>&1)
	like "$out" "42601.*LOCATION:  scanner_yyerror" "database plain (one shard) forwards an unparsable statement: the server's own syntax error" || diag "$out"
	out=$(SP_DB=app sp_psql -v VERBOSITY=verbose -c "/* shard: 1 */ SELEC 1" 2>&1)
	like "$out" "LOCATION:  scanner_yyerror" "with a hint, the sharded database forwards it: the server's own error" || diag "$out"
	is "$(SP_DB=plain sp_psql -c "SELECT count(*) FROM t80_local")" 0 "database plain reaches shard 0 of the sandbox"

	# range sharding
	out=$(sess t80rng <<-'EOF'
	INSERT INTO t80_rng (k, v) VALUES (-5, 'a')
	INSERT INTO t80_rng (k, v) VALUES (0, 'a')
	INSERT INTO t80_rng (k, v) VALUES (99, 'a')
	INSERT INTO t80_rng (k, v) VALUES (100, 'b')
	INSERT INTO t80_rng (k, v) VALUES (199, 'b')
	INSERT INTO t80_rng (k, v) VALUES (1, 'a'), (150, 'b'), (-2147483648, 'a')
	INSERT INTO t80_rng (k, v) VALUES (200, 'x')
	INSERT INTO t80_rng (k, v) VALUES (5000, 'x')
	INSERT INTO t80_rng (k, v) VALUES (NULL, 'x')
	SELECT v FROM t80_rng WHERE k = 150
	SELECT v FROM t80_rng WHERE k = 99
	UPDATE t80_rng SET v = 'c' WHERE k = 100
	SELECT count(*) FROM t80_rng WHERE k = 250
	EOF
	)
	is "$(head -n 6 <<<"$out" | tr '\n' ' ')" "INSERT 0 1 INSERT 0 1 INSERT 0 1 INSERT 0 1 INSERT 0 1 INSERT 0 3 " "range: INSERTs inside the ranges (and a split one) succeed" || diag "$out"
	is "$(where t80_rng "v = 'a'") $(where t80_rng "v IN ('b', 'c')")" "0:5 1:3" "range: keys below 100 on shard 0, 100 to 199 on shard 1"
	is "$(sed -n 7,8p <<<"$out" | cut -d' ' -f1,2 | tr '\n' ' ')" "ERROR 22023 ERROR 22023 " "range: a key outside every range is refused with 22023"
	like "$(sed -n 7p <<<"$out")" "200.*t80_rng|t80_rng.*200" "range: the error names the key value and the table"
	like "$(sed -n 9p <<<"$out")" "^ERROR " "range: a NULL key is refused"
	is "$(where t80_rng "v = 'x' OR k IS NULL")" "" "range: no refused row was stored"
	is "$(sed -n '10,12p' <<<"$out" | tr '\n' ' ')" "SELECT 1 b SELECT 1 a UPDATE 1 " "range: reads and writes by key" || diag "$out"
	like "$(sed -n 13p <<<"$out")" "^(SELECT 1 0|ERROR 22023 .*)$" "range: a read of a key outside every range finds nothing or is refused with 22023"

	# list sharding
	out=$(sess t80lst <<-'EOF'
	INSERT INTO t80_lst (country, v) VALUES ('fr', 0)
	INSERT INTO t80_lst (country, v) VALUES ('de', 0)
	INSERT INTO t80_lst (country, v) VALUES ('us', 1), ('ca', 1)
	INSERT INTO t80_lst (country, v) VALUES ('jp', 9)
	INSERT INTO t80_lst (country, v) VALUES ('FR', 9)
	SELECT v FROM t80_lst WHERE country = 'ca'
	SELECT country FROM t80_lst WHERE country IN ('fr', 'us') ORDER BY country
	EOF
	)
	is "$(head -n 3 <<<"$out" | tr '\n' ' ')" "INSERT 0 1 INSERT 0 1 INSERT 0 2 " "list: INSERTs of listed values succeed" || diag "$out"
	is "$(where t80_lst "v = 0") $(where t80_lst "v = 1")" "0:2 1:2" "list: fr, de on shard 0; us, ca on shard 1"
	is "$(sed -n 4,5p <<<"$out" | cut -d' ' -f1,2 | tr '\n' ' ')" "ERROR 22023 ERROR 22023 " "list: an unlisted value (and one in another case) is refused with 22023"
	is "$(where t80_lst "v = 9")" "" "list: no refused row was stored"
	is "$(sed -n 6,7p <<<"$out" | tr '\n' ' ')" "SELECT 1 1 SELECT 2 fr,us " "list: reads by key and IN"
}

# Reading one's own writes when replicas take reads: a split INSERT, then a fan-out
# count and a read by key in the same session must see every row (5 rounds).
rep_suite() {
	local r out script exp= base
	script=
	for r in 0 1 2 3 4; do
		base=$((600 + r * 10))
		script+="INSERT INTO t80_users (user_id, name) VALUES ($base, 'w'), ($((base + 1)), 'w'), ($((base + 2)), 'w'), ($((base + 3)), 'w'), ($((base + 4)), 'w'), ($((base + 5)), 'w')"$'\n'
		script+="SELECT count(*) FROM t80_users WHERE user_id >= 600 AND user_id < 700"$'\n'
		script+="UPDATE t80_users SET name = 'r$r' WHERE user_id = $((base + 3))"$'\n'
		script+="SELECT name FROM t80_users WHERE user_id = $((base + 3))"$'\n'
		exp+="INSERT 0 6"$'\n'"SELECT 1 $(((r + 1) * 6))"$'\n'"UPDATE 1"$'\n'"SELECT 1 r$r"$'\n'
	done
	out=$(sess t80rep <<<"$script")
	is "$out" "${exp%$'\n'}" "$SB_SHARDS shards, replica reads on: a session reads its own split INSERT (fan-out) and UPDATE (by key)"
}

# ---------------------------------------------------------------- run

for shape in 2 4; do
	sandbox_ensure "$shape" 1
	create_tables
	write_config "sp$shape"
	sp_start "$SP_CONFIG"
	warm_up
	placement_suite
	[ "$shape" = 2 ] && routing_suite
	rep_suite
	ok "$shape shards: shardpool exits cleanly on SIGTERM" sp_stop
	drop_tables
done

done_testing
