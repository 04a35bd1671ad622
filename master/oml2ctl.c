/*
 * oml2ctl -- control and watch a running oml2-server over its control
 * socket (master/ctl.c): status, list, show EXP, close EXP, reopen-log,
 * stop.  It sends one request line and reads one JSON document back; with
 * --json it prints that document, otherwise aligned columns.  It is
 * built from master/ because it speaks the master's protocol; it runs as
 * whoever calls it and needs no privilege but the socket's group.
 *
 * The document is parsed strictly (a small JSON reader below), and every
 * string in it, which may come from a client of the server (sender ids,
 * application names), is shown with control bytes and text-moving code
 * points escaped, so that nothing reaches the terminal but text.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "proto/proto.h"

#define REPLY_MAX	(32 * 1024 * 1024)
#define DEPTH_MAX	16
#define SOCK_NAME	"oml2-server.sock"

enum { EX_OK, EX_FAIL, EX_USAGE };

static const char usage_text[] =
"usage: oml2ctl [-j] [-s socket | -D dir] [-w seconds] command [experiment]\n";

static const char help_text[] =
"oml2ctl: control and watch a running oml2-server\n"
"\n"
"Commands:\n"
"  status                    the server: version, uptime, backend, addresses,\n"
"                            experiments, clients, connections, rows\n"
"  list                      one line per experiment\n"
"  show EXPERIMENT           its clients, tables and completeness per sender\n"
"  close EXPERIMENT          store what its clients sent, close them, end its\n"
"                            process; waits until it has\n"
"  reopen-log                reopen the log file (as SIGHUP)\n"
"  stop                      stop the server (as SIGTERM)\n"
"\n"
"Options:\n"
"  -j, --json                print the server's JSON document\n"
"  -s, --socket=PATH         the control socket (default: $OML2_CONTROL, else\n"
"                            oml2-server.sock in the data directory)\n"
"  -D, --data-dir=DIR        the server's data directory (default:\n"
"                            $OML_SQLITE_DIR, else " DEFAULT_DATADIR ")\n"
"  -w, --timeout=SECONDS     give up after this long (default 90)\n"
"  -v, --version             print the version\n"
"  -h, --help                print this help\n";

static const struct option longopts[] = {
	{ "json",	no_argument,	   NULL, 'j' },
	{ "socket",	required_argument, NULL, 's' },
	{ "data-dir",	required_argument, NULL, 'D' },
	{ "timeout",	required_argument, NULL, 'w' },
	{ "version",	no_argument,	   NULL, 'v' },
	{ "help",	no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static __dead void PRINTFLIKE(2, 3)
die(int code, const char *fmt, ...)
{
	va_list	 ap;

	fputs("oml2ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (code == EX_USAGE)
		fputs(usage_text, stderr);
	exit(code);
}

/* ---- a strict JSON reader ---------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jtype	 t;
	int		 b;
	double		 num;
	struct buf	 s;		/* a string's bytes, a number's text */
	struct jv	**kid;
	char		**key;		/* objects */
	size_t		 n;
};

struct jp {
	const char	*p, *end;
	int		 depth;
};

static struct jv	*jparse_value(struct jp *);

static __dead void
jbad(const char *why)
{
	die(EX_FAIL, "the server's reply is not valid JSON: %s", why);
}

