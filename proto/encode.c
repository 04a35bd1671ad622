/*
 * The encoder: headers, text tuples and binary packets, as a client
 * writes them.  The server uses it for self-reporting; the test and
 * benchmark client uses it for millions of rows, so the per-row paths
 * write straight into the buffer and avoid printf where they can.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

void
enc_header(struct buf *b, const struct enc_header *h)
{
	int	 old = h->protocol < 4;	/* V1-V3 spelled two keys otherwise */
	int	 i;

	buf_printf(b, "protocol: %d\n", h->protocol);
	buf_printf(b, "%s: %s\n", old ? "experiment-id" : "domain", h->domain);
	buf_printf(b, "%s: %ld\n", old ? "start_time" : "start-time",
	    h->start_time);
	if (h->sender != NULL)
		buf_printf(b, "sender-id: %s\n", h->sender);
	if (h->app != NULL)
		buf_printf(b, "app-name: %s\n", h->app);
	for (i = 0; i < h->nschemas; i++) {
		buf_adds(b, "schema: ");
		enc_schema_text(b, &h->schemas[i]);
		buf_addc(b, '\n');
	}
	buf_printf(b, "content: %s\n\n", h->binary ? "binary" : "text");
}

/*
 * Space for n more bytes, returned as a write pointer; the caller counts
 * what it wrote into b->len.
 */
static uint8_t *
writable(struct buf *b, size_t n)
{
	buf_reserve(b, n);
	return (uint8_t *)b->p + b->len;
}

/*
 * §6.3, byte for byte as liboml2: M is the frexp mantissa scaled by 2^30
 * and truncated.  Infinity is reproduced as the client sends it (M =
 * INT32_MIN, X = 0, which decodes as -2.0) so that the encoder matches
 * the reference marshaller exactly; NaN and exponents beyond a signed
 * byte become DOUBLE_NAN.
 */
void
enc_bin_double(uint8_t out[6], double v)
{
	double	 m;
	int	 e;

	memset(out, 0, 6);
	if (isnan(v)) {
		out[0] = 0x03;
		return;
	}
	out[0] = 0x02;
	if (isinf(v)) {
		be_put32(out + 1, 0x80000000u);
		return;
	}
	m = frexp(v, &e);
	if (e < -128 || e > 127) {
		out[0] = 0x03;
		return;
	}
	be_put32(out + 1, (uint32_t)(int32_t)(m * 1073741824.0));
	out[5] = (uint8_t)(int8_t)e;
}

/* Element code and size of each vector type on the wire (§6.4). */
static size_t
vec_elem_size(enum oml_type t, uint8_t *code)
{
	switch (t) {
	case OML_VINT32:
		*code = 0x05;
		return 4;
	case OML_VUINT32:
		*code = 0x06;
		return 4;
	case OML_VINT64:
		*code = 0x07;
		return 8;
	case OML_VUINT64:
		*code = 0x08;
		return 8;
	case OML_VDOUBLE:
		*code = 0x0F;
		return 8;
	default:
		*code = 0x0E;
		return 1;
	}
}

static void
bin_put_vector(struct buf *b, const struct oml_value *v)
{
	uint32_t	 n = v->u.vec.n > 65535 ? 65535 : v->u.vec.n, i;
	uint8_t		*p, code;
	size_t		 size = vec_elem_size(v->type, &code);
	uint64_t	 u;

	p = writable(b, 4 + (size_t)n * size);
	p[0] = 0x0D;
	p[1] = code;
	be_put16(p + 2, (uint16_t)n);
	p += 4;
	for (i = 0; i < n; i++, p += size) {
		switch (v->type) {
		case OML_VINT32:
			be_put32(p, (uint32_t)((const int32_t *)v->u.vec.p)[i]);
			break;
		case OML_VUINT32:
			be_put32(p, ((const uint32_t *)v->u.vec.p)[i]);
			break;
		case OML_VINT64:
			be_put64(p, (uint64_t)((const int64_t *)v->u.vec.p)[i]);
			break;
		case OML_VUINT64:
			be_put64(p, ((const uint64_t *)v->u.vec.p)[i]);
			break;
		case OML_VDOUBLE:
			memcpy(&u, &((const double *)v->u.vec.p)[i], 8);
			be_put64(p, u);
			break;
		default:
			p[0] = ((const uint8_t *)v->u.vec.p)[i] ? 0x0C : 0x0B;
			break;
		}
	}
	b->len += 4 + (size_t)n * size;
}

