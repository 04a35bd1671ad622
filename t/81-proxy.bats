#!/usr/bin/env bats
# The PROXY protocol (--proxy-from): servers behind a real HAProxy with
# send-proxy-v2, or send-proxy, log, report and limit each client by its
# own address (clients on 127.0.0.2 and 127.0.0.3, HAProxy on 127.0.0.1),
# and HAProxy's health checks cause no warning.  A preamble from an
# address not named, none from one named, and a malformed one are refused
# with a log line.

load helpers

OML2CTL=${OML2CTL:-$(dirname "$OML2_SERVER")/oml2ctl}

# A client's header and one row, and PROXY preambles naming 192.0.2.7
# port 5000 (printf formats).
HDR='protocol: 5\ndomain: px\nstart-time: 1700000000\nsender-id: n1\napp-name: a\ncontent: text\nschema: 1 gen n:int32\n\n0.5\t1\t1\t7\n'
V1='PROXY TCP4 192.0.2.7 127.0.0.1 5000 3003\r\n'
V2SIG='\r\n\r\n\0\r\nQUIT\n'
V2="$V2SIG"'\x21\x11\x00\x0c\xc0\x00\x02\x07\x7f\x00\x00\x01\x13\x88\x0b\xbb'

refute() {
	if "$@"; then
		echo "should not have succeeded: $*" >&2
		return 1
	fi
}

# The servers' logs on failure; every background process stopped and
# waited for before the directory goes.
eval "helpers_$(declare -f teardown)"
teardown() {
	local l
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for l in "$T"/s*/log "$T/haproxy.out"; do
			[ -f "$l" ] || continue
			echo "### $l" >&2
			tail -n 60 "$l" >&2
		done
	fi
	for l in "${BG_PIDS[@]}"; do
		kill -TERM "$l" 2>/dev/null || true
	done
	for l in "${BG_PIDS[@]}"; do
		wait_gone "$l" 20 || kill -KILL "$l" 2>/dev/null || true
	done
	BG_PIDS=()
	helpers_teardown
}

# Servers 1..N (data $T/sI/data, log $T/sI/log) that trust HAProxy's
# 127.0.0.1, with any further options; their ports in PORTS:
# start_servers N [OPTION...]
start_servers() {
	local n=$1 i
	shift
	PORTS=()
	for i in $(seq "$n"); do
		mkdir -p "$T/s$i/data"
		bg "$OML2_SERVER" -l 127.0.0.1:0 -D "$T/s$i/data" \
		    --logfile="$T/s$i/log" -d 4 --proxy-from=127.0.0.1 "$@"
	done
	for i in $(seq "$n"); do
		wait_for 10 grep -qs ' ready: ' "$T/s$i/log"
		PORTS+=("$(log_port "$T/s$i/log")")
	done
}

# A server for the others' self-reports ($T/c/data, port $CPORT).
start_collector() {
	mkdir -p "$T/c/data"
	bg "$OML2_SERVER" -l 127.0.0.1:0 -D "$T/c/data" --logfile="$T/c/log" -d 3
	wait_for 10 grep -qs ' ready: ' "$T/c/log"
	CPORT=$(log_port "$T/c/log")
	[ -n "$CPORT" ]
}

# HAProxy in roundrobin in front of the servers on ports PORT..., each
# "server" line ending in SERVER_OPTIONS; it logs to $T/haproxy.out and
# listens on $HP: start_haproxy SERVER_OPTIONS PORT...
start_haproxy() {
	local opt=$1 i=0 p cfg=$T/haproxy.cfg
	shift
	HP=$(free_port)
	{
		cat <<-EOF
		global
		    log stdout format raw local0
		    maxconn 100
		defaults
		    log global
		    mode tcp
		    option log-health-checks
		    timeout connect 5s
		    timeout client 60s
		    timeout server 60s
		listen oml2server
		    bind 127.0.0.1:$HP
		    balance roundrobin
		EOF
		for p; do
			i=$((i + 1))
			echo "    server s$i 127.0.0.1:$p $opt"
		done
	} >"$cfg"
	haproxy -c -q -f "$cfg"
	bg haproxy -db -f "$cfg" >"$T/haproxy.out" 2>&1
	wait_for 10 eval '[ -n "$(ss -Htln "sport = :$HP")" ]'
}

