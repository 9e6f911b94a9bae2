#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Guest churn while the daemon runs: $CHURN_TOTAL (200) guest lifecycles in
# $CHURN_WORKERS (5) parallel streams, no OS, of four kinds in turn:
#   long  lives >= 2 s, then must be placed correctly (its vCPUs on pairwise
#         disjoint CPUs, each thread's cpuset cgroup equal to its affinity);
#   hot   starts with 1 of 4 vCPUs, gets a second hot-plugged, lives >= 2 s,
#         then must be placed correctly;
#   flash destroyed at once, within a second of its start;
#   short destroyed half a second after its start.
# Afterwards: the daemon runs, logged no error (priority err or worse; a
# warning about a move cut short by a guest that vanished is an expected
# race), and its RSS and open descriptors are within a small bound of what
# they were after warm-up (both printed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
env_init
source "$here/daemon.sh"

TOTAL=${CHURN_TOTAL:-200}
WORKERS=${CHURN_WORKERS:-5}
RSS_SLACK_KB=${CHURN_RSS_SLACK_KB:-4096}
FD_SLACK=${CHURN_FD_SLACK:-2}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
fd_count() { ls "/proc/$DAEMON_PID/fd" | wc -l; }

# Debug messages on: a failed lifecycle is then explained by the daemon's
# own account of that guest (printed below).
daemon_start --verbose
# Warm-up: one lifecycle of each kind, so allocations made once (libvirt's
# connection, the index, caches) are in "before".
guest_start warm 4 1
vsh setvcpus "$(guest_name warm)" 2 --live >/dev/null
wait_until 5000 _guest_has_vcpu_threads warm 2 || fail "warm-up hotplug failed"
wait_until 10000 guest_is_spread warm || fail "warm-up guest not spread: $(guest_affinities warm)"
guest_destroy warm
sleep 1
rss_before=$(rss_kb) fds_before=$(fd_count)
cursor=$(journal_cursor)

# one_lifecycle I: the I-th lifecycle; prints "I KIND ok|FAIL(why) LIVED_MS".
one_lifecycle() {
        local i=$1 kind name file t0 lived verdict=ok
        case $((i % 4)) in
        0) kind=long ;; 1) kind=hot ;; 2) kind=flash ;; 3) kind=short ;;
        esac
        name=churn$i
        file=$VST_TMPDIR/churn-$i.xml
        if [[ $kind == hot ]]; then guest_xml "$name" 4 1 > "$file"; else guest_xml "$name" 2 > "$file"; fi
        _now_ms; t0=$REPLY
        if ! vsh create "$file" >/dev/null 2>"$file.err"; then
                printf '%s %s FAIL(create:%s) 0\n' "$i" "$kind" "$(head -c 80 "$file.err" | tr ' \n' '__')"
                return
        fi
        case $kind in
        flash) ;;
        short) sleep 0.5 ;;
        long|hot)
                if [[ $kind == hot ]]; then
                        wait_until 10000 _guest_has_vcpu_threads "$name" 1 || verdict="FAIL(no-thread)"
                        sleep 0.3
                        vsh setvcpus "$(guest_name "$name")" 2 --live >/dev/null 2>&1 || verdict="FAIL(setvcpus)"
                        wait_until 10000 _guest_has_vcpu_threads "$name" 2 || verdict="FAIL(no-hotplug-thread)"
                else
                        wait_until 10000 _guest_has_vcpu_threads "$name" 2 || verdict="FAIL(no-threads)"
                fi
                while _now_ms; (( REPLY - t0 < 2000 )); do sleep 0.1; done
                # Lived >= 2 s: placed correctly now.  The grace covers a
                # libvirtd that answers late: with 5 guests starting at once
                # on 2 CPUs it was seen unresponsive for 3 s (the daemon logs
                # that), and until it answers nobody learns of the guest.
                # 10 s, not 3: what is checked here is that the guest ends up
                # placed, not how fast (test-daemon-events holds the daemon
                # to its second); the wait ends as soon as it is placed.
                if [[ $verdict == ok ]] && ! wait_until 10000 guest_is_spread "$name"; then
                        verdict="FAIL(not-placed:$(guest_affinities "$name" | tr ' ' ','))"
                        "$VST_CTL" status --json --socket "$(daemon_socket)" 2>&1 |
                                jq -c --arg n "$(guest_name "$name")" '.guests[]? | select(.name == $n)' \
                                > "$VST_TMPDIR/failed-$i.status" 2>&1 || true
                        guest_uuid "$name" > "$VST_TMPDIR/failed-$i.uuid" || true
                fi
                ;;
        esac
        vsh destroy "$(guest_name "$name")" >/dev/null 2>&1 || true
        _now_ms; lived=$((REPLY - t0))
        printf '%s %s %s %s\n' "$i" "$kind" "$verdict" "$lived"
}

