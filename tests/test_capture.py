"""pcpemu capture: a real tracefs capture when this machine allows one, and the refusals."""

import json
import lzma
import os
import signal
import subprocess
import sys
import time

import pytest

from pcpemu.errors import CaptureError
from pcpemu.kernel.ftrace import TraceStats, read_event_batches
from pcpemu.runs import capture as cap
from pcpemu.tools.cli import main

PROBLEM = cap.tracefs_problem()
live = pytest.mark.skipif(PROBLEM is not None, reason=f"no live tracefs capture here: {PROBLEM}")

# Faults in 16 MiB of anonymous memory 4 KiB at a time (THP kept out), so at
# least 4096 mm_page_alloc events, then frees it. A pipe was not enough: the
# kernel reuses pipe pages, and the event count fell below 1000 on some runs.
WORKLOAD = [sys.executable, "-c", "import mmap\nm = mmap.mmap(-1, 16 << 20)\nm.madvise(mmap.MADV_NOHUGEPAGE)\n"
            "for off in range(0, 16 << 20, 4096):\n    m[off] = 1\nm.close()\n"]


def _instance_left(pid):
    # Another capture may run at the same time: only the instance of pid counts.
    root = cap._tracefs_root()
    return root is not None and os.path.exists(os.path.join(root, "instances", f"pcpemu-capture-{pid}"))


@live
def test_pid_only_capture_writes_a_whole_capture(tmp_path):
    out = tmp_path / "cap"
    info = cap.capture(out, WORKLOAD, pid_only=True, buffer_mb=8)
    assert sorted(os.listdir(out)) == sorted(cap.CAPTURE_FILES)
    doc = json.loads((out / "capture.json").read_text())
    assert doc["kernel_release"] == os.uname().release
    assert doc["cpus"] == os.cpu_count() and len(doc["ring_buffer"]) == doc["cpus"]
    assert doc["events"][:6] == [f"kmem/{e}" for e in cap.KMEM_EVENTS]
    # Other tasks' work (kswapd, compaction in other tasks, vmalloc): left out with the rest.
    assert not set(doc["events"]) & {*cap.KERNEL_WORK_EVENTS, *cap.KSWAPD_EVENTS, *cap.COMPACTION_EVENTS}
    assert doc["exit_status"] == 0 and doc["pid_only"] and doc["lost_events"] == 0
    assert doc["start_timestamp"] < doc["end_timestamp"]
    for when in ("before", "after"):
        assert (out / f"{when}-zoneinfo").read_text().startswith("Node 0, zone")
        assert "Number of blocks type" in (out / f"{when}-pagetypeinfo").read_text()
    stats = TraceStats()
    n = sum(len(ev) for ev in read_event_batches(out / "trace.txt.xz", stats=stats))
    assert n > 1000 and stats.events["mm_page_alloc"] > 0 and stats.events["mm_page_free"] > 0
    assert not stats.malformed
    # Only the command's tasks are traced, and every event lies inside the capture's clock window.
    text = lzma.decompress((out / "trace.txt.xz").read_bytes()).decode()
    # By pid, not by name: ftrace prints a task's name from its saved_cmdlines
    # cache, which can still hold an older task's name for a reused pid. The
    # workload is one process (exec keeps the held sh's pid), so one pid.
    pids = {line.split("[")[0].strip().rsplit("-", 1)[1] for line in text.splitlines() if "mm_page" in line}
    assert len(pids) == 1, pids
    ts = [float(line.split(": ")[0].split()[-1]) for line in text.splitlines() if "mm_page" in line]
    assert doc["start_timestamp"] <= min(ts) and max(ts) <= doc["end_timestamp"]
    assert info.trace_bytes == len(text.encode())
    assert not _instance_left(os.getpid())      # our instance is gone


@live
def test_a_whole_system_capture_records_the_kernel_work_the_kernel_traces(tmp_path):
    # kswapd's runs and compact_zone's (replayed), and the work only counted.
    cap.capture(tmp_path / "cap", ["/bin/true"], buffer_mb=8, allow_loss=True)
    events = json.loads((tmp_path / "cap" / "capture.json").read_text())["events"]
    wanted = [*cap.KSWAPD_EVENTS, *cap.COMPACTION_EVENTS, *cap.KERNEL_WORK_EVENTS]
    recorded = [e for e in events if e in wanted]
    root = cap._tracefs_root()
    if root is None:                # capture mounted tracefs for itself and took it down again
        assert set(recorded) <= set(wanted)
    else:
        assert recorded == [e for e in wanted if os.path.isdir(os.path.join(root, "events", e))]


