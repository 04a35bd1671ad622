/*
 * Listening sockets.  By default one IPv6 socket that also takes IPv4
 * (peers appear as ::ffff:a.b.c.d, as with the original), falling back to
 * IPv4 alone where IPv6 is absent.  "ADDR:PORT" or "[V6]:PORT" binds one
 * address.  Running out of descriptors (a few are always kept back for
 * forking experiment processes), half of them held for experiment
 * processes that have not taken their connections yet, or a full
 * --max-pending whose oldest connection (of the address holding the
 * most) is still young, pauses accepting until a connection goes or a
 * moment has passed, instead of spinning on a socket that stays
 * readable.  At shutdown, every
 * connection the kernel has already accepted for us is taken before the
 * sockets close.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

#define MAXLISTEN	8
#define RESERVE		4	/* descriptors kept back from clients */

static struct ev	 lsock[MAXLISTEN];
static int		 nlisten;
static int		 paused = 1;
static uint64_t		 resume_at;
static int		 reserve[RESERVE];
static int		 nreserve;

static void	 listen_pause(int);

/*
 * A few descriptors are held on /dev/null so that clients can never take
 * the last ones: forking an experiment process needs a socket pair, and
 * connections waiting for that process hold descriptors of their own.
 * Returns 1 if the reserve is complete.
 */
int
fd_reserve_fill(void)
{
	int	 fd;

	while (nreserve < RESERVE) {
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
			return 0;
		reserve[nreserve++] = fd;
	}
	return 1;
}

/* Give the reserve up for a moment (to fork); fill it again after. */
void
fd_reserve_release(void)
{
	while (nreserve > 0)
		close(reserve[--nreserve]);
}

static void
addr_string(const struct sockaddr *sa, char *host, size_t hlen,
    uint16_t *port)
{
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
	    host, hlen, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(host, hlen, "?");
	if (sa->sa_family == AF_INET6)
		*port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	else
		*port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

static int
bind_one(const struct addrinfo *ai)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	char			 host[NI_MAXHOST];
	uint16_t		 port;
	int			 fd, on = 1, off = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(fd, 1024) == -1) {
		log_warn("bind");
		close(fd);
		return -1;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	addr_string((struct sockaddr *)&ss, host, sizeof(host), &port);
	log_info("listening on %s%s%s:%u", ss.ss_family == AF_INET6 ? "[" : "",
	    host, ss.ss_family == AF_INET6 ? "]" : "", port);
	lsock[nlisten].kind = EV_LISTEN;
	lsock[nlisten].fd = fd;
	nlisten++;
	return 0;
}

/* Split "[ADDR]:PORT", "ADDR:PORT" or "PORT".  Returns the port part. */
static char *
split_listen(char *spec, char **host)
{
	char	*p;

	*host = NULL;
	if (spec[0] == '[' && (p = strstr(spec, "]:")) != NULL) {
		*p = '\0';
		*host = spec + 1;
		return p + 2;
	}
	if ((p = strrchr(spec, ':')) != NULL && strchr(spec, ':') == p) {
		*p = '\0';
		*host = spec;
		return p + 1;
	}
	return spec;
}

