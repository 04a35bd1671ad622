/*
 * The experiment database, whatever the backend (PROTOCOL.md §8): the
 * default tables of a new database, rediscovering schemas from the
 * table_* metadata rows on reopening, the name, name_2 ... name_9 rule for
 * schemas that differ, sender ids, the start time, and the commit policy
 * (a batch of rows, or about 50 ms after the first uncommitted one, or a
 * second for a batch that grows fast).
 */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "child/child.h"

#define SENDERS_TABLE	"_senders"
#define MAX_RENAME	9

/* The senders' table, as both backends make it (§8.2). */
const char db_senders_sql[] =
    "CREATE TABLE _senders (name TEXT PRIMARY KEY, id INTEGER UNIQUE);";

static const struct backend *const backends[] = {
	&backend_sqlite, &backend_pg,
};

/* The backend --backend names, or NULL. */
const struct backend *
backend_named(const char *name)
{
	size_t	 i;

	for (i = 0; i < nitems(backends); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

const char *
backend_name(const struct backend *be)
{
	return be->name;
}

/* Does the backend store in the data directory? */
int
backend_files(const struct backend *be)
{
	return be->files;
}

/*
 * Serialise schema work with other servers, for a backend several servers
 * may share: between db_lock(1) and db_lock(0) the tables are read again;
 * db_lock(0) makes the work durable and fails if it could not.
 */
static int
db_shared(const struct db *db)
{
	return db->be->lock != NULL;
}

static int
db_lock(struct db *db, int on)
{
	return db_shared(db) ? db->be->lock(db, on) : 0;
}

/* A metadata row of the server's: 0 found (*val malloc'd), 1 absent. */
static int
meta_get(struct db *db, const char *key, char **val)
{
	const struct meta_ent	*e;

	if (db->be->meta_load(db) == -1)
		return -1;
	if ((e = db_meta_find(db, key)) == NULL)
		return 1;
	*val = xstrdup(e->val);
	return 0;
}

static int
name_eq(const struct db *db, const char *a, const char *b)
{
	return db->be->nocase ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

/* The trees' orders (tsearch(3) has no context argument: one of each). */
static int
table_cmp(const void *a, const void *b)
{
	return strcmp(((const struct table *)a)->schema.name,
	    ((const struct table *)b)->schema.name);
}

static int
table_casecmp(const void *a, const void *b)
{
	return strcasecmp(((const struct table *)a)->schema.name,
	    ((const struct table *)b)->schema.name);
}

static int
other_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int
other_casecmp(const void *a, const void *b)
{
	return strcasecmp(a, b);
}

static int
sender_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sender *)a)->name,
	    ((const struct sender *)b)->name);
}

static int
sender_id_cmp(const void *a, const void *b)
{
	int	 x = ((const struct sender *)a)->id;
	int	 y = ((const struct sender *)b)->id;

	return x < y ? -1 : x > y;
}

static int
meta_cmp(const void *a, const void *b)
{
	return strcmp(((const struct meta_ent *)a)->key,
	    ((const struct meta_ent *)b)->key);
}

#define TABLE_CMP(db)	((db)->be->nocase ? table_casecmp : table_cmp)
#define OTHER_CMP(db)	((db)->be->nocase ? other_casecmp : other_cmp)

static void
nofree(void *p)
{
	(void)p;
}

/* Add p to a tree; it must not be there yet. */
static void
tree_add(void *p, void **root, int (*cmp)(const void *, const void *))
{
	if (tsearch(p, root, cmp) == NULL)
		fatal("tsearch");
}

static struct table *
table_find(struct db *db, const char *name)
{
	struct table	 k, **p;

	k.schema.name = (char *)name;
	p = tfind(&k, &db->table_names, TABLE_CMP(db));
	return p != NULL ? *p : NULL;
}

static int
other_exists(struct db *db, const char *name)
{
	return tfind(name, &db->others, OTHER_CMP(db)) != NULL;
}

