/* ctool-overlayfs: the kernel's passthrough of file data (Linux >= 6.9).
 *
 * With passthrough, reads, writes and mmap of an open file go from the
 * kernel straight to a "backing" file the daemon named at open: no
 * request, no copy through the daemon, the backing file's own page
 * cache. That is what lets a FUSE overlay read at the kernel overlay's
 * speed.
 *
 * bookworm's libfuse (3.14) predates passthrough, so the daemon speaks
 * the few protocol words it needs itself, through libfuse's custom I/O
 * hooks: the FUSE_INIT request says whether the kernel offers it; the
 * INIT reply asks for it (FUSE_PASSTHROUGH, max_stack_depth); an OPEN or
 * CREATE reply carries FOPEN_PASSTHROUGH and the backing id that
 * FUSE_DEV_IOC_BACKING_OPEN returned for the daemon's fd. A handler
 * says what its next reply needs in a thread-local word, and the writev
 * hook, called in that same thread by fuse_reply_*(), patches it in.
 *
 * The kernel holds one backing file per inode, and refuses (EIO to the
 * caller) an open that names another backing file, or none, while a
 * passthrough open of that inode lasts. So, per node:
 *  - the first open decides: passthrough if the backing ioctl takes the
 *    fd, else cached (the page cache, through requests); later opens
 *    follow while any open of the first kind lasts;
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
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ovl.h"

/* The protocol words of Linux 6.9 that bookworm's headers lack. */
#define PT_OP_INIT 26
#define PT_INIT_EXT (1u << 30)
#define PT_PASSTHROUGH_HI (1u << 5)     /* FUSE_PASSTHROUGH: bit 37 of flags */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_STACK_DEPTH 1                /* layers on overlayfs stay cached */
#define PT_RELEASE_WAIT_MS 200

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* Offsets in the wire structures (struct fuse_in_header is 40 bytes). */
#define PT_IN_OPCODE 4
#define PT_INIT_IN_FLAGS (40 + 12)
#define PT_INIT_IN_FLAGS2 (40 + 16)
#define PT_INIT_OUT_FLAGS 12
#define PT_INIT_OUT_FLAGS2 32
#define PT_INIT_OUT_DEPTH 36
#define PT_OPEN_OUT_SIZE 16             /* fh, open_flags, backing_id */

/* What the next reply of this thread needs. */
static __thread struct {
	enum { PT_NONE, PT_INIT, PT_OPEN } kind;
	int32_t id;
} pt_next;

static uint32_t get32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void put32(void *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct ovl_fs *fs = userdata;
	ssize_t n = read(fd, buf, len);
	const char *b = buf;

	if (n >= PT_INIT_IN_FLAGS2 + 4 && get32(b + PT_IN_OPCODE) == PT_OP_INIT)
		fs->pt_offered = (get32(b + PT_INIT_IN_FLAGS) & PT_INIT_EXT) &&
				 (get32(b + PT_INIT_IN_FLAGS2) & PT_PASSTHROUGH_HI);
	return n;
}

static void pt_patch(struct iovec *iov, int count)
{
	struct iovec *last = &iov[count - 1];
	char *b = last->iov_base;

	if (count < 2)
		return;    /* an error reply */
	if (pt_next.kind == PT_INIT && last->iov_len >= PT_INIT_OUT_DEPTH + 4) {
		put32(b + PT_INIT_OUT_FLAGS, get32(b + PT_INIT_OUT_FLAGS) | PT_INIT_EXT);
		put32(b + PT_INIT_OUT_FLAGS2, get32(b + PT_INIT_OUT_FLAGS2) | PT_PASSTHROUGH_HI);
		put32(b + PT_INIT_OUT_DEPTH, PT_STACK_DEPTH);
	} else if (pt_next.kind == PT_OPEN && last->iov_len >= PT_OPEN_OUT_SIZE) {
		char *o = b + last->iov_len - PT_OPEN_OUT_SIZE;

		put32(o + 8, get32(o + 8) | PT_FOPEN_PASSTHROUGH);
		put32(o + 12, (uint32_t)pt_next.id);
	}
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (pt_next.kind != PT_NONE) {
		pt_patch(iov, count);
		pt_next.kind = PT_NONE;
	}
	return writev(fd, iov, count);
}

static ssize_t pt_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			 unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

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

int pt_setup(struct ovl_fs *fs)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
		.splice_send = pt_splice,
	};

	if (!fs->pt_want)
		return 0;
	return fuse_session_custom_io(fs->se, &io, fuse_session_fd(fs->se));
}

void pt_init(struct ovl_fs *fs)
{
	fs->pt_on = fs->pt_want && fs->pt_offered;
	if (fs->pt_on)
		pt_next.kind = PT_INIT;
}

/* The backing id for fd, or 0 (none: the open stays cached). */
static int32_t backing_open(struct ovl_fs *fs, int fd)
{
	struct pt_backing_map map = { .fd = fd };
	int id = ioctl(fuse_session_fd(fs->se), PT_IOC_BACKING_OPEN, &map);

	if (id > 0)
		return id;
	/* refused for the whole mount (no privilege, no support): stop
	 * asking; refused for this file (a layer on overlayfs): cached */
	if (errno == EPERM || errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL)
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
 * close() has returned, so readers that just closed are waited for, a
 * little (other threads serve the RELEASE: it takes no tree lock). Tree
 * lock held. */
int pt_busy(struct ovl_fs *fs, struct ovl_node *n)
{
	struct timespec until;
	int r = 0;

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

	if (!S_ISREG(n->type) || !__atomic_load_n(&fs->pt_on, __ATOMIC_RELAXED))
		goto cached;
	(void)pthread_mutex_lock(&fs->pt_lock);
	if (n->cached_opens == 0 && n->pt_opens == 0 &&
	    (n->layer == OVL_UPPER || (!writes && fstat(fd, &st) == 0 && st.st_size >= PT_LOWER_MIN))) {
		n->pt_id = backing_open(fs, fd);
		n->pt_layer = n->layer;
	}
	if (n->cached_opens == 0 && n->pt_id > 0) {
		n->pt_opens++;
		pt_next.kind = PT_OPEN;
		pt_next.id = n->pt_id;
		fh |= OVL_FH_PT;
	} else {
		n->cached_opens++;
	}
	(void)pthread_mutex_unlock(&fs->pt_lock);
	return fh;
cached:
	(void)pthread_mutex_lock(&fs->pt_lock);
	n->cached_opens++;
	(void)pthread_mutex_unlock(&fs->pt_lock);
	return fh;
}

/* The open reply could not be sent: forget what pt_open armed. */
void pt_open_failed(struct ovl_fs *fs, struct ovl_node *n, uint64_t fh)
{
	pt_next.kind = PT_NONE;
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
