/* Env lifecycle over the store and the catalog: clone, on, off, reset,
 * remove. Callers hold the env's lock (env_lock) around each operation. */
#ifndef CTOOL_ENV_H
#define CTOOL_ENV_H

#include <stdbool.h>
#include <sys/types.h>

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

/* Make the env's changes (env off) layer l: its upper is moved, not
 * copied, so the cost does not grow with the changes. catalog_commit
 * records l (its size is filled in here), and with img that image, onto
 * which the env is rebased; without img, l goes on top of the env's
 * layers. A commit cut short at any point is finished or undone by
 * env_finish_commit, which 'on' runs: the env loses no change. */
int env_commit(struct store *s, struct env *env, struct catalog_layer *l,
	       const struct catalog_image *img, struct ct_err *e);
int env_finish_commit(struct store *s, struct env *env, struct ct_err *e);

/* The env's binds: tool.conf's then the recorded -v ones (for info). */
int env_binds(struct store *s, const struct env *env, struct catalog_bind **ret, size_t *ret_n,
	      struct ct_err *e);

/* An image's config (catalog_image.config), one directive a line:
 * "RUN CMD" (the start command, run with /bin/sh -c; the last RUN
 * counts), "ENV K=V" (set for the service and every run), "VOLUME
 * /TARGET..." (where the env keeps data that outlives it). Other lines
 * are skipped, and so are an ENV without '=' and a VOLUME target that is
 * not absolute or holds "..". */
struct env_config {
	char *run;        /* NULL when none */
	char **envs;      /* "K=V", NULL-terminated */
	size_t n_envs;
	char **volumes;   /* cleaned absolute targets, NULL-terminated */
	size_t n_volumes;
};

/* Parse text (NULL: empty) into *ret, which env_config_clear frees. */
int env_config_parse(const char *text, struct env_config *ret, struct ct_err *e);
void env_config_clear(struct env_config *c);

/* The config the env has: its image's when it was cloned or rebased. */
int env_config_load(struct store *s, const struct env *env, struct env_config *ret,
		    struct ct_err *e);

/* The image's ENV as env_on last wrote it to <dir>/image.env (K=V
 * lines), for 'run' on an env that is on, which reads no catalog: a
 * NULL-terminated array in one allocation (free it), NULL when there is
 * none. */
char **env_image_env(const struct env *env);

/* An env's service (ctool start). Its record, <dir>/service.pid, holds
 * its pid, that process's start time (/proc/PID/stat) and the boot id,
 * so that a reused pid is never taken for it; its output is appended to
 * <dir>/service.log. Both are on the host side, out of the env's sight. */
#define ENV_SERVICE_RECORD "service.pid"
#define ENV_SERVICE_LOG "service.log"

/* The pid of the service of the env whose folder is dir while that
 * process lives, else 0. */
pid_t env_service_pid(const char *dir);
/* Record pid as the service of the env whose folder is dir. */
int env_service_record(const char *dir, pid_t pid, struct ct_err *e);
/* Drop the record (off, or a service that did not start). */
void env_service_forget(const char *dir);

/* Run the host-side hook conf/host-cmd, when present, on the host with
 * CTOOL_ENV and CTOOL_ROOT set and cmd (NULL-terminated) as arguments;
 * -ECANCELED when it exits non-zero. */
int env_host_cmd(const struct env *env, char **cmd, struct ct_err *e);

#endif
