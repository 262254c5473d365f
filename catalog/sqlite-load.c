#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>

#define SQLITE_LOAD_NO_MACROS
#include "sqlite-load.h"

#ifndef SQLITE_SONAME
#define SQLITE_SONAME "libsqlite3.so.0"
#endif

struct sqlite_funcs sqlite_funcs;

int sqlite_load(struct ct_err *e)
{
	static int state; /* 0 untried, 1 loaded, -1 failed */
	static char why[200];
	void *h;

	if (state > 0)
		return 0;
	if (state < 0)
		return ct_fail(e, ENOSYS, "%s", why);
	state = -1;
	h = dlopen(SQLITE_SONAME, RTLD_LAZY | RTLD_LOCAL);
	if (!h) {
		snprintf(why, sizeof(why), "cannot load the SQLite library: %s", dlerror());
		return ct_fail(e, ENOSYS, "%s", why);
	}
#define SQLITE_LOAD_SYM(f)                                                              \
	*(void **)&sqlite_funcs.f = dlsym(h, "sqlite3_" #f);                           \
	if (!sqlite_funcs.f) {                                                         \
		snprintf(why, sizeof(why), "%s lacks sqlite3_%s", SQLITE_SONAME, #f);  \
		return ct_fail(e, ENOSYS, "%s", why);                                  \
	}
	SQLITE_LOAD_FUNCS(SQLITE_LOAD_SYM)
#undef SQLITE_LOAD_SYM
	state = 1;
	return 0;
}
