#!/usr/bin/env bats
# export and import: round trips of images and envs (merged, and --layers),
# and hostile archives refused with nothing left behind.

load helpers

setup() {
	common_setup
	T=$BATS_TEST_TMPDIR
	OUTSIDE=$T/outside
	mkdir -p "$OUTSIDE"
}

# A listing of what a tree shows, to compare two trees: type, name, mode,
# owner (and for non-directories size, link count, mtime, link target),
# checksums, which names share an inode, and the xattrs (but the
# overlay's own). /proc, /sys, /dev and /tmp (mounts of an env that is on)
# are left out.
tree_list() {
	(
		cd "$1" || exit 1
		local prune=(\( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \) -prune -o)
		find . "${prune[@]}" \( -type d -printf 'd %p %M %U %G\n' \) -o \
			\( ! -type d -printf '%y %p %M %U %G %s %n %T@ %l\n' \) | LC_ALL=C sort
		find . "${prune[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
		find . "${prune[@]}" ! -type d -links +1 -printf '%i %p\n' | LC_ALL=C sort -k1,1n -k2 |
			awk '$1 != i { if (l) print l; l = "linked:"; i = $1 } { l = l " " $2 }
				END { if (l) print l }' | LC_ALL=C sort
		find . "${prune[@]}" -print0 | LC_ALL=C sort -z |
			xargs -0 getfattr -h -d -m- -e hex 2>/dev/null |
			grep -v -e '^trusted\.overlay\.' -e '^user\.ctool-overlay\.' || true
	)
}

# assert_same_tree A B: the listings of two trees are the same.
assert_same_tree() {
	tree_list "$1" >"$T/list.a" || return
	tree_list "$2" >"$T/list.b" || return
	[ "$(wc -l <"$T/list.a")" -gt 5 ] || fail "empty listing of '$1'" || return
	diff -u "$T/list.a" "$T/list.b" >&2 || fail "trees '$1' and '$2' differ"
}

# make_changed_env NAME: env NAME from image base, left on, with a file
# written, one changed (copied up), one deleted (a whiteout), a directory
# made opaque, a hard link pair, a symlink, user.* and trusted.* xattrs, a
# setuid file, a fifo, a sparse file and a file of another owner.
make_changed_env() {
	local r
	ctool clone base "$1" && ctool on "$1" || return
	r=$(env_root "$1") || return
	echo data >"$r/etc/newfile" &&
		echo 'extra:x:1001:1001::/:/bin/sh' >>"$r/etc/passwd" &&
		rm "$r/etc/os-release" &&
		rm -rf "$r/home" && mkdir "$r/home" && echo n >"$r/home/new" &&
		chown 1000:1000 "$r/home/new" &&
		echo h >"$r/h1" && ln "$r/h1" "$r/h2" &&
		ln -s /etc/newfile "$r/sl" &&
		setfattr -n user.color -v blue "$r/etc/newfile" &&
		setfattr -n trusted.note -v secret "$r/etc/newfile" &&
		printf '#!/bin/sh\n' >"$r/bin/suid" && chmod 4755 "$r/bin/suid" &&
		mkfifo "$r/fifo" &&
		truncate -s 64M "$r/sparse" &&
		printf x | dd of="$r/sparse" bs=1 seek=1M conv=notrunc status=none
}

# The layer directories made since the listing $1 (store_layers output).
new_layers() {
	comm -13 <(printf '%s\n' "$1") <(store_layers)
}

# round_trip SUFFIX: an env with every kind of change, exported to a
# file of that suffix and imported with --trusted, shows the same tree.
round_trip() {
	local before
	base_image
	make_changed_env e1
	ctool export e1 "$T/e1$1"
	before=$(store_layers)
	run ctool import --trusted "$T/e1$1" imp
	assert_status 0
	[[ $output == *"image 'imp': 1 layer"* ]] || fail "no summary line: $output"
	[ "$(new_layers "$before" | wc -l)" -eq 1 ]
	ctool clone imp c1
	ctool on c1
	assert_same_tree "$(env_root e1)" "$(env_root c1)"
	# the sparse file is sparse in the layer
	local f
	f="$(new_layers "$before")/sparse"
	[ "$(stat -c %s "$f")" -eq $((64 << 20)) ]
	[ "$(($(stat -c %b "$f") * $(stat -c %B "$f")))" -lt $((1 << 20)) ] ||
		fail "the sparse file takes $(du -h "$f")"
}

