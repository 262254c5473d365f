/* Copy-up: a lower file (or directory) is copied into the upper before
 * anything changes it. The copy is made under a temp name in the workdir
 * with all its metadata, then renamed into place, so a crash never shows
 * a half-made copy. A lower file with several names is copied once into
 * the index (workdir/ctool-index, named after the lower inode) and
 * linked from there, so its names stay one file. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "ovl.h"

#define COPY_CHUNK (1 << 20)

/* The kernel's record of an origin, struct ovl_fb: version, magic, its
 * length, flags, the handle type, the filesystem's uuid, the handle. */
#define FB_VERSION 0
#define FB_MAGIC 0xfb
#define FB_BIG_ENDIAN 0x1
#define FB_ANY_ENDIAN 0x2
#define FB_PATH_UPPER 0x4
#define FB_FLAGS (FB_BIG_ENDIAN | FB_ANY_ENDIAN | FB_PATH_UPPER)
#define FB_UUID 5
#define FB_HDR 21
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FB_CPU_ENDIAN FB_BIG_ENDIAN
#else
#define FB_CPU_ENDIAN 0
#endif

/* The names of the origin and impure marks on this mount's upper. */
static const char *origin_xattr(const struct ovl_fs *fs)
{
	return fs->own_marks ? OVL_XATTR_CTOOL_ORIGIN : OVL_XATTR_ORIGIN;
}

static const char *impure_xattr(const struct ovl_fs *fs)
{
	return fs->own_marks ? OVL_XATTR_CTOOL_IMPURE : OVL_XATTR_IMPURE;
}

