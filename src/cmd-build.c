/* ctool build, ctool commit: layers made from recipe steps and from an
 * env's changes.
 *
 * A build walks the recipe with a running sha256: the base image's
 * layers, then each step's text (and, for COPY, the content it copies).
 * A PKG, EXEC or COPY step whose key names a layer reuses it; otherwise
 * the step runs in a throwaway env over the layers so far, and that
 * env's upper becomes the step's layer, recorded with the key. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "cmd.h"
#include "driver.h"
#include "exec.h"
#include "lock.h"
#include "log.h"
#include "mounts.h"
#include "recipe.h"
#include "sha256.h"
#include "util.h"

#define BUILD_ENV_PREFIX ".build-"
#define COPY_MOUNT "/.ctool-copy"

static int chown_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return lchown(path, 0, 0) < 0 ? -1 : 0;
}

/* Feed h with the tree at dirfd/name, rel its path from SRC: each
 * entry's path, type, mode and size, a file's bytes and a link's target,
 * in name order (not owners: COPY makes root the owner). buf: a scratch
 * buffer of DIGEST_BUF bytes. */
#define DIGEST_BUF 65536

static int digest_tree(struct sha256 *h, int dirfd, const char *name, const char *rel, char *buf,
		       struct ct_err *e)
{
	struct stat st;
	ssize_t n;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ct_fail_errno(e, errno, "cannot read '%s'", rel);
	n = snprintf(buf, DIGEST_BUF, "%s%c%o %lld\n", rel, '\0', (unsigned)st.st_mode,
		     S_ISREG(st.st_mode) ? (long long)st.st_size : 0LL);
	sha256_update(h, buf, (size_t)n);
	if (S_ISLNK(st.st_mode)) {
		n = readlinkat(dirfd, name, buf, DIGEST_BUF);
		if (n < 0)
			return ct_fail_errno(e, errno, "cannot read '%s'", rel);
		sha256_update(h, buf, (size_t)n);
	} else if (S_ISREG(st.st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0)
			return ct_fail_errno(e, errno, "cannot read '%s'", rel);
		while ((n = read(fd, buf, DIGEST_BUF)) > 0)
			sha256_update(h, buf, (size_t)n);
		if (n < 0)
			return ct_fail_errno(e, errno, "cannot read '%s'", rel);
	} else if (S_ISDIR(st.st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
								     O_CLOEXEC);
		struct dirent **list = NULL;
		int i, count, r = 0;

		if (fd < 0)
			return ct_fail_errno(e, errno, "cannot read '%s'", rel);
		/* scandir wants a path: the fd's own */
		(void)snprintf(buf, DIGEST_BUF, "/proc/self/fd/%d", fd);
		count = scandir(buf, &list, NULL, alphasort);
		if (count < 0)
			return ct_fail_errno(e, errno, "cannot read '%s'", rel);
		for (i = 0; i < count; i++) {
			const char *c = list[i]->d_name;

			if (r == 0 && strcmp(c, ".") && strcmp(c, "..")) {
				_cleanup_free_ char *sub = xasprintf("%s/%s", rel, c);

				r = sub ? digest_tree(h, fd, c, sub, buf, e)
					: ct_fail(e, ENOMEM, "out of memory");
			}
			free(list[i]);
		}
		free(list);
		return r;
	}
	return 0;
}

/* The digest of COPY's SRC (in the recipe's folder dir), refused when it
 * is, or goes through, a symlink: what is copied stays in the folder. */
