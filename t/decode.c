/*
 * t/decode -- the decoders alone, for `make bench`: the bench's rows
 * (n r, x r + 0.25, s "row-r", timestamp r / 1000, as t/omlsend makes
 * them) encoded once in text and once in binary, then decoded in memory
 * the way an experiment process does (line_next, text_split and
 * text_values; bin_next and bin_values), with no socket and no storage.
 *
 *   decode [ROWS [REPEAT]]
 *	Prints "text NS_PER_ROW binary NS_PER_ROW", the best of REPEAT
 *	passes over ROWS rows (1,000,000 and 5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/proto.h"

static const char schema_text[] = "1 gen n:int32 x:double s:string";

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
encode(struct buf *text, struct buf *bin, long rows)
{
	struct oml_value	 v[3];
	char			 s[32];
	long			 r;

	memset(v, 0, sizeof(v));
	v[0].type = OML_INT32;
	v[1].type = OML_DOUBLE;
	v[2].type = OML_STRING;
	for (r = 1; r <= rows; r++) {
		v[0].u.i32 = (int32_t)r;
		v[1].u.d = (double)r + 0.25;
		v[2].u.s.len = (size_t)snprintf(s, sizeof(s), "row-%ld", r);
		v[2].u.s.p = s;
		enc_text_row(text, 1, (int32_t)r, (double)r / 1000.0, v, 3);
		enc_bin_row(bin, 1, (int32_t)r, (double)r / 1000.0, v, 3, 0);
	}
}

/* Decode every line of p; returns the rows decoded.  (Not inlined: a
 * profiler can count it alone.) */
static __attribute__((noinline)) long
pass_text(char *p, size_t len, const enum oml_type *types)
{
	static struct text_line	 tl;
	static struct buf	 scratch;
	struct oml_value	 v[3];
	const char		*why;
	size_t			 off = 0, used;
	double			 ts;
	long			 n, index, rows = 0;
	int32_t			 seq;

	while ((n = line_next(p + off, len - off, &used)) >= 0) {
		if (text_split(p + off, (size_t)n, &tl, &ts, &index, &seq) ==
		    0 && text_values(&tl, types, 3, v, &scratch, SIZE_MAX,
		    &why) == 0)
			rows++;
		off += used;
	}
	return rows;
}

static __attribute__((noinline)) long
pass_bin(const char *p, size_t len, const enum oml_type *types)
{
	static struct buf	 scratch;
	struct bin_packet	 pkt;
	struct oml_value	 v[3];
	const char		*why;
	size_t			 off = 0, used;
	long			 rows = 0;

	while (off < len && bin_next((const uint8_t *)p + off, len - off,
	    1 << 20, &pkt, &used, &why) != BIN_NEED) {
		if (bin_values(&pkt, types, 3, v, &scratch, SIZE_MAX, &why) == 0)
			rows++;
		off += used;
	}
	return rows;
}

int
main(int argc, char **argv)
{
	struct oml_schema	 sc;
	struct buf		 text, bin;
	enum oml_type		 types[3];
	char			 err[128], *copy;
	double			 t0, best_t = 1e9, best_b = 1e9, t;
	long			 rows = argc > 1 ? atol(argv[1]) : 1000000;
	long			 repeat = argc > 2 ? atol(argv[2]) : 5, i, n;

	if (rows <= 0 || repeat <= 0 || schema_parse(schema_text,
	    strlen(schema_text), 0, &sc, err, sizeof(err)) == -1) {
		fprintf(stderr, "usage: decode [ROWS [REPEAT]]\n");
		return 2;
	}
	for (i = 0; i < 3; i++)
		types[i] = sc.fields[i].type;
	buf_init(&text);
	buf_init(&bin);
	encode(&text, &bin, rows);
	copy = xmalloc(text.len);
	for (i = 0; i < repeat; i++) {
		memcpy(copy, text.p, text.len);	/* decoded in place */
		t0 = now();
		n = pass_text(copy, text.len, types);
		if ((t = now() - t0) < best_t)
			best_t = t;
		if (n != rows)
			return 1;
		t0 = now();
		n = pass_bin(bin.p, bin.len, types);
		if ((t = now() - t0) < best_b)
			best_b = t;
		if (n != rows)
			return 1;
	}
	printf("text %.1f binary %.1f\n", best_t * 1e9 / (double)rows,
	    best_b * 1e9 / (double)rows);
	free(copy);
	schema_free(&sc);
	return 0;
}
