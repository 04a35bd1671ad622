/*
 * Vectors (§5.4, §8.4): the text form "N e1 .. eN" parsed, and both
 * decoders' vectors rendered to the storage text "[ 1, -2, 300 ]".  The
 * count a peer sends is never trusted with memory: elements are rendered
 * one at a time as they are found, so a count of 10^9 fails at the first
 * missing element.
 */
#include <math.h>
#include <stdio.h>

#include "proto/proto.h"
#include "proto/internal.h"

int
bool_text(const char *p, size_t len)
{
	static const char	 f[] = "false";
	size_t			 i;

	if (len > sizeof(f) - 1)
		return 1;
	for (i = 0; i < len; i++) {
		if ((p[i] | 0x20) != f[i])
			return 1;
	}
	return 0;
}

void
vr_elem(struct buf *b, uint64_t i)
{
	buf_add(b, i == 0 ? "[ " : ", ", 2);
}

void
vr_end(struct buf *b, uint64_t n)
{
	if (n > 0)
		buf_add(b, " ]", 2);
}

void
vr_i64(struct buf *b, int64_t v)
{
	buf_reserve(b, 21);
	b->len += fmt_i64(b->p + b->len, v);
}

void
vr_u64(struct buf *b, uint64_t v)
{
	buf_reserve(b, 21);
	b->len += fmt_u64(b->p + b->len, v);
}

/* %.15g as liboml2 prints, but one spelling for every NaN. */
void
vr_double(struct buf *b, double v)
{
	if (isnan(v))
		buf_add(b, "nan", 3);
	else
		buf_printf(b, "%.15g", v);
}

void
vr_bool(struct buf *b, int v)
{
	if (v)
		buf_add(b, "true", 4);
	else
		buf_add(b, "false", 5);
}

/*
 * The count, read with strtod for [double] and strtol otherwise (as the
 * original does); a field without a number is an empty vector.
 */
static size_t
vec_count(const char *p, size_t len, enum oml_type t, uint64_t *count)
{
	struct intscan	 is;
	int64_t		 v;
	double		 d;
	size_t		 n;
	int		 erange;

	*count = 0;
	if (t == OML_VDOUBLE) {
		n = dbl_scan(p, len, &d, &erange);
		if (n > 0 && (erange || !(d > -1.0 && d < 18446744073709551616.0)))
			return (size_t)-1;
		if (n > 0 && d > 0)
			*count = (uint64_t)d;
		return n;
	}
	n = int_scan(p, len, 0, &is);
	if (n > 0 && (int_to_i64(&is, &v) == -1 || v < 0))
		return (size_t)-1;
	if (n > 0)
		*count = (uint64_t)v;
	return n;
}

/* One bool token; 0 if there is none left. */
static size_t
elem_bool(const char *p, size_t len, struct buf *b)
{
	size_t	 i = 0, s;

	while (i < len && is_ws((unsigned char)p[i]))
		i++;
	for (s = i; i < len && !is_ws((unsigned char)p[i]); i++)
		;
	if (i == s)
		return 0;
	vr_bool(b, bool_text(p + s, i - s));
	return i;
}

static size_t
elem_int(const char *p, size_t len, enum oml_type t, struct buf *b, int *bad)
{
	struct intscan	 is;
	int64_t		 i64;
	uint64_t	 u64;
	size_t		 n;

	if ((n = int_scan(p, len, 0, &is)) == 0)
		return 0;
	if (t == OML_VINT32 || t == OML_VINT64) {
		if (int_to_i64(&is, &i64) == -1)
			*bad = 1;
		else
			vr_i64(b, t == OML_VINT32 ? (int32_t)i64 : i64);
	} else {
		if (int_to_u64(&is, &u64) == -1)
			*bad = 1;
		else
			vr_u64(b, t == OML_VUINT32 ? (uint32_t)u64 : u64);
	}
	return n;
}

/* One element rendered onto b: bytes consumed, 0 if none; *bad on ERANGE. */
static size_t
vec_elem(const char *p, size_t len, enum oml_type t, struct buf *b, int *bad)
{
	double	 d;
	size_t	 n;

	switch (t) {
	case OML_VDOUBLE:
		if ((n = dbl_scan(p, len, &d, bad)) > 0)
			vr_double(b, d);
		return n;
	case OML_VBOOL:
		return elem_bool(p, len, b);
	default:
		return elem_int(p, len, t, b, bad);
	}
}

int
vec_text(const char *p, size_t len, enum oml_type t, struct buf *b,
    const char **why)
{
	uint64_t	 count, i;
	size_t		 pos, n;
	int		 bad = 0;

	if ((pos = vec_count(p, len, t, &count)) == (size_t)-1) {
		*why = "bad vector count";
		return -1;
	}
	for (i = 0; i < count; i++) {
		vr_elem(b, i);
		if ((n = vec_elem(p + pos, len - pos, t, b, &bad)) == 0) {
			*why = "fewer vector elements than its count";
			return -1;
		}
		if (bad) {
			*why = "vector element out of range";
			return -1;
		}
		pos += n;
	}
	vr_end(b, count);
	return 0;
}

/*
 * The decoders render every vector of a row into one scratch buffer, in
 * column order, recording only lengths: the buffer may move while it
 * grows, so the pointers are set once it is complete.
 */
void
vec_fixup(struct oml_value *out, int n, const struct buf *scratch)
{
	size_t	 off = 0;
	int	 i;

	for (i = 0; i < n; i++) {
		if (!is_vector_type(out[i].type))
			continue;
		out[i].u.s.p = scratch->p != NULL ? scratch->p + off : "";
		off += out[i].u.s.len;
	}
}

/*
 * Do a row's values take more than maxout bytes once stored (strings and
 * blobs as they are, vectors as rendered into scratch)?  Called after
 * each value, with *bytes the strings' and blobs' total so far, so that
 * rendering stops within one vector of the limit.  0 means no limit.
 */
int
stored_over(const struct oml_value *v, size_t *bytes,
    const struct buf *scratch, size_t maxout, const char **why)
{
	if (v->type == OML_STRING || v->type == OML_BLOB)
		*bytes += v->u.s.len;
	if (maxout == 0 || scratch->len + *bytes <= maxout)
		return 0;
	*why = OML_TOO_LONG;
	return 1;
}
