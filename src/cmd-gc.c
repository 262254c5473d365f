/* ctool gc: finish what interrupted commands left in the store. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "cmd.h"
#include "lock.h"
#include "log.h"
#include "mounts.h"
#include "util.h"

/* Move to the trash each entry of <store>/<sub> whose name has no row:
 * is_known(name) says whether the catalog knows it. */
static int sweep(struct store *s, const char *sub, bool (*is_known)(struct store *, const char *),
		 struct ct_err *e)
{
	_cleanup_close_ int fd = openat(s->dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s/%s'", s->path, sub);
	d = fdopendir(TAKE_FD(fd));
	if (!d)
		return ct_fail_errno(e, errno, "cannot read '%s/%s'", s->path, sub);
	while ((de = readdir(d))) {
		_cleanup_free_ char *p = NULL;

		if (de->d_name[0] == '.' || is_known(s, de->d_name))
			continue;
		p = store_path(s, "%s/%s", sub, de->d_name);
		if (p) {
			struct ct_err e2 = { 0 };

			/* never move a tree with a mount below it (an env on
			 * whose row was lost, a bind made by hand) */
			if (mounts_check_none(p, &e2) < 0) {
				log_warn("leaving '%s', which has no catalog row: %s", p, e2.msg);
				continue;
			}
		}
		log_debug("removing orphan '%s'", p ? p : de->d_name);
		if (!p || store_trash(s, p, e) < 0) {
			r = p ? -e->code : ct_fail(e, ENOMEM, "out of memory");
			break;
		}
	}
	closedir(d);
	return r;
}

struct has_id {
	const char *id;
	bool found;
};

static int has_id_cb(const struct catalog_env *row, void *data)
{
	struct has_id *h = data;

	if (strcmp(row->id, h->id) == 0) {
		h->found = true;
		return 1;
	}
	return 0;
}

static bool env_known(struct store *s, const char *id)
{
	struct has_id h = { .id = id };
	struct ct_err e;

	/* on error, keep it */
	return catalog_env_foreach(s->cat, has_id_cb, &h, &e) < 0 || h.found;
}

static bool layer_known(struct store *s, const char *id)
{
	struct ct_err e;
	bool used = true;

	if (catalog_layer_used(s->cat, id, &used, &e) < 0)
		return true;
	if (!used)
		(void)catalog_layer_remove(s->cat, id, &e);
	return used;
}

int cmd_gc(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const char usage[] = "usage: ctool gc [--trash [--no-wait]]\n";
	struct store *s = ctx->store;
	struct ct_err e = { 0 };
	_cleanup_close_ int slock = -1;
	bool trash_only = false, no_wait = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--trash") == 0) {
			trash_only = true;
		} else if (strcmp(argv[i], "--no-wait") == 0) {
			no_wait = true;
		} else {
			return cmd_usage_error("unknown argument '%s' (see 'ctool gc --help')",
					       argv[i]);
		}
	}
	if (no_wait && !trash_only)
		return cmd_usage_error("--no-wait goes with --trash");
	if (trash_only) {
		r = no_wait ? store_trash_empty_nowait(s, &e) : store_trash_flush(s, true, &e);
		return r < 0 ? cmd_fail(&e) : 0;
	}
	r = store_open_catalog(s, &e);
	if (r == 0)
		r = lock_name(s, "store", "layers", LOCK_EX, &slock, &e);
	if (r == 0) {
		build_clean_stale(s);
		r = store_tmp_clean(s, &e);
	}
	if (r == 0)
		r = sweep(s, "envs", env_known, &e);
	if (r == 0)
		r = sweep(s, "layers", layer_known, &e);
	if (r == 0)
		r = store_trash_flush(s, true, &e);
	if (r == 0)
		r = store_release_private(s, &e);
	return r < 0 ? cmd_fail(&e) : 0;
}
