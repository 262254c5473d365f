#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "log.h"
#include "mounts.h"
#include "mounttab.h"
#include "util.h"

static int openat2_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	return fd;
}

/* Append what the filesystem context logged (fsopen's message channel)
 * to a message, so "overlay: ..." reasons reach the user. */
static void fs_context_reason(int fsfd, char *buf, size_t len)
{
	char line[256];
	ssize_t n;

	buf[0] = '\0';
	while ((n = read(fsfd, line, sizeof(line) - 1)) > 0) {
		line[n] = '\0';
		line[strcspn(line, "\n")] = '\0';
		snprintf(buf, len, "%s", line[1] == ' ' ? line + 2 : line);
	}
}

/* Join link (a symlink's text found at dir/name) and rest the way the
 * kernel resolves them inside a root: relative to dir or to the root,
 * ".." stopping at the root. Returns a new clean absolute path. */
static char *join_in_root(const char *dir, const char *link, const char *rest)
{
	_cleanup_free_ char *all = xasprintf("%s/%s/%s", link[0] == '/' ? "" : dir, link, rest);
	char *out, *o, *s;

	if (!all)
		return NULL;
	out = malloc(strlen(all) + 2);
	if (!out)
		return NULL;
	o = out;
	for (s = strtok(all, "/"); s; s = strtok(NULL, "/")) {
		if (strcmp(s, ".") == 0)
			continue;
		if (strcmp(s, "..") == 0) {
			while (o > out && *--o != '/')
				;
			continue;
		}
		*o++ = '/';
		strcpy(o, s);
		o += strlen(s);
	}
	if (o == out)
		*o++ = '/';
	*o = '\0';
	return out;
}

/* Open the target tgt inside root as an O_PATH fd, creating what is
 * missing inside root (directories, and the last component as a
 * directory or an empty file). Symlinks are followed inside root, a
 * dangling one by creating what it points to. Returns the fd or -errno. */
static int target_open(int rootfd, const char *tgt, bool dir, struct ct_err *e)
{
	_cleanup_free_ char *path = path_clean_abs(tgt);
	int hops = 0;
	char *s;

	if (!path)
		return ct_fail(e, EINVAL, "bad target '%s'", tgt);
restart:
	for (s = path + 1;; s++) {
		bool last = (*s == '\0');
		_cleanup_close_ int pfd = -1;
		char *slash, save, link[PATH_MAX];
		ssize_t n;
		int fd;

		if (*s != '/' && !last)
			continue;
		save = *s;
		*s = '\0';
		fd = openat2_in_root(rootfd, path, O_PATH);
		if (fd >= 0 || errno != ENOENT) {
			*s = save;
			if (fd < 0)
				return ct_fail_errno(e, errno, "cannot open target '%s'", tgt);
			if (last)
				return fd;
			(void)close(fd);
			continue;
		}
		slash = strrchr(path, '/');
		*slash = '\0';
		pfd = openat2_in_root(rootfd, path[0] ? path : "/", O_PATH | O_DIRECTORY);
		*slash = '/';
		if (pfd < 0) {
			*s = save;
			return ct_fail_errno(e, errno, "cannot open the parent of '%s'", tgt);
		}
		n = readlinkat(pfd, slash + 1, link, sizeof(link) - 1);
		if (n >= 0) {
			/* a dangling symlink: make what it points to, inside root */
			char *next;

			if (++hops > 40)
				return ct_fail(e, ELOOP, "cannot open target '%s': too many symlinks", tgt);
			link[n] = '\0';
			*slash = '\0';
			next = join_in_root(path, link, last ? "" : s + 1);
			if (!next)
				return ct_fail(e, ENOMEM, "out of memory");
			free(path);
			path = next;
			goto restart;
		}
		if (!last || dir) {
			if (mkdirat(pfd, slash + 1, 0755) < 0 && errno != EEXIST) {
				*s = save;
				return ct_fail_errno(e, errno, "cannot create '%s' in the env", path);
			}
		} else {
			fd = openat(pfd, slash + 1, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				    0644);
			if (fd < 0 && errno != EEXIST) {
				*s = save;
				return ct_fail_errno(e, errno, "cannot create '%s' in the env", path);
			}
			if (fd >= 0)
				(void)close(fd);
		}
		*s = save;
		if (++hops > 80)
			return ct_fail(e, ELOOP, "cannot create target '%s'", tgt);
		s--; /* open this component again, now that it exists */
	}
}

