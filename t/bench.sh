#!/bin/bash
# t/bench.sh -- `make bench`: ingest throughput, latency, size and memory
# of oml2-server, each figure beside a ceiling and a baseline measured in
# the same run.  Figures, not a test: it is not part of `make test`.
#
# Every scenario gets a fresh server in a scratch directory on a free port.
# A run is timed from the first byte t/omlsend writes (omlsend encodes all
# rows before it connects, and reports how long its writes took, so the
# first byte is its exit time minus that span) to the moment `t/baseline
# wait`, a reader in another process, sees every row committed.  Peak
# memory is VmHWM of the master and of the busiest child.
#
# The ceiling is t/ceiling: the same rows bound straight into SQLite, at
# the same durability, with the settings (page size, rows per statement,
# locking, threading) that came out fastest in a search at the start of
# the run.  The baseline is t/baseline: the plain way, one prepared
# statement.
#
# Environment: BENCH_ROWS (1000000), BENCH_REPEAT (3: the throughput
# scenarios, the ceiling and the baseline run that many times,
# interleaved, and the medians are shown), BENCH_BIG (0: rows of the
# one-client run that shows how the rate holds as a database grows, such
# as 30000000; 0 skips it), BENCH_BEFORE (a git revision or a server
# binary: every scenario of the server runs with it too, and the summary
# shows both), BENCH_CEILING (t/ceiling's options, skipping the search),
# BENCH_DIR (scratch space, default $TMPDIR or /tmp), OML2_SERVER (the
# binary), BENCH_MAIN (run just one function, such as run_idle,
# pg_scenario or "run_sqlite four 4 4 -b 4000000", while working on this
# file; the ceiling and the baseline are then taken as 1).  InfluxDB and VictoriaMetrics
# come from `make deps-bench`; without them their scenario is skipped.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
SERVER=${OML2_SERVER:-$TOP/oml2-server}
OMLSEND=$TOP/t/omlsend
BASELINE=$TOP/t/baseline
CEILING=$TOP/t/ceiling
DECODE=$TOP/t/decode
BIG=${BENCH_BIG:-0}
BEFORE=
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
# wall-clock time of its first byte (omlsend says it: it exits only once
# the server's TCP has acknowledged everything, which many connections'
# socket buffers make much later than the last write).  Fails if
# omlsend did.
send() {
	local d=$1 rc
	shift
	"$OMLSEND" "$@" "127.0.0.1:$PORT" 2>"$d/omlsend.err"
	rc=$?
	[ "$rc" -eq 0 ] || {
		cat "$d/omlsend.err" >&2
		return 1
	}
	sed -n 's/^omlsend: first byte at \([0-9.]*\)$/\1/p' "$d/omlsend.err"
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
	# the figure is a count: show what was warned about
	grep -E 'WARN|ERROR' "$d/log" | grep -v 'running as root' |
	    head -n 3 | sed 's/^/  bursts: /' >&2
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

# --- the ceiling -----------------------------------------------------------
# run_ceiling ROWS: one run of t/ceiling with the options CEIL_OPTS.
run_ceiling() {
	# shellcheck disable=SC2086
	"$CEILING" insert "$W/ceiling.sq3" "$1" $CEIL_OPTS |
	    awk '{ print $3, $4 }'
	rm -f "$W"/ceiling.sq3*
}

# Try t/ceiling's settings one at a time, keeping each that is faster (the
# best of two runs each): page size, rows per statement, exclusive
# locking, single-threaded SQLite.  Sets CEIL_OPTS.
ceiling_search() {
	local best=0 cand r try a b opt
	local base="-p 65536 -k 64"
	CEIL_OPTS=$base
	for cand in "-p 65536 -k 64" "-p 16384 -k 64" "-p 4096 -k 64" \
	    K16 K256 X S; do
		case $cand in
		K16) try=$(echo "$CEIL_OPTS" | sed 's/-k [0-9]*/-k 16/') ;;
		K256) try=$(echo "$CEIL_OPTS" | sed 's/-k [0-9]*/-k 256/') ;;
		X) try="$CEIL_OPTS -x" ;;
		S) try="$CEIL_OPTS -s" ;;
		*) try=$cand ;;
		esac
		opt=$CEIL_OPTS
		CEIL_OPTS=$try
		a=$(run_ceiling "$ROWS") b=$(run_ceiling "$ROWS")
		r=$(printf '%s\n%s\n' "${a%% *}" "${b%% *}" | sort -g | tail -n 1)
		if [ -n "$r" ] && awk "BEGIN { exit !($r > $best) }"; then
			best=$r
		else
			CEIL_OPTS=$opt
		fi
	done
}

