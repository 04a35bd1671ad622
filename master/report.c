/*
 * Self-reporting, the master's half: it starts the reporter process
 * (child/reporter.c), which alone talks to the collector, supervises it
 * like its other processes (restarted when it dies, after a delay that
 * grows while it keeps dying), and forwards it every client event as
 * MSG_EVENT: its own (Connect, the connections it closes itself) and the
 * MSG_REPORTs of experiment processes, which it checks first.  Events
 * wait in the channel's queue while the reporter is busy or being
 * restarted, up to EVENTQ_MAX bytes; past that they are dropped and
 * counted.  A file destination is opened here, with the master's rights,
 * so that a bad one is an error at start, and passed to each reporter.
 * Every call is a no-op when reporting is off: then no reporter exists.
 */
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"
#include "child/reporter.h"

#define EVENTQ_MAX	(4 * 1024 * 1024)
#define RESTART_MIN_MS	100
#define RESTART_MAX_MS	10000
#define STABLE_MS	10000	/* a reporter this old resets the delay */
#define STOP_MS		5000	/* at exit, for its last write */

static struct {
	int			 on;
	struct report_conf	 rc;
	struct chan		 ch;	/* kept across restarts, with its queue */
	pid_t			 pid;	/* 0: none running */
	int			 sink;	/* a file destination, or -1 */
	uint64_t		 born, restart_at;
	unsigned		 delay;
	uint64_t		 dropped, run;
} rp = { .sink = -1 };

/* The Disconnect messages of §10.9. */
static const char *const disconnect_message[] = {
	"SOCKET_CONN_CLOSED", "SOCKET_IDLE", "C_PROTOCOL_ERROR",
	"SOCKET_UNKNOWN", "SOCKET_CONN_REFUSED", "SOCKET_DROPPED",
};

static void
spawn(void)
{
	static uint32_t	 started;	/* a reporter wrote the header */
	uint32_t	 gen;
	pid_t		 pid;
	int		 sock, fd;

	rp.restart_at = 0;
	if ((pid = proc_fork("the reporter", &sock, &gen)) == -1) {
		rp.restart_at = now_mono_ms() + RESTART_MAX_MS;
		return;
	}
	if (pid == 0)
		reporter_main(sock, gen, &rp.rc, &opts.cc.ids);
	rp.pid = pid;
	rp.born = now_mono_ms();
	chan_attach(&rp.ch, sock, gen);
	snprintf(rp.ch.who, sizeof(rp.ch.who), "the reporter (process %d)",
	    (int)pid);
	if (rp.sink != -1) {
		if ((fd = fcntl(rp.sink, F_DUPFD_CLOEXEC, 0)) == -1)
			fatal("self-report: dup");
		/* first, before any event the queue held */
		if (chan_send(&rp.ch, MSG_SINK, fd, &started,
		    sizeof(started)) == -1)
			log_warn("self-report: sink message");
		started = 1;
	}
	log_debug("forked the reporter, process %d", (int)pid);
}

/*
 * Standard output, for file:-.  A pipe or terminal is opened again, as a
 * description of our own made non-blocking: O_NONBLOCK on descriptor 1
 * itself would reach whoever shares it (a shell's terminal).  A regular
 * file never blocks and is shared as it is, so that lines written to it
 * through stderr keep their place; so is what cannot be opened again (a
 * socket).
 */
static int
open_stdout(void)
{
	struct stat	 st;
	int		 fd;

	if (fstat(STDOUT_FILENO, &st) == 0 && !S_ISREG(st.st_mode) &&
	    (fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK |
	    O_CLOEXEC)) != -1)
		return fd;
	return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
}

