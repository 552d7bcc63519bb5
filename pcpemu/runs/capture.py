"""``pcpemu capture``: trace a command's page-allocator traffic on the live kernel.

Records the six kmem events of include/trace/events/kmem.h (and, when the kernel
allows the filter, the vmstat_update work items, so that a replay knows when the
kernel ran decay_pcp_high) in a tracefs instance of its own, so the global trace
buffer and every other instance stay as they were. Snapshots of /proc/zoneinfo,
buddyinfo, pagetypeinfo and vmstat are taken right before tracing starts and
right after it stops; the trace is streamed from trace_pipe to disk while the
command runs, then compressed to trace.txt.xz.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..errors import CaptureError, CaptureLossError

__all__ = ["CAPTURE_FILES", "CAPTURE_SCHEMA", "COMPACTION_EVENTS", "KERNEL_WORK_EVENTS", "KMEM_EVENTS",
           "KSWAPD_EVENTS", "PROC_SNAPSHOTS", "CaptureInfo", "capture", "is_capture", "load_capture",
           "tracefs_problem"]

#: Bumped when capture.json changes incompatibly.
CAPTURE_SCHEMA = 1
KMEM_EVENTS = ("mm_page_alloc", "mm_page_free", "mm_page_free_batched", "mm_page_alloc_zone_locked",
               "mm_page_pcpu_drain", "mm_page_alloc_extfrag")
#: The vmstat worker's runs (vmstat_update -> refresh_cpu_vm_stats -> decay_pcp_high).
TIMER_EVENT = "workqueue/workqueue_execute_start"
TIMER_FILTER = "function.function == vmstat_update"
#: Kernel work beside the traced path that changes the pcp lists and that pcpemu does
#: not model, recorded when the kernel has the tracepoint; a replay reports how often
#: it ran (it is not replayed).
KERNEL_WORK_EVENTS = {
    "vmalloc/alloc_vmap_area": "a vmalloc area (a kernel stack: 16 KiB) takes its pages off the CPU's pcp list "
                               "through alloc_pages_bulk with no kmem event (vm_area_alloc_pages), and they are "
                               "freed only when the area is",
}
#: kswapd's runs of balance_pgdat, which holds ZONE_RECLAIM_ACTIVE on the node's zones
#: while it runs (a free then lowers pcp->high and drains above 4 * batch,
#: nr_pcp_high): a replay sets the flag from each wake to kswapd's last event of the
#: run (runs.reclaim); the sleeps are reported.
KSWAPD_EVENTS = ("vmscan/mm_vmscan_kswapd_wake", "vmscan/mm_vmscan_kswapd_sleep")
#: compact_zone's runs, inside which it empties the CPU's pcp of the zone
#: (lru_add_drain_cpu_zone): a replay drains the emulated pcp at those drains.
COMPACTION_EVENTS = ("compaction/mm_compaction_begin", "compaction/mm_compaction_end")
PROC_SNAPSHOTS = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat")
TRACE_FILE = "trace.txt.xz"
CAPTURE_FILES = (TRACE_FILE, "capture.json", *(f"{when}-{name}" for when in ("before", "after")
                                                for name in PROC_SNAPSHOTS))
_TRACEFS_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_PART = "trace.txt.part"


@dataclass
class CaptureInfo:
    """What capture.json holds."""

    kernel_release: str
    cpus: int
    events: list[str]
    timer_events: bool
    command: list[str]
    exit_status: int
    pid_only: bool
    buffer_kb: int
    trace_clock: str
    stat_interval: float
    start_timestamp: float
    end_timestamp: float
    wall_seconds: float
    ring_buffer: list[dict[str, Any]]
    lost_events: int
    allow_loss: bool
    trace_bytes: int
    schema: int = CAPTURE_SCHEMA
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# tracefs


def _tracefs_root() -> str | None:
    for root in _TRACEFS_MOUNTS:
        if os.path.exists(os.path.join(root, "instances")):
            return root
    return None


@contextlib.contextmanager
def _mounted_tracefs() -> Iterator[str]:
    # Mounts tracefs when no mount is there yet, and unmounts it again after.
    root = _tracefs_root()
    if root is not None:
        yield root
        return
    target = _TRACEFS_MOUNTS[0]
    if not os.path.isdir(target):
        raise CaptureError(f"tracefs is not available: {target} does not exist (kernel built without "
                           "CONFIG_TRACING?)")
    done = subprocess.run(["mount", "-t", "tracefs", "nodev", target], capture_output=True, text=True)
    if done.returncode:
        raise CaptureError(f"cannot mount tracefs on {target}: {done.stderr.strip() or done.returncode}")
    try:
        yield target
    finally:
        subprocess.run(["umount", target], capture_output=True)


def tracefs_problem() -> str | None:
    """Why a capture cannot run here (not root, no tracefs, an event missing), or None."""
    if os.geteuid() != 0:
        return "pcpemu capture must run as root (tracefs and set_event_pid need it)"
    root = _tracefs_root()
    if root is None:
        if not os.path.isdir(_TRACEFS_MOUNTS[0]):
            return f"tracefs is not available: {_TRACEFS_MOUNTS[0]} does not exist"
        return None          # capture mounts it
    missing = [e for e in KMEM_EVENTS if not os.path.isdir(os.path.join(root, "events", "kmem", e))]
    if missing:
        return f"the kernel has no kmem event {', '.join(missing)} (CONFIG_TRACEPOINTS?)"
    return None


class _Instance:
    """A tracefs instance of our own: its buffer, events and pid filter are private."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, "instances", f"pcpemu-capture-{os.getpid()}")
        try:
            os.mkdir(self.path)
        except OSError as err:
            raise CaptureError(f"cannot create tracefs instance {self.path}: {err.strerror}") from None

    def write(self, name: str, value: str) -> None:
        try:
            with open(os.path.join(self.path, name), "w") as f:
                f.write(value)
        except OSError as err:
            raise CaptureError(f"tracefs: cannot write {value.strip()!r} to {name}: {err.strerror}") from None

    def read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def enable(self, event: str, filt: str | None = None) -> None:
        if not os.path.isdir(os.path.join(self.path, "events", event)):
            raise CaptureError(f"the kernel has no event {event} (CONFIG_TRACEPOINTS?)")
        if filt:
            self.write(f"events/{event}/filter", filt)
        self.write(f"events/{event}/enable", "1")

    def cpu_stats(self, cpus: int) -> list[dict[str, Any]]:
        # per_cpu/cpuN/stats (tracing_stats_read): entries, overrun, commit overrun,
        # bytes, oldest event ts, now ts, dropped events, read events.
        out = []
        for cpu in range(cpus):
            stats: dict[str, Any] = {"cpu": cpu}
            for line in self.read(f"per_cpu/cpu{cpu}/stats").splitlines():
                key, _, value = line.partition(":")
                value = value.strip()
                key = key.strip().replace(" ", "_")
                stats[key] = float(value) if "ts" in key.split("_") else int(value)
            out.append(stats)
        return out

    def remove(self) -> None:
        # rmdir of an instance disables its events and frees its buffer.
        with contextlib.suppress(OSError):
            self.write("tracing_on", "0")
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError as err:
                if err.errno != errno.EBUSY:
                    return
                time.sleep(0.02)    # a reader still has trace_pipe open


