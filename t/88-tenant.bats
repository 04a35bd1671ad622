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
	# (beside the lock file and the control socket)
	[ "$(ls -A "$DATA" | grep -v -x -F -e .oml2-server.lock -e oml2-server.sock)" = witness.sq3 ]
	# what the original's clients send is still taken
	send -e exp_2011-08-09t11.52.28+10.00 -n 2
	send -e _A:b-9 -n 2
	wait_rows exp_2011-08-09t11.52.28+10.00 gen 2
	wait_rows _A:b-9 gen 2
}

# Every line of the log is one of the server's: a timestamp, a level, a
# process name.  And no byte in it is a control byte (TAB included) or
# half of a C1 control (0x80-0x9f on their own or after 0xc2).
log_is_clean() {
	local bad
	bad=$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} (ERROR|WARN |INFO |DEBUG) (master|spare|exp/[A-Za-z0-9_.:+-]+): ' "$LOG") || true
	[ "$bad" -eq 0 ] || { echo "$bad lines that are not the server's" >&2; return 1; }
	bad=$(LC_ALL=C grep -c $'[\x01-\x09\x0b-\x1f\x7f\x80-\x9f]' "$LOG") || true
	[ "$bad" -eq 0 ] || { echo "$bad lines with control bytes" >&2; return 1; }
}

log_has_text() {
	grep -qF -- "$1" "$LOG" || { echo "log lacks: $1" >&2; return 1; }
}

@test "control bytes in sender ids, app names, schemas and headers are escaped in the log and forge no line" {
	start_server
	local forged='2026-01-01 00:00:00.000 ERROR master: forged'
	# CR and ESC in the sender id, OSC, BEL, C1 CSI (raw and as UTF-8),
	# DEL and a backslash in the app name; a LF (the text protocol's \n)
	# in a schema declared by metadata, which the refusal quotes
	raw_refused 'protocol: 5\ndomain: esc\nsender-id: s\r%s\033[2J\napp-name: a\033]0;owned\007\x9b1m\xc2\x9b1m\x7f\\z\nschema: 0 _experiment_metadata subject:string key:string value:string\n\n0.1\t0\t1\t.\tschema\tbad\\n%s\\t\n' "$forged" "$forged"
	# and in a header value the refusal quotes
	raw_refused 'protocol: 5\ndomain: esc\ncontent: t\033[1mext\n\n'
	wait_log 'unknown content'
	log_is_clean
	log_has_text 'ready: esc:s\r2026-01-01 00:00:00.000 ERROR master: forged\x1b[2J:a\x1b]0;owned\x07\x9b1m\xc2\x9b1m\x7f\\z (text)'
	log_has_text 'bad schema "bad\n2026-01-01 00:00:00.000 ERROR master: forged"'
	log_has_text 'unknown content "t\x1b[1mext"'
	# UTF-8 text is shown as it is
	send -e esc -S 'capteur-é' -n 1
	wait_log 'ready: esc:capteur-é:'
}

@test "on SIGHUP the master follows no link, FIFO or hard link planted at the log's path, and keeps its old log" {
	need_root
	mkdir -m 1777 "$T/logs"
	LOG=$T/logs/server.log
	start_server
	# rotated away, and a dangling link, a link to a file, a FIFO with
	# no reader and a second name of another file planted in its place
	mv "$LOG" "$T/logs/server.log.1"
	LOG=$T/logs/server.log.1
	echo keep >"$T/target"
	ln -s "$T/created-by-root" "$T/logs/server.log"
	kill -HUP "$SERVER_PID"
	wait_log "reopening the log file $T/logs/server.log: a symbolic link, which is not followed; still writing to the old one"
	rm "$T/logs/server.log"
	ln -s "$T/target" "$T/logs/server.log"
	kill -HUP "$SERVER_PID"
	wait_for 10 eval '[ "$(grep -c "a symbolic link, which is not followed" "$LOG")" -eq 2 ]'
	rm "$T/logs/server.log"
	mkfifo "$T/logs/server.log"
	kill -HUP "$SERVER_PID"
	wait_log "reopening the log file $T/logs/server.log: No such device or address; still writing"
	rm "$T/logs/server.log"
	ln "$T/target" "$T/logs/server.log"
	kill -HUP "$SERVER_PID"
	wait_log "reopening the log file $T/logs/server.log: a file with other hard links; still"
	# nothing was written through them, and the master still serves
	[ ! -e "$T/created-by-root" ]
	[ "$(cat "$T/target")" = keep ]
	send -e afterhup -n 3
	wait_rows afterhup gen 3
	wait_log 'client 127.0.0.1 port [0-9]+ ready: afterhup:'
	# a real file again: the next SIGHUP takes it
	rm "$T/logs/server.log"
	kill -HUP "$SERVER_PID"
	LOG=$T/logs/server.log
	wait_log 'master: log reopened'
	[ "$(stat -c %h:%F "$LOG")" = "1:regular file" ]
}

