#!/bin/bash
# 45_admin.t - the admin console's command language and what it acts on: the whole
# query string is parsed (trailing words are a 42601 syntax error, never ignored;
# several commands separated by ';' run in order, each with its own result, and a
# syntax error anywhere runs none of them); PAUSE db / RESUME db act on that database
# only, an unknown name is an error; RELOAD (and SIGHUP) apply databases added and
# removed (a connected client keeps a removed one), their keys and server lines (an open
# transaction finishes on the old server), replicas added and removed, and say which
# changes of the file they could not apply (a WARNING in the log, a NOTICE to the admin
# client).
# query_wait_timeout is 1 s: a client waiting out a PAUSE (global or of its database)
# is not timed out, however long the pause.
# The pgbouncer commands: SHOW STATS / STATS_TOTALS / STATS_AVERAGES / TOTALS (pgbouncer's
# column names; the counts follow the transactions run, the averages the last
# stats_period, 1 s here), SHOW LISTS / USERS / STATE / HELP; PAUSE returns only when the
# running transactions are done (timed against pg_sleep), also when its client leaves or
# a RESUME ends it; WAIT_CLOSE, RECONNECT (new backends after them), KILL (ends connected
# clients), DISABLE / ENABLE, SUSPEND refused.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0

sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction default_pool_size=5 \
	query_wait_timeout=1 stats_users=md5user log_level=info stats_period=1
cat >>"$SP_CONFIG" <<EOF

[database core]
[shard core.0]
primary = host=127.0.0.1 port=$PGPORT0 dbname=app
EOF
cp "$SP_CONFIG" "$SP_TMP/orig.ini"
sp_start

# adm SQL: the admin console as app (an admin user), errors and notices included,
# SQLSTATEs shown
adm() { PGPASSWORD=secret timeout 20 psql -X -q -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "$1" 2>&1; }
# stats SQL: the same as md5user, a stats user
stats() { PGPASSWORD=md5secret timeout 20 psql -X -q -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U md5user -d shardpool -c "$1" 2>&1; }
# q DB SQL [SECONDS]: a client through shardpool with a time limit (default 10 s)
q() { PGPASSWORD=secret timeout "${3:-10}" psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$1" -c "$2" 2>&1; }
cfg() { adm "SHOW CONFIG" | awk -F'|' -v k="$1" '$1 == k {print $2}'; }
# col COMMAND ROWKEY COLUMN: in the result of an admin command, the value of COLUMN (by
# its name in the header) in the row whose first column is ROWKEY
col() {
	PGPASSWORD=secret timeout 20 psql -X -q -A -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "$1" 2>&1 |
		awk -F'|' -v r="$2" -v c="$3" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == c) k = i; next}
			k && $1 == r {print $k; exit}'
}
# header COMMAND: the column names of its result, '|'-separated
header() { PGPASSWORD=secret timeout 20 psql -X -q -A -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "$1" 2>&1 | head -n 1; }
# paused DB: the paused column of SHOW DATABASES for that database
paused() { col "SHOW DATABASES" "$1" paused; }
# backends DB: the backend pids of the server connections of that database, sorted
backends() { adm "SHOW SERVERS" | awk -F'|' -v d="$1" '$3 == d {print $8}' | sort -n | tr '\n' ' '; }

is "$(q plain "SELECT 'warm'")" warm "database plain answers"
is "$(q core "SELECT 'warm'")" warm "database core answers"

# ---------------------------------------------------------------- the command language
out=$(adm "SHOW VERSION; SHOW MEM")
like "$out" "^shardpool [^"$'\n'"]*"$'\n'"clients\|[0-9]+"$'\n'"servers\|" \
	"SHOW VERSION; SHOW MEM: both run, one result each, in order"

out=$(adm "PAUSE; RESUME")
is "$out" "" "PAUSE; RESUME: no error"
is "$(q plain "SELECT 'after pause; resume'" 5)" "after pause; resume" \
	"PAUSE; RESUME runs both: a client is not left waiting"

like "$(adm "  show   version ;  ")" "^shardpool [0-9][^"$'\n'"]*$" "lower case, spaces and a trailing ';'"
like "$(adm "SHOW VERSION;;")" "^shardpool [^"$'\n'"]*$" "an empty statement between ';' is fine"
like "$(adm $'-- a comment\nSHOW /* inside */ VERSION; -- after')" "^shardpool [^"$'\n'"]*$" \
	"-- and /* */ comments are skipped"
like "$(adm "/* a /* nested */ comment */ SHOW VERSION")" "^shardpool " "nested /* */ comments, as in PostgreSQL"
is "$(adm ";")" "" "';' alone: an empty query, no error"
like "$(adm 'SHOW "VERSION"')" "^shardpool " "a quoted identifier as the SHOW subject"
like "$(adm "SHOW ROUTE CACHE")" "^[0-9]+\|" "SHOW ROUTE CACHE (three words) still works"

# trailing words: a syntax error, and the command does not run
sed -i 's/^default_pool_size = .*/default_pool_size = 7/' "$SP_CONFIG"
out=$(adm "RELOAD now please")
like "$out" "ERROR:  42601: syntax error at or near \"now\"" "RELOAD now please: 42601 naming \"now\""
is "$(cfg default_pool_size)" 5 "... and the RELOAD did not run (default_pool_size still 5)"
cp "$SP_TMP/orig.ini" "$SP_CONFIG"

