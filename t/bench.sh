#!/bin/bash
# t/bench.sh -- `make bench`: ingest throughput and memory of oml2-server,
# each figure beside a baseline measured in the same run.  Figures, not a
# test: it is not part of `make test`.
#
# Every scenario gets a fresh server in a scratch directory on a free port.
# A run is timed from the first byte t/omlsend writes (omlsend encodes all
# rows before it connects, and reports how long its writes took, so the
# first byte is its exit time minus that span) to the moment `t/baseline
# wait`, a reader in another process, sees every row committed.  Peak
# memory is VmHWM of the master and of the busiest child.
#
# Environment: BENCH_ROWS (1000000), BENCH_REPEAT (3: scenarios 1-4 and
# the baseline run that many times, interleaved, and the medians are
# shown), BENCH_DIR (scratch space, default $TMPDIR or /tmp),
# OML2_SERVER (the binary), BENCH_MAIN (run just one function, such as
# run_idle or pg_scenario, while working on this file).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
SERVER=${OML2_SERVER:-$TOP/oml2-server}
OMLSEND=$TOP/t/omlsend
BASELINE=$TOP/t/baseline
ROWS=${BENCH_ROWS:-1000000}
REPEAT=${BENCH_REPEAT:-3}
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/oml2bench.XXXXXX") || exit 1
chmod 755 "$W"
SPID=
PORT=
BGP=()
PG_DIR=
PG_PORT=

cleanup() {
	local p
	for p in "${BGP[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in $(cat "$W/servers" 2>/dev/null); do
		grep -q oml2-server "/proc/$p/cmdline" 2>/dev/null &&
		    kill -TERM "$p"
	done
	[ -n "$PG_DIR" ] && as_pg pg_ctl -D "$PG_DIR" -m immediate stop \
	    >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "bench: $*" >&2
	exit 1
}

# Poll for a condition: until_true SECONDS CMD...
until_true() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.02
	done
}

