/* tar import into staged layers, refusing hostile archives (see
 * tarball.h for the rules). */
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
 * Import */

struct dtime {
	size_t layer;
	char *path;             /* "" for the layer's root */
	struct timespec ts[2];
};

struct imp {
	struct archive *a;
	struct store *s;
	struct arc_import *im;
	const char *file;
	bool trusted;
	int *roots;             /* each layer's staging dir, O_RDONLY */
	char *cpath;            /* the last directory opened (cfd) */
	size_t clayer;
	int cfd;
	bool csgid;             /* it is set-group-ID: what is made in it takes its group */
	uid_t euid;
	gid_t egid;
	struct dtime *dt;       /* directory times, set once all is written */
	size_t ndt, capdt;
	const char *ename;      /* the entry being read, as the archive names it */
	int fd;                 /* the archive */
	char *rbuf;             /* ARC_BUF bytes read from it */
	struct ct_err *e;
};

/* Refuse the current entry: -EPERM, "entry 'NAME': why". */
static int refuse(struct imp *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct imp *x, const char *fmt, ...)
{
	char name[160], why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	arc_printable(x->ename ? x->ename : "?", name, sizeof(name));
	return ct_fail(x->e, EPERM, "entry '%s': %s", name, why);
}

/* The same for a system error (code an errno): "entry 'NAME': what: strerror". */
static int imp_fail(struct imp *x, int code, const char *what)
{
	char name[160];

	arc_printable(x->ename ? x->ename : "?", name, sizeof(name));
	return ct_fail_errno(x->e, code, "entry '%s': %s", name, what);
}

static int imp_rerr(struct imp *x)
{
	const char *m = archive_error_string(x->a);
	char name[160];

	if (arc_signal)
		return ct_fail(x->e, EINTR, "interrupted");
	if (!x->ename)
		return ct_fail(x->e, EIO, "cannot read '%s': %s", x->file, m ? m : "unknown error");
	arc_printable(x->ename, name, sizeof(name));
	return ct_fail(x->e, EIO, "cannot read '%s' at the entry '%s': %s", x->file, name,
		       m ? m : "unknown error");
}

/* The entry's name (or, target, its hard link's target) cleaned: no "."
 * components, no "//", no trailing '/'; "" for the top. An absolute name
 * or a ".." component is refused. */
