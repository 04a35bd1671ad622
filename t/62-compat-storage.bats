#!/usr/bin/env bats
# Storage (PROTOCOL.md §8; §11 items 5 and 10): column types, values in
# both encodings, the table_* rows, reopening with the name_2 ... name_9
# rule, sender ids, the start time, and databases the original wrote.

load helpers
load compat

ALL='x_i:int32 x_u:uint32 x_l:int64 x_ul:uint64 x_d:double x_s:string x_b:blob x_g:guid x_t:bool x_vi:[int32] x_vu:[uint32] x_vl:[int64] x_vul:[uint64] x_vd:[double] x_vb:[bool]'

@test "every type gets the declared SQLite column type of §8.3" {
	[ "$BACKEND" = sqlite ] || skip "declared types are SQLite's (sqlite_master)"
	start_server
	raw 'protocol: 5\ndomain: ddl\nschema: 1 every %s\nschema: 2 legacy a:integer b:long c:float d:real\n\n' "$ALL"
	wait_closed ddl
	run sq ddl "SELECT sql FROM sqlite_master WHERE name = 'every'"
	[ "$output" = 'CREATE TABLE "every" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "x_i" INTEGER, "x_u" UNSIGNED INTEGER, "x_l" BIGINT, "x_ul" UNSIGNED BIGINT, "x_d" REAL, "x_s" TEXT, "x_b" BLOB, "x_g" UNSIGNED BIGINT, "x_t" INTEGER, "x_vi" TEXT, "x_vu" TEXT, "x_vl" TEXT, "x_vul" TEXT, "x_vd" TEXT, "x_vb" TEXT)' ]
	run sq ddl "SELECT sql FROM sqlite_master WHERE name = 'legacy'"
	[ "$output" = 'CREATE TABLE "legacy" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "a" INTEGER, "b" INTEGER, "c" REAL, "d" REAL)' ]
	run sq ddl "SELECT value FROM _experiment_metadata WHERE key = 'table_every'"
	[ "$output" = "1 every $ALL" ]
}

