#!/usr/bin/env bats
# Bounded resources per tenant: file descriptors of an experiment's
# process, memory held for unfinished packets and lines, and the memory
# one packet of each type costs while it is stored.  Each test prints its
# figures on the bats output.

load helpers

# The lowest descriptor number a process has free (the next it would
# get: a limit at it leaves none free below it, holes included).
lowest_free_fd() {
	local n=0
	while [ -e "/proc/$1/fd/$n" ]; do n=$((n + 1)); done
	echo "$n"
}

@test "an experiment process out of descriptors refuses clients by name and still retires" {
	start_server --linger 1
	bg "$OMLSEND" -q -e fdexp -S held -n 5 -H 60000 "127.0.0.1:$PORT"
	local held=$BG pid n
	wait_rows fdexp gen 5
	pid=$(exp_pid fdexp)
	# no descriptor free at all: the kernel drops the one passed
	n=$(lowest_free_fd "$pid")
	prlimit --pid "$pid" --nofile="$n:"
	raw_refused 'protocol: 5\ndomain: fdexp\nsender-id: lost\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: lost in the hand-over: this process has no file descriptor free; connection closed'
	# a few free, but too few to serve one more client safely
	prlimit --pid "$pid" --nofile="$((n + 4)):"
	raw_refused 'protocol: 5\ndomain: fdexp\nsender-id: short\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: this process is short of file descriptors \([0-9]+ in use or more, limit [0-9]+\); connection closed'
	log_lacks 'malformed message'
	# the held client never noticed; once it leaves, the process retires
	kill "$held"
	wait_log "experiment fdexp: idle, retiring process $pid" 10
	wait_gone "$pid" 10
	[ "$(q fdexp "SELECT count(*) FROM gen")" = 5 ]
	echo "refused at $n and $((n + 4)) descriptors; retired" >&3
}

@test "--max-clients above RLIMIT_NOFILE is lowered at start with a log line, and the clients past it are refused by name" {
	run_server prlimit --nofile=64:64 "$OML2_SERVER" -l 127.0.0.1:0 \
	    -D "$DATA" --logfile="$LOG" --max-clients 1000 --linger 1
	log_has -- '--max-clients lowered from 1000 to 32: a process may open only 64 files \(RLIMIT_NOFILE\)'
	bg "$OMLSEND" -q -e cap -c 60 -n 2 -H 60000 "127.0.0.1:$PORT"
	local clients=$BG
	wait_rows cap gen 64 20
	wait_for 20 eval '[ "$(grep -c -- "--max-clients (32) reached; connection closed" "$LOG")" -eq 28 ]'
	log_lacks 'malformed message|lost in the hand-over|short of file descriptors'
	local pid
	pid=$(exp_pid cap)
	kill "$clients"
	wait_log "experiment cap: idle, retiring process $pid" 10
	echo "60 clients at 64 descriptors: 32 served, 28 refused by name" >&3
}

# Connections that each send a header and BYTES of a binary packet
# declared 1 MiB long, then hold it unfinished (for -t seconds at least):
# hold_packets EXP CONNS BYTES (run with bg: the process is perl's, so
# that teardown stops it)
hold_packets() {
	exec perl -MIO::Socket::INET -e '
		my ($port, $exp, $n, $bytes) = @ARGV;
		$SIG{PIPE} = "IGNORE";
		my @s;
		for my $i (1 .. $n) {
			my $s = IO::Socket::INET->new("127.0.0.1:$port") or die "connect: $!";
			print $s "protocol: 5\ndomain: $exp\nsender-id: hog$i\nschema: 1 blobs b:blob\ncontent: binary\n\n";
			print $s pack("CCCN", 0xAA, 0xAA, 2, 1048576 - 7) . ("z" x $bytes);
			push @s, $s;
		}
		sleep 60;' "$PORT" "$@"
}

# A client trickling 4 KiB every 250 ms into a packet declared 1 MiB long.
trickle_packet() {
	exec perl -MIO::Socket::INET -e '
		$SIG{PIPE} = "IGNORE";
		my $s = IO::Socket::INET->new("127.0.0.1:$ARGV[0]") or die "connect: $!";
		$s->autoflush(1);
		print $s "protocol: 5\ndomain: slow\nsender-id: trickle\nschema: 1 blobs b:blob\ncontent: binary\n\n";
		print $s pack("CCCN", 0xAA, 0xAA, 2, 1048576 - 7);
		for (;;) { select(undef, undef, undef, 0.25); print $s ("z" x 4096) or exit 0; }' "$PORT"
}

