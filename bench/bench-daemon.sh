#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The daemon's own cost, on real guests (TCG, no OS):
#  - placement latency: from a guest's start event to all its vCPUs placed,
#    as the daemon logs it (VCPUSPREAD_LATENCY_US), over N guests started one
#    after another while it runs (default 20);
#  - with those N guests idle, the daemon's CPU time and RSS over S seconds
#    (default 60), from /proc/PID/stat and /proc/PID/status.
# Usage: bench/bench-daemon.sh [GUESTS] [SECONDS]   (root; build/ built)
# Targets: latency median < 50 ms, idle CPU < 0.5%, RSS < 16 MiB.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/bench-env.sh" bench-daemon "$@"

n=${1:-20}
seconds=${2:-60}
hz=$(getconf CLK_TCK)

daemon_start
for ((i = 0; i < n; i++)); do
        guest_start "g$i" 2
        sleep 0.3
done
sleep 2

mapfile -t lat < <(daemon_fields "MESSAGE_ID=$MSGID_PLACED_LATENCY" -- VCPUSPREAD_LATENCY_US | grep . | sort -n)
(( ${#lat[@]} == n )) || note "latency logged for ${#lat[@]} of $n guests"
median=${lat[$(( ${#lat[@]} / 2 ))]}
max=${lat[-1]}
min=${lat[0]}

ticks() { local f; read -ra f <<< "$(sed 's/.*) //' "/proc/$DAEMON_PID/stat")"; echo $(( f[11] + f[12] )); }
t0=$(ticks); s0=$EPOCHREALTIME
sleep "$seconds"
t1=$(ticks); s1=$EPOCHREALTIME
cpu_pct=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", 100 * t / hz / (b - a) }')
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$DAEMON_PID/status")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
moves=$(moves_count)

printf '\nvcpuspreadd daemon benchmark, %s, %s, kernel %s, %d CPUs\n' "$(date -u +%F)" "$(hostname)" "$(uname -r)" "$(nproc)"
printf '| metric | value | target |\n|---|---|---|\n'
printf '| start event -> all vCPUs placed, median over %d guests | %.1f ms (min %.1f, max %.1f) | < 50 ms |\n' \
        "${#lat[@]}" "$(bc -l <<< "$median/1000")" "$(bc -l <<< "$min/1000")" "$(bc -l <<< "$max/1000")"
printf '| daemon CPU with %d idle guests over %d s | %s%% of one CPU | < 0.5%% |\n' "$n" "$seconds" "$cpu_pct"
printf '| daemon RSS (peak) | %d KiB (%d KiB) | < 16 MiB |\n' "$rss" "$hwm"
printf '| moves during the idle period and before | %d |  |\n' "$moves"
daemon_stop
