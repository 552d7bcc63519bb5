# The allocator's entry points (mm/page_alloc.c, v6.10): watermark checks,
# the zonelist walk, __alloc_pages with its fast and slow paths (kswapd's
# boost reset, the reclaim outcome chosen by the config, no compaction or OOM
# killer), and the free entry.

cdef enum:
    MAX_RECLAIM_RETRIES = 16


cdef inline unsigned long wmark_pages(zone *z, int i) noexcept nogil:
    return z._watermark[i] + z.watermark_boost

cdef inline unsigned long high_wmark_pages(zone *z) noexcept nogil:
    return wmark_pages(z, WMARK_HIGH)

cdef inline long __zone_watermark_unusable_free(zone *z, int order, int alloc_flags) noexcept nogil:
    cdef long unusable_free = (1L << order) - 1
    # Without a reserve flag the highatomic reserve is not usable: all of it
    # up to v6.11, its free pages from v6.12 (c928807f6f6b).
    if not (alloc_flags & ALLOC_RESERVES):
        unusable_free += z.nr_free_highatomic if z.rules & RULE_FREE_HIGHATOMIC else z.nr_reserved_highatomic
    # Requests that may not use CMA do not count free CMA pages.
    if not (alloc_flags & ALLOC_CMA):
        unusable_free += z.vm_stat[<int>NR_FREE_CMA_PAGES]
    return unusable_free


cdef bint __zone_watermark_ok(zone *z, int order, long mark, int highest_zoneidx, int alloc_flags,
                              long free_pages) noexcept nogil:
    """Is the zone above mark with a block of the order free? (__zone_watermark_ok)"""
    cdef long min_ = mark
    cdef int o, mt
    cdef free_area *area
    free_pages -= __zone_watermark_unusable_free(z, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            min_ -= min_ // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                min_ -= min_ // 4
        if alloc_flags & ALLOC_OOM:
            min_ -= min_ // 2
    if free_pages <= min_ + z.lowmem_reserve[highest_zoneidx]:
        return False
    if order == 0:
        return True
    for o in range(order, NR_PAGE_ORDERS):
        area = &z.free_area[o]
        if area.nr_free == 0:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if not list_empty(&area.free_list[mt]):
                return True
        if (alloc_flags & ALLOC_CMA) and not list_empty(&area.free_list[<int>MIGRATE_CMA]):
            return True
        if (alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) and not list_empty(&area.free_list[<int>MIGRATE_HIGHATOMIC]):
            return True
    return False


cdef inline bint zone_watermark_ok(zone *z, int order, long mark, int highest_zoneidx,
                                   int alloc_flags) noexcept nogil:
    return __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, z.vm_stat[<int>NR_FREE_PAGES])


cdef inline bint zone_watermark_fast(zone *z, int order, long mark, int highest_zoneidx,
                              int alloc_flags) noexcept nogil:
    cdef long free_pages = z.vm_stat[<int>NR_FREE_PAGES]
    cdef long usable_free, reserved
    if order == 0:
        # Quick order-0 test; reserved may overestimate the highatomic reserve.
        usable_free = free_pages
        reserved = __zone_watermark_unusable_free(z, 0, alloc_flags)
        usable_free -= min(usable_free, reserved)
        if usable_free > mark + z.lowmem_reserve[highest_zoneidx]:
            return True
    if __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages):
        return True
    # __GFP_HIGH order-0 requests checking the min mark ignore the boost.
    if (order == 0 and (alloc_flags & ALLOC_MIN_RESERVE) and z.watermark_boost
            and (alloc_flags & ALLOC_WMARK_MASK) == 0):
        return __zone_watermark_ok(z, order, z._watermark[<int>WMARK_MIN], highest_zoneidx, alloc_flags, free_pages)
    return False


