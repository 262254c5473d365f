/* chroot-tool's run dispatch, as a pure function so it can be tested
 * without an env:
 *   CMD starting with '/'          -> CMD ARG...
 *   /chroot.d/CMD exists           -> /chroot.d/CMD ARG...
 *   /chroot.d/chroot-cmd exists    -> /chroot.d/chroot-cmd CMD ARG...
 *   else                           -> CMD ARG... (looked up in PATH)
 * A single word with blanks is first split like a shell would (quotes and
 * backslashes), so run NAME "cmd arg" means run NAME cmd arg. */
#ifndef CTOOL_DISPATCH_H
#define CTOOL_DISPATCH_H

#include <stdbool.h>

#include "err.h"

/* Split one command word into a NULL-terminated argv (malloc'd strings). */
int dispatch_split(const char *word, char ***ret_argv, struct ct_err *e);

/* exists(path, data): is path (absolute, inside the env) a regular file? */
typedef bool (*dispatch_exists_fn)(const char *path, void *data);

/* Resolve argv (argc >= 1) into the argv to execute; *ret_path_lookup
 * says whether argv[0] must be searched in PATH. *ret_argv is a new
 * NULL-terminated array of new strings; free with dispatch_free. */
int dispatch_resolve(int argc, char *const *argv, dispatch_exists_fn exists, void *data,
		     char ***ret_argv, bool *ret_path_lookup, struct ct_err *e);

void dispatch_free(char **argv);

#endif
