/*
 * The control socket, for oml2ctl(1): a Unix stream socket (--control,
 * by default oml2-server.sock in the data directory), mode 0660, owned
 * by root and the --group.  Who may talk to it is checked again on every
 * connection with SO_PEERCRED: root, the master's own user, or a member
 * of the --group -- but never the --user, whose processes parse what
 * clients send and so must not steer the master.
 *
 * One request a connection: a line of at most CTL_REQ_MAX printable
 * ASCII bytes, "status", "list", "show EXP", "close EXP", "reopen-log" or
 * "stop"; anything else is answered with an error.  The answer is one
 * JSON document and a newline, then the master closes the connection.
 * Everything is answered from the figures the master holds (figures.c),
 * but for "show", whose details the experiment's process sends when it
 * can (one request in flight per process, shared by the operators who
 * ask meanwhile), and "close", answered once the process has stored
 * what its clients sent and exited.
 *
 * The master runs as root and must never wait for a control client:
 * every socket is non-blocking, a reply is at most CTL_OUT_MAX bytes, at
 * most CTL_CLIENTS_MAX clients are served at once, and a client that
 * sends nothing, sends garbage or does not read its reply is cut off with
 * a log line; each gets --header-timeout seconds to send its request,
 * and as long to read the reply.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define CTL_CLIENTS_MAX	16
#define CTL_REQ_MAX	255
#define CTL_OUT_MAX	(16 * 1024 * 1024)
#define CTL_IO_MS	(opts.header_timeout * 1000ULL)	/* request, reply */
#define CTL_SHOW_MS	5000	/* for an experiment process's details */
#define CTL_CLOSE_MS	60000	/* for a closed experiment's process to end */

enum cstate { CS_READ, CS_SHOW, CS_CLOSE, CS_WRITE };

struct ctlconn {
	struct ev	 ev;		/* first */
	struct ctlconn	*next;
	enum cstate	 st;
	uid_t		 uid;
	pid_t		 pid;
	char		 req[CTL_REQ_MAX + 1];
	size_t		 reqlen;
	struct buf	 out;
	size_t		 off;
	uint64_t	 deadline;
	struct proc	*proc;		/* waited for: show, close */
	char		 exp[EXPNAME_MAX + 1];
	uint32_t	 show_id;
	int		 got;		/* records have come */
	int		 kind;		/* the array being written, -1 none */
	unsigned	 items;		/* in that array */
};

static struct ev	 lev = { .kind = EV_CTL, .fd = -1 };
static struct ctlconn	*conns;
static unsigned		 nconns;
static char		*sock_path;
static dev_t		 sock_dev;
static ino_t		 sock_ino;
static uint32_t		 show_seq;

static const char *const arrays[REC_MAX] = {
	[REC_CLIENT] = "clients", [REC_TABLE] = "tables",
	[REC_STREAM] = "streams", [REC_SENDER] = "senders",
};

/* ---- the socket -------------------------------------------------------- */

/*
 * Make room for the socket: a stale one (nobody answers) is removed, a
 * live one is another server's, anything else is not ours to remove.
 */
static int
clear_path(const char *path)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, r;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("control socket %s: exists and is not a socket",
		    path);
		errno = 0;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (r == 0) {
		log_error("control socket %s: another server answers there; "
		    "give another --control", path);
		errno = 0;
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;	/* EACCES: try as --user */
	return 0;
}

/*
 * Take on the --user's and --group's effective ids, or give them back:
 * the master has CAP_SETUID and CAP_SETGID under the systemd unit, but
 * neither CAP_DAC_OVERRIDE nor CAP_CHOWN, and the data directory is
 * --user's.
 */
static void
as_user(int on)
{
	static gid_t	 egid;

	if (on) {
		egid = getegid();
		if (setegid(opts.cc.ids.gid) == -1 ||
		    seteuid(opts.cc.ids.uid) == -1)
			fatal("control socket: taking the user's ids");
	} else if (seteuid(0) == -1 || setegid(egid) == -1)
		fatal("control socket: taking root's ids back");
}

