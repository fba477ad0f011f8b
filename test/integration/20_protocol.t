#!/bin/bash
# 20_protocol.t - the v3 protocol through shardpool in transaction pooling, driven by
# pgclient (libpq) and rawclient (hand-made messages): multi-statement simple queries,
# empty queries, notices, pipelines with and without errors, named prepared statements
# shared by clients that share server connections, Close / DEALLOCATE, COPY in text,
# csv and binary both ways, FunctionCall, and 64 MB values in both directions without
# shardpool holding them in memory. Where PostgreSQL defines the answer, the test runs
# the same thing straight against PostgreSQL and compares.
. "$(dirname "$0")/lib.sh"

command -v psql >/dev/null || skip_all "psql is not installed"
PGCLIENT=$SP_BUILDDIR/test/integration/pgclient
[ -x "$PGCLIENT" ] && [ -x "$RAW" ] || skip_all "pgclient/rawclient not built (make check builds them)"
# a hang must fail the test, not stall the run
pgc() { timeout 60 "$PGCLIENT" "$@"; }

sandbox_ensure
PGPORT0=$SB_PRIMARY_PORT_0
# unsharded databases on shard 0's primary, so routing plays no part: core with
# default_pool_size 2, plain with pool_size 1
sp_write_config "$SP_TMP/sp.ini" auth_type=md5 pool_mode=transaction default_pool_size=2 query_wait_timeout=15
sed -i 's/^\[database plain\]$/&\npool_size = 1/' "$SP_CONFIG"
grep -q '^pool_size = 1$' "$SP_CONFIG" || bail_out "could not give database plain a pool_size"
printf '\n[database core]\n[shard core.0]\nprimary = host=127.0.0.1 port=%s dbname=app\n' "$PGPORT0" >>"$SP_CONFIG"
sp_start

SP="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=core"
SP1="host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=plain"
PG="host=127.0.0.1 port=$PGPORT0 user=app password=secret dbname=app"
T=proto_t_$$
at_exit "pg_psql $PGPORT0 -c 'DROP TABLE IF EXISTS ${T}_copy, ${T}_big, ${T}_dup' >/dev/null 2>&1"

# both CMD...: run pgclient against shardpool and against PostgreSQL; sets SPOUT and PGOUT
both() {
	SPOUT=$(pgc "$SP" "$@" 2>&1)
	PGOUT=$(pgc "$PG" "$@" 2>&1)
}
# rawboth STEP...: the same raw exchange with shardpool (md5 login as app) and
# PostgreSQL (trustuser, trusted), without the authentication lines
rawboth() {
	SPOUT=$(raw "$SP_PORT" startup:app:core auth:secret "$@" 2>&1 | grep -v '^auth: ')
	PGOUT=$(raw "$PGPORT0" startup:trustuser:app auth "$@" 2>&1 | grep -v '^auth: ')
}

# ---------------------------------------------------------------- simple query
both exec "SELECT 1; SELECT 'two', 2; VALUES (3), (4); SELECT NULL::int WHERE false"
is "$SPOUT" $'1\ntwo|2\n3,4\n(none)' "several statements in one Query: one result each"
is "$SPOUT" "$PGOUT" "... exactly as PostgreSQL answers"
both exec "" ";" "  -- only a comment"
is "$SPOUT" $'EMPTY\nEMPTY\nEMPTY' "empty queries get EmptyQueryResponse"
both exec "SELECT 1; SELECT 1/0; SELECT 3" "SELECT 'next'"
is "$SPOUT" "$PGOUT" "an error in the middle of a multi-statement Query: the rest is skipped, like PostgreSQL"
like "$SPOUT" 'ERROR 22012 .*next' "... and the connection goes on"
both exec "DO \$\$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END\$\$" "SELECT 'after notices'"
is "$SPOUT" $'NOTICE 00000 hello 42\nNOTICE 01000 careful\nDO\nafter notices' "notices and warnings arrive, in order"

# ---------------------------------------------------------------- pipelines
is "$(pgc "$SP" pipeline 100 2>&1)" "ok 100 pipelined results" \
	"100 queries pipelined before one Sync: every result right and in order"
