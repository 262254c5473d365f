/* ctool-overlayfs: the kernel's passthrough of file data (Linux >= 6.9).
 *
 * With passthrough, reads, writes and mmap of an open file go from the
 * kernel straight to a "backing" file the daemon named at open: no
 * request, no copy through the daemon, the backing file's own page
 * cache. That is what lets a FUSE overlay read at the kernel overlay's
 * speed.
 *
 * bookworm's libfuse (3.14) predates passthrough: wire.c speaks the
 * protocol words it takes (the INIT request's offer, the INIT reply's
 * request for it, FOPEN_PASSTHROUGH and the backing id in an OPEN or
 * CREATE reply). Here the daemon decides which opens are passed through,
 * and gets their backing ids from FUSE_DEV_IOC_BACKING_OPEN.
 *
 * The kernel holds one backing file per inode, and refuses (EIO to the
 * caller) an open that names another backing file, or none, while a
 * passthrough open of that inode lasts. So, per node:
 *  - the first open decides: passthrough if the backing ioctl takes the
 *    fd, else cached (the page cache, through requests); later opens
 *    follow while any open of the first kind lasts;
 *  - an upper file with several names is not passed through: the
 *    kernel clears set-id bits before a write from what it holds of the
 *    name written to, which misses bits set through another name (see
 *    kill_suidgid); its writes come to the daemon, which clears them
 *    from the file's own mode;
 *  - a lower file is passed through only when it is large
 *    (PT_LOWER_MIN): small files live well in the page cache, and a
 *    lower backing stays on the inode until its last reader closes,
 *    while after a copy-up every new open must see the upper file;
 *  - read-only opens of a node copied up while such a lower backing
 *    lasts keep that backing (the upper copy has the same data, and
 *    nothing can change it meanwhile: see below); an open for writing
 *    or a truncate of it is refused with ETXTBSY until the readers
 *    close: the kernel offers no way to move an inode to another
 *    backing file.
 */
#include "config.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ovl.h"

#define PT_RELEASE_WAIT_MS 200

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* A condition variable timed on CLOCK_MONOTONIC. 0 or an error number. */
int pt_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int r;

	r = pthread_condattr_init(&a);
	if (r == 0)
		r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(c, &a);
	(void)pthread_condattr_destroy(&a);
	return r;
}

void pt_init(struct ovl_fs *fs)
{
	fs->pt_on = fs->pt_want && fs->pt_offered;
}

/* The backing id for fd, or 0 (none: the open stays cached). */
static int32_t backing_open(struct ovl_fs *fs, int fd)
{
	struct pt_backing_map map = { .fd = fd };
	int id = ioctl(fuse_session_fd(fs->se), PT_IOC_BACKING_OPEN, &map);

	if (id > 0)
		return id;
	/* refused for the whole mount (no privilege, no support): stop
	 * asking; refused for this file (a layer on overlayfs: ELOOP; a
	 * filesystem that cannot write, as squashfs: EINVAL or EOPNOTSUPP):
	 * that file stays cached */
	if (errno == EPERM || errno == ENOTTY)
		__atomic_store_n(&fs->pt_on, false, __ATOMIC_RELAXED);
	return 0;
}

static void backing_close(struct ovl_fs *fs, int32_t id)
{
	uint32_t u = (uint32_t)id;

	(void)ioctl(fuse_session_fd(fs->se), PT_IOC_BACKING_CLOSE, &u);
}

/* Whether a change to n's data must wait for passthrough readers of its
 * lower file: -ETXTBSY then, else 0. The kernel sends RELEASE after
 * close() has returned, so with `wait` readers that just closed are
 * waited for, a little: then without the tree lock, which would stop
 * the whole mount meanwhile (the RELEASE itself takes no tree lock).
 * Without `wait`, the check under the tree lock, just before the data
 * changes. */
int pt_busy(struct ovl_fs *fs, struct ovl_node *n, bool wait)
{
	struct timespec until;
	int r = wait ? 0 : ETIMEDOUT;

	(void)clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += PT_RELEASE_WAIT_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	(void)pthread_mutex_lock(&fs->pt_lock);
	while (n->pt_opens > 0 && n->pt_layer != OVL_UPPER && r == 0)
		r = pthread_cond_timedwait(&fs->pt_released, &fs->pt_lock, &until);
	r = n->pt_opens > 0 && n->pt_layer != OVL_UPPER ? -ETXTBSY : 0;
	(void)pthread_mutex_unlock(&fs->pt_lock);
	return r;
}

/* An open of n on fd (n's object in n->layer), for writing or not, is
 * about to be answered: decide its mode, count it, and arm the reply.
 * Returns the handle to keep in fi->fh: the fd, with OVL_FH_PT when
 * passed through (such an open must not ask to keep the page cache,
 * which it does not use). Tree lock held. */
uint64_t pt_open(struct ovl_fs *fs, struct ovl_node *n, int fd, bool writes)
{
	uint64_t fh = (uint64_t)fd;
	struct stat st;

	(void)pthread_mutex_lock(&fs->pt_lock);
	/* a new backing file only while the mount passes data through; an
	 * inode that has one keeps following it (the kernel refuses, with
	 * EIO, any other open of it meanwhile) */
	if (S_ISREG(n->type) && n->cached_opens == 0 && n->pt_opens == 0 &&
	    __atomic_load_n(&fs->pt_on, __ATOMIC_RELAXED) && fstat(fd, &st) == 0 &&
	    (n->layer == OVL_UPPER ? st.st_nlink < 2 : !writes && st.st_size >= PT_LOWER_MIN)) {
		n->pt_id = backing_open(fs, fd);
		n->pt_layer = n->layer;
	}
	if (n->cached_opens == 0 && n->pt_id > 0) {
		n->pt_opens++;
		wire_want_open(n->pt_id);
		fh |= OVL_FH_PT;
	} else {
		n->cached_opens++;
	}
	(void)pthread_mutex_unlock(&fs->pt_lock);
	return fh;
}

/* The open reply could not be sent: forget what pt_open armed. */
void pt_open_failed(struct ovl_fs *fs, struct ovl_node *n, uint64_t fh)
{
	wire_cancel();
	pt_release(fs, n, fh);
}

/* The last close of an open made by pt_open. */
void pt_release(struct ovl_fs *fs, struct ovl_node *n, uint64_t fh)
{
	int32_t id = 0;

	(void)pthread_mutex_lock(&fs->pt_lock);
	if (!(fh & OVL_FH_PT)) {
		n->cached_opens--;
	} else if (--n->pt_opens == 0) {
		id = n->pt_id;
		n->pt_id = 0;
		(void)pthread_cond_broadcast(&fs->pt_released);
	}
	(void)pthread_mutex_unlock(&fs->pt_lock);
	if (id > 0)
		backing_close(fs, id);
}