# Lines of a file matching an extended regex: count RE FILE
count() {
	grep -c -E -- "$1" "$2" || true
}
count_ge() {
	[ "$(count "$2" "$3")" -ge "$1" ]
}

# Warnings and errors in a server's log, but the one about running as root
# and those matching an optional extra regex: warnings LOG [RE]
warnings() {
	grep -E ' (WARN|ERROR) ' "$1" | grep -v 'running as root' |
	    grep -v -E -- "${2:-^$}" || true
}

# SQLite query on server I's database of experiment EXP: sdb I EXP SQL
sdb() {
	[ -e "$T/s$1/data/$2.sq3" ] || return 1
	sqlite -readonly "$T/s$1/data/$2.sq3" "$3"
}
rows_are() {	# rows_are I EXP N
	[ "$(sdb "$1" "$2" "SELECT count(*) FROM gen" 2>/dev/null)" = "$3" ]
}
csq() {
	[ -e "$T/c/data/$1.sq3" ] || return 1
	sqlite -readonly "$T/c/data/$1.sq3" "$2"
}
csq_is() {
	[ "$(csq "$1" "$2" 2>/dev/null)" = "$3" ]
}

# Three servers reporting to a collector, behind HAProxy with the server
# options $1; six clients, from 127.0.0.2 and 127.0.0.3 in turn, two to
# each server.  Each server logs, reports and serves them by their own
# address, and HAProxy's health checks, seen by every server, cause no
# warning and no report.
farm_run() {
	local i n
	start_collector
	start_servers 3 --oml-collect="tcp:127.0.0.1:$CPORT" --oml-domain=mon
	start_haproxy "$1" "${PORTS[@]}"
	for i in 1 2 3; do
		wait_for 10 count_ge 3 'a connection of its own' "$T/s$i/log" || {
			echo "server $i: fewer than 3 health checks" >&2
			return 1
		}
	done
	for i in 0 1 2 3 4 5; do
		"$OMLSEND" -q -e px -S "node$i" -n 20 -l "127.0.0.$((2 + i % 2))" \
		    "127.0.0.1:$HP"
	done
	for i in 1 2 3; do
		wait_for 10 rows_are "$i" px 40
		n=$(count 'exp/px: client 127\.0\.0\.[23] port [0-9]+ connected$' "$T/s$i/log")
		[ "$n" -eq 2 ] || { echo "server $i: $n clients" >&2; return 1; }
		n=$(count 'master: client 127\.0\.0\.[23] port [0-9]+ \(via 127\.0\.0\.1 port [0-9]+\)$' "$T/s$i/log")
		[ "$n" -eq 2 ] || { echo "server $i: $n 'via' lines" >&2; return 1; }
		refute grep -E 'exp/px: client 127\.0\.0\.1 ' "$T/s$i/log"
		refute grep -E 'master: client 127\.0\.0\.1 ' "$T/s$i/log"
		[ -z "$(warnings "$T/s$i/log")" ]
	done
	[ "$(cat "$T"/s*/log | count 'exp/px: client 127\.0\.0\.2 port [0-9]+ connected$' -)" -eq 3 ]
	[ "$(cat "$T"/s*/log | count 'exp/px: client 127\.0\.0\.3 port [0-9]+ connected$' -)" -eq 3 ]
	# The reports: every event of the six clients at their own address,
	# none of a health check.
	wait_for 15 csq_is mon "SELECT count(*) FROM server_clients WHERE event = 'Disconnect'" 6
	run csq mon "SELECT event, address, count(*) FROM server_clients GROUP BY 1, 2 ORDER BY 1, 2"
	[ "$output" = "$(printf '%s\n' Connect\|127.0.0.2\|3 Connect\|127.0.0.3\|3 \
	    Disconnect\|127.0.0.2\|3 Disconnect\|127.0.0.3\|3 \
	    Ready\|127.0.0.2\|3 Ready\|127.0.0.3\|3)" ]
	# a Connect, a Ready and a Disconnect at each client's own port
	run csq mon "SELECT count(*) FROM (SELECT port FROM server_clients GROUP BY address, port HAVING count(*) = 3)"
	[ "$output" = 6 ]
}

