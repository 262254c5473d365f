/* Lookups inside the layers: resolving paths beneath a layer, whiteouts,
 * opaque directories, and the small primitives that write them. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
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

/* Is st a whiteout (a character device 0/0)? */
bool stat_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Does directory dfd/name carry trusted.overlay.opaque=y? 1, 0 or -errno. */
int layer_is_opaque(int dfd, const char *name)
{
	_cleanup_close_ int fd = -1;
	char v[8];
	ssize_t n;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	n = fgetxattr(fd, OVL_XATTR_OPAQUE, v, sizeof(v));
	if (n < 0)
		return (errno == ENODATA || errno == EOPNOTSUPP) ? 0 : -errno;
	return n == 1 && v[0] == 'y';
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
static bool lookup_step(struct ovl_hit *h, int i, int pfd, const char *name,
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
		h->last = i;
	}
	return !lowest && layer_is_opaque(pfd, name) > 0;
}

/* Look `name` up below merged directory `dir` through its layers (tree
 * lock held). Fills *h (h->found false when nothing shows). Copies
 * nothing up. 0 or -errno. */
int layer_lookup(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_hit *h)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;
	int i, r;

	memset(h, 0, sizeof(*h));
	r = node_path(dir, &path);
	if (r < 0)
		return r;
	for (i = dir->layer; i <= dir->last; i++) {
		_cleanup_close_ int pfd = -1;

		r = layer_open_dir(fs, i, path, &pfd);
		if (r == -ENOENT || r == -ENOTDIR)
			continue;
		if (r < 0)
			return r;
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			return -errno;
		}
		if (lookup_step(h, i, pfd, name, &st, i == dir->last))
			break;
	}
	if (h->found && h->layer > OVL_UPPER && !S_ISDIR(h->type))
		lookup_index(fs, h);
	return 0;
}

/* Does a lower layer of `dir` show `name` (so that removing it from the
 * upper needs a whiteout)? 1, 0 or -errno. Tree lock held. */
int layer_lower_has(struct ovl_fs *fs, struct ovl_node *dir, const char *name)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;
	int i, r;

	r = node_path(dir, &path);
	if (r < 0)
		return r;
	for (i = dir->layer > 1 ? dir->layer : 1; i <= dir->last; i++) {
		_cleanup_close_ int pfd = -1;

		r = layer_open_dir(fs, i, path, &pfd);
		if (r == -ENOENT || r == -ENOTDIR)
			continue;
		if (r < 0)
			return r;
		if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			return -errno;
		}
		return !stat_is_whiteout(&st);
	}
	return 0;
}

/* A fresh temp name for the workdir. 0. */
int layer_tmp_name(struct ovl_fs *fs, char ret[64])
{
	uint64_t n = __atomic_add_fetch(&fs->tmp_seq, 1, __ATOMIC_RELAXED);

	(void)snprintf(ret, 64, "#%x.%" PRIx64, (unsigned)getpid(), n);
	return 0;
}

/* Put a whiteout at dfd/name (in the upper), replacing a non-directory
 * that may be there, atomically: made in the workdir, renamed in place.
 * 0 or -errno. */
int layer_make_whiteout(struct ovl_fs *fs, int dfd, const char *name)
{
	char tmp[64];

	(void)layer_tmp_name(fs, tmp);
	if (mknodat(fs->workfd, tmp, S_IFCHR | 0, makedev(0, 0)) < 0)
		return -errno;
	if (renameat(fs->workfd, tmp, dfd, name) < 0) {
		int r = -errno;

		(void)unlinkat(fs->workfd, tmp, 0);
		return r;
	}
	return 0;
}

/* Remove directory dfd/name that holds nothing but whiteouts (an upper
 * directory that is empty in the merged view). 0 or -errno
 * (-ENOTEMPTY when it holds anything else). */
int layer_clear_dir(int dfd, const char *name)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	int fd, r = 0;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void)close(fd);
		return r;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (!stat_is_whiteout(&st)) {
			r = -ENOTEMPTY;
			break;
		}
		if (unlinkat(fd, de->d_name, 0) < 0) {
			r = -errno;
			break;
		}
	}
	(void)closedir(d);
	if (r == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* Set (on) or remove (!on) the opaque mark of directory dfd/name.
 * 0 or -errno. */
int layer_set_opaque(int dfd, const char *name, bool on)
{
	_cleanup_close_ int fd = -1;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (on)
		return fsetxattr(fd, OVL_XATTR_OPAQUE, "y", 1, 0) < 0 ? -errno : 0;
	if (fremovexattr(fd, OVL_XATTR_OPAQUE) < 0 && errno != ENODATA)
		return -errno;
	return 0;
}