both pipeline-errors
is "$SPOUT" "1 E22012 skipped sync 4 sync E42P01 sync 6 sync after" \
	"errors inside a pipeline: skipped until Sync, later syncs work, connection usable"
is "$SPOUT" "$PGOUT" "... exactly as PostgreSQL answers"
out=$(for i in 1 2 3 4; do pgc "$SP1" pipeline 200 & done 2>&1; wait)
is "$(grep -c '^ok 200 pipelined results$' <<<"$out")" 4 "four clients pipelining 200 queries each over one server connection"

# Simple Queries pipelined (pgx's simple-protocol batches send them in one write) go to
# the server without waiting for each other's answers; only a Query that mentions COPY
# holds what follows until the server says whether a COPY started. Seen from the
# server's socket: a Query sent while the one before it sleeps waits in its receive
# queue (the server reads it only after the sleep).
pipelined_seen() { # STEP...: is a byte queued on the socket of plain's server while they run?
	raw "$SP_PORT" startup:app:plain auth:secret "$@" >"$SP_TMP/pipe2.out" 2>&1 &
	local rp=$! queued=0 i bp=
	for ((i = 0; i < 35; i++)); do
		sleep 0.1
		# the backend serving this client (database plain has one server connection);
		# other backends (health probes, other pools) may have bytes in flight too
		[ -n "$bp" ] || bp=$(PGPASSWORD=secret timeout 10 psql -X -q -A -t -F ' ' -h 127.0.0.1 -p "$SP_PORT" -U app \
			-d shardpool -c "SHOW SERVERS" 2>/dev/null | awk '$3 == "plain" && $6 == "active" { print $8 }')
		[ -n "$bp" ] || continue
		ss -Htnp state established "sport = :$PGPORT0" | grep -F "pid=$bp," |
			awk '$1 > 0 { f = 1 } END { exit !f }' && queued=1
	done
	wait $rp
	echo $queued
}
is "$(pipelined_seen "Q:SELECT pg_sleep(3)" sleep:400 "Q:SELECT 'second'" read read)" 1 \
	"a simple Query sent while the one before it runs goes on to the server at once"
like "$(cat "$SP_TMP/pipe2.out")" "D second" "... and both are answered"
is "$(pipelined_seen "Q:SELECT pg_sleep(3) AS copy" sleep:400 "Q:SELECT 'second'" read read)" 0 \
	"one sent behind a Query that mentions COPY waits for its answer (it could be COPY data)"
like "$(cat "$SP_TMP/pipe2.out")" "D second" "... and both are answered"
# A CopyData outside COPY, pipelined behind a Query, whose body is still coming when the
# Query's answer arrives: its first bytes went on to the server, which must not go back
# to the pool half-way through a message (database plain has one server connection:
# the next client would get it and never an answer). Found by 51_fuzz.t, seed 103.
raw "$SP_PORT" startup:app:plain auth:secret "Q:SELECT pg_sleep(0.3)" hdr:d:100000 hex:00112233 \
	sleep:800 read close >"$SP_TMP/halfcopy.out" 2>&1
like "$(cat "$SP_TMP/halfcopy.out")" "Z I" "a Query answered while a CopyData behind it is half sent"
is "$(PGPASSWORD=secret timeout 10 psql -X -q -A -t -h 127.0.0.1 -p "$SP_PORT" -U app -d plain -c "SELECT 'next'" 2>&1)" \
	next "... the server connection is not handed to the next client half-way through that message"

# a Parse skipped after an error (up to the Sync) creates no statement: preparing the
# name again works, as in PostgreSQL; inside a failed transaction a Parse of a statement
# the server connection already has is refused (25P02) and takes no name either
rawboth P::"SELECT 1/0" B:: E: P:skipped:"SELECT 2" S read P:skipped:"SELECT 2" B::skipped E: S read
is "$SPOUT" "$PGOUT" "a named Parse skipped after an error: the name can be prepared again (not 42P05)"
like "$SPOUT" $'\n1\n2\nD 2' "... and it runs"
rawboth P:warm:"SELECT 33" S read C:S:warm S read Q:BEGIN read Q:"SELECT 1/0" read \
	P:inabort:"SELECT 33" S read Q:ROLLBACK read P:inabort:"SELECT 33" B::inabort E: S read
