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
#                   database; for PostgreSQL, a directory of its own made
#                   with mktemp -d in ${TMPDIR:-/tmp})
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
# No word is ever a file name pattern (IPUT_OPTS is split, not globbed).
set -f

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

# Upload $1 (an absolute path) to iRODS.  Nothing here may read the
# hook's stdin: it carries the server's commands.
upload() {
	dest=
	[ -z "${IRODS_DEST:-}" ] || dest=${IRODS_DEST%/}/${1##*/}
	# IPUT_OPTS is a list of options: split it (globbing is off).
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

# Is $1 an experiment name as the server allows them?  Anything else
# (an option, a libpq setting, shell syntax) is not dumped.
valid_name() {
	case $1 in
	''|[!A-Za-z0-9_]*|*[!A-Za-z0-9_.:+-]*)
		return 1 ;;
	esac
	[ "${#1}" -le 63 ]
}

# An absolute directory for dumps: DUMP_DIR, else $1; or, for PostgreSQL,
# a directory of our own, made once (mode 0700, an unpredictable name),
# rather than a predictable name in a shared ${TMPDIR:-/tmp}.
own_dir=
dump_dir() {
	d=${DUMP_DIR:-$1}
	if [ -z "$d" ]; then
		if [ -z "$own_dir" ]; then
			own_dir=$(mktemp -d "${TMPDIR:-/tmp}/oml2-dumps.XXXXXX") ||
			    return 1
		fi
		d=$own_dir
	fi
	case $d in
	/*)	;;
	*)	d=$PWD/$d ;;
	esac
	printf '%s\n' "${d%/}"
}

# Dumps are written into a fresh private directory (mktemp -d: mode 0700,
# nothing can be planted in it) inside the dump directory, then given
# their name there with a hard link: link(2) neither follows nor replaces
# whatever is at the name already, so a link planted there is never
# written through.  dump_new DIR sets $tmpd and $part.
dump_new() {
	tmpd=$(mktemp -d "$1/.oml2-dump.XXXXXX") || return 1
	part=$tmpd/dump.sql
}

# Name the dump in $part NAME.STAMP[-N].KIND.sql in DIR; print the name.
# dump_publish DIR NAME KIND
dump_publish() {
	stamp=$(date +%Y%m%dT%H%M%S)
	p=$1/$2.$stamp.$3.sql
	n=1
	until ln -T -- "$part" "$p" 2>/dev/null; do
		# taken: try the next; free, yet refused: no hard links here
		[ -e "$p" ] || [ -L "$p" ] || return 1
		n=$((n + 1))
		[ "$n" -le 100 ] || return 1
		p=$1/$2.$stamp-$n.$3.sql
	done
	printf '%s\n' "$p"
}

dump_done() {
	rm -rf -- "$tmpd"
}

dump_sqlite() {
	file=${1#file:}
	name=${file##*/}
	name=${name%.sq3}
	case $file in
	/*)	;;
	*)	log "not an absolute path: $1; not dumped"; return ;;
	esac
	if ! valid_name "$name"; then
		log "not an experiment name: $name; not dumped"
		return
	fi
	if ! dir=$(dump_dir "${file%/*}") || ! dump_new "$dir"; then
		log "no directory for the dump of $1"
		return
	fi
	if ! sqlite3 -batch -cmd '.timeout 10000' "$file" .dump </dev/null >"$part"; then
		log "sqlite3 could not dump $1"
	elif ! out=$(dump_publish "$dir" "$name" sqlite); then
		log "could not name the dump of $1 in $dir"
	else
		log "dumped $1 to $out"
		dump_done
		upload "$out"
		return
	fi
	dump_done
}

# A libpq connection-string value: in single quotes, with \ and ' escaped.
pq_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/[\\\\']/\\\\&/g")"
}

# postgresql://USER@HOST:PORT/DBNAME, HOST perhaps [V6ADDR] or a socket
# directory.  The experiment's name is the last component (it holds no
# '/'); it reaches pg_dump only inside a connection string the hook builds,
# quoted, as the value of --dbname: never as an option or a setting.
dump_pg() {
	rest=${1#postgresql://}
	db=${rest##*/}
	rest=${rest%/*}
	user=${rest%@*}
	hostport=${rest##*@}
	host=${hostport%:*}
	port=${hostport##*:}
	host=${host#\[}
	host=${host%\]}
	if ! valid_name "$db"; then
		log "not an experiment name: $db; not dumped"
		return
	fi
	if ! dir=$(dump_dir "") || ! dump_new "$dir"; then
		log "no directory for the dump of $1"
		return
	fi
	conn="dbname=$(pq_quote "$db") host=$(pq_quote "$host") port=$(pq_quote "$port") user=$(pq_quote "$user")"
	if ! pg_dump --no-password --file="$part" --dbname="$conn" </dev/null; then
		log "pg_dump could not dump $1"
	elif ! out=$(dump_publish "$dir" "$db" pg); then
		log "could not name the dump of $1 in $dir"
	else
		log "dumped $1 to $out"
		dump_done
		upload "$out"
		return
	fi
	dump_done
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
		[ -z "$own_dir" ] || rmdir -- "$own_dir" 2>/dev/null
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
