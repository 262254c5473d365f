#!/usr/bin/env bats
# Images and envs without running anything inside: create --from, images,
# clone, list, info, rmi, names, usage errors, the catalog.

load helpers

# ---------------------------------------------------------------------------
# images

@test "create --from adopts a copy of a tree as a base image" {
	run ctool create base --from "$BASE"
	assert_status 0
	run ctool images
	assert_status 0
	[[ ${lines[0]} =~ ^NAME[[:space:]]+LAYERS[[:space:]]+SIZE[[:space:]]+ENVS[[:space:]]+CREATED[[:space:]]+ORIGIN ]] ||
		fail "bad header: ${lines[0]}"
	[ "${#lines[@]}" -eq 2 ] || fail "expected header + 1 line:" "$output"
	read -r name layers size envs _ <<<"${lines[1]}"
	[ "$name" = base ] && [ "$layers" = 1 ] && [ "$envs" = 0 ] || fail "bad line: ${lines[1]}"
	[[ $size =~ ^[0-9.]+[KMG]?$ ]] || fail "bad size: ${lines[1]}"
	[[ ${lines[1]} == *"$BASE"* ]] || fail "ORIGIN does not name '$BASE': ${lines[1]}"
	# One layer in the store, holding a copy of the tree.
	run store_layers
	[ "${#lines[@]}" -eq 1 ] || fail "expected one layer:" "$output"
	cmp "$BASE/bin/busybox" "${lines[0]}/bin/busybox"
	[ "$(readlink "${lines[0]}/bin/ls")" = busybox ]
	[ "$(stat -c %u "${lines[0]}/home/tester")" = 1000 ]
	# A copy: changing the source afterwards does not change the image.
	echo changed >"$BASE/etc/added-later"
	[ ! -e "${lines[0]}/etc/added-later" ]
	rm "$BASE/etc/added-later"
}

@test "create refuses a name already taken" {
	base_image
	run --separate-stderr ctool create base --from "$BASE"
	assert_status 1
	assert_one_error_line "ctool: create: "
	run store_layers
	[ "${#lines[@]}" -eq 1 ] || fail "a second layer was left behind:" "$output"
}

@test "create --from a missing directory fails and leaves nothing" {
	run --separate-stderr ctool create base --from "$BATS_TEST_TMPDIR/nope"
	assert_status 1
	assert_one_error_line "ctool: create: "
	run ctool images
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "an image was made:" "$output"
	[ -z "$(store_layers)" ] || fail "a layer was left: $(store_layers)"
}

@test "images counts the envs that use an image" {
	base_image
	ctool clone base e1
	ctool clone base e2
	run ctool images
	assert_status 0
	read -r name layers _ envs _ <<<"${lines[1]}"
	[ "$name" = base ] && [ "$envs" = 2 ] || fail "bad line: ${lines[1]}"
}

# ---------------------------------------------------------------------------
# clone, list, info

@test "clone from an image is instant: the upper layer starts empty" {
	base_image
	run ctool clone base e
	assert_status 0
	upper=$(env_upper e)
	[ -n "$upper" ] || fail "no upper in info"
	# made empty at the first 'on' (a clone writes only its row and conf/)
	[ ! -e "$upper" ] || [ -z "$(ls -A "$upper")" ] ||
		fail "upper is not empty right after clone:" "$(ls -A "$upper")"
	ctool on e
	[ -d "$upper" ] || fail "no upper dir after on: '$upper'"
	# at most the mount points 'on' had to make (this rootfs has no
	# /etc/resolv.conf nor /etc/hosts), nothing copied from the image
	extra=$(cd "$upper" && find . -mindepth 1 -not -path ./etc -not -path ./etc/resolv.conf \
		-not -path ./etc/hosts)
	[ -z "$extra" ] || fail "upper holds more than mount points after on:" "$extra"
	ctool off e
	# Nothing of the image was copied anywhere else in the store either:
	# the only busybox binary besides the layer's is none.
	layer=$(store_layers)
	n=$(find "$CTOOL_STORE" -name busybox -type f -not -path "$layer/*" | wc -l)
	[ "$n" -eq 0 ] || fail "image files were copied by clone"
}

