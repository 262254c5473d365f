/* ctool export, ctool import: an env's or an image's tree (or its stack
 * of layers) to a tar file, and an image from one. */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tarball.h"
#include "cmd.h"
#include "driver.h"
#include "lock.h"
#include "log.h"
#include "util.h"

static const char export_usage[] =
	"usage: ctool export [--layers] [-q] ENV|IMAGE FILE\n"
	"FILE ends in .tar, .tar.gz or .tgz, .tar.zst or .tzst; '-' is stdout (plain tar).\n"
	"--layers writes the stack of layers as it is, with a manifest, for 'ctool import'.\n";

static const char import_usage[] =
	"usage: ctool import [--trusted] [-q] FILE IMAGE\n"
	"FILE: a tar, compressed or not ('-' is stdin); a file of 'ctool export --layers'\n"
	"brings its stack of layers back.\n"
	"--trusted also takes device nodes, set-user-ID and set-group-ID files and\n"
	"trusted.* and security.* xattrs, which are refused otherwise.\n";

/* What an export reads: paths and origins of the layers, bottom first. */
struct export_src {
	struct arc_layer *layers;
	char **dirs, **origins;
	size_t n;
	char *config;
	char source[80];
};

static void export_src_free(struct export_src *src)
{
	size_t i;

	for (i = 0; i < src->n; i++) {
		free(src->dirs[i]);
		free(src->origins[i]);
	}
	free(src->layers);
	free(src->dirs);
	free(src->origins);
	free(src->config);
}

/* Fill src with the layers ids[0..n) (and room for one more on top). */
static int export_src_layers(struct store *s, struct export_src *src, char (*ids)[37], size_t n,
			     struct ct_err *e)
{
	size_t i;

	src->layers = calloc(n + 1, sizeof(*src->layers));
	src->dirs = calloc(n + 1, sizeof(*src->dirs));
	src->origins = calloc(n + 1, sizeof(*src->origins));
	if (!src->layers || !src->dirs || !src->origins)
		return ct_fail(e, ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		struct catalog_layer l = { 0 };
		struct ct_err e2 = { 0 };

		src->n++;
		src->dirs[i] = store_path(s, "layers/%s", ids[i]);
		src->origins[i] = strdup(catalog_layer_get(s->cat, ids[i], false, &l, &e2) == 0
						 ? l.origin : "");
		catalog_layer_clear(&l);
		if (!src->dirs[i] || !src->origins[i])
			return ct_fail(e, ENOMEM, "out of memory");
		src->layers[i].dir = src->dirs[i];
		src->layers[i].origin = src->origins[i];
	}
	return 0;
}

/* ctool-overlayfs lets a copy-up wait a few milliseconds in the workdir
 * before it shows it in the upper: let the copies made before the
 * export reach the upper first. */
static void wait_fuse_copies(const struct env *env)
{
	struct overlay_spec ov = { .work = env->work };
	struct timespec pause = { 0, 5 * 1000 * 1000 };
	int i;

	if (strcmp(env->row.driver, DRIVER_FUSE) != 0 || !env_is_on(env) ||
	    driver_fuse_dead(env->root))
		return;
	for (i = 0; i < 2000 && driver_fuse_copies_wait(&ov); i++)
		(void)nanosleep(&pause, NULL);
	if (driver_fuse_copies_wait(&ov))
		log_warn("ctool-overlayfs still holds copies back: the latest writes may be missing");
}

/* The layers of env: its image's as it was cloned, then its upper when
 * it has one (an env never turned on has none). */
static int export_src_env(struct store *s, const struct env *env, struct export_src *src,
			  struct ct_err *e)
{
	struct catalog_image img = { 0 };
	char (*ids)[37] = NULL;
	size_t n = 0;
	struct stat st;
	int r;

