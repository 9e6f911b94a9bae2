# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# Helpers of the robustness tests (test-robust-*.sh).  Source after env.sh,
# env_init and daemon.sh.

VST_NOTIFY_LISTEN=${VST_NOTIFY_LISTEN:-$VST_BUILD_ROOT/tests/integration/vst-notify-listen}
ROBUST_STOPPED_PID=

# libvirtd_pid: the running libvirtd, from its pid file, checked by name.
libvirtd_pid() {
        local pid comm
        # libvirtd writes its pid file without a newline: not read_line.
        pid=$(cat /run/libvirtd.pid 2>/dev/null) || return 1
        read_line comm "/proc/$pid/comm" || return 1
        [[ $comm == libvirtd ]] || return 1
        printf '%s\n' "$pid"
}

# libvirtd_stop: SIGSTOP libvirtd; libvirtd_cont undoes it, and runs from
# the exit hooks whatever happens (the host's other users need libvirtd).
libvirtd_stop() {
        ROBUST_STOPPED_PID=$(libvirtd_pid) || fail "no libvirtd to stop"
        env_on_exit libvirtd_cont
        kill -STOP "$ROBUST_STOPPED_PID"
        note "libvirtd $ROBUST_STOPPED_PID stopped (SIGSTOP)"
}

libvirtd_cont() {
        [[ -n $ROBUST_STOPPED_PID ]] || return 0
        kill -CONT "$ROBUST_STOPPED_PID" 2>/dev/null || true
        note "libvirtd $ROBUST_STOPPED_PID continued (SIGCONT)"
        ROBUST_STOPPED_PID=
}

# notify_listen: a stand-in service manager socket; exports NOTIFY_SOCKET
# and WATCHDOG_USEC (2 s: sd-event pings every second) for daemons started
# afterwards.  Messages land in $NOTIFY_LOG as "BOOTTIME_MS MESSAGE".
notify_listen() {
        _env_tmpdir
        NOTIFY_LOG=$VST_TMPDIR/notify.log
        : > "$NOTIFY_LOG"
        "$VST_NOTIFY_LISTEN" "$VST_TMPDIR/notify.sock" "$NOTIFY_LOG" &
        env_on_exit kill "$!"
        wait_until 10000 test -S "$VST_TMPDIR/notify.sock" || fail "notify listener did not bind in 10 s"
        export NOTIFY_SOCKET=$VST_TMPDIR/notify.sock WATCHDOG_USEC=2000000
}

# mono_ms: CLOCK_BOOTTIME in ms (the notify log's clock).
mono_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# watchdog_max_gap FROM_MS TO_MS: the longest time in ms without WATCHDOG=1
# between FROM and TO (including the edges).
watchdog_max_gap() {
        awk -v from="$1" -v to="$2" '
                $2 ~ /WATCHDOG=1/ && $1 >= from && $1 <= to { if (last == "") last = from; if ($1 - last > gap) gap = $1 - last; last = $1 }
                END { if (last == "") last = from; if (to - last > gap) gap = to - last; print gap + 0 }' "$NOTIFY_LOG"
}

# status_probe_for SECONDS SOCKET: ask status every 0.5 s for SECONDS, each
# with a 1 s limit; prints "MAX_MS FAILURES LAST_LIBVIRT_STATE".  MAX_MS is
# the status call's alone: starting jq to read the answer is not the
# daemon's time, and on a loaded host it adds tens of milliseconds.
status_probe_for() {
        local end max=0 failures=0 t0 ms state="" out ok
        _now_ms; end=$((REPLY + $1 * 1000))
        while _now_ms; (( REPLY < end )); do
                t0=$REPLY
                ok=0
                out=$(timeout 1 "$VST_CTL" status --json --socket "$2" 2>/dev/null) || ok=$?
                _now_ms; ms=$((REPLY - t0))
                (( ms > max )) && max=$ms
                if (( ok == 0 )); then
                        state=$(jq -r '.daemon.libvirt' <<< "$out")
                        printf '%s\n' "$state" >> "$VST_TMPDIR/states"
                else
                        failures=$((failures + 1))
                fi
                sleep 0.5
        done
        printf '%s %s %s\n' "$max" "$failures" "$state"
}
