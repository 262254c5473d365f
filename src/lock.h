/* Advisory locks (flock) in <store>/locks: one per env name, so commands
 * on one env are serialised; one for the store (shared by commands that
 * add layers, exclusive for gc). Locks die with their process. */
#ifndef CTOOL_LOCK_H
#define CTOOL_LOCK_H

#include "err.h"
#include "store.h"

/* op: LOCK_EX or LOCK_SH; blocks. *ret_fd holds the lock (O_CLOEXEC). */
int lock_name(struct store *s, const char *kind, const char *name, int op, int *ret_fd,
	      struct ct_err *e);

#endif
