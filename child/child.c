/*
 * An experiment's process.  Forked by the master as a spare, it drops
 * privileges at once, reports READY, and waits to be assigned an
 * experiment.  From then on it serves every client of that experiment in
 * one epoll loop, owns the experiment's database (opened while it has
 * clients), commits on a timer, reaps idle clients, and reports IDLE after
 * --linger seconds without clients so that the master can retire it.
 *
 * It takes no signal: the master forks it with every signal an operator
 * may send to the whole group ignored (children.c, common/util.c), and
 * only the master's word (or its end) makes it finish, so that a signal
 * meant for the server never costs an experiment its rows.
 */
#include <sys/epoll.h>
#include <sys/resource.h>

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/child.h"

static struct {
	struct cev		 ctl;
	int			 epfd;
	const struct child_conf	*conf;
	char			 name[EXPNAME_MAX + 1];
	int			 assigned;
	struct db		*db;
	int			 refs;
	uint32_t		 received;
	struct conn		**conns;
	unsigned		 nconns;
	unsigned		 cap;
	uint64_t		 idle_since;
	int			 idle_sent;
	int			 stopping;
	uint64_t		 rows;		/* of databases already closed */
	uint64_t		 dropped;
	uint64_t		 next_sweep;
	int			 paused;	/* not reading clients: db away */
	struct conn		**grave;	/* freed after the batch */
	unsigned		 ngrave;
	unsigned		 gravecap;
	int			 slot;		/* in the shared budget */
	uint64_t		 held;		/* unfinished input, all clients */
	unsigned		 nwaiting;	/* clients waiting for room */
	size_t			 published;	/* largest holder, as shown */
	uint64_t		 next_mem;
} exp = { .slot = -1 };

#define MEM_RETRY_MS	50	/* a client waiting for room tries again */

static const char *const end_message[] = {
	[END_NONE] = "SOCKET_UNKNOWN",
	[END_EOF] = "SOCKET_CONN_CLOSED",
	[END_IDLE] = "SOCKET_IDLE",
	[END_PROTOCOL] = "C_PROTOCOL_ERROR",
	[END_ERROR] = "SOCKET_DROPPED",
	[END_SHUTDOWN] = "SOCKET_DROPPED",
	[END_LIMIT] = "SOCKET_DROPPED",
	[END_CLOSED] = "SOCKET_DROPPED",
};

/* The same ends, as the figures count them. */
static const enum stats_end end_stat[] = {
	[END_NONE] = SE_ERROR, [END_EOF] = SE_EOF, [END_IDLE] = SE_IDLE,
	[END_PROTOCOL] = SE_PROTOCOL, [END_ERROR] = SE_ERROR,
	[END_SHUTDOWN] = SE_SHUTDOWN, [END_LIMIT] = SE_LIMIT,
	[END_CLOSED] = SE_CLOSED,
};

const char *
exp_name(void)
{
	return exp.name;
}

const struct child_conf *
exp_conf(void)
{
	return exp.conf;
}

/* The control socket, for self-reports (report.c). */
int
exp_ctl(void)
{
	return exp.ctl.fd;
}

static void
title(void)
{
	if (!exp.assigned)
		title_set("spare");
	else
		title_set("exp %s (%u client%s)", exp.name, exp.nconns,
		    exp.nconns == 1 ? "" : "s");
}

/* Event sources join, change and leave the loop through these two. */
void
exp_watch(struct cev *e, uint32_t events)
{
	struct epoll_event	 ee = { .events = events, .data.ptr = e };

	if (epoll_ctl(exp.epfd, EPOLL_CTL_MOD, e->fd, &ee) == -1 &&
	    (errno != ENOENT ||
	    epoll_ctl(exp.epfd, EPOLL_CTL_ADD, e->fd, &ee) == -1))
		fatal("epoll_ctl");
}

void
exp_unwatch(struct cev *e)
{
	epoll_ctl(exp.epfd, EPOLL_CTL_DEL, e->fd, NULL);
}

/*
 * While the database is away and the backend holds as many rows as it
 * may, clients are not read: their data waits in the kernel and in the
 * clients rather than being dropped.  Idle reaping waits too.
 */
static void
pause_clients(int on)
{
	unsigned	 i;

	exp.paused = on;
	for (i = 0; i < exp.nconns; i++)
		exp_watch((struct cev *)exp.conns[i], on ? 0 : EPOLLIN);
	if (on)
		log_warnx("the database cannot take rows now: not reading "
		    "from %u client%s until it can", exp.nconns,
		    exp.nconns == 1 ? "" : "s");
	else {
		log_info("the database takes rows again: reading from "
		    "clients");
		exp.next_sweep = now_mono_ms() +
		    exp.conf->idle_timeout * 1000ULL;
	}
}

