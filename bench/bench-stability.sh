#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Does the daemon converge under steady load?  Starts GUESTS (default 3)
# 2-vCPU TCG guests whose boot sector spins one vCPU forever ("cli; jmp $";
# the other vCPU halts), runs vcpuspreadd for SECONDS (default 60) and counts
# the moves it makes in the first 10 s and after.  The target: zero
# moves after the first 10 s.
# Usage: bench/bench-stability.sh [GUESTS] [SECONDS]   (root; build/ built)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/bench-env.sh" bench-stability "$@"

n=${1:-3}
seconds=${2:-60}
_env_tmpdir
disk=$VST_TMPDIR/spin.img
# A boot sector that disables interrupts and jumps to itself.
{ printf '\xfa\xeb\xfe'; head -c 507 /dev/zero; printf '\x55\xaa'; } > "$disk"
chmod 644 "$disk"
chmod 755 "$VST_TMPDIR"   # QEMU runs as libvirt-qemu and must reach the disk

spin_start() {
        local name=$1 xml file img=$VST_TMPDIR/$1.img
        cp "$disk" "$img"     # QEMU locks a writable disk: one copy per guest
        xml=$(guest_xml "$name" 2)
        # SeaBIOS boots the disk: vCPU 0 spins, vCPU 1 waits for a SIPI that never comes.
        local disk_xml="<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$img'/><target dev='hda' bus='ide'/></disk>"
        xml=${xml/<devices>/"<devices>$disk_xml"}
        file=$VST_TMPDIR/$name.xml
        printf '%s\n' "$xml" > "$file"
        VST_GUESTS+=("$VST_PREFIX$name")
        vsh create "$file" >/dev/null || fail "cannot start $name"
}

daemon_start
for ((i = 0; i < n; i++)); do
        spin_start "spin$i"
done
t0=$(date +%s)
note "running $n spinning guests under vcpuspreadd for $seconds s"
cursor10=
sleep 10
cursor10=$(journal_cursor)
sleep $(( seconds > 10 ? seconds - 10 : 0 ))

first=$(moves_count)
after=$(journal_fields --after-cursor "$cursor10" SYSLOG_IDENTIFIER=vcpuspreadd "MESSAGE_ID=$MSGID_VCPU_MOVED" -- MESSAGE | grep -c . || true)
loads=$("$VST_CTL" status --json --socket "$(daemon_socket)" |
        jq -r '[.guests[] | select(.managed) | .vcpus[] | "\(.cpus):\(.load*100|floor)%"] | join(" ")')
printf '\nvcpuspreadd stability, %s, kernel %s, %d CPUs: %d guests x 2 vCPUs (one spinning each), %d s\n' \
        "$(date -u +%F)" "$(uname -r)" "$(nproc)" "$n" "$seconds"
printf 'moves in total: %d; after the first 10 s: %d\n' "$first" "$after"
printf 'final placement (cpus:load): %s\n' "$loads"
daemon_fields "MESSAGE_ID=$MSGID_VCPU_MOVED" -- MESSAGE | sed 's/^/  /'
daemon_stop
