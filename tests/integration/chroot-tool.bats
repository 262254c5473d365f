#!/usr/bin/env bats
# chroot-tool's README workflow, step by step, with ctool:
#   create -d DIR; DIR/chroot.d/chroot-cmd; cd DIR; run "some-command";
#   run start -d DIR; on -d DIR; off -d DIR; tool.conf binds.
# CTOOL_IMAGE=base (from the busybox tree) spares a debootstrap.

load helpers

setup() {
	common_setup
	base_image
	export CTOOL_IMAGE=base
	D="$BATS_TEST_TMPDIR/my-chroot-1"
}

# Write stdin to DIR/chroot.d/NAME. With ctool DIR is the env's mount
# point, so this needs the env on (as it is right after create -d).
write_chroot_d() {
	mkdir -p "$D/chroot.d"
	cat >"$D/chroot.d/$1"
	chmod 0755 "$D/chroot.d/$1"
}

@test "create -d DIR makes an env named after DIR from \$CTOOL_IMAGE" {
	run ctool create -d "$D"
	assert_status 0
	[ "$(ctool list -q)" = my-chroot-1 ] || fail "list -q: $(ctool list -q)"
	[ "$(list_field my-chroot-1 2)" = base ]
	[ "$(env_root my-chroot-1)" = "$D" ]
	[ -d "$D" ]
	# no image was debootstrapped
	[ "$(ctool images | awk 'NR > 1 { print $1 }')" = base ]
}

@test "create -d DIR --name NAME --image IMAGE" {
	ctool create base2 --from "$BASE"
	run ctool create -d "$D" --name other --image base2
	assert_status 0
	[ "$(ctool list -q)" = other ]
	[ "$(list_field other 2)" = base2 ]
	[ "$(env_root other)" = "$D" ]
}

@test "create -d with a relative DIR records an absolute root" {
	cd "$BATS_TEST_TMPDIR"
	run ctool create -d rel-chroot
	assert_status 0
	[ "$(env_root rel-chroot)" = "$BATS_TEST_TMPDIR/rel-chroot" ]
	run ctool run "echo hi" -d rel-chroot
	assert_status 0
	[ "$output" = hi ] || fail "output:" "$output"
	cd /
}

@test "create -d refuses a DIR that is not empty" {
	mkdir "$D"
	echo mine >"$D/file"
	run --separate-stderr ctool create -d "$D"
	assert_status 1
	assert_one_error_line "ctool: create: "
	[ -z "$(ctool list -q)" ] || fail "an env was made"
	[ "$(cat "$D/file")" = mine ] && [ "$(ls -A "$D")" = file ] || fail "DIR was changed"
}

@test "workflow: chroot-cmd receives the words of run \"some-command\" from DIR" {
	# README steps 1-3 literally: create, write DIR/chroot.d/chroot-cmd,
	# cd DIR, run "some-command". Step 2 needs DIR to show the tree.
	ctool create -d "$D"
	[ -x "$D/bin/busybox" ] || fail "DIR does not show the image after create -d"
	write_chroot_d chroot-cmd <<'EOF'
#!/bin/sh
echo "chroot-cmd:$#:$*"
EOF
	cd "$D"
	run ctool run "some-command"
	assert_status 0
	[ "$output" = "chroot-cmd:1:some-command" ] || fail "output:" "$output"
	run ctool run "rebuild-index alfa"
	assert_status 0
	[ "$output" = "chroot-cmd:2:rebuild-index alfa" ] || fail "output:" "$output"
	cd /
	# what was written survives off and on
	ctool off -d "$D"
	run ctool run "again" -d "$D"
	assert_status 0
	[ "$output" = "chroot-cmd:1:again" ] || fail "output:" "$output"
}

@test "workflow: run start -d DIR runs DIR/chroot.d/start" {
	ctool create -d "$D"
	write_chroot_d chroot-cmd <<'EOF'
#!/bin/sh
echo "chroot-cmd:$*"
EOF
	write_chroot_d start <<'EOF'
#!/bin/sh
echo "started:$#"
EOF
	run ctool run start -d "$D"
	assert_status 0
	[ "$output" = "started:0" ] || fail "output:" "$output"
	run ctool run "start now" -d "$D"
	assert_status 0
	[ "$output" = "started:1" ] || fail "output:" "$output"
}

@test "workflow: on -d DIR mounts, off -d DIR runs chroot.d/stop and unmounts" {
	ctool create -d "$D"
	OUT="$BATS_TEST_TMPDIR/out"
	mkdir "$OUT"
	ctool off -d "$D"
	ctool bind -d "$D" "$OUT" /out
	run ctool on -d "$D"
	assert_status 0
	mounted "$D" && mounted "$D/proc" && mounted "$D/out" || fail "not on:" "$(mounts_under "$D")"
	write_chroot_d stop <<'EOF'
#!/bin/sh
echo stopped >/out/stopped
EOF
	run ctool off -d "$D"
	assert_status 0
	[ "$(cat "$OUT/stopped" 2>&1)" = stopped ] || fail "chroot.d/stop did not run"
	assert_no_mounts_under "$D"
	[ "$(list_field my-chroot-1 3)" = off ]
}

@test "workflow: on and off with no name from the root" {
	ctool create -d "$D"
	ctool off -d "$D"
	# entered while off, as a chroot-tool user would
	cd "$D"
	run ctool on
	assert_status 0
	mounted "$D" || fail "not mounted"
	run ctool off
	assert_status 0
	assert_no_mounts_under "$D"
	cd /
}

@test "with no name, no -d and a current directory that is no env root: an error" {
	ctool create -d "$D"
	ctool off -d "$D"
	cd "$BATS_TEST_TMPDIR"
	run --separate-stderr ctool on
	[ "$status" -ne 0 ] || fail "on succeeded"
	assert_one_error_line "ctool: on: "
	assert_no_mounts_under "$D"
	cd /
}

@test "workflow: tool.conf binds via bind -d DIR SRC TGT" {
	ctool create -d "$D"
	ctool off -d "$D"
	SRC="$BATS_TEST_TMPDIR/src"
	mkdir "$SRC"
	echo hello >"$SRC/f"
	run ctool bind -d "$D" "$SRC" /srv/src
	assert_status 0
	run ctool bind -d "$D" "$SRC" /srv/ro --ro
	assert_status 0
	conf="$(env_conf my-chroot-1)/tool.conf"
	grep -qx '\[bind\]' "$conf" || fail "tool.conf:" "$(cat "$conf")"
	[ "$(grep -c "^src:$SRC tgt:" "$conf")" -eq 2 ] || fail "tool.conf:" "$(cat "$conf")"
	# nothing of it is visible inside
	ctool on -d "$D"
	[ ! -e "$D/chroot.d/tool.conf" ] || fail "tool.conf is visible inside the env"
	mounted "$D/srv/src" && mounted "$D/srv/ro" || fail "binds not mounted"
	mount_is_ro "$D/srv/ro" && ! mount_is_ro "$D/srv/src" || fail "ro flags wrong"
	run ctool run "cat /srv/src/f" -d "$D"
	assert_status 0
	[ "$output" = hello ] || fail "output:" "$output"
	run ctool run -d "$D" -- /bin/sh -c 'echo x >/srv/ro/g'
	[ "$status" -ne 0 ] && [ ! -e "$SRC/g" ] || fail "wrote through the ro bind"
}
