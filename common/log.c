/*
 * Logging: one line per event, "DATE TIME LEVEL proc: message", written
 * with a single write(2) so lines from the master and every child (which
 * share the file, opened O_APPEND) never interleave.  Every line names its
 * process, e.g. "master" or "exp/demo".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

static int	 log_fdesc = STDERR_FILENO;
static int	 log_lvl = LOG_LVL_INFO;
static char	*log_path;
static char	 log_proc[96] = "oml2-server";
static int	 log_tty;	/* also show errors on stderr (start-up) */

static const char *const lvlname[] = { "", "ERROR", "WARN", "INFO", "DEBUG" };

/* Open the log; NULL or "-" is stderr.  Returns -1 with errno on failure. */
int
log_open(const char *path, int level)
{
	int	 fd;

	log_lvl = level;
	if (path == NULL || strcmp(path, "-") == 0) {
		log_fdesc = STDERR_FILENO;
		return 0;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (log_fdesc != STDERR_FILENO)
		close(log_fdesc);
	log_fdesc = fd;
	free(log_path);
	log_path = xstrdup(path);
	return 0;
}

/* After log rotation: open the path again (SIGHUP). */
int
log_reopen(void)
{
	char	*p;
	int	 r;

	if (log_path == NULL)
		return 0;
	p = xstrdup(log_path);
	r = log_open(p, log_lvl);
	free(p);
	return r;
}

/* While starting up, errors also go to stderr, where the operator looks. */
void
log_startup(int on)
{
	log_tty = on;
}

void
log_setproc(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(log_proc, sizeof(log_proc), fmt, ap);
	va_end(ap);
}

int
log_level(void)
{
	return log_lvl;
}

int
log_fd(void)
{
	return log_fdesc;
}

/* Append to a fixed line, silently truncating. */
static void
lineadd(char *line, size_t size, size_t *n, const char *fmt, ...)
{
	va_list	 ap;
	int	 k;

	if (*n >= size - 1)
		return;
	va_start(ap, fmt);
	k = vsnprintf(line + *n, size - *n, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	*n = (size_t)k < size - *n ? *n + (size_t)k : size - 1;
}

static void
vlog(int lvl, int with_errno, const char *fmt, va_list ap)
{
	char		 line[2048], msg[1800];
	struct timeval	 tv;
	struct tm	 tm;
	size_t		 n;
	int		 saved = errno;

	if (lvl > log_lvl)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	lineadd(line, sizeof(line) - 1, &n, ".%03ld %-5s %s: %s",
	    (long)tv.tv_usec / 1000, lvlname[lvl], log_proc, msg);
	if (with_errno)
		lineadd(line, sizeof(line) - 1, &n, ": %s", strerror(saved));
	line[n++] = '\n';
	/* a failed log write has nowhere to be reported */
	if (write(log_fdesc, line, n) == -1)
		(void)0;
	if (log_tty && lvl == LOG_LVL_ERROR && log_fdesc != STDERR_FILENO &&
	    write(STDERR_FILENO, line, n) == -1)
		(void)0;
	errno = saved;
}

#define LOGFN(name, lvl, err)			\
void						\
name(const char *fmt, ...)			\
{						\
	va_list	 ap;				\
						\
	va_start(ap, fmt);			\
	vlog(lvl, err, fmt, ap);		\
	va_end(ap);				\
}

LOGFN(log_warn, LOG_LVL_WARN, 1)
LOGFN(log_warnx, LOG_LVL_WARN, 0)
LOGFN(log_error, LOG_LVL_ERROR, 0)
LOGFN(log_info, LOG_LVL_INFO, 0)
LOGFN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
