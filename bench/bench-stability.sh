#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Does the daemon converge under steady load?  Starts GUESTS (default 3)
# 2-vCPU TCG guests, runs vcpuspreadd for SECONDS (default 90) and counts
# the vCPU moves and the Policy=auto mode changes it makes in the first
# SETTLE seconds of load (from the moment every vCPU is busy: the guests
# boot first) and after.  The target: none of either after SETTLE (30 s).
# Usage: bench/bench-stability.sh [GUESTS] [SECONDS]   (root; build/ built)
#
# Environment:
#   POLICY    the guests' policy (default auto, the daemon's default; or
#             spread, spread-cores)
#   WORKLOAD  bootspin (default): a boot sector spins vCPU 0 forever
#             ("cli; jmp $"), vCPU 1 halts: one busy vCPU per guest;
#             spin, spin-pause, spin-ticket, hackbench, futex: the effectiveness
#             benchmark's guest image (bench/effectiveness/run.sh builds it
#             into bench/out/effectiveness/image) running that workload on
#             both vCPUs for the whole run
#   SETTLE    seconds of load that do not count (default 30)
#   DAEMON_ARGS  extra daemon options, e.g. --verbose (its debug messages)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/bench-env.sh" bench-stability "$@"

n=${1:-3}
seconds=${2:-90}
policy=${POLICY:-auto}
workload=${WORKLOAD:-bootspin}
settle=${SETTLE:-30}
image=${BENCH_IMAGE:-$here/out/effectiveness/image}
case $policy in auto|spread|spread-cores) ;; *) fail "POLICY=$policy: not auto, spread or spread-cores" ;; esac
case $workload in
bootspin) ;;
spin|spin-pause|spin-ticket|hackbench|futex)
        [[ -r $image/vmlinuz && -r $image/initrd.img ]] ||
                fail "WORKLOAD=$workload needs the guest image in $image: run bench/effectiveness/run.sh once (it builds it)" ;;
*) fail "WORKLOAD=$workload: not bootspin, spin, spin-pause, spin-ticket, hackbench or futex" ;;
esac
[[ $settle =~ ^[0-9]+$ ]] && (( settle < seconds )) || fail "SETTLE=$settle: a whole number of seconds below SECONDS ($seconds)"

_env_tmpdir
chmod 755 "$VST_TMPDIR"   # QEMU runs as libvirt-qemu and must reach its files

bootspin_start() {
        local name=$1 xml file img=$VST_TMPDIR/$1.img
        # A boot sector that disables interrupts and jumps to itself; one
        # copy per guest (QEMU locks a writable disk).
        { printf '\xfa\xeb\xfe'; head -c 507 /dev/zero; printf '\x55\xaa'; } > "$img"
        chmod 644 "$img"
        xml=$(guest_xml "$name" 2)
        # SeaBIOS boots the disk: vCPU 0 spins, vCPU 1 waits for a SIPI that never comes.
        local disk_xml="<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$img'/><target dev='hda' bus='ide'/></disk>"
        xml=${xml/<devices>/"<devices>$disk_xml"}
        file=$VST_TMPDIR/$name.xml
        printf '%s\n' "$xml" > "$file"
        VST_GUESTS+=("$VST_PREFIX$name")
        vsh create "$file" >/dev/null || fail "cannot start $name"
}

# The effectiveness image, direct kernel boot, the workload for longer than
# the run (its window never closes while we measure).
image_start() {
        local name=$1 xml file os
        xml=$(guest_xml "$name" 2)
        os="<os><type arch='x86_64'>hvm</type><kernel>$image/vmlinuz</kernel><initrd>$image/initrd.img</initrd>"
        os+="<cmdline>console=ttyS0 quiet loglevel=3 bench.workload=$workload bench.warmup=0 bench.window=$((seconds * 10))</cmdline></os>"
        xml=$(sed -e "s|<os>.*</os>|$os|" <<< "$xml")
        [[ $xml == *"$image/vmlinuz"* ]] || fail "guest_xml has no <os> element to replace"
        xml=$(sed -e 's|<memory[^>]*>[0-9]*</memory>|<memory unit="MiB">256</memory>|' <<< "$xml")
        file=$VST_TMPDIR/$name.xml
        printf '%s\n' "$xml" > "$file"
        VST_GUESTS+=("$VST_PREFIX$name")
        vsh create "$file" >/dev/null || fail "cannot start $name"
}

