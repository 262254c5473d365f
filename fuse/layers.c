/* Lookups inside the layers: resolving paths beneath a layer, whiteouts,
 * opaque directories (both forms of each), and the small primitives that
 * write them. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "ovl.h"

/* "/proc/self/fd/N" for fd in buf (the xattr calls have no *at form). */
char *proc_fd_path(int fd, char buf[32])
{
	(void)snprintf(buf, 32, "/proc/self/fd/%d", fd);
	return buf;
}

/* Open directory `path` (relative, "." for the layer root) of layer
 * `layer` as an O_PATH fd in *ret_fd, never leaving the layer and never
 * following a symlink. 0 or -errno (-ENOENT/-ENOTDIR when it is not a
 * directory there). */
int layer_open_dir(struct ovl_fs *fs, int layer, const char *path, int *ret_fd)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	if (layer < 0 || layer >= fs->nlayers || fs->layers[layer].fd < 0)
		return -ENOENT;
	fd = (int)syscall(SYS_openat2, fs->layers[layer].fd, path, &how, sizeof(how));
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	*ret_fd = fd;
	return 0;
}

/* Call fn for each layer from `first` to dir->last that has directory
 * node `dir`, topmost first, until fn returns non-zero. Returns what fn
 * returned last (0 when every layer was seen), or -errno. Tree lock
 * held. */
int layer_walk(struct ovl_fs *fs, struct ovl_node *dir, int first, layer_step_fn fn, void *arg)
{
	_cleanup_free_ char *path = NULL;
	int i, r;

	for (i = first; i <= dir->last; i++) {
		_cleanup_close_ int own = -1;
		int pfd = node_dir_fd(fs, dir, i, &path, &own);

		if (pfd == -ENOENT || pfd == -ENOTDIR)
			continue;
		if (pfd < 0)
			return pfd;
		r = fn(fs, i, pfd, arg);
		if (r != 0)
			return r;
	}
	return 0;
}

/* Open directory dfd/name (never a symlink) for reading its entries, in
 * *ret (dirfd(*ret) is an fd on it). 0 or -errno. */
int layer_opendir(int dfd, const char *name, DIR **ret)
{
	int fd, r;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret = fdopendir(fd);
	if (!*ret) {
		r = -errno;
		(void)close(fd);
		return r;
	}
	return 0;
}

/* Is st a whiteout (a character device 0/0)? */
bool stat_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Is `name` one of the file form's (".wh." first)? Such names are never
 * shown, looked up or made through the mount. */
bool layer_name_reserved(const char *name)
{
	return !strncmp(name, OVL_WH_PREFIX, sizeof(OVL_WH_PREFIX) - 1);
}

/* Must lookups look for ".wh.NAME" files? False on an upper that only
 * ever had the kernel form: lookups then cost what they always did. */
bool layer_wh_read(struct ovl_fs *fs)
{
	return __atomic_load_n(&fs->wh_read, __ATOMIC_RELAXED);
}

/* A file of the file form was met in a layer: look for them from now on. */
void layer_wh_seen(struct ovl_fs *fs)
{
	if (!layer_wh_read(fs))
		__atomic_store_n(&fs->wh_read, true, __ATOMIC_RELAXED);
}

/* Does errno e say that the upper refuses the kernel form (rather than
 * that something went wrong)? */
static bool form_refused(int e)
{
	return e == EPERM || e == EOPNOTSUPP || e == EINVAL;
}

/* From now on write the file form of whiteouts (opaque false) or of the
 * opaque mark (opaque true), and read it; the workdir records that the
 * upper holds such files. Tree lock held for writing, or at mount. */
