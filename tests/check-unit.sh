#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The systemd unit passes `systemd-analyze verify` without a word, and
# `systemd-analyze security --offline=true` rates its exposure at most 2.5.
# verify insists that ExecStart= names an existing executable, so it checks a
# copy with the daemon replaced by /bin/true; it also runs man(1) for every
# Documentation= page, which is pointed at the pages in the source tree.
#
# Usage: check-unit.sh SOURCE-ROOT [MAX-EXPOSURE]

set -u
src=${1:?usage: check-unit.sh SOURCE-ROOT [MAX-EXPOSURE]}
max=${2:-2.5}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit=$tmp/vcpuspreadd.service
sed 's|^ExecStart=@sbindir@/vcpuspreadd|ExecStart=/bin/true|' "$src/systemd/vcpuspreadd.service.in" >"$unit"
leftover=$(grep -n '@[a-z_]*@' "$unit") && fail "unsubstituted variables: $leftover"

# man pages from the source tree only, in the man/manN layout man(1) wants.
man_opt=--man=yes
missing=""
for page in $(sed -n 's/^Documentation=//p' "$unit"); do
        case "$page" in
        man:*)
                name=${page#man:}; section=${name##*\(}; section=${section%\)}; name=${name%\(*}
                if [ -f "$src/man/$name.$section" ]; then
                        mkdir -p "$tmp/man/man$section"
                        ln -sf "$(realpath "$src/man/$name.$section")" "$tmp/man/man$section/"
                else
                        missing="$missing $name.$section"
                fi ;;
        esac
done
if [ -n "$missing" ]; then
        # Tolerated for a page that man/ does not have (yet).
        echo "note: not in man/:$missing; Documentation= not checked"
        man_opt=--man=no
elif ! command -v man >/dev/null; then
        echo "note: man(1) not installed; Documentation= not checked"
        man_opt=--man=no
fi

if out=$(MANPATH=$tmp/man systemd-analyze verify "$man_opt" "$unit" 2>&1) && [ -z "$out" ]; then
        echo "PASS: systemd-analyze verify: clean"
else
        fail "systemd-analyze verify: ${out:-exit status only}"
fi

report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1)
exposure=$(echo "$report" | sed -n 's/.*Overall exposure level for vcpuspreadd.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
        fail "no exposure figure from systemd-analyze security: $report"
elif awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }'; then
        echo "PASS: exposure $exposure (limit $max)"
else
        echo "$report" | grep -a '✗'
        fail "exposure $exposure is above $max"
fi

exit $((fails > 0))
