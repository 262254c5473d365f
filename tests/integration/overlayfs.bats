#!/usr/bin/env bats
# ctool-overlayfs, the FUSE overlay daemon: mounting, the merged view, a
# differential run against the kernel's overlayfs on the same layers,
# interchangeability of the upper layers both ways, copy-up, a crash, and
# what a user inside the mount (uid 1000) can reach through it.

load helpers

setup_file() {
	OVL=${CTOOL_OVERLAYFS:-$(dirname "$CTOOL")/fuse/ctool-overlayfs}
	export OVL
	[ -x "$OVL" ] || fail "ctool-overlayfs not found at '$OVL' (set CTOOL_OVERLAYFS=...)"
	[ -c /dev/fuse ] || fail "/dev/fuse is missing"
}

setup() {
	T=$BATS_TEST_TMPDIR
	mk_lowers "$T/l1" "$T/l2"
}

# Every daemon this test started must be gone, and nothing left mounted.
teardown() {
	local m pids errs=""
	cd / || true
	m=$(mounts_under "$T")
	if [ -n "$m" ]; then
		errs+="still mounted: $m"$'\n'
		while IFS= read -r n; do umount -l "$n" 2>/dev/null || true; done <<<"$m"
	fi
	pids=$(pgrep -f "ctool-overlayfs.*$T" || true)
	if [ -n "$pids" ]; then
		errs+="daemons still running: ${pids//$'\n'/ }"$'\n'
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null || true
	fi
	[ -z "$errs" ] || fail "teardown: $errs"
}

# ---------------------------------------------------------------------------
# helpers

# mk_lowers L1 L2: two small lower layers (L1 on top) in milliseconds.
mk_lowers() {
	local a=$1 b=$2
	mkdir -p "$a" "$b"
	# the bottom layer
	mkdir -p "$b/dboth/sub" "$b/dlow/deep" "$b/dgone" "$b/dnonempty" "$b/dtarget"
	echo both-bottom >"$b/dboth/fb"
	echo shadowed >"$b/dboth/shared"
	echo deep >"$b/dlow/deep/f"
	echo low >"$b/dlow/f"
	ln -s f "$b/dlow/sl"
	echo gone >"$b/dgone/a"
	echo gone >"$b/dgone/b"
	echo keep >"$b/dnonempty/keep"
	echo t >"$b/dtarget/t"
	echo l2 >"$b/l2file"
	echo l2b >"$b/l2file2"
	echo l2only >"$b/l2only"
	echo shadowed >"$b/hidden"
	echo hard >"$b/hard1"
	ln "$b/hard1" "$b/hard2"
	printf 'x' >"$b/lowx"
	setfattr -n user.keep -v k "$b/lowx"
	printf 'y' >"$b/lowx2"
	setfattr -n user.keep -v k "$b/lowx2"
	mkfifo "$b/fifo0"
	# for the exchanges (renameat2 RENAME_EXCHANGE) of ops_script
	mkdir -p "$b/xchg/d1/s" "$b/xchg/d2" "$b/xchg/d3" "$b/xchg/m1" "$b/xchg/p1/d4" "$b/xchg/p2/q"
	for f in f1 f2 f3 f4 f5 f6 f7 f8; do echo "$f" >"$b/xchg/$f"; done
	echo a >"$b/xchg/d1/a"
	echo b >"$b/xchg/d1/s/b"
	ln -s a "$b/xchg/d1/sl"
	echo c >"$b/xchg/d2/c"
	setfattr -n user.d -v 2 "$b/xchg/d2"
	echo e >"$b/xchg/d3/e"
	chown -R 1000:1000 "$b/xchg/d3"
	echo x >"$b/xchg/m1/x"
	echo pf >"$b/xchg/p1/pf"
	echo h >"$b/xchg/p1/d4/h"
	echo q >"$b/xchg/p2/q/q"
	# the top layer
	mkdir -p "$a/dboth/sub" "$a/dtop"
	echo both-top >"$a/dboth/ft"
	echo top-wins >"$a/dboth/shared"
	echo l1 >"$a/l1file"
	echo mode >"$a/l1mode"
	chmod 0640 "$a/l1mode"
	echo hidden-top >"$a/hidden"
	ln -s l1file "$a/l1link"
	chown -R 1000:1000 "$a/dtop"
	mkdir -p "$a/xchg/m1"
	echo y >"$a/xchg/m1/y"
	echo top >"$a/xchg/top"
	ln -s f1 "$a/xchg/sl"
}

# The ctool-overlayfs daemon over L1:L2 with upper U and work W on M
# (and more options in $4).
fmount() {
	local m=$1 u=$2 w=$3
	mkdir -p "$m" "$u" "$w"
	"$OVL" -o "lowerdir=$T/l1:$T/l2,upperdir=$u,workdir=$w,pidfile=$w.pid${4:+,$4}" "$m"
}

# Unmount a ctool-overlayfs mount and wait for its daemon to exit.
fumount() {
	local m=$1 w=$2 pid
	pid=$(cat "$w.pid")
	umount "$m" || return
	wait_gone "$pid" || fail "daemon $pid still running after umount"
}

# Wait for a copy to show in the upper at $1: a copy-up waits in the
# workdir for up to copyup_batch ms (25 by default) before it is shown.
wait_shown() {
	local i
	for i in $(seq 100); do
		[ -e "$1" ] && return 0
		sleep 0.02
	done
	return 1
}

# The kernel's overlayfs on the same layers (options $4 in place of the
# features ctool-overlayfs does not have).
kmount() {
	local m=$1 u=$2 w=$3 opts=${4:-index=off,redirect_dir=off,metacopy=off}
	mkdir -p "$m" "$u" "$w"
	mount -t overlay overlay -o "lowerdir=$T/l1:$T/l2,upperdir=$u,workdir=$w,$opts" "$m"
}

# need_linux VERSION WHAT: skip unless this kernel is Linux VERSION or
# later, saying that it has no WHAT.
need_linux() {
	local v
	v=$(uname -r)
	v=${v%%-*}
	if [ "$(printf '%s\n%s\n' "$v" "$1" | sort -V | head -1)" != "$1" ]; then
		skip "Linux $v has no $2 ($1 and later have it)"
	fi
}

# A listing of a tree: names, types, modes, owners, link counts (not of
# directories: a merged one reports 1), symlink targets, contents, xattrs
# (trusted.overlay.* included). No times, no inode numbers.
ovl_list() {
	(
		cd "$1" || exit 1
		find . -mindepth 1 -printf '%p %y %m %U:%G %l\n' | LC_ALL=C sort
		find . -mindepth 1 ! -type d ! -type c -printf '%p nlink=%n\n' | LC_ALL=C sort
		find . -mindepth 1 -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum
		find . -mindepth 1 -print0 | LC_ALL=C sort -z |
			xargs -0 -r getfattr -h -d -m - -e hex 2>/dev/null | drop_origin
	)
}

# Drop trusted.overlay.origin and .impure from getfattr's output: the
# record of the lower file a copy came from, and the mark of a directory
# holding such copies. Both drivers write them alike (the st_ino test
# compares them), but with redirect_dir=off the kernel cannot rename a
# lower directory and mv copies it, with no origins, where
# ctool-overlayfs renames it with its copies. (Device nodes are listed
# without link counts above: the kernel makes every whiteout a link of
# one shared inode.)
drop_origin() {
	awk 'BEGIN { RS = ""; ORS = "\n\n" }
	{
		n = split($0, l, "\n"); out = l[1]; k = 0
		for (i = 2; i <= n; i++)
			if (l[i] !~ /^trusted\.overlay\.(origin|impure)=/) { out = out "\n" l[i]; k++ }
		if (k) print out
	}'
}

# exchange FLAGS OLD NEW: renameat2(OLD, NEW) with FLAGS made of x
# (RENAME_EXCHANGE), n (RENAME_NOREPLACE) and w (RENAME_WHITEOUT). Says
# nothing when it works, the errno's name when it fails.
#
# The kernel's overlayfs without redirect_dir refuses to move a directory
# with lower parts (EXDEV), where ctool-overlayfs copies it up with its
# tree and moves it, as for a plain rename. Like mv for a plain rename,
# an exchange refused with EXDEV is then done by hand through a temp
# name: the side the kernel can move is renamed first, and a directory
# with lower parts is copied (mv's fallback) straight to its new name, so
# that it is opaque only where a lower has that name (a copy renamed into
# a merged directory would be made opaque by the kernel anyway). That
# leaves the upper that ctool-overlayfs writes; it says "EXDEV: exchanged
# by copying", which the differential test takes for success.
exchange() {
	python3 -c '
import ctypes, errno, os, subprocess, sys

libc = ctypes.CDLL(None, use_errno=True)

def rename2(a, b, flags=0):
	if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) == 0:
		return 0
	return ctypes.get_errno()

def mv(a, b):
	subprocess.run(["mv", "-T", a, b], check=True)

flags = sum({"n": 1, "x": 2, "w": 4}[c] for c in sys.argv[1])
a, b = sys.argv[2], sys.argv[3]
e = rename2(a, b, flags)
if e == errno.EXDEV and flags == 2:
	tmp = os.path.join(os.path.dirname(a), ".xchg-tmp")
	if rename2(a, tmp) == 0:
		mv(b, a)
		mv(tmp, b)
	else:
		if rename2(b, tmp) != 0:
			mv(b, tmp)
		mv(a, b)
		mv(tmp, a)
	print("EXDEV: exchanged by copying")
elif e:
	print(errno.errorcode[e])
	sys.exit(1)
' "$@"
}

# Every name below merged root $1 (upper $2) with the inode numbers stat
# and readdir show for it, each told by what it is the number of: a file
# of a lower layer ("l2/hard1"), the upper file of that name ("upper"),
# or neither; and "dev" where st_dev is not the mount's.
ino_list() {
	python3 - "$1" "$2" "$T/l1" "$T/l2" <<'PY'
import os, sys
root, upper, lowers = sys.argv[1], sys.argv[2], sys.argv[3:]
known = {}
for l in lowers:
	for d, ds, fs in os.walk(l):
		for n in ds + fs:
			p = os.path.join(d, n)
			name = os.path.basename(l) + "/" + os.path.relpath(p, l)
			ino = os.lstat(p).st_ino
			known[ino] = min(known.get(ino, name), name)
def what(ino, rel):
	if ino in known:
		return known[ino]
	try:
		if os.lstat(os.path.join(upper, rel)).st_ino == ino:
			return "upper"
	except OSError:
		pass
	return "other"
dev = os.lstat(root).st_dev
def walk(d):
	with os.scandir(d) as it:
		ents = sorted(it, key=lambda e: e.name)
	for e in ents:
		p = os.path.join(d, e.name)
		rel = os.path.relpath(p, root)
		st = os.lstat(p)
		print(rel, "st=" + what(st.st_ino, rel), "d=" + what(e.inode(), rel),
		      "dev" if st.st_dev != dev else "")
		if e.is_dir(follow_symlinks=False):
			walk(p)
walk(root)
PY
}

# The steps of the st_ino test, in merged root $1: copy-ups of files, of
# directories, of one name of a lower hard link, a hard link of a copy,
# renames of copies and of a lower directory.
ino_script() {
	cd "$1" || return
	echo x >>l1file
	chmod 0600 l2only
	touch dlow/new
	echo x >>dboth/fb
	echo x >>hard1
	ln l2file2 l2file2.link
	mv l1file dtop/l1moved
	mv dboth/fb fb.moved
	mv dlow dlow.moved
	mkdir newd
	touch newd/f
}

# The origins and impure marks in upper $1 of what ino_script copies
# (not the kernel's origin of the upper root, which index=on records; not
# the impure mark of the lower directory renamed, which ctool-overlayfs
# copies with its tree where the kernel redirects to it).
ino_marks() (
	local p
	cd "$1" || return
	for p in dtop/l1moved l2only dlow.moved fb.moved hard1 l2file2 l2file2.link dboth dtop; do
		echo "$p: $(getfattr -h -e hex -n trusted.overlay.origin "$p" 2>/dev/null | grep =)"
	done
	for p in . dtop dboth newd; do
		echo "$p: $(getfattr -h -n trusted.overlay.impure "$p" 2>/dev/null | grep =)"
	done
)

