#!/usr/bin/env bats
# Hostile input.  Each attack runs while two well-behaved witnesses stream
# (one in the attacked experiment, sharing its process, one in another
# experiment); afterwards the server, the attacked experiment's process
# and every witness row must be there, and nothing may appear outside the
# data directory.

load helpers

WROWS=1000

setup_file() {
	# The byte generator for binary packets (perl is part of Debian's base).
	command -v perl >/dev/null
}

# Witnesses stream WROWS rows each, in bursts, for about a second.
start_witnesses() {
	touch "$T/marker"
	bg send -e victim -S witness -n "$WROWS" -B 50 -p 50
	W1=$BG
	bg send -e witness -S witness -n "$WROWS" -B 50 -p 50
	W2=$BG
	wait_log 'ready: victim:witness:'
	VPID=$(exp_pid victim)
	[ -n "$VPID" ]
}

check_witnesses() {
	wait "$W1"
	wait "$W2"
	wait_q victim "SELECT count(*) FROM gen WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'witness')" "$WROWS"
	wait_q witness "SELECT count(*) FROM gen" "$WROWS"
	# the server and the attacked experiment's process are the same ones
	kill -0 "$SERVER_PID"
	[ "$(exp_pid victim)" = "$VPID" ]
	log_lacks 'killed by signal|exited with status|fatal'
	no_stray_files
}

# Nothing that looks like a database outside the data directory, and
# nothing in it but the experiments named here.
no_stray_files() {
	local f
	# (in /tmp only what the hostile names would make: other test
	# files run beside this one and may leave databases there)
	f=$( (find "$T" -not -path "$DATA/*" | grep -E '\.sq3|escape'
	    find /tmp -maxdepth 1 -newer "$T/marker" -name '*escape*') || true)
	[ -z "$f" ] || { echo "stray files: $f" >&2; return 1; }
	f=$(ls -A "$DATA" | grep -v -E '^((victim|witness|ok|sqlexp)\.sq3(-wal|-shm|-journal)?|\.oml2-server\.lock|oml2-server\.sock)$' || true)
	[ -z "$f" ] || { echo "unexpected in the data directory: $f" >&2; return 1; }
}

# A binary packet on stdout: binpkt STREAM COUNT HEX-VALUES [N-PAD-BYTES]
# (seq-no 1, timestamp 1.5; a long packet when the body needs one).
binpkt() {
	perl -e '
		my ($stream, $count, $hex, $pad) = @ARGV;
		my $b = pack("CC", $count, $stream) . pack("H*", "0500000001023000000001")
		    . pack("H*", $hex) . ("z" x ($pad // 0));
		print length($b) > 65535 ? pack("CCCN", 0xAA, 0xAA, 2, length $b) . $b
		    : pack("CCCn", 0xAA, 0xAA, 1, length $b) . $b;
	' "$@"
}

# VmHWM (peak resident set) of a process, in KiB.
hwm() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# The port of the first client whose "ready" line matches: ready_port PATTERN
ready_port() {
	sed -n "s/.*client [^ ]* port \([0-9]*\) ready: $1.*/\1/p" "$LOG" | head -n 1
}

@test "experiment names with ../, /, quotes, NUL or 64 bytes are refused and create no file" {
	start_server
	start_witnesses
	local name n63
	n63=$(printf 'n%.0s' $(seq 1 63))
	for name in '../escape' '../../escape' '/tmp/escape' 'a/../../escape' \
	    'esc\\ape' '"escape"' "esc'ape" 'esc`ape' '.escape' '..' \
	    "${n63}x" "$(printf 'e%.0s' $(seq 1 200))"; do
		raw_refused 'protocol: 5\ndomain: %s\nschema: 1 t x:int32\n\n1\t1\t1\t1\n' "$name"
		raw_refused 'protocol: 3\nexperiment-id: %s\n\n' "$name"
	done
	# a NUL, a newline's neighbours and other control bytes inside the name
	raw_refused 'protocol: 5\ndomain: esc\000ape\nschema: 1 t x:int32\n\n'
	raw_refused 'protocol: 5\ndomain: esc\033ape\n\n'
	raw_refused 'protocol: 5\ndomain: esc\rape\n\n'
	check_witnesses
	[ "$(grep -c 'client 127.0.0.1 port [0-9]*: .*experiment name.*; connection closed' "$LOG")" -ge 25 ]
	log_has 'client 127.0.0.1 port [0-9]+: binary data in the header; connection closed'
	# 63 bytes is the longest name, and it works
	send -e "$n63" -n 3
	wait_rows "$n63" gen 3
}

@test "SQL in sender ids, app names and metadata is stored verbatim and never run" {
	start_server
	start_witnesses
	local evil="x'); DROP TABLE gen; --" evil2='a"; DROP TABLE _senders; --'
	send -e victim -S "$evil" -a "$evil2" -n 5
	raw 'protocol: 5\ndomain: victim\nsender-id: %s\nschema: 0 _experiment_metadata subject:string key:string value:string\nschema: 1 gen n:int32 x:double s:string\n\n0.1\t0\t1\t.\t%s\t%s\n0.2\t1\t1\t-7\t0.5\t%s\n' \
	    "$evil2" "$evil" "'; DELETE FROM gen; --" "$evil"
	check_witnesses
	wait_q victim "SELECT count(*) FROM gen" $((WROWS + 6))
	[ "$(q victim "SELECT count(*) FROM _senders WHERE name = '$(printf %s "$evil" | sed "s/'/''/g")'")" = 1 ]
	[ "$(q victim "SELECT count(*) FROM _senders WHERE name = '$evil2'")" = 1 ]
	[ "$(q victim "SELECT value FROM _experiment_metadata WHERE subject = '.' AND key = '$(printf %s "$evil" | sed "s/'/''/g")'")" = "'; DELETE FROM gen; --" ]
	[ "$(q victim "SELECT s FROM gen WHERE n = -7")" = "$evil" ]
	[ "$(q victim "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)")" = "_experiment_metadata _senders gen" ]
}

@test "SQL in schema or field names is refused with one line and creates nothing" {
	start_server
	start_witnesses
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 gen;DROP x:int32\n\n'
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 t x");DROP TABLE gen;--:int32\n\n'
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 "gen" x:int32\n\n'
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 t x:int32);DROP\n\n'
	raw_refused 'protocol: 5\ndomain: victim\nschema: 0 _experiment_metadata subject:string key:string value:string\n\n0.1\t0\t1\t.\tschema\t2 t2 y:int32,DROP\n'
	check_witnesses
	[ "$(grep -c 'client 127.0.0.1 port [0-9]*: protocol error: bad schema .*; connection closed' "$LOG")" -eq 5 ]
	[ "$(q victim "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)")" = "_experiment_metadata _senders gen" ]
}

