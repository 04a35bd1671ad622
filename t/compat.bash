# Helpers for the t/6x-compat-*.bats files: OMSP headers, binary packets
# written byte by byte in hex, and backend-neutral waits.  Load after
# helpers.bash.

START=1400000000

# Hex digits (white space ignored) to bytes on stdout: hexbin HEX...
hexbin() {
	local h
	h=$(printf '%s' "$*" | tr -d ' \t\n')
	printf "$(sed 's/../\\x&/g' <<<"$h")"
}

# The bytes of a string as hex: strhex STRING
strhex() {
	printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# A header block: header EXP MODE SCHEMA... (MODE text or binary).
header() {
	local exp=$1 mode=$2 s
	shift 2
	printf 'protocol: 5\ndomain: %s\nstart-time: %s\nsender-id: nodeB\napp-name: a\n' "$exp" "$START"
	for s in "$@"; do
		printf 'schema: %s\n' "$s"
	done
	printf 'content: %s\n\n' "$mode"
}

# Binary values, as hex (§6.2).
v_long() { printf '01%08x' $(($1 & 0xffffffff)); }
v_i32() { printf '05%08x' $(($1 & 0xffffffff)); }
v_u32() { printf '06%08x' $(($1 & 0xffffffff)); }
v_i64() { printf '07%016x' "$1"; }
v_u64() { printf '08%s' "$1"; }		# 16 hex digits
v_guid() { printf '0a%s' "$1"; }	# 16 hex digits
v_str() {
	local LC_ALL=C	# the length in bytes
	printf '04%02x%s' "${#1}" "$(strhex "$1")"
}
v_blob() { printf '09%08x%s' $((${#1} / 2)) "$1"; }	# hex payload
v_true() { printf 0c; }
v_false() { printf 0b; }
v_nan() { printf 030000000000; }
# DOUBLE_T of the reference values of §6.3
v_dbl() {
	case $1 in
	0) printf 020000000000 ;;
	0.5) printf 022000000000 ;;
	1) printf 022000000001 ;;
	-1) printf 02e000000001 ;;
	1.5) printf 023000000001 ;;
	2) printf 022000000002 ;;
	10) printf 022800000004 ;;
	-0.25) printf 02e0000000ff ;;
	3.14159) printf 023243f3e002 ;;
	-0.1) printf 02cccccccdfd ;;
	1e-10) printf 0236f9bfb3df ;;
	inf) printf 028000000000 ;;
	*) echo "v_dbl: no encoding for $1" >&2; return 1 ;;
	esac
}
# A vector: v_vec ELEMTYPE COUNT ELEMENTS-HEX
v_vec() { printf '0d%s%04x%s' "$1" "$2" "$3"; }

# A data packet: pkt STREAM SEQ COUNT VALUES-HEX [long], timestamp 1.0
pkt() {
	local body
	body=$(printf '%02x%02x05%08x022000000001%s' "$3" "$1" $(($2 & 0xffffffff)) "$4")
	body=$(tr -d ' \n' <<<"$body")
	if [ "${5:-}" = long ]; then
		printf 'aaaa02%08x%s' $((${#body} / 2)) "$body"
	else
		printf 'aaaa01%04x%s' $((${#body} / 2)) "$body"
	fi
}

# Send a file's bytes: sendf FILE; or insist that the server closes the
# connection: sendf_refused FILE.
sendf() {
	"$OMLSEND" -q -r "$1" "127.0.0.1:$PORT"
}
sendf_refused() {
	"$OMLSEND" -q -r "$1" -W -w 10 "127.0.0.1:$PORT"
}

# Wait until a table holds N rows: wait_n EXP TABLE N
wait_n() {
	wait_q "$1" "SELECT count(*) FROM \"$2\"" "$3"
}

# The log line of experiment EXP's database being closed, for the N-th
# time (default 1): a later connection then reopens it from storage.
wait_closed() {
	local wc_exp=$1 wc_n=${2:-1}
	wait_for 10 eval '[ "$(nlog "database [^ ]*/$wc_exp(\.sq3)? closed")" -ge "$wc_n" ]' || {
		echo "database $1 was not closed $wc_n time(s)" >&2
		return 1
	}
}

# How many log lines match: nlog REGEX
nlog() {
	grep -c -E -- "$1" "$LOG" || true
}

# A column's value, NULL spelled out, for any backend: nullable COL
nullable() {
	echo "COALESCE(CAST($1 AS TEXT), 'NULL')"
}

# A blob column as upper-case hex, NULL spelled out: blobhex COL
# (not COALESCE: SQLite's hex(NULL) is '')
blobhex() {
	echo "CASE WHEN $1 IS NULL THEN 'NULL' ELSE $(sql_hex "$1") END"
}

# One text tuple: its fields joined by TABs, then LF: tline FIELD...
tline() {
	local IFS=$'\t'
	printf '%s\n' "$*"
}
