/* Copy-up: a lower file (or directory) is copied into the upper before
 * anything changes it. The copy is made under a temp name in the workdir
 * with all its metadata, then renamed into place, so a crash never shows
 * a half-made copy. A lower file with several names is copied once into
 * the index (workdir/ctool-index, named after the lower inode) and
 * linked from there, so its names stay one file. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "ovl.h"

#define COPY_CHUNK (1 << 20)

/* Copy every xattr but trusted.overlay.* from src to dst (fds of any
 * kind, O_PATH included). Attributes the upper cannot hold (security.*
 * refused, or no xattr support) are skipped, and so is one removed from
 * src since it was listed; the others are still copied. 0 or -errno. */
int copyup_xattrs(int src, int dst)
{
	_cleanup_free_ char *names = NULL, *val = NULL;
	char sp[32], dp[32];
	ssize_t len, vlen;
	size_t vcap = 0;
	char *name;

	(void)proc_fd_path(src, sp);
	(void)proc_fd_path(dst, dp);
	len = listxattr(sp, NULL, 0);
	if (len < 0)
		return (errno == ENOTSUP || errno == EPERM) ? 0 : -errno;
	if (len == 0)
		return 0;
	names = malloc((size_t)len);
	if (!names)
		return -ENOMEM;
	len = listxattr(sp, names, (size_t)len);
	if (len < 0)
		return -errno;
	for (name = names; name < names + len; name += strlen(name) + 1) {
		if (ops_xattr_private(name))
			continue;
		vlen = getxattr(sp, name, NULL, 0);
		if (vlen < 0 && errno == ENODATA)
			continue;
		if (vlen < 0)
			return -errno;
		if ((size_t)vlen + 1 > vcap) {
			char *nv = realloc(val, (size_t)vlen + 1);

			if (!nv)
				return -ENOMEM;
			val = nv;
			vcap = (size_t)vlen + 1;
		}
		vlen = getxattr(sp, name, val, (size_t)vlen);
		if (vlen < 0 && errno == ENODATA)
			continue;
		if (vlen < 0)
			return -errno;
		if (setxattr(dp, name, val, (size_t)vlen, 0) < 0) {
			if (errno == ENOTSUP || (errno == EPERM && !strncmp(name, "security.", 9)))
				continue;
			return -errno;
		}
	}
	return 0;
}

/* Give workdir entry tmp the owner, xattrs, mode and times of st / src
 * (an fd on the source), in that order: chown drops security.capability
 * and the set-id bits, so it comes first; the mode after the xattrs puts
 * the set-id bits back; the times last. An O_PATH fd on the copy is left
 * in *ret_fd. 0 or -errno. */
