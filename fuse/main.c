/* ctool-overlayfs: options, layers, mount, daemon.
 *
 *   ctool-overlayfs [-f] [-d] [-o OPTIONS] [SOURCE] MOUNTPOINT
 *
 * OPTIONS: lowerdir=L1:L2 (L1 topmost), upperdir=U, workdir=W, volatile,
 * copyup_batch=MS, nopassthrough, pidfile=PATH, and the usual mount
 * options. Without -f it returns once the mount is ready and serves it in
 * the background until unmounted.
 * A failure is one line on stderr: "ctool-overlayfs: <reason>".
 */
#include "config.h"

#include <fcntl.h>
#include <fuse_log.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ovl.h"

#define PROG "ctool-overlayfs"

struct opts {
	bool foreground, debug;
	char *source, *mountpoint;
	char **lower;               /* topmost first */
	size_t nlower;
	char *upper, *work, *pidfile;
	bool nosync;
	bool nopassthrough;
	long batch_ms;              /* copyup_batch=MS; -1: the default */
	char *fuse_opts;            /* passed to libfuse */
};

/* The last message libfuse logged (it logs before failing). */
static char fuse_msg[256];
static bool fuse_debug;

static void log_cb(enum fuse_log_level level, const char *fmt, va_list ap)
{
	size_t n;

	if (fuse_debug) {
		(void)vfprintf(stderr, fmt, ap);
		return;
	}
	if (level > FUSE_LOG_ERR)
		return;
	(void)vsnprintf(fuse_msg, sizeof(fuse_msg), fmt, ap);
	n = strlen(fuse_msg);
	while (n && fuse_msg[n - 1] == '\n')
		fuse_msg[--n] = '\0';
}

/* The reason libfuse gave, without its "fuse: " prefix. */
static const char *fuse_reason(const char *fallback)
{
	if (!fuse_msg[0])
		return fallback;
	return strncmp(fuse_msg, "fuse: ", 6) ? fuse_msg : fuse_msg + 6;
}

/* Split s in place at unescaped `sep`, dropping the escapes of `\sep`,
 * `\,`, `\:` and `\\` in each piece only when unescape is set. Returns
 * the pieces (NULL-terminated, pointing into s) or NULL. */