# --- more SQLite scenarios -------------------------------------------------
# run_latency: one client sending a row every 10 ms (100 rows/s); for each
# row, the time from its arrival at the server to a reader in another
# process seeing it.  Prints "P50 P99 MAX" in seconds.
run_latency() {
	local d=$W/lat.$RANDOM n=${BENCH_LAT_ROWS:-500} out
	start_server "$d" || die "latency: the server did not start"
	"$BASELINE" latency "$d/data/lat.sq3" gen "$n" 120 >"$d/lat" &
	BGP+=($!)
	send "$d" -e lat -n "$n" -b -B 1 -p 10 >/dev/null ||
	    die "latency: omlsend failed"
	wait "${BGP[-1]}" || die "latency: rows missing"
	unset 'BGP[-1]'
	out=$(cat "$d/lat")
	stop_server
	rm -rf "$d"
	echo "$out"
}

# run_blob: 10,000 rows of 4 KiB blobs; database bytes per row once the
# server has closed the file.  Prints "BYTES_PER_ROW".
run_blob() {
	local d=$W/blob.$RANDOM n=10000 size f
	start_server "$d" || die "blob: the server did not start"
	send "$d" -e blob -s "1 blobs n:int32 b:blob" -Z 4096 -n "$n" -b \
	    >/dev/null || die "blob: omlsend failed"
	"$BASELINE" wait blobs "$n" 120 "$d/data/blob.sq3" >/dev/null ||
	    die "blob: rows missing"
	stop_server
	size=0
	for f in "$d"/data/blob.sq3*; do
		size=$((size + $(stat -c %s "$f")))
	done
	rm -rf "$d"
	calc "$size / $n"
}

# --- InfluxDB and VictoriaMetrics -----------------------------------------
free_port() {
	local p
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		p=$((20000 + RANDOM % 30000))
		! ss -Htln "sport = :$p" | grep -q . && { echo "$p"; return; }
	done
	return 1
}

# The same rows as Influx line protocol, split into files of 5,000 lines
# (the batch size InfluxDB's documentation recommends).  Timestamps are
# r ms after a base one hour ago, so that VictoriaMetrics keeps them.
tsdb_rows() {
	local base=$(($(date +%s) - 3600))
	mkdir -p "$W/lp"
	awk -v n="$ROWS" -v b="$base" -v dir="$W/lp" 'BEGIN {
		for (r = 1; r <= n; r++) {
			f = sprintf("%s/%05d", dir, int((r - 1) / 5000))
			printf "gen,sender=1 seq=%di,n=%di,x=%.2f,s=\"row-%d\" %d%03d000000\n",
			    r, r, r + 0.25, r, b + int(r / 1000), r % 1000 > f
			if (r % 5000 == 0)
				close(f)
		}
	}'
}

# Runs a TSDB server as a user of our own, never the system's service:
# its files in DIR, free ports, stopped at the end.
run_influx() {
	local d=$W/influx port rpc t0 ts t1 args=() f pid
	mkdir -p "$d"
	port=$(free_port) && rpc=$(free_port) || return 1
	cat >"$d/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$d/meta"
[data]
  dir = "$d/data"
  wal-dir = "$d/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
CONF
	influxd run -config "$d/influxdb.conf" >"$d/log" 2>&1 &
	pid=$!
	BGP+=($pid)
	until_true 60 curl -sf "http://127.0.0.1:$port/ping" || {
		kill "$pid" 2>/dev/null
		tail -n 3 "$d/log" >&2
		return 1
	}
	curl -sf -XPOST "http://127.0.0.1:$port/query" \
	    --data-urlencode 'q=CREATE DATABASE bench' >/dev/null ||
	    { kill "$pid"; return 1; }
	for f in "$W"/lp/*; do
		args+=(--next -sf -o /dev/null --data-binary "@$f"
		    "http://127.0.0.1:$port/write?db=bench&precision=ns")
	done
	t0=$EPOCHREALTIME
	curl "${args[@]:1}" || { kill "$pid"; return 1; }
	ts=$EPOCHREALTIME
	until_true 120 influx_all "$port" || { kill "$pid"; return 1; }
	t1=$EPOCHREALTIME
	kill "$pid"
	wait "$pid" 2>/dev/null
	echo "$(calc "$ROWS / ($t1 - $t0)") $(calc "$ts - $t0")"
}

influx_all() {
	local n
	n=$(curl -sf "http://127.0.0.1:$1/query?db=bench" \
	    --data-urlencode 'q=SELECT count(n) FROM gen' |
	    sed -n 's/.*"values":\[\[[^,]*,\([0-9]*\)\]\].*/\1/p')
	[ "${n:-0}" -eq "$ROWS" ]
}

