/*
 * An experiment's process.  Forked by the master as a spare, it drops
 * privileges at once, reports READY, and waits to be assigned an
 * experiment.  From then on it serves every client of that experiment in
 * one epoll loop, owns the experiment's database (opened while it has
 * clients), commits on a timer, reaps idle clients, and reports IDLE after
 * --linger seconds without clients so that the master can retire it.
 * Everything it tells the master goes through its channel (common/chan.c),
 * in order, queued while the master is busy.
 *
 * It takes no signal: the master forks it with every signal an operator
 * may send to the whole group ignored (master/procs.c, common/util.c), and
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

/*
 * What it may queue for the master: the replies to "oml2ctl show" take up
 * to 16 MiB (stats.c), client events 1 MiB (report.c), and the few
 * messages of its own life (READY, IDLE, STATUS, STATS) the rest.
 */
#define CHAN_QMAX	(32 * 1024 * 1024)
#define FINAL_MS	1000	/* at exit, for the master to take the rest */

/* The process: its experiment, clients and database (not exp(3)). */
static struct {
	struct chan		 ctl;
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
	int			 slot;		/* in the shared budget */
	uint64_t		 held;		/* unfinished input, all clients */
	unsigned		 nwaiting;	/* clients waiting for room */
	size_t			 published;	/* largest holder, as shown */
	uint64_t		 next_mem;
} self = { .slot = -1 };

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
	return self.name;
}

const struct child_conf *
exp_conf(void)
{
	return self.conf;
}

/* The channel to the master, for self-reports and figures. */
struct chan *
exp_chan(void)
{
	return &self.ctl;
}

static void
title(void)
{
	if (!self.assigned)
		title_set("spare");
	else
		title_set("exp %s (%u client%s)", self.name, self.nconns,
		    self.nconns == 1 ? "" : "s");
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

	self.paused = on;
	for (i = 0; i < self.nconns; i++)
		ev_set((struct ev *)self.conns[i], on ? 0 : EPOLLIN);
	if (on)
		log_warnx("the database cannot take rows now: not reading "
		    "from %u client%s until it can", self.nconns,
		    self.nconns == 1 ? "" : "s");
	else {
		log_info("the database takes rows again: reading from "
		    "clients");
		self.next_sweep = now_mono_ms() +
		    self.conf->idle_timeout * 1000ULL;
	}
}

struct db *
exp_db_acquire(int blobs)
{
	if (self.db == NULL) {
		if ((self.db = db_open(self.conf, self.name, blobs)) == NULL)
			return NULL;
		self.db->loop_commits = 1;	/* see timers() */
		hook_event(self.db->created ? "DBCREATED" : "DBOPENED",
		    self.db->uri);
	}
	self.db->close_by = 0;
	self.refs++;
	return self.db;
}

/* Close the database (a last attempt to write what waits), tell the hook. */
static void
exp_db_close(void)
{
	char	*uri;

	if (db_commit(self.db) == 0)
		stats_db_closing(self.db);
	self.rows += self.db->rows;
	self.dropped += self.db->dropped;
	uri = xstrdup(self.db->uri);
	db_close(self.db);
	self.db = NULL;
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

	if (self.db == NULL || self.refs > 0 ||
	    (db_stalled(self.db) && !self.stopping))
		return 0;
	if ((due = db_close_at(self.db, now)) != 0)
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
	if (self.db == NULL || --self.refs > 0)
		return;
	db_commit(self.db);
	exp_db_close_step(now_mono_ms());
}

