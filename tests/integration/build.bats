#!/usr/bin/env bats
# build and commit: recipes made of cached steps, on the busybox rootfs
# (EXEC, COPY, ENV, VOLUME, RUN); PKG needs a Debian base and is tested
# in debootstrap.bats.

load helpers

setup() {
	common_setup
	base_image
	R="$BATS_TEST_TMPDIR/recipe"
	mkdir -p "$R/site"
	echo 'hello from ctool' >"$R/site/index.html"
	echo 'one file' >"$R/note.txt"
	cat >"$R/Ctoolfile" <<'EOF'
# a web server's image, built offline
FROM base
ENV GREETING=hi
EXEC mkdir -p /www && \
     echo "$GREETING" > /www/greeting
COPY site /www/
COPY note.txt /etc/note.txt
VOLUME /data
RUN busybox httpd -f -p 127.0.0.1:8089 -h /www
EOF
}

# build IMAGE [ARGS...] in the recipe's folder
build() {
	(cd "$R" && "$CTOOL" build "$@")
}

# The store's layer ids, sorted, one per line.
layer_ids() {
	store_layers | xargs -r -n1 basename | sort
}

@test "a recipe builds an image whose env shows every step" {
	run --separate-stderr build web
	assert_status 0
	[[ $stderr == *"[3/7] EXEC mkdir"* ]] || fail "no progress line for EXEC: $stderr"
	[[ $stderr == *"built 'web': 3 step(s) run, 0 cached"* ]] || fail "no summary: $stderr"
	run ctool images
	[[ $output == *web* ]]
	ctool clone web w
	run ctool run w -- cat /www/greeting /www/index.html /etc/note.txt
	assert_status 0
	[ "$output" = "$(printf 'hi\nhello from ctool\none file')" ]
	# COPY makes root the owner and keeps the mode
	run ctool run w -- stat -c '%u:%g %a' /www/index.html
	[ "$output" = "0:0 644" ]
	# the copy's mount point is not left in the image
	run ctool run w -- ls -a /
	[[ $output != *ctool-copy* ]] || fail "mount point left: $output"
	# base + 3 layers
	run sqlite3 "$CTOOL_STORE/catalog.db" \
		"SELECT count(*) FROM image_layers WHERE image = 'web'"
	[ "$output" = 4 ]
	run sqlite3 "$CTOOL_STORE/catalog.db" "SELECT config FROM images WHERE name = 'web'"
	[[ $output == *"ENV GREETING=hi"* && $output == *"VOLUME /data"* &&
		$output == *"RUN busybox httpd -f -p 127.0.0.1:8089 -h /www"* ]] ||
		fail "config: $output"
	# no build env is left
	run ctool list -q
	[ -z "$output" ] || [ "$output" = w ]
}

@test "offline end to end: build, clone, start with a volume, fetch over loopback, off, rebuild" {
	port=$((20000 + RANDOM % 20000))
	sed -i "s/127.0.0.1:8089/127.0.0.1:$port/" "$R/Ctoolfile"
	build web
	ctool clone web w
	vol="$BATS_TEST_TMPDIR/vol"
	mkdir -p "$vol"
	echo 'from the volume' >"$vol/page.html"
	run ctool start w -v "$vol:/www/vol"
	assert_status 0
	page=""
	for i in $(seq 50); do
		page=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/index.html" 2>/dev/null) && break
		sleep 0.1
	done
	[ "$page" = "hello from ctool" ] || fail "got '$page'; log:" "$(ctool logs w)"
	run curl -fsS --max-time 2 "http://127.0.0.1:$port/vol/page.html"
	[ "$output" = "from the volume" ] || fail "volume page: $output"
	[ "$(list_field w 3)" = service ]
	run ctool off w
	assert_status 0
	assert_no_mounts_under "$(env_root w)"
	[ -z "$(procs_rooted_under "$(env_root w)")" ]
	! curl -fsS --max-time 1 "http://127.0.0.1:$port/" >/dev/null 2>&1 || fail "httpd still answers"
	# nothing changed: cache hits only; one step changed: it and after
	run --separate-stderr build web
	[[ $stderr == *"built 'web': 0 step(s) run, 3 cached"* ]] || fail "$stderr"
	echo 'note two' >"$R/note.txt"
	run --separate-stderr build web
	[[ $stderr == *"built 'web': 1 step(s) run, 2 cached"* ]] || fail "$stderr"
	# the volume's content outlives the env
	ctool rm --force w
	[ "$(cat "$vol/page.html")" = "from the volume" ]
}

