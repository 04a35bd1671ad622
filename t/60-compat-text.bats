#!/usr/bin/env bats
# Headers, schema declarations and the text encoding (PROTOCOL.md §2,
# §3, §5; §11 items 1-4, 6 and 7): what the original accepts is stored the
# same way, what it refuses closes the connection with a log line, and a
# bad text line costs that line only.

load helpers
load compat

# A good binary packet for "1 t x:int32": bin_row SEQ VALUE
bin_row() {
	hexbin "$(pkt 1 "$1" 1 "$(v_i32 "$2")")"
}

@test "protocol 0 and 6 are refused; no protocol line, or 'protocol : 9', is accepted in both encodings" {
	start_server
	raw_refused 'protocol: 0\ndomain: p0\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*unsupported protocol 0; connection closed'
	raw_refused 'protocol: 6\ndomain: p6\nschema: 1 t x:int32\ncontent: binary\n\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*unsupported protocol 6; connection closed'
	raw 'domain: nop\nschema: 1 t x:int32\n\n1\t1\t1\t7\n'
	raw 'protocol : 9\ndomain: nop\nschema: 1 t x:int32\n\n1\t1\t2\t8\n'
	{ printf 'domain: nop\nschema: 1 t x:int32\ncontent: binary\n\n'; bin_row 3 9; } >"$T/b1"
	{ printf 'protocol : 9\ndomain: nop\nschema: 1 t x:int32\ncontent: binary\n\n'; bin_row 4 10; } >"$T/b2"
	sendf "$T/b1"
	sendf "$T/b2"
	wait_q nop "SELECT oml_seq, x FROM t ORDER BY oml_seq" "$(printf '1|7\n2|8\n3|9\n4|10')"
	[ "$(nlog 'connection closed')" = 2 ]
}

@test "start-time or sender-id before domain, content: foo and a line without a colon are refused; foo: bar is ignored" {
	start_server
	raw_refused 'protocol: 5\nstart-time: 1400000000\ndomain: h1\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*start-time before domain; connection closed'
	raw_refused 'protocol: 5\nsender-id: s\ndomain: h1\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*sender-id before domain; connection closed'
	raw_refused 'protocol: 5\ndomain: h1\nschema: 1 t x:int32\ncontent: foo\n\n1\t1\t1\t1\n'
	wait_log 'client 127.0.0.1 port [0-9]+: .*unknown content "foo"; connection closed'
	raw_refused 'protocol: 5\ndomain: h1\nschema: 1 t x:int32\nno colon here\n\n1\t1\t1\t1\n'
	wait_log "client 127.0.0.1 port [0-9]+: .*':'.*; connection closed"
	raw 'protocol: 5\ndomain: h1\nfoo: bar\nschema: 1 t x:int32\nbar: baz\n\n1\t1\t1\t1\n'
	{ printf 'protocol: 5\ndomain: h1\nfoo: bar\nschema: 1 t x:int32\ncontent: binary\nbar: baz\n\n'; bin_row 2 2; } >"$T/b"
	sendf "$T/b"
	wait_q h1 "SELECT oml_seq, x FROM t ORDER BY oml_seq" "$(printf '1|1\n2|2')"
}

@test "headers and text lines ending in CRLF are accepted, and the CR is not data" {
	start_server
	raw 'protocol: 5\r\ndomain: crlf\r\nstart-time: 1400000000\r\nschema: 1 t s:string b:bool\r\n\r\n1\t1\t1\tabc\tF\r\n1\t1\t2\t\tfalse\r\n1\t1\t3\tx\tT\r\n'
	{ printf 'protocol: 5\r\ndomain: crlf\r\nschema: 2 u x:int32\r\ncontent: binary\r\n\r\n'; hexbin "$(pkt 2 1 1 "$(v_i32 5)")"; } >"$T/b"
	sendf "$T/b"
	wait_q crlf "SELECT oml_seq, s, length(s), $(sql_int b) FROM t ORDER BY oml_seq" "$(printf '1|abc|3|0\n2||0|0\n3|x|1|1')"
	wait_q crlf "SELECT oml_seq, x FROM u" "1|5"
}

