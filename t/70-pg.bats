#!/usr/bin/env bats
# The PostgreSQL backend against a real, throwaway PostgreSQL cluster
# (t/pg.bash): start-up checks, stored types, reopening, credentials,
# bad rows and a PostgreSQL restart mid-stream.

export OML2_BACKEND=postgresql
load helpers

# Fail if the command succeeds (a bare '!' does not fail a bats test).
refute() {
	if "$@"; then
		echo "should not have succeeded: $*" >&2
		return 1
	fi
}

# Run the server in the foreground with some PostgreSQL options replaced;
# it must refuse to start: refused OPTION...
refused() {
	run timeout 30 "$OML2_SERVER" -l 127.0.0.1:0 -b postgresql \
	    --pg-host=127.0.0.1 --pg-port="$OML2_PG_PORT" "$@"
	[ "$status" -ne 0 ]
	[ "$status" -ne 124 ]
}

uri() {
	echo "postgresql://$PG_ROLE@127.0.0.1:$OML2_PG_PORT/$1"
}

# Has experiment $1's database been closed after $2 clients in all left?
closed_after() {
	[ "$(grep -c 'closed by the client' "$LOG")" -eq "$2" ] &&
	    grep -E "database $(uri "$1") (created|opened|closed)" "$LOG" |
	    tail -n 1 | grep -q ' closed: '
}

@test "a server that cannot reach PostgreSQL says so and exits non-zero" {
	local free
	free=$(pg_free_port)
	refused --pg-port="$free" --pg-user="$PG_ROLE" --pg-pass="$OML2_PG_PASS"
	[[ "$output" == *"postgresql at 127.0.0.1 port $free"* ]]
	[[ "$output" == *"refused"* ]]
	[[ "$output" == *"cannot use the postgresql backend"* ]]
}

@test "--pg-port takes a service name and resolves it" {
	refused --pg-host=127.0.0.2 --pg-port=postgresql --pg-user="$PG_ROLE"
	[[ "$output" == *"port 5432"* ]]
	refused --pg-port=no-such-service --pg-user="$PG_ROLE"
	[[ "$output" == *"--pg-port no-such-service: not a port number or a known service"* ]]
}

@test "a wrong password is refused at start with a clear error" {
	refused --pg-user="$PG_ROLE" --pg-pass=wrong-password
	[[ "$output" == *"password authentication failed for user \"$PG_ROLE\""* ]]
	[[ "$output" != *wrong-password* ]]
}

@test "a role without CREATEDB is refused at start" {
	refused --pg-user="$PG_NOCREATE" --pg-pass="$OML2_PG_PASS"
	[[ "$output" == *"role $PG_NOCREATE may not create databases"* ]]
}

@test "a malformed --pg-connect is refused without repeating it" {
	refused --pg-user="$PG_ROLE" --pg-connect="password $OML2_PG_PASS"
	[[ "$output" == *"--pg-connect: not a valid libpq connection string"* ]]
	[[ "$output" != *"$OML2_PG_PASS"* ]]
}

@test "the server's role is no superuser but may create databases" {
	run pg_query postgres "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = '$PG_ROLE'"
	[ "$output" = "f|t" ]
}

@test "libpq is mapped only by the processes that store in PostgreSQL" {
	local exp pid spares=0
	start_server
	bg send -e maps -n 1 -H 30000
	wait_q maps "SELECT count(*) FROM gen" 1
	exp=$(exp_pid maps)
	[ -n "$exp" ]
	grep -q '/libpq\.so' "/proc/$exp/maps"
	refute grep -q '/libpq\.so' "/proc/$SERVER_PID/maps"
	for pid in $(child_pids); do
		[ "$pid" = "$exp" ] && continue
		refute grep -q '/libpq\.so' "/proc/$pid/maps"
		spares=$((spares + 1))
	done
	[ "$spares" -ge 1 ]
}

@test "each experiment gets its own database, named in the log by its URI" {
	start_server
	send -e pgone -n 5 -S node1
	send -e pgtwo -n 3 -S node2
	wait_q pgone "SELECT count(*) FROM gen" 5
	wait_q pgtwo "SELECT count(*) FROM gen" 3
	wait_log "database $(uri pgone) created"
	wait_log "database $(uri pgtwo) closed: 3 rows stored, 0 dropped"
	wait_for 10 closed_after pgone 2
	send -e pgone -n 1 -S node1
	wait_log "database $(uri pgone) opened"
	run q pgone "SELECT oml_sender_id, oml_seq, n, x, s FROM gen WHERE oml_seq = 4 ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "1|4|4|4.25|row-4" ]
}

