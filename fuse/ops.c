/* The FUSE operations on existing files: lookup, attributes, data,
 * xattrs. The operations that change names are in ops-ns.c. Handlers
 * reply themselves; internal helpers return 0 or -errno. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "ovl.h"

/* Is xattr `name` one of overlayfs' own, or of the marks ctool writes
 * in their stead (hidden, never copied)? */
bool ops_xattr_private(const char *name)
{
	return !strncmp(name, OVL_XATTR_PREFIX, sizeof(OVL_XATTR_PREFIX) - 1) ||
	       !strncmp(name, OVL_XATTR_CTOOL_PREFIX, sizeof(OVL_XATTR_CTOOL_PREFIX) - 1);
}

/* The attributes the merged view shows for n, as the kernel's overlayfs
 * shows them: a merged directory reports one link; a copy keeps the
 * inode number of its origin (n->oino). st_dev is the mount's whatever
 * is put here. */
void ops_fix_stat(struct ovl_node *n, struct stat *st)
{
	if (S_ISDIR(st->st_mode) && n->last > n->layer)
		st->st_nlink = 1;
	if (n->oino)
		st->st_ino = n->oino;
}

/* How long the kernel may keep attributes st: several names may be one
 * file, and their attributes change together. */
double ops_attr_timeout(struct ovl_fs *fs, const struct stat *st)
{
	return (S_ISREG(st->st_mode) && st->st_nlink > 1) ? 0 : fs->timeout;
}

/* Fill *e for node n (already counted by node_get) with attributes st
 * of its object. */
void ops_fill_entry(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st,
		    struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = node_ino(fs, n);
	e->attr = *st;
	ops_fix_stat(n, &e->attr);
	e->entry_timeout = fs->timeout;
	e->attr_timeout = ops_attr_timeout(fs, st);
}

/* Look `name` up in `parent` and fill *e, with one kernel lookup taken
 * on the node. Tree lock held. -ENOENT when nothing shows. */
