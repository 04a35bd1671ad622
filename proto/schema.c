/*
 * Schema declarations (§3): "index name field:type ...".  The parser is
 * stricter than the original where the original would only fail later
 * (zero fields, duplicate or reserved field names, huge indices), so
 * that a bad declaration is refused before any table is touched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

static const char *const builtin[] = {
	"oml_tuple_id", "oml_sender_id", "oml_seq", "oml_ts_client",
	"oml_ts_server",
};

struct cursor {
	const char	*s;
	size_t		 len;
	size_t		 pos;
};

/* The next run of non-white-space bytes; 0 at the end. */
static size_t
next_token(struct cursor *c, const char **tok)
{
	size_t	 start;

	while (c->pos < c->len && is_ws((unsigned char)c->s[c->pos]))
		c->pos++;
	start = c->pos;
	while (c->pos < c->len && !is_ws((unsigned char)c->s[c->pos]))
		c->pos++;
	*tok = c->s + start;
	return c->pos - start;
}

/* A token made printable and short, for error messages that get logged. */
static const char *
shown(char *out, size_t outlen, const char *tok, size_t len)
{
	size_t	 i;

	if (len > outlen - 1)
		len = outlen - 1;
	for (i = 0; i < len; i++)
		out[i] = (tok[i] > ' ' && tok[i] < 0x7f) ? tok[i] : '?';
	out[len] = '\0';
	return out;
}

/* strtol(..., 0) semantics, but the whole token must be the number. */
static int
parse_index(const char *tok, size_t len, long *out)
{
	char	 tmp[32], *end;

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, tok, len);
	tmp[len] = '\0';
	errno = 0;
	*out = strtol(tmp, &end, 0);
	if (errno != 0 || end != tmp + len)
		return -1;
	return 0;
}

static int
field_name_ok(const struct oml_schema *s, const char *name, char *err,
    size_t errlen)
{
	size_t	 i;
	int	 k;

	for (i = 0; i < nitems(builtin); i++) {
		if (strcmp(name, builtin[i]) == 0) {
			snprintf(err, errlen, "field '%s' is a built-in column",
			    name);
			return 0;
		}
	}
	for (k = 0; k < s->nfields; k++) {
		if (strcmp(name, s->fields[k].name) == 0) {
			snprintf(err, errlen, "duplicate field '%s'", name);
			return 0;
		}
	}
	return 1;
}

/* One "name:type" token, appended to s. */
static int
parse_field(struct oml_schema *s, const char *tok, size_t len, char *err,
    size_t errlen)
{
	const char	*colon;
	char		 show[48];
	size_t		 nlen;
	enum oml_type	 t;
	char		*name;

	if ((colon = memchr(tok, ':', len)) == NULL) {
		snprintf(err, errlen, "field '%s' has no type",
		    shown(show, sizeof(show), tok, len));
		return -1;
	}
	nlen = (size_t)(colon - tok);
	if (!oml_name_valid(tok, nlen)) {
		snprintf(err, errlen, "invalid field name '%s'",
		    shown(show, sizeof(show), tok, nlen));
		return -1;
	}
	if (oml_type_parse(colon + 1, len - nlen - 1, &t) == -1) {
		snprintf(err, errlen, "unknown type '%s'",
		    shown(show, sizeof(show), colon + 1, len - nlen - 1));
		return -1;
	}
	name = xstrndup(tok, nlen);
	if (!field_name_ok(s, name, err, errlen)) {
		free(name);
		return -1;
	}
	s->fields = xreallocarray(s->fields, (size_t)s->nfields + 1,
	    sizeof(*s->fields));
	s->fields[s->nfields].name = name;
	s->fields[s->nfields].type = t;
	s->nfields++;
	return 0;
}

