#!/bin/bash
# 82_copy_shard.t - COPY through shardpool on a sharded database (issue 3).
#
# COPY ... FROM STDIN (text and csv: escapes, octal/hex-escaped keys, quotes, embedded
# newlines, HEADER, a custom delimiter, NULL strings, CRLF, key column not first, a
# composite key) must put every row on the shard PostgreSQL's hash partitioning gives
# its key, with the same values as the same data copied into one unsharded table
# (database "plain"); a bad row anywhere fails the whole COPY and leaves no row on any
# shard; COPY TO STDOUT returns every shard's rows once (text, csv with one HEADER,
# binary with one signature and one trailer); COPY into a replicated table lands on
# every shard; the COPY forms doc/sharding.md refuses get 0A000.
#
# Runs on the shared 2-shard sandbox; tables are named t82_*.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"


# copy DB SQL < DATA: psql through shardpool, not quiet (prints "COPY n"), errors with
# their SQLSTATE; bounded in time so that a COPY that never ends fails its test
copy() {
	PGPASSWORD=secret timeout 30 psql -X -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h 127.0.0.1 \
		-p "$SP_PORT" -U app -d "$1" -c "$2" 2>&1 ||
		{ [ $? = 124 ] && echo "TIMEOUT: no answer within 30 s"; }
}

# the SQLSTATE of psql's first verbose ERROR line, or OK
state() { sed -n 's/^\(psql:[^ ]* \)\{0,1\}ERROR:  \([0-9A-Z]\{5\}\):.*/\2/p' <<<"$1" | head -n 1 | grep . || echo OK; }

# per-row digests, sorted: "id md5" of every row of TABLE on every shard / of t82_flat
ROWSUM="id || ' ' || md5(coalesce(a, '<NULL>') || '|' || coalesce(b::text, '<NULL>') || '|' || coalesce(c, '<NULL>'))"
rows_sharded() {
	local i
	for ((i = 0; i < SB_SHARDS; i++)); do on "$i" "SELECT $ROWSUM FROM ${1:-t82_data}"; done | sort
}
rows_flat() { on 0 "SELECT $ROWSUM FROM t82_flat" | sort; }

# same_lines GOT WANT DESC: the same lines in any order (a short diff when not)
same_lines() {
	if [ "$(sort <<<"$1")" == "$(sort <<<"$2")" ]; then
		_tap_result 1 "$3"
	else
		_tap_result 0 "$3"
		diag "$(diff <(sort <<<"$2") <(sort <<<"$1") | head -n 8)"
	fi
}

total() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}

# rows, over all shards, that are not on PostgreSQL's hash remainder of their key
misplaced() {
	local i n sum=0
	for ((i = 0; i < SB_SHARDS; i++)); do
		n=$(on "$i" "SELECT count(*) FROM $1 WHERE NOT satisfies_hash_partition('$2'::regclass, $SB_SHARDS, $i, $3)") || return 1
		sum=$((sum + n))
	done
	echo "$sum"
}

empty_all() { on_all "TRUNCATE t82_data, t82_comp, t82_ref" && on 0 "TRUNCATE t82_flat" >/dev/null; }

