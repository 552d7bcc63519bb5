"""The report's pages: Markdown and self-contained HTML from the report dict.

The page is the verdict, then SECTIONS in order, each built by a function
``(rep) -> list of blocks or None`` (None: the section does not apply). A
block is ``("p", text)``, ``("table", header, rows)``, ``("plot", name)`` or
``("pre", text)``. To add a section (say, a what-if), append
``(id, title, builder)`` to SECTIONS; both renderers pick it up.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Callable

from ..kernel.config import POLICY_PRESETS
from ..runs.capture_replay import spread_row
from ..runs.workloads import NONMOVABLE_SHARES
from .reportruns import COMPARED, NARROW_PCT
from .verdict import FORMATS, classify, classify_metric, render_item

__all__ = ["SECTIONS", "ci_text", "render_html", "render_markdown"]

Block = tuple


def ci_text(ci: dict[str, Any], fmt: str = "pct") -> str:
    """``+12.3% [+10.1%, +14.5%]``: a mean and its 95% interval; ``-`` when unknown."""
    f = FORMATS[fmt]
    if ci["mean"] is None:
        return "-"
    if ci["half"] is None:
        return f"{f(ci['mean'])} (1 seed)"
    return f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


def _abs(ci: dict[str, Any], fmt: str = "num") -> str:
    f = FORMATS[fmt]
    if ci["mean"] is None:
        return "-"
    return f(ci["mean"]) if not ci["half"] else f"{f(ci['mean'])} ± {f(ci['half'])}"


def _chg(m: dict[str, Any]) -> str:
    # A compare_cells metric's change, or, from 0, its difference.
    if m["both_zero"]:
        return "0 in both"
    if m["from_zero"]:
        return f"from 0: {ci_text(m['diff'], 'num')} (single 0 in {m['from_zero']} seeds)"
    return ci_text(m["change"])


def _word(m: dict[str, Any]) -> str:
    if m.get("both_zero"):
        return "none (0 in both)"
    kind = classify_metric(m) if "from_zero" in m else classify(m)
    return {"none": "no difference", "up": "higher", "down": "lower", "unresolved": "not resolved"}[kind]


# ---- section builders ----

def _layout(rep: dict[str, Any]) -> list[Block]:
    a = rep["layout"]["answer"]
    m = a["mine"]
    rows = [[r["arch"], r["cacheline"], f"{r['members_old']} → {r['members_new']}", f"{r['size_old']} → {r['size_new']}",
             f"{r['cachelines_old']} → {r['cachelines_new']}"] for r in a["per_arch"]]
    return [("p", f"On this host's architecture ({a['arch']}): {m['summary']}."),
            ("table", ["arch", "L1 bytes", f"members bytes {a['old']} → {a['new']}", "sizeof",
                       "cachelines"], rows),
            ("p", "Default config per architecture (NUMA on 64-bit). Every version and config: appendix A.")]


def _workloads(rep: dict[str, Any]) -> list[Block]:
    rows = []
    for w in rep["workloads"]["table"]:
        mix = [f"{a['percent']:.3g}% {a['gfp']} order {a['order']}" for a in w["allocates"]]
        rows.append([w["name"], w["summary"], mix, w["frees"], f"{w['nonmovable_thp_percent']:.3g}%", w["source"]])
    return [("p", "Every workload runs one stream per CPU (stream k on CPU k, its own seed); after the working "
                  f"set's fill and a warm-up that counts nowhere, the measured ops follow. A vmstat tick "
                  f"(decay_pcp_high) runs every {rep['workloads']['vmstat_tick_ops']} ops per CPU. Both policies "
                  "of a seed run the same streams."),
            ("table", ["workload", "what", "allocates (share of allocations, gfp, order)", "frees",
                       "non-movable THP share", "where the mix comes from"], rows)]


def _contention(rep: dict[str, Any]) -> list[Block]:
    c = rep["contention"]
    rows = []
    for r in c["compare"]:
        rows.append([r["workload"], r["cpus"], _abs(r["zone_lock"]["single"]), _abs(r["zone_lock"]["split"]),
                     _chg(r["zone_lock"]), _chg(r["lock_wait"]), _chg(r["throughput"]),
                     f"{_abs(r['hit9']['single'], 'share')} → {_abs(r['hit9']['split'], 'share')}",
                     _chg(r["cachelines"]),
                     _word(r["throughput"])])
    return [("p", f"Two lists (split, {POLICY_PRESETS['split']}) against one (single, {POLICY_PRESETS['single']}, "
                  f"bf14ed81f571's parent), virtual time: {c['ops_per_cpu']} measured "
                  f"ops per CPU after {c['warmup']} of warm-up, {len(c['seeds'])} seeds per cell. A change is the "
                  "per-seed percent change split/single − 1, with the mean and 95% interval over seeds; a change "
                  "of 0 against 0 is 0. 'no difference': the interval includes 0 and is at most "
                  f"±{NARROW_PCT:g}% wide."),
            ("p", _by_construction(rep, {r["workload"] for r in c["compare"]})),
            ("table", ["workload", "CPUs", "zone->lock /1k ops, single", "split", "zone->lock change",
                       "lock wait change", "throughput change", "order-9 pcp hit rate single → split",
                       "pcp cachelines/op change", "throughput"], rows),
            ("plot", "ratio_vs_cpus.png")]


def _by_construction(rep: dict[str, Any], names: set[str]) -> str:
    # Which rows cannot differ: the split only sorts order-9 requests by migratetype.
    same = [w["name"] for w in rep["workloads"]["table"] if w["name"] in names and w["nonmovable_thp_percent"] == 0]
    if not same:
        return "Every workload here makes non-movable THP requests, so each row can differ."
    return (f"{', '.join(same)} make{'s' if len(same) == 1 else ''} no non-movable THP request: the split only "
            "sorts order-9 requests by migratetype, so both policies run the same pcp lists and these rows are "
            "0 by construction (a check, not a finding).")


def _nonmovable(rep: dict[str, Any]) -> list[Block]:
    nm = rep["nonmovable"]
    rows = [[f"{r['percent']}%", _abs(r["zone_lock"]["single"]), _abs(r["zone_lock"]["split"]),
             _chg(r["zone_lock"]), _chg(r["lock_wait"]), _chg(r["throughput"]),
             f"{_abs(r['hit9']['single'], 'share')} → {_abs(r['hit9']['split'], 'share')}",
             _word(r["throughput"])] for r in nm["rows"]]
    return [("p", f"Workload thp-nmP at {nm['cpus']} CPUs: P% of allocations are non-movable THPs "
                  "(GFP_KERNEL | __GFP_COMP, order 9), 80 − P% movable THPs, 20% movable order-0 pages; "
                  f"P in {', '.join(map(str, NONMOVABLE_SHARES))}. thp-nm0 is movable-only."),
            ("table", ["non-movable THP share", "zone->lock /1k ops, single", "split", "zone->lock change",
                       "lock wait change", "throughput change", "order-9 pcp hit rate single → split",
                       "throughput"], rows),
            ("plot", "ratio_vs_nonmovable.png")]


def _seedbug(rep: dict[str, Any]) -> list[Block]:
    sb = rep["seedbug"]["shares"]

    def share(x: dict[str, Any]) -> str:
        return f"{x['k']}/{x['n']} [{FORMATS['pct0'](x['lo'])}, {FORMATS['pct0'](x['hi'])}]"
    rows = [[f"{100 * r['cma_share']:g}%", r["policy"], share(r["livelock"]), share(r["cma_fail"])] for r in sb["rows"]]
    d = rep["seedbug"]["detail"]
    outs = d["outcomes"]
    keys = [("kernel", "preset"), ("pin_user_pages", "pin_status"), ("pin rounds", "pin_rounds"),
            ("migrations", "migrations"), ("CMA->CMA migrations", "cma_to_cma"), ("pinned in CMA", "pinned_in_cma"),
            ("unmovable blocks in CMA", "unmovable_in_cma"), ("CMA blocks to non-movable requests", "cma_to_nonmovable"),
            ("cma_alloc succeeded", "cma_alloc_ok"), ("cma_alloc candidates", "cma_candidates")]
    p = d["params"]
    return [("p", f"A VM starts on a machine of {sb['memory']} with the given share of it as CMA: its guest "
                  f"({sb['guest']}) is faulted in as THPs and pinned FOLL_LONGTERM, then a driver calls cma_alloc "
                  f"for the whole CMA area. Seeds {sb['seeds'][0]}–{sb['seeds'][-1]}; k/n seeds with the 95% "
                  "Wilson interval of the share."),
            ("table", ["CMA share of RAM", "policy", "pin_user_pages livelocks", "cma_alloc fails"], rows),
            ("p", f"One run in detail, at the report's machine: {p['memory_pages']} pages with {p['cma_pages']} "
                  f"of CMA, {p['cpus']} CPUs, a guest of {p['guest_thps']} THPs, seed {p['seed']}."),
            ("table", ["", *[o["policy"] for o in outs]], [[name, *[_cell(o[k]) for o in outs]] for name, k in keys])]


def _cell(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


_COST_MEANING = {"op": "an op's work outside zone->lock", "cacheline": "each pcp cacheline an op touches",
                 "lock": "taking and releasing an uncontended zone->lock", "page": "each page moved under zone->lock",
                 "remote": "each cacheline last written by another CPU",
                 "zone_lines": "zone cachelines that move with the lock",
                 "smt_cores": "physical cores (0: a core per CPU)", "smt_slowdown": "work factor with a busy sibling"}


def _costmodel(rep: dict[str, Any]) -> list[Block]:
    cm = rep["costmodel"]
    params = [[k, _cell(v), f"fitted to page_bench03: {cm['fitted'][k]}" if k in cm["fitted"] else "assumed",
               _COST_MEANING.get(k, "")] for k, v in cm["params"].items()]
    cal = cm["calibration"]
    calrows = [[k, f"{cal[k]['model']:.2f}×", f"{cal[k]['kernel']:.2f}×", f"{100 * cal[k]['error']:+.1f}%"]
               for k in ("order0_pcp", "zone_lock")]
    sens = [[w, r["param"], f"×{r['factor']:g} ({_cell(r['value'])})", ci_text(r["zone_lock"]), ci_text(r["lock_wait"]),
             ci_text(r["throughput"]), _word(r["throughput"])]
            for w, rows in cm["sensitivity"].items() for r in rows]
    exact = ", ".join(v[0] for v in COMPARED.values() if v[2] == "exact")
    model = ", ".join(v[0] for v in COMPARED.values() if v[2] != "exact")
    return [("p", f"Counted exactly by the emulated allocator: {exact}. From the virtual-time cost model: {model}. "
                  "The scheduler runs the CPU with the earliest virtual clock; an op costs its parameters below, and "
                  "an op that needs zone->lock while another CPU holds it waits."),
            ("table", ["parameter", "value (ns or count)", "origin", "what it prices"], params),
            ("p", "The fitted parameters were chosen so the model reproduces page_bench03's growth of the per-CPU "
                  "cost from 1 to 8 CPUs (4.6-rc1, lore 20160415144402.5fbe7a1e@redhat.com). The match below is "
                  "therefore by construction: a check that the fit holds, not evidence for the model."),
            ("table", ["path", "model 1 → 8 CPUs", "page_bench03", "difference"], calrows),
            ("p", f"Sensitivity at {cm['cpus']} CPUs: each parameter alone at ×0.5 and ×1.5; counts may move a "
                  "little because the interleaving of CPUs changes with the costs. The last rows scale instead the "
                  "workload's vmstat tick interval (how many ops run between two decay_pcp_high calls), an "
                  "assumption about the allocation rate rather than a cost."),
            ("table", ["workload", "parameter", "scaled", "zone->lock change", "lock wait change",
                       "throughput change", "throughput"], sens)]


def _convergence(rep: dict[str, Any]) -> list[Block]:
    cv = rep["convergence"]
    if not cv["rows"]:
        return [("p", f"Run length fixed by the user ({cv['skipped']}): {cv['chosen']} ops per CPU.")]
    rows = [[r["ops_per_cpu"], ci_text(r["zone_lock"]), ci_text(r["throughput"])] for r in cv["rows"]]
    return [("p", f"The split/single changes of {cv['workload']} at {cv['cpus']} CPUs against the measured ops per "
                  f"CPU, after {cv['warmup']} ops of warm-up, {len(cv['seeds'])} seeds each. The run length used "
                  f"everywhere is the shortest whose mean changes, like all longer ones', lie inside the longest "
                  f"run's 95% interval: {cv['chosen']} ops per CPU."
                  + ("" if cv["converged"] else " No shorter length agreed with the longest, so the changes are "
                     "not shown to have settled; the longest was used (--full tries longer runs).")),
            ("table", ["ops per CPU", "zone->lock change", "throughput change"], rows),
            ("plot", "convergence.png")]


def _fidelity(rep: dict[str, Any]) -> list[Block] | None:
    # The capture replayed like for like (pcpemu.runs.capture_replay.fidelity_on_capture).
    fid = rep.get("fidelity")
    if not fid:
        return None
    spread = fid.get("pin_spread")
    pins = ("" if spread is None else
            f" The last column is each emulated figure's range over replays with the count set at the kernel's first "
            f"drains moved by up to {fid['pin_pages']} pages: where a drain falls decides its size (free_count, the "
            "frees since the last allocation), and a page of count is more than the trace can show. A kernel "
            "figure outside that range is not explained by it.")
    return [("p", f"The capture {fid['capture']} (kernel {fid['kernel_release']}) replayed on preset {fid['preset']} "
                  f"({fid['policy']} policy) from the traced kernel's state: each figure as the kernel's kmem events "
                  "show it and as the emulator's do; the ratio is emulated / kernel ('-': 0 in the kernel). "
                  "How far these agree is how far the contention figures above can be trusted for this mix." + pins),
            ("table", ["CPU", "figure", "kernel", "emulated", "ratio",
                       *([] if spread is None else [f"emulated, pins ±{fid['pin_pages']}"])],
             _fidelity_rows(fid["comparison"], fid["figures"], spread)),
            *_fidelity_end_state(fid.get("end_state") or []),
            *_fidelity_end_free(fid.get("end_free") or []),
            *_fidelity_first_drains((fid.get("untraced") or {}).get("first_drains") or [], fid["policy"]),
            *_fidelity_pcp_takes((fid.get("untraced") or {}).get("pcp_takes"), fid["policy"]),
            *_fidelity_first_refills((fid.get("untraced") or {}).get("first_refills") or [], fid["policy"]),
            *_fidelity_alloc_factor_falls((fid.get("untraced") or {}).get("alloc_factor_falls") or [], fid["policy"]),
            *_fidelity_free_high((fid.get("untraced") or {}).get("free_high") or [], fid["policy"]),
            *_fidelity_reclaim(fid.get("drain_all", 0), fid.get("compaction_drains", 0),
                               (fid.get("untraced") or {}).get("kswapd")),
            *_fidelity_pcp_locked(fid.get("free_pcp_locked", 0)),
            ("p", "Notes: " + "; ".join(fid["notes"]) if fid["notes"] else "Notes: none.")]


def _fidelity_reclaim(drain_all: int, compaction_drains: int, kswapd: dict[str, Any] | None) -> list[Block]:
    # What memory pressure made the kernel do to the pcps, and how the replay followed it.
    said = []
    if drain_all:
        said.append(f"the kernel ran drain_all_pages {drain_all:,} times (a CPU drained every CPU's pcp lists: "
                    "direct reclaim, isolation); the replay ran it where each began")
    if compaction_drains:
        said.append(f"compaction emptied a CPU's pcp {compaction_drains:,} times (lru_add_drain_cpu_zone), and the "
                    "replay emptied the emulated one at the same points")
    if kswapd and kswapd["wakes"]:
        said.append(f"kswapd ran balance_pgdat {kswapd['wakes']:,} times, which holds ZONE_RECLAIM_ACTIVE (a free "
                    "then drains above 4 * batch); " + (f"the replay set it for the {kswapd['held']:,} runs "
                                                         "kswapd reclaimed in, from the wake to kswapd's last event "
                                                         "of the run (balance_pgdat's return has no tracepoint)"
                                                         if kswapd["replayed"] else "not replayed"))
    return [("p", "Under memory pressure: " + "; ".join(said) + ".")] if said else []


def _fidelity_pcp_locked(frees: int) -> list[Block]:
    # Frees that found the pcp locked, replayed to the buddy.
    if not frees:
        return []
    return [("p", f"{frees:,} frees came on a CPU whose task held pcp->lock, between a refill and the allocation "
                  "it served or inside the commits of a batched free (free_unref_folios): an interrupt's, so "
                  "free_frozen_pages' trylock failed and the page went to the buddy (free_one_page); the replay "
                  "freed them so, leaving the emulated pcp's count, free_count and alloc_factor as they were.")]


def _fidelity_rows(cmp: dict[str, Any], figures: list[str], spread: dict[str, Any] | None) -> list[list[str]]:
    # The totals, then each CPU: per figure the kernel's, the emulator's, their ratio and,
    # with a pin spread, the emulated range over it.
    rows = []
    for label, row, cpu in [("all", cmp["total"], None), *((f"cpu {r['cpu']}", r, r["cpu"]) for r in cmp["per_cpu"])]:
        rng = spread_row(spread, cpu)
        rows += [[label, f, _cell(row[f]["kernel"]), _cell(row[f]["emulated"]),
                  "-" if row[f]["ratio"] is None else f"{row[f]['ratio']:.3f}",
                  *([] if rng is None else [f"{_cell(rng[f]['low'])}-{_cell(rng[f]['high'])}"])]
                 for f in figures]
    return rows


def _fidelity_first_drains(rows: list[dict[str, Any]], policy: str) -> list[Block]:
    # The emulated count set where the kernel's first drain pins its count.
    cells = [f"{r['zone']} CPU {r['cpu']} {r['pages'][policy]:+,} (moved {r['moved'][policy]:+,}"
             + (f": {r['why'][policy]}" if r.get("why", {}).get(policy) else "") + "; set off by "
             f"{'a free' if r['set_off_by'] == 'free' else 'the vmstat worker'})"
             if policy in r["pages"] else
             f"{r['zone']} CPU {r['cpu']} none (the emulated zone was below high, where a free drains below high)"
             for r in rows if policy in r["pages"] or policy in r.get("zone_flagged", ())]
    return _per_pcp("Where the kernel's first drain on each pcp pins its count (set off by a free: count stood at "
                    "high; by the vmstat worker: at the decayed high plus the pages drained), the emulated count was "
                    "set to match, just before (later drains are the emulator's own): ", cells)


def _fidelity_first_refills(rows: list[dict[str, Any]], policy: str) -> list[Block]:
    # alloc_factor, which /proc does not print, set where the kernel's first refill shows it.
    cells = [f"{r['zone']} CPU {r['cpu']}: "
             + (f"{r['alloc_factor']}" if r["alloc_factor"] is not None else f"at least {r['at_least']}")
             + f" (the emulator's was {r['was'][policy]})"
             for r in rows if policy in r["was"]]
    return _per_pcp("pcp->alloc_factor, the doublings of the next order-0 refill, which /proc does not print, was "
                    "set where the kernel's first order-0 refill on each pcp shows it (batch << alloc_factor blocks; a "
                    "refill high - count capped shows only that batch << alloc_factor was above its blocks, and "
                    "raises a lower one to the least that allows): ", cells)


def _fidelity_alloc_factor_falls(rows: list[dict[str, Any]], policy: str) -> list[Block]:
    # alloc_factor set where a kernel's refill shows it fell with no event.
    mine = [r for r in rows if policy in r["was"]]
    if not mine:
        return []
    higher = sum(r["was"][policy] > r["alloc_factor"] for r in mine)
    return [("p", f"At {len(mine):,} of the kernel's order-0 refills its alloc_factor had fallen with no event "
                  "(a refill of batch << alloc_factor blocks below what the frees since the refill before leave; "
                  "only a free lowers it in the emulator's rules): the emulated one was set there, and was higher "
                  f"at {higher:,} of them.")]


def _fidelity_free_high(rows: list[dict[str, Any]], policy: str) -> list[Block]:
    # The free_count from which a free of order 1..3 drains the pcp at once, set where
    # the kernel's first such drain shows it.
    cells = [f"{r['zone']} CPU {r['cpu']}: {r['free_count'][policy]:,} against the rule's {r['rule'][policy]:,}"
             + ("" if r["set"][policy] else " (not set: below batch, or the rule drained there already)")
             for r in rows if policy in r["set"]]
    return _per_pcp("A free of order 1..3 after another drains the pcp at once (free_high) once the frees since the "
                    "last allocation (free_count) reach a threshold, batch + high_min / 2 by v6.16's rule; the kernel "
                    "drained so from a lower free_count, and the emulated free_count where its first such drain came "
                    "was taken as that pcp's threshold: ", cells)


def _per_pcp(intro: str, cells: list[str]) -> list[Block]:
    # A paragraph of what the replay set on each pcp; none when it set nothing.
    return [("p", intro + "; ".join(cells) + ".")] if cells else []


def _fidelity_pcp_takes(takes: dict[str, Any] | None, policy: str) -> list[Block]:
    # Pages a refill showed gone from a pcp list with no event, and pages an allocation
    # showed come onto one.
    if not takes:
        return []
    return _fidelity_pcp_gone(takes, policy) + _fidelity_pcp_came(takes, policy)


def _fidelity_pcp_came(takes: dict[str, Any], policy: str) -> list[Block]:
    # A report.json from before session 18 has no arrivals: nothing said of them.
    if not takes.get("arrivals"):
        return []
    return [("p", f"{takes['arrivals']:,} allocations took a pcp list the kernel's own events showed empty, of a "
                  "page no event had put on a pcp list (none before it, or the last one put it in the buddy, with "
                  "no refill between): pages came onto the list with no event (no kernel path that does so was "
                  "found). Before each, one of the untraced owner's blocks went on the emulated list: "
                  f"{takes['arrived'].get(policy, 0):,} pages.")]


def _fidelity_pcp_gone(takes: dict[str, Any], policy: str) -> list[Block]:
    if not takes["refills"]:
        return []
    # A report.json from before session 13 has no relisted_pages: nothing said of them.
    relisted = takes.get("relisted_pages")
    return [("p", f"At {takes['refills']:,} refills the kernel refilled a pcp list its own events still showed "
                  f"{takes['pages']:,} pages on in all (rmqueue_bulk refills only an empty list). "
                  + (f"{relisted:,} of them were freed from pageblocks whose type no event showed, and went to "
                     "another list: they moved to the Unmovable one. Allocations the kernel did not trace "
                     "(alloc_pages_bulk) had taken the rest; " if relisted is not None else
                     "Allocations the kernel did not trace (alloc_pages_bulk) had taken them; ")
                  + f"as many came off the emulated lists where they still were: {takes['taken'].get(policy, 0):,} "
                    "pages."
                  + (f" At {takes['fewer_than_none']:,} more the events showed fewer than none (a page they put on "
                     "another list); those only started the count again." if takes["fewer_than_none"] else ""))]


def _fidelity_end_state(rows: list[dict[str, Any]]) -> list[Block]:
    # Each pcp's count at the end: a drain comes when count reaches high, so pages that
    # came or went with no event shift the kernel's drains against the emulator's.
    rows = [r for r in rows if r["count"]["kernel"] or r["count"]["emulated"]]
    if not rows:
        return []
    cells = [[r["zone"], r["cpu"], _cell(r["count"]["kernel"]), _cell(r["count"]["emulated"]),
              _cell(r["count"].get("traced")),
              "-" if r["count"].get("traced") is None else f"{r['count']['kernel'] - r['count']['traced']:+,}"]
             for r in rows]
    return [("p", "pcp->count at the end: the kernel's (after-zoneinfo), the emulator's, and what before-zoneinfo "
                  "plus the kernel's own events lead to. The last column moved the kernel's lists with no event "
                  "(alloc_pages_bulk, or the count changing between the zoneinfo read and the trace); a drain "
                  "comes when count reaches high, so it shifts the kernel's drains against the emulator's."),
            ("table", ["zone", "CPU", "kernel", "emulated", "events alone", "with no event"], cells)]


def _fidelity_end_free(zones: list[dict[str, Any]]) -> list[Block]:
    # Each zone's free pages at the end: pages the kernel took or gave with no event
    # (compaction's migration targets, memory resized) show here.
    said = [f"{z['zone']} {z['emulated']:,} against the kernel's {z['kernel']:,}" for z in zones
            if z["kernel"] is not None]
    return [("p", "Free pages at the end, emulated against after-zoneinfo's: " + "; ".join(said) + ". Each "
                  "allocation came from the zone the kernel took it from; the rest moved with no event: "
                  "compaction's migration targets (a zone it ran in keeps more free pages than the kernel's), "
                  "or free blocks the starting state could not place (the notes say where).")] if said else []


def _appendix_layout(rep: dict[str, Any]) -> list[Block]:
    rows = [[r["version"], r["config"], r["nr_lists"], r["size"], r["cachelines"], r["thp_cachelines"]]
            for r in rep["layout"]["rows"]]
    return [("table", ["version", "config", "pcp lists", "sizeof", "cachelines",
                       "cachelines the THP lists add (vs the same config without THP)"], rows)]


def _appendix_cells(rep: dict[str, Any]) -> list[Block]:
    rows = [[r["workload"], r["cpus"], pol, _abs(r["zone_lock"][pol]), _abs(r["lock_wait"][pol]),
             _abs(r["throughput"][pol]), _abs(r["cachelines"][pol], "share")]
            for r in rep["contention"]["compare"] for pol in ("single", "split")]
    return [("p", "Means ± 95% interval half-widths over seeds; every run is in report.json (contention.cells)."),
            ("table", ["workload", "CPUs", "policy", "zone->lock /1k ops", "wait ns/op", "ops/s (virtual)",
                       "pcp cachelines/op"], rows)]


def _appendix_microbench(rep: dict[str, Any]) -> list[Block]:
    mb = rep["timing"]["microbench"]
    return [("p", f"Wall clock on this host ({mb['host']}, Python {mb['python']}), best of 3; not a function of "
                  "the seed."),
            ("table", ["path", "policy", "ns per pair, best of 3", "worst of 3", "pcp cachelines/op"],
             [[r["path"], r["policy"], f"{r['ns_per_pair']:.1f}", f"{r['ns_per_pair_worst']:.1f}",
               f"{r['pcp_cachelines_per_op']:.3f}"] for r in mb["rows"]])]


def _appendix_proc(rep: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    for o in rep["seedbug"]["detail"]["outcomes"]:
        out.append(("pre", f"# {o['policy']}: /proc/buddyinfo at boot\n" + o["proc"]["buddyinfo_before"]
                    + "\n# /proc/buddyinfo after\n" + o["proc"]["buddyinfo_after"]
                    + "\n# /proc/pagetypeinfo after\n" + o["proc"]["pagetypeinfo_after"]))
    return out


def _reproduce(rep: dict[str, Any]) -> list[Block]:
    t = rep["timing"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in t["stages"].items())
    return [("pre", rep["command"]),
            ("p", f"This report took {t['elapsed_s']:.1f} s ({stages}). Mode {rep['options']['mode']}; "
                  "--quick is a first look, --full runs more CPUs, seeds and run lengths.")]


#: (id, title, builder) in page order, after the verdict.
SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], list[Block] | None]]] = [
    ("layout", "struct per_cpu_pages: does the second THP list cost a cacheline?", _layout),
    ("workloads", "Workloads", _workloads),
    ("contention", "Contention against CPUs: two lists vs one", _contention),
    ("nonmovable", "Against the share of non-movable THP requests", _nonmovable),
    ("seedbug", "The seed bug by policy and CMA share", _seedbug),
    ("costmodel", "What is counted, what is modelled: the cost model", _costmodel),
    ("convergence", "Run length: steady state", _convergence),
    ("fidelity", "Fidelity on your capture", _fidelity),
    ("appendix-layout", "Appendix A: struct per_cpu_pages, every version and config", _appendix_layout),
    ("appendix-cells", "Appendix B: contention cells", _appendix_cells),
    ("appendix-microbench", "Appendix C: fast-path microbenchmarks (wall clock)", _appendix_microbench),
    ("appendix-proc", "Appendix D: /proc snapshots of the detailed seed-bug run", _appendix_proc),
    ("reproduce", "Reproduce", _reproduce),
]


def _built(rep: dict[str, Any]) -> list[tuple[str, str, list[Block]]]:
    out = []
    for ident, title, build in SECTIONS:
        blocks = build(rep)
        if blocks is not None:
            out.append((ident, title, blocks))
    return out


def _title(rep: dict[str, Any]) -> str:
    o = rep["options"]
    return (f"pcpemu {rep['pcpemu_version']}: one THP pcp list ({POLICY_PRESETS['single']}) vs two "
            f"({POLICY_PRESETS['split']}); {o['memory']} machine, "
            f"{o['cma']} CMA, seeds {o['seed']}–{o['seed'] + o['seeds'] - 1}, mode {o['mode']}")


def render_markdown(rep: dict[str, Any], plots: list[dict[str, Any]]) -> str:
    """report.md: the verdict as a list, then every section; plots as linked images with captions."""
    by_name = {p["file"]: p for p in plots}
    lines = [f"# {_title(rep)}", "", "## Verdict", ""]
    for item in rep["verdict"]:
        lines.append(f"- {render_item(item)} ([details](#{item['section']}))")
    lines.append("")
    for ident, title, blocks in _built(rep):
        lines += [f'<a id="{ident}"></a>', "", f"## {title}", ""]
        for b in blocks:
            if b[0] == "p":
                lines += [b[1], ""]
            elif b[0] == "table":
                lines += ["| " + " | ".join(map(str, b[1])) + " |", "|" + "---|" * len(b[1])]
                lines += ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in b[2]] + [""]
            elif b[0] == "pre":
                lines += ["```", b[1].rstrip(), "```", ""]
            elif b[0] == "plot" and b[1] in by_name:
                p = by_name[b[1]]
                lines += [f"![{p['alt']}]({p['file']})", "", f"*{p['caption']}*", ""]
    return "\n".join(lines)


def _md_cell(v: Any) -> str:
    # A list is one cell of several lines; "|" would end the cell.
    return ("; ".join(map(str, v)) if isinstance(v, list) else str(v)).replace("|", "/")


def _html_cell(v: Any) -> str:
    if isinstance(v, list):
        return "<td class='t'>" + "<br>".join(html.escape(str(x)) for x in v) + "</td>"
    text = str(v)
    numeric = text[:1].isdigit() or text[:2] in ("+0", "-0") or text[:1] in "+-±" and text[1:2].isdigit()
    return ("<td>" if numeric else "<td class='t'>") + html.escape(text) + "</td>"


_CSS = ("body{font-family:sans-serif;max-width:1240px;margin:auto;padding:0 12px;font-size:15px}"
        "h1{font-size:17px;margin:8px 0}#verdict{background:#f3f6fa;border:1px solid #9bb;padding:4px 10px}"
        "#verdict h2{font-size:16px;margin:4px 0}#verdict ul{margin:4px 0;padding-left:18px}"
        "#verdict li{margin:3px 0;line-height:1.3}.n{font-weight:bold}"
        "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}"
        "td.t{text-align:left;overflow-wrap:anywhere;min-width:4em}th{vertical-align:bottom}"
        "th{background:#eee}pre{background:#f4f4f4;padding:6px;overflow:auto}img{max-width:100%}"
        "figure{margin:8px 0}figcaption{font-style:italic;font-size:14px}")


def render_html(rep: dict[str, Any], plots: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    """A self-contained page: styles inline, plots as data URIs, no network; the
    verdict first, each number a span naming its JSON path."""
    esc = html.escape
    by_name = {p["file"]: p for p in plots}

    def num(text: str, n: dict[str, Any]) -> str:
        return f"<span class='n' data-path='{esc(n['path'])}' data-fmt='{n['fmt']}'>{esc(text)}</span>"

    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>pcpemu report {esc(rep['pcpemu_version'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(_title(rep))}</h1>", "<div id='verdict'><h2>Verdict</h2><ul>"]
    for item in rep["verdict"]:
        parts.append(f"<li data-id='{item['id']}'>{render_item(item, num, esc)} "
                     f"<a href='#{item['section']}'>details</a></li>")
    parts.append("</ul></div>")
    for ident, title, blocks in _built(rep):
        parts.append(f"<section id='{ident}'><h2>{esc(title)}</h2>")
        for b in blocks:
            if b[0] == "p":
                parts.append(f"<p>{esc(b[1])}</p>")
            elif b[0] == "table":
                parts.append("<table><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in b[1]) + "</tr>")
                parts += ["<tr>" + "".join(_html_cell(v) for v in r) + "</tr>" for r in b[2]]
                parts.append("</table>")
            elif b[0] == "pre":
                parts.append(f"<pre>{esc(b[1])}</pre>")
            elif b[0] == "plot" and b[1] in by_name:
                p = by_name[b[1]]
                data = base64.b64encode(images[p["file"]]).decode()
                parts.append(f"<figure><img alt='{esc(p['alt'])}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{esc(p['caption'])}</figcaption></figure>")
        parts.append("</section>")
    # Marks the page once every plot has decoded, and where the verdict ends, for the rendering test.
    parts.append("<script>window.addEventListener('load',function(){var i=document.images,n=0;"
                 "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
                 "var b=document.body;b.setAttribute('data-rendered',n+'/'+i.length);"
                 "b.setAttribute('data-verdict-bottom',Math.ceil(document.getElementById('verdict')"
                 ".getBoundingClientRect().bottom));b.setAttribute('data-viewport',window.innerWidth+'x'+"
                 "window.innerHeight);});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
