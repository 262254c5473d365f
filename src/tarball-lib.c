/* libarchive, loaded once, and what export and import share. */
#include "config.h"

#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define TARBALL_LIB_NO_MACROS
#include "tarball-lib.h"
#include "tarball.h"
#include "util.h"

#ifndef ARCHIVE_SONAME
#define ARCHIVE_SONAME "libarchive.so.13"
#endif

struct arc_funcs arc_fn;

int arc_load(struct ct_err *e)
{
	static struct dl_lib lib = { .soname = ARCHIVE_SONAME,
				     .what = "libarchive (package libarchive13)" };
#define ARC_NAME(f) "archive_" #f,
	static const char *const names[] = { ARC_FUNCS(ARC_NAME) };
#undef ARC_NAME

	_Static_assert(sizeof(arc_fn) == sizeof(names), "one symbol per function");
	return dl_load(&lib, names, &arc_fn, ARRAY_SIZE(names), e);
}

/* ---------------------------------------------------------------------
 * Shared */

volatile sig_atomic_t arc_signal;

static void arc_on_signal(int sig)
{
	arc_signal = sig;
}

void arc_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = arc_on_signal }; /* no SA_RESTART: reads stop */

	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
}

bool arc_interrupted(void)
{
	return arc_signal != 0;
}

int arc_compress_of(const char *file, enum arc_compress *ret)
{
	static const struct {
		const char *suffix;
		enum arc_compress c;
	} kinds[] = {
		{ ".tar", ARC_PLAIN }, { ".tar.gz", ARC_GZIP }, { ".tgz", ARC_GZIP },
		{ ".tar.zst", ARC_ZSTD }, { ".tzst", ARC_ZSTD },
	};
	size_t n = strlen(file), i;

	if (strcmp(file, "-") == 0) {
		*ret = ARC_PLAIN;
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(kinds); i++) {
		size_t m = strlen(kinds[i].suffix);

		if (n > m && strcmp(file + n - m, kinds[i].suffix) == 0) {
			*ret = kinds[i].c;
			return 0;
		}
	}
	return -EINVAL;
}

/* Names are bytes; libarchive converts them between the archive's
 * UTF-8 and the locale's charset. In a UTF-8 locale (this thread's)
 * UTF-8 names pass as they are, and others are kept as bytes. */
void arc_utf8_names(void)
{
	static locale_t loc;

	if (!loc)
		loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (loc)
		(void)uselocale(loc);
}

/* The fds a deep tree keeps open (a few per level and layer) may need
 * more than the usual soft limit. */
void arc_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A copy of s fit for a one-line message: control characters become '?',
 * long names are cut. */
void arc_printable(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
}
