/*
 * oml2-import -- store OMSP files, as a client writes them with
 * --oml-collect file:PATH (a text header, then text or binary tuples), in
 * their experiments' databases exactly as if each client had connected:
 * the experiment process's own connection code (conn.c) reads each file
 * and the server's storage code (db.c and its backends) stores it.  This
 * file stands in for child.c, the experiment state conn.c asks for
 * (exp_*), in a process with no event loop, no master and no hook.
 *
 * Files are opened, and names looked up, before the privilege drop; none
 * is read before it.  Each file's SHA-256 is recorded in its experiment's
 * metadata (key import_sha256_<hex>), first as "started", then with what
 * was stored, so that importing it again is refused (--force stores it
 * again).  An SQLite database is locked while the import has it open
 * (store_sqlite.c): a server does not open it meanwhile, nor the import a
 * database a server has open.  PostgreSQL databases are shared by design.
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "child/child.h"

#define SNIFF_MAX	(1024 * 1024)	/* header bytes searched for a domain */
#define WAIT_MS		60000		/* for a database that cannot write */
#define KEY_PREFIX	"import_sha256_"

enum outcome { F_STORED, F_SKIPPED, F_FAILED };

static struct {
	struct child_conf	 conf;
	char			*domain;	/* --domain, or NULL */
	int			 force;
	char			 name[EXPNAME_MAX + 1];	/* current experiment */
	struct db		*db;
} imp;

/* ---- what conn.c asks of the experiment (child.c in the server) ---- */

const char *
exp_name(void)
{
	return imp.name;
}

const struct child_conf *
exp_conf(void)
{
	return &imp.conf;
}

/* Opened for each file before its connection starts (so no page hint). */
struct db *
exp_db_acquire(int blobs)
{
	(void)blobs;
	return imp.db;
}

void
exp_db_release(void)
{
}

/* Files, not tenants: their unfinished input is charged to no budget. */
int
exp_mem_take(struct conn *c, size_t n, int force)
{
	(void)c;
	(void)n;
	(void)force;
	return 0;
}

void
exp_mem_give(struct conn *c, size_t n)
{
	(void)c;
	(void)n;
}

void
exp_report(const struct conn *c, enum report_event e, const char *m)
{
	(void)c;
	(void)e;
	(void)m;
}

/* ---- options ---------------------------------------------------------- */

enum {
	O_USER = 256, O_GROUP, O_LOGFILE, O_DOMAIN, O_PG_HOST, O_PG_PORT,
	O_PG_USER, O_PG_PASS, O_PG_CONNECT, O_MAX_LINE, O_MAX_PACKET,
	O_MAX_FIELDS, O_MAX_STREAMS
};