/* STRING_T (cut to 255 bytes) or BLOB_T; NULL ones go out empty. */
static void
bin_put_bytes(struct buf *b, const struct oml_value *v)
{
	size_t	 n = v->null ? 0 : v->u.s.len;
	uint8_t	*p;

	if (v->type == OML_STRING) {
		n = n > 255 ? 255 : n;
		p = writable(b, 2 + n);
		p[0] = 0x04;
		p[1] = (uint8_t)n;
		b->len += 2;
	} else {
		p = writable(b, 5 + n);
		p[0] = 0x09;
		be_put32(p + 1, (uint32_t)n);
		b->len += 5;
	}
	buf_add(b, v->u.s.p, n);
}

static void
bin_put_value(struct buf *b, const struct oml_value *v)
{
	uint8_t	*p = writable(b, 9);

	switch (v->type) {
	case OML_INT32:
		p[0] = 0x05;
		be_put32(p + 1, (uint32_t)v->u.i32);
		b->len += 5;
		break;
	case OML_UINT32:
		p[0] = 0x06;
		be_put32(p + 1, v->u.u32);
		b->len += 5;
		break;
	case OML_INT64:
	case OML_UINT64:
	case OML_GUID:
		p[0] = v->type == OML_INT64 ? 0x07 :
		    v->type == OML_UINT64 ? 0x08 : 0x0A;
		be_put64(p + 1, v->u.u64);
		b->len += 9;
		break;
	case OML_DOUBLE:
		enc_bin_double(p, v->u.d);
		b->len += 6;
		break;
	case OML_BOOL:
		p[0] = v->u.b ? 0x0C : 0x0B;
		b->len += 1;
		break;
	case OML_STRING:
	case OML_BLOB:
		bin_put_bytes(b, v);
		break;
	default:
		bin_put_vector(b, v);
		break;
	}
}

void
enc_bin_row(struct buf *b, int stream, int32_t seq, double ts,
    const struct oml_value *v, int n, int force_long)
{
	size_t	 start = b->len, blen;
	uint8_t	*p;
	int	 i;

	p = writable(b, 18);
	p[0] = p[1] = 0xAA;
	p[2] = 0x01;
	p[5] = (uint8_t)n;
	p[6] = (uint8_t)stream;
	p[7] = 0x05;
	be_put32(p + 8, (uint32_t)seq);
	enc_bin_double(p + 12, ts);
	b->len += 18;
	for (i = 0; i < n; i++)
		bin_put_value(b, &v[i]);
	blen = b->len - start - 5;
	p = (uint8_t *)b->p + start;
	if (blen <= 65535 && !force_long) {
		be_put16(p + 3, (uint16_t)blen);
		return;
	}
	/* Rare: make room for the 4-byte length by shifting the body. */
	buf_reserve(b, 2);
	p = (uint8_t *)b->p + start;
	memmove(p + 7, p + 5, blen);
	p[2] = 0x02;
	be_put32(p + 3, (uint32_t)blen);
	b->len += 2;
}

/*
 * A double as text that strtod reads back to the same value: values
 * that are exact at 6 decimals (most of what clients measure) print
 * short and without printf, the rest with %.17g.
 */
static size_t
fmt_double(char *out, double v)
{
	int64_t	 i, ip;
	size_t	 n = 0;
	int	 frac, k;

	if (!(fabs(v) < 1e9) || v == 0)
		return (size_t)snprintf(out, 32, "%.17g", v);
	i = llround(v * 1e6);
	if ((double)i / 1e6 != v)
		return (size_t)snprintf(out, 32, "%.17g", v);
	if (i < 0) {
		out[n++] = '-';
		i = -i;
	}
	ip = i / 1000000;
	frac = (int)(i % 1000000);
	n += fmt_u64(out + n, (uint64_t)ip);
	if (frac != 0) {
		out[n++] = '.';
		for (k = 100000; frac != 0; k /= 10) {
			out[n++] = (char)('0' + frac / k);
			frac %= k;
		}
	}
	return n;
}

