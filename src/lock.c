#include "config.h"

#include <fcntl.h>
#include <sys/file.h>

#include "lock.h"
#include "util.h"

int lock_name(struct store *s, const char *kind, const char *name, int op, int *ret_fd,
	      struct ct_err *e)
{
	_cleanup_free_ char *rel = xasprintf("locks/%s-%s", kind, name);
	_cleanup_close_ int fd = -1;

	if (!rel)
		return ct_fail(e, ENOMEM, "out of memory");
	fd = openat(s->dfd, rel, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot open lock '%s/%s'", s->path, rel);
	while (flock(fd, op) < 0) {
		if (errno != EINTR)
			return ct_fail_errno(e, errno, "cannot lock '%s/%s'", s->path, rel);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}
