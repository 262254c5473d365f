/* The FUSE operations that change names: create, mkdir, mknod, symlink,
 * link, unlink, rmdir, rename. All run with the tree lock held for
 * writing. A name that a lower layer shows is removed with a whiteout;
 * an entry made where a whiteout was replaces it atomically (through the
 * workdir), a directory made there is marked opaque. With the file form
 * of whiteouts (".wh.NAME"), every step is ordered so that a crash at
 * worst leaves both the name and its whiteout, and the name wins: the
 * whiteout is made before the name goes, and goes after the new name is
 * in place. Names of that form cannot be made (EINVAL). */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "ovl.h"

/* What a new entry is. */
struct ns_new {
	mode_t mode;            /* type and permission bits, umask applied */
	dev_t rdev;
	const char *target;     /* symlinks */
	int oflags;             /* regular files made by create */
	int link_fd;            /* hard links: O_PATH fd on the upper file, or -1 */
	struct ovl_node *tmpfile; /* a tmpfile linked in: its node takes the name */
};

/* Take the tree lock for writing, with every copy that waits shown:
 * what follows reads and changes the upper's names. */
static void ns_lock(struct ovl_fs *fs)
{
	tree_wrlock(fs);
	/* a copy that cannot be shown keeps waiting: its name shows the
	 * lower file meanwhile, and renames and removals of it go on there */
	(void)pend_settle(fs);
}

/* Open directory node `dir` itself in the upper (O_PATH). fd or -errno. */
static int upper_dir_fd(struct ovl_fs *fs, struct ovl_node *dir)
{
	_cleanup_free_ char *path = NULL;
	int fd, r;

	r = node_dir_open(fs, dir, OVL_UPPER, &path, &fd);
	return r < 0 ? r : fd;
}

/* Where a new entry of directory node `parent` goes: parent copied up
 * and opened in the upper (O_PATH, lent or in *own as node_dir_fd
 * says), its attributes in *pst. The fd or -errno. */
static int upper_parent_fd(struct ovl_fs *fs, struct ovl_node *parent, struct stat *pst, int *own)
{
	_cleanup_free_ char *path = NULL;
	int fd, r = copyup_node(fs, parent);

	if (r < 0)
		return r;
	fd = node_dir_fd(fs, parent, OVL_UPPER, &path, own);
	if (fd >= 0 && fstat(fd, pst) < 0)
		return -errno;
	return fd;
}

/* Is dfd/name a whiteout? 1, 0 (nothing or something else) or -errno. */
static int is_whiteout_at(int dfd, const char *name)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return stat_is_whiteout(&st);
}

/* Make the object of nw at dfd/name; a regular file's fd in *ret_fd. */
static int make_object(int dfd, const char *name, const struct ns_new *nw, int *ret_fd)
{
	int fd;

	if (nw->link_fd >= 0)
		return linkat(nw->link_fd, "", dfd, name, AT_EMPTY_PATH) < 0 ? -errno : 0;
	switch (nw->mode & S_IFMT) {
	case S_IFREG:
		fd = openat(dfd, name,
			    (nw->oflags & ~(O_TRUNC | O_NOCTTY | O_NOFOLLOW | O_DIRECTORY)) |
				    O_CREAT | O_EXCL | O_CLOEXEC,
			    nw->mode & 07777);
		if (fd < 0)
			return -errno;
		*ret_fd = fd;
		return 0;
	case S_IFDIR:
		return mkdirat(dfd, name, nw->mode & 07777) < 0 ? -errno : 0;
	case S_IFLNK:
		return symlinkat(nw->target, dfd, name) < 0 ? -errno : 0;
	default:
		return mknodat(dfd, name, nw->mode, nw->rdev) < 0 ? -errno : 0;
	}
}

/* Give fd, on an object just made as nw in a directory of stat pst, the
 * caller's ownership: its uid, and its gid or the directory's when that
 * is setgid (directories then inherit the bit). chown drops set-id bits,
 * so they are put back after it. The object's attributes after that in
 * *ret_st. */