@test "a rebuild with nothing changed runs no step and keeps the layers" {
	build web
	before=$(layer_ids)
	run --separate-stderr build web
	assert_status 0
	[[ $stderr == *"built 'web': 0 step(s) run, 3 cached"* ]] || fail "$stderr"
	[ "$(layer_ids)" = "$before" ]
	# no env was made for it
	[ -z "$(ls "$CTOOL_STORE/envs" 2>/dev/null)" ] || [ -z "$(ctool list -q)" ]
}

@test "a change at step k rebuilds k and after only" {
	build web
	run sqlite3 "$CTOOL_STORE/catalog.db" \
		"SELECT layer FROM image_layers WHERE image = 'web' ORDER BY pos"
	old=($output)
	echo 'new page' >"$R/site/index.html"
	run --separate-stderr build web
	assert_status 0
	[[ $stderr == *"built 'web': 2 step(s) run, 1 cached"* ]] || fail "$stderr"
	run sqlite3 "$CTOOL_STORE/catalog.db" \
		"SELECT layer FROM image_layers WHERE image = 'web' ORDER BY pos"
	new=($output)
	[ "${new[0]}" = "${old[0]}" ] && [ "${new[1]}" = "${old[1]}" ]
	[ "${new[2]}" != "${old[2]}" ] && [ "${new[3]}" != "${old[3]}" ]
	ctool clone web w
	run ctool run w -- cat /www/index.html
	[ "$output" = "new page" ]
	# an edit of the EXEC's text rebuilds from there
	sed -i 's/GREETING" >/GREETING!" >/' "$R/Ctoolfile"
	run --separate-stderr build web
	[[ $stderr == *"built 'web': 3 step(s) run, 0 cached"* ]] || fail "$stderr"
}

@test "an env made before a rebuild keeps its layers and config; reset keeps them too" {
	build web
	ctool clone web w
	echo 'second' >"$R/site/index.html"
	sed -i 's/-p 127.0.0.1:8089/-p 127.0.0.1:8090/' "$R/Ctoolfile"
	build web
	run ctool run w -- cat /www/index.html
	[ "$output" = "hello from ctool" ]
	# and the config it was cloned with
	[[ "$(ctool info w)" == *"start-command: busybox httpd -f -p 127.0.0.1:8089"* ]] ||
		fail "$(ctool info w)"
	ctool off w
	ctool reset w
	run ctool run w -- cat /www/index.html
	[ "$output" = "hello from ctool" ]
	# gc keeps the layers the env uses
	ctool off w
	ctool gc
	run ctool run w -- cat /www/index.html
	[ "$output" = "hello from ctool" ]
	ctool clone web w2
	run ctool run w2 -- cat /www/index.html
	[ "$output" = "second" ]
}

@test "--no-cache runs every step again" {
	build web
	run --separate-stderr build --no-cache web
	assert_status 0
	[[ $stderr == *"3 step(s) run, 0 cached"* ]] || fail "$stderr"
	# the next build hits the new layers
	run --separate-stderr build web
	[[ $stderr == *"0 step(s) run, 3 cached"* ]] || fail "$stderr"
}

