/* ctool reset / rm: the two commands that delete an env's data. Both
 * refuse while the env is on unless --force turns it off first. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>

#include "cmd.h"
#include "util.h"

static int delete_verb(int argc, char **argv, struct cmd_ctx *ctx, const char *verb,
		       int (*fn)(struct store *s, struct env *env, struct ct_err *e))
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool force = false;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'f': force = true; break;
		case 'h': printf("usage: ctool %s [NAME | -d DIR] [--force]\n", verb); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool %s --help')", verb);
	/* resetting an env that is off needs no catalog (see env_load_named) */
	if (fn == env_reset && optind < argc && name_is_valid(argv[optind])) {
		if (env_lock(ctx->store, argv[optind], &lock, &e) < 0)
			return cmd_fail(&e);
		if (env_load_named(ctx->store, argv[optind], &env) == 0 && !env_is_on(env)) {
			r = env_reset(ctx->store, env, &e) < 0 ? cmd_fail(&e) : 0;
			env_free(env);
			return r;
		}
		env_free(env);
		env = NULL;
		(void)close(TAKE_FD(lock));
	}
	if (store_open_catalog(ctx->store, &e) < 0)
		return cmd_fail(&e);
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, dir, &env, &lock);
	if (r)
		return r;
	r = cmd_force_off(ctx, env, force, verb);
	if (r == 0 && fn(ctx->store, env, &e) < 0)
		r = cmd_fail(&e);
	env_free(env);
	return r;
}

int cmd_reset(int argc, char **argv, struct cmd_ctx *ctx)
{
	return delete_verb(argc, argv, ctx, "reset", env_reset);
}

int cmd_rm(int argc, char **argv, struct cmd_ctx *ctx)
{
	return delete_verb(argc, argv, ctx, "rm", env_remove);
}
