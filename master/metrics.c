/*
 * The metrics endpoint (--metrics-listen [ADDR:]PORT, off by default):
 * GET /metrics answers the Prometheus text exposition format (version
 * 0.0.4) from the figures the master holds (figures.c).  Per experiment:
 * rows stored and dropped, bytes, clients, a histogram of commit
 * durations, stall state, gaps in sequence numbers; for the server:
 * connections accepted and refused by reason, pending connections,
 * processes, memory.  An ended experiment is reported --keep-ended
 * seconds more, then no longer.
 *
 * HTTP is parsed as little as possible, and strictly: a request is at
 * most HTTP_REQ_MAX bytes up to its blank line, sent within
 * --header-timeout seconds (and its answer must be read as fast); its
 * request line must be "GET /metrics HTTP/1.x" (a query is ignored);
 * headers are read past, never interpreted.  Other paths get 404, other
 * methods 405, anything else 400, each with a log line, and every
 * connection is closed after one answer.  At most HTTP_CLIENTS_MAX are
 * served at once; none is ever waited for.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define HTTP_CLIENTS_MAX	32
#define HTTP_REQ_MAX		8192
#define HTTP_MS			(opts.header_timeout * 1000ULL)

struct http {
	struct ev	 ev;		/* first */
	struct http	*next;
	char		 peer[NI_MAXHOST];
	uint16_t	 port;
	struct buf	 in;
	struct buf	 out;
	size_t		 off;
	int		 writing;
	uint64_t	 deadline;
};

static struct ev	 lev = { .kind = EV_METRICS, .fd = -1 };
static char		 addr[NI_MAXHOST + 16];
static struct http	*conns;
static unsigned		 nconns;

const char *
metrics_address(void)
{
	return lev.fd == -1 ? NULL : addr;
}

