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

# The tools the suite runs live where Debian puts them, some in sbin
# (haproxy, useradd, runuser), which a user's PATH lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac
case ":$PATH:" in *:/sbin:*) ;; *) PATH=$PATH:/sbin ;; esac

setup() {
	# Open to every user, sticky as /tmp is, so that an unprivileged
	# server user can work here and its sanitizer reports land here too.
	T=$(mktemp -d /tmp/oml2t.XXXXXX)
	chmod 1777 "$T"
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
	sanitizer_reports || rc=1
	if [ "$rc" -ne 0 ] || [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		show_log "$LOG"
		for f in "$T"/*.log "$T"/*/log; do
			[ "$f" = "$LOG" ] || show_log "$f"
		done
	fi
	rm -rf "$T"
	return "$rc"
}

# Print any sanitizer report of this test's processes; fail if there is one.
sanitizer_reports() {
	local f rc=0
	for f in "$T"/asan* "$T"/ubsan*; do
		[ -e "$f" ] || continue
		echo "### sanitizer report $f" >&2
		cat "$f" >&2
		rc=1
	done
	return "$rc"
}

# What a failed test shows of a server log: every line at WARN and above
# (the first 100), then the last 40 lines.  show_log FILE
show_log() {
	local n
	[ -s "$1" ] || return 0
	n=$(grep -c -E '^[0-9-]+ [0-9:.]+ (ERROR|WARN) ' "$1")
	echo "### $1: $n lines at WARN and above" >&2
	grep -E '^[0-9-]+ [0-9:.]+ (ERROR|WARN) ' "$1" | head -n 100 >&2
	[ "$n" -le 100 ] || echo "### ($((n - 100)) more)" >&2
	echo "### $1: its last 40 lines" >&2
	tail -n 40 "$1" >&2
}

# Try a command every 50 ms until it succeeds, at most SECONDS * 20
# times (a slow command on a loaded machine gets more time, not fewer
# tries); quiet, leaving in $WAITED how long it tried: wait_try SECONDS CMD...
wait_try() {
	# (odd names: a command given as an eval string sees these locals)
	local _wt_n=$(($1 * 20)) _wt_i=1 _wt_t0=${EPOCHREALTIME/[.,]/}
	shift
	WAITED=
	while ! "$@"; do
		if [ "$_wt_i" -ge "$_wt_n" ]; then
			_wt_i=$(( (${EPOCHREALTIME/[.,]/} - _wt_t0) / 100000 ))
			WAITED="$((_wt_n / 20)) s ($((_wt_i / 10)).$((_wt_i % 10)) s of wall time)"
			return 1
		fi
		_wt_i=$((_wt_i + 1))
		sleep 0.05
	done
}

# Wait until a command succeeds, saying what it waited for if it never
# does: wait_for SECONDS CMD...
wait_for() {
	wait_try "$@" || {
		shift
		echo "waited $WAITED for: $*" >&2
		return 1
	}
}

proc_gone() {
	! kill -0 "$1" 2>/dev/null
}

# Wait until process $1 is gone: wait_gone PID [SECONDS]
wait_gone() {
	wait_try "${2:-10}" proc_gone "$1" || {
		echo "process $1 still there after $WAITED" >&2
		return 1
	}
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
	wait_try "${2:-10}" log_has "$1" || {
		echo "waited $WAITED for a log line matching: $1" >&2
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

# A TCP port nobody on this host uses now, for a program that cannot be
# given port 0: below the kernel's range of ephemeral ports, so that no
# server bound to port 0 and no outgoing connection (of the test files
# running beside this one) takes it before the program binds it: free_port
free_port() {
	local lo p i
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
	[ "$lo" -gt 20000 ] || lo=32768
	for i in $(seq 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		[ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || { echo "$p"; return 0; }
	done
	echo "no free port below $lo in 100 tries" >&2
	return 1
}

# A time bound in ms for a test that shows an operation is not quadratic
# (the quadratic version took several times the bound): four times
# longer under ASan and UBSan, which slow the server that much.
slow_bound() {
	if [ -n "${OML2_SANITIZED:-}" ]; then echo $(($1 * 4)); else echo "$1"; fi
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
	wait_try "${4:-10}" sql_is "$1" "$2" "$3" || {
		got=$(sq "$1" "$2" 2>&1)
		echo "waited $WAITED for sql: $2: wanted '$3', got '$got'" >&2
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

# A copy of each FILE in $T/u, for what a test runs as $T_USER: the
# checkout may be under a home of mode 0700 that no other user can enter,
# and a user's umask may have left it unreadable to others.  Prints the
# path of the last copy: user_copy FILE...
user_copy() {
	local f
	mkdir -p "$T/u" && chmod 755 "$T/u" || return 1
	for f; do
		cp "$f" "$T/u/" && chmod a+rX "$T/u/${f##*/}" || return 1
	done
	echo "$T/u/${f##*/}"
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
	wait_try "${4:-10}" q_is "$1" "$2" "$3" || {
		got=$(q "$1" "$2" 2>&1)
		echo "waited $WAITED for a query on $1: $2: wanted '$3', got '$got'" >&2
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

# The control socket of the server start_server started.
OML2CTL=${OML2CTL:-$(dirname "$OML2_SERVER")/oml2ctl}
ctl() {
	"$OML2CTL" -s "$DATA/oml2-server.sock" -w 20 "$@"
}

# jq FILTER on the JSON of an oml2ctl command: cj FILTER COMMAND...
cj() {
	local f=$1
	shift
	ctl --json "$@" | jq -r "$f"
}

# Does cj print WANT?  cj_is WANT FILTER COMMAND...
cj_is() {
	local want=$1
	shift
	[ "$(cj "$@" 2>/dev/null)" = "$want" ]
}

wait_cj() {
	local want=$1 secs=$2
	shift 2
	wait_for "$secs" cj_is "$want" "$@" || {
		echo "wanted '$want' from $*, got '$(cj "$@" 2>&1)'" >&2
		return 1
	}
}
