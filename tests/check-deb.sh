#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `dpkg-buildpackage -us -uc -b` builds the Debian package from a copy of the
# source tree (so nothing is written next to it), lintian finds no error, and
# the package holds the unit, the catalog, the man pages and the
# configuration as a conffile, and enables the unit on installation.
#
# Usage: check-deb.sh SOURCE-ROOT            (exit 77 = tools missing)
# Needs: dpkg-dev debhelper lintian fakeroot, and the Build-Depends.

set -u
src=$(realpath "${1:?usage: check-deb.sh SOURCE-ROOT}")
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

for tool in dpkg-buildpackage dh lintian; do
        command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
tree=$tmp/vcpuspreadd-$version
mkdir "$tree"
# Tracked and untracked files, not what .gitignore excludes (build dirs).
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 cp --parents -t "$tree") || { fail "cannot copy the source tree"; exit 1; }

if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
        tail -n 60 "$tmp/build.log"
        # The build's own test run: what each failed test printed last, so
        # that a failure in CI can be read off the end of its output.
        find "$tree" -path '*/meson-logs/testlog.json' -exec jq -r \
                'select(.result != "OK" and .result != "SKIP")
                 | "=== in the package build: \(.name): \(.result) (exit \(.returncode))",
                   ((.stdout // "") + (.stderr // "") | split("\n") | .[-40:] | map("  | " + .) | join("\n"))' \
                {} + 2>/dev/null
        fail "dpkg-buildpackage -us -uc -b"
        exit 1
fi
deb=$(ls "$tmp"/vcpuspreadd_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { fail "no .deb built"; exit 1; }
echo "built $(basename "$deb")"

lintian --display-info "$deb" >"$tmp/lintian.log" 2>&1
echo "lintian:"
sed 's/^/  /' "$tmp/lintian.log"
grep -q '^E: ' "$tmp/lintian.log" && fail "lintian reports errors"

contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|')
echo "package contents:"
echo "$contents" | grep -v '/$' | sed 's/^/  /'
for f in /etc/vcpuspreadd/vcpuspreadd.conf \
         /usr/lib/systemd/catalog/vcpuspreadd.catalog \
         /usr/share/man/man8/vcpuspreadd.8.gz \
         /usr/share/man/man8/vcpuspreadctl.8.gz \
         /usr/share/man/man5/vcpuspreadd.conf.5.gz \
         /usr/share/doc/vcpuspreadd/copyright; do
        echo "$contents" | grep -xF "$f" >/dev/null || fail "not in the package: $f"
done
echo "$contents" | grep -xE '(/usr)?/lib/systemd/system/vcpuspreadd\.service' >/dev/null ||
        fail "not in the package: the unit"

dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/vcpuspreadd/vcpuspreadd.conf "$tmp/control/conffiles" 2>/dev/null ||
        fail "/etc/vcpuspreadd/vcpuspreadd.conf is not a conffile"
grep -q "deb-systemd-helper .*enable 'vcpuspreadd.service'\|deb-systemd-helper enable 'vcpuspreadd.service'" \
        "$tmp/control/postinst" 2>/dev/null || fail "postinst does not enable vcpuspreadd.service"
echo "Depends: $(dpkg-deb -f "$deb" Depends)"

[ $fails = 0 ] && echo "PASS: package builds, lintian has no error, contents and maintainer scripts as expected"
exit $((fails > 0))
