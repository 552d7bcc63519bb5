"""A sweep's report (``pcpemu report --from-sweep FILE``): sweep.md, sweep.json and sweep.png.

The same standards as the main report: every metric is a mean over seeds with
its 95% interval (pcpemu.stats.mean_ci) in the tables, the JSON and the
plots; each panel has labelled axes with units and a legend; lines that
coincide are drawn once and labelled as identical; y-axes include 0; the plot
has a caption and alt text.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any

from .outdir import write_text_atomic
from .reportplots import _STYLES, merge_identical, plot_mean_ci
from ..stats import mean_ci
from .sweep import numeric_fields

__all__ = ["SWEEP_AVERAGED", "UNITS", "sweep_plots", "sweep_summary", "sweep_tables", "write_sweep_report"]

#: Sweep parameters that tables and plots average over instead of showing.
SWEEP_AVERAGED = ("seed",)

#: Units of the result fields the measurement kinds report (pcpemu.tools.sweepkinds).
UNITS = {"ops_per_sec": "ops/s, virtual time", "zone_lock_per_1k_ops": "per 1000 ops",
         "pages_per_acquisition": "pages", "pcp_cachelines_per_op": "cachelines per op",
         "lock_wait_ns_per_op": "ns per op", "lock_wait_p99_ns": "ns", "lock_hold_ns_per_op": "ns per op",
         "remote_cachelines": "cachelines", "pcp_hit_rate": "share of pcp-order allocations", "wall_s": "s, wall clock",
         "ZONE_LOCK": "acquisitions", "ZONE_LOCK_PAGES": "pages", "PCP_REFILL": "refills", "PCP_DRAIN": "drains",
         "CMA_TO_NONMOVABLE": "pageblocks", "ALLOC_FAILED": "allocations", "livelock": "share of runs",
         "cma_alloc_ok": "share of runs", "pin_rounds": "rounds", "migrations": "pages"}


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


def _ci(recs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    return mean_ci(r["result"][metric] for r in recs if r["status"] == "ok" and metric in r["result"])


def _ci_text(ci: dict[str, Any]) -> str:
    if ci["mean"] is None:
        return "-"
    if ci["half"] is None:
        return f"{ci['mean']:.4g} (1 run)"
    return f"{ci['mean']:.4g} [{ci['lo']:.4g}, {ci['hi']:.4g}]"


def _label(metric: str) -> str:
    return f"{metric} ({UNITS.get(metric, 'as recorded')})"


def sweep_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON-able: the fixed and swept parameters, and per combination of the
    swept ones (seeds averaged) each metric's mean and 95% interval."""
    swept = _swept(records)
    keys = [k for k in swept if k not in SWEEP_AVERAGED]
    metrics = numeric_fields([r for r in records if r["status"] == "ok"])
    rows = []
    for values, recs in _groups(records, keys).items():
        rows.append({"params": dict(zip(keys, values)), "runs": len(recs),
                     "failed": sum(r["status"] != "ok" for r in recs),
                     "metrics": {m: _ci(recs, m) for m in metrics}})
    fixed = {k: v for k, v in (records[0]["params"].items() if records else ()) if k not in swept}
    return {"runs": len(records), "failed": sum(r["status"] != "ok" for r in records), "fixed": fixed,
            "swept": keys, "averaged": [k for k in swept if k in SWEEP_AVERAGED], "metrics": metrics,
            "units": {m: UNITS.get(m) for m in metrics}, "rows": rows}


def sweep_tables(records: list[dict[str, Any]], plot: dict[str, str] | None = None) -> str:
    """sweep.md: the fixed parameters, a row per combination of the swept ones
    (mean [95% interval] over SWEEP_AVERAGED), the plot with its caption, and the failed runs.

    :param records: as pcpemu.tools.sweepstore.load_records returns them.
    """
    if not records:
        return "# pcpemu sweep\n\nNo runs.\n"
    s = sweep_summary(records)
    failed = [r for r in records if r["status"] != "ok"]
    out = [f"# pcpemu sweep: {s['runs']} runs, {s['failed']} failed", "",
           "Fixed: " + (", ".join(f"{k}={v}" for k, v in s["fixed"].items()) or "nothing"), "",
           f"Each cell: the mean over {', '.join(s['averaged']) or 'repeated runs'} and its 95% interval "
           "(Student's t over runs); '(1 run)': no interval.", "",
           "| " + " | ".join(s["swept"] + ["runs", "failed"] + [_label(m) for m in s["metrics"]]) + " |",
           "|---" * (len(s["swept"]) + 2 + len(s["metrics"])) + "|"]
    for row in s["rows"]:
        cells = [str(row["params"][k]) for k in s["swept"]] + [str(row["runs"]), str(row["failed"])]
        out.append("| " + " | ".join(cells + [_ci_text(row["metrics"][m]) for m in s["metrics"]]) + " |")
    if plot:
        out += ["", f"![{plot['alt']}]({plot['file']})", "", f"*{plot['caption']}*"]
    if failed:
        swept = _swept(records)
        out += ["", "## Failed runs", "", "| key | " + " | ".join(swept) + " | error |", "|---" * (len(swept) + 2) + "|"]
        out += [f"| {r['key']} | " + " | ".join(str(_param(r, k)) for k in swept)
                + f" | {str(r['error']).replace('|', '/')} |" for r in failed]
    return "\n".join(out) + "\n"


