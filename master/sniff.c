/*
 * Connections that have not named their experiment yet.  The master reads
 * each one non-blocking, at most --header-limit bytes and for at most
 * --header-timeout seconds, until the "domain:" or "experiment-id:" line,
 * and then routes the socket with the bytes read so far.  Two lists, each
 * in deadline order: connections still being read, and named connections
 * waiting for an experiment process.  When too many connections are still
 * being read, the oldest is dropped so that real clients get in (or, if
 * even the oldest is only just accepted, the listener waits a moment).
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define WAIT_MS		30000	/* for an experiment process to be ready */
#define MIN_AGE_MS	2000	/* before --max-pending may drop a connection */

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

/* Close p before hand-over, and report its Disconnect with message. */
static void
pending_end(struct pending *p, const char *why, const char *message)
{
	report_event(REPORT_DISCONNECT, p->peer, p->port,
	    p->waiting ? p->sn.name : NULL, message);
	pending_free(p, why);
}

/*
 * Room under --max-pending for one more connection?  Past the limit the
 * oldest connection still naming its experiment is dropped, but only
 * once it has had MIN_AGE_MS to send its header: in a burst of real
 * clients the listener accepts faster than the clients write (on a busy
 * machine, a client that opens many connections at once may write its
 * first header a second later), and those must not be mistaken for
 * idlers.  Returns 1 if there is room now, else
 * 0 with *retry the time at which the oldest may be dropped.
 */
int
pending_room(uint64_t now, uint64_t *retry)
{
	struct pending	*old;
	uint64_t	 born;

	while (reading.n >= opts.max_pending) {
		old = reading.head;
		born = old->deadline - opts.header_timeout * 1000ULL;
		if (now < born + MIN_AGE_MS) {
			*retry = born + MIN_AGE_MS;
			return 0;
		}
		pending_read(old);	/* its header may be here by now */
		if (reading.head == old)
			pending_end(old, "too many connections still "
			    "sending their header; dropping the oldest",
			    "SOCKET_DROPPED");
	}
	return 1;
}

void
pending_new(int fd, const char *peer, uint16_t port)
{
	struct pending	*p;

	p = xcalloc(1, sizeof(*p));
	p->ev.kind = EV_PENDING;
	p->ev.fd = fd;
	strlcpy(p->peer, peer, sizeof(p->peer));
	p->port = port;
	p->deadline = now_mono_ms() + opts.header_timeout * 1000ULL;
	buf_init(&p->data);
	plist_add(&reading, p);
	ev_add(&p->ev, EPOLLIN | EPOLLRDHUP);
	log_debug("connection from %s port %u", peer, port);
	report_event(REPORT_CONNECT, peer, port, NULL, NULL);
	/* A client usually sends its header at once: route it now. */
	pending_read(p);
}

/*
 * Close and forget p; why (if not NULL) is logged as a warning.  Nothing
 * is reported: pending_end() is for connections that end here.
 */
void
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
	plist_del(p->waiting ? &waiting : &reading, p);
	buf_free(&p->data);
	ev_free_later(&p->ev);
	listen_resume();	/* a descriptor and a slot are free */
}

/* Hand p over (policy_route took the fd) or park it for a child. */
static void
pending_named(struct pending *p)
{
	int	 r;

	ev_del(&p->ev);
	plist_del(&reading, p);
	listen_resume();	/* a slot under --max-pending is free */
	p->waiting = 1;
	plist_add(&waiting, p);
	r = policy_route(p);
	if (r == 1) {
		p->deadline = now_mono_ms() + WAIT_MS;
		return;
	}
	if (r == 0) {
		p->ev.fd = -1;	/* now the child's */
		pending_free(p, NULL);
	} else
		pending_end(p, NULL, "SOCKET_DROPPED");	/* refusal logged */
}

static int
pending_fill(struct pending *p)
{
	ssize_t	 n;
	size_t	 room;

	for (;;) {
		room = opts.header_limit - p->data.len;
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
	switch (sniff_expid(&p->sn, p->data.p, p->data.len, &why)) {
	case SNIFF_FOUND:
		log_debug("client %s port %u names experiment %s", p->peer,
		    p->port, p->sn.name);
		pending_named(p);
		return;
	case SNIFF_BAD:
		pending_end(p, why, "C_PROTOCOL_ERROR");
		return;
	case SNIFF_MORE:
		break;
	}
	if (eof)
		pending_end(p, p->data.len ? "closed before naming its "
		    "experiment" : NULL, "SOCKET_CONN_CLOSED");
	else if (p->data.len >= opts.header_limit)
		pending_end(p, "no experiment id in the first "
		    "--header-limit bytes", "C_PROTOCOL_ERROR");
}

void
pending_expire(uint64_t now)
{
	while (reading.head != NULL && reading.head->deadline <= now)
		pending_end(reading.head, "did not name its experiment "
		    "in time", "SOCKET_IDLE");
	while (waiting.head != NULL && waiting.head->deadline <= now)
		pending_end(waiting.head, "no experiment process became "
		    "available in time", "SOCKET_DROPPED");
}

/* A child became available: try the parked connections again. */
void
pending_retry_waiting(void)
{
	struct pending	*p, *next;
	int		 r;

	for (p = waiting.head; p != NULL; p = next) {
		next = p->next;
		if ((r = policy_route(p)) == 1)
			continue;
		if (r == 0) {
			p->ev.fd = -1;
			pending_free(p, NULL);
		} else
			pending_end(p, NULL, "SOCKET_DROPPED");
	}
}

/*
 * Shutdown: one last read of every connection still naming its
 * experiment, so that a client whose bytes are already here is served.
 */
void
pending_drain(void)
{
	struct pending	*p, *next;

	for (p = reading.head; p != NULL; p = next) {
		next = p->next;
		pending_read(p);
	}
	for (p = reading.head; p != NULL; p = next) {
		next = p->next;
		pending_end(p, "server shutting down", "SOCKET_DROPPED");
	}
}

unsigned
pending_count(void)
{
	return reading.n + waiting.n;
}

uint64_t
pending_next_deadline(void)
{
	uint64_t	 d = 0;

	if (reading.head != NULL)
		d = reading.head->deadline;
	if (waiting.head != NULL && (d == 0 || waiting.head->deadline < d))
		d = waiting.head->deadline;
	return d;
}
