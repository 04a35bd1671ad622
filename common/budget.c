/*
 * A byte budget shared by processes: one small MAP_SHARED anonymous
 * region, made by the parent before it forks, with a total that every
 * process changes atomically and one slot per member process saying how
 * much it holds and its single largest holding, so that a process short
 * of room can tell whether it holds the largest share itself.  A process
 * that dies without leaving is taken out by its parent (budget_reap).
 * Nothing here blocks or allocates after budget_create.
 */
#include <sys/mman.h>

#include <stdatomic.h>
#include <string.h>

#include "common/common.h"

struct budget_slot {
	_Atomic int		 pid;		/* 0: free */
	_Atomic uint64_t	 held;
	_Atomic uint64_t	 largest;
};

struct budget {
	uint64_t		 limit;
	_Atomic uint64_t	 total;
	_Atomic uint64_t	 want;		/* bytes someone waits for */
	unsigned		 nslots;
	struct budget_slot	 slot[];
};

struct budget *
budget_create(uint64_t limit, unsigned nslots)
{
	struct budget	*b;
	size_t		 size;

	size = sizeof(*b) + (size_t)nslots * sizeof(b->slot[0]);
	b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (b == MAP_FAILED)
		fatal("mmap %zu bytes for the buffer budget", size);
	memset(b, 0, size);
	b->limit = limit;
	b->nslots = nslots;
	return b;
}

/* A slot for process pid, or -1 if all are taken. */
int
budget_join(struct budget *b, int pid)
{
	unsigned	 i;
	int		 free;

	for (i = 0; i < b->nslots; i++) {
		free = 0;
		if (atomic_compare_exchange_strong(&b->slot[i].pid, &free, pid))
			return (int)i;
	}
	return -1;
}

static void
slot_clear(struct budget *b, struct budget_slot *s)
{
	atomic_fetch_sub(&b->total, atomic_exchange(&s->held, 0));
	atomic_store(&s->largest, 0);
	atomic_store(&s->pid, 0);
}

void
budget_leave(struct budget *b, int slot)
{
	if (slot >= 0)
		slot_clear(b, &b->slot[slot]);
}

/* The parent's clean-up for a member that died without leaving. */
void
budget_reap(struct budget *b, int pid)
{
	unsigned	 i;

	for (i = 0; i < b->nslots; i++)
		if (atomic_load(&b->slot[i].pid) == pid)
			slot_clear(b, &b->slot[i]);
}

/* Take n bytes if the total stays within the limit: 0, else -1. */
int
budget_take(struct budget *b, int slot, uint64_t n)
{
	if (atomic_fetch_add(&b->total, n) + n > b->limit) {
		atomic_fetch_sub(&b->total, n);
		return -1;
	}
	if (slot >= 0)
		atomic_fetch_add(&b->slot[slot].held, n);
	return 0;
}

/* Take n bytes whatever the limit says (bytes already in memory). */
void
budget_force(struct budget *b, int slot, uint64_t n)
{
	atomic_fetch_add(&b->total, n);
	if (slot >= 0)
		atomic_fetch_add(&b->slot[slot].held, n);
}

void
budget_give(struct budget *b, int slot, uint64_t n)
{
	atomic_fetch_sub(&b->total, n);
	if (slot >= 0)
		atomic_fetch_sub(&b->slot[slot].held, n);
}

void
budget_set_largest(struct budget *b, int slot, uint64_t n)
{
	if (slot >= 0)
		atomic_store(&b->slot[slot].largest, n);
}

/* The largest single holding of any member but slot. */
uint64_t
budget_largest_other(struct budget *b, int slot)
{
	uint64_t	 max = 0, v;
	unsigned	 i;

	for (i = 0; i < b->nslots; i++) {
		if ((int)i == slot || atomic_load(&b->slot[i].pid) == 0)
			continue;
		if ((v = atomic_load(&b->slot[i].largest)) > max)
			max = v;
	}
	return max;
}

/*
 * A member waits for n bytes: the member holding the most gives some up
 * (budget_short says whether it should), then clears the request.
 */
void
budget_want(struct budget *b, uint64_t n)
{
	uint64_t	 old = atomic_load(&b->want);

	while (old < n && !atomic_compare_exchange_weak(&b->want, &old, n))
		;
}

/* Does a waiting member still lack room? */
int
budget_short(struct budget *b)
{
	uint64_t	 want = atomic_load(&b->want);

	return want > 0 && atomic_load(&b->total) + want > b->limit;
}

void
budget_answered(struct budget *b)
{
	atomic_store(&b->want, 0);
}
