"""The report's plots: split/single changes with 95% bands, every panel labelled.

Rules every plot follows: a label with units on both axes of every panel and
a legend on every panel; series that are equal (means and intervals) are
drawn once and labelled as identical; the y-axis always shows 0 and at least
+-MIN_SPAN %, so noise does not look like a slope; x ticks only where there
is data. Each plot comes with alt text and a caption.
"""

from __future__ import annotations

import os
from typing import Any

from ..kernel.config import POLICY_PRESETS

__all__ = ["MIN_SPAN", "merge_identical", "render_plots"]

#: The y-axis of a percent-change panel spans at least +-MIN_SPAN.
MIN_SPAN = 10.0
#: Line styles, so series that cross stay apart in grey print too.
_STYLES = ("o-", "s--", "^-.", "D:", "v-", "x--", "P-.")


def _series_key(points: list[tuple[float, dict[str, Any]]]) -> tuple:
    return tuple((x, *(None if c[k] is None else round(c[k], 6) for k in ("mean", "lo", "hi"))) for x, c in points)


def merge_identical(series: dict[str, list[tuple[float, dict[str, Any]]]]) -> list[tuple[str, list]]:
    # Series with the same points become one, labelled with every name.
    groups: dict[tuple, list[str]] = {}
    pts: dict[tuple, list] = {}
    for name, points in series.items():
        k = _series_key(points)
        groups.setdefault(k, []).append(name)
        pts[k] = points
    out = []
    for k, names in groups.items():
        label = names[0] if len(names) == 1 else ", ".join(names) + " (identical)"
        out.append((label, pts[k]))
    return out


def plot_mean_ci(ax: Any, points: list[tuple[float, dict[str, Any]]], style: str,
                 label: str) -> tuple[list[float], list[float]]:
    """Draw the means of stats.mean_ci cells as a line and their 95% intervals as a
    band; a point of one seed (no interval) gets no band. Returns the y extent drawn
    (per point: lo or mean, hi or mean)."""
    xs = [x for x, _ in points]
    line, = ax.plot(xs, [c["mean"] for _, c in points], style, label=label)
    known = [(x, c) for x, c in points if c["lo"] is not None]
    if known:
        ax.fill_between([x for x, _ in known], [c["lo"] for _, c in known], [c["hi"] for _, c in known],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    return ([c["mean"] if c["lo"] is None else c["lo"] for _, c in points],
            [c["mean"] if c["hi"] is None else c["hi"] for _, c in points])


def _change_panel(ax: Any, series: dict[str, list[tuple[float, dict[str, Any]]]], title: str, xlabel: str) -> list[str]:
    merged = []
    lo_all, hi_all = [0.0], [0.0]
    drawn = 0
    for (label, points), style in zip(merge_identical(series), _STYLES):
        points = [(x, c) for x, c in points if c["mean"] is not None]
        if not points:
            continue
        drawn += 1
        los, his = plot_mean_ci(ax, points, style, label)
        lo_all += los
        hi_all += his
        if "identical" in label:
            merged.append(label)
    ax.axhline(0, color="black", linewidth=0.8)
    lo, hi = min(lo_all), max(hi_all)
    ax.set_ylim(min(lo * 1.1, -MIN_SPAN), max(hi * 1.1, MIN_SPAN))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("split vs single, % change (95% band)")
    if drawn:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no percent change: 0 under single", transform=ax.transAxes, ha="center")
    return merged


def _figure(ncols: int) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * ncols, 3.6), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Any, outdir: str, name: str) -> None:
    fig.savefig(os.path.join(outdir, name), dpi=80, metadata={"Software": None})


