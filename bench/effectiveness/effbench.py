#!/usr/bin/python3
"""Effectiveness benchmark: real TCG guests under overcommit, with the host
scheduler left alone (default), sibling vCPUs stacked on one CPU (stacked),
a fixed vCPU k -> CPU k mod N spread (static-spread), or the daemon running
(vcpuspreadd).

  effbench.py run    [--reps N] [--scenarios a,b,c,d] [--modes ...] [--workloads ...]
  effbench.py report RUNS.jsonl [--md FILE] [--png FILE]

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
import platform
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

# Scenario: list of guests, each (vCPUs, workload role).  "busy" runs the
# selected workload, "idle" only boots and sleeps through the window.
SCENARIOS = {
    "a": ("2 guests x 2 vCPUs", [(2, "busy"), (2, "busy")]),
    "b": ("3 guests x 2 vCPUs", [(2, "busy"), (2, "busy"), (2, "busy")]),
    "c": ("busy 2-vCPU guest + idle 2-vCPU guest", [(2, "busy"), (2, "idle")]),
    "d": ("4-vCPU guest + 2-vCPU guest", [(4, "busy"), (2, "busy")]),
}
MODES = ["default", "stacked", "static-spread", "vcpuspreadd"]
WORKLOADS = ["hackbench", "futex"]
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


class Sampler:
    """Samples every vCPU thread at HZ until stopped and counts, per guest,
    the sibling pairs that are both runnable and how many of those share a CPU."""

    def __init__(self, guests, hz=50.0):
        self.guests = guests
        self.period = 1.0 / hz
        self.stop_event = threading.Event()
        self.samples = 0
        self.late = 0
        self.both_runnable = {g.name: 0 for g in guests}
        self.colocated = {g.name: 0 for g in guests}
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
            for tid in g.vcpu_tids:
                try:
                    state, cpu = read_state_cpu(g.qemu_pid, tid)
                except (OSError, ValueError, IndexError):
                    continue
                if state == "R":
                    runnable_cpus.append(cpu)
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


class Daemon:
    def __init__(self, binary, logpath):
        self.binary = binary
        self.logpath = logpath
        self.proc = None

    def start(self):
        self.logfile = open(self.logpath, "w")
        self.proc = subprocess.Popen([self.binary, "--log-target", "console"],
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
    label, spec = SCENARIOS[scenario]
    cpus = host_cpus()
    guests = [Guest(f"{GUEST_PREFIX}{run_id}-g{i}", vcpus, role, workload, rundir)
              for i, (vcpus, role) in enumerate(spec)]
    record = {
        "run_id": run_id, "scenario": scenario, "scenario_label": label, "mode": mode,
        "workload": workload, "rep": rep, "host_cpus": cpus,
        "warmup_s": args.warmup, "window_s": args.window, "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "guests": [], "error": None,
    }
    daemon = None
    t_run = time.monotonic()
    try:
        if mode == "vcpuspreadd":
            daemon = Daemon(args.daemon, os.path.join(rundir, f"{run_id}-daemon.log"))
            daemon.start()

        for g in guests:
            cmdline = (f"console=ttyS0 quiet loglevel=3 bench.workload={g.workload} "
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
        busy0 = host_busy_s()
        qemu0 = sum(process_cpu_s(g.qemu_pid) for g in guests)
        sampler.start()
        time.sleep(max(0.0, t_go + args.warmup + args.window - time.monotonic()))
        sampler.stop()
        after = {tid: read_schedstat(tid) for g in guests for tid in g.vcpu_tids}
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
            for tid in g.vcpu_tids:
                if before.get(tid) and after.get(tid):
                    run_ns += after[tid][0] - before[tid][0]
                    wait_ns += after[tid][1] - before[tid][1]
            record["guests"].append({
                "name": g.name, "vcpus": g.vcpus, "role": g.role, "workload": m.group(1),
                "ops": int(m.group(2)), "guest_ncpus": int(m.group(4)),
                "vcpu_tids": g.vcpu_tids,
                "both_runnable": sampler.both_runnable[g.name],
                "colocated": sampler.colocated[g.name],
                "cpu_s": round(run_ns / 1e9, 2), "wait_s": round(wait_ns / 1e9, 2),
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
    # Fairness between busy guests: none to speak of with a single one.
    record["fairness"] = (min(ops) / max(ops)) if len(ops) > 1 and max(ops) > 0 else None
    med = statistics.median(ops)
    record["starved"] = [g["name"] for g in busy if len(busy) > 1 and g["ops"] < STARVATION_FRACTION * med]
    both = sum(g["both_runnable"] for g in record["guests"] if "both_runnable" in g)
    colo = sum(g["colocated"] for g in record["guests"] if "colocated" in g)
    record["colocation"] = (colo / both) if both else None


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
    if "vcpuspreadd" in modes and not os.access(args.daemon, os.X_OK):
        note = f"mode vcpuspreadd skipped: daemon binary {args.daemon} not found (set VCPUSPREADD)"
        log(note)
        notes.append(note)
        modes = [m for m in modes if m != "vcpuspreadd"]

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
        "notes": notes, "other_guests_at_start": [n for n in virsh("list", "--name", check=False).stdout.split("\n") if n.strip()],
    }
    total = args.reps * len(scenarios) * len(modes) * len(workloads)
    log(f"{total} runs into {runs_path}")
    t0 = time.monotonic()
    with open(runs_path, "a") as out:
        out.write(json.dumps(meta) + "\n")
        out.flush()
        n = 0
        for workload in workloads:
            for rep in range(args.reps):
                for scenario in scenarios:
                    # Interleave the modes and rotate their order every
                    # repetition, so slow drift of the host hits all modes.
                    k = (rep + scenarios.index(scenario)) % len(modes)
                    for mode in modes[k:] + modes[:k]:
                        n += 1
                        run_id = f"{scenario}{MODES.index(mode)}{workload[0]}{rep}-{os.getpid() % 10000}"
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
                summarize(r)  # recomputed: the metrics' definitions live here
                runs.append(r)
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
    workloads = meta.get("workloads") or sorted({r["workload"] for r in runs})
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
                 f"{meta.get('reps')} repetitions per cell, modes interleaved; median [min-max].")
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
                 "`hackbench -g 2 -l 20 -T` runs; futex: futex ping-pong round trips across vCPUs); "
                 "per guest = median ops of each guest (g0, g1, ...; idle guests excluded); ops per vCPU CPU-s = aggregate ops "
                 "divided by the CPU time the busy guests' vCPU threads got in the window (`/proc/TID/schedstat`): "
                 "what a guest makes of the CPU it receives, less sensitive to other load than raw ops; fairness = min/max of "
                 "busy guests' ops; co-location = share of sampled sibling pairs, both runnable, that sat on the "
                 f"same host CPU; starved = runs where a busy guest got below {STARVATION_FRACTION:.0%} of the median guest; "
                 "other load = host CPU seconds used during the window by everything but the benchmark's QEMU "
                 "processes (other users of the host, this harness), out of "
                 f"{len(meta.get('host_cpus', [])) * (meta.get('window_s') or 0):g} available.")
    for workload in workloads:
        lines.append("")
        lines.append(f"## {workload}")
        lines.append("")
        lines.append("| scenario | mode | aggregate ops | per guest (median) | ops per vCPU CPU-s | fairness | co-location | starved | other load | runs |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in scenarios:
            for m in modes:
                cell = [r for r in runs if r["workload"] == workload and r["scenario"] == s and r["mode"] == m]
                if not cell:
                    continue
                ok = [r for r in cell if not r.get("error")]
                per_guest = "-"
                if ok:
                    busy_idx = [i for i, g in enumerate(ok[0]["guests"]) if g.get("role") == "busy"]
                    per_guest = " / ".join(f"{statistics.median(r['guests'][i]['ops'] for r in ok):g}" for i in busy_idx)
                starved = sum(1 for r in ok if r.get("starved"))
                errors = len(cell) - len(ok)
                runs_col = f"{len(ok)}" + (f" ({errors} failed)" if errors else "")
                lines.append(f"| {s}: {SCENARIOS[s][0]} | {m} | "
                             f"{med_range([r.get('aggregate_ops') for r in ok], lambda v: f'{v:g}')} | {per_guest} | "
                             f"{med_range([efficiency(r) for r in ok], eff_fmt)} | "
                             f"{med_range([r.get('fairness') for r in ok], lambda v: f'{v:.2f}')} | "
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
                                         r["scenario"], order[r["mode"]], r["rep"])):
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
    metrics = [("aggregate_ops", "aggregate ops in window"), (efficiency, "ops per vCPU CPU-second"),
               ("fairness", "fairness (min/max guest)"), ("colocation", "sibling co-location"),
               ("other_load_s", "other load (host CPU-s in window)")]
    colors = {"default": "#4c72b0", "stacked": "#c44e52", "static-spread": "#dd8452", "vcpuspreadd": "#55a868"}
    fig, axes = plt.subplots(len(metrics), len(workloads), figsize=(max(8.0, 5.5 * len(workloads)), 2.6 * len(metrics) + 1.8),
                             squeeze=False)
    width = 0.8 / max(1, len(modes))
    for col, workload in enumerate(workloads):
        for row, (key, title) in enumerate(metrics):
            ax = axes[row][col]
            for mi, m in enumerate(modes):
                for si, s in enumerate(scenarios):
                    vals = [key(r) if callable(key) else r.get(key) for r in runs
                            if r["workload"] == workload and r["scenario"] == s and r["mode"] == m and not r.get("error")]
                    vals = [v for v in vals if v is not None]
                    if not vals:
                        continue
                    x = si + (mi - (len(modes) - 1) / 2) * width
                    med = statistics.median(vals)
                    ax.bar(x, med, width * 0.9, color=colors[m], label=m if si == 0 else None,
                           yerr=[[med - min(vals)], [max(vals) - med]], capsize=2, error_kw={"lw": 0.8})
                    ax.scatter([x] * len(vals), vals, s=8, color="black", zorder=3)
            ax.set_xticks(range(len(scenarios)))
            ax.set_xticklabels(scenarios)
            ax.set_title(f"{workload}: {title}", fontsize=10)
            if key in ("fairness", "colocation"):
                ax.set_ylim(0, 1.05)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle(f"vcpuspreadd effectiveness, {meta.get('date', '?')[:10]}, {meta.get('host', '?')}, "
                 f"kernel {meta.get('kernel', '?')}\n" +
                 textwrap.fill("scenarios: " + "; ".join(f"{s} = {SCENARIOS[s][0]}" for s in scenarios), 90) +
                 "\nbars: median, whiskers: min-max, dots: runs", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark, append runs to RUNDIR/runs.jsonl")
    r.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 5)))
    r.add_argument("--scenarios", default="a,b,c,d")
    r.add_argument("--modes", default=",".join(MODES))
    r.add_argument("--workloads", default="hackbench")
    r.add_argument("--warmup", type=float, default=5.0, help="guest seconds of load before the window")
    r.add_argument("--window", type=float, default=20.0, help="guest seconds counted")
    r.add_argument("--cooldown", type=float, default=3.0, help="guest seconds of load after the window")
    r.add_argument("--hz", type=float, default=50.0, help="co-location sampling rate")
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
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
