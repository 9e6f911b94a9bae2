#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Install the Debian packages listed in .ci/packages that are missing, so
# root is needed only when something is missing.  (.ci/run installs the whole
# list itself, after an apt-get update, before it gets here.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/tools/usage.sh"
usage_handle_help "$0" "$@"
(( $# == 0 )) || usage_error "takes no arguments (got '$1')"
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$root/.ci/packages")

wanted=()
for p in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [[ $status != ii* ]] && wanted+=("$p")
done

if (( ${#wanted[@]} == 0 )); then
        echo "install-deps: all ${#packages[@]} packages of .ci/packages are installed"
        exit 0
fi
if [[ $EUID -ne 0 ]]; then
        echo "install-deps: need root to install ${wanted[*]}" >&2
        exit 1
fi
echo "install-deps: installing ${wanted[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt or dpkg run instead of failing on its lock.
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${wanted[@]}"
