# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# The ground every integration test stands on.  Source it, then call env_init:
#
#     source "$(dirname "$0")/env.sh"
#     env_init                        # root, libvirtd, journald ready; cleanup trap set
#     guest_start web 4 2             # transient TCG guest "<prefix>web", 2 of 4 vCPUs online
#     mapfile -t tids < <(guest_vcpu_tids web)
#     assert_disjoint "vcpu0=$(affinity_of "${tids[0]}")" "vcpu1=$(affinity_of "${tids[1]}")"
#
# Everything here is real: the host's libvirtd, QEMU processes, /proc and the
# cgroup tree.  Guest names get a prefix unique to this test process
# ($VST_PREFIX, e.g. "vst-test-env-4711-") so tests and people sharing one
# libvirtd never touch each other's guests; guest_* functions take the short
# name and guest_name prints the full one.  Every guest started here is
# destroyed when the test exits, whichever way it exits short of SIGKILL; guests
# left behind by a SIGKILLed test are reaped by the next env_init (see
# env_reap_stale_guests).
#
# Assertions exit the test with status 1 and a message saying what was
# expected and what was found.  Functions never print to stdout unless
# printing is their job, so $(...) captures only the answer.  Do not call
# guest_start in $(...) or a pipeline: the subshell would forget the guest
# (env_cleanup still destroys it by prefix, but guest_destroy cannot).