# VmHWM (peak resident set) of a process, in KiB.
hwm() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

@test "past --max-buffered-exp the largest holders of unfinished packets are closed by name, and a witness beside them keeps storing" {
	start_server --max-packet 1048576 --max-line 65536 \
	    --max-buffered-exp 3145728 --max-buffered 16777216
	bg send -e hog -S witness -b -n 1000 -B 50 -p 50
	local witness=$BG pid before
	wait_log 'ready: hog:witness:'
	pid=$(exp_pid hog)
	before=$(hwm "$pid")
	# eight clients hold 896 KiB each of a 1 MiB packet: 7 MiB in all
	bg hold_packets hog 8 917504
	wait_for 20 eval '[ "$(grep -c "over --max-buffered-exp (3145728); connection closed" "$LOG")" -ge 3 ]'
	log_has 'client 127.0.0.1 port [0-9]+: limit reached: holds [0-9]+ bytes of unfinished input, the most in experiment hog: over --max-buffered-exp \(3145728\); connection closed'
	wait "$witness"
	wait_q hog "SELECT count(*) FROM gen" 1000
	[ "$(grep -c "ready: hog:hog" "$LOG")" -eq 8 ]
	# the witness was never closed for holding memory
	log_lacks "$(sed -n 's/.*client 127.0.0.1 port \([0-9]*\) ready: hog:witness:.*/port \1: limit reached/p' "$LOG")"
	echo "hog process VmHWM $before -> $(hwm "$pid") KiB; $(grep -c 'over --max-buffered-exp' "$LOG") of 8 holders closed" >&3
	[ -n "${OML2_SANITIZED:-}" ] || [ $(( $(hwm "$pid") - before )) -lt 4096 ]
}

@test "past --max-buffered the largest holders in any experiment are closed by name, and a witness elsewhere keeps storing" {
	start_server --max-packet 1048576 --max-line 65536 \
	    --max-buffered-exp 4194304 --max-buffered 5242880
	bg send -e witness -S witness -b -n 1000 -B 50 -p 50
	local witness=$BG
	wait_log 'ready: witness:witness:'
	# three experiments, three clients each holding 896 KiB: 7.9 MiB
	bg hold_packets hogA 3 917504
	bg hold_packets hogB 3 917504
	bg hold_packets hogC 3 917504
	wait_for 20 eval '[ "$(grep -c "over --max-buffered (5242880); connection closed" "$LOG")" -ge 4 ]'
	log_has 'exp/hog[ABC]: client 127.0.0.1 port [0-9]+: limit reached: holds [0-9]+ bytes of unfinished input, the most of any experiment: over --max-buffered \(5242880\); connection closed'
	wait "$witness"
	wait_q witness "SELECT count(*) FROM gen" 1000
	log_lacks 'exp/witness: .*limit reached'
	log_lacks 'over --max-buffered-exp'
	echo "$(grep -c 'over --max-buffered (' "$LOG") of 9 holders closed" >&3
}

@test "a client trickling a never-finished packet is closed after -t, however often it sends" {
	start_server -t 2 --max-packet 1048576
	local t0 port
	t0=$(date +%s)
	bg trickle_packet
	wait_log 'ready: slow:trickle:'
	port=$(sed -n 's/.*client [^ ]* port \([0-9]*\) ready: slow:trickle.*/\1/p' "$LOG")
	wait_log "client 127.0.0.1 port $port idle timeout: 0 rows stored" 10
	echo "closed after $(( $(date +%s) - t0 )) s of 16 KiB/s into a 1 MiB packet" >&3
	[ $(( $(date +%s) - t0 )) -ge 2 ]
}

