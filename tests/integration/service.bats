#!/usr/bin/env bats
# Services (pocker's workflow): start runs the image's RUN (or
# /chroot.d/start) detached, logs shows its output, list and info show
# it, off stops it; the image's ENV reaches the service and run; -v on
# clone and start; reset and rm never touch a volume's content.
# shellcheck disable=SC2016 # single-quoted $VAR: expanded by the env's shell

load helpers

setup() {
	common_setup
	base_image
}

# image_config IMAGE TEXT: set the image's config (RUN, ENV, VOLUME lines)
# straight in the catalog.
image_config() {
	sqlite3 "$CTOOL_STORE/catalog.db" \
		"UPDATE images SET config = '${2//\'/\'\'}' WHERE name = '$1'"
}

# retry CMD...: run CMD until it succeeds, for up to ~5 s.
retry() {
	local i
	for i in $(seq 100); do
		"$@" && return 0
		sleep 0.05
	done
	"$@"
}

# log_has ENV TEXT: does the service log of ENV hold a line TEXT?
log_has() {
	"$CTOOL" logs "$1" | grep -qxF -- "$2"
}

# A TCP port nothing listens on.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		grep -qi ":$(printf '%04X' "$p") [0-9A-F]*:[0-9A-F]* 0A " /proc/net/tcp /proc/net/tcp6 ||
			break
	done
	echo "$p"
}

# The pid ctool recorded for ENV's service (info's service-pid).
service_pid() {
	info_get "$1" service-pid
}

