"""The what-if lab's report sections (issue 18): ``pcpemu report --what-if mthp``
and ``--what-if pcp-buddy``.

Each what-if is one JSON-able dict (every number a function of the mode and
seed) rendered to report.json, report.md and report.html in one directory,
with the text forms drawn from the dict by one number format.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, Callable

from .. import __version__
from ..errors import ConfigError
from ..kernel import layout as L
from ..runs import whatif
from ..stats import mean_ci
from .outdir import replace_dir

__all__ = ["MODES", "WHAT_IFS", "build_what_if", "render_markdown", "render_html", "sections", "write_what_if"]

SCHEMA = 1

#: Sizes per mode: CPU counts, seeds, ops per CPU, mTHP shares.
MODES = {
    "quick": {"cpus": [1, 4, 16], "seeds": [0, 1], "ops_per_cpu": 300, "shares": [0.1, 0.5], "verdict_cpus": 16},
    "default": {"cpus": [1, 4, 16, 64], "seeds": [0, 1, 2], "ops_per_cpu": 600, "shares": [0.05, 0.25, 0.5],
                "verdict_cpus": 16},
    "full": {"cpus": [1, 4, 16, 64, 128, 256], "seeds": [0, 1, 2, 3, 4], "ops_per_cpu": 1000,
             "shares": [0.05, 0.1, 0.25, 0.5, 1.0], "verdict_cpus": 64},
}

Section = tuple[str, "str | None", list[str], list[list[Any]], "str | None"]


def fmt(x: Any) -> str:
    """The what-if reports' one number format: three significant figures."""
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) >= 1000 or 0 < abs(x) < 0.01 else f"{x:.3f}"
    return str(x)


def _iv(d: dict[str, float]) -> str:
    # "mean [lo, hi]" of an interval (stats.mean_ci).
    if d["lo"] is None:
        return f"{fmt(d['mean'])} (one seed: no interval)"
    return f"{fmt(d['mean'])} [{fmt(d['lo'])}, {fmt(d['hi'])}]"


def _above(d: dict[str, float], x: float) -> bool:
    # The whole interval above x; never with one seed (no interval).
    return d["lo"] is not None and d["lo"] > x


def _below(d: dict[str, float], x: float) -> bool:
    return d["hi"] is not None and d["hi"] < x


# ---- mTHP (Mel Gorman's question) ----

def _mthp_layout() -> dict[str, Any]:
    fits = [L.mthp_fit("v6.10", arch, cl, policy) for arch, cl in L.WHATIF_ARCHES for policy in L.MTHP_POLICIES]
    four = [L.mthp_fit("v6.10", arch, cl, policy, lines=4) for arch, cl in L.WHATIF_ARCHES
            for policy in L.MTHP_POLICIES]
    return {"fit": fits, "fit_4_lines": four, "rows": L.mthp_layout_rows("v6.10")}


def _order_cost(rows: list[dict[str, Any]], orders: list[int], policy: str) -> dict[str, int]:
    # Extra cachelines per arch of giving ``orders`` lists under ``policy``.
    return {f"{r['arch']}/{r['cacheline']}": r["extra_cachelines"] for r in rows
            if r["policy"] == policy and r["orders"] == orders}


def _mthp_verdict(rep: dict[str, Any]) -> dict[str, Any]:
    rows = rep["layout"]["rows"]
    worth, detail = [], []
    for o in L.MTHP_ORDERS:
        cells = [c for c in rep["study"]["per_order"] if c["order"] == o]
        # Worth a list when, for every mobility, the whole throughput interval
        # is above 1 and the whole zone->lock interval below 1.
        ok = all(_above(c["ops_per_sec"]["ratio"], 1.0) and _below(c["zone_lock"]["ratio"], 1.0) for c in cells)
        if ok:
            worth.append(o)
        detail.append({"order": o, "worth_a_list": ok, "cost_split": _order_cost(rows, [o], "split"),
                       "cost_single": _order_cost(rows, [o], "single")})
    return {"worth": worth, "orders": detail, "cost_all_worth_split": _order_cost(rows, worth, "split"),
            "cost_all_worth_single": _order_cost(rows, worth, "single")}


