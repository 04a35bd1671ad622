#!/usr/bin/env bats
# Bad input: one clear log line naming the peer, the connection closed,
# nothing else disturbed.

load helpers

# A well-behaved client streams alongside every bad one.
start_witness() {
	bg send -e witness -n 2000 -B 50 -p 20
	WITNESS=$BG
}

check_witness() {
	wait "$WITNESS"
	wait_log 'database file:.*/witness.sq3 closed: 2000 rows stored, 0 dropped'
	kill -0 "$SERVER_PID"
}

@test "experiment names that fail validation are refused and logged" {
	start_server
	start_witness
	local name
	for name in '../escape' 'a/b' 'a\\b' '"quoted"' "it's" 'with space' \
	    '.hidden' "$(printf 'x%.0s' $(seq 1 64))" "ctl$(printf '\001')x"; do
		raw_refused 'protocol: 5\ndomain: %s\nsender-id: s\n\n' "$name"
	done
	raw_refused 'protocol: 5\ndomain: \nsender-id: s\n\n'
	check_witness
	[ "$(grep -c 'client 127.0.0.1 port [0-9]*: .*; connection closed' "$LOG")" -ge 10 ]
	log_has 'client 127.0.0.1 port [0-9]+: .*(/|slash).*connection closed'
	# nothing was created outside the data directory, nor in it
	[ ! -e "$T/escape.sq3" ]
	[ "$(ls "$DATA" | grep -v -e '^witness\.sq3' -e '^oml2-server\.sock$')" = "" ]
}

@test "a header that ends without an experiment id is refused" {
	start_server
	raw_refused 'protocol: 5\nsender-id: s\n\n1\t1\t1\t1\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*experiment.*; connection closed'
}

@test "a header line without a colon is refused" {
	start_server
	raw_refused 'protocol: 5\nthis is not a header\ndomain: x\n\n'
	wait_log "client 127.0.0.1 port [0-9]+: .*':'.*; connection closed"
	[ ! -e "$DATA/x.sq3" ]
}

@test "a header longer than --header-limit without an experiment id is refused" {
	start_server --header-limit 1024
	start_witness
	raw_refused 'protocol: 5\nx-padding: %s\ndomain: late\n\n' "$(head -c 3000 /dev/zero | tr '\0' a)"
	wait_log 'client 127.0.0.1 port [0-9]+: no experiment id in the first --header-limit bytes; connection closed'
	check_witness
}

@test "a header that never ends is closed after --header-timeout" {
	start_server --header-timeout 1
	start_witness
	"$OMLSEND" -q -r <(printf 'protocol: 5\n') -H 10000 -W -w 8 "127.0.0.1:$PORT"
	log_has 'client 127.0.0.1 port [0-9]+: did not name its experiment in time; connection closed'
	check_witness
}

@test "binary garbage instead of a header is refused" {
	start_server
	start_witness
	head -c 4096 /dev/urandom | tr '\n:' 'xy' >"$T/garbage"
	"$OMLSEND" -q -r "$T/garbage" -W -w 10 "127.0.0.1:$PORT"
	wait_log 'client 127.0.0.1 port [0-9]+: .*; connection closed'
	check_witness
}

@test "an unsupported protocol version closes the connection" {
	start_server
	raw_refused 'protocol: 6\ndomain: v6\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_log 'unsupported protocol 6'
	raw_refused 'protocol: 0\ndomain: v0\n\n'
	wait_log 'unsupported protocol 0'
	raw 'domain: v5\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_rows v5 t 1
}

@test "start-time or sender-id before domain closes the connection" {
	start_server
	raw_refused 'protocol: 5\nsender-id: s\ndomain: early\nschema: 1 t x:int32\n\n'
	wait_log 'sender-id before domain'
	raw_refused 'protocol: 5\nstart-time: 5\ndomain: early2\n\n'
	wait_log 'start-time before domain'
}

@test "an unknown content type closes the connection" {
	start_server
	raw_refused 'protocol: 5\ndomain: cont\ncontent: foo\n\n'
	wait_log 'unknown content "foo"'
}

@test "an unknown header key is ignored" {
	start_server
	raw 'protocol: 5\ndomain: unk\nfoo: bar\nprotocol : 7\nschema: 1 t x:int32\n\n1\t1\t1\t5\n'
	wait_rows unk t 1
}
