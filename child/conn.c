/*
 * One client connection inside an experiment's process: the header phase
 * (§2), then text (§5) or binary (§6) tuples, each checked against its
 * stream (§4.1), with stream 0 following the metadata rules (§7.3).
 *
 * A bad tuple is logged and dropped and the connection goes on; a bad
 * header, a bad schema or an exceeded limit closes the connection.  Input
 * is read in large blocks and decoded in place.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/child.h"

#define READ_CHUNK	(256 * 1024)	/* the most one read takes */
#define READ_FIRST	4096		/* ... and the least: idle clients */
#define READS_PER_EVENT	8	/* then let the other clients in */
#define LOW_STREAMS	32	/* indices with a direct slot */
#define DROP_LOG_FIRST	10	/* dropped tuples logged one by one */
#define DROP_LOG_EVERY	10000
#define PROGRESS_BYTES	4096	/* of an unfinished line or packet ... */
#define PROGRESS_SHARE	16	/* ... or this share of it, if more */
#define START_MAX	253402300799L	/* 9999-12-31 23:59:59 UTC */
#define TRIM_ABOVE	(2 * READ_CHUNK)	/* input buffers shrink back */
#define SCRATCH_KEEP	(1024 * 1024)	/* rendered vectors kept for reuse */

enum state { ST_HEADER, ST_TEXT, ST_BINARY };

struct hislot {
	long		 index;
	struct table	*t;
};

struct conn {
	struct ev	 ev;
	char		 peer[64];
	uint16_t	 port;
	enum state	 st;
	int		 binary;
	struct buf	 in;
	size_t		 off;
	size_t		 held;		/* of in, charged to the budgets */
	int		 waiting;	/* for room in a budget */
	struct db	*db;
	char		*domain;
	char		*sender;
	char		*app;
	int		 sender_id;
	long		 offset;	/* start-time - S */
	struct table	*low[LOW_STREAMS];
	struct hislot	*high;		/* indices >= LOW_STREAMS, sorted */
	size_t		 rsize;		/* read size, grows while reads fill it */
	int		 nhigh;
	long		 maxindex;	/* highest declared index, -1 none */
	int		 nstreams;
	size_t		 hbytes;	/* header bytes so far (--max-header) */
	uint64_t	 last_rx;	/* last progress, for --timeout */
	size_t		 trickle;	/* bytes since then */
	int		 any_domain;	/* oml2-import --domain */
	uint64_t	 rows;
	uint64_t	 dropped;
	uint64_t	 bytes;		/* received */
	int		 protocol;	/* as its header says */
	double		 since;		/* connected, wall clock */
	uint64_t	 skipped;	/* binary garbage not yet reported */
	double		 now;		/* wall clock for this batch */
	struct text_line tl;
	struct oml_value *vals;
	int		 nvals;
	struct buf	 scratch;
	char		 why[160];	/* why the connection must close */
	int		 limit;		/* ... a limit, not the protocol */
};

static const char *const header_only[] = {
	"protocol", "domain", "experiment-id", "start-time", "start_time",
	"sender-id", "app-name", "content"
};

struct conn *
conn_new(int fd, const char *peer, uint16_t port)
{
	struct conn	*c;

	c = xcalloc(1, sizeof(*c));
	c->ev.kind = CEV_CONN;
	c->ev.fd = fd;
	strlcpy(c->peer, peer, sizeof(c->peer));
	c->port = port;
	c->maxindex = -1;
	c->rsize = READ_FIRST;
	c->last_rx = now_mono_ms();
	c->since = now_real();
	buf_init(&c->in);
	buf_init(&c->scratch);
	return c;
}

int
conn_fd(const struct conn *c)
{
	return c->ev.fd;
}

uint64_t
conn_last_rx(const struct conn *c)
{
	return c->last_rx;
}

const char *
conn_peer(const struct conn *c, uint16_t *port)
{
	*port = c->port;
	return c->peer;
}

