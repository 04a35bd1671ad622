/*
 * t/unit_chan -- unit tests for common/chan.c, over a real socketpair:
 * messages the table refuses (wrong length, unknown type, wrong way,
 * another generation, a descriptor where none belongs or none where one
 * must be: closed, never leaked), the queue when the socket is full (in
 * order, flushed once the peer reads), its bound, and its end.  Prints
 * each failure and a summary; exits 1 if anything failed.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

#include "t/check.h"

/* A datagram as a broken or hostile peer would make it. */
static void
raw_send(int sock, uint32_t type, uint32_t gen, uint32_t flags, int fd,
    const void *data, size_t len, uint32_t claimed)
{
	struct msg_hdr	 h;
	struct iovec	 iov[2];
	struct msghdr	 mh;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr	*c;

	memset(&h, 0, sizeof(h));
	h.type = type;
	h.gen = gen;
	h.flags = flags;
	h.len = claimed;
	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)data;
	iov[1].iov_len = len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = len ? 2 : 1;
	if (fd != -1) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(sock, &mh, 0) == -1) {
		perror("sendmsg");
		exit(2);
	}
}

/* A descriptor to pass: a pipe's read end (the write end is closed). */
static int
some_fd(void)
{
	int	 p[2];

	if (pipe(p) == -1) {
		perror("pipe");
		exit(2);
	}
	close(p[1]);
	return p[0];
}

static struct chan	 mc, cc;	/* the master's end, the child's */
static int		 msock, csock;
static unsigned		 nsent, nlost;

static void
left(struct chan *ch, uint32_t type, const char *data, size_t len,
    const char *lost)
{
	(void)ch;
	(void)type;
	(void)data;
	(void)len;
	if (lost == NULL)
		nsent++;
	else
		nlost++;
}

static void
pair(uint32_t gen, size_t qmax)
{
	int	 sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		perror("socketpair");
		exit(2);
	}
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
	msock = sv[0];
	csock = sv[1];
	chan_init(&mc, 1, msock, MSG_TO_MASTER, gen, qmax, 0, "child");
	chan_init(&cc, 1, csock, MSG_TO_CHILD, gen, qmax, 0, "master");
	mc.dequeued = cc.dequeued = left;
	nsent = nlost = 0;
}

static void
unpair(void)
{
	chan_close(&mc, "test over");
	chan_close(&cc, "test over");
}

static void
test_roundtrip(void)
{
	static struct msg	 m;
	uint32_t		 u = 42;
	int			 fd, before;

	section = "roundtrip";
	pair(7, 1 << 20);
	CHECK(chan_recv(&mc, &m) == CHAN_EMPTY);
	CHECK(chan_send(&cc, MSG_IDLE, -1, &u, sizeof(u)) == 0);
	CHECK(chan_recv(&mc, &m) == CHAN_MSG);
	CHECK(m.hdr.type == MSG_IDLE && m.hdr.len == 4 && m.hdr.gen == 7);
	CHECK(memcmp(m.data, &u, 4) == 0 && m.fd == -1);
	/* a descriptor where the table has one: it arrives, ours is closed */
	before = count_open_fds();
	fd = some_fd();
	CHECK(chan_send(&mc, MSG_LOGREOPEN, fd, NULL, 0) == 0);
	CHECK(fcntl(fd, F_GETFD) == -1);	/* the sender's copy closed */
	CHECK(chan_recv(&cc, &m) == CHAN_MSG);
	CHECK(m.hdr.type == MSG_LOGREOPEN && m.fd != -1);
	close(m.fd);
	CHECK(count_open_fds() == before);
	unpair();
}

