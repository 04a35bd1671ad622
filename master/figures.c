/*
 * The figures the master holds: server-wide counters (connections
 * accepted and refused, by reason) and, for each experiment, the last
 * MSG_STATS of its process, added to what its earlier processes had
 * counted.  The control socket (ctl.c) and the metrics endpoint
 * (metrics.c) answer from these alone, so that no reader ever waits for
 * an experiment process or slows one down.
 *
 * An experiment keeps its figures --keep-ended seconds after its last
 * process ended (so that "oml2ctl list" and a scraper see how it
 * finished, and a new process for it continues its counters), then it is
 * forgotten, its counts kept only in the server's totals: the series a
 * scraper sees do not grow without bound.  The message is the child's,
 * an unprivileged process's: its length is checked, its enumerations
 * are clamped, and its numbers are only ever printed.
 */
#include <stdlib.h>
#include <string.h>

#include "master/master.h"

struct expfig		*figs;

const char *const refuse_name[REF_MAX] = {
	[REF_HEADER_TIMEOUT] = "header_timeout",
	[REF_HEADER_LIMIT] = "header_limit",
	[REF_BAD_HEADER] = "bad_header",
	[REF_CLOSED_EARLY] = "closed_before_naming",
	[REF_MAX_PENDING] = "max_pending",
	[REF_MAX_EXPERIMENTS] = "max_experiments",
	[REF_NO_PROCESS] = "no_process",
	[REF_SHUTDOWN] = "shutdown",
	[REF_MAX_SOURCE_PENDING] = "max_source_pending",
	[REF_MAX_SOURCE_EXPERIMENTS] = "max_source_experiments",
	[REF_QUEUE_FULL] = "queue_full",
	[REF_PROXY] = "proxy_preamble",
};
const char *const stall_name[STALL_MAX] = {
	[STALL_NONE] = "no", [STALL_RETRYING] = "retrying",
	[STALL_STALLED] = "stalled",
};
const char *const cause_name[CAUSE_MAX] = {
	[CAUSE_NONE] = "", [CAUSE_DISK_FULL] = "disk full",
	[CAUSE_LOCKED] = "database locked", [CAUSE_IO] = "I/O error",
	[CAUSE_MEMORY] = "out of memory", [CAUSE_PG_DOWN] = "PostgreSQL down",
	[CAUSE_ERROR] = "write error",
};
const char *const hook_name[HOOKST_MAX] = {
	[HOOKST_NONE] = "none", [HOOKST_STARTING] = "starting",
	[HOOKST_READY] = "ready", [HOOKST_DROPPED] = "dropped",
};
const char *const end_name[SE_MAX] = {
	[SE_EOF] = "closed_by_client", [SE_IDLE] = "idle",
	[SE_PROTOCOL] = "protocol_error", [SE_ERROR] = "socket_error",
	[SE_SHUTDOWN] = "shutdown", [SE_LIMIT] = "limit",
	[SE_CLOSED] = "closed_by_operator", [SE_REFUSED] = "refused",
};

static struct {
	uint64_t	 accepted;
	uint64_t	 refused[REF_MAX];
	struct msg_stats gone;		/* of experiments forgotten */
	double		 started;
} srv;

void
fig_init(void)
{
	srv.started = now_real();
}

void
fig_accepted(void)
{
	srv.accepted++;
}

void
fig_refused(enum refuse r)
{
	if (r < REF_MAX)
		srv.refused[r]++;
}

