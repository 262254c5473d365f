/* The subcommands: each parses its options, calls the core, prints the
 * results and returns the exit code (0 ok, 1 failure, 2 usage). */
#ifndef CTOOL_CMD_H
#define CTOOL_CMD_H

#include <stdbool.h>

#include "env.h"
#include "err.h"
#include "store.h"

#define EXIT_USAGE 2

struct cmd_ctx {
	const char *store_path;  /* --store, or NULL */
	struct store *store;     /* opened for commands that need it */
};

int cmd_create(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_clone(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_on(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_off(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_run(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_reset(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_rm(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_list(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_images(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_info(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_rmi(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_bind(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_gc(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_build(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_commit(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_start(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_logs(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_export(int argc, char **argv, struct cmd_ctx *ctx);
int cmd_import(int argc, char **argv, struct cmd_ctx *ctx);

/* Shared by the commands (ctool.c). */

/* Print "ctool: VERB: msg" and the usage hint; returns EXIT_USAGE. */
int cmd_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* After getopt returned '?' or ':': one line naming the bad option;
 * returns EXIT_USAGE. */
int cmd_bad_option(char **argv);
/* Log e's message; returns 1. */
int cmd_fail(const struct ct_err *e);
/* Is name valid? Else log it and return false. */
bool cmd_check_name(const char *what, const char *name);

/* Find the env named name, or rooted at dir, or (both NULL) rooted at the
 * current directory; take its lock and load it. *ret_lock is the lock fd.
 * Returns 0, or an exit code after logging. */
int cmd_env_open(struct cmd_ctx *ctx, const char *name, const char *dir, struct env **ret,
		 int *ret_lock);

/* Take image 'name''s lock (*ret_lock) for making it, refusing a name
 * that is taken. Returns 0, or an exit code after logging. */
int cmd_image_new(struct cmd_ctx *ctx, const char *name, int *ret_lock);

/* Parse HOST:TARGET[:ro] (pocker's -d host:chroot). */
int cmd_parse_volume(const char *arg, struct env_bind *ret);

/* Remove the envs that builds cut short left behind (cmd-build.c). */
void build_clean_stale(struct store *s);

/* Turn env off first when on (for --force on reset and rm). */
int cmd_force_off(struct cmd_ctx *ctx, struct env *env, bool force, const char *verb);

#endif
