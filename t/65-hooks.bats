#!/usr/bin/env bats
# Event hooks (-H): what a hook is told and when, hooks that misbehave, and
# the iRODS hook shipped in hooks/.

load helpers
bats_require_minimum_version 1.5.0

HOOKS=$BATS_TEST_DIRNAME/hooks

# A hook that outlives its server (what some tests here look for) is
# ended with its process group after the test, whatever became of it.
eval "helpers_$(declare -f teardown)"
teardown() {
	local f
	for f in "${HOOK_REC:-/nonexistent}"/*.hook; do
		[ -s "$f" ] && kill -- -"$(cat "$f")" 2>/dev/null
	done
	helpers_teardown
}

hook_setup() {
	HOOK_REC=$T/rec
	mkdir -p "$HOOK_REC"
	chmod 777 "$HOOK_REC"
	export HOOK_REC
}

# The URI experiment $1's hook is given, as an extended regex.
uri_re() {
	if [ "$BACKEND" = postgresql ]; then
		echo "postgresql://[^@/]+@[^:/]+:[0-9]+/$1"
	else
		printf 'file:%s/%s\\.sq3' "$(printf %s "$DATA" | sed 's/[].[\*^$+?(){}|]/\\&/g')" "$1"
	fi
}

# What experiment $1's recording hooks were told, oldest hook first, each
# of its URIs checked and shown as URI.
told() {
	local f re
	re=$(uri_re "$1")
	for f in $(ls -tr "$HOOK_REC"/*.rec 2>/dev/null); do
		grep -Eq "^DB[A-Z]+ $re\$" "$f" || continue
		sed -E "s#^(DB[A-Z]+) $re\$#\\1 URI#" "$f"
	done
}

# Wait until experiment $1's hooks were told exactly $2.
wait_told() {
	local wt_exp=$1 wt_want=$2
	wait_for "${3:-10}" eval '[ "$(told "$wt_exp")" = "$wt_want" ]' || {
		echo "hooks of $1 were told:" >&2
		told "$1" >&2
		echo "--- wanted:" >&2
		echo "$2" >&2
		return 1
	}
}

# The server and every experiment process named are still there, and
# their hooks, whatever became of them, are reaped.
all_alive() {
	local e
	kill -0 "$SERVER_PID"
	for e in "$@"; do
		[ -n "$(exp_pid "$e")" ] || { echo "no process for $e" >&2; return 1; }
		wait_for 10 eval '! ps -o stat= --ppid "$(exp_pid "$e")" | grep -q Z' ||
			{ echo "a zombie hook" >&2; return 1; }
	done
	log_lacks 'master: .*(killed by signal|exited with status|died)'
}

@test "a hook is told DBCREATED and DBCLOSED, then DBOPENED and DBCLOSED for a second connection" {
	hook_setup
	start_server -H "$HOOKS/record"
	send -e twice -n 5
	wait_told twice "DBCREATED URI
DBCLOSED URI"
	send -e twice -n 5 -S second
	wait_told twice "DBCREATED URI
DBCLOSED URI
DBOPENED URI
DBCLOSED URI"
	wait_q twice 'SELECT count(*) FROM gen' 10
	# one hook process for the experiment, one newline per command
	[ "$(ls "$HOOK_REC"/*.rec | wc -l)" -eq 1 ]
	[ "$(grep -c -x '' "$HOOK_REC"/*.rec)" = 0 ]
	# its stderr reaches the log, under the experiment's name
	log_has 'exp/twice: hook: recording to '
}

@test "concurrent clients of one experiment make one DBCREATED and one DBCLOSED" {
	hook_setup
	start_server -H "$HOOKS/record"
	send -e crowd -c 5 -n 20 -H 500
	wait_q crowd 'SELECT count(*) FROM gen' 100
	wait_told crowd "DBCREATED URI
DBCLOSED URI"
}

@test "several experiments at once each have a hook of their own" {
	hook_setup
	start_server -H "$HOOKS/record"
	send -e many -E 3 -c 6 -n 10 -H 300
	local e
	for e in many-0 many-1 many-2; do
		wait_q "$e" 'SELECT count(*) FROM gen' 20
		wait_told "$e" "DBCREATED URI
DBCLOSED URI"
		log_has "exp/$e: hook: recording to "
	done
	[ "$(ls "$HOOK_REC"/*.rec | wc -l)" -eq 3 ]
}

@test "at shutdown the hook is told DBCLOSED for a connected client, then EXIT" {
	hook_setup
	start_server -H "$HOOKS/record"
	bg send -e stop -n 10 -H 30000
	wait_q stop 'SELECT count(*) FROM gen' 10
	wait_told stop "DBCREATED URI"
	stop_server
	[ "$(told stop)" = "DBCREATED URI
DBCLOSED URI
EXIT" ]
}

@test "a retiring experiment process tells its hook EXIT, and the next one starts another" {
	hook_setup
	start_server -H "$HOOKS/record" --linger 0
	send -e retire -n 3
	wait_log 'experiment retire process [0-9]+ exited'
	wait_told retire "DBCREATED URI
DBCLOSED URI
EXIT"
	send -e retire -n 3
	wait_told retire "DBCREATED URI
DBCLOSED URI
EXIT
DBOPENED URI
DBCLOSED URI
EXIT"
	[ "$(ls "$HOOK_REC"/*.rec | wc -l)" -eq 2 ]
}

@test "the hook runs as --user" {
	need_root
	ensure_test_user
	hook_setup
	chown "$T_USER" "$DATA"
	start_server -H "$(user_copy "$HOOKS/record")" --user "$T_USER"
	send -e asuser -n 3
	wait_told asuser "DBCREATED URI
DBCLOSED URI"
	[ "$(cat "$HOOK_REC"/*.id)" = "$(id -u "$T_USER")" ]
}

@test "the hook starts with no signal blocked and only the operator's signals to the server ignored, in a session of its own" {
	hook_setup
	start_server -H "$HOOKS/signals"
	send -e sigs -n 3
	wait_for 10 eval '[ -s "$HOOK_REC"/*.sig ]'
	local got
	got=$(cat "$HOOK_REC"/*.sig)
	# SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2
	[ "$got" = "blocked none
ignored 1 2 3 10 12" ] || { echo "the hook started with: $got" >&2; return 1; }
	local hook
	hook=$(basename "$HOOK_REC"/*.sig .sig)
	[ "$(ps -o sid= -p "$hook" | tr -d ' ')" = "$hook" ]
}

@test "a hook still at work --hook-timeout seconds after EXIT is ended with its process group" {
	hook_setup
	start_server -H "$HOOKS/lingers" --hook-timeout 1
	send -e linger -n 3
	wait_q linger 'SELECT count(*) FROM gen' 3
	wait_for 10 eval '[ -s "$HOOK_REC"/*.hook ]'
	local hook job
	hook=$(cat "$HOOK_REC"/*.hook)
	stop_server
	log_has "exp/linger: hook $HOOKS/lingers: still running 1 s after EXIT; ending it"
	log_has "exp/linger: hook $HOOKS/lingers: killed by signal 15 \\(Terminated\\) after EXIT"
	job=$(cat "$HOOK_REC"/*.job)
	# the hook and the job it started are gone with the server
	if kill -0 "$hook" 2>/dev/null; then
		echo "the hook outlived the server" >&2
		return 1
	fi
	wait_gone "$job" 5
}

@test "a hook whose experiment process is killed dies with it" {
	hook_setup
	start_server -H "$HOOKS/lingers"
	bg send -e orphan -n 3 -H 30000
	wait_q orphan 'SELECT count(*) FROM gen' 3
	wait_for 10 eval '[ -s "$HOOK_REC"/*.hook ]'
	local hook pid
	hook=$(cat "$HOOK_REC"/*.hook)
	wait_for 10 eval '[ -n "$(exp_pid orphan)" ]'
	pid=$(exp_pid orphan)
	kill -KILL "$pid"
	wait_log "experiment orphan process $pid killed by signal 9"
	wait_gone "$hook" 5 || {
		echo "the hook outlived its experiment process" >&2
		return 1
	}
}

@test "an experiment opened and closed again and again has one hook at a time" {
	hook_setup
	start_server -H "$HOOKS/one-at-a-time" --linger 0
	local i
	# each client comes while the last process's hook is still at work
	for i in 1 2 3 4 5; do
		send -e again -n 1 -S "s$i"
		wait_for 10 eval '[ "$(grep -c "experiment again: idle, retiring" "$LOG")" -ge '"$i"' ]'
	done
	wait_q again 'SELECT count(*) FROM gen' 5
	stop_server
	[ "$(ls "$HOOK_REC"/*.done | wc -l)" -eq 5 ]
	[ ! -e "$HOOK_REC/overlap" ] || {
		echo "hooks started while another ran: $(cat "$HOOK_REC/overlap")" >&2
		return 1
	}
	log_lacks 'connection closed|connection dropped'
}

@test "a hook the --user cannot run is logged when its experiment starts, and ingest goes on" {
	need_root
	ensure_test_user
	chown "$T_USER" "$DATA"
	cp "$HOOKS/record" "$T/rootonly"
	chmod 700 "$T/rootonly"
	start_server -H "$T/rootonly" --user "$T_USER"
	send -e noexec -n 20
	wait_q noexec 'SELECT count(*) FROM gen' 20
	wait_log "exp/noexec: hook $T/rootonly: cannot run it: Permission denied"
	wait_log "exp/noexec: hook $T/rootonly: exited with status 127 before its banner; going on without it"
	all_alive noexec
}

@test "a hook found in PATH is run by name" {
	hook_setup
	PATH=$HOOKS:$PATH start_server -H record
	send -e bypath -n 3
	wait_told bypath "DBCREATED URI
DBCLOSED URI"
}

@test "the server refuses to start with a hook that is not there or cannot run" {
	run "$OML2_SERVER" -D "$DATA" -H no-such-hook-anywhere
	[ "$status" -eq 1 ]
	[[ "$output" == *"--event-hook: no-such-hook-anywhere: no executable file of that name in PATH"* ]]
	run "$OML2_SERVER" -D "$DATA" -H "$T/missing"
	[ "$status" -eq 1 ]
	[[ "$output" == *"--event-hook: $T/missing: No such file or directory"* ]]
	touch "$T/plain"
	run "$OML2_SERVER" -D "$DATA" --event-hook="$T/plain"
	[ "$status" -eq 1 ]
	[[ "$output" == *"--event-hook: $T/plain: not an executable file"* ]]
}

# --- Hooks that misbehave ----------------------------------------------

# Two connections of experiment "bad" are stored in full while the hook
# misbehaves, the server logs exactly one line matching $2, and the server
# and the experiment's process live on: survives HOOK REGEX [SECONDS]
survives() {
	start_server -H "$HOOKS/$1"
	send -e bad -n 50
	wait_q bad 'SELECT count(*) FROM gen' 50
	wait_log "exp/bad: hook .*$2.*; going on without it" "${3:-10}"
	send -e bad -n 50 -S second
	wait_q bad 'SELECT count(*) FROM gen' 100
	[ "$(grep -c 'going on without it' "$LOG")" -eq 1 ]
	all_alive bad
}

@test "a hook that never prints its banner delays nothing and is dropped after 5 s" {
	start_server -H "$HOOKS/silent"
	send -e bad -n 50
	wait_q bad 'SELECT count(*) FROM gen' 50
	# stored while the server still waited for the banner
	log_lacks 'going on without it'
	wait_log 'exp/bad: hook .*: no banner within 5 s; going on without it' 10
	send -e bad -n 50 -S second
	wait_q bad 'SELECT count(*) FROM gen' 100
	[ "$(grep -c 'going on without it' "$LOG")" -eq 1 ]
	all_alive bad
	# and the hook was ended
	wait_for 10 eval '! pgrep -f "sleep 600" -P "$(exp_pid bad)" >/dev/null'
}

@test "a hook with a wrong banner is dropped and ingest goes on" {
	survives wrong-banner 'wrong banner "HELLO, SERVER"'
}

@test "a hook that exits at once is dropped and ingest goes on" {
	survives dies-at-once 'exited with status 3 before its banner'
	log_has 'exp/bad: hook: cannot work today'
}

@test "a hook that exits after its first command is dropped and ingest goes on" {
	survives dies-later 'exited with status 4'
}

@test "a hook that floods its stderr is rationed in the log and keeps its commands" {
	hook_setup
	start_server -H "$HOOKS/floods"
	send -e flood -n 50
	wait_q flood 'SELECT count(*) FROM gen' 50
	wait_log 'exp/flood: hook .*: too much output; dropping what exceeds'
	send -e flood -n 50 -S second
	wait_q flood 'SELECT count(*) FROM gen' 100
	wait_told flood "DBCREATED URI
DBCLOSED URI
DBOPENED URI
DBCLOSED URI"
	[ "$(grep -c 'too much output' "$LOG")" -eq 1 ]
	log_lacks 'going on without it'
	all_alive flood
	# about 100 lines a second reach the log, not the whole flood
	local n
	n=$(grep -c 'hook: flood flood' "$LOG")
	[ "$n" -gt 0 ] && [ "$n" -le 2000 ]
}

@test "a hook that stops reading its commands is dropped once they pile up" {
	# The hook's pipes do not depend on the backend; this test fills them
	# with long commands, which only SQLite's long file: URIs make.
	[ "$BACKEND" = sqlite ] || skip "needs the long URIs of SQLite paths"
	# Long commands, so that few connections fill the hook's pipe (shrunk
	# to one page by the hook) and the server's 16 KiB of queued commands.
	DATA=$T/$(printf 'd%.0s' {1..200})/$(printf 'e%.0s' {1..150})
	mkdir -p "$DATA"
	chmod -R 755 "$T"
	local name n
	name=blocked-$(printf 'x%.0s' {1..50})
	start_server -H "$HOOKS/blocks"
	# one database session a connection (n: wait_for has its own i)
	for n in $(seq 1 60); do
		send -e "$name" -n 1 -S "s$n"
		wait_for 10 eval '[ "$(grep -c "database .*/$name.sq3 closed" "$LOG")" -ge $n ]'
		log_has 'going on without it' && break
	done
	wait_log "exp/$name: hook .*: not reading its input \\([0-9]+ bytes waiting\\); going on without it"
	send -e "$name" -n 50 -S last
	wait_q "$name" 'SELECT count(*) FROM gen' $((n + 50))
	[ "$(grep -c 'going on without it' "$LOG")" -eq 1 ]
	all_alive "$name"
}

