/* ctool-overlayfs: shared structures of the FUSE overlay daemon.
 *
 * The merged view is made of layers: layer 0 is the upper directory (the
 * only one ever written), layers 1..n the lowers, topmost first, as the
 * kernel's lowerdir= lists them. The on-disk format is the kernel
 * overlayfs one: a whiteout is a character device 0/0, an opaque
 * directory carries trusted.overlay.opaque=y. Where the upper cannot hold
 * those (it sits on another overlayfs, which refuses 0/0 devices and may
 * refuse trusted.overlay.*), the file form is written instead, as aufs
 * and OCI layers have it: an empty file ".wh.NAME" whites NAME out, an
 * empty file ".wh..wh..opq" in a directory makes it opaque. A mount
 * probes once which form its upper takes; both are always read, and no
 * name starting with ".wh." is ever shown or made through the mount.
 *
 * Every path inside a layer is resolved relative to that layer's
 * directory fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and
 * the last component is handled with the *at() calls and
 * AT_SYMLINK_NOFOLLOW / O_NOFOLLOW: a symlink is never followed inside or
 * out of a layer.
 *
 * Names are only used to find things. Every node keeps an O_PATH fd on
 * the layer object it stands for, and whatever is done to a node (its
 * attributes, data, xattrs, link target, a new hard link) goes through
 * that fd: a node whose name was removed or replaced keeps acting on its
 * own inode, never on what the name now shows.
 */
#ifndef CTOOL_OVL_H
#define CTOOL_OVL_H

#define FUSE_USE_VERSION 314

#include <dirent.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "err.h"
#include "util.h"

#define OVL_UPPER 0
#define OVL_XATTR_PREFIX "trusted.overlay."
#define OVL_XATTR_OPAQUE "trusted.overlay.opaque"
/* A copy-up records its origin as the kernel does: a struct ovl_fb with
 * the lower's file handle in ORIGIN on the copy, IMPURE=y on every upper
 * directory that may hold such a copy. Where the upper refuses
 * trusted.overlay.*, ctool's own marks stand in for them: the origin's
 * inode number in decimal, and "y". */
#define OVL_XATTR_ORIGIN "trusted.overlay.origin"
#define OVL_XATTR_IMPURE "trusted.overlay.impure"
#define OVL_XATTR_CTOOL_PREFIX "user.ctool-overlay."
#define OVL_XATTR_CTOOL_ORIGIN OVL_XATTR_CTOOL_PREFIX "origin"
#define OVL_XATTR_CTOOL_IMPURE OVL_XATTR_CTOOL_PREFIX "impure"
/* Below the workdir: temp files of copy-up and of atomic creates, and the
 * hard link index (named so it never meets the kernel's own "index"). */
#define OVL_WORK_NAME "work"
#define OVL_INDEX_NAME "ctool-index"
/* The file form of whiteouts, and the workdir file saying that the upper
 * holds some (so lookups look for them even where 0/0 devices work). */
#define OVL_WH_PREFIX ".wh."
#define OVL_WH_OPAQUE ".wh..wh..opq"
#define OVL_WH_MARK "ctool-whiteout-files"

struct ovl_layer {
	int fd;             /* O_PATH directory fd, -1 for a missing upper */
	char *path;
	/* Lowers of a mount with an upper, set by layer_probe: what the
	 * origins of copies name them by. */
	bool handles;       /* hfd and uuid are set: handles are made and read */
	int hfd;            /* O_RDONLY on the layer, for open_by_handle_at */
	unsigned char uuid[16]; /* its filesystem's (all 0 when it has none) */
};

/* One node per merged name the kernel knows (its FUSE inode).
 *
 * Lock order: fs->tree_lock, then fs->table_lock. Never the other way.
 *  - parent, name, hashed: written only with tree_lock held for writing
 *    AND table_lock held; read with either held.
 *  - nlookup, children, pins, hnext, lru_prev, lru_next, on_lru:
 *    table_lock.
 *  - type, layer, last, indexed, ldev, lino, oino, fd, tmpfile: written
 *    with tree_lock held for writing (or before the node is published in
 *    the table); read with tree_lock held (read or write). fd is closed
 *    when the node is freed.
 *  - impure: like those, but also set with tree_lock held for reading,
 *    with __atomic calls (node_impure, copyup_mark_impure): every writer
 *    there stores what the upper says.
 * A node lives while the kernel holds it (nlookup > 0), a request pins
 * it or it has children; ancestors of a live node are therefore always live, so a path
 * can be built from any node a request names. */
