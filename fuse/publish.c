/* Copies shown in batches.
 *
 * A copy-up must never show a copy that a crash can leave without its
 * data, so a copy is made durable before it is renamed into view. Made
 * durable one at a time, as the kernel overlay does, that is a journal
 * commit or a disk cache flush per copy: half a millisecond on a virtual
 * disk, more than the copy itself. So a regular file's copy stays under
 * its temp name in workdir/work for a while, and its node acts on it
 * there: data, attributes and xattrs reach it through the node's fd, as
 * they would in the upper. A publisher thread makes every waiting copy
 * durable with one syncfs() of the upper, at most fs->pend_ms after the
 * first of them was made, then renames them into view.
 *
 * What must see the upper's names right publishes what waits first: the
 * operations that change names (all run with the tree lock held for
 * writing), an fsync of a waiting file, and the unmount. What the view
 * shows meanwhile is right: a lookup of a waiting name answers with its
 * node and the copy's attributes (ops_entry), a listing shows the lower
 * name with the inode number the copy shows too (its recorded origin),
 * and the node is never freed while its copy waits.
 *
 * A crash: each waiting copy is logged in workdir/ctool-pending (a
 * header line with the kernel's boot id, then "TMP\0PATH\0" per copy,
 * PATH its place in the upper), which is emptied when none waits. The
 * next mount shows a logged copy of this boot, whose data the page cache
 * kept when the daemon died, where its name is still free, after a
 * syncfs; copies of an earlier boot may have lost their data and go with
 * the rest of the workdir, leaving the lower files as they were.
 *
 * Lock order: tree_lock, then pend_lock (which only guards the wait of
 * the publisher). The list and each node's `pending` change with the
 * tree lock held for writing (and `pending` with table_lock as well).
 */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ovl.h"

/* A waiting copy: node n shows workdir/work/tmp. */
struct ovl_pend {
	struct ovl_node *n;
	struct ovl_pend *next;
	uint64_t seq;
	char tmp[64];
};

/* Set up batching for a mount with an upper, copies waiting up to ms
 * (0: none waits): the boot id and an fd to sync the upper's filesystem
 * with. Without either, each copy is shown at once, durable first, and
 * none left waiting is recovered. wfd is the workdir. */
void pend_init(struct ovl_fs *fs, int wfd, unsigned int ms)
{
	char p[32];

	fs->pend_tail = &fs->pend_head;
	fs->syncfd = fs->logfd = -1;
	if (pthread_mutex_init(&fs->pend_lock, NULL) != 0)
		return;
	if (pt_cond_init(&fs->pend_cond) != 0) {
		(void)pthread_mutex_destroy(&fs->pend_lock);
		return;
	}
	fs->pend_ready = true;
	boot_id(fs->boot_id);
	if (strlen(fs->boot_id) != 36)
		return;
	fs->syncfd = open(proc_fd_path(wfd, p), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->syncfd < 0)
		return;
	fs->logfd = openat(wfd, PEND_LOG_NAME, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
			   0600);
	if (fs->logfd < 0) {
		(void)close(fs->syncfd);
		fs->syncfd = -1;
		return;
	}
	fs->pend_ms = ms;
	fs->pend_on = ms > 0 && !fs->nosync;
}

/* Can node n's copy (a regular file with one name) wait? */
bool pend_wanted(struct ovl_fs *fs, const struct ovl_node *n)
{
	return __atomic_load_n(&fs->pend_on, __ATOMIC_RELAXED) && !n->transient && n->hashed &&
	       n->parent;
}

/* Empty the log but for its header: no copy waits. A log that cannot
 * be made right could not bring copies back after a crash: then no copy
 * waits any more. */
static void pend_log_reset(struct ovl_fs *fs)
{
	char h[PEND_LOG_HEADER];

	memcpy(h, fs->boot_id, PEND_LOG_HEADER - 1);
	h[PEND_LOG_HEADER - 1] = '\n';
	if (ftruncate(fs->logfd, 0) < 0 || write(fs->logfd, h, sizeof(h)) != (ssize_t)sizeof(h))
		__atomic_store_n(&fs->pend_on, false, __ATOMIC_RELAXED);
}

/* Log copy workdir/work/tmp as node n's, waiting. 0 or -errno: then it
 * is shown at once. */
static int pend_log(struct ovl_fs *fs, struct ovl_node *n, const char *tmp)
{
	_cleanup_free_ char *path = NULL;
	struct iovec v[2];
	ssize_t w;
	int r;

	r = node_path(n, &path);
	if (r < 0)
		return r;
	v[0] = (struct iovec){ .iov_base = (void *)tmp, .iov_len = strlen(tmp) + 1 };
	v[1] = (struct iovec){ .iov_base = path, .iov_len = strlen(path) + 1 };
	w = writev(fs->logfd, v, 2);
	if (w == (ssize_t)(v[0].iov_len + v[1].iov_len))
		return 0;
	/* a record cut short ends what recovery reads: none may follow */
	r = w < 0 ? -errno : -EIO;
	__atomic_store_n(&fs->pend_on, false, __ATOMIC_RELAXED);
	return r;
}

