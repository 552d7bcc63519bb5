"""Soak: 10^8 random ops over four configs, check() and page conservation between chunks.

Each chunk is a random valid op stream over a slot table: every slot
alternates alloc and free, orders 0..3, 9 and 10 with their gfps, and a few
drains, drain_alls and decays in between. Between chunks: Machine.check(),
and every managed page is free, on a pcp list or allocated (conservation).
ops/s counts Machine.run's wall time only; RSS is the process's.

Run: python3 bench/bench_soak.py [--ops 1e8] [--chunk 1e6] [--seed 1]
     python3 -m pytest bench/bench_soak.py --benchmark-only   (PCPEMU_SOAK_OPS, default 2e6)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

import pcpemu
from pcpemu.machine import OP_ALLOC, OP_DECAY, OP_DRAIN, OP_DRAIN_ALL, OP_DTYPE, OP_FREE

#: The four configs: v6.9 and v6.10, with and without CMA, one under memory pressure (its
#: working set wants more than its memory, so allocations fail and the slow path runs).
CONFIGS = {
    "v6.10 1G": (pcpemu.KernelConfig.preset("v6.10", memory="1G", cpus=4), 1 << 13),
    "v6.9 1G cma 256M": (pcpemu.KernelConfig.preset("v6.9", memory="1G", cpus=4, cma="256M"), 1 << 13),
    "v6.10 1G cma 256M": (pcpemu.KernelConfig.preset("v6.10", memory="1G", cpus=4, cma="256M"), 1 << 13),
    "v6.9 128M pressure": (pcpemu.KernelConfig.preset("v6.9", memory="128M", cpus=2), 1 << 12),
}
ORDERS = np.array([0, 1, 2, 3, 9, 10])
ORDER_P = np.array([0.80, 0.07, 0.05, 0.05, 0.025, 0.005])
GFPS = np.array([pcpemu.parse_gfp(g) for g in ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE",
                                               "GFP_ATOMIC", "GFP_NOWAIT")], np.uint32)
THP_GFP = pcpemu.parse_gfp("GFP_TRANSHUGE_LIGHT | __GFP_COMP")
OTHER_OPS = np.array([OP_DRAIN, OP_DRAIN_ALL, OP_DECAY])


def random_chunk(rng: np.random.Generator, n: int, live_order: np.ndarray, cpus: int) -> np.ndarray:
    """A valid random stream of n allocs and frees plus about n / 1000 drains and decays.

    :param live_order: per slot, the order of the block it holds or -1.
    """
    slot = rng.integers(0, len(live_order), n)
    o = np.argsort(slot, kind="stable")
    ss = slot[o]
    first = np.ones(n, bool)
    first[1:] = ss[1:] != ss[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    k = np.arange(n) - start                                # position in the slot's run
    is_free = (k % 2 == 0) == (live_order[ss] >= 0)         # a live slot starts with its free
    order = ORDERS[rng.choice(len(ORDERS), n, p=ORDER_P)]
    later_free = np.flatnonzero(is_free & ~first)
    order[later_free] = order[later_free - 1]               # a free has its alloc's order
    first_free = is_free & first
    order[first_free] = live_order[ss[first_free]]
    ops = np.zeros(n, OP_DTYPE)
    ops["slot"][o] = ss
    ops["op"][o] = np.where(is_free, OP_FREE, OP_ALLOC)
    ops["order"][o] = order
    gfp = GFPS[rng.integers(0, len(GFPS), n)]
    ops["gfp"][o] = np.where(order >= 9, THP_GFP, gfp)
    ops["cpu"] = rng.integers(0, cpus, n)
    # A drain, drain_all or decay every ~1000 ops; their slot is not read.
    extra = np.zeros(n // 1000, OP_DTYPE)
    extra["op"] = OTHER_OPS[rng.integers(0, 3, len(extra))]
    extra["cpu"] = rng.integers(0, cpus, len(extra))
    return np.insert(ops, rng.integers(0, n, len(extra)), extra)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def conserved(m: pcpemu.Machine) -> None:
    """Every managed page is free in the buddy, on a pcp list, or allocated."""
    free = sum(m.zone_state(z.name)["nr_free_pages"] for z in m.populated_zones)
    pcp = sum(m.pcp_state(z.name, c)["count"] for z in m.populated_zones for c in range(m.config.cpus))
    blocks = m.allocated_blocks()
    allocated = int((1 << blocks["order"].astype(np.int64)).sum())
    managed = sum(z.managed for z in m.populated_zones)
    if free + pcp + allocated != managed:
        raise AssertionError(f"pages not conserved: {free} free + {pcp} on pcp + {allocated} allocated "
                             f"!= {managed} managed")


def soak(config: pcpemu.KernelConfig, nslots: int, ops: int, chunk: int, seed: int) -> dict:
    """Run ``ops`` random ops in chunks, checking between them; the figures."""
    rng = np.random.default_rng(seed)
    m = pcpemu.Machine(config, seed=seed)
    live_order = np.full(nslots, -1, np.int64)
    done, rates, failed = 0, [], 0
    while done < ops:
        stream = random_chunk(rng, min(chunk, ops - done), live_order, config.cpus)
        t0 = time.perf_counter()
        res = m.run(stream)
        rates.append(len(stream) / (time.perf_counter() - t0))
        failed += res.stats["ALLOC_FAILED"]
        # Each slot ends as its last op left it: allocated (if it succeeded) or empty.
        uses = stream["op"] <= OP_FREE
        s, op, pfn = stream["slot"][uses], stream["op"][uses], res.results[uses]
        order = stream["order"][uses].astype(np.int64)
        last = np.unique(s[::-1], return_index=True)[1]
        last = len(s) - 1 - last
        live_order[s[last]] = np.where((op[last] == OP_ALLOC) & (pfn[last] >= 0), order[last], -1)
        m.check()
        conserved(m)
        done += len(stream)
    return {"ops": done, "chunks": len(rates), "alloc_failed": failed,
            "ops_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
            "rss_kib": _rss_kib(), "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=float, default=1e8, help="ops in all, split evenly over the configs")
    p.add_argument("--chunk", type=float, default=1e6, help="ops between two checks")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    per = int(args.ops) // len(CONFIGS)
    out = {}
    for name, (cfg, nslots) in CONFIGS.items():
        out[name] = soak(cfg, nslots, per, int(args.chunk), args.seed)
        r = out[name]
        print(f"{name:<20} {r['ops']:>11,} ops in {r['chunks']} chunks: {r['ops_per_s']['median'] / 1e6:.2f} M ops/s "
              f"(chunks {r['ops_per_s']['min'] / 1e6:.2f}..{r['ops_per_s']['max'] / 1e6:.2f}), "
              f"{r['alloc_failed']:,} failed allocs, RSS {r['rss_kib'] / 1024:.0f} MiB "
              f"(peak {r['max_rss_kib'] / 1024:.0f})", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def test_soak(benchmark):
    # The CI-sized soak: PCPEMU_SOAK_OPS ops (default 2e6) over the four configs.
    per = int(float(os.environ.get("PCPEMU_SOAK_OPS", 2e6))) // len(CONFIGS)
    figures = benchmark.pedantic(lambda: {n: soak(c, s, per, 250_000, 1) for n, (c, s) in CONFIGS.items()},
                                 rounds=1, iterations=1)
    benchmark.extra_info["soak"] = figures
    assert all(f["ops"] >= per for f in figures.values())
    assert figures["v6.9 128M pressure"]["alloc_failed"] > 0        # the pressure config is under pressure


if __name__ == "__main__":
    sys.exit(main())
