"""The text a replay prints (pcpemu replay without --json): what was replayed and
skipped, what a replay from the traced kernel's state set up and inferred, and per
policy and CPU the emulated figures beside the trace's own."""

from __future__ import annotations

from typing import Any

from .replay import SKIP_REASONS, ReplayResult

__all__ = ["replay_text"]


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _cpu_row(label: str, e: dict[str, Any], orders: list[int]) -> str:
    t = e["traced"]
    hits = "".join(f"{100 * e['pcp_hit_rate'][o]:>8.1f}%" if o in e["pcp_hit_rate"] else f"{'-':>9}"
                   for o in orders)
    return (f"{label:>5}{hits} {e['refill_blocks']:>10,} {t['refill_blocks']:>10,} "
            f"{_fmt_ratio(e['ratio']['refill_blocks']):>6} {e['drained_pages']:>10,} "
            f"{t['drained_pages']:>10,} {_fmt_ratio(e['ratio']['drained_pages']):>6} "
            f"{e['zone_lock']:>10,} {e['fallbacks']:>5,} {t['fallbacks']:>5,}")


#: What the replay did for activity the kernel traced no event of, as the counts of
#: ReplayResult.untraced it prints when non-zero.
_UNTRACED_COUNTS = (
    ("retyped", "pageblocks of the untraced owner's pages alone were given the type the trace shows for the "
                "pages freed from them (the dumps give only each type's count of pageblocks)"),
    ("other_type", "of those frees found none of the owner's pages in a pageblock of the type the trace shows "
                   "and took another type's (their pcp list is that type's)"),
    ("allocs", "allocations the kernel did not trace (alloc_pages_bulk: a page left a pcp list and was freed "
               "with no mm_page_alloc) replayed from the list that held the page"),
    ("pcp_reveals", "moves of starting pcp pages the read-ahead could not place, to the lists the trace showed "
                    "them on later (pcp_reveal ops; pcp->count unchanged)"),
)


