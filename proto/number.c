/*
 * Number scanning and printing for the text encoding.  Text fields are
 * not NUL-terminated (they sit inside the connection's buffer), and
 * strtol & co. need a terminator, so the integer rules of strtoull(3)
 * are redone here on a bounded field.  Doubles take a fast path for the
 * plain decimals clients print ("12.345678") and otherwise hand a copy
 * of the token to strtod(3), whose corner cases (hex floats, nan(...),
 * correct rounding of long inputs, ERANGE) are not worth redoing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/internal.h"

static int
digit_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

/* The base and first digit after the sign, like strtoull(..., 0). */
static int
pick_base(const char *p, size_t len, size_t *i, int base)
{
	if (base != 0)
		return base;
	if (*i < len && p[*i] == '0') {
		if (*i + 2 < len && (p[*i + 1] == 'x' || p[*i + 1] == 'X') &&
		    digit_val((unsigned char)p[*i + 2]) < 16) {
			*i += 2;
			return 16;
		}
		return 8;	/* the '0' itself counts as a digit */
	}
	return 10;
}

size_t
int_scan(const char *p, size_t len, int base, struct intscan *r)
{
	size_t	 i = 0, first;
	int	 d;

	r->mag = 0;
	r->neg = r->ovf = 0;
	/*
	 * The common case first: the whole field is up to 18 decimal
	 * digits, the first not 0 (so no octal or hex prefix either).
	 */
	if ((base == 0 || base == 10) && len > 0 && len <= 18 &&
	    (unsigned char)(p[0] - '1') <= 8) {
		uint64_t	 m = (uint64_t)(p[0] - '0');

		for (i = 1; i < len && (unsigned char)(p[i] - '0') <= 9; i++)
			m = m * 10 + (uint64_t)(p[i] - '0');
		if (i == len) {
			r->mag = m;
			return len;
		}
		i = 0;
	}
	while (i < len && is_ws((unsigned char)p[i]))
		i++;
	if (i < len && (p[i] == '+' || p[i] == '-'))
		r->neg = p[i++] == '-';
	base = pick_base(p, len, &i, base);
	first = i;
	/* Up to 19 decimal digits cannot overflow: no check needed. */
	if (base == 10) {
		uint64_t	 m = 0;

		for (; i < len && i - first < 19 &&
		    (unsigned char)(p[i] - '0') <= 9; i++)
			m = m * 10 + (uint64_t)(p[i] - '0');
		r->mag = m;
	}
	for (; i < len; i++) {
		if ((d = digit_val((unsigned char)p[i])) >= base)
			break;
		if (r->mag > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			r->ovf = 1;
		r->mag = r->mag * (uint64_t)base + (uint64_t)d;
	}
	if (i == first) {
		r->neg = 0;
		return 0;
	}
	return i;
}

int
int_to_i64(const struct intscan *r, int64_t *out)
{
	if (r->ovf)
		return -1;
	if (!r->neg) {
		if (r->mag > (uint64_t)INT64_MAX)
			return -1;
		*out = (int64_t)r->mag;
		return 0;
	}
	if (r->mag > (uint64_t)INT64_MAX + 1)
		return -1;
	*out = r->mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN :
	    -(int64_t)r->mag;
	return 0;
}

int
int_to_u64(const struct intscan *r, uint64_t *out)
{
	if (r->ovf)
		return -1;
	*out = r->neg ? (uint64_t)0 - r->mag : r->mag;	/* as strtoull does */
	return 0;
}

/* 10^0 .. 10^22 are exact doubles. */
static const double pow10tab[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * [sign] digits [. digits] with at most 2^53 as the digit string and at
 * most 22 decimals: one correctly rounded division of two exact doubles,
 * so the result is exactly strtod's.  Returns 0 when the input needs
 * the general path.
 */
static size_t
dbl_fast(const char *p, size_t len, double *out)
{
	uint64_t	 m = 0;
	size_t		 i = 0, ndig, nfrac = 0, start;
	int		 neg = 0;

	if (i < len && (p[i] == '+' || p[i] == '-'))
		neg = p[i++] == '-';
	for (start = i; i < len && (unsigned char)(p[i] - '0') <= 9; i++)
		m = m * 10 + (uint64_t)(p[i] - '0');	/* wraps harmlessly */
	ndig = i - start;
	if (i < len && p[i] == '.') {
		for (start = ++i; i < len && (unsigned char)(p[i] - '0') <= 9;
		    i++)
			m = m * 10 + (uint64_t)(p[i] - '0');
		nfrac = i - start;
	}
	ndig += nfrac;
	if (ndig == 0 || ndig > 16 || m > (UINT64_C(1) << 53) || nfrac > 22)
		return 0;
	/* An exponent or a hex prefix follows: not a plain decimal. */
	if (i < len && (p[i] == 'e' || p[i] == 'E' || p[i] == 'x' ||
	    p[i] == 'X'))
		return 0;
	*out = nfrac == 0 ? (double)m : (double)m / pow10tab[nfrac];
	if (neg)
		*out = -*out;
	return i;
}

size_t
dbl_scan(const char *p, size_t len, double *out, int *erange)
{
	char	 small[64], *tmp, *end;
	size_t	 i = 0, e, n;

	*erange = 0;
	*out = 0;
	while (i < len && is_ws((unsigned char)p[i]))
		i++;
	if ((n = dbl_fast(p + i, len - i, out)) > 0)
		return i + n;
	/* strtod cannot consume white space past the leading run. */
	for (e = i; e < len && !is_ws((unsigned char)p[e]); e++)
		;
	if (e == i)
		return 0;
	tmp = e - i < sizeof(small) ? small : xmalloc(e - i + 1);
	memcpy(tmp, p + i, e - i);
	tmp[e - i] = '\0';
	errno = 0;
	*out = strtod(tmp, &end);
	*erange = errno == ERANGE;
	n = (size_t)(end - tmp);
	if (tmp != small)
		free(tmp);
	return n == 0 ? 0 : i + n;
}

size_t
fmt_u64(char *out, uint64_t v)
{
	char	 tmp[20];
	size_t	 n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

size_t
fmt_i64(char *out, int64_t v)
{
	if (v >= 0)
		return fmt_u64(out, (uint64_t)v);
	out[0] = '-';
	return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}