@test "a stream index of 10^9 is refused in a schema and dropped in a tuple" {
	start_server
	start_witnesses
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1000000000 big x:int32\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: protocol error: bad schema "1000000000 big x:int32".*; connection closed'
	raw 'protocol: 5\ndomain: victim\nschema: 1 idx x:int32\n\n0.1\t1000000000\t1\t5\n0.2\t99999999999999999999999\t2\t6\n0.3\t-1000000000\t3\t7\n0.4\t1\t4\t8\n'
	check_witnesses
	wait_q victim "SELECT group_concat(x) FROM idx" 8
	[ "$(grep -c 'tuple dropped: stream .* was never declared' "$LOG")" -eq 3 ]
}

@test "element counts far beyond the data drop the tuple and nothing else" {
	start_server
	start_witnesses
	# text: a vector claiming 10^9 elements with 2, then a good row
	raw 'protocol: 5\ndomain: victim\nsender-id: tv\nschema: 1 tvec v:[int32]\n\n0.1\t1\t1\t1000000000 1 2\n0.2\t1\t2\t18446744073709551615 1\n0.3\t1\t3\t2 1 2\n'
	# binary: a vector of 65535 with 3 elements, a 4 GiB blob with 10
	# bytes, then good packets
	{
		printf 'protocol: 5\ndomain: victim\nsender-id: bv\nschema: 1 bvec v:[int32]\nschema: 2 bblob b:blob\ncontent: binary\n\n'
		binpkt 1 1 0d05ffff000000010000000200000003
		binpkt 2 1 09ffffffff00010203040506070809
		binpkt 1 1 0d0500020000000100000002
		binpkt 2 1 0900000003616263
	} >"$T/bin"
	"$OMLSEND" -q -r "$T/bin" "127.0.0.1:$PORT"
	check_witnesses
	wait_q victim "SELECT v FROM tvec" '[ 1, 2 ]'
	wait_q victim "SELECT v FROM bvec" '[ 1, 2 ]'
	wait_q victim "SELECT hex(b) FROM bblob" '616263'
	log_has 'tuple dropped: tvec: fewer vector elements than its count'
	log_has 'tuple dropped: bvec: truncated vector'
	log_has 'tuple dropped: bblob: truncated blob'
}

