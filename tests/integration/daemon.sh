# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# Running the real vcpuspreadd in integration tests.  Source after env.sh and
# env_init.  The daemon gets its own configuration, control socket and
# journal identity per test, and a [Domain] rule set that manages only this
# test's guests: other users of the shared libvirtd are never touched.

VST_DAEMON=${VST_DAEMON:-$VST_BUILD_ROOT/daemon/vcpuspreadd}
VST_CTL=${VST_CTL:-$VST_BUILD_ROOT/daemon/vcpuspreadctl}
DAEMON_PID=
DAEMON_CURSOR=

# MESSAGE_IDs (daemon/message-ids.h)
MSGID_VCPU_MOVED=954872ac443543179452f41d7304bb32
MSGID_DOMAIN_FOUND=ed08fd35f8f14eabb37ef8bf1dfbe966
MSGID_BACKED_OFF=21a8d602547445e8a1e308849d49c0cb
MSGID_CONFIG=d16c1b17307f4b9da8f58c0ac8986470
MSGID_PLACED_LATENCY=9320469519e940c6987818016b00addb
MSGID_AUTO_MODE=2faf7187840a4e5dae3f7c7748d582e2
MSGID_AUTO_TRIAL_KEPT=df944897cd754e7da167b212516b27b7
MSGID_AUTO_TRIAL_REVERTED=6fe13ab4587f43438550ebe2b516107d
MSGID_AUTO_RELEASED=70d9107c4e8d44029f56f8bcecc18d70

[[ -x $VST_DAEMON ]] || fail "no daemon at $VST_DAEMON: build first (meson compile -C build)"

daemon_conf() { printf '%s\n' "$VST_TMPDIR/vcpuspreadd.conf"; }
daemon_socket() { printf '%s\n' "$VST_TMPDIR/control.sock"; }

# daemon_write_config [EXTRA_DOMAIN_SECTIONS]: this test's guests are spread
# (unless EXTRA sections, tried first, say otherwise); every other guest ignored.
daemon_write_config() {
        _env_tmpdir
        cat > "$(daemon_conf)" <<CONF
[Daemon]
ControlSocket=$(daemon_socket)
${DAEMON_EXTRA_DAEMON_KEYS:-}

${1:-}

[Domain]
Name=${VST_PREFIX}*
Policy=spread

[Domain]
Name=*
Policy=ignore
CONF
}

_daemon_answers() { "$VST_CTL" status --socket "$(daemon_socket)" >/dev/null 2>&1; }

# daemon_status_field FIELD: one field of status --json's "daemon" object.
daemon_status_field() {
        "$VST_CTL" status --json --socket "$(daemon_socket)" 2>/dev/null | jq -r --arg f "$1" '.daemon[$f]'
}

# The first full resync (list, plan, apply) is done: the socket alone
# answers before it.
_daemon_resynced() { [[ $(daemon_status_field resyncs) =~ ^[1-9] ]]; }

_daemon_passes_at_least() {
        local n
        n=$(daemon_status_field passes)
        [[ $n =~ ^[0-9]+$ ]] && (( n >= $1 ))
}

# daemon_wait_passes N: wait until the daemon has applied N planning passes in all.
daemon_wait_passes() {
        wait_until 10000 _daemon_passes_at_least "$1" ||
                fail "daemon did not reach $1 planning passes in 10 s (at $(daemon_status_field passes))"
}

# Under valgrind (tools/test.sh runs a subset so) the daemon starts and
# stops several times slower: its start and stop get that much longer,
# the checks of what it does keep their own bounds.
_daemon_slow() { [[ $VST_DAEMON == *valgrind* ]] && REPLY=3 || REPLY=1; }

# daemon_start [ARGS...]: start the daemon in the background (journal
# logging) and wait until its control socket answers and its first resync
# has been applied.
daemon_start() {
        [[ -f $(daemon_conf) ]] || daemon_write_config
        DAEMON_CURSOR=$(journal_cursor)
        "$VST_DAEMON" --config "$(daemon_conf)" --log-target journal "$@" \
                > "$VST_TMPDIR/daemon.out" 2>&1 &
        DAEMON_PID=$!
        env_on_exit daemon_kill
        local slow; _daemon_slow; slow=$REPLY
        wait_until $((10000 * slow)) _daemon_answers ||
                fail "daemon (pid $DAEMON_PID) does not answer on $(daemon_socket) after $((10 * slow)) s: $(cat "$VST_TMPDIR/daemon.out")"
        wait_until $((10000 * slow)) _daemon_resynced ||
                fail "daemon (pid $DAEMON_PID) has not finished its first resync after $((10 * slow)) s: $(cat "$VST_TMPDIR/daemon.out")"
        note "vcpuspreadd running, pid $DAEMON_PID"
}

daemon_kill() {
        [[ -n $DAEMON_PID ]] && kill -KILL "$DAEMON_PID" 2>/dev/null
        DAEMON_PID=
        return 0
}

daemon_alive() { [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; }

# daemon_stop: SIGTERM, and it must exit 0 within 5 s (15 s under valgrind).
daemon_stop() {
        local status=0 pid=$DAEMON_PID slow
        [[ -n $pid ]] || return 0
        _daemon_slow; slow=$REPLY
        kill -TERM "$pid"
        wait_until $((5000 * slow)) eval '! kill -0 '"$pid"' 2>/dev/null' ||
                fail "daemon ignored SIGTERM for $((5 * slow)) s"
        wait "$pid" || status=$?
        DAEMON_PID=
        assert_eq "$status" 0 "daemon exit status after SIGTERM"
}

# daemon_entries [JOURNAL MATCHES...] -- FIELD...: this daemon's journal
# entries since daemon_start (or since $1 given as --after-cursor C).
daemon_fields() {
        local -a args=()
        [[ -n $DAEMON_CURSOR ]] && args+=(--after-cursor "$DAEMON_CURSOR")
        journal_fields "${args[@]}" SYSLOG_IDENTIFIER=vcpuspreadd "$@"
}

# moves_count [DOMAIN]: vCPU moves logged since daemon_start.
moves_count() {
        local -a match=("MESSAGE_ID=$MSGID_VCPU_MOVED")
        [[ -n ${1:-} ]] && match+=("VCPUSPREAD_DOMAIN=$1")
        daemon_fields "${match[@]}" -- VCPUSPREAD_TID | grep -c . || true
}

# guest_affinities NAME: "vcpuN=CPUS" words, one per vCPU thread.
guest_affinities() {
        local vcpu tid a out=()
        while read -r vcpu tid; do
                a=$(affinity_of "$tid") || return 1
                out+=("vcpu$vcpu=$a")
        done < <(guest_vcpu_map "$1")
        printf '%s\n' "${out[*]}"
}

# guest_is_spread NAME: every vCPU's affinity is a proper subset of the host's
# CPUs, the vCPUs' affinities are pairwise disjoint, and each thread's
# cpuset cgroup holds exactly its affinity.
guest_is_spread() {
        local vcpu tid a c online
        local -a lists=()
        online=$(cpus_online)
        while read -r vcpu tid; do
                a=$(affinity_of "$tid") || return 1
                c=$(cpuset_of "$tid") || return 1
                [[ $a != "$online" ]] || return 1
                [[ $(cpulist_normalize "$a") == $(cpulist_normalize "$c") ]] || return 1
                lists+=("vcpu$vcpu=$a")
        done < <(guest_vcpu_map "$1")
        (( ${#lists[@]} >= 2 )) || return 1
        ( assert_disjoint "${lists[@]}" ) 2>/dev/null
}
