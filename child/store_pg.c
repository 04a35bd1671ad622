/*
 * The PostgreSQL backend (PROTOCOL.md §8, --backend postgresql): one
 * database per experiment, created on first use.
 *
 * Rows are not sent one by one.  Each table keeps the rows of the current
 * batch in memory, already encoded as binary COPY tuples, and a commit
 * sends every table's batch with COPY in one transaction.  The rows stay in
 * memory until that COMMIT succeeds, so:
 *  - a row the database refuses (§8.9, §12 #23) costs only itself: each
 *    table's COPY runs under a savepoint, and a failed COPY is retried on
 *    halves of the batch until the bad row is alone, logged and dropped;
 *  - a lost connection (PostgreSQL restarting) costs nothing: the server
 *    reconnects with a backoff and sends the batch again.  While the
 *    database is away the child stops reading from its clients once the
 *    batch passes BACKLOG_MAX bytes (see db_stalled()).
 *
 * So that PostgreSQL works while the next rows are decoded rather than
 * after, the first table of a batch streams: once STREAM_CHUNK bytes of
 * its rows are waiting, the transaction and its COPY start, and rows go
 * out as they come; the commit sends the rest and ends the COPY.  The
 * rows stay in the batch all the same, and a streamed COPY that fails is
 * rolled back and sent again the usual way, bisected if need be.  Any
 * other statement first commits the batch.
 *
 * Row ids are the server's, not PostgreSQL's: each row is sent with its
 * oml_tuple_id, taken from a block of the table's sequence that the server
 * reserves ahead (ids_reserve()), so that COPY does not call nextval() for
 * every row, which costs PostgreSQL a fifth of its time.  Ids still
 * increase in the order rows arrive, blocks are reserved under an advisory
 * lock that every server of this kind takes, and a block's unused end is
 * given back when the database closes (ids_return()).  What is lost is
 * what a SERIAL loses anyway: ids of rows that never committed.
 *
 * Several servers may write one experiment at once (behind a load
 * balancer).  Database creation is serialised by an advisory lock in the
 * maintenance database (and a duplicate_database error is taken as
 * success); schema work, metadata and sender ids run in short transactions
 * holding an advisory lock of the experiment database, so every server
 * sees the others' tables and senders (db.c re-reads them under the lock).
 *
 * Passwords are never logged: connection parameters are passed to libpq as
 * keyword arrays, never as one string, and only host, port and user are
 * ever named in a log line.
 */
#include <arpa/inet.h>

#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child/pqlib.h"

#include "child/child.h"

#define MAINT_DB	"postgres"
/* Advisory locks: class 0x4f4d4c32 ("OML2"), then which. */
#define LOCK_SCHEMA	"pg_advisory_xact_lock(1330466866, 1)"	/* per db */
#define LOCK_CREATE	"pg_advisory_lock(1330466866, 2)"	/* maint. db */
#define UNLOCK_CREATE	"pg_advisory_unlock(1330466866, 2)"
#define LOCK_IDS	"pg_advisory_lock(1330466866, 3)"	/* per db */
#define UNLOCK_IDS	"pg_advisory_unlock(1330466866, 3)"
#define BACKLOG_MAX	(64u * 1024 * 1024)	/* then stop reading clients */
#define BACKOFF_MIN_MS	200
#define BACKOFF_MAX_MS	4000
#define CLOSE_WAIT_MS	15000	/* closing: how long to wait for the server */
#define PG_NAMELEN	63	/* longer identifiers would be truncated */
#define BAD_UTF8_LOG	10
#define COPY_SLICE	(1024 * 1024)	/* COPY data handed to libpq at once */
#define RETRY_LOG	30	/* failed reconnections: log one in this many */
#define INT4_MAX_ID	2147483647LL	/* the last id of a SERIAL */
#define STREAM_CHUNK	(256u * 1024)	/* rows sent at once while streaming */
#define IDS_MIN		4096		/* ids reserved at once, at least */
#define IDS_MAX		(1u << 20)	/* and at most, beyond what is needed */
/* Every tuple starts with its field count and its oml_tuple_id field. */
#define ID_AT		6		/* where the id's value is */
#define ID_FIELD	12		/* the id field's bytes */

/* The binary COPY stream's fixed parts. */
static const char copy_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
static const char copy_trailer[2] = { '\377', '\377' };

/*
 * A table's batch: encoded tuples and where each one ends, and how many
 * of them the database refused in the current attempt to commit them.
 * Its row ids: new tables have 64-bit ones, but a table an older server
 * made has a 32-bit SERIAL, appended to while ids last (ids_left()).
 * Tuples [0, idn) have their id written; the later ones wait for a block.
 * A table whose oml_tuple_id is not a BIGSERIAL (a 32-bit SERIAL, or a
 * column no OML server made) is sent without the id field, for
 * PostgreSQL to fill.
 */
enum pg_ids { IDS_UNKNOWN, IDS_64, IDS_32 };

struct pgtab {
	struct buf	 data;
	size_t		*ends;
	size_t		 n;
	size_t		 cap;
	size_t		 refused;
	size_t		 sent;		/* bytes of data streamed so far */
	size_t		 streamed;	/* and the tuples they hold */
	size_t		 stored;	/* tuples stored in the open transaction */
	char		*copy_sql;	/* with oml_tuple_id */
	char		*copy_noid_sql;	/* without */
	enum pg_ids	 ids;
	size_t		 room;		/* IDS_32: ids left in the sequence */
	int		 full;		/* IDS_32: none left */
	char		*seq;		/* the id's sequence; NULL: none known */
	int		 noid;		/* no sequence: PostgreSQL gives ids */
	int64_t		 id_next;	/* the reserved block, [next, end] */
	int64_t		 id_end;
	size_t		 idn;
	size_t		 last_n;	/* tuples in the last batch committed */
	int		 rekeyed;	/* this commit took new ids once */
	int		 refusing;	/* this batch, the sequence said no */
};

struct pg {
	PGconn		*c;
	int		 locked;	/* in a lock(1) transaction */
	int		 caught_up;	/* the metadata cache, in this one */
	int		 meta_dirty;	/* it wrote metadata */
	int		 utf8;		/* strings are checked before COPY */
	int		 down;		/* the connection was lost */
	uint64_t	 next_try;	/* monotonic ms */
	unsigned	 backoff;
	unsigned	 failures;
	size_t		 backlog;	/* bytes in every table's batch */
	size_t		 batch_rows;
	unsigned	 bad_utf8;
	struct table	*streaming;	/* its COPY is open, in the batch's txn */
};

#define PG(db)	((struct pg *)(db)->bh)

static struct pgtab	*pgtab(struct table *);

/* --- connecting ---------------------------------------------------- */

/* --pg-port is a number or a service name (§10.1); "" if neither. */
static void
resolve_port(const char *s, char out[24])
{
	struct servent	*se;
	unsigned long	 v;

	out[0] = '\0';
	if (parse_uint(s, 65535, &v) == 0 && v > 0) {
		snprintf(out, 24, "%lu", v);
		return;
	}
	if ((se = getservbyname(s, "tcp")) != NULL)
		snprintf(out, 24, "%u", (unsigned)ntohs((uint16_t)se->s_port));
	else if (strcmp(s, "postgresql") == 0)
		snprintf(out, 24, "5432");	/* no /etc/services entry */
}

/* A libpq message on one line, without its trailing newline. */
static const char *
pq_msg(const char *m, char *out, size_t len)
{
	size_t	 i;

	strlcpy(out, m != NULL && *m != '\0' ? m : "unknown error", len);
	for (i = 0; out[i] != '\0'; i++)
		if (out[i] == '\n' || out[i] == '\r' || out[i] == '\t')
			out[i] = ' ';
	while (i > 0 && out[i - 1] == ' ')
		out[--i] = '\0';
	return out;
}

