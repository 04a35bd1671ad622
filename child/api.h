/*
 * child/ -- what the master may know of an experiment's process: its
 * configuration, its entry point, and the start-up probe of the backend.
 * The rest of child/ is private to it (child/child.h).
 */
#ifndef CHILD_API_H
#define CHILD_API_H

#include <stdint.h>

#include "common/common.h"

struct backend;

/* The defaults of the server (master/options.c) that its tools share. */
#define CONF_PG_HOST		"localhost"
#define CONF_PG_PORT		"postgresql"
#define CONF_PG_USER		"oml"
#define CONF_MAX_LINE		(1024 * 1024)
#define CONF_MAX_HEADER		(1024 * 1024)
#define CONF_MAX_PACKET		(64 * 1024 * 1024)
#define CONF_MAX_FIELDS		1024
#define CONF_MAX_STREAMS	1024
#define CONF_COMMIT_ROWS	100000
#define CONF_COMMIT_MS		50
#define CONF_COMMIT_BUSY	10000
#define CONF_COMMIT_MAX_MS	1000
#define CONF_RETRY_MS		1000

/* Everything a child needs from the command line. */
struct child_conf {
	char		*datadir;	/* absolute */
	const struct backend *backend;
	char		*pg_host;
	char		*pg_port;
	char		*pg_user;
	char		*pg_pass;
	char		*pg_connect;
	char		*hook;
	unsigned	 hook_timeout;	/* seconds it has after EXIT */
	unsigned	 idle_timeout;	/* seconds, 0 = never */
	size_t		 max_line;
	size_t		 max_header;	/* the whole header, in bytes */
	size_t		 max_packet;
	uint64_t	 max_buffered;	/* all experiments' unfinished input */
	uint64_t	 max_buffered_exp;	/* one experiment's */
	struct budget	*budget;	/* shared by every process */
	int		 max_fields;
	int		 max_streams;
	unsigned	 max_clients;
	unsigned	 commit_rows;
	unsigned	 commit_ms;	/* after the first uncommitted write, */
	unsigned	 commit_busy;	/* ... unless so many came meanwhile: */
	unsigned	 commit_max_ms;	/* ... then after this long at most */
	unsigned	 retry_ms;	/* after a commit that failed */
	unsigned	 linger;	/* seconds before reporting idle */
	int		 report;	/* send client events to the master */
	struct priv_ids	 ids;
};

/*
 * Descriptors an experiment process needs besides one per client: its
 * control socket, epoll, signalfd and log, its database's files (and its
 * checkpointer's), temporary files, the hook's pipes.  The master lowers
 * --max-clients to fit RLIMIT_NOFILE with this many to spare; a process
 * that finds fewer than CHILD_FDS_MIN free refuses new clients.
 */
#define CHILD_FDS	32
#define CHILD_FDS_MIN	16

/* The master forks a spare and calls this in the new process. */
__dead void	 child_main(int ctl, uint32_t gen, const struct child_conf *);
/*
 * probe.c -- run by the master at start: can the backend work, as the
 * target user?  0 with *lock the data directory's lock, which the master
 * holds from then on (-1 for a backend without one); -1 if not (logged).
 */
int		 child_probe(const struct child_conf *, int *lock);

/* db.c -- the backends by name: --backend's, and whether it has files */
const struct backend *backend_named(const char *);
const char	*backend_name(const struct backend *);
int		 backend_files(const struct backend *);

#endif /* CHILD_API_H */
