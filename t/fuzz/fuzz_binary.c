/*
 * libFuzzer harness: the binary data phase.  The input is a whole binary
 * connection: a header section whose schema lines give the streams their
 * column types, then bytes framed by bin_next exactly as the child loops
 * over its buffer (skipping garbage, resynchronising past oversized
 * lengths) and decoded by bin_values against the stream's types; stream
 * 0 ". schema" tuples declare more streams.  Every status must make
 * progress and stay inside the buffer; a packet must frame the same way
 * when only a prefix of it has arrived (BIN_NEED, never a different
 * answer); a row that decodes is re-encoded with enc_bin_row (short and
 * long packets) and must decode to the same values.
 */
#include "t/fuzz/fuzz.h"

#define MAXPKT	(1024 * 1024)

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct buf	 scratch, scratch2, enc;

static void
roundtrip(const struct bin_packet *p, const struct oml_value *v,
    const enum oml_type *types, int force_long)
{
	struct bin_packet	 p2;
	struct oml_value	*v2;
	const char		*why;
	size_t			 used;

	if (fz_has_vector(types, p->count))
		return;
	enc.len = 0;
	enc_bin_row(&enc, p->stream, p->seq, 1.5, v, p->count, force_long);
	CHECK(bin_next((const uint8_t *)enc.p, enc.len, SIZE_MAX, &p2, &used,
	    &why) == BIN_PACKET);
	CHECK(used == enc.len);
	CHECK(p2.stream == p->stream && p2.seq == p->seq &&
	    p2.count == p->count && p2.ts == 1.5);
	v2 = calloc((size_t)p->count, sizeof(*v2));
	CHECK(v2 != NULL);
	CHECK(bin_values(&p2, types, p2.count, v2, &scratch2, 0, &why) == 0);
	fz_same_values(v, v2, p->count, 1);
	free(v2);
}

/* The same packet, when only part of it is buffered, is BIN_NEED. */
static void
prefix(const uint8_t *p, size_t used, size_t cut)
{
	struct bin_packet	 pkt;
	const char		*why;
	uint8_t			*copy;
	size_t			 u;

	if (cut == 0 || cut >= used)
		return;
	copy = malloc(cut);
	CHECK(copy != NULL);
	memcpy(copy, p, cut);
	CHECK(bin_next(copy, cut, MAXPKT, &pkt, &u, &why) == BIN_NEED);
	CHECK(u == 0);
	free(copy);
}

static void
packet(struct fz_conn *c, const struct bin_packet *p, const uint8_t *lo,
    const uint8_t *hi)
{
	struct oml_value	 v[256];
	struct fz_stream	*st;
	const char		*why;

	CHECK(p->count >= 1 && p->count <= 255);
	CHECK(p->stream >= 0 && p->stream <= 255);
	CHECK(p->values >= lo && p->values + p->vlen <= hi);
	if ((st = fz_stream(c, p->stream)) == NULL ||
	    st->s.nfields != p->count)
		return;
	if (bin_values(p, st->types, p->count, v, &scratch, 0, &why) == -1) {
		CHECK(why != NULL);
		return;
	}
	fz_check_values(v, p->count, (const char *)p->values,
	    (const char *)p->values + p->vlen, &scratch);
	if (p->stream == 0)
		fz_metadata(c, st, v);
	else {
		roundtrip(p, v, st->types, 0);
		roundtrip(p, v, st->types, 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_conn		 c;
	struct bin_packet	 pkt;
	enum bin_status		 r;
	const char		*why;
	uint8_t			*buf;
	size_t			 off, used, len;

	memset(&c, 0, sizeof(c));
	off = fz_headers(&c, (const char *)data, size);
	len = size - off;
	buf = malloc(len ? len : 1);
	CHECK(buf != NULL);
	memcpy(buf, data + off, len);
	off = 0;
	while (off < len) {
		why = NULL;
		r = bin_next(buf + off, len - off, MAXPKT, &pkt, &used, &why);
		if (r == BIN_NEED) {
			CHECK(used == 0);
			break;
		}
		CHECK(used > 0 && used <= len - off);
		CHECK(r == BIN_PACKET || why != NULL);
		if (r == BIN_TOOBIG)
			CHECK(used == 2);
		if (r == BIN_PACKET) {
			prefix(buf + off, used, used / 2);
			prefix(buf + off, used, used - 1);
			packet(&c, &pkt, buf + off, buf + off + used);
		}
		off += used;
	}
	fz_conn_free(&c);
	free(buf);
	return 0;
}
