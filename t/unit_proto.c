/*
 * t/unit_proto -- unit tests for proto/: the §6.8 and §6.3 vectors both
 * ways, the §5.2 text conversions, resynchronisation (§6.7), headers,
 * experiment names, schemas, the sniffer and the captures in t/data/
 * (or $UNIT_PROTO_DATA).  Prints each failure and a summary; exits 1 if
 * anything failed.
 */
#include <arpa/inet.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#include "t/check.h"

#define CHECK_MEM(p, n, w, wn) \
	check_mem_at((p), (n), (w), (wn), #p, __LINE__)
#define CHECK_STR(p, n, s)	CHECK_MEM((p), (n), (s), strlen(s))

static void
show(const char *tag, const void *p, size_t n)
{
	const unsigned char	*s = p;
	size_t			 i;

	fprintf(stderr, "    %s (%zu):", tag, n);
	for (i = 0; i < n && i < 96; i++)
		fprintf(stderr, (s[i] >= ' ' && s[i] < 0x7f) ? " %c" : " %02x",
		    s[i]);
	fprintf(stderr, "%s\n", n > 96 ? " ..." : "");
}

static int
check_mem_at(const void *p, size_t n, const void *want, size_t wn,
    const char *expr, int line)
{
	int	 ok = n == wn && (n == 0 || memcmp(p, want, n) == 0);

	if (!check_at(ok, expr, line)) {
		show("got", p, n);
		show("want", want, wn);
	}
	return ok;
}

/* "AA AA 01 ..." into bytes; returns the count. */
static size_t
hex(uint8_t *out, size_t cap, const char *s)
{
	size_t		 n = 0;
	unsigned int	 v;
	int		 k;

	while (*s != '\0') {
		if (*s == ' ' || *s == '\n') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x%n", &v, &k) != 1 || k != 2 || n == cap)
			abort();
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static int
same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0 || (isnan(a) && isnan(b));
}

static int
dbl_is(double d, const char *want)
{
	char	 s[64];

	snprintf(s, sizeof(s), "%.17g", d);
	if (strcmp(s, want) == 0)
		return 1;
	fprintf(stderr, "    double %s, want %s\n", s, want);
	return 0;
}

/* ---- types, names, header lines ---------------------------------- */

static void
test_types(void)
{
	static const char *const good[] = {
		"int32", "uint32", "int64", "uint64", "double", "string",
		"blob", "guid", "bool", "[int32]", "[uint32]", "[int64]",
		"[uint64]", "[double]", "[bool]",
	};
	static const char *const bad[] = {
		"int", "[string]", "[blob]", "[guid]", "Int32", "int32 ",
		"", "[int32", "uint", "float64", "[long]",
	};
	enum oml_type	 t;
	size_t		 i;

	section = "types";
	for (i = 0; i < nitems(good); i++) {
		CHECK(oml_type_parse(good[i], strlen(good[i]), &t) == 0);
		CHECK(t == (enum oml_type)i);
		CHECK(strcmp(oml_type_name(t), good[i]) == 0);
		CHECK(oml_type_is_vector(t) == (good[i][0] == '['));
	}
	for (i = 0; i < nitems(bad); i++)
		CHECK(oml_type_parse(bad[i], strlen(bad[i]), &t) == -1);
	CHECK(oml_type_parse("long", 4, &t) == 0 && t == OML_INT32);
	CHECK(oml_type_parse("integer", 7, &t) == 0 && t == OML_INT32);
	CHECK(oml_type_parse("float", 5, &t) == 0 && t == OML_DOUBLE);
	CHECK(oml_type_parse("real", 4, &t) == 0 && t == OML_DOUBLE);
	CHECK(oml_type_parse("int32x", 5, &t) == 0 && t == OML_INT32);

	CHECK(oml_name_valid("_experiment_metadata", 20));
	CHECK(oml_name_valid("a1_B", 4));
	CHECK(!oml_name_valid("", 0));
	CHECK(!oml_name_valid("1t", 2));
	CHECK(!oml_name_valid("x-y", 3));
	CHECK(!oml_name_valid("x.y", 3));
	CHECK(!oml_name_valid("x y", 3));
	CHECK(!oml_name_valid("\xc3\xa9", 2));
}

static void
test_lines(void)
{
	const char	*k, *v;
	size_t		 kl, vl, used;

	section = "line_next";
	CHECK(line_next("abc\ndef", 7, &used) == 3 && used == 4);
	CHECK(line_next("abc\r\n", 5, &used) == 3 && used == 5);
	CHECK(line_next("\n", 1, &used) == 0 && used == 1);
	CHECK(line_next("\r\n", 2, &used) == 0 && used == 2);
	CHECK(line_next("abc", 3, &used) == -1);
	CHECK(line_next("", 0, &used) == -1);
	CHECK(line_next("a\r\r\n", 4, &used) == 2 && used == 4);

	section = "header_split";
	CHECK(header_split("protocol : 5", 12, &k, &kl, &v, &vl) == 0);
	CHECK_STR(k, kl, "protocol ");
	CHECK_STR(v, vl, "5");
	CHECK(header_split("domain:\tfoo", 11, &k, &kl, &v, &vl) == 0);
	CHECK_STR(k, kl, "domain");
	CHECK_STR(v, vl, "foo");
	CHECK(header_split("domain: foo \t\r", 14, &k, &kl, &v, &vl) == 0);
	CHECK_STR(v, vl, "foo");
	CHECK(header_split("schema: 1 t a:int32 \v\f", 22, &k, &kl, &v,
	    &vl) == 0);
	CHECK_STR(v, vl, "1 t a:int32");
	CHECK(header_split("a:b:c", 5, &k, &kl, &v, &vl) == 0);
	CHECK_STR(k, kl, "a");
	CHECK_STR(v, vl, "b:c");
	CHECK(header_split("key:", 4, &k, &kl, &v, &vl) == 0 && vl == 0);
	CHECK(header_split("key:   ", 7, &k, &kl, &v, &vl) == 0 && vl == 0);
	CHECK(header_split(":x", 2, &k, &kl, &v, &vl) == 0 && kl == 0);
	CHECK(header_split("no colon", 8, &k, &kl, &v, &vl) == -1);
	CHECK(header_split("x:y", 1, &k, &kl, &v, &vl) == -1);
}

static void
test_expname(void)
{
	static const char *const bad[] = {
		"", "../x", "a/b", "a\\b", "a\"b", "a'b", "a b", "a\tb",
		"a\nb", "a\x01", "\x7f", ".hidden", "..", "a`b",
		/* reach pg_dump, iput or libpq as options or settings */
		"-x", "--dbname=victim", "dbname=victim", "host=127.0.0.1",
		"port=1", "a=b", ":x", "+x",
		/* shell syntax, non-ASCII, C1 controls */
		"$(id)", "a;b", "a|b", "a*b", "a%b", "a@b", "\xc3\xa9",
		"a\xc2\x9b", "\x9b",
	};
	char		 s[80];
	const char	*why;
	size_t		 i;

	section = "expname_valid";
	CHECK(expname_valid("exp_2011-08-09t11.52.28+10.00", 29, &why));
	CHECK(expname_valid("a", 1, &why));
	CHECK(expname_valid("a.b:c-d+e", 9, &why));
	CHECK(expname_valid("_x", 2, &why));
	CHECK(expname_valid("9Z", 2, &why));
	CHECK(expname_valid("template1", 9, &why));	/* refused by store_pg */
	memset(s, 'x', sizeof(s));
	CHECK(expname_valid(s, 63, &why));
	why = NULL;
	CHECK(!expname_valid(s, 64, &why) && why != NULL);
	for (i = 0; i < nitems(bad); i++) {
		why = NULL;
		CHECK(!expname_valid(bad[i], strlen(bad[i]), &why));
		CHECK(why != NULL);
	}
	CHECK(!expname_valid("a\0b", 3, &why));
}

/* ---- sniffer ------------------------------------------------------- */

static enum sniff_result
sniff_all(const char *s, struct sniff *sn, const char **why)
{
	memset(sn, 0, sizeof(*sn));
	return sniff_expid(sn, s, strlen(s), why);
}

static void
test_sniff_split(const char *hdr, const char *want)
{
	struct sniff		 sn;
	enum sniff_result	 r = SNIFF_MORE;
	const char		*why;
	size_t			 i, len = strlen(hdr);

	memset(&sn, 0, sizeof(sn));
	for (i = 0; i <= len && r == SNIFF_MORE; i++)
		r = sniff_expid(&sn, hdr, i, &why);
	CHECK(r == SNIFF_FOUND);
	CHECK(strcmp(sn.name, want) == 0);
	CHECK(sn.scanned <= len);
	/*
	 * Split in two at every byte: the first part, then all of it, then
	 * all of it again (the master may look once more at a connection it
	 * has already named) always give the name.
	 */
	for (i = 0; i <= len; i++) {
		memset(&sn, 0, sizeof(sn));
		r = sniff_expid(&sn, hdr, i, &why);
		CHECK(r == SNIFF_MORE || r == SNIFF_FOUND);
		CHECK(sniff_expid(&sn, hdr, len, &why) == SNIFF_FOUND);
		CHECK(sniff_expid(&sn, hdr, len, &why) == SNIFF_FOUND);
		CHECK(strcmp(sn.name, want) == 0);
	}
}

static void
test_sniff(void)
{
	struct sniff	 sn;
	const char	*why;
	const char	*h = "protocol: 5\ndomain: abc\nstart-time: 1\n\n";

	section = "sniff_expid";
	CHECK(sniff_all(h, &sn, &why) == SNIFF_FOUND);
	CHECK(strcmp(sn.name, "abc") == 0);
	CHECK(sn.scanned == 24);
	CHECK(sniff_all("protocol: 3\nexperiment-id: old_one\n", &sn,
	    &why) == SNIFF_FOUND && strcmp(sn.name, "old_one") == 0);
	CHECK(sniff_all("protocol: 5\r\ndomain: crlf\r\n", &sn, &why) ==
	    SNIFF_FOUND && strcmp(sn.name, "crlf") == 0);
	CHECK(sniff_all("domain:\texp_2011-08-09t11.52.28+10.00 \n", &sn,
	    &why) == SNIFF_FOUND &&
	    strcmp(sn.name, "exp_2011-08-09t11.52.28+10.00") == 0);
	CHECK(sniff_all("protocol: 5\ndomain: abc", &sn, &why) == SNIFF_MORE);
	CHECK(sn.scanned == 12);
	CHECK(sniff_all("protocol: 5\nfoo: bar\nsender-id: x\n", &sn,
	    &why) == SNIFF_MORE);
	CHECK(sniff_all("", &sn, &why) == SNIFF_MORE);
	CHECK(sniff_all("protocol : 5\ndomain : x\n", &sn, &why) ==
	    SNIFF_MORE);

	why = NULL;
	CHECK(sniff_all("protocol: 5\n\ndomain: a\n", &sn, &why) ==
	    SNIFF_BAD && why != NULL);
	CHECK(sniff_all("protocol: 5\r\n\r\n", &sn, &why) == SNIFF_BAD);
	CHECK(sniff_all("protocol 5\ndomain: a\n", &sn, &why) == SNIFF_BAD);
	CHECK(sniff_all("domain: ../etc\n", &sn, &why) == SNIFF_BAD);
	CHECK(sniff_all("domain: \n", &sn, &why) == SNIFF_BAD);
	CHECK(sniff_all("domain: a b\n", &sn, &why) == SNIFF_BAD);
	CHECK(sniff_all("domain: "
	    "0123456789012345678901234567890123456789012345678901234567890123"
	    "\n", &sn, &why) == SNIFF_BAD);
	memset(&sn, 0, sizeof(sn));
	CHECK(sniff_expid(&sn, "\x16\x03\x01\x02\x00\n", 6, &why) ==
	    SNIFF_BAD);
	/* The scan never reads past the length it is given. */
	memset(&sn, 0, sizeof(sn));
	CHECK(sniff_expid(&sn, "domain: abc\n", 11, &why) == SNIFF_MORE);

	test_sniff_split("protocol: 5\ndomain: split_up\ncontent: text\n\n",
	    "split_up");
	test_sniff_split("protocol: 4\r\nexperiment-id: e1\r\n", "e1");
	test_sniff_split("protocol: 5\ndomain: d\nstart-time: 1\nsender-id: s\n"
	    "app-name: a\nschema: 1 gen n:int32\ncontent: text\n\n1\t1\t1\t1\n",
	    "d");
}

/* ---- schemas -------------------------------------------------------- */

static int
parse_ok(const char *s, const char *canon)
{
	struct oml_schema	 sc;
	char			 err[128], *f;
	int			 ok;

	if (schema_parse(s, strlen(s), 0, &sc, err, sizeof(err)) == -1) {
		fprintf(stderr, "    '%s': %s\n", s, err);
		return 0;
	}
	f = schema_format(&sc);
	ok = strcmp(f, canon) == 0;
	if (!ok)
		fprintf(stderr, "    '%s' formats as '%s'\n", s, f);
	free(f);
	schema_free(&sc);
	return ok;
}

static int
parse_bad(const char *s, int maxfields)
{
	struct oml_schema	 sc;
	char			 err[128] = "";

	if (schema_parse(s, strlen(s), maxfields, &sc, err, sizeof(err)) ==
	    0) {
		schema_free(&sc);
		fprintf(stderr, "    '%s' parsed\n", s);
		return 0;
	}
	return err[0] != '\0' && sc.name == NULL && sc.fields == NULL;
}

static void
test_schema_parse(void)
{
	static const char *const bad[] = {
		"", "   ", "x t a:int32", "1 1t a:int32", "1 x-y a:int32",
		"1 t", "1 t   ", "1 t a", "1 t a:int", "1 t a:[string]",
		"1 t a:[blob]", "1 t a:[guid]", "1 t a:int32:junk",
		"-1 t a:int32", "65536 t a:int32", "0x10000 t a:int32",
		"1 t a:int32 a:double", "1 t oml_seq:int32",
		"1 t oml_tuple_id:int32", "1 t oml_ts_server:double",
		"08 t a:int32", "1x t a:int32", "1 t 1a:int32", "1 t :int32",
		"1 t a:", "99999999999999999999 t a:int32", "1.5 t a:int32",
		"1 t a:Int32", "1 t\xc3\xa9 a:int32",
	};
	size_t	 i;

	section = "schema_parse";
	CHECK(parse_ok("1 gen n:int32 x:double s:string",
	    "1 gen n:int32 x:double s:string"));
	CHECK(parse_ok("  2\tgen_lin\tlabel:string  counter:long \r\n",
	    "2 gen_lin label:string counter:int32"));
	CHECK(parse_ok("0x2 t x:integer y:float z:real",
	    "2 t x:int32 y:double z:double"));
	CHECK(parse_ok("010 t x:int32", "8 t x:int32"));
	CHECK(parse_ok("+3 t x:int32", "3 t x:int32"));
	CHECK(parse_ok("65535 t x:int32", "65535 t x:int32"));
	CHECK(parse_ok("0 _experiment_metadata subject:string key:string "
	    "value:string ",
	    "0 _experiment_metadata subject:string key:string value:string"));
	CHECK(parse_ok("2 a_vec v:[int32] w:[double] b:[bool] u:[uint32] "
	    "i:[int64] ul:[uint64] g:guid t:bool bl:blob",
	    "2 a_vec v:[int32] w:[double] b:[bool] u:[uint32] i:[int64] "
	    "ul:[uint64] g:guid t:bool bl:blob"));
	for (i = 0; i < nitems(bad); i++)
		CHECK(parse_bad(bad[i], 0));
	CHECK(parse_bad("1 t a:int32 b:int32 c:int32", 2));
	CHECK(parse_ok("1 t a:int32 b:int32", "1 t a:int32 b:int32"));
}

static void
test_schema_ops(void)
{
	struct oml_schema	 a, b, c;
	char			 err[128], *f;
	const char		*s1 = "1 t x:int32 y:double";
	const char		*s2 = "7 t x:long y:real";
	const char		*s3 = "1 t x:int32 y:int32";

	section = "schema ops";
	CHECK(schema_parse(s1, strlen(s1), 8, &a, err, sizeof(err)) == 0);
	CHECK(schema_parse(s2, strlen(s2), 8, &b, err, sizeof(err)) == 0);
	CHECK(schema_same(&a, &b));	/* the index does not matter */
	schema_free(&b);
	CHECK(schema_parse(s3, strlen(s3), 8, &b, err, sizeof(err)) == 0);
	CHECK(!schema_same(&a, &b));
	schema_free(&b);
	schema_copy(&c, &a);
	CHECK(schema_same(&a, &c) && c.index == 1 && c.name != a.name);
	schema_rename(&c, "t_2");
	CHECK(strcmp(c.name, "t_2") == 0 && !schema_same(&a, &c));
	schema_rename(&c, c.name);
	CHECK(strcmp(c.name, "t_2") == 0);
	f = schema_format(&c);
	CHECK(strcmp(f, "1 t_2 x:int32 y:double") == 0);
	free(f);
	CHECK(schema_field(&a, "x") == 0);
	CHECK(schema_field(&a, "y") == 1);
	CHECK(schema_field(&a, "z") == -1);
	schema_free(&a);
	schema_free(&c);
	CHECK(a.name == NULL && a.nfields == 0);
	schema_free(&a);	/* twice is harmless */
}

/* ---- text values ---------------------------------------------------- */

static struct text_line	 tl;
static struct buf	 scratch;
static char		 line[8192];

/* One value field converted against one type; 0 or -1 like text_values. */
static int
tv(enum oml_type t, const char *field, struct oml_value *out)
{
	const char	*why = NULL;
	double		 ts;
	long		 stream;
	int32_t		 seq;
	int		 rc;

	snprintf(line, sizeof(line), "0.5\t1\t1\t%s", field);
	if (text_split(line, strlen(line), &tl, &ts, &stream, &seq) == -1)
		return -2;
	rc = text_values(&tl, &t, 1, out, &scratch, 0, &why);
	if (rc == -1 && why == NULL)
		return -3;
	return rc;
}

static int
tv_i64(enum oml_type t, const char *field, int64_t want)
{
	struct oml_value	 v;

	if (tv(t, field, &v) != 0 || v.type != t || v.null)
		return 0;
	switch (t) {
	case OML_INT32:
		return v.u.i32 == want;
	case OML_UINT32:
		return v.u.u32 == (uint32_t)want;
	case OML_INT64:
		return v.u.i64 == want;
	default:
		return v.u.u64 == (uint64_t)want;
	}
}

static int
tv_drops(enum oml_type t, const char *field)
{
	struct oml_value	 v;

	return tv(t, field, &v) == -1;
}

static void
test_text_ints(void)
{
	section = "text int32";
	CHECK(tv_i64(OML_INT32, "42", 42));
	CHECK(tv_i64(OML_INT32, "-7", -7));
	CHECK(tv_i64(OML_INT32, "+5", 5));
	CHECK(tv_i64(OML_INT32, " \v12", 12));
	CHECK(tv_i64(OML_INT32, "0x1F", 31));
	CHECK(tv_i64(OML_INT32, "-0x10", -16));
	CHECK(tv_i64(OML_INT32, "010", 8));
	CHECK(tv_i64(OML_INT32, "08", 0));
	CHECK(tv_i64(OML_INT32, "0x", 0));
	CHECK(tv_i64(OML_INT32, "0xg", 0));
	CHECK(tv_i64(OML_INT32, "12abc", 12));
	CHECK(tv_i64(OML_INT32, "1e5", 1));
	CHECK(tv_i64(OML_INT32, "abc", 0));
	CHECK(tv_i64(OML_INT32, "", 0));
	CHECK(tv_i64(OML_INT32, "-", 0));
	CHECK(tv_i64(OML_INT32, "99999999999", 1215752191));
	CHECK(tv_i64(OML_INT32, "2147483648", INT32_MIN));
	CHECK(tv_i64(OML_INT32, "9223372036854775807", -1));
	CHECK(tv_i64(OML_INT32, "-9223372036854775808", 0));
	CHECK(tv_drops(OML_INT32, "9223372036854775808"));
	CHECK(tv_drops(OML_INT32, "99999999999999999999"));
	CHECK(tv_drops(OML_INT32, "-9223372036854775809"));

	section = "text uint32";
	CHECK(tv_i64(OML_UINT32, "4000000000", 4000000000LL));
	CHECK(tv_i64(OML_UINT32, "-1", 4294967295LL));
	CHECK(tv_i64(OML_UINT32, "4294967296", 0));
	CHECK(tv_i64(OML_UINT32, "0x10", 16));
	CHECK(tv_i64(OML_UINT32, "18446744073709551615", 4294967295LL));
	CHECK(tv_drops(OML_UINT32, "18446744073709551616"));

	section = "text int64/uint64/guid";
	CHECK(tv_i64(OML_INT64, "9223372036854775807", INT64_MAX));
	CHECK(tv_i64(OML_INT64, "-9223372036854775808", INT64_MIN));
	CHECK(tv_i64(OML_INT64, "0x7fffffffffffffff", INT64_MAX));
	CHECK(tv_i64(OML_INT64, "-2", -2));
	CHECK(tv_drops(OML_INT64, "9223372036854775808"));
	CHECK(tv_drops(OML_INT64, "-9223372036854775809"));
	CHECK(tv_i64(OML_UINT64, "18446744073709551615", -1));
	CHECK(tv_i64(OML_UINT64, "-1", -1));
	CHECK(tv_i64(OML_UINT64, "1234567890123", 1234567890123LL));
	CHECK(tv_drops(OML_UINT64, "18446744073709551616"));
	CHECK(tv_drops(OML_UINT64, "0x10000000000000000"));
	CHECK(tv_i64(OML_GUID, "12abc", 12));
	CHECK(tv_i64(OML_GUID, "0", 0));	/* passed through: NULL later */
	CHECK(tv_i64(OML_GUID, "0x10", 0));	/* decimal only */
	CHECK(tv_i64(OML_GUID, "010", 10));
	CHECK(tv_i64(OML_GUID, "72623859790382856", 72623859790382856LL));
	CHECK(tv_i64(OML_GUID, "18446744073709551615", -1));
	CHECK(tv_drops(OML_GUID, "18446744073709551616"));
}

static int
tv_dbl(const char *field, const char *want)
{
	struct oml_value	 v;

	return tv(OML_DOUBLE, field, &v) == 0 && !v.null &&
	    dbl_is(v.u.d, want);
}

/* The text decoder's doubles are exactly strtod's. */
static void
test_text_double_vs_strtod(void)
{
	struct oml_value	 v;
	char			 s[64];
	double			 want;
	unsigned int		 seed = 12345, i, bad = 0;

	for (i = 0; i < 50000; i++) {
		seed = seed * 1103515245u + 12345u;
		switch (i % 5) {
		case 0:
			snprintf(s, sizeof(s), "%u.%u", seed >> 8, seed % 1000);
			break;
		case 1:
			snprintf(s, sizeof(s), "-%u.%06u", seed % 100000,
			    (seed >> 4) % 1000000);
			break;
		case 2:
			snprintf(s, sizeof(s), "0.%u%u", seed, seed >> 3);
			break;
		case 3:
			snprintf(s, sizeof(s), "%.17g",
			    (double)seed / 7.0 * ((i & 8) ? 1e-5 : 1e5));
			break;
		default:
			snprintf(s, sizeof(s), "%u%u.%u", seed, seed, seed);
			break;
		}
		want = strtod(s, NULL);
		if (tv(OML_DOUBLE, s, &v) != 0 || !same_double(v.u.d, want)) {
			if (bad++ < 5)
				fprintf(stderr, "    '%s' differs\n", s);
		}
	}
	CHECK(bad == 0);
}

/* The fast paths: plain decimals, and binary doubles without ldexp. */
static void
test_number_fast_paths(void)
{
	static const char *const plain[] = {
		"1.", ".5", "123", "-0", "+7.25", "00012.5", "1.2.3",
		"9007199254740993", "12345678901234567", "0.0000000000000000000001",
		"4503599627370497.5", "-.125", "7.e3",
	};
	struct oml_value	 v;
	size_t			 i;
	unsigned int		 seed = 99, bad = 0;
	int			 e;
	int32_t			 m;

	for (i = 0; i < nitems(plain); i++)
		CHECK(tv(OML_DOUBLE, plain[i], &v) == 0 &&
		    same_double(v.u.d, strtod(plain[i], NULL)));
	for (e = -128; e <= 127; e++)
		for (i = 0; i < 200; i++) {
			seed = seed * 1103515245u + 12345u;
			m = i == 0 ? INT32_MIN : i == 1 ? INT32_MAX :
			    (int32_t)seed;
			if (!same_double(bin_double_decode(m, (int8_t)e),
			    ldexp((double)m, e - 30)))
				bad++;
		}
	CHECK(bad == 0);
}

static void
test_text_doubles(void)
{
	struct oml_value	 v;

	section = "text double";
	CHECK(tv_dbl("1.5", "1.5"));
	CHECK(tv_dbl("0.1", "0.10000000000000001"));
	CHECK(tv_dbl("-2.25", "-2.25"));
	CHECK(tv_dbl(" 3.25", "3.25"));
	CHECK(tv_dbl("1.5x", "1.5"));
	CHECK(tv_dbl("2.5e3", "2500"));
	CHECK(tv_dbl("1.", "1"));
	CHECK(tv_dbl(".5", "0.5"));
	CHECK(tv_dbl("0x1p3", "8"));
	CHECK(tv_dbl("-0", "-0"));
	CHECK(tv_dbl("0.000000", "0"));
	CHECK(tv_dbl("1400000000.123456", "1400000000.123456"));
	CHECK(tv_dbl("123456789012345678901234567890",
	    "1.2345678901234568e+29"));
	CHECK(tv_dbl("0.30000000000000004", "0.30000000000000004"));
	CHECK(tv_dbl("2.2250738585072014e-308", "2.2250738585072014e-308"));
	CHECK(tv_dbl("inf", "inf"));
	CHECK(tv_dbl("-Infinity", "-inf"));
	CHECK(tv(OML_DOUBLE, "nan", &v) == 0 && isnan(v.u.d) && !v.null);
	CHECK(tv(OML_DOUBLE, "", &v) == 0 && isnan(v.u.d) && !v.null);
	CHECK(tv(OML_DOUBLE, "abc", &v) == 0 && isnan(v.u.d));
	CHECK(tv(OML_DOUBLE, ".", &v) == 0 && isnan(v.u.d));
	CHECK(tv(OML_DOUBLE, "  ", &v) == 0 && isnan(v.u.d));
	CHECK(tv_drops(OML_DOUBLE, "1e400"));
	CHECK(tv_drops(OML_DOUBLE, "-1e400"));
	CHECK(tv_drops(OML_DOUBLE, "1e-310"));
	CHECK(tv_drops(OML_DOUBLE, "1e-400"));
	CHECK(tv_drops(OML_DOUBLE, "4.9406564584124654e-324"));
	test_text_double_vs_strtod();
	test_number_fast_paths();
}

static int
tv_str(enum oml_type t, const char *field, const void *want, size_t wn)
{
	struct oml_value	 v;

	if (tv(t, field, &v) != 0 || v.null)
		return 0;
	return CHECK_MEM(v.u.s.p, v.u.s.len, want, wn);
}

#define TV_STR(t, f, w)	tv_str((t), (f), (w), sizeof(w) - 1)

static void
test_text_strings(void)
{
	struct oml_value	 v;

	section = "text string";
	CHECK(TV_STR(OML_STRING, "plain", "plain"));
	CHECK(TV_STR(OML_STRING, "", ""));
	CHECK(TV_STR(OML_STRING, "a\\tb", "a\tb"));
	CHECK(TV_STR(OML_STRING, "a\\nb\\rc", "a\nb\rc"));
	CHECK(TV_STR(OML_STRING, "x\\\\y", "x\\y"));
	CHECK(TV_STR(OML_STRING, "\\q\\\\\\t", "q\\\t"));
	CHECK(TV_STR(OML_STRING, "end\\", "end\\"));
	CHECK(TV_STR(OML_STRING, "\\", "\\"));
	CHECK(TV_STR(OML_STRING, "\\\\\\", "\\\\"));
	CHECK(TV_STR(OML_STRING, "sp ace\r", "sp ace\r"));
	/* the field ends at the TAB, even with a backslash before it */
	snprintf(line, sizeof(line), "0\t1\t1\tab\\\tcd");
	CHECK(text_split(line, strlen(line), &tl, &(double){0}, &(long){0},
	    &(int32_t){0}) == 0 && tl.n == 5);

	section = "text blob";
	CHECK(TV_STR(OML_BLOB, "AAGq", "\x00\x01\xaa"));
	CHECK(TV_STR(OML_BLOB, "aGk=", "hi"));
	CHECK(TV_STR(OML_BLOB, "aA==", "h"));
	CHECK(TV_STR(OML_BLOB, "", ""));
	CHECK(tv(OML_BLOB, "", &v) == 0 && !v.null && v.u.s.len == 0);
	CHECK(tv(OML_BLOB, "abc", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "ab=c", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "a===", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "====", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "aGk=aGk=", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "aG k", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "@@@@", &v) == 0 && v.null);
	CHECK(tv(OML_BLOB, "aGk=\r", &v) == 0 && v.null);
}

static int
tv_bool(const char *field, int want)
{
	struct oml_value	 v;

	return tv(OML_BOOL, field, &v) == 0 && v.u.b == want;
}

static void
test_text_bools(void)
{
	static const char *const f[] = {
		"", "f", "F", "fa", "fAl", "fals", "false", "FALSE", "False",
	};
	static const char *const t[] = {
		"T", "t", "true", "0", "1", "no", "false1", "F\r", "falsex",
		" f", "x",
	};
	size_t	 i;

	section = "text bool";
	for (i = 0; i < nitems(f); i++)
		CHECK(tv_bool(f[i], 0));
	for (i = 0; i < nitems(t); i++)
		CHECK(tv_bool(t[i], 1));
}

static void
test_text_vectors(void)
{
	section = "text vectors";
	CHECK(TV_STR(OML_VINT32, "3 1 -2 3", "[ 1, -2, 3 ]"));
	CHECK(TV_STR(OML_VINT32, "1 42", "[ 42 ]"));
	CHECK(TV_STR(OML_VDOUBLE, "2 1.5 -2.25", "[ 1.5, -2.25 ]"));
	CHECK(TV_STR(OML_VBOOL, "3 True False fal", "[ true, false, false ]"));
	CHECK(TV_STR(OML_VINT32, "0", ""));
	CHECK(TV_STR(OML_VDOUBLE, "0", ""));
	CHECK(TV_STR(OML_VBOOL, "", ""));
	CHECK(TV_STR(OML_VINT32, "1 2 3", "[ 2 ]"));
	CHECK(TV_STR(OML_VINT32, "2 0x10 010", "[ 16, 8 ]"));
	CHECK(TV_STR(OML_VINT32, "1 99999999999", "[ 1215752191 ]"));
	CHECK(TV_STR(OML_VUINT32, "2 -1 4294967296", "[ 4294967295, 0 ]"));
	CHECK(TV_STR(OML_VINT64, "2 -9223372036854775808 7",
	    "[ -9223372036854775808, 7 ]"));
	CHECK(TV_STR(OML_VUINT64, "1 18446744073709551615",
	    "[ 18446744073709551615 ]"));
	CHECK(TV_STR(OML_VDOUBLE, "2.9 1 2", "[ 1, 2 ]"));
	CHECK(TV_STR(OML_VDOUBLE, "3 0.1 nan -inf", "[ 0.1, nan, -inf ]"));
	CHECK(TV_STR(OML_VDOUBLE, "1 3.14159265358979",
	    "[ 3.14159265358979 ]"));
	CHECK(TV_STR(OML_VDOUBLE, "1 0.30000000000000004", "[ 0.3 ]"));
	CHECK(TV_STR(OML_VINT32, "2  5   6", "[ 5, 6 ]"));
	CHECK(tv_drops(OML_VINT32, "3 1 2"));
	CHECK(tv_drops(OML_VINT32, "1000000000 1 2 3"));
	CHECK(tv_drops(OML_VDOUBLE, "1e9 1 2 3"));
	CHECK(tv_drops(OML_VBOOL, "4 T F T"));
	CHECK(tv_drops(OML_VINT32, "1 x"));
	CHECK(tv_drops(OML_VINT32, "-1 5"));
	CHECK(tv_drops(OML_VINT32, "2 1,2"));
	CHECK(tv_drops(OML_VINT64, "1 9223372036854775808"));
	CHECK(tv_drops(OML_VDOUBLE, "1 1e400"));
	CHECK(tv_drops(OML_VDOUBLE, "nan 1"));
	CHECK(tv_drops(OML_VDOUBLE, "1e400 1"));
}

/* Several vectors in a row, the first big enough to move the scratch. */
static void
test_text_vector_row(void)
{
	enum oml_type		 t[3] = { OML_VINT32, OML_STRING, OML_VBOOL };
	struct oml_value	 v[3];
	struct buf		 want;
	const char		*why;
	size_t			 n;
	int			 i;

	section = "text vector row";
	buf_init(&want);
	n = (size_t)snprintf(line, sizeof(line), "1\t2\t3\t500");
	buf_adds(&want, "[ ");
	for (i = 0; i < 500; i++) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %d", i);
		buf_printf(&want, "%s%d", i ? ", " : "", i);
	}
	buf_adds(&want, " ]");
	snprintf(line + n, sizeof(line) - n, "\tmid\t2 F T");
	CHECK(text_split(line, strlen(line), &tl, &(double){0}, &(long){0},
	    &(int32_t){0}) == 0);
	CHECK(text_values(&tl, t, 3, v, &scratch, 0, &why) == 0);
	CHECK_MEM(v[0].u.s.p, v[0].u.s.len, want.p, want.len);
	CHECK_STR(v[1].u.s.p, v[1].u.s.len, "mid");
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, "[ false, true ]");
	/* the row's stored size, bounded: exactly, then a byte less */
	n = want.len + 3 + strlen("[ false, true ]");
	CHECK(text_split(line, strlen(line), &tl, &(double){0}, &(long){0},
	    &(int32_t){0}) == 0);
	CHECK(text_values(&tl, t, 3, v, &scratch, n, &why) == 0);
	CHECK(text_split(line, strlen(line), &tl, &(double){0}, &(long){0},
	    &(int32_t){0}) == 0);
	CHECK(text_values(&tl, t, 3, v, &scratch, n - 1, &why) == -1);
	CHECK(strcmp(why, OML_TOO_LONG) == 0);
	buf_free(&want);
}

