"""Allocations the kernel does not trace (issue 16): alloc_pages_bulk (vmalloc's
vm_area_alloc_pages, e.g. thread stacks freed later by delayed_vfree_work) takes pages
off the local pcp list with no mm_page_alloc. The replay finds them by their frees: a
pfn freed again with no allocation between, or refilled onto a pcp list and freed, was
taken off that CPU's list right after it went there."""

import numpy as np

from pcpemu.kernel.ftrace import (EVENT_DTYPE, MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE)
from pcpemu.kernel.gfp import parse_gfp
from pcpemu.runs.replay import _Matcher, _untraced_alloc_at, _with_untraced_allocs
from pcpemu.runs.workloads import OP_ALLOC, OP_FREE


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
        (MM_PAGE_FREE, 1, 100, 0, -1),               # 1: freed on CPU 1: onto its pcp list
        (MM_PAGE_ALLOC, 0, 200, 0, 0),               # 2: unrelated
        (MM_PAGE_FREE, 0, 100, 0, -1),               # 3: freed again: something took it untraced
        (MM_PAGE_ALLOC_ZONE_LOCKED, 1, 300, 0, 1),   # 4: CPU 1 refills pfn 300 (Movable list)
        (MM_PAGE_FREE, 0, 300, 0, -1),               # 5: 300 freed, never allocated in the trace
        (MM_PAGE_FREE, 0, 400, 0, -1),               # 6: allocated before the trace: the untraced owner's
    ])
    m = _Matcher(untraced=True)
    ops, sel, upos = m.ops(ev)
    assert sel[upos].tolist() == [3, 5, 6]
    block_mt = np.zeros(8, np.int8)                  # pfns 100..400 lie in an Unmovable pageblock
    at, mt = _untraced_alloc_at(ev, sel, upos, m.prev_free, block_mt)
    assert at.tolist() == [1, 4, -1] and mt.tolist()[:2] == [0, 1]
    ops2, sel2, rest = _with_untraced_allocs(ev, ops, sel, upos, at, mt)
    # One allocation after the first free (CPU 1, Unmovable), one after the refill (CPU 1, Movable).
    assert sel2.tolist() == [0, 1, 1, 2, 3, 4, 5, 6]
    assert ops2["op"].tolist() == [OP_ALLOC, OP_FREE, OP_ALLOC, OP_ALLOC, OP_FREE, OP_ALLOC, OP_FREE, OP_FREE]
    assert ops2["cpu"][[2, 5]].tolist() == [1, 1]
    assert ops2["gfp"][[2, 5]].tolist() == [parse_gfp("GFP_KERNEL"), parse_gfp("GFP_HIGHUSER_MOVABLE")]
    # Each untraced allocation fills the slot its page's later free frees.
    assert ops2["slot"][2] == ops2["slot"][4] and ops2["slot"][5] == ops2["slot"][6]
    # Only the page allocated before the trace is left to the untraced owner.
    assert sel2[rest].tolist() == [6]
