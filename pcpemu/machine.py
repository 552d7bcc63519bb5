"""Machine: the one Python face of the core (pcpemu._core).

Boots the core with the zones, watermarks and pcp values the kernel would
derive for a KernelConfig, and turns the core's counters and views into kernel
vocabulary. Everything above the core (runs, tools, tests) goes through a
Machine; no other module imports pcpemu._core.

Arguments are converted here and checked there: Machine turns Python values
into what the core takes (gfp strings into masks, zone and migratetype names
into indices, numpy integers into int; bools and other types are refused),
and the core checks what the values mean (ranges, block states) and raises
through its one error table (pcpemu._core.ERRORS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Any, Iterator, NamedTuple

import numpy as np

from . import _core
from .kernel import procfs
from .kernel.config import KernelConfig
from .errors import BadSlotError, ConfigError, InvariantError, PcpemuError
from .kernel.ftrace import EVENT_DTYPE
from .kernel.gfp import MIGRATE_PCPTYPES, MIGRATETYPE_NAMES, ZONE_NAMES, parse_gfp
from .kernel.pcplists import pcp_list_table
from .kernel.watermark import ZoneParams, boot_pageset, setup_zones

__all__ = ["AllocatedBlock", "BLOCK_DTYPE", "CORE_CONSTANTS", "ERROR_CODES", "ERRORS", "MAX_SLOTS", "Machine",
           "OP_ALLOC", "OP_ALLOC_BULK", "OP_DECAY", "OP_DRAIN", "OP_DRAIN_ALL", "OP_DTYPE", "OP_FREE", "OP_NAMES",
           "OP_FREE_PCP_LOCKED", "OP_GFP_ZONE_SHIFT", "OP_PCP_REVEAL", "PCP_REVEAL_ALL", "RunResult", "Trace",
           "pcp_reveal_gfp", "bare_pcp_loop", "pcp_struct_layout"]

#: dtype of one op of an op stream (struct pcpemu_op).
OP_DTYPE = _core.OP_DTYPE
#: Op codes of an op stream (enum pcpemu_opcode), and their names by code.
OP_ALLOC: int = _core.CONSTANTS["OP_ALLOC"]
OP_FREE: int = _core.CONSTANTS["OP_FREE"]
OP_DRAIN: int = _core.CONSTANTS["OP_DRAIN"]
OP_DRAIN_ALL: int = _core.CONSTANTS["OP_DRAIN_ALL"]
OP_DECAY: int = _core.CONSTANTS["OP_DECAY"]
OP_ALLOC_BULK: int = _core.CONSTANTS["OP_ALLOC_BULK"]
OP_PCP_REVEAL: int = _core.CONSTANTS["OP_PCP_REVEAL"]
#: OP_PCP_REVEAL's flag for every page of the list it takes from (pcp_reveal_gfp).
PCP_REVEAL_ALL: int = _core.CONSTANTS["PCP_REVEAL_ALL"]
#: Where an OP_ALLOC's gfp carries the zone the traced kernel took its block from,
#: plus 1: its zonelist walk starts there (a replay's; OP_GFP_ZONE in _kernel.h).
OP_GFP_ZONE_SHIFT: int = _core.CONSTANTS["OP_GFP_ZONE_SHIFT"]
#: An OP_FREE's gfp flag: the free found the CPU's pcp locked and went to the buddy
#: (a replay's, where the trace shows it; OP_FREE_PCP_LOCKED in _kernel.h).
OP_FREE_PCP_LOCKED: int = _core.CONSTANTS["OP_FREE_PCP_LOCKED"]
OP_NAMES: tuple[str, ...] = _core.OP_NAMES
#: Every constant the core shares with Python, by its C name.
CORE_CONSTANTS: dict[str, int] = dict(_core.CONSTANTS)
#: enum pcpemu_error by name, and the table from code to (exception, message).
ERROR_CODES: dict[str, int] = dict(_core.ERROR_CODES)
ERRORS: dict[int, tuple[type, str]] = dict(_core.ERRORS)
#: dtype of Machine.allocated_blocks().
BLOCK_DTYPE = _core.BLOCK_DTYPE
#: The layout of the compiled struct per_cpu_pages (tests compare pcpemu.kernel.layout with it).
pcp_struct_layout = _core.pcp_struct_layout
#: The benchmarks' bare pcp loop (bench/bench_core.py), the floor Machine.run is measured against.
bare_pcp_loop = _core.bare_pcp_loop

#: Default bound of op-stream slots (Machine.max_slots): a table of 2**26 is 512 MiB.
MAX_SLOTS = 1 << 26

_PE = ERROR_CODES
_BLOCKER_WHY = {_core.BLOCK_UNMOVABLE: "unmovable", _core.BLOCK_PINNED: "pinned"}


@dataclasses.dataclass
class RunResult:
    """What Machine.run() returns: the counters the stream moved and per-op results.

    ``results[i]`` is the pfn op i allocated or freed, or -1 (failed allocation,
    skipped free, or an op with no pfn).
    """

    stats: dict[str, Any]
    results: np.ndarray


@dataclasses.dataclass
class Trace:
    """The kmem tracepoints a machine fired inside :meth:`Machine.tracing`, in order.

    ``events`` is an EVENT_DTYPE array (pcpemu.kernel.ftrace), which
    pcpemu.kernel.ftrace.write_ftrace prints as the kernel's trace file does; its
    timestamps are 0 and its line numbers -1. ``op[i]`` is the index of the op,
    in the stream Machine.run was running, that event i fired in; -1 for the
    Python entry points. Filled when the ``with`` block ends.
    """

    events: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, EVENT_DTYPE))
    op: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


class AllocatedBlock(NamedTuple):
    """An allocated block, as Machine.allocated_block() finds it at its head pfn."""

    order: int
    owner: int
    pincount: int
    lru: bool           # a movable user page on the LRU: migration may move it


class StatsSnapshot(NamedTuple):
    """The raw counters at one moment (Machine.stats_snapshot), for stats_delta."""

    raw: np.ndarray


def _fill_trace(trace: Trace, raw: np.ndarray) -> None:
    # raw: the core's events (CORE_EVENT_DTYPE), turned into EVENT_DTYPE rows in C.
    trace.events = _core.trace_rows(raw, EVENT_DTYPE)
    trace.op = raw["op"].copy()


class Machine:
    """One emulated node booted from a KernelConfig.

    :param config: the machine and kernel to emulate.
    :param seed: recorded with the machine's results. The core draws no random
        number: a run depends only on the config and the op stream, whose generators
        (pcpemu.runs.workloads) take the seed that makes them reproducible.
    """

    def __init__(self, config: KernelConfig, seed: int = 0) -> None:
        if not isinstance(config, KernelConfig):
            raise ConfigError(f"Machine needs a KernelConfig, not {type(config).__name__}")
        self.config = config
        self.seed = seed
        self.min_free_kbytes, self.zones = setup_zones(config)
        pindex, pindex_order = pcp_list_table(config)
        self.pindex_order = pindex_order
        self._core = _core.Allocator(
            config.memory, self.zones, config.cma_base or 0, config.cma, config.cpus, pindex, pindex_order,
            config.cacheline, config.watermark_boost_factor, config.pcp_batch_scale_max, config.pcp_cma,
            self._free_high_batch(), config.buddy_rules == "v6.10", _core.RECLAIM[config.reclaim],
            next((boot_pageset(config, z) for z in self.zones if z.cma_pages), None), self._rules())
        if config.pcp_policy == "pcp_buddy":
            self._core.pcpb_enable()
        self._slots = np.full(1024, -1, dtype=np.int64)
        #: Op-stream slots must lie below this; a caller may raise it.
        self.max_slots = MAX_SLOTS

    def _rules(self) -> int:
        # The core's flags for the kernel changes after v6.10 the config follows.
        flags = 0
        for name in self.config.rule_flags:
            flags |= _core.RULES[name]
        return flags

    def _free_high_batch(self) -> bool:
        # zone_pcp_update_cacheinfo: judged against the Normal zone's batch.
        batch = max(z.batch for z in self.zones if z.managed)
        return self.config.cache_slice > 3 * batch

    # ---- converting arguments ----
    # Plain ints pass at the cost of one type test; numpy integers become int;
    # anything else (bools included) is refused with the error of the
    # argument, raised by the core's one raise site.

    def _int(self, value: Any, field: str, what: str) -> int:
        # An int beyond a C int would be an OverflowError in the core's
        # argument conversion; it is out of range for every field but owner
        # (checked by the core as a Python int).
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
                and (field == "owner" or -_C_INT <= value < _C_INT):
            return int(value)
        self._core.raise_error(_PE[_FIELD_ERROR[field]], what, **{field: value})
        raise AssertionError("unreachable")  # pragma: no cover

    def _zone_idx(self, zone: str, what: str) -> int:
        if zone in ZONE_NAMES:
            return ZONE_NAMES.index(zone)
        self._core.raise_error(_PE["PE_BAD_ZONE"], what, zone=zone)
        raise AssertionError("unreachable")  # pragma: no cover

    def check_cpu(self, cpu: int, what: str) -> int:
        """``cpu`` as an int, or the error a bad CPU raises in ``what``: for
        callers that must refuse a CPU before they change anything."""
        cpu = self._int(cpu, "cpu", what)
        self._core.check_cpu(cpu, what)
        return cpu

    def _migratetype(self, name: str, what: str) -> int:
        if name in MIGRATETYPE_NAMES:
            return MIGRATETYPE_NAMES.index(name)
        self._core.raise_error(_PE["PE_BAD_MIGRATETYPE"], what, migratetype=name)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- allocation ----

    def alloc_pages(self, gfp: str | int, order: int = 0, cpu: int = 0, owner: int | None = None) -> int | None:
        """Allocate 2**order pages on a CPU, as __alloc_pages() would.

        :param gfp: ``gfp_t``, as flag names (``"GFP_KERNEL | __GFP_COMP"``) or an int.
        :param owner: a token that travels with the block (default: a fresh one).
            The tokens pcpemu makes itself are 2**62 and above; a caller's own
            tokens below that never collide with them.
        :return: the first pfn of the block, or None when the request fails.
        """
        mask = _GFP_MASKS.get(gfp) if type(gfp) is str else None
        if mask is None:
            mask = _gfp_mask(gfp)
        if type(order) is not int:
            order = self._int(order, "order", "alloc_pages")
        if type(cpu) is not int:
            cpu = self._int(cpu, "cpu", "alloc_pages")
        if owner is not None and type(owner) is not int:
            owner = self._int(owner, "owner", "alloc_pages")
        try:
            pfn = self._core.alloc_pages(mask, order, cpu, owner)
        except OverflowError:           # a plain int too large for C: its field's error
            self._int(order, "order", "alloc_pages"), self._int(cpu, "cpu", "alloc_pages")
            raise
        return None if pfn < 0 else pfn

    def alloc_pages_bulk(self, gfp: str | int, cpu: int = 0) -> int | None:
        """One order-0 page the way alloc_pages_bulk (vmalloc) takes it: off the CPU's
        pcp list with no mm_page_alloc, pcp->free_count left alone; the pfn, or None."""
        pfn = self._core.alloc_pages_bulk_one(parse_gfp(gfp), self.check_cpu(cpu, "alloc_pages_bulk"))
        return None if pfn < 0 else pfn

    def free_pages(self, pfn: int, order: int = 0, cpu: int = 0) -> None:
        """Free a block allocated with alloc_pages (__free_pages).

        :raises DoubleFreeError, NotAllocatedError, WrongOrderError, BadPfnError,
            BadOrderError: with the machine unchanged.
        """
        if type(pfn) is not int:
            pfn = self._int(pfn, "pfn", "free_pages")
        if type(order) is not int:
            order = self._int(order, "order", "free_pages")
        if type(cpu) is not int:
            cpu = self._int(cpu, "cpu", "free_pages")
        try:
            self._core.free_pages(pfn, order, cpu)
        except OverflowError:           # a plain int too large for C: its field's error
            self._int(pfn, "pfn", "free_pages"), self._int(order, "order", "free_pages")
            self._int(cpu, "cpu", "free_pages")
            raise

    def drain_pages(self, cpu: int) -> None:
        """Empty one CPU's pcp lists into the buddy (drain_pages)."""
        cpu = self._int(cpu, "cpu", "drain_pages")
        self._core.drain_pages(cpu, cpu)

    def drain_local_pages(self, zone: str, cpu: int) -> None:
        """Empty one CPU's pcp lists of one zone, on that CPU (drain_local_pages(zone),
        as compaction's lru_add_drain_cpu_zone does)."""
        self._core.drain_pages_zone(self._zone_idx(zone, "drain_local_pages"),
                                    self._int(cpu, "cpu", "drain_local_pages"))

    def drain_all_pages(self, zone: str | None = None, cpu: int = 0) -> None:
        """Empty every CPU's pcp lists, of one zone or all (drain_all_pages), counted on ``cpu``."""
        zi = -1 if zone is None else self._zone_idx(zone, "drain_all_pages")
        self._core.drain_all_pages(zi, self._int(cpu, "cpu", "drain_all_pages"))

    def set_reclaim_active(self, active: bool) -> None:
        """Set or clear ZONE_RECLAIM_ACTIVE on every managed zone, as kswapd's
        balance_pgdat does while it runs: a free then lowers pcp->high and drains
        above 4 * batch (nr_pcp_high)."""
        self._core.set_reclaim_active(bool(active))

    def decay_pcp_high(self, cpu: int) -> None:
        """One tick of the vmstat worker on a CPU: decay pcp->high and trim (decay_pcp_high)."""
        self._core.decay_pcp_high(self._int(cpu, "cpu", "decay_pcp_high"))

    def new_owner(self) -> int:
        """A fresh owner token, drawn as alloc_pages draws them."""
        return self._core.new_owner()

    # ---- op streams ----

    def _op_stream(self, ops: Any, what: str) -> np.ndarray:
        if not isinstance(ops, np.ndarray) or ops.dtype != OP_DTYPE:
            self._core.raise_error(_PE["PE_BAD_STREAM"], what, got=getattr(ops, "dtype", type(ops)))
        if ops.ndim != 1:
            # len() of a 2-D array counts rows, not ops: refuse, never run part of it.
            self._core.raise_error(_PE["PE_BAD_STREAM"], what, got=f"a {ops.ndim}-D array of shape {ops.shape}")
        return np.ascontiguousarray(ops)

    def _slot_table(self, ops: np.ndarray) -> np.ndarray:
        # The slot table the stream needs: checked before anything is
        # allocated, grown into a copy the caller keeps only if the stream
        # runs. Only allocations (OP_ALLOC_BULK's too) and frees use their slot.
        slot = ops["slot"]
        if not len(ops) or (slot.min() >= 0 and slot.max() < len(self._slots)):
            return self._slots                      # the common case: two passes, no copy
        uses = (ops["op"] <= OP_FREE) | (ops["op"] == OP_ALLOC_BULK)
        bad = np.flatnonzero(uses & ((slot < 0) | (slot >= self.max_slots)))
        if len(bad):
            op = ops[bad[0]]
            self._core.raise_error(_PE["PE_BAD_SLOT"], f"op {bad[0]} (slot={int(op['slot'])}, max_slots="
                                   f"{self.max_slots})", True)
        top = int(slot[uses].max()) if uses.any() else -1
        if top < len(self._slots):
            return self._slots
        grown = np.full(max(top + 1, min(2 * len(self._slots), self.max_slots)), -1, dtype=np.int64)
        grown[: len(self._slots)] = self._slots
        return grown

    def run(self, ops: np.ndarray) -> RunResult:
        """Run an op stream in the core with the GIL released.

        :param ops: an OP_DTYPE array (see pcpemu.runs.workloads). A free names the
            slot of its allocation; a free of a slot whose allocation failed is
            skipped and counted (FREE_SKIPPED). Slots live across runs.
        :raises OpStreamError: for a malformed stream, before any op runs.
        """
        ops = self._op_stream(ops, "run")
        slots = self._slot_table(ops)
        before = self._core.stats_array()
        results = np.empty(len(ops), dtype=np.int64)
        self._core.run(ops, slots, results)         # validates the whole stream first
        self._slots = slots
        return RunResult(_stats_dict(_diff(self._core.stats_array(), before)), results)

    def slot_pfn(self, slot: int) -> int | None:
        """The pfn an op-stream slot holds, or None (also for a slot no stream used).

        :raises BadSlotError: for a slot that is not an int >= 0.
        """
        if isinstance(slot, (bool, np.bool_)) or not isinstance(slot, (int, np.integer)) or slot < 0:
            raise BadSlotError(f"slot_pfn: slot {slot!r} is not an int >= 0")
        pfn = int(self._slots[slot]) if slot < len(self._slots) else -1
        return None if pfn < 0 else pfn

    @property
    def nr_slots(self) -> int:
        """The length of the op-stream slot table (it grows with the slots streams name)."""
        return len(self._slots)

    def run_virtual(self, ops: np.ndarray, starts: np.ndarray, slots: np.ndarray,
                    costs: np.ndarray, shared_slots: bool = False) -> tuple[dict[str, Any], tuple[Any, ...]]:
        """Run per-CPU op streams in virtual-time order (pcpemu.runs.smp.run_virtual).

        :param ops: the streams concatenated; stream k is ``ops[starts[k]:starts[k + 1]]``.
        :param slots: their own slot table, -1 filled.
        :param costs: the cost vector (smp.CostModel.as_array()).
        :param shared_slots: a stream may free slots another allocates; the
            free waits in virtual time until the allocation has run.
        :return: (the counters the run moved, (clock per stream, wait and hold
            per op, results, remote zone lines, remote pcp lines)).
        :raises OpStreamError: for a malformed stream, before any op runs.
        """
        ops = self._op_stream(ops, "run_virtual")
        before = self._core.stats_array()
        out = self._core.run_virtual(ops, starts, slots, np.ascontiguousarray(costs, dtype=np.float64), shared_slots)
        return _stats_dict(_diff(self._core.stats_array(), before)), out

    def run_threads(self, ops: np.ndarray, starts: np.ndarray, slots: np.ndarray,
                    shared_slots: bool = False) -> tuple[dict[str, Any], np.ndarray, float]:
        """Run per-CPU op streams on real threads, one per stream, with real
        spinlocks and the GIL released; all threads start at once. With
        ``shared_slots`` a free spins (yielding) until the thread that
        allocates its slot has done so.

        :return: (the counters the run moved, results, wall-clock seconds from
            the common start to the last thread's end).
        :raises OpStreamError: for a malformed stream, before any thread starts.
        """
        ops = self._op_stream(ops, "run_threads")
        self._core.validate_streams(ops, slots)
        results = np.full(len(ops), -1, dtype=np.int64)
        nr = len(starts) - 1
        gate = np.zeros(2, dtype=np.intc)
        ends = [0.0] * nr
        born = np.zeros(len(slots), dtype=np.uint8) if shared_slots else None

        def worker(k: int) -> None:
            part = slice(starts[k], starts[k + 1])
            ends[k] = self._core.run_thread(ops[part], slots, results[part], gate, born)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(nr)]
        before = self._core.stats_array()
        with self.threaded():
            for t in threads:
                t.start()
            while gate[0] < len(threads):
                time.sleep(0.0005)
            t0 = _core.smp_gate_open(gate)
            for t in threads:
                t.join()
        wall = max(ends) - t0 if ends else 0.0
        return _stats_dict(_diff(self._core.stats_array(), before)), results, wall

    @contextlib.contextmanager
    def threaded(self) -> Iterator[None]:
        """Real spinlocks inside the block (run_threads uses it; tests may too).

        :raises PcpemuError: if a trace is on.
        """
        self._core.set_threaded(True)
        try:
            yield
        finally:
            self._core.set_threaded(False)

    @contextlib.contextmanager
    def tracing(self) -> Iterator[Trace]:
        """Record the kmem tracepoints fired inside the ``with`` block.

        The events are mm_page_alloc, mm_page_free, mm_page_alloc_zone_locked,
        mm_page_pcpu_drain and mm_page_alloc_extfrag, with the kernel's fields
        and at the kernel's places (include/trace/events/kmem.h, v6.10). Unlike
        the kernel, mm_page_free_batched never fires: pcpemu frees one block at
        a time.

        :raises PcpemuError: if a trace is already on, or the machine runs real threads.
        """
        trace = Trace()
        self._core.trace_start()
        try:
            yield trace
        finally:
            _fill_trace(trace, self._core.trace_stop())

    # ---- migration, pinning, isolation (the steps pcpemu.runs.migrate composes) ----

    def allocated_blocks(self) -> np.ndarray:
        """Every allocated block, lowest pfn first: a BLOCK_DTYPE array (pfn,
        order, owner, pincount, lru, compound)."""
        return self._core.allocated_blocks()

    def allocated_block(self, pfn: int) -> AllocatedBlock | None:
        """The allocated block headed at ``pfn``, or None if no allocation starts there."""
        info = self._core.allocated_head(self._int(pfn, "pfn", "allocated_block"))
        return None if info is None else AllocatedBlock(*info)

    def block_owner(self, pfn: int) -> int | None:
        """The owner token of the allocated block headed at ``pfn``, or None."""
        block = self.allocated_block(pfn)
        return None if block is None else block.owner

    def pin_page(self, pfn: int, delta: int = 1) -> None:
        """Add ``delta`` FOLL_PIN references to an allocated head (try_grab_folio, unpin_user_page)."""
        self._core.pin_page(self._int(pfn, "pfn", "pin_page"), delta)

    def migrate_block(self, pfn: int, gfp: str | int, *, pin_context: bool = False, cpu: int = 0) -> int | None:
        """Migrate one allocated, unpinned block to a target from
        alloc_migration_target (migrate_pages of one folio); the new pfn, or
        None when no target could be allocated (-ENOMEM)."""
        new = self._core.migrate_block(self._int(pfn, "pfn", "migrate_pages"), parse_gfp(gfp), pin_context,
                                       self._int(cpu, "cpu", "migrate_pages"))
        return None if new < 0 else new

    def start_isolate_page_range(self, start: int, end: int, migratetype: str, cpu: int = 0) -> int | None:
        """Isolate the pageblocks of [start, end) (start_isolate_page_range).

        :return: None, or the pfn that made a block refuse; then nothing stays isolated.
        """
        bad = self._core.start_isolate_page_range(
            self._int(start, "pfn", "start_isolate_page_range"), self._int(end, "pfn", "start_isolate_page_range"),
            self._migratetype(migratetype, "start_isolate_page_range"), self._int(cpu, "cpu", "isolation"))
        return None if bad < 0 else bad

    def undo_isolate_page_range(self, start: int, end: int, migratetype: str, cpu: int = 0) -> None:
        """Give the pageblocks of [start, end) back ``migratetype`` (undo_isolate_page_range)."""
        self._core.undo_isolate_page_range(
            self._int(start, "pfn", "undo_isolate_page_range"), self._int(end, "pfn", "undo_isolate_page_range"),
            self._migratetype(migratetype, "undo_isolate_page_range"), self._int(cpu, "cpu", "isolation"))

    def alloc_contig_migrate_range(self, start: int, end: int, gfp: str | int,
                                   cpu: int = 0) -> tuple[int, dict[int, int]]:
        """Migrate the movable blocks out of [start, end) (__alloc_contig_migrate_range).

        :return: (0, -EBUSY or -ENOMEM, {old pfn: new pfn}).
        """
        ret, moved = self._core.alloc_contig_migrate_range(
            self._int(start, "pfn", "alloc_contig_migrate_range"), self._int(end, "pfn", "alloc_contig_migrate_range"),
            parse_gfp(gfp), self._int(cpu, "cpu", "alloc_contig_migrate_range"))
        return ret, {int(s): int(d) for s, d in moved}

    def test_pages_isolated(self, start: int, end: int) -> int | None:
        """None when every page of [start, end) is isolated and free, else the
        first pfn that is not (test_pages_isolated)."""
        bad = self._core.test_pages_isolated(self._int(start, "pfn", "test_pages_isolated"),
                                             self._int(end, "pfn", "test_pages_isolated"))
        return None if bad < 0 else bad

    def contig_range_blockers(self, start: int, end: int) -> list[dict[str, Any]]:
        """The in-use blocks of [start, end) migration cannot move:
        ``[{"pfn", "order", "owner", "why": "pinned" | "unmovable"}]``."""
        return [{"pfn": int(h), "order": int(o), "owner": int(w), "why": _BLOCKER_WHY[k]}
                for h, o, w, k in self._core.contig_range_blockers(self._int(start, "pfn", "contig_range_blockers"),
                                                                   self._int(end, "pfn", "contig_range_blockers"))]

    def isolate_freepages_range(self, start: int, end: int, owner: int, cpu: int = 0) -> None:
        """Take the free pages of the isolated range [start, end) as one owner's
        (isolate_freepages_range); test_pages_isolated must pass first."""
        self._core.isolate_freepages_range(
            self._int(start, "pfn", "isolate_freepages_range"), self._int(end, "pfn", "isolate_freepages_range"),
            self._int(owner, "owner", "isolate_freepages_range"), self._int(cpu, "cpu", "isolate_freepages_range"))

    def free_contig_range(self, start: int, end: int, cpu: int = 0) -> None:
        """Free a range isolate_freepages_range took, block by block (free_contig_range)."""
        self._core.free_contig_range(self._int(start, "pfn", "free_contig_range"),
                                     self._int(end, "pfn", "free_contig_range"),
                                     self._int(cpu, "cpu", "free_contig_range"))

    # ---- a traced kernel's starting state (pcpemu.runs.kstate) ----

    def seed_zone(self, zone: str, block_types: np.ndarray, free_pfns: np.ndarray, free_orders: np.ndarray,
                  owner: int) -> None:
        """Lay a zone out as a real one was: every page allocated to ``owner`` (order 0),
        the pageblock types ``block_types`` (one per pageblock of the zone, as
        MIGRATETYPE_NAMES indexes), then the blocks ``free_pfns``/``free_orders`` freed
        into the buddy. Only on a machine that has run nothing."""
        if self.stats()["ALLOC_CALLS"] or self.stats()["FREE_CALLS"]:
            raise PcpemuError("seed_zone needs a machine that has run nothing")
        zi = self._zone_idx(zone, "seed_zone")
        pfns = np.ascontiguousarray(free_pfns, np.int64)
        self._core.seed_zone(zi, np.ascontiguousarray(block_types, np.uint8), pfns,
                             np.ascontiguousarray(free_orders, np.int8), np.argsort(pfns, kind="stable"), owner)

    def seed_pcp(self, zone: str, cpu: int, count: int, high: int, owner: int, pindex: int | None = None) -> int:
        """Put ``count`` blocks of ``owner``'s pages on a CPU's pcp list ``pindex``
        (default Movable order 0) and set its high; returns how many went on. The
        blocks come from pageblocks of the list's type, then of the types a refill of
        it falls back to, then any."""
        pindex = self.order_to_pindex("Movable", 0) if pindex is None else pindex
        if not 0 <= pindex < self.nr_pcp_lists:
            raise PcpemuError(f"pindex {pindex} is outside 0..{self.nr_pcp_lists - 1}")
        return self._core.seed_pcp(self._zone_idx(zone, "seed_pcp"), self._int(cpu, "cpu", "seed_pcp"), pindex,
                                   int(count), int(high), owner)

    def pcp_untraced_move(self, zone: str, cpu: int, delta: int, pindex: int | None = None) -> int:
        """Put ``delta`` pages of the untraced owner's on a CPU's pcp list ``pindex``
        (default Movable order 0), in blocks of its order at its tail, or, below zero,
        give that many of the oldest back (list ``pindex`` first, then the order-0
        lists): pages that moved the traced kernel's lists with no event. Returns the
        pages moved, signed (fewer when either side runs out); needs a seeded machine
        (seed_zone), else moves none."""
        pindex = self.order_to_pindex("Movable", 0) if pindex is None else pindex
        return self._core.pcp_untraced_move(self._zone_idx(zone, "pcp_untraced_move"),
                                            self.check_cpu(cpu, "pcp_untraced_move"), int(delta),
                                            self._int(pindex, "pindex", "pcp_untraced_move"))

    def pcp_untraced_take(self, zone: str, cpu: int, migratetype: str, order: int, nr_blocks: int) -> int:
        """Give up to ``nr_blocks`` blocks off the head of a CPU's pcp list of
        (migratetype, order) back to the untraced owner: pages the traced kernel's list
        lost to an allocation it did not trace. Returns the blocks taken (fewer when the
        list runs out, none for an order with no pcp list); needs a seeded machine
        (seed_zone), else takes none."""
        pindex = self.order_to_pindex(migratetype, order)
        if pindex < 0:
            return 0
        return self._core.pcp_untraced_take(self._zone_idx(zone, "pcp_untraced_take"),
                                            self.check_cpu(cpu, "pcp_untraced_take"), pindex, int(nr_blocks))

    def pcp_untraced_relist(self, zone: str, cpu: int, migratetype: str, order: int, nr_blocks: int,
                            to: str = "Unmovable") -> int:
        """Move up to ``nr_blocks`` of the oldest blocks of a CPU's pcp list of
        (migratetype, order) onto the list of (``to``, order): pages the replay put on
        a list the traced kernel did not (their pageblock's type never shown), as a
        refill of that list shows; a block whose pageblock is of another type than
        ``to`` leaves the untraced owner's block of a ``to`` pageblock in its place,
        so that its frees go back to that list. pcp->count stays. Returns the blocks
        moved (fewer when the list runs out, none for an order with no pcp list);
        needs a seeded machine (seed_zone), else moves none."""
        pindex = self.order_to_pindex(migratetype, order)
        if pindex < 0:
            return 0
        return self._core.pcp_untraced_relist(self._zone_idx(zone, "pcp_untraced_relist"),
                                              self.check_cpu(cpu, "pcp_untraced_relist"), pindex,
                                              MIGRATETYPE_NAMES.index(to), int(nr_blocks))

    def pcp_set_alloc_factor(self, zone: str, cpu: int, alloc_factor: int) -> int:
        """Set a CPU's pcp->alloc_factor (the doublings of its next order-0 refill,
        0..pcp_batch_scale_max), which /proc does not print: where the traced kernel's
        refill shows it. Returns the value it had."""
        zi, cpu = self._zone_idx(zone, "pcp_set_alloc_factor"), self.check_cpu(cpu, "pcp_set_alloc_factor")
        if not isinstance(alloc_factor, (int, np.integer)) or isinstance(alloc_factor, bool) \
                or not 0 <= alloc_factor <= self.config.pcp_batch_scale_max:
            raise ConfigError(f"pcp_set_alloc_factor: alloc_factor {alloc_factor!r} is outside "
                              f"0..{self.config.pcp_batch_scale_max} (CONFIG_PCP_BATCH_SCALE_MAX)")
        return self._core.pcp_set_alloc_factor(zi, cpu, int(alloc_factor))

    def pcp_set_free_high_at(self, zone: str, cpu: int, free_count: int) -> int:
        """Set the run of consecutive frees (pcp->free_count, in pages) from which a free
        of order 1..3 drains a CPU's pcp at once (free_high), which /proc does not show:
        where the traced kernel's drains show it. 0 gives back the preset's rule. Returns
        the value it had (0: the rule's); pcp_state's ``free_high_min_count`` is the one in effect."""
        zi, cpu = self._zone_idx(zone, "pcp_set_free_high_at"), self.check_cpu(cpu, "pcp_set_free_high_at")
        limit = 1 << 15     # pcp->free_count is a short
        if not isinstance(free_count, (int, np.integer)) or isinstance(free_count, bool) \
                or not 0 <= free_count < limit:
            raise ConfigError(f"pcp_set_free_high_at: free_count {free_count!r} is outside 0..{limit - 1}")
        return self._core.pcp_set_free_high_at(zi, cpu, int(free_count))

    def take_untraced(self, zone: str, migratetype: int, order: int, n: int, owner: int,
                      cursor: np.ndarray) -> np.ndarray:
        """Up to n blocks of ``owner``'s pages made whole at ``order`` (see _core.take_untraced)."""
        return self._core.take_untraced(self._zone_idx(zone, "take_untraced"), migratetype,
                                        self._int(order, "order", "take_untraced"), n, owner, cursor)

    def claim_untraced_pageblock(self, zone: str, migratetype: int, owner: int, cursor: np.ndarray) -> int:
        """The next pageblock made wholly of ``owner``'s pages, retyped ``migratetype``
        (see _core.claim_untraced_pageblock); its first pfn, -1 when there is none."""
        return self._core.claim_untraced_pageblock(self._zone_idx(zone, "claim_untraced_pageblock"),
                                                   migratetype, owner, cursor)

    def load_slots(self, slots: np.ndarray, pfns: np.ndarray) -> None:
        """Point op-stream slots at allocated blocks, so that stream frees can free them."""
        if len(slots) and int(slots.max()) >= len(self._slots):
            grown = np.full(max(int(slots.max()) + 1, 2 * len(self._slots)), -1, dtype=np.int64)
            grown[: len(self._slots)] = self._slots
            self._slots = grown
        self._slots[slots] = pfns

    def grow_zone(self, zone: str, nr_pages: int, params: ZoneParams, cpu: int = 0, on_demand: bool = False) -> None:
        """Bring ``nr_pages`` more pages into a zone, below its managed range, free
        (memory onlined, or deferred struct-page init growing the zone), and set the
        watermarks, lowmem reserves and pcp batch/high_min/high_max of ``params``
        (its ZoneParams for the new size). ``cpu`` frees the new blocks (mm_page_free).
        ``on_demand``: an allocation on ``cpu`` grew the zone (deferred struct-page
        init from get_page_from_freelist), after the zone failed its high-watermark
        check, which sets ZONE_BELOW_HIGH."""
        self._core.grow_zone(self._zone_idx(zone, "grow_zone"), int(nr_pages), params,
                             self.check_cpu(cpu, "grow_zone"), bool(on_demand))

    def reset_stats(self) -> None:
        """Zero every counter (the state stays)."""
        self._core.reset_stats()

    # ---- views ----

    def stats(self, per_cpu: bool = False) -> dict[str, Any]:
        """Every counter, summed over CPUs (and per CPU with ``per_cpu``)."""
        raw = self._core.stats_array()
        out = _stats_dict(raw)
        if per_cpu:
            out["per_cpu"] = [_stats_dict(raw[i : i + 1]) for i in range(len(raw))]
        return out

    def stats_snapshot(self) -> StatsSnapshot:
        """The counters now, for a later stats_delta()."""
        return StatsSnapshot(self._core.stats_array())

    def stats_delta(self, before: StatsSnapshot) -> dict[str, Any]:
        """What the counters moved since ``before``, in stats()'s form."""
        return _stats_dict(_diff(self._core.stats_array(), before.raw))

    def check(self) -> None:
        """Verify every invariant of the allocator state.

        :raises InvariantError: naming the first broken invariant and its values.
        """
        problem = self._core.check()
        if problem:
            raise InvariantError(problem)

    def pageblock_migratetype(self, pfn: int) -> str:
        """The migratetype name of the pageblock holding ``pfn``."""
        return MIGRATETYPE_NAMES[self._core.pageblock_migratetype(self._int(pfn, "pfn", "pageblock_migratetype"))]

    def page_zone(self, pfn: int) -> str | None:
        """The name of the zone ``pfn`` lies in, or None for a hole."""
        zi = self._core.zone_of_pfn(self._int(pfn, "pfn", "page_zone"))
        return ZONE_NAMES[zi] if zi >= 0 else None

    def page_info(self, pfn: int) -> dict[str, Any]:
        """What a pfn is now: state, order of its block, zone, pcp CPU and list, owner."""
        pfn = self._int(pfn, "pfn", "page_info")
        info: dict[str, Any] = {"pfn": pfn, "zone": self.page_zone(pfn), "pageblock": self.pageblock_migratetype(pfn)}
        head = self._core.block_head(pfn)
        if head < 0:
            info.update(state="reserved" if info["zone"] is None else "unknown")
            return info
        s = self._core.page_state(head)
        info["head"] = head
        if s["buddy"]:
            info.update(state="free", order=s["private"])
        elif s["pcp"]:
            info.update(state="pcp", order=self.pindex_order[s["pindex"]], cpu=s["cpu"], pindex=s["pindex"])
        else:
            info.update(state="allocated", order=s["order"], owner=s["owner"], refcount=s["refcount"],
                        pincount=s["pincount"], compound=s["compound"])
        return info

    def zone_state(self, zone: str) -> dict[str, Any]:
        """Free counts, free-list lengths (order x migratetype) and flags of a zone."""
        return self._core.zone_state(self._zone_idx(zone, "zone_state"))

    def pcp_state(self, zone: str, cpu: int) -> dict[str, Any]:
        """The fields of one CPU's struct per_cpu_pages for a zone, ``decayed_high``:
        the high the vmstat worker's next decay_pcp_high leaves unless the count holds
        it up (count - batch << CONFIG_PCP_BATCH_SCALE_MAX), and ``free_high_min_count``:
        the free_count from which a free of order 1..3 drains it at once."""
        return self._core.pcp_state(self._zone_idx(zone, "pcp_state"), self._int(cpu, "cpu", "pcp_state"))

    def pcp_list(self, zone: str, cpu: int, pindex: int) -> list[int]:
        """The pfns on one pcp list, the next to be allocated first."""
        return self._core.pcp_list_pfns(self._zone_idx(zone, "pcp_list"), self._int(cpu, "cpu", "pcp_list"),
                                        self._int(pindex, "pindex", "pcp_list"))

    def free_list(self, zone: str, order: int, migratetype: str) -> list[int]:
        """The pfns on one buddy free list, head first."""
        return self._core.free_list_pfns(self._zone_idx(zone, "free_list"), self._int(order, "order", "free_list"),
                                         self._migratetype(migratetype, "free_list"))

    def order_to_pindex(self, migratetype: str, order: int) -> int:
        """The pcp list index of (migratetype, order), or -1 (order_to_pindex)."""
        return self._core.order_to_pindex(self._migratetype(migratetype, "order_to_pindex"),
                                          self._int(order, "order", "order_to_pindex"))

    def pageblock_types(self) -> np.ndarray:
        """Migratetype of every pageblock, indexed by ``pfn >> pageblock_order``."""
        return self._core.pageblock_types()

    def pageblock_census(self) -> dict[str, int]:
        """Pageblocks wholly free in the buddy, mixed ones (holding allocated
        movable and non-movable blocks at once), all populated ones; and the
        pages of CMA pageblocks and how many of them are allocated."""
        free, mixed, total, cma_used, cma_pages = self._core.pageblock_census()
        return {"free_pageblocks": free, "mixed_pageblocks": mixed, "pageblocks": total,
                "cma_pages_allocated": cma_used, "cma_pages": cma_pages}

    def pcp_buddy_state(self) -> dict[str, Any] | None:
        """Under the pcp_buddy policy: pageblocks owned (in all and per CPU) and
        those on an owned_blocks list; None under the classic pcp."""
        return self._core.pcpb_state()

    def buddyinfo(self) -> str:
        """``/proc/buddyinfo`` text."""
        return procfs.buddyinfo(self)

    def pagetypeinfo(self) -> str:
        """``/proc/pagetypeinfo`` text."""
        return procfs.pagetypeinfo(self)

    def zoneinfo(self) -> str:
        """``/proc/zoneinfo`` text (the parts pcpemu models)."""
        return procfs.zoneinfo(self)

    @property
    def nr_pcp_lists(self) -> int:
        return len(self.pindex_order)

    @property
    def pcp_alloc_size(self) -> int:
        """Bytes each CPU's struct per_cpu_pages takes, rounded up to a cacheline."""
        return self._core.pcp_alloc_size

    @property
    def populated_zones(self) -> list[ZoneParams]:
        return [z for z in self.zones if z.managed]

    # ---- test hooks ----

    def set_pcp_locked(self, zone: str, cpu: int, locked: bool) -> None:
        """Hold or release a CPU's pcp lock, as a remote drain or an IRQ would:
        the fast paths' trylock then fails (for tests)."""
        self._core.set_pcp_locked(self._zone_idx(zone, "set_pcp_locked"), self._int(cpu, "cpu", "set_pcp_locked"),
                                  bool(locked))


