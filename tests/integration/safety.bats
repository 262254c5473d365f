#!/usr/bin/env bats
# The things that must always hold: layers are never written, reset and rm
# throw away exactly the env's changes, nothing is deleted through a mount,
# nothing inside an env can make the host mount or run something.

load helpers

setup() {
	common_setup
	base_image
	ctool clone base e
	ROOT=$(env_root e)
	LAYER=$(store_layers)
	[ "$(printf '%s\n' "$LAYER" | wc -l)" -eq 1 ] && [ -d "$LAYER" ] ||
		fail "expected one layer in the store, got: $LAYER"
	C="$BATS_TEST_TMPDIR/canary"
	mkdir -p "$C"
	echo alive >"$C/canary"
}

canary_alive() {
	[ "$(cat "$C/canary" 2>/dev/null)" = alive ] || fail "the canary file was deleted or changed"
}

# Compare a tree with a sum taken before; show the difference.
same_tree() {
	local now
	now=$(tree_sum "$1")
	[ "$now" = "$2" ] || fail "'$1' changed:" "$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$now"))"
}

# ---------------------------------------------------------------------------
# layers are never written

@test "the base layer never changes whatever is done inside an env" {
	before=$(tree_sum "$LAYER")
	base_before=$(tree_sum "$BASE")
	run ctool run e -- /bin/sh -ec '
		echo x >>/etc/passwd
		rm /etc/os-release
		rm -r /home/tester
		mkdir /newdir
		touch /bin/busybox
		chmod 0700 /bin
		chown 5:5 /etc/group
		rm /bin/ls
		ln -sf /x /bin/vi
		mv /sbin /sbin2
		echo f >/root/f'
	assert_status 0
	[ ! -e "$ROOT/etc/os-release" ] && [ -e "$ROOT/newdir" ] || fail "the changes are not visible"
	same_tree "$LAYER" "$before"
	ctool off e
	same_tree "$LAYER" "$before"
	ctool clone e e2
	ctool run e2 -- /bin/sh -c 'echo more >>/etc/passwd'
	ctool reset e
	same_tree "$LAYER" "$before"
	ctool rm e --force
	ctool rm e2 --force
	same_tree "$LAYER" "$before"
	same_tree "$BASE" "$base_before"
}

# ---------------------------------------------------------------------------
# reset

@test "reset drops the changes: new files are gone, deleted files are back" {
	ctool run e -- /bin/sh -ec 'echo x >/new; rm /etc/os-release; echo y >>/etc/passwd; rm -r /home'
	ctool off e
	run ctool reset e
	assert_status 0
	[ -z "$(ls -A "$(env_upper e)")" ] || fail "upper not empty after reset:" "$(ls -A "$(env_upper e)")"
	run ctool run e -- /bin/test -e /new
	assert_status 1
	run ctool run e -- /bin/cat /etc/os-release
	assert_status 0
	[[ $output == *ctool-test* ]]
	run ctool run e -- /bin/wc -l /etc/passwd
	[ "${output%% *}" = 2 ] || fail "passwd: $output"
	run ctool run e -- /bin/test -d /home/tester
	assert_status 0
}

@test "reset is refused while on; reset --force turns it off first" {
	ctool run e -- /bin/touch /new
	run --separate-stderr ctool reset e
	assert_status 1
	assert_one_error_line "ctool: reset: "
	mounted "$ROOT" || fail "reset turned the env off"
	[ -e "$ROOT/new" ] || fail "reset dropped the changes although refused"
	run ctool reset --force e
	assert_status 0
	run ctool run e -- /bin/test -e /new
	assert_status 1
}

# ---------------------------------------------------------------------------
# rm

@test "rm is refused while on; rm --force removes everything of the env" {
	ctool run e -- /bin/touch /new
	id=$(env_id e)
	run --separate-stderr ctool rm e
	assert_status 1
	assert_one_error_line "ctool: rm: "
	mounted "$ROOT" || fail "rm turned the env off"
	[ "$(ctool list -q)" = e ]
	run ctool rm --force e
	assert_status 0
	[ -z "$(ctool list -q)" ] || fail "still listed"
	run ctool info e
	assert_status 1
	assert_no_mounts_under "$ROOT"
	[ ! -e "$CTOOL_STORE/envs/$id" ] || fail "left: $(find "$CTOOL_STORE/envs/$id" | head)"
	[ -z "$(find "$CTOOL_STORE" -name "*$id*")" ] || fail "left: $(find "$CTOOL_STORE" -name "*$id*")"
	ctool gc
	[ -z "$(ls -A "$CTOOL_STORE/trash" 2>/dev/null)" ] || fail "trash not empty after gc"
	[ "$(ctool images | awk 'NR == 2 { print $4 }')" = 0 ] || fail "image still counts the env"
}

