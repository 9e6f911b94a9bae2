#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# docs/ARCHITECTURE.md has one line for every file of lib/ and daemon/
# (issue 14 asked for it, and by then eleven files had none: Policy=auto's
# engine, signals and co-scheduler among them).  A file counts as listed
# when its name appears in backquotes in a table row.  A row that names a
# file that no longer exists fails too.
#
# Usage: check-architecture.sh SOURCE-ROOT
set -euo pipefail
src=${1:?usage: check-architecture.sh SOURCE-ROOT}
doc=$src/docs/ARCHITECTURE.md
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

[[ -r $doc ]] || { echo "FAIL: cannot read $doc"; exit 1; }
rows=$(grep '^| `' "$doc")
n=0
for f in "$src"/lib/*.[ch] "$src"/daemon/*.[ch]; do
        n=$((n + 1))
        b=${f##*/}
        grep -F "\`$b\`" <<< "$rows" >/dev/null || fail "${f#"$src"/} has no line in docs/ARCHITECTURE.md's file tables"
done
(( n > 0 )) || fail "no source file found under $src/lib or $src/daemon"
# Names in the lib/ and daemon/ tables that are not files (renamed, removed).
for section in lib daemon; do
        while read -r name; do
                [[ -e $src/$section/$name ]] || fail "docs/ARCHITECTURE.md lists $section/$name, which does not exist"
        done < <(awk -v s="### $section/" 'index($0, s) == 1 { on = 1; next } /^### / { on = 0 }
                        on && /^\| `/ { print }' "$doc" |
                 sed 's/^| \([^|]*\)|.*/\1/' | grep -o '`[^`]*\.[ch]`' | tr -d '`')
done
echo "checked $n files against docs/ARCHITECTURE.md: $fails failed"
(( fails == 0 ))
