#!/usr/bin/env bats
# Binary data (PROTOCOL.md §6): the worked vectors of §6.8 byte for byte,
# every value type, string and blob sizes, and resynchronisation after
# bad packets without stalling (§6.5, §6.7, §11 item 8).

load helpers
load compat

# The header of §6.8.
bexp_header() {
	printf 'protocol: 5\ndomain: bexp\nstart-time: 1400000000\nsender-id: nodeB\napp-name: a\nschema: 0 _experiment_metadata subject:string key:string value:string\nschema: 1 a_one n:int32 x:double s:string\nschema: 3 a_three u:uint32 i:int64 ul:uint64 g:guid t:bool f:bool bl:blob d:double\ncontent: binary\n\n'
}

@test "the six worked vectors of §6.8 store exactly the listed values" {
	start_server
	local f=$T/vectors
	bexp_header >"$f"
	# P1: short packet, stream 1
	printf '\xAA\xAA\x01\x00\x1C\x03\x01\x05\x00\x00\x00\x01\x02\x30\x00\x00\x00\x01\x05\x00\x00\x00\x2A\x02\x32\x43\xF3\xE0\x02\x04\x02\x68\x69' >>"$f"
	# P1L: the same as a long packet, seq 9
	printf '\xAA\xAA\x02\x00\x00\x00\x1C\x03\x01\x05\x00\x00\x00\x09\x02\x30\x00\x00\x00\x01\x05\x00\x00\x00\x2A\x02\x32\x43\xF3\xE0\x02\x04\x02\x68\x69' >>"$f"
	# P1-legacy: LONG_T seq-no (10) and int32 value (-1)
	printf '\xAA\xAA\x01\x00\x1C\x03\x01\x01\x00\x00\x00\x0A\x02\x30\x00\x00\x00\x01\x01\xFF\xFF\xFF\xFF\x02\x32\x43\xF3\xE0\x02\x04\x02\x68\x69' >>"$f"
	# P2: stream-0 ". schema" declaring stream 2
	printf '\xAA\xAA\x01\x00\x3F\x03\x00\x05\x00\x00\x00\x01\x02\x20\x00\x00\x00\x02\x04\x01\x2E\x04\x06\x73\x63\x68\x65\x6D\x61\x04\x25\x32\x20\x61\x5F\x76\x65\x63\x20\x76\x3A\x5B\x69\x6E\x74\x33\x32\x5D\x20\x77\x3A\x5B\x64\x6F\x75\x62\x6C\x65\x5D\x20\x62\x3A\x5B\x62\x6F\x6F\x6C\x5D' >>"$f"
	# P3: vectors on stream 2
	printf '\xAA\xAA\x01\x00\x38\x03\x02\x05\x00\x00\x00\x07\x02\xE0\x00\x00\x00\xFF\x0D\x05\x00\x03\x00\x00\x00\x01\xFF\xFF\xFF\xFE\x00\x00\x01\x2C\x0D\x0F\x00\x02\x3F\xF8\x00\x00\x00\x00\x00\x00\xBF\xB9\x99\x99\x99\x99\x99\x9A\x0D\x0E\x00\x03\x0C\x0B\x0C' >>"$f"
	# P4: every scalar type, stream 3
	printf '\xAA\xAA\x01\x00\x3D\x08\x03\x05\x00\x00\x00\x02\x02\x28\x00\x00\x00\x04\x06\xEE\x6B\x28\x00\x07\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFE\x08\x00\x00\x01\x1F\x71\xFB\x04\xCB\x0A\x01\x02\x03\x04\x05\x06\x07\x08\x0C\x0B\x09\x00\x00\x00\x03\x00\x01\xAA\x03\x00\x00\x00\x00\x00' >>"$f"
	[ "$(wc -c <"$f")" -eq $(($(bexp_header | wc -c) + 33 + 35 + 33 + 68 + 61 + 66)) ]
	sendf "$f"
	wait_closed bexp

	run q bexp "SELECT oml_sender_id, oml_seq, n, s FROM a_one ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '1|1|42|hi\n1|9|42|hi\n1|10|-1|hi')" ]
	run q bexp "SELECT count(*) FROM a_one WHERE oml_ts_client = 1.5 AND x = 3.1415899991989136"
	[ "$output" = 3 ]

	run q bexp "SELECT oml_sender_id, oml_seq, v, w, b FROM a_vec"
	[ "$output" = "1|7|[ 1, -2, 300 ]|[ 1.5, -0.1 ]|[ true, false, true ]" ]
	run q bexp "SELECT count(*) FROM a_vec WHERE oml_ts_client = -0.25"
	[ "$output" = 1 ]

	# u is the true value (our deliberate fix; the original stored -294967296)
	run q bexp "SELECT oml_seq, u, i, ul, g, $(sql_int t), $(sql_int f), $(blobhex bl), $(nullable d) FROM a_three"
	if [ "$BACKEND" = postgresql ]; then
		[ "$output" = "2|4000000000|-2|1234567890123|72623859790382856|1|0|0001AA|NaN" ]
	else
		[ "$output" = "2|4000000000|-2|1234567890123|72623859790382856|1|0|0001AA|NULL" ]
	fi
	run q bexp "SELECT count(*) FROM a_three WHERE oml_ts_client = 10"
	[ "$output" = 1 ]

	# P2 declared a_vec and was not stored as a row
	run q bexp "SELECT key, value FROM _experiment_metadata WHERE key LIKE 'table_a%' ORDER BY oml_tuple_id"
	[ "$output" = "$(printf 'table_a_one|1 a_one n:int32 x:double s:string\ntable_a_three|3 a_three u:uint32 i:int64 ul:uint64 g:guid t:bool f:bool bl:blob d:double\ntable_a_vec|2 a_vec v:[int32] w:[double] b:[bool]')" ]
	run q bexp "SELECT count(*) FROM _experiment_metadata WHERE subject IS NOT NULL OR key = 'schema'"
	[ "$output" = 0 ]
	log_has 'client 127.0.0.1 port [0-9]+ closed by the client: 5 rows stored, 0 dropped'
}