struct dir_handle;

struct ovl_node {
	struct ovl_node *parent;
	char *name;
	struct ovl_node *hnext;
	uint64_t nlookup;
	uint64_t children;
	uint64_t pins;      /* held by node_find() callers */
	bool hashed;
	mode_t type;        /* S_IFMT bits */
	int layer;          /* topmost layer holding it */
	int last;           /* directories: lowest layer merged into it */
	bool indexed;       /* a lower hard link whose data is in the index */
	dev_t ldev;         /* lower origin (for the index) */
	ino_t lino;
	ino_t oino;         /* st_ino shown: its copy-up origin's; 0: its own */
	uint8_t impure;     /* upper directories: OVL_IMPURE_* */
	int fd;             /* O_PATH on the object in `layer`; -1 if transient */
	bool transient;     /* a stand-in on the stack, never in the table */
	bool tmpfile;       /* an O_TMPFILE never linked in: no name, unhashed */
	/* Its copy waits in the workdir to be shown (publish.c): its name
	 * shows the lower object until then. Written with tree_lock held for
	 * writing and table_lock (a waiting node is never freed); read with
	 * either. */
	bool pending;
	/* Directories: the listing readers go on with (dir.c), under
	 * fs->listing_lock; freed with the node. */
	struct dir_handle *listing;
	/* Open files (fs->pt_lock; see passthrough.c): those passed through
	 * to backing file pt_id, made for the object in pt_layer, and those
	 * served through the page cache. */
	uint32_t pt_opens;
	uint32_t cached_opens;
	int32_t pt_id;
	int pt_layer;
	/* fs->lru, by the last lookup that returned the node; never the root */
	struct ovl_node *lru_prev, *lru_next;
	bool on_lru;
};

/* Does an upper directory hold copies with an origin (so that lookups
 * there read the origin marks)? Not read yet, no, yes. */
enum { OVL_IMPURE_UNKNOWN, OVL_IMPURE_NO, OVL_IMPURE_YES };

struct ovl_pend;

struct ovl_fs {
	struct ovl_layer *layers;   /* [0] upper, [1..nlayers-1] lowers */
	int nlayers;
	int workfd;                 /* workdir/work, -1 when read-only */
	int indexfd;                /* workdir/ctool-index, -1 when read-only */
	int wdirfd;                 /* the workdir itself, -1 when read-only */
	bool readonly;
	bool nosync;                /* "volatile": no fsync to the upper */
	/* The upper's filesystem journals metadata in order after data that
	 * has been written back (ext4, xfs): a copy is made durable enough to
	 * be renamed into view by writing its data back and waiting, without
	 * a journal commit of its own. Set by the probe at mount. */
	bool sync_ordered;
	bool debug;
	/* The whiteout forms. wh_files and opq_files (write the file form of
	 * whiteouts, of the opaque mark) are set by the probe at mount, or
	 * later with the tree lock held for writing when the kernel form is
	 * refused. wh_read (lookups look for ".wh.NAME" files too) only ever
	 * goes from false to true, with __atomic calls: readdir sets it when
	 * it meets such a file. */
	bool wh_files;
	bool opq_files;
	bool wh_read;
	/* The upper refuses trusted.overlay.*: origins and impure marks are
	 * ctool's own (OVL_XATTR_CTOOL_*). Set by the probe at mount. */
	bool own_marks;
	double timeout;
	struct fuse_session *se;
	/* Passthrough (passthrough.c): wanted (not -o nopassthrough),
	 * offered by the kernel's INIT (wire.c reads it), in use (set at
	 * INIT; turned off at once, atomically, when the kernel refuses the
	 * backing ioctl). */
	bool pt_want;
	bool pt_offered;
	bool pt_on;
	/* The daemon clears set-id bits itself (FUSE_HANDLE_KILLPRIV_V2),
	 * taken up whenever the kernel's INIT offers it (wire.c). */
	bool kp_on;
	pthread_mutex_t pt_lock;    /* the nodes' open counts; never held
				     * with table_lock */
	pthread_cond_t pt_released; /* a node's last passthrough open closed */

