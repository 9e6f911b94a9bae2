#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Policy=auto against real guests.  No-OS TCG guests: their vCPUs idle, so
# they stay in kernel mode: the daemon leaves them their full set, moves
# nothing, and logs nothing about them but that it manages them.  A guest
# whose vCPU the daemon (or anyone) confined before is released to its full
# set once.  A guest configured Policy=spread beside them still gets
# disjoint sets.  Status shows each auto guest's mode and why.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

guest_start idle1 2
guest_start idle2 2
guest_start confined 2
guest_start spread 2

online=$(cpus_online)
[[ $online != 0 ]] || skip_or_fail "one online CPU: nothing to spread or confine"
note "confine one vCPU of the 'confined' guest by hand, as a previous daemon run would have"
first_cpu=$(cpulist_expand "$online" | awk "{print \$1}")
taskset -pc "$first_cpu" "$(guest_vcpu_tid confined 0)" >/dev/null

# A short window so that the test sees one pass of the judgement.
DAEMON_EXTRA_DAEMON_KEYS="AutoWindowSec=3s" daemon_write_config "[Domain]
Name=$(guest_name idle)*
Policy=auto

[Domain]
Name=$(guest_name confined)
Policy=auto"
daemon_start

note "the Policy=spread guest gets disjoint sets"
wait_until 3000 guest_is_spread spread || fail "spread guest not spread: $(guest_affinities spread)"

note "the confined auto guest is released to its full set"
wait_until 3000 eval '[[ $(guest_affinities confined) == "vcpu0='"$online"' vcpu1='"$online"'" ]]' ||
        fail "confined guest not released: $(guest_affinities confined)"

note "two windows later the idle guests are still in kernel mode with their full set"
sleep 8
for g in idle1 idle2 confined; do
        assert_eq "$(guest_affinities $g)" "vcpu0=$online vcpu1=$online" "affinities of $g"
        mode=$("$VST_CTL" status --json --socket "$(daemon_socket)" |
                jq -r --arg n "$(guest_name $g)" '.guests[] | select(.name == $n) | "\(.policy) \(.auto.mode) \(.auto.reason)"')
        assert_eq "$mode" "auto kernel initial" "status of $g"
done
"$VST_CTL" status --socket "$(daemon_socket)" | grep "^  mode kernel (initial)" >/dev/null ||
        fail "status text shows no mode: $("$VST_CTL" status --socket "$(daemon_socket)")"

note "an idle guest is not ticked, so no switch rate is known for it: null in status, not 0"
rates=$("$VST_CTL" status --json --socket "$(daemon_socket)" |
        jq -r --arg n "$(guest_name idle1)" '.guests[] | select(.name == $n) |
                .auto.last_interval | "\(has("voluntary_hz")) \(.voluntary_hz) \(.involuntary_hz) \(.busy != null)"')
assert_eq "$rates" "true null null true" "idle1's last interval: voluntary, involuntary, busy known"

note "the idle guests: no move, no mode change; logged only that they are managed"
for g in idle1 idle2; do
        assert_eq "$(moves_count "$(guest_name $g)")" 0 "moves of $g"
        ids=$(daemon_fields "VCPUSPREAD_DOMAIN=$(guest_name $g)" -- MESSAGE_ID | sort -u | tr '\n' ' ')
        for id in $ids; do
                [[ $id == "$MSGID_DOMAIN_FOUND" || $id == "$MSGID_PLACED_LATENCY" ]] ||
                        fail "$g: unexpected journal entry $id: $(daemon_fields "VCPUSPREAD_DOMAIN=$(guest_name $g)" -- MESSAGE)"
        done
        [[ $ids == *"$MSGID_DOMAIN_FOUND"* ]] || fail "$g: no 'managing it' entry"
done
for id in $MSGID_AUTO_MODE $MSGID_AUTO_TRIAL_KEPT $MSGID_AUTO_TRIAL_REVERTED $MSGID_AUTO_RELEASED; do
        n=$(daemon_fields "MESSAGE_ID=$id" -- MESSAGE | grep -c . || true)
        assert_eq "$n" 0 "Policy=auto entries with id $id"
done

note "the confined guest's release is one move per vCPU, reason release"
reasons=$(daemon_fields "MESSAGE_ID=$MSGID_VCPU_MOVED" "VCPUSPREAD_DOMAIN=$(guest_name confined)" -- VCPUSPREAD_REASON |
        sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')
assert_eq "$reasons" "release=1 " "moves of the confined guest"
daemon_stop
note "ok"
