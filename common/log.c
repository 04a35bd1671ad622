/*
 * Logging: one line per event, "DATE TIME LEVEL proc: message", written
 * with a single write(2) so lines from the master and every child (which
 * share the file, opened O_APPEND) never interleave.  Every line names its
 * process, e.g. "master" or "exp/demo".
 */
#include <sys/stat.h>

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
static char	 log_err[128];	/* why log_open() failed */
static char	 log_proc[96] = "oml2-server";
static int	 log_tty;	/* also show errors on stderr (start-up) */

static const char *const lvlname[] = { "", "ERROR", "WARN", "INFO", "DEBUG" };

/*
 * Open the log; NULL or "-" is stderr.  Returns -1 on failure, with the
 * reason in log_open_error().
 *
 * The master opens it as root, at start and again on SIGHUP, in a
 * directory that others may write (the --user's, for one): a symbolic
 * link planted there must not make root create or append to another file,
 * a FIFO must not block it, and a second hard link may be another file's.
 * So the last component is never followed (O_NOFOLLOW), the open does not
 * wait (O_NONBLOCK, cleared after), and anything but a regular file with
 * one link is refused.
 */
int
log_open(const char *path, int level)
{
	struct stat	 st;
	const char	*why;
	int		 fd, fl;

	log_lvl = level;
	if (path == NULL || strcmp(path, "-") == 0) {
		log_fdesc = STDERR_FILENO;
		return 0;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
	    O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0640);
	if (fd == -1) {
		snprintf(log_err, sizeof(log_err), "%s", errno == ELOOP ?
		    "a symbolic link, which is not followed" : strerror(errno));
		return -1;
	}
	why = NULL;
	if (fstat(fd, &st) == -1 || (fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (st.st_nlink != 1)
		why = "a file with other hard links";
	if (why != NULL) {
		snprintf(log_err, sizeof(log_err), "%s", why);
		close(fd);
		return -1;
	}
	if (log_fdesc != STDERR_FILENO)
		close(log_fdesc);
	log_fdesc = fd;
	if (log_path != path) {
		free(log_path);
		log_path = xstrdup(path);
	}
	return 0;
}

const char *
log_open_error(void)
{
	return log_err;
}

/*
 * After log rotation: open the path again (SIGHUP).  On failure the old
 * file stays in use.
 */
int
log_reopen(void)
{
	if (log_path == NULL)
		return 0;
	return log_open(log_path, log_lvl);
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

/*
 * The length of the UTF-8 sequence at p (of n bytes) if it is valid and
 * shows as text: 0 for a stray or overlong byte, a surrogate, a C1 control
 * (U+0080-U+009F, CSI among them) or a code point that moves text about
 * (U+2028-U+2029 line and paragraph separators, the bidirectional marks
 * and overrides U+200E-U+200F, U+202A-U+202E and U+2066-U+2069).
 */
static size_t
utf8_shown(const unsigned char *p, size_t n)
{
	uint32_t	 cp;
	size_t		 len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	cp = p[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0 ||
	    cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

/*
 * Append src to line, escaped so that none of its bytes can end the
 * line, forge another or reach a terminal as a control: TAB, LF and CR as
 * \t, \n and \r, a backslash as \\, every other byte below 0x20, DEL
 * and every byte of what utf8_shown() refuses as \xHH.  Printable ASCII
 * and shown UTF-8 are copied.  An escape is never cut in half.
 */
static void
escadd(char *line, size_t size, size_t *n, const char *src, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)src;
	char			 e[4];
	size_t			 i, k, el;

	for (i = 0; i < len; i += k) {
		k = 1;
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
			e[0] = (char)p[i];
			el = 1;
		} else if (p[i] >= 0x80 && (k = utf8_shown(p + i, len - i)) > 0) {
			if (*n + k > size)
				break;
			memcpy(line + *n, p + i, k);
			*n += k;
			continue;
		} else {
			k = 1;
			e[0] = '\\';
			e[1] = p[i] == '\t' ? 't' : p[i] == '\n' ? 'n' :
			    p[i] == '\r' ? 'r' : p[i] == '\\' ? '\\' : 'x';
			el = 2;
			if (e[1] == 'x') {
				e[2] = hex[p[i] >> 4];
				e[3] = hex[p[i] & 0xf];
				el = 4;
			}
		}
		if (*n + el > size)
			break;
		memcpy(line + *n, e, el);
		*n += el;
	}
}

/*
 * One line: "DATE TIME.ms LEVEL proc: message[: strerror]".  Everything
 * after the level may hold client bytes (a sender id, a schema, a value,
 * a hook's output), so it all goes through escadd(): no caller can forget.
 */
static void
vlog(int lvl, int with_errno, const char *fmt, va_list ap)
{
	/* at most PIPE_BUF bytes: one write(2) stays whole on a pipe too */
	char		 msg[2048], line[4096];
	struct timeval	 tv;
	struct tm	 tm;
	size_t		 n, mlen;
	int		 saved = errno, k;

	if (lvl > log_lvl)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	lineadd(line, sizeof(line), &n, ".%03ld %-5s ",
	    (long)tv.tv_usec / 1000, lvlname[lvl]);
	k = snprintf(msg, sizeof(msg), "%s: ", log_proc);
	mlen = k < 0 ? 0 : (size_t)k < sizeof(msg) ? (size_t)k :
	    sizeof(msg) - 1;
	/* the length, not strlen: a %c may have put a NUL in it */
	k = vsnprintf(msg + mlen, sizeof(msg) - mlen, fmt, ap);
	if (k > 0)
		mlen += (size_t)k < sizeof(msg) - mlen ? (size_t)k :
		    sizeof(msg) - mlen - 1;
	if (with_errno) {
		snprintf(msg + mlen, sizeof(msg) - mlen, ": %s",
		    strerror(saved));
		mlen += strlen(msg + mlen);
	}
	escadd(line, sizeof(line) - 1, &n, msg, mlen);
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

/*
 * log_warn at most once a second for what rl counts, saying how often it
 * happened since the last line: for a condition every event retries (out
 * of descriptors, out of processes), which would otherwise flood the log.
 */
void
log_warn_limited(struct ratelimit *rl, const char *fmt, ...)
{
	char		 m[512];
	va_list		 ap;
	uint64_t	 now = now_mono_ms();
	int		 e = errno;

	rl->times++;
	if (rl->last != 0 && now - rl->last < 1000)
		return;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	errno = e;
	log_warn("%s (%u time%s since the last report)", m, rl->times,
	    rl->times == 1 ? "" : "s");
	rl->last = now;
	rl->times = 0;
}
