#!/usr/bin/python3
"""Effectiveness benchmark: real TCG guests under overcommit, with the host
scheduler left alone (default), sibling vCPUs stacked on one CPU (stacked),
a fixed vCPU k -> CPU k mod N spread (static-spread), or the daemon running
with its default policy (vcpuspreadd) or with DefaultPolicy=spread
(vcpuspreadd-spread).

  effbench.py run     [--reps N] [--scenarios a,b,c,d,e] [--modes ...] [--workloads ...]
  effbench.py report  RUNS.jsonl [--md FILE] [--png FILE]
  effbench.py signals RUNS.jsonl... [--md FILE] [--notes FILE]

`run` appends one JSON line per run to runs.jsonl in its run directory and
prints where it is; `report` turns such a file into a markdown table (also
printed) and a PNG chart.  It measures; it never judges.

Only the Python standard library, except matplotlib for the chart (Debian:
python3-matplotlib).  Run with Debian's /usr/bin/python3.
"""

import argparse
import datetime
import fcntl
import json
import os
import math
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_OUT = os.environ.get("BENCH_OUT", os.path.join(REPO, "bench", "out", "effectiveness"))
DEFAULT_DAEMON = os.environ.get("VCPUSPREADD", os.path.join(REPO, "build", "daemon", "vcpuspreadd"))
GUEST_PREFIX = "bench-"
# One benchmark at a time per host: two would load each other's guests, and
# each destroys leftover bench- guests when it starts.
LOCK_PATH = "/run/lock/vcpuspreadd-effbench.lock"
LIBVIRT_STATUS_DIR = "/run/libvirt/qemu"
CGROUP_ROOT = "/sys/fs/cgroup"

# Scenario: list of guests, each (vCPUs, workload role[, workload]).  "busy"
# runs the selected workload, or the guest's own workload when the entry names
# one; "idle" only boots and sleeps through the window.  A scenario whose busy
# guests all name their workload ("mixed") runs once per repetition, whatever
# --workloads says, and is reported under the workloads joined by "+".
SCENARIOS = {
    "a": ("2 guests x 2 vCPUs", [(2, "busy"), (2, "busy")]),
    "b": ("3 guests x 2 vCPUs", [(2, "busy"), (2, "busy"), (2, "busy")]),
    "c": ("busy 2-vCPU guest + idle 2-vCPU guest", [(2, "busy"), (2, "idle")]),
    "d": ("4-vCPU guest + 2-vCPU guest", [(4, "busy"), (2, "busy")]),
    "e": ("2-vCPU spin guest + 2-vCPU hackbench guest", [(2, "busy", "spin"), (2, "busy", "hackbench")]),
}
# vcpuspreadd: the daemon with its default policy (Policy=auto once the
# daemon has it); vcpuspreadd-spread: the daemon with DefaultPolicy=spread;
# vcpuspreadd-observe: the daemon with Mode=observe, which samples and decides
# but changes nothing (what being there costs a guest it leaves alone).
MODES = ["default", "stacked", "static-spread", "vcpuspreadd", "vcpuspreadd-spread", "vcpuspreadd-observe"]
DAEMON_MODES = {
    "vcpuspreadd": None,
    "vcpuspreadd-spread": "[Daemon]\nDefaultPolicy=spread\n",
    "vcpuspreadd-observe": "[Daemon]\nMode=observe\n",
}
WORKLOADS = ["hackbench", "futex", "spin", "spin-pause", "spin-ticket"]


def scenario_guests(scenario, workload):
    """[(vcpus, role, workload)] of a scenario run with the selected workload."""
    return [(e[0], e[1], e[2] if len(e) > 2 else workload) for e in SCENARIOS[scenario][1]]


def scenario_workload(scenario, workload):
    """The label runs of this scenario are reported under: the selected
    workload, or for a mixed scenario its busy guests' workloads."""
    spec = SCENARIOS[scenario][1]
    busy = [e for e in spec if e[1] == "busy"]
    if busy and all(len(e) > 2 for e in busy):
        return "+".join(e[2] for e in busy)
    return workload
STARVATION_FRACTION = 0.25


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def host_cpus():
    """Online host CPUs, sorted."""
    return sorted(os.sched_getaffinity(0))


def virsh(*args, check=True):
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True, check=check)


def virsh_create(xml_path, retry_s=90.0):
    """virsh create, retried while libvirtd is away: other users of this
    libvirtd restart it now and then."""
    deadline = time.monotonic() + retry_s
    while True:
        r = virsh("create", xml_path, check=False)
        if r.returncode == 0:
            return
        if "already exists" in r.stderr:
            # An earlier try got through while libvirtd was restarting.
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"virsh create {os.path.basename(xml_path)}: {r.stderr.strip()}")
        time.sleep(2.0)


def list_bench_domains():
    r = virsh("list", "--name", check=False)
    return [n.strip() for n in r.stdout.splitlines() if n.strip().startswith(GUEST_PREFIX)]


def destroy_domain(name, timeout=90.0):
    """Destroy a guest and make sure it is gone, also across a libvirtd
    restart (a guest left waiting for its start signal would never end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = virsh("domstate", name, check=False)
        if r.returncode != 0 and "ailed to get domain" in r.stderr:
            return True
        if r.returncode == 0:
            virsh("destroy", name, check=False)
        time.sleep(1.0)
    log(f"could not make sure {name} is gone")
    return False


# ---------------------------------------------------------------- guests

def domain_xml(name, vcpus, image, cmdline, console_path, control_socket, memory_mib=256):
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{image}/vmlinuz</kernel>
    <initrd>{image}/initrd.img</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console_path}'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{control_socket}'/><target port='1'/></serial>
  </devices>
</domain>
"""


class Guest:
    def __init__(self, name, vcpus, role, workload, rundir):
        self.name = name
        self.vcpus = vcpus
        self.role = role
        self.workload = workload if role == "busy" else "idle"
        self.console = os.path.join(rundir, f"{name}.console")
        self.socket = os.path.join(rundir, f"{name}.sock")
        self.xml = os.path.join(rundir, f"{name}.xml")
        self.qemu_pid = None
        self.vcpu_tids = []  # index = vCPU id
        self.result = None

    def console_text(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def read_vcpu_threads(name, want, timeout=20.0):
    """QEMU pid and vCPU thread ids from libvirt's status file, cross-checked
    against /proc/PID/task/TID/comm ("CPU N/TCG" or "CPU N/KVM")."""
    path = os.path.join(LIBVIRT_STATUS_DIR, f"{name}.xml")
    deadline = time.monotonic() + timeout
    last_error = "no status file"
    while time.monotonic() < deadline:
        try:
            root = ET.parse(path).getroot()
            pid = int(root.get("pid"))
            tids = {int(v.get("id")): int(v.get("pid")) for v in root.iter("vcpu") if v.get("pid")}
            if len(tids) == want:
                ordered = [tids[i] for i in range(want)]
                for i, tid in enumerate(ordered):
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        comm = f.read().strip()
                    if not re.fullmatch(rf"CPU {i}/(TCG|KVM)", comm):
                        raise ValueError(f"thread {tid} of {pid} is {comm!r}, not vCPU {i}")
                return pid, ordered
            last_error = f"{len(tids)} of {want} vCPU threads listed"
        except (OSError, ET.ParseError, ValueError, TypeError) as e:
            last_error = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"{name}: cannot find vCPU threads in {path}: {last_error}")


