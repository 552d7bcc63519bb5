"""The comparison report of one THP list against two: Markdown and JSON.

This first version gathers the layout table and, per THP-list policy, a
mixed-workload run on the default machine with /proc snapshots; the plots,
the HTML page and the repro and contention sections are still to come
(issue 7).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from typing import Any

from . import __version__, workloads
from .config import KernelConfig
from .layout import layout_table, layout_table_markdown
from .machine import Machine

__all__ = ["build_report", "write_report"]

POLICY_PRESETS = {"single": "v6.9", "split": "v6.10", "per-type": "v5.14", "none": "nothp"}
COUNTERS = ("ZONE_LOCK", "ZONE_LOCK_PAGES", "PCP_REFILL", "PCP_DRAIN", "CMA_TO_NONMOVABLE", "PGALLOC_FALLBACK")


def _policy_run(preset: str, memory: str, cma: str, cpus: int, seed: int, n: int) -> dict[str, Any]:
    m = Machine(KernelConfig.preset(preset, memory=memory, cma=cma, cpus=cpus), seed=seed)
    before = {"buddyinfo": m.buddyinfo(), "pagetypeinfo": m.pagetypeinfo()}
    stats = m.run(workloads.mixed(n, live=512, cpus=tuple(range(cpus)), seed=seed)).stats
    m.check()
    return {"preset": preset, "counters": {k: stats[k] for k in COUNTERS},
            "pcp_cachelines_per_op": {op: v["mean"] for op, v in stats["pcp_cachelines"].items()},
            "before": before, "after": {"buddyinfo": m.buddyinfo(), "pagetypeinfo": m.pagetypeinfo()}}


def build_report(memory: str = "8G", cma: str = "3G", cpus: int = 4, seed: int = 1, ops: int = 200_000,
                 policies: tuple[str, ...] = ("single", "split")) -> dict[str, Any]:
    """Every number of the report, as one JSON-able dict."""
    return {
        "pcpemu_version": __version__, "host": platform.platform(), "seed": seed,
        "config": {"memory": memory, "cma": cma, "cpus": cpus, "ops": ops},
        "layout": layout_table(),
        "policies": {p: _policy_run(POLICY_PRESETS[p], memory, cma, cpus, seed, ops) for p in policies},
    }


def _markdown(rep: dict[str, Any]) -> str:
    c = rep["config"]
    out = [f"# pcpemu report (pcpemu {rep['pcpemu_version']}, seed {rep['seed']})", "",
           f"Machine: {c['memory']} with {c['cma']} CMA, {c['cpus']} CPUs; {c['ops']} mixed ops per policy.", "",
           "## struct per_cpu_pages layout", "", layout_table_markdown(rep["layout"]), "",
           "## Mixed workload by THP-list policy", "",
           "| policy | " + " | ".join(COUNTERS) + " | pcp cachelines/alloc | pcp cachelines/free |",
           "|---" * (len(COUNTERS) + 3) + "|"]
    for name, r in rep["policies"].items():
        cl = r["pcp_cachelines_per_op"]
        out.append(f"| {name} | " + " | ".join(str(r["counters"][k]) for k in COUNTERS)
                   + f" | {cl['alloc']:.3f} | {cl['free']:.3f} |")
    for name, r in rep["policies"].items():
        out += ["", f"### /proc/buddyinfo after the run ({name})", "", "```", r["after"]["buddyinfo"].rstrip(), "```"]
    return "\n".join(out) + "\n"


def write_report(outdir: str, rep: dict[str, Any]) -> list[str]:
    """Write report.md and report.json into outdir; a file appears only once complete."""
    os.makedirs(outdir, exist_ok=True)
    written = []
    for name, text in (("report.json", json.dumps(rep, indent=2, sort_keys=True)), ("report.md", _markdown(rep))):
        fd, tmp = tempfile.mkstemp(dir=outdir, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(outdir, name))
        written.append(os.path.join(outdir, name))
    return written
