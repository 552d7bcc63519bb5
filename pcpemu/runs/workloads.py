"""Every workload pcpemu runs, in one place: the op-stream generators, and the
named workloads (WORKLOADS) the contention runs, sweeps and report use, each
with what it allocates and frees, in what proportions, and where the mix
comes from.

Every generator is seeded and pure: the same arguments give the same stream.
Slots tie each free to its allocation; ``slot_base`` keeps the slots of
streams meant to run together (one per CPU) apart.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import numpy as np

from ..errors import OpStreamError
from ..kernel.gfp import MIGRATE_MOVABLE, gfp_migratetype, parse_gfp, show_gfp_flags
from ..machine import OP_ALLOC, OP_DECAY, OP_DRAIN, OP_DRAIN_ALL, OP_DTYPE, OP_FREE

# The op codes and OP_DTYPE are the core's (pcpemu.machine re-exports them).
__all__ = ["DEFAULT_SEED", "NONMOVABLE_SHARES", "OP_ALLOC", "OP_DECAY", "OP_DRAIN", "OP_DRAIN_ALL", "OP_DTYPE",
           "OP_FREE", "WORKLOADS", "Workload", "alloc_free_pairs", "churn", "cpu_streams", "from_capture", "get",
           "make_ops", "mixed", "order0_churn", "thp_fault_free", "thp_mix", "warmup_ops"]

#: The seed every verb and generator uses when none is given.
DEFAULT_SEED = 1


def make_ops(n: int) -> np.ndarray:
    """An empty (all-zero) op stream of n ops."""
    return np.zeros(n, dtype=OP_DTYPE)


def alloc_free_pairs(n: int, order: int, gfp: str | int, cpu: int = 0, slot: int = 0) -> np.ndarray:
    """n alloc+free pairs of one block each, back to back (the tightest fast-path loop)."""
    ops = make_ops(2 * n)
    ops["op"][1::2] = OP_FREE
    ops["order"] = order
    ops["gfp"] = parse_gfp(gfp)
    ops["cpu"] = cpu
    ops["slot"] = slot
    return ops


def churn(n: int, classes: Sequence[tuple[str | int, int, float]], live: int, cpus: Sequence[int] = (0,),
          seed: int | Sequence[int] = DEFAULT_SEED, slot_base: int = 0) -> np.ndarray:
    """Fill ``live`` slots, then n steps of freeing a random live block and
    allocating a new one in its place; the frees leave in random order, so the
    blocks' ages mix as in a real working set.

    :param classes: ``(gfp, order, weight)`` request classes drawn per allocation.
    :param cpus: each step runs on a CPU drawn from this list.
    """
    if live < 1 or n < 0:
        raise OpStreamError(f"churn needs live >= 1 and n >= 0 (got live={live}, n={n})")
    if not classes:
        raise OpStreamError("churn needs at least one request class")
    rng = np.random.default_rng(seed)
    gfps = np.array([parse_gfp(g) for g, _, _ in classes], dtype=np.uint32)
    orders = np.array([o for _, o, _ in classes], dtype=np.uint8)
    weights = np.array([w for _, _, w in classes], dtype=float)
    kind = rng.choice(len(classes), size=live + n, p=weights / weights.sum())
    cpu_of = rng.choice(np.asarray(cpus, dtype=np.uint16), size=live + 2 * n)
    victims = rng.integers(0, live, size=n)
    ops = make_ops(live + 2 * n)
    ops["cpu"] = cpu_of
    ops["slot"][:live] = slot_base + np.arange(live)
    ops["gfp"][:live] = gfps[kind[:live]]
    ops["order"][:live] = orders[kind[:live]]
    slot_order = orders[kind[:live]].copy()
    steps = ops[live:].reshape(n, 2) if n else ops[live:].reshape(0, 2)
    steps["op"][:, 0] = OP_FREE
    steps["slot"][:, 0] = slot_base + victims
    steps["slot"][:, 1] = slot_base + victims
    new_kind = kind[live:]
    steps["gfp"][:, 1] = gfps[new_kind]
    steps["order"][:, 1] = orders[new_kind]
    # A free carries the order its slot was last allocated with: the fill's
    # for a slot's first victimisation, else that of the step that last
    # refilled it (steps grouped by slot, in step order).
    if n:
        by_slot = np.argsort(victims, kind="stable")
        v = victims[by_slot]
        first = np.ones(n, dtype=bool)
        first[1:] = v[1:] != v[:-1]
        refill = orders[new_kind]
        prev = refill[by_slot[np.maximum(np.arange(n) - 1, 0)]]
        steps["order"][by_slot, 0] = np.where(first, slot_order[v], prev)
    return ops


def order0_churn(n: int, live: int = 64, cpus: Sequence[int] = (0,), seed: int = DEFAULT_SEED,
                 gfp: str = "GFP_KERNEL", slot_base: int = 0) -> np.ndarray:
    """Order-0 churn over a working set of ``live`` pages."""
    return churn(n, [(gfp, 0, 1.0)], live, cpus, seed, slot_base)


def thp_fault_free(n: int, live: int = 8, cpus: Sequence[int] = (0,), seed: int = DEFAULT_SEED,
                   gfp: str = "GFP_TRANSHUGE_LIGHT | __GFP_COMP", slot_base: int = 0) -> np.ndarray:
    """THP faults and frees (order 9, movable, as do_huge_pmd_anonymous_page asks)."""
    return churn(n, [(gfp, 9, 1.0)], live, cpus, seed, slot_base)


# ---- the named workloads: every stream pcpemu's sweeps and report run ----

THP_ORDER = 9                       # HPAGE_PMD_ORDER on x86_64 and arm64 (4 KiB pages)
_THP = "GFP_TRANSHUGE_LIGHT | __GFP_COMP"      # vma_thp_gfp_mask() with defrag off
_KERNEL_THP = "GFP_KERNEL | __GFP_COMP"        # a driver's THP-sized buffer
_ATOMIC = "GFP_ATOMIC"
_ATOMIC_COMP = "GFP_ATOMIC | __GFP_COMP"

#: Ops per CPU between two vmstat ticks: vmstat_update() runs
#: refresh_cpu_vm_stats(true), which calls decay_pcp_high(), once a second
#: (sysctl_stat_interval) on each CPU, and a CPU faulting
#: THPs does about a thousand allocations and frees a second (zeroing 2 MiB
#: takes ~100 us). Without the tick pcp->high only grows, and a closed
#: per-CPU working set ends up served from the pcp lists alone.
VMSTAT_TICK_OPS = 1000

#: Shares (%) of non-movable THP requests the report sweeps.
NONMOVABLE_SHARES = (0, 1, 5, 20, 40)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One workload: what each CPU allocates and frees, and why that mix.

    :param pattern: ``churn`` (fill ``live`` blocks, then free a random live
        block and allocate a new one in its place, see churn()), ``bursts``
        (allocate up to ``live`` blocks, free them all) or ``pairs`` (alloc
        then free the same block, page_bench03's loop).
    :param classes: ``(gfp, order, weight)`` request classes of each allocation.
    :param live: blocks each CPU holds (churn), or its largest burst.
    :param source: where the mix comes from.
    :param tick: ops per CPU between vmstat ticks (an OP_DECAY op); 0: none.
    """

    name: str
    summary: str
    pattern: str
    classes: tuple[tuple[str, int, float], ...]
    live: int
    source: str
    tick: int = VMSTAT_TICK_OPS

    @property
    def fill(self) -> int:
        """Ops per CPU before the steady state's first step (the working set's fill)."""
        return self.live if self.pattern == "churn" else 0

    def share(self, order: int | None = None, movable: bool | None = None) -> float:
        """The share of allocations of ``order`` (any if None) that are (non-)movable."""
        total = sum(w for _, _, w in self.classes)
        return sum(w for g, o, w in self.classes
                   if (order is None or o == order)
                   and (movable is None or (gfp_migratetype(parse_gfp(g)) == MIGRATE_MOVABLE) == movable)) / total

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the mix as (gfp, order, percent) rows, what is freed, the source."""
        total = sum(w for _, _, w in self.classes)
        frees = {"churn": f"a random one of its {self.live} live blocks per CPU before each allocation",
                 "bursts": f"the whole burst (1..{self.live} blocks) after it is received",
                 "pairs": "each block right after its allocation"}[self.pattern]
        return {"name": self.name, "summary": self.summary, "pattern": self.pattern, "live": self.live,
                "allocates": [{"gfp": g, "order": o, "percent": 100.0 * w / total} for g, o, w in self.classes],
                "frees": frees, "nonmovable_thp_percent": 100.0 * self.share(THP_ORDER, movable=False),
                "vmstat_tick_ops": self.tick, "source": self.source}


def _workload(name: str, summary: str, pattern: str, classes: Sequence[tuple[str, int, float]], live: int,
              source: str) -> Workload:
    return Workload(name, summary, pattern, tuple(classes), live, source, 0 if pattern == "pairs" else VMSTAT_TICK_OPS)


def thp_mix(percent: int) -> Workload:
    """``thp-nmP``: P% of allocations are non-movable THPs, 80-P% movable THPs,
    20% movable order-0 pages. thp-nm0 is movable-only; thp-nm40 is the worst
    case the split was measured against."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 80:
        raise OpStreamError(f"thp-nm{percent}: the non-movable THP share must be an integer 0..80 (%)")
    return _workload(f"thp-nm{percent}", f"THP faults with {percent}% non-movable THP requests", "churn",
                     [(_KERNEL_THP, THP_ORDER, percent), (_THP, THP_ORDER, 80 - percent),
                      ("GFP_HIGHUSER_MOVABLE", 0, 20)], 8,
                     "constructed: the share of non-movable THP requests is the swept variable")