/* Bind the listening sockets.  Returns -1 with a logged reason. */
int
listen_open(const char *spec)
{
	struct addrinfo	 hints, *res, *ai;
	char		*copy, *host, *port;
	int		 e;

	copy = xstrdup(spec);
	port = split_listen(copy, &host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	hints.ai_family = host == NULL ? AF_INET6 : AF_UNSPEC;
	e = getaddrinfo(host, port, &hints, &res);
	if (e != 0 && host == NULL) {
		hints.ai_family = AF_INET;	/* no IPv6 on this host */
		e = getaddrinfo(host, port, &hints, &res);
	}
	if (e != 0) {
		log_error("cannot listen on %s: %s", spec, gai_strerror(e));
		free(copy);
		return -1;
	}
	for (ai = res; ai != NULL && nlisten < MAXLISTEN; ai = ai->ai_next)
		bind_one(ai);
	freeaddrinfo(res);
	if (nlisten == 0 && host == NULL) {
		hints.ai_family = AF_INET;
		if (getaddrinfo(NULL, port, &hints, &res) == 0) {
			for (ai = res; ai != NULL && nlisten < MAXLISTEN;
			    ai = ai->ai_next)
				bind_one(ai);
			freeaddrinfo(res);
		}
	}
	free(copy);
	if (nlisten == 0) {
		log_error("cannot listen on %s", spec);
		return -1;
	}
	listen_pause(0);
	return 0;
}

/* Stop or resume watching the listening sockets. */
static void
listen_pause(int on)
{
	int	 i;

	if (on == paused)
		return;
	for (i = 0; i < nlisten; i++) {
		if (on)
			ev_del(&lsock[i]);
		else
			ev_add(&lsock[i], EPOLLIN);
	}
	paused = on;
	resume_at = 0;
}

/* Pause until a descriptor or a pending slot is freed, or until "until". */
static void
listen_wait(uint64_t until)
{
	listen_pause(1);
	resume_at = until;
}

/* A connection went: if accepting was paused for want of room, go on. */
void
listen_resume(void)
{
	if (paused && resume_at != 0 && !stopping)
		listen_pause(0);
}

/* Resume accepting after a shortage; 0 or the next deadline. */
uint64_t
listen_tick(uint64_t now)
{
	if (!paused || resume_at == 0 || stopping)
		return 0;
	if (now >= resume_at) {
		listen_pause(0);
		return 0;
	}
	return resume_at;
}

/*
 * Out of descriptors: stop accepting until one is freed (or a second has
 * passed), instead of spinning on a listening socket that stays
 * readable.  Logged at most once a second, with how often it happened.
 */
static void
accept_starved(void)
{
	static struct ratelimit	 rl;

	log_warn_limited(&rl, "accept: pausing until a descriptor is free");
	listen_wait(now_mono_ms() + 1000);
}

/* Connections the kernel accepted on a listening socket that we did not. */
static unsigned
backlog_count(int fd)
{
	struct tcp_info	 ti;
	socklen_t	 len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1 ||
	    ti.tcpi_state != TCP_LISTEN)
		return 0;
	return ti.tcpi_unacked;		/* the accept queue, for a listener */
}

void
listen_accept(struct ev *ev)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 host[NI_MAXHOST];
	uint16_t		 port;
	uint64_t		 retry;
	int			 fd, n;

	for (n = 0; n < 64; n++) {
		/* room is made only for a connection that is there */
		if (pending_full() && backlog_count(ev->fd) == 0)
			return;
		/* descriptors held for processes that have not taken them */
		if (policy_held_full()) {
			listen_wait(now_mono_ms() + 1000);
			return;
		}
		if (!pending_room(now_mono_ms(), &retry)) {
			listen_wait(retry);
			return;
		}
		if (!fd_reserve_fill()) {
			errno = EMFILE;
			accept_starved();
			return;
		}
		sl = sizeof(ss);
		fd = accept4(ev->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_starved();
			else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept");
			return;
		}
		addr_string((struct sockaddr *)&ss, host, sizeof(host), &port);
		fig_accepted();
		pending_new(fd, host, port,
		    proxy_trusted((struct sockaddr *)&ss));
	}
}

/* The i-th listening socket, or -1: for oml2ctl status. */
int
listen_fd(int i)
{
	return i >= 0 && i < nlisten ? lsock[i].fd : -1;
}

/* Take every connection in fd's backlog, whatever the limits on pending. */
static void
accept_all(int fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 host[NI_MAXHOST];
	uint16_t		 port;
	int			 cfd;

	for (;;) {
		if (!fd_reserve_fill())
			return;
		sl = sizeof(ss);
		cfd = accept4(fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn("accept at shutdown");
			return;
		}
		addr_string((struct sockaddr *)&ss, host, sizeof(host), &port);
		fig_accepted();
		pending_new(cfd, host, port,
		    proxy_trusted((struct sockaddr *)&ss));
	}
}

/*
 * Shutdown: take what the kernel has already accepted for us, then close
 * the listening sockets, so that nobody else connects.  Connections still
 * in a backlog then (out of descriptors) are reset by the kernel: counted
 * in unserved and logged.
 */
void
listen_stop(void)
{
	unsigned	 left;
	int		 i;

	for (i = 0; i < nlisten; i++) {
		accept_all(lsock[i].fd);
		if ((left = backlog_count(lsock[i].fd)) > 0) {
			log_warnx("%u connections in the listen backlog could "
			    "not be taken (out of descriptors); closed", left);
			unserved += left;
		}
		if (!paused)
			ev_del(&lsock[i]);
		close(lsock[i].fd);
	}
	nlisten = 0;
	paused = 1;
}

/* The master's descriptor limit (prlimit may change it while we run). */
unsigned
fd_limit(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur > 1U << 30)
		return 1U << 30;
	return (unsigned)rl.rlim_cur;
}