static int copy_digest(const char *dir, const char *src, char hex[65], struct ct_err *e)
{
	struct open_how how = { .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd = -1;
	_cleanup_free_ char *buf = malloc(DIGEST_BUF);
	struct sha256 *h = NULL;
	struct stat st;
	int r;

	if (dfd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s'", dir);
	if (!buf)
		return ct_fail(e, ENOMEM, "out of memory");
	fd = (int)syscall(SYS_openat2, dfd, src, &how, sizeof(how));
	if (fd < 0 && (errno == ELOOP || errno == EXDEV))
		return ct_fail(e, EPERM, "'%s' goes through a symlink", src);
	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot read '%s'", src);
	if (fstat(fd, &st) < 0)
		return ct_fail_errno(e, errno, "cannot read '%s'", src);
	if (S_ISLNK(st.st_mode))
		return ct_fail(e, EPERM, "'%s' is a symlink", src);
	r = sha256_new(&h, e);
	if (r == 0)
		r = digest_tree(h, dfd, src, ".", buf, e);
	if (r == 0)
		sha256_hex(h, hex);
	sha256_free(h);
	return r;
}

struct build {
	struct store *s;
	struct recipe *rcp;
	const char *image;       /* what is built */
	const char *base;        /* FROM's image, or the default one */
	const char *driver;      /* --driver, or NULL */
	bool no_cache, refresh;
	struct sha256 *h;
	char key[65];
	char (*stack)[37];       /* bottom first */
	size_t n_stack;
	char *config;            /* RUN, ENV, VOLUME lines */
	char **envv;             /* the ENV so far, K=V, NULL-terminated */
	size_t n_envv;
	/* the throwaway env the steps run in, made when first needed */
	char env_name[64];
	struct env *env;
	int env_lock;
	unsigned built, cached;
};

/* key = sha256(key, text, extra) */
static void key_next(struct build *b, const char *text, const char *extra)
{
	sha256_update(b->h, b->key, strlen(b->key));
	sha256_update(b->h, "\n", 1);
	sha256_update(b->h, text, strlen(text));
	if (extra) {
		sha256_update(b->h, "\n", 1);
		sha256_update(b->h, extra, strlen(extra));
	}
	sha256_hex(b->h, b->key);
}

/* Replace the config's line starting with prefix (all of them when
 * prefix is "RUN ") by line, or append it. */
static int config_set(struct build *b, const char *prefix, size_t plen, const char *line)
{
	size_t len = b->config ? strlen(b->config) : 0, out = 0;
	char *n = malloc(len + strlen(line) + 3), *p = b->config;

	if (!n)
		return -ENOMEM;
	while (p && *p) {
		size_t l = strcspn(p, "\n");

		if (!(l >= plen && !strncmp(p, prefix, plen))) {
			memcpy(n + out, p, l);
			out += l;
			n[out++] = '\n';
		}
		p += l + (p[l] == '\n');
	}
	out += (size_t)sprintf(n + out, "%s\n", line);
	n[out] = '\0';
	free(b->config);
	b->config = n;
	return 0;
}

static int envv_set(struct build *b, const char *kv)
{
	size_t klen = (size_t)(strchr(kv, '=') - kv), i;
	char *d = strdup(kv), **v;

	if (!d)
		return -ENOMEM;
	for (i = 0; i < b->n_envv; i++) {
		if (!strncmp(b->envv[i], kv, klen + 1)) {
			free(b->envv[i]);
			b->envv[i] = d;
			return 0;
		}
	}
	v = realloc(b->envv, (b->n_envv + 2) * sizeof(*v));
	if (!v) {
		free(d);
		return -ENOMEM;
	}
	v[b->n_envv++] = d;
	v[b->n_envv] = NULL;
	b->envv = v;
	return 0;
}

/* The value of K in the build's environment so far ("" when unset; PATH
 * has the env's default). */
static const char *envv_get(const struct build *b, const char *k, size_t klen)
{
	size_t i;

	for (i = 0; i < b->n_envv; i++)
		if (!strncmp(b->envv[i], k, klen) && b->envv[i][klen] == '=')
			return b->envv[i] + klen + 1;
	return klen == 4 && !strncmp(k, "PATH", 4) ? ENV_PATH : "";
}

/* kv ("K=V") with $NAME and ${NAME} in V replaced by their values so
 * far, as a Dockerfile's ENV does ("\$" keeps a '$'). malloc'd. */
static char *envv_expand(const struct build *b, const char *kv)
{
	size_t cap = strlen(kv) + 1, n = 0;
	char *out = malloc(cap);
	const char *p = kv;

	while (out && *p) {
		const char *add = p, *name;
		size_t alen = 1, nlen;

		if (p[0] == '\\' && p[1] == '$') {
			add = p + 1;
			p += 2;
		} else if (p[0] == '$' && (p[1] == '{' || p[1] == '_' || isalpha((unsigned char)p[1])) &&
			   strchr(kv, '=') < p) {
			bool brace = p[1] == '{';

			name = p + 1 + brace;
			nlen = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					    "0123456789_");
			if (brace && name[nlen] != '}') {
				p++;
			} else {
				add = envv_get(b, name, nlen);
				alen = strlen(add);
				p = name + nlen + brace;
			}
		} else {
			p++;
		}
		if (n + alen + 1 > cap) {
			char *grown = realloc(out, cap = 2 * (n + alen + 1));

			if (!grown) {
				free(out);
				return NULL;
			}
			out = grown;
		}
		memcpy(out + n, add, alen);
		n += alen;
	}
	if (out)
		out[n] = '\0';
	return out;
}

/* The ENV of a config (the base image's) into the build's environment. */
static int envv_from_config(struct build *b, const char *config, struct ct_err *e)
{
	struct env_config c = { 0 };
	size_t i;
	int r = env_config_parse(config, &c, e);

	for (i = 0; r == 0 && i < c.n_envs; i++)
		if (envv_set(b, c.envs[i]) < 0)
			r = ct_fail(e, ENOMEM, "out of memory");
	env_config_clear(&c);
	return r;
}

static int stack_push(struct build *b, const char *id)
{
	char(*v)[37] = realloc(b->stack, (b->n_stack + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	b->stack = v;
	snprintf(v[b->n_stack++], sizeof(*v), "%s", id);
	return 0;
}

/* Builds that were killed leave their env behind: remove each whose
 * lock is free (a running build holds its own). */
static int stale_cb(const struct catalog_env *row, void *data)
{
	struct store *s = data;
	_cleanup_close_ int lock = -1;
	struct env *env = NULL;
	struct ct_err e = { 0 };

	if (strncmp(row->name, BUILD_ENV_PREFIX, strlen(BUILD_ENV_PREFIX)) != 0)
		return 0;
	if (lock_name(s, "env", row->name, LOCK_EX | LOCK_NB, &lock, &e) < 0)
		return 0;
	if (env_load(s, row->name, &env, &e) == 0) {
		log_debug("removing '%s', left by a build that was cut short", row->name);
		if (env_off(s, env, true, 1000, &e) < 0 || env_remove(s, env, &e) < 0)
			log_warn("cannot remove '%s': %s", row->name, e.msg);
	}
	env_free(env);
	return 0;
}

void build_clean_stale(struct store *s)
{
	struct ct_err e = { 0 };

	(void)catalog_env_foreach(s->cat, stale_cb, s, &e);
}

/* The throwaway env, over the layers so far. */
static int build_env(struct build *b, struct ct_err *e)
{
	char id[37];
	int r;

	if (!b->env) {
		uuid_new(id);
		snprintf(b->env_name, sizeof(b->env_name), BUILD_ENV_PREFIX "%.8s", id);
		r = env_lock(b->s, b->env_name, &b->env_lock, e);
		if (r == 0)
			r = env_clone(b->s, b->base, NULL, b->env_name, NULL, true, b->driver, e);
		if (r == 0)
			r = env_load(b->s, b->env_name, &b->env, e);
		if (r < 0)
			return r;
	}
	return catalog_env_set_layers(b->s->cat, b->env_name, b->stack, b->n_stack, e);
}

/* Run argv in the build env (on); status must be 0. out: stdout's fd. */
static int step_exec(struct build *b, const struct recipe_step *st, char **argv, int out,
		     struct ct_err *e)
{
	_cleanup_free_ char **env = calloc(b->n_envv + 2, sizeof(*env));
	struct exec_opts o = {
		.root = b->env->root,
		.argv = argv,
		.path_lookup = true,
		.env = env,
		.stdout_fd = out,
	};
	int status = 0, r;
	size_t n = 0;

	if (!env)
		return ct_fail(e, ENOMEM, "out of memory");
	/* apt and dpkg ask nothing (the recipe's ENV, after it, may say otherwise) */
	if (st->op == RECIPE_PKG)
		env[n++] = (char *)"DEBIAN_FRONTEND=noninteractive";
	if (b->n_envv)
		memcpy(env + n, b->envv, b->n_envv * sizeof(*env));
	r = exec_in_env(&o, &status, e);

	if (r < 0)
		return r;
	if (status != 0)
		return ct_fail(e, EIO, "%s:%u: %s failed (%s exited with %d)", b->rcp->path,
			       st->line, st->name, argv[0], status);
	return 0;
}

/* The "name=version" lines dpkg knows in the env now (malloc'd). */
static int dpkg_list(struct build *b, const struct recipe_step *st, char **ret, struct ct_err *e)
{
	char *argv[] = { (char *)"dpkg-query", (char *)"-W", (char *)"-f",
			 (char *)"${Package}=${Version}\\n", NULL };
	_cleanup_close_ int fd = memfd_create("ctool-dpkg", MFD_CLOEXEC);
	size_t len;
	int r;

	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot make a memfd");
	r = step_exec(b, st, argv, fd, e);
	if (r < 0)
		return r;
	if (lseek(fd, 0, SEEK_SET) < 0 || read_fd(fd, ret, &len) < 0)
		return ct_fail_errno(e, errno, "cannot read dpkg's list");
	return 0;
}

/* Lines of after that are not in before, into *ret (malloc'd). */
static char *lines_new(const char *before, const char *after)
{
	size_t n = strlen(after), out = 0, bl = strlen(before);
	char *r = malloc(n + 1);
	const char *p = after;

	if (!r)
		return NULL;
	while (*p) {
		size_t l = strcspn(p, "\n");
		const char *q = before;
		bool found = false;

		while (q < before + bl && !found) {
			size_t ql = strcspn(q, "\n");

			found = ql == l && !strncmp(q, p, l);
			q += ql + (q[ql] == '\n');
		}
		if (!found && l) {
			memcpy(r + out, p, l);
			out += l;
			r[out++] = '\n';
		}
		p += l + (p[l] == '\n');
	}
	r[out] = '\0';
	return r;
}

static char **pkg_argv(const struct recipe_step *st, const char *const *head, size_t n_head)
{
	char **argv = calloc(n_head + st->n_words + 1, sizeof(*argv));
	size_t i;

	if (!argv)
		return NULL;
	for (i = 0; i < n_head; i++)
		argv[i] = (char *)head[i];
	for (i = 0; i < st->n_words; i++)
		argv[n_head + i] = st->words[i];
	return argv;
}

static int env_on_build(struct build *b, struct ct_err *e)
{
	struct env_on_opts o = { .driver = b->driver };

	return env_on(b->s, b->env, &o, e);
}

static int env_off_build(struct build *b, struct ct_err *e)
{
	return env_off(b->s, b->env, true, 2000, e);
}

/* Is line (with its '\n') one of text's lines? */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while (p && (p = strstr(p, line))) {
		if (p == text || p[-1] == '\n')
			return true;
		p += n;
	}
	return false;
}

/* Would apt install other versions for this PKG step now? (*ret_stale) */
static int pkg_stale(struct build *b, const struct recipe_step *st, const char *recorded,
		     bool *ret_stale, struct ct_err *e)
{
	static const char *const update[] = { "apt-get", "-q", "update" };
	static const char *const sim[] = { "apt-get", "-s", "-q", "--no-install-recommends",
					   "install" };
	_cleanup_free_ char **up = pkg_argv(&(struct recipe_step){ 0 }, update, 3);
	_cleanup_free_ char **argv = pkg_argv(st, sim, 5);
	_cleanup_close_ int fd = memfd_create("ctool-apt", MFD_CLOEXEC), null = -1;
	_cleanup_free_ char *out = NULL;
	size_t len;
	char *p;
	int r;

	if (!up || !argv || fd < 0)
		return ct_fail(e, ENOMEM, "out of memory");
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	*ret_stale = false;
	r = build_env(b, e);
	if (r == 0)
		r = env_on_build(b, e);
	if (r == 0)
		r = step_exec(b, st, up, null, e);
	if (r == 0)
		r = step_exec(b, st, argv, fd, e);
	if (env_off_build(b, r < 0 ? &(struct ct_err){ 0 } : e) < 0 && r == 0)
		r = -e->code;
	/* what apt-get update wrote must not reach the next layer */
	if (r == 0)
		r = store_trash(b->s, b->env->upper, e);
	if (r == 0)
		r = store_trash(b->s, b->env->work, e);
	if (r < 0)
		return r;
	if (lseek(fd, 0, SEEK_SET) < 0 || read_fd(fd, &out, &len) < 0)
		return ct_fail_errno(e, errno, "cannot read apt's answer");
	/* "Inst NAME [OLD] (VERSION ARCHIVE [ARCH])" */
	for (p = out; p && *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] == '\n')) {
		char name[256], ver[256], line[520];
		const char *q;

		if (strncmp(p, "Inst ", 5) != 0 || sscanf(p + 5, "%255s", name) != 1)
			continue;
		q = strchr(p, '(');
		if (!q || sscanf(q + 1, "%255s", ver) != 1)
			continue;
		(void)snprintf(line, sizeof(line), "%s=%s\n", name, ver);
		if (!has_line(recorded, line)) {
			char *nl = strchr(line, '\n');

			*nl = '\0';
			log_info("%s:%u: the archive now has %s", b->rcp->path, st->line, line);
			*ret_stale = true;
		}
	}
	return 0;
}

