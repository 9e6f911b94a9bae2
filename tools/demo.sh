#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Show vcpuspreadd at work on this machine: install missing packages, build
# into build/, make sure libvirtd runs, start two small demo guests (TCG, no
# OS, 2 vCPUs each), show where their vCPUs are allowed to run, then run the
# daemon in the foreground, logging its decisions to the console, for
# $DEMO_SECONDS (default 10) seconds, and show the result.  The demo guests
# are destroyed at the end; other guests on this host are left alone (the
# demo's configuration manages only guests named vcpuspread-demo-*).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/tools/usage.sh"
usage_handle_help "$0" "$@"
(( $# == 0 )) || usage_error "takes no arguments (got '$1'); DEMO_SECONDS sets how long the daemon runs"
cd "$root"

tools/install-deps.sh
[[ -e build/meson-private/coredata.dat ]] || meson setup build
ninja -C build
tests/integration/setup-host.sh

ctl=build/daemon/vcpuspreadctl
daemon=build/daemon/vcpuspreadd
work=$(mktemp -d /tmp/vcpuspread-demo.XXXXXX)
guests=(vcpuspread-demo-web1 vcpuspread-demo-web2)

cleanup() {
        for g in "${guests[@]}"; do virsh -q destroy "$g" >/dev/null 2>&1 || true; done
        rm -rf -- "$work"
}
trap cleanup EXIT

echo "== What the engine would do with two 2-vCPU guests on this host's topology"
"$ctl" simulate --topology host --domains 'web1:2,web2:2'

echo
echo "== Starting two demo guests"
for g in "${guests[@]}"; do
        cat > "$work/$g.xml" <<XML
<domain type='qemu'>
  <name>$g</name>
  <memory unit='MiB'>64</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
XML
        virsh -q destroy "$g" >/dev/null 2>&1 || true
        virsh -q create "$work/$g.xml" >/dev/null
done
sleep 1
show_threads() {
        local g pid t
        for g in "${guests[@]}"; do
                pid=$(pgrep -f -- "guest=$g," | head -n1)
                for t in /proc/"$pid"/task/*; do
                        [[ $(cat "$t/comm") == CPU* ]] || continue
                        printf '  %-22s %-10s tid %-7s CPUs %s\n' "$g" "$(cat "$t/comm")" "${t##*/}" \
                                "$(grep Cpus_allowed_list "$t/status" | cut -f2)"
                done
        done
}
echo "vCPU threads before the daemon:"
show_threads

cat > "$work/vcpuspreadd.conf" <<CONF
[Daemon]
ControlSocket=$work/control.sock

[Domain]
Name=vcpuspread-demo-*
Policy=spread

[Domain]
Name=*
Policy=ignore
CONF

echo
echo "== Running vcpuspreadd in the foreground for ${DEMO_SECONDS:-10} s"
echo "   $daemon --config $work/vcpuspreadd.conf --log-target console"
"$daemon" --config "$work/vcpuspreadd.conf" --log-target console &
pid=$!
sleep 2
echo
echo "== vcpuspreadctl map"
"$ctl" map --socket "$work/control.sock"
sleep $(( ${DEMO_SECONDS:-10} > 2 ? ${DEMO_SECONDS:-10} - 2 : 0 ))
kill -TERM "$pid"
wait "$pid"
echo
echo "vCPU threads after the daemon (pins stay when it exits):"
show_threads
