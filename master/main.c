/*
 * oml2-server's master: start-up in a fixed order (options, log, listening
 * sockets, user lookup, backend probe as the target user, signals, spares),
 * then one epoll loop that accepts, sniffs, routes and supervises, and a
 * shutdown that lets every child store what its clients sent.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define STOP_GRACE_MS	20000	/* on top of --hook-timeout: then SIGKILL */

struct options	 opts;
int		 epfd = -1;
int		 stopping;
unsigned	 unserved;

static struct ev	 sigev = { EV_SIGNAL, -1 };
static uint64_t		 kill_at;
static void		**graveyard;
static size_t		 ngrave, gravecap;

extern char **environ;

void
ev_add(struct ev *e, uint32_t events)
{
	struct epoll_event	 ee = { .events = events, .data.ptr = e };

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ee) == -1)
		fatal("epoll_ctl add");
}

void
ev_mod(struct ev *e, uint32_t events)
{
	struct epoll_event	 ee = { .events = events, .data.ptr = e };

	if (epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ee) == -1)
		fatal("epoll_ctl mod");
}

void
ev_del(struct ev *e)
{
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL) == -1 &&
	    errno != ENOENT && errno != EBADF)
		log_warn("epoll_ctl del");
}

/*
 * Objects may be freed while later events of the same epoll batch still
 * point at them: mark them dead and free them after the batch.  One pass
 * of the loop may bury any number (a thousand half-open connections
 * expiring together), so the list grows as needed.
 */
void
ev_free_later(struct ev *e)
{
	e->kind = EV_DEAD;
	if (ngrave == gravecap) {
		gravecap = gravecap ? gravecap * 2 : 256;
		graveyard = xreallocarray(graveyard, gravecap,
		    sizeof(*graveyard));
	}
	graveyard[ngrave++] = e;
}

static void
graveyard_empty(void)
{
	while (ngrave > 0)
		free(graveyard[--ngrave]);
}

static void
raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Resolve --user/--group; without root, run as the invoking user. */
static void
setup_user(void)
{
	if (geteuid() != 0) {
		if (opts.user != NULL)
			fatalx("--user %s: only root can change user",
			    opts.user);
		return;
	}
	if (priv_lookup(opts.user, opts.group, &opts.cc.ids) == -1)
		exit(1);
	if (opts.user == NULL)
		log_warnx("running as root: consider --user");
}

