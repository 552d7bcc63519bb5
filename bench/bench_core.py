"""Speed and size of the core: boot, memory per page, fast-path pairs against a bare C loop.

Run: python3 -m pytest bench/ --benchmark-only. Figures land in extra_info.
"""

import time

import numpy as np
import pytest

import pcpemu
from pcpemu.machine import bare_pcp_loop
from pcpemu.runs import workloads as wl

N = 1_000_000


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.benchmark(group="buddy")
def test_boot_64g(benchmark, timing):
    cfg = pcpemu.KernelConfig.preset("v6.10", memory="64G", cpus=4)
    benchmark.pedantic(pcpemu.Machine, args=(cfg,), rounds=3, iterations=1)
    benchmark.extra_info["boot_s_mean"] = timing().mean
    assert timing().mean < 1.0


@pytest.mark.benchmark(group="buddy")
def test_resident_bytes_per_page(benchmark, timing):
    # Allocate every page of a 16 GiB machine one by one, so that every struct
    # page mirror is written, and count what the machine holds resident.
    cfg = pcpemu.KernelConfig.preset("v6.10", memory="16G", cpus=1)
    fill = wl.make_ops(cfg.memory)
    fill["gfp"] = pcpemu.parse_gfp("GFP_HIGHUSER_MOVABLE")
    fill["slot"] = np.arange(cfg.memory)
    before = _rss_kib()
    m = pcpemu.Machine(cfg)
    benchmark.pedantic(m.run, args=(fill,), rounds=1, iterations=1)
    arrays = 8 * m.nr_slots + 8 * len(fill)        # the slot table and the results array
    per_page = (_rss_kib() * 1024 - before * 1024 - arrays) / cfg.memory
    benchmark.extra_info["resident_bytes_per_page"] = per_page
    assert per_page <= 72


def _pairs(machine, ops, benchmark, timing, group_info, between_rounds=None):
    # between_rounds runs untimed before each round: a baseline measured
    # interleaved with the rounds sees the same host load they do.
    slots = {"n": len(ops) // 2}

    def run():
        machine.run(ops)
    benchmark.pedantic(run, setup=between_rounds, rounds=5, iterations=1, warmup_rounds=1)
    ns = timing().min / slots["n"] * 1e9
    benchmark.extra_info.update(group_info, ns_per_pair=ns)
    return ns


class _BareLoop:
    """Times the bare loop on an op stream; the best of its calls."""

    def __init__(self, ops):
        self.ops = ops
        self.slots = np.full(int(ops["slot"].max()) + 1, -1, dtype=np.int64)
        self.best = float("inf")

    def __call__(self):
        self.slots.fill(-1)
        t = time.perf_counter()
        bare_pcp_loop(self.ops, 1 << 16, self.slots)
        self.best = min(self.best, time.perf_counter() - t)

    def ns_per_pair(self):
        return self.best / (len(self.ops) // 2) * 1e9


@pytest.mark.benchmark(group="pcp-fastpath")
@pytest.mark.parametrize("live", [64, 4096])
def test_order0_churn_vs_bare_loop(benchmark, timing, v610, live):
    m = v610()
    warm = wl.order0_churn(0, live=live, seed=1)
    m.run(warm)
    ops = wl.order0_churn(N, live=live, seed=1)[live:]       # the steady-state pairs only
    bare = _BareLoop(wl.order0_churn(N, live=live, seed=1))
    ns = _pairs(m, ops, benchmark, timing, {"live": live}, between_rounds=bare)
    benchmark.extra_info["bare_loop_ns_per_pair"] = bare.ns_per_pair()
    benchmark.extra_info["ratio_to_bare_loop"] = ns / bare.ns_per_pair()
    m.check()


@pytest.mark.benchmark(group="pcp-fastpath")
@pytest.mark.parametrize("order, gfp", [(0, "GFP_KERNEL"), (9, "GFP_TRANSHUGE_LIGHT | __GFP_COMP")])
def test_alloc_free_pairs(benchmark, timing, v610, order, gfp):
    m = v610()
    _pairs(m, wl.alloc_free_pairs(N, order, gfp), benchmark, timing, {"order": order})
    s = m.stats()
    # _pairs ran the stream six times (a warm-up and five rounds).
    benchmark.extra_info["zone_lock_per_1000_pairs"] = 1000 * s["ZONE_LOCK"] / (6 * N)
    m.check()


@pytest.mark.benchmark(group="pcp-fastpath")
@pytest.mark.parametrize("memory", ["1G", "64G"])
def test_cost_does_not_grow_with_memory(benchmark, timing, v610, memory):
    m = v610(memory=memory)
    m.run(wl.order0_churn(0, live=64, seed=2))
    _pairs(m, wl.order0_churn(N, live=64, seed=2)[64:], benchmark, timing, {"memory": memory})


@pytest.mark.benchmark(group="python-api")
def test_python_call_overhead(benchmark, timing, v610):
    m = v610()

    def pair():
        m.free_pages(m.alloc_pages("GFP_KERNEL", 0, 0), 0, 0)
    benchmark(pair)
    # Best and median of the rounds, as the other figures here: the mean
    # follows the load of a shared host more than the code.
    benchmark.extra_info["ns_per_python_pair"] = timing().min * 1e9
    benchmark.extra_info["ns_per_python_pair_median"] = timing().median * 1e9
