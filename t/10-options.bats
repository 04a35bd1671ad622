#!/usr/bin/env bats
# The command line: every option of the manual, and clear errors.

load helpers

@test "--help lists every option of the manual and exits 0" {
	run "$OML2_SERVER" --help
	[ "$status" -eq 0 ]
	for o in --data-dir --event-hook --listen --user --group --timeout \
	    --debug-level --logfile --backend --pg-host --pg-port --pg-user \
	    --pg-pass --pg-connect --oml-collect --usage --version --help; do
		[[ "$output" == *"$o"* ]] || { echo "missing $o"; false; }
	done
	run "$OML2_SERVER" -?
	[ "$status" -eq 0 ]
	[[ "$output" == *"--data-dir"* ]]
}

@test "--version and -v print the version" {
	run "$OML2_SERVER" --version
	[ "$status" -eq 0 ]
	[[ "$output" == *"OML Server"* ]]
	[[ "$output" == *"V1--5"* ]]
	run "$OML2_SERVER" -v
	[ "$status" -eq 0 ]
}

@test "--usage prints a brief usage message" {
	run "$OML2_SERVER" --usage
	[ "$status" -eq 0 ]
	[[ "$output" == usage:* ]]
}

@test "an unknown option is an error with a usage hint" {
	run "$OML2_SERVER" --no-such-option
	[ "$status" -ne 0 ]
	[[ "$output" == *"unknown option --no-such-option"* ]]
	[[ "$output" == *"--help"* ]]
	run "$OML2_SERVER" -Z
	[ "$status" -ne 0 ]
	[[ "$output" == *"unknown option -Z"* ]]
}

@test "a bad number is an error" {
	run "$OML2_SERVER" -D "$DATA" -t soon
	[ "$status" -ne 0 ]
	[[ "$output" == *"--timeout"* ]]
	run "$OML2_SERVER" -D "$DATA" -d 5
	[ "$status" -ne 0 ]
	[[ "$output" == *"--debug-level"* ]]
	run "$OML2_SERVER" -D "$DATA" -d 0
	[ "$status" -ne 0 ]
	run "$OML2_SERVER" -D "$DATA" --max-clients=-3
	[ "$status" -ne 0 ]
}

@test "a missing argument is an error" {
	run "$OML2_SERVER" -D
	[ "$status" -ne 0 ]
	[[ "$output" == *"needs an argument"* ]]
	run "$OML2_SERVER" --logfile
	[ "$status" -ne 0 ]
	[[ "$output" == *"needs an argument"* ]]
}

@test "--group without --user is an error" {
	run "$OML2_SERVER" -D "$DATA" --group=nogroup
	[ "$status" -ne 0 ]
	[[ "$output" == *"--group needs --user"* ]]
}

@test "a missing data directory is an error at start" {
	run "$OML2_SERVER" -D "$T/nonexistent" -l 127.0.0.1:0
	[ "$status" -ne 0 ]
	[[ "$output" == *"nonexistent"* ]]
}

@test "an unknown backend is an error" {
	run "$OML2_SERVER" -D "$DATA" -b mysql
	[ "$status" -ne 0 ]
	[[ "$output" == *"unknown backend"* ]]
}

@test "OML_SQLITE_DIR chooses the data directory and -D overrides it" {
	mkdir "$T/envdir"
	run_server env OML_SQLITE_DIR="$T/envdir" "$OML2_SERVER" -l 127.0.0.1:0 \
	    --logfile="$LOG"
	log_has "in $T/envdir"
	send -e envexp -n 3
	wait_for 10 test -f "$T/envdir/envexp.sq3"
	stop_server
	: >"$LOG"
	OML_SQLITE_DIR=$T/envdir start_server
	log_has "in $DATA"
}

@test "a data directory the user cannot write is a clear error at start" {
	need_root
	ensure_test_user
	chmod 755 "$DATA"
	run "$OML2_SERVER" -D "$DATA" -l 127.0.0.1:0 --user "$T_USER"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not writable"* ]]
}

@test "a log file that cannot be opened is an error" {
	run "$OML2_SERVER" -D "$DATA" -l 127.0.0.1:0 --logfile=/nonexistent/dir/log
	[ "$status" -ne 0 ]
	[[ "$output" == *"/nonexistent/dir/log"* ]]
}