def _x_axis(records: list[dict[str, Any]], keys: list[str]) -> str | None:
    numeric = [k for k in keys if all(_sort_key(_param(r, k))[0] == 0 for r in records)]
    return "cpus" if "cpus" in numeric else (numeric[0] if numeric else None)


def sweep_plots(records: list[dict[str, Any]], outdir: str) -> dict[str, str] | None:
    """``sweep.png``: each numeric result against the first numeric swept parameter
    (``cpus`` if swept), a line with its 95% band per combination of the others.

    :return: ``{"file", "alt", "caption"}``; None without matplotlib or a numeric swept parameter.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    ok = [r for r in records if r["status"] == "ok"]
    keys = [k for k in _swept(ok) if k not in SWEEP_AVERAGED]
    x = _x_axis(ok, keys)
    metrics = numeric_fields(ok)
    if x is None or not metrics:
        return None
    lines = [k for k in keys if k != x]
    cols = min(3, len(metrics))
    fig = Figure(figsize=(5 * cols, 3.8 * math.ceil(len(metrics) / cols)), layout="constrained")
    axes = fig.subplots(math.ceil(len(metrics) / cols), cols, squeeze=False).ravel()
    xs_all = sorted({_param(r, x) for r in ok})
    merged: list[str] = []
    for ax, metric in zip(axes, metrics):
        series = {", ".join(f"{k}={v}" for k, v in zip(lines, label)) or metric:
                  [(v[0], _ci(rs, metric)) for v, rs in _groups(recs, [x]).items()]
                  for label, recs in _groups(ok, lines).items()}
        lo_all, hi_all = [0.0], [0.0]
        for (label, points), style in zip(merge_identical(series), itertools.cycle(_STYLES)):
            points = [(px, c) for px, c in points if c["mean"] is not None]
            if not points:
                continue
            los, his = plot_mean_ci(ax, points, style, label)
            lo_all += los
            hi_all += his
            if label.endswith("(identical)"):
                merged.append(label)
        # 0 stays on the axis: a small relative change must look small.
        lo, hi = min(lo_all), max(hi_all)
        ax.set_ylim(lo * 1.05 if lo < 0 else 0, hi * 1.05 if hi > 0 else 1)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(x + (" (log scale)" if x == "cpus" else ""))
        ax.set_ylabel(_label(metric))
        if x == "cpus":
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs_all, [str(v) for v in xs_all])
            ax.minorticks_off()
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.savefig(os.path.join(outdir, "sweep.png"), dpi=80, metadata={"Software": None})
    note = f" Drawn once: {'; '.join(dict.fromkeys(merged))}." if merged else ""
    return {"file": "sweep.png",
            "alt": (f"{len(metrics)} line plots, one per result ({', '.join(metrics)}), against {x}; one line per "
                    f"combination of {', '.join(lines) or 'nothing else'}, each with a shaded 95% band."),
            "caption": (f"Each result against {x}: mean over {', '.join(SWEEP_AVERAGED)} with its 95% interval. "
                        f"y-axes include 0.{note}")}


def write_sweep_report(outdir: str, records: list[dict[str, Any]]) -> list[str]:
    """Write sweep.md, sweep.json (sweep_summary) and, with matplotlib, sweep.png into outdir."""
    os.makedirs(outdir, exist_ok=True)
    plot = sweep_plots(records, outdir)
    out = [write_text_atomic(os.path.join(outdir, "sweep.md"), sweep_tables(records, plot)),
           write_text_atomic(os.path.join(outdir, "sweep.json"),
                             json.dumps(sweep_summary(records), indent=2, sort_keys=True) + "\n")]
    return out + ([os.path.join(outdir, plot["file"])] if plot else [])
