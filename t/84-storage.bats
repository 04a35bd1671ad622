#!/usr/bin/env bats
# Storage a tenant cannot stall or confuse: lookups that stay fast however
# many tables, metadata rows and senders an experiment has, schema names
# kept whole, start times checked, one server per data directory, and a
# data directory deleted under the server.  (PostgreSQL: t/71-pg-storage.)

load helpers

# Milliseconds since the epoch.
ms() {
	echo $(($(date +%s%N) / 1000000))
}

# An experiment database $1 as the original server left it, with $2
# tables t0 ... and $3 metadata rows from clients after their table_* rows.
make_big_db() {
	local db=$DATA/$1.sq3 i
	sqlite "$db" <<-EOF
	CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE);
	CREATE TABLE "_experiment_metadata" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "subject" TEXT, "key" TEXT, "value" TEXT);
	BEGIN;
	INSERT INTO _experiment_metadata (key, value) VALUES ('table__experiment_metadata', '0 _experiment_metadata subject:string key:string value:string');
	INSERT INTO _experiment_metadata (key, value) VALUES ('start_time', '1400000000');
	WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $2)
	INSERT INTO _experiment_metadata (key, value) SELECT 'table_t' || i, '1 t' || i || ' x:int32' FROM n;
	WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $3)
	INSERT INTO _experiment_metadata (oml_sender_id, oml_seq, oml_ts_client, oml_ts_server, subject, key, value) SELECT 1, i, 0.5, 0.5, 'node', 'k' || i, 'v' FROM n;
	COMMIT;
	EOF
	for ((i = 0; i < $2; i++)); do
		echo "CREATE TABLE \"t$i\" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, \"x\" INTEGER);"
	done | { echo "BEGIN;"; cat; echo "COMMIT;"; } | sqlite "$db"
}

@test "an experiment with 2,000 tables and 200,000 metadata rows reopens in under 5 seconds (a scan per table took 20)" {
	make_big_db big 2000 200000
	start_server
	local t0 t1
	t0=$(ms)
	send -e big -s "1 t1999 x:int32" -n 1
	wait_sql big "SELECT count(*) FROM t1999" 1 5
	t1=$(ms)
	echo "# reopened and stored a row in $((t1 - t0)) ms" >&3
	# every table was found again: none was created, no name_2
	log_lacks 'table t1999(_2)? created|created table'
	wait_sql big "SELECT count(*) FROM sqlite_master WHERE type = 'table'" 2002
	[ "$((t1 - t0))" -lt "$(slow_bound 5000)" ]
}

@test "120,000 sender ids in one experiment are registered in under 5 seconds (a list took 25)" {
	local f n=60 per=2000 t0 t1 pids=()
	for ((f = 0; f < n; f++)); do
		{
			printf 'protocol: 5\ndomain: snd\nstart-time: 1400000000\n'
			seq -f "sender-id: s$f-%g" 1 "$per"
			printf 'schema: 1 t x:int32\ncontent: text\n\n0.5\t1\t1\t7\n'
		} >"$T/raw$f"
	done
	start_server
	t0=$(ms)
	for ((f = 0; f < n; f++)); do
		"$OMLSEND" -q -r "$T/raw$f" "127.0.0.1:$PORT" 3>&- &
		pids+=($!)
	done
	wait_sql snd "SELECT count(*) FROM _senders" $((n * per)) 10
	t1=$(ms)
	wait "${pids[@]}"
	echo "# $((n * per)) senders in $((t1 - t0)) ms" >&3
	# every connection's row carries its last sender's own id
	wait_sql snd "SELECT count(DISTINCT oml_sender_id) FROM t" "$n"
	wait_sql snd "SELECT count(*) FROM t JOIN _senders ON id = oml_sender_id WHERE name LIKE '%-$per'" "$n"
	[ "$((t1 - t0))" -lt "$(slow_bound 5000)" ]
}

@test "two schema names that agree in their first 255 bytes get two tables, each with its own rows" {
	local p a b
	p=$(printf 'm%.0s' {1..299})
	a=${p}a
	b=${p}b
	start_server
	send -e long -s "1 $a x:int32" -n 3
	send -e long -s "1 $b x:int32" -n 5
	wait_sql long "SELECT count(*) FROM \"$a\"" 3
	wait_sql long "SELECT count(*) FROM \"$b\"" 5
	wait_sql long "SELECT value FROM _experiment_metadata WHERE key = 'table_$b'" "1 $b x:int32"
	# and a differing schema under such a name gets NAME_2, whole
	send -e long -s "1 $a y:double" -n 2
	wait_sql long "SELECT count(*) FROM \"${a}_2\"" 2
	wait_sql long "SELECT count(*) FROM sqlite_master WHERE type = 'table'" 5
}

