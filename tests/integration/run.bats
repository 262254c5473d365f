#!/usr/bin/env bats
# run: chroot-tool's dispatch, the host-side hook, exit statuses, user,
# directory, environment, stdin, and concurrent runs.

load helpers

setup() {
	common_setup
	base_image
	ctool clone base e
	ROOT=$(env_root e)
}

# A /chroot.d/chroot-cmd that prints its arguments.
add_chroot_cmd() {
	env_write e /chroot.d/chroot-cmd <<'EOF'
#!/bin/sh
echo "chroot-cmd:$#:$*"
EOF
}

# ---------------------------------------------------------------------------
# dispatch

@test "a command starting with / runs as it is" {
	add_chroot_cmd
	env_write e /chroot.d/echo <<'EOF'
#!/bin/sh
echo "chroot.d-echo:$*"
EOF
	run ctool run e -- /bin/echo a b
	assert_status 0
	[ "$output" = "a b" ] || fail "output:" "$output"
}

@test "/chroot.d/CMD runs with the arguments, before chroot-cmd and PATH" {
	add_chroot_cmd
	env_write e /chroot.d/greet <<'EOF'
#!/bin/sh
echo "greet:$#:$*:$(pwd)"
EOF
	env_write e /chroot.d/echo <<'EOF'
#!/bin/sh
echo "chroot.d-echo:$*"
EOF
	run ctool run e -- greet a "b c"
	assert_status 0
	[ "$output" = "greet:2:a b c:/" ] || fail "output:" "$output"
	run ctool run e -- echo x
	assert_status 0
	[ "$output" = "chroot.d-echo:x" ] || fail "output:" "$output"
}

@test "/chroot.d/chroot-cmd gets CMD ARG... when /chroot.d/CMD does not exist" {
	add_chroot_cmd
	run ctool run e -- rebuild-index alfa beta
	assert_status 0
	[ "$output" = "chroot-cmd:3:rebuild-index alfa beta" ] || fail "output:" "$output"
	# it comes before the PATH
	run ctool run e -- echo hi
	assert_status 0
	[ "$output" = "chroot-cmd:2:echo hi" ] || fail "output:" "$output"
}

@test "without chroot.d, CMD is looked up in the env's PATH" {
	env_write e /bin/only-inside <<'EOF'
#!/bin/sh
echo "inside:$*"
EOF
	run ctool run e -- only-inside 1 2
	assert_status 0
	[ "$output" = "inside:1 2" ] || fail "output:" "$output"
	run ctool run e -- cat /etc/os-release
	assert_status 0
	[[ $output == *ctool-test* ]] || fail "not the env's file:" "$output"
}

@test "one word with blanks is split as chroot-tool did" {
	run ctool run e "echo a b"
	assert_status 0
	[ "$output" = "a b" ] || fail "output:" "$output"
	add_chroot_cmd
	run ctool run e "rebuild-index alfa"
	assert_status 0
	[ "$output" = "chroot-cmd:2:rebuild-index alfa" ] || fail "output:" "$output"
}

@test "run \"CMD\" -d DIR, and run from the root with no name" {
	D="$BATS_TEST_TMPDIR/my-chroot"
	ctool clone base d -d "$D"
	run ctool run "echo a b" -d "$D"
	assert_status 0
	[ "$output" = "a b" ] || fail "output:" "$output"
	ctool off d
	# From the root (entered while off, as a chroot-tool user would).
	cd "$D"
	run ctool run echo hi
	assert_status 0
	[ "$output" = hi ] || fail "output:" "$output"
	run ctool run "echo x y"
	assert_status 0
	[ "$output" = "x y" ] || fail "output:" "$output"
	# A first word that names an env selects that env, even from a root.
	ctool run e -- /bin/sh -c 'echo in-e >/marker'
	run ctool run e cat /marker
	assert_status 0
	[ "$output" = in-e ] || fail "output:" "$output"
	cd /
}

# ---------------------------------------------------------------------------
# the host-side hook

@test "conf/host-cmd runs on the host first with CTOOL_ENV, CTOOL_ROOT and the args" {
	conf=$(env_conf e)
	mkdir -p "$conf"
	cat >"$conf/host-cmd" <<EOF
#!/bin/sh
printf '%s|%s|%s\n' "\$CTOOL_ENV" "\$CTOOL_ROOT" "\$*" >"$BATS_TEST_TMPDIR/host-marker"
echo from-host >"\$CTOOL_ROOT/tmp/hostran"
EOF
	chmod 0755 "$conf/host-cmd"
	run ctool run e -- /bin/cat /tmp/hostran
	assert_status 0
	[ "$output" = from-host ] || fail "host-cmd did not run before the command (on the env's root):" "$output"
	[ "$(cat "$BATS_TEST_TMPDIR/host-marker")" = "e|$ROOT|/bin/cat /tmp/hostran" ] ||
		fail "host-cmd saw: $(cat "$BATS_TEST_TMPDIR/host-marker")"
}

