#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog.h"
#include "tap.h"

#ifndef N_CHILDREN
#define N_CHILDREN 16
#endif
#define N_PER_CHILD 20

static char tmpdir[4096];

/* tmpdir/name into buf. */
static const char *tmp_path(char *buf, size_t size, const char *name)
{
	(void)snprintf(buf, size, "%s/%s", tmpdir, name);
	return buf;
}

/* The whole file at path into a malloc'd buffer (*ret_len bytes); NULL on error. */
static char *slurp(const char *path, size_t *ret_len)
{
	char *buf = NULL, *p;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (!p)
				break;
			buf = p;
		}
		n = read(fd, buf + len, cap - len);
		if (n <= 0) {
			(void)close(fd);
			if (n < 0)
				break;
			*ret_len = len;
			return buf;
		}
		len += (size_t)n;
	}
	(void)close(fd);
	free(buf);
	return NULL;
}

static int spew(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, data, len);
	if (close(fd) < 0 || n != (ssize_t)len)
		return -1;
	return 0;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void env_init(struct catalog_env *env, const char *id, const char *name,
		     const char *image, const char *root)
{
	memset(env, 0, sizeof(*env));
	(void)snprintf(env->id, sizeof(env->id), "%s", id);
	(void)snprintf(env->name, sizeof(env->name), "%s", name);
	(void)snprintf(env->image, sizeof(env->image), "%s", image);
	(void)snprintf(env->root, sizeof(env->root), "%s", root);
	(void)snprintf(env->driver, sizeof(env->driver), "kernel");
}

static int add_image(struct catalog *c, const char *name, size_t n, char (*layers)[37],
		     struct ct_err *e)
{
	struct catalog_image img;

	memset(&img, 0, sizeof(img));
	(void)snprintf(img.name, sizeof(img.name), "%s", name);
	(void)snprintf(img.origin, sizeof(img.origin), "from /tmp/%s", name);
	img.n_layers = n;
	img.layers = layers;
	return catalog_image_add(c, &img, e);
}

/* Appends each name, comma-separated, to the buffer in data. */
static int collect_image(const struct catalog_image *img, void *data)
{
	char *buf = data;

	if (*buf)
		strcat(buf, ",");
	strcat(buf, img->name);
	return 0;
}

static int collect_env(const struct catalog_env *env, void *data)
{
	char *buf = data;

	if (*buf)
		strcat(buf, ",");
	strcat(buf, env->name);
	return 0;
}

static int stop_at_first(const struct catalog_env *env, void *data)
{
	(void)env;
	(*(int *)data)++;
	return 7;
}

static int count_env(const struct catalog_env *env, void *data)
{
	(void)env;
	(*(int *)data)++;
	return 0;
}

