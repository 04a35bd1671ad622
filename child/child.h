/*
 * child/ -- one process per live experiment: its client connections in one
 * event loop, its database through a storage backend, its commit policy and
 * its hook.  Privileges are dropped before any client byte is seen.  This
 * header is child/'s own; the master sees only child/api.h.
 */
#ifndef CHILD_H
#define CHILD_H

#include <stdint.h>

#include "common/common.h"
#include "proto/proto.h"
#include "child/api.h"

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
	/*
	 * The buffer the row's vectors were rendered into, in column order
	 * from its start (the decoder's scratch), or NULL: a backend may
	 * take its memory instead of copying it, leaving it empty.
	 */
	struct buf		*bytes;
};

struct db;

/*
 * A storage backend.  Return conventions: 0 success, -1 error (logged by
 * the backend).  The db logic in db.c sits on top and is shared; no file
 * but the backend's own asks which backend it is.
 */
struct backend {
	const char	*name;		/* as --backend names it */
	int		 files;		/* stores in the data directory */
	int		 nocase;	/* table names compare case-blind */
	/* closing, how long rows the database could not take yet may wait */
	unsigned	 close_wait_ms;
	/* declared column types (§8.3): the row key's, and by enum oml_type */
	const char	*key_type;
	const char *const *types;
	/*
	 * Start-up check, as the target user: can the backend work?  With
	 * lock not NULL, *lock is then the data directory's lock, or -1.
	 */
	int	(*probe)(const struct child_conf *, int *lock);
	/* open or create, start the transaction; sets db->uri */
	int	(*open)(struct db *);
	/* commit and close */
	void	(*close)(struct db *);
	int	(*commit)(struct db *);
	/* names of existing tables (malloc'd array of malloc'd strings) */
	int	(*tables)(struct db *, char ***, int *);
	/*
	 * The server's metadata rows.  db.c answers lookups from
	 * db->meta_cache, which meta_load() fills once by one scan (and,
	 * under the lock, with what other servers wrote since), and which
	 * the backend keeps up with every row it writes (db_meta_note), so
	 * that no lookup scans the table: O(log n) without an index the
	 * original's files do not have.
	 */
	int	(*meta_load)(struct db *);
	int	(*meta_set)(struct db *, const char *key, const char *val);
	/* find or create the sender's id */
	int	(*sender)(struct db *, const char *name, int *id);
	/* a statement that returns no rows, as the batch's next write */
	int	(*exec)(struct db *, const char *sql);
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
	/* why it cannot write now, an enum stats_cause (may be NULL) */
	int	(*stall_cause)(struct db *);
	/*
	 * The one integer query sql answers now, or -1 if it cannot be
	 * run without waiting or fails (may be NULL).
	 */
	int64_t	(*query_int)(struct db *, const char *sql);
	/*
	 * Commits made in a thread of the backend's own (may be NULL): the
	 * rows of those that failed since it was last asked (they wait for
	 * a commit again), waiting for the one under way if wait is set.
	 */
	unsigned (*settle)(struct db *, int wait);
};

struct sender {
	char		*name;
	int		 id;
};

/*
 * A metadata row the server itself wrote (subject NULL, §8.7), as the
 * cache of db->meta_cache knows it: the newest row's value and id, and
 * whether older rows hold the same key (an update must then change them
 * all, as the original's did).
 */
struct meta_ent {
	char		*key;
	char		*val;
	int64_t		 id;		/* its oml_tuple_id */
	int		 dups;
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
	/*
	 * Lookups are tsearch(3) trees (balanced: O(log n) whatever names
	 * a client chooses): tables and other tables by name, senders by
	 * name and by id, the server's metadata rows by key.
	 */
	struct table		*tables;	/* known (have table_* rows) */
	void			*table_names;	/* the same, by name */
	void			*others;	/* names of existing, unknown tables */
	struct table		*meta;		/* _experiment_metadata */
	void			*senders;	/* struct sender, by name */
	void			*sender_ids;	/* the same, by id */
	void			*meta_cache;	/* struct meta_ent, by key */
	int			 meta_loaded;	/* the backend filled it */
	int64_t			 meta_seen;	/* the backend's: rows read up to */
	unsigned		 pending;	/* writes since last commit */
	int			 failing;	/* the last commit failed */
	int			 commit_now;	/* the backend holds enough */
	int			 loop_commits;	/* ... and an event loop commits */
	uint64_t		 dirty_since;	/* monotonic ms */
	uint64_t		 close_by;	/* closing: waits until then */
	uint64_t		 rows;
	uint64_t		 dropped;
};

