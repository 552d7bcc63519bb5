# The buddy allocator under zone->lock: free lists, merging, splitting,
# fallback and stealing (mm/page_alloc.c, v6.10). A "__" name means the caller
# holds zone->lock. pgdat.freelist_hygiene off selects the rules before
# v6.10-rc1's freelist migratetype hygiene series (v6.6..v6.9, read in the
# series' pre-images): cross-block merges keep each block's type, steals move
# free pages before deciding, and a free list may hold pages of another
# pageblock type.

# fallbacks[] (mm/page_alloc.c): the two types each pcp type falls back to.
cdef int fallbacks[3][2]
fallbacks[0][:] = [MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE]
fallbacks[1][:] = [MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE]
fallbacks[2][:] = [MIGRATE_UNMOVABLE, MIGRATE_MOVABLE]


cdef inline void account_freepages(zone *z, long nr, int mt) noexcept nogil:
    # Pages on isolated lists are not free; CMA pages count twice; free
    # highatomic pages are counted apart (v6.12, c928807f6f6b).
    if mt == MIGRATE_ISOLATE:
        return
    z.vm_stat[<int>NR_FREE_PAGES] += nr
    if is_migrate_cma(mt):
        z.vm_stat[<int>NR_FREE_CMA_PAGES] += nr
    elif mt == MIGRATE_HIGHATOMIC:
        z.nr_free_highatomic += nr

cdef inline void set_buddy_order(page *p, int order) noexcept nogil:
    p.private = order
    p.flags = PG_buddy

cdef inline unsigned long block_span(pglist_data *pgdat, page *p) noexcept nogil:
    # The pages of the block p heads: a free one, an allocated one or one on a pcp
    # list; 1 for a page that heads none (a block's tail page, or not in use).
    if p.flags & PG_buddy:
        return 1UL << p.private
    if p.flags & PG_allocated:
        return 1UL << p.order
    if p.flags & PG_pcp:
        return 1UL << pgdat.pindex_order[p.pindex]
    return 1

cdef inline void __add_to_free_list(page *p, zone *z, int order, int mt, bint tail) noexcept nogil:
    lockdep_assert_held(z, "__add_to_free_list")
    cdef free_area *area = &z.free_area[order]
    if tail:
        list_add_tail(&p.lru, &area.free_list[mt])
    else:
        list_add(&p.lru, &area.free_list[mt])
    area.nr_free += 1
    p.mt = <uint8_t>mt

cdef inline void move_to_free_list(page *p, zone *z, int order, int new_mt) noexcept nogil:
    # Unlike the kernel, the old list is not passed in: pcpemu keeps it in
    # page.mt (with v6.10 rules it is always the pageblock's type).
    list_move_tail(&p.lru, &z.free_area[order].free_list[new_mt])
    account_freepages(z, -(1 << order), p.mt)
    account_freepages(z, 1 << order, new_mt)
    p.mt = <uint8_t>new_mt

cdef inline void __del_page_from_free_list(page *p, zone *z, int order) noexcept nogil:
    lockdep_assert_held(z, "__del_page_from_free_list")
    list_del(&p.lru)
    p.flags &= ~PG_buddy
    p.private = 0
    z.free_area[order].nr_free -= 1

cdef inline void del_page_from_free_list(page *p, zone *z, int order, int mt) noexcept nogil:
    __del_page_from_free_list(p, z, order)
    account_freepages(z, -(1 << order), mt)

cdef inline page *get_page_from_free_area(free_area *area, int mt) noexcept nogil:
    cdef list_head *h = &area.free_list[mt]
    if list_empty(h):
        return NULL
    return lru_to_page(h.next)

cdef inline bint page_is_buddy(page *p, page *buddy, int order) noexcept nogil:
    # Zones start on MAX_ORDER boundaries, so a buddy is always in p's zone.
    return (buddy.flags & PG_buddy) != 0 and <int>buddy.private == order

