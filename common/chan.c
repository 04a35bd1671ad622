/*
 * The channel between the master and each process it forks (experiment
 * processes, the reporter): one SOCK_SEQPACKET socketpair per process,
 * each message one datagram of a fixed header, at most MSG_MAXPAYLOAD
 * bytes of payload and at most one descriptor (SCM_RIGHTS, flagged in the
 * header).  msg_table below is the whole contract: each type's direction,
 * its payload's least and greatest length, and whether a descriptor comes
 * with it.  Both ends go through chan_send and chan_recv:
 *
 * - Sending never blocks.  What the socket does not take at once waits in
 *   the channel's queue, in order, bounded by its qmax bytes, and goes out
 *   when the socket is writable.  Without root, the kernel lets a process
 *   have only as many descriptors in flight as its RLIMIT_NOFILE: past
 *   that, sendmsg() fails with ETOOMANYREFS although the socket is
 *   writable, and the queue waits for the peer to take some, retried on a
 *   timer (EPOLLOUT would fire at once, again and again).  The sender
 *   closes its copy of a descriptor once the message is out.
 * - Receiving enforces the table: a message of unknown type, of the wrong
 *   direction, of a length out of its range, of another generation than
 *   the process's, or with a descriptor it should not have (closed at
 *   once, never leaked) is logged and reported as CHAN_BAD; the master
 *   then kills that process, a process whose master sent it is fatal.
 *
 * The generation is the number the master gave the process when it forked
 * it; every message of either direction carries it, so that no message of
 * a process is ever taken for one of the process that replaced it.
 * (After OpenBSD's imsg: imsg-buffer.c's queue, IMSG_SIZE_CHECK.)
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

#define M2C	MSG_TO_CHILD
#define C2M	MSG_TO_MASTER

struct msg_spec {
	const char	*name;
	uint8_t		 dir;		/* MSG_TO_* */
	uint32_t	 min, max;	/* payload bytes */
	uint8_t		 fd;		/* a descriptor comes with it: 1 always,
					   2 for some (the lock) */
};

/* The contract: name, direction, least and greatest length, descriptor. */
static const struct msg_spec msg_table[MSG_TYPE_MAX] = {
	[MSG_READY] =	   { "ready", C2M, 0, 0, 0 },
	[MSG_ASSIGN] =	   { "assign", M2C, 1, 63, 0 },	/* EXPNAME_MAX */
	[MSG_CLIENT] =	   { "client", M2C, sizeof(struct msg_client),
			     MSG_MAXPAYLOAD, 1 },
	[MSG_IDLE] =	   { "idle", C2M, 4, 4, 0 },
	[MSG_RETIRE] =	   { "retire", M2C, 0, 0, 0 },
	[MSG_SHUTDOWN] =   { "shutdown", M2C, 0, 0, 0 },
	[MSG_STATUS_REQ] = { "status-request", M2C, 0, 0, 0 },
	[MSG_STATUS] =	   { "status", C2M, sizeof(struct msg_status),
			     sizeof(struct msg_status), 0 },
	[MSG_REPORT] =	   { "report", C2M, sizeof(struct msg_report),
			     MSG_REPORT_MAX, 0 },
	[MSG_LOGREOPEN] =  { "log-reopen", M2C, 0, 0, 1 },
	[MSG_LOCK] =	   { "lock", C2M, 0, 0, 2 },	/* fd if any */
	[MSG_STATS] =	   { "stats", C2M, sizeof(struct msg_stats),
			     sizeof(struct msg_stats), 0 },
	[MSG_SHOW_REQ] =   { "show-request", M2C, 4, 4, 0 },
	[MSG_SHOW] =	   { "show", C2M, sizeof(struct msg_show),
			     MSG_MAXPAYLOAD, 0 },
	[MSG_CLOSE] =	   { "close", M2C, 0, 0, 0 },
	[MSG_EVENT] =	   { "event", M2C, sizeof(struct msg_report),
			     MSG_REPORT_MAX, 0 },
	[MSG_SINK] =	   { "sink", M2C, 4, 4, 1 },
};

/* A message the socket did not take yet. */
struct chanq {
	struct chanq	*next;
	uint32_t	 type;
	int		 fd;
	size_t		 len;
	char		 data[];
};

/* Commit duration buckets: 1 ms to 10 s, then the open one. */
const uint64_t stats_bucket_us[STATS_BUCKETS - 1] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 10000000
};

/* Append s (NULL: empty), cut to max bytes, and record its length. */
static size_t
report_put(char *p, struct msg_report *r, enum report_str i, const char *s,
    size_t max)
{
	size_t	 n = s != NULL ? strlen(s) : 0;

	if (n > max)
		n = max;
	if (n > 0)
		memcpy(p, s, n);
	r->len[i] = (uint16_t)n;
	return n;
}