out=$(adm "SHOW POOLS extra")
like "$out" "ERROR:  42601: syntax error at or near \"extra\"" "SHOW POOLS extra: 42601"
out=$(adm "SHOW VERSION, SHOW MEM")
like "$out" "ERROR:  42601: syntax error at or near \",\"" "SHOW VERSION, SHOW MEM: 42601 at the comma"
unlike "$out" "shardpool " "... and nothing ran"
out=$(adm "SHOW VERSION; FROBNICATE")
like "$out" "ERROR:  42601: unknown admin command \"FROBNICATE\"" "an unknown command after a good one: 42601"
unlike "$out" "shardpool " "... and nothing ran: the whole string is checked first"
out=$(adm "SHOW")
like "$out" "ERROR:  42601: syntax error at end of input" "SHOW alone: syntax error at end of input"
out=$(adm 'PAUSE "plain')
like "$out" "ERROR:  42601: unterminated quoted identifier" "an unterminated quoted identifier"
out=$(adm "SHOW VERSION /* not closed")
like "$out" "ERROR:  42601: unterminated /\* comment" "an unterminated /* comment"
out=$(adm "SUSPEND")
like "$out" "ERROR:  0A000: SUSPEND is not supported" "SUSPEND: 0A000, shardpool has no online restart"
out=$(adm "SHOW VERSION; SUSPEND; SHOW MEM")
unlike "$out" "clients\|" "... and it stops the rest of the string like any error"
is "$(paused plain)" no "after all these: plain is not paused"

# what drivers and GUI tools send on connecting: SET / SHOW of session settings are
# accepted and ignored, as pgbouncer does (also for a stats user); other names still fail
out=$(adm "SET client_encoding = 'UTF8'; SET application_name TO 'pgAdmin 4'; SHOW client_encoding")
like "$out" "NOTICE:  00000: SET ignored" "SET client_encoding / application_name: a NOTICE says it is ignored"
like "$out" "UTF8\$" "... no error, and SHOW client_encoding answers UTF8"
is "$(adm "SHOW TimeZone")" GMT "SHOW TimeZone answers, as pgbouncer's"
like "$(stats "SET extra_float_digits = 3")" "SET ignored" "a stats user may SET extra_float_digits (ignored)"
like "$(adm "SET search_path = public")" "ERROR:  42704: " "SET of another unknown name: 42704"
is "$(header "SHOW POOLS" | cut -d'|' -f12-15)" "sv_other|maxwait|maxwait_us|pool_mode" \
	"SHOW POOLS: pgbouncer's maxwait (seconds) and maxwait_us columns"

# an error stops the rest of the string, as in PostgreSQL; what ran before stays done
out=$(adm "SHOW VERSION; RESUME nosuchdb; SHOW MEM")
like "$out" "^shardpool [^"$'\n'"]*"$'\n'"ERROR:  3D000: " "an error at run time: the statements before it ran"
unlike "$out" "clients\|" "... the statements after it did not"

# a stats user: SHOW runs, PAUSE is refused and pauses nothing
out=$(stats "SHOW VERSION; PAUSE")
like "$out" "^shardpool [^"$'\n'"]*"$'\n'"ERROR:  28000: only admin_users" "stats user: SHOW VERSION; PAUSE: SHOW runs, PAUSE refused"
is "$(q plain "SELECT 'not paused'" 5)" "not paused" "... and nothing is paused"

# the extended protocol (JDBC, psycopg's prepare): refused at its first message, as
# PostgreSQL refuses a failed batch, so a Parse and a Flush get the error without a
# Sync; the rest up to Sync is dropped, a Sync gets ReadyForQuery; simple queries work
if [ -x "$RAW" ]; then
	out=$(raw "$SP_PORT" startup:app:shardpool auth:secret "P::SHOW VERSION" H timeout:3000 read)
	like "$out" "E 0A000 the admin console supports only the simple query protocol" \
		"extended protocol: Parse and Flush get the 0A000 error at once, without a Sync"
	out=$(raw "$SP_PORT" startup:app:shardpool auth:secret "P::SHOW VERSION" "B::" "D:P:" "E:" S read \
		"Q:SHOW VERSION" read S read)
	like "$out" "login ok"$'\n'"E 0A000 [^"$'\n'"]*"$'\n'"Z I"$'\n'"T version"$'\n'"D shardpool [^"$'\n'"]*"$'\n'"C SHOW 1"$'\n'"Z I"$'\n'"Z I\$" \
		"extended batch: one error, ReadyForQuery at its Sync; then a simple query; a lone Sync: ReadyForQuery"
else
	skip "rawclient is not built" 2
fi

# numbers are sent as int4/int8, as pgbouncer sends them: a script compares them as numbers
if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
	out=$(timeout 20 /usr/bin/python3 - "$SP_PORT" <<'PY' 2>&1
import sys, psycopg
c = psycopg.connect("host=127.0.0.1 port=%s user=app password=secret dbname=shardpool" % sys.argv[1], autocommit=True)
bad = []
for cmd, cols in (("SHOW POOLS", ("shard", "port", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login",
                                    "maxwait", "maxwait_us", "xacts", "queries")),
                  ("SHOW CLIENTS", ("id", "queries", "xacts")), ("SHOW SERVERS", ("id", "backend_pid", "xacts")),
                  ("SHOW DATABASES", ("shards", "pool_size", "shard")), ("SHOW MEM", ("count",)),
                  ("SHOW ROUTE CACHE", ("hits", "entries")), ("SHOW HEALTH", ("shard", "port", "lag_bytes")),
                  ("SHOW STATS", ("total_xact_count",)), ("SHOW LISTS", ("items",))):
    cur = c.execute(cmd)
    names = [d.name for d in cur.description]
    rows = cur.fetchall()
    if not rows:
        bad.append(cmd + ": no rows")
    for r in rows:
        for col in cols:
            if not isinstance(r[names.index(col)], int):
                bad.append("%s %s: %r" % (cmd, col, r[names.index(col)]))
print(" ".join(sorted(set(bad))) or "ok")
PY
	)
	is "$out" ok "SHOW POOLS, CLIENTS, SERVERS, DATABASES, MEM, ROUTE CACHE, HEALTH: counts are numbers for a driver"
