/* ctool run: chroot-tool's run, with podman's exit codes. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "dispatch.h"
#include "driver.h"
#include "exec.h"
#include "log.h"
#include "util.h"

#define EXIT_RUN_FAIL 125

static const char run_usage[] =
	"usage: ctool run [NAME | -d DIR] [-u USER] [-w DIR] [-e K=V]... [-v HOST:TARGET[:ro]]...\n"
	"                 [--host-dev] [--driver kernel|fuse] [--] CMD [ARG...]\n";

struct run_args {
	const char *first;  /* NAME, or the command's first word */
	const char *dir, *user, *cwd, *driver;
	char *envs[128];
	size_t n_envs;
	struct env_bind binds[64];
	size_t n_binds;
	bool host_dev;
	char **cmd;         /* NULL-terminated, malloc'd array into argv */
	int n_cmd;
};

static int push(struct run_args *a, char *word)
{
	char **n = realloc(a->cmd, (size_t)(a->n_cmd + 2) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	n[a->n_cmd++] = word;
	n[a->n_cmd] = NULL;
	a->cmd = n;
	return 0;
}

/* Options stop at the command: the first word after NAME (or any word
 * once -d was given), or "--". Returns 0, -1 after --help, or an exit code. */
static int run_parse(int argc, char **argv, struct run_args *a)
{
	bool in_cmd = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		const char *o = argv[i], *val;

		if (in_cmd) {
			if (push(a, argv[i]) < 0)
				return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
			continue;
		}
		if (strcmp(o, "--") == 0) {
			in_cmd = true;
			continue;
		}
		if (o[0] != '-' || !o[1]) {
			if (!a->first && !a->dir) {
				a->first = o;
				continue;
			}
			in_cmd = true;
			i--;
			continue;
		}
		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
			fputs(run_usage, stdout);
			return -1;
		}
		if (strcmp(o, "--host-dev") == 0) {
			a->host_dev = true;
			continue;
		}
		if (!(!strcmp(o, "-u") || !strcmp(o, "-w") || !strcmp(o, "-e") || !strcmp(o, "-v") ||
		      !strcmp(o, "-d") || !strcmp(o, "--user") || !strcmp(o, "--workdir") ||
		      !strcmp(o, "--env") || !strcmp(o, "--volume") || !strcmp(o, "--dir") ||
		      !strcmp(o, "--driver"))) {
			return cmd_usage_error("unknown option '%s' (see 'ctool run --help')", o);
		}
		if (i + 1 >= argc)
			return cmd_usage_error("option '%s' needs a value", o);
		val = argv[++i];
		if (strcmp(o, "--driver") == 0) {
			if (!driver_is_valid(val))
				return cmd_usage_error("no driver named '%s' (kernel or fuse)", val);
			a->driver = val;
			continue;
		}
		switch (o[1] == '-' ? o[2] : o[1]) {
		case 'u': a->user = val; break;
		case 'w': a->cwd = val; break;
		case 'd': a->dir = val; break;
		case 'e':
			if (a->n_envs >= ARRAY_SIZE(a->envs) - 1)
				return cmd_usage_error("too many -e");
			if (val[0] == '=' || !val[0])
				return cmd_usage_error("bad -e '%s' (use K=V)", val);
			a->envs[a->n_envs++] = (char *)val;
			break;
		case 'v':
			if (a->n_binds >= ARRAY_SIZE(a->binds))
				return cmd_usage_error("too many -v");
			r = cmd_parse_volume(val, &a->binds[a->n_binds++]);
			if (r)
				return r;
			break;
		}
	}
	return 0;
}

static bool exists_in_env(const char *path, void *data)
{
	return env_has_file(data, path, false);
}

