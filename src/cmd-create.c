/* ctool create: base images, by debootstrap or from a directory, and
 * chroot-tool's "create -d DIR". */
#include "config.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cmd.h"
#include "debootstrap.h"
#include "exec.h"
#include "lock.h"
#include "log.h"
#include "util.h"

static const char create_usage[] =
	"usage: ctool create IMAGE [--suite S] [--mirror URL] [--variant V] [--include PKG,...]\n"
	"       ctool create IMAGE --from DIR\n"
	"       ctool create -d DIR [--name NAME] [--image IMAGE] [debootstrap options]\n";

/* Make image 'name': its one layer comes from debootstrap (from NULL) or
 * a copy of from. Staged in tmp/, so an interruption leaves nothing. */
static int image_make(struct cmd_ctx *ctx, const char *name, const char *from,
		      const struct debootstrap_opts *dopts)
{
	struct store *s = ctx->store;
	struct ct_err e = { 0 };
	_cleanup_close_ int ilock = -1, slock = -1, tlock = -1;
	_cleanup_free_ char *stage = NULL, *layer_dir = NULL, *tlockpath = NULL;
	struct catalog_image img = { 0 };
	char (*layers)[37] = NULL;
	const char *id;
	int r;

	r = cmd_image_new(ctx, name, &ilock);
	if (r)
		return r;
	if (from) {
		struct stat st;

		if (stat(from, &st) < 0 || !S_ISDIR(st.st_mode)) {
			log_error("'%s' is not a directory", from);
			return 1;
		}
	}
	r = store_tmp_new(s, &stage, &tlock, &e);
	if (r < 0)
		return cmd_fail(&e);
	tlockpath = xasprintf("%s.lock", stage);
	id = strrchr(stage, '/') + 1;
	if (from) {
		log_debug("copying '%s' into '%s'", from, stage);
		r = copy_tree(from, stage, &e);
	} else {
		r = debootstrap_run(stage, dopts, &e);
	}
	if (r < 0)
		goto fail;
	/* the layer becomes visible only with its catalog rows, under the
	 * store lock that gc takes exclusively */
	r = lock_name(s, "store", "layers", LOCK_SH, &slock, &e);
	if (r < 0)
		goto fail;
	layer_dir = store_path(s, "layers/%s", id);
	if (!layer_dir) {
		r = ct_fail(&e, ENOMEM, "out of memory");
		goto fail;
	}
	if (rename(stage, layer_dir) < 0) {
		r = ct_fail_errno(&e, errno, "cannot move '%s' to '%s'", stage, layer_dir);
		goto fail;
	}
	layers = calloc(1, sizeof(*layers));
	if (!layers) {
		r = ct_fail(&e, ENOMEM, "out of memory");
		goto undo_layer;
	}
	snprintf(layers[0], sizeof(layers[0]), "%s", id);
	snprintf(img.name, sizeof(img.name), "%s", name);
	img.created = now_ms();
	if (from)
		snprintf(img.origin, sizeof(img.origin), "from %s", from);
	else {
		_cleanup_free_ char *m = dopts->mirror ? strdup(dopts->mirror) : debootstrap_host_mirror();

		snprintf(img.origin, sizeof(img.origin), "debootstrap %s %s %s%s%s",
			 dopts->suite ? dopts->suite : "bookworm", m ? m : "",
			 dopts->variant ? dopts->variant : "minbase", dopts->include ? " +" : "",
			 dopts->include ? dopts->include : "");
	}
	img.layers = layers;
	img.n_layers = 1;
	{
		struct catalog_layer l = { .size = tree_bytes(layer_dir) };

		snprintf(l.id, sizeof(l.id), "%s", id);
		snprintf(l.origin, sizeof(l.origin), "%s", img.origin);
		r = catalog_layer_put(s->cat, &l, &e);
	}
	if (r == 0)
		r = catalog_image_add(s->cat, &img, &e);
	img.layers = NULL;
	free(layers);
	if (r < 0) {
		struct ct_err e2;

		(void)catalog_layer_remove(s->cat, id, &e2);
		goto undo_layer;
	}
	if (tlockpath)
		(void)unlink(tlockpath);
	return 0;
undo_layer:
	(void)store_trash(s, layer_dir, NULL);
	(void)store_trash_flush(s, true, NULL);
fail:
	{
		struct ct_err e2 = { 0 };

		if (rm_tree_onefs(AT_FDCWD, stage, &e2) < 0)
			log_warn("%s", e2.msg);
		else if (tlockpath)
			(void)unlink(tlockpath);
	}
	if (r == -EINTR) {
		log_error("interrupted; nothing was created");
		return 130;
	}
	return cmd_fail(&e);
}

