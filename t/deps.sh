#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# As root this runs apt-get; otherwise it names what is missing and goes on,
# so that a developer without root can still build what they have.
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
	echo "deps: missing Debian packages:$missing (run 'make deps' as root)" >&2
	exit 0
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || exit 1
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null || exit 1
# The Debian haproxy, postgresql, prometheus, influxdb and victoria-metrics
# packages start system-wide services; the tests and the benchmark run
# their own instances and do not need them.
for svc in haproxy postgresql prometheus influxdb victoria-metrics; do
	case "$missing" in *"$svc"*)
		(systemctl stop "$svc" || service "$svc" stop) >/dev/null 2>&1 ;;
	esac
done
exit 0