cdef inline bint buddy_merge_likely(pglist_data *pgdat, unsigned long pfn, unsigned long buddy_pfn,
                                    int order) noexcept nogil:
    # Is the block one order up likely to merge soon? Then free to the tail.
    cdef unsigned long higher_pfn, higher_buddy
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher_pfn = buddy_pfn & pfn
    higher_buddy = higher_pfn ^ (1UL << (order + 1))
    if higher_buddy >= pgdat.node_spanned_pages:
        return False
    return page_is_buddy(pfn_to_page(pgdat, higher_pfn), pfn_to_page(pgdat, higher_buddy), order + 1)


cdef void __free_one_page(cpu_state *cs, pglist_data *pgdat, page *p, unsigned long pfn, zone *z,
                          int order, int mt, bint to_tail) noexcept nogil:
    """Free a block into the buddy, merging with free buddies (__free_one_page).

    Caller holds zone->lock.
    """
    lockdep_assert_held(z, "__free_one_page")
    cdef unsigned long buddy_pfn = 0
    cdef int buddy_mt
    cdef page *buddy
    if pgdat.pcpb != NULL:
        pcpb_untag(pgdat, pfn, order)      # in the buddy no page is PagePCPBuddy
    account_freepages(z, 1 << order, mt)
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1UL << order)
        if buddy_pfn >= pgdat.node_spanned_pages:
            break
        buddy = pfn_to_page(pgdat, buddy_pfn)
        if not page_is_buddy(p, buddy, order):
            break
        buddy_mt = mt
        if order >= PAGEBLOCK_ORDER:
            # Merging crosses a pageblock: never merge CMA, isolated or
            # highatomic blocks with a block of another type.
            buddy_mt = get_pageblock_migratetype(pgdat, buddy_pfn)
            if mt != buddy_mt and (not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)):
                break
        __del_page_from_free_list(buddy, z, order)
        if buddy_mt != mt and pgdat.freelist_hygiene:
            # The buddy's block adopts the freeing block's type, so that a
            # later expand() files the halves on the right lists. Before
            # v6.10 the merged block went to mt's list, its second pageblock
            # keeping its own type.
            set_pageblock_migratetype(cs, pgdat, buddy_pfn, mt)
        pfn = pfn & buddy_pfn
        p = pfn_to_page(pgdat, pfn)
        order += 1
    set_buddy_order(p, order)
    if not to_tail:
        to_tail = buddy_merge_likely(pgdat, pfn, buddy_pfn, order)
    __add_to_free_list(p, z, order, mt, to_tail)


cdef inline unsigned long expand(page *p, zone *z, int low, int high, int mt) noexcept nogil:
    # Split a block of order high down to low; the upper halves go back to
    # the head of the free lists. Returns the pages given back.
    cdef unsigned long size = 1UL << high
    cdef unsigned long nr_added = 0
    while high > low:
        high -= 1
        size >>= 1
        __add_to_free_list(p + size, z, high, mt, False)
        set_buddy_order(p + size, high)
        nr_added += size
    return nr_added

cdef inline void page_del_and_expand(page *p, zone *z, int low, int high, int mt) noexcept nogil:
    cdef long nr_pages = 1L << high
    __del_page_from_free_list(p, z, high)
    nr_pages -= expand(p, z, low, high, mt)
    account_freepages(z, -nr_pages, mt)


cdef page *__rmqueue_smallest(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int mt) noexcept nogil:
    """Take the smallest free block of type mt that fits (caller holds zone->lock)."""
    lockdep_assert_held(z, "__rmqueue_smallest")
    cdef int o
    cdef page *p
    for o in range(order, NR_PAGE_ORDERS):
        p = get_page_from_free_area(&z.free_area[o], mt)
        if p == NULL:
            continue
        page_del_and_expand(p, z, order, o, mt)
        trace_mm_page_alloc_zone_locked(cs, pgdat, p, order, mt,
                                        pcp_allowed_order(pgdat, order) and mt < MIGRATE_PCPTYPES)
        return p
    return NULL


