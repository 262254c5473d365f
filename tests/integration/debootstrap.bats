#!/usr/bin/env bats
# The end-to-end test with a real debootstrapped base: create, clone,
# apt-get install, reset, and the base layer unchanged throughout.
#
# The store lives in $BATS_FILE_TMPDIR and the image is made once in
# setup_file (1-2 minutes). The tests skip only when the Debian mirror
# that ctool would use is unreachable.

load helpers

# The first URI of the host's apt sources: the mirror ctool defaults to.
host_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'tolower($1) == "uris:" { print $2; exit }' "$f"
	done | head -n 1 | grep . && return 0
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit } }' "$f"
	done | head -n 1 | grep .
}

setup_file() {
	export CTOOL_STORE="$BATS_FILE_TMPDIR/store"
	[ -x "$CTOOL" ] || fail "ctool binary not found at '$CTOOL' (set CTOOL=...)" || return
	MIRROR=$(host_mirror) || MIRROR=http://deb.debian.org/debian
	export MIRROR
	if ! timeout 10 curl -fsS -o /dev/null "${MIRROR%/}/dists/bookworm/Release" 2>/dev/null &&
		! timeout 10 wget -q -O /dev/null "${MIRROR%/}/dists/bookworm/Release" 2>/dev/null; then
		echo "$MIRROR" >"$BATS_FILE_TMPDIR/unreachable"
		return 0
	fi
	set +e
	"$CTOOL" create deb >"$BATS_FILE_TMPDIR/create.log" 2>&1
	echo $? >"$BATS_FILE_TMPDIR/create.rc"
	set -e
}

setup() {
	if [ -e "$BATS_FILE_TMPDIR/unreachable" ]; then
		skip "the Debian mirror $(cat "$BATS_FILE_TMPDIR/unreachable") is unreachable"
	fi
	export CTOOL_STORE="$BATS_FILE_TMPDIR/store"
	CT_SCRATCH="$BATS_FILE_TMPDIR"
}

teardown() {
	[ -e "$BATS_FILE_TMPDIR/unreachable" ] && return 0
	common_teardown
}

teardown_file() {
	[ -e "$BATS_FILE_TMPDIR/unreachable" ] && return 0
	export CTOOL_STORE="$BATS_FILE_TMPDIR/store"
	local n
	cd /
	for n in $("$CTOOL" list -q 2>/dev/null); do
		"$CTOOL" off --force "$n" >/dev/null 2>&1 || true
		"$CTOOL" rm --force "$n" >/dev/null 2>&1 || true
	done
	"$CTOOL" rmi deb >/dev/null 2>&1 || true
	"$CTOOL" gc >/dev/null 2>&1 || true
	teardown_check "$BATS_FILE_TMPDIR"
}

created() {
	[ "$(cat "$BATS_FILE_TMPDIR/create.rc" 2>/dev/null)" = 0 ] ||
		fail "ctool create deb failed:" "$(tail -n 30 "$BATS_FILE_TMPDIR/create.log" 2>/dev/null)"
}

@test "create IMAGE debootstraps bookworm minbase from the host's mirror" {
	created
	run ctool images
	assert_status 0
	line=$(printf '%s\n' "${lines[@]}" | awk '$1 == "deb"')
	[ -n "$line" ] || fail "no image deb:" "$output"
	read -r _ layers _ envs _ <<<"$line"
	[ "$layers" = 1 ] && [ "$envs" = 0 ] || fail "images: $line"
	[[ $line == *bookworm* ]] || fail "ORIGIN does not say bookworm: $line"
	layer=$(store_layers)
	[ "$(printf '%s\n' "$layer" | wc -l)" -eq 1 ] || fail "layers: $layer"
	grep -q '^VERSION_CODENAME=bookworm' "$layer/etc/os-release" || fail "not bookworm"
	[ -x "$layer/usr/bin/apt-get" ] && [ -x "$layer/bin/bash" ] || fail "not a Debian base"
	# minbase: no "important" packages such as less or nano
	[ ! -e "$layer/usr/bin/nano" ] || fail "not minbase"
	# non-interactive: one line per stage, no progress bar redraws
	! grep -q $'\r' "$BATS_FILE_TMPDIR/create.log" || fail "progress bar written to a non-terminal"
}

@test "clone, apt-get install, run, reset: the package is gone, the base unchanged" {
	created
	layer=$(store_layers)
	keyfiles=(etc/passwd etc/os-release var/lib/dpkg/status usr/bin/apt-get bin/bash etc/apt/sources.list)
	sums=$(cd "$layer" && md5sum "${keyfiles[@]}" 2>/dev/null)
	count=$(find "$layer" | wc -l)
	stamp="$BATS_TEST_TMPDIR/stamp"
	touch "$stamp"
	sleep 0.05

	run ctool clone deb e
	assert_status 0
	run ctool run e -e DEBIAN_FRONTEND=noninteractive -- apt-get update
	assert_status 0
	run ctool run e -e DEBIAN_FRONTEND=noninteractive -- \
		apt-get install -y --no-install-recommends hello
	assert_status 0
	run ctool run e -- hello
	assert_status 0
	[ "$output" = "Hello, world!" ] || fail "hello said:" "$output"
	run ctool run e -u nobody -w / -- hello -g hi
	assert_status 0
	[ "$output" = hi ] || fail "hello -g said:" "$output"

	run ctool reset e --force
	assert_status 0
	run -127 ctool run e -- hello
	run ctool run e -- test -e /usr/bin/hello
	assert_status 1
	run ctool run e -- dpkg -s hello
	[ "$status" -ne 0 ] || fail "dpkg still knows hello"

	# the base layer never changed
	[ -z "$(find "$layer" -newer "$stamp" -o -cnewer "$stamp" | head)" ] ||
		fail "changed in the base layer:" "$(find "$layer" -newer "$stamp" -o -cnewer "$stamp" | head)"
	[ "$(cd "$layer" && md5sum "${keyfiles[@]}" 2>/dev/null)" = "$sums" ] || fail "key files changed"
	[ "$(find "$layer" | wc -l)" -eq "$count" ] || fail "files added to or removed from the base layer"
	[ ! -e "$layer/usr/bin/hello" ]

	run ctool off e
	assert_status 0
	assert_no_mounts_under "$(env_root e)"
}

