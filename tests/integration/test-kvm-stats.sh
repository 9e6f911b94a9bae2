#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# KVM's per-vCPU counters against a real kvm domain and the real daemon:
#  - with only a TCG guest managed, the daemon makes no statistics call
#    (status: kvm_stats.fetches stays 0 over several fetch periods);
#  - an OS-less kvm domain (its SeaBIOS idles in HLT) gets, per vCPU, a
#    "kvm" object in status --json with rates and KVM's counters, and the
#    metrics file the vcpuspread_vcpu_kvm_* series with the usual labels;
#  - the TCG guest has neither;
#  - the guest is not tainted (no QEMU monitor command was used);
#  - libvirtd stopped (SIGSTOP) for 6 s: status answers, one fetch waits
#    (no second one queued), fetching resumes after SIGCONT, no warning
#    flood;
#  - the kvm guest gone: its series leave the metrics and the fetches stop.
#
# Needs /dev/kvm (here kvm_pvm, shadow paging: guests without an OS start).
# env.sh gives /dev/kvm to group kvm (mode 0660) for QEMU, as udev would,
# and leaves it so for the tests after this one; nothing to restore here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

[[ -c /dev/kvm ]] || skip_or_fail "no /dev/kvm on this machine: kvm guests cannot run (load a kvm module)"
ctl() { "$VST_CTL" "$@" --socket "$(daemon_socket)"; }
status() { ctl status --json; }
prom=$VST_TMPDIR/vcpuspreadd.prom

# 200 ms sampling: a fetch every fifth interval is one a second.
DAEMON_EXTRA_DAEMON_KEYS="SampleIntervalSec=200ms
MetricsFile=$prom"
daemon_write_config "[Domain]
Name=$(guest_name k)*
Policy=auto

[Domain]
Name=$(guest_name t)*
Policy=auto"

guest_start tcg 2
daemon_start

note "only a TCG guest managed: no statistics call in 3 s (three fetch periods)"
daemon_wait_passes 3
sleep 3
fetches=$(status | jq -r '.daemon.kvm_stats.fetches')
assert_eq "$fetches" 0 "statistics fetches with no kvm guest"

guest_start kvm 2 2 kvm
kvm_name=$(guest_name kvm)
tcg_name=$(guest_name tcg)

# kvm_rates_known: both vCPUs of the kvm guest have rates.
kvm_rates_known() {
        [[ $(status | jq --arg n "$kvm_name" \
                '[.guests[] | select(.name == $n) | .vcpus[] | select(.kvm.rates_known == true)] | length') == 2 ]]
}
note "the kvm guest's vCPUs get KVM's rates (two fetches after it is managed)"
wait_until 15000 kvm_rates_known ||
        fail "no KVM rates for $kvm_name after 15 s: $(status | jq -c --arg n "$kvm_name" '.guests[] | select(.name == $n) | .vcpus')"

st=$(status)
note "kvm guest: $(jq -c --arg n "$kvm_name" '.guests[] | select(.name == $n) | [.vcpus[] | {vcpu, kvm}]' <<< "$st")"
(( $(jq '.daemon.kvm_stats.fetches' <<< "$st") >= 2 )) || fail "fewer than 2 fetches: $(jq -c .daemon.kvm_stats <<< "$st")"
assert_eq "$(jq '.daemon.kvm_stats.failures' <<< "$st")" 0 "failed fetches"
# Every figure is there and a number; KVM's counters only grow.
bad=$(jq --arg n "$kvm_name" '[.guests[] | select(.name == $n) | .vcpus[] | .kvm |
        select((.halt_exits_per_s | type) != "number" or (.halt_wait_ratio | type) != "number" or
               (.preemption_reported_per_s | type) != "number" or
               (.directed_yield_attempted_per_s | type) != "number" or
               (.directed_yield_successful_per_s | type) != "number" or (.window_s | type) != "number" or
               .halt_exits_per_s < 0 or .halt_wait_ratio < 0 or .halt_wait_ratio > 1 or
               (.counters.halt_exits | type) != "number" or (.counters.halt_wait_ns | type) != "number")] | length' <<< "$st")
assert_eq "$bad" 0 "kvm objects with a missing or impossible figure"
# An OS-less guest idles in HLT (SeaBIOS found no boot disk; the second
# vCPU, an AP never started, is halted from the start): real KVM figures
# show it halted for most of the window, which made-up ones would not.
halted=$(jq --arg n "$kvm_name" '[.guests[] | select(.name == $n) | .vcpus[] | select(.kvm.halt_wait_ratio > 0.5)] | length' <<< "$st")
(( halted >= 1 )) || fail "no vCPU of the idle kvm guest halted half the window: $(jq -c --arg n "$kvm_name" '.guests[] | select(.name == $n) | [.vcpus[].kvm]' <<< "$st")"

ctl status | grep -Eq "^ +kvm: halt [0-9]+/s \(halted [0-9]+%\)" ||
        fail "status text shows no KVM line: $(ctl status)"