@test "start runs RUN detached: a new session, stdin /dev/null, output in the log" {
	image_config base $'RUN echo started; echo oops >&2; exec sleep 1000'
	ctool clone base e
	run --separate-stderr ctool start e
	assert_status 0
	[ -z "$output" ] && [ -z "$stderr" ] || fail "start printed:" "$output" "$stderr"
	retry log_has e oops
	run ctool logs e
	assert_status 0
	[ "$output" = $'started\noops' ] || fail "logs:" "$output"
	pid=$(service_pid e)
	[ -n "$pid" ] || fail "no service-pid"
	root=$(env_root e)
	[ "$(readlink "/proc/$pid/root")" = "$root" ] || fail "the service is not in the env"
	# its own session, no terminal, nothing of ctool's or of the caller's
	[ "$(awk '{ print $6 }' "/proc/$pid/stat")" = "$pid" ] || fail "not a session leader"
	[ "$(readlink "/proc/$pid/fd/0")" = /dev/null ] || fail "stdin: $(readlink "/proc/$pid/fd/0")"
	log=$(info_get e service-log)
	[ "$(readlink "/proc/$pid/fd/1")" = "$log" ] && [ "$(readlink "/proc/$pid/fd/2")" = "$log" ] ||
		fail "stdout/stderr: $(readlink "/proc/$pid/fd/1") $(readlink "/proc/$pid/fd/2")"
	[ "$(ls "/proc/$pid/fd")" = $'0\n1\n2' ] || fail "fds: $(ls "/proc/$pid/fd")"
	# the log is on the host side, out of the env's sight
	[[ $log != "$root"/* ]] || fail "log inside the root: $log"
	[[ $log == "$CTOOL_STORE"/* ]] || fail "log outside the store: $log"
}

@test "list and info show the service; a second start fails" {
	image_config base $'RUN exec sleep 1000'
	ctool clone base e
	ctool clone base idle
	ctool on idle
	ctool start e
	[ "$(list_field e 3)" = service ] || fail "STATE of e: $(list_field e 3)"
	[ "$(list_field idle 3)" = on ] || fail "STATE of idle: $(list_field idle 3)"
	run ctool list
	[[ ${lines[0]} =~ ^NAME[[:space:]]+IMAGE[[:space:]]+STATE[[:space:]]+DRIVER ]] ||
		fail "header: ${lines[0]}"
	[ "$(info_get e service)" = running ] || fail "service: $(info_get e service)"
	[ "$(info_get e start-command)" = "exec sleep 1000" ] ||
		fail "start-command: $(info_get e start-command)"
	pid=$(service_pid e)
	[ "$(cat "/proc/$pid/comm")" = sleep ] || fail "pid $pid is $(cat "/proc/$pid/comm")"
	[ "$(info_get e service-log)" = "$CTOOL_STORE/envs/$(env_id e)/service.log" ]
	run --separate-stderr ctool start e
	assert_status 1
	assert_one_error_line "ctool: start: "
	[[ $stderr == *"already running"* ]] || fail "stderr: $stderr"
	[ "$(service_pid e)" = "$pid" ] || fail "the service changed"
	[ "$(info_get idle service)" = stopped ]
}

@test "off runs /chroot.d/stop first, then stops the service: no process, no mount" {
	vol="$BATS_TEST_TMPDIR/vol"
	mkdir -p "$vol"
	image_config base $'RUN echo $$ >/vol/pid; exec sleep 1000'
	ctool clone base e
	env_write e /chroot.d/stop <<'EOF'
#!/bin/sh
kill -0 "$(cat /vol/pid)" && echo alive >/vol/at-stop
EOF
	ctool off e
	ctool start e -v "$vol:/vol"
	retry test -s "$vol/pid"
	pid=$(service_pid e)
	[ "$(cat "$vol/pid")" = "$pid" ] || fail "pid $(cat "$vol/pid") vs $pid"
	root=$(env_root e)
	ctool off e
	[ "$(cat "$vol/at-stop")" = alive ] || fail "/chroot.d/stop did not see the service"
	wait_gone "$pid" || fail "the service ($pid) is still there"
	[ -z "$(procs_rooted_under "$root")" ] || fail "processes left: $(procs_rooted_under "$root")"
	assert_no_mounts_under "$root"
	[ "$(list_field e 3)" = off ]
	[ "$(info_get e service)" = stopped ]
	run ctool info e
	[[ $output != *service-pid* ]] || fail "info:" "$output"
	# and it starts again
	ctool start e
	[ "$(list_field e 3)" = service ]
}

@test "a service that exits at once is an error naming its log" {
	image_config base $'RUN echo broken config >&2; exit 3'
	ctool clone base e
	run --separate-stderr ctool start e
	assert_status 1
	assert_one_error_line "ctool: start: "
	log=$(info_get e service-log)
	[[ $stderr == *"exited at once with status 3"*"'$log'"* ]] || fail "stderr: $stderr"
	run ctool logs e
	[ "$output" = "broken config" ] || fail "logs:" "$output"
	# the env stays on, for a look inside; no service is recorded
	[ "$(list_field e 3)" = on ] || fail "STATE: $(list_field e 3)"
	[ "$(info_get e service)" = stopped ]
	# a missing program too (an env takes its image's config when cloned)
	image_config base $'RUN exec /no/such/program'
	ctool rm --force e
	ctool clone base e
	run --separate-stderr ctool start e
	assert_status 1
	[[ $stderr == *"exited at once with status 127"* ]] || fail "stderr: $stderr"
}

@test "/chroot.d/start is the start command when the image has no RUN" {
	ctool clone base e
	env_write e /chroot.d/start <<'EOF'
#!/bin/sh
echo "from the hook in $(pwd)"
exec sleep 1000
EOF
	ctool start e
	retry log_has e "from the hook in /"
	[ "$(info_get e start-command)" = /chroot.d/start ]
	[ "$(list_field e 3)" = service ]
	# RUN, when there is one, comes first
	ctool off e
	image_config base $'RUN echo from RUN; exec sleep 1000'
	ctool clone base e2
	env_write e2 /chroot.d/start <<'EOF'
#!/bin/sh
echo "from the hook"
exec sleep 1000
EOF
	ctool off e2
	ctool start e2
	retry log_has e2 "from RUN"
	ctool off e2
}

@test "no start command: an error, and the env is left as it was" {
	ctool clone base e
	run --separate-stderr ctool start e
	assert_status 1
	[ "$stderr" = "ctool: start: env 'e' has no start command (RUN in its image, or /chroot.d/start)" ] ||
		fail "stderr: $stderr"
	[ "$(list_field e 3)" = off ] || fail "turned on: $(list_field e 3)"
	assert_no_mounts_under "$(env_root e)"
	[ "$(info_get e start-command)" = "/chroot.d/start, when the env has it" ]
	ctool on e
	[ "$(info_get e start-command)" = none ]
	run --separate-stderr ctool start e
	assert_status 1
	[ "$(list_field e 3)" = on ] || fail "turned off: $(list_field e 3)"
}

@test "the image's ENV reaches the service and run, which -e overrides" {
	image_config base $'ENV GREETING=hello world\nENV EMPTY=\nENV bad line\nRUN echo "greeting=$GREETING empty=[$EMPTY]"; exec sleep 1000'
	ctool clone base e
	ctool start e
	retry log_has e "greeting=hello world empty=[]"
	run ctool run e -- sh -c 'echo "$GREETING"'
	assert_status 0
	[ "$output" = "hello world" ] || fail "run:" "$output"
	run ctool run e -e GREETING=bye -- sh -c 'echo "$GREETING"'
	[ "$output" = bye ] || fail "run -e:" "$output"
	# run on an env that is on reads no catalog, and still has the ENV
	catalog_break
	run ctool run e -- sh -c 'echo "$GREETING:$PATH"'
	catalog_restore
	assert_status 0
	[ "$output" = "hello world:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ] ||
		fail "run without the catalog:" "$output"
	# the env keeps the config it was cloned with; a new clone takes the
	# image's as it is now, and an env turned on by run gets it too
	ctool off e
	image_config base $'ENV GREETING=changed'
	run ctool run e -- sh -c 'echo "$GREETING"'
	[ "$output" = "hello world" ] || fail "run after the image changed:" "$output"
	ctool clone base e2
	run ctool run e2 -- sh -c 'echo "$GREETING"'
	[ "$output" = changed ] || fail "run in a new clone:" "$output"
	image_config base ''
	ctool clone base e3
	run ctool run e3 -- sh -c 'echo "[$GREETING]"'
	[ "$output" = "[]" ] || fail "run without ENV:" "$output"
}

@test "a volume given to start serves a web page (busybox httpd), and comes back at every on" {
	www="$BATS_TEST_TMPDIR/www"
	mkdir -p "$www"
	echo "hello from the host" >"$www/index.html"
	port=$(free_port)
	image_config base "VOLUME /www
RUN exec busybox httpd -f -p 127.0.0.1:$port -h /www"
	ctool clone base web
	ctool start web -v "$www:/www:ro"
	retry curl -fsS --max-time 2 -o "$BATS_TEST_TMPDIR/page" "http://127.0.0.1:$port/"
	[ "$(cat "$BATS_TEST_TMPDIR/page")" = "hello from the host" ]
	root=$(env_root web)
	mount_is_ro "$root/www" || fail "/www is not read-only"
	run ctool info web
	[[ $output == *"volume: /www $www ro"* ]] || fail "info:" "$output"
	[[ $output == *"bind: $www /www ro"* ]] || fail "info:" "$output"
	ctool off web
	run curl -fsS --max-time 2 "http://127.0.0.1:$port/"
	[ "$status" -ne 0 ] || fail "still served after off"
	# recorded as on -v does: the next start mounts it again
	ctool start web
	mounted "$root/www" || fail "/www not mounted again"
	retry curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/"
}

@test "a VOLUME no bind serves: one warning at start, 'unbound' in info, nothing created" {
	srv="$BATS_TEST_TMPDIR/srv"
	mkdir -p "$srv"
	image_config base $'VOLUME /data /srv/cache\nRUN exec sleep 1000'
	ctool clone base e -v "$srv:/srv"
	run --separate-stderr ctool start e
	assert_status 0
	assert_one_error_line "ctool: start: warning: "
	[[ $stderr == *"'/data'"* && $stderr != *"/srv/cache"* ]] || fail "stderr: $stderr"
	run ctool info e
	[[ $output == *"volume: /data unbound"* ]] || fail "info:" "$output"
	[[ $output == *"volume: /srv/cache $srv"* ]] || fail "info:" "$output"
	[ ! -e "$(env_root e)/data" ] || fail "/data was made"
}

@test "-v on clone is recorded with the env and mounted at every on" {
	data="$BATS_TEST_TMPDIR/data"
	mkdir -p "$data"
	echo kept >"$data/file"
	mkdir -p "$BATS_TEST_TMPDIR/ro"
	ctool clone base e -v "$data:/data" --volume "$BATS_TEST_TMPDIR/ro:/mnt/ro:ro"
	run ctool info e
	[[ $output == *"bind: $data /data"* ]] || fail "info:" "$output"
	[[ $output == *"bind: $BATS_TEST_TMPDIR/ro /mnt/ro ro"* ]] || fail "info:" "$output"
	root=$(env_root e)
	for i in 1 2; do
		ctool on e
		mounted "$root/data" || fail "on $i: /data not mounted"
		mount_is_ro "$root/mnt/ro" || fail "on $i: /mnt/ro not read-only"
		run ctool run e -- cat /data/file
		[ "$output" = kept ] || fail "on $i:" "$output"
		ctool off e
	done
	# a clone from the env is not given its binds
	ctool clone e e2
	run ctool info e2
	[[ $output != *"bind: $data"* ]] || fail "info e2:" "$output"
}

@test "clone -v is checked before the env is made" {
	run --separate-stderr ctool clone base e -v "$BATS_TEST_TMPDIR/missing:/data"
	assert_status 1
	assert_one_error_line "ctool: clone: "
	run --separate-stderr ctool clone base e -v /:/host
	assert_status 1
	run --separate-stderr ctool clone base e -v nocolon
	assert_status 2
	assert_one_error_line "ctool: clone: "
	[ -z "$(ctool list -q)" ] || fail "an env was made: $(ctool list -q)"
}

@test "reset --force and rm --force never touch a volume's content" {
	data="$BATS_TEST_TMPDIR/data"
	mkdir -p "$data/sub"
	echo host >"$data/sub/host-file"
	image_config base $'VOLUME /data\nRUN echo written >/data/by-service; exec sleep 1000'
	ctool clone base e -v "$data:/data"
	ctool start e
	retry test -s "$data/by-service"
	ctool run e -- sh -c 'echo inside >/data/by-run; echo layer >/marker'
	before=$(tree_sum "$data")
	ctool reset --force e
	ctool gc
	[ "$(tree_sum "$data")" = "$before" ] || fail "reset changed the volume"
	run ctool run e -- test -e /marker
	[ "$status" -ne 0 ] || fail "reset kept the layer"
	run ctool run e -- cat /data/by-run
	[ "$output" = inside ] || fail "the volume is not back:" "$output"
	ctool start e
	before=$(tree_sum "$data")
	ctool rm --force e
	ctool gc
	[ "$(tree_sum "$data")" = "$before" ] || fail "rm changed the volume"
	[ "$(cat "$data/sub/host-file")" = host ] && [ "$(cat "$data/by-service")" = written ]
	[ -z "$(ctool list -q)" ]
}

@test "logs -f follows the log until the service ends" {
	image_config base $'RUN echo one; sleep 1; echo two'
	ctool clone base e
	ctool start e
	SECONDS=0
	run timeout 10 "$CTOOL" logs -f e
	assert_status 0
	[ "$output" = $'one\ntwo' ] || fail "logs -f:" "$output"
	[ "$SECONDS" -lt 8 ] || fail "logs -f took ${SECONDS}s"
	# the service ended: plain logs, and -f returns at once
	[ "$(list_field e 3)" = on ]
	run timeout 5 "$CTOOL" logs -f e
	assert_status 0
	[ "$output" = $'one\ntwo' ]
	# a new start appends
	ctool start e
	retry log_has e two
	run ctool logs e
	[ "${#lines[@]}" -ge 3 ] || fail "logs:" "$output"
}

@test "logs -f ends when off stops the service" {
	image_config base $'RUN echo up; exec sleep 1000'
	ctool clone base e
	ctool start e
	timeout 10 "$CTOOL" logs -f e >"$BATS_TEST_TMPDIR/out" &
	follower=$!
	retry grep -qx up "$BATS_TEST_TMPDIR/out"
	ctool off e
	wait "$follower" || fail "logs -f exited with $?"
	[ "$(cat "$BATS_TEST_TMPDIR/out")" = up ]
}

@test "a record whose pid now names another process is no service" {
	image_config base $'RUN exec sleep 1000'
	ctool clone base e
	ctool start e
	pid=$(service_pid e)
	rec="$CTOOL_STORE/envs/$(env_id e)/service.pid"
	read -r rpid start boot <"$rec"
	[ "$rpid" = "$pid" ] || fail "record: $(cat "$rec")"
	# the same pid with another start time: a reused pid
	echo "$pid $((start + 1)) $boot" >"$rec"
	[ "$(list_field e 3)" = on ] || fail "STATE: $(list_field e 3)"
	[ "$(info_get e service)" = stopped ]
	# another boot
	echo "$pid $start $boot" >"$rec"
	[ "$(list_field e 3)" = service ]
	[ "$(CTOOL_TEST_BOOT_ID=00000000-0000-0000-0000-000000000000 list_field e 3)" = on ]
	# so a new start is allowed once the old process is gone
	ctool off e
	ctool start e
	[ "$(list_field e 3)" = service ]
}

@test "logs of an env never started, and usage errors" {
	ctool clone base e
	run --separate-stderr ctool logs e
	assert_status 1
	assert_one_error_line "ctool: logs: "
	run --separate-stderr ctool logs nosuch
	assert_status 1
	run --separate-stderr ctool start e --bogus
	assert_status 2
	assert_one_error_line "ctool: start: "
	run --separate-stderr ctool start e -v bad
	assert_status 2
	run --separate-stderr ctool logs e extra
	assert_status 2
	run ctool start --help
	assert_status 0
	[[ $output == usage:* ]]
	[ "$(list_field e 3)" = off ]
}