struct db *
exp_db_acquire(int blobs)
{
	if (exp.db == NULL) {
		if ((exp.db = db_open(exp.conf, exp.name, blobs)) == NULL)
			return NULL;
		exp.db->loop_commits = 1;	/* see timers() */
		hook_event(exp.db->created ? "DBCREATED" : "DBOPENED",
		    exp.db->uri);
	}
	exp.db->close_by = 0;
	exp.refs++;
	return exp.db;
}

/* Close the database (a last attempt to write what waits), tell the hook. */
static void
exp_db_close(void)
{
	char	*uri;

	exp.rows += exp.db->rows;
	exp.dropped += exp.db->dropped;
	uri = xstrdup(exp.db->uri);
	db_close(exp.db);
	exp.db = NULL;
	stats_db_closed();
	malloc_trim(0);		/* an idle experiment gives its heap back */
	hook_event("DBCLOSED", uri);
	free(uri);
}

/* Close the database if nothing holds it open.  The next deadline, or 0. */
static uint64_t
exp_db_close_step(uint64_t now)
{
	uint64_t	 due;

	if (exp.db == NULL || exp.refs > 0 ||
	    (db_stalled(exp.db) && !exp.stopping))
		return 0;
	if ((due = db_close_at(exp.db, now)) != 0)
		return due;
	exp_db_close();
	return 0;
}

/*
 * The last client leaving closes the database, unless rows still wait:
 * then timers() closes it once they are written, or the backend's wait
 * for them is over (or, when finishing, the database is stalled).
 */
void
exp_db_release(void)
{
	if (exp.db == NULL || --exp.refs > 0)
		return;
	db_commit(exp.db);
	exp_db_close_step(now_mono_ms());
}

/* The end of a connection: log, report, release, forget. */
static void
client_end(struct conn *c, enum conn_end why)
{
	unsigned	 i;

	if (conn_waiting(c))
		exp.nwaiting--;
	exp_unwatch((struct cev *)c);
	exp_report(c, REPORT_DISCONNECT, end_message[why]);
	stats_ended(end_stat[why]);
	conn_close(c, why);
	((struct cev *)c)->kind = CEV_DEAD;
	for (i = 0; i < exp.nconns; i++)
		if (exp.conns[i] == c) {
			exp.conns[i] = exp.conns[--exp.nconns];
			break;
		}
	if (exp.ngrave == exp.gravecap) {
		exp.gravecap = exp.gravecap ? exp.gravecap * 2 : 16;
		exp.grave = xreallocarray(exp.grave, exp.gravecap, sizeof(c));
	}
	exp.grave[exp.ngrave++] = c;
	if (exp.nconns == 0) {
		exp.idle_since = now_mono_ms();
		exp.idle_sent = 0;
		stats_log_totals();
	}
	title();
}

/* A client not taken: one line naming it, and its report. */
static void
client_refuse(int fd, const struct msg_client *mc, const char *fmt, ...)
{
	char	 why[160];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("client %s port %u: %s; connection closed", mc->peer,
	    mc->port, why);
	stats_ended(SE_REFUSED);
	exp_report_refused(mc->peer, mc->port);
	if (fd != -1)
		close(fd);
}

/*
 * Descriptors are allocated lowest first, so a new one numbered within
 * CHILD_FDS_MIN of the limit means that fewer than that are free: the
 * database and the hook would fail next.  (The limit is read each time:
 * an operator may change it with prlimit(1).)
 */
static int
fds_short(int fd, unsigned long *limit)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	*limit = (unsigned long)rl.rlim_cur;
	return (rlim_t)fd + CHILD_FDS_MIN >= rl.rlim_cur;
}

/*
 * Memory for unfinished lines and packets (--max-buffered-exp for this
 * experiment, --max-buffered for all of them, in the shared budget).
 * Past either, the client holding the most (of those holding as much,
 * the one longest without progress) is closed, until the request fits;
 * when the server is short and another process holds the most, the
 * requester waits (is not read) and that process is asked for room.
 */
static struct conn *
mem_largest(const struct conn *req, size_t extra, size_t *held)
{
	struct conn	*best = NULL, *c;
	size_t		 h, bh = 0;
	unsigned	 i;

	for (i = 0; i < exp.nconns; i++) {
		c = exp.conns[i];
		h = conn_held(c) + (c == req ? extra : 0);
		if (best == NULL || h > bh || (h == bh &&
		    conn_last_rx(c) < conn_last_rx(best))) {
			best = c;
			bh = h;
		}
	}
	*held = bh;
	return best;
}

