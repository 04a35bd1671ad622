/*
 * libpq, loaded at run time by the PostgreSQL backend only (see pqlib.h).
 */
#include <dlfcn.h>

#define PQLIB_IMPL
#include "child/child.h"
#include "child/pqlib.h"

#define PQLIB_SONAME	"libpq.so.5"

struct pqlib	 pqlib;

int
pqlib_load(void)
{
	static int	 loaded;
	void		*h;

	if (loaded)
		return 0;
	if ((h = dlopen(PQLIB_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_error("PostgreSQL backend: %s", dlerror());
		return -1;
	}
#define PQLIB_LOAD(f)							\
	if ((*(void **)&pqlib.f = dlsym(h, #f)) == NULL) {		\
		log_error("PostgreSQL backend: %s lacks %s",		\
		    PQLIB_SONAME, #f);					\
		dlclose(h);						\
		return -1;						\
	}
	PQLIB_FUNCS(PQLIB_LOAD)
#undef PQLIB_LOAD
	loaded = 1;
	return 0;
}
