#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lock.h"
#include "log.h"
#include "mounts.h"
#include "store.h"
#include "util.h"

#ifndef CTOOL_DEFAULT_STORE
#define CTOOL_DEFAULT_STORE "/var/lib/ctool"
#endif

static const char *const store_dirs[] = { "layers", "envs", "trash", "tmp", "locks", "on", "names" };

int store_open(const char *path, bool catalog, struct store **ret, struct ct_err *e)
{
	_cleanup_free_ char *abs = NULL;
	struct store *s;
	size_t i;
	int r;

	if (!path || !*path)
		path = getenv("CTOOL_STORE");
	if (!path || !*path)
		path = CTOOL_DEFAULT_STORE;
	r = mkdir_p(path, 0755);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot create store '%s'", path);
	abs = realpath(path, NULL);
	if (!abs)
		return ct_fail_errno(e, errno, "cannot resolve store '%s'", path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return ct_fail(e, ENOMEM, "out of memory");
	s->path = TAKE_PTR(abs);
	s->dfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dfd < 0) {
		r = ct_fail_errno(e, errno, "cannot open store '%s'", s->path);
		goto fail;
	}
	for (i = 0; i < ARRAY_SIZE(store_dirs); i++) {
		if (mkdirat(s->dfd, store_dirs[i], 0700) < 0 && errno != EEXIST) {
			r = ct_fail_errno(e, errno, "cannot create '%s/%s'", s->path, store_dirs[i]);
			goto fail;
		}
	}
	if (catalog) {
		r = store_open_catalog(s, e);
		if (r < 0)
			goto fail;
	}
	*ret = s;
	return 0;
fail:
	store_free(s);
	return r;
}

int store_open_catalog(struct store *s, struct ct_err *e)
{
	_cleanup_free_ char *db = NULL;

	if (s->cat)
		return 0;
	db = xasprintf("%s/catalog.db", s->path);
	if (!db)
		return ct_fail(e, ENOMEM, "out of memory");
	return catalog_open(db, &s->cat, e);
}

void store_free(struct store *s)
{
	if (!s)
		return;
	catalog_close(s->cat);
	if (s->dfd >= 0)
		(void)close(s->dfd);
	free(s->path);
	free(s);
}

char *store_path(const struct store *s, const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&rel, fmt, ap);
	va_end(ap);
	if (r < 0)
		return NULL;
	return xasprintf("%s/%s", s->path, rel);
}

int store_trash(struct store *s, const char *path, struct ct_err *e)
{
	char id[37];
	_cleanup_free_ char *dst = NULL;

	uuid_new(id);
	dst = store_path(s, "trash/%s", id);
	if (!dst)
		return ct_fail(e, ENOMEM, "out of memory");
	if (rename(path, dst) < 0) {
		if (errno == ENOENT)
			return 0;
		return ct_fail_errno(e, errno, "cannot move '%s' to the trash", path);
	}
	return 0;
}

/* Empty trash/ while holding its lock; entries that cannot be deleted
 * (a mount below) stay and are reported at debug level. */