static void
test_text_split(void)
{
	const char	*why;
	double		 ts;
	long		 stream;
	int32_t		 seq;
	enum oml_type	 t[100];
	struct oml_value v[100];
	size_t		 n;
	int		 i;

	section = "text_split";
	strcpy(line, "0.5\t1\t2\tx\t\t");
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == 0);
	CHECK(tl.n == 6 && ts == 0.5 && stream == 1 && seq == 2);
	CHECK(tl.len[4] == 0 && tl.len[5] == 0);
	strcpy(line, "1\t1\t1\t7\t");	/* §11.7: a trailing TAB */
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == 0);
	CHECK(tl.n == 5);
	t[0] = OML_INT32;
	CHECK(text_values(&tl, t, 1, v, &scratch, 0, &why) == -1);
	strcpy(line, "1\t1");
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == -1);
	CHECK(text_split(line, 0, &tl, &ts, &stream, &seq) == -1);
	strcpy(line, "\t\t");
	CHECK(text_split(line, 2, &tl, &ts, &stream, &seq) == 0);
	CHECK(ts == 0 && stream == 0 && seq == 0);
	strcpy(line, "abc\t0x10\t4294967297");	/* atof, atol, truncated */
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == 0);
	CHECK(ts == 0 && stream == 0 && seq == 1);
	strcpy(line, " 1e3x\t -7z\t-1\t");
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == 0);
	CHECK(ts == 1000 && stream == -7 && seq == -1);
	strcpy(line, "1e400\t99999999999999999999\t1");
	CHECK(text_split(line, strlen(line), &tl, &ts, &stream, &seq) == 0);
	CHECK(isinf(ts) && stream == LONG_MAX);

	/* no field limit: 100 values */
	n = (size_t)snprintf(line, sizeof(line), "1\t1\t1");
	for (i = 0; i < 100; i++) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\t%d", i);
		t[i] = OML_INT32;
	}
	CHECK(text_split(line, n, &tl, &ts, &stream, &seq) == 0);
	CHECK(tl.n == 103);
	CHECK(text_values(&tl, t, 100, v, &scratch, 0, &why) == 0);
	CHECK(v[0].u.i32 == 0 && v[99].u.i32 == 99);
	CHECK(text_values(&tl, t, 99, v, &scratch, 0, &why) == -1);
}

