"""Page migration, long-term pinning and contiguous (CMA) allocation.

Mirrors, on a Machine:

* ``migrate_pages`` with ``alloc_migration_target`` (mm/migrate.c);
* ``pin_user_pages(FOLL_LONGTERM)``: the ``__gup_longterm_locked`` retry loop,
  ``check_and_migrate_movable_pages`` and ``migrate_longterm_unpinnable_pages``
  (mm/gup.c), run inside ``memalloc_pin_save()``;
* ``cma_alloc`` / ``alloc_contig_range`` with pageblock isolation (mm/cma.c,
  mm/page_alloc.c, mm/page_isolation.c).

The page work runs in the core, reached through Machine's migration and
isolation steps; this module checks what the loops need, runs them and keeps
the evidence.
"""

from __future__ import annotations

import dataclasses
import errno
import weakref
from collections import Counter
from typing import Any

import numpy as np

from ..errors import BadPfnError, InvariantError, NotAllocatedError, PcpemuError
from ..kernel.gfp import GFP_FLAGS, parse_gfp
from ..machine import AllocatedBlock, Machine

__all__ = [
    "CmaAllocResult",
    "ContigResult",
    "MigrateResult",
    "PinResult",
    "aligned_blocks",
    "alloc_contig_range",
    "check_tokens",
    "cma_alloc",
    "cma_release",
    "collect_longterm_unpinnable_pages",
    "folio_is_longterm_pinnable",
    "migrate_pages",
    "pin_user_pages",
    "unpin_user_pages",
]

# The kernel's return codes: Linux errno values, as the core returns them.
ENOMEM, EBUSY = errno.ENOMEM, errno.EBUSY

#: mtc.gfp_mask of migrate_longterm_unpinnable_pages.
GFP_LONGTERM_PIN = GFP_FLAGS["GFP_USER"] | GFP_FLAGS["__GFP_NOWARN"]
#: The migration gfp of __alloc_contig_migrate_range.
GFP_CONTIG = GFP_FLAGS["GFP_USER"] | GFP_FLAGS["__GFP_MOVABLE"] | GFP_FLAGS["__GFP_RETRY_MAYFAIL"]
#: Rounds of the pin loop without fewer unpinnable pages before a livelock is declared.
LIVELOCK_ROUNDS = 8


# ---- checks ----

def _head(machine: Machine, pfn: int, what: str) -> AllocatedBlock:
    """The allocated block headed at pfn."""
    block = machine.allocated_block(pfn)
    if block is None:
        raise NotAllocatedError(f"{what}: pfn {pfn:#x} is not the head of an allocated block")
    return block


def _unique(pfns: Any, what: str) -> list[int]:
    out = [int(p) for p in pfns]
    if len(set(out)) != len(out):
        dup = next(p for p, n in Counter(out).items() if n > 1)
        raise PcpemuError(f"{what}: pfn {dup:#x} is given twice")
    return out


def _in_cma(machine: Machine, pfn: int) -> bool:
    return machine.pageblock_migratetype(pfn) == "CMA"


# ---- migration (mm/migrate.c) ----

@dataclasses.dataclass
class MigrateResult:
    """What migrate_pages did: source pfn -> new pfn, and the sources left in place."""

    moved: dict[int, int]
    failed: list[int]


def migrate_pages(machine: Machine, pfns: Any, gfp: int | str = GFP_LONGTERM_PIN, *, pin_context: bool = False,
                  cpu: int = 0) -> MigrateResult:
    """Migrate allocated blocks (order 0 or THP) to targets from alloc_migration_target.

    :param gfp: mtc.gfp_mask; a THP source gets GFP_TRANSHUGE added and its own order.
    :param pin_context: allocate as inside memalloc_pin_save() (no __GFP_MOVABLE, so no CMA).
    :raises NotAllocatedError: a pfn is not an allocated head or is pinned; nothing moved.
    """
    mask = parse_gfp(gfp)
    pfns = _unique(pfns, "migrate_pages")
    for pfn in pfns:
        if _head(machine, pfn, "migrate_pages").pincount:
            raise NotAllocatedError(f"migrate_pages: pfn {pfn:#x} is pinned; its refcount is not the expected one")
    moved, failed = {}, []
    for pfn in pfns:
        new = machine.migrate_block(pfn, mask, pin_context=pin_context, cpu=cpu)
        if new is None:
            failed.append(pfn)
        else:
            moved[pfn] = new
    return MigrateResult(moved, failed)


