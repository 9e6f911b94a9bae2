#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Self-test of env.sh, the harness every integration test stands on: real
# libvirtd, real QEMU guests.  If this passes, a failing daemon test is about
# the daemon, not about its harness.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init

work=$(mktemp -d "${TMPDIR:-/tmp}/vst-test-env-work.XXXXXX")
env_on_exit rm -rf -- "$work"

process_gone() { [[ ! -e /proc/$1 ]]; }
# Other tests restart the shared libvirtd; give it time to answer again.
listed() { wait_until 30000 domain_listed "$1"; }
gone() { wait_until 30000 domain_gone "$1"; }

# Each assertion must be able to fail, or the tests built on it prove nothing.
expect_failure() {
        local what=$1 status; shift
        status=0
        ( "$@" ) 2>"$work/stderr" || status=$?
        [[ $status -ne 0 ]] || fail "$what: '$*' should have failed"
        [[ -s $work/stderr ]] || fail "$what: '$*' failed without saying why"
}

note "pure helpers"
assert_eq "$(cpulist_normalize 3,0-1,2,7,9-10)" "0-3,7,9-10" "cpulist_normalize"
assert_eq "$(cpulist_expand 2-4,0)" "0 2 3 4" "cpulist_expand"
expect_failure "cpulist_expand of a reversed range" cpulist_expand 5-2
expect_failure "assert_eq" assert_eq a b
expect_failure "assert_disjoint" assert_disjoint a=0-1 b=2 c=1
grep -q "CPU 1 is in both a (0-1) and c (1)" "$work/stderr" ||
        fail "assert_disjoint names the CPU and both lists; said: $(<"$work/stderr")"
assert_disjoint 0 1-2 x=3
status=0; (unset CI; skip_or_fail "testing") 2>/dev/null || status=$?
assert_eq "$status" 77 "skip_or_fail outside CI"
status=0; (CI=1 skip_or_fail "testing") 2>/dev/null || status=$?
assert_eq "$status" 1 "skip_or_fail in CI"
_now_ms; t0=$REPLY
if wait_until 200 false; then fail "wait_until false succeeded"; fi
_now_ms; (( REPLY - t0 >= 200 )) || fail "wait_until 200 gave up after $((REPLY - t0)) ms"
assert_ok "wait_until true" wait_until 100 true

note "journald"
token="vst-env-$$-$RANDOM"
cursor=$(journal_cursor)
printf 'MESSAGE=env self-test %s\nVST_TOKEN=%s\nVST_FIELD=a b\tü '"'"'q'"'"'\n' "$token" "$token" | logger --journald
wait_until 5000 eval '[[ -n $(journal_fields ${cursor:+--after-cursor "$cursor"} VST_TOKEN="$token" -- MESSAGE) ]]' ||
        fail "an entry sent with logger --journald did not show up in journalctl"
assert_eq "$(journal_fields ${cursor:+--after-cursor "$cursor"} VST_TOKEN="$token" -- MESSAGE VST_FIELD NO_SUCH_FIELD)" \
        "env self-test $token"$'\t'"a b\\tü 'q'"$'\t' "journal_fields"

note "two guests, one with an awkward name"
odd_name="odd name 'q' \"dq\" ü€∑"
last_cpu=$(cpulist_expand "$(cpus_online)" | awk '{ print $NF }')
guest_start plain 2
guest_start --cpuset "$last_cpu" "$odd_name" 4 2
guest_odd=$(guest_name "$odd_name")
guest_plain=$(guest_name plain)
assert_ok "guest '$guest_odd' listed by virsh under its exact name" listed "$guest_odd"
assert_ok "guest '$guest_plain' listed by virsh" listed "$guest_plain"

pid_plain=$(guest_qemu_pid plain)
pid_odd=$(guest_qemu_pid "$odd_name")
assert_ne "$pid_plain" "$pid_odd" "QEMU pids of the two guests"
for pid in "$pid_plain" "$pid_odd"; do
        comm=$(<"/proc/$pid/comm")
        [[ $comm == qemu-system* ]] || fail "pid $pid is '$comm', not QEMU"
done
# The pid came from the -uuid argument; the -name argument must agree.
tr '\0' '\n' < "/proc/$pid_odd/cmdline" | grep -Fxq -- "guest=$guest_odd,debug-threads=on" ||
        fail "QEMU pid $pid_odd was not started for '$guest_odd'"

mapfile -t tids_plain < <(guest_vcpu_tids plain)
mapfile -t tids_odd < <(guest_vcpu_tids "$odd_name")
assert_eq "${#tids_plain[@]}" 2 "vCPU threads of plain (2 of 2 online)"
assert_eq "${#tids_odd[@]}" 2 "vCPU threads of the odd guest (2 of 4 online)"
all_tids=("${tids_plain[@]}" "${tids_odd[@]}")
assert_eq "$(printf '%s\n' "${all_tids[@]}" | sort -u | wc -l)" 4 "distinct vCPU tids among ${all_tids[*]}"
for i in 0 1; do
        assert_ok "tid ${tids_plain[i]} is a thread of QEMU $pid_plain" test -d "/proc/$pid_plain/task/${tids_plain[i]}"
        assert_ok "tid ${tids_odd[i]} is a thread of QEMU $pid_odd" test -d "/proc/$pid_odd/task/${tids_odd[i]}"
        assert_eq "$(<"/proc/$pid_odd/task/${tids_odd[i]}/comm")" "CPU $i/TCG" "thread name of vCPU $i"
        assert_eq "$(guest_vcpu_tid "$odd_name" "$i")" "${tids_odd[i]}" "guest_vcpu_tid vCPU $i"