static char **split_escaped(char *s, char sep, bool unescape, size_t *ret_n)
{
	size_t n = 1, i = 0;
	char **v, *p, *w;

	for (p = s; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == sep)
			n++;
	}
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	v[i++] = s;
	for (p = w = s; *p; p++) {
		if (*p == '\\' && p[1]) {
			if (!unescape)
				*w++ = *p;
			*w++ = *++p;
		} else if (*p == sep) {
			*w++ = '\0';
			v[i++] = w;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	*ret_n = n;
	return v;
}

/* Options of mount(8) and of the kernel overlay that mean nothing here. */
static bool opt_ignored(const char *k)
{
	static const char *const ign[] = {
		"nofail", "_netdev", "defaults", "auto", "noauto", "user", "users", "nouser",
		"owner", "group", "allow_other", "default_permissions", "nonempty",
		"auto_unmount", "index", "redirect_dir", "metacopy", "xino", "nfs_export",
		"uuid", "userxattr", "verity", "comment", "helper",
	};
	size_t i;

	if (!strncmp(k, "x-", 2))
		return true;
	for (i = 0; i < ARRAY_SIZE(ign); i++)
		if (!strcmp(k, ign[i]))
			return true;
	return false;
}

/* Mount options libfuse passes to the kernel. */
static bool opt_fuse(const char *k)
{
	static const char *const pass[] = {
		"ro", "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime",
		"noatime", "relatime", "norelatime", "strictatime", "nostrictatime",
		"diratime", "nodiratime", "sync", "async", "dirsync", "lazytime",
		"nolazytime", "max_read", "context", "fscontext", "defcontext", "rootcontext",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(pass); i++)
		if (!strcmp(k, pass[i]))
			return true;
	return false;
}

/* Append ",text" to *s. 0 or -ENOMEM. */
static int opt_append(char **s, const char *text)
{
	char *n = xasprintf("%s%s%s", *s ? *s : "", *s && **s ? "," : "", text);

	if (!n)
		return -ENOMEM;
	free(*s);
	*s = n;
	return 0;
}

/* Take one option (escapes still in) into o. 0 or -errno with *e set. */
static int opt_one(struct opts *o, char *opt, struct ct_err *e)
{
	char *eq = strchr(opt, '='), *val = eq ? eq + 1 : NULL;
	size_t n;
	char **v;

	if (eq)
		*eq = '\0';
	if (!strcmp(opt, "lowerdir") && val) {
		v = split_escaped(val, ':', true, &n);
		if (!v)
			return ct_fail(e, ENOMEM, "out of memory");
		free(o->lower);
		o->lower = v;
		o->nlower = n;
		return 0;
	}
	if ((!strcmp(opt, "upperdir") || !strcmp(opt, "workdir") || !strcmp(opt, "pidfile")) &&
	    val) {
		char **dst = opt[0] == 'u' ? &o->upper : opt[0] == 'w' ? &o->work : &o->pidfile;
		char **one = split_escaped(val, '\0', true, &n);

		if (!one)
			return ct_fail(e, ENOMEM, "out of memory");
		*dst = one[0];
		free(one);
		return 0;
	}
	if (!strcmp(opt, "copyup_batch") && val) {
		char *end;

		errno = 0;
		o->batch_ms = strtol(val, &end, 10);
		if (errno || end == val || *end || o->batch_ms < 0 || o->batch_ms > 60000)
			return ct_fail(e, EINVAL, "copyup_batch takes 0 to 60000 (ms), not '%s'",
				       val);
		return 0;
	}
	if (!strcmp(opt, "volatile")) {
		o->nosync = true;
		return 0;
	}
	if (!strcmp(opt, "nopassthrough") || !strcmp(opt, "passthrough")) {
		o->nopassthrough = opt[0] == 'n';
		return 0;
	}
	if (opt_ignored(opt))
		return 0;
	if (opt_fuse(opt)) {
		if (eq)
			*eq = '=';
		return opt_append(&o->fuse_opts, opt) < 0 ? ct_fail(e, ENOMEM, "out of memory") : 0;
	}
	return ct_fail(e, EINVAL, "unknown option '%s'", opt);
}

/* Parse one -o argument (comma separated, escapes as the kernel's). */
static int opts_parse_o(struct opts *o, char *arg, struct ct_err *e)
{
	size_t n, i;
	char **v = split_escaped(arg, ',', false, &n);
	int r = 0;

	if (!v)
		return ct_fail(e, ENOMEM, "out of memory");
	for (i = 0; r == 0 && i < n; i++)
		if (v[i][0])
			r = opt_one(o, v[i], e);
	free(v);
	return r;
}

/* Parse the command line into o. 0, 1 for --help, or -errno with *e. */
static int opts_parse(struct opts *o, int argc, char **argv, struct ct_err *e)
{
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	while ((c = getopt_long(argc, argv, "fdso:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = o->foreground = true;
			break;
		case 's':
			break; /* single-threaded was asked: several threads are fine */
		case 'o':
			r = opts_parse_o(o, optarg, e);
			if (r < 0)
				return r;
			break;
		case 'h':
			return 1;
		default:
			return ct_fail(e, EINVAL, "bad usage (see --help)");
		}
	}
	if (argc - optind == 2) {
		o->source = argv[optind];
		o->mountpoint = argv[optind + 1];
	} else if (argc - optind == 1) {
		o->mountpoint = argv[optind];
	} else {
		return ct_fail(e, EINVAL, "expected [SOURCE] MOUNTPOINT");
	}
	if (!o->nlower || !o->lower[0][0])
		return ct_fail(e, EINVAL, "no lowerdir given");
	if (!o->upper != !o->work)
		return ct_fail(e, EINVAL, "upperdir and workdir go together");
	return 0;
}

static int open_dir(const char *what, const char *path, struct ct_err *e)
{
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return ct_fail_errno(e, errno, "cannot open %s '%s'", what, path);
	return fd;
}

/* Prepare workdir/work (emptied: leftovers of a crash, after the copies
 * a daemon that died left waiting are shown) and the index. */
static int work_prepare(struct ovl_fs *fs, int wfd, const char *path, struct ct_err *e)
{
	struct ct_err ign;
	int r, wk;

	wk = openat(wfd, OVL_WORK_NAME, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	pend_recover(fs, wk);
	if (wk >= 0)
		(void)close(wk);
	r = rm_tree_onefs(wfd, OVL_WORK_NAME, &ign);
	if (r < 0)
		return ct_fail(e, -r, "cannot clean the workdir: %s", ign.msg);
	if (mkdirat(wfd, OVL_WORK_NAME, 0700) < 0)
		return ct_fail_errno(e, errno, "cannot create '%s/%s'", path, OVL_WORK_NAME);
	if (mkdirat(wfd, OVL_INDEX_NAME, 0700) < 0 && errno != EEXIST)
		return ct_fail_errno(e, errno, "cannot create '%s/%s'", path, OVL_INDEX_NAME);
	fs->workfd = openat(wfd, OVL_WORK_NAME, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	fs->indexfd = openat(wfd, OVL_INDEX_NAME, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fs->workfd < 0 || fs->indexfd < 0)
		return ct_fail_errno(e, errno, "cannot open the workdir '%s'", path);
	return 0;
}

/* Open the layers and the workdir into fs. 0 or -errno with *e set. */
static int layers_open(struct ovl_fs *fs, const struct opts *o, struct ct_err *e)
{
	_cleanup_close_ int wfd = -1;
	struct stat su, sw;
	size_t i;
	int r;

	fs->nlayers = (int)o->nlower + 1;
	fs->layers = calloc((size_t)fs->nlayers, sizeof(*fs->layers));
	if (!fs->layers)
		return ct_fail(e, ENOMEM, "out of memory");
	fs->workfd = fs->indexfd = fs->wdirfd = fs->layers[0].fd = -1;
	for (i = 0; i < o->nlower; i++) {
		fs->layers[i + 1].path = o->lower[i];
		fs->layers[i + 1].fd = open_dir("lowerdir", o->lower[i], e);
		if (fs->layers[i + 1].fd < 0)
			return fs->layers[i + 1].fd;
	}
	if (!o->upper) {
		fs->readonly = true;
		return 0;
	}
	fs->layers[0].path = o->upper;
	fs->layers[0].fd = open_dir("upperdir", o->upper, e);
	if (fs->layers[0].fd < 0)
		return fs->layers[0].fd;
	wfd = open_dir("workdir", o->work, e);
	if (wfd < 0)
		return wfd;
	if (fstat(fs->layers[0].fd, &su) < 0 || fstat(wfd, &sw) < 0)
		return ct_fail_errno(e, errno, "cannot stat the upperdir");
	if (su.st_dev != sw.st_dev)
		return ct_fail(e, EXDEV, "upperdir and workdir must be on the same filesystem");
	if (su.st_ino == sw.st_ino)
		return ct_fail(e, EINVAL, "upperdir and workdir must differ");
	pend_init(fs, wfd, o->batch_ms < 0 ? PEND_MS_DEFAULT : (unsigned int)o->batch_ms);
	r = work_prepare(fs, wfd, o->work, e);
	if (r < 0)
		return r;
	fs->wdirfd = TAKE_FD(wfd);
	layer_probe(fs);
	return 0;
}

/* Write our pid to o->pidfile (0644, atomically). 0 or -errno, *e set. */
static int pidfile_write(const struct opts *o, struct ct_err *e)
{
	char buf[32];
	int r, n;

	if (!o->pidfile)
		return 0;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	r = write_file_atomic(o->pidfile, buf, (size_t)n, 0644);
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot write the pidfile '%s'", o->pidfile);
	return 0;
}

/* Remove the pidfile at exit when it still names us. */
static void pidfile_remove(const struct opts *o)
{
	_cleanup_free_ char *s = NULL;
	size_t len;

	if (o->pidfile && read_file(o->pidfile, &s, &len) == 0 && atoi(s) == (int)getpid())
		(void)unlink(o->pidfile);
}

/* The libfuse argument vector: our mount options, then the user's. */
static int fuse_args_make(const struct opts *o, const struct ovl_fs *fs, struct fuse_args *args)
{
	_cleanup_free_ char *mo = NULL, *src = NULL;
	const char *s = o->source ? o->source : "ctool";
	char *w;

	src = malloc(strlen(s) * 2 + 1);
	if (!src)
		return -ENOMEM;
	for (w = src; *s; s++) {
		if (*s == ',' || *s == '\\')
			*w++ = '\\';
		*w++ = *s;
	}
	*w = '\0';
	mo = xasprintf("fsname=%s,subtype=ctool-overlayfs,allow_other,default_permissions%s%s%s",
		       src, fs->readonly ? ",ro" : "", o->fuse_opts ? "," : "",
		       o->fuse_opts ? o->fuse_opts : "");
	if (!mo)
		return -ENOMEM;
	if (fuse_opt_add_arg(args, PROG) || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, mo) || (o->debug && fuse_opt_add_arg(args, "-d")))
		return -ENOMEM;
	return 0;
}

/* Mount the session on o->mountpoint (a /proc/self/fd/N path is
 * followed by mount(2), and fd N closed after). 0 or -errno, *e set. */
static int do_mount(struct ovl_fs *fs, const struct opts *o, struct ct_err *e)
{
	struct stat st;
	int fdn;

	if (stat(o->mountpoint, &st) < 0)
		return ct_fail_errno(e, errno, "cannot use mountpoint '%s'", o->mountpoint);
	if (!S_ISDIR(st.st_mode))
		return ct_fail(e, ENOTDIR, "mountpoint '%s' is not a directory", o->mountpoint);
	fuse_msg[0] = '\0';
	if (fuse_session_mount(fs->se, o->mountpoint) != 0)
		return ct_fail(e, EIO, "cannot mount on '%s': %s", o->mountpoint,
			       fuse_reason("mount failed"));
	if (sscanf(o->mountpoint, "/proc/self/fd/%d", &fdn) == 1 && fdn > 2)
		(void)close(fdn);
	return 0;
}

/* Fork; the parent waits until the child reports ready (a 0 byte) or a
 * failure (a message), and exits accordingly. Returns in the child with
 * the write end of the pipe in *ret_fd. */
static int daemonize(int *ret_fd, struct ct_err *e)
{
	char buf[300];
	int p[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return ct_fail_errno(e, errno, "cannot make a pipe");
	pid = fork();
	if (pid < 0)
		return ct_fail_errno(e, errno, "cannot fork");
	if (pid == 0) {
		(void)close(p[0]);
		(void)setsid();
		*ret_fd = p[1];
		return 0;
	}
	(void)close(p[1]);
	while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = '\0';
	if (got >= 1 && buf[0] == '\0')
		_exit(0);
	(void)waitpid(pid, &status, 0);
	(void)fprintf(stderr, PROG ": %s\n", got ? buf : "the daemon died while starting");
	_exit(1);
}

/* In the daemon: stdio to /dev/null (stderr kept with -d). */
static void detach_stdio(bool debug)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	(void)dup2(fd, 0);
	(void)dup2(fd, 1);
	if (!debug)
		(void)dup2(fd, 2);
	if (fd > 2)
		(void)close(fd);
	(void)chdir("/");
}

/* Serve requests until unmounted, with the node reclaimer beside (without
 * it, a daemon that cannot start a thread still serves). */
static int serve(struct ovl_fs *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int r;

	(void)nodes_reclaim_start(fs);
	(void)pend_start(fs);
	if (!cfg) {
		r = fuse_session_loop(fs->se);
	} else {
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		fuse_loop_cfg_set_idle_threads(cfg, 4);
		fuse_loop_cfg_set_max_threads(cfg, 16);
		r = fuse_session_loop_mt(fs->se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	nodes_reclaim_stop(fs);
	pend_stop(fs);
	return r;
}

/* Every node holds an fd and so does every open file: take as many fds
 * as the system lets one process have. With CAP_SYS_RESOURCE (root) the
 * hard limit is raised to fs.nr_open (1,048,576 by default), else the
 * soft limit to the hard one. Said with -d when that stays low. */
static void nofile_raise(bool debug)
{
	_cleanup_free_ char *s = NULL;
	struct rlimit rl;
	size_t len;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (read_file("/proc/sys/fs/nr_open", &s, &len) == 0) {
		rlim_t most = strtoull(s, NULL, 10);
		struct rlimit up = { most, most };

		if (most > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (debug && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536)
		(void)fprintf(stderr, PROG ": open files limited to %llu\n",
			      (unsigned long long)rl.rlim_cur);
}

static void usage(void)
{
	(void)printf("usage: " PROG " [-f] [-d] [-o OPTIONS] [SOURCE] MOUNTPOINT\n"
		     "options: lowerdir=L1:L2:..., upperdir=U, workdir=W, volatile,\n"
		     "         copyup_batch=MS, nopassthrough, pidfile=PATH,\n"
		     "         and mount options (ro, noexec, ...)\n");
}

/* Everything up to a served mount; returns the exit status. */
static int run(struct opts *o, struct ovl_fs *fs)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct ct_err e = { 0 };
	int ready = -1, r;

	r = layers_open(fs, o, &e);
	if (r == 0)
		r = nodes_init(fs) < 0 ? ct_fail(&e, ENOMEM, "out of memory") : 0;
	if (r == 0 && fuse_args_make(o, fs, &args) < 0)
		r = ct_fail(&e, ENOMEM, "out of memory");
	if (r == 0) {
		fs->se = fuse_session_new(&args, &ovl_ops, sizeof(ovl_ops), fs);
		if (!fs->se)
			r = ct_fail(&e, EINVAL, "%s", fuse_reason("cannot start the session"));
	}
	if (r == 0 && fuse_set_signal_handlers(fs->se) != 0)
		r = ct_fail(&e, EIO, "cannot set signal handlers");
	if (r == 0)
		r = do_mount(fs, o, &e);
	/* without the hooks, neither passthrough nor O_TMPFILE (EOPNOTSUPP) */
	if (r == 0 && wire_setup(fs) < 0)
		fs->pt_want = false;
	if (r < 0) {
		(void)fprintf(stderr, PROG ": %s\n", e.msg);
		fuse_opt_free_args(&args);
		return 1;
	}
	if (!o->foreground && daemonize(&ready, &e) < 0)
		goto fail;
	if (pidfile_write(o, &e) < 0)
		goto fail;
	if (ready >= 0) {
		detach_stdio(o->debug);
		(void)write(ready, "", 1);
		(void)close(ready);
	}
	r = serve(fs);
	fuse_session_unmount(fs->se);
	pidfile_remove(o);
	fuse_remove_signal_handlers(fs->se);
	fuse_session_destroy(fs->se);
	fuse_opt_free_args(&args);
	return r == 0 ? 0 : 1;
fail:
	fuse_session_unmount(fs->se);
	if (ready >= 0)
		(void)write(ready, e.msg, strlen(e.msg));
	else
		(void)fprintf(stderr, PROG ": %s\n", e.msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct opts o = { .batch_ms = -1 };
	struct ovl_fs fs = { 0 };
	struct ct_err e = { 0 };
	int r;

	umask(0);
	r = opts_parse(&o, argc, argv, &e);
	if (r == 1) {
		usage();
		return 0;
	}
	if (r < 0) {
		(void)fprintf(stderr, PROG ": %s\n", e.msg);
		return 2;
	}
	fuse_debug = o.debug;
	fuse_set_log_func(log_cb);
	nofile_raise(o.debug);
	fs.nosync = o.nosync;
	fs.pt_want = !o.nopassthrough;
	fs.debug = o.debug;
	fs.timeout = 3600.0;
	r = run(&o, &fs);
	pend_free(&fs);
	nodes_free(&fs);
	return r;
}