else
	skip "psycopg is not installed: column types" 1
fi

# ---------------------------------------------------------------- PAUSE db / RESUME db
is "$(adm "PAUSE plain")" "" "PAUSE plain"
is "$(paused plain)" yes "SHOW DATABASES: plain is paused"
is "$(paused core)" no "SHOW DATABASES: core is not"
is "$(q core "SELECT 'core runs'" 5)" "core runs" "PAUSE plain: database core still serves clients"
q plain "SELECT 'plain waited'" 30 >"$SP_TMP/waiter.out" &
waiter=$!
# a user without a pool yet on plain: its new pool is paused too
PGPASSWORD=md5secret timeout 30 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U md5user -d plain \
	-c "SELECT 'new pool waited'" >"$SP_TMP/waiter2.out" 2>&1 &
waiter2=$!
sleep 2
ok "PAUSE plain: a client of plain waits" kill -0 "$waiter"
ok "PAUSE plain: a client of plain in a pool created after the PAUSE waits too" kill -0 "$waiter2"
waiting=$(adm "SHOW POOLS" | awk -F'|' '$1 == "plain" {w += $8} END {print w + 0}')
ok "SHOW POOLS: clients of plain are waiting ($waiting)" test "$waiting" -ge 1
is "$(adm "PAUSE plain")" "" "PAUSE plain again: no error"
is "$(adm "RESUME plain")" "" "RESUME plain"
wait "$waiter"
is "$(cat "$SP_TMP/waiter.out")" "plain waited" "RESUME plain: the waiting client of plain proceeds"
wait "$waiter2"
is "$(cat "$SP_TMP/waiter2.out")" "new pool waited" "RESUME plain: the client of the new pool proceeds"
is "$(paused plain)" no "SHOW DATABASES: plain is no longer paused"

out=$(adm "PAUSE nosuchdb")
like "$out" "ERROR:  3D000: .*nosuchdb" "PAUSE of an unknown database: 3D000"
is "$(paused plain)$(paused core)" nono "... and nothing is paused"
out=$(adm "RESUME nosuchdb")
like "$out" "ERROR:  3D000: .*nosuchdb" "RESUME of an unknown database: 3D000"
out=$(adm 'PAUSE "PLAIN"')
like "$out" "ERROR:  3D000: " "a quoted name is matched exactly: \"PLAIN\" is not plain"
is "$(adm 'PAUSE PLAIN; RESUME "plain"')" "" "an unquoted name folds to lower case; a quoted one is exact"
is "$(paused plain)" no "... plain is not paused after PAUSE PLAIN; RESUME \"plain\""

# a global PAUSE still pauses everything; RESUME without a name resumes everything
is "$(adm "PAUSE core; PAUSE")" "" "PAUSE core; PAUSE"
is "$(paused plain)$(paused core)" yesyes "both paused"
out=$(adm "RESUME core")
like "$out" "NOTICE:  .*still paused" "RESUME core during a global PAUSE: a NOTICE that it stays paused"
is "$(adm "PAUSE core; RESUME")" "" "RESUME without a name"
is "$(paused plain)$(paused core)" nono "RESUME without a name resumes every database"
is "$(q core "SELECT 'core again'" 5)" "core again" "core serves clients again"


# ---------------------------------------------------------------- SHOW HELP, STATE, LISTS, USERS
out=$(adm "SHOW HELP")
like "$out" "NOTICE:  00000: Console usage" "SHOW HELP: a NOTICE \"Console usage\", as pgbouncer"
for c in "SHOW HELP|CONFIG|DATABASES" "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS" "LISTS" "USERS" "STATE" \
	"PAUSE \[<db>\]" "RESUME \[<db>\]" "DISABLE <db>" "ENABLE <db>" "RECONNECT \[<db>\]" "KILL <db>" \
	"WAIT_CLOSE \[<db>\]" "RELOAD" "SHUTDOWN"; do
	like "$out" "DETAIL:  .*$c" "SHOW HELP lists $c"
done
like "$(stats "SHOW HELP")" "Console usage" "a stats user may run SHOW HELP"

is "$(adm "SHOW STATE" | tr '\n' ' ')" "active|yes paused|no suspended|no " "SHOW STATE: active"
is "$(header "SHOW LISTS")" "list|items" "SHOW LISTS: pgbouncer's columns"
is "$(adm "SHOW LISTS" | cut -d'|' -f1 | tr '\n' ' ')" \
	"databases users pools free_clients used_clients login_clients free_servers used_servers dns_names dns_zones dns_queries dns_pending " \
	"SHOW LISTS: pgbouncer's rows, in its order"
is "$(col "SHOW LISTS" databases items)" 3 "SHOW LISTS: databases = 3 (app, plain, core)"
is "$(col "SHOW LISTS" pools items)" "$(adm "SHOW POOLS" | wc -l)" "SHOW LISTS: pools = the rows of SHOW POOLS"
n=$(col "SHOW LISTS" used_clients items)
ok "SHOW LISTS: used_clients counts this admin client ($n)" test "$n" -ge 1
is "$(header "SHOW USERS")" "name|pool_mode" "SHOW USERS: pgbouncer's columns"
users=$(adm "SHOW USERS")
like "$users" "(^|"$'\n'")app\|"$'\n' "SHOW USERS lists app, with no pool_mode of its own"
like "$users" "(^|"$'\n'")md5user\|" "SHOW USERS lists md5user (auth_file)"