calc() {
	awk "BEGIN { printf \"%.6f\", $1 }"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
	    END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- the server ------------------------------------------------------------
# start_server DIR [OPTION...]: a fresh server with its data and log in DIR.
start_server() {
	local d=$1
	shift
	mkdir -p "$d/data"
	"$SERVER" -l 127.0.0.1:0 -D "$d/data" --logfile="$d/log" -d 3 "$@" \
	    2>"$d/stderr" &
	SPID=$!
	echo "$SPID" >>"$W/servers"	# for cleanup, even from a subshell
	until_true 10 grep -q ' ready: ' "$d/log" 2>/dev/null || {
		kill "$SPID" 2>/dev/null
		wait "$SPID" 2>/dev/null
		SPID=
		return 1
	}
	PORT=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$d/log" | head -n 1)
	LOG=$d/log
}

stop_server() {
	kill -TERM "$SPID" 2>/dev/null
	wait "$SPID"
	SPID=
}

# status_kb PID FIELD: a /proc/PID/status figure in kB.
status_kb() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

children() {
	pgrep -P "$SPID" -f 'oml2-server: ' || true
}

# Peak RSS of the master, and the largest peak RSS among its children.
peak_mem() {
	local c max=0 v
	for c in $(children); do
		v=$(status_kb "$c" VmHWM)
		[ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v
	done
	echo "$(status_kb "$SPID" VmHWM) $max"
}

mb() {
	calc "$1 / 1024" | awk '{ printf "%.1f", $1 }'
}

# send DIR OMLSEND-ARGS...: run omlsend against the server, print the
# wall-clock time of its first byte.  Fails if omlsend did.
send() {
	local d=$1 rc secs t_exit
	shift
	"$OMLSEND" "$@" "127.0.0.1:$PORT" 2>"$d/omlsend.err"
	rc=$?
	t_exit=$EPOCHREALTIME
	[ "$rc" -eq 0 ] || {
		cat "$d/omlsend.err" >&2
		return 1
	}
	secs=$(sed -n 's/.* in \([0-9.]*\) s .*/\1/p' "$d/omlsend.err")
	calc "$t_exit - $secs"
}

# --- SQLite scenarios ------------------------------------------------------
# run_sqlite NAME CONNS EXPS ENCODING TOTAL: one timed run of TOTAL rows
# spread over CONNS connections and EXPS experiments.  Prints
# "rows/s master_kb child_kb".
run_sqlite() {
	local name=$1 conns=$2 exps=$3 enc=$4 d=$W/$1.$RANDOM t0 t1 i
	local per_conn=$(($5 / conns)) spread=() dbs=()
	start_server "$d" || die "$name: the server did not start:" \
	    "$(cat "$d/stderr")"
	if [ "$exps" -gt 1 ]; then
		spread=(-E "$exps")
		for ((i = 0; i < exps; i++)); do
			dbs+=("$d/data/$name-$i.sq3")
		done
	else
		dbs=("$d/data/$name.sq3")
	fi
	t0=$(send "$d" -e "$name" "${spread[@]}" -c "$conns" -n "$per_conn" \
	    "$enc") || die "$name: omlsend failed"
	t1=$("$BASELINE" wait gen $((per_conn * conns / exps)) 120 \
	    "${dbs[@]}") || die "$name: the rows were never all committed"
	echo "$(calc "$per_conn * $conns / ($t1 - $t0)") $(peak_mem)"
	stop_server
	rm -rf "$d"
}

run_baseline() {
	"$BASELINE" insert "$W/baseline.sq3" "$ROWS" | awk '{ print $3, $4 }'
	rm -f "$W"/baseline.sq3*
}

# Scenario 5: 500 clients, 50 experiments, 20-row bursts every 100 ms.
# Prints "rows/s master_kb child_kb note".
run_bursts() {
	local d=$W/bursts t0 t1 i dbs=() clients=500 exps=50 n=200 bad
	start_server "$d" || die "bursts: the server did not start"
	t0=$(send "$d" -e burst -E "$exps" -c "$clients" -n "$n" -B 20 \
	    -p 100) || die "bursts: a client was refused or cut off"
	for ((i = 0; i < exps; i++)); do
		dbs+=("$d/data/burst-$i.sq3")
	done
	t1=$("$BASELINE" wait gen $((clients / exps * n)) 120 "${dbs[@]}") ||
	    die "bursts: rows missing"
	bad=$(grep -c -E 'WARN|ERROR' "$d/log" | tr -d ' ')
	bad=$((bad - $(grep -c 'running as root' "$d/log")))
	echo "$(calc "$clients * $n / ($t1 - $t0)") $(peak_mem)" \
	    "all $((clients * n)) rows stored, $bad warnings, 0 clients refused"
	stop_server
	rm -rf "$d"
}

# ready_clients PATTERN N: N clients of experiments PATTERN are ready.
ready_clients() {
	[ "$(grep -c " ready: $1" "$LOG")" -ge "$2" ]
}

# The largest RSS and private memory among experiment children, in kB.
exp_mem() {
	local c v p max=0 maxp=0
	for c in $(pgrep -P "$SPID" -f 'oml2-server: exp '); do
		v=$(status_kb "$c" VmRSS)
		p=$(status_kb "$c" RssAnon)
		[ "$v" -gt "$max" ] && max=$v
		[ "$p" -gt "$maxp" ] && maxp=$p
	done
	echo "RSS $(mb "$max") MB, private $(mb "$maxp") MB"
}

# idle_clients EXP-ARGS... : hold that many idle connections open
idle_clients() {
	"$OMLSEND" -q -n 0 -H 120000 "$@" "127.0.0.1:$PORT" >/dev/null 2>&1 &
	BGP+=($!)
}

spares_up() {
	[ "$(children | wc -l)" -ge 2 ]
}

# Scenario 6: idle memory: 1,000 idle clients over 10 experiments, then
# 1,000 on one.  "private" is the process's own memory (RssAnon); RSS
# also counts the pages of shared libraries (libc, libsqlite3) that all
# the processes share.
run_idle() {
	local d=$W/idle m0 m100 m1000 c spare ten
	start_server "$d" || die "idle: the server did not start"
	until_true 10 spares_up
	m0=$(status_kb "$SPID" VmRSS)
	c=$(children | head -n 1)
	spare="RSS $(mb "$(status_kb "$c" VmRSS)") MB, private"
	spare="$spare $(mb "$(status_kb "$c" RssAnon)") MB"
	idle_clients -e idle -E 10 -c 100
	until_true 30 ready_clients idle- 100 ||
	    die "idle: 100 clients never ready"
	m100=$(status_kb "$SPID" VmRSS)
	idle_clients -e idle -E 10 -c 900
	until_true 60 ready_clients idle- 1000 ||
	    die "idle: 1000 clients never ready"
	m1000=$(status_kb "$SPID" VmRSS)
	ten=$(exp_mem)
	kill "${BGP[@]}" 2>/dev/null
	BGP=()
	stop_server
	start_server "$d.1" || die "idle: the server did not start"
	idle_clients -e solo -c 1000
	until_true 60 ready_clients solo: 1000 ||
	    die "idle: 1000 clients of one experiment never ready"
	echo "6 idle memory, 1000 idle clients:"
	echo "    master: RSS $(mb "$m0") / $(mb "$m100") / $(mb "$m1000") MB" \
	    "with 0 / 100 / 1000 idle clients"
	echo "    spare child: $spare"
	echo "    experiment child with 100 idle clients (largest of 10): $ten"
	echo "    experiment child with 1000 idle clients: $(exp_mem)"
	kill "${BGP[@]}" 2>/dev/null
	BGP=()
	stop_server
	rm -rf "$d" "$d.1"
}

# --- PostgreSQL ------------------------------------------------------------
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

# Run a PostgreSQL tool as the cluster's owner (postgres refuses root).
as_pg() {
	local tool=$1
	shift
	[ -x "$PG_BIN/$tool" ] && tool=$PG_BIN/$tool
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$tool" "$@"
	else
		"$tool" "$@"
	fi
}

psql_oml() {
	psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U oml "$@"
}

# A throwaway cluster on a free loopback port.  Fails with a reason in
# PG_WHY.
pg_start() {
	local try
	PG_WHY=
	command -v psql >/dev/null && [ -n "$PG_BIN" ] ||
	    { PG_WHY="PostgreSQL is not installed"; return 1; }
	PG_DIR=$W/pg
	mkdir -p "$PG_DIR" "$W/pgsock"
	[ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR" "$W/pgsock"
	as_pg initdb -D "$PG_DIR" -A trust -U postgres -E UTF8 --no-sync \
	    >"$W/initdb.log" 2>&1 || { PG_DIR=; PG_WHY="initdb failed"; return 1; }
	for try in 1 2 3 4 5; do
		PG_PORT=$((20000 + RANDOM % 30000))
		as_pg pg_ctl -D "$PG_DIR" -l "$W/pgsock/log" -w -t 30 -o \
		    "-p $PG_PORT -k $W/pgsock -c listen_addresses=127.0.0.1" \
		    start >/dev/null 2>&1 && break
		PG_PORT=
	done
	[ -n "$PG_PORT" ] || { PG_WHY="the cluster did not start"; return 1; }
	psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
	    -c 'CREATE ROLE oml LOGIN CREATEDB' >/dev/null ||
	    { PG_WHY="cannot create role oml"; return 1; }
}

# The baseline: psql \copy of the same rows into the same table.
pg_baseline() {
	local t0 t1
	psql_oml -d postgres -c 'CREATE DATABASE copybase' >/dev/null &&
	psql_oml -d copybase -c 'CREATE TABLE gen (oml_tuple_id SERIAL
	    PRIMARY KEY, oml_sender_id INT4, oml_seq INT4, oml_ts_client
	    FLOAT8, oml_ts_server FLOAT8, "n" INT4, "x" FLOAT8, "s" TEXT)' ||
	    return 1
	t0=$EPOCHREALTIME
	psql_oml -d copybase -c "\\copy gen (oml_sender_id, oml_seq, \
	    oml_ts_client, oml_ts_server, \"n\", \"x\", \"s\") FROM \
	    '$W/rows.tsv'" || return 1
	t1=$EPOCHREALTIME
	psql_oml -d postgres -c 'DROP DATABASE copybase' >/dev/null
	calc "$ROWS / ($t1 - $t0)"
}

# One server run into PostgreSQL.  Prints "rows/s master_kb child_kb".
pg_server() {
	local d=$W/pgrun.$RANDOM t0 t1
	start_server "$d" -b postgresql --pg-host=127.0.0.1 \
	    --pg-port="$PG_PORT" --pg-user=oml || return 2
	t0=$(send "$d" -e pgbench -n "$ROWS" -b) || die "pg: omlsend failed"
	t1=$("$BASELINE" pgwait "host=127.0.0.1 port=$PG_PORT user=oml \
	    dbname=pgbench" gen "$ROWS" 300) ||
	    die "pg: the rows were never all committed"
	echo "$(calc "$ROWS / ($t1 - $t0)") $(peak_mem)"
	stop_server
	psql_oml -d postgres -c 'DROP DATABASE pgbench' >/dev/null
	rm -rf "$d"
}

# --- the table -------------------------------------------------------------
row() {
	printf '%-42s %11s %9s %21s  %s\n' "$@"
}

# report LABEL "RATE..." BASE "MASTER_KB..." "CHILD_KB..." [NOTE]
report() {
	local label=$1 rates=($2) base=$3 m=($4) c=($5) note=${6:-} r
	r=$(median "${rates[@]}")
	row "$label" "$(printf '%.0f' "$r")" "$(calc "$r / $base" |
	    awk '{ printf "%.2f", $1 }')" \
	    "$(mb "$(median "${m[@]}")") / $(mb "$(median "${c[@]}")") MB" \
	    "$note"
}

spread() {
	local v=($1) lo hi
	lo=$(printf '%s\n' "${v[@]}" | sort -g | head -n 1)
	hi=$(printf '%s\n' "${v[@]}" | sort -g | tail -n 1)
	printf 'range %.0f-%.0f' "$lo" "$hi"
}

main() {
	local i out r k base
	local -A rate mast chld
	[ -x "$SERVER" ] && [ -x "$OMLSEND" ] && [ -x "$BASELINE" ] ||
	    die "build first (make all t/baseline)"
	ulimit -n 4096 2>/dev/null
	echo "oml2-server bench: $ROWS rows of (int32, double, string);" \
	    "median of $REPEAT runs; $(nproc) cores; scratch in $W"
	echo "load average at the start: $(cut -d ' ' -f 1-3 /proc/loadavg)"
	for ((i = 1; i <= REPEAT; i++)); do
		echo "  run $i of $REPEAT ..." >&2
		out=$(run_baseline)
		rate[b]+="${out%% *} "
		mast[b]+="0 "
		chld[b]+="${out##* } "
		for k in 1 2 3 4; do
			case $k in
			1) out=$(run_sqlite bin 1 1 -b "$ROWS") ;;
			2) out=$(run_sqlite text 1 1 -t "$ROWS") ;;
			# each of the four does what scenario 1's client does
			3) out=$(run_sqlite four 4 4 -b $((4 * ROWS))) ;;
			4) out=$(run_sqlite shared 4 1 -b "$ROWS") ;;
			esac
			[ -n "$out" ] || exit 1
			r=($out)
			rate[$k]+="${r[0]} "
			mast[$k]+="${r[1]} "
			chld[$k]+="${r[2]} "
		done
	done
	base=$(median ${rate[b]})
	echo
	row "scenario" "rows/s" "ratio" "peak RSS master/child" ""
	row "baseline: C, prepared, 10k-row txns, WAL" \
	    "$(printf '%.0f' "$base")" "1.00" \
	    "- / $(mb "$(median ${chld[b]})") MB" "$(spread "${rate[b]}")"
	report "1 one client, binary, one experiment" "${rate[1]}" "$base" \
	    "${mast[1]}" "${chld[1]}" "$(spread "${rate[1]}")"
	report "2 one client, text, one experiment" "${rate[2]}" "$base" \
	    "${mast[2]}" "${chld[2]}" "$(spread "${rate[2]}")"
	report "3 four clients, four experiments, 4x" "${rate[3]}" "$base" \
	    "${mast[3]}" "${chld[3]}" "$(spread "${rate[3]}"); $(calc \
	    "$(median ${rate[3]}) / $(median ${rate[1]})" |
	    awk '{ printf "%.2f", $1 }')x scenario 1"
	report "4 four clients, one experiment" "${rate[4]}" "$base" \
	    "${mast[4]}" "${chld[4]}" "$(spread "${rate[4]}")"
	out=($(run_bursts)) || exit 1
	row "5 500 clients in bursts, 50 experiments" \
	    "$(printf '%.0f' "${out[0]}")" "-" \
	    "$(mb "${out[1]}") / $(mb "${out[2]}") MB" \
	    "paced by the clients; ${out[*]:3}"
	run_idle
	pg_scenario
	echo "load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "(ratios are to the baseline of this run; other load on the" \
	    "machine moves every figure)"
}

