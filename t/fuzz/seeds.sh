#!/bin/sh
# Regenerate the fuzzers' seed corpora in t/fuzz/corpus/ from the captures
# in t/data, the worked examples of PROTOCOL.md (§5.6, §6.8) and t/omlsend
# output.  Run from the top of the tree after `make`; the result is
# committed, so CI never needs to run this.
set -eu
C=t/fuzz/corpus
S="t/omlsend -T 1400000000"
rm -rf "$C"
mkdir -p "$C/header" "$C/sniff" "$C/proxy" "$C/text" "$C/binary"

hdr() {	# the header section of a capture
	sed '/^\r\{0,1\}$/q' "$1"
}

ALL='1 all a:int32 b:uint32 c:int64 d:uint64 e:double f:string g:blob h:guid i:bool j:[int32] k:[uint32] l:[int64] m:[uint64] n:[double] o:[bool]'
OLD='2 legacy a:long b:integer c:float d:real e:int32'

for f in t/data/*.oml; do
	b=$(basename "$f" .oml)
	hdr "$f" >"$C/header/$b"
	hdr "$f" >"$C/sniff/$b"
	case $b in
	*bin*)	cp "$f" "$C/binary/$b" ;;
	*)	cp "$f" "$C/text/$b" ;;
	esac
done

# t/omlsend: every type, text and binary, short and long packets
$S -q -n 3 -s "$ALL" -s "$OLD" -S 'node-1' file:"$C/text/omlsend_all"
$S -q -n 3 -b -s "$ALL" -s "$OLD" file:"$C/binary/omlsend_all"
$S -q -n 2 -b -L -s "$ALL" file:"$C/binary/omlsend_long"
$S -q -n 2 -P 3 -e old-exp file:"$C/text/omlsend_v3"
$S -q -n 0 -P 1 -e v1 file:"$C/sniff/omlsend_v1"
$S -q -n 0 -s "$ALL" file:"$C/header/omlsend_all"
hdr "$C/text/omlsend_all" >"$C/sniff/omlsend_all"

# PROTOCOL.md §5.6: the complete text example
printf '%s\n' 'protocol: 5' 'domain: exp1' 'start-time: 1400000000' \
    'sender-id: node1' 'app-name: gen' \
    'schema: 0 _experiment_metadata subject:string key:string value:string' \
    'schema: 1 gen_sin label:string phase:double value:double' \
    'schema: 2 gen_vec j:[int32] k:[double] l:[bool]' 'content: text' '' \
    >"$C/text/protocol_5_6"
printf '0.5\t1\t1\tsample-1\t0.000000\t1.5\n0.6\t2\t1\t3 1 -2 3\t2 1.5 -2.25\t3 True False fal\n0.7\t0\t2\t.\tkey1\tval1\n0.8\t0\t3\t.gen_sin\tunit\trad\n0.9\t0\t4\t.\tschema\t3 gen_new x:int32\n1.0\t3\t1\t42\n' \
    >>"$C/text/protocol_5_6"
# hostile text: escapes, a huge vector count, CRLF, a bad base64 blob
printf 'protocol: 5\r\ndomain: t\r\nschema: 1 h s:string v:[int32] b:blob\r\ncontent: text\r\n\r\n1\t1\t1\ta\\tb\\\\c\\\t1000000000 1 2\tAAA=\r\n2\t1000000000\t2\tx\t0\t\n\n3\t1\n' \
    >"$C/text/hostile"

# PROTOCOL.md §6.8: the binary worked vectors after their header
H=$C/binary/protocol_6_8
printf '%s\n' 'protocol: 5' 'domain: bexp' 'start-time: 1400000000' \
    'sender-id: nodeB' 'app-name: a' \
    'schema: 0 _experiment_metadata subject:string key:string value:string' \
    'schema: 1 a_one n:int32 x:double s:string' \
    'schema: 3 a_three u:uint32 i:int64 ul:uint64 g:guid t:bool f:bool bl:blob d:double' \
    'content: binary' '' >"$H"
hex() { perl -e 'print pack("H*", join("", @ARGV))' "$@" >>"$H"; }
hex AAAA01001C0301050000000102300000000105000000 2A023243F3E0020402 6869	# P1
hex AAAA020000001C030105000000090230000000010500 00002A023243F3E002 04026869	# P1L
hex AAAA01001C0301010000000A02300000000101FFFFFF FF023243F3E0020402 6869	# P1 legacy
hex AAAA01003F030005000000010220000000020401 2E0406736368656D61 0425 \
    3220615F76656320763A5B696E7433325D20773A 5B646F75626C655D2062 3A5B626F6F6C5D	# P2
hex AAAA0100380302050000000702E0000000FF0D05 0003000000 01FFFFFFFE0000012C \
    0D0F00023FF8000000000000BFB999999999999A 0D0E00030C0B0C	# P3
hex AAAA01003D0803050000000202280000000406EE 6B2800 07FFFFFFFFFFFFFFFE \
    080000011F71FB04CB 0A0102030405060708 0C 0B 09000000030001AA 030000000000	# P4
# hostile binary: garbage, vector count 65535 with 3 elements, a 4 GiB
# blob length with 10 bytes, an oversized length, an unknown type
cp "$H" "$C/binary/hostile"
H=$C/binary/hostile
hex 00112233AA44AAAA
hex AAAA01001D 0102 0500000001 023000000001 0D05FFFF 00000001 00000002 00000003
hex AAAA010049 0803 0500000002 022800000004 06EE6B2800 07FFFFFFFFFFFFFFFE \
    080000011F71FB04CB 0A0102030405060708 0C 0B 09FFFFFFFF00010203040506070809 \
    030000000000
hex AAAA02FFFFFFFF0801
hex AAAA0700AAAA

# sniff: headers the master must refuse or wait for
printf 'protocol: 5\ndomain: ../../etc/x\n' >"$C/sniff/traversal"
printf 'protocol: 5\nexperiment-id: a\0b\n' >"$C/sniff/nul"
printf 'protocol: 5\r\nsender-id: s\r\ndomain: crlf\r\n\r\n' >"$C/sniff/crlf"
printf 'protocol: 5\n\ndomain: late\n' >"$C/sniff/blank"
printf 'protocol: 5\nsender-id: x\x27); DROP TABLE gen; --\ndomain: sql\n' >"$C/sniff/sql"
cp "$C/sniff/sql" "$C/header/sql"
printf 'schema: 1000000000 big x:int32\nschema: 1 dup a:int32 a:int32\nschema: 1 bad x:int\nschema: 2 t oml_seq:int32\n\n' >"$C/header/bad_schemas"

# proxy: PROXY preambles as HAProxy sends them (the last byte sets the
# harness's read size), v1 and v2, a health check, IPv6 with a TLV
V2='\r\n\r\n\0\r\nQUIT\n'
printf 'PROXY TCP4 192.0.2.7 10.0.0.1 56324 3003\r\nprotocol: 5\ndomain: x\n\n\007' >"$C/proxy/v1_tcp4"
printf 'PROXY TCP6 2001:db8::1 ::1 1 65535\r\n\003' >"$C/proxy/v1_tcp6"
printf 'PROXY UNKNOWN\r\n\001' >"$C/proxy/v1_unknown"
printf "$V2"'\041\021\000\014\300\000\002\007\012\000\000\001\333\004\013\273protocol: 5\n\005' >"$C/proxy/v2_tcp4"
printf "$V2"'\040\000\000\000\002' >"$C/proxy/v2_local"
printf "$V2"'\041\041\000\047\040\001\015\270\0\0\0\0\0\0\0\0\0\0\0\001\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\001\060\071\013\273\004\000\000\011' >"$C/proxy/v2_tcp6_tlv"