class _PipeReader(threading.Thread):
    """Copies trace_pipe to a file while the command runs, so the ring buffer only
    has to hold the bursts."""

    def __init__(self, pipe: str, out: str) -> None:
        super().__init__(name="pcpemu-capture-reader", daemon=True)
        self.fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        self.out = open(out, "wb")
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.bytes = 0

    def run(self) -> None:
        try:
            while True:
                try:
                    block = os.read(self.fd, 1 << 20)
                except BlockingIOError:
                    if self.stopping.is_set():
                        return      # tracing is off and the buffer is empty
                    time.sleep(0.01)
                    continue
                if not block:
                    if self.stopping.is_set():
                        return
                    time.sleep(0.01)
                    continue
                self.out.write(block)
                self.bytes += len(block)
        except BaseException as err:       # reported by finish()
            self.error = err

    def finish(self) -> int:
        self.stopping.set()
        self.join()
        os.close(self.fd)
        self.out.close()
        if self.error is not None:
            raise CaptureError(f"reading trace_pipe failed: {self.error}")
        return self.bytes


# ---------------------------------------------------------------------------------------
# The capture directory.


def is_capture(path: str | os.PathLike[str]) -> bool:
    """True when path is a directory holding a capture.json."""
    return os.path.isfile(os.path.join(path, "capture.json"))