# gfp strings already parsed: one dict lookup on the alloc_pages fast path,
# where parse_gfp's checks and cache cost more than the allocation itself.
_GFP_MASKS: dict[str, int] = {}


def pcp_reveal_gfp(zone_idx: Any, from_mt: Any, to_mt: Any, every: Any = False, from_order: Any = 0) -> Any:
    """The gfp field of OP_PCP_REVEAL ops (PCP_REVEAL_* in _kernel.h): the zone, the
    list the pages come off (from_mt, from_order), the migratetype of the list they
    go on (of the op's order); every: all the first list's pages, not one block.
    Takes ints or numpy arrays."""
    return zone_idx | from_mt << 4 | to_mt << 8 | from_order << 12 | every * PCP_REVEAL_ALL


def _gfp_mask(gfp: str | int) -> int:
    mask = parse_gfp(gfp)
    if type(gfp) is str and len(_GFP_MASKS) < 1024:
        _GFP_MASKS[gfp] = mask
    return mask


_C_INT = 1 << 31
# The error code of an argument that cannot be converted.
_FIELD_ERROR = {"pfn": "PE_BAD_PFN", "order": "PE_BAD_ORDER", "cpu": "PE_BAD_CPU", "owner": "PE_BAD_OWNER",
                "pindex": "PE_BAD_PINDEX"}


