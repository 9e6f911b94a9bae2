#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Does the hardened unit still let vcpuspreadd do its job?  Where systemd is
# PID 1 the answer is `systemd-run -p ... vcpuspreadd --once`; this host has no
# systemd as PID 1, so this script rebuilds the parts of the sandbox that decide
# it with plain tools and performs each privileged operation the daemon needs,
# against a real guest, from inside:
#
#   capabilities  CapabilityBoundingSet= from the unit (setpriv: bounding and
#                 inheritable sets, so uid 0 gets exactly those after exec),
#                 NoNewPrivileges=
#   mounts        ProtectSystem=strict (every mount read-only but /proc, /dev,
#                 /sys), ProtectKernelTunables= (/sys read-only except
#                 /sys/fs/cgroup, /proc/sys read-only), ProtectControlGroups=
#                 (/sys/fs/cgroup read-only but for the ReadWritePaths=
#                 below it), ReadWritePaths= ("-" optional) and
#                 RuntimeDirectory= from the unit, ProtectHome=, PrivateTmp=
#   network       PrivateNetwork= (a new network namespace)
#
# Not rebuilt: the seccomp filters (SystemCallFilter=, RestrictAddressFamilies=,
# MemoryDenyWriteExecute=...), PrivateDevices= and the IP firewall; see
# README-hardening.md for why they do not stand in the daemon's way.
#
# Usage: sandbox-probe.sh [UNIT-FILE]   (root, running libvirtd; exit 77 = skip)
#        sandbox-probe.sh --exec UNIT-FILE [--] COMMAND [ARGS...]
#                                      run any command in the same sandbox
# The guest it creates is named "${PROBE_PREFIX:-ops}-sandbox-probe".

set -u

exec_cmd=
if [ "${1:-}" = --exec ]; then
        exec_cmd=1; shift
        unit=${1:?usage: sandbox-probe.sh --exec UNIT-FILE [--] COMMAND [ARGS...]}; shift
        [ "${1:-}" = -- ] && shift
else
        unit=${1:-$(dirname "$0")/vcpuspreadd.service.in}
fi
guest="${PROBE_PREFIX:-ops}-sandbox-probe"

# Outside CI a host that cannot run this skips (77); in CI that is a failure.
skip() { echo "SKIP: $*"; [ -n "${CI:-}" ] && exit 1; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
for tool in unshare setpriv virsh taskset; do
        command -v "$tool" >/dev/null || skip "$tool not installed"
done
virsh -q -c qemu:///system uri >/dev/null 2>&1 || skip "libvirtd not reachable"

unit_values() {         # all values of KEY= in the unit, space separated
        sed -n "s/^$1=//p" "$unit" | tr '\n' ' '
}

vcpu_cgroup_dir() {     # the thread's own cpuset cgroup, from /proc/TID/cgroup (v1, else v2)
        local rel root
        rel=$(sed -n 's/^[0-9]*:\([^:]*,\)\?cpuset\(,[^:]*\)\?:\(.*\)/\3/p' "/proc/$1/cgroup")
        if [ -n "$rel" ]; then
                root=$(awk '$9 == "cgroup" && $NF ~ /(^|,)cpuset(,|$)/ { print $5; exit }' /proc/self/mountinfo)
        else
                rel=$(sed -n 's/^0::\(.*\)/\1/p' "/proc/$1/cgroup")
                root=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
        fi
        echo "$root$rel"
}

expand_cpulist() {      # 0-2,5 -> 0 1 2 5, one a line, sorted as text for comm
        local part
        for part in ${1//,/ }; do
                case "$part" in
                *-*) seq "${part%-*}" "${part#*-}" ;;
                *) echo "$part" ;;
                esac
        done | sort
}

