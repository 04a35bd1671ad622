#!/usr/bin/env bats
# Operations: the manual page, make install/uninstall, the systemd unit and
# its defaults file, log rotation, and the HAProxy scale-out recipe.

load helpers

MAN=$T_TOP/man1/oml2-server.1
UNIT_IN=$T_TOP/etc/oml2-server.service.in

# make install/uninstall in the source tree, quietly: inst TARGET VAR=...
inst() {
	make -s -C "$T_TOP" --no-print-directory "$@" >"$T/make.out" 2>&1 || {
		cat "$T/make.out" >&2
		return 1
	}
}

# Every file and symlink under $1, relative to it, sorted.
files_under() {
	(cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort)
}

# Long options named by a program's --help, and by its manual page's Fl
# macros: help_options PROGRAM, man_options PAGE.
help_options() {
	"$1" --help | grep -o -E -- '--[a-z][a-z0-9-]*' | sort -u
}
man_options() {
	grep -o -E 'Fl \\-[a-z][a-z0-9-]*' "$1" | sed 's/^Fl \\/-/' | sort -u
}

# The same options in --help and the manual: same_options PROGRAM PAGE MIN.
same_options() {
	diff <(help_options "$1") <(man_options "$2") >&2 || {
		echo "$1: < only in --help, > only in the manual" >&2
		return 1
	}
	[ "$(help_options "$1" | wc -l)" -ge "$3" ]
}

# What make install puts in BINDIR and MANDIR/man1.
BINS="oml2-server oml2-import oml2-merge oml2ctl"


# A server of its own in $T/$1 (data dir $T/$1/data, log $T/$1/log), with
# any further options; its port is left in $NPORT, its pid in $NPID:
# start_named NAME [OPTION...]
start_named() {
	local d=$T/$1
	shift
	mkdir -p "$d/data"
	bg "$OML2_SERVER" -l 127.0.0.1:0 -D "$d/data" --logfile="$d/log" -d 4 \
	    "$@" >>"$d/log.out" 2>&1
	NPID=$BG
	wait_for 10 grep -qs ' ready: ' "$d/log" || return 1
	NPORT=$(log_port "$d/log")
	[ -n "$NPORT" ]
}

# Rows of experiment lb over the three servers' databases.
lb_rows() {
	local s n sum=0
	for s in a b c; do
		n=$(sqlite "$T/$s/data/lb.sq3" "SELECT count(*) FROM gen" 2>/dev/null)
		sum=$((sum + ${n:-0}))
	done
	echo "$sum"
}
lb_rows_are() {
	[ "$(lb_rows)" -eq "$1" ]
}

# oml2ctl lists experiment unit with its 7 rows.
unit_listed() {
	[ "$("$(dirname "$OML2_SERVER")/oml2ctl" -s "$DATA/oml2-server.sock" --json list |
	    jq -r '.experiments[0].name + " " + (.experiments[0].rows_stored | tostring)')" = "unit 7" ]
}

port_listening() {
	ss -Htln "( sport = :$1 )" | grep -q .
}

@test "the manual pages are clean under mandoc -Tlint -Wwarning" {
	local b
	for b in $BINS; do
		run mandoc -Tlint -Wwarning "$T_TOP/man1/$b.1"
		[ "$status" -eq 0 ]
		[ -z "$output" ]
	done
}

@test "--help and the manual page name the same long options, for the server and each tool" {
	local OML2CTL=${OML2CTL:-$(dirname "$OML2_SERVER")/oml2ctl}
	same_options "$OML2_SERVER" "$MAN" 21
	same_options "$OML2_IMPORT" "$T_TOP/man1/oml2-import.1" 15
	same_options "$OML2_MERGE" "$T_TOP/man1/oml2-merge.1" 4
	same_options "$OML2CTL" "$T_TOP/man1/oml2ctl.1" 6
}

@test "make install writes the server, manual and examples under DESTDIR alone" {
	local dest=$T/dest f before after
	before=$(ls -d /usr/local/bin/oml2-server /usr/local/share/oml2 \
	    /usr/local/lib/systemd/system/oml2-server.service \
	    /usr/local/share/man/man1/oml2-server.1 2>/dev/null || true)
	inst install DESTDIR="$dest" PREFIX=/usr/local
	after=$(ls -d /usr/local/bin/oml2-server /usr/local/share/oml2 \
	    /usr/local/lib/systemd/system/oml2-server.service \
	    /usr/local/share/man/man1/oml2-server.1 2>/dev/null || true)
	[ "$before" = "$after" ]
	for f in $(printf 'usr/local/bin/%s ' $BINS) \
	    $(printf 'usr/local/share/man/man1/%s.1 ' $BINS) \
	    usr/local/lib/systemd/system/oml2-server.service \
	    usr/local/share/oml2/oml2-server.service \
	    usr/local/share/oml2/oml2-server.default \
	    usr/local/share/oml2/oml2-server.logrotate \
	    usr/local/share/oml2/haproxy.cfg; do
		[ -f "$dest/$f" ] || { echo "not installed: $f" >&2; return 1; }
	done
	for f in $BINS; do
		[ -x "$dest/usr/local/bin/$f" ]
	done
	# Only DESTDIR is prepended: the unit names the final path.
	grep -q '^ExecStart=/usr/local/bin/oml2-server ' \
	    "$dest/usr/local/lib/systemd/system/oml2-server.service"
	! grep '@[A-Z]*@' "$dest/usr/local/lib/systemd/system/oml2-server.service" || return 1
	for f in $BINS; do
		run mandoc -Tlint -Wwarning "$dest/usr/local/share/man/man1/$f.1"
		[ -z "$output" ]
	done
}