# ---------------------------------------------------------------- SHOW STATS
is "$(header "SHOW STATS")" \
	"database|total_xact_count|total_query_count|total_received|total_sent|total_xact_time|total_query_time|total_wait_time|avg_xact_count|avg_query_count|avg_recv|avg_sent|avg_xact_time|avg_query_time|avg_wait_time" \
	"SHOW STATS: pgbouncer's columns"
is "$(header "SHOW STATS_TOTALS")" "database|xact_count|query_count|bytes_received|bytes_sent|xact_time|query_time|wait_time" \
	"SHOW STATS_TOTALS: pgbouncer's columns"
is "$(header "SHOW STATS_AVERAGES")" "database|xact_count|query_count|bytes_received|bytes_sent|xact_time|query_time|wait_time" \
	"SHOW STATS_AVERAGES: pgbouncer's columns"
is "$(adm "SHOW STATS" | cut -d'|' -f1 | sort | tr '\n' ' ')" "app core plain " "SHOW STATS: one row per database"
if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
	types=$(/usr/bin/python3 - "$SP_PORT" <<'PY' 2>&1
import sys, psycopg
c = psycopg.connect(host="127.0.0.1", port=sys.argv[1], user="app", password="secret", dbname="shardpool", autocommit=True)
cur = c.cursor()
cur.execute("SHOW STATS", prepare=False)
print(" ".join(str(d.type_code) for d in cur.description), type(cur.fetchone()[1]).__name__)
PY
)
	is "$types" "25 20 20 20 20 20 20 20 20 20 20 20 20 20 20 int" "SHOW STATS: a driver reads the numbers as int8"
fi

x0=$(col "SHOW STATS" core total_xact_count)
q0=$(col "SHOW STATS" core total_query_count)
r0=$(col "SHOW STATS" core total_received)
s0=$(col "SHOW STATS" core total_sent)
t0=$(col "SHOW STATS" core total_xact_time)
qt0=$(col "SHOW STATS" core total_query_time)
printf '%s\n' "SELECT 1;" "SELECT 2;" "SELECT pg_sleep(0.3);" "BEGIN;" "SELECT 3;" "SELECT 4;" "COMMIT;" >"$SP_TMP/txns.sql"
PGPASSWORD=secret timeout 20 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d core -f "$SP_TMP/txns.sql" >/dev/null 2>&1
is "$(( $(col "SHOW STATS" core total_xact_count) - x0 ))" 4 "SHOW STATS: 3 single statements and one BEGIN..COMMIT: total_xact_count +4"
is "$(( $(col "SHOW STATS" core total_query_count) - q0 ))" 7 "... total_query_count +7"
r1=$(col "SHOW STATS" core total_received)
s1=$(col "SHOW STATS" core total_sent)
ok "... total_received grew by the client's bytes ($r0 -> $r1)" test "$((r1 - r0))" -ge 100
ok "... total_sent grew ($s0 -> $s1)" test "$((s1 - s0))" -ge 100
dt=$(( $(col "SHOW STATS" core total_xact_time) - t0 ))
ok "... total_xact_time grew by at least the pg_sleep(0.3) ($dt us)" test "$dt" -ge 300000 -a "$dt" -lt 5000000
dq=$(( $(col "SHOW STATS" core total_query_time) - qt0 ))
ok "... total_query_time too ($dq us)" test "$dq" -ge 300000 -a "$dq" -lt 5000000
is "$(col "SHOW STATS_TOTALS" core xact_count)" "$(col "SHOW STATS" core total_xact_count)" \
	"SHOW STATS_TOTALS: xact_count is SHOW STATS' total_xact_count"
tot=$(adm "SHOW TOTALS" | awk -F'|' '$1 == "total_xact_count" {print $2}')
sum=$(adm "SHOW STATS" | awk -F'|' '{s += $2} END {print s}')
is "$tot" "$sum" "SHOW TOTALS: total_xact_count is the sum over the databases"

# averages: over the last stats_period (1 s) while a client runs 50 ms transactions
yes "SELECT pg_sleep(0.05);" | head -n 60 >"$SP_TMP/sleeps.sql"
PGPASSWORD=secret timeout 20 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d core -f "$SP_TMP/sleeps.sql" >/dev/null 2>&1 &
loader=$!
sleep 2.3
ax=$(col "SHOW STATS_AVERAGES" core xact_count)
at=$(col "SHOW STATS_AVERAGES" core xact_time)
aq=$(col "SHOW STATS" core avg_query_time)
ar=$(col "SHOW STATS" core avg_recv)
wait "$loader"
ok "SHOW STATS_AVERAGES: about 20 transactions a second while 50 ms ones run ($ax)" test "$ax" -ge 8 -a "$ax" -le 25
ok "... avg xact_time about 50 ms ($at us)" test "$at" -ge 45000 -a "$at" -lt 200000
ok "SHOW STATS: avg_query_time about 50 ms ($aq us)" test "$aq" -ge 45000 -a "$aq" -lt 200000
ok "SHOW STATS: avg_recv > 0 ($ar bytes/s)" test "$ar" -gt 0
sleep 2.2
is "$(col "SHOW STATS" core avg_xact_count)" 0 "a period later without traffic: avg_xact_count is 0 again"
# a new stats_period applies at once, not at the next tick of the old one (an hour here)
adm "SET stats_period = 1h" >/dev/null
sleep 1.5
is "$(adm "SET stats_period = 1")" "" "SET stats_period = 1h, then back to 1 s"
PGPASSWORD=secret timeout 20 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d core -f "$SP_TMP/sleeps.sql" >/dev/null 2>&1 &
loader=$!
sleep 2.3
ax=$(col "SHOW STATS_AVERAGES" core xact_count)
wait "$loader"
ok "... the averages follow the 1 s period at once ($ax transactions a second)" test "$ax" -ge 8 -a "$ax" -le 25

