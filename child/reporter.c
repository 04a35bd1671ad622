/*
 * The reporter: self-reporting over OML (PROTOCOL.md §10.9) in a process
 * of its own, forked by the master and as unprivileged as an experiment
 * process.  The server is an OML application "server" whose MP "clients"
 * records every client's Connect, Ready and Disconnect: the master sends
 * each as MSG_EVENT on the channel, its own (Connect, and the connections
 * it closes itself) and those of the experiment processes, which it has
 * checked.  The reporter also sends liboml2's own measurement point,
 * _client_instrumentation (stream 1), as liboml2 did for the original:
 * once when a destination takes the stream, then every INSTR_MS while it
 * does, and once more at the end.  Its figures are the reporter's own: measurements_injected, the
 * rows it made (of either stream); measurements_dropped, those it had to
 * drop; bytes_allocated and bytes_freed, the bytes of rows its send queue
 * took and released once written; bytes_in_use their difference, and
 * bytes_max the most it ever was.
 *
 * The reporter never waits for the collector: rows go into a buffer
 * bounded by --oml-bufsize and are written when the socket takes them.
 * When the buffer is full, new rows are dropped and counted until half of
 * it has been written (their sequence numbers are skipped, so the gaps
 * show at the collector).  The socket's own kernel buffer is held small
 * too, so that the bound means what it says.  A lost connection is
 * retried with a growing delay; each new connection starts with the
 * header again and resumes at the first row not completely written.  A
 * file destination (opened by the master, which passes it as MSG_SINK)
 * is written the same way.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/reporter.h"
#include "proto/proto.h"

enum { REV_CTL = 1, REV_DEST };

#define DEFAULT_PORT	"3003"
#define BACKOFF_MIN_MS	250
#define BACKOFF_MAX_MS	10000
#define STABLE_MS	10000	/* a connection this old resets the backoff */
#define CONNECT_MS	10000	/* give up on a connection attempt */
#define FILE_RETRY_MS	250
#define COMPACT_MIN	65536
#define SNDBUF_MAX	65536	/* the collector socket's kernel buffer */
#define INSTR_STREAM	1
#define CLIENTS_STREAM	2
#define INSTR_MS	5000	/* _client_instrumentation, while up */
#define CHAN_QMAX	(64 * 1024)	/* it sends only READY */

/* As liboml2 declared them for the original (§10.9). */
static const char *const schema_text[] = {
	OML_META_SCHEMA,
	("1 _client_instrumentation measurements_injected:uint32 "
	    "measurements_dropped:uint32 bytes_allocated:uint64 "
	    "bytes_freed:uint64 bytes_in_use:uint64 bytes_max:uint64"),
	("2 server_clients address:string port:int32 node_id:string "
	    "domain:string appname:string event:string message:string"),
};

static const char *const event_name[REPORT_EVENT_MAX] = {
	[REPORT_CONNECT] = "Connect",
	[REPORT_READY] = "Ready",
	[REPORT_DISCONNECT] = "Disconnect",
};

enum rstate { ST_WAIT, ST_CONNECTING, ST_UP };

static struct {
	const struct report_conf *rc;
	struct chan	 ch;		/* to the master */
	int		 file;		/* a file destination, else TCP */
	char		*host, *port, *path;
	struct addrinfo	*addrs, *cur;
	struct ev	 ev;
	uint32_t	 events;	/* registered with epoll, 0 if not */
	enum rstate	 st;
	uint64_t	 retry_at;	/* monotonic ms, 0 if none */
	unsigned	 backoff;
	uint64_t	 up_since;
	int		 complained;	/* the current outage is logged */
	long		 start;
	int32_t		 seq, iseq;	/* of each stream */
	uint64_t	 instr_at;	/* the next instrumentation row */
	uint64_t	 injected;	/* rows made */
	uint64_t	 b_alloc, b_freed, b_max;	/* the queue's bytes */
	struct buf	 hdr;
	size_t		 hdr_off;	/* header bytes written */
	struct buf	 q;		/* rows not yet completely written */
	size_t		 head;		/* start of the first of them */
	size_t		 wr;		/* next byte to write */
	size_t		*ends;		/* end offset of each queued row */
	size_t		 ehead, nends, endcap;
	struct buf	 row;
	uint64_t	 written, dropped, run;
} r = { .ev = { .kind = REV_DEST, .fd = -1 } };

