#!/bin/bash
# make test-fresh: README's two commands on a freshly bootstrapped Debian 12,
# as a new user would run them.  Not part of `make test`; needs root, the
# debootstrap package and the Debian mirror this machine's apt uses.
#
# A minimal root (debootstrap --variant=minbase, cached as a tarball in
# $FRESH_CACHE) gets `apt-get install make git`, as README asks of a bare
# Debian, and the packages the Makefile names are downloaded into its apt
# cache.  The checkout's HEAD is cloned into /root/oml2-server and into
# /home/fresh/oml2-server, both homes of mode 0700.  Then, in a chroot in
# namespaces of its own (network: loopback only; pids; mounts), in turn:
#   1. the user `fresh` runs `make test`: nothing is installed, so it must
#      stop at once with the one line saying what to install as root;
#   2. root runs `make run`, which installs what it needs (from the apt
#      cache) and serves on port 3003: a client's rows must be there in
#      data/*.sq3, read with sqlite3, after Ctrl-C (SIGINT) stops it;
#   3. root runs `make test`, which must install the rest and pass, and
#      leave running the system's postgresql, haproxy and prometheus
#      services that their packages started (as on a booted machine: see setup_root);
#   4. `fresh` runs `make test` again: it must pass now that root has
#      installed the packages (the tests that need root skip).
# Each step's output is in $FRESH_DIR/*.log; the root is removed at the
# end unless FRESH_KEEP=1.

set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
SUITE=bookworm
CACHE=${FRESH_CACHE:-/var/cache/oml2-server-fresh}
ME=fresh

say() { printf 'fresh: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

# "URI SUITE" for each Debian source apt has, from one-line and deb822
# files alike.
apt_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			print $i, $(i + 1) }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
		{ types = uris = suites = ""; on = 1
		  for (i = 1; i <= NF; i++) {
			if ($i ~ /^#/) continue
			v = $i; sub(/^[^:]*:[ \t]*/, "", v)
			if ($i ~ /^Types:/) types = v
			else if ($i ~ /^URIs:/) uris = v
			else if ($i ~ /^Suites:/) suites = v
			else if ($i ~ /^Enabled:[ \t]*no/) on = 0
		  }
		  if (!on || types !~ /(^| )deb( |$)/) next
		  nu = split(uris, u, " "); ns = split(suites, s, " ")
		  for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) print u[a], s[b] }' "$f"
	done
}

# The base root, bootstrapped once and kept as a tarball.
base_tarball() {
	local tar=$CACHE/$SUITE-minbase.tar.gz tmp
	if [ -s "$tar" ] && [ "$(cat "$tar.mirror" 2>/dev/null)" = "$MIRROR" ]; then
		say "base root: $tar (cached)"
		return 0
	fi
	say "base root: debootstrap --variant=minbase $SUITE from $MIRROR"
	tmp=$(mktemp -d "$CACHE/boot.XXXXXX") || return 1
	debootstrap --variant=minbase "$SUITE" "$tmp/root" "$MIRROR" \
	    >"$tmp/debootstrap.log" 2>&1 || {
		tail -n 20 "$tmp/debootstrap.log" >&2
		rm -rf "$tmp"
		return 1
	}
	tar -C "$tmp/root" -czf "$tmp/base.tar.gz" . &&
	    mv "$tmp/base.tar.gz" "$tar" && echo "$MIRROR" >"$tar.mirror"
	rm -rf "$tmp"
	[ -s "$tar" ]
}

# Run a command in the chroot, in namespaces of its own: private mounts
# and pids (whatever it leaves running dies with it), and, unless the first
# argument is "net", a network of its own with only a loopback.
in_root() {
	local net=--net
	[ "$1" = net ] && { net=; shift; }
	# shellcheck disable=SC2086
	unshare --mount --pid --fork --uts --ipc $net --propagation private \
	    /bin/sh -c '
		R=$1 NET=$2; shift 2
		[ -z "$NET" ] || ip link set lo up || exit 1
		mount --rbind /dev "$R/dev" &&
		mount -t tmpfs -o mode=1777 shm "$R/dev/shm" &&
		mount -t proc proc "$R/proc" &&
		mount -t sysfs sys "$R/sys" &&
		mount -t tmpfs -o mode=755 run "$R/run" &&
		mkdir -m 1777 "$R/run/lock" &&
		mount --bind "$CACHE/archives" "$R/var/cache/apt/archives" ||
			exit 1
		exec chroot "$R" /usr/bin/env -i HOME=/root USER=root \
		    LOGNAME=root LANG=C.UTF-8 TERM=dumb \
		    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		    "$@"' fresh "$ROOT" "$net" "$@"
}