# The scripted sequence, run in the merged root $1: every step prints its
# command, its status and what it said.
ops_script() {
	cd "$1" || return
	t() {
		local out rc
		rc=0
		out=$("$@" 2>&1) || rc=$?
		printf '%s -> %s %s\n' "$*" "$rc" "$out"
	}
	t sh -c 'echo hello >newf'
	t sh -c 'echo more >>l1file'
	t sh -c 'echo more >>dboth/fb'
	t truncate -s 3 l2only
	t mv l1file renamed
	t mv dboth dboth2
	t mv dlow dlow2
	t mkdir newd
	t touch newd/x
	t mv newd newd2
	t mkdir newd3
	t mv newd3 dtop/
	t ln newf newf.link
	t ln l2file2 l2file2.link
	t ln -s target sym1
	t rm l2file
	t rm hidden
	t rm -r dgone
	t rmdir dnonempty
	t mkdir dgone
	t touch dgone/newin
	t ls dgone
	t chmod 0600 renamed
	t chmod 0751 dtop
	t chown 1000:1000 newf
	t chown 1000:1000 l1mode
	t touch -d '2020-01-01 00:00:00' l2file2
	t setfattr -n user.a -v 1 newf
	t setfattr -n user.b -v 2 lowx
	t setfattr -x user.keep lowx2
	t getfattr -d lowx lowx2 newf
	t mkfifo fifo1
	t mknod cdev c 1 3
	t mv -T dtop dtarget
	t mv -T renamed dboth2
	t rmdir dboth2
	t rm -f fifo0
	t mkdir -p a/b/c
	t sh -c 'echo deep >a/b/c/f'
	t mv a/b/c cc
	t rm -r a
	t cat dboth2/fb dboth2/shared dlow2/deep/f cc/f
	t ls -a dboth2
	# renameat2(RENAME_EXCHANGE): the refusals first
	cd xchg || return
	t exchange x nope f1
	t exchange x f1 nope
	t rm f8
	t exchange x f1 f8
	t exchange x f1 f1
	t exchange xn f1 f2
	t exchange xw f1 f2
	t exchange w f1 f9
	t exchange x d1 d1/s
	t exchange x d1/s/b d1
	t mkdir -p ud/in/deep
	t exchange x ud/in/deep ud
	t exchange x ud ud/in
	t cat f1 f2 d1/s/b
	# files: lower ones of either layer, new, copied up, a symlink, and
	# across directories
	t exchange x f1 f2
	t exchange x top f1
	t sh -c 'echo u1 >u1; echo u2 >u2; echo u3 >p1/u3'
	t exchange x f3 u1
	t exchange x u1 u2
	t sh -c 'echo more >>f4'
	t exchange x f4 top
	t exchange x sl f5
	t exchange x f6 p1/pf
	t exchange x p1/u3 p2/q/q
	t cat f1 f2 f3 f4 f5 f6 top u1 u2 p1/pf p1/u3 p2/q/q
	t readlink f5
	# directories that only the upper has, with files and each other
	t mkdir -p ua/sub ue p1/uc
	t touch ua/sub/f ue/g
	t exchange x ua f7
	t exchange x p1/uc u2
	t exchange x ud ue
	t ls -R f7 ua u2 p1/uc ud ue
	# directories with lower parts, copied up with their trees (see
	# exchange above): with an upper file, a lower file, an upper
	# directory, and a merged one (a name removed in it) with a lower one
	# in another directory
	t exchange x d1 u1
	t exchange x d2 f1
	t exchange x d3 ue
	t rm m1/x
	t exchange x m1 p1/d4
	t ls -R d1 u1 d2 f1 d3 ue m1 p1/d4
	t cat d1 d2 u1/a u1/s/b u1/sl f1/c ud/g ue/e m1/h p1/d4/y
	t getfattr -n user.d f1
	cd ..
}

# ---------------------------------------------------------------------------
# 1. mounting

@test "mount, pidfile, umount: the daemon exits" {
	fmount "$T/m" "$T/u" "$T/w"
	mounted "$T/m" || fail "nothing mounted"
	[ "$(mount_fstype "$T/m")" = fuse.ctool-overlayfs ] || fail "fstype $(mount_fstype "$T/m")"
	awk -v p="$T/m" '$5 == p { for (i = 7; $i != "-"; i++); print $(i + 2) }' \
		/proc/self/mountinfo | grep -qx ctool || fail "source is not ctool"
	mount_opts "$T/m" | grep -q allow_other || fail "no allow_other: $(mount_opts "$T/m")"
	mount_opts "$T/m" | grep -q default_permissions || fail "no default_permissions"
	pid=$(cat "$T/w.pid")
	[ "$(stat -c %a "$T/w.pid")" = 644 ] || fail "pidfile mode $(stat -c %a "$T/w.pid")"
	grep -q ctool-overlayfs "/proc/$pid/cmdline" || fail "pidfile holds $pid, not the daemon"
	[ "$(cat "$T/m/dboth/shared")" = top-wins ] || fail "merged view"
	umount "$T/m"
	wait_gone "$pid" || fail "daemon $pid still running"
	! mounted "$T/m"
}

@test "bad options: one line on stderr, non-zero, nothing mounted" {
	mkdir -p "$T/m" "$T/u" "$T/w"
	run --separate-stderr "$OVL" -o "lowerdir=$T/nope,upperdir=$T/u,workdir=$T/w" "$T/m"
	[ "$status" -ne 0 ] || fail "status 0"
	assert_one_error_line "ctool-overlayfs: "
	run --separate-stderr "$OVL" -o "lowerdir=$T/l1,upperdir=$T/u" "$T/m"
	[ "$status" -ne 0 ] && assert_one_error_line "ctool-overlayfs: "
	run --separate-stderr "$OVL" -o "lowerdir=$T/l1,bogus=1" "$T/m"
	[ "$status" -ne 0 ] && assert_one_error_line "ctool-overlayfs: "
	run --separate-stderr "$OVL" -o "lowerdir=$T/l1,upperdir=$T/u,workdir=$T/w" "$T/nodir"
	[ "$status" -ne 0 ] && assert_one_error_line "ctool-overlayfs: "
	run --separate-stderr "$OVL" -o "upperdir=$T/u,workdir=$T/w" "$T/m"
	[ "$status" -ne 0 ] && assert_one_error_line "ctool-overlayfs: "
	! mounted "$T/m"
	! mounted "$T/nodir"
}

@test "escaped option values and mount.fuse3 options" {
	mkdir -p "$T/a:b,c" "$T/m" "$T/u" "$T/w"
	echo esc >"$T/a:b,c/f"
	"$OVL" overlay "$T/m" -o "rw,dev,suid,nofail,lowerdir=$T/a\\:b\\,c:$T/l1,upperdir=$T/u,workdir=$T/w,pidfile=$T/w.pid"
	[ "$(cat "$T/m/f")" = esc ] && [ "$(cat "$T/m/l1file")" = l1 ] || fail "layers not seen"
	fumount "$T/m" "$T/w"
}

@test "mount -t fuse.ctool-overlayfs through mount.fuse3" {
	command -v mount.fuse3 >/dev/null || skip "mount.fuse3 (fuse3) is not installed"
	mkdir -p "$T/m" "$T/u" "$T/w"
	# mount.fuse3 runs "ctool-overlayfs overlay MNT -o ..." found on the
	# PATH when installed; before that, the "PROG#SOURCE" form names it
	if PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v ctool-overlayfs >/dev/null; then
		mount -t fuse.ctool-overlayfs overlay "$T/m" \
			-o "lowerdir=$T/l1:$T/l2,upperdir=$T/u,workdir=$T/w,pidfile=$T/w.pid"
	else
		mount -t fuse "$OVL#overlay" "$T/m" \
			-o "lowerdir=$T/l1:$T/l2,upperdir=$T/u,workdir=$T/w,pidfile=$T/w.pid"
	fi
	[ "$(mount_fstype "$T/m")" = fuse.ctool-overlayfs ] || fail "fstype $(mount_fstype "$T/m")"
	[ "$(cat "$T/m/l2file")" = l2 ] || fail "merged view"
	fumount "$T/m" "$T/w"
}

@test "a /proc/self/fd/N mountpoint" {
	mkdir -p "$T/m" "$T/u" "$T/w"
	exec 7<"$T/m"
	"$OVL" -o "lowerdir=$T/l1:$T/l2,upperdir=$T/u,workdir=$T/w,pidfile=$T/w.pid" /proc/self/fd/7
	exec 7<&-
	mounted "$T/m" || fail "not mounted on the directory of fd 7"
	pid=$(cat "$T/w.pid")
	! ls -l "/proc/$pid/fd" | grep -q -- "-> $T/m\$" || fail "the daemon kept fd 7"
	[ "$(cat "$T/m/l1file")" = l1 ]
	fumount "$T/m" "$T/w"
}

@test "read-only: lower layers only" {
	mkdir -p "$T/m"
	"$OVL" -o "lowerdir=$T/l1:$T/l2,pidfile=$T/ro.pid" "$T/m"
	[ "$(cat "$T/m/dboth/shared")" = top-wins ]
	run touch "$T/m/x"
	[ "$status" -ne 0 ]
	pid=$(cat "$T/ro.pid")
	umount "$T/m"
	wait_gone "$pid"
}

# ---------------------------------------------------------------------------
# 2. the merged view

@test "whiteouts and opaque directories written by the kernel are honoured" {
	kmount "$T/m" "$T/u" "$T/w"
	rm "$T/m/l2file" "$T/m/dboth/fb"
	rm -r "$T/m/dgone"
	mkdir "$T/m/dgone"
	echo new >"$T/m/dgone/new"
	umount "$T/m"
	[ "$(getfattr --only-values -n trusted.overlay.opaque "$T/u/dgone")" = y ] ||
		fail "the kernel did not make dgone opaque"
	fmount "$T/m" "$T/u" "$T/w2"
	[ ! -e "$T/m/l2file" ] && [ ! -e "$T/m/dboth/fb" ] || fail "whiteouts ignored"
	[ "$(ls -A "$T/m/dgone")" = new ] || fail "dgone holds: $(ls -A "$T/m/dgone")"
	run getfattr -n trusted.overlay.opaque "$T/m/dgone"
	[ "$status" -ne 0 ] || fail "trusted.overlay.opaque is visible"
	run setfattr -n trusted.overlay.opaque -v y "$T/m/dboth"
	[ "$status" -ne 0 ] || fail "trusted.overlay.* could be set"
	fumount "$T/m" "$T/w2"
}

@test "readdir: a reader that goes on while names go and others read skips and repeats nothing" {
	mkdir -p "$T/l2/many"
	(cd "$T/l2/many" && seq -f 'f%05g' 3000 | xargs touch)
	fmount "$T/m" "$T/u" "$T/w"
	run python3 - "$T/m/many" <<'PY'
import os, sys
d = sys.argv[1]
a = os.scandir(d)
seen = [next(a).name for _ in range(200)]
for n in seen[:150]:
    os.unlink(os.path.join(d, n))
other = sorted(e.name for e in os.scandir(d))   # a second reader, from the start
assert len(other) == 2850, len(other)
seen += [e.name for e in a]
dups = len(seen) - len(set(seen))
missing = set("f%05d" % i for i in range(1, 3001)) - set(seen[:150]) - set(seen)
print(len(seen), dups, len(missing))
PY
	[ "$status" -eq 0 ] || fail "python: $output"
	read -r n dups missing <<<"$output"
	[ "$dups" = 0 ] && [ "$missing" = 0 ] || fail "read $n names, $dups twice, $missing missed"
	fumount "$T/m" "$T/w"
}

