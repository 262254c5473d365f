/* chroot-tool's tool.conf: parsing and adding binds. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "toolconf.h"

int main(void)
{
	struct toolconf tc = { 0 };
	struct ct_err e = { 0 };
	char *t, *t2;
	int r;

	plan(26);
	r = toolconf_parse("# comment\n[bind]\nsrc:/srv/a tgt:/a\n"
			   "src:/srv/b tgt: /b ro\n\n; other\n  src:/srv/c\ttgt:/c rw\n"
			   "[other]\nkey=value\n",
			   "t.conf", &tc, &e);
	is_int(r, 0, "chroot-tool's syntax parses");
	is_int(tc.n_binds, 3, "three binds");
	is_str(tc.binds[0].src, "/srv/a", "first src");
	is_str(tc.binds[0].tgt, "/a", "first tgt");
	ok(!tc.binds[0].ro, "first is rw");
	is_str(tc.binds[1].tgt, "/b", "blank after 'tgt:' allowed");
	ok(tc.binds[1].ro, "trailing ro");
	is_str(tc.binds[2].src, "/srv/c", "tab-separated src");
	ok(!tc.binds[2].ro, "trailing rw");
	is_int(tc.binds[2].line, 7, "line numbers kept");
	toolconf_clear(&tc);

	r = toolconf_parse("[bind]\nsrc:/a tgt:/with space/dir\n", "t.conf", &tc, &e);
	is_int(r, 0, "paths with blanks");
	is_str(tc.binds[0].tgt, "/with space/dir", "tgt keeps its blank");
	toolconf_clear(&tc);

	r = toolconf_parse("[bind]\nsrc:/a\n", "t.conf", &tc, &e);
	is_int(r, -EINVAL, "missing tgt refused");
	is_str(e.msg, "t.conf:2: missing 'tgt:'", "error names file and line");
	r = toolconf_parse("[bind]\nwhat\n", "t.conf", &tc, &e);
	is_int(r, -EINVAL, "garbage line refused");
	r = toolconf_parse("[bind\n", "t.conf", &tc, &e);
	is_int(r, -EINVAL, "bad header refused");
	r = toolconf_parse("src:/a tgt:/b\n", "t.conf", &tc, &e);
	is_int(r, 0, "binds outside [bind] are ignored");
	is_int(tc.n_binds, 0, "no binds outside [bind]");
	toolconf_clear(&tc);
	r = toolconf_parse("", "t.conf", &tc, &e);
	is_int(r == 0 && tc.n_binds == 0, 1, "empty file is empty conf");

	t = toolconf_add_bind(NULL, "/srv/x", "/x", false);
	is_str(t, "[bind]\nsrc:/srv/x tgt:/x\n", "add to nothing creates the section");
	t2 = toolconf_add_bind(t, "/srv/y", "/y", true);
	is_str(t2, "[bind]\nsrc:/srv/x tgt:/x\nsrc:/srv/y tgt:/y ro\n", "add appends");
	free(t);
	free(t2);
	t = toolconf_add_bind("[bind]\nsrc:/a tgt:/a\n\n[other]\nk=v\n", "/b", "/b", false);
	is_str(t, "[bind]\nsrc:/a tgt:/a\nsrc:/b tgt:/b\n\n[other]\nk=v\n",
	       "add goes to the end of [bind], before the next section");
	free(t);
	t = toolconf_add_bind("[other]\nk=v", "/b", "/b", false);
	is_str(t, "[other]\nk=v\n[bind]\nsrc:/b tgt:/b\n", "section added after others");
	r = toolconf_parse(t, "t.conf", &tc, &e);
	is_int(r, 0, "what add writes parses");
	is_int(tc.n_binds, 1, "and holds the bind");
	is_str(tc.binds[0].src, "/b", "with its source");
	toolconf_clear(&tc);
	free(t);
	return done_testing();
}
