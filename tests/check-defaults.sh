#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The built-in defaults live once, in lib/defaults.h.  Fail when the shipped
# conf/vcpuspreadd.conf, a man page or the journal catalog states another
# default for a key, or names a [Daemon] key the table does not have.
# Usage: check-defaults.sh SOURCE_ROOT
set -uo pipefail
src=${1:?SOURCE_ROOT}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

declare -A table=()
while IFS=$'\t' read -r key value; do
        table[$key]=$value
done < <(sed -nE 's|^#define DEFAULT_[A-Z_]+ +"([^"]*)" +/\* ([A-Za-z]+)= \*/$|\2\t\1|p' "$src/lib/defaults.h")
(( ${#table[@]} >= 10 )) || { echo "FAIL: read only ${#table[@]} keys from lib/defaults.h"; exit 1; }

# conf/vcpuspreadd.conf: every [Daemon] key, commented out at its default.
conf=$src/conf/vcpuspreadd.conf
declare -A in_conf=()
while IFS=$'\t' read -r key value; do
        in_conf[$key]=1
        [[ -v table[$key] ]] || { fail "$conf: #$key=: no such key in lib/defaults.h"; continue; }
        [[ $value == "${table[$key]}" ]] ||
                fail "$conf: #$key=$value, but the built-in default is '${table[$key]}'"
done < <(awk '/^#?\[/ { daemon = ($0 == "[Daemon]") } daemon && /^#[A-Za-z]+=/ {
        sub(/^#/, ""); i = index($0, "="); printf "%s\t%s\n", substr($0, 1, i - 1), substr($0, i + 1) }' "$conf")
for key in "${!table[@]}"; do
        [[ -v in_conf[$key] ]] || fail "$conf: [Daemon] does not show #$key=${table[$key]}"
done

# man/vcpuspreadd.conf.5: ".BI Key= ..." then "Default:" and the value on the
# next line (".BR value ." or ".IR value ."), or "Default: empty".
man=$src/man/vcpuspreadd.conf.5
declare -A in_man=()
while IFS=$'\t' read -r key value; do
        [[ -v table[$key] ]] || continue        # a [Domain] key
        in_man[$key]=1
        [[ $value == "${table[$key]}" ]] ||
                fail "$man: $key= says 'Default: $value', but the built-in default is '${table[$key]}'"
done < <(awk '
        /^\.BI [A-Za-z]+= / { key = $2; sub(/=$/, "", key); want = 0; next }
        key != "" && /^Default: empty/ { printf "%s\t\n", key; key = ""; next }
        key != "" && /^Default:$/ { want = 1; next }
        want { v = $2; printf "%s\t%s\n", key, v; want = 0; key = "" }' "$man")
for key in "${!table[@]}"; do
        [[ -v in_man[$key] ]] || fail "$man: no 'Default:' found for $key="
done

# The options that fall back to a key's default.
check_option_default() {        # FILE OPTION KEY
        local got
        got=$(awk -v opt="$2" 'index($0, opt) { found = 1 } found && /^Default:$/ { getline; print $2; exit }' "$1")
        [[ $got == "${table[$3]}" ]] || fail "$1: $2 says its default is '$got', the built-in $3= is '${table[$3]}'"
}
check_option_default "$src/man/vcpuspreadd.8" '\-\-connect' Connect
check_option_default "$src/man/vcpuspreadctl.8" '\-\-socket' ControlSocket

# The journal catalog names the default URI.
catalog=$src/systemd/vcpuspreadd.catalog
got=$(sed -n 's/.*(\([^ ]*\) unless Connect= .*/\1/p' "$catalog")
[[ $got == "${table[Connect]}" ]] || fail "$catalog: says the default URI is '$got', the built-in Connect= is '${table[Connect]}'"

(( fails == 0 )) && echo "ok: ${#table[@]} defaults agree with conf/vcpuspreadd.conf, the man pages and the catalog"
exit $((fails > 0))
