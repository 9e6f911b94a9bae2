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
"$ctl" simulate --topology 'pu:2' --domains 'a:2' | grep '^  pass anti-affinity' >/dev/null || fail "text output"

# Policy=auto: --guest carries a guest's signals; simulate prints the mode
# adaptive_step() decides over a steady window, and the engine places by it.
json=$("$ctl" simulate --topology pu:2 --json \
        --guest 'spin1:2@0.5,stacked=0.7,vol=5,invol=300,runnable=0.98' \
        --guest 'spin2:2@0.5,stacked=0.8,vol=10' \
        --guest 'hb:2@0.5,stacked=0.8,vol=60' \
        --guest 'idle:2@0.05,wait=0.01,vol=900')
modes=$(jq -r '[.auto[] | "\(.name)=\(.mode)"] | join(" ")' <<< "$json")
[[ $modes == "spin1=cosched spin2=cosched hb=kernel idle=kernel" ]] || fail "auto modes: $modes"
[[ $(jq -r '.auto[0].reason' <<< "$json") == stacked-nonblocking ]] || fail "spin1 reason: $(jq -c '.auto[0]' <<< "$json")"
[[ $(jq -r '.auto[2].reason' <<< "$json") == *"voluntary 60/s > 35/s"* ]] || fail "hb reason: $(jq -c '.auto[2]' <<< "$json")"
[[ $(jq -r '[.guests[] | .auto_mode] | join(",")' <<< "$json") == cosched,cosched,kernel,kernel ]] || fail "plan auto_mode"
# kernel and cosched guests keep the full set.
[[ $(jq -r '[.guests[].vcpus[].cpus] | unique | join(" ")' <<< "$json") == 0-1 ]] ||
        fail "auto guests not on their full set: $(jq -c '[.guests[].vcpus[].cpus]' <<< "$json")"
# A lone spinner has nobody to take turns with: spread, on disjoint CPUs.
json=$("$ctl" simulate --topology pu:2 --json --guest 'lone:2@0.5,stacked=0.9,vol=5' --domains 'web:2@0.2')
[[ $(jq -r '.auto[0].mode' <<< "$json") == spread ]] || fail "lone spinner: $(jq -c .auto <<< "$json")"
[[ $(jq -r '[.guests[] | select(.name == "lone") | .vcpus[].cpus] | sort | join(" ")' <<< "$json") == "0 1" ]] ||
        fail "lone spinner not spread: $(jq -c .guests <<< "$json")"
# The text output names each guest's mode and why.
text=$("$ctl" simulate --topology pu:2 --guest 'a:2@0.5,stacked=0.7,vol=5' --guest 'b:2@0.5,stacked=0.2,vol=5')
grep -q '^  a: mode cosched (stacked-nonblocking' <<< "$text" || fail "text mode line: $text"
grep -q '^  b: mode kernel (not stacked beyond chance' <<< "$text" || fail "text reason line: $text"

# --inputs reads back what --json wrote (the daemon's `plan --json` has the same "inputs"):
# the same plan, key for key.
json=$("$ctl" simulate --topology 'core:4 pu:2' --domains 'a:3@0.4,b:2' --lane-width 1 --json)
again=$("$ctl" simulate --topology 'core:4 pu:2' --inputs - --json <<< "$json")
[[ $(jq -S 'del(.inputs)' <<< "$json") == "$(jq -S 'del(.inputs)' <<< "$again")" ]] || fail "--inputs plans differently"
[[ $(jq -r '.inputs.params.moves_per_interval' <<< "$json") == 4 ]] || fail "MovesPerInterval default is not the daemon's 4"
# The move rules are inputs: two siblings stacked on CPU 0, one moved 1 s ago.
stacked='{"params":{"now_usec":100000000,"lane_width":1},"guests":[{"name":"g","vcpus":[
  {"vcpu":0,"load":0.5,"current":"0"},{"vcpu":1,"load":0.5,"current":"0","last_move_usec":99000000}]}]}'
json=$("$ctl" simulate --topology 'core:4 pu:1' --inputs - --json <<< "$stacked")
[[ $(jq -r '.moves | length' <<< "$json") == 1 && $(jq -r '.moves[0].reason' <<< "$json") == sibling-conflict ]] ||
        fail "dwell held a conflict fix: $(jq -c .moves <<< "$json")"
# vCPU 1 backs off after a refused move: it holds CPU 0 and vCPU 0 makes way.
backoff='{"params":{"now_usec":100000000,"lane_width":1},"guests":[{"name":"g","vcpus":[
  {"vcpu":0,"load":0.5,"current":"0"},{"vcpu":1,"load":0.5,"current":"0","retry_after_usec":100000001}]}]}'
json=$("$ctl" simulate --topology 'core:4 pu:1' --inputs - --json <<< "$backoff")
[[ $(jq -r '.moves | map(.vcpu) | join(",")' <<< "$json") == 0 && $(jq -r '.guests[0].vcpus[1].holding' <<< "$json") == true ]] ||
        fail "back-off: $(jq -c '[.moves, .guests[0].vcpus]' <<< "$json")"

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
bad --inputs /nonexistent.json
bad --inputs /dev/null
bad --inputs /dev/null --domains 'a:2'
bad --guest 'a:2,stacked=2'
bad --guest 'a:2,bogus=1'
bad --guest 'a:2@0.8,wait=0.5'
bad --guest 'a:2' --window 0
bad
echo ok
