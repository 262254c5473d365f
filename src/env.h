/* Env lifecycle over the store and the catalog: clone, on, off, reset,
 * remove. Callers hold the env's lock (env_lock) around each operation. */
#ifndef CTOOL_ENV_H
#define CTOOL_ENV_H

#include <stdbool.h>

#include "catalog.h"
#include "err.h"
#include "store.h"

struct env {
	struct catalog_env row;
	char *dir;    /* <store>/envs/<id> */
	char *root;   /* where it appears when on */
	char *upper;
	char *work;
	char *conf;   /* host-side: tool.conf, host-cmd */
	char *fuse_pid; /* ctool-overlayfs's pidfile, while it mounts the env */
	bool driver_changed; /* row.driver/driver_note differ from the catalog's */
};

struct env_bind {
	const char *src;
	const char *tgt;
	bool ro;
};

struct env_on_opts {
	bool host_dev;
	const struct env_bind *binds;  /* -v binds, recorded with the env */
	size_t n_binds;
	const char *driver;            /* --driver, or NULL (see env_on) */
};

/* Lock env 'name' (exclusive); *ret_fd releases it when closed. */
int env_lock(struct store *s, const char *name, int *ret_fd, struct ct_err *e);

/* Load env 'name' (-ENOENT "no env named 'x'"), finishing an interrupted
 * clone when its folders are missing. */
int env_load(struct store *s, const char *name, struct env **ret, struct ct_err *e);
/* The env whose root is dir (an existing directory). */
int env_find_by_root(struct store *s, const char *dir, struct env **ret, struct ct_err *e);
void env_free(struct env *env);

/* Make what is missing of the env's folders: its folder and conf/, and
 * with all its upper, work and (default) root too. They start empty, so
 * they are made when first needed (a clone writes only its catalog row;
 * 'on' makes them all), which also finishes an interrupted clone or reset. */
int env_make_dirs(struct env *env, bool all, struct ct_err *e);

/* Is path (absolute, resolved inside the env's root) a regular file
 * (executable when exec)? */
bool env_has_file(const struct env *env, const char *path, bool exec);

/* Is the env on (its root a mount point)? */
bool env_is_on(const struct env *env);

/* The records of an env (<store>/names/NAME, and <store>/on/NAME while it
 * is on: its id and root), written by env_on; off, reset and rm remove
 * on/NAME, rm names/NAME. env_load_on loads env 'name' from its on/
 * record without the catalog, when the root it names is a mount point;
 * env_load_named from its names/ record, when its folder is there; else
 * -ENOENT. Only the name, id, root and paths are set (and want_on by
 * env_load_on). */
void env_record_on(struct store *s, const struct env *env);
void env_record_off(struct store *s, const char *name);
int env_load_on(struct store *s, const char *name, struct env **ret);
int env_load_named(struct store *s, const char *name, struct env **ret);

/* Make env 'name' from image 'image' (instant) or, when src_env is
 * given, as a copy of src_env's changes (src_env must be off). root_dir
 * NULL: the default root. driver: the one it asks for (NULL:
 * $CTOOL_DRIVER, else the kernel's). */
int env_clone(struct store *s, const char *image, const struct env *src_env, const char *name,
	      const char *root_dir, bool volatile_, const char *driver, struct ct_err *e);

/* Mount the env: the overlay with the driver asked for (o->driver, else
 * $CTOOL_DRIVER, else the env's own), then the standard mounts and the
 * binds. When the kernel's overlay was not asked for by name and the
 * kernel refuses it, ctool-overlayfs takes over, and the catalog records
 * the driver and why. */
int env_on(struct store *s, struct env *env, const struct env_on_opts *o, struct ct_err *e);

/* Stop and unmount. grace_ms: TERM to KILL. Without force a busy mount
 * fails with -EBUSY naming the PIDs that hold it. */
int env_off(struct store *s, struct env *env, bool force, int grace_ms, struct ct_err *e);

/* Throw the upper layer away (env off). */
int env_reset(struct store *s, struct env *env, struct ct_err *e);

/* Remove the env (off) with its folders and row. */
int env_remove(struct store *s, struct env *env, struct ct_err *e);

/* The env's binds: tool.conf's then the recorded -v ones (for info). */
int env_binds(struct store *s, const struct env *env, struct catalog_bind **ret, size_t *ret_n,
	      struct ct_err *e);

#endif