size_t
msg_report_make(char *m, enum report_event ev, uint16_t port,
    const char *address, const char *node, const char *domain,
    const char *app, const char *message)
{
	struct msg_report	 r;
	size_t			 n = sizeof(r);

	memset(&r, 0, sizeof(r));
	r.event = ev;
	r.port = port;
	n += report_put(m + n, &r, RS_ADDRESS, address, REPORT_MAX_ADDRESS);
	n += report_put(m + n, &r, RS_NODE, node, REPORT_MAX_NAME);
	n += report_put(m + n, &r, RS_DOMAIN, domain, REPORT_MAX_DOMAIN);
	n += report_put(m + n, &r, RS_APP, app, REPORT_MAX_NAME);
	n += report_put(m + n, &r, RS_MESSAGE, message, REPORT_MAX_MESSAGE);
	memcpy(m, &r, sizeof(r));
	return n;
}

const char *
msg_name(uint32_t type)
{
	if (type >= MSG_TYPE_MAX || msg_table[type].name == NULL)
		return "unknown";
	return msg_table[type].name;
}

/*
 * Send one datagram.  Returns 0, or -1 with errno (EAGAIN when the peer's
 * queue is full, ETOOMANYREFS with too many descriptors in flight).
 */
static int
frame_send(int sock, uint32_t gen, uint32_t type, int fd, const void *data,
    size_t len)
{
	struct msg_hdr	 h;
	struct iovec	 iov[2];
	struct msghdr	 mh;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr	*c;
	ssize_t		 n;

	if (len > MSG_MAXPAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&h, 0, sizeof(h));
	h.type = type;
	h.len = (uint32_t)len;
	h.flags = fd >= 0 ? MSG_FLAG_FD : 0;
	h.gen = gen;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)data;
	iov[1].iov_len = len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = len ? 2 : 1;
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != sizeof(h) + len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

/* Close every descriptor carried by a message we refuse. */
static void
close_passed(struct msghdr *mh)
{
	struct cmsghdr	*c;
	size_t		 i, n;
	int		 fd;

	for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	}
}

/*
 * Receive one datagram into m and check it against the table, as the
 * receiving side (MSG_TO_MASTER or MSG_TO_CHILD) of generation gen.
 * Returns CHAN_MSG, CHAN_EMPTY, CHAN_EOF, or CHAN_BAD with why filled
 * (every descriptor that came is closed).  A message whose descriptor
 * the kernel could not give us (this process has none free: the kernel
 * closes it) is returned whole, with m->fd -1 and m->fd_lost set, so that
 * the receiver can account for it.
 */
static int
frame_recv(int sock, unsigned side, uint32_t gen, struct msg *m, char *why,
    size_t whylen)
{
	const struct msg_spec	*sp;
	struct iovec		 iov[2];
	struct msghdr		 mh;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr		*c;
	ssize_t			 n;
	size_t			 len;

	iov[0].iov_base = &m->hdr;
	iov[0].iov_len = sizeof(m->hdr);
	iov[1].iov_base = m->data;
	iov[1].iov_len = sizeof(m->data);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = 2;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	m->fd = -1;
	m->fd_lost = 0;
	do {
		n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return CHAN_EMPTY;
	if (n <= 0)
		return CHAN_EOF;
	len = (size_t)n - sizeof(m->hdr);
	sp = m->hdr.type < MSG_TYPE_MAX ? &msg_table[m->hdr.type] : NULL;
	c = CMSG_FIRSTHDR(&mh);
	if ((mh.msg_flags & MSG_TRUNC) || (size_t)n < sizeof(m->hdr) ||
	    m->hdr.len != len)
		snprintf(why, whylen, "malformed message (%zd bytes)", n);
	else if (sp == NULL || sp->name == NULL)
		snprintf(why, whylen, "message of unknown type %u",
		    m->hdr.type);
	else if (!(sp->dir & side))
		snprintf(why, whylen, "%s message sent the wrong way",
		    sp->name);
	else if (m->hdr.gen != gen)
		snprintf(why, whylen, "%s message of generation %u, not %u",
		    sp->name, m->hdr.gen, gen);
	else if (len < sp->min || len > sp->max)
		snprintf(why, whylen, "%s message of %zu bytes (%u to %u "
		    "expected)", sp->name, len, sp->min, sp->max);
	else if (!sp->fd && (c != NULL || (m->hdr.flags & MSG_FLAG_FD) ||
	    (mh.msg_flags & MSG_CTRUNC)))
		snprintf(why, whylen, "unexpected descriptor with %s message",
		    sp->name);
	else if (!sp->fd || (sp->fd == 2 && c == NULL &&
	    !(m->hdr.flags & MSG_FLAG_FD) && !(mh.msg_flags & MSG_CTRUNC)))
		return CHAN_MSG;
	else if (!(m->hdr.flags & MSG_FLAG_FD))
		snprintf(why, whylen, "%s message without its descriptor",
		    sp->name);
	else if (c == NULL && (mh.msg_flags & MSG_CTRUNC)) {
		m->fd_lost = 1;		/* EMFILE: the kernel dropped it */
		return CHAN_MSG;
	} else if (c == NULL || c->cmsg_level != SOL_SOCKET ||
	    c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)) ||
	    (mh.msg_flags & MSG_CTRUNC))
		snprintf(why, whylen, "%s message with a bad descriptor list",
		    sp->name);
	else {
		memcpy(&m->fd, CMSG_DATA(c), sizeof(int));
		return CHAN_MSG;
	}
	close_passed(&mh);
	return CHAN_BAD;
}