run_victoria() {
	local d=$W/vm http lp t0 ts t1 pid
	mkdir -p "$d"
	http=$(free_port) && lp=$(free_port) || return 1
	victoria-metrics -storageDataPath="$d/data" -retentionPeriod=100y \
	    -httpListenAddr="127.0.0.1:$http" \
	    -influxListenAddr="127.0.0.1:$lp" >"$d/log" 2>&1 &
	pid=$!
	BGP+=($pid)
	until_true 60 curl -sf "http://127.0.0.1:$http/health" >/dev/null || {
		kill "$pid" 2>/dev/null
		tail -n 3 "$d/log" >&2
		return 1
	}
	t0=$EPOCHREALTIME
	cat "$W"/lp/* >"/dev/tcp/127.0.0.1/$lp" || { kill "$pid"; return 1; }
	ts=$EPOCHREALTIME
	until_true 120 vm_all "$http" || { kill "$pid"; return 1; }
	t1=$EPOCHREALTIME
	kill "$pid"
	wait "$pid" 2>/dev/null
	echo "$(calc "$ROWS / ($t1 - $t0)") $(calc "$ts - $t0")"
}

vm_all() {
	local n
	n=$(curl -sf "http://127.0.0.1:$1/api/v1/query?nocache=1" \
	    --data-urlencode 'query=sum(count_over_time(gen_n[3h]))' |
	    sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)"\].*/\1/p')
	[ "${n:-0}" -eq "$ROWS" ]
}

tsdb_scenario() {
	local r
	if ! command -v influxd >/dev/null || ! command -v victoria-metrics \
	    >/dev/null || ! command -v curl >/dev/null; then
		echo "9 InfluxDB / VictoriaMetrics: skipped: not installed" \
		    "(make deps-bench)"
		return 0
	fi
	tsdb_rows
	r=($(run_influx)) && row "9 InfluxDB 1.x, HTTP line protocol" \
	    "$(printf '%.0f' "${r[0]}")" "$(ratio "${r[0]}" "$CEIL")" \
	    "$(ratio "${r[0]}" "$BASE")" "" \
	    "5000-line batches on one connection, sent in $(printf %.2f \
	    "${r[1]}") s; until SELECT count sees all" ||
	    echo "9 InfluxDB: failed to run"
	r=($(run_victoria)) && row "9 VictoriaMetrics, TCP line protocol" \
	    "$(printf '%.0f' "${r[0]}")" "$(ratio "${r[0]}" "$CEIL")" \
	    "$(ratio "${r[0]}" "$BASE")" "" \
	    "sent in $(printf %.2f "${r[1]}") s (string field dropped); until a query sees all" ||
	    echo "9 VictoriaMetrics: failed to run"
	rm -rf "$W/lp" "$W/influx" "$W/vm"
}

# --- the table -------------------------------------------------------------
row() {
	printf '%-44s %10s %6s %6s %17s  %s\n' "$@"
}

ratio() {
	calc "$1 / $2" | awk '{ printf "%.2f", $1 }'
}

# report LABEL "RATE..." "MASTER_KB..." "CHILD_KB..." [NOTE]
report() {
	local label=$1 rates=($2) m=($3) c=($4) note=${5:-} r
	r=$(median "${rates[@]}")
	row "$label" "$(printf '%.0f' "$r")" "$(ratio "$r" "$CEIL")" \
	    "$(ratio "$r" "$BASE")" \
	    "$(mb "$(median "${m[@]}")") / $(mb "$(median "${c[@]}")") MB" \
	    "$(spread "$2")${note:+; $note}"
}

spread() {
	local v=($1) lo hi
	lo=$(printf '%s\n' "${v[@]}" | sort -g | head -n 1)
	hi=$(printf '%s\n' "${v[@]}" | sort -g | tail -n 1)
	printf 'range %.0f-%.0f' "$lo" "$hi"
}

