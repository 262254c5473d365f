/* ctool start / logs: pocker's services. An env's start command (its
 * image's RUN, else /chroot.d/start) runs inside it, detached, with its
 * output appended to a log on the host side (env.h: ENV_SERVICE_LOG). */
#include "config.h"

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "driver.h"
#include "exec.h"
#include "log.h"
#include "util.h"

/* A service still there this long after its start counts as started. */
#define START_WAIT_MS 100

static const char start_usage[] =
	"usage: ctool start [NAME | -d DIR] [-v HOST:TARGET[:ro]]... [--host-dev]\n"
	"                   [--driver kernel|fuse]\n";
static const char logs_usage[] = "usage: ctool logs [NAME | -d DIR] [-f]\n";

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

/* Warn in one line about the image's VOLUMEs that no bind serves:
 * what the service writes there stays in the env's layer, and reset or
 * rm throws it away. */
static void warn_unbound(struct cmd_ctx *ctx, const struct env *env, const struct env_config *c)
{
	struct catalog_bind *binds = NULL;
	_cleanup_free_ char *list = NULL;
	struct ct_err e = { 0 };
	size_t n = 0, i, j, count = 0;

	if (c->n_volumes == 0 || env_binds(ctx->store, env, &binds, &n, &e) < 0)
		goto out;
	for (i = 0; i < c->n_volumes; i++) {
		char *more;

		for (j = 0; j < n; j++) {
			_cleanup_free_ char *tgt = path_clean_abs(binds[j].tgt);

			if (tgt && path_is_under(c->volumes[i], tgt))
				break;
		}
		if (j < n)
			continue;
		more = xasprintf("%s%s'%s'", list ? list : "", list ? ", " : "", c->volumes[i]);
		if (!more)
			goto out;
		free(list);
		list = more;
		count++;
	}
	if (list)
		log_warn("env '%s': no bind serves the image's volume%s %s: what is written "
			 "there stays in the env's layer (give -v HOST:TARGET)",
			 env->row.name, count > 1 ? "s" : "", list);
out:
	free(binds);
}

/* Fork the service: a new session, stdin from /dev/null, stdout and
 * stderr appended to log, no other fd of ctool's; the child enters the
 * env as 'run' does. *ret_pid is the child, which this process may wait
 * for. */
