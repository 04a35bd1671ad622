/*
 * libFuzzer harness: the text data phase.  The input is a whole text
 * connection: a header section whose schema lines give the streams their
 * column types (any type list the fuzzer can spell), then tuple lines
 * split by text_split and converted by text_values against the stream's
 * types, as the child does; ". schema" tuples on stream 0 declare more
 * streams.  Each row that decodes is re-encoded with enc_text_row and
 * must decode to the same values.  The same lines are also decoded
 * against a type list taken from the input's first bytes, so that every
 * type meets every field.
 */
#include "t/fuzz/fuzz.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct text_line	 tl, tl2;
static struct buf	 scratch, scratch2, enc;

static void
roundtrip(const struct oml_value *v, const enum oml_type *types, int n,
    int32_t seq, long stream)
{
	struct oml_value	*v2;
	const char		*why;
	double			 ts;
	long			 idx, len;
	int32_t			 seq2;
	size_t			 used;

	if (fz_has_vector(types, n) || stream < 0 || stream > INT32_MAX)
		return;
	enc.len = 0;
	enc_text_row(&enc, (int)stream, seq, 1.5, v, n);
	len = line_next(enc.p, enc.len, &used);
	CHECK(len >= 0 && used == enc.len);
	CHECK(text_split(enc.p, (size_t)len, &tl2, &ts, &idx, &seq2) == 0);
	CHECK(idx == stream && seq2 == seq && tl2.n == n + 3);
	v2 = calloc((size_t)n + 1, sizeof(*v2));
	CHECK(v2 != NULL);
	CHECK(text_values(&tl2, types, n, v2, &scratch2, 0, &why) == 0);
	fz_same_values(v, v2, n, 0);
	free(v2);
}

/* Decode a copy of the line against the input's own type list, cycled. */
static void
any_types(const char *line, size_t len, const enum oml_type *any, int nany)
{
	struct oml_value	*v;
	enum oml_type		*types;
	const char		*why;
	double			 ts;
	long			 stream;
	int32_t			 seq;
	char			*copy;
	int			 n, i;

	copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	memcpy(copy, line, len);
	if (nany == 0 || text_split(copy, len, &tl2, &ts, &stream, &seq) == -1)
		goto out;
	n = tl2.n - 3;
	v = calloc((size_t)n + 1, sizeof(*v));
	types = calloc((size_t)n + 1, sizeof(*types));
	CHECK(v != NULL && types != NULL);
	for (i = 0; i < n; i++)
		types[i] = any[i % nany];
	/* a count that does not match is refused */
	CHECK(text_values(&tl2, types, n + 1, v, &scratch2, 0, &why) == -1);
	if (text_values(&tl2, types, n, v, &scratch2, 0, &why) == 0)
		fz_check_values(v, n, copy, copy + len, &scratch2);
	else
		CHECK(why != NULL);
	free(types);
	free(v);
out:
	free(copy);
}

static void
tuple(struct fz_conn *c, char *line, size_t len)
{
	struct oml_value	*v;
	struct fz_stream	*st;
	const char		*why;
	double			 ts;
	long			 stream;
	int32_t			 seq;
	int			 n, i;

	if (text_split(line, len, &tl, &ts, &stream, &seq) == -1) {
		CHECK(tl.n < 3);
		return;
	}
	CHECK(tl.n >= 3);
	for (i = 0; i < tl.n; i++)
		CHECK(tl.f[i] >= line && tl.f[i] + tl.len[i] <= line + len);
	n = tl.n - 3;
	if ((st = fz_stream(c, stream)) == NULL || st->s.nfields != n)
		return;
	v = calloc((size_t)n + 1, sizeof(*v));
	CHECK(v != NULL);
	if (text_values(&tl, st->types, n, v, &scratch, 0, &why) == 0) {
		fz_check_values(v, n, line, line + len, &scratch);
		if (stream == 0)
			fz_metadata(c, st, v);
		else
			roundtrip(v, st->types, n, seq, stream);
	} else
		CHECK(why != NULL);
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_conn	 c;
	enum oml_type	 any[8];
	char		*buf, *copy;
	size_t		 off, used;
	long		 n;
	int		 nany = 0, i;

	/* first byte: how many types, next bytes: which */
	if (size > 0) {
		nany = data[0] % (int)(nitems(any) + 1);
		for (i = 0; i < nany; i++)
			any[i] = (enum oml_type)(i + 1 < (int)size ?
			    data[i + 1] % OML_TYPE_MAX : 0);
	}
	buf = malloc(size ? size : 1);
	CHECK(buf != NULL);
	memcpy(buf, data, size);
	memset(&c, 0, sizeof(c));
	off = fz_headers(&c, buf, size);
	while (off < size && (n = line_next(buf + off, size - off, &used))
	    != -1) {
		/* each line in its own allocation: no slack to hide in */
		copy = malloc(n > 0 ? (size_t)n : 1);
		CHECK(copy != NULL);
		memcpy(copy, buf + off, (size_t)n);
		any_types(copy, (size_t)n, any, nany);
		tuple(&c, copy, (size_t)n);
		free(copy);
		off += used;
	}
	fz_conn_free(&c);
	free(buf);
	return 0;
}
