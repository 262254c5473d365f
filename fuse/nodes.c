/* The node table: one node per merged name the kernel holds, found by
 * (parent, name), with the kernel's lookup counts and the paths they
 * stand for. Lock order and what each lock covers: see ovl.h. */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>

#include "ovl.h"

#define TABLE_MIN 1024

static size_t name_hash(const struct ovl_node *parent, const char *name)
{
	uint64_t h = 14695981039346656037ULL ^ (uint64_t)(uintptr_t)parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

/* The node budget: half the open file limit (the other half is left to
 * open files and directory handles), or CTOOL_OVL_MAX_NODES. */
static void reclaim_marks(struct ovl_fs *fs)
{
	const char *env = getenv("CTOOL_OVL_MAX_NODES");
	unsigned long long max = 0;
	struct rlimit rl;
	char *end;

	if (env && *env) {
		errno = 0;
		max = strtoull(env, &end, 10);
		if (errno || *end)
			max = 0;
	}
	if (!max) {
		max = 1 << 20;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 << 20)
			max = rl.rlim_cur / 2;
	}
	if (max < 16)
		max = 16;
	fs->nodes_high = (size_t)max;
	fs->nodes_low = fs->nodes_high - fs->nodes_high / 4;
}

/* Set up the table and the root node (the layers are open). 0 or -errno. */
int nodes_init(struct ovl_fs *fs)
{
	pthread_condattr_t ca;
	struct ovl_node *root;

	fs->table_size = TABLE_MIN;
	fs->table = calloc(fs->table_size, sizeof(*fs->table));
	root = calloc(1, sizeof(*root));
	if (!fs->table || !root) {
		free(root);
		return -ENOMEM;
	}
	root->name = strdup("");
	if (!root->name) {
		free(root);
		return -ENOMEM;
	}
	root->type = S_IFDIR;
	root->layer = fs->readonly ? 1 : OVL_UPPER;
	root->last = fs->nlayers - 1;
	root->nlookup = 1;
	root->fd = fcntl(fs->layers[root->layer].fd, F_DUPFD_CLOEXEC, 3);
	fs->root = root;
	if (root->fd < 0)
		return -errno;
	if (pthread_rwlock_init(&fs->tree_lock, NULL) || pthread_mutex_init(&fs->table_lock, NULL) ||
	    pthread_mutex_init(&fs->pt_lock, NULL) || pt_cond_init(&fs->pt_released) ||
	    pthread_mutex_init(&fs->listing_lock, NULL))
		return -ENOMEM;
	if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
	    pthread_cond_init(&fs->reclaim_cond, &ca))
		return -ENOMEM;
	(void)pthread_condattr_destroy(&ca);
	reclaim_marks(fs);
	return 0;
}

/* Free every node (at exit, no request running). */
void nodes_free(struct ovl_fs *fs)
{
	size_t i;

	for (i = 0; fs->table && i < fs->table_size; i++) {
		struct ovl_node *n = fs->table[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			if (n->fd >= 0)
				(void)close(n->fd);
			dir_listing_free(n->listing);
			free(n->name);
			free(n);
		}
	}
	free(fs->table);
	fs->table = NULL;
	if (fs->root) {
		if (fs->root->fd >= 0)
			(void)close(fs->root->fd);
		dir_listing_free(fs->root->listing);
		free(fs->root->name);
		free(fs->root);
		fs->root = NULL;
	}
}

/* The node the kernel calls ino (the kernel holds it). */
struct ovl_node *node_of(struct ovl_fs *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return fs->root;
	return (struct ovl_node *)(uintptr_t)ino;
}

/* The kernel's name for n. */
fuse_ino_t node_ino(struct ovl_fs *fs, struct ovl_node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* Drop what the kernel keeps of directory n's listing (and its
 * attributes): the inode numbers it shows changed without a request on
 * it (a copy-up below it). The kernel drops the listing of a directory
 * whose entries it changes itself. Never for a transient node, which the
 * kernel does not know; nothing to do for one it has forgotten. */
void node_inval_dir(struct ovl_fs *fs, struct ovl_node *n)
{
	if (!n || n->transient || !fs->se)
		return;
	(void)fuse_lowlevel_notify_inval_inode(fs->se, node_ino(fs, n), 0, 0);
}

/* The path of n relative to a layer root ("." for the root) in a new
 * string *ret. Tree lock or table lock held. 0 or -errno. */
int node_path(struct ovl_node *n, char **ret)
{
	struct ovl_node *p;
	size_t len = 0, l;
	char *s, *end;

	if (!n->parent) {
		*ret = strdup(".");
		return *ret ? 0 : -ENOMEM;
	}
	for (p = n; p->parent; p = p->parent)
		len += strlen(p->name) + 1;
	if (len > 4096)
		return -ENAMETOOLONG;
	s = malloc(len);
	if (!s)
		return -ENOMEM;
	end = s + len - 1;
	*end = '\0';
	for (p = n; p->parent; p = p->parent) {
		l = strlen(p->name);
		end -= l;
		memcpy(end, p->name, l);
		if (end > s)
			*--end = '/';
	}
	*ret = s;
	return 0;
}

