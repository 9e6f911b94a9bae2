#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Configuration in the running daemon: a [Domain] with Policy=ignore leaves a
# running guest untouched; a reload that switches it to spread pins it; a
# broken configuration is refused with file:line and the old one stays in
# force; --check-config validates and prints.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

ctl() { "$VST_CTL" "$@" --socket "$(daemon_socket)"; }

guest_start quiet 2
guest_start busy 2
daemon_write_config "[Domain]
Name=$(guest_name quiet)
Policy=ignore"

note "--check-config accepts it and prints the effective configuration"
out=$("$VST_DAEMON" --check-config --config "$(daemon_conf)")
grep -q "^Policy=ignore" <<< "$out" || fail "--check-config did not print the ignore rule: $out"

daemon_start
wait_until 2000 guest_is_spread busy || fail "busy not spread"
before=$(guest_affinities quiet)
sleep 1.5
assert_eq "$(guest_affinities quiet)" "$before" "ignored guest's affinities"
assert_eq "$(moves_count "$(guest_name quiet)")" 0 "moves of the ignored guest"
state=$("$VST_CTL" status --json --socket "$(daemon_socket)" | jq -r --arg n "$(guest_name quiet)" '.guests[] | select(.name == $n) | .state')
assert_eq "$state" ignored "status of the ignored guest"

note "a broken configuration is refused with file:line, the old one stays"
cp "$(daemon_conf)" "$VST_TMPDIR/good.conf"
printf '\n[Domain]\nName=x\nPolicy=sprad\n' >> "$(daemon_conf)"
line=$(grep -n '^Policy=sprad' "$(daemon_conf)" | cut -d: -f1)
status=0
err=$(ctl reload 2>&1) || status=$?
assert_eq "$status" 1 "exit status of reload with a broken file"
assert_eq "$err" "vcpuspreadctl: reload: $(daemon_conf):$line: Policy=sprad: expected spread, spread-cores, ignore or auto" "reload error"
status=0
"$VST_DAEMON" --check-config --config "$(daemon_conf)" >/dev/null 2>"$VST_TMPDIR/check.err" || status=$?
assert_eq "$status" 1 "--check-config on a broken file"
grep -qF "$(daemon_conf):$line: Policy=sprad" "$VST_TMPDIR/check.err" || fail "--check-config said: $(cat "$VST_TMPDIR/check.err")"
sleep 1
assert_eq "$(guest_affinities quiet)" "$before" "ignored guest after the refused reload"
daemon_alive || fail "daemon died on a broken reload"

note "a reload that switches the guest to spread pins it at once"
sed 's/^Policy=ignore$/Policy=spread/' "$VST_TMPDIR/good.conf" > "$(daemon_conf)"
# Keep the catch-all for other guests: only our rule changed.
printf '\n[Domain]\nName=*\nPolicy=ignore\n' >> "$(daemon_conf)"
out=$(ctl reload)
assert_eq "$out" "configuration reloaded" "reload output"
wait_until 1000 guest_is_spread quiet || fail "quiet not spread 1 s after the reload: $(guest_affinities quiet)"

note "SIGHUP reloads as well; an invalid start configuration is fatal"
kill -HUP "$DAEMON_PID"
sleep 0.5
daemon_alive || fail "daemon died on SIGHUP"
printf '[Daemon]\nBogusKey=1\n' > "$VST_TMPDIR/bad.conf"
status=0
"$VST_DAEMON" --config "$VST_TMPDIR/bad.conf" --once --log-target console 2>"$VST_TMPDIR/bad.err" || status=$?
assert_eq "$status" 1 "exit status with an invalid configuration"
grep -q "bad.conf:2: " "$VST_TMPDIR/bad.err" || fail "no file:line in: $(cat "$VST_TMPDIR/bad.err")"
daemon_stop
note "ok"
