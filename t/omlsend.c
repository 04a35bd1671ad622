/*
 * t/omlsend -- a fast OMSP client for the tests and the benchmarks.  It
 * generates a header and deterministic rows (or sends a file verbatim)
 * over any number of TCP connections multiplexed with poll(), or into a
 * file.  Everything is encoded into memory before the first connection
 * is made, so the measured time is the time to hand the bytes to the
 * kernel; the rows are the same for every connection and are encoded
 * only once.
 *
 * A connection is "acknowledged" once every byte of it is written and
 * acknowledged by the server's TCP (nothing left in our send queue)
 * before the server closed it: a server that reads what its kernel holds
 * before it closes a connection has then received all of it.  A
 * connection the server closes or resets earlier is reported on stderr,
 * with its number, and makes the exit status 4.
 */
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/proto.h"

enum { EX_OK, EX_RUNTIME, EX_USAGE, EX_TIMEOUT, EX_EARLY };

static const char usage_text[] =
"usage: omlsend [options] DEST\n"
"  DEST: HOST:PORT | [V6ADDR]:PORT | tcp:HOST:PORT | file:PATH | - (stdout)\n"
"  -e NAME    experiment id (default \"omlsend\")\n"
"  -E N       spread connections over N experiments: connection i (from 0)\n"
"             uses NAME-(i mod N)\n"
"  -s SCHEMA  a schema declaration \"IDX NAME f:t ...\", repeatable, sent as\n"
"             given; default \"1 gen n:int32 x:double s:string\".  One that\n"
"             does not parse is still sent, but gets no rows\n"
"  -n ROWS    rows per declared stream per connection (default 10;\n"
"             0 = headers only)\n"
"  -c CONN    connections at once (default 1), multiplexed with poll()\n"
"  -b | -t    binary | text encoding (default text)\n"
"  -L         binary: long packets only\n"
"  -S SENDER  sender-id (default \"omlsend\"; with -c > 1 connection i\n"
"             uses SENDER-i)\n"
"  -a APP     app-name (default \"omlsend\")\n"
"  -P VER     protocol version 1..5 (default 5; below 4 uses the\n"
"             experiment-id and start_time keys)\n"
"  -T SECS    start-time (default: now)\n"
"  -G SEQS    leave out the rows with these sequence numbers (a list such\n"
"             as 5,6,7 or a range 5-7, repeatable): gaps the server sees\n"
"  -B ROWS    burst size: after every ROWS rows of a connection pause (-p)\n"
"             before the next burst\n"
"  -p MS      pause between bursts in milliseconds (default 100)\n"
"  -H MS      hold each connection open this long after sending everything\n"
"             and seeing it acknowledged\n"
"  -W         after sending, wait until the server closes the connection:\n"
"             exit 0 if it does, 3 if it does not within -w seconds (no\n"
"             acknowledgement is awaited)\n"
"  -w SECS    timeout for -W (default 10)\n"
"  -r FILE    raw mode: send FILE's bytes verbatim (no generated header or\n"
"             rows); combines with -c, -C, -d, -H, -W\n"
"  -C BYTES   write in chunks of at most BYTES bytes\n"
"  -d MS      delay between chunks in milliseconds (with -C)\n"
"  -l ADDR    connect from local address ADDR (e.g. 127.0.0.2)\n"
"  -Z BYTES   blobs of BYTES bytes: the 4 above, then 'z's\n"
"  -q         quiet (no summary)\n"
"  -h         this help\n"
"Row r (1..ROWS) of each stream: integers and guid r, double r + 0.25,\n"
"string \"row-r\", blob \"b\" + r mod 1000 in 3 digits, bool r odd, vectors\n"
"3 elements from r; timestamp r / 1000.  Streams are interleaved; stream 0\n"
"gets no rows.  Summary on stderr:\n"
"  omlsend: ROWS rows on CONNS connections in SECS s (RATE rows/s)\n"
"  omlsend: ACKED of CONNS connections acknowledged\n"
"  omlsend: first byte at EPOCH-SECONDS (wall clock, for timing readers)\n"
"A connection is acknowledged once all its bytes are written and the\n"
"server's TCP has acknowledged them, before the server closed it; one the\n"
"server closed or reset earlier is named on stderr (\"connection N: ...\").\n"
"Exit: 0 ok, 1 runtime error, 2 usage, 3 -W timeout, 4 the server closed\n"
"a connection before all its bytes were acknowledged (without -W).\n";

