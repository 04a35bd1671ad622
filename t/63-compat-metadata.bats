#!/usr/bin/env bats
# Stream 0 and streams declared or redefined after the headers
# (PROTOCOL.md §3.4-§3.6, §7; §11 item 9), in both encodings.

load helpers
load compat

META0='0 _experiment_metadata subject:string key:string value:string'

# A stream-0 packet of three strings: meta_pkt SEQ SUBJECT KEY VALUE
meta_pkt() {
	hexbin "$(pkt 0 "$1" 3 "$(v_str "$2")$(v_str "$3")$(v_str "$4")")"
}

# The metadata rows a client stored (not the server's own), for any backend.
user_meta() {
	q "$1" "SELECT oml_sender_id, oml_seq, subject, key, value FROM _experiment_metadata WHERE subject IS NOT NULL ORDER BY oml_tuple_id"
}

@test "'. schema' and header keys are not stored; other metadata is, with sender, seq and timestamps (text)" {
	start_server
	local k i=10
	{
		header mtext text "$META0" "1 gen_sin phase:double"
		tline 0.7 0 2 . key1 val1
		tline 0.8 0 3 .gen_sin unit rad
		tline 0.9 0 4 . schema '3 gen_new x:int32'
		for k in protocol domain experiment-id start-time start_time sender-id app-name content; do
			i=$((i + 1))
			tline 1.0 0 $i . "$k" 99
		done
		tline 1.1 0 5 .gen_sin.phase unit rad
		tline 1.2 0 6 gen_sin schema '4 not_declared x:int32'
		tline 1.3 3 1 42
	} >"$T/m"
	sendf "$T/m"
	wait_closed mtext
	run user_meta mtext
	[ "$output" = "$(printf '1|2|.|key1|val1\n1|3|.gen_sin|unit|rad\n1|5|.gen_sin.phase|unit|rad\n1|6|gen_sin|schema|4 not_declared x:int32')" ]
	run q mtext "SELECT count(*) FROM _experiment_metadata WHERE oml_ts_client IN (0.7, 0.8, 1.1, 1.2) AND oml_ts_server > 0"
	[ "$output" = 4 ]
	run q mtext "SELECT x FROM gen_new"
	[ "$output" = 42 ]
	# the header keys changed nothing: same sender, same experiment, text
	run q mtext "SELECT name, id FROM _senders"
	[ "$output" = "nodeB|1" ]
	[ "$(nlog 'metadata key [a-z_-]+ is only valid in the headers; ignored')" = 8 ]
	run q mtext "SELECT count(*) FROM _experiment_metadata WHERE key = 'table_not_declared'"
	[ "$output" = 0 ]
}

@test "'. schema' and header keys are not stored; other metadata is, with sender, seq and timestamps (binary)" {
	start_server
	local k i=10
	{
		header mbin binary "$META0" "1 gen_sin phase:double"
		meta_pkt 2 . key1 val1
		meta_pkt 3 .gen_sin unit rad
		meta_pkt 4 . schema '3 gen_new x:int32'
		for k in protocol domain experiment-id start-time start_time sender-id app-name content; do
			i=$((i + 1))
			meta_pkt $i . "$k" 99
		done
		meta_pkt 5 .gen_sin.phase unit rad
		hexbin "$(pkt 3 1 1 "$(v_i32 42)")"
	} >"$T/m"
	sendf "$T/m"
	wait_closed mbin
	run user_meta mbin
	[ "$output" = "$(printf '1|2|.|key1|val1\n1|3|.gen_sin|unit|rad\n1|5|.gen_sin.phase|unit|rad')" ]
	run q mbin "SELECT count(*) FROM _experiment_metadata WHERE oml_ts_client = 1 AND oml_ts_server > 0 AND oml_sender_id = 1"
	[ "$output" = 3 ]
	run q mbin "SELECT x FROM gen_new"
	[ "$output" = 42 ]
	[ "$(nlog 'metadata key [a-z_-]+ is only valid in the headers; ignored')" = 8 ]
}

@test "stream 0 falls back to _experiment_metadata once any schema was declared, and is dropped before" {
	start_server
	{
		header undecl text "1 t x:int32"
		tline 1 0 1 . key1 val1
		tline 1 0 2 . schema '2 late y:int32'
		tline 1 2 1 7
	} >"$T/t"
	{
		header undecl binary "1 t x:int32"
		meta_pkt 3 . key2 val2
		meta_pkt 4 . schema '3 late3 z:int32'
		hexbin "$(pkt 3 1 1 "$(v_i32 8)")"
	} >"$T/b"
	{
		header undecl text
		tline 1 0 5 . key3 val3
		tline 1 0 6 . schema '2 never x:int32'
	} >"$T/none"
	sendf "$T/t"
	wait_closed undecl 1
	sendf "$T/b"
	wait_closed undecl 2
	sendf "$T/none"
	wait_closed undecl 3
	run user_meta undecl
	[ "$output" = "$(printf '1|1|.|key1|val1\n1|3|.|key2|val2')" ]
	run q undecl "SELECT y FROM late"
	[ "$output" = 7 ]
	run q undecl "SELECT z FROM late3"
	[ "$output" = 8 ]
	[ "$(nlog 'tuple dropped: stream 0 was never declared')" = 2 ]
}

