#!/usr/bin/env bats
# Serving clients: experiments, routing to children, ps titles, commits.

load helpers

@test "a text client's rows are stored with the schema's columns" {
	start_server
	send -e plain -n 25 -S node1 -a app1
	wait_rows plain gen 25
	run q plain "SELECT oml_sender_id, oml_seq, n, x, s FROM gen WHERE oml_seq = 7"
	[ "$output" = "1|7|7|7.25|row-7" ]
	run q plain "SELECT name, id FROM _senders"
	[ "$output" = "node1|1" ]
	[ "$BACKEND" = sqlite ] || return 0	# DDL text: t/70-pg.bats
	run sq plain "SELECT sql FROM sqlite_master WHERE name = 'gen'"
	[ "$output" = 'CREATE TABLE "gen" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "n" INTEGER, "x" REAL, "s" TEXT)' ]
}

@test "a binary client's rows are stored" {
	start_server
	send -b -e bin -n 40
	wait_rows bin gen 40
	run q bin "SELECT sum(n), CAST(sum(x) * 4 AS INTEGER) FROM gen"
	[ "$output" = "820|3320" ]
}

@test "a new database holds _senders, _experiment_metadata and its rows" {
	start_server
	send -e meta -n 1 -T 1400000000 -s "1 a_b v:int32"
	wait_rows meta a_b 1
	run q meta "SELECT key, value FROM _experiment_metadata ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "table__experiment_metadata|0 _experiment_metadata subject:string key:string value:string" ]
	[ "${lines[1]}" = "start_time|1400000000" ]
	[ "${lines[2]}" = "table_a_b|1 a_b v:int32" ]
	[ "$BACKEND" = sqlite ] || return 0	# DDL text: t/70-pg.bats
	run sq meta "SELECT sql FROM sqlite_master WHERE name IN ('_senders', '_experiment_metadata') ORDER BY name"
	[ "${lines[0]}" = 'CREATE TABLE "_experiment_metadata" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "subject" TEXT, "key" TEXT, "value" TEXT)' ]
	[ "${lines[1]}" = 'CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE)' ]
}

@test "timestamps are rebased on the experiment's start time" {
	start_server
	send -e ts -n 1 -T 1400000000 -S a
	wait_rows ts gen 1
	send -e ts -n 1 -T 1400000100 -S b
	wait_rows ts gen 2
	run q ts "SELECT oml_ts_client FROM gen ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "0.001" ]
	[ "${lines[1]}" = "100.001" ]
	# oml_ts_server is now - S, so enormous for a start time in 2014
	run q ts "SELECT CASE WHEN min(oml_ts_server) > 300000000 THEN 1 ELSE 0 END FROM gen"
	[ "$output" = 1 ]
	run q ts "SELECT count(*) FROM _experiment_metadata WHERE key = 'start_time'"
	[ "$output" = 1 ]
}

@test "the server listens on IPv4 and IPv6 when no address is given" {
	local port
	run_server "$OML2_SERVER" -l 0 -D "$DATA" --logfile="$LOG" $(backend_args)
	port=$PORT
	log_has 'listening on \[::\]'
	"$OMLSEND" -q -e v4 -n 3 "127.0.0.1:$port"
	"$OMLSEND" -q -e v6 -n 3 "[::1]:$port"
	wait_rows v4 gen 3
	wait_rows v6 gen 3
	log_has 'client ::ffff:127.0.0.1 port [0-9]+ connected'
	log_has 'client ::1 port [0-9]+ connected'
}

@test "headers ending in CRLF are accepted" {
	start_server
	raw 'protocol: 5\r\ndomain: crlf\r\nstart-time: 1400000000\r\nsender-id: s\r\nschema: 1 t x:int32 y:string\r\ncontent: text\r\n\r\n1.0\t1\t1\t42\tabc\r\n'
	wait_rows crlf t 1
	run q crlf "SELECT x, y, length(y) FROM t"
	[ "$output" = "42|abc|3" ]
}

@test "an experiment id with dots, colons and plus signs works" {
	start_server
	send -e 'exp_2011-08-09t11.52.28+10.00' -n 2
	wait_rows 'exp_2011-08-09t11.52.28+10.00' gen 2
}

@test "every client of an experiment goes to the same child" {
	start_server
	bg send -e same -n 2 -H 3000
	local first=$BG
	wait_log 'client .* ready: same:'
	local pid1 pid2
	pid1=$(exp_pid same)
	[ -n "$pid1" ]
	send -e same -n 2 -S other
	wait_rows same gen 4
	pid2=$(exp_pid same)
	[ "$pid1" = "$pid2" ]
	[ "$(grep -c 'experiment same: process' "$LOG")" -eq 1 ]
	wait "$first"
}

@test "ps shows the master, and each experiment with its clients" {
	start_server
	bg send -e pstitle -n 1 -c 2 -H 5000
	wait_for 10 eval 'ps -o args= -p "$(exp_pid pstitle)" | grep -q "oml2-server: exp pstitle (2 clients)"'
	ps -o args= -p "$SERVER_PID" | grep -q '^oml2-server: master'
	pgrep -P "$SERVER_PID" -f 'oml2-server: spare' >/dev/null
}

@test "a silent client's rows are committed within about a second" {
	start_server
	bg send -e silent -n 5 -H 8000
	# readable by another process while the client still holds its connection
	wait_rows silent gen 5 3
	kill -0 "$BG"
}

@test "rows are committed when the last client leaves" {
	start_server
	send -e leave -n 100
	wait_rows leave gen 100 2
	wait_log 'database (file:.*/leave.sq3|postgresql:.*/leave) closed: 100 rows stored'
}

@test "an idle client is reaped after --timeout, even on a silent server" {
	start_server -t 1
	bg send -e idle -n 1 -H 20000
	wait_log 'client .* idle timeout' 5
	wait_rows idle gen 1
}

@test "SIGUSR1 logs a status summary" {
	start_server
	bg send -e status -n 50 -H 5000
	wait_rows status gen 50
	kill -USR1 "$SERVER_PID"
	wait_log 'status: master pid [0-9]+, 1 experiments'
	wait_log 'status: experiment status process [0-9]+: 1 clients, 50 rows stored'
	wait_log 'status: end'
}

@test "the server's children and databases survive a client vanishing mid-stream" {
	start_server
	# SIGKILL the sender while it streams: its socket is reset under us
	bg "$OMLSEND" -q -e vanish -n 200000 -C 1000 -d 1 "127.0.0.1:$PORT"
	local s=$BG
	wait_log 'client .* ready: vanish:'
	kill -KILL "$s"
	wait "$s" || true
	wait_log 'client .* (closed by the client|socket error)'
	send -e vanish -n 3 -S again
	wait_q vanish "SELECT count(*) FROM gen WHERE oml_sender_id = 2" 3
	kill -0 "$SERVER_PID"
}
