"""The what-if lab's workloads and runs (issue 18): mTHP on the pcp lists
(Mel Gorman's question) and the 2026 pcp buddy RFC's production patterns.

Op streams are built from the op codes and OP_DTYPE of pcpemu.runs.workloads
and run with pcpemu.runs.smp in virtual time. Every function is seeded and
pure: the same arguments give the same numbers.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import PcpemuError
from ..stats import mean_ci
from ..kernel.config import DEFAULT_PRESET, KernelConfig
from ..kernel.gfp import parse_gfp
from ..kernel.layout import MTHP_ORDERS
from . import smp
from .workloads import OP_ALLOC, OP_DTYPE, OP_FREE

__all__ = ["BUDDY_PRESET", "MTHP_KINDS", "PATTERNS", "PCP_BUDDY_READINGS", "buddy_config", "exit_streams", "frag_study",
           "frag_timeline", "mthp_config", "repro_study",
           "mthp_streams", "mthp_study", "paired", "pattern_streams", "pcp_buddy_study", "purger_streams",
           "run_mthp", "run_pattern"]

_MOVABLE = parse_gfp("GFP_HIGHUSER_MOVABLE")
_KERNEL = parse_gfp("GFP_KERNEL")
_MOVABLE_COMP = parse_gfp("GFP_HIGHUSER_MOVABLE | __GFP_COMP")   # anonymous mTHP faults
_KERNEL_COMP = parse_gfp("GFP_KERNEL | __GFP_COMP")              # non-movable large folios

#: mTHP mobility -> the gfp masks its allocations draw from (evenly).
MTHP_KINDS = {"movable": (_MOVABLE_COMP,), "unmovable": (_KERNEL_COMP,), "mixed": (_MOVABLE_COMP, _KERNEL_COMP)}


# ---- intervals over seeds ----

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
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
        out[name] = {"with": mean_ci(w), "without": mean_ci(wo),
                     "ratio": mean_ci([_ratio(a, b) for a, b in zip(w, wo)])}
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


# ---- the pcp buddy RFC (Johannes Weiner, linux-mm, April 2026) ----

#: Where the RFC's description leaves a choice, the reading pcpemu models
#: (the core's _pcp_buddy.pxi); the report lists them.
PCP_BUDDY_READINGS = (
    "Ownership is per pageblock: a block is owned by the CPU that claimed it whole (phase 1); the blocks the owner "
    "hands out from it, and from fragments it recovers (phase 0), are PagePCPBuddy and a free from any CPU goes to "
    "the owner's pcp, taking that pcp's lock (a failed trylock frees to the buddy, as the classic free does).",
    "A refill wants the classic batch (nr_pcp_alloc) and runs the phases in order, all under one zone->lock, until "
    "it has it; each chunk is split into blocks of the requested order on that list, so a claimed pageblock or a "
    "phase-2 chunk may overshoot the batch (pcp->high then trims it on later frees, as for any overshoot).",
    "Phase 0 walks the one owned_blocks list, skips blocks of another migratetype, takes every free fragment of at "
    "least the requested order of a matching block, and unlists the block (as the RFC's code excerpt in Rik van "
    "Riel's review does).",
    "Phases 0, 1 and 2 read only the free lists of the pcp migratetype (so MOVABLE, never CMA: Frank van der "
    "Linden's point); phase 2 takes the largest chunks below a pageblock first; phase 3 is the classic __rmqueue "
    "with its CMA balancing rule and fallbacks.",
    "A drain picks what the classic drain picks (round robin, oldest first), merges the owned blocks among them "
    "bottom-up, and frees the merged chunks under the same zone->lock; a block whose owned pages reach the buddy "
    "joins its owner's owned_blocks, or stops being owned when it is wholly free again.",
    "The split happens under zone->lock in the model; the cost model prices pages moved under the lock, not the "
    "split work, so phase 0/1/2 claims are charged for every page they move.",
    "pcp_buddy runs on the newest preset's rules (BUDDY_PRESET, v6.18) and needs its free lists to hold only "
    "their pageblock's type (buddy_rules v6.10); watermarks, pcp->high tuning and the pcp lists stay as they are.",
)

#: The production patterns of the RFC and the control.
PATTERNS = {
    "purger": "N CPUs fault pages in; K purger CPUs (jemalloc/tcmalloc) free them in bursts",
    "exit": "every CPU faults in a large address space, then all exit at once, round after round",
    "control": "each CPU allocates and frees its own pages (affinity intact)",
}


def purger_streams(cpus: int, purgers: int, rounds: int, per_round: int, seed: int = 0,
                   order: int = 0) -> list[np.ndarray]:
    """The affinity-violation pattern: CPUs ``0..cpus-purgers-1`` allocate
    ``per_round`` movable blocks a round into fresh slots; purger CPU k frees,
    in one burst a round, every block its allocators (those i with
    ``i % purgers == k``) allocated that round. Each slot is allocated once, by
    a CPU numbered below the one freeing it; run with ``shared_slots=True``.
    """
    if not 1 <= purgers < cpus:
        raise PcpemuError(f"purgers {purgers!r} must be in 1..cpus-1 ({cpus - 1})")
    if rounds < 1 or per_round < 1:
        raise PcpemuError(f"rounds ({rounds}) and per_round ({per_round}) must be at least 1")
    n = cpus - purgers
    rng = np.random.default_rng([seed, 18, 2])
    gfp = _MOVABLE_COMP if order else _MOVABLE
    slot = np.arange(n * rounds * per_round, dtype=np.int64).reshape(n, rounds, per_round)
    streams = []
    for cpu in range(n):
        ops = np.zeros(rounds * per_round, dtype=OP_DTYPE)
        ops["op"] = OP_ALLOC
        ops["order"] = order
        ops["cpu"] = cpu
        ops["gfp"] = gfp
        ops["slot"] = slot[cpu].reshape(-1)
        streams.append(ops)
    for k in range(purgers):
        mine = np.arange(k, n, purgers)
        parts = []
        for r in range(rounds):
            burst = slot[mine, r].reshape(-1).copy()
            rng.shuffle(burst)      # the purger's caches free in no particular order
            parts.append(burst)
        ops = np.zeros(sum(len(p) for p in parts), dtype=OP_DTYPE)
        ops["op"] = OP_FREE
        ops["order"] = order
        ops["cpu"] = n + k
        ops["slot"] = np.concatenate(parts)
        streams.append(ops)
    return streams


def exit_streams(cpus: int, rounds: int, pages: int, seed: int = 0) -> list[np.ndarray]:
    """The concurrent-exit pattern: each CPU runs a process that faults in
    ``pages`` order-0 pages (nine in ten movable, the rest kernel: page tables
    and the like), then exits, freeing them all in fault order; every CPU does
    so at once, ``rounds`` times. Slots are disjoint per CPU.
    """
    if rounds < 1 or pages < 1:
        raise PcpemuError(f"rounds ({rounds}) and pages ({pages}) must be at least 1")
    streams = []
    for cpu in range(cpus):
        rng = np.random.default_rng([seed, cpu, 18, 3])
        ops = np.zeros(2 * rounds * pages, dtype=OP_DTYPE)
        ops["cpu"] = cpu
        ops["slot"] = cpu * pages + np.tile(np.arange(pages), 2 * rounds)
        view = ops.reshape(rounds, 2, pages)
        view["op"][:, 1] = OP_FREE
        view["gfp"][:, 0] = np.where(rng.random((rounds, pages)) < 0.9, _MOVABLE, _KERNEL)
        streams.append(ops)
    return streams


def pattern_streams(pattern: str, cpus: int, seed: int = 0, scale: int = 1) -> tuple[list[np.ndarray], bool]:
    """The streams of a production pattern at ``cpus`` CPUs and whether they
    share slots; ``scale`` multiplies the work per CPU."""
    if pattern == "purger":
        purgers = max(1, cpus // 16)
        return purger_streams(cpus, purgers, rounds=4, per_round=64 * scale, seed=seed), True
    if pattern == "exit":
        return exit_streams(cpus, rounds=2, pages=256 * scale, seed=seed), False
    if pattern == "control":
        return mthp_streams(cpus, 512 * scale, seed, share=0.0, live=128), False
    raise PcpemuError(f"pattern {pattern!r} is not one of {', '.join(PATTERNS)}")


#: The kernel the RFC is compared on: the newest preset (v6.18 rules).
BUDDY_PRESET = DEFAULT_PRESET


def buddy_config(pcp_policy: str, cpus: int, memory: str = "8G", high_fraction: int = 0) -> KernelConfig:
    """The contention config (one Normal zone, BUDDY_PRESET's rules and lists)
    under a pcp policy; ``high_fraction`` is vm.percpu_pagelist_high_fraction
    (0: pcp->high auto-tuned, 8: the largest pcp->high the sysctl allows)."""
    return KernelConfig.preset(BUDDY_PRESET, memory=memory, zones="normal", cpus=cpus, pcp_policy=pcp_policy,
                               percpu_pagelist_high_fraction=high_fraction)


def run_pattern(pattern: str, cpus: int, pcp_policy: str, seed: int = 0, scale: int = 1,
                memory: str = "8G", high_fraction: int = 0, threads: bool = False,
                costs: smp.CostModel | None = None) -> dict[str, Any]:
    """One run of a production pattern under a pcp policy, in virtual time
    (or on real threads, wall clock): the smp summary plus the pcp_buddy counters."""
    if cpus < 2:
        raise PcpemuError(f"cpus {cpus!r}: the patterns need at least 2 CPUs")
    streams, shared = pattern_streams(pattern, cpus, seed, scale)
    cfg = buddy_config(pcp_policy, cpus, memory, high_fraction)
    if threads:
        r = smp.run_threads(cfg, streams, seed=seed, shared_slots=shared)
    else:
        r = smp.run_virtual(cfg, streams, seed=seed, costs=costs, shared_slots=shared)
    st = r.pop("stats")
    hits, misses = sum(st["pcp_hit"]), sum(st["pcp_miss"])
    r.update(pattern=pattern, pcp_policy=pcp_policy, seed=seed, pcp_hit=hits / (hits + misses) if hits + misses
             else 0.0, free_skipped=st["FREE_SKIPPED"],
             pcpb={k: st[k] for k in st if k.startswith("PCPB_")})
    return r


_BUDDY_METRICS = {
    "zone_lock": lambda r: r["zone_lock_acquisitions"],
    "pages_per_acquisition": lambda r: r["pages_per_acquisition"],
    "lock_hold_ns_per_op": lambda r: r["lock_hold_ns"]["per_op"],
    "lock_wait_ns_per_op": lambda r: r["lock_wait_ns"]["per_op"],
    "pcp_hit": lambda r: r["pcp_hit"],
    "ops_per_sec": lambda r: r["ops_per_sec"],
}


def pcp_buddy_study(cpus: Sequence[int] = (4, 16, 64, 256), seeds: Sequence[int] = (0, 1, 2),
                    patterns: Sequence[str] = tuple(PATTERNS), scale: int = 1, memory: str = "8G",
                    high_fractions: Sequence[int] = (0, 8), progress: Any = None) -> dict[str, Any]:
    """Classic against pcp_buddy for each pattern, pcp->high sizing and CPU
    count: each side's metrics and the per-seed ratio pcp_buddy/classic, as
    intervals over seeds."""
    cells = []
    # The cost model prices every page moved under zone->lock; pcp_buddy moves
    # whole pageblocks there and splits them (in the RFC) outside. The last
    # cells price no page at all, to bound what that charge decides.
    free_pages = smp.CostModel(page=0.0)
    plan = [(p, f, n, None) for p in patterns for f in high_fractions for n in cpus]
    plan += [(p, f, max(cpus), free_pages) for p in patterns for f in high_fractions]
    for pattern, frac, n, costs in plan:
        runs = {pol: [run_pattern(pattern, n, pol, s, scale, memory, frac, costs=costs) for s in seeds]
                for pol in ("classic", "pcp_buddy")}
        cell: dict[str, Any] = {"pattern": pattern, "cpus": n, "high_fraction": frac,
                                "page_ns": (costs or smp.CostModel()).page}
        for name, get in _BUDDY_METRICS.items():
            c = [get(r) for r in runs["classic"]]
            b = [get(r) for r in runs["pcp_buddy"]]
            cell[name] = {"classic": mean_ci(c), "pcp_buddy": mean_ci(b),
                          "ratio": mean_ci([_ratio(x, y) for x, y in zip(b, c)])}
        cell["pcpb"] = {k: mean_ci([r["pcpb"][k] for r in runs["pcp_buddy"]])
                        for k in runs["pcp_buddy"][0]["pcpb"]}
        cell["free_skipped"] = max(r["free_skipped"] for rs in runs.values() for r in rs)
        cells.append(cell)
        if progress:
            progress(f"pcp-buddy {pattern} high_fraction={frac} cpus={n} page_ns={cell['page_ns']}")
    return {"params": {"cpus": list(cpus), "seeds": list(seeds), "patterns": list(patterns), "scale": scale,
                       "memory": memory, "high_fractions": list(high_fractions)}, "cells": cells}


def frag_timeline(pcp_policy: str, seed: int = 0, steps: int = 8, ops_per_step: int = 20_000,
                  memory: str = "2G", cma: str = "512M", cpus: int = 8, live: int = 12_000) -> dict[str, Any]:
    """Fragmentation and CMA use over time under a pcp policy: the general
    mix (pcpemu.runs.workloads.mixed, each op on a random CPU, so frees often
    land on another CPU than their allocation) churns a working set of
    ``live`` blocks, about 60% of a 2 GiB node with a 512 MiB CMA area; after
    the fill and after each step, the pageblock census and CMA use."""
    from ..machine import Machine
    from .workloads import mixed

    cfg = KernelConfig.preset(BUDDY_PRESET, memory=memory, cma=cma, cpus=cpus, zones="normal", pcp_policy=pcp_policy)
    m = Machine(cfg, seed=seed)
    ops = mixed(steps * ops_per_step, live=live, cpus=tuple(range(cpus)), seed=seed)
    bounds = [0, live] + [live + 2 * ops_per_step * (k + 1) for k in range(steps)]
    points = []
    for k in range(len(bounds) - 1):
        m.run(_drop_dead_frees(m, ops[bounds[k]:bounds[k + 1]]))
        st = m.stats()
        movable = sum(row[1] << o for o, row in enumerate(st["alloc"]))
        c = m.pageblock_census()
        points.append({"step": k, "ops": bounds[k + 1], **c,
                       "cma_utilisation": c["cma_pages_allocated"] / c["cma_pages"] if c["cma_pages"] else 0.0,
                       "movable_from_cma": st["cma_pages_to"]["Movable"] / movable if movable else 0.0,
                       "zone_lock": st["ZONE_LOCK"], "alloc_failed": st["ALLOC_FAILED"]})
    m.check()
    return {"pcp_policy": pcp_policy, "seed": seed, "points": points}


def _drop_dead_frees(m: Any, ops: np.ndarray) -> np.ndarray:
    # A slot whose allocation failed in an earlier part of the stream holds
    # nothing now: its free goes, as Machine.run would skip it in one run.
    live = {int(s) for s in np.unique(ops["slot"]) if m.slot_pfn(int(s)) is not None}
    keep = np.ones(len(ops), dtype=bool)
    for i, (op, slot) in enumerate(zip(ops["op"].tolist(), ops["slot"].tolist())):
        if op == OP_ALLOC:
            live.add(slot)
        elif op == OP_FREE:
            if slot in live:
                live.remove(slot)
            else:
                keep[i] = False
    return ops[keep]


def frag_study(seeds: Sequence[int] = (0, 1, 2), steps: int = 8, ops_per_step: int = 20_000,
               progress: Any = None) -> dict[str, Any]:
    """frag_timeline for both pcp policies over seeds: per step, intervals of
    free and mixed pageblocks, CMA utilisation and the movable share from CMA."""
    keys = ("free_pageblocks", "mixed_pageblocks", "cma_utilisation", "movable_from_cma", "zone_lock", "alloc_failed")
    out: dict[str, Any] = {"params": {"seeds": list(seeds), "steps": steps, "ops_per_step": ops_per_step}}
    for pol in ("classic", "pcp_buddy"):
        runs = [frag_timeline(pol, s, steps, ops_per_step) for s in seeds]
        out[pol] = [{"step": k, "ops": runs[0]["points"][k]["ops"],
                     **{key: mean_ci([r["points"][k][key] for r in runs]) for key in keys}}
                    for k in range(len(runs[0]["points"]))]
        if progress:
            progress(f"pcp-buddy fragmentation {pol}")
    return out


def repro_study(memory: str = "8G", cma: str = "4G", seeds: Sequence[int] = (1, 2, 3),
                policies: Sequence[str] = ("single", "split"), progress: Any = None) -> list[dict[str, Any]]:
    """The seed bug's scenario (pcpemu.runs.repro) under each THP-list policy
    and pcp policy, per seed."""
    from .repro import run_policy

    rows = []
    for policy, pol in ((p, q) for p in policies for q in ("classic", "pcp_buddy")):
        for s in seeds:
            o = run_policy(policy, memory=memory, cma=cma, seed=s, pcp_policy=pol,
                           guest=min(1 << 18, KernelConfig(memory=memory).memory // 8) // 512 * 512)
            rows.append({"policy": policy, "pcp_policy": pol, "seed": s, "livelock": o.livelock,
                         "pin_rounds": o.pin_rounds,
                         "migrations": o.migrations, "pinned_in_cma": o.pinned_in_cma,
                         "unmovable_in_cma": o.unmovable_in_cma, "cma_to_nonmovable": o.cma_to_nonmovable,
                         "guest_thps_in_cma": o.guest_thps_in_cma, "cma_alloc_ok": o.cma_alloc_ok})
        if progress:
            progress(f"pcp-buddy repro {policy} {pol}")
    return rows
