/*
 * An experiment's process.  Forked by the master as a spare, it drops
 * privileges at once, reports READY, and waits to be assigned an
 * experiment.  From then on it serves every client of that experiment in
 * one epoll loop, owns the experiment's database (opened while it has
 * clients), commits on a timer, reaps idle clients, and reports IDLE after
 * --linger seconds without clients so that the master can retire it.
 */
#include <sys/epoll.h>
#include <sys/signalfd.h>

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/child.h"

static struct {
	struct cev		 ctl;
	struct cev		 sig;
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
} exp;

static const char *const end_message[] = {
	[END_NONE] = "SOCKET_UNKNOWN",
	[END_EOF] = "SOCKET_CONN_CLOSED",
	[END_IDLE] = "SOCKET_IDLE",
	[END_PROTOCOL] = "C_PROTOCOL_ERROR",
	[END_ERROR] = "SOCKET_DROPPED",
	[END_SHUTDOWN] = "SOCKET_DROPPED",
	[END_LIMIT] = "SOCKET_DROPPED",
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
		hook_event(exp.db->created ? "DBCREATED" : "DBOPENED",
		    exp.db->uri);
	}
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
	malloc_trim(0);		/* an idle experiment gives its heap back */
	hook_event("DBCLOSED", uri);
	free(uri);
}

/* The last client leaving closes the database, unless rows still wait. */
void
exp_db_release(void)
{
	if (exp.db == NULL || --exp.refs > 0)
		return;
	db_commit(exp.db);
	if (!db_stalled(exp.db))
		exp_db_close();
}

/* The end of a connection: log, report, release, forget. */
static void
client_end(struct conn *c, enum conn_end why)
{
	unsigned	 i;

	exp_unwatch((struct cev *)c);
	exp_report(c, REPORT_DISCONNECT, end_message[why]);
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
	}
	title();
}

static void
client_add(int fd, const struct msg_client *mc, const char *bytes)
{
	struct conn	*c;

	exp.received++;
	if (!exp.assigned || exp.stopping) {
		log_warnx("client %s port %u: not serving; closed", mc->peer,
		    mc->port);
		exp_report_refused(mc->peer, mc->port);
		close(fd);
		return;
	}
	if (exp.nconns >= exp.conf->max_clients) {
		log_warnx("client %s port %u: --max-clients (%u) reached; "
		    "connection closed", mc->peer, mc->port,
		    exp.conf->max_clients);
		exp_report_refused(mc->peer, mc->port);
		close(fd);
		return;
	}
	c = conn_new(fd, mc->peer, mc->port);
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

/* Store what every client already sent, close everything, exit. */
static __dead void
finish(const char *why)
{
	enum conn_end	 r;

	exp.stopping = 1;
	if (exp.assigned)
		log_info("%s: finishing", why);
	while (exp.nconns > 0) {
		r = conn_read(exp.conns[0], 1);
		client_end(exp.conns[0], r == END_NONE ? END_SHUTDOWN : r);
	}
	if (exp.db != NULL)	/* kept open while it could not be written */
		exp_db_close();
	exp_report_flush(now_mono_ms(), 1);
	hook_exit();
	exit(0);
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
	exp.idle_since = now_mono_ms();
	log_setproc("exp/%s", exp.name);
	title();
	hook_start();
}

static void
ctl_message(struct msg *m, size_t len)
{
	struct msg_client	 mc;

	switch (m->hdr.type) {
	case MSG_ASSIGN:
		assign(m->data, len);
		return;
	case MSG_CLIENT:
		if (m->fd == -1 || len < sizeof(mc))
			break;
		memcpy(&mc, m->data, sizeof(mc));
		mc.peer[sizeof(mc.peer) - 1] = '\0';
		if (mc.nbytes != len - sizeof(mc))
			break;
		client_add(m->fd, &mc, m->data + sizeof(mc));
		return;
	case MSG_RETIRE:
		if (exp.nconns == 0)
			finish("retiring");
		return;
	case MSG_SHUTDOWN:
		finish("server stopping");
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
		if (n <= 0)
			finish("the master went away");
		ctl_message(&m, m.hdr.len);
	}
}

static void
sig_read(void)
{
	struct signalfd_siginfo	 si;

	while (read(exp.sig.fd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			finish(strsignal((int)si.ssi_signo));
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
	/* a database kept open for rows that waited, now written */
	if (exp.db != NULL && exp.refs == 0 && !db_stalled(exp.db))
		exp_db_close();
	idle_ms = exp.conf->idle_timeout * 1000ULL;
	if (idle_ms != 0 && now >= exp.next_sweep && !exp.paused) {
		exp.next_sweep = now + 1000;
		for (i = exp.nconns; i-- > 0; )
			if (i < exp.nconns &&
			    now - conn_last_rx(exp.conns[i]) >= idle_ms)
				client_end(exp.conns[i], END_IDLE);
	}
	if (exp.assigned && exp.nconns == 0 && !exp.idle_sent &&
	    exp.db == NULL) {
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
	case CEV_SIGNAL:
		sig_read();
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

static void
setup_signals(void)
{
	sigset_t	 set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	signal(SIGHUP, SIG_IGN);	/* the master reopens the log */
	exp.sig.kind = CEV_SIGNAL;
	if ((exp.sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC))
	    == -1)
		fatal("signalfd");
	exp_watch(&exp.sig, EPOLLIN);
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
	setup_signals();
	if (msg_send(ctl, MSG_READY, -1, NULL, 0) == -1)
		fatal("ready message");
	loop();
}

int
child_probe(const struct child_conf *conf)
{
	if (conf->backend == BACKEND_SQLITE)
		return sqlite_probe(conf);
	return pg_probe(conf);
}
