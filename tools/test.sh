#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The full test suite, exactly as CI runs it (.ci/run is this script with
# CI=1): install missing packages, make the host ready for the integration
# tests, build with warnings as errors into build/ and with address and
# undefined-behaviour sanitizers into build-asan/, run every test in build/,
# the unit, fuzz-corpus and integration tests in build-asan/, a subset of
# the integration tests with the daemon under valgrind, and the libFuzzer
# harnesses (build-fuzz/, clang) for a fixed number of executions.  The last
# line is "N passed, N failed";
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
for b in "${builds[@]}"; do rm -f "$b"/meson-logs/{testlog,integration,valgrind}.json; done

summarize() {
        local status=$1 passed=0 failed=0 skipped=0 result count b
        local -a logs=()
        for b in "${builds[@]}"; do
                for l in testlog integration valgrind; do
                        [[ -s $b/meson-logs/$l.json ]] && logs+=("$b/meson-logs/$l.json")
                done
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
        # CI shows only the end of the output: name every failed test here,
        # with the end of what it printed, so that a failure can be read off
        # the last lines (the full logs are in each build's meson-logs/).
        if (( failed > 0 )); then
                echo "failed tests, with the last lines each printed:"
                jq -r 'select(.result != "OK" and .result != "EXPECTEDFAIL" and .result != "SKIP")
                        | "=== \(input_filename | sub("/meson-logs/.*"; "")): \(.name): \(.result) after \(.duration | floor) s (exit \(.returncode))",
                          (((.stdout // "") + (.stderr // "") | split("\n")) as $l
                           | ([$l[] | select(test("^not ok|FAIL"))] | .[:10]) + ["  ..."] + $l[-25:]
                           | map("  | " + .) | join("\n"))' \
                        "${logs[@]}"
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
meson test -C build-asan --suite unit --suite fuzz --print-errorlogs || status=$?

# The integration tests once more with the ASan/UBSan daemon of build-asan
# (a sanitizer report aborts it; a test that stops it checks its exit status).
meson test -C build-asan --suite integration --logbase integration --print-errorlogs || status=$?

# A subset under valgrind memcheck (the whole set takes too long there, and
# older tests hold the daemon to latencies valgrind cannot meet): the
# control-socket flood, placement with odd names, the shared cgroup and the
# -uuid decoy.  Its results: build/meson-logs/valgrind.json, logs in build/valgrind-logs.
valgrind_tests=(test-security-flood test-security-names test-security-cgroup test-security-decoy)
vlogs=build/valgrind-logs
rm -rf "$vlogs"; mkdir -p "$vlogs"
VST_DAEMON=$root/tests/integration/valgrind-daemon.sh VALGRIND_DAEMON=$root/build/daemon/vcpuspreadd \
        VALGRIND_LOG_DIR=$root/$vlogs meson test -C build --print-errorlogs --logbase valgrind \
        --timeout-multiplier 3 "${valgrind_tests[@]}" || status=$?
bad=$(grep -lE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$vlogs"/*.log 2>/dev/null || true)
if [[ -n $bad ]]; then
        echo "valgrind found errors or leaks definitely lost:"; cat $bad; status=1
fi
echo "valgrind: $(ls "$vlogs" | wc -l) daemon runs checked, ${bad:+not }clean"

# Fuzzing: each harness for a fixed number of executions (clang, libFuzzer).
fuzz_cc=$(command -v clang || command -v clang-14 || true)
if [[ -n $fuzz_cc ]]; then
        CC=$fuzz_cc setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
        ninja -C build-fuzz tests/fuzz/fuzz-cpulist tests/fuzz/fuzz-config tests/fuzz/fuzz-status-file \
                tests/fuzz/fuzz-domain-xml tests/fuzz/fuzz-control
        tests/fuzz/run.sh build-fuzz --runs 20000 || status=$?
else
        echo "clang not installed: fuzzers not run"; [[ -n ${CI:-} ]] && status=1
fi
exit "$status"
