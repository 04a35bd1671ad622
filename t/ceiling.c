/*
 * t/ceiling -- the ceiling of `make bench`: the same rows as t/baseline
 * and t/omlsend (n r, x r + 0.25, s "row-r", timestamp r / 1000, sender
 * 1, seq r) inserted into SQLite as fast as SQLite can take them at the
 * durability the server promises: WAL, synchronous=NORMAL, rows visible
 * to a reader in another process at each commit, the WAL kept bounded.
 * The server decodes rows from a socket; this only binds them, so it is
 * what no server built on SQLite can beat on this machine.
 *
 *   ceiling insert DB ROWS [-p PAGE] [-k K] [-t TXN] [-x] [-s] [-b BLOB]
 *	A new database DB with the server's table; ROWS rows in
 *	transactions of TXN rows (10,000), K rows per INSERT statement (64),
 *	PAGE-byte pages (65536).  -x: exclusive locking (the writer then
 *	leaves WAL mode at the end, so that the reader can get in: that is
 *	timed too).  -s: SQLite configured single-threaded, checkpoints
 *	made by SQLite in the writer (wal_autocheckpoint); without it,
 *	SQLite is multi-threaded and a thread of its own copies the WAL
 *	back whenever 16 MiB have gathered (as the server does), waiting
 *	for it only past 256 MiB.  Memory statistics are off either way.
 *	-b BLOB: a fourth column "b" of BLOB-byte blobs.  After the last
 *	commit a forked reader (its own process, its own connection) counts
 *	the rows; the clock stops when it has seen them all.  Prints
 *	"ROWS SECONDS ROWS/S MAXRSS_KB".
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CKPT_SOFT	(16 << 20)	/* WAL bytes that start the thread */
#define CKPT_HARD	(256 << 20)	/* ... and that make the writer wait */
#define KMAX		256

static struct {
	long		 rows;
	int		 page;
	int		 k;
	long		 txn;
	int		 excl;
	int		 single;
	int		 blob;
} opt = { 0, 65536, 64, 10000, 0, 0, 0 };

static struct {
	pthread_t	 thread;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	sqlite3		*h;
	int		 want, busy, stop;
	int		 soft, hard;
} ck;

static void
usage(void)
{
	fprintf(stderr, "usage: ceiling insert DB ROWS [-p PAGE] [-k K] "
	    "[-t TXN] [-x] [-s] [-b BLOB]\n");
	exit(2);
}

static double
clock_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
count_arg(const char *s, long min, long max)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		usage();
	return v;
}

static void
ok(sqlite3 *h, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "ceiling: %s: %s\n", what,
		    h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
		exit(1);
	}
}

static void
exec(sqlite3 *h, const char *sql)
{
	ok(h, sqlite3_exec(h, sql, NULL, NULL, NULL), sql);
}

static int
row_string(char *s, long r)
{
	char	 tmp[24];
	int	 n = 0, len = 4;

	memcpy(s, "row-", 4);
	do {
		tmp[n++] = (char)('0' + r % 10);
		r /= 10;
	} while (r != 0);
	while (n > 0)
		s[len++] = tmp[--n];
	s[len] = '\0';
	return len;
}

static void *
ckpt_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ck.mu);
	for (;;) {
		while (!ck.want && !ck.stop)
			pthread_cond_wait(&ck.cv, &ck.mu);
		if (ck.stop)
			break;
		ck.want = 0;
		ck.busy = 1;
		pthread_mutex_unlock(&ck.mu);
		sqlite3_wal_checkpoint_v2(ck.h, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		pthread_mutex_lock(&ck.mu);
		ck.busy = 0;
		pthread_cond_broadcast(&ck.cv);
	}
	pthread_mutex_unlock(&ck.mu);
	return NULL;
}