static void
notice(void *arg, const char *msg)
{
	char	 m[256];

	(void)arg;
	log_debug("postgresql: %s", pq_msg(msg, m, sizeof(m)));
}

/*
 * Connect to database dbname as --pg-* say.  --pg-connect's parameters
 * come after --pg-host, --pg-port, --pg-user and --pg-pass and so override
 * them (as the original's conninfo did, §13); the database name always
 * comes last.  NULL on failure, logged at the given level.
 */
static PGconn *
pg_connect(const struct child_conf *conf, const char *dbname, int level)
{
	const char		*kw[64], *val[64];
	PQconninfoOption	*extra = NULL, *o;
	PGconn			*c;
	char			 port[24], *err = NULL, *passfile = NULL;
	char			 m[512];
	int			 n = 0;

	resolve_port(conf->pg_port, port);
	if (port[0] == '\0') {
		log_error("--pg-port %s: not a port number or a known service",
		    conf->pg_port);
		return NULL;
	}
	kw[n] = "host";			val[n++] = conf->pg_host;
	kw[n] = "port";			val[n++] = port;
	kw[n] = "user";			val[n++] = conf->pg_user;
	if (conf->pg_pass != NULL) {
		kw[n] = "password";	val[n++] = conf->pg_pass;
	}
	if (conf->ids.set && conf->ids.home != NULL &&
	    getenv("PGPASSFILE") == NULL) {
		/* the --user's ~/.pgpass, not that of $HOME (root's) */
		xasprintf(&passfile, "%s/.pgpass", conf->ids.home);
		kw[n] = "passfile";	val[n++] = passfile;
	}
	kw[n] = "connect_timeout";	val[n++] = "10";
	kw[n] = "application_name";	val[n++] = "oml2-server";
	if (conf->pg_connect != NULL && *conf->pg_connect != '\0') {
		if ((extra = PQconninfoParse(conf->pg_connect, &err)) == NULL) {
			/* its text may hold a password: not repeated here */
			log_error("--pg-connect: not a valid libpq connection "
			    "string");
			PQfreemem(err);
			free(passfile);
			return NULL;
		}
		for (o = extra; o->keyword != NULL && n < 60; o++)
			if (o->val != NULL && strcmp(o->keyword, "dbname") != 0) {
				kw[n] = o->keyword;
				val[n++] = o->val;
			}
	}
	kw[n] = "dbname";		val[n++] = dbname;
	kw[n] = NULL;			val[n] = NULL;
	c = PQconnectdbParams(kw, val, 0);
	if (extra != NULL)
		PQconninfoFree(extra);
	free(passfile);
	if (c == NULL) {
		log_error("postgresql: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		pq_msg(PQerrorMessage(c), m, sizeof(m));
		(level == LOG_LVL_ERROR ? log_error : level == LOG_LVL_WARN ?
		    log_warnx : log_debug)("postgresql at %s port %s as %s, "
		    "database %s: %s", conf->pg_host, port, conf->pg_user,
		    dbname, m);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, notice, NULL);
	return c;
}

/* --- statements ---------------------------------------------------- */

static void
conn_lost(struct db *db)
{
	struct pg	*pg = PG(db);

	if (!pg->down)
		log_warnx("database %s: connection to PostgreSQL lost; rows are "
		    "kept until it is back", db->name);
	pg->down = 1;
	PQfinish(pg->c);
	pg->c = NULL;
	pg->next_try = now_mono_ms();	/* one quick try first */
}

/* A failed statement: log it; notice a lost connection.  Returns -1. */
static int
failed(struct db *db, const char *what, PGresult *res)
{
	struct pg	*pg = PG(db);
	char		 m[512];

	pq_msg(res != NULL && *PQresultErrorMessage(res) != '\0' ?
	    PQresultErrorMessage(res) : PQerrorMessage(pg->c), m, sizeof(m));
	if (PQstatus(pg->c) != CONNECTION_OK)
		conn_lost(db);
	else
		log_warnx("database %s: %s: %s", db->name, what, m);
	return -1;
}

/* Run sql with text parameters; the result if it has status want. */
static PGresult *
run(struct db *db, const char *sql, int np, const char *const *pv,
    ExecStatusType want)
{
	struct pg	*pg = PG(db);
	PGresult	*res;

	if (pg->c == NULL)
		return NULL;
	res = PQexecParams(pg->c, sql, np, NULL, pv, NULL, NULL, 0);
	if (res != NULL && PQresultStatus(res) == want)
		return res;
	failed(db, sql, res);
	PQclear(res);
	return NULL;
}

static int
cmd(struct db *db, const char *sql)
{
	PGresult	*res = run(db, sql, 0, NULL, PGRES_COMMAND_OK);

	PQclear(res);
	return res == NULL ? -1 : 0;
}

/* The same for a SELECT whose rows are not wanted (a lock's). */
static int
sel(struct db *db, const char *sql)
{
	PGresult	*res = run(db, sql, 0, NULL, PGRES_TUPLES_OK);

	PQclear(res);
	return res == NULL ? -1 : 0;
}

/*
 * Make sure we are connected, reconnecting after a loss (with backoff).
 * Not between lock(1) and lock(0): the schema work done so far went with
 * the lost transaction, and what followed would run without the lock;
 * lock(0) reports the failure.
 */
static int
up(struct db *db)
{
	struct pg	*pg = PG(db);
	uint64_t	 now;

	if (pg->c != NULL)
		return 0;
	now = now_mono_ms();
	if (pg->locked || now < pg->next_try)
		return -1;
	/* while it is away: the first failure, then one in RETRY_LOG */
	if ((pg->c = pg_connect(db->conf, db->name, pg->failures %
	    RETRY_LOG == 0 ? LOG_LVL_WARN : LOG_LVL_DEBUG)) == NULL) {
		pg->failures++;
		pg->backoff = pg->backoff == 0 ? BACKOFF_MIN_MS :
		    pg->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
		    pg->backoff * 2;
		pg->next_try = now + pg->backoff;
		return -1;
	}
	if (pg->down)
		log_info("database %s: reconnected to PostgreSQL after %u "
		    "failed attempt%s; %zu rows waiting", db->name,
		    pg->failures, pg->failures == 1 ? "" : "s",
		    pg->batch_rows);
	pg->down = 0;
	pg->failures = 0;
	pg->backoff = 0;
	return 0;
}

/* --- opening ------------------------------------------------------- */

/*
 * Which databases may be an experiment's.  Not the maintenance database
 * nor the templates (an experiment in template1 would give every later
 * experiment its tables and start time), not any other template or
 * database closed to connections, and not any other database that is not
 * an experiment's: one this server created (it carries MARK as its
 * comment, from the moment it has its name), or one that has the tables
 * _senders and _experiment_metadata in its public schema (the original
 * server's, and this one's before it marked them).  Names compare as
 * PostgreSQL compares quoted identifiers, byte for byte: "Postgres" is
 * another database than postgres, and may be an experiment.
 */
#define MARK		"oml2-server experiment"
#define NEW_DB		"oml2-server: new database %s"	/* + the role's oid */

static const char *const reserved_db[] = { MAINT_DB, "template0",
	"template1" };

enum db_kind {
	DB_FAILED,	/* PostgreSQL said no (logged) */
	DB_REFUSED,	/* not an experiment's (logged) */
	DB_OURS,	/* created now, or marked */
	DB_UNMARKED,	/* exists, without the mark: look at its tables */
	DB_ABSENT,
};

static void
refuse(const char *name, const char *why)
{
	db_refuse("database %s refused as an experiment: %s", name, why);
}

/*
 * One statement on the maintenance connection: 0, -2 for a database of
 * that name that exists already, -1 for another failure (in err).
 */
static int
mexec(PGconn *c, char *sql, char *err, size_t errlen)
{
	PGresult	*res;
	const char	*st;
	int		 r = 0;

	res = PQexec(c, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		pq_msg(res != NULL ? PQresultErrorMessage(res) :
		    PQerrorMessage(c), err, errlen);
		st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		r = st != NULL && strcmp(st, "42P04") == 0 ? -2 : -1;
	}
	PQclear(res);
	return r;
}

/*
 * Create the database marked from the moment it has its name: under a
 * name no experiment can have (one per role, so that what a crash left is
 * ours to drop), then marked, then renamed.  Returns as mexec().
 */
static int
create_marked(PGconn *c, const char *name, char *err, size_t errlen)
{
	PGresult	*res;
	char		*tmp, *tid = NULL, *id = NULL, *sql, junk[8];
	int		 r = -1;

	res = PQexec(c, "SELECT oid FROM pg_catalog.pg_roles WHERE "
	    "rolname = current_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		pq_msg(PQresultErrorMessage(res), err, errlen);
		PQclear(res);
		return -1;
	}
	xasprintf(&tmp, NEW_DB, PQgetvalue(res, 0, 0));
	PQclear(res);
	if ((tid = PQescapeIdentifier(c, tmp, strlen(tmp))) == NULL ||
	    (id = PQescapeIdentifier(c, name, strlen(name))) == NULL) {
		pq_msg(PQerrorMessage(c), err, errlen);
		goto done;
	}
	xasprintf(&sql, "DROP DATABASE IF EXISTS %s", tid);
	if ((r = mexec(c, sql, err, errlen)) != 0)
		goto done;
	xasprintf(&sql, "CREATE DATABASE %s", tid);
	if ((r = mexec(c, sql, err, errlen)) != 0)
		goto done;
	xasprintf(&sql, "COMMENT ON DATABASE %s IS '" MARK "'", tid);
	if ((r = mexec(c, sql, err, errlen)) != 0)
		goto done;
	xasprintf(&sql, "ALTER DATABASE %s RENAME TO %s", tid, id);
	if ((r = mexec(c, sql, err, errlen)) != 0) {
		xasprintf(&sql, "DROP DATABASE IF EXISTS %s", tid);
		mexec(c, sql, junk, sizeof(junk));	/* err keeps the first */
	}
done:
	PQfreemem(tid);
	PQfreemem(id);
	free(tmp);
	return r;
}

/* What the maintenance database says of name. */
static enum db_kind
look_up(PGconn *c, const char *name, char *err, size_t errlen)
{
	PGresult	*res;
	const char	*pv[2] = { name, MARK };
	enum db_kind	 k;

	res = PQexecParams(c, "SELECT datistemplate, datallowconn, "
	    "shobj_description(oid, 'pg_database') IS NOT DISTINCT FROM $2 "
	    "FROM pg_catalog.pg_database WHERE datname = $1", 2, NULL, pv,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pq_msg(PQresultErrorMessage(res), err, errlen);
		k = DB_FAILED;
	} else if (PQntuples(res) == 0)
		k = DB_ABSENT;
	else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		refuse(name, "it is a template database");
		k = DB_REFUSED;
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		refuse(name, "it does not accept connections");
		k = DB_REFUSED;
	} else
		k = strcmp(PQgetvalue(res, 0, 2), "t") == 0 ? DB_OURS :
		    DB_UNMARKED;
	PQclear(res);
	return k;
}