@test "a new database holds _senders, _experiment_metadata and its rows" {
	start_server
	send -e meta -n 1 -T 1400000000 -s "1 a_b v:int32"
	wait_q meta "SELECT count(*) FROM a_b" 1
	run q meta "SELECT oml_tuple_id, key, value FROM _experiment_metadata ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "1|table__experiment_metadata|0 _experiment_metadata subject:string key:string value:string" ]
	[ "${lines[1]}" = "2|start_time|1400000000" ]
	[ "${lines[2]}" = "3|table_a_b|1 a_b v:int32" ]
	[ "${#lines[@]}" -eq 3 ]
	run q meta "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' GROUP BY table_name ORDER BY table_name"
	[ "${lines[0]}" = "_experiment_metadata|oml_tuple_id bigint, oml_sender_id integer, oml_seq integer, oml_ts_client double precision, oml_ts_server double precision, subject text, key text, value text" ]
	[ "${lines[1]}" = "_senders|name text, id integer" ]
	[ "${lines[2]}" = "a_b|oml_tuple_id bigint, oml_sender_id integer, oml_seq integer, oml_ts_client double precision, oml_ts_server double precision, v integer" ]
}

# PROTOCOL.md §6.8 P2, P3 and P4 after the usual header.
P_HEADER='protocol: 5\ndomain: bexp\nstart-time: 1400000000\nsender-id: nodeB\napp-name: a\nschema: 0 _experiment_metadata subject:string key:string value:string\nschema: 1 a_one n:int32 x:double s:string\nschema: 3 a_three u:uint32 i:int64 ul:uint64 g:guid t:bool f:bool bl:blob d:double\ncontent: binary\n\n'
P2='\xAA\xAA\x01\x00\x3F\x03\x00\x05\x00\x00\x00\x01\x02\x20\x00\x00\x00\x02\x04\x01\x2E\x04\x06\x73\x63\x68\x65\x6D\x61\x04\x25\x32\x20\x61\x5F\x76\x65\x63\x20\x76\x3A\x5B\x69\x6E\x74\x33\x32\x5D\x20\x77\x3A\x5B\x64\x6F\x75\x62\x6C\x65\x5D\x20\x62\x3A\x5B\x62\x6F\x6F\x6C\x5D'
P3='\xAA\xAA\x01\x00\x38\x03\x02\x05\x00\x00\x00\x07\x02\xE0\x00\x00\x00\xFF\x0D\x05\x00\x03\x00\x00\x00\x01\xFF\xFF\xFF\xFE\x00\x00\x01\x2C\x0D\x0F\x00\x02\x3F\xF8\x00\x00\x00\x00\x00\x00\xBF\xB9\x99\x99\x99\x99\x99\x9A\x0D\x0E\x00\x03\x0C\x0B\x0C'
P4='\xAA\xAA\x01\x00\x3D\x08\x03\x05\x00\x00\x00\x02\x02\x28\x00\x00\x00\x04\x06\xEE\x6B\x28\x00\x07\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFE\x08\x00\x00\x01\x1F\x71\xFB\x04\xCB\x0A\x01\x02\x03\x04\x05\x06\x07\x08\x0C\x0B\x09\x00\x00\x00\x03\x00\x01\xAA\x03\x00\x00\x00\x00\x00'

@test "the P4 vector stores u = 4000000000, bl = \\x0001aa, d = NaN and t/f booleans" {
	start_server
	raw "$P_HEADER$P2$P3$P4"
	wait_q bexp "SELECT count(*) FROM a_three" 1
	run q bexp "SELECT oml_sender_id, oml_seq, oml_ts_client, u, i, ul, g, t, f, bl, d FROM a_three"
	[ "$output" = '1|2|10|4000000000|-2|1234567890123|72623859790382856|t|f|\x0001aa|NaN' ]
	run q bexp "SELECT v, w, b, oml_ts_client FROM a_vec"
	[ "$output" = '[ 1, -2, 300 ]|[ 1.5, -0.1 ]|[ true, false, true ]|-0.25' ]
	run q bexp "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'a_three'::regclass AND attnum > 0"
	[ "$output" = "oml_tuple_id bigint, oml_sender_id integer, oml_seq integer, oml_ts_client double precision, oml_ts_server double precision, u bigint, i bigint, ul bigint, g bigint, t boolean, f boolean, bl bytea, d double precision" ]
	run q bexp "SELECT count(*) FROM _experiment_metadata WHERE key = 'schema'"
	[ "$output" = 0 ]
}