/* ---- base64 --------------------------------------------------------- */

static void
test_base64(void)
{
	static const char *const vec[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	uint8_t		 in[256];
	char		 out[400], tmp[400];
	size_t		 i, n, len;
	long		 d;

	section = "base64";
	for (i = 0; i < nitems(vec); i++) {
		n = b64_encode(out, vec[i][0], strlen(vec[i][0]));
		CHECK_STR(out, n, vec[i][1]);
		strcpy(tmp, vec[i][1]);
		d = b64_decode_inplace(tmp, strlen(tmp));
		CHECK(d >= 0 && CHECK_STR(tmp, (size_t)d, vec[i][0]));
	}
	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 3);
	for (len = 0; len <= sizeof(in); len++) {
		n = b64_encode(out, in, len);
		if (!CHECK(n == (len + 2) / 3 * 4))
			break;
		d = b64_decode_inplace(out, n);
		if (!CHECK(d == (long)len && memcmp(out, in, len) == 0))
			break;
	}
	strcpy(tmp, "+/+/");
	CHECK(b64_decode_inplace(tmp, 4) == 3 &&
	    CHECK_STR(tmp, 3, "\xfb\xff\xbf"));
	strcpy(tmp, "Zm9v-_==");
	CHECK(b64_decode_inplace(tmp, 8) == -1);
	strcpy(tmp, "Zg=");
	CHECK(b64_decode_inplace(tmp, 3) == -1);
	strcpy(tmp, "Z===");
	CHECK(b64_decode_inplace(tmp, 4) == -1);
	strcpy(tmp, "Zm9v\nYmFy");
	CHECK(b64_decode_inplace(tmp, 9) == -1);
}

