# Shared by every t/*.bats file.  Each test gets its own directory and its
# own server on a free loopback port; readiness and results are polled for,
# never slept for; a failed test prints the server log.

T_TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
OML2_SERVER=${OML2_SERVER:-$T_TOP/oml2-server}
OMLSEND=${OMLSEND:-$T_TOP/t/omlsend}
# The tools built with the server under test (t/asan/ has its own).
OML2_IMPORT=${OML2_IMPORT:-$(dirname "$OML2_SERVER")/oml2-import}
OML2_MERGE=${OML2_MERGE:-$(dirname "$OML2_SERVER")/oml2-merge}
T_USER=omltest

setup() {
	# World-traversable, so that an unprivileged server user can work here.
	T=$(mktemp -d /tmp/oml2t.XXXXXX)
	chmod 755 "$T"
	DATA=$T/data
	mkdir -p "$DATA"
	LOG=$T/server.log
	SERVER_PID=
	PORT=
	BG_PIDS=()
	export ASAN_OPTIONS="log_path=$T/asan:detect_leaks=1:abort_on_error=0"
	export UBSAN_OPTIONS="log_path=$T/ubsan:print_stacktrace=1:halt_on_error=1"
	if declare -F pg_setup >/dev/null; then pg_setup; fi
}

teardown() {
	local rc=0 f p
	for p in "${BG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		wait_gone "$SERVER_PID" 20 || kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	for f in "$T"/asan* "$T"/ubsan*; do
		[ -e "$f" ] || continue
		echo "### sanitizer report $f" >&2
		cat "$f" >&2
		rc=1
	done
	if [ "$rc" -ne 0 ] || [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		echo "### server log ($LOG)" >&2
		[ -f "$LOG" ] && tail -n 200 "$LOG" >&2
	fi
	rm -rf "$T"
	return "$rc"
}

# Wait until a command succeeds: wait_for SECONDS CMD...
wait_for() {
	local limit=$1 i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -ge $((limit * 20)) ] && return 1
		sleep 0.05
	done
}

wait_gone() {
	wait_for "${2:-10}" eval "! kill -0 $1 2>/dev/null"
}

# Run a command with a time limit and check its exit status:
# expect_status STATUS SECONDS CMD...
expect_status() {
	local want=$1 secs=$2 got=0
	shift 2
	timeout "$secs" "$@" || got=$?
	if [ "$got" -ne "$want" ]; then
		echo "expected exit status $want, got $got: $*" >&2
		return 1
	fi
}

log_has() {
	grep -q -E -- "$1" "$LOG"
}

# The log has no line matching $1.  (A bare "! log_has" mid-test can never
# fail a bats test.)
log_lacks() {
	if grep -E -- "$1" "$LOG" >&2; then
		echo "log has a line matching: $1" >&2
		return 1
	fi
}

wait_log() {
	wait_for "${2:-10}" log_has "$1" || {
		echo "log never matched: $1" >&2
		return 1
	}
}

# Run a command in the background without holding bats' output open; its
# pid is in $BG, and teardown stops it: bg CMD...
bg() {
	"$@" 3>&- &
	BG=$!
	BG_PIDS+=("$BG")
}

# A TCP port nobody on this host uses now, below the ephemeral range so
# that no outgoing connection takes it before the test binds it.
free_port() {
	local p i lo
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 11000 ] || lo=32768
	for i in $(seq 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# The port a server's log says it listens on: log_port [LOGFILE]
log_port() {
	sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "${1:-$LOG}" | head -n 1
}

# Run a server command line that logs to $LOG (any environment, user or
# options) in the background; wait until it is ready and learn its port
# into $PORT: run_server CMD...
run_server() {
	"$@" 3>&- &
	SERVER_PID=$!
	wait_log 'listening on ' 10 || return 1
	PORT=$(log_port)
	wait_log ' ready: ' 10
	[ -n "$PORT" ]
}

# Start the server on a free loopback port: start_server [OPTION...]
start_server() {
	run_server "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --logfile="$LOG" \
	    -d 4 $(backend_args) "$@"
}

# Stop the server and insist on a clean exit.
stop_server() {
	kill -TERM "$SERVER_PID"
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ] || {
		echo "server exited with status $rc" >&2
		return 1
	}
}

send() {
	"$OMLSEND" -q "$@" "127.0.0.1:$PORT"
}

# sqlite3 as a patient reader: it waits out a moment's lock.
sqlite() {
	sqlite3 -batch -cmd '.timeout 5000' "$@"
}

# Reads an experiment's database; never creates it (the sqlite3 shell
# would, owned by the test's user, before the server gets to it).
sq() {
	local db=$1
	shift
	[ -e "$DATA/$db.sq3" ] || { echo "no database $DATA/$db.sq3" >&2; return 1; }
	# read-only: a reader must never create the file or its -wal/-shm
	# (as root, they would then be root's, and a --user server's writes
	# would fail)
	sqlite -readonly "$DATA/$db.sq3" "$@"
}

# (a reader must not create the file before the server does)
sql_is() {
	[ -e "$DATA/$1.sq3" ] &&
	    [ "$(sq "$1" "$2" 2>/dev/null)" = "$3" ]
}