pg_scenario() {
	local out base r rates=() m=() c=() i
	local label="7 PostgreSQL: one client, binary"
	pg_start || {
		echo "7 PostgreSQL: skipped: $PG_WHY"
		return 0
	}
	out=$(pg_server)
	case $? in
	0)	;;
	2)	echo "7 PostgreSQL: skipped: PostgreSQL backend not available"
		return 0 ;;
	*)	exit 1 ;;
	esac
	"$BASELINE" tsv "$ROWS" >"$W/rows.tsv"
	base=$(pg_baseline) || die "pg: the \\copy baseline failed"
	r=($out)
	rates+=("${r[0]}") m+=("${r[1]}") c+=("${r[2]}")
	for ((i = 2; i <= REPEAT; i++)); do
		out=$(pg_baseline) && base="$base $out"
		r=($(pg_server)) || exit 1
		rates+=("${r[0]}") m+=("${r[1]}") c+=("${r[2]}")
	done
	row "7-baseline: psql \\copy" "$(printf '%.0f' "$(median $base)")" \
	    "1.00" "" "$(spread "$base")"
	report "$label" "${rates[*]}" "$(median $base)" "${m[*]}" "${c[*]}" \
	    "$(spread "${rates[*]}")"
}

"${BENCH_MAIN:-main}"
