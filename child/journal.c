/*
 * The redo journal of the SQLite backend (see journal.h).  Each entry is
 * a fixed record followed by its strings, the row's value array and the
 * bytes of its string, blob and vector values, all in one growing
 * buffer.  Only sizes are stored, never pointers into the buffer, since
 * it moves as it grows; journal_next() rebuilds the pointers.  Each
 * entry's size is a multiple of 8, so that a row's value array can be
 * read where it lies (journal_row()).  A row whose rendered vectors are
 * large keeps them in the decoder's own buffer, taken over rather than
 * copied (a [bool] vector's text is 7 times its packet), and freed when
 * the journal is cleared.
 */
#include <stdlib.h>
#include <string.h>

#include "child/journal.h"

/*
 * An entry's fixed part.  Kept small: the writer thread reads every
 * entry the main thread wrote, from the other core's cache.  An entry
 * with vectors taken over has a struct jext next, then (as for any row)
 * its values as struct jval, then the bytes of its strings and blobs.
 */
struct jrec {
	uint64_t	 size;		/* of the whole entry */
	uint8_t		 kind;		/* enum jkind */
	uint8_t		 dropped;
	uint8_t		 ext;		/* a struct jext follows */
	uint8_t		 pad;
	uint32_t	 n;		/* J_ROW: values; else a's length */
	struct table	*t;
	union {
		struct {
			int32_t		 sender;
			int32_t		 seq;
			double		 ts_client;
			double		 ts_server;
		} r;
		struct {
			int		 id;
			uint32_t	 blen;
		} o;
	} u;
};

struct jext {
	char		*p;		/* the row's vectors, taken over */
	size_t		 len;
};

/* A value as journaled: a string's pointer is rebuilt when it is read. */
struct jval {
	union {
		int32_t		 i32;
		uint32_t	 u32;
		int64_t		 i64;
		uint64_t	 u64;
		double		 d;
		int		 b;
		uint64_t	 len;	/* strings, blobs, vectors */
	} u;
	uint32_t	 type;
	uint32_t	 null;
};

#define ADOPT_MIN	(64 * 1024)	/* vector bytes taken over, not copied */
#ifndef WRITE_AHEAD
#define WRITE_AHEAD	1024		/* bytes a row's journaling prefetches */
#endif
#ifndef SCAN_AHEAD
#define SCAN_AHEAD	2048		/* bytes journal_scan() prefetches */
#endif

_Static_assert(sizeof(struct jrec) % 8 == 0, "rows' values must be aligned");
_Static_assert(sizeof(struct jext) % 8 == 0, "rows' values must be aligned");
_Static_assert(sizeof(struct jval) == 16, "a journaled value is 16 bytes");

/* The types whose values have bytes of their own, and the vectors. */
#define VECTORS		((1u << OML_VINT32) | (1u << OML_VUINT32) | \
			    (1u << OML_VINT64) | (1u << OML_VUINT64) | \
			    (1u << OML_VDOUBLE) | (1u << OML_VBOOL))
#define WITH_BYTES	((1u << OML_STRING) | (1u << OML_BLOB) | VECTORS)

_Static_assert(OML_TYPE_MAX <= 32, "a type is a bit of a word");

static int
type_has_bytes(unsigned type)
{
	return type < OML_TYPE_MAX && (WITH_BYTES >> type & 1);
}

static int
type_is_vector(unsigned type)
{
	return type < OML_TYPE_MAX && (VECTORS >> type & 1);
}

static int
has_bytes(const struct oml_value *v)
{
	return type_has_bytes(v->type);
}

/*
 * The decoder's buffer, if the row's vectors fill it from its start in
 * column order (as the decoders render them) and are worth taking over.
 */
static struct buf *
adoptable(const struct row *row)
{
	const struct buf	*b = row->bytes;
	size_t			 off = 0;
	int			 i;

	if (b == NULL || b->len < ADOPT_MIN)
		return NULL;
	for (i = 0; i < row->n; i++) {
		if (!oml_type_is_vector(row->v[i].type))
			continue;
		if (row->v[i].u.s.len > 0 && row->v[i].u.s.p != b->p + off)
			return NULL;
		off += row->v[i].u.s.len;
	}
	return off == b->len ? row->bytes : NULL;
}

/* Bytes of value v kept inline in the entry. */
static size_t
inline_len(const struct oml_value *v, int adopted)
{
	if (!has_bytes(v) || (adopted && type_is_vector(v->type)))
		return 0;
	return v->u.s.len;
}

static struct jext *
rec_ext(const struct jrec *r)
{
	return r->ext ? (struct jext *)(r + 1) : NULL;
}

