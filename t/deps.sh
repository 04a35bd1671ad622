#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# As root this runs apt-get.  Otherwise it says in one line what is
# missing and fails: nothing after it could build or run without them.
#
# The machine's services are left as Debian's packages set them up:
# installing postgresql, haproxy or prometheus starts the system's own
# instance, and the test suite runs instances of its own on free ports
# beside it.
missing=
for p in "$@"; do
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
	case "$s" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing; run 'make deps' as root (or apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || exit 1
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null || {
	echo "deps: apt-get install$missing failed" >&2
	exit 1
}
exit 0