def build_mthp(mode: str, seed: int, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    m = MODES[mode]
    seeds = [seed + s for s in m["seeds"]]
    rep: dict[str, Any] = {"layout": _mthp_layout()}
    rep["study"] = whatif.mthp_study(cpus=m["cpus"], seeds=seeds, ops_per_cpu=m["ops_per_cpu"], shares=m["shares"],
                                     verdict_cpus=m["verdict_cpus"], progress=progress)
    rep["verdict"] = _mthp_verdict(rep)
    return rep


def _mthp_sections(rep: dict[str, Any]) -> list[Section]:
    out: list[Section] = []
    lay = rep["layout"]
    out.append(("mTHP lists in struct per_cpu_pages (v6.10)",
                "How many mTHP orders' lists fit in the lines the v6.10 struct already has on each arch, and the "
                "extra list counts at which a further cacheline starts (each list is one struct list_head, so "
                "only the count matters; 'orders' names the lowest that fit).",
                ["arch", "L1", "policy", "v6.10 lines", "bytes free", "lists that fit", "orders that fit",
                 "lists starting a line", "orders fitting 4 lines"],
                [[f["arch"], f["cacheline"], f["policy"], f["base_cachelines"], f["room_bytes"], f["fit_lists"],
                  ",".join(map(str, f["orders"])) or "none", ",".join(map(str, f["line_steps"])) or "none",
                  ",".join(map(str, g["orders"])) or "none"]
                 for f, g in zip(lay["fit"], lay["fit_4_lines"])], None))
    # Every set of the same size costs the same: one row per arch and policy,
    # a column per number of mTHP orders with lists (the JSON has every set).
    by: dict[tuple[str, int, str], dict[int, int]] = {}
    for r in lay["rows"]:
        by.setdefault((r["arch"], r["cacheline"], r["policy"]), {})[len(r["orders"])] = r["cachelines"]
    out.append(("Cachelines by the number of mTHP orders with lists (v6.10)",
                "Each of the 32 sets of orders 4..8 under each policy was laid out; sets of one size cost the same.",
                ["arch", "L1", "policy", *[f"{k} orders" for k in range(len(L.MTHP_ORDERS) + 1)]],
                [[arch, cl, policy, *[lines[k] for k in sorted(lines)]] for (arch, cl, policy), lines in by.items()],
                None))
    st = rep["study"]
    p = st["params"]
    out.append((f"mTHP orders alone: with / without pcp lists ({p['verdict_cpus']} CPUs, {p['share']:.0%} mTHP)",
                f"Ratios with lists / without, mean [95% interval] over {len(p['seeds'])} seeds, virtual time. "
                "The same seeds draw the same sizes for both mobilities; on a fresh node each mobility's blocks "
                "come from pageblocks of its own type (unmovable ones claimed whole by the fallback), so equal "
                "rows mean the mobility does not change the locking, only the lists do.",
                ["order", "mobility", "zone->lock", "pages/acquisition", "lock wait", "throughput",
                 "cachelines/op"],
                [[c["order"], c["kind"], _iv(c["zone_lock"]["ratio"]), _iv(c["pages_per_acquisition"]["ratio"]),
                  _iv(c["lock_wait_ns_per_op"]["ratio"]), _iv(c["ops_per_sec"]["ratio"]),
                  _iv(c["pcp_cachelines_per_op"]["ratio"])] for c in st["per_order"]], None))
    for key, label in (("vs_cpus", "CPUs"), ("vs_share", "mTHP share")):
        field = "cpus" if key == "vs_cpus" else "share"
        out.append((f"Mixed sizes 4..8 against {label}: without lists -> with",
                    "zone->lock acquisitions, lock wait (ns/op) and throughput (M ops/s of virtual time), "
                    "mean [95% interval].",
                    [label, "zone->lock without", "zone->lock with", "wait without", "wait with",
                     "Mops/s without", "Mops/s with"],
                    [[c[field], _iv(c["zone_lock"]["without"]), _iv(c["zone_lock"]["with"]),
                      _iv(c["lock_wait_ns_per_op"]["without"]), _iv(c["lock_wait_ns_per_op"]["with"]),
                      _iv(_scaled(c["ops_per_sec"]["without"])), _iv(_scaled(c["ops_per_sec"]["with"]))]
                     for c in st[key]], None))
    v = rep["verdict"]
    lines = []
    for d in v["orders"]:
        cells = [c for c in st["per_order"] if c["order"] == d["order"]]
        figs = "; ".join(f"{c['kind']}: zone->lock x{_iv(c['zone_lock']['ratio'])}, throughput "
                         f"x{_iv(c['ops_per_sec']['ratio'])}, pcp cachelines/op "
                         f"x{_iv(c['pcp_cachelines_per_op']['ratio'])}" for c in cells)
        cost = ", ".join(f"{k} +{n}" for k, n in d["cost_split"].items())
        lines.append(f"order {d['order']}: {'worth a list' if d['worth_a_list'] else 'not shown worth a list'} "
                     f"({figs}); split lists cost lines: {cost}")
    total = ", ".join(f"{k} +{n}" for k, n in v["cost_all_worth_split"].items())
    lines.append(f"orders worth a list: {','.join(map(str, v['worth'])) or 'none'}; all of them as split lists "
                 f"cost: {total}; as one list each: "
                 + ", ".join(f"{k} +{n}" for k, n in v["cost_all_worth_single"].items()))
    out.append(("Verdict: which mTHP orders are worth a pcp list, and what it costs", None, [], [],
                "\n".join(lines)))
    return out


def _scaled(d: dict[str, float]) -> dict[str, float]:
    # An interval in millions (the counts stay counts; an unknown bound stays unknown).
    return {k: (v / 1e6 if k != "n" and v is not None else v) for k, v in d.items()}


# ---- the pcp buddy RFC (Johannes Weiner, April 2026) ----

#: Sizes per mode of the pcp-buddy what-if.
BUDDY_MODES = {
    "quick": {"cpus": [4, 16, 64], "seeds": [0, 1], "scale": 1, "frag_steps": 3, "frag_ops": 10_000,
              "repro_memory": "2G", "repro_cma": "1G"},
    "default": {"cpus": [4, 16, 64, 256], "seeds": [0, 1, 2], "scale": 1, "frag_steps": 6, "frag_ops": 20_000,
                "repro_memory": "8G", "repro_cma": "4G"},
    "full": {"cpus": [4, 16, 64, 128, 256], "seeds": [0, 1, 2, 3, 4], "scale": 2, "frag_steps": 10,
             "frag_ops": 40_000, "repro_memory": "8G", "repro_cma": "4G"},
}


def build_pcp_buddy(mode: str, seed: int, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    m = BUDDY_MODES[mode]
    seeds = [seed + s for s in m["seeds"]]
    rep: dict[str, Any] = {"readings": list(whatif.PCP_BUDDY_READINGS), "patterns": dict(whatif.PATTERNS),
                           "preset": whatif.BUDDY_PRESET}
    # v6.10 and the newest struct pcpemu knows (the RFC's base is newer than both).
    rep["layout"] = L.owned_blocks_rows(tuple(dict.fromkeys(("v6.10", L.NEWEST_VERSION))))
    rep["contention"] = whatif.pcp_buddy_study(cpus=m["cpus"], seeds=seeds, scale=m["scale"], progress=progress)
    rep["fragmentation"] = whatif.frag_study(seeds=seeds, steps=m["frag_steps"], ops_per_step=m["frag_ops"],
                                             progress=progress)
    rep["repro"] = whatif.repro_study(memory=m["repro_memory"], cma=m["repro_cma"], seeds=seeds,
                                      progress=progress)
    rep["verdict"] = _buddy_verdict(rep)
    return rep


def _buddy_verdict(rep: dict[str, Any]) -> list[str]:
    out = []
    cells = rep["contention"]["cells"]
    top = max(c["cpus"] for c in cells)
    for c in cells:
        if c["cpus"] != top:
            continue
        priced = "" if c["page_ns"] else " with no cost per page moved under the lock"
        z, t = c["zone_lock"]["ratio"], c["ops_per_sec"]["ratio"]
        word = ("fewer" if _below(z, 1) else "more" if _above(z, 1) else "no clear change in")
        out.append(f"{c['pattern']} at {top} CPUs, pcp->high {'auto' if not c['high_fraction'] else '1/' + str(c['high_fraction'])}"
                   f"{priced}: {word} zone->lock acquisitions (x{_iv(z)}), throughput x{_iv(t)}, lock wait "
                   f"x{_iv(c['lock_wait_ns_per_op']['ratio'])}")
    fr = rep["fragmentation"]
    last_c, last_b = fr["classic"][-1], fr["pcp_buddy"][-1]
    out.append(f"fragmentation after {last_c['ops']} ops: free pageblocks {_iv(last_c['free_pageblocks'])} classic, "
               f"{_iv(last_b['free_pageblocks'])} pcp_buddy; mixed pageblocks {_iv(last_c['mixed_pageblocks'])} vs "
               f"{_iv(last_b['mixed_pageblocks'])}")
    out.append(f"failed allocations by then (the mix's kernel THPs cannot use CMA): "
               f"{_iv(last_c['alloc_failed'])} classic, {_iv(last_b['alloc_failed'])} pcp_buddy")
    out.append(f"CMA (Frank van der Linden's point): CMA area in use {_iv(last_c['cma_utilisation'])} classic, "
               f"{_iv(last_b['cma_utilisation'])} pcp_buddy; share of movable pages allocated from CMA "
               f"{_iv(last_c['movable_from_cma'])} vs {_iv(last_b['movable_from_cma'])}")
    for policy in sorted({r["policy"] for r in rep["repro"]}):
        for pol in ("classic", "pcp_buddy"):
            rows = [r for r in rep["repro"] if r["policy"] == policy and r["pcp_policy"] == pol]
            out.append(f"seed bug, {policy} THP list, {pol}: livelock in {sum(r['livelock'] for r in rows)}/"
                       f"{len(rows)} seeds, guest THPs in CMA at fault {_iv(mean_ci([r['guest_thps_in_cma'] for r in rows]))}, "
                       f"cma_alloc succeeded in {sum(r['cma_alloc_ok'] for r in rows)}/{len(rows)}")
    return out


def _buddy_sections(rep: dict[str, Any]) -> list[Section]:
    out: list[Section] = []
    out.append(("How pcpemu reads the RFC", "The RFC's description leaves these choices; pcpemu takes the "
                "simplest reading of each (the core's _pcp_buddy.pxi).", [], [],
                "\n".join(f"- {r}" for r in rep["readings"])))
    out.append(("owned_blocks in struct per_cpu_pages",
                "The RFC's one list head and the per-migratetype variant from review, against the v6.10 struct "
                "and the newest one pcpemu models.",
                ["version", "arch", "L1", "owned_blocks", "heads", "lists at", "members", "size", "cachelines", "extra lines"],
                [[r["version"], r["arch"], r["cacheline"], r["owned_blocks"], r["heads"], r["lists_offset"], r["members_end"],
                  r["size"], r["cachelines"], r["extra_cachelines"]] for r in rep["layout"]], None))
    out.append(("Patterns", None, ["pattern", "what runs"], [[k, v] for k, v in rep["patterns"].items()], None))
    p = rep["contention"]["params"]
    out.append(("Contention: pcp_buddy / classic",
                f"Per-seed ratios pcp_buddy/classic on the {rep['preset']} preset, mean [95% interval] over "
                f"{len(p['seeds'])} seeds, virtual time; "
                "pcp->high auto-tuned (fraction 0) or at vm.percpu_pagelist_high_fraction=8; 'page ns' is the "
                "cost model's price of a page moved under zone->lock (the last rows: none, a bound on what that "
                "charge decides, as pcp_buddy moves whole pageblocks under the lock).",
                ["pattern", "pcp->high fraction", "CPUs", "page ns", "zone->lock", "pages/acquisition", "hold/op", "wait/op",
                 "pcp hit rate", "throughput"],
                [[c["pattern"], c["high_fraction"], c["cpus"], c["page_ns"], _iv(c["zone_lock"]["ratio"]),
                  _iv(c["pages_per_acquisition"]["ratio"]), _iv(c["lock_hold_ns_per_op"]["ratio"]),
                  _iv(c["lock_wait_ns_per_op"]["ratio"]), _iv(c["pcp_hit"]["ratio"]), _iv(c["ops_per_sec"]["ratio"])]
                 for c in rep["contention"]["cells"]], None))
    out.append(("Contention: each side",
                "zone->lock acquisitions and throughput (M ops/s of virtual time), mean [95% interval]; what "
                "pcp_buddy did: frees routed to the owner, whole pageblocks claimed, merges at drain, owned_blocks "
                "entries phase 0 scanned and how many of them had another migratetype (the scans per-migratetype "
                "lists, Rik van Riel's suggestion, would save).",
                ["pattern", "fraction", "CPUs", "page ns", "zone->lock classic", "zone->lock pcp_buddy", "Mops/s classic",
                 "Mops/s pcp_buddy", "routed frees", "blocks claimed", "merges", "owned_blocks scanned",
                 "of another type", "phase-0 pages"],
                [[c["pattern"], c["high_fraction"], c["cpus"], c["page_ns"], _iv(c["zone_lock"]["classic"]),
                  _iv(c["zone_lock"]["pcp_buddy"]), _iv(_scaled(c["ops_per_sec"]["classic"])),
                  _iv(_scaled(c["ops_per_sec"]["pcp_buddy"])), fmt(c["pcpb"]["PCPB_ROUTED_FREE"]["mean"]),
                  fmt(c["pcpb"]["PCPB_PHASE1_BLOCKS"]["mean"]), fmt(c["pcpb"]["PCPB_MERGES"]["mean"]),
                  fmt(c["pcpb"]["PCPB_OWNED_SCANNED"]["mean"]), fmt(c["pcpb"]["PCPB_OWNED_SKIPPED"]["mean"]),
                  fmt(c["pcpb"]["PCPB_PHASE0_PAGES"]["mean"])]
                 for c in rep["contention"]["cells"]], None))
    fr = rep["fragmentation"]
    out.append(("Fragmentation and CMA over time",
                "The general mix on 8 CPUs (each op on a random CPU) over a 2 GiB node with 512 MiB of CMA; "
                "mean [95% interval] over seeds after the fill and each step.",
                ["ops", "free blocks classic", "free blocks pcp_buddy", "mixed classic", "mixed pcp_buddy",
                 "CMA in use classic", "CMA in use pcp_buddy", "movable from CMA classic",
                 "movable from CMA pcp_buddy", "failed allocs classic", "failed allocs pcp_buddy"],
                [[a["ops"], _iv(a["free_pageblocks"]), _iv(b["free_pageblocks"]), _iv(a["mixed_pageblocks"]),
                  _iv(b["mixed_pageblocks"]), _iv(a["cma_utilisation"]), _iv(b["cma_utilisation"]),
                  _iv(a["movable_from_cma"]), _iv(b["movable_from_cma"]), _iv(a["alloc_failed"]),
                  _iv(b["alloc_failed"])]
                 for a, b in zip(fr["classic"], fr["pcp_buddy"])], None))
    out.append(("The seed bug's scenario under pcp_buddy", None,
                ["THP list", "pcp policy", "seed", "livelock", "pin rounds", "migrations", "guest THPs in CMA",
                 "pinned in CMA", "CMA to non-movable", "cma_alloc ok"],
                [[r["policy"], r["pcp_policy"], r["seed"], r["livelock"], r["pin_rounds"], r["migrations"],
                  r["guest_thps_in_cma"], r["pinned_in_cma"], r["cma_to_nonmovable"], r["cma_alloc_ok"]]
                 for r in rep["repro"]], None))
    out.append(("Verdict", None, [], [], "\n".join(rep["verdict"])))
    return out


# ---- the what-ifs ----

#: name -> (title, builder, sections)
WHAT_IFS: dict[str, tuple[str, Callable[..., dict[str, Any]], Callable[[dict[str, Any]], list[Section]]]] = {
    "mthp": ("mTHP on the pcp lists (Mel Gorman's question)", build_mthp, _mthp_sections),
    "pcp-buddy": ("the pcp buddy RFC (Johannes Weiner, linux-mm, April 2026)", build_pcp_buddy, _buddy_sections),
}


def build_what_if(name: str, mode: str = "default", seed: int = 1,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every number of one what-if, as one JSON-able dict.

    :raises ConfigError: for an unknown what-if or mode.
    """
    if name not in WHAT_IFS:
        raise ConfigError(f"what-if: {name!r} is not one of {', '.join(WHAT_IFS)}")
    if mode not in MODES or mode not in BUDDY_MODES:
        raise ConfigError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    rep = WHAT_IFS[name][1](mode, seed, progress)
    rep.update(pcpemu_schema=SCHEMA, pcpemu_version=__version__, what_if=name, mode=mode, seed=seed,
               command=command_line(name, mode, seed))
    return rep


def command_line(name: str, mode: str, seed: int) -> str:
    """The one command that reproduces a what-if report."""
    return " ".join(["pcpemu", "report", "--what-if", name] + ([f"--{mode}"] if mode != "default" else [])
                    + ["--seed", str(seed)])


def sections(rep: dict[str, Any]) -> list[Section]:
    """(title, intro, table header, rows, preformatted text) per section."""
    return WHAT_IFS[rep["what_if"]][2](rep) + [("Reproduce", None, [], [], rep["command"])]


def render_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# pcpemu what-if: {WHAT_IFS[rep['what_if']][0]} (pcpemu {rep['pcpemu_version']})", "",
             f"Mode {rep['mode']}, seed {rep['seed']}.", ""]
    for title, intro, header, rows, pre in sections(rep):
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        if header:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows] + [""]
        if pre:
            lines += ["```", pre.rstrip(), "```", ""]
    return "\n".join(lines)


def render_html(rep: dict[str, Any]) -> str:
    esc = html.escape
    title = f"pcpemu what-if: {WHAT_IFS[rep['what_if']][0]}"
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}pre{background:#f4f4f4;padding:6px;"
             "overflow:auto;white-space:pre-wrap}</style></head><body>",
             f"<h1>{esc(title)}</h1><p>Mode {esc(rep['mode'])}, seed {rep['seed']}.</p>"]
    for stitle, intro, header, rows, pre in sections(rep):
        parts.append(f"<h2>{esc(stitle)}</h2>")
        if intro:
            parts.append(f"<p>{esc(intro)}</p>")
        if header:
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>" for r in rows]
            parts.append("</table>")
        if pre:
            parts.append(f"<pre>{esc(pre)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_what_if(outdir: str, rep: dict[str, Any]) -> list[str]:
    """Write report.json, report.md and report.html into outdir, swapped into
    place whole (pcpemu.tools.outdir.replace_dir), as the main report is."""
    def fill(tmp: str) -> None:
        for name, text in (("report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n"),
                           ("report.md", render_markdown(rep)), ("report.html", render_html(rep))):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)

    replace_dir(outdir, fill)
    return sorted(os.path.join(outdir, n) for n in os.listdir(outdir))