@test "a stream 0 without subject, key and value fields drops its tuples" {
	start_server
	{
		header odd0 text "0 odd a:string b:string c:string"
		tline 1 0 1 . key1 val1
		tline 1 0 2 . schema '1 t x:int32'
	} >"$T/t"
	{
		header odd0 binary "0 odd a:string b:string c:string" "1 t x:int32"
		meta_pkt 1 . key1 val1
		hexbin "$(pkt 1 1 1 "$(v_i32 5)")"
	} >"$T/b"
	sendf "$T/t"
	wait_closed odd0 1
	sendf "$T/b"
	wait_closed odd0 2
	[ "$(nlog 'tuple dropped: stream 0 table odd lacks subject, key or value')" = 3 ]
	run q odd0 "SELECT count(*) FROM odd"
	[ "$output" = 0 ]
	run q odd0 "SELECT x FROM t"
	[ "$output" = 5 ]
}

@test "streams declared during the data phase get tables; redefining an index leaves the old table alone (text)" {
	start_server
	{
		header late text "$META0" "1 first x:int32"
		tline 1 1 1 1
		tline 1 0 1 . schema '5 fifth\ty:string\t \n'	# escaped TABs and a trailing LF
		tline 1 5 1 five
		tline 1 0 2 . schema '1 second s:string'		# redefines stream 1
		tline 1 1 2 two
		tline 1 1 3 3					# no longer an int32 stream: a string
		tline 1 0 3 . schema '1 first x:int32'		# and back
		tline 1 1 4 4
		tline 1 0 4 . schema '300 high h:int32'		# above 255 is fine in text
		tline 1 300 1 300
	} >"$T/l"
	sendf "$T/l"
	wait_closed late
	run q late "SELECT oml_seq, x FROM first ORDER BY oml_seq"
	[ "$output" = "$(printf '1|1\n4|4')" ]
	run q late "SELECT oml_seq, s FROM second ORDER BY oml_seq"
	[ "$output" = "$(printf '2|two\n3|3')" ]
	run q late "SELECT y FROM fifth"
	[ "$output" = five ]
	run q late "SELECT h FROM high"
	[ "$output" = 300 ]
	run q late "SELECT value FROM _experiment_metadata WHERE key = 'table_fifth'"
	[ "$output" = "5 fifth y:string" ]
	log_has 'stream 1 redefined as second'
	log_has 'closed by the client: 6 rows stored, 0 dropped'
}

@test "streams declared during the data phase get tables; redefining an index leaves the old table alone (binary)" {
	start_server
	{
		header lateb binary "$META0" "1 first x:int32"
		hexbin "$(pkt 1 1 1 "$(v_i32 1)")"
		meta_pkt 1 . schema '5 fifth y:string '
		hexbin "$(pkt 5 1 1 "$(v_str five)")"
		meta_pkt 2 . schema '1 second s:string'
		hexbin "$(pkt 1 2 1 "$(v_str two)")"
		hexbin "$(pkt 1 3 1 "$(v_i32 3)")"		# a type mismatch now
		meta_pkt 3 . schema '1 first x:int32'
		hexbin "$(pkt 1 4 1 "$(v_i32 4)")"
	} >"$T/l"
	sendf "$T/l"
	wait_closed lateb
	run q lateb "SELECT oml_seq, x FROM first ORDER BY oml_seq"
	[ "$output" = "$(printf '1|1\n4|4')" ]
	run q lateb "SELECT oml_seq, s FROM second"
	[ "$output" = "2|two" ]
	run q lateb "SELECT y FROM fifth"
	[ "$output" = five ]
	log_has 'stream 1 redefined as second'
	log_has 'closed by the client: 4 rows stored, 1 dropped'
}

@test "a header schema that redeclares an index replaces the earlier one" {
	start_server
	raw 'protocol: 5\ndomain: hdr\nschema: 1 a x:int32\nschema: 1 b y:string\n\n1\t1\t1\tnew\n'
	wait_q hdr "SELECT y FROM b" new
	run q hdr "SELECT count(*) FROM a"
	[ "$output" = 0 ]
	log_has 'stream 1 redefined as b'
}

@test "a bad schema sent as metadata closes the connection and keeps the rows before it" {
	start_server
	{
		header badlate text "1 t x:int32"
		tline 1 1 1 1
		tline 1 0 1 . schema '2 u x:[string]'
		tline 1 1 2 2
	} >"$T/t"
	{
		header badlate binary "1 t x:int32"
		hexbin "$(pkt 1 3 1 "$(v_i32 3)")"
		meta_pkt 1 . schema '2 u-v x:int32'
		hexbin "$(pkt 1 4 1 "$(v_i32 4)")"
	} >"$T/b"
	sendf_refused "$T/t"
	wait_log "bad schema \"2 u x:\[string\]\": unknown type '\[string\]'; connection closed"
	sendf_refused "$T/b"
	wait_log "bad schema \"2 u-v x:int32\": invalid schema name 'u-v'; connection closed"
	wait_closed badlate 2
	run q badlate "SELECT oml_seq FROM t ORDER BY oml_seq"
	[ "$output" = "$(printf '1\n3')" ]
	run q badlate "SELECT count(*) FROM _experiment_metadata WHERE key LIKE 'table_u%'"
	[ "$output" = 0 ]
}
