#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uuid/uuid.h>

#include "util.h"

bool name_is_valid(const char *name)
{
	size_t i;

	if (!name || !name[0])
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (i = 1; name[i]; i++) {
		char c = name[i];

		if (i >= CT_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
}

int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	char *s;

	if (!p)
		return -ENOMEM;
	for (s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int read_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return read_fd(fd, ret, ret_len);
}

int read_fd(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 8192);

			if (!nb)
				return -ENOMEM;
			buf = nb;
			cap += 8192;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	_cleanup_close_ int fd = -1;
	size_t off = 0;

	if (!tmp)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0) {
			int r = -errno;

			if (errno == EINTR)
				continue;
			(void)unlink(tmp);
			return r;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || rename(tmp, path) < 0) {
		int r = -errno;

		(void)unlink(tmp);
		return r;
	}
	return 0;
}

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void uuid_new(char ret[37])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, ret);
}

/* The mount id of fd, or 0 when the kernel cannot tell. */
static uint64_t fd_mnt_id(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) < 0)
		return 0;
	if (!(stx.stx_mask & STATX_MNT_ID))
		return 0;
	return stx.stx_mnt_id;
}

static int rm_tree_at(int pfd, const char *name, uint64_t mnt, dev_t dev, const char *what,
		      struct ct_err *e);

/* Empty the directory dfd (whose mount id is mnt), depth first. */
static int rm_contents_onefs(int dfd, uint64_t mnt, dev_t dev, const char *what, struct ct_err *e)
{
	DIR *d;
	struct dirent *de;
	int r = 0;

	/* the stream owns dfd: one fd per level of the tree */
	d = fdopendir(dfd);
	if (!d) {
		r = ct_fail_errno(e, errno, "cannot read '%s'", what);
		(void)close(dfd);
		return r;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			r = ct_fail_errno(e, errno, "cannot stat '%s/%s'", what, de->d_name);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			_cleanup_free_ char *sub = xasprintf("%s/%s", what, de->d_name);

			if (!sub) {
				r = ct_fail(e, ENOMEM, "out of memory");
				break;
			}
			r = rm_tree_at(dfd, de->d_name, mnt, dev, sub, e);
			if (r < 0)
				break;
			continue;
		}
		if (st.st_dev != dev) {
			r = ct_fail(e, EXDEV, "refusing to delete across a filesystem boundary at '%s/%s'",
				    what, de->d_name);
			break;
		}
		if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT) {
			r = ct_fail_errno(e, errno, "cannot delete '%s/%s'", what, de->d_name);
			break;
		}
	}
	closedir(d);
	return r;
}

/* Delete directory 'name' in pfd after checking it is on the same mount
 * (mnt, dev) as the top of the deletion. */
static int rm_tree_at(int pfd, const char *name, uint64_t mnt, dev_t dev, const char *what,
		      struct ct_err *e)
{
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	uint64_t m;
	int r;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return ct_fail_errno(e, errno, "cannot open '%s'", what);
	}
	if (fstat(fd, &st) < 0) {
		r = ct_fail_errno(e, errno, "cannot stat '%s'", what);
		(void)close(fd);
		return r;
	}
	m = fd_mnt_id(fd);
	if (st.st_dev != dev || (mnt && m && m != mnt)) {
		(void)close(fd);
		return ct_fail(e, EXDEV, "refusing to delete across a mount point at '%s'", what);
	}
	r = rm_contents_onefs(fd, mnt, dev, what, e); /* closes fd */
	if (r < 0)
		return r;
	if (unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return ct_fail_errno(e, errno, "cannot delete '%s'", what);
	return 0;
}