def cpuset_file_of(tid):
    """The cpuset.cpus file of the thread's own cgroup, read from
    /proc/TID/cgroup rather than composed (v1 here, v2 threaded on systemd hosts)."""
    with open(f"/proc/{tid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuset" in controllers.split(","):
            return os.path.join(CGROUP_ROOT, "cpuset", path.lstrip("/"), "cpuset.cpus")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidate = os.path.join(CGROUP_ROOT, path.lstrip("/"), "cpuset.cpus")
            if os.path.exists(candidate):
                return candidate
    raise RuntimeError(f"thread {tid}: no cpuset cgroup in /proc/{tid}/cgroup")


def pin_thread(tid, cpu):
    """Pin one vCPU thread to one host CPU: the cgroup first (an affinity
    outside the cgroup's cpuset fails with EINVAL), then the affinity."""
    with open(cpuset_file_of(tid), "w") as f:
        f.write(str(cpu))
    os.sched_setaffinity(tid, {cpu})


def apply_mode(mode, guests, cpus):
    """Placement for the fixed modes, set once right after the guests start."""
    placement = {}
    if mode == "stacked":
        # Each guest on one CPU, guests spread over CPUs: sibling stacking,
        # not host overload.
        for g_index, g in enumerate(guests):
            for tid in g.vcpu_tids:
                placement[tid] = cpus[g_index % len(cpus)]
    elif mode == "static-spread":
        for g in guests:
            for k, tid in enumerate(g.vcpu_tids):
                placement[tid] = cpus[k % len(cpus)]
    for tid, cpu in placement.items():
        pin_thread(tid, cpu)
    return {str(t): c for t, c in placement.items()}


# ---------------------------------------------------------------- sampling

def read_state_cpu(pid, tid):
    """State (field 3) and last CPU (field 39) of /proc/PID/task/TID/stat.
    comm may hold spaces ("CPU 0/TCG"): split after the last ')'."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[36])


def read_schedstat(tid):
    """(ns on CPU, ns runnable but waiting) from /proc/TID/schedstat."""
    try:
        with open(f"/proc/{tid}/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns), int(wait_ns)
    except (OSError, ValueError):
        return None


TICK = os.sysconf("SC_CLK_TCK")


def host_busy_s():
    """CPU seconds the whole host spent busy (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def process_cpu_s(pid):
    """utime + stime of a whole process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def read_ctxt_switches(pid, tid):
    """(voluntary, involuntary) context switches of a thread, from
    /proc/PID/task/TID/status."""
    vol = invol = None
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return (vol, invol) if vol is not None and invol is not None else None


class Sampler:
    """Samples every vCPU thread at HZ until stopped and counts, per guest,
    the sibling pairs that are both runnable and how many of those share a
    CPU; per vCPU, the samples in which it is runnable, runnable beside a
    runnable sibling on the same CPU ("stacked"), and stacked while its own
    run-queue wait grew since the previous sample ("stacked wait")."""

    def __init__(self, guests, hz=50.0):
        self.guests = guests
        self.period = 1.0 / hz
        self.stop_event = threading.Event()
        self.samples = 0
        self.late = 0
        self.both_runnable = {g.name: 0 for g in guests}
        self.colocated = {g.name: 0 for g in guests}
        tids = [tid for g in guests for tid in g.vcpu_tids]
        self.runnable = {tid: 0 for tid in tids}
        self.stacked = {tid: 0 for tid in tids}
        self.stacked_wait = {tid: 0 for tid in tids}
        self.last_wait = {tid: None for tid in tids}
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join()

    def _loop(self):
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            self._sample()
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                self.late += 1
                next_t = time.monotonic()

    def _sample(self):
        self.samples += 1
        for g in self.guests:
            runnable_cpus = []
            where = {}
            waited = {}
            for tid in g.vcpu_tids:
                ss = read_schedstat(tid)
                if ss is not None:
                    prev = self.last_wait[tid]
                    waited[tid] = prev is not None and ss[1] > prev
                    self.last_wait[tid] = ss[1]
                try:
                    state, cpu = read_state_cpu(g.qemu_pid, tid)
                except (OSError, ValueError, IndexError):
                    continue
                if state == "R":
                    runnable_cpus.append(cpu)
                    where[tid] = cpu
                    self.runnable[tid] += 1
            for tid, cpu in where.items():
                if any(other != tid and c == cpu for other, c in where.items()):
                    self.stacked[tid] += 1
                    if waited.get(tid):
                        self.stacked_wait[tid] += 1
            for i in range(len(runnable_cpus)):
                for j in range(i + 1, len(runnable_cpus)):
                    self.both_runnable[g.name] += 1
                    if runnable_cpus[i] == runnable_cpus[j]:
                        self.colocated[g.name] += 1


# ---------------------------------------------------------------- one run

RESULT_RE = re.compile(r"^RESULT workload=(\S+) ops=(\d+) window_s=(\S+) ncpus=(\d+)", re.M)


def wait_for(predicate, timeout, what, poll=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def send_go(guests):
    conns = []
    for g in guests:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(g.socket)
        conns.append(s)
    # Connect first, then send back to back: the guests start within ms.
    for s in conns:
        s.sendall(b"go\n")
    t_go = time.monotonic()
    for s in conns:
        s.close()
    return t_go


def write_daemon_config(rundir, mode):
    """The daemon's configuration for MODE, written where nothing else reads
    it: RUNDIR/daemon-MODE/vcpuspreadd.conf (a main file with the built-in
    defaults, so that /etc/vcpuspreadd does not leak in) plus, where the mode
    sets something, the drop-in vcpuspreadd.conf.d/50-effbench.conf.
    Returns the main file's path (the daemon's --config)."""
    base = os.path.join(rundir, f"daemon-{mode}")
    dropins = os.path.join(base, "vcpuspreadd.conf.d")
    os.makedirs(dropins, exist_ok=True)
    main = os.path.join(base, "vcpuspreadd.conf")
    with open(main, "w") as f:
        f.write(f"# written by effbench.py for mode {mode}: the daemon's built-in defaults,\n"
                f"# except that it leaves guests other than the benchmark's alone (other\n"
                f"# users of this libvirtd); their load still counts.\n"
                f"[Domain]\nName={GUEST_PREFIX}*\n\n[Domain]\nName=*\nPolicy=ignore\n")
    dropin = os.path.join(dropins, "50-effbench.conf")
    if DAEMON_MODES[mode]:
        with open(dropin, "w") as f:
            f.write(DAEMON_MODES[mode])
    elif os.path.exists(dropin):
        os.unlink(dropin)
    return main


def config_text(main):
    """The main file and its drop-ins as one text, for the run's record."""
    parts = [f"# {main}\n" + open(main).read()]
    dropins = os.path.join(os.path.dirname(main), "vcpuspreadd.conf.d")
    for name in sorted(os.listdir(dropins)):
        if name.endswith(".conf"):
            parts.append(f"# {name}\n" + open(os.path.join(dropins, name)).read())
    return "".join(parts)


class Daemon:
    def __init__(self, binary, logpath, config):
        self.binary = binary
        self.logpath = logpath
        self.config = config
        self.proc = None

    def start(self):
        self.logfile = open(self.logpath, "w")
        self.proc = subprocess.Popen([self.binary, "--log-target", "console", "--config", self.config],
                                     stdout=self.logfile, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.binary} exited with {self.proc.returncode} at start, see {self.logpath}")

    def stop(self):
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self.logfile.close()
        return rc


def run_one(args, run_id, scenario, mode, workload, rep, rundir):
    label = SCENARIOS[scenario][0]
    cpus = host_cpus()
    guests = [Guest(f"{GUEST_PREFIX}{run_id}-g{i}", vcpus, role, w, rundir)
              for i, (vcpus, role, w) in enumerate(scenario_guests(scenario, workload))]
    record = {
        "run_id": run_id, "invocation": os.path.basename(rundir.rstrip("/")) + f"-{os.getpid()}",
        "scenario": scenario, "scenario_label": label, "mode": mode,
        "workload": scenario_workload(scenario, workload), "rep": rep, "host_cpus": cpus,
        "warmup_s": args.warmup, "window_s": args.window, "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "guests": [], "error": None,
    }
    daemon = None
    t_run = time.monotonic()
    try:
        if mode in DAEMON_MODES:
            config = write_daemon_config(rundir, mode)
            record["daemon_config"] = config_text(config)
            daemon = Daemon(args.daemon, os.path.join(rundir, f"{run_id}-daemon.log"), config)
            daemon.start()

        for g in guests:
            cmdline = (f"console=ttyS0 quiet loglevel=3 bench.workload={g.workload} "
                       f"bench.spin_cs={args.spin_cs} bench.spin_out={args.spin_out} "
                       f"bench.warmup={args.warmup} bench.window={args.window} "
                       f"bench.cooldown={args.cooldown} bench.sync=1")
            with open(g.xml, "w") as f:
                f.write(domain_xml(g.name, g.vcpus, args.image, cmdline, g.console, g.socket))
            virsh_create(g.xml)
        for g in guests:
            g.qemu_pid, g.vcpu_tids = read_vcpu_threads(g.name, g.vcpus)

        wait_for(lambda: all("BENCH READY" in g.console_text() for g in guests),
                 args.boot_timeout, "all guests to boot")
        record["boot_s"] = round(time.monotonic() - t_run, 1)
        # The fixed modes are set once, after the boot (which is not
        # measured and would only be slower stacked) and before the start.
        record["placement"] = apply_mode(mode, guests, cpus)

        t_go = send_go(guests)
        time.sleep(args.warmup)
        sampler = Sampler(guests, hz=args.hz)
        before = {tid: read_schedstat(tid) for g in guests for tid in g.vcpu_tids}
        ctx0 = {tid: read_ctxt_switches(g.qemu_pid, tid) for g in guests for tid in g.vcpu_tids}
        t_win0 = time.monotonic()
        busy0 = host_busy_s()
        qemu0 = sum(process_cpu_s(g.qemu_pid) for g in guests)
        sampler.start()
        time.sleep(max(0.0, t_go + args.warmup + args.window - time.monotonic()))
        sampler.stop()
        after = {tid: read_schedstat(tid) for g in guests for tid in g.vcpu_tids}
        ctx1 = {tid: read_ctxt_switches(g.qemu_pid, tid) for g in guests for tid in g.vcpu_tids}
        wall = time.monotonic() - t_win0
        record["window_wall_s"] = round(wall, 3)
        # What the rest of the host (other libvirt users, builds, this
        # harness) took during the window: the noise of this run.
        host_busy = host_busy_s() - busy0
        qemu = sum(process_cpu_s(g.qemu_pid) for g in guests) - qemu0
        record["host_busy_s"] = round(host_busy, 2)
        record["other_load_s"] = round(host_busy - qemu, 2)
        record["samples"] = sampler.samples
        record["late_samples"] = sampler.late

        wait_for(lambda: all(RESULT_RE.search(g.console_text()) for g in guests),
                 args.cooldown + 60, "RESULT lines")
        wait_for(lambda: not any(g.name in list_bench_domains() for g in guests),
                 args.cooldown + 60, "guests to power off", poll=0.5)

        for g in guests:
            m = RESULT_RE.search(g.console_text())
            run_ns = wait_ns = 0
            signals = []
            for tid in g.vcpu_tids:
                sig = {"tid": tid}
                if before.get(tid) and after.get(tid):
                    run_ns += after[tid][0] - before[tid][0]
                    wait_ns += after[tid][1] - before[tid][1]
                    sig["cpu_share"] = round((after[tid][0] - before[tid][0]) / 1e9 / wall, 4)
                    sig["wait_share"] = round((after[tid][1] - before[tid][1]) / 1e9 / wall, 4)
                if ctx0.get(tid) and ctx1.get(tid):
                    sig["vol_cs_per_s"] = round((ctx1[tid][0] - ctx0[tid][0]) / wall, 1)
                    sig["invol_cs_per_s"] = round((ctx1[tid][1] - ctx0[tid][1]) / wall, 1)
                n = max(1, sampler.samples)
                sig["runnable_share"] = round(sampler.runnable[tid] / n, 4)
                sig["stacked_share"] = round(sampler.stacked[tid] / n, 4)
                sig["stacked_wait_share"] = round(sampler.stacked_wait[tid] / n, 4)
                signals.append(sig)
            record["guests"].append({
                "name": g.name, "vcpus": g.vcpus, "role": g.role, "workload": m.group(1),
                "ops": int(m.group(2)), "guest_ncpus": int(m.group(4)),
                "vcpu_tids": g.vcpu_tids,
                "both_runnable": sampler.both_runnable[g.name],
                "colocated": sampler.colocated[g.name],
                "cpu_s": round(run_ns / 1e9, 2), "wait_s": round(wait_ns / 1e9, 2),
                "vcpu_signals": signals,
            })
    except Exception as e:  # one failed run must not end the series
        record["error"] = f"{type(e).__name__}: {e}"
        for g in guests:
            record["guests"].append({"name": g.name, "console_tail": g.console_text()[-400:]})
    finally:
        for g in guests:
            destroy_domain(g.name)
        if daemon:
            record["daemon_exit"] = daemon.stop()
        for g in guests:
            try:
                os.unlink(g.socket)
            except OSError:
                pass
    record["wall_s"] = round(time.monotonic() - t_run, 1)
    summarize(record)
    return record


# ---------------------------------------------------------------- metrics

def summarize(record):
    """Aggregate throughput, fairness, co-location and starvation of one run."""
    busy = [g for g in record["guests"] if g.get("role") == "busy" and "ops" in g]
    if record["error"] or not busy:
        return
    ops = [g["ops"] for g in busy]
    record["aggregate_ops"] = sum(ops)
    if len({g.get("workload") for g in busy}) > 1:
        # Guests with different workloads count different operations: no
        # fairness within the run; the report compares each guest with the
        # same guest under the default scheduler instead (mark_mixed_starved).
        record["fairness"] = None
        record["starved"] = []
    else:
        # Fairness between busy guests: none to speak of with a single one.
        record["fairness"] = (min(ops) / max(ops)) if len(ops) > 1 and max(ops) > 0 else None
        med = statistics.median(ops)
        record["starved"] = [g["name"] for g in busy if len(busy) > 1 and g["ops"] < STARVATION_FRACTION * med]
    both = sum(g["both_runnable"] for g in record["guests"] if "both_runnable" in g)
    colo = sum(g["colocated"] for g in record["guests"] if "colocated" in g)
    record["colocation"] = (colo / both) if both else None


def is_mixed(r):
    return "+" in r.get("workload", "")


def busy_ops(r):
    """Ops of the busy guests, in guest order."""
    return [g["ops"] for g in r.get("guests", []) if g.get("role") == "busy" and "ops" in g]


def pair_key(r):
    """Runs of one repetition of one invocation form a pair across modes.
    Older records carry no invocation: it is the pid part of the run id."""
    inv = r.get("invocation") or r["run_id"].split("-", 1)[-1].rstrip("abcdefgh")
    return (inv, r["rep"])


def mixed_min_share(r, default_medians):
    """Mixed scenario: the lowest busy guest's ops relative to the same
    guest's median under the default scheduler."""
    ops = busy_ops(r)
    shares = [o / d for o, d in zip(ops, default_medians) if d]
    return min(shares) if shares else None


def mark_mixed_starved(runs):
    """Starvation in mixed scenarios: a guest below STARVATION_FRACTION of
    its own median under the default scheduler in the same cell."""
    for r in runs:
        if not is_mixed(r) or r.get("error"):
            continue
        base = [x for x in runs if x["workload"] == r["workload"] and x["scenario"] == r["scenario"]
                and x["mode"] == "default" and not x.get("error")]
        if not base:
            continue
        med = [statistics.median(col) for col in zip(*(busy_ops(x) for x in base))]
        busy = [g for g in r["guests"] if g.get("role") == "busy"]
        r["starved"] = [g["name"] for g, m in zip(busy, med) if m and g["ops"] < STARVATION_FRACTION * m]
        r["min_share_of_default"] = mixed_min_share(r, med)


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261201


def bootstrap_median_ci(values, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Median of VALUES and a percentile-bootstrap 95% interval of it
    (standard library only, fixed seed so a report is reproducible).  With
    one value the interval is that value; with few it is optimistic."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    med = statistics.median(values)
    if len(values) == 1:
        return med, med, med
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return med, meds[int(0.025 * resamples)], meds[int(math.ceil(0.975 * resamples)) - 1]


def paired_ratios(cell, base, per_guest=False):
    """Ratio of each run in CELL to the default run of the same repetition
    in BASE.  Uniform scenarios: aggregate ops; mixed ones: the geometric
    mean of the per-guest ratios.  per_guest: a list of ratios per guest."""
    by_key = {pair_key(r): r for r in base if not r.get("error")}
    out = []
    for r in cell:
        b = by_key.get(pair_key(r))
        if r.get("error") or b is None:
            continue
        ro, bo = busy_ops(r), busy_ops(b)
        if per_guest:
            out.append([o / p if p else None for o, p in zip(ro, bo)])
        elif is_mixed(r):
            rs = [o / p for o, p in zip(ro, bo) if p and o]
            out.append(math.exp(sum(map(math.log, rs)) / len(rs)) if rs else None)
        elif sum(bo):
            out.append(sum(ro) / sum(bo))
    return out


def fmt_ci(ci, fmt=lambda v: f"{v:.2f}"):
    if ci is None:
        return "-"
    med, lo, hi = ci
    return f"{fmt(med)} [{fmt(lo)}, {fmt(hi)}]"


def min_guest_share(r):
    """Lowest busy guest's ops over the median busy guest's (what the
    starvation flag compares with STARVATION_FRACTION); mixed scenarios:
    over the same guest's median under the default scheduler."""
    if is_mixed(r):
        return r.get("min_share_of_default")
    ops = busy_ops(r)
    if r.get("error") or len(ops) < 2 or not statistics.median(ops):
        return None
    return min(ops) / statistics.median(ops)


def efficiency(r):
    """Busy guests' ops per CPU second their vCPU threads got in the window:
    what a guest makes of the CPU it receives (a vCPU spinning on a lock whose
    holder waits behind it burns CPU for nothing), and less sensitive than raw
    throughput to how much CPU other users of the host took."""
    busy = [g for g in r.get("guests", []) if g.get("role") == "busy" and "cpu_s" in g]
    cpu = sum(g["cpu_s"] for g in busy)
    if r.get("error") or not busy or cpu <= 0:
        return None
    return sum(g["ops"] for g in busy) / cpu


def fmt_run(r):
    if r.get("error"):
        return f"ERROR {r['error']}"
    per = " ".join(f"{g['ops']}" + ("(idle)" if g["role"] == "idle" else "") for g in r["guests"])
    colo = "-" if r.get("colocation") is None else f"{100 * r['colocation']:.0f}%"
    fair = "-" if r.get("fairness") is None else f"{r['fairness']:.2f}"
    starved = f" STARVED {','.join(r['starved'])}" if r.get("starved") else ""
    return (f"ops={r['aggregate_ops']} per-guest=[{per}] fairness={fair} colocation={colo} "
            f"boot={r.get('boot_s')}s wall={r['wall_s']}s{starved}")


# ---------------------------------------------------------------- run command

def take_host_lock(wait):
    """Hold LOCK_PATH for the life of the process (the descriptor is kept)."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    waited = 0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            if not wait:
                sys.exit(f"effbench: another effectiveness run holds {LOCK_PATH} (pid {holder}); --wait-lock to queue")
            if waited % 60 == 0:
                log(f"waiting for the effectiveness run of pid {holder} to finish ({LOCK_PATH})")
            time.sleep(5)
            waited += 5
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_run(args):
    signal.signal(signal.SIGTERM, _terminate)
    if os.geteuid() != 0:
        sys.exit("effbench: must run as root (pins vCPU threads, reads libvirt's status files)")
    args.image = os.path.abspath(args.image)
    for f in ("vmlinuz", "initrd.img"):
        if not os.path.exists(os.path.join(args.image, f)):
            sys.exit(f"effbench: {args.image}/{f} missing: run build-image.sh first")
    scenarios = args.scenarios.split(",")
    modes = args.modes.split(",")
    workloads = args.workloads.split(",")
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit(f"effbench: unknown scenario {s!r} (know {','.join(SCENARIOS)})")
    for m in modes:
        if m not in MODES:
            sys.exit(f"effbench: unknown mode {m!r} (know {','.join(MODES)})")
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"effbench: unknown workload {w!r} (know {','.join(WORKLOADS)})")

    notes = []
    if any(m in DAEMON_MODES for m in modes) and not os.access(args.daemon, os.X_OK):
        skipped = [m for m in modes if m in DAEMON_MODES]
        note = f"modes {', '.join(skipped)} skipped: daemon binary {args.daemon} not found (set VCPUSPREADD)"
        log(note)
        notes.append(note)
        modes = [m for m in modes if m not in DAEMON_MODES]

    args.lock_fd = take_host_lock(args.wait_lock)
    leftovers = list_bench_domains()
    for name in leftovers:
        log(f"destroying leftover guest {name}")
        destroy_domain(name)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = os.path.abspath(args.rundir or os.path.join(args.out, "runs", stamp))
    os.makedirs(rundir, exist_ok=True)
    # QEMU runs as libvirt-qemu and must be able to create the console files
    # and sockets in the run directory.
    os.chmod(rundir, 0o777)
    runs_path = os.path.join(rundir, "runs.jsonl")
    meta = {
        "kind": "meta", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "host_cpus": host_cpus(),
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "libvirt": subprocess.run(["libvirtd", "--version"], capture_output=True, text=True).stdout.strip(),
        "guest_image": open(os.path.join(args.image, "stamp")).read().splitlines()[0] if os.path.exists(os.path.join(args.image, "stamp")) else None,
        "reps": args.reps, "scenarios": scenarios, "modes": modes, "workloads": workloads,
        "warmup_s": args.warmup, "window_s": args.window, "cooldown_s": args.cooldown, "hz": args.hz,
        "spin_cs": args.spin_cs, "spin_out": args.spin_out, "daemon": args.daemon,
        "notes": notes, "other_guests_at_start": [n for n in virsh("list", "--name", check=False).stdout.split("\n") if n.strip()],
    }
    plan = [(w, s) for w in workloads for s in scenarios
            if scenario_workload(s, w) == w or w == workloads[0]]
    total = args.reps * len(plan) * len(modes)
    log(f"{total} runs into {runs_path}")
    t0 = time.monotonic()
    with open(runs_path, "a") as out:
        out.write(json.dumps(meta) + "\n")
        out.flush()
        n = 0
        for workload in workloads:
            for rep in range(args.reps):
                for scenario in scenarios:
                    if (workload, scenario) not in plan:
                        continue  # a mixed scenario runs with the first workload only
                    # Interleave the modes and rotate their order every
                    # repetition, so slow drift of the host hits all modes.
                    k = (rep + scenarios.index(scenario)) % len(modes)
                    for mode in modes[k:] + modes[:k]:
                        n += 1
                        run_id = f"{scenario}{MODES.index(mode)}{WORKLOADS.index(workload)}{rep}-{os.getpid() % 10000}"
                        for attempt in range(1 + args.retries):
                            r = run_one(args, f"{run_id}{'abcdefgh'[attempt]}", scenario, mode, workload, rep, rundir)
                            if r.get("error") and attempt < args.retries:
                                # An infrastructure failure (libvirtd restarted,
                                # guest did not boot): keep it on record, try again.
                                r["kind"] = "failed-attempt"
                                log(f"attempt {attempt + 1} failed, retrying: {r['error']}")
                            out.write(json.dumps(r) + "\n")
                            out.flush()
                            if r.get("kind") != "failed-attempt":
                                break
                        log(f"[{n}/{total}] {workload} {scenario} {mode:13s} rep {rep}: {fmt_run(r)}")
        elapsed = time.monotonic() - t0
        out.write(json.dumps({"kind": "end", "elapsed_s": round(elapsed, 1), "runs": n}) + "\n")
    log(f"done: {n} runs in {elapsed / 60:.1f} min; results in {runs_path}")
    print(runs_path)


# ---------------------------------------------------------------- report

def load_runs(path):
    """Runs of one or more invocations appended to one file (run.sh --append):
    the first invocation's meta, with the lists of all of them merged."""
    meta, runs, end = {}, [], {"elapsed_s": 0.0, "runs": 0, "failed_attempts": 0}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("kind") == "meta":
                if not meta:
                    meta = r
                    continue
                for key in ("scenarios", "modes", "workloads", "notes", "other_guests_at_start"):
                    meta[key] = meta.get(key, []) + [v for v in r.get(key, []) if v not in meta.get(key, [])]
            elif r.get("kind") == "end":
                end["elapsed_s"] += r["elapsed_s"]
                end["runs"] += r["runs"]
            elif r.get("kind") == "failed-attempt":
                end["failed_attempts"] += 1
            else:
                if r.get("mode") == "vcpuspreadd" and "daemon_config" not in r:
                    # Before the daemon had policies to choose from (and the
                    # harness wrote its config), mode vcpuspreadd was the
                    # daemon that always spreads: today's vcpuspreadd-spread.
                    r["mode"] = "vcpuspreadd-spread"
                    r["mode_renamed_from"] = "vcpuspreadd"
                summarize(r)  # recomputed: the metrics' definitions live here
                runs.append(r)
    if any(r.get("mode_renamed_from") for r in runs):
        meta["modes"] = ["vcpuspreadd-spread" if m == "vcpuspreadd" else m for m in meta.get("modes", [])]
        meta.setdefault("notes", []).append(
            "runs recorded as mode `vcpuspreadd` before the harness wrote the daemon's config "
            "(the daemon then always spread) are reported as `vcpuspreadd-spread`")
    mark_mixed_starved(runs)
    return meta, runs, end if end["runs"] else {}


def med_range(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"


def eff_fmt(v):
    return f"{v:.3g}"


def pct(v):
    return f"{100 * v:.0f}%"


def cell_groups(meta, runs):
    workloads = list(meta.get("workloads") or [])
    workloads += sorted({r["workload"] for r in runs} - set(workloads))
    # Keep only workloads that have runs (a mixed scenario relabels its runs).
    workloads = [w for w in workloads if any(r["workload"] == w for r in runs)]
    scenarios = meta.get("scenarios") or sorted({r["scenario"] for r in runs})
    modes = [m for m in MODES if m in (meta.get("modes") or MODES)]
    return workloads, scenarios, modes


def cmd_report(args):
    meta, runs, end = load_runs(args.runs)
    workloads, scenarios, modes = cell_groups(meta, runs)
    lines = []
    date = meta.get("date", "?")
    lines.append("# vcpuspreadd effectiveness benchmark")
    lines.append("")
    lines.append(f"Date: {date} · host: {meta.get('host', '?')} ({len(meta.get('host_cpus', []))} CPUs) · "
                 f"kernel: {meta.get('kernel', '?')} · {meta.get('qemu', '?')} (TCG) · {meta.get('libvirt', '?')}")
    lines.append("")
    lines.append(f"Guest: {meta.get('guest_image', '?')} + busybox initramfs, 256 MiB. Warm-up {meta.get('warmup_s')} s, "
                 f"window {meta.get('window_s')} s of guest time, all guests of a run start their warm-up together "
                 f"(after all booted). Co-location sampled at {meta.get('hz')} Hz during the window. "
                 f"{meta.get('reps')} repetitions per cell, modes interleaved; median [min-max], except "
                 f"the ratio to default: median [95% interval].")
    if end:
        lines.append("")
        lines.append(f"Full run: {end['runs']} runs in {end['elapsed_s'] / 60:.1f} min"
                     f" ({end['failed_attempts']} failed attempts retried, e.g. libvirtd restarted by another user).")
    for note in meta.get("notes", []):
        lines.append("")
        lines.append(f"Note: {note}")
    if meta.get("other_guests_at_start"):
        lines.append("")
        names = ", ".join(f"`{n}`" for n in meta["other_guests_at_start"]).replace("|", "\\|")
        lines.append(f"Other guests on the host at start (other work sharing the host, not part of the benchmark): {names}")
    lines.append("")
    lines.append("Columns: aggregate = operations of all busy guests in the window (hackbench: complete "
                 "`hackbench -g 2 -l 20 -T` runs; futex: futex ping-pong round trips across vCPUs; spin, spin-pause, spin-ticket: "
                 "acquisitions of a user-space spinlock shared by one thread per vCPU, waiting with a plain load "
                 "loop or with PAUSE, or a fair ticket lock waiting with a plain load loop); "
                 "ratio to default = median over repetitions of (this run's aggregate ops / the default run's of "
                 "the same repetition), with a percentile-bootstrap 95% interval over those paired ratios "
                 f"({BOOTSTRAP_RESAMPLES} resamples, fixed seed; with 3-5 pairs the interval is optimistic, "
                 "with one pair it is the point); in a mixed scenario (e.g. spin+hackbench) the ratio is the "
                 "geometric mean of the guests' own ratios, and per guest shows each guest's ratio; "
                 "per guest = median ops of each guest (g0, g1, ...; idle guests excluded); ops per vCPU CPU-s = aggregate ops "
                 "divided by the CPU time the busy guests' vCPU threads got in the window (`/proc/TID/schedstat`): "
                 "what a guest makes of the CPU it receives, less sensitive to other load than raw ops; fairness = min/max of "
                 "busy guests' ops (none in a mixed scenario); "
                 "min guest share = lowest busy guest's ops / median busy guest's (mixed: / the same guest's median "
                 "under default); co-location = share of sampled sibling pairs, both runnable, that sat on the "
                 f"same host CPU; starved = runs where a busy guest got below {STARVATION_FRACTION:.0%} of the median guest; "
                 "other load = host CPU seconds used during the window by everything but the benchmark's QEMU "
                 "processes (other users of the host, this harness), out of "
                 f"{len(meta.get('host_cpus', [])) * (meta.get('window_s') or 0):g} available.")
    for workload in workloads:
        lines.append("")
        lines.append(f"## {workload}")
        lines.append("")
        lines.append("| scenario | mode | aggregate ops | ratio to default [95%] | per guest (median) | ops per vCPU CPU-s "
                     "| fairness | min guest share | co-location | starved | other load | runs |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in scenarios:
            for m in modes:
                cell = [r for r in runs if r["workload"] == workload and r["scenario"] == s and r["mode"] == m]
                if not cell:
                    continue
                ok = [r for r in cell if not r.get("error")]
                base = [r for r in runs if r["workload"] == workload and r["scenario"] == s and r["mode"] == "default"]
                ratio = "-" if m == "default" else fmt_ci(bootstrap_median_ci(paired_ratios(ok, base)))
                per_guest = "-"
                if ok:
                    busy_idx = [i for i, g in enumerate(ok[0]["guests"]) if g.get("role") == "busy"]
                    per_guest = " / ".join(f"{statistics.median(r['guests'][i]['ops'] for r in ok):g}" for i in busy_idx)
                    if is_mixed(ok[0]) and m != "default":
                        cols = list(zip(*paired_ratios(ok, base, per_guest=True)))
                        if cols:
                            per_guest += " (x " + " / ".join(
                                fmt_ci(bootstrap_median_ci(list(c))) for c in cols) + ")"
                starved = sum(1 for r in ok if r.get("starved"))
                errors = len(cell) - len(ok)
                runs_col = f"{len(ok)}" + (f" ({errors} failed)" if errors else "")
                lines.append(f"| {s}: {SCENARIOS[s][0]} | {m} | "
                             f"{med_range([r.get('aggregate_ops') for r in ok], lambda v: f'{v:g}')} | {ratio} | {per_guest} | "
                             f"{med_range([efficiency(r) for r in ok], eff_fmt)} | "
                             f"{med_range([r.get('fairness') for r in ok], lambda v: f'{v:.2f}')} | "
                             f"{med_range([min_guest_share(r) for r in ok], lambda v: f'{v:.2f}')} | "
                             f"{med_range([r.get('colocation') for r in ok], pct)} | "
                             f"{starved}/{len(ok)} | "
                             f"{med_range([r.get('other_load_s') for r in ok], lambda v: f'{v:.1f}')} | {runs_col} |")
    lines.append("")
    lines.append("## Every run")
    lines.append("")
    lines.append("Per-guest ops in guest order, host CPU seconds per guest over the window, and flags; "
                 "bimodal cells show here rather than in the medians.")
    lines.append("")
    lines.append("| workload | scenario | mode | rep | per-guest ops | guest vCPU s | fairness | co-location | other load s | flags |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    order = {m: i for i, m in enumerate(MODES)}
    for r in sorted(runs, key=lambda r: (workloads.index(r["workload"]) if r["workload"] in workloads else 9,
                                         r["scenario"], order.get(r["mode"], 9), str(pair_key(r)))):
        if r.get("error"):
            lines.append(f"| {r['workload']} | {r['scenario']} | {r['mode']} | {r['rep']} | - | - | - | - | - | error: {r['error']} |")
            continue
        per = " / ".join(f"{g['ops']}" + (" (idle)" if g["role"] == "idle" else "") for g in r["guests"])
        cpu = " / ".join(f"{g['cpu_s']:.1f}" for g in r["guests"])
        fair = "-" if r.get("fairness") is None else f"{r['fairness']:.2f}"
        colo = "-" if r.get("colocation") is None else pct(r["colocation"])
        flags = "starved" if r.get("starved") else ""
        other = "-" if r.get("other_load_s") is None else f"{r['other_load_s']:.1f}"
        lines.append(f"| {r['workload']} | {r['scenario']} | {r['mode']} | {r['rep']} | {per} | {cpu} | {fair} | {colo} | {other} | {flags} |")
    text = "\n".join(lines) + "\n"
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as f:
            f.write(text)
    print(text)
    if args.png:
        chart(meta, runs, args.png)


def chart(meta, runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads, scenarios, modes = cell_groups(meta, runs)
    metrics = [("ratio", "ratio to default (bars: median, error bars: 95% bootstrap interval)"),
               ("aggregate_ops", "aggregate ops in window"), (efficiency, "ops per vCPU CPU-second"),
               ("fairness", "fairness (min/max guest)"), ("colocation", "sibling co-location"),
               ("other_load_s", "other load (host CPU-s in window)")]
    colors = {"default": "#4c72b0", "stacked": "#c44e52", "static-spread": "#dd8452", "vcpuspreadd": "#55a868",
              "vcpuspreadd-spread": "#8172b3", "vcpuspreadd-observe": "#937860"}
    fig, axes = plt.subplots(len(metrics), len(workloads), figsize=(max(8.0, 5.5 * len(workloads)), 2.6 * len(metrics) + 1.8),
                             squeeze=False)
    width = 0.8 / max(1, len(modes))
    for col, workload in enumerate(workloads):
        # Only the scenarios this workload has runs in (a mixed scenario's
        # runs sit under their own workload label).
        w_scenarios = [s for s in scenarios if any(r["workload"] == workload and r["scenario"] == s for r in runs)]
        for row, (key, title) in enumerate(metrics):
            ax = axes[row][col]
            for mi, m in enumerate(modes):
                for si, s in enumerate(w_scenarios):
                    x = si + (mi - (len(modes) - 1) / 2) * width
                    if key == "ratio":
                        cell = [r for r in runs if r["workload"] == workload and r["scenario"] == s and r["mode"] == m]
                        base = [r for r in runs if r["workload"] == workload and r["scenario"] == s and r["mode"] == "default"]
                        ratios = [v for v in paired_ratios(cell, base) if v is not None]
                        ci = bootstrap_median_ci(ratios)
                        if ci is None:
                            continue
                        med, lo, hi = ci
                        ax.bar(x, med, width * 0.9, color=colors.get(m, "grey"), label=m if si == 0 else None,
                               yerr=[[med - lo], [hi - med]], capsize=2, error_kw={"lw": 0.8})
                        ax.scatter([x] * len(ratios), ratios, s=8, color="black", zorder=3)
                        continue
                    vals = [key(r) if callable(key) else r.get(key) for r in runs
                            if r["workload"] == workload and r["scenario"] == s and r["mode"] == m and not r.get("error")]
                    vals = [v for v in vals if v is not None]
                    if not vals:
                        continue
                    med = statistics.median(vals)
                    ax.bar(x, med, width * 0.9, color=colors.get(m, "grey"), label=m if si == 0 else None,
                           yerr=[[med - min(vals)], [max(vals) - med]], capsize=2, error_kw={"lw": 0.8})
                    ax.scatter([x] * len(vals), vals, s=8, color="black", zorder=3)
            ax.set_xticks(range(len(w_scenarios)))
            ax.set_xticklabels(w_scenarios)
            ax.set_title(f"{workload}: {title}", fontsize=9)
            if key in ("fairness", "colocation"):
                ax.set_ylim(0, 1.05)
            if key == "ratio":
                ax.axhline(1.0, color="black", lw=0.6)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle(f"vcpuspreadd effectiveness, {meta.get('date', '?')[:10]}, {meta.get('host', '?')}, "
                 f"kernel {meta.get('kernel', '?')}\n" +
                 textwrap.fill("scenarios: " + "; ".join(f"{s} = {SCENARIOS[s][0]}" for s in scenarios), 90) +
                 "\n" + textwrap.fill("ratio row: bars median of paired ratios, error bars 95% bootstrap interval; "
                                       "other rows: bars median, whiskers min-max; dots: runs", 90), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- signals

# Per-vCPU signals recorded by run_one, averaged over the busy guests' vCPUs
# of a run.  (key, heading, format)
SIGNALS = [
    ("cpu_share", "CPU use share", lambda v: f"{v:.2f}"),
    ("wait_share", "run-queue wait share", lambda v: f"{v:.2f}"),
    ("vol_cs_per_s", "voluntary cs/s", lambda v: f"{v:.0f}"),
    ("invol_cs_per_s", "involuntary cs/s", lambda v: f"{v:.0f}"),
    ("runnable_share", "runnable share", lambda v: f"{v:.2f}"),
    ("stacked_share", "runnable beside a runnable sibling on its CPU", lambda v: f"{v:.2f}"),
    ("stacked_wait_share", "same, and its wait grew", lambda v: f"{v:.2f}"),
]


def run_signals(r):
    """{signal: mean over the busy guests' vCPUs} of one run, plus
    co-location and the wait per CPU second (wait_share / cpu_share)."""
    vcpus = [v for g in r.get("guests", []) if g.get("role") == "busy" for v in g.get("vcpu_signals", [])]
    if r.get("error") or not vcpus:
        return None
    out = {}
    for key, _, _ in SIGNALS:
        vals = [v[key] for v in vcpus if v.get(key) is not None]
        out[key] = sum(vals) / len(vals) if vals else None
    if out.get("cpu_share"):
        out["wait_per_cpu"] = out["wait_share"] / out["cpu_share"]
    out["colocation"] = r.get("colocation")
    return out


HURT_RATIO = 0.9


def cmd_signals(args):
    """Which signal tells "stacking hurts" (spin) from "it does not"?"""
    runs, meta = [], {}
    for path in args.runs:
        m, rs, _ = load_runs(path)
        meta = meta or m
        runs += [r for r in rs if r["scenario"] == "a"]
    keys = SIGNALS + [("wait_per_cpu", "wait per CPU-s", lambda v: f"{v:.2f}"),
                      ("colocation", "co-location", lambda v: f"{100 * v:.0f}%")]
    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in runs)]
    modes = [m for m in ("default", "stacked") if any(r["mode"] == m for r in runs)]
    lines = ["# Signals for the adaptive policy: what a vCPU looks like when stacking hurts", ""]
    lines.append(f"Host: {meta.get('host', '?')} ({len(meta.get('host_cpus', []))} CPUs), kernel {meta.get('kernel', '?')}, "
                 f"{meta.get('qemu', '?')} (TCG), guests {meta.get('guest_image', '?')} + busybox. Scenario a "
                 f"(2 guests x 2 vCPUs), warm-up {meta.get('warmup_s')} s, window {meta.get('window_s')} s, "
                 f"sampled at {meta.get('hz')} Hz. Per run every signal is the mean over the 4 vCPU threads; "
                 "cells are median [min-max] over the runs. Written by `effbench.py signals`.")
    lines.append("")
    lines.append("Signals (per vCPU thread, over the window): CPU use share = schedstat field 1 delta / wall; "
                 "run-queue wait share = schedstat field 2 delta / wall; voluntary / involuntary cs/s = "
                 "`voluntary_ctxt_switches` / `nonvoluntary_ctxt_switches` deltas of `/proc/PID/task/TID/status` "
                 "per second; runnable share = samples in state R; runnable beside a sibling = samples in which "
                 "it and a sibling vCPU of its guest are both R with the same last CPU (one of them waits for the "
                 "other), and \"its wait grew\" = of those, the samples in which its own schedstat wait grew since the "
                 "previous sample (it is the one waiting); wait per CPU-s = wait share / CPU share; co-location as "
                 "in effectiveness.md (share of both-runnable sibling pairs on one CPU).")
    lines.append("")
    lines.append("| workload | mode | runs | ops | stacked / default (paired) | other load CPU-s | " + " | ".join(h for _, h, _ in keys) + " |")
    lines.append("|---|---|---|---|---|---|" + "---|" * len(keys))
    per = {}
    for w in workloads:
        for m in modes:
            cell = [r for r in runs if r["workload"] == w and r["mode"] == m and not r.get("error")]
            sigs = [x for x in (run_signals(r) for r in cell) if x]
            if not cell:
                continue
            per[(w, m)] = sigs
            base = [r for r in runs if r["workload"] == w and r["mode"] == "default"]
            ratio = fmt_ci(bootstrap_median_ci(paired_ratios(cell, base))) if m != "default" else "-"
            cols = [med_range([x.get(k) for x in sigs], f) for k, _, f in keys]
            lines.append(f"| {w} | {m} | {len(cell)} | {med_range([r.get('aggregate_ops') for r in cell], lambda v: f'{v:g}')} "
                         f"| {ratio} | {med_range([r.get('other_load_s') for r in cell], lambda v: f'{v:.1f}')} | "
                         + " | ".join(cols) + " |")
    lines.append("")
    # Which workloads did stacking hurt in these runs (median paired ratio)?
    hurt = []
    for w in workloads:
        cell = [r for r in runs if r["workload"] == w and r["mode"] == "stacked"]
        base = [r for r in runs if r["workload"] == w and r["mode"] == "default"]
        ratios = [v for v in paired_ratios(cell, base) if v is not None]
        if ratios and statistics.median(ratios) < HURT_RATIO:
            hurt.append(w)
    groupings = [
        ("spin against the rest (the premise: only a plain spin suffers from stacking)",
         ["spin"], "spin", "others"),
        (f"by outcome in these runs: stacked/default median below {HURT_RATIO} "
         f"({', '.join(hurt) or 'none'}) against the rest "
         f"({', '.join(w for w in workloads if w not in hurt) or 'none'})",
         hurt, "hurt", "not hurt"),
    ]
    lines.append("## Separation (computed)")
    lines.append("")
    lines.append("For each signal and placement: the range over the runs of one group of workloads against the "
                 "other's; \"separates\" when the ranges do not overlap and the gap is at least 5% of the value at "
                 "its upper edge (any threshold inside the gap splits these runs). Few runs on a noisy host: a "
                 "separation here is a candidate, not a proof.")
    for title, group, name_a, name_b in groupings:
        if not group or len(group) == len(workloads):
            continue
        lines.append("")
        lines.append(f"### {title}")
        lines.append("")
        lines.append(f"| signal | mode | {name_a} [min-max] | {name_b} [min-max] | separates | gap |")
        lines.append("|---|---|---|---|---|---|")
        for k, h, f in keys:
            for m in modes:
                a = [x[k] for w in group for x in per.get((w, m), []) if x.get(k) is not None]
                b = [x[k] for w in workloads if w not in group for x in per.get((w, m), []) if x.get(k) is not None]
                if not a or not b:
                    continue
                if min(a) > max(b):
                    sep, gap, lo, hi = f"yes, {name_a} higher", f"{f(max(b))} - {f(min(a))}", max(b), min(a)
                elif max(a) < min(b):
                    sep, gap, lo, hi = f"yes, {name_a} lower", f"{f(max(a))} - {f(min(b))}", max(a), min(b)
                else:
                    sep, gap, lo, hi = "no", "-", 0, 0
                # A gap narrower than 5% of its upper edge is none a threshold
                # could use (e.g. runnable shares of 1.00 against 0.99).
                if sep != "no" and hi - lo < 0.05 * abs(hi):
                    sep = "no (ranges touch)"
                lines.append(f"| {h} | {m} | {f(min(a))}-{f(max(a))} | {f(min(b))}-{f(max(b))} | {sep} | {gap} |")
    text = "\n".join(lines) + "\n"
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as fh:
            fh.write(text)
            if args.notes and os.path.exists(args.notes):
                fh.write("\n" + open(args.notes).read())
    print(text)


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark, append runs to RUNDIR/runs.jsonl")
    r.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 5)))
    r.add_argument("--scenarios", default=",".join(SCENARIOS))
    r.add_argument("--modes", default=",".join(MODES))
    r.add_argument("--workloads", default="hackbench")
    r.add_argument("--warmup", type=float, default=5.0, help="guest seconds of load before the window")
    r.add_argument("--window", type=float, default=20.0, help="guest seconds counted")
    r.add_argument("--cooldown", type=float, default=3.0, help="guest seconds of load after the window")
    r.add_argument("--hz", type=float, default=50.0, help="co-location sampling rate")
    r.add_argument("--spin-cs", type=int, default=2000, help="spinlock critical section steps")
    r.add_argument("--spin-out", type=int, default=2000, help="spinlock private work steps between acquisitions")
    r.add_argument("--boot-timeout", type=float, default=240.0)
    r.add_argument("--retries", type=int, default=2, help="extra attempts for a run that failed")
    r.add_argument("--wait-lock", action="store_true",
                   help="wait for another effectiveness run on this host to finish instead of failing")
    r.add_argument("--image", default=os.path.join(DEFAULT_OUT, "image"))
    r.add_argument("--out", default=DEFAULT_OUT)
    r.add_argument("--rundir", default=None, help="default: OUT/runs/TIMESTAMP")
    r.add_argument("--daemon", default=DEFAULT_DAEMON, help="vcpuspreadd binary ($VCPUSPREADD)")
    r.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="markdown table + PNG chart from a runs.jsonl")
    rp.add_argument("runs")
    rp.add_argument("--md")
    rp.add_argument("--png")
    rp.set_defaults(func=cmd_report)
    sp = sub.add_parser("signals", help="table of the per-vCPU signals by workload and mode (scenario a)")
    sp.add_argument("runs", nargs="+")
    sp.add_argument("--md")
    sp.add_argument("--notes", help="markdown appended after the computed tables (the reading)")
    sp.set_defaults(func=cmd_signals)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