/* The end of a connection: log, report, release, forget. */
static void
client_end(struct conn *c, enum conn_end why)
{
	unsigned	 i;

	if (conn_waiting(c))
		self.nwaiting--;
	ev_del((struct ev *)c);
	exp_report(c, REPORT_DISCONNECT, end_message[why]);
	stats_ended(end_stat[why]);
	conn_close(c, why);
	for (i = 0; i < self.nconns; i++)
		if (self.conns[i] == c) {
			self.conns[i] = self.conns[--self.nconns];
			break;
		}
	ev_free_later((struct ev *)c);
	if (self.nconns == 0) {
		self.idle_since = now_mono_ms();
		self.idle_sent = 0;
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

	for (i = 0; i < self.nconns; i++) {
		c = self.conns[i];
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
	self.published = held;
	budget_set_largest(self.conf->budget, self.slot, held);
}

static void
mem_why(struct conn *c, size_t held, int server)
{
	conn_set_why(c, "holds %zu bytes of unfinished input, the most %s%s: "
	    "over %s (%llu)", held, server ? "of any experiment" :
	    "in experiment ", server ? "" : self.name, server ?
	    "--max-buffered" : "--max-buffered-exp", (unsigned long long)
	    (server ? self.conf->max_buffered : self.conf->max_buffered_exp));
}

static void
mem_wait(struct conn *c, size_t n)
{
	budget_want(self.conf->budget, n);
	if (!conn_waiting(c)) {
		conn_set_waiting(c, 1);
		self.nwaiting++;
	}
	ev_set((struct ev *)c, 0);
}

int
exp_mem_take(struct conn *c, size_t n, int force)
{
	struct budget	*b = self.conf->budget;
	struct conn	*v;
	size_t		 vh;
	int		 server;

	if (force) {
		budget_force(b, self.slot, n);
		self.held += n;
		return 0;
	}
	for (;;) {
		server = 0;
		if (self.held + n <= self.conf->max_buffered_exp) {
			if (budget_take(b, self.slot, n) == 0) {
				self.held += n;
				if (conn_held(c) + n > self.published)
					mem_publish(conn_held(c) + n);
				return 0;
			}
			server = 1;
		}
		v = mem_largest(c, n, &vh);
		if (server && vh < budget_largest_other(b, self.slot)) {
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
	budget_give(self.conf->budget, self.slot, n);
	self.held -= n;
	if (conn_held(c) + n >= self.published) {
		mem_largest(NULL, 0, &held);
		mem_publish(held);
	}
}

/* The clients waiting for room try again. */
static void
mem_retry(void)
{
	unsigned	 i;

	for (i = 0; self.nwaiting > 0 && i < self.nconns; i++)
		if (conn_waiting(self.conns[i])) {
			conn_set_waiting(self.conns[i], 0);
			self.nwaiting--;
			if (!self.paused)
				ev_set((struct ev *)self.conns[i], EPOLLIN);
		}
}

/* Another process lacks room: if this one holds the most, it gives. */
static void
mem_shed(void)
{
	struct budget	*b = self.conf->budget;
	struct conn	*v;
	size_t		 vh;
	uint64_t	 other;

	if (!budget_short(b) || self.published == 0 ||
	    self.published < (other = budget_largest_other(b, self.slot)) ||
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
	enum conn_end	 r;

	if (fd == -1) {
		client_refuse(fd, mc, "lost in the hand-over: this process "
		    "has no file descriptor free");
		return;
	}
	if (!self.assigned || self.stopping) {
		client_refuse(fd, mc, "not serving");
		return;
	}
	if (self.nconns >= self.conf->max_clients) {
		client_refuse(fd, mc, "--max-clients (%u) reached",
		    self.conf->max_clients);
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
	if (self.nconns == self.cap) {
		self.cap = self.cap ? self.cap * 2 : 16;
		self.conns = xreallocarray(self.conns, self.cap, sizeof(c));
	}
	self.conns[self.nconns++] = c;
	ev_set((struct ev *)c, self.paused ? 0 : EPOLLIN);
	title();
	log_info("client %s port %u connected", mc->peer, mc->port);
	if ((r = conn_feed(c, bytes, mc->nbytes)) != END_NONE)
		client_end(c, r);
}

/* The figures child.c holds, for stats.c to push. */
static uint64_t
figures(uint64_t now, int final)
{
	struct stats_base	 b;

	if (!self.assigned)
		return 0;
	memset(&b, 0, sizeof(b));
	b.clients = self.nconns;
	b.rows = self.rows + (self.db ? self.db->rows : 0);
	b.dropped = self.dropped + (self.db ? self.db->dropped : 0);
	b.db_open = self.db != NULL;
	b.stall = self.db == NULL ? STALL_NONE : db_stalled(self.db) ?
	    STALL_STALLED : self.db->failing ? STALL_RETRYING : STALL_NONE;
	b.cause = self.db == NULL ? CAUSE_NONE : db_stall_cause(self.db);
	b.hook = hook_status();
	return stats_tick(&self.ctl, now, &b, final);
}

/* The end of finish(): the figures, the hook, exit. */
static __dead void
finished(void)
{
	figures(now_mono_ms(), 1);
	if (chan_drain(&self.ctl, FINAL_MS) == -1)
		log_warnx("%u messages to the master not delivered at exit "
		    "(%zu bytes of them client events)", self.ctl.nq,
		    chan_queued(&self.ctl, MSG_REPORT));
	budget_leave(self.conf->budget, self.slot);
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

	if (self.stopping)
		return;
	self.stopping = 1;
	if (self.assigned)
		log_info("%s: finishing", why);
	while (self.nconns > 0) {
		r = conn_read(self.conns[0], 1);
		client_end(self.conns[0], r == END_NONE ? end : r);
	}
	/* kept open while it could not be written */
	exp_db_close_step(now_mono_ms());
	if (self.db == NULL)
		finished();
}

/*
 * A message of this process's own (not a client event): the channel
 * queues it while the master is busy; only a master gone for good, or a
 * queue grown past any reason, loses it.
 */
static void
to_master(uint32_t type, const void *data, size_t len)
{
	if (chan_send(&self.ctl, type, -1, data, len) == -1 && errno != EPIPE)
		log_warn("%s message to the master", msg_name(type));
}

static void
send_status(void)
{
	struct msg_status	 s;

	memset(&s, 0, sizeof(s));
	s.clients = self.nconns;
	s.rows = self.rows + (self.db ? self.db->rows : 0);
	s.rows_dropped = self.dropped + (self.db ? self.db->dropped : 0);
	s.rss_kb = (uint64_t)rss_kb();
	to_master(MSG_STATUS, &s, sizeof(s));
}

static void
assign(const char *name, size_t len)
{
	const char	*why;

	if (self.assigned || !expname_valid(name, len, &why))
		fatalx("bad assignment from the master");
	memcpy(self.name, name, len);
	self.name[len] = '\0';
	self.assigned = 1;
	self.slot = budget_join(self.conf->budget, (int)getpid());
	self.idle_since = now_mono_ms();
	log_setproc("exp/%s", self.name);
	title();
	hook_start();
}

/* The master asks for the details: the clients' figures, completeness. */
static void
show(uint32_t id)
{
	struct conn_fig	*f;
	unsigned	 i;

	f = xcalloc(self.nconns + 1, sizeof(*f));
	for (i = 0; i < self.nconns; i++)
		conn_figures(self.conns[i], &f[i]);
	stats_show(&self.ctl, id, f, self.nconns, self.db);
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
		self.received++;		/* as the master counted it */
		memcpy(&mc, m->data, sizeof(mc));
		mc.peer[sizeof(mc.peer) - 1] = '\0';
		if (mc.nbytes != len - sizeof(mc))
			fatalx("client message of %zu bytes for %u", len,
			    mc.nbytes);
		client_add(m->fd, &mc, m->data + sizeof(mc));
		return;
	case MSG_RETIRE:
		if (self.nconns == 0)
			finish("retiring", END_SHUTDOWN);
		return;
	case MSG_SHUTDOWN:
		finish("server stopping", END_SHUTDOWN);
		return;
	case MSG_CLOSE:
		finish("closed by the operator", END_CLOSED);
		return;
	case MSG_SHOW_REQ:
		memcpy(&id, m->data, sizeof(id));
		show(id);
		return;
	case MSG_STATUS_REQ:
		send_status();
		return;
	case MSG_LOGREOPEN:
		dup2(m->fd, log_fd());
		close(m->fd);
		return;
	}
	fatalx("unexpected %s message from the master",
	    msg_name(m->hdr.type));
}

/* A message against the channel's table from the master is fatal. */
static void
ctl_read(void)
{
	static struct msg	 m;
	int			 r;

	while ((r = chan_recv(&self.ctl, &m)) == CHAN_MSG)
		ctl_message(&m, m.hdr.len);
	if (r == CHAN_BAD)
		fatalx("the master broke the channel's contract");
	if (r == CHAN_EOF) {
		chan_detach(&self.ctl);
		finish("the master went away", END_SHUTDOWN);
	}
}

/* Commits, idle clients and idle reporting.  Returns the next deadline. */
static uint64_t
timers(uint64_t now)
{
	uint64_t	 due, next = now + 1000, idle_ms;
	unsigned	 i;

	if (self.db != NULL && (due = db_commit_due(self.db)) != 0) {
		if (now >= due)
			db_commit(self.db);
		else if (due < next)
			next = due;
	}
	/* a database kept open for rows that waited */
	if ((due = exp_db_close_step(now)) != 0 && due < next)
		next = due;
	if (self.stopping && self.db == NULL)
		finished();
	idle_ms = self.conf->idle_timeout * 1000ULL;
	if (idle_ms != 0 && now >= self.next_sweep && !self.paused) {
		self.next_sweep = now + 1000;
		for (i = self.nconns; i-- > 0; )
			if (i < self.nconns &&
			    now - conn_last_rx(self.conns[i]) >= idle_ms)
				client_end(self.conns[i], END_IDLE);
	}
	if (self.assigned && self.nconns == 0 && !self.idle_sent &&
	    self.db == NULL && !self.stopping) {
		due = self.idle_since + self.conf->linger * 1000ULL;
		if (now >= due) {
			/* behind any client events queued: it goes in order */
			to_master(MSG_IDLE, &self.received,
			    sizeof(self.received));
			self.idle_sent = 1;
		} else if (due < next)
			next = due;
	}
	if ((due = hook_tick(now)) != 0 && due < next)
		next = due;
	if (self.nconns > 0)
		mem_shed();
	if (self.nwaiting > 0) {
		if (now >= self.next_mem) {
			mem_retry();
			self.next_mem = now + MEM_RETRY_MS;
		}
		if (self.next_mem < next)
			next = self.next_mem;
	}
	if ((due = figures(now, 0)) != 0 && due < next)
		next = due;
	ev_due(&next, chan_tick(&self.ctl, now));
	return next;
}

static void
dispatch(struct ev *e, uint32_t events)
{
	enum conn_end	 r;

	switch (e->kind) {
	case CEV_CTL:
		if (events & EPOLLOUT)
			chan_flush(&self.ctl);
		if (self.ctl.ev.fd != -1 &&
		    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			ctl_read();
		break;
	case CEV_CONN:
		if ((r = conn_read((struct conn *)e, 0)) != END_NONE)
			client_end((struct conn *)e, r);
		break;
	case CEV_HOOK:
		hook_readable(e);
		break;
	}
}

static __dead void
loop(void)
{
	uint64_t	 next;

	for (;;) {
		next = timers(now_mono_ms());
		if ((self.db != NULL && db_stalled(self.db)) != self.paused)
			pause_clients(!self.paused);
		ev_wait(next, dispatch);
	}
}

void
child_main(int ctl, uint32_t gen, const struct child_conf *conf)
{
	self.conf = conf;
	log_setproc("spare");
	title_set("spare");
	priv_drop(&conf->ids);
	ev_init();
	set_nonblock(ctl);
	chan_init(&self.ctl, CEV_CTL, ctl, MSG_TO_CHILD, gen, CHAN_QMAX, 1,
	    "the master");
	if (chan_send(&self.ctl, MSG_READY, -1, NULL, 0) == -1)
		fatal("ready message");
	loop();
}