@test "readdir merges the layers: union, no duplicates, dot entries" {
	fmount "$T/m" "$T/u" "$T/w"
	run ls -a "$T/m/dboth"
	[ "$(echo "$output" | tr '\n' ' ')" = ". .. fb ft shared sub " ] || fail "dboth: $output"
	[ -z "$(ls -a "$T/m" | sort | uniq -d)" ] || fail "duplicates in the root"
	[ "$(cat "$T/m/hidden")" = hidden-top ]
	# a readdir after changes sees them (and not the removed)
	touch "$T/m/dboth/added"
	rm "$T/m/dboth/fb"
	[ "$(ls "$T/m/dboth" | tr '\n' ' ')" = "added ft shared sub " ] || fail "$(ls "$T/m/dboth")"
	fumount "$T/m" "$T/w"
}

# ---------------------------------------------------------------------------
# 3. differential: the same operations on the kernel overlay and on ours

@test "differential: same results and same upper as the kernel overlay" {
	kmount "$T/km" "$T/ku" "$T/kw"
	(ops_script "$T/km") >"$T/k.out" 2>&1
	ovl_list "$T/km" >"$T/k.view"
	umount "$T/km"
	fmount "$T/fm" "$T/fu" "$T/fw"
	(ops_script "$T/fm") >"$T/f.out" 2>&1
	ovl_list "$T/fm" >"$T/f.view"
	fumount "$T/fm" "$T/fw"
	# the one documented difference: with redirect_dir=off the kernel
	# refuses to rename a lower directory (EXDEV) and mv copies it instead,
	# which words the same refusal differently; ctool-overlayfs renames it
	sed -i "s/mv: inter-device move failed: \('[^']*'\) to \('[^']*'\); unable to remove target:/mv: cannot move \1 to \2:/" "$T/k.out"
	# and so with RENAME_EXCHANGE, which the script's exchange() then does
	# by hand (copying the directory as ctool-overlayfs copies it up): the
	# kernel's EXDEV counts as the success that ctool-overlayfs answers
	sed -i 's/^\(exchange x .*\) -> 0 EXDEV: exchanged by copying$/\1 -> 0 /' "$T/k.out"
	diff -u "$T/k.out" "$T/f.out" || fail "the operations went differently"
	diff -u "$T/k.view" "$T/f.view" || fail "the merged views differ"
	ovl_list "$T/ku" >"$T/k.upper"
	ovl_list "$T/fu" >"$T/f.upper"
	diff -u "$T/k.upper" "$T/f.upper" || fail "the upper layers differ"
}

@test "RENAME_EXCHANGE: known names, the working directory and open files follow their objects" {
	fmount "$T/m" "$T/u" "$T/w"
	cd "$T/m/xchg"
	[ "$(cat d1/s/b)" = b ] && [ "$(cat f2)" = f2 ] || fail "the lowers read wrong"
	echo u >u
	exec 6>>u 7<f3
	# a lower directory known with its children, the working directory
	# inside it, and a lower file
	cd d1/s
	exchange x "$T/m/xchg/d1" "$T/m/xchg/f2" || fail "exchange d1 f2"
	[ "$(readlink /proc/self/cwd)" = "$T/m/xchg/f2/s" ] || fail "cwd: $(readlink /proc/self/cwd)"
	[ "$(cat b)" = b ] && [ "$(cat ../a)" = a ] || fail "read through the working directory"
	echo new >n
	[ "$(cat "$T/u/xchg/f2/s/n")" = new ] || fail "made in the wrong directory"
	cd "$T/m/xchg"
	[ "$(cat d1)" = f2 ] && [ "$(cat f2/s/b f2/s/n | tr '\n' ' ')" = "b new " ] || fail "names"
	[ ! -e d1/s ] && [ -d "$T/l2/xchg/d1/s" ] || fail "d1 still shows s"
	# an open upper file and an open lower one (copied up by the exchange)
	exchange x u f3 || fail "exchange u f3"
	echo more >&6
	[ "$(cat f3 | tr '\n' ' ')" = "u more " ] || fail "f3: $(cat f3)"
	[ "$(cat <&7)" = f3 ] && [ "$(cat u)" = f3 ] || fail "u: $(cat u)"
	exec 6>&- 7<&-
	# and back again: the nodes swap once more
	exchange x f3 u && exchange x f2 d1 || fail "the exchanges back"
	[ "$(cat u | tr '\n' ' ')" = "u more " ] && [ "$(cat f3)" = f3 ] && [ "$(cat d1/s/b)" = b ] &&
		[ "$(cat f2)" = f2 ] || fail "after the exchanges back"
	cd /
	fumount "$T/m" "$T/w"
}

# The kernel runs with index=on here: ctool-overlayfs keeps the names of a
# lower hard link one file (through its own index) as the kernel does with
# index=on; with index=off the kernel breaks the link at copy-up and the
# copied name shows the upper inode number. redirect_dir=on lets the
# kernel rename a lower directory, as ctool-overlayfs does.
@test "differential: st_ino across copy-up, rename, hard links and remount, as the kernel's" {
	local opts=index=on,redirect_dir=on,metacopy=off s
	kmount "$T/km" "$T/ku" "$T/kw" "$opts"
	ino_list "$T/km" "$T/ku" >"$T/k.before"
	(ino_script "$T/km") || fail "the steps failed on the kernel overlay"
	ino_list "$T/km" "$T/ku" >"$T/k.after"
	umount "$T/km"
	kmount "$T/km" "$T/ku" "$T/kw" "$opts"
	ino_list "$T/km" "$T/ku" >"$T/k.remount"
	umount "$T/km"
	fmount "$T/fm" "$T/fu" "$T/fw"
	ino_list "$T/fm" "$T/fu" >"$T/f.before"
	(ino_script "$T/fm") || fail "the steps failed on ctool-overlayfs"
	ino_list "$T/fm" "$T/fu" >"$T/f.after"
	fumount "$T/fm" "$T/fw"
	fmount "$T/fm" "$T/fu" "$T/fw"
	ino_list "$T/fm" "$T/fu" >"$T/f.remount"
	fumount "$T/fm" "$T/fw"
	for s in before after remount; do
		diff -u "$T/k.$s" "$T/f.$s" || fail "st_ino or d_ino differ $s"
	done
	# what they are: the lower's numbers kept, the new files' own
	grep -qx 'dtop/l1moved st=l1/l1file d=l1/l1file ' "$T/f.remount" &&
		grep -qx 'hard1 st=l2/hard1 d=l2/hard1 ' "$T/f.remount" &&
		grep -qx 'dlow.moved st=l2/dlow d=l2/dlow ' "$T/f.remount" &&
		grep -qx 'newd/f st=upper d=upper ' "$T/f.remount" || fail "$(cat "$T/f.remount")"
	ino_marks "$T/ku" >"$T/k.marks"
	ino_marks "$T/fu" >"$T/f.marks"
	diff -u "$T/k.marks" "$T/f.marks" || fail "the origin records differ"
}

# The O_TMPFILE steps, run in merged root $1: in the root, in a lower
# directory and in one made in the upper; written, changed, linked in
# through /proc/self/fd (AT_SYMLINK_FOLLOW) and with AT_EMPTY_PATH; an
# O_EXCL one that no link takes; one closed unlinked; the refusals; one
# made by uid 1000 with its umask. Every step prints what it did and
# what came of it (an errno's name for a failure), never an inode or fd
# number.
tmpfile_script() {
	python3 - "$1" <<'PY'
import ctypes, errno, os, sys

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = -100, 0x400, 0x1000

def op(what, fn):
	try:
		r = fn()
	except OSError as e:
		print(what, "->", errno.errorcode[e.errno])
		return None
	print(what, "-> ok")
	return r

def say(what, v):
	print(what + ":", v)

def st(s):
	return "%o %d:%d size=%d nlink=%d" % (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_nlink)

def tmpfile(d, flags=os.O_RDWR, mode=0o666):
	return os.open(d, os.O_TMPFILE | flags, mode)

# (os.link calls link(2), which links the magic link itself: EXDEV)
def linkat(fd, old, new, flags):
	if libc.linkat(fd, old.encode(), AT_FDCWD, new.encode(), flags) != 0:
		e = ctypes.get_errno()
		raise OSError(e, os.strerror(e))

def link_proc(fd, name):
	linkat(AT_FDCWD, "/proc/self/fd/%d" % fd, name, AT_SYMLINK_FOLLOW)

def link_empty(fd, name):
	linkat(fd, "", name, AT_EMPTY_PATH)

def content(name):
	with open(name, "rb") as f:
		return f.read()

os.chdir(sys.argv[1])
os.umask(0o022)
names = sorted(os.listdir("."))

# the root: linked through /proc/self/fd, then once more with AT_EMPTY_PATH
fd = op("tmpfile .", lambda: tmpfile("."))
op("write", lambda: os.write(fd, b"root data\n"))
say("fstat", st(os.fstat(fd)))
say("root unchanged", sorted(os.listdir(".")) == names)
r = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY)
say("reopened through /proc", os.read(r, 100))
os.close(r)
op("fchmod 0604", lambda: os.fchmod(fd, 0o604))
op("fchown 1000:1000", lambda: os.fchown(fd, 1000, 1000))
say("fstat", st(os.fstat(fd)))
op("link over l1file", lambda: link_proc(fd, "l1file"))
op("link /proc root-tmp", lambda: link_proc(fd, "root-tmp"))
say("fstat", st(os.fstat(fd)))
op("write", lambda: os.write(fd, b"more\n"))
say("root-tmp", st(os.lstat("root-tmp")))
say("root-tmp holds", content("root-tmp"))
op("link AT_EMPTY_PATH root-tmp2", lambda: link_empty(fd, "root-tmp2"))
say("root-tmp2", st(os.lstat("root-tmp2")))
os.close(fd)
say("root-tmp", st(os.lstat("root-tmp")))

# a directory only a lower has: copied up, linked with AT_EMPTY_PATH
fd = op("tmpfile dlow", lambda: tmpfile("dlow", os.O_WRONLY, 0o640))
op("write", lambda: os.write(fd, b"low data\n"))
op("fchown 0:1000", lambda: os.fchown(fd, 0, 1000))
op("link AT_EMPTY_PATH dlow/low-tmp", lambda: link_empty(fd, "dlow/low-tmp"))
os.close(fd)
say("dlow/low-tmp", st(os.lstat("dlow/low-tmp")))
say("dlow/low-tmp holds", content("dlow/low-tmp"))
say("dlow", sorted(os.listdir("dlow")))

# a directory made in the upper; appends and a truncate
op("mkdir newdir", lambda: os.mkdir("newdir"))
fd = op("tmpfile newdir", lambda: tmpfile("newdir", os.O_RDWR | os.O_APPEND, 0o600))
op("write", lambda: os.write(fd, b"upper data\n"))
op("write", lambda: os.write(fd, b"appended\n"))
op("ftruncate 16", lambda: os.ftruncate(fd, 16))
op("link /proc newdir/up-tmp", lambda: link_proc(fd, "newdir/up-tmp"))
say("fstat", st(os.fstat(fd)))
os.close(fd)
say("newdir/up-tmp holds", content("newdir/up-tmp"))

# O_EXCL: never linked
fd = op("tmpfile dboth O_EXCL", lambda: tmpfile("dboth", os.O_RDWR | os.O_EXCL))
op("write", lambda: os.write(fd, b"excl\n"))
op("link /proc dboth/excl", lambda: link_proc(fd, "dboth/excl"))
op("link AT_EMPTY_PATH dboth/excl", lambda: link_empty(fd, "dboth/excl"))
say("fstat", st(os.fstat(fd)))
os.close(fd)
say("dboth", sorted(os.listdir("dboth")))

# closed without a link: nothing stays
fd = op("tmpfile dtop", lambda: tmpfile("dtop"))
op("write", lambda: os.write(fd, b"x" * (3 << 20)))
say("fstat", st(os.fstat(fd)))
os.close(fd)
say("dtop", sorted(os.listdir("dtop")))