done
if guest_vcpu_tid "$odd_name" 3 2>/dev/null; then fail "guest_vcpu_tid found a thread for offline vCPU 3"; fi

# <vcpu cpuset='N'> makes libvirt set both masks; affinity_of and cpuset_of
# must read them back.  The unrestricted guest's masks are just valid lists.
for tid in "${tids_odd[@]}"; do
        assert_eq "$(affinity_of "$tid")" "$last_cpu" "affinity of vCPU tid $tid of a guest with cpuset='$last_cpu'"
        assert_eq "$(cpuset_of "$tid")" "$last_cpu" "cgroup cpuset.cpus of vCPU tid $tid with cpuset='$last_cpu'"
done
for tid in "${tids_plain[@]}"; do
        mask=$(affinity_of "$tid")
        cpulist_expand "$mask" >/dev/null || fail "affinity_of $tid printed '$mask'"
        mask=$(cpuset_of "$tid")
        cpulist_expand "$mask" >/dev/null && [[ -n $mask ]] || fail "cpuset_of $tid printed '$mask'"
done

note "hotplug: the helpers see a vCPU added with setvcpus --live"
vsh setvcpus "$guest_odd" 3 --live
wait_until 5000 eval '[[ $(guest_vcpu_tids "$odd_name" | wc -l) -eq 3 ]]' ||
        fail "3rd vCPU thread did not appear within 5 s: $(guest_vcpu_map "$odd_name" | paste -sd,)"
assert_eq "$(guest_vcpu_map "$odd_name" | cut -d' ' -f1 | paste -sd,)" "0,1,2" "online vCPU indexes after hotplug"

note "guest_destroy"
guest_destroy plain
assert_ok "'$guest_plain' gone after guest_destroy" gone "$guest_plain"
wait_until 5000 process_gone "$pid_plain" || fail "QEMU $pid_plain of '$guest_plain' still runs after guest_destroy"
for n in "${VST_GUESTS[@]}"; do
        [[ $n != "$guest_plain" ]] || fail "guest_destroy left '$n' in the tracking list"
done

note "the exit trap destroys a test's guests: after a failed assertion, after SIGTERM"
child='
set -euo pipefail
source "$VST_ENV_SH"
env_init
guest_start child 1
guest_name child > "$2.name.tmp"
guest_qemu_pid child > "$2.pid"
mv "$2.name.tmp" "$2.name"
case $1 in
fail)   assert_eq 1 2 "deliberate failure" ;;
signal) sleep 60 & echo $! > "$2.sleep"; wait $! ;;
esac
'
export VST_ENV_SH=$here/env.sh
status=0
bash -c "$child" test-env-child fail "$work/fail" 2>"$work/fail.log" || status=$?
assert_eq "$status" 1 "exit status of a child whose assertion failed"
name=$(<"$work/fail.name")
[[ $name == vst-test-env-child-* ]] || fail "child guest name '$name' lacks the child's prefix"
assert_ok "guest '$name' gone after its test's failed assertion" gone "$name"
wait_until 5000 process_gone "$(<"$work/fail.pid")" || fail "QEMU of '$name' survived its test"

for sig in TERM KILL; do
        bash -c "$child" test-env-child signal "$work/$sig" 2>"$work/$sig.log" &
        child_pid=$!
        wait_until 30000 test -s "$work/$sig.sleep" || fail "child did not start its guest: $(<"$work/$sig.log")"
        name=$(<"$work/$sig.name")
        assert_ok "child's guest '$name' runs" listed "$name"
        kill -"$sig" "$child_pid"
        status=0; wait "$child_pid" || status=$?
        kill "$(<"$work/$sig.sleep")" 2>/dev/null || true
        if [[ $sig == TERM ]]; then
                assert_eq "$status" 143 "exit status of a child killed with SIGTERM"
        else
                # No trap runs on SIGKILL: the guest stays until the next
                # env_init reaps it, which must leave live tests' guests alone.
                assert_ok "a SIGKILLed test's guest is still there" listed "$name"
                env_reap_stale_guests
                assert_ok "a live test's guest survives reaping" listed "$guest_odd"
        fi
        assert_ok "guest '$name' gone after SIG$sig of its test" gone "$name"
        wait_until 5000 process_gone "$(<"$work/$sig.pid")" || fail "QEMU of '$name' survived SIG$sig of its test"
done

note "cleanup leaves nothing behind"
tmpdir=$VST_TMPDIR
env_cleanup
left=$(env_prefixed_guests) || fail "libvirt does not answer 'virsh list'"
assert_eq "$left" "" "guests named '$VST_PREFIX*' after cleanup"
assert_ok "'$guest_odd' gone after env_cleanup" gone "$guest_odd"
wait_until 5000 process_gone "$pid_odd" || fail "QEMU $pid_odd survived env_cleanup"
[[ -z $tmpdir || ! -e $tmpdir ]] || fail "temporary directory $tmpdir survived env_cleanup"
[[ ! -e $work ]] || fail "exit hook did not remove $work"
[[ ! -e "/run/libvirt/qemu/$guest_odd.xml" ]] || fail "libvirt status file of '$guest_odd' remains"
note "ok"
