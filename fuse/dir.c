/* Merged directories: the union of a directory's layers, topmost first,
 * each name once, whiteouts (of either form) hiding what is below them. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ovl.h"

struct raw_ent {
	char *name;
	ino_t ino;
	unsigned char type;
	bool whiteout;
	int layer;
};

struct raw_list {
	struct raw_ent *v;
	size_t count, cap;
};

static int raw_add(struct raw_list *l, const char *name, ino_t ino, unsigned char type, bool wh,
		   int layer)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct raw_ent *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->count].name = strdup(name);
	if (!l->v[l->count].name)
		return -ENOMEM;
	l->v[l->count].ino = ino;
	l->v[l->count].type = type;
	l->v[l->count].whiteout = wh;
	l->v[l->count].layer = layer;
	l->count++;
	return 0;
}

static void raw_free(struct raw_list *l)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		free(l->v[i].name);
	free(l->v);
}

/* Append the entries of directory pfd (O_PATH) of layer `layer` to the
 * raw_list arg (a layer_walk step). A ".wh.NAME" file is not listed but
 * counts as a whiteout of NAME, after the layer's own entries: NAME
 * itself, when there too, wins (see layer_lookup). 0 or -errno. */
static int read_layer(struct ovl_fs *fs, int layer, int pfd, void *arg)
{
	struct raw_list *l = arg, whs = { 0 };
	struct dirent *de;
	struct stat st;
	size_t i;
	DIR *d;
	int fd, r;

	r = layer_opendir(pfd, ".", &d);
	if (r < 0)
		return r;
	fd = dirfd(d);
	while ((de = readdir(d))) {
		bool wh = false;
		unsigned char type = de->d_type;
		const char *name = de->d_name + sizeof(OVL_WH_PREFIX) - 1;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (layer_name_reserved(de->d_name)) {
			layer_wh_seen(fs);
			if (!name[0] || layer_name_reserved(name))
				continue; /* ".wh..wh..opq" and the like */
			r = raw_add(&whs, name, 0, DT_UNKNOWN, true, layer);
			if (r < 0)
				break;
			continue;
		}
		if (type == DT_CHR || type == DT_UNKNOWN) {
			if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			wh = stat_is_whiteout(&st);
			type = (unsigned char)IFTODT(st.st_mode);
		}
		r = raw_add(l, de->d_name, de->d_ino, type, wh, layer);
		if (r < 0)
			break;
	}
	(void)closedir(d);
	for (i = 0; r == 0 && i < whs.count; i++)
		r = raw_add(l, whs.v[i].name, 0, DT_UNKNOWN, true, layer);
	raw_free(&whs);
	return r;
}

static int cmp_name(const void *a, const void *b, void *arg)
{
	const struct raw_ent *v = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(v[x].name, v[y].name);

	if (c)
		return c;
	return (x > y) - (x < y);
}

/* The inode number of the directory that the first of the run of equal
 * names from sorted index i merges with: the next one of a lower layer,
 * when both are directories (0 otherwise). */
static ino_t below_of(const struct raw_list *l, const size_t *idx, size_t i)
{
	const struct raw_ent *top = &l->v[idx[i]], *e;

	if (top->type != DT_DIR)
		return 0;
	for (i++; i < l->count && !strcmp(l->v[idx[i]].name, top->name); i++) {
		e = &l->v[idx[i]];
		if (e->layer > top->layer)
			return e->type == DT_DIR && !e->whiteout ? e->ino : 0;
	}
	return 0;
}

/* Keep the first occurrence of each name (upper first), drop the
 * whiteouts, keep the discovery order: the kept names move into *ret. */
static int merge(struct raw_list *l, struct ovl_dir *ret)
{
	_cleanup_free_ size_t *idx = NULL;
	_cleanup_free_ bool *keep = NULL;
	_cleanup_free_ ino_t *below = NULL;
	struct ovl_dirent *v;
	size_t i, n = 0;

	idx = calloc(l->count + 1, sizeof(*idx));
	keep = calloc(l->count + 1, sizeof(*keep));
	below = calloc(l->count + 1, sizeof(*below));
	v = calloc(l->count + 1, sizeof(*v));
	if (!idx || !keep || !below || !v) {
		free(v);
		return -ENOMEM;
	}
	for (i = 0; i < l->count; i++)
		idx[i] = i;
	qsort_r(idx, l->count, sizeof(*idx), cmp_name, l->v);
	for (i = 0; i < l->count; i++) {
		bool dup = i > 0 && !strcmp(l->v[idx[i - 1]].name, l->v[idx[i]].name);

		keep[idx[i]] = !dup && !l->v[idx[i]].whiteout;
		if (keep[idx[i]])
			below[idx[i]] = below_of(l, idx, i);
	}
	for (i = 0; i < l->count; i++) {
		if (!keep[i])
			continue;
		v[n].name = TAKE_PTR(l->v[i].name);
		v[n].ino = l->v[i].ino;
		v[n].type = l->v[i].type;
		v[n].layer = l->v[i].layer;
		v[n].below = below[i];
		n++;
	}
	ret->ents = v;
	ret->count = n;
	return 0;
}

