/* Small helpers shared by the core: cleanup attributes, names, files. */
#ifndef CTOOL_UTIL_H
#define CTOOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "err.h"

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		(void)close(*fd);
		errno = saved;
	}
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline void *take_ptr_(void *pp)
{
	void **p = pp, *v = *p;
	*p = NULL;
	return v;
}
#define TAKE_PTR(p) ((__typeof__(p))take_ptr_(&(p)))

static inline int take_fd_(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}
#define TAKE_FD(fd) take_fd_(&(fd))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Names of images and envs: [a-z0-9][a-z0-9_.-]{0,62}. */
#define CT_NAME_MAX 63
bool name_is_valid(const char *name);

/* asprintf that returns NULL on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Create dir and missing parents (mode 0755). 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

/* Read a whole small file into a NUL-terminated buffer the caller frees.
 * Returns 0 or -errno. */
int read_file(const char *path, char **ret, size_t *ret_len);
/* The same, from an open fd (left open). */
int read_fd(int fd, char **ret, size_t *ret_len);

/* This boot's id ("" when unknown). CTOOL_TEST_BOOT_ID stands for it in
 * the tests, which cannot reboot the machine to show what a volatile env,
 * or a copy ctool-overlayfs left waiting, becomes after one. */
void boot_id(char ret[40]);
/* ctool-overlayfs logs each copy it lets wait in WORKDIR/PEND_LOG_NAME,
 * after a header of this boot's id and a newline (PEND_LOG_HEADER bytes),
 * and empties the log but for the header once none waits
 * (fuse/publish.c); ctool reads it (src/driver.c). */
#define PEND_LOG_NAME "ctool-pending"
#define PEND_LOG_HEADER 37

/* Write data to path atomically (temp file + rename). 0 or -errno. */
int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode);

/* Current time in milliseconds (CLOCK_REALTIME). */
int64_t now_ms(void);

/* A fresh random uuid as a 36-character lowercase string (+NUL). */
void uuid_new(char ret[37]);

/* Delete the tree 'name' under dirfd without ever crossing a mount
 * point: a directory whose mount id differs from dirfd's stops the
 * deletion with -EXDEV and is left in place. 0 or -errno. */
int rm_tree_onefs(int dirfd, const char *name, struct ct_err *e);

/* True when path is a directory holding nothing (false on any error). */
bool dir_is_empty(const char *path);

/* True when path exists and is a mount point (its own mount root). */
bool path_is_mountpoint(const char *path);

/* A shared library opened with dlopen on first need, so that the
 * commands that do not use it never pay for loading it. */
struct dl_lib {
	const char *soname;      /* "libsqlite3.so.0" */
	const char *what;        /* "the SQLite library", for messages */
	int state;               /* 0 untried, 1 loaded, -1 failed */
	char why[240];           /* the failure, said again at each later call */
};

/* Load lib once and fill table, an array of n function pointers, with
 * the symbols names[i]. 0, or -ENOSYS with *e saying why. */
int dl_load(struct dl_lib *lib, const char *const *names, void *table, size_t n,
	    struct ct_err *e);

/* Bytes the tree at path takes on disk (its blocks), not crossing into
 * other mounts; -1 when it cannot be read. */
int64_t tree_bytes(const char *path);

/* "512", "3.4K", "12M", "1.2G": n bytes for people. */
void fmt_bytes(int64_t n, char *buf, size_t len);

/* Lexically normalise an absolute path into a new string: removes "//"
 * and "." components and a trailing '/'. Fails (NULL, errno=EINVAL) on
 * a relative path or any ".." component. */
char *path_clean_abs(const char *path);

/* Does 'path' equal 'dir' or lie below it (lexically)? */
bool path_is_under(const char *path, const char *dir);

#endif