/* A file handle with room for any. */
union handle {
	struct file_handle fh;
	unsigned char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

/* The kernel's origin record of src, in lower layer `layer`, into v:
 * its length, 0 for the "null" origin the kernel records for a lower it
 * cannot make handles of. */
static size_t origin_encode(struct ovl_fs *fs, int layer, int src, unsigned char *v)
{
	union handle h;
	int mnt;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (!fs->layers[layer].handles ||
	    name_to_handle_at(src, "", &h.fh, &mnt, AT_EMPTY_PATH) < 0)
		return 0;
	v[0] = FB_VERSION;
	v[1] = FB_MAGIC;
	v[2] = (unsigned char)(FB_HDR + h.fh.handle_bytes);
	v[3] = FB_CPU_ENDIAN;
	v[4] = (unsigned char)h.fh.handle_type;
	memcpy(v + FB_UUID, fs->layers[layer].uuid, sizeof(fs->layers[layer].uuid));
	memcpy(v + FB_HDR, h.fh.f_handle, h.fh.handle_bytes);
	return v[2];
}

/* Record on the copy cfd (O_PATH, still in the workdir) that it was made
 * from src, of stat st, in lower layer `layer`: as the kernel does, or
 * with ctool's own mark where the upper refuses the kernel's. Returns
 * the inode number the copy shows from now on: the origin's, or 0 (its
 * own) when none could be recorded, as on the kernel's overlay. Never
 * fails the copy. */
static ino_t origin_set(struct ovl_fs *fs, int layer, int cfd, int src, const struct stat *st)
{
	unsigned char v[FB_HDR + MAX_HANDLE_SZ];
	char p[32];
	size_t len;

	if (fs->own_marks)
		len = (size_t)snprintf((char *)v, sizeof(v), "%ju", (uintmax_t)st->st_ino);
	else
		len = origin_encode(fs, layer, src, v);
	if (setxattr(proc_fd_path(cfd, p), origin_xattr(fs), v, len, 0) < 0)
		return 0;
	return len ? st->st_ino : 0;
}

/* Is lower file ost kept in the index as upper file st? */
static bool origin_indexed(struct ovl_fs *fs, const struct stat *ost, const struct stat *st)
{
	struct stat ist;
	char idx[64];

	if (!S_ISREG(ost->st_mode) || fs->indexfd < 0)
		return false;
	layer_index_name(ost->st_dev, ost->st_ino, idx);
	return fstatat(fs->indexfd, idx, &ist, AT_SYMLINK_NOFOLLOW) == 0 &&
	       ist.st_dev == st->st_dev && ist.st_ino == st->st_ino;
}

/* Find the origin that record v (len bytes) names, in the lowers whose
 * filesystem has the uuid it records, and return its inode number where
 * the kernel shows it for upper object st: a directory, a file of one
 * name; and, as the kernel does with its index, one that ctool's index
 * keeps (one file under all its names). 0 when it shows its own. */
static ino_t origin_decode(struct ovl_fs *fs, const unsigned char *v, size_t len,
			   const struct stat *st)
{
	struct stat ost;
	union handle h;
	int i, fd, r;

	if (len < FB_HDR || v[0] != FB_VERSION || v[1] != FB_MAGIC || v[2] != len ||
	    (v[3] & ~FB_FLAGS) || (v[3] & FB_PATH_UPPER) ||
	    (!(v[3] & FB_ANY_ENDIAN) && (v[3] & FB_BIG_ENDIAN) != FB_CPU_ENDIAN))
		return 0;
	h.fh.handle_bytes = (unsigned int)(len - FB_HDR);
	h.fh.handle_type = v[4];
	memcpy(h.fh.f_handle, v + FB_HDR, len - FB_HDR);
	for (i = 1; i < fs->nlayers; i++) {
		const struct ovl_layer *l = &fs->layers[i];

		if (!l->handles || memcmp(l->uuid, v + FB_UUID, sizeof(l->uuid)))
			continue;
		fd = open_by_handle_at(l->hfd, &h.fh, O_PATH | O_CLOEXEC);
		if (fd < 0)
			continue;
		r = fstat(fd, &ost);
		(void)close(fd);
		if (r < 0 || ((ost.st_mode ^ st->st_mode) & S_IFMT))
			return 0;
		if (S_ISDIR(ost.st_mode) || ost.st_nlink == 1 || origin_indexed(fs, &ost, st))
			return ost.st_ino;
		return 0;
	}
	return 0;
}

/* The inode number upper object fd (O_PATH), of stat st, shows: that of
 * the copy-up origin it records (see origin_decode; ctool's own mark
 * holds the number itself), or 0 for its own. An origin that is gone
 * counts as none, as on the kernel's overlay. */
ino_t copyup_origin_ino(struct ovl_fs *fs, int fd, const struct stat *st)
{
	unsigned char v[FB_HDR + MAX_HANDLE_SZ + 1];
	char p[32];
	ssize_t len;

	len = getxattr(proc_fd_path(fd, p), origin_xattr(fs), v, sizeof(v) - 1);
	if (len <= 0)
		return 0;
	if (!fs->own_marks)
		return origin_decode(fs, v, (size_t)len, st);
	v[len] = '\0';
	return (ino_t)strtoull((const char *)v, NULL, 10);
}

/* Does upper directory fd (O_PATH) carry the impure mark? */
bool copyup_read_impure(struct ovl_fs *fs, int fd)
{
	char p[32], v;

	return getxattr(proc_fd_path(fd, p), impure_xattr(fs), &v, 1) == 1 && v == 'y';
}

/* Mark upper directory node `dir` impure, on disk and on the node, before
 * a copy lands in it or one with an origin moves or is linked there, as
 * the kernel does: lookups and listings there then read the origins.
 * Tree lock held. Best effort: an upper that takes no xattrs records no
 * origins either. */
void copyup_mark_impure(struct ovl_fs *fs, struct ovl_node *dir)
{
	_cleanup_close_ int own = -1, fd = -1;
	const char *name;
	int pfd;

	if (node_impure(fs, dir))
		return;
	pfd = node_parent_fd(fs, dir, OVL_UPPER, &name, &own);
	if (pfd < 0)
		return;
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fsetxattr(fd, impure_xattr(fs), "y", 1, 0) < 0)
		return;
	__atomic_store_n(&dir->impure, OVL_IMPURE_YES, __ATOMIC_RELAXED);
}

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

/* Copy [off, end) from src to dst at the same offsets. The offset
 * reached (end, or less where src ends sooner) or -errno. */
