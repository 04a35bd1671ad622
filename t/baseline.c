/*
 * t/baseline -- the yardstick and the stopwatch of `make bench`.
 *
 *   baseline insert DB ROWS
 *	Insert the rows omlsend generates (n r, x r + 0.25, s "row-r",
 *	timestamp r / 1000, sender 1, seq r) into table gen of a new SQLite
 *	database, laid out as oml2-server lays it out, the plain way: one
 *	prepared statement, 10,000-row transactions, WAL, synchronous=NORMAL,
 *	no mutexes (one thread, as the server's children).  Prints "ROWS SECONDS ROWS/S MAXRSS_KB", timed from the first BEGIN
 *	to the last COMMIT.
 *   baseline tsv ROWS
 *	The same rows as tab-separated lines on stdout, for psql's \copy.
 *   baseline wait TABLE ROWS TIMEOUT DB...
 *	Poll each SQLite file DB, as a reader in its own process, until
 *	TABLE holds ROWS committed rows; print the wall-clock time (seconds
 *	since the epoch) at which the last one got there.  Exit 1 on timeout.
 *   baseline pgwait CONNINFO TABLE ROWS TIMEOUT
 *	The same against a PostgreSQL database.
 *   baseline latency DB TABLE ROWS TIMEOUT
 *	Watch TABLE of the SQLite file DB, polling every millisecond, until
 *	it holds ROWS rows; for each row, the time from its arrival at the
 *	server (the experiment's start_time plus the row's oml_ts_server) to
 *	this reader seeing it.  Prints "P50 P99 MAX" in seconds.
 *   baseline original DB ROWS BLOB [PAGE]
 *	The file the original server would have made of ROWS rows (n r, b a
 *	BLOB-byte blob) of schema "blobs n:int32 b:blob": its tables, its
 *	DDL, SQLite's default rollback journal and page size (or PAGE).
 *	Prints "BYTES_PER_ROW PAGE_SIZE".
 *
 * The waiter checks max(oml_tuple_id) first, which is cheap however big the
 * table is (the id is the next integer for every row a single writer
 * inserts), then confirms with count(*).
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH		10000
#define POLL_US		2000

static const char ddl[] =
    "CREATE TABLE gen (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id "
    "INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "
    "\"n\" INTEGER, \"x\" REAL, \"s\" TEXT)";
static const char ins[] =
    "INSERT INTO gen (oml_sender_id, oml_seq, oml_ts_client, oml_ts_server, "
    "\"n\", \"x\", \"s\") VALUES (?, ?, ?, ?, ?, ?, ?)";

static void
usage(void)
{
	fprintf(stderr, "usage: baseline insert DB ROWS | tsv ROWS |\n"
	    "       wait TABLE ROWS TIMEOUT DB... | "
	    "pgwait CONNINFO TABLE ROWS TIMEOUT |\n"
	    "       latency DB TABLE ROWS TIMEOUT | "
	    "original DB ROWS BLOB [PAGE]\n");
	exit(2);
}

static double
clock_s(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
count_arg(const char *s)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		usage();
	return v;
}

static void
sq_ok(sqlite3 *h, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		fprintf(stderr, "baseline: %s: %s\n", what, sqlite3_errmsg(h));
		exit(1);
	}
}

/* "row-R", without the cost of printf: the baseline is a fast program. */
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

static int
do_insert(const char *path, long rows)
{
	struct rusage	 ru;
	sqlite3		*h;
	sqlite3_stmt	*st;
	char		 s[32];
	double		 t0, t1, now;
	long		 r;
	int		 len;

	unlink(path);
	sq_ok(NULL, sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL), path);
	sq_ok(h, sqlite3_exec(h, "PRAGMA journal_mode=WAL", 0, 0, 0), "wal");
	sq_ok(h, sqlite3_exec(h, "PRAGMA synchronous=NORMAL", 0, 0, 0), "sync");
	sq_ok(h, sqlite3_exec(h, ddl, 0, 0, 0), "create");
	sq_ok(h, sqlite3_prepare_v2(h, ins, -1, &st, NULL), "prepare");
	t0 = clock_s(CLOCK_MONOTONIC);
	now = 0;
	for (r = 1; r <= rows; r++) {
		if ((r - 1) % BATCH == 0) {
			sq_ok(h, sqlite3_exec(h, "BEGIN", 0, 0, 0), "begin");
			now = clock_s(CLOCK_MONOTONIC) - t0;
		}
		len = row_string(s, r);
		sqlite3_bind_int(st, 1, 1);
		sqlite3_bind_int(st, 2, (int)r);
		sqlite3_bind_double(st, 3, (double)r / 1000);
		sqlite3_bind_double(st, 4, now);
		sqlite3_bind_int(st, 5, (int)r);
		sqlite3_bind_double(st, 6, (double)r + 0.25);
		sqlite3_bind_text(st, 7, s, len, SQLITE_STATIC);
		sq_ok(h, sqlite3_step(st), "insert");
		sqlite3_reset(st);
		if (r % BATCH == 0 || r == rows)
			sq_ok(h, sqlite3_exec(h, "COMMIT", 0, 0, 0), "commit");
	}
	t1 = clock_s(CLOCK_MONOTONIC);
	sqlite3_finalize(st);
	sqlite3_close(h);
	getrusage(RUSAGE_SELF, &ru);
	printf("%ld %.4f %.0f %ld\n", rows, t1 - t0,
	    t1 > t0 ? (double)rows / (t1 - t0) : 0.0, ru.ru_maxrss);
	return 0;
}