static struct jval *
rec_vals(const struct jrec *r)
{
	return (struct jval *)((char *)(r + 1) +
	    (r->ext ? sizeof(struct jext) : 0));
}

static void
ext_free(struct journal *j, struct jrec *r)
{
	struct jext	*x = rec_ext(r);

	if (x == NULL || x->p == NULL)
		return;
	free(x->p);
	x->p = NULL;
	j->next--;
	j->extbytes -= x->len;
}

static char *
put(char *p, const void *src, size_t len)
{
	if (len > 0)
		memcpy(p, src, len);
	return p + len;
}

/* journal_add() for a row: the path every row takes, kept short. */
void
journal_row_add(struct journal *j, struct table *t, const struct row *row)
{
	const struct oml_value	*v = row->v;
	struct buf		*ext = adoptable(row);
	struct jrec		*r;
	struct jval		*jv;
	struct jext		*x;
	size_t			 size;
	char			*p;
	int			 i, n = row->n;

	size = sizeof(*r) + (size_t)n * sizeof(*jv) +
	    (ext != NULL ? sizeof(*x) : 0);
	for (i = 0; i < n; i++)
		size += inline_len(&v[i], ext != NULL);
	size = (size + 7) & ~(size_t)7;
	buf_reserve(&j->b, size);
	r = (struct jrec *)(j->b.p + j->b.len);
#if WRITE_AHEAD > 0
	/*
	 * The journal's memory was last read by the writer thread, on the
	 * other core: ask for it, to be written, well ahead.
	 */
	__builtin_prefetch((const char *)r + WRITE_AHEAD, 1);
#endif
	r->size = size;
	r->kind = J_ROW;
	r->dropped = 0;
	r->ext = ext != NULL;
	r->pad = 0;
	r->n = (uint32_t)n;
	r->t = t;
	r->u.r.sender = row->sender;
	r->u.r.seq = row->seq;
	r->u.r.ts_client = row->ts_client;
	r->u.r.ts_server = row->ts_server;
	jv = rec_vals(r);
	p = (char *)(jv + n);
	for (i = 0; i < n; i++) {
		jv[i].type = (uint32_t)v[i].type;
		jv[i].null = (uint32_t)v[i].null;
		if (!has_bytes(&v[i])) {
			memcpy(&jv[i].u, &v[i].u, sizeof(jv[i].u));
			continue;
		}
		jv[i].u.len = v[i].u.s.len;
		p = put(p, v[i].u.s.p, inline_len(&v[i], ext != NULL));
	}
	if (ext != NULL) {
		/* the values point into it: it stays where it is */
		x = rec_ext(r);
		x->p = ext->p;
		x->len = ext->len;
		buf_init(ext);
		j->next++;
		j->extbytes += x->len;
	}
	j->last = j->b.len;
	j->b.len += size;
	j->rows++;
}

void
journal_add(struct journal *j, const struct jentry *e)
{
	struct jrec	 r;
	size_t		 size, alen, blen;
	char		*p;

	if (e->kind == J_ROW) {
		journal_row_add(j, e->t, &e->row);
		return;
	}
	memset(&r, 0, sizeof(r));
	alen = e->a != NULL ? strlen(e->a) + 1 : 0;
	blen = e->b != NULL ? strlen(e->b) + 1 : 0;
	if (alen > UINT32_MAX || blen > UINT32_MAX)
		fatalx("journal: a string of %zu bytes", alen + blen);
	r.kind = e->kind;
	r.t = e->t;
	r.u.o.id = e->id;
	r.n = (uint32_t)alen;
	r.u.o.blen = (uint32_t)blen;
	size = (sizeof(r) + alen + blen + 7) & ~(size_t)7;
	r.size = size;
	buf_reserve(&j->b, size);
	p = j->b.p + j->b.len;
	p = put(p, &r, sizeof(r));
	p = put(p, e->a, alen);
	put(p, e->b, blen);
	j->last = j->b.len;
	j->b.len += size;
}

/* Memory the journal holds: its entries and the vectors taken over. */
size_t
journal_bytes(const struct journal *j)
{
	return j->b.len + j->extbytes;
}

void
journal_undo(struct journal *j)
{
	struct jrec	*r;

	if (j->b.len == 0)
		return;
	r = (struct jrec *)(j->b.p + j->last);
	ext_free(j, r);
	j->b.len = j->last;
	if (r->kind == J_ROW && !r->dropped)
		j->rows--;
	/* the one before is not known; undo is for the entry just added */
	j->last = 0;
}

void
journal_drop(struct journal *j, size_t off)
{
	struct jrec	*r = (struct jrec *)(j->b.p + off);

	if (r->dropped)
		return;
	r->dropped = 1;
	if (r->kind == J_ROW)
		j->rows--;
}