	bool no_opendir;            /* the kernel opens directories without us */
	pthread_mutex_t listing_lock; /* the nodes' `listing`; held alone */

	pthread_rwlock_t tree_lock; /* the merged namespace; before table_lock */
	pthread_mutex_t table_lock; /* the node table and lifetimes */
	struct ovl_node **table;
	size_t table_size;
	size_t table_count;
	struct ovl_node *root;
	uint64_t tmp_seq;           /* atomic: temp name counter */

	/* Copies waiting to be shown (publish.c). The list, pend_seq and
	 * the nodes' `pending` change with tree_lock held for writing;
	 * pend_count, pend_synced and pend_on are atomic; pend_lock (after
	 * tree_lock) guards the publisher's wait and pend_stop. */
	bool pend_on;               /* copies may wait */
	bool pend_ready;            /* pend_lock and pend_cond made */
	unsigned int pend_ms;       /* how long the first of a batch waits */
	char boot_id[40];           /* "" when unknown: nothing waits */
	int syncfd;                 /* O_RDONLY on the workdir, for syncfs */
	int logfd;                  /* workdir/ctool-pending, O_APPEND */
	struct ovl_pend *pend_head, **pend_tail;
	size_t pend_count;
	uint64_t pend_seq;          /* copies made to wait, ever */
	uint64_t pend_synced;       /* those up to this one are durable */
	pthread_t pend_thread;
	bool pend_running;
	bool pend_stop;
	pthread_mutex_t pend_lock;
	pthread_cond_t pend_cond;

	/* Reclaim (nodes.c). Every node holds an fd and the kernel forgets
	 * inodes only under memory pressure: above nodes_high nodes the
	 * reclaimer thread asks the kernel to drop the unused inodes of the
	 * least recently looked up nodes, down to nodes_low, and the FORGETs
	 * that follow free them. The marks and reclaim_thread are set before
	 * the session runs, reclaim_inval before the reclaimer starts, which
	 * alone changes it later; the rest is under table_lock. */
	size_t nodes_high, nodes_low;
	bool reclaim_inval;         /* no FUSE_NOTIFY_PRUNE: invalidate names */
	pthread_t reclaim_thread;
	size_t node_count;          /* nodes in memory, the root aside */
	size_t nodes_freed;         /* ever: the reclaimer's progress */
	struct ovl_node *lru_head;  /* least recently looked up */
	struct ovl_node *lru_tail;
	pthread_cond_t reclaim_cond; /* wakes the reclaimer (with table_lock) */
	bool reclaim_running;
	bool reclaim_kicked;        /* woken for nodes_high, not idle since */
	bool reclaim_urgent;        /* a lookup ran out of fds */
	bool reclaim_stop;
};

/* ---- layers.c: inside one layer ---- */

struct ovl_hit {
	bool found;
	mode_t type;
	int layer;
	int last;
	bool indexed;
	dev_t ldev;
	ino_t lino;
	ino_t below;        /* a merged directory: the inode number of the topmost below it */
	bool upper_clear;   /* the upper was looked in and has nothing at the name,
			     * no whiteout of either form */
	struct stat st;     /* of the file that is shown */
};

/* One step of layer_walk: directory pfd (O_PATH) of layer `layer`. 0 goes
 * on to the next layer; anything else ends the walk. */
typedef int (*layer_step_fn)(struct ovl_fs *fs, int layer, int pfd, void *arg);

int layer_open_dir(struct ovl_fs *fs, int layer, const char *path, int *ret_fd);
int layer_walk(struct ovl_fs *fs, struct ovl_node *dir, int first, layer_step_fn fn, void *arg);
int layer_opendir(int dfd, const char *name, DIR **ret);
bool stat_is_whiteout(const struct stat *st);
bool layer_name_reserved(const char *name);
bool layer_wh_read(struct ovl_fs *fs);
void layer_wh_seen(struct ovl_fs *fs);
void layer_probe(struct ovl_fs *fs);
bool layer_has_wh_file(int dfd, const char *name);
int layer_wh_file_make(int dfd, const char *name);
int layer_wh_file_drop(int dfd, const char *name);
int layer_whiteout_tmp(struct ovl_fs *fs, char tmp[64]);
int layer_is_opaque(struct ovl_fs *fs, int dfd, const char *name);
int layer_lookup(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_hit *h);
int layer_lookup_fd(struct ovl_fs *fs, struct ovl_node *dir, const char *name, struct ovl_hit *h,
		    int *objfd);
