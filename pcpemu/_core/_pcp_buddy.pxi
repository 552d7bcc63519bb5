# The pcp policy "pcp_buddy": pcpemu's model of the RFC "mm: page_alloc: pcp
# buddy allocator" (Johannes Weiner, linux-mm, April 2026), built from its
# cover letter, patch 2/2's description and the review replies; no code of the
# RFC is copied. Where the description leaves a choice the simplest reading is
# taken (listed in pcpemu.runs.whatif.PCP_BUDDY_READINGS):
#
# - a CPU owns a pageblock it claimed whole (phase 1); the blocks it hands out
#   from it (and from fragments it recovers, phase 0) are PagePCPBuddy, tagged
#   with the owner in pcp_buddy.tag, and a free from any CPU goes to the
#   owner's pcp (pcpb_owner_cpu);
# - a refill (pcpb_rmqueue_bulk) wants the classic batch and runs the four
#   phases under one zone->lock until it has it: 0 owned fragments of the
#   request's migratetype back from the buddy, 1 whole free pageblocks of that
#   type, 2 the largest sub-pageblock chunks of that type (no stealing, not
#   owned), 3 the classic __rmqueue with its CMA rule and fallbacks. Every
#   chunk is split into blocks of the requested order on the list, so a phase
#   0/1/2 chunk may overshoot the batch;
# - a drain frees what the classic drain picks, but merges the owned blocks
#   among themselves first (pcpb_merge_and_free) and frees the merged chunks;
#   a block whose owned pages reach the buddy joins its owner's owned_blocks,
#   or is given up when it is wholly free again.

cdef int pcpb_init(pglist_data *pgdat) noexcept nogil:
    """Turn the node's pcp into pcp_buddy: nothing owned, every list empty.
    0, or PE_NOMEM with the node unchanged."""
    cdef pcp_buddy *pb = <pcp_buddy *>calloc(1, sizeof(pcp_buddy))
    cdef unsigned long nblocks = (pgdat.node_spanned_pages >> PAGEBLOCK_ORDER) + 1
    cdef size_t nheads = MAX_NR_ZONES * pgdat.nr_cpus
    cdef unsigned long b
    cdef int o
    if pb == NULL:
        return PE_NOMEM
    pgdat.pcpb = pb
    pb.tag = <int16_t *>malloc(pgdat.node_spanned_pages * sizeof(int16_t))
    pb.block_owner = <int16_t *>malloc(nblocks * sizeof(int16_t))
    pb.block_next = <int32_t *>malloc(nblocks * sizeof(int32_t))
    pb.block_prev = <int32_t *>malloc(nblocks * sizeof(int32_t))
    pb.owned_head = <int32_t *>malloc(nheads * sizeof(int32_t))
    if pb.tag == NULL or pb.block_owner == NULL or pb.block_next == NULL or pb.block_prev == NULL \
            or pb.owned_head == NULL:
        pcpb_free(pgdat)
        return PE_NOMEM
    memset(pb.tag, 0xff, pgdat.node_spanned_pages * sizeof(int16_t))
    memset(pb.block_owner, 0xff, nblocks * sizeof(int16_t))
    memset(pb.owned_head, 0xff, nheads * sizeof(int32_t))
    for b in range(nblocks):
        pb.block_next[b] = -2
        pb.block_prev[b] = -2
    for o in range(NR_PAGE_ORDERS):
        INIT_LIST_HEAD(&pb.pending[o])
    pb.last_route = -1
    return PE_OK


cdef void pcpb_free(pglist_data *pgdat) noexcept nogil:
    cdef pcp_buddy *pb = pgdat.pcpb
    if pb == NULL:
        return
    free(pb.tag)
    free(pb.block_owner)
    free(pb.block_next)
    free(pb.block_prev)
    free(pb.owned_head)
    free(pb)
    pgdat.pcpb = NULL


# ---- owned_blocks: one list per pcp (the RFC's), doubly linked by pageblock ----

cdef inline int32_t *owned_list(pglist_data *pgdat, int zi, int cpu) noexcept nogil:
    return &pgdat.pcpb.owned_head[zi * pgdat.nr_cpus + cpu]

cdef void owned_add(pglist_data *pgdat, int zi, int cpu, long b) noexcept nogil:
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef int32_t *head = owned_list(pgdat, zi, cpu)
    pb.block_prev[b] = -1
    pb.block_next[b] = head[0]
    if head[0] >= 0:
        pb.block_prev[head[0]] = <int32_t>b
    head[0] = <int32_t>b