static int set_owner_fd(int fd, const struct ns_new *nw, const struct fuse_ctx *ctx,
			const struct stat *pst, struct stat *ret_st)
{
	bool sgid_dir = pst->st_mode & S_ISGID;
	gid_t gid = sgid_dir ? pst->st_gid : ctx->gid;
	mode_t mode = nw->mode & 07777;
	bool changed = false;
	char p[32];

	if (S_ISDIR(nw->mode) && sgid_dir)
		mode |= S_ISGID;
	if (fstat(fd, ret_st) < 0)
		return -errno;
	if ((ret_st->st_mode & S_IFMT) != (nw->mode & S_IFMT))
		return -ESTALE;
	/* made by the daemon: already the caller's when the caller is the
	 * daemon's user (root, mostly) */
	if (ret_st->st_uid != ctx->uid || ret_st->st_gid != gid) {
		if (fchownat(fd, "", ctx->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		changed = true;
	}
	if (!S_ISLNK(nw->mode) && (mode & (S_ISUID | S_ISGID)) &&
	    (changed || (ret_st->st_mode & 07777) != mode)) {
		if (chmod(proc_fd_path(fd, p), mode) < 0)
			return -errno;
		changed = true;
	}
	return changed && fstat(fd, ret_st) < 0 ? -errno : 0;
}

/* set_owner_fd for dfd/name, acting on the object opened once, never
 * followed; that O_PATH fd in *ret_fd. A hard link is left as it is. */
static int set_owner(struct ovl_fs *fs, int dfd, const char *name, const struct ns_new *nw,
		     const struct fuse_ctx *ctx, const struct stat *pst, int *ret_fd,
		     struct stat *ret_st)
{
	_cleanup_close_ int fd = -1;
	unsigned int attempt = 0;
	int r;

	while ((fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		r = -errno;
		if (!node_reclaim_wait(fs, r, attempt++))
			return r;
	}
	if (nw->link_fd >= 0)
		r = fstat(fd, ret_st) < 0 ? -errno : 0;
	else
		r = set_owner_fd(fd, nw, ctx, pst, ret_st);
	if (r == 0)
		*ret_fd = TAKE_FD(fd);
	return r;
}

/* Make entry `name` in merged dir `parent` as nw says, owned by the
 * caller; the node (one kernel lookup) and attributes in *e, a regular
 * file's open fd in *ret_fd. Tree lock held for writing. 0 or -errno. */
static int ns_make(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *parent, const char *name,
		   const struct ns_new *nw, struct fuse_entry_param *e, int *ret_fd)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	_cleanup_close_ int own = -1, fd = -1, ofd = -1;
	struct ovl_node *n;
	struct ovl_hit h;
	struct stat pst;
	char tmp[64];
	bool whf;
	int upfd, wh, r;

	if (fs->readonly)
		return -EROFS;
	if (layer_name_reserved(name))
		return -EINVAL;
	if (!node_live(parent))
		return -ENOENT;
	r = layer_lookup(fs, parent, name, &h);
	if (r < 0)
		return r;
	if (h.found)
		return -EEXIST;
	upfd = upper_parent_fd(fs, parent, &pst, &own);
	if (upfd < 0)
		return upfd;
	/* the lookup saw the upper: nothing there, no whiteout */
	wh = h.upper_clear ? 0 : is_whiteout_at(upfd, name);
	if (wh < 0)
		return wh;
	whf = !h.upper_clear && layer_wh_read(fs) && layer_has_wh_file(upfd, name);
	memset(&h, 0, sizeof(h));
	if (!wh && !whf) {
		/* nothing to replace: made in place, as the kernel does */
		r = make_object(upfd, name, nw, &fd);
		if (r == 0 && (r = set_owner(fs, upfd, name, nw, ctx, &pst, &ofd, &h.st)) < 0)
			(void)unlinkat(upfd, name, S_ISDIR(nw->mode) ? AT_REMOVEDIR : 0);
	} else {
		(void)layer_tmp_name(fs, tmp);
		r = make_object(fs->workfd, tmp, nw, &fd);
		if (r == 0)
			r = set_owner(fs, fs->workfd, tmp, nw, ctx, &pst, &ofd, &h.st);
		if (r == 0 && S_ISDIR(nw->mode))
			r = layer_set_opaque(fs, fs->workfd, tmp, true);
		if (r == 0 && !wh) {
			/* a file-form whiteout: nothing at the name yet */
			if (renameat2(fs->workfd, tmp, upfd, name, RENAME_NOREPLACE) < 0)
				r = -errno;
		} else if (r == 0 && S_ISDIR(nw->mode)) {
			if (renameat2(fs->workfd, tmp, upfd, name, RENAME_EXCHANGE) < 0)
				r = -errno;
			else
				(void)unlinkat(fs->workfd, tmp, 0); /* the old whiteout */
		} else if (r == 0 && renameat(fs->workfd, tmp, upfd, name) < 0) {
			r = -errno;
		}
		if (r < 0 && S_ISDIR(nw->mode))
			(void)copyup_clean_tree(fs, fs->workfd, tmp, false);
		if (r < 0)
			(void)unlinkat(fs->workfd, tmp, S_ISDIR(nw->mode) ? AT_REMOVEDIR : 0);
		/* the opaque mark and the rename changed its ctime */
		if (r == 0 && fstat(ofd, &h.st) < 0)
			r = -errno;
	}
	if (r < 0)
		return r;
	if (whf)
		(void)layer_wh_file_drop(upfd, name); /* the name shows: it wins */
	h.found = true;
	h.type = h.st.st_mode & S_IFMT;
	h.layer = h.last = OVL_UPPER;
	n = nw->tmpfile;
	r = n ? node_name_tmpfile(fs, n, parent, name) : node_get_fd(fs, parent, name, &h, &ofd, &n);
	if (r < 0)
		return r;
	ops_fill_entry(fs, n, &h.st, e);
	if (ret_fd)
		*ret_fd = TAKE_FD(fd);
	return 0;
}

/* Run ns_make for a request and reply with the entry. */
static void ns_make_reply(fuse_req_t req, fuse_ino_t parent, const char *name,
			  const struct ns_new *nw)
{
	struct ovl_fs *fs = req_fs(req);
	struct fuse_entry_param e;
	int r;

	ns_lock(fs);
	r = ns_make(fs, req, node_of(fs, parent), name, nw, &e, NULL);
	tree_unlock(fs);
	if (r < 0)
		(void)fuse_reply_err(req, -r);
	else
		(void)fuse_reply_entry(req, &e);
}

void ns_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct ns_new nw = { .mode = mode, .rdev = rdev, .link_fd = -1 };

	/* a 0/0 device is a whiteout on disk: refused, as the kernel does */
	if (S_ISCHR(mode) && rdev == 0) {
		(void)fuse_reply_err(req, EPERM);
		return;
	}
	if (S_ISREG(mode))
		nw.oflags = O_RDONLY; /* the fd is closed by ns_make */
	ns_make_reply(req, parent, name, &nw);
}

void ns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ns_new nw = { .mode = S_IFDIR | (mode & 07777), .link_fd = -1 };

	ns_make_reply(req, parent, name, &nw);
}