@test "rm of an env rooted with -d leaves its root as an empty directory" {
	D="$BATS_TEST_TMPDIR/droot"
	ctool clone base d -d "$D"
	ctool run d -- /bin/touch /x
	run ctool rm d --force
	assert_status 0
	assert_no_mounts_under "$D"
	[ -d "$D" ] && [ -z "$(ls -A "$D")" ] || fail "root not left empty: $(ls -A "$D" 2>&1)"
}

@test "a kill -9 of on or off at any moment: rm --force still works, the canary survives" {
	delays=(0.001 0.003 0.005 0.008 0.012 0.02 0.03 0.05 0.08 0.12)
	i=0
	for d in "${delays[@]}"; do
		i=$((i + 1))
		ctool clone base "k$i"
		ctool bind "k$i" "$C" /data
		jitter=$(printf '0.00%d' $((RANDOM % 3)))
		timeout -s KILL "$(awk -v a="$d" -v b="$jitter" 'BEGIN { print a + b }')" \
			"$CTOOL" on "k$i" >/dev/null 2>&1 || true
		canary_alive
		if [ $((i % 2)) -eq 0 ]; then
			# and once on, a killed off
			"$CTOOL" on "k$i" >/dev/null 2>&1 || true
			timeout -s KILL "$d" "$CTOOL" off "k$i" >/dev/null 2>&1 || true
			canary_alive
		fi
		run ctool rm --force "k$i"
		[ "$status" -eq 0 ] || fail "rm --force k$i after a kill at $d s: status $status:" "$output"
		canary_alive
		assert_no_mounts_under "$BATS_TEST_TMPDIR"
	done
	ctool gc
	canary_alive
}

@test "rm and reset never delete through a mount below the upper layer" {
	ctool run e -- /bin/touch /x
	ctool off e
	upper=$(env_upper e)
	mkdir "$upper/behind-your-back"
	mount --bind "$C" "$upper/behind-your-back"
	run --separate-stderr ctool reset e
	canary_alive
	assert_status 1
	run --separate-stderr ctool rm e --force
	canary_alive
	assert_status 1
	assert_one_error_line "ctool: rm: "
	[ "$(ctool list -q)" = e ] || fail "env removed from the catalog"
	[ -e "$upper/x" ] || fail "rm removed files before stopping"
	umount "$upper/behind-your-back"
	run ctool rm e
	assert_status 0
	canary_alive
}

@test "rm --force never deletes through a mount made under the root or the env's dir" {
	ctool on e
	mkdir "$ROOT/mnt-c"
	mount --bind "$C" "$ROOT/mnt-c"
	run ctool rm --force e
	canary_alive
	if [ "$status" -ne 0 ]; then
		# refused: then nothing was removed
		[ "$(ctool list -q)" = e ] || fail "refused but the env is gone"
	fi
	mounts_under "$ROOT" | while IFS= read -r m; do umount -l "$m"; done
	# a mount in the env's folder in the store
	ctool clone base f
	id=$(env_id f)
	mkdir -p "$CTOOL_STORE/envs/$id/conf/c"
	mount --bind "$C" "$CTOOL_STORE/envs/$id/conf/c"
	run ctool rm --force f
	canary_alive
	assert_status 1
	umount "$CTOOL_STORE/envs/$id/conf/c"
	canary_alive
}

@test "gc leaves an env folder with mounts below even when its row is lost" {
	ctool on e
	id=$(env_id e)
	sqlite3 "$CTOOL_STORE/catalog.db" "DELETE FROM envs WHERE name = 'e'"
	[ -z "$(ctool list -q)" ] || fail "the row is still there"
	run --separate-stderr ctool gc
	assert_status 0
	[[ $stderr == *"has no catalog row"* ]] || fail "no warning: $stderr"
	[ -d "$CTOOL_STORE/envs/$id" ] || fail "the folder was moved"
	mounted "$ROOT/proc" || fail "the mounts were moved"
	umount -R "$ROOT"
	run ctool gc
	assert_status 0
	[ ! -e "$CTOOL_STORE/envs/$id" ] || fail "the orphan is still there once unmounted"
	canary_alive
}

