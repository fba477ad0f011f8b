#!/bin/bash
# 10_login.t - client authentication through shardpool (scram-sha-256, md5, trust),
# server logins with md5 and SCRAM, the answers to wrong passwords and unknown users
# (the same 28P01 as PostgreSQL, which must not reveal whether a user exists),
# unknown databases (3D000), SSLRequest / GSSENCRequest ('N'), and max_client_conn.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PGCLIENT=$SP_BUILDDIR/test/integration/pgclient
[ -x "$PGCLIENT" ] && [ -x "$RAW" ] || skip_all "pgclient/rawclient not built (make check builds them)"
# a hang must fail the test, not stall the run
pgc() { timeout 60 "$PGCLIENT" "$@"; }

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0

# login USER PASSWORD [psql args...]: current_user through shardpool, or psql's error
login() {
	local u=$1 pw=$2
	shift 2
	PGPASSWORD=$pw psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SP_PORT" -U "$u" -d plain \
		-c 'SELECT current_user' "$@" 2>&1
}
conninfo() { echo "host=127.0.0.1 port=$SP_PORT user=$1 password=$2 dbname=${3:-plain}"; }
# the error line of rawclient output, with the user name replaced
err_of() { grep '^E ' <<<"$1" | sed "s/\"$2\"/\"USER\"/"; }

# ---------------------------------------------------------------- scram-sha-256
sp_write_config "$SP_TMP/scram.ini" auth_type=scram-sha-256
sp_start

is "$(login app secret)" app "scram: app logs in with psql"
is "$(pgc "$(conninfo app secret)" exec 'SELECT current_user, session_user' 2>&1)" "app|app" \
	"scram: app logs in with libpq (pgclient)"
is "$(login scramuser scramsecret)" scramuser "scram: scramuser logs in; shardpool logs in to the server with SCRAM"
is "$(login md5user md5secret)" md5user "scram: md5user logs in; shardpool logs in to the server with md5"

out_wrong=$(raw "$SP_PORT" startup:app:plain auth 2>&1)
out_unknown=$(raw "$SP_PORT" startup:nosuchuser:plain auth 2>&1)
out_pg=$(raw "$PGPORT0" startup:app:app auth 2>&1)
like "$out_wrong" $'auth: SASL SCRAM-SHA-256\nauth: SASL continue\nE 28P01 password authentication failed for user "app"' \
	"scram: wrong password gets 28P01 after a full SCRAM exchange"
is "$(err_of "$out_unknown" nosuchuser)" "$(err_of "$out_wrong" app)" \
	"scram: unknown user gets the same 28P01 message as a wrong password"
is "$(grep -c '^auth:' <<<"$out_unknown")" "$(grep -c '^auth:' <<<"$out_wrong")" \
	"scram: unknown user goes through the same exchange as a known one"
is "$(grep '^E ' <<<"$out_wrong")" "$(grep '^E ' <<<"$out_pg")" "scram: the 28P01 error is PostgreSQL's own"
like "$(login app wrong)" 'password authentication failed for user "app"' "scram: psql reports the wrong password"
like "$(login nosuchuser wrong)" 'password authentication failed for user "nosuchuser"' "scram: psql, unknown user"

out=$(PGPASSWORD=secret psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d nosuchdb -c 'SELECT 1' 2>&1)
like "$out" 'database "nosuchdb" does not exist' "scram: unknown database is refused with PostgreSQL's message"

is "$(PGSSLMODE=prefer login app secret)" app "SSLRequest is answered 'N' and psql with sslmode=prefer logs in"
out=$(PGSSLMODE=require login app secret)
like "$out" 'server does not support SSL' "sslmode=require fails cleanly: the server does not support SSL"
is "$(PGGSSENCMODE=prefer login app secret)" app "psql with gssencmode=prefer logs in"
out=$(raw "$SP_PORT" ssl startup:app:plain auth 2>&1)
like "$out" $'^answer N\nauth: SASL SCRAM-SHA-256' "raw SSLRequest: answer 'N', then the startup packet goes on in plain text"
out=$(raw "$SP_PORT" gss startup:app:plain auth 2>&1)
like "$out" $'^answer N\nauth: SASL SCRAM-SHA-256' "raw GSSENCRequest: answer 'N', then the startup packet goes on in plain text"
out=$(raw "$SP_PORT" gss ssl startup:app:plain auth 2>&1)
like "$out" $'^answer N\nanswer N\nauth: SASL SCRAM-SHA-256' "GSSENCRequest, then SSLRequest, then the startup packet"
is "$(login app secret)" app "scram: still serving after all that"
ok "scram: shardpool exits cleanly on SIGTERM" sp_stop

