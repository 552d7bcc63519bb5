"""Allocations the kernel does not trace (issue 16): alloc_pages_bulk (vmalloc's
vm_area_alloc_pages, e.g. thread stacks freed later by delayed_vfree_work) takes pages
off the local pcp list with no mm_page_alloc. The replay finds them by their frees: a
pfn freed again with no allocation between, or refilled onto a pcp list and freed, was
taken off that CPU's list right after it went there."""

import numpy as np

from pcpemu.kernel.ftrace import (EVENT_DTYPE, MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE,
                                  MM_PAGE_PCPU_DRAIN)
from pcpemu.kernel.gfp import parse_gfp
from pcpemu.kernel.config import KernelConfig
from pcpemu.machine import Machine
from pcpemu.runs.replay import _Matcher, _untraced_alloc_at, _untraced_alloc_mt


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, cpu, pfn, order, mt) in enumerate(rows):
        ev[i]["kind"], ev[i]["cpu"], ev[i]["pfn"], ev[i]["order"], ev[i]["migratetype"] = kind, cpu, pfn, order, mt
        ev[i]["percpu_refill"] = 1 if kind == MM_PAGE_ALLOC_ZONE_LOCKED else -1
        ev[i]["gfp"] = parse_gfp("GFP_KERNEL")
    return ev


def test_a_page_freed_twice_was_allocated_off_the_first_freeing_cpus_list():
    ev = _events([
        (MM_PAGE_ALLOC, 0, 100, 0, 0),               # 0: traced allocation
        (MM_PAGE_FREE, 1, 100, 0, -1),               # 1: freed on CPU 1: onto the head of its list
        (MM_PAGE_ALLOC, 0, 200, 0, 0),               # 2: another CPU's allocation
        (MM_PAGE_ALLOC, 1, 500, 0, 0),               # 3: CPU 1 allocates next: the untraced one goes before
        (MM_PAGE_FREE, 0, 100, 0, -1),               # 4: freed again: something took it untraced
        (MM_PAGE_ALLOC_ZONE_LOCKED, 1, 300, 0, 1),   # 5: CPU 1 refills pfn 300 (Movable list)
        (MM_PAGE_FREE, 0, 300, 0, -1),               # 6: 300 freed, never allocated in the trace
        (MM_PAGE_FREE, 0, 400, 0, -1),               # 7: allocated before the trace: the untraced owner's
    ])
    m = _Matcher(untraced=True)
    ops, sel, upos, prev_free, *_ = m.ops(ev)
    assert sel[upos].tolist() == [4, 6, 7]
    block_mt = np.zeros(8, np.int8)                  # pfns 100..500 lie in an Unmovable pageblock
    before, cpu, src = _untraced_alloc_at(ev, sel, upos, prev_free)
    mt = _untraced_alloc_mt(ev, ev["pfn"][sel[upos]], src, block_mt)
    assert before.tolist() == [3, 6, -1] and cpu.tolist()[:2] == [1, 1] and mt.tolist()[:2] == [0, 1]


def test_an_untraced_allocation_goes_before_its_free():
    # Freed on CPU 1, freed again on CPU 0 before CPU 1 allocates anything: the untraced
    # allocation off CPU 1's list goes before the second free, not after it (a free of
    # a slot nothing had filled yet would be refused).
    ev = _events([
        (MM_PAGE_ALLOC, 0, 100, 0, 0),               # 0
        (MM_PAGE_FREE, 1, 100, 0, -1),               # 1: onto CPU 1's list
        (MM_PAGE_FREE, 0, 100, 0, -1),               # 2: freed again
        (MM_PAGE_ALLOC, 1, 500, 0, 0),               # 3: CPU 1's next allocation comes after
    ])
    m = _Matcher(untraced=True)
    ops, sel, upos, prev_free, *_ = m.ops(ev)
    before, cpu, _ = _untraced_alloc_at(ev, sel, upos, prev_free)
    assert sel[upos].tolist() == [2] and before.tolist() == [2] and cpu.tolist() == [1]


