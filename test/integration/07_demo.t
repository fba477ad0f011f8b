#!/bin/bash
# 07_demo.t - the README's first command: scripts/demo starts a sandbox of two shards
# with a replica each and shardpool in front of it, and what it prints to try works
# as it says (the INSERT splits over both shards, the fan-out counts every row, the
# shard hint sees one shard's part); the admin console answers; `scripts/demo stop`
# stops everything.
#
# The demo runs in this test's scratch directory, on a free port (SP_DEMO_DIR,
# SP_DEMO_PORT, SP_DEMO_BASE_PORT), so a demo a user runs on 6432 is left alone.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
[ -x "$SP_SRCDIR/src/shardpool" ] || skip_all "the demo runs the source tree's src/shardpool, which is not built"

export SP_DEMO_DIR=$SP_TMP/demo
SP_DEMO_PORT=$(free_port) || bail_out "no free port"
SP_DEMO_BASE_PORT=$(free_port) || bail_out "no free port"
export SP_DEMO_PORT SP_DEMO_BASE_PORT
at_exit "'$SP_SRCDIR/scripts/demo' stop >/dev/null 2>&1"

out=$(timeout 300 "$SP_SRCDIR/scripts/demo" </dev/null 2>&1)
rc=$?
is "$rc" 0 "scripts/demo starts" || diag "$(tail -n 20 <<<"$out")"
like "$out" "shardpool is running on 127.0.0.1:$SP_DEMO_PORT" "it says where shardpool listens"

app() { PGPASSWORD=secret timeout 30 psql -X -q -A -t -h 127.0.0.1 -p "$SP_DEMO_PORT" -U app -d app -c "$1" 2>&1; }
# the statements the demo prints, run as printed
stmt() { sed -n "s/^    \($1[^;]*;\).*/\1/p" <<<"$out" | head -n 1; }
ins=$(stmt "INSERT INTO users")
like "$ins" "^INSERT INTO users" "the demo prints an INSERT to try"
is "$(PGPASSWORD=secret timeout 30 psql -X -A -t -h 127.0.0.1 -p "$SP_DEMO_PORT" -U app -d app -c "$ins" 2>&1)" \
	"INSERT 0 3" "its INSERT inserts three rows"
is "$(app "$(stmt "SELECT count")")" 3 "the fan-out count sees all three"
is "$(app "$(stmt "SELECT name")")" eve "the read by key finds its row"
is "$(app "$(stmt "\/\* shard: 1 \*\/")")" 1 "shard 1 holds one of them: the INSERT was split over both shards"
is "$(app "/* shard: 0 */ SELECT count(*) FROM users")" 2 "... and shard 0 the other two"
like "$(PGPASSWORD=secret timeout 30 psql -X -A -t -h 127.0.0.1 -p "$SP_DEMO_PORT" -U app -d shardpool -c "SHOW POOLS" 2>&1)" \
	"^app\|app\|" "the admin console answers SHOW POOLS"

out=$("$SP_SRCDIR/scripts/demo" stop 2>&1)
is "$?" 0 "scripts/demo stop"
ok "shardpool no longer accepts connections" sh -c "! (exec 3<>/dev/tcp/127.0.0.1/$SP_DEMO_PORT) 2>/dev/null"
done_testing
