#!/bin/bash
# 30_params.t - session settings in transaction pooling. Database "plain" gets
# pool_size 1, so every client shares one server connection, transaction after
# transaction. Each scenario is a pgclient script run twice: through shardpool, and
# straight against PostgreSQL where every client has a session of its own. PostgreSQL's
# output is the expected one: one client's SET, RESET, startup parameters, rolled back
# SETs and custom settings must neither leak to another client nor get lost.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PGCLIENT=$SP_BUILDDIR/test/integration/pgclient
[ -x "$PGCLIENT" ] || skip_all "pgclient not built (make check builds it)"
pgc() { timeout 60 "$PGCLIENT" "$@"; }

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0
sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction query_wait_timeout=10
sed -i 's/^\[database plain\]$/&\npool_size = 1/' "$SP_CONFIG"
grep -q '^pool_size = 1$' "$SP_CONFIG" || bail_out "could not give database plain a pool_size"
sp_start

SP="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=plain"
PG="host=127.0.0.1 port=$PGPORT0 user=app password=secret dbname=app"

# every setting the test moves, as one row (a custom setting that is unset or reset reads <unset>)
ALL="SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'), \
current_setting('application_name'), current_setting('search_path'), current_setting('extra_float_digits'), \
current_setting('standard_conforming_strings'), current_setting('client_encoding'), \
coalesce(nullif(current_setting('myapp.x', true), ''), '<unset>')"
SETS="SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'; \
SET application_name = 'clientA'; SET search_path = aschema, public; SET extra_float_digits = -3; \
SET standard_conforming_strings = off; SET client_encoding = 'LATIN1'; SET myapp.x = 'y'"

# scenario NAME DESCRIPTION: runs the script on stdin (CONN stands for the conninfo)
# through shardpool and against PostgreSQL, and compares
scenario() {
	local name=$1 desc=$2 script sp pg
	script=$(cat)
	# (a refused login names the port it tried)
	sp=$(sed "s|CONN|$SP|" <<<"$script" | pgc script 2>&1 | sed -E 's/port [0-9]+ failed/port N failed/')
	pg=$(sed "s|CONN|$PG|" <<<"$script" | pgc script 2>&1 | sed -E 's/port [0-9]+ failed/port N failed/')
	printf '%s\n' "$sp" >"$SP_TMP/$name.sp"
	printf '%s\n' "$pg" >"$SP_TMP/$name.pg"
	if ! is "$sp" "$pg" "$desc"; then
		diag "diff (- PostgreSQL, + shardpool):"
		diag "$(diff "$SP_TMP/$name.pg" "$SP_TMP/$name.sp" | grep '^[<>]' | sed 's/^</-/; s/^>/+/')"
	fi
}

# ---------------------------------------------------------------- A's SETs stay with A
scenario isolation "A's SETs (8 settings and a custom one) stay with A over 10 interleaved transactions; B keeps its defaults" <<EOF
connect A CONN
connect B CONN
exec B $ALL
exec A $SETS
exec A $ALL
params A
exec B $ALL
params B
exec A SHOW search_path
exec B SHOW search_path
exec A SHOW TimeZone
exec B SHOW TimeZone
exec A BEGIN; SELECT 1
send B $ALL
sleep 300
exec A COMMIT
wait B
exec A $ALL
exec B $ALL
exec A $ALL
exec B BEGIN; SELECT 2
send A $ALL
sleep 300
exec B COMMIT
wait A
exec B $ALL
exec A $ALL
exec B $ALL
exec A $ALL
exec B $ALL
exec A $ALL
exec B $ALL
params A
params B
EOF

out=$(cat "$SP_TMP/isolation.sp")
like "$out" "A: Asia/Tokyo\|SQL, DMY\|iso_8601\|clientA\|aschema, public\|-3\|off\|LATIN1\|y" \
	"A sees all of its settings through shardpool"
unlike "$(grep '^B: [A-Z]' <<<"$out")" "Asia/Tokyo|iso_8601|clientA|aschema|LATIN1" \
	"B never sees one of A's reported or unreported settings"
is "$(grep -c '^B: .*|y$' <<<"$out")" 0 "B never sees A's custom setting myapp.x"

