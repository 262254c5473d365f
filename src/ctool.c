/* ctool: copy-on-write Debian environments over one read-only base.
 * This file holds the global options, the command table and the helpers
 * the commands share. */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "cmd.h"
#include "lock.h"
#include "log.h"
#include "util.h"

enum {
	NEED_STORE = 1 << 0,
	LAZY_CATALOG = 1 << 1, /* the command opens the catalog when it needs it */
};

struct command {
	const char *name;
	int (*fn)(int argc, char **argv, struct cmd_ctx *ctx);
	unsigned flags;
	const char *summary;
};

static const struct command commands[] = {
	{ "create", cmd_create, NEED_STORE, "make a base image (debootstrap, or --from DIR)" },
	{ "clone", cmd_clone, NEED_STORE, "make an env from an image or an env" },
	{ "on", cmd_on, NEED_STORE, "mount an env's overlay and binds" },
	{ "off", cmd_off, NEED_STORE, "stop an env's processes and unmount it" },
	{ "run", cmd_run, NEED_STORE | LAZY_CATALOG, "run a command inside an env" },
	{ "reset", cmd_reset, NEED_STORE | LAZY_CATALOG, "throw an env's changes away" },
	{ "rm", cmd_rm, NEED_STORE | LAZY_CATALOG, "remove an env" },
	{ "list", cmd_list, NEED_STORE, "list envs" },
	{ "images", cmd_images, NEED_STORE, "list images" },
	{ "info", cmd_info, NEED_STORE, "show an env" },
	{ "rmi", cmd_rmi, NEED_STORE, "remove an image" },
	{ "bind", cmd_bind, NEED_STORE, "add a bind to an env's tool.conf" },
	{ "gc", cmd_gc, NEED_STORE | LAZY_CATALOG, "finish deletions and clean up" },
	{ "build", cmd_build, NEED_STORE, "build an image from a recipe (Ctoolfile)" },
	{ "commit", cmd_commit, NEED_STORE, "make an env's changes a layer of a new image" },
	{ "start", cmd_start, NEED_STORE, "turn an env on and start its service" },
	{ "logs", cmd_logs, NEED_STORE, "show an env's service log" },
	{ "export", cmd_export, NEED_STORE, "write an env or image to a tar file" },
	{ "import", cmd_import, NEED_STORE, "make an image from a tar file" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ctool [--store DIR] [-q] [-v] COMMAND [ARGS...]\n\ncommands:\n");
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'ctool COMMAND --help' shows a command's options.\n"
		   "environment: CTOOL_STORE (the store), CTOOL_DRIVER (kernel or fuse),\n"
		   "CTOOL_IMAGE (create -d's image), CTOOL_OVERLAYFS (the FUSE daemon),\n"
		   "CTOOL_DEBUG=1 (as -v).\n");
}

int cmd_usage_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_error("%s", buf);
	return EXIT_USAGE;
}

int cmd_bad_option(char **argv)
{
	/* unknown, or missing its value: optopt names a short option, the
	 * word before optind a long one */
	if (optopt)
		return cmd_usage_error("bad option '-%c' (unknown, or missing its value)", optopt);
	return cmd_usage_error("bad option '%s' (unknown, or missing its value)", argv[optind - 1]);
}

int cmd_fail(const struct ct_err *e)
{
	log_error("%s", e->msg[0] ? e->msg : strerror(e->code ? e->code : EIO));
	return 1;
}

bool cmd_check_name(const char *what, const char *name)
{
	if (name_is_valid(name))
		return true;
	log_error("invalid %s name '%s' (use [a-z0-9][a-z0-9_.-]{0,62})", what, name);
	return false;
}

