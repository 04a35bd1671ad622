# A throwaway PostgreSQL cluster for the tests (Debian 12: PostgreSQL 15).
#
# Loaded by t/helpers.bash when OML2_BACKEND=postgresql.  The cluster runs
# on loopback on a free port, as the unprivileged user omlpg (when the
# suite runs as root), from a temporary directory; the suite administers it
# as the superuser omlpg over a Unix socket in that directory.  The server
# under test logs in over TCP with a password as PG_ROLE, a role with
# CREATEDB and nothing more.
#
# One cluster per bats file (setup_file/teardown_file), or one for a whole
# run:  bash t/pg.bash run CMD...  starts it, exports its coordinates and
# runs CMD (the Makefile's test-pg does this); bats files then use it.
# Before each test every experiment database is dropped, so that each test
# starts from an empty cluster, as it does from an empty data directory.

# The newest installed server binaries, wherever Debian put them.
if [ -z "${PG_BIN:-}" ]; then
	for PG_BIN in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) ""; do
		[ -x "$PG_BIN/initdb" ] && break
	done
	: "${PG_BIN:=/usr/lib/postgresql/15/bin}"
fi
# useradd and runuser are in sbin, which a user's PATH lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
PG_OSUSER=omlpg
PG_ADMIN=omlpg			# the bootstrap superuser
PG_ROLE=oml2test		# what the server logs in as
PG_NOCREATE=oml2nocreate	# a role without CREATEDB

pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u "$PG_OSUSER" -- "$@")
	else
		"$@"
	fi
}

# As free_port in helpers.bash (this file also runs alone): a port below
# the range of ephemeral ports that nobody uses now.
pg_free_port() {
	local lo p i
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
	[ "$lo" -gt 20000 ] || lo=32768
	for i in $(seq 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
		[ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || { echo "$p"; return 0; }
	done
	echo "no free port below $lo in 100 tries" >&2
	return 1
}

# Start a cluster and export OML2_PG_DIR, OML2_PG_PORT and OML2_PG_PASS.
pg_cluster_start() {
	local dir port i
	if [ "$(id -u)" -eq 0 ] && ! id "$PG_OSUSER" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin \
		    "$PG_OSUSER" 2>/dev/null || id "$PG_OSUSER" >/dev/null || return 1
	fi
	dir=$(mktemp -d /tmp/oml2pg.XXXXXX)
	chmod 755 "$dir"
	[ "$(id -u)" -eq 0 ] && chown "$PG_OSUSER" "$dir"
	pg_as "$PG_BIN/initdb" -D "$dir/data" -U "$PG_ADMIN" -A trust -E UTF8 \
	    --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		return 1
	}
	cat >"$dir/data/pg_hba.conf" <<-EOF
	local all all trust
	host all $PG_ADMIN 127.0.0.1/32 reject
	host all all 127.0.0.1/32 scram-sha-256
	EOF
	for i in 1 2 3 4 5; do
		port=$(pg_free_port)
		OML2_PG_DIR=$dir OML2_PG_PORT=$port pg_start && break
		port=
	done
	[ -n "$port" ] || { cat "$dir/pg.log" >&2; return 1; }
	export OML2_PG_DIR=$dir OML2_PG_PORT=$port
	export OML2_PG_PASS="pw-$RANDOM-$RANDOM-$RANDOM"
	pg_query postgres "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$OML2_PG_PASS'" &&
	pg_query postgres "CREATE ROLE $PG_NOCREATE LOGIN PASSWORD '$OML2_PG_PASS'"
}

# Start and stop the cluster's server (the tests of outages use these).
pg_start() {
	pg_as "$PG_BIN/pg_ctl" -D "$OML2_PG_DIR/data" -l "$OML2_PG_DIR/pg.log" \
	    -w -t 30 -o "-c listen_addresses=127.0.0.1 -c port=$OML2_PG_PORT -c unix_socket_directories=$OML2_PG_DIR -c fsync=off -c full_page_writes=off -c max_connections=200" \
	    start >/dev/null
}

pg_stop() {
	pg_as "$PG_BIN/pg_ctl" -D "$OML2_PG_DIR/data" -m fast -w stop >/dev/null
}

pg_cluster_stop() {
	[ -n "${OML2_PG_DIR:-}" ] || return 0
	pg_stop 2>/dev/null
	rm -rf "$OML2_PG_DIR"
}

# psql as the superuser, on database $1: pg_psql DB [PSQL-ARG...]
pg_psql() {
	local db=$1
	shift
	psql -XAtq -v ON_ERROR_STOP=1 -h "$OML2_PG_DIR" -p "$OML2_PG_PORT" \
	    -U "$PG_ADMIN" -d "$db" "$@"
}

# The backend-neutral helpers of helpers.bash use these two.
pg_server_args() {
	echo -b postgresql --pg-host=127.0.0.1 --pg-port="$OML2_PG_PORT" \
	    --pg-user="$PG_ROLE" --pg-pass="$OML2_PG_PASS"
}

# SQL as the superuser; rows as a|b|c, no headers, NULL as empty:
# pg_query DB SQL
pg_query() {
	pg_psql "$1" -c "$2"
}

# Does experiment $1's database hold what the original server stored in
# SQLite dump $2?  The same tables with the same columns, and the same rows
# (by oml_tuple_id) in every column but oml_ts_server, each compared as
# its type reads back: integers exactly, doubles to 1e-12 (NaN is NULL in
# SQLite), booleans as 0/1, blobs as hex.  The PostgreSQL rows are copied
# into a scratch SQLite database beside the original's to compare them.
pg_same_as_original() {
	local exp=$1 orig=$T/orig.$RANDOM.sq3 t a b cols c ty cond
	sqlite "$orig" <"$2"
	a=$(sqlite "$orig" "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	b=$(pg_query "$exp" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
	[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; return 1; }
	for t in $a; do
		a=$(sqlite "$orig" "SELECT group_concat(name, ',') FROM pragma_table_info('$t')")
		b=$(pg_query "$exp" "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '$t'")
		[ "$a" = "$b" ] || { echo "table $t: columns $b, not $a" >&2; return 1; }
		[ "$t" = _senders ] && cols=name || cols=oml_tuple_id
		pg_query "$exp" "COPY (SELECT * FROM \"$t\" ORDER BY $cols) TO STDOUT WITH (FORMAT csv, HEADER, NULL '\N')" >"$T/pg.csv"
		sqlite "$orig" ".import --csv $T/pg.csv \"pg_$t\""
		cond=
		while IFS='|' read -r c ty; do
			[ "$c" = oml_ts_server ] && continue
			local p="NULLIF(p.\"$c\", '\N')" o="o.\"$c\""
			case $ty in
			boolean) c="(CASE $p WHEN 't' THEN 1 WHEN 'f' THEN 0 END) IS $o" ;;
			double*) c="(($p IS NULL OR $p = 'NaN') AND $o IS NULL) OR abs(CAST($p AS REAL) - $o) <= 1e-12 * abs($o)" ;;
			bytea) c="(CASE WHEN $p IS NULL THEN NULL ELSE upper(substr($p, 3)) END) IS (CASE WHEN $o IS NULL THEN NULL ELSE hex($o) END)" ;;
			integer|bigint|smallint) c="CAST($p AS INTEGER) IS $o" ;;
			*) c="$p IS $o" ;;
			esac
			cond="$cond AND ($c)"
		done < <(pg_query "$exp" "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '$t' ORDER BY ordinal_position")
		[ "$t" = _senders ] && c=name || c=oml_tuple_id
		a=$(sqlite "$orig" "SELECT (SELECT count(*) FROM \"$t\") || ' ' || (SELECT count(*) FROM \"pg_$t\") || ' ' || (SELECT count(*) FROM \"$t\" o JOIN \"pg_$t\" p ON CAST(p.$c AS TEXT) = CAST(o.$c AS TEXT) WHERE 1 $cond)")
		set -- $a
		[ "$1" = "$2" ] && [ "$1" = "$3" ] || {
			echo "table $t: $1 rows in the original, $2 stored, $3 equal" >&2
			return 1
		}
	done
}

