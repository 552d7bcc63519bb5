"""The comparison report of one THP list against two: HTML, Markdown, JSON and PNG; and a sweep's tables and plots.

Gathers, for one config and seed: the struct per_cpu_pages layout table, the
seed bug's reproduction by policy, the contention sweep (virtual time) with
its split/single comparison, the model's calibration against page_bench03,
the fast-path microbenchmarks, and /proc snapshots. Every number is computed
once into a JSON-able dict; the Markdown and HTML are rendered from that dict
with one number formatter, so the three always agree.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable

from .. import __version__
from ..runs import repro, smp, workloads
from ..kernel.config import POLICY_PRESETS, KernelConfig
from ..errors import ConfigError
from ..kernel.layout import layout_table
from ..machine import Machine
from .outdir import replace_dir, write_text_atomic
from .sweep import numeric_fields

__all__ = ["MODES", "ReportOptions", "build_report", "fmt", "render_html", "render_markdown", "sweep_plots",
           "sweep_tables", "write_report", "write_sweep_report"]

#: Sweep sizes per mode: CPU counts, workloads, ops per CPU, microbench pairs.
MODES = {
    "quick": {"cpus": [1, 4, 16], "workloads": ["thp", "mixed"], "ops_per_cpu": 400, "pairs": 100_000,
              "policies": ["single", "split"]},
    "default": {"cpus": [1, 2, 4, 8, 16, 64], "workloads": ["thp", "mixed", "order0", "net"],
                "ops_per_cpu": 1000, "pairs": 500_000, "policies": ["single", "split", "per-type"]},
    "full": {"cpus": [1, 2, 4, 8, 16, 32, 64, 128, 256], "workloads": ["thp", "mixed", "order0", "net"],
             "ops_per_cpu": 4000, "pairs": 2_000_000, "policies": ["single", "split", "per-type", "none"]},
}
SCHEMA = 1


class ReportOptions(dict):
    """The report's parameters (JSON-able): mode, policies, cpus, workloads,
    memory, cma, seed, ops_per_cpu, pairs. Checked before any work."""

    @classmethod
    def make(cls, mode: str = "default", policies: list[str] | None = None, cpus: list[int] | None = None,
             workloads: list[str] | None = None, memory: str = "8G", cma: str = "4G", seed: int = 1,
             ops_per_cpu: int | None = None, pairs: int | None = None) -> "ReportOptions":
        if mode not in MODES:
            raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        m = MODES[mode]
        opts = cls(mode=mode, policies=list(policies or m["policies"]), cpus=list(cpus or m["cpus"]),
                   workloads=list(workloads or m["workloads"]), memory=memory, cma=cma, seed=seed,
                   ops_per_cpu=ops_per_cpu or m["ops_per_cpu"], pairs=pairs or m["pairs"])
        for p in opts["policies"]:
            if p not in smp.POLICIES:
                raise ConfigError(f"policies: {p!r} is not one of {', '.join(smp.POLICIES)}")
        if "single" not in opts["policies"] or "split" not in opts["policies"]:
            raise ConfigError("policies: the report compares 'single' with 'split'; include both")
        for w in opts["workloads"]:
            if w not in smp.WORKLOADS:
                raise ConfigError(f"workloads: {w!r} is not one of {', '.join(smp.WORKLOADS)}")
        for n in opts["cpus"]:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
                raise ConfigError(f"cpus: {n!r} is outside 1..1024")
        if opts["ops_per_cpu"] < 2 or opts["pairs"] < 1:
            raise ConfigError(f"ops_per_cpu ({opts['ops_per_cpu']}) must be at least 2, pairs ({opts['pairs']}) 1")
        cfg = KernelConfig(memory=memory, cma=cma, cpus=max(opts["cpus"]))
        if not cfg.cma:
            raise ConfigError("cma: the seed bug needs a CMA area; give --cma")
        return opts


def fmt(x: Any) -> str:
    """The one number format of the report's text forms."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x == float("inf"):
            return "inf"
        return f"{x:.3g}" if abs(x) >= 1000 or abs(x) < 0.01 and x else f"{x:.3f}"
    return str(x)


# ---- the sections' computations ----

def _layout_section() -> dict[str, Any]:
    rows = layout_table()
    return {"rows": rows}