struct opts {
	const char	 *expid;
	unsigned long	  nexp;		/* 0: no spreading */
	const char	**schemas;
	int		  nschemas;
	unsigned long	  rows;
	unsigned long	  conns;
	int		  binary;
	int		  longpk;
	const char	 *sender;
	const char	 *app;
	unsigned long	  proto;
	long		  start_time;
	unsigned long	  burst;
	unsigned long	  pause_ms;
	unsigned long	  hold_ms;
	int		  waitclose;
	unsigned long	  wait_s;
	const char	 *raw;
	unsigned long	 *skip;		/* -G: pairs of first, last */
	int		  nskip;
	unsigned long	  chunk;
	unsigned long	  delay_ms;
	const char	 *local;
	int		  quiet;
	unsigned long	  blob_len;
};

enum dkind { D_TCP, D_FILE, D_STDOUT };

struct dest {
	enum dkind	 kind;
	const char	*text;
	const char	*path;
	struct addrinfo	*ai;
	struct addrinfo	*local;		/* -l */
};

/* The rows, shared by every connection. */
struct payload {
	struct buf	 body;
	size_t		*bursts;	/* body offsets where a burst ends */
	size_t		 nbursts;
	unsigned long	 rows;
};

enum cstate {
	C_CONNECTING, C_SENDING, C_PAUSED, C_ACKING, C_HOLD, C_WAIT, C_DONE
};

#define ACK_POLL_MS	2	/* how often an unacknowledged queue is looked at */

struct conn {
	int		 fd;
	int		 idx;
	enum cstate	 st;
	struct addrinfo	*ai;		/* address being tried */
	struct buf	 hdr;
	size_t		 off;		/* bytes of hdr + body written */
	size_t		 total;
	size_t		 burst;		/* next entry of payload.bursts */
	size_t		 chunk_left;
	uint64_t	 wake;		/* ms, in the timed states */
	int		 acked;		/* every byte acknowledged, not closed */
	int		 result;
};

static struct opts	 opt;
static struct dest	 dst;
static struct payload	 pl;
static struct conn	*conns;
static double		 t_first = -1, t_last;
static double		 t_first_wall;	/* the first write, wall clock */

static __dead void
usage(void)
{
	fputs(usage_text, stderr);
	exit(EX_USAGE);
}