@test "behind HAProxy with send-proxy-v2, servers log, report and serve each client at its own address, and health checks cause no warning" {
	farm_run "check inter 200ms send-proxy-v2"
}

@test "behind HAProxy with send-proxy (version 1), servers log, report and serve each client at its own address, and health checks cause no warning" {
	farm_run "check inter 200ms send-proxy"
}

@test "behind HAProxy, the per-address limits hold each client's own address, and plain TCP health checks cause no warning" {
	local sock=$T/s1/data/oml2-server.sock i
	start_servers 1 --max-source-experiments=1 --max-source-pending=2
	# "check port": HAProxy checks without a preamble, connecting and
	# resetting at once (the connection is often gone before the master
	# accepts it: a test below sends one that closes after it is accepted)
	start_haproxy "check inter 200ms port ${PORTS[0]} send-proxy-v2" "${PORTS[0]}"
	wait_for 10 grep -q 'server oml2server/s1 succeeded' "$T/haproxy.out"
	# 127.0.0.2 holds experiment a, and so may start no other.
	bg "$OMLSEND" -q -e a -S held -n 5 -H 30000 -l 127.0.0.2 "127.0.0.1:$HP"
	wait_for 10 rows_are 1 a 5
	[ "$("$OML2CTL" -s "$sock" --json show a | jq -r '[.details.clients[] | .peer] | join(",")')" = 127.0.0.2 ]
	run "$OMLSEND" -q -e b -S refused -n 5 -l 127.0.0.2 "127.0.0.1:$HP"
	wait_for 10 grep -q -E 'client 127\.0\.0\.2 port [0-9]+: experiment b refused: 127\.0\.0\.2 already started --max-source-experiments \(1\); connection closed' "$T/s1/log"
	# 127.0.0.3, behind the same HAProxy, may.
	"$OMLSEND" -q -e b -S other -n 5 -l 127.0.0.3 "127.0.0.1:$HP"
	wait_for 10 rows_are 1 b 5
	[ "$(sdb 1 b "SELECT name FROM _senders")" = other ]
	# Three silent connections from 127.0.0.2 are one too many for it;
	# 127.0.0.3's is left alone.
	: >"$T/empty"
	bg "$OMLSEND" -q -r "$T/empty" -c 3 -H 30000 -l 127.0.0.2 "127.0.0.1:$HP"
	bg "$OMLSEND" -q -r "$T/empty" -H 30000 -l 127.0.0.3 "127.0.0.1:$HP"
	wait_for 10 count_ge 1 'client 127\.0\.0\.2 port [0-9]+: too many connections from this address still sending their header \(--max-source-pending 2\)' "$T/s1/log"
	# (a health check may be pending for a moment)
	wait_for 10 eval '[ "$("$OML2CTL" -s "$sock" --json status | jq -r .pending)" = 3 ]'
	refute grep -E 'client 127\.0\.0\.(1|3) port [0-9]+: too many' "$T/s1/log"
	# (and the checks went on, without a word)
	[ -z "$(warnings "$T/s1/log" 'max-source-(experiments|pending)')" ]
}

# Bytes (printf FORMAT ARG...) from address ADDR, insisting that the server
# closes the connection: refused_from ADDR FORMAT [ARG...]
refused_from() {
	local a=$1 f=$T/raw.$RANDOM
	shift
	printf "$@" >"$f"
	"$OMLSEND" -q -r "$f" -W -w 10 -l "$a" "127.0.0.1:$PORT"
}

