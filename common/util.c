/*
 * Small utilities shared by every process: descriptor flags, clocks,
 * memory and descriptor accounting, strict number parsing.
 */
#include <sys/time.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/stdlib.h>
#include <bsd/unistd.h>

#include "common/common.h"

int
set_nonblock(int fd)
{
	int	 fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int
set_cloexec(int fd)
{
	int	 fl;

	if ((fl = fcntl(fd, F_GETFD)) == -1)
		return -1;
	return fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

/*
 * Signals an operator may send to every process of the server (kill
 * $(pidof oml2-server), systemctl kill, a terminal) that no process here
 * has a use for, and whose default action would end it: ignored.  SIGTSTP
 * keeps its default (stopped, then continued, a process loses nothing);
 * the signals of faults and resource limits keep theirs.
 */
void
signals_ignore_stray(void)
{
	static const int sigs[] = { SIGUSR2, SIGALRM, SIGPIPE, SIGTTIN,
	    SIGTTOU, SIGIO, SIGPWR, SIGVTALRM, SIGPROF };
	size_t		 i;
	int		 s;

	for (i = 0; i < nitems(sigs); i++)
		signal(sigs[i], SIG_IGN);
	for (s = SIGRTMIN; s <= SIGRTMAX; s++)
		signal(s, SIG_IGN);
}

/* Wall-clock time in seconds, with microseconds. */
double
now_real(void)
{
	struct timeval	 tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

uint64_t
now_mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Resident set size of this process in KiB, or -1. */
long
rss_kb(void)
{
	FILE	*f;
	char	 line[256];
	long	 kb = -1;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int
count_open_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own descriptor */
}

/* A whole decimal number in 0..max, nothing else.  Returns -1 if not. */
int
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char		*end;
	unsigned long	 v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * In a freshly forked process: close every descriptor above stderr except
 * a and b (either may be -1 or a standard descriptor).
 */
void
close_except(int a, int b)
{
	int		 keep[2], i, t;
	unsigned	 lo = 3;

	keep[0] = a;
	keep[1] = b;
	if (keep[0] > keep[1]) {
		t = keep[0];
		keep[0] = keep[1];
		keep[1] = t;
	}
	for (i = 0; i < 2; i++) {
		if (keep[i] < (int)lo)
			continue;
		if ((unsigned)keep[i] > lo)
			close_range(lo, (unsigned)keep[i] - 1, 0);
		lo = (unsigned)keep[i] + 1;
	}
	close_range(lo, ~0U, 0);
}

/*
 * Process titles for ps(1), through libbsd.  libbsd marks the end of the
 * original argv[0] with a '.' when the new title is shorter, so short
 * titles are padded with blanks to that length.
 */
static size_t	 title_min;

void
title_init(int argc, char **argv, char **envp)
{
	const char	*prog = getprogname();

	title_min = argc > 0 ? strlen(argv[0]) : 0;
	/* libbsd prefixes "progname: " */
	title_min = title_min > strlen(prog) + 2 ?
	    title_min - strlen(prog) - 2 : 0;
	setproctitle_init(argc, argv, envp);
}

void
title_set(const char *fmt, ...)
{
	char	 t[256];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	setproctitle("%-*s", (int)title_min, t);
}

/*
 * A process's end as waitpid(2) gave it, for the log: "exited", "exited
 * with status 3", "killed by signal 9 (Killed)", with ", core dumped".
 */
void
exit_describe(int status, char *s, size_t len)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		snprintf(s, len, "exited");
	else if (WIFEXITED(status))
		snprintf(s, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(s, len, "killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(s, len, "ended (status %#x)", status);
}
