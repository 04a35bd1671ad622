/*
 * An experiment process's figures: bytes, clients, commit durations, the
 * row rate, and completeness -- for each sender and stream (table), the
 * first and last oml_seq received, the gaps (sequence numbers never
 * received) and, where the client sends liboml2's _client_instrumentation
 * stream, its own count of measurements it dropped.
 *
 * The master never asks for these on the ingest path: stats_tick() pushes
 * a small MSG_STATS about every second when something changed (every 10 s
 * otherwise), never waiting (while one still waits in the channel's queue,
 * the next is made at the next tick, with the newer figures), and
 * stats_show() answers the master's MSG_SHOW_REQ with records the channel
 * sends as the socket takes them.  The per-row work is a hash lookup and a few additions.
 *
 * Sequence numbers (PROTOCOL.md §4): a sender's stream starts at 1; a seq
 * above the last + 1 opens a gap of the numbers between; a seq at or
 * below the last starts a new run -- an application restarted, or a
 * second process with the same sender id -- counted as a restart, and the
 * new run is checked from 1 again.  A sender that reconnects and goes on
 * counting (liboml2 does) continues its run: what it lost while away is a
 * gap.  Figures last as long as the process serves its experiment.
 *
 * This file does no I/O but the two sends, and knows nothing of child.c,
 * so that oml2-import and oml2-merge link it with conn.c and db.c.
 */
#include <sys/time.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "child/child.h"

#define HASH_SIZE	8192		/* buckets, for each of the two hashes */
#define TRACK_MAX	65536		/* sender-streams tracked, at most */
#define SHOW_MAX	5000		/* records of each kind in a reply */
#define SHOWQ_MAX	(16 * 1024 * 1024)	/* bytes of replies queued */
#define PUSH_MS		1000
#define KEEPALIVE_MS	10000
#define RATE_SAMPLES	11		/* a sample a second: 10 s of rate */
#define INSTR_TABLE	"_client_instrumentation"
#define LOG_WORST	5		/* streams named in the last-client line */

struct track {
	struct track	*pnext;		/* in the hash by table pointer */
	struct track	*nnext;		/* in the hash by names */
	struct track	*next;		/* every one, oldest first */
	const struct table *table;	/* while the database is open */
	int		 sender_id;
	char		*sender;
	char		*tname;
	int		 have;
	int32_t		 first, last;
	uint64_t	 received, stored, gaps, missing, restarts;
	int		 instr;		/* a _client_instrumentation stream */
	int		 f_inj, f_drop;
	int		 have_instr;
	uint64_t	 inj, drop;
	int64_t		 table_rows;	/* in the table at the last close */
};

struct sname {
	struct sname	*next;
	char		*name;
};

static struct {
	uint64_t	 bytes;
	uint64_t	 connected;
	uint64_t	 ended[SE_MAX];
	uint64_t	 commits, commits_failed, commit_us;
	uint64_t	 bucket[STATS_BUCKETS];
	uint64_t	 last_commit;	/* monotonic ms, 0 never */
	uint64_t	 stall_since;
	uint64_t	 ring_t[RATE_SAMPLES], ring_rows[RATE_SAMPLES];
	unsigned	 ring_n, ring_i;
	uint64_t	 next_tick, last_push;
	struct msg_stats sent;
	int		 pushed;
	struct track	**phash, **nhash;
	struct track	*all, **tail;
	unsigned	 ntrack;
	struct sname	**shash;	/* sender names seen */
	uint64_t	 nsenders;
	uint64_t	 received, gaps, missing, restarts, client_dropped;
	uint64_t	 untracked;
	struct track	*cur;		/* the tuple being stored */
	struct chan	*ch;		/* where show replies go */
} st;

/* ---- what conn.c and db.c tell ------------------------------------ */

void
stats_rx(size_t n)
{
	st.bytes += n;
}

void
stats_connected(void)
{
	st.connected++;
}

void
stats_ended(enum stats_end why)
{
	if (why < SE_MAX)
		st.ended[why]++;
}