VST_CONNECT=${VST_CONNECT:-qemu:///system}
VST_SOURCE_ROOT=${SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# Where tests find the built programs ($VST_BUILD_ROOT/daemon/vcpuspreadd).
# shellcheck disable=SC2034
VST_BUILD_ROOT=${BUILD_ROOT:-$VST_SOURCE_ROOT/build}
VST_EMULATOR=${VST_EMULATOR:-/usr/bin/qemu-system-x86_64}
VST_TEST_NAME=${VST_TEST_NAME:-$(basename "$0" .sh)}
# Libvirt's qemu driver refuses '/' in names; keep the prefix to plain characters.
VST_PREFIX=${VST_PREFIX:-vst-${VST_TEST_NAME//[!A-Za-z0-9_.-]/_}-$$-}

VST_GUESTS=()           # full names of the guests this test started
VST_EXIT_HOOKS=()       # commands env_cleanup runs, last registered first
VST_TMPDIR=

# ---------------------------------------------------------------- messages

note() { printf '# %s\n' "$*" >&2; }

# Fail the test now.
fail() {
        printf 'FAIL: %s\n' "$*" >&2
        exit 1
}

# A missing precondition: skip (exit 77, meson's SKIP) when a person runs the
# test on a machine that cannot run it; in CI ($CI set) the machine is meant to
# be able to, so it is a failure.
skip_or_fail() {
        if [[ -z ${CI:-} ]]; then
                printf 'SKIP: %s\n' "$*" >&2
                exit 77
        fi
        printf 'FAIL: %s (CI is set, so a missing precondition is a failure, not a skip)\n' "$*" >&2
        exit 1
}

# ---------------------------------------------------------------- assertions

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
        local what=${3:-value}
        [[ $1 == "$2" ]] || fail "$what: expected '$2', got '$1'"
}

# assert_ne ACTUAL UNEXPECTED [WHAT]
assert_ne() {
        local what=${3:-value}
        [[ $1 != "$2" ]] || fail "$what: expected anything but '$2'"
}

# assert_ok WHAT CMD...: the command must succeed.
assert_ok() {
        local what=$1; shift
        "$@" || fail "$what: '$*' exited with status $?"
}

# assert_disjoint [LABEL=]CPULIST...: no CPU appears in two of the lists.
# Labels only make the message clearer: assert_disjoint "vcpu0=0-1" "vcpu1=1".
assert_disjoint() {
        local -A owner=()
        local arg label list cpu cpus i=0
        (( $# >= 2 )) || fail "assert_disjoint: needs at least two CPU lists, got $#"
        for arg in "$@"; do
                i=$((i + 1))
                if [[ $arg == *=* ]]; then
                        label=${arg%%=*} list=${arg#*=}
                else
                        label="list $i" list=$arg
                fi
                [[ -n $list ]] || fail "assert_disjoint: $label is an empty CPU list"
                cpus=$(cpulist_expand "$list") || fail "assert_disjoint: $label: '$list' is not a CPU list"
                for cpu in $cpus; do
                        [[ -z ${owner[$cpu]:-} ]] ||
                                fail "CPU lists overlap: CPU $cpu is in both ${owner[$cpu]} and $label ($list); all: $*"
                        owner[$cpu]="$label ($list)"
                done
        done
}

# read_line VAR FILE: the first line of FILE into VAR.  Returns 1, silently,
# when FILE cannot be read (a thread that just exited): bash's $(<FILE) would
# end a `set -e` script there, even inside an `if`.
read_line() { IFS= read -r "$1" 2>/dev/null < "$2"; }

# ---------------------------------------------------------------- CPU lists

# cpulist_expand LIST: kernel-style list ("0-3,8") to "0 1 2 3 8" (sorted,
# unique).  Says so and returns 1 on anything that is not a list.
cpulist_expand() {
        local part lo hi c
        local -a out=()
        local IFS=,
        [[ -n $1 ]] || return 0
        for part in $1; do
                if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
                        lo=$((10#${BASH_REMATCH[1]})) hi=$((10#${BASH_REMATCH[2]}))
                elif [[ $part =~ ^[0-9]+$ ]]; then
                        lo=$((10#$part)) hi=$lo
                else
                        lo=1 hi=0
                fi
                (( lo <= hi )) || { note "not a CPU list: '$1' (at '$part')"; return 1; }
                for ((c = lo; c <= hi; c++)); do out+=("$c"); done
        done
        IFS=$'\n'
        printf '%s\n' "${out[@]}" | sort -nu | paste -sd' '
}

# cpulist_normalize LIST: "3,0-1,2" to "0-3", the kernel's own spelling.
cpulist_normalize() {
        local cpus c start=-1 prev=-1 spelled=""
        cpus=$(cpulist_expand "$1") || return 1
        for c in $cpus; do
                if (( c == prev + 1 && start >= 0 )); then
                        prev=$c
                        continue
                fi
                (( start >= 0 )) && spelled+=$(_cpulist_range "$start" "$prev"),
                start=$c prev=$c
        done
        (( start >= 0 )) && spelled+=$(_cpulist_range "$start" "$prev")
        printf '%s\n' "${spelled%,}"
}

_cpulist_range() {
        if (( $1 == $2 )); then printf '%s' "$1"; else printf '%s-%s' "$1" "$2"; fi
}

# cpus_online: the host's online CPUs, e.g. "0-1".
cpus_online() { cat /sys/devices/system/cpu/online; }

# ---------------------------------------------------------------- threads

# affinity_of TID: the thread's scheduler affinity as a CPU list.
affinity_of() {
        local line try
        # A read of /proc/TID/status that fails part-way ends the loop as if
        # the line were missing (CI once: "no Cpus_allowed_list" for a vCPU
        # thread, cause not found); read again before calling it gone, and
        # say what the thread looked like.
        for try in 1 2 3; do
                [[ -e /proc/$1/status ]] || { note "affinity_of: no thread $1"; return 1; }
                while read -r line; do
                        if [[ $line == Cpus_allowed_list:* ]]; then
                                printf '%s\n' "${line#*:$'\t'}"
                                return 0
                        fi
                done < "/proc/$1/status" || return 1
                sleep 0.1
        done
        note "affinity_of: no Cpus_allowed_list in /proc/$1/status after 3 reads; $(grep -E '^(Name|State|Tgid):' "/proc/$1/status" 2>&1 | paste -sd' ')"
        return 1
}

# cpuset_of TID: cpuset.cpus of the cgroup the thread is in, read from the
# path in /proc/TID/cgroup (cgroup v1 cpuset hierarchy if mounted, else v2;
# on v2 an empty cpuset.cpus means "inherited", so the effective set is
# printed).  For checking the daemon's work only: the daemon finds cgroups
# its own way.
cpuset_of() {
        local tid=$1 line id ctrls path v2path="" mnt file cpus
        [[ -e /proc/$tid/cgroup ]] || { note "cpuset_of: no thread $tid"; return 1; }
        while IFS= read -r line; do
                id=${line%%:*} line=${line#*:}
                ctrls=${line%%:*} path=${line#*:}
                if [[ ,$ctrls, == *,cpuset,* ]]; then
                        mnt=$(_cgroup_mount cgroup cpuset) || break
                        file=$mnt$path/cpuset.cpus
                        read_line cpus "$file" || { note "cpuset_of: cannot read $file"; return 1; }
                        printf '%s\n' "$cpus"
                        return 0
                fi
                [[ $id == 0 && -z $ctrls ]] && v2path=$path
        done < "/proc/$tid/cgroup" || return 1

        if [[ -n $v2path ]] && mnt=$(_cgroup_mount cgroup2) && [[ -e $mnt$v2path/cpuset.cpus ]]; then
                read_line cpus "$mnt$v2path/cpuset.cpus" || return 1
                [[ -n $cpus ]] || read_line cpus "$mnt$v2path/cpuset.cpus.effective" || return 1
                printf '%s\n' "$cpus"
                return 0
        fi
        note "cpuset_of: thread $tid is in no cgroup with a cpuset controller"
        return 1
}

# _cgroup_mount FSTYPE [OPTION]: mount point of the first such cgroup mount.
_cgroup_mount() {
        local mnt type opts
        while read -r _ mnt type opts _; do
                [[ $type == "$1" ]] || continue
                [[ -z ${2:-} || ,$opts, == *,$2,* ]] || continue
                printf '%s\n' "$mnt"
                return 0
        done < /proc/self/mounts
        return 1
}

# ---------------------------------------------------------------- waiting

_now_ms() {
        local us=${EPOCHREALTIME//[!0-9]/}
        REPLY=$((10#$us / 1000))
}

# wait_until TIMEOUT_MS CMD...: run CMD every 20 ms until it succeeds (return
# 0) or TIMEOUT_MS passed (return 1).  CMD runs at least once, and once more
# after the deadline so a slow last poll cannot turn success into a timeout.
wait_until() {
        local timeout=$1 deadline; shift
        _now_ms; deadline=$((REPLY + timeout))
        while :; do
                "$@" && return 0
                _now_ms
                if (( REPLY >= deadline )); then
                        "$@" && return 0
                        return 1
                fi
                sleep 0.02
        done
}

# ---------------------------------------------------------------- journald

# journal_json [JOURNALCTL-ARGS...]: matching entries, one compact JSON object
# per line.  journalctl writes a value that is not printable UTF-8 as an
# array of bytes and a repeated field as an array of values; both are turned
# back into strings here (bytes as code points, which is exact for ASCII; a
# repeated field's values joined with newlines).
journal_json() {
        local after=""
        local -a args=()
        # journalctl 252 (Debian 12) with --after-cursor plus a match skips the
        # first matching entry when the cursor's own entry does not match, so
        # start *at* the cursor and drop that one entry here instead.
        while (( $# )); do
                case $1 in
                --after-cursor) after=$2; args+=(--cursor "$2"); shift 2 ;;
                --after-cursor=*) after=${1#*=}; args+=(--cursor "$after"); shift ;;
                *) args+=("$1"); shift ;;
                esac
        done
        journalctl --sync >/dev/null 2>&1 || true
        journalctl --no-pager --all -o json "${args[@]}" | jq -c --arg after "$after" '
                def bytes: if type == "array" and all(.[]; type == "number") then implode else . end;
                select(.__CURSOR != $after)
                | with_entries(.value |= (bytes | if type == "array" then map(bytes) | join("\n") else . end))'
}

# journal_fields [JOURNALCTL-ARGS...] -- FIELD...: for each matching entry one
# line with the fields tab-separated (missing fields empty; tabs, newlines and
# backslashes escaped as \t \n \\).  Example:
#   journal_fields --after-cursor "$c" SYSLOG_IDENTIFIER=vcpuspreadd -- VCPUSPREAD_DOMAIN VCPUSPREAD_TID
journal_fields() {
        local -a args=()
        while (( $# )) && [[ $1 != -- ]]; do args+=("$1"); shift; done
        (( $# )) || fail "journal_fields: missing '--' before the field names"
        shift
        (( $# )) || fail "journal_fields: no field names"
        journal_json "${args[@]}" | jq -r '[$ARGS.positional[] as $f | .[$f] // ""] | @tsv' --args "$@"
}

# journal_cursor: a cursor for "now"; pass it as --after-cursor to see only
# entries written later.  Prints nothing when the journal is empty.
journal_cursor() {
        journalctl --sync >/dev/null 2>&1 || true
        journalctl --no-pager -n 1 -o json | jq -r '.__CURSOR // empty'
}

# ---------------------------------------------------------------- libvirt

vsh() { virsh -q -c "$VST_CONNECT" "$@"; }

# guest_name NAME: the full libvirt name of this test's guest NAME.
guest_name() { printf '%s\n' "$VST_PREFIX$1"; }

_xml_escape() {
        local s=$1
        # Replacements quoted: bash 5.2's patsub_replacement makes a bare & the match.
        s=${s//'&'/'&amp;'} s=${s//'<'/'&lt;'} s=${s//'>'/'&gt;'}
        s=${s//"'"/'&apos;'} s=${s//'"'/'&quot;'}
        printf '%s' "$s"
}

# Who owns a guest, written into its <title> so a later test can tell a
# guest whose test died (SIGKILL, no trap) from one whose test still runs.
_owner_tag() {
        local stat fields
        read_line stat "/proc/$1/stat" || return 1
        read -ra fields <<< "${stat##*) }"
        # Field 22 of stat, the process start time; fields[0] is field 3.
        printf 'vst-owner pidns=%s pid=%s start=%s' "$(readlink /proc/self/ns/pid)" "$1" "${fields[19]}"
}

# guest_xml [--cpuset LIST] [--kernel FILE] NAME VCPUS [CURRENT] [TYPE] [EXTRA_XML]:
# the domain XML guest_start uses (see there), for tests that need to change it.
guest_xml() {
        local cpuset="" kernel=""
        while [[ ${1:-} == --* ]]; do
                case $1 in
                --cpuset) cpuset=$2; shift 2 ;;
                --cpuset=*) cpuset=${1#*=}; shift ;;
                --kernel) kernel=$2; shift 2 ;;
                --) shift; break ;;
                *) fail "guest_xml: unknown option $1" ;;
                esac
        done
        (( $# >= 2 )) || fail "usage: guest_start|guest_xml [--cpuset LIST] NAME VCPUS [CURRENT] [TYPE] [EXTRA_XML]"
        local name=$1 vcpus=$2 current=${3:-$2} type=${4:-qemu} extra=${5:-}
        local vcpu_attrs="placement='static' current='$current'"
        [[ -n $cpuset ]] && vcpu_attrs+=" cpuset='$(_xml_escape "$cpuset")'"
        cat <<EOF
<domain type='$(_xml_escape "$type")'>
  <name>$(_xml_escape "$VST_PREFIX$name")</name>
  <title>$(_owner_tag $$)</title>
  <memory unit='MiB'>64</memory>
  <vcpu $vcpu_attrs>$vcpus</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>${kernel:+<kernel>$(_xml_escape "$kernel")</kernel>}</os>
  <features><acpi/></features>
  <on_crash>destroy</on_crash>
  <devices><emulator>$VST_EMULATOR</emulator></devices>
  $extra
</domain>
EOF
}

# guest_start [--cpuset LIST] [--kernel FILE] NAME VCPUS [CURRENT] [TYPE] [EXTRA_XML]
# Start a transient guest with no OS (or --kernel FILE: that multiboot image, such
# as spin_kernel's, in place of the BIOS's search for a boot disk): VCPUS
# maximum vCPUs of which CURRENT (default all) are online, TYPE qemu (TCG, the default) or kvm, 64 MiB, ACPI
# on (hotplug needs it), <vcpu cpuset='LIST'> with --cpuset, and EXTRA_XML
# (e.g. "<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>") inside <domain>.
# Returns once the QEMU process and its CURRENT vCPU threads exist.
guest_start() {
        local xml full file pid
        local -a opts=()
        while [[ ${1:-} == --* ]]; do
                if [[ $1 == *=* || $1 == -- ]]; then opts+=("$1"); shift; else opts+=("$1" "$2"); shift 2; fi
        done
        xml=$(guest_xml "${opts[@]}" "$@") || exit 1
        full=$VST_PREFIX$1
        local current=${3:-$2}

        _env_tmpdir
        file=$VST_TMPDIR/guest-${#VST_GUESTS[@]}.xml
        printf '%s\n' "$xml" > "$file"
        # Tracked before it exists, so a start that half-succeeds is cleaned up too.
        VST_GUESTS+=("$full")
        if ! vsh create "$file" >/dev/null 2>"$file.err"; then
                cat "$file.err" >&2
                # Other tests restart the shared libvirtd on purpose; a create
                # cut off by that is retried once, anything else is a failure.
                grep -Eq 'End of file|Disconnected from|Cannot recv data|Failed to connect' "$file.err" ||
                        fail "guest_start: virsh create failed for '$full' (domain XML in $file)"
                note "guest_start: lost libvirtd while creating '$full'; retrying once when it answers"
                _ensure_libvirtd || fail "guest_start: libvirtd does not answer again"
                guest_exists "$1" || vsh create "$file" >/dev/null ||
                        fail "guest_start: virsh create failed twice for '$full' (domain XML in $file)"
        fi
        wait_until 10000 _guest_has_vcpu_threads "$1" "$current" ||
                fail "guest_start: '$full' has not $current vCPU threads after 10 s (found: $(guest_vcpu_tids "$1" | paste -sd' '))"
        pid=$(guest_qemu_pid "$1") || fail "guest_start: no QEMU process for '$full'"
        note "started guest '$full': ${4:-qemu}, $current of $2 vCPUs${opts[*]:+, ${opts[*]}}, qemu pid $pid, vCPU tids $(guest_vcpu_tids "$1" | paste -sd' ')"
}

# spin_kernel FILE: write a 8 KiB multiboot image whose every vCPU spins
# (the boot CPU starts the others with INIT/SIPI; all run "jmp $"), for
# tests that need busy vCPUs.  FILE must be where QEMU may read it.
spin_kernel() {
        python3 - "$1" <<'PY'
import struct, sys
magic, flags, base = 0x1BADB002, 0x00010000, 0x100000   # multiboot, a.out kludge: load at 1 MiB
header = struct.pack('<8I', magic, flags, (-(magic + flags)) & 0xffffffff, base, base, 0, 0, base + 32)
def store(addr, value): return b'\xc7\x05' + struct.pack('<II', addr, value)   # mov dword [addr], value
delay = b'\xb9' + struct.pack('<I', 0x200000) + b'\xe2\xfe'                   # mov ecx, n; loop $
code = (store(0x8000, 0xfeeb)                   # the APs' real-mode entry: jmp $
        + store(0xfee000f0, 0x1ff)              # local APIC software-enabled
        + store(0xfee00310, 0) + store(0xfee00300, 0x000c4500) + delay      # INIT to all but self
        + store(0xfee00300, 0x000c4608) + delay + store(0xfee00300, 0x000c4608)  # SIPI x2, page 8
        + b'\xeb\xfe')                          # jmp $
open(sys.argv[1], 'wb').write((header + code).ljust(8192, b'\0'))
PY
}

_guest_has_vcpu_threads() {
        local n
        n=$(guest_vcpu_tids "$1" 2>/dev/null | wc -l)
        (( n == $2 ))
}

# guest_uuid NAME
guest_uuid() { vsh domuuid "$VST_PREFIX$1" 2>/dev/null; }

# guest_qemu_pid NAME: the QEMU process of the guest, found from the
# -uuid argument libvirt gives QEMU (the UUID, unlike the name, needs no
# escaping and libvirt's status files are what the daemon reads, so this
# stays an independent check).
guest_qemu_pid() {
        local uuid pid comm
        uuid=$(guest_uuid "$1") || { note "guest_qemu_pid: no running guest '$VST_PREFIX$1'"; return 1; }
        for pid in $(pgrep -f -- "-uuid $uuid( |$)"); do
                read_line comm "/proc/$pid/comm" || continue
                [[ $comm == qemu-system* ]] || continue
                printf '%s\n' "$pid"
                return 0
        done
        note "guest_qemu_pid: no QEMU process with -uuid $uuid for '$VST_PREFIX$1'"
        return 1
}

# guest_vcpu_map NAME: "VCPU TID" lines, by vCPU index, from the thread
# names QEMU gives vCPU threads ("CPU 2/TCG", "CPU 2/KVM").
guest_vcpu_map() {
        local pid task comm
        pid=$(guest_qemu_pid "$1") || return 1
        for task in /proc/"$pid"/task/*; do
                read_line comm "$task/comm" || continue   # thread just exited
                [[ $comm =~ ^CPU\ ([0-9]+)/(TCG|KVM)$ ]] || continue
                printf '%s %s\n' "${BASH_REMATCH[1]}" "${task##*/}"
        done | sort -n
}

# guest_vcpu_tids NAME: the vCPU thread ids, one a line, by vCPU index.
guest_vcpu_tids() {
        local map
        map=$(guest_vcpu_map "$1") || return 1
        [[ -n $map ]] && printf '%s\n' "$map" | cut -d' ' -f2
        return 0
}

# guest_vcpu_tid NAME VCPU: the thread id of one vCPU.
guest_vcpu_tid() {
        local vcpu tid
        while read -r vcpu tid; do
                [[ $vcpu == "$2" ]] && { printf '%s\n' "$tid"; return 0; }
        done < <(guest_vcpu_map "$1")
        note "guest_vcpu_tid: '$VST_PREFIX$1' has no thread for vCPU $2"
        return 1
}

# guest_log_file NAME: libvirt's log of the guest's QEMU (where "tainted" shows).
guest_log_file() { printf '/var/log/libvirt/qemu/%s.log\n' "$VST_PREFIX$1"; }

# domain_listed FULLNAME: 0 when libvirt lists the domain, 1 when it answers
# without it, 2 when libvirt does not answer.  So "gone" is never concluded
# from a libvirtd that is down (other tests restart it).
domain_listed() {
        local names
        names=$(vsh list --all --name 2>/dev/null) || return 2
        grep -Fxq -- "$1" <<< "$names"
}

# domain_gone FULLNAME: libvirt answers and does not list the domain.
domain_gone() {
        local rc=0
        domain_listed "$1" || rc=$?
        (( rc == 1 ))
}

# guest_exists NAME, guest_gone NAME: the same for this test's guest NAME.
guest_exists() { domain_listed "$VST_PREFIX$1"; }
guest_gone() { domain_gone "$VST_PREFIX$1"; }

_domain_destroy() {
        local full=$1
        domain_gone "$full" && return 0
        vsh destroy "$full" >/dev/null 2>&1 || true
        wait_until 10000 domain_gone "$full" || { note "could not destroy guest '$full'"; return 1; }
}

# guest_destroy NAME: destroy the guest now and wait until it is gone.
guest_destroy() {
        local full=$VST_PREFIX$1 i
        _domain_destroy "$full" || fail "guest_destroy: '$full' still exists"
        for i in "${!VST_GUESTS[@]}"; do
                [[ ${VST_GUESTS[$i]} == "$full" ]] && unset 'VST_GUESTS[i]'
        done
        VST_GUESTS=("${VST_GUESTS[@]}")
}

# env_prefixed_guests: full names of every domain that carries this test's
# prefix (including ones started from subshells).  Returns 2 when libvirt
# does not answer, so "none left" is never concluded from a down libvirtd.
env_prefixed_guests() {
        local names n
        names=$(vsh list --all --name 2>/dev/null) || return 2
        while IFS= read -r n; do
                [[ -n $n && $n == "$VST_PREFIX"* ]] && printf '%s\n' "$n"
        done <<< "$names"
        return 0
}

# env_reap_stale_guests: destroy test guests (vst-*) whose owning test
# process is gone: in this PID namespace, and either no process with that pid
# or one started at another time.  A guest without our owner tag is not ours
# and is never touched.
env_reap_stale_guests() {
        local n title pidns pid start stat myns
        local -a fields
        myns=$(readlink /proc/self/ns/pid)
        while IFS= read -r n; do
                [[ $n == vst-* ]] || continue
                title=$(vsh desc --title "$n" 2>/dev/null) || continue
                [[ $title =~ ^vst-owner\ pidns=(.+)\ pid=([0-9]+)\ start=([0-9]+)$ ]] || continue
                pidns=${BASH_REMATCH[1]} pid=${BASH_REMATCH[2]} start=${BASH_REMATCH[3]}
                [[ $pidns == "$myns" ]] || continue
                if read_line stat "/proc/$pid/stat"; then
                        read -ra fields <<< "${stat##*) }"
                        [[ ${fields[19]:-} == "$start" ]] && continue    # owner still runs
                fi
                note "destroying stale guest '$n' (its test, pid $pid, is gone)"
                _domain_destroy "$n" || true
        done < <(vsh list --name 2>/dev/null)
}

# have_kvm: true when guests of type kvm can run here.
have_kvm() { [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]]; }

# ---------------------------------------------------------------- cleanup

# env_on_exit CMD...: run CMD when the test exits (before its guests are
# destroyed; last registered runs first), e.g. env_on_exit kill "$daemon_pid".
env_on_exit() {
        local q
        printf -v q '%q ' "$@"
        VST_EXIT_HOOKS+=("$q")
}

_env_tmpdir() {
        [[ -n $VST_TMPDIR ]] && return 0
        VST_TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/vst-$VST_TEST_NAME.XXXXXX")
}

# env_cleanup: run exit hooks, destroy every guest of this test, remove
# temporary files.  Runs from the EXIT trap; calling it earlier is fine.
env_cleanup() {
        local i n
        for ((i = ${#VST_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
                eval "${VST_EXIT_HOOKS[i]}" || note "exit hook failed: ${VST_EXIT_HOOKS[i]}"
        done
        VST_EXIT_HOOKS=()
        # A test that stopped libvirtd and failed before restarting it would
        # otherwise leave its guests running unseen.
        if (( ${#VST_GUESTS[@]} )) && ! _libvirt_answers; then
                _ensure_libvirtd || note "libvirtd is not answering: cannot destroy ${VST_GUESTS[*]}"
        fi
        for n in "${VST_GUESTS[@]}"; do
                _domain_destroy "$n" || true
        done
        VST_GUESTS=()
        while IFS= read -r n; do
                _domain_destroy "$n" || true
        done < <(env_prefixed_guests)
        [[ -n $VST_TMPDIR ]] && rm -rf -- "$VST_TMPDIR"
        VST_TMPDIR=
        return 0
}

_env_exit_trap() {
        local status=$?
        trap - EXIT
        env_cleanup
        exit "$status"
}

# ---------------------------------------------------------------- host setup

_have_systemd() { [[ -d /run/systemd/system ]]; }

# journald listening, not just its socket files left behind: systemd-cat
# connects to journald's stream socket and logs nothing for a silent `true`.
_journald_alive() {
        [[ -S /run/systemd/journal/socket ]] && systemd-cat -t vcpuspread-test-probe true 2>/dev/null
}

_libvirt_answers() { virsh -c "$VST_CONNECT" version >/dev/null 2>&1; }

# Start a daemon detached from the test: own session, no inherited
# descriptors, so neither meson (waiting on the test's output) nor a signal
# to the test's process group reaches it.
_start_detached() {
        (
                # A daemon started here must not keep descriptors its starter
                # inherited: one holding a caller's lock file (flock(1) passes
                # it down) would hold that lock for the daemon's whole life.
                local fd
                for fd in $(ls /proc/$BASHPID/fd); do
                        (( fd > 2 )) && eval "exec $fd>&-"
                done
                exec setsid "$@" </dev/null >/dev/null 2>&1
        ) &
        note "started $* (pid $!)"
}

# _ensure_libvirtd: virtlogd running and libvirtd answering, starting what
# is missing.  Returns 1 (never exits) so env_cleanup can use it too.
_ensure_libvirtd() {
        if _have_systemd; then
                _libvirt_answers && return 0
                note "starting virtlogd and libvirtd (systemctl)"
                systemctl start virtlogd.socket virtlogd.service libvirtd.service || return 1
        else
                # QEMU guests log through virtlogd: libvirtd answering without
                # it still cannot start a guest.
                if ! pgrep -x virtlogd >/dev/null; then
                        _start_detached virtlogd -d
                fi
                if ! _libvirt_answers && ! pgrep -x libvirtd >/dev/null; then
                        _start_detached libvirtd -d
                fi
        fi
        wait_until 30000 _libvirt_answers || return 1
        # systemd starts virtlogd on first use, from its socket.
        _have_systemd || wait_until 10000 pgrep -x virtlogd >/dev/null
}

# env_setup_host: make this machine able to run the integration tests, and
# leave running what it started (it is meant to serve every later test).
# Idempotent and quick when everything already runs.
env_setup_host() {
        local cmd
        [[ $EUID -eq 0 ]] || skip_or_fail "integration tests need root (libvirtd, /proc of QEMU, cgroups)"
        for cmd in virsh libvirtd virtlogd "$VST_EMULATOR" jq journalctl pgrep setsid; do
                command -v "$cmd" >/dev/null ||
                        skip_or_fail "'$cmd' is missing; run tools/install-deps.sh as root"
        done

        # The socket outlives journald: a machine whose processes were killed
        # (a CI runner after the session that used it) keeps a dead
        # /run/systemd/journal/socket that refuses every entry.
        if ! _journald_alive; then
                if _have_systemd; then
                        note "starting systemd-journald (systemctl)"
                        systemctl start systemd-journald.socket systemd-journald.service ||
                                skip_or_fail "systemctl start systemd-journald failed"
                else
                        # No systemd as PID 1: journald runs fine started by hand,
                        # creating its own sockets.
                        note "no journald and systemd is not PID 1: starting it by hand"
                        [[ -x /lib/systemd/systemd-journald ]] ||
                                skip_or_fail "/lib/systemd/systemd-journald is missing; install systemd"
                        _start_detached /lib/systemd/systemd-journald
                fi
                wait_until 10000 _journald_alive ||
                        skip_or_fail "journald does not accept entries on /run/systemd/journal/socket after 10 s"
        fi

        if [[ -e /dev/kvm ]]; then
                # Without udev /dev/kvm is root-only; QEMU runs as libvirt-qemu, in group kvm.
                if getent group kvm >/dev/null; then chgrp kvm /dev/kvm; fi
                chmod 0660 /dev/kvm
        fi

        _ensure_libvirtd ||
                skip_or_fail "libvirtd does not answer 'virsh -c $VST_CONNECT version' after 30 s"
        [[ -x $VST_EMULATOR ]] || skip_or_fail "$VST_EMULATOR is missing; install qemu-system-x86"
}

# env_init: host set up, exit trap armed, stale guests of dead tests reaped.
env_init() {
        env_setup_host
        trap _env_exit_trap EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
        env_reap_stale_guests
        note "test '$VST_TEST_NAME': guests are named '$VST_PREFIX*', libvirt $VST_CONNECT"
}