/* One datagram the table refuses, then a good one still comes through. */
static void
refused(const char *what, uint32_t type, uint32_t gen, uint32_t flags,
    int withfd, size_t len, uint32_t claimed)
{
	static struct msg	 m;
	char			 data[64];
	int			 before, fd = -1;
	uint32_t		 u = 1;

	section = what;
	pair(7, 1 << 20);
	before = count_open_fds();
	memset(data, 'x', sizeof(data));
	if (withfd)
		fd = some_fd();
	raw_send(csock, type, gen, flags, fd, data, len, claimed);
	if (fd != -1)
		close(fd);
	CHECK(chan_recv(&mc, &m) == CHAN_BAD);
	/* whatever came with it is closed: no descriptor left behind */
	CHECK(count_open_fds() == before);
	CHECK(chan_send(&cc, MSG_IDLE, -1, &u, sizeof(u)) == 0);
	CHECK(chan_recv(&mc, &m) == CHAN_MSG && m.hdr.type == MSG_IDLE);
	unpair();
}

static void
test_refused(void)
{
	refused("wrong length", MSG_IDLE, 7, 0, 0, 3, 3);
	refused("too long", MSG_STATUS, 7, 0, 0, 64, 64);
	refused("length not as claimed", MSG_IDLE, 7, 0, 0, 4, 8);
	refused("unknown type", 99, 7, 0, 0, 0, 0);
	refused("type none", MSG_NONE, 7, 0, 0, 0, 0);
	refused("wrong way", MSG_ASSIGN, 7, 0, 0, 4, 4);
	refused("generation", MSG_READY, 6, 0, 0, 0, 0);
	refused("unexpected fd", MSG_IDLE, 7, MSG_FLAG_FD, 1, 4, 4);
	refused("unflagged fd", MSG_READY, 7, 0, 1, 0, 0);
	refused("fd on a bad message", MSG_IDLE, 7, MSG_FLAG_FD, 1, 2, 2);
	refused("fd flagged, none sent", MSG_LOCK, 7, MSG_FLAG_FD, 0, 0, 0);
	refused("lock, unflagged fd", MSG_LOCK, 7, 0, 1, 0, 0);
}

/* The child's side refuses as strictly. */
static void
test_child_side(void)
{
	static struct msg	 m;
	int			 fd, before;

	section = "child side";
	pair(3, 1 << 20);
	before = count_open_fds();
	fd = some_fd();
	raw_send(msock, MSG_RETIRE, 3, MSG_FLAG_FD, fd, NULL, 0, 0);
	close(fd);
	CHECK(chan_recv(&cc, &m) == CHAN_BAD);
	CHECK(count_open_fds() == before);
	raw_send(msock, MSG_STATUS, 3, 0, -1, &m, sizeof(struct msg_status),
	    sizeof(struct msg_status));	/* a child's message */
	CHECK(chan_recv(&cc, &m) == CHAN_BAD);
	/* a type that must carry one, without it */
	raw_send(msock, MSG_LOGREOPEN, 3, 0, -1, NULL, 0, 0);
	CHECK(chan_recv(&cc, &m) == CHAN_BAD);
	raw_send(msock, MSG_SHOW_REQ, 3, 0, -1, "abcd", 4, 4);
	CHECK(chan_recv(&cc, &m) == CHAN_MSG && m.hdr.type == MSG_SHOW_REQ);
	unpair();
}

/* The lock comes with a descriptor or without (a backend without one). */
static void
test_optional_fd(void)
{
	static struct msg	 m;
	int			 before;

	section = "optional fd";
	pair(2, 1 << 20);
	before = count_open_fds();
	CHECK(chan_send(&cc, MSG_LOCK, -1, NULL, 0) == 0);
	CHECK(chan_recv(&mc, &m) == CHAN_MSG && m.fd == -1);
	CHECK(chan_send(&cc, MSG_LOCK, some_fd(), NULL, 0) == 0);
	CHECK(chan_recv(&mc, &m) == CHAN_MSG && m.fd != -1);
	close(m.fd);
	CHECK(count_open_fds() == before);
	unpair();
}

/*
 * A full socket: messages queue in order, none is lost, and they go out
 * as the peer reads and the queue is flushed.
 */