is "$SPOUT" "$PGOUT" "a Parse inside a failed transaction: 25P02, and the name is free after ROLLBACK"
like "$SPOUT" "E 25P02 " "... 25P02 as PostgreSQL says"
rawboth P:rb1:ROLLBACK S read C:S:rb1 S read Q:BEGIN read Q:"SELECT 1/0" read \
	P:rb2:ROLLBACK B::rb2 E: S read Q:"SELECT 'after'" read
is "$SPOUT" "$PGOUT" "but a Parse of ROLLBACK inside a failed transaction works, as in PostgreSQL (JDBC rolls back so)"

# ---------------------------------------------------------------- prepared statements
# 6 clients over 2 server connections; s1 means different SQL for different clients
pids=()
for k in 1 2 3; do
	pgc "$SP" prepared s1 1000 "$k" >"$SP_TMP/prep_s1_$k.out" 2>&1 &
	pids+=($!)
	pgc "$SP" prepared "stmt_$k" 1000 "$((k * 100))" describe >"$SP_TMP/prep_d_$k.out" 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
out=$(cat "$SP_TMP"/prep_*.out)
is "$(grep -c '^ok 1000 executions' <<<"$out")" 6 \
	"6 clients x 1000 executions of named statements over 2 server connections, each its own result"
unlike "$out" 'FAIL' "... no wrong result, PQdescribePrepared right every time"

both prepare-twice dup
is "$SPOUT" "$PGOUT" "preparing a name twice: 42P05 and the first statement stays, as in PostgreSQL"

# Close (statement), then Bind to it: 26000 like PostgreSQL
rawboth "P:c1:SELECT 41+1" S read "B::c1" E: S read "C:S:c1" S read "B::c1" E: S read "Q:SELECT 'alive'" read
is "$SPOUT" "$PGOUT" "Close of a named statement, then Bind to it: answered like PostgreSQL"
like "$SPOUT" $'3\nZ I\nE 26000 [^\n]*\nZ I' "... CloseComplete, then 26000 for the closed statement"
rawboth "P:c2:SELECT 1" S read "C:S:c2" "C:S:c2" "C:S:never_prepared" S read "P:c2:SELECT 2" "B::c2" E: S read
is "$SPOUT" "$PGOUT" "closing twice and closing an unknown name succeed; the name can be prepared again"

# SQL DEALLOCATE of a statement prepared with the protocol (pgx and others do this)
rawboth "P:d1:SELECT 7" S read "Q:DEALLOCATE d1" read "B::d1" E: S read "P:d1:SELECT 8" "B::d1" E: S read
is "$SPOUT" "$PGOUT" "SQL DEALLOCATE of a protocol-level statement works as in PostgreSQL"

# DISCARD ALL / DEALLOCATE ALL that the server refuses (inside a transaction block, in
# a failed transaction) drop nothing: the statements prepared before still run
rawboth "P:kd:SELECT 42" S read "Q:BEGIN" read "Q:DISCARD ALL" read "Q:ROLLBACK" read "B::kd" E: S read \
	"Q:BEGIN" read "Q:SELECT 1/0" read "Q:DEALLOCATE ALL" read "Q:ROLLBACK" read "B::kd" E: S read \
	"Q:BEGIN" read "Q:DEALLOCATE ALL" read "Q:ROLLBACK" read "B::kd" E: S read
is "$SPOUT" "$PGOUT" "a refused DISCARD ALL or DEALLOCATE ALL keeps the statements, a DEALLOCATE ALL that runs drops them"

# A Parse of a name the client already prepared fails as in PostgreSQL: the server's
# transaction with it, the INSERT run before it in the same batch rolled back, and an
# explicit transaction failed (ROLLBACK at COMMIT)
pg_psql "$PGPORT0" -c "CREATE TABLE ${T}_dup (i int)" >/dev/null
rawboth "P:dupi:INSERT INTO ${T}_dup VALUES (1)" "B::dupi" E: "P:dupi:SELECT 1" "B::dupi" E: S read \
	"Q:BEGIN" read "B::dupi" E: "P:dupi:SELECT 2" S read "Q:COMMIT" read "Q:SELECT count(*) FROM ${T}_dup" read
