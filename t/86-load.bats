#!/usr/bin/env bats
# Load: many connections at once, half-open headers, and running out of
# file descriptors.  Each test prints its figures on the bats output.

load helpers

# Milliseconds since an arbitrary origin.
ms() {
	echo $(( $(date +%s%N) / 1000000 ))
}

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# The master's count of connections still naming their experiment, from
# a status summary asked for now.
pending_count() {
	local n
	n=$(grep -c 'status: master' "$LOG" || true)
	kill -USR1 "$SERVER_PID"
	wait_for 5 eval '[ "$(grep -c "status: master" "$LOG")" -gt '"$n"' ]' || return 1
	grep 'status: master' "$LOG" | tail -n 1 |
	    sed 's/.* \([0-9]*\) connections naming.*/\1/'
}

pending_is() {
	[ "$(pending_count)" = "$1" ]
}

# Is the master asleep in epoll_wait, watching its listening socket?  (Its
# one epoll descriptor lists what it watches in /proc/PID/fdinfo.)
master_listening_asleep() {
	local f epfd= lfd
	for f in /proc/"$SERVER_PID"/fd/*; do
		[ "$(readlink "$f")" = 'anon_inode:[eventpoll]' ] && epfd=${f##*/}
	done
	lfd=$(ss -Hltnp "sport = :$PORT" |
	    sed -n "s/.*pid=$SERVER_PID,fd=\([0-9]*\).*/\1/p")
	[ -n "$epfd" ] && [ -n "$lfd" ] &&
	    grep -q "^tfd: *$lfd " "/proc/$SERVER_PID/fdinfo/$epfd" &&
	    grep -q 'ep_poll\|epoll_wait' "/proc/$SERVER_PID/wchan"
}

# Process $1 is stopped (by SIGSTOP), not merely told to stop.
stopped() {
	ps -o stat= -p "$1" | grep -q '^T'
}

# Connections the kernel has accepted for the server that it has not.
accept_queue_is() {
	[ "$(ss -Hltn "sport = :$PORT" | awk '{ print $2 }')" = "$1" ]
}

# Bytes waiting to be read on the server's end of the client at port $1.
server_holds() {
	[ "$(ss -Htn state established "sport = :$PORT and dport = :$1" |
	    awk '{ print $1 }')" = "$2" ]
}

@test "1000 connections that never finish their header delay no real client and are reaped" {
	# (from one address, as many as it likes)
	start_server -d 3 --header-timeout 3 --max-source-pending 0
	printf 'protocol: 5\nsender-id: half\n' >"$T/half"
	bg "$OMLSEND" -q -r "$T/half" -c 1000 -H 30000 "127.0.0.1:$PORT"
	wait_for 20 pending_is 1000
	# real clients go straight through
	local t0 t1
	t0=$(ms)
	send -e real -n 100 -S r1
	send -e real -n 100 -b -S r2
	t1=$(ms)
	wait_rows real gen 200
	echo "two real clients with 1000 half-open connections: $((t1 - t0)) ms" >&3
	[ $((t1 - t0)) -lt 3000 ]
	# and all of the half-open ones are reaped after --header-timeout
	wait_for 10 eval '[ "$(grep -c "did not name its experiment in time; connection closed" "$LOG")" -eq 1000 ]'
	pending_is 0
}

@test "past --max-pending the oldest half-open connections are dropped so real clients get in" {
	start_server -d 3 --max-pending 100 --header-timeout 60
	printf 'protocol: 5\nsender-id: half\n' >"$T/half"
	bg "$OMLSEND" -q -r "$T/half" -c 1000 -H 30000 "127.0.0.1:$PORT"
	wait_for 20 eval '[ "$(grep -c "dropping the oldest; connection closed" "$LOG")" -eq 900 ]'
	pending_is 100
	local t0 t1
	t0=$(ms)
	send -e real -n 100
	t1=$(ms)
	wait_rows real gen 100
	echo "a real client past --max-pending: $((t1 - t0)) ms" >&3
	[ $((t1 - t0)) -lt 3000 ]
	# one more half-open connection came in with it, so one more went
	[ "$(grep -c "dropping the oldest; connection closed" "$LOG")" -eq 901 ]
}