/* The merged listing of directory node `dir` (without "." and "..") into
 * *ret, to free with dir_list_free. Tree lock held. 0 or -errno. */
int dir_list(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_dir *ret)
{
	struct raw_list l = { 0 };
	int r;

	r = layer_walk(fs, dir, dir->layer, read_layer, &l);
	if (r == 0)
		r = merge(&l, ret);
	raw_free(&l);
	return r;
}

/* Free a listing (NULL-safe contents). */
void dir_list_free(struct ovl_dir *d)
{
	size_t i;

	for (i = 0; d->ents && i < d->count; i++)
		free(d->ents[i].name);
	free(d->ents);
	d->ents = NULL;
	d->count = 0;
}

/* 0 when `dir` shows no entry in the merged view, -ENOTEMPTY otherwise
 * (or -errno). Tree lock held. */
int dir_check_empty(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct ovl_dir d = { 0 };
	int r;

	r = dir_list(fs, dir, &d);
	if (r < 0)
		return r;
	r = d.count ? -ENOTEMPTY : 0;
	dir_list_free(&d);
	return r;
}

/* An open directory: the listing taken when reading starts at 0, and
 * the inode numbers of "." and "..". */
struct dir_handle {
	struct ovl_dir d;
	bool loaded;
	ino_t dots[2];
};

/* The inode number an upper entry e of directory `dir` (in the upper at
 * upfd) that the kernel does not know shows to stat (see hit_oino):
 * that of the directory below it that it merges with, or of the origin
 * it records. */
static ino_t upper_entry_ino(struct ovl_fs *fs, struct ovl_node *dir, int upfd,
			     const struct ovl_dirent *e)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	ino_t ino;

	if (e->below && layer_is_opaque(fs, upfd, e->name) == 0)
		return e->below;
	if (!node_impure(fs, dir))
		return e->ino;
	fd = openat(upfd, e->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return e->ino;
	ino = copyup_origin_ino(fs, fd, &st);
	return ino ? ino : e->ino;
}

/* Give the entries of listing d of `dir` the inode numbers stat shows for
 * them, as the kernel's overlay does: a readdir read from the layers
 * shows those of the objects it found, but an upper directory over a
 * lower one shows the lower's, a copy its origin's. Tree lock held. */
static void fix_inos(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_dir *d)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int upfd = -1;
	bool impure = node_impure(fs, dir);
	struct ovl_node *n;
	size_t i;

	for (i = 0; i < d->count; i++) {
		struct ovl_dirent *e = &d->ents[i];

		/* nothing else shows another number (see hit_oino) */
		if (e->layer != OVL_UPPER || (!e->below && !impure))
			continue;
		n = node_find(fs, dir, e->name);
		if (n) {
			if (n->oino)
				e->ino = n->oino;
			node_put(fs, n);
			continue;
		}
		if (upfd < 0 && node_dir_open(fs, dir, OVL_UPPER, &path, &upfd) < 0)
			return;
		e->ino = upper_entry_ino(fs, dir, upfd, e);
	}
}

/* The inode number stat shows for n, or 1 when it cannot say. */
static ino_t shown_ino(struct ovl_fs *fs, struct ovl_node *n)
{
	struct stat st;

	return node_stat(fs, n, &st) == 0 ? st.st_ino : 1;
}

/* Readdir's offset after the entry `name`: a hash of the name (FNV-1a),
 * from 3 up (0 is the start, 1 and 2 follow "." and ".."), so that a
 * reader resumes after the same name whatever listing serves its next
 * call: one read anew after entries came and went skips or repeats none
 * of the others, as with ext4's hashed offsets. */
static uint64_t name_cookie(const char *name)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (h >> 2) + 3;
}

static int cookie_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct ovl_dirent *)a)->cookie;
	uint64_t y = ((const struct ovl_dirent *)b)->cookie;

	return x < y ? -1 : x > y;
}