cdef page *rmqueue_buddy(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int alloc_flags,
                         int mt) noexcept nogil:
    """Take a block from the buddy under zone->lock (rmqueue_buddy)."""
    cdef page *p = NULL
    cdef int mode = RMQUEUE_NORMAL
    spin_lock_zone(cs, pgdat, z, LOCK_RMQUEUE_BUDDY)
    if alloc_flags & ALLOC_HIGHATOMIC:
        p = __rmqueue_smallest(cs, pgdat, z, order, MIGRATE_HIGHATOMIC)
    if p == NULL:
        p = __rmqueue(cs, pgdat, z, order, mt, alloc_flags, &mode)
        # v6.12 (281dd25c1a01): atomic requests may take the highatomic
        # reserve too, failing now being worse than a later failure.
        if p == NULL and (alloc_flags & (ALLOC_OOM | (ALLOC_NON_BLOCK if pgdat.rules & RULE_HIGHATOMIC_NON_BLOCK
                                                      else 0))):
            p = __rmqueue_smallest(cs, pgdat, z, order, MIGRATE_HIGHATOMIC)
    if p != NULL:
        count_locked_pages(cs, LOCK_RMQUEUE_BUDDY, 1L << order)
    spin_unlock_zone(z)
    return p


cdef inline page *rmqueue(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int alloc_flags, int mt,
                   int cpu) noexcept nogil:
    cdef page *p = NULL
    if pcp_allowed_order(pgdat, order):
        pcp_op_begin(cs)
        p = rmqueue_pcplist(cs, pgdat, z, order, mt, alloc_flags, cpu)
        pcp_op_end(cs, PCP_OP_ALLOC)
    if p == NULL:
        # A trylock failure or an empty refill falls through to the buddy.
        p = rmqueue_buddy(cs, pgdat, z, order, alloc_flags, mt)
    if (alloc_flags & ALLOC_KSWAPD) and (z.flags & ZONE_BOOSTED_WATERMARK):
        # A fallback boosted the watermark: wake kswapd for this zone.
        z.flags &= ~ZONE_BOOSTED_WATERMARK
        wakeup_kswapd(pgdat, 0, z.idx)
    return p


cdef bint pgdat_balanced(pglist_data *pgdat, int order, int highest_zoneidx) noexcept nogil:
    # Does a zone up to highest_zoneidx meet its high mark at order (pgdat_balanced)?
    cdef int i
    cdef zone *z
    cdef bint managed = False
    for i in range(highest_zoneidx + 1):
        z = &pgdat.node_zones[i]
        if not z.managed_pages:
            continue
        managed = True
        if zone_watermark_ok(z, order, high_wmark_pages(z), highest_zoneidx, 0):
            return True
    return not managed


cdef void wakeup_kswapd(pglist_data *pgdat, int order, int highest_zoneidx) noexcept nogil:
    """Wake kswapd for zones up to highest_zoneidx (wakeup_kswapd) and run it at
    once (kswapd, balance_pgdat in mm/vmscan.c).

    kswapd runs unless the node is hopeless (kswapd_failures) or balanced and
    not boosted (pgdat_watermark_boosted); balance_pgdat ends by taking back
    every boost it saw on zones 0..highest_zoneidx. With reclaim "none" each
    run reclaims nothing and counts a failure, and kswapd runs again while the
    node is unbalanced, until MAX_RECLAIM_RETRIES make the node hopeless; with
    "progress" it reclaims, which pcpemu cannot see. Unlike the kernel, kswapd
    runs synchronously inside the wake, and its zone->lock hold for the boost
    is not counted: it runs on kswapd's CPU, not the caller's.
    """
    cdef int i
    cdef zone *z
    cdef bint boosted = False
    if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES:
        return
    for i in range(highest_zoneidx + 1):
        z = &pgdat.node_zones[i]
        boosted |= z.managed_pages != 0 and z.watermark_boost != 0
    if not boosted and pgdat_balanced(pgdat, order, highest_zoneidx):
        return
    for i in range(highest_zoneidx + 1):
        pgdat.node_zones[i].watermark_boost = 0
    if pgdat.reclaim != RECLAIM_NONE:
        return
    pgdat.kswapd_failures += 1
    while pgdat.kswapd_failures < MAX_RECLAIM_RETRIES and not pgdat_balanced(pgdat, order, highest_zoneidx):
        pgdat.kswapd_failures += 1