cdef inline bint can_steal_fallback(int order, int start_mt) noexcept nogil:
    # Only movable requests below pageblock_order / 2 may not claim a block.
    if order >= PAGEBLOCK_ORDER:
        return True
    if order >= PAGEBLOCK_ORDER // 2 or start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE:
        return True
    return False

cdef int find_suitable_fallback(free_area *area, int order, int start_mt, bint only_stealable,
                                bint *can_steal) noexcept nogil:
    cdef int i, fb
    if area.nr_free == 0:
        return -1
    can_steal[0] = False
    for i in range(2):
        fb = fallbacks[start_mt][i]
        if list_empty(&area.free_list[fb]):
            continue
        can_steal[0] = can_steal_fallback(order, start_mt)
        if not only_stealable:
            return fb
        if can_steal[0]:
            return fb
    return -1


cdef bint boost_watermark(pglist_data *pgdat, zone *z) noexcept nogil:
    cdef unsigned long max_boost
    if pgdat.watermark_boost_factor == 0:
        return False
    # Don't bother in zones too small to have whole pageblocks to spare.
    if PAGEBLOCK_NR_PAGES * 4 > z.managed_pages:
        return False
    max_boost = z._watermark[<int>WMARK_HIGH] * pgdat.watermark_boost_factor // 10000
    if max_boost == 0:
        return False
    max_boost = max(max_boost, PAGEBLOCK_NR_PAGES)
    z.watermark_boost = min(z.watermark_boost + PAGEBLOCK_NR_PAGES, max_boost)
    return True


cdef bint prep_move_freepages_block(pglist_data *pgdat, zone *z, unsigned long pfn,
                                    unsigned long *start_ret, int *nr_free, int *nr_movable) noexcept nogil:
    # The pageblock around pfn, if it lies wholly in the zone; counts its free
    # pages and its in-use movable (LRU) pages when asked.
    cdef unsigned long start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
    cdef unsigned long end = start + PAGEBLOCK_NR_PAGES
    cdef page *p
    if start < z.zone_start_pfn or end > z.zone_start_pfn + z.spanned_pages:
        return False
    start_ret[0] = start
    if nr_free == NULL:
        return True
    nr_free[0] = 0
    nr_movable[0] = 0
    pfn = start
    while pfn < end:
        p = pfn_to_page(pgdat, pfn)
        if p.flags & PG_buddy:
            nr_free[0] += 1 << p.private
        elif p.flags & PG_allocated and p.flags & PG_lru:
            nr_movable[0] += 1 << p.order
        pfn += block_span(pgdat, p)
    return True


cdef int __move_freepages_block(pglist_data *pgdat, zone *z, unsigned long start, int new_mt) noexcept nogil:
    lockdep_assert_held(z, "__move_freepages_block")
    # Move every free block of the pageblock at start to new_mt's lists, from
    # whichever list it is on (v6.9's move_freepages; with v6.10 rules that
    # is always the block's old type).
    cdef unsigned long pfn = start, end = start + PAGEBLOCK_NR_PAGES
    cdef int order, moved = 0
    cdef page *p
    while pfn < end:
        p = pfn_to_page(pgdat, pfn)
        if not (p.flags & PG_buddy):
            pfn += 1
            continue
        order = <int>p.private
        move_to_free_list(p, z, order, new_mt)
        pfn += 1UL << order
        moved += 1 << order
    return moved


cdef int move_freepages_block(cpu_state *cs, pglist_data *pgdat, zone *z, unsigned long pfn,
                              int new_mt) noexcept nogil:
    cdef unsigned long start
    cdef int moved
    if not prep_move_freepages_block(pgdat, z, pfn, &start, NULL, NULL):
        return -1
    moved = __move_freepages_block(pgdat, z, start, new_mt)
    set_pageblock_migratetype(cs, pgdat, start, new_mt)
    return moved


cdef inline void change_pageblock_range(cpu_state *cs, pglist_data *pgdat, unsigned long pfn,
                                        int order, int mt) noexcept nogil:
    cdef long nr = 1L << (order - PAGEBLOCK_ORDER) if order > PAGEBLOCK_ORDER else 1
    while nr > 0:
        set_pageblock_migratetype(cs, pgdat, pfn, mt)
        pfn += PAGEBLOCK_NR_PAGES
        nr -= 1


