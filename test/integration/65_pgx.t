#!/bin/bash
# 65_pgx.t - Go's pgx v4 driver through shardpool in transaction pooling, with a pool of
# two server connections per shard and many clients (so every named statement pgx
# prepares has to be prepared again by shardpool on whichever server connection a client
# gets next).
#
# pgx_test.go (built here in GOPATH mode against Debian's /usr/share/gocode, offline):
# the default statement cache (lrupsc_N_M names, 8 connections plus a second process
# whose statement names collide with other texts; a cache of 3 that evicts with
# `deallocate`), Prepare/Deallocate under the application's own statement name, cached
# statements after ALTER TABLE, statement_cache_mode=describe, PreferSimpleProtocol,
# pgx.Batch (20 statements; one failing at statement 5; 3000 SELECTs; 1000 INSERTs),
# CopyFrom (binary COPY of 10,000 rows), BeginTx / nested tx (savepoints) / rollback /
# read-only and serializable transactions, binary round trips (int2/4/8, numeric, text,
# bytea, uuid, timestamptz, jsonb, int8[], text[], NULL), errors from Parse, context
# timeouts and an explicit CancelRequest (the cancel must reach the right server, or
# every shard's), a 20 MB value both ways, Ping, ParameterStatus, and SET
# (application_name, search_path) that stays with its connection. Each check becomes
# one TAP line here (run_checks, lib.sh).
#
# The program runs directly against PostgreSQL first (so a check that fails there is a
# bug of the test, not of shardpool), then through shardpool against database plain, and
# against database app with its table sharded by id over the sandbox's two shards, where
# rows go by the key in pgx's Bind parameters and reads without a key fan out; then the
# placement of every row is checked on each shard with PostgreSQL's own
# satisfies_hash_partition().
#
# Deliberately not here: what 64_driver_edges.t covers for other drivers (cursors,
# pipelines of fetches).
. "$(dirname "$0")/lib.sh"

command -v go >/dev/null 2>&1 || skip_all "go is not installed (apt-get install golang-go)"
GOCODE=/usr/share/gocode
[ -f "$GOCODE/src/github.com/jackc/pgx/v4/conn.go" ] ||
	skip_all "the pgx v4 sources are not installed (apt-get install golang-github-jackc-pgx-v4-dev)"

# Build offline in GOPATH mode: Debian's packages put pgx and its dependencies in
# $GOCODE/src (pgx v4 as github.com/jackc/pgx/v4). Everything the go command writes
# (the build cache) goes to the scratch directory, so neither HOME nor the network is
# needed, and a GOFLAGS or go env file of the caller's does not change the build.
GO_DIR=$SP_TMP/go
BIN=$GO_DIR/pgxcheck
mkdir -p "$GO_DIR/src/pgxcheck" "$GO_DIR/tmp" &&
	cp "$SP_SRCDIR/test/integration/pgx_test.go" "$GO_DIR/src/pgxcheck/main.go" || bail_out "cannot set up $GO_DIR"
go_build() {
	env GO111MODULE=off GOPATH="$GOCODE:$GO_DIR" GOCACHE="$GO_DIR/cache" GOTMPDIR="$GO_DIR/tmp" \
		GOENV=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local GOWORK=off \
		go build -o "$BIN" pgxcheck
}
t0=$SECONDS
ok "the pgx program builds (GOPATH mode, offline)" go_build || done_testing
diag "$(go version), pgx $(dpkg-query -W -f='${Version}' golang-github-jackc-pgx-v4-dev 2>/dev/null), built in $((SECONDS - t0)) s"
rm -rf "$GO_DIR/cache" "$GO_DIR/tmp"

sandbox_ensure 2 1
T=pgx_$$_$RANDOM
STAB=${T}_sh
at_exit "on_all 'DROP TABLE IF EXISTS $STAB, ${T}_place' 2>/dev/null"
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS ${T}_direct, ${T}_direct_copy, ${T}_plain, ${T}_plain_copy, ${STAB}_copy' >/dev/null 2>&1"
# ${T}_place: an empty parent partitioned like the shards, for satisfies_hash_partition
on_all "CREATE TABLE $STAB (id bigint PRIMARY KEY, v text NOT NULL); CREATE TABLE ${T}_place (id bigint) PARTITION BY HASH (id)" ||
	bail_out "cannot create $STAB on the shards"

sp_write_config "$SP_TMP/shardpool.ini" pool_mode=transaction default_pool_size=2 \
	max_client_conn=300 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info}
# rows one client writes are read back at once: no replica reads in app
sed -i '/^\[database app\]/a read_replicas = no' "$SP_CONFIG"
printf '\n[table app.%s]\nkey = id\ntype = bigint\n' "$STAB" >>"$SP_CONFIG"
sp_start
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through shardpool to plain"

# After ALTER TABLE changes what SELECT * returns, every client whose statement was
# prepared before gets 0A000 "cached plan must not change result type" once, as from
# PostgreSQL, and pgx prepares again (the "after ALTER TABLE" checks); the direct run
# shows what PostgreSQL does.
run_checks "pgx direct" "$BIN" "$SB_PRIMARY_PORT_0" app "${T}_direct"
run_checks "pgx plain" "$BIN" "$SP_PORT" plain "${T}_plain"
run_checks "pgx sharded" "$BIN" "$SP_PORT" app "$STAB" sharded

# where the sharded run's rows are: each on the shard PostgreSQL's hash picks
rows=$(sed -n 's/^rows\t//p' "$SP_TMP/pgx sharded.out")
total=0
for ((i = 0; i < SB_SHARDS; i++)); do
	v=SB_PRIMARY_PORT_$i
	is "$(pg_psql "${!v}" -c "SELECT count(*) FROM $STAB WHERE NOT satisfies_hash_partition('${T}_place'::regclass, $SB_SHARDS, $i, id)" 2>&1)" 0 \
		"shard $i holds no row that PostgreSQL's hash puts elsewhere"
	n=$(pg_psql "${!v}" -c "SELECT count(*) FILTER (WHERE id BETWEEN 1000000 AND 1999999) > 0, count(*) FILTER (WHERE id BETWEEN 3000000 AND 3000009) > 0, count(*) FROM $STAB" 2>&1)
	is "${n%|*}" "t|t" "shard $i got rows from the cached prepared INSERTs and from the batch"
	total=$((total + ${n##*|}))
done
is "$total" "${rows:-none}" "the shards hold as many rows as the program read through shardpool"
is "$(sp_psql -d plain -c 'SELECT 42' 2>&1)" 42 "shardpool still answers psql"
done_testing