# the refusals
op("tmpfile . O_RDONLY", lambda: tmpfile(".", os.O_RDONLY))
op("tmpfile l1file", lambda: tmpfile("l1file"))
op("tmpfile nodir", lambda: tmpfile("nodir"))
op("tmpfile dlow/sl", lambda: tmpfile("dlow/sl"))

# uid 1000: its owner and umask; root's directory refuses it
sys.stdout.flush()
pid = os.fork()
if pid == 0:
	os.setgroups([])
	os.setgid(1000)
	os.setuid(1000)
	os.umask(0o027)
	op("user: tmpfile .", lambda: tmpfile("."))
	fd = op("user: tmpfile dtop", lambda: tmpfile("dtop"))
	op("user: write", lambda: os.write(fd, b"mine\n"))
	op("user: link /proc dtop/user-tmp", lambda: link_proc(fd, "dtop/user-tmp"))
	os.close(fd)
	say("user: dtop/user-tmp", st(os.lstat("dtop/user-tmp")))
	sys.stdout.flush()
	os._exit(0)
say("user", os.waitpid(pid, 0)[1])
PY
}

@test "differential: O_TMPFILE as on the kernel overlay, with and without passthrough" {
	local o
	need_linux 6.6 "O_TMPFILE on overlayfs"
	kmount "$T/km" "$T/ku" "$T/kw"
	tmpfile_script "$T/km" >"$T/k.out" 2>&1 || fail "on the kernel overlay: $(cat "$T/k.out")"
	ovl_list "$T/km" >"$T/k.view"
	umount "$T/km"
	ovl_list "$T/ku" >"$T/k.upper"
	# what the kernel does, which ctool-overlayfs must do alike
	grep -qx 'link /proc root-tmp -> ok' "$T/k.out" &&
		grep -qx 'link AT_EMPTY_PATH dboth/excl -> ENOENT' "$T/k.out" &&
		grep -qx 'tmpfile . O_RDONLY -> EINVAL' "$T/k.out" &&
		grep -qx 'user: dtop/user-tmp: 100640 1000:1000 size=5 nlink=1' "$T/k.out" ||
		fail "the kernel overlay: $(cat "$T/k.out")"
	for o in passthrough nopassthrough; do
		fmount "$T/fm.$o" "$T/fu.$o" "$T/fw.$o" "$o"
		tmpfile_script "$T/fm.$o" >"$T/f.$o.out" 2>&1 || fail "$o: $(cat "$T/f.$o.out")"
		ovl_list "$T/fm.$o" >"$T/f.$o.view"
		fumount "$T/fm.$o" "$T/fw.$o"
		diff -u "$T/k.out" "$T/f.$o.out" || fail "$o: the steps went differently"
		diff -u "$T/k.view" "$T/f.$o.view" || fail "$o: the merged views differ"
		ovl_list "$T/fu.$o" >"$T/f.$o.upper"
		diff -u "$T/k.upper" "$T/f.$o.upper" || fail "$o: the upper layers differ"
		[ -z "$(ls -A "$T/fw.$o/work")" ] || fail "$o: left in the workdir: $(ls -A "$T/fw.$o/work")"
	done
	# a read-only mount refuses it, as the kernel's does
	mkdir -p "$T/kro" "$T/fro"
	mount -t overlay overlay -o "lowerdir=$T/l1:$T/l2" "$T/kro"
	"$OVL" -o "lowerdir=$T/l1:$T/l2,pidfile=$T/ro.pid" "$T/fro"
	for o in kro fro; do
		python3 -c 'import os, sys
try:
	os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o644)
except OSError as e:
	print(os.strerror(e.errno))' "$T/$o" >"$T/$o.out"
	done
	umount "$T/kro"
	fumount "$T/fro" "$T/ro"
	[ "$(cat "$T/kro.out")" = "Read-only file system" ] || fail "kernel: $(cat "$T/kro.out")"
	diff -u "$T/kro.out" "$T/fro.out" || fail "read-only: not as the kernel"
}

# The st_ino of f and g (renamed g2) on mount $1 over lower $T/tl, upper
# $2, through a copy-up and a remount by mount function $3 (unmount $4).
ino_other_fs() {
	local m=$1 u=$2 w=$2.w
	"$3" "$m" "$u" "$w"
	echo "before $(stat -c %i "$m/f" "$m/g" | tr '\n' ' ')"
	echo x >>"$m/f"
	chmod 0600 "$m/g"
	mv "$m/g" "$m/g2"
	echo "after $(stat -c %i "$m/f" "$m/g2" | tr '\n' ' ')"
	"$4" "$m" "$w"
	"$3" "$m" "$u" "$w"
	echo "remount $(stat -c %i "$m/f" "$m/g2" | tr '\n' ' ')"
	getfattr -e hex -n trusted.overlay.origin "$u/f" | grep -q '^trusted.overlay.origin=0x00fb210001' ||
		echo "origin of f: $(getfattr -e hex -n trusted.overlay.origin "$u/f")"
	"$4" "$m" "$w"
}

tl_kmount() {
	mkdir -p "$1" "$2" "$3"
	mount -t overlay overlay -o "lowerdir=$T/tl,upperdir=$2,workdir=$3,index=off" "$1"
}

tl_fmount() {
	mkdir -p "$1" "$2" "$3"
	"$OVL" -o "lowerdir=$T/tl,upperdir=$2,workdir=$3,pidfile=$3.pid" "$1"
}

tl_kumount() { umount "$1"; }

# Both write the kernel's origin, of a tmpfs handle (0x21 bytes, type 1).
# st_dev is not compared: the kernel shows the tmpfs files on a device
# of their own, a FUSE mount shows one device for all.
@test "a lower on another filesystem: files keep the lower's st_ino, as on the kernel" {
	mkdir "$T/tl"
	mount -t tmpfs tmpfs "$T/tl"
	echo f >"$T/tl/f"
	echo g >"$T/tl/g"
	ino_other_fs "$T/km" "$T/ku" tl_kmount tl_kumount >"$T/k.out"
	ino_other_fs "$T/fm" "$T/fu" tl_fmount fumount >"$T/f.out"
	umount "$T/tl"
	diff -u "$T/k.out" "$T/f.out" || fail "st_ino differ"
	[ "$(sed -n 's/^remount //p' "$T/f.out" | wc -w)" = 2 ] || fail "$(cat "$T/f.out")"
	[ "$(sed -n 's/^before //p' "$T/f.out")" = "$(sed -n 's/^after //p' "$T/f.out")" ] &&
		[ "$(sed -n 's/^after //p' "$T/f.out")" = "$(sed -n 's/^remount //p' "$T/f.out")" ] ||
		fail "st_ino changed: $(cat "$T/f.out")"
}

# ---------------------------------------------------------------------------
# 4. interchangeability

@test "an upper written by ctool-overlayfs reads the same through the kernel" {
	fmount "$T/m" "$T/u" "$T/w"
	(ops_script "$T/m") >/dev/null 2>&1
	ovl_list "$T/m" >"$T/f.view"
	fumount "$T/m" "$T/w"
	kmount "$T/m" "$T/u" "$T/w"
	ovl_list "$T/m" >"$T/k.view"
	umount "$T/m"
	diff -u "$T/f.view" "$T/k.view"
}

@test "an upper written by the kernel reads the same through ctool-overlayfs" {
	kmount "$T/m" "$T/u" "$T/w"
	(ops_script "$T/m") >/dev/null 2>&1
	ovl_list "$T/m" >"$T/k.view"
	umount "$T/m"
	fmount "$T/m" "$T/u" "$T/w"
	ovl_list "$T/m" >"$T/f.view"
	fumount "$T/m" "$T/w"
	diff -u "$T/k.view" "$T/f.view"
}

# ---------------------------------------------------------------------------
# 5. copy-up

@test "copy-up keeps mode, owner, times, xattrs and holes" {
	truncate -s 64M "$T/l2/sparse"
	echo middle | dd of="$T/l2/sparse" bs=1M seek=32 conv=notrunc status=none
	chown 1234:4321 "$T/l2/sparse"
	chmod 0604 "$T/l2/sparse"
	touch -d '2001-02-03 04:05:06' "$T/l2/sparse"
	setfattr -n user.origin -v lower "$T/l2/sparse"
	head -c 24M /dev/urandom >"$T/l2/big"
	fmount "$T/m" "$T/u" "$T/w"
	[ "$(md5sum <"$T/m/big")" = "$(md5sum <"$T/l2/big")" ] || fail "big file read back wrong"
	: >>"$T/m/sparse" # open for writing: copy-up, nothing changed
	wait_shown "$T/u/sparse" || fail "no copy-up"
	[ "$(stat -c '%a %u:%g %s %Y' "$T/u/sparse")" = "$(stat -c '%a %u:%g %s %Y' "$T/l2/sparse")" ] ||
		fail "metadata: $(stat -c '%a %u:%g %s %Y' "$T/u/sparse")"
	[ "$(getfattr --only-values -n user.origin "$T/u/sparse")" = lower ] || fail "xattr lost"
	[ "$(du -k "$T/u/sparse" | cut -f1)" -lt 1024 ] || fail "holes filled: $(du -k "$T/u/sparse")"
	cmp "$T/u/sparse" "$T/l2/sparse" || fail "data differ"
	[ "$(stat -c '%a %u:%g %s %Y' "$T/m/sparse")" = "$(stat -c '%a %u:%g %s %Y' "$T/l2/sparse")" ]
	echo x >>"$T/m/big"
	wait_shown "$T/u/big" || fail "no copy-up of big"
	[ "$(head -c 25165824 "$T/u/big" | md5sum)" = "$(md5sum <"$T/l2/big")" ] || fail "big copy-up"
	# a truncating open copies no data; a symlink keeps its xattrs
	head -c 8M /dev/zero >"$T/l2/totrunc"
	echo new >"$T/m/totrunc"
	wait_shown "$T/u/totrunc" || fail "no copy-up of totrunc"
	[ "$(cat "$T/u/totrunc")" = new ] || fail "truncating open: $(head -c 20 "$T/u/totrunc")"
	ln -s l2file "$T/l2/lsym"
	setfattr -h -n trusted.ctool-test -v s "$T/l2/lsym"
	chown -h 1000:1000 "$T/m/lsym"
	[ "$(readlink "$T/u/lsym")" = l2file ] || fail "symlink target"
	[ "$(getfattr -h --only-values -n trusted.ctool-test "$T/u/lsym")" = s ] || fail "symlink xattr"
	[ "$(stat -c %u:%g "$T/u/lsym")" = 1000:1000 ] || fail "symlink owner"
	# parents come up as directories with their metadata
	echo y >"$T/m/dtop/inner"
	[ "$(stat -c '%u:%g' "$T/u/dtop")" = 1000:1000 ] || fail "parent owner"
	fumount "$T/m" "$T/w"
}

@test "two names of one lower file stay one file after copy-up" {
	fmount "$T/m" "$T/u" "$T/w"
	echo more >>"$T/m/hard1"
	[ "$(cat "$T/m/hard2")" = "$(printf 'hard\nmore')" ] || fail "hard2: $(cat "$T/m/hard2")"
	echo again >>"$T/m/hard2"
	[ "$(stat -c %i "$T/u/hard1")" = "$(stat -c %i "$T/u/hard2")" ] || fail "two files in the upper"
	[ "$(cat "$T/m/hard1")" = "$(printf 'hard\nmore\nagain')" ]
	[ "$(cat "$T/l2/hard1")" = hard ] || fail "the lower changed"
	fumount "$T/m" "$T/w"
}