def _check_dir(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise CaptureError(f"{out} exists and is not a directory")
    if os.path.isdir(out):
        other = sorted(set(os.listdir(out)) - set(CAPTURE_FILES) - {_PART})
        if other or (os.listdir(out) and not is_capture(out)):
            shown = ", ".join(other[:3]) or ", ".join(sorted(os.listdir(out))[:3])
            raise CaptureError(f"{out} already holds something other than a pcpemu capture ({shown}); "
                               "choose an empty or new directory")


def load_capture(path: str | os.PathLike[str]) -> CaptureInfo:
    """Read a capture directory's capture.json.

    :raises CaptureError: when it is not a capture, or a file of it is missing.
    """
    path = os.fspath(path)
    if not is_capture(path):
        raise CaptureError(f"{path} is not a pcpemu capture (no capture.json)")
    try:
        with open(os.path.join(path, "capture.json"), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        raise CaptureError(f"{path}/capture.json cannot be read: {err}") from None
    known = {f.name for f in fields(CaptureInfo)}
    required = {f.name for f in fields(CaptureInfo) if f.default is MISSING and f.default_factory is MISSING}
    keys = set(doc) if isinstance(doc, dict) else set()
    if not isinstance(doc, dict) or required - keys or keys - known:
        raise CaptureError(f"{path}/capture.json is not a capture's: " + "; ".join(filter(None, (
            f"no {', '.join(sorted(required - keys))}" if required - keys else "",
            f"unknown {', '.join(sorted(keys - known))}" if keys - known else ""))))
    info = CaptureInfo(**doc)
    if info.schema > CAPTURE_SCHEMA:
        raise CaptureError(f"{path} is a capture of schema {info.schema}; this pcpemu reads {CAPTURE_SCHEMA}")
    missing = [n for n in CAPTURE_FILES if not os.path.exists(os.path.join(path, n))]
    if missing:
        raise CaptureError(f"capture {path} lacks {', '.join(missing)}")
    return info


def _read_proc(when: str) -> dict[str, bytes]:
    # zoneinfo (the pcp counts a replay starts from) is read closest to the trace:
    # last before it, first after it. pagetypeinfo walks every free list and takes
    # tens of milliseconds on a busy machine; read between zoneinfo and the trace,
    # its events would be missing from both.
    names = ("zoneinfo", "vmstat", "buddyinfo", "pagetypeinfo")
    data = {}
    for name in names[::-1] if when == "before" else names:
        with open(f"/proc/{name}", "rb") as src:
            data[name] = src.read()
    return data


def _write_proc(out: str, when: str, data: dict[str, bytes]) -> None:
    for name, text in data.items():
        with open(os.path.join(out, f"{when}-{name}"), "wb") as dst:
            dst.write(text)


def _online_cpus() -> int:
    return os.cpu_count() or 1


def _stat_interval() -> float:
    # /proc/sys/vm/stat_interval: sysctl_stat_interval in seconds.
    try:
        with open("/proc/sys/vm/stat_interval") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 1.0


# ---------------------------------------------------------------------------------------
# The command.


class _Interrupted(Exception):
    pass


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks restore tracing.
    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _start_held(command: Sequence[str]) -> subprocess.Popen:
    # The command starts stopped (the shell stops itself before exec), so its pid
    # can go into set_event_pid before it runs a single instruction of its own.
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *command])
    except OSError as err:
        raise CaptureError(f"cannot run /bin/sh: {err.strerror}") from None
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
    except BaseException:           # interrupted: the held command must not outlive us
        proc.kill()
        proc.wait()
        raise
    if not os.WIFSTOPPED(status):
        proc.returncode = os.waitstatus_to_exitcode(status)
        raise CaptureError(f"the command exited before it could be traced (status {proc.returncode})")
    return proc


