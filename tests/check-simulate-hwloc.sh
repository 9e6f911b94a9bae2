#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vcpuspreadctl simulate --topology FILE.xml` on every hwloc test topology
# (tests/data/hwloc-xml/) as a user runs it (issue 12: one of them failed with
# "cannot load hwloc XML topology ...: Invalid argument"): as many 2-vCPU
# guests as the usable CPUs hold and one with more vCPUs than CPUs.  simulate
# must exit 0 with its anti-affinity check passed, and the pairs' masks must
# be disjoint when counted here from the JSON.
#
# Usage: check-simulate-hwloc.sh FILE.xml...     (BUILD_ROOT set)
set -euo pipefail
ctl=${BUILD_ROOT:?}/daemon/vcpuspreadctl
(( $# > 0 )) || { echo "FAIL: no topology given"; exit 1; }
expand='def expand: split(",") | map(if contains("-") then (split("-") | map(tonumber)) as [$a, $b] | range($a; $b + 1) else tonumber end);'
fails=0
for xml in "$@"; do
        name=${xml##*/}
        if ! json=$("$ctl" simulate --topology "$xml" --domains probe:1 --json 2>&1); then
                echo "FAIL: $name: $json"; fails=$((fails + 1)); continue
        fi
        usable=$(jq '[.cpus[] | select(.usable)] | length' <<< "$json")
        domains=$(for ((i = 0; i < usable / 2; i++)); do printf 'pair%d:2@0.25,' "$i"; done)
        domains+="big:$((usable + 1))@0.25"
        status=0
        json=$("$ctl" simulate --topology "$xml" --domains "$domains" --json) || status=$?
        aa=$(jq -r '.checks.anti_affinity' <<< "$json")
        apart=$(jq "$expand"' [.guests[] | select(.name | startswith("pair")) | [.vcpus[].cpus | expand] | flatten | (length == (unique | length))] | all' <<< "$json")
        if [[ $status == 0 && $aa == true && $apart == true ]]; then
                echo "ok   $name: $usable usable CPUs, $((usable / 2 + 1)) guests, anti-affinity $aa"
        else
                echo "FAIL: $name: exit $status, anti_affinity $aa, pairs disjoint $apart: $(jq -c .checks <<< "$json")"
                fails=$((fails + 1))
        fi
done
echo "$# topologies, $fails failed"
exit $((fails > 0))