# A header and binary packets of NFIELDS vectors (or blobs) of NELEM
# elements each, one packet per NELEM given (seq-no 1, 2...), with values
# whose text is as long as their type's can be:
# vecpkt EXP TYPE NFIELDS NELEM...
vecpkt() {
	perl -e '
		my ($exp, $type, $nf, @sizes) = @ARGV;
		my %code = ("[bool]" => 0x0e, "[int32]" => 0x05, "[int64]" => 0x07,
		    "[uint64]" => 0x08, "[double]" => 0x0f);
		print "protocol: 5\ndomain: $exp\nsender-id: big\nschema: 1 big " .
		    join(" ", map { "f$_:$type" } 1 .. $nf) . "\ncontent: binary\n\n";
		my $seq = 0;
		for my $ne (@sizes) {
			my $b = pack("CCCNC", $nf, 1, 0x05, ++$seq, 0x02) . pack("H*", "3000000001");
			for (1 .. $nf) {
				if ($type eq "blob") { $b .= pack("CN", 0x09, $ne) . ("z" x $ne); next; }
				$b .= pack("CCn", 0x0d, $code{$type}, $ne);
				if ($type eq "[bool]") { $b .= chr(0x0b) x $ne; }		# false
				elsif ($type eq "[int32]") { $b .= pack("N", 0x80000000) x $ne; }
				elsif ($type eq "[double]") { $b .= pack("d>", -1.23456789012345e-300) x $ne; }
				else { $b .= pack("NN", 0x80000000, 0) x $ne; }
			}
			print pack("CCCN", 0xAA, 0xAA, 2, length $b) . $b;
		}' "$@"
}

@test "one large row of each type costs about twice its stored form, and a row too long once stored is dropped by name" {
	start_server --max-packet 4194304
	local exp type nf ne pid before after stored pkt
	while read -r exp type nf ne; do
		send -e "$exp" -n 1		# the database open, and warm
		wait_log "exp/$exp: database .* closed"
		pid=$(exp_pid "$exp")
		before=$(hwm "$pid")
		vecpkt "$exp" "$type" "$nf" "$ne" >"$T/pkt"
		pkt=$(stat -c %s "$T/pkt")
		"$OMLSEND" -q -r "$T/pkt" "127.0.0.1:$PORT"
		wait_q "$exp" "SELECT count(*) FROM big" 1
		stored=$(q "$exp" "SELECT $(seq -s + -f 'length(f%g)' 1 "$nf") FROM big")
		after=$(hwm "$pid")
		echo "$type: packet $pkt B, stored $stored B, VmHWM +$(( after - before )) KiB" >&3
		[ -n "${OML2_SANITIZED:-}" ] ||
		    [ $(( (after - before) * 1024 )) -lt $(( 2 * stored + 3 * 1048576 )) ]
	done <<-LIST
		vbool [bool] 9 65535
		vint32 [int32] 4 65535
		vint64 [int64] 2 65535
		vuint64 [uint64] 3 65535
		vdouble [double] 2 65535
		vblob blob 1 4194200
	LIST
	# the original's text form, whatever the size
	[ "$(q vbool "SELECT substr(f1, 1, 16) || '|' || substr(f9, length(f9) - 9) FROM big")" = '[ false, false, |e, false ]' ]
	[ "$(q vint32 "SELECT substr(f1, 1, 15) FROM big")" = '[ -2147483648, ' ]
	[ "$(q vdouble "SELECT substr(f2, length(f2) - 25) FROM big")" = ', -1.23456789012345e-300 ]' ]
	[ "$(q vuint64 "SELECT substr(f3, 1, 22) FROM big")" = '[ 9223372036854775808,' ]
	# ten [bool] vectors would take 4.6 MB once stored: dropped, and the
	# connection goes on
	vecpkt long '[bool]' 10 65535 1 >"$T/pkt"
	"$OMLSEND" -q -r "$T/pkt" "127.0.0.1:$PORT"
	wait_log 'client 127.0.0.1 port [0-9]+: tuple dropped: big: row longer than --max-packet \(4194304\) once stored'
	wait_q long "SELECT oml_seq, f10 FROM big" '2|[ false ]'
}

@test "a large vector row waiting out a full disk is stored whole once space returns" {
	need_root
	mount -t tmpfs -o size=256k,mode=0755 oml2test "$DATA"
	start_server --max-packet 4194304
	vecpkt full '[bool]' 9 65535 65535 >"$T/pkt"
	bg "$OMLSEND" -q -r "$T/pkt" -H 30000 "127.0.0.1:$PORT"
	wait_log 'ERROR exp/full: .*/full.sq3: cannot be written \(database or disk is full\)'
	mount -o remount,size=64m "$DATA"
	wait_log 'exp/full: .*/full.sq3: written again after [0-9.]+ s' 20
	wait_q full "SELECT count(*), sum(length(f1) + length(f9)) FROM big" "2|$(( 4 * 458747 ))"
	[ "$(q full "SELECT count(*) FROM big WHERE f5 LIKE '[ false, %, false ]'")" = 2 ]
	[ "$(q full 'PRAGMA integrity_check')" = ok ]
	umount "$DATA" 2>/dev/null || true
}
