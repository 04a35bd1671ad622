/*
 * The SQLite backend: <data-dir>/<experiment>.sq3.  WAL journal with
 * synchronous=NORMAL while the experiment is open (readers see committed
 * rows during ingest, and a committed row survives the process being
 * killed); on close the file goes back to a rollback journal, so that it is
 * the plain single-file database every reader expects.  Every value is a
 * bound parameter; statements are prepared once.
 *
 * A full disk (or an I/O error, or a lock held too long) must not lose
 * rows the clients have sent: every write since the last commit is also
 * kept in a redo journal (journal.c).  When one fails for such a passing
 * reason, the transaction is rolled back, the backend reports itself
 * stalled so that the child stops reading its clients (TCP holds them
 * back), later writes only go to the journal, and each commit the timer
 * asks for replays the journal into a fresh transaction until one
 * succeeds.  Rows are lost only if the process stops first (logged).
 *
 * Rows are queued per table and inserted BATCH_ROWS at a time with one
 * multi-row INSERT, which halves SQLite's cost per row (the statement's
 * start, cursor and halt are paid once per batch).  A queued row is only
 * its offset in the redo journal, which holds the one copy of its values
 * (so the caller's buffers may change at once).  The queues are flushed
 * before a commit and before any other statement, so nothing but the
 * moment of the insert within the open transaction changes: rows still
 * become visible only at the commit.
 *
 * Copying the WAL back into the database (a checkpoint, with its two
 * fsyncs) is the checkpointer thread's job, so that ingest does not wait
 * for the disk; see struct ckpt.  Inserting a batch's rows and committing
 * them is the writer thread's, so that SQLite's work on one batch overlaps
 * reading and decoding the next; see struct writer.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/child.h"
#include "child/journal.h"

#define JOURNAL_MAX	(8 * 1024 * 1024)	/* then commit early */
#ifndef PIPE_BYTES
#define PIPE_BYTES	(1024 * 1024)		/* ... or if the writer is idle */
#endif
#define BATCH_LOG	6
#define BATCH_ROWS	(1 << BATCH_LOG)
#define LOCK_FILE	".oml2-server.lock"
#define REBORN_MS	1000	/* between tries to make a deleted file again */
#define SQ_LINES	128	/* two cache lines */

/*
 * A table's statements (for 1, 2, 4 ... BATCH_ROWS rows) and queue: the
 * journal offsets of the rows waiting to be inserted.
 */
struct sqt {
	sqlite3_stmt	*st[BATCH_LOG + 1];
	int		 nf;		/* fields per row */
	int		 batch;		/* rows per full batch, <= BATCH_ROWS */
	int		 listed;	/* in sq->dirty */
	int		 npend;
	size_t		 pend[BATCH_ROWS];
};

/*
 * The checkpointer: a thread with its own connection to the file, asked
 * after each commit that leaves CKPT_BYTES or more in the WAL.  Its
 * passive checkpoints never block the writer, but while the writer keeps
 * writing the WAL cannot start again from its beginning; so past
 * WAL_MAX_BYTES the writer waits for the thread and checkpoints the rest
 * itself, and its next transaction rewinds the WAL.  Without the thread
 * (a single-threaded SQLite, or no thread to be had) SQLite checkpoints
 * in the writer, as it does by default.  Only ck->mu's fields are shared;
 * the thread does not log (the writer reports its errors).
 */
#define CKPT_BYTES	(16 << 20)
#define WAL_MAX_BYTES	(64 << 20)

struct ckpt {
	pthread_t	 thread;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	sqlite3		*h;
	int		 soft;		/* WAL frames that call for a checkpoint */
	int		 hard;		/* ... that make the writer do one */
	int		 want;		/* under mu from here on */
	int		 busy;
	int		 stop;
	int		 err;		/* the last failure, for the writer to log */
};

/*
 * The writer: a thread that makes a batch's writes and commits them
 * while the event loop journals the next batch.  There are two redo
 * journals: sq->j, which the main thread appends to, and w->j, the batch
 * handed over; a commit swaps them (sq_commit()).  Only rows are left to
 * the thread: anything else (a table, a sender, metadata) first waits for
 * it to be idle and is made at once in the main thread, with the rows
 * journaled before it, so that one thread at a time uses the connection
 * and the metadata cache stays the main thread's.  Whatever else uses the
 * connection (a commit, a replay, a query, the close) also waits for the
 * thread to be idle first (w_idle()), and takes over the outcome of its
 * last batch then: a batch that failed for a passing reason stalls the
 * database with both journals' writes kept, as a failed commit does
 * without the thread.  The thread never logs and never touches the
 * counts: its warnings and the rows SQLite refused are handed back in
 * struct writer.  The main thread learns that a batch is done on its next
 * use of the database, or when the event loop next asks db_stalled()
 * (each time round the loop, so at worst on the next timer tick).
 * Without threads (a single-threaded SQLite) every write is made at once,
 * in the main thread.
 */
struct writer {
	pthread_t	 thread;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 busy;		/* under mu: a batch is being made */
	int		 stop;		/* under mu */
	/* the thread's while busy, the main thread's otherwise */
	struct journal	 j;		/* the batch */
	size_t		 from;		/* its first write still to make */
	int		 done;		/* a batch was made, not looked at */
	int		 rc;		/* why it failed, or SQLITE_OK */
	int		 lost;		/* its COMMIT failed for good */
	uint64_t	 refused;	/* rows SQLite refused for good */
	unsigned	 owed;		/* main: rows that failed, for db.c */
	struct buf	 log;		/* warnings, lines, for the main thread */
};

struct sq {
	sqlite3		*h;
	char		*path;
	struct ckpt	*ck;
	struct writer	*w;
	struct journal	*aj;		/* the journal the queues point into */
	size_t		 applied;	/* sq->j's writes before it are made */
	int		 in_writer;	/* the writer thread runs this code */
	struct table	**dirty;	/* tables with rows queued */
	int		 ndirty;
	int		 dirtycap;
	sqlite3_stmt	*meta_upd;	/* every row of a key */
	sqlite3_stmt	*meta_upd1;	/* one row, by id */
	sqlite3_stmt	*meta_ins;
	sqlite3_stmt	*snd_get;
	sqlite3_stmt	*snd_max;
	sqlite3_stmt	*snd_ins;
	int		 rc;		/* of the last failure */
	/*
	 * The main thread writes it for every row, while the writer thread
	 * reads the fields above for every row: apart, in lines of their
	 * own (and their neighbours, which the hardware fetches in pairs).
	 */
	_Alignas(SQ_LINES) struct journal j;	/* writes since the last commit */
	_Alignas(SQ_LINES) int failing;	/* stalled until the journal is written */
	uint64_t	 fail_since;
	int		 snd_next;	/* no sender id below this is free */
	int		 fd;		/* the file: fstat(), flock(); or -1 */
	int		 gone;		/* deleted and not made again yet */
	uint64_t	 retry_at;	/* ... which is tried no sooner */
};

#define SQ(db)	((struct sq *)(db)->bh)

static int	queue_flush(struct db *, struct table *);
static int	flush_all(struct db *);
static void	sqt_free(struct table *);
static void	queues_drop(struct db *);
static void	sq_fail(struct db *);
static void	w_idle(struct db *);
static void	lose(struct db *, struct journal *, const char *);
static void	sq_abandon(struct db *);

/*
 * A warning: logged, or, in the writer thread (log.c is not made for
 * threads), kept for the main thread to log.
 */
static void PRINTFLIKE(2, 3)
sq_warn(struct sq *sq, const char *fmt, ...)
{
	va_list	 ap;
	char	 line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (sq->in_writer) {
		buf_adds(&sq->w->log, line);
		buf_addc(&sq->w->log, '\n');
	} else
		log_warnx("%s", line);
}

