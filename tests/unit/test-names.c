/* Names and paths: the checks every command makes before using input. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util.h"

static int clean_is(const char *in, const char *want)
{
	char *got = path_clean_abs(in);
	int okay = want ? got && strcmp(got, want) == 0 : got == NULL;

	free(got);
	return okay;
}

int main(void)
{
	char long_ok[64], long_bad[65];

	memset(long_ok, 'a', 63);
	long_ok[63] = '\0';
	memset(long_bad, 'a', 64);
	long_bad[64] = '\0';

	plan(22);
	ok(name_is_valid("bookworm"), "plain name accepted");
	ok(name_is_valid("bookworm-dev_1.2"), "dashes, underscores and dots accepted");
	ok(name_is_valid("0day"), "leading digit accepted");
	ok(name_is_valid(long_ok), "63 characters accepted");
	ok(!name_is_valid(long_bad), "64 characters rejected");
	ok(!name_is_valid(""), "empty rejected");
	ok(!name_is_valid(NULL), "NULL rejected");
	ok(!name_is_valid("../etc"), "path escape rejected");
	ok(!name_is_valid("a/b"), "slash rejected");
	ok(!name_is_valid("-rf"), "leading dash rejected");
	ok(!name_is_valid(".hidden"), "leading dot rejected");
	ok(!name_is_valid("Bookworm"), "upper case rejected");
	ok(!name_is_valid("a b"), "blank rejected");

	ok(clean_is("/a//b/./c/", "/a/b/c"), "path cleaned");
	ok(clean_is("/", "/"), "root stays root");
	ok(clean_is("/a/../b", NULL), "'..' refused");
	ok(clean_is("a/b", NULL), "relative refused");

	ok(path_is_under("/srv/x", "/srv"), "child is under");
	ok(path_is_under("/srv", "/srv/"), "itself is under");
	ok(!path_is_under("/srvx", "/srv"), "sibling with common prefix is not under");
	ok(path_is_under("/anything", "/"), "everything is under /");
	ok(!path_is_under("/a", "/a/b"), "parent is not under child");
	return done_testing();
}