/* ---- binary: §6.8 vectors, §6.3 doubles ----------------------------- */

static const char P1[] =
    "AA AA 01 00 1C 03 01 05 00 00 00 01 02 30 00 00 00 01"
    "05 00 00 00 2A 02 32 43 F3 E0 02 04 02 68 69";
static const char P1L[] =
    "AA AA 02 00 00 00 1C 03 01 05 00 00 00 09 02 30 00 00 00 01"
    "05 00 00 00 2A 02 32 43 F3 E0 02 04 02 68 69";
static const char P1LEGACY[] =
    "AA AA 01 00 1C 03 01 01 00 00 00 0A 02 30 00 00 00 01"
    "01 FF FF FF FF 02 32 43 F3 E0 02 04 02 68 69";
static const char P2[] =
    "AA AA 01 00 3F 03 00 05 00 00 00 01 02 20 00 00 00 02"
    "04 01 2E"
    "04 06 73 63 68 65 6D 61"
    "04 25 32 20 61 5F 76 65 63 20 76 3A 5B 69 6E 74 33 32 5D 20 77 3A"
    "5B 64 6F 75 62 6C 65 5D 20 62 3A 5B 62 6F 6F 6C 5D";
static const char P3[] =
    "AA AA 01 00 38 03 02 05 00 00 00 07 02 E0 00 00 00 FF"
    "0D 05 00 03 00 00 00 01 FF FF FF FE 00 00 01 2C"
    "0D 0F 00 02 3F F8 00 00 00 00 00 00 BF B9 99 99 99 99 99 9A"
    "0D 0E 00 03 0C 0B 0C";
static const char P4[] =
    "AA AA 01 00 3D 08 03 05 00 00 00 02 02 28 00 00 00 04"
    "06 EE 6B 28 00"
    "07 FF FF FF FF FF FF FF FE"
    "08 00 00 01 1F 71 FB 04 CB"
    "0A 01 02 03 04 05 06 07 08"
    "0C"
    "0B"
    "09 00 00 00 03 00 01 AA"
    "03 00 00 00 00 00";

static const enum oml_type T1[] = { OML_INT32, OML_DOUBLE, OML_STRING };
static const enum oml_type T2[] = { OML_STRING, OML_STRING, OML_STRING };
static const enum oml_type T3[] = { OML_VINT32, OML_VDOUBLE, OML_VBOOL };
static const enum oml_type T4[] = {
	OML_UINT32, OML_INT64, OML_UINT64, OML_GUID, OML_BOOL, OML_BOOL,
	OML_BLOB, OML_DOUBLE,
};

/* Frame exactly one packet filling buf and decode it against types. */
static int
one_packet(const uint8_t *buf, size_t len, const enum oml_type *types,
    int n, struct bin_packet *pkt, struct oml_value *out)
{
	const char	*why = NULL;
	size_t		 used;

	if (bin_next(buf, len, 1 << 20, pkt, &used, &why) != BIN_PACKET ||
	    used != len)
		return -2;
	if (bin_values(pkt, types, n, out, &scratch, 0, &why) == -1) {
		if (why == NULL)
			return -3;
		return -1;
	}
	return 0;
}

static void
test_p1(void)
{
	uint8_t			 pk[64];
	size_t			 n;
	struct bin_packet	 pkt;
	struct oml_value	 v[3];
	struct buf		 b;

	section = "§6.8 P1";
	n = hex(pk, sizeof(pk), P1);
	CHECK(n == 33);
	CHECK(one_packet(pk, n, T1, 3, &pkt, v) == 0);
	CHECK(pkt.stream == 1 && pkt.count == 3 && pkt.seq == 1);
	CHECK(pkt.ts == 1.5);
	CHECK(v[0].u.i32 == 42);
	CHECK(dbl_is(v[1].u.d, "3.1415899991989136"));
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, "hi");

	buf_init(&b);
	v[1].u.d = 3.14159;
	enc_bin_row(&b, 1, 1, 1.5, v, 3, 0);
	CHECK_MEM(b.p, b.len, pk, n);

	section = "§6.8 P1L";
	n = hex(pk, sizeof(pk), P1L);
	CHECK(n == 35);
	CHECK(one_packet(pk, n, T1, 3, &pkt, v) == 0);
	CHECK(pkt.seq == 9 && pkt.stream == 1 && pkt.ts == 1.5);
	CHECK(v[0].u.i32 == 42 && dbl_is(v[1].u.d, "3.1415899991989136"));
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, "hi");
	b.len = 0;
	v[1].u.d = 3.14159;
	enc_bin_row(&b, 1, 9, 1.5, v, 3, 1);
	CHECK_MEM(b.p, b.len, pk, n);

	section = "§6.8 P1-legacy";
	n = hex(pk, sizeof(pk), P1LEGACY);
	CHECK(one_packet(pk, n, T1, 3, &pkt, v) == 0);
	CHECK(pkt.seq == 10 && v[0].u.i32 == -1);
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, "hi");
	buf_free(&b);
}