/* Make room and bind, with the effective ids of now.  0, or an errno. */
static int
bind_path(int fd, const struct sockaddr_un *sun, int group)
{
	mode_t	 old;
	int	 r, e = 0;

	if ((r = clear_path(sun->sun_path)) == -1)
		return errno != 0 ? errno : EEXIST;
	old = umask(group ? 0117 : 0177);
	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) == -1)
		e = errno;
	umask(old);
	return e;
}

/*
 * Bind the control socket.  Its node is made with mode 0660 (0600
 * without --user, or when not root) by the umask, never open to others
 * even for a moment.  As root with --user it is made with the --group's
 * effective gid, so that it is the group's without a chown(2), and as
 * root if root may write the directory, else (the unit's data directory)
 * as --user: the node is then --user's, as the directory already is.
 * Who may talk to the master is decided by SO_PEERCRED on each
 * connection, and oml2ctl checks that it talks to a root process.
 * Returns -1 (logged) on failure.
 */
int
ctl_open(void)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, e, group = geteuid() == 0 && opts.cc.ids.set;

	if (opts.control == NULL)
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, opts.control, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		/* a deep data directory must not stop the server */
		if (!opts.control_given) {
			log_warnx("control socket %s: longer than %zu bytes; "
			    "running without one (give a shorter --control)",
			    opts.control, sizeof(sun.sun_path) - 1);
			free(opts.control);
			opts.control = NULL;
			return 0;
		}
		log_error("control socket %s: longer than %zu bytes; give a "
		    "shorter --control", opts.control, sizeof(sun.sun_path) - 1);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		fatal("socket");
	if (group && setegid(opts.cc.ids.gid) == -1)
		fatal("control socket: setegid");
	e = bind_path(fd, &sun, group);
	if (group && setegid(0) == -1)
		fatal("control socket: setegid");
	if (e == EACCES && group) {
		as_user(1);
		e = bind_path(fd, &sun, group);
		as_user(0);
	}
	if (e == EEXIST) {		/* logged by clear_path() */
		close(fd);
		return -1;
	}
	if (e != 0 || lstat(opts.control, &st) == -1 || listen(fd, 16) == -1) {
		log_error("control socket %s: %s", opts.control,
		    strerror(e != 0 ? e : errno));
		close(fd);
		return -1;
	}
	sock_dev = st.st_dev;
	sock_ino = st.st_ino;
	sock_path = xstrdup(opts.control);
	lev.fd = fd;
	ev_add(&lev, EPOLLIN);
	log_info("control socket %s (mode %04o, uid %d, gid %d)", sock_path,
	    (unsigned)(st.st_mode & 07777), (int)st.st_uid, (int)st.st_gid);
	return 0;
}

/* At exit: remove the socket, if it is still ours. */
void
ctl_close(void)
{
	struct stat	 st;

	if (lev.fd == -1)
		return;
	ev_del(&lev);
	close(lev.fd);
	lev.fd = -1;
	if (lstat(sock_path, &st) == 0 && st.st_dev == sock_dev &&
	    st.st_ino == sock_ino && unlink(sock_path) == -1 &&
	    errno == EACCES && geteuid() == 0 && opts.cc.ids.set) {
		as_user(1);
		unlink(sock_path);
		as_user(0);
	}
}

/* ---- clients ----------------------------------------------------------- */

static void
cc_free(struct ctlconn *cc)
{
	struct ctlconn	**pp;
	char		  tmp[512];

	for (pp = &conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cc) {
			*pp = cc->next;
			break;
		}
	nconns--;
	ev_del(&cc->ev);
	/* take what it sent after its request, so that close sends no RST */
	while (read(cc->ev.fd, tmp, sizeof(tmp)) > 0)
		;
	close(cc->ev.fd);
	buf_free(&cc->out);
	ev_free_later(&cc->ev);
}

/* A client cut off: a log line, a closed connection. */
static void
cc_drop(struct ctlconn *cc, const char *why)
{
	log_warnx("control: uid %d pid %d: %s; connection closed",
	    (int)cc->uid, (int)cc->pid, why);
	cc_free(cc);
}