@test "uint64 values from 2^63 up are stored as their signed reading, not lost" {
	start_server
	raw 'protocol: 5\ndomain: big\nschema: 1 t u:uint64 g:guid\n\n1.0\t1\t1\t18446744073709551615\t0\n1.0\t1\t2\t9223372036854775808\t18446744073709551615\n1.0\t1\t3\t9223372036854775807\t5\n'
	wait_q big "SELECT count(*) FROM t" 3
	run q big "SELECT u, g FROM t ORDER BY oml_seq"
	[ "${lines[0]}" = "-1|" ]
	[ "${lines[1]}" = "-9223372036854775808|-1" ]
	[ "${lines[2]}" = "9223372036854775807|5" ]
}

@test "doubles round-trip exactly and uint32 keeps its true value" {
	start_server
	raw 'protocol: 5\ndomain: dbl\nschema: 1 t x:double u:uint32\n\n1.0\t1\t1\t0.1\t4294967295\n1.0\t1\t2\t3.141592653589793\t0\n1.0\t1\t3\t1e-300\t1\n1.0\t1\t4\tnan\t2\n'
	wait_q dbl "SELECT count(*) FROM t" 4
	run q dbl "SELECT x = 0.1::float8, x = 3.141592653589793::float8, x = 1e-300::float8, x = 'NaN'::float8, u FROM t ORDER BY oml_seq"
	[ "${lines[0]}" = "t|f|f|f|4294967295" ]
	[ "${lines[1]}" = "f|t|f|f|0" ]
	[ "${lines[2]}" = "f|f|t|f|1" ]
	[ "${lines[3]}" = "f|f|f|t|2" ]
}

@test "reopening reuses a table with the same schema and renames one that differs" {
	start_server
	send -e ren -n 1 -s "1 t x:int32"
	wait_log "database $(uri ren) closed"
	send -e ren -n 1 -s "1 t x:double"
	wait_q ren "SELECT count(*) FROM t_2" 1
	send -e ren -n 1 -s "1 t x:double" -s "2 t y:int32" -s "3 t x:int32"
	wait_q ren "SELECT (SELECT count(*) FROM t) || ' ' || (SELECT count(*) FROM t_2) || ' ' || (SELECT count(*) FROM t_3)" "2 2 1"
	run q ren "SELECT key, value FROM _experiment_metadata WHERE key LIKE 'table_t%' ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "table_t|1 t x:int32" ]
	[ "${lines[1]}" = "table_t_2|1 t_2 x:double" ]
	[ "${lines[2]}" = "table_t_3|2 t_3 y:int32" ]
	[ "${#lines[@]}" -eq 3 ]
	log_lacks 'protocol error'
}

@test "tables whose names start with pg or sql are found again on reopening" {
	start_server
	send -e prefix -n 2 -s "1 pgtab x:int32" -s "2 sqlthing y:int32"
	wait_log "database $(uri prefix) closed"
	send -e prefix -n 2 -s "1 pgtab x:int32" -s "2 sqlthing y:int32"
	wait_q prefix "SELECT (SELECT count(*) FROM pgtab) || ' ' || (SELECT count(*) FROM sqlthing)" "4 4"
	run q prefix "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
	[ "$output" = 4 ]
	log_lacks 'protocol error'
}

@test "a table left without its table_ row is not clobbered: the schema goes to name_2" {
	start_server
	send -e orphan -n 1 -s "1 lone x:int32"
	wait_log "database $(uri orphan) closed"
	pg_query orphan "DELETE FROM _experiment_metadata WHERE key = 'table_lone'"
	send -e orphan -n 2 -s "1 lone x:int32"
	wait_q orphan "SELECT (SELECT count(*) FROM lone) || ' ' || (SELECT count(*) FROM lone_2)" "1 2"
}