is "$SPOUT" "$PGOUT" "Parse of a name already taken (42P05) after an INSERT in its batch or transaction rolls them back"

# Parse that fails leaves no statement behind
rawboth "P:bad1:SELEC 1" S read "B::bad1" E: S read "P:bad1:SELECT 'fixed'" "B::bad1" E: S read
is "$SPOUT" "$PGOUT" "a Parse that fails leaves no statement: Bind gets 26000, the name can be reused"

# Describe of a statement, Describe of a portal, Flush instead of Sync
rawboth "P:ds:SELECT \$1::int AS x, 'a'::text AS y" "D:S:ds" H read S read
is "$SPOUT" "$PGOUT" "Describe statement answered (ParameterDescription, RowDescription) before Sync, after Flush"

# DEALLOCATE ALL by one client must not break the statements of others on the same server
out=$(pgc script <<EOF 2>&1
connect A $SP1
connect B $SP1
connect C $SP1
prepare A s1 SELECT 42
prepare C s1 SELECT 42
execprep C s1
exec A DEALLOCATE ALL
execprep A s1
prepare B s2 SELECT 42
execprep B s2
execprep C s1
exec A DISCARD ALL
execprep C s1
execprep B s2
EOF
)
is "$out" "A: OK
C: OK
C: 42
A: DEALLOCATE ALL
A: ERROR 26000 prepared statement \"s1\" does not exist
B: OK
B: 42
C: 42
A: DISCARD ALL
C: 42
B: 42" "DEALLOCATE ALL / DISCARD ALL drop only that client's statements (pool_size 1: one server)"

# DEALLOCATE ALL after another statement of the same Query: the server drops every
# statement, so shardpool's record of what that server has prepared was wrong, and
# the next client to use the same statement text on it got 26000 for a name it never
# chose (the server connection is now closed after that transaction instead)
rawboth "P:md:SELECT 42" S read "Q:SELECT 1; DEALLOCATE ALL" read "B::md" E: S read \
	"P:md:SELECT 43" "B::md" E: S read
is "$SPOUT" "$PGOUT" "'SELECT 1; DEALLOCATE ALL' drops the client's statements, as in PostgreSQL"
out=$(pgc script <<EOF 2>&1
connect A $SP1
connect B $SP1
prepare A s1 SELECT 42
prepare B s1 SELECT 42
execprep B s1
exec A SELECT 1; DEALLOCATE ALL
execprep B s1
prepare A s2 SELECT 42
execprep A s2
execprep B s1
EOF
)
is "$out" "A: OK
B: OK
B: 42
A: 1
A: DEALLOCATE ALL
B: 42
A: OK
A: 42
B: 42" "... and the statements of other clients of that server keep working"

# ---------------------------------------------------------------- COPY
pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS ${T}_copy" -c "CREATE TABLE ${T}_copy (id int, t text)" >/dev/null
for f in text csv binary; do
	is "$(pgc "$SP" copy-in "${T}_copy" "$f" 1000 2>&1)" "COPY 1000" "COPY FROM STDIN ($f): 1000 rows"
done
is "$(pg_psql "$PGPORT0" -c "SELECT count(*), count(*) FILTER (WHERE t = 'row ' || id || ', \"q\"'), sum(id) FROM ${T}_copy")" \
	"3000|3000|1498500" "the 3000 copied rows arrived intact"
for f in text csv binary; do
	both copy-out "SELECT * FROM ${T}_copy ORDER BY id, t" "$f"
	is "$SPOUT" "$PGOUT" "COPY TO STDOUT ($f): same rows and bytes as from PostgreSQL"
