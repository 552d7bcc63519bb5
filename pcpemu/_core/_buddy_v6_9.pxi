# Stealing as v6.6..v6.9 did it, before v6.10-rc1's freelist migratetype
# hygiene series (Johannes Weiner, "mm: page_alloc: fix freelist movement
# during block conversion" and the patches around it): the free pages of the
# fallback block are moved to the request's lists first, whether or not the
# block is then claimed, and __rmqueue takes its block from those lists.
# Used when pgdat.freelist_hygiene is off. Caller holds zone->lock.


cdef void steal_suitable_fallback_v6_9(cpu_state *cs, pglist_data *pgdat, zone *z, page *p,
                                       int current_order, int start_mt, int alloc_flags,
                                       bint whole_block) noexcept nogil:
    """Move a fallback block, or all free pages of its pageblock, to start_mt's
    lists, claiming the pageblock when most of it is free or alike
    (steal_suitable_fallback, v6.9)."""
    cdef unsigned long pfn = page_to_pfn(pgdat, p), start
    cdef int block_mt = get_pageblock_migratetype(pgdat, pfn)
    cdef int free_pages = 0, movable_pages = 0, alike_pages
    if block_mt == MIGRATE_HIGHATOMIC:
        whole_block = False             # keep the reserve's accounting intact
    elif current_order >= PAGEBLOCK_ORDER:
        change_pageblock_range(cs, pgdat, pfn, current_order, start_mt)
        cs.item[<int>PGSTEAL_BLOCK] += 1
        whole_block = False
    else:
        if boost_watermark(pgdat, z):
            cs.item[<int>WMARK_BOOST] += 1
            if alloc_flags & ALLOC_KSWAPD:
                z.flags |= ZONE_BOOSTED_WATERMARK
    if whole_block and prep_move_freepages_block(pgdat, z, pfn, &start, &free_pages, &movable_pages):
        # v6.9 counted while moving (move_freepages_block with num_movable):
        # the same numbers, but the pages move even if the block is not claimed.
        __move_freepages_block(pgdat, z, start, start_mt)
        if start_mt == MIGRATE_MOVABLE:
            alike_pages = movable_pages
        elif block_mt == MIGRATE_MOVABLE:
            alike_pages = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
        else:
            alike_pages = 0
        if free_pages + alike_pages >= (1 << (PAGEBLOCK_ORDER - 1)):
            set_pageblock_migratetype(cs, pgdat, start, start_mt)
            cs.item[<int>PGSTEAL_BLOCK] += 1
        return
    move_to_free_list(p, z, current_order, start_mt)        # single_page


cdef bint __rmqueue_fallback_v6_9(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int start_mt,
                                  int alloc_flags) noexcept nogil:
    """Move a fallback block to start_mt's lists, largest first; True when one
    moved, and __rmqueue retries (__rmqueue_fallback, v6.9)."""
    lockdep_assert_held(z, "__rmqueue_fallback_v6_9")
    cdef int current_order = 0
    cdef bint can_steal = False
    cdef int fb = find_largest_fallback(z, order, start_mt, alloc_flags, &current_order, &can_steal)
    cdef page *p
    if fb == -1:
        return False
    p = get_page_from_free_area(&z.free_area[current_order], fb)
    steal_suitable_fallback_v6_9(cs, pgdat, z, p, current_order, start_mt, alloc_flags, can_steal)
    cs.item[<int>PGALLOC_FALLBACK] += 1
    trace_mm_page_alloc_extfrag(cs, pgdat, p, order, current_order, start_mt, fb)
    return True
