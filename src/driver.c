#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>

#include "driver.h"
#include "log.h"
#include "procs.h"
#include "util.h"

#ifndef CTOOL_BINDIR
#define CTOOL_BINDIR "/usr/local/bin"
#endif
#define FUSE_MAGIC 0x65735546
/* how long 'off' waits for a daemon whose mount is gone */
#define REAP_WAIT_MS 2000

extern char **environ;

bool driver_is_valid(const char *name)
{
	return name && (strcmp(name, DRIVER_KERNEL) == 0 || strcmp(name, DRIVER_FUSE) == 0);
}

int driver_requested(const char *opt, const char **ret, struct ct_err *e)
{
	const char *v = opt;

	if (!v) {
		v = getenv("CTOOL_DRIVER");
		if (v && !*v)
			v = NULL;
	}
	if (v && !driver_is_valid(v))
		return ct_fail(e, EINVAL, "no driver named '%s'%s (kernel or fuse)", v,
			       opt ? "" : " in $CTOOL_DRIVER");
	*ret = v;
	return 0;
}

/* The daemon: $CTOOL_OVERLAYFS, else beside this ctool (fuse/ in a build
 * tree, or the same folder once installed), else the configured bindir.
 * malloc'd, NULL on out-of-memory. */
static char *overlayfs_path(void)
{
	static const char *const beside[] = { "fuse/ctool-overlayfs", "ctool-overlayfs" };
	const char *v = getenv("CTOOL_OVERLAYFS");
	char self[PATH_MAX], *slash;
	ssize_t n;
	size_t i;

	if (v && *v)
		return strdup(v);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		for (i = 0; slash && i < ARRAY_SIZE(beside); i++) {
			char *p = xasprintf("%s/%s", self, beside[i]);

			if (!p || access(p, X_OK) == 0)
				return p;
			free(p);
		}
	}
	return strdup(CTOOL_BINDIR "/ctool-overlayfs");
}

/* Append "key=value" (value escaped as the kernel reads mount options:
 * '\', ':' and ',' get a backslash) to the option string *buf. */
static int opt_add(char **buf, const char *key, const char *value)
{
	size_t old = *buf ? strlen(*buf) : 0, i;
	char *n = realloc(*buf, old + strlen(key) + 2 * strlen(value) + 3);
	char *o;

	if (!n)
		return -ENOMEM;
	*buf = n;
	o = n + old;
	if (old)
		*o++ = ',';
	o = stpcpy(o, key);
	*o++ = '=';
	for (i = 0; value[i]; i++) {
		if (value[i] == '\\' || value[i] == ':' || value[i] == ',')
			*o++ = '\\';
		*o++ = value[i];
	}
	*o = '\0';
	return 0;
}

/* lowerdir=L1:L2:...: each layer escaped, joined by ':'. */
static int opt_lower(char **buf, const struct overlay_spec *ov)
{
	size_t i;
	int r = opt_add(buf, "lowerdir", ov->lower[0]);

	for (i = 1; r == 0 && i < ov->n_lower; i++) {
		_cleanup_free_ char *one = NULL;
		char *n;

		r = opt_add(&one, "x", ov->lower[i]);
		if (r < 0)
			break;
		n = realloc(*buf, strlen(*buf) + strlen(one) + 1);
		if (!n)
			return -ENOMEM;
		*buf = n;
		strcat(strcat(n, ":"), one + 2); /* drop "x=" */
	}
	return r;
}

/* The first line the daemon wrote to the pipe fd, without a trailing
 * newline ("" when none). */