def test_a_page_drained_since_its_free_was_taken_after_the_refill_that_brought_it_back():
    # Freed on CPU 1, drained from its list back to the buddy, refilled onto CPU 0's
    # list and freed again with no allocation: the untraced allocation comes off CPU 0's
    # list after that refill (the latest time the list order allows: before its free),
    # not after the first free (it was still on CPU 1's list then: the drain shows it).
    ev = _events([
        (MM_PAGE_ALLOC, 0, 100, 0, 0),               # 0
        (MM_PAGE_FREE, 1, 100, 0, -1),               # 1: onto CPU 1's list
        (MM_PAGE_ALLOC, 1, 500, 0, 0),               # 2: CPU 1's next allocation
        (MM_PAGE_PCPU_DRAIN, 1, 100, 0, 0),          # 3: back to the buddy
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 100, 0, 0),   # 4: refilled onto CPU 0's Unmovable list
        (MM_PAGE_ALLOC, 0, 600, 0, 0),               # 5
        (MM_PAGE_FREE, 0, 100, 0, -1),               # 6: freed again
    ])
    m = _Matcher(untraced=True)
    ops, sel, upos, prev_free, *_ = m.ops(ev)
    assert sel[upos].tolist() == [6] and prev_free.tolist() == [-1]
    before, cpu, src = _untraced_alloc_at(ev, sel, upos, prev_free)
    assert before.tolist() == [6] and cpu.tolist() == [0] and src.tolist() == [4]


def test_a_bulk_allocation_leaves_free_count_and_the_trace_alone():
    # alloc_pages_bulk takes pages off the pcp list (__rmqueue_pcplist) without
    # rmqueue_pcplist's free_count halving and without mm_page_alloc.
    m = Machine(KernelConfig.preset("v6.18", memory="8G", cpus=2))
    pfns = [m.alloc_pages("GFP_KERNEL", 0, cpu=1) for _ in range(40)]
    for p in pfns:
        m.free_pages(p, 0, cpu=1)
    fc = m.pcp_state("Normal", 1)["free_count"]
    assert fc > 1
    with m.tracing() as tr:
        got = m.alloc_pages_bulk("GFP_KERNEL", cpu=1)
    assert got == pfns[-1]                      # the head of the list: the page freed last
    assert m.pcp_state("Normal", 1)["free_count"] == fc
    assert MM_PAGE_ALLOC not in tr.events["kind"].tolist()
    with m.tracing() as tr:
        m.alloc_pages("GFP_KERNEL", 0, cpu=1)
    assert m.pcp_state("Normal", 1)["free_count"] == fc >> 1 and MM_PAGE_ALLOC in tr.events["kind"].tolist()


def test_a_cma_or_highatomic_page_came_off_the_movable_list():
    # free_unref_page puts pages of a highatomic or CMA pageblock on the Movable list,
    # so an untraced allocation of one took it from there (not from Reclaimable).
    from pcpemu.kernel.gfp import MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE
    from pcpemu.runs.replay import _untraced_alloc_mt
    ev = _events([(MM_PAGE_FREE, 0, 0, 0, -1)])
    block_mt = np.array([MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_RECLAIMABLE], np.int8)
    pfn = np.array([0, 512, 1024], np.int64)
    mt = _untraced_alloc_mt(ev, pfn, np.full(3, -1, np.int64), block_mt)
    assert mt.tolist() == [MIGRATE_MOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE]


def test_untraced_pages_of_a_refill_leave_in_its_order():
    # A refill's pages leave the list in the order it queued them (rmqueue_bulk: list
    # tail; allocations: list head): a page alloc_pages_bulk took without a trace left
    # after the earlier pages of its run that traced allocations took and before the
    # later ones; it goes at the latest such time, the later page's allocation, or,
    # with none, its own free.
    ev = _events([
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 100, 0, 0),   # 0: refill run for the allocation at 3
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 101, 0, 0),   # 1
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 102, 0, 0),   # 2
        (MM_PAGE_ALLOC, 0, 100, 0, 0),               # 3: takes the run's first page
        (MM_PAGE_ALLOC, 0, 101, 0, 0),               # 4: and its second
        (MM_PAGE_ALLOC, 0, 700, 0, 0),               # 5: another list's page
        (MM_PAGE_FREE, 1, 102, 0, -1),               # 6: 102 freed, never allocated in the trace
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 200, 0, 0),   # 7: a run the bulk allocator asked for
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 201, 0, 0),   # 8
        (MM_PAGE_ALLOC, 0, 800, 0, 0),               # 9: not a page of the run
        (MM_PAGE_ALLOC, 0, 201, 0, 0),               # 10: the run's second page, traced
        (MM_PAGE_FREE, 1, 200, 0, -1),               # 11: 200 freed untraced
    ])
    m = _Matcher(untraced=True)
    ops, sel, upos, prev_free, *_ = m.ops(ev)
    assert sel[upos].tolist() == [6, 11]
    before, cpu, src = _untraced_alloc_at(ev, sel, upos, prev_free)
    # 102, the last page of its run: before its free; 200: before 201's allocation
    assert before.tolist() == [6, 10] and cpu.tolist() == [0, 0] and src.tolist() == [2, 7]
