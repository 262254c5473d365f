#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "procs.h"
#include "util.h"

/* Does the magic link /proc/<pid>/<what> point at or below root? */
static bool link_under(int piddfd, const char *what, const char *root)
{
	char buf[PATH_MAX];
	ssize_t n = readlinkat(piddfd, what, buf, sizeof(buf) - 1);

	if (n <= 0)
		return false;
	buf[n] = '\0';
	return path_is_under(buf, root);
}

static bool fds_under(int piddfd, const char *root)
{
	_cleanup_close_ int fdd = openat(piddfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	bool found = false;

	if (fdd < 0)
		return false;
	d = fdopendir(TAKE_FD(fdd));
	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		char buf[PATH_MAX];
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(d), de->d_name, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		found = path_is_under(buf, root);
	}
	closedir(d);
	return found;
}

int procs_under(const char *root, bool holders, pid_t **ret, size_t *ret_n, struct ct_err *e)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t *pids = NULL, self = getpid();
	size_t n = 0;

	if (!d)
		return ct_fail_errno(e, errno, "cannot read /proc");
	while ((de = readdir(d))) {
		_cleanup_close_ int pfd = -1;
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		bool hit;

		if (*end || pid <= 0 || pid == self)
			continue;
		pfd = openat(dirfd(d), de->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0)
			continue;
		hit = link_under(pfd, "root", root);
		if (!hit && holders)
			hit = link_under(pfd, "cwd", root) || link_under(pfd, "exe", root) ||
			      fds_under(pfd, root);
		if (hit) {
			pid_t *np = realloc(pids, (n + 1) * sizeof(*np));

			if (!np) {
				free(pids);
				closedir(d);
				return ct_fail(e, ENOMEM, "out of memory");
			}
			pids = np;
			pids[n++] = (pid_t)pid;
		}
	}
	closedir(d);
	*ret = pids;
	*ret_n = n;
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

int procs_stop(const char *root, int grace_ms, struct ct_err *e)
{
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0, i;
	int waited, total;
	int r = procs_under(root, false, &pids, &n, e);

	if (r < 0 || n == 0)
		return r;
	total = (int)n;
	for (i = 0; i < n; i++)
		(void)kill(pids[i], SIGTERM);
	for (waited = 0;;) {
		free(pids);
		pids = NULL;
		r = procs_under(root, false, &pids, &n, e);
		if (r < 0)
			return r;
		if (n == 0)
			return total;
		if (waited >= grace_ms)
			break;
		sleep_ms(waited < 100 ? 2 : 10);
		waited += waited < 100 ? 2 : 10;
	}
	for (waited = 0; n > 0 && waited < 5000; waited += 10) {
		for (i = 0; i < n; i++)
			(void)kill(pids[i], SIGKILL);
		sleep_ms(10);
		free(pids);
		pids = NULL;
		r = procs_under(root, false, &pids, &n, e);
		if (r < 0)
			return r;
	}
	return total;
}

char *procs_format(const pid_t *pids, size_t n)
{
	size_t i, len = 0, cap = n * 12 + 8;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < n && i < 32; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? " " : "", (int)pids[i]);
	if (i < n)
		snprintf(s + len, cap - len, " ...");
	return s;
}

int procs_stat(pid_t pid, char *comm, char *ret_state, unsigned long long *ret_start)
{
	char path[32], *open_paren, *p, *save = NULL, *f;
	_cleanup_free_ char *buf = NULL;
	int i, r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = read_file(path, &buf, NULL);
	if (r < 0)
		return r;
	/* "PID (COMM) STATE ...": COMM may hold blanks and ')' */
	open_paren = strchr(buf, '(');
	p = strrchr(buf, ')');
	if (!open_paren || !p || p < open_paren)
		return -EINVAL;
	if (comm)
		snprintf(comm, 16, "%.*s", (int)(p - open_paren - 1), open_paren + 1);
	/* field 3 (the state) to field 22 (the start time) */
	for (f = strtok_r(p + 1, " ", &save), i = 3; f && i < 22; f = strtok_r(NULL, " ", &save), i++)
		if (i == 3)
			*ret_state = f[0];
	if (!f)
		return -EINVAL;
	*ret_start = strtoull(f, NULL, 10);
	return 0;
}
