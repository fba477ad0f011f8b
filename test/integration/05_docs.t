#!/bin/bash
# The configuration reference in doc/ is generated from the key table: it must match
# what the binary prints, and every key the example config uses must be documented.
. "$(dirname "$0")/lib.sh"

ref=$("$SP_BUILDDIR/src/shardpool" --describe-config)
ok "--describe-config prints a reference" test -n "$ref"
ok "doc/configuration.md matches --describe-config (run 'make docs')" \
	diff -u "$SP_SRCDIR/doc/configuration.md" <(printf '%s\n' "$ref")
for key in $(sed -n 's/^[[:space:]]*\([a-z_]*\)[[:space:]]*=.*/\1/p' "$SP_SRCDIR/etc/shardpool.ini" | sort -u); do
	like "$ref" "\\b$key\\b" "example key $key is documented"
done
ok "etc/shardpool.ini passes --check-config" "$SP_BUILDDIR/src/shardpool" --check-config "$SP_SRCDIR/etc/shardpool.ini"
out=$("$SP_BUILDDIR/src/shardpool" --check-config /dev/null 2>&1)
isnt "$?" "0" "an empty config is refused"
if command -v systemd-analyze >/dev/null; then
	unit=$SP_TMP/shardpool.service
	sed "s#^ExecStart=.*#ExecStart=$SP_BUILDDIR/src/shardpool $SP_SRCDIR/etc/shardpool.ini#" \
		"$SP_SRCDIR/etc/shardpool.service" >"$unit"
	is "$(systemd-analyze verify --man=no "$unit" 2>&1 | grep -F shardpool.service)" "" \
		"etc/shardpool.service passes systemd-analyze verify"
else
	skip "systemd-analyze is not installed: the example unit is not checked" 1
fi
ok "the man pages exist" test -s "$SP_SRCDIR/doc/shardpool.1" -a -s "$SP_SRCDIR/doc/shardpool.ini.5"
if command -v pandoc >/dev/null; then
	# the man pages are generated from usage.md and configuration.md: regenerated here,
	# as `make docs` does, they must equal the committed ones
	ver=$("$SP_BUILDDIR/src/shardpool" --version | awk '{print $2}')
	pandoc -s -t man -M title=SHARDPOOL -M section=1 -M date="$ver" "$SP_SRCDIR/doc/usage.md" \
		-o "$SP_TMP/shardpool.1"
	pandoc -s -t man -M title=SHARDPOOL.INI -M section=5 -M date="$ver" \
		"$SP_SRCDIR/doc/configuration.md" -o "$SP_TMP/shardpool.ini.5"
	ok "doc/shardpool.1 is usage.md's (run 'make docs')" diff -q "$SP_SRCDIR/doc/shardpool.1" "$SP_TMP/shardpool.1"
	ok "doc/shardpool.ini.5 is configuration.md's (run 'make docs')" \
		diff -q "$SP_SRCDIR/doc/shardpool.ini.5" "$SP_TMP/shardpool.ini.5"
else
	skip "pandoc is not installed: the man pages are not compared with their sources" 2
fi
done_testing
