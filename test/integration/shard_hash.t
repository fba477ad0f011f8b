#!/bin/bash
# shard_hash.t - shardpool's shard of a key is the partition PostgreSQL 15 puts it in.
#
# For every key type (smallint, integer, bigint, text, varchar, uuid) and for a
# two-column key (bigint, text) with NULLs, PostgreSQL generates at least 10,000 keys
# (extremes, negatives, multibyte and empty text, uuids in every spelling uuid_in
# accepts, integers with the whitespace and signs int*in accept), writes them out with
# COPY, and loads them into PARTITION BY HASH tables of modulus 2, 3, 4 and 7. The
# partition each row landed in (tableoid) must equal what hashcheck, linked against
# shardpool's shard_hash module, computes from the same file. Every disagreement is
# reported with its key. A second part checks that the key parser accepts and rejects
# the same tricky literals as the server's input functions, with the same SQLSTATE.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
[ -x /usr/lib/postgresql/15/bin/initdb ] || skip_all "PostgreSQL 15 is not installed"
HASHCHECK=$SP_BUILDDIR/test/integration/hashcheck
[ -x "$HASHCHECK" ] || bail_out "$HASHCHECK is not built (make check builds it)"

MODULI="2 3 4 7"
sandbox_ensure 2 1
PORT=$SB_PRIMARY_PORT_0
# a schema of our own: other tests share this sandbox, maybe at the same time
S=shard_hash_t_$$_$RANDOM
pg_psql "$PORT" -c "CREATE SCHEMA $S" || bail_out "cannot create schema $S on port $PORT"
at_exit "pg_psql $PORT -c 'DROP SCHEMA $S CASCADE' >/dev/null 2>&1"

psql_s() { pg_psql "$PORT" -v ON_ERROR_STOP=1 -c "SET search_path = $S, public" "$@"; }

# ---------------------------------------------------------------- key generators
# Each prints SQL for COPY (...) TO STDOUT: an id (the row order), then the key columns
# as text, so the literal spellings themselves go through both parsers.

# random text of LEN_EXPR characters: ASCII, the characters COPY escapes, Latin/Greek/
# Cyrillic (2-byte UTF-8), CJK (3-byte) and emoji (4-byte)
rand_text_sql() {
	cat <<EOF
(SELECT coalesce(string_agg(chr(CASE
	WHEN r < 0.55 THEN 32 + floor(random() * 95)::int
	WHEN r < 0.62 THEN (ARRAY[9, 10, 13, 92, 11, 8])[1 + floor(random() * 6)::int]
	WHEN r < 0.80 THEN 160 + floor(random() * 1800)::int
	WHEN r < 0.93 THEN 19968 + floor(random() * 20000)::int
	ELSE 127744 + floor(random() * 1000)::int END), ''), '')
 FROM (SELECT random() AS r FROM generate_series(1, $1)) c)
EOF
}

# a bigint spread over every magnitude, with the values around 2^31 and 2^32 where
# hashint8's folding of the high word matters
rand_bigint_sql() {
	cat <<'EOF'
(CASE floor(random() * 5)::int
	WHEN 0 THEN (floor(random() * 4294967296)::bigint - 2147483648) * 4294967296
		+ floor(random() * 4294967296)::bigint
	WHEN 1 THEN floor((random() * 2 - 1) * 1099511627776)::bigint
	WHEN 2 THEN floor(random() * 4294967296)::bigint - 2147483648
	WHEN 3 THEN floor((random() * 2 - 1) * power(10, floor(random() * 19)))::bigint
	ELSE (ARRAY[2147483647, 2147483648, -2147483648, -2147483649, 4294967295, 4294967296,
		-4294967295, -4294967296, -4294967297])[1 + floor(random() * 9)::int]
		+ floor(random() * 5)::bigint - 2 END)
EOF
}

