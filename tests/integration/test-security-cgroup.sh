#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A vCPU whose thread sits in a cgroup it shares: the daemon leaves that
# cgroup alone and sets the thread's affinity only, saying so once.  To get
# there the test moves a real guest's vCPU 0 thread into its parent cgroup
# (the guest's own cgroup, above emulator/ and vcpuN/: where a vCPU would be
# had libvirt not made it a cgroup of its own) by writing its TID to the
# parent's tasks (v1) or cgroup.threads (v2) file, and moves it back at the
# end.  Narrowing that cgroup would narrow every QEMU thread of the guest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

guest_start a 2
tid0=$(guest_vcpu_tid a 0)
tid1=$(guest_vcpu_tid a 1)
pid=$(guest_qemu_pid a)

# The thread's own cgroup directory (v1 cpuset, else v2), from /proc/TID/cgroup.
cgroup_dir() {
        local rel mnt
        rel=$(sed -n 's/^[0-9]*:\([^:]*,\)\?cpuset\(,[^:]*\)\?:\(.*\)/\3/p' "/proc/$1/cgroup")
        if [[ -n $rel ]]; then
                mnt=$(_cgroup_mount cgroup cpuset)
        else
                rel=$(sed -n 's/^0::\(.*\)/\1/p' "/proc/$1/cgroup")
                mnt=$(_cgroup_mount cgroup2)
        fi
        printf '%s\n' "$mnt$rel"
}
# The file listing a cgroup's threads: v1 tasks, v2 cgroup.threads.
threads=tasks
grep -q '^[0-9]*:[^:]*cpuset' "/proc/$tid0/cgroup" || threads=cgroup.threads
own=$(cgroup_dir "$tid0")
parent=${own%/*}
[[ ${own##*/} == vcpu0 ]] || fail "vcpu0's cgroup is not libvirt's vcpu0 but $own"
move_back() { echo "$tid0" > "$own/$threads" 2>/dev/null || true; }
env_on_exit move_back
echo "$tid0" > "$parent/$threads" || fail "cannot move tid $tid0 into $parent"
assert_eq "$(cgroup_dir "$tid0")" "$parent" "vcpu0's cgroup after the move"
parent_before=$(cat "$parent/cpuset.cpus")
emulator_before=$(cat "$parent/emulator/cpuset.cpus" 2>/dev/null || echo none)
main_aff_before=$(affinity_of "$pid")
note "vcpu0 (tid $tid0) now in $parent (cpuset.cpus $parent_before) with the guest's other cgroups below it"

daemon_start
placed() {
        local a0 a1
        a0=$(affinity_of "$tid0") a1=$(affinity_of "$tid1")
        [[ $a0 != "$(cpus_online)" && $a1 != "$(cpus_online)" ]] || return 1
        ( assert_disjoint "vcpu0=$a0" "vcpu1=$a1" ) 2>/dev/null
}
wait_until 5000 placed || fail "vCPUs not placed: vcpu0 $(affinity_of "$tid0"), vcpu1 $(affinity_of "$tid1")"
sleep 1   # a pass or two more: nothing may touch the shared cgroup later either

assert_eq "$(cat "$parent/cpuset.cpus")" "$parent_before" "the shared cgroup's cpuset.cpus"
assert_eq "$(cat "$parent/emulator/cpuset.cpus" 2>/dev/null || echo none)" "$emulator_before" "emulator cgroup's cpuset.cpus"
assert_eq "$(affinity_of "$pid")" "$main_aff_before" "QEMU main thread's affinity"
assert_eq "$(cpulist_normalize "$(cpuset_of "$tid1")")" "$(cpulist_normalize "$(affinity_of "$tid1")")" \
        "vcpu1 (own cgroup): cgroup and affinity"
note "vcpu0 affinity $(affinity_of "$tid0"), shared cgroup still $parent_before; vcpu1 $(affinity_of "$tid1") in cgroup and affinity"
n=$(daemon_fields "_PID=$DAEMON_PID" -- MESSAGE | grep -c 'setting the affinity only' || true)
assert_eq "$n" 1 "lines saying the affinity alone is set"
daemon_stop
move_back
assert_eq "$(cgroup_dir "$tid0")" "$own" "vcpu0 moved back"
note "ok"
