#!/bin/bash
# One command for the whole effectiveness benchmark: build (or reuse) the
# guest image, run every scenario x mode x workload with interleaved modes,
# and write bench/results/effectiveness.{md,png,jsonl}.
#
#   bench/effectiveness/run.sh [--reps N] [--scenarios a,b,c,d,e]
#                              [--modes default,stacked,static-spread,vcpuspreadd,vcpuspreadd-spread,
#                                       vcpuspreadd-observe]
#                              [--workloads hackbench,futex,spin,spin-pause,spin-ticket]
#                              [--window S] [--warmup S] [--cooldown S]
#                              [--results DIR] [--append] [--wait-lock]
#
# Scenario e (a spin guest beside a hackbench guest) sets its guests' own
# workloads and runs once per repetition whatever --workloads says.
# Modes vcpuspreadd (the daemon's default policy), vcpuspreadd-spread
# (DefaultPolicy=spread) and vcpuspreadd-observe (Mode=observe) run the
# daemon with a config file the harness writes into the run directory
# (--config).
#
# --append adds the runs to the previous invocation's run directory and
# reports over both (e.g. a second workload on fewer scenarios).
# Only one effectiveness run may use a host at a time (lock file); a second
# one fails at once, or queues behind the first with --wait-lock.
#
# Environment: REPS (default 5), VCPUSPREADD (daemon binary, default
# build/daemon/vcpuspreadd; the mode is skipped with a note when it is
# missing), BENCH_OUT (image and raw runs, default bench/out/effectiveness).
# Needs root, a running libvirtd, and the Debian packages busybox-static,
# rt-tests, gcc, libc6-dev, qemu-system-x86, libvirt-daemon-system,
# python3-matplotlib.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
results="$repo/bench/results"
python=/usr/bin/python3   # Debian's, where python3-matplotlib lives

run_args=()
workloads=hackbench,futex
append=
# Refuse a bad argument before minutes of image building, not after.
bad() { echo "run.sh: $*" >&2; echo "Try 'run.sh --help'." >&2; exit 2; }
# list_of WHAT VALUE ALLOWED...: VALUE is a comma-separated list of ALLOWED.
list_of() {
        local what=$1 value=$2 item; shift 2
        [ -n "$value" ] || bad "$what: empty list"
        for item in ${value//,/ }; do
                [[ " $* " == *" $item "* ]] || bad "$what: '$item' is not one of: $*"
        done
}
while [ $# -gt 0 ]; do
        case "$1" in
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        --append) append=1; shift; continue ;;
        --wait-lock) run_args+=(--wait-lock); shift; continue ;;
        esac
        [ $# -ge 2 ] || case "$1" in
                --results|--workloads|--reps|--scenarios|--modes|--window|--warmup|--cooldown)
                        bad "$1 needs a value" ;;
                *) bad "unknown argument $1" ;;
        esac
        case "$1" in
        --results) results=$2 ;;
        --workloads) list_of "$1" "$2" hackbench futex spin spin-pause spin-ticket; workloads=$2 ;;
        --scenarios) list_of "$1" "$2" a b c d e; run_args+=("$1" "$2") ;;
        --modes) list_of "$1" "$2" default stacked static-spread vcpuspreadd vcpuspreadd-spread vcpuspreadd-observe; run_args+=("$1" "$2") ;;
        --reps) [[ $2 =~ ^[1-9][0-9]{0,2}$ ]] || bad "--reps must be a whole number from 1 to 999, not '$2'"
                run_args+=("$1" "$2") ;;
        --window|--warmup|--cooldown)
                [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || bad "$1 must be seconds (e.g. 20 or 2.5), not '$2'"
                run_args+=("$1" "$2") ;;
        *) bad "unknown argument $1" ;;
        esac
        shift 2
done

start=$(date +%s)
image=$("$here/build-image.sh")
out=${BENCH_OUT:-$repo/bench/out/effectiveness}
if [ -n "$append" ]; then
        [ -e "$out/runs/latest" ] || { echo "run.sh: --append: no previous run in $out/runs" >&2; exit 1; }
        run_args+=(--rundir "$(readlink -f "$out/runs/latest")")
fi
runs=$("$python" "$here/effbench.py" run --out "$out" --image "$image" --workloads "$workloads" "${run_args[@]}" | tail -n1)
ln -sfn "$(dirname "$runs")" "$out/runs/latest"
mkdir -p "$results"
cp "$runs" "$results/effectiveness.jsonl"
"$python" "$here/effbench.py" report "$runs" --md "$results/effectiveness.md" --png "$results/effectiveness.png"
echo "run.sh: $(( ($(date +%s) - start) / 60 )) min; wrote $results/effectiveness.{md,png,jsonl}"