@test "export of an image and import give the same tree" {
	base_image
	ctool export base "$T/base.tar.zst"
	local before
	before=$(store_layers)
	run ctool import "$T/base.tar.zst" copy
	assert_status 0
	run ctool images
	[[ $output == *$'\n'"copy "* ]] || fail "no image 'copy':" "$output"
	# directory times too: compare the layers themselves
	assert_same_tree "$(store_layers | head -n 1)" "$(new_layers "$before")"
	[ "$(find "$(new_layers "$before")" -maxdepth 0 -printf '%T@')" = \
		"$(find "$BASE" -maxdepth 0 -printf '%T@')" ]
}

@test "an env with every kind of change survives export and import (.tar.zst)" {
	round_trip .tar.zst
	zstd -t -q "$T/e1.tar.zst"
}

@test "an env with every kind of change survives export and import (.tar.gz)" {
	round_trip .tar.gz
	gzip -t "$T/e1.tar.gz"
}

@test "an env with every kind of change survives export and import (.tgz, .tar)" {
	round_trip .tgz
	gzip -t "$T/e1.tgz"
	ctool export e1 "$T/e1.tar"
	tar -tf "$T/e1.tar" | grep -qx './etc/newfile'
	! tar -tf "$T/e1.tar" | grep -q 'os-release' || fail "a deleted file was exported"
}

@test "export --layers and import keep the stack, whiteouts and opaque directories" {
	local before top
	base_image
	make_changed_env e1
	ctool export --layers e1 "$T/e1.tar.zst"
	tar --zstd -xOf "$T/e1.tar.zst" ctool-layers >"$T/manifest"
	head -n 1 "$T/manifest" | grep -qx 'ctool-layers 1'
	grep -qx 'layers 2' "$T/manifest"
	grep -qx 'layer 2 changes of env e1' "$T/manifest"
	before=$(store_layers)
	run ctool import --trusted "$T/e1.tar.zst" imp
	assert_status 0
	[[ $output == *"image 'imp': 2 layers"* ]] || fail "$output"
	[ "$(ctool images | awk '$1 == "imp" { print $2 }')" = 2 ]
	[ "$(new_layers "$before" | wc -l)" -eq 2 ]
	# the top layer holds the changes as the overlay wrote them
	for top in $(new_layers "$before"); do
		[ -e "$top/etc/newfile" ] && break
	done
	[ "$(stat -c '%F %t:%T' "$top/etc/os-release")" = "character special file 0:0" ]
	[ "$(getfattr -h --only-values -n trusted.overlay.opaque "$top/home")" = y ]
	ctool clone imp c1
	ctool on c1
	assert_same_tree "$(env_root e1)" "$(env_root c1)"
	run ctool run c1 -- ls /home
	[ "$output" = new ]
	run ctool run c1 -- test -e /etc/os-release
	assert_status 1
}

@test "export of an env that is off, and of one never turned on" {
	base_image
	make_changed_env e1
	ctool off e1
	ctool export e1 "$T/off.tar"
	tar -tf "$T/off.tar" | grep -qx './h2'
	! tar -tf "$T/off.tar" | grep -q -e os-release -e './home/tester' ||
		fail "a deleted file was exported"
	ctool clone base fresh
	ctool export fresh "$T/fresh.tar"
	ctool export base "$T/base.tar"
	diff <(tar -tvf "$T/fresh.tar") <(tar -tvf "$T/base.tar")
	ctool export --layers fresh "$T/fresh-layers.tar"
	tar -xOf "$T/fresh-layers.tar" ctool-layers | grep -qx 'layers 1'
}

@test "export of an env that is on has its latest writes" {
	local r i
	base_image
	ctool clone base e1
	ctool on e1
	r=$(env_root e1)
	for i in 1 2 3; do
		echo "line$i" >>"$r/etc/group"
		ctool -q export e1 "$T/p.tar"
		[ "$(tar -xOf "$T/p.tar" ./etc/group | tail -n 1)" = "line$i" ] ||
			fail "write $i is missing"
	done
}

