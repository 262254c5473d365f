/* The store: the folder that holds everything of ctool. */
#ifndef CTOOL_STORE_H
#define CTOOL_STORE_H

#include <stdbool.h>

#include "catalog.h"
#include "err.h"

struct store {
	char *path;            /* absolute, no trailing '/' */
	int dfd;               /* O_DIRECTORY fd of path */
	struct catalog *cat;
};

/* Open the store at path (creating its folders when missing), with its
 * catalog when catalog is true. path NULL: $CTOOL_STORE, else the default. */
int store_open(const char *path, bool catalog, struct store **ret, struct ct_err *e);
/* Open the catalog (created when missing) if it is not open yet. */
int store_open_catalog(struct store *s, struct ct_err *e);
void store_free(struct store *s); /* accepts NULL */

/* Paths inside the store; malloc'd, NULL on out-of-memory. */
char *store_path(const struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* When the mount that holds the store is shared (as systemd makes '/'),
 * make the store a private mount of its own, so the envs mounted in it
 * never propagate to other mount namespaces. Cheap when nothing to do.
 * The caller holds lock_name(s, "store", "mount", LOCK_EX). */
int store_keep_private(struct store *s, struct ct_err *e);

/* Undo store_keep_private's bind when nothing is mounted below it. */
int store_release_private(struct store *s, struct ct_err *e);

/* Move path (inside the store) to trash/ under a fresh name, atomically.
 * The caller then calls store_trash_flush. 0 or -errno. */
int store_trash(struct store *s, const char *path, struct ct_err *e);

/* Delete what trash/ holds. With wait, block until no other process is
 * emptying it and empty it here; without, start a detached
 * 'ctool gc --trash --no-wait' so the caller returns at once (none when
 * there is nothing to do or a deleter is at work). Without wait, the
 * caller must exit soon: the deleter is its child until then. */
int store_trash_flush(struct store *s, bool wait, struct ct_err *e);
/* Empty trash/ here unless another process is emptying it. */
int store_trash_empty_nowait(struct store *s, struct ct_err *e);

/* Remove what an interrupted create or clone left in tmp/ (entries whose
 * lock nobody holds). Unmounts nothing: an entry with a mount below is
 * left alone. */
int store_tmp_clean(struct store *s, struct ct_err *e);

/* Take a staging dir tmp/<uuid> with its lock held; *ret_path and
 * *ret_lockfd are the caller's (close the fd after renaming the dir). */
int store_tmp_new(struct store *s, char **ret_path, int *ret_lockfd, struct ct_err *e);

#endif
