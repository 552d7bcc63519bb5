# The per-CPU page lists (mm/page_alloc.c, v6.10): refill, allocation, free,
# high auto-tuning, bulk drain. pcp->lock is taken with a trylock on the fast
# paths; the caller of a "__" function holds it.

cdef inline int order_to_pindex(pglist_data *pgdat, int mt, int order) noexcept nogil:
    return pgdat.pindex[order][mt]

cdef inline bint pcp_allowed_order(pglist_data *pgdat, int order) noexcept nogil:
    return pgdat.pindex[order][<int>MIGRATE_UNMOVABLE] >= 0

cdef inline bint pcp_spin_trylock(cpu_state *cs, pglist_data *pgdat, per_cpu_pages *pcp) noexcept nogil:
    # The header fields (lock..free_count, 32 bytes) share the lock's
    # cacheline whatever L1 is (_kernel.h asserts it), so this touch records
    # the line of every header access of the operation; lists are touched one
    # by one.
    touch(cs, pgdat, pcp, &pcp.lock)
    if pgdat.threaded:
        if pcpemu_spin_trylock(&pcp.lock.locked):
            return True
    elif not pcp.lock.locked:
        pcp.lock.locked = 1
        return True
    cs.item[<int>PCP_TRYLOCK_FAIL] += 1
    return False

cdef inline void pcp_spin_unlock(per_cpu_pages *pcp) noexcept nogil:
    pcpemu_spin_unlock(&pcp.lock.locked)

cdef inline void set_pcp_high(cpu_state *cs, per_cpu_pages *pcp, int high) noexcept nogil:
    if pcp.high != high:
        pcp.high = high
        cs.item[<int>PCP_HIGH_CHANGE] += 1

cdef inline int clamp_int(int v, int lo, int hi) noexcept nogil:
    return min(max(v, lo), hi)


cdef void free_pcppages_bulk(cpu_state *cs, pglist_data *pgdat, zone *z, int count,
                             per_cpu_pages *pcp, int pindex) noexcept nogil:
    """Return count pages from the pcp lists to the buddy, round robin from
    pindex, each list oldest first (free_pcppages_bulk). Caller holds pcp->lock."""
    cdef list_head *lst
    cdef page *p
    cdef unsigned long pfn
    cdef int order, nr_pages, mt, moved = 0
    count = min(pcp.count, count)
    pindex -= 1             # the caller's list is drained first
    spin_lock_zone(cs, pgdat, z, LOCK_FREE_PCPPAGES_BULK)
    while count > 0:
        while True:
            pindex += 1
            if pindex > pgdat.nr_pcp_lists - 1:
                pindex = 0
            lst = &pcp.lists[pindex]
            touch(cs, pgdat, pcp, lst)
            if not list_empty(lst):
                break
        order = pgdat.pindex_order[pindex]
        nr_pages = 1 << order
        while True:
            p = lru_to_page(lst.prev)
            pfn = page_to_pfn(pgdat, p)
            list_del(&p.lru)
            p.flags = 0
            count -= nr_pages
            pcp.count -= nr_pages
            moved += nr_pages
            # v6.10 reads the pageblock type now; v6.9 used the type cached
            # when the page reached the list (free_unref_page_prepare, or the
            # free list a refill took it from), unless the zone had
            # isolated pageblocks.
            if pgdat.freelist_hygiene or z.nr_isolate_pageblock:
                mt = get_pageblock_migratetype(pgdat, pfn)
            else:
                mt = p.mt
            trace_mm_page_pcpu_drain(cs, pgdat, pfn, order, mt)
            if pgdat.pcpb == NULL or not pcpb_defer_merge(pgdat, p, pfn, order):
                __free_one_page(cs, pgdat, p, pfn, z, order, mt, False)
            if count <= 0 or list_empty(lst):
                break
    if pgdat.pcpb != NULL:
        pcpb_merge_and_free(cs, pgdat, z)
    count_locked_pages(cs, LOCK_FREE_PCPPAGES_BULK, moved)
    spin_unlock_zone(z)
    cs.item[<int>PCP_DRAIN] += 1
    cs.item[<int>PCP_DRAIN_PAGES] += moved


