/* ctool-overlayfs: the protocol words libfuse 3.14 lacks.
 *
 * bookworm's libfuse (3.14) predates FUSE passthrough (Linux 6.9) and
 * has no tmpfile operation: it answers FUSE_TMPFILE (Linux 6.1) with
 * ENOSYS, after which the kernel gives EOPNOTSUPP to every O_TMPFILE
 * open of the mount. The daemon speaks those words itself, through
 * libfuse's custom I/O hooks, which see every raw request (read) and
 * every reply (writev):
 *  - the FUSE_INIT request says whether the kernel offers passthrough;
 *    the INIT reply asks for it (FUSE_PASSTHROUGH, max_stack_depth);
 *  - an OPEN or CREATE reply carries FOPEN_PASSTHROUGH and the backing
 *    id that passthrough.c got for the daemon's fd;
 *  - a FUSE_TMPFILE request has the layout of FUSE_CREATE, and so has
 *    its reply, with the name "/" (what the kernel names the dentry it
 *    allocates; no real name can be it): it is handed to libfuse as a
 *    CREATE, which ns_create tells by that name.
 *  - the INIT request says whether the kernel lets the daemon clear the
 *    set-id bits itself (FUSE_HANDLE_KILLPRIV_V2), and the INIT reply
 *    takes that up; SETATTR, OPEN and WRITE requests then carry the
 *    kernel's word that the caller's change must clear them, which the
 *    read hook keeps for the handler (wire_kill_suidgid).
 * A handler says what its next reply needs in a thread-local word, and
 * the writev hook, called in that same thread by fuse_reply_*(), patches
 * it in; the read hook and the handler of the request it read run in one
 * thread too. The hooks are always installed; the passthrough words are
 * only spoken when passthrough is in use.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ovl.h"

/* The protocol words that bookworm's headers lack. */
#define WIRE_OP_SETATTR 4
#define WIRE_OP_OPEN 14
#define WIRE_OP_WRITE 16
#define WIRE_OP_INIT 26
#define WIRE_OP_CREATE 35
#define WIRE_OP_TMPFILE 51
#define WIRE_INIT_KILLPRIV_V2 (1u << 28)
#define WIRE_INIT_EXT (1u << 30)
#define WIRE_PASSTHROUGH_HI (1u << 5)   /* FUSE_PASSTHROUGH: bit 37 of flags */
#define WIRE_FOPEN_PASSTHROUGH (1u << 7)
#define WIRE_STACK_DEPTH 1              /* layers on overlayfs stay cached */

/* Offsets in the wire structures (struct fuse_in_header is 40 bytes). */
#define WIRE_IN_OPCODE 4
#define WIRE_IN_HEADER 40
#define WIRE_INIT_IN_FLAGS (WIRE_IN_HEADER + 12)
#define WIRE_INIT_IN_FLAGS2 (WIRE_IN_HEADER + 16)
#define WIRE_CREATE_IN_NAME (WIRE_IN_HEADER + 16) /* after struct fuse_create_in */
#define WIRE_INIT_OUT_FLAGS 12
#define WIRE_INIT_OUT_FLAGS2 32
#define WIRE_INIT_OUT_DEPTH 36
#define WIRE_OPEN_OUT_SIZE 16           /* fh, open_flags, backing_id */
#define WIRE_SETATTR_IN_VALID WIRE_IN_HEADER
#define WIRE_OPEN_IN_OPEN_FLAGS (WIRE_IN_HEADER + 4)
#define WIRE_WRITE_IN_WRITE_FLAGS (WIRE_IN_HEADER + 20)

/* The kernel's word that a change must clear the set-id bits: in a
 * SETATTR's valid, an OPEN's open_flags (O_TRUNC), a WRITE's write_flags
 * (FATTR_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID). */
#define WIRE_FATTR_KILL_SUIDGID (1u << 11)
#define WIRE_FATTR_UID (1u << 1)
#define WIRE_FATTR_GID (1u << 2)
#define WIRE_FATTR_FH (1u << 6)
#define WIRE_FATTR_LOCKOWNER (1u << 9)
#define WIRE_OPEN_KILL_SUIDGID (1u << 0)
#define WIRE_WRITE_KILL_SUIDGID (1u << 2)

/* What the next reply of this thread needs. */
static __thread struct {
	enum { WIRE_NONE, WIRE_INIT, WIRE_OPEN } kind;
	int32_t id;
	bool pt;     /* WIRE_INIT: ask for passthrough */
	bool kp;     /* WIRE_INIT: take up FUSE_HANDLE_KILLPRIV_V2 */
} wire_next;

/* Whether the request this thread read last must clear set-id bits: an
 * enum ovl_kill. */
static __thread int wire_kill;

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

/* A FUSE_TMPFILE request of n bytes at b becomes a FUSE_CREATE of "/".
 * Only one that names "/" as the kernel does: anything else stays what
 * it is, which libfuse refuses (ENOSYS), rather than being made as a
 * file of that name. */
static void tmpfile_as_create(char *b, ssize_t n)
{
	if (n >= WIRE_CREATE_IN_NAME + 2 && b[WIRE_CREATE_IN_NAME] == '/' &&
	    b[WIRE_CREATE_IN_NAME + 1] == '\0')
		put32(b + WIRE_IN_OPCODE, WIRE_OP_CREATE);
}

/* Does this SETATTR valid ask to clear the set-id bits? With
 * FUSE_HANDLE_KILLPRIV_V2 the kernel says so with FATTR_KILL_SUIDGID on
 * a chown (whoever the caller), and on a truncate by a caller without
 * CAP_FSETID. Where it must clear them before a write it sends nothing
 * to set at all (the kernel's setattr strips the bits it asked for and
 * leaves the daemon to do it; a passed-through write never comes here):
 * such a request is taken as that word, and so is a chown(-1, -1), which
 * clears them too. */
