#!/usr/bin/env bats
# Self-reporting (runtime measurement points): the server reports its
# clients' Connect, Ready and Disconnect events over OML, to a second
# server, to itself or to a file, without ever slowing its own clients.

load helpers

# teardown from helpers.bash, plus: a collector stopped with SIGSTOP must
# be continued, or it would never see the SIGTERM that ends it.
eval "helpers_$(declare -f teardown)"
teardown() {
	[ -z "${STALLED:-}" ] || kill -CONT "$STALLED" 2>/dev/null || true
	helpers_teardown
}

# A second server to report to: start_collector [PORT [OPTION...]].  Its
# databases are in $CDATA, its log is $CLOG, its port $CPORT and its pid
# $COLLECTOR.
start_collector() {
	local port=${1:-0}
	shift || true
	CDATA=$T/cdata
	CLOG=$T/collector.log
	mkdir -p "$CDATA"
	bg "$OML2_SERVER" -l "127.0.0.1:$port" -D "$CDATA" \
	    --logfile="$CLOG" -d 4 "$@"
	COLLECTOR=$BG
	wait_for 10 grep -q ' ready: ' "$CLOG"
	CPORT=$(log_port "$CLOG")
	[ -n "$CPORT" ]
}

# Query the collector's database for experiment $1.
csq() {
	[ -e "$CDATA/$1.sq3" ] || { echo "no database $1" >&2; return 1; }
	sqlite "$CDATA/$1.sq3" "$2"
}

# wait_csql EXP SQL WANT [SECS]
wait_csql() {
	local wc_exp=$1 wc_sql=$2 wc_want=$3 got
	wait_for "${4:-15}" eval '[ "$(csq "$wc_exp" "$wc_sql" 2>/dev/null)" = "$wc_want" ]' || {
		got=$(csq "$1" "$2" 2>&1)
		echo "collector sql: $2: wanted '$3', got '$got'" >&2
		return 1
	}
}

# The events of the connections that node $2 made, in order, as
# "Connect: Ready: Disconnect:MESSAGE", from database $1 queried with $3.
events_sql() {
	echo "SELECT group_concat(event || ':' || message, ' ') FROM
	    (SELECT event, message FROM server_clients WHERE port IN
	    (SELECT port FROM server_clients WHERE node_id = '$1')
	    ORDER BY oml_seq)"
}

@test "a second server stores Connect, Ready and Disconnect of clients of two experiments" {
	start_collector
	start_server -t 1 --header-timeout=1 --oml-collect "tcp:127.0.0.1:$CPORT" \
	    --oml-id srv1 --oml-domain mon
	# experiment e1: a client that sends its rows and leaves
	send -e e1 -S n1 -a a1 -n 5
	# experiment e2: one that goes idle, one with a bad schema
	bg "$OMLSEND" -q -e e2 -S n2 -a a2 -n 0 -H 8000 "127.0.0.1:$PORT"
	raw_refused 'protocol: 5\ndomain: e2\nstart-time: 1\nsender-id: n3\napp-name: a3\nschema: 1 t x:nosuchtype\n\n'
	# closed by the master: garbage, and a header that stops short
	raw_refused 'hello\n\n'
	printf 'protocol: 5\n' >"$T/short"
	bg "$OMLSEND" -q -r "$T/short" -H 8000 "127.0.0.1:$PORT"

	wait_csql mon "SELECT count(*) FROM server_clients WHERE event = 'Disconnect'" 5
	run csq mon "$(events_sql n1)"
	[ "$output" = "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED" ]
	run csq mon "$(events_sql n2)"
	[ "$output" = "Connect: Ready: Disconnect:SOCKET_IDLE" ]
	run csq mon "$(events_sql n3)"
	[ "$output" = "Connect: Disconnect:C_PROTOCOL_ERROR" ]
	# the identity fields, as the child saw them
	run csq mon "SELECT address, node_id, domain, appname FROM server_clients WHERE event = 'Ready' ORDER BY node_id"
	[ "${lines[0]}" = "127.0.0.1|n1|e1|a1" ]
	[ "${lines[1]}" = "127.0.0.1|n2|e2|a2" ]
	[ "${#lines[@]}" -eq 2 ]
	run csq mon "SELECT node_id, domain, appname FROM server_clients WHERE node_id = 'n3' AND event = 'Disconnect'"
	[ "$output" = "n3|e2|a3" ]
	# the master's own closes carry no identity
	run csq mon "SELECT message FROM server_clients WHERE event = 'Disconnect' AND node_id = '' AND domain = '' ORDER BY message"
	[ "${lines[0]}" = "C_PROTOCOL_ERROR" ]
	[ "${lines[1]}" = "SOCKET_IDLE" ]
	# every Disconnect follows a Connect from the same port, with no identity
	run csq mon "SELECT count(*) FROM server_clients d WHERE d.event = 'Disconnect' AND NOT EXISTS (SELECT 1 FROM server_clients c WHERE c.event = 'Connect' AND c.port = d.port AND c.node_id = '' AND c.domain = '' AND c.appname = '' AND c.message = '' AND c.oml_seq < d.oml_seq)"
	[ "$output" = 0 ]
	run csq mon "SELECT count(*), min(oml_seq), max(oml_seq), count(DISTINCT address) FROM server_clients"
	[ "$output" = "12|1|12|1" ]
	# the layout of the original: app server, sender srv1, streams 0, 1, 2
	run csq mon "SELECT name FROM _senders"
	[ "$output" = srv1 ]
	run csq mon "SELECT value FROM _experiment_metadata WHERE key LIKE 'table_%' ORDER BY value"
	[ "${lines[0]}" = "0 _experiment_metadata subject:string key:string value:string" ]
	[[ "${lines[1]}" == "1 _client_instrumentation measurements_injected:uint32 "* ]]
	[ "${lines[2]}" = "2 server_clients address:string port:int32 node_id:string domain:string appname:string event:string message:string" ]
	grep -q 'ready: mon:srv1:server (text)' "$CLOG"
}