cdef int rmqueue_bulk(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int count,
                      list_head *lst, int mt, int alloc_flags, int cpu, int pindex) noexcept nogil:
    """Refill a pcp list with count blocks under one zone->lock (rmqueue_bulk)."""
    cdef int i, mode = RMQUEUE_NORMAL
    cdef page *p
    spin_lock_zone(cs, pgdat, z, LOCK_RMQUEUE_BULK)
    i = 0
    while i < count:
        p = __rmqueue(cs, pgdat, z, order, mt, alloc_flags, &mode)
        if p == NULL:
            break
        # Appended at the tail: the list hands out physically rising pages.
        list_add_tail(&p.lru, lst)
        p.flags = PG_pcp
        p.cpu = <int16_t>cpu
        p.pindex = <uint8_t>pindex
        i += 1
    count_locked_pages(cs, LOCK_RMQUEUE_BULK, <long>i << order)
    spin_unlock_zone(z)
    cs.item[<int>PCP_REFILL] += 1
    cs.item[<int>PCP_REFILL_PAGES] += <long>i << order
    cs.pcp_refill_blocks[order] += i
    return i


cdef int nr_pcp_alloc(cpu_state *cs, pglist_data *pgdat, per_cpu_pages *pcp, zone *z,
                      int order) noexcept nogil:
    # How many blocks a refill takes: grows with consecutive allocations
    # (alloc_factor) and grows pcp->high under allocation pressure.
    cdef int base_batch = pcp.batch
    cdef int high_min = pcp.high_min, high_max = pcp.high_max
    cdef int high, batch, max_nr_alloc
    high = clamp_int(pcp.high, high_min, high_max)
    set_pcp_high(cs, pcp, high)
    if high < base_batch:
        return 1            # pcp disabled or the boot pageset
    batch = base_batch if order else base_batch << pcp.alloc_factor
    if high_min != high_max and not (z.flags & ZONE_BELOW_HIGH):
        high = min(high + batch, high_max)
        set_pcp_high(cs, pcp, high)
    if order == 0:
        max_nr_alloc = max(high - pcp.count - base_batch, base_batch)
        if batch <= max_nr_alloc and pcp.alloc_factor < pgdat.pcp_batch_scale_max:
            pcp.alloc_factor += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


cdef inline page *__rmqueue_pcplist(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int mt,
                             int alloc_flags, per_cpu_pages *pcp, int pindex, int cpu) noexcept nogil:
    """Pop the head of a pcp list, refilling it when empty. Caller holds pcp->lock."""
    cdef list_head *lst = &pcp.lists[pindex]
    cdef page *p
    cdef int batch, alloced
    touch(cs, pgdat, pcp, lst)
    if list_empty(lst):
        cs.pcp_miss[order] += 1
        batch = nr_pcp_alloc(cs, pgdat, pcp, z, order)
        if pgdat.pcpb != NULL:
            alloced = pcpb_rmqueue_bulk(cs, pgdat, z, order, batch, lst, mt, alloc_flags, cpu, pindex)
        else:
            alloced = rmqueue_bulk(cs, pgdat, z, order, batch, lst, mt, alloc_flags, cpu, pindex)
        pcp.count += alloced << order
        if list_empty(lst):
            return NULL
    else:
        cs.pcp_hit[order] += 1
    p = lru_to_page(lst.next)
    list_del(&p.lru)
    pcp.count -= 1 << order
    return p


cdef inline page *rmqueue_pcplist(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int mt,
                           int alloc_flags, int cpu) noexcept nogil:
    """Lock this CPU's pcp of the zone and take a block from it (rmqueue_pcplist)."""
    cdef per_cpu_pages *pcp = z.per_cpu_pageset[cpu]
    cdef page *p
    if not pcp_spin_trylock(cs, pgdat, pcp):
        return NULL
    # Any allocation ends a run of consecutive frees.
    pcp.free_count >>= 1
    p = __rmqueue_pcplist(cs, pgdat, z, order, mt, alloc_flags, pcp, order_to_pindex(pgdat, mt, order), cpu)
    pcp_spin_unlock(pcp)
    return p


