#!/bin/bash
# sandbox.t - the test sandbox itself: primaries, streaming replicas, roles and their
# authentication methods. Every other integration test stands on these facts.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
[ -x /usr/lib/postgresql/15/bin/initdb ] || skip_all "PostgreSQL 15 is not installed"

SHARDS=${SANDBOX_T_SHARDS:-2}
REPLICAS=${SANDBOX_T_REPLICAS:-1}
sandbox_ensure "$SHARDS" "$REPLICAS"
is "$SB_SHARDS" "$SHARDS" "sandbox has $SHARDS shards"
is "$SB_REPLICAS" "$REPLICAS" "sandbox has $REPLICAS replicas per shard"

# a value unique to this run, so rows from earlier runs of a shared sandbox don't count
token="$$-$RANDOM-$(date +%s%N)"

for ((i = 0; i < SB_SHARDS; i++)); do
	pv=SB_PRIMARY_PORT_$i
	pport=${!pv}
	is "$(pg_psql "$pport" -c 'SELECT pg_is_in_recovery()' 2>&1)" f "shard $i primary (port $pport) answers and is not in recovery"
	is "$(pg_psql "$pport" -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>&1)" "$SB_REPLICAS" \
		"shard $i primary streams to $SB_REPLICAS replica(s)"
	ok "shard $i primary: write a marker row" pg_psql "$pport" \
		-c "CREATE TABLE IF NOT EXISTS sandbox_t (token text, shard int)" \
		-c "INSERT INTO sandbox_t VALUES ('$token', $i)"

	for ((j = 0; j < SB_REPLICAS; j++)); do
		rv=SB_REPLICA_PORT_${i}_$j
		rport=${!rv}
		is "$(pg_psql "$rport" -c 'SELECT pg_is_in_recovery()' 2>&1)" t "shard $i replica $j (port $rport) answers and is in recovery"
		got=
		for ((k = 0; k < 100; k++)); do
			got=$(pg_psql "$rport" -c "SELECT shard FROM sandbox_t WHERE token = '$token'" 2>/dev/null)
			[ -n "$got" ] && break
			sleep 0.1
		done
		is "$got" "$i" "shard $i replica $j: the primary's row arrives within 10 s"
		unlike "$(pg_psql "$rport" -c "INSERT INTO sandbox_t VALUES ('x', -1)" 2>&1)" '^$' \
			"shard $i replica $j refuses writes"
	done
done

# shards are separate clusters: shard 1 holds no row of shard 0
if [ "$SB_SHARDS" -gt 1 ]; then
	is "$(pg_psql "$SB_PRIMARY_PORT_1" -c "SELECT string_agg(shard::text, ',') FROM sandbox_t WHERE token = '$token'")" 1 \
		"shard 1 sees only its own row"
fi

# roles and authentication, over TCP, on every server of shard 0
login() { # USER PASSWORD PORT: prints current_user and the password's storage format
	PGPASSWORD=$2 psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$3" -U "$1" -d app \
		-c "SELECT current_user || ' ' || current_setting('is_superuser')"
}
stored() { # USER: how the password is stored
	pg_psql "$SB_PRIMARY_PORT_0" -c "SELECT coalesce(substr(rolpassword, 1, 13), 'none') FROM pg_authid WHERE rolname = '$1'"
}
ports="$SB_PRIMARY_PORT_0"
[ "$SB_REPLICAS" -gt 0 ] && ports="$ports $SB_REPLICA_PORT_0_0"
for port in $ports; do
	is "$(login app secret "$port" 2>&1)" "app on" "port $port: app logs in with its password and is superuser"
	is "$(login md5user md5secret "$port" 2>&1)" "md5user off" "port $port: md5user logs in with its password"
	is "$(login scramuser scramsecret "$port" 2>&1)" "scramuser off" "port $port: scramuser logs in with its password"
	is "$(login trustuser '' "$port" 2>&1)" "trustuser off" "port $port: trustuser logs in without a password"
	for u in app md5user scramuser; do
		out=$(login "$u" wrong "$port" 2>&1)
		like "$out" "password authentication failed for user \"$u\"" "port $port: $u with a wrong password is refused"
	done
done
is "$(stored app)" "SCRAM-SHA-256" "app's password is stored as SCRAM"
is "$(stored scramuser)" "SCRAM-SHA-256" "scramuser's password is stored as SCRAM"
like "$(stored md5user)" '^md5[0-9a-f]{10}$' "md5user's password is stored as md5"
is "$(stored trustuser)" "none" "trustuser has no password"
is "$(pg_psql "$SB_PRIMARY_PORT_0" -c "SELECT auth_method FROM pg_hba_file_rules WHERE 'md5user' = ANY(user_name)")" md5 \
	"pg_hba.conf sends md5user to md5"

# the plain roles can create tables in app (PostgreSQL 15 needs GRANT CREATE on public)
for u in md5user scramuser; do
	pw=${u%user}secret
	ok "$u can create and drop a table in schema public" \
		env PGPASSWORD="$pw" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SB_PRIMARY_PORT_0" -U "$u" -d app \
		-c "CREATE TABLE sandbox_t_$u$$ (id int)" -c "DROP TABLE sandbox_t_$u$$"
done

# the starting config for shardpool
ini=$SB_DIR/shardpool.ini
like "$(cat "$ini")" "\[shard app\.0\]"$'\n'"primary = host=127\.0\.0\.1 port=$SB_PRIMARY_PORT_0 dbname=app" \
	"shardpool.ini names shard 0's primary"
is "$(grep -c '^replica = ' "$ini")" "$((SB_SHARDS * SB_REPLICAS))" "shardpool.ini lists every replica"
is "$(grep -c '^\[shard ' "$ini")" "$((SB_SHARDS + 1))" "shardpool.ini has a section per shard, plus plain.0"
like "$(cat "$SB_DIR/userlist.txt")" '"md5user" "md5secret"' "userlist.txt holds md5user"

for ((i = 0; i < SB_SHARDS; i++)); do
	pv=SB_PRIMARY_PORT_$i
	pg_psql "${!pv}" -c "DELETE FROM sandbox_t WHERE token = '$token'" >/dev/null
done

# --listen-port inside the servers' range: that port is left for shardpool (the demo
# picks its port first, then starts the sandbox; once the sandbox took it for a server)
B=$(free_port) || bail_out "no free port"
at_exit "'$SP_SRCDIR/test/sandbox' stop '$SP_TMP/sbl' >/dev/null 2>&1; rm -rf '$SP_TMP/sbl'"
if out=$("$SP_SRCDIR/test/sandbox" start "$SP_TMP/sbl" --shards 1 --replicas 1 --base-port "$B" \
	--listen-port $((B + 1)) 2>&1); then
	used=$("$SP_SRCDIR/test/sandbox" env "$SP_TMP/sbl" | sed -n 's/^SB_.*_PORT_[0-9_]*=//p' | tr '\n' ' ')
	unlike "$used" "(^| )$((B + 1)) " "a sandbox gives no server the --listen-port it was given ($used)"
	like "$(cat "$SP_TMP/sbl/shardpool.ini")" "listen_port = $((B + 1))" "  and writes it into shardpool.ini"
else
	ok "a sandbox with --listen-port inside its range starts" false
	diag "$out"
fi
"$SP_SRCDIR/test/sandbox" stop "$SP_TMP/sbl" >/dev/null 2>&1
done_testing