# Wait until a query returns the expected text: wait_sql DB SQL WANT [SECS]
# (not through eval: inside wait_for, $1... would be wait_for's own)
wait_sql() {
	local got
	wait_for "${4:-10}" sql_is "$1" "$2" "$3" || {
		got=$(sq "$1" "$2" 2>&1)
		echo "sql: $2: wanted '$3', got '$got'" >&2
		return 1
	}
}

wait_rows() {	# either backend
	wait_q "$1" "SELECT count(*) FROM \"$2\"" "$3" "${4:-10}"
}

# Pids of the server's children, optionally only those serving experiment $1.
child_pids() {
	local pat="oml2-server: ${1:+exp $1 }"
	pgrep -P "$SERVER_PID" -f "$pat" || true
}

exp_pid() {
	pgrep -P "$SERVER_PID" -f "oml2-server: exp $1 \\(" | head -n 1
}

need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

# The unprivileged user the privilege tests run the server as.
ensure_test_user() {
	id "$T_USER" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /usr/sbin/nologin "$T_USER" 2>/dev/null ||
		id "$T_USER" >/dev/null 2>&1
}

# An iput stand-in first in PATH, for the shipped hook: it records its
# arguments, one call a line, in $T/iput.args and keeps a copy of the
# file it uploads in $T/irods/.
fake_iput() {
	mkdir -p "$T/bin" "$T/irods"
	cat >"$T/bin/iput" <<-IPUT
	#!/bin/sh
	printf '%s\n' "\$*" >>"$T/iput.args"
	for a; do
		case \$a in -*) ;; *) [ ! -f "\$a" ] || cp "\$a" "$T/irods/" ;; esac
	done
	exit 0
	IPUT
	chmod 755 "$T/bin/iput"
	chmod 777 "$T/irods"
	export PATH=$T/bin:$PATH
}

# A raw byte stream to the server (printf-style escapes): raw FORMAT [ARG...]
raw() {
	local f=$T/raw.$RANDOM
	printf "$@" >"$f"
	"$OMLSEND" -q -r "$f" "127.0.0.1:$PORT"
}

# The same, insisting that the server closes the connection.
raw_refused() {
	local f=$T/raw.$RANDOM
	printf "$@" >"$f"
	"$OMLSEND" -q -r "$f" -W -w 10 "127.0.0.1:$PORT"
}

# Does database $1 hold what the original server stored in dump $2?  Same
# tables and DDL, same rows in every column but oml_ts_server (receive time).
same_as_original() {
	local db=$1 orig=$T/orig.$RANDOM.sq3 t q a b
	sqlite "$orig" <"$2"
	q="SELECT type, name, sql FROM sqlite_master ORDER BY name"
	a=$(sqlite "$db" "$q")
	b=$(sqlite "$orig" "$q")
	[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; return 1; }
	for t in $(sqlite "$orig" "SELECT name FROM sqlite_master WHERE type = 'table'"); do
		q=$(sqlite "$orig" "SELECT 'SELECT ' || group_concat('quote(\"' || name || '\")', ' || ''|'' || ') || ' FROM \"$t\" ORDER BY rowid' FROM pragma_table_info('$t') WHERE name != 'oml_ts_server'")
		a=$(sqlite "$db" "$q")
		b=$(sqlite "$orig" "$q")
		[ "$a" = "$b" ] || {
			echo "table $t differs:" >&2
			diff <(echo "$a") <(echo "$b") >&2
			return 1
		}
	done
}

# --- Backend-neutral reading -------------------------------------------
# Tests that should hold for both backends read through these, so that the
# same file runs with OML2_BACKEND=postgresql (see t/pg.bash once present).
BACKEND=${OML2_BACKEND:-sqlite}

if [ "$BACKEND" = postgresql ]; then . "$BATS_TEST_DIRNAME/pg.bash"; fi

# Extra server options for the backend under test.
backend_args() {
	if [ "$BACKEND" = postgresql ] && declare -F pg_server_args >/dev/null; then
		pg_server_args
	fi
}

# Query experiment $1's database; rows as a|b|c, no headers: q EXP SQL
q() {
	if [ "$BACKEND" = postgresql ]; then
		pg_query "$1" "$2"
	else
		sq "$1" "$2"
	fi
}

q_is() {
	[ "$BACKEND" = postgresql ] || [ -e "$DATA/$1.sq3" ] || return 1
	[ "$(q "$1" "$2" 2>/dev/null)" = "$3" ]
}

# Change experiment $1's database behind the server's back, as an
# administrator would: q_admin EXP SQL
q_admin() {
	if [ "$BACKEND" = postgresql ]; then
		pg_query "$1" "$2"
	else
		sqlite "$DATA/$1.sq3" "$2"
	fi
}

# Wait until q EXP SQL prints WANT: wait_q EXP SQL WANT [SECS]
wait_q() {
	local got
	wait_for "${4:-10}" q_is "$1" "$2" "$3" || {
		got=$(q "$1" "$2" 2>&1)
		echo "query on $1: $2: wanted '$3', got '$got'" >&2
		return 1
	}
}

# SQL fragments whose spelling differs between the backends.
sql_hex() {	# upper-case hex of a blob column
	if [ "$BACKEND" = postgresql ]; then echo "upper(encode($1, 'hex'))"; else echo "hex($1)"; fi
}
sql_int() {	# a bool or integer column as an integer
	echo "CAST($1 AS INTEGER)"
}
