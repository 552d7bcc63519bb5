"""The report's measurements: every run behind a number, with seeds and 95% intervals.

Each function returns a JSON-able dict and is a pure function of its
arguments (the seeds included). The split/single comparison of a metric is
the per-seed percent change 100 * (split / single - 1), the two runs of a
seed sharing their op streams; its mean and 95% interval are over seeds
(pcpemu.stats.mean_ci). A change of 0 against 0 is 0; where single
is 0 and split is not, the change has no percent and the difference split -
single (in the metric's units, also kept for every metric) tells instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import platform
from typing import Any, Callable, Sequence

from ..kernel.config import POLICY_PRESETS, KernelConfig
from ..kernel.layout import ARCHES, compare as layout_compare, layout
from ..runs import repro, smp
from ..runs import workloads as wl
from ..stats import mean_ci

__all__ = ["COMPARED", "NARROW_PCT", "compare_cells", "contention_cells", "convergence", "cost_sensitivity",
           "layout_answer", "seedbug_shares", "wilson"]

#: Metrics compared split vs single: key -> (label, unit, exact count or cost model).
COMPARED = {
    "zone_lock": ("zone->lock acquisitions", "per 1000 ops", "exact"),
    "hit9": ("order-9 pcp hit rate", "share of order-9 allocations", "exact"),
    "cachelines": ("pcp cachelines touched", "per op", "exact"),
    "lock_wait": ("zone->lock wait", "ns per op", "cost model"),
    "throughput": ("throughput", "ops/s of virtual time", "cost model"),
}

#: A change is "no difference" when its 95% interval includes 0 and is at most this wide each side (%).
NARROW_PCT = 1.0


def _metric(cell: dict[str, Any], key: str) -> float | None:
    if key == "zone_lock":
        return cell["zone_lock_per_1k_ops"]
    if key == "hit9":
        return cell["pcp_hit_rate"].get(9)
    if key == "cachelines":
        return cell["pcp_cachelines_per_op"]
    if key == "lock_wait":
        return cell["lock_wait_ns"]["per_op"]
    return cell["ops_per_sec"]


def _change(single: float | None, split: float | None) -> float | None:
    if single is None or split is None:
        return None
    if single == 0:
        return 0.0 if split == 0 else math.inf
    return 100.0 * (split / single - 1.0)


def compare_cells(cells: list[dict[str, Any]], group: Sequence[str] = ("workload", "cpus")) -> list[dict[str, Any]]:
    """Per group of cells (by ``group`` keys): for each COMPARED metric the
    single and split means with intervals and the per-seed percent change."""
    by: dict[tuple, dict[int, dict[str, dict[str, Any]]]] = {}
    for c in cells:
        by.setdefault(tuple(c[k] for k in group), {}).setdefault(c["seed"], {})[c["policy"]] = c
    rows = []
    for key, seeds in by.items():
        pairs = [(s["single"], s["split"]) for s in seeds.values() if "single" in s and "split" in s]
        row: dict[str, Any] = dict(zip(group, key))
        row["seeds"] = len(pairs)
        for m in COMPARED:
            a = [_metric(b, m) for b, _ in pairs]
            b = [_metric(o, m) for _, o in pairs]
            ch = [_change(x, y) for x, y in zip(a, b)]
            # A change from 0 has no percent: the cell gives none (see from_zero).
            from_zero = sum(c == math.inf for c in ch)
            row[m] = {"single": mean_ci(a), "split": mean_ci(b),
                      "change": mean_ci([]) if from_zero else mean_ci(ch), "from_zero": from_zero,
                      "diff": mean_ci(None if x is None or y is None else y - x for x, y in zip(a, b)),
                      "both_zero": all(x == 0 and y == 0 for x, y in zip(a, b))}
        rows.append(row)
    return rows


#: Worker processes for the runs (set by the report; 1: in this process).
JOBS = 1


def _pmap(fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
    # Each task is a pure function of its arguments, so order and results do
    # not depend on how many processes run them.
    if JOBS <= 1 or len(tasks) < 2:
        return [fn(t) for t in tasks]
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with concurrent.futures.ProcessPoolExecutor(min(JOBS, len(tasks)), mp_context=ctx) as pool:
        return list(pool.map(fn, tasks))


def _cell_runs(task: tuple) -> list[dict[str, Any]]:
    w, n, s, first, ops_per_cpu, warmup, policies, memory, models = task
    skip = wl.warmup_ops(w, warmup)
    streams = wl.cpu_streams(w, n, ops_per_cpu, s, warmup)
    out = []
    for (k, model), p in itertools.product(enumerate(models), policies):
        r = smp.run_virtual(smp.smp_config(p, n, memory), streams, seed=s, costs=model, warmup=skip, check=first)
        out.append({"workload": w.name, "cpus": n, "seed": s, "policy": p, "costs": k, "ops": r["ops"],
                    "zone_lock_per_1k_ops": r["zone_lock_per_1k_ops"],
                    "pages_per_acquisition": r["pages_per_acquisition"],
                    "pcp_hit_rate": {int(o): v for o, v in r["pcp_hit_rate"].items()},
                    "pcp_cachelines_per_op": r["pcp_cachelines_per_op"],
                    "lock_wait_ns": {"per_op": r["lock_wait_ns"]["per_op"], "p99": r["lock_wait_ns"]["p99"]},
                    "ops_per_sec": r["ops_per_sec"], "alloc_failed": r["alloc_failed"]})
    return out


def contention_cells(workloads: Sequence[Any], cpus: Sequence[int], seeds: Sequence[int], ops_per_cpu: int,
                     warmup: int, policies: Sequence[str] = ("single", "split"), memory: str = "8G",
                     costs: smp.CostModel | Sequence[smp.CostModel] | None = None,
                     progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Virtual-time runs of every (workload, CPUs, seed, policy), one dict each, slimmed for the JSON.

    :param costs: one CostModel, or several: each cell then runs once per
        cost model on the same streams, and records ``costs`` (its index).
    Machine.check() runs after the first seed's runs of each cell.
    """
    models = list(costs) if isinstance(costs, (list, tuple)) else [costs]
    tasks = [(wl.get(w), n, s, s == seeds[0], ops_per_cpu, warmup, tuple(policies), memory, models)
             for w in workloads for n in cpus for s in seeds]
    cells = [c for part in _pmap(_cell_runs, tasks) for c in part]
    if progress:
        progress(f"{len(cells)} runs")
    return cells


