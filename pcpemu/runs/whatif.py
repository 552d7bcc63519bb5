"""The what-if lab's workloads and runs (issue 18): mTHP on the pcp lists
(Mel Gorman's question) and the 2026 pcp buddy RFC's production patterns.

Op streams are built from the op codes and OP_DTYPE of pcpemu.runs.workloads
and run with pcpemu.runs.smp in virtual time. Every function is seeded and
pure: the same arguments give the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import PcpemuError
from ..kernel.config import KernelConfig
from ..kernel.gfp import parse_gfp
from ..kernel.layout import MTHP_ORDERS
from . import smp
from .workloads import OP_ALLOC, OP_DTYPE, OP_FREE

__all__ = ["MTHP_KINDS", "interval", "mthp_config", "mthp_streams", "mthp_study", "paired", "run_mthp"]

_MOVABLE = parse_gfp("GFP_HIGHUSER_MOVABLE")
_KERNEL = parse_gfp("GFP_KERNEL")
_MOVABLE_COMP = parse_gfp("GFP_HIGHUSER_MOVABLE | __GFP_COMP")   # anonymous mTHP faults
_KERNEL_COMP = parse_gfp("GFP_KERNEL | __GFP_COMP")              # non-movable large folios

#: mTHP mobility -> the gfp masks its allocations draw from (evenly).
MTHP_KINDS = {"movable": (_MOVABLE_COMP,), "unmovable": (_KERNEL_COMP,), "mixed": (_MOVABLE_COMP, _KERNEL_COMP)}


# ---- intervals over seeds ----

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval of per-seed values (``lo == hi == mean`` for one value)."""
    x = np.asarray(values, dtype=float)
    if not len(x):
        raise PcpemuError("interval of no values")
    mean = float(x.mean())
    if len(x) == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    t = _T975[min(len(x) - 1, len(_T975)) - 1]
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(len(x))}


# ---- mTHP ----