static int name_clean(struct imp *x, const char *in, bool target, char **ret)
{
	_cleanup_free_ char *out = NULL;
	const char *p = in;
	char what[200] = "its name ";
	size_t n = 0;

	if (target) {
		char shown[160];

		arc_printable(in, shown, sizeof(shown));
		snprintf(what, sizeof(what), "its hard link target '%s' ", shown);
	}
	if (!*in)
		return refuse(x, "%sis empty", what);
	if (*in == '/')
		return refuse(x, "%sis absolute", what);
	out = malloc(strlen(in) + 1);
	if (!out)
		return ct_fail(x->e, ENOMEM, "out of memory");
	while (*p) {
		size_t len = strcspn(p, "/");

		if (len == 2 && p[0] == '.' && p[1] == '.')
			return refuse(x, "%sleads out of the tree (a '..' component)", what);
		if (len > NAME_MAX)
			return refuse(x, "%shas a component longer than %d bytes", what, NAME_MAX);
		if (len && !(len == 1 && p[0] == '.')) {
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
		while (*p == '/')
			p++;
	}
	if (n >= PATH_MAX)
		return refuse(x, "%sis longer than %d bytes", what, PATH_MAX - 1);
	out[n] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

/* In a --layers archive: which layer (0 = bottom) a cleaned name belongs
 * to, and its path inside it (*ret_rel NULL: the "layers" folder itself,
 * or the top, which carry nothing). */
static int layer_split(struct imp *x, const char *path, size_t *ret_layer, const char **ret_rel)
{
	const char *p;
	char *end;
	unsigned long l;

	*ret_rel = NULL;
	if (!*path || strcmp(path, "layers") == 0)
		return 0;
	if (strncmp(path, "layers/", 7) != 0)
		return refuse(x, "outside 'layers/' in a layers archive");
	p = path + 7;
	if (*p < '1' || *p > '9')
		return refuse(x, "not in a layer of the archive");
	errno = 0;
	l = strtoul(p, &end, 10);
	if (errno || (*end && *end != '/') || l == 0 || l > x->im->n)
		return refuse(x, "not in a layer of the archive (it has %zu)", x->im->n);
	*ret_layer = (size_t)l - 1;
	*ret_rel = *end ? end + 1 : end;
	return 0;
}

/* dir ("" = the root) of layer l as an fd borrowed from the cache, never
 * through a symlink: a component that is a symlink or no directory is
 * refused. Missing directories are made (0755, as tar makes them) when
 * create, else -ENOENT. */
static int dir_get(struct imp *x, size_t l, const char *dir, bool create, int *ret)
{
	_cleanup_free_ char *copy = NULL, *shown = NULL;
	_cleanup_close_ int fd = -1;
	char *comp, *save = NULL;
	struct stat st;

	if (x->cfd >= 0 && x->clayer == l && strcmp(x->cpath, dir) == 0) {
		*ret = x->cfd;
		return 0;
	}
	copy = strdup(dir);
	shown = strdup(dir);
	if (!copy || !shown)
		return ct_fail(x->e, ENOMEM, "out of memory");
	fd = fcntl(x->roots[l], F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return ct_fail_errno(x->e, errno, "cannot duplicate a staging fd");
	for (comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST)
				return imp_fail(x, errno, "cannot make its directory");
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (nfd < 0 && (errno == ELOOP || errno == ENOTDIR)) {
			shown[comp - copy + strlen(comp)] = '\0';
			return refuse(x, "'%s' is a symlink or not a directory: nothing is "
				      "written through it", shown);
		}
		if (nfd < 0 && errno == ENOENT)
			return -ENOENT;
		if (nfd < 0)
			return imp_fail(x, errno, "cannot open its directory");
		(void)close(fd);
		fd = nfd;
	}
	if (fstat(fd, &st) < 0)
		return imp_fail(x, errno, "cannot stat its directory");
	free(x->cpath);
	if (x->cfd >= 0)
		(void)close(x->cfd);
	x->csgid = st.st_mode & S_ISGID;
	x->cpath = TAKE_PTR(shown);
	strcpy(x->cpath, dir);
	x->clayer = l;
	x->cfd = TAKE_FD(fd);
	*ret = x->cfd;
	return 0;
}

/* Split rel into its directory (dir, a copy the caller frees) and its
 * last component (*ret_base, inside rel). */
static int split_dir(struct imp *x, const char *rel, char **ret_dir, const char **ret_base)
{
	const char *slash = strrchr(rel, '/');

	*ret_dir = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("");
	*ret_base = slash ? slash + 1 : rel;
	return *ret_dir ? 0 : ct_fail(x->e, ENOMEM, "out of memory");
}

/* base is in pfd already: an entry that appears again replaces what an
 * earlier one made (the later wins, as tar has it), but a directory
 * stays one: a directory again only updates it (*ret_isdir), and a
 * directory against anything else is a conflict. */
static int make_room(struct imp *x, int pfd, const char *base, bool dir, bool *ret_isdir)
{
	struct stat st;

	*ret_isdir = false;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : imp_fail(x, errno, "cannot stat");
	if (S_ISDIR(st.st_mode) != dir)
		return refuse(x, "an earlier entry of that name is %sa directory", dir ? "not " : "");
	if (dir) {
		*ret_isdir = true;
		return 0;
	}
	if (unlinkat(pfd, base, 0) < 0)
		return imp_fail(x, errno, "cannot replace an earlier entry of that name");
	return 0;
}

/* Make base in pfd as the entry says, with its permissions (the umask
 * is 0 meanwhile): a directory or a regular file is opened in *ret_fd.
 * When the name is taken, make_room decides. *ret_fresh: made now, so
 * owned by us (unless its folder is set-group-ID) with its mode. */
static int make_node(struct imp *x, struct archive_entry *ae, int pfd, const char *base,
		     int *ret_fd, bool *ret_fresh)
{
	mode_t type = archive_entry_filetype(ae), perm = archive_entry_mode(ae) & 0777;
	bool isdir = false;
	int fd = -1, r, tries;

	for (tries = 0;; tries++) {
		switch (type) {
		case AE_IFDIR:
			r = mkdirat(pfd, base, perm);
			break;
		case AE_IFREG:
			fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				    perm);
			r = fd < 0 ? -1 : 0;
			break;
		case AE_IFLNK:
			r = symlinkat(archive_entry_symlink(ae), pfd, base);
			break;
		default: /* devices (checked) and fifos */
			r = mknodat(pfd, base, type | perm, archive_entry_rdev(ae));
			break;
		}
		if (r == 0 || errno != EEXIST || tries > 0)
			break;
		r = make_room(x, pfd, base, type == AE_IFDIR, &isdir);
		if (r < 0)
			return r;
		if (isdir)
			break;
	}
	if (r < 0)
		return imp_fail(x, errno, "cannot make it");
	if (type == AE_IFDIR) {
		fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return imp_fail(x, errno, "cannot open the directory");
	}
	*ret_fd = fd;
	*ret_fresh = !isdir && !x->csgid;
	return 0;
}

/* Is xattr name of an entry (a directory when dir) written (1), dropped
 * (0), or refused? Untrusted archives may carry user.* and POSIX ACLs;
 * a --layers one also the opaque marks of its directories. With trust,
 * anything but the overlay's private xattrs (which describe another
 * machine's filesystem) is written. */
static int xattr_rule(struct imp *x, const char *name, const void *v, size_t len, bool dir)
{
	if (strncmp(name, OVL_OWN_PREFIX, sizeof(OVL_OWN_PREFIX) - 1) == 0)
		return 0;
	if (strncmp(name, "user.", 5) == 0 || strcmp(name, "system.posix_acl_access") == 0 ||
	    strcmp(name, "system.posix_acl_default") == 0)
		return 1;
	if (strcmp(name, OVL_OPAQUE) == 0 && x->im->stacked && dir && len == 1 &&
	    *(const char *)v == 'y')
		return 1;
	if (!x->trusted) {
		char shown[80];

		arc_printable(name, shown, sizeof(shown));
		return refuse(x, "the xattr '%s' is only taken with --trusted", shown);
	}
	return strncmp(name, OVL_PREFIX, sizeof(OVL_PREFIX) - 1) == 0 ? 0 : 1;
}

/* Check what the entry would make, before anything of it is written. */
static int entry_check(struct imp *x, struct archive_entry *ae)
{
	mode_t type = archive_entry_filetype(ae), perm = archive_entry_mode(ae) & 07777;
	int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);
	const char *name;
	const void *v;
	size_t len;
	int r;

	switch (type) {
	case AE_IFREG: case AE_IFDIR: case AE_IFLNK: case AE_IFIFO:
		break;
	case AE_IFCHR: case AE_IFBLK:
		if (type == AE_IFCHR && archive_entry_rdev(ae) == makedev(0, 0))
			break; /* a whiteout */
		if (!x->trusted)
			return refuse(x, "a device node is only taken with --trusted");
		break;
	default:
		return refuse(x, "a file type ctool does not import (socket or unknown)");
	}
	if (type != AE_IFDIR && (perm & (S_ISUID | S_ISGID)) && !x->trusted)
		return refuse(x, "set-user-ID or set-group-ID files are only taken with --trusted");
	if (uid < 0 || uid >= UINT32_MAX || gid < 0 || gid >= UINT32_MAX)
		return refuse(x, "its owner is out of range");
	if (type == AE_IFLNK && (!archive_entry_symlink(ae) || !*archive_entry_symlink(ae)))
		return refuse(x, "a symlink without a target");
	archive_entry_xattr_reset(ae);
	while (archive_entry_xattr_next(ae, &name, &v, &len) == ARCHIVE_OK) {
		r = xattr_rule(x, name, v, len, type == AE_IFDIR);
		if (r < 0)
			return r;
		if (len > XATTR_SIZE_MAX)
			return refuse(x, "an xattr is too large");
	}
	return 0;
}

