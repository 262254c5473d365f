/* tar export of an env's or an image's tree or layer stack (see
 * tarball.h for the format). */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#include "log.h"
#include "tarball-lib.h"
#include "tarball.h"
#include "util.h"

/* ---------------------------------------------------------------------
 * Export */

/* Hard links met so far: (dev, ino) -> the first name written. */
struct link {
	dev_t dev;
	ino_t ino;
	char *name;
};

struct links {
	struct link *v;
	size_t cap, n; /* cap: 0 or a power of two */
};

static size_t link_slot(const struct links *l, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)dev * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)ino * 0xff51afd7ed558ccdULL);
	size_t i = (size_t)(h ^ (h >> 29)) & (l->cap - 1);

	while (l->v[i].name && (l->v[i].dev != dev || l->v[i].ino != ino))
		i = (i + 1) & (l->cap - 1);
	return i;
}

/* The name first written for (dev, ino) in *ret, or NULL after
 * recording name as that one. 0 or -ENOMEM. */
static int links_see(struct links *l, dev_t dev, ino_t ino, const char *name, const char **ret)
{
	size_t i;

	if (l->n * 2 >= l->cap) {
		struct links g = { .cap = l->cap ? l->cap * 2 : 256 };

		g.v = calloc(g.cap, sizeof(*g.v));
		if (!g.v)
			return -ENOMEM;
		for (i = 0; i < l->cap; i++)
			if (l->v[i].name)
				g.v[link_slot(&g, l->v[i].dev, l->v[i].ino)] = l->v[i];
		g.n = l->n;
		free(l->v);
		*l = g;
	}
	i = link_slot(l, dev, ino);
	if (l->v[i].name) {
		*ret = l->v[i].name;
		return 0;
	}
	l->v[i].name = strdup(name);
	if (!l->v[i].name)
		return -ENOMEM;
	l->v[i].dev = dev;
	l->v[i].ino = ino;
	l->n++;
	*ret = NULL;
	return 0;
}

static void links_free(struct links *l)
{
	size_t i;

	for (i = 0; i < l->cap; i++)
		free(l->v[i].name);
	free(l->v);
	l->v = NULL;
	l->cap = l->n = 0;
}

struct exp {
	struct archive *a;
	struct archive_entry *ae;
	bool raw;               /* --layers: one layer as it is on disk */
	const dev_t *devs;      /* st_dev of each layer's root, by layer index */
	char name[PATH_MAX + 64]; /* the entry's name in the archive */
	struct links links;
	bool out_known;         /* out_dev/out_ino: the archive itself, never written into it */
	dev_t out_dev;
	ino_t out_ino;
	char *buf;              /* ARC_BUF bytes */
	char *xl;               /* xattr names */
	size_t xl_cap;
	char *xv;               /* one xattr value */
	off_t *map;             /* sparse file: data extents (offset, length) */
	size_t map_n, map_cap;
	struct arc_stats *st;
	struct ct_err *e;
};

static char arc_zeros[ARC_BUF]; /* holes of sparse files: the writer skips them */

static int exp_werr(struct exp *x)
{
	const char *m = archive_error_string(x->a);

	return ct_fail(x->e, EIO, "cannot write '%s' into the archive: %s", x->name,
		       m ? m : "unknown error");
}

/* Is xattr name written? The overlay's own (copy-up origins, impure
 * marks) describe one machine's filesystem; in a --layers export an
 * opaque mark is part of the layer's format. */
static bool xattr_exported(const char *name, bool raw)
{
	if (strncmp(name, OVL_OWN_PREFIX, sizeof(OVL_OWN_PREFIX) - 1) == 0)
		return false;
	if (strncmp(name, OVL_PREFIX, sizeof(OVL_PREFIX) - 1) == 0)
		return raw && strcmp(name, OVL_OPAQUE) == 0;
	return true;
}