static int
do_tsv(long rows)
{
	long	 r;

	for (r = 1; r <= rows; r++)
		printf("1\t%ld\t%.17g\t0\t%ld\t%.17g\trow-%ld\n", r,
		    (double)r / 1000, r, (double)r + 0.25, r);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* One look at an SQLite file: the committed rows of table, -1 if none yet. */
static long
sq_rows(const char *path, const char *table, int exact)
{
	sqlite3		*h;
	sqlite3_stmt	*st;
	char		 sql[256];
	long		 n = -1;

	if (access(path, F_OK) == -1)
		return -1;
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return -1;
	}
	sqlite3_busy_timeout(h, 1000);
	snprintf(sql, sizeof(sql), exact ? "SELECT count(*) FROM \"%s\"" :
	    "SELECT max(oml_tuple_id) FROM \"%s\"", table);
	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_type(st, 0) != SQLITE_NULL)
			n = (long)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return n;
}

static int
do_wait(const char *table, long rows, double timeout, char **dbs, int ndb)
{
	double	 limit = clock_s(CLOCK_MONOTONIC) + timeout, at = 0;
	int	 i = 0;

	while (i < ndb) {
		if (sq_rows(dbs[i], table, 0) >= rows &&
		    sq_rows(dbs[i], table, 1) == rows) {
			at = clock_s(CLOCK_REALTIME);
			i++;
			continue;
		}
		if (clock_s(CLOCK_MONOTONIC) > limit) {
			fprintf(stderr, "baseline: %s: %ld rows of %s after "
			    "%.0f s, wanted %ld\n", dbs[i],
			    sq_rows(dbs[i], table, 1), table, timeout, rows);
			return 1;
		}
		usleep(POLL_US);
	}
	printf("%.6f\n", at);
	return 0;
}