@test "a failed step leaves no layer and no image" {
	build web
	before=$(layer_ids)
	cat >"$R/Ctoolfile" <<'EOF'
FROM base
EXEC echo made > /made && false
EOF
	run --separate-stderr build broken
	assert_status 1
	[[ ${stderr_lines[-1]} == "ctool: build: Ctoolfile:2: EXEC failed (/bin/sh exited with 1)" ]] ||
		fail "$stderr"
	run ctool images
	[[ $output != *broken* ]]
	[ "$(layer_ids)" = "$before" ]
	[ -z "$(ctool list -q)" ]
	[ -z "$(ls "$CTOOL_STORE/tmp" 2>/dev/null | grep -v '\.lock$')" ]
}

@test "a syntax error names file, line and column, and builds nothing" {
	printf 'FROM base\nEXEC true\nCOPY onlyone\n' >"$R/Ctoolfile"
	run --separate-stderr build web
	assert_status 1
	[ "$stderr" = "ctool: build: Ctoolfile:3:6: COPY takes SRC and DST" ]
	[ -z "$(ctool list -q)" ]
	run ctool images
	[[ $output != *web* ]]
}

@test "bad input: no recipe, unknown base, bad name" {
	run --separate-stderr ctool build -f "$BATS_TEST_TMPDIR/none" web
	assert_status 1
	assert_one_error_line "ctool: build: cannot read"
	printf 'FROM nosuch\nEXEC true\n' >"$R/Ctoolfile"
	run --separate-stderr build web
	assert_status 1
	[ "$stderr" = "ctool: build: no image named 'nosuch'" ]
	run --separate-stderr build Bad/Name
	assert_status 2
}

@test "pocker's Pockerfile is found when there is no Ctoolfile; PROOT takes the default image" {
	rm "$R/Ctoolfile"
	cat >"$R/Pockerfile" <<'EOF'
PROOT
EXEC echo pocker > /from-pocker
RUN /bin/true
EOF
	run --separate-stderr env CTOOL_IMAGE=base sh -c "cd '$R' && '$CTOOL' build pk"
	assert_status 0
	ctool clone pk p
	run ctool run p -- cat /from-pocker
	[ "$output" = pocker ]
	unset CTOOL_IMAGE
	run --separate-stderr env -u CTOOL_IMAGE sh -c "cd '$R' && '$CTOOL' build pk2"
	assert_status 1
	[[ $stderr == *"no image named 'bookworm' (PROOT's base"* ]] || fail "$stderr"
}

@test "a build cut short leaves an env that the next build or gc removes" {
	cat >"$R/Ctoolfile" <<'EOF'
FROM base
EXEC touch /started && sleep 30
EOF
	(cd "$R" && exec "$CTOOL" build slow) >/dev/null 2>&1 &
	pid=$!
	for i in $(seq 100); do
		ctool list -q | grep -q '^\.build-' && break
		sleep 0.1
	done
	sleep 0.5
	kill -9 "$pid"
	wait "$pid" || true
	ctool list -q | grep -q '^\.build-' || fail "no build env was seen"
	ctool gc
	[ -z "$(ctool list -q)" ] || fail "left: $(ctool list -q)"
	assert_no_mounts_under "$CTOOL_STORE"
	[ -z "$(procs_rooted_under "$CTOOL_STORE")" ]
}

@test "commit makes an env's changes a layer; the env goes on over it" {
	ctool clone base e
	ctool run e -- sh -c 'mkdir /app && i=0; while [ $i -lt 100 ]; do echo $i > /app/f$i; i=$((i+1)); done; rm /etc/os-release'
	ctool off e
	run --separate-stderr ctool commit e snap
	assert_status 0
	# the env's upper is empty again and it shows the same tree
	[ -z "$(ls -A "$(env_upper e)" 2>/dev/null)" ]
	run ctool run e -- sh -c 'cat /app/f42; test -e /etc/os-release || echo gone'
	[ "$output" = "$(printf '42\ngone')" ]
	run ctool images
	[[ $output == *snap* ]]
	ctool clone snap s2
	run ctool run s2 -- sh -c 'ls /app | wc -l; test -e /etc/os-release || echo gone'
	[ "$output" = "$(printf '100\ngone')" ]
	# reset now goes back to the commit
	ctool off e
	ctool run e -- touch /later
	ctool off e
	ctool reset e
	run ctool run e -- sh -c 'test -e /later || echo no; cat /app/f1'
	[ "$output" = "$(printf 'no\n1')" ]
}

