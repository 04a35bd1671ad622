#!/usr/bin/env bats
# oml2ctl and the control socket: status, list and show against what the
# clients sent, completeness (gaps, restarts, a client's own drops), close,
# reopen-log, stop, who may connect, and control clients that misbehave.

load helpers

T0=1700000000

# A perl client of the control socket: raw_ctl BYTES SECONDS FILE writes
# BYTES (perl string escapes), creates FILE, then reads nothing for SECONDS.
raw_ctl() {
	perl -MIO::Socket::UNIX -e '
		my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
		$s->autoflush(1);
		print $s eval qq("$ARGV[1]");
		open(my $f, ">", $ARGV[3]) or die; close($f);
		sleep($ARGV[2]);
		' "$DATA/oml2-server.sock" "$1" "$2" "$3"
}

# Write BYTES and print what the server answers.
ask_raw() {
	perl -MIO::Socket::UNIX -e '
		my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
		print $s eval qq("$ARGV[1]");
		print while <$s>;
		' "$DATA/oml2-server.sock" "$1"
}

@test "oml2ctl status, list and show count the rows, bytes and clients the clients sent" {
	local s bytes=0 n
	# 200 rows stored before this server started: in the table's count,
	# not in what this process stored
	"$OMLSEND" -q -e watch -S earlier -T $T0 -n 200 "file:$T/earlier.oml"
	"$OML2_IMPORT" -D "$DATA" --logfile="$T/imp.log" "$T/earlier.oml"
	start_server
	for s in a b c; do
		"$OMLSEND" -q -e watch -S "node-$s" -T $T0 -n 500 "file:$T/$s.oml"
		n=$(stat -c %s "$T/$s.oml")
		bytes=$((bytes + n))
		bg "$OMLSEND" -q -e watch -S "node-$s" -T $T0 -n 500 -H 60000 "127.0.0.1:$PORT"
	done
	wait_rows watch gen 1700
	wait_cj 3 10 '.experiments[0].clients' list
	wait_cj 1500 10 '.experiments[0].rows_stored' list
	[ "$(cj '.experiments | length' list)" = 1 ]
	[ "$(cj '.experiments[0].name' list)" = watch ]
	[ "$(cj '.experiments[0].pid' list)" = "$(exp_pid watch)" ]
	[ "$(cj '.experiments[0].bytes_received' list)" = "$bytes" ]
	[ "$(cj '.experiments[0].rows_dropped' list)" = 0 ]
	[ "$(cj '.experiments[0].stall + " " + .experiments[0].hook' list)" = "no none" ]
	# The plain listing: a header, and the experiment's line.
	run ctl list
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "EXPERIMENT "*" PID "*" CLIENTS "*" ROWS "*" ROWS/S "*" BYTES "*" DROPPED "*" STALLED "*"HOOK" ]]
	[[ "${lines[1]}" =~ ^watch\ +$(exp_pid watch)\ +serving\ +3\ +1500\ +[0-9.]+\ +$bytes\ +0\ .*\ no\ +none$ ]]
	# show: every client with its sender, rows and bytes; the table.
	[ "$(cj '[.details.clients[].sender] | sort | join(",")' show watch)" = node-a,node-b,node-c ]
	for s in a b c; do
		[ "$(cj ".details.clients[] | select(.sender == \"node-$s\") | [.rows, .bytes, .protocol, .encoding, .app, .peer] | join(\" \")" show watch)" = \
		    "500 $(stat -c %s "$T/$s.oml") 5 text omlsend 127.0.0.1" ]
	done
	[ "$(cj '.details.tables | map("\(.name)=\(.rows)/\(.stored)/\(.senders)") | join(",")' show watch)" = "gen=1700/1500/3" ]
	run ctl show watch
	[ "$status" -eq 0 ]
	[[ "$output" == *"experiment watch: process $(exp_pid watch) (serving), 3 clients, 1500 rows stored"*", 0 dropped, $bytes bytes"* ]]
	echo "$output" | grep -E -q '^127\.0\.0\.1 +[0-9]+ +node-b +omlsend +5 +text +[0-9-]+ [0-9:]+ +500 +[0-9]+ +0$'
	echo "$output" | grep -E -q '^TABLE +ROWS +STORED +SENDERS$'
	echo "$output" | grep -E -q '^gen +1700 +1500 +3$'
	# status: the server's counts.
	[ "$(cj '[.experiments, .clients, .rows_stored, .connections_accepted, .backend] | join(" ")' status)" = "1 3 1500 3 sqlite" ]
	[ "$(cj '.listening[0]' status)" = "127.0.0.1:$PORT" ]
	[ "$(cj '.data_dir' status)" = "$(realpath "$DATA")" ]
	run ctl status
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "oml2-server "*", pid $SERVER_PID, up "* ]]
	echo "$output" | grep -E -q "^rows stored +1500$"
}