def capture(out: str | os.PathLike[str], command: Sequence[str], *, pid_only: bool = False,
            buffer_mb: int = 128, allow_loss: bool = False, xz_level: int = 1) -> CaptureInfo:
    """Run command traced and write a capture directory.

    :param out: the directory (created; if it exists it must be empty or a capture).
    :param command: argv of the command to run.
    :param pid_only: trace only the command and its descendants (set_event_pid with
        options/event-fork); by default the whole system, since all tasks share the pcp lists.
    :param buffer_mb: ring-buffer size per CPU.
    :param allow_loss: record events the ring buffer lost instead of failing.
    :raises CaptureError: not root, no tracefs or event, a bad directory, a command that
        cannot start; CaptureLossError when the buffer overran without ``allow_loss``.
    """
    out = os.fspath(out)
    if not command:
        raise CaptureError("capture needs a command to run (after --)")
    if buffer_mb < 1:
        raise CaptureError(f"--buffer-mb must be at least 1, not {buffer_mb}")
    problem = tracefs_problem()
    if problem:
        raise CaptureError(problem)
    _check_dir(out)
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    for name in CAPTURE_FILES:        # an older capture in DIR is replaced whole
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
    ok = False
    try:
        info = _traced_run(out, command, pid_only, buffer_mb, allow_loss)
        _compress(os.path.join(out, _PART), os.path.join(out, TRACE_FILE), xz_level)
        with open(os.path.join(out, "capture.json"), "w", encoding="utf-8") as f:
            json.dump(info.__dict__, f, indent=1)
            f.write("\n")
        ok = True
    except KeyboardInterrupt:
        raise CaptureError("capture interrupted; tracing restored, nothing kept") from None
    except _Interrupted as sig:
        raise CaptureError(f"capture stopped by {sig}; tracing restored, nothing kept") from None
    finally:
        if not ok:
            _discard(out, created)
    return info