cdef void owned_del(pglist_data *pgdat, int zi, int cpu, long b) noexcept nogil:
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef int32_t nxt = pb.block_next[b], prv = pb.block_prev[b]
    if nxt == -2:
        return                  # not listed
    if prv >= 0:
        pb.block_next[prv] = nxt
    else:
        owned_list(pgdat, zi, cpu)[0] = nxt
    if nxt >= 0:
        pb.block_prev[nxt] = prv
    pb.block_next[b] = -2
    pb.block_prev[b] = -2


# ---- tags and routing ----

cdef inline void pcpb_untag(pglist_data *pgdat, unsigned long pfn, int order) noexcept nogil:
    memset(&pgdat.pcpb.tag[pfn], 0xff, (<size_t>1 << order) * sizeof(int16_t))

cdef inline int pcpb_owner_cpu(cpu_state *cs, pglist_data *pgdat, unsigned long pfn, int cpu) noexcept nogil:
    """The pcp a freed block goes to: its owner's if it is PagePCPBuddy, else this CPU's."""
    cdef int owner = pgdat.pcpb.tag[pfn]
    if owner < 0 or owner == cpu:
        return cpu
    cs.item[<int>PCPB_ROUTED_FREE] += 1
    pgdat.pcpb.last_route = owner
    return owner


# ---- refill ----

cdef long split_to_list(pglist_data *pgdat, unsigned long pfn, int high, int order, list_head *lst, int cpu,
                        int pindex, int16_t tag) noexcept nogil:
    # Split a chunk of order high into blocks of order, appended in rising
    # pfn order as rmqueue_bulk appends; tag them (-1: not owned).
    cdef unsigned long i, n = 1UL << (high - order)
    cdef page *p
    for i in range(n):
        p = pfn_to_page(pgdat, pfn + (i << order))
        list_add_tail(&p.lru, lst)
        p.flags = PG_pcp
        p.cpu = <int16_t>cpu
        p.pindex = <uint8_t>pindex
        pgdat.pcpb.tag[pfn + (i << order)] = tag
    return 1L << high


cdef long pcpb_recover(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int mt, long want,
                       list_head *lst, int cpu, int pindex) noexcept nogil:
    # Phase 0: for each block on owned_blocks of the request's type, take its
    # free fragments of at least the order back from the buddy and unlist it.
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef long got = 0
    cdef int32_t b = owned_list(pgdat, z.idx, cpu)[0], nxt
    cdef unsigned long pfn, end
    cdef page *p
    cdef int o
    while b >= 0 and got < want:
        nxt = pb.block_next[b]
        cs.item[<int>PCPB_OWNED_SCANNED] += 1
        if pgdat.pageblock_mt[b] != mt:
            cs.item[<int>PCPB_OWNED_SKIPPED] += 1
        else:
            owned_del(pgdat, z.idx, cpu, b)
            pfn = <unsigned long>b << PAGEBLOCK_ORDER
            end = pfn + PAGEBLOCK_NR_PAGES
            while pfn < end:
                p = pfn_to_page(pgdat, pfn)
                if not (p.flags & PG_buddy):
                    pfn += 1
                    continue
                o = <int>p.private
                if order <= o <= PAGEBLOCK_ORDER:
                    del_page_from_free_list(p, z, o, mt)
                    got += split_to_list(pgdat, pfn, o, order, lst, cpu, pindex, <int16_t>cpu)
                    cs.item[<int>PCPB_PHASE0_PAGES] += 1UL << o
                pfn += 1UL << o
        b = nxt
    return got


cdef void pcpb_claim(cpu_state *cs, pglist_data *pgdat, zone *z, unsigned long pfn, int cpu) noexcept nogil:
    # The CPU now owns the wholly free block at pfn.
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef long b = pfn >> PAGEBLOCK_ORDER
    if pb.block_owner[b] >= 0:
        owned_del(pgdat, z.idx, pb.block_owner[b], b)
    pb.block_owner[b] = <int16_t>cpu
    cs.item[<int>PCPB_PHASE1_BLOCKS] += 1