@test "schemas with an unknown type, a bad name or no fields close the connection" {
	start_server
	local s n=0
	for s in '1 t x:int' '1 t x:[string]' '1 t x:[blob]' '1 t x:[guid]' \
	    '1 t x:int32:junk' '1 t x' '1 1t x:int32' '1 t x-y:int32' \
	    '1 t-u x:int32' '1 t' '1 t y:int32 y:int32' '1 t oml_seq:int32' \
	    'x t y:int32'; do
		raw_refused 'protocol: 5\ndomain: sch\nschema: %s\n\n1\t1\t1\t1\n' "$s"
		n=$((n + 1))
		wait_for 10 eval '[ "$(nlog "bad schema.*; connection closed")" = $n ]'
	done
	log_has 'bad schema "1 t x:int": unknown type .int.'
	log_has "bad schema \"1 1t x:int32\": invalid schema name '1t'"
	log_has "bad schema \"1 t x-y:int32\": invalid field name 'x-y'"
	log_has "bad schema \"1 t\": schema 't' has no fields"
	# nothing was created for them
	run q sch "SELECT count(*) FROM _experiment_metadata WHERE key LIKE 'table_t%'"
	[ "$output" = 0 ]
}

@test "tabs between fields, a 0x2 index, legacy type names and a trailing space are accepted" {
	start_server
	raw 'protocol: 5\ndomain: leg\nschema: 0x2\tlegacy\ta:integer\t\tb:long c:float  d:real \n\n1\t2\t1\t7\t8\t1.5\t-2.5\n'
	wait_q leg "SELECT a, b FROM legacy" "7|8"
	wait_q leg "SELECT count(*) FROM legacy WHERE c = 1.5 AND d = -2.5" 1
	run q leg "SELECT value FROM _experiment_metadata WHERE key = 'table_legacy'"
	[ "$output" = "2 legacy a:int32 b:int32 c:double d:double" ]
}

@test "bad text lines are dropped one by one and the rest of the same write is stored" {
	start_server
	local wide="" vals27="" vals200="" i
	for i in $(seq 1 27); do wide="$wide f$i:int32"; vals27="$vals27	$i"; done
	local huge=""
	for i in $(seq 1 200); do huge="$huge g$i:int32"; vals200="$vals200	$i"; done
	{
		printf 'protocol: 5\ndomain: lines\nschema: 1 wide%s\nschema: 2 huge%s\n\n' "$wide" "$huge"
		printf '1\t1\t1%s\n' "$vals27"		# 27 values: the original stopped here
		printf '\n'					# empty line
		printf '1\t1\n'					# fewer than 3 fields
		printf 'junk\n'
		printf '1\t2\t1%s\n' "$vals200"		# 200 values
		printf '1\t1\t2%s\t28\n' "$vals27"		# one value too many
		printf '1\t1\t3\t1\t2\n'			# too few
		printf '1\t9\t1\t1\n'				# stream never declared
		printf '\r\n'
		printf '1\t1\t4%s\n' "$vals27"
	} >"$T/lines"
	# one write, the connection held open: nothing may wait for more data
	bg "$OMLSEND" -q -r "$T/lines" -H 8000 "127.0.0.1:$PORT"
	wait_q lines "SELECT oml_seq, f1, f27 FROM wide ORDER BY oml_seq" "$(printf '1|1|27\n4|1|27')"
	wait_q lines "SELECT oml_seq, g1, g100, g200 FROM huge" "1|1|100|200"
	kill -0 "$BG"
	kill "$BG"
	wait_log 'closed by the client: 3 rows stored, 7 dropped'
	log_has 'tuple dropped: empty line'
	log_has 'tuple dropped: fewer than 3 fields'
	log_has 'tuple dropped: 28 values for wide, which has 27'
	log_has 'tuple dropped: stream 9 was never declared'
}