daemon_write_config "[Domain]
Name=${VST_PREFIX}*
Policy=$policy"
daemon_start ${DAEMON_ARGS:-}
cursor0=$(journal_cursor)
t_start=$(date +%s)
for ((i = 0; i < n; i++)); do
        if [[ $workload == bootspin ]]; then bootspin_start "g$i"; else image_start "g$i"; fi
done
# all_vcpus_busy: every vCPU thread of the guests ran >= 1/4 of the last
# second (2 guests x 2 vCPUs on 2 CPUs get 1/2 each): the workload is up.
all_vcpus_busy() {
        local -A before=()
        local g tid pid t rest
        for ((i = 0; i < n; i++)); do
                pid=$(guest_qemu_pid "g$i") || return 1
                for tid in $(guest_vcpu_tids "g$i"); do
                        read -r t rest < "/proc/$pid/task/$tid/schedstat" || return 1
                        before[$pid/$tid]=$t
                done
        done
        sleep 1
        for g in "${!before[@]}"; do
                read -r t rest < "/proc/${g%/*}/task/${g#*/}/schedstat" || return 1
                (( t - before[$g] >= 250000000 )) || return 1
        done
}
if [[ $workload != bootspin ]]; then
        # The guests boot first (TCG: about 10 s); the steady load starts
        # with their workload, and SETTLE counts from there.
        wait_until 120000 all_vcpus_busy || fail "the guests' workload did not start within 120 s"
fi
load_start=$(date +%s)
note "running $n guests ($workload) under vcpuspreadd (Policy=$policy) for $seconds s of load (up $((load_start - t_start)) s after the start)"
sleep "$settle"
cursor_settled=$(journal_cursor)
sleep $(( seconds - settle ))

# count_since CURSOR MSGID...: daemon entries with one of the MESSAGE_IDs.
count_since() {
        local cursor=$1; shift
        local id total=0 k
        for id in "$@"; do
                k=$(journal_fields --after-cursor "$cursor" SYSLOG_IDENTIFIER=vcpuspreadd "_PID=$DAEMON_PID" \
                        "MESSAGE_ID=$id" -- MESSAGE | grep -c . || true)
                total=$((total + k))
        done
        printf '%d\n' "$total"
}
mode_ids=("$MSGID_AUTO_MODE" "$MSGID_AUTO_TRIAL_KEPT" "$MSGID_AUTO_TRIAL_REVERTED" "$MSGID_AUTO_RELEASED")
moves_all=$(count_since "$cursor0" "$MSGID_VCPU_MOVED")
moves_after=$(count_since "$cursor_settled" "$MSGID_VCPU_MOVED")
modes_all=$(count_since "$cursor0" "${mode_ids[@]}")
modes_after=$(count_since "$cursor_settled" "${mode_ids[@]}")
state=$("$VST_CTL" status --json --socket "$(daemon_socket)" |
        jq -r '[.guests[] | select(.managed) | "\(.name | sub(".*-"; "")):\(.auto.mode // "-")[" +
               ([.vcpus[] | "\(.cpus)"] | join(",")) + "]"] | join(" ")')
printf '\nvcpuspreadd stability, %s, kernel %s, %d CPUs: %d guests x 2 vCPUs, workload %s, Policy=%s, %d s\n' \
        "$(date -u +%F)" "$(uname -r)" "$(nproc)" "$n" "$workload" "$policy" "$seconds"
printf 'moves: %d in all, %d after the first %d s\n' "$moves_all" "$moves_after" "$settle"
printf 'Policy=auto mode changes and trial verdicts: %d in all, %d after the first %d s\n' \
        "$modes_all" "$modes_after" "$settle"
printf 'final state (guest:mode[cpus of each vCPU]): %s\n' "$state"
# Each entry with its time from the start of the load (negative: before it).
journal_fields --after-cursor "$cursor0" SYSLOG_IDENTIFIER=vcpuspreadd "_PID=$DAEMON_PID" -- \
        __REALTIME_TIMESTAMP MESSAGE_ID MESSAGE |
        awk -F'\t' -v ids="$MSGID_VCPU_MOVED ${mode_ids[*]}" -v t0="$load_start" \
            'index(ids, $2) && $2 != "" { printf "  %+6.1f s  %s\n", $1 / 1e6 - t0, $3 }'
daemon_stop
(( moves_after == 0 && modes_after == 0 )) && echo "target met: nothing changed after ${settle} s" ||
        echo "target missed: $moves_after moves and $modes_after mode changes after ${settle} s"