cdef inline int nr_pcp_high(cpu_state *cs, pglist_data *pgdat, per_cpu_pages *pcp, zone *z, int batch,
                     bint free_high) noexcept nogil:
    # The count at which a free drains, tuning pcp->high on the way.
    cdef int high_min = pcp.high_min, high_max = pcp.high_max
    cdef int high = clamp_int(pcp.high, high_min, high_max)
    cdef int free_count, need_high
    set_pcp_high(cs, pcp, high)
    if high == 0:
        return 0
    if free_high:
        set_pcp_high(cs, pcp, max(high - (batch << pgdat.pcp_batch_scale_max), high_min))
        return 0
    if z.flags & ZONE_RECLAIM_ACTIVE:
        free_count = max(pcp.free_count, batch)
        set_pcp_high(cs, pcp, max(high - free_count, high_min))
        return min(batch << 2, pcp.high)
    if high_min == high_max:
        return high
    if z.flags & ZONE_BELOW_HIGH:
        free_count = max(pcp.free_count, batch)
        set_pcp_high(cs, pcp, max(high - free_count, high_min))
        return max(pcp.count, high_min)
    if pcp.count >= high:
        need_high = pcp.free_count + batch
        # pcp->high must stay above the consecutive-free batch.
        if pcp.high < need_high:
            set_pcp_high(cs, pcp, clamp_int(need_high, high_min, high_max))
    return high


cdef inline int nr_pcp_free(pglist_data *pgdat, per_cpu_pages *pcp, int batch, int high,
                            bint free_high) noexcept nogil:
    if free_high:
        return min(pcp.count, batch << pgdat.pcp_batch_scale_max)
    if high < batch:
        return 1
    # Leave at least batch pages; free more after a run of consecutive frees.
    return clamp_int(pcp.free_count, batch, high - batch)


cdef inline bint free_pcp_drain(cpu_state *cs, pglist_data *pgdat, zone *z, int to_free, per_cpu_pages *pcp,
                                int pindex) noexcept nogil:
    # A free's drain: one free_pcppages_bulk call, or from v6.19 (91e691296646) calls
    # of pcp->batch pages, each starting at the freed page's list and ending up to a
    # block past its share (a THP list gives a block per call), the pcp lock dropped
    # and retaken between them. False when the retake failed (the pcp is then
    # unlocked). The kernel also stops when the task moved CPU, which cannot happen here.
    cdef int chunk
    if not pgdat.rules & RULE_FREE_BATCHED:
        free_pcppages_bulk(cs, pgdat, z, to_free, pcp, pindex)
        return True
    while to_free > 0 and pcp.count > 0:
        chunk = min(to_free, pcp.batch)
        free_pcppages_bulk(cs, pgdat, z, chunk, pcp, pindex)
        to_free -= chunk
        if to_free == 0 or pcp.count == 0:
            break
        pcp_spin_unlock(pcp)
        if not pcp_spin_trylock(cs, pgdat, pcp):
            return False
    return True