static int
sq_exec(struct db *db, const char *sql)
{
	char	*err = NULL;
	int	 rc;

	if ((rc = sqlite3_exec(SQ(db)->h, sql, NULL, NULL, &err))
	    != SQLITE_OK) {
		SQ(db)->rc = rc;
		sq_warn(SQ(db), "%s: %s: %s", SQ(db)->path, sql,
		    err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/* Does the last failure pass with time (space, I/O, a lock)? */
static int
sq_transient(const struct sq *sq)
{
	switch (sq->rc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_BUSY:
	case SQLITE_NOMEM:
		return 1;
	default:
		return 0;
	}
}

/* Give up the open transaction, whatever state it is in; begin anew. */
static void
sq_abandon(struct db *db)
{
	queues_drop(db);
	if (!sqlite3_get_autocommit(SQ(db)->h))
		sqlite3_exec(SQ(db)->h, "ROLLBACK", NULL, NULL, NULL);
	sq_exec(db, "BEGIN");
}

static sqlite3_stmt *
sq_prepare(struct db *db, const char *sql)
{
	sqlite3_stmt	*st;
	int		 rc;

	if ((rc = sqlite3_prepare_v3(SQ(db)->h, sql, -1,
	    SQLITE_PREPARE_PERSISTENT, &st, NULL)) != SQLITE_OK) {
		SQ(db)->rc = rc;
		sq_warn(SQ(db), "%s: prepare %s: %s", SQ(db)->path, sql,
		    sqlite3_errmsg(SQ(db)->h));
		return NULL;
	}
	return st;
}

/* Step a statement that returns no row; reset it either way. */
static int
sq_done(struct db *db, sqlite3_stmt *st)
{
	int	 r = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r != SQLITE_DONE) {
		SQ(db)->rc = r;
		sq_warn(SQ(db), "%s: %s", SQ(db)->path,
		    sqlite3_errmsg(SQ(db)->h));
		return -1;
	}
	return 0;
}

static int
sync_file(const char *path)
{
	int	 fd, r;

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) == -1) {
		log_warn("%s", path);
		return -1;
	}
	if ((r = fsync(fd)) == -1)
		log_warn("%s: fsync", path);
	close(fd);
	return r;
}

/*
 * A new database is prepared under a hidden name (experiment names never
 * start with '.') already in WAL mode, then linked into place: a reader
 * polling for the file never meets it half made, nor catches the switch
 * to WAL, which would fail our first CREATE TABLE with "locked".
 */
static int
sq_create(const char *path, const char *dir, const char *name, int blobs)
{
	sqlite3	*h = NULL;
	char	*tmp;
	int	 r = -1;

	xasprintf(&tmp, "%s/.%s.sq3.new", dir, name);
	unlink(tmp);
	/*
	 * 16 KiB pages: a quarter of the pages, WAL frames and write calls
	 * of SQLite's default for the same rows, and a small page to
	 * rewrite at each commit of a slow client.  Blobs get 64 KiB: a
	 * 4 KiB blob then fits in its row, 15 rows to a page, instead of
	 * spilling into an overflow page (4 KiB pages, the original's) or
	 * leaving most of a 16 KiB page empty.  Every reader takes any
	 * page size.  The hidden file needs no rollback journal's fsyncs:
	 * nobody sees it before one fsync of ours makes it durable, just
	 * before the link.
	 */
	if (sqlite3_open_v2(tmp, &h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL) == SQLITE_OK &&
	    sqlite3_exec(h, "PRAGMA synchronous=OFF", NULL, NULL, NULL) ==
	    SQLITE_OK &&
	    sqlite3_exec(h, blobs ? "PRAGMA page_size=65536" :
	    "PRAGMA page_size=16384", NULL, NULL, NULL) == SQLITE_OK &&
	    sqlite3_exec(h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) ==
	    SQLITE_OK)
		r = 0;
	else
		log_warnx("%s: %s", tmp, h ? sqlite3_errmsg(h) : "no memory");
	sqlite3_close(h);
	if (r == 0 && sync_file(tmp) == -1)
		r = -1;
	if (r == 0 && link(tmp, path) == -1 && errno != EEXIST) {
		log_warn("%s", path);
		r = -1;
	}
	unlink(tmp);
	free(tmp);
	return r;
}

