#!/bin/bash
# 84_collation.t - fan-out merges order text as the shards' database collation does.
#
# Two databases created on every primary of a 2-shard sandbox with LC_COLLATE
# en_US.UTF-8 (generated with localedef if missing): app_en sharded by id, plain_en
# on shard 0 alone as the unsharded reference. The same rows (mixed case, accents,
# blanks, punctuation: where en_US and byte order disagree) go into both, and every
# ORDER BY / min / max on text must give what the unsharded database gives, in the
# simple and the extended protocol, text and binary results. ORDER BY ... COLLATE
# "C" is merged in byte order. A text sort on a database whose collation shardpool
# cannot reproduce is refused, never answered in a wrong order (checked by
# running shardpool with health checks off, so the collation stays unknown).
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PY=/usr/bin/python3
$PY -c 'import psycopg' 2>/dev/null || skip_all "python3-psycopg is not installed"
LOCALE=en_US.UTF-8
if ! locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8'; then
	[ "$(id -u)" = 0 ] && command -v localedef >/dev/null &&
		localedef -i en_US -f UTF-8 "$LOCALE" >/dev/null 2>&1
	locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8' ||
		skip_all "locale $LOCALE is missing and cannot be generated (apt-get install locales; localedef -i en_US -f UTF-8 $LOCALE)"
fi

sandbox_ensure 2 1

on() {
	local v=SB_PRIMARY_PORT_$1 db=$2
	shift 2
	PGPASSWORD= PGOPTIONS='-c client_min_messages=warning' psql -X -q -A -t -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "${!v}" -U postgres -d "$db" -c "$*"
}

ROWS="(1, 'apple', 'ab'), (2, 'Banana', 'Ab'), (3, 'banana', 'b'), (4, 'Zebra', 'z'),
	(5, 'zebra', 'Z'), (6, 'école', 'é'), (7, 'Ecole', 'E'), (8, 'éclair', 'e'),
	(9, 'a b', 'a b'), (10, 'ab', 'a-b'), (11, '_x', '_'), (12, 'X', 'x'), (13, NULL, NULL),
	(14, 'cote', 'co'), (15, 'côte', 'cô'), (16, 'coté', 'Co'), (17, 'côté', 'CÔ'),
	(18, 'Apple', 'AB'), (19, '1abc', '1'), (20, 'a-b', 'a_b')"
setup_db() {
	local shard=$1 db=$2 ddl
	on "$shard" postgres "DROP DATABASE IF EXISTS $db" &&
		on "$shard" postgres "CREATE DATABASE $db OWNER app TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '$LOCALE' LC_CTYPE '$LOCALE'" &&
		on "$shard" "$db" "CREATE TABLE words (id bigint PRIMARY KEY, w text, c char(4)); GRANT ALL ON words TO app"
}
at_exit "for s in 0 1; do on \$s postgres 'DROP DATABASE IF EXISTS app_en' >/dev/null 2>&1; done; on 0 postgres 'DROP DATABASE IF EXISTS plain_en' >/dev/null 2>&1"
if ! err=$(setup_db 0 app_en 2>&1); then
	# a server sees only the locales that existed when it started
	[[ $err == *"invalid locale name"* ]] &&
		skip_all "the sandbox's servers started before $LOCALE existed (stop the sandbox: test/sandbox stop $SB_DIR)"
	bail_out "cannot create database app_en: $err"
fi
if setup_db 1 app_en && setup_db 0 plain_en && on 0 plain_en "INSERT INTO words VALUES $ROWS"; then
	_tap_result 1 "the databases with collation $LOCALE are created"
else
	bail_out "cannot create the databases with collation $LOCALE"
fi

write_config() {
	sp_write_config "$SP_TMP/shardpool.ini" pool_mode=transaction default_pool_size=4 \
		log_level=${SP_LOG_LEVEL:-info} shutdown_timeout=2s "$@"
	cat >>"$SP_CONFIG" <<-EOF
		[database app_en]
		shards = 2
		[shard app_en.0]
		primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_0 dbname=app_en
		[shard app_en.1]
		primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_1 dbname=app_en
		[table app_en.words]
		key = id
		type = bigint
		[database plain_en]
		shards = 1
		[shard plain_en.0]
		primary = host=127.0.0.1 port=$SB_PRIMARY_PORT_0 dbname=plain_en
	EOF
}
write_config health_check_period=1s
sp_start "$SP_CONFIG"

