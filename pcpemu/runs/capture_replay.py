"""Replay of a ``pcpemu capture`` directory, like for like with the traced kernel.

The machine comes from the capture's before-zoneinfo (KernelConfig.from_zoneinfo)
with the rules of the traced kernel's version; it starts from the traced kernel's
state (pcpemu.runs.kstate) and runs the vmstat worker on the trace's clock. The
kernel's figures and the emulator's are read off their kmem events with one
definition (replay.FIGURES) and set side by side per CPU and in total.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..kernel.config import KernelConfig, ReleaseRules, release_rules
from ..kernel.procfs import read_pagetypeinfo, read_zoneinfo
from ..kernel.zoneinfo import node_zoneinfo, static_differences
from .capture import COMPACTION_EVENTS, KERNEL_WORK_EVENTS, KSWAPD_EVENTS, TRACE_FILE, load_capture
from .replay import FIGURES, OneNode, Progress, ReplayResult, StartState, replay

__all__ = ["CHECKED", "check", "check_pin_pages", "comparison_text", "fidelity_on_capture", "pin_spread",
           "replay_capture", "spread_row", "spread_text"]

#: The figures --check holds to the tolerance (the fidelity targets).
CHECKED = ("refill_blocks", "refill_calls", "drained_pages", "drain_calls")


def replay_capture(path: str | os.PathLike[str], *, preset: str | None = None,
                   policies: list[str] | None = None, seed: int = 0, from_boot: bool = False,
                   strict: bool = False, progress: Progress | None = None, pin_offset: int = 0,
                   node: int | None = None, **kwargs: Any) -> ReplayResult:
    """Replay a capture directory from the traced kernel's state.

    :param preset: the rules (default: those of the traced kernel's release,
        pcpemu.kernel.config.release_rules).
    :param policies: THP-list policies to run side by side (default: the preset's).
    :param from_boot: start from a freshly booted machine instead (no state, no timer).
    :param pin_offset: pages added to the count each first-drain pin sets (StartState.pin_offset).
    :param node: the node to replay of a capture from a several-node machine: its
        zones, from their state, and the events on its pages.
    :raises CaptureError: when path is not a complete capture.
    :raises ConfigError: for a pin_offset with from_boot (a machine from boot pins
        nothing); for a several-node capture without node, or a node it does not have.
    """
    if from_boot and pin_offset:
        raise ConfigError("a replay from boot sets no pcp count at the kernel's first drains: no pin to offset")
    path = os.fspath(path)
    info = load_capture(path)
    rules = ReleaseRules(preset, {}, "") if preset else release_rules(info.kernel_release)
    dump, after_dump = (read_zoneinfo(os.path.join(path, f"{when}-zoneinfo")) for when in ("before", "after"))
    before, after = node_zoneinfo(dump, node), node_zoneinfo(after_dump, node)
    # A CPU that came online during the capture is in after-zoneinfo only.
    cpus = {"cpus": after_dump["nr_cpus"]} if after_dump["nr_cpus"] > dump["nr_cpus"] else {}
    # The kernel's reclaim and compaction show in its trace (frees, drain_all_pages,
    # kswapd, compaction's drains); the emulated slow path adds nothing of its own.
    base = KernelConfig.from_zoneinfo(dump, rules.preset, node, **rules.overrides, **cpus, reclaim="traced")
    notes = [f"rules: preset {rules.preset} (traced kernel {info.kernel_release})",
             *([f"rules: {rules.note}"] if rules.note else []), *static_differences(base, dump, node)]
    if cpus:
        notes.append(f"CPUs came online during the capture ({dump['nr_cpus']} in before-zoneinfo, "
                     f"{after_dump['nr_cpus']} after): the machine has {after_dump['nr_cpus']}, theirs start with "
                     "empty pcp lists, and the pcp limits kept are those of the CPUs online at the start "
                     "(zone_pcp_update is not modelled)")
    notes += [f"capture: {n}" for n in info.notes]
    notes += _resized(before, after)
    ranges = _node_pfns(dump, node)
    if ranges is not None:
        notes.append(f"node {node}: the events on its pages, pfns {ranges[0][0]:#x}-{ranges[0][1]:#x}")
    if info.pid_only:
        notes.append("capture: --pid-only: the other tasks' allocations and frees, which share the pcp "
                     "lists, are not in the trace")
    configs = {p: base.replace(thp_lists=p, thp=p != "none") for p in dict.fromkeys(policies or [base.thp_lists])}
    start = None
    if not from_boot:
        work = {e.split("/")[1]: why for e, why in KERNEL_WORK_EVENTS.items() if e in info.events}
        start = StartState(before, read_pagetypeinfo(os.path.join(path, "before-pagetypeinfo"), node),
                           timer="events" if info.timer_events else info.stat_interval,
                           after_zoneinfo=after, kernel_work=work, pin_offset=pin_offset,
                           kswapd=KSWAPD_EVENTS[0] in info.events,
                           compaction=all(e in info.events for e in COMPACTION_EVENTS))
    return replay(os.path.join(path, TRACE_FILE), configs, seed=seed, strict=strict, progress=progress,
                  config_notes=notes, start=start, node=None if ranges is None else OneNode(node, ranges), **kwargs)


def _node_pfns(dump: dict, node: int | None) -> list[tuple[int, int]] | None:
    # A node's pages in a several-node dump: from its first zone's start to the next
    # node's, so that memory the node gains past its zones' spans during the capture
    # stays in (None: a one-node dump, every page).
    if node is None or len({z["node"] for z in dump["zones"]}) < 2:
        return None
    starts: dict[int, int] = {}
    for z in dump["zones"]:
        if z.get("spanned") and "start_pfn" in z:
            starts[z["node"]] = min(starts.get(z["node"], z["start_pfn"]), z["start_pfn"])
    if node not in starts:
        raise ConfigError(f"zoneinfo: node {node} spans no memory")
    after = [s for s in starts.values() if s > starts[node]]
    return [(starts[node], min(after, default=1 << 62))]


def _resized(before: dict, after: dict) -> list[str]:
    # Memory onlined or offlined (ballooning, hotplug, on-demand init) while the trace ran
    # moves the zone's watermarks and pcp high_min/high_max. New memory shows as the
    # MAX_PAGE_ORDER frees that put it in the buddy, where the replay grows the zone
    # (kstate.ZoneGrowth); memory taken away shows as nothing.
    was = {z["name"]: z.get("managed") for z in before["zones"]}
    return [f"resized: zone {z['name']} managed pages went from {was[z['name']]:,} to {z['managed']:,} during the "
            "capture; the replay grows the zone where the trace shows new memory freed (see the untraced figures); "
            "what it does not show (memory taken away, growth with no free) is untraced"
            for z in after["zones"] if z["name"] in was and z.get("managed") != was[z["name"]]]


def check(comparison: dict[str, Any], per_cpu: float, total: float | None = None,
          min_blocks: int = 1000, spread: dict[str, Any] | None = None) -> list[str]:
    """Where the emulator's figures leave the tolerance: each CPU that logged at least
    min_blocks refill blocks within ``per_cpu`` (0.10 = 10%), and the totals within
    ``total`` (default: per_cpu) when the whole trace logged min_blocks, for CHECKED.
    Returns one line per figure outside; with ``spread`` (one policy's
    :func:`pin_spread` ranges) each says whether the kernel's figure lies in the range."""
    total = per_cpu if total is None else total
    bad = []
    rows = [(f"cpu {r['cpu']}", r, per_cpu, spread_row(spread, r["cpu"])) for r in comparison["per_cpu"]]
    rows.append(("total", comparison["total"], total, spread_row(spread, None)))
    for label, row, tol, rng in rows:
        if row["refill_blocks"]["kernel"] < min_blocks:
            continue            # too few refills for a ratio to mean anything
        for f in CHECKED:
            k, e, ratio = row[f]["kernel"], row[f]["emulated"], row[f]["ratio"]
            if (ratio is None and e) or (ratio is not None and abs(ratio - 1) > tol):
                line = (f"{label}: {f} emulated {e:,} against the kernel's {k:,} "
                        f"({'-' if ratio is None else f'{ratio:.3f}'}, tolerance {tol:.0%})")
                if rng is not None:
                    lo, hi = rng[f]["low"], rng[f]["high"]
                    line += (f"; {lo:,}-{hi:,} with the pins moved: the kernel's "
                             f"{'inside' if lo <= k <= hi else 'outside'}")
                bad.append(line)
    return bad


def spread_row(spread: dict[str, Any] | None, cpu: int | None) -> dict[str, Any] | None:
    """One row (a CPU's, or the totals for None) of one policy's :func:`pin_spread`
    ranges; None without a spread."""
    if spread is None:
        return None
    return spread["total"] if cpu is None else next(r for r in spread["per_cpu"] if r["cpu"] == cpu)


def pin_spread(path: str | os.PathLike[str], pages: int, measured: ReplayResult | None = None,
               **kwargs: Any) -> dict[str, Any]:
    """How much a capture's figures hang on a page of count: the range of each figure
    over replays with each first-drain pin moved by -pages..pages
    (StartState.pin_offset; 0 is the measured pin). A drain frees free_count pages,
    the frees since the last allocation (nr_pcp_free), so the free that brings count
    to high decides the drain's size, and the next drain comes that many net frees
    later.

    :param measured: the replay at the measured pin, if already run (with the same kwargs).
    :param kwargs: as for :func:`replay_capture` (not from_boot, pin_offset or emit_trace).
    :return: ``{"pages", "offsets", "policies": {label: {"per_cpu": [{"cpu", figure:
        {"low", "high"}}], "total": {figure: {"low", "high"}}}}}`` over FIGURES.
    :raises ConfigError: for pages outside 1..64, from_boot, pin_offset or emit_trace.
    """
    check_pin_pages(pages)
    if kwargs.get("from_boot"):
        raise ConfigError("a replay from boot sets no pcp count at the kernel's first drains: no pin to move")
    given = sorted(k for k in ("pin_offset", "emit_trace") if k in kwargs)
    if given:
        raise ConfigError(f"a pin spread sets the pins itself and writes no trace: drop {', '.join(given)}")
    offsets = list(range(-pages, pages + 1))
    runs = [measured if d == 0 and measured is not None else replay_capture(path, pin_offset=d, **kwargs)
            for d in offsets]
    out: dict[str, Any] = {}
    for label in runs[0].policies:
        tables = [r.comparison(label) for r in runs]
        out[label] = {"per_cpu": [{"cpu": row["cpu"], **_ranges([t["per_cpu"][i] for t in tables])}
                                  for i, row in enumerate(tables[0]["per_cpu"])],
                      "total": _ranges([t["total"] for t in tables])}
    return {"pages": pages, "offsets": offsets, "policies": out}


def check_pin_pages(pages: int) -> None:
    """Refuse a pin spread outside 1..64 pages (before any replay runs).

    :raises ConfigError: for pages outside 1..64.
    """
    if not 1 <= pages <= 64:
        raise ConfigError(f"a pin spread moves the pins by 1 to 64 pages, not {pages}")


def _ranges(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # The lowest and highest emulated value of each figure over one row of several comparisons.
    return {f: {"low": min(r[f]["emulated"] for r in rows), "high": max(r[f]["emulated"] for r in rows)}
            for f in FIGURES}


def spread_text(spread: dict[str, Any], pages: int, comparison: dict[str, Any], label: str = "") -> str:
    """The emulated range of each checked figure over one policy's :func:`pin_spread`
    pins, beside the kernel's figure."""
    out = [f"with each first-drain pin moved by up to {pages} pages{f' (policy {label})' if label else ''}:"]
    for name, row, rng in [*((f"cpu {r['cpu']}", r, spread_row(spread, r["cpu"])) for r in comparison["per_cpu"]),
                           ("total", comparison["total"], spread["total"])]:
        out.append(f"  {name}: " + ", ".join(f"{f} {rng[f]['low']:,}-{rng[f]['high']:,} (kernel {row[f]['kernel']:,})"
                                             for f in CHECKED))
    return "\n".join(out) + "\n"


def comparison_text(comparison: dict[str, Any], label: str = "") -> str:
    """The side-by-side table: per CPU and total, kernel, emulator and ratio per figure."""
    head = f"{'cpu':>5}" + "".join(f" {f:>27}" for f in FIGURES)
    sub = f"{'':>5}" + "".join(f" {'kernel':>10} {'emulated':>10} {'ratio':>5}" for _ in FIGURES)
    out = [f"kernel against emulator{f' ({label})' if label else ''}:", head, sub]
    for name, row in [*((str(r["cpu"]), r) for r in comparison["per_cpu"]), ("all", comparison["total"])]:
        cells = []
        for f in FIGURES:
            r = row[f]["ratio"]
            cells.append(f" {row[f]['kernel']:>10,} {row[f]['emulated']:>10,} {'-' if r is None else f'{r:.2f}':>5}")
        out.append(f"{name:>5}" + "".join(cells))
    return "\n".join(out) + "\n"


def fidelity_on_capture(path: str | os.PathLike[str], preset: str | None = None, seed: int = 0,
                        pin_pages: int = 2) -> dict[str, Any]:
    """For the report's "fidelity on your capture" section: the comparison of a replay
    of the capture (first policy; of a several-node capture, its first node), with
    what framed it.

    :param pin_pages: the figures' range over first-drain pins moved by up to this
        many pages (:func:`pin_spread`); 0 for none.
    :return: ``{"capture", "preset", "kernel_release", "node", "drain_all",
        "compaction_drains", "free_pcp_locked", "comparison": {"per_cpu": [...], "total": {...}}, "figures", "notes",
        "end_state", "end_free", "untraced", "timer", "pin_pages", "pin_spread"}``; each figure
        cell is ``{"kernel", "emulated", "ratio"}``, pin_spread one policy's ranges
        (or None), node None for a one-node capture, drain_all and
        compaction_drains the kernel's explicit drains the replay ran (runs.drains),
        free_pcp_locked the frees it replayed to the buddy because they found the pcp
        locked (_replay.mark_pcp_locked_frees).
    """
    nodes = sorted({z["node"] for z in read_zoneinfo(os.path.join(os.fspath(path), "before-zoneinfo"))["zones"]})
    node = nodes[0] if len(nodes) > 1 else None
    result = replay_capture(path, preset=preset, seed=seed, node=node)
    info = load_capture(path)
    label = next(iter(result.policies))
    spread = pin_spread(path, pin_pages, measured=result, preset=preset, seed=seed, node=node) if pin_pages else None
    notes = result.config_notes + ([f"node {node} of nodes {', '.join(map(str, nodes))}: `pcpemu replay "
                                    f"{os.fspath(path)} --node N` replays another"] if node is not None else [])
    return {"capture": os.fspath(path), "kernel_release": info.kernel_release, "node": node,
            "drain_all": result.replayed.get("drain_all", 0),
            "compaction_drains": result.replayed.get("compaction_drain", 0),
            "free_pcp_locked": result.replayed.get("free_pcp_locked", 0),
            "preset": result.config["name"], "policy": label, "figures": list(FIGURES),
            "comparison": result.comparison(label), "notes": notes,
            "end_state": (result.end_state or {}).get(label), "end_free": (result.end_free or {}).get(label),
            "untraced": result.untraced,
            "timer": result.timer, "pin_pages": pin_pages,
            "pin_spread": None if spread is None else spread["policies"][label]}