static off_t copy_range(int src, int dst, off_t off, off_t end)
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
	return off;
}

/* Copy the data of src (of stat st) into dst keeping holes. 0 or
 * -errno. */
static int copy_data(int src, int dst, const struct stat *st)
{
	off_t size = st->st_size, off = 0, data, hole, r;

	/* blocks for every byte: no hole to look for */
	if ((off_t)st->st_blocks * 512 >= size) {
		r = copy_range(src, dst, 0, size);
		if (r == size)
			return 0;
		if (r < 0)
			return (int)r;
	}
	while (off < size) {
		data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;
			/* no SEEK_DATA: copy it all */
			data = off;
			hole = size;
		} else {
			hole = lseek(src, data, SEEK_HOLE);
			if (hole < 0)
				hole = size;
		}
		r = copy_range(src, dst, data, hole);
		if (r < 0)
			return (int)r;
		off = hole;
	}
	return ftruncate(dst, size) < 0 ? -errno : 0;
}

/* Make the data of a copy durable before the copy is renamed into view,
 * so that a crash never shows a copy without its data: written back and
 * waited for where the upper's journal orders the rename after it
 * (fs->sync_ordered), else fsync. Nothing with "volatile". 0 or -errno. */
int copyup_sync(struct ovl_fs *fs, int fd)
{
	int r;

	if (fs->nosync)
		return 0;
	if (fs->sync_ordered)
		r = sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						  SYNC_FILE_RANGE_WAIT_AFTER);
	else
		r = fsync(fd);
	return r < 0 ? -errno : 0;
}

/* Make the copy of a node of type st->st_mode under workdir name tmp;
 * src is an fd on the source (regular: readable, others O_PATH); a
 * regular file's data made durable when `durable`. An O_PATH fd on the
 * copy in *ret_fd. 0 or -errno; a partial copy is left for the caller. */
static int copy_make(struct ovl_fs *fs, const char *tmp, const struct stat *st, int src,
		     bool durable, int *ret_fd)
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
		r = copy_data(src, dst, st);
		if (r == 0 && durable)
			r = copyup_sync(fs, dst);
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
 * ctool-index/<dev-ino> (recording its origin there, for all its names),
 * then link that into upfd/name. An O_PATH fd on the copy in *ret_fd,
 * the inode number it shows in *ret_oino. 0 or -errno. */
