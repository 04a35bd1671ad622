#!/usr/bin/env bats
# oml2-import: OMSP files, as t/omlsend (like any client) writes them with
# file:PATH, stored as if their clients had connected; cut files, files
# imported twice, the experiment's lock.  Backend-neutral: `make test-pg`
# runs it again against PostgreSQL.

load helpers

# The importer with this backend's storage options, logging to $T/imp.log.
imp() {
	if [ "$BACKEND" = postgresql ]; then
		"$OML2_IMPORT" -d 3 --logfile="$T/imp.log" $(backend_args) "$@"
	else
		"$OML2_IMPORT" -d 3 --logfile="$T/imp.log" -D "$DATA" "$@"
	fi
}

tables_of() {
	if [ "$BACKEND" = postgresql ]; then
		q "$1" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
	else
		q "$1" "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"
	fi
}

# Table $2's columns but oml_ts_server, quoted, comma-separated.
columns_of() {
	if [ "$BACKEND" = postgresql ]; then
		q "$1" "SELECT string_agg('\"' || column_name || '\"', ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '$2' AND column_name <> 'oml_ts_server'"
	else
		q "$1" "SELECT group_concat('\"' || name || '\"', ',') FROM pragma_table_info('$2') WHERE name <> 'oml_ts_server'"
	fi
}

# Experiments $1 and $2 hold the same tables with the same columns and the
# same rows in every column but oml_ts_server (the time of storing).  In
# _experiment_metadata, the import's own note is left out, and with it the
# row ids that it shifts.
same_rows() {
	local a b t cols where order
	a=$(tables_of "$1")
	b=$(tables_of "$2")
	[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; return 1; }
	for t in $a; do
		cols=$(columns_of "$1" "$t")
		[ "$cols" = "$(columns_of "$2" "$t")" ] || {
			echo "table $t: columns differ" >&2
			return 1
		}
		where=
		order=oml_tuple_id
		if [ "$t" = _experiment_metadata ]; then
			cols=${cols#\"oml_tuple_id\",}
			where="WHERE key IS NULL OR key NOT LIKE 'import\\_sha256\\_%' ESCAPE '\\'"
		elif [ "$t" = _senders ]; then
			order=name
		fi
		a=$(q "$1" "SELECT $cols FROM \"$t\" $where ORDER BY $order")
		b=$(q "$2" "SELECT $cols FROM \"$t\" $where ORDER BY $order")
		[ -n "$a" ] || { echo "table $t is empty" >&2; return 1; }
		[ "$a" = "$b" ] || {
			echo "table $t differs:" >&2
			diff <(echo "$a") <(echo "$b") >&2
			return 1
		}
	done
}

SCHEMAS=(-s "1 gen n:int32 x:double s:string"
    -s "2 types u:uint32 l:int64 ul:uint64 g:guid b:bool bl:blob v:[double] vb:[bool]")

# A client's file, the same client connecting, and the file imported into
# another experiment (--domain): the two experiments are alike.
import_like_a_client() {
	"$OMLSEND" -q "$@" -e direct -S node1 -T 1700000000 -n 30 "${SCHEMAS[@]}" \
	    file:"$T/node1.oml"
	start_server
	"$OMLSEND" -q -r "$T/node1.oml" "127.0.0.1:$PORT"
	wait_rows direct gen 30
	wait_rows direct types 30
	run imp --domain imported "$T/node1.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/node1.oml: imported: 60 rows stored, 0 dropped" ]
	same_rows direct imported
	# the note the import left: the file's SHA-256, what it stored
	run q imported "SELECT value FROM _experiment_metadata WHERE key = 'import_sha256_$(sha256sum <"$T/node1.oml" | cut -d ' ' -f 1)'"
	[[ "$output" == "stored 60 rows, 0 dropped, at 20"*"Z from $T/node1.oml" ]]
}

@test "a text file a client wrote is stored as the client connecting would have stored it" {
	import_like_a_client -t
	grep -q 'ready: imported:node1:omlsend (text)' "$T/imp.log"
}

@test "a binary file a client wrote is stored as the client connecting would have stored it" {
	import_like_a_client -b
	grep -q 'ready: imported:node1:omlsend (binary)' "$T/imp.log"
}