@test "export reads ctool-overlayfs's file form of whiteouts" {
	local before top u r
	base_image
	ctool clone --driver fuse base e1
	CTOOL_TEST_WHITEOUT_FILES=1 ctool on e1
	r=$(env_root e1)
	rm "$r/etc/os-release"
	rm -rf "$r/home" && mkdir "$r/home" && echo n >"$r/home/new"
	u=$(env_upper e1)
	[ -f "$u/etc/.wh.os-release" ] && [ -f "$u/home/.wh..wh..opq" ] ||
		fail "the file form was not used:" "$(ls -laR "$u")"
	ctool export e1 "$T/m.tar"
	tar -tf "$T/m.tar" >"$T/list"
	! grep -e os-release -e '\.wh\.' -e tester "$T/list" || fail "hidden names exported"
	grep -qx './home/new' "$T/list"
	# in a --layers export they become the kernel's form
	ctool export --layers e1 "$T/l.tar"
	! tar -tf "$T/l.tar" | grep -q '\.wh\.' || fail "file form in the layers"
	before=$(store_layers)
	ctool import "$T/l.tar" imp
	for top in $(new_layers "$before"); do
		[ -e "$top/home/new" ] && break
	done
	[ "$(stat -c '%F %t:%T' "$top/etc/os-release")" = "character special file 0:0" ]
	[ "$(getfattr -h --only-values -n trusted.overlay.opaque "$top/home")" = y ]
	ctool clone imp c1
	ctool on c1
	assert_same_tree "$r" "$(env_root c1)"
}

@test "export never enters a mount point in a layer" {
	local u
	base_image
	ctool clone base e1
	echo kept | env_write e1 /mnt/kept
	ctool off e1
	u=$(env_upper e1)
	mkdir "$u/mnt/bind" "$u/mnt/tmpfs"
	echo secret >"$OUTSIDE/secret"
	mount --bind "$OUTSIDE" "$u/mnt/bind"
	mount -t tmpfs ctool-test "$u/mnt/tmpfs"
	echo secret >"$u/mnt/tmpfs/secret"
	run ctool export e1 "$T/m.tar"
	umount "$u/mnt/bind" "$u/mnt/tmpfs"
	assert_status 0
	tar -tf "$T/m.tar" >"$T/list"
	grep -qx './mnt/kept' "$T/list"
	! grep -q -e secret -e mnt/bind -e mnt/tmpfs "$T/list" || fail "a mount was exported:" "$(cat "$T/list")"
}

@test "export to - writes a plain tar on stdout" {
	base_image
	ctool export base - | tar -tf - >"$T/list"
	grep -qx './etc/passwd' "$T/list"
	grep -qx './bin/busybox' "$T/list"
}

@test "export errors: one line, exit 1; usage errors exit 2" {
	base_image
	run --separate-stderr ctool export nope "$T/x.tar"
	assert_status 1
	assert_one_error_line "ctool: export: no env or image named 'nope'"
	[ ! -e "$T/x.tar" ]
	run --separate-stderr ctool export base "$T/x.zip"
	assert_status 2
	assert_one_error_line "ctool: export: "
	run --separate-stderr ctool export base
	assert_status 2
	run --separate-stderr ctool export --bogus base "$T/x.tar"
	assert_status 2
	run --separate-stderr ctool export base "$T/no/such/dir/x.tar"
	assert_status 1
	assert_one_error_line "ctool: export: "
	run --separate-stderr ctool import "$T/x.tar"
	assert_status 2
	run --separate-stderr ctool import "$T/x.tar" 'Bad Name'
	assert_status 2
	run --separate-stderr ctool import "$T/missing.tar" img
	assert_status 1
	assert_one_error_line "ctool: import: "
}

@test "import to a taken name is refused before reading" {
	base_image
	mkfifo "$T/fifo"
	# reading would block on the fifo, which nobody writes
	run --separate-stderr timeout 10 "$CTOOL" import "$T/fifo" base
	assert_status 1
	assert_one_error_line "ctool: import: an image named 'base' already exists"
	run --separate-stderr ctool import "$T/missing.tar" base
	assert_status 1
	assert_one_error_line "ctool: import: an image named 'base' already exists"
}

@test "-q leaves the summary out" {
	base_image
	run --separate-stderr ctool -q export base "$T/b.tar"
	assert_status 0
	[ -z "$stderr" ]
	run --separate-stderr ctool import -q "$T/b.tar" b2
	assert_status 0
	[ -z "$stderr" ]
}

# ---------------------------------------------------------------------------
# Hostile archives

# mktar CASE FILE: a tar (pax) holding a good entry first, then what CASE
# says; made with Python's tarfile, which writes names as they are.
mktar() {
	python3 - "$1" "$2" "$OUTSIDE" <<'PY'
import io, sys, tarfile
case, out, outside = sys.argv[1:4]
t = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)