cdef inline void wake_all_kswapds(pglist_data *pgdat, int order, const alloc_context *ac) noexcept nogil:
    # One wakeup_kswapd per node of the zonelist: pcpemu has one node.
    if ac.zonelist[0] != NULL:
        wakeup_kswapd(pgdat, order, ac.highest_zoneidx)


cdef inline void prep_new_page(pglist_data *pgdat, page *p, int order, unsigned int gfp, int mt,
                               uint64_t owner) noexcept nogil:
    p.flags = PG_allocated
    if order and (gfp & GFP_COMP):
        p.flags |= PG_head
    if mt == MIGRATE_MOVABLE:
        p.flags |= PG_lru
    p._refcount = 1
    p._pincount = 0
    p.order = <uint8_t>order
    p.owner = owner
    p.private = 0
    p.cpu = -1


cdef inline page *try_this_zone(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int alloc_flags,
                                int mt, int cpu) noexcept nogil:
    # Unlike the kernel, where try_this_zone is a goto label inside
    # get_page_from_freelist, it is a function here (inlined all the same),
    # and it does not call prep_new_page: __alloc_pages does, once, for
    # whichever walk found the block.
    cdef page *p = rmqueue(cs, pgdat, z, order, alloc_flags, mt, cpu)
    if p != NULL and (alloc_flags & ALLOC_HIGHATOMIC):
        reserve_highatomic_pageblock(cs, pgdat, p, order, z)
    return p


cdef inline page *get_page_from_freelist(cpu_state *cs, pglist_data *pgdat, int order, int alloc_flags,
                                         const alloc_context *ac, int cpu, zone **zone_ret) noexcept nogil:
    """Walk the zonelist and take a block from the first zone above its
    watermark (get_page_from_freelist)."""
    cdef zone **zref
    cdef zone *z
    cdef page *p
    cdef bint no_fallback
    cdef int highest_zoneidx = ac.highest_zoneidx
    cdef bint ok
    while True:
        no_fallback = (alloc_flags & ALLOC_NOFRAGMENT) != 0
        zref = ac.zonelist
        while zref[0] != NULL:
            z = zref[0]
            zref += 1
            ok = False
            if not (z.flags & ZONE_BELOW_HIGH):
                ok = zone_watermark_fast(z, order, high_wmark_pages(z), highest_zoneidx, alloc_flags)
                if not ok:
                    # Seen below high: the free path starts shrinking pcp->high.
                    z.flags |= ZONE_BELOW_HIGH
                    cs.item[<int>ZONE_BELOW_HIGH_SET] += 1
            if not ok and not zone_watermark_fast(z, order, wmark_pages(z, alloc_flags & ALLOC_WMARK_MASK),
                                                  highest_zoneidx, alloc_flags):
                continue
            p = try_this_zone(cs, pgdat, z, order, alloc_flags, ac.migratetype, cpu)
            if p != NULL:
                zone_ret[0] = z
                return p
        if not no_fallback:
            return NULL
        # Fragmentation is better than failing: walk again, fallbacks allowed.
        alloc_flags &= ~ALLOC_NOFRAGMENT


cdef inline int gfp_migratetype(unsigned int gfp) noexcept nogil:
    return (gfp & (GFP_RECLAIMABLE | GFP_MOVABLE)) >> 3

cdef inline int check_gfp(unsigned int gfp) noexcept nogil:
    # gfp_migratetype() warns (VM_WARN_ON) on both mobility bits: no
    # migratetype has both, and its 3 would index past the pcp table. Bits
    # above __GFP_ZEROTAGS depend on config options pcpemu does not model.
    # The same rule as pcpemu.kernel.gfp.parse_gfp.
    if (gfp & ~GFP_BITS_MASK) or (gfp & GFP_MOVABLE_MASK) == GFP_MOVABLE_MASK:
        return PE_BAD_GFP
    return PE_OK

