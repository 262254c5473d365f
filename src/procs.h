/* Processes that live in an env (their root is in it) or hold it. */
#ifndef CTOOL_PROCS_H
#define CTOOL_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* PIDs whose root directory is root or below it (malloc'd array). With
 * holders, also those whose cwd, executable or an open fd is below root. */
int procs_under(const char *root, bool holders, pid_t **ret, size_t *ret_n, struct ct_err *e);

/* TERM the processes rooted in root, wait up to grace_ms, KILL the rest
 * and wait for them to go. Returns how many were signalled. */
int procs_stop(const char *root, int grace_ms, struct ct_err *e);

/* From /proc/PID/stat: its command name (comm, when not NULL: 16
 * bytes), its state (R, S, Z...) and its start time (clock ticks after
 * boot). 0 or -errno. */
int procs_stat(pid_t pid, char *comm, char *ret_state, unsigned long long *ret_start);

/* "123 456 ..." (at most a few dozen), malloc'd. */
char *procs_format(const pid_t *pids, size_t n);

#endif
