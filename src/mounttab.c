#include "config.h"

#include <dlfcn.h>
#include <libmount.h>
#include <string.h>

#include "mounts.h"
#include "mounttab.h"
#include "util.h"

static struct {
	struct libmnt_table *(*new_table)(void);
	void (*unref_table)(struct libmnt_table *tb);
	int (*parse_file)(struct libmnt_table *tb, const char *filename);
	struct libmnt_iter *(*new_iter)(int direction);
	void (*free_iter)(struct libmnt_iter *itr);
	int (*next_fs)(struct libmnt_table *tb, struct libmnt_iter *itr, struct libmnt_fs **fs);
	struct libmnt_fs *(*find_target)(struct libmnt_table *tb, const char *path, int direction);
	const char *(*fs_target)(struct libmnt_fs *fs);
	const char *(*fs_options)(struct libmnt_fs *fs);
} lm;

/* Load libmount once; false (with *e set) when it cannot be. */
static bool lm_load(struct ct_err *e)
{
	static int state; /* 0 untried, 1 loaded, -1 failed */
	void *h;

	if (state)
		return state > 0 || (ct_fail(e, ENOSYS, "libmount.so.1 cannot be loaded"), false);
	state = -1;
	h = dlopen("libmount.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ct_fail(e, ENOSYS, "cannot load libmount: %s", dlerror());
		return false;
	}
	*(void **)&lm.new_table = dlsym(h, "mnt_new_table");
	*(void **)&lm.unref_table = dlsym(h, "mnt_unref_table");
	*(void **)&lm.parse_file = dlsym(h, "mnt_table_parse_file");
	*(void **)&lm.new_iter = dlsym(h, "mnt_new_iter");
	*(void **)&lm.free_iter = dlsym(h, "mnt_free_iter");
	*(void **)&lm.next_fs = dlsym(h, "mnt_table_next_fs");
	*(void **)&lm.find_target = dlsym(h, "mnt_table_find_target");
	*(void **)&lm.fs_target = dlsym(h, "mnt_fs_get_target");
	*(void **)&lm.fs_options = dlsym(h, "mnt_fs_get_options");
	if (!lm.new_table || !lm.unref_table || !lm.parse_file || !lm.new_iter || !lm.free_iter ||
	    !lm.next_fs || !lm.find_target || !lm.fs_target || !lm.fs_options) {
		ct_fail(e, ENOSYS, "libmount lacks a function ctool needs");
		return false;
	}
	state = 1;
	return true;
}

static size_t depth(const char *p)
{
	size_t d = 0;

	for (; *p; p++)
		d += *p == '/';
	return d;
}

int mounttab_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e)
{
	struct libmnt_table *tb;
	struct libmnt_iter *it;
	struct libmnt_fs *fs;
	char **list = NULL;
	size_t n = 0, i, j;
	int r = 0;

	if (!lm_load(e))
		return -e->code;
	tb = lm.new_table();
	it = lm.new_iter(MNT_ITER_BACKWARD);
	if (!tb || !it) {
		r = ct_fail(e, ENOMEM, "out of memory");
		goto out;
	}
	r = lm.parse_file(tb, "/proc/self/mountinfo");
	if (r < 0) {
		r = ct_fail_errno(e, -r, "cannot read the mount table");
		goto out;
	}
	/* backward: later (upper, deeper) mounts first */
	while (lm.next_fs(tb, it, &fs) == 0) {
		const char *t = lm.fs_target(fs);
		char **nl;

		if (!t || !path_is_under(t, path))
			continue;
		nl = realloc(list, (n + 1) * sizeof(*nl));
		if (!nl || !(nl[n] = strdup(t))) {
			mounts_list_free(nl ? nl : list, n);
			list = NULL;
			r = ct_fail(e, ENOMEM, "out of memory");
			goto out;
		}
		list = nl;
		n++;
	}
	/* stable sort by depth, deepest first (insertion sort: lists are short) */
	for (i = 1; i < n; i++) {
		char *x = list[i];

		for (j = i; j > 0 && depth(list[j - 1]) < depth(x); j--)
			list[j] = list[j - 1];
		list[j] = x;
	}
	*ret = list;
	*ret_n = n;
out:
	if (it)
		lm.free_iter(it);
	if (tb)
		lm.unref_table(tb);
	return r;
}

char *mounttab_options(const char *path)
{
	struct libmnt_table *tb;
	struct libmnt_fs *fs;
	char *opts = NULL;

	if (!lm_load(NULL))
		return NULL;
	tb = lm.new_table();
	if (!tb)
		return NULL;
	if (lm.parse_file(tb, "/proc/self/mountinfo") == 0) {
		fs = lm.find_target(tb, path, MNT_ITER_BACKWARD);
		if (fs && lm.fs_options(fs))
			opts = strdup(lm.fs_options(fs));
	}
	lm.unref_table(tb);
	return opts;
}
