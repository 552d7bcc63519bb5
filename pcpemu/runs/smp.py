"""Multi-CPU runs: zone->lock and pcp cacheline cost under load, two ways.

:func:`run_virtual` runs N emulated CPUs' op streams on one Machine in
virtual-time order (a deterministic scheduler with a cost model, in the
compiled core); :func:`run_threads` runs the same streams on real threads with
real spinlocks for zone->lock and the pcp locks (spin_trylock semantics, as in
mm/page_alloc.c since Linux kernel commit 4b23a68f9536 ("mm/page_alloc:
protect PCP lists with a spinlock") (in v6.0)). :func:`calibration_check`
compares the model with page_bench03's 1 -> 8 CPU growth factors.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from . import workloads as wl
from .workloads import cpu_streams   # the per-CPU streams are defined with the workloads
from ..kernel.config import POLICY_PRESETS, KernelConfig
from ..errors import PcpemuError
from ..machine import OP_ALLOC, OP_ALLOC_BULK, OP_DRAIN_ALL, OP_DTYPE, OP_FREE, OP_PCP_REVEAL, Machine

__all__ = ["CostModel", "KERNEL_FACTORS", "POLICIES", "calibrate_costs", "calibration_check", "compare",
           "cpu_streams", "run_threads", "run_virtual", "smp_config", "sweep", "thread_sweep", "verdict"]

#: page_bench03 on 4.6-rc1, cycles per alloc+free at 1 and 8 parallel CPUs
#: (ANCHORS B2: lore 20160415144402.5fbe7a1e@redhat.com).
KERNEL_FACTORS = {"order0_pcp": 620 / 274, "zone_lock": 9364 / 524}


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Nanosecond costs of the virtual-time model; defaults reproduce page_bench03.

    :param op: an op's work outside zone->lock (the pcp hit path, prep_new_page).
    :param cacheline: each pcp cacheline an op touches (an L1 hit).
    :param lock: taking and releasing an uncontended zone->lock.
    :param page: each 4 KiB page moved under zone->lock.
    :param remote: each cacheline last written by another CPU (a cross-core
        transfer, ~200 cycles at 4 GHz).
    :param zone_lines: zone cachelines that move with the lock when another CPU
        held it last: the lock word and the free_area lines.
    :param smt_cores: physical cores; CPUs c and c + smt_cores are hyperthread
        siblings. 0: every CPU has a core of its own.
    :param smt_slowdown: factor on the work outside the lock of a CPU whose
        sibling also runs.

    With these defaults, 1 -> 8 CPUs on a 4-core/8-thread machine grow the
    per-CPU cost of order-0 pcp alloc+free by 2.0x (kernel: 2.26x) and of an
    order that takes zone->lock by ~18x (kernel: 17.9x); see calibration_check().
    """

    op: float = 25.0
    cacheline: float = 1.0
    lock: float = 35.0
    page: float = 0.25
    remote: float = 52.0
    zone_lines: int = 2
    smt_cores: int = 0
    smt_slowdown: float = 2.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise PcpemuError(f"CostModel.{f.name}: {v!r} must be a number >= 0")

    def as_array(self) -> np.ndarray:
        return np.array([self.op, self.cacheline, self.lock, self.page, self.remote, self.zone_lines,
                         self.smt_cores, self.smt_slowdown], dtype=np.float64)


def smp_config(policy: str, cpus: int, memory: str = "8G") -> KernelConfig:
    """The config of a contention run: one Normal zone (so one zone->lock), a
    THP-list policy (``single``, ``split``, ``per-type`` or ``none``)."""
    if policy not in POLICIES:
        raise PcpemuError(f"unknown THP-list policy {policy!r}; known: {', '.join(POLICIES)}")
    return KernelConfig.preset(POLICY_PRESETS[policy], memory=memory, zones="normal", cpus=cpus)