/* Attach the detached mount mfd at tgt inside root. */
static int attach(int mfd, int rootfd, const char *tgt, bool dir, struct ct_err *e)
{
	_cleanup_close_ int tfd = target_open(rootfd, tgt, dir, e);

	if (tfd < 0)
		return tfd;
	if (move_mount(mfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return ct_fail_errno(e, errno, "cannot mount on '%s'", tgt);
	return 0;
}

struct fs_opt {
	const char *key;
	const char *value; /* NULL: a flag */
};

/* A new detached mount of filesystem type with opts and mount attributes. */
static int fs_new(const char *type, const struct fs_opt *opts, size_t n, unsigned attrs,
		  struct ct_err *e)
{
	_cleanup_close_ int fsfd = fsopen(type, FSOPEN_CLOEXEC);
	char reason[256];
	size_t i;
	int mfd;

	if (fsfd < 0)
		return ct_fail_errno(e, errno, "cannot open a %s filesystem", type);
	/* "ctool" in the mount table's source column tells whose mounts these are */
	(void)fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "ctool", 0);
	for (i = 0; i < n; i++) {
		int r = opts[i].value ? fsconfig(fsfd, FSCONFIG_SET_STRING, opts[i].key,
						 opts[i].value, 0)
				      : fsconfig(fsfd, FSCONFIG_SET_FLAG, opts[i].key, NULL, 0);
		if (r < 0) {
			int err = errno;

			fs_context_reason(fsfd, reason, sizeof(reason));
			return ct_fail(e, err, "%s: option '%s': %s", type, opts[i].key,
				       reason[0] ? reason : strerror(err));
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int err = errno;

		fs_context_reason(fsfd, reason, sizeof(reason));
		return ct_fail(e, err, "cannot create the %s mount: %s", type,
			       reason[0] ? reason : strerror(err));
	}
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0)
		return ct_fail_errno(e, errno, "cannot mount %s", type);
	return mfd;
}

static int set_private(int mfd, bool recursive, unsigned attr_set, struct ct_err *e)
{
	struct mount_attr attr = { .attr_set = attr_set, .propagation = MS_PRIVATE };

	if (mount_setattr(mfd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
			  sizeof(attr)) < 0)
		return ct_fail_errno(e, errno, "cannot set mount attributes");
	return 0;
}

int mounts_root_open(const char *root, bool mounted, struct ct_err *e)
{
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	struct statx stx;
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, root, &how, sizeof(how));

	if (fd < 0 && errno == ELOOP)
		return ct_fail(e, ELOOP, "'%s' has a symlink on its way: an env's root must be "
			       "reached without one", root);
	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s'", root);
	if (mounted && (statx(fd, "", AT_EMPTY_PATH, 0, &stx) < 0 ||
			!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
			!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))) {
		(void)close(fd);
		return ct_fail(e, ENOENT, "'%s' is not mounted", root);
	}
	return fd;
}

int mounts_overlay(int dirfd, const char *root, const struct overlay_spec *ov, int *ret_fd,
		   struct ct_err *e)
{
	_cleanup_close_ int fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	_cleanup_close_ int mfd = -1;
	char reason[256];
	size_t i;