static void
test_queue(void)
{
	static struct msg	 m;
	static char		 payload[1024];
	int			 r;
	unsigned		 i, n, queued = 0, got = 0, bad = 0;
	uint32_t		 seq;

	section = "queue";
	pair(9, 64 << 20);
	n = 0;
	for (i = 0; i < 400; i++) {
		seq = i;
		memset(payload, 0, sizeof(struct msg_show));
		memcpy(payload, &seq, sizeof(seq));	/* msg_show.id */
		r = chan_send(&cc, MSG_SHOW, -1, payload, sizeof(payload));
		CHECK(r == 0 || r == 1);
		if (r == 1)
			queued++;
		n++;
	}
	CHECK(queued > 0);		/* the socket filled: EAGAIN */
	CHECK(cc.nq == queued);
	CHECK(chan_queued(&cc, MSG_SHOW) == queued * sizeof(payload));
	CHECK(!chan_taking(&cc, now_mono_ms() + 2000));
	/* read, flush, read ... until everything came, in order */
	for (i = 0; i < 10000 && got < n; i++) {
		while ((r = chan_recv(&mc, &m)) == CHAN_MSG) {
			memcpy(&seq, m.data, sizeof(seq));
			if (seq != got || m.hdr.len != sizeof(payload))
				bad++;
			got++;
		}
		CHECK(r == CHAN_EMPTY);
		chan_flush(&cc);
	}
	CHECK(got == n);
	CHECK(bad == 0);
	CHECK(cc.nq == 0 && cc.qbytes == 0);
	CHECK(nsent == queued && nlost == 0);
	unpair();
}

/* Past qmax a message is refused, and its descriptor closed. */
static void
test_bound(void)
{
	static char	 payload[1024];
	int		 r = 0, fd, before;
	unsigned	 i;

	section = "bound";
	pair(1, 3 * sizeof(payload));
	memset(payload, 0, sizeof(payload));
	for (i = 0; i < 400 && (r = chan_send(&mc, MSG_CLIENT, some_fd(),
	    payload, sizeof(payload))) != -1; i++)
		;
	CHECK(r == -1 && errno == ENOBUFS);
	CHECK(mc.nq == 3);
	/* the channel's end drops what waits, each counted, fds closed */
	before = count_open_fds();
	fd = some_fd();
	close(fd);
	chan_close(&mc, "gone");
	CHECK(nlost == 3);
	CHECK(count_open_fds() == before - 3 - 1);	/* and the socket */
	CHECK(chan_send(&mc, MSG_RETIRE, -1, NULL, 0) == -1 &&
	    errno == EPIPE);
	chan_close(&cc, "gone");
}

/* The peer's end is the end of file; a kept channel queues meanwhile. */
static void
test_eof(void)
{
	static struct msg	 m;
	int			 sv[2];

	section = "eof";
	pair(5, 1 << 20);
	chan_close(&cc, "gone");
	CHECK(chan_recv(&mc, &m) == CHAN_EOF);
	chan_detach(&mc);
	mc.keep = 1;
	CHECK(chan_send(&mc, MSG_SHUTDOWN, -1, NULL, 0) == 1);
	/* a new process: the queue goes out with its generation */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		exit(2);
	chan_init(&cc, 1, sv[1], MSG_TO_CHILD, 6, 1 << 20, 0, "master");
	chan_attach(&mc, sv[0], 6);
	CHECK(mc.nq == 0);
	CHECK(chan_recv(&cc, &m) == CHAN_MSG && m.hdr.type == MSG_SHUTDOWN &&
	    m.hdr.gen == 6);
	unpair();
}

int
main(void)
{
	log_open("-", LOG_LVL_ERROR);
	test_roundtrip();
	test_refused();
	test_child_side();
	test_optional_fd();
	test_queue();
	test_bound();
	test_eof();
	printf("unit_chan: %d checks, %d failed\n", nchecks, nfailed);
	return nfailed ? 1 : 0;
}
