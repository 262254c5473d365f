#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "driver.h"
#include "env.h"
#include "exec.h"
#include "lock.h"
#include "log.h"
#include "mounts.h"
#include "procs.h"
#include "toolconf.h"
#include "util.h"

extern char **environ;

/* How long /chroot.d/stop may take before 'off' kills it. */
#define STOP_HOOK_TIMEOUT_MS 30000

int env_lock(struct store *s, const char *name, int *ret_fd, struct ct_err *e)
{
	return lock_name(s, "env", name, LOCK_EX, ret_fd, e);
}

void env_free(struct env *env)
{
	if (!env)
		return;
	free(env->dir);
	free(env->root);
	free(env->upper);
	free(env->work);
	free(env->conf);
	free(env->fuse_pid);
	free(env);
}

static int env_paths(struct store *s, struct env *env)
{
	env->dir = store_path(s, "envs/%s", env->row.id);
	env->upper = store_path(s, "envs/%s/upper", env->row.id);
	env->work = store_path(s, "envs/%s/work", env->row.id);
	env->conf = store_path(s, "envs/%s/conf", env->row.id);
	env->fuse_pid = store_path(s, "envs/%s/fuse.pid", env->row.id);
	env->root = env->row.root[0] ? strdup(env->row.root) : store_path(s, "envs/%s/root", env->row.id);
	if (!env->dir || !env->upper || !env->work || !env->conf || !env->root || !env->fuse_pid)
		return -ENOMEM;
	return 0;
}

int env_make_dirs(struct env *env, bool all, struct ct_err *e)
{
	const char *dirs[] = { env->dir, env->conf, env->upper, env->work, env->root };
	size_t i, n = all ? ARRAY_SIZE(dirs) : 2;

	for (i = 0; i < n; i++) {
		if (i == 4 && env->row.root[0])
			continue; /* a chosen root is the user's */
		if (mkdir(dirs[i], i == 1 ? 0700 : 0755) < 0 && errno != EEXIST)
			return ct_fail_errno(e, errno, "cannot create '%s'", dirs[i]);
	}
	return 0;
}

static int env_from_row(struct store *s, const struct catalog_env *row, struct env **ret,
			struct ct_err *e)
{
	struct env *env = calloc(1, sizeof(*env));
	struct stat st;