	if (fsfd < 0)
		return ct_fail_errno(e, errno, "cannot open an overlay filesystem");
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "ctool", 0) < 0)
		goto fail;
	/* one layer per call (lowerdir+, Linux 6.8): no escaping, no 4 KiB limit */
	for (i = 0; i < ov->n_lower; i++) {
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", ov->lower[i], 0) < 0)
			break;
	}
	if (i < ov->n_lower) {
		/* older kernels: one colon-separated string */
		_cleanup_free_ char *all = NULL;
		size_t len = 1;

		if (i > 0)
			goto fail;
		for (i = 0; i < ov->n_lower; i++)
			len += strlen(ov->lower[i]) * 2 + 1;
		all = calloc(1, len);
		if (!all)
			return ct_fail(e, ENOMEM, "out of memory");
		for (i = 0; i < ov->n_lower; i++) {
			const char *c;
			char *o = all + strlen(all);

			if (i)
				*o++ = ':';
			for (c = ov->lower[i]; *c; c++) {
				if (*c == ':' || *c == '\\' || *c == ',')
					*o++ = '\\';
				*o++ = *c;
			}
		}
		if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir", all, 0) < 0)
			goto fail;
	}
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", ov->upper, 0) < 0 ||
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", ov->work, 0) < 0)
		goto fail;
	if (ov->volatile_ && fsconfig(fsfd, FSCONFIG_SET_FLAG, "volatile", NULL, 0) < 0)
		goto fail;
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto fail;
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
	if (mfd < 0)
		return ct_fail_errno(e, errno, "cannot mount the overlay");
	if (set_private(mfd, false, 0, e) < 0)
		return -e->code;
	if (move_mount(mfd, "", dirfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return ct_fail_errno(e, errno, "cannot mount the overlay on '%s'", root);
	/* Under a private parent (the store's own bind, or a root chosen on
	 * a private mount) it stays private. Under a shared one, attaching
	 * put a copy of it in each peer of the parent, and it is left in
	 * their peer group: were it made private now, the copies would
	 * outlive 'off' (holding the upper layer); shared, every mount and
	 * unmount below it reaches them, and 'off' removes them all. */
	*ret_fd = TAKE_FD(mfd);
	return 0;
fail:
	{
		int err = errno;

		fs_context_reason(fsfd, reason, sizeof(reason));
		return ct_fail(e, err, "cannot mount the overlay on '%s': %s", root,
			       reason[0] ? reason : strerror(err));
	}
}

/* A minimal /dev on a fresh tmpfs (mfd is the detached tmpfs). */
static int dev_populate(int devfd, struct ct_err *e)
{
	static const struct {
		const char *name;
		unsigned maj, min;
	} nodes[] = {
		{ "null", 1, 3 }, { "zero", 1, 5 },    { "full", 1, 7 },
		{ "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
	};
	static const struct {
		const char *name, *to;
	} links[] = {
		{ "ptmx", "pts/ptmx" },	     { "fd", "/proc/self/fd" },
		{ "stdin", "/proc/self/fd/0" }, { "stdout", "/proc/self/fd/1" },
		{ "stderr", "/proc/self/fd/2" },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(nodes); i++) {
		if (mknodat(devfd, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0)
			return ct_fail_errno(e, errno, "cannot create /dev/%s", nodes[i].name);
		if (fchmodat(devfd, nodes[i].name, 0666, 0) < 0)
			return ct_fail_errno(e, errno, "cannot chmod /dev/%s", nodes[i].name);
	}
	for (i = 0; i < ARRAY_SIZE(links); i++)
		if (symlinkat(links[i].to, devfd, links[i].name) < 0)
			return ct_fail_errno(e, errno, "cannot create /dev/%s", links[i].name);
	if (mkdirat(devfd, "pts", 0755) < 0 || mkdirat(devfd, "shm", 01777) < 0 ||
	    fchmodat(devfd, "shm", 01777, 0) < 0)
		return ct_fail_errno(e, errno, "cannot create /dev/pts or /dev/shm");
	return 0;
}

static int mount_fresh(int rootfd, const char *tgt, const char *type, const struct fs_opt *opts,
		       size_t n, unsigned attrs, struct ct_err *e)
{
	_cleanup_close_ int mfd = fs_new(type, opts, n, attrs, e);

	if (mfd < 0)
		return mfd;
	if (set_private(mfd, false, 0, e) < 0)
		return -e->code;
	return attach(mfd, rootfd, tgt, true, e);
}

/* Bind the host file src read-only onto tgt when both exist (or tgt can
 * be made); a target that is a dangling symlink inside the env is left. */
static int bind_host_file(int rootfd, const char *src, const char *tgt, struct ct_err *e)
{
	_cleanup_close_ int tree = -1, tfd = -1;

	if (access(src, F_OK) < 0)
		return 0;
	tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return ct_fail_errno(e, errno, "cannot clone '%s'", src);
	if (set_private(tree, false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e) < 0)
		return -e->code;
	tfd = target_open(rootfd, tgt, false, e);
	if (tfd < 0) {
		/* e.g. a dangling symlink in the env: leave the env's own file */
		log_debug("not binding '%s': %s", src, e->msg);
		return 0;
	}
	if (move_mount(tree, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return ct_fail_errno(e, errno, "cannot mount on '%s'", tgt);
	return 0;
}

int mounts_standard(int rootfd, bool host_dev, struct ct_err *e)
{
	static const struct fs_opt tmp_opts[] = { { "mode", "1777" } };
	static const struct fs_opt dev_opts[] = { { "mode", "755" }, { "size", "64k" } };
	static const struct fs_opt pts_opts[] = {
		{ "newinstance", NULL }, { "ptmxmode", "0666" }, { "mode", "620" }, { "gid", "5" },
	};
	int r;

	r = mount_fresh(rootfd, "/proc", "proc", NULL, 0,
			MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	if (r < 0)
		return r;
	r = mount_fresh(rootfd, "/sys", "sysfs", NULL, 0,
			MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e);
	if (r < 0)
		return r;
	if (host_dev) {
		_cleanup_close_ int tree =
			open_tree(AT_FDCWD, "/dev", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

		if (tree < 0)
			return ct_fail_errno(e, errno, "cannot clone the host's /dev");
		if (set_private(tree, true, 0, e) < 0)
			return -e->code;
		r = attach(tree, rootfd, "/dev", true, e);
		if (r < 0)
			return r;
	} else {
		_cleanup_close_ int devfd = -1;

		r = mount_fresh(rootfd, "/dev", "tmpfs", dev_opts, ARRAY_SIZE(dev_opts),
				MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
		if (r < 0)
			return r;
		devfd = openat2_in_root(rootfd, "/dev", O_RDONLY | O_DIRECTORY);
		if (devfd < 0)
			return ct_fail_errno(e, errno, "cannot open the env's /dev");
		r = dev_populate(devfd, e);
		if (r < 0)
			return r;
		r = mount_fresh(rootfd, "/dev/pts", "devpts", pts_opts, ARRAY_SIZE(pts_opts),
				MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, e);
		if (r < 0)
			return r;
		r = mount_fresh(rootfd, "/dev/shm", "tmpfs", tmp_opts, ARRAY_SIZE(tmp_opts),
				MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e);
		if (r < 0)
			return r;
	}
	r = mount_fresh(rootfd, "/tmp", "tmpfs", tmp_opts, ARRAY_SIZE(tmp_opts),
			MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, e);
	if (r < 0)
		return r;
	r = bind_host_file(rootfd, "/etc/resolv.conf", "/etc/resolv.conf", e);
	if (r < 0)
		return r;
	return bind_host_file(rootfd, "/etc/hosts", "/etc/hosts", e);
}

int mounts_bind_check(const char *src, const char *tgt, const char *store, struct ct_err *e)
{
	_cleanup_free_ char *real = NULL, *clean = NULL;

	if (!src || src[0] != '/')
		return ct_fail(e, EINVAL, "bind source '%s' must be an absolute path", src ? src : "");
	if (!tgt || tgt[0] != '/')
		return ct_fail(e, EINVAL, "bind target '%s' must be an absolute path", tgt ? tgt : "");
	clean = path_clean_abs(tgt);
	if (!clean)
		return ct_fail(e, EINVAL, "bind target '%s' must not contain '..'", tgt);
	if (strcmp(clean, "/") == 0)
		return ct_fail(e, EINVAL, "bind target must not be the env's root");
	real = realpath(src, NULL);
	if (!real)
		return ct_fail_errno(e, errno, "bind source '%s'", src);
	if (strcmp(real, "/") == 0)
		return ct_fail(e, EINVAL, "refusing to bind the host's '/'");
	if (path_is_under(real, store) || path_is_under(store, real))
		return ct_fail(e, EINVAL, "refusing to bind '%s': it overlaps the store '%s'", src,
			       store);
	return 0;
}

int mounts_bind(int rootfd, const char *src, const char *tgt, bool ro, struct ct_err *e)
{
	_cleanup_close_ int tree = -1;
	struct stat st;

	tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return ct_fail_errno(e, errno, "cannot bind '%s'", src);
	if (fstat(tree, &st) < 0)
		return ct_fail_errno(e, errno, "cannot stat '%s'", src);
	if (set_private(tree, true, ro ? MOUNT_ATTR_RDONLY : 0, e) < 0)
		return -e->code;
	return attach(tree, rootfd, tgt, S_ISDIR(st.st_mode), e);
}



/* Linux 6.8 lists and describes mounts by id (listmount, statmount), so a
 * walk visits only the mounts below one point, whatever else is mounted.
 * The definitions are here for headers older than that kernel. */
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
#ifndef SYS_statmount
#define SYS_statmount 457
#endif
#ifndef SYS_listmount
#define SYS_listmount 458
#endif
#define CT_STATMOUNT_MNT_BASIC 0x00000002U
#define CT_STATMOUNT_MNT_POINT 0x00000010U
#define CT_MNT_ID_REQ_SIZE_VER0 24

struct ct_mnt_id_req {
	uint32_t size;
	uint32_t spare;
	uint64_t mnt_id;
	uint64_t param;
};

struct ct_statmount {
	uint32_t size;
	uint32_t spare1;
	uint64_t mask;
	uint32_t sb_dev_major, sb_dev_minor;
	uint64_t sb_magic;
	uint32_t sb_flags, fs_type;
	uint64_t mnt_id, mnt_parent_id;
	uint32_t mnt_id_old, mnt_parent_id_old;
	uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from;
	uint32_t mnt_root, mnt_point;
	uint64_t spare2[50];
	char str[];
};

/* statmount of id into buf (a 4 KiB buffer); 0 or -errno. */
static int kstatmount(uint64_t id, uint64_t mask, struct ct_statmount *buf, size_t len)
{
	struct ct_mnt_id_req req = { .size = CT_MNT_ID_REQ_SIZE_VER0, .mnt_id = id, .param = mask };

	if (syscall(SYS_statmount, &req, buf, len, 0) < 0)
		return -errno;
	return 0;
}

/* The unique id of the mount holding path (its own when a mount point). */
static int kmnt_id(const char *path, uint64_t *ret, bool *ret_is_root)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID_UNIQUE))
		return -ENOSYS;
	*ret = stx.stx_mnt_id;
	if (ret_is_root)
		*ret_is_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
			       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	return 0;
}

struct mnt_entry {
	char *path;
	uint64_t id;
	size_t depth;
};

static int mnt_entry_cmp(const void *a, const void *b)
{
	const struct mnt_entry *x = a, *y = b;

	/* deepest first; on one point, the later (upper) mount first */
	if (x->depth != y->depth)
		return x->depth < y->depth ? 1 : -1;
	return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static int entry_add(struct mnt_entry **out, size_t *n, const char *mp, uint64_t id,
		     struct ct_err *e)
{
	struct mnt_entry *no = realloc(*out, (*n + 1) * sizeof(*no));
	const char *c;

	if (!no)
		return ct_fail(e, ENOMEM, "out of memory");
	*out = no;
	no[*n].path = strdup(mp);
	if (!no[*n].path)
		return ct_fail(e, ENOMEM, "out of memory");
	no[*n].id = id;
	no[*n].depth = 0;
	for (c = mp; *c; c++)
		no[*n].depth += *c == '/';
	(*n)++;
	return 0;
}

/* After a walk that returned r: on success sort the entries deepest
 * first and hand their paths over; on failure free them. */
static int entries_finish(int r, struct mnt_entry *out, size_t n, char ***ret, size_t *ret_n,
			  struct ct_err *e)
{
	size_t i;

	if (r < 0) {
		for (i = 0; i < n; i++)
			free(out[i].path);
		free(out);
		return r;
	}
	qsort(out, n, sizeof(*out), mnt_entry_cmp);
	*ret = calloc(n + 1, sizeof(char *));
	if (!*ret) {
		for (i = 0; i < n; i++)
			free(out[i].path);
		free(out);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	for (i = 0; i < n; i++)
		(*ret)[i] = out[i].path;
	*ret_n = n;
	free(out);
	return 0;
}

/* path is a mount point: listmount gives every mount below it (the whole
 * subtree, in one call), statmount their paths. */
static int kernel_list_tree(const char *path, uint64_t id, char ***ret, size_t *ret_n,
			    struct ct_err *e)
{
	union {
		struct ct_statmount sm;
		char raw[8192];
	} buf;
	struct ct_mnt_id_req req = { .size = CT_MNT_ID_REQ_SIZE_VER0, .mnt_id = id };
	struct mnt_entry *out = NULL;
	uint64_t kids[512];
	size_t n = 0, i;
	long got;
	int r = entry_add(&out, &n, path, id, e);

	while (r == 0) {
		got = syscall(SYS_listmount, &req, kids, ARRAY_SIZE(kids), 0);
		if (got < 0) {
			r = ct_fail_errno(e, errno, "cannot list the mounts below '%s'", path);
			break;
		}
		for (i = 0; r == 0 && i < (size_t)got; i++) {
			r = kstatmount(kids[i], CT_STATMOUNT_MNT_POINT, &buf.sm, sizeof(buf));
			if (r == -ENOENT) {
				r = 0; /* unmounted meanwhile */
				continue;
			}
			if (r < 0) {
				r = ct_fail_errno(e, -r, "cannot describe a mount below '%s'", path);
				break;
			}
			r = entry_add(&out, &n, buf.sm.str + buf.sm.mnt_point, kids[i], e);
		}
		if (r < 0 || got < (long)ARRAY_SIZE(kids))
			break;
		req.param = kids[got - 1];
	}
	return entries_finish(r, out, n, ret, ret_n, e);
}

/* Undo mountinfo's octal escapes (\040 for a blank) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Open the mount table as a process whose root is path sees it: the
 * kernel then shows only the mounts below path, with paths relative to
 * it, and skips the others before formatting them, so reading it costs
 * little however many mounts the host has (hundreds of envs on). The
 * table keeps the root it was opened with, so the root is changed only
 * around the open, and always restored. -errno when path cannot be a
 * root. */
static int mountinfo_open_below(const char *path)
{
	_cleanup_close_ int proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int fd, err;

	if (proc < 0 || root < 0 || cwd < 0)
		return -errno;
	if (chroot(path) < 0)
		return -errno;
	fd = openat(proc, "thread-self/mountinfo", O_RDONLY | O_CLOEXEC);
	err = errno;
	if (fchdir(root) < 0 || chroot(".") < 0 || fchdir(cwd) < 0) {
		log_error("cannot restore the root directory: %m");
		_exit(125);
	}
	return fd < 0 ? -err : fd;
}

/* path is no mount point: the mounts below it hang off the mount holding
 * it, whose subtree may be every mount of the host. The scoped table
 * (mountinfo_open_below) lists just them; the whole table is the
 * fallback. */
static int mountinfo_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e)
{
	_cleanup_free_ char *info = NULL;
	_cleanup_close_ int fd = mountinfo_open_below(path);
	struct mnt_entry *out = NULL;
	size_t n = 0;
	char *line, *save = NULL;
	uint64_t seq = 0;
	int r;

	r = fd >= 0 ? read_fd(fd, &info, NULL) : read_file("/proc/self/mountinfo", &info, NULL);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot read the mount table");
	for (line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		_cleanup_free_ char *full = NULL;
		char *mp = line;
		int f;

		seq++; /* later lines are later mounts: on one point, upper ones */
		for (f = 0; f < 4 && mp; f++) {
			mp = strchr(mp, ' ');
			if (mp)
				mp++;
		}
		if (!mp)
			continue;
		*strchrnul(mp, ' ') = '\0';
		unescape(mp);
		if (fd >= 0) {
			/* relative to path */
			if (strcmp(mp, "/") == 0)
				full = strdup(path);
			else
				full = xasprintf("%s%s", strcmp(path, "/") == 0 ? "" : path, mp);
			if (!full) {
				r = ct_fail(e, ENOMEM, "out of memory");
				break;
			}
			mp = full;
		}
		if (!path_is_under(mp, path))
			continue;
		r = entry_add(&out, &n, mp, seq, e);
		if (r < 0)
			break;
	}
	return entries_finish(r, out, n, ret, ret_n, e);
}

/* CTOOL_TEST_MOUNTTAB=1 makes ctool read the mount table as it does on
 * kernels older than 6.8 (through libmount), so the tests run that path. */
static bool kernel_walk_off(void)
{
	const char *v = getenv("CTOOL_TEST_MOUNTTAB");

	return v && *v && strcmp(v, "0") != 0;
}

static int kernel_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e)
{
	struct ct_statmount sm;
	uint64_t id = 0;
	bool is_root = false;
	int r = kernel_walk_off() ? -ENOSYS : kmnt_id(path, &id, &is_root);

	if (r == -ENOSYS)
		return r;
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot stat '%s'", path);
	if (!is_root)
		return mountinfo_list_under(path, ret, ret_n, e);
	if (kstatmount(id, CT_STATMOUNT_MNT_BASIC, &sm, sizeof(sm)) == -ENOSYS)
		return -ENOSYS;
	return kernel_list_tree(path, id, ret, ret_n, e);
}

int mounts_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e)
{
	int r;

	if (access(path, F_OK) < 0 && errno == ENOENT) {
		/* nothing can be mounted where nothing is */
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	r = kernel_list_under(path, ret, ret_n, e);

	if (r != -ENOSYS)
		return r;
	return mounttab_list_under(path, ret, ret_n, e);
}

void mounts_list_free(char **list, size_t n)
{
	size_t i;

	if (!list)
		return;
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

int mounts_umount_all(const char *root, bool detach, struct ct_err *e)
{
	char **list = NULL;
	size_t n = 0, i;
	int r, busy = 0;
	const char *busy_at = NULL;

	r = mounts_list_under(root, &list, &n, e);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		if (umount2(list[i], UMOUNT_NOFOLLOW) == 0 || errno == EINVAL || errno == ENOENT)
			continue;
		if (errno == EBUSY && detach) {
			if (umount2(list[i], UMOUNT_NOFOLLOW | MNT_DETACH) == 0)
				continue;
		}
		if (errno == EBUSY) {
			if (!busy_at)
				busy_at = list[i];
			busy++;
			continue;
		}
		r = ct_fail_errno(e, errno, "cannot unmount '%s'", list[i]);
		break;
	}
	if (r == 0 && busy)
		r = ct_fail(e, EBUSY, "'%s' is busy", busy_at);
	mounts_list_free(list, n);
	return r;
}


int mounts_is_shared(const char *path, bool *ret, struct ct_err *e)
{
	_cleanup_free_ char *info = NULL;
	struct statx stx;
	struct ct_statmount sm;
	char key[32];
	const char *line;
	uint64_t id = 0;
	int r;

	if (!kernel_walk_off() && kmnt_id(path, &id, NULL) == 0 &&
	    kstatmount(id, CT_STATMOUNT_MNT_BASIC, &sm, sizeof(sm)) == 0) {
		*ret = (sm.mnt_propagation & MS_SHARED) != 0;
		return 0;
	}
	if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0)
		return ct_fail_errno(e, errno, "cannot stat '%s'", path);
	r = read_file("/proc/self/mountinfo", &info, NULL);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot read the mount table");
	snprintf(key, sizeof(key), "%llu ", (unsigned long long)stx.stx_mnt_id);
	*ret = false;
	for (line = info; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *end, *sep, *sh;

		if (strncmp(line, key, strlen(key)) != 0)
			continue;
		end = strchr(line, '\n');
		sep = strstr(line, " - ");
		sh = strstr(line, " shared:");
		*ret = sh && sep && sh < sep && (!end || sh < end);
		break;
	}
	return 0;
}

int mounts_make_private(const char *path, struct ct_err *e)
{
	struct mount_attr attr = { .propagation = MS_PRIVATE };
	_cleanup_close_ int tree = -1;

	if (path_is_mountpoint(path)) {
		if (mount_setattr(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, &attr, sizeof(attr)) < 0)
			return ct_fail_errno(e, errno, "cannot make '%s' private", path);
		return 0;
	}
	tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return ct_fail_errno(e, errno, "cannot bind '%s'", path);
	if (set_private(tree, false, 0, e) < 0)
		return -e->code;
	if (move_mount(tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return ct_fail_errno(e, errno, "cannot bind '%s' on itself", path);
	/* attaching under a shared parent made it shared (and put one copy
	 * of this bind in the parent's peers): from now on it is private */
	if (mount_setattr(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, &attr, sizeof(attr)) < 0)
		return ct_fail_errno(e, errno, "cannot make '%s' private", path);
	return 0;
}

int mounts_check_none(const char *path, struct ct_err *e)
{
	char **list = NULL;
	size_t n = 0;
	int r = mounts_list_under(path, &list, &n, e);

	if (r < 0)
		return r;
	if (n > 0)
		r = ct_fail(e, EBUSY, "'%s' is mounted", list[n - 1]);
	mounts_list_free(list, n);
	return r;
}
