/*
 * master/ -- the privileged parent: options, listening, reading each new
 * connection's header up to the experiment id, routing the socket to the
 * experiment's child, and supervising the children.  It never opens a
 * database and never blocks on a client.
 */
#ifndef MASTER_H
#define MASTER_H

#include <sys/types.h>
#include <stdint.h>

#include "common/common.h"
#include "proto/proto.h"
#include "child/api.h"

struct options {
	struct child_conf	 cc;		/* what every child gets */
	char			*listen;	/* [ADDR:]PORT */
	char			*user;
	char			*group;
	int			 allow_root;	/* --user may be uid or gid 0 */
	char			*logfile;
	int			 loglevel;
	int			 spares;
	size_t			 header_limit;
	unsigned		 header_timeout;
	unsigned		 max_pending;
	unsigned		 max_experiments;
	unsigned		 max_source_pending;	/* 0: no limit */
	unsigned		 max_source_experiments;	/* 0: no limit */
	char			*oml_collect;	/* self-reporting destination */
	char			*oml_id;
	char			*oml_domain;
	int			 oml_binary;
	int			 oml_noop;
	size_t			 oml_bufsize;
	char			*control;	/* socket path, NULL: none */
	int			 control_given;	/* --control named it */
	char			*metrics_listen; /* [ADDR:]PORT, NULL: off */
	unsigned		 keep_ended;	/* seconds an ended exp is shown */
};

/* options.c */
void	 options_parse(int, char **, struct options *);

/* The kinds of the master's event sources (struct ev, common/event.c). */
enum ev_kind {
	EV_LISTEN = 1, EV_PENDING, EV_PROC, EV_SIGNAL, EV_REPORT,
	EV_CTL, EV_CTLCONN, EV_METRICS, EV_HTTP
};

struct source;
struct expent;

/* Where a connection is with its PROXY preamble (proxy.c). */
enum px_state {
	PX_NONE,	/* past it, or never to have one */
	PX_CHECK,	/* of no --proxy-from address: a preamble is refused */
	PX_WANT,	/* of a --proxy-from address: a preamble must come */
	PX_LOCAL,	/* the proxy's own (LOCAL): a client once it speaks */
};

/*
 * A connection whose header is still being read, or that has named its
 * experiment and waits for that experiment's process (pending.c).
 */
struct pending {
	struct ev	 ev;
	struct pending	*next, *prev;	/* reading or waiting, by deadline */
	struct pending	*onext, *oprev;	/* its source's reading list, or its
					   experiment's queue */
	struct source	*src;
	struct expent	*exp;		/* waiting: queued there */
	char		 peer[64];
	uint16_t	 port;
	uint64_t	 born;		/* monotonic ms */
	uint64_t	 deadline;	/* monotonic ms */
	struct buf	 data;
	struct sniff	 sn;
	int		 waiting;	/* named, waiting for a child */
	enum px_state	 px;		/* the PROXY preamble (proxy.c) */
	size_t		 pre;		/* its bytes, stripped from data */
	int		 reported;	/* its Connect is (report.c) */
};

/* A peer address and what it holds (source.c). */
struct source {
	struct source	*next;		/* in its hash bucket */
	char		 addr[64];
	unsigned	 refs;		/* connections and experiments */
	struct pending	*head, *tail;	/* still naming, oldest first */
	unsigned	 npending;
	unsigned	 nexp;		/* experiments it started */
	int		 trim;		/* over --max-source-pending */
	struct source	*tnext, *tprev;
};

enum proc_state {
	CH_STARTING,	/* forked, not yet READY */
	CH_SPARE,	/* ready, no experiment */
	CH_SERVING,	/* owns an experiment */
	CH_RETIRING,	/* told to finish */
};

struct proc {
	struct chan	 ch;		/* first: its channel (common/chan.c) */
	struct proc	*next;
	pid_t		 pid;
	uint32_t	 gen;		/* its generation */
	enum proc_state state;
	char		 exp[EXPNAME_MAX + 1];
	struct expent	*e;		/* its experiment, or the one it starts
					   for; NULL for a spare */
	uint32_t	 sent;		/* clients handed over */
	unsigned	 nq;		/* of those, queued here, not yet sent */
	uint64_t	 born;		/* monotonic ms */
	struct msg_status status;
	int		 status_pending;
	struct expfig	*fig;		/* its experiment's figures */
	struct msg_stats figs;		/* as it last pushed them */
	uint64_t	 figs_at;	/* monotonic ms */
};

/* main.c */
extern struct options	 opts;
extern int		 stopping;
extern unsigned		 unserved;	/* connections shutdown could not serve */
void	 begin_shutdown(int sig);
int	 reopen_log(void);

/* listen.c */
int	 listen_open(const char *);
void	 listen_resume(void);
int	 fd_reserve_fill(void);
void	 fd_reserve_release(void);
uint64_t listen_tick(uint64_t);
int	 listen_fd(int);
void	 listen_accept(struct ev *);
void	 listen_stop(void);
unsigned fd_limit(void);

/* pending.c */
int	 pending_full(void);
int	 pending_room(uint64_t now, uint64_t *retry);
void	 pending_new(int fd, const char *peer, uint16_t port, int trusted);
void	 pending_connected(struct pending *);
void	 pending_read(struct pending *);
void	 pending_expire(uint64_t now);
void	 pending_handed(struct pending *);
void	 pending_stop(uint64_t now);
unsigned pending_count(void);
unsigned pending_waiting(void);
uint64_t pending_next_deadline(void);

