#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "debootstrap.h"
#include "mounts.h"
#include "util.h"

#ifndef DEBOOTSTRAP_PATH
#define DEBOOTSTRAP_PATH "/usr/sbin/debootstrap"
#endif

/* set by the signal handler while debootstrap runs */
static volatile sig_atomic_t debootstrap_interrupted;
static pid_t deboot_pid;

static void on_signal(int sig)
{
	debootstrap_interrupted = sig;
	if (deboot_pid > 0)
		(void)kill(-deboot_pid, SIGTERM);
}

/* First "URIs:" of a deb822 file, or the first "deb URL" line. */
static char *mirror_from(const char *path)
{
	_cleanup_free_ char *text = NULL;
	char *line, *save = NULL;

	if (read_file(path, &text, NULL) < 0)
		return NULL;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char url[512];

		while (*line == ' ' || *line == '\t')
			line++;
		if ((sscanf(line, "URIs: %511s", url) == 1 || sscanf(line, "deb %511s", url) == 1) &&
		    strstr(url, "://") && !strstr(url, "security") && !strstr(url, "[")) {
			return strdup(url);
		}
		/* "deb [signed-by=...] URL" */
		if (strncmp(line, "deb [", 5) == 0) {
			char *close = strchr(line, ']');

			if (close && sscanf(close + 1, " %511s", url) == 1 && strstr(url, "://") &&
			    !strstr(url, "security"))
				return strdup(url);
		}
	}
	return NULL;
}

char *debootstrap_host_mirror(void)
{
	char *m = mirror_from("/etc/apt/sources.list.d/debian.sources");
	DIR *d;
	struct dirent *de;

	if (!m)
		m = mirror_from("/etc/apt/sources.list");
	d = m ? NULL : opendir("/etc/apt/sources.list.d");
	while (d && !m && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		_cleanup_free_ char *p = NULL;

		if (!((n > 8 && strcmp(de->d_name + n - 8, ".sources") == 0) ||
		      (n > 5 && strcmp(de->d_name + n - 5, ".list") == 0)))
			continue;
		p = xasprintf("/etc/apt/sources.list.d/%s", de->d_name);
		if (p)
			m = mirror_from(p);
	}
	if (d)
		closedir(d);
	return m ? m : strdup("http://deb.debian.org/debian");
}

/* Show one debootstrap line: on a terminal rewrite a single status line,
 * otherwise print a line when the stage (first word) changes. */
static void show_line(const char *line, const struct debootstrap_opts *o, char *stage,
		      size_t stage_len, int *count)
{
	char word[32] = "";

	if (strncmp(line, "W: ", 3) == 0 || strncmp(line, "E: ", 3) == 0) {
		if (o->progress)
			fprintf(stderr, "\r\033[K");
		fprintf(stderr, "ctool: create: debootstrap: %s\n", line + 3);
		return;
	}
	if (strncmp(line, "I: ", 3) != 0 || o->quiet)
		return;
	sscanf(line + 3, "%31s", word);
	if (strcmp(word, stage) != 0) {
		snprintf(stage, stage_len, "%s", word);
		*count = 0;
		if (!o->progress)
			fprintf(stderr, "ctool: create: %s\n", line + 3);
	}
	(*count)++;
	if (o->progress) {
		struct winsize ws = { 0 };
		int width = 80;

		if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
			width = ws.ws_col;
		fprintf(stderr, "\r\033[Kcreate: [%d] %.*s", *count, width - 20, line + 3);
		fflush(stderr);
	}
}

int debootstrap_run(const char *target, const struct debootstrap_opts *o, struct ct_err *e)
{
	_cleanup_free_ char *mirror = o->mirror ? strdup(o->mirror) : debootstrap_host_mirror();
	_cleanup_free_ char *variant = xasprintf("--variant=%s", o->variant ? o->variant : "minbase");
	_cleanup_free_ char *include = o->include ? xasprintf("--include=%s", o->include) : NULL;
	char *argv[10];
	int argc = 0, pfd[2], status, r = 0;
	struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term, old_hup;
	char stage[32] = "", buf[4096], tail[8][256];
	int count = 0, ntail = 0;
	size_t have = 0;
	FILE *in;

	if (!mirror || !variant || (o->include && !include))
		return ct_fail(e, ENOMEM, "out of memory");
	argv[argc++] = (char *)"debootstrap";
	argv[argc++] = variant;
	if (include)
		argv[argc++] = include;
	argv[argc++] = (char *)(o->suite ? o->suite : "bookworm");
	argv[argc++] = (char *)target;
	argv[argc++] = mirror;
	argv[argc] = NULL;
	if (access(DEBOOTSTRAP_PATH, X_OK) < 0)
		return ct_fail(e, ENOENT, "debootstrap is not installed (apt-get install debootstrap)");
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return ct_fail_errno(e, errno, "cannot create a pipe");
	debootstrap_interrupted = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	fflush(NULL);
	deboot_pid = fork();
	if (deboot_pid < 0) {
		r = ct_fail_errno(e, errno, "cannot fork");
		(void)close(pfd[0]);
		(void)close(pfd[1]);
		goto out;
	}
	if (deboot_pid == 0) {
		char *envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
				 (char *)"DEBIAN_FRONTEND=noninteractive", NULL };

		(void)setpgid(0, 0);
		(void)dup2(pfd[1], 1);
		(void)dup2(pfd[1], 2);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execve(DEBOOTSTRAP_PATH, argv, envp);
		_exit(127);
	}
	(void)setpgid(deboot_pid, deboot_pid);
	(void)close(pfd[1]);
	in = fdopen(pfd[0], "r");
	while (in && fgets(buf + have, (int)(sizeof(buf) - have), in)) {
		size_t n = strlen(buf);

		if (n && buf[n - 1] != '\n' && n < sizeof(buf) - 1) {
			have = n;
			continue;
		}
		have = 0;
		if (n && buf[n - 1] == '\n')
			buf[n - 1] = '\0';
		snprintf(tail[ntail % 8], sizeof(tail[0]), "%s", buf);
		ntail++;
		show_line(buf, o, stage, sizeof(stage), &count);
	}
	if (in)
		fclose(in);
	while (waitpid(deboot_pid, &status, 0) < 0 && errno == EINTR)
		;
	deboot_pid = 0;
	if (o->progress)
		fprintf(stderr, "\r\033[K");
	if (debootstrap_interrupted) {
		r = ct_fail(e, EINTR, "interrupted");
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		int i, first = ntail > 8 ? ntail - 8 : 0;

		for (i = first; i < ntail; i++)
			fprintf(stderr, "ctool: create: debootstrap: %s\n", tail[i % 8]);
		r = ct_fail(e, EIO, "debootstrap failed (exit %d)",
			    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	{
		/* debootstrap mounts proc and sys in the target; a failure or an
		 * interruption can leave them */
		struct ct_err e2;

		(void)mounts_umount_all(target, true, &e2);
	}
out:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	return r;
}