# Build the server of git revision BENCH_BEFORE in the scratch space.
build_before() {
	local rev=$BENCH_BEFORE
	if [ -x "$rev" ]; then
		BEFORE=$rev
		return
	fi
	mkdir -p "$W/before"
	git -C "$TOP" archive "$rev" | tar -x -C "$W/before" &&
	    make -C "$W/before" -s -j2 oml2-server >/dev/null 2>&1 ||
	    die "cannot build revision $rev"
	BEFORE=$W/before/oml2-server
}

# The SQLite scenarios of one server build, run once; adds to rate[TAG:k].
sqlite_round() {
	local tag=$1 k out r
	SERVER=${SRV[$tag]}
	for k in 1 2 3 4 64; do
		case $k in
		1) out=$(run_sqlite bin 1 1 -b "$ROWS") ;;
		2) out=$(run_sqlite text 1 1 -t "$ROWS") ;;
		# each of the four does what scenario 1's client does
		3) out=$(run_sqlite four 4 4 -b $((4 * ROWS))) ;;
		4) out=$(run_sqlite shared 4 1 -b "$ROWS") ;;
		64) out=$(run_sqlite many 64 1 -b "$ROWS") ;;
		esac
		[ -n "$out" ] || exit 1
		r=($out)
		rate[$tag:$k]+="${r[0]} "
		mast[$tag:$k]+="${r[1]} "
		chld[$tag:$k]+="${r[2]} "
	done
}

# The figures of issue 16, one line each: before (if any), now, goal.
summary_line() {
	printf '%-58s %9s %9s  %s\n' "$@"
}

fig() {
	local tag=$1 what=$2 v
	case $what in
	bin)	v=$(ratio "$(median ${rate[$tag:1]})" "$CEIL") ;;
	text)	v=$(ratio "$(median ${rate[$tag:2]})" "$CEIL") ;;
	big)	[ -n "${big[$tag]:-}" ] || { echo "-"; return; }
		v=$(ratio "${big[$tag]}" "$(median ${rate[$tag:1]})") ;;
	many)	v=$(ratio "$(median ${rate[$tag:64]})" \
		    "$(median ${rate[$tag:1]})") ;;
	lat)	v=$(echo "${lat[$tag]}" | awk '{ printf "%.3f s", $2 }') ;;
	blob)	v=$(ratio "${blob[$tag]}" "$ORIG") ;;
	pgbin)	[ -n "${pg[$tag:b]:-}" ] || { echo "-"; return; }
		v=$(ratio "$(median ${pg[$tag:b]})" "$PGBASE") ;;
	pgtext)	[ -n "${pg[$tag:t]:-}" ] || { echo "-"; return; }
		v=$(ratio "$(median ${pg[$tag:t]})" "$PGBASE") ;;
	four)	v=$(ratio "$(median ${rate[$tag:3]})" \
		    "$(median ${rate[$tag:1]})") ;;
	esac
	echo "$v"
}

summary() {
	local tags=(now) f b
	[ -n "$BEFORE" ] && tags=(before now)
	echo
	echo "The figures of issue 16 (ratios within this run):"
	summary_line "figure" "$([ -n "$BEFORE" ] && echo before)" "now" "goal"
	for f in "bin:one client, binary, vs the ceiling:>= 0.85" \
	    "text:one client, text, vs the ceiling:>= 0.75" \
	    "big:$BIG rows vs $ROWS rows, one binary client:>= 0.95" \
	    "many:64 clients of one experiment vs 1 client:>= 0.95" \
	    "lat:visible to a reader at 100 rows/s, p99:<= 0.1 s" \
	    "blob:4 KiB blobs, bytes per row vs the original's:<= 1.0" \
	    "pgbin:PostgreSQL, binary client vs psql \\copy:>= 1.3" \
	    "pgtext:PostgreSQL, text client vs psql \\copy:>= 1.1" \
	    "four:4 experiments vs 1 (2 cores):~2"; do
		IFS=: read -r k label goal <<<"$f"
		b=
		[ -n "$BEFORE" ] && b=$(fig before "$k")
		summary_line "$label" "$b" "$(fig now "$k")" "$goal"
	done
}