# Time a step: step NAME CMD...; its output goes to $FRESH_DIR/NAME.log.
step() {
	local name=$1 t0 rc=0
	shift
	t0=$(date +%s)
	"$@" >"$FRESH_DIR/$name.log" 2>&1 || rc=$?
	STEPS="$STEPS$(printf '%-22s %5d s  %s' "$name" $(($(date +%s) - t0)) \
	    "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED ($rc)")")
"
	if [ "$rc" -ne 0 ]; then
		say "$name failed ($rc); the end of $FRESH_DIR/$name.log:"
		tail -n 40 "$FRESH_DIR/$name.log"
		FAILED="$FAILED $name"
	else
		say "$name: ok"
	fi
	return "$rc"
}

# --- Inside the chroot (bash /fresh/fresh.sh inside STEP) ---------------

# As the user, before root installed anything: one line naming what is
# missing and how to get it, and a non-zero status.
inside_user_first() {
	local out rc=0
	out=$(runuser -l "$ME" -c 'cd oml2-server && make test' 2>&1) || rc=$?
	printf '%s\n' "$out"
	[ "$rc" -ne 0 ] || { echo "make test succeeded without its packages"; return 1; }
	[ "$(printf '%s\n' "$out" | grep -c '^deps: ')" -eq 1 ] &&
	    printf '%s\n' "$out" | grep -q "^deps: missing Debian packages: .*gcc.*; run 'make deps' as root" || {
		echo "no one-line message naming the missing packages"
		return 1
	}
	! printf '%s\n' "$out" | grep -q -E '^(cc|gcc|bats)|No such file' || {
		echo "make went on without its packages"
		return 1
	}
}

# make run as root: it serves on 3003 and stores a client's rows, which
# sqlite3 (installed by make run) reads back after Ctrl-C.
inside_root_run() {
	local pid i n
	cd /root/oml2-server || return 1
	# setsid: a process group of its own, as a terminal's foreground job
	setsid make run >/tmp/run.out 2>&1 </dev/null &
	pid=$!
	for i in $(seq 1200); do
		grep -q ' ready: ' /tmp/run.out && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	grep -q 'listening on .*:3003$' /tmp/run.out ||
		{ cat /tmp/run.out; echo "not listening on 3003"; return 1; }
	./t/omlsend -q -e fresh -n 25 127.0.0.1:3003 || { echo "omlsend failed"; return 1; }
	# Ctrl-C once the client is in its experiment's process
	for i in $(seq 60); do
		grep -q ' ready: fresh:' /tmp/run.out && break
		sleep 0.5
	done
	kill -INT -- "-$pid"
	wait "$pid"
	echo "make run exited with status $?"
	cat /tmp/run.out
	! grep -l '^oml2-server' /proc/[0-9]*/comm 2>/dev/null ||
		{ echo "a server is still running"; return 1; }
	n=$(sqlite3 data/fresh.sq3 'SELECT count(*) FROM gen') || return 1
	echo "data/fresh.sq3: $n rows in gen"
	[ "$n" -eq 25 ]
}

inside_root_test() {
	local rc=0 svc
	cd /root/oml2-server && make test || rc=1
	# whatever the tests said, the system's services are as the packages
	# left them: running
	pg_lsclusters
	pg_lsclusters -h | grep -q ' online ' ||
		{ echo "the system's postgresql is not running"; rc=1; }
	for svc in haproxy prometheus; do
		if pgrep -x "$svc" >/dev/null; then
			echo "the system's $svc is running"
		else
			echo "the system's $svc is not running"
			rc=1
		fi
	done
	return "$rc"
}

inside_user_test() {
	runuser -l "$ME" -c 'echo "PATH=$PATH"; cd oml2-server && make test'
}

if [ "${1:-}" = inside ]; then
	"inside_$2"
	exit
fi

# --- Outside --------------------------------------------------------------

