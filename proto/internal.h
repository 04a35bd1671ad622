/*
 * proto/internal.h -- helpers shared between the files of proto/ and not
 * part of its interface: bounded number scanners that follow the C
 * library's strto* rules without needing a NUL-terminated string, and the
 * §8.4 vector text renderer used by both decoders.
 */
#ifndef PROTO_INTERNAL_H
#define PROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/* oml_type_is_vector(), inlined for the decoders' per-value paths. */
static inline int
is_vector_type(enum oml_type t)
{
	return t >= OML_VINT32 && t <= OML_VBOOL;
}

/* isspace() in the C locale, without the locale lookup. */
static inline int
is_ws(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * An integer the way strtoull(3) reads it from p[0..len): leading white
 * space, a sign, then digits in base 10, or base 0 (0x hex, leading-0
 * octal, else decimal).  Returns the bytes consumed, 0 when there are no
 * digits.  *mag is the magnitude, *neg the sign, *ovf set when the
 * magnitude does not fit in 64 bits.
 */
struct intscan {
	uint64_t	mag;
	int		neg;
	int		ovf;
};

size_t	 int_scan(const char *p, size_t len, int base, struct intscan *);
int	 int_to_i64(const struct intscan *, int64_t *);	/* strtoll range */
int	 int_to_u64(const struct intscan *, uint64_t *);	/* strtoull range */

/*
 * strtod(3) on p[0..len): returns the bytes consumed, 0 when nothing
 * converts; *erange is set when strtod would set ERANGE.
 */
size_t	 dbl_scan(const char *p, size_t len, double *, int *erange);

/* Decimal formatting without printf; out needs 21 bytes, no NUL. */
size_t	 fmt_u64(char *out, uint64_t);
size_t	 fmt_i64(char *out, int64_t);

/* liboml2's bool: false iff a case-insensitive prefix of "false". */
int	 bool_text(const char *p, size_t len);

/*
 * §8.4 vector text: call vr_elem() before each element's text, and
 * vr_end() once; an empty vector renders as nothing at all.
 */
void	 vr_elem(struct buf *, uint64_t i);
void	 vr_end(struct buf *, uint64_t n);
void	 vr_i64(struct buf *, int64_t);
void	 vr_u64(struct buf *, uint64_t);
void	 vr_double(struct buf *, double);
void	 vr_bool(struct buf *, int);

/* Text vector "N e1 .. eN" (§5.4) rendered onto the end of b. */
int	 vec_text(const char *p, size_t len, enum oml_type, struct buf *b,
	    const char **why);

/* Point the decoded vectors of out[] at their text in scratch. */
void	 vec_fixup(struct oml_value *out, int n, const struct buf *scratch);
int	 stored_over(const struct oml_value *, size_t *,
	    const struct buf *scratch, size_t maxout, const char **why);

#endif /* PROTO_INTERNAL_H */