main() {
	local i out r k tag tags=(now)
	local -A rate mast chld big lat blob pg SRV
	[ -x "$SERVER" ] && [ -x "$OMLSEND" ] && [ -x "$BASELINE" ] &&
	    [ -x "$CEILING" ] || die "build first (make all t/baseline t/ceiling)"
	ulimit -n 4096 2>/dev/null
	SRV[now]=$SERVER
	BEFORE=
	if [ -n "${BENCH_BEFORE:-}" ]; then
		build_before
		SRV[before]=$BEFORE
		tags=(before now)
	fi
	echo "oml2-server bench: $ROWS rows of (int32, double, string);" \
	    "median of $REPEAT runs; $(nproc) cores; scratch in $W"
	[ -n "$BEFORE" ] && echo "before: $BENCH_BEFORE; now: $SERVER"
	echo "load average at the start: $(cut -d ' ' -f 1-3 /proc/loadavg)"
	if [ -n "${BENCH_CEILING:-}" ]; then
		CEIL_OPTS=$BENCH_CEILING
	else
		echo "  finding the ceiling's settings ..." >&2
		ceiling_search
	fi
	for ((i = 1; i <= REPEAT; i++)); do
		echo "  run $i of $REPEAT ..." >&2
		out=$(run_ceiling "$ROWS")
		rate[ceil]+="${out%% *} "
		chld[ceil]+="${out##* } "
		out=$(run_baseline)
		rate[base]+="${out%% *} "
		chld[base]+="${out##* } "
		for tag in "${tags[@]}"; do
			sqlite_round "$tag"
		done
	done
	CEIL=$(median ${rate[ceil]})
	BASE=$(median ${rate[base]})
	echo "  the other scenarios ..." >&2
	for tag in "${tags[@]}"; do
		SERVER=${SRV[$tag]}
		if [ "$BIG" -gt 0 ]; then
			out=$(run_sqlite big 1 1 -b "$BIG") || exit 1
			big[$tag]=${out%% *}
		fi
		lat[$tag]=$(run_latency) || exit 1
		blob[$tag]=$(run_blob) || exit 1
	done
	ORIG=$(cd "$W" && "$BASELINE" original "$W/orig.sq3" 10000 4096 |
	    cut -d ' ' -f 1)
	SERVER=${SRV[now]}
	echo
	row "scenario" "rows/s" "x ceil" "x base" "peak RSS mst/chld" ""
	row "ceiling: t/ceiling $CEIL_OPTS" "$(printf '%.0f' "$CEIL")" \
	    "1.00" "$(ratio "$CEIL" "$BASE")" \
	    "- / $(mb "$(median ${chld[ceil]})") MB" "$(spread "${rate[ceil]}")"
	row "baseline: C, prepared, 10k-row txns, WAL" \
	    "$(printf '%.0f' "$BASE")" "$(ratio "$BASE" "$CEIL")" "1.00" \
	    "- / $(mb "$(median ${chld[base]})") MB" "$(spread "${rate[base]}")"
	for tag in "${tags[@]}"; do
		[ -n "$BEFORE" ] && echo "-- $tag: ${SRV[$tag]}"
		report "1 one client, binary, one experiment" \
		    "${rate[$tag:1]}" "${mast[$tag:1]}" "${chld[$tag:1]}"
		report "2 one client, text, one experiment" \
		    "${rate[$tag:2]}" "${mast[$tag:2]}" "${chld[$tag:2]}"
		report "3 four clients, four experiments, 4x" \
		    "${rate[$tag:3]}" "${mast[$tag:3]}" "${chld[$tag:3]}" \
		    "$(fig "$tag" four)x scenario 1"
		report "4 four clients, one experiment" \
		    "${rate[$tag:4]}" "${mast[$tag:4]}" "${chld[$tag:4]}"
		report "4b 64 clients, one experiment" \
		    "${rate[$tag:64]}" "${mast[$tag:64]}" "${chld[$tag:64]}" \
		    "$(fig "$tag" many)x scenario 1"
		[ -n "${big[$tag]:-}" ] && row "1b one client, binary, $BIG rows" \
		    "$(printf '%.0f' "${big[$tag]}")" \
		    "$(ratio "${big[$tag]}" "$CEIL")" \
		    "$(ratio "${big[$tag]}" "$BASE")" "" \
		    "one run; $(fig "$tag" big)x scenario 1"
		row "8 latency at 100 rows/s: p50 p99 max (s)" "" "" "" "" \
		    "${lat[$tag]}"
		row "8b 4 KiB blobs: database bytes per row" "" "" "" "" \
		    "$(printf '%.0f' "${blob[$tag]}") (the original's: $(printf \
		    '%.0f' "$ORIG"), $(fig "$tag" blob)x)"
	done
	out=($(run_bursts)) || exit 1
	row "5 500 clients in bursts, 50 experiments" \
	    "$(printf '%.0f' "${out[0]}")" "-" "-" \
	    "$(mb "${out[1]}") / $(mb "${out[2]}") MB" \
	    "paced by the clients; ${out[*]:3}"
	[ -x "$DECODE" ] && row "decoders alone (t/decode), ns a row:" "" "" "" \
	    "" "$("$DECODE" "$ROWS" "$REPEAT")"
	run_idle
	pg_scenario
	tsdb_scenario
	summary
	echo "load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "(ratios are to the ceiling and the baseline of this run; other" \
	    "load on the machine moves every figure)"
}

