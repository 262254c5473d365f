/* Recipes (Ctoolfile, or pocker's Pockerfile): one instruction a line.
 *
 *   PROOT             the base: the default image ($CTOOL_IMAGE, else bookworm)
 *   FROM IMAGE        the base: IMAGE
 *   PKG NAME...       apt-get install (no recommends, non-interactive): a layer
 *   EXEC CMD          a shell command run at build time: a layer
 *   COPY SRC DST      SRC (in the recipe's folder) to DST in the env: a layer
 *   ENV K=V...        set for later EXEC steps, for run and for the service
 *   VOLUME TARGET...  where the service expects a volume
 *   RUN CMD           the command 'ctool start' runs (pocker's meaning)
 *
 * Instructions are case-insensitive; '#' starts a comment line; a
 * backslash at the end of a line continues it on the next. */
#ifndef CTOOL_RECIPE_H
#define CTOOL_RECIPE_H

#include <stddef.h>

#include "err.h"

enum recipe_op {
	RECIPE_PROOT,
	RECIPE_FROM,
	RECIPE_PKG,
	RECIPE_EXEC,
	RECIPE_COPY,
	RECIPE_ENV,
	RECIPE_VOLUME,
	RECIPE_RUN,
};

struct recipe_step {
	enum recipe_op op;
	const char *name;   /* "PKG", ... */
	char *arg;          /* the rest of the line, continuations joined, trimmed */
	char **words;       /* arg split as a shell would (quotes), NULL-terminated */
	size_t n_words;
	unsigned line;      /* where the instruction starts, from 1 */
};

struct recipe {
	char *path;         /* as given */
	char *dir;          /* the folder COPY reads from (absolute) */
	struct recipe_step *steps;
	size_t n_steps;
};

/* Parse the recipe in file path. A syntax error fails with -EINVAL and
 * "FILE:LINE:COL: what" in *e. */
int recipe_parse(const char *path, struct recipe **ret, struct ct_err *e);
/* Parse text (len bytes) as the recipe named name, in folder dir. */
int recipe_parse_text(const char *name, const char *dir, const char *text, size_t len,
		      struct recipe **ret, struct ct_err *e);
void recipe_free(struct recipe *r); /* accepts NULL */

/* Is the step one that makes a layer (PKG, EXEC, COPY)? */
static inline int recipe_step_is_layer(const struct recipe_step *s)
{
	return s->op == RECIPE_PKG || s->op == RECIPE_EXEC || s->op == RECIPE_COPY;
}

#endif