/* An O_PATH fd on directory node dir as `layer` holds it: dir's own fd
 * when dir's topmost object is there (no path to resolve, and the same
 * object the path would reach with the tree lock held), lent for as
 * long as the caller holds the tree lock and does not replace dir's fd;
 * else opened by dir's path (built once into *path for the caller to
 * free) and also put in *own, which the caller closes. Tree lock held.
 * The fd or -errno. */
int node_dir_fd(struct ovl_fs *fs, struct ovl_node *dir, int layer, char **path, int *own)
{
	int r;

	if (dir->fd >= 0 && dir->layer == layer && !dir->transient && S_ISDIR(dir->type))
		return dir->fd;
	if (!*path) {
		r = node_path(dir, path);
		if (r < 0)
			return r;
	}
	r = layer_open_dir(fs, layer, *path, own);
	return r < 0 ? r : *own;
}

/* node_dir_fd, always a fd of the caller's own. 0 or -errno. */
int node_dir_open(struct ovl_fs *fs, struct ovl_node *dir, int layer, char **path, int *ret_fd)
{
	int fd = -1, r;

	r = node_dir_fd(fs, dir, layer, path, &fd);
	if (r < 0)
		return r;
	if (fd < 0 && (fd = fcntl(r, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

/* n's parent directory in `layer` (O_PATH), lent or put in *own as
 * node_dir_fd says; *ret_name is n's name there (the root gives the
 * layer fd itself, lent, and "."). The fd or -errno. Tree lock held. */
int node_parent_fd(struct ovl_fs *fs, struct ovl_node *n, int layer, const char **ret_name,
		   int *own)
{
	_cleanup_free_ char *path = NULL;
	int fd;

	if (!n->parent) {
		if (layer < 0 || layer >= fs->nlayers || fs->layers[layer].fd < 0)
			return -ENOENT;
		*ret_name = ".";
		return fs->layers[layer].fd;
	}
	fd = node_dir_fd(fs, n->parent, layer, &path, own);
	if (fd >= 0)
		*ret_name = n->name;
	return fd;
}

static struct ovl_node **bucket(struct ovl_fs *fs, const struct ovl_node *parent, const char *name)
{
	return &fs->table[name_hash(parent, name) & (fs->table_size - 1)];
}

static struct ovl_node *table_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_node *n;

	for (n = *bucket(fs, parent, name); n; n = n->hnext)
		if (n->parent == parent && !strcmp(n->name, name))
			return n;
	return NULL;
}

static void table_insert(struct ovl_fs *fs, struct ovl_node *n)
{
	struct ovl_node **b = bucket(fs, n->parent, n->name);

	n->hnext = *b;
	*b = n;
	n->hashed = true;
	fs->table_count++;
}

static void table_remove(struct ovl_fs *fs, struct ovl_node *n)
{
	struct ovl_node **b;

	if (!n->hashed)
		return;
	for (b = bucket(fs, n->parent, n->name); *b; b = &(*b)->hnext) {
		if (*b == n) {
			*b = n->hnext;
			break;
		}
	}
	n->hnext = NULL;
	n->hashed = false;
	fs->table_count--;
}

/* The reclaim LRU: nodes by the last lookup that returned them, oldest
 * first (table lock held). */
static void lru_del(struct ovl_fs *fs, struct ovl_node *n)
{
	if (!n->on_lru)
		return;
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		fs->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		fs->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
	n->on_lru = false;
}

/* n is the most recently used now. O(1). */
static void lru_touch(struct ovl_fs *fs, struct ovl_node *n)
{
	if (fs->lru_tail == n)
		return;
	lru_del(fs, n);
	n->lru_prev = fs->lru_tail;
	if (fs->lru_tail)
		fs->lru_tail->lru_next = n;
	else
		fs->lru_head = n;
	fs->lru_tail = n;
	n->on_lru = true;
}

/* Wake the reclaimer once the table is over budget (table lock held):
 * one signal per busy spell, not one per new node. */
static void reclaim_kick(struct ovl_fs *fs)
{
	if (fs->node_count > fs->nodes_high && fs->reclaim_running && !fs->reclaim_kicked) {
		fs->reclaim_kicked = true;
		(void)pthread_cond_signal(&fs->reclaim_cond);
	}
}

/* Double the table when it gets crowded (table lock held). */
static void table_grow(struct ovl_fs *fs)
{
	struct ovl_node **old = fs->table, **nt, *n, *next;
	size_t oldsize = fs->table_size, i;

	if (fs->table_count < fs->table_size * 2)
		return;
	nt = calloc(oldsize * 2, sizeof(*nt));
	if (!nt)
		return;
	fs->table = nt;
	fs->table_size = oldsize * 2;
	fs->table_count = 0;
	for (i = 0; i < oldsize; i++) {
		for (n = old[i]; n; n = next) {
			next = n->hnext;
			table_insert(fs, n);
		}
	}
	free(old);
}

/* Free n and the ancestors it kept alive, when nothing holds them
 * (table lock held). */
static void node_try_free(struct ovl_fs *fs, struct ovl_node *n)
{
	while (n && n->parent && n->nlookup == 0 && n->children == 0 && n->pins == 0 &&
	       !n->pending) {
		struct ovl_node *p = n->parent;

		table_remove(fs, n);
		lru_del(fs, n);
		fs->node_count--;
		fs->nodes_freed++;
		if (n->fd >= 0)
			(void)close(n->fd);
		dir_listing_free(n->listing);
		free(n->name);
		free(n);
		p->children--;
		n = p;
	}
}

/* Does upper directory node `dir` hold copies with an origin (its impure
 * mark, read the first time it is asked)? Not a directory of the upper:
 * no. Tree lock held. */
bool node_impure(struct ovl_fs *fs, struct ovl_node *dir)
{
	uint8_t v = __atomic_load_n(&dir->impure, __ATOMIC_RELAXED);

	if (v == OVL_IMPURE_UNKNOWN) {
		if (dir->layer != OVL_UPPER || dir->fd < 0 || !S_ISDIR(dir->type))
			return false;
		v = copyup_read_impure(fs, dir->fd) ? OVL_IMPURE_YES : OVL_IMPURE_NO;
		__atomic_store_n(&dir->impure, v, __ATOMIC_RELAXED);
	}
	return v == OVL_IMPURE_YES;
}

/* The inode number that a node for hit h in `parent`, on object fd,
 * shows instead of its own, as the kernel's overlay does: an upper
 * directory over a lower one shows the lower's; a copy the origin it
 * records; a lower hard link in the index what its copy there records.
 * 0: its own. Only the copies in an impure directory are read (and new
 * hard links, which may be of a copy: their directory is marked then),
 * so a stat of a file that was never copied costs nothing more. Tree
 * lock held. */
static ino_t hit_oino(struct ovl_fs *fs, struct ovl_node *parent, const struct ovl_hit *h, int fd)
{
	_cleanup_close_ int ifd = -1;
	char idx[64];
	bool impure;
	ino_t ino;

	if (h->layer > OVL_UPPER) {
		if (!h->indexed)
			return 0;
		layer_index_name(h->ldev, h->lino, idx);
		ifd = openat(fs->indexfd, idx, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		return ifd < 0 ? 0 : copyup_origin_ino(fs, ifd, &h->st);
	}
	if (S_ISDIR(h->type) && h->last > OVL_UPPER)
		return h->below;
	impure = node_impure(fs, parent);
	if (!impure && !(S_ISREG(h->type) && h->st.st_nlink > 1))
		return 0;
	ino = copyup_origin_ino(fs, fd, &h->st);
	if (ino && !impure)
		copyup_mark_impure(fs, parent);
	return ino;
}

/* A new node `name` in `parent` as hit h describes it, on object *fd
 * (O_PATH, taken over when made), showing inode number oino (0: its
 * own), with one kernel lookup; not hashed. Table lock held. NULL when
 * out of memory. */
static struct ovl_node *node_alloc(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
				   const struct ovl_hit *h, int *fd, ino_t oino)
{
	struct ovl_node *n = calloc(1, sizeof(*n));

	if (n)
		n->name = strdup(name);
	if (!n || !n->name) {
		free(n);
		return NULL;
	}
	n->fd = TAKE_FD(*fd);
	n->parent = parent;
	n->type = h->type;
	n->layer = h->layer;
	n->last = h->last;
	n->indexed = h->indexed;
	n->ldev = h->ldev;
	n->lino = h->lino;
	n->oino = oino;
	n->nlookup = 1;
	parent->children++;
	fs->node_count++;
	return n;
}

/* The known node for `name` in `parent`, with one more kernel lookup
 * and made the most recently used; NULL when there is none. table_lock
 * held. */
static struct ovl_node *table_take(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_node *n = table_find(fs, parent, name);

	if (n) {
		n->nlookup++;
		lru_touch(fs, n);
	}
	return n;
}

/* The node for `name` in `parent` as hit h describes it, with one more
 * kernel lookup; made when new, on *objfd when that is an O_PATH fd on
 * the object (taken over; closed when not needed), else on the object
 * opened here. Tree lock held (read is enough). The existing node wins
 * when two lookups race. 0 or -errno. */
int node_get_fd(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		const struct ovl_hit *h, int *objfd, struct ovl_node **ret)
{
	_cleanup_close_ int fd = TAKE_FD(*objfd);
	struct ovl_node *n;
	unsigned int attempt = 0;
	ino_t oino;
	int r;

	(void)pthread_mutex_lock(&fs->table_lock);
	n = table_take(fs, parent, name);
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (n) {
		*ret = n;
		return 0;
	}
	/* the object itself, taken before the node exists: from now on the
	 * node acts on it, whatever happens to the name */
	while (fd < 0) {
		r = node_open_object(fs, parent, name, h->layer, h->type, &fd);
		if (r < 0 && !node_reclaim_wait(fs, r, attempt++))
			return r;
	}
	oino = hit_oino(fs, parent, h, fd);
	(void)pthread_mutex_lock(&fs->table_lock);
	n = table_take(fs, parent, name);
	if (n) {
		(void)pthread_mutex_unlock(&fs->table_lock);
		*ret = n;
		return 0;
	}
	n = node_alloc(fs, parent, name, h, &fd, oino);
	if (!n) {
		(void)pthread_mutex_unlock(&fs->table_lock);
		return -ENOMEM;
	}
	table_insert(fs, n);
	table_grow(fs);
	lru_touch(fs, n);
	reclaim_kick(fs);
	(void)pthread_mutex_unlock(&fs->table_lock);
	*ret = n;
	return 0;
}

/* node_get_fd, the object opened here. */
int node_get(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	     const struct ovl_hit *h, struct ovl_node **ret)
{
	int fd = -1;

	return node_get_fd(fs, parent, name, h, &fd, ret);
}

/* A node for an O_TMPFILE just made in the upper directory of `parent`,
 * on its object *fd (O_PATH, taken over when made), with one kernel
 * lookup. It has no name in the merged view: never hashed, it is found
 * by no lookup and no path is built from it; like a removed open file it
 * acts on its own fd, until a link names it (node_name_tmpfile). Tree
 * lock held for writing. 0 or -ENOMEM. */
int node_new_tmpfile(struct ovl_fs *fs, struct ovl_node *parent, int *fd, struct ovl_node **ret)
{
	const struct ovl_hit h = {
		.found = true, .type = S_IFREG, .layer = OVL_UPPER, .last = OVL_UPPER,
	};
	struct ovl_node *n;

	(void)pthread_mutex_lock(&fs->table_lock);
	/* "/": the name the kernel sent, which no entry can have */
	n = node_alloc(fs, parent, "/", &h, fd, 0);
	if (n) {
		n->tmpfile = true;
		reclaim_kick(fs);
	}
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (!n)
		return -ENOMEM;
	*ret = n;
	return 0;
}

/* The kernel drops nlookup references to n. */
void node_forget(struct ovl_fs *fs, struct ovl_node *n, uint64_t nlookup)
{
	if (n == fs->root)
		return;
	(void)pthread_mutex_lock(&fs->table_lock);
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	node_try_free(fs, n);
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* n's copy waits to be shown (on), or no longer (freed now when nothing
 * else holds it). Tree lock held for writing. */
void node_set_pending(struct ovl_fs *fs, struct ovl_node *n, bool on)
{
	(void)pthread_mutex_lock(&fs->table_lock);
	__atomic_store_n(&n->pending, on, __ATOMIC_RELAXED);
	if (!on)
		node_try_free(fs, n);
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* n's name is gone from the merged view: later lookups make a new node.
 * Tree lock held for writing. */
void node_unhash(struct ovl_fs *fs, struct ovl_node *n)
{
	(void)pthread_mutex_lock(&fs->table_lock);
	table_remove(fs, n);
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* The hashed node of `name` in `parent`, pinned (release with
 * node_put), or NULL. Tree lock held. */
struct ovl_node *node_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_node *n;

	(void)pthread_mutex_lock(&fs->table_lock);
	n = table_find(fs, parent, name);
	if (n)
		n->pins++;
	(void)pthread_mutex_unlock(&fs->table_lock);
	return n;
}

/* Drop a pin taken by node_find (n may be NULL). */
void node_put(struct ovl_fs *fs, struct ovl_node *n)
{
	if (!n)
		return;
	(void)pthread_mutex_lock(&fs->table_lock);
	n->pins--;
	node_try_free(fs, n);
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* n takes `name` (allocated, taken over) in `newparent`, hashed there
 * when `hash`. Table lock held. */
static void node_rename(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
			char *name, bool hash)
{
	struct ovl_node *old = n->parent;

	table_remove(fs, n);
	free(n->name);
	n->name = name;
	n->parent = newparent;
	newparent->children++;
	old->children--;
	if (hash)
		table_insert(fs, n);
	node_try_free(fs, old);
}

/* n is now `newname` in `newparent` (after a rename). Tree lock held for
 * writing. 0 or -ENOMEM (n unchanged). */
int node_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
	      const char *newname)
{
	char *name = strdup(newname);

	if (!name)
		return -ENOMEM;
	/* a copy (or a directory over a lower one) keeps the inode number
	 * of its origin where it goes: the directory it goes to is marked,
	 * as the kernel does, so that this holds after a remount too */
	if (n->oino && !n->transient)
		copyup_mark_impure(fs, newparent);
	(void)pthread_mutex_lock(&fs->table_lock);
	node_rename(fs, n, newparent, name, n->hashed);
	(void)pthread_mutex_unlock(&fs->table_lock);
	return 0;
}

/* Tmpfile node n has just been linked in as `name` in `parent`: it takes
 * that name, hashed as any node, with one more kernel lookup (the reply
 * to the link names n itself, so that the kernel keeps one inode). A
 * node still hashed there, whose name showed nothing, goes. Tree lock
 * held for writing. 0 or -ENOMEM. */
int node_name_tmpfile(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *parent,
		      const char *name)
{
	char *s = strdup(name);
	struct ovl_node *stale;

	if (!s)
		return -ENOMEM;
	(void)pthread_mutex_lock(&fs->table_lock);
	stale = table_find(fs, parent, name);
	if (stale)
		table_remove(fs, stale);
	node_rename(fs, n, parent, s, true);
	n->tmpfile = false;
	n->nlookup++;
	table_grow(fs);
	lru_touch(fs, n);
	(void)pthread_mutex_unlock(&fs->table_lock);
	return 0;
}

static int depth_of(const struct ovl_node *n)
{
	int d = 0;

	for (; n->parent; n = n->parent)
		d++;
	return d;
}

static bool is_below(const struct ovl_node *n, const struct ovl_node *top)
{
	for (n = n->parent; n; n = n->parent)
		if (n == top)
			return true;
	return false;
}

static int cmp_depth(const void *a, const void *b)
{
	int da = depth_of(*(struct ovl_node *const *)a), db = depth_of(*(struct ovl_node *const *)b);

	return (da > db) - (da < db);
}

/* Look again at every known node below `top`, whose layers changed (a
 * directory renamed or copied up with its tree), parents first. Tree lock
 * held for writing. Nodes whose name no longer shows are unhashed. */
void node_refresh_below(struct ovl_fs *fs, struct ovl_node *top)
{
	_cleanup_free_ struct ovl_node **list = NULL;
	size_t i, count = 0, cap = 0;
	struct ovl_node *n;

	(void)pthread_mutex_lock(&fs->table_lock);
	for (i = 0; i < fs->table_size; i++) {
		for (n = fs->table[i]; n; n = n->hnext) {
			if (!is_below(n, top))
				continue;
			if (count == cap) {
				struct ovl_node **nl;

				cap = cap ? cap * 2 : 64;
				nl = realloc(list, cap * sizeof(*nl));
				if (!nl)
					break;
				list = nl;
			}
			n->pins++;
			list[count++] = n;
		}
	}
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (count) /* list is NULL when nothing is below top */
		qsort(list, count, sizeof(*list), cmp_depth);
	node_inval_dir(fs, top); /* the inode numbers of its entries */
	for (i = 0; i < count; i++) {
		struct ovl_hit h;

		int fd = -1;

		n = list[i];
		if (!n->hashed)
			continue; /* below a node unhashed just before */
		if (S_ISDIR(n->type))
			node_inval_dir(fs, n);
		if (layer_lookup(fs, n->parent, n->name, &h) < 0 || !h.found ||
		    h.type != n->type ||
		    node_open_object(fs, n->parent, n->name, h.layer, h.type, &fd) < 0) {
			node_unhash(fs, n);
			continue;
		}
		node_set_fd(n, fd);
		n->layer = h.layer;
		n->last = h.last;
		n->indexed = h.indexed;
		n->ldev = h.ldev;
		n->lino = h.lino;
		n->oino = hit_oino(fs, n->parent, &h, n->fd);
		n->impure = OVL_IMPURE_UNKNOWN;
	}
	for (i = 0; i < count; i++)
		node_put(fs, list[i]);
}

/* Index name of n's lower origin. */
static void node_index_name(const struct ovl_node *n, char ret[64])
{
	layer_index_name(n->ldev, n->lino, ret);
}

/* stat n where it shows (tree lock held). 0 or -errno. */
int node_stat(struct ovl_fs *fs, struct ovl_node *n, struct stat *st)
{
	_cleanup_close_ int own = -1;
	const char *name;
	char idx[64];
	int pfd;

	if (n->indexed && n->layer > OVL_UPPER) {
		node_index_name(n, idx);
		if (fstatat(fs->indexfd, idx, st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	} else if (n->fd >= 0) {
		if (fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	} else {
		pfd = node_parent_fd(fs, n, n->layer, &name, &own);
		if (pfd < 0)
			return pfd;
		if (fstatat(pfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	ops_fix_stat(n, st);
	return 0;
}

/* Open n's object with `flags` (O_NOFOLLOW and O_CLOEXEC added): a
 * lower hard link already copied up is opened in the index (private to
 * the daemon), any other node is reopened from its own O_PATH fd, so an
 * open reaches the node's inode even when its name now shows something
 * else or nothing. Only a transient node is opened by name. The fd in
 * *ret_fd. Tree lock held. 0 or -errno. */
int node_open(struct ovl_fs *fs, struct ovl_node *n, int flags, int *ret_fd)
{
	_cleanup_close_ int own = -1;
	const char *name;
	char idx[64], p[32];
	int fd, pfd;

	flags |= O_NOFOLLOW | O_CLOEXEC;
	if (n->indexed && n->layer > OVL_UPPER) {
		node_index_name(n, idx);
		fd = openat(fs->indexfd, idx, flags);
	} else if (n->fd >= 0 && (flags & O_PATH)) {
		fd = fcntl(n->fd, F_DUPFD_CLOEXEC, 3);
	} else if (n->fd >= 0) {
		/* a magic link is refused with O_NOFOLLOW; a symlink is never
		 * opened for data */
		if (S_ISLNK(n->type))
			return -ELOOP;
		fd = open(proc_fd_path(n->fd, p), flags & ~O_NOFOLLOW);
	} else {
		pfd = node_parent_fd(fs, n, n->layer, &name, &own);
		if (pfd < 0)
			return pfd;
		fd = openat(pfd, name, flags);
	}
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

/* An O_PATH fd on n's object: n's own, lent for as long as the caller
 * holds the tree lock (and does not replace it), or one node_open makes
 * and puts in *own too, for the caller to close. The fd or -errno. Tree
 * lock held. */
int node_path_fd(struct ovl_fs *fs, struct ovl_node *n, int *own)
{
	int r;

	if (n->fd >= 0 && !(n->indexed && n->layer > OVL_UPPER))
		return n->fd;
	r = node_open(fs, n, O_PATH, own);
	return r < 0 ? r : *own;
}

/* The lower file dev:ino has just been copied into the index: every
 * known lower name of it now shows the index, with inode number oino
 * (what the copy records). Tree lock held for writing. */
void node_mark_indexed(struct ovl_fs *fs, dev_t dev, ino_t ino, ino_t oino)
{
	struct ovl_node *n;
	size_t i;

	(void)pthread_mutex_lock(&fs->table_lock);
	for (i = 0; i < fs->table_size; i++)
		for (n = fs->table[i]; n; n = n->hnext)
			if (n->layer > OVL_UPPER && n->ldev == dev && n->lino == ino &&
			    S_ISREG(n->type)) {
				n->indexed = true;
				n->oino = oino;
			}
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* Is n still in the merged view: hashed, and so are its ancestors (a
 * transient node stands for a name just looked up)? A node that is not
 * is only ever acted on through its own fd; no name is built from it.
 * Tree lock held. */
bool node_live(const struct ovl_node *n)
{
	for (; n->parent; n = n->parent)
		if (!n->hashed && !n->transient)
			return false;
	return true;
}

/* Open an O_PATH fd on what layer `layer` has at `name` in live directory
 * node `parent`, which must be of type `type` (the lookup said so; a
 * mismatch means it changed since: -ESTALE). The fd in *ret_fd. Tree
 * lock held. 0 or -errno. */
int node_open_object(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int layer,
		     mode_t type, int *ret_fd)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int own = -1, fd = -1;
	struct stat st;
	int pfd;

	pfd = node_dir_fd(fs, parent, layer, &path, &own);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((st.st_mode & S_IFMT) != type)
		return -ESTALE;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* n's object is now the one fd (O_PATH, taken over) points to: after a
 * copy-up or a refresh. A transient node keeps none. Tree lock held for
 * writing. */
void node_set_fd(struct ovl_node *n, int fd)
{
	if (n->transient) {
		if (fd >= 0)
			(void)close(fd);
		return;
	}
	if (n->fd >= 0)
		(void)close(n->fd);
	n->fd = fd;
}

/* ---- reclaim: keeping the node count (and so the fds) in budget ----
 *
 * The reclaimer thread asks the kernel to let go of the unused inodes of
 * the least recently looked up nodes; the kernel drops them and sends
 * FORGETs, which free the nodes and close their fds. The request goes
 * without any daemon lock held and never from a request handler.
 *
 * FUSE_NOTIFY_PRUNE (Linux 6.18) names inodes and drops only the dentries
 * nothing uses: an open file, a cwd or a mount point stays as it is, and
 * no directory lock is taken. An older kernel refuses it (-EINVAL); then
 * names are invalidated (FUSE_NOTIFY_INVAL_ENTRY), which unhashes the
 * dentry even when in use and detaches what is mounted on it: names that
 * mounts sit on are skipped then. */

#define RECLAIM_BATCH 256
#define RECLAIM_SETTLE_MS 20
#define OVL_NOTIFY_PRUNE 9          /* FUSE_NOTIFY_PRUNE of protocol 7.45 */

struct reclaim_name {
	struct ovl_node *parent;    /* pinned until the invalidation is sent */
	char name[NAME_MAX + 1];
};

struct reclaim_batch {
	uint64_t ids[RECLAIM_BATCH];
	struct reclaim_name names[RECLAIM_BATCH]; /* entry invalidation only */
};

/* Is `name` in `names` (NUL-separated, ending with an empty string)? */
static bool name_listed(const char *names, const char *name)
{
	for (; *names; names += strlen(names) + 1)
		if (!strcmp(names, name))
			return true;
	return false;
}

/* Append the last component of mountinfo path `mp` (octal escapes
 * undone) at *w. */
static void append_base(char **w, const char *mp)
{
	const char *p = strrchr(mp, '/');
	char *o = *w;

	for (p = p ? p + 1 : mp; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	if (o > *w)
		*o++ = '\0';
	*w = o;
}

/* The last components of the mount points that sit on a ctool-overlayfs
 * mount in this mount namespace, as a list for name_listed(), or NULL.
 * Any of our mounts counts: a name skipped for nothing only stays. */
static char *mounted_names(void)
{
	_cleanup_free_ unsigned long *ours = NULL;
	_cleanup_free_ char *mi = NULL;
	size_t len, nours = 0, lines = 1, i;
	unsigned long id, parent;
	char *line, *out, *w, *sep, mp[4096], type[64];

	if (read_file("/proc/self/mountinfo", &mi, &len) < 0)
		return NULL;
	for (i = 0; i < len; i++) {
		if (mi[i] == '\n') {
			mi[i] = '\0';
			lines++;
		}
	}
	ours = calloc(lines, sizeof(*ours));
	out = w = calloc(1, len + 1);
	if (!ours || !out) {
		free(out);
		return NULL;
	}
	for (line = mi; line < mi + len; line += strlen(line) + 1) {
		sep = strstr(line, " - ");
		if (sep && sscanf(line, "%lu", &id) == 1 && sscanf(sep, " - %63s", type) == 1 &&
		    !strcmp(type, "fuse.ctool-overlayfs"))
			ours[nours++] = id;
	}
	for (line = mi; line < mi + len; line += strlen(line) + 1) {
		if (sscanf(line, "%lu %lu %*s %*s %4095s", &id, &parent, mp) != 3)
			continue;
		for (i = 0; i < nours; i++)
			if (ours[i] == parent)
				break;
		if (i < nours)
			append_base(&w, mp);
	}
	*w = '\0';
	return out;
}

/* For an entry invalidation: copy n's name and pin its parent, unless a
 * mount may sit on the name. Table lock held. */
static bool reclaim_name_take(struct ovl_node *n, struct reclaim_name *o, const char *mnames)
{
	size_t len = strlen(n->name);

	if (len > NAME_MAX || name_listed(mnames, n->name))
		return false;
	memcpy(o->name, n->name, len + 1);
	o->parent = n->parent;
	o->parent->pins++;
	return true;
}

/* Take up to max of the least recently looked up nodes that the kernel
 * may let go into b: leaves of the node tree (a directory goes after the
 * nodes below it), files before directories, so that directories, cwds
 * among them, stay while files will do. Each one taken moves to the
 * recent end: one the kernel keeps (open, a cwd) is tried again only
 * after all the others. Table lock held. */
static size_t reclaim_pick(struct ovl_fs *fs, struct reclaim_batch *b, size_t max,
			   const char *mnames)
{
	struct ovl_node *n, *next, *last;
	size_t got = 0;
	int dirs;

	for (dirs = 0; dirs < 2 && got < max; dirs++) {
		last = fs->lru_tail;
		for (n = fs->lru_head; n && got < max; n = next) {
			next = n == last ? NULL : n->lru_next;
			if (!n->hashed && fs->reclaim_inval) {
				/* no name to invalidate: the kernel lets it
				 * go when unused */
				lru_del(fs, n);
				continue;
			}
			if ((S_ISDIR(n->type) ? 1 : 0) != dirs || n->children)
				continue;
			if (fs->reclaim_inval && !reclaim_name_take(n, &b->names[got], mnames))
				continue;
			b->ids[got++] = node_ino(fs, n);
			lru_touch(fs, n);
		}
	}
	return got;
}

/* FUSE_NOTIFY_PRUNE for the n inodes in b. 0 or -errno (-EINVAL from a
 * kernel that does not know it). */
static int reclaim_prune(struct ovl_fs *fs, struct reclaim_batch *b, size_t n)
{
	struct {
		struct fuse_out_header oh;
		uint32_t count;     /* struct fuse_notify_prune_out */
		uint32_t padding;
		uint64_t spare;
	} msg = { .count = (uint32_t)n };
	struct iovec iov[2] = {
		{ .iov_base = &msg, .iov_len = sizeof(msg) },
		{ .iov_base = b->ids, .iov_len = n * sizeof(b->ids[0]) },
	};

	msg.oh.len = (uint32_t)(sizeof(msg) + iov[1].iov_len);
	msg.oh.error = OVL_NOTIFY_PRUNE;
	msg.oh.unique = 0; /* a notification */
	if (writev(fuse_session_fd(fs->se), iov, 2) < 0)
		return -errno;
	return 0;
}

/* Invalidate the n names in b, then unpin their parents. */
static void reclaim_inval(struct ovl_fs *fs, struct reclaim_batch *b, size_t n)
{
	size_t i;

	for (i = 0; i < n && !fuse_session_exited(fs->se); i++) {
		struct reclaim_name *o = &b->names[i];

		/* -ENOENT when the kernel has no dentry there: nothing to do */
		(void)fuse_lowlevel_notify_inval_entry(fs->se, node_ino(fs, o->parent), o->name,
						       strlen(o->name));
	}
	(void)pthread_mutex_lock(&fs->table_lock);
	for (i = 0; i < n; i++) {
		b->names[i].parent->pins--;
		node_try_free(fs, b->names[i].parent);
	}
	(void)pthread_mutex_unlock(&fs->table_lock);
}

/* Ask the kernel to drop `need` nodes, a batch at a time. */
static void reclaim_pass(struct ovl_fs *fs, struct reclaim_batch *b, size_t need)
{
	_cleanup_free_ char *mnames = NULL;
	size_t n;
	int r;

	if (fs->reclaim_inval && !(mnames = mounted_names()))
		return; /* what is mounted where is unknown: invalidate nothing */
	while (need && !fuse_session_exited(fs->se)) {
		(void)pthread_mutex_lock(&fs->table_lock);
		n = reclaim_pick(fs, b, need < RECLAIM_BATCH ? need : RECLAIM_BATCH, mnames);
		(void)pthread_mutex_unlock(&fs->table_lock);
		if (!n)
			return;
		if (fs->reclaim_inval) {
			reclaim_inval(fs, b, n);
		} else if ((r = reclaim_prune(fs, b, n)) < 0) {
			if (r == -EINVAL) {
				fs->reclaim_inval = true;
				if (fs->debug)
					(void)fprintf(stderr, "ctool-overlayfs: no FUSE_NOTIFY_PRUNE, "
						      "invalidating names instead\n");
			}
			return;
		}
		need -= n;
	}
}

/* How many nodes to drop now (table lock held): down to the low mark once
 * over the high one; a quarter at least when a lookup ran out of fds. */
static size_t reclaim_need(const struct ovl_fs *fs)
{
	size_t c = fs->node_count, need = c > fs->nodes_low ? c - fs->nodes_low : 0;

	if (fs->reclaim_urgent)
		return need > c / 4 ? need : c / 4;
	return c > fs->nodes_high ? need : 0;
}

/* Sleep ms on the reclaimer's condition (table lock held): a stop or a
 * lookup out of fds ends it early. */
static void reclaim_sleep(struct ovl_fs *fs, long ms)
{
	struct timespec ts;

	if (fs->reclaim_stop)
		return;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&fs->reclaim_cond, &fs->table_lock, &ts);
}

static void *reclaim_main(void *arg)
{
	struct ovl_fs *fs = arg;
	struct reclaim_batch b;
	size_t need, freed;
	long backoff = 0;

	(void)pthread_mutex_lock(&fs->table_lock);
	while (!fs->reclaim_stop) {
		need = reclaim_need(fs);
		fs->reclaim_urgent = false;
		if (!need) {
			fs->reclaim_kicked = false;
			backoff = 0;
			(void)pthread_cond_wait(&fs->reclaim_cond, &fs->table_lock);
			continue;
		}
		freed = fs->nodes_freed;
		(void)pthread_mutex_unlock(&fs->table_lock);
		reclaim_pass(fs, &b, need);
		(void)pthread_mutex_lock(&fs->table_lock);
		/* the FORGETs come in on the request threads: let them land
		 * before counting again, or more would go than needed */
		reclaim_sleep(fs, RECLAIM_SETTLE_MS);
		if (fs->nodes_freed - freed < need / 4) {
			/* little went: what is left is in use (open files,
			 * cwds); do not scan for it again at once */
			backoff = backoff ? (backoff < 500 ? backoff * 2 : 1000) : 50;
			reclaim_sleep(fs, backoff);
		} else {
			backoff = 0;
		}
	}
	(void)pthread_mutex_unlock(&fs->table_lock);
	return NULL;
}

/* Start the reclaimer on the session (before its loop runs).
 * CTOOL_OVL_RECLAIM=off runs without one, =inval invalidates names even
 * where the kernel could prune (for tests). 0 or -errno. */
int nodes_reclaim_start(struct ovl_fs *fs)
{
	const char *mode = getenv("CTOOL_OVL_RECLAIM");
	sigset_t all, old;
	int r;

	if (mode && !strcmp(mode, "off"))
		return 0;
	fs->reclaim_inval = mode && !strcmp(mode, "inval");
	/* signals stay with the thread of the session loop, which they end */
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&fs->reclaim_thread, NULL, reclaim_main, fs);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	(void)pthread_mutex_lock(&fs->table_lock);
	fs->reclaim_running = true;
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (fs->debug)
		(void)fprintf(stderr, "ctool-overlayfs: at most %zu nodes (reclaimed down to %zu)\n",
			      fs->nodes_high, fs->nodes_low);
	return 0;
}

/* Stop the reclaimer, once the session loop has ended and before the
 * session goes (a notification in flight finishes first). */
void nodes_reclaim_stop(struct ovl_fs *fs)
{
	bool running;

	(void)pthread_mutex_lock(&fs->table_lock);
	running = fs->reclaim_running;
	fs->reclaim_running = false;
	fs->reclaim_stop = true;
	(void)pthread_cond_signal(&fs->reclaim_cond);
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (running)
		(void)pthread_join(fs->reclaim_thread, NULL);
}

/* A lookup or create got r: when that is -EMFILE or -ENFILE, wake the
 * reclaimer and give the kernel's FORGETs a moment to close fds. True
 * when worth another try (five tries, 200 ms in all, attempt counting
 * from 0). Tree lock may be held: reclaim never takes it. */
bool node_reclaim_wait(struct ovl_fs *fs, int r, unsigned int attempt)
{
	static const long wait_ms[] = { 5, 15, 30, 50, 100 };
	struct timespec ts = { 0 };
	bool running;

	if ((r != -EMFILE && r != -ENFILE) || attempt >= ARRAY_SIZE(wait_ms))
		return false;
	(void)pthread_mutex_lock(&fs->table_lock);
	running = fs->reclaim_running;
	if (running) {
		fs->reclaim_urgent = true;
		(void)pthread_cond_signal(&fs->reclaim_cond);
	}
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (!running)
		return false;
	ts.tv_nsec = wait_ms[attempt] * 1000000L;
	(void)nanosleep(&ts, NULL);
	return true;
}