@test "a text file cut in the middle of its last line stores every line before it and says what it left out" {
	local last
	"$OMLSEND" -q -e cut -n 20 file:"$T/full.oml"
	head -c -5 "$T/full.oml" >"$T/cut.oml"
	last=$(tail -n 1 "$T/full.oml" | wc -c)
	run imp "$T/cut.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/cut.oml: cut: 19 rows stored, 0 dropped; the last $((last - 5)) bytes, an unfinished text line, not stored" ]
	grep -q "cut.oml: the file ends in the middle of a text line: its last $((last - 5)) bytes are not stored" "$T/imp.log"
	run q cut "SELECT count(*), max(oml_seq) FROM gen"
	[ "$output" = "19|19" ]
}

@test "a binary file cut in the middle of a packet stores every packet before it and says what it left out" {
	local pkt
	"$OMLSEND" -q -b -e cutb -T 1700000000 -n 20 file:"$T/full.bin"
	"$OMLSEND" -q -b -e cutb -T 1700000000 -n 19 file:"$T/less.bin"
	pkt=$(($(stat -c %s "$T/full.bin") - $(stat -c %s "$T/less.bin")))
	head -c -3 "$T/full.bin" >"$T/cut.bin"
	run imp "$T/cut.bin"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/cut.bin: cutb: 19 rows stored, 0 dropped; the last $((pkt - 3)) bytes, an unfinished binary packet, not stored" ]
	grep -q "cut.bin: the file ends in the middle of a binary packet" "$T/imp.log"
	run q cutb "SELECT count(*), max(oml_seq) FROM gen"
	[ "$output" = "19|19" ]
}

@test "importing a file again is refused, and --force stores it again under a note in the log" {
	"$OMLSEND" -q -e twice -n 10 file:"$T/a.oml"
	run imp "$T/a.oml"
	[ "$status" -eq 0 ]
	# the same bytes under another name are the same file
	cp "$T/a.oml" "$T/b.oml"
	run imp "$T/a.oml" "$T/b.oml"
	[ "$status" -eq 2 ]
	[ "${lines[0]}" = "$T/a.oml: twice: imported before, not stored again" ]
	[ "${lines[1]}" = "$T/b.oml: twice: imported before, not stored again" ]
	grep -q "b.oml: imported into twice before (stored 10 rows, 0 dropped, at .* from $T/a.oml); not imported again (--force imports it again)" "$T/imp.log"
	run q twice "SELECT count(*) FROM gen"
	[ "$output" = 10 ]
	run imp --force "$T/b.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/b.oml: twice: 10 rows stored, 0 dropped" ]
	grep -q "b.oml: imported into twice before (stored 10 rows, 0 dropped, at .* from $T/a.oml); storing it again (--force)" "$T/imp.log"
	run q twice "SELECT count(*), count(DISTINCT oml_seq) FROM gen"
	[ "$output" = "20|10" ]
	run q twice "SELECT value FROM _experiment_metadata WHERE key LIKE 'import%'"
	[[ "$output" == "stored 10 rows, 0 dropped, at "*" from $T/b.oml" ]]
	# An import that was killed left its note at "started": the file
	# is refused as perhaps partly stored.
	"$OMLSEND" -q -e twice -S killed -n 10 file:"$T/c.oml"
	q_admin twice "INSERT INTO _experiment_metadata (key, value) VALUES ('import_sha256_$(sha256sum <"$T/c.oml" | cut -d ' ' -f 1)', 'started at 2026-01-01T00:00:00Z from $T/c.oml')"
	run imp "$T/c.oml"
	[ "$status" -eq 2 ]
	grep -q "c.oml: an import of this file into twice did not finish (started at 2026-01-01T00:00:00Z from $T/c.oml): some of its rows may be stored; not imported (--force imports it again)" "$T/imp.log"
}

@test "a file whose header names no experiment is stored where --domain says" {
	printf 'protocol: 5\nstart-time: 1700000000\nsender-id: n\nschema: 1 m v:int32\ncontent: text\n\n0.5\t1\t1\t7\n' >"$T/nodomain.oml"
	run imp "$T/nodomain.oml"
	[ "$status" -eq 1 ]
	[ "$output" = "$T/nodomain.oml: not imported (see the log)" ]
	grep -q 'nodomain.oml: end of headers before an experiment id; not imported (--domain names one)' "$T/imp.log"
	run imp --domain chosen "$T/nodomain.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/nodomain.oml: chosen: 1 rows stored, 0 dropped" ]
	run q chosen "SELECT oml_ts_client, v FROM m"
	[ "$output" = "0.5|7" ]
}

