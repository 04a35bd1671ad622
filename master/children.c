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

struct child	*children;
unsigned	 children_queued;

static unsigned	 nstate[CH_RETIRING + 1];

/*
 * In a new child: the signals the master reads through its signalfd are
 * ignored before they are unblocked, so that one sent to every process
 * (kill $(pidof oml2-server)) never finds the child with the default
 * action; SIGCHLD gets its default back for the hook's sake.
 */
static void
child_reset_signals(void)
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
child_state(struct child *c, enum child_state st)
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
spawn_failed(const char *what)
{
	static uint64_t	 last;
	static unsigned	 times;
	uint64_t	 now = now_mono_ms();
	int		 e = errno;

	times++;
	if (last != 0 && now - last < 1000)
		return;
	errno = e;
	log_warn("cannot start an experiment process (%s, %u time%s since "
	    "the last report)", what, times, times == 1 ? "" : "s");
	last = now;
	times = 0;
}

/* Fork a spare.  Returns NULL (logged) if the system refuses. */
struct child *
child_spawn(void)
{
	struct child	*c;
	int		 sv[2];
	pid_t		 pid;

	fd_reserve_release();	/* the descriptors kept for this */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		spawn_failed("socketpair");
		fd_reserve_fill();
		return NULL;
	}
	if ((pid = fork()) == -1) {
		spawn_failed("fork");
		close(sv[0]);
		close(sv[1]);
		fd_reserve_fill();
		return NULL;
	}
	if (pid == 0) {
		child_reset_signals();
		close_except(sv[1], log_fd());
		child_main(sv[1], &opts.cc);
	}
	close(sv[1]);
	fd_reserve_fill();
	set_nonblock(sv[0]);
	c = xcalloc(1, sizeof(*c));
	c->ev.kind = EV_CHILD;
	c->ev.fd = sv[0];
	c->pid = pid;
	c->state = CH_STARTING;
	nstate[CH_STARTING]++;
	c->born = now_mono_ms();
	c->qtail = &c->qhead;
	c->next = children;
	children = c;
	ev_add(&c->ev, EPOLLIN);
	log_debug("forked experiment process %d", (int)pid);
	return c;
}