	r = catalog_env_layers(s->cat, env->row.id, &ids, &n, e);
	if (r == 0)
		r = export_src_layers(s, src, ids, n, e);
	free(ids);
	if (r < 0)
		return r;
	wait_fuse_copies(env);
	if (stat(env->upper, &st) == 0 && S_ISDIR(st.st_mode)) {
		src->dirs[n] = strdup(env->upper);
		src->origins[n] = xasprintf("changes of env %s", env->row.name);
		src->n++;
		if (!src->dirs[n] || !src->origins[n])
			return ct_fail(e, ENOMEM, "out of memory");
		src->layers[n].dir = src->dirs[n];
		src->layers[n].origin = src->origins[n];
	}
	if (catalog_image_get(s->cat, env->row.image, &img, &(struct ct_err){ 0 }) == 0) {
		src->config = img.config ? strdup(img.config) : NULL;
		catalog_image_clear(&img);
	}
	snprintf(src->source, sizeof(src->source), "env %s", env->row.name);
	return 0;
}

static int do_export(struct cmd_ctx *ctx, const char *name, const char *file, bool layers,
		     enum arc_compress c)
{
	struct store *s = ctx->store;
	struct export_src src = { 0 };
	struct catalog_image img = { 0 };
	struct arc_stats stats = { 0 };
	struct ct_err e = { 0 };
	struct env *env = NULL;
	_cleanup_close_ int ilock = -1, elock = -1;
	char size[32];
	int r;

	/* an image first, as clone has it; the lock keeps it from rmi */
	r = lock_name(s, "image", name, LOCK_SH, &ilock, &e);
	if (r == 0)
		r = catalog_image_get(s->cat, name, &img, &e);
	if (r == 0) {
		r = export_src_layers(s, &src, img.layers, img.n_layers, &e);
		if (r == 0 && img.config && !(src.config = strdup(img.config)))
			r = ct_fail(&e, ENOMEM, "out of memory");
		snprintf(src.source, sizeof(src.source), "image %s", name);
		catalog_image_clear(&img);
	} else if (r == -ENOENT) {
		(void)close(ilock);
		ilock = -1;
		/* the env's lock keeps it from reset and rm meanwhile */
		r = env_lock(s, name, &elock, &e);
		if (r == 0)
			r = env_load(s, name, &env, &e);
		if (r == -ENOENT) {
			log_error("no env or image named '%s'", name);
			export_src_free(&src);
			return 1;
		}
		if (r == 0)
			r = export_src_env(s, env, &src, &e);
		env_free(env);
	}
	if (r == 0) {
		struct arc_stack st = { .layers = src.layers, .n = src.n, .config = src.config,
					.source = src.source };

		arc_catch_signals();
		r = arc_export(&st, layers, file, c, &stats, &e);
	}
	export_src_free(&src);
	if (r < 0 && arc_interrupted()) {
		log_error("interrupted; '%s' was not written", file);
		return 130;
	}
	if (r < 0)
		return cmd_fail(&e);
	fmt_bytes((int64_t)stats.bytes, size, sizeof(size));
	if (layers)
		log_info("wrote '%s': %zu layer%s, %" PRIu64 " entries, %sB of file data", file,
			 stats.layers, stats.layers == 1 ? "" : "s", stats.entries, size);
	else
		log_info("wrote '%s': %" PRIu64 " entries, %sB of file data", file, stats.entries, size);
	return 0;
}

int cmd_export(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "layers", no_argument, NULL, 'l' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum arc_compress comp;
	bool layers = false;
	const char *name, *file;
	int c;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'l': layers = true; break;
		case 'q': log_set_level(LOG_ERROR); break;
		case 'h': fputs(export_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind != 2)
		return cmd_usage_error("expected ENV|IMAGE and FILE (see 'ctool export --help')");
	name = argv[optind];
	file = argv[optind + 1];
	if (!name_is_valid(name))
		return cmd_usage_error("no env or image named '%s' (not a valid name)", name);
	if (arc_compress_of(file, &comp) < 0)
		return cmd_usage_error("cannot tell how to write '%s' (use .tar, .tar.gz, .tgz, "
				       ".tar.zst, .tzst, or - for stdout)", file);
	if (strcmp(file, "-") == 0 && isatty(STDOUT_FILENO))
		return cmd_usage_error("stdout is a terminal; redirect it, or give a FILE");
	return do_export(ctx, name, file, layers, comp);
}

/* Move the staged layers into layers/ and record them and the image:
 * the image appears whole or not at all (what a crash leaves between
 * the rename and the rows, layers without a row, is gc's). */
