# Shared helpers of ctool's integration tests (bats >= 1.5).
#
# Each .bats file does `load helpers`. Every test gets a scratch store in
# $BATS_TEST_TMPDIR/store; setup_file builds a tiny busybox rootfs once per
# file in $BATS_FILE_TMPDIR/rootfs and exports it as $BASE.
#
# The binary under test is $CTOOL (default: the ctool built at the top of
# the tree). $CTOOL_DRIVER, when set, is passed through to ctool in the
# environment; every test must hold whichever driver mounts the env.
#
# Teardown turns every env off, runs `ctool gc`, and fails the test when a
# mount is left under the test's scratch dir or a process still has its
# root there (after cleaning up, so the machine stays usable).

bats_require_minimum_version 1.5.0

if [ -z "${CTOOL:-}" ]; then
	CTOOL="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)/ctool"
fi
export CTOOL
if [ -n "${CTOOL_DRIVER:-}" ]; then
	export CTOOL_DRIVER
fi

# The tool under test, as a function so `run ctool ...` works.
ctool() {
	"$CTOOL" "$@"
}

# Print a message on stderr and fail.
fail() {
	printf '%s\n' "$*" >&2
	return 1
}

# The driver the envs are expected to use.
expected_driver() {
	printf '%s\n' "${CTOOL_DRIVER:-kernel}"
}

# ---------------------------------------------------------------------------
# Base rootfs

# make_rootfs DIR: a tiny Debian-looking tree around /bin/busybox, in
# milliseconds: bin/ with busybox and one symlink per applet, passwd and
# group with root and tester (uid 1000), /root, /home/tester, /tmp (1777),
# empty /proc /sys /dev, and an os-release.
make_rootfs() {
	local d=$1 bb
	bb=$(readlink -f /bin/busybox)
	[ -x "$bb" ] || fail "make_rootfs: /bin/busybox (busybox-static) is missing" || return
	mkdir -p "$d"/bin "$d"/sbin "$d"/etc "$d"/root "$d"/home/tester \
		"$d"/tmp "$d"/proc "$d"/sys "$d"/dev || return
	cp "$bb" "$d/bin/busybox" || return
	# One symlink per applet, made without a fork per link.
	"$bb" --list | perl -ne 'BEGIN { $dir = shift @ARGV }
		chomp; next if $_ eq "busybox" || $_ eq "";
		symlink("busybox", "$dir/$_") or die "symlink $_: $!\n";' "$d/bin" || return
	cat >"$d/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000::/home/tester:/bin/sh
EOF
	cat >"$d/etc/group" <<'EOF'
root:x:0:
tester:x:1000:
EOF
	cat >"$d/etc/os-release" <<'EOF'
PRETTY_NAME="ctool test rootfs (busybox)"
NAME="ctool-test"
ID=ctool-test
EOF
	chmod 0700 "$d/root"
	chown 1000:1000 "$d/home/tester"
	chmod 1777 "$d/tmp"
}

# ---------------------------------------------------------------------------
# setup / teardown

common_setup_file() {
	[ -x "$CTOOL" ] || fail "ctool binary not found at '$CTOOL' (set CTOOL=...)" || return
	export BASE="$BATS_FILE_TMPDIR/rootfs"
	make_rootfs "$BASE"
}

common_setup() {
	export CTOOL_STORE="$BATS_TEST_TMPDIR/store"
	# The directory that must be left with nothing mounted and no process
	# rooted in it; debootstrap.bats uses the file's directory instead.
	CT_SCRATCH=${CT_SCRATCH:-$BATS_TEST_TMPDIR}
}

# Make the base image "base" from $BASE.
base_image() {
	ctool create base --from "$BASE"
}