static void use_files(struct ovl_fs *fs, bool opaque)
{
	int fd;

	if (opaque)
		fs->opq_files = true;
	else
		fs->wh_files = true;
	layer_wh_seen(fs);
	if (fs->wdirfd < 0)
		return;
	fd = openat(fs->wdirfd, OVL_WH_MARK, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		(void)close(fd);
}

#ifndef FS_IOC_GETFSUUID
struct fsuuid2 {
	uint8_t len;
	uint8_t uuid[16];
};
#define FS_IOC_GETFSUUID _IOR(0x15, 0, struct fsuuid2)
#endif

/* Ready each lower layer for the origins of copies: an fd that
 * open_by_handle_at takes, and its filesystem's uuid, which the kernel
 * puts in every handle it records (all 0 for none, or where the kernel
 * cannot say: older than 6.5). Handles of two other filesystems of one
 * uuid cannot be told apart: as the kernel does, none is read on them
 * (on the upper's own filesystem they still are). */
static void probe_handles(struct ovl_fs *fs)
{
	struct stat su, st, sj;
	struct fsuuid2 u;
	char p[32];
	int i, j;

	if (fstat(fs->layers[OVL_UPPER].fd, &su) < 0)
		return;
	for (i = 1; i < fs->nlayers; i++) {
		struct ovl_layer *l = &fs->layers[i];

		l->hfd = open(proc_fd_path(l->fd, p), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (l->hfd < 0 || fstat(l->hfd, &st) < 0)
			continue;
		u.len = sizeof(u.uuid);
		if (ioctl(l->hfd, FS_IOC_GETFSUUID, &u) == 0 && u.len == sizeof(l->uuid))
			memcpy(l->uuid, u.uuid, sizeof(l->uuid));
		l->handles = true;
		for (j = 1; j < i; j++) {
			struct ovl_layer *o = &fs->layers[j];

			if (!o->handles || fstat(o->hfd, &sj) < 0 || sj.st_dev == st.st_dev ||
			    memcmp(o->uuid, l->uuid, sizeof(l->uuid)))
				continue;
			o->handles = sj.st_dev == su.st_dev;
			l->handles = st.st_dev == su.st_dev;
		}
	}
}

/* Does the filesystem of fd commit metadata in order, after the data
 * written back before it (ext4 with a journal, in every data= mode;
 * xfs)? Then a copy whose data has been written back and waited for can
 * be renamed into view: the rename cannot reach the disk before the
 * copy's blocks and size, which the same journal commit or an earlier
 * one carries. ext4 without a journal orders nothing: its mount options
 * in /proc then name no data= mode. */
static bool sync_is_ordered(int fd)
{
	char link[PATH_MAX], path[PATH_MAX + 64], line[256];
	bool ordered = false;
	struct statfs sf;
	struct stat st;
	const char *dev;
	ssize_t n;
	FILE *f;

	if (fstatfs(fd, &sf) < 0 || fstat(fd, &st) < 0)
		return false;
	if (sf.f_type == XFS_SUPER_MAGIC)
		return true;
	if (sf.f_type != EXT4_SUPER_MAGIC)
		return false;
	(void)snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", major(st.st_dev),
		       minor(st.st_dev));
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	dev = strrchr(link, '/');
	(void)snprintf(path, sizeof(path), "/proc/fs/ext4/%s/options", dev ? dev + 1 : link);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!ordered && fgets(line, sizeof(line), f))
		ordered = !strncmp(line, "data=", 5);
	(void)fclose(f);
	return ordered;
}

/* Decide once per mount which whiteout forms the upper takes, by trying
 * the kernel's in the workdir (on the upper's filesystem): a 0/0
 * character device, and trusted.overlay.opaque on a directory (which
 * also says whether origins are the kernel's or ctool's). An upper
 * that already holds files of the file form (the workdir says so) has
 * them read whatever the probe finds. CTOOL_TEST_WHITEOUT_FILES=1 makes
 * the probe fail, as on an upper that refuses the kernel's forms, for
 * the tests. */
