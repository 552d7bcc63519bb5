"""Machine: the Python face of one emulated NUMA node.

Boots the core with the zones, watermarks and pcp values the kernel would
derive for a KernelConfig, checks every argument before the core sees it, and
turns the core's counters and views into kernel vocabulary.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import numpy as np

from . import _core
from .kernel import procfs
from .runs import workloads
from .kernel.config import MAX_PAGE_ORDER, KernelConfig
from .errors import (BadCpuError, BadOrderError, BadOwnerError, BadPfnError, BadSlotError, ConfigError,
                     InvariantError, OpStreamError, UnknownMigratetypeError, UnknownZoneError)
from .kernel.ftrace import EVENT_DTYPE
from .kernel.gfp import MIGRATETYPE_NAMES, ZONE_NAMES, parse_gfp
from .kernel.pcplists import pcp_list_table
from .kernel.watermark import ZoneParams, setup_zones

__all__ = ["Machine", "OP_DTYPE", "OPS", "RunResult", "Trace"]

#: dtype of one op of an op stream (struct pcpemu_op).
OP_DTYPE = _core.OP_DTYPE
assert OP_DTYPE == workloads.OP_DTYPE
#: Op codes of an op stream.
OPS = {"alloc": 0, "free": 1, "drain": 2, "drain_all": 3, "decay": 4}


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


def _fill_trace(trace: Trace, raw: np.ndarray) -> None:
    # raw: the core's events (_core.CORE_EVENT_DTYPE).
    trace.events = np.zeros(len(raw), EVENT_DTYPE)
    for name in ("kind", "cpu", "pfn", "order", "migratetype", "gfp", "fallback_order", "fallback_migratetype",
                 "percpu_refill", "change_ownership"):
        trace.events[name] = raw[name]
    trace.events["line"] = -1
    trace.op = raw["op"].copy()


class Machine:
    """One emulated node booted from a KernelConfig.

    :param config: the machine and kernel to emulate.
    :param seed: seeds every random choice the machine makes (workload helpers
        draw from ``machine.rng``).
    """

    def __init__(self, config: KernelConfig, seed: int = 0) -> None:
        if not isinstance(config, KernelConfig):
            raise ConfigError(f"Machine needs a KernelConfig, not {type(config).__name__}")
        self.config = config
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.min_free_kbytes, self.zones = setup_zones(config)
        pindex, pindex_order = pcp_list_table(config)
        self.pindex_order = pindex_order
        self._pindex = pindex
        self._core = _core.Allocator(
            config.memory, self.zones, config.cma_base or 0, config.cma, config.cpus, pindex, pindex_order,
            config.cacheline, config.watermark_boost_factor, config.pcp_batch_scale_max, config.pcp_cma,
            self._free_high_batch())
        self._slots = np.full(1024, -1, dtype=np.int64)

    def _free_high_batch(self) -> bool:
        # zone_pcp_update_cacheinfo: judged against the Normal zone's batch.
        batch = max(z.batch for z in self.zones if z.managed)
        return self.config.cache_slice > 3 * batch

    # ---- checks ----

    # Each check takes a plain int in range at once; anything else (bools,
    # numpy integers, other types) goes through the full test.

    def _cpu(self, cpu: int) -> int:
        if type(cpu) is int and 0 <= cpu < self.config.cpus:
            return cpu
        if isinstance(cpu, bool) or not isinstance(cpu, (int, np.integer)) or not 0 <= cpu < self.config.cpus:
            raise BadCpuError(f"cpu {cpu!r} is outside 0..{self.config.cpus - 1}")
        return int(cpu)

    @staticmethod
    def _order(order: int) -> int:
        if type(order) is int and 0 <= order <= MAX_PAGE_ORDER:
            return order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_PAGE_ORDER:
            raise BadOrderError(f"order {order!r} is outside 0..{MAX_PAGE_ORDER}")
        return int(order)

    def _pfn(self, pfn: int) -> int:
        if type(pfn) is int and 0 <= pfn < self.config.memory:
            return pfn
        if isinstance(pfn, bool) or not isinstance(pfn, (int, np.integer)) or not 0 <= pfn < self.config.memory:
            raise BadPfnError(f"pfn {pfn!r} is outside 0..{self.config.memory - 1:#x}")
        return int(pfn)

    # ---- allocation ----

    def alloc_pages(self, gfp: str | int, order: int = 0, cpu: int = 0, owner: int | None = None) -> int | None:
        """Allocate 2**order pages on a CPU, as __alloc_pages() would.

        :param gfp: ``gfp_t``, as flag names (``"GFP_KERNEL | __GFP_COMP"``) or an int.
        :param owner: a token that travels with the block (default: a fresh one).
            The tokens pcpemu makes itself are 2**62 and above; a caller's own
            tokens below that never collide with them.
        :return: the first pfn of the block, or None when the request fails.
        """
        mask = parse_gfp(gfp)
        order, cpu = self._order(order), self._cpu(cpu)
        if owner is not None and (type(owner) is not int or not 0 < owner < 1 << 64):
            raise BadOwnerError(f"owner token {owner!r} must be an int in 1..2**64-1")
        pfn = self._core.alloc_pages(mask, order, cpu, owner or 0)
        return None if pfn < 0 else pfn

    def free_pages(self, pfn: int, order: int = 0, cpu: int = 0) -> None:
        """Free a block allocated with alloc_pages (__free_pages).

        :raises DoubleFreeError, NotAllocatedError, WrongOrderError, BadPfnError,
            BadOrderError: with the machine unchanged.
        """
        self._core.free_pages(self._pfn(pfn), self._order(order), self._cpu(cpu))

    def drain_pages(self, cpu: int) -> None:
        """Empty one CPU's pcp lists into the buddy (drain_pages)."""
        self._core.drain_pages(self._cpu(cpu), self._cpu(cpu))

    def drain_all_pages(self, zone: str | None = None, cpu: int = 0) -> None:
        """Empty every CPU's pcp lists, of one zone or all (drain_all_pages), counted on ``cpu``."""
        zi = -1 if zone is None else self._zone_idx(zone)
        self._core.drain_all_pages(zi, self._cpu(cpu))

    def decay_pcp_high(self, cpu: int) -> None:
        """One tick of the vmstat worker on a CPU: decay pcp->high and trim (decay_pcp_high)."""
        self._core.decay_pcp_high(self._cpu(cpu))

    def _zone_idx(self, zone: str) -> int:
        if not isinstance(zone, str) or zone not in ZONE_NAMES or not self.zones[ZONE_NAMES.index(zone)].managed:
            populated = [z.name for z in self.zones if z.managed]
            raise UnknownZoneError(f"zone {zone!r} is not populated; populated zones: {', '.join(populated)}")
        return ZONE_NAMES.index(zone)

    @staticmethod
    def _migratetype(name: str) -> int:
        if not isinstance(name, str) or name not in MIGRATETYPE_NAMES:
            raise UnknownMigratetypeError(f"migratetype {name!r} is not one of {', '.join(MIGRATETYPE_NAMES)}")
        return MIGRATETYPE_NAMES.index(name)

    # ---- op streams ----

    def run(self, ops: np.ndarray) -> RunResult:
        """Run an op stream in the core with the GIL released.

        :param ops: an OP_DTYPE array (see pcpemu.runs.workloads). A free names the
            slot of its allocation; a free of a slot whose allocation failed is
            skipped and counted (FREE_SKIPPED). Slots live across runs.
        :raises OpStreamError: for a malformed stream, before any op runs.
        """
        if not isinstance(ops, np.ndarray) or ops.dtype != OP_DTYPE:
            raise OpStreamError(f"ops must be a numpy array of pcpemu.OP_DTYPE, got {getattr(ops, 'dtype', type(ops))}")
        ops = np.ascontiguousarray(ops)
        if len(ops):
            top = int(ops["slot"].max())
            if top >= len(self._slots):
                grown = np.full(max(top + 1, 2 * len(self._slots)), -1, dtype=np.int64)
                grown[: len(self._slots)] = self._slots
                self._slots = grown
        before = self._core.stats_array()
        results = np.empty(len(ops), dtype=np.int64)
        self._core.run(ops, self._slots, results)
        return RunResult(_stats_dict(_diff(self._core.stats_array(), before)), results)

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
        _core.trace_start(self._core)
        try:
            yield trace
        finally:
            _fill_trace(trace, _core.trace_stop(self._core))

    def slot_pfn(self, slot: int) -> int | None:
        """The pfn an op-stream slot holds, or None (also for a slot no stream used).

        :raises BadSlotError: for a slot that is not a non-negative int.
        """
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or slot < 0:
            raise BadSlotError(f"slot {slot!r} is not an int >= 0")
        pfn = int(self._slots[slot]) if slot < len(self._slots) else -1
        return None if pfn < 0 else pfn

    # ---- views ----

    def stats(self, per_cpu: bool = False) -> dict[str, Any]:
        """Every counter, summed over CPUs (and per CPU with ``per_cpu``)."""
        raw = self._core.stats_array()
        out = _stats_dict(raw)
        if per_cpu:
            out["per_cpu"] = [_stats_dict(raw[i : i + 1]) for i in range(len(raw))]
        return out

    def check(self) -> None:
        """Verify every invariant of the allocator state.

        :raises InvariantError: naming the first broken invariant and its values.
        """
        problem = self._core.check()
        if problem:
            raise InvariantError(problem)

    def pageblock_migratetype(self, pfn: int) -> str:
        """The migratetype name of the pageblock holding ``pfn``."""
        return MIGRATETYPE_NAMES[self._core.pageblock_migratetype(self._pfn(pfn))]

    def page_info(self, pfn: int) -> dict[str, Any]:
        """What a pfn is now: state, order of its block, zone, pcp CPU and list, owner."""
        pfn = self._pfn(pfn)
        zi = self._core.zone_of_pfn(pfn)
        info: dict[str, Any] = {"pfn": pfn, "zone": ZONE_NAMES[zi] if zi >= 0 else None,
                                "pageblock": self.pageblock_migratetype(pfn)}
        head = self._block_head(pfn)
        if head is None:
            info.update(state="reserved" if zi < 0 else "unknown")
            return info
        s = self._core.page_state(head)
        info["head"] = head
        if s["flags"] & 1:
            info.update(state="free", order=s["private"])
        elif s["flags"] & 2:
            info.update(state="pcp", order=self.pindex_order[s["pindex"]], cpu=s["cpu"], pindex=s["pindex"])
        else:
            info.update(state="allocated", order=s["order"], owner=s["owner"], refcount=s["refcount"],
                        pincount=s["pincount"], compound=bool(s["flags"] & 8))
        return info

    def _block_head(self, pfn: int) -> int | None:
        for o in range(MAX_PAGE_ORDER + 1):
            head = pfn & ~((1 << o) - 1)
            s = self._core.page_state(head)
            f = s["flags"]
            size = (1 << s["private"] if f & 1 else 1 << self.pindex_order[s["pindex"]] if f & 2
                    else 1 << s["order"] if f & 4 else 0)
            if size and head + size > pfn:
                return head
        return None

    def zone_state(self, zone: str) -> dict[str, Any]:
        """Free counts, free-list lengths (order x migratetype) and flags of a zone."""
        return self._core.zone_state(self._zone_idx(zone))

    def pcp_state(self, zone: str, cpu: int) -> dict[str, Any]:
        """The fields of one CPU's struct per_cpu_pages for a zone."""
        return self._core.pcp_state(self._zone_idx(zone), self._cpu(cpu))

    def pcp_list(self, zone: str, cpu: int, pindex: int) -> list[int]:
        """The pfns on one pcp list, the next to be allocated first."""
        if isinstance(pindex, bool) or not isinstance(pindex, (int, np.integer)) \
                or not 0 <= pindex < len(self.pindex_order):
            raise UnknownMigratetypeError(f"pindex {pindex!r} is outside 0..{len(self.pindex_order) - 1}")
        return self._core.pcp_list_pfns(self._zone_idx(zone), self._cpu(cpu), pindex)

    def free_list(self, zone: str, order: int, migratetype: str) -> list[int]:
        """The pfns on one buddy free list, head first."""
        return self._core.free_list_pfns(self._zone_idx(zone), self._order(order), self._migratetype(migratetype))

    def order_to_pindex(self, migratetype: str, order: int) -> int:
        """The pcp list index of (migratetype, order), or -1 (order_to_pindex)."""
        return self._pindex[self._order(order)][self._migratetype(migratetype)]

    def pageblock_types(self) -> np.ndarray:
        """Migratetype of every pageblock, indexed by ``pfn >> pageblock_order``."""
        return self._core.pageblock_types()

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
    def populated_zones(self) -> list[ZoneParams]:
        return [z for z in self.zones if z.managed]


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
    d["cma_pages_to"] = {MIGRATETYPE_NAMES[i]: int(v) for i, v in enumerate(total["cma_pages_to"]) if i < 3}
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