def _diff(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    out = after.copy()
    for name in after.dtype.names:
        out[name] = after[name] - before[name]
    return out


def _stats_dict(raw: np.ndarray) -> dict[str, Any]:
    total = {name: raw[name].sum(axis=0) for name in raw.dtype.names}
    d: dict[str, Any] = {name: int(v) for name, v in zip(_core.ITEM_NAMES, total["item"])}
    pages = 1 << np.arange(total["free"].shape[0], dtype=np.uint64)      # per order
    d["PGALLOC"] = int(total["alloc"].sum(axis=1) @ pages)
    d["PGFREE"] = int(total["free"] @ pages)
    d["ALLOC_CALLS"] = int(total["alloc"].sum() + total["alloc_fail"].sum())
    d["FREE_CALLS"] = int(total["free"].sum())
    d["alloc"] = total["alloc"].tolist()
    d["alloc_fail"] = total["alloc_fail"].tolist()
    d["pcp_hit"] = total["pcp_hit"].tolist()
    d["pcp_miss"] = total["pcp_miss"].tolist()
    d["pcp_refill_blocks"] = total["pcp_refill_blocks"].tolist()
    d["cma_pages_to"] = {MIGRATETYPE_NAMES[i]: int(v) for i, v in enumerate(total["cma_pages_to"])
                         if i < MIGRATE_PCPTYPES}
    d["zone_lock"] = {n: int(v) for n, v in zip(_core.LOCK_SITE_NAMES, total["lock_site"])}
    d["zone_lock_pages"] = {n: int(v) for n, v in zip(_core.LOCK_SITE_NAMES, total["lock_site_pages"])}
    hist = total["cl_hist"]                     # [op][lines touched]: every recorded op lands in one bucket
    ops = hist.sum(axis=1)
    lines = hist @ np.arange(hist.shape[1], dtype=np.uint64)
    d["pcp_cachelines"] = {
        op: {"ops": int(ops[i]), "total": int(lines[i]),
             "mean": float(lines[i] / ops[i]) if ops[i] else 0.0,
             "histogram": hist[i].tolist()}
        for i, op in enumerate(_core.PCP_OP_NAMES)
    }
    d["pcp_cachelines_per_op"] = float(lines.sum() / ops.sum()) if ops.sum() else 0.0
    d["pages_per_zone_lock"] = d["ZONE_LOCK_PAGES"] / d["ZONE_LOCK"] if d["ZONE_LOCK"] else 0.0
    return d