@test "DOUBLE_T values decode as §6.3 lists, and DOUBLE_NAN is stored as NaN (NULL in SQLite)" {
	start_server
	local f=$T/d cols="" vals="" i=0 v
	for v in 0 0.5 1 -1 1.5 2 10 -0.25 3.14159 -0.1 1e-10 inf; do
		cols="$cols c$i:double"
		vals="$vals$(v_dbl "$v")"
		i=$((i + 1))
	done
	# 1400000000.123456 loses its fraction; 1e100 is sent as DOUBLE_NAN
	cols="$cols c12:double c13:double"
	vals="${vals}0229b927001f$(v_nan)"
	header dbl binary "1 d$cols" >"$f"
	hexbin "$(pkt 1 1 14 "$vals")" >>"$f"
	sendf "$f"
	wait_n dbl d 1
	run q dbl "SELECT count(*) FROM d WHERE c0 = 0 AND c1 = 0.5 AND c2 = 1 AND c3 = -1 AND c4 = 1.5 AND c5 = 2 AND c6 = 10 AND c7 = -0.25 AND c8 = 3.1415899991989136 AND c9 = -0.099999999976716936 AND c10 = 9.9999999925680372e-11 AND c11 = -2 AND c12 = 1400000000"
	[ "$output" = 1 ]
	run q dbl "SELECT $(nullable c13) FROM d"
	if [ "$BACKEND" = postgresql ]; then
		[ "$output" = NaN ]
	else
		[ "$output" = NULL ]
	fi
}

