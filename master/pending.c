/*
 * Connections that have not named their experiment yet.  The master reads
 * each one non-blocking, at most --header-limit bytes and for at most
 * --header-timeout seconds, until the "domain:" or "experiment-id:" line,
 * and then routes the socket with the bytes read so far.  Two lists, each
 * in deadline order: connections still being read, and named connections
 * waiting for their experiment's process (policy.c keeps them in order
 * per experiment too).  When too many connections are still being read,
 * overall or from one address, the oldest of the address that holds the
 * most is dropped so that real clients get in (or, if even that one is
 * only just accepted, the listener waits a moment).  At shutdown every
 * connection still here is served, within STOP_WAIT_MS.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define WAIT_MS		30000	/* for an experiment process to be ready */
#define MIN_AGE_MS	2000	/* before --max-pending may drop a connection */
#define STOP_WAIT_MS	10000	/* the most any connection gets at shutdown */

/*
 * A connection may wait for a process that retires, and so for its
 * hook: it gets --hook-timeout on top.
 */
static uint64_t
wait_ms(uint64_t base)
{
	return base + opts.cc.hook_timeout * 1000ULL;
}

struct plist {
	struct pending	*head, *tail;
	unsigned	 n;
};

static struct plist	 reading, waiting;

static void
plist_add(struct plist *l, struct pending *p)
{
	p->next = NULL;
	p->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
	l->n++;
}

static void
plist_del(struct plist *l, struct pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		l->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		l->tail = p->prev;
	l->n--;
}

static void	 pending_free(struct pending *, const char *);

/* Close p before hand-over, and report its Disconnect with message. */
static void
pending_end(struct pending *p, const char *why, const char *message)
{
	if (stopping && strcmp(message, "SOCKET_CONN_CLOSED") != 0)
		unserved++;
	if (p->reported)
		report_event(REPORT_DISCONNECT, p->peer, p->port,
		    p->waiting ? p->sn.name : NULL, message);
	pending_free(p, why);
}

/*
 * Drop s's oldest connection still naming its experiment, once it has
 * had MIN_AGE_MS to send its header (its header may be here by now: read
 * it first).  Returns 1 if that one is gone, else 0 with *retry the time
 * at which it may be dropped.
 */
static int
drop_oldest(struct source *s, uint64_t now, uint64_t *retry,
    const char *why, enum refuse ref)
{
	struct pending	*old = s->head;

	if (now < old->born + MIN_AGE_MS) {
		*retry = old->born + MIN_AGE_MS;
		return 0;
	}
	s->refs++;		/* s outlives old */
	pending_read(old);
	if (s->head == old) {	/* still naming it: its time is up */
		fig_refused(ref);
		pending_end(old, why, "SOCKET_DROPPED");
	}
	source_put(s);
	return 1;
}

/* Is --max-pending reached? */
int
pending_full(void)
{
	return reading.n >= opts.max_pending;
}

/*
 * Room under --max-pending for one more connection?  Past the limit the
 * oldest connection of the address holding the most is dropped, but only
 * once it has had MIN_AGE_MS to send its header: in a burst of real
 * clients the listener accepts faster than the clients write (on a busy
 * machine, a client that opens many connections at once may write its
 * first header a second later), and those must not be mistaken for
 * idlers.  Returns 1 if there is room now, else 0 with *retry the time at
 * which there may be.
 */
int
pending_room(uint64_t now, uint64_t *retry)
{
	while (reading.n >= opts.max_pending)
		if (!drop_oldest(source_busiest(), now, retry,
		    "too many connections still sending their header; "
		    "dropping the oldest", REF_MAX_PENDING))
			return 0;
	return 1;
}

static const char *
source_why(void)
{
	static char	 why[128];

	snprintf(why, sizeof(why), "too many connections from this address "
	    "still sending their header (--max-source-pending %u); dropping "
	    "its oldest", opts.max_source_pending);
	return why;
}

/*
 * Past --max-source-pending, drop s's oldest connections that have had
 * their MIN_AGE_MS; the source stays on the trim list while it is over
 * and its oldest is younger.  Another address's connections are never
 * touched, and the listener never waits for this.
 */
