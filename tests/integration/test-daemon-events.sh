#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The daemon reacting to events: a guest started while it runs is spread
# within 1 s, a hot-plugged vCPU within 1 s, an operator-pinned guest is
# never touched, a vCPU pinned by hand makes the daemon back off, and guests
# destroyed while it applies do not bring it down.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

daemon_start

note "a guest started while the daemon runs is spread within 1 s"
guest_start fresh 2
wait_until 1000 guest_is_spread fresh || fail "fresh not spread 1 s after start: $(guest_affinities fresh)"

note "a hot-plugged vCPU is placed within 1 s"
guest_start hot 4 1
vsh setvcpus "$(guest_name hot)" 2 --live >/dev/null
wait_until 5000 _guest_has_vcpu_threads hot 2 || fail "hotplug: no second vCPU thread"
wait_until 1000 guest_is_spread hot || fail "hot-plugged vCPU not placed within 1 s: $(guest_affinities hot)"
reason=$(daemon_fields "MESSAGE_ID=$MSGID_VCPU_MOVED" "VCPUSPREAD_DOMAIN=$(guest_name hot)" VCPUSPREAD_VCPU=1 -- VCPUSPREAD_REASON | tail -n1)
assert_eq "$reason" hotplug "reason logged for the hot-plugged vCPU"

note "a guest pinned by the operator in its XML is left alone"
guest_start pinned 2 2 qemu "<cputune><vcpupin vcpu='0' cpuset='0'/><vcpupin vcpu='1' cpuset='0'/></cputune>"
# The back-off entry says the daemon has looked at the guest: wait for it
# (a loaded host may take longer than a fixed pause), then give it a while
# longer in which it must still leave the guest alone.
backed_off() {
        [[ -n $(daemon_fields "MESSAGE_ID=$MSGID_BACKED_OFF" "VCPUSPREAD_DOMAIN=$(guest_name pinned)" -- MESSAGE) ]]
}
wait_until 10000 backed_off || fail "no back-off entry for the operator-pinned guest after 10 s"
sleep 1.5
assert_eq "$(guest_affinities pinned)" "vcpu0=0 vcpu1=0" "operator-pinned guest's affinities"
assert_eq "$(moves_count "$(guest_name pinned)")" 0 "moves of the operator-pinned guest"

note "a vCPU pinned by hand while the daemon runs makes it back off"
wait_until 1000 guest_is_spread fresh || fail "fresh lost its spread"
vsh vcpupin "$(guest_name fresh)" 0 1 >/dev/null
vsh vcpupin "$(guest_name fresh)" 1 1 >/dev/null
fresh_state() {
        "$VST_CTL" status --json --socket "$(daemon_socket)" |
                jq -r --arg n "$(guest_name fresh)" '.guests[] | select(.name == $n) | .state'
}
# Status says operator-pinned once the daemon has seen the pin (its event
# may come late on a loaded host); from then on the pin must stay.
wait_until 10000 eval '[[ $(fresh_state) == operator-pinned ]]' ||
        fail "status of the hand-pinned guest after 10 s: '$(fresh_state)', expected operator-pinned"
sleep 1.5
assert_eq "$(guest_affinities fresh)" "vcpu0=1 vcpu1=1" "hand-pinned guest after 1.5 s"
# A reload re-plans every guest: the hand pin must survive that too.  The
# reload's entry says the re-plan has been asked for; the pause after it
# lets that re-plan run.
reload_cursor=$(journal_cursor)
kill -HUP "$DAEMON_PID"
reloaded() {
        journal_fields ${reload_cursor:+--after-cursor "$reload_cursor"} SYSLOG_IDENTIFIER=vcpuspreadd \
                "MESSAGE_ID=$MSGID_CONFIG" -- MESSAGE | grep '^configuration reloaded' >/dev/null
}
wait_until 10000 reloaded || fail "no 'configuration reloaded' entry 10 s after SIGHUP"
sleep 1
assert_eq "$(guest_affinities fresh)" "vcpu0=1 vcpu1=1" "hand-pinned guest after a reload"
assert_eq "$(fresh_state)" operator-pinned "status of the hand-pinned guest after a reload"

note "guests destroyed while being placed do not crash the daemon"
for i in 1 2 3 4 5; do
        guest_start "churn$i" 2
        vsh destroy "$(guest_name "churn$i")" >/dev/null 2>&1 || true
done
sleep 1
daemon_alive || fail "daemon died during guest churn: $(cat "$VST_TMPDIR/daemon.out")"
guest_start after-churn 2
wait_until 1000 guest_is_spread after-churn || fail "after churn, a new guest is not spread within 1 s"
listed_names() { "$VST_CTL" status --json --socket "$(daemon_socket)" | jq -r '[.guests[].name] | join(",")'; }
# Each destroyed guest leaves the status when its stop event is handled,
# which a loaded host may deliver late.
wait_until 10000 eval '[[ ! $(listed_names) =~ churn[0-9] ]]' ||
        fail "destroyed guests still listed after 10 s: $(listed_names)"
daemon_stop
note "ok"