@test "text and binary store every type the same way, as §8.4 says" {
	start_server
	# row 1: the awkward values; row 2: zeros and empties; row 3: plain
	{
		header both text "1 t_text $ALL"
		tline 1 1 1 -7 4000000000 -9000000000 9223372036854775809 nan 'hé' '' 0 T '2 -1 1' '1 4294967295' '1 -1' '1 18446744073709551615' '2 0.5 -2' '2 True F'
		tline 1 1 2 0 0 0 0 0 '' AA== 1 F 0 0 0 0 0 0
		tline 1 1 3 1 2 3 4 1.5 s AAEC 5 T '1 1' '1 2' '1 3' '1 4' '1 1.5' '1 F'
	} >"$T/t"
	{
		header both binary "1 t_bin $ALL"
		hexbin "$(pkt 1 1 15 "$(v_i32 -7)$(v_u32 4000000000)$(v_i64 -9000000000)$(v_u64 8000000000000001)$(v_nan)$(v_str 'hé')$(v_blob '')$(v_guid 0000000000000000)$(v_true)$(v_vec 05 2 ffffffff00000001)$(v_vec 06 1 ffffffff)$(v_vec 07 1 ffffffffffffffff)$(v_vec 08 1 ffffffffffffffff)$(v_vec 0f 2 3fe0000000000000c000000000000000)$(v_vec 0e 2 0c0b)")"
		hexbin "$(pkt 1 2 15 "$(v_i32 0)$(v_u32 0)$(v_i64 0)$(v_u64 0000000000000000)$(v_dbl 0)$(v_str '')$(v_blob 00)$(v_guid 0000000000000001)$(v_false)$(v_vec 05 0 '')$(v_vec 06 0 '')$(v_vec 07 0 '')$(v_vec 08 0 '')$(v_vec 0f 0 '')$(v_vec 0e 0 '')")"
		hexbin "$(pkt 1 3 15 "$(v_i32 1)$(v_u32 2)$(v_i64 3)$(v_u64 0000000000000004)$(v_dbl 1.5)$(v_str s)$(v_blob 000102)$(v_guid 0000000000000005)$(v_true)$(v_vec 05 1 00000001)$(v_vec 06 1 00000002)$(v_vec 07 1 0000000000000003)$(v_vec 08 1 0000000000000004)$(v_vec 0f 1 3ff8000000000000)$(v_vec 0e 1 0b)")"
	} >"$T/b"
	sendf "$T/t"
	sendf "$T/b"
	wait_n both t_text 3
	wait_n both t_bin 3
	local cols="oml_sender_id, oml_seq, x_i, x_u, x_l, x_ul, x_d, x_s, x_b, x_g, x_t, x_vi, x_vu, x_vl, x_vul, x_vd, x_vb"
	run q both "SELECT count(*) FROM (SELECT $cols FROM t_text EXCEPT SELECT $cols FROM t_bin) AS d"
	[ "$output" = 0 ]
	run q both "SELECT count(*) FROM (SELECT $cols FROM t_bin EXCEPT SELECT $cols FROM t_text) AS d"
	[ "$output" = 0 ]
	# and what they both hold
	run q both "SELECT x_i, x_u, x_l, x_ul, x_s, $(blobhex x_b), $(nullable x_g), $(sql_int x_t), x_vi, x_vu, x_vl, x_vul, x_vd, x_vb FROM t_bin ORDER BY oml_seq"
	[ "${lines[0]}" = "-7|4000000000|-9000000000|-9223372036854775807|hé||NULL|1|[ -1, 1 ]|[ 4294967295 ]|[ -1 ]|[ 18446744073709551615 ]|[ 0.5, -2 ]|[ true, false ]" ]
	[ "${lines[1]}" = "0|0|0|0||00|1|0||||||" ]
	[ "${lines[2]}" = "1|2|3|4|s|000102|5|1|[ 1 ]|[ 2 ]|[ 3 ]|[ 4 ]|[ 1.5 ]|[ false ]" ]
	run q both "SELECT count(*) FROM t_bin WHERE (oml_seq = 2 AND x_d = 0) OR (oml_seq = 3 AND x_d = 1.5)"
	[ "$output" = 2 ]
	run q both "SELECT $(nullable x_d) FROM t_bin WHERE oml_seq = 1"
	if [ "$BACKEND" = postgresql ]; then
		[ "$output" = NaN ]
	else
		[ "$output" = NULL ]
	fi
	if [ "$BACKEND" = sqlite ]; then	# the storage classes, not just the text
		run sq both "SELECT typeof(x_u), typeof(x_ul), typeof(x_d), typeof(x_b), typeof(x_g), typeof(x_vi) FROM t_bin ORDER BY oml_seq"
		[ "${lines[0]}" = "integer|integer|null|blob|null|text" ]
		[ "${lines[1]}" = "integer|integer|real|blob|integer|text" ]
	fi
}

@test "a differing schema under the same name goes to name_2, and later connections find each table again" {
	start_server
	# the verified example of §8.8, one connection after another
	raw 'protocol: 5\ndomain: ren\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_closed ren 1
	raw 'protocol: 5\ndomain: ren\nschema: 1 t x:double\n\n1\t1\t2\t2.5\n'
	wait_closed ren 2
	raw 'protocol: 5\ndomain: ren\nschema: 1 t x:double\nschema: 2 t y:int32\nschema: 3 t x:int32\n\n1\t1\t3\t3.5\n1\t2\t4\t4\n1\t3\t5\t5\n'
	wait_closed ren 3
	run q ren "SELECT oml_seq, x FROM t ORDER BY oml_seq"
	[ "$output" = "$(printf '1|1\n5|5')" ]
	run q ren "SELECT count(*) FROM t_2 WHERE (oml_seq = 2 AND x = 2.5) OR (oml_seq = 3 AND x = 3.5)"
	[ "$output" = 2 ]
	run q ren "SELECT oml_seq, y FROM t_3"
	[ "$output" = "4|4" ]
	run q ren "SELECT key, value FROM _experiment_metadata WHERE key LIKE 'table_t%' ORDER BY oml_tuple_id"
	[ "$output" = "$(printf 'table_t|1 t x:int32\ntable_t_2|1 t_2 x:double\ntable_t_3|2 t_3 y:int32')" ]
	[ "$(nlog 'schema t differs from the existing table; created table t_2 for it')" = 1 ]
	[ "$(nlog 'schema t differs from the existing table; created table t_3 for it')" = 1 ]
}