@test "copies wait in the workdir and are shown in batches; the view is right meanwhile" {
	fmount "$T/m" "$T/u" "$T/w" copyup_batch=60000
	ino=$(stat -c %i "$T/m/dlow/f")
	echo more >>"$T/m/dlow/f"
	chmod 0600 "$T/m/l2only"
	setfattr -n user.new -v 1 "$T/m/l2file"
	[ ! -e "$T/u/dlow/f" ] && [ ! -e "$T/u/l2only" ] && [ ! -e "$T/u/l2file" ] ||
		fail "shown at once: $(ls -R "$T/u")"
	[ "$(ls "$T/w/work" | wc -l)" = 3 ] || fail "work holds: $(ls -A "$T/w/work")"
	check_view() {
		[ "$(cat "$T/m/dlow/f")" = "$(printf 'low\nmore')" ] || fail "$1: content"
		[ "$(stat -c '%i %s' "$T/m/dlow/f")" = "$ino 9" ] || fail "$1: $(stat -c '%i %s' "$T/m/dlow/f")"
		[ "$(ls -i "$T/m/dlow" | awk '$2 == "f" { print $1 }')" = "$ino" ] || fail "$1: listed inode"
		[ "$(stat -c %a "$T/m/l2only")" = 600 ] || fail "$1: mode"
		[ "$(getfattr --only-values -n user.new "$T/m/l2file")" = 1 ] || fail "$1: xattr"
		[ "$(find "$T/m" -name f -path '*dlow/f' -printf '%s')" = 9 ] || fail "$1: readdirplus"
	}
	check_view waiting
	# the kernel forgets the names and inodes: lookups find the copies
	echo 2 >/proc/sys/vm/drop_caches
	check_view "after a cache drop"
	[ ! -e "$T/u/dlow/f" ] || fail "shown before its time"
	# an fsync shows every waiting copy
	sync "$T/m/l2only"
	[ -f "$T/u/dlow/f" ] && [ -f "$T/u/l2only" ] && [ -f "$T/u/l2file" ] || fail "fsync showed nothing"
	[ -z "$(ls -A "$T/w/work")" ] || fail "work holds: $(ls -A "$T/w/work")"
	check_view shown
	fumount "$T/m" "$T/w"
	[ "$(cat "$T/u/dlow/f")" = "$(printf 'low\nmore')" ] || fail "upper content"
	kmount "$T/k" "$T/u" "$T/w"
	[ "$(stat -c '%i %s %a' "$T/k/dlow/f" "$T/k/l2only")" = "$(printf '%s 9 644\n%s 7 600' "$ino" "$(stat -c %i "$T/k/l2only")")" ] ||
		fail "the kernel: $(stat -c '%i %s %a' "$T/k/dlow/f" "$T/k/l2only")"
	umount "$T/k"
}

@test "a waiting copy is shown before names change: rename, link, unlink, listings; and by the publisher" {
	fmount "$T/m" "$T/u" "$T/w" copyup_batch=60000
	echo a >>"$T/m/l2file" && mv "$T/m/l2file" "$T/m/moved" || fail "rename"
	[ "$(cat "$T/u/moved")" = "$(printf 'l2\na')" ] || fail "renamed copy: $(cat "$T/u/moved")"
	echo b >>"$T/m/l2file2" && ln "$T/m/l2file2" "$T/m/linked" || fail "link"
	[ "$(stat -c %h "$T/m/linked")" = 2 ] && [ "$(cat "$T/u/linked")" = "$(printf 'l2b\nb')" ] ||
		fail "linked copy"
	echo c >>"$T/m/l2only" && rm "$T/m/l2only" || fail "unlink"
	[ ! -e "$T/m/l2only" ] && [ -c "$T/u/l2only" ] || fail "no whiteout"
	echo d >>"$T/m/dlow/f" && mv "$T/m/dlow" "$T/m/dlow2" || fail "rename of the directory"
	[ "$(cat "$T/m/dlow2/f")" = "$(printf 'low\nd')" ] || fail "copy in the renamed directory"
	[ -z "$(ls -A "$T/w/work")" ] || fail "work holds: $(ls -A "$T/w/work")"
	fumount "$T/m" "$T/w"
	# the publisher shows copies on its own
	fmount "$T/m" "$T/u" "$T/w" copyup_batch=50
	echo e >>"$T/m/lowx"
	echo f >>"$T/m/dboth/fb"
	wait_shown "$T/u/lowx" && wait_shown "$T/u/dboth/fb" || fail "not shown: $(ls -A "$T/w/work")"
	[ "$(cat "$T/u/dboth/fb")" = "$(printf 'both-bottom\nf')" ] || fail "published copy"
	[ "$(getfattr --only-values -n user.keep "$T/u/lowx")" = k ] || fail "xattr of the copy"
	fumount "$T/m" "$T/w"
	[ -z "$(ls -A "$T/w/work")" ] || fail "work holds: $(ls -A "$T/w/work")"
	# with copyup_batch=0 a copy is shown at once
	fmount "$T/m" "$T/u" "$T/w" copyup_batch=0
	echo g >>"$T/m/hidden"
	[ -f "$T/u/hidden" ] || fail "copyup_batch=0 let it wait"
	fumount "$T/m" "$T/w"
	run --separate-stderr "$OVL" -o "lowerdir=$T/l1,upperdir=$T/u,workdir=$T/w,copyup_batch=x" "$T/m"
	[ "$status" -ne 0 ] && assert_one_error_line "ctool-overlayfs: copyup_batch"
	! mounted "$T/m"
}

@test "kill -9 with copies waiting: the next mount shows this boot's, not an earlier boot's" {
	fmount "$T/m" "$T/u" "$T/w" copyup_batch=60000
	pid=$(cat "$T/w.pid")
	echo a >>"$T/m/l2file"
	echo b >>"$T/m/dlow/f"
	echo c >>"$T/m/l2only"
	kill -9 "$pid"
	wait_gone "$pid" || fail "daemon survived kill -9"
	umount "$T/m" 2>/dev/null || umount -l "$T/m"
	[ ! -e "$T/u/l2file" ] || fail "shown before the crash"
	[ "$(ls "$T/w/work" | wc -l)" = 3 ] || fail "work holds: $(ls -A "$T/w/work")"
	# this boot's copies come back where their names are still free
	echo taken >"$T/u/l2only"
	fmount "$T/m" "$T/u" "$T/w"
	[ "$(cat "$T/m/l2file")" = "$(printf 'l2\na')" ] || fail "l2file: $(cat "$T/m/l2file")"
	[ "$(cat "$T/m/dlow/f")" = "$(printf 'low\nb')" ] || fail "dlow/f: $(cat "$T/m/dlow/f")"
	[ "$(cat "$T/m/l2only")" = taken ] || fail "a copy replaced a name"
	[ -z "$(ls -A "$T/w/work")" ] || fail "work holds: $(ls -A "$T/w/work")"
	# copies from an earlier boot (a power cut) may lack their data: they go
	pid=$(cat "$T/w.pid")
	echo d >>"$T/m/l2file2"
	kill -9 "$pid"
	wait_gone "$pid" || fail "daemon survived kill -9"
	umount "$T/m" 2>/dev/null || umount -l "$T/m"
	[ -n "$(ls -A "$T/w/work")" ] || fail "no copy waited"
	printf '00000000-0000-0000-0000-000000000000' | dd of="$T/w/ctool-pending" conv=notrunc status=none
	fmount "$T/m" "$T/u" "$T/w"
	[ "$(cat "$T/m/l2file2")" = l2b ] || fail "an earlier boot's copy shown: $(cat "$T/m/l2file2")"
	[ ! -e "$T/u/l2file2" ] && [ -z "$(ls -A "$T/w/work")" ] || fail "its copy stayed"
	fumount "$T/m" "$T/w"
}

@test "new files belong to the caller, with the umask" {
	fmount "$T/m" "$T/u" "$T/w"
	chmod 0777 "$T/m/dtop"
	# the test's scratch dir is private (0700): work from inside it
	cd "$T/m/dtop"
	setpriv --reuid 1000 --regid 1000 --clear-groups sh -c "umask 027; echo a >mine; mkdir md"
	[ "$(stat -c '%u:%g %a' "$T/m/dtop/mine")" = "1000:1000 640" ] ||
		fail "file: $(stat -c '%u:%g %a' "$T/m/dtop/mine")"
	[ "$(stat -c '%u:%g %a' "$T/u/dtop/md")" = "1000:1000 750" ] ||
		fail "dir: $(stat -c '%u:%g %a' "$T/u/dtop/md")"
	cd /
	cd "$T/m"
	run setpriv --reuid 1000 --regid 1000 --clear-groups rm l1file
	[ "$status" -ne 0 ] || fail "a user removed root's file"
	cd /
	fumount "$T/m" "$T/w"
}

# ---------------------------------------------------------------------------
# 6. crash

@test "kill -9 during writes: umount works and the layers mount again" {
	fmount "$T/m" "$T/u" "$T/w"
	pid=$(cat "$T/w.pid")
	(while echo xxxxxxxx >>"$T/m/dboth/log" 2>/dev/null; do :; done) &
	writer=$!
	sleep 0.5
	kill -9 "$pid"
	wait_gone "$pid" || fail "daemon survived kill -9"
	wait "$writer" || true
	umount "$T/m" 2>/dev/null || umount -l "$T/m"
	! mounted "$T/m"
	fmount "$T/m" "$T/u" "$T/w"
	[ "$(cat "$T/m/dboth/shared")" = top-wins ] || fail "merged view after the crash"
	[ -z "$(grep -v '^xxxxxxxx$' "$T/m/dboth/log" | head -1)" ] || fail "garbage in the log"
	[ -z "$(ls -A "$T/w/work")" ] || fail "leftovers in the workdir"
	ls -R "$T/m" >/dev/null
	fumount "$T/m" "$T/w"
}

# ---------------------------------------------------------------------------
# 7. the file form of whiteouts (".wh.NAME", ".wh..wh..opq"), for uppers
# that refuse the kernel's (an upper on another overlayfs)

# The kernel's overlayfs on $T/outer, for an upper and workdir inside it.
nest_mount() {
	mkdir -p "$T/ol" "$T/ou" "$T/ow" "$T/outer"
	mount -t overlay overlay -o "lowerdir=$T/ol,upperdir=$T/ou,workdir=$T/ow" "$T/outer"
}

# Does upper directory $1 carry an opaque mark, in either form?
upper_opaque() {
	[ -f "$1/.wh..wh..opq" ] ||
		[ "$(getfattr --only-values -n trusted.overlay.opaque "$1" 2>/dev/null)" = y ]
}

# Is $1 the file form of a whiteout: an empty regular file, mode 0?
wh_file() {
	[ "$(stat -c '%F %s %a' "$1" 2>/dev/null)" = "regular empty file 0 0" ]
}