/* What other processes see of this one's largest holder. */
static void
mem_publish(size_t held)
{
	exp.published = held;
	budget_set_largest(exp.conf->budget, exp.slot, held);
}

static void
mem_why(struct conn *c, size_t held, int server)
{
	conn_set_why(c, "holds %zu bytes of unfinished input, the most %s%s: "
	    "over %s (%llu)", held, server ? "of any experiment" :
	    "in experiment ", server ? "" : exp.name, server ?
	    "--max-buffered" : "--max-buffered-exp", (unsigned long long)
	    (server ? exp.conf->max_buffered : exp.conf->max_buffered_exp));
}

static void
mem_wait(struct conn *c, size_t n)
{
	budget_want(exp.conf->budget, n);
	if (!conn_waiting(c)) {
		conn_set_waiting(c, 1);
		exp.nwaiting++;
	}
	exp_watch((struct cev *)c, 0);
}

int
exp_mem_take(struct conn *c, size_t n, int force)
{
	struct budget	*b = exp.conf->budget;
	struct conn	*v;
	size_t		 vh;
	int		 server;

	if (force) {
		budget_force(b, exp.slot, n);
		exp.held += n;
		return 0;
	}
	for (;;) {
		server = 0;
		if (exp.held + n <= exp.conf->max_buffered_exp) {
			if (budget_take(b, exp.slot, n) == 0) {
				exp.held += n;
				if (conn_held(c) + n > exp.published)
					mem_publish(conn_held(c) + n);
				return 0;
			}
			server = 1;
		}
		v = mem_largest(c, n, &vh);
		if (server && vh < budget_largest_other(b, exp.slot)) {
			mem_wait(c, n);
			return 1;
		}
		mem_why(v, vh, server);
		if (v == c)
			return -1;
		client_end(v, END_LIMIT);
	}
}

/* c (its holding already lowered) gave n bytes back. */
void
exp_mem_give(struct conn *c, size_t n)
{
	size_t	 held;

	if (n == 0)
		return;
	budget_give(exp.conf->budget, exp.slot, n);
	exp.held -= n;
	if (conn_held(c) + n >= exp.published) {
		mem_largest(NULL, 0, &held);
		mem_publish(held);
	}
}

/* The clients waiting for room try again. */
static void
mem_retry(void)
{
	unsigned	 i;

	for (i = 0; exp.nwaiting > 0 && i < exp.nconns; i++)
		if (conn_waiting(exp.conns[i])) {
			conn_set_waiting(exp.conns[i], 0);
			exp.nwaiting--;
			if (!exp.paused)
				exp_watch((struct cev *)exp.conns[i], EPOLLIN);
		}
}

/* Another process lacks room: if this one holds the most, it gives. */
static void
mem_shed(void)
{
	struct budget	*b = exp.conf->budget;
	struct conn	*v;
	size_t		 vh;
	uint64_t	 other;

	if (!budget_short(b) || exp.published == 0 ||
	    exp.published < (other = budget_largest_other(b, exp.slot)) ||
	    (v = mem_largest(NULL, 0, &vh)) == NULL || vh == 0 || vh < other)
		return;
	budget_answered(b);
	mem_why(v, vh, 1);
	client_end(v, END_LIMIT);
}

/*
 * A client handed over by the master (ctl_message has counted it: taken
 * or not, since retiring needs the count to match the master's).
 */
static void
client_add(int fd, const struct msg_client *mc, const char *bytes)
{
	struct conn	*c;
	unsigned long	 limit = 0;

	if (fd == -1) {
		client_refuse(fd, mc, "lost in the hand-over: this process "
		    "has no file descriptor free");
		return;
	}
	if (!exp.assigned || exp.stopping) {
		client_refuse(fd, mc, "not serving");
		return;
	}
	if (exp.nconns >= exp.conf->max_clients) {
		client_refuse(fd, mc, "--max-clients (%u) reached",
		    exp.conf->max_clients);
		return;
	}
	if (fds_short(fd, &limit)) {
		client_refuse(fd, mc, "this process is short of file "
		    "descriptors (%d in use or more, limit %lu)", fd + 1,
		    limit);
		return;
	}
	c = conn_new(fd, mc->peer, mc->port);
	stats_connected();
	if (exp.nconns == exp.cap) {
		exp.cap = exp.cap ? exp.cap * 2 : 16;
		exp.conns = xreallocarray(exp.conns, exp.cap, sizeof(c));
	}
	exp.conns[exp.nconns++] = c;
	exp_watch((struct cev *)c, exp.paused ? 0 : EPOLLIN);
	title();
	log_info("client %s port %u connected", mc->peer, mc->port);
	if (conn_feed(c, bytes, mc->nbytes) == -1)
		client_end(c, END_PROTOCOL);
}