@test "a client that names its experiment while the master takes another connection past --max-pending is served" {
	# The master reads the oldest connection itself before it drops one
	# past --max-pending.  Here that names its experiment, which needs a
	# process, while the connection's own event is still to come in the
	# same wakeup: the master stopped, a second connection waits in the
	# backlog, then the first sends the rest of its header.
	start_server --max-pending 1 --spares 0
	local a b aport rest
	exec {a}<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'protocol: 5\n' >&"$a"
	wait_log 'connection from 127\.0\.0\.1 port'
	aport=$(sed -n 's/.*connection from 127\.0\.0\.1 port \([0-9]*\)$/\1/p' "$LOG")
	# the age at which --max-pending may drop it for a newer one
	sleep 2.1
	wait_for 10 master_listening_asleep
	kill -STOP "$SERVER_PID"
	wait_for 10 stopped "$SERVER_PID"
	exec {b}<>"/dev/tcp/127.0.0.1/$PORT"
	wait_for 10 accept_queue_is 1
	printf -v rest 'domain: named\nstart-time: 1\nsender-id: a\napp-name: t\nschema: 1 gen n:int32\ncontent: text\n\n0.5\t1\t1\t7\n'
	printf '%s' "$rest" >&"$a"
	wait_for 10 server_holds "$aport" "${#rest}"
	kill -CONT "$SERVER_PID"
	wait_rows named gen 1
	exec {a}>&- {b}>&-
	log_lacks 'end of headers|connection closed'
}

@test "2000 clients across 100 experiments store every row" {
	start_server -d 3
	local t0 t1 i bad=0
	t0=$(ms)
	send -c 2000 -E 100 -n 20
	t1=$(ms)
	for i in $(seq 0 99); do
		wait_rows "omlsend-$i" gen 400 20 || bad=$((bad + 1))
	done
	echo "2000 clients, 100 experiments, 40000 rows: sent in $((t1 - t0)) ms, all stored after $(( $(ms) - t0 )) ms" >&3
	[ "$bad" -eq 0 ]
	[ "$(grep -c 'ready: omlsend-' "$LOG")" -eq 2000 ]
	log_lacks 'connection closed|connection dropped|tuple dropped'
}

@test "out of file descriptors, the master pauses accepting without spinning and serves everyone" {
	start_server -d 3
	prlimit --pid "$SERVER_PID" --nofile=64:64
	local c0 c1 t0 t1 i starved
	# Every client is in the listen backlog before the master runs
	# again, and writes its header in pieces, so that the master does
	# run out, holding connections that have not named their experiment
	# yet (on a slow machine, clients that come one by one and say it at
	# once would be served as fast as they come).
	kill -STOP "$SERVER_PID"
	c0=$(cpu_ticks "$SERVER_PID")
	t0=$(ms)
	bg "$OMLSEND" -q -c 200 -E 10 -n 5 -H 1000 -C 16 -d 100 "127.0.0.1:$PORT"
	wait_for 20 accept_queue_is 200
	kill -CONT "$SERVER_PID"
	for i in $(seq 0 9); do
		wait_rows "omlsend-$i" gen 100
	done
	t1=$(ms)
	c1=$(cpu_ticks "$SERVER_PID")
	starved=$(sed -n 's/.*accept: pausing until a descriptor is free (\([0-9]*\) time.*/\1/p' "$LOG" |
	    awk '{ n += $1 } END { print n + 0 }')
	echo "200 clients under a 64-descriptor limit: all stored in $((t1 - t0)) ms; $(grep -c "accept: pausing" "$LOG") pause lines, $starved refusals in the first; master CPU $(( (c1 - c0) * 10 )) ms" >&3
	log_has 'master: accept: pausing until a descriptor is free .*: Too many open files'
	[ "$starved" -gt 0 ]
	# no busy loop: the master used a fraction of the time it waited, and
	# said so at most about once a second
	[ $(( (c1 - c0) * 10 )) -lt $(( (t1 - t0) / 4 )) ]
	[ "$(grep -c 'accept: pausing' "$LOG")" -le $(( (t1 - t0) / 1000 + 2 )) ]
	[ "$(grep -c 'cannot start an experiment process' "$LOG")" -le $(( (t1 - t0) / 1000 + 2 )) ]
	[ "$(grep -c 'ready: omlsend-' "$LOG")" -eq 200 ]
}