/* Check, as the target user, that the backend can be used. */
static void
probe_backend(void)
{
	pid_t	 pid;
	int	 status;

	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		close_except(-1, log_fd());
		priv_drop(&opts.cc.ids);
		_exit(child_probe(&opts.cc) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			fatal("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fatalx("cannot use the %s backend; exiting",
		    opts.cc.backend == BACKEND_SQLITE ? "sqlite" :
		    "postgresql");
}

/*
 * The master reads its signals through a signalfd; the others an operator
 * may send to the whole group are ignored, here and (inherited) in every
 * experiment process, which also ignores these five (children.c).
 */
static void
setup_signals(void)
{
	sigset_t	 set;

	signals_ignore_stray();
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	if ((sigev.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	ev_add(&sigev, EPOLLIN);
}

/*
 * Stop listening, after taking every connection the kernel has accepted
 * for us; then serve every connection still here (starting the
 * experiment processes they need), and only then tell every process to
 * finish (stop_tick).
 */
static void
begin_shutdown(int sig)
{
	if (stopping) {
		log_info("%s: already stopping", strsignal(sig));
		return;
	}
	stopping = 1;
	log_info("%s: stopping; experiments store what their clients sent",
	    strsignal(sig));
	listen_stop();
	pending_stop(now_mono_ms());
}

/* Once no connection is left to serve, every process finishes. */
static void
stop_tick(uint64_t now)
{
	static int	 told;

	if (!stopping || told || pending_count() > 0)
		return;
	told = 1;
	policy_shutdown();
	kill_at = now + STOP_GRACE_MS + opts.cc.hook_timeout * 1000ULL;
}

/* SIGHUP: reopen the log and hand the new descriptor to every child. */
static void
reopen_log(void)
{
	struct child	*c;
	int		 fd;

	if (log_reopen() == -1) {
		log_warn("reopening the log");
		return;
	}
	log_info("log reopened");
	for (c = children; c != NULL; c = c->next) {
		if (c->state == CH_STARTING || (fd = dup(log_fd())) == -1)
			continue;
		child_send(c, MSG_LOGREOPEN, fd, NULL, 0);
	}
}

static void
signal_read(void)
{
	struct signalfd_siginfo	 si;

	while (read(sigev.fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			children_reap();
			break;
		case SIGTERM:
		case SIGINT:
		case SIGQUIT:
			begin_shutdown((int)si.ssi_signo);
			break;
		case SIGUSR1:
			policy_status();
			break;
		case SIGHUP:
			reopen_log();
			break;
		}
	}
}

static int
next_timeout(uint64_t now)
{
	uint64_t	 d[5], t = now + 1000;
	size_t		 i;

	d[0] = pending_next_deadline();
	d[1] = policy_next_deadline();
	d[2] = listen_tick(now);
	d[3] = kill_at;
	d[4] = report_tick(now);
	for (i = 0; i < nitems(d); i++)
		if (d[i] != 0 && d[i] < t)
			t = d[i];
	return t > now ? (int)(t - now) : 0;
}

static void
dispatch(struct epoll_event *ee)
{
	struct ev	*e = ee->data.ptr;

	switch (e->kind) {
	case EV_LISTEN:
		listen_accept(e);
		break;
	case EV_PENDING:
		pending_read((struct pending *)e);
		break;
	case EV_CHILD:
		if (ee->events & EPOLLOUT)
			child_flush((struct child *)e);
		if (e->kind == EV_CHILD && e->fd != -1 &&
		    (ee->events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			child_readable((struct child *)e);
		break;
	case EV_SIGNAL:
		signal_read();
		break;
	case EV_REPORT:
		report_io(ee->events);
		break;
	case EV_DEAD:
		break;
	}
}

static __dead void
loop(void)
{
	struct epoll_event	 evs[64];
	uint64_t		 now;
	int			 i, n;

	for (;;) {
		now = now_mono_ms();
		pending_expire(now);
		policy_tick(now);
		stop_tick(now);
		if (stopping && children == NULL && pending_count() == 0)
			break;
		if (kill_at != 0 && now >= kill_at) {
			log_warnx("children still running %u s after being told "
			    "to finish: killing", STOP_GRACE_MS / 1000 +
			    opts.cc.hook_timeout);
			children_signal(SIGKILL);
			kill_at = 0;
		}
		n = epoll_wait(epfd, evs, nitems(evs), next_timeout(now));
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++)
			dispatch(&evs[i]);
		graveyard_empty();
	}
	report_stop();
	if (unserved > 0)
		log_warnx("stopped; %u connections could not be served (see "
		    "above)", unserved);
	else
		log_info("stopped; every connection was served");
	exit(0);
}

int
main(int argc, char **argv)
{
	title_init(argc, argv, environ);
	options_parse(argc, argv, &opts);
	title_set("master");		/* secrets leave ps(1) here */
	if (log_open(opts.logfile, opts.loglevel) == -1) {
		fprintf(stderr, "oml2-server: log file %s: %s\n", opts.logfile,
		    strerror(errno));
		return 1;
	}
	log_setproc("master");
	log_startup(1);
	raise_nofile();
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	if (listen_open(opts.listen) == -1)
		return 1;
	setup_user();
	probe_backend();
	setup_signals();
	if (report_start() == -1)
		return 1;
	log_startup(0);
	log_info("oml2-server %s ready: %s backend%s%s", OML2_VERSION,
	    opts.cc.backend == BACKEND_SQLITE ? "sqlite" : "postgresql",
	    opts.cc.backend == BACKEND_SQLITE ? " in " : "",
	    opts.cc.backend == BACKEND_SQLITE ? opts.cc.datadir : "");
	if (opts.cc.ids.set)
		log_info("experiment processes run as %s (uid %d, gid %d)",
		    opts.cc.ids.user, (int)opts.cc.ids.uid,
		    (int)opts.cc.ids.gid);
	policy_tick(now_mono_ms());
	loop();
}
