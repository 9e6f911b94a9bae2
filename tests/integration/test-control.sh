#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The control socket: permissions, clear errors when the daemon is away, a
# silent client does not stall other clients, unknown commands get an error.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

note "no daemon: exit status 1 and a message naming the socket"
status=0
err=$("$VST_CTL" status --socket "$VST_TMPDIR/nothing.sock" 2>&1) || status=$?
assert_eq "$status" 1 "status without a daemon"
[[ $err == *"vcpuspreadd is not running"*"$VST_TMPDIR/nothing.sock"* ]] || fail "message: $err"
status=0
"$VST_CTL" status --bogus >/dev/null 2>&1 || status=$?
assert_eq "$status" 2 "usage error"

guest_start g 2
# Let other users reach the socket's directory, so what keeps them out (or
# lets them in) is the socket's own mode.
_env_tmpdir; chmod 755 "$VST_TMPDIR"
daemon_start
sock=$(daemon_socket)
assert_eq "$(stat -c %a "$sock")" 600 "socket mode"
assert_eq "$(stat -c %U "$sock")" root "socket owner"
if id nobody >/dev/null 2>&1; then
        status=0
        err=$(setpriv --reuid nobody --regid nogroup --clear-groups "$VST_CTL" status --socket "$sock" 2>&1) || status=$?
        assert_eq "$status" 1 "status as nobody"
        [[ $err == *"permission denied"* ]] || fail "as nobody: $err"
fi

note "a client that connects and sends nothing does not stall others"
# It reports whether the daemon hung up on it (after its 5 s deadline).
python3 - "$sock" "$VST_TMPDIR/silent.connected" > "$VST_TMPDIR/silent.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(9)
open(sys.argv[2], "w").close()
try:
    print("closed" if s.recv(1) == b"" else "data")
except socket.timeout:
    print("still open")
PY
silent=$!
env_on_exit kill "$silent"
# Python starts slowly on a loaded host: measure only once it is connected,
# or the status below is not asked beside a silent client at all.
wait_until 10000 test -e "$VST_TMPDIR/silent.connected" || fail "the silent client did not connect in 10 s"
sleep 0.3
_now_ms; t0=$REPLY
"$VST_CTL" status --socket "$sock" >/dev/null || fail "status failed while a silent client is connected"
_now_ms; (( REPLY - t0 < 1000 )) || fail "status took $((REPLY - t0)) ms while a silent client is connected"

note "bad requests get an error reply, not a hang"
reply=$(python3 - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"command":"frobnicate"}\n'); s.shutdown(socket.SHUT_WR)
print(s.recv(65536).decode().strip())
PY
)
assert_eq "$(jq -r .ok <<< "$reply")" false "ok of an unknown command"
[[ $(jq -r .error <<< "$reply") == *"unknown command"* ]] || fail "reply: $reply"
reply=$(python3 - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'not json\n'); s.shutdown(socket.SHUT_WR)
print(s.recv(65536).decode().strip())
PY
)
[[ $(jq -r .error <<< "$reply") == "bad request"* ]] || fail "reply to garbage: $reply"
daemon_alive || fail "daemon died on bad requests"

note "the silent client is hung up on after its deadline"
wait "$silent" || true
assert_eq "$(cat "$VST_TMPDIR/silent.out")" closed "what the silent client saw"
daemon_stop
[[ ! -e $sock ]] || fail "socket left behind after SIGTERM"

note "ControlSocketGroup= opens the socket to one group, mode 0660"
DAEMON_EXTRA_DAEMON_KEYS="ControlSocketGroup=nogroup" daemon_write_config
daemon_start --dry-run
assert_eq "$(stat -c '%a %U %G' "$sock")" "660 root nogroup" "socket mode, owner, group"
setpriv --reuid nobody --regid nogroup --clear-groups "$VST_CTL" status --socket "$sock" >/dev/null ||
        fail "a member of the socket's group cannot ask for status"
daemon_stop
note "ok"