static __dead void PRINTFLIKE(2, 3)
die(int code, const char *fmt, ...)
{
	va_list	 ap;

	fputs("omlsend: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static double
mono(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long
num(const char *s, unsigned long min, unsigned long max, int flag)
{
	unsigned long	 v;

	if (parse_uint(s, max, &v) == -1 || v < min)
		die(EX_USAGE, "-%c: expected a number in %lu..%lu, not '%s'",
		    flag, min, max, s);
	return v;
}

/* -G 5,6,9-12: sequence numbers whose rows are not sent. */
static void
add_skips(char *arg)
{
	char		*tok, *dash;
	unsigned long	 a, b;

	for (tok = strtok(arg, ","); tok != NULL; tok = strtok(NULL, ",")) {
		if ((dash = strchr(tok, '-')) != NULL)
			*dash++ = '\0';
		a = num(tok, 1, INT32_MAX, 'G');
		b = dash != NULL ? num(dash, a, INT32_MAX, 'G') : a;
		opt.skip = xreallocarray(opt.skip, (size_t)opt.nskip + 2,
		    sizeof(*opt.skip));
		opt.skip[opt.nskip++] = a;
		opt.skip[opt.nskip++] = b;
	}
}

static int
skipped(unsigned long r)
{
	int	 i;

	for (i = 0; i < opt.nskip; i += 2)
		if (r >= opt.skip[i] && r <= opt.skip[i + 1])
			return 1;
	return 0;
}

static void
parse_opts(int argc, char **argv)
{
	int	 ch;

	opt.expid = opt.sender = opt.app = "omlsend";
	opt.rows = 10;
	opt.conns = 1;
	opt.proto = 5;
	opt.start_time = (long)time(NULL);
	opt.pause_ms = 100;
	opt.wait_s = 10;
	opt.blob_len = 4;
	opt.schemas = xcalloc((size_t)argc, sizeof(*opt.schemas));
	while ((ch = getopt(argc, argv,
	    "e:E:s:n:c:btLS:a:P:T:G:B:p:H:Ww:r:C:d:l:qZ:h"))
	    != -1) {
		switch (ch) {
		case 'e': opt.expid = optarg; break;
		case 'E': opt.nexp = num(optarg, 1, 1000000, ch); break;
		case 's': opt.schemas[opt.nschemas++] = optarg; break;
		case 'n': opt.rows = num(optarg, 0, INT32_MAX, ch); break;
		case 'c': opt.conns = num(optarg, 1, 1000000, ch); break;
		case 'b': opt.binary = 1; break;
		case 't': opt.binary = 0; break;
		case 'L': opt.longpk = 1; break;
		case 'S': opt.sender = optarg; break;
		case 'a': opt.app = optarg; break;
		case 'P': opt.proto = num(optarg, 1, 5, ch); break;
		case 'T': opt.start_time = (long)num(optarg, 0, LONG_MAX, ch);
			break;
		case 'G': add_skips(optarg); break;
		case 'B': opt.burst = num(optarg, 1, INT32_MAX, ch); break;
		case 'p': opt.pause_ms = num(optarg, 0, 86400000, ch); break;
		case 'H': opt.hold_ms = num(optarg, 0, 86400000, ch); break;
		case 'W': opt.waitclose = 1; break;
		case 'w': opt.wait_s = num(optarg, 0, 86400, ch); break;
		case 'r': opt.raw = optarg; break;
		case 'C': opt.chunk = num(optarg, 1, SIZE_MAX / 2, ch); break;
		case 'd': opt.delay_ms = num(optarg, 0, 86400000, ch); break;
		case 'l': opt.local = optarg; break;
		case 'q': opt.quiet = 1; break;
		case 'Z': opt.blob_len = num(optarg, 4, 1 << 24, ch); break;
		case 'h':
			fputs(usage_text, stdout);
			exit(EX_OK);
		default:
			usage();
		}
	}
	if (argc - optind != 1)
		usage();
	dst.text = argv[optind];
	if (opt.nschemas == 0)
		opt.schemas[opt.nschemas++] = "1 gen n:int32 x:double s:string";
}

/* ---- destination ------------------------------------------------------ */

static void
resolve(char *host, const char *port)
{
	struct addrinfo	 hints;
	int		 e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((e = getaddrinfo(host, port, &hints, &dst.ai)) != 0)
		die(EX_RUNTIME, "%s: %s", dst.text, gai_strerror(e));
	if (opt.local == NULL)
		return;
	hints.ai_flags = AI_NUMERICHOST;
	hints.ai_family = dst.ai->ai_family;
	if ((e = getaddrinfo(opt.local, NULL, &hints, &dst.local)) != 0)
		die(EX_USAGE, "-l %s: %s", opt.local, gai_strerror(e));
}

static void
parse_dest(void)
{
	const char	*s = dst.text;
	char		*copy, *host, *port, *end;

	if (strcmp(s, "-") == 0) {
		dst.kind = D_STDOUT;
		return;
	}
	if (strncmp(s, "file:", 5) == 0) {
		dst.kind = D_FILE;
		dst.path = s + 5;
		return;
	}
	dst.kind = D_TCP;
	if (strncmp(s, "tcp:", 4) == 0)
		s += 4;
	if (strncmp(s, "//", 2) == 0)
		s += 2;
	host = copy = xstrdup(s);
	if (host[0] == '[') {
		if ((end = strchr(host, ']')) == NULL ||
		    (end[1] != ':' && end[1] != '\0'))
			die(EX_USAGE, "bad destination '%s'", dst.text);
		*end = '\0';
		port = end[1] == ':' ? end + 2 : "3003";
		host++;
	} else if ((port = strrchr(host, ':')) != NULL) {
		*port++ = '\0';
		if (strchr(host, ':') != NULL)
			die(EX_USAGE, "IPv6 addresses need brackets: '%s'",
			    dst.text);
	} else
		port = "3003";
	if (*host == '\0' || *port == '\0')
		die(EX_USAGE, "bad destination '%s'", dst.text);
	resolve(host, port);
	free(copy);
}

/* ---- what is sent ----------------------------------------------------- */

/* Header lines, with the schemas exactly as given on the command line. */
static void
build_header(struct buf *b, int i)
{
	int	 old = opt.proto < 4, k;

	buf_printf(b, "protocol: %lu\n", opt.proto);
	if (opt.nexp > 0)
		buf_printf(b, "%s: %s-%lu\n", old ? "experiment-id" : "domain",
		    opt.expid, (unsigned long)i % opt.nexp);
	else
		buf_printf(b, "%s: %s\n", old ? "experiment-id" : "domain",
		    opt.expid);
	buf_printf(b, "%s: %ld\n", old ? "start_time" : "start-time",
	    opt.start_time);
	if (opt.conns > 1)
		buf_printf(b, "sender-id: %s-%d\n", opt.sender, i);
	else
		buf_printf(b, "sender-id: %s\n", opt.sender);
	buf_printf(b, "app-name: %s\n", opt.app);
	for (k = 0; k < opt.nschemas; k++)
		buf_printf(b, "schema: %s\n", opt.schemas[k]);
	buf_printf(b, "content: %s\n\n", opt.binary ? "binary" : "text");
}

/* Storage for one row's values that are not held in struct oml_value. */
struct rowstore {
	char		 str[32];
	char		*blob;		/* opt.blob_len bytes, at least 4 */
	int32_t		 i32[3];
	uint32_t	 u32[3];
	int64_t		 i64[3];
	uint64_t	 u64[3];
	double		 d[3];
	uint8_t		 b[3];
};

static void
gen_vector(struct oml_value *v, struct rowstore *rs)
{
	static const struct { enum oml_type t; size_t off; } map[] = {
		{ OML_VINT32, offsetof(struct rowstore, i32) },
		{ OML_VUINT32, offsetof(struct rowstore, u32) },
		{ OML_VINT64, offsetof(struct rowstore, i64) },
		{ OML_VUINT64, offsetof(struct rowstore, u64) },
		{ OML_VDOUBLE, offsetof(struct rowstore, d) },
		{ OML_VBOOL, offsetof(struct rowstore, b) },
	};
	size_t	 i;

	for (i = 0; i < nitems(map); i++)
		if (map[i].t == v->type)
			v->u.vec.p = (const char *)rs + map[i].off;
	v->u.vec.n = 3;
}

static void
fill_store(struct rowstore *rs, unsigned long r)
{
	int	 k;

	snprintf(rs->str, sizeof(rs->str), "row-%lu", r);
	rs->blob[0] = 'b';
	rs->blob[1] = (char)('0' + r % 1000 / 100);
	rs->blob[2] = (char)('0' + r % 100 / 10);
	rs->blob[3] = (char)('0' + r % 10);
	for (k = 0; k < 3; k++) {
		rs->i32[k] = (int32_t)(r + k);
		rs->u32[k] = (uint32_t)(r + k);
		rs->i64[k] = (int64_t)(r + k);
		rs->u64[k] = r + k;
		rs->d[k] = (double)(r + k) + 0.25;
		rs->b[k] = (r + k) % 2;
	}
}

/* Row r's values for one schema (§ "generated values" in -h). */
static void
gen_row(const struct oml_schema *sc, unsigned long r, struct rowstore *rs,
    struct oml_value *v)
{
	int	 i;

	for (i = 0; i < sc->nfields; i++) {
		v[i].type = sc->fields[i].type;
		v[i].null = 0;
		switch (v[i].type) {
		case OML_INT32: v[i].u.i32 = (int32_t)r; break;
		case OML_UINT32: v[i].u.u32 = (uint32_t)r; break;
		case OML_INT64: v[i].u.i64 = (int64_t)r; break;
		case OML_UINT64:
		case OML_GUID: v[i].u.u64 = r; break;
		case OML_DOUBLE: v[i].u.d = (double)r + 0.25; break;
		case OML_BOOL: v[i].u.b = r % 2; break;
		case OML_STRING:
			v[i].u.s.p = rs->str;
			v[i].u.s.len = strlen(rs->str);
			break;
		case OML_BLOB:
			v[i].u.s.p = rs->blob;
			v[i].u.s.len = opt.blob_len;
			break;
		default:
			gen_vector(&v[i], rs);
			break;
		}
	}
}

/* Parse the -s declarations that will get rows; complain about the rest. */
static int
row_schemas(struct oml_schema *sc)
{
	char	 err[256];
	int	 i, n = 0;

	for (i = 0; i < opt.nschemas; i++) {
		if (schema_parse(opt.schemas[i], strlen(opt.schemas[i]), 0,
		    &sc[n], err, sizeof(err)) == -1) {
			if (!opt.quiet)
				fprintf(stderr, "omlsend: schema '%s' sent "
				    "without rows: %s\n", opt.schemas[i], err);
			continue;
		}
		if (opt.binary && (sc[n].index > 255 || sc[n].nfields > 255))
			die(EX_USAGE, "schema '%s' does not fit binary packets",
			    opt.schemas[i]);
		if (sc[n].index == 0) {
			schema_free(&sc[n]);
			continue;
		}
		n++;
	}
	return n;
}

static void
build_rows(void)
{
	struct oml_schema	*sc;
	struct oml_value	*v;
	struct rowstore		 rs;
	unsigned long		 r;
	int			 n, k, maxf = 1;

	sc = xcalloc((size_t)opt.nschemas, sizeof(*sc));
	n = row_schemas(sc);
	for (k = 0; k < n; k++)
		maxf = sc[k].nfields > maxf ? sc[k].nfields : maxf;
	v = xcalloc((size_t)maxf, sizeof(*v));
	rs.blob = xcalloc(1, opt.blob_len);
	memset(rs.blob, 'z', opt.blob_len);
	if (opt.burst > 0)
		pl.bursts = xcalloc(opt.rows * (size_t)n / opt.burst + 1,
		    sizeof(*pl.bursts));
	for (r = 1; n > 0 && r <= opt.rows; r++) {
		if (skipped(r))
			continue;
		fill_store(&rs, r);
		for (k = 0; k < n; k++) {
			gen_row(&sc[k], r, &rs, v);
			if (opt.binary)
				enc_bin_row(&pl.body, (int)sc[k].index,
				    (int32_t)r, (double)r / 1000.0, v,
				    sc[k].nfields, opt.longpk);
			else
				enc_text_row(&pl.body, (int)sc[k].index,
				    (int32_t)r, (double)r / 1000.0, v,
				    sc[k].nfields);
			pl.rows++;
			if (opt.burst > 0 && pl.rows % opt.burst == 0)
				pl.bursts[pl.nbursts++] = pl.body.len;
		}
	}
	for (k = 0; k < n; k++)
		schema_free(&sc[k]);
	free(sc);
	free(v);
	free(rs.blob);
}

static void
read_raw(void)
{
	char	 tmp[65536];
	ssize_t	 n;
	int	 fd;

	if ((fd = open(opt.raw, O_RDONLY | O_CLOEXEC)) == -1)
		die(EX_RUNTIME, "%s: %s", opt.raw, strerror(errno));
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_add(&pl.body, tmp, (size_t)n);
	if (n == -1)
		die(EX_RUNTIME, "%s: %s", opt.raw, strerror(errno));
	close(fd);
}

/* ---- connections ------------------------------------------------------ */

static void
raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    opt.conns + 16 > rl.rlim_cur)
		die(EX_RUNTIME, "%lu connections need more descriptors than "
		    "the limit of %lu", opt.conns, (unsigned long)rl.rlim_cur);
}

/* Start a non-blocking connect to c->ai or the next address that takes. */
static void
conn_start(struct conn *c)
{
	int	 one = 1, e = 0;

	for (; c->ai != NULL; c->ai = c->ai->ai_next) {
		c->fd = socket(c->ai->ai_family, c->ai->ai_socktype |
		    SOCK_NONBLOCK | SOCK_CLOEXEC, c->ai->ai_protocol);
		if (c->fd == -1) {
			e = errno;
			continue;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (dst.local != NULL && bind(c->fd, dst.local->ai_addr,
		    dst.local->ai_addrlen) == -1)
			die(EX_RUNTIME, "-l %s: %s", opt.local, strerror(errno));
		if (connect(c->fd, c->ai->ai_addr, c->ai->ai_addrlen) == 0) {
			c->st = C_SENDING;
			return;
		}
		if ((e = errno) == EINPROGRESS) {
			c->st = C_CONNECTING;
			return;
		}
		close(c->fd);
	}
	die(EX_RUNTIME, "connect to %s: %s", dst.text, strerror(e));
}

/* A pending connect finished: go on, or try the next address. */
static void
conn_connected(struct conn *c)
{
	int		 e = 0;
	socklen_t	 len = sizeof(e);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) == -1)
		e = errno;
	if (e == 0) {
		c->st = C_SENDING;
		return;
	}
	close(c->fd);
	if (c->ai->ai_next == NULL)
		die(EX_RUNTIME, "connect to %s: %s", dst.text, strerror(e));
	c->ai = c->ai->ai_next;
	conn_start(c);
}