def _concat(streams: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ops = np.concatenate(streams) if streams else np.zeros(0, dtype=OP_DTYPE)
    starts = np.zeros(len(streams) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(s) for s in streams])
    nslots = int(ops["slot"].max()) + 1 if len(ops) else 1
    return np.ascontiguousarray(ops), starts, np.full(nslots, -1, dtype=np.int64)


def _check_streams(machine: Machine, streams: list[np.ndarray], shared_slots: bool = False) -> None:
    for k, s in enumerate(streams):
        if not isinstance(s, np.ndarray) or s.dtype != OP_DTYPE:
            raise PcpemuError(f"stream {k} must be an OP_DTYPE array")
        if len(s) and (s["cpu"] != k).any():
            raise PcpemuError(f"stream {k} has ops for another CPU; stream k must run on CPU k")
    if len(streams) > machine.config.cpus:
        raise PcpemuError(f"{len(streams)} streams for a machine of {machine.config.cpus} CPUs")
    if shared_slots:
        return
    slot_sets = [set(np.unique(s["slot"][np.isin(s["op"], (OP_ALLOC, OP_ALLOC_BULK, OP_FREE))]).tolist())
                 for s in streams]
    for k, a in enumerate(slot_sets):
        for j in range(k):
            if a & slot_sets[j]:
                raise PcpemuError(f"streams {j} and {k} share slots; slots must be disjoint per CPU")


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else 0.0


def _summary(stats: dict[str, Any], n_ops: int) -> dict[str, Any]:
    acq = stats["ZONE_LOCK"]
    hit_rate = {}
    for order, (h, m) in enumerate(zip(stats["pcp_hit"], stats["pcp_miss"])):
        if h + m:
            hit_rate[order] = h / (h + m)
    return {
        "ops": n_ops,
        "zone_lock_acquisitions": acq,
        "zone_lock_per_1k_ops": 1000.0 * acq / n_ops if n_ops else 0.0,
        "pages_per_acquisition": stats["pages_per_zone_lock"],
        "pcp_hit_rate": hit_rate,
        "pcp_cachelines_per_op": stats["pcp_cachelines_per_op"],
        "pcp_trylock_fail": stats["PCP_TRYLOCK_FAIL"],
        "alloc_failed": stats["ALLOC_FAILED"],
    }


