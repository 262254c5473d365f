/* chroot-tool's run dispatch, without an env: a table of files stands
 * for what exists inside. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "tap.h"

static bool exists_in(const char *path, void *data)
{
	const char *const *files = data;

	for (; *files; files++)
		if (strcmp(*files, path) == 0)
			return true;
	return false;
}

/* Resolve cmd (blank-separated words) against files; "argv|lookup". */
static char *resolve(const char *cmd, const char *const *files)
{
	static char out[512];
	char **words = NULL, **argv = NULL;
	struct ct_err e = { 0 };
	bool lookup = false;
	int n = 0, i;

	if (dispatch_split(cmd, &words, &e) < 0)
		return strcpy(out, "split-error");
	while (words[n])
		n++;
	if (dispatch_resolve(n, words, exists_in, (void *)files, &argv, &lookup, &e) < 0) {
		dispatch_free(words);
		return strcpy(out, "resolve-error");
	}
	out[0] = '\0';
	for (i = 0; argv[i]; i++) {
		strcat(out, i ? " " : "");
		strcat(out, argv[i]);
	}
	strcat(out, lookup ? "|path" : "|exact");
	dispatch_free(words);
	dispatch_free(argv);
	return out;
}

int main(void)
{
	static const char *const none[] = { NULL };
	static const char *const own[] = { "/chroot.d/start", "/chroot.d/chroot-cmd", NULL };
	static const char *const cc[] = { "/chroot.d/chroot-cmd", NULL };
	char **w = NULL;
	struct ct_err e = { 0 };

	plan(13);
	is_str(resolve("/bin/echo a", own), "/bin/echo a|exact", "absolute path runs as it is");
	is_str(resolve("start now", own), "/chroot.d/start now|exact", "/chroot.d/CMD first");
	is_str(resolve("rebuild-index alfa", cc), "/chroot.d/chroot-cmd rebuild-index alfa|exact",
	       "then /chroot.d/chroot-cmd CMD ARG");
	is_str(resolve("ls -l", none), "ls -l|path", "else PATH lookup");
	is_str(resolve("ls", own), "/chroot.d/chroot-cmd ls|exact", "chroot-cmd catches all");
	is_str(resolve("bin/x", own), "bin/x|exact", "relative path is not dispatched");
	is_str(resolve("..", own), "/chroot.d/chroot-cmd ..|exact", "'..' never names chroot.d's parent");
	is_str(resolve("echo 'a b' \"c d\" e\\ f", none), "echo a b c d e f|path",
	       "quotes and backslashes split like a shell");
	is_int(dispatch_split("echo 'a", &w, &e), -EINVAL, "unterminated quote refused");
	is_int(dispatch_split("   ", &w, &e), -EINVAL, "blank command refused");
	ok(dispatch_split("a '' b", &w, &e) == 0 && w[1] && w[1][0] == '\0' && w[2] &&
		   strcmp(w[2], "b") == 0,
	   "empty quoted word kept");
	dispatch_free(w);
	{
		char *argv[] = { (char *)"", NULL };
		char **out = NULL;
		bool lookup;

		is_int(dispatch_resolve(1, argv, exists_in, (void *)none, &out, &lookup, &e), -EINVAL,
		       "empty command refused");
	}
	is_str(resolve("start", none), "start|path", "no chroot.d: PATH");
	return done_testing();
}