/*
 * Create the experiment's database unless it exists, and say whether an
 * existing one may be taken.  Servers racing to create it queue on an
 * advisory lock; a database created meanwhile by one that takes no lock
 * is looked at as any existing one.
 */
static enum db_kind
ensure_database(const struct child_conf *conf, const char *name)
{
	PGconn		*c;
	PGresult	*res;
	enum db_kind	 k = DB_FAILED;
	char		 m[512];
	size_t		 i;
	int		 r;

	for (i = 0; i < nitems(reserved_db); i++)
		if (strcmp(name, reserved_db[i]) == 0) {
			refuse(name, "it is one of PostgreSQL's own databases");
			return DB_REFUSED;
		}
	if ((c = pg_connect(conf, MAINT_DB, LOG_LVL_ERROR)) == NULL)
		return DB_FAILED;
	strlcpy(m, "it vanished", sizeof(m));
	res = PQexec(c, "SELECT " LOCK_CREATE);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		k = look_up(c, name, m, sizeof(m));
	else
		pq_msg(PQresultErrorMessage(res), m, sizeof(m));
	PQclear(res);
	if (k == DB_ABSENT) {
		if ((r = create_marked(c, name, m, sizeof(m))) == 0) {
			log_info("database %s created in PostgreSQL", name);
			k = DB_OURS;
		} else
			k = r == -2 ? look_up(c, name, m, sizeof(m)) :
			    DB_FAILED;
	}
	if (k == DB_FAILED || k == DB_ABSENT) {
		log_error("postgresql: creating database %s: %s", name, m);
		k = DB_FAILED;
	}
	PQclear(PQexec(c, "SELECT " UNLOCK_CREATE));
	PQfinish(c);
	return k;
}

/* An existing database this server did not mark: the original's? */
static int
has_oml_tables(struct db *db)
{
	PGresult	*res;
	int		 ok;

	res = run(db, "SELECT count(*) FROM pg_catalog.pg_tables WHERE "
	    "schemaname = 'public' AND tablename IN ('_senders', "
	    "'_experiment_metadata')", 0, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	ok = strcmp(PQgetvalue(res, 0, 0), "2") == 0;
	PQclear(res);
	if (!ok)
		refuse(db->name, "it exists, was not created by oml2-server and "
		    "lacks the tables _senders and _experiment_metadata");
	return ok ? 0 : -1;
}

static int
pg_open(struct db *db)
{
	const struct child_conf	*conf = db->conf;
	struct pg		*pg;
	const char		*enc;
	char			 port[24];
	enum db_kind		 kind;

	if (pqlib_load() == -1)
		return -1;
	pg = xcalloc(1, sizeof(*pg));
	db->bh = pg;
	resolve_port(conf->pg_port, port);
	/* never a password (§9.2); an IPv6 address in brackets */
	xasprintf(&db->uri, "postgresql://%s@%s%s%s:%s/%s", conf->pg_user,
	    strchr(conf->pg_host, ':') ? "[" : "", conf->pg_host,
	    strchr(conf->pg_host, ':') ? "]" : "", port, db->name);
	kind = ensure_database(conf, db->name);
	if (kind == DB_FAILED || kind == DB_REFUSED ||
	    (pg->c = pg_connect(conf, db->name, LOG_LVL_ERROR)) == NULL ||
	    (kind == DB_UNMARKED && has_oml_tables(db) == -1)) {
		PQfinish(pg->c);
		free(pg);
		db->bh = NULL;
		return -1;
	}
	enc = PQparameterStatus(pg->c, "client_encoding");
	pg->utf8 = enc != NULL && strcmp(enc, "UTF8") == 0;
	return 0;
}

/* --- the batch ------------------------------------------------------- */

static void
batch_clear(struct db *db)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b;
	struct table	*t;

	for (t = db->tables; t != NULL; t = t->next)
		if ((b = t->be) != NULL) {
			b->data.len = 0;
			b->n = 0;
			b->sent = 0;
			b->streamed = 0;
			b->stored = 0;
			b->idn = 0;
		}
	pg->backlog = 0;
	pg->batch_rows = 0;
}

static int32_t
get32(const char *p)
{
	uint32_t	 v;

	memcpy(&v, p, 4);
	return (int32_t)ntohl(v);
}

/*
 * The row refused on its own: log it and leave it out.  It is counted as
 * dropped once the transaction commits; if it does not, the batch is sent
 * again, and refused again.
 */
