#include "config.h"

#define SQLITE_LOAD_NO_MACROS
#include "sqlite-load.h"
#include "util.h"

#ifndef SQLITE_SONAME
#define SQLITE_SONAME "libsqlite3.so.0"
#endif

struct sqlite_funcs sqlite_funcs;

int sqlite_load(struct ct_err *e)
{
	static struct dl_lib lib = { .soname = SQLITE_SONAME, .what = "the SQLite library" };
#define SQLITE_LOAD_NAME(f) "sqlite3_" #f,
	static const char *const names[] = { SQLITE_LOAD_FUNCS(SQLITE_LOAD_NAME) };
#undef SQLITE_LOAD_NAME

	_Static_assert(sizeof(sqlite_funcs) == sizeof(names), "one symbol per function");
	return dl_load(&lib, names, &sqlite_funcs, ARRAY_SIZE(names), e);
}
