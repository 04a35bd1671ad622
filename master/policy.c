/*
 * Policy: which child serves a connection, when to fork spares, how to
 * throttle children that die before they are ready, when an idle
 * experiment's process retires, and the SIGUSR1 status summary.
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

static unsigned	 startfail;	/* consecutive deaths before serving */
static uint64_t	 throttle_until;
static unsigned	 status_wait;

static int
throttled(void)
{
	return throttle_until != 0 && now_mono_ms() < throttle_until;
}

/* Keep --spares processes ready or starting, and one for any waiter. */
static void
spawn_more(int need_one)
{
	unsigned	 have;

	if (stopping || throttled())
		return;
	have = children_count(CH_STARTING) + children_count(CH_SPARE);
	while (have < (unsigned)opts.spares || (need_one && have == 0)) {
		if (child_spawn() == NULL)
			return;
		have++;
	}
}

static struct child *
first_spare(void)
{
	struct child	*c;

	for (c = children; c != NULL; c = c->next)
		if (c->state == CH_SPARE)
			return c;
	return NULL;
}

/*
 * Route a named connection.  Returns 0 if handed over (the fd is gone),
 * 1 if it must wait for a spare, -1 if it is refused (logged here).
 */
int
policy_route(struct pending *p)
{
	struct msg_client	 mc;
	struct child		*c;
	char			*payload;
	size_t			 len;

	if ((c = child_by_exp(p->sn.name)) == NULL) {
		if (children_count(CH_SERVING) >= opts.max_experiments) {
			log_warnx("client %s port %u: experiment %s refused: "
			    "--max-experiments (%u) reached; connection closed",
			    p->peer, p->port, p->sn.name,
			    opts.max_experiments);
			fig_refused(REF_MAX_EXPERIMENTS);
			return -1;
		}
		if ((c = first_spare()) == NULL) {
			spawn_more(1);
			return 1;
		}
		c->state = CH_SERVING;
		startfail = 0;
		strlcpy(c->exp, p->sn.name, sizeof(c->exp));
		fig_child_assigned(c);
		child_send(c, MSG_ASSIGN, -1, c->exp, strlen(c->exp));
		log_info("experiment %s: process %d", c->exp, (int)c->pid);
		spawn_more(0);
	}
	memset(&mc, 0, sizeof(mc));
	strlcpy(mc.peer, p->peer, sizeof(mc.peer));
	mc.port = p->port;
	mc.nbytes = (uint32_t)p->data.len;
	len = sizeof(mc) + p->data.len;
	payload = xmalloc(len);
	memcpy(payload, &mc, sizeof(mc));
	memcpy(payload + sizeof(mc), p->data.p, p->data.len);
	child_send(c, MSG_CLIENT, p->ev.fd, payload, len);
	free(payload);
	c->sent++;
	return 0;
}

void
policy_child_ready(struct child *c)
{
	if (c->state != CH_STARTING)
		return;
	c->state = CH_SPARE;
	if (stopping) {
		child_send(c, MSG_SHUTDOWN, -1, NULL, 0);
		return;
	}
	pending_retry_waiting();
}

void
policy_child_idle(struct child *c, uint32_t received)
{
	if (c->state != CH_SERVING || received != c->sent)
		return;	/* a client is on its way: not idle after all */
	c->state = CH_RETIRING;
	child_send(c, MSG_RETIRE, -1, NULL, 0);
	log_info("experiment %s: idle, retiring process %d", c->exp,
	    (int)c->pid);
}

/*
 * oml2ctl close: the process stores what its clients sent, closes them
 * and exits; no connection is routed to it meanwhile.
 */
void
policy_close(struct child *c, const char *who)
{
	c->state = CH_RETIRING;
	child_send(c, MSG_CLOSE, -1, NULL, 0);
	log_info("experiment %s: closed by %s; retiring process %d", c->exp,
	    who, (int)c->pid);
}

void
policy_child_gone(struct child *c, int status)
{
	uint64_t	 delay;

	if (c->status_pending && status_wait > 0)
		status_wait--;
	fig_child_gone(c);
	ctl_child_gone(c);
	/* A child that dies before serving anything is throttled. */
	if ((c->state == CH_STARTING || c->state == CH_SPARE) && !stopping) {
		startfail++;
		delay = 250ULL << (startfail < 8 ? startfail : 8);
		if (delay > THROTTLE_MAX_MS)
			delay = THROTTLE_MAX_MS;
		throttle_until = now_mono_ms() + delay;
		log_warnx("process %d died before serving anything; waiting "
		    "%.1f s before the next", (int)c->pid, delay / 1000.0);
		return;
	}
	if (c->state == CH_SERVING && !stopping &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		log_warnx("experiment %s: its next connection gets a fresh "
		    "process", c->exp);
}

void
policy_tick(uint64_t now)
{
	if (throttle_until != 0 && now >= throttle_until) {
		throttle_until = 0;
		spawn_more(pending_count() > 0);
	} else if (throttle_until == 0)
		spawn_more(0);
}

uint64_t
policy_next_deadline(void)
{
	return throttle_until;
}

/* SIGUSR1: the master's own line, then one per child as they answer. */
void
policy_status(void)
{
	struct child	*c;

	log_info("status: master pid %d, %u experiments, %u spares, "
	    "%u connections naming their experiment, RSS %ld KiB, %d fds",
	    (int)getpid(), children_count(CH_SERVING),
	    children_count(CH_SPARE), pending_count(), rss_kb(),
	    count_open_fds());
	status_wait = 0;
	for (c = children; c != NULL; c = c->next) {
		if (c->state != CH_SERVING && c->state != CH_SPARE)
			continue;
		c->status_pending = 1;
		status_wait++;
		child_send(c, MSG_STATUS_REQ, -1, NULL, 0);
	}
}

void
policy_status_reply(struct child *c)
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