@test "a server reports to itself, in binary when asked" {
	local p
	p=$(free_port)
	"$OML2_SERVER" -l "127.0.0.1:$p" -D "$DATA" --logfile="$LOG" -d 4 \
	    --oml-collect "127.0.0.1:$p" --oml-binary --oml-id me \
	    --oml-domain self 3>&- &
	SERVER_PID=$!
	PORT=$p
	wait_log ' ready: '
	send -e e1 -S n1 -a a1 -n 3 -b
	wait_sql self "$(events_sql n1)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED"
	# its own connection is a client like any other
	run sq self "SELECT address, port > 0, node_id, domain, appname, message FROM server_clients WHERE event = 'Ready' AND node_id = 'me'"
	[ "$output" = "127.0.0.1|1|me|self|server|" ]
	wait_log 'ready: self:me:server \(binary\)'
}

@test "file: writes the stream as the original's file destination did" {
	start_server --oml-collect "file:$T/report.oml" --oml-id srv1 --oml-domain mondom
	send -e live -S py -a app -n 2
	wait_for 10 grep -q 'Disconnect	SOCKET_CONN_CLOSED$' "$T/report.oml"
	run head -n 10 "$T/report.oml"
	[ "${lines[0]}" = "protocol: 5" ]
	[ "${lines[1]}" = "domain: mondom" ]
	[[ "${lines[2]}" =~ ^start-time:\ [0-9]+$ ]]
	[ "${lines[3]}" = "sender-id: srv1" ]
	[ "${lines[4]}" = "app-name: server" ]
	[ "${lines[5]}" = "schema: 0 _experiment_metadata subject:string key:string value:string" ]
	[[ "${lines[6]}" == "schema: 1 _client_instrumentation measurements_injected:uint32 "* ]]
	[ "${lines[7]}" = "schema: 2 server_clients address:string port:int32 node_id:string domain:string appname:string event:string message:string" ]
	[ "${lines[8]}" = "content: text" ]
	grep -E -q '^[0-9.]+	2	1	127\.0\.0\.1	[0-9]+				Connect	$' "$T/report.oml"
	grep -E -q '^[0-9.]+	2	2	127\.0\.0\.1	[0-9]+	py	live	app	Ready	$' "$T/report.oml"
	grep -E -q '^[0-9.]+	2	3	127\.0\.0\.1	[0-9]+	py	live	app	Disconnect	SOCKET_CONN_CLOSED$' "$T/report.oml"
	# and it is an OML stream any server stores
	"$OMLSEND" -q -r "$T/report.oml" "127.0.0.1:$PORT"
	wait_sql mondom "SELECT group_concat(event, ' ') FROM (SELECT event FROM server_clients ORDER BY oml_seq)" "Connect Ready Disconnect"
}