static long
pg_rows(PGconn *c, const char *sql)
{
	PGresult	*res;
	long		 n = -1;

	res = PQexec(c, sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

static int
do_pgwait(const char *conninfo, const char *table, long rows, double timeout)
{
	double	 limit = clock_s(CLOCK_MONOTONIC) + timeout;
	PGconn	*c = NULL;
	char	 qmax[256], qcount[256];

	snprintf(qmax, sizeof(qmax), "SELECT max(oml_tuple_id) FROM \"%s\"",
	    table);
	snprintf(qcount, sizeof(qcount), "SELECT count(*) FROM \"%s\"", table);
	for (;;) {
		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = PQconnectdb(conninfo);
		}
		if (PQstatus(c) == CONNECTION_OK && pg_rows(c, qmax) >= rows &&
		    pg_rows(c, qcount) == rows)
			break;
		if (clock_s(CLOCK_MONOTONIC) > limit) {
			fprintf(stderr, "baseline: %s: %s has %ld rows after "
			    "%.0f s, wanted %ld\n", conninfo, table,
			    PQstatus(c) == CONNECTION_OK ? pg_rows(c, qcount) :
			    -1L, timeout, rows);
			PQfinish(c);
			return 1;
		}
		usleep(POLL_US);
	}
	printf("%.6f\n", clock_s(CLOCK_REALTIME));
	PQfinish(c);
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The experiment's start time, once the server has written it. */
static double
start_time(sqlite3 *h)
{
	sqlite3_stmt	*st;
	double		 s = -1;

	if (sqlite3_prepare_v2(h, "SELECT value FROM _experiment_metadata "
	    "WHERE key='start_time'", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		s = sqlite3_column_double(st, 0);
	sqlite3_finalize(st);
	return s;
}

static int
do_latency(const char *path, const char *table, long rows, double timeout)
{
	double		 limit = clock_s(CLOCK_MONOTONIC) + timeout, s = -1, now;
	double		*lat;
	sqlite3		*h = NULL;
	sqlite3_stmt	*st = NULL;
	char		 sql[256];
	long		 n = 0, last = 0;

	if ((lat = calloc((size_t)rows + 1, sizeof(*lat))) == NULL)
		return 1;
	snprintf(sql, sizeof(sql), "SELECT oml_tuple_id, oml_ts_server FROM "
	    "\"%s\" WHERE oml_tuple_id > ? ORDER BY oml_tuple_id", table);
	while (n < rows) {
		if (clock_s(CLOCK_MONOTONIC) > limit) {
			fprintf(stderr, "baseline: %s: %ld rows of %s after "
			    "%.0f s, wanted %ld\n", path, n, table, timeout,
			    rows);
			return 1;
		}
		if (h == NULL && access(path, F_OK) == 0 &&
		    sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) !=
		    SQLITE_OK) {
			sqlite3_close(h);
			h = NULL;
		}
		if (h != NULL && s < 0)
			s = start_time(h);
		if (s >= 0 && st == NULL &&
		    sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
			sqlite3_finalize(st);
			st = NULL;
		}
		if (st != NULL) {
			sqlite3_bind_int64(st, 1, last);
			while (sqlite3_step(st) == SQLITE_ROW && n < rows) {
				now = clock_s(CLOCK_REALTIME);
				last = (long)sqlite3_column_int64(st, 0);
				lat[n++] = now - s -
				    sqlite3_column_double(st, 1);
			}
			sqlite3_reset(st);
		}
		usleep(1000);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	printf("%.4f %.4f %.4f\n", lat[n / 2], lat[(n * 99) / 100],
	    lat[n - 1]);
	free(lat);
	return 0;
}

/* The original's DDL (PROTOCOL.md §8.2, §8.3) and its one-row INSERTs. */
static int
do_original(const char *path, long rows, long blob, long page)
{
	struct stat	 sb;
	sqlite3		*h;
	sqlite3_stmt	*st;
	char		 sql[64], *b;
	long		 r;
	int		 ps = 0;

	if ((b = malloc((size_t)blob)) == NULL)
		return 1;
	memset(b, 'z', (size_t)blob);
	unlink(path);
	sq_ok(NULL, sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL), path);
	if (page > 0) {
		snprintf(sql, sizeof(sql), "PRAGMA page_size=%ld", page);
		sq_ok(h, sqlite3_exec(h, sql, 0, 0, 0), "page size");
	}
	sq_ok(h, sqlite3_exec(h, "CREATE TABLE _senders (name TEXT PRIMARY "
	    "KEY, id INTEGER UNIQUE);CREATE TABLE \"_experiment_metadata\" "
	    "(oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id INTEGER, "
	    "oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "
	    "\"subject\" TEXT, \"key\" TEXT, \"value\" TEXT);CREATE TABLE "
	    "\"blobs\" (oml_tuple_id INTEGER PRIMARY KEY, oml_sender_id "
	    "INTEGER, oml_seq INTEGER, oml_ts_client REAL, oml_ts_server REAL, "
	    "\"n\" INTEGER, \"b\" BLOB)", 0, 0, 0), "create");
	sq_ok(h, sqlite3_prepare_v2(h, "INSERT INTO \"blobs\" "
	    "(\"oml_sender_id\", \"oml_seq\", \"oml_ts_client\", "
	    "\"oml_ts_server\", \"n\", \"b\") VALUES (?, ?, ?, ?, ?, ?);", -1,
	    &st, NULL), "prepare");
	sq_ok(h, sqlite3_exec(h, "BEGIN", 0, 0, 0), "begin");
	for (r = 1; r <= rows; r++) {
		b[0] = 'b';
		b[1] = (char)('0' + r % 1000 / 100);
		sqlite3_bind_int(st, 1, 1);
		sqlite3_bind_int(st, 2, (int)r);
		sqlite3_bind_double(st, 3, (double)r / 1000);
		sqlite3_bind_double(st, 4, (double)r / 1000 + 0.001);
		sqlite3_bind_int(st, 5, (int)r);
		sqlite3_bind_blob(st, 6, b, (int)blob, SQLITE_STATIC);
		sq_ok(h, sqlite3_step(st), "insert");
		sqlite3_reset(st);
	}
	sq_ok(h, sqlite3_exec(h, "COMMIT", 0, 0, 0), "commit");
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(h, "PRAGMA page_size", -1, &st, NULL) ==
	    SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		ps = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	if (stat(path, &sb) == -1)
		return 1;
	printf("%.1f %d\n", (double)sb.st_size / (double)rows, ps);
	free(b);
	unlink(path);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "insert") == 0)
		return do_insert(argv[2], count_arg(argv[3]));
	if (argc == 3 && strcmp(argv[1], "tsv") == 0)
		return do_tsv(count_arg(argv[2]));
	if (argc >= 6 && strcmp(argv[1], "wait") == 0)
		return do_wait(argv[2], count_arg(argv[3]),
		    (double)count_arg(argv[4]), argv + 5, argc - 5);
	if (argc == 6 && strcmp(argv[1], "pgwait") == 0)
		return do_pgwait(argv[2], argv[3], count_arg(argv[4]),
		    (double)count_arg(argv[5]));
	if (argc == 6 && strcmp(argv[1], "latency") == 0)
		return do_latency(argv[2], argv[3], count_arg(argv[4]),
		    (double)count_arg(argv[5]));
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "original") == 0)
		return do_original(argv[2], count_arg(argv[3]),
		    count_arg(argv[4]), argc == 6 ? count_arg(argv[5]) : 0);
	usage();
}