int rm_tree_onefs(int dirfd, const char *name, struct ct_err *e)
{
	_cleanup_close_ int own = -1;
	const char *base = name;
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return ct_fail_errno(e, errno, "cannot stat '%s'", name);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			return ct_fail_errno(e, errno, "cannot delete '%s'", name);
		return 0;
	}
	if (dirfd == AT_FDCWD) {
		/* the mount to stay on is that of the folder holding name, not
		 * that of the current directory */
		_cleanup_free_ char *parent = strdup(name);
		char *slash = parent ? strrchr(parent, '/') : NULL;

		if (!parent)
			return ct_fail(e, ENOMEM, "out of memory");
		if (slash == parent)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		own = open(slash ? parent : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (own < 0)
			return ct_fail_errno(e, errno, "cannot open the folder of '%s'", name);
		dirfd = own;
		base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	}
	return rm_tree_at(dirfd, base, fd_mnt_id(dirfd), st.st_dev, name, e);
}

bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (de = readdir(d)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	return empty;
}

bool path_is_mountpoint(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, 0, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

char *path_clean_abs(const char *path)
{
	char *out, *o;
	const char *s = path;

	if (!path || path[0] != '/') {
		errno = EINVAL;
		return NULL;
	}
	out = malloc(strlen(path) + 2);
	if (!out)
		return NULL;
	o = out;
	while (*s) {
		const char *c;
		size_t n;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		c = s;
		while (*s && *s != '/')
			s++;
		n = (size_t)(s - c);
		if (n == 1 && c[0] == '.')
			continue;
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			free(out);
			errno = EINVAL;
			return NULL;
		}
		*o++ = '/';
		memcpy(o, c, n);
		o += n;
	}
	if (o == out)
		*o++ = '/';
	*o = '\0';
	return out;
}

bool path_is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1 && dir[0] == '/')
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* This boot's id ("" when unknown). CTOOL_TEST_BOOT_ID stands for it in
 * the tests, which cannot reboot the machine to show what a volatile env,
 * or a copy ctool-overlayfs left waiting, becomes after one. */
void boot_id(char ret[40])
{
	_cleanup_free_ char *b = NULL;
	const char *fake = getenv("CTOOL_TEST_BOOT_ID");

	ret[0] = '\0';
	if (fake && *fake) {
		snprintf(ret, 40, "%.36s", fake);
		return;
	}
	if (read_file("/proc/sys/kernel/random/boot_id", &b, NULL) == 0)
		snprintf(ret, 40, "%.36s", b);
}

static int64_t tree_bytes_sum;

static int tree_bytes_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	tree_bytes_sum += (int64_t)st->st_blocks * 512;
	return 0;
}

int64_t tree_bytes(const char *path)
{
	tree_bytes_sum = 0;
	if (nftw(path, tree_bytes_cb, 32, FTW_PHYS | FTW_MOUNT) < 0)
		return -1;
	return tree_bytes_sum;
}

void fmt_bytes(int64_t n, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	double v = (double)n;
	int u = -1;

	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		(void)snprintf(buf, len, "%" PRId64, n);
	else
		(void)snprintf(buf, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

int dl_load(struct dl_lib *lib, const char *const *names, void *table, size_t n,
	    struct ct_err *e)
{
	void *h, *sym;
	size_t i;

	if (lib->state > 0)
		return 0;
	if (lib->state < 0)
		return ct_fail(e, ENOSYS, "%s", lib->why);
	lib->state = -1;
	h = dlopen(lib->soname, RTLD_LAZY | RTLD_LOCAL);
	if (!h) {
		(void)snprintf(lib->why, sizeof(lib->why), "cannot load %s: %s", lib->what,
			       dlerror());
		return ct_fail(e, ENOSYS, "%s", lib->why);
	}
	for (i = 0; i < n; i++) {
		sym = dlsym(h, names[i]);
		if (!sym) {
			(void)snprintf(lib->why, sizeof(lib->why), "%s lacks %s", lib->soname,
				       names[i]);
			return ct_fail(e, ENOSYS, "%s", lib->why);
		}
		/* a function pointer's bits, as POSIX has dlsym give them */
		memcpy((char *)table + i * sizeof(sym), &sym, sizeof(sym));
	}
	lib->state = 1;
	return 0;
}
