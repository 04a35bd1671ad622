/*
 * child/journal.h -- private to the SQLite backend (store_sqlite.c) and
 * journal.c: a redo log of every write made since the last commit, so
 * that a transaction the storage refused for a passing reason (a full
 * disk, an I/O error) can be written again, in the same order, once it
 * can.  Entries are deep copies; nothing points into a connection.
 */
#ifndef CHILD_JOURNAL_H
#define CHILD_JOURNAL_H

#include "child/child.h"

enum jkind { J_EXEC = 1, J_CREATE, J_META, J_SENDER, J_ROW };

/*
 * One write.  J_EXEC: SQL a.  J_CREATE: table t.  J_META: key a, value b.
 * J_SENDER: name a with id.  J_ROW: row for table t.  Strings returned by
 * journal_next() point into the journal and stay valid
 * until it is next changed; row values, until it is next changed or read.
 */
struct jentry {
	enum jkind		 kind;
	struct table		*t;
	const char		*a;
	const char		*b;
	int			 id;
	struct row		 row;
	size_t			 at;		/* read back: its offset */
};

struct journal {
	struct buf		 b;
	size_t			 last;		/* offset of the last entry */
	unsigned		 rows;		/* rows not dropped */
	struct oml_value	*vals;		/* journal_next()'s row values */
	int			 nvals;
	unsigned		 next;		/* rows' vectors taken over */
	size_t			 extbytes;	/* ... their size */
};

void	 journal_add(struct journal *, const struct jentry *);
/* journal_add() of a J_ROW entry. */
void	 journal_row_add(struct journal *, struct table *, const struct row *);
size_t	 journal_bytes(const struct journal *);
void	 journal_undo(struct journal *);	/* forget the last entry */
/* A row refused for good: skipped by journal_next(), not in rows. */
void	 journal_drop(struct journal *, size_t off);
void	 journal_clear(struct journal *);
void	 journal_free(struct journal *);
/*
 * The first entry at or after *off not dropped, then *off moves past it;
 * 0 at the end.
 */
int	 journal_next(struct journal *, size_t *off, struct jentry *);
/* The entry at off (the last one added is at j->last). */
/*
 * The row at off: its values (in the journal's one array, as for
 * journal_next()) stay valid until the journal is next read or changed,
 * the bytes they point to until it next changes.
 */
void	 journal_row(struct journal *, size_t off, struct row *);
/*
 * Like journal_next(), without reading the entry: its offset, kind and
 * table only (what queueing a row needs).
 */
int	 journal_scan(const struct journal *, size_t *off, size_t *at,
	    enum jkind *, struct table **);

#endif /* CHILD_JOURNAL_H */
