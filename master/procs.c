/*
 * The child table and its mechanism: fork a child, talk to it over its
 * control socket (queueing what cannot be sent yet), and reap it.  When to
 * spawn, route and retire is policy.c's business.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

struct proc	*procs;
unsigned	 procs_queued;

static unsigned	 nstate[CH_RETIRING + 1];

/*
 * In a new child: the signals the master reads through its signalfd are
 * ignored before they are unblocked, so that one sent to every process
 * (kill $(pidof oml2-server)) never finds the child with the default
 * action; SIGCHLD gets its default back for the hook's sake.
 */
static void
proc_reset_signals(void)
{
	sigset_t	 none;
	int		 sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP };
	size_t		 i;

	for (i = 0; i < nitems(sigs); i++)
		signal(sigs[i], SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

void
proc_set_state(struct proc *c, enum proc_state st)
{
	nstate[c->state]--;
	nstate[st]++;
	c->state = st;
}

/*
 * The system refused a new process (out of descriptors or processes):
 * every waiting connection retries, so say so at most once a second.
 */
static void
spawn_failed(const char *what, const char *call)
{
	static struct ratelimit	 rl;

	log_warn_limited(&rl, "cannot start %s: %s", what, call);
}

/* The master's generations: one a process, never reused. */
static uint32_t	 lastgen;

/*
 * Fork a process with its channel's socketpair.  In the master: its pid,
 * *sock the master's end (non-blocking) and *gen its generation; in the
 * new process: 0, *sock its end, and no other descriptor but the log's.
 * -1 (logged, at most once a second) if the system refuses.
 */
pid_t
proc_fork(const char *what, int *sock, uint32_t *gen)
{
	int		 sv[2];
	pid_t		 pid;

	fd_reserve_release();	/* the descriptors kept for this */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		spawn_failed(what, "socketpair");
		fd_reserve_fill();
		return -1;
	}
	*gen = ++lastgen;
	if ((pid = fork()) == -1) {
		spawn_failed(what, "fork");
		close(sv[0]);
		close(sv[1]);
		fd_reserve_fill();
		return -1;
	}
	if (pid == 0) {
		proc_reset_signals();
		close_except(sv[1], log_fd());
		*sock = sv[1];
		return 0;
	}
	close(sv[1]);
	fd_reserve_fill();
	set_nonblock(sv[0]);
	*sock = sv[0];
	return pid;
}

static void	 queued_left(struct chan *, uint32_t, const char *, size_t,
		    const char *);
static void	 proc_kill(struct proc *);

/* What may wait for a process: clients' sockets with their first bytes. */
#define CHILD_QMAX	(64 * 1024 * 1024)

/* Fork a spare.  Returns NULL (logged) if the system refuses. */
struct proc *
proc_spawn(void)
{
	struct proc	*c;
	uint32_t	 gen;
	pid_t		 pid;
	int		 sock;

	if ((pid = proc_fork("an experiment process", &sock, &gen)) == -1)
		return NULL;
	if (pid == 0)
		child_main(sock, gen, &opts.cc);
	c = xcalloc(1, sizeof(*c));
	chan_init(&c->ch, EV_PROC, sock, MSG_TO_MASTER, gen, CHILD_QMAX, 1,
	    "process %d", (int)pid);
	c->ch.dequeued = queued_left;
	c->ch.arg = c;
	c->ch.keep = 1;		/* its socket gone, messages wait for reaping */
	c->pid = pid;
	c->gen = gen;
	c->state = CH_STARTING;
	nstate[CH_STARTING]++;
	c->born = now_mono_ms();
	c->next = procs;
	procs = c;
	log_debug("forked experiment process %d", (int)pid);
	return c;
}

/* A client socket that never reached its experiment process. */
static void
client_lost(const struct proc *c, const char *data, size_t len,
    const char *why)
{
	struct msg_client	 mc;

	if (len < sizeof(mc))
		return;
	memcpy(&mc, data, sizeof(mc));
	mc.peer[sizeof(mc.peer) - 1] = '\0';
	if (stopping)
		unserved++;
	log_warnx("client %s port %u: connection dropped: %s", mc.peer,
	    mc.port, why);
	fig_refused(REF_NO_PROCESS);
	report_event(REPORT_DISCONNECT, mc.peer, mc.port, c->exp,
	    "SOCKET_DROPPED");
}

/* A message queued in c's channel went out, or was lost. */
static void
queued_left(struct chan *ch, uint32_t type, const char *data, size_t len,
    const char *lost)
{
	struct proc	*c = ch->arg;

	if (type != MSG_CLIENT)
		return;
	c->nq--;
	procs_queued--;
	listen_resume();	/* if it waited for this */
	if (lost != NULL)
		client_lost(c, data, len, lost);
}

int
proc_taking(const struct proc *c, uint64_t now)
{
	return chan_taking(&c->ch, now);
}

