#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `meson install` into a scratch DESTDIR puts exactly the expected files in
# place: the programs, the unit (with the real sbindir), the catalog, the man
# pages and the configuration, and a second install keeps an edited
# configuration.  Every installed file is listed.
#
# Usage: check-install.sh BUILD-DIR SOURCE-ROOT UNITDIR CATALOGDIR

set -u
build=${1:?usage: check-install.sh BUILD-DIR SOURCE-ROOT UNITDIR CATALOGDIR}
src=${2:?} unitdir=${3:?} catalogdir=${4:?}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

install_into() {
        meson install -C "$build" --no-rebuild --quiet --destdir "$1" >"$tmp/install.log" 2>&1 ||
                { cat "$tmp/install.log"; fail "meson install --destdir $1"; exit 1; }
}
install_into "$dest"

# Directories as configured, and the programs the build defines.
eval "$(meson introspect "$build" --buildoptions --targets | python3 -c '
import json, sys, shlex
opts, targets = None, None
text = sys.stdin.read()
dec = json.JSONDecoder()
pos = 0
docs = []
while pos < len(text):
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    obj, pos = dec.raw_decode(text, pos)
    docs.append(obj)
for d in docs:
    if isinstance(d, dict):
        opts = d.get("buildoptions", opts)
        targets = d.get("targets", targets)
opts = {o["name"]: o["value"] for o in opts}
for k in ("prefix", "bindir", "sbindir", "sysconfdir", "mandir"):
    print("%s=%s" % (k, shlex.quote(str(opts[k]))))
for t in targets:
    if t["name"] in ("vcpuspreadd", "vcpuspreadctl") and t["type"] == "executable":
        where = " ".join(t.get("install_filename") or []) if t["installed"] else ""
        print("target_%s=%s" % (t["name"], shlex.quote(where or "not-installed")))
')"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
sbindir=$(abs "$sbindir") bindir=$(abs "$bindir") sysconfdir=$(abs "$sysconfdir") mandir=$(abs "$mandir")

expected="$unitdir/vcpuspreadd.service
$catalogdir/vcpuspreadd.catalog
$sysconfdir/vcpuspreadd/vcpuspreadd.conf
$mandir/man8/vcpuspreadd.8
$mandir/man8/vcpuspreadctl.8
$mandir/man5/vcpuspreadd.conf.5
$mandir/man7/vcpuspreadd-metrics.7"
for prog in vcpuspreadd vcpuspreadctl; do
        var=target_$prog
        dir=$bindir; [ $prog = vcpuspreadd ] && dir=$sbindir
        if [ -z "${!var:-}" ]; then
                echo "note: the build defines no program $prog (yet)"
        else
                expected="$expected
$dir/$prog"
        fi
done

installed=$(cd "$dest" && find . ! -type d | sed 's|^\.||' | sort)
echo "installed files:"
echo "$installed" | sed 's/^/  /'
for f in $(echo "$expected" | sort); do
        echo "$installed" | grep -xF "$f" >/dev/null || fail "not installed: $f"
done
for f in $installed; do
        echo "$expected" | grep -xF "$f" >/dev/null || fail "installed but not expected: $f"
done

# Contents.
service=$dest$unitdir/vcpuspreadd.service
if [ -f "$service" ]; then
        grep -qx "ExecStart=$sbindir/vcpuspreadd --log-target journal" "$service" ||
                fail "unit's ExecStart= does not name $sbindir/vcpuspreadd: $(grep ExecStart= "$service")"
        ! grep -n '@[a-z_]*@' "$service" || fail "unsubstituted variables in the installed unit"
fi
cmp -s "$src/systemd/vcpuspreadd.catalog" "$dest$catalogdir/vcpuspreadd.catalog" || fail "installed catalog differs"
conf=$dest$sysconfdir/vcpuspreadd/vcpuspreadd.conf
if [ -f "$conf" ]; then
        cmp -s "$src/conf/vcpuspreadd.conf" "$conf" || fail "installed configuration differs from conf/vcpuspreadd.conf"
        [ "$(stat -c %a "$conf")" = 644 ] || fail "configuration mode $(stat -c %a "$conf"), expected 644"

        # The operator edits it; installing again must keep the edit.
        echo "# edited by the operator" >>"$conf"
        install_into "$dest"
        tail -n 1 "$conf" | grep -x "# edited by the operator" >/dev/null ||
                fail "a second meson install overwrote the edited $sysconfdir/vcpuspreadd/vcpuspreadd.conf"
fi

[ $fails = 0 ] && echo "PASS: $(echo "$installed" | wc -l) files installed as expected; an edited configuration survives reinstall"
exit $((fails > 0))