void ns_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct ns_new nw = { .mode = S_IFLNK | 0777, .target = link, .link_fd = -1 };

	ns_make_reply(req, parent, name, &nw);
}

/* The open flags of the caller that an O_TMPFILE in the upper keeps:
 * O_EXCL among them, so that the upper refuses to link it too. */
#define TMPFILE_OFLAGS \
	(O_ACCMODE | O_EXCL | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_NOATIME | \
	 O_LARGEFILE)

/* An O_TMPFILE in the upper directory of `parent` (copied up first, as
 * the kernel's overlay does), as nw says, owned by the caller. Its node
 * has no name in the merged view until a link gives it one (ns_link):
 * closed before that, it leaves nothing in the upper. The node and its
 * attributes in *e, its open fd in *ret_fd. Tree lock held for writing.
 * 0 or -errno. */
static int ns_tmpfile(struct ovl_fs *fs, fuse_req_t req, struct ovl_node *parent,
		      const struct ns_new *nw, struct fuse_entry_param *e, int *ret_fd)
{
	_cleanup_close_ int own = -1, fd = -1, pfd = -1;
	struct ovl_node *n;
	struct stat pst, st;
	char p[32];
	int upfd, r;

	if (fs->readonly)
		return -EROFS;
	if (!node_live(parent))
		return -ENOENT;
	upfd = upper_parent_fd(fs, parent, &pst, &own);
	if (upfd < 0)
		return upfd;
	fd = openat(upfd, ".", O_TMPFILE | O_CLOEXEC | (nw->oflags & TMPFILE_OFLAGS),
		    nw->mode & 07777);
	if (fd < 0)
		return -errno;
	r = set_owner_fd(fd, nw, fuse_req_ctx(req), &pst, &st);
	if (r < 0)
		return r;
	/* the node's own fd, as any node has: a link is made from it */
	pfd = open(proc_fd_path(fd, p), O_PATH | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	r = node_new_tmpfile(fs, parent, &pfd, &n);
	if (r < 0)
		return r;
	/* the link the kernel's d_tmpfile takes away again */
	st.st_nlink = 1;
	ops_fill_entry(fs, n, &st, e);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* create, and O_TMPFILE: wire.c hands FUSE_TMPFILE over as a create of
 * the name "/", which no entry can have. */
void ns_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	struct ns_new nw = { .mode = S_IFREG | (mode & 07777), .oflags = fi->flags, .link_fd = -1 };
	struct fuse_entry_param e;
	int fd = -1, r;

	ns_lock(fs);
	if (!strcmp(name, "/"))
		r = ns_tmpfile(fs, req, node_of(fs, parent), &nw, &e, &fd);
	else
		r = ns_make(fs, req, node_of(fs, parent), name, &nw, &e, &fd);
	if (r == 0)
		fi->fh = pt_open(fs, node_of(fs, e.ino), fd, true);
	tree_unlock(fs);
	if (r < 0) {
		(void)fuse_reply_err(req, -r);
		return;
	}
	fi->keep_cache = !(fi->fh & OVL_FH_PT);
	if (fuse_reply_create(req, &e, fi) < 0) {
		/* the kernel never heard of the node: no FORGET will come */
		pt_open_failed(fs, node_of(fs, e.ino), fi->fh);
		node_forget(fs, node_of(fs, e.ino), 1);
		(void)close(fd);
	}
}

void ns_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	struct ns_new nw = { .mode = S_IFREG, .link_fd = -1 };
	struct fuse_entry_param e;
	int r;

	ns_lock(fs);
	/* the link is made to n's own inode (a removed one is refused by
	 * linkat with ENOENT, and so is an O_TMPFILE|O_EXCL one), never to
	 * what its old name shows; a tmpfile's node takes the new name */
	r = copyup_node(fs, n);
	if (r == 0 && n->fd < 0)
		r = -ESTALE;
	if (r == 0) {
		nw.link_fd = n->fd;
		nw.mode = n->type;
		nw.tmpfile = n->tmpfile ? n : NULL;
		r = ns_make(fs, req, node_of(fs, newparent), newname, &nw, &e, NULL);
	}
	tree_unlock(fs);
	if (r < 0)
		(void)fuse_reply_err(req, -r);
	else
		(void)fuse_reply_entry(req, &e);
}