/* Run layer step st in the build env; *ret gets the new layer. */
static int step_run(struct build *b, const struct recipe_step *st, struct catalog_layer *ret,
		    struct ct_err *e)
{
	_cleanup_free_ char *before = NULL, *after = NULL, *stage = NULL, *src = NULL;
	_cleanup_close_ int stage_lock = -1;
	int r;

	r = build_env(b, e);
	if (r < 0)
		return r;
	if (st->op == RECIPE_COPY) {
		/* a root-owned copy of SRC, bound read-only into the env and
		 * copied by cp inside it, so DST resolves inside the env */
		_cleanup_free_ char *from = xasprintf("%s/%s", b->rcp->dir, st->words[0]);

		r = store_tmp_new(b->s, &stage, &stage_lock, e);
		if (r < 0)
			return r;
		src = xasprintf("%s/src", stage);
		if (!from || !src)
			return ct_fail(e, ENOMEM, "out of memory");
		r = copy_tree(from, src, e);
		if (r == 0 && nftw(src, chown_cb, 32, FTW_PHYS) < 0)
			r = ct_fail_errno(e, errno, "cannot make root the owner of '%s'", src);
	}
	if (r == 0)
		r = env_on_build(b, e);
	if (r == 0 && st->op == RECIPE_COPY) {
		_cleanup_close_ int rootfd = mounts_root_open(b->env->root, true, e);

		r = rootfd < 0 ? rootfd : mounts_bind(rootfd, src, COPY_MOUNT, true, e);
	}
	if (r == 0) {
		switch (st->op) {
		case RECIPE_EXEC: {
			char *argv[] = { (char *)"/bin/sh", (char *)"-c", st->arg, NULL };

			r = step_exec(b, st, argv, -1, e);
			break;
		}
		case RECIPE_COPY: {
			char *argv[] = {
				(char *)"/bin/sh", (char *)"-c",
				/* a folder's entries go into DST, which keeps its own
				 * mode and owner when it exists; a file goes into DST
				 * when DST is a folder or ends in '/', else to DST */
				(char *)"set -e; s=" COPY_MOUNT "\n"
					"if [ -d \"$s\" ]; then mkdir -p \"$1\"\n"
					"  for f in \"$s\"/* \"$s\"/.[!.]* \"$s\"/..?*; do\n"
					"    [ -e \"$f\" ] || [ -L \"$f\" ] || continue; cp -a \"$f\" \"$1\"/; done\n"
					"else case \"$1\" in */) mkdir -p \"$1\";; esac\n"
					"  if [ -d \"$1\" ]; then cp -a \"$s\" \"$1/$2\"\n"
					"  else mkdir -p \"$(dirname \"$1\")\"; cp -a \"$s\" \"$1\"; fi\n"
					"fi",
				(char *)"sh", st->words[1], basename(st->words[0]), NULL
			};

			r = step_exec(b, st, argv, -1, e);
			break;
		}
		case RECIPE_PKG: {
			static const char *const update[] = { "apt-get", "-q", "update" };
			static const char *const inst[] = { "apt-get", "install", "-y", "-q",
							    "--no-install-recommends" };
			static const char *const clean[] = {
				"/bin/sh", "-c", "apt-get clean && rm -rf /var/lib/apt/lists/*"
			};
			_cleanup_free_ char **up = pkg_argv(&(struct recipe_step){ 0 }, update, 3);
			_cleanup_free_ char **argv = pkg_argv(st, inst, 5);
			_cleanup_free_ char **cl = pkg_argv(&(struct recipe_step){ 0 }, clean, 3);

			if (!up || !argv || !cl) {
				r = ct_fail(e, ENOMEM, "out of memory");
				break;
			}
			r = dpkg_list(b, st, &before, e);
			if (r == 0)
				r = step_exec(b, st, up, -1, e);
			if (r == 0)
				r = step_exec(b, st, argv, -1, e);
			if (r == 0)
				r = dpkg_list(b, st, &after, e);
			if (r == 0)
				r = step_exec(b, st, cl, -1, e);
			if (r == 0) {
				ret->packages = lines_new(before, after);
				if (!ret->packages)
					r = ct_fail(e, ENOMEM, "out of memory");
			}
			break;
		}
		default:
			break;
		}
	}
	{
		struct ct_err e2 = { 0 };

		if (env_off_build(b, &e2) < 0 && r == 0) {
			*e = e2;
			r = -e2.code;
		}
	}
	if (stage) {
		struct ct_err e2 = { 0 };
		_cleanup_free_ char *lock = xasprintf("%s.lock", stage);

		(void)rm_tree_onefs(AT_FDCWD, stage, &e2);
		if (lock)
			(void)unlink(lock);
	}
	if (r < 0)
		return r;
	if (st->op == RECIPE_COPY) {
		/* the bind's mount point, made in the upper */
		_cleanup_free_ char *mp = xasprintf("%s%s", b->env->upper, COPY_MOUNT);

		if (mp && unlink(mp) < 0 && errno == EISDIR)
			(void)rmdir(mp);
	}
	uuid_new(ret->id);
	snprintf(ret->origin, sizeof(ret->origin), "%s %.500s", st->name, st->arg);
	memcpy(ret->cache_key, b->key, sizeof(ret->cache_key));
	return env_commit(b->s, b->env, ret, NULL, e);
}

