#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# libvirtd SIGSTOPped for 60 s, once while the daemon runs and once while it
# starts: the control socket answers within 1 s throughout, the watchdog
# (a stand-in NOTIFY_SOCKET) keeps being fed, READY=1 comes, status and
# STATUS= say libvirt is unresponsive, the pins stay, and placement resumes
# after SIGCONT.  Holds the host lock the whole time (run under flock);
# libvirtd is continued from the exit hooks whatever happens.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"
source "$here/robust.sh"

STOP_S=${VST_STOP_SECONDS:-60}
notify_listen
daemon_start
guest_start a 2
wait_until 3000 guest_is_spread a || fail "guest a not spread before the stop: $(guest_affinities a)"
pins=$(guest_affinities a)

note "phase 1: libvirtd stopped for $STOP_S s while the daemon runs"
from=$(mono_ms)
libvirtd_stop
read -r max failures state < <(status_probe_for "$STOP_S" "$(daemon_socket)")
to=$(mono_ms)
libvirtd_cont
gap=$(watchdog_max_gap "$from" "$to")
note "running: status max ${max} ms, ${failures} unanswered, last libvirt state '$state'; longest watchdog gap ${gap} ms"
(( failures == 0 )) || fail "status went unanswered $failures times while libvirtd was stopped"
(( max <= 1000 )) || fail "status took $max ms while libvirtd was stopped"
(( gap <= 1900 )) || fail "watchdog not fed for $gap ms (WATCHDOG_USEC=2 s)"
grep -qx unresponsive "$VST_TMPDIR/states" || fail "status never said libvirt is unresponsive: $(sort "$VST_TMPDIR/states" | uniq -c | paste -sd' ')"
grep -q 'STATUS=libvirt unresponsive' "$NOTIFY_LOG" || fail "STATUS= never said libvirt is unresponsive"
n=$(daemon_fields "MESSAGE_ID=0ff863a46cb049839834518806bf56c0" -- MESSAGE | grep -c unresponsive) || true
(( n >= 1 )) || fail "the journal does not say libvirt is unresponsive"
assert_eq "$(guest_affinities a)" "$pins" "guest a's pins after the stop"
daemon_alive || fail "daemon died: $(cat "$VST_TMPDIR/daemon.out")"

note "placement resumes after SIGCONT"
_t0=${EPOCHREALTIME/./}
guest_start b 2
# A reconnection attempt that was cut waits its backoff (at most 30 s).
wait_until 35000 guest_is_spread b || fail "guest b not spread after SIGCONT: $(guest_affinities b)"
note "guest b spread $(( (${EPOCHREALTIME/./} - _t0) / 1000 )) ms after its start was asked for"
wait_until 5000 eval '[[ $(daemon_status_field libvirt) == connected ]]' ||
        fail "status does not say connected again: $(daemon_status_field libvirt)"
daemon_stop

note "phase 2: the daemon starts while libvirtd is stopped for $STOP_S s"
: > "$NOTIFY_LOG"
: > "$VST_TMPDIR/states"
libvirtd_stop
from=$(mono_ms)
"$VST_DAEMON" --config "$(daemon_conf)" --log-target journal > "$VST_TMPDIR/daemon2.out" 2>&1 &
DAEMON_PID=$!
wait_until 2000 _daemon_answers || fail "daemon started with libvirtd stopped does not answer within 2 s"
wait_until 6000 grep -q READY=1 "$NOTIFY_LOG" || fail "no READY=1 within 6 s of starting with libvirtd stopped"
ready_ms=$(( $(awk '/READY=1/ { print $1; exit }' "$NOTIFY_LOG") - from ))
read -r max failures state < <(status_probe_for "$((STOP_S - 2))" "$(daemon_socket)")
to=$(mono_ms)
libvirtd_cont
gap=$(watchdog_max_gap "$((from + 1500))" "$to")
note "starting: READY=1 after ${ready_ms} ms, status max ${max} ms, ${failures} unanswered, last state '$state'; longest watchdog gap ${gap} ms"
(( failures == 0 )) || fail "status went unanswered $failures times while starting against a stopped libvirtd"
(( max <= 1000 )) || fail "status took $max ms while starting against a stopped libvirtd"
(( gap <= 1900 )) || fail "watchdog not fed for $gap ms while starting"
grep -qx unresponsive "$VST_TMPDIR/states" || fail "status never said unresponsive while starting"
guest_start c 2
wait_until 35000 guest_is_spread c || fail "guest c not spread after SIGCONT: $(guest_affinities c)"
daemon_stop
note "ok"