@test "every integer, guid and bool value type is stored at its full range" {
	start_server
	local f=$T/ints
	header ints binary "1 t a:int32 b:uint32 c:int64 d:uint64 g:guid t:bool f:bool" >"$f"
	hexbin "$(pkt 1 1 7 "$(v_i32 -2147483648)$(v_u32 4294967295)$(v_i64 -9223372036854775808)$(v_u64 ffffffffffffffff)$(v_guid ffffffffffffffff)$(v_true)$(v_false)")" >>"$f"
	hexbin "$(pkt 1 2 7 "$(v_i32 2147483647)$(v_u32 2147483648)$(v_i64 9223372036854775807)$(v_u64 8000000000000000)$(v_guid 0000000000000000)$(v_false)$(v_true)")" >>"$f"
	hexbin "$(pkt 1 3 7 "$(v_long 7)$(v_u32 0)$(v_i64 0)$(v_u64 7fffffffffffffff)$(v_guid 0000000000000001)$(v_true)$(v_true)")" >>"$f"
	sendf "$f"
	wait_n ints t 3
	# uint64 >= 2^63 and guids are stored as the signed reinterpretation
	# (§8.4), guid 0 as NULL
	run q ints "SELECT oml_seq, a, b, c, d, $(nullable g), $(sql_int t), $(sql_int f) FROM t ORDER BY oml_seq"
	[ "${lines[0]}" = "1|-2147483648|4294967295|-9223372036854775808|-1|-1|1|0" ]
	[ "${lines[1]}" = "2|2147483647|2147483648|9223372036854775807|-9223372036854775808|NULL|0|1" ]
	[ "${lines[2]}" = "3|7|0|0|9223372036854775807|1|1|1" ]
}

@test "strings of 0 to 255 bytes are stored, cut at an embedded NUL" {
	start_server
	local f=$T/str s255
	s255=$(head -c 255 /dev/zero | tr '\0' s)
	header strs binary "1 t s:string" >"$f"
	hexbin "$(pkt 1 1 1 "$(v_str "")")" >>"$f"
	hexbin "$(pkt 1 2 1 "$(v_str "$s255")")" >>"$f"
	hexbin "$(pkt 1 3 1 "04$(printf '%02x' 254)$(strhex "${s255:0:254}")")" >>"$f"
	hexbin "$(pkt 1 4 1 "0405616200cdef")" >>"$f"
	sendf "$f"
	wait_n strs t 4
	run q strs "SELECT oml_seq, length(s) FROM t ORDER BY oml_seq"
	[ "$output" = "$(printf '1|0\n2|255\n3|254\n4|2')" ]
	run q strs "SELECT s FROM t WHERE oml_seq = 4"
	[ "$output" = ab ]
	run q strs "SELECT count(*) FROM t WHERE oml_seq = 2 AND s = '$s255'"
	[ "$output" = 1 ]
}

# A packet of one blob from FILE, short or long: blob_pkt FILE SEQ [long]
blob_pkt() {
	local n body
	n=$(wc -c <"$1")
	body=$(printf '0101050000%04x0220000000010900%06x' "$2" "$n")
	if [ "${3:-}" = long ]; then
		hexbin "aaaa02$(printf '%08x' $((${#body} / 2 + n)))$body"
	else
		hexbin "aaaa01$(printf '%04x' $((${#body} / 2 + n)))$body"
	fi
	cat "$1"
}

@test "blobs of any size up to --max-packet are stored intact, a larger one closes the connection" {
	start_server --max-packet 300000
	local f=$T/blobs
	head -c 60000 /dev/urandom >"$T/b60k"
	head -c 200000 /dev/urandom >"$T/b200k"
	: >"$T/b0"
	header blobs binary "1 t bl:blob" >"$f"
	blob_pkt "$T/b0" 1 >>"$f"
	blob_pkt "$T/b60k" 2 >>"$f"
	blob_pkt "$T/b200k" 3 long >>"$f"
	blob_pkt "$T/b60k" 4 long >>"$f"
	sendf "$f"
	wait_n blobs t 4
	run q blobs "SELECT oml_seq, length(bl) FROM t ORDER BY oml_seq"
	[ "$output" = "$(printf '1|0\n2|60000\n3|200000\n4|60000')" ]
	[ "$(q blobs "SELECT $(sql_hex bl) FROM t WHERE oml_seq = 3")" = \
	    "$(od -An -v -tx1 "$T/b200k" | tr -d ' \n' | tr a-f A-F)" ]
	[ "$(q blobs "SELECT $(sql_hex bl) FROM t WHERE oml_seq = 2")" = \
	    "$(od -An -v -tx1 "$T/b60k" | tr -d ' \n' | tr a-f A-F)" ]

	head -c 300001 /dev/zero >"$T/big"
	header blobs binary "1 t bl:blob" >"$f"
	blob_pkt "$T/b0" 5 >>"$f"
	blob_pkt "$T/big" 6 long >>"$f"
	sendf_refused "$f"
	wait_log 'client 127.0.0.1 port [0-9]+: .*longer than --max-packet \(300000\); connection closed'
	wait_n blobs t 5
}