static int service_spawn(const struct exec_opts *xo, const char *log, pid_t *ret_pid,
			 struct ct_err *e)
{
	_cleanup_close_ int logfd = -1, nullfd = -1;
	sigset_t none;
	pid_t pid;

	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (logfd < 0)
		return ct_fail_errno(e, errno, "cannot open '%s'", log);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nullfd < 0)
		return ct_fail_errno(e, errno, "cannot open /dev/null");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return ct_fail_errno(e, errno, "cannot fork");
	if (pid == 0) {
		if (setsid() < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(125);
		/* nothing of ctool's (its lock, the catalog, a caller's pipe)
		 * may outlive the exec */
		(void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		/* nor its signal state: the service gets TERM and HUP */
		(void)sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		exec_replace(xo);
	}
	*ret_pid = pid;
	return 0;
}

/* Wait START_WAIT_MS for the service pid to die at once. 0 when it runs
 * on; else -ECHILD with *e naming its exit status and log. */
static int service_settle(const struct env *env, pid_t pid, const char *log, struct ct_err *e)
{
	int waited, ws;

	for (waited = 0; waited < START_WAIT_MS; waited += 5) {
		pid_t r = waitpid(pid, &ws, WNOHANG);

		if (r == pid) {
			if (WIFSIGNALED(ws))
				return ct_fail(e, ECHILD, "the service of env '%s' was killed by "
					       "signal %d at once; see its log '%s'",
					       env->row.name, WTERMSIG(ws), log);
			return ct_fail(e, ECHILD, "the service of env '%s' exited at once with "
				       "status %d; see its log '%s'",
				       env->row.name, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, log);
		}
		if (r < 0 && errno != EINTR)
			return ct_fail_errno(e, errno, "cannot wait for the service of env '%s'",
					     env->row.name);
		sleep_ms(5);
	}
	return 0;
}

struct start_args {
	const char *dir;
	struct env_bind binds[64];
	struct env_on_opts on;
};

/* Parse start's options; 0, -1 after --help, or an exit code. */
static int start_parse(int argc, char **argv, struct start_args *a)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },  { "host-dev", no_argument, NULL, 'D' },
		{ "volume", required_argument, NULL, 'v' }, { "help", no_argument, NULL, 'h' },
		{ "driver", required_argument, NULL, 'R' }, { NULL, 0, NULL, 0 },
	};
	int c, r;

	a->on.binds = a->binds;
	while ((c = getopt_long(argc, argv, "d:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': a->dir = optarg; break;
		case 'D': a->on.host_dev = true; break;
		case 'R':
			if (!driver_is_valid(optarg))
				return cmd_usage_error("no driver named '%s' (kernel or fuse)", optarg);
			a->on.driver = optarg;
			break;
		case 'v':
			if (a->on.n_binds >= ARRAY_SIZE(a->binds))
				return cmd_usage_error("too many -v");
			r = cmd_parse_volume(optarg, &a->binds[a->on.n_binds++]);
			if (r)
				return r;
			break;
		case 'h': fputs(start_usage, stdout); return -1;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (a->dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool start --help')");
	return 0;
}

/* Turn the env on when needed and start its service. Returns 0, or an
 * exit code after logging. */
static int start_env(struct cmd_ctx *ctx, struct env *env, const struct start_args *a)
{
	char *sh_argv[] = { (char *)"/bin/sh", (char *)"-c", NULL, NULL };
	char *hook_argv[] = { (char *)"/chroot.d/start", NULL };
	_cleanup_free_ char *log = xasprintf("%s/" ENV_SERVICE_LOG, env->dir);
	struct env_config c = { 0 };
	struct exec_opts xo = { 0 };
	struct ct_err e = { 0 };
	pid_t pid = env_service_pid(env->dir);
	bool was_on;
	int r;

	if (!log)
		return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
	if (pid > 0) {
		log_error("env '%s' is already running its service (pid %d)", env->row.name,
			  (int)pid);
		return 1;
	}
	r = env_config_load(ctx->store, env, &c, &e);
	if (r < 0)
		return cmd_fail(&e);
	was_on = env_is_on(env) && env->row.want_on;
	if (!was_on || a->on.n_binds) {
		r = env_on(ctx->store, env, &a->on, &e);
		if (r < 0)
			goto fail;
	} else {
		env_record_on(ctx->store, env); /* on before the record existed */
	}
	sh_argv[2] = c.run;
	if (c.run) {
		xo.argv = sh_argv;
	} else if (env_has_file(env, "/chroot.d/start", true)) {
		xo.argv = hook_argv;
	} else {
		/* nothing started: leave the env as it was */
		if (!was_on && env_off(ctx->store, env, false, 5000, &e) < 0)
			log_warn("%s", e.msg);
		log_error("env '%s' has no start command (RUN in its image, or /chroot.d/start)",
			  env->row.name);
		env_config_clear(&c);
		return 1;
	}
	warn_unbound(ctx, env, &c);
	r = env_host_cmd(env, xo.argv, &e);
	if (r < 0)
		goto fail;
	xo.root = env->root;
	xo.env = c.envs;
	r = service_spawn(&xo, log, &pid, &e);
	if (r < 0)
		goto fail;
	/* recorded at once: an interrupted start leaves a service that
	 * 'off' and 'list' know of */
	r = env_service_record(env->dir, pid, &e);
	if (r == 0)
		r = service_settle(env, pid, log, &e);
	if (r < 0) {
		env_service_forget(env->dir);
		goto fail;
	}
	log_debug("env '%s': service started, pid %d, log '%s'", env->row.name, (int)pid, log);
	env_config_clear(&c);
	return 0;
fail:
	env_config_clear(&c);
	return cmd_fail(&e);
}

int cmd_start(int argc, char **argv, struct cmd_ctx *ctx)
{
	struct start_args a = { 0 };
	struct env *env = NULL;
	_cleanup_close_ int lock = -1;
	int r = start_parse(argc, argv, &a);

	if (r)
		return r < 0 ? 0 : r;
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, a.dir, &env, &lock);
	if (r)
		return r;
	r = start_env(ctx, env, &a);
	env_free(env);
	return r;
}

/* Copy what fd holds from its offset on to stdout. */
static int copy_out(int fd, struct ct_err *e)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf)), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ct_fail_errno(e, errno, "cannot read the log");
		if (n == 0)
			return 0;
		while (off < n) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return ct_fail_errno(e, errno, "cannot write the output");
			off += w;
		}
	}
}

