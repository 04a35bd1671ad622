/*
 * The text data phase (§5): a line split on every TAB, the three leading
 * fields read like atof/atol, and each value converted by its column's
 * rules (§5.2).  Strings and blobs shrink in place, so the values point
 * into the caller's line and no value costs an allocation.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

void
text_line_free(struct text_line *tl)
{
	free(tl->f);
	free(tl->len);
	memset(tl, 0, sizeof(*tl));
}

static void
add_field(struct text_line *tl, char *p, size_t len)
{
	if (tl->n == tl->cap) {
		tl->cap = tl->cap ? tl->cap * 2 : 16;
		tl->f = xreallocarray(tl->f, (size_t)tl->cap, sizeof(*tl->f));
		tl->len = xreallocarray(tl->len, (size_t)tl->cap,
		    sizeof(*tl->len));
	}
	tl->f[tl->n] = p;
	tl->len[tl->n] = len;
	tl->n++;
}

/* atol(3): strtol base 10 without error reporting, so overflow clamps. */
static long
text_atol(const char *p, size_t len)
{
	struct intscan	 is;
	int64_t		 v;

	if (int_scan(p, len, 10, &is) == 0)
		return 0;
	if (int_to_i64(&is, &v) == -1)
		return is.neg ? LONG_MIN : LONG_MAX;
	return (long)v;
}

int
text_split(char *line, size_t len, struct text_line *tl, double *ts,
    long *stream, int32_t *seq)
{
	char	*p = line, *end = line + len, *tab;
	int	 erange;

	tl->n = 0;
	while ((tab = memchr(p, '\t', (size_t)(end - p))) != NULL) {
		add_field(tl, p, (size_t)(tab - p));
		p = tab + 1;
	}
	add_field(tl, p, (size_t)(end - p));
	if (tl->n < 3)
		return -1;
	dbl_scan(tl->f[0], tl->len[0], ts, &erange);	/* atof: 0 if none */
	*stream = text_atol(tl->f[1], tl->len[1]);
	*seq = (int32_t)text_atol(tl->f[2], tl->len[2]);
	return 0;
}

/* §5.3, in place; a lone trailing backslash stays as it is. */
static size_t
unescape(char *s, size_t len)
{
	char	*bs;
	size_t	 r, w;

	if ((bs = memchr(s, '\\', len)) == NULL)
		return len;
	for (r = w = (size_t)(bs - s); r < len; r++) {
		if (s[r] != '\\' || r + 1 == len) {
			s[w++] = s[r];
			continue;
		}
		switch (s[++r]) {
		case 't':
			s[w++] = '\t';
			break;
		case 'n':
			s[w++] = '\n';
			break;
		case 'r':
			s[w++] = '\r';
			break;
		default:
			s[w++] = s[r];
			break;
		}
	}
	return w;
}

static int
text_int(const char *p, size_t len, struct oml_value *v, const char **why)
{
	struct intscan	 is;
	int64_t		 i64 = 0;
	uint64_t	 u64 = 0;
	int		 base = v->type == OML_GUID ? 10 : 0, rc;

	int_scan(p, len, base, &is);
	if (v->type == OML_INT32 || v->type == OML_INT64)
		rc = int_to_i64(&is, &i64);
	else
		rc = int_to_u64(&is, &u64);
	if (rc == -1) {
		*why = "integer out of range";
		return -1;
	}
	switch (v->type) {
	case OML_INT32:
		v->u.i32 = (int32_t)i64;	/* truncated, as the original */
		break;
	case OML_INT64:
		v->u.i64 = i64;
		break;
	case OML_UINT32:
		v->u.u32 = (uint32_t)u64;
		break;
	default:
		v->u.u64 = u64;
		break;
	}
	return 0;
}

static int
text_double(const char *p, size_t len, struct oml_value *v, const char **why)
{
	int	 erange;

	if (dbl_scan(p, len, &v->u.d, &erange) == 0) {
		v->u.d = NAN;
		return 0;
	}
	if (erange) {
		*why = "double out of range";
		return -1;
	}
	return 0;
}

static int
text_value(char *p, size_t len, struct oml_value *v, struct buf *scratch,
    const char **why)
{
	long	 n;
	size_t	 before;

	switch (v->type) {
	case OML_DOUBLE:
		return text_double(p, len, v, why);
	case OML_STRING:
		v->u.s.p = p;
		v->u.s.len = unescape(p, len);
		return 0;
	case OML_BLOB:
		v->u.s.p = p;
		if ((n = b64_decode_inplace(p, len)) == -1) {
			v->null = 1;
			n = 0;
		}
		v->u.s.len = (size_t)n;
		return 0;
	case OML_BOOL:
		v->u.b = bool_text(p, len);
		return 0;
	default:
		if (!is_vector_type(v->type))
			return text_int(p, len, v, why);
		before = scratch->len;
		if (vec_text(p, len, v->type, scratch, why) == -1)
			return -1;
		v->u.s.len = scratch->len - before;
		return 0;
	}
}

int
text_values(struct text_line *tl, const enum oml_type *types, int n,
    struct oml_value *out, struct buf *scratch, size_t maxout,
    const char **why)
{
	size_t	 bytes = 0;
	int	 i;

	if (tl->n - 3 != n) {
		*why = "value count differs from the schema";
		return -1;
	}
	scratch->len = 0;
	for (i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].type = types[i];
		if (text_value(tl->f[3 + i], tl->len[3 + i], &out[i], scratch,
		    why) == -1)
			return -1;
		if (stored_over(&out[i], &bytes, scratch, maxout, why))
			return -1;
	}
	vec_fixup(out, n, scratch);
	return 0;
}
