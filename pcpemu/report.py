"""The comparison report of one THP list against two: Markdown and JSON; and a sweep's tables and plots.

This first version gathers the layout table and, per THP-list policy, a
mixed-workload run on the default machine with /proc snapshots; the plots,
the HTML page and the repro and contention sections are still to come
(issue 7).
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from typing import Any

from . import __version__, workloads
from .config import KernelConfig
from .layout import layout_table, layout_table_markdown
from .machine import Machine
from .sweep import numeric_fields

__all__ = ["build_report", "sweep_plots", "sweep_tables", "write_report", "write_sweep_report"]

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
    files = (("report.json", json.dumps(rep, indent=2, sort_keys=True)), ("report.md", _markdown(rep)))
    return [_write_atomic(outdir, name, text) for name, text in files]


def _write_atomic(outdir: str, name: str, text: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=outdir, prefix=f".{name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(outdir, name))
    return os.path.join(outdir, name)


# ---- sweeps (pcpemu sweep) ----

#: Sweep parameters that tables and plots average over instead of showing.
SWEEP_AVERAGED = ("seed",)


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers in numeric order, then everything else by its text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, json.dumps(value, sort_keys=True))


def _swept(records: list[dict[str, Any]]) -> list[str]:
    # Parameters that take more than one value (a record's kind counts as one).
    names = list(dict.fromkeys(k for r in records for k in r["params"]))
    swept = [k for k in names if len({json.dumps(r["params"].get(k), sort_keys=True) for r in records}) > 1]
    if len({r["measure"] for r in records}) > 1:
        swept.insert(0, "measure")
    return swept


def _param(rec: dict[str, Any], name: str) -> Any:
    return rec["measure"] if name == "measure" else rec["params"].get(name)


def _groups(records: list[dict[str, Any]], keys: list[str]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(tuple(_param(rec, k) for k in keys), []).append(rec)
    return dict(sorted(groups.items(), key=lambda kv: [_sort_key(v) for v in kv[0]]))


def _mean(recs: list[dict[str, Any]], metric: str) -> str:
    values = [r["result"][metric] for r in recs if r["status"] == "ok" and metric in r["result"]]
    return f"{sum(values) / len(values):.6g}" if values else "-"


def sweep_tables(records: list[dict[str, Any]]) -> str:
    """Markdown tables of a sweep's records: the fixed parameters, one row per
    combination of the swept ones (means over SWEEP_AVERAGED), and the failed runs.

    :param records: as pcpemu.sweepstore.load_records returns them.
    """
    if not records:
        return "# pcpemu sweep\n\nNo runs.\n"
    swept = _swept(records)
    keys = [k for k in swept if k not in SWEEP_AVERAGED]
    metrics = numeric_fields([r for r in records if r["status"] == "ok"])
    failed = [r for r in records if r["status"] != "ok"]
    fixed = {k: v for k, v in records[0]["params"].items() if k not in swept}
    out = [f"# pcpemu sweep: {len(records)} runs, {len(failed)} failed", "",
           "Fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()), "",
           f"Means over {', '.join(k for k in swept if k in SWEEP_AVERAGED) or 'nothing'}.", "",
           "| " + " | ".join(keys + ["runs", "failed"] + metrics) + " |",
           "|---" * (len(keys) + 2 + len(metrics)) + "|"]
    for values, recs in _groups(records, keys).items():
        cells = [str(v) for v in values] + [str(len(recs)), str(sum(r["status"] != "ok" for r in recs))]
        out.append("| " + " | ".join(cells + [_mean(recs, m) for m in metrics]) + " |")
    if failed:
        out += ["", "## Failed runs", "", "| key | " + " | ".join(swept) + " | error |",
                "|---" * (len(swept) + 2) + "|"]
        out += [f"| {r['key']} | " + " | ".join(str(_param(r, k)) for k in swept)
                + f" | {str(r['error']).replace('|', '/')} |" for r in failed]
    return "\n".join(out) + "\n"


def _x_axis(records: list[dict[str, Any]], keys: list[str]) -> str | None:
    numeric = [k for k in keys if all(_sort_key(_param(r, k))[0] == 0 for r in records)]
    return "cpus" if "cpus" in numeric else (numeric[0] if numeric else None)


def sweep_plots(records: list[dict[str, Any]], outdir: str) -> list[str]:
    """``sweep.png``: each numeric result against the first numeric swept parameter
    (``cpus`` if swept), one line per combination of the others, means over seeds.

    :return: the files written; none without matplotlib or a numeric swept parameter.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    ok = [r for r in records if r["status"] == "ok"]
    keys = [k for k in _swept(ok) if k not in SWEEP_AVERAGED]
    x = _x_axis(ok, keys)
    metrics = numeric_fields(ok)
    if x is None or not metrics:
        return []
    lines = [k for k in keys if k != x]
    cols = min(3, len(metrics))
    fig = Figure(figsize=(5 * cols, 3.6 * math.ceil(len(metrics) / cols)), layout="constrained")
    axes = fig.subplots(math.ceil(len(metrics) / cols), cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        for label, recs in _groups(ok, lines).items():
            points = _groups(recs, [x])
            ax.plot([v[0] for v in points], [float(_mean(rs, metric).replace("-", "nan")) for rs in points.values()],
                    marker="o", label=", ".join(f"{k}={v}" for k, v in zip(lines, label)) or None)
        ax.set(title=metric, xlabel=x)
        if x == "cpus":
            ax.set_xscale("log", base=2)
    if lines:
        axes[0].legend(fontsize="small")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    path = os.path.join(outdir, "sweep.png")
    fig.savefig(path, dpi=100)
    return [path]


def write_sweep_report(outdir: str, records: list[dict[str, Any]]) -> list[str]:
    """Write sweep.md (sweep_tables) and, with matplotlib, sweep.png into outdir."""
    os.makedirs(outdir, exist_ok=True)
    return [_write_atomic(outdir, "sweep.md", sweep_tables(records))] + sweep_plots(records, outdir)