static void
source_trim(struct source *s, uint64_t now)
{
	uint64_t	 retry;

	s->refs++;
	while (s->npending > opts.max_source_pending &&
	    drop_oldest(s, now, &retry, source_why(), REF_MAX_SOURCE_PENDING))
		;
	if (s->npending > opts.max_source_pending)
		source_trim_add(s);
	else
		source_trim_del(s);
	source_put(s);
}

/* p is a client, at its (real) address: report its Connect. */
void
pending_connected(struct pending *p)
{
	report_event(REPORT_CONNECT, p->peer, p->port, NULL, NULL);
	p->reported = 1;
}

/*
 * A new connection; trusted if its address is one of --proxy-from, whose
 * connections are counted for the proxy's address until their preamble
 * names the client, and are not trimmed for it (the proxy's address
 * stands for many clients).
 */
void
pending_new(int fd, const char *peer, uint16_t port, int trusted)
{
	struct pending	*p;
	struct source	*s;
	uint64_t	 now = now_mono_ms();

	p = xcalloc(1, sizeof(*p));
	p->ev.kind = EV_PENDING;
	p->ev.fd = fd;
	strlcpy(p->peer, peer, sizeof(p->peer));
	p->port = port;
	p->born = now;
	p->deadline = now + opts.header_timeout * 1000ULL;
	if (stopping && p->deadline > now + STOP_WAIT_MS)
		p->deadline = now + STOP_WAIT_MS;
	buf_init(&p->data);
	p->src = s = source_get(peer);
	plist_add(&reading, p);
	source_add_pending(s, p);
	ev_add(&p->ev, EPOLLIN | EPOLLRDHUP);
	log_debug("connection from %s port %u", peer, port);
	p->px = trusted ? PX_WANT : PX_CHECK;
	if (!trusted)
		pending_connected(p);
	if (!stopping && !trusted && opts.max_source_pending != 0 &&
	    s->npending > opts.max_source_pending)
		source_trim(s, now);
	/* A client usually sends its header at once: route it now. */
	pending_read(p);
}

/*
 * Close and forget p; why (if not NULL) is logged as a warning.  Nothing
 * is reported: pending_end() is for connections that end here.
 */
static void
pending_free(struct pending *p, const char *why)
{
	if (why != NULL)
		log_warnx("client %s port %u: %s; connection closed",
		    p->peer, p->port, why);
	if (p->ev.fd != -1) {
		if (!p->waiting)
			ev_del(&p->ev);
		close(p->ev.fd);
	}
	if (p->waiting) {
		if (p->exp != NULL)
			policy_unpark(p);
		plist_del(&waiting, p);
	} else {
		plist_del(&reading, p);
		source_del_pending(p->src, p);
	}
	source_put(p->src);
	buf_free(&p->data);
	ev_free_later(&p->ev);
	listen_resume();	/* a descriptor and a slot are free */
}

/* policy.c gave p's socket to its experiment's process. */
void
pending_handed(struct pending *p)
{
	p->ev.fd = -1;
	pending_free(p, NULL);
}

/* policy_route() refused p, and logged why. */
static void
pending_refused(struct pending *p)
{
	pending_end(p, NULL, "SOCKET_DROPPED");
}

/* Hand p over, or leave it waiting for its experiment's process. */
static void
pending_named(struct pending *p)
{
	uint64_t	 now = now_mono_ms();

	ev_del(&p->ev);
	plist_del(&reading, p);
	source_del_pending(p->src, p);
	listen_resume();	/* a slot under --max-pending is free */
	p->waiting = 1;
	p->deadline = now + wait_ms(stopping ? STOP_WAIT_MS : WAIT_MS);
	plist_add(&waiting, p);
	switch (policy_route(p)) {
	case 0:
		pending_handed(p);
		break;
	case -1:
		pending_refused(p);
		break;
	default:
		break;		/* waits (or policy.c already handed it) */
	}
}

