#!/usr/bin/env bats
# The process model: isolation, signals, privileges, throttling, retirement.

load helpers

@test "kill -9 of one experiment's child leaves other experiments streaming" {
	start_server
	bg send -e steady -n 3000 -B 100 -p 50
	local steady=$BG
	bg send -e victim -n 10 -H 30000
	local victim=$BG
	wait_rows victim gen 10
	local pid
	pid=$(exp_pid victim)
	kill -KILL "$pid"
	wait_log "experiment victim process $pid killed by signal 9"
	kill "$victim"
	# the other experiment finishes its stream untouched
	wait "$steady"
	wait_rows steady gen 3000
	grep -c 'client .* ready: steady:' "$LOG" | grep -qx 1
	# the next connection for the victim gets a fresh child
	send -e victim -n 5 -S again
	wait_rows victim gen 15
	[ "$(exp_pid victim)" != "$pid" ]
}

@test "SIGTERM stores every tuple already sent, closes databases and exits 0" {
	start_server
	bg send -e term -n 20000 -H 30000
	local s=$BG
	wait_for 10 eval 'sq term "SELECT count(*) FROM gen" 2>/dev/null | grep -q .'
	# the client has written everything and holds its connection
	kill -TERM "$SERVER_PID"
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ]
	[ "$(sqlite "$DATA/term.sq3" 'SELECT count(*) FROM gen')" = 20000 ]
	grep -q 'database file:.*/term.sq3 closed' "$LOG"
	grep -q 'stopped' "$LOG"
	# the database is a plain single file again
	[ ! -e "$DATA/term.sq3-wal" ]
	kill "$s" 2>/dev/null || true
}

@test "SIGINT stops the server like SIGTERM" {
	start_server
	send -e int -n 10
	wait_rows int gen 10
	kill -INT "$SERVER_PID"
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ]
}