static const struct option longopts[] = {
	{ "domain",		required_argument, NULL, O_DOMAIN },
	{ "force",		no_argument,	   NULL, 'f' },
	{ "data-dir",		required_argument, NULL, 'D' },
	{ "backend",		required_argument, NULL, 'b' },
	{ "pg-host",		required_argument, NULL, O_PG_HOST },
	{ "pg-port",		required_argument, NULL, O_PG_PORT },
	{ "pg-user",		required_argument, NULL, O_PG_USER },
	{ "pg-pass",		required_argument, NULL, O_PG_PASS },
	{ "pg-connect",		required_argument, NULL, O_PG_CONNECT },
	{ "user",		required_argument, NULL, O_USER },
	{ "group",		required_argument, NULL, O_GROUP },
	{ "debug-level",	required_argument, NULL, 'd' },
	{ "logfile",		required_argument, NULL, O_LOGFILE },
	{ "max-line",		required_argument, NULL, O_MAX_LINE },
	{ "max-packet",		required_argument, NULL, O_MAX_PACKET },
	{ "max-fields",		required_argument, NULL, O_MAX_FIELDS },
	{ "max-streams",	required_argument, NULL, O_MAX_STREAMS },
	{ "version",		no_argument,	   NULL, 'v' },
	{ "help",		no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static const char usage_text[] =
"usage: oml2-import [-f] [--domain=EXP] [-D dir] [-b sqlite|postgresql]\n"
"                   [--pg-host=host] [--pg-port=port] [--pg-user=user]\n"
"                   [--pg-pass=pass] [--pg-connect=conninfo] [--user=name]\n"
"                   [--group=name] [-d level] [--logfile=file] [limits...]\n"
"                   FILE...\n";

static const char help_text[] =
"oml2-import: store OML measurement files as if their clients had connected\n"
"\n"
"      --domain=EXP          store every file in experiment EXP, whatever its\n"
"                            header names (default: the header's domain)\n"
"  -f, --force               store a file again that was imported before\n"
"  -D, --data-dir=DIR        SQLite databases are in DIR (default: $OML_SQLITE_DIR,\n"
"                            else " DEFAULT_DATADIR ")\n"
"  -b, --backend=BACKEND     sqlite (default) or postgresql\n"
"      --pg-host=HOST        PostgreSQL server (default " CONF_PG_HOST ")\n"
"      --pg-port=PORT        its port or service name (default " CONF_PG_PORT ")\n"
"      --pg-user=USER        its role, which needs CREATEDB (default " CONF_PG_USER ")\n"
"      --pg-pass=PASSWORD    its password (prefer PGPASSWORD or PGPASSFILE)\n"
"      --pg-connect=CONNINFO extra libpq connection parameters\n"
"      --user=NAME           read and store as this user (as the server's\n"
"                            experiment processes run)\n"
"      --group=NAME          ... and this group (default: the user's group)\n"
"  -d, --debug-level=LEVEL   1=ERROR 2=WARNING 3=INFO 4=DEBUG (default 2)\n"
"      --logfile=FILE        log to FILE instead of stderr ('-' is stderr)\n"
"      --max-line=BYTES      longest header or text line (default 1048576)\n"
"      --max-packet=BYTES    longest binary packet (default 67108864)\n"
"      --max-fields=N        fields per schema (default 1024)\n"
"      --max-streams=N       streams per file (default 1024)\n"
"  -v, --version             print the version\n"
"  -h, --help                print this help\n"
"\n"
"One line per file on standard output says what was stored.  Exit status:\n"
"0 every file stored, 2 some were skipped as imported before (and nothing\n"
"else went wrong), 1 otherwise.\n";

static __dead void
bad(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "oml2-import: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%sTry 'oml2-import --help' for more.\n",
	    usage_text);
	exit(1);
}

static unsigned long
num(const char *name, const char *s, unsigned long min, unsigned long max)
{
	unsigned long	 v;

	if (parse_uint(s, max, &v) == -1 || v < min)
		bad("%s: \"%s\" is not a number from %lu to %lu", name, s,
		    min, max);
	return v;
}

/* A string option given again replaces the earlier one. */
static void
setstr(char **dst, const char *arg)
{
	free(*dst);
	*dst = xstrdup(arg);
}

struct opts {
	char	*datadir;
	char	*user;
	char	*group;
	char	*logfile;
	int	 loglevel;
};

static void
one(struct opts *o, int c, const char *arg)
{
	struct child_conf	*cc = &imp.conf;

	switch (c) {
	case O_DOMAIN:	setstr(&imp.domain, arg); break;
	case 'f':	imp.force = 1; break;
	case 'D':	setstr(&o->datadir, arg); break;
	case 'b':
		if ((cc->backend = backend_named(arg)) == NULL)
			bad("--backend: unknown backend \"%s\"", arg);
		break;
	case O_PG_HOST:	setstr(&cc->pg_host, arg); break;
	case O_PG_PORT:	setstr(&cc->pg_port, arg); break;
	case O_PG_USER:	setstr(&cc->pg_user, arg); break;
	case O_PG_PASS:	setstr(&cc->pg_pass, arg); break;
	case O_PG_CONNECT: setstr(&cc->pg_connect, arg); break;
	case O_USER:	setstr(&o->user, arg); break;
	case O_GROUP:	setstr(&o->group, arg); break;
	case 'd':	o->loglevel = (int)num("--debug-level", arg, 1, 4); break;
	case O_LOGFILE:	setstr(&o->logfile, arg); break;
	case O_MAX_LINE:
		cc->max_line = num("--max-line", arg, 1024, 1UL << 30);
		break;
	case O_MAX_PACKET:
		cc->max_packet = num("--max-packet", arg, 1024, 1UL << 32);
		break;
	case O_MAX_FIELDS:
		cc->max_fields = (int)num("--max-fields", arg, 1, 65535);
		break;
	case O_MAX_STREAMS:
		cc->max_streams = (int)num("--max-streams", arg, 1, 65536);
		break;
	case 'v':
		printf("oml2-import (OML Server) %s\n", OML2_VERSION);
		exit(0);
	case 'h':
		fputs(usage_text, stdout);
		putchar('\n');
		fputs(help_text, stdout);
		exit(0);
	default:
		bad("internal error: option %d", c);
	}
}

/* The server's data directory rule (master/options.c). */
static void
resolve_datadir(char *dir)
{
	char	*env;

	if (dir == NULL && (env = getenv("OML_SQLITE_DIR")) != NULL &&
	    *env != '\0')
		dir = env;
	if (dir == NULL)
		dir = DEFAULT_DATADIR;
	if ((imp.conf.datadir = realpath(dir, NULL)) == NULL)
		bad("data directory %s: %s", dir, strerror(errno));
}

static int
parse(int argc, char **argv, struct opts *o)
{
	struct child_conf	*cc = &imp.conf;
	const char		*why;
	int			 c;

	memset(o, 0, sizeof(*o));
	o->loglevel = LOG_LVL_WARN;
	cc->backend = &backend_sqlite;
	cc->pg_host = xstrdup(CONF_PG_HOST);
	cc->pg_port = xstrdup(CONF_PG_PORT);
	cc->pg_user = xstrdup(CONF_PG_USER);
	cc->max_line = CONF_MAX_LINE;
	cc->max_header = CONF_MAX_HEADER;
	cc->max_packet = CONF_MAX_PACKET;
	cc->max_fields = CONF_MAX_FIELDS;
	cc->max_streams = CONF_MAX_STREAMS;
	cc->commit_rows = CONF_COMMIT_ROWS;
	cc->commit_ms = CONF_COMMIT_MS;
	cc->commit_busy = CONF_COMMIT_BUSY;
	cc->commit_max_ms = CONF_COMMIT_MAX_MS;
	cc->retry_ms = CONF_RETRY_MS;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fD:b:d:vh", longopts, NULL))
	    != -1) {
		if (c == '?') {
			if (optopt != 0)
				bad("unknown option -%c", optopt);
			bad("unknown option %s", argv[optind - 1]);
		}
		if (c == ':')
			bad("option %s needs an argument", argv[optind - 1]);
		one(o, c, optarg);
	}
	if (optind == argc)
		bad("no file to import");
	if (o->group != NULL && o->user == NULL)
		bad("--group needs --user");
	if (imp.domain != NULL &&
	    !expname_valid(imp.domain, strlen(imp.domain), &why))
		bad("--domain %s: %s", imp.domain, why);
	if (backend_files(cc->backend))
		resolve_datadir(o->datadir);
	return optind;
}

