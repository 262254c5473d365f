/* ctool bind: add a bind to an env's host-side tool.conf. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "log.h"
#include "mounts.h"
#include "toolconf.h"
#include "util.h"

static const char bind_usage[] = "usage: ctool bind [NAME | -d DIR] SRC TGT [--ro]\n";

int cmd_bind(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "ro", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *name = NULL, *src, *tgt;
	bool ro = false;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	struct toolconf tc = { 0 };
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *path = NULL, *text = NULL, *updated = NULL;
	int c, r, n;

	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'r': ro = true; break;
		case 'h': fputs(bind_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	n = argc - optind;
	if (n == 3 && !dir)
		name = argv[optind++];
	else if (n != 2)
		return cmd_usage_error("expected [NAME] SRC TGT (see 'ctool bind --help')");
	src = argv[optind];
	tgt = argv[optind + 1];
	if (strpbrk(src, "\n") || strpbrk(tgt, "\n") || strstr(src, " tgt:"))
		return cmd_usage_error("paths in tool.conf cannot hold a newline or ' tgt:'");
	r = cmd_env_open(ctx, name, dir, &env, &lock);
	if (r)
		return r;
	r = mounts_bind_check(src, tgt, ctx->store->path, &e);
	if (r < 0)
		goto fail;
	r = env_make_dirs(env, false, &e);
	if (r < 0)
		goto fail;
	path = xasprintf("%s/tool.conf", env->conf);
	if (!path) {
		r = ct_fail(&e, ENOMEM, "out of memory");
		goto fail;
	}
	r = read_file(path, &text, NULL);
	if (r < 0 && r != -ENOENT) {
		r = ct_fail_errno(&e, -r, "cannot read '%s'", path);
		goto fail;
	}
	/* a tool.conf that does not parse is not made worse */
	if (text && (r = toolconf_parse(text, path, &tc, &e)) < 0)
		goto fail;
	toolconf_clear(&tc);
	updated = toolconf_add_bind(text, src, tgt, ro);
	if (!updated) {
		r = ct_fail(&e, ENOMEM, "out of memory");
		goto fail;
	}
	r = write_file_atomic(path, updated, strlen(updated), 0644);
	if (r < 0) {
		r = ct_fail_errno(&e, -r, "cannot write '%s'", path);
		goto fail;
	}
	if (env_is_on(env))
		log_info("env '%s' is on: the bind applies at its next 'on'", env->row.name);
	env_free(env);
	return 0;
fail:
	env_free(env);
	return cmd_fail(&e);
}