# load_both SQL FILE DESC: the same COPY through shardpool into the sharded t82_data and
# into t82_flat through database plain; same rows, each on its key's shard
load_both() {
	local sql=$1 file=$2 desc=$3 out_s out_p n
	empty_all
	n=$(cat "$file.count")
	out_s=$(copy app "$sql" <"$file")
	out_p=$(copy plain "${sql/t82_data/t82_flat}" <"$file")
	is "$out_p" "COPY $n" "$desc: the unsharded COPY loads $n rows (sanity)"
	is "$out_s" "COPY $n" "$desc: COPY through shardpool answers COPY $n" || return 1
	same_lines "$(rows_sharded)" "$(rows_flat)" "$desc: the shards hold exactly the rows (and values) of the unsharded copy"
	is "$(misplaced t82_data t82_pl id)" 0 "$desc: every row is on its key's shard"
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
on_all "DROP TABLE IF EXISTS t82_data, t82_comp, t82_ref, t82_flat, t82_pl, t82_plc CASCADE;
	CREATE TABLE t82_data (id bigint PRIMARY KEY, a text, b int CHECK (b IS NULL OR b <> -666), c text);
	CREATE TABLE t82_comp (tenant int, item text, v text, PRIMARY KEY (tenant, item));
	CREATE TABLE t82_ref (code text PRIMARY KEY, name text);
	CREATE TABLE t82_pl (k bigint) PARTITION BY HASH (k);
	CREATE TABLE t82_plc (a int, b text) PARTITION BY HASH (a, b)" || bail_out "cannot create the t82 tables"
on 0 "CREATE TABLE t82_flat (LIKE t82_data INCLUDING ALL)" >/dev/null || bail_out "cannot create t82_flat"
at_exit "on_all 'DROP TABLE IF EXISTS t82_data, t82_comp, t82_ref, t82_flat, t82_pl, t82_plc CASCADE' >/dev/null 2>&1"

sp_write_config "$SP_TMP/sp.ini"
sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
sed -i '/^\[database plain\]/a read_replicas = no' "$SP_CONFIG"
cat >>"$SP_CONFIG" <<EOF

[table app.t82_data]
key = id
type = bigint

[table app.t82_comp]
key = tenant, item
type = integer, text

[table app.t82_ref]
replicated = yes
EOF
sp_start "$SP_CONFIG"
warm_up

D=$SP_TMP/data
mkdir -p "$D"

# ---------------------------------------------------------------- text format
{
	printf '1\thello\t10\tworld\n'
	printf '2\twith\\ttab\t20\t\\N\n'
	printf '3\tline\\nbreak\\r\t30\tx\n'
	printf '4\tback\\\\slash\t\\N\tx\n'
	printf '5\t\\N\t50\t\xc3\xa9t\xc3\xa9\n'
	printf '\\0617\toctal-escaped key 17\t17\tx\n'
	printf '\\x32\\x35\thex-escaped key 25\t25\tx\n'
	printf -- '-7\tnegative\t70\t\n'
	printf '9223372036854775807\tmax\t\\N\t\\N\n'
	for ((i = 100; i < 400; i++)); do printf '%d\tname%d\t%d\tc%d\n' "$i" "$i" $((i * 3)) "$i"; done
	printf '\\.\n'
} >"$D/text.dat"
echo 309 >"$D/text.dat.count"
load_both "COPY t82_data (id, a, b, c) FROM STDIN" "$D/text.dat" "text COPY (escapes, NULLs, escaped keys, negative and max keys)"
is "$(on "$(on 0 "SELECT r FROM generate_series(0, 1) AS r WHERE satisfies_hash_partition('t82_pl'::regclass, 2, r, 17::bigint)")" "SELECT a FROM t82_data WHERE id = 17")" \
	"octal-escaped key 17" "the key written \\0617 was routed as 17"

# custom delimiter, key column not first
{
	printf 'pipe one|1|7|x\n'
	printf 'pipe two|2|\\N|y\n'
	for ((i = 10; i < 60; i++)); do printf 'p%d|%d|%d|z\n' "$i" "$i" "$i"; done
} >"$D/pipe.dat"
echo 52 >"$D/pipe.dat.count"
load_both "COPY t82_data (a, id, b, c) FROM STDIN (DELIMITER '|')" "$D/pipe.dat" "text COPY with DELIMITER '|' and the key in the 2nd column"

# ---------------------------------------------------------------- COPY TO (data of the text COPY)
empty_all
copy app "COPY t82_data (id, a, b, c) FROM STDIN" <"$D/text.dat" >/dev/null
copy plain "COPY t82_flat (id, a, b, c) FROM STDIN" <"$D/text.dat" >/dev/null
out_s=$(copy app "COPY t82_data TO STDOUT")
out_p=$(copy plain "COPY t82_flat TO STDOUT")
is "$(state "$out_s")" OK "COPY sharded_table TO STDOUT is answered" || diag "$(head -n 3 <<<"$out_s")"
same_lines "$out_s" "$out_p" "COPY TO STDOUT (text) returns every shard's rows once, as the unsharded table"
out_s=$(copy app "COPY t82_data (id, b) TO STDOUT (FORMAT csv, HEADER)")
out_p=$(copy plain "COPY t82_flat (id, b) TO STDOUT (FORMAT csv, HEADER)")
is "$(head -n 1 <<<"$out_s") $(grep -c '^id,b$' <<<"$out_s")" "id,b 1" "COPY TO STDOUT (csv, HEADER): the header comes once, first" || diag "$(head -n 3 <<<"$out_s")"
same_lines "$(tail -n +2 <<<"$out_s")" "$(tail -n +2 <<<"$out_p")" "COPY TO STDOUT (csv): every row once"
out_s=$(copy app "COPY (SELECT id, a FROM t82_data WHERE id = 5) TO STDOUT")
is "$out_s" "5	\\N" "COPY (SELECT ... WHERE key = 5) TO STDOUT reads the key's shard"
out_s=$(timeout 30 $PY - "host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=app" <<'EOF'
# COPY TO STDOUT in binary: one signature, tuples, one trailer at the very end
import struct, sys
from psycopg import pq
c = pq.PGconn.connect(sys.argv[1].encode())
c.send_query(b"COPY t82_data (id, b) TO STDOUT (FORMAT binary)")
r = c.get_result()
if r.status != pq.ExecStatus.COPY_OUT:
    print("ERROR", (r.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode(), (r.error_message or b"").decode().strip())
    sys.exit(0)
data = b""
while True:
    n, d = c.get_copy_data(0)
    if n < 0:
        break
    data += d
r = c.get_result()
tag = r.command_status.decode() if r is not None else "none"
SIG = b"PGCOPY\n\xff\r\n\x00"
problems = []
if not data.startswith(SIG):
    problems.append("no signature at the start")
if data.count(SIG) != 1:
    problems.append("%d signatures" % data.count(SIG))
pos = len(SIG) + 4
ext, = struct.unpack("!I", data[pos:pos + 4])
pos += 4 + ext
ids = []
while pos < len(data):
    nf, = struct.unpack("!h", data[pos:pos + 2])
    pos += 2
    if nf == -1:
        break
    if nf != 2:
        problems.append("tuple with %d fields at byte %d" % (nf, pos))
        break
    l, = struct.unpack("!i", data[pos:pos + 4])
    ids.append(struct.unpack("!q", data[pos + 4:pos + 12])[0])
    pos += 4 + l
    l, = struct.unpack("!i", data[pos:pos + 4])
    pos += 4 + max(l, 0)
if pos != len(data):
    problems.append("%d bytes after the trailer" % (len(data) - pos))
print(tag, len(ids), sum(ids) % 1000003, "; ".join(problems) or "well-formed")
EOF
)
exp=$(on 0 "SELECT 'COPY ' || count(*) || ' ' || count(*) || ' ' || (sum(id::numeric) % 1000003) || ' well-formed' FROM t82_flat")
is "$out_s" "$exp" "COPY TO STDOUT (binary): one signature, every shard's tuples, one trailer, tag COPY n"

# ---------------------------------------------------------------- csv
{
	printf 'id,a,b,c\n'
	printf '1,"hello, world",10,"quoted ""inner"""\n'
	printf '2,"multi\nline",20,\n'
	printf '3,,30,""\n'
	printf '"42",quoted key,42,x\n'
	printf '" 44 ",key with spaces,44,x\n'
	printf '5,\xc3\xa9,50,"a;b"\n'
	printf '6,"\\.",60,"\\N"\n'
	for ((i = 100; i < 300; i++)); do printf '%d,n%d,%d,"c,%d"\n' "$i" "$i" "$i" "$i"; done
} >"$D/csv.dat"
echo 207 >"$D/csv.dat.count"
load_both "COPY t82_data (id, a, b, c) FROM STDIN (FORMAT csv, HEADER)" "$D/csv.dat" "csv COPY (HEADER, quotes, embedded newline, quoted and padded keys)"

{
	printf 'a;id;b;c\r\n'
	printf 'semi;1;NA;"x;y"\r\n'
	printf 'NA;2;5;NA\r\n'
	printf '"NA";3;5;""\r\n'
	for ((i = 10; i < 110; i++)); do printf 's%d;%d;%d;t\r\n' "$i" "$i" "$i"; done
} >"$D/csv2.dat"
echo 103 >"$D/csv2.dat.count"
load_both "COPY t82_data (a, id, b, c) FROM STDIN (FORMAT csv, HEADER true, DELIMITER ';', NULL 'NA')" "$D/csv2.dat" "csv COPY with DELIMITER ';', NULL 'NA', CRLF, key not first"

# composite key
empty_all
{
	for ((i = 0; i < 60; i++)); do printf '%d,item%d,v\n' $((i % 7)) "$i"; done
} >"$D/comp.dat"
out=$(copy app "COPY t82_comp (item, tenant, v) FROM STDIN (FORMAT csv)" < <(awk -F, '{ print $2 "," $1 "," $3 }' "$D/comp.dat"))
is "$out" "COPY 60" "csv COPY into a table with a composite key (columns in another order)"
is "$(total t82_comp) $(misplaced t82_comp t82_plc 'tenant, item')" "60 0" "every composite-key row is on PostgreSQL's hash remainder of (tenant, item)"

# FORCE_NOT_NULL of a key column: an empty unquoted item is '' (not NULL, which the
# hash would skip), and so is the NULL string itself; each row on the shard of (tenant, '')
empty_all
out=$(for ((i = 0; i < 20; i++)); do printf '%d,,v\n' "$i"; done | copy app "COPY t82_comp (tenant, item, v) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (item))")
is "$out" "COPY 20" "csv COPY with FORCE_NOT_NULL of a key column"
is "$(total t82_comp) $(misplaced t82_comp t82_plc 'tenant, item')" "20 0" "... every row is on the shard of its empty-string key, as PostgreSQL reads it"
empty_all
out=$(for ((i = 0; i < 20; i++)); do printf '%d,NA,v\n' "$i"; done | copy app "COPY t82_comp (tenant, item, v) FROM STDIN WITH CSV NULL 'NA' FORCE NOT NULL item")
is "$out $(total t82_comp) $(misplaced t82_comp t82_plc 'tenant, item')" "COPY 20 20 0" "... the same with NULL 'NA' in the old syntax: the key is the string NA"

# ---------------------------------------------------------------- a bad row fails the whole COPY
# 300 good rows before the bad one, so every shard has received rows when it comes
bad_copy() {
	local desc=$1 want=$2 badline=$3 out
	empty_all
	{
		for ((i = 1000; i < 1300; i++)); do printf '%d\tok\t%d\tx\n' "$i" "$i"; done
		printf '%b\n' "$badline"
		for ((i = 1300; i < 1310; i++)); do printf '%d\tok\t%d\tx\n' "$i" "$i"; done
		printf '\\.\n'
	} >"$D/bad.dat"
	out=$(copy app "COPY t82_data (id, a, b, c) FROM STDIN" <"$D/bad.dat")
	like "$(state "$out")" "^($want)$" "$desc: the COPY fails ($want)" || diag "$out"
	is "$(total t82_data)" 0 "$desc: no shard keeps any row"
}
bad_copy "a non-integer in a non-key column" 22P02 '2000\tbad\tnotint\tx'
bad_copy "a key that is not a bigint" 22P02 'abc\tbad\t1\tx'
bad_copy "a row that only its shard's CHECK constraint rejects" 23514 '2001\tbad\t-666\tx'
bad_copy "a row with a missing column" 22P04 '2002\tbad'
bad_copy "a row with an extra column" 22P04 '2003\tbad\t1\tx\textra'
bad_copy "a duplicate key (unique violation on one shard)" 23505 '1005\tdup\t1\tx'
out=$(copy app "COPY t82_data (id, a, b, c) FROM STDIN" <"$D/text.dat")
is "$out" "COPY 309" "after the failed COPYs a new COPY works"
n=0
for ((i = 0; i < SB_SHARDS; i++)); do
	n=$((n + $(on "$i" "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state <> 'idle' AND query LIKE 'COPY t82%' AND pid <> pg_backend_pid()")))
done
is "$n" 0 "no server connection is left in a COPY or a transaction"

# ---------------------------------------------------------------- refusals
refused() {
	local sql=$1 out
	empty_all
	out=$(printf '1\tx\t1\tx\n\\.\n' | copy app "$sql")
	is "$(state "$out")" 0A000 "refused with 0A000: $sql" || diag "$out"
	is "$(total t82_data)" 0 "... and nothing was stored"
}
refused "COPY t82_data FROM STDIN"
refused "COPY t82_data (a, b) FROM STDIN"
refused "COPY t82_data (id, a, b, c) FROM STDIN WHERE b > 0"
refused "COPY t82_data (id, a, b, c) FROM '/nonexistent/t82.dat'"
refused "COPY t82_data (id, a, b, c) FROM PROGRAM 'cat /nonexistent/t82.dat'"
refused "COPY t82_data (id, a, b, c) FROM STDIN (ENCODING 'LATIN1')"

# ---------------------------------------------------------------- replicated table
empty_all
out=$(printf 'fr\tFrance\nde\tGermany\nus\tUnited States\nca\tCanada\njp\tJapan\n\\.\n' | copy app "COPY t82_ref (code, name) FROM STDIN")
is "$out" "COPY 5" "COPY into a replicated table answers COPY 5 (not once per shard)"
got=
for ((i = 0; i < SB_SHARDS; i++)); do got+="$(on "$i" "SELECT string_agg(code, ',' ORDER BY code) FROM t82_ref") "; done
is "$got" "ca,de,fr,jp,us ca,de,fr,jp,us " "every shard holds every row of the replicated table"
out=$(printf 'xx\tbad\nfr\tdup\n\\.\n' | copy app "COPY t82_ref (code, name) FROM STDIN")
is "$(state "$out")" 23505 "a bad row in a replicated COPY fails it"
got=
for ((i = 0; i < SB_SHARDS; i++)); do got+="$(on "$i" "SELECT count(*) FROM t82_ref WHERE code = 'xx'")"; done
is "$got" 00 "... and no shard keeps its rows"

done_testing
