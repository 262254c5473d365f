#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dispatch.h"
#include "recipe.h"
#include "util.h"

static const struct {
	const char *name;
	enum recipe_op op;
} ops[] = {
	{ "PROOT", RECIPE_PROOT }, { "FROM", RECIPE_FROM },	{ "PKG", RECIPE_PKG },
	{ "EXEC", RECIPE_EXEC },   { "COPY", RECIPE_COPY },	{ "ENV", RECIPE_ENV },
	{ "VOLUME", RECIPE_VOLUME }, { "RUN", RECIPE_RUN },
};

/* A logical line: continuations joined; pos[i] is where byte i of text
 * stood in the file (line << 20 | column, both from 1). */
struct lline {
	char *text;
	unsigned *pos;
	size_t len, cap;
};

static int lline_push(struct lline *l, char c, unsigned line, unsigned col)
{
	if (l->len + 1 >= l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		char *t = realloc(l->text, cap);
		unsigned *p;

		if (!t)
			return -ENOMEM;
		l->text = t;
		p = realloc(l->pos, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->pos = p;
		l->cap = cap;
	}
	l->pos[l->len] = line << 20 | (col & 0xfffff);
	l->text[l->len++] = c;
	l->text[l->len] = '\0';
	return 0;
}

/* Fail with "name:LINE:COL: msg" for byte i of the logical line. */
static int __attribute__((format(printf, 5, 6)))
syntax_error(struct ct_err *e, const char *name, const struct lline *l, size_t i,
	     const char *fmt, ...)
{
	unsigned p = l->len ? l->pos[i < l->len ? i : l->len - 1] : 0;
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ct_fail(e, EINVAL, "%s:%u:%u: %s", name, p >> 20, p & 0xfffff, msg);
}

static bool env_key_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

static bool pkg_valid(const char *s)
{
	if (!isalnum((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(".+:=~_/-", *s))
			return false;
	return true;
}

/* Has path a ".." component? */
static bool has_dotdot(const char *p)
{
	size_t n;

	while (*p) {
		n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
		p += strspn(p, "/");
	}
	return false;
}

/* Check step s (its words split) of logical line l; arg_at is where its
 * argument starts in l. */
static int step_check(const char *name, const struct lline *l, size_t arg_at, bool first,
		      const struct recipe_step *s, struct ct_err *e)
{
	size_t i;

	switch (s->op) {
	case RECIPE_PROOT:
		if (!first)
			return syntax_error(e, name, l, 0, "PROOT must be the first instruction");
		if (s->n_words)
			return syntax_error(e, name, l, arg_at, "PROOT takes no argument");
		break;
	case RECIPE_FROM:
		if (!first)
			return syntax_error(e, name, l, 0, "FROM must be the first instruction");
		if (s->n_words != 1)
			return syntax_error(e, name, l, arg_at, "FROM takes one IMAGE");
		if (!name_is_valid(s->words[0]))
			return syntax_error(e, name, l, arg_at, "'%s' is not a valid image name",
					    s->words[0]);
		break;
	case RECIPE_PKG:
		if (!s->n_words)
			return syntax_error(e, name, l, arg_at, "PKG needs at least one package");
		for (i = 0; i < s->n_words; i++)
			if (!pkg_valid(s->words[i]))
				return syntax_error(e, name, l, arg_at,
						    "'%s' is not a package name", s->words[i]);
		break;
	case RECIPE_EXEC:
	case RECIPE_RUN:
		if (!s->arg[0])
			return syntax_error(e, name, l, arg_at, "%s needs a command", s->name);
		break;
	case RECIPE_COPY:
		if (s->n_words != 2)
			return syntax_error(e, name, l, arg_at, "COPY takes SRC and DST");
		if (s->words[0][0] == '/' || has_dotdot(s->words[0]))
			return syntax_error(e, name, l, arg_at,
					    "COPY's SRC '%s' must lie in the recipe's folder",
					    s->words[0]);
		if (s->words[1][0] != '/' || has_dotdot(s->words[1]))
			return syntax_error(e, name, l, arg_at,
					    "COPY's DST '%s' must be an absolute path without '..'",
					    s->words[1]);
		break;
	case RECIPE_ENV:
		if (!s->n_words)
			return syntax_error(e, name, l, arg_at, "ENV needs K=V");
		for (i = 0; i < s->n_words; i++) {
			const char *eq = strchr(s->words[i], '=');

			if (!eq || !env_key_valid(s->words[i], (size_t)(eq - s->words[i])))
				return syntax_error(e, name, l, arg_at, "'%s' is not K=V",
						    s->words[i]);
		}
		break;
	case RECIPE_VOLUME:
		if (!s->n_words)
			return syntax_error(e, name, l, arg_at, "VOLUME needs a TARGET");
		for (i = 0; i < s->n_words; i++)
			if (s->words[i][0] != '/' || has_dotdot(s->words[i]) ||
			    !strcmp(s->words[i], "/"))
				return syntax_error(e, name, l, arg_at,
						    "VOLUME '%s' must be an absolute path below /",
						    s->words[i]);
		break;
	}
	return 0;
}

/* Turn logical line l into a step appended to r (blank lines make none). */
static int line_add(struct recipe *r, const char *name, struct lline *l, struct ct_err *e)
{
	struct recipe_step *s, *v;
	size_t i = 0, kw, arg, end, k;
	int rc;

	while (i < l->len && isspace((unsigned char)l->text[i]))
		i++;
	if (i == l->len)
		return 0;
	kw = i;
	while (i < l->len && !isspace((unsigned char)l->text[i]))
		i++;
	for (k = 0; k < ARRAY_SIZE(ops); k++)
		if (strlen(ops[k].name) == i - kw && !strncasecmp(ops[k].name, l->text + kw, i - kw))
			break;
	if (k == ARRAY_SIZE(ops))
		return syntax_error(e, name, l, kw,
				    "unknown instruction '%.*s' (PROOT, FROM, PKG, EXEC, COPY, ENV,"
				    " VOLUME, RUN)",
				    (int)(i - kw > 40 ? 40 : i - kw), l->text + kw);
	while (i < l->len && isspace((unsigned char)l->text[i]))
		i++;
	arg = i;
	end = l->len;
	while (end > arg && isspace((unsigned char)l->text[end - 1]))
		end--;
	v = realloc(r->steps, (r->n_steps + 1) * sizeof(*v));
	if (!v)
		return ct_fail(e, ENOMEM, "out of memory");
	r->steps = v;
	s = &v[r->n_steps];
	memset(s, 0, sizeof(*s));
	s->op = ops[k].op;
	s->name = ops[k].name;
	s->line = l->pos[kw] >> 20;
	s->arg = strndup(l->text + arg, end - arg);
	if (!s->arg)
		return ct_fail(e, ENOMEM, "out of memory");
	r->n_steps++;
	/* EXEC and RUN keep their text for the shell; the others are words */
	if (s->op != RECIPE_EXEC && s->op != RECIPE_RUN && !s->arg[0]) {
		s->words = calloc(1, sizeof(*s->words));
		if (!s->words)
			return ct_fail(e, ENOMEM, "out of memory");
	} else if (s->op != RECIPE_EXEC && s->op != RECIPE_RUN) {
		rc = dispatch_split(s->arg, &s->words, e);
		if (rc < 0)
			return syntax_error(e, name, l, arg, "%s", e->msg);
		while (s->words[s->n_words])
			s->n_words++;
	}
	/* an error about a missing argument points at the instruction */
	return step_check(name, l, arg < end ? arg : kw, r->n_steps == 1, s, e);
}

int recipe_parse_text(const char *name, const char *dir, const char *text, size_t len,
		      struct recipe **ret, struct ct_err *e)
{
	struct recipe *r = calloc(1, sizeof(*r));
	struct lline l = { 0 };
	unsigned line = 1, col = 1;
	bool cont = false, comment = false, line_start = true;
	size_t i;
	int rc = 0;

	if (!r)
		return ct_fail(e, ENOMEM, "out of memory");
	r->path = strdup(name);
	r->dir = strdup(dir);
	if (!r->path || !r->dir) {
		rc = ct_fail(e, ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i <= len && rc == 0; i++) {
		char c = i < len ? text[i] : '\n';

		if (c == '\0') {
			l.len = 0;
			(void)lline_push(&l, ' ', line, col);
			rc = syntax_error(e, name, &l, 0, "a NUL byte");
			break;
		}
		if (line_start) {
			size_t j = i;

			/* a comment line, also between continued lines */
			while (j < len && (text[j] == ' ' || text[j] == '\t'))
				j++;
			comment = j < len && text[j] == '#';
			line_start = false;
		}
		if (c == '\n') {
			size_t n = l.len;

			if (!comment) {
				while (n > 0 && (l.text[n - 1] == '\r' || l.text[n - 1] == ' ' ||
						 l.text[n - 1] == '\t'))
					n--;
				cont = n > 0 && l.text[n - 1] == '\\' && i < len;
				if (cont) {
					l.len = n - 1;
					l.text[l.len] = '\0';
				}
			}
			if (!cont && !comment && l.len) {
				rc = line_add(r, name, &l, e);
				l.len = 0;
			}
			line++;
			col = 1;
			line_start = true;
			continue;
		}
		if (!comment && lline_push(&l, c, line, col) < 0)
			rc = ct_fail(e, ENOMEM, "out of memory");
		col++;
	}
	if (rc == 0 && l.len)
		rc = line_add(r, name, &l, e);
out:
	free(l.text);
	free(l.pos);
	if (rc < 0) {
		recipe_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

int recipe_parse(const char *path, struct recipe **ret, struct ct_err *e)
{
	_cleanup_free_ char *text = NULL, *copy = NULL, *real = NULL;
	size_t len = 0;
	char *slash;

	if (read_file(path, &text, &len) < 0)
		return ct_fail_errno(e, errno, "cannot read '%s'", path);
	copy = strdup(path);
	if (!copy)
		return ct_fail(e, ENOMEM, "out of memory");
	slash = strrchr(copy, '/');
	if (slash)
		*(slash == copy ? slash + 1 : slash) = '\0';
	real = realpath(slash ? copy : ".", NULL);
	if (!real)
		return ct_fail_errno(e, errno, "cannot resolve the folder of '%s'", path);
	return recipe_parse_text(path, real, text, len, ret, e);
}

void recipe_free(struct recipe *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n_steps; i++) {
		free(r->steps[i].arg);
		dispatch_free(r->steps[i].words);
	}
	free(r->steps);
	free(r->path);
	free(r->dir);
	free(r);
}