static void
name_addr(const struct sockaddr *sa, socklen_t sl, char *host, size_t hl,
    uint16_t *port)
{
	char	 serv[NI_MAXSERV];

	if (getnameinfo(sa, sl, host, hl, serv, sizeof(serv),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		strlcpy(host, "?", hl);
		strlcpy(serv, "0", sizeof(serv));
	}
	*port = (uint16_t)atoi(serv);
}

/* Bind [ADDR:]PORT (all addresses without ADDR).  -1 on failure, logged. */
int
metrics_open(const char *spec)
{
	struct addrinfo	 hints, *res, *ai;
	struct sockaddr_storage ss;
	socklen_t	 sl = sizeof(ss);
	char		*copy, *host = NULL, *port, *p, h[NI_MAXHOST];
	uint16_t	 pn;
	int		 e, fd = -1, on = 1, off = 0;

	copy = xstrdup(spec);
	port = copy;
	if (copy[0] == '[' && (p = strstr(copy, "]:")) != NULL) {
		*p = '\0';
		host = copy + 1;
		port = p + 2;
	} else if ((p = strrchr(copy, ':')) != NULL &&
	    strchr(copy, ':') == p) {
		*p = '\0';
		host = copy;
		port = p + 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	hints.ai_family = host == NULL ? AF_INET6 : AF_UNSPEC;
	if ((e = getaddrinfo(host, port, &hints, &res)) != 0 && host == NULL) {
		hints.ai_family = AF_INET;
		e = getaddrinfo(host, port, &hints, &res);
	}
	if (e != 0) {
		log_error("--metrics-listen %s: %s", spec, gai_strerror(e));
		free(copy);
		return -1;
	}
	for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
			    sizeof(off));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
		    listen(fd, 64) == -1) {
			log_warn("--metrics-listen %s", spec);
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	free(copy);
	if (fd == -1) {
		log_error("cannot serve metrics on %s", spec);
		return -1;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	name_addr((struct sockaddr *)&ss, sl, h, sizeof(h), &pn);
	snprintf(addr, sizeof(addr), "%s%s%s:%u", ss.ss_family == AF_INET6 ?
	    "[" : "", h, ss.ss_family == AF_INET6 ? "]" : "", pn);
	lev.fd = fd;
	ev_add(&lev, EPOLLIN);
	log_info("metrics on http://%s/metrics", addr);
	return 0;
}

static void
http_free(struct http *h)
{
	struct http	**pp;
	char		  tmp[512];

	for (pp = &conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	nconns--;
	ev_del(&h->ev);
	while (read(h->ev.fd, tmp, sizeof(tmp)) > 0)
		;
	close(h->ev.fd);
	buf_free(&h->in);
	buf_free(&h->out);
	ev_free_later(&h->ev);
}

void
metrics_close(void)
{
	while (conns != NULL)
		http_free(conns);
	if (lev.fd != -1) {
		ev_del(&lev);
		close(lev.fd);
		lev.fd = -1;
	}
}

/* ---- the exposition ---------------------------------------------------- */

static void
family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{experiment="..."[,extra]} */
static void
series(struct buf *b, const char *name, const char *exp, const char *extra)
{
	buf_printf(b, "%s{experiment=\"", name);
	esc_label(b, exp, strlen(exp));
	buf_printf(b, "\"%s%s}", extra ? "," : "", extra ? extra : "");
}

enum fld { F_ROWS, F_DROPPED, F_BYTES, F_CLIENTS, F_CONNECTED, F_UP,
	F_STALLED, F_STALL_SECS, F_COMMIT_AGE, F_COMMITS_FAILED, F_GAPS,
	F_MISSING, F_RESTARTS, F_CLIENT_DROPPED, F_SENDERS, F_MEMORY };

static const struct {
	enum fld	 f;
	const char	*name, *type, *help;
} exp_families[] = {
	{ F_UP, "oml2_experiment_up", "gauge",
	    "1 while the experiment has a process, 0 for a while after" },
	{ F_ROWS, "oml2_experiment_rows_stored_total", "counter",
	    "Rows stored in the experiment's database." },
	{ F_DROPPED, "oml2_experiment_rows_dropped_total", "counter",
	    "Tuples received but not stored." },
	{ F_BYTES, "oml2_experiment_received_bytes_total", "counter",
	    "Bytes received from the experiment's clients." },
	{ F_CLIENTS, "oml2_experiment_clients", "gauge",
	    "Clients connected now." },
	{ F_CONNECTED, "oml2_experiment_clients_connected_total", "counter",
	    "Client connections the experiment's processes took." },
	{ F_STALLED, "oml2_experiment_stalled", "gauge",
	    "1 while the database cannot take rows (commits fail)." },
	{ F_STALL_SECS, "oml2_experiment_stall_seconds", "gauge",
	    "For how long the database has not taken rows." },
	{ F_COMMIT_AGE, "oml2_experiment_seconds_since_commit", "gauge",
	    "Seconds since the last commit." },
	{ F_COMMITS_FAILED, "oml2_experiment_commits_failed_total", "counter",
	    "Commits that failed (and were tried again)." },
	{ F_GAPS, "oml2_experiment_sequence_gaps_total", "counter",
	    "Gaps in the senders' sequence numbers." },
	{ F_MISSING, "oml2_experiment_sequence_missing_total", "counter",
	    "Sequence numbers never received." },
	{ F_RESTARTS, "oml2_experiment_sequence_restarts_total", "counter",
	    "Senders' sequence numbers that started again." },
	{ F_CLIENT_DROPPED, "oml2_experiment_client_dropped", "gauge",
	    "Measurements the clients say they dropped "
	    "(_client_instrumentation)." },
	{ F_SENDERS, "oml2_experiment_senders", "gauge",
	    "Senders seen by the experiment's process." },
	{ F_MEMORY, "oml2_experiment_resident_memory_bytes", "gauge",
	    "Resident memory of the experiment's process." },
};

static void
exp_value(struct buf *b, enum fld f, const struct expfig *x,
    const struct msg_stats *s)
{
	switch (f) {
	case F_UP:
		buf_printf(b, " %d\n", x->live != NULL || x->old != NULL);
		return;
	case F_STALLED:
		buf_printf(b, " %d\n", s->stall != STALL_NONE);
		return;
	case F_STALL_SECS:
		buf_printf(b, " %.3f\n", s->stall_ms / 1000.0);
		return;
	case F_COMMIT_AGE:
		if (s->last_commit_ms == ~0ULL)
			buf_adds(b, " NaN\n");
		else
			buf_printf(b, " %.3f\n", s->last_commit_ms / 1000.0);
		return;
	case F_MEMORY:
		buf_printf(b, " %llu\n", (unsigned long long)s->rss_kb * 1024);
		return;
	default:
		break;
	}
	buf_printf(b, " %llu\n", (unsigned long long)(
	    f == F_ROWS ? s->rows : f == F_DROPPED ? s->dropped :
	    f == F_BYTES ? s->bytes : f == F_CLIENTS ? s->clients :
	    f == F_CONNECTED ? s->connected :
	    f == F_COMMITS_FAILED ? s->commits_failed :
	    f == F_GAPS ? s->gaps : f == F_MISSING ? s->missing :
	    f == F_RESTARTS ? s->restarts :
	    f == F_CLIENT_DROPPED ? s->client_dropped : s->senders));
}

static void
histogram(struct buf *b, const struct expfig *x, const struct msg_stats *s)
{
	uint64_t	 cum = 0;
	char		 le[48];
	int		 i;

	for (i = 0; i < STATS_BUCKETS; i++) {
		cum += s->commit_bucket[i];
		if (i < STATS_BUCKETS - 1)
			snprintf(le, sizeof(le), "le=\"%g\"",
			    stats_bucket_us[i] / 1e6);
		else
			strlcpy(le, "le=\"+Inf\"", sizeof(le));
		series(b, "oml2_experiment_commit_duration_seconds_bucket",
		    x->name, le);
		buf_printf(b, " %llu\n", (unsigned long long)cum);
	}
	series(b, "oml2_experiment_commit_duration_seconds_sum", x->name, NULL);
	buf_printf(b, " %.6f\n", s->commit_us / 1e6);
	series(b, "oml2_experiment_commit_duration_seconds_count", x->name,
	    NULL);
	buf_printf(b, " %llu\n", (unsigned long long)s->commits);
}

static void
experiments(struct buf *b)
{
	struct msg_stats	*s;
	struct expfig		*x;
	size_t			 n = 0, i, k;
	uint64_t		 now = now_mono_ms();
	char			 extra[64];
	int			 e;

	for (x = figs; x != NULL; x = x->next)
		n++;
	s = xcalloc(n + 1, sizeof(*s));
	for (x = figs, i = 0; x != NULL; x = x->next)
		fig_sum(x, now, &s[i++]);
	for (k = 0; k < nitems(exp_families); k++) {
		family(b, exp_families[k].name, exp_families[k].type,
		    exp_families[k].help);
		for (x = figs, i = 0; x != NULL; x = x->next, i++) {
			series(b, exp_families[k].name, x->name, NULL);
			exp_value(b, exp_families[k].f, x, &s[i]);
		}
	}
	family(b, "oml2_experiment_connections_ended_total", "counter",
	    "Client connections that ended, by reason.");
	for (x = figs, i = 0; x != NULL; x = x->next, i++)
		for (e = 0; e < SE_MAX; e++) {
			snprintf(extra, sizeof(extra), "reason=\"%s\"",
			    end_name[e]);
			series(b, "oml2_experiment_connections_ended_total",
			    x->name, extra);
			buf_printf(b, " %llu\n",
			    (unsigned long long)s[i].ended[e]);
		}
	family(b, "oml2_experiment_commit_duration_seconds", "histogram",
	    "How long commits took.");
	for (x = figs, i = 0; x != NULL; x = x->next, i++)
		histogram(b, x, &s[i]);
	free(s);
}

static void
server(struct buf *b)
{
	struct server_totals	 t;
	int			 i;

	fig_totals(&t);
	family(b, "oml2_build_info", "gauge", "The server's version.");
	buf_adds(b, "oml2_build_info{version=\"");
	esc_label(b, OML2_VERSION, strlen(OML2_VERSION));
	buf_adds(b, "\"} 1\n");
	family(b, "oml2_start_time_seconds", "gauge",
	    "When the server started, in seconds since the epoch.");
	buf_printf(b, "oml2_start_time_seconds %.3f\n", t.started);
	family(b, "oml2_connections_accepted_total", "counter",
	    "Client connections accepted.");
	buf_printf(b, "oml2_connections_accepted_total %llu\n",
	    (unsigned long long)t.accepted);
	family(b, "oml2_connections_refused_total", "counter",
	    "Client connections closed before they reached an experiment, "
	    "by reason, and those the experiments refused.");
	for (i = 0; i < REF_MAX; i++)
		buf_printf(b, "oml2_connections_refused_total{reason=\"%s\"} "
		    "%llu\n", refuse_name[i], (unsigned long long)t.refused[i]);
	buf_printf(b, "oml2_connections_refused_total{reason=\"experiment\"} "
	    "%llu\n", (unsigned long long)t.exp_refused);
	family(b, "oml2_connections_pending", "gauge",
	    "Connections still naming their experiment, or waiting for a "
	    "process.");
	buf_printf(b, "oml2_connections_pending %u\n", pending_count());
	family(b, "oml2_experiments", "gauge", "Experiments with a process.");
	buf_printf(b, "oml2_experiments %u\n", t.experiments);
	family(b, "oml2_processes", "gauge", "Experiment processes, by state.");
	buf_printf(b, "oml2_processes{state=\"starting\"} %u\n"
	    "oml2_processes{state=\"spare\"} %u\n"
	    "oml2_processes{state=\"serving\"} %u\n"
	    "oml2_processes{state=\"retiring\"} %u\n",
	    procs_count(CH_STARTING), procs_count(CH_SPARE),
	    procs_count(CH_SERVING), procs_count(CH_RETIRING));
	family(b, "oml2_rows_stored_total", "counter",
	    "Rows stored, every experiment's, since the server started.");
	buf_printf(b, "oml2_rows_stored_total %llu\n",
	    (unsigned long long)t.rows);
	family(b, "oml2_rows_dropped_total", "counter",
	    "Tuples dropped, every experiment's, since the server started.");
	buf_printf(b, "oml2_rows_dropped_total %llu\n",
	    (unsigned long long)t.dropped);
	family(b, "oml2_resident_memory_bytes", "gauge",
	    "Resident memory: the master's, and the experiment processes' "
	    "added up.");
	buf_printf(b, "oml2_resident_memory_bytes{process=\"master\"} %llu\n"
	    "oml2_resident_memory_bytes{process=\"experiments\"} %llu\n",
	    (unsigned long long)rss_kb() * 1024,
	    (unsigned long long)t.rss_kb * 1024);
}

/* ---- HTTP -------------------------------------------------------------- */

static void
http_write(struct http *h)
{
	ssize_t	 n;

	while (h->off < h->out.len) {
		n = send(h->ev.fd, h->out.p + h->off, h->out.len - h->off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			h->off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		http_free(h);
		return;
	}
	shutdown(h->ev.fd, SHUT_WR);
	http_free(h);
}

static void
http_answer(struct http *h, const char *status, const char *type,
    const struct buf *body)
{
	h->out.len = 0;
	buf_printf(&h->out, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, type,
	    body->len);
	buf_add(&h->out, body->p, body->len);
	h->writing = 1;
	h->deadline = now_mono_ms() + HTTP_MS;
	ev_mod(&h->ev, EPOLLOUT);
	http_write(h);
}

static void
http_error(struct http *h, const char *status, const char *why)
{
	struct buf	 b;

	log_warnx("metrics: %s port %u: %s; answered %s", h->peer, h->port,
	    why, status);
	buf_init(&b);
	buf_printf(&b, "%s\n", status);
	http_answer(h, status, "text/plain; charset=utf-8", &b);
	buf_free(&b);
}

/* The request line of a complete request (line points into h->in). */
static void
http_request(struct http *h, const char *line, size_t len)
{
	struct buf	 b;
	const char	*target, *sp;
	size_t		 tl;

	if (len < 14 || (sp = memchr(line, ' ', len)) == NULL) {
		http_error(h, "400 Bad Request", "not an HTTP request");
		return;
	}
	target = sp + 1;
	if ((sp = memchr(target, ' ', len - (size_t)(target - line))) == NULL ||
	    (size_t)(line + len - sp) != 9 || memcmp(sp, " HTTP/1.", 8) != 0 ||
	    (sp[8] != '0' && sp[8] != '1')) {
		http_error(h, "400 Bad Request", "not an HTTP/1 request line");
		return;
	}
	if (target - line != 4 || memcmp(line, "GET ", 4) != 0) {
		http_error(h, "405 Method Not Allowed", "a method other than "
		    "GET");
		return;
	}
	tl = (size_t)(sp - target);
	if (!(tl == 8 && memcmp(target, "/metrics", 8) == 0) &&
	    !(tl > 8 && memcmp(target, "/metrics?", 9) == 0)) {
		http_error(h, "404 Not Found", "a path other than /metrics");
		return;
	}
	buf_init(&b);
	server(&b);
	experiments(&b);
	http_answer(h, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
	    &b);
	buf_free(&b);
}

static void
http_read(struct http *h)
{
	const char	*end, *p;
	size_t		 i;
	ssize_t		 n;

	buf_reserve(&h->in, 1024);
	n = read(h->ev.fd, h->in.p + h->in.len, (h->in.cap - h->in.len) <
	    HTTP_REQ_MAX - h->in.len ? h->in.cap - h->in.len :
	    HTTP_REQ_MAX - h->in.len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		http_free(h);
		return;
	}
	h->in.len += (size_t)n;
	for (i = 0, p = h->in.p; i < h->in.len; i++)
		if ((unsigned char)p[i] < 0x20 && p[i] != '\r' &&
		    p[i] != '\n' && p[i] != '\t') {
			http_error(h, "400 Bad Request", "control bytes");
			return;
		}
	end = memmem(p, h->in.len, "\r\n\r\n", 4);
	if (end == NULL)
		end = memmem(p, h->in.len, "\n\n", 2);
	if (end == NULL) {
		if (h->in.len >= HTTP_REQ_MAX)
			http_error(h, "431 Request Header Fields Too Large",
			    "a request longer than 8 KiB");
		return;
	}
	ev_mod(&h->ev, 0);
	end = memchr(p, '\n', h->in.len);
	http_request(h, p, (size_t)(end - p) - (end > p && end[-1] == '\r'));
}

void
metrics_io(struct ev *e, uint32_t events)
{
	struct http	*h = (struct http *)e;

	if (!h->writing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		http_read(h);
	else if (h->writing && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
		http_write(h);
	else if (events & (EPOLLHUP | EPOLLERR))
		http_free(h);
}

void
metrics_accept(void)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	struct http		*h;
	char			 host[NI_MAXHOST];
	uint16_t		 port;
	int			 fd, n;

	for (n = 0; n < 16; n++) {
		sl = sizeof(ss);
		fd = accept4(lev.fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("metrics: accept");
			return;
		}
		name_addr((struct sockaddr *)&ss, sl, host, sizeof(host),
		    &port);
		if (nconns >= HTTP_CLIENTS_MAX) {
			log_warnx("metrics: %s port %u: more than %d "
			    "connections at once; closed", host, port,
			    HTTP_CLIENTS_MAX);
			close(fd);
			continue;
		}
		h = xcalloc(1, sizeof(*h));
		h->ev.kind = EV_HTTP;
		h->ev.fd = fd;
		strlcpy(h->peer, host, sizeof(h->peer));
		h->port = port;
		h->deadline = now_mono_ms() + HTTP_MS;
		buf_init(&h->in);
		buf_init(&h->out);
		h->next = conns;
		conns = h;
		nconns++;
		ev_add(&h->ev, EPOLLIN);
	}
}

uint64_t
metrics_tick(uint64_t now)
{
	struct http	*h, *next;
	uint64_t	 d = 0;

	for (h = conns; h != NULL; h = next) {
		next = h->next;
		if (now >= h->deadline) {
			log_warnx("metrics: %s port %u: %s in %u s; connection "
			    "closed", h->peer, h->port, h->writing ?
			    "did not read its answer" : "sent no request",
			    opts.header_timeout);
			http_free(h);
			continue;
		}
		if (d == 0 || h->deadline < d)
			d = h->deadline;
	}
	return d;
}
