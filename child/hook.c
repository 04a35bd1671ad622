/*
 * The experiment's event hook (PROTOCOL.md §9).  With -H, each experiment
 * process starts one hook process when it is given its experiment, already
 * running as --user.  The hook's stdin carries DBCREATED, DBOPENED,
 * DBCLOSED and EXIT lines, its stdout must first say OML HOOK READY, and
 * its stderr reaches the log line by line as "hook: ...".
 *
 * Every pipe is non-blocking and served by the experiment's event loop, so
 * that a hook that is silent, wrong, dead, stuck or noisy costs the
 * experiment nothing but its hook: the first misbehaviour is logged once,
 * the hook is dropped, and ingest goes on.  Without -H every call here
 * returns at once.
 *
 * A hook never outlives its experiment process: after EXIT it has
 * --hook-timeout seconds, then its process group gets SIGTERM and, a
 * second later, SIGKILL; and it is killed if that process ends without
 * telling it EXIT.  Since the master starts an experiment's next process
 * only once the last one is gone, an experiment has one hook at a time.
 */
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/child.h"

#define BANNER		"OML HOOK READY"
#define BANNER_LEN	(sizeof(BANNER) - 1)
#define BANNER_MS	5000		/* time allowed for the banner */
#define QUEUE_MAX	(16 * 1024)	/* commands waiting beyond its pipe */
#define KILL_MS		1000		/* from SIGTERM to SIGKILL */
#define LINE_MAX_LOG	1024		/* longer lines are cut */
#define FLOOD_LINES	100		/* lines logged a second, at most */
#define FLOOD_BYTES	(16 * 1024)	/* bytes logged a second, at most */
#define READ_CHUNKS	4		/* reads of one pipe per wakeup */

enum hook_state {
	HK_OFF,		/* none configured, or none started yet */
	HK_WAITING,	/* started, no banner yet: commands are queued */
	HK_READY,	/* commands are written */
	HK_DROPPED,	/* given up on; commands are discarded */
};

/* A pipe the hook writes: its stdout or its stderr. */
struct hook_out {
	struct ev	 ev;		/* first */
	const char	*name;		/* "stdout", "stderr" */
	struct buf	 line;		/* a line not yet complete */
	int		 cut;		/* skipping the rest of a long line */
	int		 watched;
};

static struct {
	enum hook_state	 state;
	const char	*prog;
	pid_t		 pid;		/* -1 once reaped */
	struct ev	 in;		/* its stdin: our write end */
	int		 in_watched;
	struct hook_out	 out, err;
	struct ev	 proc;		/* a pidfd: readable when it exits */
	struct buf	 q;		/* commands it has not taken yet */
	uint64_t	 deadline;	/* for the banner */
	char		 banner[BANNER_LEN + 2];
	size_t		 blen;
	int		 exiting;	/* EXIT queued */
	uint64_t	 window;	/* flood control: this second's start */
	unsigned	 wlines;
	size_t		 wbytes;
	int		 paused;	/* out of budget until the next one */
	int		 flood_logged;
	uint64_t	 dropped;	/* lines not logged */
} hk = {
	.pid = -1,
	.in = { .kind = CEV_HOOK, .fd = -1 },
	.out = { { .kind = CEV_HOOK, .fd = -1 }, "stdout", { NULL, 0, 0 }, 0, 0 },
	.err = { { .kind = CEV_HOOK, .fd = -1 }, "stderr", { NULL, 0, 0 }, 0, 0 },
	.proc = { .kind = CEV_HOOK, .fd = -1 },
};

static void	 hook_gone(int);
static void	 hook_drop(const char *, ...) PRINTFLIKE(1, 2);

static int
alive(void)
{
	return hk.state == HK_WAITING || hk.state == HK_READY;
}

static void
fd_close(struct ev *e, int *watched)
{
	if (e->fd == -1)
		return;
	if (watched == NULL || *watched)
		ev_del(e);
	if (watched != NULL)
		*watched = 0;
	close(e->fd);
	e->fd = -1;
}

static void
watch_out(struct hook_out *o, int on)
{
	if (o->ev.fd == -1 || o->watched == on)
		return;
	if (on)
		ev_set(&o->ev, EPOLLIN);
	else
		ev_del(&o->ev);
	o->watched = on;
}

