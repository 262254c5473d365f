#include "config.h"

#include <stdio.h>
#include <string.h>

#include "toolconf.h"
#include "util.h"

static const char *skip_blank(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Strip trailing blanks of s[0..*n). */
static void rtrim(const char *s, size_t *n)
{
	while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
		(*n)--;
}

static int parse_bind(const char *line, size_t len, int lineno, const char *fname,
		      struct toolconf_bind *b, struct ct_err *e)
{
	_cleanup_free_ char *l = strndup(line, len);
	char *src, *tgt, *end;
	size_t n;

	if (!l)
		return ct_fail(e, ENOMEM, "out of memory");
	if (strncmp(l, "src:", 4) != 0)
		return ct_fail(e, EINVAL, "%s:%d: expected 'src:PATH tgt:PATH'", fname, lineno);
	tgt = strstr(l, " tgt:");
	if (!tgt)
		tgt = strstr(l, "\ttgt:");
	if (!tgt)
		return ct_fail(e, EINVAL, "%s:%d: missing 'tgt:'", fname, lineno);
	*tgt = '\0';
	src = (char *)skip_blank(l + 4);
	n = strlen(src);
	rtrim(src, &n);
	src[n] = '\0';
	tgt = (char *)skip_blank(tgt + 5);
	n = strlen(tgt);
	rtrim(tgt, &n);
	tgt[n] = '\0';
	b->ro = false;
	end = strrchr(tgt, ' ');
	if (!end)
		end = strrchr(tgt, '\t');
	if (end && (strcmp(end + 1, "ro") == 0 || strcmp(end + 1, "rw") == 0)) {
		b->ro = strcmp(end + 1, "ro") == 0;
		n = (size_t)(end - tgt);
		rtrim(tgt, &n);
		tgt[n] = '\0';
	}
	if (!*src || !*tgt)
		return ct_fail(e, EINVAL, "%s:%d: empty 'src:' or 'tgt:'", fname, lineno);
	b->src = strdup(src);
	b->tgt = strdup(tgt);
	b->line = lineno;
	if (!b->src || !b->tgt) {
		free(b->src);
		free(b->tgt);
		return ct_fail(e, ENOMEM, "out of memory");
	}
	return 0;
}

int toolconf_parse(const char *text, const char *fname, struct toolconf *ret, struct ct_err *e)
{
	struct toolconf conf = { 0 };
	const char *p = text;
	bool in_bind = false;
	int lineno = 0, r;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *s = skip_blank(p);
		size_t n = len - (size_t)(s - p);

		lineno++;
		rtrim(s, &n);
		if (n == 0 || s[0] == '#' || s[0] == ';') {
			/* blank or comment */
		} else if (s[0] == '[') {
			if (s[n - 1] != ']') {
				r = ct_fail(e, EINVAL, "%s:%d: bad section header", fname, lineno);
				goto fail;
			}
			in_bind = n == 6 && strncmp(s, "[bind]", 6) == 0;
		} else if (in_bind) {
			struct toolconf_bind *nb =
				realloc(conf.binds, (conf.n_binds + 1) * sizeof(*nb));

			if (!nb) {
				r = ct_fail(e, ENOMEM, "out of memory");
				goto fail;
			}
			conf.binds = nb;
			r = parse_bind(s, n, lineno, fname, &conf.binds[conf.n_binds], e);
			if (r < 0)
				goto fail;
			conf.n_binds++;
		}
		p = nl ? nl + 1 : NULL;
	}
	*ret = conf;
	return 0;
fail:
	toolconf_clear(&conf);
	return r;
}

int toolconf_load(const char *path, struct toolconf *ret, struct ct_err *e)
{
	_cleanup_free_ char *text = NULL;
	int r = read_file(path, &text, NULL);

	if (r == -ENOENT) {
		*ret = (struct toolconf){ 0 };
		return 0;
	}
	if (r < 0)
		return ct_fail_errno(e, -r, "cannot read '%s'", path);
	return toolconf_parse(text, path, ret, e);
}

void toolconf_clear(struct toolconf *conf)
{
	size_t i;

	if (!conf)
		return;
	for (i = 0; i < conf->n_binds; i++) {
		free(conf->binds[i].src);
		free(conf->binds[i].tgt);
	}
	free(conf->binds);
	*conf = (struct toolconf){ 0 };
}

char *toolconf_add_bind(const char *text, const char *src, const char *tgt, bool ro)
{
	_cleanup_free_ char *line = xasprintf("src:%s tgt:%s%s\n", src, tgt, ro ? " ro" : "");
	const char *sec, *p;
	size_t before;

	if (!line)
		return NULL;
	if (!text)
		text = "";
	/* find the [bind] header at the start of a line */
	for (sec = NULL, p = text; p && *p;) {
		const char *s = skip_blank(p);

		if (strncmp(s, "[bind]", 6) == 0) {
			sec = s;
			break;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!sec) {
		size_t tl = strlen(text);

		return xasprintf("%s%s[bind]\n%s", text, tl && text[tl - 1] != '\n' ? "\n" : "",
				 line);
	}
	/* insert after the last non-blank line of the section */
	p = strchr(sec, '\n');
	before = p ? (size_t)(p + 1 - text) : strlen(text);
	while (p && p[1]) {
		const char *ls = skip_blank(p + 1), *nl = strchr(p + 1, '\n');

		if (*ls == '[')
			break;
		if (*ls != '\n' && *ls != '\0')
			before = nl ? (size_t)(nl + 1 - text) : strlen(text);
		p = nl;
	}
	return xasprintf("%.*s%s%s%s", (int)before, text,
			 before && text[before - 1] != '\n' ? "\n" : "", line, text + before);
}