	if (!env)
		return ct_fail(e, ENOMEM, "out of memory");
	env->row = *row;
	if (env_paths(s, env) < 0) {
		env_free(env);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	if (stat(env->dir, &st) < 0) {
		/* a clone from an env staged in tmp/ whose rename was cut short */
		_cleanup_free_ char *staged = store_path(s, "tmp/%s", row->id);

		if (staged && rename(staged, env->dir) == 0)
			log_debug("finished the clone of '%s'", row->name);
	}
	*ret = env;
	return 0;
}

int env_load(struct store *s, const char *name, struct env **ret, struct ct_err *e)
{
	struct catalog_env row;
	int r = catalog_env_get(s->cat, name, &row, e);

	if (r < 0)
		return r;
	return env_from_row(s, &row, ret, e);
}

struct find_root {
	const char *dir;
	struct store *s;
	struct catalog_env row;
	bool found;
};

static int find_root_cb(const struct catalog_env *row, void *data)
{
	struct find_root *f = data;
	_cleanup_free_ char *def = NULL;

	if (row->root[0]) {
		if (strcmp(row->root, f->dir) != 0)
			return 0;
	} else {
		def = store_path(f->s, "envs/%s/root", row->id);
		if (!def || strcmp(def, f->dir) != 0)
			return 0;
	}
	f->row = *row;
	f->found = true;
	return 1;
}

int env_find_by_root(struct store *s, const char *dir, struct env **ret, struct ct_err *e)
{
	_cleanup_free_ char *real = realpath(dir, NULL);
	struct find_root f = { .s = s };
	int r;

	if (!real)
		return ct_fail_errno(e, errno, "'%s'", dir);
	f.dir = real;
	r = catalog_env_foreach(s->cat, find_root_cb, &f, e);
	if (r < 0)
		return r;
	if (!f.found)
		return ct_fail(e, ENOENT, "'%s' is not the root of an env", real);
	return env_from_row(s, &f.row, ret, e);
}

bool env_is_on(const struct env *env)
{
	struct statx stx;

	/* a FUSE mount whose daemon died is still mounted */
	if (statx(AT_FDCWD, env->root, AT_SYMLINK_NOFOLLOW, 0, &stx) < 0)
		return errno == ENOTCONN;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/* When the env's root is a FUSE mount whose daemon is gone, stop what
 * runs inside and detach the mounts (nothing below can be reached by
 * path any more); reap what is left of the daemon. Returns whether it
 * did. */
static bool env_drop_dead_fuse(struct env *env, int grace_ms)
{
	/* only the FUSE driver can die under an env: no forced stat otherwise */
	if (strcmp(env->row.driver, DRIVER_FUSE) != 0 || !driver_fuse_dead(env->root))
		return false;
	log_warn("env '%s': its ctool-overlayfs is gone; unmounting what is left", env->row.name);
	(void)procs_stop(env->root, grace_ms, NULL);
	if (umount2(env->root, UMOUNT_NOFOLLOW | MNT_DETACH) < 0)
		log_warn("cannot detach '%s': %m", env->root);
	driver_fuse_reap(env->fuse_pid);
	return true;
}

/* Undo a failed 'on': detach whatever it mounted at the root, and wait
 * for a FUSE daemon it started to go (nothing when there is none). */
static void env_undo_mounts(struct env *env)
{
	struct ct_err e2;

	(void)mounts_umount_all(env->root, true, &e2);
	driver_fuse_reap(env->fuse_pid);
}

/* The records of an env: names/NAME holds its id and root, on/NAME the
 * same while it is on, so 'run' on an env that is on, and 'reset', need
 * no catalog. Both are written by 'on' once the catalog says the env is
 * on; on/NAME is removed before anything turns the env off, names/NAME
 * before rm removes the env's row. A record left by a crash or a reboot
 * names a root that is no longer a mount point (on/), or nothing that
 * changed (names/: ids are never reused), so they are never fsynced. */
static void record_write(struct store *s, const char *dir, const struct env *env)
{
	_cleanup_free_ char *data = xasprintf("%s\n%s\n", env->row.id, env->root);
	char tmp[NAME_MAX + 8], name[NAME_MAX + 8];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	if (!data || strchr(env->root, '\n'))
		return;
	snprintf(name, sizeof(name), "%s/%s", dir, env->row.name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%d", dir, env->row.name, (int)getpid());
	fd = openat(s->dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	n = write(fd, data, strlen(data));
	if (n != (ssize_t)strlen(data) || renameat(s->dfd, tmp, s->dfd, name) < 0)
		(void)unlinkat(s->dfd, tmp, 0);
}

static void record_remove(struct store *s, const char *dir, const char *name)
{
	char path[NAME_MAX + 8];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	(void)unlinkat(s->dfd, path, 0);
}

void env_record_on(struct store *s, const struct env *env)
{
	record_write(s, "names", env);
	record_write(s, "on", env);
}

void env_record_off(struct store *s, const char *name)
{
	record_remove(s, "on", name);
}

static bool is_uuid(const char *id)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? id[i] != '-' : !strchr("0123456789abcdef", id[i]) || !id[i])
			return false;
	}
	return id[36] == '\0';
}

/* Load env 'name' from its record in dir; -ENOENT when there is none
 * or it does not hold an id and an absolute root. */
static int record_load(struct store *s, const char *dir, const char *name, struct env **ret)
{
	char path[NAME_MAX + 8], buf[PATH_MAX + 64], *nl, *root;
	_cleanup_close_ int fd = -1;
	struct env *env;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = openat(s->dfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	nl = strchr(buf, '\n');
	if (!nl)
		return -ENOENT;
	*nl = '\0';
	root = nl + 1;
	nl = strchr(root, '\n');
	if (!nl || nl[1] || root[0] != '/' || !is_uuid(buf))
		return -ENOENT;
	*nl = '\0';
	env = calloc(1, sizeof(*env));
	if (!env)
		return -ENOMEM;
	snprintf(env->row.name, sizeof(env->row.name), "%s", name);
	memcpy(env->row.id, buf, 37); /* is_uuid: 36 characters and a NUL */
	if (env_paths(s, env) < 0) {
		env_free(env);
		return -ENOMEM;
	}
	if (strcmp(env->root, root) != 0) {
		/* a chosen root */
		snprintf(env->row.root, sizeof(env->row.root), "%s", root);
		free(env->root);
		env->root = strdup(root);
		if (!env->root) {
			env_free(env);
			return -ENOMEM;
		}
	}
	*ret = env;
	return 0;
}

int env_load_on(struct store *s, const char *name, struct env **ret)
{
	struct env *env = NULL;
	int r = record_load(s, "on", name, &env);

	if (r < 0)
		return r;
	if (!path_is_mountpoint(env->root)) {
		/* off, or a FUSE mount whose daemon died: the full path */
		env_free(env);
		return -ENOENT;
	}
	env->row.want_on = true;
	*ret = env;
	return 0;
}

int env_load_named(struct store *s, const char *name, struct env **ret)
{
	struct env *env = NULL;
	struct stat st;
	int r = record_load(s, "names", name, &env);

	if (r < 0)
		return r;
	if (stat(env->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		env_free(env);
		return -ENOENT;
	}
	*ret = env;
	return 0;
}

struct root_clash {
	const char *root;
	char other[NAME_MAX + 1];
};

static int root_clash_cb(const struct catalog_env *row, void *data)
{
	struct root_clash *c = data;

	if (!row->root[0] || !(path_is_under(c->root, row->root) || path_is_under(row->root, c->root)))
		return 0;
	snprintf(c->other, sizeof(c->other), "%s", row->name);
	return 1;
}

static int root_check(struct store *s, const char *real, struct ct_err *e)
{
	struct root_clash c = { .root = real };
	int r;

	if (strcmp(real, "/") == 0 || path_is_under(real, s->path) || path_is_under(s->path, real))
		return ct_fail(e, EINVAL, "'%s' cannot be an env's root", real);
	/* one env's tree inside another's would be hidden, or deleted, with it */
	r = catalog_env_foreach(s->cat, root_clash_cb, &c, e);
	if (r < 0)
		return r;
	if (c.other[0])
		return ct_fail(e, EINVAL, "'%s' is inside env '%s' or holds its root", real, c.other);
	if (!dir_is_empty(real))
		return ct_fail(e, ENOTEMPTY, "'%s' is not empty", real);
	if (path_is_mountpoint(real))
		return ct_fail(e, EBUSY, "'%s' is a mount point", real);
	return 0;
}

/* Check a root chosen with -d: absolute after resolution, outside the
 * store and every other env's root, and an empty (or missing, then
 * created, and removed again when refused) directory. */
static int root_prepare(struct store *s, const char *dir, char **ret, struct ct_err *e)
{
	_cleanup_free_ char *real = NULL;
	bool made = false;
	struct stat st;
	int r;

	if (stat(dir, &st) < 0) {
		if (errno != ENOENT)
			return ct_fail_errno(e, errno, "'%s'", dir);
		r = mkdir_p(dir, 0755);
		if (r < 0)
			return ct_fail_errno(e, -r, "cannot create '%s'", dir);
		made = true;
	} else if (!S_ISDIR(st.st_mode)) {
		return ct_fail(e, ENOTDIR, "'%s' is not a directory", dir);
	}
	real = realpath(dir, NULL);
	if (!real)
		return ct_fail_errno(e, errno, "'%s'", dir);
	r = root_check(s, real, e);
	if (r < 0) {
		if (made)
			(void)rmdir(real);
		return r;
	}
	*ret = TAKE_PTR(real);
	return 0;
}

int env_clone(struct store *s, const char *image, const struct env *src_env, const char *name,
	      const char *root_dir, bool volatile_, const char *driver, struct ct_err *e)
{
	struct catalog_env row = { 0 };
	_cleanup_free_ char *root = NULL, *stage = NULL, *dir = NULL;
	_cleanup_close_ int stage_lock = -1;
	int r;

	/* a bad driver is refused before anything is made */
	r = driver_requested(driver, &driver, e);
	if (r < 0)
		return r;
	if (root_dir) {
		r = root_prepare(s, root_dir, &root, e);
		if (r < 0)
			return r;
		if (strlen(root) >= sizeof(row.root))
			return ct_fail(e, ENAMETOOLONG, "'%s' is too long", root);
		strcpy(row.root, root);
	}
	snprintf(row.name, sizeof(row.name), "%s", name);
	snprintf(row.image, sizeof(row.image), "%s", src_env ? src_env->row.image : image);
	snprintf(row.driver, sizeof(row.driver), "%s", driver ? driver : DRIVER_KERNEL);
	row.volatile_ = volatile_;
	row.created = now_ms();
	if (src_env)
		memcpy(row.layers_of, src_env->row.id, sizeof(row.layers_of));
	if (src_env) {
		/* stage the copy in tmp/<id>, so an interruption leaves nothing */
		const char *base;
		_cleanup_free_ char *up = NULL, *cf = NULL, *wk = NULL, *lock = NULL;

		r = store_tmp_new(s, &stage, &stage_lock, e);
		if (r < 0)
			return r;
		base = strrchr(stage, '/') + 1;
		snprintf(row.id, sizeof(row.id), "%s", base);
		up = xasprintf("%s/upper", stage);
		cf = xasprintf("%s/conf", stage);
		wk = xasprintf("%s/work", stage);
		lock = xasprintf("%s.lock", stage);
		if (!up || !cf || !wk || !lock)
			return ct_fail(e, ENOMEM, "out of memory");
		/* a source never turned on (or just reset) has no folders yet */
		if (access(src_env->upper, F_OK) == 0)
			r = copy_tree(src_env->upper, up, e);
		else if (mkdir(up, 0755) < 0)
			r = ct_fail_errno(e, errno, "cannot create '%s'", up);
		if (r == 0 && access(src_env->conf, F_OK) == 0)
			r = copy_tree(src_env->conf, cf, e);
		if (r == 0 && mkdir(wk, 0755) < 0)
			r = ct_fail_errno(e, errno, "cannot create '%s'", wk);
		if (r == 0)
			r = catalog_env_add(s->cat, &row, e);
		if (r < 0) {
			struct ct_err e2;

			(void)rm_tree_onefs(AT_FDCWD, stage, &e2);
			(void)unlink(lock);
			return r;
		}
		dir = store_path(s, "envs/%s", row.id);
		if (!dir || rename(stage, dir) < 0)
			log_debug("clone of '%s' left staged: %m", name);
		(void)unlink(lock);
	} else {
		uuid_new(row.id);
		r = catalog_env_add(s->cat, &row, e);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The kernel leaves work/work/incompat/volatile behind a volatile mount.
 * Found at 'on': when the host has rebooted since the env was last on,
 * its unsynced changes cannot be trusted, so the env is reset. */
static int env_drop_layer(struct store *s, struct env *env, struct ct_err *e);

static int volatile_recover(struct store *s, struct env *env, struct ct_err *e)
{
	_cleanup_free_ char *flag = xasprintf("%s/work/incompat/volatile", env->work);
	_cleanup_free_ char *incompat = xasprintf("%s/work/incompat", env->work);
	char now[40];
	struct stat st;

	if (!flag || !incompat)
		return ct_fail(e, ENOMEM, "out of memory");
	if (stat(flag, &st) < 0)
		return 0;
	boot_id(now);
	if (strcmp(now, env->row.boot_id) != 0) {
		log_warn("env '%s' is volatile and the host went down while it was on: "
			 "its changes are discarded", env->row.name);
		/* 'run' may be the caller, which becomes the user's command: it
		 * starts no deleter; the next reset, rm or gc empties the trash */
		return env_drop_layer(s, env, e);
	}
	/* same boot: the page cache still holds what was written */
	return rm_tree_onefs(AT_FDCWD, incompat, e);
}

/* Make the volatile overlay's data durable after unmounting it, then drop
 * the kernel's marker so the next 'on' trusts it. */
static void volatile_settle(struct env *env)
{
	_cleanup_close_ int fd = open(env->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *incompat = xasprintf("%s/work/incompat", env->work);

	if (fd >= 0 && syncfs(fd) == 0 && incompat)
		(void)rm_tree_onefs(AT_FDCWD, incompat, NULL);
}

/* Is err the kernel refusing an overlay (rather than a missing folder or
 * a root that is not safe)? Then the FUSE driver may take over. */
static bool kernel_refused(int err)
{
	return err == EINVAL || err == EPERM || err == EACCES || err == ENODEV ||
	       err == EOPNOTSUPP || err == ENOSYS || err == EXDEV;
}

/* Mount the overlay with the driver asked for (see env_on); the driver
 * in use and why go in env->row, for env_on to record once the env is
 * on (a failed on leaves the catalog as it was). */
static int mount_overlay_with(struct env *env, const struct overlay_spec *ov,
			      const char *asked, int dirfd, int *ret_fd, struct ct_err *e)
{
	const char *pidfile = env->fuse_pid;
	char note[sizeof(env->row.driver_note)] = "";
	const char *want = asked, *used;
	int r;

	/* an env whose driver was a fallback asks for the kernel again */
	if (!want)
		want = env->row.driver_note[0] || !env->row.driver[0] ? DRIVER_KERNEL : env->row.driver;
	/* the kernel's overlay would lose them: ctool-overlayfs shows them
	 * (only an env whose last driver was it can have any) */
	if (strcmp(want, DRIVER_FUSE) != 0 && strcmp(env->row.driver, DRIVER_FUSE) == 0 &&
	    driver_fuse_copies_wait(ov)) {
		if (asked)
			return ct_fail(e, EBUSY, "ctool-overlayfs left copies waiting in '%s', which "
				       "the kernel's overlay would lose: turn the env on with "
				       "--driver fuse once", ov->work);
		want = DRIVER_FUSE;
		snprintf(note, sizeof(note), "ctool-overlayfs left copies waiting in the workdir");
		log_debug("env '%s': %s; using it to show them", env->row.name, note);
	}
	used = want;
	if (strcmp(want, DRIVER_FUSE) == 0) {
		r = driver_fuse_mount(dirfd, env->root, ov, pidfile, ret_fd, e);
	} else {
		/* CTOOL_TEST_KERNEL_REFUSES=1: the tests' stand-in for a kernel
		 * that refuses (an upper on overlayfs, no permission) */
		r = getenv("CTOOL_TEST_KERNEL_REFUSES") ?
			    ct_fail(e, EPERM, "cannot mount the overlay on '%s': refused "
				    "(CTOOL_TEST_KERNEL_REFUSES)", env->root) :
			    mounts_overlay(dirfd, env->root, ov, ret_fd, e);
		if (r < 0 && !asked && kernel_refused(-r)) {
			snprintf(note, sizeof(note), "the kernel refused the overlay: %s", e->msg);
			log_debug("env '%s': %s; using ctool-overlayfs", env->row.name, note);
			used = DRIVER_FUSE;
			r = driver_fuse_mount(dirfd, env->root, ov, pidfile, ret_fd, e);
			if (r < 0) {
				char why[sizeof(e->msg)];

				snprintf(why, sizeof(why), "%s", e->msg);
				r = ct_fail(e, -r, "%s; and the fuse driver failed: %s", note, why);
			}
		}
	}
	if (r < 0)
		return r;
	if (ov->volatile_ && strcmp(used, DRIVER_FUSE) == 0) {
		/* the kernel's marker of a volatile mount, which volatile_recover
		 * reads and volatile_settle removes; made once the daemon has
		 * cleaned its workdir */
		_cleanup_free_ char *flag = xasprintf("%s/work/incompat/volatile", env->work);

		r = flag ? mkdir_p(flag, 0755) : -ENOMEM;
		if (r < 0) {
			(void)close(TAKE_FD(*ret_fd));
			env_undo_mounts(env);
			return ct_fail_errno(e, -r, "cannot mark '%s' volatile", env->work);
		}
	}
	if (strcmp(used, env->row.driver) != 0 || strcmp(note, env->row.driver_note) != 0) {
		env->driver_changed = true;
		snprintf(env->row.driver, sizeof(env->row.driver), "%s", used);
		snprintf(env->row.driver_note, sizeof(env->row.driver_note), "%s", note);
	}
	return 0;
}

static int mount_overlay(struct store *s, struct env *env, const char *asked, int *ret_fd,
			 struct ct_err *e)
{
	_cleanup_close_ int dirfd = -1;
	struct catalog_image img = { 0 };
	const char **lower = NULL;
	char **paths = NULL;
	size_t i;
	int r = catalog_env_layers(s->cat, env->row.id, &img.layers, &img.n_layers, e);

	if (r < 0)
		return r;
	if (img.n_layers == 0)
		return ct_fail(e, ENOENT, "env '%s' has no layers (its image is gone)", env->row.name);
	lower = calloc(img.n_layers + 1, sizeof(*lower));
	paths = calloc(img.n_layers + 1, sizeof(*paths));
	if (!lower || !paths) {
		r = ct_fail(e, ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < img.n_layers; i++) {
		paths[i] = store_path(s, "layers/%s", img.layers[img.n_layers - 1 - i]);
		if (!paths[i]) {
			r = ct_fail(e, ENOMEM, "out of memory");
			goto out;
		}
		lower[i] = paths[i];
	}
	{
		struct overlay_spec ov = {
			.lower = lower,
			.n_lower = img.n_layers,
			.upper = env->upper,
			.work = env->work,
			.volatile_ = env->row.volatile_,
		};
		dirfd = mounts_root_open(env->root, false, e);
		r = dirfd < 0 ? dirfd : mount_overlay_with(env, &ov, asked, dirfd, ret_fd, e);
	}
out:
	for (i = 0; paths && i < img.n_layers; i++)
		free(paths[i]);
	free(paths);
	free(lower);
	catalog_image_clear(&img);
	return r;
}

/* Append str to the NULL-terminated array *v of *n entries. */
static int strv_push(char ***v, size_t *n, char *str)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	nv[(*n)++] = str;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

static void strv_free(char **v)
{
	char **p;

	for (p = v; p && *p; p++)
		free(*p);
	free(v);
}

/* Is kv "K=V" with K a shell variable name? */
static bool env_assignment_valid(const char *kv)
{
	const char *p = kv;

	if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
		return false;
	while (*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
	       (*p >= '0' && *p <= '9'))
		p++;
	return *p == '=';
}

/* Add each absolute target of the blank-separated words to c->volumes,
 * cleaned, once. */
static int config_add_volumes(struct env_config *c, char *words)
{
	char *save = NULL, *w;

	for (w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		char *clean = w[0] == '/' ? path_clean_abs(w) : NULL;
		size_t i;

		if (!clean || strcmp(clean, "/") == 0) {
			free(clean);
			continue;
		}
		for (i = 0; i < c->n_volumes && strcmp(c->volumes[i], clean) != 0; i++)
			;
		if (i < c->n_volumes) {
			free(clean);
			continue;
		}
		if (strv_push(&c->volumes, &c->n_volumes, clean) < 0) {
			free(clean);
			return -ENOMEM;
		}
	}
	return 0;
}

static int config_line(struct env_config *c, char *line)
{
	char *arg, *end;
	size_t kw;

	line += strspn(line, " \t");
	end = line + strlen(line);
	while (end > line && strchr(" \t\r", end[-1]))
		*--end = '\0';
	kw = strcspn(line, " \t");
	arg = line + kw + strspn(line + kw, " \t");
	if (!*arg)
		return 0;
	if (kw == 3 && strncasecmp(line, "RUN", 3) == 0) {
		free(c->run);
		c->run = strdup(arg);
		return c->run ? 0 : -ENOMEM;
	}
	if (kw == 3 && strncasecmp(line, "ENV", 3) == 0) {
		char *kv;

		if (!env_assignment_valid(arg))
			return 0;
		kv = strdup(arg);
		if (!kv || strv_push(&c->envs, &c->n_envs, kv) < 0) {
			free(kv);
			return -ENOMEM;
		}
		return 0;
	}
	if (kw == 6 && strncasecmp(line, "VOLUME", 6) == 0)
		return config_add_volumes(c, arg);
	return 0;
}

int env_config_parse(const char *text, struct env_config *ret, struct ct_err *e)
{
	struct env_config c = { 0 };
	_cleanup_free_ char *copy = strdup(text ? text : "");
	char *save = NULL, *line;
	int r;

	/* both arrays exist, empty, even without a line for them */
	c.envs = calloc(1, sizeof(*c.envs));
	c.volumes = calloc(1, sizeof(*c.volumes));
	r = copy && c.envs && c.volumes ? 0 : -ENOMEM;
	for (line = copy ? strtok_r(copy, "\n", &save) : NULL; r == 0 && line;
	     line = strtok_r(NULL, "\n", &save))
		r = config_line(&c, line);
	if (r < 0) {
		env_config_clear(&c);
		return ct_fail(e, -r, "out of memory");
	}
	*ret = c;
	return 0;
}

void env_config_clear(struct env_config *c)
{
	free(c->run);
	strv_free(c->envs);
	strv_free(c->volumes);
	memset(c, 0, sizeof(*c));
}

int env_config_load(struct store *s, const struct env *env, struct env_config *ret,
		    struct ct_err *e)
{
	_cleanup_free_ char *config = NULL;
	int r = catalog_env_config(s->cat, env->row.id, &config, e);

	if (r < 0 && r != -ENOENT)
		return r;
	return env_config_parse(config, ret, e);
}

/* Write the image's ENV to <dir>/image.env for env_image_env (removed
 * when there is none; left as it is when it says the same). */
static int image_env_write(struct store *s, const struct env *env, struct ct_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s/image.env", env->dir);
	_cleanup_free_ char *data = NULL, *old = NULL;
	struct env_config c;
	size_t len = 0, i;
	int r;

	if (!path)
		return ct_fail(e, ENOMEM, "out of memory");
	r = env_config_load(s, env, &c, e);
	if (r < 0)
		return r;
	for (i = 0; i < c.n_envs; i++)
		len += strlen(c.envs[i]) + 1;
	data = malloc(len + 1);
	if (!data) {
		env_config_clear(&c);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	for (i = 0, len = 0; i < c.n_envs; i++)
		len += (size_t)sprintf(data + len, "%s\n", c.envs[i]);
	data[len] = '\0';
	env_config_clear(&c);
	if (len == 0) {
		if (unlink(path) < 0 && errno != ENOENT)
			return ct_fail_errno(e, errno, "cannot remove '%s'", path);
		return 0;
	}
	if (read_file(path, &old, NULL) == 0 && strcmp(old, data) == 0)
		return 0;
	r = write_file_atomic(path, data, len, 0600);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot write '%s'", path);
	return 0;
}

char **env_image_env(const struct env *env)
{
	_cleanup_free_ char *path = xasprintf("%s/image.env", env->dir);
	_cleanup_free_ char *text = NULL;
	size_t len = 0, n = 1, i = 0;
	char **v, *p, *save = NULL, *line;

	if (!path || read_file(path, &text, &len) < 0)
		return NULL;
	for (p = text; *p; p++)
		n += *p == '\n';
	/* the array, then the text it points into */
	v = malloc((n + 1) * sizeof(*v) + len + 1);
	if (!v)
		return NULL;
	p = memcpy((char *)(v + n + 1), text, len + 1);
	for (line = strtok_r(p, "\n", &save); line && i < n; line = strtok_r(NULL, "\n", &save))
		if (env_assignment_valid(line))
			v[i++] = line;
	v[i] = NULL;
	return v;
}

int env_binds(struct store *s, const struct env *env, struct catalog_bind **ret, size_t *ret_n,
	      struct ct_err *e)
{
	_cleanup_free_ char *conf_path = xasprintf("%s/tool.conf", env->conf);
	struct toolconf tc = { 0 };
	struct catalog_bind *rec = NULL, *all;
	size_t n_rec = 0, i;
	int r;

	if (!conf_path)
		return ct_fail(e, ENOMEM, "out of memory");
	r = toolconf_load(conf_path, &tc, e);
	if (r < 0)
		return r;
	r = catalog_bind_list(s->cat, env->row.id, &rec, &n_rec, e);
	if (r < 0) {
		toolconf_clear(&tc);
		return r;
	}
	all = calloc(tc.n_binds + n_rec + 1, sizeof(*all));
	if (!all) {
		toolconf_clear(&tc);
		free(rec);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	for (i = 0; i < tc.n_binds; i++) {
		snprintf(all[i].src, sizeof(all[i].src), "%s", tc.binds[i].src);
		snprintf(all[i].tgt, sizeof(all[i].tgt), "%s", tc.binds[i].tgt);
		all[i].ro = tc.binds[i].ro;
	}
	if (n_rec)
		memcpy(all + tc.n_binds, rec, n_rec * sizeof(*rec));
	*ret = all;
	*ret_n = tc.n_binds + n_rec;
	toolconf_clear(&tc);
	free(rec);
	return 0;
}

/* Mount the new -v binds of o and record them with the env. */
static int add_binds(struct store *s, struct env *env, int rootfd, const struct env_on_opts *o,
		     struct ct_err *e)
{
	size_t i;
	int r;

	for (i = 0; i < o->n_binds; i++) {
		struct catalog_bind b = { .ro = o->binds[i].ro };

		r = mounts_bind(rootfd, o->binds[i].src, o->binds[i].tgt, o->binds[i].ro, e);
		if (r < 0)
			return r;
		snprintf(b.src, sizeof(b.src), "%s", o->binds[i].src);
		snprintf(b.tgt, sizeof(b.tgt), "%s", o->binds[i].tgt);
		r = catalog_bind_add(s->cat, env->row.id, &b, e);
		if (r < 0)
			return r;
	}
	return 0;
}

int env_on(struct store *s, struct env *env, const struct env_on_opts *o, struct ct_err *e)
{
	struct catalog_bind *binds = NULL;
	_cleanup_close_ int rootfd = -1;
	size_t n_binds = 0, i;
	char boot[40];
	const char *asked = NULL;
	bool was_on;
	int r;

	r = driver_requested(o->driver, &asked, e);
	if (r < 0)
		return r;
	(void)env_drop_dead_fuse(env, 1000);
	was_on = env_is_on(env);
	if (was_on && !env->row.want_on) {
		/* a partial 'on' or 'off' was cut short: start again */
		log_debug("env '%s': finishing an interrupted on/off", env->row.name);
		(void)procs_stop(env->root, 1000, NULL);
		/* never detach: a busy overlay left alive under a new one on the
		 * same upper would be two writers of one layer */
		r = mounts_umount_all(env->root, false, e);
		if (r == 0)
			driver_fuse_reap(env->fuse_pid);
		if (r == -EBUSY)
			return ct_fail(e, EBUSY, "env '%s' is half off and still busy; "
				       "run 'ctool off --force %s'", env->row.name, env->row.name);
		if (r < 0)
			return r;
		was_on = false;
	}
	/* every bind is checked before anything is mounted */
	for (i = 0; i < o->n_binds; i++) {
		r = mounts_bind_check(o->binds[i].src, o->binds[i].tgt, s->path, e);
		if (r < 0)
			return r;
	}
	if (was_on) {
		rootfd = mounts_root_open(env->root, true, e);
		if (rootfd < 0)
			return rootfd;
		r = add_binds(s, env, rootfd, o, e);
		if (r == 0)
			env_record_on(s, env);
		return r;
	}
	r = env_binds(s, env, &binds, &n_binds, e);
	if (r < 0)
		return r;
	for (i = 0; i < n_binds; i++) {
		r = mounts_bind_check(binds[i].src, binds[i].tgt, s->path, e);
		if (r < 0)
			goto out;
	}
	/* files in a chosen root would vanish under the overlay; a chosen
	 * root that was removed is made again */
	if (env->row.root[0] && mkdir(env->root, 0755) < 0 && errno != EEXIST) {
		r = ct_fail_errno(e, errno, "cannot create '%s'", env->root);
		goto out;
	}
	if (env->row.root[0] && !dir_is_empty(env->root)) {
		r = ct_fail(e, ENOTEMPTY,
			    "'%s' is not empty: what was written there while the env was off would "
			    "be hidden; move it away first", env->root);
		goto out;
	}
	if (env->row.volatile_) {
		r = volatile_recover(s, env, e);
		if (r < 0)
			goto out;
	}
	r = env_finish_commit(s, env, e);
	if (r == 0)
		r = env_make_dirs(env, true, e);
	if (r == 0)
		r = image_env_write(s, env, e);
	if (r < 0)
		goto out;
	if (!env->row.root[0]) {
		/* held until the overlay is private: gc must not release the
		 * store's private mount in between */
		_cleanup_close_ int mlock = -1;

		r = lock_name(s, "store", "mount", LOCK_EX, &mlock, e);
		if (r == 0)
			r = store_keep_private(s, e);
		if (r == 0)
			r = mount_overlay(s, env, asked, &rootfd, e);
	} else {
		r = mount_overlay(s, env, asked, &rootfd, e);
	}
	if (r < 0)
		goto out;
	r = mounts_standard(rootfd, o->host_dev, e);
	if (r < 0)
		goto undo_mounts;
	for (i = 0; i < n_binds; i++) {
		r = mounts_bind(rootfd, binds[i].src, binds[i].tgt, binds[i].ro, e);
		if (r < 0)
			goto undo_mounts;
	}
	r = add_binds(s, env, rootfd, o, e);
	if (r < 0)
		goto undo_mounts;
	if (env->driver_changed) {
		r = catalog_env_set_driver(s->cat, env->row.name, env->row.driver,
					   env->row.driver_note, e);
		if (r < 0)
			goto undo_mounts;
		env->driver_changed = false;
	}
	boot_id(boot);
	r = catalog_env_set_on(s->cat, env->row.name, true, boot, e);
	if (r < 0)
		goto undo_mounts;
	env->row.want_on = true;
	snprintf(env->row.boot_id, sizeof(env->row.boot_id), "%s", boot);
	env_record_on(s, env);
	goto out;
undo_mounts:
	/* an fd in a detached FUSE mount would keep its daemon alive */
	if (rootfd >= 0)
		(void)close(TAKE_FD(rootfd));
	env_undo_mounts(env);
out:
	free(binds);
	return r;
}

bool env_has_file(const struct env *env, const char *path, bool exec)
{
	_cleanup_close_ int rfd = open(env->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct open_how how = { .flags = O_PATH | O_CLOEXEC,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (rfd < 0)
		return false;
	fd = (int)syscall(SYS_openat2, rfd, path + 1, &how, sizeof(how));
	if (fd < 0 || fstat(fd, &st) < 0)
		return false;
	return S_ISREG(st.st_mode) && (!exec || (st.st_mode & 0111));
}

int env_off(struct store *s, struct env *env, bool force, int grace_ms, struct ct_err *e)
{
	int r;

	env_record_off(s, env->row.name);
	if (env->row.want_on) {
		r = catalog_env_set_on(s->cat, env->row.name, false, env->row.boot_id, e);
		if (r < 0)
			return r;
		env->row.want_on = false;
	}
	if (!env_is_on(env) || env_drop_dead_fuse(env, grace_ms)) {
		env_service_forget(env->dir);
		return 0;
	}
	if (env_has_file(env, "/chroot.d/stop", true)) {
		char *argv[] = { (char *)"/chroot.d/stop", NULL };
		struct exec_opts xo = { .root = env->root, .argv = argv,
					.timeout_ms = STOP_HOOK_TIMEOUT_MS };
		int status;
		struct ct_err e2 = { 0 };

		if (exec_in_env(&xo, &status, &e2) < 0)
			log_warn("%s", e2.msg);
		else if (status != 0)
			log_warn("/chroot.d/stop exited with %d", status);
	}
	r = procs_stop(env->root, grace_ms, e);
	if (r < 0)
		return r;
	env_service_forget(env->dir);
	r = mounts_umount_all(env->root, force, e);
	if (r == -EBUSY) {
		_cleanup_free_ pid_t *pids = NULL;
		_cleanup_free_ char *list = NULL;
		size_t n = 0;

		if (procs_under(env->root, true, &pids, &n, NULL) == 0 && n > 0)
			list = procs_format(pids, n);
		return ct_fail(e, EBUSY, "env '%s' is busy%s%s (use --force to detach it)",
			       env->row.name, list ? ": held by PID " : "", list ? list : "");
	}
	if (r < 0)
		return r;
	driver_fuse_reap(env->fuse_pid);
	if (env->row.volatile_)
		volatile_settle(env);
	return 0;
}

/* Deletion never goes through a mount: refuse while anything is mounted
 * at the env's root or in its folder (a bind made behind ctool's back
 * included). The deleter checks again as it goes. */
static int env_check_unmounted(const struct env *env, struct ct_err *e)
{
	/* a default root lies in the env's folder: one walk covers both */
	int r = path_is_under(env->root, env->dir) ? 0 : mounts_check_none(env->root, e);

	return r < 0 ? r : mounts_check_none(env->dir, e);
}

/* Move the upper layer and workdir to the trash; the caller empties it. */
static int env_drop_layer(struct store *s, struct env *env, struct ct_err *e)
{
	int r = env_check_unmounted(env, e);

	if (r < 0)
		return r;
	env_record_off(s, env->row.name);
	r = store_trash(s, env->upper, e);
	if (r == 0)
		r = store_trash(s, env->work, e);
	return r;
}

int env_reset(struct store *s, struct env *env, struct ct_err *e)
{
	int r = env_drop_layer(s, env, e);

	return r < 0 ? r : store_trash_flush(s, false, e);
}

int env_remove(struct store *s, struct env *env, struct ct_err *e)
{
	int r = env_check_unmounted(env, e);

	if (r < 0)
		return r;
	env_record_off(s, env->row.name);
	record_remove(s, "names", env->row.name);
	/* the row goes first: a folder without a row is an orphan gc removes */
	r = catalog_env_remove(s->cat, env->row.name, e);
	if (r < 0)
		return r;
	r = store_trash(s, env->dir, e);
	if (r < 0)
		return r;
	return store_trash_flush(s, false, e);
}

pid_t env_service_pid(const char *dir)
{
	_cleanup_free_ char *path = xasprintf("%s/" ENV_SERVICE_RECORD, dir), *text = NULL;
	char boot[40], rec_boot[40], state = 0;
	unsigned long long rec_start, start;
	int pid;

	if (!path || read_file(path, &text, NULL) < 0)
		return 0;
	if (sscanf(text, "%d %llu %39s", &pid, &rec_start, rec_boot) != 3 || pid <= 0)
		return 0;
	boot_id(boot);
	if (strcmp(boot[0] ? boot : "-", rec_boot) != 0)
		return 0;
	if (procs_stat(pid, NULL, &state, &start) < 0 || start != rec_start || state == 'Z' ||
	    state == 'X' || state == 'x')
		return 0;
	return (pid_t)pid;
}

int env_service_record(const char *dir, pid_t pid, struct ct_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s/" ENV_SERVICE_RECORD, dir), *data = NULL;
	unsigned long long start;
	char boot[40], state;
	int r;

	if (!path)
		return ct_fail(e, ENOMEM, "out of memory");
	r = procs_stat(pid, NULL, &state, &start);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot read the start time of process %d", (int)pid);
	boot_id(boot);
	data = xasprintf("%d %llu %s\n", (int)pid, start, boot[0] ? boot : "-");
	if (!data)
		return ct_fail(e, ENOMEM, "out of memory");
	r = write_file_atomic(path, data, strlen(data), 0600);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot write '%s'", path);
	return 0;
}

void env_service_forget(const char *dir)
{
	_cleanup_free_ char *path = xasprintf("%s/" ENV_SERVICE_RECORD, dir);

	if (path)
		(void)unlink(path);
}

int env_host_cmd(const struct env *env, char **cmd, struct ct_err *e)
{
	_cleanup_free_ char *path = xasprintf("%s/host-cmd", env->conf);
	_cleanup_free_ char *v_env = xasprintf("CTOOL_ENV=%s", env->row.name);
	_cleanup_free_ char *v_root = xasprintf("CTOOL_ROOT=%s", env->root);
	_cleanup_free_ char **argv = NULL, **envp = NULL;
	size_t n = 0, ne = 0, i;
	struct stat st;
	int status, r;

	if (!path || !v_env || !v_root)
		return ct_fail(e, ENOMEM, "out of memory");
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return 0;
	while (cmd[n])
		n++;
	while (environ[ne])
		ne++;
	argv = calloc(n + 2, sizeof(*argv));
	envp = calloc(ne + 3, sizeof(*envp));
	if (!argv || !envp)
		return ct_fail(e, ENOMEM, "out of memory");
	argv[0] = path;
	for (i = 0; i < n; i++)
		argv[i + 1] = cmd[i];
	for (i = 0; i < ne; i++)
		envp[i] = environ[i];
	envp[ne] = v_env;
	envp[ne + 1] = v_root;
	r = exec_on_host(path, argv, envp, &status, e);
	if (r < 0)
		return r;
	if (status != 0)
		return ct_fail(e, ECANCELED, "host-cmd exited with %d; not running the command", status);
	return 0;
}

#define COMMIT_PREFIX "commit-"

/* <env dir>/commit-<id>: the env's upper, on its way to layers/<id>. */
static char *commit_path(const struct env *env, const char *id)
{
	return xasprintf("%s/" COMMIT_PREFIX "%s", env->dir, id);
}

int env_finish_commit(struct store *s, struct env *env, struct ct_err *e)
{
	_cleanup_close_ int fd = open(env->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : ct_fail_errno(e, errno, "cannot open '%s'", env->dir);
	d = fdopendir(TAKE_FD(fd));
	if (!d)
		return ct_fail_errno(e, errno, "cannot read '%s'", env->dir);
	while (r == 0 && (de = readdir(d))) {
		_cleanup_free_ char *pending = NULL, *layer = NULL;
		struct catalog_layer l;
		const char *id;

		if (strncmp(de->d_name, COMMIT_PREFIX, strlen(COMMIT_PREFIX)) != 0)
			continue;
		id = de->d_name + strlen(COMMIT_PREFIX);
		pending = commit_path(env, id);
		layer = store_path(s, "layers/%s", id);
		if (!pending || !layer) {
			r = ct_fail(e, ENOMEM, "out of memory");
			break;
		}
		if (catalog_layer_get(s->cat, id, false, &l, e) == 0) {
			/* the catalog has it: the rename is all that is left */
			catalog_layer_clear(&l);
			log_debug("env '%s': its committed changes become layer %s", env->row.name, id);
			if (rename(pending, layer) < 0)
				r = ct_fail_errno(e, errno, "cannot make '%s' a layer", pending);
		} else if (access(env->upper, F_OK) < 0 && errno == ENOENT) {
			/* cut short before the catalog: the changes go back */
			log_debug("env '%s': a commit cut short; its changes are kept", env->row.name);
			if (rename(pending, env->upper) < 0)
				r = ct_fail_errno(e, errno, "cannot put '%s' back", pending);
		} else {
			log_warn("env '%s': '%s' holds changes of a commit cut short; "
				 "the env has written since, so they are left there",
				 env->row.name, pending);
		}
	}
	closedir(d);
	return r;
}

int env_commit(struct store *s, struct env *env, struct catalog_layer *l,
	       const struct catalog_image *img, struct ct_err *e)
{
	_cleanup_free_ char *pending = NULL, *layer = NULL;
	int r = env_check_unmounted(env, e);

	if (r == 0 && env->row.volatile_)
		r = volatile_recover(s, env, e);
	if (r == 0)
		r = env_finish_commit(s, env, e);
	if (r < 0)
		return r;
	pending = commit_path(env, l->id);
	layer = store_path(s, "layers/%s", l->id);
	if (!pending || !layer)
		return ct_fail(e, ENOMEM, "out of memory");
	/* 1. the upper moves aside, inside the env's folder, where only this
	 * env finishes or undoes it (env_finish_commit) */
	if (mkdir(env->dir, 0755) < 0 && errno != EEXIST)
		return ct_fail_errno(e, errno, "cannot create '%s'", env->dir);
	if (rename(env->upper, pending) < 0) {
		if (errno != ENOENT)
			return ct_fail_errno(e, errno, "cannot move '%s'", env->upper);
		if (mkdir(pending, 0755) < 0)
			return ct_fail_errno(e, errno, "cannot create '%s'", pending);
	}
	l->size = tree_bytes(pending);
	/* a volatile env's writes were never synced: a layer's must be */
	if (env->row.volatile_ && syncfs(s->dfd) < 0) {
		r = ct_fail_errno(e, errno, "cannot sync '%s'", s->path);
		goto undo;
	}
	/* 2. the catalog, durably; 3. the layer's folder */
	r = catalog_commit(s->cat, l, img, env->row.name, e);
	if (r < 0)
		goto undo;
	if (rename(pending, layer) < 0)
		return ct_fail_errno(e, errno, "cannot make '%s' a layer", pending);
	return 0;
undo:
	(void)rename(pending, env->upper);
	return r;
}
