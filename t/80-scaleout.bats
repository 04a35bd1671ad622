#!/usr/bin/env bats
# Scale-out: three oml2-server instances behind a real HAProxy, writing the
# same experiments in one PostgreSQL at the same time (seed manual, LOAD
# BALANCING).  Every table is created once, each sender name gets one id,
# no row is lost or doubled and no client is disconnected.

export OML2_BACKEND=postgresql
load helpers

# Fail if the command succeeds (a bare '!' does not fail a bats test).
refute() {
	if "$@"; then
		echo "should not have succeeded: $*" >&2
		return 1
	fi
}

# Three servers and HAProxy in front of them, in roundrobin so that every
# server takes part; HP is HAProxy's port, LOGS the servers' logs.
start_farm() {
	local i port ports=() cfg=$T/haproxy.cfg
	LOGS=()
	for i in 1 2 3; do
		bg "$OML2_SERVER" -l 127.0.0.1:0 --logfile="$T/s$i.log" -d 3 \
		    $(backend_args)
		LOGS+=("$T/s$i.log")
	done
	for i in 0 1 2; do
		wait_for 10 grep -q ' ready: ' "${LOGS[$i]}"
		port=$(log_port "${LOGS[$i]}")
		[ -n "$port" ]
		ports+=("$port")
	done
	HP=$(pg_free_port)
	cat >"$cfg" <<-EOF
	global
	    maxconn 1000
	defaults
	    mode tcp
	    timeout connect 5s
	    timeout client 60s
	    timeout server 60s
	listen oml2server
	    bind 127.0.0.1:$HP
	    balance roundrobin
	    server oml2server1 127.0.0.1:${ports[0]}
	    server oml2server2 127.0.0.1:${ports[1]}
	    server oml2server3 127.0.0.1:${ports[2]}
	EOF
	bg haproxy -f "$cfg" -db
	wait_for 10 eval '[ -n "$(ss -Htln "sport = :$HP")" ]'
}

farm_send() {
	"$OMLSEND" -q "$@" "127.0.0.1:$HP"
}

# Every server served clients, and none logged a protocol or socket error
# or a dropped tuple.
farm_clean() {
	local l
	for l in "${LOGS[@]}"; do
		grep -q ' ready: ' "$l"
		grep -q 'client .* ready: ' "$l" || {
			echo "$l served no client" >&2
			return 1
		}
		refute grep -E 'protocol error|socket error|tuple dropped|ERROR' "$l"
	done
}

teardown() {
	local l
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for l in "${LOGS[@]}"; do
			show_log "$l"
		done
	fi
	for l in "${BG_PIDS[@]}"; do
		kill -TERM "$l" 2>/dev/null || true
	done
	for l in "${BG_PIDS[@]}"; do
		wait_gone "$l" 20 || kill -KILL "$l" 2>/dev/null || true
	done
	BG_PIDS=()
	l=0
	sanitizer_reports || l=1
	rm -rf "$T"
	return "$l"
}

@test "a dozen clients of one experiment through three servers create each table once" {
	start_farm
	bg farm_send -c 12 -e shared -n 300 -S node -s "1 gen n:int32 x:double s:string" -s "2 other y:int32"
	local a=$BG
	bg farm_send -b -c 12 -e shared -n 300 -S node -s "1 gen n:int32 x:double s:string" -s "2 other y:int32"
	local b=$BG
	wait "$a"
	wait "$b"
	wait_q shared "SELECT count(*) FROM gen" 7200 20
	wait_q shared "SELECT count(*) FROM other" 7200 20
	run q shared "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
	[ "$output" = "_experiment_metadata _senders gen other" ]
	run q shared "SELECT key, count(*) FROM _experiment_metadata GROUP BY key ORDER BY key"
	[ "$output" = "$(printf 'start_time|1\ntable__experiment_metadata|1\ntable_gen|1\ntable_other|1')" ]
	run q shared "SELECT count(*), count(DISTINCT name), min(id), max(id) FROM _senders"
	[ "$output" = "12|12|1|12" ]
	# every (sender, seq) once from each of the two clients of that name
	run q shared "SELECT count(*) FROM (SELECT oml_sender_id, oml_seq FROM gen GROUP BY 1, 2 HAVING count(*) <> 2) x"
	[ "$output" = 0 ]
	run q shared "SELECT count(DISTINCT oml_sender_id), min(oml_sender_id), max(oml_sender_id) FROM gen"
	[ "$output" = "12|1|12" ]
	farm_clean
}

@test "a dozen clients of four experiments through three servers keep every experiment whole" {
	start_farm
	bg farm_send -c 12 -E 4 -e multi -n 200 -S node
	local a=$BG
	bg farm_send -b -c 12 -E 4 -e multi -n 200 -S node
	local b=$BG
	wait "$a"
	wait "$b"
	local e
	for e in 0 1 2 3; do
		wait_q "multi-$e" "SELECT count(*) FROM gen" 1200 20
		run q "multi-$e" "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
		[ "$output" = "_experiment_metadata _senders gen" ]
		run q "multi-$e" "SELECT count(*), min(id), max(id) FROM _senders"
		[ "$output" = "3|1|3" ]
		run q "multi-$e" "SELECT count(*) FROM _experiment_metadata WHERE key LIKE 'table%'"
		[ "$output" = 2 ]
		run q "multi-$e" "SELECT count(*) FROM (SELECT oml_sender_id, oml_seq FROM gen GROUP BY 1, 2 HAVING count(*) <> 2) x"
		[ "$output" = 0 ]
	done
	farm_clean
}