@test "a connection lost while learning another server's table does not rename that table" {
	start_server
	bg send -e lost -n 1 -S keeper -H 30000
	wait_q lost "SELECT count(*) FROM gen" 1
	# another server's table, as that server would have made it
	pg_query lost "SET ROLE $PG_ROLE; CREATE TABLE b (oml_tuple_id SERIAL PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client FLOAT8, oml_ts_server FLOAT8, y INT4); INSERT INTO _experiment_metadata (key, value) VALUES ('table_b', '1 b y:int32')"
	# hold the metadata table, so that reading table_b waits; then cut
	# the server's connection there
	bg pg_query lost "BEGIN; LOCK TABLE _experiment_metadata; SELECT pg_sleep(60)"
	wait_q postgres "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'" 1
	send -e lost -n 1 -s "1 c z:int32"
	wait_q postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'oml2-server' AND wait_event_type = 'Lock'" 1
	pg_query postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'oml2-server' AND wait_event_type = 'Lock'" >/dev/null
	pg_query postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'" >/dev/null
	wait_log 'connection to PostgreSQL lost'
	send -e lost -n 2 -s "1 b y:int32"
	wait_q lost "SELECT count(*) FROM b" 2
	run q lost "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
	[ "$output" = "_experiment_metadata _senders b gen" ]
}

@test "_senders ids start at 1, persist across reopening and are shared by name" {
	start_server
	send -e snd -n 1 -S alpha
	send -e snd -n 1 -S beta
	wait_for 10 closed_after snd 2
	send -e snd -n 1 -S alpha
	send -e snd -n 1 -S "it's \"quoted\"; DROP TABLE gen"
	wait_q snd "SELECT count(*) FROM gen" 4
	run q snd "SELECT id, name FROM _senders ORDER BY id"
	[ "${lines[0]}" = "1|alpha" ]
	[ "${lines[1]}" = "2|beta" ]
	[ "${lines[2]}" = "3|it's \"quoted\"; DROP TABLE gen" ]
	run q snd "SELECT oml_sender_id, count(*) FROM gen GROUP BY 1 ORDER BY 1"
	[ "$output" = "$(printf '1|2\n2|1\n3|1')" ]
}

@test "the password never appears in ps output or in the log" {
	local pid secret="$OML2_PG_PASS" pids probe
	start_server --pg-connect="password=$secret application_name=oml2test"
	bg send -e hidden -n 2 -H 5000
	wait_q hidden "SELECT count(*) FROM gen" 2
	pids="$SERVER_PID $(pgrep -P "$SERVER_PID" | tr '\n' ' ')"
	[ "$(echo $pids | wc -w)" -ge 3 ]
	for pid in $pids; do
		refute grep -qF -- "$secret" "/proc/$pid/cmdline"
	done
	refute eval 'ps -eo args | grep -v grep | grep -qF -- "$secret"'
	refute grep -qF -- "$secret" "$LOG"
	# the start-up probe too: hold PostgreSQL still while it connects
	stop_server
	: >"$LOG"
	local pm
	pm=$(head -n 1 "$OML2_PG_DIR/data/postmaster.pid")
	kill -STOP "$pm"
	"$OML2_SERVER" -l 127.0.0.1:0 --logfile="$LOG" $(backend_args) 3>&- &
	SERVER_PID=$!
	wait_for 10 eval '[ -n "$(pgrep -P "$SERVER_PID")" ]' || { kill -CONT "$pm"; false; }
	probe=$(pgrep -P "$SERVER_PID" | head -n 1)
	local seen=0
	tr '\0' ' ' <"/proc/$probe/cmdline" | grep -qF -- "$secret" && seen=1
	kill -CONT "$pm"
	[ "$seen" -eq 0 ]
	wait_log ' ready: '
	refute grep -qF -- "$secret" "$LOG"
}

@test "--pg-connect's parameters override --pg-pass and reach PostgreSQL" {
	start_server --pg-pass=wrong-password --pg-connect="password=$OML2_PG_PASS application_name=oml2conn"
	bg send -e override -n 1 -H 30000
	wait_q override "SELECT count(*) FROM gen" 1
	run pg_query postgres "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = 'override'"
	[ "$output" = oml2conn ]
}