int ops_entry(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	      struct fuse_entry_param *e)
{
	_cleanup_close_ int fd = -1;
	struct ovl_node *n;
	struct ovl_hit h;
	int r;

	if (!S_ISDIR(parent->type))
		return -ENOTDIR;
	if (!node_live(parent))
		return -ENOENT; /* a removed directory: its old name is not it */
	r = layer_lookup_fd(fs, parent, name, &h, &fd);
	if (r < 0)
		return r;
	if (!h.found)
		return -ENOENT;
	r = node_get_fd(fs, parent, name, &h, &fd, &n);
	if (r < 0)
		return r;
	/* a copy waiting to be shown: the name still shows the lower file */
	if (n->pending && (r = node_stat(fs, n, &h.st)) < 0) {
		node_forget(fs, n, 1);
		return r;
	}
	ops_fill_entry(fs, n, &h.st, e);
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ovl_fs *fs = userdata;

	pt_init(fs);
	/* the daemon clears set-id bits where the kernel says (see
	 * kill_suidgid): the kernel then no longer asks for the attributes
	 * before each chown, nor for security.capability before every write
	 * but a file's first */
	wire_want_init(fs->pt_on, fs->kp_on);
	/* the data of reads is spliced to the kernel; requests are taken
	 * with read(): splicing each one through a pipe costs more than it
	 * saves on all but large writes */
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
				       FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_PARALLEL_DIROPS);
	conn->want &= ~FUSE_CAP_SPLICE_READ;
	/* directories are opened without a request (dir_opendir) */
	if (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) {
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
		fs->no_opendir = true;
	}
	/* the kernel applies the umask; no writeback cache: O_APPEND and
	 * the page cache stay simple and correct */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_DONT_MASK | FUSE_CAP_EXPORT_SUPPORT);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ovl_fs *fs = req_fs(req);
	struct fuse_entry_param e;
	int r;

	tree_rdlock(fs);
	r = ops_entry(fs, node_of(fs, parent), name, &e);
	tree_unlock(fs);
	if (r == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout; /* a negative entry */
		(void)fuse_reply_entry(req, &e);
	} else if (r < 0) {
		(void)fuse_reply_err(req, -r);
	} else {
		(void)fuse_reply_entry(req, &e);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct ovl_fs *fs = req_fs(req);

	node_forget(fs, node_of(fs, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct ovl_fs *fs = req_fs(req);
	size_t i;

	for (i = 0; i < count; i++)
		node_forget(fs, node_of(fs, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	struct stat st;
	int r = 0;

	(void)fi;
	tree_rdlock(fs);
	r = node_stat(fs, n, &st); /* removed or not: its own inode */
	tree_unlock(fs);
	if (r < 0)
		(void)fuse_reply_err(req, -r);
	else
		(void)fuse_reply_attr(req, &st, ops_attr_timeout(fs, &st));
}

/* Apply the changes of setattr to n, which is in the upper, through
 * n's own fd (the kernel sends no file handle for fchmod, fchown or
 * futimens, and n's name may show something else by now). */
static int setattr_apply(struct ovl_fs *fs, struct ovl_node *n, const struct stat *attr,
			 int to_set, struct fuse_file_info *fi)
{
	_cleanup_close_ int fd = -1;
	char p[32];

	(void)fs;
	if (n->fd < 0)
		return -ESTALE;
	/* n->fd is on n's object and n is no symlink: the magic link
	 * reaches that object and nothing else */
	if ((to_set & FUSE_SET_ATTR_MODE) && !S_ISLNK(n->type) &&
	    chmod(proc_fd_path(n->fd, p), attr->st_mode & 07777) < 0)
		return -errno;
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(n->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (fi) {
			if (ftruncate(fh_fd(fi->fh), attr->st_size) < 0)
				return -errno;
		} else {
			if (!S_ISREG(n->type))
				return S_ISDIR(n->type) ? -EISDIR : -EINVAL;
			fd = open(proc_fd_path(n->fd, p), O_WRONLY | O_CLOEXEC);
			if (fd < 0 || ftruncate(fd, attr->st_size) < 0)
				return -errno;
		}
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	return 0;
}

/* Is the caller of req in group gid: its fsgid or a supplementary group? */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	_cleanup_free_ gid_t *more = NULL;
	gid_t groups[32], *list = groups;
	int n, i;

	if (fuse_req_ctx(req)->gid == gid)
		return true;
	n = fuse_req_getgroups(req, (int)ARRAY_SIZE(groups), groups);
	if (n > (int)ARRAY_SIZE(groups)) {
		more = calloc((size_t)n, sizeof(*more));
		if (!more)
			return false;
		n = fuse_req_getgroups(req, n, more);
		list = more;
		/* the caller's groups may have grown since */
		if (n > (int)ARRAY_SIZE(groups))
			n = 0;
	}
	for (i = 0; i < n; i++)
		if (list[i] == gid)
			return true;
	return false;
}

/* Clear the set-id bits of n (in the upper) that a change by req's
 * caller clears, where the kernel said it must (kind, from
 * wire_kill_suidgid): setuid always; setgid when the group may execute
 * the file, or when the caller is not in the file's group (gid, or the
 * file's own when -1) and lacks CAP_FSETID, as the kernel's own check
 * has it. Where the kernel did not say whether the caller has CAP_FSETID
 * (OVL_KILL), root is taken to have it. Regular files only (a chown of
 * anything else is done by a real chown, which clears them itself).
 * Tree lock held for writing. 1 when bits were cleared, 0 when there
 * were none, or -errno. */
static int kill_suidgid(fuse_req_t req, struct ovl_node *n, int kind, gid_t gid)
{
	mode_t kill = 0;
	struct stat st;
	char p[32];

	if (!S_ISREG(n->type))
		return 0;
	if (n->fd < 0)
		return -ESTALE;
	if (fstat(n->fd, &st) < 0)
		return -errno;
	if (gid == (gid_t)-1)
		gid = st.st_gid;
	if (st.st_mode & S_ISUID)
		kill |= S_ISUID;
	if ((st.st_mode & S_ISGID) &&
	    ((st.st_mode & S_IXGRP) ||
	     (!(kind == OVL_KILL && fuse_req_ctx(req)->uid == 0) && !caller_in_group(req, gid))))
		kill |= S_ISGID;
	if (kill && chmod(proc_fd_path(n->fd, p), st.st_mode & 07777 & ~kill) < 0)
		return -errno;
	return kill != 0;
}

/* Has n (a regular file) a set-id bit? Tree lock held. */
static bool has_setid(struct ovl_node *n)
{
	struct stat st;

	return S_ISREG(n->type) && n->fd >= 0 && fstat(n->fd, &st) == 0 &&
	       (st.st_mode & (S_ISUID | S_ISGID));
}

/* kill_suidgid for a request whose reply carries no attributes (OPEN,
 * WRITE, FALLOCATE), when n has such bits: the kernel is told that the
 * mode it holds is stale. Takes the tree lock for writing unless held. */
static int kill_suidgid_notify(fuse_req_t req, struct ovl_fs *fs, fuse_ino_t ino, int kind,
			       bool locked)
{
	struct ovl_node *n = node_of(fs, ino);
	bool some;
	int r;

	if (!locked) {
		/* most files have none: look under the read lock first */
		tree_rdlock(fs);
		some = has_setid(n);
		tree_unlock(fs);
		if (!some)
			return 0;
		tree_wrlock(fs);
	}
	r = kill_suidgid(req, n, kind, (gid_t)-1);
	if (!locked)
		tree_unlock(fs);
	if (r > 0)
		(void)fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	return r < 0 ? r : 0;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	int kill = wire_kill_suidgid();
	gid_t gid = (gid_t)-1;
	struct stat st;
	int r;

	if (to_set & FUSE_SET_ATTR_SIZE)
		(void)pt_busy(fs, n, true);
	tree_wrlock(fs);
	/* a removed node in the upper is changed in place, as the kernel
	 * changes an open unlinked file; a removed lower one cannot be copied
	 * up (-ESTALE) */
	r = to_set & FUSE_SET_ATTR_SIZE ? pt_busy(fs, n, false) : 0;
	if (r == 0)
		r = copyup_node_flags(fs, n, COPYUP_MAY_WAIT);
	/* a chown asks about the group the file had */
	if (r == 0 && kill && n->fd >= 0 && fstat(n->fd, &st) == 0)
		gid = st.st_gid;
	if (r == 0)
		r = setattr_apply(fs, n, attr, to_set, fi);
	if (r == 0 && kill)
		r = kill_suidgid(req, n, kill, gid);
	if (r >= 0)
		r = node_stat(fs, n, &st);
	tree_unlock(fs);
	if (r < 0)
		(void)fuse_reply_err(req, -r);
	else
		(void)fuse_reply_attr(req, &st, ops_attr_timeout(fs, &st));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	char buf[4097];
	ssize_t len = -1;
	int r = 0;

	tree_rdlock(fs);
	if (!S_ISLNK(n->type) || n->fd < 0)
		r = -EINVAL;
	else if ((len = readlinkat(n->fd, "", buf, sizeof(buf) - 1)) < 0)
		r = -errno;
	tree_unlock(fs);
	if (r < 0) {
		(void)fuse_reply_err(req, -r);
		return;
	}
	buf[len] = '\0';
	(void)fuse_reply_readlink(req, buf);
}

/* Does opening with these flags change the file (so it is copied up)? */
static bool open_writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* open. O_TMPFILE never gets here: it comes as a create (ns_create). */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	bool writes = open_writes(fi->flags);
	int kill = wire_kill_suidgid(); /* an O_TRUNC open */
	int flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY);
	struct stat st;
	int fd = -1, r;

	if (writes) {
		(void)pt_busy(fs, n, true);
		tree_wrlock(fs);
	} else {
		tree_rdlock(fs);
	}
	r = writes ? pt_busy(fs, n, false) : 0;
	if (r == 0 && writes)
		/* a synchronous writer's writes are durable when they return:
		 * so must the copy be, under its name */
		r = copyup_node_flags(fs, n,
				      (flags & (O_SYNC | O_DSYNC) ? 0 : COPYUP_MAY_WAIT) |
					      ((flags & O_TRUNC) && S_ISREG(n->type) ? COPYUP_EMPTY : 0));
	if (r == 0)
		r = node_open(fs, n, flags, &fd);
	if (r == 0 && kill && writes && (r = kill_suidgid_notify(req, fs, ino, kill, true)) < 0)
		(void)close(fd);
	if (r == 0)
		fi->fh = pt_open(fs, n, fd, writes);
	tree_unlock(fs);
	if (r < 0) {
		(void)fuse_reply_err(req, -r);
		return;
	}
	/* the page cache stays right across opens: every write comes through
	 * this mount; a file with several names may change under another.
	 * A passed-through file has no page cache of its own. */
	fi->keep_cache = !(fi->fh & OVL_FH_PT) && fstat(fd, &st) == 0 && st.st_nlink < 2;
	if (fuse_reply_open(req, fi) < 0) {
		pt_open_failed(fs, n, fi->fh);
		(void)close(fd);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fh_fd(fi->fh);
	buf.buf[0].pos = off;
	(void)fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/* A write that is not passed through (a passed-through one never comes
 * here: the kernel asks for the set-id bits to go with an empty setattr
 * before it writes). */
static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	int kill = wire_kill_suidgid();
	ssize_t n;

	if (kill) {
		int r = kill_suidgid_notify(req, req_fs(req), ino, kill, false);

		if (r < 0) {
			(void)fuse_reply_err(req, -r);
			return;
		}
	}
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = fh_fd(fi->fh);
	out.buf[0].pos = off;
	n = fuse_buf_copy(&out, in, 0);
	if (n < 0)
		(void)fuse_reply_err(req, (int)-n);
	else
		(void)fuse_reply_write(req, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);

	pt_release(fs, node_of(fs, ino), fi->fh);
	(void)close(fh_fd(fi->fh));
	(void)fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	int r = 0;

	/* a copy waiting to be shown is shown first (durable with it) */
	if (__atomic_load_n(&node_of(fs, ino)->pending, __ATOMIC_RELAXED)) {
		tree_wrlock(fs);
		r = -pend_settle(fs);
		tree_unlock(fs);
		/* the rename that showed it is made durable too */
		datasync = 0;
	}
	if (r == 0 && !fs->nosync &&
	    (datasync ? fdatasync(fh_fd(fi->fh)) : fsync(fh_fd(fi->fh))) < 0)
		r = errno;
	(void)fuse_reply_err(req, r);
}

/* fallocate. The kernel asks for the set-id bits to go before (the empty
 * setattr of kill_suidgid) from what it holds of the inode; another name
 * of the file may have got them meanwhile, so a caller other than root
 * clears them here too, as a write by it would. */
static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	int r = 0;

	if (fuse_req_ctx(req)->uid != 0)
		r = kill_suidgid_notify(req, req_fs(req), ino, OVL_KILL_NOCAP, false);
	if (r == 0 && fallocate(fh_fd(fi->fh), mode, off, len) < 0)
		r = -errno;
	(void)fuse_reply_err(req, -r);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t r;

	(void)ino;
	r = lseek(fh_fd(fi->fh), off, whence);
	if (r < 0)
		(void)fuse_reply_err(req, errno);
	else
		(void)fuse_reply_lseek(req, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ovl_fs *fs = req_fs(req);
	struct statvfs sv;
	int fd = fs->readonly ? fs->layers[1].fd : fs->layers[OVL_UPPER].fd;

	(void)ino;
	if (fstatvfs(fd, &sv) < 0)
		(void)fuse_reply_err(req, errno);
	else
		(void)fuse_reply_statfs(req, &sv);
}

/* An O_PATH fd of the caller's own on n's object (tree lock held). */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct ovl_fs *fs = req_fs(req);
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int own = -1;
	char p[32];
	ssize_t len = 0;
	int fd;

	if (ops_xattr_private(name)) {
		(void)fuse_reply_err(req, ENODATA);
		return;
	}
	if (size && !(buf = malloc(size))) {
		(void)fuse_reply_err(req, ENOMEM);
		return;
	}
	/* the node's own fd, used under the (shared) tree lock */
	tree_rdlock(fs);
	fd = node_path_fd(fs, node_of(fs, ino), &own);
	if (fd >= 0 && (len = getxattr(proc_fd_path(fd, p), name, buf, size)) < 0)
		fd = -errno;
	tree_unlock(fs);
	if (fd < 0)
		(void)fuse_reply_err(req, -fd);
	else if (size == 0)
		(void)fuse_reply_xattr(req, (size_t)len);
	else
		(void)fuse_reply_buf(req, buf, (size_t)len);
}

/* The names of the xattrs of fd, overlayfs' own left out, in *ret. */
static int list_visible(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *all = NULL;
	char p[32], *s, *out;
	ssize_t len;
	size_t n = 0;

	len = listxattr(proc_fd_path(fd, p), NULL, 0);
	if (len < 0)
		return -errno;
	all = malloc((size_t)len + 1);
	out = malloc((size_t)len + 1);
	if (!all || !out) {
		free(out);
		return -ENOMEM;
	}
	len = listxattr(p, all, (size_t)len);
	if (len < 0) {
		free(out);
		return errno == ERANGE ? -EAGAIN : -errno;
	}
	for (s = all; s < all + len; s += strlen(s) + 1) {
		if (ops_xattr_private(s))
			continue;
		memcpy(out + n, s, strlen(s) + 1);
		n += strlen(s) + 1;
	}
	*ret = out;
	*ret_len = n;
	return 0;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct ovl_fs *fs = req_fs(req);
	_cleanup_free_ char *names = NULL;
	_cleanup_close_ int own = -1;
	size_t len = 0;
	int r;

	tree_rdlock(fs);
	r = node_path_fd(fs, node_of(fs, ino), &own);
	if (r >= 0)
		r = list_visible(r, &names, &len);
	tree_unlock(fs);
	if (r < 0)
		(void)fuse_reply_err(req, -r);
	else if (size == 0)
		(void)fuse_reply_xattr(req, len);
	else if (len > size)
		(void)fuse_reply_err(req, ERANGE);
	else
		(void)fuse_reply_buf(req, names, len);
}

/* Set (value non-NULL) or remove xattr `name` of ino, copied up first;
 * overlayfs' own are refused with `refuse`. Replies. */
static void xattr_change(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size, int flags, int refuse)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	_cleanup_close_ int own = -1;
	char p[32];
	int r;

	if (ops_xattr_private(name)) {
		(void)fuse_reply_err(req, refuse);
		return;
	}
	tree_wrlock(fs);
	r = copyup_node_flags(fs, n, COPYUP_MAY_WAIT);
	if (r == 0)
		r = node_path_fd(fs, n, &own);
	if (r >= 0) {
		(void)proc_fd_path(r, p);
		r = 0;
		if ((value ? setxattr(p, name, value, size, flags) : removexattr(p, name)) < 0)
			r = -errno;
	}
	tree_unlock(fs);
	(void)fuse_reply_err(req, -r);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	/* NULL asks xattr_change for a removal (libfuse never passes it) */
	xattr_change(req, ino, name, value ? value : "", size, flags, EPERM);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	xattr_change(req, ino, name, NULL, 0, 0, ENODATA);
}

/* Locks are not implemented: the kernel keeps POSIX and BSD locks
 * locally, which is right for a single mount. */
/* No flush: file locks are the kernel's own (there are no lock
 * operations here) and every write reaches the file before its reply,
 * so a close has nothing to send; after the first ENOSYS the kernel
 * stops asking, which saves a request per close. */
const struct fuse_lowlevel_ops ovl_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = ns_mknod,
	.mkdir = ns_mkdir,
	.unlink = ns_unlink,
	.rmdir = ns_rmdir,
	.symlink = ns_symlink,
	.rename = ns_rename,
	.link = ns_link,
	.open = op_open,
	.read = op_read,
	.write_buf = op_write_buf,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = dir_opendir,
	.readdir = dir_readdir,
	.readdirplus = dir_readdirplus,
	.releasedir = dir_releasedir,
	.fsyncdir = dir_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = ns_create,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
};
