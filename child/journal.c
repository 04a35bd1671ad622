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

struct jrec {
	size_t		 size;		/* of the whole entry */
	enum jkind	 kind;
	struct table	*t;
	int		 id;
	int		 dropped;
	int		 n;		/* row values */
	size_t		 alen;		/* with their NULs */
	size_t		 blen;
	int		 sender;
	int32_t		 seq;
	double		 ts_client;
	double		 ts_server;
	char		*ext;		/* the row's vectors, taken over */
	size_t		 extlen;
};

#define ADOPT_MIN	(64 * 1024)	/* vector bytes taken over, not copied */
#ifndef SCAN_AHEAD
#define SCAN_AHEAD	2048		/* bytes journal_scan() prefetches */
#endif

_Static_assert(sizeof(struct jrec) % 8 == 0, "rows' values must be aligned");

static int
has_bytes(const struct oml_value *v)
{
	return v->type == OML_STRING || v->type == OML_BLOB ||
	    oml_type_is_vector(v->type);
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
	if (!has_bytes(v) || (adopted && oml_type_is_vector(v->type)))
		return 0;
	return v->u.s.len;
}

static void
ext_free(struct journal *j, struct jrec *r)
{
	if (r->ext == NULL)
		return;
	free(r->ext);
	r->ext = NULL;
	j->next--;
	j->extbytes -= r->extlen;
}

static char *
put(char *p, const void *src, size_t len)
{
	if (len > 0)
		memcpy(p, src, len);
	return p + len;
}

/* journal_add() for a row: the path every row takes, kept short. */
static void
add_row(struct journal *j, const struct jentry *e)
{
	const struct oml_value	*v = e->row.v;
	struct buf		*ext = adoptable(&e->row);
	struct jrec		*r;
	size_t			 size, vsize = (size_t)e->row.n * sizeof(*v);
	char			*p;
	int			 i, n = e->row.n;

	size = sizeof(*r) + vsize;
	for (i = 0; i < n; i++)
		size += inline_len(&v[i], ext != NULL);
	size = (size + 7) & ~(size_t)7;
	buf_reserve(&j->b, size);
	r = (struct jrec *)(j->b.p + j->b.len);
	memset(r, 0, sizeof(*r));
	r->size = size;
	r->kind = J_ROW;
	r->t = e->t;
	r->n = n;
	r->sender = e->row.sender;
	r->seq = e->row.seq;
	r->ts_client = e->row.ts_client;
	r->ts_server = e->row.ts_server;
	p = put((char *)(r + 1), v, vsize);
	for (i = 0; i < n; i++)
		p = put(p, v[i].u.s.p, inline_len(&v[i], ext != NULL));
	if (ext != NULL) {
		/* the values point into it: it stays where it is */
		r->ext = ext->p;
		r->extlen = ext->len;
		buf_init(ext);
		j->next++;
		j->extbytes += r->extlen;
	}
	j->last = j->b.len;
	j->b.len += size;
	j->rows++;
}