static void
test_p2(void)
{
	static const char	 decl[] = "2 a_vec v:[int32] w:[double] b:[bool]";
	uint8_t			 pk[128];
	size_t			 n;
	struct bin_packet	 pkt;
	struct oml_value	 v[3];
	struct buf		 b;

	section = "§6.8 P2";
	n = hex(pk, sizeof(pk), P2);
	CHECK(n == 68);
	CHECK(one_packet(pk, n, T2, 3, &pkt, v) == 0);
	CHECK(pkt.stream == 0 && pkt.seq == 1 && pkt.ts == 2.0);
	CHECK_STR(v[0].u.s.p, v[0].u.s.len, ".");
	CHECK_STR(v[1].u.s.p, v[1].u.s.len, "schema");
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, decl);

	buf_init(&b);
	enc_bin_row(&b, 0, 1, 2.0, v, 3, 0);
	CHECK_MEM(b.p, b.len, pk, n);
	buf_free(&b);
}

static void
test_p3(void)
{
	static const int32_t	 vi[] = { 1, -2, 300 };
	static const double	 vd[] = { 1.5, -0.1 };
	static const uint8_t	 vb[] = { 1, 0, 1 };
	uint8_t			 pk[128];
	size_t			 n;
	struct bin_packet	 pkt;
	struct oml_value	 v[3];
	struct buf		 b;

	section = "§6.8 P3";
	n = hex(pk, sizeof(pk), P3);
	CHECK(n == 61);
	CHECK(one_packet(pk, n, T3, 3, &pkt, v) == 0);
	CHECK(pkt.stream == 2 && pkt.seq == 7 && pkt.ts == -0.25);
	CHECK_STR(v[0].u.s.p, v[0].u.s.len, "[ 1, -2, 300 ]");
	CHECK_STR(v[1].u.s.p, v[1].u.s.len, "[ 1.5, -0.1 ]");
	CHECK_STR(v[2].u.s.p, v[2].u.s.len, "[ true, false, true ]");

	memset(v, 0, sizeof(v));
	v[0].type = OML_VINT32;
	v[0].u.vec.p = vi;
	v[0].u.vec.n = 3;
	v[1].type = OML_VDOUBLE;
	v[1].u.vec.p = vd;
	v[1].u.vec.n = 2;
	v[2].type = OML_VBOOL;
	v[2].u.vec.p = vb;
	v[2].u.vec.n = 3;
	buf_init(&b);
	enc_bin_row(&b, 2, 7, -0.25, v, 3, 0);
	CHECK_MEM(b.p, b.len, pk, n);
	buf_free(&b);
}

static void
test_p4(void)
{
	uint8_t			 pk[128];
	size_t			 n;
	struct bin_packet	 pkt;
	struct oml_value	 v[8];
	struct buf		 b;

	section = "§6.8 P4";
	n = hex(pk, sizeof(pk), P4);
	CHECK(n == 66);
	CHECK(one_packet(pk, n, T4, 8, &pkt, v) == 0);
	CHECK(pkt.stream == 3 && pkt.seq == 2 && pkt.ts == 10.0);
	CHECK(v[0].u.u32 == 4000000000u);
	CHECK(v[1].u.i64 == -2);
	CHECK(v[2].u.u64 == 1234567890123ULL);
	CHECK(v[3].u.u64 == 72623859790382856ULL);
	CHECK(v[4].u.b == 1 && v[5].u.b == 0);
	CHECK_MEM(v[6].u.s.p, v[6].u.s.len, "\x00\x01\xaa", 3);
	CHECK(!v[6].null);
	CHECK(isnan(v[7].u.d) && !v[7].null);

	buf_init(&b);
	enc_bin_row(&b, 3, 2, 10.0, v, 8, 0);
	CHECK_MEM(b.p, b.len, pk, n);
	buf_free(&b);
}

static void
test_bin_doubles(void)
{
	static const struct {
		double		 v;
		const char	*bytes;
		const char	*dec;
	} tab[] = {
		{ 0, "02 00 00 00 00 00", "0" },
		{ 0.5, "02 20 00 00 00 00", "0.5" },
		{ 1, "02 20 00 00 00 01", "1" },
		{ -1, "02 E0 00 00 00 01", "-1" },
		{ 1.5, "02 30 00 00 00 01", "1.5" },
		{ 2, "02 20 00 00 00 02", "2" },
		{ 10, "02 28 00 00 00 04", "10" },
		{ -0.25, "02 E0 00 00 00 FF", "-0.25" },
		{ 3.14159, "02 32 43 F3 E0 02", "3.1415899991989136" },
		{ -0.1, "02 CC CC CC CD FD", "-0.099999999976716936" },
		{ 1e-10, "02 36 F9 BF B3 DF", "9.9999999925680372e-11" },
		{ 1400000000.123456, "02 29 B9 27 00 1F", "1400000000" },
		{ 1e100, "03 00 00 00 00 00", "nan" },
		{ NAN, "03 00 00 00 00 00", "nan" },
		{ INFINITY, "02 80 00 00 00 00", "-2" },
		{ 1e-300, "03 00 00 00 00 00", "nan" },
		{ -INFINITY, "02 80 00 00 00 00", "-2" },
	};
	uint8_t		 out[6], want[6];
	size_t		 i;
	double		 d;

	section = "§6.3 DOUBLE_T";
	for (i = 0; i < nitems(tab); i++) {
		CHECK(hex(want, sizeof(want), tab[i].bytes) == 6);
		enc_bin_double(out, tab[i].v);
		CHECK_MEM(out, 6, want, 6);
		d = want[0] == 0x03 ? NAN : bin_double_decode(
		    (int32_t)((uint32_t)want[1] << 24 | (uint32_t)want[2] <<
		    16 | (uint32_t)want[3] << 8 | want[4]), (int8_t)want[5]);
		if (strcmp(tab[i].dec, "nan") == 0)
			CHECK(isnan(d));
		else
			CHECK(dbl_is(d, tab[i].dec));
	}
	CHECK(bin_double_decode(INT32_MAX, 127) > 1.7e38);
	CHECK(bin_double_decode(1 << 29, -128) > 1.4e-39);
}

/* ---- binary framing and resynchronisation (§6.5, §6.7) -------------- */

struct frame {
	enum bin_status	 st;
	size_t		 used;
};

/* Run bin_next over buf, consuming as a server would, until BIN_NEED. */
static int
drive(const uint8_t *buf, size_t len, size_t maxpkt, struct frame *fr,
    int max)
{
	struct bin_packet	 pkt;
	const char		*why;
	size_t			 off = 0, used;
	int			 n = 0;

	while (n < max) {
		fr[n].st = bin_next(buf + off, len - off, maxpkt, &pkt, &used,
		    &why);
		fr[n].used = used;
		if (fr[n].st == BIN_NEED) {
			if (used != 0)
				return -1;
			return n + 1;
		}
		if (used == 0 || used > len - off)
			return -1;
		off += used;
		n++;
	}
	return n;
}

static void
test_bin_framing(void)
{
	uint8_t			 b[256], p1[64];
	struct bin_packet	 pkt;
	struct frame		 fr[16];
	const char		*why;
	size_t			 n1, n, i, used;
	int			 k, bad = 0;

	section = "bin_next framing";
	n1 = hex(p1, sizeof(p1), P1);

	/* garbage before a packet */
	n = hex(b, sizeof(b), "01 02 03");
	memcpy(b + n, p1, n1);
	k = drive(b, n + n1, 1 << 20, fr, 16);
	CHECK(k == 3 && fr[0].st == BIN_SKIP && fr[0].used == 3);
	CHECK(fr[1].st == BIN_PACKET && fr[1].used == 33);
	/* a lone AA inside the garbage, and an AA run before the sync */
	n = hex(b, sizeof(b), "AA 00 AA AA AA");
	memcpy(b + n, p1 + 2, n1 - 2);
	k = drive(b, n + n1 - 2, 1 << 20, fr, 16);
	CHECK(k == 3 && fr[0].st == BIN_SKIP && fr[0].used == 3);
	CHECK(fr[1].st == BIN_PACKET && fr[1].used == 33);
	/* trailing AA is kept, a lone one waits */
	n = hex(b, sizeof(b), "00 11 AA");
	CHECK(bin_next(b, n, 1 << 20, &pkt, &used, &why) == BIN_SKIP &&
	    used == 2);
	CHECK(bin_next(b + 2, 1, 1 << 20, &pkt, &used, &why) == BIN_NEED &&
	    used == 0);
	CHECK(bin_next(b, 0, 1 << 20, &pkt, &used, &why) == BIN_NEED);
	n = hex(b, sizeof(b), "00 11 22");
	CHECK(bin_next(b, n, 1 << 20, &pkt, &used, &why) == BIN_SKIP &&
	    used == 3);

	/* every proper prefix of a packet waits */
	for (i = 0; i < n1; i++) {
		if (bin_next(p1, i, 1 << 20, &pkt, &used, &why) != BIN_NEED ||
		    used != 0)
			bad++;
	}
	CHECK(bad == 0);
	CHECK(bin_next(p1, n1, 1 << 20, &pkt, &used, &why) == BIN_PACKET);

	/* unknown packet type: skip the sync, then find the next packet */
	n = hex(b, sizeof(b), "AA AA 03 00 05 01 02 03 04 05");
	memcpy(b + n, p1, n1);
	k = drive(b, n + n1, 1 << 20, fr, 16);
	CHECK(k == 4 && fr[0].st == BIN_SKIP && fr[0].used == 2);
	CHECK(fr[1].st == BIN_SKIP && fr[1].used == 8);
	CHECK(fr[2].st == BIN_PACKET && fr[2].used == 33);

	/* oversize: short and long */
	CHECK(bin_next(p1, n1, 27, &pkt, &used, &why) == BIN_TOOBIG &&
	    used == 2 && why != NULL);
	CHECK(bin_next(p1, n1, 28, &pkt, &used, &why) == BIN_PACKET);
	n = hex(b, sizeof(b), "AA AA 02 FF FF FF FF 03");
	CHECK(bin_next(b, n, 64 << 20, &pkt, &used, &why) == BIN_TOOBIG);
	n = hex(b, sizeof(b), "AA AA 02 00 00");
	CHECK(bin_next(b, n, 64 << 20, &pkt, &used, &why) == BIN_NEED);

	section = "bin_need";
	CHECK(bin_need(p1, n1) == n1);
	CHECK(bin_need(p1, 4) == 0);
	CHECK(bin_need(b, n) == 0);		/* long header incomplete */
	n = hex(b, sizeof(b), "AA AA 02 00 00 01 00");
	CHECK(bin_need(b, n) == 7 + 256);
	n = hex(b, sizeof(b), "00 AA AA 01 00 05");
	CHECK(bin_need(b, n) == 0);		/* not at a packet */
	n = hex(b, sizeof(b), "AA AA 07 00 05");
	CHECK(bin_need(b, n) == 0);		/* unknown type */
}

