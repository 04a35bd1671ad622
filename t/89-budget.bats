#!/usr/bin/env bats
# Bounded resources per tenant: file descriptors of an experiment's
# process, memory held for unfinished packets and lines, and the memory
# one packet of each type costs while it is stored.  Each test prints its
# figures on the bats output.

load helpers

# Open descriptors of a process.
nfds() {
	ls "/proc/$1/fd" | wc -l
}

@test "an experiment process out of descriptors refuses clients by name and still retires" {
	start_server --linger 1
	bg "$OMLSEND" -q -e fdexp -S held -n 5 -H 60000 "127.0.0.1:$PORT"
	local held=$BG pid n
	wait_rows fdexp gen 5
	pid=$(exp_pid fdexp)
	# no descriptor free at all: the kernel drops the one passed
	n=$(nfds "$pid")
	prlimit --pid "$pid" --nofile="$n:"
	raw_refused 'protocol: 5\ndomain: fdexp\nsender-id: lost\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: lost in the hand-over: this process has no file descriptor free; connection closed'
	# a few free, but too few to serve one more client safely
	prlimit --pid "$pid" --nofile="$((n + 4)):"
	raw_refused 'protocol: 5\ndomain: fdexp\nsender-id: short\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: this process is short of file descriptors \([0-9]+ in use or more, limit [0-9]+\); connection closed'
	log_lacks 'malformed message'
	# the held client never noticed; once it leaves, the process retires
	kill "$held"
	wait_log "experiment fdexp: idle, retiring process $pid" 10
	wait_gone "$pid" 10
	[ "$(q fdexp "SELECT count(*) FROM gen")" = 5 ]
	echo "refused at $n and $((n + 4)) descriptors; retired" >&3
}

@test "--max-clients above RLIMIT_NOFILE is lowered at start with a log line, and the clients past it are refused by name" {
	run_server prlimit --nofile=64:64 "$OML2_SERVER" -l 127.0.0.1:0 \
	    -D "$DATA" --logfile="$LOG" --max-clients 1000 --linger 1
	log_has -- '--max-clients lowered from 1000 to 32: a process may open only 64 files \(RLIMIT_NOFILE\)'
	bg "$OMLSEND" -q -e cap -c 60 -n 2 -H 60000 "127.0.0.1:$PORT"
	local clients=$BG
	wait_rows cap gen 64 20
	wait_for 20 eval '[ "$(grep -c -- "--max-clients (32) reached; connection closed" "$LOG")" -eq 28 ]'
	log_lacks 'malformed message|lost in the hand-over|short of file descriptors'
	local pid
	pid=$(exp_pid cap)
	kill "$clients"
	wait_log "experiment cap: idle, retiring process $pid" 10
	echo "60 clients at 64 descriptors: 32 served, 28 refused by name" >&3
}