# ---- FOLL_LONGTERM pinning (mm/gup.c) ----

def folio_is_longterm_pinnable(machine: Machine, pfn: int) -> bool:
    """May the block at pfn stay pinned for long? Not in a CMA or isolated
    pageblock, not in ZONE_MOVABLE (folio_is_longterm_pinnable)."""
    if machine.pageblock_migratetype(pfn) in ("CMA", "Isolate"):
        return False
    return machine.page_zone(pfn) != "Movable"


@dataclasses.dataclass
class PinResult:
    """The outcome of pin_user_pages.

    ``status`` is ``"pinned"`` (every page pinnable and pinned), ``"livelock"``
    (the kernel would retry forever; stopped after LIVELOCK_ROUNDS rounds without
    progress, the pages left pinned as the last round's pin found them) or
    ``"enomem"`` (a migration target could not be allocated; nothing pinned).
    ``pages`` are the pfns the range maps now. ``sticky_pfns`` are the CMA pfns
    that were migration targets in more than one round.
    """

    status: str
    pages: list[int]
    rounds: int
    migrations: int
    cma_to_cma: int
    cma_to_normal: int
    pinned_in_cma: int
    sticky_pfns: list[int]
    unpinnable_per_round: list[int]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _pin_all(machine: Machine, pages: list[int], delta: int) -> None:
    for pfn in pages:
        machine.pin_page(pfn, delta)


def collect_longterm_unpinnable_pages(machine: Machine, pages: list[int]) -> list[int]:
    """The pinned pages that may not stay pinned (collect_longterm_unpinnable_pages)."""
    return [pfn for pfn in pages if not folio_is_longterm_pinnable(machine, pfn)]


def pin_user_pages(machine: Machine, pfns: Any, *, longterm: bool = True, cpu: int = 0,
                   livelock_rounds: int = LIVELOCK_ROUNDS) -> PinResult:
    """pin_user_pages(pages, FOLL_LONGTERM) of a range mapped by allocated blocks.

    Runs the __gup_longterm_locked loop: pin, check_and_migrate_movable_pages,
    and on -EAGAIN (something was migrated) pin again. Unlike the kernel, which
    has no retry limit, the loop stops when ``livelock_rounds`` rounds in a row
    did not lower the number of unpinnable pages, and reports a livelock.

    :raises NotAllocatedError: a pfn is not an allocated head; nothing pinned.
    """
    cpu = machine.check_cpu(cpu, "pin_user_pages")        # before anything is pinned
    pages = _unique(pfns, "pin_user_pages")
    for pfn in pages:
        _head(machine, pfn, "pin_user_pages")
    if isinstance(livelock_rounds, bool) or not isinstance(livelock_rounds, int) or livelock_rounds < 1:
        raise PcpemuError(f"pin_user_pages: livelock_rounds {livelock_rounds!r} must be an int >= 1")
    rounds = migrations = cma_to_cma = cma_to_normal = 0
    per_round: list[int] = []
    landed: Counter[int] = Counter()
    best, stalled = None, 0
    while True:
        rounds += 1
        _pin_all(machine, pages, +1)                      # __get_user_pages_locked
        if not longterm:
            return _pin_result("pinned", machine, pages, rounds, 0, 0, 0, landed, per_round)
        unpinnable = collect_longterm_unpinnable_pages(machine, pages)
        per_round.append(len(unpinnable))
        if not unpinnable:
            return _pin_result("pinned", machine, pages, rounds, migrations, cma_to_cma, cma_to_normal,
                               landed, per_round)
        if best is None or len(unpinnable) < best:
            best, stalled = len(unpinnable), 0
        else:
            stalled += 1
        if stalled >= livelock_rounds:
            return _pin_result("livelock", machine, pages, rounds, migrations, cma_to_cma, cma_to_normal,
                               landed, per_round)
        # migrate_longterm_unpinnable_pages: unpin everything, migrate, -EAGAIN.
        _pin_all(machine, pages, -1)
        result = migrate_pages(machine, unpinnable, GFP_LONGTERM_PIN, pin_context=True, cpu=cpu)
        migrations += len(result.moved)
        for src, dst in result.moved.items():
            if _in_cma(machine, dst):
                cma_to_cma += _in_cma(machine, src)
                landed[dst] += 1
            else:
                cma_to_normal += 1
        pages = [result.moved.get(p, p) for p in pages]
        if result.failed:
            return _pin_result("enomem", machine, pages, rounds, migrations, cma_to_cma, cma_to_normal,
                               landed, per_round)