cdef inline int free_high_min_count(cpu_state *cs, pglist_data *pgdat, per_cpu_pages *pcp, zone *z,
                                    int batch) noexcept nogil:
    # The run of consecutive frees (pcp->free_count) from which a free of order 1..3
    # drains the pcp at once: batch, from v6.16 (c544a952ba61) batch + high_min / 2;
    # or what a replay read off the traced kernel's drains (Machine.pcp_set_free_high_at).
    if cs.free_high_at[z.idx]:
        return cs.free_high_at[z.idx]
    return batch + (pcp.high_min // 2 if pgdat.rules & RULE_FREE_HIGH_MIN else 0)


cdef inline bint free_unref_page_commit(cpu_state *cs, pglist_data *pgdat, zone *z, per_cpu_pages *pcp,
                                 page *p, int mt, int order, int cpu) noexcept nogil:
    """Put a freed block on its pcp list and drain when over high. Caller holds
    pcp->lock; False when the drain left it unlocked (free_pcp_drain)."""
    cdef int pindex = order_to_pindex(pgdat, mt, order)
    cdef int batch, high
    cdef bint free_high = False, locked
    pcp.alloc_factor >>= 1      # any free halves the allocation streak
    touch(cs, pgdat, pcp, &pcp.lists[pindex])
    list_add(&p.lru, &pcp.lists[pindex])
    p.flags = PG_pcp
    p.cpu = <int16_t>cpu
    p.pindex = <uint8_t>pindex
    pcp.count += 1 << order
    batch = pcp.batch
    # Consecutive frees of orders 1..3 with no allocation in between drain
    # early: the pages are not likely to be reused on this CPU.
    if order and order <= PAGE_ALLOC_COSTLY_ORDER:
        free_high = (pcp.free_count >= free_high_min_count(cs, pgdat, pcp, z, batch)
                     and (pcp.flags & PCPF_PREV_FREE_HIGH_ORDER) != 0
                     and (not (pcp.flags & PCPF_FREE_HIGH_BATCH) or pcp.count >= batch))
        pcp.flags |= PCPF_PREV_FREE_HIGH_ORDER
    elif pcp.flags & PCPF_PREV_FREE_HIGH_ORDER:
        pcp.flags &= ~PCPF_PREV_FREE_HIGH_ORDER
    if pcp.free_count < (batch << pgdat.pcp_batch_scale_max):
        pcp.free_count = <short>(pcp.free_count + (1 << order))
    high = nr_pcp_high(cs, pgdat, pcp, z, batch, free_high)
    if pcp.count < high:
        return True
    locked = free_pcp_drain(cs, pgdat, z, nr_pcp_free(pgdat, pcp, batch, high, free_high), pcp, pindex)
    if (z.flags & ZONE_BELOW_HIGH) and zone_watermark_ok(z, 0, high_wmark_pages(z), ZONE_MOVABLE, 0):
        z.flags &= ~ZONE_BELOW_HIGH
    return locked


cdef void free_one_page(cpu_state *cs, pglist_data *pgdat, zone *z, page *p, unsigned long pfn,
                        int order, bint to_tail) noexcept nogil:
    """Free a block straight into the buddy under zone->lock (free_one_page)."""
    spin_lock_zone(cs, pgdat, z, LOCK_FREE_ONE_PAGE)
    __free_one_page(cs, pgdat, p, pfn, z, order, get_pageblock_migratetype(pgdat, pfn), to_tail)
    count_locked_pages(cs, LOCK_FREE_ONE_PAGE, 1L << order)
    spin_unlock_zone(z)


cdef inline void free_unref_page(cpu_state *cs, pglist_data *pgdat, page *p, unsigned long pfn, int order,
                          int cpu) noexcept nogil:
    """Free a block through this CPU's pcp lists when its order allows (free_unref_page)."""
    cdef zone *z = page_zone(pgdat, pfn)
    cdef per_cpu_pages *pcp
    cdef int mt
    if not pcp_allowed_order(pgdat, order):
        free_one_page(cs, pgdat, z, p, pfn, order, False)      # __free_pages_ok
        return
    mt = get_pageblock_migratetype(pgdat, pfn)
    p.mt = <uint8_t>mt          # v6.9's set_pcppage_migratetype
    if mt >= MIGRATE_PCPTYPES:
        if mt == MIGRATE_ISOLATE:
            free_one_page(cs, pgdat, z, p, pfn, order, False)
            return
        # CMA and highatomic pages go on the movable lists, unless (Android)
        # CMA has pcp lists of its own.
        if not (pgdat.pcp_cma and mt == MIGRATE_CMA):
            mt = MIGRATE_MOVABLE
    if pgdat.pcpb != NULL:
        cpu = pcpb_owner_cpu(cs, pgdat, pfn, cpu)     # PagePCPBuddy: free to the owner's pcp
    pcp = z.per_cpu_pageset[cpu]
    pcp_op_begin(cs)
    if pcp_spin_trylock(cs, pgdat, pcp):
        if free_unref_page_commit(cs, pgdat, z, pcp, p, mt, order, cpu):
            pcp_spin_unlock(pcp)
    else:
        free_one_page(cs, pgdat, z, p, pfn, order, False)
    pcp_op_end(cs, PCP_OP_FREE)


cdef void drain_pages_zone(cpu_state *cs, pglist_data *pgdat, int cpu, zone *z) noexcept nogil:
    # Chunks of batch << CONFIG_PCP_BATCH_SCALE_MAX pages, count re-read
    # under the lock each time (v6.10.3 and v6.11).
    cdef per_cpu_pages *pcp = z.per_cpu_pageset[cpu]
    cdef int count
    pcp_op_begin(cs)
    while True:
        touch(cs, pgdat, pcp, &pcp.lock)
        pcp.lock.locked = 1
        count = pcp.count
        if count:
            free_pcppages_bulk(cs, pgdat, z, min(count, pcp.batch << pgdat.pcp_batch_scale_max), pcp, 0)
        pcp_spin_unlock(pcp)
        if not count:
            break
    pcp_op_end(cs, PCP_OP_DRAIN)


cdef void drain_pages(cpu_state *cs, pglist_data *pgdat, int cpu) noexcept nogil:
    """Drain one CPU's pcp lists of every populated zone (drain_pages)."""
    cdef int zi
    for zi in range(MAX_NR_ZONES):
        if pgdat.node_zones[zi].per_cpu_pageset != NULL and pgdat.node_zones[zi].per_cpu_pageset[cpu].count:
            drain_pages_zone(cs, pgdat, cpu, &pgdat.node_zones[zi])


cdef void drain_all_pages(cpu_state *cs, pglist_data *pgdat, int zone_idx) noexcept nogil:
    """Drain the pcp lists of every CPU that has pages on them (drain_all_pages);
    zone_idx -1 means every zone."""
    cdef int cpu, zi
    cdef zone *z
    cs.item[<int>DRAIN_ALL] += 1
    for cpu in range(pgdat.nr_cpus):
        for zi in range(MAX_NR_ZONES):
            if zone_idx >= 0 and zi != zone_idx:
                continue
            z = &pgdat.node_zones[zi]
            if z.per_cpu_pageset != NULL and z.per_cpu_pageset[cpu].count:
                drain_pages_zone(cs, pgdat, cpu, z)


cdef inline int decayed_pcp_high(per_cpu_pages *pcp) noexcept nogil:
    """The high decay_pcp_high leaves when the count is not what holds it up: an
    eighth off, down to high_min (a high at or below high_min stays)."""
    if pcp.high > pcp.high_min:
        return max(pcp.high - (pcp.high >> 3), pcp.high_min)
    return pcp.high


cdef void decay_pcp_high(cpu_state *cs, pglist_data *pgdat, zone *z, per_cpu_pages *pcp) noexcept nogil:
    """The vmstat worker's once-a-second decay of pcp->high (decay_pcp_high).
    From v6.19 (6.18.7) the drain goes in calls of pcp->batch pages; each call
    starts at the first list and ends past its count by at most a block, so a
    drain that reaches high-order lists frees more than count - high."""
    cdef int to_drain, chunk
    cs.item[<int>PCP_DECAY] += 1
    if pcp.high > pcp.high_min:
        set_pcp_high(cs, pcp, max(pcp.count - (pcp.batch << pgdat.pcp_batch_scale_max), decayed_pcp_high(pcp)))
    to_drain = pcp.count - pcp.high
    while to_drain > 0:
        chunk = min(to_drain, pcp.batch) if pgdat.rules & RULE_DECAY_BATCHED else to_drain
        pcp.lock.locked = 1
        free_pcppages_bulk(cs, pgdat, z, chunk, pcp, 0)
        pcp_spin_unlock(pcp)
        to_drain -= chunk