/* The entry's atime and mtime (its mtime for both when it has no atime). */
static void entry_times(struct archive_entry *ae, struct timespec ts[2])
{
	ts[1].tv_sec = archive_entry_mtime_is_set(ae) ? archive_entry_mtime(ae) : time(NULL);
	ts[1].tv_nsec = archive_entry_mtime_is_set(ae) ? archive_entry_mtime_nsec(ae) : 0;
	ts[0] = ts[1];
	if (archive_entry_atime_is_set(ae)) {
		ts[0].tv_sec = archive_entry_atime(ae);
		ts[0].tv_nsec = archive_entry_atime_nsec(ae);
	}
}

/* Owner, mode and xattrs of what the entry made: through fd, or (fd < 0)
 * base in pfd (a symlink when link), never followed. Then its times,
 * except a directory's (set at the end, when nothing more is put in). */
static int meta_apply(struct imp *x, struct archive_entry *ae, int fd, int pfd, const char *base,
		      bool link, bool dir, bool fresh)
{
	uid_t uid = (uid_t)archive_entry_uid(ae);
	gid_t gid = (gid_t)archive_entry_gid(ae);
	mode_t perm = archive_entry_mode(ae) & 07777;
	bool owned = fresh && uid == x->euid && gid == x->egid;
	struct timespec ts[2];
	char proc[64 + NAME_MAX];
	const char *name;
	const void *v;
	size_t len;

	if (fd < 0)
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", pfd, base);
	/* owner first: chown clears set-id bits and capabilities */
	if (!owned &&
	    (fd >= 0 ? fchown(fd, uid, gid) : fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW)) < 0)
		return imp_fail(x, errno, "cannot set its owner");
	if (!link && (!owned || (perm & 07000)) &&
	    (fd >= 0 ? fchmod(fd, perm) : fchmodat(pfd, base, perm, 0)) < 0)
		return imp_fail(x, errno, "cannot set its mode");
	archive_entry_xattr_reset(ae);
	while (archive_entry_xattr_next(ae, &name, &v, &len) == ARCHIVE_OK) {
		if (xattr_rule(x, name, v, len, dir) != 1)
			continue;
		if ((fd >= 0 ? fsetxattr(fd, name, v, len, 0) : lsetxattr(proc, name, v, len, 0)) < 0) {
			char shown[80], what[128];

			arc_printable(name, shown, sizeof(shown));
			snprintf(what, sizeof(what), "cannot set the xattr '%s'", shown);
			return imp_fail(x, errno, what);
		}
	}
	if (dir)
		return 0; /* see dtime_add */
	entry_times(ae, ts);
	if ((fd >= 0 ? futimens(fd, ts) : utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW)) < 0)
		return imp_fail(x, errno, "cannot set its times");
	return 0;
}