def run_virtual(config: KernelConfig, streams: list[np.ndarray], seed: int = wl.DEFAULT_SEED,
                costs: CostModel | None = None, warmup: int = 0, check: bool = True,
                shared_slots: bool = False) -> dict[str, Any]:
    """Run per-CPU op streams on one Machine in virtual-time order.

    The scheduler pops the CPU with the earliest virtual clock (ties: lowest
    CPU), runs its next op in the core and prices it with ``costs``; an op
    that takes zone->lock while another CPU holds it waits until it is free.
    Same config, streams and costs give the same result, bit for bit.

    :param streams: stream k holds CPU k's ops (see cpu_streams()).
    :param warmup: the first ``warmup`` ops of each stream run first, in
        virtual-time order too, and count nowhere: the measured run starts
        from the state they leave, with every clock at 0.
    :param check: run Machine.check() at the end (on a large machine it can
        cost more than the run; sweeps check one run per cell).
    :param shared_slots: CPUs may free slots other CPUs allocate (each slot
        allocated once, by a lower-numbered CPU than the one freeing it); a
        free waits in virtual time until its allocation has run.
    :return: ops/s of virtual time, zone->lock acquisitions, hold and wait
        times, pcp hit rates, pcp cachelines per op, remote cacheline transfers.
    :raises PcpemuError, OpStreamError: for bad streams, before any op runs.
    """
    costs = costs or CostModel()
    m = Machine(config, seed=seed)
    _check_streams(m, streams, shared_slots)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise PcpemuError(f"warmup {warmup!r} must be an int >= 0")
    if any(len(s) <= warmup for s in streams):
        raise PcpemuError(f"warmup {warmup} leaves a stream without measured ops")
    ops, starts, slots = _concat([s[warmup:] for s in streams])
    if warmup:
        # The same slots array carries the warm-up's live blocks into the run.
        warm, wstarts, wslots = _concat([s[:warmup] for s in streams])
        slots = np.full(max(len(slots), len(wslots)), -1, dtype=np.int64)
        m.run_virtual(warm, wstarts, slots, costs.as_array(), shared_slots)
    stats, (clock, wait, hold, _, remote_zone, remote_pcp) = m.run_virtual(ops, starts, slots, costs.as_array(),
                                                                           shared_slots)
    if check:
        m.check()
    locked = wait >= 0
    w, h = wait[locked], hold[locked]
    makespan = float(clock.max()) if len(clock) else 0.0
    out = _summary(stats, len(ops))
    out.update({
        "stats": stats,
        "mode": "virtual", "cpus": len(streams), "virtual_ns": makespan,
        "ops_per_sec": len(ops) / makespan * 1e9 if makespan else 0.0,
        "ns_per_op_per_cpu": float(np.mean([c / max(1, starts[k + 1] - starts[k]) for k, c in enumerate(clock)]))
        if len(clock) else 0.0,
        "lock_hold_ns": {"total": float(h.sum()), "per_op": float(h.sum()) / max(1, len(ops)),
                         "p50": _pct(h, 50), "p99": _pct(h, 99)},
        "lock_wait_ns": {"total": float(w.sum()), "per_op": float(w.sum()) / max(1, len(ops)),
                         "p50": _pct(w, 50), "p99": _pct(w, 99)},
        "remote_cachelines": {"zone": int(remote_zone), "pcp": int(remote_pcp)},
    })
    return out


def run_threads(config: KernelConfig, streams: list[np.ndarray], seed: int = wl.DEFAULT_SEED,
                shared_slots: bool = False) -> dict[str, Any]:
    """Run per-CPU op streams on real threads, one per stream, with the GIL
    released and real spinlocks; the wall clock runs from a common start.
    ``shared_slots`` as for run_virtual: a free spins (yielding) until the
    thread that allocates its slot has done so.

    :return: wall-clock ops/s, zone->lock acquisitions and contention (spins),
        pcp trylock failures, and the same counters run_virtual() reports.
    :raises PcpemuError, OpStreamError: for bad streams (a drain_all op among
        them: real threads own their pcp locks; a pcp_reveal op), before any op runs.
    """
    m = Machine(config, seed=seed)
    _check_streams(m, streams, shared_slots)
    if any((s["op"] == OP_DRAIN_ALL).any() for s in streams):
        raise PcpemuError("drain_all ops cannot run on real threads: they take other CPUs' pcp locks")
    if any((s["op"] == OP_PCP_REVEAL).any() for s in streams):
        raise PcpemuError("pcp_reveal ops cannot run on real threads: they take the untraced owner's pages, "
                          "which every CPU shares")
    ops, starts, slots = _concat(streams)
    stats, _, wall = m.run_threads(ops, starts, slots, shared_slots)
    m.check()
    out = _summary(stats, len(ops))
    out.update({
        "stats": stats,
        "mode": "threads", "threads": len(streams), "wall_s": wall,
        "ops_per_sec": len(ops) / wall if wall > 0 else 0.0,
        "zone_lock_contended": stats["ZONE_LOCK_CONTENDED"],
        "zone_lock_spins": stats["ZONE_LOCK_SPINS"],
    })
    return out


