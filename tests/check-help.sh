#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Every program of the project answers --help (exit 0, a description on
# stdout) and refuses an argument it does not take (exit 2, a message on
# stderr) before doing anything: no build, no guest, no apt-get.
# Usage: check-help.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
src=${1:?SOURCE_ROOT} build=${2:?BUILD_ROOT}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

programs=(
        "$build/daemon/vcpuspreadd" "$build/daemon/vcpuspreadctl"
        "$build/bench/bench-plan" "$build/bench/bench-sample"
        "$src/tools/demo.sh" "$src/tools/test.sh" "$src/tools/install-deps.sh"
        "$src/bench/bench-stability.sh" "$src/bench/bench-daemon.sh"
        "$src/bench/effectiveness/run.sh" "$src/.ci/run"
)
# Each refuses this; for the benchmarks it is a malformed count.
declare -A bogus=(
        [bench-plan]=x [bench-sample]=x [bench-stability.sh]=x [bench-daemon.sh]=x
)

for p in "${programs[@]}"; do
        name=$(basename "$p")
        [[ -x $p ]] || { fail "$p is missing or not executable"; continue; }
        out=$(timeout 20 "$p" --help 2>/dev/null); rc=$?
        [[ $rc == 0 ]] || fail "$name --help: exit status $rc, expected 0"
        (( $(printf '%s\n' "$out" | wc -l) >= 2 )) || fail "$name --help printed no description: '$out'"

        arg=${bogus[$name]:---no-such-option}
        err=$(timeout 20 "$p" "$arg" 2>&1 >/dev/null); rc=$?
        [[ $rc == 2 ]] || fail "$name $arg: exit status $rc, expected 2 (usage error)"
        [[ -n $err ]] || fail "$name $arg: no message on stderr"
        [[ $fails == 0 ]] && echo "ok: $name"
done
exit $((fails > 0))