@test "PGPASSWORD works in place of --pg-pass, and so does a password file" {
	# the server without --pg-pass: start_nopass [ENV=VALUE...]
	start_nopass() {
		: >"$LOG"
		run_server env "$@" "$OML2_SERVER" -l 127.0.0.1:0 -d 4 \
		    --logfile="$LOG" -b postgresql --pg-host=127.0.0.1 \
		    --pg-port="$OML2_PG_PORT" --pg-user="$PG_ROLE"
	}
	start_nopass PGPASSWORD="$OML2_PG_PASS"
	send -e envpw -n 4
	wait_q envpw "SELECT count(*) FROM gen" 4
	stop_server
	echo "127.0.0.1:$OML2_PG_PORT:*:$PG_ROLE:$OML2_PG_PASS" >"$T/pgpass"
	chmod 600 "$T/pgpass"
	start_nopass PGPASSFILE="$T/pgpass"
	send -e filepw -n 2
	wait_q filepw "SELECT count(*) FROM gen" 2
}

@test "an invalid UTF-8 string costs only its own row" {
	start_server
	bg send -e utf -n 300 -B 50 -p 20 -S good
	raw 'protocol: 5\ndomain: utf\nsender-id: bad\nschema: 1 gen n:int32 x:double s:string\n\n1.0\t1\t1\t1\t1.5\tok-\xc3\xa9\n1.0\t1\t2\t2\t2.5\tbad-\xff\xfe\n1.0\t1\t3\t3\t3.5\tok-again\n'
	wait "$BG"
	wait_q utf "SELECT count(*) FROM gen" 302
	run q utf "SELECT s FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'bad') ORDER BY oml_seq"
	[ "$output" = "$(printf 'ok-\xc3\xa9\nok-again')" ]
	wait_log 'table gen: field s is not valid UTF-8'
	wait_log 'client .* tuple dropped: gen: the database refused the row'
	wait_log 'closed: 302 rows stored, 1 dropped'
}

@test "a row PostgreSQL refuses inside a batch costs only itself" {
	start_server
	send -e refuse -n 1
	wait_q refuse "SELECT count(*) FROM gen" 1
	wait_for 10 closed_after refuse 1
	pg_query refuse "ALTER TABLE gen ADD CONSTRAINT not13 CHECK (n <> 13)"
	send -e refuse -n 400 -c 3
	wait_q refuse "SELECT count(*) FROM gen" $((1 + 3 * 399))
	run q refuse "SELECT count(*) FROM gen WHERE n = 13"
	[ "$output" = 0 ]
	run q refuse "SELECT count(DISTINCT oml_sender_id) FROM gen WHERE n = 400"
	[ "$output" = 3 ]
	wait_log 'table gen: row from sender omlsend-[0-2] seq 13 dropped: .*not13'
	[ "$(grep -c 'seq 13 dropped' "$LOG")" -eq 3 ]
	wait_log "database $(uri refuse) closed: 1197 rows stored, 3 dropped"
}

@test "a row PostgreSQL refuses in a batch streamed while it was read costs only itself" {
	start_server
	send -e stream -n 1
	wait_for 10 closed_after stream 1
	pg_query stream "ALTER TABLE gen ADD CONSTRAINT not13 CHECK (n <> 13 AND n <> 25000)"
	# megabytes of rows: the batch's COPY starts while they are read
	send -b -e stream -n 30000
	wait_q stream "SELECT count(*) FROM gen" $((1 + 29998))
	[ "$(q stream "SELECT count(*) FROM gen WHERE n IN (13, 25000)")" = 0 ]
	[ "$(q stream "SELECT count(DISTINCT n) FROM gen WHERE oml_seq > 0")" = 29998 ]
	wait_log 'table gen: row from sender omlsend seq 25000 dropped: .*not13'
	wait_log "database $(uri stream) closed: 29998 rows stored, 2 dropped"
}