setup_root() {
	base_tarball || return 1
	mkdir -p "$ROOT" && tar -C "$ROOT" -xzf "$CACHE/$SUITE-minbase.tar.gz" || return 1
	apt_sources | awk -v s="$SUITE" '$2 ~ "^" s "(-updates|-security)?$" {
		print "deb", $1, $2, "main" }' | sort -u >"$ROOT/etc/apt/sources.list"
	cat "$ROOT/etc/apt/sources.list"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
	# On a booted machine, packages start their services when they are
	# installed; in a chroot, invoke-rc.d finds no init system and no
	# runlevel, and Debian's postgresql and haproxy would stay stopped.
	# A policy that allows it and runlevel 2 make them start as they would.
	printf '#!/bin/sh\n# (fresh.sh) start services, as a booted machine does\nexit 0\n' \
	    >"$ROOT/usr/sbin/policy-rc.d" &&
	printf '#!/bin/sh\n# (fresh.sh) runlevel 2, as a booted machine\necho N 2\n' \
	    >"$ROOT/usr/sbin/runlevel" &&
	chmod 755 "$ROOT/usr/sbin/policy-rc.d" "$ROOT/usr/sbin/runlevel" &&
	mkdir -p "$ROOT/fresh" && cp "$TOP/t/fresh.sh" "$ROOT/fresh/fresh.sh" || return 1
	# what README asks of a bare Debian, and the packages the Makefile
	# names, downloaded while there is a network
	in_root net sh -c 'apt-get update -q &&
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends make git' ||
		return 1
	pkgs=$(make -s -C "$TOP" --no-print-directory \
	    --eval 'fresh-deps: ; @echo $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST)' fresh-deps) ||
		return 1
	echo "downloading: $pkgs"
	# shellcheck disable=SC2086
	in_root net apt-get install -y -q --no-install-recommends --download-only $pkgs ||
		return 1
	# the checkout, in two homes of mode 0700
	in_root useradd -m -s /bin/bash "$ME" || return 1
	chmod 700 "$ROOT/root" "$ROOT/home/$ME" &&
	git clone -q --no-hardlinks "$TOP" "$ROOT/root/oml2-server" &&
	git clone -q --no-hardlinks "$TOP" "$ROOT/home/$ME/oml2-server" &&
	in_root chown -R "$ME:$ME" "/home/$ME/oml2-server" || return 1
	git -C "$ROOT/root/oml2-server" log --oneline -1
	ls -ld "$ROOT/root" "$ROOT/home/$ME"
}

# The chroot's mounts live and die in its own namespaces; should one be
# seen here all the same, the root is left alone rather than removed
# through it.
cleanup() {
	[ -z "${FRESH_KEEP:-}" ] || return 0
	if grep -q -F " $ROOT/" /proc/self/mountinfo; then
		say "mounts under $ROOT: not removing it" >&2
		return 1
	fi
	rm -rf "$ROOT"
}

main() {
	local start
	[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, namespaces)"
	sh "$TOP/t/deps.sh" debootstrap git || exit 1
	MIRROR=$(apt_sources | awk -v s="$SUITE" '$2 == s { print $1; exit }')
	[ -n "$MIRROR" ] || die "no source for Debian $SUITE in /etc/apt/sources.list{,.d}"
	git -C "$TOP" diff --quiet HEAD 2>/dev/null ||
		say "note: uncommitted changes in $TOP are not part of the clone"
	mkdir -p "$CACHE/archives/partial" || exit 1
	FRESH_DIR=${FRESH_DIR:-$(mktemp -d /var/tmp/oml2-fresh.XXXXXX)} || exit 1
	mkdir -p "$FRESH_DIR" || exit 1
	ROOT=$FRESH_DIR/root
	STEPS=
	FAILED=
	export CACHE
	start=$(date +%s)
	trap cleanup EXIT
	say "in $FRESH_DIR"
	if step setup-root setup_root; then
		step user-make-test-first in_root bash /fresh/fresh.sh inside user_first
		step root-make-run in_root bash /fresh/fresh.sh inside root_run
		step root-make-test in_root bash /fresh/fresh.sh inside root_test
		step user-make-test in_root bash /fresh/fresh.sh inside user_test
	fi
	printf '%s' "$STEPS"
	say "$(($(date +%s) - start)) s in all; logs in $FRESH_DIR"
	[ -z "$FAILED" ] || die "failed:$FAILED"
	say "passed"
}

# (one line: bash reads a script as it runs, and this one may be edited
# meanwhile)
main "$@"; exit