# The same, closing it ourselves: from ADDR [OMLSEND-OPTION...] -- FORMAT...
from() {
	local a=$1 f=$T/raw.$RANDOM o=()
	shift
	while [ "$1" != -- ]; do o+=("$1"); shift; done
	shift
	printf "$@" >"$f"
	"$OMLSEND" -q -r "$f" "${o[@]}" -l "$a" "127.0.0.1:$PORT"
}

refused_count() {
	"$OML2CTL" -s "$DATA/oml2-server.sock" --json status |
	    jq -r '.connections_refused.proxy_preamble'
}

@test "a PROXY preamble from an address not in --proxy-from is refused, whatever it claims" {
	start_server --proxy-from=127.0.0.1/32
	refused_from 127.0.0.2 "$V1$HDR"
	refused_from 127.0.0.2 "$V2$HDR"
	# cut after the signature
	refused_from 127.0.0.3 "PROXY "
	wait_for 10 eval '[ "$(count "client 127\.0\.0\.[23] port [0-9]+: sent a PROXY preamble, but its address is not one of --proxy-from; connection closed" "$LOG")" -eq 3 ]'
	log_lacks '192\.0\.2\.7'
	[ ! -e "$DATA/px.sq3" ]
	[ "$(refused_count)" = 3 ]
	# nor is a client's own, behind a proxy (a second preamble)
	refused_from 127.0.0.1 "$V1$V2$HDR"
	wait_log 'client 192\.0\.2\.7 port 5000: sent a PROXY preamble, but its address is not one of --proxy-from; connection closed'
	[ "$(refused_count)" = 4 ]
	# its header alone is served
	from 127.0.0.2 -- "$HDR"
	wait_rows px gen 1
}

@test "a --proxy-from address that sends no preamble, or a malformed one, is refused" {
	start_server --proxy-from=127.0.0.1 --header-limit=1024
	refused_from 127.0.0.1 "$HDR"
	wait_log 'client 127\.0\.0\.1 port [0-9]+: sent no PROXY preamble, which --proxy-from requires of its address; connection closed'
	refused_from 127.0.0.1 "PROXY TCP4 192.0.2.300 127.0.0.1 5000 3003\r\n$HDR"
	wait_log 'client 127\.0\.0\.1 port [0-9]+: bad PROXY preamble: PROXY line with a bad address or port; connection closed'
	refused_from 127.0.0.1 "PROXY TCP4 192.0.2.7 127.0.0.1 5000 3003\n$HDR"
	wait_log 'bad PROXY preamble: PROXY line not ended by CRLF; connection closed'
	refused_from 127.0.0.1 "PROXY TCP4 192.0.2.7 127.0.0.1 5000\r\n$HDR"
	wait_log 'bad PROXY preamble: PROXY line without exactly four fields; connection closed'
	refused_from 127.0.0.1 "$V2SIG"'\x31\x11\x00\x0c\xc0\x00\x02\x07\x7f\x00\x00\x01\x13\x88\x0b\xbb'"$HDR"
	wait_log 'bad PROXY preamble: PROXY v2 block with a bad version; connection closed'
	# longer than --header-limit, told at once
	refused_from 127.0.0.1 "$V2SIG"'\x21\x11\x04\x00'
	wait_log 'bad PROXY preamble: PROXY v2 block too long; connection closed'
	refused_from 127.0.0.1 "$V2SIG"'\x21\x11\x00\x04\xc0\x00\x02\x07'"$HDR"
	wait_log 'bad PROXY preamble: PROXY v2 block too short for its addresses; connection closed'
	[ "$(refused_count)" = 7 ]
	[ ! -e "$DATA/px.sq3" ]
	log_lacks '192\.0\.2\.7 port'
}