@test "an experiment process that stops taking connections costs only its own clients" {
	start_server -d 3
	send -e stuck -n 1
	wait_rows stuck gen 1
	local pid refused
	pid=$(exp_pid stuck)
	kill -STOP "$pid"
	wait_for 10 stopped "$pid"
	prlimit --pid "$SERVER_PID" --nofile=256:256
	# more clients for it than the master has descriptors
	run "$OMLSEND" -q -c 600 -e stuck -n 1 -S many "127.0.0.1:$PORT"
	# the master has taken every one of them, and kept or refused it
	wait_for 20 accept_queue_is 0
	wait_for 20 pending_is 0
	refused=$(grep -c 'experiment stuck already has [0-9]* connections waiting for its process, which is not taking them; connection closed' "$LOG" || true)
	# everyone else is served meanwhile
	send -e other -n 5
	wait_rows other gen 5
	# and what the master kept for the stopped process is served once it runs
	kill -CONT "$pid"
	wait_rows stuck gen $((601 - refused)) 20
	echo "600 clients of a stopped experiment process under a 256-descriptor limit: $refused refused, $((600 - refused)) kept and stored; another experiment served meanwhile" >&3
	[ "$refused" -gt 0 ]
}

@test "without root, sockets past the descriptors a user may have in flight wait for their experiment process instead of being dropped" {
	need_root
	ensure_test_user
	local srv pid refused
	srv=$(user_copy "$OML2_SERVER")
	chown "$T_USER" "$DATA"
	# The kernel lets an unprivileged sender have as many descriptors in
	# flight as its RLIMIT_NOFILE: 64 here, fewer than the clients.
	# (prlimit and setpriv exec the server itself: $SERVER_PID is it.)
	run_server prlimit --nofile=64:64 setpriv --reuid="$T_USER" \
	    --regid="$T_USER" --init-groups -- "$srv" -l 127.0.0.1:0 \
	    -D "$DATA" --logfile="$LOG" -d 4
	send -e stuck -n 1
	wait_rows stuck gen 1
	pid=$(exp_pid stuck)
	kill -STOP "$pid"
	wait_for 10 stopped "$pid"
	bg "$OMLSEND" -q -c 150 -e stuck -n 1 -S many "127.0.0.1:$PORT"
	# more sockets for it than may be in flight have left the master
	wait_for 20 eval '[ "$(grep -c "names experiment stuck" "$LOG")" -gt 80 ]'
	kill -CONT "$pid"
	# every one of the 150 was served or refused by name
	wait_for 30 eval '[ $(( $(grep -c "ready: stuck:many-" "$LOG") + $(grep -c -- "--max-clients (32) reached" "$LOG") )) -eq 150 ]'
	# (the process, at the same limit, serves 32 clients at once: the
	# rest of the burst it refuses by name, a limit doing its job)
	refused=$(grep -c 'client 127.0.0.1 port [0-9]*: --max-clients (32) reached; connection closed' "$LOG" || true)
	wait_rows stuck gen $((151 - refused)) 30
	echo "150 clients, at most 64 descriptors in flight: $((150 - refused)) stored, $refused refused by --max-clients, none dropped" >&3
	log_lacks 'not reachable|connection dropped'
}