# ---------------------------------------------------------------- PAUSE waits for running transactions
is "$(q plain "SELECT 'warm plain'")" "warm plain" "plain answers before the PAUSE tests"
t=$(now_ms)
is "$(adm "PAUSE plain")" "" "PAUSE plain with nothing running"
el=$(( $(now_ms) - t ))
ok "... returns at once (${el} ms)" test "$el" -lt 1000
is "$(backends plain)" "" "... and the idle server connections of plain are closed"
is "$(adm "RESUME plain")" "" "RESUME plain"

q plain "SELECT 'slept' FROM pg_sleep(2)" 20 >"$SP_TMP/sleeper.out" &
sleeper=$!
sleep 0.5
t=$(now_ms)
out=$(adm "PAUSE plain")
el=$(( $(now_ms) - t ))
is "$out" "" "PAUSE plain while a pg_sleep(2) runs there"
ok "... returns only after the transaction finished (${el} ms)" test "$el" -ge 1200 -a "$el" -lt 5000
ok "... by then the transaction is done" sh -c "! kill -0 $sleeper 2>/dev/null"
wait "$sleeper"
is "$(cat "$SP_TMP/sleeper.out")" slept "... and its client got its result"
is "$(backends plain)" "" "... and the server connections of plain are closed"
is "$(adm "SHOW DATABASES" | awk -F'|' '$1 == "core" {print $8}')" no "... core is not paused"
is "$(adm "RESUME plain")" "" "RESUME plain"
is "$(q plain "SELECT 'after pause'")" "after pause" "plain serves clients again, on new connections"

# the rest of a query string runs once the PAUSE is done
q plain "SELECT pg_sleep(1)" 20 >/dev/null &
sleeper=$!
sleep 0.3
out=$(adm "PAUSE plain; SHOW VERSION; RESUME plain")
like "$out" "^shardpool " "PAUSE plain; SHOW VERSION; RESUME plain: the commands after the PAUSE run when it is done"
wait "$sleeper"
is "$(paused plain)" no "... plain resumed"

# a global PAUSE waits for every database; SHOW STATE says paused
q core "SELECT pg_sleep(1.5)" 20 >/dev/null &
sleeper=$!
sleep 0.3
t=$(now_ms)
is "$(adm "PAUSE")" "" "PAUSE (every database) while core runs a pg_sleep(1.5)"
el=$(( $(now_ms) - t ))
ok "... waits for it (${el} ms)" test "$el" -ge 800
is "$(adm "SHOW STATE" | tr '\n' ' ')" "active|no paused|yes suspended|no " "SHOW STATE: paused"
wait "$sleeper"
is "$(adm "RESUME")" "" "RESUME"
is "$(adm "SHOW STATE" | head -n 1)" "active|yes" "SHOW STATE: active again"

# the admin client leaves while its PAUSE waits: nothing is left pointing at it
q plain "SELECT 'slept' FROM pg_sleep(2)" 20 >"$SP_TMP/sleeper.out" &
sleeper=$!
sleep 0.3
PGPASSWORD=secret timeout 0.7 psql -X -q -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "PAUSE plain" >/dev/null 2>&1
is "$?" 124 "PAUSE plain given up by its client (timeout) while pg_sleep(2) runs"
wait "$sleeper"
is "$(cat "$SP_TMP/sleeper.out")" slept "... the transaction finishes"
sleep 0.3
ok "... shardpool is still running" kill -0 "$SP_PID"
like "$(adm "SHOW VERSION")" "^shardpool " "... and answers"
like "$(cat "$SP_LOG")" "left while PAUSE waited" "... the log says the PAUSE was given up"
is "$(paused plain)" yes "... plain stays paused (as in pgbouncer) until RESUME"
is "$(adm "RESUME plain")" "" "RESUME plain"

# Ctrl-C on a waiting PAUSE (psql sends a CancelRequest): 57014 at once, and the pause
# is undone
q plain "SELECT 'slept' FROM pg_sleep(2)" 20 >"$SP_TMP/sleeper.out" &
sleeper=$!
sleep 0.3
t=$(now_ms)
out=$(PGPASSWORD=secret timeout -s INT 0.7 psql -X -q -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "PAUSE plain" 2>&1)
el=$(( $(now_ms) - t ))
like "$out" "57014: canceling statement due to user request \(the PAUSE is undone\)" "Ctrl-C on a waiting PAUSE plain: 57014"
ok "... at once, not when the transaction ends (${el} ms)" test "$el" -lt 1500
is "$(paused plain)" no "... plain is not paused"
is "$(q plain "SELECT 'runs'" 5)" runs "... and serves new transactions while the other one still runs"
wait "$sleeper"
is "$(cat "$SP_TMP/sleeper.out")" slept "... which finishes"

# RESUME from another admin client ends a waiting PAUSE with an error
q plain "SELECT pg_sleep(2)" 20 >/dev/null &
sleeper=$!
sleep 0.3
adm "PAUSE plain" >"$SP_TMP/pause.out" &
pauser=$!
sleep 0.5
is "$(adm "RESUME plain")" "" "RESUME plain while a PAUSE plain waits"
wait "$pauser"
like "$(cat "$SP_TMP/pause.out")" "ERROR:  57014: RESUME ended this PAUSE" "... the PAUSE gets 57014"
wait "$sleeper"

