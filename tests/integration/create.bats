#!/usr/bin/env bats
# create: errors, and an interrupted create leaves nothing behind.

load helpers

# A mirror that accepts every connection and never answers: debootstrap
# hangs in its first download until ctool is interrupted. Its own session,
# so teardown stops it with the connections it holds.
start_silent_mirror() {
	local port
	for port in $(seq 18700 18720); do
		setsid busybox nc -ll -p "$port" -e sleep 600 >/dev/null 2>&1 </dev/null &
		MIRROR_PID=$!
		sleep 0.1
		if kill -0 "$MIRROR_PID" 2>/dev/null; then
			MIRROR="http://127.0.0.1:$port/debian"
			return 0
		fi
	done
	fail "no free port for the silent mirror"
}

teardown() {
	[ -z "${MIRROR_PID:-}" ] || kill -- "-$MIRROR_PID" 2>/dev/null || true
	common_teardown
}

# Nothing of a create is left: no image row, no layer, nothing staged.
assert_nothing_created() {
	run ctool images
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "images listed:" "$output"
	[ -z "$(ls -A "$CTOOL_STORE/layers")" ] || fail "layers left:" "$(ls -A "$CTOOL_STORE/layers")"
	[ -z "$(ls -A "$CTOOL_STORE/tmp")" ] || fail "tmp left:" "$(ls -A "$CTOOL_STORE/tmp")"
	assert_no_mounts_under "$CTOOL_STORE"
}

@test "create interrupted with SIGINT during debootstrap leaves nothing" {
	start_silent_mirror
	"$CTOOL" create deb --mirror "$MIRROR" </dev/null >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
	local pid=$!
	# wait until debootstrap runs
	for _ in $(seq 100); do
		pgrep -f "debootstrap.*$CTOOL_STORE/tmp" >/dev/null && break
		sleep 0.05
	done
	pgrep -f "debootstrap.*$CTOOL_STORE/tmp" >/dev/null || fail "debootstrap never started"
	kill -INT "$pid"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 130 ] || fail "exit $rc, expected 130:" "$(cat "$BATS_TEST_TMPDIR/err")"
	grep -q "interrupted; nothing was created" "$BATS_TEST_TMPDIR/err"
	! pgrep -f "debootstrap.*$CTOOL_STORE/tmp"
	assert_nothing_created
}

@test "create killed with SIGKILL leaves only what gc removes" {
	start_silent_mirror
	"$CTOOL" create deb --mirror "$MIRROR" </dev/null >/dev/null 2>&1 &
	local pid=$!
	for _ in $(seq 100); do
		pgrep -f "debootstrap.*$CTOOL_STORE/tmp" >/dev/null && break
		sleep 0.05
	done
	kill -9 "$pid"
	wait "$pid" || true
	pkill -9 -f "debootstrap.*$CTOOL_STORE/tmp" || true
	sleep 0.2
	run ctool images
	[ "${#lines[@]}" -eq 1 ] || fail "a killed create made an image:" "$output"
	ctool gc
	assert_nothing_created
}

@test "create from a missing directory fails with one line and creates nothing" {
	run --separate-stderr ctool create img --from "$BATS_TEST_TMPDIR/nope"
	assert_status 1
	assert_one_error_line "ctool: create: "
	assert_nothing_created
}

@test "create an image that exists is refused" {
	base_image
	run --separate-stderr ctool create base --from "$BASE"
	assert_status 1
	[ "$stderr" = "ctool: create: an image named 'base' already exists" ]
	[ "$(ls "$CTOOL_STORE/layers" | wc -l)" -eq 1 ]
}

@test "create --from copies the tree: the source can change or go afterwards" {
	cp -a "$BASE" "$BATS_TEST_TMPDIR/src"
	ctool create img --from "$BATS_TEST_TMPDIR/src"
	rm -rf "$BATS_TEST_TMPDIR/src"
	ctool clone img e
	run ctool run e -- cat /etc/os-release
	assert_status 0
	[[ $output == *ctool-test* ]]
}

@test "create with a failing debootstrap (unknown suite) reports it and leaves nothing" {
	run --separate-stderr ctool create deb --suite no-such-suite-x --mirror "http://127.0.0.1:1/debian"
	assert_status 1
	[[ ${stderr_lines[-1]} == "ctool: create: debootstrap failed"* ]]
	assert_nothing_created
}

@test "create -d DIR makes an env rooted at DIR, left on, from CTOOL_IMAGE" {
	base_image
	CTOOL_IMAGE=base ctool create -d "$BATS_TEST_TMPDIR/my-chroot-1"
	run ctool list
	[[ $output == *my-chroot-1*base*on* ]]
	[ -x "$BATS_TEST_TMPDIR/my-chroot-1/bin/busybox" ]
	run ctool create -d "$BATS_TEST_TMPDIR/bad name" --image base
	assert_status 2
}

@test "create -d refuses a directory that is not empty" {
	base_image
	mkdir -p "$BATS_TEST_TMPDIR/full"
	touch "$BATS_TEST_TMPDIR/full/keep"
	run --separate-stderr ctool create -d "$BATS_TEST_TMPDIR/full" --image base
	assert_status 1
	[[ $stderr == *"is not empty"* ]]
	[ -e "$BATS_TEST_TMPDIR/full/keep" ]
	run ctool list -q
	[ -z "$output" ]
}
