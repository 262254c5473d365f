/* What the tar export and import share: libarchive's functions, loaded
 * with dlopen on first use (tarball-lib.c), and a few helpers. Included
 * by tarball-*.c only, after libarchive's headers. */
#ifndef CTOOL_TARBALL_LIB_H
#define CTOOL_TARBALL_LIB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <archive.h>
#include <archive_entry.h>

#include "err.h"

#define ARC_FUNCS(X)                                                                    \
	X(read_new) X(read_free) X(read_support_format_tar) X(read_support_filter_gzip) \
	X(read_support_filter_zstd) X(read_support_filter_xz)                          \
	X(read_support_filter_bzip2) X(read_support_filter_lz4) X(read_open)           \
	X(read_next_header) X(read_data) X(read_data_block) X(filter_bytes)            \
	X(write_new) X(write_free) X(write_set_format_pax) X(write_add_filter_gzip)    \
	X(write_set_filter_option) X(write_add_filter_zstd) X(write_open_fd)           \
	X(write_header) X(write_data) X(write_finish_entry) X(write_close)             \
	X(error_string) X(set_error) X(entry_new) X(entry_free) X(entry_clear)         \
	X(entry_set_pathname) X(entry_set_mode) X(entry_set_uid) X(entry_set_gid)      \
	X(entry_set_size) X(entry_set_mtime) X(entry_set_rdev) X(entry_set_symlink)    \
	X(entry_set_hardlink) X(entry_xattr_add_entry) X(entry_sparse_add_entry)       \
	X(entry_pathname) X(entry_hardlink) X(entry_symlink) X(entry_filetype)         \
	X(entry_mode) X(entry_uid) X(entry_gid) X(entry_size) X(entry_size_is_set)     \
	X(entry_rdev) X(entry_mtime) X(entry_mtime_nsec) X(entry_mtime_is_set)         \
	X(entry_atime) X(entry_atime_nsec) X(entry_atime_is_set) X(entry_xattr_reset)  \
	X(entry_xattr_next)

struct arc_funcs {
#define ARC_FIELD(f) __typeof__(archive_##f) *f;
	ARC_FUNCS(ARC_FIELD)
#undef ARC_FIELD
};

extern struct arc_funcs arc_fn;
/* Set by the signals arc_catch_signals catches. */
extern volatile sig_atomic_t arc_signal;

/* Load libarchive once; 0, or -ENOSYS with *e set. */
int arc_load(struct ct_err *e);

#define ARC_BUF (1 << 20)            /* file data moves in chunks of this size */
#define OVL_OPAQUE "trusted.overlay.opaque"
#define OVL_PREFIX "trusted.overlay."
#define OVL_OWN_PREFIX "user.ctool-overlay." /* ctool-overlayfs's own marks */
#define WH_PREFIX ".wh."                     /* ctool-overlayfs's file form of whiteouts */
#define WH_OPAQUE ".wh..wh..opq"

/* Names are bytes: see tarball-lib.c. */
void arc_utf8_names(void);
/* The fds a deep tree keeps open may need more than the soft limit. */
void arc_raise_nofile(void);
/* A copy of s fit for a one-line message (control characters '?',
 * long names cut). */
void arc_printable(const char *s, char *buf, size_t len);

#ifndef TARBALL_LIB_NO_MACROS
#define archive_read_new (*arc_fn.read_new)
#define archive_read_free (*arc_fn.read_free)
#define archive_read_support_format_tar (*arc_fn.read_support_format_tar)
#define archive_read_support_filter_gzip (*arc_fn.read_support_filter_gzip)
#define archive_read_support_filter_zstd (*arc_fn.read_support_filter_zstd)
#define archive_read_support_filter_xz (*arc_fn.read_support_filter_xz)
#define archive_read_support_filter_bzip2 (*arc_fn.read_support_filter_bzip2)
#define archive_read_support_filter_lz4 (*arc_fn.read_support_filter_lz4)
#define archive_read_open (*arc_fn.read_open)
#define archive_read_next_header (*arc_fn.read_next_header)
#define archive_read_data (*arc_fn.read_data)
#define archive_read_data_block (*arc_fn.read_data_block)
#define archive_filter_bytes (*arc_fn.filter_bytes)
#define archive_write_new (*arc_fn.write_new)
#define archive_write_free (*arc_fn.write_free)
#define archive_write_set_format_pax (*arc_fn.write_set_format_pax)
#define archive_write_add_filter_gzip (*arc_fn.write_add_filter_gzip)
#define archive_write_add_filter_zstd (*arc_fn.write_add_filter_zstd)
#define archive_write_set_filter_option (*arc_fn.write_set_filter_option)
#define archive_write_open_fd (*arc_fn.write_open_fd)
#define archive_write_header (*arc_fn.write_header)
#define archive_write_data (*arc_fn.write_data)
#define archive_write_finish_entry (*arc_fn.write_finish_entry)
#define archive_write_close (*arc_fn.write_close)
#define archive_error_string (*arc_fn.error_string)
#define archive_set_error (*arc_fn.set_error)
#define archive_entry_new (*arc_fn.entry_new)
#define archive_entry_free (*arc_fn.entry_free)
#define archive_entry_clear (*arc_fn.entry_clear)
#define archive_entry_set_pathname (*arc_fn.entry_set_pathname)
#define archive_entry_set_mode (*arc_fn.entry_set_mode)
#define archive_entry_set_uid (*arc_fn.entry_set_uid)
#define archive_entry_set_gid (*arc_fn.entry_set_gid)
#define archive_entry_set_size (*arc_fn.entry_set_size)
#define archive_entry_set_mtime (*arc_fn.entry_set_mtime)
#define archive_entry_set_rdev (*arc_fn.entry_set_rdev)
#define archive_entry_set_symlink (*arc_fn.entry_set_symlink)
#define archive_entry_set_hardlink (*arc_fn.entry_set_hardlink)
#define archive_entry_xattr_add_entry (*arc_fn.entry_xattr_add_entry)
#define archive_entry_sparse_add_entry (*arc_fn.entry_sparse_add_entry)
#define archive_entry_pathname (*arc_fn.entry_pathname)
#define archive_entry_hardlink (*arc_fn.entry_hardlink)
#define archive_entry_symlink (*arc_fn.entry_symlink)
#define archive_entry_filetype (*arc_fn.entry_filetype)
#define archive_entry_mode (*arc_fn.entry_mode)
#define archive_entry_uid (*arc_fn.entry_uid)
#define archive_entry_gid (*arc_fn.entry_gid)
#define archive_entry_size (*arc_fn.entry_size)
#define archive_entry_size_is_set (*arc_fn.entry_size_is_set)
#define archive_entry_rdev (*arc_fn.entry_rdev)
#define archive_entry_mtime (*arc_fn.entry_mtime)
#define archive_entry_mtime_nsec (*arc_fn.entry_mtime_nsec)
#define archive_entry_mtime_is_set (*arc_fn.entry_mtime_is_set)
#define archive_entry_atime (*arc_fn.entry_atime)
#define archive_entry_atime_nsec (*arc_fn.entry_atime_nsec)
#define archive_entry_atime_is_set (*arc_fn.entry_atime_is_set)
#define archive_entry_xattr_reset (*arc_fn.entry_xattr_reset)
#define archive_entry_xattr_next (*arc_fn.entry_xattr_next)
#endif

#endif