/* A copy of P1 with byte i set to v, framed and decoded. */
static int
p1_patched(size_t i, uint8_t v, enum bin_status *st, size_t *used)
{
	uint8_t			 pk[64];
	struct bin_packet	 pkt;
	struct oml_value	 out[3];
	const char		*why = NULL;
	size_t			 n = hex(pk, sizeof(pk), P1);

	pk[i] = v;
	*st = bin_next(pk, n, 1 << 20, &pkt, used, &why);
	if (*st != BIN_PACKET)
		return why != NULL ? -2 : -3;
	if (bin_values(&pkt, T1, 3, out, &scratch, 0, &why) == -1)
		return why != NULL ? -1 : -3;
	return 0;
}

static void
test_bin_bad(void)
{
	enum bin_status	 st;
	size_t		 used;
	uint8_t		 b[64];
	struct bin_packet pkt;
	const char	*why;
	size_t		 n;

	section = "bin packets: bad";
	CHECK(p1_patched(5, 0, &st, &used) == -2 && st == BIN_BAD &&
	    used == 33);		/* count 0 */
	CHECK(p1_patched(7, 0x06, &st, &used) == -2 && st == BIN_BAD &&
	    used == 33);		/* seq-no not int32 */
	CHECK(p1_patched(12, 0x05, &st, &used) == -2 && st == BIN_BAD);
	CHECK(p1_patched(12, 0x03, &st, &used) == 0);	/* NaN timestamp */
	CHECK(p1_patched(5, 2, &st, &used) == -1);	/* wrong count */
	CHECK(p1_patched(5, 4, &st, &used) == -1);
	CHECK(p1_patched(18, 0x06, &st, &used) == -1);	/* uint32 in int32 */
	CHECK(p1_patched(18, 0x07, &st, &used) == -1);
	CHECK(p1_patched(18, 0x10, &st, &used) == -1);	/* unknown code */
	CHECK(p1_patched(23, 0x03, &st, &used) == 0);	/* NaN double */
	CHECK(p1_patched(23, 0x04, &st, &used) == -1);	/* string in double */
	CHECK(p1_patched(29, 0x09, &st, &used) == -1);	/* blob in string */
	CHECK(p1_patched(30, 0x03, &st, &used) == -1);	/* string too long */
	CHECK(p1_patched(30, 0x01, &st, &used) == -1);	/* left over */
	CHECK(p1_patched(30, 0x00, &st, &used) == -1);
	CHECK(p1_patched(4, 0x1D, &st, &used) == 0 || st == BIN_NEED);

	/* too short for its header */
	n = hex(b, sizeof(b), "AA AA 01 00 03 01 01 05");
	CHECK(bin_next(b, n, 1 << 20, &pkt, &used, &why) == BIN_BAD &&
	    used == 8);
	n = hex(b, sizeof(b), "AA AA 01 00 00");
	CHECK(bin_next(b, n, 1 << 20, &pkt, &used, &why) == BIN_BAD &&
	    used == 5);
	n = hex(b, sizeof(b), "AA AA 02 00 00 00 0C 01 01 05 00 00 00 01 02"
	    "00 00 00 00 00");
	CHECK(bin_next(b, n, 1 << 20, &pkt, &used, &why) == BIN_BAD &&
	    used == 19);
}

/* Single-value packets on stream 1, seq 1, ts 0, for value decoding. */
static int
one_value(enum oml_type t, const char *valhex, struct oml_value *v)
{
	uint8_t			 pk[256];
	size_t			 n;
	struct bin_packet	 pkt;

	n = hex(pk, sizeof(pk), "AA AA 01 00 00 01 01 05 00 00 00 01 02 00 00"
	    "00 00 00");
	n += hex(pk + n, sizeof(pk) - n, valhex);
	pk[3] = (uint8_t)((n - 5) >> 8);
	pk[4] = (uint8_t)(n - 5);
	return one_packet(pk, n, &t, 1, &pkt, v);
}

static void
test_bin_values(void)
{
	struct oml_value	 v;

	section = "bin values";
	CHECK(one_value(OML_STRING, "04 00", &v) == 0 && v.u.s.len == 0);
	CHECK(one_value(OML_BLOB, "09 00 00 00 00", &v) == 0 &&
	    v.u.s.len == 0 && !v.null);
	CHECK(one_value(OML_BLOB, "09 00 00 00 02 AA AA", &v) == 0);
	CHECK(one_value(OML_BLOB, "09 00 00 00 03 AA AA", &v) == -1);
	CHECK(one_value(OML_BLOB, "09 FF FF FF FF AA AA", &v) == -1);
	CHECK(one_value(OML_BLOB, "09 00 00", &v) == -1);
	CHECK(one_value(OML_STRING, "04 03 61 00 62", &v) == 0 &&
	    CHECK_MEM(v.u.s.p, v.u.s.len, "a\0b", 3));
	CHECK(one_value(OML_GUID, "0A 00 00 00 00 00 00 00 00", &v) == 0 &&
	    v.u.u64 == 0);
	CHECK(one_value(OML_GUID, "08 00 00 00 00 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_UINT64, "0A 00 00 00 00 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_BOOL, "0C", &v) == 0 && v.u.b == 1);
	CHECK(one_value(OML_BOOL, "0E", &v) == -1);
	CHECK(one_value(OML_DOUBLE, "0F 3F F8 00 00 00 00 00 00", &v) == -1);
	CHECK(one_value(OML_INT32, "05 00 00", &v) == -1);
	CHECK(one_value(OML_INT32, "05 00 00 00 01 00", &v) == -1);
	CHECK(one_value(OML_INT64, "07 80 00 00 00 00 00 00 00", &v) == 0 &&
	    v.u.i64 == INT64_MIN);
	CHECK(one_value(OML_UINT32, "06 FF FF FF FF", &v) == 0 &&
	    v.u.u32 == UINT32_MAX);

	section = "bin vectors";
	CHECK(one_value(OML_VINT32, "0D 05 00 00", &v) == 0 &&
	    v.u.s.len == 0 && v.u.s.p != NULL);
	CHECK(one_value(OML_VUINT32, "0D 06 00 01 FF FF FF FF", &v) == 0 &&
	    CHECK_STR(v.u.s.p, v.u.s.len, "[ 4294967295 ]"));
	CHECK(one_value(OML_VINT64, "0D 07 00 01 FF FF FF FF FF FF FF FF",
	    &v) == 0 && CHECK_STR(v.u.s.p, v.u.s.len, "[ -1 ]"));
	CHECK(one_value(OML_VUINT64, "0D 08 00 01 FF FF FF FF FF FF FF FF",
	    &v) == 0 && CHECK_STR(v.u.s.p, v.u.s.len,
	    "[ 18446744073709551615 ]"));
	CHECK(one_value(OML_VDOUBLE, "0D 0F 00 02 7F F8 00 00 00 00 00 01 "
	    "FF F0 00 00 00 00 00 00", &v) == 0 &&
	    CHECK_STR(v.u.s.p, v.u.s.len, "[ nan, -inf ]"));
	CHECK(one_value(OML_VDOUBLE, "0D 0F 00 01 FF F8 00 00 00 00 00 00",
	    &v) == 0 && CHECK_STR(v.u.s.p, v.u.s.len, "[ nan ]"));
	CHECK(one_value(OML_VBOOL, "0D 0E 00 02 01 0B", &v) == 0 &&
	    CHECK_STR(v.u.s.p, v.u.s.len, "[ false, false ]"));
	CHECK(one_value(OML_VINT32, "0D 01 00 01 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VINT32, "0D 04 00 01 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VINT32, "0D 06 00 01 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VDOUBLE, "0D 02 00 01 20 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VINT32, "0D 05 00 02 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VINT32, "0D 05 FF FF 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_VINT32, "0D 05 00", &v) == -1);
	CHECK(one_value(OML_VINT32, "05 00 00 00 01", &v) == -1);
	CHECK(one_value(OML_INT32, "0D 05 00 01 00 00 00 01", &v) == -1);
}

/* A bad packet costs only itself, even with a sync pattern inside. */
static void
test_bin_resync(void)
{
	uint8_t			 b[256], p1[64];
	struct bin_packet	 pkt;
	struct oml_value	 v[3];
	const char		*why;
	size_t			 n, n1, off = 0, used;
	enum bin_status		 st;
	int			 good = 0, bad = 0, skips = 0;

	section = "bin resync";
	n1 = hex(p1, sizeof(p1), P1);
	/* a 3-value packet whose string hides a copy of a packet header */
	n = hex(b, sizeof(b), "AA AA 01 00 24 03 01 05 00 00 00 01 02 30 00 00"
	    "00 01 05 00 00 00 2A 02 32 43 F3 E0 02 04 09 AA AA 01 00 1C 03 01"
	    "05 00 01");	/* string of 9 in 10 bytes: one left over */
	memcpy(b + n, p1, n1);
	n += n1;
	memcpy(b + n, p1, n1);
	b[n + 18] = 0x06;		/* type mismatch */
	n += n1;
	memcpy(b + n, p1, n1);
	n += n1;
	while ((st = bin_next(b + off, n - off, 1 << 20, &pkt, &used,
	    &why)) != BIN_NEED) {
		if (st == BIN_PACKET && bin_values(&pkt, T1, 3, v, &scratch,
		    0, &why) == 0)
			good++;
		else if (st == BIN_PACKET)
			bad++;
		else
			skips++;
		off += used;
	}
	CHECK(off == n);
	CHECK(good == 2 && bad == 2 && skips == 0);
}

/* ---- encoder ---------------------------------------------------------- */

static void
test_enc_header(void)
{
	struct oml_schema	 sc[2];
	struct enc_header	 h;
	struct buf		 b;
	char			 err[64];
	const char		*s0 = "0 _experiment_metadata subject:string "
				    "key:string value:string";
	const char		*s1 = "1 a_one n:long x:real s:string";

	section = "enc_header";
	CHECK(schema_parse(s0, strlen(s0), 0, &sc[0], err, sizeof(err)) == 0);
	CHECK(schema_parse(s1, strlen(s1), 0, &sc[1], err, sizeof(err)) == 0);
	memset(&h, 0, sizeof(h));
	h.protocol = 5;
	h.domain = "bexp";
	h.start_time = 1400000000;
	h.sender = "nodeB";
	h.app = "a";
	h.schemas = sc;
	h.nschemas = 2;
	h.binary = 1;
	buf_init(&b);
	enc_header(&b, &h);
	CHECK_STR(b.p, b.len, "protocol: 5\ndomain: bexp\n"
	    "start-time: 1400000000\nsender-id: nodeB\napp-name: a\n"
	    "schema: 0 _experiment_metadata subject:string key:string "
	    "value:string\nschema: 1 a_one n:int32 x:double s:string\n"
	    "content: binary\n\n");
	b.len = 0;
	h.protocol = 3;
	h.sender = h.app = NULL;
	h.nschemas = 0;
	h.binary = 0;
	enc_header(&b, &h);
	CHECK_STR(b.p, b.len, "protocol: 3\nexperiment-id: bexp\n"
	    "start_time: 1400000000\ncontent: text\n\n");
	b.len = 0;
	enc_schema_text(&b, &sc[1]);
	CHECK_STR(b.p, b.len, "1 a_one n:int32 x:double s:string");
	buf_free(&b);
	schema_free(&sc[0]);
	schema_free(&sc[1]);
}

