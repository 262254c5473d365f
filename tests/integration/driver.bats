#!/usr/bin/env bats
# Drivers: --driver and $CTOOL_DRIVER on clone, on and run; the fallback
# to ctool-overlayfs when the kernel refuses an overlay, and what info
# says of it.

load helpers

setup() {
	common_setup
	unset CTOOL_DRIVER
	base_image
}

@test "a bad driver is a usage error, with nothing made or mounted" {
	for args in "clone base x --driver zfs" "on x --driver zfs" "run x --driver zfs -- /bin/true"; do
		[ "${args%% *}" = clone ] || ctool clone base x 2>/dev/null || true
		# shellcheck disable=SC2086
		run --separate-stderr ctool $args
		assert_status 2
		assert_one_error_line "ctool: ${args%% *}: "
		[[ $stderr == *"no driver named 'zfs'"* ]] || fail "stderr: $stderr"
	done
	run --separate-stderr env CTOOL_DRIVER=zfs "$CTOOL" on x
	assert_status 1
	assert_one_error_line "ctool: on: "
	[[ $stderr == *CTOOL_DRIVER* ]] || fail "stderr: $stderr"
	# a bad $CTOOL_DRIVER is refused before clone makes anything
	run --separate-stderr env CTOOL_DRIVER=zfs "$CTOOL" clone base y -d "$BATS_TEST_TMPDIR/new"
	assert_status 1
	assert_one_error_line "ctool: clone: "
	[ ! -e "$BATS_TEST_TMPDIR/new" ] || fail "clone made its -d folder"
	run ctool info y
	[ "$status" -ne 0 ] || fail "clone made env y"
	assert_no_mounts_under "$CTOOL_STORE"
}

@test "clone --driver and \$CTOOL_DRIVER choose the env's driver" {
	ctool clone base k
	[ "$(info_get k driver)" = kernel ]
	ctool clone base f --driver fuse
	[ "$(info_get f driver)" = fuse ]
	CTOOL_DRIVER=fuse "$CTOOL" clone base g
	[ "$(info_get g driver)" = fuse ]
	CTOOL_DRIVER=fuse "$CTOOL" clone base h --driver kernel
	[ "$(info_get h driver)" = kernel ]
	[ "$(list_field f 4)" = fuse ] || fail "list DRIVER: $(list_field f 4)"
}

@test "the kernel refusing, a driver that cannot start: one line, nothing mounted" {
	ctool clone base e
	root=$(env_root e)
	run --separate-stderr env CTOOL_TEST_KERNEL_REFUSES=1 CTOOL_OVERLAYFS=/nonexistent \
		"$CTOOL" on e
	assert_status 1
	assert_one_error_line "ctool: on: "
	[[ $stderr == *"kernel refused"* && $stderr == *"fuse driver"* ]] || fail "stderr: $stderr"
	assert_no_mounts_under "$root"
	[ "$(info_get e driver)" = kernel ] || fail "driver recorded: $(info_get e driver)"
	[ "$(list_field e 3)" = off ]
}

@test "--driver kernel is never replaced: the kernel's refusal is the error" {
	ctool clone base e
	run --separate-stderr env CTOOL_TEST_KERNEL_REFUSES=1 "$CTOOL" on e --driver kernel
	assert_status 1
	assert_one_error_line "ctool: on: "
	[[ $stderr != *"fuse driver"* ]] || fail "fell back although the kernel was asked for: $stderr"
	[[ $stderr == *"cannot mount the overlay"* ]] || fail "stderr: $stderr"
	assert_no_mounts_under "$(env_root e)"
}

@test "an on that fails after mounting records no change of driver" {
	ctool clone base x
	mkdir -p "$BATS_TEST_TMPDIR/d"
	# the overlay mounts under the fuse driver, then the bind of a
	# directory on a file fails
	run --separate-stderr ctool on x --driver fuse -v "$BATS_TEST_TMPDIR/d:/etc/passwd"
	assert_status 1
	assert_one_error_line "ctool: on: "
	assert_no_mounts_under "$CTOOL_STORE"
	[ "$(info_get x driver)" = kernel ] || fail "driver: $(info_get x driver)"
	ctool on x --driver fuse
	[ "$(info_get x driver)" = fuse ] || fail "driver after a good on: $(info_get x driver)"
	ctool off x
}

@test "ctool-overlayfs killed mid-write: off cleans up, the env mounts again" {
	ctool clone base f --driver fuse
	ctool on f
	root=$(env_root f)
	pidfile="$CTOOL_STORE/envs/$(env_id f)/fuse.pid"
	pid=$(cat "$pidfile")
	[ "$(cat "/proc/$pid/comm")" = ctool-overlayfs ] || fail "pidfile: $pid"
	"$CTOOL" run f -- /bin/sh -c 'i=0; while [ $i -lt 100000 ]; do echo $i >>/log; i=$((i+1)); done' \
		>/dev/null 2>&1 3>&- &
	writer=$!
	sleep 0.3
	kill -9 "$pid"
	run --separate-stderr timeout 20 "$CTOOL" off f
	assert_status 0
	[[ $stderr == *"ctool-overlayfs is gone"* ]] || fail "no warning: $stderr"
	wait "$writer" || true
	assert_no_mounts_under "$root"
	[ ! -e "$pidfile" ] || fail "pidfile left"
	run ctool run f -- /bin/sh -c 'test -s /log && echo kept'
	assert_status 0
	[ "$output" = kept ] || fail "output: $output"
	[ "$(info_get f driver)" = fuse ]
}