/* Remember the times of the directory path of layer l (the entry ae). */
static int dtime_add(struct imp *x, size_t l, const char *path, struct archive_entry *ae)
{
	struct dtime *d;

	if (x->ndt == x->capdt) {
		size_t cap = x->capdt ? x->capdt * 2 : 256;

		d = realloc(x->dt, cap * sizeof(*d));
		if (!d)
			return ct_fail(x->e, ENOMEM, "out of memory");
		x->dt = d;
		x->capdt = cap;
	}
	d = &x->dt[x->ndt];
	d->path = strdup(path);
	if (!d->path)
		return ct_fail(x->e, ENOMEM, "out of memory");
	d->layer = l;
	entry_times(ae, d->ts);
	x->ndt++;
	return 0;
}

/* Write p[0..n) at off in fd. */
static int pwrite_all(struct imp *x, int fd, const void *p, size_t n, off_t off, uint64_t *bytes)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0 && errno == EINTR && !arc_signal)
			continue;
		if (w < 0)
			return arc_signal ? ct_fail(x->e, EINTR, "interrupted")
					  : imp_fail(x, errno, "cannot write");
		p = (const char *)p + w;
		n -= (size_t)w;
		off += w;
		*bytes += (uint64_t)w;
	}
	return 0;
}

/* Write the data of a regular file: from the archive, or data[0..len)
 * when data. Sparse entries come in pieces at their offsets; a hole at
 * the end is made by setting the size. */
static int write_data(struct imp *x, struct archive_entry *ae, int fd, const char *data,
		      size_t len, uint64_t *bytes)
{
	la_int64_t off = 0, end = (la_int64_t)len;
	const void *p;
	size_t n;
	int r;

	if (data) {
		r = pwrite_all(x, fd, data, len, 0, bytes);
		if (r < 0)
			return r;
	} else {
		while ((r = archive_read_data_block(x->a, &p, &n, &off)) != ARCHIVE_EOF) {
			if (r != ARCHIVE_OK)
				return imp_rerr(x);
			r = pwrite_all(x, fd, p, n, off, bytes);
			if (r < 0)
				return r;
			if (off + (la_int64_t)n > end)
				end = off + (la_int64_t)n;
		}
	}
	if (archive_entry_size_is_set(ae) && archive_entry_size(ae) != end &&
	    ftruncate(fd, archive_entry_size(ae)) < 0)
		return imp_fail(x, errno, "cannot set its size");
	return 0;
}

