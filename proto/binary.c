/*
 * The binary data phase (§6), framed the recommended way (§6.5): a
 * packet is the sync pair, a type, a length, and exactly `length` more
 * bytes.  Whatever goes wrong inside a complete packet costs that packet
 * and nothing else, and no byte outside buf[0..len) or outside the
 * packet's own slice is ever read.
 */
#include <math.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

/* Wire type codes (§6.2). */
enum {
	T_LONG = 0x01, T_DOUBLE, T_DOUBLE_NAN, T_STRING, T_INT32, T_UINT32,
	T_INT64, T_UINT64, T_BLOB, T_GUID, T_BOOL_FALSE, T_BOOL_TRUE,
	T_VECTOR, T_BOOL, T_DOUBLE64
};

#define SYNC		0xAA
#define PKT_SHORT	0x01
#define PKT_LONG	0x02
#define PKT_MINBODY	13	/* count, stream, seq-no (5), timestamp (6) */

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/*
 * mant * 2^(exp - 30).  The power of two, 2^-158 to 2^97, is a normal
 * double built from its bits, and a 32-bit mantissa times it is exact, so
 * this is ldexp's result without the library call.
 */
double
bin_double_decode(int32_t mant, int8_t exp)
{
	uint64_t	 bits = (uint64_t)(exp - 30 + 1023) << 52;
	double		 scale;

	memcpy(&scale, &bits, sizeof(scale));
	return (double)mant * scale;
}

/* DOUBLE_T payload (5 bytes). */
static double
double_payload(const uint8_t *p)
{
	return bin_double_decode((int32_t)be32(p), (int8_t)p[4]);
}

/*
 * Bytes of garbage before the first sync pair; a trailing lone 0xAA is
 * kept, as it may be the first half of one.  In a run of 0xAA the last
 * pair is the sync, since a type byte is never 0xAA.
 */
static size_t
garbage(const uint8_t *buf, size_t len)
{
	const uint8_t	*p = buf, *end = buf + len;

	while ((p = memchr(p, SYNC, (size_t)(end - p))) != NULL) {
		if (p + 1 == end)
			return (size_t)(p - buf);
		if (p[1] == SYNC && (p + 2 == end || p[2] != SYNC))
			return (size_t)(p - buf);
		p++;
	}
	return len;
}

/* count, stream, seq-no, timestamp of a complete packet body. */
static enum bin_status
bin_header(const uint8_t *body, size_t blen, struct bin_packet *pkt,
    const char **why)
{
	if (blen < PKT_MINBODY) {
		*why = "packet too short for its header";
		return BIN_BAD;
	}
	pkt->count = body[0];
	pkt->stream = body[1];
	if (pkt->count == 0) {
		*why = "packet with zero values";
		return BIN_BAD;
	}
	if (body[2] != T_INT32 && body[2] != T_LONG) {
		*why = "seq-no is not an int32";
		return BIN_BAD;
	}
	pkt->seq = (int32_t)be32(body + 3);
	if (body[7] == T_DOUBLE)
		pkt->ts = double_payload(body + 8);
	else if (body[7] == T_DOUBLE_NAN)
		pkt->ts = NAN;
	else {
		*why = "timestamp is not a double";
		return BIN_BAD;
	}
	pkt->values = body + PKT_MINBODY;
	pkt->vlen = blen - PKT_MINBODY;
	return BIN_PACKET;
}

enum bin_status
bin_next(const uint8_t *buf, size_t len, size_t maxpkt,
    struct bin_packet *pkt, size_t *used, const char **why)
{
	size_t	 skip, hlen, blen;