@live
def test_capture_keeps_a_failing_commands_status(tmp_path, capsys):
    out = tmp_path / "cap"
    code = main(["capture", "-o", str(out), "--pid-only", "--buffer-mb", "2", "--", "/bin/sh", "-c", "exit 7"])
    assert code == 7
    assert json.loads((out / "capture.json").read_text())["exit_status"] == 7
    assert "exited with status 7" in capsys.readouterr().err


@live
def test_an_older_capture_is_replaced(tmp_path):
    out = tmp_path / "cap"
    cap.capture(out, ["/bin/true"], pid_only=True, buffer_mb=2)
    first = (out / "capture.json").read_text()
    cap.capture(out, ["/bin/true"], pid_only=True, buffer_mb=2)
    assert (out / "capture.json").read_text() != first
    assert sorted(os.listdir(out)) == sorted(cap.CAPTURE_FILES)


@live
def test_sigterm_restores_tracing_and_keeps_nothing(tmp_path):
    out = tmp_path / "cap"
    code = f"from pcpemu.runs.capture import capture; capture({str(out)!r}, ['sleep', '30'], buffer_mb=2)"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 20
    while not (out / "before-zoneinfo").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "stopped by SIGTERM" in err
    assert not out.exists()             # it made the directory, so it takes it away
    assert not _instance_left(proc.pid)
    assert subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True).returncode != 0


def test_a_directory_of_other_files_is_refused_before_tracing(tmp_path, monkeypatch):
    monkeypatch.setattr(cap, "tracefs_problem", lambda: None)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CaptureError, match="other than a pcpemu capture.*notes.txt"):
        cap.capture(tmp_path, ["/bin/true"])
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_not_root_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CaptureError, match="must run as root"):
        cap.capture(tmp_path / "c", ["/bin/true"])
    assert not (tmp_path / "c").exists()


def test_a_missing_event_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    root = tmp_path / "tracing"
    for event in cap.KMEM_EVENTS[:-1]:
        (root / "events" / "kmem" / event).mkdir(parents=True)
    (root / "instances").mkdir()
    monkeypatch.setattr(cap, "_TRACEFS_MOUNTS", (str(root),))
    assert cap.tracefs_problem() == "the kernel has no kmem event mm_page_alloc_extfrag (CONFIG_TRACEPOINTS?)"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(CaptureError, match="needs a command"):
        cap.capture(tmp_path / "c", [])
    with pytest.raises(CaptureError, match="--buffer-mb must be at least 1"):
        cap.capture(tmp_path / "c", ["/bin/true"], buffer_mb=0)


def test_lost_markers_are_counted(tmp_path):
    part = tmp_path / "t"
    part.write_bytes(b"x [001] ..... 1.0: mm_page_free: page=0 pfn=0x1 order=0\nCPU:1 [LOST 17 EVENTS]\n"
                     b"CPU:0 [LOST 3 EVENTS]\n")
    assert cap._count_lost_markers(str(part)) == 20


def test_load_capture_refuses_a_plain_directory(tmp_path):
    with pytest.raises(CaptureError, match="not a pcpemu capture"):
        cap.load_capture(tmp_path)


def test_a_capture_json_that_is_not_a_captures_is_refused_by_name(tmp_path):
    src = os.path.join(os.path.dirname(__file__), "data", "capture-6.18-small")
    d = tmp_path / "cap"
    d.mkdir()
    for name in os.listdir(src):
        (d / name).write_bytes(open(os.path.join(src, name), "rb").read())
    doc = json.loads((d / "capture.json").read_text())
    assert cap.load_capture(d).cpus == doc["cpus"]
    del doc["cpus"]
    (d / "capture.json").write_text(json.dumps({**doc, "colour": "blue"}))
    with pytest.raises(CaptureError, match=r"capture.json is not a capture's: no cpus; unknown colour$"):
        cap.load_capture(d)
    (d / "capture.json").write_text("[1, 2]")
    with pytest.raises(CaptureError, match="no allow_loss, buffer_kb, command"):
        cap.load_capture(d)
    (d / "capture.json").write_text("{")
    with pytest.raises(CaptureError, match="cannot be read"):
        cap.load_capture(d)
