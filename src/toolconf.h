/* chroot-tool's tool.conf: an ini-like file whose [bind] section holds
 * lines "src:HOST tgt:TARGET" (blanks after the colons allowed, an
 * optional trailing "ro"). Other sections are kept but ignored. */
#ifndef CTOOL_TOOLCONF_H
#define CTOOL_TOOLCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct toolconf_bind {
	char *src;
	char *tgt;
	bool ro;
	int line;
};

struct toolconf {
	struct toolconf_bind *binds;
	size_t n_binds;
};

/* Parse text; fname is used in error messages ("FILE:LINE: ..."). */
int toolconf_parse(const char *text, const char *fname, struct toolconf *ret, struct ct_err *e);
/* Load and parse path; a missing file is an empty conf. */
int toolconf_load(const char *path, struct toolconf *ret, struct ct_err *e);
void toolconf_clear(struct toolconf *conf);
/* A copy of text (may be NULL) with the bind appended to its [bind]
 * section, which is created when missing. NULL when out of memory. */
char *toolconf_add_bind(const char *text, const char *src, const char *tgt, bool ro);

#endif
