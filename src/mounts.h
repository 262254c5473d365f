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

/* Open an env's root (O_PATH) refusing a symlink anywhere on its path,
 * so a root below a folder another user owns cannot be swapped for a
 * link to a host path between the checks and the mounts. With mounted,
 * it must be a mount point (the env's overlay). An fd or -errno. */
int mounts_root_open(const char *root, bool mounted, struct ct_err *e);

/* Mount the overlay on dirfd (the root, from mounts_root_open; root
 * names it in messages). *ret_fd: the mounted overlay's root, which the
 * mounts below are made through. Private unless the parent mount is
 * shared (see the comment inside). */
int mounts_overlay(int dirfd, const char *root, const struct overlay_spec *ov, int *ret_fd,
		   struct ct_err *e);

/* The standard mounts under rootfd: /proc, /sys (ro), /dev (minimal, or the
 * host's with host_dev), /dev/pts, /dev/shm, /tmp, resolv.conf, hosts. */
int mounts_standard(int rootfd, bool host_dev, struct ct_err *e);

/* Check a bind before mounting: src must exist and be neither '/' nor
 * overlap the store; tgt must be absolute without "..". */
int mounts_bind_check(const char *src, const char *tgt, const char *store, struct ct_err *e);

/* Bind host path src at tgt inside rootfd (recursive, read-only when ro);
 * a missing target is created inside the root like the source. */
int mounts_bind(int rootfd, const char *src, const char *tgt, bool ro, struct ct_err *e);

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