# CAP_SYS_NICE CAP_FOO -> +sys_nice,+foo
bounding=-all
for cap in $(unit_values CapabilityBoundingSet); do
        cap=${cap#CAP_}
        bounding="$bounding,+${cap,,}"
done
# ReadWritePaths=: a leading "-" makes a path optional (skipped when absent).
rw_paths=""
for p in $(unit_values ReadWritePaths); do
        case "$p" in
        -*) p=${p#-}; [ -e "$p" ] || continue ;;
        esac
        rw_paths="$rw_paths $p"
done
# ProtectControlGroups=yes mounts /sys/fs/cgroup read-only, with the
# ReadWritePaths= below it as writable islands; with "no" it stays writable
# (ProtectKernelTunables= leaves it to ProtectControlGroups=).
grep -qx 'ProtectControlGroups=yes' "$unit" || rw_paths="$rw_paths /sys/fs/cgroup"
runtime_dirs=""
for d in $(unit_values RuntimeDirectory); do
        runtime_dirs="$runtime_dirs /run/$d"
done
grep -qx 'ProtectSystem=strict' "$unit" || { echo "FAIL: unit is not ProtectSystem=strict, probe does not apply"; exit 1; }
grep -qx 'PrivateNetwork=yes' "$unit" && netns=--net || netns=

# in_sandbox CMD ARGS...: run CMD in the emulated sandbox.  The mounts are
# built in the new namespaces while still fully privileged, then setpriv
# drops to the unit's capabilities and runs CMD.
in_sandbox() {
        unshare --mount --propagation private $netns -- \
                bash -c "$stage1" stage1 "$bounding" "$rw_paths" "$runtime_dirs" "$@"
}
stage1=$(cat <<'STAGE1'
set -eu
bounding=$1 rw_paths=$2 runtime_dirs=$3; shift 3
[ -n "$(ip -o link 2>/dev/null | grep -v ' lo:')" ] && echo "info: network interfaces visible" || echo "info: private network namespace (only lo)"
# Writable islands first, each its own mount so the read-only pass skips it.
for p in $rw_paths $runtime_dirs; do
        mountpoint -q "$p" || mount --bind "$p" "$p"
done
keep_rw() {
        case "$1" in
        /proc|/proc/*|/dev|/dev/*) return 0 ;;
        /mnt/sandboxing|/mnt/sandboxing/*) return 0 ;;    # not ours, already read-only
        esac
        for p in $rw_paths $runtime_dirs; do
                case "$1" in "$p"|"$p"/*) return 0 ;; esac
        done
        return 1
}
awk '{ print $5 }' /proc/self/mountinfo | sort -u | while read -r m; do
        keep_rw "$m" && continue
        mount -o remount,bind,ro "$m"
done
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
for h in /root /home /run/user; do
        [ -d "$h" ] && mount -t tmpfs -o ro,mode=000 none "$h"
done
mount -t tmpfs -o mode=1777 none /tmp
exec setpriv --bounding-set="$bounding" --inh-caps=-all --no-new-privs "$@"
STAGE1
)

if [ -n "$exec_cmd" ]; then
        created_dirs=""
        for d in $runtime_dirs; do
                if [ ! -d "$d" ]; then mkdir -m 0755 "$d" && created_dirs="$created_dirs $d"; fi
        done
        in_sandbox "$@"
        rc=$?
        for d in $created_dirs; do rmdir "$d" 2>/dev/null; done
        exit $rc
fi

xml=$(mktemp /tmp/sandbox-probe-XXXXXX.xml)
created_dirs=""
cleanup() {
        virsh -q -c qemu:///system destroy "$guest" >/dev/null 2>&1
        rm -f "$xml"
        for d in $created_dirs; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

cat >"$xml" <<EOF
<domain type='qemu'><name>$guest</name><memory unit='MiB'>64</memory><vcpu current='2'>2</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>
EOF
virsh -q -c qemu:///system destroy "$guest" >/dev/null 2>&1
virsh -q -c qemu:///system create "$xml" >/dev/null || { echo "FAIL: cannot start $guest"; exit 1; }

for d in $runtime_dirs; do
        if [ ! -d "$d" ]; then mkdir -m 0755 "$d" && created_dirs="$created_dirs $d"; fi
done

token="$guest-$$-$(date +%s%N)"
echo "unit: $unit"
echo "emulating: bounding set $bounding, read-write: $rw_paths$runtime_dirs, ${netns:-host network}"


# The probes, run in the sandbox with only the unit's capabilities.
exec 3<<'PROBES'
set -u
guest=$1
fails=0
ok()   { echo "PASS: $*"; }
bad()  { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_ok()   { local what=$1; shift; if out=$("$@" 2>&1); then ok "$what"; else bad "$what: $out"; fi; }
expect_fail() { local what=$1; shift; if out=$("$@" 2>&1); then bad "$what succeeded but must not"; else ok "$what refused (${out##*: })"; fi; }

status=/run/libvirt/qemu/$guest.xml
grep '^Cap\(Eff\|Bnd\)' /proc/self/status | sed 's/^/info: /'
expect_ok "read libvirt status file (root:root 0600) without CAP_DAC_OVERRIDE" test -n "$(grep "<vcpu id='0'" "$status")"
qpid=$(sed -n "s/.*<domstatus [^>]*pid='\([0-9]*\)'.*/\1/p" "$status")
tid=$(sed -n "s/.*<vcpu id='1' pid='\([0-9]*\)'.*/\1/p" "$status")
echo "info: qemu pid $qpid (user $(stat -c %U /proc/$qpid)), vcpu1 tid $tid"
for f in comm stat schedstat cgroup; do
        expect_ok "read /proc/$qpid/task/$tid/$f of another user's thread" cat /proc/$qpid/task/$tid/$f
done
expect_ok "thread name is a vCPU name" grep -q '^CPU 1/' /proc/$qpid/task/$tid/comm
expect_ok "libvirt socket (virsh domstate)" virsh -q -c qemu:///system domstate "$guest"

# The vCPU's own cgroup, from /proc/TID/cgroup (v1 cpuset, else v2).
rel=$(sed -n 's/^[0-9]*:\([^:]*,\)\?cpuset\(,[^:]*\)\?:\(.*\)/\3/p' /proc/$tid/cgroup)
if [ -n "$rel" ]; then
        root=$(awk '$9 == "cgroup" && $NF ~ /(^|,)cpuset(,|$)/ { print $5; exit }' /proc/self/mountinfo)
else
        rel=$(sed -n 's/^0::\(.*\)/\1/p' /proc/$tid/cgroup)
        root=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
fi
cg=$root$rel
echo "info: vcpu1 cgroup $cg"
old_cpus=$(cat "$cg/cpuset.cpus")
old_aff=$(taskset -pc "$tid" | sed 's/.*: //')
expect_ok "write cpuset.cpus of the vCPU cgroup" sh -c "echo 0 > '$cg/cpuset.cpus'"
expect_ok "cpuset.cpus reads back 0" test "$(cat "$cg/cpuset.cpus")" = 0
expect_ok "sched_setaffinity on another user's thread (CAP_SYS_NICE)" taskset -pc 0 "$tid"
expect_ok "affinity reads back 0" test "$(taskset -pc "$tid" | sed 's/.*: //')" = 0
echo "$old_cpus" 2>/dev/null > "$cg/cpuset.cpus"; taskset -pc "$old_aff" "$tid" >/dev/null 2>&1
expect_ok "restored cpuset.cpus $old_cpus" test "$(cat "$cg/cpuset.cpus")" = "$old_cpus"
# Outside libvirt's machine tree the cgroup files stay read-only: writing
# the cpuset root's cgroup.procs (moving this shell to where it already is
# on the host) must be refused.
expect_fail "write cgroup.procs outside libvirt's tree ($root/cgroup.procs)" sh -c "echo \$\$ > '$root/cgroup.procs'"

for d in $RUNTIME_DIRS; do
        expect_ok "bind the control socket in $d" /usr/bin/python3 -c "import socket,os; s=socket.socket(socket.AF_UNIX); s.bind('$d/probe.sock'); os.unlink('$d/probe.sock')"
done
expect_ok "log to journald from the private network namespace" sh -c "echo 'sandbox probe $TOKEN' | systemd-cat -t vcpuspreadd-sandbox-probe"
expect_ok "read the host topology (hwloc)" sh -c 'lstopo-no-graphics --of console >/dev/null'

# What the sandbox must refuse.
expect_fail "write /etc" sh -c ': > /etc/vcpuspreadd-sandbox-probe'
expect_fail "write /run outside the runtime directory" sh -c ': > /run/vcpuspreadd-sandbox-probe'
expect_fail "write /proc/sys (ProtectKernelTunables)" sh -c 'cat /proc/sys/kernel/sched_rr_timeslice_ms > /proc/sys/kernel/sched_rr_timeslice_ms'
expect_fail "write /sys outside the cgroup tree (ProtectKernelTunables)" sh -c 'cat /sys/kernel/mm/ksm/run > /sys/kernel/mm/ksm/run'
expect_fail "read /root (ProtectHome)" ls /root
expect_fail "kill another user's process (no CAP_KILL)" kill -0 "$qpid"
exit $((fails > 0))
PROBES

TOKEN=$token RUNTIME_DIRS=$runtime_dirs in_sandbox bash /dev/fd/3 "$guest" 3<&3
rc=$?
if journalctl -q -t vcpuspreadd-sandbox-probe --since=-1min -o cat 2>/dev/null | grep -qx "sandbox probe $token"; then
        echo "PASS: the journal holds the entry logged from inside"
else
        echo "FAIL: the entry logged from inside is not in the journal"; rc=1
fi
echo "sandbox probe: $([ $rc = 0 ] && echo all passed || echo FAILED)"

# Negative control outside the mount namespace: without CAP_SYS_NICE the
# affinity call must fail, or the probe above proved nothing.
tid=$(sed -n "s/.*<vcpu id='1' pid='\([0-9]*\)'.*/\1/p" "/run/libvirt/qemu/$guest.xml")
if setpriv --bounding-set=-all --inh-caps=-all taskset -pc 0 "$tid" >/dev/null 2>&1; then
        echo "FAIL: sched_setaffinity worked without CAP_SYS_NICE: the check is meaningless"; rc=1
else
        echo "PASS: without CAP_SYS_NICE sched_setaffinity is refused (control)"
fi

# The daemon itself, when built ($VCPUSPREADD): one pass in the sandbox over
# this guest alone (every other guest on the host is Policy=ignore); then its
# two vCPUs must sit on disjoint CPUs, with equal affinity and cgroup masks.
# If the pass fails, the same pass outside the sandbox tells whether the
# sandbox is to blame.  The binary and configuration are copied to /run: the
# sandbox hides /tmp, /root and /home.
if [ -n "${VCPUSPREADD:-}" ] && [ -x "$VCPUSPREADD" ]; then
        bin=$(mktemp -d /run/vcpuspreadd-sandbox-probe.XXXXXX)
        created_dirs="$created_dirs $bin"
        cp "$VCPUSPREADD" "$bin/vcpuspreadd"
        printf '[Daemon]\nDefaultPolicy=ignore\n\n[Domain]\nName=%s\nPolicy=spread\n' "$guest" >"$bin/probe.conf"
        daemon_once() { "$@" "$bin/vcpuspreadd" --once --config "$bin/probe.conf" --log-target console 2>&1; }
        out=$(daemon_once in_sandbox)
        drc=$?
        echo "$out" | grep -v '^info: ' | sed 's/^/  daemon in the sandbox: /'
        if [ $drc = 0 ]; then
                masks=""
                for v in 0 1; do
                        t=$(sed -n "s/.*<vcpu id='$v' pid='\([0-9]*\)'.*/\1/p" "/run/libvirt/qemu/$guest.xml")
                        aff=$(taskset -pc "$t" | sed 's/.*: //')
                        cpus=$(cat "$(vcpu_cgroup_dir "$t")/cpuset.cpus" 2>/dev/null || echo "?")
                        echo "info: vcpu$v tid $t: affinity $aff, cgroup cpuset.cpus $cpus"
                        [ "$(expand_cpulist "$aff")" = "$(expand_cpulist "$cpus")" ] ||
                                { echo "FAIL: vcpu$v affinity $aff and cgroup $cpus differ"; rc=1; }
                        masks="$masks $aff"
                done
                set -- $masks
                if [ -z "$(comm -12 <(expand_cpulist "$1") <(expand_cpulist "$2"))" ]; then
                        echo "PASS: vcpuspreadd --once in the sandbox placed the vCPUs on disjoint CPUs:$masks"
                else
                        echo "FAIL: vCPUs share CPUs after vcpuspreadd --once in the sandbox:$masks"; rc=1
                fi
        else
                out=$(daemon_once)
                orc=$?
                echo "$out" | sed 's/^/  daemon outside: /'
                if [ $orc = 0 ]; then
                        echo "FAIL: vcpuspreadd --once fails in the sandbox (exit $drc) but works outside"; rc=1
                else
                        echo "note: vcpuspreadd --once fails outside the sandbox too (exit $orc): not the sandbox's doing, daemon part inconclusive"
                fi
        fi
        rm -f "$bin/vcpuspreadd" "$bin/probe.conf"
fi
exit $rc
