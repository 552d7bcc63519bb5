"""A traced kernel's starting state, laid on an emulated machine before a replay.

From a capture's before-zoneinfo and before-pagetypeinfo: per zone, the pageblock
type counts ("Number of blocks type"), the free blocks per order and migratetype,
and per CPU the pcp ``count`` and ``high``. Every page that is not free belongs to
one "untraced" owner; frees of pages the kernel allocated before the trace began
come out of that owner (:class:`UntracedPool`), from a pageblock of the type the
trace shows for the real pfn.

What /proc does not say is chosen, and said so in :attr:`Seed.notes`: where each
pageblock lies (allocated ones low, wholly free ones high), and that the pcp pages
sit on the Movable order-0 list (zoneinfo prints only their sum).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..kernel.config import MAX_PAGE_ORDER
from ..kernel.ftrace import MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, VMSTAT_UPDATE
from ..kernel.gfp import MIGRATETYPE_NAMES, ZONE_NAMES
from .._replay import (carve_free_blocks, learn_block_types, pcp_count_moves, pcp_lists_add, refill_runs,
                       set_off_drains)
from ..machine import OP_DTYPE, OP_PCP_REVEAL, Machine, pcp_reveal_gfp

__all__ = ["PAGEBLOCK_ORDER", "UNTRACED", "AllocFactorRefills", "CpuEvents", "FirstDrains", "PcpLists", "Seed",
           "TracedPcpCounts", "UntracedPool", "ZoneGrowth", "folio_prepared", "pcp_batches", "real_zone_ranges",
           "seed_machine", "seed_pcp_lists", "seed_zones", "zone_table"]

#: Owner token of every page the trace did not allocate (below pcpemu's own, 2**62 and up).
UNTRACED = (1 << 62) - 1
PAGEBLOCK_ORDER = 9
_BLOCK = 1 << PAGEBLOCK_ORDER
_MOVABLE = MIGRATETYPE_NAMES.index("Movable")
_SEEDED_TYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic")
_NO_BULK = (np.zeros(0, np.int64),) * 4
#: Folios free_unref_folios takes at once (PAGEVEC_SIZE): it traces each one's
#: mm_page_free, then commits them one by one, each with an mm_page_free_batched.
_FOLIO_BATCH = 31


@dataclasses.dataclass
class Seed:
    """What was laid down, per zone, against what /proc showed."""

    zones: dict[str, dict[str, Any]]
    notes: list[str]


def _block_counts(nblocks: int, shown: dict[str, int], zone: str, notes: list[str]) -> np.ndarray:
    # The traced zone's pageblock counts, fitted to the emulated zone's pageblocks:
    # the difference (a zone spanning holes, a resized zone) goes to or from Movable.
    counts = np.array([shown.get(t, 0) for t in _SEEDED_TYPES], np.int64)
    counts[_MOVABLE] += sum(v for t, v in shown.items() if t not in _SEEDED_TYPES)
    diff = nblocks - int(counts.sum())
    counts[_MOVABLE] = max(counts[_MOVABLE] + diff, 0)
    while counts.sum() > nblocks:
        counts[int(np.argmax(counts))] -= 1
    if diff:
        notes.append(f"zone {zone}: {nblocks} pageblocks emulated, {nblocks - diff} shown; "
                     f"Movable takes the difference")
    return counts


def _layout(start: int, whole: int, counts: np.ndarray, free: np.ndarray, zone: str,
            notes: list[str]) -> tuple[np.ndarray, list[int], list[int]]:
    # Pageblock types and free blocks of the whole pageblocks [start, start + whole
    # blocks) of one zone. free[mt][order] as pagetypeinfo.
    free = free.copy()
    counts = counts.copy()
    # Wholly free pageblocks: order-10 pairs and order-9 singles, each single
    # beside a partly used block so the two never merge.
    pairs = [mt for mt in range(len(counts)) for _ in range(int(free[mt][10]))]
    singles = [mt for mt in range(len(counts)) for _ in range(int(free[mt][9]))]
    partial = counts.copy()
    for mt in pairs:
        partial[mt] -= 2
    for mt in singles:
        partial[mt] -= 1
    dropped = 0
    for mt in range(len(counts)):
        while partial[mt] < 0:
            if mt in singles:
                singles.remove(mt)
                partial[mt] += 1
            else:
                pairs.remove(mt)
                partial[mt] += 2
            dropped += 1
    # Blocks that must stay partly used to hold the free pages of orders 0-8.
    pages = (free[:, :PAGEBLOCK_ORDER] << np.arange(PAGEBLOCK_ORDER)).sum(axis=1)
    need = -(-pages // (_BLOCK - 1))

    def units() -> int:
        # Order-10 pairs the layout takes: pairs, singles (each beside a partly used
        # block or an allocated one) and the remaining partly used blocks two by two.
        return len(pairs) + len(singles) + -(-max(0, int(partial.sum()) - len(singles)) // 2)

    while units() > (whole - 1) // 2:
        spare = np.flatnonzero(partial > need)
        if len(spare):
            partial[spare[np.argmax(partial[spare])]] -= 1
        elif singles:
            singles.pop()
            dropped += 1
        elif pairs:
            pairs.pop()
            dropped += 1
        else:
            partial[int(np.argmax(partial))] -= 1
    if dropped:
        notes.append(f"zone {zone}: {dropped} wholly free block(s) of order 9/10 did not fit and stay allocated")
    # Partly used blocks first (low pfns), grouped by type; then the singles, each
    # beside a partly used block or an allocated one; then the pairs.
    partial_types = [mt for mt in (0, 2, 3, 1) for _ in range(int(partial[mt]))]
    types = np.full(whole, _MOVABLE, np.uint8)
    pfns: list[int] = []
    orders: list[int] = []
    regions_start: dict[int, list[int]] = {mt: [] for mt in range(len(counts))}
    n_alone = max(0, len(partial_types) - len(singles))
    b = 0
    for mt in partial_types[:n_alone]:
        types[b] = mt
        regions_start[mt].append(start + b * _BLOCK)
        b += 1
    b += (start // _BLOCK + b) % 2      # singles and pairs start on an order-10 boundary (a gap stays allocated)
    partners = partial_types[n_alone:]
    for i, mt in enumerate(singles):
        types[b] = mt
        pfns.append(start + b * _BLOCK)
        orders.append(PAGEBLOCK_ORDER)
        if i < len(partners):
            types[b + 1] = partners[i]
            regions_start[partners[i]].append(start + (b + 1) * _BLOCK)
        b += 2
    for mt in pairs:
        types[b] = types[b + 1] = mt
        pfns.append(start + b * _BLOCK)
        orders.append(MAX_PAGE_ORDER)
        b += 2
    # Free blocks of orders 8..0 carved from the partly used blocks of their type.
    missed = 0
    for mt, starts in regions_start.items():
        room = int(free[mt][:PAGEBLOCK_ORDER].sum())
        got_pfns, got_orders = np.empty(room, np.int64), np.empty(room, np.int8)
        n, lost = carve_free_blocks(np.array(sorted(starts), np.int64), np.ascontiguousarray(free[mt], np.int64),
                                    PAGEBLOCK_ORDER, got_pfns, got_orders)
        pfns += got_pfns[:n].tolist()
        orders += got_orders[:n].tolist()
        missed += lost
    if missed:
        notes.append(f"zone {zone}: {missed} free pages of orders 0-8 did not fit their pageblocks "
                     "and stay allocated")
    return types, pfns, orders


#: The migratetypes of the rest chain's lists, in its order within an order.
_CHAIN_TYPES = ("Movable", "Reclaimable", "Unmovable")


def _rest_chain(m: Machine) -> list[int]:
    # Where the pages no list is known to have held wait, best first: order 0 first
    # (_CHAIN_TYPES), then orders 1-3, then the THP lists.
    return [i for i in dict.fromkeys(m.order_to_pindex(t, o) for o in range(MAX_PAGE_ORDER + 1)
                                     for t in _CHAIN_TYPES) if i >= 0]


def _list_name(m: Machine, pindex: int) -> str:
    # "Movable order 9": a pcp list as the chain names it.
    order = int(m.pindex_order[pindex])
    return next(f"{t} order {order}" for t in _CHAIN_TYPES if m.order_to_pindex(t, order) == pindex)


def _rest_list(m: Machine, exact: set[int]) -> int:
    # The first list of the chain whose start the trace did not show exactly;
    # Movable order 0 when it showed all.
    chain = _rest_chain(m)
    return next((i for i in chain if i not in exact), chain[0])


def seed_machine(m: Machine, zoneinfo: dict, pagetypeinfo: dict,
                 pcp_lists: dict[tuple[str, int], dict[int, int]] | None = None,
                 pcp_exact: dict[tuple[str, int], set[int]] | None = None) -> Seed:
    """Lay the traced kernel's state on a machine that has run nothing: the zones
    (:func:`seed_zones`), then the pcp lists (:func:`seed_pcp_lists`)."""
    return seed_pcp_lists(m, zoneinfo, seed_zones(m, zoneinfo, pagetypeinfo), pcp_lists, pcp_exact)


def seed_zones(m: Machine, zoneinfo: dict, pagetypeinfo: dict) -> Seed:
    """Lay the traced kernel's zones on a machine that has run nothing: pageblock types
    and free blocks, all else the untraced owner's. Needs nothing of the trace (a
    replay lays them while the trace is read ahead); the pcp lists follow with
    :func:`seed_pcp_lists`.

    :param zoneinfo: what :func:`pcpemu.kernel.procfs.read_zoneinfo` returns.
    :param pagetypeinfo: what :func:`pcpemu.kernel.procfs.read_pagetypeinfo` returns.
    :raises ConfigError: when a populated emulated zone is missing from the dumps.
    """
    notes: list[str] = []
    report: dict[str, dict[str, Any]] = {}
    real = {z["name"]: z for z in zoneinfo["zones"] if z.get("managed")}
    for zp in m.populated_zones:
        z = real.get(zp.name)
        pti = pagetypeinfo["zones"].get(zp.name)
        if z is None or pti is None:
            raise ConfigError(f"zone {zp.name} is emulated but not in the capture's zoneinfo/pagetypeinfo")
        # The managed pages' pageblocks; short ones at either end stay allocated.
        fs, fe = zp.free_start, zp.free_start + zp.managed
        first, b0, b1 = fs // _BLOCK, -(-fs // _BLOCK), fe // _BLOCK
        counts = _block_counts(b1 - b0, pti["blocks"], zp.name, notes)
        free = np.zeros((len(_SEEDED_TYPES), MAX_PAGE_ORDER + 1), np.int64)
        for t, row in pti["free"].items():
            if t in _SEEDED_TYPES:
                free[_SEEDED_TYPES.index(t), : len(row)] = row[: MAX_PAGE_ORDER + 1]
        inner, pfns, orders = _layout(b0 * _BLOCK, b1 - b0, counts, free, zp.name, notes)
        types = np.full((fe - 1) // _BLOCK + 1 - first, _MOVABLE, np.uint8)
        types[b0 - first : b1 - first] = inner
        m.seed_zone(zp.name, types, np.array(pfns, np.int64), np.array(orders, np.int8), UNTRACED)
        report[zp.name] = {"shown_free_pages": int((free * (1 << np.arange(MAX_PAGE_ORDER + 1))).sum()),
                           "pageblocks": {t: int(c) for t, c in zip(_SEEDED_TYPES, counts)}}
    return Seed(report, notes)


def seed_pcp_lists(m: Machine, zoneinfo: dict, zones: Seed,
                   pcp_lists: dict[tuple[str, int], dict[int, int]] | None = None,
                   pcp_exact: dict[tuple[str, int], set[int]] | None = None) -> Seed:
    """Put each CPU's pcp pages and high on the zones :func:`seed_zones` laid, then
    zero the counters; returns the whole Seed.

    :param zones: what seed_zones returned for this machine.
    :param pcp_lists: blocks per pcp list (pindex) per (zone, cpu) that the trace shows
        were there (:meth:`PcpLists.lists`); each CPU's other pages go on the first list
        whose start pcp_exact (:meth:`PcpLists.exact_lists`) does not say the trace
        showed exactly (:func:`_rest_list`).
    """
    report: dict[str, dict[str, Any]] = {}
    notes = list(zones.notes)
    real = {z["name"]: z for z in zoneinfo["zones"] if z.get("managed")}
    for zp in m.populated_zones:
        sets = [p for p in real[zp.name]["pagesets"] if p["cpu"] < m.config.cpus]
        # The lists the trace shows were full (PcpLists), every CPU's, before the pages
        # it does not place, which would take the scarce pageblock types' pages from
        # the lists of those types (Machine.seed_pcp).
        shown = [_seed_shown_lists(m, zp, p, (pcp_lists or {}).get((zp.name, p["cpu"])) or {}) for p in sets]
        pcp = []
        for p, (high, left, lists) in zip(sets, shown):
            # The rest wait on the first list of the chain whose start the trace did not
            # show exactly. Fewer pages than one of its blocks are left over only when
            # every list before it was shown exactly: those pages were on none of them
            # when the trace began (the count moved after zoneinfo was read) and stay off.
            rest = _rest_list(m, (pcp_exact or {}).get((zp.name, p["cpu"]), set()))
            want = left >> int(m.pindex_order[rest])
            n = m.seed_pcp(zp.name, p["cpu"], want, high, UNTRACED, pindex=rest)
            lists[rest] = lists.get(rest, 0) + n
            rest_pages = n << int(m.pindex_order[rest])
            placed = sum(n << int(m.pindex_order[i]) for i, n in lists.items())
            if placed < p.get("count", 0):
                why = ("fewer than a block of the list the rest wait on, and the trace showed exactly what every "
                       "list before it held" if n == want else "the untraced owner had no more blocks for the list "
                       "the rest wait on")
                notes.append(f"zone {zp.name} cpu {p['cpu']}: {p['count'] - placed} of the {p['count']} pcp pages "
                             f"zoneinfo printed are left off: {why} ({_list_name(m, rest)})")
            pcp.append({"cpu": p["cpu"], "count": placed, "high": high, "shown_count": p.get("count", 0),
                        "lists": {int(i): int(n) for i, n in lists.items() if n},
                        "rest": {"pindex": rest, "pages": int(rest_pages)}})
        state = m.zone_state(zp.name)
        report[zp.name] = {"free_pages": int(state["nr_free_pages"]), **zones.zones[zp.name], "pcp": pcp}
    notes.append("pcp pages the trace does not place on a list start on the first of the chain Movable, "
                 "Reclaimable, Unmovable order 0, orders 1-3, THP whose start it did not show "
                 "(zoneinfo prints only each CPU's count)")
    m.reset_stats()
    return Seed(report, notes)


def _seed_shown_lists(m: Machine, zp: Any, pageset: dict, blocks: dict[int, int]) -> tuple[int, int, dict[int, int]]:
    # One CPU's lists the trace shows were full, on seed_pcp_lists' zone: its high,
    # the pages of zoneinfo's count still to place, and blocks per pindex placed.
    high = pageset.get("high", zp.high_min)
    left = pageset.get("count", 0)
    lists = {}
    for pindex, want in sorted(blocks.items()):
        size = 1 << int(m.pindex_order[pindex])
        n = min(want, left // size)
        if n:
            lists[pindex] = m.seed_pcp(zp.name, pageset["cpu"], n, high, UNTRACED, pindex=pindex)
            left -= lists[pindex] * size
    return high, left, lists


def real_zone_ranges(zoneinfo: dict) -> list[tuple[str, int, int]]:
    """(name, start_pfn, end_pfn) of the traced kernel's populated zones."""
    return [(z["name"], z["start_pfn"], z["start_pfn"] + z["spanned"])
            for z in zoneinfo["zones"] if z.get("managed") and "start_pfn" in z]