@test "a file that breaks the protocol keeps the rows before the break, and the import says so" {
	"$OMLSEND" -q -e broken -n 4 file:"$T/broken.oml"
	printf '0.9\t0\t5\t.\tschema\t2 bad x:nosuchtype\n0.95\t1\t6\t6\t6.25\trow-6\n' >>"$T/broken.oml"
	run imp "$T/broken.oml"
	[ "$status" -eq 1 ]
	[ "$output" = "$T/broken.oml: broken: 4 rows stored, 0 dropped; the rest not imported (see the log)" ]
	grep -q 'protocol error: bad schema "2 bad x:nosuchtype"' "$T/imp.log"
	run q broken "SELECT count(*) FROM gen"
	[ "$output" = 4 ]
	run q broken "SELECT value FROM _experiment_metadata WHERE key LIKE 'import%'"
	[[ "$output" == "failed after 4 rows, 0 dropped, at "* ]]
}

# Is the file locked as a server or oml2-import locks it?
locked() {
	! flock -n -x "$1" true
}

@test "an import and a server never write one SQLite experiment at once" {
	[ "$BACKEND" = sqlite ] || skip "SQLite only"
	local holder
	start_server
	bg "$OMLSEND" -q -e busy -n 5 -H 30000 "127.0.0.1:$PORT"
	holder=$BG
	wait_rows busy gen 5
	"$OMLSEND" -q -e busy -S filed -n 3 file:"$T/f.oml"
	run imp "$T/f.oml"
	[ "$status" -eq 1 ]
	[ "$output" = "$T/f.oml: not imported (see the log)" ]
	grep -q "$DATA/busy.sq3 is in use by another process" "$T/imp.log"
	kill "$holder"
	wait_log "database file:$DATA/busy.sq3 closed"
	run imp "$T/f.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/f.oml: busy: 3 rows stored, 0 dropped" ]
	# The other way round: while the file is locked as the import locks
	# it, the server refuses the experiment's clients.
	bg flock -x -o "$DATA/busy.sq3" sleep 30
	holder=$BG
	wait_for 10 locked "$DATA/busy.sq3"
	send -e busy -S late -n 2 || true
	wait_log "$DATA/busy.sq3 is in use by another process"
	wait_log 'cannot open the experiment.s database'
	pkill -TERM -P "$holder"
	wait_gone "$holder"
	run q busy "SELECT count(*) FROM gen"
	[ "$output" = 8 ]
}

@test "an import into PostgreSQL runs beside a server writing the same experiment" {
	[ "$BACKEND" = postgresql ] || skip "PostgreSQL only (make test-pg)"
	start_server
	bg "$OMLSEND" -q -e shared -S live -n 5 -H 30000 "127.0.0.1:$PORT"
	local holder=$BG
	wait_rows shared gen 5
	"$OMLSEND" -q -e shared -S filed -n 7 file:"$T/f.oml"
	run imp "$T/f.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/f.oml: shared: 7 rows stored, 0 dropped" ]
	run q shared "SELECT name, id FROM _senders ORDER BY id"
	[ "$output" = "$(printf 'live|1\nfiled|2')" ]
	run q shared "SELECT oml_sender_id, count(*) FROM gen GROUP BY 1 ORDER BY 1"
	[ "$output" = "$(printf '1|5\n2|7')" ]
	kill "$holder"
}

@test "run as root with --user, an import opens its files first, then reads and stores them as that user" {
	need_root
	[ "$BACKEND" = sqlite ] || skip "SQLite only"
	ensure_test_user
	chown "$T_USER" "$DATA"
	"$OMLSEND" -q -e owned -n 6 file:"$T/root-only.oml"
	chmod 0600 "$T/root-only.oml"
	run imp --user="$T_USER" "$T/root-only.oml"
	[ "$status" -eq 0 ]
	[ "$output" = "$T/root-only.oml: owned: 6 rows stored, 0 dropped" ]
	[ "$(stat -c %U "$DATA/owned.sq3")" = "$T_USER" ]
	! grep 'running as root' "$T/imp.log" || return 1
}
