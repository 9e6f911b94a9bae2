#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# debian/control and .ci/packages must not drift apart: every package that
# debian/control's Build-Depends, Depends and Recommends name must be one that
# .ci/packages installs, or be provided by one of them (debhelper provides
# debhelper-compat, pkgconf provides pkg-config).  Without this, CI passes on
# a machine that still has a package from before and a fresh machine fails
# in dpkg-checkbuilddeps (issue 12: libinih-dev).
#
# Substitution variables (${misc:Depends}) are filled in by debhelper and not
# checked.  Of alternatives ("a | b") one must be installed.  Version
# constraints and architecture qualifiers are ignored: .ci/packages names no
# versions either.
#
# Usage: check-deps.sh SOURCE-ROOT
set -euo pipefail
src=${1:?usage: check-deps.sh SOURCE-ROOT}
control=$src/debian/control
list=$src/.ci/packages
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
(( ${#packages[@]} > 0 )) || { fail "$list lists no package"; exit 1; }

# What each listed package provides, from dpkg when it is installed, else
# from apt's lists.  One name a line, versions dropped.
provides() {
        { dpkg-query -W -f='${Provides}\n' "$1" 2>/dev/null ||
          apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Provides: //p'; } |
                tr ',' '\n' | sed -e 's/(.*)//' -e 's/:.*//' -e 's/[[:space:]]//g' -e '/^$/d'
}
declare -A installs=()
for p in "${packages[@]}"; do
        installs[$p]="$p"
        while read -r v; do
                [[ " ${installs[$v]:-} " == *" $p "* ]] || installs[$v]+="${installs[$v]:+ }$p"
        done < <(provides "$p")
done

# The value of a control field, continuation lines joined, from every stanza.
field() {
        awk -v want="$1" '
                /^[^ \t#][^:]*:/ { on = (tolower(substr($0, 1, index($0, ":") - 1)) == tolower(want))
                                   if (on) { sub(/^[^:]*:/, ""); printf "%s,", $0 }; next }
                /^[ \t]/ && on   { printf "%s,", $0; next }
                                 { on = 0 }' "$control"
}

checked=0
for f in Build-Depends Build-Depends-Indep Build-Depends-Arch Depends Pre-Depends Recommends; do
        while read -r entry; do
                [[ -z $entry || $entry == *'${'* ]] && continue
                checked=$((checked + 1))
                ok=
                IFS='|' read -ra alts <<< "$entry"
                for alt in "${alts[@]}"; do
                        # "name:any (>= 1) [linux-any] <!nocheck>" -> name
                        name=$(sed -e 's/[[(<].*//' -e 's/:.*//' -e 's/[[:space:]]//g' <<< "$alt")
                        if [[ -n ${installs[$name]:-} ]]; then
                                ok=${installs[$name]}
                                break
                        fi
                done
                if [[ -n $ok ]]; then
                        echo "ok   $f: $entry (.ci/packages: $ok)"
                else
                        fail "$f: $entry is not installed by .ci/packages"
                fi
        done < <(field "$f" | tr ',' '\n' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
done
(( checked > 0 )) || fail "no dependency read from $control"

if (( fails == 0 )); then
        echo "PASS: all $checked dependencies of debian/control are installed by .ci/packages"
fi
exit $((fails > 0))