/* The figures child.c holds, for stats.c to push. */
static uint64_t
figures(uint64_t now, int final)
{
	struct stats_base	 b;

	if (!exp.assigned)
		return 0;
	memset(&b, 0, sizeof(b));
	b.clients = exp.nconns;
	b.rows = exp.rows + (exp.db ? exp.db->rows : 0);
	b.dropped = exp.dropped + (exp.db ? exp.db->dropped : 0);
	b.db_open = exp.db != NULL;
	b.stall = exp.db == NULL ? STALL_NONE : db_stalled(exp.db) ?
	    STALL_STALLED : exp.db->failing ? STALL_RETRYING : STALL_NONE;
	b.hook = hook_status();
	return stats_tick(exp.ctl.fd, now, &b, final);
}

/* The end of finish(): the figures, the hook, exit. */
static __dead void
finished(void)
{
	figures(now_mono_ms(), 1);
	exp_report_flush(now_mono_ms(), 1);
	budget_leave(exp.conf->budget, exp.slot);
	hook_exit();
	exit(0);
}

/*
 * Store what every client already sent, close everything, exit; each
 * client ends for reason end (server stopping, or closed by the operator).
 * A database whose rows must wait for it (PostgreSQL away) is closed by
 * timers() (exp_db_close_step()), which then calls finished().
 */
static void
finish(const char *why, enum conn_end end)
{
	enum conn_end	 r;

	if (exp.stopping)
		return;
	exp.stopping = 1;
	if (exp.assigned)
		log_info("%s: finishing", why);
	while (exp.nconns > 0) {
		r = conn_read(exp.conns[0], 1);
		client_end(exp.conns[0], r == END_NONE ? end : r);
	}
	/* kept open while it could not be written */
	exp_db_close_step(now_mono_ms());
	if (exp.db == NULL)
		finished();
}

static void
send_status(void)
{
	struct msg_status	 s;

	memset(&s, 0, sizeof(s));
	s.clients = exp.nconns;
	s.rows = exp.rows + (exp.db ? exp.db->rows : 0);
	s.rows_dropped = exp.dropped + (exp.db ? exp.db->dropped : 0);
	s.rss_kb = (uint64_t)rss_kb();
	msg_send(exp.ctl.fd, MSG_STATUS, -1, &s, sizeof(s));
}

static void
assign(const char *name, size_t len)
{
	const char	*why;

	if (exp.assigned || !expname_valid(name, len, &why))
		fatalx("bad assignment from the master");
	memcpy(exp.name, name, len);
	exp.name[len] = '\0';
	exp.assigned = 1;
	exp.slot = budget_join(exp.conf->budget, (int)getpid());
	exp.idle_since = now_mono_ms();
	log_setproc("exp/%s", exp.name);
	title();
	hook_start();
}

/* The master asks for the details: the clients' figures, completeness. */
static void
show(uint32_t id)
{
	struct conn_fig	*f;
	unsigned	 i;

	f = xcalloc(exp.nconns + 1, sizeof(*f));
	for (i = 0; i < exp.nconns; i++)
		conn_figures(exp.conns[i], &f[i]);
	stats_show(exp.ctl.fd, id, f, exp.nconns);
	free(f);
}

static void
ctl_message(struct msg *m, size_t len)
{
	struct msg_client	 mc;
	uint32_t		 id;

	switch (m->hdr.type) {
	case MSG_ASSIGN:
		assign(m->data, len);
		return;
	case MSG_CLIENT:
		exp.received++;		/* as the master counted it */
		if ((m->fd == -1 && !m->fd_lost) || len < sizeof(mc))
			break;
		memcpy(&mc, m->data, sizeof(mc));
		mc.peer[sizeof(mc.peer) - 1] = '\0';
		if (mc.nbytes != len - sizeof(mc))
			break;
		client_add(m->fd, &mc, m->data + sizeof(mc));
		return;
	case MSG_RETIRE:
		if (exp.nconns == 0)
			finish("retiring", END_SHUTDOWN);
		return;
	case MSG_SHUTDOWN:
		finish("server stopping", END_SHUTDOWN);
		return;
	case MSG_CLOSE:
		finish("closed by the operator", END_CLOSED);
		return;
	case MSG_SHOW_REQ:
		if (len != sizeof(uint32_t))
			break;
		memcpy(&id, m->data, sizeof(id));
		show(id);
		return;
	case MSG_STATUS_REQ:
		send_status();
		return;
	case MSG_LOGREOPEN:
		if (m->fd == -1)
			break;
		dup2(m->fd, log_fd());
		close(m->fd);
		return;
	}
	log_warnx("unexpected %s message from the master",
	    msg_name(m->hdr.type));
	if (m->fd != -1)
		close(m->fd);
}