static void
cc_write(struct ctlconn *cc)
{
	ssize_t	 n;

	while (cc->off < cc->out.len) {
		n = send(cc->ev.fd, cc->out.p + cc->off, cc->out.len - cc->off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			cc->off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		cc_free(cc);	/* it went away: nothing to tell */
		return;
	}
	shutdown(cc->ev.fd, SHUT_WR);
	cc_free(cc);
}

/* The reply in cc->out is complete: send it. */
static void
cc_reply(struct ctlconn *cc)
{
	if (cc->out.len > CTL_OUT_MAX) {
		cc->out.len = 0;
		buf_printf(&cc->out, "{\"error\":\"the reply would be larger "
		    "than %d MiB\"}", CTL_OUT_MAX >> 20);
	}
	buf_addc(&cc->out, '\n');
	cc->st = CS_WRITE;
	cc->proc = NULL;
	cc->deadline = now_mono_ms() + CTL_IO_MS;
	ev_mod(&cc->ev, EPOLLOUT);
	cc_write(cc);
}

static void PRINTFLIKE(2, 3)
cc_error(struct ctlconn *cc, const char *fmt, ...)
{
	char	 msg[256];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cc->out.len = 0;
	buf_adds(&cc->out, "{\"error\":");
	esc_json(&cc->out, msg, strlen(msg));
	buf_addc(&cc->out, '}');
	cc_reply(cc);
}

/* ---- JSON -------------------------------------------------------------- */

static void
jstr(struct buf *b, const char *s)
{
	esc_json(b, s, strlen(s));
}

static void
jkey(struct buf *b, const char *k)
{
	buf_printf(b, ",\"%s\":", k);
}

static void
jnum(struct buf *b, const char *k, uint64_t v)
{
	buf_printf(b, ",\"%s\":%llu", k, (unsigned long long)v);
}

static void
jsecs(struct buf *b, const char *k, uint64_t ms)
{
	if (ms == ~0ULL)
		buf_printf(b, ",\"%s\":null", k);
	else
		buf_printf(b, ",\"%s\":%.3f", k, ms / 1000.0);
}

static const char *
exp_state(const struct expfig *f)
{
	if (f->live != NULL)
		return f->live->state == CH_SERVING ? "serving" : "retiring";
	return f->old != NULL ? "retiring" : "ended";
}

static pid_t
exp_pid(const struct expfig *f)
{
	return f->live ? f->live->pid : f->old ? f->old->pid : f->last_pid;
}

/* An experiment's figures, the members of its object without braces. */
static void
exp_members(struct buf *b, const struct expfig *f, uint64_t now)
{
	struct msg_stats	 s;

	fig_sum(f, now, &s);
	buf_adds(b, "\"name\":");
	jstr(b, f->name);
	jnum(b, "pid", (uint64_t)exp_pid(f));
	jkey(b, "state");
	jstr(b, exp_state(f));
	jnum(b, "clients", s.clients);
	jnum(b, "rows_stored", s.rows);
	buf_printf(b, ",\"rows_per_second\":%.1f", s.rate_milli / 1000.0);
	jnum(b, "bytes_received", s.bytes);
	jnum(b, "rows_dropped", s.dropped);
	jsecs(b, "seconds_since_commit", s.last_commit_ms);
	jkey(b, "stall");
	jstr(b, stall_name[s.stall]);
	jsecs(b, "stall_seconds", s.stall_ms);
	jkey(b, "stall_cause");
	jstr(b, cause_name[s.cause]);
	jkey(b, "hook");
	jstr(b, hook_name[s.hook]);
	jnum(b, "commits", s.commits);
	jnum(b, "commits_failed", s.commits_failed);
	jnum(b, "clients_connected", s.connected);
	jnum(b, "clients_refused", s.ended[SE_REFUSED]);
	jnum(b, "senders", s.senders);
	jnum(b, "streams", s.streams);
	jnum(b, "gaps", s.gaps);
	jnum(b, "missing", s.missing);
	jnum(b, "restarts", s.restarts);
	jnum(b, "client_dropped", s.client_dropped);
	jnum(b, "memory_kb", s.rss_kb);
}

static void
listen_json(struct buf *b)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 host[NI_MAXHOST], port[NI_MAXSERV], a[NI_MAXHOST + 40];
	int			 i, fd, n = 0;

	buf_adds(b, ",\"listening\":[");
	for (i = 0; (fd = listen_fd(i)) != -1; i++) {
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1 ||
		    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host),
		    port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			continue;
		snprintf(a, sizeof(a), "%s%s%s:%s", ss.ss_family == AF_INET6 ?
		    "[" : "", host, ss.ss_family == AF_INET6 ? "]" : "", port);
		if (n++ > 0)
			buf_addc(b, ',');
		jstr(b, a);
	}
	buf_addc(b, ']');
}