# ---------------------------------------------------------------- transactions
scenario rollback "SET inside a rolled-back transaction does not stick; SET LOCAL ends with its transaction" <<EOF
connect A CONN
connect B CONN
exec A SET search_path = before; SET TimeZone = 'Asia/Tokyo'; SET myapp.x = 'before'
exec A BEGIN; SET search_path = rolled; SET TimeZone = 'America/New_York'; SET myapp.x = 'rolled'; SET DateStyle = 'German'
exec A $ALL
exec A ROLLBACK
exec A $ALL
params A
exec B $ALL
exec A BEGIN
exec A SET LOCAL search_path = localonly; SET LOCAL TimeZone = 'Europe/Paris'
exec A $ALL
exec A COMMIT
exec A $ALL
exec B $ALL
exec A BEGIN; SET search_path = failed; SELECT 1/0
exec A ROLLBACK
exec A $ALL
exec A BEGIN; SET search_path = committed; SET myapp.x = 'committed'
exec A COMMIT
exec B $ALL
exec A $ALL
params A
EOF

# ---------------------------------------------------------------- identities and bound names
scenario session_auth "SET SESSION AUTHORIZATION stays with its client: B keeps its own user" <<EOF
connect A CONN
connect B CONN
exec A SET SESSION AUTHORIZATION md5user
exec A SELECT current_user, session_user
exec B SELECT current_user, session_user
exec A SELECT current_user, session_user
exec B SELECT current_user, session_user
exec A RESET SESSION AUTHORIZATION
exec A SELECT current_user, session_user
exec B SELECT current_user, session_user
EOF
TENANT="SELECT coalesce(nullif(current_setting('app.tenant', true), ''), '<unset>')"
scenario bound_name "set_config(\$1, \$2, false) with the name as a parameter: the setting stays with its client, B never sees it" <<EOF
connect A CONN
connect B CONN
prepare A st SELECT set_config(\$1, \$2, false)
execprep A st app.tenant 42
exec A $TENANT
exec B $TENANT
exec A $TENANT
exec B BEGIN; SELECT 1
send A $TENANT
sleep 300
exec B COMMIT
wait A
exec B $TENANT
exec A $TENANT
EOF

# ---------------------------------------------------------------- RESET, DISCARD
scenario reset "RESET ALL, RESET x and DISCARD ALL return to the defaults, for A only" <<EOF
connect A CONN
connect B CONN
exec B SET search_path = bsearch; SET TimeZone = 'Asia/Kolkata'
exec A $SETS
exec A RESET ALL
exec A $ALL
params A
exec B $ALL
exec A $SETS
exec A RESET search_path; RESET TimeZone; RESET myapp.x
exec A $ALL
exec B $ALL
exec A $SETS
exec A DISCARD ALL
exec A $ALL
exec B $ALL
params A
params B
EOF

# ---------------------------------------------------------------- startup parameters
scenario startup "startup parameters (options -c, application_name) apply, survive other clients, and are what RESET returns to" <<EOF
connect S CONN application_name=startapp options='-c search_path=foo -c extra_float_digits=2 -c myapp.x=fromstart' client_encoding=LATIN1
connect B CONN
exec S $ALL
params S
exec B $ALL
params B
exec S $ALL
exec S SET search_path = bar; SET application_name = other; SET extra_float_digits = 0
exec B $ALL
exec S $ALL
exec S RESET search_path; RESET application_name
exec S $ALL
exec B $ALL
exec S RESET ALL
exec S $ALL
params S
exec B $ALL
exec S SHOW search_path
EOF
scenario startup_rollback "a RESET rolled back with its transaction keeps the value set before it" <<EOF
connect S CONN options='-c search_path=foo'
connect B CONN
exec S SET search_path = bar
exec S BEGIN
exec S RESET search_path
exec S ROLLBACK
exec S SHOW search_path
exec B $ALL
exec S SHOW search_path
exec S BEGIN; RESET search_path; SAVEPOINT a; ROLLBACK TO a; COMMIT
exec S SHOW search_path
EOF