def _repro_section(opts: ReportOptions) -> dict[str, Any]:
    # The seed bug under every policy the scenario knows; Android's always, as
    # it shows where the split alone is not enough.
    policies = tuple(p for p in repro.POLICIES if p in opts["policies"] or p == "android")
    # The guest is an eighth of RAM, at most 1 GiB, as the scenario's default.
    memory = KernelConfig(memory=opts["memory"]).memory
    guest = min(memory // 8, 1 << 18) // 512 * 512
    res = repro.repro(policies, memory=opts["memory"], cma=opts["cma"], seed=opts["seed"], guest=guest)
    out = res.as_dict()
    for o in out["outcomes"]:
        o.pop("wall_seconds")       # wall time is not a function of the seed
    return out


def _contention_section(opts: ReportOptions, progress: Callable[[int, str], None]) -> dict[str, Any]:
    cells = smp.sweep(opts["policies"], opts["cpus"], opts["workloads"], opts["ops_per_cpu"], opts["seed"],
                      progress=lambda done, _total, label: progress(2 + done, label))
    keep = ("workload", "policy", "cpus", "ops_per_sec", "zone_lock_per_1k_ops", "pages_per_acquisition",
            "pcp_cachelines_per_op")
    table = [{k: c[k] for k in keep} | {"lock_wait_ns_per_op": c["lock_wait_ns"]["per_op"],
                                        "lock_wait_p99_ns": c["lock_wait_ns"]["p99"],
                                        "remote_cachelines": c["remote_cachelines"]["zone"] + c["remote_cachelines"]["pcp"]}
             for c in cells]
    return {"cells": table, "compare": smp.compare(cells)}


def _microbench_section(opts: ReportOptions) -> dict[str, Any]:
    # Wall-clock fast-path cost on this host: best of 3 runs of n pairs.
    rows = []
    for label, order, gfp in (("order-0 pcp alloc+free", 0, "GFP_KERNEL"),
                              ("order-9 THP pcp alloc+free", 9, "GFP_TRANSHUGE_LIGHT | __GFP_COMP"),
                              ("order-4 zone->lock alloc+free", 4, "GFP_KERNEL")):
        for policy in ("single", "split"):
            m = Machine(KernelConfig.preset(POLICY_PRESETS[policy], memory="1G", cpus=1), seed=opts["seed"])
            ops = workloads.alloc_free_pairs(opts["pairs"], order, gfp)
            best = min(_timed(m.run, ops) for _ in range(3))
            st = m.stats()
            rows.append({"path": label, "policy": policy, "ns_per_pair": 1e9 * best / opts["pairs"],
                         "pcp_cachelines_per_op": st["pcp_cachelines_per_op"]})
    return {"rows": rows}


def _timed(f: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def build_report(opts: ReportOptions, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Every number of the report, as one JSON-able dict.

    Wall-clock figures (the microbenchmarks and the elapsed time) sit under the
    ``timing`` key; everything else is a function of the options and seed.

    :param progress: called as progress(done, total, label) after each step.
    """
    total = 4 + len(opts["policies"]) * len(opts["cpus"]) * len(opts["workloads"])

    def step(done: int, label: str) -> None:
        if progress:
            progress(done, total, label)

    t0 = time.perf_counter()
    rep: dict[str, Any] = {"pcpemu_schema": SCHEMA, "pcpemu_version": __version__, "options": dict(opts),
                           "command": command_line(opts)}
    rep["layout"] = _layout_section()
    step(1, "layout")
    rep["repro"] = _repro_section(opts)
    step(2, "seed bug reproduction")
    rep["contention"] = _contention_section(opts, step)
    rep["calibration"] = smp.calibration_check(ops_per_cpu=max(200, opts["ops_per_cpu"] // 2))
    step(total - 1, "calibration")
    rep["timing"] = {"microbench": _microbench_section(opts), "host": platform.platform(),
                     "python": sys.version.split()[0], "elapsed_s": 0.0}
    rep["timing"]["elapsed_s"] = time.perf_counter() - t0
    step(total, "microbenchmarks")
    return rep


def command_line(opts: ReportOptions) -> str:
    """The pcpemu command that reproduces a report."""
    parts = ["pcpemu", "report"]
    if opts["mode"] != "default":
        parts.append(f"--{opts['mode']}")
    parts += ["--policies", *opts["policies"], "--cpus", ",".join(map(str, opts["cpus"])),
              "--workloads", ",".join(opts["workloads"]), "--memory", opts["memory"], "--cma", opts["cma"],
              "--seed", str(opts["seed"]), "--ops-per-cpu", str(opts["ops_per_cpu"])]
    return " ".join(parts)


# ---- plots ----

_PLOTS = (("zone_lock_per_1k_ops", "zone->lock acquisitions per 1000 ops"),
          ("lock_wait_ns_per_op", "zone->lock wait, ns per op"),
          ("ops_per_sec", "throughput, ops/s of virtual time"),
          ("pcp_cachelines_per_op", "pcp cachelines touched per op"))


def render_plots(rep: dict[str, Any], outdir: str) -> list[str]:
    """One PNG per contention metric: a panel per workload, a line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = rep["contention"]["cells"]
    wls = rep["options"]["workloads"]
    names = []
    for key, title in _PLOTS:
        fig, axes = plt.subplots(1, len(wls), figsize=(4 * len(wls), 3.2), squeeze=False)
        for ax, w in zip(axes[0], wls):
            for p, style in zip(rep["options"]["policies"], ("o-", "s--", "^:", "x-.")):
                pts = sorted((c["cpus"], c[key]) for c in cells if c["workload"] == w and c["policy"] == p)
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=p)
            ax.set_xscale("log", base=2)
            ax.set_title(w)
            ax.set_xlabel("CPUs")
        axes[0][0].set_ylabel(title)
        axes[0][-1].legend()
        fig.tight_layout()
        name = f"{key}.png"
        fig.savefig(os.path.join(outdir, name), dpi=80, metadata={"Software": None})
        plt.close(fig)
        names.append(name)
    return names


# ---- text renderings ----

def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows])