def _check_mthp(orders: Sequence[int], share: float, kind: str) -> None:
    if not orders or any(o not in MTHP_ORDERS for o in orders):
        raise PcpemuError(f"mTHP orders {list(orders)!r} must be a non-empty subset of {list(MTHP_ORDERS)}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise PcpemuError(f"mTHP share {share!r} must be a fraction in 0..1")
    if kind not in MTHP_KINDS:
        raise PcpemuError(f"mTHP kind {kind!r} is not one of {', '.join(MTHP_KINDS)}")


def mthp_streams(cpus: int, ops_per_cpu: int, seed: int, orders: Sequence[int] = (4,), share: float = 0.5,
                 kind: str = "movable", live: int = 8) -> list[np.ndarray]:
    """One random-walk stream per CPU: each allocation is an mTHP (an order of
    ``orders``, uniformly, of the ``kind``'s mobility) with probability
    ``share``, else an order-0 page (kernel or movable, half each); a CPU holds
    at most ``live`` blocks and frees a random one of them half of the time.
    Slots are disjoint per CPU, as pcpemu.runs.smp needs.
    """
    _check_mthp(orders, share, kind)
    if isinstance(ops_per_cpu, bool) or not isinstance(ops_per_cpu, int) or ops_per_cpu < 2:
        raise PcpemuError(f"ops_per_cpu {ops_per_cpu!r} must be an int >= 2")
    mthp_orders = np.asarray(orders, dtype=np.uint8)
    gfps = np.asarray(MTHP_KINDS[kind], dtype=np.uint32)
    streams = []
    for cpu in range(cpus):
        rng = np.random.default_rng([seed, cpu, 18])
        is_mthp = rng.random(ops_per_cpu) < share
        order = np.where(is_mthp, rng.choice(mthp_orders, ops_per_cpu), 0)
        gfp = np.where(is_mthp, rng.choice(gfps, ops_per_cpu),
                       np.where(rng.random(ops_per_cpu) < 0.5, _KERNEL, _MOVABLE))
        coin, pick = rng.random(ops_per_cpu), rng.random(ops_per_cpu)
        ops = np.zeros(ops_per_cpu, dtype=OP_DTYPE)
        held: list[tuple[int, int]] = []
        free_slots = list(range(cpu * live + live - 1, cpu * live - 1, -1))
        for i in range(ops_per_cpu):
            if held and (len(held) == live or coin[i] < 0.5):
                slot, o = held.pop(int(pick[i] * len(held)))
                ops[i] = (OP_FREE, o, cpu, 0, slot)
                free_slots.append(slot)
            else:
                slot = free_slots.pop()
                ops[i] = (OP_ALLOC, order[i], cpu, gfp[i], slot)
                held.append((slot, int(order[i])))
        streams.append(ops)
    return streams


def mthp_config(cpus: int, lists: Sequence[int] = (), policy: str = "split", memory: str = "8G") -> KernelConfig:
    """v6.10 contention config (one Normal zone) with pcp lists for the mTHP
    orders ``lists`` under ``policy`` (none: every mTHP takes zone->lock)."""
    return smp.smp_config("split", cpus, memory).replace(mthp_orders={o: policy for o in lists})


def run_mthp(cpus: int, orders: Sequence[int], share: float, kind: str, lists: bool, seed: int = 0,
             ops_per_cpu: int = 1000, policy: str = "split", memory: str = "8G") -> dict[str, Any]:
    """One virtual-time contention run of the mTHP workload, with or without
    pcp lists for its orders; the smp.run_virtual summary plus the inputs."""
    streams = mthp_streams(cpus, ops_per_cpu, seed, orders, share, kind)
    cfg = mthp_config(cpus, orders if lists else (), policy, memory)
    r = smp.run_virtual(cfg, streams, seed=seed)
    r.update(orders=list(orders), share=share, kind=kind, lists=lists, policy=policy, seed=seed)
    return r


#: The metrics a with/without comparison reports, as run_virtual names them.
_METRICS = {
    "zone_lock": lambda r: r["zone_lock_acquisitions"],
    "pages_per_acquisition": lambda r: r["pages_per_acquisition"],
    "lock_wait_ns_per_op": lambda r: r["lock_wait_ns"]["per_op"],
    "ops_per_sec": lambda r: r["ops_per_sec"],
    "pcp_cachelines_per_op": lambda r: r["pcp_cachelines_per_op"],
}


def _ratio(a: float, b: float) -> float:
    return a / b if b else (1.0 if a == 0 else float("inf"))


def paired(runs_with: list[dict[str, Any]], runs_without: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: intervals over seeds of each side and of the per-seed ratio with/without."""
    out: dict[str, Any] = {}
    for name, get in _METRICS.items():
        w = [get(r) for r in runs_with]
        wo = [get(r) for r in runs_without]
        out[name] = {"with": interval(w), "without": interval(wo),
                     "ratio": interval([_ratio(a, b) for a, b in zip(w, wo)])}
    return out


def mthp_study(cpus: Sequence[int] = (1, 4, 16, 64), seeds: Sequence[int] = (0, 1, 2), ops_per_cpu: int = 600,
               shares: Sequence[float] = (0.05, 0.25, 0.5), verdict_cpus: int = 16, share: float = 0.25,
               kinds: Sequence[str] = ("movable", "unmovable"), memory: str = "8G",
               progress: Any = None) -> dict[str, Any]:
    """Mel Gorman's question, measured: for each mTHP order alone (and each
    mobility), at ``verdict_cpus`` CPUs and an mTHP ``share`` of the
    allocations, the with/without-lists ratios; for mixed sizes 4..8, the
    metrics against CPUs and against the mTHP share. Intervals over ``seeds``.
    """
    def runs(n: int, orders: Sequence[int], sh: float, kind: str, lists: bool) -> list[dict[str, Any]]:
        out = [run_mthp(n, orders, sh, kind, lists, s, ops_per_cpu, memory=memory) for s in seeds]
        if progress:
            progress(f"mthp orders={list(orders)} cpus={n} share={sh} {kind} lists={lists}")
        return out

    per_order = []
    for kind in kinds:
        for o in MTHP_ORDERS:
            cmp = paired(runs(verdict_cpus, (o,), share, kind, True), runs(verdict_cpus, (o,), share, kind, False))
            per_order.append({"order": o, "kind": kind, "cpus": verdict_cpus, "share": share, **cmp})
    vs_cpus = []
    for n in cpus:
        cmp = paired(runs(n, MTHP_ORDERS, share, "mixed", True), runs(n, MTHP_ORDERS, share, "mixed", False))
        vs_cpus.append({"cpus": n, "orders": list(MTHP_ORDERS), "share": share, "kind": "mixed", **cmp})
    vs_share = []
    for sh in shares:
        cmp = paired(runs(verdict_cpus, MTHP_ORDERS, sh, "mixed", True),
                     runs(verdict_cpus, MTHP_ORDERS, sh, "mixed", False))
        vs_share.append({"cpus": verdict_cpus, "orders": list(MTHP_ORDERS), "share": sh, "kind": "mixed", **cmp})
    return {"params": {"cpus": list(cpus), "seeds": list(seeds), "ops_per_cpu": ops_per_cpu, "shares": list(shares),
                       "verdict_cpus": verdict_cpus, "share": share, "kinds": list(kinds), "memory": memory},
            "per_order": per_order, "vs_cpus": vs_cpus, "vs_share": vs_share}
