# cython: language_level=3
"""The allocator core: buddy, pcp lists and the op-stream executor, over the C
mirrors of _kernel.h. Its Python face is class Allocator (_allocator.pxi);
pcpemu.machine is the only module that imports it, and the rest of pcpemu goes
through pcpemu.machine.Machine."""

from libc.stdint cimport int8_t, int16_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset
from posix.stdlib cimport posix_memalign
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap, munmap

import numpy as np

# gfp bits used by the core (values as in pcpemu.kernel.gfp; the constants test compares).
cdef enum:
    GFP_DMA = 0x1
    GFP_HIGHMEM = 0x2
    GFP_DMA32 = 0x4
    GFP_MOVABLE = 0x8
    GFP_RECLAIMABLE = 0x10
    GFP_HIGH = 0x20
    GFP_DIRECT_RECLAIM = 0x400
    GFP_KSWAPD_RECLAIM = 0x800
    GFP_RETRY_MAYFAIL = 0x4000
    GFP_NORETRY = 0x10000
    GFP_COMP = 0x40000
    GFP_NOMEMALLOC = 0x80000
    GFP_TRANSHUGE = 0x1c24ca    # GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM
    GFP_MOVABLE_MASK = 0x18     # __GFP_RECLAIMABLE | __GFP_MOVABLE
    GFP_BITS_MASK = 0xffffff    # __GFP_DMA..__GFP_ZEROTAGS: the bits pcpemu models

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

include "_kernel_h.pxi"
include "_list.pxi"
include "_spinlock.pxi"
include "_cachelines.pxi"
include "_event_row.pxi"
include "_trace.pxi"
include "_buddy.pxi"
include "_buddy_v6_9.pxi"
include "_pcp.pxi"
include "_page_alloc.pxi"
include "_pcp_buddy.pxi"
include "_check.pxi"
include "_run.pxi"
include "_isolate.pxi"
include "_smp.pxi"
include "_mm_init.pxi"
include "_seed.pxi"
include "_allocator.pxi"
include "_baseline.pxi"