static int imp_hardlink(struct imp *x, size_t l, const char *rel, const char *target)
{
	_cleanup_free_ char *tpath = NULL, *tdir = NULL, *dir = NULL;
	_cleanup_close_ int tfd = -1;
	const char *trel, *tbase, *base;
	char shown[160];
	size_t tl = l;
	struct stat tst, st;
	int pfd, r;

	r = name_clean(x, target, true, &tpath);
	if (r < 0)
		return r;
	if (x->im->stacked) {
		r = layer_split(x, tpath, &tl, &trel);
		if (r < 0)
			return r;
		if (!trel || tl != l)
			return refuse(x, "a hard link to another layer");
	} else {
		trel = tpath;
	}
	arc_printable(trel, shown, sizeof(shown));
	if (strcmp(trel, rel) == 0)
		return 0; /* a link to itself: there already */
	if (!*trel)
		return refuse(x, "a hard link to a directory");
	r = split_dir(x, trel, &tdir, &tbase);
	if (r == 0)
		r = dir_get(x, l, tdir, false, &pfd);
	if (r == -ENOENT)
		return refuse(x, "a hard link to '%s', which no earlier entry made", shown);
	if (r < 0)
		return r;
	tfd = fcntl(pfd, F_DUPFD_CLOEXEC, 3);
	if (tfd < 0)
		return imp_fail(x, errno, "cannot duplicate an fd");
	if (fstatat(tfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return refuse(x, "a hard link to '%s', which no earlier entry made", shown);
		return imp_fail(x, errno, "cannot stat its target");
	}
	if (S_ISDIR(tst.st_mode))
		return refuse(x, "a hard link to a directory");
	r = split_dir(x, rel, &dir, &base);
	if (r == 0)
		r = dir_get(x, l, dir, true, &pfd);
	if (r < 0)
		return r;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == tst.st_dev &&
	    st.st_ino == tst.st_ino)
		return 0; /* linked already */
	r = make_room(x, pfd, base, false, &(bool){ false });
	if (r < 0)
		return r;
	/* never AT_SYMLINK_FOLLOW: a link to a symlink is a link to it */
	if (linkat(tfd, tbase, pfd, base, 0) < 0)
		return imp_fail(x, errno, "cannot make the hard link");
	return 0;
}

/* Extract one entry (data, when not NULL, replaces the archive's). */
static int imp_entry(struct imp *x, struct archive_entry *ae, const char *data, size_t len)
{
	_cleanup_free_ char *path = NULL, *dir = NULL;
	_cleanup_close_ int fd = -1;
	const char *rel, *base, *hl = archive_entry_hardlink(ae);
	mode_t type = archive_entry_filetype(ae);
	size_t l = 0;
	bool fresh = false;
	int pfd, r;

	r = name_clean(x, x->ename, false, &path);
	if (r < 0)
		return r;
	rel = path;
	if (x->im->stacked) {
		r = layer_split(x, path, &l, &rel);
		if (r < 0 || !rel)
			return r;
	}
	x->im->stats.entries++;
	if (!*rel && (hl || type != AE_IFDIR))
		return refuse(x, "the top of a tree must be a directory");
	if (hl)
		return imp_hardlink(x, l, rel, hl); /* its inode is the target's: nothing more */
	r = entry_check(x, ae);
	if (r < 0)
		return r;
	if (!*rel) {
		/* the top: the staging dir itself */
		r = meta_apply(x, ae, x->roots[l], -1, NULL, false, true, false);
		return r < 0 ? r : dtime_add(x, l, "", ae);
	}
	r = split_dir(x, rel, &dir, &base);
	if (r == 0)
		r = dir_get(x, l, dir, true, &pfd);
	if (r == 0)
		r = make_node(x, ae, pfd, base, &fd, &fresh);
	if (r < 0)
		return r;
	if (type == AE_IFREG) {
		uint64_t bytes = 0;

		r = write_data(x, ae, fd, data, len, &bytes);
		x->im->stats.bytes += bytes;
		if (r < 0)
			return r;
	}
	r = meta_apply(x, ae, fd, pfd, base, type == AE_IFLNK, type == AE_IFDIR, fresh);
	if (r == 0 && type == AE_IFDIR)
		r = dtime_add(x, l, rel, ae);
	return r;
}

