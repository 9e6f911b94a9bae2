#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Meson install script: rebuild the journal catalog database so that
# `journalctl -x` explains vcpuspreadd's entries.  Skipped for staged installs
# (DESTDIR): there the package's trigger does it on the target system.
[ -n "${DESTDIR:-}" ] && exit 0
command -v journalctl >/dev/null 2>&1 || exit 0
journalctl --update-catalog || echo "warning: journalctl --update-catalog failed" >&2
exit 0
