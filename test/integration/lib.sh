# test/integration/lib.sh - sourced by the integration tests (test/integration/*.t).
#
# Gives a test script TAP output (plan, ok, is, isnt, like, unlike, diag, skip, skip_all,
# done_testing), a shared PostgreSQL sandbox (sandbox_ensure), and a shardpool of its
# own (sp_write_config, sp_start, sp_stop, sp_psql). Tests run under `make check`
# (automake's TAP driver, possibly several at once under make -j) or by hand:
#   bash test/integration/NAME.t
#
# Invariants: a sandbox of one shape is started once and shared by every test script
# of a run (flock serialises the start); ports never collide between sandbox shapes or
# between tests of one run; whatever a test started is stopped when it exits, whatever
# way it exits. A test that passes removes its scratch directory; a failing one keeps it
# and says where.
#
# Deliberately not here: stopping the shared sandboxes (scripts/test does that after the
# whole run, `test/sandbox stop DIR` by hand) and anything specific to one feature.
#
# Environment:
#   SP_BUILDDIR, SP_SRCDIR  build and source tree (default: the repo this file is in)
#   SP_TEST_TMP             scratch and sandboxes (default /tmp/shardpool-test)
#   SP_TEST_PORTS           port range for sandboxes and shardpool (default 21000-29000)
#   SP_VALGRIND=1           run shardpool under valgrind

_sp_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SP_SRCDIR:=$(cd "$_sp_lib_dir/../.." && pwd)}"
: "${SP_BUILDDIR:=$SP_SRCDIR}"
: "${SP_TEST_TMP:=/tmp/shardpool-test}"
: "${SP_TEST_PORTS:=21000-29000}"
export SP_SRCDIR SP_BUILDDIR SP_TEST_TMP SP_TEST_PORTS
export PATH=/usr/lib/postgresql/15/bin:$PATH
export LC_ALL=C.UTF-8
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE
export PGCONNECT_TIMEOUT=10

set -o pipefail

# The sandbox's servers run as user postgres, which must reach SP_TEST_TMP.
mkdir -p "$SP_TEST_TMP" && chmod 755 "$SP_TEST_TMP" 2>/dev/null
SP_TEST_NAME=$(basename "$0" .t)
# per-test scratch directory: configs, logs, whatever the test writes
SP_TMP=$(mktemp -d "$SP_TEST_TMP/$SP_TEST_NAME.XXXXXX") || { echo "Bail out! cannot create a scratch directory in $SP_TEST_TMP"; exit 1; }
chmod 755 "$SP_TMP"
export SP_TMP

# ---------------------------------------------------------------- TAP

# TAP lines go to the test's original stdout even from inside `ok CMD`, whose output
# is captured, so a bail-out there still reaches the driver.
exec {_sp_tap_fd}>&1
_tap_n=0
_tap_failed=0
_tap_plan=

plan() {
	_tap_plan=$1
	echo "1..$1" >&$_sp_tap_fd
}