int cmd_env_open(struct cmd_ctx *ctx, const char *name, const char *dir, struct env **ret,
		 int *ret_lock)
{
	struct ct_err e = { 0 };
	_cleanup_free_ char *found = NULL;
	int r;

	if (!name) {
		struct env *env = NULL;
		_cleanup_free_ char *cwd = NULL;

		if (!dir)
			dir = cwd = getcwd(NULL, 0);
		if (!dir) {
			log_error("no env given, and the current directory is unknown");
			return EXIT_USAGE;
		}
		r = env_find_by_root(ctx->store, dir, &env, &e);
		if (r < 0) {
			if (cwd && r == -ENOENT) {
				log_error("no env given, and the current directory is not an env's root");
				return EXIT_USAGE;
			}
			return cmd_fail(&e);
		}
		found = strdup(env->row.name);
		env_free(env);
		if (!found)
			return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
		name = found;
	} else if (!cmd_check_name("env", name)) {
		return EXIT_USAGE;
	}
	r = env_lock(ctx->store, name, ret_lock, &e);
	if (r < 0)
		return cmd_fail(&e);
	r = env_load(ctx->store, name, ret, &e);
	if (r < 0) {
		(void)close(*ret_lock);
		*ret_lock = -1;
		return cmd_fail(&e);
	}
	return 0;
}

int cmd_image_new(struct cmd_ctx *ctx, const char *name, int *ret_lock)
{
	struct catalog_image img = { 0 };
	struct ct_err e = { 0 };
	int r = lock_name(ctx->store, "image", name, LOCK_EX, ret_lock, &e);

	if (r < 0)
		return cmd_fail(&e);
	r = catalog_image_get(ctx->store->cat, name, &img, &e);
	catalog_image_clear(&img);
	if (r == 0) {
		log_error("an image named '%s' already exists", name);
		return 1;
	}
	return r == -ENOENT ? 0 : cmd_fail(&e);
}

int cmd_parse_volume(const char *arg, struct env_bind *ret)
{
	static char buf[3][4096];
	static int slot;
	char *b = buf[slot++ % 3], *colon, *opt;

	snprintf(b, sizeof(buf[0]), "%s", arg);
	colon = strchr(b, ':');
	if (!colon || colon == b || !colon[1])
		return cmd_usage_error("bad volume '%s' (use HOST:TARGET[:ro])", arg);
	*colon = '\0';
	ret->src = b;
	ret->tgt = colon + 1;
	ret->ro = false;
	opt = strchr(colon + 1, ':');
	if (opt) {
		*opt++ = '\0';
		if (strcmp(opt, "ro") == 0)
			ret->ro = true;
		else if (strcmp(opt, "rw") != 0)
			return cmd_usage_error("bad volume option '%s' (use ro or rw)", opt);
	}
	return 0;
}

int cmd_force_off(struct cmd_ctx *ctx, struct env *env, bool force, const char *verb)
{
	struct ct_err e = { 0 };

	if (!env_is_on(env))
		return 0;
	if (!force) {
		log_error("env '%s' is on; run 'ctool off %s' first, or %s --force", env->row.name,
			  env->row.name, verb);
		return 1;
	}
	if (env_off(ctx->store, env, true, 5000, &e) < 0)
		return cmd_fail(&e);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' }, { "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },	   { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },	   { NULL, 0, NULL, 0 },
	};
	struct cmd_ctx ctx = { 0 };
	const struct command *cmd = NULL;
	const char *dbg = getenv("CTOOL_DEBUG");
	size_t i;
	int c, r;

	opterr = 0; /* bad options are reported in one line of our own */
	if (dbg && *dbg && strcmp(dbg, "0") != 0)
		log_set_level(LOG_DEBUG);
	while ((c = getopt_long(argc, argv, "+qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			ctx.store_path = optarg;
			break;
		case 'q':
			log_set_level(LOG_ERROR);
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ctool %s\n", PACKAGE_VERSION);
			return 0;
		default:
			return cmd_bad_option(argv);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, argv[optind]) == 0)
			cmd = &commands[i];
	if (!cmd) {
		log_error("unknown command '%s' (see 'ctool --help')", argv[optind]);
		return EXIT_USAGE;
	}
	log_set_verb(cmd->name);
	argc -= optind;
	argv += optind;
	optind = 0; /* reset getopt for the command's own options */
	/* "ctool COMMAND --help" needs no store */
	if (cmd->flags & NEED_STORE &&
	    !(argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))) {
		struct ct_err e = { 0 };

		if (store_open(ctx.store_path, !(cmd->flags & LAZY_CATALOG), &ctx.store, &e) < 0) {
			cmd_fail(&e);
			return cmd->fn == cmd_run ? 125 : 1;
		}
	}
	r = cmd->fn(argc, argv, &ctx);
	store_free(ctx.store);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		log_error("cannot write the output: %m");
		return 1;
	}
	return r;
}
