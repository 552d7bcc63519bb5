"""The comparison report of one THP list against two (``pcpemu report``).

A report is built in stages (STAGES), each a measurement that adds one key to
a JSON-able dict; the verdict is derived from that dict last, and every page
(report.json, report.md, report.html, the PNGs) is rendered from it
(pcpemu.tools.reportrender), so the three always agree. To add a section,
append a stage here and a section builder to reportrender.SECTIONS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from typing import Any, Callable

from .. import __version__
from ..errors import ConfigError, PcpemuError
from ..kernel.config import KernelConfig
from ..kernel.layout import layout_table
from ..machine import Machine
from ..runs import repro, smp
from ..runs import workloads as wl
from ..runs.capture import is_capture
from ..runs.capture_replay import fidelity_on_capture
from . import reportruns as rr
from .outdir import replace_dir
from .reportplots import render_plots
from .reportrender import render_html, render_markdown
from .verdict import build_verdict

__all__ = ["MODES", "STAGES", "ReportOptions", "build_report", "command_line", "default_capture", "write_report"]

#: Sizes per mode. cpus/workloads: the contention sweep; seeds: per cell;
#: lengths: the convergence study (ops per CPU) at conv_cpus; nm_cpus: the
#: non-movable share sweep; bug_*: the seed-bug share study.
MODES: dict[str, dict[str, Any]] = {
    "quick": {"cpus": [1, 4, 16], "workloads": ["thp", "thp-nm40", "mixed", "capture"], "seeds": 5,
              "warmup": 1000, "lengths": [250, 500, 1000, 2000], "conv_cpus": 4, "nm_cpus": 4, "sens_cpus": 4,
              "sens_workloads": ["thp-nm40"],
              "bug_shares": [0.25, 0.5], "bug_seeds": 5, "policies": ["single", "split"], "pairs": 100_000},
    "default": {"cpus": [1, 2, 4, 8, 16], "workloads": ["thp", "thp-nm40", "mixed", "order0", "capture"],
                "seeds": 5, "warmup": 2000, "lengths": [500, 1000, 2000, 4000, 8000], "conv_cpus": 8,
                "nm_cpus": 16, "sens_cpus": 8, "sens_workloads": ["thp-nm40", "mixed"], "bug_shares": [0.25, 0.375, 0.5, 0.75], "bug_seeds": 5,
                "policies": ["single", "split", "per-type", "android"], "pairs": 500_000},
    "full": {"cpus": [1, 2, 4, 8, 16, 32, 64, 128], "workloads": ["thp", "thp-nm40", "mixed", "order0", "net",
                                                                  "capture"],
             "seeds": 10, "warmup": 4000, "lengths": [500, 1000, 2000, 4000, 8000, 16000, 32000], "conv_cpus": 16,
             "nm_cpus": 64, "sens_cpus": 16, "sens_workloads": ["thp-nm40", "mixed"], "bug_shares": [0.125, 0.25, 0.375, 0.5, 0.625, 0.75], "bug_seeds": 20,
             "policies": ["single", "split", "per-type", "android"], "pairs": 2_000_000},
}
#: The seed bug's policies (their kernels: config.POLICY_PRESETS).
POLICIES = repro.POLICIES
SCHEMA = 2
#: Where the bundled capture (a ``pcpemu capture`` directory) lives in a source checkout.
_BUNDLED_CAPTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "tests", "data", "capture-6.18-small")


def default_capture() -> str | None:
    """The capture the report derives its realistic workload from, if shipped."""
    return _BUNDLED_CAPTURE if os.path.isdir(_BUNDLED_CAPTURE) else None


class ReportOptions(dict):
    """The report's parameters (JSON-able), checked before any work."""

    @classmethod
    def make(cls, mode: str = "default", policies: list[str] | None = None, cpus: list[int] | None = None,
             workloads: list[str] | None = None, memory: str = "8G", cma: str = "4G", seed: int = wl.DEFAULT_SEED,
             ops_per_cpu: int | None = None, pairs: int | None = None, seeds: int | None = None,
             capture: str | None = None, sizes: dict[str, Any] | None = None) -> "ReportOptions":
        """:param ops_per_cpu: measured ops per CPU; None: the convergence study chooses.
        :param seeds: seeds per cell (seed, seed + 1, ...), at least 2 for an interval.
        :param capture: a kmem capture for the ``capture`` workload; None: the bundled one.
        :param sizes: overrides of the mode's other sizes (MODES keys), e.g. for tests."""
        if mode not in MODES:
            raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        unknown = set(sizes or {}) - set(MODES[mode])
        if unknown:
            raise ConfigError(f"sizes: unknown {', '.join(sorted(unknown))}")
        m = {**MODES[mode], **(sizes or {})}
        capture = capture or default_capture()
        wls = list(workloads or m["workloads"])
        if capture is None and "capture" in wls and workloads is None:
            wls.remove("capture")
        opts = cls(mode=mode, policies=list(policies or m["policies"]), cpus=list(cpus or m["cpus"]),
                   workloads=wls, memory=memory, cma=cma, seed=seed, seeds=seeds or m["seeds"],
                   ops_per_cpu=ops_per_cpu, pairs=pairs or m["pairs"], capture=capture,
                   **{k: m[k] for k in ("warmup", "lengths", "conv_cpus", "nm_cpus", "sens_cpus", "sens_workloads",
                                        "bug_shares", "bug_seeds")})
        for p in opts["policies"]:
            if p not in POLICIES:
                raise ConfigError(f"policies: {p!r} is not one of {', '.join(POLICIES)}")
        if "single" not in opts["policies"] or "split" not in opts["policies"]:
            raise ConfigError("policies: the report compares 'single' with 'split'; include both")
        for w in opts["workloads"]:
            if w == "capture":
                if capture is None:
                    raise ConfigError("workloads: 'capture' needs --capture FILE (no bundled capture here)")
            else:
                try:
                    wl.get(w)
                except PcpemuError:
                    raise ConfigError(f"workloads: {w!r} is not one of {', '.join(wl.WORKLOADS)}, thp-nmP, "
                                      "capture") from None
        for n in opts["cpus"]:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
                raise ConfigError(f"cpus: {n!r} is outside 1..1024")
        if ops_per_cpu is not None and (isinstance(ops_per_cpu, bool) or not isinstance(ops_per_cpu, int)
                                        or ops_per_cpu < 2):
            raise ConfigError(f"ops_per_cpu: {ops_per_cpu!r} must be an integer >= 2")
        if opts["seeds"] < 2 or opts["pairs"] < 1:
            raise ConfigError(f"seeds ({opts['seeds']}) must be at least 2 for an interval, pairs "
                              f"({opts['pairs']}) at least 1")
        if capture is not None and not (os.path.isfile(capture) or is_capture(capture)):
            raise ConfigError(f"capture: {capture} is neither a kmem trace file nor a pcpemu capture directory")
        cfg = KernelConfig(memory=memory, cma=cma, cpus=max(opts["cpus"]))
        if not cfg.cma:
            raise ConfigError("cma: the seed bug needs a CMA area; give --cma")
        return opts

    @property
    def seed_list(self) -> list[int]:
        return list(range(self["seed"], self["seed"] + self["seeds"]))


