/*
 * Command line: the seed manual's options, the --oml-* self-reporting
 * options, and the operator limits of DESIGN §5.  Any error is a message
 * with a usage hint and exit status 1; --help, --usage and --version exit
 * 0.  Secrets given on the command line are copied here, and the caller
 * then overwrites the process title so that they leave ps(1) output.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

enum {
	O_USER = 256, O_GROUP, O_LOGFILE, O_USAGE, O_PG_HOST, O_PG_PORT,
	O_PG_USER, O_PG_PASS, O_PG_CONNECT, O_SPARES, O_LINGER,
	O_HEADER_LIMIT, O_HEADER_TIMEOUT, O_MAX_PENDING, O_MAX_EXPERIMENTS,
	O_MAX_CLIENTS, O_MAX_LINE, O_MAX_PACKET, O_MAX_FIELDS, O_MAX_STREAMS,
	O_OML_COLLECT, O_OML_ID, O_OML_DOMAIN, O_OML_TEXT, O_OML_BINARY,
	O_OML_NOOP,
};

static const struct option longopts[] = {
	{ "data-dir",		required_argument, NULL, 'D' },
	{ "event-hook",		required_argument, NULL, 'H' },
	{ "listen",		required_argument, NULL, 'l' },
	{ "user",		required_argument, NULL, O_USER },
	{ "group",		required_argument, NULL, O_GROUP },
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
	{ "max-clients",	required_argument, NULL, O_MAX_CLIENTS },
	{ "max-line",		required_argument, NULL, O_MAX_LINE },
	{ "max-packet",		required_argument, NULL, O_MAX_PACKET },
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
	{ "version",		no_argument,	   NULL, 'v' },
	{ "help",		no_argument,	   NULL, 'h' },
	{ "usage",		no_argument,	   NULL, O_USAGE },
	{ NULL, 0, NULL, 0 }
};

static const char usage_text[] =
"usage: oml2-server [-D dir] [-H hook] [-l [addr:]port] [--user=name]\n"
"                   [--group=name] [-t seconds] [-d level] [--logfile=file]\n"
"                   [-b sqlite|postgresql] [--pg-host=host] [--pg-port=port]\n"
"                   [--pg-user=user] [--pg-pass=pass] [--pg-connect=conninfo]\n"
"                   [--oml-collect=uri] [limits...] [--usage] [-v] [-?]\n";

static const char help_text[] =
"oml2-server: collect OML measurement streams into per-experiment databases\n"
"\n"
"  -D, --data-dir=DIR        SQLite databases go in DIR (default: $OML_SQLITE_DIR,\n"
"                            else " DEFAULT_DATADIR ")\n"
"  -l, --listen=[ADDR:]PORT  listen on PORT (number or service; default 3003),\n"
"                            on all addresses unless ADDR is given\n"
"  -t, --timeout=SECONDS     reap clients idle this long (default 60; 0 = never)\n"
"      --user=NAME           run experiment processes as this user\n"
"      --group=NAME          ... and this group (default: the user's group)\n"
"  -d, --debug-level=LEVEL   1=ERROR 2=WARNING 3=INFO 4=DEBUG (default 3)\n"
"      --logfile=FILE        log to FILE instead of stderr ('-' is stderr)\n"
"  -H, --event-hook=PROGRAM  run PROGRAM for database events (see the manual)\n"
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
"      --oml-text, --oml-binary  encoding (default text)\n"
"      --oml-noop            disable self-reporting\n"
"\n"
"Processes and limits:\n"
"      --spares=N            idle pre-forked experiment processes (default 2)\n"
"      --linger=SECONDS      keep an experiment's process this long after its\n"
"                            last client (default 60)\n"
"      --header-limit=BYTES  header bytes allowed before the experiment id\n"
"                            (default 16384)\n"
"      --header-timeout=SECONDS  time allowed to name the experiment (default 10)\n"
"      --max-pending=N       connections still naming their experiment (1024)\n"
"      --max-experiments=N   experiments at once (default 1024)\n"
"      --max-clients=N       clients per experiment (default 4096)\n"
"      --max-line=BYTES      longest header or text line (default 1048576)\n"
"      --max-packet=BYTES    longest binary packet (default 67108864)\n"
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
	o->listen = "3003";
	o->loglevel = LOG_LVL_INFO;
	o->spares = 2;
	o->linger = 60;
	o->header_limit = 16384;
	o->header_timeout = 10;
	o->max_pending = 1024;
	o->max_experiments = 1024;
	o->cc.backend = BACKEND_SQLITE;
	o->cc.pg_host = "localhost";
	o->cc.pg_port = "postgresql";
	o->cc.pg_user = "oml";
	o->cc.pg_pass = NULL;
	o->cc.idle_timeout = 60;
	o->cc.max_line = 1024 * 1024;
	o->cc.max_packet = 64 * 1024 * 1024;
	o->cc.max_fields = 1024;
	o->cc.max_streams = 1024;
	o->cc.max_clients = 4096;
	o->cc.commit_rows = 100000;
	o->cc.commit_ms = 1000;
}

/* Options whose feature is not in this build must not pretend to work. */
static void
unavailable(const char *opt)
{
	bad("%s: this feature is not available in this build", opt);
}

