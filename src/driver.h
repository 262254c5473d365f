/* The two ways an env's overlay is mounted: the kernel's overlayfs, and
 * ctool-overlayfs, ctool's FUSE daemon, where the kernel refuses. */
#ifndef CTOOL_DRIVER_H
#define CTOOL_DRIVER_H

#include <stdbool.h>

#include "err.h"
#include "mounts.h"

#define DRIVER_KERNEL "kernel"
#define DRIVER_FUSE "fuse"

/* Is name a driver ("kernel" or "fuse")? */
bool driver_is_valid(const char *name);

/* The driver asked for on this command: opt (--driver), else
 * $CTOOL_DRIVER, else NULL. -EINVAL with *e set when either names no
 * driver. */
int driver_requested(const char *opt, const char **ret, struct ct_err *e);

/* Mount ov on dirfd (an env's root, from mounts_root_open) with
 * ctool-overlayfs, which runs on in the background and writes its pid
 * to pidfile. Returns once the mount is ready; *ret_fd is the mounted
 * root. A daemon that fails leaves nothing mounted, and its one line of
 * error is in *e. */
int driver_fuse_mount(int dirfd, const char *root, const struct overlay_spec *ov,
		      const char *pidfile, int *ret_fd, struct ct_err *e);

/* After the FUSE mount at an env's root is gone: wait a little for the
 * daemon named by pidfile to exit, kill it when it does not, and remove
 * pidfile. Never waits on a process that is not ctool-overlayfs. */
void driver_fuse_reap(const char *pidfile);

/* Is the mount at path a FUSE mount whose daemon is gone (ENOTCONN)? */
bool driver_fuse_dead(const char *path);

/* Did a ctool-overlayfs that died leave copies waiting to be shown in
 * ov's workdir? Only that daemon shows them, at its next mount; the
 * kernel's overlay empties the workdir and would lose them. */
bool driver_fuse_copies_wait(const struct overlay_spec *ov);

#endif