static void
drop_row(struct db *db, struct table *t, size_t i, PGresult *res)
{
	struct pgtab	*b = t->be;
	const char	*row = b->data.p + (i == 0 ? 0 : b->ends[i - 1]);
	const char	*who;
	char		 m[512];
	int32_t		 sender = get32(row + ID_FIELD + 6);
	int32_t		 seq = get32(row + ID_FIELD + 14);

	if ((who = db_sender_name(db, sender)) == NULL)
		who = "(none)";
	log_warnx("database %s: table %s: row from sender %s seq %d dropped: "
	    "%s", db->name, t->schema.name, who, seq,
	    pq_msg(PQresultErrorMessage(res), m, sizeof(m)));
	b->refused++;
}

/* Rows [lo, hi) refused for a reason that is not theirs alone. */
static void
drop_rows(struct db *db, struct table *t, size_t lo, size_t hi,
    PGresult *res)
{
	char	 m[512];

	log_warnx("database %s: table %s: %zu rows dropped: %s", db->name,
	    t->schema.name, hi - lo, pq_msg(PQresultErrorMessage(res), m,
	    sizeof(m)));
	((struct pgtab *)t->be)->refused += hi - lo;
}

/*
 * Rows [lo, hi) found no id.  In a table with 32-bit ids that have run
 * out they are dropped, and so will be every later row of the table
 * (pg_insert()), which is said once.  Otherwise the sequence refused us
 * (ids_reserve() said why), as it would have refused PostgreSQL's own
 * nextval().
 */
static void
ids_spent(struct db *db, struct table *t, size_t lo, size_t hi)
{
	struct pgtab	*b = t->be;

	b->refused += hi - lo;
	if (b->ids != IDS_32) {
		log_warnx("database %s: table %s: %zu rows dropped: no row ids "
		    "could be reserved", db->name, t->schema.name, hi - lo);
		return;
	}
	if (!b->full)
		log_error("database %s: table %s has no row id left: its "
		    "oml_tuple_id is a 32-bit SERIAL, as older servers made "
		    "it, and has reached %lld; %zu rows dropped, and so will "
		    "be every later row of this table (ALTER TABLE \"%s\" "
		    "ALTER COLUMN oml_tuple_id TYPE bigint, and its sequence "
		    "AS bigint, let it take more)", db->name, t->schema.name,
		    INT4_MAX_ID, hi - lo, t->schema.name);
	b->full = 1;
}

/* Did a COPY fail because the table's 32-bit ids ran out meanwhile? */
static int
ids_gone(const PGresult *res, const struct pgtab *b)
{
	const char	*st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	/* the sequence at its end, or a bigint sequence past the column's */
	return st != NULL && (strcmp(st, "2200H") == 0 ||
	    (b->ids == IDS_32 && strcmp(st, "22003") == 0));
}

/*
 * What t's ids come from, asked before each COPY into a table with
 * 32-bit ids (once for any other): a BIGSERIAL's sequence, whose blocks
 * we reserve, or for 32-bit ids how many the sequence has left after its
 * last value.  -1: the connection was lost.
 */
static int
ids_left(struct db *db, struct table *t)
{
	struct pgtab	*b = t->be;
	PGresult	*res;
	const char	*pv[1] = { t->schema.name };
	long long	 last;

	if (b->ids == IDS_64)
		return 0;
	b->room = SIZE_MAX;
	res = run(db, "SELECT CASE a.atttypid WHEN 'pg_catalog.int4'::"
	    "pg_catalog.regtype THEN 4 WHEN 'pg_catalog.int8'::"
	    "pg_catalog.regtype THEN 8 ELSE 0 END, (SELECT COALESCE("
	    "s.last_value, s.start_value - s.increment_by) FROM "
	    "pg_catalog.pg_sequences s WHERE format('%I.%I', s.schemaname, "
	    "s.sequencename) = q.seq), q.seq FROM pg_catalog.pg_attribute a, "
	    "LATERAL (SELECT pg_catalog.pg_get_serial_sequence(format('%I', "
	    "$1::text), 'oml_tuple_id') AS seq) q WHERE a.attrelid = "
	    "pg_catalog.to_regclass(format('%I', $1::text)) AND a.attname = "
	    "'oml_tuple_id'", 1, pv, PGRES_TUPLES_OK);
	if (res == NULL)
		return PG(db)->c == NULL ? -1 : 0;
	/* (a NULL reads as "") */
	free(b->seq);
	b->seq = NULL;
	b->noid = 1;
	if (PQntuples(res) == 1 && *PQgetvalue(res, 0, 2) != '\0' &&
	    strcmp(PQgetvalue(res, 0, 0), "8") == 0) {
		b->seq = xstrdup(PQgetvalue(res, 0, 2));
		b->noid = 0;	/* ours to give */
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "4") != 0 ||
	    *PQgetvalue(res, 0, 1) == '\0') {
		b->ids = IDS_64;	/* or no sequence of ours: not counted */
		PQclear(res);
		return 0;
	}
	last = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	b->room = last >= INT4_MAX_ID ? 0 : (size_t)(INT4_MAX_ID - last);
	if (b->ids == IDS_UNKNOWN)
		log_info("database %s: table %s has 32-bit row ids, as older "
		    "servers made them: %zu left", db->name, t->schema.name,
		    b->room);
	b->ids = IDS_32;
	return 0;
}

/*
 * Reserve a block of want ids of t's sequence, under the lock every
 * server of this kind takes for it, so that two servers' blocks never
 * overlap.  Inside a transaction it runs under a savepoint, so that a
 * refusal does not spoil the batch.  1: a new block; 0: none (its rows
 * cannot be stored now); -1: connection lost.
 */
static int
ids_reserve(struct db *db, struct table *t, size_t want)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b = t->be;
	PGresult	*res;
	char		 n[24];
	const char	*pv[2] = { b->seq, n };
	int		 txn, got;
	long long	 last;

	snprintf(n, sizeof(n), "%zu", want);
	txn = PQtransactionStatus(pg->c) == PQTRANS_INTRANS;
	if (txn && cmd(db, "SAVEPOINT oml_ids") == -1)
		return -1;
	res = NULL;
	if (sel(db, "SELECT " LOCK_IDS) == 0)
		res = run(db, "SELECT pg_catalog.setval($1::regclass, "
		    "pg_catalog.nextval($1::regclass) + $2 - 1)", 2, pv,
		    PGRES_TUPLES_OK);
	if ((got = res != NULL) != 0) {
		last = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		b->id_next = last - (long long)want + 1;
		b->id_end = last;
	}
	PQclear(res);
	if (pg->c == NULL)
		return -1;
	if (!got && txn && cmd(db, "ROLLBACK TO SAVEPOINT oml_ids") == -1)
		return -1;
	/* (not held if taking it failed: then this only warns) */
	if (sel(db, "SELECT " UNLOCK_IDS) == -1 ||
	    (txn && cmd(db, "RELEASE SAVEPOINT oml_ids") == -1))
		return pg->c == NULL ? -1 : 0;
	return got;
}

/*
 * Write ids into t's tuples that have none yet, reserving blocks as they
 * are needed: each one for the tuples waiting and, beyond them, about as
 * many as the last batch had.  Tuples left without one (32-bit ids run
 * out, or a refused reservation) stay at idn.  -1: connection lost.
 */
static int
ids_assign(struct db *db, struct table *t)
{
	struct pgtab	*b = t->be;
	size_t		 want, more;
	int		 r;

	if (b->noid) {
		/* a 32-bit SERIAL's last ids, or none if they are all gone */
		b->idn = b->ids == IDS_32 && b->room < b->n ? b->room : b->n;
		return 0;
	}
	if (b->seq == NULL || b->refusing)
		return 0;	/* not known yet (ids_left() failed), or no */
	while (b->idn < b->n) {
		if (b->id_next > b->id_end) {
			want = b->n - b->idn;
			more = b->last_n + b->last_n / 2;
			want += more < IDS_MIN ? IDS_MIN : more > IDS_MAX ?
			    IDS_MAX : more;
			if ((r = ids_reserve(db, t, want)) != 1) {
				b->refusing = r == 0;
				return r;
			}
		}
		for (; b->idn < b->n && b->id_next <= b->id_end; b->idn++)
			be_put64(b->data.p + (b->idn == 0 ? 0 :
			    b->ends[b->idn - 1]) + ID_AT,
			    (uint64_t)b->id_next++);
	}
	return 0;
}