/* Add the xattrs of fd (or, fd < 0, of path, itself when a symlink) to
 * the entry; *had_opaque tells whether trusted.overlay.opaque was one. */
static int exp_xattrs(struct exp *x, int fd, const char *path, bool *had_opaque)
{
	ssize_t n, i, v;

	for (;;) {
		n = fd >= 0 ? flistxattr(fd, x->xl, x->xl_cap) : llistxattr(path, x->xl, x->xl_cap);
		if (n >= 0)
			break;
		if (errno == ENOTSUP || errno == ENOENT)
			return 0;
		if (errno != ERANGE)
			return ct_fail_errno(x->e, errno, "cannot list the xattrs of '%s'", x->name);
		n = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(path, NULL, 0);
		if (n < 0)
			return ct_fail_errno(x->e, errno, "cannot list the xattrs of '%s'", x->name);
		free(x->xl);
		x->xl_cap = (size_t)n + 256;
		x->xl = malloc(x->xl_cap);
		if (!x->xl) {
			x->xl_cap = 0;
			return ct_fail(x->e, ENOMEM, "out of memory");
		}
	}
	for (i = 0; i < n; i += (ssize_t)strlen(x->xl + i) + 1) {
		const char *nm = x->xl + i;

		if (!xattr_exported(nm, x->raw))
			continue;
		v = fd >= 0 ? fgetxattr(fd, nm, x->xv, XATTR_SIZE_MAX)
			    : lgetxattr(path, nm, x->xv, XATTR_SIZE_MAX);
		if (v < 0 && errno == ENODATA)
			continue;
		if (v < 0)
			return ct_fail_errno(x->e, errno, "cannot read the xattr '%s' of '%s'", nm,
					     x->name);
		if (strcmp(nm, OVL_OPAQUE) == 0)
			*had_opaque = true;
		archive_entry_xattr_add_entry(x->ae, nm, x->xv, (size_t)v);
	}
	return 0;
}