@test "many files: apt-get install and purge, dpkg --verify clean throughout" {
	created
	run ctool clone deb m
	assert_status 0
	run ctool run m -e DEBIAN_FRONTEND=noninteractive -- apt-get update
	assert_status 0
	# about 1,500 files, and a purge that removes what it installed
	run ctool run m -e DEBIAN_FRONTEND=noninteractive -- \
		apt-get install -y --no-install-recommends perl-modules-5.36 hello
	assert_status 0
	n=$(ctool run m -- dpkg -L perl-modules-5.36 | wc -l)
	[ "$n" -gt 1000 ] || fail "perl-modules-5.36 has only $n files"
	run ctool run m -- dpkg --verify
	assert_status 0
	[ -z "$output" ] || fail "dpkg --verify:" "$output"
	run ctool run m -- perl -MText::Wrap -e 'print wrap("", "", "ok"), "\n"'
	assert_status 0
	[ "$output" = ok ] || fail "perl said:" "$output"
	run ctool run m -e DEBIAN_FRONTEND=noninteractive -- apt-get purge -y perl-modules-5.36
	assert_status 0
	run ctool run m -- dpkg --verify
	assert_status 0
	[ -z "$output" ] || fail "dpkg --verify after purge:" "$output"
	run ctool run m -- test -e /usr/share/perl/5.36/Text/Wrap.pm
	assert_status 1
	[ "$(info_get m driver)" = "$(expected_driver)" ]
	run ctool rm --force m
	assert_status 0
}

@test "pocker's example: build PROOT/PKG nginx/RUN, start with a volume, fetch, rebuild from cache" {
	created
	R="$BATS_TEST_TMPDIR/recipe"
	www="$BATS_TEST_TMPDIR/www"
	mkdir -p "$R" "$www"
	echo '<h1>served by ctool</h1>' >"$www/index.html"
	cat >"$R/Pockerfile" <<'EOF2'
PROOT
PKG nginx
# listen on loopback only, on a port of its own
EXEC sed -i -e 's/listen 80 default_server;/listen 127.0.0.1:8088 default_server;/' \
	-e '/listen \[::\]:80/d' /etc/nginx/sites-available/default
RUN nginx -g 'daemon off;'
EOF2
	run --separate-stderr env CTOOL_IMAGE=deb sh -c "cd '$R' && '$CTOOL' build web"
	assert_status 0
	[[ $stderr == *"built 'web': 2 step(s) run, 0 cached"* ]] || fail "$stderr"
	# the PKG layer records what it installed
	run ctool info web
	assert_status 0
	[[ $output == *"nginx="* ]] || fail "no package versions in info:" "$output"

	ctool clone web w
	run ctool start w -v "$www:/var/www/html"
	assert_status 0
	page=""
	for i in $(seq 50); do
		page=$(curl -fsS --max-time 2 http://127.0.0.1:8088/ 2>/dev/null) && break
		sleep 0.2
	done
	[ "$page" = '<h1>served by ctool</h1>' ] || fail "got '$page'; log:" "$(ctool logs w)"
	run ctool off w
	assert_status 0
	assert_no_mounts_under "$(env_root w)"
	! curl -fsS --max-time 2 http://127.0.0.1:8088/ >/dev/null 2>&1 || fail "nginx still answers"

	# nothing changed: cache hits only
	run --separate-stderr env CTOOL_IMAGE=deb sh -c "cd '$R' && '$CTOOL' build web"
	assert_status 0
	[[ $stderr == *"built 'web': 0 step(s) run, 2 cached"* ]] || fail "$stderr"
	# one step changed: it alone runs again
	sed -i 's/8088/8089/' "$R/Pockerfile"
	run --separate-stderr env CTOOL_IMAGE=deb sh -c "cd '$R' && '$CTOOL' build web"
	assert_status 0
	[[ $stderr == *"built 'web': 1 step(s) run, 1 cached"* ]] || fail "$stderr"
	# the volume's content survived the env's rm
	ctool rm --force w
	[ -f "$www/index.html" ]

	# the archive moved on (as far as the cache knows): --refresh rebuilds
	# the PKG step and what follows
	sqlite3 "$CTOOL_STORE/catalog.db" \
		"UPDATE layers SET packages = replace(packages, 'nginx=', 'nginx=0.0-old+') WHERE packages LIKE '%nginx=%'"
	run --separate-stderr env CTOOL_IMAGE=deb sh -c "cd '$R' && '$CTOOL' build --refresh web"
	assert_status 0
	[[ $stderr == *"the archive now has nginx="* ]] || fail "$stderr"
	[[ $stderr == *"built 'web': 2 step(s) run, 0 cached"* ]] || fail "$stderr"
	# and without a change in the archive, --refresh keeps the cache
	run --separate-stderr env CTOOL_IMAGE=deb sh -c "cd '$R' && '$CTOOL' build --refresh web"
	assert_status 0
	[[ $stderr == *"built 'web': 0 step(s) run, 2 cached"* ]] || fail "$stderr"
	ctool rmi web
}
