#!/usr/bin/env bats
# oml2-merge: the SQLite shards that three servers behind a real HAProxy
# leave of one experiment, merged into the database one server fed the
# same clients makes; what it refuses; that it never changes its inputs.

load helpers

# oml2-merge, its log apart: merge ARG...
merge() {
	"$OML2_MERGE" "$@" 2>>"$T/merge.log"
}

refute() {
	if "$@"; then
		echo "should not have succeeded: $*" >&2
		return 1
	fi
}

# Three SQLite servers (data in $T/sN/data, logs $T/sN/log) behind HAProxy
# in roundrobin, listening on $HP.
start_farm() {
	local i port ports=() cfg=$T/haproxy.cfg
	for i in 1 2 3; do
		mkdir -p "$T/s$i/data"
		bg "$OML2_SERVER" -l 127.0.0.1:0 -D "$T/s$i/data" \
		    --logfile="$T/s$i/log" -d 3
		FARM+=("$BG")
	done
	for i in 1 2 3; do
		wait_for 10 grep -qs ' ready: ' "$T/s$i/log"
		port=$(log_port "$T/s$i/log")
		[ -n "$port" ]
		ports+=("$port")
	done
	HP=$(free_port)
	cat >"$cfg" <<-EOF
	global
	    maxconn 100
	defaults
	    mode tcp
	    timeout connect 5s
	    timeout client 60s
	    timeout server 60s
	listen oml2server
	    bind 127.0.0.1:$HP
	    balance roundrobin
	    server s1 127.0.0.1:${ports[0]}
	    server s2 127.0.0.1:${ports[1]}
	    server s3 127.0.0.1:${ports[2]}
	EOF
	bg haproxy -f "$cfg" -db
	wait_for 10 eval '[ -n "$(ss -Htln "sport = :$HP")" ]'
}

# Clients that have finished, by the logs: ended LOG...
ended() {
	cat "$@" | grep -c 'closed by the client: '
}
ended_are() {
	local n=$1
	shift
	[ "$(ended "$@")" -eq "$n" ]
}

# The experiment's clients, one after the other (each one's rows all in
# before the next connects), to DEST, whose servers log to LOG...:
# clients DEST LOG...
clients() {
	local dest=$1 k=0 gen="1 gen n:int32 x:double s:string"
	shift
	local -a c=(
	    "-t -S node1 -T 1700000000 -s '$gen' -s '2 other y:int32'"
	    "-b -S node2 -T 1700000010 -s '$gen'"
	    "-t -S node3 -T 1700000020 -s '1 gen n:int64'"
	    "-t -S node2 -T 1700000030 -s '$gen'"
	    "-b -S node5 -T 1700000040 -s '1 gen n:int64' -s '2 types u:uint32 l:int64 ul:uint64 g:guid b:bool bl:blob v:[double] vb:[bool]'"
	    "raw"
	    "-t -S node7 -T 1700000060 -s '1 other y:double'"
	)
	local a
	for a in "${c[@]}"; do
		if [ "$a" = raw ]; then
			# stream-0 metadata as well as rows
			"$OMLSEND" -q -r "$T/meta.oml" "$dest"
		else
			eval "\"\$OMLSEND\" -q -e sharded -n 15 $a \"\$dest\""
		fi
		k=$((k + 1))
		wait_for 20 ended_are "$k" "$@" || {
			echo "client $k: $(ended "$@") clients ended" >&2
			return 1
		}
	done
}