static int trash_empty(struct store *s, struct ct_err *e)
{
	_cleanup_close_ int tfd = openat(s->dfd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (tfd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s/trash'", s->path);
	d = fdopendir(fcntl(tfd, F_DUPFD_CLOEXEC, 3));
	if (!d)
		return ct_fail_errno(e, errno, "cannot read '%s/trash'", s->path);
	while ((de = readdir(d))) {
		struct ct_err e2 = { 0 };

		if (de->d_name[0] == '.')
			continue;
		if (rm_tree_onefs(tfd, de->d_name, &e2) < 0) {
			log_debug("trash: %s", e2.msg);
			if (!r)
				r = ct_fail(e, e2.code, "%s", e2.msg);
		}
	}
	closedir(d);
	return r;
}

static bool trash_is_empty(struct store *s)
{
	_cleanup_close_ int tfd = openat(s->dfd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	bool empty = true;

	if (tfd < 0)
		return true;
	d = fdopendir(TAKE_FD(tfd));
	if (!d)
		return true;
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.') {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

int store_trash_flush(struct store *s, bool wait, struct ct_err *e)
{
	_cleanup_close_ int lfd = -1;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none;
	char *argv[] = { (char *)"ctool", (char *)"-q", (char *)"--store", s->path,
			 (char *)"gc", (char *)"--trash", (char *)"--no-wait", NULL };
	pid_t pid;
	int r;

	if (wait || !trash_is_empty(s)) {
		lfd = openat(s->dfd, "locks/trash", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (lfd < 0)
			return ct_fail_errno(e, errno, "cannot open '%s/locks/trash'", s->path);
	}
	if (wait) {
		while (flock(lfd, LOCK_EX) < 0)
			if (errno != EINTR)
				return ct_fail_errno(e, errno, "cannot lock the trash");
		return trash_empty(s, e);
	}
	if (lfd < 0)
		return 0;       /* nothing to delete */
	if (flock(lfd, LOCK_EX | LOCK_NB) < 0)
		return 0;       /* a deleter is at work: it or a later gc finishes */
	(void)close(TAKE_FD(lfd));
	/* A detached 'ctool gc --trash --no-wait' empties the trash in the
	 * background: one deleter runs at a time, and a waiting gc finishes
	 * whatever it leaves. It is spawned (vfork and exec), which costs
	 * the caller far less than a fork, and keeps none of the caller's
	 * fds (an env lock held as long as the deletion takes) nor its
	 * terminal. Callers exit right after, so it is soon nobody's child. */
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	(void)posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	(void)posix_spawn_file_actions_adddup2(&fa, 0, 1);
	(void)posix_spawn_file_actions_adddup2(&fa, 0, 2);
	(void)posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	(void)posix_spawnattr_setsigmask(&at, &none);
	(void)posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
	fflush(NULL);
	r = posix_spawn(&pid, "/proc/self/exe", &fa, &at, argv, NULL);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (r != 0)
		return ct_fail_errno(e, r, "cannot start the trash deleter");
	return 0;
}

int store_trash_empty_nowait(struct store *s, struct ct_err *e)
{
	_cleanup_close_ int lfd = openat(s->dfd, "locks/trash", O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (lfd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s/locks/trash'", s->path);
	if (flock(lfd, LOCK_EX | LOCK_NB) < 0)
		return 0;
	return trash_empty(s, e);
}

int store_tmp_new(struct store *s, char **ret_path, int *ret_lockfd, struct ct_err *e)
{
	char id[37];
	_cleanup_free_ char *path = NULL, *lock = NULL;
	_cleanup_close_ int fd = -1;

	uuid_new(id);
	path = store_path(s, "tmp/%s", id);
	lock = store_path(s, "tmp/%s.lock", id);
	if (!path || !lock)
		return ct_fail(e, ENOMEM, "out of memory");
	fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot create '%s'", lock);
	if (flock(fd, LOCK_EX) < 0)
		return ct_fail_errno(e, errno, "cannot lock '%s'", lock);
	if (mkdir(path, 0755) < 0) {
		int r = ct_fail_errno(e, errno, "cannot create '%s'", path);

		(void)unlink(lock);
		return r;
	}
	*ret_path = TAKE_PTR(path);
	*ret_lockfd = TAKE_FD(fd);
	return 0;
}

int store_tmp_clean(struct store *s, struct ct_err *e)
{
	_cleanup_close_ int tfd = openat(s->dfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (tfd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s/tmp'", s->path);
	d = fdopendir(fcntl(tfd, F_DUPFD_CLOEXEC, 3));
	if (!d)
		return ct_fail_errno(e, errno, "cannot read '%s/tmp'", s->path);
	while ((de = readdir(d))) {
		char lockname[NAME_MAX + 8];
		_cleanup_close_ int lfd = -1;
		struct ct_err e2 = { 0 };
		size_t n = strlen(de->d_name);

		if (n <= 5 || strcmp(de->d_name + n - 5, ".lock") != 0)
			continue;
		lfd = openat(tfd, de->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0)
			continue; /* still in use */
		snprintf(lockname, sizeof(lockname), "%.*s", (int)(n - 5), de->d_name);
		if (rm_tree_onefs(tfd, lockname, &e2) < 0) {
			if (!r)
				r = ct_fail(e, e2.code, "%s", e2.msg);
			continue;
		}
		(void)unlinkat(tfd, de->d_name, 0);
	}
	closedir(d);
	return r;
}

/* The id of the mount at the store's path (0 when unknown). */
static uint64_t store_mnt_id(const struct store *s)
{
	struct statx stx;

	if (statx(AT_FDCWD, s->path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) < 0 ||
	    !(stx.stx_mask & STATX_MNT_ID))
		return 0;
	return stx.stx_mnt_id;
}

int store_keep_private(struct store *s, struct ct_err *e)
{
	_cleanup_free_ char *mark = store_path(s, "locks/private-bind");
	bool shared = false, made;
	char id[32];
	int r = mounts_is_shared(s->path, &shared, e);

	if (r < 0 || !shared)
		return r;
	log_debug("making the store '%s' a private mount", s->path);
	made = !path_is_mountpoint(s->path);
	r = mounts_make_private(s->path, e);
	if (r < 0 || !made)
		return r;
	/* remember which mount is ours, so gc never unmounts an admin's */
	snprintf(id, sizeof(id), "%llu\n", (unsigned long long)store_mnt_id(s));
	(void)write_file_atomic(mark, id, strlen(id), 0600);
	return 0;
}

int store_release_private(struct store *s, struct ct_err *e)
{
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *mark = store_path(s, "locks/private-bind"), *text = NULL;
	char **list = NULL;
	size_t n = 0;
	int r;

	if (!path_is_mountpoint(s->path) || !mark)
		return 0;
	/* only the bind store_keep_private made is ours: a filesystem or a
	 * bind the admin mounted on the store stays */
	if (read_file(mark, &text, NULL) < 0 || strtoull(text, NULL, 10) != store_mnt_id(s))
		return 0;
	r = lock_name(s, "store", "mount", LOCK_EX, &lock, e);
	if (r < 0)
		return r;
	r = mounts_list_under(s->path, &list, &n, e);
	if (r < 0)
		return r;
	/* lazily: this very command holds an fd in it */
	if (n == 1) {
		if (umount2(s->path, UMOUNT_NOFOLLOW | MNT_DETACH) < 0)
			r = ct_fail_errno(e, errno, "cannot unmount '%s'", s->path);
		else
			(void)unlink(mark);
	}
	mounts_list_free(list, n);
	return r;
}