_NAMED = [
    _workload("thp", "VM start: guest memory faulted in and freed as movable THPs", "churn",
              [(_THP, THP_ORDER, 1.0)], 4,
              "constructed: do_huge_pmd_anonymous_page() asks order 9 with vma_thp_gfp_mask()"),
    _workload("mixed", "a general server mix: movable, unmovable and reclaimable pages, orders 0..3, "
              "a few THPs of both kinds", "churn",
              [("GFP_HIGHUSER_MOVABLE", 0, 0.55), ("GFP_KERNEL", 0, 0.20),
               ("GFP_KERNEL | __GFP_RECLAIMABLE", 0, 0.10), ("GFP_KERNEL | __GFP_COMP", 1, 0.04),
               ("GFP_KERNEL | __GFP_COMP", 2, 0.03), ("GFP_KERNEL | __GFP_COMP", 3, 0.03),
               (_THP, THP_ORDER, 0.03), (_KERNEL_THP, THP_ORDER, 0.02)], 64,
              "chosen by hand as a plausible server mix, not measured"),
    _workload("order0", "order-0 churn, half kernel, half movable", "churn",
              [("GFP_KERNEL", 0, 0.5), ("GFP_HIGHUSER_MOVABLE", 0, 0.5)], 64,
              "constructed: the pcp fast path without THPs"),
    _workload("net", "network-like bursts of GFP_ATOMIC orders 0..3", "bursts",
              [(_ATOMIC, 0, 0.7), (_ATOMIC_COMP, 1, 0.1), (_ATOMIC_COMP, 2, 0.1), (_ATOMIC_COMP, 3, 0.1)], 32,
              "constructed: receive bursts freed after processing"),
    _workload("tight0", "page_bench03 shape: order-0 alloc+free in a tight loop", "pairs",
              [("GFP_KERNEL", 0, 1.0)], 1, "page_bench03 (calibration only)"),
    _workload("tight4", "page_bench03 shape: order-4 (no pcp list) alloc+free in a tight loop", "pairs",
              [("GFP_KERNEL", 4, 1.0)], 1, "page_bench03 (calibration only)"),
] + [thp_mix(p) for p in NONMOVABLE_SHARES]