def _traced_run(out: str, command: Sequence[str], pid_only: bool, buffer_mb: int,
                allow_loss: bool) -> CaptureInfo:
    # Everything between creating our tracefs instance and removing it again.
    cpus = _online_cpus()
    notes: list[str] = []
    part = os.path.join(out, _PART)
    with _terminate_as_interrupt(), _mounted_tracefs() as root:
        inst = _Instance(root)
        reader: _PipeReader | None = None
        proc: subprocess.Popen | None = None
        try:
            inst.write("tracing_on", "0")
            inst.write("buffer_size_kb", str(buffer_mb * 1024))
            for event in KMEM_EVENTS:
                inst.enable(f"kmem/{event}")
            try:
                inst.enable(TIMER_EVENT, TIMER_FILTER)
                timer = True
            except CaptureError as err:
                timer = False
                notes.append(f"no vmstat_update events ({err}); replay assumes a timer every stat_interval")
            work = []
            # Whole-system only: kswapd and kcompactd are other tasks, which set_event_pid leaves out.
            for event in () if pid_only else (*KSWAPD_EVENTS, *COMPACTION_EVENTS, *KERNEL_WORK_EVENTS):
                try:
                    inst.enable(event)
                    work.append(event)
                except CaptureError as err:
                    notes.append(f"no {event} events ({err}); a replay cannot tell how often it ran")
            if pid_only:
                proc = _start_held(command)
                inst.write("options/event-fork", "1")
                inst.write("set_event_pid", str(proc.pid))
            reader = _PipeReader(os.path.join(inst.path, "trace_pipe"), part)
            reader.start()
            before = _read_proc("before")
            start_ts = _now_ts(inst)
            inst.write("tracing_on", "1")
            _write_proc(out, "before", before)
            t0 = time.monotonic()
            if proc is None:
                proc = _start_held(command)
            os.kill(proc.pid, signal.SIGCONT)
            status = proc.wait()
            inst.write("tracing_on", "0")
            wall = time.monotonic() - t0
            end_ts = _now_ts(inst)
            _write_proc(out, "after", _read_proc("after"))
            ring = inst.cpu_stats(cpus)
            nbytes = reader.finish()
            reader = None
        finally:
            # Tracing off first: the reader stops only once trace_pipe runs dry.
            with contextlib.suppress(CaptureError):
                inst.write("tracing_on", "0")
            if reader is not None:
                with contextlib.suppress(CaptureError):
                    reader.finish()
            inst.remove()
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        clock = _current_clock(root)
    # The markers and the counters may tell of the same loss: the larger counts.
    lost = max(sum(r["overrun"] + r["commit_overrun"] + r["dropped_events"] for r in ring),
               _count_lost_markers(part))
    if lost and not allow_loss:
        raise CaptureLossError(f"the ring buffer lost {lost:,} events; the capture is incomplete "
                               f"(raise --buffer-mb above {buffer_mb}, trace less with --pid-only, "
                               "or keep it with --allow-loss)")
    if lost:
        notes.append(f"the ring buffer lost {lost:,} events (--allow-loss)")
    return CaptureInfo(
        kernel_release=platform.release(), cpus=cpus,
        events=[f"kmem/{e}" for e in KMEM_EVENTS] + ([TIMER_EVENT] if timer else []) + work,
        timer_events=timer, command=list(command), exit_status=status, pid_only=pid_only,
        buffer_kb=buffer_mb * 1024, trace_clock=clock, stat_interval=_stat_interval(),
        start_timestamp=start_ts, end_timestamp=end_ts, wall_seconds=round(wall, 6),
        ring_buffer=ring, lost_events=lost, allow_loss=allow_loss, trace_bytes=nbytes, notes=notes)


def _discard(out: str, created: bool) -> None:
    # A failed capture leaves no partial files behind (nor a directory it made).
    for name in (*CAPTURE_FILES, _PART, TRACE_FILE + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(out)


def _now_ts(inst: _Instance) -> float:
    # The trace clock now, as cpu0's stats print it ("now ts").
    return inst.cpu_stats(1)[0]["now_ts"]


def _current_clock(root: str) -> str:
    with open(os.path.join(root, "trace_clock")) as f:
        text = f.read()
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else text.strip()


def _count_lost_markers(path: str) -> int:
    # trace_pipe prints "CPU:N [LOST M EVENTS]" where the reader fell behind.
    total = 0
    pat = re.compile(rb"\[LOST (\d+) EVENTS\]")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            if b"LOST" in block:
                total += sum(int(m.group(1)) for m in pat.finditer(block))
    return total


def _compress(part: str, dest: str, level: int) -> None:
    xz = shutil.which("xz")
    if xz is None:
        raise CaptureError("xz is not installed (apt-get install xz-utils)")
    with open(part, "rb") as src, open(dest + ".tmp", "wb") as dst:
        done = subprocess.run([xz, f"-{level}", "-T0", "-c"], stdin=src, stdout=dst, stderr=subprocess.PIPE)
    if done.returncode:
        os.remove(dest + ".tmp")
        raise CaptureError(f"xz failed: {done.stderr.decode(errors='replace').strip()}")
    os.replace(dest + ".tmp", dest)
    os.remove(part)
