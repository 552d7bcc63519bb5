# A traced kernel's starting state, laid on a freshly booted node (pcpemu.runs.kstate):
# every page of a zone taken by one "untraced" owner, then free blocks, pageblock
# types, pcp lists and pcp->high put back as /proc showed them. Blocks of the
# untraced owner are carved out later for the frees of pages allocated before a trace.

cdef inline bint _is_untraced(page *p, uint64_t owner) noexcept nogil:
    return (p.flags & PG_allocated) != 0 and p.order == 0 and p.owner == owner


cdef inline void _make_untraced(pglist_data *pgdat, page *p, unsigned long pfn, uint64_t owner) noexcept nogil:
    # One allocated order-0 page of the owner; movable blocks hold user pages (PG_lru).
    p.flags = PG_allocated
    if get_pageblock_migratetype(pgdat, pfn) == MIGRATE_MOVABLE:
        p.flags |= PG_lru
    p._refcount = 1
    p._pincount = 0
    p.order = 0
    p.owner = owner
    p.private = 0
    p.cpu = -1


cdef long find_untraced_block(pglist_data *pgdat, zone *z, unsigned long pfn, int order, int mt,
                              uint64_t owner) noexcept nogil:
    # The first block of the given order at or after pfn made of the owner's order-0
    # pages, in a pageblock of type mt (-1: any); -1 when the zone has none.
    cdef unsigned long size = 1UL << order, i
    pfn = (max(pfn, z.managed_start) + size - 1) & ~(size - 1)
    while pfn + size <= z.managed_end:
        if mt >= 0 and get_pageblock_migratetype(pgdat, pfn) != mt:
            pfn = ((pfn >> PAGEBLOCK_ORDER) + 1) << PAGEBLOCK_ORDER if order < PAGEBLOCK_ORDER else pfn + size
            continue
        i = pfn
        while i < pfn + size and _is_untraced(pfn_to_page(pgdat, i), owner):
            i += 1
        if i == pfn + size:
            return pfn
        # Page i is not the owner's: no block holds it, nor the rest of the block it
        # heads (a seeded zone's free blocks are mostly struct pages never written).
        pfn = (i + block_span(pgdat, pfn_to_page(pgdat, i)) + size - 1) & ~(size - 1)
    return -1


cdef void pcp_add_untraced(pglist_data *pgdat, per_cpu_pages *pcp, unsigned long pfn, int order, int pindex,
                           int mt, int cpu) noexcept nogil:
    # One block of the owner's pages (find_untraced_block) onto the tail of a pcp list.
    cdef unsigned long i
    cdef page *p
    for i in range(pfn, pfn + (1UL << order)):
        p = pfn_to_page(pgdat, i)
        p.flags = 0
        p._refcount = 0
        p.owner = 0
    p = pfn_to_page(pgdat, pfn)
    list_add_tail(&p.lru, &pcp.lists[pindex])
    p.flags = PG_pcp
    p.cpu = <int16_t>cpu
    p.pindex = <uint8_t>pindex
    p.mt = <uint8_t>(mt if mt >= 0 else get_pageblock_migratetype(pgdat, pfn))
    pcp.count += 1 << order


cdef long next_untraced_block(pglist_data *pgdat, zone *z, int order) noexcept nogil:
    # The untraced owner's next whole block of the order from the zone's cursor on,
    # the cursor moved past it; -1 when the zone has none.
    cdef long pfn = find_untraced_block(pgdat, z, pgdat.untraced_cursor[z.idx], order, -1, pgdat.untraced_owner)
    if pfn >= 0:
        pgdat.untraced_cursor[z.idx] = pfn + (1UL << order)
    return pfn


cdef long untraced_block_of_type(pglist_data *pgdat, zone *z, int order, int mt) noexcept nogil:
    # The untraced owner's next whole block of the order in a pageblock of type mt, so
    # that a later free sends it back to the pcp list of that type, as the pageblock
    # of the traced kernel's page did (free_frozen_pages); -1 when the zone has none.
    cdef unsigned long *cursor = &pgdat.untraced_mt_cursor[z.idx][mt]
    cdef long pfn = find_untraced_block(pgdat, z, cursor[0], order, mt, pgdat.untraced_owner)
    if pfn < 0 and cursor[0] > z.managed_start:     # blocks given back behind the cursor
        pfn = find_untraced_block(pgdat, z, z.managed_start, order, mt, pgdat.untraced_owner)
    cursor[0] = z.managed_start if pfn < 0 else pfn + (1UL << order)
    return pfn