# The removals, renames and re-creations of lower names on mount $1 with
# upper $2, checked in the merged view and, where it says which form was
# written, in the upper.
wh_files_script() {
	local m=$1 u=$2
	# delete a lower file, a lower tree
	rm "$m/l2file" || fail "rm of a lower file"
	[ ! -e "$m/l2file" ] && wh_file "$u/.wh.l2file" || fail "l2file: no .wh. file"
	[ ! -e "$u/l2file" ] || fail "l2file: a 0/0 device in the upper"
	rm -r "$m/dlow" || fail "rm -r of a lower tree"
	[ ! -e "$m/dlow" ] && wh_file "$u/.wh.dlow" && [ ! -e "$u/dlow" ] || fail "dlow not gone"
	# rename a lower file and a lower directory
	mv "$m/l2file2" "$m/renamed" || fail "mv of a lower file"
	[ "$(cat "$m/renamed")" = l2b ] && [ ! -e "$m/l2file2" ] && wh_file "$u/.wh.l2file2" ||
		fail "l2file2 not renamed"
	mv "$m/dgone" "$m/dgone2" || fail "mv of a lower directory"
	[ "$(ls "$m/dgone2" | tr '\n' ' ')" = "a b " ] && [ ! -e "$m/dgone" ] || fail "dgone not renamed"
	# rename onto whited-out names: a file, a merged directory
	rm "$m/l2only"
	mv "$m/l1mode" "$m/l2only" || fail "mv onto a whiteout"
	[ "$(cat "$m/l2only")" = mode ] && [ ! -e "$u/.wh.l2only" ] || fail "l2only: $(ls -a "$u")"
	rm -r "$m/dnonempty"
	mv "$m/dboth" "$m/dnonempty" || fail "mv of a directory onto a whiteout"
	[ "$(ls "$m/dnonempty" | tr '\n' ' ')" = "fb ft shared sub " ] ||
		fail "dnonempty holds: $(ls "$m/dnonempty")"
	upper_opaque "$u/dnonempty" || fail "dnonempty is not opaque"
	# re-create deleted names as a file and as a directory
	echo new >"$m/l2file" || fail "re-create l2file"
	[ "$(cat "$m/l2file")" = new ] && [ ! -e "$u/.wh.l2file" ] || fail "l2file: $(ls -a "$u")"
	mkdir "$m/dlow" || fail "re-create dlow"
	[ -z "$(ls -A "$m/dlow")" ] && [ ! -e "$u/.wh.dlow" ] || fail "dlow: $(ls -A "$m/dlow")"
	upper_opaque "$u/dlow" || fail "the new dlow is not opaque"
	touch "$m/dlow/in"
	# a directory holding only whiteouts is empty; they go with it
	mkdir "$m/dtop/sub"
	echo t >"$m/dtop/sub/t"
	rm "$m/dgone2/a" "$m/dgone2/b"
	rmdir "$m/dgone2" || fail "rmdir of a directory of whiteouts"
	rm -r "$m/dtarget"
	mkdir "$m/dtarget"
	rmdir "$m/dtarget" || fail "rmdir of an opaque directory"
	[ ! -e "$m/dtarget" ] && wh_file "$u/.wh.dtarget" && [ ! -e "$u/dtarget" ] ||
		fail "dtarget: $(ls -a "$u")"
	# exchanges: a lower directory and a lower file, a merged directory
	# (a name removed in it) and a lower one elsewhere; the copied trees
	# keep no whiteout, and are opaque where a lower has their new name
	exchange x "$m/xchg/d2" "$m/xchg/f1" || fail "exchange of a lower directory and file"
	[ "$(cat "$m/xchg/d2")" = f1 ] && [ "$(cat "$m/xchg/f1/c")" = c ] || fail "d2, f1 not exchanged"
	upper_opaque "$u/xchg/f1" || fail "xchg/f1 is not opaque"
	rm "$m/xchg/m1/x"
	exchange x "$m/xchg/m1" "$m/xchg/p1/d4" || fail "exchange of a merged and a lower directory"
	[ "$(ls "$m/xchg/m1" | tr '\n' ' ')" = "h " ] && [ "$(ls "$m/xchg/p1/d4" | tr '\n' ' ')" = "y " ] ||
		fail "m1 holds $(ls "$m/xchg/m1"), p1/d4 $(ls "$m/xchg/p1/d4")"
	upper_opaque "$u/xchg/m1" && upper_opaque "$u/xchg/p1/d4" || fail "m1, p1/d4 not opaque"
	[ ! -e "$u/xchg/p1/d4/.wh.x" ] && [ ! -e "$u/xchg/p1/d4/x" ] || fail "p1/d4: $(ls -a "$u/xchg/p1/d4")"
	# readdir hides them, and none can be made through the mount
	[ -z "$(find "$m" -name '.wh.*')" ] || fail "listed: $(find "$m" -name '.wh.*')"
	[ "$(LC_ALL=C ls "$m" | tr '\n' ' ')" = "dlow dnonempty dtop fifo0 hard1 hard2 hidden l1file l1link l2file l2only lowx lowx2 renamed xchg " ] ||
		fail "root holds: $(LC_ALL=C ls "$m" | tr '\n' ' ')"
	run touch "$m/.wh.x"
	[ "$status" -ne 0 ] && [ ! -e "$u/.wh.x" ] || fail "made .wh.x"
	run mkdir "$m/dlow/.wh..wh..opq"
	[ "$status" -ne 0 ] || fail "made .wh..wh..opq"
	run mv "$m/renamed" "$m/.wh.hidden"
	[ "$status" -ne 0 ] && [ "$(cat "$m/hidden")" = hidden-top ] || fail "renamed to .wh.hidden"
	run ln -s x "$m/.wh.l1file"
	[ "$status" -ne 0 ] && [ "$(cat "$m/l1file")" = l1 ] || fail "made .wh.l1file"
	[ ! -e "$m/.wh.l2file2" ] || fail ".wh.l2file2 can be looked up"
}

@test "an upper on overlayfs: whiteouts and opaque dirs in the file form" {
	nest_mount
	fmount "$T/outer/m" "$T/outer/u" "$T/outer/w"
	wh_files_script "$T/outer/m" "$T/outer/u"
	ovl_list "$T/outer/m" >"$T/before"
	fumount "$T/outer/m" "$T/outer/w"
	fmount "$T/outer/m" "$T/outer/u" "$T/outer/w"
	ovl_list "$T/outer/m" >"$T/after"
	fumount "$T/outer/m" "$T/outer/w"
	umount "$T/outer"
	diff -u "$T/before" "$T/after" || fail "the tree changed across a remount"
}

# st_ino across copy-up, rename and remount on mount $1 (upper $2,
# workdir $3; the environment chooses the driver's options).
ino_kept() {
	local m=$1 u=$2 w=$3 ino dino
	ino=$(stat -c %i "$T/l1/l1file")
	dino=$(stat -c %i "$T/l2/dlow")
	fmount "$m" "$u" "$w"
	echo x >>"$m/l1file"
	touch "$m/dlow/new"
	mkdir "$m/newd"
	mv "$m/l1file" "$m/newd/moved"
	fumount "$m" "$w"
	fmount "$m" "$u" "$w"
	[ "$(stat -c %i "$m/newd/moved")" = "$ino" ] || fail "st_ino after a remount"
	[ "$(stat -c %i "$m/dlow")" = "$dino" ] || fail "directory st_ino after a remount"
	[ "$(ls -i "$m/newd" | awk '{ print $1 }')" = "$ino" ] || fail "d_ino"
	run getfattr -d -m - "$m/newd/moved"
	[[ "$output" != *ctool-overlay* ]] || fail "a mark shows: $output"
	run setfattr -n user.ctool-overlay.origin -v 1 "$m/newd/moved"
	[ "$status" -ne 0 ] || fail "a mark could be set"
	fumount "$m" "$w"
}

@test "st_ino kept on an upper on overlayfs, and with ctool's marks where the kernel's are refused" {
	nest_mount
	ino_kept "$T/outer/m" "$T/outer/u" "$T/outer/w"
	umount "$T/outer"
	# the test switch makes the probe find trusted.overlay.* refused
	CTOOL_TEST_WHITEOUT_FILES=1 ino_kept "$T/m" "$T/u" "$T/w"
	[ "$(getfattr --only-values -n user.ctool-overlay.origin "$T/u/newd/moved")" = \
		"$(stat -c %i "$T/l1/l1file")" ] || fail "no origin of ctool's"
	[ "$(getfattr --only-values -n user.ctool-overlay.impure "$T/u/newd")" = y ] ||
		fail "no impure mark of ctool's"
	run getfattr -n trusted.overlay.origin "$T/u/newd/moved"
	[ "$status" -ne 0 ] || fail "the kernel's origin was written too"
}

@test "the file form of the opaque mark, and both forms read on a plain upper" {
	CTOOL_TEST_WHITEOUT_FILES=1 fmount "$T/m" "$T/u" "$T/w"
	wh_files_script "$T/m" "$T/u"
	[ -f "$T/u/dlow/.wh..wh..opq" ] && [ -f "$T/u/dnonempty/.wh..wh..opq" ] ||
		fail "no .wh..wh..opq files"
	ovl_list "$T/m" >"$T/before"
	fumount "$T/m" "$T/w"
	# without the test switch the kernel form is written again, and the
	# workdir's mark keeps the file form read
	[ -e "$T/w/ctool-whiteout-files" ] || fail "the workdir does not record the file form"
	fmount "$T/m" "$T/u" "$T/w"
	ovl_list "$T/m" >"$T/after"
	diff -u "$T/before" "$T/after" || fail "the tree changed across a remount"
	rm "$T/m/renamed" "$T/m/hidden"
	[ -c "$T/u/hidden" ] || fail "no 0/0 device for hidden"
	rm "$T/m/l2file"
	[ ! -e "$T/m/l2file" ] && [ -c "$T/u/l2file" ] || fail "l2file after the remount"
	echo again >"$T/m/l2file"
	mkdir "$T/m/dgone"
	[ "$(cat "$T/m/l2file")" = again ] && [ -z "$(ls -A "$T/m/dgone")" ] ||
		fail "re-created over the kernel form"
	fumount "$T/m" "$T/w"
}

@test "a plain upper keeps the kernel form: 0/0 devices and the opaque xattr" {
	fmount "$T/m" "$T/u" "$T/w"
	rm "$T/m/l2file"
	rm -r "$T/m/dlow"
	mv "$T/m/l2file2" "$T/m/renamed"
	mkdir "$T/m/dlow"
	fumount "$T/m" "$T/w"
	for f in l2file l2file2; do
		[ "$(stat -c '%F %t:%T' "$T/u/$f")" = "character special file 0:0" ] ||
			fail "$f: $(stat -c '%F %t:%T' "$T/u/$f")"
	done
	[ "$(getfattr --only-values -n trusted.overlay.opaque "$T/u/dlow")" = y ] || fail "dlow"
	[ -z "$(find "$T/u" -name '.wh.*')" ] || fail "file form used: $(find "$T/u" -name '.wh.*')"
	[ ! -e "$T/w/ctool-whiteout-files" ] || fail "the workdir records the file form"
}

# ---------------------------------------------------------------------------
# 8. a user inside: removed and replaced names, limits, failures half way.
# The daemon runs as root over layers the user writes; its cwd is "/", so
# a symlink to an absolute path names a host file.

# Run sh -c "$1" as uid 1000 in the current directory.
as_user() {
	setpriv --reuid 1000 --regid 1000 --clear-groups sh -c "$1"
}

@test "an open removed file: attributes change on it, never on what has its name now" {
	echo secret >"$T/secret"
	chmod 0600 "$T/secret"
	touch -d '2002-02-02 02:02:02' "$T/secret"
	fmount "$T/m" "$T/u" "$T/w"
	cd "$T/m/dtop"
	as_user "
		echo mine >f
		exec 3<>f
		rm f
		stat -L -c %a /proc/self/fd/3 >st0 || exit 1
		ln -s '$T/secret' f
		chmod 0666 /proc/self/fd/3 || exit 2
		chown 1000:1000 /proc/self/fd/3 || exit 3
		touch -c -d '2001-01-01 00:00:00' /proc/self/fd/3 || exit 4
		stat -L -c '%a %Y' /proc/self/fd/3 >st1 || exit 5
		cat <&3 >got"
	[ "$(stat -c '%a %u %Y' "$T/secret")" = "600 0 $(date -d '2002-02-02 02:02:02' +%s)" ] ||
		fail "the host file changed: $(stat -c '%a %u %Y' "$T/secret")"
	[ "$(cat st0)" = 644 ] || fail "fstat of the removed file: $(cat st0)"
	[ "$(cat st1)" = "666 $(date -d '2001-01-01' +%s)" ] || fail "the removed file: $(cat st1)"
	[ "$(cat got)" = mine ] || fail "read back: $(cat got)"
	[ -L "$T/u/dtop/f" ] && [ "$(readlink "$T/u/dtop/f")" = "$T/secret" ] || fail "the new link"
	# a removed lower file cannot be copied up any more: refused, and the
	# file that has its name now is left alone
	exec 4<"$T/m/l2file"
	rm "$T/m/l2file"
	echo new >"$T/m/l2file"
	chmod 0600 "$T/m/l2file"
	run chmod 0666 /proc/self/fd/4
	[ "$status" -ne 0 ] || fail "chmod of a removed lower file succeeded"
	[ "$(stat -c %a "$T/m/l2file")" = 600 ] && [ "$(stat -c %a "$T/u/l2file")" = 600 ] ||
		fail "the new l2file changed: $(stat -c %a "$T/u/l2file")"
	[ "$(cat <&4)" = l2 ] || fail "the removed lower file reads wrong"
	exec 4<&-
	cd /
	fumount "$T/m" "$T/w"
}