@test "signals an operator sends to every process of the server kill nothing and lose no row" {
	HOOK_REC=$T/rec
	mkdir "$HOOK_REC"
	chmod 777 "$HOOK_REC"
	export HOOK_REC
	start_server -H "$BATS_TEST_DIRNAME/hooks/record"
	bg send -e sig -n 300 -H 30000
	wait_rows sig gen 300
	wait_for 10 eval '[ -s "$HOOK_REC"/*.id ]'
	local pids hook s p
	pids="$SERVER_PID $(child_pids)"
	hook=$(basename "$HOOK_REC"/*.id .id)
	# what kill $(pidof oml2-server) or systemctl kill would send
	for s in USR1 USR2 HUP ALRM PIPE TTIN TTOU IO PWR VTALRM PROF RTMIN; do
		kill -s "$s" $pids
	done
	for s in HUP INT QUIT USR1 USR2; do
		kill -s "$s" "$hook"
	done
	# served after all that, by the same processes
	send -e sig -n 5 -S after
	wait_rows sig gen 305
	for p in $pids $hook; do
		kill -0 "$p" || { echo "process $p is gone" >&2; return 1; }
	done
	log_lacks 'killed by signal|exited with status|going on without it'
	stop_server
	[ "$(sqlite "$DATA/sig.sq3" 'SELECT count(*) FROM gen')" = 305 ]
}

@test "SIGQUIT to every process of the server stops it as SIGTERM does, losing nothing" {
	start_server
	bg send -e quit -n 300 -H 30000
	wait_rows quit gen 300
	kill -QUIT "$SERVER_PID" $(child_pids)
	wait_gone "$SERVER_PID" 30 || {
		echo "SIGQUIT did not stop the server" >&2
		return 1
	}
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ]
	log_has 'Quit: stopping'
	[ "$(sqlite "$DATA/quit.sq3" 'SELECT count(*) FROM gen')" = 300 ]
	log_lacks 'killed by signal'
}

@test "a client that disappears never kills the server with SIGPIPE" {
	start_server
	for i in 1 2 3 4 5; do
		bg "$OMLSEND" -q -e pipe -n 100000 -C 4096 -d 5 "127.0.0.1:$PORT"
		local p=$BG
		wait_log 'client .* ready: pipe:'
		kill -KILL "$p"
		wait "$p" || true
	done
	kill -0 "$SERVER_PID"
	send -e pipe2 -n 3
	wait_rows pipe2 gen 3
}

@test "as root with --user, every child and database belongs to that user" {
	need_root
	ensure_test_user
	chown "$T_USER" "$DATA"
	start_server --user "$T_USER"
	bg send -e owned -n 5 -H 5000
	wait_rows owned gen 5
	local pid uid
	pid=$(exp_pid owned)
	uid=$(id -u "$T_USER")
	# real, effective, saved and filesystem ids all dropped
	grep -E "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" "/proc/$pid/status"
	grep -E "^CapEff:\s+0+$" "/proc/$pid/status"
	for p in $(child_pids); do
		[ "$(ps -o user= -p "$p")" = "$T_USER" ]
	done
	[ "$(stat -c %U "$DATA/owned.sq3")" = "$T_USER" ]
	[ "$(ps -o user= -p "$SERVER_PID")" = root ]
	log_has "experiment processes run as $T_USER"
}

@test "--group chooses the children's group" {
	need_root
	ensure_test_user
	chown "$T_USER" "$DATA"
	start_server --user "$T_USER" --group nogroup
	send -e grouped -n 2
	wait_rows grouped gen 2
	[ "$(stat -c %G "$DATA/grouped.sq3")" = nogroup ]
}

@test "without root the server runs as the invoking user" {
	need_root
	ensure_test_user
	local server
	server=$(user_copy "$OML2_SERVER")
	chown "$T_USER" "$DATA" "$T"
	run_server runuser -u "$T_USER" -- "$server" -l 127.0.0.1:0 \
	    -D "$DATA" --logfile="$LOG"
	send -e mine -n 2
	wait_rows mine gen 2
	[ "$(stat -c %U "$DATA/mine.sq3")" = "$T_USER" ]
	run runuser -u "$T_USER" -- "$server" -l 127.0.0.1:0 -D "$DATA" \
	    --user root
	[ "$status" -ne 0 ]
	[[ "$output" == *"only root can change user"* ]]
}

@test "spares that keep dying are throttled, not respawned in a loop" {
	start_server --spares 1
	local i pid
	for i in 1 2 3 4; do
		wait_for 20 eval '[ -n "$(pgrep -P $SERVER_PID -f "oml2-server: spare")" ]'
		pid=$(pgrep -P "$SERVER_PID" -f 'oml2-server: spare' | head -n 1)
		kill -KILL "$pid"
		wait_log "spare process $pid killed by signal 9"
	done
	log_has 'died before serving anything; waiting 0.5 s before the next'
	# the delay doubles: the fourth death waits 4 s
	log_has 'waiting 4.0 s before the next'
	[ -z "$(pgrep -P "$SERVER_PID" -f 'oml2-server: spare')" ]
}

@test "idle experiment processes retire without losing a connection" {
	start_server --linger 0
	local i
	for i in $(seq 1 30); do
		send -e churn -n 10 -S "s$i"
	done
	wait_rows churn gen 300
	wait_log 'experiment churn: idle, retiring process'
	# nothing was refused or lost on the way
	log_lacks 'connection dropped'
}

@test "the master dying makes children finish and commit" {
	start_server
	bg send -e orphan -n 500 -H 3000
	wait_rows orphan gen 500
	local child
	child=$(exp_pid orphan)
	kill -KILL "$SERVER_PID"
	wait "$SERVER_PID" || true
	SERVER_PID=
	wait_gone "$child" 10
	[ "$(sqlite "$DATA/orphan.sq3" 'SELECT count(*) FROM gen')" = 500 ]
	grep -q 'the master went away' "$LOG"
}
