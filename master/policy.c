/*
 * Policy: which process serves an experiment, when to fork, how to
 * throttle processes that die before they are ready, when an idle
 * experiment's process retires, what one experiment or one source
 * address may hold, and the SIGUSR1 status summary.
 *
 * The master knows every experiment that has a process or connections
 * waiting for one (struct expent).  An experiment has at most one process
 * at a time: its connections wait while that process starts and while an
 * old one retires, so that one experiment never has two writers or two
 * hooks.  A burst of new experiments gets a process each, forked up to
 * SPAWN_MAX at a time, and spares (--spares) are kept ready besides.
 *
 * Retirement is race-free because the master is the only sender of
 * sockets: a child reports IDLE with the number of clients it has received,
 * and the master retires it only if it has handed over no more than that.
 */
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define THROTTLE_MAX_MS	60000
#define SPAWN_MAX	32	/* processes starting at once */
#define NBUCKETS	1024
#define HELD_MIN	64	/* per experiment, whatever the descriptors */

struct expent {
	struct expent	*hnext;		/* in its hash bucket */
	struct expent	*nnext, *nprev;	/* waiting for any process */
	char		 name[EXPNAME_MAX + 1];
	struct proc	*c;		/* serving, starting for it, retiring */
	struct pending	*qhead, *qtail;	/* connections waiting for c */
	unsigned	 nq;
	struct source	*src;		/* which started it */
	int		 needy;		/* on the needy list */
};

static struct expent	*ebucket[NBUCKETS];
static unsigned		 nexps;
static struct expent	*needy_head, *needy_tail;
static unsigned		 nreserved;	/* starting children with an expent */
static unsigned		 startfail;	/* consecutive deaths before serving */
static uint64_t		 throttle_until;
static unsigned		 status_wait;
static int		 shut_sent;

static unsigned
hash(const char *s)
{
	unsigned	 h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKETS;
}

