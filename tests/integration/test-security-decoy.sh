#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A decoy claims a real guest: an unprivileged process started with the
# guest's "-uuid UUID" and threads named like vCPUs ("CPU 0/TCG").  The
# daemon runs where libvirt's status files cannot be used (its own mount
# namespace with an empty tmpfs over /run/libvirt/qemu), so it finds QEMU by
# its -uuid argument.  The real guest is still placed and the decoy is never
# touched.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"
id nobody >/dev/null 2>&1 || skip_or_fail "no user nobody"

guest_start a 2
uuid=$(guest_uuid a)
_env_tmpdir
setpriv --reuid nobody --regid nogroup --clear-groups /usr/bin/python3 -c '
import threading, time
def named(n):
    with open("/proc/thread-self/comm", "w") as f: f.write(n)
    time.sleep(120)
named_t = threading.Thread(target=named, args=("CPU 1/TCG",), daemon=True); named_t.start()
named("CPU 0/TCG")' -uuid "$uuid" &
decoy=$!
env_on_exit kill "$decoy"
# Python starts slowly on a loaded machine: read the decoy's threads only
# once both have named themselves, or a thread born later is missed.
decoy_ready() {
        [[ "$(cat /proc/$decoy/task/*/comm 2>/dev/null | sort | paste -sd,)" == "CPU 0/TCG,CPU 1/TCG" ]]
}
wait_until 10000 decoy_ready || fail "decoy threads not named after 10 s: $(cat /proc/$decoy/task/*/comm 2>/dev/null | paste -sd,)"
decoy_tids=$(ls "/proc/$decoy/task" | paste -sd' ')
decoy_before=$(for t in /proc/$decoy/task/*; do affinity_of "${t##*/}"; done | paste -sd' ')
note "decoy pid $decoy as nobody, tids $decoy_tids: $(tr '\0' ' ' < "/proc/$decoy/cmdline")"

# The daemon without status files: its own mount namespace.
cat > "$VST_TMPDIR/no-status-files" <<SH
#!/bin/sh
exec unshare --mount --propagation private -- sh -c 'mount -t tmpfs tmpfs /run/libvirt/qemu && exec "\$0" "\$@"' "$VST_DAEMON" "\$@"
SH
chmod +x "$VST_TMPDIR/no-status-files"
VST_DAEMON=$VST_TMPDIR/no-status-files daemon_start --verbose
wait_until 5000 guest_is_spread a || fail "guest not placed beside a decoy: $(guest_affinities a)"
sleep 1
assert_eq "$(for t in /proc/$decoy/task/*; do affinity_of "${t##*/}"; done | paste -sd' ')" "$decoy_before" "decoy's affinities"
kill -0 "$decoy" || fail "decoy gone"
daemon_fields "_PID=$DAEMON_PID" -- MESSAGE | grep "pid $decoy claims -uuid $uuid but is not libvirt's" >/dev/null ||
        fail "the daemon did not say it ignored the decoy"
n=$(daemon_fields "_PID=$DAEMON_PID" -- MESSAGE | grep -c "tid \($(echo "$decoy_tids" | sed 's/ /\\|/g')\))" || true)
assert_eq "$n" 0 "log lines naming a decoy thread"
note "guest placed: $(guest_affinities a); decoy untouched: $decoy_before"
daemon_stop
note "ok"