# ---------------------------------------------------------------- RECONNECT, WAIT_CLOSE
q plain "SELECT 1" >/dev/null
old=$(backends plain)
ok "plain has a server connection ($old)" test -n "$old"
is "$(adm "RECONNECT plain")" "" "RECONNECT plain"
is "$(backends plain)" "" "... closes the idle server connections at once"
new=$(q plain "SELECT pg_backend_pid()")
unlike " $old" " $new " "... the next transaction runs on a new backend ($new)"

q plain "SELECT pg_backend_pid() FROM pg_sleep(1.5)" 20 >"$SP_TMP/busy.out" &
busy=$!
sleep 0.4
is "$(adm "RECONNECT plain")" "" "RECONNECT plain while a transaction runs: returns at once"
wait "$busy"
busypid=$(cat "$SP_TMP/busy.out")
sleep 0.2
unlike " $(backends plain)" " $busypid " "... the busy connection ($busypid) is closed once released"
isnt "$(q plain "SELECT pg_backend_pid()")" "$busypid" "... and not reused"

q plain "SELECT pg_backend_pid() FROM pg_sleep(1.5)" 20 >"$SP_TMP/busy.out" &
busy=$!
sleep 0.4
t=$(now_ms)
is "$(adm "WAIT_CLOSE plain")" "" "WAIT_CLOSE plain while a transaction runs there"
el=$(( $(now_ms) - t ))
ok "... returns once its connection is closed (${el} ms)" test "$el" -ge 700 -a "$el" -lt 5000
wait "$busy"
busypid=$(cat "$SP_TMP/busy.out")
unlike " $(backends plain)" " $busypid " "... the connection ($busypid) is gone"
t=$(now_ms)
is "$(adm "WAIT_CLOSE")" "" "WAIT_CLOSE with nothing running"
ok "... returns at once ($(( $(now_ms) - t )) ms)" test "$(( $(now_ms) - t ))" -lt 1000
is "$(q plain "SELECT 'after wait_close'")" "after wait_close" "plain serves clients after WAIT_CLOSE"

# ---------------------------------------------------------------- KILL
q plain "SELECT pg_sleep(10)" 20 >"$SP_TMP/killed.out" &
victim=$!
sleep 0.5
t=$(now_ms)
is "$(adm "KILL plain")" "" "KILL plain while a client runs pg_sleep(10)"
wait "$victim"
rc=$?
el=$(( $(now_ms) - t ))
isnt "$rc" 0 "... the client fails"
ok "... at once (${el} ms)" test "$el" -lt 2000
like "$(cat "$SP_TMP/killed.out")" "terminated by KILL plain" "... with shardpool's message"
is "$(backends plain)" "" "... no server connection of plain is left"
is "$(paused plain)" yes "... plain is paused"
is "$(q core "SELECT 'core lives'")" "core lives" "... core is not affected"
q plain "SELECT 'after kill'" 20 >"$SP_TMP/afterkill.out" &
waiter=$!
sleep 1.5
ok "a new client of plain waits after KILL" kill -0 "$waiter"
is "$(adm "RESUME plain")" "" "RESUME plain"
wait "$waiter"
is "$(cat "$SP_TMP/afterkill.out")" "after kill" "... the waiting client proceeds"
like "$(adm "KILL")" "ERROR:  42601: syntax error at end of input" "KILL needs a database: 42601"
like "$(adm "KILL nosuchdb")" "ERROR:  3D000: " "KILL of an unknown database: 3D000"
like "$(stats "KILL plain")" "ERROR:  28000: only admin_users" "a stats user may not KILL"

# ---------------------------------------------------------------- DISABLE, ENABLE
is "$(adm "DISABLE plain")" "" "DISABLE plain"
is "$(col "SHOW DATABASES" plain disabled)" yes "SHOW DATABASES: plain disabled"
out=$(PGPASSWORD=secret timeout 10 psql -X -q -A -t -v VERBOSITY=verbose -h 127.0.0.1 -p "$SP_PORT" -U app -d plain -c "SELECT 1" 2>&1)
like "$out" "FATAL:  database \"plain\" is not currently accepting connections \(DISABLE" \
	"a new client of a disabled database is refused, saying why"
is "$(q core "SELECT 'core open'")" "core open" "... core still accepts clients"
is "$(adm "ENABLE plain")" "" "ENABLE plain"
is "$(col "SHOW DATABASES" plain disabled)" no "SHOW DATABASES: plain enabled"
is "$(q plain "SELECT 'enabled'")" enabled "plain accepts clients again"
like "$(adm "DISABLE")" "ERROR:  42601: " "DISABLE needs a database: 42601"
like "$(adm "ENABLE nosuchdb")" "ERROR:  3D000: " "ENABLE of an unknown database: 3D000"

like "$(adm "SHUTDOWN NOW")" "ERROR:  42601: .*SHUTDOWN takes WAIT_FOR_SERVERS, WAIT_FOR_CLIENTS or nothing" \
	"SHUTDOWN with an unknown mode: 42601, and no shutdown"
is "$(q plain "SELECT 'not shut down'")" "not shut down" "... shardpool still serves"