@test "a sender that skips sequence numbers shows as gaps, in oml2ctl show and when the last client leaves" {
	start_server
	send -e gaps -S good -T $T0 -n 100
	send -e gaps -S lossy -T $T0 -n 100 -G 10-14,50
	wait_log 'exp/gaps: last client left: 2 senders, 2 streams, 194 tuples, 2 gaps \(6 missing\): lossy/gen: seq 1 to 100, 6 missing in 2 gaps$'
	wait_rows gaps gen 194
	wait_cj "2 6 1 100 94" 10 '.details.streams[] | select(.sender == "lossy") | [.gaps, .missing, .first, .last, .received] | join(" ")' show gaps
	[ "$(cj '.details.streams[] | select(.sender == "good") | [.gaps, .missing, .restarts] | join(" ")' show gaps)" = "0 0 0" ]
	wait_cj "2 6 2" 10 '[.gaps, .missing, .senders] | join(" ")' show gaps
	run ctl show gaps
	echo "$output" | grep -E -q '^completeness: 2 senders, 2 streams, 2 gaps \(6 sequence numbers missing\)$'
	echo "$output" | grep -E -q '^lossy +gen +1 +100 +94 +2 +6 +0 +-$'
	echo "$output" | grep -E -q '^good +gen +1 +100 +100 +0 +0 +0 +-$'
	# The same sender again, its numbers from 1: a restart, not a gap.
	send -e gaps -S good -T $T0 -n 3
	wait_cj "0 1 3" 10 '.details.streams[] | select(.sender == "good") | [.gaps, .restarts, .last] | join(" ")' show gaps
	# A client's own _client_instrumentation: it dropped 4 of 100.
	raw 'protocol: 5\ndomain: gaps\nstart-time: %s\nsender-id: instr\napp-name: app\nschema: 1 _client_instrumentation measurements_injected:uint32 measurements_dropped:uint32 bytes_allocated:uint64 bytes_freed:uint64 bytes_in_use:uint64 bytes_max:uint64\ncontent: text\n\n1.0\t1\t1\t60\t1\t0\t0\t0\t0\n2.0\t1\t2\t100\t4\t0\t0\t0\t0\n' $T0
	wait_cj "100 4" 10 '.details.senders[] | select(.sender == "instr") | [.client_injected, .client_dropped] | join(" ")' show gaps
	wait_cj 4 10 '.client_dropped' show gaps
	wait_log 'last client left: 3 senders, 3 streams, 199 tuples, 2 gaps \(6 missing\), 1 restart, 4 dropped by clients'
	run ctl show gaps
	echo "$output" | grep -E -q '^instr +_client_instrumentation +1 +2 +2 +0 +0 +0 +4$'
}

@test "oml2ctl shows a client's control bytes escaped, and --json carries them exactly" {
	local out
	start_server
	printf 'protocol: 5\ndomain: esc\nstart-time: 1\nsender-id: ev\033[2Jil"q\\\xff\napp-name: a\tb\xe2\x80\xaec\nschema: 1 gen n:int32\ncontent: text\n\n0.1\t1\t1\t5\n' >"$T/esc.raw"
	bg "$OMLSEND" -q -r "$T/esc.raw" -H 60000 "127.0.0.1:$PORT"
	wait_rows esc gen 1
	out=$(ctl show esc)
	# no escape byte reaches the terminal; the text shows what was there
	[ "$(printf '%s' "$out" | tr -d -c '\033\t\r' | wc -c)" -eq 0 ]
	[[ "$out" == *'ev\x1b[2Jil"q\\'$'\xef\xbf\xbd'*'  '* ]]
	[[ "$out" == *'a\x09b\xe2\x80\xaec'* ]]
	# JSON: the bytes themselves (an invalid one as U+FFFD), valid UTF-8.
	[ "$(cj '.details.streams[0].sender' show esc)" = $'ev\033[2Jil"q\\\xef\xbf\xbd' ]
	[ "$(cj '.details.streams[0].sender | explode | map(select(. < 32)) | length' show esc)" = 1 ]
	ctl --json show esc | iconv -f UTF-8 -t UTF-8 >/dev/null
}

@test "oml2ctl close stores what the experiment's clients sent, closes them and ends its process" {
	local pid stored
	start_server
	bg "$OMLSEND" -q -e shut -S steady -n 50000 -B 500 -p 20 "127.0.0.1:$PORT"
	wait_for 10 q_is shut "SELECT count(*) >= 1000 FROM gen" 1
	pid=$(exp_pid shut)
	[ -n "$pid" ]
	run ctl close shut
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^shut:\ closed\;\ ([0-9]+)\ rows\ stored,\ 0\ dropped\;\ completeness:\ 1\ sender,\ 1\ stream,\ 0\ gaps$ ]]
	stored=${BASH_REMATCH[1]}
	# every row it counted is in the database, and the process is gone
	[ "$(q shut 'SELECT count(*) FROM gen')" = "$stored" ]
	[ "$stored" -lt 50000 ]
	wait_gone "$pid" 10
	log_has "master: experiment shut: closed by uid $UID; retiring process $pid"
	log_has "exp/shut: client 127.0.0.1 port [0-9]+ closed by the operator: $stored rows stored, 0 dropped"
	[ "$(cj '.experiments[0] | [.state, .rows_stored, .clients] | join(" ")' list)" = "ended $stored 0" ]
	# Closing it again says why not.
	run ctl close shut
	[ "$status" -eq 1 ]
	[[ "$output" == "oml2ctl: experiment shut has no process (it ended)" ]]
	run ctl show nosuch
	[ "$status" -eq 1 ]
	[ "$output" = "oml2ctl: no experiment nosuch" ]
}