def _pin_result(status: str, machine: Machine, pages: list[int], rounds: int, migrations: int, c2c: int,
                c2n: int, landed: Counter[int], per_round: list[int]) -> PinResult:
    pinned = [p for p in pages if _head(machine, p, "pin_user_pages").pincount]
    return PinResult(status, pages, rounds, migrations, c2c, c2n,
                     sum(1 for p in pinned if _in_cma(machine, p)),
                     sorted(p for p, n in landed.items() if n > 1), per_round)


def unpin_user_pages(machine: Machine, pfns: Any) -> None:
    """Drop one FOLL_PIN reference of each block (unpin_user_pages).

    :raises NotAllocatedError: a pfn is not a pinned allocated head; nothing unpinned.
    """
    pages = _unique(pfns, "unpin_user_pages")
    for pfn in pages:
        if not _head(machine, pfn, "unpin_user_pages").pincount:
            raise NotAllocatedError(f"unpin_user_pages: pfn {pfn:#x} is not pinned")
    _pin_all(machine, pages, -1)


# ---- contiguous allocation (mm/page_alloc.c, mm/cma.c) ----

@dataclasses.dataclass
class ContigResult:
    """alloc_contig_range's return code, the blocks it migrated (old -> new pfn) and the blocks in its way."""

    ret: int
    moved: dict[int, int]
    blockers: list[dict[str, Any]]


def _cma_range(machine: Machine) -> tuple[int, int]:
    cfg = machine.config
    if not cfg.cma:
        raise PcpemuError("this machine has no CMA area (KernelConfig.cma is 0)")
    return cfg.cma_base, cfg.cma_base + cfg.cma


def alloc_contig_range(machine: Machine, start: int, end: int, *, cpu: int = 0) -> ContigResult:
    """Allocate the CMA pfns [start, end) as one owner (alloc_contig_range(..., MIGRATE_CMA)).

    Isolates the pageblocks, drains the pcp lists, migrates movable pages out,
    and takes the range when every page is free; otherwise returns -EBUSY with
    the unmovable or pinned blocks that stayed, and the isolation undone.
    On success ``blockers`` is empty and the range is allocated to one fresh owner.
    """
    lo, hi = _cma_range(machine)
    if not (isinstance(start, int) and isinstance(end, int) and lo <= start < end <= hi):
        raise BadPfnError(f"alloc_contig_range: [{start!r}, {end!r}) is not a range inside the CMA area "
                          f"[{lo:#x}, {hi:#x})")
    bad = machine.start_isolate_page_range(start, end, "CMA", cpu)
    if bad is not None:
        return ContigResult(-EBUSY, {}, [{"pfn": bad, "order": 0, "why": "isolated"}])
    machine.drain_all_pages(machine.page_zone(start), cpu)
    ret, moved = machine.alloc_contig_migrate_range(start, end, GFP_CONTIG, cpu)
    blockers: list[dict[str, Any]] = []
    if ret in (0, -EBUSY):
        # -EBUSY from migration falls through to the real test.
        ret = 0
        if machine.test_pages_isolated(start, end) is not None:
            ret = -EBUSY
            blockers = machine.contig_range_blockers(start, end)
        else:
            machine.isolate_freepages_range(start, end, machine.new_owner(), cpu)
    machine.undo_isolate_page_range(start, end, "CMA", cpu)
    return ContigResult(ret, moved, blockers)