static int
pending_fill(struct pending *p)
{
	ssize_t	 n;
	size_t	 room;

	for (;;) {
		room = opts.header_limit - p->pre - p->data.len;
		if (room == 0)
			return 0;
		/* most headers are short: grow the buffer as they come */
		buf_reserve(&p->data, room < 1024 ? room : 1024);
		room = p->data.cap - p->data.len < room ?
		    p->data.cap - p->data.len : room;
		n = recv(p->ev.fd, p->data.p + p->data.len, room, 0);
		if (n > 0) {
			p->data.len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -1;
	}
}

void
pending_read(struct pending *p)
{
	const char	*why = NULL;
	int		 eof;

	/*
	 * A named connection is not read here any more.  An event of the
	 * epoll batch being dispatched may still point at one: past
	 * --max-pending, pending_room() reads the oldest connection itself,
	 * which may name it and park it for a process before its own event
	 * comes up.  Reading it again then looked at the rest of its header
	 * for an experiment id and closed a valid client at its blank line.
	 */
	if (p->waiting)
		return;
	eof = pending_fill(p) == -1;
	switch (proxy_read(p, &why)) {
	case -1:
		fig_refused(REF_PROXY);
		pending_end(p, why, "C_PROTOCOL_ERROR");
		return;
	case 0:
		goto more;	/* more of a preamble to come */
	}
	switch (sniff_expid(&p->sn, p->data.p, p->data.len, &why)) {
	case SNIFF_FOUND:
		log_debug("client %s port %u names experiment %s", p->peer,
		    p->port, p->sn.name);
		pending_named(p);
		return;
	case SNIFF_BAD:
		fig_refused(REF_BAD_HEADER);
		pending_end(p, why, "C_PROTOCOL_ERROR");
		return;
	case SNIFF_MORE:
		break;
	}
more:
	if (eof) {
		fig_refused(REF_CLOSED_EARLY);
		pending_end(p, p->data.len ? "closed before naming its "
		    "experiment" : NULL, "SOCKET_CONN_CLOSED");
	} else if (p->pre + p->data.len >= opts.header_limit) {
		fig_refused(REF_HEADER_LIMIT);
		pending_end(p, "no experiment id in the first "
		    "--header-limit bytes", "C_PROTOCOL_ERROR");
	}
}

void
pending_expire(uint64_t now)
{
	struct source	*s, *next;

	/* (at shutdown every connection is to be served: no trimming) */
	for (s = source_trim_first(); s != NULL && !stopping; s = next) {
		next = s->tnext;
		source_trim(s, now);
	}
	/* at shutdown, a deadline is the shutdown's */
	while (reading.head != NULL && reading.head->deadline <= now) {
		fig_refused(stopping ? REF_SHUTDOWN : REF_HEADER_TIMEOUT);
		pending_end(reading.head, "did not name its experiment "
		    "in time", "SOCKET_IDLE");
	}
	while (waiting.head != NULL && waiting.head->deadline <= now) {
		fig_refused(stopping ? REF_SHUTDOWN : REF_NO_PROCESS);
		pending_end(waiting.head, "no experiment process became "
		    "available in time", "SOCKET_DROPPED");
	}
}

/*
 * Shutdown: no connection gets more than STOP_WAIT_MS from now to name
 * its experiment, or that and --hook-timeout to see its process start.
 * (Both lists stay in deadline order.)
 */
void
pending_stop(uint64_t now)
{
	struct pending	*p;

	for (p = reading.head; p != NULL; p = p->next)
		if (p->deadline > now + STOP_WAIT_MS)
			p->deadline = now + STOP_WAIT_MS;
	for (p = waiting.head; p != NULL; p = p->next)
		if (p->deadline > now + wait_ms(STOP_WAIT_MS))
			p->deadline = now + wait_ms(STOP_WAIT_MS);
}

unsigned
pending_count(void)
{
	return reading.n + waiting.n;
}

unsigned
pending_waiting(void)
{
	return waiting.n;
}

uint64_t
pending_next_deadline(void)
{
	struct source	*s;
	uint64_t	 d = 0, t;

	for (s = source_trim_first(); s != NULL && !stopping; s = s->tnext) {
		if (s->head == NULL)
			continue;	/* no longer over: the next trim says so */
		t = s->head->born + MIN_AGE_MS;
		if (d == 0 || t < d)
			d = t;
	}
	if (reading.head != NULL && (d == 0 || reading.head->deadline < d))
		d = reading.head->deadline;
	if (waiting.head != NULL && (d == 0 || waiting.head->deadline < d))
		d = waiting.head->deadline;
	return d;
}