int cmd_run(int argc, char **argv, struct cmd_ctx *ctx)
{
	struct run_args a = { 0 };
	struct env *env = NULL;
	struct ct_err e = { 0 };
	char **split = NULL, **resolved = NULL, **cmdv, **image_env = NULL, **envs = NULL;
	const char *name = NULL;
	int lock = -1, r;
	bool lookup;

	r = run_parse(argc, argv, &a);
	if (r) {
		free(a.cmd);
		return r < 0 ? 0 : r;
	}
	/* an env that is on needs no catalog (see env_load_on) */
	if (a.first && !a.dir && a.n_binds == 0 && a.n_cmd > 0 && name_is_valid(a.first)) {
		if (env_lock(ctx->store, a.first, &lock, &e) < 0)
			goto fail;
		if (env_load_on(ctx->store, a.first, &env) == 0)
			goto enter;
		(void)close(lock);
		lock = -1;
	}
	if (store_open_catalog(ctx->store, &e) < 0)
		goto fail;
	if (a.first) {
		struct catalog_env row;
		struct env *here = NULL;

		if (!a.dir && catalog_env_get(ctx->store->cat, a.first, &row, &e) == 0) {
			name = a.first;
		} else if (!a.dir && env_find_by_root(ctx->store, ".", &here, &e) < 0) {
			log_error("no env named '%s'", a.first);
			free(a.cmd);
			return EXIT_RUN_FAIL;
		} else {
			/* the first word begins the command */
			env_free(here);
			if (push(&a, NULL) < 0) {
				free(a.cmd);
				return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
			}
			memmove(a.cmd + 1, a.cmd, (size_t)a.n_cmd * sizeof(*a.cmd));
			a.cmd[0] = (char *)a.first;
		}
	}
	if (a.n_cmd == 0) {
		free(a.cmd);
		return cmd_usage_error("no command given (see 'ctool run --help')");
	}
	r = cmd_env_open(ctx, name, a.dir, &env, &lock);
	if (r) {
		free(a.cmd);
		return r == EXIT_USAGE ? r : EXIT_RUN_FAIL;
	}
	if (!env_is_on(env) || !env->row.want_on || a.n_binds) {
		struct env_on_opts o = { .host_dev = a.host_dev, .binds = a.binds,
					 .n_binds = a.n_binds, .driver = a.driver };

		r = env_on(ctx->store, env, &o, &e);
		if (r < 0)
			goto fail;
	} else {
		env_record_on(ctx->store, env); /* on before the record existed */
	}
enter:
	cmdv = a.cmd;
	if (a.n_cmd == 1 && strpbrk(a.cmd[0], " \t\n")) {
		r = dispatch_split(a.cmd[0], &split, &e);
		if (r < 0)
			goto fail;
		cmdv = split;
	}
	r = env_host_cmd(env, cmdv, &e);
	if (r < 0)
		goto fail;
	{
		int n = 0;

		while (cmdv[n])
			n++;
		r = dispatch_resolve(n, cmdv, exists_in_env, env, &resolved, &lookup, &e);
		if (r < 0)
			goto fail;
	}
	/* the image's ENV, then -e, which overrides it */
	image_env = env_image_env(env);
	if (image_env) {
		size_t n = 0;

		while (image_env[n])
			n++;
		envs = calloc(n + a.n_envs + 1, sizeof(*envs));
		if (!envs) {
			r = ct_fail(&e, ENOMEM, "out of memory");
			goto fail;
		}
		memcpy(envs, image_env, n * sizeof(*envs));
		memcpy(envs + n, a.envs, a.n_envs * sizeof(*envs));
	}
	{
		struct exec_opts xo = {
			.root = env->root,
			.argv = resolved,
			.path_lookup = lookup,
			.user = a.user,
			.cwd = a.cwd,
			.env = envs ? envs : a.envs,
		};

		/* the catalog and the env's lock close with the exec */
		store_free(ctx->store);
		ctx->store = NULL;
		exec_replace(&xo);
	}
fail:
	cmd_fail(&e);
	(void)close(lock);
	free(image_env);
	free(envs);
	dispatch_free(split);
	dispatch_free(resolved);
	free(a.cmd);
	env_free(env);
	return EXIT_RUN_FAIL;
}