@test "copies a dead ctool-overlayfs left waiting: the next on shows them; the kernel's would lose them" {
	ctool clone base e
	# an env that fell back to ctool-overlayfs asks for the kernel again
	CTOOL_TEST_KERNEL_REFUSES=1 "$CTOOL" on e
	ctool off e
	[ "$(info_get e driver)" = fuse ] || fail "no fallback: $(info_get e driver)"
	id=$(env_id e)
	# what a daemon killed with a copy of /etc/passwd waiting leaves
	mkdir -p "$CTOOL_STORE/envs/$id/upper/etc" "$CTOOL_STORE/envs/$id/work/work"
	w="$CTOOL_STORE/envs/$id/work"
	printf 'root:x:0:0:kept:/root:/bin/sh\n' >"$w/work/#1.1"
	{ cat /proc/sys/kernel/random/boot_id; printf '#1.1\0etc/passwd\0'; } >"$w/ctool-pending"
	run --separate-stderr ctool on e --driver kernel
	assert_status 1
	assert_one_error_line "ctool: on: "
	[[ $stderr == *"left copies waiting"* ]] || fail "stderr: $stderr"
	assert_no_mounts_under "$(env_root e)"
	[ -f "$w/work/#1.1" ] || fail "the waiting copy went"
	run --separate-stderr ctool -v on e
	assert_status 0
	[[ $stderr == *"left copies waiting"* ]] || fail "-v says: $stderr"
	[ "$(info_get e driver)" = fuse ] || fail "driver: $(info_get e driver)"
	[[ $(info_get e driver-note) == *"left copies waiting"* ]] || fail "note: $(info_get e driver-note)"
	[ "$(head -n 1 "$(env_root e)/etc/passwd")" = root:x:0:0:kept:/root:/bin/sh ] ||
		fail "the copy is not shown: $(head -n 1 "$(env_root e)/etc/passwd")"
	ctool off e
	# shown, the kernel is asked for again
	ctool on e
	[ "$(info_get e driver)" = kernel ] || fail "driver after: $(info_get e driver)"
	[ "$(head -n 1 "$(env_root e)/etc/passwd")" = root:x:0:0:kept:/root:/bin/sh ] || fail "lost"
	ctool off e
}

@test "off reaps ctool-overlayfs; on and off again leave no daemon" {
	ctool clone base f --driver fuse
	for i in 1 2 3; do
		ctool on f
		pid=$(cat "$CTOOL_STORE/envs/$(env_id f)/fuse.pid")
		ctool off f
		! kill -0 "$pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$pid/stat")" = Z ] ||
			fail "round $i: daemon $pid still running"
	done
	assert_no_mounts_under "$(env_root f)"
}

@test "a store inside an overlay: the kernel refuses, ctool-overlayfs takes over" {
	O="$BATS_TEST_TMPDIR/o"
	mkdir -p "$O/lower" "$O/upper" "$O/work" "$O/mnt"
	mount -t overlay overlay -o "lowerdir=$O/lower,upperdir=$O/upper,workdir=$O/work" "$O/mnt"
	export CTOOL_STORE="$O/mnt/store"
	base_image
	ctool clone base e
	run --separate-stderr ctool -v on e
	assert_status 0
	[[ $stderr == *"refused the overlay"*"not supported as upperdir"*"using ctool-overlayfs"* ]] ||
		fail "-v does not say why:" "$stderr"
	[ "$(info_get e driver)" = fuse ]
	[[ $(info_get e driver-note) == *"not supported as upperdir"* ]] ||
		fail "driver-note: $(info_get e driver-note)"
	[ "$(list_field e 4)" = fuse ]
	# deleting a lower file needs a whiteout the outer overlay refuses as
	# a device: the daemon writes it in its file form
	run ctool run e -- /bin/sh -c 'echo new >/new; rm /bin/vi; mkdir /d; ls /bin/vi'
	[ "$status" -ne 0 ] || fail "/bin/vi is still there"
	ctool off e
	assert_no_mounts_under "$(env_root e)"
	run ctool run e -- /bin/sh -c 'cat /new; test -e /bin/vi || echo gone'
	assert_status 0
	[ "$output" = "new"$'\n'"gone" ] || fail "output:" "$output"
	ctool off e
	run ctool reset e
	assert_status 0
	run ctool run e -- /bin/sh -c 'test -e /new || test ! -e /bin/vi || echo base'
	[ "$output" = base ] || fail "after reset:" "$output"
	ctool rm --force e
	ctool gc
	umount "$O/mnt"
}