@test "a tenth differing schema for one name closes the connection" {
	start_server
	local i h=""
	for i in 1 2 3 4 5 6 7 8 9; do
		h="${h}schema: $i t f$i:int32\n"
	done
	raw "protocol: 5\ndomain: ten\n${h}\n1\t9\t1\t9\n"
	wait_closed ten 1
	run q ten "SELECT f9 FROM t_9"
	[ "$output" = 9 ]
	raw_refused 'protocol: 5\ndomain: ten\nschema: 1 t f5:int32\nschema: 2 t f10:int32\n\n1\t1\t1\t5\n'
	wait_log 'schema t: tables t to t_9 all exist with other schemas'
	wait_log 'client 127.0.0.1 port [0-9]+: .*no table can take schema t; connection closed'
	wait_closed ten 2
	# after a reopening, each of the nine is still found
	raw 'protocol: 5\ndomain: ten\nschema: 1 t f5:int32\nschema: 2 t f1:int32\n\n1\t1\t2\t55\n1\t2\t2\t11\n'
	wait_closed ten 3
	run q ten "SELECT f5 FROM t_5"
	[ "$output" = 55 ]
	run q ten "SELECT f1 FROM t"
	[ "$output" = 11 ]
	run q ten "SELECT count(*) FROM _experiment_metadata WHERE key LIKE 'table_t%'"
	[ "$output" = 9 ]
}

@test "a schema longer than 440 bytes is persisted and reused after a restart" {
	start_server
	local s="1 long_schema_table" i
	for i in $(seq 1 40); do s="$s a_rather_long_field_name_$i:int32"; done
	[ "${#s}" -gt 440 ]
	raw 'protocol: 5\ndomain: longs\nschema: %s\n\n1\t1\t1%s\n' "$s" "$(printf '\t%s' $(seq 1 40))"
	wait_closed longs
	run q longs "SELECT value FROM _experiment_metadata WHERE key = 'table_long_schema_table'"
	[ "$output" = "$s" ]
	stop_server
	mv "$LOG" "$LOG.1"
	start_server
	raw 'protocol: 5\ndomain: longs\nschema: %s\n\n1\t1\t2%s\n' "$s" "$(printf '\t%s' $(seq 101 140))"
	wait_closed longs
	run q longs "SELECT oml_seq, a_rather_long_field_name_1, a_rather_long_field_name_40 FROM long_schema_table ORDER BY oml_seq"
	[ "$output" = "$(printf '1|1|40\n2|101|140')" ]
	run q longs "SELECT count(*) FROM _experiment_metadata WHERE key LIKE 'table_long%'"
	[ "$output" = 1 ]
	log_lacks 'connection closed'
}

@test "a table that exists without its table_* row is left alone: the rename sequence takes over" {
	start_server
	raw 'protocol: 5\ndomain: norow\nschema: 1 t x:int32\n\n1\t1\t1\t1\n'
	wait_closed norow 1
	# tables nobody described: one like the original's lost long schemas,
	# and a name the server uses itself
	q_admin norow 'CREATE TABLE "u" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "x" INTEGER)'
	raw 'protocol: 5\ndomain: norow\nschema: 1 u x:int32\nschema: 2 _senders x:int32\n\n1\t1\t1\t7\n1\t2\t1\t8\n'
	wait_closed norow 2
	run q norow "SELECT x FROM u_2"
	[ "$output" = 7 ]
	run q norow "SELECT count(*) FROM u"
	[ "$output" = 0 ]
	run q norow "SELECT x FROM _senders_2"
	[ "$output" = 8 ]
	run q norow "SELECT value FROM _experiment_metadata WHERE key IN ('table_u_2', 'table__senders_2') ORDER BY key"
	[ "$output" = "$(printf '2 _senders_2 x:int32\n1 u_2 x:int32')" ]
	log_lacks 'connection closed'
}

@test "sender ids start at 1 and persist, and the first start time is kept" {
	start_server
	raw 'protocol: 5\ndomain: snd\nstart-time: 1400000000\nsender-id: a\nschema: 1 t x:int32\n\n1.0\t1\t1\t1\n'
	wait_closed snd 1
	raw 'protocol: 5\ndomain: snd\nstart-time: 1400000100\nsender-id: b\nschema: 1 t x:int32\n\n1.0\t1\t1\t2\n'
	wait_closed snd 2
	stop_server
	mv "$LOG" "$LOG.1"
	start_server
	raw 'protocol: 5\ndomain: snd\nstart-time: 1399999900\nsender-id: b\nschema: 1 t x:int32\n\n1.0\t1\t1\t3\n'
	raw 'protocol: 5\ndomain: snd\nstart-time: 1400000000\nsender-id: c\nschema: 1 t x:int32\n\n1.0\t1\t1\t4\n'
	raw 'protocol: 5\ndomain: snd\nschema: 1 t x:int32\n\n1.0\t1\t1\t5\n'
	wait_n snd t 5
	wait_closed snd 1
	run q snd "SELECT name, id FROM _senders ORDER BY id"
	[ "$output" = "$(printf 'a|1\nb|2\nc|3')" ]
	run q snd "SELECT x, oml_sender_id FROM t ORDER BY x"
	[ "$output" = "$(printf '1|1\n2|2\n3|2\n4|3\n5|0')" ]
	run q snd "SELECT count(*) FROM t WHERE (x = 1 AND oml_ts_client = 1) OR (x = 2 AND oml_ts_client = 101) OR (x = 3 AND oml_ts_client = -99) OR (x = 4 AND oml_ts_client = 1)"
	[ "$output" = 4 ]
	run q snd "SELECT value FROM _experiment_metadata WHERE key = 'start_time'"
	[ "$output" = 1400000000 ]
	log_has 'database [^ ]*/snd(\.sq3)? opened'
}

