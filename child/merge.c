/*
 * oml2-merge -- one SQLite experiment database from the shards that
 * several servers behind a load balancer wrote (a .sq3 file each), as if
 * one server had received every client (PROTOCOL.md §4.2, §8):
 *
 *  - the earliest start time becomes the experiment's, and every shard's
 *    oml_ts_client and oml_ts_server are rebased to it;
 *  - the rows of every table of every shard are taken together in
 *    oml_ts_server order (each shard keeping its own order, ties going to
 *    the earlier input), and the first row of a table declares its schema
 *    in the output through the server's own name, name_2 ... name_9 rule
 *    (db_declare), so that tables are named in the order of arrival;
 *  - likewise the first row of a sender gives it its id (db_sender);
 *  - the server's own metadata rows (table_*, start_time) are made anew
 *    by db.c, others (oml2-import's notes) are carried over, and the
 *    clients' metadata rows are merged like any other rows.
 *
 * The output is written by the server's storage code (db.c and
 * store_sqlite.c) under a hidden name beside OUT, then linked (or, with
 * --force, renamed) into place.  Inputs are opened read-only and
 * immutable, each under a shared flock that keeps a server or oml2-import
 * (which hold an exclusive one while they have it open) away meanwhile.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "child/child.h"

#define SENDERS_TABLE	"_senders"

struct shard;

/* One stream table of one input, and its cursor. */
struct src {
	struct shard		*sh;
	char			*name;		/* in the input */
	struct oml_schema	 schema;	/* as declared (name before _N) */
	sqlite3_int64		 created;	/* its table_* row's id */
	sqlite3_stmt		*st;
	int			 live;		/* a row is current */
	double			 key;		/* its rebased oml_ts_server */
	struct table		*out;
	uint64_t		 rows;
	uint64_t		 odd;	/* values not of their column's type */
};

struct sender_map {
	int	 id;
	char	*name;
	int	 out;		/* 0 until registered in the output */
};

struct shard {
	const char		*path;
	int			 fd;		/* holds the shared flock */
	sqlite3			*h;
	long			 start;
	double			 dclient;	/* added to oml_ts_client */
	double			 dserver;	/* ... and oml_ts_server */
	char			**names;	/* every table */
	int			 nnames;
	struct sender_map	*snd;
	int			 nsnd;
	char			**extra;	/* key, value, key, value ... */
	int			 nextra;
	int			 unknown_sender;	/* warned about */
};

static struct {
	struct child_conf	 conf;
	int			 force;
	int			 any;
	struct shard		*sh;
	int			 nsh;
	struct src		**src;
	int			 nsrc;
	struct db		*db;
	char			*tmp;		/* the output while made */
	uint64_t		 rows;
	uint64_t		 dropped;
} m;