static void
ctl_read(void)
{
	static struct msg	 m;
	ssize_t			 n;

	for (;;) {
		n = msg_recv(exp.ctl.fd, &m);
		if (n == -1 && errno == EBADMSG)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			exp_unwatch(&exp.ctl);
			finish("the master went away", END_SHUTDOWN);
			return;
		}
		ctl_message(&m, m.hdr.len);
	}
}

/* Commits, idle clients and idle reporting.  Returns the next deadline. */
static uint64_t
timers(uint64_t now)
{
	uint64_t	 due, next = now + 1000, idle_ms;
	unsigned	 i;

	if (exp.db != NULL && (due = db_commit_due(exp.db)) != 0) {
		if (now >= due)
			db_commit(exp.db);
		else if (due < next)
			next = due;
	}
	/* a database kept open for rows that waited */
	if ((due = exp_db_close_step(now)) != 0 && due < next)
		next = due;
	if (exp.stopping && exp.db == NULL)
		finished();
	idle_ms = exp.conf->idle_timeout * 1000ULL;
	if (idle_ms != 0 && now >= exp.next_sweep && !exp.paused) {
		exp.next_sweep = now + 1000;
		for (i = exp.nconns; i-- > 0; )
			if (i < exp.nconns &&
			    now - conn_last_rx(exp.conns[i]) >= idle_ms)
				client_end(exp.conns[i], END_IDLE);
	}
	if (exp.assigned && exp.nconns == 0 && !exp.idle_sent &&
	    exp.db == NULL && !exp.stopping) {
		due = exp.idle_since + exp.conf->linger * 1000ULL;
		if (now >= due) {
			/* a socket full of self-reports: try again soon */
			if (msg_send(exp.ctl.fd, MSG_IDLE, -1, &exp.received,
			    sizeof(exp.received)) == 0 || errno != EAGAIN)
				exp.idle_sent = 1;
			else if (now + 10 < next)
				next = now + 10;
		} else if (due < next)
			next = due;
	}
	if ((due = hook_tick(now)) != 0 && due < next)
		next = due;
	if (exp.nconns > 0)
		mem_shed();
	if (exp.nwaiting > 0) {
		if (now >= exp.next_mem) {
			mem_retry();
			exp.next_mem = now + MEM_RETRY_MS;
		}
		if (exp.next_mem < next)
			next = exp.next_mem;
	}
	if ((due = figures(now, 0)) != 0 && due < next)
		next = due;
	if ((due = stats_flush(exp.ctl.fd, now)) != 0 && due < next)
		next = due;
	return next;
}

static void
dispatch(struct cev *e)
{
	enum conn_end	 r;

	switch (e->kind) {
	case CEV_CTL:
		ctl_read();
		break;
	case CEV_CONN:
		if ((r = conn_read((struct conn *)e, 0)) != END_NONE)
			client_end((struct conn *)e, r);
		break;
	case CEV_HOOK:
		hook_readable(e);
		break;
	case CEV_DEAD:
		break;
	}
}

static __dead void
loop(void)
{
	struct epoll_event	 evs[64];
	uint64_t		 now, next, due;
	int			 i, n;

	for (;;) {
		now = now_mono_ms();
		next = timers(now);
		if ((due = exp_report_flush(now, 0)) != 0 && due < next)
			next = due;
		if ((exp.db != NULL && db_stalled(exp.db)) != exp.paused)
			pause_clients(!exp.paused);
		n = epoll_wait(exp.epfd, evs, nitems(evs),
		    next > now ? (int)(next - now) : 0);
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++)
			dispatch(evs[i].data.ptr);
		while (exp.ngrave > 0)
			free(exp.grave[--exp.ngrave]);
	}
}

void
child_main(int ctl, const struct child_conf *conf)
{
	exp.conf = conf;
	log_setproc("spare");
	title_set("spare");
	priv_drop(&conf->ids);
	if ((exp.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	set_nonblock(ctl);
	exp.ctl.kind = CEV_CTL;
	exp.ctl.fd = ctl;
	exp_watch(&exp.ctl, EPOLLIN);
	if (msg_send(ctl, MSG_READY, -1, NULL, 0) == -1)
		fatal("ready message");
	loop();
}