@test "255-byte strings, a string near --max-line and a blob of exactly --max-packet are stored whole" {
	start_server --max-packet 1048576 --max-line 1048576
	start_witnesses
	local s255 big
	s255=$(printf 's%.0s' $(seq 1 255))
	{
		printf 'protocol: 5\ndomain: victim\nsender-id: big\nschema: 1 bstr s:string\nschema: 2 bblob b:blob\ncontent: binary\n\n'
		binpkt 1 1 "04ff$(printf '73%.0s' $(seq 1 255))"
		binpkt 2 1 "09$(printf %08x $((1048576 - 18)))" $((1048576 - 18))
	} >"$T/bin"
	"$OMLSEND" -q -r "$T/bin" "127.0.0.1:$PORT"
	# a text line of 1048576 bytes, all but 8 of them one string
	{
		printf 'protocol: 5\ndomain: victim\nsender-id: bigt\nschema: 1 tstr s:string\n\n0.1\t1\t1\t'
		head -c $((1048576 - 8)) /dev/zero | tr '\0' t
		printf '\n'
	} >"$T/txt"
	"$OMLSEND" -q -r "$T/txt" "127.0.0.1:$PORT"
	check_witnesses
	wait_q victim "SELECT length(s), s = '$s255' FROM bstr" '255|1'
	wait_q victim "SELECT length(b), hex(substr(b, 1, 3)) = '7A7A7A' FROM bblob" "$((1048576 - 18))|1"
	wait_q victim "SELECT length(s) FROM tstr" $((1048576 - 8))
	# one byte more than --max-packet closes that connection alone
	{
		printf 'protocol: 5\ndomain: victim\nsender-id: big2\nschema: 2 bblob b:blob\ncontent: binary\n\n'
		binpkt 2 1 "09$(printf %08x $((1048576 - 17)))" $((1048576 - 17))
	} >"$T/bin2"
	"$OMLSEND" -q -r "$T/bin2" -W -w 10 "127.0.0.1:$PORT"
	wait_log 'client 127.0.0.1 port [0-9]+: limit reached: binary packet longer than --max-packet \(1048576\); connection closed'
	[ "$(q victim "SELECT count(*) FROM bblob")" = 1 ]
	kill -0 "$SERVER_PID"
}

@test "headers that never end are cut off, and a silent one is reaped by --timeout" {
	start_server -d 3 -t 2 --header-limit 4096 --max-header 65536
	start_witnesses
	# before the experiment id: endless header lines stop at --header-limit
	{ printf 'protocol: 5\n'; yes 'x-pad: 0123456789'; } 2>/dev/null >"/dev/tcp/127.0.0.1/$PORT" || true
	wait_log 'client 127.0.0.1 port [0-9]+: no experiment id in the first --header-limit bytes; connection closed'
	# after it: 16 MiB of header lines, and the connection held open, are
	# cut off at --max-header, long before --timeout could
	local before
	before=$(hwm "$VPID")
	bg bash -c "{ printf 'protocol: 5\ndomain: victim\nsender-id: endless\n'; yes 'x-pad: 0123456789' | head -c 16M; sleep 30; } 2>/dev/null >/dev/tcp/127.0.0.1/$PORT"
	wait_log 'client 127.0.0.1 port [0-9]+: limit reached: header longer than --max-header \(65536\); connection closed' 20
	# a header that stops short of its blank line, then silence
	bg bash -c "{ printf 'protocol: 5\ndomain: victim\nsender-id: silent\n'; sleep 30; } >/dev/tcp/127.0.0.1/$PORT"
	wait_log 'client 127.0.0.1 port [0-9]+ idle timeout: 0 rows stored' 20
	check_witnesses
	# its process did not keep the lines
	[ $(( $(hwm "$VPID") - before )) -lt 16384 ]
	[ "$(grep -c 'longer than --max-header' "$LOG")" -eq 1 ]
}

@test "a client sending one byte a second delays nobody and is reaped by --timeout" {
	start_server -t 2
	bg perl -MIO::Socket::INET -e '
		$SIG{PIPE} = "IGNORE";
		my $s = IO::Socket::INET->new("127.0.0.1:$ARGV[0]") or die "connect: $!";
		$s->autoflush(1);
		print $s "protocol: 5\ndomain: victim\nsender-id: slow\nschema: 1 slow s:string\n\n0.1\t1\t1\t";
		for (;;) { sleep 1; print $s "x" or exit 0; }' "$PORT"
	local port t0
	wait_log 'ready: victim:slow:'
	t0=$(date +%s)
	port=$(ready_port 'victim:slow:')
	start_witnesses
	check_witnesses
	wait_log "client 127.0.0.1 port $port idle timeout: 0 rows stored" 10
	# it kept sending all along: reaped for making no progress
	[ $(( $(date +%s) - t0 )) -ge 2 ]
}

