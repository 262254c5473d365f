#!/usr/bin/env bats
# The mount table as kernels older than 6.8 show it (read through
# libmount): CTOOL_TEST_MOUNTTAB=1 makes ctool take that path here, and
# on, off, rm and the shared-store case must behave exactly the same.

load helpers

setup() {
	common_setup
	export CTOOL_TEST_MOUNTTAB=1
	base_image
	ctool clone base e
	ROOT=$(env_root e)
}

@test "libmount path: off unmounts every mount of the env, deepest first" {
	ctool on e
	[ "$(mounts_under "$ROOT" | wc -l)" -ge 8 ] || fail "not on:" "$(mounts_under "$ROOT")"
	ctool off e
	assert_no_mounts_under "$ROOT"
}

@test "libmount path: a busy env is named and kept; off --force detaches it" {
	ctool on e
	(cd "$ROOT/tmp" && exec sleep 30) &
	holder=$!
	sleep 0.2
	run --separate-stderr ctool off -t 0 e
	assert_status 1
	[[ $stderr == *"held by PID"*"$holder"* ]] || fail "holder not named: $stderr"
	mounted "$ROOT" || fail "a refused off unmounted the root"
	ctool off --force e
	kill "$holder" 2>/dev/null || true
	wait "$holder" 2>/dev/null || true
	assert_no_mounts_under "$ROOT"
}

@test "libmount path: rm refuses while a mount sits in the env's folder" {
	CANARY="$BATS_TEST_TMPDIR/canary"
	mkdir -p "$CANARY"
	echo alive >"$CANARY/keep"
	ctool on e
	ctool off e
	upper=$(env_upper e)
	mkdir -p "$upper/x"
	mount --bind "$CANARY" "$upper/x"
	run --separate-stderr ctool rm --force e
	umount "$upper/x"
	assert_status 1
	[[ $stderr == *"is mounted"* ]] || fail "stderr: $stderr"
	[ "$(cat "$CANARY/keep")" = alive ]
	run ctool rm e
	assert_status 0
}

@test "libmount path: a store on a shared mount keeps env mounts from its peers" {
	shared_pair
	export CTOOL_STORE="$P/store"
	base_image
	ctool clone base s
	ctool on s
	leaked=$(mounts_under "$PEER" | grep -v -x -e "$PEER" -e "$PEER/store" || true)
	ctool off s
	ctool gc
	left=$(mounts_under "$P" | grep -v -x "$P" || true)
	umount "$PEER/store" 2>/dev/null || true
	umount "$PEER"
	umount "$P"
	[ -z "$leaked" ] || fail "env mounts propagated to the peer:" "$leaked"
	[ -z "$left" ] || fail "left mounted after off and gc:" "$left"
}
