/* ctool list / images / info / rmi: looking at envs and images. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "cmd.h"
#include "lock.h"
#include "log.h"
#include "mounts.h"
#include "mounttab.h"
#include "util.h"

static void fmt_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
		snprintf(buf, len, "-");
}

/* A command that takes no argument but --help. */
static int no_args(int argc, char **argv, const char *usage, bool *quiet)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, quiet ? "qh" : "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			if (!quiet)
				return cmd_usage_error("unknown option '-q'");
			*quiet = true;
			break;
		case 'h': fputs(usage, stdout); return -1;
		default: return cmd_bad_option(argv);
		}
	}
	if (optind != argc)
		return cmd_usage_error("unexpected argument '%s'", argv[optind]);
	return 0;
}

struct list_ctx {
	struct store *s;
	bool quiet;
};

static int list_cb(const struct catalog_env *row, void *data)
{
	struct list_ctx *l = data;
	_cleanup_free_ char *root = row->root[0] ? strdup(row->root)
						  : store_path(l->s, "envs/%s/root", row->id);
	_cleanup_free_ char *dir = NULL;
	const char *state = "off";

	if (l->quiet) {
		printf("%s\n", row->name);
		return 0;
	}
	if (root && path_is_mountpoint(root)) {
		/* on, and running its service (ctool start) */
		dir = store_path(l->s, "envs/%s", row->id);
		state = dir && env_service_pid(dir) > 0 ? "service" : "on";
	}
	printf("%-20s %-16s %-7s %-7s %-9s %s\n", row->name, row->image, state, row->driver,
	       row->volatile_ ? "volatile" : "-", root ? root : "?");
	return 0;
}

int cmd_list(int argc, char **argv, struct cmd_ctx *ctx)
{
	struct list_ctx l = { .s = ctx->store };
	struct ct_err e = { 0 };
	int r = no_args(argc, argv, "usage: ctool list [-q]\n", &l.quiet);

	if (r)
		return r < 0 ? 0 : r;
	if (!l.quiet)
		printf("%-20s %-16s %-7s %-7s %-9s %s\n", "NAME", "IMAGE", "STATE", "DRIVER", "FLAGS",
		       "ROOT");
	if (catalog_env_foreach(ctx->store->cat, list_cb, &l, &e) < 0)
		return cmd_fail(&e);
	return 0;
}

static int images_cb(const struct catalog_image *img, void *data)
{
	struct store *s = data;
	struct ct_err e = { 0 };
	char when[32];
	int users = 0;

	char size[16];
	int64_t bytes = img->size;
	size_t i;

	(void)catalog_image_users(s->cat, img->name, &users, &e);
	fmt_time(img->created, when, sizeof(when));
	/* a layer made before sizes were kept is measured once */
	if (bytes < 0) {
		bytes = 0;
		for (i = 0; i < img->n_layers; i++) {
			struct catalog_layer l;
			_cleanup_free_ char *dir = NULL;

			if (catalog_layer_get(s->cat, img->layers[i], false, &l, &e) < 0)
				continue;
			if (l.size < 0) {
				dir = store_path(s, "layers/%s", l.id);
				l.size = dir ? tree_bytes(dir) : -1;
				if (l.size >= 0)
					(void)catalog_layer_set_size(s->cat, l.id, l.size, &e);
			}
			bytes += l.size > 0 ? l.size : 0;
			catalog_layer_clear(&l);
		}
	}
	fmt_bytes(bytes, size, sizeof(size));
	printf("%-20s %-6zu %-7s %-5d %-16s %s\n", img->name, img->n_layers, size, users, when,
	       img->origin);
	return 0;
}

int cmd_images(int argc, char **argv, struct cmd_ctx *ctx)
{
	struct ct_err e = { 0 };
	int r = no_args(argc, argv, "usage: ctool images\n", NULL);

	if (r)
		return r < 0 ? 0 : r;
	printf("%-20s %-6s %-7s %-5s %-16s %s\n", "NAME", "LAYERS", "SIZE", "ENVS", "CREATED",
	       "ORIGIN");
	if (catalog_image_foreach(ctx->store->cat, images_cb, ctx->store, &e) < 0)
		return cmd_fail(&e);
	return 0;
}

