/*
 * The experiment's event hook (PROTOCOL.md §9).  Without -H there is no
 * hook and every call here returns at once.
 */
#include "child/child.h"

void
hook_start(void)
{
}

void
hook_event(const char *event, const char *uri)
{
	log_debug("event %s %s", event, uri);
}

void
hook_exit(void)
{
}

void
hook_readable(struct cev *e)
{
	(void)e;
}
