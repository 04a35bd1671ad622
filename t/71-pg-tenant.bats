#!/usr/bin/env bats
# A tenant against the others under -b postgresql, with a real, throwaway
# PostgreSQL cluster (t/pg.bash): experiment names that are PostgreSQL's
# own databases or another's, and the shipped hook's pg_dump, which must
# dump only the experiment it is told and send its password nowhere else.

export OML2_BACKEND=postgresql
load helpers

eval "helpers_$(declare -f teardown)"

# The tests below open template1 and postgres to the server's role, as a
# cluster of PostgreSQL 14 or older is by default; close them again.
teardown() {
	local db
	for db in template1 postgres; do
		pg_psql "$db" >/dev/null 2>&1 <<-EOF
		DROP TABLE IF EXISTS public._senders, public._experiment_metadata, public.evil;
		REVOKE CREATE ON SCHEMA public FROM $PG_ROLE;
		EOF
	done
	helpers_teardown
}

# Tables of database $1's public schema, space-separated and sorted.
pg_tables_of() {
	pg_query "$1" "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
}

@test "template0, template1, postgres and databases no experiment made are refused with one line each, and nothing is written to them" {
	local db
	for db in template1 postgres; do
		pg_query "$db" "GRANT CREATE ON SCHEMA public TO $PG_ROLE"
	done
	pg_query postgres "CREATE DATABASE other OWNER $PG_ROLE"
	pg_query other "SET ROLE $PG_ROLE; CREATE TABLE secrets (s TEXT); INSERT INTO secrets VALUES ('mine')"
	start_server
	bg send -e witness -n 300 -B 50 -p 20
	local w=$BG
	for db in template1 postgres template0 other; do
		raw_refused 'protocol: 5\ndomain: %s\nstart-time: 1000\nsender-id: evil\nschema: 1 evil x:int32\n\n1\t1\t1\t666\n' "$db"
	done
	wait "$w"
	wait_q witness 'SELECT count(*) FROM gen' 300
	for db in template1 postgres template0; do
		[ "$(grep -c "exp/$db: database $db: refused as an experiment: it is one of PostgreSQL's own databases$" "$LOG")" -eq 1 ]
		[ "$(grep -c "exp/$db: client 127.0.0.1 port [0-9]*: protocol error: cannot open the experiment's database; connection closed" "$LOG")" -eq 1 ]
		# and nothing else above INFO
		[ "$(grep "exp/$db: " "$LOG" | grep -cE ' (WARN |ERROR) ')" -eq 2 ]
	done
	[ "$(grep -c "exp/other: database other: refused as an experiment: it exists, was not created by oml2-server and lacks the tables _senders and _experiment_metadata$" "$LOG")" -eq 1 ]
	[ "$(grep "exp/other: " "$LOG" | grep -cE ' (WARN |ERROR) ')" -eq 2 ]
	[ "$(pg_tables_of template1)" = "" ]
	[ "$(pg_tables_of postgres)" = "" ]
	[ "$(pg_tables_of other)" = secrets ]
	# a later experiment inherits nothing from template1
	send -e later -n 2
	wait_q later 'SELECT count(*) FROM gen' 2
	[ "$(pg_tables_of later)" = "_experiment_metadata _senders gen" ]
	[ "$(q later "SELECT count(*) FROM _experiment_metadata WHERE key = 'start_time' AND value = '1000'")" = 0 ]
	# names compare as PostgreSQL's quoted identifiers: Postgres is another
	send -e Postgres -n 2
	wait_q Postgres 'SELECT count(*) FROM gen' 2
	kill -0 "$SERVER_PID"
}

@test "an experiment database opens again after its process was killed, as do the original server's and a crash's leftovers" {
	start_server
	# killed while a client streams: the database it created opens again
	bg send -e crashed -n 100 -B 10 -p 100
	wait_q crashed 'SELECT count(*) > 0 FROM gen' t
	kill -KILL "$(exp_pid crashed)"
	wait_log 'experiment crashed process [0-9]+ killed by signal 9'
	send -e crashed -n 3 -S again
	wait_q crashed "SELECT count(*) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'again')" 3
	log_has "database $(uri_of crashed) opened"
	# marked, but empty: killed between creating it and its first tables
	pg_query postgres "CREATE DATABASE empty OWNER $PG_ROLE"
	pg_query postgres "COMMENT ON DATABASE empty IS 'oml2-server experiment'"
	send -e empty -n 2
	wait_q empty 'SELECT count(*) FROM gen' 2
	# made by the original server: its two tables, no mark
	pg_query postgres "CREATE DATABASE orig OWNER $PG_ROLE"
	pg_query orig "SET ROLE $PG_ROLE; CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE); CREATE TABLE \"_experiment_metadata\" (oml_tuple_id SERIAL PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client FLOAT8, oml_ts_server FLOAT8, \"subject\" TEXT, \"key\" TEXT, \"value\" TEXT); INSERT INTO _experiment_metadata (key, value) VALUES ('start_time', '1400000000')"
	send -e orig -n 2
	wait_q orig 'SELECT count(*) FROM gen' 2
	log_has "database $(uri_of orig) opened"
	# half made under its temporary name: dropped by the next creation
	local tmp
	tmp="oml2-server: new database $(pg_query postgres "SELECT oid FROM pg_roles WHERE rolname = '$PG_ROLE'")"
	pg_query postgres "CREATE DATABASE \"$tmp\" OWNER $PG_ROLE"
	send -e newone -n 2
	wait_q newone 'SELECT count(*) FROM gen' 2
	[ "$(pg_query postgres "SELECT count(*) FROM pg_database WHERE datname LIKE 'oml2-server:%'")" = 0 ]
	log_lacks 'refused as an experiment'
}

uri_of() {
	echo "postgresql://$PG_ROLE@127.0.0.1:$OML2_PG_PORT/$1"
}