@test "a log file that is a symbolic link is refused at start with a clear error" {
	ln -s "$T/elsewhere" "$T/link.log"
	run timeout 10 "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --logfile="$T/link.log"
	[ "$status" -eq 1 ]
	[[ "$output" == *"log file $T/link.log: a symbolic link, which is not followed"* ]]
	[ ! -e "$T/elsewhere" ]
}

# NoNewPrivs of process $1: 0 or 1.
nnp() {
	sed -n 's/^NoNewPrivs:[[:space:]]*//p' "/proc/$1/status"
}

@test "experiment processes and hooks cannot gain privileges: no_new_privs is set and a setuid-root program stays --user" {
	need_root
	ensure_test_user
	mkdir -m 777 "$T/rec"
	cp /usr/bin/id "$T/suid-id"
	chmod 4755 "$T/suid-id"
	# without no_new_privs, the setuid bit makes it root
	[ "$(runuser -u "$T_USER" -- "$T/suid-id" -u)" = 0 ]
	cat >"$T/hook" <<-EOF
	#!/bin/sh
	sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/\$\$/status >"$T/rec/nnp"
	"$T/suid-id" -u >"$T/rec/euid"
	echo "OML HOOK READY"
	while read -r l; do [ "\$l" = EXIT ] && exit 0; done
	EOF
	chmod 755 "$T/hook"
	chown "$T_USER" "$DATA"
	start_server --user "$T_USER" -H "$T/hook"
	send -e nnp -n 1
	wait_rows nnp gen 1
	wait_for 10 test -s "$T/rec/euid"
	[ "$(nnp "$(exp_pid nnp)")" = 1 ]
	local spare
	spare=$(pgrep -P "$SERVER_PID" -f 'oml2-server: spare' | head -n 1)
	[ "$(nnp "$spare")" = 1 ]
	[ "$(cat "$T/rec/nnp")" = 1 ]
	[ "$(cat "$T/rec/euid")" = "$(id -u "$T_USER")" ]
}

@test "--user=root or --group=root is refused at start unless --allow-root says so" {
	need_root
	ensure_test_user
	run timeout 10 "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --user=root
	[ "$status" -eq 1 ]
	[[ "$output" == *"--user root: uid 0 would run experiment processes and hooks as root; give --allow-root if that is meant"* ]]
	run timeout 10 "$OML2_SERVER" -l 127.0.0.1:0 -D "$DATA" --user="$T_USER" --group=root
	[ "$status" -eq 1 ]
	[[ "$output" == *"--group root: gid 0 would run experiment processes and hooks in root's group; give --allow-root"* ]]
	[ -z "$(ls -A "$DATA")" ]
	# said explicitly, it runs, and says so
	start_server --user=root --allow-root
	log_has 'WARN  master: --allow-root: experiment processes and hooks run with uid 0, gid 0'
	send -e asroot -n 2
	wait_rows asroot gen 2
	[ "$(nnp "$(exp_pid asroot)")" = 1 ]
}