/* proxy.c -- --proxy-from and the PROXY preamble */
int	 proxy_from_add(const char *spec, const char **why);
int	 proxy_trusted(const struct sockaddr *);
int	 proxy_read(struct pending *, const char **why);

/* source.c */
struct source *source_get(const char *addr);
void	 source_put(struct source *);
void	 source_add_pending(struct source *, struct pending *);
void	 source_del_pending(struct source *, struct pending *);
struct source *source_busiest(void);
void	 source_trim_add(struct source *);
void	 source_trim_del(struct source *);
struct source *source_trim_first(void);

/* procs.c -- mechanism: fork, messages, reaping */
extern struct proc	*procs;
extern unsigned		 procs_queued;	/* clients queued, all children */
struct proc *proc_spawn(void);
void	 proc_set_state(struct proc *, enum proc_state);
void	 proc_send(struct proc *, uint32_t, int fd, const void *, size_t);
uint64_t procs_tick(uint64_t now);
pid_t	 proc_fork(const char *what, int *sock, uint32_t *gen);
int	 proc_taking(const struct proc *, uint64_t now);
void	 proc_readable(struct proc *);
void	 procs_reap(void);
void	 procs_signal(int);
unsigned procs_count(enum proc_state);

/* policy.c -- when to spawn, route, throttle and retire */
int	 policy_route(struct pending *);
void	 policy_unpark(struct pending *);
int	 policy_held_full(void);
void	 policy_tick(uint64_t now);
void	 policy_proc_ready(struct proc *);
void	 policy_proc_idle(struct proc *, uint32_t received);
void	 policy_proc_gone(struct proc *, int served);
uint64_t policy_next_deadline(void);
void	 policy_shutdown(void);
void	 policy_status(void);
void	 policy_status_reply(struct proc *);
void	 policy_close(struct proc *, const char *who);

/*
 * figures.c -- what the master knows of the server and of each
 * experiment, kept from the MSG_STATS each experiment process pushes, so
 * that the control socket and the metrics endpoint are answered without
 * asking anyone.  An experiment whose process ended stays --keep-ended
 * seconds, then its figures join the server's totals alone.
 */
enum refuse {
	REF_HEADER_TIMEOUT, REF_HEADER_LIMIT, REF_BAD_HEADER, REF_CLOSED_EARLY,
	REF_MAX_PENDING, REF_MAX_EXPERIMENTS, REF_NO_PROCESS, REF_SHUTDOWN,
	REF_MAX_SOURCE_PENDING, REF_MAX_SOURCE_EXPERIMENTS, REF_QUEUE_FULL,
	REF_PROXY, REF_MAX
};

struct expfig {
	struct expfig	*next;
	char		 name[EXPNAME_MAX + 1];
	struct proc	*live;		/* its serving process, or NULL */
	struct proc	*old;		/* one still finishing, or NULL */
	struct msg_stats base;		/* of its processes that ended */
	uint64_t	 ended_at;	/* monotonic ms, 0 while one runs */
	pid_t		 last_pid;
};

extern struct expfig	*figs;
extern const char *const refuse_name[REF_MAX];
extern const char *const stall_name[STALL_MAX];
extern const char *const cause_name[CAUSE_MAX];
extern const char *const hook_name[HOOKST_MAX];
extern const char *const end_name[SE_MAX];
void	 fig_init(void);
void	 fig_accepted(void);
void	 fig_refused(enum refuse);
void	 fig_proc_assigned(struct proc *);
void	 fig_proc_stats(struct proc *, const void *, size_t);
void	 fig_proc_gone(struct proc *);
void	 fig_sum(const struct expfig *, uint64_t now, struct msg_stats *);
uint64_t fig_tick(uint64_t now);
struct expfig *fig_find(const char *);
struct server_totals {
	uint64_t	 accepted, refused[REF_MAX];
	uint64_t	 rows, dropped, bytes, exp_refused;
	uint64_t	 clients, rss_kb;
	unsigned	 experiments;
	double		 started;	/* wall clock */
};
void	 fig_totals(struct server_totals *);

/* ctl.c -- the control socket (oml2ctl) */
int	 ctl_open(void);
void	 ctl_close(void);
void	 ctl_accept(void);
void	 ctl_io(struct ev *, uint32_t events);
void	 ctl_show_records(struct proc *, const char *, size_t);
void	 ctl_proc_gone(struct proc *);
uint64_t ctl_tick(uint64_t now);

/* metrics.c -- the Prometheus endpoint (--metrics-listen) */
int	 metrics_open(const char *spec);
void	 metrics_close(void);
void	 metrics_accept(void);
void	 metrics_io(struct ev *, uint32_t events);
uint64_t metrics_tick(uint64_t now);
const char *metrics_address(void);

/*
 * report.c -- self-reporting over OML (§10.9): the master starts and
 * supervises the reporter process (child/reporter.c) and forwards it
 * every client event.  Every call is a no-op when reporting is off.
 */
int	 report_start(void);
void	 report_stop(void);
void	 report_event(enum report_event, const char *address, uint16_t port,
	    const char *domain, const char *message);
void	 report_child(const char *exp, pid_t, const char *, size_t);
void	 report_io(uint32_t events);
uint64_t report_tick(uint64_t now);
void	 report_logreopen(void);
int	 report_reaped(pid_t, int status);

#endif /* MASTER_H */