/* A table object for schema s (copied); not yet in the database. */
static struct table *
table_new(const struct oml_schema *s, const char *name)
{
	struct table	*t;
	int		 i;

	t = xcalloc(1, sizeof(*t));
	schema_copy(&t->schema, s);
	if (name != NULL)
		schema_rename(&t->schema, name);
	t->types = xcalloc((size_t)s->nfields, sizeof(*t->types));
	for (i = 0; i < s->nfields; i++)
		t->types[i] = s->fields[i].type;
	t->f_subject = schema_field(s, "subject");
	t->f_key = schema_field(s, "key");
	t->f_value = schema_field(s, "value");
	return t;
}

static void
table_free(struct db *db, struct table *t)
{
	if (db->be->table_free != NULL)
		db->be->table_free(db, t);
	schema_free(&t->schema);
	free(t->types);
	free(t);
}

static void
table_add(struct db *db, struct table *t)
{
	t->next = db->tables;
	db->tables = t;
	tree_add(t, &db->table_names, TABLE_CMP(db));
	if (strcmp(t->schema.name, OML_META_TABLE) == 0)
		db->meta = t;
}

static void
dirty(struct db *db)
{
	if (db->pending++ == 0)
		db->dirty_since = now_mono_ms();
}

/* Create table t in the database and record its table_* row. */
static int
table_materialise(struct db *db, struct table *t)
{
	char	*key, *val;
	int	 r;

	if (db->be->table_create(db, t) == -1)
		return -1;
	xasprintf(&key, "table_%s", t->schema.name);
	val = schema_format(&t->schema);
	r = db->be->meta_set(db, key, val);
	free(key);
	free(val);
	dirty(db);
	return r;
}

/* An existing table no schema describes: declaring it takes name_2 ... */
static void
note_other(struct db *db, const char *name)
{
	if (!other_exists(db, name))
		tree_add(xstrdup(name), &db->others, OTHER_CMP(db));
}

/*
 * Parse a stored table_* value.  Its index is only the one the creating
 * client used (§8.7) and matters to no match (§8.8); the original wrote
 * whatever it accepted, negative indices included, so it is not checked.
 */
static int
stored_schema(const char *val, struct oml_schema *s, char *err,
    size_t errlen)
{
	const char	*p = val + strspn(val, " \t\r\n\v\f");
	char		*text;
	int		 r;

	p += strcspn(p, " \t\r\n\v\f");
	xasprintf(&text, "0%s", p);
	r = schema_parse(text, strlen(text), 65535, s, err, errlen);
	free(text);
	return r;
}

/*
 * Learn one existing table from its table_* row, or note it as unknown.
 * -1 if the row could not be read: the table is then left for next time.
 */
static int
learn_table(struct db *db, const char *name)
{
	struct oml_schema	 s;
	struct table		*t;
	char			*key, *val = NULL, err[128];
	int			 r;

	if (table_find(db, name) != NULL || other_exists(db, name))
		return 0;
	xasprintf(&key, "table_%s", name);
	r = meta_get(db, key, &val);
	free(key);
	if (r == -1)
		return -1;
	if (r == 0 && stored_schema(val, &s, err, sizeof(err)) == 0) {
		t = table_new(&s, name);
		schema_free(&s);
		table_add(db, t);
	} else {
		if (r == 0)
			log_warnx("table %s: stored schema \"%s\" is unusable "
			    "(%s); leaving the table alone", name, val, err);
		note_other(db, name);
	}
	free(val);
	return 0;
}

