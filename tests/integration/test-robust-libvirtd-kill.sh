#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libvirtd SIGKILLed twice in a row while guests start and stop: the daemon
# survives, reconnects, and converges: every guest of this test that still
# runs is placed correctly.  libvirtd is started again from the exit hooks
# whatever happens.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"
source "$here/robust.sh"

env_on_exit _ensure_libvirtd
daemon_start

# Guests come and go in the background, whether libvirtd answers or not.
churn() {
        local i file
        for ((i = 0; i < 40; i++)); do
                file=$VST_TMPDIR/k$i.xml
                guest_xml "k$i" 2 > "$file"
                vsh create "$file" >/dev/null 2>&1 || true
                sleep 0.3
                (( i % 3 == 0 )) && { vsh destroy "$(guest_name "k$((i - 1))")" >/dev/null 2>&1 || true; }
                [[ -e $VST_TMPDIR/stop-churn ]] && break
        done
}
churn &
churn_pid=$!
env_on_exit eval "kill $churn_pid 2>/dev/null || true"

for round in 1 2; do
        sleep 1.5
        pid=$(libvirtd_pid) || fail "no libvirtd before kill $round"
        note "kill $round: SIGKILL libvirtd $pid"
        kill -KILL "$pid"
        wait_until 5000 eval '! kill -0 '"$pid"' 2>/dev/null' || fail "libvirtd $pid survived SIGKILL"
        rm -f /run/libvirtd.pid
        _ensure_libvirtd || fail "libvirtd does not come back after kill $round"
done
touch "$VST_TMPDIR/stop-churn"
wait "$churn_pid" || true
daemon_alive || fail "daemon died: $(cat "$VST_TMPDIR/daemon.out")"

guest_start last 2
mapfile -t running < <(env_prefixed_guests)
note "${#running[@]} guests of this test still run"
all_spread() {
        local n
        for n in "${running[@]}"; do
                domain_listed "$n" || continue      # destroyed meanwhile
                guest_is_spread "${n#"$VST_PREFIX"}" || return 1
        done
}
# Reconnection backoff after two losses: a few seconds.
wait_until 40000 all_spread || {
        for n in "${running[@]}"; do note "$n: $(guest_affinities "${n#"$VST_PREFIX"}")"; done
        fail "not every running guest is placed after libvirtd came back twice"
}
wait_until 5000 eval '[[ $(daemon_status_field libvirt) == connected ]]' || fail "status does not say connected"
daemon_stop
note "ok"