/* Node n's copy, made as workdir/work/tmp, waits to be shown. Tree lock
 * held for writing. 0, or -errno when it cannot wait: the caller shows it
 * at once. */
int pend_add(struct ovl_fs *fs, struct ovl_node *n, const char *tmp)
{
	struct ovl_pend *p;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	r = pend_log(fs, n, tmp);
	if (r < 0) {
		free(p);
		return r;
	}
	p->n = n;
	p->seq = ++fs->pend_seq;
	(void)snprintf(p->tmp, sizeof(p->tmp), "%s", tmp);
	*fs->pend_tail = p;
	fs->pend_tail = &p->next;
	__atomic_add_fetch(&fs->pend_count, 1, __ATOMIC_RELAXED);
	node_set_pending(fs, n, true);
	(void)pthread_mutex_lock(&fs->pend_lock);
	(void)pthread_cond_signal(&fs->pend_cond);
	(void)pthread_mutex_unlock(&fs->pend_lock);
	return 0;
}

/* Make copy fd (any kind of fd) durable on its own. 0 or -errno. */
int pend_sync_one(struct ovl_fs *fs, int fd)
{
	_cleanup_close_ int rfd = -1;
	char p[32];

	/* the magic link reaches the copy itself (O_NOFOLLOW would refuse it) */
	rfd = open(proc_fd_path(fd, p), O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	return copyup_sync(fs, rfd);
}

/* Show one waiting copy under its node's name, made durable first
 * unless a syncfs since it was made did that. 0, or -errno when it could
 * not be shown: it keeps waiting (and stays logged), to be tried again,
 * for its data is only there. */
static int pend_show(struct ovl_fs *fs, struct ovl_pend *p, uint64_t synced)
{
	_cleanup_close_ int own = -1;
	struct ovl_node *n = p->n;
	const char *name;
	int upfd, r = 0;

	/* removed from the view since (a removed open file): no name to show
	 * it under; the next mount empties the workdir */
	if (!node_live(n)) {
		node_set_pending(fs, n, false);
		return 0;
	}
	if (p->seq > synced)
		r = pend_sync_one(fs, n->fd);
	/* never shown without its data: tried again later */
	if (r < 0)
		return r;
	upfd = node_parent_fd(fs, n, OVL_UPPER, &name, &own);
	if (upfd < 0)
		r = upfd;
	else if (renameat2(fs->workfd, p->tmp, upfd, name, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0)
		return r;
	node_set_pending(fs, n, false);
	return 0;
}

/* Show every waiting copy. Tree lock held for writing. 0, or the first
 * -errno of a copy that could not be shown and still waits. */
int pend_publish(struct ovl_fs *fs)
{
	uint64_t synced = __atomic_load_n(&fs->pend_synced, __ATOMIC_ACQUIRE);
	struct ovl_pend *p, *kept = NULL, **ktail = &kept;
	size_t unsynced = 0, left = 0;
	int r, first = 0;

	if (!fs->pend_head)
		return 0;
	/* several not made durable yet: one syncfs for them all */
	for (p = fs->pend_head; p && unsynced < 2; p = p->next)
		unsynced += p->seq > synced;
	if (unsynced > 1 && syncfs(fs->syncfd) == 0)
		synced = fs->pend_seq;
	while ((p = fs->pend_head)) {
		fs->pend_head = p->next;
		r = pend_show(fs, p, synced);
		if (r == 0) {
			free(p);
			continue;
		}
		if (fs->debug)
			(void)fprintf(stderr, "ctool-overlayfs: showing a copy: %s\n", strerror(-r));
		if (!first)
			first = r;
		p->next = NULL;
		*ktail = p;
		ktail = &p->next;
		left++;
	}
	fs->pend_head = kept;
	fs->pend_tail = kept ? ktail : &fs->pend_head;
	__atomic_store_n(&fs->pend_count, left, __ATOMIC_RELAXED);
	/* the log keeps the records of those still waiting */
	if (!kept)
		pend_log_reset(fs);
	return first;
}

/* Show every waiting copy, with one syncfs for all. No lock held. */
static void pend_flush(struct ovl_fs *fs)
{
	uint64_t upto;

	/* every copy counted so far is complete: each was made with the
	 * tree lock held for writing */
	tree_rdlock(fs);
	upto = fs->pend_seq;
	tree_unlock(fs);
	if (syncfs(fs->syncfd) == 0)
		__atomic_store_n(&fs->pend_synced, upto, __ATOMIC_RELEASE);
	tree_wrlock(fs);
	(void)pend_publish(fs);
	tree_unlock(fs);
}

static void *pend_main(void *arg)
{
	struct ovl_fs *fs = arg;
	struct timespec t;

	(void)pthread_mutex_lock(&fs->pend_lock);
	while (!fs->pend_stop) {
		if (__atomic_load_n(&fs->pend_count, __ATOMIC_RELAXED) == 0) {
			(void)pthread_cond_wait(&fs->pend_cond, &fs->pend_lock);
			continue;
		}
		/* let a batch gather */
		(void)clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += fs->pend_ms / 1000;
		t.tv_nsec += (long)(fs->pend_ms % 1000) * 1000000L;
		t.tv_sec += t.tv_nsec / 1000000000L;
		t.tv_nsec %= 1000000000L;
		while (!fs->pend_stop &&
		       pthread_cond_timedwait(&fs->pend_cond, &fs->pend_lock, &t) == 0)
			;
		(void)pthread_mutex_unlock(&fs->pend_lock);
		pend_flush(fs);
		(void)pthread_mutex_lock(&fs->pend_lock);
	}
	(void)pthread_mutex_unlock(&fs->pend_lock);
	return NULL;
}

/* Start the publisher. Without it, no copy waits. 0 or -errno. */
int pend_start(struct ovl_fs *fs)
{
	if (!fs->pend_on)
		return 0;
	sigset_t all, old;
	int r;

	/* signals go to the threads that serve requests, never to this one */
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&fs->pend_thread, NULL, pend_main, fs);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0) {
		fs->pend_running = true;
		return 0;
	}
	fs->pend_on = false;
	return -EAGAIN;
}