/* Print what is added to the log at fd while the service of the env in
 * dir runs; return once it has ended and its last words are out. */
static int follow(int fd, const char *log, const char *dir, struct ct_err *e)
{
	pid_t pid = env_service_pid(dir);
	_cleanup_close_ int pidfd = -1, ino = -1;
	int r;

	if (pid <= 0)
		return 0;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	/* the pid may have been reused between the check and the open */
	if (pidfd < 0 || env_service_pid(dir) != pid)
		return copy_out(fd, e);
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ino < 0 || inotify_add_watch(ino, log, IN_MODIFY) < 0)
		return ct_fail_errno(e, errno, "cannot watch '%s'", log);
	for (;;) {
		struct pollfd p[2] = { { .fd = ino, .events = POLLIN },
				       { .fd = pidfd, .events = POLLIN } };
		char drain[4096];
		struct stat st;

		/* emptied behind us (': > LOG'): start again from its top */
		if (fstat(fd, &st) == 0 && st.st_size < lseek(fd, 0, SEEK_CUR))
			(void)lseek(fd, 0, SEEK_SET);
		r = copy_out(fd, e);
		if (r < 0)
			return r;
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return ct_fail_errno(e, errno, "cannot wait for the log");
		if (p[1].revents)
			return copy_out(fd, e);
		while (read(ino, drain, sizeof(drain)) > 0)
			;
	}
}

int cmd_logs(int argc, char **argv, struct cmd_ctx *ctx)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' }, { "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },      { NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool follow_ = false;
	struct env *env = NULL;
	struct ct_err e = { 0 };
	_cleanup_free_ char *log = NULL;
	_cleanup_close_ int lock = -1, fd = -1;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'f': follow_ = true; break;
		case 'h': fputs(logs_usage, stdout); return 0;
		default: return cmd_bad_option(argv);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		return cmd_usage_error("expected one env (see 'ctool logs --help')");
	r = cmd_env_open(ctx, optind < argc ? argv[optind] : NULL, dir, &env, &lock);
	if (r)
		return r;
	/* reading needs no lock: 'off' must not wait for a 'logs -f' */
	(void)close(TAKE_FD(lock));
	log = xasprintf("%s/" ENV_SERVICE_LOG, env->dir);
	if (!log) {
		env_free(env);
		return cmd_fail(&(struct ct_err){ ENOMEM, "out of memory" });
	}
	fd = open(log, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			log_error("env '%s' has no service log yet ('ctool start %s' makes it)",
				  env->row.name, env->row.name);
		else
			log_error("cannot open '%s': %s", log, strerror(errno));
		env_free(env);
		return 1;
	}
	r = copy_out(fd, &e);
	if (r == 0 && follow_)
		r = follow(fd, log, env->dir, &e);
	env_free(env);
	return r < 0 ? cmd_fail(&e) : 0;
}