int cmd_create(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "suite", required_argument, NULL, 'S' }, { "mirror", required_argument, NULL, 'M' },
		{ "variant", required_argument, NULL, 'A' }, { "include", required_argument, NULL, 'I' },
		{ "from", required_argument, NULL, 'f' }, { "dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' }, { "image", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },	  { NULL, 0, NULL, 0 },
	};
	struct debootstrap_opts dopts = { .progress = isatty(2), .quiet = log_get_level() < LOG_INFO };
	const char *from = NULL, *dir = NULL, *name = NULL, *image = NULL;
	struct catalog_image img = { 0 };
	struct ct_err e = { 0 };
	_cleanup_free_ char *dircopy = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'S': dopts.suite = optarg; break;
		case 'M': dopts.mirror = optarg; break;
		case 'A': dopts.variant = optarg; break;
		case 'I': dopts.include = optarg; break;
		case 'f': from = optarg; break;
		case 'd': dir = optarg; break;
		case 'n': name = optarg; break;
		case 'i': image = optarg; break;
		case 'h': fputs(create_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (!dir) {
		if (optind != argc - 1)
			return cmd_usage_error("expected one IMAGE name (see 'ctool create --help')");
		if (name || image)
			return cmd_usage_error("--name and --image go with -d DIR");
		if (!cmd_check_name("image", argv[optind]))
			return EXIT_USAGE;
		return image_make(ctx, argv[optind], from, &dopts);
	}
	/* chroot-tool's form: an env rooted at DIR from the default image */
	if (optind != argc)
		return cmd_usage_error("create -d DIR takes no IMAGE (use --image)");
	if (from)
		return cmd_usage_error("--from makes an image, not an env");
	if (!image)
		image = getenv("CTOOL_IMAGE");
	if (!image || !*image)
		image = "bookworm";
	if (!name) {
		dircopy = strdup(dir);
		if (!dircopy)
			return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
		name = basename(dircopy);
		if (!name_is_valid(name)) {
			log_error("'%s' is not a valid env name; choose one with --name", name);
			return EXIT_USAGE;
		}
	}
	if (!cmd_check_name("env", name) || !cmd_check_name("image", image))
		return EXIT_USAGE;
	r = catalog_image_get(ctx->store->cat, image, &img, &e);
	catalog_image_clear(&img);
	if (r == -ENOENT) {
		log_info("creating the image '%s' first", image);
		r = image_make(ctx, image, NULL, &dopts);
		if (r != 0)
			return r;
	} else if (r < 0) {
		return cmd_fail(&e);
	}
	{
		_cleanup_close_ int lock = -1;

		struct env *env = NULL;
		struct env_on_opts o = { 0 };

		r = env_lock(ctx->store, name, &lock, &e);
		if (r == 0)
			r = env_clone(ctx->store, image, NULL, name, dir, false, NULL, &e);
		/* as with chroot-tool, DIR shows the tree right away */
		if (r == 0)
			r = env_load(ctx->store, name, &env, &e);
		if (r == 0)
			r = env_on(ctx->store, env, &o, &e);
		env_free(env);
		if (r < 0)
			return cmd_fail(&e);
	}
	return 0;
}