# ---------------------------------------------------------------- startup values the server refuses
# PostgreSQL refuses a login whose startup values it refuses, with the error setting them
# gave, as a FATAL. shardpool tries the values a login brings on a server before it lets
# the client in (the session the check ran on, pool_size 1 here, had another client's
# settings), and the next client of that pool has its own settings, not anyone else's.
scenario refused "startup values the server refuses (bad value, unknown name, not settable in a session) refuse the login; the next clients have their own settings" <<EOF
connect A CONN
exec A SET DateStyle = 'SQL, DMY'; SET application_name = 'leaky'; SET search_path = leak; SET myapp.x = 'leaked'
connect X CONN options='-c work_mem=bogus'
connect Y CONN options='-c foo=bar'
connect Z CONN options='-c shared_buffers=1'
connect W CONN options='-c search_path=ok -c DateStyle=bogus' application_name=refused
connect C CONN
exec C $ALL
params C
connect V CONN options='-c work_mem=64MB -c search_path=ok -c myapp.x=v'
exec V SHOW work_mem
exec V $ALL
exec C $ALL
exec A $ALL
connect X2 CONN options='-c work_mem=bogus'
connect V2 CONN options='-c work_mem=64MB -c search_path=ok -c myapp.x=v'
exec V2 $ALL
EOF

# The same values in the startup packet itself (no driver sends those; rawclient does),
# as a user who is not a superuser (42501 for a superuser-only setting): the answer is
# PostgreSQL's, SQLSTATE and message, and the connection ends.
login_answer() { grep -E '^(E [0-9A-Z]{5} |login ok|closed)' | tr '\n' ';'; }
for kv in work_mem=bogus foo=bar shared_buffers=1 log_statement=all DateStyle=bogus myapp.x=fine work_mem=64MB; do
	sp=$(raw "$SP_PORT" "startup:md5user:plain:$kv" auth:md5secret 2>&1 | login_answer)
	pg=$(raw "$PGPORT0" "startup:md5user:app:$kv" auth:md5secret 2>&1 | login_answer)
	is "$sp" "$pg" "startup packet with $kv: the login ends as PostgreSQL's does"
done
# A sharded database: the values are tried on one shard's server.
out=$(raw "$SP_PORT" startup:md5user:app:work_mem=bogus auth:md5secret 2>&1 | login_answer)
is "$out" 'E 22023 invalid value for parameter "work_mem": "bogus";closed;' \
	"sharded database: a startup value the server refuses refuses the login"
out=$(raw "$SP_PORT" "startup:md5user:app:options=-c foo=bar" auth:md5secret 2>&1 | login_answer)
is "$out" 'E 42704 unrecognized configuration parameter "foo";closed;' \
	"sharded database: an unknown name in options refuses the login"
out=$(raw "$SP_PORT" startup:md5user:app:work_mem=3MB auth:md5secret "Q:SHOW work_mem" read 2>&1)
like "$out" "login ok"$'\n'"T [^"$'\n'"]*"$'\n'"D 3MB"$'\n' "sharded database: a startup value the server takes logs in and applies"
# The admin console has no server to ask: startup values are ignored there, as before.
out=$(raw "$SP_PORT" startup:app:shardpool:work_mem=bogus auth:secret 2>&1 | login_answer)
is "$out" "login ok;" "admin console: a startup value is ignored, the login goes on"

# A value the shard the login was checked on takes and another shard refuses (a text
# search configuration only shard 0 has): the statement sent to shard 1 cannot run with
# the client's settings; the session ends with the server's error, no rows.
on 0 "DROP TEXT SEARCH CONFIGURATION IF EXISTS public.t30_ts; CREATE TEXT SEARCH CONFIGURATION public.t30_ts (COPY = pg_catalog.simple)" >/dev/null
at_exit "on 0 'DROP TEXT SEARCH CONFIGURATION IF EXISTS public.t30_ts' >/dev/null 2>&1"
out=$(raw "$SP_PORT" startup:md5user:app:default_text_search_config=public.t30_ts auth:md5secret \
	"Q:/* shard: 0 */ SHOW default_text_search_config" read "Q:/* shard: 1 */ SELECT 1" read 2>&1)
like "$out" "login ok"$'\n'"T [^"$'\n'"]*"$'\n'"D public.t30_ts"$'\n'"C SHOW"$'\n'"Z I"$'\n'"E 22023 invalid value for parameter \"default_text_search_config\": \"public.t30_ts\""$'\n'"closed" \
	"sharded database: a startup value one shard takes and another refuses ends the session on that shard, no rows"