static const struct option longopts[] = {
	{ "force",		no_argument,	   NULL, 'f' },
	{ "any-experiment",	no_argument,	   NULL, 'a' },
	{ "debug-level",	required_argument, NULL, 'd' },
	{ "version",		no_argument,	   NULL, 'v' },
	{ "help",		no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static const char usage_text[] =
"usage: oml2-merge [-af] [-d level] OUT.sq3 IN.sq3...\n";

static const char help_text[] =
"oml2-merge: merge SQLite shards of one experiment into one database\n"
"\n"
"  -a, --any-experiment      merge inputs named for different experiments\n"
"  -f, --force               replace OUT if it exists\n"
"  -d, --debug-level=LEVEL   1=ERROR 2=WARNING 3=INFO 4=DEBUG (default 2)\n"
"  -v, --version             print the version\n"
"  -h, --help                print this help\n"
"\n"
"OUT is made as if one server had received the clients of every IN: the\n"
"earliest start time, rows in oml_ts_server order, tables and sender ids\n"
"by arrival.  The inputs are only read.  Exit status 0 on success.\n";

static __dead void
bad(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "oml2-merge: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%sTry 'oml2-merge --help' for more.\n", usage_text);
	exit(1);
}

/* Give up: the output made so far goes. */
static __dead void
die(void)
{
	char	*p;

	if (m.db != NULL)
		db_close(m.db);
	if (m.tmp != NULL) {
		unlink(m.tmp);
		xasprintf(&p, "%s-wal", m.tmp);
		unlink(p);
		free(p);
		xasprintf(&p, "%s-shm", m.tmp);
		unlink(p);
		free(p);
	}
	log_error("nothing written");
	exit(1);
}

/* ---- reading an input ------------------------------------------------- */

static sqlite3_stmt *
prep(struct shard *sh, const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(sh->h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_warnx("%s: %s: %s", sh->path, sql, sqlite3_errmsg(sh->h));
		return NULL;
	}
	return st;
}

static int
has_table(const struct shard *sh, const char *name)
{
	int	 i;

	for (i = 0; i < sh->nnames; i++)
		if (strcasecmp(sh->names[i], name) == 0)
			return 1;
	return 0;
}

/* The experiment an input is named for: its file name without ".sq3". */
static char *
exp_of(const char *path)
{
	const char	*b = strrchr(path, '/');
	size_t		 n;

	b = b != NULL ? b + 1 : path;
	n = strlen(b);
	if (n > 4 && strcmp(b + n - 4, ".sq3") == 0)
		n -= 4;
	return xstrndup(b, n);
}

/*
 * Look at the file before SQLite does: it must be an SQLite database with
 * nothing in a WAL or a rollback journal (which an immutable reader would
 * not see), and no writer may have it open.
 */
static int
check_file(struct shard *sh)
{
	static const char	 magic[16] = "SQLite format 3";
	unsigned char		 hdr[100];
	struct stat		 st;
	const char		*sfx[] = { "-wal", "-journal" };
	char			*p;
	size_t			 i;

	if ((sh->fd = open(sh->path, O_RDONLY | O_CLOEXEC)) == -1) {
		log_warn("%s", sh->path);
		return -1;
	}
	if (flock(sh->fd, LOCK_SH | LOCK_NB) == -1) {
		log_warnx("%s is open in a server or oml2-import; stop it, or "
		    "let its experiment end, first", sh->path);
		return -1;
	}
	if (pread(sh->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, magic, sizeof(magic)) != 0) {
		log_warnx("%s: not an SQLite database", sh->path);
		return -1;
	}
	for (i = 0; i < nitems(sfx); i++) {
		xasprintf(&p, "%s%s", sh->path, sfx[i]);
		if (stat(p, &st) == 0 && st.st_size > 0) {
			log_warnx("%s: has a %s file with uncommitted or "
			    "uncheckpointed changes (a server that was killed?); "
			    "open it once with sqlite3 to recover it", sh->path,
			    sfx[i]);
			free(p);
			return -1;
		}
		free(p);
	}
	return 0;
}

/* file:PATH?mode=ro&immutable=1, with the path percent-encoded. */
static char *
ro_uri(const char *path)
{
	struct buf	 b;
	const char	*p;

	buf_init(&b);
	buf_adds(&b, "file:");
	for (p = path; *p != '\0'; p++)
		if (strchr("?#%", *p) != NULL || (unsigned char)*p < 0x21 ||
		    (unsigned char)*p > 0x7e)
			buf_printf(&b, "%%%02X", (unsigned char)*p);
		else
			buf_addc(&b, *p);
	buf_adds(&b, "?mode=ro&immutable=1");
	return buf_cstr(&b);
}

static int
read_names(struct shard *sh)
{
	sqlite3_stmt	*st;

	if ((st = prep(sh, "SELECT name FROM sqlite_master WHERE type = "
	    "'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		sh->names = xreallocarray(sh->names, (size_t)sh->nnames + 1,
		    sizeof(char *));
		sh->names[sh->nnames++] = xstrdup((const char *)
		    sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (!has_table(sh, SENDERS_TABLE) || !has_table(sh, OML_META_TABLE)) {
		log_warnx("%s: not an OML experiment database (no %s or %s "
		    "table)", sh->path, SENDERS_TABLE, OML_META_TABLE);
		return -1;
	}
	return 0;
}

/* The server's own metadata rows: start_time, and the others to carry. */
static int
read_meta(struct shard *sh)
{
	sqlite3_stmt	*st;
	const char	*k, *v;

	if ((st = prep(sh, "SELECT key, value FROM " OML_META_TABLE " WHERE "
	    "subject IS NULL AND key IS NOT NULL AND key NOT LIKE "
	    "'table\\_%' ESCAPE '\\' ORDER BY oml_tuple_id")) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		k = (const char *)sqlite3_column_text(st, 0);
		v = (const char *)sqlite3_column_text(st, 1);
		if (strcmp(k, "start_time") == 0) {
			sh->start = v != NULL ? strtol(v, NULL, 10) : 0;
			continue;
		}
		sh->extra = xreallocarray(sh->extra, (size_t)sh->nextra + 2,
		    sizeof(char *));
		sh->extra[sh->nextra++] = xstrdup(k);
		sh->extra[sh->nextra++] = xstrdup(v != NULL ? v : "");
	}
	sqlite3_finalize(st);
	return 0;
}

static int
read_senders(struct shard *sh)
{
	sqlite3_stmt	*st;

	if ((st = prep(sh, "SELECT id, name FROM " SENDERS_TABLE
	    " WHERE id IS NOT NULL AND name IS NOT NULL ORDER BY id")) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		sh->snd = xreallocarray(sh->snd, (size_t)sh->nsnd + 1,
		    sizeof(*sh->snd));
		sh->snd[sh->nsnd].id = sqlite3_column_int(st, 0);
		sh->snd[sh->nsnd].name = xstrdup((const char *)
		    sqlite3_column_text(st, 1));
		sh->snd[sh->nsnd++].out = 0;
	}
	sqlite3_finalize(st);
	return 0;
}

/*
 * The name a table's clients declared.  A server names a schema's table
 * NAME_k (k = 2..9) only when NAME ... NAME_(k-1) all exist, so a table
 * so named among those was renamed from NAME (§8.8).
 */
static char *
declared_name(const struct shard *sh, const char *name)
{
	size_t	 n = strlen(name);
	char	*base, cand[300];
	int	 k, j;

	if (n < 3 || name[n - 2] != '_' || name[n - 1] < '2' ||
	    name[n - 1] > '9')
		return xstrdup(name);
	k = name[n - 1] - '0';
	base = xstrndup(name, n - 2);
	for (j = 1; j < k; j++) {
		if (j == 1)
			snprintf(cand, sizeof(cand), "%s", base);
		else
			snprintf(cand, sizeof(cand), "%s_%d", base, j);
		if (!has_table(sh, cand)) {
			free(base);
			return xstrdup(name);
		}
	}
	return base;
}

/* The SELECT of a table's rows in the input's order. */
static char *
select_sql(const struct src *s)
{
	struct buf	 b;
	int		 i;

	buf_init(&b);
	buf_adds(&b, "SELECT oml_sender_id, oml_seq, oml_ts_client, "
	    "oml_ts_server");
	for (i = 0; i < s->schema.nfields; i++)
		buf_printf(&b, ", \"%s\"", s->schema.fields[i].name);
	buf_printf(&b, " FROM \"%s\"", s->name);
	/* the server's own rows are made anew */
	if (strcasecmp(s->name, OML_META_TABLE) == 0)
		buf_adds(&b, " WHERE subject IS NOT NULL");
	buf_adds(&b, " ORDER BY oml_tuple_id");
	return buf_cstr(&b);
}

/*
 * A stored table_* value: "INDEX NAME FIELDS".  The index is the creating
 * client's (§8.7), written again as it was; the original wrote whatever
 * it accepted, so it is not checked.
 */
static int
parse_stored(const char *val, struct oml_schema *s, char *err, size_t len)
{
	const char	*p = val + strspn(val, " \t\r\n\v\f");
	char		*text;
	long		 index = strtol(p, NULL, 10);
	int		 r;

	p += strcspn(p, " \t\r\n\v\f");
	xasprintf(&text, "0%s", p);
	r = schema_parse(text, strlen(text), 65535, s, err, len);
	free(text);
	if (r == 0)
		s->index = index;
	return r;
}

/* The input's stream tables: the ones with a table_* row, as the server. */
static int
read_tables(struct shard *sh)
{
	sqlite3_stmt	*st;
	struct src	*s;
	char		*key, *sql, *decl, err[160];
	int		 i;

	if ((st = prep(sh, "SELECT value, oml_tuple_id FROM " OML_META_TABLE
	    " WHERE key = ? AND subject IS NULL ORDER BY oml_tuple_id DESC "
	    "LIMIT 1")) == NULL)
		return -1;
	for (i = 0; i < sh->nnames; i++) {
		if (strcasecmp(sh->names[i], SENDERS_TABLE) == 0)
			continue;
		xasprintf(&key, "table_%s", sh->names[i]);
		sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
		free(key);
		s = xcalloc(1, sizeof(*s));
		s->sh = sh;
		s->name = xstrdup(sh->names[i]);
		if (sqlite3_step(st) != SQLITE_ROW ||
		    sqlite3_column_text(st, 0) == NULL) {
			log_warnx("%s: table %s has no table_%s metadata row, so "
			    "no server knows it; not merged", sh->path, s->name,
			    s->name);
			goto skip;
		}
		if (parse_stored((const char *)sqlite3_column_text(st, 0),
		    &s->schema, err, sizeof(err)) == -1) {
			log_warnx("%s: table %s: stored schema unusable (%s); "
			    "not merged", sh->path, s->name, err);
			goto skip;
		}
		s->created = sqlite3_column_int64(st, 1);
		decl = declared_name(sh, s->name);
		schema_rename(&s->schema, decl);
		free(decl);
		sql = select_sql(s);
		s->st = prep(sh, sql);
		free(sql);
		if (s->st == NULL) {
			log_warnx("%s: table %s does not have the columns of its "
			    "schema; not merged", sh->path, s->name);
			goto skip;
		}
		m.src = xreallocarray(m.src, (size_t)m.nsrc + 1, sizeof(s));
		m.src[m.nsrc++] = s;
		sqlite3_reset(st);
		continue;
skip:
		schema_free(&s->schema);
		free(s->name);
		free(s);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	return 0;
}

static void
open_shard(struct shard *sh)
{
	char	*uri;
	int	 r;

	if (check_file(sh) == -1)
		die();
	uri = ro_uri(sh->path);
	r = sqlite3_open_v2(uri, &sh->h, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI, NULL);
	free(uri);
	if (r != SQLITE_OK) {
		log_warnx("%s: %s", sh->path, sh->h != NULL ?
		    sqlite3_errmsg(sh->h) : sqlite3_errstr(r));
		die();
	}
	if (read_names(sh) == -1 || read_meta(sh) == -1 ||
	    read_senders(sh) == -1 || read_tables(sh) == -1)
		die();
}

/* ---- the merge -------------------------------------------------------- */

/* Inputs in order, each input's tables in the order they were created. */
static int
src_cmp(const void *a, const void *b)
{
	const struct src	*x = *(struct src *const *)a;
	const struct src	*y = *(struct src *const *)b;

	if (x->sh != y->sh)
		return x->sh < y->sh ? -1 : 1;
	return x->created < y->created ? -1 : x->created > y->created;
}

/* Advance a cursor; its key is the rebased oml_ts_server. */
static void
advance(struct src *s)
{
	int	 r = sqlite3_step(s->st);

	if (r != SQLITE_ROW) {
		if (r != SQLITE_DONE) {
			log_warnx("%s: reading %s: %s", s->sh->path, s->name,
			    sqlite3_errmsg(s->sh->h));
			die();
		}
		s->live = 0;
		return;
	}
	s->live = 1;
	s->key = sqlite3_column_type(s->st, 3) == SQLITE_NULL ? -INFINITY :
	    sqlite3_column_double(s->st, 3) + s->sh->dserver;
}

/* The output's id for an input's sender, registered on first use. */
static int
sender(struct shard *sh, int id)
{
	int	 i;

	if (id == 0)
		return 0;
	for (i = 0; i < sh->nsnd; i++)
		if (sh->snd[i].id == id)
			break;
	if (i == sh->nsnd) {
		if (!sh->unknown_sender)
			log_warnx("%s: rows from sender id %d, which %s does not "
			    "name, are stored with sender 0", sh->path, id,
			    SENDERS_TABLE);
		sh->unknown_sender = 1;
		return 0;
	}
	if (sh->snd[i].out == 0 &&
	    db_sender(m.db, sh->snd[i].name, &sh->snd[i].out) == -1)
		die();
	return sh->snd[i].out;
}

/*
 * Column col as a value of type t, read back as the server stored it
 * (§8.4).  Returns 1 if the stored value was not of the column's kind
 * (a table written by something else), 0 otherwise.
 */
static int
column(sqlite3_stmt *st, int col, enum oml_type t, struct oml_value *v)
{
	int	 ct = sqlite3_column_type(st, col);

	memset(v, 0, sizeof(*v));
	v->type = t;
	switch (t) {
	case OML_INT32:
		v->u.i32 = sqlite3_column_int(st, col);
		return ct != SQLITE_INTEGER;
	case OML_UINT32:
		v->u.u32 = (uint32_t)sqlite3_column_int64(st, col);
		return ct != SQLITE_INTEGER;
	case OML_INT64:
		v->u.i64 = sqlite3_column_int64(st, col);
		return ct != SQLITE_INTEGER;
	case OML_UINT64:
	case OML_GUID:		/* guid 0 is stored as NULL */
		v->u.u64 = (uint64_t)sqlite3_column_int64(st, col);
		return ct != SQLITE_INTEGER && (t != OML_GUID ||
		    ct != SQLITE_NULL);
	case OML_BOOL:
		v->u.b = sqlite3_column_int64(st, col) != 0;
		return ct != SQLITE_INTEGER;
	case OML_DOUBLE:	/* NaN is stored as NULL */
		v->u.d = ct == SQLITE_NULL ? NAN :
		    sqlite3_column_double(st, col);
		return ct != SQLITE_FLOAT && ct != SQLITE_NULL;
	case OML_BLOB:
		v->null = ct == SQLITE_NULL;
		v->u.s.p = sqlite3_column_blob(st, col);
		v->u.s.len = (size_t)sqlite3_column_bytes(st, col);
		return ct != SQLITE_BLOB && ct != SQLITE_NULL;
	default:		/* strings, and vectors in their text form */
		v->u.s.p = (const char *)sqlite3_column_text(st, col);
		v->u.s.len = (size_t)sqlite3_column_bytes(st, col);
		return ct != SQLITE_TEXT;
	}
}

static double
ts(sqlite3_stmt *st, int col, double delta)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return NAN;
	return sqlite3_column_double(st, col) + delta;
}

/* Store the cursor's current row in the output. */
static void
copy_row(struct src *s, struct oml_value *vals)
{
	struct row	 r;
	int		 i;

	if (s->out == NULL && (s->out = db_declare(m.db, &s->schema)) == NULL)
		die();
	r.sender = sender(s->sh, sqlite3_column_int(s->st, 0));
	r.seq = sqlite3_column_int(s->st, 1);
	r.ts_client = ts(s->st, 2, s->sh->dclient);
	r.ts_server = ts(s->st, 3, s->sh->dserver);
	for (i = 0; i < s->schema.nfields; i++)
		s->odd += (uint64_t)column(s->st, 4 + i,
		    s->schema.fields[i].type, &vals[i]);
	r.n = s->schema.nfields;
	r.v = vals;
	r.bytes = NULL;
	if (db_insert(m.db, s->out, &r) == -1)
		m.dropped++;
	else
		s->rows++;
	if (db_stalled(m.db)) {
		log_error("the output cannot be written");
		die();
	}
}

/* Every row of every input, in oml_ts_server order. */
static void
merge_rows(void)
{
	struct oml_value	*vals;
	struct src		*best;
	int			 i, maxf = 1;

	for (i = 0; i < m.nsrc; i++) {
		if (m.src[i]->schema.nfields > maxf)
			maxf = m.src[i]->schema.nfields;
		advance(m.src[i]);
	}
	vals = xcalloc((size_t)maxf, sizeof(*vals));
	for (;;) {
		best = NULL;
		for (i = 0; i < m.nsrc; i++)
			if (m.src[i]->live &&
			    (best == NULL || m.src[i]->key < best->key))
				best = m.src[i];
		if (best == NULL)
			break;
		copy_row(best, vals);
		m.rows++;
		advance(best);
	}
	free(vals);
}

/* What no row brought: empty tables, silent senders, the other notes. */
static void
merge_rest(void)
{
	struct shard	*sh;
	char		*old;
	int		 i, j;

	for (i = 0; i < m.nsrc; i++)
		if (m.src[i]->out == NULL &&
		    (m.src[i]->out = db_declare(m.db, &m.src[i]->schema))
		    == NULL)
			die();
	for (i = 0; i < m.nsh; i++) {
		sh = &m.sh[i];
		for (j = 0; j < sh->nsnd; j++)
			if (sh->snd[j].out == 0 && db_sender(m.db,
			    sh->snd[j].name, &sh->snd[j].out) == -1)
				die();
		for (j = 0; j < sh->nextra; j += 2) {
			if (db_meta_put(m.db, sh->extra[j], sh->extra[j + 1], 1,
			    &old) == -1)
				die();
			free(old);
		}
	}
}

/* Each input's start time and offsets (§4.2): the earliest is S. */
static long
rebase(void)
{
	long	 s = 0;
	int	 i;

	for (i = 0; i < m.nsh; i++)
		if (m.sh[i].start != 0 && (s == 0 || m.sh[i].start < s))
			s = m.sh[i].start;
	for (i = 0; i < m.nsh; i++) {
		/* without a start time, ts_server was absolute time */
		m.sh[i].dserver = (double)(m.sh[i].start - s);
		m.sh[i].dclient = m.sh[i].start != 0 ?
		    (double)(m.sh[i].start - s) : 0;
	}
	return s;
}

/* ---- the output ------------------------------------------------------- */

static char *
dir_of(const char *path)
{
	const char	*b = strrchr(path, '/');
	char		*d, *abs;

	d = b == NULL ? xstrdup(".") : b == path ? xstrdup("/") :
	    xstrndup(path, (size_t)(b - path));
	if ((abs = realpath(d, NULL)) == NULL)
		bad("%s: %s", d, strerror(errno));
	free(d);
	return abs;
}

/*
 * OUT must not exist (unless --force), must not be an input, and must not
 * be open in a server.
 */
static void
check_out(const char *out)
{
	struct stat	 so, si;
	int		 i, fd;

	if (stat(out, &so) == -1) {
		if (errno != ENOENT)
			bad("%s: %s", out, strerror(errno));
		return;
	}
	if (!m.force)
		bad("%s exists (--force replaces it)", out);
	for (i = 0; i < m.nsh; i++)
		if (stat(m.sh[i].path, &si) == 0 && si.st_dev == so.st_dev &&
		    si.st_ino == so.st_ino)
			bad("%s is also an input", out);
	if ((fd = open(out, O_RDONLY | O_CLOEXEC)) != -1 &&
	    flock(fd, LOCK_EX | LOCK_NB) == -1)
		bad("%s is open in a server or oml2-import", out);
	if (fd != -1)
		close(fd);
}

/* The finished output goes into place; stale journals of an old OUT go. */
static void
install_out(const char *out)
{
	const char	*sfx[] = { "-wal", "-shm", "-journal" };
	char		*p;
	size_t		 i;

	if (!m.force) {
		if (link(m.tmp, out) == -1) {
			log_warn("%s", out);
			die();
		}
		unlink(m.tmp);
		return;
	}
	for (i = 0; i < nitems(sfx); i++) {
		xasprintf(&p, "%s%s", out, sfx[i]);
		if (unlink(p) == -1 && errno != ENOENT)
			log_warn("%s", p);
		free(p);
	}
	if (rename(m.tmp, out) == -1) {
		log_warn("%s", out);
		die();
	}
}

static void
open_out(const char *out)
{
	const char	*b = strrchr(out, '/');
	char		*name;

	m.conf.datadir = dir_of(out);
	m.conf.backend = &backend_sqlite;
	m.conf.max_line = CONF_MAX_LINE;
	m.conf.max_packet = CONF_MAX_PACKET;
	m.conf.max_fields = CONF_MAX_FIELDS;
	m.conf.max_streams = CONF_MAX_STREAMS;
	m.conf.commit_rows = CONF_COMMIT_ROWS;
	m.conf.commit_ms = CONF_COMMIT_MS;
	m.conf.commit_busy = CONF_COMMIT_BUSY;
	m.conf.commit_max_ms = CONF_COMMIT_MAX_MS;
	m.conf.retry_ms = CONF_RETRY_MS;
	/* hidden (no experiment name starts with '.'), made beside OUT */
	xasprintf(&name, ".%s.merging-%ld", b != NULL ? b + 1 : out,
	    (long)getpid());
	xasprintf(&m.tmp, "%s/%s.sq3", m.conf.datadir, name);
	unlink(m.tmp);
	if ((m.db = db_open(&m.conf, name, 0)) == NULL)
		die();
	free(name);
}

/* One output table's line, after those of the tables made before it. */
static void
report_table(const struct table *t)
{
	uint64_t	 n = 0, odd = 0;
	int		 i;

	if (t == NULL)
		return;
	report_table(t->next);		/* the list is newest first */
	for (i = 0; i < m.nsrc; i++)
		if (m.src[i]->out == t) {
			n += m.src[i]->rows;
			odd += m.src[i]->odd;
		}
	printf("  %s: %llu rows\n", t->schema.name, (unsigned long long)n);
	if (odd > 0)
		log_warnx("table %s: %llu values were not of their column's "
		    "type and were converted", t->schema.name,
		    (unsigned long long)odd);
}

static void
count_sender(const struct sender *s, void *arg)
{
	(void)s;
	(*(int *)arg)++;
}

static void
report(const char *out, long start)
{
	int		 nsnd = 0;

	db_walk_senders(m.db, count_sender, &nsnd);
	printf("%s: %d input%s, %llu rows, %d sender%s, start time %ld\n", out,
	    m.nsh, m.nsh == 1 ? "" : "s", (unsigned long long)m.rows, nsnd,
	    nsnd == 1 ? "" : "s", start);
	report_table(m.db->tables);
}

static void
parse(int argc, char **argv, int *level)
{
	unsigned long	 v;
	int		 c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":afd:vh", longopts, NULL)) != -1)
		switch (c) {
		case 'a':
			m.any = 1;
			break;
		case 'f':
			m.force = 1;
			break;
		case 'd':
			if (parse_uint(optarg, 4, &v) == -1 || v < 1)
				bad("--debug-level: \"%s\" is not 1 to 4",
				    optarg);
			*level = (int)v;
			break;
		case 'v':
			printf("oml2-merge (OML Server) %s\n", OML2_VERSION);
			exit(0);
		case 'h':
			fputs(usage_text, stdout);
			putchar('\n');
			fputs(help_text, stdout);
			exit(0);
		case ':':
			bad("option %s needs an argument", argv[optind - 1]);
		default:
			if (optopt != 0)
				bad("unknown option -%c", optopt);
			bad("unknown option %s", argv[optind - 1]);
		}
	if (argc - optind < 2)
		bad("an output and at least one input are needed");
}

/* Same experiment (unless --any-experiment), no input twice. */
static void
check_inputs(void)
{
	struct stat	 a, b;
	char		*e0, *e;
	int		 i, j;

	e0 = exp_of(m.sh[0].path);
	for (i = 0; i < m.nsh; i++) {
		if (stat(m.sh[i].path, &a) == -1)
			bad("%s: %s", m.sh[i].path, strerror(errno));
		e = exp_of(m.sh[i].path);
		if (!m.any && strcmp(e, e0) != 0)
			bad("%s is of experiment %s, %s of %s "
			    "(--any-experiment merges them)", m.sh[0].path, e0,
			    m.sh[i].path, e);
		free(e);
		for (j = 0; j < i; j++)
			if (stat(m.sh[j].path, &b) == 0 &&
			    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
				bad("%s and %s are the same file", m.sh[j].path,
				    m.sh[i].path);
	}
	free(e0);
}

int
main(int argc, char **argv)
{
	const char	*out;
	long		 start;
	int		 i, level = LOG_LVL_WARN;

	parse(argc, argv, &level);
	log_open(NULL, level);
	log_setproc("oml2-merge");
	out = argv[optind];
	m.nsh = argc - optind - 1;
	m.sh = xcalloc((size_t)m.nsh, sizeof(*m.sh));
	for (i = 0; i < m.nsh; i++) {
		m.sh[i].path = argv[optind + 1 + i];
		m.sh[i].fd = -1;
	}
	check_inputs();
	check_out(out);
	for (i = 0; i < m.nsh; i++)
		open_shard(&m.sh[i]);
	qsort(m.src, (size_t)m.nsrc, sizeof(*m.src), src_cmp);
	start = rebase();
	open_out(out);
	if (start != 0 && db_set_start(m.db, start) == -1)
		die();
	merge_rows();
	merge_rest();
	if (db_commit(m.db) == -1 || db_stalled(m.db)) {
		log_error("the output cannot be written");
		die();
	}
	m.dropped += m.db->dropped;
	m.rows -= m.dropped;
	if (m.dropped > 0)
		log_warnx("%llu rows could not be stored (logged above)",
		    (unsigned long long)m.dropped);
	report(out, start);
	db_close(m.db);
	m.db = NULL;
	install_out(out);
	return m.dropped > 0 ? 1 : 0;
}