cdef void pcp_give_back(pglist_data *pgdat, per_cpu_pages *pcp, int pindex, bint newest) noexcept nogil:
    # A block of a pcp list back to the untraced owner, page by page: the oldest (the
    # list's tail, where a drain takes from) or the newest (its head, where an
    # allocation takes from).
    cdef page *p = lru_to_page(pcp.lists[pindex].next if newest else pcp.lists[pindex].prev)
    cdef unsigned long pfn = page_to_pfn(pgdat, p), i, nr_pages = 1UL << pgdat.pindex_order[pindex]
    list_del(&p.lru)
    for i in range(nr_pages):
        _make_untraced(pgdat, &p[i], pfn + i, pgdat.untraced_owner)
    pcp.count -= nr_pages


cdef bint pcp_reveal_one(pglist_data *pgdat, zone *z, per_cpu_pages *pcp, int src, int dst, int mt,
                         int cpu) noexcept nogil:
    # One block of dst's order from the src list's tail onto dst's; False when src has
    # too few pages or the untraced owner no block. Between lists of two orders, or
    # when the tail's pageblock is of another type than dst's and the owner has a
    # block of dst's type, the block is the owner's and src's blocks that pay for it
    # go back to the owner; a bigger one only once the blocks it paid for add up to
    # it (reveal_debt), so that pcp->count stays what /proc showed.
    cdef int order = pgdat.pindex_order[dst], src_order = pgdat.pindex_order[src]
    cdef unsigned long size = 1UL << order, n = 0
    cdef uint64_t *debt = &pgdat.cpu[cpu].reveal_debt[z.idx]
    cdef list_head *head = &pcp.lists[src]
    cdef list_head *pos = head.prev
    cdef long pfn
    cdef page *p
    if list_empty(head):
        return False
    if order == src_order:
        # The page itself, unless its pageblock is of another type than dst's list
        # and the owner has a block of dst's type to stand in for it.
        p = lru_to_page(head.prev)
        pfn = -1
        if pgdat.untraced_owner and get_pageblock_migratetype(pgdat, page_to_pfn(pgdat, p)) != mt:
            pfn = untraced_block_of_type(pgdat, z, order, mt)
        if pfn < 0:
            list_move_tail(&p.lru, &pcp.lists[dst])
            p.pindex = <uint8_t>dst
            p.mt = <uint8_t>mt
            return True
        pcp_give_back(pgdat, pcp, src, False)
        pcp_add_untraced(pgdat, pcp, pfn, order, dst, mt, cpu)
        return True
    while src_order < order and n < size and pos != head:
        n += 1UL << src_order
        pos = pos.prev
    if (src_order < order and n < size) or pgdat.untraced_owner == 0:
        return False
    pfn = untraced_block_of_type(pgdat, z, order, mt)
    if pfn < 0:
        pfn = next_untraced_block(pgdat, z, order)
    if pfn < 0:
        return False
    while n:
        pcp_give_back(pgdat, pcp, src, False)
        n -= 1UL << src_order
    if src_order > order:
        debt[0] += size
        if debt[0] >= 1UL << src_order and not list_empty(head):
            pcp_give_back(pgdat, pcp, src, False)
            debt[0] -= 1UL << src_order
    pcp_add_untraced(pgdat, pcp, pfn, order, dst, mt, cpu)
    return True


cdef void pcp_reveal(pglist_data *pgdat, const pcpemu_op *op) noexcept nogil:
    """OP_PCP_REVEAL, a replay's, with no kernel path: a page the traced kernel had on
    a pcp list when the trace began, which the replay laid on another of the CPU's
    lists (pcpemu.runs.kstate.PcpLists), goes where the trace shows it: one block
    onto the list of (op.order, TO), or with PCP_REVEAL_ALL every page of the FROM
    list. pcp->count stays what /proc showed (pcp_reveal_one). The block is one of a
    pageblock of TO's type where the untraced owner has one: the kernel's page was on
    that list because its pageblock was of that type, and its frees go back there."""
    cdef unsigned int zi = PCP_REVEAL_ZONE(op.gfp)
    cdef int mt = PCP_REVEAL_TO(op.gfp), src, dst
    cdef zone *z
    if zi >= MAX_NR_ZONES or pgdat.node_zones[zi].per_cpu_pageset == NULL:
        return
    z = &pgdat.node_zones[zi]
    src = pgdat.pindex[PCP_REVEAL_FROM_ORDER(op.gfp)][PCP_REVEAL_FROM(op.gfp)]
    dst = pgdat.pindex[op.order][mt]
    if src < 0 or dst < 0 or src == dst:
        return
    while pcp_reveal_one(pgdat, z, z.per_cpu_pageset[op.cpu], src, dst, mt, op.cpu) and op.gfp & PCP_REVEAL_ALL:
        pass