#: Every named workload; ``thp-nmP`` for any P in 0..80 is made on demand.
WORKLOADS: dict[str, Workload] = {w.name: w for w in _NAMED}


def get(workload: str | Workload) -> Workload:
    """The workload of a name (or the Workload itself).

    :raises OpStreamError: for a name that is neither in WORKLOADS nor ``thp-nmP``.
    """
    if isinstance(workload, Workload):
        return workload
    if workload in WORKLOADS:
        return WORKLOADS[workload]
    if isinstance(workload, str) and workload.startswith("thp-nm") and workload[6:].isdigit():
        return thp_mix(int(workload[6:]))
    raise OpStreamError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}, thp-nmP (P in 0..80)")


@functools.lru_cache(maxsize=8)
def from_capture(path: str, live: int = 64, name: str = "capture") -> Workload:
    """A churn workload with the (gfp, order) mix of a kmem capture's mm_page_alloc events.

    Only the mix is taken from the capture; the working set is ``live``
    blocks per CPU, and every CPU runs the same mix.

    :param path: a kmem trace file, or a ``pcpemu capture`` directory (its trace).
    :raises TraceFormatError, CaptureError, OSError: for an unreadable capture.
    :raises OpStreamError: for a capture without a successful allocation.
    """
    from ..kernel.ftrace import EVENT_NAMES, PFN_FAILED, read_event_batches

    trace = path
    if os.path.isdir(path):
        from .capture import TRACE_FILE, load_capture

        load_capture(path)                  # a complete capture, or CaptureError
        trace = os.path.join(path, TRACE_FILE)
    alloc = EVENT_NAMES.index("mm_page_alloc")
    counts: dict[tuple[int, int], int] = {}
    for ev in read_event_batches(trace):
        ev = ev[(ev["kind"] == alloc) & (ev["pfn"] != PFN_FAILED)]
        keys, n = np.unique(np.stack([ev["gfp"].astype(np.int64), ev["order"].astype(np.int64)]), axis=1,
                            return_counts=True)
        for (g, o), c in zip(keys.T.tolist(), n.tolist()):
            counts[(g, o)] = counts.get((g, o), 0) + c
    if not counts:
        raise OpStreamError(f"{path}: no successful mm_page_alloc event to take a mix from")
    classes = [(show_gfp_flags(g), o, float(c)) for (g, o), c in sorted(counts.items(), key=lambda kv: -kv[1])]
    total = sum(counts.values())
    label = os.path.basename(os.path.normpath(path))
    return _workload(name, f"the allocation mix of {label}", "churn", classes, live,
                     f"measured: {total} mm_page_alloc events of {label}; "
                     f"working set {live} blocks per CPU chosen")