static void
txt_double(struct buf *b, double v)
{
	buf_reserve(b, 32);
	b->len += fmt_double(b->p + b->len, v);
}

static void
txt_i64(struct buf *b, int64_t v)
{
	buf_reserve(b, 21);
	b->len += fmt_i64(b->p + b->len, v);
}

static void
txt_u64(struct buf *b, uint64_t v)
{
	buf_reserve(b, 21);
	b->len += fmt_u64(b->p + b->len, v);
}

/* §5.3: TAB, LF, CR and backslash go out as two-byte escapes. */
static void
txt_string(struct buf *b, const char *s, size_t len)
{
	size_t	 i, run;
	char	 c;

	for (i = run = 0; i < len; i++) {
		c = s[i];
		if (c != '\t' && c != '\n' && c != '\r' && c != '\\')
			continue;
		buf_add(b, s + run, i - run);
		buf_addc(b, '\\');
		buf_addc(b, c == '\t' ? 't' : c == '\n' ? 'n' :
		    c == '\r' ? 'r' : '\\');
		run = i + 1;
	}
	buf_add(b, s + run, len - run);
}

static void
txt_blob(struct buf *b, const void *p, size_t len)
{
	buf_reserve(b, (len + 2) / 3 * 4);
	b->len += b64_encode(b->p + b->len, p, len);
}

/* "N e1 .. eN" (§5.4), bools as liboml2 prints them. */
static void
txt_vector(struct buf *b, const struct oml_value *v)
{
	uint32_t	 i;

	txt_u64(b, v->u.vec.n);
	for (i = 0; i < v->u.vec.n; i++) {
		buf_addc(b, ' ');
		switch (v->type) {
		case OML_VINT32:
			txt_i64(b, ((const int32_t *)v->u.vec.p)[i]);
			break;
		case OML_VUINT32:
			txt_u64(b, ((const uint32_t *)v->u.vec.p)[i]);
			break;
		case OML_VINT64:
			txt_i64(b, ((const int64_t *)v->u.vec.p)[i]);
			break;
		case OML_VUINT64:
			txt_u64(b, ((const uint64_t *)v->u.vec.p)[i]);
			break;
		case OML_VDOUBLE:
			txt_double(b, ((const double *)v->u.vec.p)[i]);
			break;
		default:
			buf_adds(b, ((const uint8_t *)v->u.vec.p)[i] ?
			    "True" : "False");
			break;
		}
	}
}

static void
txt_value(struct buf *b, const struct oml_value *v)
{
	switch (v->type) {
	case OML_INT32:
		txt_i64(b, v->u.i32);
		break;
	case OML_UINT32:
		txt_u64(b, v->u.u32);
		break;
	case OML_INT64:
		txt_i64(b, v->u.i64);
		break;
	case OML_UINT64:
	case OML_GUID:
		txt_u64(b, v->u.u64);
		break;
	case OML_DOUBLE:
		txt_double(b, v->u.d);
		break;
	case OML_STRING:
		if (!v->null)
			txt_string(b, v->u.s.p, v->u.s.len);
		break;
	case OML_BLOB:
		if (!v->null)
			txt_blob(b, v->u.s.p, v->u.s.len);
		break;
	case OML_BOOL:
		buf_addc(b, v->u.b ? 'T' : 'F');
		break;
	default:
		txt_vector(b, v);
		break;
	}
}

void
enc_text_row(struct buf *b, int stream, int32_t seq, double ts,
    const struct oml_value *v, int n)
{
	int	 i;

	txt_double(b, ts);
	buf_addc(b, '\t');
	txt_i64(b, stream);
	buf_addc(b, '\t');
	txt_i64(b, seq);
	for (i = 0; i < n; i++) {
		buf_addc(b, '\t');
		txt_value(b, &v[i]);
	}
	buf_addc(b, '\n');
}
