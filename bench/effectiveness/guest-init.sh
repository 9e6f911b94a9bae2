#!/bin/sh
# /init of the benchmark guest (busybox initramfs).
#
# Kernel command line parameters (all optional):
#   bench.workload=hackbench|futex|spin|spin-pause|spin-ticket|idle   what to run (default hackbench)
#   bench.spin_cs=N bench.spin_out=N     spinlock critical section / private work steps
#   bench.warmup=S bench.window=S bench.cooldown=S   phases in guest seconds
#   bench.hb_groups=N bench.hb_loops=N    hackbench -g N -l N -T per iteration
#   bench.sync=1   print READY, then wait for a line on /dev/ttyS1 before the
#                  warm-up, so that all guests of a run load the host at once
#                  and no guest's window overlaps another guest's boot.
#
# Prints "RESULT workload=W ops=N window_s=S ncpus=C" on the console (ttyS0)
# when the window closes, keeps the load up for the cool-down (so that a guest
# whose clock runs a little behind still has loaded neighbours until its own
# window closes), and powers off.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp

workload=hackbench warmup=5 window=20 cooldown=3 hb_groups=2 hb_loops=20 sync=0 spin_cs=2000 spin_out=2000
for arg in $(cat /proc/cmdline); do
        case "$arg" in
        bench.workload=*) workload=${arg#*=} ;;
        bench.warmup=*) warmup=${arg#*=} ;;
        bench.window=*) window=${arg#*=} ;;
        bench.cooldown=*) cooldown=${arg#*=} ;;
        bench.hb_groups=*) hb_groups=${arg#*=} ;;
        bench.hb_loops=*) hb_loops=${arg#*=} ;;
        bench.sync=*) sync=${arg#*=} ;;
        bench.spin_cs=*) spin_cs=${arg#*=} ;;
        bench.spin_out=*) spin_out=${arg#*=} ;;
        esac
done

ncpus=$(grep -c '^processor' /proc/cpuinfo)
echo "BENCH booted workload=$workload ncpus=$ncpus uptime=$(cut -d' ' -f1 /proc/uptime)"

if [ "$sync" = 1 ]; then
        stty -F /dev/ttyS1 -echo raw 2>/dev/null
        echo "BENCH READY"
        # Any byte followed by a newline is the start signal.
        read -r go < /dev/ttyS1
        echo "BENCH GO uptime=$(cut -d' ' -f1 /proc/uptime)"
fi

result() {
        echo "RESULT workload=$workload ops=$1 window_s=$window ncpus=$ncpus"
}

case "$workload" in
hackbench)
        # One op = one complete hackbench run; the loop appends one byte per
        # finished run, so the file size is the count.
        : > /tmp/hb.count
        (
                while :; do
                        if hackbench -g "$hb_groups" -l "$hb_loops" -T >/dev/null 2>&1; then
                                printf x >> /tmp/hb.count
                        else
                                echo "BENCH hackbench failed" ; sleep 1
                        fi
                done
        ) &
        loop=$!
        sleep "$warmup"
        start=$(stat -c %s /tmp/hb.count)
        sleep "$window"
        end=$(stat -c %s /tmp/hb.count)
        result $((end - start))
        sleep "$cooldown"
        kill "$loop" 2>/dev/null
        ;;
futex)
        futexpp "$warmup" "$window" "$cooldown" | while read -r line; do
                ops=${line#ops=}
                result "${ops%% *}"
        done
        ;;
spin|spin-pause|spin-ticket)
        # One op = one acquisition of a user-space spinlock shared by one
        # thread per vCPU; spin waits with a plain load loop, spin-pause with
        # PAUSE, spin-ticket on a fair ticket lock with a plain load loop.
        kind=plain
        [ "$workload" = spin-pause ] && kind=pause
        [ "$workload" = spin-ticket ] && kind=ticket
        spinlock "$kind" "$warmup" "$window" "$cooldown" "$spin_cs" "$spin_out" | while read -r line; do
                ops=${line#ops=}
                result "${ops%% *}"
                echo "BENCH spinlock $line"
        done
        ;;
idle)
        sleep "$warmup"
        sleep "$window"
        result 0
        sleep "$cooldown"
        ;;
*)
        echo "BENCH unknown workload $workload"
        ;;
esac

echo "BENCH done uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