static void
reply_status(struct ctlconn *cc)
{
	struct server_totals	 t;
	struct buf		*b = &cc->out;
	int			 i;

	fig_totals(&t);
	buf_adds(b, "{\"version\":");
	jstr(b, OML2_VERSION);
	jnum(b, "pid", (uint64_t)getpid());
	buf_printf(b, ",\"started\":%.3f,\"uptime\":%.3f", t.started,
	    now_real() - t.started);
	jkey(b, "backend");
	jstr(b, backend_name(opts.cc.backend));
	jkey(b, "data_dir");
	if (opts.cc.datadir != NULL)
		jstr(b, opts.cc.datadir);
	else
		buf_adds(b, "null");
	listen_json(b);
	jkey(b, "control");
	jstr(b, sock_path);
	jkey(b, "metrics");
	if (metrics_address() != NULL)
		jstr(b, metrics_address());
	else
		buf_adds(b, "null");
	buf_printf(b, ",\"stopping\":%s", stopping ? "true" : "false");
	jnum(b, "experiments", t.experiments);
	jnum(b, "clients", t.clients);
	jnum(b, "pending", pending_count());
	buf_printf(b, ",\"processes\":{\"starting\":%u,\"spare\":%u,"
	    "\"serving\":%u,\"retiring\":%u}", procs_count(CH_STARTING),
	    procs_count(CH_SPARE), procs_count(CH_SERVING),
	    procs_count(CH_RETIRING));
	jnum(b, "connections_accepted", t.accepted);
	buf_adds(b, ",\"connections_refused\":{");
	for (i = 0; i < REF_MAX; i++)
		buf_printf(b, "%s\"%s\":%llu", i ? "," : "", refuse_name[i],
		    (unsigned long long)t.refused[i]);
	buf_printf(b, ",\"by_experiment\":%llu}",
	    (unsigned long long)t.exp_refused);
	jnum(b, "rows_stored", t.rows);
	jnum(b, "rows_dropped", t.dropped);
	jnum(b, "bytes_received", t.bytes);
	jnum(b, "master_memory_kb", (uint64_t)rss_kb());
	jnum(b, "experiments_memory_kb", t.rss_kb);
	buf_addc(b, '}');
	cc_reply(cc);
}

/* By name, for a stable listing. */
static int
fig_cmp(const void *a, const void *b)
{
	return strcmp((*(struct expfig *const *)a)->name,
	    (*(struct expfig *const *)b)->name);
}

static void
reply_list(struct ctlconn *cc)
{
	struct expfig	**v, *f;
	size_t		  n = 0, i;
	uint64_t	  now = now_mono_ms();

	for (f = figs; f != NULL; f = f->next)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	for (f = figs, i = 0; f != NULL; f = f->next)
		v[i++] = f;
	qsort(v, n, sizeof(*v), fig_cmp);
	buf_adds(&cc->out, "{\"experiments\":[");
	for (i = 0; i < n; i++) {
		buf_adds(&cc->out, i ? ",{" : "{");
		exp_members(&cc->out, v[i], now);
		buf_addc(&cc->out, '}');
	}
	buf_adds(&cc->out, "]}");
	free(v);
	cc_reply(cc);
}

/* ---- show -------------------------------------------------------------- */

struct rec {
	unsigned	 kind;
	const char	*s[SHOW_STRS];
	size_t		 l[SHOW_STRS];
	uint64_t	 n[SHOW_NUMS];
};

static void
rs(struct buf *b, const char *k, const struct rec *r, int i)
{
	buf_printf(b, "\"%s\":", k);
	esc_json(b, r->s[i], r->l[i]);
}