static int import_publish(struct store *s, const char *name, const char *origin,
			  struct arc_import *im, struct ct_err *e)
{
	_cleanup_close_ int slock = -1;
	_cleanup_free_ char(*ids)[37] = calloc(im->n, sizeof(*ids));
	_cleanup_free_ char **dirs = calloc(im->n, sizeof(*dirs));
	struct catalog_image img = { 0 };
	size_t moved = 0, added = 0, i;
	int r;

	if (!ids || !dirs)
		return ct_fail(e, ENOMEM, "out of memory");
	r = lock_name(s, "store", "layers", LOCK_SH, &slock, e);
	for (i = 0; r == 0 && i < im->n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%s", im->layers[i].id);
		dirs[i] = store_path(s, "layers/%s", ids[i]);
		if (!dirs[i])
			r = ct_fail(e, ENOMEM, "out of memory");
		else if (rename(im->layers[i].path, dirs[i]) < 0)
			r = ct_fail_errno(e, errno, "cannot move '%s' to '%s'", im->layers[i].path,
					  dirs[i]);
		else
			moved++;
	}
	for (i = 0; r == 0 && i < im->n; i++) {
		struct catalog_layer l = { .size = im->layers[i].size, .created = now_ms() };

		snprintf(l.id, sizeof(l.id), "%s", ids[i]);
		snprintf(l.origin, sizeof(l.origin), "%s",
			 im->layers[i].origin ? im->layers[i].origin : origin);
		r = catalog_layer_put(s->cat, &l, e);
		if (r == 0)
			added++;
	}
	if (r == 0) {
		snprintf(img.name, sizeof(img.name), "%s", name);
		snprintf(img.origin, sizeof(img.origin), "%s", origin);
		img.created = now_ms();
		img.n_layers = im->n;
		img.layers = ids;
		img.config = im->config;
		r = catalog_image_add(s->cat, &img, e);
	}
	if (r == 0) {
		for (i = 0; i < im->n; i++) {
			free(im->layers[i].path);
			im->layers[i].path = NULL; /* moved: arc_import_clear leaves it */
		}
	} else {
		for (i = 0; i < added; i++)
			(void)catalog_layer_remove(s->cat, ids[i], &(struct ct_err){ 0 });
		for (i = 0; i < moved; i++) {
			(void)store_trash(s, dirs[i], NULL);
			free(im->layers[i].path);
			im->layers[i].path = NULL;
		}
		if (moved)
			(void)store_trash_flush(s, true, NULL);
	}
	for (i = 0; i < im->n; i++)
		free(dirs[i]);
	return r;
}

static int do_import(struct cmd_ctx *ctx, const char *file, const char *name, bool trusted)
{
	struct store *s = ctx->store;
	struct arc_import im = { 0 };
	struct ct_err e = { 0 };
	_cleanup_close_ int ilock = -1;
	_cleanup_free_ char *origin = NULL;
	char size[32];
	int r;

	/* a taken name is refused before anything is read */
	r = cmd_image_new(ctx, name, &ilock);
	if (r)
		return r;
	origin = xasprintf("import %s", strcmp(file, "-") ? file : "of stdin");
	if (!origin)
		return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
	arc_catch_signals();
	r = arc_import(s, file, trusted, &im, &e);
	if (r == 0 && arc_interrupted())
		r = ct_fail(&e, EINTR, "interrupted");
	if (r == 0) {
		r = import_publish(s, name, origin, &im, &e);
		if (r < 0)
			arc_import_discard(&im);
	}
	if (r < 0 && arc_interrupted()) {
		log_error("interrupted; nothing was created");
		return 130;
	}
	if (r < 0)
		return cmd_fail(&e);
	fmt_bytes((int64_t)im.stats.bytes, size, sizeof(size));
	log_info("image '%s': %zu layer%s, %" PRIu64 " entries, %sB of file data", name, im.n,
		 im.n == 1 ? "" : "s", im.stats.entries, size);
	arc_import_clear(&im);
	return 0;
}

int cmd_import(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "trusted", no_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool trusted = false;
	int c;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 't': trusted = true; break;
		case 'q': log_set_level(LOG_ERROR); break;
		case 'h': fputs(import_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind != 2)
		return cmd_usage_error("expected FILE and IMAGE (see 'ctool import --help')");
	if (!cmd_check_name("image", argv[optind + 1]))
		return EXIT_USAGE;
	return do_import(ctx, argv[optind], argv[optind + 1], trusted);
}