cdef inline int gfp_zone(unsigned int gfp) noexcept nogil:
    if gfp & GFP_DMA:
        return ZONE_DMA
    if gfp & GFP_DMA32:
        return ZONE_DMA32
    if (gfp & GFP_MOVABLE) and (gfp & GFP_HIGHMEM):
        return ZONE_MOVABLE
    return ZONE_NORMAL

cdef inline int gfp_to_alloc_flags_cma(unsigned int gfp, int alloc_flags) noexcept nogil:
    if gfp_migratetype(gfp) == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    return alloc_flags

cdef inline int gfp_to_alloc_flags(unsigned int gfp, int order) noexcept nogil:
    # The slow path's flags: the min watermark, reserves for requests that
    # cannot sleep.
    cdef int alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    alloc_flags |= gfp & (GFP_HIGH | GFP_KSWAPD_RECLAIM)
    if not (gfp & GFP_DIRECT_RECLAIM):
        if not (gfp & GFP_NOMEMALLOC):
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0:
                alloc_flags |= ALLOC_HIGHATOMIC
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_CPUSET
    return gfp_to_alloc_flags_cma(gfp, alloc_flags)


cdef void prepare_alloc_pages(pglist_data *pgdat, unsigned int gfp, alloc_context *ac) noexcept nogil:
    """The zonelist, preferred zone, migratetype and fast-path alloc_flags of a
    gfp mask (prepare_alloc_pages, and alloc_flags_nofragment of __alloc_pages)."""
    ac.gfp = gfp
    ac.migratetype = gfp_migratetype(gfp)
    ac.highest_zoneidx = gfp_zone(gfp)
    ac.zonelist = pgdat.zonelists[ac.highest_zoneidx]
    ac.preferred_zone = ac.zonelist[0]
    ac.alloc_flags = gfp_to_alloc_flags_cma(gfp, ALLOC_WMARK_LOW) | (gfp & GFP_KSWAPD_RECLAIM)
    if ac.preferred_zone != NULL and ac.preferred_zone.idx == ZONE_NORMAL:
        ac.alloc_flags |= ALLOC_NOFRAGMENT      # one node: alloc_flags_nofragment


cdef bint should_reclaim_retry(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac, int order,
                               int alloc_flags, int *no_progress_loops) noexcept nogil:
    """Is another reclaim round worth it after one without progress
    (should_reclaim_retry)? Before giving up, the highatomic reserve is given
    back, whatever is left of it."""
    cdef zone **zref = ac.zonelist
    cdef zone *z
    no_progress_loops[0] += 1
    if no_progress_loops[0] <= MAX_RECLAIM_RETRIES:
        # Would the request pass the min mark if every reclaimable page were
        # freed? pcpemu's zones hold no reclaimable (LRU) pages.
        while zref[0] != NULL:
            z = zref[0]
            zref += 1
            if __zone_watermark_ok(z, order, wmark_pages(z, 0), ac.highest_zoneidx, alloc_flags,
                                   z.vm_stat[<int>NR_FREE_PAGES]):
                return True
    return unreserve_highatomic_pageblock(cs, pgdat, ac, True)


cdef page *__alloc_pages_direct_reclaim(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac, int order,
                                        int alloc_flags, int cpu, zone **zone_ret) noexcept nogil:
    # Reclaim itself frees nothing pcpemu can see; with progress, a failed
    # attempt gives back highatomic reserves, drains every pcp list and
    # tries once more (__alloc_pages_direct_reclaim). Traced: what reclaim
    # freed and drained is in the trace, which a replay plays; nothing here.
    cdef page *p
    if pgdat.reclaim != RECLAIM_PROGRESS:
        return NULL
    p = get_page_from_freelist(cs, pgdat, order, alloc_flags, ac, cpu, zone_ret)
    if p == NULL:
        unreserve_highatomic_pageblock(cs, pgdat, ac, False)
        # Unlike the kernel, real threads (smp threaded mode) skip the drain:
        # they cannot take other CPUs' pcp locks, as drain_all ops cannot.
        if not pgdat.threaded:
            drain_all_pages(cs, pgdat, -1)
            cs.item[<int>SLOWPATH_DRAIN] += 1
        p = get_page_from_freelist(cs, pgdat, order, alloc_flags, ac, cpu, zone_ret)
    return p


