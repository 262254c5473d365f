/* The recipe parser: pocker's Pockerfile unchanged, ctool's additions,
 * continuations and comments, and errors that name line and column. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "recipe.h"
#include "tap.h"

static struct recipe *parse(const char *text, char *err, size_t errlen)
{
	struct recipe *r = NULL;
	struct ct_err e = { 0 };

	err[0] = '\0';
	if (recipe_parse_text("Ctoolfile", "/src", text, strlen(text), &r, &e) < 0) {
		(void)snprintf(err, errlen, "%s", e.msg);
		return NULL;
	}
	return r;
}

static void error_is(const char *text, const char *want, const char *what)
{
	char err[512];
	struct recipe *r = parse(text, err, sizeof(err));

	ok(r == NULL && strcmp(err, want) == 0, "%s", what);
	if (r || strcmp(err, want) != 0)
		printf("#   got '%s'\n#  want '%s'\n", err, want);
	recipe_free(r);
}

int main(void)
{
	char err[512];
	struct recipe *r;

	plan(25);
	r = parse("PROOT\nPKG nginx\nRUN /etc/rc.d/nginx\n", err, sizeof(err));
	ok(r != NULL, "pocker's example parses");
	if (r) {
		is_int(r->n_steps, 3, "three steps");
		ok(r->steps[0].op == RECIPE_PROOT && r->steps[1].op == RECIPE_PKG &&
			   r->steps[2].op == RECIPE_RUN,
		   "PROOT, PKG, RUN");
		is_str(r->steps[1].words[0], "nginx", "PKG's package");
		is_str(r->steps[2].arg, "/etc/rc.d/nginx", "RUN's command");
		is_int(r->steps[2].line, 3, "RUN is on line 3");
		is_str(r->dir, "/src", "the recipe's folder");
	} else {
		for (int i = 0; i < 6; i++)
			ok(0, "(no recipe: %s)", err);
	}
	recipe_free(r);

	r = parse("# a comment\nfrom base\n\n  exec apt-get update && \\\n"
		  "    # inside\n    echo \"a  b\" \\\n  > /x\nCOPY 'my dir' /srv/\n"
		  "ENV A=1 B=\"two words\"\nVOLUME /data /logs\nPKG curl nginx=1.22-1\r\n",
		  err, sizeof(err));
	ok(r != NULL, "a recipe with comments, continuations and quotes parses");
	if (r) {
		is_int(r->n_steps, 6, "six steps");
		is_str(r->steps[0].words[0], "base", "FROM's image (lower case instruction)");
		is_str(r->steps[1].arg, "apt-get update &&     echo \"a  b\"   > /x",
		       "continued EXEC joined, the comment inside dropped, quotes kept");
		is_int(r->steps[1].line, 4, "EXEC starts on line 4");
		is_str(r->steps[2].words[0], "my dir", "COPY's quoted SRC");
		is_str(r->steps[3].words[1], "B=two words", "ENV's quoted value");
		is_int(r->steps[5].n_words, 2, "PKG with a version, CRLF line end");
	} else {
		for (int i = 0; i < 7; i++)
			ok(0, "(no recipe: %s)", err);
	}
	recipe_free(r);

	error_is("PROOT\nPKG nginx\nBAD x\n",
		 "Ctoolfile:3:1: unknown instruction 'BAD' (PROOT, FROM, PKG, EXEC, COPY, ENV, "
		 "VOLUME, RUN)",
		 "an unknown instruction names line and column");
	error_is("PROOT\n  PKG\n", "Ctoolfile:2:3: PKG needs at least one package",
		 "PKG without packages");
	error_is("PKG a\nFROM x\n", "Ctoolfile:2:1: FROM must be the first instruction",
		 "FROM after a step");
	error_is("COPY a\n", "Ctoolfile:1:6: COPY takes SRC and DST", "COPY with one word");
	error_is("COPY ../etc /x\n",
		 "Ctoolfile:1:6: COPY's SRC '../etc' must lie in the recipe's folder",
		 "COPY from outside the folder");
	error_is("ENV 1A=b\n", "Ctoolfile:1:5: '1A=b' is not K=V", "ENV with a bad key");
	error_is("VOLUME data\n", "Ctoolfile:1:8: VOLUME 'data' must be an absolute path below /",
		 "VOLUME relative");
	error_is("PKG 'nginx\n", "Ctoolfile:1:5: unterminated quote in ''nginx'",
		 "an unterminated quote");
	error_is("PKG a;rm\n", "Ctoolfile:1:5: 'a;rm' is not a package name",
		 "a package name with a shell character");
	error_is("PROOT\nEXEC a \\\n\n  \\\nRUN\n", "Ctoolfile:5:1: RUN needs a command",
		 "continued lines keep their own line numbers");
	return done_testing();
}