/* Start the entry x->name with st's type, mode, owner, mtime, size. */
static void exp_entry(struct exp *x, const struct stat *st)
{
	archive_entry_clear(x->ae);
	archive_entry_set_pathname(x->ae, x->name);
	archive_entry_set_mode(x->ae, st->st_mode);
	archive_entry_set_uid(x->ae, st->st_uid);
	archive_entry_set_gid(x->ae, st->st_gid);
	archive_entry_set_mtime(x->ae, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	if (S_ISREG(st->st_mode))
		archive_entry_set_size(x->ae, st->st_size);
	else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		archive_entry_set_rdev(x->ae, st->st_rdev);
}

static int exp_put(struct exp *x)
{
	if (archive_write_header(x->a, x->ae) < ARCHIVE_WARN)
		return exp_werr(x);
	x->st->entries++;
	return 0;
}

static int exp_finish(struct exp *x)
{
	return archive_write_finish_entry(x->a) < ARCHIVE_WARN ? exp_werr(x) : 0;
}

static int map_push(struct exp *x, off_t off, off_t len)
{
	if (x->map_n + 2 > x->map_cap) {
		size_t cap = x->map_cap ? x->map_cap * 2 : 64;
		off_t *m = realloc(x->map, cap * sizeof(*m));

		if (!m)
			return ct_fail(x->e, ENOMEM, "out of memory");
		x->map = m;
		x->map_cap = cap;
	}
	x->map[x->map_n++] = off;
	x->map[x->map_n++] = len;
	return 0;
}

/* When fd has holes, record its data extents (offset, length) in x->map
 * and give them to the entry. */
static int exp_sparse(struct exp *x, int fd, const struct stat *st)
{
	off_t pos = 0, d, h;
	size_t i;
	int r;

	x->map_n = 0;
	if (st->st_size == 0 || (off_t)st->st_blocks * 512 >= st->st_size)
		return 0;
	while (pos < st->st_size) {
		d = lseek(fd, pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break; /* a hole to the end */
		h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
		if (d < 0 || (d == 0 && (h < 0 || h >= st->st_size))) {
			x->map_n = 0; /* no SEEK_DATA here, or no hole after all */
			return 0;
		}
		if (h < 0 || h > st->st_size)
			h = st->st_size;
		r = map_push(x, d, h - d);
		if (r < 0)
			return r;
		pos = h;
	}
	/* the end, as GNU tar marks it (a file may end in a hole) */
	r = map_push(x, st->st_size, 0);
	if (r < 0)
		return r;
	for (i = 0; i < x->map_n; i += 2)
		archive_entry_sparse_add_entry(x->ae, x->map[i], x->map[i + 1]);
	return 0;
}

/* Write len bytes of zeros (a hole: the writer stores nothing). */
static int exp_hole(struct exp *x, off_t len)
{
	while (len > 0) {
		size_t n = len > ARC_BUF ? ARC_BUF : (size_t)len;

		if (archive_write_data(x->a, arc_zeros, n) < 0)
			return exp_werr(x);
		len -= (off_t)n;
	}
	return 0;
}

/* Copy [off, off+len) of fd; a file that shrank meanwhile is padded by
 * the writer. */
static int exp_copy(struct exp *x, int fd, off_t off, off_t len)
{
	while (len > 0) {
		size_t want = len > ARC_BUF ? ARC_BUF : (size_t)len;
		ssize_t n = pread(fd, x->buf, want, off);

		if (n < 0 && errno == EINTR && !arc_signal)
			continue;
		if (n < 0)
			return ct_fail_errno(x->e, errno, "cannot read '%s'", x->name);
		if (n == 0)
			return 0;
		if (archive_write_data(x->a, x->buf, (size_t)n) < 0)
			return exp_werr(x);
		x->st->bytes += (uint64_t)n;
		off += n;
		len -= n;
	}
	return 0;
}

static int exp_data(struct exp *x, int fd, const struct stat *st)
{
	off_t pos = 0;
	size_t i;
	int r;

	if (x->map_n == 0)
		return exp_copy(x, fd, 0, st->st_size);
	for (i = 0; i < x->map_n; i += 2) {
		r = exp_hole(x, x->map[i] - pos);
		if (r == 0)
			r = exp_copy(x, fd, x->map[i], x->map[i + 1]);
		if (r < 0)
			return r;
		pos = x->map[i] + x->map[i + 1];
	}
	return 0;
}

/* Write the non-directory nm of dfd (st from fstatat) as x->name. */
static int exp_nondir(struct exp *x, int dfd, const char *nm, struct stat *st)
{
	_cleanup_close_ int fd = -1;
	char proc[64 + NAME_MAX];
	const char *first = NULL;
	bool opq = false;
	int r;

	if (S_ISSOCK(st->st_mode)) {
		log_debug("'%s' is a socket: a tar cannot hold it", x->name);
		return 0;
	}
	if (S_ISREG(st->st_mode)) {
		if (x->out_known && st->st_dev == x->out_dev && st->st_ino == x->out_ino)
			return 0;
		fd = openat(dfd, nm, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
		if (fd < 0 && errno == EPERM)
			fd = openat(dfd, nm, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			return 0; /* gone meanwhile */
		if (fd < 0 || fstat(fd, st) < 0)
			return ct_fail_errno(x->e, errno, "cannot open '%s'", x->name);
		if (!S_ISREG(st->st_mode))
			return 0;
	}
	if (st->st_nlink > 1) {
		if (links_see(&x->links, st->st_dev, st->st_ino, x->name, &first) < 0)
			return ct_fail(x->e, ENOMEM, "out of memory");
		if (first) {
			exp_entry(x, st);
			archive_entry_set_size(x->ae, 0);
			archive_entry_set_hardlink(x->ae, first);
			r = exp_put(x);
			return r < 0 ? r : exp_finish(x);
		}
	}
	exp_entry(x, st);
	if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(dfd, nm, x->buf, PATH_MAX);

		if (n < 0 && errno == ENOENT)
			return 0;
		if (n < 0)
			return ct_fail_errno(x->e, errno, "cannot read the symlink '%s'", x->name);
		x->buf[n] = '\0';
		archive_entry_set_symlink(x->ae, x->buf);
	}
	if (fd >= 0) {
		r = exp_xattrs(x, fd, NULL, &opq);
	} else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, nm);
		r = exp_xattrs(x, -1, proc, &opq);
	}
	if (r == 0 && fd >= 0)
		r = exp_sparse(x, fd, st);
	if (r == 0)
		r = exp_put(x);
	if (r == 0 && fd >= 0)
		r = exp_data(x, fd, st);
	return r < 0 ? r : exp_finish(x);
}

/* Write the directory dfd (st its stat) as x->name; opaque_file: it holds
 * the file form of the opaque mark, written as the xattr. */
static int exp_dir(struct exp *x, int dfd, const struct stat *st, bool opaque_file)
{
	bool had = false;
	int r;

	exp_entry(x, st);
	r = exp_xattrs(x, dfd, NULL, &had);
	if (r < 0)
		return r;
	if (x->raw && opaque_file && !had)
		archive_entry_xattr_add_entry(x->ae, OVL_OPAQUE, "y", 1);
	r = exp_put(x);
	return r < 0 ? r : exp_finish(x);
}

/* Is the directory opaque (the xattr, or the file form of the mark)?
 * *ret_file tells whether it has the file form. */
static bool dir_opaque(int dfd, bool *ret_file)
{
	struct stat st;
	char v[2];
	ssize_t n = fgetxattr(dfd, OVL_OPAQUE, v, sizeof(v));

	*ret_file = fstatat(dfd, WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
	return (n == 1 && v[0] == 'y') || *ret_file;
}

/* Stat name in dfd (not followed) into *st: -EXDEV when it is a mount
 * point or on another filesystem than its layer (dev), which an export
 * never enters: a bind of a folder of the same filesystem included. */
static int stat_here(int dfd, const char *name, dev_t dev, struct stat *st)
{
	struct statx sx;

	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	st->st_ino = sx.stx_ino;
	st->st_mode = sx.stx_mode;
	st->st_nlink = sx.stx_nlink;
	st->st_uid = sx.stx_uid;
	st->st_gid = sx.stx_gid;
	st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
	st->st_size = (off_t)sx.stx_size;
	st->st_blocks = (blkcnt_t)sx.stx_blocks;
	st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
	st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
	if (st->st_dev != dev ||
	    (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT && sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
		return -EXDEV;
	return 0;
}

/* One name of a directory as one layer has it: a real entry, or a
 * whiteout in the file form (".wh.NAME"). */
struct occ {
	char *name;
	size_t k;            /* the directory's index in the walk (0: topmost) */
	unsigned char type;  /* DT_*, or OCC_WH */
};
#define OCC_WH 255

static int occ_cmp(const void *a, const void *b)
{
	const struct occ *p = a, *q = b;
	int c = strcmp(p->name, q->name);

	if (c)
		return c;
	if (p->k != q->k)
		return p->k < q->k ? -1 : 1;
	return (p->type == OCC_WH) - (q->type == OCC_WH); /* a real entry first */
}

struct occs {
	struct occ *v;
	size_t n, cap;
};

static void occs_free(struct occs *o)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		free(o->v[i].name);
	free(o->v);
}

static int occs_read(struct exp *x, int dfd, size_t k, struct occs *o)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		r = ct_fail_errno(x->e, errno, "cannot read the directory '%s'", x->name);
		if (fd >= 0)
			(void)close(fd);
		return r;
	}
	while ((errno = 0, de = readdir(d))) {
		const char *nm = de->d_name;
		unsigned char type = de->d_type;

		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 || strcmp(nm, WH_OPAQUE) == 0)
			continue;
		if (strncmp(nm, WH_PREFIX, sizeof(WH_PREFIX) - 1) == 0) {
			nm += sizeof(WH_PREFIX) - 1;
			type = OCC_WH;
			if (!*nm)
				continue;
		}
		if (o->n == o->cap) {
			size_t cap = o->cap ? o->cap * 2 : 32;
			struct occ *v = realloc(o->v, cap * sizeof(*v));

			if (!v) {
				r = ct_fail(x->e, ENOMEM, "out of memory");
				break;
			}
			o->v = v;
			o->cap = cap;
		}
		o->v[o->n].name = strdup(nm);
		if (!o->v[o->n].name) {
			r = ct_fail(x->e, ENOMEM, "out of memory");
			break;
		}
		o->v[o->n].k = k;
		o->v[o->n].type = type;
		o->n++;
	}
	if (r == 0 && errno)
		r = ct_fail_errno(x->e, errno, "cannot read the directory '%s'", x->name);
	closedir(d);
	return r;
}

