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

@test "template0, template1, postgres and databases no experiment made are refused with one line naming the client, and nothing is written to them" {
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
		[ "$(grep -c "exp/$db: client 127.0.0.1 port [0-9]*: protocol error: database $db refused as an experiment: it is one of PostgreSQL's own databases; connection closed$" "$LOG")" -eq 1 ]
		# and nothing else above INFO
		[ "$(grep "exp/$db: " "$LOG" | grep -cE ' (WARN |ERROR) ')" -eq 1 ]
	done
	[ "$(grep -c "exp/other: client 127.0.0.1 port [0-9]*: protocol error: database other refused as an experiment: it exists, was not created by oml2-server and lacks the tables _senders and _experiment_metadata; connection closed$" "$LOG")" -eq 1 ]
	[ "$(grep "exp/other: " "$LOG" | grep -cE ' (WARN |ERROR) ')" -eq 1 ]
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

SHIPPED=$T_TOP/hooks/oml2-server-hook.sh

# A TCP listener on a free loopback port that records, in $T/listener.log,
# every connection it gets: the host an attacker would send pg_dump to.
# Its port is in $LPORT.
start_listener() {
	LPORT=$(pg_free_port)
	bg perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
		    LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "$!";
		open(my $log, ">>", $ARGV[1]) or die;
		$log->autoflush(1);
		print $log "listening\n";
		while (my $c = $s->accept) { print $log "connected\n"; close $c; }
	' "$LPORT" "$T/listener.log"
	wait_for 10 grep -q listening "$T/listener.log"
}

# Feed the shipped hook commands (printf-style) as a server would, with
# pg_dump given the password as operators give it: hook_told FORMAT [ARG...]
hook_told() {
	local f
	# shellcheck disable=SC2059
	f=$(printf "$@")
	printf '%s\nEXIT\n' "$f" | PGPASSWORD=$OML2_PG_PASS OML2_HOOK_CONF=$T/hook.conf \
	    timeout 60 "$SHIPPED" >/dev/null 2>>"$T/hook.err"
}

@test "the shipped hook gives pg_dump no name as an option or setting: no other database is dumped, and no other host gets the password" {
	fake_iput
	start_listener
	mkdir -m 777 "$T/dumps"
	printf 'DUMP_DIR=%s\n' "$T/dumps" >"$T/hook.conf"
	export OML2_HOOK_CONF=$T/hook.conf PGPASSWORD=$OML2_PG_PASS
	start_server -H "$SHIPPED"
	send -e victim -n 3 -S victim-secret
	send -e attacker -n 2 -S attacker
	wait_for 10 eval '[ "$(grep -c . "$T/iput.args" 2>/dev/null)" = 2 ]'
	local base="postgresql://$PG_ROLE@127.0.0.1:$OML2_PG_PORT" name n=0
	local names=(--dbname=victim -dvictim dbname=victim "host=127.0.0.1 port=$LPORT"
	    "port=$LPORT" service=x "victim' host='127.0.0.1" '$(touch pwned)'
	    '`touch pwned`' 'a b' 'a"b' 'a\b' '')
	# the server refuses them as names ...
	for name in "${names[@]}"; do
		raw_refused 'protocol: 5\ndomain: %s\nsender-id: x\n\n' "$name"
	done
	# ... and the hook, told them by a server that did not
	for name in "${names[@]}"; do
		hook_told 'DBCLOSED %s/%s' "$base" "$name"
		n=$((n + 1))
	done
	[ "$(grep -c 'not an experiment name: .*; not dumped' "$T/hook.err")" -eq "$n" ]
	# each experiment's dump holds its own rows, under its own name, and
	# there are no others
	[ "$(grep -c . "$T/iput.args")" = 2 ]
	[ "$(ls "$T/irods" | sed 's/[0-9T]*\.pg\.sql$//')" = "$(printf 'attacker.\nvictim.')" ]
	grep -q 'COPY public._senders' "$T"/irods/attacker.*
	grep -q victim-secret "$T"/irods/victim.*
	[ "$(grep -c victim-secret "$T"/irods/attacker.*)" = 0 ]
	# nothing reached the listener, nothing ran
	[ "$(grep -c connected "$T/listener.log")" = 0 ]
	[ ! -e pwned ]
	[ ! -e "$T/pwned" ]
}

# Dangling links at the names a dump of $2 of kind $3 would get in
# directory $1 during the next 30 s, each to $T/stolen.N.
plant_links() {
	local now i
	now=$(date +%s)
	for i in $(seq 0 30); do
		ln -s "$T/stolen.$i" "$1/$2.$(date -d "@$((now + i))" +%Y%m%dT%H%M%S).$3.sql"
	done
}

# Nothing was written through a planted link.
no_stolen() {
	local f
	f=$(ls "$T" | grep stolen) || true
	[ -z "$f" ] || { echo "written through a link: $f" >&2; return 1; }
}

@test "the shipped hook writes dumps where no planted link or predictable name reaches: its own directory, or a fresh name in DUMP_DIR" {
	fake_iput
	mkdir -m 1777 "$T/tmp" "$T/shared"
	pg_query postgres "CREATE DATABASE attacker"
	: >"$T/hook.conf"
	# PostgreSQL, no DUMP_DIR: not at a predictable name in $TMPDIR
	plant_links "$T/tmp" attacker pg
	TMPDIR=$T/tmp hook_told 'DBCLOSED postgresql://%s@127.0.0.1:%s/attacker' "$PG_ROLE" "$OML2_PG_PORT"
	no_stolen
	local d f
	d=$(ls -d "$T"/tmp/oml2-dumps.??????)
	[ "$(stat -c %a "$d")" = 700 ]
	f=$(ls "$d"/attacker.*.pg.sql)
	[[ "${f##*/}" =~ ^attacker\.[0-9]{8}T[0-9]{6}\.pg\.sql$ ]]
	grep -qxF "dumped postgresql://$PG_ROLE@127.0.0.1:$OML2_PG_PORT/attacker to $f" "$T/hook.err"
	# DUMP_DIR shared with others: links there are not followed
	printf 'DUMP_DIR=%s\n' "$T/shared" >"$T/hook.conf"
	plant_links "$T/shared" attacker pg
	hook_told 'DBCLOSED postgresql://%s@127.0.0.1:%s/attacker' "$PG_ROLE" "$OML2_PG_PORT"
	no_stolen
	f=$(find "$T/shared" -name 'attacker.*.pg.sql' -type f)
	[[ "${f##*/}" =~ ^attacker\.[0-9]{8}T[0-9]{6}-2\.pg\.sql$ ]]
	# SQLite, next to the database, in a directory whose name a shell
	# would read as code
	d="$T/d ir'\$(touch pwned)\`x\`"
	mkdir -m 1777 "$d"
	sqlite "$d/exp.sq3" 'CREATE TABLE t (a); INSERT INTO t VALUES (42)'
	: >"$T/hook.conf"
	plant_links "$d" exp sqlite
	hook_told 'DBCLOSED file:%s/exp.sq3' "$d"
	no_stolen
	f=$(find "$d" -name 'exp.*.sqlite.sql' -type f)
	[[ "${f##*/}" =~ ^exp\.[0-9]{8}T[0-9]{6}-2\.sqlite\.sql$ ]]
	grep -q 'INSERT INTO t VALUES(42)' "$f"
	[ -f "$T/irods/${f##*/}" ]
	# a database named like an option, or not by an absolute path
	: >"$d/-x.sq3"
	hook_told 'DBCLOSED file:%s/-x.sq3' "$d"
	hook_told 'DBCLOSED file:exp.sq3'
	grep -qxF "not an experiment name: -x; not dumped" "$T/hook.err"
	grep -qxF "not an absolute path: file:exp.sq3; not dumped" "$T/hook.err"
	# nothing ran, nothing is left behind
	[ ! -e pwned ]
	[ ! -e "$d/pwned" ]
	[ -z "$(find "$T" -name '.oml2-dump.*')" ]
	[ "$(grep -c . "$T/iput.args")" = 3 ]
}