static void
jws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static struct jv *
jnew(enum jtype t)
{
	struct jv	*v = xcalloc(1, sizeof(*v));

	v->t = t;
	buf_init(&v->s);
	return v;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static uint32_t
jhex4(struct jp *j)
{
	uint32_t	 v = 0;
	int		 i, h;

	if (j->end - j->p < 4)
		jbad("a short \\u escape");
	for (i = 0; i < 4; i++) {
		if ((h = hexval((unsigned char)j->p[i])) < 0)
			jbad("a bad \\u escape");
		v = v << 4 | (uint32_t)h;
	}
	j->p += 4;
	return v;
}

static void
put_utf8(struct buf *b, uint32_t cp)
{
	if (cp < 0x80)
		buf_addc(b, (int)cp);
	else if (cp < 0x800) {
		buf_addc(b, (int)(0xc0 | cp >> 6));
		buf_addc(b, (int)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_addc(b, (int)(0xe0 | cp >> 12));
		buf_addc(b, (int)(0x80 | (cp >> 6 & 0x3f)));
		buf_addc(b, (int)(0x80 | (cp & 0x3f)));
	} else {
		buf_addc(b, (int)(0xf0 | cp >> 18));
		buf_addc(b, (int)(0x80 | (cp >> 12 & 0x3f)));
		buf_addc(b, (int)(0x80 | (cp >> 6 & 0x3f)));
		buf_addc(b, (int)(0x80 | (cp & 0x3f)));
	}
}

static void
jescape(struct jp *j, struct buf *b)
{
	static const char	 from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char		*q;
	uint32_t		 cp, lo;

	if (j->p >= j->end)
		jbad("a cut escape");
	if ((q = strchr(from, *j->p)) != NULL && *j->p != '\0') {
		buf_addc(b, to[q - from]);
		j->p++;
		return;
	}
	if (*j->p++ != 'u')
		jbad("an unknown escape");
	cp = jhex4(j);
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
			jbad("a lone surrogate");
		j->p += 2;
		if ((lo = jhex4(j)) < 0xdc00 || lo > 0xdfff)
			jbad("a bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	} else if (cp >= 0xdc00 && cp <= 0xdfff)
		jbad("a lone surrogate");
	put_utf8(b, cp);
}

static void
jstring(struct jp *j, struct buf *b)
{
	uint32_t	 cp;
	size_t		 k;

	j->p++;		/* the opening quote */
	for (;;) {
		if (j->p >= j->end)
			jbad("an unterminated string");
		if (*j->p == '"') {
			j->p++;
			return;
		}
		if (*j->p == '\\') {
			j->p++;
			jescape(j, b);
			continue;
		}
		if ((unsigned char)*j->p < 0x20)
			jbad("a control character in a string");
		if ((k = utf8_len((const unsigned char *)j->p,
		    (size_t)(j->end - j->p), &cp)) == 0)
			jbad("invalid UTF-8");
		buf_add(b, j->p, k);
		j->p += k;
	}
}

static struct jv *
jnumber(struct jp *j)
{
	struct jv	*v = jnew(J_NUM);
	const char	*s = j->p;
	char		*end;

	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		jbad("a bad number");
	while (j->p < j->end && strchr("0123456789.eE+-", *j->p) != NULL &&
	    *j->p != '\0')
		j->p++;
	buf_add(&v->s, s, (size_t)(j->p - s));
	errno = 0;
	v->num = strtod(buf_cstr(&v->s), &end);
	if (*end != '\0' || errno == ERANGE)
		jbad("a bad number");
	return v;
}

static int
jword(struct jp *j, const char *w)
{
	size_t	 n = strlen(w);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
		return 0;
	j->p += n;
	return 1;
}

static void
jadd(struct jv *v, char *key, struct jv *kid)
{
	v->kid = xreallocarray(v->kid, v->n + 1, sizeof(*v->kid));
	v->key = xreallocarray(v->key, v->n + 1, sizeof(*v->key));
	v->kid[v->n] = kid;
	v->key[v->n] = key;
	v->n++;
}

static struct jv *
jcontainer(struct jp *j, int obj)
{
	struct jv	*v = jnew(obj ? J_OBJ : J_ARR);
	struct buf	 k;
	char		 close = obj ? '}' : ']';

	if (++j->depth > DEPTH_MAX)
		jbad("nested too deep");
	j->p++;
	jws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return v;
	}
	for (;;) {
		buf_init(&k);
		if (obj) {
			jws(j);
			if (j->p >= j->end || *j->p != '"')
				jbad("an object key that is not a string");
			jstring(j, &k);
			jws(j);
			if (j->p >= j->end || *j->p++ != ':')
				jbad("no ':' after a key");
		}
		jadd(v, obj ? buf_cstr(&k) : NULL, jparse_value(j));
		jws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			j->depth--;
			return v;
		}
		jbad("no ',' or end after a value");
	}
}

static struct jv *
jparse_value(struct jp *j)
{
	struct jv	*v;

	jws(j);
	if (j->p >= j->end)
		jbad("it ends too soon");
	switch (*j->p) {
	case '{':
		return jcontainer(j, 1);
	case '[':
		return jcontainer(j, 0);
	case '"':
		v = jnew(J_STR);
		jstring(j, &v->s);
		buf_cstr(&v->s);
		return v;
	}
	if (jword(j, "true") || jword(j, "false")) {
		v = jnew(J_BOOL);
		v->b = j->p[-1] == 'e' && j->p[-2] == 'u';
		return v;
	}
	if (jword(j, "null"))
		return jnew(J_NULL);
	return jnumber(j);
}

static struct jv *
jparse(const char *p, size_t len)
{
	struct jp	 j = { p, p + len, 0 };
	struct jv	*v;

	v = jparse_value(&j);
	jws(&j);
	if (j.p != j.end)
		jbad("bytes after the document");
	if (v->t != J_OBJ)
		jbad("not an object");
	return v;
}

static void
jfree(struct jv *v)
{
	size_t	 i;

	for (i = 0; i < v->n; i++) {
		jfree(v->kid[i]);
		free(v->key[i]);
	}
	free(v->kid);
	free(v->key);
	buf_free(&v->s);
	free(v);
}

static const struct jv *
jget(const struct jv *o, const char *key)
{
	size_t	 i;

	if (o == NULL || o->t != J_OBJ)
		return NULL;
	for (i = 0; i < o->n; i++)
		if (strcmp(o->key[i], key) == 0)
			return o->kid[i];
	return NULL;
}

static double
jnum(const struct jv *o, const char *key)
{
	const struct jv	*v = jget(o, key);

	return v != NULL && v->t == J_NUM ? v->num : 0;
}

/* ---- text for the terminal --------------------------------------------- */

/* A value as text for a terminal (malloc'd). */
static char *
show(const struct jv *v)
{
	struct buf	 b;

	buf_init(&b);
	if (v == NULL || v->t == J_NULL)
		buf_adds(&b, "-");
	else if (v->t == J_STR)
		esc_term(&b, v->s.p ? v->s.p : "", v->s.len);
	else if (v->t == J_NUM)
		buf_add(&b, v->s.p, v->s.len);
	else if (v->t == J_BOOL)
		buf_adds(&b, v->b ? "yes" : "no");
	else
		buf_adds(&b, "?");
	return buf_cstr(&b);
}

static char *
field(const struct jv *o, const char *key)
{
	return show(jget(o, key));
}

static char *
fmt(const char *f, ...) PRINTFLIKE(1, 2);

static char *
fmt(const char *f, ...)
{
	char	*s;
	va_list	 ap;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) == -1)
		die(EX_FAIL, "out of memory");
	va_end(ap);
	return s;
}