/* Forget the merged name parent/name: its node is unhashed. */
static void drop_name(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_node *n = node_find(fs, parent, name);

	if (n) {
		node_unhash(fs, n);
		node_put(fs, n);
	}
}

/* A transient node for parent/name as hit h shows it (for listing). */
static void stack_node(struct ovl_node *n, struct ovl_node *parent, const char *name,
		       const struct ovl_hit *h)
{
	memset(n, 0, sizeof(*n));
	n->fd = -1;
	n->transient = true;
	n->parent = parent;
	n->name = (char *)name;
	n->type = h->type;
	n->layer = h->layer;
	n->last = h->last;
}

/* Look `name` up in `parent`, which must be live and show it: -ENOENT
 * otherwise. 0 or -errno. */
static int lookup_shown(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			struct ovl_hit *h)
{
	int r;

	if (!node_live(parent))
		return -ENOENT;
	r = layer_lookup(fs, parent, name, h);
	if (r < 0)
		return r;
	return h->found ? 0 : -ENOENT;
}

/* The checks and the copy-up that removing parent/name needs, for unlink
 * (!dir) and rmdir (dir: it must be empty in the merged view). Whether a
 * lower shows the name (so that a whiteout must take its place) in
 * *lower. Returns the upper parent's fd or -errno. */
static int remove_prepare(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool dir,
			  struct ovl_hit *h, int *lower)
{
	struct ovl_node child;
	int r;

	r = lookup_shown(fs, parent, name, h);
	if (r < 0)
		return r;
	if (!dir && S_ISDIR(h->type))
		return -EISDIR;
	if (dir && !S_ISDIR(h->type))
		return -ENOTDIR;
	if (dir) {
		stack_node(&child, parent, name, h);
		r = dir_check_empty(fs, &child);
		if (r < 0)
			return r;
	}
	*lower = layer_lower_has(fs, parent, name);
	if (*lower < 0)
		return *lower;
	r = copyup_node(fs, parent);
	if (r < 0)
		return r;
	return upper_dir_fd(fs, parent);
}

