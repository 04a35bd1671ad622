#!/usr/bin/env bats
# One tenant against the others, and against the operator: experiment
# names that would reach another's data or the hook's programs, client
# bytes that would forge log lines or drive a terminal, a log file swapped
# for a link, and experiment processes that could gain privileges.  The
# PostgreSQL and hook cases are in t/71-pg-tenant.bats.

load helpers

# A witness streams into another experiment meanwhile.
start_witness() {
	bg send -e witness -n 500 -B 50 -p 20
	WITNESS=$BG
}

check_witness() {
	wait "$WITNESS"
	wait_log 'database file:.*/witness.sq3 closed: 500 rows stored, 0 dropped'
	kill -0 "$SERVER_PID"
}

@test "experiment names that read as options, libpq settings or shell syntax are refused and create nothing" {
	start_server
	start_witness
	local name n=0
	for name in --dbname=victim -victim dbname=victim host=127.0.0.1 \
	    port=1 'victim=1' '$(touch x)' 'a;b' 'a|b' 'a*' '~x' 'a@b' \
	    'a%41' ':x' '+x' "$(printf 'caf\xc3\xa9')" "$(printf 'a\xc2\x9bb')"; do
		raw_refused 'protocol: 5\ndomain: %s\nsender-id: s\n\n' "$name"
		n=$((n + 1))
	done
	check_witness
	[ "$(grep -c 'client 127.0.0.1 port [0-9]*: .*experiment name .*; connection closed' "$LOG")" -eq "$n" ]
	log_has "experiment name contains '='; connection closed"
	log_has "experiment name does not start with a letter, a digit or '_'; connection closed"
	[ "$(ls -A "$DATA")" = witness.sq3 ]
	# what the original's clients send is still taken
	send -e exp_2011-08-09t11.52.28+10.00 -n 2
	send -e _A:b-9 -n 2
	wait_rows exp_2011-08-09t11.52.28+10.00 gen 2
	wait_rows _A:b-9 gen 2
}