/*
 * The bare datagram, for a one-shot exchange outside any loop (the
 * start-up probe's lock): generation 0, checked as the master's side.
 */
int
msg_send(int sock, uint32_t type, int fd, const void *data, size_t len)
{
	return frame_send(sock, 0, type, fd, data, len);
}

ssize_t
msg_recv(int sock, struct msg *m)
{
	char	 why[128];
	int	 r;

	if ((r = frame_recv(sock, MSG_TO_MASTER, 0, m, why, sizeof(why))) ==
	    CHAN_BAD) {
		log_warnx("%s", why);
		errno = EBADMSG;
		return -1;
	}
	if (r == CHAN_EMPTY) {
		errno = EAGAIN;
		return -1;
	}
	return r == CHAN_MSG ? 1 : 0;
}

/* ---- the channel ------------------------------------------------------ */

void
chan_init(struct chan *ch, int kind, int fd, unsigned side, uint32_t gen,
    size_t qmax, int watch, const char *fmt, ...)
{
	va_list	 ap;

	memset(ch, 0, sizeof(*ch));
	ch->ev.kind = kind;
	ch->ev.fd = fd;
	ch->side = side;
	ch->gen = gen;
	ch->qmax = qmax;
	ch->watch = watch;
	ch->qtail = &ch->qhead;
	va_start(ap, fmt);
	vsnprintf(ch->who, sizeof(ch->who), fmt, ap);
	va_end(ap);
	if (fd != -1 && watch)
		ev_add(&ch->ev, EPOLLIN);
}

/* A new socket for a channel that kept its queue (chan_detach). */
void
chan_attach(struct chan *ch, int fd, uint32_t gen)
{
	ch->ev.fd = fd;
	ch->gen = gen;
	ch->retry_at = 0;
	if (ch->watch)
		ev_add(&ch->ev, EPOLLIN);
	chan_flush(ch);
}