static int
parse_head(struct cursor *c, struct oml_schema *s, char *err, size_t errlen)
{
	const char	*tok;
	char		 show[48];
	size_t		 len;

	if ((len = next_token(c, &tok)) == 0 ||
	    parse_index(tok, len, &s->index) == -1) {
		snprintf(err, errlen, "missing or bad schema index '%s'",
		    shown(show, sizeof(show), tok, len));
		return -1;
	}
	if (s->index < 0 || s->index > SCHEMA_MAX_INDEX) {
		snprintf(err, errlen, "schema index %ld outside 0..%d",
		    s->index, SCHEMA_MAX_INDEX);
		return -1;
	}
	len = next_token(c, &tok);
	if (!oml_name_valid(tok, len)) {
		snprintf(err, errlen, "invalid schema name '%s'",
		    shown(show, sizeof(show), tok, len));
		return -1;
	}
	s->name = xstrndup(tok, len);
	return 0;
}

int
schema_parse(const char *str, size_t slen, int maxfields,
    struct oml_schema *s, char *err, size_t errlen)
{
	struct cursor	 c = { str, slen, 0 };
	const char	*tok;
	size_t		 len;

	memset(s, 0, sizeof(*s));
	if (parse_head(&c, s, err, errlen) == -1)
		goto fail;
	while ((len = next_token(&c, &tok)) > 0) {
		if (maxfields > 0 && s->nfields >= maxfields) {
			snprintf(err, errlen, SCHEMA_ERR_FIELDS "%d fields",
			    maxfields);
			goto fail;
		}
		if (parse_field(s, tok, len, err, errlen) == -1)
			goto fail;
	}
	if (s->nfields == 0) {
		snprintf(err, errlen, "schema '%s' has no fields", s->name);
		goto fail;
	}
	return 0;
fail:
	schema_free(s);
	return -1;
}

void
enc_schema_text(struct buf *b, const struct oml_schema *s)
{
	int	 i;

	buf_printf(b, "%ld %s", s->index, s->name);
	for (i = 0; i < s->nfields; i++)
		buf_printf(b, " %s:%s", s->fields[i].name,
		    oml_type_name(s->fields[i].type));
}

char *
schema_format(const struct oml_schema *s)
{
	struct buf	 b;

	buf_init(&b);
	enc_schema_text(&b, s);
	return buf_cstr(&b);
}

int
schema_same(const struct oml_schema *a, const struct oml_schema *b)
{
	return strcmp(a->name, b->name) == 0 && schema_fields_same(a, b);
}

int
schema_fields_same(const struct oml_schema *a, const struct oml_schema *b)
{
	int	 i;

	if (a->nfields != b->nfields)
		return 0;
	for (i = 0; i < a->nfields; i++) {
		if (a->fields[i].type != b->fields[i].type ||
		    strcmp(a->fields[i].name, b->fields[i].name) != 0)
			return 0;
	}
	return 1;
}

void
schema_copy(struct oml_schema *dst, const struct oml_schema *src)
{
	int	 i;

	dst->index = src->index;
	dst->name = xstrdup(src->name);
	dst->nfields = src->nfields;
	dst->fields = xcalloc((size_t)src->nfields, sizeof(*dst->fields));
	for (i = 0; i < src->nfields; i++) {
		dst->fields[i].name = xstrdup(src->fields[i].name);
		dst->fields[i].type = src->fields[i].type;
	}
}

void
schema_rename(struct oml_schema *s, const char *name)
{
	char	*n;

	n = xstrdup(name);	/* name may be s->name itself */
	free(s->name);
	s->name = n;
}

void
schema_free(struct oml_schema *s)
{
	int	 i;

	for (i = 0; i < s->nfields; i++)
		free(s->fields[i].name);
	free(s->fields);
	free(s->name);
	memset(s, 0, sizeof(*s));
}

int
schema_field(const struct oml_schema *s, const char *name)
{
	int	 i;

	for (i = 0; i < s->nfields; i++) {
		if (strcmp(s->fields[i].name, name) == 0)
			return i;
	}
	return -1;
}