/* ---- destination ------------------------------------------------------ */

static int
port_ok(const char *s)
{
	unsigned long	 v;

	return parse_uint(s, 65535, &v) == 0 && v > 0;
}

/*
 * file:PATH (or flush:PATH), or [tcp:][//]HOST[:PORT] with IPv6 literals
 * in brackets.  Fills the malloc'd parts, or returns -1 with *why.
 */
int
report_dest_parse(const char *uri, char **host, char **port, char **path,
    const char **why)
{
	const char	*s = uri, *c, *e;

	*host = *port = *path = NULL;
	if (strncmp(s, "file:", 5) == 0 || strncmp(s, "flush:", 6) == 0) {
		s = strchr(s, ':') + 1;
		if (*s == '\0') {
			*why = "no file name";
			return -1;
		}
		*path = xstrdup(s);
		return 0;
	}
	if (strncmp(s, "tcp:", 4) == 0)
		s += 4;
	if (strncmp(s, "//", 2) == 0)
		s += 2;
	if (*s == '[') {
		if ((e = strchr(s, ']')) == NULL || e == s + 1 ||
		    (e[1] != '\0' && e[1] != ':')) {
			*why = "bad bracketed address";
			return -1;
		}
		*host = xstrndup(s + 1, (size_t)(e - s - 1));
		c = e[1] == ':' ? e + 1 : NULL;
	} else {
		c = strchr(s, ':');
		if (c != NULL && strchr(c + 1, ':') != NULL) {
			*why = "expected HOST:PORT (IPv6 addresses go in [])";
			return -1;
		}
		*host = c ? xstrndup(s, (size_t)(c - s)) : xstrdup(s);
	}
	*port = xstrdup(c ? c + 1 : DEFAULT_PORT);
	if (**host == '\0' || !port_ok(*port)) {
		*why = **host == '\0' ? "no host" : "the port must be a number "
		    "from 1 to 65535";
		free(*host);
		free(*port);
		*host = *port = NULL;
		return -1;
	}
	return 0;
}

int
report_dest_check(const char *uri, const char **why)
{
	char	*h, *p, *f;

	if (report_dest_parse(uri, &h, &p, &f, why) == -1)
		return -1;
	free(h);
	free(p);
	free(f);
	return 0;
}

/* ---- epoll and the row queue ------------------------------------------ */

/* The destination, for the log. */
static const char *
dest(void)
{
	static char	 s[300];

	if (r.file)
		return r.path;
	snprintf(s, sizeof(s), "%s%s%s:%s", strchr(r.host, ':') ? "[" : "",
	    r.host, strchr(r.host, ':') ? "]" : "", r.port);
	return s;
}


static void
want(uint32_t events)
{
	if (r.file || events == r.events)
		return;
	if (r.events == 0)
		ev_add(&r.ev, events);
	else
		ev_mod(&r.ev, events);
	r.events = events;
}

static void
sock_close(void)
{
	if (r.ev.fd == -1)
		return;
	if (r.events != 0)
		ev_del(&r.ev);
	r.events = 0;
	close(r.ev.fd);
	r.ev.fd = -1;
}

/* Forget rows already written, moving the rest to the front when it pays. */
static void
compact(void)
{
	size_t	 i;

	if (r.head == r.q.len) {
		r.q.len = r.head = r.wr = 0;
		r.ehead = r.nends = 0;
		return;
	}
	if (r.head < COMPACT_MIN || r.head < r.q.len / 2)
		return;
	buf_drop(&r.q, r.head);
	for (i = r.ehead; i < r.nends; i++)
		r.ends[i - r.ehead] = r.ends[i] - r.head;
	r.nends -= r.ehead;
	r.ehead = 0;
	r.wr -= r.head;
	r.head = 0;
}

