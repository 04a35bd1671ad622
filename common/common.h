/*
 * common/ -- what every process shares: logging, growable buffers, the
 * event core, the channel between the master and its processes with its
 * message vocabulary (the one place here that knows of OML: the shapes of
 * the client events, figures and details the processes exchange), the
 * privilege drop, and a few small utilities.  It neither parses nor
 * stores OML.
 */
#ifndef COMMON_H
#define COMMON_H

#include <sys/types.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <bsd/string.h>	/* strlcpy, strlcat */

#define OML2_VERSION	"2.11.0+ng1"

#ifndef __dead
#define __dead		__attribute__((__noreturn__))
#endif
#define PRINTFLIKE(a, b) __attribute__((__format__(__printf__, a, b)))
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

/* log.c -- levels follow the manual: 1=ERROR 2=WARNING 3=INFO 4=DEBUG */
enum log_level { LOG_LVL_ERROR = 1, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

int		 log_open(const char *path, int level);
int		 log_reopen(void);
const char	*log_open_error(void);
void		 log_setproc(const char *fmt, ...) PRINTFLIKE(1, 2);
int		 log_fd(void);
void		 log_startup(int);
void		 log_warn(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_warnx(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_error(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_info(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_debug(const char *fmt, ...) PRINTFLIKE(1, 2);
struct ratelimit {
	uint64_t	 last;		/* monotonic ms of the last line */
	unsigned	 times;		/* since */
};
void		 log_warn_limited(struct ratelimit *, const char *fmt, ...)
		    PRINTFLIKE(2, 3);
__dead void	 fatal(const char *fmt, ...) PRINTFLIKE(1, 2);
__dead void	 fatalx(const char *fmt, ...) PRINTFLIKE(1, 2);

/* buf.c -- a growable byte buffer; allocation failure is fatal */
struct buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

void	 buf_init(struct buf *);
void	 buf_free(struct buf *);
void	 buf_reserve(struct buf *, size_t);
void	 buf_add(struct buf *, const void *, size_t);
void	 buf_addc(struct buf *, int);
void	 buf_adds(struct buf *, const char *);
void	 buf_printf(struct buf *, const char *, ...) PRINTFLIKE(2, 3);
void	 buf_drop(struct buf *, size_t);
size_t	 buf_cap_for(const struct buf *, size_t);
void	 buf_setcap(struct buf *, size_t);
char	*buf_cstr(struct buf *);
char	*buf_extend(struct buf *, size_t);
void	 buf_add_be32(struct buf *, uint32_t);
void	 buf_add_be64(struct buf *, uint64_t);

/* Big-endian numbers, written at p (encoders of OMSP and of COPY). */
static inline void
be_put16(void *p, uint16_t v)
{
	unsigned char	*q = p;

	q[0] = (unsigned char)(v >> 8);
	q[1] = (unsigned char)v;
}

static inline void
be_put32(void *p, uint32_t v)
{
	unsigned char	*q = p;

	q[0] = (unsigned char)(v >> 24);
	q[1] = (unsigned char)(v >> 16);
	q[2] = (unsigned char)(v >> 8);
	q[3] = (unsigned char)v;
}

static inline void
be_put64(void *p, uint64_t v)
{
	be_put32(p, (uint32_t)(v >> 32));
	be_put32((unsigned char *)p + 4, (uint32_t)v);
}

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);

/*
 * event.c -- the event core of each process's loop (one epoll set).  An
 * event source is an object whose first member is a struct ev; kind is
 * the owner's tag for it (never EV_DEAD, which marks one freed in this
 * batch, see ev_free_later).
 */
#define EV_DEAD		0
struct ev {
	int		 kind;
	int		 fd;
	uint32_t	 events;	/* as registered */
	int		 on;		/* registered */
};

void	 ev_init(void);
void	 ev_add(struct ev *, uint32_t events);
void	 ev_mod(struct ev *, uint32_t events);
void	 ev_set(struct ev *, uint32_t events);
void	 ev_del(struct ev *);
void	 ev_free_later(struct ev *);
void	 ev_wait(uint64_t deadline, void (*)(struct ev *, uint32_t));
void	 ev_due(uint64_t *next, uint64_t due);

/*
 * chan.c -- the one channel between the master and each process it forks
 * (experiment processes and the reporter), and its vocabulary.  Each
 * message is a fixed header plus at most MSG_MAXPAYLOAD bytes, sent as one
 * datagram on a SOCK_SEQPACKET pair, carrying at most one fd.  msg_table
 * says for each type which way it goes, how long its payload may be and
 * whether a descriptor comes with it; both ends enforce it.
 */
enum msg_type {
	MSG_NONE,
	MSG_READY,	/* child -> master: spare is up and privileges dropped */
	MSG_ASSIGN,	/* master -> child: own this experiment (name) */
	MSG_CLIENT,	/* master -> child: fd + struct msg_client + bytes */
	MSG_IDLE,	/* child -> master: no client, database closed (u32) */
	MSG_RETIRE,	/* master -> child: finish and exit */
	MSG_SHUTDOWN,	/* master -> child: server stopping, finish and exit */
	MSG_STATUS_REQ,	/* master -> child: send a MSG_STATUS */
	MSG_STATUS,	/* child -> master: struct msg_status */
	MSG_REPORT,	/* child -> master: struct msg_report + strings */
	MSG_LOGREOPEN,	/* master -> child: log file rotated, reopen */
	MSG_LOCK,	/* start-up probe -> master: the data directory's lock */
	MSG_STATS,	/* child -> master: struct msg_stats, about every second */
	MSG_SHOW_REQ,	/* master -> child: send MSG_SHOW records (u32 id) */
	MSG_SHOW,	/* child -> master: struct msg_show + records */
	MSG_CLOSE,	/* master -> child: store, close every client, exit */
	MSG_EVENT,	/* master -> reporter: a client event, as MSG_REPORT */
	MSG_SINK,	/* master -> reporter: the file to report to (u32: it
			   has our header already) */
	MSG_TYPE_MAX
};

#define MSG_MAXPAYLOAD	(64 * 1024)
#define MSG_FLAG_FD	0x1

struct msg_hdr {
	uint32_t	type;
	uint32_t	flags;
	uint32_t	len;
	uint32_t	gen;	/* the child's generation */
};

struct msg {
	struct msg_hdr	hdr;
	int		fd;	/* -1 unless MSG_FLAG_FD */
	int		fd_lost; /* flagged, but we had no descriptor free */
	char		data[MSG_MAXPAYLOAD];
};

/* A client socket handed over; the peer's bytes read so far follow. */
struct msg_client {
	char		peer[64];	/* printable address */
	uint16_t	port;
	uint16_t	pad;
	uint32_t	nbytes;
};

struct msg_status {
	uint32_t	clients;
	uint32_t	pad;
	uint64_t	rows;
	uint64_t	rows_dropped;
	uint64_t	rss_kb;
};

#define MSG_TO_CHILD	0x1
#define MSG_TO_MASTER	0x2

/* chan_recv's answers */
enum { CHAN_BAD = -2, CHAN_EOF = -1, CHAN_EMPTY = 0, CHAN_MSG = 1 };

struct chanq;
struct chan {
	struct ev	 ev;		/* first: the socket in the loop */
	unsigned	 side;		/* what it receives: MSG_TO_* */
	uint32_t	 gen;
	int		 watch;		/* in the event loop (ev_*) */
	int		 keep;		/* queue while it has no socket */
	size_t		 qmax;		/* bytes queued at most */
	size_t		 qbytes;
	size_t		 qtype[MSG_TYPE_MAX];	/* of them, by type */
	unsigned	 nq;
	struct chanq	*qhead, **qtail;
	uint64_t	 retry_at;	/* descriptors in flight: retry then */
	uint64_t	 sent_at;	/* a message last went out */
	char		 who[48];	/* the peer, for the log */
	/* a queued message left the queue: sent (lost NULL) or lost */
	void		(*dequeued)(struct chan *, uint32_t type,
			    const char *data, size_t len, const char *lost);
	void		*arg;		/* the owner's */
};

const char	*msg_name(uint32_t);
int		 msg_send(int sock, uint32_t type, int fd, const void *data,
		    size_t len);
ssize_t		 msg_recv(int sock, struct msg *);
void		 chan_init(struct chan *, int kind, int fd, unsigned side,
		    uint32_t gen, size_t qmax, int watch, const char *who, ...)
		    PRINTFLIKE(8, 9);
void		 chan_attach(struct chan *, int fd, uint32_t gen);
int		 chan_send(struct chan *, uint32_t type, int fd,
		    const void *data, size_t len);
void		 chan_flush(struct chan *);
uint64_t	 chan_tick(struct chan *, uint64_t now);
int		 chan_taking(const struct chan *, uint64_t now);
size_t		 chan_queued(const struct chan *, uint32_t type);
int		 chan_drain(struct chan *, unsigned ms);
int		 chan_recv(struct chan *, struct msg *);
void		 chan_detach(struct chan *);
void		 chan_close(struct chan *, const char *why);

/*
 * A client event for self-reporting.  The strings follow the struct in
 * the order of len[], without terminators; each is at most the matching
 * REPORT_MAX_* bytes and holds no NUL.  The receiver stamps the time.
 */
enum report_event { REPORT_CONNECT, REPORT_READY, REPORT_DISCONNECT,
	REPORT_EVENT_MAX };
enum report_str { RS_ADDRESS, RS_NODE, RS_DOMAIN, RS_APP, RS_MESSAGE,
	RS_MAX };
#define REPORT_MAX_ADDRESS	63
#define REPORT_MAX_NAME		255	/* node_id, appname */
#define REPORT_MAX_DOMAIN	63
#define REPORT_MAX_MESSAGE	31

struct msg_report {
	uint32_t	event;		/* enum report_event */
	uint16_t	port;
	uint16_t	len[RS_MAX];
};
#define MSG_REPORT_MAX	(sizeof(struct msg_report) + REPORT_MAX_ADDRESS + \
			    2 * REPORT_MAX_NAME + REPORT_MAX_DOMAIN + \
			    REPORT_MAX_MESSAGE)
/* Build one into m (MSG_REPORT_MAX bytes), strings cut; NULL is "". */
size_t	 msg_report_make(char *m, enum report_event, uint16_t port,
	    const char *address, const char *node, const char *domain,
	    const char *app, const char *message);

/*
 * The figures an experiment's process pushes to the master (MSG_STATS),
 * from which the master answers the control socket and the metrics
 * endpoint without asking anyone.  Counters count since the process took
 * its experiment.  Commit durations fall in STATS_BUCKETS buckets whose
 * upper bounds (microseconds) are stats_bucket_us[]; the last is open.
 */
#define STATS_BUCKETS	12
extern const uint64_t stats_bucket_us[STATS_BUCKETS - 1];

enum stats_stall { STALL_NONE, STALL_RETRYING, STALL_STALLED, STALL_MAX };
/* why the database cannot be written */
enum stats_cause { CAUSE_NONE, CAUSE_DISK_FULL, CAUSE_LOCKED, CAUSE_IO,
	CAUSE_MEMORY, CAUSE_PG_DOWN, CAUSE_ERROR, CAUSE_MAX };
enum stats_hook { HOOKST_NONE, HOOKST_STARTING, HOOKST_READY,
	HOOKST_DROPPED, HOOKST_MAX };
/* why a client connection ended, or was refused */
enum stats_end { SE_EOF, SE_IDLE, SE_PROTOCOL, SE_ERROR, SE_SHUTDOWN,
	SE_LIMIT, SE_CLOSED, SE_REFUSED, SE_MAX };

struct msg_stats {
	uint32_t	clients;
	uint32_t	stall;		/* enum stats_stall */
	uint32_t	hook;		/* enum stats_hook */
	uint32_t	db_open;
	uint32_t	cause;		/* enum stats_cause, while stalled */
	uint32_t	spare;
	uint64_t	rows;
	uint64_t	dropped;
	uint64_t	bytes;
	uint64_t	rate_milli;	/* rows/s over the last 10 s, x 1000 */
	uint64_t	last_commit_ms;	/* since the last commit; ~0 never */
	uint64_t	stall_ms;	/* for how long */
	uint64_t	commits;
	uint64_t	commits_failed;
	uint64_t	commit_us;	/* sum of the durations */
	uint64_t	commit_bucket[STATS_BUCKETS];	/* not cumulative */
	uint64_t	rss_kb;
	uint64_t	connected;	/* clients taken */
	uint64_t	ended[SE_MAX];	/* connections ended, by reason */
	uint64_t	senders;
	uint64_t	streams;
	uint64_t	gaps;
	uint64_t	missing;
	uint64_t	restarts;
	uint64_t	client_dropped;	/* as _client_instrumentation says */
};

/*
 * MSG_SHOW: an experiment's details for "oml2ctl show", as records of a
 * few kinds, in kind order, over as many messages as needed (the last
 * has SHOW_LAST).  A record is struct msg_rec, then its strings in the
 * order of len[], without terminators, each at most SHOW_STR_MAX bytes.
 */
enum show_kind { REC_CLIENT, REC_TABLE, REC_STREAM, REC_SENDER, REC_MAX };
#define SHOW_STRS	3
#define SHOW_NUMS	10
#define SHOW_STR_MAX	255
#define SHOW_LAST	0x1
#define SHOW_TRUNCATED	0x2	/* records were left out */

struct msg_show {
	uint32_t	id;
	uint32_t	flags;
	uint32_t	nrec;
	uint32_t	pad;
};

struct msg_rec {
	uint16_t	kind;
	uint16_t	len[SHOW_STRS];
	uint64_t	num[SHOW_NUMS];
};

/*
 * esc.c -- text for other programs: JSON strings, Prometheus label
 * values, and bytes shown on a terminal.  Invalid UTF-8 becomes U+FFFD in
 * JSON and labels; on a terminal, control bytes and what would move text
 * about become \xHH.
 */
void	 esc_json(struct buf *, const char *, size_t);
void	 esc_label(struct buf *, const char *, size_t);
void	 esc_term(struct buf *, const char *, size_t);
size_t	 utf8_len(const unsigned char *, size_t, uint32_t *cp);

/* priv.c */
struct priv_ids {
	int	 set;
	uid_t	 uid;
	gid_t	 gid;
	char	*user;
	char	*home;
};

int	 priv_lookup(const char *user, const char *group, struct priv_ids *);
void	 priv_drop(const struct priv_ids *);

/* budget.c -- a byte budget shared by processes (made before forking) */
struct budget;
struct budget	*budget_create(uint64_t limit, unsigned nslots);
int		 budget_join(struct budget *, int pid);
void		 budget_leave(struct budget *, int slot);
void		 budget_reap(struct budget *, int pid);
int		 budget_take(struct budget *, int slot, uint64_t);
void		 budget_force(struct budget *, int slot, uint64_t);
void		 budget_give(struct budget *, int slot, uint64_t);
void		 budget_set_largest(struct budget *, int slot, uint64_t);
uint64_t	 budget_largest_other(struct budget *, int slot);
void		 budget_want(struct budget *, uint64_t);
int		 budget_short(struct budget *);
void		 budget_answered(struct budget *);

/* util.c */
int	 set_nonblock(int);
int	 set_cloexec(int);
void	 signals_ignore_stray(void);
double	 now_real(void);
uint64_t now_mono_ms(void);
long	 rss_kb(void);
int	 count_open_fds(void);
int	 parse_uint(const char *, unsigned long max, unsigned long *);
void	 close_except(int, int);
void	 exit_describe(int status, char *, size_t);
void	 title_init(int, char **, char **);
void	 title_set(const char *, ...) PRINTFLIKE(1, 2);

#endif /* COMMON_H */