static void
want_out(struct chan *ch, int on)
{
	if (ch->watch && ch->ev.fd != -1)
		ev_set(&ch->ev, on ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

#define INFLIGHT_RETRY_MS	10

static void
inflight_wait(struct chan *ch)
{
	ch->retry_at = now_mono_ms() + INFLIGHT_RETRY_MS;
	want_out(ch, 0);
}

static void
enqueue(struct chan *ch, uint32_t type, int fd, const void *data, size_t len)
{
	struct chanq	*q;

	q = xmalloc(sizeof(*q) + len);
	q->next = NULL;
	q->type = type;
	q->fd = fd;
	q->len = len;
	if (len > 0)
		memcpy(q->data, data, len);
	*ch->qtail = q;
	ch->qtail = &q->next;
	ch->nq++;
	ch->qbytes += len;
	ch->qtype[type] += len;
}

/*
 * Send (or queue) a message; ownership of fd passes here (closed once
 * sent, or at once if the message cannot go).  Returns 0 if sent, 1 if
 * queued (the dequeued callback will see it leave the queue), -1 with
 * errno if it cannot go: ENOBUFS past qmax, EPIPE without a socket, or
 * the socket's error.  A message the table does not allow is a bug here.
 */
int
chan_send(struct chan *ch, uint32_t type, int fd, const void *data,
    size_t len)
{
	const struct msg_spec	*sp = type < MSG_TYPE_MAX ? &msg_table[type] :
				    &msg_table[MSG_NONE];
	int			 inflight = 0, e;

	if (sp->name == NULL ||
	    !(sp->dir & (ch->side ^ (MSG_TO_MASTER | MSG_TO_CHILD))) ||
	    len < sp->min || len > sp->max ||
	    (sp->fd != 2 && (fd != -1) != sp->fd))
		fatalx("%s message of %zu bytes%s to %s: not in the table",
		    msg_name(type), len, fd != -1 ? " with a descriptor" : "",
		    ch->who);
	if (ch->qhead == NULL && ch->ev.fd != -1) {
		if (frame_send(ch->ev.fd, ch->gen, type, fd, data, len) == 0) {
			ch->sent_at = now_mono_ms();
			if (fd != -1)
				close(fd);
			return 0;
		}
		inflight = errno == ETOOMANYREFS;
		if (errno != EAGAIN && !inflight)
			goto fail;
	} else if (ch->ev.fd == -1 && !ch->keep) {
		errno = EPIPE;
		goto fail;
	}
	if (ch->qbytes + len > ch->qmax) {
		errno = ENOBUFS;
		goto fail;
	}
	enqueue(ch, type, fd, data, len);
	if (inflight)
		inflight_wait(ch);
	else if (ch->retry_at == 0)
		want_out(ch, 1);
	return 1;
fail:
	e = errno;
	if (fd != -1)
		close(fd);
	errno = e;
	return -1;
}

static void
dequeue(struct chan *ch, const char *lost)
{
	struct chanq	*q = ch->qhead;

	if ((ch->qhead = q->next) == NULL)
		ch->qtail = &ch->qhead;
	ch->nq--;
	ch->qbytes -= q->len;
	ch->qtype[q->type] -= q->len;
	if (q->fd != -1)
		close(q->fd);
	if (ch->dequeued != NULL)
		ch->dequeued(ch, q->type, q->data, q->len, lost);
	free(q);
}

/* The socket is writable (or a retry is due): send what is queued. */
void
chan_flush(struct chan *ch)
{
	struct chanq	*q;
	int		 warned = 0;

	while ((q = ch->qhead) != NULL && ch->ev.fd != -1) {
		if (frame_send(ch->ev.fd, ch->gen, q->type, q->fd, q->data,
		    q->len) == 0) {
			ch->sent_at = now_mono_ms();
			dequeue(ch, NULL);
			continue;
		}
		if (errno == EAGAIN) {
			want_out(ch, 1);
			return;
		}
		if (errno == ETOOMANYREFS) {
			inflight_wait(ch);
			return;
		}
		if (!warned++)
			log_warn("%s message to %s", msg_name(q->type),
			    ch->who);
		dequeue(ch, "its process is not reachable");
	}
	want_out(ch, 0);
}

/* A queue that waits for descriptors in flight: try it.  Next retry. */
uint64_t
chan_tick(struct chan *ch, uint64_t now)
{
	if (ch->retry_at != 0 && now >= ch->retry_at) {
		ch->retry_at = 0;
		chan_flush(ch);
	}
	return ch->retry_at;
}

/*
 * Is the peer reading?  It is if a message went out recently, or if
 * nothing waits to go out.
 */
#define TAKING_MS	1000

int
chan_taking(const struct chan *ch, uint64_t now)
{
	return ch->qhead == NULL || now - ch->sent_at < TAKING_MS;
}

size_t
chan_queued(const struct chan *ch, uint32_t type)
{
	return type < MSG_TYPE_MAX ? ch->qtype[type] : ch->qbytes;
}

/*
 * Wait up to ms for the queue to go out (a process about to exit).
 * Returns 0 once it is empty, -1 if some is left.
 */
int
chan_drain(struct chan *ch, unsigned ms)
{
	struct pollfd	 pfd;
	uint64_t	 now, end = now_mono_ms() + ms;
	int		 wait;

	chan_flush(ch);
	while (ch->qhead != NULL && ch->ev.fd != -1 &&
	    (now = now_mono_ms()) < end) {
		wait = ch->retry_at != 0 ? INFLIGHT_RETRY_MS : (int)(end - now);
		pfd.fd = ch->ev.fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, wait) == -1 && errno != EINTR)
			break;
		ch->retry_at = 0;
		chan_flush(ch);
	}
	return ch->qhead == NULL ? 0 : -1;
}

/* Receive one message, checked against the table (see frame_recv). */
int
chan_recv(struct chan *ch, struct msg *m)
{
	char	 why[128];
	int	 r;

	if (ch->ev.fd == -1)
		return CHAN_EOF;
	r = frame_recv(ch->ev.fd, ch->side, ch->gen, m, why, sizeof(why));
	if (r == CHAN_BAD)
		log_warnx("channel with %s: %s", ch->who, why);
	return r;
}

/* Close the socket; the queue stays for chan_attach if keep is set. */
void
chan_detach(struct chan *ch)
{
	if (ch->ev.fd == -1)
		return;
	if (ch->watch)
		ev_del(&ch->ev);
	close(ch->ev.fd);
	ch->ev.fd = -1;
	ch->retry_at = 0;
}

/* Close the socket and drop the queue (each message lost for why). */
void
chan_close(struct chan *ch, const char *why)
{
	chan_detach(ch);
	while (ch->qhead != NULL)
		dequeue(ch, why);
}
