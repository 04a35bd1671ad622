/*
 * Source addresses: what each peer address holds in the master, so that
 * one address cannot take what other tenants need.  A source counts its
 * connections still naming their experiment (oldest first, for
 * --max-source-pending and for choosing whom --max-pending drops) and the
 * experiments it started that still have a process or wait for one
 * (--max-source-experiments).  A source is forgotten when nothing refers
 * to it any more.  Sources over --max-source-pending wait on a list to
 * be trimmed as their oldest connections come of age (pending.c).
 */
#include <stdlib.h>
#include <string.h>

#include "master/master.h"

#define NBUCKETS	1024

static struct source	*bucket[NBUCKETS];
static struct source	*trim_head;

static unsigned
hash(const char *s)
{
	unsigned	 h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKETS;
}

/* The source for addr, with one more reference. */
struct source *
source_get(const char *addr)
{
	struct source	*s;
	unsigned	 h = hash(addr);

	for (s = bucket[h]; s != NULL; s = s->next)
		if (strcmp(s->addr, addr) == 0)
			break;
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		strlcpy(s->addr, addr, sizeof(s->addr));
		s->next = bucket[h];
		bucket[h] = s;
	}
	s->refs++;
	return s;
}

/* Drop a reference; the last one frees the source. */
void
source_put(struct source *s)
{
	struct source	**pp;

	if (--s->refs > 0)
		return;
	source_trim_del(s);
	for (pp = &bucket[hash(s->addr)]; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
	free(s);
}

/*
 * In order of age: a connection that a proxy's preamble brings here may
 * be older than the last one of this address (nearly always the newest,
 * so the walk is short).
 */
void
source_add_pending(struct source *s, struct pending *p)
{
	struct pending	*after = s->tail;

	while (after != NULL && after->born > p->born)
		after = after->oprev;
	p->oprev = after;
	p->onext = after != NULL ? after->onext : s->head;
	if (p->onext != NULL)
		p->onext->oprev = p;
	else
		s->tail = p;
	if (after != NULL)
		after->onext = p;
	else
		s->head = p;
	s->npending++;
}

void
source_del_pending(struct source *s, struct pending *p)
{
	if (p->oprev != NULL)
		p->oprev->onext = p->onext;
	else
		s->head = p->onext;
	if (p->onext != NULL)
		p->onext->oprev = p->oprev;
	else
		s->tail = p->oprev;
	p->onext = p->oprev = NULL;
	s->npending--;
}

/*
 * The source with the most connections still naming their experiment
 * (the oldest connection breaks a tie), or NULL if there is none.  Only
 * asked when --max-pending is reached, so a scan is fine.
 */
struct source *
source_busiest(void)
{
	struct source	*s, *best = NULL;
	unsigned	 i;

	for (i = 0; i < NBUCKETS; i++)
		for (s = bucket[i]; s != NULL; s = s->next) {
			if (s->npending == 0)
				continue;
			if (best == NULL || s->npending > best->npending ||
			    (s->npending == best->npending &&
			    s->head->born < best->head->born))
				best = s;
		}
	return best;
}

/* s holds more than --max-source-pending: trim it when it can be. */
void
source_trim_add(struct source *s)
{
	if (s->trim)
		return;
	s->tprev = NULL;
	s->tnext = trim_head;
	if (trim_head != NULL)
		trim_head->tprev = s;
	trim_head = s;
	s->trim = 1;
}

void
source_trim_del(struct source *s)
{
	if (!s->trim)
		return;
	if (s->tprev != NULL)
		s->tprev->tnext = s->tnext;
	else
		trim_head = s->tnext;
	if (s->tnext != NULL)
		s->tnext->tprev = s->tprev;
	s->trim = 0;
}

struct source *
source_trim_first(void)
{
	return trim_head;
}