@test "the installed server and tools report their version, and the server stores a client's rows" {
	local dest=$T/dest f
	inst install DESTDIR="$dest" PREFIX=/usr
	for f in $BINS; do
		run "$dest/usr/bin/$f" --version
		[ "$status" -eq 0 ]
		[[ "${lines[0]}" == "$f (OML Server) "* ]]
	done
	OML2_SERVER=$dest/usr/bin/oml2-server start_server
	send -e installed -n 12
	wait_rows installed gen 12
	stop_server
}

@test "make uninstall leaves nothing but empty directories in DESTDIR" {
	local dest=$T/dest
	inst install DESTDIR="$dest" PREFIX=/opt/oml2
	[ -n "$(files_under "$dest")" ]
	inst uninstall DESTDIR="$dest" PREFIX=/opt/oml2
	run files_under "$dest"
	[ -z "$output" ] || { echo "left behind: $output" >&2; return 1; }
}

@test "the installed systemd unit passes systemd-analyze verify" {
	local prefix=$T/usr unit
	# as a user, it needs the /run/systemd of a machine booted with systemd
	[ "$(id -u)" -eq 0 ] || [ -d /run/systemd ] ||
		skip "systemd-analyze verify as a user needs /run/systemd"
	# No DESTDIR: the unit's ExecStart names the binary installed here.
	inst install PREFIX="$prefix"
	unit=$prefix/lib/systemd/system/oml2-server.service
	grep -q "^ExecStart=$prefix/bin/oml2-server " "$unit"
	# (--man=no: man-db is not among the test dependencies; the page
	# itself is linted above.)
	run systemd-analyze verify --man=no "$unit"
	[ "$status" -eq 0 ] && [ -z "$output" ] || { echo "$output" >&2; return 1; }
	# A unit that names a missing binary does not pass.
	rm "$prefix/bin/oml2-server"
	run systemd-analyze verify --man=no "$unit"
	[ "$status" -ne 0 ]
}