static void first_line(int fd, char *buf, size_t len)
{
	ssize_t n;

	buf[0] = '\0';
	(void)fcntl(fd, F_SETFL, O_NONBLOCK);
	n = read(fd, buf, len - 1);
	if (n <= 0)
		return;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

int driver_fuse_mount(int dirfd, const char *root, const struct overlay_spec *ov,
		      const char *pidfile, int *ret_fd, struct ct_err *e)
{
	_cleanup_free_ char *daemon = overlayfs_path(), *opts = NULL, *mnt = NULL;
	_cleanup_close_ int keep = -1, rfd = -1, errr = -1, errw = -1;
	posix_spawn_file_actions_t fa;
	char *argv[6], msg[512];
	struct statfs sf;
	int pipefd[2], status, r;
	pid_t pid;

	if (!daemon || ov->n_lower == 0)
		return ct_fail(e, ENOMEM, "out of memory");
	r = opt_lower(&opts, ov);
	if (r == 0)
		r = opt_add(&opts, "upperdir", ov->upper);
	if (r == 0)
		r = opt_add(&opts, "workdir", ov->work);
	if (r == 0)
		r = opt_add(&opts, "pidfile", pidfile);
	/* as the kernel's overlay: set-uid programs and device nodes work */
	if (r == 0) {
		char *n = realloc(opts, strlen(opts) + sizeof(",suid,dev"));

		if (n)
			strcat(n, ",suid,dev");
		opts = n ? n : opts;
		r = n ? 0 : -ENOMEM;
	}
	if (r == 0 && ov->volatile_) {
		char *n = realloc(opts, strlen(opts) + sizeof(",volatile"));

		if (n)
			strcat(n, ",volatile");
		opts = n ? n : opts;
		r = n ? 0 : -ENOMEM;
	}
	if (r < 0)
		return ct_fail(e, ENOMEM, "out of memory");
	/* the daemon mounts on the root ctool opened, through an fd it inherits */
	keep = fcntl(dirfd, F_DUPFD, 3);
	if (keep < 0)
		return ct_fail_errno(e, errno, "cannot pass '%s' to the fuse driver", root);
	mnt = xasprintf("/proc/self/fd/%d", keep);
	if (!mnt || pipe2(pipefd, O_CLOEXEC) < 0)
		return ct_fail_errno(e, mnt ? errno : ENOMEM, "cannot start the fuse driver");
	errr = pipefd[0];
	errw = pipefd[1];
	argv[0] = daemon;
	argv[1] = (char *)"-o";
	argv[2] = opts;
	argv[3] = (char *)"ctool";
	argv[4] = mnt;
	argv[5] = NULL;
	log_debug("starting %s -o %s ctool %s", daemon, opts, mnt);
	posix_spawn_file_actions_init(&fa);
	(void)posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	(void)posix_spawn_file_actions_adddup2(&fa, 0, 1);
	(void)posix_spawn_file_actions_adddup2(&fa, errw, 2);
	fflush(NULL);
	r = posix_spawn(&pid, daemon, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return ct_fail_errno(e, r, "cannot start the fuse driver '%s'", daemon);
	(void)close(TAKE_FD(errw));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return ct_fail_errno(e, errno, "cannot wait for the fuse driver");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		first_line(errr, msg, sizeof(msg));
		if (msg[0])
			return ct_fail(e, EIO, "%s", msg);
		return ct_fail(e, EIO, "the fuse driver '%s' failed (%s %d)", daemon,
			       WIFEXITED(status) ? "exit" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	/* from here the daemon serves a mount: a failure takes both down */
	rfd = mounts_root_open(root, true, e);
	if (rfd >= 0 && (fstatfs(rfd, &sf) < 0 || sf.f_type != FUSE_MAGIC)) {
		(void)close(TAKE_FD(rfd));
		rfd = ct_fail(e, EIO, "the fuse driver reported success but '%s' is no FUSE mount",
			      root);
	}
	if (rfd < 0) {
		(void)umount2(root, UMOUNT_NOFOLLOW | MNT_DETACH);
		driver_fuse_reap(pidfile);
		return rfd;
	}
	*ret_fd = TAKE_FD(rfd);
	return 0;
}

/* Is pid a running ctool-overlayfs? A zombie is not: it has exited and
 * only waits for its parent (init, once ctool has gone) to reap it,
 * which some inits do late. */
static bool is_daemon(pid_t pid)
{
	char comm[16], state = 0;
	unsigned long long start;

	return procs_stat(pid, comm, &state, &start) == 0 && state != 'Z' &&
	       strcmp(comm, "ctool-overlayfs") == 0;
}

void driver_fuse_reap(const char *pidfile)
{
	_cleanup_free_ char *text = NULL;
	struct timespec pause = { 0, 10 * 1000000L };
	long pid;
	int waited;

	if (read_file(pidfile, &text, NULL) < 0)
		return;
	pid = strtol(text, NULL, 10);
	for (waited = 0; pid > 1 && is_daemon((pid_t)pid) && waited < REAP_WAIT_MS; waited += 10)
		(void)nanosleep(&pause, NULL);
	if (pid > 1 && is_daemon((pid_t)pid)) {
		log_debug("ctool-overlayfs %ld did not exit: killing it", pid);
		(void)kill((pid_t)pid, SIGKILL);
	}
	(void)unlink(pidfile);
}

bool driver_fuse_dead(const char *path)
{
	struct statx stx;

	/* forced: the kernel would answer from its attribute cache */
	return statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_TYPE, &stx) < 0 &&
	       errno == ENOTCONN;
}

bool driver_fuse_copies_wait(const struct overlay_spec *ov)
{
	_cleanup_free_ char *log = xasprintf("%s/" PEND_LOG_NAME, ov->work);
	struct stat st;

	return log && lstat(log, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > PEND_LOG_HEADER;
}