void layer_probe(struct ovl_fs *fs)
{
	bool force = getenv("CTOOL_TEST_WHITEOUT_FILES") != NULL;
	bool refused;
	struct stat st;
	char tmp[64];
	int fd;

	if (fs->readonly)
		return;
	(void)layer_tmp_name(fs, tmp);
	if (force || mknodat(fs->workfd, tmp, S_IFCHR | 0, makedev(0, 0)) < 0) {
		if (force || form_refused(errno))
			use_files(fs, false);
	} else {
		(void)unlinkat(fs->workfd, tmp, 0);
	}
	if (mkdirat(fs->workfd, tmp, 0700) == 0) {
		fd = openat(fs->workfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		refused = fd >= 0 && fsetxattr(fd, OVL_XATTR_OPAQUE, "y", 1, 0) < 0 &&
			  form_refused(errno);
		fs->own_marks = force || refused;
		if (fs->own_marks)
			use_files(fs, true);
		if (fd >= 0)
			(void)close(fd);
		(void)unlinkat(fs->workfd, tmp, AT_REMOVEDIR);
	}
	if (fs->wdirfd >= 0 && fstatat(fs->wdirfd, OVL_WH_MARK, &st, AT_SYMLINK_NOFOLLOW) == 0)
		layer_wh_seen(fs);
	probe_handles(fs);
	fs->sync_ordered = sync_is_ordered(fs->workfd);
}

/* ".wh.NAME" for `name` into ret. 0, or -ENAMETOOLONG when that is longer
 * than a name may be (such a name can only have the kernel form). */
static int wh_name(const char *name, char ret[NAME_MAX + 1])
{
	int n = snprintf(ret, NAME_MAX + 1, OVL_WH_PREFIX "%s", name);

	return n < 0 || n > NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Does directory dfd hold a file-form whiteout of `name`? */
bool layer_has_wh_file(int dfd, const char *name)
{
	char wh[NAME_MAX + 1];
	struct stat st;

	return wh_name(name, wh) == 0 && fstatat(dfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Create the empty file dfd/name (mode 0) unless it is there. 0 or -errno. */
static int touch_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)close(fd);
	return 0;
}

/* Make the file-form whiteout of `name` in directory dfd; what is at
 * dfd/name itself is left (and shows while it is there). 0 or -errno. */
int layer_wh_file_make(int dfd, const char *name)
{
	char wh[NAME_MAX + 1];
	int r = wh_name(name, wh);

	return r < 0 ? r : touch_at(dfd, wh);
}

/* Remove the file-form whiteout of `name` from directory dfd, if any.
 * 0 or -errno. */
int layer_wh_file_drop(int dfd, const char *name)
{
	char wh[NAME_MAX + 1];

	if (wh_name(name, wh) < 0)
		return 0;
	return unlinkat(dfd, wh, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Make a kernel whiteout under a fresh workdir name, in tmp. 1 when made;
 * 0 when the upper takes the file form instead (the kernel form refused
 * now, or before: it is not tried again); or -errno. Tree lock held for
 * writing. */
int layer_whiteout_tmp(struct ovl_fs *fs, char tmp[64])
{
	if (fs->wh_files)
		return 0;
	(void)layer_tmp_name(fs, tmp);
	if (mknodat(fs->workfd, tmp, S_IFCHR | 0, makedev(0, 0)) == 0)
		return 1;
	if (!form_refused(errno))
		return -errno;
	use_files(fs, false);
	return 0;
}

/* Is directory dfd/name opaque (trusted.overlay.opaque=y, or a
 * ".wh..wh..opq" file in it)? 1, 0 or -errno. */
int layer_is_opaque(struct ovl_fs *fs, int dfd, const char *name)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char v[8];
	ssize_t n;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	n = fgetxattr(fd, OVL_XATTR_OPAQUE, v, sizeof(v));
	if (n < 0 && errno != ENODATA && errno != EOPNOTSUPP)
		return -errno;
	if (n == 1 && v[0] == 'y')
		return 1;
	return layer_wh_read(fs) && fstatat(fd, OVL_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The name of the index entry of lower file dev:ino. */
void layer_index_name(dev_t dev, ino_t ino, char ret[64])
{
	(void)snprintf(ret, 64, "%" PRIx64 "-%" PRIx64, (uint64_t)dev, (uint64_t)ino);
}

/* Fill h->indexed/st from the index when a lower hard link has already
 * been copied up through it. */
static void lookup_index(struct ovl_fs *fs, struct ovl_hit *h)
{
	char idx[64];
	struct stat st;

	h->ldev = h->st.st_dev;
	h->lino = h->st.st_ino;
	if (fs->indexfd < 0 || !S_ISREG(h->st.st_mode) || h->st.st_nlink < 2)
		return;
	layer_index_name(h->ldev, h->lino, idx);
	if (fstatat(fs->indexfd, idx, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
		h->indexed = true;
		h->st = st;
	}
}

/* Record what layer i shows for a name, given its stat. Returns true when
 * the descent through the layers stops here. */
static bool lookup_step(struct ovl_fs *fs, struct ovl_hit *h, int i, int pfd, const char *name,
			const struct stat *st, bool lowest)
{
	if (stat_is_whiteout(st))
		return true;
	if (!h->found) {
		h->found = true;
		h->layer = h->last = i;
		h->type = st->st_mode & S_IFMT;
		h->st = *st;
		if (!S_ISDIR(st->st_mode))
			return true;
	} else {
		if (!S_ISDIR(st->st_mode))
			return true;
		if (h->last == h->layer)
			h->below = st->st_ino;
		h->last = i;
	}
	return !lowest && layer_is_opaque(fs, pfd, name) > 0;
}

/* A name looked up through the layers of a directory. */
struct lookup_walk {
	const char *name;
	bool wh_read;       /* look for its file-form whiteout too */
	int last;           /* the directory's lowest layer */
	struct ovl_hit *h;  /* layer_lookup's */
	struct stat st;
	int *objfd;         /* wanted: an O_PATH fd on what shows, or NULL */
};

/* What directory pfd of a layer has at w->name: 1 with w->st filled, 0
 * nothing, -ENOENT its file-form whiteout (the name itself wins over it:
 * a create that stopped half way shows the new file), or -errno. */
static int stat_in_layer(int pfd, struct lookup_walk *w)
{
	if (fstatat(pfd, w->name, &w->st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	if (errno != ENOENT && errno != ENOTDIR)
		return -errno;
	return w->wh_read && layer_has_wh_file(pfd, w->name) ? -ENOENT : 0;
}

/* stat_in_layer, the object opened (O_PATH) into *fd when there. */
static int open_in_layer(int pfd, struct lookup_walk *w, int *fd)
{
	*fd = openat(pfd, w->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0 && (errno == EMFILE || errno == ENFILE))
		return stat_in_layer(pfd, w); /* node_get waits for fds */
	if (*fd >= 0 && fstat(*fd, &w->st) == 0)
		return 1;
	if (*fd >= 0) {
		(void)close(*fd);
		*fd = -1;
		return -errno;
	}
	if (errno != ENOENT && errno != ENOTDIR)
		return -errno;
	return w->wh_read && layer_has_wh_file(pfd, w->name) ? -ENOENT : 0;
}

static int lookup_layer(struct ovl_fs *fs, int layer, int pfd, void *arg)
{
	struct lookup_walk *w = arg;
	_cleanup_close_ int fd = -1;
	bool first = !w->h->found;
	int r;

	/* the first thing found is what shows: opened at once when the
	 * caller wants it, rather than found again by path */
	r = w->objfd && first ? open_in_layer(pfd, w, &fd) : stat_in_layer(pfd, w);
	if (r == 0 && layer == OVL_UPPER)
		w->h->upper_clear = true;
	if (r <= 0)
		return r;
	r = lookup_step(fs, w->h, layer, pfd, w->name, &w->st, layer == w->last);
	if (w->objfd && first && w->h->found)
		*w->objfd = TAKE_FD(fd);
	return r;
}

/* Look `name` up below merged directory `dir` through its layers (tree
 * lock held). Fills *h (h->found false when nothing shows, as for every
 * name of the file form). Copies nothing up. 0 or -errno. */
int layer_lookup(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_hit *h)
{
	return layer_lookup_fd(fs, dir, name, h, NULL);
}

/* layer_lookup, and when objfd is not NULL an O_PATH fd on what shows in
 * *objfd (-1 when nothing does), for the caller to close. */
int layer_lookup_fd(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_hit *h,
		    int *objfd)
{
	struct lookup_walk w = {
		.name = name, .wh_read = layer_wh_read(fs), .last = dir->last, .h = h,
		.objfd = objfd,
	};
	int r;

	memset(h, 0, sizeof(*h));
	if (objfd)
		*objfd = -1;
	if (layer_name_reserved(name))
		return 0;
	r = layer_walk(fs, dir, dir->layer, lookup_layer, &w);
	if (r < 0 && r != -ENOENT)
		return r;
	if (h->found && h->layer > OVL_UPPER && !S_ISDIR(h->type))
		lookup_index(fs, h);
	return 0;
}

/* layer_lower_has's step: 2 when the layer shows the name, 1 when it
 * hides it, 0 to go on. */
static int lower_has_layer(struct ovl_fs *fs, int layer, int pfd, void *arg)
{
	struct lookup_walk *w = arg;
	int r = stat_in_layer(pfd, w);

	(void)fs;
	(void)layer;
	if (r <= 0)
		return r == -ENOENT ? 1 : r;
	return stat_is_whiteout(&w->st) ? 1 : 2;
}

/* Does a lower layer of `dir` show `name` (so that removing it from the
 * upper needs a whiteout)? 1, 0 or -errno. Tree lock held. */
int layer_lower_has(struct ovl_fs *fs, struct ovl_node *dir, const char *name)
{
	struct lookup_walk w = { .name = name, .wh_read = layer_wh_read(fs) };
	int r;

	r = layer_walk(fs, dir, dir->layer > 1 ? dir->layer : 1, lower_has_layer, &w);
	return r < 0 ? r : r == 2;
}

/* A fresh temp name for the workdir. 0. */
int layer_tmp_name(struct ovl_fs *fs, char ret[64])
{
	uint64_t n = __atomic_add_fetch(&fs->tmp_seq, 1, __ATOMIC_RELAXED);

	(void)snprintf(ret, 64, "#%x.%" PRIx64, (unsigned)getpid(), n);
	return 0;
}

/* Put a whiteout at dfd/name (in the upper), replacing a non-directory
 * that may be there. The kernel form atomically: made in the workdir,
 * renamed in place. The file form: ".wh.NAME" first, then the name goes
 * (in between, the name still shows what it showed). 0 or -errno. */
int layer_make_whiteout(struct ovl_fs *fs, int dfd, const char *name)
{
	char tmp[64];
	int r;

	r = layer_whiteout_tmp(fs, tmp);
	if (r < 0)
		return r;
	if (r == 0) {
		r = layer_wh_file_make(dfd, name);
		if (r < 0)
			return r;
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
			r = -errno;
			(void)layer_wh_file_drop(dfd, name);
			return r;
		}
		return 0;
	}
	if (renameat(fs->workfd, tmp, dfd, name) < 0) {
		r = -errno;
		(void)unlinkat(fs->workfd, tmp, 0);
		return r;
	}
	return 0;
}

/* Go through directory dfd/name, which may hold nothing but whiteouts
 * of either form (and the opaque mark): -ENOTEMPTY at anything else.
 * With `clear`, each whiteout is removed as it is met. 0 or -errno. */
static int scan_whiteouts(int dfd, const char *name, bool clear)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	int fd, r;

	r = layer_opendir(dfd, name, &d);
	if (r < 0)
		return r;
	fd = dirfd(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (!stat_is_whiteout(&st) &&
		    (!layer_name_reserved(de->d_name) || S_ISDIR(st.st_mode))) {
			r = -ENOTEMPTY;
			break;
		}
		if (clear && unlinkat(fd, de->d_name, 0) < 0) {
			r = -errno;
			break;
		}
	}
	(void)closedir(d);
	return r;
}

/* 0 when directory dfd/name holds nothing but whiteouts (so that
 * layer_clear_dir can remove it), -ENOTEMPTY or -errno otherwise.
 * Changes nothing. */
int layer_check_dir(int dfd, const char *name)
{
	return scan_whiteouts(dfd, name, false);
}

/* Remove directory dfd/name that holds nothing but whiteouts of either
 * form (an upper directory that is empty in the merged view). 0 or
 * -errno (-ENOTEMPTY when it holds anything else). */
int layer_clear_dir(int dfd, const char *name)
{
	int r = scan_whiteouts(dfd, name, true);

	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* Set (on) or remove (!on) the opaque mark of directory dfd/name: the
 * xattr, or the ".wh..wh..opq" file where the upper refuses it; removing
 * drops both. Tree lock held for writing. 0 or -errno. */
int layer_set_opaque(struct ovl_fs *fs, int dfd, const char *name, bool on)
{
	_cleanup_close_ int fd = -1;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (on) {
		if (!fs->opq_files) {
			if (fsetxattr(fd, OVL_XATTR_OPAQUE, "y", 1, 0) == 0)
				return 0;
			if (!form_refused(errno))
				return -errno;
			use_files(fs, true);
		}
		return touch_at(fd, OVL_WH_OPAQUE);
	}
	if (fremovexattr(fd, OVL_XATTR_OPAQUE) < 0 && errno != ENODATA &&
	    errno != EOPNOTSUPP && !(fs->opq_files && form_refused(errno)))
		return -errno;
	if (layer_wh_read(fs) && unlinkat(fd, OVL_WH_OPAQUE, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
