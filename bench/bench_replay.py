"""Speed of trace replay: the ftrace reader alone, and parse + replay end to end.

Run: python3 -m pytest bench/bench_replay.py --benchmark-only. Figures (events per
second) land in extra_info; the target is 1 million events/s end to end on one core
for a bare trace; for a capture directory see the section at the end.
"""

import lzma
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

import pcpemu
from pcpemu.kernel.ftrace import TraceStats, read_event_batches
from pcpemu.runs.capture_replay import replay_capture
from pcpemu.runs.replay import StartState, replay

CAPTURE = pathlib.Path(__file__).parent.parent / "tests" / "data" / "kmem-6.18-small.txt.xz"
SAMPLE_ZONES = {"DMA": 3840, "DMA32": 772918, "Normal": 163840}

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason="real capture not present")


@pytest.fixture(scope="module", params=["xz", "text"])
def trace(request, tmp_path_factory):
    if request.param == "xz":
        return CAPTURE
    path = tmp_path_factory.mktemp("trace") / "kmem.txt"
    path.write_bytes(lzma.decompress(CAPTURE.read_bytes()))
    return path


def _events(trace):
    stats = TraceStats()
    for _ in read_event_batches(trace, stats=stats):
        pass
    return sum(stats.events.values())


@pytest.mark.benchmark(group="replay")
def test_parse_only(benchmark, timing, trace):
    n = benchmark.pedantic(_events, args=(trace,), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events"] = n
    benchmark.extra_info["events_per_s"] = n / timing().min


@pytest.mark.benchmark(group="replay")
@pytest.mark.parametrize("policies", [("split",), ("single", "split")])
def test_parse_and_replay(benchmark, timing, trace, policies):
    cfg = pcpemu.KernelConfig.preset("v6.10", zones=SAMPLE_ZONES, cpus=2)
    configs = {p: cfg.replace(thp_lists=p) for p in policies}
    result = benchmark.pedantic(replay, args=(trace, configs), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events"] = result.events_read
    benchmark.extra_info["events_per_s"] = result.events_read / timing().min
    benchmark.extra_info["replayed_ops"] = sum(result.replayed.values())


# ---------------------------------------------------------------------------------------
# A `pcpemu capture` directory replayed from the traced kernel's state. Targets: from
# .xz, at least 90% of the events/s `xz -dc` alone reaches on the same file (the
# decompression and the parse run in threads of their own beside the replay); from
# plain text, 3 M events/s; peak RSS flat in trace length. Set PCPEMU_BENCH_CAPTURE to
# a bigger capture directory than the one in tests/data to measure on it (figures in
# bench/CAPTURES-6.18.md).

CAPTURE_DIR = pathlib.Path(os.environ.get("PCPEMU_BENCH_CAPTURE",
                                          pathlib.Path(__file__).parent.parent / "tests" / "data" / "capture-6.18-small"))


def _plain_copy(tmp_path_factory, repeat=1):
    # The capture with its trace decompressed (and repeated: the trace again after itself).
    d = tmp_path_factory.mktemp("plain")
    for f in CAPTURE_DIR.iterdir():
        if f.name != "trace.txt.xz":
            shutil.copy(f, d / f.name)
    text = lzma.decompress((CAPTURE_DIR / "trace.txt.xz").read_bytes())
    with open(d / "trace.txt.xz", "wb") as out:     # the reader goes by magic bytes, not the name
        for _ in range(repeat):
            out.write(text)
    return d


def _seconds(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _xz_dc():
    subprocess.run(["xz", "-dc", str(CAPTURE_DIR / "trace.txt.xz")], stdout=subprocess.DEVNULL, check=True)


@pytest.mark.benchmark(group="capture")
@pytest.mark.skipif(shutil.which("xz") is None, reason="no xz binary to compare with")
def test_capture_replay_from_xz_against_xz_dc(benchmark, timing):
    result = benchmark.pedantic(replay_capture, args=(CAPTURE_DIR,), rounds=3, iterations=1, warmup_rounds=1)
    n = result.events_read
    # The ratio from pairs, `xz -dc` then the replay, each pair close in time: this
    # VM's speed drifts by tens of percent over a minute.
    ratios = sorted(_seconds(_xz_dc) / _seconds(lambda: replay_capture(CAPTURE_DIR)) for _ in range(5))
    benchmark.extra_info.update(events=n, events_per_s=n / timing().min, paired_ratios=ratios,
                                ratio_to_xz_dc=ratios[len(ratios) // 2], target_ratio=0.9)


@pytest.mark.benchmark(group="capture")
def test_capture_replay_from_plain_text(benchmark, timing, tmp_path_factory):
    d = _plain_copy(tmp_path_factory)
    result = benchmark.pedantic(replay_capture, args=(d,), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(events=result.events_read, target_events_per_s=3e6,
                                events_per_s=result.events_read / timing().min)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent (this
# pytest process, which holds the decompressed trace), VmHWM starts afresh with the process.
# Beside it, what the emulated struct page array (mmap'd, the process's biggest mapping)
# holds resident at the end, and the slot table's size: the struct pages are touched as
# the emulated memory is used and never given back, and a slot is held by each live
# allocation, so both grow with the emulated memory in use, up to its size, whatever
# the trace's length.
_RSS = """
import sys
from pcpemu.machine import Machine
from pcpemu.runs.capture_replay import replay_capture
kept, init = [], Machine.__init__
Machine.__init__ = lambda self, *a, **k: (init(self, *a, **k), kept.append(self))[0]   # alive to be measured
replay_capture(sys.argv[1])
hwm = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
maps, size = [], 0
for line in open('/proc/self/smaps'):
    if line.startswith('Size:'):
        size = int(line.split()[1])
    elif line.startswith('Rss:'):
        maps.append((size, int(line.split()[1])))
print(hwm, max(maps)[1], sum(m.nr_slots for m in kept) * 8 // 1024)
"""


def test_capture_replay_peak_rss_is_flat_in_trace_length(tmp_path_factory, benchmark):
    # The same capture with its trace k and 4k times over, k the least that makes four
    # times the pcp-list read-ahead (StartState.pcp_prepass events, held, then the rest
    # streamed): past it the replay streams, so its peak RSS beside the emulated struct
    # pages and the slots must not grow with the trace. (A trace shorter than the
    # read-ahead is held whole, below that peak; and a trace repeated allocates again
    # pages it never freed, whose frees are missing, so the emulated memory in use, its
    # struct pages and slots, fill up as copies go on: 18 and 72 copies of
    # tests/data/capture-6.18-small peak at 283 and 333 MiB, of which the struct
    # pages 101 and 131 MiB, the slots 3.7 and 15 MiB for 0.23 and 0.95 M missing frees.)
    lines = lzma.decompress((CAPTURE_DIR / "trace.txt.xz").read_bytes()).count(b"\n")
    k = -(-StartState.pcp_prepass * 4 // lines)
    rss, memmap, slots = {}, {}, {}
    for repeat in (k, 4 * k):
        d = _plain_copy(tmp_path_factory, repeat)
        out = subprocess.run([sys.executable, "-c", _RSS, str(d)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parent.parent)})
        rss[repeat], memmap[repeat], slots[repeat] = map(int, out.stdout.split()[-3:])
    benchmark.extra_info.update(repeats=[k, 4 * k], peak_rss_kib=[rss[k], rss[4 * k]],
                                struct_pages_kib=[memmap[k], memmap[4 * k]], slots_kib=[slots[k], slots[4 * k]])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    rest = {r: rss[r] - memmap[r] - slots[r] for r in rss}
    assert rest[4 * k] < rest[k] * 1.1, (rss, memmap, slots)
