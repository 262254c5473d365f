#!/usr/bin/env bats
# Deep stacks and the layer store: an image of 200 layers mounts and
# reads right (the kernel's 4 KiB mount-option page does not bite), images
# show their sizes, rmi and gc remove only the layers nothing uses.

load helpers

# A recipe of N EXEC steps over "base": step i writes /stack/n = i and
# /stack/f$i, and every tenth step deletes the file five steps back.
deep_recipe() {
	local n=$1 i
	{
		echo "FROM base"
		for i in $(seq "$n"); do
			if [ $((i % 10)) -eq 0 ]; then
				echo "EXEC mkdir -p /stack && echo $i > /stack/n && echo $i > /stack/f$i && rm /stack/f$((i - 5))"
			else
				echo "EXEC mkdir -p /stack && echo $i > /stack/n && echo $i > /stack/f$i"
			fi
		done
	} >"$BATS_TEST_TMPDIR/Ctoolfile"
}

@test "an image of 200 layers mounts and reads right" {
	base_image
	deep_recipe 199
	run --separate-stderr ctool -q build -f "$BATS_TEST_TMPDIR/Ctoolfile" deep
	assert_status 0
	[ "$(sqlite3 "$CTOOL_STORE/catalog.db" \
		"SELECT count(*) FROM image_layers WHERE image = 'deep'")" = 200 ]
	# the layers' paths alone are more than a 4 KiB mount-option page
	[ "$(printf '%s:' "$CTOOL_STORE"/layers/* | wc -c)" -gt 4096 ]
	ctool clone deep d
	run ctool run d -- sh -c 'cat /stack/n; ls /stack | wc -l; cat /stack/f1 /stack/f199;
		test -e /stack/f5 || echo f5-gone; test -e /stack/f185 || echo f185-gone'
	assert_status 0
	[ "$output" = "$(printf '199\n181\n1\n199\nf5-gone\nf185-gone')" ] || fail "$output"
	# the mount names every layer
	root=$(env_root d)
	[ "$(mount_fstype "$root")" = "$( [ "$(expected_driver)" = fuse ] && echo fuse.ctool-overlayfs || echo overlay)" ]
	# writes go to the env's upper only
	ctool run d -- sh -c 'echo changed > /stack/f1; rm /stack/f2'
	run ctool run d -- sh -c 'cat /stack/f1; test -e /stack/f2 || echo f2-gone'
	[ "$output" = "$(printf 'changed\nf2-gone')" ]
	ctool off d
	assert_no_mounts_under "$root"
	ctool reset d
	run ctool run d -- cat /stack/f1 /stack/f2
	[ "$output" = "$(printf '1\n2')" ]
}

@test "images shows sizes; rmi and gc remove only unused layers" {
	base_image
	printf 'FROM base\nEXEC dd if=/dev/zero of=/big bs=1024 count=512 2>/dev/null\n' \
		>"$BATS_TEST_TMPDIR/Ctoolfile"
	ctool -q build -f "$BATS_TEST_TMPDIR/Ctoolfile" a
	printf 'FROM a\nEXEC echo b > /b\n' >"$BATS_TEST_TMPDIR/Ctoolfile"
	ctool -q build -f "$BATS_TEST_TMPDIR/Ctoolfile" b
	run ctool images
	assert_status 0
	[[ ${lines[0]} == *SIZE* ]] || fail "no SIZE column: ${lines[0]}"
	sa=$(awk '$1 == "a" { print $3 }' <<<"$output")
	[[ $sa == *K* || $sa == *M* ]] || fail "size of a: '$sa' in $output"
	nlayers=$(store_layers | wc -l)
	[ "$nlayers" -eq 3 ]
	# rmi a keeps the layers b shares
	ctool rmi a
	[ "$(store_layers | wc -l)" -eq 3 ]
	ctool clone b e
	run ctool run e -- sh -c 'test -s /big && cat /b'
	[ "$output" = b ]
	run --separate-stderr ctool rmi b
	assert_status 1
	ctool rm --force e
	ctool rmi b
	ctool gc
	[ "$(store_layers | wc -l)" -eq 1 ]
	# gc removes the layers of a failed build's earlier steps
	printf 'FROM base\nEXEC echo x > /x\nEXEC false\n' >"$BATS_TEST_TMPDIR/Ctoolfile"
	run ctool -q build -f "$BATS_TEST_TMPDIR/Ctoolfile" c
	assert_status 1
	[ "$(store_layers | wc -l)" -eq 2 ]
	ctool gc
	[ "$(store_layers | wc -l)" -eq 1 ]
}