/* 29 tests */
static void test_layers_images(struct catalog *c, const char *what)
{
	char layers[3][37] = { "33333333-0000-0000-0000-000000000000",
			       "11111111-0000-0000-0000-000000000000",
			       "22222222-0000-0000-0000-000000000000" };
	char missing[1][37] = { "99999999-0000-0000-0000-000000000000" };
	char long_id[64];
	struct catalog_image img;
	struct ct_err e = { 0 };
	char names[256] = "";
	bool used;
	int r, i;

	for (i = 0, r = 0; i < 3 && r == 0; i++)
		r = catalog_layer_add(c, layers[i], "debootstrap bookworm", &e);
	is_int(r, 0, "%s: three layers added", what);
	r = catalog_layer_add(c, layers[0], "again", &e);
	is_int(r, -EEXIST, "%s: duplicate layer gives -EEXIST", what);
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	r = catalog_layer_add(c, long_id, "x", &e);
	is_int(r, -EINVAL, "%s: over-long layer id refused", what);

	r = add_image(c, "base", 3, layers, &e);
	is_int(r, 0, "%s: image with three layers added", what);
	memset(&img, 0, sizeof(img));
	r = catalog_image_get(c, "base", &img, &e);
	is_int(r, 0, "%s: image found", what);
	is_int(img.n_layers, 3, "%s: image has three layers", what);
	ok(img.n_layers == 3 && strcmp(img.layers[0], layers[0]) == 0 &&
		   strcmp(img.layers[1], layers[1]) == 0 && strcmp(img.layers[2], layers[2]) == 0,
	   "%s: layers come back bottom first, as added", what);
	is_str(img.origin, "from /tmp/base", "%s: origin kept", what);
	ok(img.created > 0, "%s: created set", what);
	catalog_image_clear(&img);
	ok(img.layers == NULL && img.n_layers == 0, "%s: image_clear frees the layers", what);

	r = add_image(c, "base", 1, layers, &e);
	is_int(r, -EEXIST, "%s: duplicate image gives -EEXIST", what);
	is_str(e.msg, "an image named 'base' already exists", "%s: duplicate image message", what);
	r = add_image(c, "broken", 1, missing, &e);
	is_int(r, -ENOENT, "%s: image on a missing layer gives -ENOENT", what);
	r = catalog_image_get(c, "broken", &img, &e);
	is_int(r, -ENOENT, "%s: failed image_add left no row", what);
	is_str(e.msg, "no image named 'broken'", "%s: missing image message", what);

	r = catalog_layer_used(c, layers[1], &used, &e);
	ok(r == 0 && used, "%s: layer in an image is used", what);
	r = catalog_layer_remove(c, layers[1], &e);
	is_int(r, -EBUSY, "%s: removing a used layer gives -EBUSY", what);
	r = catalog_layer_add(c, "44444444-0000-0000-0000-000000000000", "spare", &e);
	if (r == 0)
		r = catalog_layer_used(c, "44444444-0000-0000-0000-000000000000", &used, &e);
	ok(r == 0 && !used, "%s: spare layer is not used", what);
	r = catalog_layer_remove(c, "44444444-0000-0000-0000-000000000000", &e);
	is_int(r, 0, "%s: unused layer removed", what);
	r = catalog_layer_remove(c, "44444444-0000-0000-0000-000000000000", &e);
	is_int(r, -ENOENT, "%s: removing a missing layer gives -ENOENT", what);

	r = add_image(c, "alpha", 1, layers + 2, &e);
	is_int(r, 0, "%s: second image added", what);
	r = add_image(c, "zulu", 0, NULL, &e);
	is_int(r, 0, "%s: image without layers added", what);
	r = catalog_image_foreach(c, collect_image, names, &e);
	is_int(r, 0, "%s: image_foreach", what);
	is_str(names, "alpha,base,zulu", "%s: images listed by name", what);
	r = catalog_image_get(c, "zulu", &img, &e);
	ok(r == 0 && img.n_layers == 0 && img.layers == NULL, "%s: empty image has no layers",
	   what);
	catalog_image_clear(&img);
	r = catalog_image_remove(c, "zulu", &e);
	is_int(r, 0, "%s: unused image removed", what);
	r = catalog_image_remove(c, "zulu", &e);
	is_int(r, -ENOENT, "%s: removing a missing image gives -ENOENT", what);
	is_str(e.msg, "no image named 'zulu'", "%s: missing image message on remove", what);
	r = catalog_image_remove(c, "alpha", &e);
	is_int(r, 0, "%s: second image removed", what);
}