# one line of TAP; '#' in a description would start a directive
# TODO="reason" before a check marks a known limitation: TAP's "# TODO" directive, so a
# failure is reported (XFAIL) without failing the run, and an unexpected pass shows (XPASS).
_tap_result() {
	local pass=$1 desc=${2//#/\\#} todo=""
	[ -n "${TODO:-}" ] && todo=" # TODO ${TODO//#/}"
	_tap_n=$((_tap_n + 1))
	if [ "$pass" = 1 ]; then
		echo "ok $_tap_n - $desc$todo" >&$_sp_tap_fd
	else
		[ -n "$todo" ] || _tap_failed=$((_tap_failed + 1))
		echo "not ok $_tap_n - $desc$todo" >&$_sp_tap_fd
	fi
}

diag() {
	local line
	while IFS= read -r line; do
		echo "# $line" >&$_sp_tap_fd
	done <<<"$*"
}

# ok DESC CMD [ARGS...]: passes if CMD exits 0. CMD runs in this shell (not a
# subshell), so functions such as sp_stop keep their effects.
ok() {
	local desc=$1 out rc
	shift
	[ $# -gt 0 ] || { _tap_result 0 "$desc"; diag "ok: no command given"; return 1; }
	out=$(mktemp "$SP_TMP/ok.XXXXXX")
	"$@" >"$out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then
		_tap_result 1 "$desc"
	else
		_tap_result 0 "$desc"
		diag "command failed with exit status $rc: $*"
		[ -s "$out" ] && diag "$(tail -n 40 "$out")"
	fi
	rm -f "$out"
	return $rc
}

is() {
	if [ "$1" == "$2" ]; then
		_tap_result 1 "$3"
	else
		_tap_result 0 "$3"
		diag "     got: '$1'"
		diag "expected: '$2'"
		return 1
	fi
}

isnt() {
	if [ "$1" != "$2" ]; then
		_tap_result 1 "$3"
	else
		_tap_result 0 "$3"
		diag "     got: '$1'"
		diag "expected anything else"
		return 1
	fi
}

like() {
	if [[ $1 =~ $2 ]]; then
		_tap_result 1 "$3"
	else
		_tap_result 0 "$3"
		diag "                  '$1'"
		diag "doesn't match     '$2'"
		return 1
	fi
}

unlike() {
	if [[ $1 =~ $2 ]]; then
		_tap_result 0 "$3"
		diag "                  '$1'"
		diag "matches           '$2'"
		return 1
	else
		_tap_result 1 "$3"
	fi
}

# skip N REASON: N checks that cannot run here, reported as TAP "# SKIP" (they pass)
skip() {
	local i
	for ((i = 0; i < $1; i++)); do
		_tap_n=$((_tap_n + 1))
		echo "ok $_tap_n # SKIP ${2//#/}" >&$_sp_tap_fd
	done
}

skip_all() {
	echo "1..0 # SKIP $*" >&$_sp_tap_fd
	_tap_plan=done
	exit 0
}

bail_out() {
	echo "Bail out! $*" >&$_sp_tap_fd
	_tap_failed=$((_tap_failed + 1))
	_tap_plan=done
	exit 1
}

# done_testing: stops a shardpool that is still running (its exit status is a test:
# leaks found by ASan or valgrind fail the script), prints the plan, exits 1 on failure.
done_testing() {
	if [ -n "${SP_PID:-}" ]; then
		if [ -z "$_tap_plan" ]; then
			ok "shardpool exits cleanly on SIGTERM" sp_stop
		elif ! sp_stop; then
			_tap_failed=$((_tap_failed + 1))
		fi
	fi
	if [ -z "$_tap_plan" ]; then
		echo "1..$_tap_n" >&$_sp_tap_fd
	elif [ "$_tap_plan" != "$_tap_n" ]; then
		diag "planned $_tap_plan tests but ran $_tap_n"
		_tap_failed=$((_tap_failed + 1))
	fi
	_tap_plan=done
	[ "$_tap_failed" = 0 ] || { diag "$_tap_failed test(s) failed"; exit 1; }
	exit 0
}

# ---------------------------------------------------------------- clean-up

_sp_at_exit=()
# at_exit CMD...: run CMD (as one string, eval'ed) when the test script exits
at_exit() { _sp_at_exit+=("$*"); }

_sp_cleanup() {
	local rc=$? c i
	trap - EXIT
	if [ -n "${SP_PID:-}" ]; then
		sp_stop >/dev/null 2>&1
		[ "$_tap_plan" = done ] || diag "stopped shardpool at exit"
	fi
	for ((i = ${#_sp_at_exit[@]} - 1; i >= 0; i--)); do
		eval "${_sp_at_exit[i]}"
	done
	if [ -f "$SP_TMP/.ports" ]; then
		while read -r p; do rmdir "$SP_TEST_TMP/ports/$p" 2>/dev/null; done <"$SP_TMP/.ports"
	fi
	if [ "$rc" = 0 ] && [ "$_tap_failed" = 0 ]; then
		rm -rf "$SP_TMP"
	else
		echo "# scratch files kept in $SP_TMP" >&$_sp_tap_fd
	fi
	exit "$rc"
}
trap _sp_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ports

_sp_port_min=${SP_TEST_PORTS%-*}
_sp_port_max=${SP_TEST_PORTS#*-}
# The lower three quarters of the range hold 32 windows, one per sandbox shape
# (1-8 shards x 0-3 replicas); free_port hands out the rest.
_sp_window=$(((_sp_port_max - _sp_port_min + 1) * 3 / 4 / 32))
_sp_free_min=$((_sp_port_min + 32 * _sp_window))

port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# free_port: prints a port that nothing listens on and that no other test of this run
# was given (a reservation is a directory: mkdir is atomic across parallel tests).
free_port() {
	local span=$((_sp_port_max - _sp_free_min + 1)) p i
	mkdir -p "$SP_TEST_TMP/ports"
	for ((i = 0; i < 200; i++)); do
		p=$((_sp_free_min + (RANDOM * 32768 + RANDOM) % span))
		port_in_use "$p" && continue
		mkdir "$SP_TEST_TMP/ports/$p" 2>/dev/null || continue
		# usually called as $(free_port): the list of ports to give back is a file
		echo "$p" >>"$SP_TMP/.ports"
		echo "$p"
		return 0
	done
	echo "free_port: no free port in $_sp_free_min-$_sp_port_max" >&2
	return 1
}

# ---------------------------------------------------------------- sandbox

# sandbox_ensure [SHARDS] [REPLICAS]: a running sandbox of that shape, shared with the
# other tests of the run. Sets SB_DIR and the SB_* variables of `test/sandbox env`.
sandbox_ensure() {
	local shards=${1:-2} replicas=${2:-1}
	if [ "$shards" -lt 1 ] || [ "$shards" -gt 8 ] || [ "$replicas" -lt 0 ] || [ "$replicas" -gt 3 ]; then
		bail_out "sandbox_ensure: shapes go up to 8 shards x 3 replicas"
	fi
	local dir=$SP_TEST_TMP/sandbox-${shards}x$replicas
	local base=$((_sp_port_min + ((shards - 1) * 4 + replicas) * _sp_window))
	local out
	out=$(
		exec 9>"$dir.lock"
		flock -w 300 9 || { echo "timed out waiting for $dir.lock"; exit 1; }
		if "$SP_SRCDIR/test/sandbox" status "$dir" >/dev/null 2>&1 &&
			grep -qx "SB_SHARDS=$shards" "$dir/sandbox.env" &&
			grep -qx "SB_REPLICAS=$replicas" "$dir/sandbox.env"; then
			exit 0
		fi
		# the sandbox closes descriptors it inherits, so no server holds the lock
		"$SP_SRCDIR/test/sandbox" start "$dir" --shards "$shards" --replicas "$replicas" --base-port "$base" 2>&1
	) || bail_out "cannot start the sandbox $dir: $out"
	[ -n "$out" ] && diag "$out"
	local envs
	envs=$("$SP_SRCDIR/test/sandbox" env "$dir") || bail_out "no sandbox in $dir"
	eval "$envs"
	export SB_DIR=$dir SB_SHARDS SB_REPLICAS
	local v
	for v in $(compgen -v SB_PRIMARY_PORT_) $(compgen -v SB_REPLICA_PORT_); do export "$v"; done
}

# sandbox_private SHARDS REPLICAS BASE_PORT: a sandbox of this test's own in
# $SP_TMP/sb (for tests that stop, promote or pause servers), stopped when the test
# exits. Sets SB (= SB_DIR) and the SB_* variables of `test/sandbox env`.
sandbox_private() {
	SB=$SP_TMP/sb
	at_exit "'$SP_SRCDIR/test/sandbox' stop '$SB' >/dev/null 2>&1; rm -rf '$SB'/shard*"
	local out
	out=$("$SP_SRCDIR/test/sandbox" start "$SB" --shards "$1" --replicas "$2" --base-port "$3" 2>&1) ||
		bail_out "cannot start a sandbox in $SB: $out"
	eval "$("$SP_SRCDIR/test/sandbox" env "$SB")"
	export SB SB_DIR=$SB SB_SHARDS SB_REPLICAS
}

# pgctl ARGS...: pg_ctl (PostgreSQL 15) as the servers' owner, without our descriptors
# (a server holding the TAP pipe or a coproc's pipes would keep them open after we
# exit); its output is appended to $SP_TMP/pg_ctl.out
pgctl() {
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			case $fd in 0 | 1 | 2) ;; *) eval "exec $fd>&-" 2>/dev/null ;; esac
		done
		cd / || exit 1
		export HOME=$SB LC_ALL=C.UTF-8
		if [ "$(id -u)" = 0 ]; then
			setpriv --reuid=postgres --regid=postgres --clear-groups -- /usr/lib/postgresql/15/bin/pg_ctl "$@"
		else
			/usr/lib/postgresql/15/bin/pg_ctl "$@"
		fi
	) </dev/null >>"$SP_TMP/pg_ctl.out" 2>&1
}

# pg_psql PORT [ARGS...]: psql straight to a sandbox server, as superuser postgres
pg_psql() {
	local port=$1
	shift
	PGPASSWORD= psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d app "$@"
}

# on SHARD SQL...: psql as postgres straight to that shard's primary, notices off
on() {
	local v=SB_PRIMARY_PORT_$1
	shift
	PGOPTIONS='-c client_min_messages=warning' pg_psql "${!v}" -c "$*"
}
# on_all SQL...: the same on every shard's primary, output dropped; fails if one fails
on_all() {
	local i
	for ((i = 0; i < SB_SHARDS; i++)); do on "$i" "$@" >/dev/null || return 1; done
}
# sess [DB] < SCRIPT: one shardsql.py session through shardpool (see that file), with a
# time limit, so a statement that never completes fails its test instead of the run
sess() {
	timeout 60 /usr/bin/python3 "$SP_SRCDIR/test/integration/shardsql.py" \
		"host=127.0.0.1 port=$SP_PORT user=app password=secret dbname=${1:-app}" ||
		{ [ $? = 124 ] && echo "TIMEOUT: no answer within 60 s"; }
}

# run_checks LABEL CMD...: runs a driver program (150 s at most), which prints
# `check<TAB>desc<TAB>got<TAB>expected` lines and `end` last; every check becomes an
# `is`, other lines diagnostics; then its exit status and that it reached the end
run_checks() {
	local label=$1 out=$SP_TMP/$1.out rc line kind desc got exp saw_end=0
	shift
	timeout 150 "$@" >"$out" 2>"$SP_TMP/$label.stderr"
	rc=$?
	while IFS= read -r line; do
		IFS=$'\x1f' read -r kind desc got exp <<<"${line//$'\t'/$'\x1f'}"
		case $kind in
		check) is "$got" "$exp" "$label: $desc" ;;
		end) saw_end=1 ;;
		*) diag "$label: $line" ;;
		esac
	done <"$out"
	is "$rc" 0 "$label: the program exits 0"
	is "$saw_end" 1 "$label: the program ran to the end"
	[ -s "$SP_TMP/$label.stderr" ] && [ "$rc" != 0 ] && diag "$(tail -n 20 "$SP_TMP/$label.stderr")"
	return 0
}