void
journal_add(struct journal *j, const struct jentry *e)
{
	struct jrec	 r;
	size_t		 size;
	char		*p;

	if (e->kind == J_ROW) {
		add_row(j, e);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.kind = e->kind;
	r.t = e->t;
	r.id = e->id;
	r.alen = e->a != NULL ? strlen(e->a) + 1 : 0;
	r.blen = e->b != NULL ? strlen(e->b) + 1 : 0;
	size = (sizeof(r) + r.alen + r.blen + 7) & ~(size_t)7;
	r.size = size;
	buf_reserve(&j->b, size);
	p = j->b.p + j->b.len;
	p = put(p, &r, sizeof(r));
	p = put(p, e->a, r.alen);
	put(p, e->b, r.blen);
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
	struct jrec	 r;

	if (j->b.len == 0)
		return;
	memcpy(&r, j->b.p + j->last, sizeof(r));
	ext_free(j, &r);
	j->b.len = j->last;
	if (r.kind == J_ROW && !r.dropped)
		j->rows--;
	/* the one before is not known; undo is for the entry just added */
	j->last = 0;
}

void
journal_drop(struct journal *j, size_t off)
{
	struct jrec	 r;

	memcpy(&r, j->b.p + off, sizeof(r));
	if (r.dropped)
		return;
	r.dropped = 1;
	memcpy(j->b.p + off, &r, sizeof(r));
	if (r.kind == J_ROW)
		j->rows--;
}

/* Free the vectors every entry took over. */
static void
ext_free_all(struct journal *j)
{
	struct jrec	 r;
	size_t		 off;

	for (off = 0; j->next > 0 && off < j->b.len; off += r.size) {
		memcpy(&r, j->b.p + off, sizeof(r));
		ext_free(j, &r);
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

static void
journal_get(struct journal *j, size_t off, struct jentry *e)
{
	struct jrec	 r;
	const char	*p, *x;
	int		 i;

	memcpy(&r, j->b.p + off, sizeof(r));
	p = j->b.p + off + sizeof(r);
	x = r.ext;
	memset(e, 0, sizeof(*e));
	e->at = off;
	e->kind = r.kind;
	e->t = r.t;
	e->id = r.id;
	e->a = r.alen ? p : NULL;
	p += r.alen;
	e->b = r.blen ? p : NULL;
	p += r.blen;
	if (r.n > j->nvals) {
		j->vals = xreallocarray(j->vals, (size_t)r.n,
		    sizeof(*j->vals));
		j->nvals = r.n;
	}
	if (r.n > 0) {
		memcpy(j->vals, p, (size_t)r.n * sizeof(*j->vals));
		p += (size_t)r.n * sizeof(*j->vals);
	}
	for (i = 0; i < r.n; i++) {
		if (!has_bytes(&j->vals[i]))
			continue;
		if (x != NULL && oml_type_is_vector(j->vals[i].type)) {
			j->vals[i].u.s.p = j->vals[i].u.s.len > 0 ? x : "";
			x += j->vals[i].u.s.len;
			continue;
		}
		j->vals[i].u.s.p = j->vals[i].u.s.len > 0 ? p : "";
		p += j->vals[i].u.s.len;
	}
	e->row.sender = r.sender;
	e->row.seq = r.seq;
	e->row.ts_client = r.ts_client;
	e->row.ts_server = r.ts_server;
	e->row.n = r.n;
	e->row.v = j->vals;
}

void
journal_row(struct journal *j, size_t off, struct row *row)
{
	const struct jrec	*r = (const struct jrec *)(j->b.p + off);
	struct oml_value	*v = (struct oml_value *)(r + 1);
	const char		*p = (const char *)(v + r->n), *x = r->ext;
	int			 i;

	for (i = 0; i < r->n; i++) {
		if (!has_bytes(&v[i]))
			continue;
		if (x != NULL && oml_type_is_vector(v[i].type)) {
			v[i].u.s.p = v[i].u.s.len > 0 ? x : "";
			x += v[i].u.s.len;
			continue;
		}
		v[i].u.s.p = v[i].u.s.len > 0 ? p : "";
		p += v[i].u.s.len;
	}
	row->sender = r->sender;
	row->seq = r->seq;
	row->ts_client = r->ts_client;
	row->ts_server = r->ts_server;
	row->n = r->n;
	row->v = v;
}

int
journal_next(struct journal *j, size_t *off, struct jentry *e)
{
	struct jrec	 r;

	for (; *off < j->b.len; *off += r.size) {
		memcpy(&r, j->b.p + *off, sizeof(r));
		if (!r.dropped) {
			journal_get(j, *off, e);
			*off += r.size;
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
		/*
		 * The writer thread reads a journal the main thread wrote,
		 * from the other core's cache: ask for it well ahead.
		 */
		__builtin_prefetch((const char *)r + SCAN_AHEAD);
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