@test "a burst of clients larger than one experiment's queue is served whole while its process takes them" {
	start_server -d 3
	# 1024 descriptors: 512 for held sockets, 128 of them for one
	# experiment whose process does not take its sockets, three quarters
	# of them (more than the burst) for one that does
	prlimit --pid "$SERVER_PID" --nofile=1024:1024
	send -e burst -c 360 -n 2
	wait_rows burst gen 720 30
	log_lacks 'connections waiting for its process'
}

@test "one address cannot start more than --max-source-experiments experiments, and another still can" {
	start_server --max-source-experiments 3
	local i
	send -e mine -E 3 -c 3 -n 2
	for i in 0 1 2; do
		wait_rows "mine-$i" gen 2
	done
	run send -e mine-3 -n 2
	wait_log 'client 127\.0\.0\.1 port [0-9]+: experiment mine-3 refused: 127\.0\.0\.1 already started --max-source-experiments \(3\); connection closed'
	[ ! -e "$DATA/mine-3.sq3" ]
	# its running experiments still take its clients
	send -e mine-0 -n 2 -S again
	wait_rows mine-0 gen 4
	# and another address starts one of its own
	"$OMLSEND" -q -l 127.0.0.2 -e theirs -n 2 "127.0.0.1:$PORT"
	wait_rows theirs gen 2
}

@test "half-open connections from one address push out only its own past --max-source-pending" {
	start_server -d 3 --max-pending 50 --max-source-pending 10 --header-timeout 60
	printf 'protocol: 5\nsender-id: half\n' >"$T/half"
	bg "$OMLSEND" -q -l 127.0.0.2 -r "$T/half" -c 5 -H 30000 "127.0.0.1:$PORT"
	wait_for 10 pending_is 5
	bg "$OMLSEND" -q -r "$T/half" -c 30 -H 30000 "127.0.0.1:$PORT"
	# its excess goes once it has had its two seconds
	wait_for 20 eval '[ "$(grep -c "too many connections from this address still sending their header (--max-source-pending 10); dropping its oldest; connection closed" "$LOG")" -eq 20 ]'
	pending_is 15
	log_lacks 'client 127\.0\.0\.2 port .*connection closed'
	# and a real client from anywhere gets in at once
	send -e real -n 3
	wait_rows real gen 3
}

@test "past --max-pending the address holding the most half-open connections loses its oldest, not another's" {
	start_server -d 3 --max-pending 10 --max-source-pending 0 --header-timeout 60
	printf 'protocol: 5\nsender-id: half\n' >"$T/half"
	bg "$OMLSEND" -q -l 127.0.0.2 -r "$T/half" -c 3 -H 30000 "127.0.0.1:$PORT"
	wait_for 10 pending_is 3
	bg "$OMLSEND" -q -r "$T/half" -c 20 -H 30000 "127.0.0.1:$PORT"
	wait_for 20 eval '[ "$(grep -c "dropping the oldest; connection closed" "$LOG")" -eq 13 ]'
	pending_is 10
	log_lacks 'client 127\.0\.0\.2 port .*connection closed'
}

@test "a burst of new experiments is served by processes started together" {
	# Under ASan each process is large: a smaller burst.
	local n=${OML2_SANITIZED:+200} t0 t1
	n=${n:-1000}
	start_server -d 3 --max-experiments 3000 --max-source-experiments 0 --linger 1
	t0=$(ms)
	send -c "$n" -E "$n" -n 2
	wait_for 60 eval '[ "$(grep -c "ready: omlsend-" "$LOG")" -eq '"$n"' ]'
	t1=$(ms)
	wait_for 20 eval '[ "$(grep -c "closed by the client: 2 rows stored" "$LOG")" -eq '"$n"' ]'
	echo "$n new experiments at once: every client served after $((t1 - t0)) ms" >&3
	wait_rows omlsend-0 gen 2
	wait_rows "omlsend-$((n - 1))" gen 2
	log_lacks 'connection closed|connection dropped|no experiment process'
}