@test "a failing host-cmd stops the run with 125" {
	conf=$(env_conf e)
	mkdir -p "$conf"
	printf '#!/bin/sh\nexit 3\n' >"$conf/host-cmd"
	chmod 0755 "$conf/host-cmd"
	run ctool run e -- /bin/touch /ran
	assert_status 125
	[ ! -e "$ROOT/ran" ] && [ ! -e "$(env_upper e)/ran" ] || fail "the command ran"
}

# ---------------------------------------------------------------------------
# exit statuses

@test "the command's exit status is passed through" {
	run ctool run e -- /bin/sh -c 'exit 7'
	assert_status 7
	run ctool run e -- /bin/false
	assert_status 1
	run ctool run e -- /bin/true
	assert_status 0
}

@test "killed by signal N gives 128+N" {
	run ctool run e -- /bin/sh -c 'kill -9 $$'
	assert_status 137
	run ctool run e -- /bin/sh -c 'kill -TERM $$'
	assert_status 143
}

@test "a missing command gives 127" {
	run -127 ctool run e -- no-such-command
	run -127 ctool run e -- /no/such/command
	run -127 ctool run e "no-such-command with args"
}

@test "a command that cannot be executed gives 126" {
	printf '#!/bin/sh\necho should-not-run\n' | env_write e /notexec 0644
	run ctool run e -- /notexec
	assert_status 126
	[[ $output != *should-not-run* ]]
	run ctool run e -- /tmp
	assert_status 126
}

@test "ctool failing before the command gives 125" {
	run --separate-stderr ctool run nope -- /bin/true
	assert_status 125
	assert_one_error_line "ctool: run: "
	run --separate-stderr ctool run e -u nosuchuser -- /bin/true
	assert_status 125
	assert_one_error_line "ctool: run: "
}

# ---------------------------------------------------------------------------
# user, directory, environment

@test "-u USER runs as that user, in its home" {
	run ctool run e -u tester -- /bin/sh -c 'id -u; id -g; pwd; echo "$HOME $USER $LOGNAME"'
	assert_status 0
	[ "${lines[0]}" = 1000 ] && [ "${lines[1]}" = 1000 ] || fail "output:" "$output"
	[ "${lines[2]}" = /home/tester ] || fail "cwd:" "$output"
	[ "${lines[3]}" = "/home/tester tester tester" ] || fail "env:" "$output"
	run ctool run e -u 1000 -- /bin/id -u
	assert_status 0
	[ "$output" = 1000 ] || fail "output:" "$output"
	# as root by default, in /
	run ctool run e -- /bin/sh -c 'id -u; pwd; echo "$HOME $USER"'
	[ "$output" = $'0\n/\n/root root' ] || fail "output:" "$output"
}

@test "-w DIR sets the working directory" {
	run ctool run e -w /tmp -- /bin/pwd
	assert_status 0
	[ "$output" = /tmp ] || fail "output:" "$output"
	run ctool run e -u tester -w /etc -- /bin/pwd
	[ "$output" = /etc ] || fail "output:" "$output"
}

@test "-e K=V sets variables" {
	run ctool run e -e FOO=bar -e X='a b' -- /bin/sh -c 'echo "$FOO|$X"'
	assert_status 0
	[ "$output" = "bar|a b" ] || fail "output:" "$output"
}

@test "the environment starts clean" {
	export SECRET=x CTOOL_TEST_LEAK=1 TERM=xterm-ctool-test
	run --separate-stderr ctool run e -- /bin/env
	assert_status 0
	for l in "${lines[@]}"; do
		case ${l%%=*} in
		PATH | HOME | TERM | USER | LOGNAME) ;;
		*) fail "leaked into the env: $l" ;;
		esac
	done
	printf '%s\n' "${lines[@]}" | grep -q '^PATH=/' || fail "no PATH:" "$output"
	printf '%s\n' "${lines[@]}" | grep -qx 'HOME=/root' || fail "HOME:" "$output"
	printf '%s\n' "${lines[@]}" | grep -qx 'USER=root' || fail "USER:" "$output"
	printf '%s\n' "${lines[@]}" | grep -qx 'LOGNAME=root' || fail "LOGNAME:" "$output"
	printf '%s\n' "${lines[@]}" | grep -qx 'TERM=xterm-ctool-test' || fail "TERM:" "$output"
}