def zone_table(ranges: list[tuple[str, int, int]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """real_zone_ranges as names and the start and end pfns the per-event loops take."""
    return ([r[0] for r in ranges], np.array([r[1] for r in ranges], np.int64),
            np.array([r[2] for r in ranges], np.int64))


def pcp_batches(zoneinfo: dict) -> dict[tuple[str, int], int]:
    # pcp->batch per (zone, cpu), as a zoneinfo dump prints it.
    return {(z["name"], p["cpu"]): p["batch"] for z in zoneinfo["zones"] for p in z.get("pagesets", ())
            if p.get("batch")}


def _zone_index(starts: np.ndarray, ends: np.ndarray, pfn: np.ndarray) -> np.ndarray:
    # Index of the zone (of a zone_table) each pfn lies in: the last that starts at or
    # below it, -1 when it lies past that zone's end or below them all.
    zi = np.searchsorted(starts, pfn, side="right") - 1
    return np.where((zi >= 0) & (pfn < ends[np.maximum(zi, 0)]), zi, -1)


class TracedPcpCounts:
    """Each (zone, CPU)'s pcp->count as the kernel's own events move it, from what
    before-zoneinfo printed (pcpemu._replay.pcp_count_moves). Beside the count
    after-zoneinfo prints, the difference is what moved the lists with no event:
    alloc_pages_bulk, or a count that changed between the zoneinfo read and the
    trace's start. It sets how far the emulated count can follow the kernel's."""

    def __init__(self, zoneinfo: dict, nr_cpus: int, pcp_orders: np.ndarray) -> None:
        self.names, self.starts, self.ends = zone_table(real_zone_ranges(zoneinfo))
        self.pcp_orders = pcp_orders.astype(np.uint8)
        self.moved = np.zeros((len(self.names), nr_cpus), np.int64)
        self.before = {(z["name"], p["cpu"]): p.get("count") for z in zoneinfo["zones"] for p in z.get("pagesets", ())}

    def add(self, ev: np.ndarray) -> None:
        """Take in a batch of the kernel's events."""
        pcp_count_moves(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["percpu_refill"], self.pcp_orders,
                        self.starts, self.ends, self.moved)

    def count(self, zone: str, cpu: int) -> int | None:
        """The count before-zoneinfo printed plus what the events so far did to it;
        None when before-zoneinfo has no count for it."""
        return self.count_after(None, zone, cpu)

    def count_after(self, ev: np.ndarray | None, zone: str, cpu: int) -> int | None:
        """count, with the events ev (not taken in) after those so far."""
        before = self.before.get((zone, cpu))
        if before is None or zone not in self.names or cpu >= self.moved.shape[1]:
            return None
        moved = self.moved
        if ev is not None:
            moved = moved.copy()
            pcp_count_moves(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["percpu_refill"], self.pcp_orders,
                            self.starts, self.ends, moved)
        return before + int(moved[self.names.index(zone), cpu])


class FirstDrains:
    """Where the traced kernel's pcp->count stood, once per (zone, CPU), at the first
    drain that pins it down. A drain a free set off (free_frozen_page_commit): the
    order-0 free brought count up to high (count >= nr_pcp_high). A drain the vmstat
    worker set off (decay_pcp_high) of fewer than batch << CONFIG_PCP_BATCH_SCALE_MAX
    pages: high fell by an eighth (not below high_min; or stayed at high_min) and
    count was that high plus the pages drained (with decay_batched, plus what the
    drain's calls of pcp->batch pages asked for, :func:`batched_to_drain`, which
    may be fewer). Pages that moved the lists with no event before it
    (alloc_pages_bulk, a count that changed between the zoneinfo read and the
    trace's start; TracedPcpCounts) shift that drain, and every one after. The
    replay puts them right there (Machine.pcp_untraced_move): before the run of frees
    that led up to the drain, or before the worker run, the emulated count is set so
    that the emulated pcp drains there as the kernel's did. The pages it adds are
    ones the trace has not shown, and wait with them (PcpLists.wait_more). Later
    drains are the emulator's own.
    """

    def __init__(self, zoneinfo: dict, nr_cpus: int, pcp_orders: np.ndarray, batch_scale_max: int,
                 decay_batched: bool = False) -> None:
        self.names, self.starts, self.ends = zone_table(real_zone_ranges(zoneinfo))
        self.pcp_orders = pcp_orders
        batches = pcp_batches(zoneinfo)
        self.batches = batches if decay_batched else {}
        # A worker drain of batch << CONFIG_PCP_BATCH_SCALE_MAX pages may have been capped: it pins nothing.
        self.full_drain = {pcp: batch << batch_scale_max for pcp, batch in batches.items()}
        self.done = np.zeros((len(self.names), nr_cpus), bool)
        self.found: list[dict[str, Any]] = []

    def find(self, ev: np.ndarray) -> list[tuple[int, int, int, str, int, int]]:
        """The first such drains in a batch of the kernel's events, each as (event
        index the sync goes before, zone index, cpu, what set it off: "free" or
        "vmstat_update", pages, order-0 pages). For a free: before its run of frees
        (the batch's start at most), pages the run freed to that pcp up to the free
        that set it off. For the worker: before its run, pages drained from that pcp,
        and of them the order-0 pages, which its order-0 lists held then (0 for a free)."""
        kind, cpus, pfn = ev["kind"], ev["cpu"], ev["pfn"]
        out = []
        runs = set_off_drains(kind, cpus, pfn, self.starts, self.ends, self.done.view(np.uint8))
        mine = {c: CpuEvents(ev, c) for c in np.unique(cpus[runs]).tolist()}
        for d in runs[_may_pin(ev, runs, mine)].tolist():
            c = int(cpus[d])
            z = int(np.searchsorted(self.starts, pfn[d], side="right")) - 1
            if self.done[z, c]:
                continue
            evc = mine[c]
            x = int(np.searchsorted(evc.index, d)) - 1      # the CPU's event before the drain
            by_worker = evc.kind[x] == VMSTAT_UPDATE
            found = self._by_worker(evc, x, z, c) if by_worker else self._by_free(evc, x, z)
            if found is not None:
                self.done[z, c] = True
                out.append((found[0], z, c, "vmstat_update" if by_worker else "free", *found[1:]))
        return out

    def _by_free(self, evc: CpuEvents, x: int, z: int) -> tuple[int, int, int] | None:
        kind, pfn, order = evc.kind, evc.pfn, evc.order
        drain = x + 1
        if kind[x] == MM_PAGE_FREE_BATCHED:                 # committed after the frees of its batch
            x = folio_prepared(kind, pfn, x)
        # A drain of the same batch of folios before this one took pages the frees
        # counted below do not show.
        if x < 0 or order[x] != 0 or (kind[x + 1:drain] == MM_PAGE_PCPU_DRAIN).any():
            return None
        others = np.flatnonzero((kind[:x] != MM_PAGE_FREE) & (kind[:x] != MM_PAGE_FREE_BATCHED))
        r = int(others[-1]) + 1 if len(others) else 0      # the run of frees starts after the last other event
        run = slice(r, x)
        mine = (kind[run] == MM_PAGE_FREE) & (pfn[run] >= self.starts[z]) & (pfn[run] < self.ends[z]) \
            & (order[run] >= 0)
        freed = int((1 << order[run][mine].astype(np.int64))[self.pcp_orders[order[run][mine]]].sum())
        return (int(evc.index[r]) if r > 0 else 0), freed, 0

    def _by_worker(self, evc: CpuEvents, x: int, z: int, c: int) -> tuple[int, int, int] | None:
        kind, pfn, order = evc.kind, evc.pfn, evc.order
        end = x + 1
        while end < len(kind) and kind[end] == MM_PAGE_PCPU_DRAIN:
            end += 1
        run = slice(x + 1, end)
        mine = (pfn[run] >= self.starts[z]) & (pfn[run] < self.ends[z])
        blocks = 1 << order[run][mine].astype(np.int64)
        batch = self.batches.get((self.names[z], c))
        drained = batched_to_drain(blocks.tolist(), batch) if batch else int(blocks.sum())
        if end == len(kind) or drained >= self.full_drain.get((self.names[z], c), 0):
            return None         # the run may go on in the next batch, or was capped
        return int(evc.index[x]), drained, int((order[run][mine] == 0).sum())


class CpuEvents:
    """One CPU's events of a batch (kind, pfn, order) and their indexes in it."""

    def __init__(self, ev: np.ndarray, cpu: int) -> None:
        self.cpu = cpu
        self.index = np.flatnonzero(ev["cpu"] == cpu)
        self.kind, self.pfn, self.order = (ev[f][self.index] for f in ("kind", "pfn", "order"))


def folio_prepared(kind: np.ndarray, pfn: np.ndarray, commit: int) -> int:
    """The mm_page_free that free_unref_folios traced for the page whose
    mm_page_free_batched is one CPU's event ``commit`` (kind, pfn: that CPU's events),
    among the events of its folio batch before it (drains between them skipped); -1
    when none is there."""
    # Looked for in a window that widens until it holds 2 * _FOLIO_BATCH such events.
    for span in (256, 8192, commit):
        lo = max(0, commit - span)
        before = (lo + np.flatnonzero(kind[lo:commit] != MM_PAGE_PCPU_DRAIN))[-2 * _FOLIO_BATCH:]
        if len(before) == 2 * _FOLIO_BATCH or lo == 0:
            break
    hit = before[(kind[before] == MM_PAGE_FREE) & (pfn[before] == pfn[commit])]
    return int(hit[-1]) if len(hit) else -1


def _may_pin(ev: np.ndarray, found: np.ndarray, mine: dict[int, CpuEvents]) -> np.ndarray:
    # Of the drain runs set_off_drains found, those FirstDrains looks at: after a
    # free of order 0, a vmstat worker run, or a folio batch's commit of a page an
    # order-0 mm_page_free of the batch shows. The others (mTHP frees set off
    # thousands) pin nothing (FirstDrains._by_free), and are left out in one pass.
    # mine: the events of each CPU a run is on.
    kind, cpus, pfn, order = ev["kind"], ev["cpu"], ev["pfn"], ev["order"]
    keep = np.zeros(len(found), bool)
    for c, evc in mine.items():
        sel = cpus[found] == c
        x = evc.index[np.searchsorted(evc.index, found[sel]) - 1]     # the CPU's event before each run
        order0 = np.unique(evc.pfn[(evc.kind == MM_PAGE_FREE) & (evc.order == 0)])
        keep[sel] = ((kind[x] == VMSTAT_UPDATE) | ((kind[x] == MM_PAGE_FREE) & (order[x] == 0))
                     | ((kind[x] == MM_PAGE_FREE_BATCHED) & np.isin(pfn[x], order0)))
    return keep


def batched_to_drain(blocks: list[int], batch: int) -> int:
    """count - high of a decay_pcp_high that drains in free_pcppages_bulk calls of
    batch pages (decay_batched), from the pages of each block it drained, in order:
    a call ends at the first block that brings it to its share, so every call but
    the last asked for batch pages; the last asked for what it drained, batch at most
    (exact unless it ended on a block larger than what was left of its share)."""
    calls, last = 1, 0
    for pages in blocks:
        if last >= batch:
            calls, last = calls + 1, 0
        last += pages
    return batch * (calls - 1) + min(last, batch)


class AllocFactorRefills:
    """What the traced kernel's order-0 refills show of pcp->alloc_factor, which /proc
    does not print. nr_pcp_alloc refills batch << alloc_factor order-0 blocks unless
    high - count - batch caps it, so a refill of batch << k blocks says alloc_factor
    was k there; one of another size was capped and tells nothing. Two things follow
    from that, and the replay sets the emulated alloc_factor to k just before such an
    allocation (Machine.pcp_set_alloc_factor):

    - the first refill on each (zone, CPU) (``first``): a machine started from the
      traced kernel's state would start alloc_factor at 0. A capped first refill of n
      blocks still says batch << alloc_factor was above n (``at_least``), and an
      emulated alloc_factor below that is raised to it;
    - a fall no event accounts for (``falls``). After a refill of batch << k blocks
      nr_pcp_alloc leaves alloc_factor at k + 1 (not past CONFIG_PCP_BATCH_SCALE_MAX),
      and only a free to that pcp lowers it (free_frozen_page_commit halves it). Yet
      in the 6.18 captures a refill of one batch right after a bigger one with no free
      between, then 2 * batch, is common (compile, pyobjects), and the emulator's
      rules cannot make it. A capped refill of exactly one batch cannot be told from a
      fall to 0 (a fall is what the refill after it shows in all but 1 of 31 such
      places).

    A refill run goes on through a fallback's extfrag event; one a batch of events
    ends is finished in the next batch, and its setting goes before that batch's
    first op.
    """

    def __init__(self, zoneinfo: dict, nr_cpus: int, pcp_orders: np.ndarray, batch_scale_max: int) -> None:
        self.names, self.starts, self.ends = zone_table(real_zone_ranges(zoneinfo))
        self.batch = pcp_batches(zoneinfo)
        self.pcp_orders = np.ascontiguousarray(pcp_orders, np.uint8)
        self.scale_max = batch_scale_max
        nz = len(self.names)
        self.left = np.full((nz, nr_cpus), -1, np.int64)     # alloc_factor the last refill left (-1: not shown)
        self.frees = np.zeros((nz, nr_cpus), np.int64)       # pcp frees since that refill
        self.seen = np.zeros((nz, nr_cpus), bool)            # the first refill has run
        self.run = np.full((nr_cpus, 3), -1, np.int64)       # per CPU: zone, blocks, start of a run the batch ended
        self.first: list[dict[str, Any]] = []
        self.falls: list[dict[str, Any]] = []

    def find(self, ev: np.ndarray) -> list[tuple[int, dict[str, Any]]]:
        """The settings a batch of the kernel's events calls for, each as (event index it
        goes before, its row in first or falls: zone, cpu, blocks, alloc_factor, for a
        fall the one the events leave, and the emulated one it replaced, by machine)."""
        rows = np.empty((len(ev), 5), np.int64)
        n = refill_runs(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["percpu_refill"], self.pcp_orders,
                        self.starts, self.ends, self.frees, self.run, rows)
        out: list[tuple[int, dict[str, Any]]] = []
        # A CPU's runs after another's, as the rows are listed.
        for at, c, z, blocks, frees in rows[:n][np.argsort(rows[:n, 1], kind="stable")].tolist():
            self._close(out, at, z, c, blocks, frees)
        return out

    def _close(self, out: list, at: int, z: int, c: int, blocks: int, frees: int) -> None:
        # A whole refill run (frees: pcp frees since the run there before): the first
        # one's alloc_factor or a fall it shows, and what it leaves.
        batch = self.batch.get((self.names[z], c), 0)
        k = _alloc_factor_shown(blocks, batch, self.scale_max)
        least = _alloc_factor_floor(blocks, batch, self.scale_max)
        row = {"zone": self.names[z], "cpu": c, "blocks": blocks, "alloc_factor": k}
        if not self.seen[z, c]:
            self.seen[z, c] = True
            if k is None:
                row["at_least"] = least
            self.first.append({**row, "was": {}})
            if k is not None or row["at_least"]:
                out.append((at, self.first[-1]))
        elif k is not None and self.left[z, c] >= 0:
            expected = int(self.left[z, c]) >> min(frees, 8)
            if k < expected:
                self.falls.append({**row, "expected": expected, "was": {}})
                out.append((at, self.falls[-1]))
        # A capped refill leaves alloc_factor as it was: at least the least it shows.
        self.left[z, c] = least if k is None else min(k + 1, self.scale_max)


def _alloc_factor_shown(blocks: int, batch: int, scale_max: int) -> int | None:
    # The k of an order-0 refill of batch << k blocks (nr_pcp_alloc); None for another
    # size, which high - count capped.
    k = (blocks // batch).bit_length() - 1 if batch and blocks % batch == 0 else -1
    return k if 0 <= k <= scale_max and batch << k == blocks else None


def _alloc_factor_floor(blocks: int, batch: int, scale_max: int) -> int:
    # The least alloc_factor a capped order-0 refill of this size allows: nr_pcp_alloc
    # capped batch << alloc_factor at high - count - batch, so it was above blocks.
    return min((blocks // batch).bit_length(), scale_max) if batch else 0


class UntracedPool:
    """Blocks of the untraced owner, handed out for frees of pages allocated before
    the trace: from the zone the real pfn lies in, in a pageblock of the type the
    trace last showed for the real pfn's pageblock (Movable when it showed none:
    block_mt -1)."""

    def __init__(self, zoneinfo: dict, emulated_zones: list[str]) -> None:
        ranges = [r for r in real_zone_ranges(zoneinfo) if r[0] in emulated_zones]
        if not ranges:
            raise ConfigError("the capture's zoneinfo shares no populated zone with the emulated machine")
        self.names, self.starts, self.ends = zone_table(ranges)
        self.block_mt = np.full(int(self.ends.max() >> PAGEBLOCK_ORDER) + 1, -1, np.int8)
        self.cursors: dict[tuple[int, int, int], np.ndarray] = {}
        self.exhausted = 0
        self.other_type = 0         # frees that found no block of their type and took another
        self.retyped = 0            # pageblocks of the owner's alone given the type the trace shows

    def learn_events(self, ev: np.ndarray) -> None:
        """Note the pageblock types a batch shows: the last of its events that name a
        pfn and a list's type (mm_page_alloc, mm_page_alloc_zone_locked,
        mm_page_pcpu_drain) in each pageblock (pcpemu._replay.learn_block_types). CMA
        and highatomic pages sit on the Movable pcp lists (free_unref_page)."""
        learn_block_types(ev["kind"], ev["pfn"], ev["migratetype"], self.block_mt, int(self.ends.max()),
                          PAGEBLOCK_ORDER, _MOVABLE)

    def zone_of(self, pfn: np.ndarray) -> np.ndarray:
        """Index into names of the zone each real pfn lies in, -1 outside them all."""
        return _zone_index(self.starts, self.ends, pfn)

    def take(self, machines: list[Machine], pfn: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, list]:
        """Blocks for frees of the real (pfn, order) pairs on every machine.

        :return: which frees got a block, and per machine the head pfns of those.
        """
        zi = self.zone_of(pfn)
        shown = self.block_mt[np.clip(pfn >> PAGEBLOCK_ORDER, 0, len(self.block_mt) - 1)]
        mt = np.where(zi >= 0, np.where(shown < 0, _MOVABLE, shown), -1)
        got = np.zeros(len(pfn), bool)
        out = [np.full(len(pfn), -1, np.int64) for _ in machines]
        # One int per (zone, type, order), in the order of those triples; -1 outside the zones.
        keys = np.where(zi >= 0, zi << 16 | (mt.astype(np.int64) + 128) << 8 | (order.astype(np.int64) + 128), -1)
        for key in np.unique(keys[zi >= 0]).tolist():
            z, t, o = key >> 16, (key >> 8 & 255) - 128, (key & 255) - 128
            want = np.flatnonzero(keys == key)
            # The shown type first; then a pageblock of the owner's alone, retyped to it
            # (_claim), for as long as there is one and it serves; then any type.
            claimed = False
            while (need := want[~got[want]]).size:
                n = self._take(machines, z, t, o, need, out)
                got[need[:n]] = True
                if n == len(need) or o > PAGEBLOCK_ORDER or (claimed and not n) or not self._claim(machines, z, t):
                    break
                claimed = True
            if (need := want[~got[want]]).size:
                self.other_type += len(need)
                got[need[:self._take(machines, z, -1, o, need, out)]] = True
        self.exhausted += int(np.count_nonzero(~got))
        return got, [o[got] for o in out]

    def _on_every(self, machines: list[Machine], key: tuple[int, int, int],
                  call: Callable[[Machine, np.ndarray], Any]) -> list[Any]:
        # call(machine, cursor) on every machine from the same cursor (the machines are
        # alike, so they find the same blocks); only the first one's moves it on.
        cursor = self.cursors.setdefault(key, np.zeros(1, np.int64))
        before = cursor.copy()
        return [call(mm, cursor if i == 0 else before.copy()) for i, mm in enumerate(machines)]

    def _take(self, machines: list[Machine], z: int, mt: int, order: int, need: np.ndarray,
              out: list[np.ndarray]) -> int:
        # Blocks of the owner's pages from pageblocks of type mt (-1: any) for the frees
        # need, the same ones on every machine; how many it found.
        pfns = self._on_every(machines, (z, mt, order), lambda mm, cursor: mm.take_untraced(
            self.names[z], mt, order, len(need), UNTRACED, cursor))
        for i, p in enumerate(pfns):
            out[i][need[:len(p)]] = p
        return len(pfns[0])

    def _claim(self, machines: list[Machine], z: int, mt: int) -> bool:
        # The next pageblock of the owner's pages alone, retyped mt on every machine.
        found = self._on_every(machines, (z, -2, 0), lambda mm, cursor: mm.claim_untraced_pageblock(
            self.names[z], mt, UNTRACED, cursor))[0]
        if found < 0:
            return False
        self.retyped += 1
        for (zi, t, _), take_from in self.cursors.items():      # the takes of type mt look at it again
            if zi == z and t == mt:
                take_from[0] = min(take_from[0], found)
        return True


class PcpLists:
    """What each pcp list held when the trace began, read off the trace itself.

    Per (zone, CPU, list), in blocks: allocations take one, frees (to the list of
    the page's pageblock type, as far as the trace shows it) and refill blocks
    add one, drained blocks take one. A list is refilled only when empty, and
    free_pcppages_bulk empties a list before it moves to the next, so at a list's
    first refill, or at a drain run that goes on to another list after it, what
    the list held at the start is known exactly; otherwise it held at least
    enough for its deepest dip (pcpemu._replay.pcp_lists_add).

    The replay reads a first stretch of the trace (:meth:`add`) and lays the lists
    from it (:meth:`lists`, :meth:`exact_lists`); the pages it could not place wait
    on one list per CPU (kstate._rest_list). Past that stretch (:meth:`stream_from`,
    :meth:`reveals`), a dip below a list's deepest takes a block of the waiting
    pages there (an OP_PCP_REVEAL op before the event; for a drain, before the frees
    that set it off), and when the trace shows the waiting list empty, what is still
    on it moves on to the next list of the chain (kstate._rest_chain) it has not
    shown empty. Throughout, a list whose start is known tells, at a refill, blocks
    that left it with no event (an untraced take) and, at an allocation of a page no
    event put on a pcp list that takes it below empty, blocks that came onto it with
    no event (an arrival).
    """

    def __init__(self, m: Machine, zoneinfo: dict) -> None:
        self.pool = UntracedPool(zoneinfo, [z.name for z in m.populated_zones])
        nz, nl, ncpu = len(self.pool.names), m.nr_pcp_lists, m.config.cpus
        self.pindex = np.array([[m.order_to_pindex(t, o) for o in range(MAX_PAGE_ORDER + 1)]
                                for t in ("Unmovable", "Movable", "Reclaimable")], np.int64)
        # Each list's order and (first) migratetype, for the ops.
        self.list_order = np.asarray(m.pindex_order, np.int64)
        self.list_mt = np.zeros(nl, np.int64)
        for mt in range(len(self.pindex) - 1, -1, -1):
            ok = self.pindex[mt] >= 0
            self.list_mt[self.pindex[mt][ok]] = mt
        self.chain = np.array(_rest_chain(m), np.int64)
        self.zone_idx = np.array([ZONE_NAMES.index(z) for z in self.pool.names], np.int64)
        self.balance = np.zeros((nz, ncpu, nl), np.int64)
        self.need = np.zeros((nz, ncpu, nl), np.int64)         # lower bound
        self.exact = np.full((nz, ncpu, nl), -1, np.int64)     # -1: not known yet
        self.rest = np.full((nz, ncpu), -1, np.int64)          # the waiting list; -1: none yet
        self.left = np.zeros((nz, ncpu), np.int64)             # pages on it the trace has not shown
        self.refilling = np.full(ncpu, -1, np.int64)            # the list a refill under way fills
        self.guessed = np.zeros((nz, ncpu, nl), np.int64)      # frees of pageblocks of no type shown

    def learn(self, ev: np.ndarray) -> None:
        """Note the pageblock types a batch shows (before :meth:`add` of earlier batches,
        so that a free's list is the one its page shows in the whole read-ahead)."""
        self.pool.learn_events(ev)

    def add(self, ev: np.ndarray, unplaced: np.ndarray | None = None,
            bulk: tuple[np.ndarray, ...] = _NO_BULK) -> list[tuple]:
        """Take in a batch of events of the first stretch, in trace order.

        :param unplaced: per event, an allocation of a page no event had put on a pcp
            list (replay._Matcher.ops; None: none).
        :param bulk: the order-0 allocations the kernel did not trace, merged in:
            (event index each goes before, ascending; cpu; pfn; the list's migratetype).
        :return: the untraced takes the batch shows (see :meth:`reveals`).
        """
        return self.reveals(ev, unplaced, bulk)[3]

    def stream_from(self, seeded: Seed) -> None:
        """Past the first stretch: the waiting lists and pages where seed_pcp_lists put
        them."""
        for zone, info in seeded.zones.items():
            for p in info["pcp"]:
                z = self.pool.names.index(zone)
                self.rest[z, p["cpu"]], self.left[z, p["cpu"]] = p["rest"]["pindex"], p["rest"]["pages"]

    def waiting_list(self, zone: str, cpu: int) -> int | None:
        """The pindex where a CPU's pages the trace has not placed wait now (None
        before :meth:`stream_from`)."""
        rest = int(self.rest[self.pool.names.index(zone), cpu])
        return rest if rest >= 0 else None

    def wait_more(self, zone: str, cpu: int, pages: int) -> None:
        """Pages that joined the waiting ones (or, below zero, left them) with no
        event: the first drain's count pin (replay._first_drain_sync)."""
        z = self.pool.names.index(zone)
        self.left[z, cpu] = max(self.left[z, cpu] + pages, 0)

    def reveals(self, ev: np.ndarray, unplaced: np.ndarray | None = None,
                bulk: tuple[np.ndarray, ...] = _NO_BULK) -> tuple[np.ndarray, ...]:
        """Take in a batch of events past the first stretch, in trace order.

        :param unplaced, bulk: as for :meth:`add`.
        :return: the OP_PCP_REVEAL ops the batch calls for, the event index each goes
            before and its sort key among the untraced allocations (bulk s: 2 *
            (at[s] + s) + 1); and the untraced takes: per refill of a list the trace
            still held blocks on (rmqueue_bulk refills only an empty list), (event
            index, zone, cpu, migratetype, order, blocks, of those the ones that went to
            the Unmovable list, True), blocks below zero where the trace held fewer
            than none (a page it put on another list); and per allocation off a list
            the trace shows empty, (event index, zone, cpu, migratetype, order, minus
            the blocks that came onto it with no event, 0, False).
        """
        at, cpu, pfn, mt = bulk
        out, taken = pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                   ev["percpu_refill"], np.ascontiguousarray(at, np.int64),
                                   np.ascontiguousarray(cpu, np.uint16), np.ascontiguousarray(pfn, np.int64),
                                   np.ascontiguousarray(mt, np.int8), self.pool.starts, self.pool.ends,
                                   self.pool.block_mt, PAGEBLOCK_ORDER, _MOVABLE, self.pindex, 1 << self.list_order,
                                   self.chain, self.balance, self.need, self.exact, self.rest, self.left,
                                   self.refilling, self.guessed,
                                   np.zeros(len(ev), np.uint8) if unplaced is None else unplaced)
        ops = np.zeros(len(out), OP_DTYPE)
        src, dst = out[:, 4], out[:, 5]
        ops["op"], ops["cpu"], ops["order"] = OP_PCP_REVEAL, out[:, 3], self.list_order[dst]
        ops["gfp"] = pcp_reveal_gfp(self.zone_idx[out[:, 2]], self.list_mt[src], self.list_mt[dst], out[:, 6],
                                    self.list_order[src])
        takes = [(at, self.pool.names[z], c, MIGRATETYPE_NAMES[self.list_mt[li]], int(self.list_order[li]), n, moved,
                  bool(refill)) for at, z, c, li, n, moved, refill in taken.tolist()]
        return ops, out[:, 0], out[:, 1], takes

    def exact_lists(self) -> dict[tuple[str, int], set[int]]:
        """The lists whose start a refill showed exactly, per (zone, cpu)."""
        out: dict[tuple[str, int], set[int]] = {}
        for z, c, li in zip(*np.nonzero(self.exact >= 0)):
            out.setdefault((self.pool.names[z], int(c)), set()).add(int(li))
        return out

    def lists(self) -> dict[tuple[str, int], dict[int, int]]:
        """Blocks per pindex per (zone, cpu): the exact start where a refill showed it,
        else the least that covers every dip."""
        held = np.where(self.exact >= 0, self.exact, self.need).clip(min=0)
        out: dict[tuple[str, int], dict[int, int]] = {}
        for z, c, li in zip(*np.nonzero(held)):
            out.setdefault((self.pool.names[z], int(c)), {})[int(li)] = int(held[z, c, li])
        return out


class ZoneGrowth:
    """Memory that came into a zone while the trace ran, read off the trace itself.

    New memory reaches the buddy through __free_pages_core, which frees it in
    MAX_PAGE_ORDER blocks (online_pages -> generic_online_page, or deferred
    struct-page init growing a zone on demand from get_page_from_freelist): each
    traces an mm_page_free of order MAX_PAGE_ORDER for a pfn past the memory the
    zone had online when the trace began, which no allocation could have handed out.
    That memory is the zone's pageblocks in before-pagetypeinfo ("Number of blocks
    type"), or its managed pages when more: managed pages leave out the reserved
    ones, whose pageblocks are online all the same (e.g. DMA32 here: 1,528 blocks,
    782,336 pages, 772,915 managed).
    The kernel then recomputes the watermarks and pcp limits from the new size
    (init_per_zone_wmark_min -> setup_per_zone_wmarks -> zone_pcp_update); the
    emulated zone grows by as much (Machine.grow_zone) with the values
    pcpemu.kernel.watermark gives for that size.
    """

    def __init__(self, zoneinfo: dict, pagetypeinfo: dict, config: Any, emulated_zones: list[str]) -> None:
        ranges = [r for r in real_zone_ranges(zoneinfo) if r[0] in emulated_zones]
        managed = {z["name"]: z["managed"] for z in zoneinfo["zones"] if z.get("managed")}
        blocks = {name: sum(z["blocks"].values()) for name, z in pagetypeinfo["zones"].items()}
        self.names = [r[0] for r in ranges]
        self.ends = np.array([r[2] for r in ranges], np.int64)
        # The online memory is taken to start at start_pfn: what lies past it was not
        # online when the trace began.
        self.online_ends = np.array([r[1] + max(managed[r[0]], blocks.get(r[0], 0) << PAGEBLOCK_ORDER)
                                     for r in ranges], np.int64)
        self.config = config
        self.grown: dict[str, int] = {}

    def find(self, pfn: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Index into names of the zone each free of a never-allocated page grew, -1 for none."""
        zi = np.searchsorted(self.online_ends, pfn, side="right") - 1
        ok = (zi >= 0) & (order == MAX_PAGE_ORDER)
        zc = np.maximum(zi, 0)
        ok &= (pfn >= self.online_ends[zc]) & (pfn < self.ends[zc])
        return np.where(ok, zi, -1)

    def grow(self, zone: str, nr_pages: int) -> Any:
        """Note that the zone grew; its ZoneParams (watermarks, pcp limits) at the new
        size, for Machine.grow_zone."""
        from ..kernel.watermark import setup_zones

        self.grown[zone] = self.grown.get(zone, 0) + nr_pages
        zones = {name: dict(z) for name, z in self.config.zones.items()}
        zones[zone]["managed"] += self.grown[zone]
        return next(p for p in setup_zones(self.config.replace(zones=zones))[1] if p.name == zone)