@test "commit refuses an env that is on, and a bad name" {
	ctool clone base e
	ctool on e
	run --separate-stderr ctool commit e snap
	assert_status 1
	assert_one_error_line "ctool: commit: env 'e' is on"
	run --separate-stderr ctool commit nosuch snap
	assert_status 1
	run --separate-stderr ctool commit e 'Bad Name'
	assert_status 2
}

@test "a commit cut short is finished, or undone, by the env's next on; no change is lost" {
	ctool clone base e
	ctool run e -- sh -c 'echo kept > /kept'
	ctool off e
	ctool commit e snap
	dir=$(dirname "$(env_upper e)")
	# cut short after the catalog: the layer's folder still waits in the
	# env's folder
	top=$(sqlite3 "$CTOOL_STORE/catalog.db" \
		"SELECT layer FROM env_layers WHERE env = '$(env_id e)' ORDER BY pos DESC LIMIT 1")
	rm -rf "$(env_upper e)"
	mv "$CTOOL_STORE/layers/$top" "$dir/commit-$top"
	# another env of the image cannot mount it yet
	ctool clone snap other
	run ctool on other
	[ "$status" -ne 0 ]
	run ctool run e -- cat /kept
	assert_status 0
	[ "$output" = kept ]
	[ -d "$CTOOL_STORE/layers/$top" ] && [ ! -e "$dir/commit-$top" ]
	run ctool run other -- cat /kept
	[ "$output" = kept ]
	# cut short before the catalog: the changes go back to the upper
	ctool run e -- sh -c 'echo second > /second'
	ctool off e
	mv "$(env_upper e)" "$dir/commit-00000000-0000-0000-0000-00000000abcd"
	run ctool run e -- cat /second
	assert_status 0
	[ "$output" = second ]
	[ ! -e "$dir/commit-00000000-0000-0000-0000-00000000abcd" ]
}

@test "COPY refuses a SRC that is or goes through a symlink" {
	ln -s /etc "$R/hostetc"
	printf 'FROM base\nCOPY hostetc/passwd /x\n' >"$R/Ctoolfile"
	run --separate-stderr build web
	assert_status 1
	[[ $stderr == *"Ctoolfile:2: COPY: 'hostetc/passwd' goes through a symlink"* ]] || fail "$stderr"
	printf 'FROM base\nCOPY hostetc /x\n' >"$R/Ctoolfile"
	run --separate-stderr build web
	assert_status 1
	[[ $stderr == *"COPY: 'hostetc' "*symlink* ]] || fail "$stderr"
	[ -z "$(ctool list -q)" ]
}

@test "COPY keeps DST's own mode; a file goes into a new DST/; ENV expands \$VARS" {
	mkdir -p "$R/tree/sub"
	echo a >"$R/tree/sub/a"
	echo h >"$R/tree/.hidden"
	chmod 0700 "$R/tree"
	cat >"$R/Ctoolfile" <<'EOF'
FROM base
COPY tree /etc
COPY note.txt /opt/new/
ENV BIN=/opt/bin PATH=/opt/bin:$PATH GREETING=${BIN}-x
EXEC mkdir -p /opt/bin && printf '#!/bin/sh\necho tool\n' > /opt/bin/mytool && chmod +x /opt/bin/mytool && mytool > /ran
EOF
	run --separate-stderr build web
	assert_status 0
	ctool clone web w
	run ctool run w -- sh -c 'stat -c %a /etc; cat /etc/sub/a /etc/.hidden /opt/new/note.txt /ran; echo "$GREETING"'
	[ "$output" = "$(printf '755\na\nh\none file\ntool\n/opt/bin-x')" ] || fail "$output"
}