done
like "$SPOUT" '^rows 3000 .*tag COPY 3000' "COPY TO STDOUT (binary): 3000 rows"
both copy-out "SELECT i, md5(i::text) FROM generate_series(1, 100000) i" text
is "$SPOUT" "$PGOUT" "COPY TO STDOUT of 100000 generated rows: same as PostgreSQL"
out=$(pgc "$SP" exec "COPY ${T}_copy (id) FROM STDIN (FORMAT csv, HEADER true, DELIMITER 'xx')" "SELECT 'after'" 2>&1)
like "$out" $'ERROR [0-9A-Z]{5} [^\n]*\nafter' "COPY that fails before starting: error, connection goes on"
is "$(pgc "$SP" exec "SELECT count(*) FROM ${T}_copy" 2>&1)" 3000 "no stray rows"

# ---------------------------------------------------------------- FunctionCall
both fn
is "$SPOUT" "int4pl(40, 2) = 42 (len 4)
length('hello world') = 11
int4div(1, 0): PGRES_FATAL_ERROR 22012
still usable" "FunctionCall (PQfn): int4pl, length, an error, then a query"
is "$SPOUT" "$PGOUT" "... as PostgreSQL answers"

# ---------------------------------------------------------------- 64 MB values
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$SP_PID/status"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SP_PID/status"; }
BIG=67108864
want_md5=$(pg_psql "$PGPORT0" -c "SELECT md5(repeat('x', $BIG))")
h0=$(hwm)
out=$(pgc "$SP" bigrow "SELECT repeat('x', $BIG)" "$SP_TMP/big.out" 0 2>&1)
h1=$(hwm)
like "$out" "^length $BIG " "a 64 MB row arrives whole"
is "$(md5sum <"$SP_TMP/big.out" | cut -d' ' -f1)" "$want_md5" "... and intact (md5)"
diag "64 MB row, fast reader: shardpool peak RSS grew by $(((h1 - h0) / 1024)) MB (from $((h0 / 1024)) MB)"
ok "64 MB row, fast reader: shardpool's peak RSS grew by less than 200 MB" test $((h1 - h0)) -lt $((200 * 1024))
# A client that does not read for 3 s: shardpool must stop reading the server, not buffer the row.
out=$(pgc "$SP" bigrow "SELECT repeat('x', $BIG)" "$SP_TMP/big.out" 3000 2>&1)
h2=$(hwm)
like "$out" "^length $BIG " "a 64 MB row to a client that waits 3 s before reading arrives whole"
is "$(md5sum <"$SP_TMP/big.out" | cut -d' ' -f1)" "$want_md5" "... and intact (md5)"
rm -f "$SP_TMP/big.out"
diag "64 MB row, slow reader: shardpool peak RSS grew by $(((h2 - h1) / 1024)) MB"
ok "64 MB row, slow reader: shardpool does not buffer the row (peak RSS grew by less than 32 MB)" \
	test $((h2 - h1)) -lt $((32 * 1024))

pg_psql "$PGPORT0" -c "DROP TABLE IF EXISTS ${T}_big" -c "CREATE TABLE ${T}_big (id int, t text)" >/dev/null
r0=$(rss)
is "$(pgc "$SP" bigparam "${T}_big" $BIG 2>&1)" "INSERT 0 1" "INSERT with a 64 MB parameter"
h3=$(hwm)
is "$(pg_psql "$PGPORT0" -c "SELECT length(t), md5(t) = md5(repeat('0123456789abcdef', $((BIG / 16)))) FROM ${T}_big")" \
	"$BIG|t" "... the value arrived intact"
sleep 1
r1=$(rss)
diag "64 MB parameter: shardpool peak RSS $((h3 / 1024)) MB; RSS $((r0 / 1024)) MB before, $((r1 / 1024)) MB after the client left"
# ASan keeps freed memory in quarantine instead of returning it: only a plain build can tell.
[ -n "${ASAN_OPTIONS:-}" ] && TODO="ASan's allocator keeps freed memory" || TODO=""
ok "after the 64 MB parameter, shardpool gives the memory back (RSS within 32 MB of before)" \
	test $((r1 - r0)) -lt $((32 * 1024))
TODO=""
is "$(pgc "$SP" exec "SELECT 'still fine'" 2>&1)" "still fine" "shardpool still serves"

done_testing