static void
rec_json(struct buf *b, const struct rec *r)
{
	const uint64_t	*n = r->n;

	buf_addc(b, '{');
	switch (r->kind) {
	case REC_CLIENT:
		rs(b, "peer", r, 0);
		jnum(b, "port", n[0]);
		buf_addc(b, ',');
		rs(b, "sender", r, 1);
		buf_addc(b, ',');
		rs(b, "app", r, 2);
		if (n[1] > 0)
			jnum(b, "protocol", n[1]);
		else
			buf_adds(b, ",\"protocol\":null");
		buf_printf(b, ",\"encoding\":\"%s\",\"ready\":%s,"
		    "\"since\":%.3f", n[2] ? "binary" : "text", n[3] ?
		    "true" : "false", (double)n[4] / 1000.0);
		jnum(b, "rows", n[5]);
		jnum(b, "bytes", n[6]);
		jnum(b, "dropped", n[7]);
		break;
	case REC_TABLE:
		rs(b, "name", r, 0);
		if (n[2] == ~0ULL)
			buf_adds(b, ",\"rows\":null");
		else
			jnum(b, "rows", n[2]);
		jnum(b, "stored", n[0]);
		jnum(b, "senders", n[1]);
		break;
	case REC_STREAM:
		rs(b, "sender", r, 0);
		buf_addc(b, ',');
		rs(b, "stream", r, 1);
		buf_printf(b, ",\"first\":%d,\"last\":%d", (int32_t)n[0],
		    (int32_t)n[1]);
		jnum(b, "received", n[2]);
		jnum(b, "stored", n[3]);
		jnum(b, "gaps", n[4]);
		jnum(b, "missing", n[5]);
		jnum(b, "restarts", n[6]);
		if (n[7]) {
			jnum(b, "client_injected", n[8]);
			jnum(b, "client_dropped", n[9]);
		} else
			buf_adds(b, ",\"client_injected\":null,"
			    "\"client_dropped\":null");
		break;
	case REC_SENDER:
		rs(b, "sender", r, 0);
		jnum(b, "streams", n[0]);
		jnum(b, "received", n[1]);
		jnum(b, "gaps", n[2]);
		jnum(b, "missing", n[3]);
		jnum(b, "restarts", n[4]);
		if (n[5]) {
			jnum(b, "client_injected", n[6]);
			jnum(b, "client_dropped", n[7]);
		} else
			buf_adds(b, ",\"client_injected\":null,"
			    "\"client_dropped\":null");
		break;
	}
	buf_addc(b, '}');
}

/* Open arrays up to kind's, closing the one before. */
static void
show_open(struct ctlconn *cc, int kind)
{
	while (cc->kind < kind) {
		if (cc->kind >= 0)
			buf_addc(&cc->out, ']');
		cc->kind++;
		buf_printf(&cc->out, "%s\"%s\":[", cc->kind ? "," : "",
		    arrays[cc->kind]);
		cc->items = 0;
	}
}

static void
show_done(struct ctlconn *cc, int truncated)
{
	show_open(cc, REC_MAX - 1);
	buf_printf(&cc->out, "],\"truncated\":%s}}", truncated ? "true" :
	    "false");
	cc_reply(cc);
}

/* The experiment's own figures open the reply; its process adds details. */
static void
show_start(struct ctlconn *cc, struct expfig *f)
{
	struct ctlconn	*o;
	struct proc	*c = f->live != NULL ? f->live : f->old;
	uint32_t	 id;

	buf_addc(&cc->out, '{');
	exp_members(&cc->out, f, now_mono_ms());
	buf_adds(&cc->out, ",\"details\":{");
	cc->kind = -1;
	if (c == NULL || c->ch.ev.fd == -1) {
		show_done(cc, 0);
		return;
	}
	/* one request in flight per process: join one not yet answering */
	for (o = conns; o != NULL; o = o->next)
		if (o != cc && o->st == CS_SHOW && o->proc == c && !o->got)
			break;
	if (o != NULL)
		id = o->show_id;
	else {
		id = ++show_seq;
		proc_send(c, MSG_SHOW_REQ, -1, &id, sizeof(id));
	}
	cc->st = CS_SHOW;
	cc->proc = c;
	cc->show_id = id;
	cc->got = 0;
	cc->deadline = now_mono_ms() + CTL_SHOW_MS;
	ev_mod(&cc->ev, 0);
}

