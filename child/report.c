/*
 * Self-reporting of client events (PROTOCOL.md §10.9), the experiment
 * process's half.  It sends each Ready and Disconnect it sees as a
 * MSG_REPORT on its channel to the master, which checks it and forwards it
 * to the reporter process.  It never waits for the master: what the socket
 * does not take at once waits in the channel's queue, in order with the
 * process's other messages, up to QUEUE_MAX bytes of client events;
 * beyond that, events are dropped and counted.  (The socket alone holds
 * only about 150 reports: a hundred clients arriving together would
 * overrun it.)  With reporting off, nothing is sent.
 */
#include <errno.h>
#include <string.h>

#include "child/child.h"

#define QUEUE_MAX	(1024 * 1024)

static uint64_t		 dropped;	/* in the current run of drops */
static uint64_t		 dropped_total;

static void
drop(const char *why)
{
	if (dropped == 0)
		log_warnx("self-report: %s; dropping client events", why);
	dropped++;
	dropped_total++;
}

/* Send (or queue) one report; reporting is on. */
static void
report(enum report_event ev, const char *peer, uint16_t port,
    const char *node, const char *domain, const char *app,
    const char *message)
{
	char	 m[MSG_REPORT_MAX];
	size_t	 n;

	n = msg_report_make(m, ev, port, peer, node, domain, app, message);
	if (chan_queued(exp_chan(), MSG_REPORT) + n > QUEUE_MAX) {
		drop("the master is not keeping up");
		return;
	}
	if (chan_send(exp_chan(), MSG_REPORT, -1, m, n) == -1) {
		drop(strerror(errno));
		return;
	}
	if (dropped > 0) {
		log_warnx("self-report: %llu client events were dropped (%llu "
		    "in all)", (unsigned long long)dropped,
		    (unsigned long long)dropped_total);
		dropped = 0;
	}
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