# Targets of the mounts at or below PATH, deepest first.
mounts_under() {
	local p=${1%/}
	awk -v p="$p" '{ t = $5; if (t == p || index(t, p "/") == 1) print length(t), t }' \
		/proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

# How many mounts sit exactly on PATH (stacked mounts count each).
mount_count() {
	awk -v p="${1%/}" '$5 == p { n++ } END { print n + 0 }' /proc/self/mountinfo
}

# Is something mounted exactly on PATH?
mounted() {
	[ "$(mount_count "$1")" -gt 0 ]
}

# Put the catalog (with its -wal and -shm) aside and leave garbage in its
# place; catalog_restore puts it back.
catalog_break() {
	local f
	for f in catalog.db catalog.db-wal catalog.db-shm; do
		[ ! -e "$CTOOL_STORE/$f" ] || mv "$CTOOL_STORE/$f" "$CTOOL_STORE/$f.away" || return
	done
	printf 'not a catalog\n' >"$CTOOL_STORE/catalog.db"
}
catalog_restore() {
	local f
	rm -f "$CTOOL_STORE/catalog.db" "$CTOOL_STORE/catalog.db-wal" "$CTOOL_STORE/catalog.db-shm"
	for f in catalog.db catalog.db-wal catalog.db-shm; do
		[ ! -e "$CTOOL_STORE/$f.away" ] || mv "$CTOOL_STORE/$f.away" "$CTOOL_STORE/$f" || return
	done
}

# A shared mount P ($BATS_TEST_TMPDIR/shared) and a peer of it, PEER
# ($BATS_TEST_TMPDIR/peer), as systemd's '/' and the mount namespaces of
# its services are. The caller unmounts them.
shared_pair() {
	P="$BATS_TEST_TMPDIR/shared"
	PEER="$BATS_TEST_TMPDIR/peer"
	mkdir -p "$P" "$PEER" &&
		mount --bind "$P" "$P" &&
		mount --make-shared "$P" &&
		mount --bind "$P" "$PEER"
}

# Fail, listing them, when mounts remain at or below PATH.
assert_no_mounts_under() {
	local m
	m=$(mounts_under "$1")
	[ -z "$m" ] || fail "mounts left under '$1':" "$m"
}

# PIDs of the processes whose root directory is PATH or below (one find:
# forks are not cheap).
procs_rooted_under() {
	local p=${1%/} f
	find /proc -mindepth 2 -maxdepth 2 -name root \( -lname "$p" -o -lname "$p/*" \) \
		2>/dev/null | while IFS= read -r f; do
		f=${f#/proc/}
		echo "${f%/root}"
	done
}

# PIDs of host processes (root "/") whose cwd is PATH or below: helpers a
# test started in the background and failed to stop.
host_procs_in() {
	local p=${1%/} f pid
	find /proc -mindepth 2 -maxdepth 2 -name cwd \( -lname "$p" -o -lname "$p/*" \) \
		2>/dev/null | while IFS= read -r f; do
		pid=${f#/proc/}
		pid=${pid%/cwd}
		[ "$pid" = "$$" ] && continue
		[ "$(readlink "/proc/$pid/root" 2>/dev/null)" = / ] && echo "$pid"
	done
	return 0
}

# Wait (up to ~3 s) until process PID is gone or a zombie.
wait_gone() {
	local i state
	for i in $(seq 60); do
		[ -e "/proc/$1" ] || return 0
		state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
		[ "$state" = Z ] && return 0
		sleep 0.05
	done
	return 1
}

# Turn off every env of the store and clean up; fail when mounts or
# processes were left under DIR (cleaning them up first).
teardown_check() {
	local dir=$1 n pids m errs=""
	cd / || true
	pids=$(host_procs_in "$dir")
	# shellcheck disable=SC2086
	[ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
	if [ -x "$CTOOL" ] && [ -d "${CTOOL_STORE:-/nonexistent}" ]; then
		for n in $("$CTOOL" list -q 2>/dev/null); do
			"$CTOOL" off --force "$n" >/dev/null 2>&1 || true
		done
		"$CTOOL" gc >/dev/null 2>&1 || true
	fi
	pids=$({
		procs_rooted_under "$dir"
		[ -z "${CTOOL_STORE:-}" ] || procs_rooted_under "$CTOOL_STORE"
	} | sort -u)
	if [ -n "$pids" ]; then
		errs+="processes still rooted under '$dir' after off --force: ${pids//$'\n'/ }"$'\n'
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null || true
		for n in $pids; do wait_gone "$n" || true; done
	fi
	m=$(mounts_under "$dir")
	if [ -n "$m" ]; then
		errs+="still mounted after off --force and gc:"$'\n'"$m"$'\n'
		while IFS= read -r n; do
			umount -l "$n" 2>/dev/null || true
		done <<<"$m"
	fi
	[ -z "$errs" ] || fail "teardown: $errs"
}

common_teardown() {
	teardown_check "${CT_SCRATCH:-$BATS_TEST_TMPDIR}"
}

setup_file() { common_setup_file; }
setup() { common_setup; }
teardown() { common_teardown; }

# ---------------------------------------------------------------------------
# Looking at envs

# info_get ENV KEY: the value of the first "KEY: value" line of `ctool info`.
info_get() {
	local out
	out=$("$CTOOL" info "$1") || return
	printf '%s\n' "$out" | sed -n "s/^$2: //p" | head -n 1
}

env_root() { info_get "$1" root; }
env_upper() { info_get "$1" upper; }
env_id() { info_get "$1" id; }

# The host-side conf dir of ENV (docs/commands.md: <store>/envs/<id>/conf).
env_conf() {
	local id
	id=$(env_id "$1") || return
	[ -n "$id" ] || fail "env_conf: no id for '$1'" || return
	printf '%s\n' "$CTOOL_STORE/envs/$id/conf"
}

# The field of `ctool list` for ENV: list_field ENV N (1 = NAME).
list_field() {
	"$CTOOL" list | awk -v n="$1" -v f="$2" 'NR > 1 && $1 == n { print $f }'
}

# The layer directories of the store, one per line.
store_layers() {
	local d
	for d in "$CTOOL_STORE"/layers/*; do
		[ -d "$d" ] && printf '%s\n' "$d"
	done
	return 0
}

# A listing of a tree that changes when anything in it changes: path, type,
# mode, owner, size, mtime, ctime, link target and a checksum of each file.
tree_sum() {
	(
		cd "$1" || exit 1
		find . -printf '%p %y %m %U:%G %s %T@ %C@ %l\n' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum
	)
}

# env_write ENV PATH [MODE]: write stdin to PATH inside ENV from the host
# (turning it on first), parents created.
env_write() {
	local root
	"$CTOOL" on "$1" >/dev/null || return
	root=$(env_root "$1") || return
	mkdir -p "$(dirname "$root$2")" || return
	cat >"$root$2" || return
	chmod "${3:-0755}" "$root$2"
}

# Check $status after `run`, showing the command and its output otherwise.
assert_status() {
	[ "$status" -eq "$1" ] ||
		fail "'$BATS_RUN_COMMAND': expected status $1, got $status; output:" "$output"
}

# After `run --separate-stderr`: stderr is exactly one line starting with
# PREFIX (default "ctool: ").
assert_one_error_line() {
	local prefix=${1:-"ctool: "}
	[ "${#stderr_lines[@]}" -eq 1 ] ||
		fail "expected one line on stderr, got ${#stderr_lines[@]}:" "$stderr" || return
	[[ ${stderr_lines[0]} == "$prefix"* ]] ||
		fail "stderr does not start with '$prefix': ${stderr_lines[0]}"
}

# The mount and superblock options of the topmost mount on PATH.
mount_opts() {
	awk -v p="${1%/}" '$5 == p { o = $6 "," $NF } END { print o }' /proc/self/mountinfo
}

# The filesystem type of the topmost mount on PATH.
mount_fstype() {
	awk -v p="${1%/}" '$5 == p { for (i = 7; $i != "-"; i++); t = $(i + 1) } END { print t }' \
		/proc/self/mountinfo
}

# Is the topmost mount on PATH read-only (per-mount flag)?
mount_is_ro() {
	awk -v p="${1%/}" '$5 == p { o = $6 } END { exit !(o ~ /(^|,)ro(,|$)/) }' /proc/self/mountinfo
}