/* Free the vectors every entry took over. */
static void
ext_free_all(struct journal *j)
{
	struct jrec	*r;
	size_t		 off;

	for (off = 0; j->next > 0 && off < j->b.len; off += r->size) {
		r = (struct jrec *)(j->b.p + off);
		ext_free(j, r);
	}
}

void
journal_clear(struct journal *j)
{
	ext_free_all(j);
	j->b.len = 0;
	j->last = 0;
	j->rows = 0;
	/* the next batch is likely as big: keep the memory, unless one
	 * huge row (a large blob) inflated it */
	if (j->b.cap > 16 * 1024 * 1024)
		buf_free(&j->b);
}

void
journal_free(struct journal *j)
{
	ext_free_all(j);
	buf_free(&j->b);
	free(j->vals);
	memset(j, 0, sizeof(*j));
}

/*
 * Row r's values into v (room for r->n), their bytes' pointers rebuilt:
 * into the entry, or into the vectors it took over.
 */
static void
rec_values(const struct jrec *r, struct oml_value *v)
{
	const struct jval	*jv = rec_vals(r);
	const struct jext	*x = rec_ext(r);
	const char		*p = (const char *)(jv + r->n);
	const char		*xp = x != NULL ? x->p : NULL;
	uint32_t		 i;

	for (i = 0; i < r->n; i++) {
		v[i].type = (enum oml_type)jv[i].type;
		v[i].null = (int)jv[i].null;
		if (!type_has_bytes(jv[i].type)) {
			memcpy(&v[i].u, &jv[i].u, sizeof(jv[i].u));
			continue;
		}
		v[i].u.s.len = (size_t)jv[i].u.len;
		if (xp != NULL && type_is_vector(jv[i].type)) {
			v[i].u.s.p = v[i].u.s.len > 0 ? xp : "";
			xp += v[i].u.s.len;
			continue;
		}
		v[i].u.s.p = v[i].u.s.len > 0 ? p : "";
		p += v[i].u.s.len;
	}
}

static void
vals_room(struct journal *j, uint32_t n)
{
	if ((int)n > j->nvals) {
		j->vals = xreallocarray(j->vals, n, sizeof(*j->vals));
		j->nvals = (int)n;
	}
}

static void
journal_get(struct journal *j, size_t off, struct jentry *e)
{
	const struct jrec	*r = (const struct jrec *)(j->b.p + off);
	const char		*p = (const char *)(r + 1);

	memset(e, 0, sizeof(*e));
	e->at = off;
	e->kind = r->kind;
	e->t = r->t;
	if (r->kind != J_ROW) {
		e->id = r->u.o.id;
		e->a = r->n ? p : NULL;
		p += r->n;
		e->b = r->u.o.blen ? p : NULL;
		return;
	}
	vals_room(j, r->n);
	rec_values(r, j->vals);
	e->row.sender = r->u.r.sender;
	e->row.seq = r->u.r.seq;
	e->row.ts_client = r->u.r.ts_client;
	e->row.ts_server = r->u.r.ts_server;
	e->row.n = (int)r->n;
	e->row.v = j->vals;
}

void
journal_row(struct journal *j, size_t off, struct row *row)
{
	const struct jrec	*r = (const struct jrec *)(j->b.p + off);

	vals_room(j, r->n);
	rec_values(r, j->vals);
	row->sender = r->u.r.sender;
	row->seq = r->u.r.seq;
	row->ts_client = r->u.r.ts_client;
	row->ts_server = r->u.r.ts_server;
	row->n = (int)r->n;
	row->v = j->vals;
}

int
journal_next(struct journal *j, size_t *off, struct jentry *e)
{
	const struct jrec	*r;

	for (; *off < j->b.len; *off += r->size) {
		r = (const struct jrec *)(j->b.p + *off);
		if (!r->dropped) {
			journal_get(j, *off, e);
			*off += r->size;
			return 1;
		}
	}
	return 0;
}

int
journal_scan(const struct journal *j, size_t *off, size_t *at,
    enum jkind *kind, struct table **t)
{
	const struct jrec	*r;

	for (; *off < j->b.len; *off += r->size) {
		r = (const struct jrec *)(j->b.p + *off);
#if SCAN_AHEAD > 0
		/*
		 * The writer thread reads a journal the main thread wrote,
		 * from the other core's cache: ask for it well ahead.
		 */
		__builtin_prefetch((const char *)r + SCAN_AHEAD);
#endif
		if (!r->dropped) {
			*at = *off;
			*kind = r->kind;
			*t = r->t;
			*off += r->size;
			return 1;
		}
	}
	return 0;
}