/* n more bytes written: rows written completely leave the queue. */
static void
advance(size_t n)
{
	size_t	 was = r.head;

	r.wr += n;
	while (r.ehead < r.nends && r.ends[r.ehead] <= r.wr) {
		r.head = r.ends[r.ehead++];
		r.written++;
	}
	r.b_freed += r.head - was;
}

static void	 dest_lost(const char *why);
static void	 instrument(void);

/* Write the header, then queued rows, until done or the socket is full. */
static void
dest_flush(void)
{
	const char	*p;
	size_t		 len;
	ssize_t		 n;

	while (r.st == ST_UP) {
		if (r.hdr_off < r.hdr.len) {
			p = r.hdr.p + r.hdr_off;
			len = r.hdr.len - r.hdr_off;
		} else if (r.wr < r.q.len) {
			p = r.q.p + r.wr;
			len = r.q.len - r.wr;
		} else
			break;
		n = write(r.ev.fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN && !r.file) {
			want(EPOLLIN | EPOLLRDHUP | EPOLLOUT);
			return;
		}
		if (n <= 0) {
			dest_lost(n == 0 ? "nothing written" : strerror(errno));
			return;
		}
		if (r.hdr_off < r.hdr.len)
			r.hdr_off += (size_t)n;
		else
			advance((size_t)n);
	}
	compact();
	if (r.file && r.complained) {
		log_info("self-report: %s: writing again", dest());
		r.complained = 0;
	}
	if (r.st == ST_UP)
		want(EPOLLIN | EPOLLRDHUP);
}

/* ---- connection ------------------------------------------------------- */

/* The next attempt, after a delay that grows while attempts fail. */
static void
retry_later(void)
{
	uint64_t	 now = now_mono_ms();

	r.st = ST_WAIT;
	if (r.up_since != 0 && now - r.up_since >= STABLE_MS)
		r.backoff = BACKOFF_MIN_MS;
	r.up_since = 0;
	r.retry_at = now + r.backoff;
	r.backoff = r.backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
	    r.backoff * 2;
}

/*
 * Lost or failed: a file is retried as it is, a socket reconnects.  A
 * collector that closes a connection with nothing left to send has most
 * likely reaped it as idle: as liboml2 did, reconnect with the next report.
 */
static void
dest_lost(const char *why)
{
	if (!r.file && r.st == ST_UP && r.nends == r.ehead &&
	    r.hdr_off == r.hdr.len) {
		log_info("self-report: %s: %s; reconnecting with the next "
		    "report", dest(), why);
		sock_close();
		r.hdr_off = 0;
		r.st = ST_WAIT;
		r.retry_at = 0;
		r.up_since = 0;
		r.backoff = BACKOFF_MIN_MS;
		return;
	}
	if (!r.complained)
		log_warnx("self-report: %s: %s; %s", dest(), why,
		    r.file ? "retrying" : "reconnecting");
	r.complained = 1;
	if (r.file) {
		r.retry_at = now_mono_ms() + FILE_RETRY_MS;
		return;
	}
	sock_close();
	r.wr = r.head;	/* a row cut short is sent again, whole */
	r.hdr_off = 0;
	retry_later();
}

static void
up(void)
{
	r.st = ST_UP;
	r.up_since = now_mono_ms();
	r.retry_at = 0;
	r.hdr_off = 0;
	r.wr = r.head;
	if (r.complained)
		log_info("self-report: connected to %s again", dest());
	else
		log_info("self-report: connected to %s", dest());
	r.complained = 0;
	want(EPOLLIN | EPOLLRDHUP);
	instrument();
	dest_flush();
}

