#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every man page lints clean (mandoc) and renders without groff warnings.
set -euo pipefail
root=${SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
status=0
for page in "$root"/man/*.[0-9]; do
        if ! out=$(mandoc -T lint -W warning "$page" 2>&1) || [[ -n $out ]]; then
                printf '%s\n' "$out" >&2
                status=1
        fi
        if command -v groff >/dev/null; then
                if ! out=$(groff -man -ww -z "$page" 2>&1) || [[ -n $out ]]; then
                        printf '%s: groff: %s\n' "$page" "$out" >&2
                        status=1
                fi
        fi
        echo "checked $page"
done
exit "$status"