# ---------------------------------------------------------------------------
# on, stdin, terminal, -v

@test "run turns the env on when it is off" {
	[ "$(list_field e 3)" = off ]
	run ctool run e -- /bin/true
	assert_status 0
	mounted "$ROOT" && mounted "$ROOT/proc" || fail "not on after run"
	[ "$(list_field e 3)" = on ]
}

@test "stdin is passed through" {
	run bash -c 'echo hi | "$CTOOL" run e -- cat'
	assert_status 0
	[ "$output" = hi ] || fail "output:" "$output"
	head -c 200000 /dev/urandom >"$BATS_TEST_TMPDIR/blob"
	want=$(md5sum <"$BATS_TEST_TMPDIR/blob" | cut -d' ' -f1)
	run bash -c '"$CTOOL" run e -- md5sum <"$1"' _ "$BATS_TEST_TMPDIR/blob"
	assert_status 0
	[ "${output%% *}" = "$want" ] || fail "md5 inside: $output"
}

@test "stdout and stderr stay apart" {
	run --separate-stderr ctool run e -- /bin/sh -c 'echo out; echo err >&2'
	assert_status 0
	[ "$output" = out ] && [ "$stderr" = err ] || fail "stdout: $output / stderr: $stderr"
}

@test "the terminal is passed through" {
	run script -qec "'$CTOOL' run e -- /bin/sh -c 'test -t 0 && test -t 1 && echo tty-ok'" /dev/null
	assert_status 0
	[[ $output == *tty-ok* ]] || fail "output:" "$output"
}

@test "run -v HOST:TARGET binds for the run" {
	mkdir "$BATS_TEST_TMPDIR/h"
	echo data >"$BATS_TEST_TMPDIR/h/f"
	run ctool run e -v "$BATS_TEST_TMPDIR/h:/data" -- /bin/cat /data/f
	assert_status 0
	[ "$output" = data ] || fail "output:" "$output"
}

# ---------------------------------------------------------------------------
# the record of an env that is on (<store>/on/NAME): run needs no catalog

@test "on writes the env's record; off, reset and rm remove it" {
	rec="$CTOOL_STORE/on/e"
	[ ! -e "$rec" ] || fail "a record before on"
	ctool on e
	[ "$(sed -n 1p "$rec")" = "$(env_id e)" ] || fail "record:" "$(cat "$rec")"
	[ "$(sed -n 2p "$rec")" = "$ROOT" ] || fail "record:" "$(cat "$rec")"
	ctool off e
	[ ! -e "$rec" ] || fail "the record outlived off"
	ctool run e -- /bin/true
	[ -e "$rec" ] || fail "run that turned e on wrote no record"
	run ctool reset --force e
	assert_status 0
	[ ! -e "$rec" ] || fail "the record outlived reset"
	[ -e "$CTOOL_STORE/names/e" ] || fail "no names/ record"
	cmp -s "$CTOOL_STORE/names/e" <(printf '%s\n%s\n' "$(env_id e)" "$ROOT") ||
		fail "names/ record:" "$(cat "$CTOOL_STORE/names/e")"
	ctool on e
	run ctool rm --force e
	assert_status 0
	[ ! -e "$rec" ] || fail "the record outlived rm"
	[ ! -e "$CTOOL_STORE/names/e" ] || fail "the names/ record outlived rm"
}

@test "reset of an env that is off reads no catalog" {
	ctool run e -- /bin/sh -c 'echo changed >/etc/os-release'
	ctool off e
	catalog_break
	run ctool reset e
	st=$status
	catalog_restore
	[ "$st" -eq 0 ] || fail "reset: status $st: $output"
	run ctool run e -- /bin/cat /etc/os-release
	[[ $output != *changed* ]] || fail "the change survived reset"
	# while on, reset needs the catalog (to refuse, or to turn it off)
	catalog_break
	run --separate-stderr ctool reset e
	catalog_restore
	assert_status 1
	assert_one_error_line "ctool: reset: "
}

@test "run on an env that is on reads no catalog" {
	ctool on e
	catalog_break
	run ctool run e -- /bin/echo inside
	catalog_restore
	assert_status 0
	[ "$output" = inside ] || fail "output:" "$output"
	# an env that is off needs the catalog: the same damage is an error
	ctool off e
	catalog_break
	run --separate-stderr ctool run e -- /bin/echo inside
	catalog_restore
	assert_status 125
	assert_one_error_line "ctool: run: "
}

