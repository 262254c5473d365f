/* The node table: one node per merged name the kernel holds, found by
 * (parent, name), with the kernel's lookup counts and the paths they
 * stand for. Lock order and what each lock covers: see ovl.h. */
#include "config.h"

#include <fcntl.h>
#include <string.h>

#include "ovl.h"

#define TABLE_MIN 1024

static size_t name_hash(const struct ovl_node *parent, const char *name)
{
	uint64_t h = 14695981039346656037ULL ^ (uint64_t)(uintptr_t)parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

/* Set up the table and the root node (the layers are open). 0 or -errno. */
int nodes_init(struct ovl_fs *fs)
{
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
	    pthread_mutex_init(&fs->pt_lock, NULL) || pt_cond_init(&fs->pt_released))
		return -ENOMEM;
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
			free(n->name);
			free(n);
		}
	}
	free(fs->table);
	fs->table = NULL;
	if (fs->root) {
		if (fs->root->fd >= 0)
			(void)close(fs->root->fd);
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

/* Open n's parent directory in `layer` (O_PATH); *ret_name is n's name
 * there (the root gives the layer fd itself and "."). Returns the fd or
 * -errno. Tree lock held. */
int node_parent_fd(struct ovl_fs *fs, struct ovl_node *n, int layer, const char **ret_name)
{
	_cleanup_free_ char *path = NULL;
	int fd, r;

	if (!n->parent) {
		if (layer < 0 || layer >= fs->nlayers || fs->layers[layer].fd < 0)
			return -ENOENT;
		fd = fcntl(fs->layers[layer].fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		*ret_name = ".";
		return fd;
	}
	r = node_path(n->parent, &path);
	if (r < 0)
		return r;
	r = layer_open_dir(fs, layer, path, &fd);
	if (r < 0)
		return r;
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
	while (n && n->parent && n->nlookup == 0 && n->children == 0 && n->pins == 0) {
		struct ovl_node *p = n->parent;

		table_remove(fs, n);
		if (n->fd >= 0)
			(void)close(n->fd);
		free(n->name);
		free(n);
		p->children--;
		n = p;
	}
}

/* The node for `name` in `parent` as hit h describes it, with one more
 * kernel lookup; made when new. Tree lock held (read is enough). The
 * existing node wins when two lookups race. 0 or -errno. */
int node_get(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	     const struct ovl_hit *h, struct ovl_node **ret)
{
	_cleanup_close_ int fd = -1;
	struct ovl_node *n;
	int r;

	(void)pthread_mutex_lock(&fs->table_lock);
	n = table_find(fs, parent, name);
	if (n)
		n->nlookup++;
	(void)pthread_mutex_unlock(&fs->table_lock);
	if (n) {
		*ret = n;
		return 0;
	}
	/* the object itself, taken before the node exists: from now on the
	 * node acts on it, whatever happens to the name */
	r = node_open_object(fs, parent, name, h->layer, h->type, &fd);
	if (r < 0)
		return r;
	(void)pthread_mutex_lock(&fs->table_lock);
	n = table_find(fs, parent, name);
	if (n) {
		n->nlookup++;
		(void)pthread_mutex_unlock(&fs->table_lock);
		*ret = n;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (n)
		n->name = strdup(name);
	if (!n || !n->name) {
		(void)pthread_mutex_unlock(&fs->table_lock);
		free(n);
		return -ENOMEM;
	}
	n->fd = TAKE_FD(fd);
	n->parent = parent;
	n->type = h->type;
	n->layer = h->layer;
	n->last = h->last;
	n->indexed = h->indexed;
	n->ldev = h->ldev;
	n->lino = h->lino;
	n->nlookup = 1;
	parent->children++;
	table_insert(fs, n);
	table_grow(fs);
	(void)pthread_mutex_unlock(&fs->table_lock);
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

/* n is now `newname` in `newparent` (after a rename). Tree lock held for
 * writing. 0 or -ENOMEM (n unchanged). */
int node_move(struct ovl_fs *fs, struct ovl_node *n, struct ovl_node *newparent,
	      const char *newname)
{
	char *name = strdup(newname);
	struct ovl_node *old;
	bool was_hashed;

	if (!name)
		return -ENOMEM;
	(void)pthread_mutex_lock(&fs->table_lock);
	was_hashed = n->hashed;
	table_remove(fs, n);
	old = n->parent;
	free(n->name);
	n->name = name;
	n->parent = newparent;
	newparent->children++;
	old->children--;
	if (was_hashed)
		table_insert(fs, n);
	node_try_free(fs, old);
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
	_cleanup_close_ int pfd = -1;
	const char *name;
	char idx[64];

	if (n->indexed && n->layer > OVL_UPPER) {
		node_index_name(n, idx);
		if (fstatat(fs->indexfd, idx, st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	} else if (n->fd >= 0) {
		if (fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	} else {
		pfd = node_parent_fd(fs, n, n->layer, &name);
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
	_cleanup_close_ int pfd = -1;
	const char *name;
	char idx[64], p[32];
	int fd;

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
		pfd = node_parent_fd(fs, n, n->layer, &name);
		if (pfd < 0)
			return pfd;
		fd = openat(pfd, name, flags);
	}
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

/* The lower file dev:ino has just been copied into the index: every
 * known lower name of it now shows the index. Tree lock held for
 * writing. */
void node_mark_indexed(struct ovl_fs *fs, dev_t dev, ino_t ino)
{
	struct ovl_node *n;
	size_t i;

	(void)pthread_mutex_lock(&fs->table_lock);
	for (i = 0; i < fs->table_size; i++)
		for (n = fs->table[i]; n; n = n->hnext)
			if (n->layer > OVL_UPPER && n->ldev == dev && n->lino == ino &&
			    S_ISREG(n->type))
				n->indexed = true;
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
	_cleanup_close_ int pfd = -1, fd = -1;
	struct stat st;
	int r;

	r = node_path(parent, &path);
	if (r < 0)
		return r;
	r = layer_open_dir(fs, layer, path, &pfd);
	if (r < 0)
		return r;
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
