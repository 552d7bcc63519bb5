"""The report's verdict: a few sentences that answer its three questions, each
number a pointer into the report's JSON.

A verdict item is ``{"id", "section", "text", "numbers"}``: ``text`` holds
``{0}``, ``{1}``... where its numbers go, and each number is ``{"path",
"value", "fmt"}``, ``path`` being the dotted JSON path the value was read from
(list items by index) and ``fmt`` a key of FORMATS. The renderers put
``FORMATS[fmt](value)`` in place, so every number on the page can be traced.

The rule for a split/single change (per-seed percent change, 95% interval):
"no difference" only when the interval includes 0 and is narrow (at most
NARROW_PCT each side); a difference when the interval excludes 0; otherwise
"not resolved" with the interval.
"""

from __future__ import annotations

from typing import Any, Callable

from .reportruns import NARROW_PCT

__all__ = ["FORMATS", "build_verdict", "classify", "classify_metric", "lookup", "render_item"]


def _pct(x: float) -> str:
    return "+0.0%" if x == 0 else f"{x:+.1f}%"


#: The number formats of the verdict (and of the report's tables).
FORMATS: dict[str, Callable[[Any], str]] = {
    "int": lambda x: f"{x:d}",
    "pct": _pct,
    "share": lambda x: f"{x:.3f}",
    "pct0": lambda x: f"{100 * x:.0f}%",
    "num": lambda x: f"{x:.3g}" if abs(x) >= 1000 else f"{x:.1f}",
}