cdef page *steal_suitable_fallback(cpu_state *cs, pglist_data *pgdat, zone *z, page *p,
                                   int current_order, int order, int start_mt, int alloc_flags,
                                   bint whole_block) noexcept nogil:
    """Take a block from another type's list, claiming its pageblock when most of
    it is free or alike (steal_suitable_fallback). Caller holds zone->lock."""
    cdef unsigned long pfn = page_to_pfn(pgdat, p), start
    cdef int block_mt = get_pageblock_migratetype(pgdat, pfn)
    cdef int free_pages = 0, movable_pages = 0, alike_pages
    if block_mt == MIGRATE_HIGHATOMIC:
        # Keep the highatomic reserve's accounting intact.
        whole_block = False
    elif current_order >= PAGEBLOCK_ORDER:
        del_page_from_free_list(p, z, current_order, block_mt)
        change_pageblock_range(cs, pgdat, pfn, current_order, start_mt)
        cs.item[<int>PGSTEAL_BLOCK] += 1
        page_del_and_expand_noentry(p, z, order, current_order, start_mt)
        return p
    if block_mt != MIGRATE_HIGHATOMIC:
        if boost_watermark(pgdat, z):
            cs.item[<int>WMARK_BOOST] += 1
            if alloc_flags & ALLOC_KSWAPD:
                z.flags |= ZONE_BOOSTED_WATERMARK
    if whole_block and prep_move_freepages_block(pgdat, z, pfn, &start, &free_pages, &movable_pages):
        if start_mt == MIGRATE_MOVABLE:
            alike_pages = movable_pages
        elif block_mt == MIGRATE_MOVABLE:
            # Unmovable and reclaimable requests count the block's in-use
            # non-movable pages as alike.
            alike_pages = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
        else:
            alike_pages = 0
        if free_pages + alike_pages >= (1 << (PAGEBLOCK_ORDER - 1)):
            __move_freepages_block(pgdat, z, start, start_mt)
            set_pageblock_migratetype(cs, pgdat, start, start_mt)
            cs.item[<int>PGSTEAL_BLOCK] += 1
            return __rmqueue_smallest(cs, pgdat, z, order, start_mt)
    # Take just this block; the split remainder stays on the block's own type.
    page_del_and_expand(p, z, order, current_order, block_mt)
    return p


cdef inline void page_del_and_expand_noentry(page *p, zone *z, int low, int high, int mt) noexcept nogil:
    # Second half of page_del_and_expand for a block already unlinked.
    account_freepages(z, <long>expand(p, z, low, high, mt), mt)


cdef int find_largest_fallback(zone *z, int order, int start_mt, int alloc_flags, int *current_order_ret,
                               bint *can_steal) noexcept nogil:
    """The fallback list to steal from and its order, largest block first
    (the search of __rmqueue_fallback); -1 when there is none."""
    cdef int current_order, min_order = order, fb
    if order < PAGEBLOCK_ORDER and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = PAGEBLOCK_ORDER     # only whole free pageblocks may be stolen
    current_order = MAX_PAGE_ORDER
    while current_order >= min_order:
        fb = find_suitable_fallback(&z.free_area[current_order], current_order, start_mt, False, can_steal)
        if fb == -1:
            current_order -= 1
            continue
        if not can_steal[0] and start_mt == MIGRATE_MOVABLE and current_order > order:
            # A movable request that cannot claim the block takes the
            # smallest suitable block instead, to fragment less.
            for current_order in range(order, NR_PAGE_ORDERS):
                fb = find_suitable_fallback(&z.free_area[current_order], current_order, start_mt,
                                            False, can_steal)
                if fb != -1:
                    break
        current_order_ret[0] = current_order
        return fb
    return -1