def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link="", pax=None, dev=(0, 0)):
    i = tarfile.TarInfo(name)
    i.type, i.mode, i.linkname = kind, mode, link
    i.devmajor, i.devminor = dev
    if pax:
        i.pax_headers = pax
    if kind == tarfile.REGTYPE:
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
    else:
        t.addfile(i)

add("good", data=b"fine\n")
if case == "dotdot":
    add("sub/../../evil-dotdot", data=b"x")
elif case == "absolute":
    add(outside + "/evil-abs", data=b"x")
elif case == "link-out":
    add("evil-link", tarfile.LNKTYPE, link="../../../../../../etc/passwd")
elif case == "link-abs":
    add("evil-link", tarfile.LNKTYPE, link="/etc/passwd")
elif case == "link-missing":
    add("evil-link", tarfile.LNKTYPE, link="nothere")
elif case == "link-via-symlink":
    add("a", tarfile.SYMTYPE, link="/etc")
    add("evil-link", tarfile.LNKTYPE, link="a/passwd")
elif case == "sym-root":
    add("a", tarfile.SYMTYPE, link="/")
    add("a/ctool-archive-test-evil", data=b"x")
elif case == "sym-up":
    add("a", tarfile.SYMTYPE, link="../..")
    add("a/evil-up", data=b"x")
elif case == "sym-outside":
    add("d", tarfile.DIRTYPE, mode=0o755)
    add("d/a", tarfile.SYMTYPE, link=outside)
    add("d/a/evil-sym", data=b"x")
elif case == "sym-dir-entry":
    add("a", tarfile.SYMTYPE, link=outside)
    add("a/evil-dir", tarfile.DIRTYPE, mode=0o755)