# ---------------------------------------------------------------- md5
# auth_file with an md5 secret for md5user and a SCRAM secret for scramuser (from the server)
md5hash=md5$(printf '%s' md5secretmd5user | md5sum | cut -d' ' -f1)
scramsecret=$(pg_psql "$PGPORT0" -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'scramuser'")
{
	echo '"app" "secret"'
	echo "\"md5user\" \"$md5hash\""
	echo "\"scramuser\" \"$scramsecret\""
} >"$SP_TMP/userlist-md5.txt"
sp_write_config "$SP_TMP/md5.ini" auth_type=md5 "auth_file=$SP_TMP/userlist-md5.txt"
sp_start

is "$(login app secret)" app "md5: app (plain secret in auth_file) logs in"
is "$(pgc "$(conninfo app secret)" exec 'SELECT current_user' 2>&1)" app "md5: app logs in with libpq (pgclient)"
is "$(login md5user md5secret)" md5user "md5: md5user (md5 secret in auth_file) logs in; server login with md5"
is "$(login scramuser scramsecret)" scramuser \
	"md5: scramuser (SCRAM secret in auth_file) logs in with SCRAM; server login with the client's SCRAM keys"
out_wrong=$(raw "$SP_PORT" startup:md5user:plain auth 2>&1)
out_unknown=$(raw "$SP_PORT" startup:nosuchuser:plain auth 2>&1)
like "$out_wrong" $'auth: md5\nE 28P01 password authentication failed for user "md5user"' "md5: wrong password gets 28P01"
is "$(err_of "$out_unknown" nosuchuser)" "$(err_of "$out_wrong" md5user)" \
	"md5: unknown user gets the same 28P01 message as a wrong password"
like "$out_unknown" '^auth: md5' "md5: unknown user is asked for an md5 password too"
like "$(login md5user wrong)" 'password authentication failed for user "md5user"' "md5: psql reports the wrong password"
ok "md5: shardpool exits cleanly on SIGTERM" sp_stop

# ---------------------------------------------------------------- trust
sp_write_config "$SP_TMP/trust.ini" auth_type=trust max_client_conn=3
sp_start

is "$(login app '')" app "trust: app logs in without a password"
is "$(login trustuser '')" trustuser "trust: trustuser logs in; the server trusts it too"
is "$(login md5user '')" md5user "trust: md5user logs in; shardpool answers the server's md5 request from auth_file"
out=$(raw "$SP_PORT" startup:app:nosuchdb auth 2>&1)
like "$out" $'E 3D000 [^\n]*database "nosuchdb" does not exist' "trust: unknown database gets 3D000"
out=$(raw "$SP_PORT" startup:app:plain auth Q:'SELECT 1' read 2>&1)
like "$out" $'login ok\nT [^\n]*\nD 1\nC SELECT 1\nZ I' "trust: raw login and a query"
# a client that has logged in and sent nothing yet must not hold a server connection
raw "$SP_PORT" startup:app:plain auth sleep:1500 >/dev/null 2>&1 &
idler=$!
sleep 0.7
out=$(PGPASSWORD= psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d shardpool -c "SHOW CLIENTS" 2>&1)
is "$(awk -F'|' '$3 == "plain" {print $4 "/" $9}' <<<"$out")" "idle/0" \
	"trust: a client that logged in and sent nothing is idle and holds no server"
wait $idler

# max_client_conn = 3: three clients hold their connections, the fourth is refused
for i in 1 2 3; do
	raw "$SP_PORT" startup:app:plain auth sleep:4000 >"$SP_TMP/holder$i.out" 2>&1 &
	eval "holder$i=\$!"
done
for ((i = 0; i < 50; i++)); do
	[ "$(cat "$SP_TMP"/holder?.out 2>/dev/null | grep -c 'login ok')" = 3 ] && break
	sleep 0.1
done
is "$(cat "$SP_TMP"/holder?.out | grep -c 'login ok')" 3 "max_client_conn = 3: three clients log in"
out=$(raw "$SP_PORT" startup:app:plain auth 2>&1)
like "$out" '^E 53300 .*max_client_conn' "the fourth client gets 53300 naming max_client_conn"
like "$(login app '')" 'max_client_conn' "psql shows the max_client_conn error"
wait "$holder1" "$holder2" "$holder3"
sleep 0.3
is "$(login app '')" app "after the three leave, a client logs in again"
ok "trust: shardpool exits cleanly on SIGTERM" sp_stop

# ---------------------------------------------------------------- hashed secrets only
# an auth_file with only the server's SCRAM secret (pgbouncer's usual setup): clients and
# pools log in (SCRAM pass-through), but the health check has no password. The servers
# must then keep their configured roles: writes go to the primary, not "unavailable"
scram=$(pg_psql "$PGPORT0" -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
printf '"app" "%s"\n' "$scram" >"$SP_TMP/userlist-scram.txt"
sp_write_config "$SP_TMP/hashed.ini" auth_type=scram-sha-256 "auth_file=$SP_TMP/userlist-scram.txt" \
	health_check_period=0.3s
printf '\n[database hashed]\n[shard hashed.0]\nprimary = host=127.0.0.1 port=%s dbname=app\nreplica = host=127.0.0.1 port=%s dbname=app\n' \
	"$PGPORT0" "$SB_REPLICA_PORT_0_0" >>"$SP_CONFIG"
sp_start
sleep 1
hq() { PGPASSWORD=secret psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d hashed -c "$1" 2>&1; }
is "$(hq "CREATE TABLE IF NOT EXISTS t10_hashed (x int)")" "" "health check without a password: DDL still reaches the primary"
is "$(hq "INSERT INTO t10_hashed VALUES (1) RETURNING inet_server_port()")" "$PGPORT0" \
	"and writes go to the configured primary (not 'unavailable')"
is "$(hq "SELECT inet_server_port()")" "$PGPORT0" "reads go to the primary too (the replica's lag is unknown)"
ok "the log says the health check cannot log in, and what to do" grep -q "health check cannot log in.*Give the check a password" "$SP_LOG"
pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS t10_hashed" >/dev/null
ok "hashed: shardpool exits cleanly on SIGTERM" sp_stop

# ---------------------------------------------------------------- server connection strings
# a DBA's libpq strings carry over: a postgresql:// URI whose host is the sandbox's
# socket directory (%-escaped), options and application_name sent at login, and libpq
# keys that mean nothing without TLS (sslmode=prefer) accepted
sp_write_config "$SP_TMP/uri.ini" auth_type=trust
sock=$(printf '%s' "$SB_DIR/sock" | sed 's,/,%2F,g')
printf '\n[database viauri]\n[shard viauri.0]\nprimary = %s\n' \
	"postgresql://app:secret@$sock:$SB_PRIMARY_PORT_0/app?sslmode=prefer&application_name=from%20conninfo&options=-c%20work_mem%3D7MB" \
	>>"$SP_CONFIG"
printf '[database viakv]\n[shard viakv.0]\nprimary = %s\n' \
	"hostaddr=127.0.0.1 port=$SB_PRIMARY_PORT_0 dbname=app user=app password=secret options='-c work_mem=9MB' keepalives=1" \
	>>"$SP_CONFIG"
sp_start
kv() { PGPASSWORD= psql -X -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d "$1" -c "$2" 2>&1; }
is "$(kv viauri "SELECT current_setting('work_mem'), inet_server_port() IS NULL")" \
	"7MB|t" "URI with a socket directory: options reach the server"
like "$(raw "$SP_PORT" startup:app:viauri auth Q:"SELECT current_setting('application_name')" read 2>&1)" \
	$'\nD from conninfo\n' "a client without application_name sees the conninfo's"
is "$(PGAPPNAME=mine kv viauri "SELECT current_setting('application_name')")" mine \
	"a client's own application_name wins over the conninfo's"
is "$(kv viakv "SELECT current_setting('work_mem'), inet_server_port()")" "9MB|$SB_PRIMARY_PORT_0" \
	"hostaddr and options in a key=value string"
ok "uri: shardpool exits cleanly on SIGTERM" sp_stop
printf '[database bad]\n[shard bad.0]\nprimary = host=127.0.0.1 sslmode=verify-full\n' >>"$SP_CONFIG"
like "$("$SP_BUILDDIR/src/shardpool" --check-config "$SP_CONFIG" 2>&1)" \
	"sslmode=verify-full cannot be honoured.*sslmode=disable or prefer" \
	"sslmode=verify-full is refused at load, saying what works"

done_testing