static struct expent *
exp_find(const char *name)
{
	struct expent	*e;

	for (e = ebucket[hash(name)]; e != NULL; e = e->hnext)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static struct expent *
exp_new(const char *name, struct source *src)
{
	struct expent	*e;
	unsigned	 h = hash(name);

	e = xcalloc(1, sizeof(*e));
	strlcpy(e->name, name, sizeof(e->name));
	e->src = src;
	src->refs++;
	src->nexp++;
	e->hnext = ebucket[h];
	ebucket[h] = e;
	nexps++;
	return e;
}

static void
needy_add(struct expent *e)
{
	e->nnext = NULL;
	e->nprev = needy_tail;
	if (needy_tail != NULL)
		needy_tail->nnext = e;
	else
		needy_head = e;
	needy_tail = e;
	e->needy = 1;
}

static void
needy_del(struct expent *e)
{
	if (!e->needy)
		return;
	if (e->nprev != NULL)
		e->nprev->nnext = e->nnext;
	else
		needy_head = e->nnext;
	if (e->nnext != NULL)
		e->nnext->nprev = e->nprev;
	else
		needy_tail = e->nprev;
	e->needy = 0;
}

/* Forget an experiment that has neither a process nor a connection. */
static void
exp_maybe_free(struct expent *e)
{
	struct expent	**pp;

	if (e->c != NULL || e->nq > 0)
		return;
	needy_del(e);
	for (pp = &ebucket[hash(e->name)]; *pp != e; pp = &(*pp)->hnext)
		;
	*pp = e->hnext;
	e->src->nexp--;
	source_put(e->src);
	nexps--;
	free(e);
}

/*
 * What the master may hold for processes that have not taken their
 * connections (waiting for a process to start or to retire, or queued
 * for one that does not read): half of its descriptors in all, so that
 * the other half always serves everyone else (past it the listener waits,
 * listen.c), and a quarter of that per experiment (past it, that
 * experiment's new clients are refused).
 */
static unsigned
held_budget(void)
{
	return fd_limit() / 2;
}

int
policy_held_full(void)
{
	return procs_queued + pending_waiting() >= held_budget();
}

static unsigned
held_per_exp(void)
{
	unsigned	 n = held_budget() / 4;

	return n < HELD_MIN ? HELD_MIN : n;
}

static unsigned
exp_held(const struct expent *e)
{
	return e->nq + (e->c != NULL ? e->c->nq : 0);
}

/*
 * May e hold one more connection?  If not, say why.  A process that is
 * taking its sockets (one went out within TAKING_MS) is only slower than
 * a burst of its clients, not stuck: it may hold more while three
 * quarters of the budget leave room for everyone else.
 */
static int
room_for(const struct expent *e, const struct pending *p)
{
	if (exp_held(e) < held_per_exp())
		return 1;
	if (e->c != NULL && proc_taking(e->c, now_mono_ms()) &&
	    procs_queued + pending_waiting() < held_budget() / 4 * 3)
		return 1;
	log_warnx("client %s port %u: experiment %s already has %u "
	    "connections waiting for its process%s; connection closed",
	    p->peer, p->port, e->name, exp_held(e),
	    e->c != NULL && e->c->state == CH_SERVING ?
	    ", which is not taking them" : "");
	fig_refused(REF_QUEUE_FULL);
	return 0;
}

static int
throttled(void)
{
	return throttle_until != 0 && now_mono_ms() < throttle_until;
}

static int
can_spawn(void)
{
	return !throttled() && procs_count(CH_STARTING) < SPAWN_MAX;
}

static struct proc *
first_child(enum proc_state st, int reserved)
{
	struct proc	*c;

	for (c = procs; c != NULL; c = c->next)
		if (c->state == st && (c->e != NULL) == reserved)
			return c;
	return NULL;
}

static void
reserve(struct proc *c, struct expent *e)
{
	needy_del(e);
	c->e = e;
	e->c = c;
	strlcpy(c->exp, e->name, sizeof(c->exp));
	nreserved++;
}

/* Hand p to c: the fd goes with it (queued if the socket is full). */
static void
handover(struct proc *c, struct pending *p)
{
	struct msg_client	 mc;
	char			*payload;
	size_t			 len;

	memset(&mc, 0, sizeof(mc));
	strlcpy(mc.peer, p->peer, sizeof(mc.peer));
	mc.port = p->port;
	mc.nbytes = (uint32_t)p->data.len;
	len = sizeof(mc) + p->data.len;
	payload = xmalloc(len);
	memcpy(payload, &mc, sizeof(mc));
	memcpy(payload + sizeof(mc), p->data.p, p->data.len);
	proc_send(c, MSG_CLIENT, p->ev.fd, payload, len);
	free(payload);
	c->sent++;
}

/* e's process is serving: hand it every connection that waited. */
static void
hand_queue(struct expent *e)
{
	struct pending	*p;

	while ((p = e->qhead) != NULL) {
		e->qhead = p->onext;
		if (e->qhead == NULL)
			e->qtail = NULL;
		e->nq--;
		p->onext = p->oprev = NULL;
		p->exp = NULL;
		handover(e->c, p);
		pending_handed(p);
	}
}

/* A ready process takes e. */
static void
serve(struct proc *c, struct expent *e)
{
	needy_del(e);
	if (c->state == CH_STARTING)
		nreserved--;
	c->e = e;
	e->c = c;
	strlcpy(c->exp, e->name, sizeof(c->exp));
	proc_set_state(c, CH_SERVING);
	startfail = 0;
	fig_proc_assigned(c);
	proc_send(c, MSG_ASSIGN, -1, c->exp, strlen(c->exp));
	log_info("experiment %s: process %d", c->exp, (int)c->pid);
	hand_queue(e);
}

/*
 * Fork processes for experiments that wait for one, then keep --spares
 * ready or starting (not while stopping: nothing new will come).
 */
static void
spawn_more(void)
{
	struct proc	*c;
	struct expent	*e;

	while ((e = needy_head) != NULL && can_spawn()) {
		if ((c = proc_spawn()) == NULL)
			return;
		reserve(c, e);
	}
	if (stopping)
		return;
	while (procs_count(CH_SPARE) + procs_count(CH_STARTING) -
	    nreserved < (unsigned)opts.spares && can_spawn())
		if (proc_spawn() == NULL)
			return;
}

/* e needs a process: a spare, one already starting, a new one, or later. */
static void
find_process(struct expent *e)
{
	struct proc	*c;

	if (e->c != NULL)
		return;
	if ((c = first_child(CH_SPARE, 0)) != NULL)
		serve(c, e);
	else if ((c = first_child(CH_STARTING, 0)) != NULL)
		reserve(c, e);
	else if (can_spawn() && (c = proc_spawn()) != NULL)
		reserve(c, e);
	else if (!e->needy)
		needy_add(e);
}

static struct expent *
exp_for(const struct pending *p)
{
	struct expent	*e;

	if ((e = exp_find(p->sn.name)) != NULL)
		return e;
	if (nexps >= opts.max_experiments) {
		log_warnx("client %s port %u: experiment %s refused: "
		    "--max-experiments (%u) reached; connection closed",
		    p->peer, p->port, p->sn.name, opts.max_experiments);
		fig_refused(REF_MAX_EXPERIMENTS);
		return NULL;
	}
	if (opts.max_source_experiments != 0 &&
	    p->src->nexp >= opts.max_source_experiments) {
		log_warnx("client %s port %u: experiment %s refused: %s "
		    "already started --max-source-experiments (%u); "
		    "connection closed", p->peer, p->port, p->sn.name,
		    p->src->addr, opts.max_source_experiments);
		fig_refused(REF_MAX_SOURCE_EXPERIMENTS);
		return NULL;
	}
	return exp_new(p->sn.name, p->src);
}

/*
 * Route a named connection.  Returns 0 if handed over (the fd is gone),
 * 1 if it waits in its experiment's queue, -1 if it is refused (logged).
 */
int
policy_route(struct pending *p)
{
	struct expent	*e;
	struct proc	*c;

	if ((e = exp_for(p)) == NULL)
		return -1;
	if (e->c == NULL && e->qhead == NULL &&
	    (c = first_child(CH_SPARE, 0)) != NULL)
		serve(c, e);
	c = e->c;
	if (c != NULL && c->state == CH_SERVING && c->ch.ev.fd != -1 &&
	    e->qhead == NULL) {
		/* a process that does not read gets only so many */
		if (c->nq > 0 && !room_for(e, p))
			return -1;
		handover(c, p);
		return 0;
	}
	if (!room_for(e, p)) {
		exp_maybe_free(e);
		return -1;
	}
	p->exp = e;
	p->onext = NULL;
	p->oprev = e->qtail;
	if (e->qtail != NULL)
		e->qtail->onext = p;
	else
		e->qhead = p;
	e->qtail = p;
	e->nq++;
	if (e->c == NULL)
		find_process(e);
	return 1;
}

/* A waiting connection goes (closed, or its time is up). */
void
policy_unpark(struct pending *p)
{
	struct expent	*e = p->exp;

	if (p->oprev != NULL)
		p->oprev->onext = p->onext;
	else
		e->qhead = p->onext;
	if (p->onext != NULL)
		p->onext->oprev = p->oprev;
	else
		e->qtail = p->oprev;
	p->onext = p->oprev = NULL;
	p->exp = NULL;
	e->nq--;
	if (e->nq > 0)
		return;
	/* nobody waits for the process it was starting any more */
	if (e->c != NULL && e->c->state == CH_STARTING) {
		e->c->e = NULL;
		e->c->exp[0] = '\0';
		e->c = NULL;
		nreserved--;
	}
	exp_maybe_free(e);
}

void
policy_proc_ready(struct proc *c)
{
	struct expent	*e;

	if (c->state != CH_STARTING)
		return;
	if (c->e != NULL)
		serve(c, c->e);
	else {
		proc_set_state(c, CH_SPARE);
		if ((e = needy_head) != NULL)
			serve(c, e);
		else if (shut_sent)
			proc_send(c, MSG_SHUTDOWN, -1, NULL, 0);
	}
	spawn_more();
}

void
policy_proc_idle(struct proc *c, uint32_t received)
{
	if (c->state != CH_SERVING || received != c->sent)
		return;	/* a client is on its way: not idle after all */
	proc_set_state(c, CH_RETIRING);
	proc_send(c, MSG_RETIRE, -1, NULL, 0);
	log_info("experiment %s: idle, retiring process %d", c->exp,
	    (int)c->pid);
}

/*
 * oml2ctl close: the process stores what its clients sent, closes them
 * and exits; no connection is routed to it meanwhile (new clients of the
 * experiment wait for it to end, then get a fresh one).
 */
void
policy_close(struct proc *c, const char *who)
{
	proc_set_state(c, CH_RETIRING);
	proc_send(c, MSG_CLOSE, -1, NULL, 0);
	log_info("experiment %s: closed by %s; retiring process %d", c->exp,
	    who, (int)c->pid);
}

/* A child has been reaped (and is no longer in the table). */
void
policy_proc_gone(struct proc *c, int status)
{
	struct expent	*e = c->e;
	uint64_t	 delay;

	if (c->status_pending && status_wait > 0)
		status_wait--;
	fig_proc_gone(c);
	ctl_proc_gone(c);
	if (c->state == CH_STARTING && e != NULL)
		nreserved--;
	if ((c->state == CH_STARTING || c->state == CH_SPARE) && !stopping) {
		/* A child that dies before serving anything is throttled. */
		startfail++;
		delay = 250ULL << (startfail < 8 ? startfail : 8);
		if (delay > THROTTLE_MAX_MS)
			delay = THROTTLE_MAX_MS;
		throttle_until = now_mono_ms() + delay;
		log_warnx("process %d died before serving anything; waiting "
		    "%.1f s before the next", (int)c->pid, delay / 1000.0);
	} else if (c->state == CH_SERVING && !stopping &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		log_warnx("experiment %s: its next connection gets a fresh "
		    "process", c->exp);
	if (e != NULL) {
		c->e = NULL;
		e->c = NULL;
		if (e->nq > 0)
			find_process(e);
		else
			exp_maybe_free(e);
	}
	spawn_more();
}

void
policy_tick(uint64_t now)
{
	if (throttle_until != 0 && now >= throttle_until)
		throttle_until = 0;
	spawn_more();
}

uint64_t
policy_next_deadline(void)
{
	return throttle_until;
}

/* Shutdown, once no connection waits any more: every process finishes. */
void
policy_shutdown(void)
{
	struct proc	*c;

	shut_sent = 1;
	for (c = procs; c != NULL; c = c->next)
		if (c->state != CH_STARTING)
			proc_send(c, MSG_SHUTDOWN, -1, NULL, 0);
}

/* SIGUSR1: the master's own line, then one per child as they answer. */
void
policy_status(void)
{
	struct proc	*c;

	log_info("status: master pid %d, %u experiments, %u spares, "
	    "%u connections naming their experiment, RSS %ld KiB, %d fds",
	    (int)getpid(), procs_count(CH_SERVING),
	    procs_count(CH_SPARE), pending_count(), rss_kb(),
	    count_open_fds());
	status_wait = 0;
	for (c = procs; c != NULL; c = c->next) {
		if (c->state != CH_SERVING && c->state != CH_SPARE)
			continue;
		c->status_pending = 1;
		status_wait++;
		proc_send(c, MSG_STATUS_REQ, -1, NULL, 0);
	}
}

void
policy_status_reply(struct proc *c)
{
	struct msg_status	*s = &c->status;

	if (!c->status_pending)
		return;
	c->status_pending = 0;
	log_info("status: %s%s process %d: %u clients, %llu rows stored, "
	    "%llu dropped, RSS %llu KiB", c->exp[0] ? "experiment " : "spare",
	    c->exp, (int)c->pid, s->clients, (unsigned long long)s->rows,
	    (unsigned long long)s->rows_dropped,
	    (unsigned long long)s->rss_kb);
	if (status_wait > 0 && --status_wait == 0)
		log_info("status: end");
}