/* ---- one file --------------------------------------------------------- */

struct file {
	char		*path;
	int		 fd;		/* -1: could not be opened (logged) */
	char		 label[64];	/* for conn.c's log lines */
	char		 hash[SHA256_DIGEST_STRING_LENGTH];
	off_t		 size;		/* the bytes hashed, and imported */
	char		 exp[EXPNAME_MAX + 1];
	uint64_t	 rows, dropped;
	size_t		 cut;		/* bytes of an unfinished last item */
	const char	*cut_what;
};

static void
utc_now(char out[32])
{
	time_t		 t = time(NULL);
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The file's SHA-256, read with pread: the offset stays at 0. */
static int
file_hash(struct file *f)
{
	SHA2_CTX	 ctx;
	char		 b[65536];
	off_t		 off = 0;
	ssize_t		 n;

	SHA256Init(&ctx);
	while ((n = pread(f->fd, b, sizeof(b), off)) > 0) {
		SHA256Update(&ctx, (const uint8_t *)b, (size_t)n);
		off += n;
	}
	if (n == -1) {
		log_warn("%s", f->path);
		return -1;
	}
	SHA256End(&ctx, f->hash);
	f->size = off;
	return 0;
}

/* Which experiment the header names, found as the master finds it. */
static int
file_experiment(struct file *f)
{
	struct sniff		 sn;
	struct buf		 b;
	const char		*why = "the header names no domain";
	enum sniff_result	 r = SNIFF_MORE;
	ssize_t			 n;

	if (imp.domain != NULL) {
		strlcpy(f->exp, imp.domain, sizeof(f->exp));
		return 0;
	}
	memset(&sn, 0, sizeof(sn));
	buf_init(&b);
	while (r == SNIFF_MORE && b.len < SNIFF_MAX) {
		buf_reserve(&b, 65536);
		if ((n = pread(f->fd, b.p + b.len, 65536, (off_t)b.len)) <= 0)
			break;
		b.len += (size_t)n;
		r = sniff_expid(&sn, b.p, b.len, &why);
	}
	buf_free(&b);
	if (r != SNIFF_FOUND) {
		log_warnx("%s: %s; not imported (--domain names one)", f->path,
		    r == SNIFF_BAD ? why : "the header names no domain");
		return -1;
	}
	strlcpy(f->exp, sn.name, sizeof(f->exp));
	return 0;
}

/* The experiment's database, kept open while files of it follow. */
static int
use_experiment(const char *name)
{
	if (imp.db != NULL && strcmp(imp.name, name) == 0)
		return 0;
	if (imp.db != NULL)
		db_close(imp.db);
	imp.db = NULL;
	strlcpy(imp.name, name, sizeof(imp.name));
	log_setproc("oml2-import: exp/%s", name);
	if ((imp.db = db_open(&imp.conf, name, 0)) == NULL)
		return -1;
	return 0;
}

/*
 * Commit, waiting (as the server would keep its clients waiting) while
 * the database cannot take rows: a full disk, PostgreSQL away.
 */
static int
settle(struct db *db)
{
	uint64_t	 give_up = now_mono_ms() + WAIT_MS;

	while (db_commit(db) == -1 || db_stalled(db)) {
		if (now_mono_ms() >= give_up) {
			log_error("the database could not be written for %d s; "
			    "giving up", WAIT_MS / 1000);
			return -1;
		}
		usleep(200 * 1000);
	}
	return 0;
}

/*
 * Record the import before it starts.  0 go on, 1 imported before (or an
 * import was interrupted), -1 error.
 */
static int
claim(struct file *f)
{
	char	*key, *val, *old, when[32];
	int	 r;

	utc_now(when);
	xasprintf(&key, KEY_PREFIX "%s", f->hash);
	xasprintf(&val, "started at %s from %s", when, f->path);
	r = db_meta_put(imp.db, key, val, imp.force, &old);
	if (r == 1 && strncmp(old, "started ", 8) == 0)
		log_warnx("%s: an import of this file into %s did not finish "
		    "(%s): some of its rows may be stored; not imported "
		    "(--force imports it again)", f->path, f->exp, old);
	else if (r == 1)
		log_warnx("%s: imported into %s before (%s); not imported "
		    "again (--force imports it again)", f->path, f->exp, old);
	else if (r == 0 && old != NULL)
		log_warnx("%s: imported into %s before (%s); storing it again "
		    "(--force)", f->path, f->exp, old);
	free(old);
	free(key);
	free(val);
	return r;
}

/* What the import stored, in place of "started". */
static void
record(const struct file *f, const char *end)
{
	char	*key, *val, *old, when[32];

	utc_now(when);
	xasprintf(&key, KEY_PREFIX "%s", f->hash);
	xasprintf(&val, "%s %llu rows, %llu dropped, at %s from %s", end,
	    (unsigned long long)f->rows, (unsigned long long)f->dropped,
	    when, f->path);
	if (db_meta_put(imp.db, key, val, 1, &old) == -1)
		log_warnx("%s: could not record the import", f->path);
	free(old);
	free(key);
	free(val);
}

/*
 * Feed the file to a connection, as the experiment's process feeds it what
 * the master read: the bytes that were hashed, no more, should the file
 * still grow.
 */
static enum conn_end
feed(struct file *f)
{
	static char	 b[256 * 1024];
	struct conn	*c;
	enum conn_end	 r = END_NONE;
	off_t		 off = 0;
	ssize_t		 n;

	c = conn_new(f->fd, f->label, 0);
	f->fd = -1;	/* the connection's now */
	if (imp.domain != NULL) {
		conn_any_domain(c);
		n = snprintf(b, sizeof(b), "domain: %s\n", imp.domain);
		r = conn_feed(c, b, (size_t)n);
	}
	while (r == END_NONE && off < f->size) {
		n = f->size - off < (off_t)sizeof(b) ? f->size - off :
		    (off_t)sizeof(b);
		if ((n = pread(conn_fd(c), b, (size_t)n, off)) <= 0) {
			log_warnx("%s: %s", f->path, n == 0 ? "shorter than "
			    "when it was hashed" : strerror(errno));
			r = END_ERROR;
		} else
			r = conn_feed(c, b, (size_t)n);
		if (r == END_NONE && db_stalled(imp.db) && settle(imp.db) == -1)
			r = END_ERROR;
		off += n > 0 ? n : 0;
	}
	if (r == END_NONE)
		r = END_EOF;
	if (r == END_EOF && pread(conn_fd(c), b, 1, off) == 1)
		log_warnx("%s grew while it was imported: its first %lld bytes "
		    "are", f->path, (long long)f->size);
	if (r == END_EOF)
		f->cut = conn_unfinished(c, &f->cut_what);
	if (f->cut > 0)
		log_warnx("%s: the file ends in the middle of a %s: its last "
		    "%zu bytes are not stored", f->path, f->cut_what, f->cut);
	conn_close(c, r);
	free(c);
	return r;
}

static enum outcome
import(struct file *f)
{
	enum conn_end	 r;
	uint64_t	 rows, dropped;
	int		 k;

	if (f->fd == -1 || file_hash(f) == -1 || file_experiment(f) == -1)
		return F_FAILED;
	if (use_experiment(f->exp) == -1)
		return F_FAILED;
	if ((k = claim(f)) != 0)
		return k == 1 ? F_SKIPPED : F_FAILED;
	rows = imp.db->rows;
	dropped = imp.db->dropped;
	r = feed(f);
	k = settle(imp.db);
	f->rows = imp.db->rows - rows;
	f->dropped = imp.db->dropped - dropped;
	if (k == -1)
		return F_FAILED;	/* still "started": rows may be lost */
	record(f, r == END_EOF ? "stored" : "failed after");
	return r == END_EOF ? F_STORED : F_FAILED;
}

/* The file's line on stdout. */
static void
say(const struct file *f, enum outcome o)
{
	if (o == F_SKIPPED)
		printf("%s: %s: imported before, not stored again", f->path,
		    f->exp);
	else if (f->exp[0] == '\0' || (o == F_FAILED && f->rows == 0))
		printf("%s: not imported (see the log)", f->path);
	else {
		printf("%s: %s: %llu rows stored, %llu dropped", f->path,
		    f->exp, (unsigned long long)f->rows,
		    (unsigned long long)f->dropped);
		if (f->cut > 0)
			printf("; the last %zu bytes, an unfinished %s, not "
			    "stored", f->cut, f->cut_what);
		if (o == F_FAILED)
			printf("; the rest not imported (see the log)");
	}
	putchar('\n');
	fflush(stdout);
}

/* Open every file as the invoking user, before any privilege drop. */
static struct file *
open_files(int n, char *const *paths)
{
	struct file	*fs;
	struct stat	 st;
	struct rlimit	 rl;
	const char	*base;
	int		 i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fs = xcalloc((size_t)n, sizeof(*fs));
	for (i = 0; i < n; i++) {
		fs[i].path = paths[i];
		base = strrchr(paths[i], '/');
		snprintf(fs[i].label, sizeof(fs[i].label), "file:%s",
		    base != NULL ? base + 1 : paths[i]);
		if ((fs[i].fd = open(paths[i], O_RDONLY | O_CLOEXEC)) == -1) {
			log_warn("%s", paths[i]);
			continue;
		}
		if (fstat(fs[i].fd, &st) == -1 || !S_ISREG(st.st_mode)) {
			log_warnx("%s: not a regular file; not imported",
			    paths[i]);
			close(fs[i].fd);
			fs[i].fd = -1;
		}
	}
	return fs;
}

static void
drop_privileges(const struct opts *o)
{
	if (geteuid() != 0) {
		if (o->user != NULL)
			fatalx("--user %s: only root can change user", o->user);
		return;
	}
	if (priv_lookup(o->user, o->group, &imp.conf.ids) == -1)
		exit(1);
	if (o->user == NULL)
		log_warnx("running as root: new databases will be root's; "
		    "consider --user");
	priv_drop(&imp.conf.ids);
}

int
main(int argc, char **argv)
{
	extern char	**environ;
	struct opts	  o;
	struct file	 *fs;
	char		**paths;
	enum outcome	  out;
	int		  first, i, n, failed = 0, skipped = 0;

	title_init(argc, argv, environ);
	first = parse(argc, argv, &o);
	n = argc - first;
	if (log_open(o.logfile, o.loglevel) == -1) {
		fprintf(stderr, "oml2-import: log file %s: %s\n", o.logfile,
		    log_open_error());
		return 1;
	}
	log_setproc("oml2-import");
	log_startup(1);
	/* copies: the process title is written over argv */
	paths = xcalloc((size_t)n, sizeof(*paths));
	for (i = 0; i < n; i++)
		paths[i] = xstrdup(argv[first + i]);
	title_set("import");		/* --pg-pass leaves ps(1) here */
	fs = open_files(n, paths);
	drop_privileges(&o);
	if (imp.conf.backend->probe(&imp.conf, NULL) == -1)
		return 1;
	for (i = 0; i < n; i++) {
		out = import(&fs[i]);
		say(&fs[i], out);
		if (fs[i].fd != -1)
			close(fs[i].fd);
		free(fs[i].path);
		failed += out == F_FAILED;
		skipped += out == F_SKIPPED;
	}
	if (imp.db != NULL)
		db_close(imp.db);
	free(fs);
	free(paths);
	free(o.datadir);
	free(o.user);
	free(o.group);
	free(o.logfile);
	return failed > 0 ? 1 : skipped > 0 ? 2 : 0;
}