/* Parse the manifest of a --layers archive (text, modified) into im:
 * its layers (their origins) and config. */
static int manifest_parse(struct imp *x, char *text)
{
	struct arc_import *im = x->im;
	char *line = text, *next, *end;
	unsigned long v, n = 0, seen = 0, cfg = 0;
	size_t clen = 0;

	for (; *line; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = '\0';
		if (cfg) {
			size_t ll = strlen(line);
			char *c = realloc(im->config, clen + ll + 2);

			if (!c)
				return ct_fail(x->e, ENOMEM, "out of memory");
			memcpy(c + clen, line, ll);
			clen += ll;
			c[clen++] = '\n';
			c[clen] = '\0';
			im->config = c;
			cfg--;
		} else if (line == text) {
			if (sscanf(line, ARC_MANIFEST " %lu", &v) != 1)
				return refuse(x, "not a manifest of ctool");
			if (v > ARC_FORMAT)
				return ct_fail(x->e, EPROTO, "'%s' is of layers format %lu; this ctool "
					       "reads format %d (update it)", x->file, v, ARC_FORMAT);
		} else if (strncmp(line, "layers ", 7) == 0) {
			n = strtoul(line + 7, &end, 10);
			if (*end || n == 0 || n > ARC_MAX_LAYERS || im->layers)
				return refuse(x, "a bad layer count");
			im->layers = calloc(n, sizeof(*im->layers));
			if (!im->layers)
				return ct_fail(x->e, ENOMEM, "out of memory");
			for (v = 0; v < n; v++)
				im->layers[v].lockfd = -1;
			im->n = n;
		} else if (strncmp(line, "layer ", 6) == 0) {
			v = strtoul(line + 6, &end, 10);
			if (!im->layers || v != seen + 1 || v > n || *end != ' ')
				return refuse(x, "a bad layer line");
			im->layers[seen].origin = strndup(end + 1, 511);
			if (!im->layers[seen].origin)
				return ct_fail(x->e, ENOMEM, "out of memory");
			seen++;
		} else if (strncmp(line, "config ", 7) == 0) {
			cfg = strtoul(line + 7, &end, 10);
			if (*end || cfg > 100000)
				return refuse(x, "a bad config line");
		}
	}
	if (!im->layers || seen != n || cfg)
		return refuse(x, "an incomplete manifest (%lu of %lu layers)", seen, n);
	return 0;
}