@test "text conversions follow §11 item 7" {
	start_server
	{
		header conv text "1 c i:int32 d:double b:blob g:guid o:bool"
		tline 1 1 1 010 '' '' 0 0		# octal; empty double, blob; guid 0; bool 0
		tline 1 1 2 1 1e400 AA== 1 x		# overflow: dropped
		tline 1 1 3 2 1e-310 AA== 1 x		# underflow: dropped
		tline 1 1 4 3 1.5 '!!!!' 5 ''		# invalid base64; empty bool
		tline 1 1 5 4 2.5 AA== 6 0 ''		# a trailing TAB: count mismatch
		tline 1 1 6 5 -0.5 AAEC 7 F
		tline 1 1 7 6 inf AA== 8 T		# nan and inf are numbers
		tline 1 1 8 7 -INF AA== 9 T
	} >"$T/conv"
	sendf "$T/conv"
	wait_closed conv
	run q conv "SELECT oml_seq, i, $(nullable d), $(blobhex b), $(nullable g), $(sql_int o) FROM c WHERE oml_seq < 7 ORDER BY oml_seq"
	# an empty double is NaN: NULL in SQLite, 'NaN' in PostgreSQL (§8.4)
	local nan=NULL
	[ "$BACKEND" = sqlite ] || nan=NaN
	[ "$output" = "$(printf '1|8|%s||NULL|1\n4|3|1.5|NULL|5|0\n6|5|-0.5|000102|7|0' "$nan")" ]
	run q conv "SELECT oml_seq FROM c WHERE (oml_seq = 7 AND d > 1e308) OR (oml_seq = 8 AND d < -1e308) ORDER BY oml_seq"
	[ "$output" = "$(printf '7\n8')" ]
	if [ "$BACKEND" = sqlite ]; then	# the empty blob is a BLOB, not text
		[ "$(sq conv "SELECT typeof(b) FROM c WHERE oml_seq = 1")" = blob ]
	fi
	log_has 'closed by the client: 5 rows stored, 3 dropped'
	log_has 'tuple dropped: c: double out of range'
}

@test "text integers read like strtol: hex, signs, truncation, ranges; guids in decimal" {
	start_server
	{
		header ints text "1 n a:int32 b:uint32 c:int64 d:uint64 g:guid"
		tline 1 1 1 0x10 -1 -9223372036854775808 18446744073709551615 12abc
		tline 1 1 2 99999999999 4294967296 +42 0x8000000000000000 007
		tline 1 1 3 1 1 9223372036854775808 1 1	# int64 overflow: dropped
		tline 1 1 4 1 1 1 18446744073709551616 1	# uint64 overflow: dropped
		tline 1 1 5 abc ' 7' -5 1 0x10
		tline 1 1 6 99999999999999999999 1 1 1 1	# beyond 64 bits: dropped
		tline 1 1 7 '' '' '' '' ''			# empty: 0, and guid NULL
	} >"$T/ints"
	sendf "$T/ints"
	wait_closed ints
	run q ints "SELECT oml_seq, a, b, c, d, $(nullable g) FROM n ORDER BY oml_seq"
	[ "${lines[0]}" = "1|16|4294967295|-9223372036854775808|-1|12" ]
	[ "${lines[1]}" = "2|1215752191|0|42|-9223372036854775808|7" ]
	[ "${lines[2]}" = "5|0|7|-5|1|NULL" ]
	[ "${lines[3]}" = "7|0|0|0|0|NULL" ]
	[ "${#lines[@]}" = 4 ]
}

@test "backslash escapes are decoded and a trailing lone backslash is kept" {
	start_server
	{
		header esc text "1 s s:string t:string"
		tline 1 1 1 'a\tb' 'c\nd'
		tline 1 1 2 'e\rf' 'back\\slash'
		tline 1 1 3 '\x\y' 'end\'
		tline 1 1 4 '\' ''
		tline 1 1 5 'a\\\tb' 'x'
	} >"$T/esc"
	sendf "$T/esc"
	wait_closed esc
	local tab nl cr
	tab=$(printf '\t') nl=$(printf '\nx') nl=${nl%x} cr=$(printf '\r')
	run q esc "SELECT oml_seq, length(s), length(t) FROM s ORDER BY oml_seq"
	[ "$output" = "$(printf '1|3|3\n2|3|10\n3|2|4\n4|1|0\n5|4|1')" ]
	run q esc "SELECT oml_seq FROM s WHERE (s = 'a${tab}b' AND t = 'c${nl}d') OR (s = 'e${cr}f' AND t = 'back\\slash') OR (s = 'xy' AND t = 'end\\') OR (s = '\\' AND t = '') OR (s = 'a\\${tab}b') ORDER BY oml_seq"
	[ "$output" = "$(printf '1\n2\n3\n4\n5')" ]
}

