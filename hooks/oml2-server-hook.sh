#!/bin/sh
# oml2-server-hook.sh -- an event hook for oml2-server -H (see "EVENT HOOK"
# in oml2-server(1)): when an experiment's last client has left (DBCLOSED),
# dump its database as SQL text and upload the dump to iRODS with iput.
#
# Settings come from the environment, else from the defaults file
# $OML2_HOOK_CONF (by default /usr/local/etc/oml2-server-hook.conf, the
# path `make install' gives it), a shell fragment of VAR=value lines:
#   IRODS_DEST      iRODS collection the dumps go to (default: iput's own
#                   default, the current collection)
#   IRODS_RESOURCE  iRODS resource (iput -R), default none
#   IPUT_OPTS       more iput options, split at spaces (e.g. "-f -K")
#   DUMP_DIR        where dumps are written (default: next to the SQLite
#                   database; ${TMPDIR:-/tmp} for PostgreSQL)
#   KEEP_DUMP       "no" removes a dump once uploaded (default yes)
#   HOOK_LOG        also append what it does to this file
# and whatever iput and pg_dump read from the environment (IRODS_*,
# PGPASSFILE, ...).  It runs as the server's --user, which must be able to
# run iput without a password prompt (iinit once, as that user).
#
# Every line it logs goes to its stderr, which the server logs as
# "exp/NAME: hook: ...".  Blank lines and unknown commands are skipped.

# The server's process may end before an upload does; a log line written
# after that must not kill the upload.
trap '' PIPE

conf=${OML2_HOOK_CONF:-/usr/local/etc/oml2-server-hook.conf}
vars="IRODS_DEST IRODS_RESOURCE IPUT_OPTS DUMP_DIR KEEP_DUMP HOOK_LOG"
if [ -r "$conf" ]; then
	# What the environment sets wins over the file.
	for v in $vars; do
		eval "env_$v=\${$v-} envset_$v=\${$v+1}"
	done
	# shellcheck source=/dev/null
	. "$conf"
	for v in $vars; do
		eval "[ -z \"\$envset_$v\" ] || $v=\$env_$v"
	done
fi

log() {
	printf '%s\n' "$*" >&2
	if [ -n "${HOOK_LOG:-}" ]; then
		printf '%s %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >>"$HOOK_LOG" 2>/dev/null
	fi
}

# Upload $1 to iRODS.  Nothing here may read the hook's stdin: it carries
# the server's commands.
upload() {
	dest=
	[ -z "${IRODS_DEST:-}" ] || dest=${IRODS_DEST%/}/${1##*/}
	# IPUT_OPTS is a list of options: split it.
	# shellcheck disable=SC2086
	if iput ${IPUT_OPTS:-} ${IRODS_RESOURCE:+-R "$IRODS_RESOURCE"} \
	    "$1" ${dest:+"$dest"} </dev/null >&2; then
		log "uploaded $1 to iRODS${dest:+ as $dest}"
		case ${KEEP_DUMP:-yes} in
		[Nn]*)	rm -f -- "$1" ;;
		esac
	else
		log "iput of $1 failed (status $?); the dump is kept"
	fi
}

# A dump file name not taken yet: dump_path DIR NAME KIND
dump_path() {
	stamp=$(date +%Y%m%dT%H%M%S)
	p=$1/$2.$stamp.$3.sql
	n=1
	while [ -e "$p" ]; do
		n=$((n + 1))
		p=$1/$2.$stamp-$n.$3.sql
	done
	printf '%s\n' "$p"
}

dump_sqlite() {
	file=${1#file:}
	name=${file##*/}
	name=${name%.sq3}
	out=$(dump_path "${DUMP_DIR:-${file%/*}}" "$name" sqlite)
	if sqlite3 -batch -cmd '.timeout 10000' "$file" .dump </dev/null >"$out"; then
		log "dumped $1 to $out"
		upload "$out"
	else
		log "sqlite3 could not dump $1"
		rm -f -- "$out"
	fi
}

# postgresql://USER@HOST:PORT/DBNAME
dump_pg() {
	rest=${1#postgresql://}
	user=${rest%%@*}
	rest=${rest#*@}
	hostport=${rest%%/*}
	db=${rest#*/}
	host=${hostport%:*}
	port=${hostport##*:}
	out=$(dump_path "${DUMP_DIR:-${TMPDIR:-/tmp}}" "$db" pg)
	if pg_dump --no-password -h "$host" -p "$port" -U "$user" -f "$out" "$db" </dev/null; then
		log "dumped $1 to $out"
		upload "$out"
	else
		log "pg_dump could not dump $1"
		rm -f -- "$out"
	fi
}

echo "OML HOOK READY"
while IFS= read -r line; do
	cmd=${line%% *}
	arg=${line#"$cmd"}
	arg=${arg# }
	case $cmd in
	"")
		;;
	EXIT)
		log "EXIT: done"
		exit 0
		;;
	DBCREATED|DBOPENED)
		log "$cmd $arg"
		;;
	DBCLOSED)
		log "$cmd $arg"
		case $arg in
		file:*)		dump_sqlite "$arg" ;;
		postgresql://*)	dump_pg "$arg" ;;
		*)		log "unknown database URI scheme: $arg" ;;
		esac
		;;
	*)
		log "unknown command: $line"
		;;
	esac
done
