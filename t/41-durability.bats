#!/usr/bin/env bats
# Durability is not traded for speed: what a reader has seen committed
# survives kill -9 of the experiment's process, and the file stays sound.

load helpers

# committed rows of table gen, as a reader in another process sees them
committed() {
	sq "$1" "SELECT count(*) FROM gen" 2>/dev/null
}

@test "rows committed before kill -9 of the child are still there, in an intact database" {
	start_server
	# 20 bursts of 5,000 rows, 100 ms apart: the kill lands mid-stream
	bg send -b -e dur -n 100000 -B 5000 -p 100
	local sender=$BG seen pid
	wait_for 10 eval '[ "$(committed dur)" -gt 0 ]'
	seen=$(committed dur)
	pid=$(exp_pid dur)
	kill -0 "$sender"	# still streaming
	kill -KILL "$pid"
	wait_log "experiment dur process $pid killed by signal 9"
	run sq dur "PRAGMA integrity_check"
	[ "$output" = ok ]
	# nothing a reader saw is lost, and no row is torn or missing
	run sq dur "SELECT count(*) >= $seen, count(*) < 100000, min(n) = 1,
	    max(n) = count(*), sum(x = n + 0.25) = count(*),
	    sum(s = 'row-' || n) = count(*) FROM gen"
	[ "$output" = "1|1|1|1|1|1" ]
	# a fresh child takes the database over and goes on
	local before
	before=$(committed dur)
	send -e dur -n 10 -S again
	wait_rows dur gen $((before + 10))
	[ "$(sq dur 'PRAGMA integrity_check')" = ok ]
}

@test "a row SQLite refuses inside a batch of inserts costs only itself, and is counted as dropped" {
	start_server
	send -e refuse -n 1
	wait_log "database file:$DATA/refuse.sq3 closed: 1 rows stored, 0 dropped"
	# what an operator might add: a trigger that refuses some rows
	sqlite "$DATA/refuse.sq3" "CREATE TRIGGER not13 BEFORE INSERT ON gen
	    WHEN NEW.n = 13 BEGIN SELECT RAISE(ABORT, 'not13'); END"
	send -e refuse -n 400 -c 3
	wait_log "database file:$DATA/refuse.sq3 closed: 1197 rows stored, 3 dropped"
	[ "$(sq refuse 'SELECT count(*) FROM gen')" = $((1 + 3 * 399)) ]
	[ "$(sq refuse 'SELECT count(*) FROM gen WHERE n = 13')" = 0 ]
	# the rows beside it in its batch are there, from every sender
	[ "$(sq refuse 'SELECT count(DISTINCT oml_sender_id) FROM gen WHERE n IN (12, 14)')" = 3 ]
	[ "$(grep -c 'refuse.sq3: insert into gen: not13' "$LOG")" -eq 3 ]
}

@test "during a long ingest the write-ahead log is copied into the database by the checkpointer, not left to grow" {
	start_server
	# about 35 MB of WAL: past the 16 MB at which the checkpointer
	# thread starts copying, short of the 64 MB at which the writer
	# would checkpoint itself
	bg send -b -e ck -n 600000 -H 30000
	wait_rows ck gen 600000 30
	# the client still holds the experiment open: no close-time
	# checkpoint has run; what is in the database file came from the
	# thread
	wait_for 20 eval '[ "$(stat -c %s "$DATA/ck.sq3")" -gt $((16 << 20)) ]'
	local wal
	wal=$(stat -c %s "$DATA/ck.sq3-wal")
	echo "database $(stat -c %s "$DATA/ck.sq3") bytes, WAL $wal bytes" >&3
	[ "$wal" -lt $((64 << 20)) ]
	[ "$(sq ck 'PRAGMA integrity_check')" = ok ]
}
