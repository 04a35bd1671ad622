/*
 * t/check.h -- the one check of the unit tests (t/unit_*.c, each of
 * which includes this once): CHECK(expr) counts a check and prints a
 * failure with the current section and line; main() reports nchecks and
 * nfailed.
 */
#ifndef T_CHECK_H
#define T_CHECK_H

#include <stdio.h>

static int		 nchecks, nfailed;
static const char	*section;

#define CHECK(c)	check_at(!!(c), #c, __LINE__)

static int
check_at(int ok, const char *expr, int line)
{
	nchecks++;
	if (!ok) {
		nfailed++;
		fprintf(stderr, "FAIL [%s] line %d: %s\n", section, line, expr);
	}
	return ok;
}

#endif