# Every test starts from a cluster with no experiment database.
pg_setup() {
	[ -n "${OML2_PG_PORT:-}" ] || {
		echo "no PostgreSQL cluster (see t/pg.bash)" >&2
		return 1
	}
	pg_psql postgres >/dev/null <<-'EOF'
	SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database
	    WHERE datname NOT IN ('postgres', 'template0', 'template1') \gexec
	EOF
}

# One cluster per bats file, unless the whole run has one.
if [ -z "${OML2_PG_PORT:-}" ]; then
	setup_file() {
		pg_cluster_start
	}
	teardown_file() {
		pg_cluster_stop
	}
fi

# bash t/pg.bash run CMD...: one cluster around CMD.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	[ "${1:-}" = run ] && [ $# -ge 2 ] || {
		echo "usage: bash t/pg.bash run CMD..." >&2
		exit 2
	}
	shift
	pg_cluster_start || exit 1
	trap pg_cluster_stop EXIT
	rc=0
	"$@" || rc=$?
	exit "$rc"
fi

# pg_dump's text of experiment $1, without the random \restrict key lines
# that make two dumps of the same database differ.
pg_dump_exp() {
	pg_dump -h "$OML2_PG_DIR" -p "$OML2_PG_PORT" -U "$PG_ADMIN" "$1" |
	    grep -v '^\\\(un\)\{0,1\}restrict '
}

# Restore dump $1 into a new database and print that as pg_dump_exp does.
pg_restore_fresh() {
	local db=restored_$RANDOM
	pg_query postgres "CREATE DATABASE $db" &&
	    pg_psql "$db" -f "$1" >/dev/null &&
	    pg_dump_exp "$db"
}