static int copy_meta(struct ovl_fs *fs, const char *tmp, const struct stat *st, int src,
		     int *ret_fd)
{
	_cleanup_close_ int dst = -1;
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	char p[32];
	int r;

	dst = openat(fs->workfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (dst < 0)
		return -errno;
	if (fchownat(dst, "", st->st_uid, st->st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	r = copyup_xattrs(src, dst);
	if (r < 0)
		return r;
	/* dst is the copy itself, not a symlink: the magic link reaches it */
	if (!S_ISLNK(st->st_mode) && chmod(proc_fd_path(dst, p), st->st_mode & 07777) < 0)
		return -errno;
	if (utimensat(dst, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	*ret_fd = TAKE_FD(dst);
	return 0;
}

/* Write all of buf to dst at off. 0 or -errno (-ENOSPC when the
 * filesystem takes nothing more without saying why). */
static int write_all(int dst, const char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(dst, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENOSPC;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Copy [off, end) from src to dst at the same offsets. 0 or -errno. */
static int copy_range(int src, int dst, off_t off, off_t end)
{
	_cleanup_free_ char *buf = NULL;
	bool plain = false;

	while (off < end) {
		size_t want = (size_t)(end - off) < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
		ssize_t n;

		if (!plain) {
			off_t in = off, out = off;

			n = copy_file_range(src, &in, dst, &out, want, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			if (!buf && !(buf = malloc(COPY_CHUNK)))
				return -ENOMEM;
			n = pread(src, buf, want, off);
			if (n > 0) {
				int r = write_all(dst, buf, (size_t)n, off);

				if (r < 0)
					return r;
			}
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break; /* the file shrank: the size is fixed by the caller */
		off += n;
	}
	return 0;
}

/* Copy the data of src into dst keeping holes. 0 or -errno. */
static int copy_data(int src, int dst, off_t size)
{
	off_t off = 0, data, hole;
	int r;

	while (off < size) {
		data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;
			/* no SEEK_DATA: copy it all */
			return copy_range(src, dst, off, size);
		}
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			hole = size;
		r = copy_range(src, dst, data, hole);
		if (r < 0)
			return r;
		off = hole;
	}
	return ftruncate(dst, size) < 0 ? -errno : 0;
}

/* Make the copy of a node of type st->st_mode under workdir name tmp;
 * src is an fd on the source (regular: readable, others O_PATH). An
 * O_PATH fd on the copy in *ret_fd. 0 or -errno; a partial copy is left
 * for the caller. */
static int copy_make(struct ovl_fs *fs, const char *tmp, const struct stat *st, int src,
		     int *ret_fd)
{
	char target[4097];
	ssize_t tl;
	int r;

	switch (st->st_mode & S_IFMT) {
	case S_IFREG: {
		_cleanup_close_ int dst = -1;

		dst = openat(fs->workfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (dst < 0)
			return -errno;
		r = copy_data(src, dst, st->st_size);
		if (r == 0 && !fs->nosync && fsync(dst) < 0)
			r = -errno;
		break;
	}
	case S_IFDIR:
		r = mkdirat(fs->workfd, tmp, 0700) < 0 ? -errno : 0;
		break;
	case S_IFLNK:
		tl = readlinkat(src, "", target, sizeof(target) - 1);
		if (tl < 0)
			return -errno;
		target[tl] = '\0';
		r = symlinkat(target, fs->workfd, tmp) < 0 ? -errno : 0;
		break;
	default:
		r = mknodat(fs->workfd, tmp, st->st_mode & ~07777, st->st_rdev) < 0 ? -errno : 0;
		break;
	}
	if (r < 0)
		return r;
	return copy_meta(fs, tmp, st, src, ret_fd);
}

/* Remove a workdir temp left by a failed copy. */
static void tmp_drop(struct ovl_fs *fs, const char *tmp)
{
	if (unlinkat(fs->workfd, tmp, 0) < 0 && errno == EISDIR)
		(void)unlinkat(fs->workfd, tmp, AT_REMOVEDIR);
}

/* Copy a lower hard link through the index: copy once into
 * ctool-index/<dev-ino>, then link that into upfd/name. An O_PATH fd on
 * the copy in *ret_fd. 0 or -errno. */
static int copy_indexed(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st, int src,
			int upfd, const char *name, int *ret_fd)
{
	dev_t dev = n->indexed ? n->ldev : st->st_dev;
	ino_t ino = n->indexed ? n->lino : st->st_ino;
	_cleanup_close_ int cfd = -1;
	char idx[64], tmp[64];
	int r;

	layer_index_name(dev, ino, idx);
	if (!n->indexed) {
		(void)layer_tmp_name(fs, tmp);
		r = copy_make(fs, tmp, st, src, &cfd);
		if (r == 0 && renameat2(fs->workfd, tmp, fs->indexfd, idx, RENAME_NOREPLACE) < 0)
			r = -errno;
		if (r < 0) {
			tmp_drop(fs, tmp);
			if (r != -EEXIST)
				return r;
		}
		node_mark_indexed(fs, dev, ino);
	}
	if (linkat(fs->indexfd, idx, upfd, name, 0) < 0)
		return -errno;
	*ret_fd = openat(fs->indexfd, idx, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	return *ret_fd < 0 ? -errno : 0;
}

/* The upper already has n's name as n's type (a copy finished by an
 * earlier operation that failed later, before n heard of it): take it
 * as n's copy. 1 when taken, 0 when the upper has nothing there, or
 * -errno (-ESTALE when it has something else). */
static int copy_adopt(struct ovl_node *n, int upfd, const char *name)
{
	struct stat st;
	int fd;

	if (fstatat(upfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((st.st_mode & S_IFMT) != n->type || stat_is_whiteout(&st))
		return -ESTALE;
	fd = openat(upfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	node_set_fd(n, fd);
	n->layer = OVL_UPPER;
	n->indexed = false;
	return 1;
}

/* Copy node n (tree lock held for writing) into the upper, parents
 * first. A no-op when it is there already. 0 or -errno. */
int copyup_node(struct ovl_fs *fs, struct ovl_node *n)
{
	return copyup_node_flags(fs, n, false);
}

/* copyup_node; with `empty`, a regular file about to be truncated to 0
 * is copied without its data (not through the index: its other names
 * keep their data). */
int copyup_node_flags(struct ovl_fs *fs, struct ovl_node *n, bool empty)
{
	_cleanup_close_ int upfd = -1, src = -1, cfd = -1;
	const char *name;
	struct stat st;
	char tmp[64];
	int r;

	if (n->layer == OVL_UPPER)
		return 0;
	if (fs->readonly)
		return -EROFS;
	/* removed from the view while open: there is no name to copy it to,
	 * and the name it had may be something else now */
	if (!node_live(n))
		return -ESTALE;
	r = copyup_node(fs, n->parent);
	if (r < 0)
		return r;
	upfd = node_parent_fd(fs, n, OVL_UPPER, &name);
	if (upfd < 0)
		return upfd;
	r = copy_adopt(n, upfd, name);
	if (r > 0)
		node_inval_dir(fs, n->parent);
	if (r != 0)
		return r < 0 ? r : 0;
	r = node_open(fs, n, S_ISREG(n->type) ? O_RDONLY : O_PATH, &src);
	if (r < 0)
		return r;
	if (fstat(src, &st) < 0)
		return -errno;
	if ((st.st_mode & S_IFMT) != n->type)
		return -ESTALE;
	if (S_ISREG(st.st_mode) && fs->indexfd >= 0 && (n->indexed || st.st_nlink > 1)) {
		r = copy_indexed(fs, n, &st, src, upfd, name, &cfd);
	} else {
		if (empty && S_ISREG(st.st_mode))
			st.st_size = 0;
		(void)layer_tmp_name(fs, tmp);
		r = copy_make(fs, tmp, &st, src, &cfd);
		if (r == 0 && renameat2(fs->workfd, tmp, upfd, name, RENAME_NOREPLACE) < 0)
			r = -errno;
		if (r < 0)
			tmp_drop(fs, tmp);
	}
	if (r < 0)
		return r;
	node_set_fd(n, TAKE_FD(cfd));
	n->layer = OVL_UPPER;
	n->indexed = false;
	/* its parent's listing, which the kernel may keep, shows its inode
	 * number: now the copy's */
	node_inval_dir(fs, n->parent);
	return 0;
}

/* Copy n and, for a directory, everything the merged view shows below
 * it into the upper (tree lock held for writing). Known nodes below n
 * are left stale: the caller refreshes them. 0 or -errno. */
int copyup_tree(struct ovl_fs *fs, struct ovl_node *n)
{
	struct ovl_dir d = { 0 };
	size_t i;
	int r;

	r = copyup_node(fs, n);
	if (r < 0 || !S_ISDIR(n->type))
		return r;
	r = dir_list(fs, n, &d);
	if (r < 0)
		return r;
	for (i = 0; r == 0 && i < d.count; i++) {
		struct ovl_node child = {
			.parent = n, .name = d.ents[i].name, .fd = -1, .transient = true,
		};
		struct ovl_hit h;

		r = layer_lookup(fs, n, child.name, &h);
		if (r < 0 || !h.found)
			continue;
		child.type = h.type;
		child.layer = h.layer;
		child.last = h.last;
		child.indexed = h.indexed;
		child.ldev = h.ldev;
		child.lino = h.lino;
		if (child.layer == OVL_UPPER && (!S_ISDIR(h.type) || child.last == OVL_UPPER))
			continue;
		r = copyup_tree(fs, &child);
	}
	dir_list_free(&d);
	return r;
}

/* After a copied-up tree moved to a place with no lower below it: drop
 * the whiteouts (both forms) in directory dfd/name and, below the top,
 * the opaque marks, none of which mean anything there any more. Tree
 * lock held for writing. 0 or -errno. */
int copyup_clean_tree(struct ovl_fs *fs, int dfd, const char *name, bool top)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, r = 0;

	if (!top) {
		r = layer_set_opaque(fs, dfd, name, false);
		if (r < 0)
			return r;
	}
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void)close(fd);
		return r;
	}
	while (r == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (layer_name_reserved(de->d_name)) {
			/* the top keeps its opaque mark */
			if (top && !strcmp(de->d_name, OVL_WH_OPAQUE))
				continue;
			if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
				r = -errno;
			continue;
		}
		if (de->d_type != DT_CHR && de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (stat_is_whiteout(&st))
			r = unlinkat(fd, de->d_name, 0) < 0 ? -errno : 0;
		else if (S_ISDIR(st.st_mode))
			r = copyup_clean_tree(fs, fd, de->d_name, false);
	}
	(void)closedir(d);
	return r;
}