/* Decode one record at p; returns its length, or 0 if malformed. */
static size_t
rec_parse(const char *p, size_t len, struct rec *r)
{
	struct msg_rec	 m;
	size_t		 need = sizeof(m), i;

	if (len < sizeof(m))
		return 0;
	memcpy(&m, p, sizeof(m));
	if (m.kind >= REC_MAX)
		return 0;
	for (i = 0; i < SHOW_STRS; i++) {
		if (m.len[i] > SHOW_STR_MAX)
			return 0;
		need += m.len[i];
	}
	if (need > len)
		return 0;
	r->kind = m.kind;
	memcpy(r->n, m.num, sizeof(r->n));
	p += sizeof(m);
	for (i = 0; i < SHOW_STRS; i++) {
		r->s[i] = p;
		r->l[i] = m.len[i];
		p += m.len[i];
	}
	return need;
}

/* Append the records of one message to a waiter; -1 if malformed. */
static int
show_append(struct ctlconn *cc, const char *p, size_t len, uint32_t nrec)
{
	struct rec	 r;
	size_t		 used;
	uint32_t	 i;

	for (i = 0; i < nrec; i++) {
		if ((used = rec_parse(p, len, &r)) == 0 ||
		    (int)r.kind < cc->kind)
			return -1;
		show_open(cc, (int)r.kind);
		if (cc->items++ > 0)
			buf_addc(&cc->out, ',');
		rec_json(&cc->out, &r);
		p += used;
		len -= used;
	}
	return len == 0 ? 0 : -1;
}

/* A MSG_SHOW from process c. */
void
ctl_show_records(struct proc *c, const char *data, size_t len)
{
	struct msg_show	 h;
	struct ctlconn	*cc, *next;

	if (len < sizeof(h)) {
		log_warnx("short show message from process %d", (int)c->pid);
		return;
	}
	memcpy(&h, data, sizeof(h));
	for (cc = conns; cc != NULL; cc = next) {
		next = cc->next;
		if (cc->st != CS_SHOW || cc->proc != c || cc->show_id != h.id)
			continue;
		cc->got = 1;
		if (show_append(cc, data + sizeof(h), len - sizeof(h),
		    h.nrec) == -1) {
			log_warnx("malformed show message from process %d",
			    (int)c->pid);
			cc_error(cc, "experiment %s: its process sent "
			    "malformed details", cc->exp);
		} else if (cc->out.len > CTL_OUT_MAX)
			cc_error(cc, "the reply would be larger than %d MiB",
			    CTL_OUT_MAX >> 20);
		else if (h.flags & SHOW_LAST)
			show_done(cc, (h.flags & SHOW_TRUNCATED) != 0);
	}
}

/* ---- close ------------------------------------------------------------- */

static void
close_start(struct ctlconn *cc, struct expfig *f)
{
	char	 who[64];

	if (f->live == NULL && f->old == NULL) {
		cc_error(cc, "experiment %s has no process (it ended)",
		    f->name);
		return;
	}
	cc->proc = f->live != NULL ? f->live : f->old;
	if (cc->proc->state == CH_SERVING) {
		snprintf(who, sizeof(who), "uid %d", (int)cc->uid);
		policy_close(cc->proc, who);
	}
	cc->st = CS_CLOSE;
	cc->deadline = now_mono_ms() + CTL_CLOSE_MS;
	ev_mod(&cc->ev, 0);
}

/* Process c has been reaped: answer whoever waited for it. */
void
ctl_proc_gone(struct proc *c)
{
	struct ctlconn	*cc, *next;
	struct expfig	*f;

	for (cc = conns; cc != NULL; cc = next) {
		next = cc->next;
		if (cc->proc != c)
			continue;
		if (cc->st == CS_SHOW) {
			cc_error(cc, "experiment %s: its process ended before "
			    "it answered", cc->exp);
			continue;
		}
		cc->out.len = 0;
		if ((f = fig_find(cc->exp)) != NULL &&
		    (f->live != NULL || f->old != NULL)) {
			/* another process, still finishing: wait for it */
			cc->proc = f->live != NULL ? f->live : f->old;
			continue;
		}
		buf_adds(&cc->out, "{\"closed\":true,");
		if (f != NULL)
			exp_members(&cc->out, f, now_mono_ms());
		else {
			buf_adds(&cc->out, "\"name\":");
			jstr(&cc->out, cc->exp);
		}
		buf_addc(&cc->out, '}');
		cc_reply(cc);
	}
}

