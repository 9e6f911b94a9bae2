#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Domain names that try to forge log lines or drive a terminal: a tab, a C1
# control sequence (U+009B CSI "2J", legal in XML, clears an 8-bit
# terminal), quotes, printf directives, unicode and a 200-character name.
# The journal fields hold the exact name; the console output and
# vcpuspreadctl's output escape every control character.  A newline or ESC
# cannot be in a libvirt name (libvirt refuses '\n', XML has no ESC), which
# the test checks, so the console's escaping of those is tested in
# tests/unit/test-util.c.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

csi=$'\xc2\x9b'
names=(
        $'tab\there'
        "c1${csi}2Jcleared"
        "q'uo\"te %n%s%x"
        "ünïcødé 名前"
        "long$(printf 'x%.0s' $(seq 1 196))"
)
status=0
err=$(printf '<domain type="qemu"><name>%s</name><memory>65536</memory><os><type>hvm</type></os></domain>' \
        "$VST_PREFIX"$'new\nline' | vsh define /dev/stdin 2>&1) || status=$?
if (( status == 0 )); then vsh undefine "$VST_PREFIX"$'new\nline' >/dev/null 2>&1; fail "libvirt took a name with a newline"; fi
note "libvirt refuses a newline in a name: ${err//$'\n'/ }"

for i in "${!names[@]}"; do guest_start "${names[$i]}" 2; done

note "console: control characters escaped"
daemon_write_config
"$VST_DAEMON" --config "$(daemon_conf)" --once --dry-run --log-target console 2> "$VST_TMPDIR/console.err" ||
        fail "--once failed: $(cat "$VST_TMPDIR/console.err")"
LC_ALL=C grep -n $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]\|\t' "$VST_TMPDIR/console.err" &&
        fail "raw control characters on the console"
grep -qF 'would move: '"$VST_PREFIX"'tab\there vcpu0' "$VST_TMPDIR/console.err" || fail "tab not escaped: $(grep tab "$VST_TMPDIR/console.err")"
grep -qF "$VST_PREFIX"'c1\xc2\x9b2Jcleared vcpu0' "$VST_TMPDIR/console.err" || fail "CSI not escaped"
for n in "q'uo\"te %n%s%x" "ünïcødé 名前" "${names[4]}"; do
        grep -qF "would move: $VST_PREFIX$n vcpu0" "$VST_TMPDIR/console.err" || fail "name not printed as is: $n"
done

note "journal: the exact names"
daemon_start
for n in "${names[@]}"; do wait_until 5000 guest_is_spread "$n" || fail "not spread: $n"; done
# Compared as bytes: journalctl gives a field that is not printable UTF-8
# as an array of bytes, which journal_json's decoding is exact for only in ASCII.
journalctl --sync >/dev/null 2>&1 || true
journalctl --no-pager --all -o json "_PID=$DAEMON_PID" "MESSAGE_ID=$MSGID_VCPU_MOVED" > "$VST_TMPDIR/moves.json"
python3 - "$VST_TMPDIR/moves.json" "${names[@]/#/$VST_PREFIX}" <<'PY' || fail "journal fields do not hold the exact names"
import json, os, sys
seen = set()
for line in open(sys.argv[1], encoding="utf-8"):
    v = json.loads(line).get("VCPUSPREAD_DOMAIN")
    if isinstance(v, list):
        v = bytes(v)
    elif isinstance(v, str):
        v = v.encode()
    seen.add(v)
bad = [a for a in sys.argv[2:] if os.fsencode(a) not in seen]
for a in bad:
    print("no move entry with VCPUSPREAD_DOMAIN exactly", repr(os.fsencode(a)), file=sys.stderr)
print(f"{len(sys.argv) - 2 - len(bad)} of {len(sys.argv) - 2} names exact in VCPUSPREAD_DOMAIN", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

note "vcpuspreadctl status: escaped"
"$VST_CTL" status --socket "$(daemon_socket)" > "$VST_TMPDIR/ctl.out"
LC_ALL=C grep -n $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$VST_TMPDIR/ctl.out" && fail "raw control characters from vcpuspreadctl"
grep -qF "$VST_PREFIX"'tab\there' "$VST_TMPDIR/ctl.out" || fail "vcpuspreadctl: tab not escaped"
grep -qF "$VST_PREFIX"'c1\xc2\x9b2Jcleared' "$VST_TMPDIR/ctl.out" || fail "vcpuspreadctl: CSI not escaped"
daemon_stop
note "ok"
