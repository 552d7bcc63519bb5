"""The sweep's measurement kinds: op-stream workloads, contention runs, the
seed-bug scenario and trace replays (a fleet's traces are a sweep over ``trace``).

Each kind is a pure function of its parameters. The registry (KINDS,
register_kind) lives here, below pcpemu.tools.sweep, which imports it and
re-exports it: the arrows run cli -> sweep -> sweepkinds -> runs -> machine.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Mapping

from ..runs import workloads
from ..kernel.config import DEFAULT_PRESET, PRESETS, THP_LIST_POLICIES, KernelConfig
from ..errors import ConfigError, PcpemuError, SweepSpecError
__all__ = ["KINDS", "Kind", "WORKLOADS", "measure_contention", "measure_mthp", "measure_pcp_buddy", "measure_replay",
           "measure_repro", "measure_workload", "register_kind"]


# ---- measurement kinds ----

@dataclasses.dataclass(frozen=True)
class Kind:
    """A measurement kind: what one run of a sweep computes.

    :param name: the spec's ``measure`` value.
    :param run: ``params -> result dict`` of JSON values; pure, picklable (a
        module-level function), raising on failure.
    :param params: every parameter ``run`` reads, with its default; a spec may
        set or sweep only these.
    :param check: raises SweepSpecError for parameters ``run`` would reject; it
        is called on every run before any run starts.
    :param exclusive: pairs of parameters a spec may not both set (or sweep).
    """

    name: str
    run: Callable[[dict[str, Any]], dict[str, Any]]
    params: Mapping[str, Any]
    check: Callable[[dict[str, Any]], None]
    exclusive: tuple[tuple[str, str], ...] = ()


#: Measurement kinds by name.
KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> None:
    """Make a measurement kind available to specs as ``measure = kind.name``."""
    KINDS[kind.name] = kind


#: Workloads a ``workload`` run may name: the churn ones of pcpemu.runs.workloads
#: (and thp-nmP for any P in 0..80).
WORKLOADS = tuple(name for name, w in workloads.WORKLOADS.items() if w.pattern == "churn")

#: Largest op counts a run may ask for: an op stream is 16 bytes an op, so
#: 10**8 ops are 1.6 GB; beyond that a typo (ops = 10**12) would run for days.
MAX_OPS = 10**8
MAX_LIVE = 1 << 20

#: Counters a ``workload`` run reports, as Machine.stats() names them.
WORKLOAD_COUNTERS = ("ZONE_LOCK", "ZONE_LOCK_PAGES", "PCP_REFILL", "PCP_DRAIN", "CMA_TO_NONMOVABLE",
                     "ALLOC_FAILED")

_WORKLOAD_PARAMS: dict[str, Any] = {
    "preset": "v6.10",   # a KernelConfig preset
    "policy": None,      # THP-list policy overriding the preset's (None: the preset's)
    "memory": "1G",
    "cma": 0,
    "cpus": 1,
    "workload": "mixed",
    "ops": 10_000,       # churn steps after the working set is filled
    "live": 256,         # working set, in blocks
    "seed": workloads.DEFAULT_SEED,
}


def _workload_config(p: dict[str, Any]) -> KernelConfig:
    over: dict[str, Any] = {"memory": p["memory"], "cma": p["cma"], "cpus": p["cpus"]}
    if p["policy"] is not None:
        over.update(thp_lists=p["policy"], thp=p["policy"] != "none")
    return KernelConfig.preset(p["preset"], **over)


@functools.lru_cache(maxsize=4096)
def _checked_config(preset: Any, policy: Any, memory: Any, cma: Any, cpus: Any) -> None:
    if preset not in PRESETS:
        raise SweepSpecError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    if policy is not None and policy not in THP_LIST_POLICIES:
        raise SweepSpecError(f"policy {policy!r} is not one of {', '.join(THP_LIST_POLICIES)}")
    try:
        _workload_config({"preset": preset, "policy": policy, "memory": memory, "cma": cma, "cpus": cpus})
    except ConfigError as exc:
        raise SweepSpecError(str(exc)) from None


def _check_workload(p: dict[str, Any]) -> None:
    if p["workload"] not in WORKLOADS and not str(p["workload"]).startswith("thp-nm"):
        raise SweepSpecError(f"workload {p['workload']!r} is not one of {', '.join(WORKLOADS)}, thp-nmP")
    _checked(lambda p: workloads.get(p["workload"]), p)
    for name, lo, hi in (("ops", 0, MAX_OPS), ("live", 1, MAX_LIVE), ("seed", 0, None)):
        if isinstance(p[name], bool) or not isinstance(p[name], int) or p[name] < lo:
            raise SweepSpecError(f"{name}: expected an integer >= {lo}, got {p[name]!r}")
        if hi is not None and p[name] > hi:
            raise SweepSpecError(f"{name}: {p[name]} is above the limit of {hi:,}")
    for name in ("preset", "policy", "memory", "cma", "cpus"):
        if isinstance(p[name], (list, dict)):
            raise SweepSpecError(f"{name}: expected a single value, got {p[name]!r}")
    _checked_config(p["preset"], p["policy"], p["memory"], p["cma"], p["cpus"])


def measure_workload(params: dict[str, Any]) -> dict[str, Any]:
    """Boot a machine, run a seeded op stream on all its CPUs, return the counters.

    :param params: the ``workload`` kind's parameters (see ``KINDS["workload"].params``).
    :return: WORKLOAD_COUNTERS, ``pcp_hit_rate`` (pcp hits over pcp-order
        allocations), ``pcp_cachelines_per_op`` (distinct pcp cachelines touched
        per alloc or free) and ``wall_s`` (Machine.run's wall time; the only
        field that differs between two runs of the same parameters).
    """
    from ..machine import Machine

    cfg = _workload_config(params)
    m = Machine(cfg, seed=params["seed"])
    ops = workloads.churn(params["ops"], workloads.get(params["workload"]).classes, params["live"],
                          tuple(range(cfg.cpus)), params["seed"])
    t0 = time.perf_counter()
    stats = m.run(ops).stats
    wall = time.perf_counter() - t0
    hits, misses = sum(stats["pcp_hit"]), sum(stats["pcp_miss"])
    out: dict[str, Any] = {k: stats[k] for k in WORKLOAD_COUNTERS}
    out["pcp_hit_rate"] = hits / (hits + misses) if hits + misses else 0.0
    out["pcp_cachelines_per_op"] = stats["pcp_cachelines_per_op"]
    out["wall_s"] = wall
    return out


# A policy overrides the preset's THP lists: naming both is ambiguous.
register_kind(Kind("workload", measure_workload, _WORKLOAD_PARAMS, _check_workload, (("policy", "preset"),)))

_CONTENTION_PARAMS: dict[str, Any] = {
    "policy": "split", "cpus": 4, "workload": "mixed", "ops_per_cpu": 1000, "memory": "8G",
    "seed": workloads.DEFAULT_SEED,
}
_REPRO_PARAMS: dict[str, Any] = {
    "policy": "single", "memory": "8G", "cma": "4G", "cpus": 4, "seed": workloads.DEFAULT_SEED, "guest": "1G",
}
_REPLAY_PARAMS: dict[str, Any] = {"trace": None, "zoneinfo": None, "preset": DEFAULT_PRESET, "policy": None,
                                  "seed": workloads.DEFAULT_SEED}


def _checked(check: Any, p: dict[str, Any]) -> None:
    # Any pcpemu error from building the run's inputs is a bad spec.
    try:
        check(p)
    except SweepSpecError:
        raise
    except PcpemuError as exc:
        raise SweepSpecError(str(exc)) from None


def _check_contention(p: dict[str, Any]) -> None:
    from ..runs import smp

    def build(p: dict[str, Any]) -> None:
        ops = p["ops_per_cpu"] * p["cpus"] if all(type(p[k]) is int for k in ("ops_per_cpu", "cpus")) else 0
        if ops > MAX_OPS:
            raise SweepSpecError(f"ops_per_cpu * cpus: {ops} is above the limit of {MAX_OPS:,}")
        smp.smp_config(p["policy"], p["cpus"], p["memory"])
        smp.cpu_streams(p["workload"], 1, p["ops_per_cpu"], p["seed"])
    _checked(build, p)


def measure_contention(params: dict[str, Any]) -> dict[str, Any]:
    """A virtual-time contention run (pcpemu.runs.smp.run_virtual), flattened to numbers."""
    from ..runs import smp

    p = params
    r = smp.run_virtual(smp.smp_config(p["policy"], p["cpus"], p["memory"]),
                        smp.cpu_streams(p["workload"], p["cpus"], p["ops_per_cpu"], p["seed"]), seed=p["seed"])
    return {"ops_per_sec": r["ops_per_sec"], "zone_lock_per_1k_ops": r["zone_lock_per_1k_ops"],
            "pages_per_acquisition": r["pages_per_acquisition"], "pcp_cachelines_per_op": r["pcp_cachelines_per_op"],
            "lock_wait_ns_per_op": r["lock_wait_ns"]["per_op"], "lock_wait_p99_ns": r["lock_wait_ns"]["p99"],
            "lock_hold_ns_per_op": r["lock_hold_ns"]["per_op"],
            "remote_cachelines": r["remote_cachelines"]["zone"] + r["remote_cachelines"]["pcp"]}


def _check_repro(p: dict[str, Any]) -> None:
    from ..kernel.config import KernelConfig, parse_size
    from ..runs.repro import POLICIES

    def build(p: dict[str, Any]) -> None:
        if p["policy"] not in POLICIES:
            raise SweepSpecError(f"policy {p['policy']!r} is not one of {', '.join(POLICIES)}")
        KernelConfig(memory=p["memory"], cma=p["cma"], cpus=p["cpus"])
        parse_size(p["guest"], "guest")
    _checked(build, p)


def measure_repro(params: dict[str, Any]) -> dict[str, Any]:
    """The seed-bug scenario under one policy (pcpemu.runs.repro.run_policy), as numbers."""
    from ..runs.repro import run_policy

    p = params
    o = run_policy(p["policy"], memory=p["memory"], cma=p["cma"], cpus=p["cpus"], seed=p["seed"], guest=p["guest"])
    return {"livelock": int(o.livelock), "pin_rounds": o.pin_rounds, "migrations": o.migrations,
            "cma_to_cma": o.cma_to_cma, "pinned_in_cma": o.pinned_in_cma, "unmovable_in_cma": o.unmovable_in_cma,
            "cma_to_nonmovable": o.cma_to_nonmovable, "cma_alloc_ok": int(o.cma_alloc_ok)}


def _replay_config(p: dict[str, Any]) -> Any:
    from ..kernel.config import KernelConfig

    over = {} if p["policy"] is None else {"thp_lists": p["policy"], "thp": p["policy"] != "none"}
    if p["zoneinfo"] is not None:
        return KernelConfig.from_zoneinfo(p["zoneinfo"], preset=p["preset"], **over)
    return KernelConfig.preset(p["preset"], **over)


def _check_replay(p: dict[str, Any]) -> None:
    if not isinstance(p["trace"], str) or not os.path.isfile(p["trace"]):
        raise SweepSpecError(f"trace: {p['trace']!r} is not a readable file")
    if p["zoneinfo"] is not None and not os.path.isfile(p["zoneinfo"]):
        raise SweepSpecError(f"zoneinfo: {p['zoneinfo']!r} is not a readable file")
    _checked(_replay_config, p)


def measure_replay(params: dict[str, Any]) -> dict[str, Any]:
    """Replay one trace (pcpemu.runs.replay.replay) on one machine: emulated beside traced totals."""
    from ..runs.replay import replay

    r = replay(params["trace"], {"run": _replay_config(params)}, seed=params["seed"])
    total = r.policies["run"]["total"]
    out = {"events_read": r.events_read, "replayed": sum(r.replayed.values()),
           "skipped": sum(r.skipped.values()), "zone_lock": total["zone_lock"]}
    for key in ("refill_blocks", "drained_pages", "fallbacks"):
        out[f"emulated_{key}"] = total[key]
        out[f"traced_{key}"] = total["traced"][key]
    return out


register_kind(Kind("contention", measure_contention, _CONTENTION_PARAMS, _check_contention))
register_kind(Kind("repro", measure_repro, _REPRO_PARAMS, _check_repro))
register_kind(Kind("replay", measure_replay, _REPLAY_PARAMS, _check_replay))


# ---- the what-if lab (issue 18) ----

_MTHP_PARAMS: dict[str, Any] = {
    "cpus": 16, "orders": [4], "share": 0.25, "kind": "movable", "lists": True, "policy": "split",
    "ops_per_cpu": 600, "memory": "8G", "seed": 0,
}


def _check_mthp(p: dict[str, Any]) -> None:
    from ..runs import whatif

    def build(p: dict[str, Any]) -> None:
        if not isinstance(p["lists"], bool):
            raise SweepSpecError(f"lists: expected true or false, got {p['lists']!r}")
        if not isinstance(p["orders"], list):
            raise SweepSpecError(f"orders: expected a list of mTHP orders, got {p['orders']!r}")
        whatif.mthp_streams(1, p["ops_per_cpu"], p["seed"], p["orders"], p["share"], p["kind"])
        whatif.mthp_config(p["cpus"], p["orders"] if p["lists"] else (), p["policy"], p["memory"])
    _checked(build, p)


def measure_mthp(params: dict[str, Any]) -> dict[str, Any]:
    """An mTHP contention run (pcpemu.runs.whatif.run_mthp), flattened to numbers."""
    from ..runs import whatif

    p = params
    r = whatif.run_mthp(p["cpus"], p["orders"], p["share"], p["kind"], p["lists"], p["seed"], p["ops_per_cpu"],
                        p["policy"], p["memory"])
    return {"ops_per_sec": r["ops_per_sec"], "zone_lock": r["zone_lock_acquisitions"],
            "pages_per_acquisition": r["pages_per_acquisition"], "lock_wait_ns_per_op": r["lock_wait_ns"]["per_op"],
            "lock_hold_ns_per_op": r["lock_hold_ns"]["per_op"], "pcp_cachelines_per_op": r["pcp_cachelines_per_op"],
            "alloc_failed": r["alloc_failed"]}


register_kind(Kind("mthp", measure_mthp, _MTHP_PARAMS, _check_mthp))


_PCP_BUDDY_PARAMS: dict[str, Any] = {
    "pattern": "purger", "cpus": 16, "pcp_policy": "pcp_buddy", "high_fraction": 0, "scale": 1, "memory": "8G",
    "seed": 0,
}


def _check_pcp_buddy(p: dict[str, Any]) -> None:
    from ..runs import whatif

    def build(p: dict[str, Any]) -> None:
        if p["pattern"] not in whatif.PATTERNS:
            raise SweepSpecError(f"pattern {p['pattern']!r} is not one of {', '.join(whatif.PATTERNS)}")
        if isinstance(p["cpus"], bool) or not isinstance(p["cpus"], int) or p["cpus"] < 2:
            raise SweepSpecError(f"cpus: expected an integer >= 2, got {p['cpus']!r}")
        if isinstance(p["scale"], bool) or not isinstance(p["scale"], int) or p["scale"] < 1:
            raise SweepSpecError(f"scale: expected an integer >= 1, got {p['scale']!r}")
        whatif.buddy_config(p["pcp_policy"], p["cpus"], p["memory"], p["high_fraction"])
    _checked(build, p)


def measure_pcp_buddy(params: dict[str, Any]) -> dict[str, Any]:
    """A production-pattern run under a pcp policy (pcpemu.runs.whatif.run_pattern), flattened to numbers."""
    from ..runs import whatif

    p = params
    r = whatif.run_pattern(p["pattern"], p["cpus"], p["pcp_policy"], p["seed"], p["scale"], p["memory"],
                           p["high_fraction"])
    out = {"ops_per_sec": r["ops_per_sec"], "zone_lock": r["zone_lock_acquisitions"],
           "pages_per_acquisition": r["pages_per_acquisition"], "lock_wait_ns_per_op": r["lock_wait_ns"]["per_op"],
           "lock_hold_ns_per_op": r["lock_hold_ns"]["per_op"], "pcp_hit": r["pcp_hit"],
           "free_skipped": r["free_skipped"]}
    out.update({k.lower(): v for k, v in r["pcpb"].items()})
    return out


register_kind(Kind("pcp_buddy", measure_pcp_buddy, _PCP_BUDDY_PARAMS, _check_pcp_buddy))