# Every table of $1 and $2: the same rows, in the same order, in every
# column but oml_ts_server, oml_ts_client to the microsecond (the merge
# rebases it in two steps: the shard's offset, then the shard's start).
same_db() {
	local t q a b
	q="SELECT type, name, sql FROM sqlite_master ORDER BY name"
	a=$(sqlite -readonly "$1" "$q")
	b=$(sqlite -readonly "$2" "$q")
	[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") >&2; return 1; }
	for t in $(sqlite -readonly "$1" "SELECT name FROM sqlite_master WHERE type = 'table'"); do
		q=$(sqlite -readonly "$1" "SELECT 'SELECT ' || group_concat(CASE name WHEN 'oml_ts_client' THEN 'printf(''%.6f'', oml_ts_client)' ELSE 'quote(\"' || name || '\")' END, ' || ''|'' || ') || ' FROM \"$t\" ORDER BY rowid' FROM pragma_table_info('$t') WHERE name != 'oml_ts_server'")
		a=$(sqlite -readonly "$1" "$q")
		b=$(sqlite -readonly "$2" "$q")
		[ -n "$a" ] || { echo "table $t is empty" >&2; return 1; }
		[ "$a" = "$b" ] || {
			echo "table $t differs:" >&2
			diff <(echo "$a") <(echo "$b") >&2
			return 1
		}
	done
}

# Rows of each table of $1 in oml_ts_server order: how many are not.
disorder() {
	local t n=0
	for t in $(sqlite -readonly "$1" "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> '_senders'"); do
		n=$((n + $(sqlite -readonly "$1" "SELECT count(*) FROM \"$t\" a JOIN \"$t\" b ON b.oml_tuple_id = a.oml_tuple_id + 1 WHERE b.oml_ts_server < a.oml_ts_server")))
	done
	echo "$n"
}

# What the inputs are: their bytes and every file beside them.
inputs_state() {
	sha256sum "$T"/s[123]/data/*
	ls -la --time-style=full-iso "$T"/s[123]/data
}

teardown_farm() {
	local p
	for p in "${FARM[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${FARM[@]}"; do
		wait "$p" || { echo "server $p exited with $?" >&2; return 1; }
	done
	FARM=()
}

@test "the shards three servers behind HAProxy leave are merged into the database one server fed the same clients makes" {
	local before s n
	FARM=()
	printf '%s\n' 'protocol: 5' 'domain: sharded' 'start-time: 1700000050' \
	    'sender-id: node6' 'app-name: meta' \
	    'schema: 0 _experiment_metadata subject:string key:string value:string' \
	    'schema: 1 gen n:int32 x:double s:string' 'content: text' '' \
	    $'0.1\t0\t1\t.gen\tunit\tms' $'0.2\t1\t1\t1\t1.5\tone' >"$T/meta.oml"
	start_farm
	clients "127.0.0.1:$HP" "$T"/s[123]/log
	# one server, the same clients
	start_server
	clients "127.0.0.1:$PORT" "$LOG"
	stop_server
	teardown_farm
	# every server took part; none dropped or refused anything
	for s in 1 2 3; do
		[ -f "$T/s$s/data/sharded.sq3" ]
		refute grep -E 'tuple dropped|protocol error|ERROR' "$T/s$s/log"
	done
	# The shards are what a merge has to untangle: a schema's table has
	# different names in different shards (gen, gen_2), sender ids differ.
	run sqlite -readonly "$T/s3/data/sharded.sq3" "SELECT value FROM _experiment_metadata WHERE key LIKE 'table_gen%' ORDER BY key"
	[ "$output" = "$(printf '1 gen n:int64\n1 gen_2 n:int32 x:double s:string')" ]
	before=$(inputs_state)
	run merge "$T/merged.sq3" "$T"/s[123]/data/sharded.sq3
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$T/merged.sq3: 3 inputs, 122 rows, 6 senders, start time 1700000000" ]
	[ "${lines[1]}" = "  _experiment_metadata: 1 rows" ]
	[ "${lines[2]}" = "  gen: 46 rows" ]
	[ "${lines[6]}" = "  other_2: 15 rows" ]
	same_db "$T/merged.sq3" "$DATA/sharded.sq3"
	run sqlite -readonly "$T/merged.sq3" "SELECT name, id FROM _senders ORDER BY id"
	[ "$output" = "$(printf 'node1|1\nnode2|2\nnode3|3\nnode5|4\nnode6|5\nnode7|6')" ]
	[ "$(disorder "$T/merged.sq3")" -eq 0 ]
	# oml_ts_server is the shard's, rebased from its start time to the
	# experiment's: s3 started with node3 at 1700000020
	run sqlite -readonly "$T/merged.sq3" "ATTACH 'file:$T/s3/data/sharded.sq3?mode=ro&immutable=1' AS s3; SELECT count(*), sum(abs(o.oml_ts_server - (i.oml_ts_server + 20)) < 1e-6) FROM gen_2 o JOIN s3.gen i USING (oml_seq) WHERE o.oml_sender_id = 3"
	[ "$output" = "15|15" ]
	run sqlite -readonly "$T/merged.sq3" "PRAGMA integrity_check; PRAGMA journal_mode; PRAGMA page_size"
	[ "$output" = "$(printf 'ok\ndelete\n16384')" ]
	# the inputs are as they were: bytes, names, times, no new files
	[ "$(inputs_state)" = "$before" ]
	# the inputs' order changes nothing, not even oml_ts_server
	run merge "$T/reversed.sq3" "$T"/s{3,2,1}/data/sharded.sq3
	[ "$status" -eq 0 ]
	[ "$(sqlite -readonly "$T/merged.sq3" .dump)" = "$(sqlite -readonly "$T/reversed.sq3" .dump)" ]
}

# Shards made by importing files: shard DIR EXP [omlsend options]
shard() {
	local d=$T/$1
	mkdir -p "$d"
	"$OMLSEND" -q -e "$2" "${@:3}" file:"$T/$1-$2.oml"
	"$OML2_IMPORT" -D "$d" --logfile="$T/import.log" "$T/$1-$2.oml" >/dev/null
}

@test "oml2-merge refuses inputs of different experiments, or an output that exists, unless told" {
	shard a one -S n1 -n 5 -T 1700000000
	shard b one -S n2 -n 5 -T 1700000005
	shard c other -S n3 -n 5 -T 1700000001
	run "$OML2_MERGE" "$T/out.sq3" "$T/a/one.sq3" "$T/c/other.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == "oml2-merge: $T/a/one.sq3 is of experiment one, $T/c/other.sq3 of other (--any-experiment merges them)"* ]]
	[ ! -e "$T/out.sq3" ]
	run "$OML2_MERGE" --any-experiment "$T/out.sq3" "$T/a/one.sq3" "$T/c/other.sq3"
	[ "$status" -eq 0 ]
	run sqlite -readonly "$T/out.sq3" "SELECT count(*), min(oml_ts_client) FROM gen; SELECT value FROM _experiment_metadata WHERE key = 'start_time'"
	[ "$output" = "$(printf '10|0.001\n1700000000')" ]
	# an existing output stays as it is
	run "$OML2_MERGE" "$T/out.sq3" "$T/a/one.sq3" "$T/b/one.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == "oml2-merge: $T/out.sq3 exists (--force replaces it)"* ]]
	run sqlite -readonly "$T/out.sq3" "SELECT group_concat(name) FROM (SELECT name FROM _senders ORDER BY id)"
	[ "$output" = "n1,n3" ]
	run "$OML2_MERGE" -f "$T/out.sq3" "$T/a/one.sq3" "$T/b/one.sq3"
	[ "$status" -eq 0 ]
	run sqlite -readonly "$T/out.sq3" "SELECT group_concat(name) FROM (SELECT name FROM _senders ORDER BY id)"
	[ "$output" = "n1,n2" ]
	# never an input as the output, nor one input twice
	run "$OML2_MERGE" -f "$T/a/one.sq3" "$T/a/one.sq3" "$T/b/one.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == "oml2-merge: $T/a/one.sq3 is also an input"* ]]
	run "$OML2_MERGE" "$T/out2.sq3" "$T/a/one.sq3" "$T/a/../a/one.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == "oml2-merge: $T/a/one.sq3 and $T/a/../a/one.sq3 are the same file"* ]]
	run sqlite -readonly "$T/a/one.sq3" "SELECT count(*) FROM gen"
	[ "$output" = 5 ]
	# and no half-made output is ever left behind
	[ -z "$(ls -A "$T" | grep -F '.merging-')" ]
}

@test "oml2-merge refuses a shard a server has open, and one a killed server left unrecovered" {
	local holder pid
	start_server
	bg "$OMLSEND" -q -e live -n 5 -H 30000 "127.0.0.1:$PORT"
	holder=$BG
	wait_rows live gen 5
	run "$OML2_MERGE" "$T/out.sq3" "$DATA/live.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$DATA/live.sq3 is open in a server or oml2-import; stop it, or let its experiment end, first"* ]]
	# killed with its database open: the WAL holds committed rows that an
	# immutable reader would miss
	pid=$(exp_pid live)
	kill -KILL "$pid"
	wait_gone "$pid"
	kill "$holder"
	[ -s "$DATA/live.sq3-wal" ]
	run "$OML2_MERGE" "$T/out.sq3" "$DATA/live.sq3"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$DATA/live.sq3: has a -wal file with uncommitted or uncheckpointed changes"* ]]
	[ ! -e "$T/out.sq3" ]
	# recovered as the message says, it merges
	sqlite "$DATA/live.sq3" "PRAGMA integrity_check" >/dev/null
	run "$OML2_MERGE" "$T/out.sq3" "$DATA/live.sq3"
	[ "$status" -eq 0 ]
	run sqlite -readonly "$T/out.sq3" "SELECT count(*) FROM gen"
	[ "$output" = 5 ]
	stop_server
}
