/* The mount table read through libmount, loaded only when needed (on a
 * kernel without listmount, or for 'info'), so the commands on the hot
 * path do not pay for loading it and its dependencies at every start. */
#ifndef CTOOL_MOUNTTAB_H
#define CTOOL_MOUNTTAB_H

#include <stddef.h>

#include "err.h"

/* Mount points at or below path, deepest first (see mounts_list_under). */
int mounttab_list_under(const char *path, char ***ret, size_t *ret_n, struct ct_err *e);

/* The options of the topmost mount at path (malloc'd), or NULL. */
char *mounttab_options(const char *path);

#endif