/* info's lines on the service (ctool start): its state, pid and log, the
 * start command, and each VOLUME of the image with the bind that serves
 * it (the deepest bind at or above its target), or "unbound". */
static int info_service(struct cmd_ctx *ctx, const struct env *env, bool on,
			const struct catalog_bind *binds, size_t n, struct ct_err *e)
{
	struct env_config c;
	pid_t pid = on ? env_service_pid(env->dir) : 0;
	size_t i, j;
	int r = env_config_load(ctx->store, env, &c, e);

	if (r < 0)
		return r;
	printf("service: %s\n", pid > 0 ? "running" : "stopped");
	if (pid > 0)
		printf("service-pid: %d\n", (int)pid);
	printf("service-log: %s/%s\n", env->dir, ENV_SERVICE_LOG);
	if (c.run)
		printf("start-command: %s\n", c.run);
	else if (!on)
		printf("start-command: /chroot.d/start, when the env has it\n");
	else
		printf("start-command: %s\n", env_has_file(env, "/chroot.d/start", true)
							? "/chroot.d/start" : "none");
	for (i = 0; i < c.n_volumes; i++) {
		const struct catalog_bind *best = NULL;
		size_t best_len = 0;

		for (j = 0; j < n; j++) {
			_cleanup_free_ char *tgt = path_clean_abs(binds[j].tgt);

			if (tgt && path_is_under(c.volumes[i], tgt) && strlen(tgt) >= best_len) {
				best = &binds[j];
				best_len = strlen(tgt);
			}
		}
		if (best)
			printf("volume: %s %s%s\n", c.volumes[i], best->src, best->ro ? " ro" : "");
		else
			printf("volume: %s unbound\n", c.volumes[i]);
	}
	env_config_clear(&c);
	return 0;
}

/* One line per layer, top first ("layer: ID SIZE ORIGIN"), with the
 * packages a PKG step installed below it. */
static void info_layers(struct store *s, char (*layers)[37], size_t n)
{
	struct ct_err e = { 0 };
	size_t i;

	for (i = n; i-- > 0;) {
		struct catalog_layer l;
		char size[16] = "?";
		const char *p;

		if (catalog_layer_get(s->cat, layers[i], false, &l, &e) < 0) {
			printf("layer: %s (%s)\n", layers[i], e.msg);
			continue;
		}
		if (l.size >= 0)
			fmt_bytes(l.size, size, sizeof(size));
		printf("layer: %s %s %s\n", l.id, size, l.origin);
		for (p = l.packages; p && *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != 0))
			printf("  package: %.*s\n", (int)strcspn(p, "\n"), p);
		catalog_layer_clear(&l);
	}
}

/* info IMAGE: its layers, config and users. */
static int info_image(struct cmd_ctx *ctx, const struct catalog_image *img)
{
	struct ct_err e = { 0 };
	char when[32], size[16] = "?";
	const char *p;
	int users = 0;

	(void)catalog_image_users(ctx->store->cat, img->name, &users, &e);
	fmt_time(img->created, when, sizeof(when));
	if (img->size >= 0)
		fmt_bytes(img->size, size, sizeof(size));
	printf("image: %s\ncreated: %s\norigin: %s\nsize: %s\nenvs: %d\n", img->name, when,
	       img->origin, size, users);
	for (p = img->config; p && *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != 0))
		printf("config: %.*s\n", (int)strcspn(p, "\n"), p);
	info_layers(ctx->store, img->layers, img->n_layers);
	return 0;
}