@test "client events wait in the experiment process while the master is busy, and it still retires" {
	local long
	long=$(printf 'x%.0s' $(seq 250))
	start_server --linger 0 --oml-collect "file:$T/report.oml"
	bg "$OMLSEND" -q -e burst -c 300 -n 1 -S "$long" -a "$long" -H 60000 "127.0.0.1:$PORT"
	wait_for 20 eval '[ "$(grep -c "	Ready	$" "$T/report.oml")" = 300 ]'
	# the master stops reading its control sockets; 300 clients leave at once
	kill -STOP "$SERVER_PID"
	STALLED=$SERVER_PID
	kill -TERM "$BG"
	wait_for 20 eval '[ "$(grep -c "exp/burst: client .* closed by the client" "$LOG")" = 300 ]'
	kill -CONT "$SERVER_PID"
	STALLED=
	wait_for 20 eval '[ "$(grep -c "	Disconnect	SOCKET_CONN_CLOSED$" "$T/report.oml")" = 300 ]'
	[ "$(grep -c "	burst	$long	Disconnect	" "$T/report.oml")" = 300 ]
	# its idle message, sent into a socket full of reports, is not lost
	wait_log 'experiment burst process [0-9]+ exited'
	! grep -q 'dropping client events' "$LOG"
}

@test "a standard output that nobody reads (file:-) changes nothing for clients" {
	local long fd
	long=$(printf 'x%.0s' $(seq 250))
	# a pipe with a reader that never reads: it fills after 64 KiB
	mkfifo "$T/out"
	exec {fd}<>"$T/out"
	start_server --oml-collect file:- --oml-bufsize 4096 >"$T/out"
	send -e many -c 100 -n 1 -S "$long" -a "$long"
	send -e after -n 10
	wait_rows after gen 10
	wait_rows many gen 100
	wait_log 'self-report: -: .*; retrying'
	# once the pipe is read, the reports go on
	bg cat "$T/out" >"$T/got"
	wait_log 'self-report: -: writing again'
	send -e last -S lastnode -n 1
	wait_for 10 grep -q 'lastnode	last	omlsend	Disconnect	SOCKET_CONN_CLOSED$' "$T/got"
	exec {fd}<&-
}

@test "a client its experiment's process turns away is reported as dropped" {
	start_server --max-clients 1 --oml-collect "file:$T/report.oml"
	bg "$OMLSEND" -q -e e1 -S n1 -n 0 -H 8000 "127.0.0.1:$PORT"
	wait_log 'ready: e1:n1:'
	raw_refused 'protocol: 5\ndomain: e1\nstart-time: 1\nsender-id: n2\n\n'
	wait_log 'max-clients \(1\) reached'
	wait_for 10 grep -E -q '	127\.0\.0\.1	[0-9]+		e1		Disconnect	SOCKET_DROPPED$' "$T/report.oml"
	[ "$(grep -c '	Connect	$' "$T/report.oml")" = 2 ]
}

@test "OML_COLLECT, OML_DOMAIN and OML_NAME configure reporting; --oml-noop anywhere turns it off" {
	OML_COLLECT="file:$T/env.oml" OML_DOMAIN=envdom OML_NAME=envid start_server
	wait_for 10 grep -q '^content: text$' "$T/env.oml"
	grep -q '^domain: envdom$' "$T/env.oml"
	grep -q '^sender-id: envid$' "$T/env.oml"
	stop_server
	# the command line wins over the environment, and an option given
	# again replaces the earlier one
	LOG=$T/server2.log
	OML_COLLECT="file:$T/env2.oml" start_server --oml-collect "file:$T/first.oml" \
	    --oml-domain first --oml-id first --oml-collect "file:$T/cmd.oml" \
	    --oml-domain cmd --oml-id cmdid
	wait_for 10 grep -q '^domain: cmd$' "$T/cmd.oml"
	grep -q '^sender-id: cmdid$' "$T/cmd.oml"
	[ ! -e "$T/env2.oml" ]
	[ ! -e "$T/first.oml" ]
	stop_server
	# --oml-noop first: every option after it still counts, nothing is reported
	LOG=$T/noop.log
	run_server env OML_COLLECT="file:$T/noop.oml" "$OML2_SERVER" --oml-noop \
	    --oml-collect "file:$T/noop2.oml" -l 127.0.0.1:0 -D "$DATA" \
	    --logfile="$LOG" -d 4
	send -e e1 -n 1
	wait_log 'closed by the client'
	[ ! -e "$T/noop.oml" ]
	[ ! -e "$T/noop2.oml" ]
	! grep -q 'self-report' "$LOG"
}