cdef page *__rmqueue_fallback(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int start_mt,
                              int alloc_flags) noexcept nogil:
    """Steal from another migratetype, largest block first (__rmqueue_fallback, v6.10)."""
    lockdep_assert_held(z, "__rmqueue_fallback")
    cdef int current_order = 0
    cdef bint can_steal = False
    cdef int fb = find_largest_fallback(z, order, start_mt, alloc_flags, &current_order, &can_steal)
    cdef page *p
    if fb == -1:
        return NULL
    p = get_page_from_free_area(&z.free_area[current_order], fb)
    p = steal_suitable_fallback(cs, pgdat, z, p, current_order, order, start_mt, alloc_flags, can_steal)
    cs.item[<int>PGALLOC_FALLBACK] += 1
    trace_mm_page_alloc_extfrag(cs, pgdat, p, order, current_order, start_mt, fb)
    return p


# v6.15 (c2f6ea38fc): the fallback either claims a whole block or steals
# the smallest block of another type without claiming it.

cdef inline int find_fallback(free_area *area, int order, int start_mt, bint claimable) noexcept nogil:
    """The first fallback type with a free block in area; -1 for none, -2 when
    claiming and the order is too small to claim (find_suitable_fallback, v6.16)."""
    cdef int i, fb
    if claimable and not can_steal_fallback(order, start_mt):      # should_try_claim_block
        return -2
    if area.nr_free == 0:
        return -1
    for i in range(2):
        fb = fallbacks[start_mt][i]
        if not list_empty(&area.free_list[fb]):
            return fb
    return -1


cdef page *try_to_claim_block(cpu_state *cs, pglist_data *pgdat, zone *z, page *p, int current_order,
                              int order, int start_mt, int block_mt, int alloc_flags) noexcept nogil:
    """Take the block p belongs to for start_mt, if enough of it is free or alike
    (try_to_claim_block); NULL when it cannot. Caller holds zone->lock."""
    cdef unsigned long pfn = page_to_pfn(pgdat, p), start
    cdef int free_pages = 0, movable_pages = 0, alike_pages
    if current_order >= PAGEBLOCK_ORDER:
        del_page_from_free_list(p, z, current_order, block_mt)
        change_pageblock_range(cs, pgdat, pfn, current_order, start_mt)
        cs.item[<int>PGSTEAL_BLOCK] += 1
        page_del_and_expand_noentry(p, z, order, current_order, start_mt)
        return p
    # Unlike v6.10, only a claim attempt boosts the watermarks.
    if boost_watermark(pgdat, z):
        cs.item[<int>WMARK_BOOST] += 1
        if alloc_flags & ALLOC_KSWAPD:
            z.flags |= ZONE_BOOSTED_WATERMARK
    if not prep_move_freepages_block(pgdat, z, pfn, &start, &free_pages, &movable_pages):
        return NULL
    if start_mt == MIGRATE_MOVABLE:
        alike_pages = movable_pages
    elif block_mt == MIGRATE_MOVABLE:
        alike_pages = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
    else:
        alike_pages = 0
    if free_pages + alike_pages < (1 << (PAGEBLOCK_ORDER - 1)):
        return NULL
    __move_freepages_block(pgdat, z, start, start_mt)
    set_pageblock_migratetype(cs, pgdat, start, start_mt)
    cs.item[<int>PGSTEAL_BLOCK] += 1
    return __rmqueue_smallest(cs, pgdat, z, order, start_mt)


cdef page *__rmqueue_claim(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int start_mt,
                           int alloc_flags) noexcept nogil:
    """Claim a block of another type, trying the largest free blocks first (__rmqueue_claim)."""
    lockdep_assert_held(z, "__rmqueue_claim")
    cdef int current_order, min_order = order, fb
    cdef page *p
    if order < PAGEBLOCK_ORDER and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = PAGEBLOCK_ORDER
    current_order = MAX_PAGE_ORDER
    while current_order >= min_order:
        fb = find_fallback(&z.free_area[current_order], current_order, start_mt, True)
        if fb == -2:
            break
        if fb != -1:
            p = try_to_claim_block(cs, pgdat, z, get_page_from_free_area(&z.free_area[current_order], fb),
                                   current_order, order, start_mt, fb, alloc_flags)
            if p != NULL:
                cs.item[<int>PGALLOC_FALLBACK] += 1
                trace_mm_page_alloc_extfrag(cs, pgdat, p, order, current_order, start_mt, fb)
                return p
        current_order -= 1
    return NULL