@test "list shows envs with a header; list -q prints names only" {
	base_image
	ctool clone base e1
	ctool clone base e2 -d "$BATS_TEST_TMPDIR/r2"
	run ctool list
	assert_status 0
	[[ ${lines[0]} =~ ^NAME[[:space:]]+IMAGE[[:space:]]+STATE[[:space:]]+DRIVER[[:space:]]+FLAGS[[:space:]]+ROOT ]] ||
		fail "bad header: ${lines[0]}"
	[ "${#lines[@]}" -eq 3 ] || fail "expected header + 2 lines:" "$output"
	read -r n i s d f r <<<"$(printf '%s\n' "${lines[@]}" | awk '$1 == "e1"')"
	[ "$n/$i/$s/$d/$f" = "e1/base/off/$(expected_driver)/-" ] || fail "bad e1 line:" "$output"
	[ "$r" = "$(env_root e1)" ] || fail "ROOT of e1 is '$r'"
	[[ $r == "$CTOOL_STORE/envs/"*/root ]] || fail "default root not under the store: $r"
	read -r n i s d f r <<<"$(printf '%s\n' "${lines[@]}" | awk '$1 == "e2"')"
	[ "$n/$i/$s/$f/$r" = "e2/base/off/-/$BATS_TEST_TMPDIR/r2" ] || fail "bad e2 line:" "$output"
	run ctool list -q
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | sort | tr '\n' ' ')" = "e1 e2 " ] || fail "list -q:" "$output"
}

@test "list on an empty store prints the header only" {
	run ctool list
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "expected only a header:" "$output"
	run ctool list -q
	assert_status 0
	[ -z "$output" ] || fail "list -q printed:" "$output"
}

@test "info prints key: value lines" {
	base_image
	ctool clone base e
	run ctool info e
	assert_status 0
	for k in name id image state driver volatile root upper created; do
		printf '%s\n' "${lines[@]}" | grep -q "^$k: ." || fail "no '$k:' line:" "$output"
	done
	[ "$(info_get e name)" = e ]
	[ "$(info_get e image)" = base ]
	[ "$(info_get e state)" = off ]
	[ "$(info_get e driver)" = "$(expected_driver)" ]
	[[ $(info_get e volatile) =~ ^(no|false|0|off)$ ]] || fail "volatile: $(info_get e volatile)"
	id=$(info_get e id)
	[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "id: $id"
	[ "$(info_get e root)" = "$CTOOL_STORE/envs/$id/root" ]
	[ "$(info_get e upper)" = "$CTOOL_STORE/envs/$id/upper" ]
	! printf '%s\n' "${lines[@]}" | grep -q '^bind:' || fail "bind line without binds:" "$output"
}

@test "info shows one bind: line per -v bind" {
	base_image
	ctool clone base e
	mkdir "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
	ctool on e -v "$BATS_TEST_TMPDIR/a:/a" -v "$BATS_TEST_TMPDIR/b:/b:ro"
	ctool off e
	run ctool info e
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | grep -c '^bind: ')" -eq 2 ] || fail "bind lines:" "$output"
	printf '%s\n' "${lines[@]}" | grep '^bind: ' | grep -q -- "$BATS_TEST_TMPDIR/a" ||
		fail "bind of a missing:" "$output"
}

@test "info shows one bind: line per tool.conf bind" {
	base_image
	ctool clone base e
	mkdir "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
	ctool bind e "$BATS_TEST_TMPDIR/a" /a
	ctool bind e "$BATS_TEST_TMPDIR/b" /b --ro
	run ctool info e
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | grep -c '^bind: ')" -eq 2 ] || fail "bind lines:" "$output"
	printf '%s\n' "${lines[@]}" | grep '^bind: ' | grep -q -- "$BATS_TEST_TMPDIR/b" ||
		fail "bind of b missing:" "$output"
}

