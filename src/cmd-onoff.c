/* ctool on / off. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "driver.h"
#include "log.h"
#include "util.h"

static const char on_usage[] = "usage: ctool on [NAME | -d DIR] [--host-dev] [-v HOST:TARGET[:ro]]...\n"
			       "                [--driver kernel|fuse]\n";
static const char off_usage[] = "usage: ctool off [NAME | -d DIR] [--force] [-t SECONDS]\n";

int cmd_on(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },  { "host-dev", no_argument, NULL, 'D' },
		{ "volume", required_argument, NULL, 'v' }, { "help", no_argument, NULL, 'h' },
		{ "driver", required_argument, NULL, 'R' }, { NULL, 0, NULL, 0 },
	};
	struct env_bind binds[64];
	struct env_on_opts o = { .binds = binds };
	const char *dir = NULL;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'D': o.host_dev = true; break;
		case 'R':
			if (!driver_is_valid(optarg))
				return cmd_usage_error("no driver named '%s' (kernel or fuse)", optarg);
			o.driver = optarg;
			break;
		case 'v':
			if (o.n_binds >= ARRAY_SIZE(binds))
				return cmd_usage_error("too many -v");
			r = cmd_parse_volume(optarg, &binds[o.n_binds++]);
			if (r)
				return r;
			break;
		case 'h': fputs(on_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool on --help')");
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, dir, &env, &lock);
	if (r)
		return r;
	r = env_on(ctx->store, env, &o, &e);
	env_free(env);
	return r < 0 ? cmd_fail(&e) : 0;
}

int cmd_off(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' }, { "force", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool force = false;
	double grace = 5;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1;
	char *end;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:ft:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'f': force = true; break;
		case 't':
			grace = strtod(optarg, &end);
			if (*end || !(grace >= 0 && grace <= 3600))
				return cmd_usage_error("bad timeout '%s' (seconds, 0 to 3600)", optarg);
			break;
		case 'h': fputs(off_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool off --help')");
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, dir, &env, &lock);
	if (r)
		return r;
	r = env_off(ctx->store, env, force, (int)(grace * 1000), &e);
	env_free(env);
	return r < 0 ? cmd_fail(&e) : 0;
}
