/*
 * The master<->child message vocabulary.  Every message is one datagram on
 * a SOCK_SEQPACKET socketpair: a fixed header, at most MSG_MAXPAYLOAD bytes
 * of payload, and at most one descriptor passed with SCM_RIGHTS and flagged
 * in the header.  The sender closes its copy of a passed descriptor once
 * the message is out; the receiver closes any descriptor it did not expect.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

static const char *const msg_names[MSG_TYPE_MAX] = {
	[MSG_NONE] = "none",
	[MSG_READY] = "ready",
	[MSG_ASSIGN] = "assign",
	[MSG_CLIENT] = "client",
	[MSG_IDLE] = "idle",
	[MSG_RETIRE] = "retire",
	[MSG_SHUTDOWN] = "shutdown",
	[MSG_STATUS_REQ] = "status-request",
	[MSG_STATUS] = "status",
	[MSG_REPORT] = "report",
	[MSG_LOGREOPEN] = "log-reopen",
	[MSG_LOCK] = "lock",
	[MSG_STATS] = "stats",
	[MSG_SHOW_REQ] = "show-request",
	[MSG_SHOW] = "show",
	[MSG_CLOSE] = "close",
};

/* Commit duration buckets: 1 ms to 10 s, then the open one. */
const uint64_t stats_bucket_us[STATS_BUCKETS - 1] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 10000000
};

const char *
msg_name(uint32_t type)
{
	if (type >= MSG_TYPE_MAX || msg_names[type] == NULL)
		return "unknown";
	return msg_names[type];
}

/*
 * Send one message.  Returns 0, or -1 with errno (EAGAIN when the peer's
 * queue is full: the caller keeps the message and retries).
 */
int
msg_send(int sock, uint32_t type, int fd, const void *data, size_t len)
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

/* Close every descriptor carried by a control message we refuse. */
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
 * Receive one message into m (its payload length is m->hdr.len).  Returns
 * 1, 0 when the peer has gone, or -1 with errno (EAGAIN: nothing queued;
 * EBADMSG: malformed, already logged and any descriptor closed).  A
 * message whose descriptor the kernel could not give us (this process has
 * none free: the kernel closes it) is returned whole, with m->fd -1 and
 * m->fd_lost set, so that the receiver can account for it.
 */
ssize_t
msg_recv(int sock, struct msg *m)
{
	struct iovec	 iov[2];
	struct msghdr	 mh;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr	*c;
	ssize_t		 n;

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
	if (n <= 0)
		return n;
	if ((mh.msg_flags & MSG_TRUNC) ||
	    (size_t)n < sizeof(m->hdr) || m->hdr.len != n - sizeof(m->hdr) ||
	    m->hdr.type >= MSG_TYPE_MAX) {
		close_passed(&mh);
		log_warnx("malformed message on the control channel");
		errno = EBADMSG;
		return -1;
	}
	c = CMSG_FIRSTHDR(&mh);
	if ((mh.msg_flags & MSG_CTRUNC) && c == NULL &&
	    (m->hdr.flags & MSG_FLAG_FD)) {
		m->fd_lost = 1;		/* EMFILE: the kernel dropped it */
		return 1;
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		close_passed(&mh);
		log_warnx("%s message with a truncated descriptor list",
		    msg_name(m->hdr.type));
		errno = EBADMSG;
		return -1;
	}
	if (m->hdr.flags & MSG_FLAG_FD) {
		if (c == NULL || c->cmsg_level != SOL_SOCKET ||
		    c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len != CMSG_LEN(sizeof(int))) {
			close_passed(&mh);
			log_warnx("%s message without its descriptor",
			    msg_name(m->hdr.type));
			errno = EBADMSG;
			return -1;
		}
		memcpy(&m->fd, CMSG_DATA(c), sizeof(int));
	} else if (c != NULL) {
		close_passed(&mh);
		log_warnx("unexpected descriptor with %s message",
		    msg_name(m->hdr.type));
	}
	return 1;
}