/* ---- requests ---------------------------------------------------------- */

static int
verb_is(const char *req, const char *verb, const char **arg)
{
	size_t	 n = strlen(verb);

	if (strncmp(req, verb, n) != 0)
		return 0;
	if (req[n] == '\0') {
		*arg = NULL;
		return 1;
	}
	if (req[n] != ' ')
		return 0;
	*arg = req + n + 1;
	return 1;
}

static void
bad_request(struct ctlconn *cc, const char *verb, const char *why)
{
	size_t	 i;

	/* the log escapes what it is given, but a NUL would end it */
	for (i = 0; i < cc->reqlen; i++)
		if (cc->req[i] == '\0')
			cc->req[i] = '?';
	log_warnx("control: uid %d pid %d: bad request \"%s\": %s",
	    (int)cc->uid, (int)cc->pid, cc->req, why);
	cc_error(cc, "bad request%s%s: %s", verb ? ": " : "", verb ? verb : "",
	    why);
}

/* An experiment named by a request, which must have one. */
static struct expfig *
req_exp(struct ctlconn *cc, const char *verb, const char *arg)
{
	struct expfig	*f;
	const char	*why;

	if (arg == NULL) {
		bad_request(cc, verb, "no experiment name");
		return NULL;
	}
	if (!expname_valid(arg, strlen(arg), &why)) {
		bad_request(cc, verb, why);
		return NULL;
	}
	strlcpy(cc->exp, arg, sizeof(cc->exp));
	if ((f = fig_find(arg)) == NULL)
		cc_error(cc, "no experiment %s", arg);
	return f;
}


static void
request(struct ctlconn *cc)
{
	struct expfig	*f;
	const char	*arg;
	size_t		 i;

	for (i = 0; i < cc->reqlen; i++)
		if ((unsigned char)cc->req[i] < 0x20 ||
		    (unsigned char)cc->req[i] > 0x7e) {
			bad_request(cc, NULL, "not printable ASCII");
			return;
		}
	if (verb_is(cc->req, "status", &arg) && arg == NULL)
		reply_status(cc);
	else if (verb_is(cc->req, "list", &arg) && arg == NULL)
		reply_list(cc);
	else if (verb_is(cc->req, "show", &arg)) {
		if ((f = req_exp(cc, "show", arg)) != NULL)
			show_start(cc, f);
	} else if (verb_is(cc->req, "close", &arg)) {
		if ((f = req_exp(cc, "close", arg)) != NULL)
			close_start(cc, f);
	} else if (verb_is(cc->req, "reopen-log", &arg) && arg == NULL) {
		log_info("control: uid %d pid %d: reopen-log", (int)cc->uid,
		    (int)cc->pid);
		if (reopen_log() == -1)
			cc_error(cc, "reopening the log file: %s",
			    log_open_error());
		else {
			buf_adds(&cc->out, "{\"reopened\":true}");
			cc_reply(cc);
		}
	} else if (verb_is(cc->req, "stop", &arg) && arg == NULL) {
		log_info("control: uid %d pid %d: stop", (int)cc->uid,
		    (int)cc->pid);
		buf_adds(&cc->out, "{\"stopping\":true}");
		cc_reply(cc);
		begin_shutdown(SIGTERM);
	} else
		bad_request(cc, NULL, "unknown request");
}

static void
cc_read(struct ctlconn *cc)
{
	ssize_t	 n;
	char	*nl;

	n = read(cc->ev.fd, cc->req + cc->reqlen, CTL_REQ_MAX - cc->reqlen);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (cc->reqlen > 0) {
			cc->req[cc->reqlen] = '\0';
			bad_request(cc, NULL, "no newline");
		} else
			cc_free(cc);	/* connected and left: nothing said */
		return;
	}
	cc->reqlen += (size_t)n;
	cc->req[cc->reqlen] = '\0';
	if ((nl = memchr(cc->req, '\n', cc->reqlen)) == NULL) {
		if (cc->reqlen == CTL_REQ_MAX)
			bad_request(cc, NULL, "longer than 255 bytes");
		return;
	}
	*nl = '\0';
	cc->reqlen = (size_t)(nl - cc->req);
	ev_mod(&cc->ev, 0);	/* one request: read no more */
	request(cc);
}