int layer_lower_has(struct ovl_fs *fs, struct ovl_node *dir, const char *name);
int layer_tmp_name(struct ovl_fs *fs, char ret[64]);
void layer_index_name(dev_t dev, ino_t ino, char ret[64]);
int layer_make_whiteout(struct ovl_fs *fs, int dfd, const char *name);
int layer_check_dir(int dfd, const char *name);
int layer_clear_dir(int dfd, const char *name);
int layer_set_opaque(struct ovl_fs *fs, int dfd, const char *name, bool on);
char *proc_fd_path(int fd, char buf[32]);

/* ---- nodes.c: the node table ---- */

int nodes_init(struct ovl_fs *fs);
void nodes_free(struct ovl_fs *fs);
struct ovl_node *node_of(struct ovl_fs *fs, fuse_ino_t ino);
fuse_ino_t node_ino(struct ovl_fs *fs, struct ovl_node *n);
int node_path(struct ovl_node *n, char **ret);
int node_dir_fd(struct ovl_fs *fs, struct ovl_node *dir, int layer, char **path, int *own);
int node_dir_open(struct ovl_fs *fs, struct ovl_node *dir, int layer, char **path, int *ret_fd);
int node_parent_fd(struct ovl_fs *fs, struct ovl_node *n, int layer, const char **ret_name,
		   int *own);
int node_path_fd(struct ovl_fs *fs, struct ovl_node *n, int *own);
int node_get(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	     const struct ovl_hit *h, struct ovl_node **ret);
int node_get_fd(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		const struct ovl_hit *h, int *objfd, struct ovl_node **ret);
int node_new_tmpfile(struct ovl_fs *fs, struct ovl_node *parent, int *fd, struct ovl_node **ret);
int node_name_tmpfile(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *parent,
		      const char *name);
void node_forget(struct ovl_fs *fs, struct ovl_node *n, uint64_t nlookup);
void node_set_pending(struct ovl_fs *fs, struct ovl_node *n, bool on);
void node_unhash(struct ovl_fs *fs, struct ovl_node *n);
int node_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
	      const char *newname);
struct ovl_node *node_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
void node_put(struct ovl_fs *fs, struct ovl_node *n);
void node_refresh_below(struct ovl_fs *fs, struct ovl_node *top);
void node_inval_dir(struct ovl_fs *fs, struct ovl_node *n);
void node_mark_indexed(struct ovl_fs *fs, dev_t dev, ino_t ino, ino_t oino);
bool node_impure(struct ovl_fs *fs, struct ovl_node *dir);
int node_stat(struct ovl_fs *fs, struct ovl_node *n, struct stat *st);
int node_open(struct ovl_fs *fs, struct ovl_node *n, int flags, int *ret_fd);
bool node_live(const struct ovl_node *n);
int node_open_object(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int layer,
		     mode_t type, int *ret_fd);
void node_set_fd(struct ovl_node *n, int fd);
int nodes_reclaim_start(struct ovl_fs *fs);
void nodes_reclaim_stop(struct ovl_fs *fs);
bool node_reclaim_wait(struct ovl_fs *fs, int r, unsigned int attempt);

/* ---- dir.c: merged directories ---- */

struct ovl_dirent {
	char *name;
	ino_t ino;
	unsigned char type;  /* DT_* */
	int layer;           /* the topmost layer that has it */
	ino_t below;         /* a directory over one below: that one's inode number */
	uint64_t cookie;     /* readdir's offset after it (dir.c; set for readdir) */
};

struct ovl_dir {
	struct ovl_dirent *ents;
	size_t count;
};

int dir_list(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_dir *ret);
void dir_list_free(struct ovl_dir *d);
int dir_check_empty(struct ovl_fs *fs, struct ovl_node *dir);
void dir_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void dir_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi);
void dir_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi);
void dir_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void dir_listing_free(struct dir_handle *h);
void dir_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* ---- copyup.c: bringing lower files into the upper ---- */