	*used = 0;
	*why = NULL;
	if ((skip = garbage(buf, len)) > 0) {
		*used = skip;
		*why = "garbage before sync";
		return BIN_SKIP;
	}
	if (len < 3)
		return BIN_NEED;
	if (buf[2] != PKT_SHORT && buf[2] != PKT_LONG) {
		*used = 2;
		*why = "unknown packet type";
		return BIN_SKIP;
	}
	hlen = buf[2] == PKT_SHORT ? 5 : 7;
	if (len < hlen)
		return BIN_NEED;
	blen = hlen == 5 ? be16(buf + 3) : be32(buf + 3);
	if (blen > maxpkt || blen > SIZE_MAX - hlen) {
		*used = 2;
		*why = "packet longer than the limit";
		return BIN_TOOBIG;
	}
	if (len - hlen < blen)
		return BIN_NEED;
	*used = hlen + blen;
	return bin_header(buf + hlen, blen, pkt, why);
}

size_t
bin_need(const uint8_t *buf, size_t len)
{
	size_t	 hlen;

	if (len < 5 || buf[0] != SYNC || buf[1] != SYNC ||
	    (buf[2] != PKT_SHORT && buf[2] != PKT_LONG))
		return 0;
	hlen = buf[2] == PKT_SHORT ? 5 : 7;
	if (len < hlen)
		return 0;
	return hlen + (hlen == 5 ? be16(buf + 3) : be32(buf + 3));
}

/* A bounded reader over one packet's values. */
struct rd {
	const uint8_t	*p;
	size_t		 left;
};

static const uint8_t *
take(struct rd *r, size_t n)
{
	const uint8_t	*p = r->p;

	if (r->left < n)
		return NULL;
	r->p += n;
	r->left -= n;
	return p;
}

/* Element size and wire code of each vector type (§6.4). */
static int
vec_wire(enum oml_type t, uint8_t *code, size_t *size)
{
	static const struct {
		enum oml_type	 t;
		uint8_t		 code;
		uint8_t		 size;
	} tab[] = {
		{ OML_VINT32, T_INT32, 4 }, { OML_VUINT32, T_UINT32, 4 },
		{ OML_VINT64, T_INT64, 8 }, { OML_VUINT64, T_UINT64, 8 },
		{ OML_VDOUBLE, T_DOUBLE64, 8 }, { OML_VBOOL, T_BOOL, 1 },
	};
	size_t	 i;

	for (i = 0; i < nitems(tab); i++) {
		if (tab[i].t == t) {
			*code = tab[i].code;
			*size = tab[i].size;
			return 0;
		}
	}
	return -1;
}

static void
vec_render_elem(struct buf *b, enum oml_type t, const uint8_t *e)
{
	uint64_t	 u;
	double		 d;

	switch (t) {
	case OML_VINT32:
		vr_i64(b, (int32_t)be32(e));
		break;
	case OML_VUINT32:
		vr_u64(b, be32(e));
		break;
	case OML_VINT64:
		vr_i64(b, (int64_t)be64(e));
		break;
	case OML_VUINT64:
		vr_u64(b, be64(e));
		break;
	case OML_VDOUBLE:
		u = be64(e);
		memcpy(&d, &u, sizeof(d));
		vr_double(b, d);
		break;
	default:
		vr_bool(b, e[0] == T_BOOL_TRUE);
		break;
	}
}

/* After the VECTOR_T code: element type, count, elements. */
static int
bin_vector(struct rd *r, struct oml_value *v, struct buf *scratch,
    const char **why)
{
	const uint8_t	*h, *e;
	uint8_t		 code;
	size_t		 size, before = scratch->len;
	uint16_t	 n, i;

	if ((h = take(r, 3)) == NULL) {
		*why = "truncated vector";
		return -1;
	}
	if (vec_wire(v->type, &code, &size) == -1 || h[0] != code) {
		*why = "vector element type mismatch";
		return -1;
	}
	n = be16(h + 1);
	if ((e = take(r, (size_t)n * size)) == NULL) {
		*why = "truncated vector";
		return -1;
	}
	for (i = 0; i < n; i++) {
		vr_elem(scratch, i);
		vec_render_elem(scratch, v->type, e + (size_t)i * size);
	}
	vr_end(scratch, n);
	v->u.s.len = scratch->len - before;
	return 0;
}

