#include "config.h"

#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "util.h"

void dispatch_free(char **argv)
{
	char **a;

	if (!argv)
		return;
	for (a = argv; *a; a++)
		free(*a);
	free(argv);
}

static int argv_push(char ***argv, size_t *n, char *s)
{
	char **na;

	if (!s)
		return -ENOMEM;
	na = realloc(*argv, (*n + 2) * sizeof(*na));
	if (!na) {
		free(s);
		return -ENOMEM;
	}
	na[(*n)++] = s;
	na[*n] = NULL;
	*argv = na;
	return 0;
}

int dispatch_split(const char *word, char ***ret_argv, struct ct_err *e)
{
	char **argv = NULL;
	size_t n = 0, len = strlen(word);
	_cleanup_free_ char *cur = malloc(len + 1);
	const char *s = word;

	if (!cur)
		return ct_fail(e, ENOMEM, "out of memory");
	for (;;) {
		size_t c = 0;
		bool have = false;
		char q = 0;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (!*s)
			break;
		for (; *s; s++) {
			if (q) {
				if (*s == q) {
					q = 0;
				} else if (q == '"' && *s == '\\' && (s[1] == '"' || s[1] == '\\')) {
					cur[c++] = *++s;
				} else {
					cur[c++] = *s;
				}
				continue;
			}
			if (*s == ' ' || *s == '\t' || *s == '\n')
				break;
			if (*s == '\'' || *s == '"') {
				q = *s;
				have = true;
			} else if (*s == '\\' && s[1]) {
				cur[c++] = *++s;
			} else {
				cur[c++] = *s;
			}
		}
		if (q) {
			dispatch_free(argv);
			return ct_fail(e, EINVAL, "unterminated quote in '%s'", word);
		}
		if (c || have) {
			cur[c] = '\0';
			if (argv_push(&argv, &n, strdup(cur)) < 0) {
				dispatch_free(argv);
				return ct_fail(e, ENOMEM, "out of memory");
			}
		}
	}
	if (!argv) {
		return ct_fail(e, EINVAL, "empty command");
	}
	*ret_argv = argv;
	return 0;
}

int dispatch_resolve(int argc, char *const *argv, dispatch_exists_fn exists, void *data,
		     char ***ret_argv, bool *ret_path_lookup, struct ct_err *e)
{
	char **out = NULL;
	size_t n = 0;
	bool lookup = false;
	int i = 1, r = 0;

	if (argc < 1 || !argv[0] || !argv[0][0])
		return ct_fail(e, EINVAL, "empty command");
	if (argv[0][0] == '/') {
		r = argv_push(&out, &n, strdup(argv[0]));
	} else if (!strchr(argv[0], '/')) {
		_cleanup_free_ char *own = xasprintf("/chroot.d/%s", argv[0]);

		if (!own)
			return ct_fail(e, ENOMEM, "out of memory");
		if (exists(own, data)) {
			r = argv_push(&out, &n, TAKE_PTR(own));
		} else if (exists("/chroot.d/chroot-cmd", data)) {
			r = argv_push(&out, &n, strdup("/chroot.d/chroot-cmd"));
			i = 0;
		} else {
			r = argv_push(&out, &n, strdup(argv[0]));
			lookup = true;
		}
	} else {
		/* a relative path such as bin/x: run as the kernel resolves it */
		r = argv_push(&out, &n, strdup(argv[0]));
	}
	for (; r == 0 && i < argc; i++)
		r = argv_push(&out, &n, strdup(argv[i]));
	if (r < 0) {
		dispatch_free(out);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	*ret_argv = out;
	*ret_path_lookup = lookup;
	return 0;
}
