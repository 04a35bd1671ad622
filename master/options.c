/*
 * Command line: the seed manual's options, the --oml-* self-reporting
 * options, and the operator limits of DESIGN §5.  Any error is a message
 * with a usage hint and exit status 1; --help, --usage and --version exit
 * 0.  Secrets given on the command line are copied here, and the caller
 * then overwrites the process title so that they leave ps(1) output.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"
#include "child/reporter.h"

enum {
	O_USER = 256, O_GROUP, O_LOGFILE, O_USAGE, O_PG_HOST, O_PG_PORT,
	O_PG_USER, O_PG_PASS, O_PG_CONNECT, O_SPARES, O_LINGER,
	O_HEADER_LIMIT, O_HEADER_TIMEOUT, O_MAX_PENDING, O_MAX_EXPERIMENTS,
	O_MAX_CLIENTS, O_MAX_LINE, O_MAX_PACKET, O_MAX_FIELDS, O_MAX_STREAMS,
	O_OML_COLLECT, O_OML_ID, O_OML_DOMAIN, O_OML_TEXT, O_OML_BINARY,
	O_OML_NOOP, O_OML_BUFSIZE, O_ALLOW_ROOT, O_MAX_HEADER, O_MAX_BUFFERED,
	O_MAX_BUFFERED_EXP, O_CONTROL, O_METRICS_LISTEN, O_KEEP_ENDED,
	O_HOOK_TIMEOUT, O_MAX_SOURCE_PENDING, O_MAX_SOURCE_EXPERIMENTS,
	O_PROXY_FROM,
};

static const struct option longopts[] = {
	{ "data-dir",		required_argument, NULL, 'D' },
	{ "event-hook",		required_argument, NULL, 'H' },
	{ "hook-timeout",	required_argument, NULL, O_HOOK_TIMEOUT },
	{ "listen",		required_argument, NULL, 'l' },
	{ "user",		required_argument, NULL, O_USER },
	{ "group",		required_argument, NULL, O_GROUP },
	{ "allow-root",		no_argument,	   NULL, O_ALLOW_ROOT },
	{ "timeout",		required_argument, NULL, 't' },
	{ "debug-level",	required_argument, NULL, 'd' },
	{ "logfile",		required_argument, NULL, O_LOGFILE },
	{ "backend",		required_argument, NULL, 'b' },
	{ "pg-host",		required_argument, NULL, O_PG_HOST },
	{ "pg-port",		required_argument, NULL, O_PG_PORT },
	{ "pg-user",		required_argument, NULL, O_PG_USER },
	{ "pg-pass",		required_argument, NULL, O_PG_PASS },
	{ "pg-connect",		required_argument, NULL, O_PG_CONNECT },
	{ "spares",		required_argument, NULL, O_SPARES },
	{ "linger",		required_argument, NULL, O_LINGER },
	{ "header-limit",	required_argument, NULL, O_HEADER_LIMIT },
	{ "header-timeout",	required_argument, NULL, O_HEADER_TIMEOUT },
	{ "max-pending",	required_argument, NULL, O_MAX_PENDING },
	{ "max-experiments",	required_argument, NULL, O_MAX_EXPERIMENTS },
	{ "max-source-pending",	required_argument, NULL, O_MAX_SOURCE_PENDING },
	{ "max-source-experiments", required_argument, NULL,
	    O_MAX_SOURCE_EXPERIMENTS },
	{ "proxy-from",		required_argument, NULL, O_PROXY_FROM },
	{ "max-clients",	required_argument, NULL, O_MAX_CLIENTS },
	{ "max-header",		required_argument, NULL, O_MAX_HEADER },
	{ "max-line",		required_argument, NULL, O_MAX_LINE },
	{ "max-packet",		required_argument, NULL, O_MAX_PACKET },
	{ "max-buffered",	required_argument, NULL, O_MAX_BUFFERED },
	{ "max-buffered-exp",	required_argument, NULL, O_MAX_BUFFERED_EXP },
	{ "max-fields",		required_argument, NULL, O_MAX_FIELDS },
	{ "max-streams",	required_argument, NULL, O_MAX_STREAMS },
	{ "oml-collect",	required_argument, NULL, O_OML_COLLECT },
	{ "oml-server",		required_argument, NULL, O_OML_COLLECT },
	{ "oml-id",		required_argument, NULL, O_OML_ID },
	{ "oml-domain",		required_argument, NULL, O_OML_DOMAIN },
	{ "oml-exp-id",		required_argument, NULL, O_OML_DOMAIN },
	{ "oml-text",		no_argument,	   NULL, O_OML_TEXT },
	{ "oml-binary",		no_argument,	   NULL, O_OML_BINARY },
	{ "oml-noop",		no_argument,	   NULL, O_OML_NOOP },
	{ "oml-bufsize",	required_argument, NULL, O_OML_BUFSIZE },
	{ "control",		required_argument, NULL, O_CONTROL },
	{ "metrics-listen",	required_argument, NULL, O_METRICS_LISTEN },
	{ "keep-ended",		required_argument, NULL, O_KEEP_ENDED },
	{ "version",		no_argument,	   NULL, 'v' },
	{ "help",		no_argument,	   NULL, 'h' },
	{ "usage",		no_argument,	   NULL, O_USAGE },
	{ NULL, 0, NULL, 0 }
};

static const char usage_text[] =
"usage: oml2-server [-D dir] [-H hook] [-l [addr:]port] [--user=name]\n"
"                   [--group=name] [--allow-root] [-t seconds] [-d level]\n"
"                   [--proxy-from=addr[/prefix]] [--logfile=file]\n"
"                   [-b sqlite|postgresql] [--pg-host=host] [--pg-port=port]\n"
"                   [--pg-user=user] [--pg-pass=pass] [--pg-connect=conninfo]\n"
"                   [--oml-collect=uri] [--control=path]\n"
"                   [--metrics-listen=[addr:]port] [limits...]\n"
"                   [--usage] [-v] [-?]\n";

static const char help_text[] =
"oml2-server: collect OML measurement streams into per-experiment databases\n"
"\n"
"  -D, --data-dir=DIR        SQLite databases go in DIR (default: $OML_SQLITE_DIR,\n"
"                            else " DEFAULT_DATADIR "); one server per DIR\n"
"  -l, --listen=[ADDR:]PORT  listen on PORT (number or service; default 3003),\n"
"                            on all addresses unless ADDR is given\n"
"      --proxy-from=ADDR[/PREFIX]  connections from ADDR (a load balancer)\n"
"                            begin with a PROXY preamble naming the client;\n"
"                            required from ADDR, refused from others; repeatable\n"
"  -t, --timeout=SECONDS     reap clients idle this long (default 60; 0 = never)\n"
"      --user=NAME           run experiment processes as this user\n"
"      --group=NAME          ... and this group (default: the user's group)\n"
"      --allow-root          let --user or --group be root's (uid or gid 0)\n"
"  -d, --debug-level=LEVEL   1=ERROR 2=WARNING 3=INFO 4=DEBUG (default 3)\n"
"      --logfile=FILE        log to FILE instead of stderr ('-' is stderr)\n"
"  -H, --event-hook=PROGRAM  run PROGRAM for database events (see the manual)\n"
"      --hook-timeout=SECONDS  time a hook has to exit after EXIT (default 10)\n"
"  -b, --backend=BACKEND     sqlite (default) or postgresql\n"
"      --pg-host=HOST        PostgreSQL server (default localhost)\n"
"      --pg-port=PORT        its port or service name (default postgresql)\n"
"      --pg-user=USER        its role, which needs CREATEDB (default oml)\n"
"      --pg-pass=PASSWORD    its password (prefer PGPASSWORD or PGPASSFILE)\n"
"      --pg-connect=CONNINFO extra libpq connection parameters\n"
"\n"
"Self-reporting over OML (off unless a destination is given):\n"
"      --oml-collect=URI     tcp:HOST:PORT, HOST:PORT or file:PATH ($OML_COLLECT)\n"
"      --oml-id=ID           sender id (default: the host name; $OML_NAME)\n"
"      --oml-domain=DOMAIN   experiment (default oml2-server; $OML_DOMAIN)\n"
"      --oml-server, --oml-exp-id  old names of --oml-collect, --oml-domain\n"
"      --oml-text, --oml-binary  encoding (default text)\n"
"      --oml-bufsize=BYTES   reports held for a slow collector (default 1048576)\n"
"      --oml-noop            disable self-reporting, whatever else is given\n"
"\n"
"Watching it (see oml2ctl(1)):\n"
"      --control=PATH        the control socket (default DIR/oml2-server.sock;\n"
"                            'none' for none); mode 0660, root and --group\n"
"      --metrics-listen=[ADDR:]PORT  serve Prometheus metrics at /metrics\n"
"                            (default: off; all addresses unless ADDR)\n"
"      --keep-ended=SECONDS  an ended experiment is still listed and reported\n"
"                            this long (default 300)\n"
"\n"
"Processes and limits:\n"
"      --spares=N            idle pre-forked experiment processes (default 2)\n"
"      --linger=SECONDS      keep an experiment's process this long after its\n"
"                            last client (default 60)\n"
"      --header-limit=BYTES  header bytes allowed before the experiment id,\n"
"                            a PROXY preamble included (default 16384)\n"
"      --header-timeout=SECONDS  time allowed to name the experiment (default 10)\n"
"      --max-pending=N       connections still naming their experiment (1024)\n"
"      --max-source-pending=N  ... of them from one address (default 256;\n"
"                            0 = no limit)\n"
"      --max-experiments=N   experiments at once (default 1024)\n"
"      --max-source-experiments=N  ... of them started from one address\n"
"                            (default 256; 0 = no limit)\n"
"      --max-clients=N       clients per experiment (default 4096)\n"
"      --max-header=BYTES    longest header, blank line included (default 1048576)\n"
"      --max-line=BYTES      longest header or text line (default 1048576)\n"
"      --max-packet=BYTES    longest binary packet, and largest row once stored\n"
"                            (default 67108864)\n"
"      --max-buffered=BYTES  unfinished lines and packets held, all experiments\n"
"                            (default: a quarter of the memory)\n"
"      --max-buffered-exp=BYTES  ... in one experiment (default: a quarter\n"
"                            of --max-buffered)\n"
"      --max-fields=N        fields per schema (default 1024)\n"
"      --max-streams=N       streams per connection (default 1024)\n"
"\n"
"  -v, --version             print the version\n"
"  -?, --help                print this help\n"
"      --usage               print a brief usage message\n";

static __dead void
bad(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "oml2-server: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%sTry 'oml2-server --help' for more.\n", usage_text);
	exit(1);
}

/* A string option given again replaces the earlier one. */
static void
setstr(char **dst, const char *arg)
{
	free(*dst);
	*dst = xstrdup(arg);
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

static void
defaults(struct options *o)
{
	memset(o, 0, sizeof(*o));
	o->listen = xstrdup("3003");
	o->loglevel = LOG_LVL_INFO;
	o->spares = 2;
	o->cc.linger = 60;
	o->header_limit = 16384;
	o->header_timeout = 10;
	o->max_pending = 1024;
	o->max_experiments = 1024;
	o->max_source_pending = 256;
	o->max_source_experiments = 256;
	o->oml_bufsize = 1024 * 1024;
	o->keep_ended = 300;
	o->cc.backend = backend_named("sqlite");
	o->cc.pg_host = xstrdup(CONF_PG_HOST);
	o->cc.pg_port = xstrdup(CONF_PG_PORT);
	o->cc.pg_user = xstrdup(CONF_PG_USER);
	o->cc.pg_pass = NULL;
	o->cc.idle_timeout = 60;
	o->cc.hook_timeout = 10;
	o->cc.max_line = CONF_MAX_LINE;
	o->cc.max_header = CONF_MAX_HEADER;
	o->cc.max_packet = CONF_MAX_PACKET;
	o->cc.max_fields = CONF_MAX_FIELDS;
	o->cc.max_streams = CONF_MAX_STREAMS;
	o->cc.max_clients = 4096;
	o->cc.commit_rows = CONF_COMMIT_ROWS;
	/*
	 * A row is visible to readers about 50 ms after it arrives (a WAL
	 * commit with synchronous=NORMAL is a write, not an fsync), unless
	 * 10,000 writes or more came in those 50 ms: at such rates the batch
	 * grows to commit_rows (or for up to a second, as before), so that
	 * a commit that costs more (PostgreSQL's, with its fsync) stays rare.
	 */
	o->cc.commit_ms = CONF_COMMIT_MS;
	o->cc.commit_busy = CONF_COMMIT_BUSY;
	o->cc.commit_max_ms = CONF_COMMIT_MAX_MS;
	o->cc.retry_ms = CONF_RETRY_MS;
}

static void
one(struct options *o, int c, const char *arg, char **datadir)
{
	const char	*why;

	switch (c) {
	case 'D':	setstr(datadir, arg); break;
	case 'H':	setstr(&o->cc.hook, arg); break;
	case O_HOOK_TIMEOUT:
		o->cc.hook_timeout = num("--hook-timeout", arg, 1, 3600);
		break;
	case 'l':	setstr(&o->listen, arg); break;
	case O_USER:	setstr(&o->user, arg); break;
	case O_GROUP:	setstr(&o->group, arg); break;
	case O_ALLOW_ROOT: o->allow_root = 1; break;
	case 't':	o->cc.idle_timeout = num("--timeout", arg, 0, 86400 * 365); break;
	case 'd':	o->loglevel = (int)num("--debug-level", arg, 1, 4); break;
	case O_LOGFILE:	setstr(&o->logfile, arg); break;
	case 'b':
		if ((o->cc.backend = backend_named(arg)) == NULL)
			bad("--backend: unknown backend \"%s\"", arg);
		break;
	case O_PG_HOST:	setstr(&o->cc.pg_host, arg); break;
	case O_PG_PORT:	setstr(&o->cc.pg_port, arg); break;
	case O_PG_USER:	setstr(&o->cc.pg_user, arg); break;
	case O_PG_PASS:	setstr(&o->cc.pg_pass, arg); break;
	case O_PG_CONNECT: setstr(&o->cc.pg_connect, arg); break;
	case O_SPARES:	o->spares = (int)num("--spares", arg, 0, 64); break;
	case O_LINGER:	o->cc.linger = num("--linger", arg, 0, 86400); break;
	case O_HEADER_LIMIT:
		o->header_limit = num("--header-limit", arg, 256,
		    MSG_MAXPAYLOAD - sizeof(struct msg_client));
		break;
	case O_HEADER_TIMEOUT:
		o->header_timeout = num("--header-timeout", arg, 1, 3600);
		break;
	case O_MAX_PENDING:
		o->max_pending = num("--max-pending", arg, 1, 1000000);
		break;
	case O_MAX_EXPERIMENTS:
		o->max_experiments = num("--max-experiments", arg, 1, 100000);
		break;
	case O_MAX_SOURCE_PENDING:
		o->max_source_pending = num("--max-source-pending", arg, 0,
		    1000000);
		break;
	case O_MAX_SOURCE_EXPERIMENTS:
		o->max_source_experiments = num("--max-source-experiments",
		    arg, 0, 100000);
		break;
	case O_PROXY_FROM:
		if (proxy_from_add(arg, &why) == -1)
			bad("--proxy-from %s: %s", arg, why);
		break;
	case O_MAX_CLIENTS:
		o->cc.max_clients = num("--max-clients", arg, 1, 1000000);
		break;
	case O_MAX_HEADER:
		o->cc.max_header = num("--max-header", arg, 1024, 1UL << 30);
		break;
	case O_MAX_LINE:
		o->cc.max_line = num("--max-line", arg, 1024, 1UL << 30);
		break;
	case O_MAX_PACKET:
		o->cc.max_packet = num("--max-packet", arg, 1024, 1UL << 32);
		break;
	case O_MAX_BUFFERED:
		o->cc.max_buffered = num("--max-buffered", arg, 1, 1UL << 48);
		break;
	case O_MAX_BUFFERED_EXP:
		o->cc.max_buffered_exp = num("--max-buffered-exp", arg, 1,
		    1UL << 48);
		break;
	case O_MAX_FIELDS:
		o->cc.max_fields = (int)num("--max-fields", arg, 1, 65535);
		break;
	case O_MAX_STREAMS:
		o->cc.max_streams = (int)num("--max-streams", arg, 1, 65536);
		break;
	case O_OML_COLLECT: setstr(&o->oml_collect, arg); break;
	case O_OML_ID:	setstr(&o->oml_id, arg); break;
	case O_OML_DOMAIN: setstr(&o->oml_domain, arg); break;
	case O_OML_TEXT: o->oml_binary = 0; break;
	case O_OML_BINARY: o->oml_binary = 1; break;
	case O_OML_NOOP: o->oml_noop = 1; break;
	case O_CONTROL:
		if (strcmp(arg, "none") != 0 && arg[0] != '/')
			bad("--control: \"%s\" is not an absolute path (or none)",
			    arg);
		setstr(&o->control, arg);
		o->control_given = 1;
		break;
	case O_METRICS_LISTEN: setstr(&o->metrics_listen, arg); break;
	case O_KEEP_ENDED:
		o->keep_ended = num("--keep-ended", arg, 0, 86400);
		break;
	case O_OML_BUFSIZE:
		o->oml_bufsize = num("--oml-bufsize", arg, 1024, 1UL << 30);
		break;
	case 'v':
		printf("oml2-server (OML Server) %s\nOML Protocol V1--5\n",
		    OML2_VERSION);
		exit(0);
	case 'h':
		fputs(usage_text, stdout);
		putchar('\n');
		fputs(help_text, stdout);
		exit(0);
	case O_USAGE:
		fputs(usage_text, stdout);
		exit(0);
	default:
		bad("internal error: option %d", c);
	}
}

/*
 * The hook must be there at start: a program with a slash in its name is
 * taken as a path, any other is searched in $PATH, as each experiment
 * process will do to run it.  This check is the invoking user's; each
 * experiment process logs it if --user cannot run the hook.
 */
static void
check_hook(const char *prog)
{
	const char	*path, *p, *e;
	char		 f[PATH_MAX];
	struct stat	 st;

	if (*prog == '\0')
		bad("--event-hook: empty program name");
	if (strchr(prog, '/') != NULL) {
		if (stat(prog, &st) == -1)
			bad("--event-hook: %s: %s", prog, strerror(errno));
		if (!S_ISREG(st.st_mode) || access(prog, X_OK) == -1)
			bad("--event-hook: %s: not an executable file", prog);
		return;
	}
	if ((path = getenv("PATH")) == NULL || *path == '\0')
		path = "/bin:/usr/bin";
	for (p = path; ; p = e + 1) {
		e = strchrnul(p, ':');
		snprintf(f, sizeof(f), "%.*s%s%s", (int)(e - p), p,
		    e > p ? "/" : "", prog);
		if (stat(f, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(f, X_OK) == 0)
			return;
		if (*e == '\0')
			break;
	}
	bad("--event-hook: %s: no executable file of that name in PATH (%s)",
	    prog, path);
}

static void
resolve_datadir(struct options *o, char *dir)
{
	char	*env;

	if (dir == NULL && (env = getenv("OML_SQLITE_DIR")) != NULL &&
	    *env != '\0')
		dir = xstrdup(env);
	if (dir == NULL)
		dir = xstrdup(DEFAULT_DATADIR);
	if ((o->cc.datadir = realpath(dir, NULL)) == NULL)
		bad("data directory %s: %s", dir, strerror(errno));
	free(dir);
}

/*
 * The control socket: --control, else oml2-server.sock in the data
 * directory (with PostgreSQL, the one -D names, if it exists; else
 * none).  One server per data directory, so the default never collides.
 */
static void
resolve_control(struct options *o, const char *dir)
{
	char	*real = NULL;

	if (o->control != NULL && strcmp(o->control, "none") == 0) {
		free(o->control);
		o->control = NULL;
		return;
	}
	if (o->control != NULL)
		return;
	if (o->cc.datadir != NULL)
		xasprintf(&o->control, "%s/oml2-server.sock", o->cc.datadir);
	else if (dir != NULL && (real = realpath(dir, NULL)) != NULL)
		xasprintf(&o->control, "%s/oml2-server.sock", real);
	free(real);
}

/* The option if given, else the first set environment variable. */
static char *
from_env(char *opt, const char *var, const char *alias)
{
	char	*v;

	if (opt != NULL)
		return opt;
	if ((v = getenv(var)) != NULL && *v != '\0')
		return xstrdup(v);
	if (alias != NULL && (v = getenv(alias)) != NULL && *v != '\0')
		return xstrdup(v);
	return NULL;
}

/* Self-reporting: off unless a destination is given; --oml-noop wins. */
static void
resolve_report(struct options *o)
{
	char		 host[256];
	const char	*why, *p;

	if (o->oml_noop) {
		free(o->oml_collect);
		o->oml_collect = NULL;
		return;
	}
	o->oml_collect = from_env(o->oml_collect, "OML_COLLECT", "OML_SERVER");
	if (o->oml_collect == NULL)
		return;
	o->oml_domain = from_env(o->oml_domain, "OML_DOMAIN", "OML_EXP_ID");
	o->oml_id = from_env(o->oml_id, "OML_NAME", NULL);
	if (o->oml_domain == NULL)
		o->oml_domain = "oml2-server";
	if (o->oml_id == NULL) {
		if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
			strlcpy(host, "oml2-server", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		o->oml_id = xstrdup(host);
	}
	if (report_dest_check(o->oml_collect, &why) == -1)
		bad("--oml-collect %s: %s", o->oml_collect, why);
	if (!expname_valid(o->oml_domain, strlen(o->oml_domain), &why))
		bad("--oml-domain %s: %s", o->oml_domain, why);
	for (p = o->oml_id; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			bad("--oml-id: control characters are not allowed");
	if (o->oml_id[0] == '\0')
		bad("--oml-id: empty");
	o->cc.report = 1;
}

/*
 * The budgets for unfinished input.  By default a quarter of the memory
 * for all experiments (the rest is the databases', the kernel's and
 * everyone else's) and a quarter of that for one experiment, so that at
 * least four tenants must hold the most they may for the server to be
 * full.  Each must hold one longest packet or two longest lines (input
 * buffers double as they grow), and a megabyte to read into.
 */
static void
resolve_buffers(struct options *o)
{
	uint64_t	 floor, ram;
	long		 pages, psize;

	floor = o->cc.max_packet > 2 * o->cc.max_line ? o->cc.max_packet :
	    2 * o->cc.max_line;
	floor += 1024 * 1024;
	if (o->cc.max_buffered != 0 && o->cc.max_buffered < floor)
		bad("--max-buffered (%llu) is less than --max-packet, or twice "
		    "--max-line, plus 1 MiB (%llu)", (unsigned long long)
		    o->cc.max_buffered, (unsigned long long)floor);
	if (o->cc.max_buffered_exp != 0 && o->cc.max_buffered_exp < floor)
		bad("--max-buffered-exp (%llu) is less than --max-packet, or "
		    "twice --max-line, plus 1 MiB (%llu)", (unsigned long long)
		    o->cc.max_buffered_exp, (unsigned long long)floor);
	if (o->cc.max_buffered == 0) {
		pages = sysconf(_SC_PHYS_PAGES);
		psize = sysconf(_SC_PAGESIZE);
		ram = pages > 0 && psize > 0 ? (uint64_t)pages *
		    (uint64_t)psize : 4ULL << 30;
		o->cc.max_buffered = ram / 4 > floor ? ram / 4 : floor;
		if (o->cc.max_buffered < o->cc.max_buffered_exp)
			o->cc.max_buffered = o->cc.max_buffered_exp;
	}
	if (o->cc.max_buffered_exp == 0)
		o->cc.max_buffered_exp = o->cc.max_buffered / 4 > floor ?
		    o->cc.max_buffered / 4 : floor;
	if (o->cc.max_buffered_exp > o->cc.max_buffered)
		bad("--max-buffered-exp (%llu) is more than --max-buffered "
		    "(%llu)", (unsigned long long)o->cc.max_buffered_exp,
		    (unsigned long long)o->cc.max_buffered);
}

void
options_parse(int argc, char **argv, struct options *o)
{
	char	*datadir = NULL;
	int	 c, idx;

	defaults(o);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":D:H:l:t:d:b:vh", longopts,
	    &idx)) != -1) {
		if (c == '?') {
			if (optopt == '?')
				c = 'h';
			else if (optopt != 0)
				bad("unknown option -%c", optopt);
			else
				bad("unknown option %s", argv[optind - 1]);
		}
		if (c == ':')
			bad("option %s needs an argument", argv[optind - 1]);
		one(o, c, optarg, &datadir);
	}
	if (optind < argc)
		bad("unexpected argument \"%s\"", argv[optind]);
	if (o->group != NULL && o->user == NULL)
		bad("--group needs --user");
	if (o->cc.max_header < o->header_limit)
		bad("--max-header (%zu) is less than --header-limit (%zu)",
		    o->cc.max_header, o->header_limit);
	if (o->cc.hook != NULL)
		check_hook(o->cc.hook);
	if (backend_files(o->cc.backend))
		resolve_datadir(o, datadir);
	else {
		if (datadir == NULL && getenv("OML_SQLITE_DIR") != NULL)
			datadir = xstrdup(getenv("OML_SQLITE_DIR"));
		resolve_control(o, datadir != NULL ? datadir :
		    DEFAULT_DATADIR);
		free(datadir);
	}
	if (backend_files(o->cc.backend))
		resolve_control(o, NULL);
	resolve_buffers(o);
	resolve_report(o);
}