static int
wal_hook(void *arg, sqlite3 *h, const char *name, int frames)
{
	(void)arg;
	pthread_mutex_lock(&ck.mu);
	if (frames >= ck.hard) {
		while (ck.busy)
			pthread_cond_wait(&ck.cv, &ck.mu);
		pthread_mutex_unlock(&ck.mu);
		sqlite3_wal_checkpoint_v2(h, name, SQLITE_CHECKPOINT_PASSIVE,
		    NULL, NULL);
		return SQLITE_OK;
	}
	if (frames >= ck.soft) {
		ck.want = 1;
		pthread_cond_signal(&ck.cv);
	}
	pthread_mutex_unlock(&ck.mu);
	return SQLITE_OK;
}

static void
ckpt_start(const char *path, sqlite3 *w)
{
	ck.soft = CKPT_SOFT / opt.page;
	ck.hard = CKPT_HARD / opt.page;
	ok(NULL, sqlite3_open_v2(path, &ck.h, SQLITE_OPEN_READWRITE, NULL),
	    path);
	sqlite3_busy_timeout(ck.h, 5000);
	pthread_mutex_init(&ck.mu, NULL);
	pthread_cond_init(&ck.cv, NULL);
	if (pthread_create(&ck.thread, NULL, ckpt_main, NULL) != 0) {
		fprintf(stderr, "ceiling: no thread\n");
		exit(1);
	}
	sqlite3_wal_hook(w, wal_hook, NULL);
}

static void
ckpt_stop(sqlite3 *w)
{
	sqlite3_wal_hook(w, NULL, NULL);
	pthread_mutex_lock(&ck.mu);
	ck.stop = 1;
	pthread_cond_signal(&ck.cv);
	pthread_mutex_unlock(&ck.mu);
	pthread_join(ck.thread, NULL);
	sqlite3_close(ck.h);
}

static sqlite3_stmt *
prepare_k(sqlite3 *h, int k)
{
	sqlite3_stmt	*st;
	char		*sql, *p;
	const char	*tuple = opt.blob ? "(?,?,?,?,?,?,?,?)" : "(?,?,?,?,?,?,?)";
	int		 i;

	sql = malloc(256 + (size_t)k * 20);
	if (sql == NULL)
		exit(1);
	p = sql + sprintf(sql, "INSERT INTO gen (oml_sender_id, oml_seq, "
	    "oml_ts_client, oml_ts_server, \"n\", \"x\", \"s\"%s) VALUES ",
	    opt.blob ? ", \"b\"" : "");
	for (i = 0; i < k; i++)
		p += sprintf(p, "%s%s", i ? "," : "", tuple);
	ok(h, sqlite3_prepare_v3(h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
	    NULL), "prepare");
	free(sql);
	return st;
}

/* Bind rows [r, r + k) and run the statement. */
static void
insert_rows(sqlite3 *h, sqlite3_stmt *st, long r, int k, double now,
    const char *blob)
{
	static char	 s[KMAX][24];	/* bound as they are: no copies */
	int		 i, col = 1, len;

	for (i = 0; i < k; i++, r++) {
		len = row_string(s[i], r);
		sqlite3_bind_int(st, col++, 1);
		sqlite3_bind_int(st, col++, (int)r);
		sqlite3_bind_double(st, col++, (double)r / 1000);
		sqlite3_bind_double(st, col++, now);
		sqlite3_bind_int(st, col++, (int)r);
		sqlite3_bind_double(st, col++, (double)r + 0.25);
		sqlite3_bind_text(st, col++, s[i], len, SQLITE_STATIC);
		if (opt.blob)
			sqlite3_bind_blob(st, col++, blob, opt.blob,
			    SQLITE_STATIC);
	}
	ok(h, sqlite3_step(st), "insert");
	sqlite3_reset(st);
}

/* A reader in its own process: returns once it has counted every row. */
static void
reader(const char *path)
{
	sqlite3		*h;
	sqlite3_stmt	*st;
	pid_t		 pid;
	long		 n = -1;
	int		 status;

	if ((pid = fork()) == -1) {
		perror("ceiling: fork");
		exit(1);
	}
	if (pid == 0) {
		while (n != opt.rows) {
			ok(NULL, sqlite3_open_v2(path, &h,
			    SQLITE_OPEN_READONLY, NULL), path);
			sqlite3_busy_timeout(h, 10000);
			ok(h, sqlite3_prepare_v2(h, "SELECT count(*) FROM gen",
			    -1, &st, NULL), "count");
			if (sqlite3_step(st) == SQLITE_ROW)
				n = (long)sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
			sqlite3_close(h);
			if (n != opt.rows)
				usleep(1000);
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) == -1 || status != 0) {
		fprintf(stderr, "ceiling: the reader failed\n");
		exit(1);
	}
}