@test "a refused row is counted once when the commit after it is cut off and sent again" {
	start_server
	send -e once -n 1
	wait_for 10 closed_after once 1
	# refuse row 13; cut the connection at the first commit that follows
	pg_query once "SET ROLE $PG_ROLE; ALTER TABLE gen ADD CONSTRAINT not13 CHECK (n <> 13); CREATE SEQUENCE cuts; CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN IF nextval(''cuts'') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END'; CREATE CONSTRAINT TRIGGER cut AFTER INSERT ON gen DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut()"
	send -e once -n 20
	wait_log "database $(uri once) closed: 19 rows stored, 1 dropped"
	log_has 'connection to PostgreSQL lost'
	run q once "SELECT count(*), count(*) FILTER (WHERE n = 13) FROM gen"
	[ "$output" = "20|0" ]
}

@test "PostgreSQL restarting mid-stream loses no row and no client" {
	start_server
	bg send -e restart -n 600 -B 10 -p 50 -S slow
	local sender=$BG
	wait_for 10 eval '[ "$(q restart "SELECT count(*) FROM gen" 2>/dev/null || echo 0)" -gt 0 ]'
	pg_as "$PG_BIN/pg_ctl" -D "$OML2_PG_DIR/data" -m fast -w restart >/dev/null
	wait "$sender"
	wait_q restart "SELECT count(*), count(DISTINCT oml_seq), min(oml_seq), max(oml_seq) FROM gen" "600|600|1|600" 20
	log_has 'connection to PostgreSQL lost'
	log_has 'reconnected to PostgreSQL'
	log_lacks 'protocol error|socket error'
	wait_log "client .* closed by the client: 600 rows stored, 0 dropped"
}

@test "PostgreSQL away for a while: the batch waits, reconnection backs off, no row is lost" {
	start_server
	bg send -e away -n 600 -B 10 -p 50 -S patient
	local sender=$BG
	wait_for 10 eval '[ "$(q away "SELECT count(*) FROM gen" 2>/dev/null || echo 0)" -gt 0 ]'
	pg_stop
	wait_log 'connection to PostgreSQL lost'
	# the operator sees why rows wait
	wait_cj "PostgreSQL down" 10 '.experiments[0].stall_cause' list
	wait_for 10 eval '[ "$(grep -c "postgresql at 127.0.0.1 port $OML2_PG_PORT as $PG_ROLE, database away: .*refused" "$LOG")" -ge 2 ]'
	pg_start
	wait "$sender"
	wait_q away "SELECT count(*), count(DISTINCT oml_seq) FROM gen" "600|600" 20
	log_has 'reconnected to PostgreSQL after [2-9][0-9]* failed attempts'
	log_lacks 'protocol error|socket error'
}

@test "oml2ctl show counts a table's rows, those an earlier server stored too" {
	start_server
	send -e count -n 200 -S earlier
	wait_q count "SELECT count(*) FROM gen" 200
	stop_server
	LOG=$T/second.log
	start_server
	bg send -e count -n 300 -S later -H 60000
	wait_q count "SELECT count(*) FROM gen" 500
	wait_cj "gen=500/300/1" 10 '.details.tables | map("\(.name)=\(.rows)/\(.stored)/\(.senders)") | join(",")' show count
}

@test "a database closing while PostgreSQL is away waits for it without stopping the process: it answers meanwhile, and no row is lost" {
	start_server
	bg "$OMLSEND" -q -e late -n 1000000 -B 5 -p 100 "127.0.0.1:$PORT"
	local holder=$BG n
	wait_for 10 eval '[ "$(q late "SELECT count(*) FROM gen" 2>/dev/null || echo 0)" -gt 0 ]'
	pg_stop
	wait_log 'connection to PostgreSQL lost'
	kill "$holder"
	wait_log 'client .* closed by the client: [0-9]+ rows stored'
	# the last client has left, its rows wait for PostgreSQL, and the
	# process still answers the master (a sleeping one would not)
	kill -USR1 "$SERVER_PID"
	wait_log 'status: experiment late process [0-9]+: 0 clients' 5
	wait_log 'status: end' 5
	log_lacks "database $(uri late) closed"
	pg_start
	wait_log "database $(uri late) closed: [0-9]+ rows stored, 0 dropped" 20
	n=$(sed -n 's/.*late closed: \([0-9]*\) rows stored.*/\1/p' "$LOG")
	wait_q late "SELECT count(*), count(DISTINCT oml_seq), max(oml_seq) FROM gen" "$n|$n|$n"
}