static int
open_file(void)
{
	int	 fd;

	if (dst.kind == D_STDOUT)
		return STDOUT_FILENO;
	fd = open(dst.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		die(EX_RUNTIME, "%s: %s", dst.path, strerror(errno));
	return fd;
}

static void
conns_init(void)
{
	struct conn	*c;
	unsigned long	 i;

	conns = xcalloc(opt.conns, sizeof(*conns));
	for (i = 0; i < opt.conns; i++) {
		c = &conns[i];
		c->idx = (int)i;
		buf_init(&c->hdr);
		if (opt.raw == NULL)
			build_header(&c->hdr, c->idx);
		c->total = c->hdr.len + pl.body.len;
		c->chunk_left = opt.chunk;
		if (dst.kind != D_TCP) {
			c->fd = open_file();
			c->st = C_SENDING;
		} else {
			c->ai = dst.ai;
			conn_start(c);
		}
	}
}

static void
conn_close(struct conn *c, int result)
{
	if (c->fd != STDOUT_FILENO)
		close(c->fd);
	c->fd = -1;
	c->st = C_DONE;
	c->result = result;
	buf_free(&c->hdr);
}

/* Everything is written: hold, then wait for the close or close. */
static void
conn_after_hold(struct conn *c, uint64_t now)
{
	if (opt.waitclose) {
		c->st = C_WAIT;
		c->wake = now + opt.wait_s * 1000;
	} else
		conn_close(c, EX_OK);
}

static void
conn_acked(struct conn *c, uint64_t now)
{
	c->acked = 1;
	if (opt.hold_ms > 0) {
		c->st = C_HOLD;
		c->wake = now + opt.hold_ms;
	} else
		conn_after_hold(c, now);
}

/* Bytes written but not yet acknowledged by the server's TCP. */
static size_t
conn_unacked(const struct conn *c)
{
	int	 n;

	if (dst.kind != D_TCP)
		return 0;
	if (ioctl(c->fd, SIOCOUTQ, &n) == -1)
		die(EX_RUNTIME, "connection %d: SIOCOUTQ: %s", c->idx,
		    strerror(errno));
	return n > 0 ? (size_t)n : 0;
}

static void
conn_early(struct conn *c, const char *how)
{
	fprintf(stderr, "omlsend: connection %d: the server %s it after %zu "
	    "of %zu bytes\n", c->idx, how, c->off - conn_unacked(c), c->total);
	conn_close(c, EX_EARLY);
}

/* Still acknowledging: has the server closed or reset the connection? */
static void
conn_ack_check(struct conn *c, uint64_t now)
{
	char	 b;
	ssize_t	 n;

	/* First the close, then the queue: a FIN acknowledges all before it. */
	n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (conn_unacked(c) == 0) {
		conn_acked(c, now);
		return;
	}
	if (n == 0)
		conn_early(c, "closed");
	else if (n == -1 && errno != EAGAIN && errno != EINTR)
		conn_early(c, errno == ECONNRESET ? "reset" : "lost");
	else
		c->wake = now + ACK_POLL_MS;
}

static void
conn_sent(struct conn *c, uint64_t now)
{
	if (opt.waitclose) {
		conn_acked(c, now);
		return;
	}
	c->st = C_ACKING;
	conn_ack_check(c, now);
}

/* The next contiguous bytes to write, cut at chunk and burst ends. */
static size_t
conn_span(struct conn *c, const char **p)
{
	size_t	 len, end = c->total, b;

	if (c->burst < pl.nbursts) {
		b = c->hdr.len + pl.bursts[c->burst];
		end = b < end ? b : end;
	}
	if (c->off < c->hdr.len) {
		*p = c->hdr.p + c->off;
		end = end < c->hdr.len ? end : c->hdr.len;
	} else
		*p = pl.body.p + (c->off - c->hdr.len);
	len = end - c->off;
	if (opt.chunk > 0 && len > c->chunk_left)
		len = c->chunk_left;
	return len;
}

/* After a write: pause at a burst or chunk end if one was reached. */
static int
conn_pause(struct conn *c, size_t n, uint64_t now)
{
	if (c->burst < pl.nbursts &&
	    c->off == c->hdr.len + pl.bursts[c->burst]) {
		c->burst++;
		c->chunk_left = opt.chunk;	/* a burst starts a chunk */
		if (c->off == c->total)
			return 0;
		c->st = C_PAUSED;
		c->wake = now + opt.pause_ms;
		return 1;
	}
	if (opt.chunk > 0 && (c->chunk_left -= n) == 0) {
		c->chunk_left = opt.chunk;
		if (opt.delay_ms > 0 && c->off < c->total) {
			c->st = C_PAUSED;
			c->wake = now + opt.delay_ms;
			return 1;
		}
	}
	return 0;
}

static void
conn_write_error(struct conn *c, int e)
{
	if (e == EPIPE || e == ECONNRESET) {
		if (opt.waitclose)
			conn_close(c, EX_OK);
		else
			conn_early(c, "closed");
		return;
	}
	die(EX_RUNTIME, "connection %d: write: %s", c->idx, strerror(e));
}

static void
conn_send(struct conn *c)
{
	const char	*p;
	size_t		 len;
	ssize_t		 n;

	while (c->st == C_SENDING) {
		if (c->off == c->total) {
			conn_sent(c, now_mono_ms());
			return;
		}
		len = conn_span(c, &p);
		if (t_first < 0) {
			t_first = mono();	/* the first write's own time counts */
			t_first_wall = now_real();
		}
		if ((n = write(c->fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_write_error(c, errno);
			return;
		}
		t_last = mono();
		c->off += (size_t)n;
		if (conn_pause(c, (size_t)n, now_mono_ms()))
			return;
	}
}

/* -W: anything but EAGAIN ends the wait (the server sends nothing). */
static void
conn_read(struct conn *c)
{
	char	 tmp[4096];
	ssize_t	 n;

	while ((n = read(c->fd, tmp, sizeof(tmp))) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		conn_close(c, EX_OK);
}

static int
conn_timed(const struct conn *c)
{
	return c->st == C_PAUSED || c->st == C_ACKING || c->st == C_HOLD ||
	    c->st == C_WAIT;
}

static void
conn_timer(struct conn *c, uint64_t now)
{
	if (conn_timed(c) && now < c->wake)
		return;
	if (c->st == C_ACKING)
		conn_ack_check(c, now);
	else if (c->st == C_PAUSED) {
		c->st = C_SENDING;
		conn_send(c);
	} else if (c->st == C_HOLD)
		conn_after_hold(c, now);
	else if (c->st == C_WAIT) {
		fprintf(stderr, "omlsend: connection %d: not closed by the "
		    "server within %lu s\n", c->idx, opt.wait_s);
		conn_close(c, EX_TIMEOUT);
	}
}

/* Which events a connection waits for; 0 if it waits only for time. */
static short
conn_events(const struct conn *c)
{
	switch (c->st) {
	case C_CONNECTING:
	case C_SENDING:
		return POLLOUT;
	case C_WAIT:
		return POLLIN;
	default:
		return 0;
	}
}

static int
poll_timeout(uint64_t now)
{
	uint64_t	 next = UINT64_MAX;
	unsigned long	 i;

	for (i = 0; i < opt.conns; i++) {
		if (conn_timed(&conns[i]))
			next = conns[i].wake < next ? conns[i].wake : next;
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static void
handle(struct conn *c, short rev)
{
	if (c->st == C_CONNECTING)
		conn_connected(c);
	if (c->st == C_SENDING)
		conn_send(c);
	else if (c->st == C_WAIT && (rev & (POLLIN | POLLHUP | POLLERR)))
		conn_read(c);
}

static void
run(void)
{
	struct pollfd	*pfd;
	struct conn	**who;
	unsigned long	 i, n, live;
	uint64_t	 now;

	pfd = xcalloc(opt.conns, sizeof(*pfd));
	who = xcalloc(opt.conns, sizeof(*who));
	for (;;) {
		now = now_mono_ms();
		for (i = n = live = 0; i < opt.conns; i++) {
			conn_timer(&conns[i], now);
			if (conns[i].st != C_DONE)
				live++;
			if (conn_events(&conns[i]) == 0)
				continue;
			pfd[n].fd = conns[i].fd;
			pfd[n].events = conn_events(&conns[i]);
			who[n++] = &conns[i];
		}
		if (live == 0)
			break;
		if (poll(pfd, n, poll_timeout(now)) == -1 && errno != EINTR)
			die(EX_RUNTIME, "poll: %s", strerror(errno));
		for (i = 0; i < n; i++)
			if (pfd[i].revents != 0)
				handle(who[i], pfd[i].revents);
	}
	free(pfd);
	free(who);
}

static int
exit_code(void)
{
	unsigned long	 i;
	int		 early = 0, timeout = 0;

	for (i = 0; i < opt.conns; i++) {
		early |= conns[i].result == EX_EARLY;
		timeout |= conns[i].result == EX_TIMEOUT;
	}
	return early ? EX_EARLY : timeout ? EX_TIMEOUT : EX_OK;
}

static void
summary(void)
{
	double		 secs = t_first < 0 ? 0 : t_last - t_first;
	unsigned long	 rows = 0, acked = 0, i;

	if (opt.quiet)
		return;
	for (i = 0; i < opt.conns; i++) {
		if (conns[i].off == conns[i].total)
			rows += pl.rows;
		acked += conns[i].acked;
	}
	fprintf(stderr, "omlsend: %lu rows on %lu connections in %.3f s "
	    "(%.0f rows/s)\n", rows, opt.conns, secs,
	    secs > 0 ? (double)rows / secs : 0.0);
	if (dst.kind == D_TCP && !opt.waitclose)
		fprintf(stderr, "omlsend: %lu of %lu connections "
		    "acknowledged\n", acked, opt.conns);
	if (t_first >= 0)
		fprintf(stderr, "omlsend: first byte at %.6f\n", t_first_wall);
}

int
main(int argc, char **argv)
{
	int	 rc;

	signal(SIGPIPE, SIG_IGN);
	parse_opts(argc, argv);
	parse_dest();
	if (dst.kind != D_TCP && opt.conns > 1)
		die(EX_USAGE, "-c needs a TCP destination");
	if (dst.kind != D_TCP && opt.waitclose)
		die(EX_USAGE, "-W needs a TCP destination");
	if (opt.raw != NULL)
		read_raw();
	else
		build_rows();
	raise_nofile();
	conns_init();
	run();
	summary();
	rc = exit_code();
	free(conns);
	free(opt.schemas);
	free(pl.bursts);
	buf_free(&pl.body);
	if (dst.ai != NULL)
		freeaddrinfo(dst.ai);
	if (dst.local != NULL)
		freeaddrinfo(dst.local);
	return rc;
}