void
ctl_io(struct ev *e, uint32_t events)
{
	struct ctlconn	*cc = (struct ctlconn *)e;

	if (cc->st == CS_READ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		cc_read(cc);
	else if (cc->st == CS_WRITE && (events & (EPOLLOUT | EPOLLERR |
	    EPOLLHUP)))
		cc_write(cc);
	else if (events & (EPOLLERR | EPOLLHUP))
		cc_free(cc);	/* left while waiting: a close goes on */
}

/*
 * Who may steer the master: root, the master's own user, or a member of
 * --group other than --user itself.  Returns NULL, or why not.
 */
static const char *
peer_refused(int fd, struct ucred *uc)
{
	gid_t		 g[256];
	socklen_t	 l = sizeof(*uc);
	size_t		 i;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, uc, &l) == -1)
		return "its credentials are unknown";
	if (uc->uid == 0 || uc->uid == geteuid())
		return NULL;
	if (!opts.cc.ids.set)
		return "not root";
	if (uc->uid == opts.cc.ids.uid)
		return "the experiment processes' user may not";
	if (uc->gid == opts.cc.ids.gid)
		return NULL;
	l = sizeof(g);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &l) == 0)
		for (i = 0; i < l / sizeof(g[0]); i++)
			if (g[i] == opts.cc.ids.gid)
				return NULL;
	return "neither root nor in the server's group";
}

/* Refuse a connection: one line for it, a log line, and close. */
static void
refuse(int fd, const struct ucred *uc, const char *why)
{
	struct buf	 b;

	log_warnx("control: uid %d pid %d refused: %s", (int)uc->uid,
	    (int)uc->pid, why);
	buf_init(&b);
	buf_adds(&b, "{\"error\":");
	jstr(&b, why);
	buf_adds(&b, "}\n");
	(void)send(fd, b.p, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	buf_free(&b);
	close(fd);
}

void
ctl_accept(void)
{
	struct ctlconn	*cc;
	struct ucred	 uc;
	const char	*why;
	int		 fd, n;

	for (n = 0; n < 16; n++) {
		fd = accept4(lev.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		memset(&uc, 0, sizeof(uc));
		if ((why = peer_refused(fd, &uc)) != NULL) {
			refuse(fd, &uc, why);
			continue;
		}
		if (nconns >= CTL_CLIENTS_MAX) {
			refuse(fd, &uc, "too many control connections");
			continue;
		}
		cc = xcalloc(1, sizeof(*cc));
		cc->ev.kind = EV_CTLCONN;
		cc->ev.fd = fd;
		cc->uid = uc.uid;
		cc->pid = uc.pid;
		cc->st = CS_READ;
		cc->kind = -1;
		cc->deadline = now_mono_ms() + CTL_IO_MS;
		buf_init(&cc->out);
		cc->next = conns;
		conns = cc;
		nconns++;
		ev_add(&cc->ev, EPOLLIN | EPOLLRDHUP);
	}
}

/* Deadlines: requests, replies, experiment processes.  Next one, or 0. */
uint64_t
ctl_tick(uint64_t now)
{
	struct ctlconn	*cc, *next;
	uint64_t	 d = 0;

	for (cc = conns; cc != NULL; cc = next) {
		next = cc->next;
		if (now >= cc->deadline) {
			switch (cc->st) {
			case CS_READ:
				cc_drop(cc, "sent no request in time");
				continue;
			case CS_WRITE:
				cc_drop(cc, "did not read its reply in time");
				continue;
			case CS_SHOW:
				cc_error(cc, "experiment %s: its process did "
				    "not answer in %d s", cc->exp,
				    CTL_SHOW_MS / 1000);
				continue;
			case CS_CLOSE:
				cc_error(cc, "experiment %s: its process is "
				    "still finishing after %d s", cc->exp,
				    CTL_CLOSE_MS / 1000);
				continue;
			}
		}
		if (d == 0 || cc->deadline < d)
			d = cc->deadline;
	}
	return d;
}