/* Columns on a terminal: how many code points. */
static size_t
width(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* An aligned table: headers, then rows of cells; numbers on the right. */
struct table {
	size_t		 ncol;
	const char	*const *head;
	const char	*right;		/* 'r' for a right-aligned column */
	char		**cell;
	size_t		 nrow;
};

static void
table_row(struct table *t, char **cells)
{
	t->cell = xreallocarray(t->cell, (t->nrow + 1) * t->ncol,
	    sizeof(*t->cell));
	memcpy(t->cell + t->nrow * t->ncol, cells, t->ncol * sizeof(*cells));
	t->nrow++;
}

static void
table_print(struct table *t)
{
	size_t	*w, r, c, k;
	char	*s;

	w = xcalloc(t->ncol, sizeof(*w));
	for (c = 0; c < t->ncol; c++) {
		w[c] = width(t->head[c]);
		for (r = 0; r < t->nrow; r++)
			if ((k = width(t->cell[r * t->ncol + c])) > w[c])
				w[c] = k;
	}
	for (r = 0; r <= t->nrow; r++) {
		if (r == 0 && t->head[0][0] == '\0')
			continue;	/* a table without headers */
		for (c = 0; c < t->ncol; c++) {
			s = r == 0 ? (char *)t->head[c] :
			    t->cell[(r - 1) * t->ncol + c];
			k = w[c] - width(s);
			if (t->right[c] == 'r')
				printf("%*s%s", (int)k, "", s);
			else if (c + 1 < t->ncol)
				printf("%s%*s", s, (int)k, "");
			else
				printf("%s", s);
			if (c + 1 < t->ncol)
				printf("  ");
		}
		putchar('\n');
	}
	for (r = 0; r < t->nrow * t->ncol; r++)
		free(t->cell[r]);
	free(t->cell);
	free(w);
}

static char *
duration(double s)
{
	long	 t = (long)s;

	if (s < 60)
		return fmt("%.1fs", s);
	if (t < 3600)
		return fmt("%ldm%02lds", t / 60, t % 60);
	if (t < 86400)
		return fmt("%ldh%02ldm", t / 3600, t % 3600 / 60);
	return fmt("%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

/* "no", "retrying 3.0s (database locked)", "stalled 12.0s (disk full)" */
static char *
stall_text(const struct jv *e)
{
	const struct jv	*s = jget(e, "stall"), *why = jget(e, "stall_cause");
	char		*d, *r;

	if (s == NULL || s->t != J_STR || strcmp(s->s.p, "no") == 0)
		return xstrdup("no");
	d = duration(jnum(e, "stall_seconds"));
	if (why != NULL && why->t == J_STR && why->s.p[0] != '\0')
		r = fmt("%s %s (%s)", s->s.p, d, why->s.p);
	else
		r = fmt("%s %s", s->s.p, d);
	free(d);
	return r;
}

static char *
commit_text(const struct jv *e)
{
	const struct jv	*v = jget(e, "seconds_since_commit");

	if (v == NULL || v->t != J_NUM)
		return xstrdup("-");
	return duration(v->num);
}

static char *
commit_ago(const struct jv *e)
{
	char	*d = commit_text(e), *r;

	if (strcmp(d, "-") == 0)
		r = xstrdup("none yet");
	else
		r = fmt("%s ago", d);
	free(d);
	return r;
}

/* ---- the commands' output ---------------------------------------------- */

static void
print_status(const struct jv *d)
{
	static const char *const head[] = { "", "" };
	const struct jv	*l = jget(d, "listening"), *r, *p;
	struct table	 t = { 2, head, "ll", NULL, 0 };
	struct buf	 b;
	char		*c[2], *v;
	size_t		 i;

	v = duration(jnum(d, "uptime"));
	c[0] = field(d, "version");
	printf("oml2-server %s, pid %.0f, up %s%s\n", c[0], jnum(d, "pid"), v,
	    jget(d, "stopping") && jget(d, "stopping")->b ? ", stopping" : "");
	free(c[0]);
	free(v);
	buf_init(&b);
	for (i = 0; l != NULL && l->t == J_ARR && i < l->n; i++) {
		v = show(l->kid[i]);
		buf_printf(&b, "%s%s", i ? " " : "", v);
		free(v);
	}
#define ROW(k, val) do { c[0] = xstrdup(k); c[1] = (val); table_row(&t, c); \
	} while (0)
	v = field(d, "data_dir");
	ROW("backend", fmt("%s%s%s", (p = jget(d, "backend")) && p->t == J_STR ?
	    p->s.p : "?", strcmp(v, "-") ? " in " : "", strcmp(v, "-") ? v :
	    ""));
	free(v);
	ROW("listening", xstrdup(b.len ? buf_cstr(&b) : "-"));
	ROW("control", field(d, "control"));
	v = field(d, "metrics");
	ROW("metrics", strcmp(v, "-") ? fmt("http://%s/metrics", v) :
	    xstrdup("off"));
	free(v);
	ROW("experiments", field(d, "experiments"));
	ROW("clients", field(d, "clients"));
	ROW("pending", field(d, "pending"));
	p = jget(d, "processes");
	ROW("processes", fmt("%.0f serving, %.0f spare, %.0f starting, %.0f "
	    "retiring", jnum(p, "serving"), jnum(p, "spare"),
	    jnum(p, "starting"), jnum(p, "retiring")));
	ROW("accepted", fmt("%.0f connections", jnum(d,
	    "connections_accepted")));
	r = jget(d, "connections_refused");
	b.len = 0;
	for (i = 0; r != NULL && r->t == J_OBJ && i < r->n; i++)
		if (r->kid[i]->t == J_NUM && r->kid[i]->num > 0)
			buf_printf(&b, "%s%s %.0f", b.len ? ", " : "",
			    r->key[i], r->kid[i]->num);
	ROW("refused", xstrdup(b.len ? buf_cstr(&b) : "none"));
	ROW("rows stored", field(d, "rows_stored"));
	ROW("rows dropped", field(d, "rows_dropped"));
	ROW("bytes received", field(d, "bytes_received"));
	ROW("memory", fmt("master %.0f KiB, experiments %.0f KiB",
	    jnum(d, "master_memory_kb"), jnum(d, "experiments_memory_kb")));
#undef ROW
	buf_free(&b);
	table_print(&t);
}

static void
print_list(const struct jv *d)
{
	static const char *const head[] = { "EXPERIMENT", "PID", "STATE",
	    "CLIENTS", "ROWS", "ROWS/S", "BYTES", "DROPPED", "LAST COMMIT",
	    "STALLED", "HOOK" };
	const struct jv	*a = jget(d, "experiments"), *e;
	struct table	 t = { nitems(head), head, "lrlrrrrrrll", NULL, 0 };
	char		*c[nitems(head)];
	size_t		 i;

	for (i = 0; a != NULL && a->t == J_ARR && i < a->n; i++) {
		e = a->kid[i];
		c[0] = field(e, "name");
		c[1] = field(e, "pid");
		c[2] = field(e, "state");
		c[3] = field(e, "clients");
		c[4] = field(e, "rows_stored");
		c[5] = fmt("%.1f", jnum(e, "rows_per_second"));
		c[6] = field(e, "bytes_received");
		c[7] = field(e, "rows_dropped");
		c[8] = commit_text(e);
		c[9] = stall_text(e);
		c[10] = field(e, "hook");
		table_row(&t, c);
	}
	table_print(&t);
}

/* "3 senders, 3 streams, 0 gaps" and what went wrong. */
static char *
completeness(const struct jv *e)
{
	struct buf	 b;
	double		 n;

	buf_init(&b);
	buf_printf(&b, "%.0f sender%s, %.0f stream%s, %.0f gap%s",
	    jnum(e, "senders"), jnum(e, "senders") == 1 ? "" : "s",
	    jnum(e, "streams"), jnum(e, "streams") == 1 ? "" : "s",
	    jnum(e, "gaps"), jnum(e, "gaps") == 1 ? "" : "s");
	if ((n = jnum(e, "missing")) > 0)
		buf_printf(&b, " (%.0f sequence number%s missing)", n,
		    n == 1 ? "" : "s");
	if ((n = jnum(e, "restarts")) > 0)
		buf_printf(&b, ", %.0f restart%s", n, n == 1 ? "" : "s");
	if ((n = jnum(e, "client_dropped")) > 0)
		buf_printf(&b, ", %.0f dropped by clients", n);
	return buf_cstr(&b);
}

static void
summary(const struct jv *d)
{
	char	*name = field(d, "name"), *state = field(d, "state");
	char	*commit = commit_ago(d), *stall = stall_text(d);
	char	*hook = field(d, "hook"), *comp = completeness(d);

	printf("experiment %s: process %.0f (%s), %.0f clients, %.0f rows "
	    "stored (%.1f/s), %.0f dropped, %.0f bytes\n"
	    "last commit: %s, stalled: %s, hook: %s\n"
	    "completeness: %s\n", name, jnum(d, "pid"), state,
	    jnum(d, "clients"), jnum(d, "rows_stored"),
	    jnum(d, "rows_per_second"), jnum(d, "rows_dropped"),
	    jnum(d, "bytes_received"), commit, stall, hook, comp);
	free(name);
	free(state);
	free(commit);
	free(stall);
	free(hook);
	free(comp);
}

static char *
since(const struct jv *c)
{
	char		 s[32];
	time_t		 t = (time_t)jnum(c, "since");
	struct tm	 tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%S", &tm) == 0)
		return xstrdup("-");
	return xstrdup(s);
}

static void
print_clients(const struct jv *a)
{
	static const char *const head[] = { "PEER", "PORT", "SENDER", "APP",
	    "PROTOCOL", "ENCODING", "CONNECTED SINCE", "ROWS", "BYTES",
	    "DROPPED" };
	struct table	 t = { nitems(head), head, "lrllrllrrr", NULL, 0 };
	char		*c[nitems(head)];
	size_t		 i;

	if (a == NULL || a->t != J_ARR || a->n == 0) {
		printf("\nno clients\n");
		return;
	}
	putchar('\n');
	for (i = 0; i < a->n; i++) {
		c[0] = field(a->kid[i], "peer");
		c[1] = field(a->kid[i], "port");
		c[2] = field(a->kid[i], "sender");
		c[3] = field(a->kid[i], "app");
		c[4] = field(a->kid[i], "protocol");
		c[5] = field(a->kid[i], "encoding");
		c[6] = since(a->kid[i]);
		c[7] = field(a->kid[i], "rows");
		c[8] = field(a->kid[i], "bytes");
		c[9] = field(a->kid[i], "dropped");
		table_row(&t, c);
	}
	table_print(&t);
}

static void
print_tables(const struct jv *a)
{
	static const char *const head[] = { "TABLE", "ROWS", "STORED",
	    "SENDERS" };
	struct table	 t = { nitems(head), head, "lrrr", NULL, 0 };
	char		*c[nitems(head)];
	size_t		 i;

	if (a == NULL || a->t != J_ARR || a->n == 0)
		return;
	putchar('\n');
	for (i = 0; i < a->n; i++) {
		c[0] = field(a->kid[i], "name");
		c[1] = field(a->kid[i], "rows");
		c[2] = field(a->kid[i], "stored");
		c[3] = field(a->kid[i], "senders");
		table_row(&t, c);
	}
	table_print(&t);
}

static void
print_streams(const struct jv *a)
{
	static const char *const head[] = { "SENDER", "STREAM", "FIRST",
	    "LAST", "RECEIVED", "GAPS", "MISSING", "RESTARTS",
	    "CLIENT DROPPED" };
	struct table	 t = { nitems(head), head, "llrrrrrrr", NULL, 0 };
	char		*c[nitems(head)];
	size_t		 i;

	if (a == NULL || a->t != J_ARR || a->n == 0)
		return;
	putchar('\n');
	for (i = 0; i < a->n; i++) {
		c[0] = field(a->kid[i], "sender");
		c[1] = field(a->kid[i], "stream");
		c[2] = field(a->kid[i], "first");
		c[3] = field(a->kid[i], "last");
		c[4] = field(a->kid[i], "received");
		c[5] = field(a->kid[i], "gaps");
		c[6] = field(a->kid[i], "missing");
		c[7] = field(a->kid[i], "restarts");
		c[8] = field(a->kid[i], "client_dropped");
		table_row(&t, c);
	}
	table_print(&t);
}

static void
print_show(const struct jv *d)
{
	const struct jv	*x = jget(d, "details");
	const struct jv	*tr = jget(x, "truncated");

	summary(d);
	print_clients(jget(x, "clients"));
	print_tables(jget(x, "tables"));
	print_streams(jget(x, "streams"));
	if (tr != NULL && tr->t == J_BOOL && tr->b)
		printf("\n(more than the server lists: some left out)\n");
}

static void
print_close(const struct jv *d)
{
	char	*name = field(d, "name"), *comp = completeness(d);

	printf("%s: closed; %.0f rows stored, %.0f dropped; completeness: "
	    "%s\n", name, jnum(d, "rows_stored"), jnum(d, "rows_dropped"),
	    comp);
	free(name);
	free(comp);
}

/* ---- talking to the server --------------------------------------------- */

static char *
default_socket(const char *dir)
{
	char	*env, *path;

	if (dir == NULL && (env = getenv("OML2_CONTROL")) != NULL &&
	    *env != '\0')
		return xstrdup(env);
	if (dir == NULL && (env = getenv("OML_SQLITE_DIR")) != NULL &&
	    *env != '\0')
		dir = env;
	if (dir == NULL)
		dir = DEFAULT_DATADIR;
	xasprintf(&path, "%s/%s", dir, SOCK_NAME);
	return path;
}

static int
connect_to(const char *path)
{
	struct sockaddr_un	 sun;
	struct ucred		 uc;
	socklen_t		 l = sizeof(uc);
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		die(EX_FAIL, "%s: path too long for a socket", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die(EX_FAIL, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		die(EX_FAIL, "%s: %s%s", path, strerror(errno),
		    errno == ENOENT || errno == ECONNREFUSED ?
		    " (is the server running? -s names its socket)" :
		    errno == EACCES ? " (only root and the server's group "
		    "may use it)" : "");
	/* a socket someone else put there is not the server's */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) == -1 ||
	    (uc.uid != 0 && uc.uid != geteuid()))
		die(EX_FAIL, "%s: held by uid %d, not by root: not the "
		    "server's", path, (int)uc.uid);
	return fd;
}

/* Wait for fd to be ready for events, until the deadline. */
static void
await(int fd, short events, time_t deadline)
{
	struct pollfd	 p = { fd, events, 0 };
	time_t		 now = time(NULL);
	int		 r;

	do {
		if (now >= deadline)
			die(EX_FAIL, "no answer from the server in time");
		r = poll(&p, 1, (int)(deadline - now) * 1000);
		now = time(NULL);
	} while (r == -1 && errno == EINTR);
	if (r == -1)
		die(EX_FAIL, "poll: %s", strerror(errno));
}

static void
converse(int fd, const char *req, struct buf *reply, unsigned timeout)
{
	time_t	 deadline = time(NULL) + timeout;
	size_t	 off = 0, len = strlen(req);
	ssize_t	 n;

	while (off < len) {
		await(fd, POLLOUT, deadline);
		n = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && (errno == EPIPE || errno == ECONNRESET))
			break;	/* refused: the server may have said why */
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			die(EX_FAIL, "sending the request: %s",
			    strerror(errno));
		if (n > 0)
			off += (size_t)n;
	}
	for (;;) {
		await(fd, POLLIN, deadline);
		buf_reserve(reply, 65536);
		n = recv(fd, reply->p + reply->len, reply->cap - reply->len,
		    MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			if (errno == ECONNRESET && reply->len > 0)
				break;
			die(EX_FAIL, "reading the reply: %s", strerror(errno));
		}
		reply->len += (size_t)n;
		if (reply->len > REPLY_MAX)
			die(EX_FAIL, "the reply is larger than %d MiB",
			    REPLY_MAX >> 20);
	}
}

int
main(int argc, char **argv)
{
	const char	*cmd, *exp = NULL, *dir = NULL, *why;
	char		*sock = NULL, *req, *err;
	struct buf	 reply;
	const struct jv	*e;
	struct jv	*d;
	unsigned long	 timeout = 90;
	int		 c, json = 0, fd, needs_exp;

	while ((c = getopt_long(argc, argv, "js:D:w:vh", longopts, NULL))
	    != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 's': free(sock); sock = xstrdup(optarg); break;
		case 'D': dir = optarg; break;
		case 'w':
			if (parse_uint(optarg, 86400, &timeout) == -1 ||
			    timeout == 0)
				die(EX_USAGE, "--timeout: \"%s\" is not a number "
				    "from 1 to 86400", optarg);
			break;
		case 'v':
			printf("oml2ctl (OML Server) %s\n", OML2_VERSION);
			return EX_OK;
		case 'h':
			fputs(usage_text, stdout);
			putchar('\n');
			fputs(help_text, stdout);
			return EX_OK;
		default:
			fputs(usage_text, stderr);
			return EX_USAGE;
		}
	}
	if (optind >= argc)
		die(EX_USAGE, "no command");
	cmd = argv[optind++];
	needs_exp = strcmp(cmd, "show") == 0 || strcmp(cmd, "close") == 0;
	if (!needs_exp && strcmp(cmd, "status") && strcmp(cmd, "list") &&
	    strcmp(cmd, "reopen-log") && strcmp(cmd, "stop"))
		die(EX_USAGE, "unknown command \"%s\"", cmd);
	if (needs_exp) {
		if (optind >= argc)
			die(EX_USAGE, "%s needs an experiment", cmd);
		exp = argv[optind++];
		if (!expname_valid(exp, strlen(exp), &why))
			die(EX_USAGE, "experiment: %s", why);
	}
	if (optind < argc)
		die(EX_USAGE, "unexpected argument \"%s\"", argv[optind]);
	if (sock == NULL)
		sock = default_socket(dir);
	signal(SIGPIPE, SIG_IGN);
	fd = connect_to(sock);
	xasprintf(&req, "%s%s%s\n", cmd, exp ? " " : "", exp ? exp : "");
	buf_init(&reply);
	converse(fd, req, &reply, (unsigned)timeout);
	close(fd);
	d = jparse(reply.p ? reply.p : "", reply.len);
	free(req);
	free(sock);
	if ((e = jget(d, "error")) != NULL) {
		err = show(e);
		fprintf(stderr, "oml2ctl: %s\n", err);
		free(err);
		jfree(d);
		buf_free(&reply);
		return EX_FAIL;
	}
	if (json)
		fwrite(reply.p, 1, reply.len, stdout);
	else if (strcmp(cmd, "status") == 0)
		print_status(d);
	else if (strcmp(cmd, "list") == 0)
		print_list(d);
	else if (strcmp(cmd, "show") == 0)
		print_show(d);
	else if (strcmp(cmd, "close") == 0)
		print_close(d);
	else if (strcmp(cmd, "reopen-log") == 0)
		printf("log reopened\n");
	else
		printf("server stopping\n");
	jfree(d);
	buf_free(&reply);
	if (fflush(stdout) == EOF || ferror(stdout))
		die(EX_FAIL, "writing the output: %s", strerror(errno));
	return EX_OK;
}