int copyup_node(struct ovl_fs *fs, struct ovl_node *n);
#define COPYUP_EMPTY 1u
#define COPYUP_MAY_WAIT 2u
int copyup_node_flags(struct ovl_fs *fs, struct ovl_node *n, unsigned int flags);
int copyup_tree(struct ovl_fs *fs, struct ovl_node *n);
int copyup_xattrs(int src, int dst);
int copyup_clean_tree(struct ovl_fs *fs, int dfd, const char *name, bool top);
ino_t copyup_origin_ino(struct ovl_fs *fs, int fd, const struct stat *st);
bool copyup_read_impure(struct ovl_fs *fs, int fd);
void copyup_mark_impure(struct ovl_fs *fs, struct ovl_node *dir);
int copyup_sync(struct ovl_fs *fs, int fd);

/* ---- publish.c: copies shown in batches ---- */

/* How long the first copy of a batch waits to be shown, by default. */
#define PEND_MS_DEFAULT 25

void pend_init(struct ovl_fs *fs, int wfd, unsigned int ms);
void pend_recover(struct ovl_fs *fs, int wkfd);
bool pend_wanted(struct ovl_fs *fs, const struct ovl_node *n);
int pend_add(struct ovl_fs *fs, struct ovl_node *n, const char *tmp);
int pend_sync_one(struct ovl_fs *fs, int fd);
int pend_publish(struct ovl_fs *fs);
int pend_start(struct ovl_fs *fs);
void pend_stop(struct ovl_fs *fs);
void pend_free(struct ovl_fs *fs);

/* Show what waits before the upper's names are read or changed: the
 * tree lock held for writing. */
static inline int pend_settle(struct ovl_fs *fs)
{
	return fs->pend_head ? pend_publish(fs) : 0;
}

/* ---- passthrough.c: file data straight to the layer's file ---- */

/* A lower file is passed through from this size on. */
#define PT_LOWER_MIN (1024 * 1024)
/* fi->fh: the fd, and this bit when the open is passed through */
#define OVL_FH_PT (1ULL << 32)

static inline int fh_fd(uint64_t fh)
{
	return (int)(fh & 0x7fffffff);
}

int pt_cond_init(pthread_cond_t *c);
void pt_init(struct ovl_fs *fs);
int pt_busy(struct ovl_fs *fs, struct ovl_node *n, bool wait);
uint64_t pt_open(struct ovl_fs *fs, struct ovl_node *n, int fd, bool writes);
void pt_open_failed(struct ovl_fs *fs, struct ovl_node *n, uint64_t fh);
void pt_release(struct ovl_fs *fs, struct ovl_node *n, uint64_t fh);

/* ---- wire.c: the protocol words libfuse 3.14 lacks ---- */

int wire_setup(struct ovl_fs *fs);
/* What the kernel asks of a change to a file's set-id bits. */
enum ovl_kill {
	OVL_KILL_NONE,
	OVL_KILL,        /* clear them (a chown, or before a write) */
	OVL_KILL_NOCAP,  /* the same, and the caller lacks CAP_FSETID */
};
void wire_want_init(bool pt, bool kp);
int wire_kill_suidgid(void);
void wire_want_open(int32_t id);
void wire_cancel(void);

/* ---- ops.c / ops-ns.c: the FUSE operations ---- */

extern const struct fuse_lowlevel_ops ovl_ops;

int ops_entry(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	      struct fuse_entry_param *e);
void ops_fill_entry(struct ovl_fs *fs, struct ovl_node *n, const struct stat *st,
		    struct fuse_entry_param *e);
void ops_fix_stat(struct ovl_node *n, struct stat *st);
double ops_attr_timeout(struct ovl_fs *fs, const struct stat *st);
bool ops_xattr_private(const char *name);

void ns_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void ns_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void ns_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void ns_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void ns_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void ns_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ns_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
void ns_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

static inline struct ovl_fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Lock helpers: the namespace lock, shared or exclusive. */
static inline void tree_rdlock(struct ovl_fs *fs)
{
	(void)pthread_rwlock_rdlock(&fs->tree_lock);
}
static inline void tree_wrlock(struct ovl_fs *fs)
{
	(void)pthread_rwlock_wrlock(&fs->tree_lock);
}
static inline void tree_unlock(struct ovl_fs *fs)
{
	(void)pthread_rwlock_unlock(&fs->tree_lock);
}

#endif