static int copy_indexed(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st, int src,
			int upfd, const char *name, int *ret_fd, ino_t *ret_oino)
{
	dev_t dev = n->indexed ? n->ldev : st->st_dev;
	ino_t ino = n->indexed ? n->lino : st->st_ino;
	_cleanup_close_ int cfd = -1;
	bool made = false;
	char idx[64], tmp[64];
	struct stat ist;
	int r;

	*ret_oino = n->oino;
	layer_index_name(dev, ino, idx);
	if (!n->indexed) {
		(void)layer_tmp_name(fs, tmp);
		r = copy_make(fs, tmp, st, src, true, &cfd);
		if (r == 0)
			*ret_oino = origin_set(fs, n->layer, cfd, src, st);
		if (r == 0 && renameat2(fs->workfd, tmp, fs->indexfd, idx, RENAME_NOREPLACE) < 0)
			r = -errno;
		if (r < 0) {
			tmp_drop(fs, tmp);
			if (r != -EEXIST)
				return r;
		}
		made = r == 0;
	}
	if (linkat(fs->indexfd, idx, upfd, name, 0) < 0)
		return -errno;
	*ret_fd = openat(fs->indexfd, idx, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (*ret_fd < 0)
		return -errno;
	/* one an earlier copy left: what it records */
	if (!n->indexed && !made)
		*ret_oino = fstat(*ret_fd, &ist) == 0 ? copyup_origin_ino(fs, *ret_fd, &ist) : 0;
	if (!n->indexed)
		node_mark_indexed(fs, dev, ino, *ret_oino);
	return 0;
}

/* The upper already has n's name as n's type (a copy finished by an
 * earlier operation that failed later, before n heard of it): take it
 * as n's copy. 1 when taken, 0 when the upper has nothing there, or
 * -errno (-ESTALE when it has something else). */
static int copy_adopt(struct ovl_fs *fs, struct ovl_node *n, int upfd, const char *name)
{
	struct stat st, lst;
	int fd;

	if (fstatat(upfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((st.st_mode & S_IFMT) != n->type || stat_is_whiteout(&st))
		return -ESTALE;
	fd = openat(upfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* a directory shows the one below that it merges with (n's), a
	 * file the origin its copy records */
	if (S_ISDIR(n->type))
		n->oino = n->fd >= 0 && fstat(n->fd, &lst) == 0 ? lst.st_ino : 0;
	else
		n->oino = copyup_origin_ino(fs, fd, &st);
	n->impure = OVL_IMPURE_UNKNOWN;
	node_set_fd(n, fd);
	n->layer = OVL_UPPER;
	n->indexed = false;
	return 1;
}

/* Copy node n (tree lock held for writing) into the upper, parents
 * first, shown there at once. A no-op when it is there already. 0 or
 * -errno. */
int copyup_node(struct ovl_fs *fs, struct ovl_node *n)
{
	return copyup_node_flags(fs, n, 0);
}

/* copyup_node, with flags: COPYUP_EMPTY, a regular file about to be
 * truncated to 0 is copied without its data (not through the index: its
 * other names keep their data); COPYUP_MAY_WAIT, the copy may wait in
 * the workdir to be shown (publish.c), for callers that go on acting on
 * the node, never on its name. */
int copyup_node_flags(struct ovl_fs *fs, struct ovl_node *n, unsigned int flags)
{
	_cleanup_close_ int own = -1, src = -1, cfd = -1;
	bool empty = flags & COPYUP_EMPTY;
	const char *name;
	struct stat st;
	ino_t oino = 0;
	char tmp[64];
	int upfd, r;

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
	upfd = node_parent_fd(fs, n, OVL_UPPER, &name, &own);
	if (upfd < 0)
		return upfd;
	r = copy_adopt(fs, n, upfd, name);
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
	/* before the copy shows there, as the kernel does */
	copyup_mark_impure(fs, n->parent);
	if (S_ISREG(st.st_mode) && fs->indexfd >= 0 && (n->indexed || st.st_nlink > 1)) {
		r = copy_indexed(fs, n, &st, src, upfd, name, &cfd, &oino);
	} else {
		/* a file with one name may wait to be shown (publish.c) */
		bool wait = (flags & COPYUP_MAY_WAIT) && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
			    pend_wanted(fs, n);

		if (empty && S_ISREG(st.st_mode))
			st.st_size = 0;
		(void)layer_tmp_name(fs, tmp);
		r = copy_make(fs, tmp, &st, src, !wait, &cfd);
		/* the kernel records no origin for one name of several: its
		 * copy is another file */
		if (r == 0 && (S_ISDIR(st.st_mode) || st.st_nlink == 1))
			oino = origin_set(fs, n->layer, cfd, src, &st);
		/* a waiting copy must show the inode number its name shows in
		 * listings meanwhile: the lower's, through its origin */
		if (r == 0 && wait && (!oino || pend_add(fs, n, tmp) < 0)) {
			wait = false;
			r = pend_sync_one(fs, cfd);
		}
		if (r == 0 && !wait && renameat2(fs->workfd, tmp, upfd, name, RENAME_NOREPLACE) < 0)
			r = -errno;
		if (r < 0)
			tmp_drop(fs, tmp);
	}
	if (r < 0)
		return r;
	node_set_fd(n, TAKE_FD(cfd));
	n->layer = OVL_UPPER;
	n->indexed = false;
	/* the inode number stays the lower's: a copied directory merges with
	 * it, a file shows the origin it records */
	n->oino = S_ISDIR(st.st_mode) ? st.st_ino : oino;
	n->impure = OVL_IMPURE_NO;
	/* its parent's listing, which the kernel may keep, shows its inode
	 * number: the copy's where no origin could be recorded */
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
	r = layer_opendir(dfd, name, &d);
	if (r < 0)
		return r;
	fd = dirfd(d);
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