# integer literals as int2in/int4in/int8in also accept them: surrounding whitespace,
# a '+' sign, leading zeros
int_spelling_sql() {
	cat <<EOF
CASE WHEN id % 97 = 0 THEN E' \\t' || ($1)::text || E'\\n '
	WHEN id % 89 = 0 AND ($1) >= 0 THEN '+' || ($1)::text
	WHEN id % 83 = 0 THEN regexp_replace(($1)::text, '^(-?)', '\\1000')
	ELSE ($1)::text END
EOF
}

gen_smallint() {
	# every smallint there is
	echo "SELECT id, $(int_spelling_sql v) FROM (SELECT v + 32769 AS id, v FROM generate_series(-32768, 32767) v) s ORDER BY id"
}

gen_integer() {
	echo "SELECT id, $(int_spelling_sql v) FROM (SELECT id, CASE
		WHEN id <= 8 THEN (ARRAY[-2147483648, 2147483647, 0, -1, 1, -2147483647, 2147483646, 42])[id]
		WHEN id <= 2008 THEN id - 1008
		WHEN id % 3 = 0 THEN floor(random() * 200000)::bigint - 100000
		ELSE floor(random() * 4294967296)::bigint - 2147483648 END AS v
		FROM generate_series(1, 20000) id) s ORDER BY id"
}

gen_bigint() {
	echo "SELECT id, $(int_spelling_sql v) FROM (SELECT id, CASE
		WHEN id <= 12 THEN (ARRAY[-9223372036854775808, 9223372036854775807, -9223372036854775807,
			9223372036854775806, 0, -1, 1, 2147483647, -2147483648, 4294967296, -4294967296, 42])[id]
		WHEN id <= 2012 THEN id - 1012
		ELSE $(rand_bigint_sql) END AS v
		FROM generate_series(1, 20000) id) s ORDER BY id"
}

gen_text() {
	echo "SELECT id, CASE WHEN id <= 6 THEN (ARRAY['', 'abc', E'\\\\N', E'back\\\\slash', 'gr' || chr(246) || chr(223) || 'e ' || chr(26085) || chr(26412) || ' ' || chr(128024), repeat('x', 12)])[id]
		ELSE $(rand_text_sql len) END
		FROM (SELECT id, CASE WHEN id % 10 = 0 THEN floor(random() * 4)::int
			WHEN id % 50 = 1 THEN 100 + floor(random() * 1000)::int
			ELSE floor(random() * 41)::int END AS len
		FROM generate_series(1, 12000) id) s ORDER BY id"
}

gen_varchar() {
	gen_text
}

gen_uuid() {
	# every spelling uuid_in accepts: canonical, upper case, no hyphens, braces, a hyphen
	# after every group of four digits
	echo "SELECT id, CASE id % 7
		WHEN 0 THEN u::text
		WHEN 1 THEN upper(u::text)
		WHEN 2 THEN replace(u::text, '-', '')
		WHEN 3 THEN '{' || u::text || '}'
		WHEN 4 THEN regexp_replace(replace(upper(u::text), '-', ''), '(.{4})(?!\$)', '\\1-', 'g')
		WHEN 5 THEN '{' || replace(u::text, '-', '') || '}'
		ELSE regexp_replace(replace(u::text, '-', ''), '^(.{8})(.{8})', '\\1-\\2-') END
		FROM (SELECT id, CASE WHEN id = 1 THEN '00000000-0000-0000-0000-000000000000'::uuid
			WHEN id = 2 THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
			ELSE md5(random()::text)::uuid END AS u
		FROM generate_series(1, 12000) id) s ORDER BY id"
}

gen_composite() {
	echo "SELECT id, CASE WHEN id % 10 = 0 THEN NULL ELSE $(rand_bigint_sql)::text END,
		CASE WHEN id % 7 = 0 THEN NULL ELSE $(rand_text_sql len) END
		FROM (SELECT id, floor(random() * 20)::int AS len FROM generate_series(1, 12000) id) s
		ORDER BY id"
}