elif case == "device":
    add("null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
elif case == "block":
    add("sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0))
elif case == "setuid":
    add("suid", data=b"#!/bin/sh\n", mode=0o4755)
elif case == "setgid":
    add("sgid", data=b"#!/bin/sh\n", mode=0o2755)
elif case == "trusted-xattr":
    add("tx", data=b"x", pax={"SCHILY.xattr.trusted.evil": "1"})
elif case == "security-xattr":
    add("sx", data=b"x", pax={"SCHILY.xattr.security.evil": "1"})
elif case == "opaque-plain":
    add("od", tarfile.DIRTYPE, mode=0o755, pax={"SCHILY.xattr.trusted.overlay.opaque": "y"})
elif case == "conflict":
    add("x", tarfile.DIRTYPE, mode=0o755)
    add("x", data=b"file now")
elif case == "trusted-ok":
    add("null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
    add("suid", data=b"#!/bin/sh\n", mode=0o4755)
    add("tx", data=b"x", pax={"SCHILY.xattr.trusted.evil": "1"})
elif case == "decisions":
    add("dup", data=b"one")
    add("dup", data=b"two")
    add("s", tarfile.SYMTYPE, link="/etc")
    add("s", data=b"a file now")
    add("t", tarfile.SYMTYPE, link="good")
    add("t2", tarfile.LNKTYPE, link="t")
    add("wh", tarfile.CHRTYPE, mode=0, dev=(0, 0))
    add("deep/er/file", data=b"parents made")
    add("deep", tarfile.DIRTYPE, mode=0o700)
elif case == "big":
    add("big", data=bytes(1 << 20) + b"end")
else:
    sys.exit("unknown case " + case)
t.close()
PY
}

# refused CASE [TEXT] [IMPORT OPTIONS...]: importing the archive of CASE
# fails with one line (holding TEXT), exit 1, and nothing is left: no
# image, no new layer, nothing staged, nothing made outside the store.
refused() {
	local case=$1 text=${2:-} before
	shift 2 || shift $#
	mktar "$case" "$T/$case.tar"
	before=$(store_layers)
	run --separate-stderr ctool import "$@" "$T/$case.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	[[ $stderr == *"$text"* ]] || fail "expected '$text' in: $stderr"
	assert_nothing_left "$before"
}

assert_nothing_left() {
	run ctool images
	assert_status 0
	! printf '%s\n' "$output" | awk '{ print $1 }' | grep -qx imp || fail "an image was made"
	[ "$(store_layers)" = "$1" ] || fail "layers left:" "$(store_layers)"
	[ -z "$(ls -A "$CTOOL_STORE/tmp")" ] || fail "staging left:" "$(ls -A "$CTOOL_STORE/tmp")"
	ctool gc
	[ -z "$(ls -A "$CTOOL_STORE/tmp")" ] || fail "tmp left after gc"
	[ -z "$(ls -A "$OUTSIDE")" ] || fail "made outside:" "$(ls -A "$OUTSIDE")"
	[ -z "$(find "$T" "$CTOOL_STORE" -name 'evil*')" ] || fail "made:" "$(find "$T" -name 'evil*')"
	[ ! -e /ctool-archive-test-evil ] || fail "made /ctool-archive-test-evil"
}

@test "import refuses a '..' component" {
	refused dotdot "'sub/../../evil-dotdot'"
}

@test "import refuses an absolute name" {
	refused absolute "absolute"
}

@test "import refuses hard links out of the tree, absolute, or to nothing" {
	refused link-out "'evil-link'"
	refused link-abs "'evil-link'"
	refused link-missing "'evil-link'"
}

@test "import refuses a hard link through a symlink" {
	refused link-via-symlink "'evil-link'"
	refused link-via-symlink "'evil-link'" --trusted
}

@test "import never writes through a symlink (a -> / then a/x)" {
	refused sym-root "'a/ctool-archive-test-evil'"
	refused sym-root "symlink" --trusted
}

@test "import never writes through a symlink (a -> ../.. then a/x)" {
	refused sym-up "'a/evil-up'"
}

@test "import never writes through a symlink (to a folder outside, file or directory)" {
	refused sym-outside "'d/a/evil-sym'"
	refused sym-dir-entry "'a/evil-dir"
}

@test "import refuses device nodes without --trusted" {
	refused device "'null'"
	refused block "'sda'"
}

@test "import refuses set-user-ID and set-group-ID files without --trusted" {
	refused setuid "'suid'"
	refused setgid "'sgid'"
}

@test "import refuses trusted.* and security.* xattrs without --trusted" {
	refused trusted-xattr "trusted.evil"
	refused security-xattr "security.evil"
	refused opaque-plain "trusted.overlay.opaque"
}

@test "import refuses a truncated or corrupt archive" {
	local before
	mktar big "$T/big.tar"
	head -c 600000 "$T/big.tar" >"$T/truncated.tar"
	before=$(store_layers)
	run --separate-stderr ctool import "$T/truncated.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	assert_nothing_left "$before"
	zstd -q -c "$T/big.tar" >"$T/big.tar.zst"
	head -c 200 "$T/big.tar.zst" >"$T/corrupt.tar.zst"
	printf 'garbage that is no zstd frame' >>"$T/corrupt.tar.zst"
	run --separate-stderr ctool import "$T/corrupt.tar.zst" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	assert_nothing_left "$before"
	# cut between two entries: only the missing end blocks tell
	head -c "$(python3 -c 'import sys, tarfile; print(tarfile.open(sys.argv[1]).getmembers()[-1].offset)' "$T/big.tar")" \
		"$T/big.tar" >"$T/cut.tar"
	run --separate-stderr ctool import "$T/cut.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	assert_nothing_left "$before"
	printf 'not a tar at all\n' >"$T/text.tar"
	run --separate-stderr ctool import "$T/text.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	assert_nothing_left "$before"
}

@test "import refuses a directory and a file of one name" {
	refused conflict "'x'"
}

@test "import --trusted takes device nodes, set-id files and trusted.* xattrs" {
	local before l
	mktar trusted-ok "$T/t.tar"
	before=$(store_layers)
	ctool import --trusted "$T/t.tar" imp
	l=$(new_layers "$before")
	[ "$(stat -c '%F %t:%T' "$l/null")" = "character special file 1:3" ]
	[ "$(stat -c %a "$l/suid")" = 4755 ]
	[ "$(getfattr -h --only-values -n trusted.evil "$l/tx")" = 1 ]
}

@test "import: a later entry replaces an earlier one; links to symlinks are kept" {
	local before l
	mktar decisions "$T/d.tar"
	before=$(store_layers)
	ctool import "$T/d.tar" imp
	l=$(new_layers "$before")
	[ "$(cat "$l/dup")" = two ]
	[ -f "$l/s" ]
	[ ! -L "$l/s" ]
	[ "$(cat "$l/s")" = "a file now" ]
	[ -L "$l/t2" ]
	[ "$(readlink "$l/t2")" = good ]
	[ "$(stat -c %h "$l/t2")" = 2 ]
	[ "$(stat -c '%F %t:%T' "$l/wh")" = "character special file 0:0" ]
	[ "$(cat "$l/deep/er/file")" = "parents made" ]
	[ "$(stat -c %a "$l/deep")" = 700 ]
}

@test "import of a --layers archive checks its manifest and layers" {
	local before
	base_image
	ctool export --layers base "$T/l.tar"
	before=$(store_layers)
	# a newer format
	mkdir "$T/x" && tar -C "$T/x" -xf "$T/l.tar"
	sed -i '1s/.*/ctool-layers 2/' "$T/x/ctool-layers"
	tar -C "$T/x" -cf "$T/newer.tar" ctool-layers layers
	run --separate-stderr ctool import "$T/newer.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	[[ $stderr == *"format 2"* ]] || fail "$stderr"
	assert_nothing_left "$before"
	# an entry for a layer the manifest does not list
	sed -i '1s/.*/ctool-layers 1/' "$T/x/ctool-layers"
	cp -a "$T/x/layers/1" "$T/x/layers/2"
	tar -C "$T/x" -cf "$T/extra.tar" ctool-layers layers
	run --separate-stderr ctool import "$T/extra.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	[[ $stderr == *"'layers/2"* ]] || fail "$stderr"
	assert_nothing_left "$before"
	# a hard link from one layer to another
	printf 'ctool-layers 1\nlayers 2\nlayer 1 a\nlayer 2 b\nconfig 0\n' >"$T/x/ctool-layers"
	ln "$T/x/layers/1/etc/passwd" "$T/x/layers/2/passwd-link"
	rm "$T/x/layers/2/etc/passwd"
	tar -C "$T/x" -cf "$T/cross.tar" ctool-layers layers
	run --separate-stderr ctool import "$T/cross.tar" imp
	assert_status 1
	assert_one_error_line "ctool: import: "
	[[ $stderr == *"another layer"* ]] || fail "$stderr"
	assert_nothing_left "$before"
}

@test "a --layers archive brings its image config back" {
	base_image
	ctool export --layers base "$T/l.tar"
	mkdir "$T/x" && tar -C "$T/x" -xf "$T/l.tar"
	printf 'ctool-layers 1\nsource image base\nlayers 1\nlayer 1 made by hand\nnew-key ignored\nconfig 3\nRUN httpd -f\n\nENV A=b\n' \
		>"$T/x/ctool-layers"
	tar -C "$T/x" -cf "$T/cfg.tar" ctool-layers layers
	ctool import "$T/cfg.tar" withcfg
	ctool export --layers withcfg "$T/again.tar"
	tar -xOf "$T/again.tar" ctool-layers >"$T/m"
	grep -qx 'layer 1 made by hand' "$T/m"
	diff <(sed -n '/^config /,$p' "$T/m") <(printf 'config 3\nRUN httpd -f\n\nENV A=b\n')
}

# stalled_import: start an import of a tar whose writer stops midway and
# holds the fifo open; sets pid (the import), wpid (the writer) and
# before (the store's layers), and waits until the import is extracting.
stalled_import() {
	mktar big "$T/big.tar"
	before=$(store_layers)
	mkfifo "$T/fifo"
	(
		head -c 300000 "$T/big.tar"
		exec sleep 60
	) >"$T/fifo" &
	wpid=$!
	"$CTOOL" import "$T/fifo" imp 2>"$T/err" &
	pid=$!
	for _ in $(seq 100); do
		compgen -G "$CTOOL_STORE/tmp/*/big" >/dev/null && break
		sleep 0.05
	done
	compgen -G "$CTOOL_STORE/tmp/*/big" >/dev/null || fail "the import never started"
}

@test "import killed with SIGKILL midway leaves only what gc removes" {
	local before wpid pid
	stalled_import
	kill -9 "$pid"
	wait "$pid" || true
	kill "$wpid"
	wait "$wpid" || true
	run ctool images
	! printf '%s\n' "$output" | awk '{ print $1 }' | grep -qx imp || fail "an image was made"
	[ -n "$(ls -A "$CTOOL_STORE/tmp")" ] || fail "the kill came too late to test anything"
	ctool gc
	assert_nothing_left "$before"
}

@test "import interrupted with SIGINT leaves nothing" {
	local before wpid pid rc=0
	stalled_import
	kill -INT "$pid"
	wait "$pid" || rc=$?
	kill "$wpid"
	wait "$wpid" || true
	[ "$rc" -eq 130 ] || fail "exit $rc, expected 130:" "$(cat "$T/err")"
	grep -qx 'ctool: import: interrupted; nothing was created' "$T/err"
	assert_nothing_left "$before"
}