static void
create(sqlite3 *h)
{
	char	 sql[512];

	snprintf(sql, sizeof(sql), "PRAGMA page_size=%d", opt.page);
	exec(h, sql);
	if (opt.excl)
		exec(h, "PRAGMA locking_mode=EXCLUSIVE");
	exec(h, "PRAGMA journal_mode=WAL");
	exec(h, "PRAGMA synchronous=NORMAL");
	snprintf(sql, sizeof(sql), "CREATE TABLE gen (oml_tuple_id INTEGER "
	    "PRIMARY KEY, oml_sender_id INTEGER, oml_seq INTEGER, "
	    "oml_ts_client REAL, oml_ts_server REAL, \"n\" INTEGER, "
	    "\"x\" REAL, \"s\" TEXT%s)", opt.blob ? ", \"b\" BLOB" : "");
	exec(h, sql);
}

static int
do_insert(const char *path)
{
	struct rusage	 ru;
	sqlite3		*h;
	sqlite3_stmt	*st, *one;
	char		*blob = NULL;
	double		 t0, t1, now;
	long		 r, end;

	sqlite3_config(opt.single ? SQLITE_CONFIG_SINGLETHREAD :
	    SQLITE_CONFIG_MULTITHREAD);
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	if (opt.blob && (blob = calloc(1, (size_t)opt.blob)) == NULL)
		exit(1);
	unlink(path);
	t0 = clock_s();
	ok(NULL, sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL), path);
	create(h);
	if (!opt.single && !opt.excl)
		ckpt_start(path, h);
	st = prepare_k(h, opt.k);
	one = prepare_k(h, 1);
	for (r = 1; r <= opt.rows; r = end) {
		end = r + opt.txn > opt.rows + 1 ? opt.rows + 1 : r + opt.txn;
		exec(h, "BEGIN");
		now = clock_s() - t0;
		for (; r + opt.k <= end; r += opt.k)
			insert_rows(h, st, r, opt.k, now, blob);
		for (; r < end; r++)
			insert_rows(h, one, r, 1, now, blob);
		exec(h, "COMMIT");
	}
	sqlite3_finalize(st);
	sqlite3_finalize(one);
	if (opt.excl) {		/* the only way to let a reader in */
		exec(h, "PRAGMA journal_mode=DELETE");
		exec(h, "PRAGMA locking_mode=NORMAL");
		exec(h, "SELECT count(*) FROM sqlite_master");
	}
	reader(path);
	t1 = clock_s();
	if (!opt.single && !opt.excl)
		ckpt_stop(h);
	sqlite3_close(h);
	free(blob);
	getrusage(RUSAGE_SELF, &ru);
	printf("%ld %.4f %.0f %ld\n", opt.rows, t1 - t0,
	    (double)opt.rows / (t1 - t0), ru.ru_maxrss);
	return 0;
}

int
main(int argc, char **argv)
{
	const char	*path;
	int		 ch;

	if (argc < 4 || strcmp(argv[1], "insert") != 0)
		usage();
	path = argv[2];
	opt.rows = count_arg(argv[3], 1, 2000000000L);
	optind = 4;
	while ((ch = getopt(argc, argv, "p:k:t:xsb:")) != -1) {
		switch (ch) {
		case 'p': opt.page = (int)count_arg(optarg, 512, 65536); break;
		case 'k': opt.k = (int)count_arg(optarg, 1, KMAX); break;
		case 't': opt.txn = count_arg(optarg, 1, 100000000L); break;
		case 'x': opt.excl = 1; break;
		case 's': opt.single = 1; break;
		case 'b': opt.blob = (int)count_arg(optarg, 1, 1 << 20); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	return do_insert(path);
}