@test "clone --volatile shows in list and info" {
	base_image
	ctool clone base v --volatile
	ctool clone base p
	[ "$(list_field v 5)" = volatile ] || fail "FLAGS of v: $(list_field v 5)"
	[ "$(list_field p 5)" = - ] || fail "FLAGS of p: $(list_field p 5)"
	[[ $(info_get v volatile) =~ ^(yes|true|1|on)$ ]] || fail "info volatile: $(info_get v volatile)"
}

@test "clone -d DIR roots the env at DIR" {
	base_image
	d="$BATS_TEST_TMPDIR/myroot"
	ctool clone base e -d "$d"
	[ "$(env_root e)" = "$d" ]
	[ -d "$d" ]
	[ "$(list_field e 6)" = "$d" ]
}

@test "clone -d refuses a root inside another env's root, or holding one" {
	base_image
	d="$BATS_TEST_TMPDIR/wrap/outer"
	ctool clone base a -d "$d"
	for bad in "$d/inner" "$d/x/y" "$BATS_TEST_TMPDIR/wrap"; do
		run --separate-stderr ctool clone base b -d "$bad"
		assert_status 1
		assert_one_error_line "ctool: clone: "
		[[ $stderr == *"env 'a'"* ]] || fail "does not name env a: $stderr"
		[ "$(ctool list -q)" = a ] || fail "an env was made for '$bad'"
	done
	[ ! -e "$d/inner" ] && [ ! -e "$d/x/y" ] || fail "a refused root was left behind"
	# a sibling is fine
	run ctool clone base b -d "$BATS_TEST_TMPDIR/wrap/outer2"
	assert_status 0
}

@test "clone from an env copies its changes" {
	base_image
	ctool clone base e1
	ctool run e1 -- /bin/sh -c 'echo hello >/file; rm /etc/os-release'
	ctool off e1
	run ctool clone e1 e2
	assert_status 0
	[ "$(list_field e2 2)" = base ] || fail "IMAGE of e2: $(list_field e2 2)"
	run ctool run e2 -- /bin/cat /file
	assert_status 0
	[ "$output" = hello ]
	run ctool run e2 -- /bin/test -e /etc/os-release
	assert_status 1
	# The copy is independent of its source.
	ctool run e2 -- /bin/sh -c 'echo other >/file'
	ctool off e2
	run ctool run e1 -- /bin/cat /file
	[ "$output" = hello ]
}

@test "clone from an env that is on is refused" {
	base_image
	ctool clone base e1
	ctool on e1
	run --separate-stderr ctool clone e1 e2
	assert_status 1
	assert_one_error_line "ctool: clone: "
	run ctool list -q
	[ "$output" = e1 ] || fail "list -q:" "$output"
}

@test "clone refuses a name already taken" {
	base_image
	ctool clone base e
	run --separate-stderr ctool clone base e
	assert_status 1
	assert_one_error_line "ctool: clone: "
	[ "$(ctool list -q)" = e ]
}

# ---------------------------------------------------------------------------
# rmi

@test "rmi is refused while an env uses the image, works after rm" {
	base_image
	ctool clone base e
	run --separate-stderr ctool rmi base
	assert_status 1
	assert_one_error_line "ctool: rmi: "
	[ "$(ctool images | awk 'NR > 1 { print $1 }')" = base ]
	[ -n "$(store_layers)" ]
	ctool rm e
	run ctool rmi base
	assert_status 0
	run ctool images
	[ "${#lines[@]}" -eq 1 ] || fail "image still listed:" "$output"
	[ -z "$(store_layers)" ] || fail "layer left: $(store_layers)"
}

@test "rmi of a missing image fails" {
	run --separate-stderr ctool rmi nope
	assert_status 1
	assert_one_error_line "ctool: rmi: "
	[[ $stderr == *nope* ]]
}

# ---------------------------------------------------------------------------
# names and usage errors

@test "valid names are accepted" {
	base_image
	long=$(printf 'a%.0s' $(seq 63))
	for n in a 0 a_b.c-d 9.x "$long"; do
		run ctool clone base "$n"
		assert_status 0
	done
	[ "$(ctool list -q | wc -l)" -eq 5 ]
}