/*
 * Give back the unused end of t's block, if no other writer has taken ids
 * since: a server that follows this one then goes on from the last row
 * stored.
 */
static void
ids_return(struct db *db, struct table *t)
{
	struct pgtab	*b = t->be;
	char		 next[24], end[24];
	const char	*pv[3] = { b->seq, next, end };

	if (b->seq == NULL || b->id_next > b->id_end)
		return;
	snprintf(next, sizeof(next), "%lld", (long long)b->id_next);
	snprintf(end, sizeof(end), "%lld", (long long)b->id_end);
	if (sel(db, "SELECT " LOCK_IDS) == -1)
		return;
	PQclear(run(db, "SELECT pg_catalog.setval($1::regclass, $2, false) "
	    "WHERE pg_catalog.pg_sequence_last_value($1::regclass) = $3", 3,
	    pv, PGRES_TUPLES_OK));
	b->id_next = b->id_end + 1;
	sel(db, "SELECT " UNLOCK_IDS);
}

/* Data exceptions (22xxx) and constraint violations (23xxx) are a row's. */
static int
data_error(const PGresult *res)
{
	const char	*st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return st != NULL && (strncmp(st, "22", 2) == 0 ||
	    strncmp(st, "23", 2) == 0);
}

/*
 * COPY data in slices: libpq copies what it is given into its output
 * buffer, which would otherwise grow to a second copy of the batch (a
 * large vector row's text is many times its packet).
 */
static int
copy_data(PGconn *c, const char *p, size_t len)
{
	size_t	 n;

	for (; len > 0; p += n, len -= n) {
		n = len < COPY_SLICE ? len : COPY_SLICE;
		if (PQputCopyData(c, p, (int)n) != 1)
			return 0;
	}
	return 1;
}

/*
 * Tuples [lo, hi) of b as COPY data: as they are, or for a table whose
 * ids PostgreSQL gives, each without its id field.
 */
static int
copy_tuples(PGconn *c, const struct pgtab *b, size_t lo, size_t hi)
{
	struct buf	 out;
	const char	*p;
	size_t		 i, from;
	int		 ok = 1;

	from = lo == 0 ? 0 : b->ends[lo - 1];
	if (!b->noid)
		return copy_data(c, b->data.p + from, b->ends[hi - 1] - from);
	buf_init(&out);
	for (i = lo; i < hi && ok; i++) {
		p = b->data.p + from;
		be_put16(buf_extend(&out, 2), (uint16_t)(((unsigned char)p[0] <<
		    8 | (unsigned char)p[1]) - 1));
		memcpy(buf_extend(&out, b->ends[i] - from - 2 - ID_FIELD),
		    p + 2 + ID_FIELD, b->ends[i] - from - 2 - ID_FIELD);
		from = b->ends[i];
		if (out.len >= COPY_SLICE || i + 1 == hi) {
			ok = copy_data(c, out.p, out.len);
			out.len = 0;
		}
	}
	buf_free(&out);
	return ok;
}

/* One COPY of rows [lo, hi).  1: stored, 0: refused (*res), -1: lost. */
static int
copy_send(struct db *db, struct table *t, size_t lo, size_t hi,
    PGresult **res)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b = t->be;
	PGresult	*r;
	int		 ok;

	*res = NULL;
	r = PQexec(pg->c, b->noid ? b->copy_noid_sql : b->copy_sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		*res = r;
		return PQstatus(pg->c) == CONNECTION_OK ? 0 : -1;
	}
	PQclear(r);
	ok = PQputCopyData(pg->c, copy_header, sizeof(copy_header)) == 1 &&
	    copy_tuples(pg->c, b, lo, hi) &&
	    PQputCopyData(pg->c, copy_trailer, sizeof(copy_trailer)) == 1;
	PQputCopyEnd(pg->c, ok ? NULL : "oml2-server: sending failed");
	ok = 0;
	while ((r = PQgetResult(pg->c)) != NULL) {
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			ok = 1;
		else if (*res == NULL) {
			*res = r;
			continue;
		}
		PQclear(r);
	}
	if (ok && *res == NULL)
		return 1;
	return PQstatus(pg->c) == CONNECTION_OK ? 0 : -1;
}

/*
 * Store rows [lo, hi) of t inside the open transaction.  A refused COPY
 * is rolled back to its savepoint and retried on each half, so that only
 * the refused rows are dropped.  -1 if the connection was lost.
 */
static int
copy_rows(struct db *db, struct table *t, size_t lo, size_t hi)
{
	struct pgtab	*b = t->be;
	PGresult	*res;
	const char	*st;
	size_t		 mid;
	int		 r;

	if (cmd(db, "SAVEPOINT oml_batch") == -1)
		return -1;
	r = copy_send(db, t, lo, hi, &res);
	if (r == 1)
		return cmd(db, "RELEASE SAVEPOINT oml_batch");
	if (r == -1) {
		PQclear(res);
		conn_lost(db);
		return -1;
	}
	if (cmd(db, "ROLLBACK TO SAVEPOINT oml_batch") == -1 ||
	    cmd(db, "RELEASE SAVEPOINT oml_batch") == -1) {
		PQclear(res);
		return -1;
	}
	if (ids_gone(res, t->be)) {
		ids_spent(db, t, lo, hi);
		PQclear(res);
		return 0;
	}
	/*
	 * Our ids met rows of a writer that does not reserve them (nextval()
	 * of its own, or ids of its choosing): take a new block, once per
	 * commit, for these rows and the ones after them.
	 */
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (st != NULL && strcmp(st, "23505") == 0 && b->ids == IDS_64 &&
	    !b->noid && !b->rekeyed) {
		PQclear(res);
		log_warnx("database %s: table %s: row ids already taken by "
		    "another writer; reserving new ones", db->name,
		    t->schema.name);
		b->rekeyed = 1;
		b->idn = lo;
		b->id_next = b->id_end + 1;
		if (ids_assign(db, t) == -1)
			return -1;
		if (b->idn == b->n)
			return copy_rows(db, t, lo, hi);
		ids_spent(db, t, lo, hi);
		return 0;
	}
	if (hi - lo == 1) {
		drop_row(db, t, lo, res);
		PQclear(res);
		return 0;
	}
	if (!data_error(res)) {
		/* not about one row's values: bisecting would not help */
		drop_rows(db, t, lo, hi, res);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	mid = lo + (hi - lo) / 2;
	if (copy_rows(db, t, lo, mid) == -1)
		return -1;
	return copy_rows(db, t, mid, hi);
}

/*
 * Start streaming t's rows: the batch's transaction, a savepoint, the
 * COPY.  -1 (and no stream) if that failed; the rows wait for the commit.
 */
static int
stream_start(struct db *db, struct table *t)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b = t->be;
	PGresult	*r;

	if (ids_assign(db, t) == -1 || b->idn < b->n)
		return -1;
	if (cmd(db, "BEGIN") == -1 || cmd(db, "SAVEPOINT oml_batch") == -1)
		goto fail;
	r = PQexec(pg->c, b->copy_sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		failed(db, b->copy_sql, r);
		PQclear(r);
		goto fail;
	}
	PQclear(r);
	if (PQputCopyData(pg->c, copy_header, sizeof(copy_header)) != 1) {
		conn_lost(db);
		return -1;
	}
	pg->streaming = t;
	b->sent = 0;
	b->streamed = 0;
	return 0;
fail:
	if (pg->c != NULL && PQtransactionStatus(pg->c) != PQTRANS_IDLE)
		cmd(db, "ROLLBACK");
	return -1;
}