/* A microsecond clock for timing commits. */
uint64_t
stats_clock(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
stats_commit(uint64_t started, int ok)
{
	uint64_t	 us = stats_clock() - started;
	int		 i;

	if (!ok) {
		st.commits_failed++;
		return;
	}
	for (i = 0; i < STATS_BUCKETS - 1 && us > stats_bucket_us[i]; i++)
		;
	st.bucket[i]++;
	st.commits++;
	st.commit_us += us;
	st.last_commit = now_mono_ms();
}

static unsigned
hash_ptr(const void *t, int sender)
{
	uintptr_t	 h = (uintptr_t)t >> 4;

	h ^= (uintptr_t)(unsigned)sender * 0x9e3779b1u;
	h ^= h >> 13;
	return (unsigned)(h % HASH_SIZE);
}

static unsigned
hash_names(const char *a, const char *b)
{
	uint32_t	 h = 2166136261u;	/* FNV-1a */

	for (; *a != '\0'; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *b != '\0'; b++)
		h = (h ^ (unsigned char)*b) * 16777619u;
	return h % HASH_SIZE;
}

/* Count distinct sender names. */
static void
sender_seen(const char *name)
{
	struct sname	*n;
	unsigned	 h = hash_names(name, "");

	for (n = st.shash[h]; n != NULL; n = n->next)
		if (strcmp(n->name, name) == 0)
			return;
	n = xcalloc(1, sizeof(*n));
	n->name = xstrdup(name);
	n->next = st.shash[h];
	st.shash[h] = n;
	st.nsenders++;
}

static void
track_instr(struct track *k, const struct table *t)
{
	k->instr = strcmp(k->tname, INSTR_TABLE) == 0;
	if (!k->instr)
		return;
	k->f_inj = schema_field(&t->schema, "measurements_injected");
	k->f_drop = schema_field(&t->schema, "measurements_dropped");
}

/*
 * The tracker of (sender, table): known by names from an earlier opening
 * of the database, or new.  NULL past TRACK_MAX.
 */
static struct track *
track_named(int sender_id, const char *sender, const struct table *t)
{
	struct track	*k;
	unsigned	 h = hash_names(sender, t->schema.name);

	for (k = st.nhash[h]; k != NULL; k = k->nnext)
		if (strcmp(k->sender, sender) == 0 &&
		    strcmp(k->tname, t->schema.name) == 0)
			break;
	if (k == NULL) {
		if (st.ntrack >= TRACK_MAX)
			return NULL;
		k = xcalloc(1, sizeof(*k));
		k->table_rows = -1;
		sender_seen(sender);
		k->sender = xstrdup(sender);
		k->tname = xstrdup(t->schema.name);
		k->nnext = st.nhash[h];
		st.nhash[h] = k;
		*st.tail = k;
		st.tail = &k->next;
		st.ntrack++;
	}
	k->table = t;
	k->sender_id = sender_id;
	track_instr(k, t);
	h = hash_ptr(t, sender_id);
	k->pnext = st.phash[h];
	st.phash[h] = k;
	return k;
}

static void
gap(struct track *k, uint64_t n)
{
	k->gaps++;
	k->missing += n;
	st.gaps++;
	st.missing += n;
}

/* A tuple for table t from a sender, with its sequence number. */
void
stats_tuple(int sender_id, const char *sender, const struct table *t,
    int32_t seq)
{
	struct track	*k;

	if (st.phash == NULL) {
		st.phash = xcalloc(HASH_SIZE, sizeof(*st.phash));
		st.nhash = xcalloc(HASH_SIZE, sizeof(*st.nhash));
		st.shash = xcalloc(HASH_SIZE, sizeof(*st.shash));
		st.tail = &st.all;
	}
	for (k = st.phash[hash_ptr(t, sender_id)]; k != NULL; k = k->pnext)
		if (k->table == t && k->sender_id == sender_id)
			break;
	if (k == NULL &&
	    (k = track_named(sender_id, sender ? sender : "", t)) == NULL) {
		st.untracked++;
		st.cur = NULL;
		return;
	}
	st.cur = k;
	k->received++;
	st.received++;
	if (k->have && seq == k->last + 1) {
		k->last = seq;
		return;
	}
	if (!k->have) {
		k->have = 1;
		k->first = seq;
	} else if (seq <= k->last) {
		k->restarts++;
		st.restarts++;
	} else {
		gap(k, (uint64_t)((int64_t)seq - k->last - 1));
		k->last = seq;
		return;
	}
	/* the start of a run: it should be 1 */
	if (seq > 1)
		gap(k, (uint64_t)seq - 1);
	k->last = seq;
}

static uint64_t
uvalue(const struct oml_value *v)
{
	switch (v->type) {
	case OML_UINT32:	return v->u.u32;
	case OML_INT32:		return v->u.i32 < 0 ? 0 : (uint64_t)v->u.i32;
	case OML_UINT64:	return v->u.u64;
	case OML_INT64:		return v->u.i64 < 0 ? 0 : (uint64_t)v->u.i64;
	default:		return 0;
	}
}

/* The tuple stats_tuple() saw was stored, with these values. */
void
stats_stored(const struct table *t, const struct oml_value *v)
{
	struct track	*k = st.cur;

	if (k == NULL || k->table != t)
		return;
	k->stored++;
	if (!k->instr)
		return;
	if (k->f_inj >= 0)
		k->inj = uvalue(&v[k->f_inj]);
	if (k->f_drop >= 0) {
		st.client_dropped -= k->drop;
		k->drop = uvalue(&v[k->f_drop]);
		st.client_dropped += k->drop;
		k->have_instr = 1;
	}
}

/*
 * The database is about to close, its rows committed: note how many rows
 * each table holds, for oml2ctl show while it is closed.
 */
void
stats_db_closing(struct db *db)
{
	struct track	*k, *prev = NULL;

	for (k = st.all; k != NULL; prev = k, k = k->next) {
		if (k->table == NULL)
			continue;
		if (prev != NULL && prev->table == k->table)
			k->table_rows = prev->table_rows;
		else
			k->table_rows = db_table_rows(db, k->table);
	}
}

/* The database closed: its table objects go, the figures stay. */
void
stats_db_closed(void)
{
	struct track	*k;

	if (st.phash == NULL)
		return;
	memset(st.phash, 0, HASH_SIZE * sizeof(*st.phash));
	for (k = st.all; k != NULL; k = k->next) {
		k->table = NULL;
		k->pnext = NULL;
	}
	st.cur = NULL;
}

/* ---- totals ---------------------------------------------------------- */

static int
by_sender(const void *a, const void *b)
{
	const struct track	*x = *(struct track *const *)a;
	const struct track	*y = *(struct track *const *)b;
	int			 r = strcmp(x->sender, y->sender);

	return r != 0 ? r : strcmp(x->tname, y->tname);
}

static int
by_table(const void *a, const void *b)
{
	const struct track	*x = *(struct track *const *)a;
	const struct track	*y = *(struct track *const *)b;
	int			 r = strcmp(x->tname, y->tname);

	return r != 0 ? r : strcmp(x->sender, y->sender);
}

/* Every tracker, sorted; NULL if none.  The caller frees the array. */
static struct track **
sorted(int (*cmp)(const void *, const void *))
{
	struct track	**v, *k;
	unsigned	  i = 0;

	if (st.ntrack == 0)
		return NULL;
	v = xcalloc(st.ntrack, sizeof(*v));
	for (k = st.all; k != NULL; k = k->next)
		v[i++] = k;
	qsort(v, st.ntrack, sizeof(*v), cmp);
	return v;
}

static const char *
plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* What went missing where, for the log: the first few streams. */
static void
log_missing(struct buf *b)
{
	struct track	*k;
	unsigned	 named = 0, more = 0;

	for (k = st.all; k != NULL; k = k->next) {
		if (k->gaps == 0 && k->restarts == 0 &&
		    (!k->have_instr || k->drop == 0))
			continue;
		if (named++ >= LOG_WORST) {
			more++;
			continue;
		}
		buf_printf(b, "%s %s/%s: seq %d to %d", named > 1 ? ";" : ":",
		    k->sender, k->tname, (int)k->first, (int)k->last);
		if (k->gaps > 0)
			buf_printf(b, ", %llu missing in %llu %s",
			    (unsigned long long)k->missing,
			    (unsigned long long)k->gaps,
			    plural(k->gaps, "gap", "gaps"));
		if (k->restarts > 0)
			buf_printf(b, ", %llu %s", (unsigned long long)
			    k->restarts, plural(k->restarts, "restart",
			    "restarts"));
		if (k->have_instr && k->drop > 0)
			buf_printf(b, ", %llu dropped by the client",
			    (unsigned long long)k->drop);
	}
	if (more > 0)
		buf_printf(b, "; and %u more", more);
}

/* The line when the experiment's last client leaves. */
void
stats_log_totals(void)
{
	struct buf	 b;

	buf_init(&b);
	buf_printf(&b, "last client left: %llu %s, %u %s, %llu tuples, "
	    "%llu %s", (unsigned long long)st.nsenders,
	    plural(st.nsenders, "sender", "senders"), st.ntrack,
	    plural(st.ntrack, "stream", "streams"),
	    (unsigned long long)st.received, (unsigned long long)st.gaps,
	    plural(st.gaps, "gap", "gaps"));
	if (st.gaps > 0)
		buf_printf(&b, " (%llu missing)", (unsigned long long)st.missing);
	if (st.restarts > 0)
		buf_printf(&b, ", %llu %s", (unsigned long long)st.restarts,
		    plural(st.restarts, "restart", "restarts"));
	if (st.client_dropped > 0)
		buf_printf(&b, ", %llu dropped by clients",
		    (unsigned long long)st.client_dropped);
	if (st.untracked > 0)
		buf_printf(&b, ", %llu tuples of untracked streams (more "
		    "than %d)", (unsigned long long)st.untracked, TRACK_MAX);
	log_missing(&b);
	log_info("%s", buf_cstr(&b));
	buf_free(&b);
}

/* ---- the push -------------------------------------------------------- */

/* Rows a second over the last 10 s (sampled once a tick), x 1000. */
static uint64_t
rate(uint64_t now, uint64_t rows)
{
	unsigned	 old;
	uint64_t	 r = 0;

	if (st.ring_n > 0) {
		old = st.ring_n < RATE_SAMPLES ? 0 : st.ring_i;
		if (now > st.ring_t[old] && rows >= st.ring_rows[old])
			r = (rows - st.ring_rows[old]) * 1000000 /
			    (now - st.ring_t[old]);
	}
	st.ring_t[st.ring_i] = now;
	st.ring_rows[st.ring_i] = rows;
	st.ring_i = (st.ring_i + 1) % RATE_SAMPLES;
	if (st.ring_n < RATE_SAMPLES)
		st.ring_n++;
	return r;
}

static void
fill(struct msg_stats *s, const struct stats_base *b, uint64_t now)
{
	memset(s, 0, sizeof(*s));
	s->clients = b->clients;
	s->stall = b->stall;
	s->cause = b->stall == STALL_NONE ? CAUSE_NONE : (uint32_t)b->cause;
	s->hook = b->hook;
	s->db_open = b->db_open;
	s->rows = b->rows;
	s->dropped = b->dropped;
	s->bytes = st.bytes;
	s->commits = st.commits;
	s->commits_failed = st.commits_failed;
	s->commit_us = st.commit_us;
	memcpy(s->commit_bucket, st.bucket, sizeof(st.bucket));
	s->connected = st.connected;
	memcpy(s->ended, st.ended, sizeof(st.ended));
	s->senders = st.nsenders;
	s->streams = st.ntrack;
	s->gaps = st.gaps;
	s->missing = st.missing;
	s->restarts = st.restarts;
	s->client_dropped = st.client_dropped;
	if (b->stall != STALL_NONE && st.stall_since == 0)
		st.stall_since = now;
	else if (b->stall == STALL_NONE)
		st.stall_since = 0;
}

/* The fields that change with time alone. */
static void
ageless(struct msg_stats *s)
{
	s->last_commit_ms = s->stall_ms = s->rss_kb = 0;
}

/*
 * Called from the event loop: push the figures if a tick has come (or, if
 * final, now, waiting up to a second for the socket).  Returns the next
 * deadline.
 */
uint64_t
stats_tick(struct chan *ch, uint64_t now, const struct stats_base *b,
    int final)
{
	struct msg_stats	 s, a, c;

	if (!final && now < st.next_tick)
		return st.next_tick;
	st.next_tick = now + PUSH_MS;
	fill(&s, b, now);
	s.rate_milli = rate(now, s.rows);
	a = s;
	c = st.sent;
	ageless(&a);
	ageless(&c);
	if (!final && st.pushed && memcmp(&a, &c, sizeof(a)) == 0 &&
	    now - st.last_push < KEEPALIVE_MS)
		return st.next_tick;
	s.last_commit_ms = st.last_commit ? now - st.last_commit : ~0ULL;
	s.stall_ms = st.stall_since ? now - st.stall_since : 0;
	s.rss_kb = (uint64_t)rss_kb();
	if (!final && chan_queued(ch, MSG_STATS) > 0)
		return st.next_tick;	/* the next tick pushes newer ones */
	if (chan_send(ch, MSG_STATS, -1, &s, sizeof(s)) == -1)
		return final ? 0 : st.next_tick;
	if (final)
		return 0;
	st.sent = s;
	st.pushed = 1;
	st.last_push = now;
	return st.next_tick;
}

/* ---- the reply to "show" --------------------------------------------- */

struct showmsg {
	char		 m[MSG_MAXPAYLOAD];
	size_t		 len;
	uint32_t	 id;
	unsigned	 nrec;
};

static void
show_begin(struct showmsg *sm)
{
	sm->len = sizeof(struct msg_show);
	sm->nrec = 0;
}

/* Queue the message; flags says whether it is the last. */
static void
show_end(struct showmsg *sm, uint32_t flags)
{
	struct msg_show	 h;
	uint32_t	 n = (uint32_t)sm->len;

	memset(&h, 0, sizeof(h));
	h.id = sm->id;
	h.flags = flags;
	h.nrec = sm->nrec;
	memcpy(sm->m, &h, sizeof(h));
	if (chan_send(st.ch, MSG_SHOW, -1, sm->m, n) == -1)
		log_warn("show message to the master");
}

/* Add one record; strings cut to SHOW_STR_MAX bytes. */
static void
show_rec(struct showmsg *sm, enum show_kind kind, const char *const *s,
    int ns, const uint64_t *num, int nn)
{
	struct msg_rec	 r;
	size_t		 len[SHOW_STRS], need = sizeof(r);
	int		 i;

	memset(&r, 0, sizeof(r));
	r.kind = (uint16_t)kind;
	for (i = 0; i < ns; i++) {
		len[i] = strlen(s[i]);
		if (len[i] > SHOW_STR_MAX)
			len[i] = SHOW_STR_MAX;
		r.len[i] = (uint16_t)len[i];
		need += len[i];
	}
	memcpy(r.num, num, (size_t)nn * sizeof(*num));
	if (sm->len + need > sizeof(sm->m)) {
		show_end(sm, 0);
		show_begin(sm);
	}
	memcpy(sm->m + sm->len, &r, sizeof(r));
	sm->len += sizeof(r);
	for (i = 0; i < ns; i++) {
		memcpy(sm->m + sm->len, s[i], len[i]);
		sm->len += len[i];
	}
	sm->nrec++;
}

static int
show_clients(struct showmsg *sm, const struct conn_fig *f, unsigned n)
{
	const char	*s[3];
	uint64_t	 num[SHOW_NUMS];
	unsigned	 i;

	for (i = 0; i < n && i < SHOW_MAX; i++, f++) {
		s[0] = f->peer;
		s[1] = f->sender;
		s[2] = f->app;
		memset(num, 0, sizeof(num));
		num[0] = f->port;
		num[1] = (uint64_t)f->protocol;
		num[2] = (uint64_t)f->binary;
		num[3] = (uint64_t)f->ready;
		num[4] = (uint64_t)(f->since * 1000.0);
		num[5] = f->rows;
		num[6] = f->bytes;
		num[7] = f->dropped;
		show_rec(sm, REC_CLIENT, s, 3, num, SHOW_NUMS);
	}
	return i < n;
}

/*
 * A table's record: rows this process stored, senders, and the rows in
 * the table now (~0 when the backend cannot tell at once, or the
 * database is closed).
 */
static void
show_table(struct showmsg *sm, struct db *db, const struct track *k,
    uint64_t stored, uint64_t senders)
{
	const char	*s[1] = { k->tname };
	uint64_t	 num[SHOW_NUMS];
	int64_t		 rows = k->table != NULL ? db_table_rows(db, k->table) :
			    k->table_rows;

	memset(num, 0, sizeof(num));
	num[0] = stored;
	num[1] = senders;
	num[2] = rows < 0 ? ~0ULL : (uint64_t)rows;
	show_rec(sm, REC_TABLE, s, 1, num, SHOW_NUMS);
}

static int
show_tables(struct showmsg *sm, struct db *db, struct track **v)
{
	const struct track *open = NULL;
	uint64_t	 stored = 0, senders = 0;
	unsigned	 i, n = 0;

	for (i = 0; i < st.ntrack; i++) {
		if (i > 0 && strcmp(v[i]->tname, v[i - 1]->tname) != 0) {
			if (n++ < SHOW_MAX)
				show_table(sm, db, open ? open : v[i - 1],
				    stored, senders);
			stored = senders = 0;
			open = NULL;
		}
		stored += v[i]->stored;
		senders++;
		if (v[i]->table != NULL)
			open = v[i];
	}
	if (st.ntrack > 0 && n++ < SHOW_MAX)
		show_table(sm, db, open ? open : v[st.ntrack - 1], stored,
		    senders);
	return n > SHOW_MAX;
}

static void
stream_nums(const struct track *k, uint64_t *num)
{
	memset(num, 0, SHOW_NUMS * sizeof(*num));
	num[0] = (uint64_t)(int64_t)k->first;
	num[1] = (uint64_t)(int64_t)k->last;
	num[2] = k->received;
	num[3] = k->stored;
	num[4] = k->gaps;
	num[5] = k->missing;
	num[6] = k->restarts;
	num[7] = (uint64_t)k->have_instr;
	num[8] = k->inj;
	num[9] = k->drop;
}

/* The streams, then each sender's sums, both in sender order. */
static int
show_streams(struct showmsg *sm, struct track **v)
{
	const char	*s[2];
	uint64_t	 num[SHOW_NUMS], sum[SHOW_NUMS];
	unsigned	 i, n, j;
	int		 cut = 0;

	for (i = 0; i < st.ntrack && i < SHOW_MAX; i++) {
		s[0] = v[i]->sender;
		s[1] = v[i]->tname;
		stream_nums(v[i], num);
		show_rec(sm, REC_STREAM, s, 2, num, SHOW_NUMS);
	}
	cut = i < st.ntrack;
	for (i = n = 0; i < st.ntrack; i = j) {
		memset(sum, 0, sizeof(sum));
		for (j = i; j < st.ntrack &&
		    strcmp(v[j]->sender, v[i]->sender) == 0; j++) {
			sum[0]++;
			sum[1] += v[j]->received;
			sum[2] += v[j]->gaps;
			sum[3] += v[j]->missing;
			sum[4] += v[j]->restarts;
			if (v[j]->have_instr) {
				sum[5] = 1;
				sum[6] += v[j]->inj;
				sum[7] += v[j]->drop;
			}
		}
		if (n++ < SHOW_MAX) {
			s[0] = v[i]->sender;
			show_rec(sm, REC_SENDER, s, 1, sum, SHOW_NUMS);
		} else
			cut = 1;
	}
	return cut;
}

/*
 * The master asks for this experiment's details (request id).  Records
 * are queued and sent from the event loop; past SHOWQ_MAX of queued
 * replies the request gets an empty, truncated one.
 */
void
stats_show(struct chan *ch, uint32_t id, const struct conn_fig *conns,
    unsigned nconns, struct db *db)
{
	static struct showmsg	 sm;
	struct track		**v;
	int			 cut = 0;

	st.ch = ch;
	sm.id = id;
	show_begin(&sm);
	if (chan_queued(ch, MSG_SHOW) < SHOWQ_MAX) {
		cut |= show_clients(&sm, conns, nconns);
		v = sorted(by_table);
		cut |= show_tables(&sm, db, v);
		free(v);
		v = sorted(by_sender);
		cut |= show_streams(&sm, v);
		free(v);
	} else
		cut = 1;
	show_end(&sm, SHOW_LAST | (cut ? SHOW_TRUNCATED : 0));
}
