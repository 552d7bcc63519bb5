"""Trace replay: a real ftrace ``kmem:`` capture run on an emulated machine.

Each traced mm_page_alloc becomes an emulated allocation (same CPU, order and gfp) and
each traced mm_page_free frees its counterpart; the kernel's own answer - the
mm_page_alloc_zone_locked refills, mm_page_pcpu_drain drains and mm_page_alloc_extfrag
fallbacks of include/trace/events/kmem.h - is counted, not replayed, and set beside the
emulator's counters per CPU.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple, TextIO

import numpy as np

from ..kernel.config import MAX_PAGE_ORDER, PAGEBLOCK_ORDER, KernelConfig, parse_zones
from ..errors import ConfigError, TraceFormatError
from ..kernel.ftrace import (
    EVENT_NAMES,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    PFN_FAILED,
    VMSTAT_UPDATE,
    TraceStats,
    read_event_batches,
    write_ftrace,
)
from ..kernel.gfp import (MIGRATE_MOVABLE, MIGRATE_PCPTYPES, ZONE_BELOW_HIGH, ZONE_NAMES, ZONE_RECLAIM_ACTIVE,
                          parse_gfp)
from ..kernel.zoneinfo import static_differences
from .. import _replay
from ..machine import OP_ALLOC_BULK, OP_DTYPE, OP_GFP_ZONE_SHIFT, Machine, Trace
from .kstate import (AllocFactorRefills, FirstDrains, PcpLists, TracedPcpCounts, UntracedPool, ZoneGrowth,
                     real_zone_ranges, seed_pcp_lists, seed_zones, zone_table)
from .drains import ExplicitDrains, find_explicit_drains
from .freehigh import FreeHighDrains
from .reclaim import BalancePgdatRuns, wakes_and_sleeps
from .workloads import OP_ALLOC, OP_FREE

__all__ = ["FIGURES", "OneNode", "ReplayResult", "SKIP_REASONS", "StartState", "replay"]

NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1

#: Why a traced event is not replayed, by key.
SKIP_REASONS = {
    "failed_alloc": "mm_page_alloc that failed in the traced kernel",
    "free_batched": "mm_page_free_batched, a second record of an mm_page_free",
    "free_before_trace": "mm_page_free of a pfn the trace never allocated (allocated before it began)",
    "free_untraced_alloc": "mm_page_free of a pfn already freed; its new allocation is not in the trace",
    "free_wrong_order": "mm_page_free whose order differs from its traced allocation",
}

#: Progress callback: (events read so far, fraction of the input read or None).
Progress = Callable[[int, "float | None"], None]


# ---------------------------------------------------------------------------------------
# Traced events -> op stream.


_NONE = np.zeros(0, np.int64)
_NO_REVEALS = (np.zeros(0, OP_DTYPE), _NONE, _NONE)


class _Matcher:
    """Ties each traced free to the slot of its traced allocation, a batch at a time
    (pcpemu._replay.match, in trace order over a pfn table that lives across batches).

    A free of a pfn whose last traced event was a free in an earlier batch counts as
    freeing a page allocated before the trace. Allocations take freed slots first;
    a batch's freed slots go back for the next batch.
    """

    def __init__(self, untraced: bool = False) -> None:
        # untraced: frees of pages the trace did not allocate become ops too (their
        # slots are loaded from the untraced owner's blocks by the caller).
        self.untraced = untraced
        self.table = _replay.PfnTable()
        self.batches = 0
        self.pool = np.zeros(0, np.int64)        # slots free for reuse
        self.next_slot = 0
        self.skipped: Counter = Counter()
        self.untraced_frees: Counter = Counter()
        self.missing_frees = 0

    def ops(self, ev: np.ndarray, decays: tuple[np.ndarray, np.ndarray] = (_NONE, _NONE),
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The op stream of one batch of events, the batch index of each op,
        (untraced mode) the positions of the frees of untraced pages in it, for
        each of those the batch index of the same pfn's free before it, or -1, per
        event whether it allocates a page no event had put on a pcp list, and per
        event the pcp owner of a drained page (-1: not a drain, or not known;
        _replay.match).

        :param decays: the vmstat worker runs (OP_DECAY) to put in: the batch index
            each goes before, and its CPU (_Timer.positions).
        """
        kind, pfn = ev["kind"], ev["pfn"]
        alloc_slots = self._take_slots(int(np.count_nonzero((kind == MM_PAGE_ALLOC) & (pfn != PFN_FAILED))))
        ops = np.empty(len(ev) + len(decays[0]), OP_DTYPE)
        sel = np.empty(len(ops), np.int64)
        prev_free = np.full(len(ops), -1, np.int64)
        pcp_owner = np.empty(len(ev), np.int16)
        unplaced = np.empty(len(ev), np.uint8)
        counts = np.zeros(len(_replay.MATCH_COUNTS), np.int64)
        n = _replay.match(self.table, self.batches, kind, ev["cpu"], pfn, ev["order"], ev["gfp"],
                          ev["percpu_refill"], alloc_slots, self.untraced, decays[0], decays[1], ops.view(np.uint8),
                          sel, prev_free, pcp_owner, unplaced, counts)
        self.batches += 1
        ops, sel = ops[:n], sel[:n]
        got = dict(zip(_replay.MATCH_COUNTS, counts.tolist()))
        self.missing_frees += got.pop("missing_frees")
        for key in ("free_before_trace", "free_untraced_alloc"):
            (self.untraced_frees if self.untraced else self.skipped)[key] += got.pop(key)
        self.skipped.update(got)
        # Untraced frees take their slots after the allocations; every freed slot goes
        # back for the next batch, in trace order.
        slot = ops["slot"]
        frees = np.flatnonzero(ops["op"] == OP_FREE)
        upos = frees[slot[frees] < 0]
        slot[upos] = self._take_slots(len(upos))
        self.pool = np.concatenate((self.pool, slot[frees]))
        return ops, sel, upos, prev_free[upos], unplaced, pcp_owner

    def _take_slots(self, n: int) -> np.ndarray:
        reuse = self.pool[:n]
        self.pool = self.pool[n:]
        fresh = np.arange(self.next_slot, self.next_slot + n - len(reuse), dtype=np.int64)
        self.next_slot += len(fresh)
        return np.concatenate((reuse, fresh))


def _from_traced_zones(ops: np.ndarray, sel: np.ndarray, ev: np.ndarray, zones: tuple[list[str], np.ndarray]) -> None:
    # Each allocation's zonelist walk starts at the zone the kernel took its block
    # from (OP_GFP_ZONE): under pressure the kernel goes past zones below their
    # watermarks, and the emulated zones' free pages follow the kernel's.
    names, starts = zones
    at = np.flatnonzero(ops["op"] == OP_ALLOC)
    pfn = ev["pfn"][sel[at]]
    z = np.searchsorted(starts, pfn, side="right") - 1
    ok = (pfn >= 0) & (z >= 0)
    zone = np.array([ZONE_NAMES.index(n) + 1 for n in names], np.uint32)
    ops["gfp"][at[ok]] |= zone[z[ok]] << OP_GFP_ZONE_SHIFT


class _Prepared(NamedTuple):
    """A batch made ready to replay (replay's prepare): what needs no machine."""

    ev: np.ndarray
    ops: np.ndarray
    sel: np.ndarray
    upos: np.ndarray            # the untraced frees among the ops (_Matcher.ops)
    alloc_at: tuple             # where their untraced allocations go (_untraced_alloc_at)
    explicit: ExplicitDrains | None
    unplaced: np.ndarray        # per event: an allocation of a page no event put on a pcp list (_Matcher.ops)
    free_high: tuple = ()       # the first free_high drains (FreeHighDrains.find)

    @property
    def by_owner(self) -> np.ndarray:
        """The events as each CPU's pcp lists saw them (ExplicitDrains.by_owner)."""
        return self.ev if self.explicit is None else self.explicit.by_owner

    @property
    def set_off(self) -> np.ndarray:
        """by_owner without the explicit drains (ExplicitDrains.hidden)."""
        return self.ev if self.explicit is None else self.explicit.hidden