/* Reap the hook if it has ended.  Returns 1 if it had. */
static int
try_reap(void)
{
	int	 status;
	pid_t	 r;

	if (hk.pid == -1)
		return 1;
	while ((r = waitpid(hk.pid, &status, WNOHANG)) == -1 && errno == EINTR)
		;
	if (r == 0)
		return 0;
	if (r == -1) {
		log_warn("hook %s: waitpid", hk.prog);
		status = 0;
	}
	hook_gone(status);
	return 1;
}

/* --- What the hook says ------------------------------------------------ */

/*
 * One line of its output, rationed.  The log escapes whatever bytes it
 * holds; only a NUL, which would end the string early, is seen to here.
 */
static void
out_line(struct hook_out *o, const char *p, size_t len, int cut)
{
	uint64_t	 now = now_mono_ms();
	size_t		 k;
	const char	*tail;

	if (now - hk.window >= 1000) {
		hk.window = now;
		hk.wlines = 0;
		hk.wbytes = 0;
	}
	if (hk.wlines >= FLOOD_LINES || hk.wbytes + len > FLOOD_BYTES) {
		hk.dropped++;
		hk.paused = 1;
		if (!hk.flood_logged) {
			hk.flood_logged = 1;
			log_warnx("hook %s: too much output; dropping what "
			    "exceeds %d lines or %d KiB a second", hk.prog,
			    FLOOD_LINES, FLOOD_BYTES / 1024);
		}
		return;
	}
	hk.wlines++;
	hk.wbytes += len;
	k = strnlen(p, len < LINE_MAX_LOG ? len : LINE_MAX_LOG);
	tail = k < len && p[k] == '\0' ? " [cut at a NUL byte]" :
	    cut ? " [cut]" : "";
	if (o == &hk.err)
		log_info("hook: %.*s%s", (int)k, p, tail);
	else
		log_debug("hook stdout: %.*s%s", (int)k, p, tail);
}

static void
banner_check(void)
{
	if (hk.blen >= BANNER_LEN &&
	    memcmp(hk.banner, BANNER, BANNER_LEN) == 0) {
		hk.state = HK_READY;
		log_debug("hook %s: ready", hk.prog);
		return;
	}
	hook_drop("wrong banner \"%.*s\" (wanted \"" BANNER "\")",
	    (int)strnlen(hk.banner, hk.blen), hk.banner);
}

/*
 * The banner: like the original server, accept a first line whose first
 * 14 bytes are OML HOOK READY (the rest of the line is ignored).
 */
static size_t
banner_feed(const char *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n && hk.state == HK_WAITING; i++) {
		if (p[i] == '\n') {
			banner_check();
			return i + 1;
		}
		hk.banner[hk.blen++] = p[i];
		if (hk.blen == BANNER_LEN + 1) {
			banner_check();
			hk.out.cut = 1;
			return i + 1;
		}
	}
	return i;
}

static void
out_feed(struct hook_out *o, const char *p, size_t n)
{
	const char	*nl;
	size_t		 k;

	if (o == &hk.out && hk.state == HK_WAITING) {
		k = banner_feed(p, n);
		if (o->ev.fd == -1)
			return;		/* a wrong banner: dropped */
		p += k;
		n -= k;
	}
	while (n > 0) {
		nl = memchr(p, '\n', n);
		k = nl != NULL ? (size_t)(nl - p) : n;
		if (!o->cut && o->line.len + k > LINE_MAX_LOG) {
			buf_add(&o->line, p, LINE_MAX_LOG - o->line.len);
			out_line(o, o->line.p, o->line.len, 1);
			o->line.len = 0;
			o->cut = 1;
		} else if (!o->cut)
			buf_add(&o->line, p, k);
		if (nl == NULL)
			break;
		if (!o->cut)
			out_line(o, o->line.p, o->line.len, 0);
		o->line.len = 0;
		o->cut = 0;
		p = nl + 1;
		n -= k + 1;
	}
}

/* The end of one of its outputs (or an error reading it). */
static void
out_close(struct hook_out *o)
{
	if (o->line.len > 0 && !o->cut)
		out_line(o, o->line.p, o->line.len, 0);
	buf_free(&o->line);
	o->cut = 0;
	fd_close(&o->ev, &o->watched);
}

