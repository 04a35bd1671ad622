/*
 * common/ -- what both processes share and that knows nothing of OML:
 * logging, growable buffers, the master<->child message vocabulary with
 * its fd passing, the privilege drop, and a few small utilities.
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
void		 log_setproc(const char *fmt, ...) PRINTFLIKE(1, 2);
int		 log_level(void);
int		 log_fd(void);
void		 log_startup(int);
void		 log_warn(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_warnx(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_error(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_info(const char *fmt, ...) PRINTFLIKE(1, 2);
void		 log_debug(const char *fmt, ...) PRINTFLIKE(1, 2);
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
char	*buf_cstr(struct buf *);

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);

/*
 * msg.c -- the one vocabulary between the master and its children.  Each
 * message is a fixed header plus at most MSG_MAXPAYLOAD bytes, sent as one
 * datagram on a SOCK_SEQPACKET pair, carrying at most one fd.
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
	MSG_TYPE_MAX
};

#define MSG_MAXPAYLOAD	(64 * 1024)
#define MSG_FLAG_FD	0x1

struct msg_hdr {
	uint32_t	type;
	uint32_t	flags;
	uint32_t	len;
	uint32_t	pad;
};

struct msg {
	struct msg_hdr	hdr;
	int		fd;	/* -1 unless MSG_FLAG_FD */
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

const char	*msg_name(uint32_t);
int		 msg_send(int sock, uint32_t type, int fd, const void *data,
		    size_t len);
ssize_t		 msg_recv(int sock, struct msg *);

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
void	 title_init(int, char **, char **);
void	 title_set(const char *, ...) PRINTFLIKE(1, 2);

#endif /* COMMON_H */