static int walk_dir(struct exp *x, const int *fds, const size_t *lay, size_t n);

/* Write one name of the directory fds[] (x->name already names it):
 * g[0..ng) are its occurrences, topmost first. */
static int walk_name(struct exp *x, const int *fds, const size_t *lay, const struct occ *g,
		     size_t ng)
{
	const struct occ *o = &g[0];
	int dfd = fds[o->k];
	int *cfds = NULL;
	size_t *clay = NULL, nc = 0, m;
	bool file_form = false;
	struct stat st;
	int r;

	if (o->type == OCC_WH) {
		char wh[NAME_MAX + 8];

		if (!x->raw)
			return 0; /* hidden */
		snprintf(wh, sizeof(wh), WH_PREFIX "%s", o->name);
		if (fstatat(dfd, wh, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return 0;
		st.st_mode = S_IFCHR;
		st.st_rdev = makedev(0, 0);
		exp_entry(x, &st);
		r = exp_put(x);
		return r < 0 ? r : exp_finish(x);
	}
	r = stat_here(dfd, o->name, x->devs[lay[o->k]], &st);
	if (r == -ENOENT)
		return 0; /* gone meanwhile */
	if (r == -EXDEV) {
		log_debug("skipping '%s': something is mounted there", x->name);
		return 0;
	}
	if (r < 0)
		return ct_fail_errno(x->e, -r, "cannot stat '%s'", x->name);
	if (!S_ISDIR(st.st_mode)) {
		if (!x->raw && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0))
			return 0; /* a whiteout hides the name */
		return exp_nondir(x, dfd, o->name, &st);
	}
	cfds = calloc(ng, sizeof(*cfds));
	clay = calloc(ng, sizeof(*clay));
	if (!cfds || !clay) {
		r = ct_fail(x->e, ENOMEM, "out of memory");
		goto out;
	}
	cfds[0] = openat(dfd, o->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfds[0] < 0) {
		r = errno == ENOENT ? 0 : ct_fail_errno(x->e, errno, "cannot open '%s'", x->name);
		goto out;
	}
	clay[0] = lay[o->k];
	nc = 1;
	/* the lower layers' directories of that name show through, down
	 * to an opaque one, a whiteout or anything but a directory */
	if (!dir_opaque(cfds[0], &file_form) && !x->raw) {
		for (m = 1; m < ng; m++) {
			const struct occ *lo = &g[m];
			struct stat ls;
			bool ff;

			if (lo->k == g[m - 1].k)
				continue; /* NAME and .wh.NAME in one layer: NAME counts */
			if (lo->type == OCC_WH || (lo->type != DT_DIR && lo->type != DT_UNKNOWN))
				break;
			if (stat_here(fds[lo->k], lo->name, x->devs[lay[lo->k]], &ls) < 0 ||
			    !S_ISDIR(ls.st_mode))
				break;
			cfds[nc] = openat(fds[lo->k], lo->name,
					  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfds[nc] < 0) {
				r = ct_fail_errno(x->e, errno, "cannot open '%s' in a lower layer",
						  x->name);
				goto out;
			}
			clay[nc] = lay[lo->k];
			nc++;
			if (dir_opaque(cfds[nc - 1], &ff))
				break;
		}
	}
	r = exp_dir(x, cfds[0], &st, file_form);
	if (r == 0)
		r = walk_dir(x, cfds, clay, nc);
out:
	for (m = 0; m < nc; m++)
		(void)close(cfds[m]);
	free(cfds);
	free(clay);
	return r;
}

/* Write what the directory shows: fds[0..n) are it in the layers that
 * make it, topmost first (lay[] their layer indexes); x->name names it. */
static int walk_dir(struct exp *x, const int *fds, const size_t *lay, size_t n)
{
	size_t len = strlen(x->name), i, j, k;
	struct occs o = { 0 };
	int r = 0;

	for (k = 0; k < n && r == 0; k++)
		r = occs_read(x, fds[k], k, &o);
	if (r == 0 && o.n)
		qsort(o.v, o.n, sizeof(*o.v), occ_cmp);
	for (i = 0; r == 0 && i < o.n; i = j) {
		for (j = i + 1; j < o.n && strcmp(o.v[j].name, o.v[i].name) == 0; j++)
			;
		if (arc_signal) {
			r = ct_fail(x->e, EINTR, "interrupted");
			break;
		}
		if (len + 1 + strlen(o.v[i].name) >= sizeof(x->name)) {
			r = ct_fail(x->e, ENAMETOOLONG, "a name below '%s' is too long", x->name);
			break;
		}
		x->name[len] = '/';
		strcpy(x->name + len + 1, o.v[i].name);
		r = walk_name(x, fds, lay, o.v + i, j - i);
		x->name[len] = '\0';
	}
	occs_free(&o);
	return r;
}

/* Write the tree of the layer roots roots[0..n) (topmost first; lay[]
 * their layer indexes) under the name base. */
static int exp_tree(struct exp *x, const int *roots, const size_t *lay, size_t n, const char *base)
{
	struct stat st;
	bool file_form = false, ff;
	size_t nc = 1;
	int r;

	snprintf(x->name, sizeof(x->name), "%s", base);
	if (fstat(roots[0], &st) < 0)
		return ct_fail_errno(x->e, errno, "cannot stat a layer");
	(void)dir_opaque(roots[0], &file_form);
	while (!x->raw && nc < n && !dir_opaque(roots[nc - 1], &ff))
		nc++;
	r = exp_dir(x, roots[0], &st, file_form);
	return r < 0 ? r : walk_dir(x, roots, lay, nc);
}

/* The manifest of a --layers export (see tarball.h). */
static char *manifest_text(const struct arc_stack *stk, const size_t *present, size_t n)
{
	char *text = NULL, *c;
	size_t len = 0, i, lines = 0;
	FILE *f = open_memstream(&text, &len);
	const char *cfg = stk->config ? stk->config : "";

	if (!f)
		return NULL;
	fprintf(f, "%s %d\nsource %s\nlayers %zu\n", ARC_MANIFEST, ARC_FORMAT,
		stk->source ? stk->source : "-", n);
	for (i = 0; i < n; i++) {
		const char *o = stk->layers[present[i]].origin;

		fprintf(f, "layer %zu ", i + 1);
		for (c = (char *)(o ? o : "-"); *c; c++)
			fputc(*c == '\n' || *c == '\r' ? ' ' : *c, f);
		fputc('\n', f);
	}
	for (c = (char *)cfg; *c; c++)
		if (*c == '\n' || !c[1])
			lines++;
	fprintf(f, "config %zu\n%s", lines, cfg);
	if (*cfg && cfg[strlen(cfg) - 1] != '\n')
		fputc('\n', f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static int exp_manifest(struct exp *x, const char *text)
{
	struct stat st = { .st_mode = S_IFREG | 0644, .st_size = (off_t)strlen(text) };
	int r;

	st.st_mtim.tv_sec = time(NULL);
	snprintf(x->name, sizeof(x->name), "%s", ARC_MANIFEST);
	exp_entry(x, &st);
	r = exp_put(x);
	if (r == 0 && archive_write_data(x->a, text, strlen(text)) < 0)
		r = exp_werr(x);
	return r < 0 ? r : exp_finish(x);
}

/* Open where the archive goes: stdout, the file itself when it is not a
 * regular file (a pipe, a device), else a temporary file beside it
 * (*ret_tmp) that is renamed over it once complete. */
static int out_open(const char *file, char **ret_tmp, struct ct_err *e)
{
	_cleanup_free_ char *tmp = NULL;
	struct stat st;
	const char *slash;
	mode_t um;
	int fd;

	*ret_tmp = NULL;
	if (strcmp(file, "-") == 0)
		return STDOUT_FILENO;
	if (stat(file, &st) == 0 && !S_ISREG(st.st_mode)) {
		fd = open(file, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		return fd < 0 ? ct_fail_errno(e, errno, "cannot open '%s'", file) : fd;
	}
	slash = strrchr(file, '/');
	tmp = slash ? xasprintf("%.*s/.%s.XXXXXX", (int)(slash - file), file, slash + 1)
		    : xasprintf(".%s.XXXXXX", file);
	if (!tmp)
		return ct_fail(e, ENOMEM, "out of memory");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot create a file beside '%s'", file);
	um = umask(0);
	umask(um);
	(void)fchmod(fd, 0666 & ~um);
	*ret_tmp = TAKE_PTR(tmp);
	return fd;
}

/* zstd compresses on every CPU (libarchive >= 3.6 takes the option; an
 * older one compresses on one). */
static void zstd_threads(struct archive *a)
{
	char n[24];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	snprintf(n, sizeof(n), "%ld", cpus > 1 ? cpus : 1);
	(void)archive_write_set_filter_option(a, "zstd", "threads", n);
}

static int exp_open_writer(struct exp *x, int fd, enum arc_compress c)
{
	const char *m;
	int r;

	x->a = archive_write_new();
	x->ae = archive_entry_new();
	if (!x->a || !x->ae)
		return ct_fail(x->e, ENOMEM, "out of memory");
	/* pax: exact mtimes, xattrs, sparse files, long names */
	r = archive_write_set_format_pax(x->a);
	if (r == ARCHIVE_OK && c == ARC_GZIP)
		r = archive_write_add_filter_gzip(x->a);
	if (r == ARCHIVE_OK && c == ARC_ZSTD) {
		r = archive_write_add_filter_zstd(x->a);
		zstd_threads(x->a);
	}
	/* a warning: the library lacks the compression, its program does it */
	if (r >= ARCHIVE_WARN && archive_write_open_fd(x->a, fd) == ARCHIVE_OK)
		return 0;
	m = archive_error_string(x->a);
	return ct_fail(x->e, EIO, "cannot start the archive: %s", m ? m : "unknown error");
}

int arc_export(const struct arc_stack *stk, bool layers, const char *file, enum arc_compress c,
	       struct arc_stats *ret, struct ct_err *e)
{
	struct arc_stats stats = { 0 };
	struct exp x = { .raw = layers, .st = &stats, .e = e };
	_cleanup_free_ char *tmp = NULL, *manifest = NULL;
	_cleanup_free_ int *roots = NULL;
	_cleanup_free_ size_t *present = NULL, *lay = NULL;
	_cleanup_free_ dev_t *devs = NULL;
	size_t n = 0, i;
	struct stat st;
	int fd = -1, r;

	r = arc_load(e);
	if (r < 0)
		return r;
	arc_raise_nofile();
	arc_utf8_names();
	roots = calloc(stk->n + 1, sizeof(*roots));
	present = calloc(stk->n + 1, sizeof(*present));
	lay = calloc(stk->n + 1, sizeof(*lay));
	devs = calloc(stk->n + 1, sizeof(*devs));
	x.buf = malloc(ARC_BUF);
	x.xv = malloc(XATTR_SIZE_MAX);
	x.xl_cap = 4096;
	x.xl = malloc(x.xl_cap);
	if (!roots || !present || !lay || !devs || !x.buf || !x.xv || !x.xl) {
		r = ct_fail(e, ENOMEM, "out of memory");
		goto out;
	}
	/* the layers there are, bottom first */
	for (i = 0; i < stk->n; i++) {
		if (!stk->layers[i].dir)
			continue;
		roots[n] = open(stk->layers[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (roots[n] < 0 || fstat(roots[n], &st) < 0) {
			r = ct_fail_errno(e, errno, "cannot open the layer '%s'", stk->layers[i].dir);
			goto out;
		}
		devs[n] = st.st_dev;
		present[n++] = i;
	}
	if (n == 0) {
		r = ct_fail(e, ENOENT, "no layer to export");
		goto out;
	}
	x.devs = devs;
	if (layers) {
		manifest = manifest_text(stk, present, n);
		if (!manifest) {
			r = ct_fail(e, ENOMEM, "out of memory");
			goto out;
		}
	}
	fd = out_open(file, &tmp, e);
	if (fd < 0) {
		r = fd;
		goto out;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		x.out_known = true;
		x.out_dev = st.st_dev;
		x.out_ino = st.st_ino;
	}
	r = exp_open_writer(&x, fd, c);
	if (r == 0 && layers) {
		r = exp_manifest(&x, manifest);
		for (i = 0; r == 0 && i < n; i++) {
			char base[32];

			snprintf(base, sizeof(base), "layers/%zu", i + 1);
			lay[0] = i;
			links_free(&x.links); /* a hard link never spans two layers */
			r = exp_tree(&x, &roots[i], lay, 1, base);
		}
	} else if (r == 0) {
		int *top = calloc(n, sizeof(*top));

		if (!top) {
			r = ct_fail(e, ENOMEM, "out of memory");
		} else {
			for (i = 0; i < n; i++) {
				top[i] = roots[n - 1 - i];
				lay[i] = n - 1 - i;
			}
			r = exp_tree(&x, top, lay, n, ".");
			free(top);
		}
	}
	if (r == 0 && archive_write_close(x.a) != ARCHIVE_OK) {
		const char *m = archive_error_string(x.a);

		r = ct_fail(e, EIO, "cannot write '%s': %s", file, m ? m : "unknown error");
	}
	if (r == 0 && tmp && fd != STDOUT_FILENO && close(TAKE_FD(fd)) < 0)
		r = ct_fail_errno(e, errno, "cannot write '%s'", file);
	if (r == 0 && tmp && rename(tmp, file) < 0)
		r = ct_fail_errno(e, errno, "cannot rename '%s' to '%s'", tmp, file);
	if (r == 0) {
		stats.layers = layers ? n : 1;
		*ret = stats;
	}
out:
	if (x.a)
		archive_write_free(x.a); /* closes it first when still open */
	if (x.ae)
		archive_entry_free(x.ae);
	if (fd >= 0 && fd != STDOUT_FILENO)
		(void)close(fd);
	if (r < 0 && tmp)
		(void)unlink(tmp);
	for (i = 0; roots && i < n; i++)
		(void)close(roots[i]);
	links_free(&x.links);
	free(x.buf);
	free(x.xv);
	free(x.xl);
	free(x.map);
	return r;
}
