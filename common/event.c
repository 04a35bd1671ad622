/*
 * The event core every process's loop runs on: one epoll set per process,
 * event sources that join, change and leave it, objects freed only once
 * the batch of events that may still point at them is done, and the
 * earliest of the deadlines the loop's parts return.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <stdlib.h>

#include "common/common.h"

static int	 epfd = -1;
static void	**grave;
static size_t	 ngrave, gravecap;

/*
 * Once per process.  A forked process makes its own set (the parent's
 * descriptor, closed by then, may have been reused: it is not touched).
 */
void
ev_init(void)
{
	/* forked: what the parent was about to free is this process's to free */
	while (ngrave > 0)
		free(grave[--ngrave]);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
}

static int
ctl(int op, struct ev *e, uint32_t events)
{
	struct epoll_event	 ee = { .events = events, .data.ptr = e };

	return epoll_ctl(epfd, op, e->fd, &ee);
}

void
ev_add(struct ev *e, uint32_t events)
{
	if (ctl(EPOLL_CTL_ADD, e, events) == -1)
		fatal("epoll_ctl add");
	e->on = 1;
	e->events = events;
}

void
ev_mod(struct ev *e, uint32_t events)
{
	if (ctl(EPOLL_CTL_MOD, e, events) == -1)
		fatal("epoll_ctl mod");
	e->events = events;
}

/*
 * Add or modify, whichever it needs (a descriptor closed while registered
 * has left the set: it is added again).
 */
void
ev_set(struct ev *e, uint32_t events)
{
	if (e->on && ctl(EPOLL_CTL_MOD, e, events) == 0) {
		e->events = events;
		return;
	}
	if (e->on && errno != ENOENT)
		fatal("epoll_ctl mod");
	ev_add(e, events);
}

void
ev_del(struct ev *e)
{
	if (e->fd != -1 && ctl(EPOLL_CTL_DEL, e, 0) == -1 &&
	    errno != ENOENT && errno != EBADF)
		log_warn("epoll_ctl del");
	e->on = 0;
	e->events = 0;
}

/*
 * Objects may be freed while later events of the same batch still point
 * at them: the object (whose first member is e) is marked dead and freed
 * after the batch.  One batch may bury any number (a thousand half-open
 * connections expiring together), so the list grows as needed.
 */
void
ev_free_later(struct ev *e)
{
	e->kind = EV_DEAD;
	if (ngrave == gravecap) {
		gravecap = gravecap ? gravecap * 2 : 256;
		grave = xreallocarray(grave, gravecap, sizeof(*grave));
	}
	grave[ngrave++] = e;
}

/*
 * Wait until an event or the deadline (monotonic ms; 0: none, then at
 * most a second), hand each event to fn, then free what was buried.
 */
void
ev_wait(uint64_t deadline, void (*fn)(struct ev *, uint32_t))
{
	struct epoll_event	 evs[64];
	uint64_t		 now = now_mono_ms();
	int			 i, n, ms;

	if (deadline == 0 || deadline > now + 1000)
		deadline = now + 1000;
	ms = deadline > now ? (int)(deadline - now) : 0;
	n = epoll_wait(epfd, evs, nitems(evs), ms);
	if (n == -1 && errno != EINTR)
		fatal("epoll_wait");
	for (i = 0; i < n; i++)
		if (((struct ev *)evs[i].data.ptr)->kind != EV_DEAD)
			fn(evs[i].data.ptr, evs[i].events);
	while (ngrave > 0)
		free(grave[--ngrave]);
}

/* Keep in *next the earliest of the deadlines given (0: none). */
void
ev_due(uint64_t *next, uint64_t due)
{
	if (due != 0 && (*next == 0 || due < *next))
		*next = due;
}