/* Take a staging dir for layer i. */
static int stage_new(struct imp *x, size_t i)
{
	struct arc_staged *st = &x->im->layers[i];
	int r;

	r = store_tmp_new(x->s, &st->path, &st->lockfd, x->e);
	if (r < 0)
		return r;
	st->lock = xasprintf("%s.lock", st->path);
	if (!st->lock)
		return ct_fail(x->e, ENOMEM, "out of memory");
	snprintf(st->id, sizeof(st->id), "%s", strrchr(st->path, '/') + 1);
	x->roots[i] = open(st->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (x->roots[i] < 0)
		return ct_fail_errno(x->e, errno, "cannot open '%s'", st->path);
	return 0;
}

/* The first entry: the manifest makes the import stacked (*ret_skip:
 * it is not extracted). Else a plain tar of one layer; an entry of the
 * manifest's name that holds something else is extracted from the data
 * read already (*ret_data, *ret_len). Then the staging dirs are made. */
static int imp_first(struct imp *x, struct archive_entry *ae, bool *ret_skip, char **ret_data,
		     size_t *ret_len)
{
	_cleanup_free_ char *text = NULL;
	la_int64_t size = archive_entry_size(ae);
	size_t got = 0, i;
	int r;

	*ret_skip = false;
	if (x->ename && strcmp(x->ename, ARC_MANIFEST) == 0 &&
	    archive_entry_filetype(ae) == AE_IFREG && !archive_entry_hardlink(ae) && size >= 0 &&
	    size <= (1 << 20)) {
		text = malloc((size_t)size + 1);
		if (!text)
			return ct_fail(x->e, ENOMEM, "out of memory");
		while (got < (size_t)size) {
			la_ssize_t k = archive_read_data(x->a, text + got, (size_t)size - got);

			if (k < 0)
				return imp_rerr(x);
			if (k == 0)
				break;
			got += (size_t)k;
		}
		text[got] = '\0';
		if (strncmp(text, ARC_MANIFEST " ", sizeof(ARC_MANIFEST)) == 0) {
			x->im->stacked = *ret_skip = true;
			r = manifest_parse(x, text);
			if (r < 0)
				return r;
		} else {
			*ret_data = TAKE_PTR(text);
			*ret_len = got;
		}
	}
	if (!x->im->layers) {
		x->im->layers = calloc(1, sizeof(*x->im->layers));
		if (!x->im->layers)
			return ct_fail(x->e, ENOMEM, "out of memory");
		x->im->layers[0].lockfd = -1;
		x->im->n = 1;
	}
	x->roots = malloc(x->im->n * sizeof(*x->roots));
	if (!x->roots)
		return ct_fail(x->e, ENOMEM, "out of memory");
	for (i = 0; i < x->im->n; i++)
		x->roots[i] = -1;
	for (i = 0; i < x->im->n; i++) {
		r = stage_new(x, i);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Directory times, now that nothing more is put in them. */
static int imp_dtimes(struct imp *x)
{
	_cleanup_free_ char *dir = NULL;
	const char *base;
	size_t i;
	int pfd, r;

	for (i = 0; i < x->ndt; i++) {
		struct dtime *d = &x->dt[i];

		x->ename = d->path;
		if (!*d->path) {
			if (futimens(x->roots[d->layer], d->ts) < 0)
				return imp_fail(x, errno, "cannot set its times");
			continue;
		}
		free(dir);
		dir = NULL;
		r = split_dir(x, d->path, &dir, &base);
		if (r == 0)
			r = dir_get(x, d->layer, dir, false, &pfd);
		if (r < 0)
			return r == -ENOENT ? imp_fail(x, ENOENT, "gone") : r;
		if (utimensat(pfd, base, d->ts, AT_SYMLINK_NOFOLLOW) < 0)
			return imp_fail(x, errno, "cannot set its times");
	}
	x->ename = NULL;
	return 0;
}

/* The next header: 0, 1 at the end, or -errno. A warning (a name not in
 * UTF-8 kept as bytes, a malformed pax attribute left out) is no error:
 * the entry is checked as it comes. */
static int imp_next(struct imp *x, struct archive_entry **ae)
{
	int r = archive_read_next_header(x->a, ae);

	if (r == ARCHIVE_EOF)
		return 1;
	if (r == ARCHIVE_WARN) {
		const char *m = archive_error_string(x->a);

		log_debug("%s", m ? m : "warning");
		return 0;
	}
	return r == ARCHIVE_OK ? 0 : imp_rerr(x);
}

/* libarchive's read callback: as its own for fds, but a signal stops a
 * read that waits (a stalled pipe) instead of being retried. */
static la_ssize_t imp_read_cb(struct archive *a, void *data, const void **ret)
{
	struct imp *x = data;
	ssize_t n;

	do
		n = read(x->fd, x->rbuf, ARC_BUF);
	while (n < 0 && errno == EINTR && !arc_signal);
	if (n < 0) {
		int err = errno;

		archive_set_error(a, err, "%s", arc_signal ? "interrupted" : strerror(err));
		return -1;
	}
	*ret = x->rbuf;
	return n;
}

static int imp_open_reader(struct imp *x, int fd)
{
	x->a = archive_read_new();
	if (!x->a)
		return ct_fail(x->e, ENOMEM, "out of memory");
	/* tar only; the usual compressions (read by the library, or by
	 * their programs when it lacks one: a warning, not an error) */
	(void)archive_read_support_filter_gzip(x->a);
	(void)archive_read_support_filter_zstd(x->a);
	(void)archive_read_support_filter_xz(x->a);
	(void)archive_read_support_filter_bzip2(x->a);
	(void)archive_read_support_filter_lz4(x->a);
	x->fd = fd;
	x->rbuf = malloc(ARC_BUF);
	if (!x->rbuf)
		return ct_fail(x->e, ENOMEM, "out of memory");
	if (archive_read_support_format_tar(x->a) != ARCHIVE_OK ||
	    archive_read_open(x->a, x, NULL, imp_read_cb, NULL) != ARCHIVE_OK)
		return imp_rerr(x);
	return 0;
}

int arc_import(struct store *s, const char *file, bool trusted, struct arc_import *ret,
	       struct ct_err *e)
{
	struct arc_import im = { 0 };
	struct imp x = { .s = s, .im = &im, .file = file, .trusted = trusted, .cfd = -1, .e = e };
	_cleanup_free_ char *first_data = NULL;
	struct archive_entry *ae;
	size_t first_len = 0, i;
	bool skip = false;
	la_int64_t end = 0;
	mode_t um;
	int fd = STDIN_FILENO, r;

	r = arc_load(e);
	if (r < 0)
		return r;
	arc_raise_nofile();
	arc_utf8_names();
	if (strcmp(file, "-") != 0) {
		fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return ct_fail_errno(e, errno, "cannot open '%s'", file);
	}
	x.euid = geteuid();
	x.egid = getegid();
	um = umask(0); /* things are made with their modes */
	r = imp_open_reader(&x, fd);
	if (r == 0) {
		r = imp_next(&x, &ae);
		if (r == 1)
			r = ct_fail(e, EINVAL, "'%s' holds no entry", file);
	}
	if (r == 0) {
		x.ename = archive_entry_pathname(ae);
		r = imp_first(&x, ae, &skip, &first_data, &first_len);
	}
	while (r == 0) {
		x.ename = archive_entry_pathname(ae);
		if (arc_signal) {
			r = ct_fail(e, EINTR, "interrupted");
		} else if (!x.ename) {
			x.ename = "?";
			r = refuse(&x, "a name that cannot be read");
		} else if (!skip) {
			r = imp_entry(&x, ae, first_data, first_len);
		}
		free(first_data);
		first_data = NULL;
		skip = false;
		if (r < 0)
			break;
		x.ename = NULL;
		end = archive_filter_bytes(x.a, 0);
		r = imp_next(&x, &ae);
	}
	/* a tar ends with zero blocks: without them, it was cut between
	 * two entries */
	if (r == 1 && archive_filter_bytes(x.a, 0) < ((end + 511) & ~(la_int64_t)511) + 512)
		r = ct_fail(e, EIO, "cannot read '%s': it ends without the end-of-archive blocks "
			    "(cut short?)", file);
	if (r == 1)
		r = imp_dtimes(&x);
	for (i = 0; r == 0 && i < im.n; i++)
		im.layers[i].size = tree_bytes(im.layers[i].path); /* as 'images' counts */
	for (i = 0; r == 0 && i < im.n; i++)
		if (syncfs(x.roots[i]) < 0)
			r = ct_fail_errno(e, errno, "cannot sync '%s'", im.layers[i].path);
	umask(um);
	if (x.a)
		archive_read_free(x.a);
	free(x.rbuf);
	if (fd != STDIN_FILENO)
		(void)close(fd);
	if (x.cfd >= 0)
		(void)close(x.cfd);
	for (i = 0; x.roots && i < im.n; i++)
		if (x.roots[i] >= 0)
			(void)close(x.roots[i]);
	free(x.roots);
	free(x.cpath);
	for (i = 0; i < x.ndt; i++)
		free(x.dt[i].path);
	free(x.dt);
	if (r < 0) {
		arc_import_discard(&im);
		return r;
	}
	im.stats.layers = im.n;
	*ret = im;
	return 0;
}

static void staged_free(struct arc_import *im, bool remove)
{
	size_t i;

	for (i = 0; im->layers && i < im->n; i++) {
		struct arc_staged *st = &im->layers[i];
		bool gone = !st->path;

		if (st->path && remove) {
			struct ct_err e2 = { 0 };

			gone = rm_tree_onefs(AT_FDCWD, st->path, &e2) == 0;
			if (!gone)
				log_debug("'%s' left for gc: %s", st->path, e2.msg);
		}
		if (st->lock && gone)
			(void)unlink(st->lock);
		if (st->lockfd >= 0)
			(void)close(st->lockfd);
		free(st->path);
		free(st->lock);
		free(st->origin);
	}
	free(im->layers);
	free(im->config);
	memset(im, 0, sizeof(*im));
}

void arc_import_discard(struct arc_import *im)
{
	staged_free(im, true);
}

void arc_import_clear(struct arc_import *im)
{
	staged_free(im, false);
}