def _start_text(result: ReplayResult) -> list[str]:
    # What a replay from the traced kernel's state set up, and what it could not see.
    if result.start is None:
        shown = [e for e in ("mm_vmscan_kswapd_wake", "mm_compaction_begin") if result.events.get(e)]
        return [f"note: the trace has {' and '.join(shown)} events; what they do to the pcp lists is replayed "
                "from a capture directory (pcpemu replay DIR), not from a bare trace"] if shown else []
    out = ["started from the traced kernel's state:"]
    for zone, z in result.start["zones"].items():
        pcp = ", ".join(f"cpu {p['cpu']} {p['count']:,}/{p['shown_count']:,} pages high {p['high']:,}"
                        for p in z["pcp"])
        out.append(f"  {zone}: {z['free_pages']:,} free pages ({z['shown_free_pages']:,} shown); pcp {pcp}")
    out += [f"  note: {n}" for n in result.start["notes"]]
    u = result.untraced
    out.append(f"  {u['replayed']:,} frees of pages allocated before the trace came from the untraced owner"
               + (f"; {u['pool_exhausted']:,} found it empty and were skipped" if u["pool_exhausted"] else ""))
    out += [f"  {u[key]:,} {what}" for key, what in _UNTRACED_COUNTS if u.get(key)]
    if u.get("grown_pages"):
        out.append(f"  {u['grown_pages']:,} pages came into the zones during the trace (MAX_PAGE_ORDER frees past "
                   "the memory online when it began); the zones grew, watermarks and pcp limits recomputed; "
                   f"{u.get('grown_on_demand', 0):,} of them inside an allocation (deferred struct-page init, "
                   "after the zone failed its high-watermark check: ZONE_BELOW_HIGH set)")
    shift = u.get("pin_offset", 0)
    if shift:
        out.append(f"  each first-drain pin set {shift:+,} pages off the count the kernel's drain shows (pin_offset: "
                   "how much the figures hang on a page of count)")
    for f in u.get("first_drains", ()):
        for label in f.get("zone_flagged", ()):
            out.append(f"  {label} {f['zone']} cpu {f['cpu']}: the kernel's first drain (at {f['timestamp']:.6f}) "
                       "pins nothing: the emulated zone has ZONE_BELOW_HIGH or ZONE_RECLAIM_ACTIVE set, under which "
                       "a free drains below high")
        for label, pages in f["pages"].items():
            moved = f["moved"][label]
            why = f["why"][label]
            how = f"{moved:+,} moved ({why})" if why else "set there"
            what = "a free" if f["set_off_by"] == "free" else "the vmstat worker"
            out.append(f"  {label} {f['zone']} cpu {f['cpu']}: the kernel's first drain set off by {what} shows "
                       f"{pages:+,} pcp pages against the emulated count (at {f['timestamp']:.6f}): {how}")
    refills = u.get("first_refills", ())
    if refills:
        same = sum(was == f["alloc_factor"] for f in refills for was in f["was"].values())
        out.append(f"  pcp->alloc_factor at each pcp's first order-0 refill (batch << alloc_factor blocks): "
                   f"{sum(f['alloc_factor'] is not None for f in refills)} of {len(refills)} shown; "
                   f"{same} emulated ones already matched")
    for f in refills:
        if f["alloc_factor"] is None:
            least = f["at_least"]
            raised = ", ".join(f"{label} from {was}" for label, was in f["was"].items() if was < least)
            out.append(f"  {f['zone']} cpu {f['cpu']}: the kernel's first order-0 refill ({f['blocks']:,} blocks) was "
                       f"capped by high - count: alloc_factor at least {least} (batch << alloc_factor above the "
                       f"blocks); " + (f"the emulated one raised to it ({raised})" if raised else
                                       "the emulated one left"))
            continue
        for label, was in f["was"].items():
            if was != f["alloc_factor"]:
                out.append(f"  {label} {f['zone']} cpu {f['cpu']}: the kernel's first order-0 refill "
                           f"({f['blocks']:,} blocks) shows alloc_factor {f['alloc_factor']}; the emulated one, {was}, "
                           "set to it")
    falls = u.get("alloc_factor_falls", ())
    if falls:
        for label in sorted({label for f in falls for label in f["was"]}):
            lower = sum(f["was"][label] > f["alloc_factor"] for f in falls if label in f["was"])
            out.append(f"  {label}: pcp->alloc_factor fell with no event at {len(falls):,} of the kernel's order-0 "
                       "refills (batch << alloc_factor blocks below what the frees since the refill before leave): "
                       f"set there; the emulated one was higher at {lower:,}")
    for f in u.get("free_high", ()):
        for label, count in f["free_count"].items():
            rule = f["rule"][label]
            how = ("set there as its threshold" if f["set"][label] else
                   "the rule drains there already" if count >= rule else "below batch: left to the rule")
            out.append(f"  {label} {f['zone']} cpu {f['cpu']}: the kernel's first drain at once on a free of order 1..3 "
                       f"(free_high; the rule: from free_count {rule:,}) came at an emulated free_count of {count:,} "
                       f"(at {f['timestamp']:.6f}): {how}")
    takes = u.get("pcp_takes")
    if takes and (takes["refills"] or takes["fewer_than_none"]):
        taken = ", ".join(f"{label} {n:,}" for label, n in takes["taken"].items())
        out.append(f"  {takes['refills']:,} refills of pcp lists the kernel's events still held {takes['pages']:,} "
                   f"pages on: {takes['relisted_pages']:,} freed from pageblocks of no type shown moved to the "
                   "Unmovable list; the rest alloc_pages_bulk took with no event: taken off the emulated lists, "
                   f"pages {taken or 'none'}; {takes['fewer_than_none']:,} refills of lists the events held fewer "
                   "than none on (a page put on another list) only started the count again")
    if takes and takes.get("arrivals"):
        came = ", ".join(f"{label} {n:,}" for label, n in takes["arrived"].items())
        out.append(f"  {takes['arrivals']:,} allocations took a pcp list the kernel's events showed empty, of a page "
                   "no event had put on one (none before, or the last one put it in the buddy; no kernel path "
                   f"found): a block came with no event, and the untraced owner's went on the emulated list first, "
                   f"pages {came or 'none'}")
    kswapd = u.get("kswapd")
    if kswapd and kswapd["wakes"]:
        how = (f"ZONE_RECLAIM_ACTIVE set for {kswapd['held']:,} runs, each from its wake to kswapd's last event "
               f"before the next wake or sleep; {kswapd['balanced']:,} found the node balanced at once"
               if kswapd["replayed"] else "its ZONE_RECLAIM_ACTIVE not replayed")
        out.append(f"  kswapd ran balance_pgdat {kswapd['wakes']:,} times ({kswapd['sleeps']:,} sleeps): {how}")
    compaction = u.get("compaction")
    if compaction and compaction["runs"] and not compaction["replayed"]:
        out.append(f"  compact_zone ran {compaction['runs']:,} times: its drains of the CPU's pcp not replayed, the "
                   "capture has no mm_compaction_end to end each run")
    for w in u.get("kernel_work", ()):
        out.append(f"  {w['runs']:,} {w['event']} in the trace, not replayed: {w['why']}")
    if result.timer is not None:
        every = "at the trace's vmstat_update events" if result.timer["every"] == "events" else \
            f"every {result.timer['every']} s per CPU"
        out.append(f"  vmstat worker (decay_pcp_high) {every}: runs per CPU {result.timer['runs']}")
    out.append("  untraced activity: pcp lists at the end, emulated against the kernel's after-zoneinfo, and the "
               "count before-zoneinfo plus the kernel's events lead to (the rest moved with no event):")
    for label, rows in (result.end_state or {}).items():
        for r in rows:
            c = r["count"]
            if c["kernel"] or c["emulated"]:
                moved = "" if c.get("traced") is None or c["kernel"] is None else \
                    f" (events alone {c['traced']:,}: {c['kernel'] - c['traced']:+,} with no event)"
                out.append(f"    {label} {r['zone']} cpu {r['cpu']}: count {c['emulated']:,} against {c['kernel']:,}"
                           f"{moved}, high {r['high']['emulated']:,} against {r['high']['kernel']:,}")
    for label, zones in (result.end_free or {}).items():
        out.append(f"    {label} free pages at the end: " + ", ".join(
            f"{z['zone']} {z['emulated']:,} against {z['kernel']:,}" for z in zones if z["kernel"] is not None))
    return out