@test "an open removed file reopened through /proc is that file, not a new one of root's" {
	fmount "$T/m" "$T/u" "$T/w"
	cd "$T/m/dtop"
	as_user "
		echo mine >f
		exec 3<f
		rm f
		: >removed
		i=0
		while [ ! -e go ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
		echo more >>/proc/self/fd/3 || exit 1
		cat /proc/self/fd/3 >got" &
	user=$!
	i=0
	while [ ! -e removed ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	echo root >f
	chmod 0600 f
	touch go
	wait "$user" || fail "the user's writes failed"
	[ "$(cat f)" = root ] && [ "$(stat -c '%a %u' f)" = "600 0" ] ||
		fail "root's file changed: $(stat -c '%a %u' f) $(cat f)"
	[ "$(cat got)" = "$(printf 'mine\nmore')" ] || fail "the removed file holds: $(cat got)"
	cd /
	fumount "$T/m" "$T/w"
}

@test "directories removed while open: nothing is listed or made through them" {
	fmount "$T/m" "$T/u" "$T/w"
	cd "$T/m/dtop"
	as_user "mkdir gone other"
	exec 5<gone
	as_user "rmdir gone && mv other gone && touch gone/inside"
	run ls -a /proc/self/fd/5/
	[ "$status" -ne 0 ] || [ -z "$(echo "$output" | grep -vx '\.\|\.\.')" ] ||
		fail "the removed directory lists: $output"
	run touch /proc/self/fd/5/new
	[ "$status" -ne 0 ] || fail "a file was made in a removed directory"
	[ ! -e "$T/u/dtop/gone/new" ] || fail "made in the directory that has its name now"
	[ "$(ls gone)" = inside ] || fail "gone: $(ls gone)"
	exec 5<&-
	cd /
	fumount "$T/m" "$T/w"
}

@test "copy-up keeps file capabilities and set-id bits" {
	printf '#!/bin/sh\n' >"$T/l2/capf"
	chown 1000:1000 "$T/l2/capf"
	chmod 6755 "$T/l2/capf"
	setcap cap_net_raw+ep "$T/l2/capf"
	want=$(getfattr --only-values -e hex -n security.capability "$T/l2/capf")
	fmount "$T/m" "$T/u" "$T/w"
	touch "$T/m/capf"
	wait_shown "$T/u/capf" || fail "no copy-up"
	[ "$(getfattr --only-values -e hex -n security.capability "$T/u/capf")" = "$want" ] ||
		fail "capability lost: $(getcap "$T/u/capf")"
	[ "$(stat -c '%a %u:%g' "$T/u/capf")" = "6755 1000:1000" ] ||
		fail "mode: $(stat -c '%a %u:%g' "$T/u/capf")"
	fumount "$T/m" "$T/w"
}

# setid_script M: set-id bits and file capabilities after changes by
# root and by uid 1000 (not in group 0) to the files setid_files made,
# one line per file: the mode the kernel holds, the mode after a cache
# drop, and the capabilities.
setid_files() {
	local f
	for f in w tr otr chown rootw late; do
		echo data >"$1/sid-$f"
		chmod 6777 "$1/sid-$f"
	done
	echo data >"$1/sid-nogx"
	chmod 2767 "$1/sid-nogx"
	echo data >"$1/sid-member"
	chown 0:1000 "$1/sid-member"
	chmod 2767 "$1/sid-member"
	for f in caproot capuser; do
		echo data >"$1/sid-$f"
		chmod 0777 "$1/sid-$f"
		setcap cap_net_raw+ep "$1/sid-$f"
	done
}
setid_script() (
	local m=$1 f
	# uid 1000 cannot reach the test's directory: it works in the mount
	# (a subshell: the caller's directory stays)
	cd "$m" || exit
	as_user "echo x >>'sid-w'"
	as_user "truncate -s 2 'sid-tr'"
	as_user ": >'sid-otr'"
	chown 1:1 "$m/sid-chown"
	echo x >>"$m/sid-rootw"
	as_user "echo x >>'sid-nogx'"
	setpriv --reuid 1000 --regid 1000 --groups 1000 sh -c "echo x >>'sid-member'"
	echo x >>"$m/sid-caproot"
	as_user "echo x >>'sid-capuser'"
	# a writer opens first; the bits come while its file is open
	exec 7>>"$m/sid-late"
	chmod 0666 "$m/sid-late"
	echo a >&7
	chmod 4777 "$m/sid-late"
	as_user "echo b >>'sid-late'"
	exec 7>&-
	# two names: the user's write through one latches "no set-id bits" on
	# the kernel's inode of that name; the bit then comes through the other
	echo data >sid-alias
	ln sid-alias sid-alias2
	chmod 0666 sid-alias
	: >sid-ready
	chmod 0666 sid-ready
	as_user "exec 8>>sid-alias; echo a >&8; echo >sid-ready; while [ ! -e sid-go ]; do sleep 0.01; done; echo b >&8" &
	for f in $(seq 500); do [ -s sid-ready ] && break; sleep 0.01; done
	if [ ! -s sid-ready ]; then
		touch sid-go
		wait
		echo "the user's first write did not come"
		exit 1
	fi
	chmod 4777 sid-alias2
	touch sid-go
	wait $!
	# a new file: a write latches "no set-id bits" on the kernel's inode
	echo data >"$m/sid-new"
	chmod 0666 "$m/sid-new"
	exec 7>>"$m/sid-new"
	echo a >&7
	setcap cap_net_raw+ep "$m/sid-new"
	echo b >&7
	exec 7>&-
	for f in w tr otr chown rootw nogx member caproot capuser late alias new; do
		printf '%s %s ' "$f" "$(stat -c %a "$m/sid-$f")"
	done >"$m.cached"
	echo 3 >/proc/sys/vm/drop_caches
	cat "$m.cached"
	echo
	for f in w tr otr chown rootw nogx member caproot capuser late alias new; do
		echo "$f $(stat -c '%a %u:%g' "$m/sid-$f") caps=$(getfattr -e hex -n security.capability "sid-$f" 2>/dev/null | sed -n "s/^security.capability=//p")"
	done
)

@test "differential: writes, truncates and chowns clear set-id bits and capabilities as on the kernel" {
	local o
	setid_files "$T/l2"
	kmount "$T/km" "$T/ku" "$T/kw"
	setid_script "$T/km" >"$T/k.out" 2>&1 || fail "on the kernel overlay: $(cat "$T/k.out")"
	umount "$T/km"
	# what the kernel does, which ctool-overlayfs must do alike
	grep -qx 'w 777 0:0 caps=' "$T/k.out" && grep -qx 'rootw 6777 0:0 caps=' "$T/k.out" &&
		grep -qx 'nogx 767 0:0 caps=' "$T/k.out" && grep -qx 'member 2767 0:1000 caps=' "$T/k.out" &&
		grep -qx 'late 777 0:0 caps=' "$T/k.out" && grep -qx 'alias 777 0:0 caps=' "$T/k.out" &&
		grep -qx 'new 666 0:0 caps=' "$T/k.out" ||
		fail "the kernel overlay: $(cat "$T/k.out")"
	for o in passthrough nopassthrough; do
		fmount "$T/fm.$o" "$T/fu.$o" "$T/fw.$o" "$o"
		setid_script "$T/fm.$o" >"$T/f.$o.out" 2>&1 || fail "$o: $(cat "$T/f.$o.out")"
		fumount "$T/fm.$o" "$T/fw.$o"
		diff -u "$T/k.out" "$T/f.$o.out" || fail "$o: set-id bits or capabilities differ"
	done
}

@test "copy-up copies every xattr while some go away under it" {
	mkdir "$T/l2/xa"
	for i in $(seq 300); do
		: >"$T/l2/xa/f$i"
		setfattr -n user.a -v a "$T/l2/xa/f$i"
		setfattr -n user.flip -v f "$T/l2/xa/f$i"
		setfattr -n user.z -v z "$T/l2/xa/f$i"
	done
	fmount "$T/m" "$T/u" "$T/w"
	ls "$T/m/xa" >/dev/null
	# user.flip comes and goes: listed, then gone when it is read
	python3 -c '
import os, sys
d = sys.argv[1]
names = [os.path.join(d, n) for n in os.listdir(d)]
while not os.path.exists(sys.argv[2]):
	for p in names:
		try:
			os.removexattr(p, "user.flip")
			os.setxattr(p, "user.flip", b"f")
		except OSError:
			pass
' "$T/l2/xa" "$T/stop" &
flipper=$!
	for i in $(seq 300); do touch "$T/m/xa/f$i"; done
	touch "$T/stop"
	wait "$flipper"
	for i in $(seq 300); do
		[ "$(getfattr --only-values -n user.a "$T/u/xa/f$i")" = a ] &&
			[ "$(getfattr --only-values -n user.z "$T/u/xa/f$i")" = z ] ||
			fail "f$i: $(getfattr -d "$T/u/xa/f$i")"
	done
	fumount "$T/m" "$T/w"
}

@test "the daemon raises its open file limit: many open files, creates still work" {
	(
		ulimit -Sn 1024
		fmount "$T/m" "$T/u" "$T/w"
	)
	pid=$(cat "$T/w.pid")
	read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$pid/limits")
	[ "$soft" = "$hard" ] || fail "soft limit $soft, hard $hard"
	(
		ulimit -Sn 4096
		for i in $(seq 1100); do
			exec {fd}<"$T/m/l1file" || fail "open number $i failed"
		done
		echo made >"$T/m/newf" || fail "create with 1100 files open"
		echo more >>"$T/m/l2file" || fail "copy-up with 1100 files open"
	)
	[ "$(cat "$T/m/newf")" = made ]
	fumount "$T/m" "$T/w"
}

@test "mknod of a 0/0 character device is refused, as the kernel refuses it" {
	fmount "$T/m" "$T/u" "$T/w"
	run mknod "$T/m/wh" c 0 0
	[ "$status" -ne 0 ] && [[ "$output" == *"Operation not permitted"* ]] ||
		fail "mknod c 0 0: $status $output"
	[ ! -e "$T/m/wh" ] && [ ! -e "$T/u/wh" ] || fail "something was made"
	run mknod "$T/m/dboth/fb" c 0 0
	[ "$status" -ne 0 ] && [ "$(cat "$T/m/dboth/fb")" = both-bottom ] || fail "fb hidden"
	mknod "$T/m/null" c 1 3
	[ "$(stat -c '%F %t:%T' "$T/m/null")" = "character special file 1:3" ]
	fumount "$T/m" "$T/w"
}

@test "rmdir refused by a hidden entry leaves the directory in place" {
	fmount "$T/m" "$T/u" "$T/w"
	rm "$T/m/dgone/a" "$T/m/dgone/b"
	mkdir "$T/m/newd"
	# a directory of the reserved form: never shown, and no whiteout
	mkdir "$T/u/dgone/.wh.zz" "$T/u/newd/.wh.zz"
	for d in dgone newd; do
		run rmdir "$T/m/$d"
		[ "$status" -ne 0 ] || fail "rmdir $d succeeded"
		ls "$T/m" | grep -qx "$d" || fail "$d is gone from the view"
		[ -d "$T/u/$d/.wh.zz" ] || fail "$d is gone from the upper"
		[ -z "$(ls -A "$T/m/$d")" ] || fail "$d shows: $(ls -A "$T/m/$d")"
	done
	[ -c "$T/u/dgone/a" ] && [ -c "$T/u/dgone/b" ] || fail "whiteouts dropped: $(ls -A "$T/u/dgone")"
	rmdir "$T/u/dgone/.wh.zz" "$T/u/newd/.wh.zz"
	rmdir "$T/m/dgone" "$T/m/newd"
	[ ! -e "$T/m/dgone" ] && [ ! -e "$T/m/newd" ] && [ ! -e "$T/u/newd" ] || fail "not removed"
	fumount "$T/m" "$T/w"
}

@test "a lower directory rename that runs out of space: ENOSPC, and known names still work" {
	mkdir -p "$T/l2/dbig"
	for i in 1 2 3 4; do echo "small $i" >"$T/l2/dbig/s$i"; done
	head -c 3M /dev/zero | tr '\0' x >"$T/l2/dbig/zbig"
	mkdir "$T/small"
	mount -t tmpfs -o size=2m tmpfs "$T/small"
	fmount "$T/m" "$T/small/u" "$T/small/w"
	for i in 1 2 3 4; do [ "$(cat "$T/m/dbig/s$i")" = "small $i" ]; done
	run python3 -c '
import errno, os, sys
try:
	os.rename(sys.argv[1], sys.argv[2])
except OSError as e:
	print(errno.errorcode[e.errno])
	sys.exit(1)
' "$T/m/dbig" "$T/m/dbig2"
	[ "$status" -ne 0 ] && [ "$output" = ENOSPC ] || fail "rename: $status $output"
	[ -d "$T/m/dbig" ] && [ ! -e "$T/m/dbig2" ] || fail "the rename half happened"
	for i in 1 2 3 4; do
		echo more >>"$T/m/dbig/s$i" || fail "s$i cannot be written after the failure"
	done
	rm "$T/m/dbig/zbig"
	mv "$T/m/dbig" "$T/m/dbig2" || fail "the second rename"
	for i in 1 2 3 4; do
		[ "$(cat "$T/m/dbig2/s$i")" = "$(printf 'small %s\nmore' "$i")" ] ||
			fail "s$i: $(cat "$T/m/dbig2/s$i")"
	done
	[ "$(ls "$T/m/dbig2" | tr '\n' ' ')" = "s1 s2 s3 s4 " ] || fail "dbig2: $(ls "$T/m/dbig2")"
	fumount "$T/m" "$T/small/w"
	umount "$T/small"
}

# ---------------------------------------------------------------------------
# 9. passthrough: file data goes from the kernel straight to the layers'
#    files (Linux >= 6.9, CONFIG_FUSE_PASSTHROUGH)

# Skip when this kernel has no FUSE passthrough, saying so.
need_passthrough() {
	need_linux 6.9 "FUSE passthrough"
}

@test "passthrough: a large lower file reads right; writing it waits for its readers" {
	need_passthrough
	head -c 3M /dev/urandom >"$T/l2/big"
	sum=$(md5sum <"$T/l2/big")
	fmount "$T/m" "$T/u" "$T/w"
	[ "$(md5sum <"$T/m/big")" = "$sum" ] || fail "read through the mount differs"
	exec 7<"$T/m/big"
	# the kernel keeps one backing file per inode while it is open: the
	# lower one, so no writer may get the upper copy meanwhile
	run sh -c "echo x >>'$T/m/big'"
	[ "$status" -ne 0 ] && [[ "$output" == *"Text file busy"* ]] ||
		fail "append while read: $status $output"
	run truncate -s 1 "$T/m/big"
	[ "$status" -ne 0 ] && [[ "$output" == *"Text file busy"* ]] ||
		fail "truncate while read: $status $output"
	[ "$(md5sum <&7)" = "$sum" ] || fail "the open reader sees other data"
	exec 7<&-
	# the release comes after close() returned: the writer waits for it
	echo x >>"$T/m/big" || fail "append after the reader closed"
	wait_shown "$T/u/big" || fail "no copy-up"
	[ "$(stat -c %s "$T/u/big")" -eq $((3 * 1024 * 1024 + 2)) ] || fail "upper copy size"
	[ "$(md5sum <"$T/l2/big")" = "$sum" ] || fail "the lower file changed"
	# readers of the upper copy share its backing file with writers
	exec 7<"$T/m/big"
	echo y >>"$T/m/big" || fail "append while the upper copy is read"
	exec 7<&-
	[ "$(tail -c 4 "$T/m/big")" = "$(printf 'x\ny')" ] || fail "tail: $(tail -c 4 "$T/m/big" | od -c)"
	# a small lower file is served through the page cache: no wait there
	exec 7<"$T/m/l2file"
	echo more >>"$T/m/l2file" || fail "append to a small lower file while read"
	exec 7<&-
	fumount "$T/m" "$T/w"
}

@test "passthrough: upper files written, mapped and truncated read the same through the kernel" {
	need_passthrough
	head -c 5M /dev/urandom >"$T/src"
	fmount "$T/m" "$T/u" "$T/w"
	cp "$T/src" "$T/m/new"
	cmp "$T/src" "$T/m/new" && cmp "$T/src" "$T/u/new" || fail "copy differs"
	python3 -c '
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[4096:4100] = b"MMAP"
    m.flush()
    m.close()
' "$T/m/new"
	printf MMAP | dd of="$T/src" bs=1 seek=4096 conv=notrunc status=none
	cmp "$T/src" "$T/m/new" || fail "mmap write lost"
	truncate -s 1M "$T/m/new"
	truncate -s 1M "$T/src"
	cmp "$T/src" "$T/m/new" || fail "truncate"
	fumount "$T/m" "$T/w"
	kmount "$T/k" "$T/u" "$T/w"
	cmp "$T/src" "$T/k/new" || fail "the kernel overlay reads other data"
	umount "$T/k"
}

@test "nopassthrough: a large lower file can be written while it is read, as on the kernel" {
	head -c 3M /dev/urandom >"$T/l2/big"
	fmount "$T/m" "$T/u" "$T/w" nopassthrough
	exec 7<"$T/m/big"
	echo x >>"$T/m/big" || fail "append while read"
	exec 7<&-
	[ "$(tail -c 2 "$T/m/big")" = x ] || fail "append lost"
	fumount "$T/m" "$T/w"
}

# ---------------------------------------------------------------------------
# 10. reclaim: the nodes (one fd each) stay within a budget

# mk_tree DIR NDIRS NFILES: NDIRS directories of NFILES small files each
# (sizes and modes vary).
mk_tree() {
	local d f
	for d in $(seq "$2"); do
		mkdir -p "$1/d$d"
		for f in $(seq "$3"); do
			printf '%*s' $(((d * f) % 97)) "f$f" >"$1/d$d/f$f"
		done
		chmod 0640 "$1/d$d/f1"
	done
}

# The daemon over the lower $T/big alone, with a budget of $1 nodes and
# reclaim mode $2 (prune: the default, inval: the older kernels' way).
fmount_big() {
	mkdir -p "$T/m" "$T/u" "$T/w"
	CTOOL_OVL_MAX_NODES=$1 CTOOL_OVL_RECLAIM=$2 \
		"$OVL" -o "lowerdir=$T/big,upperdir=$T/u,workdir=$T/w,pidfile=$T/w.pid" "$T/m"
}

# The daemon's open fds.
fd_count() {
	ls "/proc/$1/fd" | wc -l
}

# Write the largest fd count of daemon $1 to file $2 every 50 ms, until
# file $3 exists.
fd_watch() {
	local max=0 n
	while [ ! -e "$3" ]; do
		n=$(fd_count "$1" 2>/dev/null) || break
		[ "$n" -gt "$max" ] && max=$n && echo "$max" >"$2"
		sleep 0.05
	done
}

@test "reclaim: walks and an untar stay within the node budget, the view as the kernel's" {
	mk_tree "$T/big" 30 200
	mk_tree "$T/tsrc/x" 25 200
	tar -C "$T/tsrc" -cf "$T/t.tar" x
	mkdir -p "$T/km" "$T/ku" "$T/kw"
	mount -t overlay overlay -o "lowerdir=$T/big,upperdir=$T/ku,workdir=$T/kw" "$T/km"
	(cd "$T/km" && find . -printf '%p %s %m %u %y %n\n' | LC_ALL=C sort) >"$T/k.find"
	umount "$T/km"
	[ "$(wc -l <"$T/k.find")" -gt 6000 ] || fail "the kernel showed $(wc -l <"$T/k.find") names"
	fmount_big 2000 prune
	pid=$(cat "$T/w.pid")
	fd_watch "$pid" "$T/max" "$T/stop" &
	watcher=$!
	for i in 1 2; do
		(cd "$T/m" && find . -printf '%p %s %m %u %y %n\n' | LC_ALL=C sort) >"$T/f.find" ||
			fail "walk $i failed"
		diff -u "$T/k.find" "$T/f.find" >/dev/null || fail "walk $i: $(diff "$T/k.find" "$T/f.find" | head)"
	done
	after_walk=$(fd_count "$pid")
	tar -C "$T/m" -xf "$T/t.tar" || fail "untar failed"
	diff -r "$T/tsrc/x" "$T/m/x" || fail "the untarred tree differs"
	[ "$(find "$T/u/x" -type f | wc -l)" = 5000 ] || fail "the upper holds $(find "$T/u/x" -type f | wc -l) files"
	touch "$T/stop"
	wait "$watcher"
	max=$(cat "$T/max")
	[ "$after_walk" -lt 2100 ] || fail "$after_walk fds after the walks"
	[ "$max" -lt 3000 ] || fail "up to $max fds"
	fumount "$T/m" "$T/w"
}

@test "reclaim: open files, a cwd and mounts inside the view survive it" {
	mk_tree "$T/big" 12 100
	echo hostfile >"$T/hostfile"
	for mode in prune inval; do
		fmount_big 500 "$mode"
		pid=$(cat "$T/w.pid")
		exec {held}<"$T/m/d1/f7" # bats keeps fd 3
		mount -t tmpfs tmpfs "$T/m/d2"
		echo on-tmpfs >"$T/m/d2/t"
		mount --bind "$T/hostfile" "$T/m/d4/f2"
		cd "$T/m/d3"
		find "$T/m" -printf '%s %m %u\n' >/dev/null || fail "$mode: walk"
		find "$T/m" -printf '%s %m %u\n' >/dev/null || fail "$mode: second walk"
		# the reclaimer runs beside the walks: give it a moment to catch up
		for i in $(seq 40); do
			n=$(fd_count "$pid")
			[ "$n" -lt 600 ] && break
			sleep 0.05
		done
		[ "$n" -lt 600 ] || fail "$mode: $n fds after the walks"
		[ "$(cat <&"$held")" = "$(cat "$T/big/d1/f7")" ] || fail "$mode: the open file reads wrong"
		[ "$(cat "$T/m/d1/f7")" = "$(cat "$T/big/d1/f7")" ] || fail "$mode: d1/f7 reads wrong"
		[ "$(/bin/pwd)" = "$T/m/d3" ] || fail "$mode: getcwd: $(/bin/pwd 2>&1)"
		[ "$(cat f9)" = "$(cat "$T/big/d3/f9")" ] || fail "$mode: relative read in the cwd"
		echo new >new || fail "$mode: create in the cwd"
		[ "$(ls | wc -l)" = 101 ] || fail "$mode: the cwd lists $(ls | wc -l)"
		cd /
		[ "$(cat "$T/m/d2/t")" = on-tmpfs ] || fail "$mode: the tmpfs on d2 went"
		[ "$(cat "$T/m/d4/f2")" = hostfile ] || fail "$mode: the bind on d4/f2 went"
		exec {held}<&-
		umount "$T/m/d4/f2" "$T/m/d2"
		fumount "$T/m" "$T/w"
		[ "$(cat "$T/u/d3/new")" = new ] || fail "$mode: new is not in the upper"
		rm -rf "$T/u" "$T/w"
	done
}