#: Every constant the core and Python share, by its C name: the tests compare
#: each with its Python counterpart (pcpemu.kernel.gfp, .ftrace, .config),
#: and pcpemu.machine hands the op codes and error codes to the rest.
CONSTANTS = {
    "__GFP_DMA": GFP_DMA, "__GFP_HIGHMEM": GFP_HIGHMEM, "__GFP_DMA32": GFP_DMA32, "__GFP_MOVABLE": GFP_MOVABLE,
    "__GFP_RECLAIMABLE": GFP_RECLAIMABLE, "__GFP_HIGH": GFP_HIGH, "__GFP_DIRECT_RECLAIM": GFP_DIRECT_RECLAIM,
    "__GFP_KSWAPD_RECLAIM": GFP_KSWAPD_RECLAIM, "__GFP_RETRY_MAYFAIL": GFP_RETRY_MAYFAIL,
    "__GFP_NORETRY": GFP_NORETRY, "__GFP_COMP": GFP_COMP, "__GFP_NOMEMALLOC": GFP_NOMEMALLOC,
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
    "OP_ALLOC": OP_ALLOC, "OP_FREE": OP_FREE, "OP_DRAIN": OP_DRAIN, "OP_DRAIN_ALL": OP_DRAIN_ALL,
    "OP_DECAY": OP_DECAY, "OP_ALLOC_BULK": OP_ALLOC_BULK,
    "OP_PCP_REVEAL": OP_PCP_REVEAL, "PCP_REVEAL_ALL": PCP_REVEAL_ALL, "NR_OPS": NR_OPS,
    "OP_GFP_ZONE_SHIFT": OP_GFP_ZONE_SHIFT, "OP_FREE_PCP_LOCKED": OP_FREE_PCP_LOCKED,
    "MM_PAGE_ALLOC": MM_PAGE_ALLOC, "MM_PAGE_FREE": MM_PAGE_FREE, "MM_PAGE_FREE_BATCHED": MM_PAGE_FREE_BATCHED,
    "MM_PAGE_PCPU_DRAIN": MM_PAGE_PCPU_DRAIN, "MM_PAGE_ALLOC_ZONE_LOCKED": MM_PAGE_ALLOC_ZONE_LOCKED,
    "MM_PAGE_ALLOC_EXTFRAG": MM_PAGE_ALLOC_EXTFRAG,
    "ZONE_DMA": ZONE_DMA, "ZONE_DMA32": ZONE_DMA32, "ZONE_NORMAL": ZONE_NORMAL, "ZONE_MOVABLE": ZONE_MOVABLE,
    "ZONE_DEVICE": ZONE_DEVICE, "MAX_NR_ZONES": MAX_NR_ZONES,
    "ZONE_BOOSTED_WATERMARK": ZONE_BOOSTED_WATERMARK, "ZONE_RECLAIM_ACTIVE": ZONE_RECLAIM_ACTIVE,
    "ZONE_BELOW_HIGH": ZONE_BELOW_HIGH,
    "WMARK_MIN": WMARK_MIN, "WMARK_LOW": WMARK_LOW, "WMARK_HIGH": WMARK_HIGH, "WMARK_PROMO": WMARK_PROMO,
    "NR_WMARK": NR_WMARK,
    "MIGRATE_UNMOVABLE": MIGRATE_UNMOVABLE, "MIGRATE_MOVABLE": MIGRATE_MOVABLE,
    "MIGRATE_RECLAIMABLE": MIGRATE_RECLAIMABLE, "MIGRATE_PCPTYPES": MIGRATE_PCPTYPES,
    "MIGRATE_HIGHATOMIC": MIGRATE_HIGHATOMIC, "MIGRATE_CMA": MIGRATE_CMA, "MIGRATE_ISOLATE": MIGRATE_ISOLATE,
    "MIGRATE_TYPES": MIGRATE_TYPES,
    "MAX_PAGE_ORDER": MAX_PAGE_ORDER, "NR_PAGE_ORDERS": NR_PAGE_ORDERS, "PAGEBLOCK_ORDER": PAGEBLOCK_ORDER,
    "PAGEBLOCK_NR_PAGES": PAGEBLOCK_NR_PAGES, "PAGE_ALLOC_COSTLY_ORDER": PAGE_ALLOC_COSTLY_ORDER,
    "PAGE_SHIFT": PAGE_SHIFT,
}
#: enum pcpemu_error, by name.
ERROR_CODES = {name: value for name, value in {
    "PE_BAD_PFN": PE_BAD_PFN, "PE_BAD_RANGE": PE_BAD_RANGE, "PE_BAD_ORDER": PE_BAD_ORDER, "PE_BAD_CPU": PE_BAD_CPU,
    "PE_BAD_OWNER": PE_BAD_OWNER, "PE_BAD_ZONE": PE_BAD_ZONE, "PE_BAD_MIGRATETYPE": PE_BAD_MIGRATETYPE,
    "PE_BAD_PINDEX": PE_BAD_PINDEX, "PE_BAD_GFP": PE_BAD_GFP, "PE_DOUBLE_FREE": PE_DOUBLE_FREE, "PE_NOT_ALLOCATED": PE_NOT_ALLOCATED,
    "PE_TAIL_PAGE": PE_TAIL_PAGE, "PE_WRONG_ORDER": PE_WRONG_ORDER, "PE_PINNED": PE_PINNED,
    "PE_BAD_OP": PE_BAD_OP, "PE_BAD_SLOT": PE_BAD_SLOT, "PE_SLOT_BUSY": PE_SLOT_BUSY,
    "PE_SLOT_EMPTY": PE_SLOT_EMPTY, "PE_FREE_ORDER": PE_FREE_ORDER, "PE_BAD_STREAM": PE_BAD_STREAM,
    "PE_TRACE_ON": PE_TRACE_ON, "PE_TRACE_OFF": PE_TRACE_OFF, "PE_TRACE_THREADED": PE_TRACE_THREADED,
    "PE_THREADS_TRACED": PE_THREADS_TRACED,
    "PE_TOO_MANY_LISTS": PE_TOO_MANY_LISTS, "PE_BAD_COSTS": PE_BAD_COSTS, "PE_NOMEM": PE_NOMEM,
}.items()}
assert sorted(ERROR_CODES.values()) == sorted(ERRORS)

#: The rule flags of pglist_data.rules, by the name pcpemu.machine uses.
RULES = {"free_highatomic": RULE_FREE_HIGHATOMIC, "claim_steal": RULE_CLAIM_STEAL,
         "free_high_min": RULE_FREE_HIGH_MIN, "highatomic_non_block": RULE_HIGHATOMIC_NON_BLOCK,
         "decay_batched": RULE_DECAY_BATCHED, "free_batched": RULE_FREE_BATCHED}
#: enum reclaim_outcome, by KernelConfig.reclaim.
RECLAIM = {"none": RECLAIM_NONE, "progress": RECLAIM_PROGRESS, "traced": RECLAIM_TRACED}