def convergence(workload: str, cpus: int, seeds: Sequence[int], lengths: Sequence[int], warmup: int,
                memory: str = "8G") -> dict[str, Any]:
    """The split/single changes against ops per CPU, and the shortest length
    whose mean changes (zone->lock, throughput) lie, as do all longer ones',
    inside the longest run's 95% interval."""
    rows = []
    for n_ops in lengths:
        cmp = compare_cells(contention_cells([workload], [cpus], seeds, n_ops, warmup, memory=memory))[0]
        rows.append({"ops_per_cpu": n_ops, "zone_lock": cmp["zone_lock"]["change"],
                     "throughput": cmp["throughput"]["change"]})
    last = rows[-1]

    def inside(r: dict[str, Any]) -> bool:
        return all(last[m]["lo"] is not None and last[m]["lo"] - 1e-9 <= r[m]["mean"] <= last[m]["hi"] + 1e-9
                   for m in ("zone_lock", "throughput"))
    chosen = last["ops_per_cpu"]
    for i, r in enumerate(rows):
        if all(inside(x) for x in rows[i:]):
            chosen = r["ops_per_cpu"]
            break
    # Converged: a shorter length already agrees with the longest.
    return {"workload": workload, "cpus": cpus, "warmup": warmup, "seeds": list(seeds), "rows": rows,
            "chosen": chosen, "converged": chosen < last["ops_per_cpu"]}


#: CostModel parameters varied by +-50% in the sensitivity check.
VARIED = ("op", "cacheline", "lock", "page", "remote")


