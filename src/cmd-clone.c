/* ctool clone SOURCE NAME: an env from an image (instant) or an env. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "driver.h"
#include "log.h"
#include "mounts.h"
#include "util.h"

static const char clone_usage[] =
	"usage: ctool clone SOURCE NAME [-d DIR] [--volatile] [--driver kernel|fuse]\n"
	"                   [-v HOST:TARGET[:ro]]...\n";

/* Record the -v binds with the new env 'name', for every 'on' to mount;
 * the env goes again when that fails. */
static int clone_add_binds(struct store *s, const char *name, const struct env_bind *binds,
			   size_t n, struct ct_err *e)
{
	struct env *env = NULL;
	size_t i;
	int r = n ? env_load(s, name, &env, e) : 0;

	for (i = 0; r == 0 && i < n; i++) {
		struct catalog_bind b = { .ro = binds[i].ro };

		snprintf(b.src, sizeof(b.src), "%s", binds[i].src);
		snprintf(b.tgt, sizeof(b.tgt), "%s", binds[i].tgt);
		r = catalog_bind_add(s->cat, env->row.id, &b, e);
	}
	if (r < 0 && env) {
		struct ct_err e2;

		(void)env_remove(s, env, &e2);
	}
	env_free(env);
	return r;
}

int cmd_clone(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "volatile", no_argument, NULL, 'V' },
		{ "driver", required_argument, NULL, 'R' },
		{ "volume", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *src, *name, *driver = NULL;
	bool volatile_ = false;
	struct catalog_image img = { 0 };
	struct env_bind binds[64];
	size_t n_binds = 0, i;
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1, slock = -1;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'v':
			if (n_binds >= ARRAY_SIZE(binds))
				return cmd_usage_error("too many -v");
			r = cmd_parse_volume(optarg, &binds[n_binds++]);
			if (r)
				return r;
			break;
		case 'V': volatile_ = true; break;
		case 'R':
			if (!driver_is_valid(optarg))
				return cmd_usage_error("no driver named '%s' (kernel or fuse)", optarg);
			driver = optarg;
			break;
		case 'h': fputs(clone_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind != 2)
		return cmd_usage_error("expected SOURCE and NAME (see 'ctool clone --help')");
	src = argv[optind];
	name = argv[optind + 1];
	if (!name_is_valid(src))
		return cmd_usage_error("no image or env named '%s' (not a valid name)", src);
	if (!cmd_check_name("env", name))
		return EXIT_USAGE;
	/* both names are locked, in name order, so that 'clone a b' and
	 * 'clone b a' at once cannot wait for each other */
	if (strcmp(src, name) < 0) {
		r = env_lock(ctx->store, src, &slock, &e);
		if (r == 0)
			r = env_lock(ctx->store, name, &lock, &e);
	} else {
		r = env_lock(ctx->store, name, &lock, &e);
		if (r == 0 && strcmp(src, name) != 0)
			r = env_lock(ctx->store, src, &slock, &e);
	}
	if (r < 0)
		return cmd_fail(&e);
	/* the binds are checked as 'on' will, before anything is made */
	for (i = 0; i < n_binds; i++)
		if (mounts_bind_check(binds[i].src, binds[i].tgt, ctx->store->path, &e) < 0)
			return cmd_fail(&e);
	r = catalog_image_get(ctx->store->cat, src, &img, &e);
	catalog_image_clear(&img);
	if (r == 0) {
		r = env_clone(ctx->store, src, NULL, name, dir, volatile_, driver, &e);
	} else if (r == -ENOENT) {
		struct env *senv = NULL;

		if (strcmp(src, name) == 0) {
			log_error("an env named '%s' already exists", name);
			return 1;
		}
		r = env_load(ctx->store, src, &senv, &e);
		if (r == -ENOENT) {
			log_error("no image or env named '%s'", src);
			return 1;
		}
		if (r < 0)
			return cmd_fail(&e);
		if (env_is_on(senv)) {
			log_error("env '%s' is on; turn it off before cloning it", src);
			env_free(senv);
			return 1;
		}
		r = env_clone(ctx->store, NULL, senv, name, dir, volatile_, driver, &e);
		env_free(senv);
	}
	if (r == 0)
		r = clone_add_binds(ctx->store, name, binds, n_binds, &e);
	if (r < 0)
		return cmd_fail(&e);
	return 0;
}