/*
 * Send the tuples t's batch gained since the last time, as far as they
 * have ids.  -1: connection lost.
 */
static int
stream_more(struct db *db, struct pgtab *b)
{
	struct pg	*pg = PG(db);
	size_t		 upto = b->idn == 0 ? 0 : b->ends[b->idn - 1];

	if (upto > b->sent && PQputCopyData(pg->c, b->data.p + b->sent,
	    (int)(upto - b->sent)) != 1) {
		pg->streaming = NULL;
		conn_lost(db);
		return -1;
	}
	b->sent = upto;
	b->streamed = b->idn;
	return 0;
}

/*
 * End the streamed COPY inside the batch's transaction.  1: its rows are
 * stored; 0: refused, rolled back to the savepoint (send them again);
 * -1: the connection was lost.
 */
static int
stream_end(struct db *db)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b = pg->streaming->be;
	PGresult	*r;
	int		 ok = 0, bad = 0;

	pg->streaming = NULL;
	if (stream_more(db, b) == -1)
		return -1;
	if (PQputCopyData(pg->c, copy_trailer, sizeof(copy_trailer)) != 1 ||
	    PQputCopyEnd(pg->c, NULL) != 1) {
		conn_lost(db);
		return -1;
	}
	while ((r = PQgetResult(pg->c)) != NULL) {
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			ok = 1;
		else
			bad = 1;
		PQclear(r);
	}
	if (PQstatus(pg->c) != CONNECTION_OK) {
		conn_lost(db);
		return -1;
	}
	if (ok && !bad)
		return cmd(db, "RELEASE SAVEPOINT oml_batch") == -1 ? -1 : 1;
	if (cmd(db, "ROLLBACK TO SAVEPOINT oml_batch") == -1 ||
	    cmd(db, "RELEASE SAVEPOINT oml_batch") == -1)
		return -1;
	return 0;
}

/*
 * Send every table's batch and commit.  Rows are kept unless it worked.
 * A streamed table's rows are in the transaction already, as far as they
 * had ids; the rest of every batch gets its ids here, before the
 * transaction where it can, and goes by COPY.
 */
static int
batch_commit(struct db *db)
{
	struct pg	*pg = PG(db);
	struct table	*t;
	struct pgtab	*b;
	int		 r;

	if (pg->batch_rows == 0)
		return 0;
	for (t = db->tables; t != NULL; t = t->next)
		if ((b = t->be) != NULL) {
			b->refused = 0;
			b->stored = 0;
			b->rekeyed = 0;
			b->refusing = 0;
		}
	if (pg->streaming != NULL) {
		/* its transaction is open: only 64-bit tables are streamed */
		b = pg->streaming->be;
		if ((r = stream_end(db)) == -1)
			goto fail;
		if (r == 1)
			b->stored = b->streamed;
	} else if (up(db) == -1)
		goto fail;
	for (t = db->tables; t != NULL; t = t->next)
		if ((b = t->be) != NULL && b->n > b->stored &&
		    (ids_left(db, t) == -1 || ids_assign(db, t) == -1))
			goto fail;
	if (PQtransactionStatus(pg->c) == PQTRANS_IDLE &&
	    cmd(db, "BEGIN") == -1)
		goto fail;
	for (t = db->tables; t != NULL; t = t->next) {
		if ((b = t->be) == NULL || b->n == b->stored)
			continue;
		if (b->idn > b->stored &&
		    copy_rows(db, t, b->stored, b->idn) == -1)
			goto fail;
		if (b->idn < b->n)
			ids_spent(db, t, b->idn, b->n);
	}
	if (cmd(db, "COMMIT") == -1)
		goto fail;
	for (t = db->tables; t != NULL; t = t->next)
		if ((b = t->be) != NULL) {
			db->rows -= b->refused;
			db->dropped += b->refused;
			if (b->n > 0)
				b->last_n = b->n;
		}
	batch_clear(db);
	return 0;
fail:
	pg->streaming = NULL;
	if (pg->c != NULL && PQtransactionStatus(pg->c) != PQTRANS_IDLE)
		cmd(db, "ROLLBACK");
	return -1;
}

/* --- the backend interface ------------------------------------------- */

static int
pg_commit(struct db *db)
{
	/* inside lock(1): lock(0) commits the schema work */
	if (PG(db)->locked)
		return 0;
	return batch_commit(db);
}

static void
pg_close(struct db *db)
{
	struct pg	*pg = PG(db);
	struct table	*t;

	if (pg == NULL)
		return;
	if (pg->locked && pg->c != NULL)
		cmd(db, "ROLLBACK");
	pg->locked = 0;
	/* the last try: db_close_at() has waited CLOSE_WAIT_MS for it */
	batch_commit(db);
	if (pg->batch_rows > 0)
		log_error("database %s: PostgreSQL did not come back; %zu rows "
		    "not stored", db->name, pg->batch_rows);
	else
		for (t = db->tables; t != NULL && pg->c != NULL; t = t->next)
			if (t->be != NULL)
				ids_return(db, t);
	PQfinish(pg->c);
	free(pg);
	db->bh = NULL;
}

/*
 * db.c calls the schema and metadata operations below only between lock(1),
 * which connects, and lock(0); without a connection run() fails them.
 */