/* The payload size of a fixed-size scalar code, or -1. */
static int
fixed_size(uint8_t code)
{
	switch (code) {
	case T_LONG: case T_INT32: case T_UINT32:
		return 4;
	case T_DOUBLE: case T_DOUBLE_NAN:
		return 5;
	case T_INT64: case T_UINT64: case T_GUID:
		return 8;
	case T_BOOL_FALSE: case T_BOOL_TRUE:
		return 0;
	default:
		return -1;
	}
}

/* Does wire code c carry a value of column type t?  (§6.2) */
static int
code_fits(enum oml_type t, uint8_t c)
{
	switch (t) {
	case OML_INT32:
		return c == T_INT32 || c == T_LONG;
	case OML_UINT32:
		return c == T_UINT32;
	case OML_INT64:
		return c == T_INT64;
	case OML_UINT64:
		return c == T_UINT64;
	case OML_DOUBLE:
		return c == T_DOUBLE || c == T_DOUBLE_NAN;
	case OML_STRING:
		return c == T_STRING;
	case OML_BLOB:
		return c == T_BLOB;
	case OML_GUID:
		return c == T_GUID;
	case OML_BOOL:
		return c == T_BOOL_TRUE || c == T_BOOL_FALSE;
	default:
		return c == T_VECTOR;
	}
}

static void
set_fixed(struct oml_value *v, uint8_t code, const uint8_t *p)
{
	switch (code) {
	case T_LONG: case T_INT32:
		v->u.i32 = (int32_t)be32(p);
		break;
	case T_UINT32:
		v->u.u32 = be32(p);
		break;
	case T_INT64:
		v->u.i64 = (int64_t)be64(p);
		break;
	case T_UINT64: case T_GUID:
		v->u.u64 = be64(p);
		break;
	case T_DOUBLE:
		v->u.d = double_payload(p);
		break;
	case T_DOUBLE_NAN:
		v->u.d = NAN;
		break;
	default:
		v->u.b = code == T_BOOL_TRUE;
		break;
	}
}

/* A length-prefixed string (1-byte length) or blob (4-byte length). */
static int
bin_bytes(struct rd *r, uint8_t code, struct oml_value *v, const char **why)
{
	const uint8_t	*h, *p;
	size_t		 n;

	if ((h = take(r, code == T_STRING ? 1 : 4)) == NULL)
		goto trunc;
	n = code == T_STRING ? h[0] : be32(h);
	if ((p = take(r, n)) == NULL)
		goto trunc;
	v->u.s.p = (const char *)p;
	v->u.s.len = n;
	return 0;
trunc:
	*why = code == T_STRING ? "truncated string" : "truncated blob";
	return -1;
}

static int
bin_value(struct rd *r, struct oml_value *v, struct buf *scratch,
    const char **why)
{
	const uint8_t	*c, *p;
	int		 size;

	if ((c = take(r, 1)) == NULL) {
		*why = "fewer values than the count";
		return -1;
	}
	if (!code_fits(v->type, c[0])) {
		*why = "type mismatch";
		return -1;
	}
	if (c[0] == T_STRING || c[0] == T_BLOB)
		return bin_bytes(r, c[0], v, why);
	if (c[0] == T_VECTOR)
		return bin_vector(r, v, scratch, why);
	size = fixed_size(c[0]);
	if ((p = take(r, (size_t)size)) == NULL) {
		*why = "truncated value";
		return -1;
	}
	set_fixed(v, c[0], p);
	return 0;
}

int
bin_values(const struct bin_packet *pkt, const enum oml_type *types, int n,
    struct oml_value *out, struct buf *scratch, size_t maxout,
    const char **why)
{
	struct rd	 r = { pkt->values, pkt->vlen };
	size_t		 bytes = 0;
	int		 i;

	if (pkt->count != n) {
		*why = "value count differs from the schema";
		return -1;
	}
	scratch->len = 0;
	for (i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].type = types[i];
		if (bin_value(&r, &out[i], scratch, why) == -1)
			return -1;
		if (stored_over(&out[i], &bytes, scratch, maxout, why))
			return -1;
	}
	if (r.left != 0) {
		*why = "bytes left over after the values";
		return -1;
	}
	vec_fixup(out, n, scratch);
	return 0;
}
