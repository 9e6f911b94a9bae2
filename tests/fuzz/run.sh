#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run the libFuzzer harnesses of a -Dfuzzing=true build over their seed
# corpora, for a fixed number of executions (CI) or a time (longer runs).
# New inputs go to a scratch directory, never into the committed corpus;
# crashes are written to ARTIFACTS (default: BUILD/fuzz-artifacts) and fail
# the run.  Prints one line per harness: "NAME: N runs in S s".
#
# Usage: tests/fuzz/run.sh BUILD-DIR [--runs N | --seconds S] [HARNESS...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: run.sh BUILD-DIR [--runs N | --seconds S] [HARNESS...]}; shift
limit=(-runs=20000)
case ${1:-} in
--runs) limit=(-runs="$2"); shift 2 ;;
--seconds) limit=(-max_total_time="$2"); shift 2 ;;
esac
harnesses=("$@")
(( ${#harnesses[@]} )) || harnesses=(fuzz-cpulist fuzz-config fuzz-status-file fuzz-domain-xml fuzz-control)
artifacts=${ARTIFACTS:-$build/fuzz-artifacts}
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
# The status-file harness writes a file per input: memory, not disk.
[[ -d /dev/shm && -w /dev/shm ]] && export TMPDIR=${FUZZ_TMPDIR:-/dev/shm}
status=0
for h in "${harnesses[@]}"; do
        exe=$build/tests/fuzz/$h
        [[ -x $exe ]] || { echo "$h: not built in $build (meson setup with CC=clang -Dfuzzing=true)"; status=1; continue; }
        mkdir -p "$scratch/$h"
        log=$scratch/$h.log
        if "$exe" "${limit[@]}" -max_len=8192 -timeout=10 -artifact_prefix="$artifacts/$h-" \
                "$scratch/$h" "$here/corpus/${h#fuzz-}" > "$log" 2>&1; then
                echo "$h: $(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -1)"
        else
                echo "$h: FAILED"; tail -40 "$log"; status=1
        fi
done
exit "$status"