def calibration_check(ops_per_cpu: int = 2000, costs: CostModel | None = None) -> dict[str, Any]:
    """The model against page_bench03: growth of the per-CPU cost of an
    alloc+free pair from 1 to 8 CPUs in parallel, on the 4-core/8-thread
    machine the numbers imply (flat up to 4 CPUs, rising after: hyperthreads).

    Order 0 goes through the pcp; order 4 has no pcp list in v6.10, so every
    alloc and free takes zone->lock, as order 3 did in 4.6.

    :return: ``{"order0_pcp": {"model", "kernel", "error"}, "zone_lock": {...},
        "within_25pct": bool}``.
    """
    costs = dataclasses.replace(costs or CostModel(), smt_cores=4)
    out: dict[str, Any] = {}
    for key, workload in (("order0_pcp", "tight0"), ("zone_lock", "tight4")):
        per_cpu = []
        for n in (1, 8):
            r = run_virtual(smp_config("split", n), cpu_streams(workload, n, ops_per_cpu, 0), costs=costs)
            per_cpu.append(r["ns_per_op_per_cpu"])
        model = per_cpu[1] / per_cpu[0]
        kernel = KERNEL_FACTORS[key]
        out[key] = {"model": model, "kernel": kernel, "error": model / kernel - 1.0,
                    "ns_per_pair_1cpu": 2 * per_cpu[0], "ns_per_pair_8cpu": 2 * per_cpu[1]}
    out["within_25pct"] = all(abs(out[k]["error"]) <= 0.25 for k in KERNEL_FACTORS)
    return out


#: THP-list policies a sweep may compare (their kernels: config.POLICY_PRESETS).
POLICIES = ("single", "split", "per-type", "none")


def sweep(policies: list[str], cpus: list[int], workloads: list[Any], ops_per_cpu: int = 2000,
          seed: int | list[int] = wl.DEFAULT_SEED, costs: CostModel | None = None,
          progress: Callable[[int, int, str], None] | None = None, warmup: int = 0) -> list[dict[str, Any]]:
    """Virtual-time runs of every (workload, CPU count, seed, policy) cell, the
    same streams for every policy of a (workload, CPU count, seed).

    :param workloads: names or pcpemu.runs.workloads.Workload objects.
    :param seed: one seed or a list; each cell records its ``seed``.
    :param warmup: ops per CPU run before the measured ``ops_per_cpu``, after
        the working set's fill (see workloads.cpu_streams()); they count nowhere.
    :param progress: called as progress(done, total, label) after each cell.
    :raises PcpemuError: for an unknown policy or workload or a bad CPU count,
        before any run.
    """
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
    for p in policies:
        smp_config(p, 1)
    wls = [wl.get(w) for w in workloads]
    for n in cpus:
        smp_config("split", n)
    total = len(policies) * len(cpus) * len(wls) * len(seeds)
    cells = []
    for w in wls:
        skip = wl.warmup_ops(w, warmup)
        for n in cpus:
            for s in seeds:
                streams = cpu_streams(w, n, ops_per_cpu, s, warmup)
                for p in policies:
                    r = run_virtual(smp_config(p, n), streams, seed=s, costs=costs, warmup=skip)
                    r.update(workload=w.name, policy=p, seed=s)
                    cells.append(r)
                    if progress:
                        progress(len(cells), total, f"{w.name} cpus={n} seed={s} {p}")
    return cells


def thread_sweep(policies: list[str], counts: list[int], workloads: list[str], ops_per_thread: int,
                 seed: int = wl.DEFAULT_SEED, progress: Callable[[int, int, str], None] | None = None) -> list[dict[str, Any]]:
    """run_threads() of every (workload, policy, thread count) cell, wall clock.

    :param progress: called as progress(done, total, label) after each cell.
    """
    total, cells = len(workloads) * len(policies) * len(counts), []
    for w in workloads:
        for p in policies:
            for n in counts:
                r = run_threads(smp_config(p, n), cpu_streams(w, n, ops_per_thread, seed))
                r.update(workload=w, policy=p)
                cells.append(r)
                if progress:
                    progress(len(cells), total, f"threads {w} {p} n={n}")
    return cells


def _ratio(a: float, b: float) -> float | None:
    # None when both are 0: no ratio to speak of (e.g. no lock wait at 1 CPU).
    if b == 0:
        return None if a == 0 else float("inf")
    return a / b