@test "bad names are usage errors and create nothing" {
	base_image
	long=$(printf 'a%.0s' $(seq 64))
	for n in "" Abc .x _x a/b ../etc a..b/.. "a b" "é" "$long" 'a$' "a:b" -x; do
		run --separate-stderr ctool clone base "$n"
		[ "$status" -eq 2 ] || fail "clone base '$n': status $status (expected 2):" "$output" "$stderr"
		assert_one_error_line "ctool: "
		run --separate-stderr ctool create "$n" --from "$BASE"
		[ "$status" -eq 2 ] || fail "create '$n': status $status (expected 2):" "$output" "$stderr"
		assert_one_error_line "ctool: "
	done
	run ctool list -q
	[ -z "$output" ] || fail "envs were made:" "$output"
	[ "$(ctool images | awk 'NR > 1 { print $1 }')" = base ] || fail "images were made"
	[ "$(store_layers | wc -l)" -eq 1 ] || fail "layers were made"
	[ ! -e "$BATS_TEST_TMPDIR/etc" ] && [ ! -e "$CTOOL_STORE/etc" ] && [ ! -e "$CTOOL_STORE/a" ] ||
		fail "a path was made from a bad name"
}

@test "unknown command is a usage error" {
	run --separate-stderr ctool frobnicate
	assert_status 2
	assert_one_error_line "ctool: "
	[ -z "$output" ] || fail "stdout:" "$output"
}

@test "unknown options are usage errors" {
	run --separate-stderr ctool list --bogus
	assert_status 2
	assert_one_error_line "ctool: "
	run --separate-stderr ctool --bogus list
	assert_status 2
	assert_one_error_line "ctool: "
	base_image
	run --separate-stderr ctool clone base e --bogus
	assert_status 2
	assert_one_error_line "ctool: "
	[ -z "$(ctool list -q)" ] || fail "env made despite the usage error"
}

@test "missing or extra arguments are usage errors" {
	base_image
	run --separate-stderr ctool clone base
	assert_status 2
	assert_one_error_line "ctool: "
	run --separate-stderr ctool rmi
	assert_status 2
	assert_one_error_line "ctool: "
	run --separate-stderr ctool rmi base extra
	assert_status 2
	assert_one_error_line "ctool: "
	run --separate-stderr ctool clone base e extra
	assert_status 2
	assert_one_error_line "ctool: "
	[ -z "$(ctool list -q)" ]
	[ "$(ctool images | awk 'NR > 1 { print $1 }')" = base ]
}

@test "no command at all is a usage error" {
	run --separate-stderr ctool
	assert_status 2
	[ "${#stderr_lines[@]}" -ge 1 ]
}

@test "--help prints to stdout and exits 0" {
	run --separate-stderr ctool --help
	assert_status 0
	[ -n "$output" ] && [ -z "$stderr" ] || fail "stdout: $output / stderr: $stderr"
	for c in create clone on off run reset rm list info images rmi bind gc; do
		[[ $output == *"$c"* ]] || fail "--help does not mention '$c'"
	done
	for c in create clone on off run reset rm list info images rmi bind gc; do
		run --separate-stderr ctool "$c" --help
		[ "$status" -eq 0 ] || fail "ctool $c --help: status $status" "$stderr"
		[ -n "$output" ] || fail "ctool $c --help printed nothing on stdout"
	done
}

@test "--version prints a version and exits 0" {
	run --separate-stderr ctool --version
	assert_status 0
	[ -z "$stderr" ]
	[[ $output =~ [0-9]+\.[0-9]+ ]] || fail "no version number: $output"
}

# ---------------------------------------------------------------------------
# missing objects

@test "clone from a missing image or env names it" {
	run --separate-stderr ctool clone x e
	assert_status 1
	[ "$stderr" = "ctool: clone: no image or env named 'x'" ] || fail "stderr: $stderr"
	[ -z "$output" ]
	run ctool list -q
	[ -z "$output" ]
}

@test "commands on a missing env fail with one line" {
	for c in on off info reset rm; do
		run --separate-stderr ctool "$c" nope
		[ "$status" -eq 1 ] || fail "ctool $c nope: status $status" "$stderr"
		assert_one_error_line "ctool: $c: "
		[[ $stderr == *nope* ]] || fail "ctool $c: does not name the env: $stderr"
	done
	run --separate-stderr ctool run nope -- /bin/true
	[ "$status" -ne 0 ] || fail "run on a missing env succeeded"
}

