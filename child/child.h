/*
 * child/ -- one process per live experiment: its client connections in one
 * event loop, its database through a storage backend, its commit policy and
 * its hook.  Privileges are dropped before any client byte is seen.
 */
#ifndef CHILD_H
#define CHILD_H

#include <stdint.h>

#include "common/common.h"
#include "proto/proto.h"

enum backend_kind { BACKEND_SQLITE, BACKEND_POSTGRESQL };

/* Everything a child needs from the command line. */
struct child_conf {
	char		*datadir;	/* absolute */
	enum backend_kind backend;
	char		*pg_host;
	char		*pg_port;
	char		*pg_user;
	char		*pg_pass;
	char		*pg_connect;
	char		*hook;
	unsigned	 idle_timeout;	/* seconds, 0 = never */
	size_t		 max_line;
	size_t		 max_packet;
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

/* The master forks a spare and calls this in the new process. */
__dead void	 child_main(int ctl, const struct child_conf *);
/* Run by the master in a forked, dropped process: can the backend work? */
int		 child_probe(const struct child_conf *);

/* A table known to the experiment database. */
struct table {
	struct table		*next;
	struct oml_schema	 schema;	/* name = table name */
	enum oml_type		*types;		/* schema field types */
	int			 f_subject;	/* stream-0 fields, or -1 */
	int			 f_key;
	int			 f_value;
	void			*be;		/* backend: its statements, queue */
};

/* One row to store. */
struct row {
	int			 sender;
	int32_t			 seq;
	double			 ts_client;
	double			 ts_server;
	int			 n;
	const struct oml_value	*v;
};

struct db;

/*
 * A storage backend.  Return conventions: 0 success, -1 error (logged by
 * the backend).  The db logic in db.c sits on top and is shared.
 */
struct backend {
	int		 nocase;	/* table names compare case-blind */
	/* open or create, start the transaction; sets db->uri */
	int	(*open)(struct db *);
	/* commit and close */
	void	(*close)(struct db *);
	int	(*commit)(struct db *);
	/* names of existing tables (malloc'd array of malloc'd strings) */
	int	(*tables)(struct db *, char ***, int *);
	/* 0 found (*val malloc'd), 1 absent, -1 error */
	int	(*meta_get)(struct db *, const char *key, char **val);
	int	(*meta_set)(struct db *, const char *key, const char *val);
	/* find or create the sender's id */
	int	(*sender)(struct db *, const char *name, int *id);
	int	(*create_senders)(struct db *);
	int	(*table_create)(struct db *, struct table *);
	void	(*table_free)(struct db *, struct table *);
	int	(*insert)(struct db *, struct table *, const struct row *);
	/*
	 * Serialise schema work with other servers (may be NULL).  Between
	 * lock(1) and lock(0) db.c re-reads the tables; lock(0) makes the
	 * work durable and fails if it could not.
	 */
	int	(*lock)(struct db *, int on);
	/* should the child stop reading its clients for now? (may be NULL) */
	int	(*stalled)(struct db *);
};

struct sender {
	struct sender	*next;
	char		*name;
	int		 id;
};

struct db {
	const struct backend	*be;
	void			*bh;		/* backend handle */
	const struct child_conf	*conf;
	char			*name;		/* the experiment */
	char			*uri;		/* for the hook */
	long			 start_time;	/* S, 0 if unset */
	int			 created;	/* no start_time at open */
	int			 blobs;		/* a hint for a new file */
	struct table		*tables;	/* known (have table_* rows) */
	char			**others;	/* existing but unknown tables */
	int			 nothers;
	struct table		*meta;		/* _experiment_metadata */
	struct sender		*senders;
	unsigned		 pending;	/* writes since last commit */
	int			 failing;	/* the last commit failed */
	uint64_t		 dirty_since;	/* monotonic ms */
	uint64_t		 rows;
	uint64_t		 dropped;
};

/* db.c */
/* blobs: a schema of the first client has a blob (a new file's pages) */
struct db	*db_open(const struct child_conf *, const char *name, int blobs);
void		 db_close(struct db *);
int		 db_commit(struct db *);
uint64_t	 db_commit_due(const struct db *);
struct table	*db_declare(struct db *, const struct oml_schema *);
int		 db_sender(struct db *, const char *, int *);
int		 db_set_start(struct db *, long);
int		 db_insert(struct db *, struct table *, const struct row *);
int		 db_stalled(struct db *);
char		*db_create_sql(const struct table *, int postgres);
char		*db_insert_sql(const struct table *, int postgres);

/* store_sqlite.c, store_pg.c */
extern const struct backend	 backend_sqlite;
extern const struct backend	 backend_pg;
int		 sqlite_probe(const struct child_conf *);
int		 pg_probe(const struct child_conf *);

/* Event sources in a child's epoll set: the first member of each. */
enum cev_kind { CEV_CTL, CEV_SIGNAL, CEV_CONN, CEV_HOOK, CEV_DEAD };
struct cev {
	enum cev_kind	 kind;
	int		 fd;
};

/* conn.c -- one client connection */
enum conn_end {
	END_NONE, END_EOF, END_IDLE, END_PROTOCOL, END_ERROR, END_SHUTDOWN,
	END_LIMIT
};
struct conn;
struct conn	*conn_new(int fd, const char *peer, uint16_t port);
int		 conn_feed(struct conn *, const char *, size_t);
enum conn_end	 conn_read(struct conn *, int drain);
void		 conn_close(struct conn *, enum conn_end);
int		 conn_fd(const struct conn *);
uint64_t	 conn_last_rx(const struct conn *);
const char	*conn_peer(const struct conn *, uint16_t *port);
const char	*conn_ident(const struct conn *, const char **sender,
		    const char **app);

/* child.c -- the experiment's shared state, used by conn.c */
struct db	*exp_db_acquire(int blobs);
void		 exp_db_release(void);
const char	*exp_name(void);
const struct child_conf *exp_conf(void);
void		 exp_watch(struct cev *, uint32_t events);
void		 exp_unwatch(struct cev *);
int		 exp_ctl(void);

/* hook.c -- the experiment's event hook (§9) */
void		 hook_start(void);
void		 hook_event(const char *event, const char *uri);
void		 hook_exit(void);
void		 hook_readable(struct cev *);
uint64_t	 hook_tick(uint64_t now);	/* next deadline, or 0 */

/* report.c -- self-reporting of client events (§10.9) */
void		 exp_report(const struct conn *, enum report_event,
		    const char *message);
void		 exp_report_refused(const char *peer, uint16_t port);
uint64_t	 exp_report_flush(uint64_t now, int final);

#endif /* CHILD_H */