/* The index in h's listing of the first entry after offset off (> 2). */
static size_t cookie_seek(const struct dir_handle *h, off_t off)
{
	size_t lo = 0, hi = h->d.count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (h->d.ents[mid].cookie <= (uint64_t)off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Read the listing of `dir` into h, in offset order. Tree lock held. 0
 * or -errno. */
static int load(struct ovl_fs *fs, struct ovl_node *dir, struct dir_handle *h)
{
	size_t i;
	int r;

	dir_list_free(&h->d);
	r = dir_list(fs, dir, &h->d);
	h->loaded = r == 0;
	if (r < 0)
		return r;
	fix_inos(fs, dir, &h->d);
	for (i = 0; i < h->d.count; i++)
		h->d.ents[i].cookie = name_cookie(h->d.ents[i].name);
	if (h->d.count > 1)
		qsort(h->d.ents, h->d.count, sizeof(*h->d.ents), cookie_cmp);
	h->dots[0] = shown_ino(fs, dir);
	h->dots[1] = dir->parent ? shown_ino(fs, dir->parent) : h->dots[0];
	return 0;
}

/* opendir. The kernel asks for no handle (FUSE_CAP_NO_OPENDIR_SUPPORT,
 * Linux 5.1): ENOSYS once, and it sends neither OPENDIR nor RELEASEDIR
 * again, two requests saved on every directory a walk opens, and keeps
 * listings as below. Else a handle with no state, and the same flags. */
void dir_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);

	(void)ino;
	if (fs->no_opendir) {
		(void)fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->fh = 0;
	/* the kernel keeps the listing: every change to the entries is made
	 * through this mount, and the kernel drops the listing when it makes
	 * one itself; the daemon drops it when it changes the inode numbers
	 * shown (node_inval_dir) */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	(void)fuse_reply_open(req, fi);
}

/* The listing a reader of dir goes on with, taken from dir (NULL when
 * there is none: the reader reads it anew). */
static struct dir_handle *listing_take(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct dir_handle *h;

	(void)pthread_mutex_lock(&fs->listing_lock);
	h = dir->listing;
	dir->listing = NULL;
	(void)pthread_mutex_unlock(&fs->listing_lock);
	return h;
}

/* Keep listing h on dir for the reader's next call, unless another one
 * is kept there already; then h is freed. */
static void listing_keep(struct ovl_fs *fs, struct ovl_node *dir, struct dir_handle *h)
{
	(void)pthread_mutex_lock(&fs->listing_lock);
	if (!dir->listing) {
		dir->listing = h;
		h = NULL;
	}
	(void)pthread_mutex_unlock(&fs->listing_lock);
	dir_listing_free(h);
}

/* Free a listing kept on a node (NULL is fine). */
void dir_listing_free(struct dir_handle *h)
{
	if (!h)
		return;
	dir_list_free(&h->d);
	free(h);
}

static void dir_fill(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi, bool plus)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *dir = node_of(fs, ino);
	struct dir_handle *h;
	_cleanup_free_ char *buf = NULL;
	size_t used = 0, i;
	int r = 0;

	(void)fi;
	buf = malloc(size);
	h = listing_take(fs, dir);
	if (!h)
		h = calloc(1, sizeof(*h));
	if (!buf || !h) {
		dir_listing_free(h);
		(void)fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Readers of a directory share the listing kept on its node, read
	 * anew from offset 0 or when none is kept (another reader holds it
	 * this moment); offsets are name hashes, so any listing resumes a
	 * reader right after the last name it got. */
	tree_rdlock(fs);
	if (!node_live(dir)) {
		/* removed: its old name is not it any more */
		dir_list_free(&h->d);
		h->loaded = false;
		r = -ENOENT;
	} else if (off == 0 || !h->loaded) {
		r = load(fs, dir, h);
	}
	/* i: 0 ".", 1 "..", then the entries from 2 */
	i = r < 0 ? 0 : off <= 2 ? (size_t)off : cookie_seek(h, off) + 2;
	for (; r == 0 && i < h->d.count + 2; i++) {
		struct fuse_entry_param e = { 0 };
		const char *name = i == 0 ? "." : i == 1 ? ".." : h->d.ents[i - 2].name;
		off_t next = i < 2 ? (off_t)i + 1 : (off_t)h->d.ents[i - 2].cookie;
		size_t need;

		e.attr.st_ino = i < 2 ? h->dots[i] : h->d.ents[i - 2].ino;
		e.attr.st_mode = i < 2 ? S_IFDIR : (mode_t)DTTOIF(h->d.ents[i - 2].type);
		if (!plus) {
			need = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, next);
		} else {
			if (i >= 2 && ops_entry(fs, dir, name, &e) < 0)
				continue; /* vanished: skip it */
			need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
			if (need > size - used && e.ino)
				node_forget(fs, node_of(fs, e.ino), 1);
		}
		if (need > size - used)
			break;
		used += need;
	}
	tree_unlock(fs);
	/* kept for the next call until the end is read */
	if (r == 0 && used > 0)
		listing_keep(fs, dir, h);
	else
		dir_listing_free(h);
	if (r < 0 && used == 0)
		(void)fuse_reply_err(req, -r);
	else
		(void)fuse_reply_buf(req, buf, used);
}

/* readdir: the merged listing from offset off. */
void dir_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	dir_fill(req, ino, size, off, fi, false);
}

/* readdirplus: the same, each entry looked up (one kernel lookup each). */
void dir_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	dir_fill(req, ino, size, off, fi, true);
}

/* releasedir: nothing to drop. */
void dir_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	(void)fuse_reply_err(req, 0);
}

/* fsyncdir: sync the upper directory when there is one (not with
 * "volatile"). */
void dir_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ovl_fs *fs = req_fs(req);
	struct ovl_node *n = node_of(fs, ino);
	_cleanup_close_ int fd = -1;
	int r = 0;

	(void)fi;
	if (fs->nosync) {
		(void)fuse_reply_err(req, 0);
		return;
	}
	tree_rdlock(fs);
	if (n->layer == OVL_UPPER)
		r = node_open(fs, n, O_RDONLY | O_DIRECTORY, &fd);
	tree_unlock(fs);
	if (r == 0 && fd >= 0 && (datasync ? fdatasync(fd) : fsync(fd)) < 0)
		r = -errno;
	(void)fuse_reply_err(req, -r);
}