cdef page *__alloc_pages_slowpath(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac, int order,
                                 int cpu, zone **zone_ret) noexcept nogil:
    """The slow path (__alloc_pages_slowpath): wake kswapd, retry at the min
    mark, then reclaim as the config says.

    Unlike the kernel: no direct compaction, no OOM killer, no __GFP_MEMALLOC
    or PF_MEMALLOC reserves; reclaim that makes progress frees nothing pcpemu
    can see, so such a request fails after its drained retry instead of
    looping; __GFP_NOFAIL requests fail where the kernel would loop.
    """
    cdef unsigned int gfp = ac.gfp
    cdef int alloc_flags = gfp_to_alloc_flags(gfp, order)
    cdef int no_progress_loops = 0
    cdef page *p
    cs.item[<int>SLOWPATH] += 1
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(pgdat, order, ac)
    p = get_page_from_freelist(cs, pgdat, order, alloc_flags, ac, cpu, zone_ret)
    while p == NULL:
        # retry:
        if alloc_flags & ALLOC_KSWAPD:
            wake_all_kswapds(pgdat, order, ac)
        p = get_page_from_freelist(cs, pgdat, order, alloc_flags, ac, cpu, zone_ret)
        if p != NULL or not (gfp & GFP_DIRECT_RECLAIM):
            break
        p = __alloc_pages_direct_reclaim(cs, pgdat, ac, order, alloc_flags, cpu, zone_ret)
        if p != NULL or (gfp & GFP_NORETRY):
            break
        if order > PAGE_ALLOC_COSTLY_ORDER and not (gfp & GFP_RETRY_MAYFAIL):
            break
        if pgdat.reclaim != RECLAIM_NONE:
            break
        if not should_reclaim_retry(cs, pgdat, ac, order, alloc_flags, &no_progress_loops):
            break
    return p


cdef inline page *__alloc_pages(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac, int order,
                                int cpu, uint64_t owner) noexcept nogil:
    """Allocate 2**order pages (__alloc_pages_noprof). Unlike the kernel, the
    slow path ends after its first retry at the min watermark: pcpemu has
    nothing to reclaim or compact, so the request fails there."""
    cdef int mt = ac.migratetype
    cdef zone *z = NULL
    cdef page *p = get_page_from_freelist(cs, pgdat, order, ac.alloc_flags, ac, cpu, &z)
    if p == NULL:
        p = __alloc_pages_slowpath(cs, pgdat, ac, order, cpu, &z)
    if p == NULL:
        cs.item[<int>ALLOC_FAILED] += 1
        cs.alloc_fail[order][mt] += 1
        trace_mm_page_alloc(cs, pgdat, NULL, order, ac.gfp, mt)
        return NULL
    # Unlike the kernel, prep_new_page runs here rather than at try_this_zone:
    # the state it sets is the same, and the owner token is at hand here.
    prep_new_page(pgdat, p, order, ac.gfp, mt, owner)
    cs.alloc[order][mt] += 1
    if z != ac.preferred_zone:
        cs.item[<int>ZONE_FALLBACK] += 1
    if get_pageblock_migratetype(pgdat, page_to_pfn(pgdat, p)) == MIGRATE_CMA:
        cs.cma_pages_to[mt] += 1UL << order
        if mt != MIGRATE_MOVABLE:
            cs.item[<int>CMA_TO_NONMOVABLE] += 1
    trace_mm_page_alloc(cs, pgdat, p, order, ac.gfp, mt)
    return p