@test "base64 blobs decode; invalid base64 is NULL and an empty field a zero-length blob" {
	start_server
	{
		header b64 text "1 b b:blob"
		tline 1 1 1 AA==
		tline 1 1 2 AAE=
		tline 1 1 3 AAEC
		tline 1 1 4 ''
		tline 1 1 5 aGVsbG8gd29ybGQ=
		tline 1 1 6 ////
		tline 1 1 7 AAA
		tline 1 1 8 'A==='
		tline 1 1 9 'AA=A'
		tline 1 1 10 'AA==AA=='
		tline 1 1 11 'AA A'
		tline 1 1 12 'AA-_'
	} >"$T/b64"
	sendf "$T/b64"
	wait_closed b64
	run q b64 "SELECT oml_seq, $(blobhex b) FROM b ORDER BY oml_seq"
	[ "$output" = "$(printf '1|00\n2|0001\n3|000102\n4|\n5|68656C6C6F20776F726C64\n6|FFFFFF\n7|NULL\n8|NULL\n9|NULL\n10|NULL\n11|NULL\n12|NULL')" ]
}

@test "a bool is false exactly when it is a prefix of false, the empty string included" {
	start_server
	local v i=0
	{
		header bools text "1 b b:bool"
		for v in '' f F fa FALSE fAlSe T true 0 1 no false1 x ' f'; do
			i=$((i + 1))
			tline 1 1 "$i" "$v"
		done
	} >"$T/bools"
	sendf "$T/bools"
	wait_n bools b 14
	run q bools "SELECT $(sql_int b) FROM b ORDER BY oml_seq"
	[ "$(echo $output)" = "0 0 0 0 0 0 1 1 1 1 1 1 1 1" ]
}

@test "text vectors of every element type are stored in the text form of §8.4" {
	start_server
	{
		header tvec text "1 v a:[int32] b:[uint32] c:[int64] d:[uint64] e:[double] f:[bool]"
		tline 1 1 1 '3 1 -2 3' '2 0 4294967295' '1 -9223372036854775808' '1 18446744073709551615' '2 1.5 -2.25' '3 True False fal'
		tline 1 1 2 0 0 0 0 0 0
		tline 1 1 3 '1 2 3' '1 0x10' '2 010 -1' '1 -1' '2.9 1e300 nan' '1 T'
		tline 1 1 4 '3 1 2' 0 0 0 0 0		# fewer elements than the count
		tline 1 1 5 0 0 0 0 '2 1.5' 0		# the same for [double]
		tline 1 1 6 '' '' '' '' '' ''
		tline 1 1 7 '99999999999 1' 0 0 0 0 0	# a huge count, no elements
		tline 1 1 8 '-1' 0 0 0 0 0			# a negative count
		tline 1 1 9 0 0 0 0 0 '2 x'		# fewer bool tokens
	} >"$T/tvec"
	sendf "$T/tvec"
	wait_closed tvec
	run q tvec "SELECT oml_seq, a, b, c, d, e, f FROM v ORDER BY oml_seq"
	[ "${lines[0]}" = "1|[ 1, -2, 3 ]|[ 0, 4294967295 ]|[ -9223372036854775808 ]|[ 18446744073709551615 ]|[ 1.5, -2.25 ]|[ true, false, false ]" ]
	[ "${lines[1]}" = "2||||||" ]
	[ "${lines[2]}" = "3|[ 2 ]|[ 16 ]|[ 8, -1 ]|[ 18446744073709551615 ]|[ 1e+300, nan ]|[ true ]" ]
	[ "${lines[3]}" = "6||||||" ]
	[ "${#lines[@]}" = 4 ]
	run q tvec "SELECT count(*) FROM v WHERE a IS NULL OR f IS NULL"
	[ "$output" = 0 ]
}

