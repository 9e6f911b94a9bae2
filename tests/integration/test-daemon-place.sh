#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The daemon against real guests: siblings end up on disjoint CPUs (cgroup
# and affinity), every move is a structured journald entry, a guest with an
# odd name works, no guest is tainted, and a restarted daemon adopts what it
# finds with zero moves.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

odd="odd 'quoted' \"name\" ünïcødé"
guest_start web 2
guest_start "$odd" 2
# <vcpu cpuset='1'>: a restriction the daemon must spread inside, never leave.
guest_start --cpuset 1 narrow 2

note "--dry-run --once changes nothing but logs what it would do"
daemon_write_config
before=$(guest_affinities web)
cursor=$(journal_cursor)
"$VST_DAEMON" --config "$(daemon_conf)" --once --dry-run --log-target console 2> "$VST_TMPDIR/dry.err" ||
        fail "--once --dry-run failed: $(cat "$VST_TMPDIR/dry.err")"
for v in 0 1; do
        grep -q "would move: $(guest_name web) vcpu$v " "$VST_TMPDIR/dry.err" ||
                fail "--dry-run did not say what it would do with vcpu$v: $(cat "$VST_TMPDIR/dry.err")"
done
assert_eq "$(guest_affinities web)" "$before" "affinities after --dry-run"

note "simulate plans from the daemon's own inputs exactly what the daemon plans"
# A dry run applies nothing, so the daemon's plan still has every move to make.
daemon_start --dry-run
reply=$("$VST_CTL" plan --json --socket "$(daemon_socket)")
(( $(jq '.moves | length' <<< "$reply") >= 4 )) || fail "the dry-run daemon plans no moves: $(jq -c .moves <<< "$reply")"
sim=$("$VST_CTL" simulate --inputs - --json <<< "$reply") || fail "simulate --inputs failed on the daemon's plan"
# Targets, engine reasons, the moves in order; the daemon's move reasons are
# refined (new-guest), so they are compared through the guests' vCPUs.
shape='{inputs, guests: [.guests[] | {name, vcpus: [.vcpus[] | {vcpu, cpus, load, reason, deferred, holding}]}],
        moves: [.moves[] | {guest, vcpu, from, to, staging}]}'
assert_eq "$(jq -S "$shape" <<< "$sim")" "$(jq -S "$shape" <<< "$reply")" "simulate --inputs against the daemon's plan"
daemon_stop

note "the running daemon spreads both guests"
daemon_start
wait_until 3000 guest_is_spread web || fail "web not spread: $(guest_affinities web)"
wait_until 3000 guest_is_spread "$odd" || fail "odd-named guest not spread: $(guest_affinities "$odd")"

note "a guest restricted by <vcpu cpuset> stays inside it"
sleep 1
assert_eq "$(guest_affinities narrow)" "vcpu0=1 vcpu1=1" "restricted guest's affinities"
restriction=$("$VST_CTL" status --json --socket "$(daemon_socket)" |
        jq -r --arg n "$(guest_name narrow)" '.guests[] | select(.name == $n) | "\(.state) \(.restriction)"')
assert_eq "$restriction" "managed 1" "status of the restricted guest"

note "each move is one structured journal entry with every field"
uuid=$(guest_uuid web)
mapfile -t rows < <(daemon_fields "MESSAGE_ID=$MSGID_VCPU_MOVED" "VCPUSPREAD_DOMAIN=$(guest_name web)" -- \
        VCPUSPREAD_UUID VCPUSPREAD_VCPU VCPUSPREAD_TID VCPUSPREAD_CPUS_FROM VCPUSPREAD_CPUS_TO VCPUSPREAD_REASON MESSAGE)
(( ${#rows[@]} >= 1 )) || fail "no move entries for web in the journal"
for row in "${rows[@]}"; do
        IFS=$'\t' read -r u vcpu tid from to reason msg <<< "$row"
        assert_eq "$u" "$uuid" "VCPUSPREAD_UUID"
        assert_eq "$(guest_vcpu_tid web "$vcpu")" "$tid" "VCPUSPREAD_TID of vcpu$vcpu"
        [[ -n $from && -n $to ]] || fail "empty CPUS_FROM/TO in: $row"
        assert_eq "$reason" new-guest "VCPUSPREAD_REASON"
        assert_eq "$msg" "$(guest_name web) vcpu$vcpu (tid $tid): $from -> $to (new-guest)" "MESSAGE"
        assert_eq "$(affinity_of "$tid")" "$to" "vcpu$vcpu affinity vs logged CPUS_TO"
done
# The odd name is logged byte for byte.
n=$(daemon_fields "MESSAGE_ID=$MSGID_VCPU_MOVED" "VCPUSPREAD_DOMAIN=$(guest_name "$odd")" -- VCPUSPREAD_TID | grep -c .) || true
(( n >= 1 )) || fail "no move entry carries the odd domain name exactly"

note "status --json matches the kernel"
json=$("$VST_CTL" status --json --socket "$(daemon_socket)")
while read -r vcpu tid; do
        got=$(jq -r --arg n "$(guest_name web)" --argjson v "$vcpu" \
                '.guests[] | select(.name == $n) | .vcpus[] | select(.vcpu == $v) | "\(.tid) \(.cpus)"' <<< "$json")
        assert_eq "$got" "$tid $(affinity_of "$tid")" "status of web vcpu$vcpu"
done < <(guest_vcpu_map web)
assert_eq "$(jq -r --arg n "$(guest_name web)" '.guests[] | select(.name == $n) | .state' <<< "$json")" managed "web state"

note "plan changes nothing and has nothing to do"
before=$(guest_affinities web)
out=$("$VST_CTL" plan --socket "$(daemon_socket)")
assert_eq "$out" "nothing to change: every managed guest's vCPUs are already apart and balanced" "plan output"
assert_eq "$(guest_affinities web)" "$before" "affinities after plan"

note "map shows the guest on the CPUs"
"$VST_CTL" map --socket "$(daemon_socket)" > "$VST_TMPDIR/map"
grep -q "$(guest_name web):0" "$VST_TMPDIR/map" || fail "map lacks web's vcpu0: $(cat "$VST_TMPDIR/map")"

note "killed and restarted, the daemon adopts the placement: zero moves"
moves_before=$(moves_count)
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
placed=$(guest_affinities web)
daemon_start    # returns once the first resync, the adoption, has been applied
assert_eq "$(moves_count)" 0 "moves after the first resync after restart"
# And the next pass, with sampled loads, leaves it alone too.
daemon_wait_passes $(( $(daemon_status_field passes) + 1 ))
assert_eq "$(moves_count)" 0 "moves after restart and one more pass"
assert_eq "$(guest_affinities web)" "$placed" "web's affinities after restart"
daemon_stop
assert_eq "$(guest_affinities web)" "$placed" "pins left in place after SIGTERM"
(( moves_before >= 4 )) || fail "expected at least 4 moves before the restart, saw $moves_before"

note "nobody is tainted"
for g in web "$odd"; do
        f=$(guest_log_file "$g")
        [[ -r $f ]] || fail "no libvirt log at $f"
        if grep -q tainted "$f"; then fail "guest log $f says: $(grep tainted "$f")"; fi
done
note "ok"