struct expfig *
fig_find(const char *name)
{
	struct expfig	*f;

	for (f = figs; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* Counters add up over processes; gauges are the live process's. */
static void
add_counters(struct msg_stats *d, const struct msg_stats *s)
{
	int	 i;

	d->rows += s->rows;
	d->dropped += s->dropped;
	d->bytes += s->bytes;
	d->commits += s->commits;
	d->commits_failed += s->commits_failed;
	d->commit_us += s->commit_us;
	for (i = 0; i < STATS_BUCKETS; i++)
		d->commit_bucket[i] += s->commit_bucket[i];
	d->connected += s->connected;
	for (i = 0; i < SE_MAX; i++)
		d->ended[i] += s->ended[i];
	d->gaps += s->gaps;
	d->missing += s->missing;
	d->restarts += s->restarts;
}

/* A spare now serves c->exp: its figures join the experiment's. */
void
fig_proc_assigned(struct proc *c)
{
	struct expfig	*f;

	if ((f = fig_find(c->exp)) == NULL) {
		f = xcalloc(1, sizeof(*f));
		strlcpy(f->name, c->exp, sizeof(f->name));
		f->next = figs;
		figs = f;
	}
	if (f->live != NULL) {		/* retiring, still finishing */
		if (f->old != NULL) {	/* a third: forget the oldest */
			add_counters(&f->base, &f->old->figs);
			f->old->fig = NULL;
		}
		f->old = f->live;
	}
	memset(&c->figs, 0, sizeof(c->figs));
	c->figs.last_commit_ms = ~0ULL;
	c->figs_at = now_mono_ms();
	c->fig = f;
	f->live = c;
	f->ended_at = 0;
}

void
fig_proc_stats(struct proc *c, const void *data, size_t len)
{
	struct msg_stats	 s;

	if (len != sizeof(s) || c->fig == NULL) {
		log_warnx("unexpected stats message (%zu bytes) from process "
		    "%d", len, (int)c->pid);
		return;
	}
	memcpy(&s, data, sizeof(s));
	if (s.stall >= STALL_MAX)
		s.stall = STALL_STALLED;
	if (s.cause >= CAUSE_MAX)
		s.cause = CAUSE_ERROR;
	if (s.hook >= HOOKST_MAX)
		s.hook = HOOKST_NONE;
	c->figs = s;
	c->figs_at = now_mono_ms();
}

/* The process is gone: its last figures join the experiment's base. */
void
fig_proc_gone(struct proc *c)
{
	struct expfig	*f = c->fig;

	if (f == NULL)
		return;
	add_counters(&f->base, &c->figs);
	f->base.senders = c->figs.senders;
	f->base.streams = c->figs.streams;
	f->base.client_dropped = c->figs.client_dropped;
	if (f->live == c)
		f->live = NULL;
	if (f->old == c)
		f->old = NULL;
	if (f->live == NULL && f->old == NULL) {
		f->ended_at = now_mono_ms();
		f->last_pid = c->pid;
	}
	c->fig = NULL;
}

/* An age the child measured, as of now. */
static uint64_t
aged(uint64_t raw, uint64_t at, uint64_t now)
{
	if (raw == ~0ULL)
		return raw;
	return raw + (now > at ? now - at : 0);
}

static void
add_live(struct msg_stats *o, const struct proc *c, uint64_t now,
    int first)
{
	const struct msg_stats	*s = &c->figs;
	uint64_t		 age = aged(s->last_commit_ms, c->figs_at, now);

	add_counters(o, s);
	o->clients += s->clients;
	o->rate_milli += s->rate_milli;
	o->rss_kb += s->rss_kb;
	if (age < o->last_commit_ms)
		o->last_commit_ms = age;
	if (first) {		/* the serving process's state */
		o->stall = s->stall;
		o->cause = s->cause;
		o->stall_ms = s->stall ? aged(s->stall_ms, c->figs_at, now) :
		    0;
		o->hook = s->hook;
		o->db_open = s->db_open;
		o->senders = s->senders;
		o->streams = s->streams;
		o->client_dropped = s->client_dropped;
	}
}

/* The experiment's figures as of now, ages included. */
void
fig_sum(const struct expfig *f, uint64_t now, struct msg_stats *o)
{
	*o = f->base;
	o->clients = 0;
	o->rate_milli = o->rss_kb = 0;
	o->last_commit_ms = ~0ULL;
	o->stall = STALL_NONE;
	o->cause = CAUSE_NONE;
	o->stall_ms = 0;
	o->hook = HOOKST_NONE;
	o->db_open = 0;
	if (f->live != NULL)
		add_live(o, f->live, now, 1);
	if (f->old != NULL)
		add_live(o, f->old, now, f->live == NULL);
}

/* Forget experiments ended long enough ago.  Returns the next deadline. */
uint64_t
fig_tick(uint64_t now)
{
	struct expfig	**pp, *f;
	uint64_t	  keep = opts.keep_ended * 1000ULL, next = 0, at;

	for (pp = &figs; (f = *pp) != NULL; ) {
		if (f->ended_at == 0) {
			pp = &f->next;
			continue;
		}
		at = f->ended_at + keep;
		if (now >= at) {
			add_counters(&srv.gone, &f->base);
			*pp = f->next;
			free(f);
			continue;
		}
		if (next == 0 || at < next)
			next = at;
		pp = &f->next;
	}
	return next;
}

void
fig_totals(struct server_totals *t)
{
	struct expfig		*f;
	struct msg_stats	 s;
	uint64_t		 now = now_mono_ms();
	int			 i;

	memset(t, 0, sizeof(*t));
	t->started = srv.started;
	t->accepted = srv.accepted;
	for (i = 0; i < REF_MAX; i++)
		t->refused[i] = srv.refused[i];
	t->rows = srv.gone.rows;
	t->dropped = srv.gone.dropped;
	t->bytes = srv.gone.bytes;
	t->exp_refused = srv.gone.ended[SE_REFUSED];
	for (f = figs; f != NULL; f = f->next) {
		fig_sum(f, now, &s);
		t->rows += s.rows;
		t->dropped += s.dropped;
		t->bytes += s.bytes;
		t->exp_refused += s.ended[SE_REFUSED];
		t->clients += s.clients;
		t->rss_kb += s.rss_kb;
		if (f->live != NULL || f->old != NULL)
			t->experiments++;
	}
}