static const double	 rt_d[] = { 1.5, 0.1, -1e-300, 4.25 };
static const uint8_t	 rt_b[] = { 1, 0 };
static const int64_t	 rt_i[] = { INT64_MIN, 0, INT64_MAX };

/* One value of every type, for the round trips. */
static void
all_values(struct oml_value *v)
{
	static const char blob[] = "\x00\xff\x10\xaa\xaa";
	int	 i;

	memset(v, 0, 13 * sizeof(*v));
	for (i = 0; i < 13; i++)
		v[i].type = (enum oml_type)i;
	v[0].u.i32 = -3;
	v[1].u.u32 = 4000000000u;
	v[2].u.i64 = INT64_MIN;
	v[3].u.u64 = UINT64_MAX;
	v[4].u.d = 0.1;
	v[5].u.s.p = "a\tb\\c\nd\re\\";
	v[5].u.s.len = strlen(v[5].u.s.p);
	v[6].u.s.p = blob;
	v[6].u.s.len = 5;
	v[7].u.u64 = 72623859790382856ULL;
	v[8].u.b = 1;
	v[9].type = OML_VINT64;
	v[9].u.vec.p = rt_i;
	v[9].u.vec.n = 3;
	v[10].type = OML_VDOUBLE;
	v[10].u.vec.p = rt_d;
	v[10].u.vec.n = 4;
	v[11].type = OML_VBOOL;
	v[11].u.vec.p = rt_b;
	v[11].u.vec.n = 2;
	v[12].type = OML_VUINT32;
	v[12].u.vec.p = rt_b;
	v[12].u.vec.n = 0;
}

static void
check_roundtrip(const struct oml_value *out, int binary)
{
	CHECK(out[0].u.i32 == -3 && out[1].u.u32 == 4000000000u);
	CHECK(out[2].u.i64 == INT64_MIN && out[3].u.u64 == UINT64_MAX);
	if (binary)
		CHECK(dbl_is(out[4].u.d, "0.099999999976716936"));
	else
		CHECK(out[4].u.d == 0.1);
	CHECK_STR(out[5].u.s.p, out[5].u.s.len, "a\tb\\c\nd\re\\");
	CHECK_MEM(out[6].u.s.p, out[6].u.s.len, "\x00\xff\x10\xaa\xaa", 5);
	CHECK(out[7].u.u64 == 72623859790382856ULL && out[8].u.b == 1);
	CHECK_STR(out[9].u.s.p, out[9].u.s.len,
	    "[ -9223372036854775808, 0, 9223372036854775807 ]");
	CHECK_STR(out[10].u.s.p, out[10].u.s.len,
	    "[ 1.5, 0.1, -1e-300, 4.25 ]");
	CHECK_STR(out[11].u.s.p, out[11].u.s.len, "[ true, false ]");
	CHECK(out[12].u.s.len == 0);
}

static void
test_enc_text(void)
{
	struct oml_value	 v[13], out[13];
	enum oml_type		 t[13];
	struct buf		 b;
	const char		*why;
	double			 ts;
	long			 stream;
	int32_t			 seq;
	int			 i;

	section = "enc_text_row";
	all_values(v);
	buf_init(&b);
	enc_text_row(&b, 4, -5, 0.001, v, 13);
	CHECK_STR(b.p, b.len, "0.001\t4\t-5\t-3\t4000000000\t"
	    "-9223372036854775808\t18446744073709551615\t0.1\t"
	    "a\\tb\\\\c\\nd\\re\\\\\tAP8Qqqo=\t72623859790382856\tT\t"
	    "3 -9223372036854775808 0 9223372036854775807\t"
	    "4 1.5 0.1 -1e-300 4.25\t"
	    "2 True False\t0\n");
	for (i = 0; i < 13; i++)
		t[i] = v[i].type;
	CHECK(text_split(b.p, b.len - 1, &tl, &ts, &stream, &seq) == 0);
	CHECK(ts == 0.001 && stream == 4 && seq == -5);
	CHECK(text_values(&tl, t, 13, out, &scratch, 0, &why) == 0);
	check_roundtrip(out, 0);

	b.len = 0;
	v[5].null = v[6].null = 1;
	v[8].u.b = 0;
	enc_text_row(&b, 1, 1, 12.5, v + 4, 5);
	CHECK_STR(b.p, b.len, "12.5\t1\t1\t0.1\t\t\t"
	    "72623859790382856\tF\n");
	b.len = 0;
	v[4].u.d = NAN;
	enc_text_row(&b, 1, 1, -0.0, v + 4, 1);
	CHECK_STR(b.p, b.len, "-0\t1\t1\tnan\n");
	buf_free(&b);
}

/* Every double the text encoder prints reads back as the same double. */
static void
test_enc_text_doubles(void)
{
	struct oml_value	 v;
	struct buf		 b;
	uint64_t		 bits = 0x9e3779b97f4a7c15ULL;
	double			 d, got;
	int			 i, bad = 0;

	section = "enc_text doubles";
	buf_init(&b);
	memset(&v, 0, sizeof(v));
	v.type = OML_DOUBLE;
	for (i = 0; i < 40000; i++) {
		bits ^= bits << 13;
		bits ^= bits >> 7;
		bits ^= bits << 17;
		switch (i % 4) {
		case 0:
			memcpy(&d, &bits, sizeof(d));
			break;
		case 1:
			d = (double)(i / 4) + 0.25;
			break;
		case 2:
			d = (double)(bits % 100000000) / 1000.0;
			break;
		default:
			d = -(double)(bits % 1000000000000ULL) / 1e6;
			break;
		}
		v.u.d = d;
		b.len = 0;
		enc_text_row(&b, 1, 1, 0, &v, 1);
		got = strtod(b.p + 6, NULL);
		if (!same_double(got, d) && bad++ < 5)
			fprintf(stderr, "    %.17g printed as %.*s\n", d,
			    (int)b.len, b.p);
	}
	CHECK(bad == 0);
	buf_free(&b);
}

static void
test_enc_bin(void)
{
	struct oml_value	 v[13], out[13];
	enum oml_type		 t[13];
	struct bin_packet	 pkt;
	struct buf		 b;
	char			 big[300];
	char			*blob;
	int			 i;

	section = "enc_bin_row";
	all_values(v);
	for (i = 0; i < 13; i++)
		t[i] = v[i].type;
	buf_init(&b);
	enc_bin_row(&b, 255, INT32_MIN, 0.5, v, 13, 0);
	CHECK(b.p[2] == 0x01);
	CHECK(one_packet((uint8_t *)b.p, b.len, t, 13, &pkt, out) == 0);
	CHECK(pkt.stream == 255 && pkt.seq == INT32_MIN && pkt.ts == 0.5);
	check_roundtrip(out, 1);

	/* strings are cut to 255 bytes */
	memset(big, 'x', sizeof(big));
	v[5].u.s.p = big;
	v[5].u.s.len = sizeof(big);
	b.len = 0;
	enc_bin_row(&b, 1, 1, 0, v + 5, 1, 0);
	CHECK(one_packet((uint8_t *)b.p, b.len, t + 5, 1, &pkt, out) == 0);
	CHECK(out[0].u.s.len == 255);

	/* a packet over 65535 bytes becomes a long one */
	blob = xmalloc(70000);
	memset(blob, 0xAA, 70000);
	v[6].u.s.p = blob;
	v[6].u.s.len = 70000;
	b.len = 0;
	enc_bin_row(&b, 1, 2, 0, v + 6, 1, 0);
	CHECK(b.p[2] == 0x02 && b.len == 7 + 13 + 5 + 70000);
	CHECK(one_packet((uint8_t *)b.p, b.len, t + 6, 1, &pkt, out) == 0);
	CHECK(out[0].u.s.len == 70000 &&
	    memcmp(out[0].u.s.p, blob, 70000) == 0);
	free(blob);
	buf_free(&b);
}

/* ---- the real captures in t/data ----------------------------------- */

static char *
slurp(const char *name, size_t *len)
{
	const char	*dir = getenv("UNIT_PROTO_DATA");
	char		 path[512];
	struct buf	 b;
	FILE		*f;
	size_t		 n;
	char		 tmp[4096];

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "t/data", name);
	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "    %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf_init(&b);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(&b, tmp, n);
	fclose(f);
	*len = b.len;
	return buf_cstr(&b);
}

/* Parse the header lines; returns the offset of the data, or 0. */
static size_t
capture_headers(const char *s, size_t len, struct oml_schema *sc, int *nsc)
{
	const char	*k, *v;
	size_t		 off = 0, used, kl, vl;
	long		 n;
	char		 err[128];

	*nsc = 0;
	while ((n = line_next(s + off, len - off, &used)) != -1) {
		off += used;
		if (n == 0)
			return off;
		if (!CHECK(header_split(s + off - used, (size_t)n, &k, &kl, &v,
		    &vl) == 0))
			return 0;
		if (kl == 6 && memcmp(k, "schema", 6) == 0 && *nsc < 8) {
			CHECK(schema_parse(v, vl, 0, &sc[*nsc], err,
			    sizeof(err)) == 0);
			(*nsc)++;
		}
	}
	return 0;
}