@test "a bad self-reporting option is an error at start" {
	run "$OML2_SERVER" -D "$DATA" --oml-collect tcp:host:port
	[ "$status" -eq 1 ]
	[[ "$output" == *"--oml-collect tcp:host:port: the port must be a number"* ]]
	run "$OML2_SERVER" -D "$DATA" --oml-collect fe80::1:3003
	[ "$status" -eq 1 ]
	[[ "$output" == *"IPv6 addresses go in []"* ]]
	run "$OML2_SERVER" -D "$DATA" --oml-collect file:
	[ "$status" -eq 1 ]
	[[ "$output" == *"no file name"* ]]
	run "$OML2_SERVER" -D "$DATA" --oml-collect file:x --oml-domain ../up
	[ "$status" -eq 1 ]
	[[ "$output" == *"--oml-domain ../up"* ]]
	run "$OML2_SERVER" -D "$DATA" --oml-collect file:x --oml-bufsize 10
	[ "$status" -eq 1 ]
	[[ "$output" == *"--oml-bufsize"* ]]
	run env OML_COLLECT=tcp: "$OML2_SERVER" -D "$DATA"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no host"* ]]
	run "$OML2_SERVER" -D "$DATA" -l 127.0.0.1:0 --oml-collect "file:$T/no/such/dir/r.oml"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no/such/dir/r.oml"* ]]
}

@test "a collector that refuses connections changes nothing for clients, and drops are logged" {
	local p
	p=$(free_port)
	start_server --oml-collect "tcp:127.0.0.1:$p" --oml-bufsize 1024
	send -e x -c 20 -n 500
	wait_rows x gen 10000
	wait_log "self-report: cannot connect to 127.0.0.1:$p"
	wait_log 'oml-bufsize \(1024 bytes\) is full; dropping client events'
}

@test "a stalled collector neither slows nor stops ingest" {
	local long t0 t1 s
	long=$(printf 'x%.0s' $(seq 250))
	# the same rows with no reporting at all, for comparison
	start_server
	s=$(date +%s%3N)
	send -e base -n 100000
	wait_rows base gen 100000 30
	t0=$(($(date +%s%3N) - s))
	stop_server
	LOG=$T/server2.log
	# a collector that accepts connections but never reads them
	start_collector
	kill -STOP "$COLLECTOR"
	STALLED=$COLLECTOR
	start_server --oml-collect "tcp:127.0.0.1:$CPORT" --oml-bufsize 4096
	wait_log 'self-report: connected to'
	send -e many -c 100 -n 1 -S "$long" -a "$long"
	send -e many -c 100 -n 1 -S "$long" -a "$long"
	wait_log 'is full; dropping client events'
	s=$(date +%s%3N)
	send -e x -n 100000
	wait_rows x gen 100000 30
	t1=$(($(date +%s%3N) - s))
	echo "no reporting: $t0 ms; stalled collector: $t1 ms" >&2
	[ "$t1" -lt $((3 * t0 + 2000)) ]
	wait_rows many gen 200
	# once the collector reads again, it gets what was kept, with gaps in
	# oml_seq where events were dropped
	kill -CONT "$COLLECTOR"
	STALLED=
	# the end of the drops shows with the next event that fits
	wait_for 15 eval 'send -e x -n 1; log_has "client events dropped \([0-9]+ in all\)"'
	wait_for 15 eval '[ "$(csq oml2-server "SELECT max(oml_seq) > count(*) AND count(*) > 0 FROM server_clients" 2>/dev/null)" = 1 ]'
}

@test "reports made while the collector is down reach it once it is up" {
	local p
	p=$(free_port)
	start_server --oml-collect "tcp:127.0.0.1:$p" --oml-id srv1 --oml-domain later
	send -e e1 -S n1 -a a1 -n 1
	wait_log 'exp/e1: client .* closed by the client'
	wait_log "cannot connect to 127.0.0.1:$p"
	start_collector "$p"
	wait_csql later "$(events_sql n1)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED" 20
	wait_log "self-report: connected to 127.0.0.1:$p again"
}

@test "when the collector reaps the idle reporting connection, the next report opens a new one" {
	start_collector 0 -t 1
	start_server --oml-collect "tcp:127.0.0.1:$CPORT" --oml-domain mon
	send -e e1 -S n1 -n 1
	wait_csql mon "$(events_sql n1)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED"
	wait_log 'closed by the collector; reconnecting with the next report'
	send -e e1 -S n2 -n 1
	wait_csql mon "$(events_sql n2)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED"
	run grep -c 'self-report: connected to' "$LOG"
	[ "$output" = 2 ]
	! grep -q 'WARN.*self-report' "$LOG"
}

