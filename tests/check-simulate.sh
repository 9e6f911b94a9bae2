#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vcpuspreadctl simulate as a user sees it: the JSON shape plan-json.c writes,
# the checks, and a one-line error with exit status 2 for every bad argument.
set -euo pipefail
ctl=${BUILD_ROOT:?}/daemon/vcpuspreadctl
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

json=$("$ctl" simulate --topology 'pack:2 numa:2 l3:2 core:8 pu:2' --domains 'web1:4,web2:4,db:8@0.9' --json)
[[ $(jq -r '.guests | map(.name) | join(",")' <<< "$json") == web1,web2,db ]] || fail "guest names: $json"
[[ $(jq -r '.guests[2].vcpus[0].load' <<< "$json") == 0.9 ]] || fail "db load"
[[ $(jq -r '.guests[0].policy' <<< "$json") == spread ]] || fail "policy"
[[ $(jq -r '.cpus | length' <<< "$json") == 128 ]] || fail "cpus"
[[ $(jq -r '.cpus[0] | has("cpu") and has("core") and has("numa") and has("load")' <<< "$json") == true ]] || fail "cpu keys"
[[ $(jq -r '.checks | [.anti_affinity, .smt, .locality, .balance] | all' <<< "$json") == true ]] || fail "checks: $(jq -c .checks <<< "$json")"
# Every guest's vCPU masks are pairwise disjoint cpulists.
expand='def expand: split(",") | map(if contains("-") then (split("-") | map(tonumber)) as [$a, $b] | range($a; $b + 1) else tonumber end);'
jq -e "$expand"' [.guests[] | [.vcpus[].cpus | expand] | flatten | (length == (unique | length))] | all' <<< "$json" >/dev/null ||
        fail "a guest's vCPUs share a CPU: $(jq -c '[.guests[] | [.vcpus[].cpus]]' <<< "$json")"
# spread-cores on SMT: no two siblings on one core.
json=$("$ctl" simulate --topology 'core:4 pu:2' --domains 'a:4' --policy spread-cores --json)
# core:4 pu:2 numbers SMT siblings 2k and 2k+1: four vCPUs on four distinct cores.
cores=$(jq -r "$expand"' [.guests[0].vcpus[].cpus | expand | map(. / 2 | floor) | unique] | flatten | length' <<< "$json")
[[ $cores == 4 ]] || fail "spread-cores used $cores distinct cores: $(jq -c '[.guests[0].vcpus[].cpus]' <<< "$json")"
[[ $(jq -r '.checks.smt' <<< "$json") == true ]] || fail "smt check"
# Text output has pass lines.
"$ctl" simulate --topology 'pu:2' --domains 'a:2' | grep -q '^  pass anti-affinity' || fail "text output"

bad() {
        local status=0 err
        err=$("$ctl" simulate "$@" 2>&1 >/dev/null) || status=$?
        [[ $status == 2 ]] || fail "'$*' exited $status, expected 2"
        [[ $(wc -l <<< "$err") == 1 && $err == vcpuspreadctl:* ]] || fail "'$*' said: $err"
}
bad --domains 'web1:0'
bad --domains 'web1:x'
bad --domains 'web1:2@1.5'
bad --domains ':2'
bad --domains ''
bad --domains 'a:2' --topology 'pack:2 banana:3'
bad --domains 'a:2' --topology /nonexistent.xml
bad --domains 'a:2' --reserved 5-2
bad --domains 'a:2' --topology pu:2 --reserved 0-1
bad --domains 'a:2' --policy sideways
bad --domains 'a:2' --lane-width 0
bad
echo ok
