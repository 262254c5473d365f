/* Mounting an env: the overlay, the standard mounts and the binds, all
 * made with the fd-based mount syscalls so that every target is resolved
 * inside the env's root (symlinks included) and nothing lands on a host
 * path. libmount only reads the mount table. */
#ifndef CTOOL_MOUNTS_H
#define CTOOL_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct overlay_spec {
	const char *const *lower;  /* top first */
	size_t n_lower;
	const char *upper;
	const char *work;
	bool volatile_;
};

/* Mount the overlay at root (a host path ctool chose), private. */
int mounts_overlay(const char *root, const struct overlay_spec *ov, struct ct_err *e);

/* The standard mounts under root: /proc, /sys (ro), /dev (minimal, or the
 * host's with host_dev), /dev/pts, /dev/shm, /tmp, resolv.conf, hosts. */
int mounts_standard(const char *root, bool host_dev, struct ct_err *e);

/* Check a bind before mounting: src must exist and be neither '/' nor
 * overlap the store; tgt must be absolute without "..". */
int mounts_bind_check(const char *src, const char *tgt, const char *store, struct ct_err *e);

/* Bind host path src at tgt inside root (recursive, private, read-only
 * when ro); a missing target is created inside root like the source. */
int mounts_bind(const char *root, const char *src, const char *tgt, bool ro, struct ct_err *e);

/* Mount points at or below path, deepest first (malloc'd array of
 * malloc'd strings, *ret_n entries). */
int mounts_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e);
void mounts_list_free(char **list, size_t n);

/* Unmount everything at or below root, deepest first. A busy mount
 * fails with -EBUSY (naming it in *e) unless detach, which lazily
 * detaches what is still busy. */
int mounts_umount_all(const char *root, bool detach, struct ct_err *e);

/* Is the mount holding path shared (in a peer group)? */
int mounts_is_shared(const char *path, bool *ret, struct ct_err *e);

/* Make path a private mount: its own mount is made private, or, when it
 * is no mount point, a private bind of itself is put on it. */
int mounts_make_private(const char *path, struct ct_err *e);

/* -EBUSY naming a mount when anything is mounted at or below path. */
int mounts_check_none(const char *path, struct ct_err *e);


#endif
