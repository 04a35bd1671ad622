#!/usr/bin/env bats
# Real client streams store what the original server stored.

load helpers

replay() {
	"$OMLSEND" -q -r "$BATS_TEST_DIRNAME/data/$1.oml" "127.0.0.1:$PORT"
	if [ "$BACKEND" = postgresql ]; then
		wait_log "database postgresql:.*/$1 closed"
		pg_same_as_original "$1" "$BATS_TEST_DIRNAME/data/$1.original.sql"
		return
	fi
	wait_log "database file:.*/$1.sq3 closed"
	same_as_original "$DATA/$1.sq3" "$BATS_TEST_DIRNAME/data/$1.original.sql"
}

@test "liboml2 binary capture stores what the original stored" {
	start_server
	replay lib_bin_simple10
}

@test "liboml2 text capture stores what the original stored" {
	start_server
	replay lib_txt_simple10
}

@test "oml4py capture stores what the original stored" {
	start_server
	replay py_example
}

@test "OML4R capture, with metadata tuples, stores what the original stored" {
	start_server
	replay r_example
}

@test "the captures' oml_ts_server is receive time minus the start time" {
	start_server
	local before
	before=$(date +%s)
	replay lib_txt_simple10
	run q lib_txt_simple10 "SELECT CASE WHEN min(oml_ts_server) >= $before - 1795527379 - 1 AND max(oml_ts_server) <= $(date +%s) - 1795527379 + 1 THEN 1 ELSE 0 END FROM omlgen_simple"
	[ "$output" = 1 ]
}