# ---------------------------------------------------------------- SET
is "$(adm "SET default_pool_size = 7")" "" "SET default_pool_size = 7"
is "$(cfg default_pool_size)" 7 "... SHOW CONFIG shows it"
is "$(adm "SET default_pool_size TO '8'; SET log_level = debug")" "" "SET ... TO '8', a quoted value, two SETs in one string"
is "$(cfg default_pool_size)" 8 "... default_pool_size is 8"
is "$(cfg log_level)" debug "... log_level is debug"
is "$(adm "SET server_reset_query = 'SELECT ''x'''")" "" "SET a string with a quote in it"
is "$(cfg server_reset_query)" "SELECT 'x'" "... kept unquoted"
is "$(adm "SET server_reset_query = 'DISCARD ALL'; SET log_level = info")" "" "SET them back"
like "$(adm "SET listen_port = 1")" "ERROR:  55P02: listen_port cannot be changed with SET" "SET of a restart key: 55P02"
like "$(adm "SET auth_file = /tmp/x")" "ERROR:  55P02: auth_file cannot be changed with SET: edit the file and RELOAD" \
	"SET of a path: 55P02, saying to edit the file"
like "$(adm "SET nosuchkey = 1")" "ERROR:  42704: unrecognized configuration parameter \"nosuchkey\"" "SET of an unknown key: 42704"
like "$(adm "SET default_pool_size = lots")" "ERROR:  22023: .*expected an integer" "SET of a bad value: 22023"
like "$(adm "SET min_pool_size = 100")" "ERROR:  22023: .*min_pool_size = 100 is larger than default_pool_size = 8" \
	"SET against another key's value: 22023, and not applied"
is "$(cfg min_pool_size)" 0 "... min_pool_size unchanged"
like "$(adm "SET default_pool_size =")" "ERROR:  42601: " "SET without a value: 42601"
like "$(stats "SET default_pool_size = 9")" "ERROR:  .*only admin_users" "a stats user cannot SET"
is "$(cfg default_pool_size)" 8 "... default_pool_size still 8"
is "$(adm "RELOAD")" "" "RELOAD"
is "$(cfg default_pool_size)" 5 "... takes the file's value again"

# ---------------------------------------------------------------- RELOAD: what it applies, what it cannot
PGPORT1=$SB_PRIMARY_PORT_1
RPORT0=$SB_REPLICA_PORT_0_0
out=$(adm "RELOAD")
is "$out" "" "RELOAD of an unchanged file: no notice"
sed -i 's/^default_pool_size = .*/default_pool_size = 6/' "$SP_CONFIG"
is "$(adm "RELOAD")" "" "RELOAD with only a reloadable key changed: no notice"
is "$(cfg default_pool_size)" 6 "... and it is applied"

newport=$(free_port)
sed -i "s/^listen_port = .*/listen_port = $newport/; s/^pool_mode = .*/pool_mode = session/" "$SP_CONFIG"
sed -i 's/^\[database core\]$/&\npool_size = 3/' "$SP_CONFIG"
cat >>"$SP_CONFIG" <<EOF

[database added]
[shard added.0]
primary = host=127.0.0.1 port=$PGPORT1 dbname=app

[table app.t45_new]
key = id
type = integer
EOF
n0=$(grep -c "needs a restart" "$SP_LOG")
out=$(adm "RELOAD")
like "$out" "^NOTICE:  01000: " "RELOAD with changes it cannot apply: a NOTICE"
like "$out" "listen_port" "... naming listen_port"
like "$out" "\[table app.t45_new\] added" "... naming the added [table app.t45_new]"
unlike "$out" "pool_mode|pool_size|\[database" "... and not what it applied: pool_mode, [database core] pool_size, [database added]"
unlike "$out" "ERROR" "... and no error"
log=$(tail -n 20 "$SP_LOG")
like "$log" "WARNING.*listen_port changed \(.*\): needs a restart" "the log: a WARNING for listen_port"
like "$log" "WARNING.*\[table app.t45_new\] added: needs a restart" "the log: a WARNING for the added table"
like "$log" "RELOAD: \[database added\] added" "the log: [database added] added"
is "$(cfg listen_port)" "$SP_PORT" "SHOW CONFIG: listen_port is still the running one"
is "$(cfg pool_mode)" session "SHOW CONFIG: pool_mode is the file's (reloadable)"
is "$(col "SHOW DATABASES" core pool_size)" 3 "SHOW DATABASES: [database core] pool_size = 3 applied"
is "$(col "SHOW DATABASES" added primary)" "127.0.0.1:$PGPORT1" "SHOW DATABASES: [database added] is there"
is "$(q added "SELECT inet_server_port()")" "$PGPORT1" "a client of the added database reaches its server at once"
is "$(col "SHOW POOLS" added pool_mode)" session "... in the pool mode the file now says"

# SIGHUP: the same warnings in the log
kill -HUP "$SP_PID"
sleep 1
n1=$(grep -c "needs a restart" "$SP_LOG")
ok "SIGHUP: the log warns again about the changes it cannot apply ($n0 -> $n1 lines)" test "$n1" -ge $((n0 + 2))

# removing a database: new logins refused, a connected client keeps it
cp "$SP_TMP/orig.ini" "$SP_CONFIG"
is "$(adm "RELOAD")" "" "back to the file shardpool started with: RELOAD without a notice"
is "$(cfg pool_mode)" transaction "... pool_mode is transaction again"

cat >"$SP_TMP/reload.py" <<'PY'
# One client of database core holds its connection (and, in step 2, an open
# transaction) across RELOADs that change the file. argv: port, config, original
# config, primary port 0, primary port 1, replica port 0.
import subprocess, sys, time
import psycopg

port, config, orig, p0, p1, r0 = sys.argv[1:7]
def check(desc, got, exp):
    print("check\t%s\t%s\t%s" % (desc, got, exp), flush=True)
def conn(db):
    return psycopg.connect("host=127.0.0.1 port=%s user=app password=secret dbname=%s" % (port, db))
