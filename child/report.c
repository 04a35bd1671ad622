/*
 * Self-reporting of client events (PROTOCOL.md §10.9), the child's half.
 * The master is the only process that talks to the collector: a child
 * sends each Ready and Disconnect it sees as a MSG_REPORT on its control
 * socket.  It never waits for the master.  What the socket does not take
 * at once waits in a queue bounded by QUEUE_MAX bytes, which the event
 * loop retries every few milliseconds; beyond the bound, reports are
 * dropped and counted.  (The socket alone holds only about 150 reports:
 * a hundred clients arriving together would overrun it.)  With reporting
 * off, nothing is sent and nothing is queued.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "child/child.h"

#define QUEUE_MAX	(1024 * 1024)
#define MSG_REPORT_MAX	(sizeof(struct msg_report) + REPORT_MAX_ADDRESS + \
			    2 * REPORT_MAX_NAME + REPORT_MAX_DOMAIN + \
			    REPORT_MAX_MESSAGE)
#define RETRY_MS	10
#define FINAL_MS	1000	/* at exit, for the master to take the rest */

static struct buf	 q;	/* [uint32 length][message] ... */
static size_t		 qoff;
static uint64_t		 dropped;	/* in the current run of drops */
static uint64_t		 dropped_total;

/* Append s, cut to max bytes, and record its length. */
static size_t
put(char *p, struct msg_report *r, enum report_str i, const char *s,
    size_t max)
{
	size_t	 n = strlen(s);

	if (n > max)
		n = max;
	memcpy(p, s, n);
	r->len[i] = (uint16_t)n;
	return n;
}

static void
drop(uint64_t n, const char *why)
{
	if (dropped == 0)
		log_warnx("self-report: %s; dropping client events", why);
	dropped += n;
	dropped_total += n;
}

/* Send what is queued, in order.  Returns 1 if some is left. */
static int
flush(void)
{
	uint32_t	 len;

	while (qoff < q.len) {
		memcpy(&len, q.p + qoff, sizeof(len));
		if (msg_send(exp_ctl(), MSG_REPORT, -1, q.p + qoff +
		    sizeof(len), len) == -1) {
			if (errno != EAGAIN) {
				drop(1, strerror(errno)); /* the master is gone */
				qoff += sizeof(len) + len;
				continue;
			}
			if (qoff >= QUEUE_MAX / 4 && qoff >= q.len / 2) {
				buf_drop(&q, qoff);	/* reclaim the front */
				qoff = 0;
			}
			return 1;
		}
		qoff += sizeof(len) + len;
	}
	buf_free(&q);	/* a burst's queue is not kept for the next */
	qoff = 0;
	if (dropped > 0) {
		log_warnx("self-report: %llu client events were dropped (%llu "
		    "in all)", (unsigned long long)dropped,
		    (unsigned long long)dropped_total);
		dropped = 0;
	}
	return 0;
}

/* Send (or queue) one report; reporting is on. */
static void
report(enum report_event ev, const char *peer, uint16_t port,
    const char *node, const char *domain, const char *app,
    const char *message)
{
	char			 m[MSG_REPORT_MAX];
	struct msg_report	 r;
	uint32_t		 n = sizeof(r);

	memset(&r, 0, sizeof(r));
	r.event = ev;
	r.port = port;
	n += put(m + n, &r, RS_ADDRESS, peer, REPORT_MAX_ADDRESS);
	n += put(m + n, &r, RS_NODE, node, REPORT_MAX_NAME);
	n += put(m + n, &r, RS_DOMAIN, domain, REPORT_MAX_DOMAIN);
	n += put(m + n, &r, RS_APP, app, REPORT_MAX_NAME);
	n += put(m + n, &r, RS_MESSAGE, message, REPORT_MAX_MESSAGE);
	memcpy(m, &r, sizeof(r));
	if (q.len == 0 && msg_send(exp_ctl(), MSG_REPORT, -1, m, n) == 0)
		return;
	if (q.len - qoff + sizeof(n) + n > QUEUE_MAX) {
		drop(1, "the master is not keeping up");
		return;
	}
	buf_add(&q, &n, sizeof(n));
	buf_add(&q, m, n);
}

void
exp_report(const struct conn *c, enum report_event ev, const char *message)
{
	const char	*peer, *domain, *node, *app;
	uint16_t	 port;

	if (!exp_conf()->report)
		return;
	peer = conn_peer(c, &port);
	domain = conn_ident(c, &node, &app);
	report(ev, peer, port, node, domain, app, message);
}

/* A client handed over but refused before it became a connection. */
void
exp_report_refused(const char *peer, uint16_t port)
{
	if (exp_conf()->report)
		report(REPORT_DISCONNECT, peer, port, "", exp_name(), "",
		    "SOCKET_DROPPED");
}

/*
 * From the event loop: send what is queued.  Returns 0 if nothing is left,
 * else when to try again.  With final set (the process is exiting), wait
 * up to FINAL_MS for the master to take the rest.
 */
uint64_t
exp_report_flush(uint64_t now, int final)
{
	struct pollfd	 pfd;
	uint64_t	 end = now + FINAL_MS, n;
	uint32_t	 len;

	if (q.len == 0 || !flush())
		return 0;
	if (!final)
		return now + RETRY_MS;
	pfd.fd = exp_ctl();
	pfd.events = POLLOUT;
	while ((now = now_mono_ms()) < end) {
		if (poll(&pfd, 1, (int)(end - now)) == -1 && errno != EINTR)
			break;
		if (!flush())
			return 0;
	}
	for (n = 0; qoff < q.len; n++) {
		memcpy(&len, q.p + qoff, sizeof(len));
		qoff += sizeof(len) + len;
	}
	q.len = qoff = 0;
	log_warnx("self-report: %llu client events not delivered at exit",
	    (unsigned long long)n);
	return 0;
}