# One server run into PostgreSQL.  Prints "rows/s master_kb child_kb".
pg_server() {
	local d=$W/pgrun.$RANDOM t0 t1
	start_server "$d" -b postgresql --pg-host=127.0.0.1 \
	    --pg-port="$PG_PORT" --pg-user=oml || return 2
	t0=$(send "$d" -e pgbench -n "$ROWS" "$1") || die "pg: omlsend failed"
	t1=$("$BASELINE" pgwait "host=127.0.0.1 port=$PG_PORT user=oml \
	    dbname=pgbench" gen "$ROWS" 300) ||
	    die "pg: the rows were never all committed"
	echo "$(calc "$ROWS / ($t1 - $t0)") $(peak_mem)"
	stop_server
	psql_oml -d postgres -c 'DROP DATABASE pgbench' >/dev/null
	rm -rf "$d"
}

pg_scenario() {
	local out base="" r i tag enc tags=(now)
	local -A m c
	[ -n "$BEFORE" ] && tags=(before now)
	pg_start || {
		echo "7 PostgreSQL: skipped: $PG_WHY"
		return 0
	}
	SERVER=${SRV[now]}
	pg_server -b >/dev/null
	[ $? -eq 2 ] && {
		echo "7 PostgreSQL: skipped: PostgreSQL backend not available"
		return 0
	}
	"$BASELINE" tsv "$ROWS" >"$W/rows.tsv"
	for ((i = 1; i <= REPEAT; i++)); do
		out=$(pg_baseline) || die "pg: the \\copy baseline failed"
		base+="$out "
		for tag in "${tags[@]}"; do
			SERVER=${SRV[$tag]}
			for enc in b t; do
				r=($(pg_server "-$enc")) || exit 1
				pg[$tag:$enc]+="${r[0]} "
				m[$tag:$enc]+="${r[1]} "
				c[$tag:$enc]+="${r[2]} "
			done
		done
	done
	SERVER=${SRV[now]}
	PGBASE=$(median $base)
	row "7-baseline: psql \\copy" "$(printf '%.0f' "$PGBASE")" \
	    "$(ratio "$PGBASE" "$CEIL")" "$(ratio "$PGBASE" "$BASE")" "" \
	    "$(spread "$base")"
	for tag in "${tags[@]}"; do
		for enc in b t; do
			r=$(median ${pg[$tag:$enc]})
			row "7 PostgreSQL: one client, $([ $enc = b ] &&
			    echo binary || echo text)${BEFORE:+ ($tag)}" \
			    "$(printf '%.0f' "$r")" "$(ratio "$r" "$CEIL")" \
			    "$(ratio "$r" "$BASE")" \
			    "$(mb "$(median ${m[$tag:$enc]})") / $(mb \
			    "$(median ${c[$tag:$enc]})") MB" \
			    "$(ratio "$r" "$PGBASE")x \\copy; $(spread \
			    "${pg[$tag:$enc]}")"
		done
	done
}

if [ "${BENCH_MAIN:-main}" = main ]; then
	main
else
	# One function alone: what main would have set up, with the ceiling
	# and the baseline taken as 1 (their ratios are then plain rates).
	declare -A SRV=([now]=$SERVER) rate mast chld big lat blob pg
	CEIL=1 BASE=1
	ulimit -n 4096 2>/dev/null
	# (split into words: a function and its arguments)
	$BENCH_MAIN
fi