def _bursts(n: int, w: Workload, cpu: int, slot_base: int, rng: np.random.Generator) -> np.ndarray:
    # Receive a burst of buffers, then free them all.
    gfps = np.array([parse_gfp(g) for g, _, _ in w.classes], dtype=np.uint32)
    orders = np.array([o for _, o, _ in w.classes], dtype=np.uint8)
    p = np.array([x for _, _, x in w.classes], dtype=float)
    ops = make_ops(n)
    ops["cpu"] = cpu
    i = 0
    while i < n:
        k = int(min(rng.integers(1, w.live + 1), (n - i) // 2))
        if k == 0:
            ops["op"][i:] = OP_DRAIN            # an odd tail: a local drain
            break
        kind = rng.choice(len(p), size=k, p=p / p.sum())
        for base, op in ((i, OP_ALLOC), (i + k, OP_FREE)):
            ops["op"][base:base + k] = op
            ops["order"][base:base + k] = orders[kind]
            ops["slot"][base:base + k] = slot_base + np.arange(k)
        ops["gfp"][i:i + k] = gfps[kind]
        i += 2 * k
    return ops


def cpu_streams(workload: str | Workload, cpus: int, ops_per_cpu: int, seed: int = DEFAULT_SEED,
                warmup: int = 0) -> list[np.ndarray]:
    """One op stream per CPU, seeded per CPU, slots disjoint between CPUs.

    Each stream is ``warmup_ops(workload, warmup)`` ops of warm-up (the
    working set's fill, then ``warmup`` ops) followed by ``ops_per_cpu``
    measured ops (an even count for churn and pairs), with a vmstat tick
    (OP_DECAY) after every ``workload.tick`` of them.

    :return: ``cpus`` OP_DTYPE arrays; stream k runs on CPU k.
    :raises OpStreamError: for an unknown workload or a bad count.
    """
    w = get(workload)
    for what, v, lo in (("ops_per_cpu", ops_per_cpu, 2), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise OpStreamError(f"{what} {v!r} must be an int >= {lo}")
    streams = []
    for cpu in range(cpus):
        base = cpu * w.live
        if w.pattern == "churn":
            ops = churn((warmup + ops_per_cpu) // 2, w.classes, w.live, (cpu,), [seed, cpu], base)
        elif w.pattern == "bursts":
            ops = _bursts(warmup + ops_per_cpu, w, cpu, base, np.random.default_rng([seed, cpu]))
        else:
            g, o, _ = w.classes[0]
            ops = alloc_free_pairs((warmup + ops_per_cpu) // 2, o, g, cpu, base)
        streams.append(_with_ticks(ops, w.tick, cpu))
    return streams


def _with_ticks(ops: np.ndarray, tick: int, cpu: int) -> np.ndarray:
    # A decay op before every tick-th op (the fill counts: time passes).
    if not tick or len(ops) <= tick:
        return ops
    at = np.arange(tick, len(ops), tick)
    ticks = make_ops(len(at))
    ticks["op"] = OP_DECAY
    ticks["cpu"] = cpu
    return np.insert(ops, at, ticks)


def warmup_ops(workload: str | Workload, warmup: int) -> int:
    """How many leading ops of each cpu_streams() stream are warm-up (ticks included)."""
    w = get(workload)
    n = w.fill + (warmup if w.pattern == "bursts" else warmup // 2 * 2)
    return n + (n // w.tick if w.tick else 0)


def mixed(n: int, live: int = 256, cpus: Sequence[int] = (0,), seed: int = DEFAULT_SEED,
          slot_base: int = 0) -> np.ndarray:
    """One churn stream of the ``mixed`` workload's mix over ``cpus``."""
    return churn(n, WORKLOADS["mixed"].classes, live, cpus, seed, slot_base)
