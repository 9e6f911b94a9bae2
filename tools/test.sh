#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The full test suite, exactly as CI runs it (.ci/run is this script with
# CI=1): install missing packages, make the host ready for the integration
# tests, build with warnings as errors into build/ and with address and
# undefined-behaviour sanitizers into build-asan/, run every test in build/
# and the unit tests in build-asan/.  The last line is "N passed, N failed";
# the exit status is non-zero when anything failed or no test ran.
#
# Outside CI, integration tests that cannot run here (not root, no libvirtd)
# are skipped; with CI set they fail.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/tools/usage.sh"
usage_handle_help "$0" "$@"
(( $# == 0 )) || usage_error "takes no arguments (got '$1')"
cd "$root"
builds=(build build-asan)

# Results of an earlier run must not count in this one.
for b in "${builds[@]}"; do rm -f "$b/meson-logs/testlog.json"; done

summarize() {
        local status=$1 passed=0 failed=0 skipped=0 result count b
        local -a logs=()
        for b in "${builds[@]}"; do
                [[ -s $b/meson-logs/testlog.json ]] && logs+=("$b/meson-logs/testlog.json")
        done
        if (( ${#logs[@]} )); then
                while read -r count result; do
                        case $result in
                        OK|EXPECTEDFAIL) passed=$((passed + count)) ;;
                        SKIP) skipped=$((skipped + count)) ;;
                        *) failed=$((failed + count)) ;;     # FAIL TIMEOUT ERROR UNEXPECTEDPASS
                        esac
                done < <(jq -r '.result' "${logs[@]}" | sort | uniq -c)
        fi
        echo "$skipped skipped"
        echo "$passed passed, $failed failed"
        if (( status == 0 && (failed > 0 || passed == 0) )); then status=1; fi
        exit "$status"
}
trap 'summarize $?' EXIT

# meson reconfigures a build directory that exists, with the options given.
setup() {
        local dir=$1; shift
        if [[ -e $dir/meson-private/coredata.dat ]]; then
                meson setup --reconfigure "$dir" "$@"
        else
                meson setup "$dir" "$@"
        fi
}

tools/install-deps.sh
status=0
tests/integration/setup-host.sh || status=$?
# 77: this host cannot run integration tests and CI is unset; they will skip.
(( status == 0 || status == 77 )) || exit "$status"

setup build -Dwerror=true
setup build-asan -Db_sanitize=address,undefined
ninja -C build
ninja -C build-asan

# meson's defaults, spelled out: any sanitizer report fails the test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}

status=0
meson test -C build --print-errorlogs || status=$?
meson test -C build-asan --suite unit --print-errorlogs || status=$?
exit "$status"
