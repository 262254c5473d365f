/* The SQLite catalog: the only code that speaks SQL. It records intent
 * (which images and envs exist, their layers, roots, drivers, binds);
 * the kernel's mount table stays the truth about what is mounted.
 *
 * Every function returns 0 or -errno and fills *e on failure:
 *   -ENOENT  no such row          -EEXIST  name already taken
 *   -EBUSY   still in use (rmi)   -EPROTO  catalog from a newer ctool
 *   -EIO     corrupt or unreadable database
 * Writes run in BEGIN IMMEDIATE transactions with a busy timeout, so
 * concurrent commands wait for each other and never see "locked". */
#ifndef CTOOL_CATALOG_H
#define CTOOL_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CATALOG_VERSION 3

struct catalog;

struct catalog_image {
	char name[64];
	int64_t created;      /* ms since the epoch */
	char origin[512];     /* "debootstrap bookworm <mirror> minbase", "from DIR" */
	size_t n_layers;
	char (*layers)[37];   /* bottom first; owned, freed by catalog_image_clear */
	char *config;         /* "RUN cmd", "ENV K=V", "VOLUME /t" lines; owned, NULL = "" */
	int64_t size;         /* bytes of its layers (read only; -1 when one is unknown) */
};

struct catalog_layer {
	char id[37];
	char origin[512];     /* how it was made: "PKG nginx", "commit of app1", ... */
	char cache_key[65];   /* sha256 of a build step ("" when not built) */
	int64_t size;         /* bytes (-1 unknown) */
	int64_t created;      /* ms since the epoch */
	char *packages;       /* "name=version" lines a PKG step installed; owned */
};

struct catalog_env {
	char id[37];          /* uuid, names <store>/envs/<id> */
	char name[64];
	char image[64];
	char root[4096];      /* "" = the default <store>/envs/<id>/root */
	char driver[16];      /* "kernel" or "fuse": asked for, then the one in use */
	bool volatile_;       /* overlay mounted with -o volatile */
	bool want_on;         /* last on/off asked for */
	char boot_id[40];     /* boot of the last 'on' ("" when none) */
	int64_t created;      /* ms since the epoch */
	char driver_note[512]; /* why driver is not the one asked for ("" when it is) */
	char layers_of[37];   /* env_add only: copy this env's layers, not the image's */
};

struct catalog_bind {
	char src[4096];
	char tgt[4096];
	bool ro;
};

/* Open (creating and migrating as needed) the catalog at path; ":memory:"
 * works for tests. A file from a newer ctool gives -EPROTO, a corrupt or
 * non-SQLite file -EIO; neither is modified. */
int catalog_open(const char *path, struct catalog **ret, struct ct_err *e);
void catalog_close(struct catalog *c);  /* accepts NULL */

/* Layers: read-only trees named by uuid. */
int catalog_layer_add(struct catalog *c, const char *id, const char *origin, struct ct_err *e);
/* Add a layer with all its fields (cache_key "" for none); -EEXIST when
 * the id is taken. A layer that had the same cache key loses it (a
 * rebuild without the cache replaces the cached step). */
int catalog_layer_put(struct catalog *c, const struct catalog_layer *l, struct ct_err *e);
/* The layer with id (or, by_key, with that cache key); -ENOENT if none.
 * *ret is written only on success; catalog_layer_clear frees it. */
int catalog_layer_get(struct catalog *c, const char *id, bool by_key, struct catalog_layer *ret,
		      struct ct_err *e);
void catalog_layer_clear(struct catalog_layer *l);
int catalog_layer_set_size(struct catalog *c, const char *id, int64_t size, struct ct_err *e);
/* Is the layer used by any image or env? (*ret_used) */
int catalog_layer_used(struct catalog *c, const char *id, bool *ret_used, struct ct_err *e);
int catalog_layer_remove(struct catalog *c, const char *id, struct ct_err *e);

/* Images. image_add inserts the image with the given layers (which must
 * exist) in one transaction; -EEXIST if the name is taken. */