@test "a preamble from a --proxy-from address names the client, and the proxy's own connections close without a warning" {
	local sock=$DATA/oml2-server.sock
	start_server --proxy-from=10.9.8.0/24 --proxy-from=127.0.0.1 --proxy-from=::1
	from 127.0.0.1 -- "$V1$HDR"
	wait_rows px gen 1
	wait_log 'master: client 192\.0\.2\.7 port 5000 \(via 127\.0\.0\.1 port [0-9]+\)$'
	log_has 'exp/px: client 192\.0\.2\.7 port 5000 connected$'
	# binary, a byte at a time
	from 127.0.0.1 -C 1 -d 2 -- "$V2$HDR"
	wait_rows px gen 2
	[ "$(count 'exp/px: client 192\.0\.2\.7 port 5000 connected$' "$LOG")" -eq 2 ]
	# an IPv6 client, 2001:db8::7 port 5001, through the IPv4 proxy
	from 127.0.0.1 -- "$V2SIG"'\x21\x21\x00\x24\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x13\x89\x0b\xbb'"$HDR"
	wait_rows px gen 3
	wait_log 'exp/px: client 2001:db8::7 port 5001 connected$'
	log_has 'master: client 2001:db8::7 port 5001 \(via 127\.0\.0\.1 port [0-9]+\)$'
	# a proxy's own connections (health checks): v2 LOCAL, v1 UNKNOWN,
	# v2 UNSPEC, and nothing at all
	from 127.0.0.1 -- "$V2SIG"'\x20\x00\x00\x00'
	from 127.0.0.1 -- 'PROXY UNKNOWN\r\n'
	from 127.0.0.1 -- "$V2SIG"'\x21\x00\x00\x00'
	: >"$T/empty"
	"$OMLSEND" -q -r "$T/empty" "127.0.0.1:$PORT"
	wait_for 10 eval '[ "$(count "a connection of its own" "$LOG")" -eq 3 ]'
	# a LOCAL connection with a header is its proxy's
	from 127.0.0.1 -- "$V2SIG"'\x20\x00\x00\x00'"$HDR"
	wait_rows px gen 4
	log_has 'exp/px: client 127\.0\.0\.1 port [0-9]+ connected$'
	[ "$("$OML2CTL" -s "$sock" --json status | jq -r '[.connections_accepted, .connections_refused.proxy_preamble] | join(" ")')" = "8 0" ]
	stop_server
	[ -z "$(warnings "$LOG")" ]
}

@test "--proxy-from matches IPv4-mapped peers against IPv4 entries, and prefixes" {
	start_server -l '[::ffff:127.0.0.1]:0' --proxy-from=127.0.0.0/31
	from 127.0.0.1 -- "$V1$HDR"
	wait_rows px gen 1
	wait_log 'master: client 192\.0\.2\.7 port 5000 \(via ::ffff:127\.0\.0\.1 port [0-9]+\)$'
	refused_from 127.0.0.2 "$V1$HDR"
	wait_log 'client ::ffff:127\.0\.0\.2 port [0-9]+: sent a PROXY preamble, but its address is not one of --proxy-from'
}

@test "--proxy-from refuses what is not a numeric address and prefix" {
	local a
	for a in oml.example.org 192.0.2.1/33 192.0.2.1/24 '[::1]/129' \
	    2001:db8::1/32 192.0.2.0/ 192.0.2.0/+8 '[192.0.2.1]' ''; do
		run "$OML2_SERVER" -D "$DATA" --proxy-from="$a"
		[ "$status" -eq 1 ]
		[[ "${lines[0]}" == "oml2-server: --proxy-from $a: "* ]]
	done
	run "$OML2_SERVER" -D "$DATA" --proxy-from=192.0.2.1/24
	[ "${lines[0]}" = "oml2-server: --proxy-from 192.0.2.1/24: the address has bits set past its prefix" ]
	run "$OML2_SERVER" -D "$DATA" --proxy-from=localhost
	[ "${lines[0]}" = "oml2-server: --proxy-from localhost: not a numeric IPv4 or IPv6 address" ]
}
