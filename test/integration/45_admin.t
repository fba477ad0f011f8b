#!/bin/bash
# 45_admin.t - the admin console's command language and what it acts on: the whole
# query string is parsed (trailing words are a 42601 syntax error, never ignored;
# several commands separated by ';' run in order, each with its own result, and a
# syntax error anywhere runs none of them); PAUSE db / RESUME db act on that database
# only, an unknown name is an error; RELOAD (and SIGHUP) say which changes of the file
# they could not apply (a WARNING in the log, a NOTICE to the admin client).
# query_wait_timeout is 1 s: a client waiting out a PAUSE (global or of its database)
# is not timed out, however long the pause.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0

sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction default_pool_size=5 \
	query_wait_timeout=1 stats_users=md5user log_level=info
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
# paused DB: the paused column of SHOW DATABASES for that database
paused() { adm "SHOW DATABASES" | awk -F'|' -v d="$1" '$1 == d {print $NF; exit}'; }

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
like "$out" "ERROR:  42601: unknown admin command \"SUSPEND\"" "SUSPEND does not exist: 42601"
is "$(paused plain)" no "after all these: plain is not paused"

# an error stops the rest of the string, as in PostgreSQL; what ran before stays done
out=$(adm "SHOW VERSION; RESUME nosuchdb; SHOW MEM")
like "$out" "^shardpool [^"$'\n'"]*"$'\n'"ERROR:  3D000: " "an error at run time: the statements before it ran"
unlike "$out" "clients\|" "... the statements after it did not"

# a stats user: SHOW runs, PAUSE is refused and pauses nothing
out=$(stats "SHOW VERSION; PAUSE")
like "$out" "^shardpool [^"$'\n'"]*"$'\n'"ERROR:  28000: only admin_users" "stats user: SHOW VERSION; PAUSE: SHOW runs, PAUSE refused"
is "$(q plain "SELECT 'not paused'" 5)" "not paused" "... and nothing is paused"

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

# ---------------------------------------------------------------- RELOAD: what it cannot apply
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
primary = host=127.0.0.1 port=$PGPORT0 dbname=app

[table app.t45_new]
key = id
type = integer
EOF
n0=$(grep -c "needs a restart" "$SP_LOG")
out=$(adm "RELOAD")
like "$out" "^NOTICE:  01000: " "RELOAD with changes it cannot apply: a NOTICE"
like "$out" "listen_port" "... naming listen_port"
like "$out" "pool_mode" "... naming pool_mode"
like "$out" "\[database core\] pool_size" "... naming [database core] pool_size"
like "$out" "\[database added\] added" "... naming the added [database added]"
like "$out" "\[table app.t45_new\] added" "... naming the added [table app.t45_new]"
unlike "$out" "ERROR" "... and no error: the reloadable keys were applied"
log=$(tail -n 20 "$SP_LOG")
like "$log" "WARNING.*listen_port changed \(.*\): needs a restart" "the log: a WARNING for listen_port"
like "$log" "WARNING.*\[table app.t45_new\] added: needs a restart" "the log: a WARNING for the added table"
like "$log" "WARNING.*\[database added\] added: needs a restart" "the log: a WARNING for the added database"
is "$(cfg listen_port)" "$SP_PORT" "SHOW CONFIG: listen_port is still the running one"
is "$(cfg pool_mode)" transaction "SHOW CONFIG: pool_mode is still the running one"
is "$(adm "SHOW DATABASES" | awk -F'|' '$1 == "added"' | wc -l)" 0 "SHOW DATABASES: [database added] is not there"

# SIGHUP: the same warnings in the log
kill -HUP "$SP_PID"
sleep 1
n1=$(grep -c "needs a restart" "$SP_LOG")
ok "SIGHUP: the log warns again about the changes it cannot apply ($n0 -> $n1 lines)" test "$n1" -ge $((n0 + 10))

# removing a database or table: warned too
cp "$SP_TMP/orig.ini" "$SP_CONFIG"
sed '/^\[database core\]$/,$d' "$SP_TMP/orig.ini" >"$SP_CONFIG"
grep -q '^\[database core\]' "$SP_CONFIG" && diag "the edited config still has [database core]"
out=$(adm "RELOAD")
like "$out" "\[database core\] removed" "RELOAD after removing [database core]: named in the NOTICE"
is "$(q core "SELECT 'core stays'" 5)" "core stays" "... and core still serves clients until a restart"
cp "$SP_TMP/orig.ini" "$SP_CONFIG"
is "$(adm "RELOAD")" "" "back to the file shardpool runs with: RELOAD without a notice"

done_testing