/* 44 tests; needs the "base" image of test_layers_images */
static void test_envs_binds(struct catalog *c, const char *what)
{
	struct catalog_env env, got;
	struct catalog_bind b, *binds = NULL;
	struct ct_err e = { 0 };
	char names[256] = "";
	size_t n = 0;
	bool used;
	int r, count;

	env_init(&env, "00000000-0000-0000-0000-0000000000d1", "dev", "base", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, 0, "%s: env with the default root added", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000d2", "web", "base", "/srv/web");
	env.volatile_ = true;
	r = catalog_env_add(c, &env, &e);
	is_int(r, 0, "%s: env with a chosen root added", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000d3", "app", "base", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, 0, "%s: second env with the default root added", what);

	memset(&got, 0, sizeof(got));
	r = catalog_env_get(c, "dev", &got, &e);
	is_int(r, 0, "%s: env_get", what);
	is_str(got.id, "00000000-0000-0000-0000-0000000000d1", "%s: env id", what);
	is_str(got.image, "base", "%s: env image", what);
	is_str(got.root, "", "%s: default root reads back as \"\"", what);
	is_str(got.driver, "kernel", "%s: env driver", what);
	ok(!got.volatile_ && !got.want_on && got.boot_id[0] == '\0' && got.created > 0,
	   "%s: env flags and created", what);
	r = catalog_env_get(c, "nope", &got, &e);
	is_int(r, -ENOENT, "%s: missing env gives -ENOENT", what);
	is_str(e.msg, "no env named 'nope'", "%s: missing env message", what);

	env_init(&env, "00000000-0000-0000-0000-0000000000d4", "dev", "base", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, -EEXIST, "%s: duplicate env name gives -EEXIST", what);
	is_str(e.msg, "an env named 'dev' already exists", "%s: duplicate env message", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000d4", "web2", "base", "/srv/web");
	r = catalog_env_add(c, &env, &e);
	is_int(r, -EEXIST, "%s: duplicate root gives -EEXIST", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000d1", "other", "base", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, -EEXIST, "%s: duplicate id gives -EEXIST", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000d4", "lost", "nope", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, -ENOENT, "%s: env on a missing image gives -ENOENT", what);
	is_str(e.msg, "no image named 'nope'", "%s: missing image message on env_add", what);

	r = catalog_env_by_root(c, "/srv/web", &got, &e);
	ok(r == 0 && strcmp(got.name, "web") == 0 && got.volatile_, "%s: env_by_root finds 'web'",
	   what);
	r = catalog_env_by_root(c, "/srv/nope", &got, &e);
	is_int(r, -ENOENT, "%s: env_by_root on an unknown root gives -ENOENT", what);
	r = catalog_env_by_root(c, "", &got, &e);
	is_int(r, -ENOENT, "%s: env_by_root never matches the default root", what);

	r = catalog_env_foreach(c, collect_env, names, &e);
	is_int(r, 0, "%s: env_foreach", what);
	is_str(names, "app,dev,web", "%s: envs listed by name", what);
	count = 0;
	r = catalog_env_foreach(c, stop_at_first, &count, &e);
	ok(r == 7 && count == 1, "%s: env_foreach stops on and returns the callback's value", what);

	r = catalog_env_set_on(c, "dev", true, "boot-1", &e);
	is_int(r, 0, "%s: env_set_on", what);
	r = catalog_env_get(c, "dev", &got, &e);
	ok(r == 0 && got.want_on && strcmp(got.boot_id, "boot-1") == 0,
	   "%s: want_on and boot_id recorded", what);
	r = catalog_env_set_on(c, "dev", false, NULL, &e);
	if (r == 0)
		r = catalog_env_get(c, "dev", &got, &e);
	ok(r == 0 && !got.want_on && got.boot_id[0] == '\0', "%s: env_set_on off", what);
	r = catalog_env_set_on(c, "nope", true, "boot-1", &e);
	is_int(r, -ENOENT, "%s: env_set_on on a missing env gives -ENOENT", what);

	r = catalog_env_get(c, "dev", &got, &e);
	ok(r == 0 && got.driver_note[0] == '\0', "%s: a new env has no driver note", what);
	r = catalog_env_set_driver(c, "dev", "fuse", "kernel overlay refused: EINVAL", &e);
	if (r == 0)
		r = catalog_env_get(c, "dev", &got, &e);
	ok(r == 0 && strcmp(got.driver, "fuse") == 0 &&
		   strcmp(got.driver_note, "kernel overlay refused: EINVAL") == 0,
	   "%s: env_set_driver records the driver and why", what);
	r = catalog_env_set_driver(c, "dev", "kernel", NULL, &e);
	if (r == 0)
		r = catalog_env_get(c, "dev", &got, &e);
	ok(r == 0 && strcmp(got.driver, "kernel") == 0 && got.driver_note[0] == '\0',
	   "%s: env_set_driver with no note clears it", what);
	r = catalog_env_set_driver(c, "nope", "fuse", NULL, &e);
	is_int(r, -ENOENT, "%s: env_set_driver on a missing env gives -ENOENT", what);

	r = catalog_image_users(c, "base", &count, &e);
	ok(r == 0 && count == 3, "%s: image_users counts three envs", what);
	r = catalog_image_remove(c, "base", &e);
	is_int(r, -EBUSY, "%s: removing a used image gives -EBUSY", what);
	is_str(e.msg, "image 'base' is used by 3 env(s)", "%s: image in use message", what);

	memset(&b, 0, sizeof(b));
	strcpy(b.src, "/home/a");
	strcpy(b.tgt, "/mnt/a");
	r = catalog_bind_add(c, "00000000-0000-0000-0000-0000000000d1", &b, &e);
	strcpy(b.src, "/home/b");
	strcpy(b.tgt, "/mnt/b");
	b.ro = true;
	if (r == 0)
		r = catalog_bind_add(c, "00000000-0000-0000-0000-0000000000d1", &b, &e);
	is_int(r, 0, "%s: two binds added", what);
	strcpy(b.src, "/home/c");
	strcpy(b.tgt, "/mnt/a");
	b.ro = false;
	r = catalog_bind_add(c, "00000000-0000-0000-0000-0000000000d1", &b, &e);
	is_int(r, 0, "%s: bind to a recorded target added", what);
	r = catalog_bind_list(c, "00000000-0000-0000-0000-0000000000d1", &binds, &n, &e);
	is_int(n, 2, "%s: the bind replaced the one to the same target", what);
	ok(r == 0 && n == 2 && strcmp(binds[0].tgt, "/mnt/a") == 0 &&
		   strcmp(binds[0].src, "/home/c") == 0 && !binds[0].ro &&
		   strcmp(binds[1].tgt, "/mnt/b") == 0 && strcmp(binds[1].src, "/home/b") == 0 &&
		   binds[1].ro,
	   "%s: binds listed in order, the replaced one in its place", what);
	free(binds);
	binds = NULL;
	r = catalog_bind_add(c, "00000000-0000-0000-0000-00000000dead", &b, &e);
	is_int(r, -ENOENT, "%s: bind on a missing env gives -ENOENT", what);

	r = catalog_env_remove(c, "dev", &e);
	is_int(r, 0, "%s: env removed", what);
	r = catalog_env_get(c, "dev", &got, &e);
	is_int(r, -ENOENT, "%s: removed env is gone", what);
	r = catalog_bind_list(c, "00000000-0000-0000-0000-0000000000d1", &binds, &n, &e);
	ok(r == 0 && n == 0, "%s: env removal took its binds", what);
	free(binds);
	r = catalog_env_remove(c, "dev", &e);
	is_int(r, -ENOENT, "%s: removing a missing env gives -ENOENT", what);
	is_str(e.msg, "no env named 'dev'", "%s: missing env message on remove", what);

	r = catalog_env_remove(c, "web", &e);
	if (r == 0)
		r = catalog_env_remove(c, "app", &e);
	is_int(r, 0, "%s: other envs removed", what);
	r = catalog_image_remove(c, "base", &e);
	is_int(r, 0, "%s: image removed once no env uses it", what);
	r = catalog_layer_used(c, "11111111-0000-0000-0000-000000000000", &used, &e);
	ok(r == 0 && !used, "%s: image removal released its layers", what);
	r = catalog_layer_remove(c, "11111111-0000-0000-0000-000000000000", &e);
	is_int(r, 0, "%s: released layer can be removed", what);
}

/* 15 tests: built layers, image replacement, and the layers an env keeps */
static void test_layer_stacks(struct catalog *c, const char *what)
{
	char layers[2][37] = { "a0000000-0000-0000-0000-000000000000",
			       "a1000000-0000-0000-0000-000000000000" };
	char (*got)[37] = NULL;
	struct catalog_layer l = { .size = 4096 }, back;
	struct catalog_image img;
	struct catalog_env env;
	struct ct_err e = { 0 };
	size_t n = 0;
	bool used;
	int r;

	strcpy(l.id, layers[0]);
	strcpy(l.origin, "PKG nginx");
	memset(l.cache_key, 'f', 64);
	l.packages = (char *)"nginx=1.22.1-9\n";
	r = catalog_layer_put(c, &l, &e);
	is_int(r, 0, "%s: built layer added", what);
	strcpy(l.id, layers[1]);
	strcpy(l.id, "a2000000-0000-0000-0000-000000000000");
	r = catalog_layer_put(c, &l, &e);
	is_int(r, 0, "%s: a layer with the same key added", what);
	r = catalog_layer_get(c, l.cache_key, true, &back, &e);
	ok(r == 0 && !strcmp(back.id, l.id), "%s: the newer layer took the key over", what);
	if (r == 0)
		catalog_layer_clear(&back);
	(void)catalog_layer_remove(c, l.id, &e);
	r = catalog_layer_get(c, layers[0], false, &back, &e);
	ok(r == 0 && !strcmp(back.id, layers[0]) && back.size == 4096 && back.packages &&
		   !strcmp(back.packages, "nginx=1.22.1-9\n") && !strcmp(back.origin, "PKG nginx"),
	   "%s: layer found by its id, with its packages and size", what);
	if (r == 0)
		catalog_layer_clear(&back);
	r = catalog_layer_add(c, layers[1], "EXEC true", &e);
	is_int(r, 0, "%s: second layer added", what);
	r = catalog_layer_get(c, layers[1], false, &back, &e);
	ok(r == 0 && back.cache_key[0] == '\0' && back.size == -1 && !back.packages,
	   "%s: a plain layer has no key, size or packages", what);
	r = add_image(c, "stack", 1, layers, &e);
	is_int(r, 0, "%s: one-layer image added", what);
	env_init(&env, "00000000-0000-0000-0000-0000000000e1", "pinned", "stack", "");
	r = catalog_env_add(c, &env, &e);
	is_int(r, 0, "%s: env on it added", what);

	memset(&img, 0, sizeof(img));
	strcpy(img.name, "stack");
	strcpy(img.origin, "build");
	img.config = (char *)"RUN httpd\n";
	img.n_layers = 2;
	img.layers = layers;
	r = catalog_image_put(c, &img, &e);
	is_int(r, 0, "%s: image replaced while an env uses it", what);
	memset(&img, 0, sizeof(img));
	r = catalog_image_get(c, "stack", &img, &e);
	ok(r == 0 && img.n_layers == 2 && img.config && !strcmp(img.config, "RUN httpd\n") &&
		   img.size == -1,
	   "%s: the image has its new layers and config", what);
	catalog_image_clear(&img);
	r = catalog_env_layers(c, env.id, &got, &n, &e);
	ok(r == 0 && n == 1 && !strcmp(got[0], layers[0]), "%s: the env keeps its layers", what);
	free(got);
	r = catalog_layer_set_size(c, layers[1], 10, &e);
	is_int(r, 0, "%s: size recorded", what);

	env_init(&env, "00000000-0000-0000-0000-0000000000e2", "copy", "stack", "");
	strcpy(env.layers_of, "00000000-0000-0000-0000-0000000000e1");
	r = catalog_env_add(c, &env, &e);
	if (r == 0)
		r = catalog_env_layers(c, env.id, &got, &n, &e);
	ok(r == 0 && n == 1, "%s: a copy of an env takes that env's layers", what);
	if (r == 0)
		free(got);
	r = catalog_env_rebase(c, "pinned", NULL, &e);
	if (r == 0)
		r = catalog_env_layers(c, "00000000-0000-0000-0000-0000000000e1", &got, &n, &e);
	ok(r == 0 && n == 2 && !strcmp(got[1], layers[1]), "%s: rebase takes the image's layers",
	   what);
	if (r == 0)
		free(got);
	(void)catalog_env_remove(c, "pinned", &e);
	(void)catalog_env_remove(c, "copy", &e);
	r = catalog_image_remove(c, "stack", &e);
	if (r == 0)
		r = catalog_layer_used(c, layers[0], &used, &e);
	ok(r == 0 && !used, "%s: no image nor env uses the layer any more", what);
}

/* 89 tests */
static void test_suite(const char *path, const char *what)
{
	struct catalog *c = NULL;
	struct ct_err e = { 0 };
	int r;

	r = catalog_open(path, &c, &e);
	is_int(r, 0, "%s: catalog_open", what);
	if (r < 0) {
		printf("# %s\n", e.msg);
		exit(1);
	}
	test_layers_images(c, what);
	test_envs_binds(c, what);
	test_layer_stacks(c, what);
	catalog_close(c);
	catalog_close(NULL);
	ok(1, "%s: catalog_close, also of NULL", what);
}

/* 4 tests */
static void test_reopen(void)
{
	char path[4200];
	struct catalog *c = NULL;
	struct catalog_image img;
	struct ct_err e = { 0 };
	int r;

	tmp_path(path, sizeof(path), "reopen.db");
	r = catalog_open(path, &c, &e);
	if (r == 0)
		r = add_image(c, "kept", 0, NULL, &e);
	catalog_close(c);
	c = NULL;
	is_int(r, 0, "reopen: image added to a file catalog");
	r = catalog_open(path, &c, &e);
	is_int(r, 0, "reopen: an up-to-date catalog opens again");
	r = c ? catalog_image_get(c, "kept", &img, &e) : -1;
	is_int(r, 0, "reopen: the image is still there");
	if (r == 0)
		catalog_image_clear(&img);
	catalog_close(c);
	c = NULL;
	tmp_path(path, sizeof(path), "nodir/cat.db");
	r = catalog_open(path, &c, &e);
	ok(r < 0 && c == NULL, "reopen: a catalog in a missing directory fails (%s)", e.msg);
}

/* 5 tests: a file catalog whose user_version (4 bytes, big-endian, at
 * byte 60 of the header) is patched to version must fail with want_r and
 * the message "catalog '<path>'<want_rest>", and be left as it was. */
static void test_patched(const char *name, unsigned char version, int want_r,
			 const char *want_rest)
{
	const unsigned char v[4] = { 0, 0, 0, version };
	char path[4200], wal[4300], want[4400];
	struct catalog *c = NULL;
	struct ct_err e = { 0 };
	char *before, *after;
	size_t n_before = 0, n_after = 0;
	int r, fd;

	tmp_path(path, sizeof(path), name);
	r = catalog_open(path, &c, &e);
	catalog_close(c);
	c = NULL;
	is_int(r, 0, "%s: file catalog created", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	r = fd >= 0 && pwrite(fd, v, sizeof(v), 60) == (ssize_t)sizeof(v) ? 0 : -1;
	if (fd >= 0)
		(void)close(fd);
	before = slurp(path, &n_before);
	ok(r == 0 && before, "%s: user_version set to %d", name, version);
	r = catalog_open(path, &c, &e);
	is_int(r, want_r, "%s: catalog_open fails", name);
	(void)snprintf(want, sizeof(want), "catalog '%s'%s", path, want_rest);
	is_str(e.msg, want, "%s: message", name);
	after = slurp(path, &n_after);
	(void)snprintf(wal, sizeof(wal), "%s-wal", path);
	ok(before && after && n_before == n_after && memcmp(before, after, n_before) == 0 &&
		   !exists(wal),
	   "%s: the catalog was left as it was", name);
	free(before);
	free(after);
	catalog_close(c);
}

/* 8 tests */
static void test_garbage(void)
{
	static const char line[] = "this is not a database, just a text file\n";
	char path[4200], side[4300], *before, *after, *text;
	const char *what[] = { "short", "long" };
	struct catalog *c = NULL;
	struct ct_err e = { 0 };
	size_t i, len, n_before = 0, n_after = 0;
	int r;

	text = malloc(64 * 1024);
	if (!text)
		exit(1);
	for (len = 0; len + sizeof(line) < 64 * 1024; len += sizeof(line) - 1)
		memcpy(text + len, line, sizeof(line) - 1);
	for (i = 0; i < 2; i++) {
		tmp_path(path, sizeof(path), what[i]);
		if (spew(path, text, i == 0 ? 20 : len) < 0)
			exit(1);
		before = slurp(path, &n_before);
		memset(&e, 0, sizeof(e));
		r = catalog_open(path, &c, &e);
		is_int(r, -EIO, "garbage (%s): a non-sqlite file gives -EIO", what[i]);
		ok(strstr(e.msg, "is not a valid database: ") != NULL,
		   "garbage (%s): message '%s'", what[i], e.msg);
		after = slurp(path, &n_after);
		ok(before && after && n_before == n_after && memcmp(before, after, n_before) == 0,
		   "garbage (%s): the file was left as it was", what[i]);
		(void)snprintf(side, sizeof(side), "%s-journal", path);
		r = exists(side);
		(void)snprintf(side, sizeof(side), "%s-wal", path);
		r = r || exists(side);
		ok(!r, "garbage (%s): no journal or WAL created", what[i]);
		free(before);
		free(after);
	}
	free(text);
}

/* One child of test_concurrent: wait for the start, then add image
 * "img<k>" and N_PER_CHILD envs on it, opening the catalog afresh for
 * each as separate ctool commands would. Exits 0 or 1. */
static void child_run(const char *path, int k, int start_fd)
{
	char layers[1][37], name[64], env_name[64], id[37];
	struct catalog *c = NULL;
	struct catalog_env env;
	struct ct_err e = { 0 };
	char buf;
	int r, i;

	(void)read(start_fd, &buf, 1);  /* EOF when the parent is ready */
	(void)snprintf(layers[0], sizeof(layers[0]), "00000000-0000-0000-0000-%012d", k);
	r = catalog_open(path, &c, &e);
	if (r == 0)
		r = catalog_layer_add(c, layers[0], "concurrency", &e);
	(void)snprintf(name, sizeof(name), "img%d", k);
	if (r == 0)
		r = add_image(c, name, 1, layers, &e);
	catalog_close(c);
	c = NULL;
	for (i = 0; r == 0 && i < N_PER_CHILD; i++) {
		(void)snprintf(id, sizeof(id), "%08d-0000-0000-0000-%012d", k, i);
		(void)snprintf(env_name, sizeof(env_name), "c%02d-e%02d", k, i);
		env_init(&env, id, env_name, name, "");
		r = catalog_open(path, &c, &e);
		if (r == 0)
			r = catalog_env_add(c, &env, &e);
		catalog_close(c);
		c = NULL;
	}
	if (r < 0) {
		printf("# child %d: %s (%d)\n", k, e.msg, r);
		fflush(stdout);
		_exit(1);
	}
	_exit(0);
}

/* 3 tests */
static void test_concurrent(void)
{
	char path[4200];
	struct catalog *c = NULL;
	struct ct_err e = { 0 };
	int fds[2], i, status, good = 0, count = 0, r;
	pid_t pid;

	tmp_path(path, sizeof(path), "concurrent.db");
	if (pipe(fds) < 0)
		exit(1);
	fflush(stdout);
	for (i = 0; i < N_CHILDREN; i++) {
		pid = fork();
		if (pid < 0)
			exit(1);
		if (pid == 0) {
			(void)close(fds[1]);
			child_run(path, i, fds[0]);
		}
	}
	(void)close(fds[0]);
	(void)close(fds[1]);            /* go */
	while ((pid = wait(&status)) > 0)
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			good++;
	is_int(good, N_CHILDREN, "concurrent: all %d processes succeeded", N_CHILDREN);
	r = catalog_open(path, &c, &e);
	if (r == 0)
		r = catalog_env_foreach(c, count_env, &count, &e);
	is_int(r, 0, "concurrent: catalog readable afterwards");
	is_int(count, N_CHILDREN * N_PER_CHILD, "concurrent: all %d envs recorded",
	       N_CHILDREN * N_PER_CHILD);
	catalog_close(c);
}

/* 2 tests: a command is one open, one write, one close; after hundreds of
 * them the WAL must still be short, since every open reads all of it. */
static void test_wal_stays_short(void)
{
	char path[4200], wal[4300];
	struct catalog_image img = { .name = "img", .n_layers = 1 };
	char layer[1][37] = { "00000000-0000-0000-0000-00000000000a" };
	struct stat st;
	int i, r = 0;

	tmp_path(path, sizeof(path), "wal.db");
	(void)snprintf(wal, sizeof(wal), "%s-wal", path);
	img.layers = layer;
	for (i = 0; r == 0 && i < 400; i++) {
		struct catalog *c = NULL;
		struct ct_err e = { 0 };
		struct catalog_env env = { .created = 1 };

		r = catalog_open(path, &c, &e);
		if (r == 0 && i == 0) {
			r = catalog_layer_add(c, layer[0], "test", &e);
			if (r == 0)
				r = catalog_image_add(c, &img, &e);
		}
		(void)snprintf(env.id, sizeof(env.id), "00000000-0000-0000-0000-%012d", i);
		(void)snprintf(env.name, sizeof(env.name), "w%d", i);
		(void)snprintf(env.image, sizeof(env.image), "img");
		(void)snprintf(env.driver, sizeof(env.driver), "kernel");
		if (r == 0)
			r = catalog_env_add(c, &env, &e);
		catalog_close(c);
	}
	is_int(r, 0, "wal: 400 open/write/close cycles");
	ok(stat(wal, &st) == 0 && st.st_size < 512 * 1024, "wal: the WAL stays short (%lld bytes)",
	   (long long)st.st_size);
}

static void remove_tmpdir(void)
{
	static const char *const files[] = { "file.db", "reopen.db", "future.db", "wal.db",
					     "unversioned.db", "short", "long", "concurrent.db" };
	static const char *const sides[] = { "", "-wal", "-shm", "-journal" };
	char path[4400];
	size_t i, j;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		for (j = 0; j < sizeof(sides) / sizeof(sides[0]); j++) {
			(void)snprintf(path, sizeof(path), "%s/%s%s", tmpdir, files[i], sides[j]);
			(void)unlink(path);
		}
	(void)rmdir(tmpdir);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	char path[4200];

	(void)snprintf(tmpdir, sizeof(tmpdir), "%s/test-catalog.XXXXXX",
		       base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("1..0 # SKIP cannot create a temporary directory\n");
		return 0;
	}
	plan(2 * 94 + 4 + 2 * 5 + 8 + 3 + 2);
	test_suite(":memory:", "memory");
	test_suite(tmp_path(path, sizeof(path), "file.db"), "file");
	test_reopen();
	test_patched("future.db", 99, -EPROTO,
		     " is from a newer ctool (version 99, this one knows 3)");
	test_patched("unversioned.db", 0, -EIO,
		     " is not a ctool catalog: it has tables but no version");
	test_garbage();
	test_concurrent();
	test_wal_stays_short();
	remove_tmpdir();
	return done_testing();
}