size_t
conn_held(const struct conn *c)
{
	return c->held;
}

int
conn_waiting(const struct conn *c)
{
	return c->waiting;
}

void
conn_set_waiting(struct conn *c, int on)
{
	c->waiting = on;
}

const char *
conn_ident(const struct conn *c, const char **sender, const char **app)
{
	*sender = c->sender ? c->sender : "";
	*app = c->app ? c->app : "";
	return c->domain ? c->domain : "";
}

void
conn_figures(const struct conn *c, struct conn_fig *f)
{
	f->peer = c->peer;
	f->port = c->port;
	conn_ident(c, &f->sender, &f->app);
	f->protocol = c->protocol;
	f->binary = c->binary;
	f->ready = c->st != ST_HEADER;
	f->since = c->since;
	f->rows = c->rows;
	f->bytes = c->bytes;
	f->dropped = c->dropped;
}

static int	 fail(struct conn *, const char *, ...) PRINTFLIKE(2, 3);
static int	 fail_limit(struct conn *, const char *, ...) PRINTFLIKE(2, 3);

/*
 * Record why the connection must close, and whether for a limit (logged
 * as one) or the protocol; returns -1 for convenience.
 */
static int
vfail(struct conn *c, int limit, const char *fmt, va_list ap)
{
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	c->limit = limit;
	return -1;
}

static int
fail(struct conn *c, const char *fmt, ...)
{
	va_list	 ap;
	int	 r;

	va_start(ap, fmt);
	r = vfail(c, 0, fmt, ap);
	va_end(ap);
	return r;
}

static int
fail_limit(struct conn *c, const char *fmt, ...)
{
	va_list	 ap;
	int	 r;

	va_start(ap, fmt);
	r = vfail(c, 1, fmt, ap);
	va_end(ap);
	return r;
}

/* The same, for the experiment's process (its budgets: limits). */
void
conn_set_why(struct conn *c, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vfail(c, 1, fmt, ap);
	va_end(ap);
}

