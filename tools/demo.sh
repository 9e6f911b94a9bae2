#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Show the project at work on this machine: install missing packages, build
# into build/, and print the placement vcpuspreadd would choose for two
# 2-vCPU guests on this host's CPU topology.  (Later: start two demo guests
# and run the daemon in the foreground.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools/install-deps.sh
[[ -e build/meson-private/coredata.dat ]] || meson setup build
ninja -C build

ctl=build/daemon/vcpuspreadctl
if [[ ! -x $ctl ]]; then
        echo "demo: $ctl was not built; this tree has no vcpuspreadctl yet" >&2
        exit 1
fi
set -x
"$ctl" simulate --topology host --domains 'web1:2,web2:2'
