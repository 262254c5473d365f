/* Running a command inside an env (chroot, user, directory, environment)
 * and a host-side hook on the host. */
#ifndef CTOOL_EXEC_H
#define CTOOL_EXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* The PATH a command inside an env starts with. */
#define ENV_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct exec_opts {
	const char *root;        /* the env's root, on */
	char **argv;             /* NULL-terminated, as dispatch resolved it */
	bool path_lookup;        /* search argv[0] in the env's PATH */
	const char *user;        /* name or uid in the env's /etc/passwd, or NULL */
	const char *cwd;         /* inside the env, or NULL */
	char **env;              /* K=V (or K: taken from the host), NULL-terminated */
	int timeout_ms;          /* exec_in_env: KILL after this long (0: wait forever) */
	int stdout_fd;           /* the command's stdout when > 2 (else this process's) */
};

/* Fork, enter the env and exec; wait (up to o->timeout_ms) and return
 * the exit status the way a shell reports it (128+N for signal N; 126
 * not executable, 127 not found). A failure before the child enters
 * returns -errno with *e. */
int exec_in_env(const struct exec_opts *o, int *ret_status, struct ct_err *e);

/* Enter the env and exec in this very process (no fork, no wait: the
 * caller becomes the command, as chroot(8) does). Never returns: a
 * failure exits with 125 (could not enter), 126 or 127 after one line on
 * stderr. Locks held through O_CLOEXEC fds are released by the exec. */
void exec_replace(const struct exec_opts *o) __attribute__((noreturn));

/* Run the host program path with argv on the host and wait; *ret_status
 * as above. */
int exec_on_host(const char *path, char *const *argv, char *const *envp, int *ret_status,
		 struct ct_err *e);

/* Copy the tree from into to (created, or merged into when it exists)
 * with cp -a: owners, modes, times, hard links, xattrs (whiteouts and
 * opaque markers included) and sparse files are kept. */
int copy_tree(const char *from, const char *to, struct ct_err *e);

#endif