@test "self-reporting runs in a reporter process of its own, unprivileged; without reporting there is none" {
	local rpid uid
	need_root
	ensure_test_user
	chown "$T_USER" "$DATA"
	start_collector
	start_server --user "$T_USER" --oml-collect "tcp:127.0.0.1:$CPORT"
	wait_log 'self-report: connected to'
	rpid=$(pgrep -P "$SERVER_PID" -f 'oml2-server: reporter')
	[ -n "$rpid" ]
	uid=$(id -u "$T_USER")
	grep -E "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" "/proc/$rpid/status"
	grep -E "^CapEff:\s+0+$" "/proc/$rpid/status"
	[ "$(ps -o user= -p "$SERVER_PID")" = root ]
	# the connection to the collector is the reporter's, not the master's
	run ss -Htnp state established dst "127.0.0.1:$CPORT"
	[[ "$output" == *"pid=$rpid,"* ]]
	[[ "$output" != *"pid=$SERVER_PID,"* ]]
	log_has 'reporter: self-report: connected to'
	stop_server
	LOG=$T/server2.log
	start_server
	wait_for 10 eval '[ -n "$(pgrep -P "$SERVER_PID" -f "oml2-server: spare")" ]'
	[ -z "$(pgrep -P "$SERVER_PID" -f 'oml2-server: reporter')" ]
}

@test "a reporter that dies is restarted, and reporting resumes" {
	local old
	start_collector
	start_server --oml-collect "tcp:127.0.0.1:$CPORT" --oml-domain mon
	send -e e1 -S n1 -n 1
	wait_csql mon "$(events_sql n1)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED"
	old=$(pgrep -P "$SERVER_PID" -f 'oml2-server: reporter')
	[ -n "$old" ]
	kill -9 "$old"
	wait_log "the reporter, process $old, killed by signal 9 \(Killed\); restarting it"
	wait_for 10 eval 'p=$(pgrep -P "$SERVER_PID" -f "oml2-server: reporter"); [ -n "$p" ] && [ "$p" != "$old" ]'
	send -e e1 -S n2 -n 1
	wait_csql mon "$(events_sql n2)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED" 20
	wait_rows e1 gen 2
	stop_server
}

@test "_client_instrumentation rows reach a collector with liboml2's columns, types and real figures" {
	start_collector
	start_server --oml-collect "tcp:127.0.0.1:$CPORT" --oml-domain mon
	send -e e1 -S n1 -n 1
	wait_csql mon "$(events_sql n1)" "Connect: Ready: Disconnect:SOCKET_CONN_CLOSED"
	run csq mon "SELECT value FROM _experiment_metadata WHERE key = 'table__client_instrumentation'"
	[ "$output" = "1 _client_instrumentation measurements_injected:uint32 measurements_dropped:uint32 bytes_allocated:uint64 bytes_freed:uint64 bytes_in_use:uint64 bytes_max:uint64" ]
	run csq mon "SELECT group_concat(name || ':' || type, ' ') FROM pragma_table_info('_client_instrumentation') WHERE name NOT LIKE 'oml_%'"
	[ "$output" = "measurements_injected:UNSIGNED INTEGER measurements_dropped:UNSIGNED INTEGER bytes_allocated:UNSIGNED BIGINT bytes_freed:UNSIGNED BIGINT bytes_in_use:UNSIGNED BIGINT bytes_max:UNSIGNED BIGINT" ]
	# one row as the stream starts, then one every few seconds: a later
	# one counts the three client events and the bytes they took
	wait_csql mon "SELECT count(*) > 0 FROM _client_instrumentation WHERE measurements_injected >= 4 AND bytes_allocated > 0" 1 20
	run csq mon "SELECT count(*) FROM _client_instrumentation WHERE bytes_in_use != bytes_allocated - bytes_freed OR bytes_max < bytes_in_use OR measurements_dropped != 0"
	[ "$output" = 0 ]
	run csq mon "SELECT min(oml_seq) FROM _client_instrumentation"
	[ "$output" = 1 ]
	# and one more as the server stops, with the totals
	run csq mon "SELECT count(*) FROM _client_instrumentation"
	local n=$output
	stop_server
	wait_csql mon "SELECT count(*) > $n FROM _client_instrumentation" 1
}
