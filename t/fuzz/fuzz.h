/*
 * Shared by the libFuzzer harnesses in t/fuzz/: a stand-in for the parts
 * of a child connection that the decoders need (the header section read
 * line by line, schemas mapped to stream indices, ". schema" metadata
 * tuples declaring more), and a check that aborts so that libFuzzer
 * records the input.  Everything here is test code; the server's own
 * logic stays in proto/.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#define FZ_MAXFIELDS	1024
#define FZ_MAXSTREAMS	64

#define CHECK(c) do {							\
	if (!(c)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #c);					\
		abort();						\
	}								\
} while (0)

struct fz_stream {
	long			 index;
	struct oml_schema	 s;
	enum oml_type		*types;
};

struct fz_conn {
	struct fz_stream	 st[FZ_MAXSTREAMS];
	int			 n;
	int			 binary;
	int			 ended;		/* blank line seen */
};

static inline struct fz_stream *
fz_stream(struct fz_conn *c, long index)
{
	int	 i;

	for (i = 0; i < c->n; i++)
		if (c->st[i].index == index)
			return &c->st[i];
	return NULL;
}

/* A schema declaration, as the child takes it from either place. */
static inline void
fz_declare(struct fz_conn *c, const char *text, size_t len)
{
	struct oml_schema	 s, copy;
	struct fz_stream	*st;
	char			 err[160], *f;
	int			 i;

	memset(err, 0, sizeof(err));
	if (schema_parse(text, len, FZ_MAXFIELDS, &s, err, sizeof(err))
	    == -1) {
		CHECK(s.nfields == 0 && s.fields == NULL && s.name == NULL);
		CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		return;
	}
	CHECK(s.index >= 0 && s.index <= SCHEMA_MAX_INDEX);
	CHECK(s.nfields >= 1 && s.nfields <= FZ_MAXFIELDS);
	CHECK(oml_name_valid(s.name, strlen(s.name)));
	for (i = 0; i < s.nfields; i++) {
		CHECK(oml_name_valid(s.fields[i].name,
		    strlen(s.fields[i].name)));
		CHECK(s.fields[i].type < OML_TYPE_MAX);
		CHECK(schema_field(&s, s.fields[i].name) == i);
	}
	/* The canonical form reads back as the same schema. */
	f = schema_format(&s);
	CHECK(schema_parse(f, strlen(f), FZ_MAXFIELDS, &copy, err,
	    sizeof(err)) == 0);
	CHECK(schema_same(&s, &copy) && copy.index == s.index);
	schema_free(&copy);
	free(f);
	schema_copy(&copy, &s);
	CHECK(schema_same(&s, &copy));
	schema_rename(&copy, "renamed_2");
	CHECK(strcmp(copy.name, "renamed_2") == 0);
	schema_free(&copy);

	if ((st = fz_stream(c, s.index)) != NULL) {
		schema_free(&st->s);
		free(st->types);
	} else if (c->n < FZ_MAXSTREAMS)
		st = &c->st[c->n++];
	else {
		schema_free(&s);
		return;
	}
	st->index = s.index;
	st->s = s;
	st->types = calloc((size_t)s.nfields, sizeof(*st->types));
	CHECK(st->types != NULL);
	for (i = 0; i < s.nfields; i++)
		st->types[i] = s.fields[i].type;
}

static inline void
fz_conn_free(struct fz_conn *c)
{
	int	 i;

	for (i = 0; i < c->n; i++) {
		schema_free(&c->st[i].s);
		free(c->st[i].types);
	}
	c->n = 0;
}

static inline int
fz_key(const char *k, size_t kl, const char *name)
{
	return strlen(name) == kl && memcmp(k, name, kl) == 0;
}

/* One header line; returns 0 when the header section has ended. */
static inline int
fz_header_line(struct fz_conn *c, const char *line, size_t len)
{
	const char	*k, *v, *why;
	size_t		 kl, vl;

	if (len == 0) {
		c->ended = 1;
		return 0;
	}
	if (header_split(line, len, &k, &kl, &v, &vl) == -1) {
		CHECK(memchr(line, ':', len) == NULL);
		return 1;
	}
	CHECK(k == line && kl < len && v >= line + kl + 1);
	CHECK(v + vl <= line + len);
	CHECK(vl == 0 || (v[0] != ' ' && v[0] != '\t'));
	if (fz_key(k, kl, "domain") || fz_key(k, kl, "experiment-id")) {
		why = NULL;
		if (expname_valid(v, vl, &why))
			CHECK(vl >= 1 && vl <= EXPNAME_MAX && v[0] != '.' &&
			    v[0] != '-' && memchr(v, '/', vl) == NULL &&
			    memchr(v, '=', vl) == NULL);
		else
			CHECK(why != NULL);
	} else if (fz_key(k, kl, "schema"))
		fz_declare(c, v, vl);
	else if (fz_key(k, kl, "content"))
		c->binary = vl == 6 && memcmp(v, "binary", 6) == 0;
	return 1;
}