cdef page *__rmqueue_steal(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int start_mt) noexcept nogil:
    """Take the smallest block of another type, leaving its pageblock alone (__rmqueue_steal)."""
    lockdep_assert_held(z, "__rmqueue_steal")
    cdef int current_order, fb
    cdef page *p
    for current_order in range(order, NR_PAGE_ORDERS):
        fb = find_fallback(&z.free_area[current_order], current_order, start_mt, False)
        if fb == -1:
            continue
        p = get_page_from_free_area(&z.free_area[current_order], fb)
        page_del_and_expand(p, z, order, current_order, fb)
        cs.item[<int>PGALLOC_FALLBACK] += 1
        trace_mm_page_alloc_extfrag(cs, pgdat, p, order, current_order, start_mt, fb)
        return p
    return NULL


# enum rmqueue_mode (v6.15, 90abee6d7895): where __rmqueue found the last block
# of a refill, so that the next one starts there.
cdef enum:
    RMQUEUE_NORMAL = 0
    RMQUEUE_CMA = 1
    RMQUEUE_CLAIM = 2
    RMQUEUE_STEAL = 3


cdef page *__rmqueue(cpu_state *cs, pglist_data *pgdat, zone *z, int order, int mt,
                     int alloc_flags, int *mode) noexcept nogil:
    """One block of the request's type, with the CMA balancing rule (__rmqueue)."""
    lockdep_assert_held(z, "__rmqueue")
    cdef page *p
    # Balance movable allocations between regular and CMA areas: use CMA
    # first when more than half of the zone's free memory is CMA.
    if (alloc_flags & ALLOC_CMA) and z.vm_stat[<int>NR_FREE_CMA_PAGES] > z.vm_stat[<int>NR_FREE_PAGES] // 2:
        p = __rmqueue_smallest(cs, pgdat, z, order, MIGRATE_CMA)
        if p != NULL:
            return p
    if not (pgdat.rules & RULE_CLAIM_STEAL):
        while True:
            p = __rmqueue_smallest(cs, pgdat, z, order, mt)
            if p != NULL:
                return p
            if alloc_flags & ALLOC_CMA:
                p = __rmqueue_smallest(cs, pgdat, z, order, MIGRATE_CMA)       # __rmqueue_cma_fallback
                if p != NULL:
                    return p
            if pgdat.freelist_hygiene:
                return __rmqueue_fallback(cs, pgdat, z, order, mt, alloc_flags)
            # v6.9: the steal only moved free pages to mt's lists; take from them.
            if not __rmqueue_fallback_v6_9(cs, pgdat, z, order, mt, alloc_flags):
                return NULL
    # v6.15: the modes in order of rising fragmentation risk, from *mode on.
    if mode[0] == RMQUEUE_NORMAL:
        p = __rmqueue_smallest(cs, pgdat, z, order, mt)
        if p != NULL:
            return p
    if mode[0] <= RMQUEUE_CMA and (alloc_flags & ALLOC_CMA):
        p = __rmqueue_smallest(cs, pgdat, z, order, MIGRATE_CMA)
        if p != NULL:
            mode[0] = RMQUEUE_CMA
            return p
    if mode[0] <= RMQUEUE_CLAIM:
        p = __rmqueue_claim(cs, pgdat, z, order, mt, alloc_flags)
        if p != NULL:
            mode[0] = RMQUEUE_NORMAL     # the preferred list was refilled
            return p
    if not (alloc_flags & ALLOC_NOFRAGMENT):
        p = __rmqueue_steal(cs, pgdat, z, order, mt)
        if p != NULL:
            mode[0] = RMQUEUE_STEAL
            return p
    return NULL