/* A --pg-* option; the last one given wins. */
static void
pg_opt(char **dst, unsigned bit, const char *arg)
{
	static unsigned	 copied;	/* which *dst are our copies */

	if (copied & bit)
		free(*dst);
	*dst = xstrdup(arg);
	copied |= bit;
}

static void
one(struct options *o, int c, const char *arg, char **datadir)
{
	switch (c) {
	case 'D':	*datadir = xstrdup(arg); break;
	case 'H':	unavailable("--event-hook"); break;
	case 'l':	o->listen = xstrdup(arg); break;
	case O_USER:	o->user = xstrdup(arg); break;
	case O_GROUP:	o->group = xstrdup(arg); break;
	case 't':	o->cc.idle_timeout = num("--timeout", arg, 0, 86400 * 365); break;
	case 'd':	o->loglevel = (int)num("--debug-level", arg, 1, 4); break;
	case O_LOGFILE:	o->logfile = xstrdup(arg); break;
	case 'b':
		if (strcmp(arg, "sqlite") == 0)
			o->cc.backend = BACKEND_SQLITE;
		else if (strcmp(arg, "postgresql") == 0)
			o->cc.backend = BACKEND_POSTGRESQL;
		else
			bad("--backend: unknown backend \"%s\"", arg);
		break;
	case O_PG_HOST:	pg_opt(&o->cc.pg_host, 1, arg); break;
	case O_PG_PORT:	pg_opt(&o->cc.pg_port, 2, arg); break;
	case O_PG_USER:	pg_opt(&o->cc.pg_user, 4, arg); break;
	case O_PG_PASS:	pg_opt(&o->cc.pg_pass, 8, arg); break;
	case O_PG_CONNECT: pg_opt(&o->cc.pg_connect, 16, arg); break;
	case O_SPARES:	o->spares = (int)num("--spares", arg, 0, 64); break;
	case O_LINGER:	o->linger = num("--linger", arg, 0, 86400); break;
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
	case O_MAX_CLIENTS:
		o->cc.max_clients = num("--max-clients", arg, 1, 1000000);
		break;
	case O_MAX_LINE:
		o->cc.max_line = num("--max-line", arg, 1024, 1UL << 30);
		break;
	case O_MAX_PACKET:
		o->cc.max_packet = num("--max-packet", arg, 1024, 1UL << 32);
		break;
	case O_MAX_FIELDS:
		o->cc.max_fields = (int)num("--max-fields", arg, 1, 65535);
		break;
	case O_MAX_STREAMS:
		o->cc.max_streams = (int)num("--max-streams", arg, 1, 65536);
		break;
	case O_OML_COLLECT:
	case O_OML_ID:
	case O_OML_DOMAIN:
	case O_OML_TEXT:
	case O_OML_BINARY:
		unavailable("--oml-*");
		break;
	case O_OML_NOOP:
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
	if (o->cc.backend == BACKEND_SQLITE)
		resolve_datadir(o, datadir);
	else
		free(datadir);
	o->cc.linger = o->linger;
}
