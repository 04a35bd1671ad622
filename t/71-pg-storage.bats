#!/usr/bin/env bats
# The PostgreSQL side of t/84-storage.bats, against a throwaway cluster
# (t/pg.bash): 64-bit row ids for new tables, the 32-bit ones of older
# servers' tables used up to their end and no further, metadata lookups
# that stay fast however many tables an experiment has, and table names
# within PostgreSQL's 63 bytes, never cut.

export OML2_BACKEND=postgresql
load helpers

# The DDL older servers used (SERIAL, PROTOCOL.md §8.2), as PG_ROLE.
OLD_META='CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE); CREATE TABLE "_experiment_metadata" (oml_tuple_id SERIAL PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client FLOAT8, oml_ts_server FLOAT8, "subject" TEXT, "key" TEXT, "value" TEXT)'

old_db() {
	pg_query postgres "CREATE DATABASE \"$1\" OWNER $PG_ROLE" &&
	    pg_query "$1" "SET ROLE $PG_ROLE; $OLD_META; $2"
}

ms() {
	echo $(($(date +%s%N) / 1000000))
}

@test "new tables get 64-bit row ids" {
	start_server
	send -e ids -n 3
	wait_q ids "SELECT count(*) FROM gen" 3
	run q ids "SELECT table_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'oml_tuple_id' ORDER BY table_name"
	[ "${lines[0]}" = "_experiment_metadata bigint" ]
	[ "${lines[1]}" = "gen bigint" ]
	[ "${#lines[@]}" -eq 2 ]
}

@test "rows carry ids reserved ahead from their table's sequence, in the order they came, and the sequence goes on from the last row once the database closes" {
	start_server
	bg send -e blk -n 5000 -S first -H 60000
	wait_q blk "SELECT count(*) FROM gen" 5000
	# PostgreSQL's own nextval() would leave last_value at the last row
	run q blk "SELECT last_value > 5000 FROM gen_oml_tuple_id_seq"
	[ "$output" = t ]
	run q blk "SELECT min(oml_tuple_id), max(oml_tuple_id), count(*) FILTER (WHERE d <> 1) FROM (SELECT oml_tuple_id, oml_tuple_id - lag(oml_tuple_id) OVER (ORDER BY oml_seq) d FROM gen) x"
	[ "$output" = "1|5000|0" ]
	stop_server
	grep -q 'blk closed: 5000 rows stored' "$LOG"
	run q blk "SELECT last_value, is_called FROM gen_oml_tuple_id_seq"
	[ "$output" = "5001|f" ]
	LOG=$T/second.log
	start_server
	send -e blk -n 10 -S second
	wait_q blk "SELECT min(oml_tuple_id), max(oml_tuple_id) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'second')" "5001|5010"
	# a table whose name PostgreSQL must quote, near its 63 bytes
	local long=Gen_$(printf 'x%.0s' {1..55})
	send -e blk -n 300 -s "1 $long n:int32"
	wait_q blk "SELECT count(*), min(oml_tuple_id), max(oml_tuple_id) FROM \"$long\"" "300|1|300"
	log_lacks 'rows dropped|row from sender|already taken'
}

@test "another writer beside the server costs no row: its nextval() goes past the server's block, and ids it chose inside it make the server take new ones" {
	start_server
	bg send -e clash -n 100 -S first -H 60000
	wait_q clash "SELECT count(*) FROM gen" 100
	pg_query clash "INSERT INTO gen (oml_sender_id, oml_seq, oml_ts_client, oml_ts_server, n, x, s) SELECT 99, i, 0, 0, 0, 0, 'nextval' FROM generate_series(1, 10) i" >/dev/null
	run q clash "SELECT min(oml_tuple_id) > (SELECT max(oml_tuple_id) FROM gen WHERE s <> 'nextval') FROM gen WHERE s = 'nextval'"
	[ "$output" = t ]
	# ids the server has reserved but not used yet, taken by hand
	pg_query clash "INSERT INTO gen (oml_tuple_id, oml_sender_id, oml_seq, oml_ts_client, oml_ts_server, n, x, s) SELECT i, 98, i, 0, 0, 0, 0, 'chosen' FROM generate_series(101, 150) i" >/dev/null
	send -e clash -n 50 -S second
	wait_q clash "SELECT count(*) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'second')" 50
	wait_log 'database clash: table gen: row ids already taken by another writer; reserving new ones'
	run q clash "SELECT count(*) FROM gen"
	[ "$output" = 210 ]
	log_lacks 'rows dropped|row from sender'
}