# ---------------------------------------------------------------- one data set

# check NAME "COLUMN TYPES" HASHCHECK_TYPES SEED: the comparison for one key type
check() {
	local name=$1 coltypes=$2 hctypes=$3 seed=$4
	local keys=$SP_TMP/$name.keys ours=$SP_TMP/$name.ours pg=$SP_TMP/$name.pg
	local bad=$SP_TMP/$name.mismatches n cols kcols m r sql sel from

	# the same seed gives the same keys on every run
	if ! pg_psql "$PORT" >"$keys" 2>"$keys.err" <<EOF; then
SELECT setseed($seed) \g /dev/null
COPY ($("gen_$name")) TO STDOUT;
EOF
		_tap_result 0 "$name: PostgreSQL generates the keys"
		diag "$(cat "$keys.err")"
		return
	fi
	n=$(wc -l <"$keys")
	# a generator whose random() ran once per query rather than once per row would make
	# every key alike and the comparison worthless
	local distinct
	distinct=$(cut -f2- "$keys" | sort -u | wc -l)
	ok "$name: $distinct of $n keys are distinct" test "$((distinct * 2))" -ge "$n"
	ok "$name: hashcheck computes the shards of $n keys" sh -c "'$HASHCHECK' '$hctypes' $MODULI <'$keys' >'$ours'"

	# id int, k1 TYPE[, k2 TYPE] PARTITION BY HASH (k1[, k2]) for each modulus
	cols=id\ int
	kcols=
	local i=1 t
	IFS=, read -ra t <<<"$coltypes"
	for ((i = 1; i <= ${#t[@]}; i++)); do
		cols+=", k$i ${t[i - 1]}"
		kcols+="${kcols:+, }k$i"
	done
	sql=
	for m in $MODULI; do
		sql+="CREATE TABLE ${name}_m$m ($cols) PARTITION BY HASH ($kcols);"
		for ((r = 0; r < m; r++)); do
			sql+="CREATE TABLE ${name}_m${m}_r$r PARTITION OF ${name}_m$m FOR VALUES WITH (MODULUS $m, REMAINDER $r);"
		done
	done
	local copies=()
	for m in $MODULI; do copies+=(-c "\\copy ${name}_m$m FROM '$keys'"); done
	if ! psql_s -c "$sql" "${copies[@]}" >"$pg.err" 2>&1; then
		_tap_result 0 "$name: PostgreSQL loads the keys into hash partitions of modulus $MODULI"
		diag "$(head -n 20 "$pg.err")"
		return
	fi
	# the remainder is the suffix of the partition's name
	sel="m${MODULI%% *}.id"
	from=
	for m in $MODULI; do
		sel+=", substring(m$m.tableoid::regclass::text from '_r([0-9]+)\$')"
		if [ -z "$from" ]; then from="${name}_m$m m$m"; else from+=" JOIN ${name}_m$m m$m USING (id)"; fi
	done
	if ! psql_s -F $'\t' -c "SELECT $sel FROM $from ORDER BY 1" >"$pg" 2>"$pg.err"; then
		_tap_result 0 "$name: read back the partition of every row"
		diag "$(cat "$pg.err")"
		return
	fi
	is "$(wc -l <"$pg")" "$n" "$name: PostgreSQL put all $n keys in partitions of modulus $MODULI"

	# line by line: keys, our shards, PostgreSQL's partitions
	awk -F'\t' -v ours="$ours" -v pg="$pg" -v moduli="$MODULI" '
	{
		if ((getline o < ours) <= 0) o = "(no line)"
		if ((getline p < pg) <= 0) p = "(no line)"
		if (o == p) next
		key = $0; sub(/^[^\t]*\t/, "", key); gsub(/\t/, " | ", key)
		sub(/^[^\t]*\t/, "", o); gsub(/\t/, " ", o)
		sub(/^[^\t]*\t/, "", p); gsub(/\t/, " ", p)
		print "id " $1 ": key [" key "] shardpool [" o "] postgres [" p "] (moduli " moduli ")"
	}' "$keys" >"$bad"
	if is "$(wc -l <"$bad")" 0 "$name: shardpool agrees with PostgreSQL on all $n keys for moduli $MODULI"; then
		# a comparison that never saw a remainder but 0 would prove little
		local spread partitions=0
		for m in $MODULI; do partitions=$((partitions + m)); done
		spread=$(awk -F'\t' '{ for (i = 2; i <= NF; i++) seen[i "/" $i] = 1 } END { print length(seen) }' "$pg")
		is "$spread" "$partitions" "$name: the keys fill every partition of every modulus"
	else
		diag "$(cat "$bad")"
	fi
}

check smallint smallint smallint 0.11
check integer integer integer 0.22
check bigint bigint bigint 0.33
check text text text 0.44
check varchar varchar varchar 0.55
check uuid uuid uuid 0.66
check composite bigint,text bigint,text 0.77

# ---------------------------------------------------------------- the parser vs the input functions

pg_psql "$PORT" -c "CREATE FUNCTION $S.input_sqlstate(lit text, typ regtype) RETURNS text
	LANGUAGE plpgsql AS \$\$
	BEGIN
		EXECUTE format('SELECT %L::%s', lit, typ);
		RETURN 'OK';
	EXCEPTION WHEN others THEN
		RETURN SQLSTATE;
	END \$\$" >/dev/null || bail_out "cannot create $S.input_sqlstate"

# one literal a line in COPY text format (\t, \n, \\ escaped)
INT_LITERALS='0
-0
+0
 1
1 
\t\n 1 \r\f\v
+-1
-+1
--1
- 1
+
-

 
1 2
0x10
0o7
0b1
1_000
1e3
1.0
.5
12a
a12
\xc2\xa01
\xd9\xa1
00000000000000000000000000032767
32767
32768
-32768
-32769
2147483647
2147483648
-2147483648
-2147483649
9223372036854775807
9223372036854775808
-9223372036854775808
-9223372036854775809
99999999999999999999
99999999999999999999x
x99999999999999999999'
UUID_LITERALS='a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11
a0eebc999c0b4ef8bb6d6bb9bd380a11
{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}
{a0eebc999c0b4ef8bb6d6bb9bd380a11}
a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11
a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-
-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
a0eebc99-9c0b4ef8-bb6d-6bb9bd380a1-1
a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11
a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11
{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}
{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}}
 a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 
a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1
a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111
g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
a0eebc99 9c0b 4ef8 bb6d 6bb9bd380a11

{}'

# parse_check TYPE LITERALS: each literal through the server's input function and ours
parse_check() {
	local type=$1 lits=$SP_TMP/literals.$1 ours=$SP_TMP/literals.$1.ours pg=$SP_TMP/literals.$1.pg
	awk '{ print NR "\t" $0 }' <<<"$2" >"$lits"
	"$HASHCHECK" --parse "$type" <"$lits" >"$ours"
	psql_s -c "CREATE TABLE literals_$type (id int, lit text)" -c "\\copy literals_$type FROM '$lits'" \
		-F $'\t' -c "SELECT id, input_sqlstate(lit, '$type') FROM literals_$type ORDER BY id" >"$pg" 2>&1
	local diffs
	diffs=$(paste "$lits" "$ours" "$pg" | awk -F'\t' '$4 != $6 { print "literal [" $2 "]: shardpool " $4 ", postgres " $6 }')
	is "$diffs" "" "$type: the key parser accepts and rejects the $(wc -l <"$lits") tricky literals as $type's input function does"
}

parse_check smallint "$INT_LITERALS"
parse_check integer "$INT_LITERALS"
parse_check bigint "$INT_LITERALS"
parse_check uuid "$UUID_LITERALS"

done_testing