int catalog_image_add(struct catalog *c, const struct catalog_image *img, struct ct_err *e);
int catalog_image_get(struct catalog *c, const char *name, struct catalog_image *ret, struct ct_err *e);
void catalog_image_clear(struct catalog_image *img); /* frees layers */
/* Add img, or replace the layers, origin and config of the image of that
 * name: envs cloned from it keep the layers they were cloned with. */
int catalog_image_put(struct catalog *c, const struct catalog_image *img, struct ct_err *e);
/* Calls cb for each image by name; cb's non-zero return stops and is returned. */
int catalog_image_foreach(struct catalog *c, int (*cb)(const struct catalog_image *img, void *data),
			  void *data, struct ct_err *e);
/* Number of envs that use image 'name'. */
int catalog_image_users(struct catalog *c, const char *name, int *ret_count, struct ct_err *e);
/* Removes the image row (not its layers); -EBUSY while an env uses it. */
int catalog_image_remove(struct catalog *c, const char *name, struct ct_err *e);

/* Environments. env_add fails with -EEXIST when the name or root is taken
 * and -ENOENT when the image does not exist. */
int catalog_env_add(struct catalog *c, const struct catalog_env *env, struct ct_err *e);
int catalog_env_get(struct catalog *c, const char *name, struct catalog_env *ret, struct ct_err *e);
/* The env whose root is exactly 'root' (only envs with a chosen root). */
int catalog_env_by_root(struct catalog *c, const char *root, struct catalog_env *ret, struct ct_err *e);
int catalog_env_foreach(struct catalog *c, int (*cb)(const struct catalog_env *env, void *data),
			void *data, struct ct_err *e);
int catalog_env_set_on(struct catalog *c, const char *name, bool want_on, const char *boot_id,
		       struct ct_err *e);
/* Record the driver env 'name' is mounted with, and why when it is not
 * the one asked for (note; NULL or "" when it is). */
int catalog_env_set_driver(struct catalog *c, const char *name, const char *driver,
			   const char *note, struct ct_err *e);
/* Removes the env row, its binds and its layer list. */
int catalog_env_remove(struct catalog *c, const char *name, struct ct_err *e);
/* The layers env 'id' is mounted on, bottom first (a malloc'd array):
 * its image's when it was cloned (or reset, or rebased). */
int catalog_env_layers(struct catalog *c, const char *id, char (**ret)[37], size_t *ret_n,
		       struct ct_err *e);
/* In one transaction: add layer l, and with img add or replace that
 * image; then with env_name, put that env on img's layers and make img
 * its image, or, without img, put layer l on top of the env's layers. */
int catalog_commit(struct catalog *c, const struct catalog_layer *l, const struct catalog_image *img,
		   const char *env_name, struct ct_err *e);
/* The config (RUN, ENV, VOLUME lines) env 'id' has: its image's when it
 * was cloned (or rebased), kept when the image is rebuilt. malloc'd. */
int catalog_env_config(struct catalog *c, const char *id, char **ret, struct ct_err *e);
/* Put env 'name' on these layers (bottom first), which must exist. */
int catalog_env_set_layers(struct catalog *c, const char *name, char (*layers)[37], size_t n,
			   struct ct_err *e);
/* Put env 'name' on image's layers and config as they are now (and
 * image, when not NULL, becomes its image). */
int catalog_env_rebase(struct catalog *c, const char *name, const char *image, struct ct_err *e);

/* Binds recorded with an env (-v HOST:TARGET[:ro]); a bind to a target
 * already recorded replaces it. */
int catalog_bind_add(struct catalog *c, const char *env_id, const struct catalog_bind *b,
		     struct ct_err *e);
/* *ret is a malloc'd array of *ret_n binds in the order they were added. */
int catalog_bind_list(struct catalog *c, const char *env_id, struct catalog_bind **ret,
		      size_t *ret_n, struct ct_err *e);

#endif