@test "binary garbage in a binary stream is skipped and the stream goes on" {
	start_server
	start_witnesses
	{
		printf 'protocol: 5\ndomain: victim\nsender-id: garbage\nschema: 1 gb x:int32\ncontent: binary\n\n'
		binpkt 1 1 0500000001
		head -c 262144 /dev/urandom | tr -d '\252'
		binpkt 1 1 0500000002
	} >"$T/bin"
	"$OMLSEND" -q -r "$T/bin" "127.0.0.1:$PORT"
	# unfiltered garbage, sync bytes and all, in binary and in text
	{ printf 'protocol: 5\ndomain: victim\nsender-id: g2\nschema: 1 gb x:int32\ncontent: binary\n\n'; head -c 262144 /dev/urandom; } >"$T/bin2"
	"$OMLSEND" -q -r "$T/bin2" "127.0.0.1:$PORT" || true
	{ printf 'protocol: 5\ndomain: victim\nsender-id: g3\nschema: 1 gb x:int32\n\n'; head -c 262144 /dev/urandom; } >"$T/txt"
	"$OMLSEND" -q -r "$T/txt" "127.0.0.1:$PORT" || true
	check_witnesses
	wait_q victim "SELECT group_concat(x) FROM gb WHERE oml_sender_id = (SELECT id FROM _senders WHERE name = 'garbage')" '1,2'
	log_has 'client 127.0.0.1 port [0-9]+: skipped [0-9]+ bytes of garbage'
	# a flood of bad tuples is summarised, not logged line by line
	[ "$(grep -c 'tuple dropped' "$LOG")" -lt 60 ]
}

@test "a gigabyte without a newline is cut off at --max-line and memory stays flat" {
	start_server --max-line 1048576
	start_witnesses
	local before mbefore
	before=$(hwm "$VPID")
	mbefore=$(hwm "$SERVER_PID")
	# in the data phase (streamed: no file holds the gigabyte)
	{ printf 'protocol: 5\ndomain: victim\nsender-id: flood\nschema: 1 fl s:string\n\n0.1\t1\t1\t'; head -c 1G /dev/zero | tr '\0' x; } 2>/dev/null >"/dev/tcp/127.0.0.1/$PORT" || true
	wait_log 'client 127.0.0.1 port [0-9]+: limit reached: text line longer than --max-line \(1048576\); connection closed'
	# in the header phase, where the master reads
	{ printf 'protocol: 5\n'; head -c 1G /dev/zero | tr '\0' x; } 2>/dev/null >"/dev/tcp/127.0.0.1/$PORT" || true
	wait_log 'client 127.0.0.1 port [0-9]+: no experiment id in the first --header-limit bytes; connection closed'
	check_witnesses
	echo "child VmHWM $before -> $(hwm "$VPID") KiB, master $mbefore -> $(hwm "$SERVER_PID") KiB" >&3
	[ $(( $(hwm "$VPID") - before )) -lt 16384 ]
	[ $(( $(hwm "$SERVER_PID") - mbefore )) -lt 4096 ]
}

@test "--max-fields, --max-streams, --max-clients and --max-experiments each close one connection with one line naming it" {
	start_server --max-fields 4 --max-streams 2 --max-clients 3 --max-experiments 3
	start_witnesses
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 wide a:int32 b:int32 c:int32 d:int32 e:int32\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: limit reached: bad schema "1 wide .*more than 4 fields.*; connection closed'
	raw_refused 'protocol: 5\ndomain: victim\nschema: 1 s1 a:int32\nschema: 2 s2 a:int32\nschema: 3 s3 a:int32\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: limit reached: more than --max-streams \(2\) streams; connection closed'
	check_witnesses
	# two held clients and a third fill --max-clients 3; a fourth is refused
	bg send -e victim -S held1 -n 5 -H 20000
	bg send -e victim -S held2 -n 5 -H 20000
	bg send -e victim -S held3 -n 5 -H 20000
	wait_q victim "SELECT count(*) FROM gen WHERE oml_sender_id IN (SELECT id FROM _senders WHERE name LIKE 'held%')" 15
	raw_refused 'protocol: 5\ndomain: victim\nsender-id: fourth\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: --max-clients \(3\) reached; connection closed'
	# victim, witness and a third experiment are served; a fourth is not
	bg send -e third -n 5 -H 20000
	wait_rows third gen 5
	raw_refused 'protocol: 5\ndomain: fourth\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: experiment fourth refused: --max-experiments \(3\) reached; connection closed'
	[ ! -e "$DATA/fourth.sq3" ]
	# one line each, and the held clients never noticed
	[ "$(grep -c 'refused: --max-experiments' "$LOG")" -eq 1 ]
	[ "$(grep -c -- '--max-clients (3) reached' "$LOG")" -eq 1 ]
	log_lacks 'port [0-9]+ (protocol error|socket error|limit reached).*: [0-9]+ rows stored'
	[ "$(q victim "SELECT count(*) FROM gen")" = $((WROWS + 15)) ]
}