def compare(cells: list[dict[str, Any]], base: str = "single", other: str = "split") -> list[dict[str, Any]]:
    """Per (workload, CPU count, seed): the ratios other/base of zone->lock
    acquisitions, lock wait, pcp cachelines per op and throughput (None where
    both are 0), and the verdict they support.

    :raises PcpemuError: when the cells lack one of the two policies.
    """
    index = {(c["workload"], c["cpus"], c.get("seed"), c["policy"]): c for c in cells}
    rows = []
    for (w, n, s, p), b in index.items():
        if p != base:
            continue
        o = index.get((w, n, s, other))
        if o is None:
            raise PcpemuError(f"no {other!r} run for workload {w} at {n} CPUs")
        row = {"workload": w, "cpus": n, "seed": s, "base": base, "other": other,
               "zone_lock": _ratio(o["zone_lock_acquisitions"], b["zone_lock_acquisitions"]),
               "lock_wait": _ratio(o["lock_wait_ns"]["total"], b["lock_wait_ns"]["total"]),
               "cachelines": _ratio(o["pcp_cachelines_per_op"], b["pcp_cachelines_per_op"]),
               "throughput": _ratio(o["ops_per_sec"], b["ops_per_sec"])}
        row["verdict"] = verdict(row)
        rows.append(row)
    return rows


def _change(r: float | None, what: str) -> str | None:
    # None when the ratio is 1 within half a percent, or undefined (both 0).
    if r is None or abs(r - 1.0) < 0.005:
        return None
    if r == float("inf"):
        return f"{what} where there were none"
    return f"{(r - 1) * 100:+.1f}% {what}"


def verdict(row: dict[str, Any]) -> str:
    """The sentence one row of compare() supports, costs named first."""
    parts = [_change(row["cachelines"], "pcp cachelines touched per op") or "same pcp cachelines touched per op",
             _change(row["zone_lock"], "zone->lock acquisitions") or "same zone->lock acquisitions"]
    for key, what in (("lock_wait", "zone->lock wait"), ("throughput", "throughput")):
        ch = _change(row[key], what)
        if ch:
            parts.append(ch)
    cpus = f"{row['cpus']} CPU" + ("s" if row["cpus"] != 1 else "")
    return ", ".join(parts) + f" under the {row['workload']} workload at {cpus}"


def calibrate_costs(ops: int = 400000, seed: int = wl.DEFAULT_SEED) -> CostModel:
    """A CostModel measured with real threads on the machine at hand.

    op (and cacheline at its default) from one thread's order-0 pcp hits;
    lock from one thread's order-4 alloc+free, each of which takes zone->lock
    once; remote from two threads doing the same, where the lock line moves
    on each acquisition (needs 2 cores; otherwise the default stays). Wall
    clock numbers: they vary from run to run, unlike everything else here.
    """
    base = CostModel()
    t0 = run_threads(smp_config("split", 1), cpu_streams("tight0", 1, ops, seed))
    op = max(1e9 / t0["ops_per_sec"] - base.cacheline * t0["pcp_cachelines_per_op"], 0.0)
    t4 = run_threads(smp_config("split", 1), cpu_streams("tight4", 1, ops, seed))
    lock = max(1e9 / t4["ops_per_sec"] - op - base.page * t4["pages_per_acquisition"], 0.0)
    remote = base.remote
    if (os.cpu_count() or 1) >= 2:
        t2 = run_threads(smp_config("split", 2), cpu_streams("tight4", 2, ops, seed))
        # Lock-bound: each op waits for the other thread's hold, so an op
        # per thread costs two holds.
        hold = 1e9 / t2["ops_per_sec"]
        remote = max((hold - lock - base.page * t2["pages_per_acquisition"]) / base.zone_lines, 0.0)
    return dataclasses.replace(base, op=op, lock=lock, remote=remote)