# ---------------------------------------------------------------------------------------
# Figures from kmem events, one definition for the kernel's trace and the emulator's
# own tracepoints (Machine.tracing), so the two sides are counted alike.

#: The figures compared, kernel against emulator, per CPU and in total.
FIGURES = ("refill_blocks", "refill_calls", "drained_pages", "drain_calls", "fallbacks", "zone_lock")


class _EventFigures:
    """Per-CPU figures read off a stream of kmem events, batch by batch.

    A refill call is a run of mm_page_alloc_zone_locked percpu_refill=1 events on one
    CPU (rmqueue_bulk fires one per block under one zone->lock); a drain call a run of
    mm_page_pcpu_drain (free_pcppages_bulk). Any other event on the CPU ends a run,
    except mm_page_alloc_extfrag, which fires inside the same locked section. The
    zone->lock figure counts what the events imply: refill calls, drain calls,
    buddy-path allocations (percpu_refill=0, rmqueue_buddy) and frees of orders with no
    pcp list (free_one_page). Other acquisitions (a pcp trylock that fails, isolation,
    compaction) leave no event and are not in it on either side.
    """

    def __init__(self, nr_cpus: int, pcp_orders: np.ndarray) -> None:
        self.pcp_orders = pcp_orders.astype(np.uint8)
        self.blocks = np.zeros((nr_cpus, NR_PAGE_ORDERS), np.int64)
        self._counts = np.zeros((len(_replay.FIGURE_COUNTS), nr_cpus), np.int64)
        self.acc = dict(zip(_replay.FIGURE_COUNTS, self._counts))
        self.last_run = np.zeros(nr_cpus, np.int8)     # the run each CPU's last event left open
        self.last_op = np.full(nr_cpus, -1, np.int64)

    def add(self, ev: np.ndarray, op: np.ndarray | None = None) -> None:
        """Count a batch; op (emulator) is the stream op each event fired in, a run
        never spans two ops (the kernel's runs are cut by the events between them)."""
        _replay.figures(ev["kind"], ev["cpu"], ev["order"], ev["percpu_refill"],
                        _NONE if op is None else op.astype(np.int64, copy=False), self.pcp_orders,
                        self.blocks, self._counts, self.last_run, self.last_op)

    def per_cpu(self) -> list[dict[str, Any]]:
        out = []
        for c in range(len(self.last_run)):
            blocks = self.blocks[c]
            d = {"cpu": c, "refill_blocks": int(blocks.sum()),
                 "refill_blocks_by_order": {o: int(blocks[o]) for o in np.flatnonzero(blocks).tolist()},
                 "refill_pages": int((blocks << np.arange(NR_PAGE_ORDERS)).sum())}
            d.update({k: int(v[c]) for k, v in self.acc.items()})
            d["zone_lock"] = d["refill_calls"] + d["drain_calls"] + d["buddy_allocs"] + d["nonpcp_frees"]
            out.append(d)
        return out


def _pcp_orders(m: Machine) -> np.ndarray:
    # pcp_allowed_order: the orders that have a pcp list on this machine.
    return np.array([m.order_to_pindex("Movable", o) >= 0 for o in range(NR_PAGE_ORDERS)])