@test "kill -9 of an experiment process mid-stream keeps every committed row; the ids its open batch held stay unused, and the next rows come after them" {
	start_server
	bg send -e k9 -n 200000 -B 1000 -p 20
	local client=$BG committed pid n
	wait_for 20 eval '[ "$(q k9 "SELECT count(*) FROM gen" 2>/dev/null || echo 0)" -ge 5000 ]'
	committed=$(q k9 "SELECT count(*) FROM gen")
	pid=$(exp_pid k9)
	kill -KILL "$pid"
	wait_log "experiment k9 process $pid killed by signal 9"
	kill "$client" 2>/dev/null || true
	n=$(q k9 "SELECT count(*) FROM gen")
	echo "# rows committed before the kill: $committed, found after: $n" >&3
	[ "$n" -ge "$committed" ]
	# what survived is exactly the first n rows the client sent
	[ "$(q k9 'SELECT max(n), count(DISTINCT n), count(DISTINCT oml_tuple_id) FROM gen')" = "$n|$n|$n" ]
	send -e k9 -n 5 -S again
	wait_q k9 "SELECT count(*), min(oml_tuple_id) > (SELECT max(oml_tuple_id) FROM gen WHERE oml_sender_id <> (SELECT id FROM _senders WHERE name = 'again')) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'again')" "5|t"
}

@test "an older server's table with 32-bit row ids is filled to its last id, then its rows are dropped with one clear log line" {
	# 47 ids left in gen's sequence
	old_db old "CREATE TABLE \"gen\" (oml_tuple_id SERIAL PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client FLOAT8, oml_ts_server FLOAT8, \"n\" INT4, \"x\" FLOAT8, \"s\" TEXT); INSERT INTO _experiment_metadata (key, value) VALUES ('table__experiment_metadata', '0 _experiment_metadata subject:string key:string value:string'), ('start_time', '1400000000'), ('table_gen', '1 gen n:int32 x:double s:string'); SELECT setval('gen_oml_tuple_id_seq', 2147483600)" >/dev/null
	start_server
	send -e old -n 100 -s "1 gen n:int32 x:double s:string" -s "2 other y:int32"
	wait_log 'closed: 147 rows stored, 53 dropped'
	wait_q old "SELECT count(*), min(oml_tuple_id), max(oml_tuple_id), max(n) FROM gen" "47|2147483601|2147483647|47"
	wait_q old "SELECT count(*), max(oml_tuple_id) FROM other" "100|100"
	grep -q 'database old: table gen has 32-bit row ids, as older servers made them: 47 left' "$LOG"
	[ "$(grep -c 'database old: table gen has no row id left: its oml_tuple_id is a 32-bit SERIAL, as older servers made it, and has reached 2147483647' "$LOG")" -eq 1 ]
	log_lacks 'row from sender|rows dropped:'
	# a later client's rows for it are dropped, and said once again
	send -e old -n 10
	wait_log 'closed: 0 rows stored, 10 dropped'
	[ "$(grep -c 'table gen has no row id left' "$LOG")" -eq 2 ]
	wait_q old "SELECT data_type FROM information_schema.columns WHERE table_name = 'gen' AND column_name = 'oml_tuple_id'" integer
	wait_q old "SELECT count(*) FROM gen" 47
}

@test "an experiment with 1,000 tables and 100,000 metadata rows reopens in under 5 seconds" {
	old_db big "INSERT INTO _experiment_metadata (key, value) VALUES ('table__experiment_metadata', '0 _experiment_metadata subject:string key:string value:string'), ('start_time', '1400000000'); INSERT INTO _experiment_metadata (key, value) SELECT 'table_t' || i, '1 t' || i || ' x:int32' FROM generate_series(0, 999) i; INSERT INTO _experiment_metadata (oml_sender_id, oml_seq, oml_ts_client, oml_ts_server, subject, key, value) SELECT 1, i, 0.5, 0.5, 'node', 'k' || i, 'v' FROM generate_series(1, 100000) i; DO \$\$ BEGIN FOR i IN 0..999 LOOP EXECUTE format('CREATE TABLE %I (oml_tuple_id SERIAL PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client FLOAT8, oml_ts_server FLOAT8, x INT4)', 't' || i); END LOOP; END \$\$" >/dev/null
	start_server
	local t0 t1
	t0=$(ms)
	send -e big -s "1 t999 x:int32" -n 1
	wait_q big "SELECT count(*) FROM t999" 1 5
	t1=$(ms)
	echo "# reopened and stored a row in $((t1 - t0)) ms" >&3
	log_lacks 'created table|table t999 created'
	[ "$((t1 - t0))" -lt 5000 ]
}

@test "table names are PostgreSQL's 63 bytes at most: longer ones are refused, never cut" {
	local p62 p63
	p62=$(printf 'm%.0s' {1..62})
	p63=${p62}m
	start_server
	send -e names -s "1 $p63 x:int32" -n 2
	wait_q names "SELECT count(*) FROM \"$p63\"" 2
	# two names that agree in their first 63 bytes
	send -e names -s "1 ${p63}a x:int32" -n 2 || true
	send -e names -s "1 ${p63}b x:int32" -n 2 || true
	wait_log "table name ${p63}a is longer than PostgreSQL's 63 bytes"
	wait_log "table name ${p63}b is longer than PostgreSQL's 63 bytes"
	# a differing schema under a 62-byte name would need a 64-byte name_2
	send -e names -s "1 $p62 x:int32" -n 1
	send -e names -s "1 $p62 y:int32" -n 1 || true
	wait_log "table name ${p62}_2 is longer than PostgreSQL's 63 bytes"
	wait_q names "SELECT count(*) FROM \"$p63\"" 2
	wait_q names "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'mmm%'" "$p62 $p63"
}