run() {
	PGPASSWORD=secret timeout 15 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$1" -c "$2" 2>&1
}
is "$(run app_en "INSERT INTO words (id, w, c) VALUES $ROWS")" "" "rows inserted through shardpool (split by key)"
n0=$(on 0 app_en "SELECT count(*) FROM words")
n1=$(on 1 app_en "SELECT count(*) FROM words")
ok "both shards hold some of the rows ($n0 + $n1)" test "$n0" -gt 0 -a "$n1" -gt 0 -a $((n0 + n1)) = 20

# the health checker reads the collation at its first probe
for ((i = 0; i < 50; i++)); do
	run app_en "SELECT w FROM words ORDER BY w" | grep -q "not known yet" || break
	sleep 0.2
done

QUERIES=(
	"SELECT id, w FROM words ORDER BY w, id"
	"SELECT id, w FROM words ORDER BY w DESC NULLS LAST, id"
	"SELECT w, id FROM words ORDER BY w NULLS FIRST, id LIMIT 7"
	"SELECT c, id FROM words ORDER BY c, id"
	"SELECT * FROM words ORDER BY w, id"
	"SELECT min(w), max(w), min(c), max(c), count(w) FROM words"
	"SELECT id, w FROM words ORDER BY w COLLATE \"C\", id"
	"SELECT id, w FROM words ORDER BY w COLLATE \"POSIX\" DESC, id"
)
for q in "${QUERIES[@]}"; do
	want=$(run plain_en "$q")
	got=$(run app_en "$q")
	if [ "$got" = "$want" ] && [ -n "$want" ]; then
		_tap_result 1 "$LOCALE: same order as unsharded: $q"
	else
		_tap_result 0 "$LOCALE: same order as unsharded: $q"
		diag "$(diff <(echo "$want") <(echo "$got") | head -n 12)"
	fi
done
# the order really differs from byte order, or the checks above prove nothing
isnt "$(run plain_en "SELECT string_agg(w, ',' ORDER BY w) FROM words")" \
	"$(run plain_en "SELECT string_agg(w, ',' ORDER BY w COLLATE \"C\") FROM words")" \
	"$LOCALE orders these words differently from byte order"

# extended protocol, text and binary results
out=$($PY - "host=127.0.0.1 port=$SP_PORT user=app password=secret" "${QUERIES[@]}" <<-'EOF' 2>&1
	import sys, psycopg
	base, queries = sys.argv[1], sys.argv[2:]
	s = psycopg.connect(base + " dbname=app_en", autocommit=True)
	p = psycopg.connect(base + " dbname=plain_en", autocommit=True)
	bad = 0
	for q in queries:
	    for binary in (False, True):
	        want = p.cursor(binary=binary).execute(q, prepare=True).fetchall()
	        got = s.cursor(binary=binary).execute(q, prepare=True).fetchall()
	        if got != want:
	            bad += 1
	            print("differs (binary=%s): %s: %r / %r" % (binary, q, want[:4], got[:4]))
	print("bad", bad)
EOF
)
is "$(tail -n 1 <<<"$out")" "bad 0" "$LOCALE: extended protocol, text and binary: same order as unsharded" ||
	diag "$out"
sp_stop

# collation unknown (no health checks): text sorts refused, other sorts still merged
write_config health_check_period=0
sp_start "$SP_CONFIG"
out=$(run app_en "SELECT id, w FROM words ORDER BY w, id")
like "$out" "0A000|cannot be merged" "collation unknown: ORDER BY text refused" || diag "$out"
like "$out" 'COLLATE "C"' "collation unknown: the error says how to get a merge"
is "$(run app_en "SELECT id FROM words ORDER BY id LIMIT 3" | tr '\n' ' ')" "1 2 3 " \
	"collation unknown: ORDER BY a number still merged"
is "$(run app_en "SELECT id, w FROM words ORDER BY w COLLATE \"C\", id LIMIT 2" | cut -d'|' -f1 | tr '\n' ' ')" "19 18 " \
	"collation unknown: ORDER BY text COLLATE \"C\" merged in byte order"
ok "shardpool exits cleanly" sp_stop

done_testing