def command_line(opts: ReportOptions) -> str:
    """The pcpemu command that reproduces a report."""
    parts = ["pcpemu", "report"]
    if opts["mode"] != "default":
        parts.append(f"--{opts['mode']}")
    parts += ["--policies", ",".join(opts["policies"]), "--cpus", ",".join(map(str, opts["cpus"])),
              "--workloads", ",".join(opts["workloads"]), "--memory", opts["memory"], "--cma", opts["cma"],
              "--seed", str(opts["seed"]), "--seeds", str(opts["seeds"])]
    if opts["ops_per_cpu"] is not None:
        parts += ["--ops-per-cpu", str(opts["ops_per_cpu"])]
    if opts["capture"] and opts["capture"] != default_capture():
        parts += ["--capture", opts["capture"]]
    return " ".join(parts)


# ---- the stages: each adds rep[key] ----

Log = Callable[[str], None]


def _workloads(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    names = list(dict.fromkeys(opts["workloads"] + [f"thp-nm{p}" for p in wl.NONMOVABLE_SHARES]))
    table = [_workload(opts, n).as_dict() for n in names]
    return {"table": table, "vmstat_tick_ops": wl.VMSTAT_TICK_OPS}


def _workload(opts: ReportOptions, name: str) -> wl.Workload:
    if name == "capture":
        return wl.from_capture(opts["capture"])
    return wl.get(name)


def _layout(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    return {"answer": rr.layout_answer(), "rows": layout_table()}


def _convergence(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    if opts["ops_per_cpu"] is not None:
        return {"skipped": f"--ops-per-cpu {opts['ops_per_cpu']} given", "chosen": opts["ops_per_cpu"],
                "warmup": opts["warmup"], "rows": []}
    return rr.convergence("thp-nm40", opts["conv_cpus"], opts.seed_list, opts["lengths"], opts["warmup"],
                          opts["memory"])


def _contention(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    n_ops = rep["convergence"]["chosen"]
    cells = rr.contention_cells([_workload(opts, w) for w in opts["workloads"]], opts["cpus"], opts.seed_list,
                                n_ops, opts["warmup"], memory=opts["memory"], progress=log)
    return {"ops_per_cpu": n_ops, "warmup": opts["warmup"], "seeds": opts.seed_list, "cells": cells,
            "compare": rr.compare_cells(cells)}


def _nonmovable(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    n, n_ops = opts["nm_cpus"], rep["convergence"]["chosen"]
    names = [f"thp-nm{p}" for p in wl.NONMOVABLE_SHARES]
    # Reuse the contention sweep's cells where it ran the same workload at n CPUs.
    have = [c for c in rep["contention"]["cells"] if c["cpus"] == n and c["workload"] in names]
    done = {c["workload"] for c in have}
    cells = have + rr.contention_cells([w for w in names if w not in done], [n], opts.seed_list, n_ops,
                                       opts["warmup"], memory=opts["memory"], progress=log)
    rows = rr.compare_cells(cells)
    pct = {f"thp-nm{p}": p for p in wl.NONMOVABLE_SHARES}
    for r in rows:
        r["percent"] = pct[r["workload"]]
    return {"cpus": n, "ops_per_cpu": n_ops, "rows": sorted(rows, key=lambda r: r["percent"])}


#: CostModel parameters set from page_bench03 (ANCHORS B2), and how.
FITTED = {"op": "its 1-CPU order-0 cost (274 cycles a pair, ~68 ns at 4 GHz)",
          "lock": "its 1-CPU zone->lock cost (524 cycles an order-3 pair, ~131 ns)",
          "remote": "solved so the zone->lock path grows 17.9x from 1 to 8 CPUs",
          "smt_slowdown": "its order-0 growth from 1 to 8 CPUs on 4 cores (hyperthreads)"}


def _costmodel(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    n_ops = rep["convergence"]["chosen"]
    sens = {w: rr.cost_sensitivity(w, opts["sens_cpus"], opts.seed_list, n_ops, opts["warmup"], opts["memory"])
            for w in opts["sens_workloads"]}
    return {"params": dataclasses.asdict(smp.CostModel()), "fitted": FITTED,
            "assumed": [k for k in dataclasses.asdict(smp.CostModel()) if k not in FITTED], "cpus": opts["sens_cpus"],
            "sensitivity": sens,
            "calibration": smp.calibration_check(ops_per_cpu=2000)}


def _seedbug(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    policies = [p for p in POLICIES if p in opts["policies"]]
    shares = rr.seedbug_shares(policies, opts["bug_shares"], list(range(opts["seed"], opts["seed"] + opts["bug_seeds"])),
                               progress=log)
    # One run at the report's memory and CMA, for the detail table and /proc.
    memory = KernelConfig(memory=opts["memory"]).memory
    guest = min(memory // 8, 1 << 18) // 512 * 512
    one = repro.repro(tuple(policies), memory=opts["memory"], cma=opts["cma"], seed=opts["seed"], guest=guest)
    detail = one.as_dict()
    for o in detail["outcomes"]:
        o.pop("wall_seconds")       # wall time is not a function of the seed
    return {"shares": shares, "detail": detail}


def _microbench(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any]:
    # Wall-clock fast-path cost on this host: best of 3 runs of n pairs.
    rows = []
    for label, order, gfp in (("order-0 pcp alloc+free", 0, "GFP_KERNEL"),
                              ("order-9 THP pcp alloc+free", 9, "GFP_TRANSHUGE_LIGHT | __GFP_COMP"),
                              ("order-4 zone->lock alloc+free", 4, "GFP_KERNEL")):
        for policy in ("single", "split"):
            m = Machine(smp.smp_config(policy, 1, "1G"), seed=opts["seed"])
            ops = wl.alloc_free_pairs(opts["pairs"], order, gfp)
            times = sorted(_timed(m.run, ops) for _ in range(3))
            rows.append({"path": label, "policy": policy, "ns_per_pair": 1e9 * times[0] / opts["pairs"],
                         "ns_per_pair_worst": 1e9 * times[-1] / opts["pairs"],
                         "pcp_cachelines_per_op": m.stats()["pcp_cachelines_per_op"]})
    return {"rows": rows, "host": platform.platform(), "python": sys.version.split()[0]}


def _fidelity(opts: ReportOptions, rep: dict[str, Any], log: Log) -> dict[str, Any] | None:
    # A capture directory carries the traced kernel's state and counters: its
    # replay, like for like, says how far to trust the emulator on this mix.
    if not opts["capture"] or not is_capture(opts["capture"]) or "capture" not in opts["workloads"]:
        return None
    return fidelity_on_capture(opts["capture"], seed=opts["seed"])


def _timed(f: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


#: (key, label, function(opts, rep, log) -> rep[key]) in order; keys under
#: "timing" hold wall-clock figures, everything else is a function of the options.
STAGES: list[tuple[str, str, Callable[[ReportOptions, dict[str, Any], Log], dict[str, Any] | None]]] = [
    ("workloads", "workloads", _workloads),
    ("layout", "struct per_cpu_pages layout", _layout),
    ("convergence", "run length (convergence)", _convergence),
    ("contention", "contention against CPUs", _contention),
    ("nonmovable", "non-movable THP share sweep", _nonmovable),
    ("costmodel", "cost model and its sensitivity", _costmodel),
    ("seedbug", "seed bug across seeds and CMA shares", _seedbug),
    ("microbench", "fast-path microbenchmarks", _microbench),
    ("fidelity", "fidelity on the capture", _fidelity),
]


def build_report(opts: ReportOptions, progress: Callable[[int, int, str], None] | None = None,
                 log: Callable[[str], None] | None = None, jobs: int | None = None) -> dict[str, Any]:
    """Every number of the report, as one JSON-able dict.

    :param progress: called as progress(done, total, label) as stages and their runs finish.
    :param log: called with one line at the end of each stage.
    :param jobs: worker processes for the runs (default: one per core, at most 4);
        the numbers do not depend on it.
    """
    saved, rr.JOBS = rr.JOBS, jobs or min(os.cpu_count() or 1, 4)
    try:
        return _build(opts, progress, log)
    finally:
        rr.JOBS = saved


def _build(opts: ReportOptions, progress: Callable[[int, int, str], None] | None,
           log: Callable[[str], None] | None) -> dict[str, Any]:
    rep: dict[str, Any] = {"pcpemu_schema": SCHEMA, "pcpemu_version": __version__, "options": dict(opts),
                           "command": command_line(opts)}
    timing: dict[str, Any] = {"stages": {}}
    t0 = time.perf_counter()
    for i, (key, label, fn) in enumerate(STAGES):
        t = time.perf_counter()
        sub = (lambda what, i=i, label=label: progress(i, len(STAGES), f"{label}: {what}")) if progress else None
        out = fn(opts, rep, sub or (lambda _what: None))
        if key == "microbench":
            timing[key] = out
        else:
            rep[key] = out
        timing["stages"][key] = time.perf_counter() - t
        if progress:
            progress(i + 1, len(STAGES), label)
        if log:
            log(f"{label}: {timing['stages'][key]:.1f} s")
    rep["verdict"] = build_verdict(rep)
    timing["elapsed_s"] = time.perf_counter() - t0
    if log:
        log(f"done in {timing['elapsed_s']:.1f} s")
    rep["timing"] = timing
    return rep


def write_report(outdir: str, rep: dict[str, Any]) -> list[str]:
    """Write report.json, report.md, report.html and the PNGs into outdir.

    The directory is written whole and swapped into place in one step
    (pcpemu.tools.outdir.replace_dir), so an interrupted run leaves no
    half-written report; an existing path pcpemu did not write is refused.
    """
    def fill(tmp: str) -> None:
        plots = render_plots(rep, tmp)
        images = {}
        for p in plots:
            with open(os.path.join(tmp, p["file"]), "rb") as f:
                images[p["file"]] = f.read()
        # Insertion order, not sorted keys: the pages render dicts in their order.
        for name, text in (("report.json", json.dumps(rep, indent=2) + "\n"),
                           ("report.md", render_markdown(rep, plots)), ("report.html", render_html(rep, plots, images))):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)

    replace_dir(outdir, fill)
    return sorted(os.path.join(outdir, n) for n in os.listdir(outdir))
