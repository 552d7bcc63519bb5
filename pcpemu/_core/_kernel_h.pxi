# Declarations of the C mirrors in _kernel.h, shared by every part of _core.
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "_kernel.h" nogil:
    enum:
        PAGE_SHIFT
        MAX_PAGE_ORDER
        NR_PAGE_ORDERS
        PAGEBLOCK_ORDER
        PAGEBLOCK_NR_PAGES
        PAGE_ALLOC_COSTLY_ORDER
        MAX_PCP_LISTS
        CL_HIST
        PCPEMU_DEBUG_BUILD

    enum migratetype:
        MIGRATE_UNMOVABLE
        MIGRATE_MOVABLE
        MIGRATE_RECLAIMABLE
        MIGRATE_PCPTYPES
        MIGRATE_HIGHATOMIC
        MIGRATE_CMA
        MIGRATE_ISOLATE
        MIGRATE_TYPES

    enum zone_stat_item:
        NR_FREE_PAGES
        NR_FREE_CMA_PAGES
        NR_VM_ZONE_STAT_ITEMS

    enum zone_type:
        ZONE_DMA
        ZONE_DMA32
        ZONE_NORMAL
        ZONE_MOVABLE
        ZONE_DEVICE
        MAX_NR_ZONES

    enum zone_watermarks:
        WMARK_MIN
        WMARK_LOW
        WMARK_HIGH
        WMARK_PROMO
        NR_WMARK

    enum pcpemu_opcode:
        OP_ALLOC
        OP_FREE
        OP_DRAIN
        OP_DRAIN_ALL
        OP_DECAY
        OP_ALLOC_BULK
        OP_PCP_REVEAL
        NR_OPS

    enum pcpemu_error:
        PE_OK
        PE_BAD_PFN
        PE_BAD_RANGE
        PE_BAD_ORDER
        PE_BAD_CPU
        PE_BAD_OWNER
        PE_BAD_ZONE
        PE_BAD_MIGRATETYPE
        PE_BAD_PINDEX
        PE_BAD_GFP
        PE_DOUBLE_FREE
        PE_NOT_ALLOCATED
        PE_TAIL_PAGE
        PE_WRONG_ORDER
        PE_PINNED
        PE_BAD_OP
        PE_BAD_SLOT
        PE_SLOT_BUSY
        PE_SLOT_EMPTY
        PE_FREE_ORDER
        PE_BAD_STREAM
        PE_TRACE_ON
        PE_TRACE_OFF
        PE_TRACE_THREADED
        PE_THREADS_TRACED
        PE_TOO_MANY_LISTS
        PE_BAD_COSTS
        PE_NOMEM
        NR_PCPEMU_ERRORS

    unsigned long ZONE_BOOSTED_WATERMARK
    unsigned long ZONE_RECLAIM_ACTIVE
    unsigned long ZONE_BELOW_HIGH
    int PCPF_PREV_FREE_HIGH_ORDER
    int PCPF_FREE_HIGH_BATCH
    int RULE_FREE_HIGHATOMIC
    int RULE_CLAIM_STEAL
    int RULE_FREE_HIGH_MIN
    int RULE_HIGHATOMIC_NON_BLOCK
    int RULE_DECAY_BATCHED
    int RULE_FREE_BATCHED

    unsigned long PG_buddy
    unsigned long PG_pcp
    unsigned long PG_allocated
    unsigned long PG_head
    unsigned long PG_lru
    unsigned long PG_pcpb_merge

    struct list_head:
        list_head *next         # next entry, or the head itself
        list_head *prev         # previous entry, or the head itself

    struct page:
        unsigned long flags     # PG_* state bits
        list_head lru           # buddy_list or pcp_list
        unsigned long private   # buddy order while PG_buddy
        int _refcount           # 1 while allocated
        int _pincount           # FOLL_PIN references
        uint64_t owner          # token of the holder of an allocated block
        int16_t cpu             # pcp CPU while PG_pcp
        uint8_t pindex          # pcp list while PG_pcp
        uint8_t order           # allocation order while PG_allocated
        uint8_t mt              # free list of a PG_buddy block; v6.9's pcppage migratetype

    struct free_area:
        list_head free_list[MIGRATE_TYPES]  # one list per migratetype
        unsigned long nr_free   # free blocks of this order, all types

    ctypedef struct spinlock_t:
        int locked

    struct per_cpu_pages:
        spinlock_t lock         # protects lists and the counters
        int count               # pages on all lists
        int high                # auto-tuned between high_min and high_max
        int high_min
        int high_max
        int batch               # refill and drain chunk
        uint8_t flags           # PCPF_*
        uint8_t alloc_factor    # refill scaling exponent
        uint8_t expire          # CONFIG_NUMA remote drain countdown
        short free_count        # consecutive frees, in pages
        list_head lists[1]      # flexible array, NR_PCP_LISTS long

    struct zone:
        unsigned long _watermark[NR_WMARK]
        unsigned long watermark_boost
        unsigned long nr_reserved_highatomic
        unsigned long nr_free_highatomic
        long lowmem_reserve[MAX_NR_ZONES]
        per_cpu_pages **per_cpu_pageset
        int pageset_high_min
        int pageset_high_max
        int pageset_batch
        int idx
        unsigned long zone_start_pfn
        unsigned long managed_pages
        unsigned long spanned_pages
        unsigned long present_pages
        unsigned long cma_pages
        int nr_isolate_pageblock
        unsigned long managed_start
        unsigned long managed_end
        int rules
        free_area free_area[NR_PAGE_ORDERS]
        unsigned long flags
        spinlock_t lock
        long vm_stat[NR_VM_ZONE_STAT_ITEMS]

    enum pcpemu_item:
        ALLOC_FAILED
        ZONE_LOCK
        ZONE_LOCK_PAGES
        PCP_REFILL
        PCP_REFILL_PAGES
        PCP_DRAIN
        PCP_DRAIN_PAGES
        PCP_TRYLOCK_FAIL
        PCP_HIGH_CHANGE
        PGALLOC_FALLBACK
        PGSTEAL_BLOCK
        PAGEBLOCK_CHANGE
        CMA_TO_NONMOVABLE
        ZONE_BELOW_HIGH_SET
        WMARK_BOOST
        SLOWPATH
        SLOWPATH_DRAIN
        DRAIN_ALL
        PCP_DECAY
        ZONE_FALLBACK
        FREE_SKIPPED
        ZONE_LOCK_CONTENDED
        ZONE_LOCK_SPINS
        PCPB_ROUTED_FREE
        PCPB_PHASE0_PAGES
        PCPB_PHASE1_BLOCKS
        PCPB_PHASE2_PAGES
        PCPB_PHASE3_PAGES
        PCPB_MERGES
        PCPB_DRAIN_CHUNKS
        PCPB_OWNED_SCANNED
        PCPB_OWNED_SKIPPED
        PCPB_RELEASED
        NR_PCPEMU_ITEMS

    enum lock_site:
        LOCK_RMQUEUE_BULK
        LOCK_FREE_PCPPAGES_BULK
        LOCK_FREE_ONE_PAGE
        LOCK_RMQUEUE_BUDDY
        LOCK_ISOLATION
        LOCK_HIGHATOMIC
        NR_LOCK_SITES

    enum pcp_op:
        PCP_OP_ALLOC
        PCP_OP_FREE
        PCP_OP_DRAIN
        NR_PCP_OPS

    struct cpu_state:
        uint64_t touched                # pcp cachelines of the current op
        uint64_t item[NR_PCPEMU_ITEMS]
        uint64_t alloc[NR_PAGE_ORDERS][MIGRATE_TYPES]
        uint64_t alloc_fail[NR_PAGE_ORDERS][MIGRATE_TYPES]
        uint64_t free[NR_PAGE_ORDERS]   # blocks freed, by order
        uint64_t pcp_hit[NR_PAGE_ORDERS]
        uint64_t pcp_miss[NR_PAGE_ORDERS]
        uint64_t pcp_refill_blocks[NR_PAGE_ORDERS]
        uint64_t cma_pages_to[MIGRATE_TYPES]
        uint64_t lock_site[NR_LOCK_SITES]
        uint64_t lock_site_pages[NR_LOCK_SITES]
        uint64_t cl_hist[NR_PCP_OPS][CL_HIST]   # ops by the number of lines they touched
        uint64_t owner_seq              # threaded mode: this CPU's owner tokens
        uint64_t reveal_debt[MAX_NR_ZONES]   # replay: see pcp_reveal_one
        int free_high_at[MAX_NR_ZONES]       # replay: see free_high_min_count

    enum reclaim_outcome:
        RECLAIM_NONE
        RECLAIM_PROGRESS
        RECLAIM_TRACED

    enum pcpemu_event_kind:
        MM_PAGE_ALLOC
        MM_PAGE_FREE
        MM_PAGE_FREE_BATCHED
        MM_PAGE_PCPU_DRAIN
        MM_PAGE_ALLOC_ZONE_LOCKED
        MM_PAGE_ALLOC_EXTFRAG

    struct pcpemu_event:
        int64_t op                      # stream op it fired in, -1 outside a stream
        int64_t pfn
        uint32_t gfp
        uint16_t cpu
        uint8_t kind
        int8_t order
        int8_t migratetype
        int8_t fallback_order
        int8_t fallback_migratetype
        int8_t percpu_refill
        int8_t change_ownership

    struct pcpemu_trace:
        pcpemu_event *ev
        size_t len
        size_t cap
        int64_t op                      # the stream op running now
        int lost                        # events dropped: the buffer could not grow

    struct pglist_data:
        zone *node_zones
        page *mem_map
        unsigned long node_spanned_pages
        uint8_t *pageblock_mt
        uint8_t *block_zone
        cpu_state *cpu
        int nr_cpus
        int nr_pcp_lists
        int cacheline_shift
        int pcp_batch_scale_max
        long watermark_boost_factor
        int pcp_cma
        int rules
        int freelist_hygiene            # v6.10 buddy rules; 0: v6.9's
        int reclaim                     # enum reclaim_outcome
        int kswapd_failures             # kswapd runs that reclaimed nothing
        int8_t pindex[NR_PAGE_ORDERS][MIGRATE_TYPES]
        uint8_t pindex_order[MAX_PCP_LISTS]
        uint64_t next_owner
        int threaded                    # real threads run the op streams
        uint64_t untraced_owner         # owner of a seeded zone's starting pages, 0: none
        unsigned long untraced_cursor[MAX_NR_ZONES]   # where OP_PCP_REVEAL looks for its blocks
        unsigned long untraced_mt_cursor[MAX_NR_ZONES][MIGRATE_PCPTYPES]   # ... for blocks of a type
        zone *zonelists[MAX_NR_ZONES][MAX_NR_ZONES + 1]   # populated zones from each highest_zoneidx down
        pcpemu_trace *trace             # NULL: tracepoints off
        pcp_buddy *pcpb                 # NULL: the classic pcp

    struct pcp_buddy:
        int16_t *tag                    # [pfn] owning CPU of a PagePCPBuddy head, -1: not owned
        int16_t *block_owner            # [pageblock] claiming CPU, -1: none
        int32_t *block_next             # [pageblock] owned_blocks links, -1 end, -2 not listed
        int32_t *block_prev
        int32_t *owned_head             # [zone * nr_cpus + cpu] first owned block, -1 empty
        list_head pending[NR_PAGE_ORDERS]   # a drain's owned blocks being merged
        int last_route                  # owner CPU of the last routed free

    struct alloc_context:
        zone **zonelist
        zone *preferred_zone
        int highest_zoneidx
        int migratetype
        int alloc_flags
        unsigned int gfp
        unsigned int op_gfp

    unsigned int PCP_REVEAL_ZONE(unsigned int gfp)
    unsigned int PCP_REVEAL_FROM(unsigned int gfp)
    unsigned int PCP_REVEAL_TO(unsigned int gfp)
    unsigned int PCP_REVEAL_FROM_ORDER(unsigned int gfp)
    unsigned int PCP_REVEAL_ALL
    unsigned int OP_GFP_ZONE_SHIFT
    unsigned int OP_GFP_ZONE_MASK
    unsigned int OP_GFP_ZONE(unsigned int gfp)
    unsigned int OP_FREE_PCP_LOCKED

    int pcpemu_popcount(uint64_t x)
    unsigned long pcpemu_spin_lock(int *lock)
    bint pcpemu_spin_trylock(int *lock)
    void pcpemu_spin_unlock(int *lock)
    void pcpemu_assert_locked(const int *lock, const char *fn)


# One operation of an op stream (Machine.run); OP_DTYPE mirrors it.
cdef packed struct pcpemu_op:
    uint8_t op          # enum pcpemu_opcode
    uint8_t order
    uint16_t cpu
    uint32_t gfp
    int64_t slot        # ties a free to its allocation
