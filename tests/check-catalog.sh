#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The journal catalog explains every MESSAGE_ID of daemon/message-ids.h and no
# other, journalctl compiles it, and (as root, with journald running) an entry
# carrying an id is shown with its explanation by `journalctl -x`.
#
# Usage: check-catalog.sh SOURCE-ROOT

set -u
src=${1:?usage: check-catalog.sh SOURCE-ROOT}
catalog=$src/systemd/vcpuspreadd.catalog
header=$src/daemon/message-ids.h
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

header_ids=$(sed -n 's/^#define MSGID_[A-Z_]* *"\([0-9a-f]\{32\}\)".*/\1/p' "$header" | sort)
catalog_ids=$(sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$catalog" | sort)
[ -n "$header_ids" ] || fail "no MSGID_ in $header"

for id in $header_ids; do
        n=$(grep -c "^-- $id\$" "$catalog")
        [ "$n" = 1 ] || fail "$id from message-ids.h has $n catalog entries, expected 1"
done
for id in $catalog_ids; do
        grep -q "\"$id\"" "$header" || fail "catalog entry $id is not in message-ids.h"
done
[ "$(echo "$header_ids" | uniq -d)" = "" ] || fail "an id is used twice in message-ids.h"

# Each entry: its headers, then a blank line, then a non-empty explanation.
awk -v file="$catalog" '
function check() {
        if (id == "") return
        if (!subject) { print "FAIL: " id ": no Subject:"; bad++ }
        if (!defined) { print "FAIL: " id ": no Defined-By: vcpuspreadd"; bad++ }
        if (!doc)     { print "FAIL: " id ": no Documentation: man:..."; bad++ }
        if (body < 3) { print "FAIL: " id ": explanation shorter than 3 lines"; bad++ }
}
/^-- [0-9a-f]+$/ && length($2) == 32 { check(); id = $2; in_head = 1; subject = defined = doc = body = 0; next }
id != "" && in_head && /^$/ { in_head = 0; next }
id != "" && in_head {
        if ($0 ~ /^Subject: ./) subject = 1
        else if ($0 == "Defined-By: vcpuspreadd") defined = 1
        else if ($0 ~ /^Documentation: man:[a-z.]+\([0-9]\)/) doc = 1
        next
}
id != "" && /[^ ]/ { body++ }
END { check(); exit bad > 0 }
' "$catalog" || fails=$((fails + 1))

# journalctl compiles the catalog into a database in a scratch root.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/usr/lib/systemd/catalog"
cp "$catalog" "$tmp/usr/lib/systemd/catalog/"
if ! out=$(journalctl --root="$tmp" --update-catalog 2>&1) || [ -n "$out" ]; then
        fail "journalctl --update-catalog: ${out:-failed}"
fi
listed=$(journalctl --root="$tmp" --list-catalog 2>/dev/null | awk '{ print $1 }' | sort)
[ "$listed" = "$header_ids" ] || fail "compiled catalog lists: $(echo $listed), expected: $(echo $header_ids)"

# End to end: a real journal entry, shown with `journalctl -x`.  The compiled
# database is bind-mounted over the system's in a private mount namespace, so
# the host's catalog is not changed.
if [ "$(id -u)" = 0 ] && [ -S /run/systemd/journal/socket ] && [ -f /var/lib/systemd/catalog/database ] &&
   unshare --mount --propagation private true 2>/dev/null; then
        token="check-catalog-$$-$(date +%s%N)"
        printf '%s\n' "MESSAGE=$token" "MESSAGE_ID=954872ac443543179452f41d7304bb32" \
                "SYSLOG_IDENTIFIER=vcpuspreadd-check-catalog" "VCPUSPREAD_DOMAIN=web 1 \"q\" é" \
                "VCPUSPREAD_UUID=5c1c7a3e-0000-4000-8000-000000000001" "VCPUSPREAD_VCPU=2" \
                "VCPUSPREAD_TID=4711" "VCPUSPREAD_CPUS_FROM=0-15" "VCPUSPREAD_CPUS_TO=6" \
                "VCPUSPREAD_REASON=new-guest" | logger --journald ||
                fail "logger --journald could not write: journald is not listening on /run/systemd/journal/socket (a socket left by a dead journald?); tests/integration/setup-host.sh starts it"
        shown=""
        for _ in 1 2 3 4 5 6 7 8 9 10; do
                shown=$(unshare --mount --propagation private sh -c \
                        "mount --bind '$tmp/var/lib/systemd/catalog/database' /var/lib/systemd/catalog/database &&
                         journalctl -q -x --no-pager -t vcpuspreadd-check-catalog MESSAGE=$token" 2>&1)
                [ -n "$shown" ] && break
                sleep 0.2
        done
        echo "$shown" | grep 'Subject: vCPU 2 of guest web 1 "q" é moved to host CPUs 6' >/dev/null ||
                fail "journalctl -x does not show the catalog subject with fields filled in: $shown"
        echo "$shown" | grep 'reason:  new-guest' >/dev/null || fail "journalctl -x does not fill in VCPUSPREAD_REASON"
else
        echo "note: not root, no journald or no mount namespaces (fakeroot, container): journalctl -x end-to-end check skipped"
fi

[ $fails = 0 ] && echo "catalog: $(echo "$header_ids" | wc -l) ids, all explained"
exit $((fails > 0))
