#!/usr/bin/env bats
# on / off: the overlay, the standard mounts, binds, stopping what runs
# inside, and leaving nothing mounted.

load helpers

setup() {
	common_setup
	base_image
	ctool clone base e
	ROOT=$(env_root e)
	H="$BATS_TEST_TMPDIR/host"
	mkdir -p "$H"
	echo data >"$H/f"
}

# Wait (up to ~2 s) until process $1 has its cwd at or below $2.
wait_cwd() {
	local i
	for i in $(seq 40); do
		case $(readlink "/proc/$1/cwd" 2>/dev/null) in
		"$2" | "$2"/*) return 0 ;;
		esac
		sleep 0.05
	done
	return 1
}

# ---------------------------------------------------------------------------
# on

@test "on mounts the overlay and the standard mounts" {
	run ctool on e
	assert_status 0
	mounted "$ROOT" || fail "nothing mounted at the root '$ROOT'"
	[ "$(mount_count "$ROOT")" -eq 1 ] || fail "$(mount_count "$ROOT") mounts at the root"
	if [ "$(expected_driver)" = kernel ]; then
		[ "$(mount_fstype "$ROOT")" = overlay ] || fail "root fstype: $(mount_fstype "$ROOT")"
	fi
	[ -x "$ROOT/bin/busybox" ] && [ -f "$ROOT/etc/os-release" ] || fail "the image is not visible"
	[ "$(info_get e state)" = on ] && [ "$(list_field e 3)" = on ] || fail "state is not on"

	# a fresh /proc, not the host's bound
	[ "$(mount_fstype "$ROOT/proc")" = proc ] || fail "/proc: $(mount_fstype "$ROOT/proc")"
	[ "$(stat -c %d "$ROOT/proc")" != "$(stat -c %d /proc)" ] || fail "/proc is the host's proc bound"
	# /sys read-only
	[ "$(mount_fstype "$ROOT/sys")" = sysfs ] || fail "/sys: $(mount_fstype "$ROOT/sys")"
	mount_is_ro "$ROOT/sys" || fail "/sys is not read-only: $(mount_opts "$ROOT/sys")"
	# a minimal /dev with exactly the documented nodes and links
	mounted "$ROOT/dev" || fail "/dev is not a mount"
	[ "$(ls -A "$ROOT/dev" | LC_ALL=C sort | tr '\n' ' ')" = "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero " ] ||
		fail "/dev holds:" "$(ls -A "$ROOT/dev")"
	for nd in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
		IFS=: read -r n ma mi <<<"$nd"
		[ -c "$ROOT/dev/$n" ] || fail "/dev/$n is not a char device"
		[ "$(stat -c '%t:%T' "$ROOT/dev/$n")" = "$(printf '%x:%x' "$ma" "$mi")" ] ||
			fail "/dev/$n is $(stat -c '%t:%T' "$ROOT/dev/$n")"
	done
	[ -c "$ROOT/dev/ptmx" ] || [ "$(readlink "$ROOT/dev/ptmx")" = pts/ptmx ] || fail "/dev/ptmx"
	[ "$(mount_fstype "$ROOT/dev/pts")" = devpts ] || fail "/dev/pts: $(mount_fstype "$ROOT/dev/pts")"
	[ "$(mount_fstype "$ROOT/dev/shm")" = tmpfs ] || fail "/dev/shm: $(mount_fstype "$ROOT/dev/shm")"
	# a tmpfs /tmp
	[ "$(mount_fstype "$ROOT/tmp")" = tmpfs ] || fail "/tmp: $(mount_fstype "$ROOT/tmp")"
	[ "$(stat -c %a "$ROOT/tmp")" = 1777 ] || fail "/tmp mode $(stat -c %a "$ROOT/tmp")"
	# the host's resolv.conf and hosts, read-only (created although the
	# image has neither)
	for f in resolv.conf hosts; do
		mounted "$ROOT/etc/$f" || fail "/etc/$f is not mounted"
		cmp "/etc/$f" "$ROOT/etc/$f" || fail "/etc/$f differs from the host's"
		mount_is_ro "$ROOT/etc/$f" || fail "/etc/$f is not read-only"
	done
}

@test "the standard mounts work inside" {
	ctool on e
	run ctool run e -- /bin/sh -c 'echo x >/dev/null && head -c 4 /dev/urandom | wc -c &&
		test -d /proc/self/fd && touch /tmp/t /dev/shm/s && test -c /dev/pts/ptmx && echo ok'
	assert_status 0
	[ "${lines[-1]}" = ok ] && [ "${lines[0]}" = 4 ] || fail "output:" "$output"
	# nothing written under /tmp lands in the upper layer
	[ ! -e "$(env_upper e)/tmp/t" ]
}

@test "/sys, resolv.conf and hosts cannot be written inside" {
	ctool on e
	sum_before=$(md5sum /etc/hosts /etc/resolv.conf)
	run ctool run e -- /bin/sh -c 'echo evil >>/etc/hosts'
	[ "$status" -ne 0 ] || fail "/etc/hosts was writable inside"
	run ctool run e -- /bin/sh -c 'echo evil >/etc/resolv.conf'
	[ "$status" -ne 0 ] || fail "/etc/resolv.conf was writable inside"
	run ctool run e -- /bin/mkdir /sys/ctool-test
	[ "$status" -ne 0 ] || fail "/sys was writable inside"
	[ "$(md5sum /etc/hosts /etc/resolv.conf)" = "$sum_before" ] || fail "host files changed"
}

@test "on twice is fine and mounts nothing twice" {
	ctool on e
	before=$(mounts_under "$ROOT" | sort)
	run ctool on e
	assert_status 0
	[ "$(mounts_under "$ROOT" | sort)" = "$before" ] || fail "mounts changed:" "$(mounts_under "$ROOT")"
	[ "$(mount_count "$ROOT")" -eq 1 ]
	[ "$(mount_count "$ROOT/proc")" -eq 1 ]
}

@test "mount propagation of the root is private" {
	# the default root (in the store) and a -d root on a private mount
	ctool on e
	ctool clone base s -d "$BATS_TEST_TMPDIR/droot"
	ctool on s
	mounted "$BATS_TEST_TMPDIR/droot" || fail "not on"
	bad=$(findmnt -rn -o TARGET,PROPAGATION | awk -v p="$ROOT" -v q="$BATS_TEST_TMPDIR/droot" \
		'($1 == p || index($1, p "/") == 1 || $1 == q || index($1, q "/") == 1) &&
		 $2 !~ /^private/')
	ctool off s
	ctool off e
	[ -z "$bad" ] || fail "mounts not private:" "$bad"
}

@test "a store under a shared mount: env mounts never reach its peers" {
	# A shared mount holding the store, and a peer of it (as systemd's
	# '/' and the mount namespaces of services are).
	shared_pair
	export CTOOL_STORE="$P/store"
	base_image
	ctool clone base s
	ctool on s
	root=$(env_root s)
	mounted "$root" || fail "not on"
	# the store's own private bind leaves one copy of itself in the peer,
	# and nothing else: no overlay, no standard mount, no bind
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

@test "a -d root under a shared mount: off leaves nothing in the mount's peers" {
	shared_pair
	ctool clone base d -d "$P/droot"
	mkdir -p "$BATS_TEST_TMPDIR/h"
	for round in 1 2; do
		ctool on d -v "$BATS_TEST_TMPDIR/h:/host"
		mounted "$P/droot/proc" || fail "round $round: not on"
		ctool run d -- /bin/sh -c "echo $round >/round"
		ctool off d
		left=$(mounts_under "$PEER" | grep -v -x "$PEER" || true)
		[ -z "$left" ] || break
	done
	ctool on d
	out=$(ctool run d -- /bin/cat /round)
	ctool off d
	umount -R "$PEER" 2>/dev/null || true
	umount -R "$P" 2>/dev/null || true
	[ -z "$left" ] || fail "round $round: left in the peer after off:" "$left"
	[ "$out" = 2 ] || fail "the env lost its changes: '$out'"
}

@test "--host-dev gives the host's /dev" {
	run ctool on e --host-dev
	assert_status 0
	[ "$(stat -c %d "$ROOT/dev")" = "$(stat -c %d /dev)" ] || fail "/dev is not the host's devtmpfs"
	[ "$(ls -A "$ROOT/dev" | wc -l)" -eq "$(ls -A /dev | wc -l)" ] || fail "/dev differs from the host's"
	ctool off e
	assert_no_mounts_under "$ROOT"
}

@test "the mount table is the truth: unmounted behind ctool's back means off" {
	ctool on e
	umount -R "$ROOT"
	[ "$(list_field e 3)" = off ] || fail "STATE: $(list_field e 3)"
	[ "$(info_get e state)" = off ]
	run ctool on e
	assert_status 0
	mounted "$ROOT" && mounted "$ROOT/proc" || fail "not on again"
}

# ---------------------------------------------------------------------------
# off

@test "off unmounts everything" {
	ctool on e -v "$H:/data"
	run ctool off e
	assert_status 0
	assert_no_mounts_under "$ROOT"
	[ "$(list_field e 3)" = off ] && [ "$(info_get e state)" = off ] || fail "state is not off"
}

@test "off twice is fine; off of an env never turned on too" {
	run ctool off e
	assert_status 0
	ctool on e
	ctool off e
	run ctool off e
	assert_status 0
	assert_no_mounts_under "$ROOT"
}

@test "off runs /chroot.d/stop inside first" {
	ctool on e -v "$H:/out"
	env_write e /chroot.d/stop <<'EOF'
#!/bin/sh
. /etc/os-release
echo "stopped in $ID" >/out/marker
EOF
	run ctool off e
	assert_status 0
	[ "$(cat "$H/marker")" = "stopped in ctool-test" ] || fail "marker: $(cat "$H/marker" 2>&1)"
	assert_no_mounts_under "$ROOT"
}

@test "off stops the processes left running inside" {
	run ctool run e -- /bin/sh -c '/bin/sleep 1000 >/dev/null 2>&1 </dev/null & echo $!'
	assert_status 0
	pid=${lines[-1]}
	[ "$(readlink "/proc/$pid/root")" = "$ROOT" ] || fail "pid $pid is not rooted in the env"
	t0=$(date +%s)
	run ctool off e
	assert_status 0
	wait_gone "$pid" || fail "process $pid survived off"
	[ $(($(date +%s) - t0)) -lt 5 ] || fail "off waited for the grace time on a process that takes TERM"
	[ -z "$(procs_rooted_under "$ROOT")" ] || fail "rooted in the env: $(procs_rooted_under "$ROOT")"
	assert_no_mounts_under "$ROOT"
}

@test "off -t kills processes that ignore TERM after the grace time" {
	run ctool run e -- /bin/sh -c \
		'(trap "" TERM; exec /bin/sleep 1000) >/dev/null 2>&1 </dev/null & echo $!'
	assert_status 0
	pid=${lines[-1]}
	[ "$(readlink "/proc/$pid/root")" = "$ROOT" ]
	t0=$(date +%s%N)
	run ctool off e -t 1
	assert_status 0
	ms=$((($(date +%s%N) - t0) / 1000000))
	wait_gone "$pid" || fail "process $pid survived off -t 1"
	[ "$ms" -ge 900 ] || fail "KILL came before the grace time ($ms ms)"
	[ "$ms" -lt 4500 ] || fail "off -t 1 took $ms ms"
	assert_no_mounts_under "$ROOT"
}

@test "off fails naming the PID of a host process that holds a mount; --force detaches" {
	ctool on e
	(cd "$ROOT/tmp" && exec sleep 1000) >/dev/null 2>&1 </dev/null 3>&- &
	hpid=$!
	wait_cwd "$hpid" "$ROOT/tmp" || fail "helper did not start"
	run --separate-stderr ctool off e
	assert_status 1
	assert_one_error_line "ctool: off: "
	[[ $stderr =~ (^|[^0-9])$hpid([^0-9]|$) ]] || fail "PID $hpid not named: $stderr"
	# left on, and the host process was not touched
	mounted "$ROOT" || fail "the root was unmounted"
	[ "$(list_field e 3)" = on ]
	kill -0 "$hpid" || fail "off killed a host process"
	run ctool off --force e
	assert_status 0
	assert_no_mounts_under "$ROOT"
	[ "$(list_field e 3)" = off ]
	kill "$hpid"
	wait "$hpid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# binds

@test "-v HOST:TARGET binds a host dir read-write, creating the target" {
	run ctool on e -v "$H:/srv/data"
	assert_status 0
	mounted "$ROOT/srv/data" || fail "/srv/data not mounted"
	run ctool run e -- /bin/cat /srv/data/f
	assert_status 0
	[ "$output" = data ]
	ctool run e -- /bin/sh -c 'echo new >/srv/data/g'
	[ "$(cat "$H/g")" = new ]
}

@test "-v HOST:TARGET:ro binds read-only: writes are refused inside" {
	ctool on e -v "$H:/ro:ro"
	mount_is_ro "$ROOT/ro" || fail "not read-only: $(mount_opts "$ROOT/ro")"
	run ctool run e -- /bin/cat /ro/f
	[ "$output" = data ]
	run ctool run e -- /bin/sh -c 'echo x >/ro/new'
	[ "$status" -ne 0 ] || fail "write through a :ro bind succeeded"
	[ ! -e "$H/new" ]
	[ "$(cat "$H/f")" = data ]
}

@test "an on that fails half way leaves nothing mounted and no daemon" {
	# a directory cannot be bound on /etc/passwd, a file: on fails after
	# the overlay and the standard mounts are made
	run --separate-stderr ctool on e -v "$H:/etc/passwd"
	assert_status 1
	assert_one_error_line "ctool: on: "
	assert_no_mounts_under "$ROOT"
	[ "$(list_field e 3)" = off ]
	[ ! -e "$CTOOL_STORE/envs/$(env_id e)/fuse.pid" ] || fail "a daemon's pidfile is left"
	[ -z "$(procs_rooted_under "$ROOT")" ] || fail "processes left in the root"
	! pgrep -f "ctool-overlayfs .*$(env_id e)" >/dev/null || fail "a ctool-overlayfs is still running"
	[ -z "$(info_get e bind)" ] || fail "the failed bind was recorded: $(info_get e bind)"
	run ctool run e -- /bin/cat /etc/os-release
	assert_status 0
}

@test "-v binds a single file" {
	echo conf >"$BATS_TEST_TMPDIR/app.conf"
	ctool on e -v "$BATS_TEST_TMPDIR/app.conf:/etc/app.conf:ro"
	run ctool run e -- /bin/cat /etc/app.conf
	assert_status 0
	[ "$output" = conf ]
}

@test "-v binds are recorded and restored by the next on" {
	mkdir "$BATS_TEST_TMPDIR/h2"
	ctool on e -v "$H:/data" -v "$BATS_TEST_TMPDIR/h2:/scratch:ro"
	ctool off e
	assert_no_mounts_under "$ROOT"
	run ctool on e
	assert_status 0
	mounted "$ROOT/data" || fail "/data not restored"
	mounted "$ROOT/scratch" || fail "/scratch not restored"
	mount_is_ro "$ROOT/scratch" || fail "/scratch lost :ro"
	[ "$(cat "$ROOT/data/f")" = data ]
}

@test "on when already on mounts new -v binds" {
	ctool on e
	run ctool on e -v "$H:/data"
	assert_status 0
	mounted "$ROOT/data" || fail "/data not mounted"
	[ "$(mount_count "$ROOT")" -eq 1 ]
}

@test "bind writes tool.conf and is applied at the next on" {
	mkdir "$BATS_TEST_TMPDIR/certs"
	ctool on e
	run ctool bind e "$H" /data
	assert_status 0
	run ctool bind e "$BATS_TEST_TMPDIR/certs" /etc/ssl/certs --ro
	assert_status 0
	conf="$(env_conf e)/tool.conf"
	[ -f "$conf" ] || fail "no $conf"
	grep -qx '\[bind\]' "$conf" || fail "no [bind] section:" "$(cat "$conf")"
	grep -Eq "^src:$H tgt: ?/data *\$" "$conf" || fail "no line for /data:" "$(cat "$conf")"
	grep -Eq "^src:$BATS_TEST_TMPDIR/certs tgt: ?/etc/ssl/certs ro *\$" "$conf" ||
		fail "no ro line for certs:" "$(cat "$conf")"
	# not applied while on
	! mounted "$ROOT/data" || fail "bind applied before the next on"
	ctool off e
	ctool on e
	mounted "$ROOT/data" || fail "/data not mounted"
	! mount_is_ro "$ROOT/data" || fail "/data is read-only"
	mounted "$ROOT/etc/ssl/certs" || fail "/etc/ssl/certs not mounted"
	mount_is_ro "$ROOT/etc/ssl/certs" || fail "/etc/ssl/certs is not read-only"
	[ "$(cat "$ROOT/data/f")" = data ]
}

@test "a hand-written tool.conf in chroot-tool's format is applied" {
	mkdir "$BATS_TEST_TMPDIR/certs"
	conf=$(env_conf e)
	mkdir -p "$conf"
	cat >"$conf/tool.conf" <<EOF
[bind]
src:$H tgt:/data
src:$BATS_TEST_TMPDIR/certs tgt: /etc/ssl/certs ro
EOF
	run ctool on e
	assert_status 0
	mounted "$ROOT/data" || fail "/data not mounted"
	mounted "$ROOT/etc/ssl/certs" || fail "/etc/ssl/certs not mounted"
	mount_is_ro "$ROOT/etc/ssl/certs" || fail "/etc/ssl/certs is not read-only"
	! mount_is_ro "$ROOT/data" || fail "/data is read-only"
	ctool off e
	assert_no_mounts_under "$ROOT"
}

# ---------------------------------------------------------------------------
# volatile

@test "a volatile env is mounted with the volatile option" {
	ctool clone base v --volatile
	ctool on v
	vroot=$(env_root v)
	mounted "$vroot"
	[[ $(info_get v volatile) =~ ^(yes|true|1|on)$ ]]
	if [ "$(expected_driver)" = kernel ]; then
		[ "$(mount_fstype "$vroot")" = overlay ] || fail "fstype $(mount_fstype "$vroot")"
		# "volatile", shown as "fsync=volatile" by kernels >= 6.12
		[[ ,$(mount_opts "$vroot"), =~ ,(fsync=)?volatile, ]] || fail "options: $(mount_opts "$vroot")"
		# and an ordinary env is not
		ctool on e
		[[ ! ,$(mount_opts "$ROOT"), =~ ,(fsync=)?volatile, ]] || fail "e is volatile: $(mount_opts "$ROOT")"
	fi
	run ctool run v -- /bin/sh -c 'echo x >/file && cat /file'
	assert_status 0
	[ "$output" = x ]
}

@test "a volatile env cleanly off keeps its changes across on" {
	ctool clone base v --volatile
	ctool run v -- /bin/sh -c 'echo kept >/file'
	ctool off v
	[ ! -e "$CTOOL_STORE/envs/$(env_id v)/work/work/incompat/volatile" ] ||
		fail "off left the kernel's volatile marker"
	CTOOL_TEST_BOOT_ID=00000000-0000-0000-0000-000000000001 ctool on v
	run ctool run v -- /bin/cat /file
	[ "$output" = kept ]
}

@test "a volatile env that was on when the host went down is reset, not trusted" {
	ctool clone base v --volatile
	ctool run v -- /bin/sh -c 'echo unsynced >/file'
	vroot=$(env_root v)
	# the host "crashes": the mounts vanish without an off
	umount -R "$vroot"
	[ -e "$CTOOL_STORE/envs/$(env_id v)/work/work/incompat/volatile" ] ||
		fail "the kernel left no volatile marker"
	# and comes back with another boot id
	run --separate-stderr env CTOOL_TEST_BOOT_ID=00000000-0000-0000-0000-000000000002 "$CTOOL" on v
	assert_status 0
	[[ $stderr == *"changes are discarded"* ]] || fail "no warning: $stderr"
	run ctool run v -- /bin/cat /file
	[ "$status" -ne 0 ] || fail "the unsynced change survived: $output"
	[ -x "$vroot/bin/busybox" ] || fail "the image is not visible"
}

@test "a volatile env whose on was cut short in the same boot is trusted" {
	ctool clone base v --volatile
	ctool run v -- /bin/sh -c 'echo same-boot >/file'
	vroot=$(env_root v)
	umount -R "$vroot"
	ctool on v
	run ctool run v -- /bin/cat /file
	[ "$output" = same-boot ]
}
