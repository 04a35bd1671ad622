/*
 * The reporter: the unprivileged process of self-reporting (PROTOCOL.md
 * §10.9), child/reporter.c.  The master forks it when --oml-collect names
 * a destination, forwards it every client event as MSG_EVENT, and
 * restarts it when it dies; this header is what the master sees of it.
 */
#ifndef REPORTER_H
#define REPORTER_H

#include "common/common.h"

struct report_conf {
	const char	*collect;	/* --oml-collect */
	const char	*id;		/* --oml-id: the sender */
	const char	*domain;	/* --oml-domain */
	int		 binary;
	size_t		 bufsize;	/* --oml-bufsize */
	long		 start;		/* the stream's start-time */
};

/*
 * file:PATH (or flush:PATH), or [tcp:][//]HOST[:PORT] with IPv6 literals
 * in brackets: fills the malloc'd parts, or returns -1 with *why.
 */
int	 report_dest_parse(const char *uri, char **host, char **port,
	    char **path, const char **why);
int	 report_dest_check(const char *uri, const char **why);

/* In the forked process: never returns. */
__dead void reporter_main(int ctl, uint32_t gen, const struct report_conf *,
	    const struct priv_ids *);

#endif /* REPORTER_H */
