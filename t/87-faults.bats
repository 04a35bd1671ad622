#!/usr/bin/env bats
# Faults: processes killed mid-stream, a disk that fills up, a reader that
# holds the database.  Committed rows survive, nothing is left running,
# and a full disk costs time, not rows.

load helpers

# The data directory may be a tmpfs here: unmount it after the test.
eval "helpers_teardown() $(declare -f teardown | tail -n +2)"
teardown() {
	if [ -n "${TMPFS:-}" ]; then
		umount -l "$TMPFS" 2>/dev/null || true
	fi
	helpers_teardown
}

# A client that streams rows for ever: endless EXP
endless() {
	bg bash -c "{ printf 'protocol: 5\ndomain: $1\nsender-id: endless\nschema: 1 gen n:int32 x:double s:string\n\n'; yes \$'0.1\t1\t1\t1\t0.5\tx'; } 2>/dev/null >/dev/tcp/127.0.0.1/$PORT"
}

count() {
	q "$1" "SELECT count(*) FROM gen" 2>/dev/null || echo 0
}

# Has process $1 exited?  (An orphan's zombie waits for init to reap it.)
exited() {
	! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

@test "kill -9 of a child mid-stream keeps every committed row and an intact database" {
	start_server
	bg send -e k9 -n 200000 -B 1000 -p 20
	local client=$BG committed pid n
	wait_for 20 eval '[ "$(count k9)" -ge 5000 ]'
	committed=$(count k9)
	pid=$(exp_pid k9)
	kill -KILL "$pid"
	wait_log "experiment k9 process $pid killed by signal 9"
	kill "$client" 2>/dev/null || true
	[ "$(q k9 'PRAGMA integrity_check')" = ok ]
	n=$(count k9)
	echo "rows committed before the kill: $committed, found after: $n" >&3
	[ "$n" -ge "$committed" ]
	# what survived is exactly the first n rows the client sent
	[ "$(q k9 'SELECT max(n), count(DISTINCT n) FROM gen')" = "$n|$n" ]
	# and the experiment goes on in a fresh process
	send -e k9 -n 5 -S again
	wait_q k9 "SELECT count(*) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'again')" 5
	[ "$(exp_pid k9)" != "$pid" ]
}

@test "the master dying mid-stream: every child commits and exits, even beside a client that never stops" {
	start_server
	bg send -e orphan1 -n 100000 -B 2000 -p 20 -H 30000
	endless orphan2
	wait_for 20 eval '[ "$(count orphan1)" -gt 0 ] && [ "$(count orphan2)" -gt 0 ]'
	local children p t0
	children=$(child_pids)
	[ "$(echo "$children" | wc -w)" -ge 4 ]	# two experiments, two spares
	t0=$(date +%s%N)
	kill -KILL "$SERVER_PID"
	wait "$SERVER_PID" || true
	SERVER_PID=
	for p in $children; do
		wait_for 10 exited "$p"
	done
	echo "all children gone $(( ($(date +%s%N) - t0) / 1000000 )) ms after the master" >&3
	[ "$(grep -c 'exp/orphan[12]: the master went away: finishing' "$LOG")" -eq 2 ]
	for p in orphan1 orphan2; do
		[ "$(q $p 'PRAGMA integrity_check')" = ok ]
		# every row the child counted as stored is in the database
		wait_log "database file:.*/$p.sq3 closed: [0-9]+ rows stored, 0 dropped"
		[ "$(count $p)" = "$(sed -n "s/.*\/$p.sq3 closed: \([0-9]*\) rows stored.*/\1/p" "$LOG")" ]
	done
}

@test "a full disk pauses the experiment's clients, and every row is stored once space returns" {
	need_root
	TMPFS=$DATA
	mount -t tmpfs -o size=256k,mode=0755 oml2test "$TMPFS"
	start_server
	# 20000 rows (about a megabyte) over two seconds do not fit in 256 KiB
	bg send -e full -n 20000 -B 500 -p 50
	local big=$BG
	wait_log 'ERROR exp/full: .*/full.sq3: cannot be written \(database or disk is full\)'
	wait_log 'not reading from 1 client'
	# the operator sees why
	wait_cj "stalled disk full" 10 '.experiments[0] | .stall + " " + .stall_cause' list
	ctl list | grep -E '^full .* stalled [0-9.]+s \(disk full\) '
	# a client arriving meanwhile waits too
	bg send -e full -n 100 -S during
	local during=$BG
	wait_log 'ready: full:during:'
	kill -0 "$SERVER_PID"
	kill -0 "$(exp_pid full)"
	kill -0 "$big"	# held back by TCP, not refused
	log_lacks 'tuple dropped|connection closed|killed by signal'
	# space returns
	mount -o remount,size=64m "$TMPFS"
	wait_log 'exp/full: .*/full.sq3: written again after [0-9.]+ s' 20
	wait "$big"
	wait "$during"
	wait_q full "SELECT count(*) FROM gen" 20100 20
	# rows arriving after the recovery are stored as usual
	send -e full -n 50 -S after
	wait_q full "SELECT count(*) FROM gen" 20150
	[ "$(q full "SELECT count(DISTINCT n) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'omlsend')")" = 20000 ]
	[ "$(q full 'PRAGMA integrity_check')" = ok ]
	grep 'exp/full:.*written again' "$LOG" | sed 's/.*: written/written/' >&3
}

