#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Make this machine ready for the integration tests: journald, virtlogd and
# libvirtd running (started by hand when systemd is not PID 1), /dev/kvm
# usable by QEMU.  Leaves running what it starts.  Exit 77 when it cannot and
# $CI is unset, 1 when it cannot and $CI is set.
set -euo pipefail
VST_TEST_NAME=setup-host
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
env_setup_host
echo "host ready: $VST_CONNECT answers ($(virsh -c "$VST_CONNECT" version 2>/dev/null | sed -n "s/^Running hypervisor: //p"))"