def _compare(kernel: list[dict[str, Any]], emulated: list[dict[str, Any]]) -> dict[str, Any]:
    # Side by side, per CPU and in total, with emulated/kernel ratios.
    def row(k: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
        return {f: {"kernel": k[f], "emulated": e[f], "ratio": _ratio(e[f], k[f])} for f in FIGURES}

    total_k = {f: sum(c[f] for c in kernel) for f in FIGURES}
    total_e = {f: sum(c[f] for c in emulated) for f in FIGURES}
    return {"per_cpu": [dict(cpu=k["cpu"], **row(k, e)) for k, e in zip(kernel, emulated)],
            "total": row(total_k, total_e)}


# ---------------------------------------------------------------------------------------
# The result.


def _ratio(emulated: float, traced: float) -> float | None:
    return emulated / traced if traced else None


@dataclasses.dataclass
class ReplayResult:
    """What a replay saw and what each emulated machine did.

    ``traced`` and each policy's ``per_cpu`` are lists indexed by CPU; the policy
    entries carry the traced values beside the emulated ones and their ratio.
    """

    trace: str
    lines: int
    #: Lines that are no kmem event, by reason ("not an event line", "blank", "event sched_switch", ...).
    skipped_lines: dict[str, int]
    events_read: int
    events: dict[str, int]
    replayed: dict[str, int]
    skipped: dict[str, int]
    missing_frees: int
    lost_events: int
    malformed: dict[str, int]
    traced: list[dict[str, Any]]
    policies: dict[str, dict[str, Any]]
    config: dict[str, Any]
    config_notes: list[str]
    seed: int
    #: With a starting state: what was laid down, the untraced frees, the timer runs,
    #: and the emulator's final pcp lists beside the kernel's after the trace.
    start: dict[str, Any] | None = None
    untraced: dict[str, Any] | None = None
    timer: dict[str, Any] | None = None
    end_state: dict[str, Any] | None = None
    #: Per policy, each zone's free pages at the end beside after-zoneinfo's.
    end_free: dict[str, Any] | None = None

    def comparison(self, policy: str | None = None) -> dict[str, Any]:
        """Kernel against emulator, per CPU and in total, for one policy (default: the first)."""
        return self.policies[policy or next(iter(self.policies))]["comparison"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return dataclasses.asdict(self)


def _emulated(st: dict[str, Any], traced: dict[str, Any]) -> dict[str, Any]:
    hit, miss = st["pcp_hit"], st["pcp_miss"]
    blocks = st["pcp_refill_blocks"]
    out = {
        "pcp_hit_rate": {o: hit[o] / (hit[o] + miss[o]) for o in range(NR_PAGE_ORDERS) if hit[o] + miss[o]},
        "pcp_hit": {o: hit[o] for o in range(NR_PAGE_ORDERS) if hit[o] + miss[o]},
        "pcp_miss": {o: miss[o] for o in range(NR_PAGE_ORDERS) if hit[o] + miss[o]},
        "refills": st["PCP_REFILL"],
        "refill_blocks": sum(blocks),
        "refill_blocks_by_order": {o: b for o, b in enumerate(blocks) if b},
        "refill_pages": st["PCP_REFILL_PAGES"],
        "drains": st["PCP_DRAIN"],
        "drained_pages": st["PCP_DRAIN_PAGES"],
        "zone_lock": st["ZONE_LOCK"],
        "zone_lock_by_site": {k: v for k, v in st["zone_lock"].items() if v},
        "fallbacks": st["PGALLOC_FALLBACK"],
        "alloc_failed": st["ALLOC_FAILED"],
        "free_skipped": st["FREE_SKIPPED"],
    }
    out["traced"] = {k: traced[k] for k in ("refill_blocks", "refill_pages", "drained_pages", "fallbacks")}
    out["ratio"] = {k: _ratio(out[k], traced[k]) for k in ("refill_blocks", "drained_pages")}
    return out


def _policy_result(m: Machine, traced: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    st = m.stats(per_cpu=True)
    total_traced = {k: sum(t[k] for t in traced) for k in ("refill_blocks", "refill_pages",
                                                            "drained_pages", "fallbacks")}
    return {"config": m.config.as_dict(),
            "per_cpu": [dict(cpu=c, **_emulated(s, traced[c])) for c, s in enumerate(st["per_cpu"])],
            "total": _emulated(st, total_traced),
            "comparison": _compare(traced, events)}


# ---------------------------------------------------------------------------------------
# The replay.


def _open_trace(trace: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, int | None, bool]:
    # The raw stream, its size (for progress) and whether we opened it.
    if not isinstance(trace, (str, os.PathLike)):
        return trace, None, False
    try:
        f = open(trace, "rb")
    except OSError as err:
        raise TraceFormatError(f"cannot read trace {os.fspath(trace)!r}: {err.strerror}") from None
    return f, os.fstat(f.fileno()).st_size, True


def _check_batch(ev: np.ndarray, nr_cpus: int, stats: TraceStats, strict: bool) -> np.ndarray:
    # Checked before the batch runs, so that no op of a bad batch reaches a machine.
    # An order the buddy cannot have is a malformed line, as an order the reader
    # cannot read is: counted and skipped, or the error under strict.
    bad = np.flatnonzero(ev["cpu"] >= nr_cpus)
    if len(bad):
        e = ev[bad[0]]
        raise TraceFormatError(f"line {e['line']}: {EVENT_NAMES[e['kind']]} on CPU {e['cpu']}, but the "
                               f"emulated machine has {nr_cpus} CPUs (a bare trace: use --cpus or --zoneinfo; a "
                               "capture's CPUs are those its zoneinfo dumps list)")
    mem = (ev["kind"] == MM_PAGE_ALLOC) | (ev["kind"] == MM_PAGE_FREE)
    bad = mem & (ev["order"] > MAX_PAGE_ORDER)
    for e in ev[bad]:
        reason = f"{EVENT_NAMES[e['kind']]}: order={e['order']} above MAX_PAGE_ORDER ({MAX_PAGE_ORDER})"
        if strict:
            raise TraceFormatError(f"line {e['line']}: {reason}")
        stats.malformed[reason] += 1
        stats.events[EVENT_NAMES[e["kind"]]] -= 1
        if len(stats.examples) < stats.max_examples:
            stats.examples.append((int(e["line"]), reason, ""))
    return ev[~bad] if bad.any() else ev


class OneNode(NamedTuple):
    """One node of a several-node capture (replay's ``node``)."""

    nid: int
    pfns: list[tuple[int, int]]     # [start, end) of its pages


def _on_node(ev: np.ndarray, node: OneNode, stats: TraceStats) -> np.ndarray:
    # One node of a several-node capture: the events on its pages, its kswapd's, the
    # vmstat worker's runs and failed allocations (no page); the others are counted
    # as skipped.
    kswapd = wakes_and_sleeps(ev)
    keep = (ev["kind"] == VMSTAT_UPDATE) | (ev["pfn"] < 0) | (kswapd & (ev["pfn"] == node.nid))
    for lo, hi in node.pfns:
        keep |= ~kswapd & (ev["pfn"] >= lo) & (ev["pfn"] < hi)
    if keep.all():
        return ev
    kinds, counts = np.unique(ev["kind"][~keep], return_counts=True)
    for kind, n in zip(kinds.tolist(), counts.tolist()):
        stats.events[EVENT_NAMES[kind]] -= n
    stats.skipped["kmem event on another node"] += int(counts.sum())
    return ev[keep]


def _emitted_rows(ev: np.ndarray, sel: np.ndarray, trace: Trace) -> np.ndarray:
    # The emulator's tracepoints, each at the time of the trace event its op replays.
    # Events of no op (a zone grown between ops) take the time of the op before.
    rows = trace.events
    if len(sel):
        rows["timestamp"] = ev["timestamp"][sel[np.where(trace.op < 0, len(sel) - 1, trace.op)]]
    return rows


@dataclasses.dataclass
class StartState:
    """A traced kernel's state to start the machines from (a capture's before- dumps).

    :param zoneinfo: what read_zoneinfo returns for before-zoneinfo.
    :param pagetypeinfo: what read_pagetypeinfo returns for before-pagetypeinfo.
    :param timer: "events" to run the vmstat worker at the trace's vmstat_update
        events, or the stat_interval in seconds to run it on every CPU at that period
        from the first event, or None for no timer.
    :param after_zoneinfo: the dump taken after the trace, to set the emulator's
        final pcp lists beside.
    :param pcp_prepass: how many events to read ahead (held with their ops, at most ~65 MB, then replayed) to place
        each CPU's pcp pages on the lists the trace shows them on.
    :param kernel_work: tracepoints of kernel work pcpemu does not model that the
        capture recorded (capture.KERNEL_WORK_EVENTS, by event name), each with why it
        matters: the replay reports how often each ran.
    :param pin_offset: pages added to the count each first-drain pin sets.
    :param kswapd: the trace has kswapd's wakes, whose balance_pgdat runs set
        ZONE_RECLAIM_ACTIVE (reclaim.BalancePgdatRuns).
    :param compaction: the trace has compaction's begins and ends, between which a
        CPU's drains are the replay's drain_local_pages.
    """

    zoneinfo: dict
    pagetypeinfo: dict
    timer: str | float | None = "events"
    after_zoneinfo: dict | None = None
    #: Events read ahead to tell which pcp lists held the CPUs' pages (kstate.PcpLists); 0: none.
    pcp_prepass: int = 1_000_000
    kernel_work: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Pages added to the count each first-drain pin sets (0: the count the kernel's
    #: drain shows). An experiment in how much the figures hang on a page of count
    #: (capture_replay.pin_spread), not a setting.
    pin_offset: int = 0
    #: The capture recorded kswapd's wakes (capture.KSWAPD_EVENTS): ZONE_RECLAIM_ACTIVE
    #: is set from each wake to kswapd's last event of its balance_pgdat run.
    kswapd: bool = False
    #: The capture recorded compact_zone's begins and ends (capture.COMPACTION_EVENTS):
    #: a CPU's drains between them are compaction's drain_local_pages (runs.drains).
    compaction: bool = False


class _Timer:
    """Where the vmstat worker runs (vmstat_update -> refresh_cpu_vm_stats ->
    decay_pcp_high on every zone, mm/vmstat.c): at the trace's vmstat_update events,
    or every interval seconds per CPU from the first event."""

    def __init__(self, nr_cpus: int, every: str | float) -> None:
        self.every = every
        self.next: np.ndarray | None = None
        self.runs = np.zeros(nr_cpus, np.int64)

    def positions(self, ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch indexes before which a run goes, and its CPU."""
        if self.every == "events":
            pos = np.flatnonzero(ev["kind"] == VMSTAT_UPDATE)
            cpus = ev["cpu"][pos].astype(np.int64)
        else:
            ts = np.maximum.accumulate(ev["timestamp"])   # per-CPU clocks may step back a little
            if self.next is None:
                self.next = np.full(len(self.runs), ts[0] + float(self.every))
            pos_l, cpu_l = [], []
            for c in range(len(self.runs)):
                ticks = np.arange(self.next[c], ts[-1], float(self.every))
                if len(ticks):
                    self.next[c] = ticks[-1] + float(self.every)
                pos_l.append(np.searchsorted(ts, ticks))
                cpu_l.append(np.full(len(ticks), c, np.int64))
            pos, cpus = np.concatenate(pos_l), np.concatenate(cpu_l)
            o = np.argsort(pos, kind="stable")
            pos, cpus = pos[o], cpus[o]
        self.runs += np.bincount(cpus, minlength=len(self.runs))
        return pos, cpus


def _pcp_prepass(batches: Iterator[np.ndarray], m: Machine, start: StartState,
                 prepare: Callable[[np.ndarray], tuple]) -> tuple[list, PcpLists, list[list[tuple]]]:
    # The trace's first events tell which pcp lists held the pages when it began; the
    # batches read for that are handed back prepared, to be replayed without reading
    # them again.
    lists = PcpLists(m, start.zoneinfo)
    head, seen = [], 0
    while seen < start.pcp_prepass:
        ev = next(batches, None)
        if ev is None:
            break
        lists.learn(ev)
        head.append((ev, prepare(ev)))
        seen += len(ev)
    # The untraced allocations took pages off the lists too (_untraced_alloc_at).
    # Its untraced takes (PcpLists.reveals) wait for the replay of each batch.
    takes = [lists.add(prepared.by_owner, prepared.unplaced, _untraced_allocs(prepared, lists.pool.block_mt)[1])
             for _, prepared in head]
    return [prepared for _, prepared in head], lists, takes


def _untraced_allocs(prepared: _Prepared, block_mt: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    # The allocations the kernel did not trace (_untraced_alloc_at) in the order they
    # go: their indexes into the batch's untraced frees, and as PcpLists.add takes
    # them: the event index each goes before (ascending), CPU, pfn and the
    # migratetype of the list that held the page.
    ev, ops, sel, upos, (before, cpu, src) = prepared[:5]
    found = np.flatnonzero(before >= 0)
    found = found[np.argsort(before[found], kind="stable")]
    pfn = ev["pfn"][sel[upos[found]]]
    return found, (before[found], cpu[found], pfn, _untraced_alloc_mt(ev, pfn, src[found], block_mt))


def _growth_points(ops: np.ndarray, sel: np.ndarray, keep: np.ndarray, gpos: np.ndarray,
                   zones: list[str]) -> list[tuple[int, str, int, int, bool]]:
    # Where each run of frees that grew a zone takes effect: when the zone grows on
    # demand from get_page_from_freelist (after its watermark check failed), its frees
    # are traced inside the allocation, before that allocation's mm_page_alloc; so the
    # growth follows the next allocation on the same CPU, else the end of the batch.
    # On demand unless the CPU's next op is not that allocation (memory onlined by
    # other work). (event index after which it goes or -1, zone, pages, cpu, on demand).
    out: list[tuple[int, str, int, int, bool]] = []
    alloc = np.flatnonzero(keep & (ops["op"] == OP_ALLOC))
    kept = np.flatnonzero(keep)
    for q, zone in zip(gpos.tolist(), zones):
        pages, cpu = 1 << int(ops["order"][q]), int(ops["cpu"][q])
        nxt = alloc[(alloc > q) & (ops["cpu"][alloc] == cpu)]
        at = int(sel[nxt[0]]) if len(nxt) else -1
        after = kept[(kept > q) & (ops["cpu"][kept] == cpu)]
        on_demand = not len(after) or ops["op"][after[0]] == OP_ALLOC
        if out and out[-1][0] == at and out[-1][1] == zone and out[-1][3] == cpu:
            out[-1] = (at, zone, out[-1][2] + pages, cpu, on_demand)
        else:
            out.append((at, zone, pages, cpu, on_demand))
    return sorted(out, key=lambda g: (g[0] < 0, g[0]))


#: Zone flags under which a free drains a pcp below its high (nr_pcp_high).
_DRAINS_BELOW_HIGH = ZONE_BELOW_HIGH | ZONE_RECLAIM_ACTIVE

#: The gfp of an untraced allocation from the pcp list of each migratetype (Unmovable,
#: Movable, Reclaimable).
_LIST_GFP = np.array([parse_gfp("GFP_KERNEL"), parse_gfp("GFP_HIGHUSER_MOVABLE"),
                      parse_gfp("GFP_KERNEL|__GFP_RECLAIMABLE")], np.uint32)


def _untraced_alloc_at(ev: np.ndarray, sel: np.ndarray, upos: np.ndarray,
                       prev_free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Frees of pages that left a pcp list with no mm_page_alloc: alloc_pages_bulk
    # (vmalloc's vm_area_alloc_pages: thread stacks, freed later by delayed_vfree_work)
    # takes pages straight off the local pcp list (__rmqueue_pcplist) and traces none.
    # A pfn freed again with no allocation between, or refilled onto a pcp list and then
    # freed, was such a page. It was still on that CPU's list (a drain would show), so
    # the allocation comes off that CPU's list of the page's type: after the refill that
    # put it there, before the later pages of that refill the trace shows taken
    # (_list_order_bound), and after a free where that CPU next allocates (a
    # freed page stays at the list's head until an allocation, vmalloc's in a fork,
    # takes it; the bulk path does not end a run of frees), and before the free itself
    # when that CPU allocates nothing in between.
    # Returns per untraced free the batch index it goes before (-1: none), the CPU and
    # the refill that put the page on the list (-1: none; _untraced_alloc_mt). Needs no
    # machine: the replay's prepare runs it while the trace is read ahead.
    at = prev_free.copy()
    cpu = np.zeros(len(at), np.int64)
    src = np.full(len(at), -1, np.int64)
    if not len(at):
        return at, cpu, src
    anchored = np.flatnonzero(at >= 0)
    if len(anchored):
        allocs = np.flatnonzero(ev["kind"] == MM_PAGE_ALLOC)
        cpu[anchored] = ev["cpu"][at[anchored]]
        nxt = at[anchored] + 1
        for c in np.unique(cpu[anchored]):
            mine = allocs[ev["cpu"][allocs] == c]
            k = np.flatnonzero(cpu[anchored] == c)
            j = np.searchsorted(mine, at[anchored[k]], side="right")
            nxt[k] = np.where(j < len(mine), mine[np.minimum(j, len(mine) - 1)], at[anchored[k]] + 1)
        at[anchored] = np.minimum(nxt, sel[upos[anchored]])
    pfn = ev["pfn"][sel[upos]]
    refill = np.flatnonzero((ev["kind"] == MM_PAGE_ALLOC_ZONE_LOCKED) & (ev["percpu_refill"] == 1))
    ask = np.flatnonzero(at < 0)
    if len(refill) and len(ask):
        n = len(ev) + 1
        keys = ev["pfn"][refill] * n + refill
        o = np.argsort(keys)
        keys, refill = keys[o], refill[o]
        i = np.searchsorted(keys, pfn[ask] * n + sel[upos[ask]]) - 1
        hit = (i >= 0) & (ev["pfn"][refill[np.maximum(i, 0)]] == pfn[ask])
        at[ask[hit]] = np.minimum(_list_order_bound(ev, refill[i[hit]]), sel[upos[ask[hit]]])
        cpu[ask[hit]] = ev["cpu"][refill[i[hit]]]
        src[ask[hit]] = refill[i[hit]]
    at[ev["order"][sel[upos]] != 0] = -1          # the bulk allocator takes order-0 pages only
    return at, cpu, src


def _list_order_bound(ev: np.ndarray, refills: np.ndarray) -> np.ndarray:
    # The event each untraced allocation of a refilled page goes before. rmqueue_bulk
    # queues a run at the list's tail in the order it traces it, and allocations take
    # the list's head, so a run's pages leave in run order: a page the kernel did not
    # trace left after the earlier pages of its run a traced mm_page_alloc took and
    # before the later ones. Between those the trace does not say when; the latest
    # time is taken (the replays of the 36 and the holdouts agree better with it than
    # with the earliest): the first traced allocation of a later page of its run on
    # the run's CPU (in this batch), else len(ev) (its free bounds it).
    is_refill = (ev["kind"] == MM_PAGE_ALLOC_ZONE_LOCKED) & (ev["percpu_refill"] == 1)
    span = len(ev) + 1
    out = np.full(len(refills), len(ev), np.int64)
    for c in np.unique(ev["cpu"][refills]):
        r = np.flatnonzero(ev["cpu"] == c)
        on = is_refill[r]
        run_of = np.cumsum(on & ~np.r_[False, on[:-1]]) - 1        # the run of each of the CPU's events
        k = np.flatnonzero(ev["cpu"][refills] == c)
        runs = np.unique(run_of[np.searchsorted(r, refills[k])])
        mine = r[on & _among(run_of, runs)]                       # the refill events of those runs
        run = run_of[np.searchsorted(r, mine)]
        took = _next_of_pfn(ev, mine, span)
        traced = (took >= 0) & (ev["kind"][np.maximum(took, 0)] == MM_PAGE_ALLOC) & \
            (ev["cpu"][np.maximum(took, 0)] == c)
        # The first traced allocation of each page or any later one of its run: a
        # running minimum from the run's end (runs in reverse, each offset below the
        # ones after it so that no minimum crosses into another run).
        shift = (run.max() - run) * span
        taken = np.where(traced, took, len(ev))
        from_end = (np.minimum.accumulate((taken - shift)[::-1]) + shift[::-1])[::-1]
        later = np.r_[from_end[1:], len(ev)]                       # of the pages after each one
        later[np.r_[run[1:] != run[:-1], True]] = len(ev)          # a run's last page has none
        out[k] = later[np.searchsorted(mine, refills[k])]
    return out


def _among(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    # values in the sorted array wanted (np.isin, without sorting values).
    at = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
    return wanted[at] == values


def _next_of_pfn(ev: np.ndarray, at: np.ndarray, span: int) -> np.ndarray:
    # For each event index in at (ascending), the index of the next event of the same
    # pfn in the batch, -1 where none: sorted by (pfn, index) over those pfns' events only.
    near = np.flatnonzero(_among(ev["pfn"], np.unique(ev["pfn"][at])))
    key = ev["pfn"][near] * span + near
    o = np.argsort(key, kind="stable")
    near, key = near[o], key[o]
    i = np.searchsorted(key, ev["pfn"][at] * span + at) + 1
    ok = i < len(near)
    ok[ok] = ev["pfn"][near[i[ok]]] == ev["pfn"][at[ok]]
    return np.where(ok, near[np.minimum(i, len(near) - 1)], -1)


def _untraced_alloc_mt(ev: np.ndarray, pfn: np.ndarray, src: np.ndarray, block_mt: np.ndarray) -> np.ndarray:
    # The migratetype of the list each untraced allocation (_untraced_alloc_at) took its
    # page from: the refill's that put it there, else its pageblock's as the trace
    # showed it so far (block_mt; Movable where none). Highatomic and CMA pages sit
    # on the Movable list (free_unref_page).
    mt = block_mt[np.clip(pfn >> PAGEBLOCK_ORDER, 0, len(block_mt) - 1)].astype(np.int64)
    shown = src >= 0
    mt[shown] = ev["migratetype"][src[shown]]
    return np.where((mt >= MIGRATE_PCPTYPES) | (mt < 0), MIGRATE_MOVABLE, mt)


def _untraced(prepared: _Prepared, pool: UntracedPool, growth: ZoneGrowth, machines: list[Machine],
              replayed: Counter) -> tuple[np.ndarray, np.ndarray, list, tuple[np.ndarray, ...], np.ndarray]:
    # What the frees of pages the trace did not allocate (upos) stand for, in this
    # order: a page alloc_pages_bulk took (_untraced_alloc_at: an OP_ALLOC_BULK into the
    # free's slot goes before), memory coming into a zone (ZoneGrowth: the free goes,
    # the zone grows between ops), else a page of the untraced owner (its slot loaded
    # from the pool; skipped when the pool has none). Returns the ops left, their event
    # indexes, the zone growth between ops ((event index after which, fn(machine),
    # pages)), the untraced allocations (_untraced_allocs) and their OP_ALLOC_BULK ops.
    ev, ops, sel, upos, (before, cpu, src) = prepared[:5]
    bulk, allocs = _untraced_allocs(prepared, pool.block_mt)
    keep = np.ones(len(ops), bool)
    rest = np.delete(upos, bulk)
    gz = growth.find(ev["pfn"][sel[rest]], ops["order"][rest])
    keep[rest[gz >= 0]] = False
    points = _growth_points(ops, sel, keep, rest[gz >= 0], [growth.names[z] for z in gz[gz >= 0]])
    between = [(at, _grow(zone, n, growth.grow(zone, n), c, on_demand), n) for at, zone, n, c, on_demand in points]
    replayed["grown_on_demand"] += sum(n for *_, n, _, on_demand in points if on_demand)
    rest = rest[gz < 0]
    got, pfns = pool.take(machines, ev["pfn"][sel[rest]], ops["order"][rest])
    for m, p in zip(machines, pfns):
        m.load_slots(ops["slot"][rest[got]], p)
    keep[rest[~got]] = False
    replayed["untraced_free"] += int(np.count_nonzero(got))
    replayed["untraced_alloc"] += len(bulk)
    return ops[keep], sel[keep], between, allocs, _bulk_alloc_ops(ops["slot"][upos[bulk]], allocs[1], allocs[3])


def _bulk_alloc_ops(slots: np.ndarray, cpus: np.ndarray, mts: np.ndarray) -> np.ndarray:
    # The untraced allocations (_untraced_alloc_at) of the pages later frees free, as
    # OP_ALLOC_BULK ops into those frees' slots.
    ops = np.zeros(len(slots), OP_DTYPE)
    ops["op"], ops["cpu"], ops["gfp"], ops["slot"] = OP_ALLOC_BULK, cpus, _LIST_GFP[mts], slots
    return ops


def _insert_untraced(ops: np.ndarray, sel: np.ndarray, bulk_ops: np.ndarray, bulk_at: np.ndarray,
                     reveals: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    # The untraced allocations (bulk_at ascending) and the pcp reveals (PcpLists.reveals)
    # into the op stream, each reveal before the row of the merged stream it was found at.
    reveal_ops, reveal_at, reveal_key = reveals
    keys = np.concatenate((2 * (bulk_at + np.arange(len(bulk_at))) + 1, reveal_key))
    o = np.argsort(keys, kind="stable")
    return _insert_before(ops, sel, np.concatenate((bulk_ops, reveal_ops))[o], np.concatenate((bulk_at, reveal_at))[o])


def _insert_before(ops: np.ndarray, sel: np.ndarray, new: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # new[i] goes before the first op of an event at or after at[i], in the order given for equal at.
    if not len(new):
        return ops, sel
    o = np.argsort(at, kind="stable")
    where = np.searchsorted(sel, at[o])
    return np.insert(ops, where, new[o]), np.insert(sel, where, at[o])


def _first_drain_sync(first: FirstDrains, lists: PcpLists, machines: dict[str, Machine], zone: str, cpu: int,
                      how: str, pages: int, order0: int, at: float, shift: int = 0) -> Callable[[Machine], None]:
    # The emulated count set where the kernel's first drain on (zone, cpu) pins its
    # count (kstate.FirstDrains): before the run of frees that led up to it, so that
    # the free that set it off, ``pages`` freed on, reaches the emulated high; or before
    # the vmstat worker run, so that decay_pcp_high drains ``pages``. An offset past a
    # whole drain (batch << CONFIG_PCP_BATCH_SCALE_MAX) is the emulated high differing,
    # and is only reported. With ZONE_BELOW_HIGH or ZONE_RECLAIM_ACTIVE set on the
    # emulated zone a free drains below high (nr_pcp_high): the drain pins nothing.
    # The pages the pin adds are pages the trace has not shown: they wait where the
    # starting pages the trace has not placed wait (PcpLists.wait_more), so that they
    # move on with them when the trace shows that list empty, rather than stay under
    # the allocations of a list the kernel was refilling. ``shift`` pages more are set
    # (StartState.pin_offset). A worker's pin that takes pages off leaves the order-0
    # lists the ``order0`` pages its run drained from them, which they held then
    # (decay_pcp_high drains from the first list on), and takes the rest in whole
    # blocks of the waiting list (_give_back).
    row: dict[str, Any] = {"zone": zone, "cpu": cpu, "timestamp": at, "set_off_by": how, "pages": {}, "moved": {},
                           "why": {}, "zone_flagged": []}
    first.found.append(row)

    def sync(m: Machine) -> None:
        label = _label_with_zone(machines, m, zone)
        if label is None:
            return
        if m.zone_state(zone)["flags"] & _DRAINS_BELOW_HIGH:
            row["zone_flagged"].append(label)
            return
        st = m.pcp_state(zone, cpu)
        target = st["high"] - 1 - pages if how == "free" else st["decayed_high"] + pages
        offset = target - st["count"]
        row["pages"][label] = offset
        if abs(offset) > st["batch"] << m.config.pcp_batch_scale_max:
            row["moved"][label], row["why"][label] = 0, "past a whole drain: the emulated high differs"
            return
        waiting = lists.waiting_list(zone, cpu)
        want = (-_give_back(m, zone, cpu, waiting, -(offset + shift), order0) if offset + shift < 0 and order0
                else _in_blocks(m, offset + shift, waiting))
        row["moved"][label] = moved = m.pcp_untraced_move(zone, cpu, want, waiting)
        row["why"][label] = ("" if moved == offset + shift else "lists or untraced owner ran out" if moved != want
                             else f"whole blocks of order {int(m.pindex_order[waiting])}, where the rest waits")
        if m is next(iter(machines.values())):
            lists.wait_more(zone, cpu, moved)
    return sync


def _give_back(m: Machine, zone: str, cpu: int, waiting: int | None, pages: int, order0: int) -> int:
    # How many of ``pages`` a worker's pin takes off: order-0 pages down to the
    # ``order0`` its run drained from the order-0 lists, then whole blocks of a
    # waiting list of a higher order, the nearest number (pcp_untraced_move takes the
    # waiting list's blocks that fit first, then the order-0 lists' pages).
    lists0 = [m.order_to_pindex(t, 0) for t in ("Unmovable", "Movable", "Reclaimable")]
    take0 = min(pages, max(sum(len(m.pcp_list(zone, cpu, i)) for i in lists0) - order0, 0))
    size = 1 << int(m.pindex_order[waiting]) if waiting is not None else 1
    if size == 1:
        return take0
    rest = pages - take0
    return take0 + min((rest + size // 2) // size * size, len(m.pcp_list(zone, cpu, waiting)) * size)


def _in_blocks(m: Machine, pages: int, pindex: int | None) -> int:
    # Pages added to a list go in whole blocks of its order: the nearest number of them
    # (the kernel's count there held whole blocks too; the rest of the offset is the
    # emulated lists' own error). Pages given back are taken as they are.
    size = 1 << int(m.pindex_order[pindex]) if pindex is not None else 1
    return pages if pages <= 0 or size == 1 else (pages + size // 2) // size * size


def _explicit_drain_sync(run: ExplicitDrains.Run) -> Callable[[Machine], None]:
    # The kernel's drain_all_pages or compaction's drain_local_pages, on the emulated
    # machine where its run of drains begins, from the same CPU (runs.drains).
    def sync(m: Machine) -> None:
        if run.zone is not None and all(z.name != run.zone for z in m.populated_zones):
            return
        if run.every_cpu:
            m.drain_all_pages(run.zone, run.cpu)
        else:
            m.drain_local_pages(run.zone, run.cpu)
    return sync


def _with_next(items: Iterator[_Prepared]) -> Iterator[tuple[_Prepared, _Prepared | None]]:
    # Each item and the one after it (None after the last).
    prev = next(items, None)
    for item in items:
        yield prev, item
        prev = item
    if prev is not None:
        yield prev, None


def _reclaim_active_sync(active: bool) -> Callable[[Machine], None]:
    # kswapd's balance_pgdat starting or done (reclaim.BalancePgdatRuns).
    def sync(m: Machine) -> None:
        m.set_reclaim_active(active)
    return sync


def _alloc_factor_sync(row: dict[str, Any], machines: dict[str, Machine]) -> Callable[[Machine], None]:
    # The emulated alloc_factor set where a kernel's order-0 refill on a (zone, cpu)
    # shows its own: the first, or one that fell with no event (kstate.AllocFactorRefills);
    # a capped first refill raises it to the least it shows.
    def sync(m: Machine) -> None:
        label = _label_with_zone(machines, m, row["zone"])
        if label is None:
            return
        k = row["alloc_factor"]
        if k is None:
            k = max(row["at_least"], m.pcp_state(row["zone"], row["cpu"])["alloc_factor"])
        row["was"][label] = m.pcp_set_alloc_factor(row["zone"], row["cpu"], k)
    return sync


def _free_high_sync(found: list[dict[str, Any]], machines: dict[str, Machine], zone: str, cpu: int,
                    at: float) -> Callable[[Machine], None]:
    # Where the kernel's first free_high drain on a (zone, cpu) shows the free_count it
    # drains from (freehigh.FreeHighDrains), the emulated free_count becomes that
    # threshold, unless the preset's rule already drains there or the emulated count
    # is below batch, which no kernel's free_high took (v6.7 on).
    row: dict[str, Any] = {"zone": zone, "cpu": cpu, "timestamp": at, "free_count": {}, "rule": {}, "set": {}}
    found.append(row)

    def sync(m: Machine) -> None:
        label = _label_with_zone(machines, m, zone)
        if label is None:
            return
        pcp = m.pcp_state(zone, cpu)
        row["free_count"][label], row["rule"][label] = pcp["free_count"], pcp["free_high_min_count"]
        row["set"][label] = pcp["batch"] <= pcp["free_count"] < pcp["free_high_min_count"]
        if row["set"][label]:
            m.pcp_set_free_high_at(zone, cpu, pcp["free_count"])
    return sync


def _pcp_takes_work(takes: list[tuple], found: dict[str, Any], machines: dict[str, Machine],
                    sel: np.ndarray) -> list[tuple[int, Callable[[Machine], None]]]:
    # The work PcpLists' untraced takes call for, each before the op of its event: at
    # a refill (_untraced_take), or at an arrival (_arrival).
    work = []
    for at, zone, cpu, mt, order, blocks, moved, at_refill in takes:
        fn = (_untraced_take(found, machines, zone, cpu, mt, order, blocks, moved) if at_refill
              else _arrival(found, machines, zone, cpu, mt, order, -blocks))
        if fn is not None:
            work.append((int(np.searchsorted(sel, at, side="left")), fn))
    return work


def _arrival(found: dict[str, Any], machines: dict[str, Machine], zone: str, cpu: int, mt: str, order: int,
             blocks: int) -> Callable[[Machine], None]:
    # An allocation off a pcp list the trace shows empty, of a page no event put on
    # one (kstate.PcpLists): blocks came onto the list with no event, and as many of
    # the untraced owner's go on the emulated list before it (Machine.pcp_untraced_move).
    found["arrivals"] += 1

    def arrive(m: Machine) -> None:
        label = _label_with_zone(machines, m, zone)
        if label is not None:
            found["arrived"][label] = found["arrived"].get(label, 0) + m.pcp_untraced_move(
                zone, cpu, blocks << order, m.order_to_pindex(mt, order))
    return arrive


def _untraced_take(found: dict[str, Any], machines: dict[str, Machine], zone: str, cpu: int, mt: str, order: int,
                   blocks: int, relisted: int) -> Callable[[Machine], None] | None:
    # A refill of a pcp list the trace still held blocks on (kstate.PcpLists): those
    # of pageblocks of no type shown move to the Unmovable list of the emulated pcp,
    # where the kernel's frees put them; an allocation the kernel did not trace took
    # the rest, and takes as many off the emulated list. Fewer than none held is only
    # counted (None: nothing to do).
    if blocks < 0:
        found["fewer_than_none"] += 1
        return None
    found["refills"] += 1
    found["blocks"] += blocks
    found["pages"] += blocks << order
    found["relisted_pages"] += relisted << order

    def take(m: Machine) -> None:
        label = _label_with_zone(machines, m, zone)
        if label is not None:
            m.pcp_untraced_relist(zone, cpu, mt, order, relisted)
            found["taken"][label] = found["taken"].get(label, 0) + (
                m.pcp_untraced_take(zone, cpu, mt, order, blocks - relisted) << order)
    return take


def _label_with_zone(machines: dict[str, Machine], m: Machine, zone: str) -> str | None:
    # The label of machine m, for the work between ops done on a zone of the traced
    # kernel; None when m has no such populated zone.
    return next(label for label, mm in machines.items() if mm is m) \
        if zone in [z.name for z in m.populated_zones] else None


def _grow(zone: str, nr_pages: int, params: Any, cpu: int, on_demand: bool) -> Callable[[Machine], None]:
    # Memory coming into a zone (kstate.ZoneGrowth), freed by cpu.
    return lambda m: m.grow_zone(zone, nr_pages, params, cpu, on_demand=on_demand)


def _emulated_zones(m: Machine, after: dict) -> list[dict]:
    # The after-zoneinfo zones the emulated machine has too.
    names = {p.name for p in m.populated_zones}
    return [z for z in after["zones"] if z.get("managed") and z["name"] in names]


def _end_state(m: Machine, after: dict, traced: TracedPcpCounts) -> list[dict[str, Any]]:
    # The emulator's pcp lists at the end beside the traced kernel's after the trace,
    # and the count the kernel's events alone lead to.
    rows = []
    for z in _emulated_zones(m, after):
        for p in z["pagesets"]:
            if p["cpu"] < m.config.cpus:
                e = m.pcp_state(z["name"], p["cpu"])
                rows.append({"zone": z["name"], "cpu": p["cpu"],
                             "count": {"kernel": p.get("count"), "emulated": e["count"],
                                       "traced": traced.count(z["name"], p["cpu"])},
                             "high": {"kernel": p.get("high"), "emulated": e["high"]}})
    return rows


def _end_free(m: Machine, after: dict) -> list[dict[str, Any]]:
    # Each zone's free pages at the end, emulated beside the traced kernel's: what the
    # trace does not show (compaction's migration targets, pcp pages lost with no
    # event) shows here.
    return [{"zone": z["name"], "kernel": z.get("pages_free"), "emulated": m.zone_state(z["name"])["nr_free_pages"]}
            for z in _emulated_zones(m, after)]


def replay(trace: str | os.PathLike[str] | BinaryIO, configs: Mapping[str, KernelConfig | Machine], *,
           seed: int = 0, batch: int = 65536, strict: bool = False,
           emit_trace: TextIO | None = None, progress: Progress | None = None,
           config_notes: list[str] | None = None, start: StartState | None = None,
           node: OneNode | None = None) -> ReplayResult:
    """Replay the allocations and frees of an ftrace kmem capture on emulated machines.

    :param trace: a path (plain, .gz or .xz) or an open binary file.
    :param configs: the machines, by label (e.g. one per THP-list policy), as configs or
        as fresh Machines (which the caller can then inspect); all run the same op stream.
    :param seed: the seed of the machines made from configs.
    :param batch: events per op-stream chunk.
    :param strict: stop at the first malformed kmem line.
    :param emit_trace: a text file that gets the first machine's kmem tracepoints
        (Machine.tracing) as ftrace lines, each at the time of the event its op replays.
    :param progress: called after each chunk.
    :param config_notes: carried into the result (e.g. from :func:`pcpemu.kernel.zoneinfo.static_differences`).
    :param start: start every machine from the traced kernel's state, replay the frees
        of pages allocated before the trace from its untraced owner, and run the
        vmstat worker on the trace's clock (see :class:`StartState`).
    :param node: replay only the events of one node of a several-node capture (on
        its pages, of its kswapd); the others are counted as skipped.
    :raises TraceFormatError: for an unreadable trace, a malformed line with ``strict``,
        or an event on a CPU the machines do not have.
    """
    if not configs:
        raise ConfigError("replay needs at least one machine config")
    machines = {label: c if isinstance(c, Machine) else Machine(c, seed=seed) for label, c in configs.items()}
    for label, m in machines.items():
        if m.stats()["ALLOC_CALLS"]:
            raise ConfigError(f"machine {label!r} has run before; a replay needs a fresh machine")
    nr_cpus = {m.config.cpus for m in machines.values()}
    if len(nr_cpus) != 1:
        raise ConfigError(f"the machines of one replay must have the same CPUs, got {sorted(nr_cpus)}")
    cpus = nr_cpus.pop()
    first = next(iter(machines.values()))
    raw, size, owned = _open_trace(trace)
    stats = TraceStats()
    batches = read_event_batches(raw, batch, strict=strict, stats=stats)
    seeded = None
    lists = None
    growth = None
    timer = None if start is None or start.timer is None else _Timer(cpus, start.timer)
    matcher = _Matcher(untraced=start is not None)
    pcp_orders = _pcp_orders(first)             # the traced kernel's, as the first machine's
    kernel = _EventFigures(cpus, pcp_orders)
    # Frees that found their CPU's pcp locked (_replay.mark_pcp_locked_frees), and per
    # CPU the zone whose pcp->lock it holds between a refill and the allocation it
    # serves, and inside a batched free's commits.
    locked: Counter = Counter()
    locked_window = np.full(cpus, _replay.UNLOCKED, np.int16)
    committing = np.full(cpus, _replay.UNLOCKED, np.int16)
    traced_counts = None if start is None else TracedPcpCounts(start.zoneinfo, cpus, pcp_orders)
    untraced_takes: dict[str, Any] = {"refills": 0, "blocks": 0, "pages": 0, "taken": {}, "fewer_than_none": 0,
                                      "arrivals": 0, "arrived": {},
                                      "relisted_pages": 0}
    refills = None if start is None else AllocFactorRefills(start.zoneinfo, cpus, pcp_orders,
                                                            first.config.pcp_batch_scale_max)
    first_drains = None if start is None else FirstDrains(
        start.zoneinfo, cpus, pcp_orders, first.config.pcp_batch_scale_max,
        "decay_batched" in first.config.rule_flags)
    emulated = {label: _EventFigures(cpus, _pcp_orders(m)) for label, m in machines.items()}
    traced_zones = None if start is None else zone_table(real_zone_ranges(start.zoneinfo))
    zone_starts = None if traced_zones is None else traced_zones[:2]
    zone_spans = (_NONE, _NONE) if traced_zones is None else traced_zones[1:]   # a bare trace's: one zone
    compacting = np.zeros(cpus, bool) if start is not None and start.compaction else None
    kswapd = BalancePgdatRuns() if start is not None and start.kswapd else None
    free_highs = None if start is None else FreeHighDrains(start.zoneinfo, cpus)

    def prepare(ev: np.ndarray) -> _Prepared:
        # What needs no machine; for the read-ahead it runs while the parse thread reads on.
        ev = _check_batch(ev, cpus, stats, strict)
        if node is not None:
            ev = _on_node(ev, node, stats)
        kernel.add(ev)
        locked["frees"] += _replay.mark_pcp_locked_frees(ev["kind"], ev["cpu"], ev["pfn"], ev["order"],
                                                         ev["percpu_refill"], kernel.pcp_orders,
                                                         *zone_spans, locked_window, committing)
        decays = (_NONE, _NONE) if timer is None else timer.positions(ev)
        ops, sel, upos, prev_free, unplaced, pcp_owner = matcher.ops(ev, decays)
        if zone_starts is not None:
            _from_traced_zones(ops, sel, ev, zone_starts)
        p = _Prepared(ev, ops, sel, upos, _untraced_alloc_at(ev, sel, upos, prev_free),
                      find_explicit_drains(ev, pcp_owner, zone_starts, compacting,
                                           None if traced_counts is None else traced_counts.count_after), unplaced)
        if free_highs is not None:
            p = p._replace(free_high=tuple(free_highs.find(p.set_off, p.by_owner, traced_counts.count_after)))
        if traced_counts is not None:
            traced_counts.add(p.by_owner)
        return p

    head: list[_Prepared] = []
    head_takes: list[list[tuple]] = []
    stream: Iterator[np.ndarray] = batches
    try:
        if start is not None:
            # The zones need nothing of the trace: they are laid while the parse thread,
            # started by the first batch, reads ahead.
            stream = itertools.chain(list(itertools.islice(batches, 1)), batches)
            zones = {label: seed_zones(m, start.zoneinfo, start.pagetypeinfo) for label, m in machines.items()}
            known = None
            if start.pcp_prepass:
                head, known, head_takes = _pcp_prepass(stream, first, start, prepare)
            seeded = {label: seed_pcp_lists(m, start.zoneinfo, zones[label], known and known.lists(),
                                            known and known.exact_lists()) for label, m in machines.items()}
            # Past the read-ahead the pcp pages it could not place go where the trace shows them.
            lists = known or PcpLists(first, start.zoneinfo)
            lists.stream_from(seeded[next(iter(machines))])
            growth = ZoneGrowth(start.zoneinfo, start.pagetypeinfo, first.config,
                                [z.name for z in first.populated_zones])
    except BaseException:
        batches.close()             # stops the parse thread before its file closes
        if owned:
            raw.close()
        raise
    replayed: Counter = Counter()
    if emit_trace is not None:
        write_ftrace([], emit_trace)
    try:
        # Each batch with the next, prepared a batch ahead: a kswapd run the batch's end cuts ends in it.
        for k, (prepared, after) in enumerate(_with_next(itertools.chain(head, map(prepare, stream)))):
            ev, ops, sel = prepared[:3]
            between: list[tuple[int, Callable[[Machine], None], int]] = []
            if lists is not None:
                # Frees of untraced pages go to the list their block shows.
                lists.learn(ev)
                ops, sel, between, allocs, bulk_ops = _untraced(prepared, lists.pool, growth,
                                                                list(machines.values()), replayed)
                if k < len(head):
                    reveals, takes = _NO_REVEALS, head_takes[k]
                else:
                    *reveals, takes = lists.reveals(prepared.by_owner, prepared.unplaced, allocs)
                replayed["pcp_reveals"] += len(reveals[0])
                ops, sel = _insert_untraced(ops, sel, bulk_ops, allocs[0], reveals)
            replayed["alloc"] += int(np.count_nonzero(ops["op"] == OP_ALLOC))
            replayed["free"] += int(np.count_nonzero(ops["op"] == OP_FREE))
            # The stream in pieces, the zone growth and the count set at first drains between them.
            work = [(len(ops) if at < 0 else int(np.searchsorted(sel, at, side="right")), fn) for at, fn, _ in between]
            if first_drains is not None:
                work += [(int(np.searchsorted(sel, r, side="left")),
                          _first_drain_sync(first_drains, lists, machines, first_drains.names[z], c, how, pages,
                                            order0, float(ev["timestamp"][r]), start.pin_offset))
                         for r, z, c, how, pages, order0 in first_drains.find(prepared.set_off)]
            if lists is not None:
                work += _pcp_takes_work(takes, untraced_takes, machines, sel)
            if refills is not None:
                work += [(int(np.searchsorted(sel, at, side="left")), _alloc_factor_sync(row, machines))
                         for at, row in refills.find(prepared.by_owner)]
            work += [(int(np.searchsorted(sel, at, side="left")),
                      _free_high_sync(free_highs.found, machines, free_highs.names[z], c, float(ev["timestamp"][at])))
                     for at, z, c in prepared.free_high]
            if kswapd is not None:
                work += [(int(np.searchsorted(sel, i, side="left")), _reclaim_active_sync(on))
                         for i, on in kswapd.changes(ev, after and after.ev)]
            if prepared.explicit is not None:
                work += [(int(np.searchsorted(sel, run.at, side="left")), _explicit_drain_sync(run))
                         for run in prepared.explicit.runs]
                for run in prepared.explicit.runs:
                    replayed["drain_all" if run.every_cpu else "compaction_drain"] += 1
            work.sort(key=lambda w: w[0])
            work.append((len(ops), None))
            if between:
                replayed["grown_pages"] += sum(g[2] for g in between)
            for label, m in machines.items():
                done = 0
                for cut, fn in work:
                    with m.tracing() as tr:
                        m.run(ops[done:cut])
                        if fn is not None:
                            fn(m)
                    # Events of the work between ops (op -1) end no run: they count as the op before.
                    op = np.where(tr.op < 0, cut - 1, tr.op + done)
                    emulated[label].add(tr.events, op)
                    if m is first and emit_trace is not None:
                        write_ftrace(_emitted_rows(ev, sel[done:cut], tr), emit_trace, header=False)
                    done = cut
            if progress is not None:
                progress(sum(stats.events.values()), raw.tell() / size if size else None)
    finally:
        batches.close()
        if owned:
            raw.close()
    name = os.fspath(trace) if isinstance(trace, (str, os.PathLike)) else getattr(trace, "name", "<stream>")
    events = +stats.events                     # without the zero counts of refused lines
    if not events:
        unread = sum(stats.malformed.values()) + stats.skipped["not an event line"]
        raise TraceFormatError(f"{name}: no kmem page-allocator event in {stats.lines:,} lines "
                               f"({unread:,} unreadable or not event lines)")
    traced = kernel.per_cpu()
    replayed["free"] -= replayed["untraced_free"]
    if locked["frees"]:
        replayed["free_pcp_locked"] = locked["frees"]
    extra: dict[str, Any] = {}
    if start is not None:
        label0 = next(iter(machines))
        extra["start"] = {"zones": seeded[label0].zones, "notes": seeded[label0].notes}
        extra["untraced"] = {"frees": dict(matcher.untraced_frees), "replayed": replayed["untraced_free"],
                             "pool_exhausted": lists.pool.exhausted, "other_type": lists.pool.other_type,
                             "retyped": lists.pool.retyped,
                             "pcp_reveals": replayed["pcp_reveals"],
                             "allocs": replayed["untraced_alloc"], "grown_pages": replayed["grown_pages"],
                             "grown_on_demand": replayed["grown_on_demand"],
                             "first_drains": first_drains.found, "pin_offset": start.pin_offset,
                             "first_refills": refills.first,
                             "alloc_factor_falls": refills.falls,
                             "free_high": free_highs.found,
                             "pcp_takes": untraced_takes,
                             "kswapd": {"wakes": stats.events["mm_vmscan_kswapd_wake"],
                                        "sleeps": stats.events["mm_vmscan_kswapd_sleep"],
                                        "replayed": start.kswapd,
                                        "held": kswapd.held if kswapd else 0,
                                        "balanced": kswapd.balanced if kswapd else 0},
                             "compaction": {"runs": stats.events["mm_compaction_begin"],
                                            "drains": replayed["compaction_drain"],
                                            "replayed": start.compaction},
                             "kernel_work": [{"event": e, "runs": stats.skipped[f"event {e}"], "why": why}
                                             for e, why in start.kernel_work.items()]}
        extra["timer"] = None if timer is None else {"every": timer.every, "runs": timer.runs.tolist()}
        if start.after_zoneinfo is not None:
            extra["end_state"] = {label: _end_state(m, start.after_zoneinfo, traced_counts)
                                  for label, m in machines.items()}
            extra["end_free"] = {label: _end_free(m, start.after_zoneinfo) for label, m in machines.items()}
    return ReplayResult(
        trace=name, lines=stats.lines, skipped_lines=dict(stats.skipped),
        events_read=sum(events.values()), events=dict(events), replayed=dict(replayed),
        skipped={k: matcher.skipped[k] for k in SKIP_REASONS}, missing_frees=matcher.missing_frees,
        lost_events=stats.lost_events, malformed=dict(stats.malformed), traced=traced,
        policies={label: _policy_result(m, traced, emulated[label].per_cpu()) for label, m in machines.items()},
        config=first.config.as_dict(), config_notes=list(config_notes or []), seed=seed, **extra)


def replay_configs(preset: str, policies: list[str] | None = None, *, zoneinfo: str | None = None,
                   node: int | None = None, memory: str | None = None, cpus: int | None = None,
                   zones: str | None = None, cma: str | None = None,
                   one_policy: bool = False) -> tuple[dict[str, KernelConfig], list[str]]:
    """The machines of ``pcpemu replay``: one config per THP-list policy, from a
    zoneinfo dump (KernelConfig.from_zoneinfo) or from memory, CPUs and a zones
    spec (config.parse_zones).

    :param policies: default the preset's own.
    :param node: the node of a several-node dump.
    :param cma: the CMA size; default the dump's, or none.
    :param one_policy: refuse more than one policy (one machine's trace is written).
    :return: (configs by policy, the static boot values that differ from the dump's).
    :raises ConfigError: for contradicting options, before any work.
    """
    extra = {} if cma is None else {"cma": cma}
    if node is not None and not zoneinfo:
        raise ConfigError("--node picks a node of a --zoneinfo dump; give --zoneinfo")
    if zoneinfo:
        if cpus is not None or zones is not None:
            raise ConfigError("--zoneinfo gives the zones and CPUs; drop --cpus/--zones")
        base = KernelConfig.from_zoneinfo(zoneinfo, preset, node, **extra)
        notes = static_differences(base, zoneinfo, node)
    else:
        base = KernelConfig.preset(preset, memory=memory, zones=parse_zones(zones or "x86_64", "--zones"),
                                   cpus=4 if cpus is None else cpus, **extra)
        notes = []
    policies = policies or [base.thp_lists]
    if one_policy and len(policies) > 1:
        raise ConfigError("--emit-trace writes one machine's stream; give one --policy")
    return {p: base.replace(thp_lists=p, thp=p != "none") for p in dict.fromkeys(policies)}, notes