/* Try r.cur and the addresses after it; on failure, retry later. */
static void
try_connect(void)
{
	const char	*why = "no address";
	int		 fd, sndbuf;

	/* Keep the kernel from holding megabytes for a stalled collector. */
	sndbuf = r.rc->bufsize < SNDBUF_MAX ? (int)r.rc->bufsize :
	    SNDBUF_MAX;

	for (; r.cur != NULL; r.cur = r.cur->ai_next) {
		fd = socket(r.cur->ai_family, r.cur->ai_socktype |
		    SOCK_NONBLOCK | SOCK_CLOEXEC, r.cur->ai_protocol);
		if (fd == -1) {
			why = strerror(errno);
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		if (connect(fd, r.cur->ai_addr, r.cur->ai_addrlen) == 0 ||
		    errno == EINPROGRESS) {
			r.ev.fd = fd;
			r.st = ST_CONNECTING;
			r.retry_at = now_mono_ms() + CONNECT_MS;
			want(EPOLLOUT);
			return;
		}
		why = strerror(errno);
		close(fd);
	}
	if (!r.complained)
		log_warnx("self-report: cannot connect to %s: %s; retrying",
		    dest(), why);
	r.complained = 1;
	retry_later();
}

static void
connect_done(void)
{
	socklen_t	 sl = sizeof(int);
	int		 err = 0;

	if (getsockopt(r.ev.fd, SOL_SOCKET, SO_ERROR, &err, &sl) == -1)
		err = errno;
	if (err == 0) {
		up();
		return;
	}
	sock_close();
	r.cur = r.cur->ai_next;
	if (r.cur == NULL) {
		if (!r.complained)
			log_warnx("self-report: cannot connect to %s: %s; "
			    "retrying", dest(), strerror(err));
		r.complained = 1;
		retry_later();
		return;
	}
	try_connect();
}

/* The collector has nothing to say; its end of file means it has gone. */
static void
drain(void)
{
	char	 b[512];
	ssize_t	 n;

	for (;;) {
		n = read(r.ev.fd, b, sizeof(b));
		if (n > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		dest_lost(n == 0 ? "closed by the collector" : strerror(errno));
		return;
	}
}

static void
dest_io(uint32_t events)
{
	if (r.st == ST_CONNECTING) {
		connect_done();
		return;
	}
	if (r.st != ST_UP)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		drain();
	if (r.st == ST_UP && (events & EPOLLOUT))
		dest_flush();
}

static uint64_t
dest_tick(uint64_t now)
{
	if (r.st == ST_UP && r.instr_at != 0 && now >= r.instr_at)
		instrument();
	if (r.retry_at == 0)
		return r.st == ST_UP ? r.instr_at : 0;
	if (now < r.retry_at)
		return r.retry_at;
	r.retry_at = 0;
	switch (r.st) {
	case ST_WAIT:
		r.cur = r.addrs;
		try_connect();
		break;
	case ST_CONNECTING:
		sock_close();
		if (!r.complained)
			log_warnx("self-report: cannot connect to %s: timed "
			    "out; retrying", dest());
		r.complained = 1;
		retry_later();
		break;
	case ST_UP:
		dest_flush();	/* a file that refused a write */
		break;
	}
	return r.retry_at;
}

/* ---- rows ------------------------------------------------------------- */


/*
 * Queue one row of stream, made in r.row.  Once the buffer is full, rows
 * are dropped until half of it has gone: fewer, longer runs.
 */
static void
queue_row(void)
{
	size_t	 pending;

	r.injected++;
	pending = r.q.len - r.head + r.row.len;
	if (pending > r.rc->bufsize ||
	    (r.run > 0 && pending > r.rc->bufsize / 2)) {
		if (r.run++ == 0)
			log_warnx("self-report: %s is not taking reports and "
			    "--oml-bufsize (%zu bytes) is full; dropping "
			    "client events", dest(), r.rc->bufsize);
		r.dropped++;
		return;
	}
	if (r.run > 0)
		log_warnx("self-report: %llu client events dropped (%llu in "
		    "all)", (unsigned long long)r.run,
		    (unsigned long long)r.dropped);
	r.run = 0;
	buf_add(&r.q, r.row.p, r.row.len);
	r.b_alloc += r.row.len;
	if (r.b_alloc - r.b_freed > r.b_max)
		r.b_max = r.b_alloc - r.b_freed;
	if (r.nends == r.endcap) {
		r.endcap = r.endcap ? r.endcap * 2 : 64;
		r.ends = xreallocarray(r.ends, r.endcap, sizeof(*r.ends));
	}
	r.ends[r.nends++] = r.q.len;
	if (r.st == ST_UP && r.retry_at == 0 && !(r.events & EPOLLOUT))
		dest_flush();
	else if (!r.file && r.st == ST_WAIT && r.retry_at == 0) {
		r.cur = r.addrs;	/* idle since the collector closed */
		try_connect();
	}
}

/* The time of a row: microseconds are plenty, and print short in text. */
static double
row_time(void)
{
	return (double)llround((now_real() - (double)r.start) * 1e6) / 1e6;
}

static void
make_row(int stream, int32_t seq, const struct oml_value *v, int n)
{
	r.row.len = 0;
	if (r.rc->binary)
		enc_bin_row(&r.row, stream, seq, row_time(), v, n, 0);
	else
		enc_text_row(&r.row, stream, seq, row_time(), v, n);
}

static void
str(struct oml_value *v, const char *s)
{
	v->type = OML_STRING;
	v->null = 0;
	v->u.s.p = s;
	v->u.s.len = strlen(s);
}

static void
emit(enum report_event ev, const char *address, uint16_t port,
    const char *node, const char *domain, const char *app,
    const char *message)
{
	struct oml_value	 v[7];

	str(&v[0], address);
	v[1].type = OML_INT32;
	v[1].null = 0;
	v[1].u.i32 = port;
	str(&v[2], node);
	str(&v[3], domain);
	str(&v[4], app);
	str(&v[5], event_name[ev]);
	str(&v[6], message);
	make_row(CLIENTS_STREAM, ++r.seq, v, 7);
	queue_row();
}

/* liboml2's own measurement point: the reporter's figures (see above). */
static void
instrument(void)
{
	struct oml_value	 v[6];
	uint64_t		 u[6];
	int			 i;

	r.instr_at = now_mono_ms() + INSTR_MS;
	u[0] = r.injected + 1;		/* this row too */
	u[1] = r.dropped;
	u[2] = r.b_alloc;
	u[3] = r.b_freed;
	u[4] = r.b_alloc - r.b_freed;
	u[5] = r.b_max;
	for (i = 0; i < 6; i++) {
		v[i].null = 0;
		if (i < 2) {
			v[i].type = OML_UINT32;
			v[i].u.u32 = (uint32_t)u[i];
		} else {
			v[i].type = OML_UINT64;
			v[i].u.u64 = u[i];
		}
	}
	make_row(INSTR_STREAM, ++r.iseq, v, 6);
	queue_row();
}

/* A client event from the master (checked there): a Ready or the like. */
static void
event(const char *data, size_t len)
{
	struct msg_report	 m;
	char			 s[RS_MAX][REPORT_MAX_NAME + 1];
	size_t			 off = sizeof(m), i;

	memcpy(&m, data, sizeof(m));
	if (m.event >= REPORT_EVENT_MAX)
		fatalx("event message: bad event %u", m.event);
	for (i = 0; i < RS_MAX; i++) {
		if (m.len[i] > REPORT_MAX_NAME || m.len[i] > len - off)
			fatalx("event message: bad string length");
		memcpy(s[i], data + off, m.len[i]);
		s[i][m.len[i]] = '\0';
		off += m.len[i];
	}
	emit(m.event, s[RS_ADDRESS], m.port, s[RS_NODE], s[RS_DOMAIN],
	    s[RS_APP], s[RS_MESSAGE]);
}

/* ---- start and stop --------------------------------------------------- */

static void
make_header(void)
{
	struct oml_schema	 s[nitems(schema_text)];
	struct enc_header	 h;
	char			 err[160];
	size_t			 i;

	for (i = 0; i < nitems(schema_text); i++)
		if (schema_parse(schema_text[i], strlen(schema_text[i]), 0,
		    &s[i], err, sizeof(err)) == -1)
			fatalx("self-report schema: %s", err);
	memset(&h, 0, sizeof(h));
	h.protocol = 5;
	h.domain = r.rc->domain;
	h.start_time = r.start;
	h.sender = r.rc->id;
	h.app = "server";
	h.schemas = s;
	h.nschemas = (int)nitems(s);
	h.binary = r.rc->binary;
	enc_header(&r.hdr, &h);
	for (i = 0; i < nitems(s); i++)
		schema_free(&s[i]);
}

static int
resolve(void)
{
	struct addrinfo	 hints;
	int		 e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((e = getaddrinfo(r.host, r.port, &hints, &r.addrs)) != 0) {
		log_error("self-report: cannot resolve %s: %s", r.host,
		    gai_strerror(e));
		return -1;
	}
	return 0;
}

/* At the end: one last write of what is queued, and the totals. */
static __dead void
stop(void)
{
	if (r.st == ST_UP) {
		instrument();		/* the last figures */
		dest_flush();
	}
	if (r.dropped > 0 || r.nends > r.ehead)
		log_warnx("self-report: %llu rows written, %llu "
		    "dropped, %zu never written", (unsigned long long)r.written,
		    (unsigned long long)r.dropped, r.nends - r.ehead);
	else
		log_info("self-report: %llu rows written",
		    (unsigned long long)r.written);
	exit(0);
}

/* The master's word; anything the table allows but a reporter does not
 * take is as fatal as what the table refuses. */
static void
ctl_read(void)
{
	static struct msg	 m;
	uint32_t		 cont;
	int			 rv;

	while ((rv = chan_recv(&r.ch, &m)) == CHAN_MSG) {
		switch (m.hdr.type) {
		case MSG_EVENT:
			event(m.data, m.hdr.len);
			break;
		case MSG_SINK:
			if (!r.file || r.ev.fd != -1)
				fatalx("unexpected sink from the master");
			r.ev.fd = m.fd;
			r.st = ST_UP;
			memcpy(&cont, m.data, sizeof(cont));
			if (cont)	/* a reporter before this one wrote it */
				r.hdr_off = r.hdr.len;
			instrument();
			dest_flush();
			break;
		case MSG_LOGREOPEN:
			dup2(m.fd, log_fd());
			close(m.fd);
			break;
		case MSG_SHUTDOWN:
			stop();
		default:
			fatalx("unexpected %s message from the master",
			    msg_name(m.hdr.type));
		}
	}
	if (rv == CHAN_BAD)
		fatalx("the master broke the channel's contract");
	if (rv == CHAN_EOF)
		stop();
}

static void
dispatch(struct ev *e, uint32_t events)
{
	if (e->kind == REV_CTL) {
		if (events & EPOLLOUT)
			chan_flush(&r.ch);
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			ctl_read();
	} else if (e->kind == REV_DEST)
		dest_io(events);
}

void
reporter_main(int ctl, uint32_t gen, const struct report_conf *rc,
    const struct priv_ids *ids)
{
	const char	*why;
	uint64_t	 next;

	log_setproc("reporter");
	title_set("reporter");
	priv_drop(ids);
	ev_init();
	r.rc = rc;
	chan_init(&r.ch, REV_CTL, ctl, MSG_TO_CHILD, gen, CHAN_QMAX, 1,
	    "the master");
	if (report_dest_parse(rc->collect, &r.host, &r.port, &r.path, &why)
	    == -1)
		fatalx("self-report: %s: %s", rc->collect, why);
	r.file = r.path != NULL;
	r.start = rc->start;
	r.backoff = BACKOFF_MIN_MS;
	buf_init(&r.hdr);
	buf_init(&r.q);
	buf_init(&r.row);
	make_header();
	if (!r.file) {
		while (resolve() == -1)		/* it did for the master */
			sleep(1);
		r.cur = r.addrs;
		try_connect();
	}
	if (chan_send(&r.ch, MSG_READY, -1, NULL, 0) == -1)
		fatal("ready message");
	for (;;) {
		next = dest_tick(now_mono_ms());
		ev_due(&next, chan_tick(&r.ch, now_mono_ms()));
		ev_wait(next, dispatch);
	}
}
