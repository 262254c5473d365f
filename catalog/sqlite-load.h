/* libsqlite3, loaded with dlopen when the catalog is first opened, so
 * the commands that need no catalog ('run' on an env that is on, --help)
 * do not pay for loading it at every start. Included by catalog.c after
 * <sqlite3.h>: the sqlite3_* calls below go through the table. */
#ifndef CTOOL_SQLITE_LOAD_H
#define CTOOL_SQLITE_LOAD_H

#include <sqlite3.h>

#include "err.h"

#define SQLITE_LOAD_FUNCS(X)                                                           \
	X(bind_int) X(bind_int64) X(bind_null) X(bind_parameter_count) X(bind_text)    \
	X(busy_timeout) X(changes) X(close_v2) X(column_bytes) X(column_int)           \
	X(column_int64) X(column_name) X(column_text) X(column_type) X(db_config)      \
	X(db_filename) X(errmsg) X(exec) X(extended_result_codes) X(file_control)      \
	X(finalize) X(get_autocommit) X(open_v2) X(prepare_v3) X(reset) X(step)        \
	X(system_errno) X(wal_checkpoint_v2) X(wal_hook)

struct sqlite_funcs {
#define SQLITE_LOAD_FIELD(f) __typeof__(sqlite3_##f) *f;
	SQLITE_LOAD_FUNCS(SQLITE_LOAD_FIELD)
#undef SQLITE_LOAD_FIELD
};

extern struct sqlite_funcs sqlite_funcs;

/* Load libsqlite3 once; 0, or -ENOSYS with *e set. */
int sqlite_load(struct ct_err *e);

#ifndef SQLITE_LOAD_NO_MACROS
#define sqlite3_bind_int (*sqlite_funcs.bind_int)
#define sqlite3_bind_int64 (*sqlite_funcs.bind_int64)
#define sqlite3_bind_null (*sqlite_funcs.bind_null)
#define sqlite3_bind_parameter_count (*sqlite_funcs.bind_parameter_count)
#define sqlite3_bind_text (*sqlite_funcs.bind_text)
#define sqlite3_busy_timeout (*sqlite_funcs.busy_timeout)
#define sqlite3_changes (*sqlite_funcs.changes)
#define sqlite3_close_v2 (*sqlite_funcs.close_v2)
#define sqlite3_column_bytes (*sqlite_funcs.column_bytes)
#define sqlite3_column_int (*sqlite_funcs.column_int)
#define sqlite3_column_int64 (*sqlite_funcs.column_int64)
#define sqlite3_column_name (*sqlite_funcs.column_name)
#define sqlite3_column_text (*sqlite_funcs.column_text)
#define sqlite3_column_type (*sqlite_funcs.column_type)
#define sqlite3_db_config (*sqlite_funcs.db_config)
#define sqlite3_db_filename (*sqlite_funcs.db_filename)
#define sqlite3_errmsg (*sqlite_funcs.errmsg)
#define sqlite3_exec (*sqlite_funcs.exec)
#define sqlite3_extended_result_codes (*sqlite_funcs.extended_result_codes)
#define sqlite3_file_control (*sqlite_funcs.file_control)
#define sqlite3_finalize (*sqlite_funcs.finalize)
#define sqlite3_get_autocommit (*sqlite_funcs.get_autocommit)
#define sqlite3_open_v2 (*sqlite_funcs.open_v2)
#define sqlite3_prepare_v3 (*sqlite_funcs.prepare_v3)
#define sqlite3_reset (*sqlite_funcs.reset)
#define sqlite3_step (*sqlite_funcs.step)
#define sqlite3_system_errno (*sqlite_funcs.system_errno)
#define sqlite3_wal_checkpoint_v2 (*sqlite_funcs.wal_checkpoint_v2)
#define sqlite3_wal_hook (*sqlite_funcs.wal_hook)
#endif

#endif