/* A dropped tuple: logged one by one at first, then in summaries. */
static void
drop(struct conn *c, const char *fmt, ...)
{
	char	 msg[256];
	va_list	 ap;

	c->dropped++;
	if (c->db != NULL)
		c->db->dropped++;
	if (c->dropped > DROP_LOG_FIRST && c->dropped % DROP_LOG_EVERY != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("client %s port %u: tuple dropped: %s%s", c->peer, c->port,
	    msg, c->dropped == DROP_LOG_FIRST ? " (further drops are "
	    "summarised)" : "");
	if (c->dropped > DROP_LOG_FIRST)
		log_warnx("client %s port %u: %llu tuples dropped so far",
		    c->peer, c->port, (unsigned long long)c->dropped);
}

static struct table *
stream_get(const struct conn *c, long index)
{
	int	 lo = 0, hi = c->nhigh - 1, mid;

	if (index < LOW_STREAMS)
		return c->low[index];
	while (lo <= hi) {
		mid = (lo + hi) / 2;
		if (c->high[mid].index == index)
			return c->high[mid].t;
		if (c->high[mid].index < index)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static int
stream_set(struct conn *c, long index, struct table *t)
{
	int	 i;

	if (stream_get(c, index) == NULL) {
		if (c->nstreams >= exp_conf()->max_streams)
			return fail_limit(c,
			    "more than --max-streams (%d) streams",
			    exp_conf()->max_streams);
		c->nstreams++;
	} else
		log_warnx("client %s port %u: stream %ld redefined as %s",
		    c->peer, c->port, index, t->schema.name);
	if (index > c->maxindex)
		c->maxindex = index;
	if (index < LOW_STREAMS) {
		c->low[index] = t;
		return 0;
	}
	for (i = 0; i < c->nhigh && c->high[i].index < index; i++)
		;
	if (i < c->nhigh && c->high[i].index == index) {
		c->high[i].t = t;
		return 0;
	}
	c->high = xreallocarray(c->high, (size_t)c->nhigh + 1,
	    sizeof(*c->high));
	memmove(&c->high[i + 1], &c->high[i],
	    (size_t)(c->nhigh - i) * sizeof(*c->high));
	c->high[i].index = index;
	c->high[i].t = t;
	c->nhigh++;
	return 0;
}

/* A schema from a header line or a ". schema" metadata tuple (§3.6). */
static int
declare(struct conn *c, const char *text, size_t len)
{
	struct oml_schema	 s;
	struct table		*t;
	char			 err[160];
	long			 index;

	if (c->db == NULL)
		return fail(c, "schema before domain");
	while (len > 0 && strchr(" \t\r\n\v\f", text[len - 1]) != NULL)
		len--;
	if (schema_parse(text, len, exp_conf()->max_fields, &s, err,
	    sizeof(err)) == -1) {
		fail(c, "bad schema \"%.*s\": %s", (int)(len > 60 ? 60 : len),
		    text, err);
		/* past --max-fields: a limit, not a malformed schema */
		c->limit = strncmp(err, SCHEMA_ERR_FIELDS,
		    strlen(SCHEMA_ERR_FIELDS)) == 0;
		return -1;
	}
	t = db_declare(c->db, &s);
	if (t == NULL) {
		fail(c, "no table can take schema %s", s.name);
		schema_free(&s);
		return -1;
	}
	index = s.index;
	schema_free(&s);
	log_debug("client %s port %u: stream %ld -> table %s", c->peer,
	    c->port, index, t->schema.name);
	return stream_set(c, index, t);
}

/* atoi-like: optional sign and digits after white space; junk ignored. */
static long
atol_lax(const char *s, size_t len)
{
	char	 tmp[32];

	if (len >= sizeof(tmp))
		len = sizeof(tmp) - 1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return strtol(tmp, NULL, 10);
}

/*
 * Does a schema among the header lines already read declare a blob?  The
 * first client of a new database decides its page size from this (see
 * store_sqlite.c); lines not read yet count for nothing.
 */
static int
headers_blob(const struct conn *c)
{
	struct oml_schema	 s;
	const char		*p = c->in.p + c->off, *end = c->in.p + c->in.len;
	const char		*nl, *k, *v;
	char			 err[16];
	size_t			 len, kl, vl;
	int			 i, blob = 0;

	for (; !blob && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL;
	    p = nl + 1) {
		len = (size_t)(nl - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0)
			break;		/* the end of the headers */
		if (header_split(p, len, &k, &kl, &v, &vl) == -1 ||
		    kl != 6 || memcmp(k, "schema", 6) != 0 ||
		    schema_parse(v, vl, exp_conf()->max_fields, &s, err,
		    sizeof(err)) == -1)
			continue;
		for (i = 0; i < s.nfields; i++)
			if (s.fields[i].type == OML_BLOB)
				blob = 1;
		schema_free(&s);
	}
	return blob;
}

static int
h_domain(struct conn *c, const char *v, size_t vl)
{
	const char	*why;

	if (c->any_domain) {	/* the experiment's, whatever the line says */
		v = exp_name();
		vl = strlen(v);
	}
	if (c->domain != NULL) {
		if (strlen(c->domain) == vl && memcmp(c->domain, v, vl) == 0)
			return 0;
		return fail(c, "a second, different domain");
	}
	if (!expname_valid(v, vl, &why))
		return fail(c, "bad experiment name: %s", why);
	if (strlen(exp_name()) != vl || memcmp(exp_name(), v, vl) != 0)
		return fail(c, "experiment %.*s routed to %s", (int)vl, v,
		    exp_name());
	c->domain = xstrndup(v, vl);
	if ((c->db = exp_db_acquire(headers_blob(c))) == NULL)
		return fail(c, "%s", db_refused() != NULL ? db_refused() :
		    "cannot open the experiment's database");
	return 0;
}

/*
 * start-time is Unix time in seconds, read like atoi (§2.2: "1400000000.5"
 * is 1400000000, junk is 0, which means none).  Anything before 1970 or
 * after 9999 is refused: such a time would wrap the client's offset and
 * its rows' oml_ts_client, or become the start of a whole experiment.
 */
static int
h_start(struct conn *c, const char *v, size_t vl)
{
	char	*s;
	long	 t;
	int	 range;

	if (c->db == NULL)
		return fail(c, "start-time before domain");
	s = xstrndup(v, vl);
	errno = 0;
	t = strtol(s, NULL, 10);
	range = errno == ERANGE;
	free(s);
	if (range || t < 0 || t > START_MAX)
		return fail(c, "start-time %s%ld is not a time from 1970 to "
		    "9999 in seconds (0 to %ld)", range ? "beyond " : "", t,
		    START_MAX);
	if (db_set_start(c->db, t) == -1)
		return fail(c, "cannot store the start time");
	/* the experiment's own start may come from an old database */
	if (__builtin_sub_overflow(t, c->db->start_time, &c->offset))
		return fail(c, "start-time %ld is too far from the "
		    "experiment's start time %ld", t, c->db->start_time);
	return 0;
}

static int
h_sender(struct conn *c, const char *v, size_t vl)
{
	if (c->db == NULL)
		return fail(c, "sender-id before domain");
	free(c->sender);
	c->sender = xstrndup(v, vl);
	if (db_sender(c->db, c->sender, &c->sender_id) == -1)
		return fail(c, "cannot register sender %s", c->sender);
	return 0;
}

static int
header_key(struct conn *c, const char *k, size_t kl, const char *v,
    size_t vl)
{
	long	 n;

#define KEY(s)	(kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
	if (KEY("protocol")) {
		n = atol_lax(v, vl);
		if (n < 1 || n > 5)
			return fail(c, "unsupported protocol %ld", n);
		c->protocol = (int)n;
		return 0;
	}
	if (KEY("domain") || KEY("experiment-id"))
		return h_domain(c, v, vl);
	if (KEY("start-time") || KEY("start_time"))
		return h_start(c, v, vl);
	if (KEY("sender-id"))
		return h_sender(c, v, vl);
	if (KEY("app-name")) {
		free(c->app);
		c->app = xstrndup(v, vl);
		return 0;
	}
	if (KEY("schema"))
		return declare(c, v, vl);
	if (KEY("content")) {
		if (vl == 4 && memcmp(v, "text", 4) == 0)
			c->binary = 0;
		else if (vl == 6 && memcmp(v, "binary", 6) == 0)
			c->binary = 1;
		else
			return fail(c, "unknown content \"%.*s\"",
			    (int)(vl > 20 ? 20 : vl), v);
		return 0;
	}
#undef KEY
	log_debug("client %s port %u: header %.*s ignored", c->peer, c->port,
	    (int)(kl > 40 ? 40 : kl), k);
	return 0;
}

static int
header_line(struct conn *c, const char *line, size_t len)
{
	const char	*k, *v;
	size_t		 kl, vl;

	if (len == 0) {
		if (c->domain == NULL)
			return fail(c, "headers ended without a domain");
		c->st = c->binary ? ST_BINARY : ST_TEXT;
		log_info("client %s port %u ready: %s:%s:%s (%s)", c->peer,
		    c->port, c->domain, c->sender ? c->sender : "",
		    c->app ? c->app : "", c->binary ? "binary" : "text");
		exp_report(c, REPORT_READY, "");
		return 0;
	}
	if (header_split(line, len, &k, &kl, &v, &vl) == -1)
		return fail(c, "header line without ':'");
	return header_key(c, k, kl, v, vl);
}

/* Which table a tuple for index goes to (§4.1 steps 1 and 2). */
static struct table *
tuple_table(struct conn *c, long index)
{
	struct table	*t;

	if (index < 0 || index > c->maxindex) {
		drop(c, "stream %ld was never declared", index);
		return NULL;
	}
	if ((t = stream_get(c, index)) == NULL && index == 0)
		t = c->db->meta;
	if (t == NULL)
		drop(c, "stream %ld was never declared", index);
	return t;
}

static int
is_str(const struct oml_value *v, const char *s)
{
	size_t	 n = strlen(s);

	return v->type == OML_STRING && v->u.s.len == n &&
	    memcmp(v->u.s.p, s, n) == 0;
}

/*
 * Stream 0 (§7.3): a ". schema" tuple declares a stream, header keys are
 * ignored, everything else is stored.  Returns 1 if consumed, 0 to store,
 * -1 if the connection must close.
 */
static int
metadata(struct conn *c, struct table *t, const struct oml_value *v)
{
	const struct oml_value	*key, *val;
	size_t			 i;

	if (t->f_subject < 0 || t->f_key < 0 || t->f_value < 0) {
		drop(c, "stream 0 table %s lacks subject, key or value",
		    t->schema.name);
		return 1;
	}
	key = &v[t->f_key];
	val = &v[t->f_value];
	if (!is_str(&v[t->f_subject], ".") || key->type != OML_STRING ||
	    val->type != OML_STRING)
		return 0;
	if (is_str(key, "schema"))
		return declare(c, val->u.s.p, val->u.s.len) == -1 ? -1 : 1;
	for (i = 0; i < nitems(header_only); i++)
		if (is_str(key, header_only[i])) {
			log_warnx("client %s port %u: metadata key %s is only "
			    "valid in the headers; ignored", c->peer, c->port,
			    header_only[i]);
			return 1;
		}
	return 0;
}

/* A large row's rendered vectors are not kept for the next one. */
static void
scratch_trim(struct conn *c)
{
	if (c->scratch.cap > SCRATCH_KEEP)
		buf_free(&c->scratch);
}

/* A row refused by the decoder; one too long once stored names why. */
static void
drop_bad(struct conn *c, const struct table *t, const char *why)
{
	if (strcmp(why, OML_TOO_LONG) == 0)
		drop(c, "%s: row longer than --max-packet (%zu) once stored",
		    t->schema.name, exp_conf()->max_packet);
	else
		drop(c, "%s: %s", t->schema.name, why);
	scratch_trim(c);
}

static int
store(struct conn *c, struct table *t, long index, int32_t seq, double ts,
    int n)
{
	struct row	 r;
	int		 m;

	if (index == 0 && (m = metadata(c, t, c->vals)) != 0)
		return m == -1 ? -1 : 0;
	r.sender = c->sender_id;
	r.seq = seq;
	r.ts_client = ts + (double)c->offset;
	r.ts_server = c->now - (double)c->db->start_time;
	r.n = n;
	r.v = c->vals;
	r.bytes = &c->scratch;		/* the backend may keep it */
	if (db_insert(c->db, t, &r) == -1)
		drop(c, "%s: the database refused the row", t->schema.name);
	else {
		c->rows++;
		stats_stored(t, c->vals);
	}
	scratch_trim(c);
	return 0;
}

static void
vals_reserve(struct conn *c, int n)
{
	if (n > c->nvals) {
		c->vals = xreallocarray(c->vals, (size_t)n, sizeof(*c->vals));
		c->nvals = n;
	}
}

static int
text_tuple(struct conn *c, char *line, size_t len)
{
	struct table	*t;
	const char	*why;
	double		 ts;
	long		 index;
	int32_t		 seq;
	int		 n;

	if (len == 0) {
		drop(c, "empty line");
		return 0;
	}
	if (text_split(line, len, &c->tl, &ts, &index, &seq) == -1) {
		drop(c, "fewer than 3 fields");
		return 0;
	}
	if ((t = tuple_table(c, index)) == NULL)
		return 0;
	stats_tuple(c->sender_id, c->sender, t, seq);
	n = c->tl.n - 3;
	if (n != t->schema.nfields) {
		drop(c, "%d values for %s, which has %d", n, t->schema.name,
		    t->schema.nfields);
		return 0;
	}
	vals_reserve(c, n);
	if (text_values(&c->tl, t->types, n, c->vals, &c->scratch,
	    exp_conf()->max_packet, &why) == -1) {
		drop_bad(c, t, why);
		return 0;
	}
	return store(c, t, index, seq, ts, n);
}

static int
bin_tuple(struct conn *c, const struct bin_packet *p)
{
	struct table	*t;
	const char	*why;

	if ((t = tuple_table(c, p->stream)) == NULL)
		return 0;
	stats_tuple(c->sender_id, c->sender, t, p->seq);
	if (p->count != t->schema.nfields) {
		drop(c, "%d values for %s, which has %d", p->count,
		    t->schema.name, t->schema.nfields);
		return 0;
	}
	vals_reserve(c, p->count);
	if (bin_values(p, t->types, p->count, c->vals, &c->scratch,
	    exp_conf()->max_packet, &why) == -1) {
		drop_bad(c, t, why);
		return 0;
	}
	return store(c, t, p->stream, p->seq, p->ts, p->count);
}

static void
report_skipped(struct conn *c)
{
	if (c->skipped == 0)
		return;
	log_warnx("client %s port %u: skipped %llu bytes of garbage", c->peer,
	    c->port, (unsigned long long)c->skipped);
	c->skipped = 0;
}

/* One step of the binary phase.  1: go on, 0: need more, -1: close. */
static int
bin_step(struct conn *c, const char *p, size_t len, size_t *used)
{
	struct bin_packet	 pkt;
	const char		*why = NULL;

	switch (bin_next((const uint8_t *)p, len, exp_conf()->max_packet,
	    &pkt, used, &why)) {
	case BIN_NEED:
		return 0;
	case BIN_SKIP:
		c->skipped += *used;
		return 1;
	case BIN_BAD:
		report_skipped(c);
		drop(c, "malformed packet: %s", why ? why : "?");
		return 1;
	case BIN_TOOBIG:
		return fail_limit(c,
		    "binary packet longer than --max-packet (%zu)",
		    exp_conf()->max_packet);
	case BIN_PACKET:
		report_skipped(c);
		return bin_tuple(c, &pkt) == -1 ? -1 : 1;
	}
	return -1;
}

/*
 * The whole header, from the first byte to the blank line, is bounded:
 * lines of --max-line each could otherwise go on for ever.
 */
static int
header_room(struct conn *c, size_t more)
{
	if (more > exp_conf()->max_header - c->hbytes)
		return fail_limit(c, "header longer than --max-header (%zu)",
		    exp_conf()->max_header);
	return 0;
}

/* One step of a line-based phase.  1: go on, 0: need more, -1: close. */
static int
line_step(struct conn *c, char *p, size_t len, size_t *used)
{
	long	 n;

	n = line_next(p, len, used);
	if (c->st == ST_HEADER) {
		if (header_room(c, n < 0 ? len : *used) == -1)
			return -1;
		if (n >= 0)
			c->hbytes += *used;
	}
	if (n < 0) {
		if (len > exp_conf()->max_line)
			return fail_limit(c, "%s line longer than --max-line (%zu)",
			    c->st == ST_HEADER ? "header" : "text",
			    exp_conf()->max_line);
		return 0;
	}
	if ((size_t)n > exp_conf()->max_line)
		return fail_limit(c, "%s line longer than --max-line (%zu)",
		    c->st == ST_HEADER ? "header" : "text",
		    exp_conf()->max_line);
	if (c->st == ST_HEADER)
		return header_line(c, p, (size_t)n) == -1 ? -1 : 1;
	return text_tuple(c, p, (size_t)n) == -1 ? -1 : 1;
}

/*
 * The unfinished line or packet at the front of the buffer: a packet's
 * whole length once its header is in, else the longest a line may be.
 */
static size_t
unit_size(const struct conn *c)
{
	if (c->st == ST_BINARY)
		return bin_need((const uint8_t *)c->in.p, c->in.len);
	return exp_conf()->max_line;
}

/*
 * Make room in the input buffer for one read of c->rsize bytes, charging
 * the budgets first.  Growth doubles, but never past the end of a packet
 * whose length is known (the read is then shorter).  0: done, 1: no room
 * for now (the experiment's process waits for some), -1: close (c->why).
 */
static int
in_reserve(struct conn *c, int force)
{
	size_t	 cap, need;
	int	 r;

	cap = buf_cap_for(&c->in, c->rsize);
	if (cap == c->in.cap)
		return 0;
	need = c->st == ST_BINARY ? unit_size(c) : 0;
	if (need > c->in.len && need <= c->in.cap)
		return 0;		/* room enough to end the packet */
	if (need > c->in.len && need < cap)
		cap = need;
	if ((r = exp_mem_take(c, cap - c->held, force)) != 0)
		return r;
	buf_setcap(&c->in, cap);
	c->held = cap;
	return 0;
}

/* After a large packet or line, give its memory back. */
static void
in_trim(struct conn *c)
{
	size_t	 cap;

	if (c->in.cap <= TRIM_ABOVE || c->in.len > c->in.cap / 4)
		return;
	cap = c->in.len * 2 > READ_CHUNK ? c->in.len * 2 : READ_CHUNK;
	buf_setcap(&c->in, cap);
	cap = c->held - c->in.cap;
	c->held = c->in.cap;
	exp_mem_give(c, cap);
}

/* Decode everything complete in the buffer.  -1: close (c->why). */
static int
process(struct conn *c)
{
	size_t	 used, share;
	int	 r, done;

	c->now = now_real();
	while (c->off < c->in.len) {
		used = 0;
		if (c->st == ST_BINARY)
			r = bin_step(c, c->in.p + c->off, c->in.len - c->off,
			    &used);
		else
			r = line_step(c, c->in.p + c->off, c->in.len - c->off,
			    &used);
		if (r == -1)
			return -1;
		if (r == 0)
			break;
		c->off += used;
		/* more rows buffered than the backend should hold */
		if (c->off < c->in.len && c->db != NULL &&
		    db_wants_commit(c->db))
			db_commit(c->db);
	}
	/* keep only the incomplete tail, at the front */
	done = c->off > 0;
	buf_drop(&c->in, c->off);
	c->off = 0;
	/*
	 * Progress resets the idle clock: something complete, or a
	 * sixteenth (at least 4 KiB) of the unfinished line or packet.  A
	 * client dribbling bytes without ever finishing one is idle,
	 * however often it sends some, and one that finishes a line or
	 * packet must do so within 16 timeouts.
	 */
	share = unit_size(c) / PROGRESS_SHARE;
	if (done || c->trickle >= (share > PROGRESS_BYTES ? share :
	    PROGRESS_BYTES)) {
		c->last_rx = now_mono_ms();
		c->trickle = 0;
	}
	return 0;
}

/*
 * For oml2-import --domain: the connection belongs to the experiment
 * whatever a "domain" header line names.
 */
void
conn_any_domain(struct conn *c)
{
	c->any_domain = 1;
}

/*
 * Bytes received but not decoded: an unfinished header line, text line or
 * binary packet (what, for the log), which the end of the input cut short.
 */
size_t
conn_unfinished(const struct conn *c, const char **what)
{
	*what = c->st == ST_HEADER ? "header line" : c->st == ST_TEXT ?
	    "text line" : "binary packet";
	return c->in.len - c->off;
}

/*
 * Bytes the master read before the hand-over (or a file's, for
 * oml2-import).  END_NONE, or why the connection must close: a limit or
 * the protocol.
 */
enum conn_end
conn_feed(struct conn *c, const char *p, size_t len)
{
	c->bytes += len;
	stats_rx(len);
	buf_add(&c->in, p, len);
	exp_mem_take(c, c->in.cap - c->held, 1);	/* already here */
	c->held = c->in.cap;
	if (process(c) == -1)
		return c->limit ? END_LIMIT : END_PROTOCOL;
	return END_NONE;
}

/*
 * Read what the socket has (a bounded amount per call, for fairness,
 * unless draining at shutdown) and process it.  Returns END_NONE to keep
 * the connection, else why it ends.
 */
enum conn_end
conn_read(struct conn *c, int drain)
{
	ssize_t	 n;
	size_t	 budget = SIZE_MAX, room;
	int	 i, queued, r;

	/*
	 * Draining takes what was queued when it began (and one chunk
	 * more, to see an end of file), not a stream that never ends: a
	 * client streaming for ever must not keep a finishing process.
	 */
	if (drain && ioctl(c->ev.fd, FIONREAD, &queued) == 0 && queued >= 0)
		budget = (size_t)queued + READ_CHUNK;
	for (i = 0; drain ? budget > 0 : i < READS_PER_EVENT; i++) {
		/* small for idle clients, large for busy ones */
		if ((r = in_reserve(c, drain)) == 1)
			return END_NONE;
		if (r == -1)
			return END_LIMIT;
		room = c->in.cap - c->in.len;
		n = read(c->ev.fd, c->in.p + c->in.len, room);
		if (n > 0 && (size_t)n == room && c->rsize < READ_CHUNK)
			c->rsize *= 2;
		if (n == 0)
			return END_EOF;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return END_NONE;
			fail(c, "%s", strerror(errno));
			return END_ERROR;
		}
		c->in.len += (size_t)n;
		c->trickle += (size_t)n;
		c->bytes += (size_t)n;
		stats_rx((size_t)n);
		budget -= (size_t)n < budget ? (size_t)n : budget;
		if (process(c) == -1)
			return c->limit ? END_LIMIT : END_PROTOCOL;
		in_trim(c);
		/* the database stalled, or must commit: read no more now */
		if (!drain && c->db != NULL && (db_stalled(c->db) ||
		    db_wants_commit(c->db)))
			break;
		if (drain && c->db != NULL && db_wants_commit(c->db))
			db_commit(c->db);
	}
	return END_NONE;
}

/* Log why the connection ends, release its database, free it. */
void
conn_close(struct conn *c, enum conn_end why)
{
	static const char *const what[] = {
		[END_NONE] = "closed", [END_EOF] = "closed by the client",
		[END_IDLE] = "idle timeout", [END_PROTOCOL] = "protocol error",
		[END_ERROR] = "socket error", [END_SHUTDOWN] = "server stopping",
		[END_LIMIT] = "limit reached",
		[END_CLOSED] = "closed by the operator",
	};
	size_t	 held;

	report_skipped(c);
	if (why == END_PROTOCOL || why == END_ERROR || why == END_LIMIT)
		log_warnx("client %s port %u: %s: %s; connection closed",
		    c->peer, c->port, what[why], c->why);
	if (c->st != ST_HEADER || (why != END_PROTOCOL && !c->limit))
		log_info("client %s port %u %s: %llu rows stored, %llu "
		    "dropped", c->peer, c->port, what[why],
		    (unsigned long long)c->rows,
		    (unsigned long long)c->dropped);
	close(c->ev.fd);
	c->ev.fd = -1;
	if (c->db != NULL)
		exp_db_release();
	c->db = NULL;
	text_line_free(&c->tl);
	held = c->held;
	c->held = 0;
	exp_mem_give(c, held);
	buf_free(&c->in);
	buf_free(&c->scratch);
	free(c->vals);
	free(c->high);
	free(c->domain);
	free(c->sender);
	free(c->app);
}