/* db.c */
/* blobs: a schema of the first client has a blob (a new file's pages) */
struct db	*db_open(const struct child_conf *, const char *name, int blobs);
void		 db_refuse(const char *, ...) PRINTFLIKE(1, 2);
const char	*db_refused(void);
void		 db_close(struct db *);
uint64_t	 db_close_at(struct db *, uint64_t now);
int		 db_commit(struct db *);
uint64_t	 db_commit_due(const struct db *);
int		 db_wants_commit(const struct db *);
struct table	*db_declare(struct db *, const struct oml_schema *);
int		 db_sender(struct db *, const char *, int *);
int		 db_set_start(struct db *, long);
int		 db_insert(struct db *, struct table *, const struct row *);
int		 db_meta_put(struct db *, const char *key, const char *val,
		    int replace, char **old);
int		 db_stalled(struct db *);
int		 db_stall_cause(struct db *);
int64_t		 db_table_rows(struct db *, const struct table *);
const char	*db_sender_name(struct db *, int);
void		 db_walk_senders(struct db *, void (*)(const struct sender *,
		    void *), void *);
const struct meta_ent *db_meta_find(struct db *, const char *key);
void		 db_meta_note(struct db *, int64_t id, const char *key,
		    const char *val);
void		 db_meta_forget(struct db *);
char		*db_create_sql(const struct db *, const struct table *);
void		 db_sql_columns(struct buf *, const struct table *);
extern const char db_senders_sql[];

/* store_sqlite.c, store_pg.c */
extern const struct backend	 backend_sqlite;
extern const struct backend	 backend_pg;

/* The kinds of a child's event sources (struct ev, common/event.c). */
enum cev_kind { CEV_CTL = 1, CEV_CONN, CEV_HOOK };

/* conn.c -- one client connection */
enum conn_end {
	END_NONE, END_EOF, END_IDLE, END_PROTOCOL, END_ERROR, END_SHUTDOWN,
	END_LIMIT, END_CLOSED
};
struct conn;
struct conn	*conn_new(int fd, const char *peer, uint16_t port);
enum conn_end	 conn_feed(struct conn *, const char *, size_t);
void		 conn_any_domain(struct conn *);
size_t		 conn_unfinished(const struct conn *, const char **what);
enum conn_end	 conn_read(struct conn *, int drain);
void		 conn_close(struct conn *, enum conn_end);
int		 conn_fd(const struct conn *);
uint64_t	 conn_last_rx(const struct conn *);
const char	*conn_peer(const struct conn *, uint16_t *port);
const char	*conn_ident(const struct conn *, const char **sender,
		    const char **app);
size_t		 conn_held(const struct conn *);
int		 conn_waiting(const struct conn *);
void		 conn_set_waiting(struct conn *, int);
void		 conn_set_why(struct conn *, const char *, ...)
		    PRINTFLIKE(2, 3);
/* A connection's figures, for "oml2ctl show" (strings are the conn's). */
struct conn_fig {
	const char	*peer, *sender, *app;
	uint16_t	 port;
	int		 protocol;	/* 0 until its header says */
	int		 binary;
	int		 ready;		/* past its header */
	double		 since;		/* wall clock */
	uint64_t	 rows, bytes, dropped;
};
void		 conn_figures(const struct conn *, struct conn_fig *);

/* child.c -- the experiment's shared state, used by conn.c */
struct db	*exp_db_acquire(int blobs);
void		 exp_db_release(void);
const char	*exp_name(void);
const struct child_conf *exp_conf(void);
struct chan	*exp_chan(void);
int		 exp_mem_take(struct conn *, size_t, int force);
void		 exp_mem_give(struct conn *, size_t);

/* hook.c -- the experiment's event hook (§9) */
void		 hook_start(void);
void		 hook_event(const char *event, const char *uri);
void		 hook_exit(void);
void		 hook_readable(struct ev *);
uint64_t	 hook_tick(uint64_t now);	/* next deadline, or 0 */
enum stats_hook	 hook_status(void);

/*
 * stats.c -- the experiment's figures and completeness, pushed to the
 * master (MSG_STATS) and detailed on request (MSG_SHOW).  conn.c and db.c
 * report into it; child.c pushes.
 */
struct stats_base {		/* what child.c knows */
	uint32_t	 clients;
	enum stats_stall stall;
	int		 cause;		/* enum stats_cause */
	enum stats_hook	 hook;
	int		 db_open;
	uint64_t	 rows, dropped;
};
void		 stats_rx(size_t);
void		 stats_connected(void);
void		 stats_ended(enum stats_end);
uint64_t	 stats_clock(void);
void		 stats_commit(uint64_t started, int ok);
void		 stats_tuple(int sender_id, const char *sender,
		    const struct table *, int32_t seq);
void		 stats_stored(const struct table *, const struct oml_value *);
void		 stats_db_closing(struct db *);
void		 stats_db_closed(void);
void		 stats_log_totals(void);
uint64_t	 stats_tick(struct chan *, uint64_t now,
		    const struct stats_base *, int final);
void		 stats_show(struct chan *, uint32_t id, const struct conn_fig *,
		    unsigned, struct db *);

/* report.c -- self-reporting of client events (§10.9) */
void		 exp_report(const struct conn *, enum report_event,
		    const char *message);
void		 exp_report_refused(const char *peer, uint16_t port);

#endif /* CHILD_H */
