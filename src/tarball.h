/* tar export and import of an env's or an image's tree, or of its stack
 * of layers. libarchive is loaded with dlopen on first use (as libsqlite3
 * is, catalog/sqlite-load.c), so the other commands never pay for it.
 *
 * The --layers form: a first entry "ctool-layers" (the manifest, plain
 * text, below), then each layer's tree as it is on disk under
 * "layers/<N>/" (N = 1 for the bottom layer), whiteouts (character
 * devices 0/0) and opaque directories (trusted.overlay.opaque "y")
 * included. The manifest:
 *
 *   ctool-layers 1              format version; a reader refuses a newer one
 *   source env app1             what was exported (informational)
 *   layers 2                    how many layers follow
 *   layer 1 debootstrap ...     each layer's origin, bottom first
 *   layer 2 changes of env app1
 *   config 1                    the image config: this many lines follow
 *   RUN nginx -g 'daemon off;'
 *
 * Lines of other keys are ignored: a later version 1 may add some; a
 * change of meaning takes a new version number. */
#ifndef CTOOL_TARBALL_H
#define CTOOL_TARBALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

#define ARC_MANIFEST "ctool-layers"
#define ARC_FORMAT 1
#define ARC_MAX_LAYERS 500 /* the kernel's overlay takes no more lower layers */

enum arc_compress { ARC_PLAIN, ARC_GZIP, ARC_ZSTD };

/* The compression FILE's name asks for (.tar, .tar.gz/.tgz, .tar.zst/
 * .tzst; "-" is stdout, plain). -EINVAL for any other name. */
int arc_compress_of(const char *file, enum arc_compress *ret);

struct arc_layer {
	const char *dir;    /* the layer's tree; NULL: none (an env never turned on has no upper) */
	const char *origin; /* how it was made (the manifest's "layer" line) */
};

struct arc_stack {
	const struct arc_layer *layers; /* bottom first */
	size_t n;
	const char *config; /* the image config text, or NULL */
	const char *source; /* "env NAME" or "image NAME" */
};

struct arc_stats {
	uint64_t entries; /* entries written or extracted */
	uint64_t bytes;   /* bytes of file data (apparent sizes) */
	size_t layers;
};

/* Write the stack's merged tree (layers applied top-down: whiteouts hide,
 * opaque directories stop the lower layers; overlay-private xattrs left
 * out) or, with layers, the stack as it is on disk with its manifest, to
 * file ("-": stdout) as a tar compressed as c. A file is written under a
 * temporary name and renamed when complete. Nothing is mounted: the
 * layer directories are read, never crossing into another filesystem. */
int arc_export(const struct arc_stack *st, bool layers, const char *file, enum arc_compress c,
	       struct arc_stats *ret, struct ct_err *e);

/* A layer extracted by arc_import, waiting in the store's tmp/. */
struct arc_staged {
	char *path;   /* <store>/tmp/<uuid>; NULL once moved away (see arc_import_clear) */
	char *lock;   /* <store>/tmp/<uuid>.lock, held through lockfd */
	int lockfd;
	char id[37];  /* the uuid: the layer's name once in layers/ */
	char *origin; /* from the manifest, or NULL */
	int64_t size; /* its disk usage, as tree_bytes counts it */
};

struct arc_import {
	struct arc_staged *layers; /* bottom first */
	size_t n;
	bool stacked;              /* a --layers archive */
	char *config;              /* its image config, or NULL */
	struct arc_stats stats;
};

/* Read the tar file ("-": stdin) into staging dirs of the store's tmp/:
 * a plain tar becomes one layer, a --layers export its stack. Every
 * entry is checked before anything of it is written, and a hostile one
 * stops the import (-EPERM, the message naming the entry): a name with a
 * ".." component or an absolute one, a hard link to a missing or outside
 * target, anything below a symlink (nothing is ever written through
 * one), and unless trusted, a device node but whiteouts, a set-user-ID
 * or set-group-ID file, and xattrs outside user.* and POSIX ACLs. On
 * failure nothing is left in tmp/ (a killed import leaves what
 * store_tmp_clean removes). */
int arc_import(struct store *s, const char *file, bool trusted, struct arc_import *ret,
	       struct ct_err *e);

/* Remove the staging dirs still in tmp/ and free im. */
void arc_import_discard(struct arc_import *im);

/* Free im, releasing the staging locks (their lock files removed): the
 * caller has moved every staging dir away. */
void arc_import_clear(struct arc_import *im);

/* From now on SIGINT, SIGTERM and SIGHUP stop an export or import at
 * the next entry (it fails with -EINTR, leaving nothing). */
void arc_catch_signals(void);
bool arc_interrupted(void);

#endif
