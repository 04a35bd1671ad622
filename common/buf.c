/*
 * Growable byte buffers and allocation wrappers.  Running out of memory is
 * treated as fatal: every size that a peer can influence is bounded before
 * it reaches these functions, so failure here means the machine is sick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void *
xmalloc(size_t n)
{
	void	*p;

	if ((p = malloc(n ? n : 1)) == NULL)
		fatal("malloc %zu", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if ((p = calloc(n ? n : 1, size ? size : 1)) == NULL)
		fatal("calloc %zu*%zu", n, size);
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void	*p;

	if ((p = reallocarray(old, n ? n : 1, size ? size : 1)) == NULL)
		fatal("reallocarray %zu*%zu", n, size);
	return p;
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("vasprintf");
	return n;
}

void
buf_init(struct buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
}

void
buf_free(struct buf *b)
{
	free(b->p);
	buf_init(b);
}

/* The capacity buf_reserve(b, n) would leave: doubling from 256. */
size_t
buf_cap_for(const struct buf *b, size_t n)
{
	size_t	 cap;

	if (b->cap - b->len >= n)
		return b->cap;
	if (n > SIZE_MAX / 2 - b->len)
		fatalx("buffer size overflow");
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	return cap;
}

/* Make room for n more bytes, growing geometrically. */
void
buf_reserve(struct buf *b, size_t n)
{
	if (b->cap - b->len < n)
		buf_setcap(b, buf_cap_for(b, n));
}

/* Append n bytes, returned for the caller to write. */
char *
buf_extend(struct buf *b, size_t n)
{
	char	*p;

	buf_reserve(b, n);
	p = b->p + b->len;
	b->len += n;
	return p;
}

void
buf_add_be32(struct buf *b, uint32_t v)
{
	be_put32(buf_extend(b, 4), v);
}

void
buf_add_be64(struct buf *b, uint64_t v)
{
	be_put64(buf_extend(b, 8), v);
}

/* Grow or shrink to exactly cap bytes (never below the contents). */
void
buf_setcap(struct buf *b, size_t cap)
{
	if (cap < b->len)
		cap = b->len;
	if (cap == b->cap)
		return;
	if (cap == 0) {
		buf_free(b);
		return;
	}
	b->p = xreallocarray(b->p, cap, 1);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void
buf_addc(struct buf *b, int c)
{
	buf_reserve(b, 1);
	b->p[b->len++] = (char)c;
}

void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("buf_printf: bad format");
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Remove the first n bytes. */
void
buf_drop(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

/* NUL-terminate (without counting the NUL) and return the contents. */
char *
buf_cstr(struct buf *b)
{
	buf_reserve(b, 1);
	b->p[b->len] = '\0';
	return b->p;
}