static int setattr_kills(uint32_t valid)
{
	if (valid & WIRE_FATTR_KILL_SUIDGID)
		return valid & (WIRE_FATTR_UID | WIRE_FATTR_GID) ? OVL_KILL : OVL_KILL_NOCAP;
	return valid & ~(WIRE_FATTR_FH | WIRE_FATTR_LOCKOWNER) ? OVL_KILL_NONE : OVL_KILL;
}

static ssize_t wire_read(int fd, void *buf, size_t len, void *userdata)
{
	struct ovl_fs *fs = userdata;
	ssize_t n = read(fd, buf, len);
	char *b = buf;

	wire_kill = OVL_KILL_NONE;
	if (n < WIRE_IN_HEADER)
		return n;
	switch (get32(b + WIRE_IN_OPCODE)) {
	case WIRE_OP_INIT:
		if (n >= WIRE_INIT_IN_FLAGS2 + 4) {
			uint32_t flags = get32(b + WIRE_INIT_IN_FLAGS);

			fs->pt_offered = (flags & WIRE_INIT_EXT) &&
					 (get32(b + WIRE_INIT_IN_FLAGS2) & WIRE_PASSTHROUGH_HI);
			fs->kp_on = flags & WIRE_INIT_KILLPRIV_V2;
		}
		break;
	case WIRE_OP_SETATTR:
		if (fs->kp_on && n >= WIRE_SETATTR_IN_VALID + 4)
			wire_kill = setattr_kills(get32(b + WIRE_SETATTR_IN_VALID));
		break;
	case WIRE_OP_OPEN:
		if (fs->kp_on && n >= WIRE_OPEN_IN_OPEN_FLAGS + 4 &&
		    (get32(b + WIRE_OPEN_IN_OPEN_FLAGS) & WIRE_OPEN_KILL_SUIDGID))
			wire_kill = OVL_KILL_NOCAP;
		break;
	case WIRE_OP_WRITE:
		if (fs->kp_on && n >= WIRE_WRITE_IN_WRITE_FLAGS + 4 &&
		    (get32(b + WIRE_WRITE_IN_WRITE_FLAGS) & WIRE_WRITE_KILL_SUIDGID))
			wire_kill = OVL_KILL_NOCAP;
		break;
	case WIRE_OP_TMPFILE:
		tmpfile_as_create(b, n);
		break;
	}
	return n;
}

static void wire_patch(struct iovec *iov, int count)
{
	struct iovec *last = &iov[count - 1];
	char *b = last->iov_base;

	if (count < 2)
		return;    /* an error reply */
	if (wire_next.kind == WIRE_INIT && last->iov_len >= WIRE_INIT_OUT_DEPTH + 4) {
		if (wire_next.kp)
			put32(b + WIRE_INIT_OUT_FLAGS,
			      get32(b + WIRE_INIT_OUT_FLAGS) | WIRE_INIT_KILLPRIV_V2);
		if (wire_next.pt) {
			put32(b + WIRE_INIT_OUT_FLAGS,
			      get32(b + WIRE_INIT_OUT_FLAGS) | WIRE_INIT_EXT);
			put32(b + WIRE_INIT_OUT_FLAGS2,
			      get32(b + WIRE_INIT_OUT_FLAGS2) | WIRE_PASSTHROUGH_HI);
			put32(b + WIRE_INIT_OUT_DEPTH, WIRE_STACK_DEPTH);
		}
	} else if (wire_next.kind == WIRE_OPEN && last->iov_len >= WIRE_OPEN_OUT_SIZE) {
		char *o = b + last->iov_len - WIRE_OPEN_OUT_SIZE;

		put32(o + 8, get32(o + 8) | WIRE_FOPEN_PASSTHROUGH);
		put32(o + 12, (uint32_t)wire_next.id);
	}
}

static ssize_t wire_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (wire_next.kind != WIRE_NONE) {
		wire_patch(iov, count);
		wire_next.kind = WIRE_NONE;
	}
	return writev(fd, iov, count);
}

static ssize_t wire_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			   unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

/* Install the hooks on the session, passthrough wanted or not (the
 * TMPFILE request needs them either way). 0 or -1. */
int wire_setup(struct ovl_fs *fs)
{
	static const struct fuse_custom_io io = {
		.read = wire_read,
		.writev = wire_writev,
		.splice_send = wire_splice,
	};

	return fuse_session_custom_io(fs->se, &io, fuse_session_fd(fs->se));
}

/* The INIT reply this thread sends next asks for passthrough (pt), and
 * takes up the clearing of set-id bits (kp). */
void wire_want_init(bool pt, bool kp)
{
	wire_next.kind = pt || kp ? WIRE_INIT : WIRE_NONE;
	wire_next.pt = pt;
	wire_next.kp = kp;
}

/* Whether the request this thread is handling must clear the set-id
 * bits of the file it changes (an enum ovl_kill): said once. */
int wire_kill_suidgid(void)
{
	int k = wire_kill;

	wire_kill = OVL_KILL_NONE;
	return k;
}

/* The OPEN or CREATE reply this thread sends next is passed through to
 * backing file id. */
void wire_want_open(int32_t id)
{
	wire_next.kind = WIRE_OPEN;
	wire_next.id = id;
}

/* The reply armed by wire_want_*() will not be sent. */
void wire_cancel(void)
{
	wire_next.kind = WIRE_NONE;
}