@test "a record whose root is no longer mounted is ignored: run turns the env on" {
	ctool on e
	umount -R "$ROOT"
	[ -e "$CTOOL_STORE/on/e" ] || fail "no record to go stale"
	run ctool run e -- /bin/cat /proc/self/comm
	assert_status 0
	[ "$output" = cat ] || fail "output:" "$output"
	mounted "$ROOT" && mounted "$ROOT/proc" || fail "run did not turn e on again"
}

@test "a damaged record is ignored: run turns the env on" {
	for bad in '' 'garbage' "$(env_id e)" "../../etc
/" "$(env_id e)
relative/root"; do
		printf '%s\n' "$bad" >"$CTOOL_STORE/on/e"
		run ctool run e -- /bin/echo ok
		assert_status 0
		[ "$output" = ok ] || fail "record '$bad': output:" "$output"
		mounted "$ROOT" || fail "record '$bad': e is not on"
		[ "$(sed -n 1p "$CTOOL_STORE/on/e")" = "$(env_id e)" ] ||
			fail "record '$bad' was not rewritten"
		ctool off e
	done
}

@test "gc --trash empties the trash only; --no-wait goes with --trash" {
	ctool run e -- /bin/sh -c 'mkdir /d && touch /d/a /d/b'
	ctool off e
	# reset leaves the deletion to a detached deleter, which takes the
	# trash's lock: while another process holds it, the trash stays full
	exec {lk}>"$CTOOL_STORE/locks/trash"
	flock "$lk"
	ctool reset e
	sleep 0.3
	[ -n "$(ls -A "$CTOOL_STORE/trash")" ] || fail "the trash emptied despite the lock"
	exec {lk}>&-
	run ctool gc --trash
	assert_status 0
	[ -z "$(ls -A "$CTOOL_STORE/trash")" ] || fail "trash:" "$(ls -A "$CTOOL_STORE/trash")"
	# and with nobody in the way the deleter empties it on its own
	ctool run e -- /bin/sh -c 'mkdir /d && touch /d/a /d/b'
	ctool off e
	ctool reset e
	for i in $(seq 100); do
		[ -z "$(ls -A "$CTOOL_STORE/trash")" ] && break
		sleep 0.05
	done
	[ -z "$(ls -A "$CTOOL_STORE/trash")" ] || fail "the deleter left:" "$(ls -A "$CTOOL_STORE/trash")"
	run ctool gc --trash --no-wait
	assert_status 0
	run --separate-stderr ctool gc --no-wait
	assert_status 2
	assert_one_error_line "ctool: gc: "
	run --separate-stderr ctool gc --bogus
	assert_status 2
	assert_one_error_line "ctool: gc: "
}

# ---------------------------------------------------------------------------
# concurrency

@test "16 parallel runs on one env that is off all succeed and mount once" {
	T="$BATS_TEST_TMPDIR/par"
	mkdir "$T"
	for i in $(seq 16); do
		("$CTOOL" run e -- true >"$T/out.$i" 2>&1; echo $? >"$T/rc.$i") 3>&- &
	done
	wait
	for i in $(seq 16); do
		[ "$(cat "$T/rc.$i")" = 0 ] || fail "run $i: status $(cat "$T/rc.$i"):" "$(cat "$T/out.$i")"
	done
	! grep -il 'locked' "$T"/out.* || fail "'locked' in the output:" "$(cat "$T"/out.*)"
	[ "$(mount_count "$ROOT")" -eq 1 ] || fail "$(mount_count "$ROOT") mounts at the root"
	for m in proc sys dev dev/pts dev/shm tmp etc/resolv.conf etc/hosts; do
		[ "$(mount_count "$ROOT/$m")" -eq 1 ] || fail "$(mount_count "$ROOT/$m") mounts at /$m"
	done
}

@test "parallel runs on several envs do not interfere" {
	T="$BATS_TEST_TMPDIR/par"
	mkdir "$T"
	for n in 1 2 3 4; do ctool clone base "p$n"; done
	for n in 1 2 3 4; do
		for i in 1 2 3 4; do
			("$CTOOL" run "p$n" -- /bin/sh -c "echo $n >/id-$i; cat /id-$i" \
				>"$T/out.$n.$i" 2>&1
			echo $? >"$T/rc.$n.$i") 3>&- &
		done
	done
	wait
	for n in 1 2 3 4; do
		for i in 1 2 3 4; do
			[ "$(cat "$T/rc.$n.$i")" = 0 ] && [ "$(cat "$T/out.$n.$i")" = "$n" ] ||
				fail "p$n run $i: status $(cat "$T/rc.$n.$i"):" "$(cat "$T/out.$n.$i")"
		done
		[ "$(mount_count "$(env_root "p$n")")" -eq 1 ]
	done
}