note "the TCG guest's vCPUs have no kvm object"
assert_eq "$(jq --arg n "$tcg_name" '[.guests[] | select(.name == $n) | .vcpus[] | select(has("kvm"))] | length' <<< "$st")" 0 \
        "TCG vCPUs with a kvm object"
assert_eq "$(jq --arg n "$tcg_name" '[.guests[] | select(.name == $n) | .vcpus[]] | length' <<< "$st")" 2 "TCG vCPUs in status"

note "the metrics file has the KVM series for the kvm guest's vCPUs, none for the TCG guest"
kvm_uuid=$(guest_uuid kvm)
_prom_has_kvm() { [[ -f $prom ]] && grep -q "^vcpuspread_vcpu_kvm_halt_exits_total{domain=\"$kvm_name\",uuid=\"$kvm_uuid\",vcpu=\"1\"} " "$prom"; }
wait_until 5000 _prom_has_kvm || fail "no KVM series for $kvm_name in $prom: $(grep _kvm_ "$prom" || true)"
for family in halt_exits_total halt_wait_seconds_total preemption_reported_total \
        directed_yield_attempted_total directed_yield_successful_total; do
        grep -q "^# TYPE vcpuspread_vcpu_kvm_$family counter$" "$prom" || fail "no counter family vcpuspread_vcpu_kvm_$family"
        for vcpu in 0 1; do
                grep -Eq "^vcpuspread_vcpu_kvm_$family\{domain=\"$kvm_name\",uuid=\"$kvm_uuid\",vcpu=\"$vcpu\"\} [0-9.e+]+$" "$prom" ||
                        fail "no vcpuspread_vcpu_kvm_$family for vcpu $vcpu: $(grep "_kvm_$family" "$prom" || true)"
        done
done
! grep "^vcpuspread_vcpu_kvm_" "$prom" | grep -F "domain=\"$tcg_name\"" >/dev/null || fail "KVM series for the TCG guest: $(grep -F "$tcg_name" "$prom" | grep _kvm_)"
# The halted time grows as the guest idles (seconds, a counter).
halt_wait_of() { awk -v k="vcpuspread_vcpu_kvm_halt_wait_seconds_total{domain=\"$kvm_name\",uuid=\"$kvm_uuid\",vcpu=\"1\"}" '$1 == k { print $2 }' "$prom"; }
w1=$(halt_wait_of)
sleep 3
w2=$(halt_wait_of)
awk -v a="$w1" -v b="$w2" 'BEGIN { exit !(b > a) }' || fail "halt wait seconds did not grow in 3 s: $w1 -> $w2"
if command -v promtool >/dev/null; then
        promtool check metrics < "$prom" || fail "promtool rejects $prom"
fi

note "no QEMU monitor command: the guest is not tainted"
! grep -q "tainted" "$(guest_log_file kvm)" || fail "kvm guest tainted: $(grep tainted "$(guest_log_file kvm)")"

note "libvirtd hung (SIGSTOP) for 6 s: status answers throughout, one fetch waits, then fetching resumes"
source "$here/robust.sh"
fetched=$(status | jq '.daemon.kvm_stats.fetches')
libvirtd_stop
read -r max failures _ < <(status_probe_for 6 "$(daemon_socket)")
pending=$(status | jq '.daemon.kvm_stats.pending')
libvirtd_cont
(( failures == 0 && max < 1000 )) || fail "status while libvirtd was stopped: $failures failed, slowest $max ms"
assert_eq "$pending" true "a fetch waiting for the stopped libvirtd"
_fetched_again() { (( $(status | jq '.daemon.kvm_stats.fetches') >= fetched + 2 )); }
wait_until 15000 _fetched_again || fail "fetches did not resume after SIGCONT: $(status | jq -c .daemon.kvm_stats)"
wait_until 15000 kvm_rates_known || fail "no KVM rates 15 s after SIGCONT"
# The hang is libvirt.c's one "unresponsive" warning; the fetch adds none.
kvm_warnings=$(daemon_fields PRIORITY=4 -- MESSAGE | grep -c "KVM" || true)
(( kvm_warnings <= 1 )) || fail "$kvm_warnings warnings about KVM's counters: $(daemon_fields PRIORITY=4 -- MESSAGE)"
daemon_alive || fail "the daemon died"

note "the kvm guest gone: its series leave the metrics, the fetches stop"
guest_destroy kvm
_prom_no_kvm() { ! grep -q "^vcpuspread_vcpu_kvm_" "$prom"; }
wait_until 10000 _prom_no_kvm || fail "KVM series left after the guest stopped: $(grep _kvm_ "$prom")"
# fetches counts answers: one asked before the guest went and answered
# late (libvirtd is busy destroying it) is no new fetch, so count from
# when none is in flight.
wait_until 10000 eval '[[ $(status | jq .daemon.kvm_stats.pending) == false ]]' ||
        fail "a KVM statistics fetch still waits 10 s after the guest stopped: $(status | jq -c .daemon.kvm_stats)"
before=$(status | jq '.daemon.kvm_stats.fetches')
sleep 3
assert_eq "$(status | jq '.daemon.kvm_stats.fetches')" "$before" "fetches after the last kvm guest stopped"
daemon_stop
note "ok"