int cmd_info(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	struct env *env = NULL;
	struct catalog_bind *binds = NULL;
	struct ct_err e = { 0 };
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *opts_now = NULL;
	size_t n = 0, i;
	char when[32];
	bool on;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': fputs("usage: ctool info [NAME | -d DIR]\n", stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool info --help')");
	if (optind < argc && name_is_valid(argv[optind])) {
		struct catalog_env row;
		struct catalog_image img = { 0 };

		if (catalog_env_get(ctx->store->cat, argv[optind], &row, &e) == -ENOENT &&
		    catalog_image_get(ctx->store->cat, argv[optind], &img, &e) == 0) {
			r = info_image(ctx, &img);
			catalog_image_clear(&img);
			return r;
		}
	}
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, dir, &env, &lock);
	if (r)
		return r;
	on = env_is_on(env);
	fmt_time(env->row.created, when, sizeof(when));
	printf("name: %s\nid: %s\nimage: %s\nstate: %s\ndriver: %s\nvolatile: %s\nroot: %s\n"
	       "upper: %s\nconf: %s\ncreated: %s\n",
	       env->row.name, env->row.id, env->row.image, on ? "on" : "off", env->row.driver,
	       env->row.volatile_ ? "yes" : "no", env->root, env->upper, env->conf, when);
	if (env->row.driver_note[0])
		printf("driver-note: %s\n", env->row.driver_note);
	if (on && (opts_now = mounttab_options(env->root)))
		printf("mount-options: %s\n", opts_now);
	{
		char(*layers)[37] = NULL;
		size_t nl = 0;

		if (catalog_env_layers(ctx->store->cat, env->row.id, &layers, &nl, &e) == 0)
			info_layers(ctx->store, layers, nl);
		free(layers);
	}
	r = env_binds(ctx->store, env, &binds, &n, &e);
	if (r == 0)
		r = info_service(ctx, env, on, binds, n, &e);
	if (r < 0) {
		free(binds);
		env_free(env);
		return cmd_fail(&e);
	}
	for (i = 0; i < n; i++)
		printf("bind: %s %s%s\n", binds[i].src, binds[i].tgt, binds[i].ro ? " ro" : "");
	free(binds);
	env_free(env);
	return 0;
}

int cmd_rmi(int argc, char **argv, struct cmd_ctx *ctx)
{
	struct store *s = ctx->store;
	struct catalog_image img = { 0 };
	struct ct_err e = { 0 };
	_cleanup_close_ int ilock = -1, slock = -1;
	size_t i;
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs("usage: ctool rmi IMAGE\n", stdout);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-')
		return cmd_usage_error("expected one IMAGE (see 'ctool rmi --help')");
	if (!name_is_valid(argv[1]))
		return cmd_usage_error("no image named '%s' (not a valid name)", argv[1]);
	r = lock_name(s, "image", argv[1], LOCK_EX, &ilock, &e);
	if (r == 0)
		r = lock_name(s, "store", "layers", LOCK_SH, &slock, &e);
	if (r == 0)
		r = catalog_image_get(s->cat, argv[1], &img, &e);
	/* nothing is deleted through a mount: refuse before anything changes */
	for (i = 0; r == 0 && i < img.n_layers; i++) {
		_cleanup_free_ char *dir = store_path(s, "layers/%s", img.layers[i]);

		r = dir ? mounts_check_none(dir, &e) : ct_fail(&e, ENOMEM, "out of memory");
	}
	if (r == 0)
		r = catalog_image_remove(s->cat, argv[1], &e);
	if (r < 0) {
		catalog_image_clear(&img);
		return cmd_fail(&e);
	}
	/* its layers go too, unless another image stands on them */
	for (i = 0; i < img.n_layers; i++) {
		_cleanup_free_ char *dir = NULL;
		bool used = true;

		if (catalog_layer_used(s->cat, img.layers[i], &used, &e) < 0 || used)
			continue;
		dir = store_path(s, "layers/%s", img.layers[i]);
		if (!dir || catalog_layer_remove(s->cat, img.layers[i], &e) < 0 ||
		    store_trash(s, dir, &e) < 0)
			log_warn("layer '%s' left for gc: %s", img.layers[i], e.msg);
	}
	catalog_image_clear(&img);
	if (store_trash_flush(s, false, &e) < 0)
		return cmd_fail(&e);
	return 0;
}
