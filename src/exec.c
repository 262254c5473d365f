#include "config.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "exec.h"
#include "util.h"

extern char **environ;


static pid_t child_pid;

static void forward_signal(int sig)
{
	if (child_pid > 0)
		(void)kill(child_pid, sig);
}

static int status_of(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 125;
}

/* In the child: report and exit the way a shell would. */
static void __attribute__((noreturn)) child_die(int code, const char *what, int err)
{
	dprintf(2, "ctool: run: %s: %s\n", what, strerror(err));
	_exit(code);
}

/* Look the user up in the env's own files (we are chrooted): fgetpwent
 * parses the file directly, so no NSS module of the env is loaded into
 * this privileged process. */
static void child_set_user(const char *user, const char **home, const char **name)
{
	FILE *f;
	struct passwd *pw, found;
	struct group *gr;
	gid_t groups[64];
	int ng = 0;
	char *end;
	long uid = strtol(user, &end, 10);
	bool numeric = *user && !*end;

	f = fopen("/etc/passwd", "re");
	memset(&found, 0, sizeof(found));
	found.pw_uid = (uid_t)-1;
	while (f && (pw = fgetpwent(f))) {
		if (numeric ? pw->pw_uid == (uid_t)uid : strcmp(pw->pw_name, user) == 0) {
			found = *pw;
			found.pw_name = strdup(pw->pw_name);
			found.pw_dir = strdup(pw->pw_dir);
			break;
		}
	}
	if (f)
		fclose(f);
	if (found.pw_uid == (uid_t)-1) {
		if (!numeric) {
			dprintf(2, "ctool: run: no user '%s' in the env\n", user);
			_exit(125);
		}
		found.pw_uid = (uid_t)uid;
		found.pw_gid = (gid_t)uid;
		found.pw_dir = (char *)"/";
		found.pw_name = (char *)user;
	}
	groups[ng++] = found.pw_gid;
	f = fopen("/etc/group", "re");
	while (f && (gr = fgetgrent(f)) && ng < (int)ARRAY_SIZE(groups)) {
		char **m;

		for (m = gr->gr_mem; m && *m; m++)
			if (strcmp(*m, found.pw_name) == 0 && gr->gr_gid != found.pw_gid)
				groups[ng++] = gr->gr_gid;
	}
	if (f)
		fclose(f);
	if (setgroups((size_t)ng, groups) < 0 || setgid(found.pw_gid) < 0 ||
	    setuid(found.pw_uid) < 0)
		child_die(125, "cannot change user", errno);
	*home = found.pw_dir;
	*name = found.pw_name;
}

static void child_build_env(const struct exec_opts *o, const char *home, const char *user)
{
	static char *empty[] = { NULL };
	const char *term = getenv("TERM");
	char **e;

	environ = empty;
	(void)setenv("PATH", ENV_PATH, 1);
	(void)setenv("HOME", home, 1);
	(void)setenv("USER", user, 1);
	(void)setenv("LOGNAME", user, 1);
	if (term)
		(void)setenv("TERM", term, 1);
	for (e = o->env; e && *e; e++)
		(void)putenv(*e);
}

static void __attribute__((noreturn)) child_run(const struct exec_opts *o, char **host_env)
{
	const char *home = "/root", *user = "root";
	char **e;

	/* entries "K" take K from the host before the environment is cleared */
	for (e = o->env; e && *e; e++) {
		if (!strchr(*e, '=')) {
			char **h;
			size_t kl = strlen(*e);

			for (h = host_env; h && *h; h++)
				if (strncmp(*h, *e, kl) == 0 && (*h)[kl] == '=')
					*e = *h;
		}
	}
	if (o->stdout_fd > 2 && dup2(o->stdout_fd, 1) < 0)
		child_die(125, "cannot set the command's output", errno);
	if (chdir(o->root) < 0 || chroot(".") < 0)
		child_die(125, "cannot enter the env", errno);
	if (o->user)
		child_set_user(o->user, &home, &user);
	child_build_env(o, home, user);
	if (chdir(o->cwd ? o->cwd : (o->user ? home : "/")) < 0) {
		if (o->cwd)
			child_die(125, o->cwd, errno);
		(void)chdir("/");
	}
	signal(SIGINT, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (o->path_lookup)
		execvp(o->argv[0], o->argv);
	else
		execv(o->argv[0], o->argv);
	child_die(errno == ENOENT ? 127 : 126, o->argv[0], errno);
}

/* Wait for pid with INT/QUIT ignored (they reach the child through the
 * terminal) and TERM/HUP forwarded. */
static int wait_child(pid_t pid, int *ret_status, struct ct_err *e)
{
	struct sigaction fwd = { .sa_handler = forward_signal }, ign = { .sa_handler = SIG_IGN };
	struct sigaction old_int, old_quit, old_term, old_hup;
	int ws, r = 0;

	child_pid = pid;
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	sigaction(SIGTERM, &fwd, &old_term);
	sigaction(SIGHUP, &fwd, &old_hup);
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			r = ct_fail_errno(e, errno, "cannot wait for the command");
			break;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	child_pid = 0;
	if (r == 0)
		*ret_status = status_of(ws);
	return r;
}

int exec_in_env(const struct exec_opts *o, int *ret_status, struct ct_err *e)
{
	struct timespec tick = { 0, 10 * 1000000L };
	int waited = 0, ws;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return ct_fail_errno(e, errno, "cannot fork");
	if (pid == 0)
		child_run(o, environ);
	if (o->timeout_ms <= 0)
		return wait_child(pid, ret_status, e);
	for (;;) {
		pid_t r = waitpid(pid, &ws, WNOHANG);

		if (r == pid) {
			*ret_status = status_of(ws);
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return ct_fail_errno(e, errno, "cannot wait for '%s'", o->argv[0]);
		if (waited >= o->timeout_ms) {
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &ws, 0);
			return ct_fail(e, ETIMEDOUT, "'%s' did not finish in %d s; killed", o->argv[0],
				       o->timeout_ms / 1000);
		}
		(void)nanosleep(&tick, NULL);
		waited += 10;
	}
}

void exec_replace(const struct exec_opts *o)
{
	fflush(NULL);
	child_run(o, environ);
}

int exec_on_host(const char *path, char *const *argv, char *const *envp, int *ret_status,
		 struct ct_err *e)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return ct_fail_errno(e, errno, "cannot fork");
	if (pid == 0) {
		execve(path, argv, envp);
		child_die(errno == ENOENT ? 127 : 126, path, errno);
	}
	return wait_child(pid, ret_status, e);
}

int copy_tree(const char *from, const char *to, struct ct_err *e)
{
	char *argv[] = { (char *)"cp", (char *)"-a", (char *)"--reflink=auto",
			 (char *)"--no-target-directory", (char *)from, (char *)to, NULL };
	char *envp[] = { (char *)"PATH=/usr/bin:/bin", (char *)"LC_ALL=C", NULL };
	int status, r;

	r = exec_on_host("/bin/cp", argv, envp, &status, e);
	if (r < 0)
		return r;
	if (status != 0)
		return ct_fail(e, EIO, "cannot copy '%s' to '%s' (cp exited with %d)", from, to,
			       status);
	return 0;
}
