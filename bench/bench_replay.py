"""Speed of trace replay: the ftrace reader alone, and parse + replay end to end.

Run: python3 -m pytest bench/bench_replay.py --benchmark-only. Figures (events per
second) land in extra_info; the target is 1 million events/s end to end on one core.
"""

import lzma
import pathlib

import pytest

import pcpemu
from pcpemu.kernel.ftrace import TraceStats, read_event_batches
from pcpemu.runs.replay import replay

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
def test_parse_only(benchmark, trace):
    n = benchmark.pedantic(_events, args=(trace,), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events"] = n
    benchmark.extra_info["events_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.benchmark(group="replay")
@pytest.mark.parametrize("policies", [("split",), ("single", "split")])
def test_parse_and_replay(benchmark, trace, policies):
    cfg = pcpemu.KernelConfig.preset("v6.10", zones=SAMPLE_ZONES, cpus=2)
    configs = {p: cfg.replace(thp_lists=p) for p in policies}
    result = benchmark.pedantic(replay, args=(trace, configs), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events"] = result.events_read
    benchmark.extra_info["events_per_s"] = result.events_read / benchmark.stats.stats.min
    benchmark.extra_info["replayed_ops"] = sum(result.replayed.values())