static int
pg_tables(struct db *db, char ***names, int *n)
{
	PGresult	*res;
	int		 i;

	res = run(db, "SELECT tablename FROM pg_catalog.pg_tables WHERE "
	    "schemaname = 'public'", 0, NULL, PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	*n = PQntuples(res);
	*names = xcalloc((size_t)*n + 1, sizeof(char *));
	for (i = 0; i < *n; i++)
		(*names)[i] = xstrdup(PQgetvalue(res, i, 0));
	PQclear(res);
	return 0;
}

/*
 * Bring the metadata cache up to date, once per lock(1) section.  The
 * server's own rows (subject NULL) are written only under the schema lock
 * and take their ids from the sequence while it is held, so every one
 * another server wrote before we took the lock has an id no greater than
 * the greatest visible now, and every later one a greater id: the rows
 * between the last catch-up's greatest id and this one's are all that can
 * be new.  The first catch-up reads the whole table once; later ones read
 * through the primary key's index only the rows added since.
 */
static int
meta_catch_up(struct db *db)
{
	struct pg	*pg = PG(db);
	PGresult	*res;
	char		 lo[24], hi[24];
	const char	*pv[2] = { lo, hi };
	long long	 top;
	int		 i;

	if (pg->caught_up)
		return 0;
	if ((res = run(db, "SELECT COALESCE(max(oml_tuple_id), 0) FROM "
	    "_experiment_metadata", 0, NULL, PGRES_TUPLES_OK)) == NULL)
		return -1;
	top = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (top > db->meta_seen) {
		snprintf(lo, sizeof(lo), "%lld", (long long)db->meta_seen);
		snprintf(hi, sizeof(hi), "%lld", top);
		if ((res = run(db, "SELECT oml_tuple_id, key, value FROM "
		    "_experiment_metadata WHERE oml_tuple_id > $1 AND "
		    "oml_tuple_id <= $2 AND subject IS NULL AND key IS NOT "
		    "NULL ORDER BY oml_tuple_id", 2, pv, PGRES_TUPLES_OK)) ==
		    NULL)
			return -1;
		for (i = 0; i < PQntuples(res); i++)
			db_meta_note(db, strtoll(PQgetvalue(res, i, 0), NULL,
			    10), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		PQclear(res);
		db->meta_seen = top;
	}
	pg->caught_up = 1;
	return 0;
}

/* Update the key's row (by id, or every row of a key several hold). */
static int
meta_update(struct db *db, const struct meta_ent *e, const char *key,
    const char *val)
{
	PGresult	*res;
	char		 id[24];
	const char	*pv[3] = { val, key, id };
	int64_t		 row = e->id;
	int		 changed;

	snprintf(id, sizeof(id), "%lld", (long long)row);
	res = run(db, e->dups ? "UPDATE _experiment_metadata SET value = $1 "
	    "WHERE key = $2 AND subject IS NULL" : "UPDATE "
	    "_experiment_metadata SET value = $1 WHERE key = $2 AND subject "
	    "IS NULL AND oml_tuple_id = $3", e->dups ? 2 : 3, pv,
	    PGRES_COMMAND_OK);
	if (res == NULL)
		return -1;
	changed = strcmp(PQcmdTuples(res), "0") != 0;
	PQclear(res);
	if (changed)
		db_meta_note(db, row, key, val);
	return changed;
}

static int
pg_meta_set(struct db *db, const char *key, const char *val)
{
	const struct meta_ent	*e;
	PGresult		*res;
	const char		*pv[2] = { key, val };
	int			 r;

	if (meta_catch_up(db) == -1)
		return -1;
	PG(db)->meta_dirty = 1;
	if ((e = db_meta_find(db, key)) != NULL &&
	    (r = meta_update(db, e, key, val)) != 0)
		return r == 1 ? 0 : -1;
	res = run(db, "INSERT INTO _experiment_metadata (key, value) VALUES "
	    "($1, $2) RETURNING oml_tuple_id", 2, pv, PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	db_meta_note(db, strtoll(PQgetvalue(res, 0, 0), NULL, 10), key, val);
	PQclear(res);
	return 0;
}

/* BEGIN a transaction holding the experiment's schema lock. */
static int
begin_locked(struct db *db)
{
	PGresult	*res;

	/* a streamed batch holds the connection: commit it first */
	if (PG(db)->streaming != NULL && batch_commit(db) == -1)
		return -1;
	if (up(db) == -1 || cmd(db, "BEGIN") == -1)
		return -1;
	if ((res = run(db, "SELECT " LOCK_SCHEMA, 0, NULL,
	    PGRES_TUPLES_OK)) == NULL) {
		if (PG(db)->c != NULL)
			cmd(db, "ROLLBACK");
		return -1;
	}
	PQclear(res);
	return 0;
}

/*
 * Senders from every server share one numbering: look up and insert in
 * one transaction holding the schema lock.
 */
static int
pg_sender(struct db *db, const char *name, int *id)
{
	PGresult	*res;
	const char	*pv[1] = { name };

	if (begin_locked(db) == -1)
		return -1;
	res = run(db, "SELECT id FROM _senders WHERE name = $1", 1, pv,
	    PGRES_TUPLES_OK);
	if (res != NULL && PQntuples(res) == 0) {
		PQclear(res);
		res = run(db, "INSERT INTO _senders (name, id) SELECT $1, "
		    "COALESCE(MAX(id), 0) + 1 FROM _senders RETURNING id", 1,
		    pv, PGRES_TUPLES_OK);
	}
	if (res == NULL) {
		if (PG(db)->c != NULL)
			cmd(db, "ROLLBACK");
		return -1;
	}
	*id = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return cmd(db, "COMMIT");
}

static int
pg_table_create(struct db *db, struct table *t)
{
	char	*sql;
	int	 i, r;

	if (strlen(t->schema.name) > PG_NAMELEN) {
		log_warnx("table name %s is longer than PostgreSQL's %d bytes",
		    t->schema.name, PG_NAMELEN);
		return -1;
	}
	for (i = 0; i < t->schema.nfields; i++)
		if (strlen(t->schema.fields[i].name) > PG_NAMELEN) {
			log_warnx("table %s: field name %s is longer than "
			    "PostgreSQL's %d bytes", t->schema.name,
			    t->schema.fields[i].name, PG_NAMELEN);
			return -1;
		}
	sql = db_create_sql(db, t);
	r = cmd(db, sql);
	free(sql);
	/* its ids are known now, so that its first rows may stream */
	if (r == 0 && pgtab(t) != NULL && ids_left(db, t) == -1)
		r = -1;
	return r;
}

/* t's batch, made on its first row. */
static struct pgtab *
pgtab(struct table *t)
{
	struct pgtab	*b;
	struct buf	 sql;

	if (t->be != NULL)
		return t->be;
	b = xcalloc(1, sizeof(*b));
	buf_init(&b->data);
	b->id_next = 1;		/* no block yet */
	b->id_end = 0;
	buf_init(&sql);
	buf_printf(&sql, "COPY \"%s\" (", t->schema.name);
	db_sql_columns(&sql, t);
	buf_adds(&sql, ") FROM STDIN (FORMAT binary)");
	b->copy_noid_sql = buf_cstr(&sql);
	buf_init(&sql);
	buf_printf(&sql, "COPY \"%s\" (oml_tuple_id, ", t->schema.name);
	db_sql_columns(&sql, t);
	buf_adds(&sql, ") FROM STDIN (FORMAT binary)");
	b->copy_sql = buf_cstr(&sql);
	t->be = b;
	return b;
}

static void
pg_table_free(struct db *db, struct table *t)
{
	struct pgtab	*b = t->be;

	if (b == NULL)
		return;
	if (db->bh != NULL) {
		PG(db)->backlog -= b->data.len;
		PG(db)->batch_rows -= b->n;
	}
	buf_free(&b->data);
	free(b->ends);
	free(b->copy_sql);
	free(b->copy_noid_sql);
	free(b->seq);
	free(b);
	t->be = NULL;
}

/* Is s valid UTF-8 (no NUL; PostgreSQL's rules)? */
static int
utf8_ok(const unsigned char *s, size_t n)
{
	size_t		 i = 0, k, len;
	unsigned	 c, cp;

	while (i < n) {
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else
			return 0;
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 &&
		    cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 ||
		    cp > 0x10ffff)))
			return 0;
		i += len;
	}
	return 1;
}

static void
field_i32(struct buf *b, int32_t v)
{
	buf_add_be32(b, 4);
	buf_add_be32(b, (uint32_t)v);
}

static void
field_i64(struct buf *b, uint64_t v)
{
	buf_add_be32(b, 8);
	buf_add_be64(b, v);
}

static void
field_f64(struct buf *b, double d)
{
	uint64_t	 u;

	memcpy(&u, &d, 8);	/* NaN and infinities as they are */
	field_i64(b, u);
}

static void
field_bytes(struct buf *b, const char *p, size_t n)
{
	buf_add_be32(b, (uint32_t)n);
	if (n > 0)
		memcpy(buf_extend(b, n), p, n);
}

/* §8.4 for PostgreSQL, in binary COPY form. */
static void
encode_value(struct buf *b, const struct oml_value *v)
{
	const char	*s;

	switch (v->type) {
	case OML_INT32:
		field_i32(b, v->u.i32);
		break;
	case OML_UINT32:		/* INT8: the true value */
		field_i64(b, (uint64_t)v->u.u32);
		break;
	case OML_INT64:
	case OML_UINT64:		/* >= 2^63: the signed reading */
		field_i64(b, v->u.u64);
		break;
	case OML_DOUBLE:
		field_f64(b, v->u.d);
		break;
	case OML_STRING:		/* cut at a NUL, as in SQLite */
		s = v->u.s.p != NULL ? v->u.s.p : "";
		field_bytes(b, s, strnlen(s, v->u.s.len));
		break;
	case OML_BLOB:
		if (v->null)
			buf_add_be32(b, 0xffffffffu);
		else
			field_bytes(b, v->u.s.p, v->u.s.len);
		break;
	case OML_GUID:
		if (v->u.u64 == 0)
			buf_add_be32(b, 0xffffffffu);
		else
			field_i64(b, v->u.u64);
		break;
	case OML_BOOL:
		buf_add_be32(b, 1);
		*buf_extend(b, 1) = v->u.b ? 1 : 0;
		break;
	default:			/* vectors, rendered as text */
		field_bytes(b, v->u.s.p, v->u.s.len);
		break;
	}
}