@test "the complete text example of §5.6 stores what the original stored" {
	start_server
	{
		printf 'protocol: 5\ndomain: exp1\nstart-time: 1400000000\nsender-id: node1\napp-name: gen\n'
		printf 'schema: 0 _experiment_metadata subject:string key:string value:string\n'
		printf 'schema: 1 gen_sin label:string phase:double value:double\n'
		printf 'schema: 2 gen_vec j:[int32] k:[double] l:[bool]\n'
		printf 'content: text\n\n'
		tline 0.5 1 1 sample-1 0.000000 1.5
		tline 0.6 2 1 '3 1 -2 3' '2 1.5 -2.25' '3 True False fal'
		tline 0.7 0 2 . key1 val1
		tline 0.8 0 3 .gen_sin unit rad
		tline 0.9 0 4 . schema '3 gen_new x:int32'
		tline 1.0 3 1 42
	} >"$T/ex"
	sendf "$T/ex"
	wait_closed exp1
	run q exp1 "SELECT oml_tuple_id, oml_sender_id, oml_seq, label FROM gen_sin"
	[ "$output" = "1|1|1|sample-1" ]
	run q exp1 "SELECT count(*) FROM gen_sin WHERE oml_ts_client = 0.5 AND phase = 0 AND value = 1.5 AND oml_ts_server > 0"
	[ "$output" = 1 ]
	run q exp1 "SELECT j, k, l FROM gen_vec"
	[ "$output" = "[ 1, -2, 3 ]|[ 1.5, -2.25 ]|[ true, false, false ]" ]
	run q exp1 "SELECT oml_seq, x FROM gen_new"
	[ "$output" = "1|42" ]
	run q exp1 "SELECT $(nullable oml_sender_id), $(nullable oml_seq), $(nullable subject), key, value FROM _experiment_metadata ORDER BY oml_tuple_id"
	[ "${lines[0]}" = "NULL|NULL|NULL|table__experiment_metadata|0 _experiment_metadata subject:string key:string value:string" ]
	[ "${lines[1]}" = "NULL|NULL|NULL|start_time|1400000000" ]
	[ "${lines[2]}" = "NULL|NULL|NULL|table_gen_sin|1 gen_sin label:string phase:double value:double" ]
	[ "${lines[3]}" = "NULL|NULL|NULL|table_gen_vec|2 gen_vec j:[int32] k:[double] l:[bool]" ]
	[ "${lines[4]}" = "1|2|.|key1|val1" ]
	[ "${lines[5]}" = "1|3|.gen_sin|unit|rad" ]
	[ "${lines[6]}" = "NULL|NULL|NULL|table_gen_new|3 gen_new x:int32" ]
	[ "${#lines[@]}" = 7 ]
	run q exp1 "SELECT count(*) FROM _experiment_metadata WHERE oml_ts_client IN (0.7, 0.8) AND oml_ts_server > 0"
	[ "$output" = 2 ]
}

@test "a text client's bad lines leave other clients untouched" {
	start_server
	bg send -e witness -n 300 -B 100 -p 20
	local w=$BG
	{
		header witness text "1 t x:int32 b:blob s:string v:[int32]"
		tline 1 1 1 1 '!!' 'end\' '5 1'
		printf '\n\n\t\t\t\n'
		tline 1 1 2 99999999999999999999 '' '' 0
		tline 1 1 3 2 AA== 'ok' '1 1'
	} >"$T/bad"
	"$OMLSEND" -q -r "$T/bad" -c 3 "127.0.0.1:$PORT"
	wait "$w"
	wait_n witness gen 300
	wait_q witness "SELECT count(*) FROM t WHERE x = 2 AND v = '[ 1 ]'" 3
	kill -0 "$SERVER_PID"
}
