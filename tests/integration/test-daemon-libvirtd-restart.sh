#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libvirtd goes away and comes back: the daemon survives, reconnects and
# places a guest started afterwards.  Also: started while libvirtd is down,
# it waits rather than failing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

libvirtd_down() { ! kill -0 "$libvirtd_pid" 2>/dev/null; }

daemon_start
guest_start before 2
wait_until 1000 guest_is_spread before || fail "guest not spread before the restart"

note "kill libvirtd"
libvirtd_pid=$(cat /run/libvirtd.pid)
[[ $(cat "/proc/$libvirtd_pid/comm") == libvirtd ]] || fail "/run/libvirtd.pid does not name libvirtd"
kill -TERM "$libvirtd_pid"
wait_until 10000 libvirtd_down || fail "libvirtd does not stop"
# The daemon learns of the loss when its connection closes, which a loaded
# host may deliver late: wait for status to say so rather than pause.
wait_until 10000 eval '"$VST_CTL" status --socket "$(daemon_socket)" | grep "libvirt disconnected" >/dev/null' ||
        fail "status does not say libvirt is disconnected 10 s after libvirtd stopped"
daemon_alive || fail "daemon died with libvirtd: $(cat "$VST_TMPDIR/daemon.out")"

note "a second daemon started while libvirtd is down waits for it (dry run, own socket)"
sed "s|^ControlSocket=.*|ControlSocket=$VST_TMPDIR/second.sock|" "$(daemon_conf)" > "$VST_TMPDIR/second.conf"
"$VST_DAEMON" --config "$VST_TMPDIR/second.conf" --dry-run --log-target console > "$VST_TMPDIR/second.out" 2>&1 &
second=$!
env_on_exit kill -KILL "$second"
second_status() { "$VST_CTL" status --socket "$VST_TMPDIR/second.sock" 2>/dev/null; }
# 10 s, as daemon_start allows a daemon to start.
wait_until 10000 eval 'second_status | grep "libvirt disconnected" >/dev/null' ||
        fail "daemon started without libvirtd does not run and say so: $(cat "$VST_TMPDIR/second.out")"

note "start libvirtd again"
_ensure_libvirtd || fail "libvirtd does not come back"
guest_start after 2
# Reconnection backoff starts at 1 s; allow for a couple of attempts.
wait_until 10000 guest_is_spread after || fail "guest started after libvirtd's restart not spread: $(guest_affinities after)"
n=$(daemon_fields "MESSAGE_ID=0ff863a46cb049839834518806bf56c0" -- MESSAGE | grep -ci "connected") || true
(( n >= 2 )) || fail "expected the connection loss and reconnect in the journal, found $n entries"
# Its retries back off (1, 3, 7, 15, 31 s after the first failure): when
# libvirtd took a few seconds to come back, the next attempt can be 16 s away.
wait_until 35000 eval 'second_status | grep "libvirt connected" >/dev/null' ||
        fail "the daemon started without libvirtd never connected: $(cat "$VST_TMPDIR/second.out")"
kill -TERM "$second"; wait "$second" || fail "second daemon exited non-zero"
daemon_stop
note "ok"