def _vs_cpus(rep: dict[str, Any], outdir: str) -> dict[str, Any]:
    rows = rep["contention"]["compare"]
    cpus = sorted({r["cpus"] for r in rows})
    fig, axes = _figure(3)
    merged: list[str] = []
    for ax, (key, title) in zip(axes, (("zone_lock", "zone->lock acquisitions per op"),
                                       ("lock_wait", "zone->lock wait per op"),
                                       ("throughput", "throughput (ops/s, virtual time)"))):
        series = {w: [(r["cpus"], r[key]["change"]) for r in rows if r["workload"] == w]
                  for w in dict.fromkeys(r["workload"] for r in rows)}
        merged += _change_panel(ax, series, title, "CPUs (log scale)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(cpus, [str(c) for c in cpus])
        ax.minorticks_off()
    _save(fig, outdir, "ratio_vs_cpus.png")
    c = rep["contention"]
    note = f" Drawn once: {'; '.join(dict.fromkeys(merged))}." if merged else ""
    gaps = sorted({f"{r['workload']} at {r['cpus']}" for r in rows for k in ("zone_lock", "lock_wait", "throughput")
                   if r[k]["from_zero"]})
    if gaps:
        note += (f" No point where single is 0 and split is not (a change from 0 has no percent; the table gives "
                 f"the difference): {', '.join(gaps)}.")
    return {"file": "ratio_vs_cpus.png", "section": "contention",
            "alt": (f"Three line plots against CPUs ({cpus[0]} to {cpus[-1]}): the percent change, two THP lists vs "
                    "one, of zone->lock acquisitions, zone->lock wait and throughput, one line per workload with "
                    "a shaded 95% band."),
            "caption": (f"Two lists vs one against CPUs: mean per-seed change over {len(c['seeds'])} seeds with its "
                        f"95% interval, {c['ops_per_cpu']} ops per CPU after {c['warmup']} of warm-up. The y-axes "
                        f"include 0 and span at least ±{MIN_SPAN:g}%; where both policies are 0 (no zone->lock "
                        f"wait at 1 CPU), the change is drawn as 0.{note}")}


def _vs_nonmovable(rep: dict[str, Any], outdir: str) -> dict[str, Any]:
    nm = rep["nonmovable"]
    rows = nm["rows"]
    xs = list(range(len(rows)))
    labels = [f"{r['percent']}%" for r in rows]
    fig, axes = _figure(3)
    for ax, (key, title) in zip(axes[:2], (("zone_lock", "zone->lock acquisitions per op"),
                                           ("throughput", "throughput (ops/s, virtual time)"))):
        _change_panel(ax, {f"{nm['cpus']} CPUs": [(x, r[key]["change"]) for x, r in zip(xs, rows)]}, title,
                      "non-movable THP share of allocations")
        ax.set_xticks(xs, labels)
    ax = axes[2]
    for pol, style in (("single", "o-"), ("split", "s--")):
        pts = [(x, r["hit9"][pol]) for x, r in zip(xs, rows) if r["hit9"][pol]["mean"] is not None]
        plot_mean_ci(ax, pts, style, f"{pol} ({POLICY_PRESETS[pol]}, {'one list' if pol == 'single' else 'two lists'})")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(xs, labels)
    ax.set_title("order-9 pcp hit rate", fontsize=10)
    ax.set_xlabel("non-movable THP share of allocations")
    ax.set_ylabel("hits / order-9 allocations (95% band)")
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, outdir, "ratio_vs_nonmovable.png")
    return {"file": "ratio_vs_nonmovable.png", "section": "nonmovable",
            "alt": (f"Three plots against the non-movable THP share ({', '.join(labels)}) at {nm['cpus']} CPUs: the "
                    "percent change, two lists vs one, of zone->lock acquisitions and of throughput with 95% "
                    "bands, and the order-9 pcp hit rate of each policy on a 0 to 1 axis."),
            "caption": (f"Against the share of non-movable THP requests at {nm['cpus']} CPUs (x positions are "
                        "categories, not to scale). The hit-rate axis runs from 0 to 1.")}


def _convergence(rep: dict[str, Any], outdir: str) -> dict[str, Any] | None:
    cv = rep["convergence"]
    if not cv["rows"]:
        return None
    xs = [r["ops_per_cpu"] for r in cv["rows"]]
    fig, axes = _figure(2)
    for ax, (key, title) in zip(axes, (("zone_lock", "zone->lock acquisitions per op"),
                                       ("throughput", "throughput (ops/s, virtual time)"))):
        _change_panel(ax, {f"{cv['workload']}, {cv['cpus']} CPUs": [(r["ops_per_cpu"], r[key]) for r in cv["rows"]]},
                      title, "measured ops per CPU (log scale)")
        ax.axvline(cv["chosen"], color="gray", linestyle=":", label=f"length used: {cv['chosen']}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.legend(fontsize=7, loc="best")
    _save(fig, outdir, "convergence.png")
    return {"file": "convergence.png", "section": "convergence",
            "alt": (f"Two plots of the percent change, two lists vs one, of zone->lock acquisitions and throughput "
                    f"for {cv['workload']} at {cv['cpus']} CPUs against the measured ops per CPU ({xs[0]} to "
                    f"{xs[-1]}), with 95% bands and a dotted line at the length used, {cv['chosen']}."),
            "caption": (f"Convergence: the changes settle as runs lengthen (after {cv['warmup']} ops of warm-up, "
                        f"{len(cv['seeds'])} seeds). The dotted line marks the run length used.")}


def render_plots(rep: dict[str, Any], outdir: str) -> list[dict[str, Any]]:
    """Write the report's PNGs into outdir; return ``{"file", "section", "alt", "caption"}`` per plot."""
    import matplotlib

    matplotlib.use("Agg")
    out = [_vs_cpus(rep, outdir), _vs_nonmovable(rep, outdir), _convergence(rep, outdir)]
    return [p for p in out if p]