/* Children whose queue waits for descriptors in flight: try them. */
uint64_t
procs_tick(uint64_t now)
{
	struct proc	*c;
	uint64_t	 next = 0;

	for (c = procs; c != NULL; c = c->next)
		ev_due(&next, chan_tick(&c->ch, now));
	return next;
}

/*
 * Send (or queue) a message.  Ownership of fd passes to this function: it
 * is closed once sent, or if the child has gone.
 */
void
proc_send(struct proc *c, uint32_t type, int fd, const void *data,
    size_t len)
{
	int	 r;

	if ((r = chan_send(&c->ch, type, fd, data, len)) == 1 &&
	    type == MSG_CLIENT) {
		c->nq++;
		procs_queued++;
	} else if (r == -1) {
		if (errno != EPIPE)
			log_warn("%s message to process %d", msg_name(type),
			    (int)c->pid);
		if (type == MSG_CLIENT)
			client_lost(c, data, len, "its experiment process is "
			    "not reachable");
	}
}

static void
proc_message(struct proc *c, struct msg *m, size_t len)
{
	uint32_t	 u;

	switch (m->hdr.type) {
	case MSG_READY:
		policy_proc_ready(c);
		return;
	case MSG_IDLE:
		memcpy(&u, m->data, sizeof(u));
		policy_proc_idle(c, u);
		return;
	case MSG_STATUS:
		memcpy(&c->status, m->data, sizeof(c->status));
		policy_status_reply(c);
		return;
	case MSG_REPORT:
		report_child(c->exp, c->pid, m->data, len);
		return;
	case MSG_STATS:
		fig_proc_stats(c, m->data, len);
		return;
	case MSG_SHOW:
		ctl_show_records(c, m->data, len);
		return;
	}
	log_warnx("unexpected %s message from process %d",
	    msg_name(m->hdr.type), (int)c->pid);
	proc_kill(c);
}

/*
 * A child that broke the channel's contract is killed (reaping tells
 * its end); its channel is closed at once, so that nothing more it sent
 * is read.
 */
static void
proc_kill(struct proc *c)
{
	log_warnx("killing process %d: it broke the channel's contract",
	    (int)c->pid);
	kill(c->pid, SIGKILL);
	chan_close(&c->ch, "its experiment process was killed");
}

/*
 * Read every queued message; end of file means the child is exiting, a
 * message against the table that it is broken.
 */
void
proc_readable(struct proc *c)
{
	static struct msg	 m;
	int			 r;

	while ((r = chan_recv(&c->ch, &m)) == CHAN_MSG) {
		proc_message(c, &m, m.hdr.len);
		if (c->ch.ev.fd == -1)
			return;
	}
	if (r == CHAN_BAD)
		proc_kill(c);
	else if (r == CHAN_EOF)		/* gone: reaping will tell why */
		chan_detach(&c->ch);
}

static void
proc_unlink(struct proc *c)
{
	struct proc	**pp;

	for (pp = &procs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	nstate[c->state]--;
}

static void
proc_free(struct proc *c)
{
	chan_close(&c->ch, "its experiment process ended");
	ev_free_later(&c->ch.ev);
}

static void
log_exit(const struct proc *c, int status)
{
	char	 how[128];

	exit_describe(status, how, sizeof(how));
	if (c->exp[0] != '\0')
		(status == 0 ? log_info : log_warnx)("experiment %s process "
		    "%d %s", c->exp, (int)c->pid, how);
	else
		(status == 0 ? log_info : log_warnx)("spare process %d %s",
		    (int)c->pid, how);
}

/*
 * A child that has exited may have left reports in its socket (the
 * Disconnects of its last clients): take them before it is forgotten, and
 * nothing else, since the process is gone.
 */
static void
drain_reports(struct proc *c)
{
	static struct msg	 m;

	while (chan_recv(&c->ch, &m) == CHAN_MSG) {
		if (m.hdr.type == MSG_REPORT)
			report_child(c->exp, c->pid, m.data, m.hdr.len);
		else if (m.hdr.type == MSG_STATS)	/* its last figures */
			fig_proc_stats(c, m.data, m.hdr.len);
	}
}

void
procs_reap(void)
{
	struct proc	*c;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (c = procs; c != NULL && c->pid != pid; c = c->next)
			;
		if (c == NULL) {
			if (!report_reaped(pid, status))
				log_error("internal error: reaped process %d, "
				    "which is not ours", (int)pid);
			continue;
		}
		drain_reports(c);
		budget_reap(opts.cc.budget, pid);	/* if it died holding */
		log_exit(c, status);
		proc_unlink(c);
		policy_proc_gone(c, status);
		proc_free(c);
	}
}

void
procs_signal(int sig)
{
	struct proc	*c;

	for (c = procs; c != NULL; c = c->next)
		kill(c->pid, sig);
}

unsigned
procs_count(enum proc_state st)
{
	return nstate[st];
}