/* A client socket that never reached its experiment process. */
static void
client_lost(const struct child *c, const char *data, size_t len,
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

static void
qmsg_free(struct child *c, struct qmsg *q, const char *lost)
{
	if (q->type == MSG_CLIENT) {
		c->nq--;
		children_queued--;
		listen_resume();	/* if it waited for this */
	}
	if (q->fd != -1) {
		if (lost != NULL && q->type == MSG_CLIENT)
			client_lost(c, q->data, q->len, lost);
		close(q->fd);
	}
	free(q->data);
	free(q);
}

/*
 * Without root, the kernel lets a process have only as many descriptors
 * in flight (sent, not yet received) as its RLIMIT_NOFILE: past that,
 * sendmsg() fails with ETOOMANYREFS although the socket is writable.
 * The queue then waits for the child to take some, retried on a timer
 * (EPOLLOUT would fire at once, again and again).
 */
#define INFLIGHT_RETRY_MS	10

static void
inflight_wait(struct child *c)
{
	c->retry_at = now_mono_ms() + INFLIGHT_RETRY_MS;
	if (c->wantout) {
		ev_mod(&c->ev, EPOLLIN);
		c->wantout = 0;
	}
}

/*
 * Is the child reading its control socket?  It is if a message went out
 * recently, or if nothing waits to go out.
 */
#define TAKING_MS	1000

int
child_taking(const struct child *c, uint64_t now)
{
	return c->qhead == NULL || now - c->sent_at < TAKING_MS;
}

/* Children whose queue waits for descriptors in flight: try them. */
uint64_t
children_tick(uint64_t now)
{
	struct child	*c;
	uint64_t	 next = 0;

	for (c = children; c != NULL; c = c->next) {
		if (c->retry_at == 0)
			continue;
		if (now >= c->retry_at && c->ev.fd != -1) {
			c->retry_at = 0;
			child_flush(c);
		}
		if (c->retry_at != 0 && (next == 0 || c->retry_at < next))
			next = c->retry_at;
	}
	return next;
}

/*
 * Send (or queue) a message.  Ownership of fd passes to this function: it
 * is closed once sent, or if the child has gone.
 */
void
child_send(struct child *c, uint32_t type, int fd, const void *data,
    size_t len)
{
	struct qmsg	*q;
	int		 inflight = 0;

	if (c->qhead == NULL && c->ev.fd != -1) {
		if (msg_send(c->ev.fd, type, fd, data, len) == 0) {
			c->sent_at = now_mono_ms();
			if (fd != -1)
				close(fd);
			return;
		}
		inflight = errno == ETOOMANYREFS;
		if (errno != EAGAIN && !inflight) {
			log_warn("%s message to process %d", msg_name(type),
			    (int)c->pid);
			if (type == MSG_CLIENT)
				client_lost(c, data, len, "its experiment "
				    "process is not reachable");
			if (fd != -1)
				close(fd);
			return;
		}
	}
	q = xcalloc(1, sizeof(*q));
	if (type == MSG_CLIENT) {
		c->nq++;
		children_queued++;
	}
	q->type = type;
	q->fd = fd;
	q->len = len;
	if (len > 0) {		/* SHUTDOWN, STATUS_REQ: no payload */
		q->data = xmalloc(len);
		memcpy(q->data, data, len);
	}
	*c->qtail = q;
	c->qtail = &q->next;
	if (inflight)
		inflight_wait(c);
	else if (!c->wantout && c->retry_at == 0 && c->ev.fd != -1) {
		ev_mod(&c->ev, EPOLLIN | EPOLLOUT);
		c->wantout = 1;
	}
}

/* The control socket is writable: send what is queued. */
void
child_flush(struct child *c)
{
	struct qmsg	*q;
	const char	*lost;

	while ((q = c->qhead) != NULL) {
		if (msg_send(c->ev.fd, q->type, q->fd, q->data, q->len) == -1) {
			if (errno == EAGAIN)
				return;
			if (errno == ETOOMANYREFS) {
				inflight_wait(c);
				return;
			}
			log_warn("%s message to process %d",
			    msg_name(q->type), (int)c->pid);
			lost = "its experiment process is not reachable";
		} else {
			lost = NULL;
			c->sent_at = now_mono_ms();
		}
		c->qhead = q->next;
		if (c->qhead == NULL)
			c->qtail = &c->qhead;
		qmsg_free(c, q, lost);
	}
	if (c->wantout) {
		ev_mod(&c->ev, EPOLLIN);
		c->wantout = 0;
	}
}

static void
child_message(struct child *c, struct msg *m, size_t len)
{
	uint32_t	 u;

	switch (m->hdr.type) {
	case MSG_READY:
		policy_child_ready(c);
		break;
	case MSG_IDLE:
		if (len != sizeof(u))
			goto bad;
		memcpy(&u, m->data, sizeof(u));
		policy_child_idle(c, u);
		break;
	case MSG_STATUS:
		if (len != sizeof(c->status))
			goto bad;
		memcpy(&c->status, m->data, sizeof(c->status));
		policy_status_reply(c);
		break;
	case MSG_REPORT:
		report_child(c->exp, c->pid, m->data, len);
		break;
	case MSG_STATS:
		fig_child_stats(c, m->data, len);
		break;
	case MSG_SHOW:
		ctl_show_records(c, m->data, len);
		break;
	default:
		goto bad;
	}
	return;
bad:
	log_warnx("unexpected %s message (%zu bytes) from process %d",
	    msg_name(m->hdr.type), len, (int)c->pid);
}

/* Read every queued message; end of file means the child is exiting. */
void
child_readable(struct child *c)
{
	static struct msg	 m;
	ssize_t			 n;

	for (;;) {
		n = msg_recv(c->ev.fd, &m);
		if (n == -1 && errno == EBADMSG)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		if (m.fd != -1)
			close(m.fd);	/* children never pass descriptors */
		child_message(c, &m, m.hdr.len);
	}
	/* Gone: reaping will tell why.  Stop watching the socket. */
	ev_del(&c->ev);
	close(c->ev.fd);
	c->ev.fd = -1;
}

static void
child_unlink(struct child *c)
{
	struct child	**pp;

	for (pp = &children; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	nstate[c->state]--;
}

static void
child_free(struct child *c)
{
	struct qmsg	 *q;

	while ((q = c->qhead) != NULL) {
		c->qhead = q->next;
		qmsg_free(c, q, "its experiment process ended");
	}
	if (c->ev.fd != -1) {
		ev_del(&c->ev);
		close(c->ev.fd);
	}
	ev_free_later(&c->ev);
}

static void
log_exit(const struct child *c, int status)
{
	char	 who[128];

	if (c->exp[0] != '\0')
		snprintf(who, sizeof(who), "experiment %s process %d", c->exp,
		    (int)c->pid);
	else
		snprintf(who, sizeof(who), "spare process %d", (int)c->pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("%s exited", who);
	else if (WIFEXITED(status))
		log_warnx("%s exited with status %d", who,
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		log_warnx("%s killed by signal %d (%s)%s", who,
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
}

/*
 * A child that has exited may have left reports in its socket (the
 * Disconnects of its last clients): take them before it is forgotten, and
 * nothing else, since the process is gone.
 */
static void
drain_reports(struct child *c)
{
	static struct msg	 m;
	ssize_t			 n;

	while (c->ev.fd != -1) {
		n = msg_recv(c->ev.fd, &m);
		if (n == -1 && errno == EBADMSG)
			continue;
		if (n <= 0)
			break;
		if (m.fd != -1)
			close(m.fd);
		if (m.hdr.type == MSG_REPORT)
			report_child(c->exp, c->pid, m.data, m.hdr.len);
		else if (m.hdr.type == MSG_STATS)	/* its last figures */
			fig_child_stats(c, m.data, m.hdr.len);
	}
}

void
children_reap(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (c = children; c != NULL && c->pid != pid; c = c->next)
			;
		if (c == NULL)
			continue;	/* a datadir probe, say */
		drain_reports(c);
		budget_reap(opts.cc.budget, pid);	/* if it died holding */
		log_exit(c, status);
		child_unlink(c);
		policy_child_gone(c, status);
		child_free(c);
	}
}

void
children_signal(int sig)
{
	struct child	*c;

	for (c = children; c != NULL; c = c->next)
		kill(c->pid, sig);
}

unsigned
children_count(enum child_state st)
{
	return nstate[st];
}
