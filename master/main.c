/*
 * oml2-server's master: start-up in a fixed order (options, log, listening
 * sockets, user lookup, backend probe as the target user, signals, spares),
 * then one epoll loop that accepts, sniffs, routes and supervises, and a
 * shutdown that lets every child store what its clients sent.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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
int		 stopping;
unsigned	 unserved;

static struct ev	 sigev = { .kind = EV_SIGNAL, .fd = -1 };
static uint64_t		 kill_at;

extern char **environ;

static void
raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Each experiment process needs a descriptor per client and CHILD_FDS
 * more: lower --max-clients to what RLIMIT_NOFILE (already raised to its
 * hard limit) allows, and say so, rather than fail clients later.
 */
static void
fit_nofile(void)
{
	struct rlimit	 rl;
	rlim_t		 room;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return;
	if (rl.rlim_cur <= CHILD_FDS)
		fatalx("RLIMIT_NOFILE is %llu: an experiment process needs "
		    "more than %d file descriptors", (unsigned long long)
		    rl.rlim_cur, CHILD_FDS);
	room = rl.rlim_cur - CHILD_FDS;
	if (opts.cc.max_clients <= room)
		return;
	log_warnx("--max-clients lowered from %u to %llu: a process may "
	    "open only %llu files (RLIMIT_NOFILE)", opts.cc.max_clients,
	    (unsigned long long)room, (unsigned long long)rl.rlim_cur);
	opts.cc.max_clients = (unsigned)room;
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
	if (opts.user == NULL) {
		log_warnx("running as root without --user: experiment "
		    "processes and hooks run as root too");
		return;
	}
	/* a careless --user=root, or a uid 0 alias such as toor */
	if (opts.cc.ids.uid == 0 && !opts.allow_root)
		fatalx("--user %s: uid 0 would run experiment processes and "
		    "hooks as root; give --allow-root if that is meant",
		    opts.user);
	if (opts.cc.ids.gid == 0 && !opts.allow_root)
		fatalx("--%s %s: gid 0 would run experiment processes and "
		    "hooks in root's group; give --allow-root if that is meant",
		    opts.group != NULL ? "group" : "user",
		    opts.group != NULL ? opts.group : opts.user);
	if (opts.cc.ids.uid == 0 || opts.cc.ids.gid == 0)
		log_warnx("--allow-root: experiment processes and hooks run "
		    "with uid %d, gid %d", (int)opts.cc.ids.uid,
		    (int)opts.cc.ids.gid);
}

/*
 * Check, as the target user, that the backend can be used (child/probe.c).
 * The data directory's lock, if the backend takes one, stays open, unused,
 * until the master exits.
 */
static void
probe_backend(void)
{
	int	 lock;

	if (child_probe(&opts.cc, &lock) == -1)
		fatalx("cannot use the %s backend; exiting",
		    backend_name(opts.cc.backend));
}

/*
 * The master reads its signals through a signalfd; the others an operator
 * may send to the whole group are ignored, here and (inherited) in every
 * experiment process, which also ignores these five (procs.c).
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
void
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

/*
 * SIGHUP (or oml2ctl reopen-log): reopen the log and hand the new
 * descriptor to every child.  Returns -1 if the old file stays in use.
 */
int
reopen_log(void)
{
	struct proc	*c;
	int		 fd;

	if (log_reopen() == -1) {
		log_warnx("reopening the log file %s: %s; still writing to the "
		    "old one", opts.logfile, log_open_error());
		return -1;
	}
	log_info("log reopened");
	for (c = procs; c != NULL; c = c->next) {
		if (c->state == CH_STARTING || (fd = dup(log_fd())) == -1)
			continue;
		proc_send(c, MSG_LOGREOPEN, fd, NULL, 0);
	}
	report_logreopen();
	return 0;
}

static void
signal_read(void)
{
	struct signalfd_siginfo	 si;

	while (read(sigev.fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			procs_reap();
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

static uint64_t
next_deadline(uint64_t now)
{
	uint64_t	 t = 0;

	ev_due(&t, pending_next_deadline());
	ev_due(&t, policy_next_deadline());
	ev_due(&t, listen_tick(now));
	ev_due(&t, kill_at);
	ev_due(&t, report_tick(now));
	ev_due(&t, ctl_tick(now));
	ev_due(&t, metrics_tick(now));
	ev_due(&t, fig_tick(now));
	ev_due(&t, procs_tick(now));
	return t;
}

static void
dispatch(struct ev *e, uint32_t events)
{
	switch (e->kind) {
	case EV_LISTEN:
		listen_accept(e);
		break;
	case EV_PENDING:
		pending_read((struct pending *)e);
		break;
	case EV_PROC:
		if (events & EPOLLOUT)
			chan_flush((struct chan *)e);
		if (e->kind == EV_PROC && e->fd != -1 &&
		    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			proc_readable((struct proc *)e);
		break;
	case EV_SIGNAL:
		signal_read();
		break;
	case EV_REPORT:
		report_io(events);
		break;
	case EV_CTL:
		ctl_accept();
		break;
	case EV_CTLCONN:
		ctl_io(e, events);
		break;
	case EV_METRICS:
		metrics_accept();
		break;
	case EV_HTTP:
		metrics_io(e, events);
		break;
	}
}

static __dead void
loop(void)
{
	uint64_t	 now;

	for (;;) {
		now = now_mono_ms();
		pending_expire(now);
		policy_tick(now);
		stop_tick(now);
		if (stopping && procs == NULL && pending_count() == 0)
			break;
		if (kill_at != 0 && now >= kill_at) {
			log_warnx("children still running %u s after being told "
			    "to finish: killing", STOP_GRACE_MS / 1000 +
			    opts.cc.hook_timeout);
			procs_signal(SIGKILL);
			kill_at = 0;
		}
		ev_wait(next_deadline(now), dispatch);
	}
	report_stop();
	ctl_close();
	metrics_close();
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
		    log_open_error());
		return 1;
	}
	log_setproc("master");
	log_startup(1);
	raise_nofile();
	fit_nofile();
	ev_init();
	if (listen_open(opts.listen) == -1)
		return 1;
	setup_user();
	/* one budget for unfinished input, shared by every experiment */
	opts.cc.budget = budget_create(opts.cc.max_buffered,
	    opts.max_experiments + 64);
	probe_backend();
	setup_signals();
	if (report_start() == -1 || ctl_open() == -1 ||
	    (opts.metrics_listen != NULL &&
	    metrics_open(opts.metrics_listen) == -1))
		return 1;
	fig_init();
	log_startup(0);
	log_info("oml2-server %s ready: %s backend%s%s", OML2_VERSION,
	    backend_name(opts.cc.backend),
	    backend_files(opts.cc.backend) ? " in " : "",
	    backend_files(opts.cc.backend) ? opts.cc.datadir : "");
	log_info("unfinished input held for clients: at most %llu MiB, "
	    "%llu MiB per experiment", (unsigned long long)
	    (opts.cc.max_buffered >> 20), (unsigned long long)
	    (opts.cc.max_buffered_exp >> 20));
	if (opts.cc.ids.set)
		log_info("experiment processes run as %s (uid %d, gid %d)",
		    opts.cc.ids.user, (int)opts.cc.ids.uid,
		    (int)opts.cc.ids.gid);
	policy_tick(now_mono_ms());
	loop();
}