static void step_note(struct build *b, size_t i, const struct recipe_step *st, const char *what)
{
	log_info("[%zu/%zu] %s %.60s%s%s", i + 1, b->rcp->n_steps, st->name, st->arg,
		 strlen(st->arg) > 60 ? "..." : "", what);
}

static int build_run(struct build *b, struct ct_err *e)
{
	struct catalog_image base = { 0 }, img = { 0 };
	size_t i;
	int r;

	r = catalog_image_get(b->s->cat, b->base, &base, e);
	if (r == -ENOENT)
		return ct_fail(e, ENOENT, "no image named '%s'%s", b->base,
			       b->rcp->n_steps && b->rcp->steps[0].op == RECIPE_FROM
				       ? ""
				       : " (PROOT's base: make it with 'ctool create')");
	if (r < 0)
		return r;
	sha256_update(b->h, "ctool-build 1\n", 14);
	for (i = 0; i < base.n_layers; i++) {
		sha256_update(b->h, base.layers[i], strlen(base.layers[i]));
		if (r == 0 && stack_push(b, base.layers[i]) < 0)
			r = ct_fail(e, ENOMEM, "out of memory");
	}
	/* the base's ENV reaches the steps: its config is part of the key */
	if (base.config)
		sha256_update(b->h, base.config, strlen(base.config));
	sha256_hex(b->h, b->key);
	if (r == 0 && base.config) {
		b->config = strdup(base.config);
		r = b->config ? envv_from_config(b, b->config, e) : ct_fail(e, ENOMEM, "out of memory");
	}
	catalog_image_clear(&base);
	for (i = 0; r == 0 && i < b->rcp->n_steps; i++) {
		const struct recipe_step *st = &b->rcp->steps[i];
		_cleanup_free_ char *text = xasprintf("%s %s", st->name, st->arg);
		char copy_key[65] = "";
		struct catalog_layer l = { 0 };
		size_t k;

		if (!text)
			return ct_fail(e, ENOMEM, "out of memory");
		switch (st->op) {
		case RECIPE_PROOT:
		case RECIPE_FROM:
			continue;
		case RECIPE_ENV:
			for (k = 0; r == 0 && k < st->n_words; k++) {
				_cleanup_free_ char *kv = envv_expand(b, st->words[k]);
				_cleanup_free_ char *line = kv ? xasprintf("ENV %s", kv) : NULL;
				size_t klen = strcspn(st->words[k], "=");
				_cleanup_free_ char *pre = xasprintf("ENV %.*s=", (int)klen,
								     st->words[k]);

				if (!line || !pre || envv_set(b, kv) < 0 ||
				    config_set(b, pre, strlen(pre), line) < 0)
					r = ct_fail(e, ENOMEM, "out of memory");
			}
			key_next(b, text, NULL);
			continue;
		case RECIPE_VOLUME:
			for (k = 0; r == 0 && k < st->n_words; k++) {
				_cleanup_free_ char *line = xasprintf("VOLUME %s", st->words[k]);

				if (!line || config_set(b, line, strlen(line), line) < 0)
					r = ct_fail(e, ENOMEM, "out of memory");
			}
			/* not in the key: no layer depends on it */
			continue;
		case RECIPE_RUN:
			if (config_set(b, "RUN ", 4, text) < 0)
				r = ct_fail(e, ENOMEM, "out of memory");
			continue;
		case RECIPE_COPY:
			r = copy_digest(b->rcp->dir, st->words[0], copy_key, e);
			if (r < 0) {
				char why[sizeof(e->msg)];

				snprintf(why, sizeof(why), "%s", e->msg);
				return ct_fail(e, -r, "%s:%u: COPY: %s", b->rcp->path, st->line, why);
			}
			break;
		default:
			break;
		}
		key_next(b, text, copy_key[0] ? copy_key : NULL);
		if (!b->no_cache && catalog_layer_get(b->s->cat, b->key, true, &l, e) == 0) {
			_cleanup_free_ char *dir = store_path(b->s, "layers/%s", l.id);
			bool stale = false;

			if (dir && access(dir, F_OK) == 0) {
				if (b->refresh && st->op == RECIPE_PKG) {
					step_note(b, i, st, " (asking apt)");
					r = pkg_stale(b, st, l.packages, &stale, e);
				}
				if (r == 0 && !stale) {
					step_note(b, i, st, " (cached)");
					r = stack_push(b, l.id) < 0 ? ct_fail(e, ENOMEM, "out of memory") : 0;
					b->cached++;
					catalog_layer_clear(&l);
					continue;
				}
			}
			catalog_layer_clear(&l);
			if (r < 0)
				break;
			/* a stale PKG step and all after it are built anew */
			if (stale)
				b->no_cache = true;
		}
		step_note(b, i, st, "");
		r = step_run(b, st, &l, e);
		if (r == 0)
			r = stack_push(b, l.id) < 0 ? ct_fail(e, ENOMEM, "out of memory") : 0;
		catalog_layer_clear(&l);
		b->built++;
	}
	if (r < 0)
		return r;
	snprintf(img.name, sizeof(img.name), "%s", b->image);
	snprintf(img.origin, sizeof(img.origin), "build %s", b->rcp->path);
	img.layers = b->stack;
	img.n_layers = b->n_stack;
	img.config = b->config;
	return catalog_image_put(b->s->cat, &img, e);
}