@dataclasses.dataclass
class CmaAllocResult:
    """cma_alloc's answer: the first pfn or None, the owner token, each candidate
    tried, and every block migrated on the way (old -> new pfn)."""

    pfn: int | None
    owner: int | None
    count: int
    candidates: list[dict[str, Any]]
    moved: dict[int, int]

    @property
    def blockers(self) -> list[dict[str, Any]]:
        return [b for c in self.candidates for b in c["blockers"]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# cma->bitmap of each machine: start pfn -> count of its cma_alloc'ed ranges.
_CMA_USED: "weakref.WeakKeyDictionary[Machine, dict[int, int]]" = weakref.WeakKeyDictionary()


def _next_zero_area(used: dict[int, int], lo: int, hi: int, start: int, count: int, align: int) -> int | None:
    # bitmap_find_next_zero_area_off with order_per_bit 0: the first aligned
    # start >= start whose [pfn, pfn + count) meets no used range.
    pfn = -(-max(start, lo) // align) * align
    while pfn + count <= hi:
        clash = [s + n for s, n in used.items() if s < pfn + count and pfn < s + n]
        if not clash:
            return pfn
        pfn = -(-max(clash) // align) * align
    return None


def _compose(moved: dict[int, int], more: dict[int, int]) -> None:
    # A block moved twice maps from where it was first to where it is now.
    origin = {dst: src for src, dst in moved.items()}
    for src, dst in more.items():
        moved[origin.pop(src, src)] = dst


def cma_alloc(machine: Machine, count: int, align: int = 0, *, cpu: int = 0) -> CmaAllocResult:
    """Allocate count contiguous pages from the CMA area, aligned to 2**align pages (cma_alloc).

    Tries the candidate ranges in turn with alloc_contig_range. Unlike the
    kernel, which after -EBUSY slides the candidate by the alignment and so
    retries every range holding the same blocking page, the next candidate
    starts past the last blocker: those ranges would fail on it again.

    :raises PcpemuError: count or align out of range; the machine is unchanged.
    """
    lo, hi = _cma_range(machine)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 < count <= hi - lo:
        raise PcpemuError(f"cma_alloc: count {count!r} must be 1..{hi - lo} pages (the CMA area)")
    if isinstance(align, bool) or not isinstance(align, (int, np.integer)) or not 0 <= align <= 30:
        raise PcpemuError(f"cma_alloc: align {align!r} must be an order 0..30")
    count, step = int(count), 1 << int(align)
    used = _CMA_USED.setdefault(machine, {})
    candidates: list[dict[str, Any]] = []
    moved: dict[int, int] = {}
    start = lo
    while True:
        pfn = _next_zero_area(used, lo, hi, start, count, step)
        if pfn is None:
            break
        res = alloc_contig_range(machine, pfn, pfn + count, cpu=cpu)
        candidates.append({"pfn": pfn, "ret": res.ret, "migrated": len(res.moved), "blockers": res.blockers})
        _compose(moved, res.moved)
        if res.ret == 0:
            used[pfn] = count
            return CmaAllocResult(pfn, machine.block_owner(pfn), count, candidates, moved)
        if res.ret != -EBUSY:
            break
        last = max((b["pfn"] + (1 << b.get("order", 0)) for b in res.blockers), default=pfn + 1)
        start = max(last, pfn + step)
    return CmaAllocResult(None, None, count, candidates, moved)


def cma_release(machine: Machine, pfn: int, count: int, *, cpu: int = 0) -> None:
    """Free a range cma_alloc returned (cma_release).

    :raises NotAllocatedError: (pfn, count) is not a live cma_alloc range; nothing freed.
    """
    used = _CMA_USED.setdefault(machine, {})
    if used.get(pfn) != count:
        raise NotAllocatedError(f"cma_release: [{pfn!r}, +{count!r}) is not a range cma_alloc returned")
    machine.free_contig_range(pfn, pfn + count, cpu)
    del used[pfn]


# ---- tokens ----

def aligned_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """The (pfn, order) blocks alloc_contig_range holds [start, end) as: largest aligned first."""
    out = []
    while start < end:
        order = min(10, (start & -start).bit_length() - 1 if start else 10)
        while start + (1 << order) > end:
            order -= 1
        out.append((start, order))
        start += 1 << order
    return out


def check_tokens(machine: Machine, expected: dict[int, list[tuple[int, int]]]) -> None:
    """Machine.check(), and every allocated block is where its owner expects it.

    :param expected: owner token -> [(head pfn, order), ...] of every allocated block.
    :raises InvariantError: naming the first block that is lost, doubled or misplaced.
    """
    machine.check()
    blocks = machine.allocated_blocks()
    seen: dict[int, list[tuple[int, int]]] = {}
    for h, o, w in zip(blocks["pfn"].tolist(), blocks["order"].tolist(), blocks["owner"].tolist()):
        seen.setdefault(int(w), []).append((int(h), int(o)))
    for owner, blocks in expected.items():
        if sorted(seen.get(owner, [])) != sorted(blocks):
            raise InvariantError(f"owner {owner}: expected blocks {sorted(blocks)[:4]}..., "
                                 f"the machine has {sorted(seen.get(owner, []))[:4]}...")
    extra = set(seen) - set(expected)
    if extra:
        owner = min(extra)
        raise InvariantError(f"owner {owner} holds {seen[owner][:4]} that nobody expects")