/* Stop the publisher and show what still waits (at unmount). */
void pend_stop(struct ovl_fs *fs)
{
	if (!fs->pend_running)
		return;
	(void)pthread_mutex_lock(&fs->pend_lock);
	fs->pend_stop = true;
	(void)pthread_cond_signal(&fs->pend_cond);
	(void)pthread_mutex_unlock(&fs->pend_lock);
	(void)pthread_join(fs->pend_thread, NULL);
	fs->pend_running = false;
	__atomic_store_n(&fs->pend_on, false, __ATOMIC_RELAXED);
	pend_flush(fs);
}

/* Free what pend_init made. */
void pend_free(struct ovl_fs *fs)
{
	if (fs->syncfd >= 0)
		(void)close(fs->syncfd);
	if (fs->logfd >= 0)
		(void)close(fs->logfd);
	fs->syncfd = fs->logfd = -1;
	if (!fs->pend_ready)
		return;
	(void)pthread_cond_destroy(&fs->pend_cond);
	(void)pthread_mutex_destroy(&fs->pend_lock);
	fs->pend_ready = false;
}

/* Show copy workdir/work/tmp at `path` in the upper, where nothing is.
 * 0 or -errno. */
static int pend_recover_one(struct ovl_fs *fs, int wkfd, const char *tmp, char *path)
{
	_cleanup_close_ int dfd = -1;
	char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	struct stat st;
	int r;

	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(tmp, '/'))
		return -EINVAL;
	if (fstatat(wkfd, tmp, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (slash)
		*slash = '\0';
	r = layer_open_dir(fs, OVL_UPPER, slash ? path : ".", &dfd);
	if (r < 0)
		return r;
	return renameat2(wkfd, tmp, dfd, name, RENAME_NOREPLACE) < 0 ? -errno : 0;
}

/* Before workdir/work is emptied at mount: show the copies that a daemon
 * that died in this boot left waiting (see above), then start the log
 * again. wkfd is workdir/work (O_PATH), or -1 when there is none. Said
 * with -d. */
void pend_recover(struct ovl_fs *fs, int wkfd)
{
	_cleanup_free_ char *log = NULL;
	size_t len = 0, off;
	bool synced = false;

	if (fs->logfd < 0)
		return;
	/* the log was just opened: it is read from its start */
	if (wkfd >= 0 && read_fd(fs->logfd, &log, &len) < 0)
		log = NULL;
	if (log && len >= PEND_LOG_HEADER && !memcmp(log, fs->boot_id, PEND_LOG_HEADER - 1) &&
	    log[PEND_LOG_HEADER - 1] == '\n') {
		for (off = PEND_LOG_HEADER; off < len;) {
			char *tmp = log + off, *path;
			size_t lt = strnlen(tmp, len - off), lp;
			int r;

			if (off + lt + 1 >= len)
				break; /* cut short */
			path = tmp + lt + 1;
			lp = strnlen(path, len - off - lt - 1);
			if (off + lt + 1 + lp >= len)
				break;
			off += lt + 1 + lp + 1;
			/* durable before any is shown, or none is */
			if (!synced && syncfs(fs->syncfd) < 0)
				break;
			synced = true;
			r = pend_recover_one(fs, wkfd, tmp, path);
			if (fs->debug)
				(void)fprintf(stderr, "ctool-overlayfs: a copy left waiting: %s\n",
					      r < 0 ? strerror(-r) : "shown");
		}
	}
	pend_log_reset(fs);
}