/* Read what is there, a bounded amount at a time. */
static void
out_read(struct hook_out *o)
{
	char	 b[16384];
	ssize_t	 n;
	int	 i;

	for (i = 0; i < READ_CHUNKS && o->ev.fd != -1 && !hk.paused; i++) {
		n = read(o->ev.fd, b, sizeof(b));
		if (n > 0) {
			out_feed(o, b, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1)
			log_warn("hook %s: reading its %s", hk.prog, o->name);
		out_close(o);
		/* No banner can come now: has it ended? */
		if (o == &hk.out && hk.state == HK_WAITING)
			try_reap();
		return;
	}
	if (hk.paused) {
		watch_out(&hk.out, 0);
		watch_out(&hk.err, 0);
	}
}

/* --- What the hook is told --------------------------------------------- */

static void
in_flush(void)
{
	ssize_t	 n;

	while (hk.state == HK_READY && hk.q.len > 0) {
		n = write(hk.in.fd, hk.q.p, hk.q.len);
		if (n > 0) {
			buf_drop(&hk.q, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			if (!hk.in_watched) {
				ev_set(&hk.in, EPOLLOUT);
				hk.in_watched = 1;
			}
			return;
		}
		/* Its stdin is closed: most likely it has ended. */
		if (!try_reap())
			hook_drop("its input is closed (%s)", strerror(errno));
		return;
	}
	if (hk.in_watched && hk.in.fd != -1) {
		ev_del(&hk.in);
		hk.in_watched = 0;
	}
	/* After EXIT, end of file on its stdin. */
	if (hk.state == HK_READY && hk.exiting && hk.q.len == 0)
		fd_close(&hk.in, &hk.in_watched);
}

static void
command(const char *event, const char *uri)
{
	size_t	 len = strlen(event) + (uri != NULL ? strlen(uri) + 1 : 0) + 1;

	if (hk.q.len + len > QUEUE_MAX) {
		hook_drop("not reading its input (%zu bytes waiting)",
		    hk.q.len);
		return;
	}
	buf_adds(&hk.q, event);
	if (uri != NULL) {
		buf_addc(&hk.q, ' ');
		buf_adds(&hk.q, uri);
	}
	buf_addc(&hk.q, '\n');
	in_flush();
}

/* --- Its life ---------------------------------------------------------- */

/*
 * Give up on the hook, once: log why, close its stdin, take what it still
 * had to say, and end it (with its process group) if it still runs.
 */
static void
hook_drop(const char *fmt, ...)
{
	char	 why[256];
	va_list	 ap;

	if (!alive())
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("hook %s: %s; going on without it", hk.prog, why);
	hk.state = HK_DROPPED;
	buf_free(&hk.q);
	fd_close(&hk.in, &hk.in_watched);
	if (hk.pid != -1) {
		hk.paused = 0;
		out_read(&hk.err);
		out_close(&hk.out);
		out_close(&hk.err);
		kill(-hk.pid, SIGTERM);
	}
}

/* It has ended (and is reaped). */
static void
hook_gone(int status)
{
	char	 how[128];
	int	 was = hk.state;

	exit_describe(status, how, sizeof(how));
	hk.pid = -1;
	fd_close(&hk.proc, NULL);
	/* Its last words (and maybe its banner) are in its pipes. */
	hk.paused = 0;
	out_read(&hk.err);
	if (hk.state == HK_WAITING)
		out_read(&hk.out);
	out_close(&hk.out);
	out_close(&hk.err);
	if (hk.state == HK_WAITING)
		hook_drop("%s before its banner", how);
	else if (hk.state == HK_READY && !hk.exiting)
		hook_drop("%s", how);
	else if (was == HK_READY && hk.exiting &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		log_warnx("hook %s: %s after EXIT", hk.prog, how);
	else
		log_debug("hook %s: process %s", hk.prog, how);
	if (hk.dropped > 0)
		log_debug("hook %s: %llu lines of output not logged", hk.prog,
		    (unsigned long long)hk.dropped);
	fd_close(&hk.in, &hk.in_watched);
	buf_free(&hk.q);
	hk.state = HK_DROPPED;
}

/*
 * In the new process: plumb, reset what we changed, and run the hook, in
 * a session of its own (a Ctrl-C at the server's terminal is not for it).
 * The signals an operator sends the server (to the whole group, as
 * systemctl kill does) stay ignored: SIGHUP, SIGINT, SIGQUIT, SIGUSR1 and
 * SIGUSR2.  Every other has its default; SIGTERM ends the hook.
 */
static __dead void
hook_exec(int in, int out, int err, pid_t parent)
{
	static const int	 keep[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1,
	    SIGUSR2 };
	char			*argv[2];
	sigset_t		 none;
	int			 fds[3], i;
	size_t			 k;

	setsid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);	/* its experiment process is gone already */
	for (i = 1; i < NSIG; i++)
		signal(i, SIG_DFL);
	for (k = 0; k < nitems(keep); k++)
		signal(keep[k], SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Above 2 first, so that no dup2 overwrites another end. */
	fds[0] = fcntl(in, F_DUPFD_CLOEXEC, 3);
	fds[1] = fcntl(out, F_DUPFD_CLOEXEC, 3);
	fds[2] = fcntl(err, F_DUPFD_CLOEXEC, 3);
	for (i = 0; i < 3; i++)
		if (fds[i] == -1 || dup2(fds[i], i) == -1)
			_exit(127);
	close_except(log_fd() > 2 ? log_fd() : -1, -1);
	if (log_fd() > 2)
		set_cloexec(log_fd());
	argv[0] = (char *)hk.prog;
	argv[1] = NULL;
	execvp(hk.prog, argv);
	log_warn("hook %s: cannot run it", hk.prog);
	_exit(127);
}

static int
spawn(void)
{
	int	 p[6] = { -1, -1, -1, -1, -1, -1 }, i;
	pid_t	 pid = -1, parent = getpid();

	if (pipe2(p, O_CLOEXEC) == -1 || pipe2(p + 2, O_CLOEXEC) == -1 ||
	    pipe2(p + 4, O_CLOEXEC) == -1 || (pid = fork()) == -1) {
		log_warn("hook %s: cannot start it", hk.prog);
		for (i = 0; i < 6; i++)
			if (p[i] != -1)
				close(p[i]);
		return -1;
	}
	if (pid == 0)
		hook_exec(p[0], p[3], p[5], parent);
	close(p[0]);
	close(p[3]);
	close(p[5]);
	hk.pid = pid;
	hk.in.fd = p[1];
	hk.out.ev.fd = p[2];
	hk.err.ev.fd = p[4];
	set_nonblock(hk.in.fd);
	set_nonblock(hk.out.ev.fd);
	set_nonblock(hk.err.ev.fd);
	return 0;
}

void
hook_start(void)
{
	const struct child_conf	*conf = exp_conf();

	if (conf->hook == NULL || hk.state != HK_OFF)
		return;
	hk.prog = conf->hook;
	signal(SIGPIPE, SIG_IGN);	/* a dead hook is an EPIPE */
	if (spawn() == -1) {
		hk.state = HK_DROPPED;
		return;
	}
	hk.state = HK_WAITING;
	hk.deadline = now_mono_ms() + BANNER_MS;
#ifdef SYS_pidfd_open
	hk.proc.fd = (int)syscall(SYS_pidfd_open, hk.pid, 0);
#endif
	if (hk.proc.fd < 0)
		hk.proc.fd = -1;	/* reaped by hook_tick() instead */
	else
		ev_set(&hk.proc, EPOLLIN);
	watch_out(&hk.out, 1);
	watch_out(&hk.err, 1);
	log_debug("hook %s: process %d started", hk.prog, (int)hk.pid);
}

void
hook_event(const char *event, const char *uri)
{
	if (!alive()) {
		if (hk.state == HK_DROPPED)
			log_debug("hook %s: %s %s not told (dropped)", hk.prog,
			    event, uri);
		return;
	}
	log_debug("hook %s: %s %s", hk.prog, event, uri);
	command(event, uri);
}

/* Deadlines: the banner's, the flood window's; reaping without a pidfd. */
uint64_t
hook_tick(uint64_t now)
{
	uint64_t	 next = 0;

	if (hk.state == HK_WAITING) {
		if (now >= hk.deadline)
			hook_drop("no banner within %d s", BANNER_MS / 1000);
		else
			next = hk.deadline;
	}
	if (hk.paused) {
		if (now - hk.window >= 1000) {
			hk.paused = 0;
			watch_out(&hk.out, 1);
			watch_out(&hk.err, 1);
		} else if (next == 0 || hk.window + 1000 < next)
			next = hk.window + 1000;
	}
	if (hk.pid != -1 && hk.proc.fd == -1)
		try_reap();
	return next;
}

/* The hook's state, for the figures the master shows. */
enum stats_hook
hook_status(void)
{
	switch (hk.state) {
	case HK_WAITING:	return HOOKST_STARTING;
	case HK_READY:		return HOOKST_READY;
	case HK_DROPPED:	return HOOKST_DROPPED;
	default:		return HOOKST_NONE;
	}
}

void
hook_readable(struct ev *e)
{
	if (e->fd == -1)
		return;		/* closed earlier in this batch */
	if (e == &hk.out.ev || e == &hk.err.ev)
		out_read((struct hook_out *)e);
	else if (e == &hk.proc)
		try_reap();
	/* Writable, or just ready after its banner. */
	if (hk.state == HK_READY && hk.in.fd != -1)
		in_flush();
}

/* Serve the hook's pipes with poll(2) until `done' or the deadline. */
static void
exit_wait(uint64_t end)
{
	struct pollfd	 pfd[4];
	struct ev	*ev[4];
	uint64_t	 now, t;
	int		 i, n;

	while (hk.pid != -1 && (now = now_mono_ms()) < end) {
		if ((t = hook_tick(now)) == 0 || t > end)
			t = end;
		n = 0;
		if (hk.in.fd != -1 && hk.q.len > 0 && hk.state == HK_READY) {
			pfd[n] = (struct pollfd){ hk.in.fd, POLLOUT, 0 };
			ev[n++] = &hk.in;
		}
		if (hk.out.ev.fd != -1 && !hk.paused) {
			pfd[n] = (struct pollfd){ hk.out.ev.fd, POLLIN, 0 };
			ev[n++] = &hk.out.ev;
		}
		if (hk.err.ev.fd != -1 && !hk.paused) {
			pfd[n] = (struct pollfd){ hk.err.ev.fd, POLLIN, 0 };
			ev[n++] = &hk.err.ev;
		}
		if (hk.proc.fd != -1) {
			pfd[n] = (struct pollfd){ hk.proc.fd, POLLIN, 0 };
			ev[n++] = &hk.proc;
		}
		if (hk.proc.fd == -1 && t > now + 100)
			t = now + 100;	/* no pidfd: look now and then */
		if (poll(pfd, (nfds_t)n, (int)(t - now)) == -1 &&
		    errno != EINTR)
			fatal("poll");
		for (i = 0; i < n; i++)
			if (pfd[i].revents != 0)
				hook_readable(ev[i]);
		if (hk.state == HK_DROPPED)
			break;
	}
}

/* End the hook's process group: SIGTERM, then SIGKILL, and reap it. */
static void
hook_kill(void)
{
	struct pollfd	 pfd;
	uint64_t	 now, end = now_mono_ms() + KILL_MS;
	int		 status;

	kill(-hk.pid, SIGTERM);
	while (!try_reap() && (now = now_mono_ms()) < end) {
		pfd = (struct pollfd){ hk.proc.fd, POLLIN, 0 };
		if (poll(&pfd, hk.proc.fd != -1, hk.proc.fd != -1 ?
		    (int)(end - now) : 10) == -1 && errno != EINTR)
			fatal("poll");
	}
	if (hk.pid == -1)
		return;
	kill(-hk.pid, SIGKILL);
	while (waitpid(hk.pid, &status, 0) == -1)
		if (errno != EINTR) {
			status = 0;
			break;
		}
	hook_gone(status);
}

/*
 * The experiment process is ending: tell the hook EXIT, close its stdin,
 * and give it --hook-timeout seconds to finish (its stderr still reaches
 * the log).  A hook given up on, or still at work then, is ended.
 */
void
hook_exit(void)
{
	unsigned	 secs = exp_conf()->hook_timeout;

	if (hk.state == HK_OFF)
		return;
	if (alive()) {
		hk.exiting = 1;
		command("EXIT", NULL);
	}
	exit_wait(now_mono_ms() + secs * 1000ULL);
	if (hk.pid == -1)
		return;
	if (hk.state != HK_DROPPED)
		log_warnx("hook %s: still running %u s after EXIT; ending it",
		    hk.prog, secs);
	hook_kill();
}
