#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The status directory appears after the daemon started: the daemon watches
# for it, starts watching it when it appears, and a vCPU hot-plugged after
# that is placed within 1 s (only the watch can tell: the periodic resync is
# 30 s away).  Removed and created again: the same once more.
#
# The daemon is pointed at a directory of this test's own
# (VCPUSPREAD_STATUS_DIR), which the test fills with copies of libvirt's
# real status files: libvirt's /run/libvirt/qemu is libvirtd's and stays.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

_env_tmpdir
dir=$VST_TMPDIR/late/qemu
export VCPUSPREAD_STATUS_DIR=$dir
daemon_start
wait_until 10000 eval 'daemon_fields -- MESSAGE | grep "does not exist yet; watching for it to appear" >/dev/null' ||
        fail "the daemon did not say it waits for $dir"

# copy_status NAME: libvirt's status file of guest NAME into the test's
# directory, written elsewhere and renamed in, as libvirt does.
copy_status() {
        local src
        src=/run/libvirt/qemu/$(guest_name "$1").xml
        cp "$src" "$dir/.tmp" && mv "$dir/.tmp" "$dir/$(guest_name "$1").xml"
}

hotplug_placed_within_1s() {
        local name=$1 n=$2
        vsh setvcpus "$(guest_name "$name")" "$n" --live >/dev/null
        wait_until 5000 _guest_has_vcpu_threads "$name" "$n" || fail "hotplug: no vCPU thread $n"
        # libvirt's status file with the new vCPU's thread (the pid libvirt
        # records for it), before it is copied in: a copy without it would
        # tell the daemon nothing.  (Counting "<vcpu id=" lines tells only
        # a guest's first hotplug: from then on the definition in the file
        # lists all its vCPUs, online or not.)
        wait_until 10000 grep -q "<vcpu id='$((n - 1))' pid=" "/run/libvirt/qemu/$(guest_name "$name").xml" ||
                fail "libvirt's status file of $name has no thread for vCPU $((n - 1)) 10 s after the hotplug"
        copy_status "$name"
        wait_until 1000 guest_is_spread "$name" ||
                fail "hot-plugged vCPU $n of $name not placed within 1 s of its status file: $(guest_affinities "$name")"
}

note "the directory appears"
mkdir -p "$dir"
wait_until 10000 eval 'daemon_fields -- MESSAGE | grep "is there now; watching it" >/dev/null' ||
        fail "the daemon did not notice $dir appear"
guest_start hot 4 1
copy_status hot
hotplug_placed_within_1s hot 2

note "the directory goes and comes back"
rm -rf "$dir"
wait_until 10000 eval 'daemon_fields -- MESSAGE | grep "watching for it to come back" >/dev/null' ||
        fail "the daemon did not notice $dir go"
mkdir -p "$dir"
wait_until 10000 eval '[[ $(daemon_fields -- MESSAGE | grep -c "is there now; watching it") -ge 2 ]]' ||
        fail "the daemon did not notice $dir come back"
# Two CPUs here: a second guest, not a third vCPU, to be spread.
guest_start hot2 4 1
copy_status hot2
hotplug_placed_within_1s hot2 2
daemon_stop
note "ok"