# --- The iRODS hook shipped in hooks/ ----------------------------------

SHIPPED=$T_TOP/hooks/oml2-server-hook.sh

# The database of experiment $1 as SQL text, whatever the backend.  With
# PostgreSQL, t/pg.bash is to provide pg_dump_exp EXP and pg_restore_fresh
# DUMP (restore into a new database, print it as pg_dump does).
dump_of() {
	if [ "$BACKEND" = postgresql ]; then
		pg_dump_exp "$1"
	else
		sq "$1" .dump
	fi
}

# Restore dump $1 into a fresh database and print that as SQL text.
restore_dump() {
	if [ "$BACKEND" = postgresql ]; then
		pg_restore_fresh "$1"
	else
		sqlite "$T/restored.sq3" <"$1" && sqlite "$T/restored.sq3" .dump
	fi
}

@test "the shipped hook dumps a closed experiment and uploads the dump with iput" {
	fake_iput
	mkdir -p "$T/dumps"
	chmod 777 "$T/dumps"
	cat >"$T/hook.conf" <<-CONF
	IRODS_DEST=/tempZone/home/oml/experiments/
	IRODS_RESOURCE=demoResc
	IPUT_OPTS="-f -K"
	DUMP_DIR=$T/dumps
	CONF
	export OML2_HOOK_CONF=$T/hook.conf
	# pg_dump in the hook logs in as an operator would arrange it
	[ "$BACKEND" != postgresql ] || export PGPASSWORD=$OML2_PG_PASS
	start_server -H "$SHIPPED"
	send -e shipped -n 20
	wait_for 10 eval '[ "$(grep -c . "$T/iput.args" 2>/dev/null)" = 1 ]'
	# a second connection: a second dump, of every row
	send -e shipped -n 7 -b -S binary
	wait_for 10 eval '[ "$(grep -c . "$T/iput.args" 2>/dev/null)" = 2 ]'
	wait_q shipped 'SELECT count(*) FROM gen' 27
	# the arguments: options, resource, the dump, its iRODS path
	local f b
	f=$(ls -t "$T"/dumps/shipped.*.sql | head -n 1)
	b=${f##*/}
	[[ "$b" =~ ^shipped\.[0-9]{8}T[0-9]{6}(-[0-9]+)?\.(sqlite|pg)\.sql$ ]]
	tail -n 1 "$T/iput.args" | grep -qxF -- "-f -K -R demoResc $f /tempZone/home/oml/experiments/$b"
	# what it did is in the server's log, under the experiment's name
	wait_log "exp/shipped: hook: uploaded $f to iRODS as /tempZone/home/oml/experiments/$b"
	log_has "exp/shipped: hook: dumped .* to $f"
	# the uploaded dump restores into a database with the same rows
	[ "$(restore_dump "$T/irods/$b")" = "$(dump_of shipped)" ]
}

@test "the shipped hook takes its settings from the environment over its defaults file" {
	fake_iput
	printf 'IRODS_DEST=/from/file\nIRODS_RESOURCE=fileResc\n' >"$T/hook.conf"
	sqlite "$T/x.sq3" 'CREATE TABLE t (a); INSERT INTO t VALUES (1)'
	printf 'DBCLOSED file:%s/x.sq3\nEXIT\n' "$T" |
	    OML2_HOOK_CONF=$T/hook.conf IRODS_DEST=/from/env "$SHIPPED" 2>"$T/err"
	grep -Eqx -- "-R fileResc $T/x\\.[0-9T-]+\\.sqlite\\.sql /from/env/x\\.[0-9T-]+\\.sqlite\\.sql" "$T/iput.args"
	# without a readable defaults file: iput's own defaults
	: >"$T/iput.args"
	printf 'DBCLOSED file:%s/x.sq3\nEXIT\n' "$T" |
	    OML2_HOOK_CONF=$T/none "$SHIPPED" 2>"$T/err"
	grep -Eqx -- "$T/x\\.[0-9T-]+\\.sqlite\\.sql" "$T/iput.args"
}

@test "the shipped hook leaves no partial dump behind when a dump fails" {
	fake_iput
	mkdir -p "$T/dumps" "$T/notadb.sq3"
	printf 'DUMP_DIR=%s\n' "$T/dumps" >"$T/hook.conf"
	printf 'DBCLOSED file:%s/notadb.sq3\nDBCLOSED postgresql://nobody@127.0.0.1:1/nodb\nEXIT\n' "$T" |
	    OML2_HOOK_CONF=$T/hook.conf "$SHIPPED" 2>"$T/err"
	grep -qx "sqlite3 could not dump file:$T/notadb.sq3" "$T/err"
	grep -qx "pg_dump could not dump postgresql://nobody@127.0.0.1:1/nodb" "$T/err"
	[ -z "$(ls -A "$T/dumps")" ]
	[ ! -e "$T/iput.args" ]
}

@test "the shipped hook prints its banner, skips blank lines and unknown commands, and exits on EXIT" {
	fake_iput
	run --separate-stderr sh -c "printf '\n\nFROB x\n\nDBCREATED file:/nowhere/a.sq3\n\nDBOPENED file:/nowhere/a.sq3\nEXIT\nDBCLOSED file:/nowhere/a.sq3\n' |
	    OML2_HOOK_CONF=/nonexistent '$SHIPPED'"
	[ "$status" -eq 0 ]
	[ "$output" = "OML HOOK READY" ]
	[ "$stderr" = "unknown command: FROB x
DBCREATED file:/nowhere/a.sq3
DBOPENED file:/nowhere/a.sq3
EXIT: done" ]
	[ ! -e "$T/iput.args" ]
}