/* Strings PostgreSQL would refuse are refused here, before the batch. */
static int
strings_ok(struct db *db, struct table *t, const struct row *r)
{
	struct pg	*pg = PG(db);
	const char	*s;
	int		 i;

	if (!pg->utf8)
		return 1;
	for (i = 0; i < r->n; i++) {
		if (r->v[i].type != OML_STRING || r->v[i].u.s.p == NULL)
			continue;
		s = r->v[i].u.s.p;
		if (utf8_ok((const unsigned char *)s, strnlen(s,
		    r->v[i].u.s.len)))
			continue;
		if (pg->bad_utf8++ < BAD_UTF8_LOG)
			log_warnx("database %s: table %s: field %s is not "
			    "valid UTF-8", db->name, t->schema.name,
			    t->schema.fields[i].name);
		return 0;
	}
	return 1;
}

static int
pg_insert(struct db *db, struct table *t, const struct row *r)
{
	struct pg	*pg = PG(db);
	struct pgtab	*b;
	size_t		 before;
	int		 i;

	if (!strings_ok(db, t, r))
		return -1;
	b = pgtab(t);
	if (b->full)
		return -1;	/* said once, by ids_spent() */
	before = b->data.len;
	be_put16(buf_extend(&b->data, 2), (uint16_t)(r->n + 5));
	/* the id now if the block has one and no earlier tuple waits */
	if (b->idn == b->n && !b->noid && b->id_next <= b->id_end) {
		field_i64(&b->data, (uint64_t)b->id_next++);
		b->idn++;
	} else
		field_i64(&b->data, 0);
	field_i32(&b->data, r->sender);
	field_i32(&b->data, r->seq);
	field_f64(&b->data, r->ts_client);
	field_f64(&b->data, r->ts_server);
	for (i = 0; i < r->n; i++)
		encode_value(&b->data, &r->v[i]);
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 1024;
		b->ends = xreallocarray(b->ends, b->cap, sizeof(*b->ends));
	}
	b->ends[b->n++] = b->data.len;
	pg->backlog += b->data.len - before;
	pg->batch_rows++;
	if (b->data.len - b->sent < STREAM_CHUNK || pg->locked ||
	    pg->c == NULL || b->ids != IDS_64 || b->noid ||
	    (pg->streaming != NULL && pg->streaming != t))
		return 0;
	if (pg->streaming == NULL && (pg->batch_rows != b->n ||
	    stream_start(db, t) == -1))
		return 0;	/* not the batch's only table; or later */
	stream_more(db, b);	/* a loss is the commit's business */
	return 0;
}

/*
 * Schema work under the experiment's advisory lock: the batch goes first
 * (so that metadata rows keep their order), then a transaction that holds
 * the lock until lock(0) commits it.
 */
static int
pg_lock(struct db *db, int on)
{
	struct pg	*pg = PG(db);

	if (!on) {
		if (!pg->locked)
			return 0;
		pg->locked = 0;
		pg->caught_up = 0;
		if (pg->c != NULL &&
		    PQtransactionStatus(pg->c) != PQTRANS_INERROR &&
		    cmd(db, "COMMIT") == 0)
			return 0;
		if (pg->c != NULL && PQtransactionStatus(pg->c) != PQTRANS_IDLE)
			cmd(db, "ROLLBACK");
		/* metadata written in it went with it */
		if (pg->meta_dirty)
			db_meta_forget(db);
		return -1;
	}
	if (batch_commit(db) == -1 || begin_locked(db) == -1)
		return -1;
	pg->locked = 1;
	pg->caught_up = 0;
	pg->meta_dirty = 0;
	return 0;
}

static int
pg_stalled(struct db *db)
{
	struct pg	*pg = PG(db);

	return pg != NULL && pg->c == NULL && pg->backlog >= BACKLOG_MAX;
}

/*
 * Only between transactions: a streamed batch, the schema lock or an
 * open transaction is not disturbed for an operator's question.
 */
static int64_t
pg_query_int(struct db *db, const char *sql)
{
	struct pg	*pg = PG(db);
	PGresult	*res;
	int64_t		 n = -1;

	if (pg == NULL || pg->c == NULL || pg->streaming != NULL ||
	    pg->locked || PQtransactionStatus(pg->c) != PQTRANS_IDLE)
		return -1;
	res = PQexec(pg->c, sql);
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK &&
	    PQntuples(res) == 1)
		n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

static int
pg_stall_cause(struct db *db)
{
	return PG(db) == NULL || PG(db)->c == NULL ? CAUSE_PG_DOWN :
	    CAUSE_ERROR;
}

/*
 * Start-up check, run as the target user (§10): reachable, may CREATEDB.
 * There is no data directory to lock.
 */
static int
pg_probe(const struct child_conf *conf, int *lock)
{
	PGconn		*c;
	PGresult	*res;
	char		 port[24], m[512];
	int		 r = -1;

	if (lock != NULL)
		*lock = -1;
	if (pqlib_load() == -1 ||
	    (c = pg_connect(conf, MAINT_DB, LOG_LVL_ERROR)) == NULL)
		return -1;
	resolve_port(conf->pg_port, port);
	res = PQexec(c, "SELECT rolcreatedb OR rolsuper FROM "
	    "pg_catalog.pg_roles WHERE rolname = current_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		log_error("postgresql at %s port %s: %s", conf->pg_host, port,
		    pq_msg(PQresultErrorMessage(res), m, sizeof(m)));
	else if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t")
	    != 0)
		log_error("postgresql at %s port %s: role %s may not create "
		    "databases; give it CREATEDB (ALTER ROLE %s CREATEDB)",
		    conf->pg_host, port, PQuser(c), PQuser(c));
	else {
		log_info("postgresql at %s port %s: connected as %s (server "
		    "%s)", conf->pg_host, port, PQuser(c),
		    PQparameterStatus(c, "server_version"));
		r = 0;
	}
	PQclear(res);
	PQfinish(c);
	return r;
}

/* Declared column types (§8.3), as the original's. */
static const char *const pg_types[OML_TYPE_MAX] = {
	[OML_INT32] = "INT4",		[OML_UINT32] = "INT8",
	[OML_INT64] = "INT8",		[OML_UINT64] = "BIGINT",
	[OML_DOUBLE] = "FLOAT8",	[OML_STRING] = "TEXT",
	[OML_BLOB] = "BYTEA",		[OML_GUID] = "BIGINT",
	[OML_BOOL] = "BOOLEAN",		[OML_VINT32] = "TEXT",
	[OML_VUINT32] = "TEXT",		[OML_VINT64] = "TEXT",
	[OML_VUINT64] = "TEXT",		[OML_VDOUBLE] = "TEXT",
	[OML_VBOOL] = "TEXT",
};

const struct backend backend_pg = {
	.name = "postgresql",
	.files = 0,
	.nocase = 0,
	.close_wait_ms = CLOSE_WAIT_MS,
	/*
	 * BIGSERIAL, as the original's later releases have it: a SERIAL runs
	 * out of ids after 2^31 rows (about an hour of one table's ingest at
	 * full speed).
	 */
	.key_type = "BIGSERIAL PRIMARY KEY",
	.types = pg_types,
	.probe = pg_probe,
	.open = pg_open,
	.close = pg_close,
	.commit = pg_commit,
	.tables = pg_tables,
	.meta_load = meta_catch_up,
	.meta_set = pg_meta_set,
	.sender = pg_sender,
	.exec = cmd,
	.table_create = pg_table_create,
	.table_free = pg_table_free,
	.insert = pg_insert,
	.lock = pg_lock,
	.stalled = pg_stalled,
	.stall_cause = pg_stall_cause,
	.query_int = pg_query_int,
};