def cost_sensitivity(workload: Any, cpus: int, seeds: Sequence[int], ops_per_cpu: int, warmup: int,
                     memory: str = "8G", factors: Sequence[float] = (0.5, 1.5)) -> list[dict[str, Any]]:
    """The split/single changes with one CostModel parameter at a time scaled
    by each factor, on the same streams; then with the workload's vmstat tick
    interval scaled likewise."""
    base = smp.CostModel()
    variants = [(name, f, dataclasses.replace(base, **{name: getattr(base, name) * f}))
                for name in VARIED for f in factors]
    cells = contention_cells([workload], [cpus], seeds, ops_per_cpu, warmup, memory=memory,
                             costs=[c for _, _, c in variants])
    groups = [(name, f, getattr(costs, name), [c for c in cells if c["costs"] == k])
              for k, (name, f, costs) in enumerate(variants)]
    # Not a cost but as much an assumption: how often the vmstat tick decays pcp->high.
    w = wl.get(workload)
    for f in factors:
        ticked = dataclasses.replace(w, tick=int(w.tick * f))
        groups.append(("vmstat_tick_ops", f, ticked.tick,
                       contention_cells([ticked], [cpus], seeds, ops_per_cpu, warmup, memory=memory)))
    rows = []
    for name, f, value, group in groups:
        cmp = compare_cells(group)[0]
        rows.append({"param": name, "factor": f, "value": value, "lock_wait": cmp["lock_wait"]["change"],
                     "throughput": cmp["throughput"]["change"], "zone_lock": cmp["zone_lock"]["change"]})
    return rows


def wilson(k: int, n: int) -> dict[str, Any]:
    """k of n with the 95% Wilson score interval of the share."""
    if n == 0:
        return {"k": 0, "n": 0, "share": None, "lo": None, "hi": None}
    z, p = 1.96, k / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return {"k": k, "n": n, "share": p, "lo": max(0.0, mid - half), "hi": min(1.0, mid + half)}


def seedbug_shares(policies: Sequence[str], shares: Sequence[float], seeds: Sequence[int], memory: str = "4G",
                   guest: str = "256M", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per policy and CMA share of RAM: in how many seeds pin_user_pages
    livelocks and cma_alloc fails (repro.run_policy), with Wilson intervals."""
    pages = KernelConfig(memory=memory).memory
    cells = [(p, share, int(pages * share) // repro.THP_PAGES * repro.THP_PAGES) for share in shares for p in policies]
    outs = _pmap(_seedbug_run, [(p, memory, cma, s, guest) for p, _, cma in cells for s in seeds])
    rows = []
    for i, (p, share, _) in enumerate(cells):
        mine = outs[i * len(seeds):(i + 1) * len(seeds)]
        rows.append({"policy": p, "cma_share": share, "livelock": wilson(sum(o[0] for o in mine), len(mine)),
                     "cma_fail": wilson(sum(not o[1] for o in mine), len(mine))})
    if progress:
        progress(f"{len(outs)} runs")
    return {"memory": memory, "guest": guest, "seeds": list(seeds), "rows": rows}


def _seedbug_run(task: tuple) -> tuple[bool, bool]:
    p, memory, cma, seed, guest = task
    o = repro.run_policy(p, memory=memory, cma=cma, seed=seed, guest=guest)
    return o.livelock, o.cma_alloc_ok


#: platform.machine() names of the arches pcpemu lays out.
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64",
             "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64", "i686": "i386", "i386": "i386",
             "armv7l": "arm"}


def layout_answer(old: str = POLICY_PRESETS["single"], new: str = POLICY_PRESETS["split"],
                  machine: str | None = None) -> dict[str, Any]:
    """struct per_cpu_pages from ``old`` to ``new`` (one THP list to two) on
    this host's arch, and on every arch: bytes of members, size, cachelines."""
    host = machine or platform.machine()
    arch = _MACHINES.get(host, "x86_64")
    per_arch = []
    for name in ARCHES:
        a, b = layout(old, arch=name), layout(new, arch=name)
        per_arch.append({"arch": name, "cacheline": b.config.cacheline, "members_old": a.members_end,
                         "members_new": b.members_end, "size_old": a.size, "size_new": b.size,
                         "cachelines_old": a.cachelines, "cachelines_new": b.cachelines,
                         "summary": layout_compare(a, b)})
    mine = next(r for r in per_arch if r["arch"] == arch)
    delta = mine["cachelines_new"] - mine["cachelines_old"]
    others = [r for r in per_arch if r["cachelines_new"] - r["cachelines_old"] != delta]
    return {"host_machine": host, "arch": arch, "assumed": host not in _MACHINES, "old": old, "new": new,
            "mine": mine, "differs": others, "per_arch": per_arch}