static const char build_usage[] =
	"usage: ctool build [-f FILE] [--no-cache] [--refresh] [--driver D] IMAGE\n"
	"  -f FILE      the recipe (default: Ctoolfile, else Pockerfile)\n"
	"  --no-cache   run every step again\n"
	"  --refresh    rebuild PKG steps (and what follows) whose packages the\n"
	"               archive has in other versions now\n"
	"  --driver D   run the steps with driver D (kernel or fuse)\n";

int cmd_build(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' }, { "no-cache", no_argument, NULL, 'n' },
		{ "refresh", no_argument, NULL, 'r' },    { "driver", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
	};
	struct build b = { .s = ctx->store, .env_lock = -1 };
	const char *file = NULL;
	_cleanup_close_ int slock = -1;
	struct ct_err e = { 0 };
	int64_t t0 = now_ms();
	size_t i;
	int c, r;

	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': file = optarg; break;
		case 'n': b.no_cache = true; break;
		case 'r': b.refresh = true; break;
		case 'D': b.driver = optarg; break;
		case 'h': fputs(build_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (optind != argc - 1)
		return cmd_usage_error("expected one IMAGE (see 'ctool build --help')");
	b.image = argv[optind];
	if (!cmd_check_name("image", b.image))
		return EXIT_USAGE;
	if (b.driver && driver_requested(b.driver, &b.driver, &e) < 0)
		return cmd_usage_error("%s", e.msg);
	if (!file)
		file = access("Ctoolfile", F_OK) < 0 && access("Pockerfile", F_OK) == 0
			       ? "Pockerfile"
			       : "Ctoolfile";
	r = recipe_parse(file, &b.rcp, &e);
	if (r < 0)
		return cmd_fail(&e);
	b.base = getenv("CTOOL_IMAGE");
	if (!b.base || !*b.base)
		b.base = "bookworm";
	if (b.rcp->n_steps && b.rcp->steps[0].op == RECIPE_FROM)
		b.base = b.rcp->steps[0].words[0];
	/* gc waits until the new layers are in an image */
	r = lock_name(ctx->store, "store", "layers", LOCK_SH, &slock, &e);
	if (r == 0) {
		build_clean_stale(ctx->store);
		r = sha256_new(&b.h, &e);
	}
	if (r == 0)
		r = build_run(&b, &e);
	if (b.env) {
		struct ct_err e2 = { 0 };

		if (env_off(b.s, b.env, true, 2000, &e2) < 0 || env_remove(b.s, b.env, &e2) < 0)
			log_warn("cannot remove the build env '%s': %s", b.env_name, e2.msg);
		env_free(b.env);
	}
	if (b.env_lock >= 0)
		(void)close(b.env_lock);
	if (r == 0)
		log_info("built '%s': %u step(s) run, %u cached, in %.1f s", b.image, b.built,
			 b.cached, (double)(now_ms() - t0) / 1000);
	sha256_free(b.h);
	recipe_free(b.rcp);
	free(b.stack);
	free(b.config);
	for (i = 0; i < b.n_envv; i++)
		free(b.envv[i]);
	free(b.envv);
	return r < 0 ? cmd_fail(&e) : 0;
}

int cmd_commit(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const char usage[] = "usage: ctool commit ENV IMAGE\n";
	struct catalog_image img = { 0 };
	struct catalog_layer l = { .size = -1 };
	_cleanup_free_ char(*layers)[37] = NULL;
	_cleanup_free_ char *config = NULL;
	_cleanup_close_ int lock = -1, slock = -1;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	size_t n = 0;
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc != 3)
		return cmd_usage_error("expected ENV and IMAGE (see 'ctool commit --help')");
	if (!cmd_check_name("image", argv[2]))
		return EXIT_USAGE;
	r = cmd_env_open(ctx, argv[1], NULL, &env, &lock);
	if (r)
		return r;
	if (env_is_on(env))
		r = ct_fail(&e, EBUSY, "env '%s' is on; turn it off first ('ctool off %s')",
			    argv[1], argv[1]);
	if (r == 0)
		r = lock_name(ctx->store, "store", "layers", LOCK_SH, &slock, &e);
	/* a commit cut short before is finished first */
	if (r == 0)
		r = env_finish_commit(ctx->store, env, &e);
	if (r == 0)
		r = catalog_env_layers(ctx->store->cat, env->row.id, &layers, &n, &e);
	if (r == 0)
		r = catalog_env_config(ctx->store->cat, env->row.id, &config, &e);
	if (r == 0 && n == 0)
		r = ct_fail(&e, ENOENT, "env '%s' has no layers", argv[1]);
	if (r == 0) {
		char(*v)[37] = realloc(layers, (n + 1) * sizeof(*v));

		if (!v) {
			r = ct_fail(&e, ENOMEM, "out of memory");
		} else {
			layers = v;
			uuid_new(l.id);
			memcpy(layers[n], l.id, sizeof(l.id));
			snprintf(l.origin, sizeof(l.origin), "commit of %s", argv[1]);
			snprintf(img.name, sizeof(img.name), "%s", argv[2]);
			snprintf(img.origin, sizeof(img.origin), "commit of %s", argv[1]);
			img.layers = layers;
			img.n_layers = n + 1;
			img.config = config;
			r = env_commit(ctx->store, env, &l, &img, &e);
		}
	}
	env_free(env);
	return r < 0 ? cmd_fail(&e) : 0;
}