def replay_text(result: ReplayResult) -> str:
    """The human report of a replay: what was replayed and skipped, then per policy and
    CPU the emulated pcp hit rates, refill blocks, drained pages, zone->lock
    acquisitions and fallbacks beside the trace's own."""
    out = [f"trace {result.trace}: {result.events_read:,} kmem events"]
    out += [f"  {n:>10,}  {name}" for name, n in sorted(result.events.items(), key=lambda kv: -kv[1])]
    nskip = sum(result.skipped.values())
    out.append(f"replayed {result.replayed.get('alloc', 0):,} allocations and "
               f"{result.replayed.get('free', 0):,} frees; skipped {nskip:,}:")
    out += [f"  {n:>10,}  {SKIP_REASONS[k]}" for k, n in result.skipped.items() if n]
    if result.replayed.get("drain_all"):
        out.append(f"{result.replayed['drain_all']:,} drain_all_pages in the trace (a CPU drained other CPUs' pcp "
                   "lists: direct reclaim, isolation, offlining), replayed as drain_all_pages where each began")
    if result.replayed.get("compaction_drain"):
        out.append(f"{result.replayed['compaction_drain']:,} drains of a CPU's own pcp inside compact_zone "
                   "(lru_add_drain_cpu_zone), replayed as drain_local_pages where each began")
    if result.replayed.get("free_pcp_locked"):
        out.append(f"{result.replayed['free_pcp_locked']:,} frees on a CPU whose task held pcp->lock (between a "
                   "refill and the allocation it served, or inside a batched free's commits): an interrupt's, "
                   "free_frozen_pages' trylock fails; replayed to the buddy (free_one_page)")
    if result.missing_frees:
        out.append(f"{result.missing_frees:,} allocations of a pfn the trace still held allocated "
                   "(its free is not in the trace; the emulated block stays allocated)")
    if result.lost_events:
        out.append(f"warning: the trace lost {result.lost_events:,} events; the replay is incomplete")
    if result.malformed:
        out.append(f"warning: {sum(result.malformed.values()):,} malformed kmem lines skipped")
    if result.skipped_lines.get("not an event line"):
        out.append(f"warning: {result.skipped_lines['not an event line']:,} of {result.lines:,} lines are not "
                   "trace event lines")
    out += [f"note: {n}" for n in result.config_notes]
    out += _start_text(result)
    for label, pol in result.policies.items():
        cfg = pol["config"]
        orders = sorted({o for e in pol["per_cpu"] for o in e["pcp_hit_rate"]})
        out.append("")
        out.append(f"policy {label}: {cfg['cpus']} CPUs, "
                   f"zones {cfg['zones']}, preset {cfg['name']}")
        out.append(f"{'':>5}{'pcp hit rate':>{9 * len(orders)}} {'refill blocks':>28} {'drained pages':>28} "
                   f"{'zone->lock':>10} {'fallbacks':>11}")
        out.append(f"{'cpu':>5}" + "".join(f"{'order ' + str(o):>9}" for o in orders)
                   + f" {'emulated':>10} {'traced':>10} {'ratio':>6} {'emulated':>10} {'traced':>10} "
                   f"{'ratio':>6} {'emulated':>10} {'emu':>5} {'trace':>5}")
        out += [_cpu_row(str(e["cpu"]), e, orders) for e in pol["per_cpu"]]
        out.append(_cpu_row("all", pol["total"], orders))
        if pol["total"]["alloc_failed"]:
            out.append(f"warning: {pol['total']['alloc_failed']:,} allocations the kernel made failed on the "
                       f"emulated machine (it reclaims and compacts nothing); {pol['total']['free_skipped']:,} "
                       "frees of them were skipped")
    return "\n".join(out) + "\n"
