# cython: language_level=3
"""The allocator core: buddy, pcp lists and the op-stream executor, over the C
mirrors of _kernel.h. Python reaches it through pcpemu.machine.Machine."""

from libc.stdint cimport int8_t, int16_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset
from posix.stdlib cimport posix_memalign
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap, munmap

import numpy as np

# gfp bits used by the core (values as in pcpemu.gfp, checked by tests/test_gfp.py).
cdef enum:
    GFP_DMA = 0x1
    GFP_HIGHMEM = 0x2
    GFP_DMA32 = 0x4
    GFP_MOVABLE = 0x8
    GFP_RECLAIMABLE = 0x10
    GFP_HIGH = 0x20
    GFP_DIRECT_RECLAIM = 0x400
    GFP_KSWAPD_RECLAIM = 0x800
    GFP_COMP = 0x40000
    GFP_NOMEMALLOC = 0x80000

# ALLOC_* (mm/internal.h): only the core uses them.
cdef enum:
    ALLOC_WMARK_MIN = 0
    ALLOC_WMARK_LOW = 1
    ALLOC_WMARK_MASK = 3
    ALLOC_OOM = 0x08
    ALLOC_NON_BLOCK = 0x10
    ALLOC_MIN_RESERVE = 0x20
    ALLOC_CPUSET = 0x40
    ALLOC_CMA = 0x80
    ALLOC_NOFRAGMENT = 0x100
    ALLOC_HIGHATOMIC = 0x200
    ALLOC_KSWAPD = 0x800
    ALLOC_RESERVES = 0x10 | 0x20 | 0x200 | 0x08

# Op codes of an op stream.
cdef enum:
    OP_ALLOC = 0
    OP_FREE = 1
    OP_DRAIN = 2
    OP_DRAIN_ALL = 3
    OP_DECAY = 4
    NR_OPS = 5

#: The core's copies of constants, checked against pcpemu.gfp, pcpemu.workloads
#: and pcpemu.ftrace by the tests so the copies cannot drift apart.
CONSTANTS = {
    "__GFP_DMA": GFP_DMA, "__GFP_HIGHMEM": GFP_HIGHMEM, "__GFP_DMA32": GFP_DMA32, "__GFP_MOVABLE": GFP_MOVABLE,
    "__GFP_RECLAIMABLE": GFP_RECLAIMABLE, "__GFP_HIGH": GFP_HIGH, "__GFP_DIRECT_RECLAIM": GFP_DIRECT_RECLAIM,
    "__GFP_KSWAPD_RECLAIM": GFP_KSWAPD_RECLAIM, "__GFP_COMP": GFP_COMP, "__GFP_NOMEMALLOC": GFP_NOMEMALLOC,
    "OP_ALLOC": OP_ALLOC, "OP_FREE": OP_FREE, "OP_DRAIN": OP_DRAIN, "OP_DRAIN_ALL": OP_DRAIN_ALL,
    "OP_DECAY": OP_DECAY,
    "MM_PAGE_ALLOC": MM_PAGE_ALLOC, "MM_PAGE_FREE": MM_PAGE_FREE, "MM_PAGE_FREE_BATCHED": MM_PAGE_FREE_BATCHED,
    "MM_PAGE_PCPU_DRAIN": MM_PAGE_PCPU_DRAIN, "MM_PAGE_ALLOC_ZONE_LOCKED": MM_PAGE_ALLOC_ZONE_LOCKED,
    "MM_PAGE_ALLOC_EXTFRAG": MM_PAGE_ALLOC_EXTFRAG,
}

include "_kernel_h.pxi"
include "_list.pxi"
include "_trace.pxi"
include "_buddy.pxi"
include "_pcp.pxi"
include "_page_alloc.pxi"
include "_check.pxi"
include "_run.pxi"
include "_allocator.pxi"
include "_isolate.pxi"
include "_smp.pxi"
include "_baseline.pxi"
include "_seed.pxi"

#: The rule flags of pglist_data.rules, by the name pcpemu.machine uses.
RULES = {"free_highatomic": RULE_FREE_HIGHATOMIC, "claim_steal": RULE_CLAIM_STEAL,
         "free_high_min": RULE_FREE_HIGH_MIN}
