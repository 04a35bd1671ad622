#!/usr/bin/env bats
# Shutdown loses nothing: after SIGTERM the server stops listening, serves
# every connection it has accepted or that waits in its listen backlog
# (starting the experiment processes they need), and says how many it
# could not serve.  "Acknowledged" is omlsend's word: every byte of the
# connection written and acknowledged by the server's TCP before the
# server closed it.

load helpers

stopped() {
	ps -o stat= -p "$1" | grep -q '^T'
}

# The server exits by itself, with status 0, within $1 seconds.
server_exits() {
	wait_gone "$SERVER_PID" "$1" || {
		echo "the server did not stop within $1 s" >&2
		return 1
	}
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ] || { echo "server exited with status $rc" >&2; return 1; }
}

@test "clients in the listen backlog and waiting for new experiments' processes at SIGTERM all store their rows" {
	start_server -d 3
	# SIGTERM first, then 200 clients of 100 new experiments, all while
	# the master cannot run: it wakes to the signal with every client
	# still in its backlog
	kill -STOP "$SERVER_PID"
	wait_for 10 stopped "$SERVER_PID"
	kill -TERM "$SERVER_PID"
	"$OMLSEND" -c 200 -E 100 -n 10 "127.0.0.1:$PORT" 2>"$T/send.err"
	grep -qx 'omlsend: 200 of 200 connections acknowledged' "$T/send.err"
	kill -CONT "$SERVER_PID"
	server_exits 60
	local i n bad=0 rows=0
	for i in $(seq 0 99); do
		n=$(sq "omlsend-$i" 'SELECT count(*) FROM gen' 2>/dev/null) || n=0
		rows=$((rows + n))
		[ "$n" = 20 ] || bad=$((bad + 1))
	done
	echo "200 clients of 100 new experiments queued behind SIGTERM: $rows of 2000 rows stored, $bad experiments short" >&3
	[ "$bad" -eq 0 ]
	log_has 'stopped; every connection was served'
	log_lacks 'connection closed|connection dropped'
}

@test "a client still sending its header at SIGTERM is served once its header comes" {
	start_server
	local a rest
	exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'protocol: 5\n' >&"$a"
	wait_log 'connection from 127\.0\.0\.1 port'
	kill -TERM "$SERVER_PID"
	wait_log 'Terminated: stopping'
	printf 'domain: late\nstart-time: 1\nsender-id: a\napp-name: t\nschema: 1 gen n:int32\ncontent: text\n\n0.5\t1\t1\t7\n0.6\t1\t2\t8\n' >&"$a"
	exec {a}>&-
	server_exits 20
	[ "$(sq late 'SELECT group_concat(n) FROM gen')" = 7,8 ]
	log_has 'stopped; every connection was served'
}

@test "at shutdown the server logs how many connections it could not serve" {
	start_server --header-timeout 2
	printf 'protocol: 5\nsender-id: half\n' >"$T/half"
	bg "$OMLSEND" -q -r "$T/half" -c 3 -H 30000 "127.0.0.1:$PORT"
	wait_for 10 eval '[ "$(grep -c "connection from" "$LOG")" -eq 3 ]'
	send -e whole -n 4
	wait_rows whole gen 4
	kill -TERM "$SERVER_PID"
	server_exits 20
	[ "$(grep -c 'did not name its experiment in time; connection closed' "$LOG")" -eq 3 ]
	log_has 'stopped; 3 connections could not be served'
	[ "$(sq whole 'SELECT count(*) FROM gen')" = 4 ]
}