cdef void reserve_highatomic_pageblock(cpu_state *cs, pglist_data *pgdat, page *p, int order,
                                       zone *z) noexcept nogil:
    """Turn the block of a successful high-order atomic allocation into a
    highatomic reserve, up to about 1% of the zone (reserve_highatomic_pageblock)."""
    cdef unsigned long max_managed, pfn = page_to_pfn(pgdat, p)
    cdef int mt
    if z.managed_pages // 100 < PAGEBLOCK_NR_PAGES:
        return
    max_managed = (z.managed_pages // 100 + PAGEBLOCK_NR_PAGES - 1) & ~(PAGEBLOCK_NR_PAGES - 1)
    if z.nr_reserved_highatomic >= max_managed:
        return
    spin_lock_zone(cs, pgdat, z, LOCK_HIGHATOMIC)
    mt = get_pageblock_migratetype(pgdat, pfn)
    # Only blocks that can merge with others become reserves.
    if migratetype_is_mergeable(mt):
        if not pgdat.freelist_hygiene:
            # v6.9: one pageblock whatever the order, its free pages moved along.
            z.nr_reserved_highatomic += PAGEBLOCK_NR_PAGES
            set_pageblock_migratetype(cs, pgdat, pfn, MIGRATE_HIGHATOMIC)
            move_freepages_block(cs, pgdat, z, pfn, MIGRATE_HIGHATOMIC)
        elif order < PAGEBLOCK_ORDER:
            if move_freepages_block(cs, pgdat, z, pfn, MIGRATE_HIGHATOMIC) != -1:
                z.nr_reserved_highatomic += PAGEBLOCK_NR_PAGES
        else:
            change_pageblock_range(cs, pgdat, pfn, order, MIGRATE_HIGHATOMIC)
            z.nr_reserved_highatomic += 1UL << order
    spin_unlock_zone(z)


cdef bint unreserve_highatomic_pageblock(cpu_state *cs, pglist_data *pgdat, const alloc_context *ac,
                                         bint force) noexcept nogil:
    """Give one highatomic pageblock back to the request's migratetype before an
    allocation fails (unreserve_highatomic_pageblock). Without force, each zone
    keeps one pageblock of reserve. True when a block was given back."""
    cdef zone **zref = ac.zonelist
    cdef zone *z
    cdef page *p
    cdef unsigned long pfn, size
    cdef int order, mt, ret
    while zref[0] != NULL:
        z = zref[0]
        zref += 1
        if not force and z.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES:
            continue
        spin_lock_zone(cs, pgdat, z, LOCK_HIGHATOMIC)
        for order in range(NR_PAGE_ORDERS):
            p = get_page_from_free_area(&z.free_area[order], MIGRATE_HIGHATOMIC)
            if p == NULL:
                continue
            pfn = page_to_pfn(pgdat, p)
            mt = get_pageblock_migratetype(pgdat, pfn)
            # A free page can sit on the highatomic list of a block already
            # given back: count each block once.
            if mt == MIGRATE_HIGHATOMIC:
                size = PAGEBLOCK_NR_PAGES
                if pgdat.freelist_hygiene:
                    size = max(size, 1UL << order)
                z.nr_reserved_highatomic -= min(size, z.nr_reserved_highatomic)
            if not pgdat.freelist_hygiene:
                # v6.9: retype the first pageblock, move every free page of it.
                set_pageblock_migratetype(cs, pgdat, pfn, ac.migratetype)
                ret = move_freepages_block(cs, pgdat, z, pfn, ac.migratetype)
            elif order < PAGEBLOCK_ORDER:
                ret = move_freepages_block(cs, pgdat, z, pfn, ac.migratetype)
            else:
                move_to_free_list(p, z, order, ac.migratetype)
                change_pageblock_range(cs, pgdat, pfn, order, ac.migratetype)
                ret = 1
            if ret > 0:
                spin_unlock_zone(z)
                return True
        spin_unlock_zone(z)
    return False