@test "rmi never deletes through a mount below a layer" {
	ctool rm e
	mount --bind "$C" "$LAYER/tmp"
	run ctool rmi base
	canary_alive
	assert_status 1
	umount "$LAYER/tmp"
	run ctool rmi base
	assert_status 0
	canary_alive
}

# ---------------------------------------------------------------------------
# binds cannot reach the host

@test "a -d root reached through a symlink is refused, nothing mounted" {
	T="$BATS_TEST_TMPDIR/t"
	mkdir -p "$T/real" "$T/evil/root"
	ctool clone base d -d "$T/real/root"
	ctool on d
	ctool off d
	# someone who owns the parent swaps it for a link to another place
	mv "$T/real" "$T/moved"
	ln -s "$T/evil" "$T/real"
	run --separate-stderr ctool on d
	assert_status 1
	assert_one_error_line "ctool: on: "
	[[ $stderr == *symlink* ]] || fail "no word of the symlink: $stderr"
	assert_no_mounts_under "$T"
	run --separate-stderr ctool run d -- /bin/true
	assert_status 125
	assert_no_mounts_under "$T"
	rm "$T/real"
	mv "$T/moved" "$T/real"
	run ctool run d -- /bin/true
	assert_status 0
}

@test "a bind target that is a symlink to a host dir is resolved inside the root" {
	HOSTDIR="$BATS_TEST_TMPDIR/hostdir"
	mkdir "$HOSTDIR"
	echo precious >"$HOSTDIR/keep"
	SRC="$BATS_TEST_TMPDIR/src"
	mkdir "$SRC"
	echo src >"$SRC/s"
	ctool on e
	mkdir -p "$ROOT/mnt"
	ln -s "$HOSTDIR" "$ROOT/mnt/evil"
	ln -s "../../../../../../../../../../..$HOSTDIR" "$ROOT/mnt/evil2"
	ctool off e
	ctool bind e "$SRC" /mnt/evil
	ctool bind e "$SRC" /mnt/evil2/sub
	run ctool on e
	# whatever happened, the host dir got nothing
	[ -z "$(mounts_under "$HOSTDIR")" ] || fail "mounted on the host:" "$(mounts_under "$HOSTDIR")"
	[ "$(ls -A "$HOSTDIR")" = keep ] && [ "$(cat "$HOSTDIR/keep")" = precious ] ||
		fail "host dir changed: $(ls -A "$HOSTDIR")"
	# and the spec says the targets are resolved inside the root
	assert_status 0
	mounted "$ROOT$HOSTDIR" || fail "/mnt/evil not bound at $HOSTDIR inside the root"
	mounted "$ROOT$HOSTDIR/sub" || fail "/mnt/evil2/sub not bound inside the root"
	run ctool run e -- /bin/cat /mnt/evil/s
	[ "$output" = src ] || fail "inside: $output"
}

@test "a -v target that is a symlink to a host dir is resolved inside the root" {
	HOSTDIR="$BATS_TEST_TMPDIR/hostdir"
	mkdir "$HOSTDIR"
	echo precious >"$HOSTDIR/keep"
	SRC="$BATS_TEST_TMPDIR/src"
	mkdir "$SRC"
	ctool on e
	mkdir -p "$ROOT/mnt"
	ln -s "$HOSTDIR" "$ROOT/mnt/evil"
	echo src >"$SRC/s"
	run ctool on e -v "$SRC:/mnt/evil"
	[ -z "$(mounts_under "$HOSTDIR")" ] || fail "mounted on the host:" "$(mounts_under "$HOSTDIR")"
	[ "$(ls -A "$HOSTDIR")" = keep ] || fail "host dir changed"
	# and the spec says the target is resolved (and created) inside the root
	assert_status 0
	mounted "$ROOT$HOSTDIR" || fail "/mnt/evil not bound at $HOSTDIR inside the root"
	# (from the host, $ROOT/mnt/evil leads to the host dir: read it inside)
	[ "$(cat "$ROOT$HOSTDIR/s")" = src ]
	run ctool run e -- /bin/cat /mnt/evil/s
	[ "$output" = src ] || fail "inside: $output"
	ctool off e
	[ -z "$(mounts_under "$HOSTDIR")" ]
	[ "$(ls -A "$HOSTDIR")" = keep ] || fail "host dir changed"
	[ "$(cat "$HOSTDIR/keep")" = precious ]
}