@test "oml2ctl reopen-log reopens the log as SIGHUP does, and oml2ctl stop stops the server as SIGTERM does" {
	local sock=$DATA/oml2-server.sock rc=0
	start_server
	[ -S "$sock" ]
	mv "$LOG" "$LOG.1"
	run ctl reopen-log
	[ "$status" -eq 0 ]
	[ "$output" = "log reopened" ]
	wait_log 'master: log reopened'
	grep -q "control: uid $UID pid [0-9]*: reopen-log" "$LOG.1"
	run ctl stop
	[ "$status" -eq 0 ]
	[ "$output" = "server stopping" ]
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ "$rc" -eq 0 ]
	log_has "master: control: uid $UID pid [0-9]+: stop"
	log_has 'master: stopped'
	# the socket went with the server; oml2ctl says so
	[ ! -e "$sock" ]
	run ctl status
	[ "$status" -eq 1 ]
	[[ "$output" == *"No such file or directory (is the server running?"* ]]
}

@test "the control socket is mode 0660 for root and --group, and refuses the experiments' own user" {
	need_root
	ensure_test_user
	local sock=$DATA/oml2-server.sock gid
	gid=$(id -g "$T_USER")
	chown "$T_USER" "$DATA"
	start_server --user="$T_USER"
	[ "$(stat -c '%a %u %g' "$sock")" = "660 0 $gid" ]
	# The experiments' user is in the group, but may not steer the master.
	run setpriv --reuid="$T_USER" --regid="$gid" --clear-groups "$OML2CTL" -s "$sock" status
	[ "$status" -eq 1 ]
	[ "$output" = "oml2ctl: the experiment processes' user may not" ]
	wait_log "control: uid $(id -u "$T_USER") pid [0-9]+ refused: the experiment processes' user may not"
	# Another user of the group may; one outside it cannot even connect.
	run setpriv --reuid=nobody --regid="$gid" --clear-groups "$OML2CTL" -s "$sock" --json status
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq -r .backend)" = sqlite ]
	run setpriv --reuid=nobody --regid=nogroup --clear-groups "$OML2CTL" -s "$sock" status
	[ "$status" -eq 1 ]
	[[ "$output" == *"Permission denied (only root and the server's group may use it)" ]]
}

@test "garbage and silent control clients are cut off with a log line, and rows go on at the same pace" {
	local i t0 t1 base with status_ms
	start_server --header-timeout=3
	# An experiment whose details are large: 2000 senders.
	for i in a b c d; do
		"$OMLSEND" -q -e many -S "$i" -c 500 -n 1 "127.0.0.1:$PORT"
	done
	wait_rows many gen 2000
	wait_cj 2000 10 '.experiments[0].streams' list
	# The witness, alone: 200000 rows.
	t0=$(date +%s%N)
	send -e pace -S base -n 200000
	wait_rows pace gen 200000 30
	t1=$(date +%s%N)
	base=$(( (t1 - t0) / 1000000 ))
	# Then beside: a client that connects and says nothing, and one that
	# asks for the large details and never reads them.
	bg raw_ctl '' 30 "$T/silent"
	bg raw_ctl 'show many\n' 30 "$T/asked"
	wait_for 5 test -e "$T/silent" -a -e "$T/asked"
	t0=$(date +%s%N)
	send -e pace -S with -n 200000
	wait_rows pace gen 400000 30
	t1=$(date +%s%N)
	with=$(( (t1 - t0) / 1000000 ))
	# The master answers meanwhile, garbage too.
	t0=$(date +%s%N)
	[ "$(cj .experiments status)" = 2 ]
	t1=$(date +%s%N)
	status_ms=$(( (t1 - t0) / 1000000 ))
	run ask_raw '\x00\xffGARBAGE\n'
	[ "$output" = '{"error":"bad request: not printable ASCII"}' ]
	run ask_raw 'list extra\n'
	[ "$output" = '{"error":"bad request: unknown request"}' ]
	run ask_raw "$(printf 'x%.0s' $(seq 300))"
	[ "$output" = '{"error":"bad request: longer than 255 bytes"}' ]
	echo "# 200000 rows: ${base} ms alone, ${with} ms beside stuck control clients; status in ${status_ms} ms" >&3
	[ "$with" -le $((base * 2 + 500)) ]
	[ "$status_ms" -lt 2000 ]
	log_has "control: uid $UID pid [0-9]+: bad request \".*GARBAGE\": not printable ASCII"
	log_has "control: uid $UID pid [0-9]+: bad request \"list extra\": unknown request"
	wait_log "control: uid $UID pid [0-9]+: sent no request in time; connection closed" 10
	wait_log "control: uid $UID pid [0-9]+: did not read its reply in time; connection closed" 10
	[ "$(q pace 'SELECT count(*) FROM gen')" = 400000 ]
}