cdef int pcpb_rmqueue_bulk(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int count, list_head *lst,
                           int mt, int alloc_flags, int cpu, int pindex) noexcept nogil:
    """Refill a pcp list with at least count blocks in the RFC's four phases,
    under one zone->lock; the blocks added."""
    cdef long want = <long>count << order, got = 0
    cdef unsigned long pfn
    cdef page *p
    cdef int o, mode = RMQUEUE_NORMAL
    spin_lock_zone(cs, pgdat, z, LOCK_RMQUEUE_BULK)
    if mt < MIGRATE_PCPTYPES:
        got = pcpb_recover(cs, pgdat, z, order, mt, want, lst, cpu, pindex)
        # Phase 1: whole pageblocks of the request's type, owned.
        while got < want and order <= PAGEBLOCK_ORDER:
            p = __rmqueue_smallest(cs, pgdat, z, PAGEBLOCK_ORDER, mt)
            if p == NULL:
                break
            pfn = page_to_pfn(pgdat, p)
            pcpb_claim(cs, pgdat, z, pfn, cpu)
            got += split_to_list(pgdat, pfn, PAGEBLOCK_ORDER, order, lst, cpu, pindex, <int16_t>cpu)
        # Phase 2: the largest chunks below a pageblock, no stealing, not owned.
        o = PAGEBLOCK_ORDER - 1
        while got < want and o >= order:
            p = get_page_from_free_area(&z.free_area[o], mt)
            if p == NULL:
                o -= 1
                continue
            pfn = page_to_pfn(pgdat, p)
            del_page_from_free_list(p, z, o, mt)
            got += split_to_list(pgdat, pfn, o, order, lst, cpu, pindex, -1)
            cs.item[<int>PCPB_PHASE2_PAGES] += 1UL << o
    # Phase 3: the classic __rmqueue, with the CMA rule and fallbacks.
    while got < want:
        p = __rmqueue(cs, pgdat, z, order, mt, alloc_flags, &mode)
        if p == NULL:
            break
        list_add_tail(&p.lru, lst)
        p.flags = PG_pcp
        p.cpu = <int16_t>cpu
        p.pindex = <uint8_t>pindex
        got += 1L << order
        cs.item[<int>PCPB_PHASE3_PAGES] += 1UL << order
    count_locked_pages(cs, LOCK_RMQUEUE_BULK, got)
    spin_unlock_zone(z)
    cs.item[<int>PCP_REFILL] += 1
    cs.item[<int>PCP_REFILL_PAGES] += got
    cs.pcp_refill_blocks[order] += got >> order
    return <int>(got >> order)


# ---- drain: merge on the pcp, then free the chunks ----

cdef inline bint pcpb_defer_merge(pglist_data *pgdat, page *p, unsigned long pfn, int order) noexcept nogil:
    # An owned block the drain picked waits on pending[order] for the merge
    # pass instead of going to the buddy now. Caller holds zone->lock.
    if pgdat.pcpb.tag[pfn] < 0:
        return False
    p.flags = PG_pcpb_merge
    p.private = order
    list_add_tail(&p.lru, &pgdat.pcpb.pending[order])
    return True


cdef bint pageblock_free(pglist_data *pgdat, long b) noexcept nogil:
    # Is the pageblock wholly free in the buddy (alone or inside a MAX_ORDER block)?
    cdef unsigned long start = <unsigned long>b << PAGEBLOCK_ORDER
    cdef page *p = pfn_to_page(pgdat, start)
    if (p.flags & PG_buddy) and p.private >= PAGEBLOCK_ORDER:
        return True
    p = pfn_to_page(pgdat, start & ~((1UL << MAX_PAGE_ORDER) - 1))
    return (p.flags & PG_buddy) != 0 and p.private >= MAX_PAGE_ORDER