@test "-q prints errors only; stores are independent" {
	base_image
	run --separate-stderr ctool -q clone base e
	assert_status 0
	[ -z "$output" ] && [ -z "$stderr" ] || fail "-q printed: $output / $stderr"
	# --store beats CTOOL_STORE
	other="$BATS_TEST_TMPDIR/other"
	run ctool --store "$other" list -q
	assert_status 0
	[ -z "$output" ] || fail "--store $other lists:" "$output"
	[ "$(ctool list -q)" = e ]
}

# ---------------------------------------------------------------------------
# the catalog

# The SQLite catalog file of the store.
catalog_file() {
	local f
	for f in "$CTOOL_STORE"/* "$CTOOL_STORE"/*/*; do
		[ -f "$f" ] || continue
		[ "$(head -c 15 "$f")" = "SQLite format 3" ] && { printf '%s\n' "$f"; return 0; }
	done
	return 1
}

@test "a catalog of version 1 is migrated, envs and all" {
	base_image
	ctool clone base e
	cat=$(catalog_file) || fail "no SQLite catalog in the store"
	# what a ctool of version 1 wrote: envs without driver_note, no layer
	# stacks kept per env, no build-cache columns, no image config
	sqlite3 "$cat" "DROP INDEX layers_cache_key; ALTER TABLE layers DROP COLUMN cache_key;
		ALTER TABLE layers DROP COLUMN packages; ALTER TABLE layers DROP COLUMN size;
		ALTER TABLE images DROP COLUMN config; DROP TABLE env_layers;
		ALTER TABLE envs DROP COLUMN config; ALTER TABLE envs DROP COLUMN driver_note;
		PRAGMA user_version = 1"
	[ "$(sqlite3 "$cat" "PRAGMA user_version")" = 1 ]
	run ctool list -q
	assert_status 0
	[ "$output" = e ] || fail "list:" "$output"
	[ "$(sqlite3 "$cat" "PRAGMA user_version")" = 3 ] || fail "not migrated"
	# the env stands on its image's layers
	[ "$(sqlite3 "$cat" "SELECT count(*) FROM env_layers")" = 1 ] || fail "no env layers"
	[ "$(info_get e driver)" = "$(expected_driver)" ]
	run ctool run e -- /bin/true
	assert_status 0
}

@test "a garbage catalog gives one clear error and is left unchanged" {
	base_image
	ctool clone base e
	cat=$(catalog_file) || fail "no SQLite catalog in the store"
	rm -f "$cat-wal" "$cat-shm"
	{ printf 'this is not a catalog\n'; head -c 8192 /dev/urandom; } >"$cat"
	cp "$cat" "$BATS_TEST_TMPDIR/garbage"
	for args in "list" "images" "clone base e2" "info e"; do
		# shellcheck disable=SC2086
		run --separate-stderr ctool $args
		[ "$status" -eq 1 ] || fail "ctool $args: status $status" "$output" "$stderr"
		assert_one_error_line "ctool: ${args%% *}: "
		cmp "$cat" "$BATS_TEST_TMPDIR/garbage" || fail "ctool $args changed the catalog"
	done
	rm -f "$cat"
}

@test "clone from an env that was never on, and from one just reset" {
	base_image
	ctool clone base a
	run ctool clone a b
	assert_status 0
	ctool run a -- /bin/sh -c 'echo x >/f'
	ctool off a
	ctool reset a
	run ctool clone a c
	assert_status 0
	run ctool run c -- /bin/cat /f
	[ "$status" -ne 0 ] || fail "a reset source still gave its change: $output"
}

@test "off -t takes seconds from 0 to 3600 and nothing else" {
	base_image
	ctool clone base e
	for t in nan -1 3601 x; do
		run --separate-stderr ctool off -t "$t" e
		assert_status 2
		assert_one_error_line "ctool: off: "
	done
	run ctool off -t 0.5 e
	assert_status 0
}