/* Read what the database holds; create the default tables if needed. */
static int
db_load(struct db *db)
{
	struct oml_schema	 s;
	char			**names = NULL, err[128];
	int			 i, n = 0, have_senders = 0, have_meta = 0, r = 0;

	if (db->be->tables(db, &names, &n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		if (name_eq(db, names[i], SENDERS_TABLE))
			have_senders = 1;
		else if (name_eq(db, names[i], OML_META_TABLE))
			have_meta = 1;
	}
	if (!have_senders && db->be->exec(db, db_senders_sql) == -1)
		r = -1;
	note_other(db, SENDERS_TABLE);	/* a stream named so gets _senders_2 */
	for (i = 0; r == 0 && have_meta && i < n; i++)
		if (!name_eq(db, names[i], SENDERS_TABLE))
			r = learn_table(db, names[i]);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (r == -1 || db->meta != NULL)
		return r;
	if (schema_parse(OML_META_SCHEMA, strlen(OML_META_SCHEMA), 3, &s, err,
	    sizeof(err)) == -1)
		fatalx("metadata schema: %s", err);
	db->meta = table_new(&s, NULL);
	schema_free(&s);
	table_add(db, db->meta);
	/* an existing metadata table may lack its own table_* row */
	return have_meta ? 0 : table_materialise(db, db->meta);
}

/* Under the lock: learn the tables other servers created meanwhile. */
static int
refresh(struct db *db)
{
	char	**names = NULL;
	int	 i, n = 0, r = 0;

	if (db->be->tables(db, &names, &n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		if (r == 0 && !name_eq(db, names[i], SENDERS_TABLE))
			r = learn_table(db, names[i]);
		free(names[i]);
	}
	free(names);
	return r;
}

/* Drop a table object whose creation was not made durable. */
static void
table_forget(struct db *db, struct table *t)
{
	struct table	**pp;

	for (pp = &db->tables; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	tdelete(t, &db->table_names, TABLE_CMP(db));
	if (db->meta == t)
		db->meta = NULL;
	table_free(db, t);
}

static void
sender_free(void *p)
{
	struct sender	*s = p;

	free(s->name);
	free(s);
}

static void
meta_free(void *p)
{
	struct meta_ent	*e = p;

	free(e->key);
	free(e->val);
	free(e);
}

static void
db_free(struct db *db)
{
	struct table	*t;

	tdestroy(db->table_names, nofree);
	while ((t = db->tables) != NULL) {
		db->tables = t->next;
		table_free(db, t);
	}
	tdestroy(db->sender_ids, nofree);
	tdestroy(db->senders, sender_free);
	tdestroy(db->others, free);
	tdestroy(db->meta_cache, meta_free);
	free(db->name);
	free(db->uri);
	free(db);
}

/*
 * Why the backend refused the database as an experiment's, if it did:
 * the line that closes the client says it, and no other line does.
 */
static char	 refusal[256];

void
db_refuse(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(refusal, sizeof(refusal), fmt, ap);
	va_end(ap);
}

const char *
db_refused(void)
{
	return refusal[0] != '\0' ? refusal : NULL;
}

/*
 * Open or create the experiment's database.  NULL on failure: logged, or
 * a refusal for db_refused().
 */
struct db *
db_open(const struct child_conf *conf, const char *name, int blobs)
{
	struct db	*db;
	char		*val = NULL;
	int		 r;

	refusal[0] = '\0';
	db = xcalloc(1, sizeof(*db));
	db->conf = conf;
	db->name = xstrdup(name);
	db->blobs = blobs;
	db->be = conf->backend;
	if (db->be->open(db) == -1) {
		db_free(db);
		return NULL;
	}
	if ((r = db_lock(db, 1)) == 0)
		r = db_load(db);
	if (r == 0 && (r = meta_get(db, "start_time", &val)) == 0)
		db->start_time = strtol(val, NULL, 10);
	free(val);
	db->created = db->start_time == 0;
	if (r != -1)
		r = db_commit(db);
	if (db_lock(db, 0) == -1)
		r = -1;
	if (r == -1) {
		log_error("database %s: cannot be set up", db->uri);
		db->be->close(db);
		db_free(db);
		return NULL;
	}
	log_info("database %s %s", db->uri, db->created ? "created" :
	    "opened");
	return db;
}

static int	db_settle(struct db *, int);

/*
 * May the database be closed now?  Rows it could not take yet (PostgreSQL
 * away) wait for up to the backend's close_wait_ms from the first time
 * this is asked, while the commit timer tries again (db_commit_due()).
 * Returns 0 if it may, or when to ask again (monotonic ms).  An event
 * loop asks before db_close(); a use of the database again should set
 * db->close_by to 0.
 */
uint64_t
db_close_at(struct db *db, uint64_t now)
{
	/* a batch the backend commits on its own: has it been written? */
	if (db_settle(db, 1) == -1)
		return now;		/* stalled now: the caller looks again */
	if (db->pending == 0 || db->be->close_wait_ms == 0) {
		db->close_by = 0;
		return 0;
	}
	if (db->close_by == 0)
		db->close_by = now + db->be->close_wait_ms;
	if (now >= db->close_by)
		return 0;
	return db->close_by;
}

/*
 * Commit and close.  A caller without an event loop (the tools) waits
 * here, as db_close_at() says, for rows the database could not take yet.
 */
void
db_close(struct db *db)
{
	uint64_t	 at;

	db_commit(db);
	while ((at = db_close_at(db, now_mono_ms())) != 0) {
		usleep(100 * 1000);
		if (now_mono_ms() >= db_commit_due(db))
			db_commit(db);
	}
	db->be->close(db);
	log_info("database %s closed: %llu rows stored, %llu dropped", db->uri,
	    (unsigned long long)db->rows, (unsigned long long)db->dropped);
	db_free(db);
}

/*
 * A backend may commit in a thread of its own (SQLite's writer): a
 * commit then only hands the batch over, and its outcome is known later,
 * here (waiting for it if wait is set).  A batch that failed is pending
 * again, as if its commit had failed at once.  -1 if one failed.
 */
static int
db_settle(struct db *db, int wait)
{
	unsigned	 n;

	if (db->be->settle == NULL || (n = db->be->settle(db, wait)) == 0)
		return 0;
	if (db->pending == 0)
		db->dirty_since = now_mono_ms();
	db->pending += n;
	db->failing = 1;
	return -1;
}

/*
 * Commit the batch; with wait, know that it is written (the backend may
 * be writing it in a thread of its own, see db_settle()).  On failure
 * (the database is away) the batch stays pending, and the timer tries
 * again about a second (retry_ms) later.
 */
static int
commit(struct db *db, int wait)
{
	unsigned	 n = db->pending;
	uint64_t	 t0;
	int		 r;

	db->commit_now = 0;
	if (n == 0)
		return wait ? db_settle(db, 1) : 0;
	db->pending = 0;
	t0 = stats_clock();
	r = db->be->commit(db);
	if (r == 0 && wait && db_settle(db, 1) == -1) {
		stats_commit(t0, 0);
		return -1;	/* pending again, by db_settle() */
	}
	stats_commit(t0, r == 0);
	if (r == -1) {
		db->pending = n;
		db->dirty_since = now_mono_ms();
		db->failing = 1;
		return -1;
	}
	db->failing = 0;
	return 0;
}

/*
 * An event loop's commits need not wait for the batch to be written: the
 * loop learns how it went through db_stalled(), each time round.  A
 * caller without one (the tools) is told here.
 */
int
db_commit(struct db *db)
{
	return commit(db, !db->loop_commits);
}

/* Has the backend asked the child to stop reading its clients? */
int
db_stalled(struct db *db)
{
	db_settle(db, 0);
	return db->be->stalled != NULL && db->be->stalled(db);
}

/* Rows in t now, or -1 when the backend cannot tell at once. */
int64_t
db_table_rows(struct db *db, const struct table *t)
{
	char	*sql;
	int64_t	 n;

	if (db == NULL || t == NULL || db->be->query_int == NULL)
		return -1;
	/* max() of the primary key: one descent, however large the table */
	xasprintf(&sql, "SELECT coalesce(max(oml_tuple_id), 0) FROM \"%s\"",
	    t->schema.name);
	n = db->be->query_int(db, sql);
	free(sql);
	return n;
}

/* Why the database is stalled or its commits fail: an enum stats_cause. */
int
db_stall_cause(struct db *db)
{
	if (!db_stalled(db) && !db->failing)
		return CAUSE_NONE;
	if (db->be->stall_cause == NULL)
		return CAUSE_ERROR;
	return db->be->stall_cause(db);
}

/*
 * Is a commit due?  Returns the deadline in monotonic ms, or 0.  A batch
 * that grows fast is left to grow (commit_rows commits it).
 */
uint64_t
db_commit_due(const struct db *db)
{
	const struct child_conf	*cf = db->conf;

	if (db->pending == 0)
		return 0;
	if (db->failing)
		return db->dirty_since + cf->retry_ms;
	if (db->commit_now)
		return db->dirty_since;		/* now */
	return db->dirty_since + (db->pending >= cf->commit_busy ?
	    cf->commit_max_ms : cf->commit_ms);
}

/* Should the child stop reading and commit first? */
int
db_wants_commit(const struct db *db)
{
	return db->commit_now && !db->failing;
}

/* Create the table for s as cand, its k-th candidate name. */
static struct table *
declare_new(struct db *db, const struct oml_schema *s, const char *cand,
    int k)
{
	struct table	*t;

	t = table_new(s, cand);
	if (table_materialise(db, t) == -1) {
		table_free(db, t);
		return NULL;
	}
	table_add(db, t);
	if (k > 1)
		log_warnx("schema %s differs from the existing table; "
		    "created table %s for it", s->name, cand);
	else
		log_info("table %s created", cand);
	return t;
}

/*
 * The candidates are the whole name and its suffixed forms, however long:
 * a cut name would put two streams that share a prefix in one table.
 */
static struct table *
declare_locked(struct db *db, const struct oml_schema *s, int *created)
{
	struct table	*t;
	char		*cand;
	int		 k;

	*created = 0;
	if (db_shared(db) && refresh(db) == -1)
		return NULL;	/* another server's work? */
	for (k = 1; k <= MAX_RENAME; k++) {
		if (k == 1)
			cand = xstrdup(s->name);
		else
			xasprintf(&cand, "%s_%d", s->name, k);
		t = table_find(db, cand);
		if (t == NULL && !other_exists(db, cand)) {
			t = declare_new(db, s, cand, k);
			*created = t != NULL;
			free(cand);
			return t;
		}
		free(cand);
		if (t != NULL && schema_fields_same(&t->schema, s))
			return t;
	}
	log_warnx("schema %s: tables %s to %s_%d all exist with other "
	    "schemas", s->name, s->name, s->name, MAX_RENAME);
	return NULL;
}

/*
 * Find or create the table for a declared schema (§8.8).  NULL if no
 * table can take it (logged); the connection is then closed.
 */
struct table *
db_declare(struct db *db, const struct oml_schema *s)
{
	struct table	*t;
	int		 created;

	if (db_lock(db, 1) == -1)
		return NULL;
	t = declare_locked(db, s, &created);
	if (db_shared(db) && t != NULL)
		db_commit(db);
	if (db_lock(db, 0) == -1 && t != NULL) {
		if (created)
			table_forget(db, t);
		t = NULL;
	}
	return t;
}

int
db_sender(struct db *db, const char *name, int *id)
{
	struct sender	 k, *s, **p;

	k.name = (char *)name;
	if ((p = tfind(&k, &db->senders, sender_cmp)) != NULL) {
		*id = (*p)->id;
		return 0;
	}
	if (db->be->sender(db, name, id) == -1)
		return -1;
	dirty(db);
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	s->id = *id;
	tree_add(s, &db->senders, sender_cmp);
	if (tsearch(s, &db->sender_ids, sender_id_cmp) == NULL)
		fatal("tsearch");
	return 0;
}

/* The name of sender id, or NULL. */
const char *
db_sender_name(struct db *db, int id)
{
	struct sender	 k, **p;

	k.id = id;
	p = tfind(&k, &db->sender_ids, sender_id_cmp);
	return p != NULL ? (*p)->name : NULL;
}

struct walk {
	void	(*fn)(const struct sender *, void *);
	void	*arg;
};

static void
walk_one(const void *node, VISIT v, void *arg)
{
	struct walk	*w = arg;

	if (v == postorder || v == leaf)
		w->fn(*(struct sender *const *)node, w->arg);
}

/* Call fn for every sender, in the order of their ids. */
void
db_walk_senders(struct db *db, void (*fn)(const struct sender *, void *),
    void *arg)
{
	struct walk	 w = { fn, arg };

	twalk_r(db->sender_ids, walk_one, &w);
}

const struct meta_ent *
db_meta_find(struct db *db, const char *key)
{
	struct meta_ent	 k, **p;

	k.key = (char *)key;
	p = tfind(&k, &db->meta_cache, meta_cmp);
	return p != NULL ? *p : NULL;
}

/*
 * The backend read or wrote metadata row id (key, val).  The newest row
 * of a key is the one a lookup gives (as ORDER BY oml_tuple_id DESC).
 */
void
db_meta_note(struct db *db, int64_t id, const char *key, const char *val)
{
	struct meta_ent	 k, *e, **p;

	k.key = (char *)key;
	if ((p = tsearch(&k, &db->meta_cache, meta_cmp)) == NULL)
		fatal("tsearch");
	if (*p == &k) {
		e = xcalloc(1, sizeof(*e));
		e->key = xstrdup(key);
		*p = e;		/* the same key: the tree's order holds */
	} else {
		e = *p;
		if (id != e->id)
			e->dups = 1;
		if (id < e->id)
			return;
		free(e->val);
	}
	e->val = xstrdup(val);
	e->id = id;
}

/* The cache may hold rows that were rolled back: the backend reloads. */
void
db_meta_forget(struct db *db)
{
	tdestroy(db->meta_cache, meta_free);
	db->meta_cache = NULL;
	db->meta_loaded = 0;
	db->meta_seen = 0;
}

/*
 * The first start-time seen becomes the experiment's (§4.2).  With several
 * servers, "first" is decided under the lock: one that another server
 * stored meanwhile is adopted.
 */
int
db_set_start(struct db *db, long t)
{
	char	 val[32], *old = NULL;
	int	 r = 1;

	if (db->start_time != 0 || t == 0)
		return 0;
	if (db_shared(db)) {
		if (db_lock(db, 1) == -1)
			return -1;
		if ((r = meta_get(db, "start_time", &old)) == 0)
			db->start_time = strtol(old, NULL, 10);
		free(old);
	}
	if (r == 1) {
		snprintf(val, sizeof(val), "%ld", t);
		dirty(db);
		if ((r = db->be->meta_set(db, "start_time", val)) == 0)
			db->start_time = t;
	}
	if (db_lock(db, 0) == -1)
		r = -1;
	if (r == -1)
		db->start_time = 0;
	return r == -1 ? -1 : 0;
}

/*
 * A metadata row of the server's own kind (§8.7), for oml2-import and
 * oml2-merge: store key = val, unless the key is set already and replace
 * is 0.  The old value, if any, is left in *old (malloc'd).  Under the
 * lock that serialises schema work between servers, and committed at
 * once.  Returns 0 stored, 1 set already (not replaced), -1 error.
 */
int
db_meta_put(struct db *db, const char *key, const char *val, int replace,
    char **old)
{
	int	 r;

	*old = NULL;
	if (db_lock(db, 1) == -1)
		return -1;
	if ((r = meta_get(db, key, old)) == 1 || (r == 0 && replace)) {
		dirty(db);
		r = db->be->meta_set(db, key, val) == -1 ? -1 : 0;
	} else if (r == 0)
		r = 1;
	if (db_lock(db, 0) == -1)
		r = -1;
	if (r == 0 && db_commit(db) == -1)
		r = -1;
	return r;
}

int
db_insert(struct db *db, struct table *t, const struct row *r)
{
	if (db->be->insert(db, t, r) == -1)
		return -1;	/* counted by the caller's drop() */
	db->rows++;
	dirty(db);
	/* without an event loop (the tools), commit early here */
	if ((db->pending >= db->conf->commit_rows ||
	    (db->commit_now && !db->loop_commits)) && !db->failing)
		commit(db, 0);
	return 0;
}

/*
 * CREATE TABLE for t, as the original spells it (§8.3), in the backend's
 * column types.
 */
char *
db_create_sql(const struct db *db, const struct table *t)
{
	const char *const	*ty = db->be->types;
	struct buf		 b;
	int			 i;

	buf_init(&b);
	buf_printf(&b, "CREATE TABLE \"%s\" (oml_tuple_id %s, oml_sender_id %s, "
	    "oml_seq %s, oml_ts_client %s, oml_ts_server %s", t->schema.name,
	    db->be->key_type, ty[OML_INT32], ty[OML_INT32], ty[OML_DOUBLE],
	    ty[OML_DOUBLE]);
	for (i = 0; i < t->schema.nfields; i++)
		buf_printf(&b, ", \"%s\" %s", t->schema.fields[i].name,
		    ty[t->schema.fields[i].type]);
	buf_adds(&b, ");");
	return buf_cstr(&b);
}

/* The columns a row fills, in the order of struct row, then t's fields. */
void
db_sql_columns(struct buf *b, const struct table *t)
{
	int	 i;

	buf_adds(b, "\"oml_sender_id\", \"oml_seq\", \"oml_ts_client\", "
	    "\"oml_ts_server\"");
	for (i = 0; i < t->schema.nfields; i++)
		buf_printf(b, ", \"%s\"", t->schema.fields[i].name);
}