def lookup(rep: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of the report (list items by index)."""
    node: Any = rep
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def classify_metric(m: dict[str, Any]) -> str:
    """classify() of a compare_cells metric: its percent change, or, where
    that has no percent (single 0), the sign of its difference's interval."""
    if not m["from_zero"]:
        return classify(m["change"])
    d = m["diff"]
    if d["half"] is None:
        return "unresolved"
    return "up" if d["lo"] > 0 else "down" if d["hi"] < 0 else "unresolved"


def classify(ci: dict[str, Any]) -> str:
    """``none`` (no difference), ``up``, ``down`` or ``unresolved`` for a change's interval."""
    if ci["mean"] is None or ci["half"] is None:
        return "unresolved"
    if ci["lo"] > 0:
        return "up"
    if ci["hi"] < 0:
        return "down"
    return "none" if ci["half"] <= NARROW_PCT else "unresolved"


class _Item:
    # Builds one verdict item: add(path, fmt) returns the placeholder.
    def __init__(self, rep: dict[str, Any], ident: str, section: str) -> None:
        self.rep, self.ident, self.section = rep, ident, section
        self.numbers: list[dict[str, Any]] = []

    def n(self, path: str, fmt: str) -> str:
        self.numbers.append({"path": path, "value": lookup(self.rep, path), "fmt": fmt})
        return "{" + str(len(self.numbers) - 1) + "}"

    def ci(self, path: str) -> str:
        # "+12.3% [+10.1%, +14.5%]"; a change from 0 has no percent: the difference instead.
        metric = path[: -len(".change")]
        if path.endswith(".change") and lookup(self.rep, metric + ".both_zero"):
            return "none under either policy"
        if lookup(self.rep, path + ".mean") is None:
            d = path[: -len(".change")] + ".diff"
            return (f"from 0 (single) by {self.n(d + '.mean', 'num')} [{self.n(d + '.lo', 'num')}, "
                    f"{self.n(d + '.hi', 'num')}]")
        return f"{self.n(path + '.mean', 'pct')} [{self.n(path + '.lo', 'pct')}, {self.n(path + '.hi', 'pct')}]"

    def done(self, text: str) -> dict[str, Any]:
        return {"id": self.ident, "section": self.section, "text": text, "numbers": self.numbers}


def render_item(item: dict[str, Any], wrap: Callable[[str, dict[str, Any]], str] = lambda s, _n: s,
                escape: Callable[[str], str] = lambda s: s) -> str:
    """The item's text with its numbers formatted; ``wrap(text, number)`` may mark each up."""
    parts = item["text"].split("{")
    out = [escape(parts[0])]
    for part in parts[1:]:
        idx, _, rest = part.partition("}")
        num = item["numbers"][int(idx)]
        out.append(wrap(FORMATS[num["fmt"]](num["value"]), num) + escape(rest))
    return "".join(out)


def _change_words(kind: str) -> str:
    return {"none": "no difference", "up": "a difference", "down": "a difference",
            "unresolved": "not resolved at this many seeds"}[kind]


def _layout(rep: dict[str, Any]) -> dict[str, Any]:
    a = rep["layout"]["answer"]
    it = _Item(rep, "layout", "layout")
    m = "layout.answer.mine"
    d = a["mine"]["cachelines_new"] - a["mine"]["cachelines_old"]
    words = "no extra cacheline" if d == 0 else f"{d:+d} cacheline(s)"
    text = (f"struct per_cpu_pages on {a['arch']}{' (assumed)' if a['assumed'] else ''}, one THP list ({a['old']}) "
            f"vs two ({a['new']}): {it.n(m + '.members_old', 'int')} → {it.n(m + '.members_new', 'int')} bytes "
            f"of members, {it.n(m + '.cachelines_old', 'int')} → {it.n(m + '.cachelines_new', 'int')} "
            f"cachelines of {it.n(m + '.cacheline', 'int')} bytes: {words}.")
    if a["differs"]:
        others = []
        for i, r in enumerate(a["per_arch"]):
            if r in a["differs"]:
                q = f"layout.answer.per_arch.{i}"
                others.append(f"{r['arch']} ({it.n(q + '.cachelines_old', 'int')} → "
                              f"{it.n(q + '.cachelines_new', 'int')} cachelines)")
        text += " It differs on " + ", ".join(others) + "."
    else:
        text += " The same on every other architecture pcpemu lays out."
    return it.done(text)


def _row_index(rows: list[dict[str, Any]], **match: Any) -> int | None:
    for i, r in enumerate(rows):
        if all(r.get(k) == v for k, v in match.items()):
            return i
    return None


def _workload_line(rep: dict[str, Any], workload: str, ident: str, lead: str) -> dict[str, Any] | None:
    rows = rep["contention"]["compare"]
    cpus = sorted({r["cpus"] for r in rows if r["workload"] == workload})
    if not cpus:
        return None
    i = _row_index(rows, workload=workload, cpus=cpus[-1])
    row = rows[i]
    it = _Item(rep, ident, "contention")
    p = f"contention.compare.{i}"
    kinds = {m: classify_metric(row[m]) for m in ("zone_lock", "throughput")}
    all_none = all(classify_metric(r[m]) == "none" for r in rows if r["workload"] == workload
                   for m in ("zone_lock", "lock_wait", "throughput", "cachelines"))
    hit9 = (f", order-9 pcp hit rate {it.n(p + '.hit9.single.mean', 'share')} → "
            f"{it.n(p + '.hit9.split.mean', 'share')}" if row["hit9"]["single"]["mean"] is not None else "")
    text = (f"{lead} at {cpus[-1]} CPUs, two lists vs one: zone->lock acquisitions {it.ci(p + '.zone_lock.change')}, "
            f"wait {it.ci(p + '.lock_wait.change')}, throughput {it.ci(p + '.throughput.change')}")
    if all_none:
        text += f"{hit9}: no difference at any of {len(cpus)} CPU counts ({cpus[0]}–{cpus[-1]})."
    else:
        text += f" ({_change_words(kinds['throughput'])}){hit9}"
        text += (": a non-movable THP request can no longer take a freed movable THP off the one list and "
                 "refills from the zone under zone->lock." if hit9 else ".")
    return it.done(text)


def _nonmovable(rep: dict[str, Any]) -> dict[str, Any]:
    nm = rep["nonmovable"]
    it = _Item(rep, "nonmovable", "nonmovable")
    rows = nm["rows"]
    parts = []
    for i, r in enumerate(rows):
        k = classify_metric(r["throughput"])
        parts.append(f"{it.n(f'nonmovable.rows.{i}.percent', 'int')}%: throughput "
                     f"{it.ci(f'nonmovable.rows.{i}.throughput.change')}"
                     + (" (no difference)" if k == "none" else " (not resolved)" if k == "unresolved" else ""))
    worst = len(rows) - 1
    p = f"nonmovable.rows.{worst}"
    text = (f"Against the share of non-movable THP requests ({nm['cpus']} CPUs): " + "; ".join(parts)
            + f". At {it.n(p + '.percent', 'int')}% zone->lock acquisitions rise {it.ci(p + '.zone_lock.change')}, "
            f"zone->lock wait {it.ci(p + '.lock_wait.change')}, the order-9 pcp hit rate goes "
            f"{it.n(p + '.hit9.single.mean', 'share')} → {it.n(p + '.hit9.split.mean', 'share')}: each non-movable THP request that finds its "
            "own list empty refills from the zone, where one list would reuse the movable THP just freed.")
    return it.done(text)


def _seedbug(rep: dict[str, Any]) -> dict[str, Any]:
    sb = rep["seedbug"]["shares"]
    it = _Item(rep, "seedbug", "seedbug")
    rows = sb["rows"]
    shares = sorted({r["cma_share"] for r in rows})
    quiet = [s for s in shares if not any(r["livelock"]["k"] or r["cma_fail"]["k"] for r in rows if r["cma_share"] == s)]
    text = "The seed bug (a FOLL_LONGTERM pin that livelocks, then a failing cma_alloc)"
    if quiet:
        text += (f": no policy shows it with CMA at {', '.join(f'{100 * s:g}%' for s in quiet)} of RAM "
                 f"({len(sb['seeds'])} seeds each)")
    loud = [s for s in shares if s not in quiet]
    if loud:
        step = loud[0]
        bits = []
        for i, r in enumerate(rows):
            if r["cma_share"] == step:
                q = f"seedbug.shares.rows.{i}"
                bits.append(f"{r['policy']} livelocks in {it.n(q + '.livelock.k', 'int')}/"
                            f"{it.n(q + '.livelock.n', 'int')} seeds [{it.n(q + '.livelock.lo', 'pct0')}, "
                            f"{it.n(q + '.livelock.hi', 'pct0')}], cma_alloc fails in "
                            f"{it.n(q + '.cma_fail.k', 'int')}")
        same = all(r["livelock"]["k"] == next(x for x in rows if x["cma_share"] == step
                                             and x["policy"] == r["policy"])["livelock"]["k"]
                   for r in rows if r["cma_share"] in loud)
        text += f"; at {100 * step:g}%: " + "; ".join(bits)
        if len(loud) > 1:
            text += f" ({'the same' if same else 'not the same'} at {', '.join(f'{100 * s:g}%' for s in loud[1:])})"
        if step == 0.5:
            text += (". The step at 50% is __rmqueue()'s CMA-first rule: once more than half the zone's free "
                     "pages are CMA, movable requests are served from CMA, the one THP list fills with CMA THPs, and "
                     "the pin's migration targets, non-movable order-9 requests, take them; two lists keep them apart")
    return it.done(text + ".")


def _costmodel(rep: dict[str, Any]) -> dict[str, Any]:
    cm = rep["costmodel"]
    it = _Item(rep, "costmodel", "costmodel")
    cal = "costmodel.calibration"
    held = []
    for w, rows in cm["sensitivity"].items():
        ks = {classify(r["throughput"]) for r in rows}
        known = [i for i, r in enumerate(rows) if r["throughput"]["mean"] is not None]
        if not known:
            continue
        lo = min(known, key=lambda i: rows[i]["throughput"]["mean"])
        hi = max(known, key=lambda i: rows[i]["throughput"]["mean"])
        p = f"costmodel.sensitivity.{w}"
        verdict = ("survives every parameter and the vmstat tick at ±50%" if len(ks) == 1 and "unresolved" not in ks
                   else "changes with the parameters")
        waits = {classify(r["lock_wait"]) for r in rows}
        wait = "so does its wait change" if len(waits) == 1 and "unresolved" not in waits else "its wait change does not"
        held.append(f"the {w} throughput change {verdict} ({it.n(f'{p}.{lo}.throughput.mean', 'pct')} to "
                    f"{it.n(f'{p}.{hi}.throughput.mean', 'pct')}), and {wait}")
    text = ("Counted exactly: zone->lock acquisitions, pages moved, pcp hit rates and cachelines touched. From "
            "the virtual-time cost model: zone->lock wait and throughput. Its " + ", ".join(cm["fitted"])
            + " parameters were set from page_bench03, so the model matches its 1 → 8 CPU growth by construction "
            f"({it.n(cal + '.zone_lock.model', 'num')}× vs {it.n(cal + '.zone_lock.kernel', 'num')}× for "
            f"zone->lock, {it.n(cal + '.order0_pcp.model', 'num')}× vs {it.n(cal + '.order0_pcp.kernel', 'num')}× "
            f"for the pcp path). At {cm['cpus']} CPUs: " + "; ".join(held) + ".")
    return it.done(text)


def _with_fidelity(rep: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    # How closely the emulator replays this very capture (pcpemu.runs.capture_replay).
    it = _Item(rep, item["id"], item["section"])
    it.numbers = list(item["numbers"])
    t = "fidelity.comparison.total"
    text = (item["text"] + f" Replayed like for like, the emulator logs {it.n(t + '.refill_blocks.emulated', 'int')} "
            f"refill blocks and {it.n(t + '.zone_lock.emulated', 'int')} zone->lock acquisitions where the kernel "
            f"logged {it.n(t + '.refill_blocks.kernel', 'int')} and {it.n(t + '.zone_lock.kernel', 'int')}.")
    return it.done(text)


def build_verdict(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict items of a report dict (see the module docstring)."""
    items = [_layout(rep)]
    share = {w["name"]: f"{w['nonmovable_thp_percent']:g}%" for w in rep["workloads"]["table"]}
    for name, ident, lead in (("thp", "movable", "Movable THPs only (thp)"),
                              ("capture", "capture", "The real capture's mix (capture)"),
                              ("mixed", "mixed", "A general server mix (mixed, {} non-movable THP requests)")):
        item = _workload_line(rep, name, ident, lead.format(share.get(name)))
        if item and name == "capture" and rep.get("fidelity"):
            item = _with_fidelity(rep, item)
        if item:
            items.append(item)
    items += [_nonmovable(rep), _seedbug(rep), _costmodel(rep)]
    return items