cdef void pcpb_merge_and_free(cpu_state *cs, pglist_data *pgdat, zone *z) noexcept nogil:
    """Merge the drain's owned blocks bottom-up, free the chunks to the buddy,
    and file their blocks on the owner's owned_blocks (or give them up)."""
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef list_head *lst
    cdef list_head *cur
    cdef list_head *nxt
    cdef page *p
    cdef page *buddy
    cdef unsigned long pfn, bpfn
    cdef int o, owner
    cdef long b
    for o in range(PAGEBLOCK_ORDER):
        lst = &pb.pending[o]
        cur = lst.next
        while cur != lst:
            nxt = cur.next
            p = lru_to_page(cur)
            pfn = page_to_pfn(pgdat, p)
            bpfn = pfn ^ (1UL << o)
            buddy = pfn_to_page(pgdat, bpfn)
            if buddy.flags == PG_pcpb_merge and <int>buddy.private == o and pb.tag[bpfn] == pb.tag[pfn]:
                if nxt == &buddy.lru:
                    nxt = nxt.next
                list_del(&p.lru)
                list_del(&buddy.lru)
                p.flags = 0
                buddy.flags = 0
                p = pfn_to_page(pgdat, pfn & bpfn)
                p.flags = PG_pcpb_merge
                p.private = o + 1
                list_add_tail(&p.lru, &pb.pending[o + 1])
                cs.item[<int>PCPB_MERGES] += 1
            cur = nxt
    for o in range(PAGEBLOCK_ORDER + 1):
        lst = &pb.pending[o]
        while not list_empty(lst):
            p = lru_to_page(lst.next)
            list_del(&p.lru)
            p.flags = 0
            p.private = 0
            pfn = page_to_pfn(pgdat, p)
            owner = pb.tag[pfn]
            b = pfn >> PAGEBLOCK_ORDER
            __free_one_page(cs, pgdat, p, pfn, z, o, get_pageblock_migratetype(pgdat, pfn), False)
            cs.item[<int>PCPB_DRAIN_CHUNKS] += 1
            if pb.block_owner[b] != owner:
                continue
            if pageblock_free(pgdat, b):
                owned_del(pgdat, z.idx, owner, b)
                pb.block_owner[b] = -1
                cs.item[<int>PCPB_RELEASED] += 1
            elif pb.block_next[b] == -2:
                owned_add(pgdat, z.idx, owner, b)


# ---- views (Allocator.pcpb_state, Allocator.pageblock_census) ----

cdef object pcpb_state(pglist_data *pgdat):
    """Owned pageblocks (in all and per CPU) and those on owned_blocks lists; None: classic pcp."""
    cdef pcp_buddy *pb = pgdat.pcpb
    cdef unsigned long b, nblocks = pgdat.node_spanned_pages >> PAGEBLOCK_ORDER
    if pb == NULL:
        return None
    owned = np.zeros(pgdat.nr_cpus, dtype=np.int64)
    listed = 0
    for b in range(nblocks):
        if pb.block_owner[b] >= 0:
            owned[pb.block_owner[b]] += 1
        if pb.block_next[b] != -2:
            listed += 1
    return {"owned_blocks": int(owned.sum()), "listed_blocks": listed, "owned_per_cpu": owned.tolist()}


cdef tuple pageblock_census(pglist_data *pgdat):
    """Per populated pageblock: wholly free, and mixed (holds allocated movable
    and non-movable blocks); plus the allocated pages in CMA blocks. Returns
    (free blocks, mixed blocks, blocks, cma pages allocated, cma pages)."""
    cdef unsigned long b, pfn, end, nblocks = pgdat.node_spanned_pages >> PAGEBLOCK_ORDER
    cdef long nfree = 0, nmixed = 0, total = 0, cma_used = 0, cma_pages = 0, movable, other
    cdef page *p
    cdef bint is_cma
    with nogil:
        for b in range(nblocks):
            pfn = b << PAGEBLOCK_ORDER
            if pgdat.block_zone[pfn >> MAX_PAGE_ORDER] == 0xff:
                continue
            total += 1
            is_cma = pgdat.pageblock_mt[b] == MIGRATE_CMA
            if is_cma:
                cma_pages += PAGEBLOCK_NR_PAGES
            if pageblock_free(pgdat, <long>b):
                nfree += 1
                continue
            end = pfn + PAGEBLOCK_NR_PAGES
            movable = 0
            other = 0
            while pfn < end:
                p = pfn_to_page(pgdat, pfn)
                if p.flags & PG_buddy:
                    pfn += 1UL << p.private
                elif p.flags & PG_pcp:
                    pfn += 1UL << pgdat.pindex_order[p.pindex]
                elif p.flags & PG_allocated:
                    if p.flags & PG_lru:
                        movable += 1L << p.order
                    else:
                        other += 1L << p.order
                    pfn += 1UL << p.order
                else:
                    pfn += 1
            if movable and other:
                nmixed += 1
            if is_cma:
                cma_used += movable + other
    return nfree, nmixed, total, cma_used, cma_pages
