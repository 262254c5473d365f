/* Making a base image's tree with debootstrap. */
#ifndef CTOOL_DEBOOTSTRAP_H
#define CTOOL_DEBOOTSTRAP_H

#include <stdbool.h>

#include "err.h"

struct debootstrap_opts {
	const char *suite;    /* default "bookworm" */
	const char *mirror;   /* default: the host's Debian mirror */
	const char *variant;  /* default "minbase" */
	const char *include;  /* comma-separated packages, or NULL */
	bool progress;        /* one rewritten line on a terminal */
	bool quiet;           /* no stage lines */
};

/* The host's Debian mirror from its apt sources (malloc'd), falling back
 * to deb.debian.org. */
char *debootstrap_host_mirror(void);

/* Run debootstrap into target (an empty directory). On SIGINT/SIGTERM
 * debootstrap is stopped and -EINTR returned; the caller removes target.
 * Its mounts below target are undone before returning. */
int debootstrap_run(const char *target, const struct debootstrap_opts *o, struct ct_err *e);

#endif