@test "vectors of every element type are stored in the text form of §8.4" {
	start_server
	local f=$T/vec
	header vecs binary "1 v a:[int32] b:[uint32] c:[int64] d:[uint64] e:[double] f:[bool]" >"$f"
	hexbin "$(pkt 1 1 6 "$(v_vec 05 3 80000000ffffffff7fffffff)$(v_vec 06 2 00000000ffffffff)$(v_vec 07 2 8000000000000000fffffffffffffffe)$(v_vec 08 2 ffffffffffffffff0000000000000001)$(v_vec 0f 5 3ff80000000000007ff80000000000007ff0000000000000fff00000000000007e37e43c8800759c)$(v_vec 0e 4 0c0b00ff)")" >>"$f"
	hexbin "$(pkt 1 2 6 "$(v_vec 05 0 '')$(v_vec 06 0 '')$(v_vec 07 0 '')$(v_vec 08 0 '')$(v_vec 0f 0 '')$(v_vec 0e 0 '')")" >>"$f"
	hexbin "$(pkt 1 3 6 "$(v_vec 05 1 0000002a)$(v_vec 06 1 0000002a)$(v_vec 07 1 000000000000002a)$(v_vec 08 1 000000000000002a)$(v_vec 0f 1 4045000000000000)$(v_vec 0e 1 0c)")" >>"$f"
	sendf "$f"
	wait_n vecs v 3
	run q vecs "SELECT a, b, c, d, e, f FROM v WHERE oml_seq = 1"
	[ "$output" = "[ -2147483648, -1, 2147483647 ]|[ 0, 4294967295 ]|[ -9223372036854775808, -2 ]|[ 18446744073709551615, 1 ]|[ 1.5, nan, inf, -inf, 1e+300 ]|[ true, false, false, false ]" ]
	# an empty vector is the empty string, not NULL
	run q vecs "SELECT count(*) FROM v WHERE oml_seq = 2 AND a = '' AND b = '' AND c = '' AND d = '' AND e = '' AND f = ''"
	[ "$output" = 1 ]
	run q vecs "SELECT a, b, c, d, e, f FROM v WHERE oml_seq = 3"
	[ "$output" = "[ 42 ]|[ 42 ]|[ 42 ]|[ 42 ]|[ 42 ]|[ true ]" ]
}