@test "a bind target with .. is refused with nothing mounted" {
	SRC="$BATS_TEST_TMPDIR/src"
	mkdir "$SRC"
	etc_mounts=$(mount_count /etc)
	# from ctool bind: refused now, or at the next on
	run ctool bind e "$SRC" ../../etc
	if [ "$status" -eq 0 ]; then
		run ctool on e
		assert_status 1
		assert_no_mounts_under "$ROOT"
		rm -f "$(env_conf e)/tool.conf"
	fi
	# from a tool.conf written on the host
	conf=$(env_conf e)
	mkdir -p "$conf"
	printf '[bind]\nsrc:%s tgt:/mnt/../../etc\n' "$SRC" >"$conf/tool.conf"
	run --separate-stderr ctool on e
	assert_status 1
	assert_one_error_line "ctool: on: "
	assert_no_mounts_under "$ROOT"
	rm "$conf/tool.conf"
	# from -v
	for tgt in ../../etc /../../etc /mnt/../../etc; do
		run --separate-stderr ctool on e -v "$SRC:$tgt"
		[ "$status" -ne 0 ] || fail "-v $SRC:$tgt accepted"
		assert_no_mounts_under "$ROOT"
	done
	[ "$(mount_count /etc)" = "$etc_mounts" ] || fail "something was mounted on the host's /etc"
	# nothing bad was recorded: a plain on works
	run ctool on e
	assert_status 0
}

@test "a missing source, / or the store as a source is refused with nothing mounted" {
	for src in "$BATS_TEST_TMPDIR/missing" / /. "$CTOOL_STORE" "$CTOOL_STORE/"; do
		run --separate-stderr ctool on e -v "$src:/data"
		[ "$status" -eq 1 ] || fail "on -v $src:/data: status $status" "$stderr"
		assert_one_error_line "ctool: on: "
		assert_no_mounts_under "$ROOT"
	done
	conf=$(env_conf e)
	mkdir -p "$conf"
	for src in "$BATS_TEST_TMPDIR/missing" / "$CTOOL_STORE"; do
		printf '[bind]\nsrc:%s tgt:/data\n' "$src" >"$conf/tool.conf"
		run --separate-stderr ctool on e
		[ "$status" -eq 1 ] || fail "tool.conf src:$src: status $status" "$stderr"
		assert_one_error_line "ctool: on: "
		assert_no_mounts_under "$ROOT"
	done
	rm "$conf/tool.conf"
	# nothing bad was recorded: a plain on works and binds nothing
	run ctool on e
	assert_status 0
	! mounted "$ROOT/data" || fail "/data mounted"
}

# ---------------------------------------------------------------------------
# nothing inside decides what the host does

@test "a /chroot.d/host-cmd written inside the env is not run on the host" {
	MARK="$BATS_TEST_TMPDIR/pwned"
	env_write e /chroot.d/host-cmd <<EOF
#!/bin/sh
touch "$MARK"
EOF
	ctool off e
	ctool run e -- /bin/true
	ctool run e -- true
	ctool run e "echo hi"
	[ ! -e "$MARK" ] || fail "/chroot.d/host-cmd ran on the host"
}

@test "a /chroot.d/tool.conf written inside the env is not applied" {
	S="$BATS_TEST_TMPDIR/secret"
	mkdir "$S"
	echo s3cret >"$S/secret"
	env_write e /chroot.d/tool.conf 0644 <<EOF
[bind]
src:$S tgt:/stolen
src:/ tgt:/hostroot
EOF
	ctool off e
	run ctool on e
	assert_status 0
	! mounted "$ROOT/stolen" || fail "/stolen was mounted"
	! mounted "$ROOT/hostroot" || fail "/hostroot was mounted"
	run ctool run e -- /bin/cat /stolen/secret
	[ "$status" -ne 0 ] && [[ $output != *s3cret* ]] || fail "the secret is readable inside"
}