cdef long pcp_untraced_move(pglist_data *pgdat, int zi, int cpu, long delta, int pindex) noexcept nogil:
    """Pages that came onto a CPU's pcp lists (delta > 0) or left them (delta < 0)
    with no event, as the kernel's own drains show (pcpemu.runs.kstate.FirstDrains):
    the untraced owner's blocks onto the tail of list pindex (where the pages the
    trace has not placed wait), or the oldest blocks back to the owner, from that
    list first, then from the order-0 lists (Movable first). Returns the pages moved,
    signed; fewer when the owner or the lists run out."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef per_cpu_pages *pcp
    cdef long moved = 0, pfn
    cdef long size = 1L << pgdat.pindex_order[pindex]
    cdef int i, li
    cdef int order0_lists[3]
    order0_lists[:] = [MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE]
    if z.per_cpu_pageset == NULL or not 0 <= cpu < pgdat.nr_cpus or pgdat.untraced_owner == 0:
        return 0
    pcp = z.per_cpu_pageset[cpu]
    while moved + size <= delta:
        pfn = next_untraced_block(pgdat, z, pgdat.pindex_order[pindex])
        if pfn < 0:
            break
        pcp_add_untraced(pgdat, pcp, pfn, pgdat.pindex_order[pindex], pindex, -1, cpu)
        moved += size
    while moved - size >= delta and not list_empty(&pcp.lists[pindex]):
        pcp_give_back(pgdat, pcp, pindex, False)
        moved -= size
    for i in range(3):
        li = pgdat.pindex[0][order0_lists[i]]
        while moved > delta and li >= 0 and not list_empty(&pcp.lists[li]):
            pcp_give_back(pgdat, pcp, li, False)
            moved -= 1
    return moved


cdef long pcp_untraced_take(pglist_data *pgdat, int zi, int cpu, int pindex, long nr_blocks) noexcept nogil:
    """Up to nr_blocks blocks off the head of one of a CPU's pcp lists, back to the
    untraced owner: pages an allocation the kernel did not trace took (alloc_pages_bulk
    -> __rmqueue_pcplist takes a list's first entries), as a later refill of that list
    shows (pcpemu.runs.kstate.PcpLists). Returns the blocks taken; fewer when the list
    runs out."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef per_cpu_pages *pcp
    cdef long taken = 0
    if z.per_cpu_pageset == NULL or not 0 <= cpu < pgdat.nr_cpus or pgdat.untraced_owner == 0 \
            or not 0 <= pindex < pgdat.nr_pcp_lists:
        return 0
    pcp = z.per_cpu_pageset[cpu]
    while taken < nr_blocks and not list_empty(&pcp.lists[pindex]):
        pcp_give_back(pgdat, pcp, pindex, True)
        taken += 1
    return taken


cdef long pcp_untraced_relist(pglist_data *pgdat, int zi, int cpu, int src, int mt, long nr_blocks) noexcept nogil:
    """Up to nr_blocks blocks off the tail of one of a CPU's pcp lists onto the tail
    of the list of migratetype mt and the same order: pages the trace put on the
    wrong list (their pageblock's type was never shown), as a later refill of src
    shows (pcpemu.runs.kstate.PcpLists); one of another type's pageblock leaves an
    owner's block of type mt in its place (pcp_reveal_one). pcp->count stays.
    Returns the blocks moved."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef long moved = 0
    cdef int dst = pgdat.pindex[pgdat.pindex_order[src]][mt]
    if z.per_cpu_pageset == NULL or not 0 <= cpu < pgdat.nr_cpus or dst < 0 or dst == src \
            or pgdat.untraced_owner == 0:
        return 0
    while moved < nr_blocks and pcp_reveal_one(pgdat, z, z.per_cpu_pageset[cpu], src, dst, mt, cpu):
        moved += 1
    return moved


cdef int seed_zone(pglist_data *pgdat, int zi, const uint8_t[::1] block_types, const int64_t[::1] pfns,
                   const int8_t[::1] orders, const int64_t[::1] up, uint64_t owner) except -1:
    """Lay zone zi out as a traced kernel's: the pageblock types of its managed pages
    (block_types[i]: the block i blocks after the one holding managed_start), the
    free blocks pfns/orders in the buddy, each at its list's tail in the order given
    (up: their indexes by ascending pfn; no two overlap), and every other managed
    page an order-0 allocation of owner. The node must be fresh: nothing allocated,
    empty pcp lists. The struct pages inside the free blocks are left as boot left
    them (zero but a boot block's head, which leaving the free list clears): the
    array is mmap'd, and a zone mostly free costs only its heads."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef int order, mt
    cdef unsigned long pfn, end, first = z.managed_start >> PAGEBLOCK_ORDER
    cdef unsigned long nblocks = ((z.managed_end - 1) >> PAGEBLOCK_ORDER) + 1 - first
    cdef Py_ssize_t b, k, j, nfree = pfns.shape[0]
    if z.per_cpu_pageset == NULL:
        raise PcpemuError(f"zone {zi} is not populated")
    if <unsigned long>block_types.shape[0] != nblocks:
        raise PcpemuError(f"zone {zi} has {nblocks} pageblocks of managed pages, not {block_types.shape[0]}")
    for b in range(block_types.shape[0]):
        if block_types[b] >= MIGRATE_PCPTYPES + 1:        # Unmovable, Movable, Reclaimable, HighAtomic
            raise PcpemuError(f"pageblock type {block_types[b]} cannot be seeded")
    if orders.shape[0] != nfree or up.shape[0] != nfree:
        raise PcpemuError(f"{nfree} free blocks but {orders.shape[0]} orders and {up.shape[0]} indexes")
    end = z.managed_start
    for k in range(nfree):
        j = up[k]
        if not 0 <= j < nfree or orders[j] < 0 or orders[j] > MAX_PAGE_ORDER or pfns[j] & ((1L << orders[j]) - 1) \
                or pfns[j] < <int64_t>end or pfns[j] + (1L << orders[j]) > <int64_t>z.managed_end:
            raise PcpemuError(f"cannot seed free block {j}: not aligned, outside the zone's managed pages, "
                              "or overlapping another")
        end = pfns[j] + (1UL << orders[j])
    with nogil:
        spin_lock_zone(&pgdat.cpu[0], pgdat, z, LOCK_FREE_ONE_PAGE)
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                while not list_empty(&z.free_area[order].free_list[mt]):
                    del_page_from_free_list(lru_to_page(z.free_area[order].free_list[mt].next), z, order, mt)
        spin_unlock_zone(z)
        for b in range(block_types.shape[0]):
            pgdat.pageblock_mt[first + b] = block_types[b]
        # The owner's pages: every managed page outside the free blocks (its flags rewritten whole).
        pfn = z.managed_start
        for k in range(nfree + 1):
            end = pfns[up[k]] if k < nfree else z.managed_end
            while pfn < end:
                _make_untraced(pgdat, pfn_to_page(pgdat, pfn), pfn, owner)
                pfn += 1
            if k < nfree:
                pfn = end + (1UL << orders[up[k]])
        for k in range(nfree):
            free_one_page(&pgdat.cpu[0], pgdat, z, pfn_to_page(pgdat, pfns[k]), pfns[k], orders[k], True)
    pgdat.untraced_owner = owner
    pgdat.untraced_cursor[zi] = z.managed_start
    for mt in range(MIGRATE_PCPTYPES):
        pgdat.untraced_mt_cursor[zi][mt] = z.managed_start
    return 0


cdef Py_ssize_t seed_pcp(pglist_data *pgdat, int zi, int cpu, int pindex, Py_ssize_t n, int high,
                        uint64_t owner) except -1:
    """Put n of the owner's pages on one pcp list (blocks of pindex's order) and set
    that pcp's high. Returns how many blocks went on the list. The blocks come from
    pageblocks of the list's migratetype first, then of the types a refill of it
    falls back to (fallbacks[]), then any: where the traced kernel's pages of that
    list most likely lay, and where a free sends each back to (free_frozen_pages
    takes the pageblock's type)."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef per_cpu_pages *pcp
    cdef int order, mt, want, k
    cdef int from_type[4]
    cdef Py_ssize_t got = 0
    cdef unsigned long pfn, size
    cdef long found
    if z.per_cpu_pageset == NULL or not 0 <= cpu < pgdat.nr_cpus or not 0 <= pindex < pgdat.nr_pcp_lists:
        raise PcpemuError(f"no pcp list {pindex} of cpu {cpu} in zone {zi}")
    pcp = z.per_cpu_pageset[cpu]
    order = pgdat.pindex_order[pindex]
    size = 1UL << order
    mt = -1
    for want in range(MIGRATE_PCPTYPES):
        if pgdat.pindex[order][want] == pindex:
            mt = want
    from_type[:] = [-2, -2, -2, -1]             # -2: no pass; -1: any type
    if mt >= 0:
        from_type[:3] = [mt, fallbacks[mt][0], fallbacks[mt][1]]
    with nogil:
        for k in range(4):
            if from_type[k] == -2:
                continue
            pfn = z.managed_start
            while got < n:
                found = find_untraced_block(pgdat, z, pfn, order, from_type[k], owner)
                if found < 0:
                    break
                pcp_add_untraced(pgdat, pcp, found, order, pindex, mt, cpu)
                got += 1
                pfn = found + size
        pcp.high = high
    return got


cdef Py_ssize_t take_untraced(pglist_data *pgdat, int zi, int mt, int order, int64_t[::1] o, uint64_t owner,
                              int64_t[::1] cursor) except -1:
    """Up to n blocks of the given order made of the owner's order-0 pages in zone
    zi, from pageblocks of type mt (-1: any), each turned into one allocated block
    of that order ready to be freed, and no longer the owner's (its head's owner is
    owner - 1), so no later take hands it out again. cursor[0] is where the search
    goes on from (the owner only ever gives pages away, so it never looks behind).
    Fills o with the head pfns; returns how many."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef unsigned long size = 1UL << order, pfn, i
    cdef Py_ssize_t got = 0
    cdef Py_ssize_t n = o.shape[0]
    cdef long found
    cdef page *p
    if order > MAX_PAGE_ORDER or z.per_cpu_pageset == NULL:
        raise PcpemuError(f"cannot take order-{order} blocks from zone {zi}")
    with nogil:
        pfn = cursor[0]
        while got < n:
            found = find_untraced_block(pgdat, z, pfn, order, mt, owner)
            if found < 0:
                pfn = z.managed_end
                break
            p = pfn_to_page(pgdat, found)
            for i in range(1, size):
                p[i].flags = 0
                p[i].owner = 0
                p[i]._refcount = 0
            p.order = <uint8_t>order
            p.owner = owner - 1
            o[got] = found
            got += 1
            pfn = found + size
        cursor[0] = pfn
    return got


cdef long claim_untraced_pageblock(pglist_data *pgdat, int zi, int mt, uint64_t owner,
                                   int64_t[::1] cursor) noexcept nogil:
    """The first pageblock at or after cursor[0] in zone zi made wholly of the owner's
    pages, of a type with pcp lists (CMA, highatomic and isolated pageblocks keep
    theirs), retyped mt if it was another type (the starting dumps give only how many
    pageblocks each type has, and the trace shows the pages freed from this one in a
    pageblock of type mt); its first pfn, -1 when the zone has none. The owner only
    gives pages away, so the search never looks behind cursor[0]."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef long pfn = cursor[0]
    cdef unsigned long i
    while True:
        pfn = find_untraced_block(pgdat, z, pfn, PAGEBLOCK_ORDER, -1, owner)
        if pfn < 0:
            cursor[0] = <int64_t>z.managed_end
            return -1
        if get_pageblock_migratetype(pgdat, pfn) < MIGRATE_PCPTYPES:
            break
        pfn += PAGEBLOCK_NR_PAGES
    cursor[0] = <int64_t>(pfn + PAGEBLOCK_NR_PAGES)
    if get_pageblock_migratetype(pgdat, pfn) != mt:
        set_pageblock_migratetype(NULL, pgdat, pfn, mt)
        for i in range(pfn, pfn + PAGEBLOCK_NR_PAGES):
            _make_untraced(pgdat, pfn_to_page(pgdat, i), i, owner)
    return pfn


cdef void reset_stats(pglist_data *pgdat) noexcept nogil:
    """Zero every counter (after seeding, so the counters show the replay alone);
    owner_seq, reveal_debt and free_high_at are state, not counters, and stay."""
    cdef uint64_t seq
    cdef uint64_t debt[MAX_NR_ZONES]
    cdef int free_high_at[MAX_NR_ZONES]
    cdef int cpu
    for cpu in range(pgdat.nr_cpus):
        seq = pgdat.cpu[cpu].owner_seq
        memcpy(debt, pgdat.cpu[cpu].reveal_debt, sizeof(debt))
        memcpy(free_high_at, pgdat.cpu[cpu].free_high_at, sizeof(free_high_at))
        memset(&pgdat.cpu[cpu], 0, sizeof(cpu_state))
        pgdat.cpu[cpu].owner_seq = seq
        memcpy(pgdat.cpu[cpu].reveal_debt, debt, sizeof(debt))
        memcpy(pgdat.cpu[cpu].free_high_at, free_high_at, sizeof(free_high_at))


cdef int grow_zone(pglist_data *pgdat, int zi, unsigned long nr_pages, zp, int cpu, bint on_demand) except -1:
    """Memory the traced kernel brought into a zone while the trace ran (online_pages,
    or deferred struct-page init growing the zone on demand): nr_pages more managed
    pages below the managed range, freed as MAX_PAGE_ORDER blocks to the tails of the
    Movable lists (__free_pages_core -> __free_pages_ok(FPI_TO_TAIL)), then the
    watermarks and pcp limits recomputed from the new size (init_per_zone_wmark_min ->
    setup_per_zone_wmarks -> zone_pcp_update; pcp->high is left to the next clamp).
    zp: the zone's ZoneParams for its new size; cpu: the CPU that frees the blocks.
    on_demand: grown by an allocation on cpu (get_page_from_freelist ->
    _deferred_grow_zone), which gets there only after the zone failed its check
    against the high watermark, which set ZONE_BELOW_HIGH."""
    cdef zone *z = &pgdat.node_zones[zi]
    cdef unsigned long pfn, start, size = 1UL << MAX_PAGE_ORDER
    cdef int i
    if not 0 <= cpu < pgdat.nr_cpus:
        raise PcpemuError(f"no cpu {cpu}")
    if z.per_cpu_pageset == NULL or nr_pages % size or nr_pages > z.managed_start - z.zone_start_pfn:
        raise PcpemuError(f"zone {zi} cannot grow by {nr_pages} pages below pfn {z.managed_start:#x}")
    start = z.managed_start - nr_pages
    for pfn in range(start, z.managed_start):
        if pfn_to_page(pgdat, pfn).flags:
            raise PcpemuError(f"pfn {pfn:#x} below zone {zi}'s managed pages is in use")
    with nogil:
        pfn = start
        while pfn < z.managed_start:
            set_pageblock_migratetype(NULL, pgdat, pfn, MIGRATE_MOVABLE)
            pgdat.block_zone[pfn >> MAX_PAGE_ORDER] = <uint8_t>zi
            pfn += PAGEBLOCK_NR_PAGES
        z.managed_start = start
        z.managed_pages += nr_pages
        pfn = start
        while pfn < start + nr_pages:
            trace_mm_page_free(&pgdat.cpu[cpu], pgdat, pfn, MAX_PAGE_ORDER)
            free_one_page(&pgdat.cpu[cpu], pgdat, z, pfn_to_page(pgdat, pfn), pfn, MAX_PAGE_ORDER, True)
            pfn += size
    for i in range(NR_WMARK):
        z._watermark[i] = zp.watermark[i]
    for i in range(MAX_NR_ZONES):
        z.lowmem_reserve[i] = zp.lowmem_reserve[i]
    pageset_update_zone(pgdat, z, zp.batch, zp.high_min, zp.high_max)
    if on_demand and not (z.flags & ZONE_BELOW_HIGH):
        z.flags |= ZONE_BELOW_HIGH
        pgdat.cpu[cpu].item[<int>ZONE_BELOW_HIGH_SET] += 1
    return 0