def _sections(rep: dict[str, Any]) -> list[tuple[str, str | None, list[str], list[list[Any]], str | None]]:
    # (title, intro, table header, table rows, preformatted text) per section.
    out = []
    lay = rep["layout"]["rows"]
    out.append(("struct per_cpu_pages layout", "Size and cachelines per version and config; THP lists change "
                "the count where 'THP lists cost' is not 0.",
                ["version", "config", "lists", "size", "cachelines", "THP lists cost"],
                [[r["version"], r["config"], r["nr_lists"], r["size"], r["cachelines"], r["thp_cachelines"]]
                 for r in lay], None))
    rp = rep["repro"]
    outs = rp["outcomes"]
    rows = [("kernel", "preset"), ("pin_user_pages", "pin_status"), ("pin rounds", "pin_rounds"),
            ("migrations", "migrations"), ("CMA->CMA migrations", "cma_to_cma"),
            ("pinned in CMA", "pinned_in_cma"), ("unmovable blocks in CMA", "unmovable_in_cma"),
            ("CMA blocks to non-movable requests", "cma_to_nonmovable"), ("cma_alloc succeeded", "cma_alloc_ok"),
            ("cma_alloc candidates", "cma_candidates")]
    p = rp["params"]
    out.append(("The seed bug: VM start with FOLL_LONGTERM pinning, then cma_alloc",
                f"{p['memory_pages']} pages with {p['cma_pages']} of CMA, {p['cpus']} CPUs; a guest of "
                f"{p['guest_thps']} THPs is pinned, then a driver asks cma_alloc for {p['cma_request_pages']} pages.",
                ["", *[o["policy"] for o in outs]], [[name, *[o[key] for o in outs]] for name, key in rows], None))
    cmp_rows = rep["contention"]["compare"]
    out.append(("Contention: split / single", "Ratios of the split (v6.10) to the single list (v6.10-rc5, "
                "bf14ed81f571's parent), "
                "virtual time.", ["workload", "CPUs", "zone->lock", "lock wait", "cachelines/op", "throughput",
                                  "verdict"],
                [[r["workload"], r["cpus"], r["zone_lock"], r["lock_wait"], r["cachelines"], r["throughput"],
                  r["verdict"]] for r in cmp_rows], None))
    cells = rep["contention"]["cells"]
    out.append(("Contention cells", None, ["workload", "policy", "CPUs", "ops/s", "zone->lock/1k ops",
                                           "pages/acquisition", "wait ns/op", "wait p99 ns", "cachelines/op",
                                           "remote lines"],
                [[c["workload"], c["policy"], c["cpus"], c["ops_per_sec"], c["zone_lock_per_1k_ops"],
                  c["pages_per_acquisition"], c["lock_wait_ns_per_op"], c["lock_wait_p99_ns"],
                  c["pcp_cachelines_per_op"], c["remote_cachelines"]] for c in cells], None))
    cal = rep["calibration"]
    out.append(("Calibration against page_bench03 (1 -> 8 CPUs)", None,
                ["path", "model growth", "kernel growth", "error"],
                [[k, cal[k]["model"], cal[k]["kernel"], cal[k]["error"]] for k in ("order0_pcp", "zone_lock")],
                None))
    mb = rep["timing"]["microbench"]["rows"]
    out.append(("Fast-path microbenchmarks (this host, wall clock)", f"Host: {rep['timing']['host']}.",
                ["path", "policy", "ns per pair", "pcp cachelines/op"],
                [[r["path"], r["policy"], r["ns_per_pair"], r["pcp_cachelines_per_op"]] for r in mb], None))
    for o in outs:
        out.append((f"/proc snapshots, {o['policy']}: boot, and after pinning and cma_alloc", None, [], [],
                    "# /proc/buddyinfo at boot\n" + o["proc"]["buddyinfo_before"]
                    + "\n# /proc/buddyinfo after\n" + o["proc"]["buddyinfo_after"]
                    + "\n# /proc/pagetypeinfo after\n" + o["proc"]["pagetypeinfo_after"]))
    out.append(("Reproduce", None, [], [], rep["command"]))
    return out