# Good packets on three streams with every kind of bad packet between
# them (§6.5, §6.7, §12 items 9, 10 and 12), one write or many.
resync_stream() {
	local inner
	header "$1" binary "1 b_one n:int32" "2 b_three a:int32 b:int32 c:int32" "3 b_vec v:[int32]" "4 b_dbl x:double"
	printf 'garbage \xAA before the first packet'
	hexbin "$(pkt 1 1 1 "$(v_i32 1)")"
	hexbin 'aaaa07 0005 0101 05 00000000'		# unknown packet type
	hexbin "$(pkt 1 2 1 "$(v_i32 2)")"
	hexbin 'aaaa01 0012 01 01 02 00000000 022000000001 0500000063'	# seq-no not an int32
	hexbin "$(pkt 1 3 1 "$(v_i32 3)")"
	hexbin "$(pkt 1 98 0 "")"				# zero values
	hexbin 'aaaa01 000c 01 01 05 00000062 0220000000'	# too short for a timestamp
	hexbin "$(pkt 1 4 1 "$(v_i32 4)")"
	# a packet for a stream never declared, whose blob holds a complete
	# packet: framing by length must not find the one inside
	inner=$(pkt 1 99 1 "$(v_i32 99)")
	hexbin "$(pkt 9 1 1 "$(v_blob "$inner")")"
	hexbin "$(pkt 1 5 1 "$(v_i32 5)")"
	hexbin "$(pkt 1 97 2 "$(v_i32 1)$(v_i32 2)")"		# more values than the schema
	hexbin "$(pkt 1 96 1 "$(v_u32 1)")"			# UINT32_T for int32
	hexbin "$(pkt 1 95 1 "4200000001")"			# unknown value type
	hexbin "$(pkt 2 94 3 "$(v_i32 1)")"			# count larger than the data
	hexbin "$(pkt 2 93 3 "$(v_i32 1)$(v_i32 2)$(v_i32 3)$(v_i32 4)")"	# bytes left over
	hexbin "$(pkt 2 92 3 "$(v_i32 1)$(v_i32 2)04ff6162")"	# string longer than the data
	hexbin "$(pkt 3 91 1 "0d420003000000010000000200000003")"	# unknown element type
	hexbin "$(pkt 3 90 1 "0d05ffff000000010000000200000003")"	# vector longer than the data
	hexbin "$(pkt 3 89 1 "0e")"				# BOOL_T as a scalar
	hexbin "$(pkt 4 88 1 "0f3ff8000000000000")"		# DOUBLE64_T as a scalar
	hexbin "$(pkt 2 1 3 "$(v_i32 1)$(v_i32 2)$(v_i32 3)")"
	hexbin "$(pkt 3 1 1 "$(v_vec 05 2 0000000100000002)")"
	hexbin "$(pkt 4 1 1 "$(v_dbl 1.5)")"
	hexbin "$(pkt 1 6 1 "$(v_i32 6)")"
}

@test "bad packets are dropped one by one and the packets after them stored, in one write or many" {
	start_server
	resync_stream resync >"$T/resync"
	# one write, the connection held open: nothing may wait for more data
	bg "$OMLSEND" -q -r "$T/resync" -H 8000 "127.0.0.1:$PORT"
	wait_q resync "SELECT count(*) FROM b_one WHERE oml_seq = 6" 1
	wait_n resync b_vec 1
	wait_n resync b_three 1
	kill -0 "$BG"
	run q resync "SELECT oml_seq, n FROM b_one ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '1|1\n2|2\n3|3\n4|4\n5|5\n6|6')" ]
	run q resync "SELECT a, b, c FROM b_three"
	[ "$output" = "1|2|3" ]
	run q resync "SELECT v FROM b_vec"
	[ "$output" = "[ 1, 2 ]" ]
	run q resync "SELECT count(*) FROM b_dbl WHERE x = 1.5"
	[ "$output" = 1 ]
	kill "$BG"
	wait_log 'closed by the client: 9 rows stored, 14 dropped'
	log_has 'skipped [0-9]+ bytes of garbage'
	log_has 'tuple dropped: malformed packet: seq-no is not an int32'
	log_has 'tuple dropped: stream 9 was never declared'
	log_has 'tuple dropped: b_one: type mismatch'

	# the same bytes three at a time: partial packets wait for the rest
	"$OMLSEND" -q -r "$T/resync" -C 3 -d 1 "127.0.0.1:$PORT"
	wait_n resync b_one 12
	run q resync "SELECT count(*) FROM b_one WHERE n > 6"
	[ "$output" = 0 ]
	wait_for 10 eval '[ "$(nlog "closed by the client: 9 rows stored, 14 dropped")" = 2 ]'
	kill -0 "$SERVER_PID"
}

@test "a binary client's bad packets leave other clients untouched" {
	start_server
	bg send -b -e witness -n 300 -B 100 -p 20
	local w=$BG
	resync_stream witness >"$T/bad"
	"$OMLSEND" -q -r "$T/bad" -c 3 "127.0.0.1:$PORT"
	wait "$w"
	wait_n witness gen 300
	wait_n witness b_one 18
	kill -0 "$SERVER_PID"
}