# A database as the original server left it (§8.2, §8.3, §8.7): its DDL,
# two senders, its table_* rows (t_2 from a rename), rows in each table,
# a uint32 stored negative (§8.4), a metadata tuple from a client, and a
# table declared with a negative index (which the original accepted).
original_db() {
	sqlite3 "$1" <<'EOF'
CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE);
INSERT INTO _senders VALUES('n1',1);
INSERT INTO _senders VALUES('n2',2);
CREATE TABLE "_experiment_metadata" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "subject" TEXT, "key" TEXT, "value" TEXT);
INSERT INTO _experiment_metadata VALUES(1,NULL,NULL,NULL,NULL,NULL,'table__experiment_metadata','0 _experiment_metadata subject:string key:string value:string');
INSERT INTO _experiment_metadata VALUES(2,NULL,NULL,NULL,NULL,NULL,'start_time','1795527380');
INSERT INTO _experiment_metadata VALUES(3,NULL,NULL,NULL,NULL,NULL,'table_app_gen','1 app_gen n:int32 u:uint32 s:string');
INSERT INTO _experiment_metadata VALUES(4,NULL,NULL,NULL,NULL,NULL,'table_t','2 t x:int32');
INSERT INTO _experiment_metadata VALUES(5,NULL,NULL,NULL,NULL,NULL,'table_t_2','2 t_2 x:double');
INSERT INTO _experiment_metadata VALUES(6,1,1,0.5,525.3,'.app_gen','unit','m');
INSERT INTO _experiment_metadata VALUES(7,NULL,NULL,NULL,NULL,NULL,'table_neg','-1 neg v:int32');
CREATE TABLE "app_gen" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "n" INTEGER, "u" UNSIGNED INTEGER, "s" TEXT);
INSERT INTO app_gen VALUES(1,1,1,0.25,525.3,1,-294967296,'old-1');
INSERT INTO app_gen VALUES(2,2,1,0.5,525.4,2,7,'old-2');
CREATE TABLE "t" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "x" INTEGER);
INSERT INTO t VALUES(1,1,1,0.5,525.5,10);
CREATE TABLE "t_2" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "x" REAL);
INSERT INTO t_2 VALUES(1,2,1,0.5,525.6,2.5);
CREATE TABLE "neg" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "v" INTEGER);
EOF
}