@test "the defaults file, the unit and the logrotate file agree" {
	local v used log
	used=$(sed -n 's/^ExecStart=//p' "$UNIT_IN" |
	    grep -o -E '\$\{?[A-Z0-9_]+' | tr -d '${' | sort -u)
	[ -n "$used" ]
	for v in $used; do
		grep -q -E "^$v=" "$T_TOP/etc/oml2-server.default" ||
			{ echo "defaults file lacks $v" >&2; return 1; }
		grep -q -E "^Environment=.*\\b$v=" "$UNIT_IN" ||
			{ echo "unit has no default for $v" >&2; return 1; }
	done
	grep -q '^EnvironmentFile=-/etc/default/oml2-server$' "$UNIT_IN"
	# The log the unit writes is the one logrotate rotates.
	log=$(sed -n 's/^LOGFILE=//p' "$T_TOP/etc/oml2-server.default")
	grep -q -F "LOGFILE=$log " "$UNIT_IN"
	grep -q -F "$log {" "$T_TOP/etc/oml2-server.logrotate"
	grep -q -E '^LogsDirectory=oml2$' "$UNIT_IN"
	[[ "$log" == /var/log/oml2/* ]]
}

@test "the unit's command line, with only the unit's capabilities, serves clients as the unprivileged user" {
	need_root
	ensure_test_user
	local caps exec prefix=$T/usr DATADIR OML2_USER LOGFILE OPTIONS
	inst install PREFIX="$prefix"
	# CapabilityBoundingSet=CAP_A CAP_B -> setpriv's -all,+a,+b
	caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT_IN" | tr 'A-Z' 'a-z' |
	    sed 's/cap_//g; s/^/-all /; s/ \([a-z]\)/,+\1/g')
	[[ "$caps" == -all,+setuid,* ]]
	grep -q '^NoNewPrivileges=yes$' "$UNIT_IN"
	# What /etc/default/oml2-server would say on this host.
	DATADIR=$DATA OML2_USER=$T_USER LOGFILE=$LOG
	OPTIONS="-l 127.0.0.1:0 -d 4"
	chown "$T_USER" "$DATA"
	exec=$(sed -n 's/^ExecStart=//p' "$prefix/lib/systemd/system/oml2-server.service")
	eval "set -- $exec"
	[ "$1" = "$prefix/bin/oml2-server" ]
	run_server setpriv --bounding-set="$caps" --inh-caps=-all --no-new-privs \
	    -- "$@"
	grep -q "experiment processes run as $T_USER" "$LOG"
	send -e unit -n 7
	wait_rows unit gen 7
	[ "$(stat -c %U "$DATA/unit.sq3")" = "$T_USER" ]
	[ "$(ps -o user= -p "$(exp_pid unit)")" = "$T_USER" ]
	# oml2ctl reaches it, through a socket made in --user's directory.
	[ "$(stat -c '%a %U' "$DATA/oml2-server.sock")" = "660 $T_USER" ]
	wait_for 10 unit_listed
	# The master holds the unit's capabilities and no more: kill (5),
	# setgid (6), setuid (7), net_bind_service (10).
	grep -q -P '^CapEff:\t00000000000004e0$' "/proc/$SERVER_PID/status"
	stop_server
}

@test "after the log file is renamed, SIGHUP sends every process's lines to a new file" {
	local exp1
	start_server
	send -e rot -n 1 -S before
	wait_rows rot gen 1
	exp1=$(exp_pid rot)
	[ -n "$exp1" ]
	# What logrotate does with "create": rename, new empty file, signal.
	mv "$LOG" "$LOG.1"
	install -m 0640 /dev/null "$LOG"
	kill -HUP "$SERVER_PID"
	wait_log 'master: log reopened'
	send -e rot -n 1 -S after
	wait_rows rot gen 2
	# The same experiment process wrote its line to the new file.
	[ "$(exp_pid rot)" = "$exp1" ]
	wait_log 'exp/rot: client .* ready: rot:after:'
	grep -q 'ready: rot:before:' "$LOG.1"
	! grep 'rot:after' "$LOG.1" || return 1
	! grep 'rot:before' "$LOG" || return 1
	stop_server
	grep -q 'master: stopped' "$LOG"
}

@test "HAProxy with the shipped configuration spreads clients over three servers, storing every row" {
	local a b c hport cfg=$T/haproxy.cfg s i total=0 n clients=0
	local -A pid
	# (the shipped file has HAProxy send a PROXY preamble)
	start_named a --proxy-from=127.0.0.1 && a=$NPORT && pid[a]=$NPID
	start_named b --proxy-from=127.0.0.1 && b=$NPORT && pid[b]=$NPID
	start_named c --proxy-from=127.0.0.1 && c=$NPORT && pid[c]=$NPID
	# The shipped file with this test's ports, logging to its output,
	# health checks included.
	hport=$(free_port)
	sed -e "s|^\([[:space:]]*log\) /dev/log |\1 stdout format raw |" \
	    -e "s|^\([[:space:]]*bind\) :3003\$|\1 127.0.0.1:$hport|" \
	    -e "s|^\([[:space:]]*\)balance leastconn\$|&\n\1option log-health-checks|" \
	    -e "s| 192\.0\.2\.11:3003 | 127.0.0.1:$a |" \
	    -e "s| 192\.0\.2\.12:3003 | 127.0.0.1:$b |" \
	    -e "s| 192\.0\.2\.13:3003 | 127.0.0.1:$c |" \
	    "$T_TOP/etc/haproxy.cfg" >"$cfg"
	[ "$(grep -c "127.0.0.1:" "$cfg")" -eq 4 ]
	grep -q 'balance leastconn' "$cfg"
	haproxy -c -q -f "$cfg"
	bg haproxy -db -f "$cfg" >"$T/haproxy.out" 2>&1
	wait_for 10 port_listening "$hport"
	# Every server passes HAProxy's health check.
	for s in a b c; do
		wait_for 10 grep -q "server oml2-server/oml2-$s succeeded" "$T/haproxy.out" ||
			{ cat "$T/haproxy.out" >&2; return 1; }
	done
	# (from an address of their own, which the servers learn from
	# HAProxy's PROXY preamble)
	for i in 1 2 3 4 5 6; do
		"$OMLSEND" -q -e lb -S "node$i" -n 50 -l 127.0.0.2 "127.0.0.1:$hport"
	done
	for s in a b c; do
		wait_for 10 eval "[ -f $T/$s/data/lb.sq3 ]" ||
			{ echo "server $s got no client" >&2; cat "$T/haproxy.out" >&2; return 1; }
	done
	# SQLite: each server has its own lb.sq3, with its share of the rows.
	wait_for 10 lb_rows_are 300 || { echo "rows: $(lb_rows)" >&2; return 1; }
	for s in a b c; do
		n=$(sqlite "$T/$s/data/lb.sq3" "SELECT count(DISTINCT oml_sender_id) FROM gen")
		total=$((total + n))
		# Health checks and clients through the proxy, yet no warning
		# (but the one about running as root).
		! grep -E ' (WARN|ERROR) ' "$T/$s/log" | grep -v 'running as root' ||
			return 1
		# every client by its own address, none by HAProxy's
		n=$(grep -c 'exp/lb: client 127\.0\.0\.2 port [0-9]* connected' "$T/$s/log")
		[ "$n" -ge 1 ]
		clients=$((clients + n))
		! grep 'exp/lb: client 127\.0\.0\.1 ' "$T/$s/log" || return 1
	done
	[ "$total" -eq 6 ]
	[ "$clients" -eq 6 ]
	for s in a b c; do
		kill -TERM "${pid[$s]}"
		wait "${pid[$s]}"
	done
}