/* Take the upper directory upfd/name out of the merged view. It is
 * checked in place first: anything in it but whiteouts refuses the
 * rmdir with nothing changed. Then it is moved to the workdir (swapped
 * with a kernel whiteout when a lower shows the name, or moved once the
 * file-form whiteout is there) and emptied there; should that still
 * fail, it is put back. */
static int remove_upper_dir(struct ovl_fs *fs, int upfd, const char *name, bool whiteout)
{
	char tmp[64];
	int r, made;

	r = layer_check_dir(upfd, name);
	if (r < 0)
		return r;
	if (!whiteout)
		return layer_clear_dir(upfd, name); /* nothing below it to show */
	made = layer_whiteout_tmp(fs, tmp);
	if (made < 0)
		return made;
	if (made == 1) {
		if (renameat2(fs->workfd, tmp, upfd, name, RENAME_EXCHANGE) < 0) {
			r = -errno;
			(void)unlinkat(fs->workfd, tmp, 0);
			return r;
		}
		r = layer_clear_dir(fs->workfd, tmp);
		if (r < 0)
			(void)renameat2(fs->workfd, tmp, upfd, name, RENAME_EXCHANGE);
		return r;
	}
	r = layer_wh_file_make(upfd, name);
	if (r < 0)
		return r;
	(void)layer_tmp_name(fs, tmp);
	if (renameat(upfd, name, fs->workfd, tmp) < 0) {
		r = -errno;
		(void)layer_wh_file_drop(upfd, name);
		return r;
	}
	r = layer_clear_dir(fs->workfd, tmp);
	if (r < 0 && renameat2(fs->workfd, tmp, upfd, name, RENAME_NOREPLACE) == 0)
		(void)layer_wh_file_drop(upfd, name);
	return r;
}

/* Remove `name` from the merged view: a non-directory (unlink), or a
 * directory empty in the merged view (rmdir, `dir`). A whiteout takes its
 * place where a lower shows it. */
static int do_remove(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool dir)
{
	_cleanup_close_ int upfd = -1;
	struct ovl_hit h;
	int lower, r;

	upfd = remove_prepare(fs, parent, name, dir, &h, &lower);
	if (upfd < 0)
		return upfd;
	if (dir && h.layer == OVL_UPPER)
		r = remove_upper_dir(fs, upfd, name, lower);
	else if (dir || lower)
		r = layer_make_whiteout(fs, upfd, name);
	else
		r = unlinkat(upfd, name, 0) < 0 ? -errno : 0;
	if (r == 0)
		drop_name(fs, parent, name);
	return r;
}

/* Answer a request that removes parent/name, run under the tree's write
 * lock (EROFS on a read-only mount). */
static void reply_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct ovl_fs *fs = req_fs(req);
	int r;

	if (fs->readonly) {
		(void)fuse_reply_err(req, EROFS);
		return;
	}
	ns_lock(fs);
	r = do_remove(fs, node_of(fs, parent), name, dir);
	tree_unlock(fs);
	(void)fuse_reply_err(req, -r);
}

void ns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_remove(req, parent, name, false);
}

void ns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_remove(req, parent, name, true);
}

/* One name a rename acts on: where it is, what shows there, its node. */
struct ren_end {
	struct ovl_node *parent;
	const char *name;
	struct ovl_hit hit;
	struct ovl_node *node;          /* its node (pinned) or NULL */
	struct ovl_node stack;          /* stands for it when the kernel has none */
	bool tree;                      /* a directory with lower parts */
	bool opaque;                    /* the moved directory must be opaque */
};

/* Everything one rename needs to know: the source moves to the
 * destination's name (or, for an exchange, each to the other's). */
struct ren {
	struct ren_end src, dst;
	bool whiteout;                  /* the old name needs a whiteout */
	int dst_up;                     /* what the upper has at the new name */
};

/* UP_WHFILE: nothing at the name, but its file-form whiteout. */
enum { UP_NONE, UP_WHITEOUT, UP_WHFILE, UP_DIR, UP_OTHER };

/* Look both names up: the source must show (ENOENT), and so must the
 * destination of an exchange. 0 or -errno. */