/*
 * Read the header section the way the child frames it (line_next) and
 * return where the data begins (len if the header never ends).
 */
static inline size_t
fz_headers(struct fz_conn *c, const char *buf, size_t len)
{
	size_t	 off = 0, used;
	long	 n;

	while (off < len && (n = line_next(buf + off, len - off, &used))
	    != -1) {
		CHECK(n >= 0 && (size_t)n < used && used <= len - off);
		CHECK(buf[off + used - 1] == '\n');
		off += used;
		if (!fz_header_line(c, buf + off - used, (size_t)n))
			return off;
	}
	return len;
}

/* Stream 0 ". schema X" declares X (§3.6), as the child does. */
static inline void
fz_metadata(struct fz_conn *c, const struct fz_stream *st,
    const struct oml_value *v)
{
	int	 fs, fk, fv;

	fs = schema_field(&st->s, "subject");
	fk = schema_field(&st->s, "key");
	fv = schema_field(&st->s, "value");
	if (fs < 0 || fk < 0 || fv < 0)
		return;
	if (v[fs].type != OML_STRING || v[fk].type != OML_STRING ||
	    v[fv].type != OML_STRING)
		return;
	if (v[fs].u.s.len == 1 && v[fs].u.s.p[0] == '.' &&
	    v[fk].u.s.len == 6 && memcmp(v[fk].u.s.p, "schema", 6) == 0)
		fz_declare(c, v[fv].u.s.p, v[fv].u.s.len);
}

/* Every string, blob and vector value lies inside [lo, hi) or scratch. */
static inline void
fz_check_values(const struct oml_value *v, int n, const char *lo,
    const char *hi, const struct buf *scratch)
{
	const char	*p;
	int		 i;

	for (i = 0; i < n; i++) {
		if (v[i].type != OML_STRING && v[i].type != OML_BLOB &&
		    !oml_type_is_vector(v[i].type))
			continue;
		p = v[i].u.s.p;
		if (v[i].u.s.len == 0)
			continue;
		CHECK(p != NULL);
		if (oml_type_is_vector(v[i].type))
			CHECK(p >= scratch->p &&
			    p + v[i].u.s.len <= scratch->p + scratch->len);
		else
			CHECK(p >= lo && p + v[i].u.s.len <= hi);
	}
}

/* Do two decoded rows agree on every value the encoders keep exactly? */
static inline void
fz_same_values(const struct oml_value *a, const struct oml_value *b, int n,
    int binary)
{
	int	 i;

	for (i = 0; i < n; i++) {
		CHECK(a[i].type == b[i].type);
		switch (a[i].type) {
		case OML_INT32:
			CHECK(a[i].u.i32 == b[i].u.i32);
			break;
		case OML_UINT32:
			CHECK(a[i].u.u32 == b[i].u.u32);
			break;
		case OML_INT64:
			CHECK(a[i].u.i64 == b[i].u.i64);
			break;
		case OML_UINT64:
		case OML_GUID:
			CHECK(a[i].u.u64 == b[i].u.u64);
			break;
		case OML_BOOL:
			CHECK(!a[i].u.b == !b[i].u.b);
			break;
		case OML_STRING:
			/* binary strings are cut to 255 bytes */
			if (binary && a[i].u.s.len > 255)
				break;
			CHECK(a[i].u.s.len == b[i].u.s.len);
			CHECK(a[i].u.s.len == 0 ||
			    memcmp(a[i].u.s.p, b[i].u.s.p, a[i].u.s.len) == 0);
			break;
		case OML_BLOB:
			if (a[i].null)
				break;
			CHECK(!b[i].null && a[i].u.s.len == b[i].u.s.len);
			CHECK(a[i].u.s.len == 0 ||
			    memcmp(a[i].u.s.p, b[i].u.s.p, a[i].u.s.len) == 0);
			break;
		default:	/* doubles and vectors: not re-encodable exactly */
			break;
		}
	}
}

static inline int
fz_has_vector(const enum oml_type *t, int n)
{
	int	 i;

	for (i = 0; i < n; i++)
		if (oml_type_is_vector(t[i]))
			return 1;
	return 0;
}

#endif /* FUZZ_H */
