#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A flood on the control socket against a daemon with a low descriptor
# limit (RLIMIT_NOFILE 64): a client opens and holds up to 1,500
# connections for a few seconds.  The daemon must not spin (its CPU time
# over the flood stays low), log at most a handful of lines about it, go on
# placing guests (one is started during the flood), and answer status at
# once when the flood ends.  The figures are printed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

FLOOD_CONNS=${FLOOD_CONNS:-1500}
FLOOD_SECONDS=${FLOOD_SECONDS:-4}
# Under valgrind (tools/test.sh) the daemon is several times slower.
slow=1
[[ $VST_DAEMON == *valgrind* ]] && slow=5

guest_start a 2
daemon_start
sock=$(daemon_socket)
prlimit --pid "$DAEMON_PID" --nofile=64:64 || fail "cannot lower the daemon's descriptor limit"
wait_until 5000 guest_is_spread a || fail "a not spread before the flood: $(guest_affinities a)"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cursor=$(journal_cursor)
ticks0=$(cpu_ticks "$DAEMON_PID")

python3 - "$sock" "$FLOOD_CONNS" "$FLOOD_SECONDS" > "$VST_TMPDIR/flood.out" <<'PY' &
import errno, resource, socket, sys, time
path, want, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (want + 64, want + 64))
held, refused, attempts = [], 0, 0
end = time.monotonic() + secs
while time.monotonic() < end:
    if len(held) >= want:
        time.sleep(0.05); continue
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    attempts += 1
    try:
        s.connect(path)
        held.append(s)
    except OSError as e:
        s.close()
        if e.errno not in (errno.EAGAIN, errno.ECONNREFUSED):
            raise
        refused += 1
        time.sleep(0.0005)
print(f"attempts={attempts} connected={len(held)} refused={refused}")
for s in held:
    s.close()
PY
flood=$!
kill_quietly() { kill "$@" 2>/dev/null || true; }
env_on_exit kill_quietly "$flood"
sleep 1
note "a guest started during the flood is placed"
guest_start b 2
wait "$flood" || fail "flood client failed: $(cat "$VST_TMPDIR/flood.out")"
ticks1=$(cpu_ticks "$DAEMON_PID")
_now_ms; t0=$REPLY
"$VST_CTL" status --socket "$sock" >/dev/null || fail "status failed right after the flood"
_now_ms; latency=$((REPLY - t0))
# Placed at all is the point here, not how fast (test-daemon-events holds
# the daemon to its second): b starts while the daemon is busy with the
# flood, and under valgrind everything it does takes several times longer.
wait_until $((10000 * slow)) guest_is_spread b || fail "b not placed during/after the flood: $(guest_affinities b)"
daemon_alive || fail "daemon died in the flood"

cpu_ms=$(( (ticks1 - ticks0) * 1000 / hz ))
lines=$(journal_fields --after-cursor "$cursor" "_PID=$DAEMON_PID" -- MESSAGE | grep -c 'control socket' || true)
all_lines=$(journal_fields --after-cursor "$cursor" "_PID=$DAEMON_PID" -- MESSAGE | grep -c . || true)
note "flood: $(cat "$VST_TMPDIR/flood.out") over ${FLOOD_SECONDS} s against RLIMIT_NOFILE 64"
note "daemon CPU time over the flood: ${cpu_ms} ms; log lines about the control socket: $lines (all lines: $all_lines); status right after: ${latency} ms"
(( cpu_ms < 1000 * slow )) || fail "daemon used ${cpu_ms} ms of CPU in a ${FLOOD_SECONDS} s flood: it spins"
(( lines <= 5 )) || fail "$lines log lines about the control socket"
(( latency < 1000 * slow )) || fail "status took ${latency} ms after the flood"
note "a request with data after its object is refused, not half-read"
reply=$(python3 - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"command":"status"}{"command":"reload"}\n'); s.shutdown(socket.SHUT_WR)
print(s.recv(65536).decode().strip())
PY
)
assert_eq "$(jq -r .ok <<< "$reply")" false "ok of a request with trailing data"
note "reload names the uid that asked (SO_PEERCRED)"
"$VST_CTL" reload --socket "$sock" >/dev/null || fail "reload failed"
daemon_fields "_PID=$DAEMON_PID" -- MESSAGE | grep "^Reload asked on the control socket by uid 0 (pid [0-9]*)$" >/dev/null ||
        fail "no log line naming the uid of the reload"
daemon_stop
note "ok"