static int ren_lookup(struct ovl_fs *fs, struct ren *x, bool xchg)
{
	int r;

	if (!node_live(x->dst.parent))
		return -ENOENT;
	r = lookup_shown(fs, x->src.parent, x->src.name, &x->src.hit);
	if (r < 0)
		return r;
	r = layer_lookup(fs, x->dst.parent, x->dst.name, &x->dst.hit);
	if (r < 0)
		return r;
	return xchg && !x->dst.hit.found ? -ENOENT : 0;
}

/* The refusals of rename, in the order the kernel checks them. */
static int ren_check(struct ovl_fs *fs, struct ren *x, unsigned int flags)
{
	struct ovl_node dn;
	int r;

	r = ren_lookup(fs, x, false);
	if (r < 0 || !x->dst.hit.found)
		return r;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (S_ISDIR(x->src.hit.type) && !S_ISDIR(x->dst.hit.type))
		return -ENOTDIR;
	if (!S_ISDIR(x->src.hit.type) && S_ISDIR(x->dst.hit.type))
		return -EISDIR;
	if (S_ISDIR(x->dst.hit.type)) {
		stack_node(&dn, x->dst.parent, x->dst.name, &x->dst.hit);
		return dir_check_empty(fs, &dn);
	}
	return 0;
}

/* A tree copied up (maybe half way) or moved: the known nodes below it
 * follow (with no node, none is below). */
static void ren_end_refresh(struct ovl_fs *fs, struct ren_end *e)
{
	if (e->tree && e->node)
		node_refresh_below(fs, e->node);
}

/* Bring the object of end e into the upper: a directory with lower parts
 * with its whole tree, which is then moved as a whole (never EXDEV). On
 * failure part of the tree may be in the upper: the caller refreshes. */
static int ren_end_copyup(struct ovl_fs *fs, struct ren_end *e)
{
	e->node = node_find(fs, e->parent, e->name);
	if (!e->node)
		stack_node(&e->stack, e->parent, e->name, &e->hit);
	e->tree = S_ISDIR(e->hit.type) && (e->hit.layer > OVL_UPPER || e->hit.last > OVL_UPPER);
	return e->tree ? copyup_tree(fs, e->node ? e->node : &e->stack)
		       : copyup_node(fs, e->node ? e->node : &e->stack);
}

/* Must the directory of end e be opaque once it has the name `to` has?
 * A copied tree hides what lowers have at the new name; a pure upper
 * directory moved into a merged one is made opaque, as the kernel does.
 * 1, 0 or -errno. */
static int ren_end_opaque(struct ovl_fs *fs, const struct ren_end *e, const struct ren_end *to)
{
	int r = layer_lower_has(fs, to->parent, to->name);

	if (r < 0)
		return r;
	return r || (!e->tree && to->parent->last > OVL_UPPER);
}

/* Bring the source and the new parent into the upper; decide whiteout
 * and opaque. */