@test "a start time before 1970 or after 9999 closes the connection with a log line and stores nothing" {
	start_server
	send -e st -T 1400000000 -n 2
	wait_sql st "SELECT value FROM _experiment_metadata WHERE key = 'start_time'" 1400000000
	local bad
	for bad in -9223372036854775808 99999999999999999999 253402300800 -1; do
		raw_refused 'protocol: 5\ndomain: st\nstart-time: %s\nsender-id: bad\nschema: 1 gen n:int32 x:double s:string\n\n1.0\t1\t1\t7\t1.5\tx\n' "$bad"
	done
	wait_log 'start-time beyond 9223372036854775807 is not a time from 1970 to 9999'
	wait_log 'start-time -9223372036854775808 is not a time'
	wait_log 'start-time 253402300800 is not a time'
	wait_log 'start-time -1 is not a time'
	# the last second of 9999 is still a time
	send -e st -S late -T 253402300799 -n 1
	wait_sql st "SELECT count(*) FROM gen" 3
	wait_sql st "SELECT count(*) FROM _senders WHERE name = 'bad'" 0
	wait_sql st "SELECT oml_ts_client FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'late')" 252002300799.001
	wait_sql st "SELECT value FROM _experiment_metadata WHERE key = 'start_time'" 1400000000
	log_lacks 'killed by signal|exited with status'
}

@test "a second server on a data directory in use refuses to start, naming the first" {
	need_root
	ensure_test_user
	chown "$T_USER" "$DATA"
	start_server --user="$T_USER"
	send -e one -n 5
	# as root, and as the same unprivileged user: no second server
	run timeout 20 "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --logfile="$T/b.log"
	[ "$status" -eq 1 ]
	grep -q "data directory $DATA is in use by another oml2-server (pid $SERVER_PID, in .oml2-server.lock)" "$T/b.log"
	run timeout 20 "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --logfile="$T/c.log" --user="$T_USER"
	[ "$status" -eq 1 ]
	grep -q "is in use by another oml2-server (pid $SERVER_PID" "$T/c.log"
	[ "$(cat "$DATA/.oml2-server.lock")" = "$SERVER_PID" ]
	# the first one serves on
	send -e one -n 5
	wait_sql one "SELECT count(*) FROM gen" 10
	wait_sql one "SELECT count(*) FROM _senders" 1
	stop_server
	# and once it is gone, the directory takes a new server
	LOG=$T/d.log
	start_server
	send -e one -n 5
	wait_sql one "SELECT count(*) FROM gen" 15
}

@test "a database deleted under a running experiment is made again, and the rows it held count as lost, not stored" {
	start_server
	bg send -e gone -S a -n 100 -H 4000
	local a=$BG
	wait_sql gone "SELECT count(*) FROM gen" 100
	rm -f "$DATA/gone.sq3" "$DATA/gone.sq3-wal" "$DATA/gone.sq3-shm"
	send -e gone -S b -n 50
	wait_log "gone.sq3 was deleted while open: the 100 rows stored in it since it was opened are lost"
	wait_sql gone "SELECT count(*) FROM gen" 50
	wait_sql gone "SELECT group_concat(name || '=' || id, ' ') FROM _senders" "a=1 b=2"
	wait_sql gone "SELECT value FROM _experiment_metadata WHERE key = 'table_gen'" "1 gen n:int32 x:double s:string"
	wait "$a"
	wait_log "gone.sq3 closed: 50 rows stored, 100 dropped"
	log_lacks "closed: 150 rows stored"
	# the file is whole, and the next client finds its table and sender
	[ "$(sq gone 'PRAGMA integrity_check')" = ok ]
	send -e gone -S b -n 5
	wait_sql gone "SELECT count(*) FROM gen WHERE oml_sender_id = 2" 55
}

# A row from sender d, and is one stored?  (for wait_for) stored_d
stored_d() {
	raw 'protocol: 5\ndomain: gone\nsender-id: d\nschema: 1 gen n:int32 x:double s:string\n\n1.0\t1\t1\t7\t1.5\tx\n' 2>/dev/null
	sql_is gone "SELECT count(*) > 0 FROM gen" 1
}

@test "a data directory deleted under a running experiment: its rows count as lost, none is taken until it is back, then a new file is made" {
	start_server
	bg send -e gone -S a -n 100 -H 30000
	local a=$BG
	wait_sql gone "SELECT count(*) FROM gen" 100
	rm -rf "$DATA"
	send -e gone -S b -n 50
	wait_log "gone.sq3 was deleted while open: the 100 rows stored in it since it was opened are lost"
	wait_log "gone.sq3 cannot be made again: this experiment's rows are dropped until it can"
	wait_log "gone.sq3: deleted while open: 50 rows received since the last commit are lost"
	# meanwhile new senders are refused
	raw_refused 'protocol: 5\ndomain: gone\nsender-id: c\nschema: 1 gen n:int32 x:double s:string\n\n'
	wait_log 'cannot register sender c'
	# the directory back, the experiment makes its file again
	mkdir "$DATA"
	wait_for 10 stored_d
	wait_log "gone.sq3 made again with this experiment's tables and senders \(none of the rows in between\)"
	wait_sql gone "SELECT group_concat(name || '=' || id, ' ') FROM _senders" "a=1 b=2 d=3"
	pkill -TERM -P "$a"	# (the omlsend under the bg shell)
	wait "$a" || true
	wait_log "gone.sq3 closed: [0-9]+ rows stored, 150 dropped"
	# what it says it stored is what the new file holds
	[ "$(sq gone 'SELECT count(*) FROM gen')" = "$(sed -n 's/.*gone.sq3 closed: \([0-9]*\) rows stored.*/\1/p' "$LOG")" ]
	log_lacks 'killed by signal|exited with status'
}
