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
