/*
 * The header phase (§2): line framing, the key/value split, experiment
 * name validation (§10.5) and the master's experiment-id sniffer.  The
 * sniffer runs with privileges on bytes from the network, so it reads
 * only whole lines inside the buffer it is given and stops at the first
 * thing it does not like.
 */
#include <string.h>

#include "proto/proto.h"

long
line_next(const char *buf, size_t len, size_t *used)
{
	const char	*nl;
	size_t		 n;

	if ((nl = memchr(buf, '\n', len)) == NULL)
		return -1;
	n = (size_t)(nl - buf);
	*used = n + 1;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	return (long)n;
}

static int
is_trail_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int
header_split(const char *line, size_t len, const char **key, size_t *klen,
    const char **val, size_t *vlen)
{
	const char	*colon;
	size_t		 i, end;

	if ((colon = memchr(line, ':', len)) == NULL)
		return -1;
	*key = line;
	*klen = (size_t)(colon - line);
	/* The original skips only spaces; dropping tabs too is harmless. */
	for (i = *klen + 1; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	for (end = len; end > i && is_trail_ws(line[end - 1]); end--)
		;
	*val = line + i;
	*vlen = end - i;
	return 0;
}

/*
 * The name becomes a file name, a PostgreSQL database name, a word in the
 * hook's URI and an argument of the programs a hook runs (pg_dump, iput),
 * so only a whitelist passes: letters, digits and _ . : + - (what OMF and
 * the original's clients use, as in exp_2011-08-09t11.52.28+10.00), the
 * first a letter, a digit or '_'.  That leaves out '/', '..', hidden
 * files, option-like names ("-x", "--dbname=x"), libpq conninfo words
 * ("dbname=x", "host=h"), quotes, white space, shell syntax and
 * everything above 0x7f.  Every byte is checked before the first one's
 * stricter rule, so that "/x" is refused for its '/'.
 */
static int
expname_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
	    c == '+' || c == '-';
}

static const char *
expname_bad_byte(unsigned char c)
{
	if (c == '/' || c == '\\')
		return "experiment name contains '/' or '\\'";
	if (c == '"' || c == '\'' || c == '`')
		return "experiment name contains a quote";
	if (c == '=')
		return "experiment name contains '='";
	if (c <= ' ' || c == 0x7f)
		return "experiment name contains white space or a control byte";
	return "experiment name contains a byte other than letters, digits "
	    "and _ . : + -";
}

int
expname_valid(const char *s, size_t len, const char **why)
{
	size_t		 i;
	unsigned char	 c;

	if (len == 0) {
		*why = "empty experiment name";
		return 0;
	}
	if (len > EXPNAME_MAX) {
		*why = "experiment name longer than 63 bytes";
		return 0;
	}
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (!expname_byte(c)) {
			*why = expname_bad_byte(c);
			return 0;
		}
	}
	c = (unsigned char)s[0];
	if (c == '.' || c == ':' || c == '+' || c == '-') {
		*why = "experiment name does not start with a letter, a digit "
		    "or '_'";
		return 0;
	}
	return 1;
}

static int
key_is(const char *k, size_t klen, const char *name)
{
	return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

/*
 * Control bytes other than TAB and CR have no business in a header line
 * (no client sends them), so a header holding one is garbage.
 */
static int
has_control(const char *p, size_t len)
{
	size_t		 i;
	unsigned char	 c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
			return 1;
	}
	return 0;
}

/* Look at one complete header line; SNIFF_MORE means "not this one". */
static enum sniff_result
sniff_line(struct sniff *sn, const char *line, size_t len, const char **why)
{
	const char	*k, *v;
	size_t		 klen, vlen;

	if (len == 0) {
		*why = "end of headers before an experiment id";
		return SNIFF_BAD;
	}
	if (header_split(line, len, &k, &klen, &v, &vlen) == -1) {
		*why = "header line without ':'";
		return SNIFF_BAD;
	}
	if (!key_is(k, klen, "domain") && !key_is(k, klen, "experiment-id"))
		return SNIFF_MORE;
	if (!expname_valid(v, vlen, why))
		return SNIFF_BAD;
	memcpy(sn->name, v, vlen);
	sn->name[vlen] = '\0';
	sn->found = 1;
	return SNIFF_FOUND;
}

enum sniff_result
sniff_expid(struct sniff *sn, const char *buf, size_t len, const char **why)
{
	enum sniff_result	 r;
	size_t			 used;
	long			 n;

	*why = NULL;
	if (sn->found)
		return SNIFF_FOUND;
	if (sn->scanned > len) {
		*why = "sniffer fed fewer bytes than before";
		return SNIFF_BAD;
	}
	while ((n = line_next(buf + sn->scanned, len - sn->scanned,
	    &used)) != -1) {
		if (has_control(buf + sn->scanned, (size_t)n)) {
			*why = "binary data in the header";
			return SNIFF_BAD;
		}
		r = sniff_line(sn, buf + sn->scanned, (size_t)n, why);
		sn->scanned += used;
		if (r != SNIFF_MORE)
			return r;
	}
	/* Refuse garbage now rather than when the header times out. */
	if (has_control(buf + sn->scanned, len - sn->scanned)) {
		*why = "binary data in the header";
		return SNIFF_BAD;
	}
	return SNIFF_MORE;
}