@test "a database written by the original server is reopened and appended to" {
	[ "$BACKEND" = sqlite ] || skip "the original's database is built as an SQLite file"
	original_db "$DATA/orig.sq3"
	start_server
	{
		printf 'protocol: 4\ndomain: orig\nstart-time: 1795527390\nsender-id: n2\napp-name: app\n'
		printf 'schema: 0 _experiment_metadata subject:string key:string value:string\n'
		printf 'schema: 1 app_gen n:int32 u:uint32 s:string\nschema: 2 t x:double\nschema: 3 t y:int32\nschema: 4 neg v:int32\n\n'
		tline 1.0 1 2 3 4000000000 new-3
		tline 1.0 4 1 -1
		tline 1.0 2 2 3.5
		tline 1.0 3 1 4
		tline 1.0 0 1 .app_gen unit km
	} >"$T/c1"
	sendf "$T/c1"
	wait_closed orig 1
	raw 'protocol: 5\ndomain: orig\nstart-time: 1795527380\nsender-id: n3\nschema: 1 app_gen n:int32 u:uint32 s:string\nschema: 2 t x:int32\n\n2.0\t1\t3\t5\t5\tnew-5\n2.0\t2\t2\t20\n'
	wait_closed orig 2
	log_has 'database [^ ]*/orig.sq3 opened'
	log_lacks 'connection closed'
	run sq orig "SELECT oml_tuple_id, oml_sender_id, oml_seq, oml_ts_client, n, u, s FROM app_gen ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '1|1|1|0.25|1|-294967296|old-1\n2|2|1|0.5|2|7|old-2\n3|2|2|11.0|3|4000000000|new-3\n4|3|3|2.0|5|5|new-5')" ]
	run sq orig "SELECT oml_tuple_id, oml_sender_id, x FROM t ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '1|1|10\n2|3|20')" ]
	run sq orig "SELECT oml_tuple_id, oml_sender_id, x FROM t_2 ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '1|2|2.5\n2|2|3.5')" ]
	run sq orig "SELECT y FROM t_3"
	[ "$output" = 4 ]
	run sq orig "SELECT name, id FROM _senders ORDER BY id"
	[ "$output" = "$(printf 'n1|1\nn2|2\nn3|3')" ]
	run sq orig "SELECT oml_tuple_id, subject, key, value FROM _experiment_metadata WHERE oml_tuple_id > 5 ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '6|.app_gen|unit|m\n7||table_neg|-1 neg v:int32\n8||table_t_3|3 t_3 y:int32\n9|.app_gen|unit|km')" ]
	run sq orig "SELECT value FROM _experiment_metadata WHERE key = 'start_time'"
	[ "$output" = 1795527380 ]
	run sq orig "SELECT v FROM neg"
	[ "$output" = -1 ]
	run sq orig "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
	[ "$output" = 7 ]
}

@test "the original's database of a real OML4R session takes the same client again" {
	[ "$BACKEND" = sqlite ] || skip "the original's database is an SQLite dump"
	sqlite3 "$DATA/r_example.sq3" <"$BATS_TEST_DIRNAME/data/r_example.original.sql"
	start_server
	sendf "$BATS_TEST_DIRNAME/data/r_example.oml"
	wait_closed r_example
	log_has 'database [^ ]*/r_example.sq3 opened'
	log_lacks 'connection closed'
	# the same tables, each row twice (metadata too: §7.3 keeps duplicates)
	run sq r_example "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
	[ "$(echo $output)" = "_experiment_metadata _senders oml4rSimpleExample_cos oml4rSimpleExample_sin" ]
	run sq r_example "SELECT oml_tuple_id, oml_sender_id, oml_seq, label, angle FROM oml4rSimpleExample_sin WHERE oml_seq = 3 ORDER BY oml_tuple_id"
	[ "$output" = "$(printf '3|1|3|label_30|30\n8|1|3|label_30|30')" ]
	run sq r_example "SELECT count(*), count(DISTINCT label || value) FROM oml4rSimpleExample_cos"
	[ "$output" = "10|5" ]
	run sq r_example "SELECT count(*) FROM _experiment_metadata WHERE subject IS NOT NULL"
	[ "$output" = 10 ]
	run sq r_example "SELECT count(*) FROM _experiment_metadata WHERE subject IS NULL"
	[ "$output" = 4 ]
	run sq r_example "SELECT name, id FROM _senders"
	[ "$output" = "n1|1" ]
}

@test "4 KiB blobs take fewer bytes a row than in the original's file: they fit in 64 KiB pages" {
	[ "$BACKEND" = sqlite ] || skip "page sizes are SQLite's"
	start_server
	send -b -e blob4k -s '1 blobs n:int32 b:blob' -Z 4096 -n 500
	wait_closed blob4k
	[ "$(sq blob4k 'PRAGMA page_size')" = 65536 ]
	local before=$(stat -c %s "$DATA/blob4k.sq3") size
	send -b -e blob4k -s '1 blobs n:int32 b:blob' -Z 4096 -n 3000
	wait_closed blob4k 2
	[ "$(sq blob4k "SELECT count(*), sum(length(b) = 4096) FROM blobs")" = "3500|3500" ]
	# the original's layout (SQLite's default 4 KiB pages) needs about
	# 4,600 bytes a row: each blob spills into an overflow page
	size=$((($(stat -c %s "$DATA/blob4k.sq3") - before) / 3000))
	echo "bytes per row: $size" >&3
	[ "$size" -lt 4500 ]
	# a schema without blobs keeps 16 KiB pages
	send -e noblob -n 10
	wait_closed noblob
	[ "$(sq noblob 'PRAGMA page_size')" = 16384 ]
}