_now_ms; start=$REPLY
workers=()
for ((w = 0; w < WORKERS; w++)); do
        (
                for ((i = w; i < TOTAL; i += WORKERS)); do one_lifecycle "$i"; done
        ) > "$VST_TMPDIR/worker-$w.out" 2>&1 &
        workers+=("$!")
done
# The workers only: a bare `wait` would wait for the daemon too.
wait "${workers[@]}"
_now_ms; elapsed=$(( (REPLY - start) / 1000 ))
cat "$VST_TMPDIR"/worker-*.out | grep -E '^[0-9]+ ' > "$VST_TMPDIR/results" || true
done_n=$(wc -l < "$VST_TMPDIR/results")
failed=$(grep -c ' FAIL' "$VST_TMPDIR/results") || true
checked=$(awk '$2 == "long" || $2 == "hot"' "$VST_TMPDIR/results" | wc -l)
note "$done_n lifecycles in ${elapsed} s ($WORKERS at once): $checked checked after >= 2 s, $failed failed"
grep ' FAIL' "$VST_TMPDIR/results" | head -10 >&2 || true
# The daemon's account of each failed guest: what it saw and when.
for f in "$VST_TMPDIR"/failed-*.uuid; do
        [[ -e $f ]] || continue
        i=${f##*/failed-}; i=${i%.uuid}
        note "churn$i as the daemon saw it: $(cat "$VST_TMPDIR/failed-$i.status" 2>/dev/null)"
        journalctl --no-pager -o short-precise _PID="$DAEMON_PID" --after-cursor "$cursor" 2>/dev/null |
                grep -E "$(guest_name "churn$i")\b|$(cat "$f")|unresponsive|answers again" | tail -40 >&2 || true
done
(( done_n == TOTAL )) || fail "only $done_n of $TOTAL lifecycles ran: $(cat "$VST_TMPDIR"/worker-*.out | grep -v '^[0-9]' | head -5)"
(( failed == 0 )) || fail "$failed lifecycles failed"

daemon_alive || fail "daemon died during the churn: $(cat "$VST_TMPDIR/daemon.out")"
wait_until 10000 eval '[[ -z $(env_prefixed_guests | grep churn) ]]' || note "some churn guests are still being destroyed"
sleep 2
# The last guests' descriptors close as their stop events are handled, which
# a loaded host may delay; descriptors that leak never come back, so waiting
# for the count to settle hides no leak.
wait_until 10000 eval '(( $(fd_count) - fds_before <= FD_SLACK ))' || true
rss_after=$(rss_kb) fds_after=$(fd_count)
note "RSS ${rss_before} kB -> ${rss_after} kB, open fds ${fds_before} -> ${fds_after}"
# An AddressSanitizer build keeps freed memory in its quarantine (256 MiB by
# default), so its RSS says nothing about leaks; LeakSanitizer checks those
# when the daemon exits.  The bound holds for the plain build.
if ldd "$VST_DAEMON" 2>/dev/null | grep libasan >/dev/null; then
        note "AddressSanitizer build: RSS bound not applied (quarantine); leaks are LeakSanitizer's"
else
        (( rss_after - rss_before <= RSS_SLACK_KB )) || fail "RSS grew by $((rss_after - rss_before)) kB (bound $RSS_SLACK_KB)"
fi
(( fds_after - fds_before <= FD_SLACK )) || fail "open fds grew from $fds_before to $fds_after"

errors=$(journal_fields --after-cursor "$cursor" SYSLOG_IDENTIFIER=vcpuspreadd -- PRIORITY MESSAGE |
         awk -F'\t' '$1 <= 3' ) || true
[[ -z $errors ]] || fail "the daemon logged errors during the churn: $(head -5 <<< "$errors")"
warnings=$(journal_fields --after-cursor "$cursor" SYSLOG_IDENTIFIER=vcpuspreadd -- PRIORITY MESSAGE |
           awk -F'\t' '$1 == 4 { sub(/^[^:]*: /, "", $2); print $2 }' | sed 's/[0-9]\+/N/g' | sort | uniq -c) || true
[[ -z $warnings ]] || note "warnings (expected races): $(tr '\n' ';' <<< "$warnings")"
listed_names() { "$VST_CTL" status --json --socket "$(daemon_socket)" | jq -r '[.guests[].name] | join(",")'; }
wait_until 10000 eval '[[ ! $(listed_names) =~ churn ]]' || fail "destroyed guests still listed after 10 s: $(listed_names)"
daemon_stop
note "ok"