@test "stopped while the disk is still full, the server says how many rows are lost" {
	need_root
	TMPFS=$DATA
	mount -t tmpfs -o size=256k,mode=0755 oml2test "$TMPFS"
	start_server
	bg send -e full -n 30000 -B 2000 -p 10
	wait_log 'cannot be written \(database or disk is full\)'
	kill -TERM "$SERVER_PID"
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ]
	log_has 'ERROR exp/full: .*/full.sq3: closing while it cannot be written: [0-9]+ rows received since the last commit are lost'
	[ "$(sqlite "$DATA/full.sq3" 'PRAGMA integrity_check')" = ok ]
	# the lost rows are counted as dropped, not as stored
	local lost counts
	lost=$(sed -n 's/.*closing while it cannot be written: \([0-9]*\) rows.*/\1/p' "$LOG")
	counts=$(sed -n 's/.*full.sq3 closed: \([0-9]*\) rows stored, \([0-9]*\) dropped$/\1 \2/p' "$LOG")
	[ "$lost" -gt 0 ]
	[ "$counts" = "$(count full) $lost" ]
}

@test "another writer holding the database pauses the clients; rows SQLite then refuses are counted once" {
	start_server
	# a client keeps the experiment open, and its file in WAL mode
	bg "$OMLSEND" -q -e lk -n 1 -S holder -H 30000 "127.0.0.1:$PORT"
	local holder=$BG
	wait_q lk "SELECT count(*) FROM gen" 1
	# another writer takes the write lock, and adds a trigger refusing
	# the rows with n % 10 = 3
	mkfifo "$T/wq"
	bg bash -c "sqlite3 -batch '$DATA/lk.sq3' <'$T/wq' >'$T/wq.out' 2>&1"
	exec 5>"$T/wq"
	echo "BEGIN IMMEDIATE; CREATE TRIGGER not3 BEFORE INSERT ON gen WHEN NEW.n % 10 = 3 BEGIN SELECT RAISE(ABORT, 'not3'); END; SELECT 'locked';" >&5
	wait_for 10 grep -qx locked "$T/wq.out"
	# a header and 200 rows in one write: the new sender's row finds the
	# database locked, and the rows read with it wait in the journal,
	# untried
	"$OMLSEND" -q -e lk -n 200 -S bulk "file:$T/bulk"
	bg "$OMLSEND" -q -r "$T/bulk" "127.0.0.1:$PORT"
	local bulk=$BG
	wait_log 'ERROR exp/lk: .*/lk.sq3: cannot be written \(database is locked\)'
	wait_cj "database locked" 10 '.experiments[0].stall_cause' list
	echo 'COMMIT;' >&5
	exec 5>&-
	wait_log 'exp/lk: .*/lk.sq3: written again after [0-9.]+ s'
	wait_cj "no " 10 '.experiments[0] | .stall + " " + .stall_cause' list
	wait "$bulk"
	kill "$holder"
	# each refused row was tried once, and counted as dropped once
	wait_log "database file:$DATA/lk.sq3 closed: 181 rows stored, 20 dropped"
	[ "$(q lk "SELECT count(*), count(DISTINCT n) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'bulk')")" = "180|180" ]
	[ "$(q lk 'SELECT count(*) FROM gen WHERE n % 10 = 3')" = 0 ]
	[ "$(grep -c 'lk.sq3: insert into gen: not3' "$LOG")" -eq 20 ]
	! grep -i error "$T/wq.out"
}

@test "a reader holding a read transaction during ingest costs no row and no error" {
	start_server
	bg send -e rd -n 10 -H 20000
	wait_rows rd gen 10
	mkfifo "$T/rq"
	bg bash -c "sqlite3 -batch '$DATA/rd.sq3' <'$T/rq' >'$T/rq.out' 2>&1"
	exec 5>"$T/rq"
	echo 'BEGIN; SELECT count(*) FROM gen;' >&5
	wait_for 10 grep -qx 10 "$T/rq.out"
	[ "$(q rd 'PRAGMA journal_mode')" = wal ]
	send -e rd -n 20000 -S bulk
	send -e rd -n 2000 -b -S bulkb
	wait_q rd "SELECT count(*) FROM gen" 22010
	# the reader's transaction was open all along: it still sees 10
	echo 'SELECT count(*) FROM gen;' >&5
	wait_for 10 eval '[ "$(sed -n 2p "$T/rq.out")" = 10 ]'
	echo 'COMMIT;' >&5
	exec 5>&-
	log_lacks 'WARN  exp/|ERROR'
	! grep -i error "$T/rq.out"
}