# ---------------------------------------------------------------- other ways to change settings
pg_psql "$PGPORT0" -c "CREATE OR REPLACE FUNCTION params_t_hidden_setter() RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_catalog.set_config('search_path', 'hidden', false); RETURN 1; END \$\$" >/dev/null
at_exit "pg_psql $PGPORT0 -c 'DROP FUNCTION IF EXISTS params_t_hidden_setter()' >/dev/null 2>&1"
scenario indirect "settings changed by set_config() and by a prepared SET stay with their client" <<EOF
connect A CONN
connect B CONN
exec A SELECT set_config('search_path', 'viafunc', false)
exec B SHOW search_path
exec A SHOW search_path
prepare A setter SET search_path = viaprepared
exec B SHOW search_path
execprep A setter
exec B SHOW search_path
exec A SHOW search_path
EOF

# ---------------------------------------------------------------- roles and custom settings
# SET ROLE is hidden from pg_settings, and so are custom settings made with set_config():
# the read-back after each transaction asks for them by name.
pg_psql "$PGPORT0" -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'params_t_role') THEN
CREATE ROLE params_t_role; END IF; END\$\$; GRANT params_t_role TO app" >/dev/null
scenario roles "SET ROLE and set_config() of a custom setting stay with their client, RESET ROLE too" <<EOF
connect A CONN
connect B CONN
exec A SET ROLE params_t_role
exec A SELECT current_user, session_user
exec B SELECT current_user, session_user
exec A SELECT current_user
exec A SELECT set_config('myapp.tenant', '42', false)
exec B SELECT coalesce(nullif(current_setting('myapp.tenant', true), ''), '<unset>')
exec A SELECT current_setting('myapp.tenant', true), current_user
prepare A setter SET myapp.other = 'p'
execprep A setter
exec B SELECT coalesce(nullif(current_setting('myapp.other', true), ''), '<unset>')
exec A SELECT current_setting('myapp.other', true)
exec A RESET ROLE
exec A SELECT current_user
exec B SELECT current_user
connect C CONN
exec C SELECT current_user, coalesce(nullif(current_setting('myapp.tenant', true), ''), '<unset>')
EOF

# A setting changed inside a function body is invisible in the SQL shardpool sees; reading
# every setting back after every transaction would cost a round trip each time (pgbouncer
# has the same limit). Documented in doc/usage.md.
TODO="a setting changed inside a function body is not tracked" \
scenario hidden "a setting changed inside a function stays with its client" <<EOF
connect A CONN
connect B CONN
exec A SET search_path = before
exec A SELECT public.params_t_hidden_setter()
exec B SHOW search_path
exec A SHOW search_path
EOF

# ---------------------------------------------------------------- session pooling
# A refused login in session pooling; the check's server goes back through
# server_reset_query, and the next clients (pool_size 1: the same server) have their own
# settings.
sp_stop >/dev/null || ok "shardpool (transaction pooling) exits cleanly" false
sp_write_config "$SP_TMP/sp-session.ini" auth_type=md5 pool_mode=session query_wait_timeout=10
sed -i 's/^\[database plain\]$/&\npool_size = 1/' "$SP_CONFIG"
sp_start
SP="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=plain"
scenario refused_session "session pooling: a startup value the server refuses refuses the login; the next clients have their own settings" <<EOF
connect A CONN options='-c work_mem=5MB'
exec A SET DateStyle = 'SQL, DMY'; SET application_name = 'leaky'; SET myapp.x = 'leaked'
close A
connect X CONN options='-c work_mem=bogus'
connect C CONN
exec C $ALL
exec C SHOW work_mem
close C
connect V CONN options='-c work_mem=64MB -c search_path=ok'
exec V SHOW work_mem
exec V $ALL
close V
connect Y CONN options='-c foo=bar'
connect D CONN
exec D $ALL
exec D SHOW work_mem
EOF
out=$(raw "$SP_PORT" startup:md5user:app:work_mem=bogus auth:md5secret 2>&1 | login_answer)
is "$out" 'E 22023 invalid value for parameter "work_mem": "bogus";closed;' \
	"session pooling, sharded database: a startup value the server refuses refuses the login"

done_testing