static void *
ckpt_main(void *arg)
{
	struct ckpt	*ck = arg;
	int		 rc;

	pthread_mutex_lock(&ck->mu);
	for (;;) {
		while (!ck->want && !ck->stop)
			pthread_cond_wait(&ck->cv, &ck->mu);
		if (ck->stop)
			break;
		ck->want = 0;
		ck->busy = 1;
		pthread_mutex_unlock(&ck->mu);
		rc = sqlite3_wal_checkpoint_v2(ck->h, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		pthread_mutex_lock(&ck->mu);
		ck->busy = 0;
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			ck->err = rc;
		pthread_cond_broadcast(&ck->cv);
	}
	pthread_mutex_unlock(&ck->mu);
	return NULL;
}

/* SQLite calls this in the writer after each commit. */
static int
wal_hook(void *arg, sqlite3 *h, const char *name, int frames)
{
	struct sq	*sq = arg;
	struct ckpt	*ck = sq->ck;
	int		 err, rc = SQLITE_OK;

	pthread_mutex_lock(&ck->mu);
	err = ck->err;
	ck->err = 0;
	if (frames >= ck->hard) {
		while (ck->busy)
			pthread_cond_wait(&ck->cv, &ck->mu);
		pthread_mutex_unlock(&ck->mu);
		rc = sqlite3_wal_checkpoint_v2(h, name,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else {
		if (frames >= ck->soft) {
			ck->want = 1;
			pthread_cond_signal(&ck->cv);
		}
		pthread_mutex_unlock(&ck->mu);
	}
	if (err != 0)
		sq_warn(sq, "%s: checkpoint: %s", sq->path, sqlite3_errstr(err));
	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		sq_warn(sq, "%s: checkpoint: %s", sq->path, sqlite3_errstr(rc));
	return SQLITE_OK;
}

static int
page_size(struct sq *sq)
{
	sqlite3_stmt	*st;
	int		 n = 0;

	if (sqlite3_prepare_v2(sq->h, "PRAGMA page_size", -1, &st, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	return n > 0 ? n : 4096;
}

static void
ckpt_start(struct sq *sq)
{
	struct ckpt	*ck;
	sigset_t	 all, old;
	int		 r;

	if (!sqlite3_threadsafe())
		return;
	ck = xcalloc(1, sizeof(*ck));
	ck->soft = CKPT_BYTES / page_size(sq);
	ck->hard = WAL_MAX_BYTES / page_size(sq);
	if (sqlite3_open_v2(sq->path, &ck->h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		log_warnx("%s: checkpointer: %s", sq->path, ck->h != NULL ?
		    sqlite3_errmsg(ck->h) : "out of memory");
		sqlite3_close(ck->h);
		free(ck);
		return;
	}
	sqlite3_busy_timeout(ck->h, 5000);
	/*
	 * A connection learns that the file is in WAL mode only when it
	 * first reads it; until then its checkpoints do nothing.
	 */
	if (sqlite3_exec(ck->h, "SELECT count(*) FROM sqlite_master", NULL,
	    NULL, NULL) != SQLITE_OK) {
		log_warnx("%s: checkpointer: %s", sq->path,
		    sqlite3_errmsg(ck->h));
		sqlite3_close(ck->h);
		free(ck);
		return;
	}
	pthread_mutex_init(&ck->mu, NULL);
	pthread_cond_init(&ck->cv, NULL);
	/* every signal stays the main thread's (signalfd, hook children) */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&ck->thread, NULL, ckpt_main, ck);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		log_warnx("%s: checkpointer: %s", sq->path, strerror(r));
		pthread_mutex_destroy(&ck->mu);
		pthread_cond_destroy(&ck->cv);
		sqlite3_close(ck->h);
		free(ck);
		return;
	}
	sq->ck = ck;
	sqlite3_wal_hook(sq->h, wal_hook, sq);	/* replaces autocheckpoint */
}

static void
ckpt_stop(struct sq *sq)
{
	struct ckpt	*ck = sq->ck;

	if (ck == NULL)
		return;
	sqlite3_wal_hook(sq->h, NULL, NULL);
	pthread_mutex_lock(&ck->mu);
	ck->stop = 1;
	pthread_cond_signal(&ck->cv);
	pthread_mutex_unlock(&ck->mu);
	pthread_join(ck->thread, NULL);
	pthread_mutex_destroy(&ck->mu);
	pthread_cond_destroy(&ck->cv);
	sqlite3_close(ck->h);
	free(ck);
	sq->ck = NULL;
}

/* Rows SQLite refused for good: off the counts (the main thread's). */
static void
refused(struct db *db, uint64_t n)
{
	if (SQ(db)->in_writer)
		SQ(db)->w->refused += n;
	else {
		db->rows -= n;
		db->dropped += n;
	}
}

static int	 sq_apply(struct db *, const struct jentry *, size_t);
static int	 x_insert(struct db *, struct table *, size_t);

/*
 * Make journal j's writes from offset from on (the writer's: rows only).
 * A row whose table cannot take rows for good is refused alone.  -1: a
 * write failed for a passing reason (sq->rc).
 */
static int
apply_from(struct db *db, struct journal *j, size_t from)
{
	struct sq	*sq = SQ(db);
	struct jentry	 e;
	struct table	*t;
	enum jkind	 kind;
	size_t		 off = from, at, o;

	sq->aj = j;
	while (journal_scan(j, &off, &at, &kind, &t)) {
		if (kind == J_ROW && x_insert(db, t, at) == 0)
			continue;
		if (kind != J_ROW) {
			o = at;
			journal_next(j, &o, &e);
			if (sq_apply(db, &e, at) == 0)
				continue;
		}
		if (sq_transient(sq))
			return -1;
		if (kind == J_ROW) {
			sq_warn(sq, "%s: insert into %s: %s", sq->path,
			    t->schema.name, sqlite3_errmsg(sq->h));
			journal_drop(j, at);
			refused(db, 1);
		}
	}
	return 0;
}

/* The writer thread's work: one batch, inserted and committed. */
static void
w_batch(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct writer	*w = sq->w;

	sq->in_writer = 1;
	w->rc = SQLITE_OK;
	w->lost = 0;
	if (apply_from(db, &w->j, w->from) == -1 || flush_all(db) == -1)
		w->rc = sq->rc;
	else if (sq_exec(db, "COMMIT") == -1) {
		w->rc = sq->rc;
		w->lost = !sq_transient(sq);
	} else
		sq_exec(db, "BEGIN");	/* if it fails, w_collect() retries */
	sq->aj = &sq->j;
	sq->in_writer = 0;
	w->done = 1;
}

static void *
w_main(void *arg)
{
	struct db	*db = arg;
	struct writer	*w = SQ(db)->w;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->busy && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		pthread_mutex_unlock(&w->mu);
		w_batch(db);
		pthread_mutex_lock(&w->mu);
		__atomic_store_n(&w->busy, 0, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Free the writer's state; its thread is gone or never started. */
static void
w_free(struct sq *sq)
{
	struct writer	*w = sq->w;

	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	journal_free(&w->j);
	buf_free(&w->log);
	free(w);
	sq->w = NULL;
}

static void
w_start(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct writer	*w;
	sigset_t	 all, old;
	int		 r;

	if (!sqlite3_threadsafe())
		return;
	w = xcalloc(1, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	sq->w = w;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&w->thread, NULL, w_main, db);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		log_warnx("%s: writer thread: %s; writing in this one",
		    sq->path, strerror(r));
		w_free(sq);
	}
}

/* Wait for the writer to be idle; 1 if a batch then waits to be looked at. */
static int
w_wait(struct sq *sq, int wait)
{
	struct writer	*w = sq->w;
	int		 busy;

	/*
	 * Not waiting (each time round the event loop): a look without the
	 * lock.  The thread clears busy last, with release order, so that
	 * its batch's outcome is seen with it.
	 */
	if (!wait && __atomic_load_n(&w->busy, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&w->mu);
	while ((busy = w->busy) && wait)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return !busy && w->done;
}

/*
 * Take over the outcome of the writer's last batch (it is idle): log its
 * warnings, count the rows SQLite refused; if it failed for a passing
 * reason, the batch and what the main thread journaled since wait, in
 * that order, in sq->j, and the database is stalled, as for a failed
 * commit.  Returns the rows that wait again so, or 0.
 */
static unsigned
w_collect(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct writer	*w = sq->w;
	struct journal	 t;
	struct jentry	 e;
	size_t		 off = 0;
	char		*p, *nl;

	w->done = 0;
	for (p = w->log.p; w->log.len > 0 && p < w->log.p + w->log.len;
	    p = nl + 1) {
		nl = memchr(p, '\n', w->log.p + w->log.len - p);
		*nl = '\0';
		log_warnx("%s", p);
	}
	w->log.len = 0;
	refused(db, w->refused);
	w->refused = 0;
	if (w->rc == SQLITE_OK) {
		journal_clear(&w->j);
		if (sq->h != NULL && sqlite3_get_autocommit(sq->h))
			sq_exec(db, "BEGIN");
		return 0;
	}
	sq->rc = w->rc;
	if (w->lost) {
		lose(db, &w->j, "commit failed");
		sq_abandon(db);
		return 0;
	}
	while (journal_next(&sq->j, &off, &e))
		journal_add(&w->j, &e);
	t = sq->j;
	sq->j = w->j;
	w->j = t;
	journal_clear(&w->j);
	sq->applied = 0;
	sq_fail(db);
	return sq->j.rows > 0 ? sq->j.rows : 1;
}

/*
 * Before the main thread uses the connection: the writer idle, its last
 * batch's outcome taken over.  A batch that failed leaves the rows that
 * wait in w->owed, for db.c (sq_settle()).
 */
static void
w_idle(struct db *db)
{
	struct sq	*sq = SQ(db);

	if (sq->w != NULL && w_wait(sq, 1))
		sq->w->owed += w_collect(db);
}

/*
 * Hand sq->j's writes to the writer to be made and committed; sq->j
 * starts again empty (the writer's last journal, cleared).  It is idle.
 */
static int
w_commit(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct writer	*w = sq->w;
	struct journal	 t;

	if (flush_all(db) == -1) {	/* (none queued, normally) */
		sq_fail(db);
		return -1;
	}
	t = w->j;
	w->j = sq->j;
	sq->j = t;
	w->from = sq->applied;
	sq->applied = 0;
	pthread_mutex_lock(&w->mu);
	__atomic_store_n(&w->busy, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static void
w_stop(struct sq *sq)
{
	struct writer	*w = sq->w;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	w_free(sq);
}

/*
 * db.c's look at a batch handed to the writer (waiting for it if asked):
 * the rows that failed to be written since it last looked, which now
 * wait for a commit to write them again.
 */
static unsigned
sq_settle(struct db *db, int wait)
{
	struct sq	*sq = SQ(db);
	unsigned	 n;

	if (sq == NULL || sq->w == NULL)
		return 0;
	if (w_wait(sq, wait))
		sq->w->owed += w_collect(db);
	n = sq->w->owed;
	sq->w->owed = 0;
	return n;
}

/*
 * Before SQLite's first use in this process: no memory statistics, which
 * cost a mutex and a count on every allocation and which nothing reads.
 * Once SQLite is initialised this fails harmlessly.
 */
static void
sq_configure(void)
{
	static int	 done;

	if (!done)
		sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	done = 1;
}

/* The statements of the database and its tables (prepared on use). */
static void
statements_free(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct table	*t;

	queues_drop(db);	/* the queues are the tables' statements' */
	for (t = db->tables; t != NULL; t = t->next)
		sqt_free(t);
	sqlite3_finalize(sq->meta_upd);
	sqlite3_finalize(sq->meta_upd1);
	sqlite3_finalize(sq->meta_ins);
	sqlite3_finalize(sq->snd_get);
	sqlite3_finalize(sq->snd_max);
	sqlite3_finalize(sq->snd_ins);
	sq->meta_upd = sq->meta_upd1 = sq->meta_ins = NULL;
	sq->snd_get = sq->snd_max = sq->snd_ins = NULL;
}

/*
 * Close the handles on the file.  Our own descriptor goes last: closing
 * any descriptor of a file drops the process's POSIX locks on it, and so
 * SQLite's, while SQLite still has it open.
 */
static void
sq_disconnect(struct sq *sq)
{
	ckpt_stop(sq);
	if (sq->h != NULL && sqlite3_close(sq->h) != SQLITE_OK)
		log_warnx("%s: close: %s", sq->path, sqlite3_errmsg(sq->h));
	sq->h = NULL;
	if (sq->fd != -1)
		close(sq->fd);
	sq->fd = -1;
}

/*
 * One writer per file: an experiment's process, oml2-import or oml2-merge
 * holds an exclusive flock(2) on the database while it has it open (and
 * oml2-merge a shared one on each input), so that none writes under
 * another's cached tables and sender ids.  SQLite's own locks are fcntl
 * locks, which a flock does not touch.  The same read-only descriptor
 * serves fstat(): SQLite goes on writing a file that was deleted, and
 * the rows with it (sq_deleted()).
 */
static int
sq_lock(struct sq *sq)
{
	if ((sq->fd = open(sq->path, O_RDONLY | O_CLOEXEC)) == -1) {
		log_warn("%s", sq->path);
		return -1;
	}
	if (flock(sq->fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK)
		log_warnx("%s is in use by another process (a server on the "
		    "same data directory, oml2-import or oml2-merge)",
		    sq->path);
	else
		log_warn("%s: flock", sq->path);
	close(sq->fd);
	sq->fd = -1;
	return -1;
}

/* Lock and open the existing file, and begin the transaction. */
static int
sq_connect(struct db *db)
{
	struct sq	*sq = SQ(db);
	int		 r;

	if (sq_lock(sq) == -1)
		return -1;
	r = sqlite3_open_v2(sq->path, &sq->h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (r != SQLITE_OK) {
		log_warnx("%s: %s", sq->path, sq->h ? sqlite3_errmsg(sq->h) :
		    sqlite3_errstr(r));
		goto fail;
	}
	sqlite3_busy_timeout(sq->h, 5000);
	if (sq_exec(db, "PRAGMA journal_mode=WAL") == -1 ||
	    sq_exec(db, "PRAGMA synchronous=NORMAL") == -1)
		goto fail;
	ckpt_start(sq);
	if (sq_exec(db, "BEGIN") == -1)
		goto fail;
	return 0;
fail:
	sq_disconnect(sq);
	return -1;
}

static int
sq_open(struct db *db)
{
	struct sq	*sq;

	sq_configure();
	if ((sq = aligned_alloc(SQ_LINES, sizeof(*sq))) == NULL)
		fatal("aligned_alloc");
	memset(sq, 0, sizeof(*sq));
	sq->fd = -1;
	sq->aj = &sq->j;
	db->bh = sq;
	xasprintf(&sq->path, "%s/%s.sq3", db->conf->datadir, db->name);
	xasprintf(&db->uri, "file:%s", sq->path);
	if ((access(sq->path, F_OK) == -1 && errno == ENOENT &&
	    sq_create(sq->path, db->conf->datadir, db->name, db->blobs)
	    == -1) ||
	    sq_connect(db) == -1) {
		free(sq->path);
		free(sq);
		db->bh = NULL;
		return -1;
	}
	w_start(db);
	return 0;
}

/*
 * The writes since the last commit will never be made: the rows among
 * them are lost, and counted as dropped instead of stored.
 */
static void
lose(struct db *db, struct journal *j, const char *why)
{
	log_error("%s: %s: %u rows received since the last commit are lost",
	    SQ(db)->path, why, j->rows);
	db->rows -= j->rows;
	db->dropped += j->rows;
	journal_clear(j);
}

static void
sq_lose(struct db *db, const char *why)
{
	lose(db, &SQ(db)->j, why);
	SQ(db)->applied = 0;
	SQ(db)->failing = 0;
}

/* Has the database file lost its last name (deleted, or its directory)? */
static int
sq_deleted(const struct sq *sq)
{
	struct stat	 st;

	return sq->fd != -1 && fstat(sq->fd, &st) == 0 && st.st_nlink == 0;
}

/*
 * The file was deleted: the rows committed to it since it was opened went
 * with it, whatever SQLite said, and count as dropped.  Those since the
 * last commit are still in the journal.
 */
static void
file_lost(struct db *db)
{
	struct sq	*sq = SQ(db);
	uint64_t	 lost = db->rows - sq->j.rows;

	log_error("%s was deleted while open: the %llu rows stored in it "
	    "since it was opened are lost", sq->path,
	    (unsigned long long)lost);
	db->rows -= lost;
	db->dropped += lost;
	queues_drop(db);
}

static void
sq_close(struct db *db)
{
	struct sq	*sq = SQ(db);

	if (sq == NULL)
		return;
	w_idle(db);
	w_stop(sq);
	if (sq->h != NULL && sq_deleted(sq)) {
		file_lost(db);		/* and what waits has nowhere to go */
		if (sq->j.rows > 0)
			sq_lose(db, "deleted while open");
		journal_clear(&sq->j);
		sqlite3_exec(sq->h, "ROLLBACK", NULL, NULL, NULL);
	}
	/* (db_close() committed first: nothing should be left unmade) */
	if (sq->h != NULL && !sq->failing && !sq->gone &&
	    apply_from(db, &sq->j, sq->applied) == -1)
		sq_fail(db);
	if (sq->h != NULL && !sq->failing && flush_all(db) == -1)
		sq_fail(db);
	statements_free(db);
	if (sq->failing)
		sq_lose(db, "closing while it cannot be written");
	journal_free(&sq->j);
	if (sq->h != NULL) {
		ckpt_stop(sq);
		if (!sqlite3_get_autocommit(sq->h))
			sq_exec(db, "COMMIT");
		/*
		 * Back to a single file, unless a reader holds it open right
		 * now.  The WAL is copied back first by a checkpoint, which
		 * lets readers in; the switch itself then has nothing left to
		 * copy, and holds the exclusive lock that keeps readers out
		 * only for a moment.
		 */
		sqlite3_wal_checkpoint_v2(sq->h, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		sqlite3_busy_timeout(sq->h, 0);
		sqlite3_exec(sq->h, "PRAGMA journal_mode=DELETE", NULL, NULL,
		    NULL);
	}
	sq_disconnect(sq);
	free(sq->dirty);
	free(sq->path);
	free(sq);
	db->bh = NULL;
}

/* A write failed for a passing reason: roll back, keep the journal. */
static void
sq_fail(struct db *db)
{
	struct sq	*sq = SQ(db);

	sq_abandon(db);
	if (sq->failing)
		return;
	sq->failing = 1;
	sq->fail_since = now_mono_ms();
	log_error("%s: cannot be written (%s): keeping the %u rows since the "
	    "last commit in memory and reading no client of this experiment "
	    "until it can", sq->path, sqlite3_errstr(sq->rc), sq->j.rows);
}

static int	 sq_apply(struct db *, const struct jentry *, size_t);

/* Write the journal again into a fresh transaction. */
static int
sq_replay(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct jentry	 e;
	size_t		 off = 0;

	sq_abandon(db);
	while (journal_next(&sq->j, &off, &e)) {
		if (sq_apply(db, &e, e.at) == 0 || !sq_transient(sq))
			continue;	/* written, or refused for good */
		goto fail;
	}
	if (flush_all(db) == -1)
		goto fail;
	sq->applied = sq->j.b.len;
	return 0;
fail:
	sq_abandon(db);
	return -1;
}

/* Journal table t's creation and its table_* row. */
static void
journal_table(struct journal *j, struct table *t)
{
	struct jentry	 e;
	char		*key, *val;

	memset(&e, 0, sizeof(e));
	e.kind = J_CREATE;
	e.t = t;
	journal_add(j, &e);
	xasprintf(&key, "table_%s", t->schema.name);
	val = schema_format(&t->schema);
	memset(&e, 0, sizeof(e));
	e.kind = J_META;
	e.a = key;
	e.b = val;
	journal_add(j, &e);
	free(key);
	free(val);
}

static void
journal_sender(const struct sender *s, void *arg)
{
	struct jentry	 e;

	memset(&e, 0, sizeof(e));
	e.kind = J_SENDER;
	e.a = s->name;
	e.id = s->id;
	journal_add(arg, &e);
}

/*
 * A journal that makes a new file hold what this process knows, in the
 * order of a new database (§8.2, §8.7): _senders, the metadata table,
 * the start time, the other tables in the order they were made, the
 * senders with their ids; then the rows of journal old.
 */
static void
remake(struct db *db, struct journal *j, struct journal *old)
{
	struct jentry	 e;
	struct table	*t, **v;
	size_t		 n = 0, i, off = 0;
	char		 val[32];

	memset(&e, 0, sizeof(e));
	e.kind = J_EXEC;
	e.a = db_senders_sql;
	journal_add(j, &e);
	if (db->meta != NULL)
		journal_table(j, db->meta);
	if (db->start_time != 0) {
		snprintf(val, sizeof(val), "%ld", db->start_time);
		e.kind = J_META;
		e.a = "start_time";
		e.b = val;
		journal_add(j, &e);
	}
	for (t = db->tables; t != NULL; t = t->next)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	for (i = n, t = db->tables; t != NULL; t = t->next)
		v[--i] = t;
	for (i = 0; i < n; i++)
		if (v[i] != db->meta)
			journal_table(j, v[i]);
	free(v);
	db_walk_senders(db, journal_sender, j);
	while (journal_next(old, &off, &e))
		if (e.kind == J_ROW)
			journal_add(j, &e);
}

/*
 * The file was deleted under us (or could not be made again since).  A
 * new one is made at its path, holding what this process knows (the
 * tables with their table_* rows, the start time, the senders with their
 * ids: clients go on as before) and the rows since the last commit, from
 * the journal; it is written as a replay, so that a full disk stalls as
 * usual.  If the directory is gone too, nothing can be stored: the rows
 * that waited are lost, later writes are refused (their rows dropped),
 * and a new file is tried at each commit, and on a write at most every
 * REBORN_MS.
 */
static int
sq_reborn(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct journal	 old;

	w_idle(db);
	if (sq->h != NULL) {
		file_lost(db);
		statements_free(db);
		sq_disconnect(sq);
	}
	sq->retry_at = now_mono_ms() + REBORN_MS;
	if ((access(sq->path, F_OK) == -1 && sq_create(sq->path,
	    db->conf->datadir, db->name, db->blobs) == -1) ||
	    sq_connect(db) == -1) {
		if (!sq->gone)
			log_error("%s cannot be made again: this experiment's "
			    "rows are dropped until it can", sq->path);
		if (sq->j.rows > 0)
			sq_lose(db, "deleted while open");
		journal_clear(&sq->j);
		sq->failing = 0;
		sq->gone = 1;
		return -1;
	}
	old = sq->j;
	memset(&sq->j, 0, sizeof(sq->j));
	remake(db, &sq->j, &old);
	journal_free(&old);
	db_meta_forget(db);		/* it described the lost file */
	log_info("%s made again with this experiment's %s and the %u rows "
	    "since the last commit", sq->path, sq->gone ? "tables and "
	    "senders (none of the rows in between)" : "tables and senders",
	    sq->j.rows);
	sq->gone = 0;
	sq->failing = 0;
	if (sq_replay(db) == -1) {
		sq_fail(db);
		return -1;
	}
	return 0;
}

/* Can the file be written (made again, if it was deleted)? */
static int
sq_usable(struct db *db)
{
	struct sq	*sq = SQ(db);

	if (!sq->gone)
		return 0;
	if (now_mono_ms() < sq->retry_at)
		return -1;
	return sq_reborn(db) == 0 || sq->failing ? 0 : -1;
}

static int
sq_commit(struct db *db)
{
	struct sq	*sq = SQ(db);

	w_idle(db);
	/* gone for now: what waited is counted lost, nothing is pending */
	if ((sq->gone || sq_deleted(sq)) && sq_reborn(db) == -1)
		return sq->failing ? -1 : 0;
	if (sq->failing && sq_replay(db) == -1)
		return -1;
	/* a replay is committed here, in this thread; a batch by the writer */
	if (sq->w != NULL && !sq->failing)
		return w_commit(db);
	if (!sq->failing && flush_all(db) == -1) {
		sq_fail(db);
		return -1;
	}
	if (sq_exec(db, "COMMIT") == -1) {
		/* a failed COMMIT may leave the transaction open or not */
		if (sq_transient(sq)) {
			sq_fail(db);
			return -1;
		}
		sq_lose(db, "commit failed");
		sq_abandon(db);
		return -1;
	}
	if (sq->failing) {
		log_info("%s: written again after %.1f s: the %u rows that "
		    "waited are stored; reading clients again", sq->path,
		    (now_mono_ms() - sq->fail_since) / 1000.0, sq->j.rows);
		sq->failing = 0;
	}
	journal_clear(&sq->j);
	sq->applied = 0;
	return sq_exec(db, "BEGIN");
}

/*
 * Commit soon, from the event loop: by then the connection has given back
 * its input buffer, which a large row would otherwise keep beside the
 * journal and SQLite's own copy.
 */
static void
batch_full(struct db *db)
{
	if (journal_bytes(&SQ(db)->j) >= JOURNAL_MAX)
		db->commit_now = 1;
}

/*
 * A row journaled for the writer.  A writer with nothing to do gets the
 * batch early: smaller batches while it keeps up, larger ones when it
 * does not.
 */
static void
pipe_row(struct db *db)
{
	struct sq	*sq = SQ(db);

	if (journal_bytes(&sq->j) >= PIPE_BYTES &&
	    !__atomic_load_n(&sq->w->busy, __ATOMIC_RELAXED))
		db->commit_now = 1;
	batch_full(db);
}

/*
 * Record a write in the journal, then make it, unless the database is
 * failing (the journal is written later).  A write refused for a passing
 * reason stays in the journal and stalls the database; one refused for
 * good is forgotten and fails.
 */
static int
sq_write(struct db *db, const struct jentry *e)
{
	struct sq	*sq = SQ(db);

	if (sq_usable(db) == -1)
		return -1;
	/*
	 * With the writer, a row is only journaled: the writer makes it
	 * with its batch.  Anything else is made now, after the rows
	 * before it, with the writer idle.
	 */
	if (sq->w != NULL && e->kind == J_ROW && !sq->failing) {
		journal_row_add(&sq->j, e->t, &e->row);
		pipe_row(db);
		return 0;
	}
	if (sq->w != NULL) {
		w_idle(db);
		if (!sq->failing && apply_from(db, &sq->j, sq->applied) == -1)
			sq_fail(db);
	}
	journal_add(&sq->j, e);
	if (sq->failing)
		return 0;
	if (sq_apply(db, e, sq->j.last) == 0) {
		sq->applied = sq->j.b.len;
		batch_full(db);
		return 0;
	}
	if (sq_transient(sq)) {
		sq_fail(db);
		return 0;
	}
	journal_undo(&sq->j);
	return -1;
}

static int
sq_stalled(struct db *db)
{
	return SQ(db) != NULL && SQ(db)->failing;
}

/* With the writer idle, so that one thread at a time uses the connection. */
static int64_t
sq_query_int(struct db *db, const char *sql)
{
	sqlite3_stmt	*st;
	int64_t		 n = -1;

	if (SQ(db) == NULL)
		return -1;
	w_idle(db);
	if (SQ(db)->h == NULL || SQ(db)->failing)
		return -1;
	if (sqlite3_prepare_v2(SQ(db)->h, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return n;
}

static int
sq_stall_cause(struct db *db)
{
	if (SQ(db) == NULL)
		return CAUSE_ERROR;
	w_idle(db);
	switch (SQ(db)->rc & 0xff) {
	case SQLITE_FULL:
		return CAUSE_DISK_FULL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return CAUSE_LOCKED;
	case SQLITE_IOERR:
		return CAUSE_IO;
	case SQLITE_NOMEM:
		return CAUSE_MEMORY;
	default:
		return CAUSE_ERROR;
	}
}

static int
sq_tables(struct db *db, char ***names, int *n)
{
	sqlite3_stmt	*st;
	int		 r;

	w_idle(db);
	if (!SQ(db)->failing && flush_all(db) == -1)
		sq_fail(db);
	st = sq_prepare(db, "SELECT name FROM sqlite_master WHERE "
	    "type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
	if (st == NULL)
		return -1;
	*names = NULL;
	*n = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		*names = xreallocarray(*names, (size_t)*n + 1, sizeof(char *));
		(*names)[(*n)++] = xstrdup((const char *)
		    sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE) {
		log_warnx("%s: listing tables: %s", SQ(db)->path,
		    sqlite3_errmsg(SQ(db)->h));
		return -1;
	}
	return 0;
}

/*
 * Fill the metadata cache with one scan of the table, the first time it is
 * needed: the server's own rows have no subject (§8.7).  Only this
 * process writes the file (the data directory is locked), so the cache
 * stays true by noting every row written after.
 */
static int
meta_load(struct db *db)
{
	struct sq	*sq = SQ(db);
	sqlite3_stmt	*st;
	const char	*k, *v;
	int		 r;

	if (db->meta_loaded)
		return 0;
	w_idle(db);
	st = sq_prepare(db, "SELECT count(*) FROM sqlite_master WHERE "
	    "type='table' AND name='_experiment_metadata' COLLATE NOCASE");
	if (st == NULL)
		return -1;
	r = sqlite3_step(st);
	if (r == SQLITE_ROW && sqlite3_column_int(st, 0) == 0) {
		sqlite3_finalize(st);
		db->meta_loaded = 1;	/* to be created: nothing to read */
		return 0;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_ROW || (st = sq_prepare(db, "SELECT oml_tuple_id, "
	    "key, value FROM _experiment_metadata WHERE subject IS NULL AND "
	    "key IS NOT NULL ORDER BY oml_tuple_id")) == NULL)
		goto fail;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		k = (const char *)sqlite3_column_text(st, 1);
		v = (const char *)sqlite3_column_text(st, 2);
		db_meta_note(db, sqlite3_column_int64(st, 0), k, v ? v : "");
	}
	sqlite3_finalize(st);
	if (r == SQLITE_DONE) {
		db->meta_loaded = 1;
		return 0;
	}
fail:
	log_warnx("%s: reading metadata: %s", sq->path,
	    sqlite3_errmsg(sq->h));
	return -1;
}

/*
 * Set a key: update its row, found by id (or every row of a key that
 * several hold), or insert one.  A cached row that is not there (rolled
 * back with a failed transaction) is inserted again.
 */
static int
x_meta(struct db *db, const char *key, const char *val)
{
	struct sq		*sq = SQ(db);
	const struct meta_ent	*e;
	sqlite3_stmt		*st;
	int64_t			 id;

	if (meta_load(db) == -1)
		return -1;
	if ((sq->meta_upd == NULL && (sq->meta_upd = sq_prepare(db,
	    "UPDATE _experiment_metadata SET value=? WHERE key=? AND "
	    "subject IS NULL")) == NULL) ||
	    (sq->meta_upd1 == NULL && (sq->meta_upd1 = sq_prepare(db,
	    "UPDATE _experiment_metadata SET value=? WHERE key=? AND "
	    "subject IS NULL AND oml_tuple_id=?")) == NULL) ||
	    (sq->meta_ins == NULL && (sq->meta_ins = sq_prepare(db,
	    "INSERT INTO _experiment_metadata (key, value) VALUES (?, ?)"))
	    == NULL))
		return -1;
	if ((e = db_meta_find(db, key)) != NULL) {
		id = e->id;
		st = e->dups ? sq->meta_upd : sq->meta_upd1;
		sqlite3_bind_text(st, 1, val, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
		if (!e->dups)
			sqlite3_bind_int64(st, 3, id);
		if (sq_done(db, st) == -1)
			return -1;
		if (sqlite3_changes(sq->h) > 0) {
			db_meta_note(db, id, key, val);
			return 0;
		}
	}
	sqlite3_bind_text(sq->meta_ins, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(sq->meta_ins, 2, val, -1, SQLITE_STATIC);
	if (sq_done(db, sq->meta_ins) == -1)
		return -1;
	db_meta_note(db, sqlite3_last_insert_rowid(sq->h), key, val);
	return 0;
}

static int
sq_meta_set(struct db *db, const char *key, const char *val)
{
	struct jentry	 e = { .kind = J_META, .a = key, .b = val };

	return sq_write(db, &e);
}

static int
sq_exec_write(struct db *db, const char *sql)
{
	struct jentry	 e = { .kind = J_EXEC, .a = sql };

	return sq_write(db, &e);
}

static int
x_sender(struct db *db, const char *name, int id)
{
	struct sq	*sq = SQ(db);

	/* (prepared here too: a file made again replays its senders) */
	if (sq->snd_ins == NULL && (sq->snd_ins = sq_prepare(db,
	    "INSERT INTO _senders (name, id) VALUES (?, ?)")) == NULL)
		return -1;
	sqlite3_bind_text(sq->snd_ins, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(sq->snd_ins, 2, id);
	return sq_done(db, sq->snd_ins);
}

static int
sq_sender(struct db *db, const char *name, int *id)
{
	struct sq	*sq = SQ(db);
	struct jentry	 e;
	int		 r;

	if (sq_usable(db) == -1)
		return -1;
	w_idle(db);
	if ((sq->snd_get == NULL && (sq->snd_get = sq_prepare(db,
	    "SELECT id FROM _senders WHERE name=?")) == NULL) ||
	    (sq->snd_max == NULL && (sq->snd_max = sq_prepare(db,
	    "SELECT COALESCE(MAX(id), 0) + 1 FROM _senders")) == NULL))
		return -1;
	sqlite3_bind_text(sq->snd_get, 1, name, -1, SQLITE_STATIC);
	r = sqlite3_step(sq->snd_get);
	if (r == SQLITE_ROW)
		*id = sqlite3_column_int(sq->snd_get, 0);
	sqlite3_reset(sq->snd_get);
	sqlite3_clear_bindings(sq->snd_get);
	if (r == SQLITE_ROW)
		return 0;
	memset(&e, 0, sizeof(e));
	if (sqlite3_step(sq->snd_max) != SQLITE_ROW) {
		sqlite3_reset(sq->snd_max);
		log_warnx("%s: sender id: %s", sq->path, sqlite3_errmsg(sq->h));
		return -1;
	}
	/* past every id given out, even in a batch not written yet */
	*id = sqlite3_column_int(sq->snd_max, 0);
	sqlite3_reset(sq->snd_max);
	if (*id < sq->snd_next)
		*id = sq->snd_next;
	sq->snd_next = *id + 1;
	e.kind = J_SENDER;
	e.a = name;
	e.id = *id;
	return sq_write(db, &e);
}

static int
x_create(struct db *db, struct table *t)
{
	char	*sql = db_create_sql(db, t);
	int	 r;

	r = sq_exec(db, sql);
	free(sql);
	return r;
}

static int
sq_table_create(struct db *db, struct table *t)
{
	struct jentry	 e = { .kind = J_CREATE, .t = t };

	return sq_write(db, &e);
}

/* The statement inserting 2^k rows into t, prepared on first use. */
static sqlite3_stmt *
sqt_stmt(struct db *db, struct table *t, int k)
{
	struct sqt	*q = t->be;
	struct buf	 b;
	int		 i, j;

	if (q->st[k] != NULL)
		return q->st[k];
	buf_init(&b);
	buf_printf(&b, "INSERT INTO \"%s\" (", t->schema.name);
	db_sql_columns(&b, t);
	buf_adds(&b, ") VALUES ");
	for (i = 0; i < 1 << k; i++) {
		buf_adds(&b, i > 0 ? ", (?" : "(?");
		for (j = 1; j < q->nf + 4; j++)
			buf_adds(&b, ", ?");
		buf_addc(&b, ')');
	}
	q->st[k] = sq_prepare(db, buf_cstr(&b));
	free(b.p);
	return q->st[k];
}

static int
sq_table_prepare(struct db *db, struct table *t)
{
	struct sqt	*q;
	int		 ncols, max;

	if (t->be != NULL)
		return 0;
	q = xcalloc(1, sizeof(*q));
	q->nf = t->schema.nfields;
	/* a batch stays within SQLite's limit on bound parameters */
	ncols = q->nf + 4;
	max = sqlite3_limit(SQ(db)->h, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
	for (q->batch = BATCH_ROWS; q->batch > 1 && q->batch * ncols > max; )
		q->batch /= 2;
	t->be = q;
	if (sqt_stmt(db, t, 0) == NULL) {
		sqt_free(t);
		return -1;
	}
	return 0;
}

static void
sqt_free(struct table *t)
{
	struct sqt	*q = t->be;
	int		 k;

	if (q == NULL)
		return;
	for (k = 0; k <= BATCH_LOG; k++)
		sqlite3_finalize(q->st[k]);
	free(q);
	t->be = NULL;
}

/* Only before the table's first row or after sq_close: nothing queued. */
static void
sq_table_free(struct db *db, struct table *t)
{
	if (SQ(db) != NULL)
		w_idle(db);
	sqt_free(t);
}

static void
bind_value(sqlite3_stmt *st, int i, const struct oml_value *v)
{
	switch (v->type) {
	case OML_INT32:
		sqlite3_bind_int(st, i, v->u.i32);
		break;
	case OML_UINT32:	/* the true value: a deliberate fix (§8.4) */
		sqlite3_bind_int64(st, i, (sqlite3_int64)v->u.u32);
		break;
	case OML_INT64:
		sqlite3_bind_int64(st, i, v->u.i64);
		break;
	case OML_UINT64:
		sqlite3_bind_int64(st, i, (sqlite3_int64)v->u.u64);
		break;
	case OML_DOUBLE:
		if (isnan(v->u.d))
			sqlite3_bind_null(st, i);
		else
			sqlite3_bind_double(st, i, v->u.d);
		break;
	case OML_STRING:
		sqlite3_bind_text(st, i, v->u.s.p ? v->u.s.p : "",
		    (int)strnlen(v->u.s.p ? v->u.s.p : "", v->u.s.len),
		    SQLITE_STATIC);
		break;
	case OML_BLOB:
		if (v->null)
			sqlite3_bind_null(st, i);
		else if (v->u.s.len == 0)
			sqlite3_bind_zeroblob(st, i, 0);
		else
			sqlite3_bind_blob64(st, i, v->u.s.p, v->u.s.len,
			    SQLITE_STATIC);
		break;
	case OML_GUID:
		if (v->u.u64 == 0)
			sqlite3_bind_null(st, i);
		else
			sqlite3_bind_int64(st, i, (sqlite3_int64)v->u.u64);
		break;
	case OML_BOOL:
		sqlite3_bind_int(st, i, v->u.b ? 1 : 0);
		break;
	default:		/* vectors, rendered by the decoder */
		sqlite3_bind_text64(st, i, v->u.s.p ? v->u.s.p : "",
		    v->u.s.len, SQLITE_STATIC, SQLITE_UTF8);
		break;
	}
}

/*
 * Bind queued rows [first, first + 2^k), read from the journal, to
 * statement st and run it.  On failure the cause is in sq->rc.
 */
static int
run_rows(struct sq *sq, struct sqt *q, sqlite3_stmt *st, int first, int k)
{
	struct row	 row;
	int		 r, i, col = 1, rc;

	for (r = first; r < first + (1 << k); r++) {
		journal_row(sq->aj, q->pend[r], &row);
		sqlite3_bind_int(st, col++, row.sender);
		sqlite3_bind_int(st, col++, row.seq);
		if (isnan(row.ts_client))
			sqlite3_bind_null(st, col++);
		else
			sqlite3_bind_double(st, col++, row.ts_client);
		sqlite3_bind_double(st, col++, row.ts_server);
		for (i = 0; i < q->nf; i++, col++)
			if (i < row.n)
				bind_value(st, col, &row.v[i]);
			else
				sqlite3_bind_null(st, col);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	sq->rc = rc;
	return -1;
}

/*
 * Insert t's queued rows, in order, in the fewest statements.  A batch
 * that fails is retried row by row, so that only the rows SQLite itself
 * refuses for good are lost; those are logged, taken off the counts and
 * dropped from the journal, so that a replay neither tries nor counts
 * them again.  A failure that passes with time (a full disk) stops the
 * flush: returns -1 with the cause in sq->rc, the rows still being in
 * the journal.
 */
static int
queue_flush(struct db *db, struct table *t)
{
	struct sq	*sq = SQ(db);
	struct sqt	*q = t->be;
	sqlite3_stmt	*st;
	int		 first = 0, k, r, lost = 0, rc = 0;

	for (k = BATCH_LOG; k >= 0 && rc == 0; k--) {
		while (rc == 0 && q->npend - first >= 1 << k) {
			if ((st = sqt_stmt(db, t, k)) != NULL &&
			    run_rows(sq, q, st, first, k) == 0) {
				first += 1 << k;
				continue;
			}
			if (sq_transient(sq)) {
				rc = -1;
				break;
			}
			for (r = first; r < first + (1 << k); r++) {
				if ((st = sqt_stmt(db, t, 0)) != NULL &&
				    run_rows(sq, q, st, r, 0) == 0)
					continue;
				if (sq_transient(sq)) {
					rc = -1;
					break;
				}
				sq_warn(sq, "%s: insert into %s: %s", sq->path,
				    t->schema.name, sqlite3_errmsg(sq->h));
				journal_drop(sq->aj, q->pend[r]);
				lost++;
			}
			first += 1 << k;
		}
	}
	q->npend = 0;
	if (lost > 0 && sq->in_writer)
		sq->w->refused += (uint64_t)lost;
	else if (lost > 0) {
		db->rows -= (uint64_t)lost;
		db->dropped += (uint64_t)lost;
	}
	return rc;
}

/*
 * Insert every queued row.  The tables with rows queued are listed in
 * sq->dirty, not found on db->tables, which is the main thread's.
 */
static int
flush_all(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct sqt	*q;
	int		 i;

	for (i = 0; i < sq->ndirty; i++) {
		q = sq->dirty[i]->be;
		if (q->npend > 0 && queue_flush(db, sq->dirty[i]) == -1)
			return -1;
		q->listed = 0;
	}
	sq->ndirty = 0;
	return 0;
}

/* The transaction is given up: its queued rows go with it. */
static void
queues_drop(struct db *db)
{
	struct sq	*sq = SQ(db);
	struct sqt	*q;
	int		 i;

	for (i = 0; i < sq->ndirty; i++) {
		q = sq->dirty[i]->be;
		q->npend = 0;
		q->listed = 0;
	}
	sq->ndirty = 0;
}

/* Queue the row journaled at offset at; a full queue is inserted. */
static int
x_insert(struct db *db, struct table *t, size_t at)
{
	struct sq	*sq = SQ(db);
	struct sqt	*q;

	if (t->be == NULL && sq_table_prepare(db, t) == -1)
		return -1;
	q = t->be;
	if (!q->listed) {
		if (sq->ndirty == sq->dirtycap) {
			sq->dirtycap = sq->dirtycap ? 2 * sq->dirtycap : 8;
			sq->dirty = xreallocarray(sq->dirty,
			    (size_t)sq->dirtycap, sizeof(*sq->dirty));
		}
		sq->dirty[sq->ndirty++] = t;
		q->listed = 1;
	}
	q->pend[q->npend] = at;
	if (++q->npend == q->batch)
		return queue_flush(db, t);
	return 0;
}

static int
sq_insert(struct db *db, struct table *t, const struct row *r)
{
	struct sq	*sq = SQ(db);
	struct jentry	 e;

	/* the path of every row, as in sq_write(), without a struct jentry */
	if (sq->w != NULL && !sq->failing && !sq->gone) {
		journal_row_add(&sq->j, t, r);
		pipe_row(db);
		return 0;
	}
	memset(&e, 0, sizeof(e));
	e.kind = J_ROW;
	e.t = t;
	e.row = *r;
	return sq_write(db, &e);
}

/*
 * Make one recorded write, journaled at offset at.  Rows wait in their
 * table's queue; anything else first writes the queues, so that rows keep
 * their order (the server's own metadata rows among the clients', for
 * one).
 */
static int
sq_apply(struct db *db, const struct jentry *e, size_t at)
{
	if (e->kind != J_ROW && flush_all(db) == -1)
		return -1;
	switch (e->kind) {
	case J_EXEC:
		return sq_exec(db, e->a);
	case J_CREATE:
		return x_create(db, e->t);
	case J_META:
		return x_meta(db, e->a, e->b);
	case J_SENDER:
		return x_sender(db, e->a, e->id);
	case J_ROW:
		return x_insert(db, e->t, at);
	}
	return -1;
}

/* Start-up check, run as the target user: is the directory usable? */
static int
sqlite_probe(const struct child_conf *conf)
{
	struct stat	 st;

	if (stat(conf->datadir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		log_error("data directory %s: %s", conf->datadir,
		    errno ? strerror(errno) : "not a directory");
		return -1;
	}
	if (access(conf->datadir, R_OK | W_OK | X_OK) == -1) {
		log_error("data directory %s is not writable by uid %d: %s",
		    conf->datadir, (int)getuid(), strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * One data directory, one server: two would each number the senders and
 * record the tables of the same files, giving two senders one id and a
 * table the other's schema.  The lock is an flock(2) on LOCK_FILE in the
 * directory (experiment names never start with '.'), taken here as the
 * target user, who may write the directory (root, under the shipped
 * unit, may not), and held by the master until it exits; the file says
 * the master's pid, for the next server's refusal.  Returns the locked
 * descriptor, or -1 (logged).
 */
static int
sqlite_lock(const struct child_conf *conf)
{
	char	*path, pid[24];
	ssize_t	 n;
	int	 fd;

	xasprintf(&path, "%s/%s", conf->datadir, LOCK_FILE);
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0644)) == -1) {
		log_error("%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK) {
			n = pread(fd, pid, sizeof(pid) - 1, 0);
			pid[n > 0 ? n : 0] = '\0';
			pid[strspn(pid, "0123456789")] = '\0';
			log_error("data directory %s is in use by another "
			    "oml2-server (pid %s, in %s): stop it, or give this "
			    "one another --data-dir", conf->datadir,
			    *pid != '\0' ? pid : "unknown", LOCK_FILE);
		} else
			log_error("%s: flock: %s", path, strerror(errno));
		close(fd);
		free(path);
		return -1;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getppid());
	if (ftruncate(fd, 0) == -1 ||
	    pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
		log_warn("%s", path);	/* the lock holds all the same */
	free(path);
	return fd;
}

static int
sq_probe(const struct child_conf *conf, int *lock)
{
	if (lock != NULL)
		*lock = -1;
	if (sqlite_probe(conf) == -1 ||
	    (lock != NULL && (*lock = sqlite_lock(conf)) == -1))
		return -1;
	return 0;
}

/* Declared column types (§8.3), as the original's; keep them byte-identical. */
static const char *const sq_types[OML_TYPE_MAX] = {
	[OML_INT32] = "INTEGER",	[OML_UINT32] = "UNSIGNED INTEGER",
	[OML_INT64] = "BIGINT",		[OML_UINT64] = "UNSIGNED BIGINT",
	[OML_DOUBLE] = "REAL",		[OML_STRING] = "TEXT",
	[OML_BLOB] = "BLOB",		[OML_GUID] = "UNSIGNED BIGINT",
	[OML_BOOL] = "INTEGER",		[OML_VINT32] = "TEXT",
	[OML_VUINT32] = "TEXT",		[OML_VINT64] = "TEXT",
	[OML_VUINT64] = "TEXT",		[OML_VDOUBLE] = "TEXT",
	[OML_VBOOL] = "TEXT",
};

const struct backend backend_sqlite = {
	.name = "sqlite",
	.files = 1,
	.nocase = 1,
	.key_type = "INTEGER PRIMARY KEY",
	.types = sq_types,
	.probe = sq_probe,
	.open = sq_open,
	.close = sq_close,
	.commit = sq_commit,
	.tables = sq_tables,
	.meta_load = meta_load,
	.meta_set = sq_meta_set,
	.sender = sq_sender,
	.exec = sq_exec_write,
	.table_create = sq_table_create,
	.table_free = sq_table_free,
	.insert = sq_insert,
	.lock = NULL,
	.stalled = sq_stalled,
	.stall_cause = sq_stall_cause,
	.query_int = sq_query_int,
	.settle = sq_settle,
};
