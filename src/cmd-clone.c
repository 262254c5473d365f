/* ctool clone SOURCE NAME: an env from an image (instant) or an env. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "driver.h"
#include "log.h"
#include "util.h"

static const char clone_usage[] =
	"usage: ctool clone SOURCE NAME [-d DIR] [--volatile] [--driver kernel|fuse]\n";

int cmd_clone(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "volatile", no_argument, NULL, 'V' },
		{ "driver", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *src, *name, *driver = NULL;
	bool volatile_ = false;
	struct catalog_image img = { 0 };
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1, slock = -1;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
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
	if (r < 0)
		return cmd_fail(&e);
	return 0;
}