static int ren_prepare(struct ovl_fs *fs, struct ren *x, int nfd)
{
	struct stat st;
	int r;

	r = ren_end_copyup(fs, &x->src);
	if (r < 0)
		return r;
	r = layer_lower_has(fs, x->src.parent, x->src.name);
	if (r < 0)
		return r;
	x->whiteout = r;
	if (fstatat(nfd, x->dst.name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return -errno;
		x->dst_up = layer_wh_read(fs) && layer_has_wh_file(nfd, x->dst.name) ? UP_WHFILE
										    : UP_NONE;
	} else {
		x->dst_up = stat_is_whiteout(&st) ? UP_WHITEOUT
			    : S_ISDIR(st.st_mode) ? UP_DIR : UP_OTHER;
	}
	if (S_ISDIR(x->src.hit.type)) {
		r = ren_end_opaque(fs, &x->src, &x->dst);
		if (r < 0)
			return r;
		x->src.opaque = r || x->dst_up == UP_WHITEOUT || x->dst_up == UP_WHFILE;
	}
	return 0;
}

/* Rename the upper source over what the upper has at the new name,
 * leaving a kernel whiteout at the old name when `kwh`. */
static int ren_swap(struct ovl_fs *fs, struct ren *x, int ofd, int nfd, bool kwh)
{
	const char *oname = x->src.name, *nname = x->dst.name;
	unsigned int f;

	if (x->dst_up == UP_WHITEOUT && S_ISDIR(x->src.hit.type)) {
		if (renameat2(ofd, oname, nfd, nname, RENAME_EXCHANGE) < 0)
			return -errno;
		if (!kwh)
			(void)unlinkat(ofd, oname, 0);
		return 0;
	}
	f = (x->dst_up == UP_NONE || x->dst_up == UP_WHFILE ? RENAME_NOREPLACE : 0) |
	    (kwh ? RENAME_WHITEOUT : 0);
	if (renameat2(ofd, oname, nfd, nname, f) == 0)
		return 0;
	if ((errno != EINVAL && errno != EPERM) || !kwh)
		return -errno;
	/* no RENAME_WHITEOUT on this filesystem */
	if (renameat2(ofd, oname, nfd, nname, f & ~RENAME_WHITEOUT) < 0)
		return -errno;
	return layer_make_whiteout(fs, ofd, oname);
}

/* Mark the directory of end e, in upper directory dfd, opaque when it
 * must be. 0 or -errno. */
static int ren_end_mark(struct ovl_fs *fs, const struct ren_end *e, int dfd)
{
	return e->opaque ? layer_set_opaque(fs, dfd, e->name, true) : 0;
}

/* Move the upper source into place. A file-form whiteout of the old name
 * is made before the move, that of the new name dropped after it. */
static int ren_move(struct ovl_fs *fs, struct ren *x, int ofd, int nfd)
{
	bool whf = x->whiteout && fs->wh_files;
	int r;

	r = ren_end_mark(fs, &x->src, ofd);
	if (r < 0)
		return r;
	if (x->dst_up == UP_DIR) {
		/* only whiteouts in it, and maybe an opaque mark */
		r = copyup_clean_tree(fs, nfd, x->dst.name, false);
		if (r < 0)
			return r;
	}
	if (whf) {
		r = layer_wh_file_make(ofd, x->src.name);
		if (r < 0)
			return r;
	}
	r = ren_swap(fs, x, ofd, nfd, x->whiteout && !whf);
	if (r < 0) {
		if (whf)
			(void)layer_wh_file_drop(ofd, x->src.name);
		return r;
	}
	if (x->dst_up == UP_WHFILE)
		(void)layer_wh_file_drop(nfd, x->dst.name);
	return 0;
}

/* After the move: end e's object has the name `to` had, in upper
 * directory dfd. A moved tree loses the whiteouts and inner opaque marks
 * it no longer needs; its node follows the name. */
static void ren_end_follow(struct ovl_fs *fs, struct ren_end *e, const struct ren_end *to, int dfd)
{
	struct ovl_hit h;

	if (e->tree)
		(void)copyup_clean_tree(fs, dfd, to->name, true);
	if (!e->node)
		return;
	if (node_move(fs, e->node, to->parent, to->name) < 0) {
		node_unhash(fs, e->node);
		return;
	}
	if (layer_lookup(fs, to->parent, to->name, &h) == 0 && h.found) {
		e->node->layer = h.layer;
		e->node->last = h.last;
	}
	if (S_ISDIR(e->hit.type))
		node_refresh_below(fs, e->node);
}

static int do_rename(struct ovl_fs *fs, struct ren *x, unsigned int flags)
{
	_cleanup_close_ int ofd = -1, nfd = -1;
	int r;

	r = ren_check(fs, x, flags);
	if (r < 0)
		return r;
	r = copyup_node(fs, x->dst.parent);
	if (r < 0)
		return r;
	nfd = upper_dir_fd(fs, x->dst.parent);
	if (nfd < 0)
		return nfd;
	r = ren_prepare(fs, x, nfd);
	if (r == 0) {
		ofd = upper_dir_fd(fs, x->src.parent);
		r = ofd < 0 ? ofd : ren_move(fs, x, ofd, nfd);
	}
	if (r < 0) {
		/* not moved, but maybe copied up: the nodes below follow */
		ren_end_refresh(fs, &x->src);
		return r;
	}
	/* the replaced name's node goes before the source's takes its name */
	drop_name(fs, x->dst.parent, x->dst.name);
	ren_end_follow(fs, &x->src, &x->dst, nfd);
	return 0;
}

/* Is live directory node `dir` the name of end e, or below it? */
static bool ren_end_holds(const struct ren_end *e, const struct ovl_node *dir)
{
	for (; dir->parent; dir = dir->parent)
		if (dir->parent == e->parent && !strcmp(dir->name, e->name))
			return true;
	return false;
}

/* The refusals of RENAME_EXCHANGE, in the order the kernel checks them:
 * both names must show (ENOENT), and neither may be a directory holding
 * the other (EINVAL). 1 when the two are one name: nothing to do. */
static int xchg_check(struct ovl_fs *fs, struct ren *x)
{
	int r;

	r = ren_lookup(fs, x, true);
	if (r < 0)
		return r;
	if (x->src.parent == x->dst.parent && !strcmp(x->src.name, x->dst.name))
		return 1;
	if (ren_end_holds(&x->src, x->dst.parent) || ren_end_holds(&x->dst, x->src.parent))
		return -EINVAL;
	return 0;
}

/* Bring both ends into the upper (a directory with lower parts with its
 * tree, as rename does) and decide which directory must be opaque at the
 * other's name. No whiteout is needed: both names still show something. */
static int xchg_prepare(struct ovl_fs *fs, struct ren *x)
{
	int r;

	r = ren_end_copyup(fs, &x->src);
	if (r < 0)
		return r;
	r = ren_end_copyup(fs, &x->dst);
	if (r < 0)
		return r;
	if (S_ISDIR(x->src.hit.type)) {
		r = ren_end_opaque(fs, &x->src, &x->dst);
		if (r < 0)
			return r;
		x->src.opaque = r;
	}
	if (S_ISDIR(x->dst.hit.type)) {
		r = ren_end_opaque(fs, &x->dst, &x->src);
		if (r < 0)
			return r;
		x->dst.opaque = r;
	}
	return 0;
}

/* Swap the two upper objects, each directory marked opaque first where it
 * must be (that shows nothing new at its old name: a copied tree already
 * holds all the lowers showed there). */
static int xchg_move(struct ovl_fs *fs, struct ren *x, int ofd, int nfd)
{
	int r;

	r = ren_end_mark(fs, &x->src, ofd);
	if (r == 0)
		r = ren_end_mark(fs, &x->dst, nfd);
	if (r == 0 && renameat2(ofd, x->src.name, nfd, x->dst.name, RENAME_EXCHANGE) < 0)
		r = -errno;
	return r;
}

/* renameat2(RENAME_EXCHANGE): both names stay, each showing what the
 * other showed. Copy-up works as for rename; then one atomic exchange in
 * the upper, and each node follows its object to the other name. */
static int do_exchange(struct ovl_fs *fs, struct ren *x)
{
	_cleanup_close_ int ofd = -1, nfd = -1;
	int r;

	r = xchg_check(fs, x);
	if (r != 0)
		return r < 0 ? r : 0;
	r = xchg_prepare(fs, x);
	if (r == 0) {
		ofd = upper_dir_fd(fs, x->src.parent);
		nfd = upper_dir_fd(fs, x->dst.parent);
		r = ofd < 0 ? ofd : nfd < 0 ? nfd : xchg_move(fs, x, ofd, nfd);
	}
	if (r < 0) {
		ren_end_refresh(fs, &x->src);
		ren_end_refresh(fs, &x->dst);
		return r;
	}
	ren_end_follow(fs, &x->src, &x->dst, nfd);
	ren_end_follow(fs, &x->dst, &x->src, ofd);
	return 0;
}

/* rename: files and directories, lower ones included (a directory with
 * lower parts is copied up with its tree first: never EXDEV), and
 * RENAME_EXCHANGE of any two names that show. Other flags (RENAME_WHITEOUT)
 * are refused with EINVAL, as the kernel's overlayfs does. */
void ns_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	struct ovl_fs *fs = req_fs(req);
	bool xchg = flags & RENAME_EXCHANGE;
	struct ren x = { 0 };
	int r;

	/* an exchange makes no name: a reserved one never shows (ENOENT) */
	if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
	    (xchg && (flags & RENAME_NOREPLACE)) || (!xchg && layer_name_reserved(newname))) {
		(void)fuse_reply_err(req, EINVAL);
		return;
	}
	if (fs->readonly) {
		(void)fuse_reply_err(req, EROFS);
		return;
	}
	x.src.parent = node_of(fs, parent);
	x.dst.parent = node_of(fs, newparent);
	x.src.name = name;
	x.dst.name = newname;
	ns_lock(fs);
	r = xchg ? do_exchange(fs, &x) : do_rename(fs, &x, flags);
	node_put(fs, x.src.node);
	node_put(fs, x.dst.node);
	tree_unlock(fs);
	(void)fuse_reply_err(req, -r);
}