def reload(text):
    open(config, "w").write(text)
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-p", port,
                        "-U", "app", "-d", "shardpool", "-c", "RELOAD"], capture_output=True, text=True,
                       env={"PGPASSWORD": "secret", "PATH": "/usr/bin:/bin"}, timeout=20)
    return (r.stdout + r.stderr).strip()
def one(c, sql):
    v = c.execute(sql).fetchone()[0]
    c.commit()
    return v
def server_ports(db):
    """the ports of db's server connections, from SHOW SERVERS"""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", port, "-U", "app", "-d",
                          "shardpool", "-c", "SHOW SERVERS"], capture_output=True, text=True,
                         env={"PGPASSWORD": "secret"}, timeout=20).stdout
    return sorted({l.split("|")[6].split(":")[-1] for l in out.splitlines() if l.split("|")[2:3] == [db]})
def wait_port(c, want):
    """run SELECT inet_server_port() until it answers want (10 s at most); the last answer"""
    got = None
    for _ in range(100):
        got = str(c.execute("SELECT inet_server_port()").fetchone()[0])
        if got == want:
            break
        time.sleep(0.1)
    return got
def login_error(db):
    try:
        conn(db).close()
        return "logged in"
    except psycopg.OperationalError as e:
        # psycopg gives no SQLSTATE for a failed login: the message names it
        return "refused: %s" % ('database "%s" does not exist' % db if 'database "%s" does not exist' % db in str(e) else str(e))

base = open(orig).read()
without_core = base[:base.index("[database core]")]

# 1. [database core] removed
held = conn("core")
check("core answers before", one(held, "SELECT 'before'"), "before")
check("RELOAD without [database core]: no notice", reload(without_core), "")
check("a new client of the removed database is refused", login_error("core"), 'refused: database "core" does not exist')
check("the client connected before keeps working", one(held, "SELECT 'still here'"), "still here")
check("RELOAD with [database core] again: no notice", reload(base), "")
check("a new client of core logs in again", one(conn("core"), "SELECT 'back'"), "back")

# 2. core's primary line now names another server, during an open transaction
check("core's server before", str(one(held, "SELECT inet_server_port()")), p0)
held.execute("CREATE TEMP TABLE t45_reload(x int) ON COMMIT DROP")
moved = base.replace("[shard core.0]\nprimary = host=127.0.0.1 port=%s " % p0,
                     "[shard core.0]\nprimary = host=127.0.0.1 port=%s " % p1)
check("the edit names the other server", moved != base, True)
check("RELOAD moving core's primary: no notice", reload(moved), "")
check("the open transaction finishes on the old server",
      str(held.execute("SELECT inet_server_port() FROM (SELECT count(*) FROM t45_reload) s").fetchone()[0]), p0)
held.commit()
check("the same client's next transaction: the new server", str(one(held, "SELECT inet_server_port()")), p1)
check("a new client: the new server", str(one(conn("core"), "SELECT inet_server_port()")), p1)
held.close()
check("SHOW SERVERS: core's server connections all go to the new server", server_ports("core"), [p1])

# 2b. a cancel for a query on the old server reaches the old server
import threading
check("RELOAD back to the first primary: no notice", reload(base), "")
held2 = conn("core")
check("a transaction starts on the first primary", str(held2.execute("SELECT inet_server_port()").fetchone()[0]), p0)
check("RELOAD moving the primary again: no notice", reload(moved), "")
result = {}
def sleeper():
    t0 = time.time()
    try:
        held2.execute("SELECT pg_sleep(5)")
        result["state"] = "finished"
    except psycopg.Error as e:
        result["state"] = e.sqlstate
    result["secs"] = time.time() - t0
th = threading.Thread(target=sleeper)
th.start()
time.sleep(0.5)
held2.cancel()
th.join(10)
check("a cancel of a query running on the old server cancels it (57014)", result.get("state"), "57014")
check("... at once, not after the pg_sleep(5)", result.get("secs", 99) < 3, True)
held2.rollback()
held2.close()

# 3. a replica line added, then removed: reads follow
with_replica = base.replace("[shard core.0]\nprimary = host=127.0.0.1 port=%s dbname=app\n" % p0,
                            "[shard core.0]\nprimary = host=127.0.0.1 port=%s dbname=app\n"
                            "replica = host=127.0.0.1 port=%s dbname=app\n" % (p0, r0))
check("the edit adds a replica", with_replica != base, True)
check("RELOAD adding a replica: no notice", reload(with_replica), "")
c = conn("core")
c.autocommit = True
check("reads reach the added replica once it is probed", wait_port(c, r0), r0)
check("RELOAD removing it: no notice", reload(base), "")
ports = {str(c.execute("SELECT inet_server_port()").fetchone()[0]) for _ in range(20)}
check("reads after the replica is removed: the primary only", sorted(ports), [p0])
check("... and no server connection to the removed replica is left", r0 in server_ports("core"), False)
check("RELOAD adding it back: no notice", reload(with_replica), "")
check("reads reach the replica again (its pool is back in service)", wait_port(c, r0), r0)
check("RELOAD removing it again: no notice", reload(base), "")
c.close()
print("end")
PY
if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
	run_checks reload /usr/bin/python3 "$SP_TMP/reload.py" "$SP_PORT" "$SP_CONFIG" "$SP_TMP/orig.ini" \
		"$PGPORT0" "$PGPORT1" "$RPORT0"
else
	skip "psycopg is not installed: RELOAD with a connected client" 1
fi
cp "$SP_TMP/orig.ini" "$SP_CONFIG"
is "$(adm "RELOAD")" "" "back to the file shardpool started with: RELOAD without a notice"

done_testing
