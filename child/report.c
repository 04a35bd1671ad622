/*
 * Self-reporting of client events (PROTOCOL.md §10.9).  Reporting is off
 * unless --oml-collect names a destination.
 */
#include "child/child.h"

void
exp_report(const struct conn *c, const char *event, const char *message)
{
	(void)c;
	(void)event;
	(void)message;
}