# ---------------------------------------------------------------- test programs
# rawclient (built by make check; a test skips itself when it is missing) and a clock
RAW=$SP_BUILDDIR/test/integration/rawclient
# raw STEP...: rawclient with a time limit (see rawclient.c for the steps)
raw() { timeout 60 "$RAW" "$@"; }
# now_ms: a clock in milliseconds
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- shardpool

# sp_write_config FILE [KEY=VALUE...]: the sandbox's shardpool.ini with a fresh
# listen_port (exported as SP_PORT), log and pid files next to FILE (SP_LOG, SP_PIDFILE),
# and KEY=VALUE lines set in the [shardpool] section (replacing a key already there).
sp_write_config() {
	local file=$1
	shift
	[ -n "${SB_DIR:-}" ] || sandbox_ensure
	SP_PORT=$(free_port) || bail_out "no free port"
	SP_CONFIG=$file
	SP_LOG=${file%.*}.log
	SP_PIDFILE=${file%.*}.pid
	export SP_PORT SP_CONFIG SP_LOG SP_PIDFILE
	# under valgrind the health checker's libpq (SCRAM) runs many times slower: a probe
	# that times out would mark a healthy primary down (a test may still set its own)
	local slow=
	[ "${SP_VALGRIND:-0}" = 1 ] && slow=health_check_timeout=20s
	printf '%s\n' $slow "listen_port=$SP_PORT" "log_file=$SP_LOG" "pid_file=$SP_PIDFILE" "$@" |
		awk '
		FNR == NR {
			k = $0; sub(/[ \t]*=.*/, "", k); gsub(/^[ \t]+/, "", k)
			v = $0; sub(/^[^=]*=[ \t]*/, "", v)
			if (!(k in val)) order[++n] = k
			val[k] = v
			next
		}
		function flush(   i) {
			for (i = 1; i <= n; i++)
				if (!(order[i] in done)) print order[i] " = " val[order[i]]
			flushed = 1
		}
		/^[ \t]*\[/ {
			if (insec && !flushed) flush()
			insec = ($0 ~ /^[ \t]*\[shardpool\][ \t]*$/)
			print; next
		}
		insec {
			k = $0; sub(/[ \t]*=.*/, "", k); gsub(/^[ \t]+/, "", k)
			if ((k in val) && $0 ~ /=/) {
				if (!(k in done)) print k " = " val[k]
				done[k] = 1
				next
			}
		}
		{ print }
		END { if (insec && !flushed) flush() }
		' - "$SB_DIR/shardpool.ini" >"$file" || bail_out "cannot write $file"
}

# sp_start FILE: shardpool in the background (SP_PID), up and accepting on SP_PORT.
# SP_WRAPPER, if set, is a command (words) shardpool is started through; it must exec
# shardpool in its own process so SP_PID is shardpool's (e.g. unshare without --fork).
sp_start() {
	local file=${1:-${SP_CONFIG:-}} bin=$SP_BUILDDIR/src/shardpool i limit=100
	[ -z "${SP_PID:-}" ] || bail_out "sp_start: shardpool is already running (pid $SP_PID)"
	[ -x "$bin" ] || bail_out "sp_start: $bin is not built"
	[ -f "$file" ] || bail_out "sp_start: no config file $file"
	: "${SP_PORT:?sp_start: call sp_write_config first}"
	SP_STDERR=${file%.*}.stderr
	if [ "${SP_VALGRIND:-0}" = 1 ]; then
		${SP_WRAPPER:-} valgrind --leak-check=full --error-exitcode=99 --log-file="${file%.*}.valgrind" \
			"$bin" "$file" </dev/null >"$SP_STDERR" 2>&1 {_sp_tap_fd}>&- &
		limit=600
	else
		${SP_WRAPPER:-} "$bin" "$file" </dev/null >"$SP_STDERR" 2>&1 {_sp_tap_fd}>&- &
	fi
	SP_PID=$!
	export SP_PID SP_STDERR
	for ((i = 0; i < limit; i++)); do
		if ! kill -0 "$SP_PID" 2>/dev/null; then
			wait "$SP_PID"
			local rc=$?
			SP_PID=
			_sp_log_tail
			bail_out "shardpool exited with status $rc during start-up"
		fi
		(exec 3<>"/dev/tcp/127.0.0.1/$SP_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	_sp_log_tail
	bail_out "shardpool did not accept connections on port $SP_PORT within $((limit / 10)) s"
}

_sp_log_tail() {
	local f
	local cfg=${SP_CONFIG:-}
	for f in "${SP_STDERR:-}" "${SP_LOG:-}" "${cfg%.*}.valgrind"; do
		[ -s "$f" ] || continue
		diag "--- last lines of $f:"
		diag "$(tail -n 30 "$f")"
	done
}

# sp_stop: SIGTERM, wait up to 15 s; fails (with the log tail) unless the exit status is 0
sp_stop() {
	local pid=${SP_PID:-} i rc
	[ -n "$pid" ] || { echo "sp_stop: shardpool is not running"; return 1; }
	SP_PID=
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		echo "shardpool did not exit within 15 s of SIGTERM; killed"
		_sp_log_tail
		return 1
	fi
	wait "$pid"
	rc=$?
	if [ "$rc" != 0 ]; then
		echo "shardpool exited with status $rc"
		_sp_log_tail
		return 1
	fi
	return 0
}

# sp_psql [ARGS...]: psql through shardpool; user app / password secret / db app unless
# SP_USER, SP_PASSWORD, SP_DB say otherwise
sp_psql() {
	PGPASSWORD=${SP_PASSWORD-secret} psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 \
		-p "$SP_PORT" -U "${SP_USER:-app}" -d "${SP_DB:-app}" "$@"
}