static void
test_capture_bin(void)
{
	struct oml_schema	 sc[8];
	struct sniff		 sn;
	struct bin_packet	 pkt;
	struct oml_value	 v[8];
	enum oml_type		 t[8];
	const char		*why;
	char			*s, want[16];
	size_t			 len, off, used;
	int			 nsc, i, rows = 0, instr = 0;

	section = "capture lib_bin_simple10";
	if (!CHECK((s = slurp("lib_bin_simple10.oml", &len)) != NULL))
		return;
	memset(&sn, 0, sizeof(sn));
	CHECK(sniff_expid(&sn, s, len, &why) == SNIFF_FOUND &&
	    strcmp(sn.name, "lib_bin_simple10") == 0);
	off = capture_headers(s, len, sc, &nsc);
	CHECK(off == 0x193 && nsc == 3);
	for (i = 0; i < 3; i++)
		t[i] = sc[2].fields[i].type;
	while (bin_next((uint8_t *)s + off, len - off, 1 << 20, &pkt, &used,
	    &why) == BIN_PACKET) {
		off += used;
		if (pkt.stream == 1) {
			for (i = 0; i < 6; i++)
				t[2 + i] = sc[1].fields[i].type;
			CHECK(bin_values(&pkt, t + 2, 6, v, &scratch, 0, &why) ==
			    0 && v[0].u.u32 == 1 && v[1].u.u32 == 0 &&
			    v[2].u.u64 == 11638 && v[5].u.u64 == 9009);
			instr++;
			continue;
		}
		for (i = 0; i < 3; i++)
			t[i] = sc[2].fields[i].type;
		rows++;
		snprintf(want, sizeof(want), "row-%d", rows);
		CHECK(pkt.stream == 2 && pkt.seq == rows);
		CHECK(bin_values(&pkt, t, 3, v, &scratch, 0, &why) == 0);
		CHECK(v[0].u.i32 == rows && v[1].u.d == rows + 0.5);
		CHECK_STR(v[2].u.s.p, v[2].u.s.len, want);
		CHECK(pkt.ts > 0.586 && pkt.ts < 0.587);
	}
	CHECK(off == len && rows == 10 && instr == 1);
	for (i = 0; i < nsc; i++)
		schema_free(&sc[i]);
	free(s);
}

static void
test_capture_text(const char *file, int wantrows)
{
	struct oml_schema	 sc[8];
	struct oml_value	 v[16];
	enum oml_type		 t[16];
	const char		*why;
	char			*s;
	double			 ts;
	long			 n, stream;
	int32_t			 seq;
	size_t			 len, off, used;
	int			 nsc, i, rows = 0, k;

	section = file;
	if (!CHECK((s = slurp(file, &len)) != NULL))
		return;
	CHECK((off = capture_headers(s, len, sc, &nsc)) > 0 && nsc >= 2);
	while ((n = line_next(s + off, len - off, &used)) != -1) {
		CHECK(text_split(s + off, (size_t)n, &tl, &ts, &stream,
		    &seq) == 0);
		off += used;
		for (k = 0; k < nsc && sc[k].index != stream; k++)
			;
		if (!CHECK(k < nsc && sc[k].nfields < 16))
			continue;
		for (i = 0; i < sc[k].nfields; i++)
			t[i] = sc[k].fields[i].type;
		CHECK(text_values(&tl, t, sc[k].nfields, v, &scratch,
		    0, &why) == 0);
		rows++;
	}
	CHECK(off == len && rows == wantrows);
	for (i = 0; i < nsc; i++)
		schema_free(&sc[i]);
	free(s);
}

/* --- PROXY preamble ------------------------------------------------- */

/*
 * Parse s[0..n) the way the master reads it: every shorter prefix must
 * ask for more (or already be refused), then the whole is answered.
 */
static int
proxy_all(const void *s, size_t n, struct proxy_info *pi)
{
	const char	*why;
	size_t		 i;
	int		 r;

	for (i = 0; i < n; i++)
		if ((r = proxy_parse(s, i, 4096, pi, &why)) != PROXY_MORE)
			return r < 0 ? r : -100;
	return proxy_parse(s, n, 4096, pi, &why);
}

/* The client address as "ADDR PORT". */
static const char *
proxy_src(const struct proxy_info *pi)
{
	static char			 out[80];
	char				 a[INET6_ADDRSTRLEN];
	const struct sockaddr_in	*s4 = (const void *)&pi->src;
	const struct sockaddr_in6	*s6 = (const void *)&pi->src;

	if (pi->src.ss_family == AF_INET) {
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "%s %u", a, ntohs(s4->sin_port));
	} else if (pi->src.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, sizeof(out), "%s %u", a, ntohs(s6->sin6_port));
	} else
		snprintf(out, sizeof(out), "none");
	return out;
}

static void
test_proxy_v1(void)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 10.0.0.1 56324 3003\n",
		"PROXY TCP4 192.0.2.7  10.0.0.1 56324 3003\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 056324 3003\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 65536 3003\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 +1 3003\r\n",
		"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
		"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n",
		"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 \r\n",
		"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY \r\n",
	};
	const char		*ok4 = "PROXY TCP4 192.0.2.7 10.0.0.1 56324 3003\r\n";
	const char		*ok6 = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
	const char		*why;
	char			 longline[200];
	struct proxy_info	 pi;
	size_t			 i;

	section = "proxy v1";
	CHECK(proxy_all(ok4, strlen(ok4), &pi) == (int)strlen(ok4));
	CHECK(!pi.local && strcmp(proxy_src(&pi), "192.0.2.7 56324") == 0);
	CHECK(proxy_parse("PROXY TCP4 192.0.2.7 10.0.0.1 56324 3003\r\n"
	    "protocol: 5\n", 54, 4096, &pi, &why) == 42);
	CHECK(proxy_all(ok6, strlen(ok6), &pi) == (int)strlen(ok6));
	CHECK(strcmp(proxy_src(&pi), "2001:db8::1 1") == 0);
	CHECK(proxy_all("PROXY UNKNOWN\r\n", 15, &pi) == 15 && pi.local);
	CHECK(proxy_all("PROXY UNKNOWN ::1 ::1 1 2\r\n", 27, &pi) == 27 &&
	    pi.local);
	for (i = 0; i < nitems(bad); i++)
		if (!CHECK(proxy_all(bad[i], strlen(bad[i]), &pi) ==
		    PROXY_BAD))
			show("input", bad[i], strlen(bad[i]));
	/* 107 bytes is the longest line: without its LF by then, refused */
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY UNKNOWN ", 14);
	CHECK(proxy_parse(longline, 106, 4096, &pi, &why) == PROXY_MORE);
	CHECK(proxy_parse(longline, 107, 4096, &pi, &why) == PROXY_BAD);
	/* an OMSP header is no preamble, as soon as a byte says so */
	CHECK(proxy_parse("protocol: 5\n", 12, 4096, &pi, &why) ==
	    PROXY_ABSENT);
	CHECK(proxy_parse("P", 1, 4096, &pi, &why) == PROXY_MORE);
	CHECK(proxy_parse("PROXx", 5, 4096, &pi, &why) == PROXY_ABSENT);
	CHECK(proxy_parse("\r\n\r\n", 4, 4096, &pi, &why) == PROXY_MORE);
	CHECK(proxy_parse("\r\n\r\n\r", 5, 4096, &pi, &why) ==
	    PROXY_ABSENT);
}

static void
test_proxy_v2(void)
{
	uint8_t			 b[64] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
		0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
		192, 0, 2, 7, 10, 0, 0, 1, 0xdb, 0x04, 0x0b, 0xbb,
		'p'
	};
	const char		*why;
	struct proxy_info	 pi;

	section = "proxy v2";
	CHECK(proxy_all(b, 28, &pi) == 28 && !pi.local);
	CHECK(strcmp(proxy_src(&pi), "192.0.2.7 56068") == 0);
	b[15] = 15;			/* a 3-byte TLV after the addresses */
	b[28] = 0x04;
	b[29] = b[30] = 0;
	CHECK(proxy_all(b, 31, &pi) == 31 && !pi.local);
	b[15] = 11;			/* too short for two IPv4 endpoints */
	CHECK(proxy_all(b, 27, &pi) == PROXY_BAD);
	b[15] = 12;
	b[12] = 0x20;			/* LOCAL: a health check */
	CHECK(proxy_all(b, 28, &pi) == 28 && pi.local);
	b[15] = 0;
	CHECK(proxy_all(b, 16, &pi) == 16 && pi.local);
	b[12] = 0x22;			/* no such command */
	CHECK(proxy_parse(b, 16, 4096, &pi, &why) == PROXY_BAD);
	b[12] = 0x31;			/* version 3 */
	CHECK(proxy_parse(b, 16, 4096, &pi, &why) == PROXY_BAD);
	b[12] = 0x21;
	b[13] = 0x12;			/* UDP */
	b[15] = 12;
	CHECK(proxy_parse(b, 28, 4096, &pi, &why) == PROXY_BAD);
	b[13] = 0x00;			/* UNSPEC: the socket's addresses */
	b[15] = 0;
	CHECK(proxy_parse(b, 16, 4096, &pi, &why) == 16 && pi.local);
	b[13] = 0x21;			/* TCP over IPv6 */
	b[15] = 36;
	memset(b + 16, 0, 36);
	b[31] = 1;
	b[49] = 9;
	CHECK(proxy_all(b, 52, &pi) == 52);
	CHECK(strcmp(proxy_src(&pi), "::1 9") == 0);
	b[14] = 0xff;			/* longer than the caller allows */
	CHECK(proxy_parse(b, 52, 4096, &pi, &why) == PROXY_BAD);
}

/* common/esc.c: what tenants' strings become in JSON, labels, terminals */
static void
test_escapes(void)
{
	static const char	 in[] = "a\"b\\c\nd\x1b\xff\xe2\x80\xae\xc3\xa9";
	struct buf		 b;

	buf_init(&b);
	esc_json(&b, in, sizeof(in) - 1);
	CHECK_STR(b.p, b.len, "\"a\\\"b\\\\c\\nd\\u001b\xef\xbf\xbd"
	    "\xe2\x80\xae\xc3\xa9\"");
	b.len = 0;
	esc_label(&b, in, sizeof(in) - 1);
	CHECK_STR(b.p, b.len, "a\\\"b\\\\c\\nd\x1b\xef\xbf\xbd"
	    "\xe2\x80\xae\xc3\xa9");
	b.len = 0;
	esc_term(&b, in, sizeof(in) - 1);
	CHECK_STR(b.p, b.len, "a\"b\\\\c\\x0ad\\x1b\\xff\\xe2\\x80\\xae"
	    "\xc3\xa9");
	b.len = 0;
	esc_json(&b, "\0", 1);
	CHECK_STR(b.p, b.len, "\"\\u0000\"");
	buf_free(&b);
}

int
main(void)
{
	test_escapes();
	test_types();
	test_lines();
	test_expname();
	test_sniff();
	test_proxy_v1();
	test_proxy_v2();
	test_schema_parse();
	test_schema_ops();
	test_text_ints();
	test_text_doubles();
	test_text_strings();
	test_text_bools();
	test_text_vectors();
	test_text_vector_row();
	test_text_split();
	test_base64();
	test_p1();
	test_p2();
	test_p3();
	test_p4();
	test_bin_doubles();
	test_bin_framing();
	test_bin_bad();
	test_bin_values();
	test_bin_resync();
	test_enc_header();
	test_enc_text();
	test_enc_text_doubles();
	test_enc_bin();
	test_capture_bin();
	test_capture_text("lib_txt_simple10.oml", 11);
	test_capture_text("py_example.oml", 10);
	test_capture_text("r_example.oml", 15);
	text_line_free(&tl);
	buf_free(&scratch);
	printf("unit_proto: %d checks, %d failed\n", nchecks, nfailed);
	return nfailed == 0 ? 0 : 1;
}