/* The destination is usable: the file opens, the host resolves. */
static int
dest_open(const char *path, const char *host, const char *port)
{
	struct addrinfo	 hints, *ai;
	int		 e;

	if (path != NULL) {
		if (strcmp(path, "-") == 0)
			rp.sink = open_stdout();
		else
			rp.sink = open(path, O_WRONLY | O_CREAT | O_APPEND |
			    O_NONBLOCK | O_CLOEXEC, 0644);
		if (rp.sink == -1) {
			log_error("self-report: %s: %s", path,
			    strerror(errno));
			return -1;
		}
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((e = getaddrinfo(host, port, &hints, &ai)) != 0) {
		log_error("self-report: cannot resolve %s: %s", host,
		    gai_strerror(e));
		return -1;
	}
	freeaddrinfo(ai);
	return 0;
}

/* Start reporting if a destination was given.  -1: logged, exit. */
int
report_start(void)
{
	const char	*why;
	char		*host, *port, *path;
	int		 rv;

	if (opts.oml_collect == NULL)
		return 0;
	if (report_dest_parse(opts.oml_collect, &host, &port, &path, &why)
	    == -1)
		fatalx("self-report: %s: %s", opts.oml_collect, why);
	rv = dest_open(path, host, port);
	free(host);
	free(port);
	free(path);
	if (rv == -1)
		return -1;
	rp.rc.collect = opts.oml_collect;
	rp.rc.id = opts.oml_id;
	rp.rc.domain = opts.oml_domain;
	rp.rc.binary = opts.oml_binary;
	rp.rc.bufsize = opts.oml_bufsize;
	rp.rc.start = (long)now_real();
	chan_init(&rp.ch, EV_REPORT, -1, MSG_TO_MASTER, 0, EVENTQ_MAX, 1,
	    "the reporter");
	rp.ch.keep = 1;
	rp.delay = RESTART_MIN_MS;
	rp.on = 1;
	log_info("self-report: client events go to %s as %s in experiment "
	    "%s (%s)", opts.oml_collect, opts.oml_id, opts.oml_domain,
	    opts.oml_binary ? "binary" : "text");
	spawn();
	return 0;
}

static void
reporter_kill(void)
{
	log_warnx("killing the reporter, process %d: it broke the "
	    "channel's contract", (int)rp.pid);
	kill(rp.pid, SIGKILL);
	chan_detach(&rp.ch);
}

/* The reporter's channel is readable or writable. */
void
report_io(uint32_t events)
{
	static struct msg	 m;
	int			 r;

	if (events & EPOLLOUT)
		chan_flush(&rp.ch);
	if (rp.ch.ev.fd == -1 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	while ((r = chan_recv(&rp.ch, &m)) == CHAN_MSG)
		if (m.hdr.type != MSG_READY) {
			log_warnx("unexpected %s message from the reporter",
			    msg_name(m.hdr.type));
			reporter_kill();
			return;
		}
	if (r == CHAN_BAD)
		reporter_kill();
	else if (r == CHAN_EOF)		/* gone: reaping will tell why */
		chan_detach(&rp.ch);
}

/* Reaped pid: if it was the reporter, a new one starts after a delay. */
int
report_reaped(pid_t pid, int status)
{
	uint64_t	 now = now_mono_ms();
	char		 how[128];

	if (!rp.on || pid != rp.pid)
		return 0;
	rp.pid = 0;
	chan_detach(&rp.ch);	/* the queue waits for the next one */
	exit_describe(status, how, sizeof(how));
	if (stopping)
		log_debug("the reporter, process %d, %s", (int)pid, how);
	else {
		if (now - rp.born >= STABLE_MS)
			rp.delay = RESTART_MIN_MS;
		log_warnx("the reporter, process %d, %s; restarting it in "
		    "%.1f s", (int)pid, how, rp.delay / 1000.0);
		rp.restart_at = now + rp.delay;
		rp.delay = rp.delay * 2 > RESTART_MAX_MS ? RESTART_MAX_MS :
		    rp.delay * 2;
	}
	return 1;
}

uint64_t
report_tick(uint64_t now)
{
	if (!rp.on)
		return 0;
	if (stopping)		/* no new reporter: report_stop() is near */
		rp.restart_at = 0;
	if (rp.restart_at != 0 && now >= rp.restart_at)
		spawn();
	if (rp.restart_at != 0)
		return rp.restart_at;
	return chan_tick(&rp.ch, now);
}

void
report_logreopen(void)
{
	int	 fd;

	if (rp.on && rp.pid != 0 && (fd = dup(log_fd())) != -1)
		chan_send(&rp.ch, MSG_LOGREOPEN, fd, NULL, 0);
}

/* Forward one event; past EVENTQ_MAX waiting, it is dropped. */
static void
forward(const char *data, size_t len)
{
	if (chan_queued(&rp.ch, MSG_EVENT) + len > EVENTQ_MAX / 2 ||
	    chan_send(&rp.ch, MSG_EVENT, -1, data, len) == -1) {
		if (rp.run++ == 0)
			log_warnx("self-report: the reporter is not taking "
			    "events; dropping client events");
		rp.dropped++;
		return;
	}
	if (rp.run > 0)
		log_warnx("self-report: %llu client events dropped before the "
		    "reporter (%llu in all)", (unsigned long long)rp.run,
		    (unsigned long long)rp.dropped);
	rp.run = 0;
}

/* One of the master's own events. */
void
report_event(enum report_event ev, const char *address, uint16_t port,
    const char *domain, const char *message)
{
	char	 d[MSG_REPORT_MAX];
	size_t	 n;

	if (!rp.on)
		return;
	n = msg_report_make(d, ev, port, address, NULL, domain, NULL,
	    message);
	forward(d, n);
}

static int
known_message(const char *m)
{
	size_t	 i;

	for (i = 0; i < nitems(disconnect_message); i++)
		if (strcmp(m, disconnect_message[i]) == 0)
			return 1;
	return 0;
}

/*
 * A MSG_REPORT from the experiment process pid serving exp (empty for a
 * spare), checked strictly: a Ready or a Disconnect, each string within
 * its limit and without NUL, nothing after them, the domain empty or the
 * process's own, and the message one of §10.9 for a Disconnect only.
 */
void
report_child(const char *exp, pid_t pid, const char *data, size_t len)
{
	static const size_t	 max[RS_MAX] = {
		[RS_ADDRESS] = REPORT_MAX_ADDRESS, [RS_NODE] = REPORT_MAX_NAME,
		[RS_DOMAIN] = REPORT_MAX_DOMAIN, [RS_APP] = REPORT_MAX_NAME,
		[RS_MESSAGE] = REPORT_MAX_MESSAGE,
	};
	struct msg_report	 m;
	char			 s[RS_MAX][REPORT_MAX_NAME + 1];
	const char		*why = NULL;
	size_t			 off = sizeof(m), i;

	if (len < sizeof(m)) {
		why = "too short";
		goto bad;
	}
	memcpy(&m, data, sizeof(m));
	for (i = 0; i < RS_MAX; i++) {
		if (m.len[i] > max[i] || m.len[i] > len - off) {
			why = "bad string length";
			goto bad;
		}
		if (memchr(data + off, '\0', m.len[i]) != NULL) {
			why = "NUL in a string";
			goto bad;
		}
		memcpy(s[i], data + off, m.len[i]);
		s[i][m.len[i]] = '\0';
		off += m.len[i];
	}
	if (off != len)
		why = "trailing bytes";
	else if (exp[0] == '\0')
		why = "not serving an experiment";
	else if (m.event != REPORT_READY && m.event != REPORT_DISCONNECT)
		why = "bad event";
	else if (s[RS_ADDRESS][0] == '\0')
		why = "no address";
	else if (s[RS_DOMAIN][0] != '\0' && strcmp(s[RS_DOMAIN], exp) != 0)
		why = "another experiment";
	else if (m.event == REPORT_READY ? s[RS_MESSAGE][0] != '\0' :
	    !known_message(s[RS_MESSAGE]))
		why = "bad message";
	if (why != NULL)
		goto bad;
	if (rp.on)
		forward(data, len);
	return;
bad:
	log_warnx("bad report message (%zu bytes) from process %d: %s", len,
	    (int)pid, why);
}

/*
 * At exit, once every experiment process has ended (their last events
 * are forwarded): the reporter writes what it holds and exits; it has
 * STOP_MS to do so.
 */
void
report_stop(void)
{
	struct pollfd	 pfd;
	uint64_t	 end = now_mono_ms() + STOP_MS, now;
	int		 status;
	pid_t		 pid;

	if (!rp.on)
		return;
	rp.on = 0;
	if (rp.pid == 0 || rp.ch.ev.fd == -1)
		goto reap;
	chan_send(&rp.ch, MSG_SHUTDOWN, -1, NULL, 0);
	chan_drain(&rp.ch, STOP_MS);
	/* its end of the channel closes when it exits */
	pfd.fd = rp.ch.ev.fd;
	pfd.events = POLLIN;
	while ((now = now_mono_ms()) < end) {
		if (poll(&pfd, 1, (int)(end - now)) == 1) {
			static struct msg	 m;

			if (chan_recv(&rp.ch, &m) <= CHAN_EOF)
				break;
		}
	}
reap:
	if (rp.pid == 0)
		return;
	/* its socket closes a moment before it can be reaped */
	while ((pid = waitpid(rp.pid, &status, WNOHANG)) == 0 &&
	    now_mono_ms() < end + 1000)
		poll(NULL, 0, 10);
	if (pid == 0) {
		log_warnx("the reporter, process %d, did not finish: killing "
		    "it", (int)rp.pid);
		kill(rp.pid, SIGKILL);
		waitpid(rp.pid, &status, 0);
	}
	chan_close(&rp.ch, NULL);
}