def render_markdown(rep: dict[str, Any]) -> str:
    o = rep["options"]
    lines = [f"# pcpemu report: one THP list vs two (pcpemu {rep['pcpemu_version']})", "",
             f"Machine {o['memory']} with {o['cma']} CMA; seed {o['seed']}; mode {o['mode']}.", ""]
    for title, intro, header, rows, pre in _sections(rep):
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        if header:
            lines += _md_table(header, rows) + [""]
        if pre:
            lines += ["```", pre.rstrip(), "```", ""]
    return "\n".join(lines)


def render_html(rep: dict[str, Any], images: dict[str, bytes]) -> str:
    """A self-contained page: styles inline, plots as data URIs, no network."""
    esc = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>pcpemu report {esc(rep['pcpemu_version'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}pre{background:#f4f4f4;padding:6px;"
             "overflow:auto}img{max-width:100%}</style></head><body>",
             f"<h1>pcpemu report: one THP list vs two</h1><p>Machine {esc(rep['options']['memory'])} with "
             f"{esc(rep['options']['cma'])} CMA; seed {rep['options']['seed']}; mode {esc(rep['options']['mode'])}.</p>"]
    for title, intro, header, rows, pre in _sections(rep):
        parts.append(f"<h2>{esc(title)}</h2>")
        if intro:
            parts.append(f"<p>{esc(intro)}</p>")
        if header:
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>" for r in rows]
            parts.append("</table>")
        if pre:
            parts.append(f"<pre>{esc(pre)}</pre>")
        if title.startswith("Contention: split"):
            for name, data in images.items():
                parts.append(f"<p><img alt='{esc(name)}' src='data:image/png;base64,"
                             f"{base64.b64encode(data).decode()}'></p>")
    # Marks the page once every plot has decoded, for the rendering test.
    parts.append("<script>window.addEventListener('load',function(){var i=document.images,n=0;"
                 "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
                 "document.body.setAttribute('data-rendered',n+'/'+i.length);});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(outdir: str, rep: dict[str, Any]) -> list[str]:
    """Write report.json, report.md, report.html and the PNGs into outdir.

    The directory is written whole and swapped into place in one step
    (pcpemu.tools.outdir.replace_dir), so an interrupted run leaves no
    half-written report; an existing path pcpemu did not write is refused.
    """
    def fill(tmp: str) -> None:
        names = render_plots(rep, tmp)
        images = {}
        for n in names:
            with open(os.path.join(tmp, n), "rb") as f:
                images[n] = f.read()
        for name, text in (("report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n"),
                           ("report.md", render_markdown(rep)), ("report.html", render_html(rep, images))):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)

    replace_dir(outdir, fill)
    return sorted(os.path.join(outdir, n) for n in os.listdir(outdir))


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

    :param records: as pcpemu.tools.sweepstore.load_records returns them.
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
    return [write_text_atomic(os.path.join(outdir, "sweep.md"), sweep_tables(records))] + sweep_plots(records, outdir)
