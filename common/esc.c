/*
 * Escaping for the server's outputs to other programs: JSON strings (the
 * control socket's replies), Prometheus label values (the metrics
 * endpoint) and text for a terminal (oml2ctl).  Sender ids, application
 * names and table names come from clients: any byte may be in them.
 *
 * JSON and the Prometheus format must be valid UTF-8, so an invalid byte
 * becomes U+FFFD there; JSON escapes every control character, Prometheus
 * the three the exposition format names (backslash, double quote, line
 * feed).  On a terminal nothing is replaced: control bytes, DEL, C1
 * controls and the code points that move text about (the bidirectional
 * marks and overrides, the line and paragraph separators) are shown as
 * \xHH, a backslash as \\, so that no tenant's string reaches an
 * operator's terminal as a command, and none is mistaken for another.
 */
#include <string.h>

#include "common/common.h"

static const char	 hex[] = "0123456789abcdef";
static const char	 replacement[] = "\xef\xbf\xbd";	/* U+FFFD */

/*
 * The length of the valid UTF-8 sequence at p (of n bytes), its code
 * point in *cp; 0 for a stray, cut or overlong byte or a surrogate.
 */
size_t
utf8_len(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t	 len, i;
	uint32_t c;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	c = p[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* A JSON string, quotes included. */
void
esc_json(struct buf *b, const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	uint32_t		 cp;
	size_t			 i, k;
	char			 e[6];

	buf_addc(b, '"');
	for (i = 0; i < n; i += k) {
		if ((k = utf8_len(p + i, n - i, &cp)) == 0) {
			buf_add(b, replacement, 3);
			k = 1;
		} else if (cp == '"' || cp == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (int)cp);
		} else if (cp == '\n')
			buf_adds(b, "\\n");
		else if (cp == '\t')
			buf_adds(b, "\\t");
		else if (cp == '\r')
			buf_adds(b, "\\r");
		else if (cp < 0x20 || cp == 0x7f) {
			memcpy(e, "\\u00", 4);
			e[4] = hex[cp >> 4];
			e[5] = hex[cp & 0xf];
			buf_add(b, e, 6);
		} else
			buf_add(b, p + i, k);
	}
	buf_addc(b, '"');
}

/* A Prometheus label value, without its quotes. */
void
esc_label(struct buf *b, const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	uint32_t		 cp;
	size_t			 i, k;

	for (i = 0; i < n; i += k) {
		if ((k = utf8_len(p + i, n - i, &cp)) == 0) {
			buf_add(b, replacement, 3);
			k = 1;
		} else if (cp == '"' || cp == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (int)cp);
		} else if (cp == '\n')
			buf_adds(b, "\\n");
		else
			buf_add(b, p + i, k);
	}
}

/* Does code point cp show as text on a terminal, in place? */
static int
shown(uint32_t cp)
{
	if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
		return 0;
	if (cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return 1;
}

/* Text for a terminal. */
void
esc_term(struct buf *b, const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	uint32_t		 cp;
	size_t			 i, j, k;
	char			 e[4];

	for (i = 0; i < n; i += k) {
		k = utf8_len(p + i, n - i, &cp);
		if (k > 0 && cp == '\\') {
			buf_adds(b, "\\\\");
			continue;
		}
		if (k > 0 && shown(cp)) {
			buf_add(b, p + i, k);
			continue;
		}
		if (k == 0)
			k = 1;
		for (j = i; j < i + k; j++) {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[p[j] >> 4];
			e[3] = hex[p[j] & 0xf];
			buf_add(b, e, 4);
		}
	}
}