cdef int check_free(pglist_data *pgdat, unsigned long pfn, int order, unsigned long *head_ret) noexcept nogil:
    """Can (pfn, order) be freed? 0, or a PE_* code; head_ret names the block
    the pfn lies in when that explains the error."""
    cdef page *p
    cdef unsigned long head
    cdef int o
    if pfn >= pgdat.node_spanned_pages:
        return PE_BAD_PFN
    if order < 0 or order > MAX_PAGE_ORDER:
        return PE_BAD_ORDER
    p = pfn_to_page(pgdat, pfn)
    head_ret[0] = pfn
    if p.flags & PG_allocated:
        if p.order != order:
            return PE_WRONG_ORDER
        if p._pincount:
            return PE_PINNED
        return PE_OK
    if p.flags & (PG_buddy | PG_pcp):
        return PE_DOUBLE_FREE
    for o in range(1, NR_PAGE_ORDERS):
        head = pfn & ~((1UL << o) - 1)
        p = pfn_to_page(pgdat, head)
        head_ret[0] = head
        if (p.flags & PG_allocated) and p.order >= o:
            return PE_TAIL_PAGE
        if ((p.flags & PG_buddy) and <int>p.private >= o) or \
                ((p.flags & PG_pcp) and pgdat.pindex_order[p.pindex] >= o):
            return PE_DOUBLE_FREE
    head_ret[0] = pfn
    return PE_NOT_ALLOCATED


cdef inline page *free_pages_prepare(cpu_state *cs, pglist_data *pgdat, unsigned long pfn, int order) noexcept nogil:
    """An allocated block checked by check_free, traced and made free (free_pages_prepare)."""
    cdef page *p = pfn_to_page(pgdat, pfn)
    trace_mm_page_free(cs, pgdat, pfn, order)
    p.flags = 0
    p._refcount = 0
    p.owner = 0
    p.order = 0
    cs.free[order] += 1
    return p


cdef inline void __free_pages(cpu_state *cs, pglist_data *pgdat, unsigned long pfn, int order, int cpu) noexcept nogil:
    """Free an allocated block checked by check_free (__free_pages)."""
    free_unref_page(cs, pgdat, free_pages_prepare(cs, pgdat, pfn, order), pfn, order, cpu)


cdef inline void free_pages_pcp_locked(cpu_state *cs, pglist_data *pgdat, unsigned long pfn, int order) noexcept nogil:
    """A free that found this CPU's pcp locked (free_frozen_pages' pcp_spin_trylock
    failed: an interrupt's free while the task held pcp->lock): straight to the buddy."""
    free_one_page(cs, pgdat, page_zone(pgdat, pfn), free_pages_prepare(cs, pgdat, pfn, order), pfn, order, False)


cdef page *alloc_pages_bulk_one(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac, int cpu,
                                uint64_t owner) noexcept nogil:
    """One order-0 page the way alloc_pages_bulk_noprof takes it (vmalloc's
    vm_area_alloc_pages): from the first zone of the zonelist above its watermark,
    straight off this CPU's pcp list (__rmqueue_pcplist). Unlike rmqueue_pcplist it
    leaves pcp->free_count alone, sets no ZONE_BELOW_HIGH and fires no mm_page_alloc;
    when the pcp path gives nothing, the ordinary single-page allocation runs."""
    cdef zone **zref = ac.zonelist
    cdef zone *z
    cdef per_cpu_pages *pcp
    cdef page *p = NULL
    cdef int mt = ac.migratetype
    while zref[0] != NULL:
        z = zref[0]
        zref += 1
        if not zone_watermark_fast(z, 0, wmark_pages(z, ac.alloc_flags & ALLOC_WMARK_MASK) + 1,
                                   ac.highest_zoneidx, ac.alloc_flags):
            continue
        pcp = z.per_cpu_pageset[cpu]
        if pcp_spin_trylock(cs, pgdat, pcp):
            p = __rmqueue_pcplist(cs, pgdat, z, 0, mt, ac.alloc_flags, pcp, order_to_pindex(pgdat, mt, 0), cpu)
            pcp_spin_unlock(pcp)
        break
    if p == NULL:
        return __alloc_pages(cs, pgdat, ac, 0, cpu, owner)
    prep_new_page(pgdat, p, 0, ac.gfp, mt, owner)
    cs.alloc[0][mt] += 1
    return p
