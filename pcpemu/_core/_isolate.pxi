# Migration, FOLL_PIN counts and pageblock isolation for pcpemu.runs.migrate
# (mm/migrate.c, mm/gup.c, mm/page_isolation.c, mm/page_alloc.c, v6.10).
# The binding (_allocator.pxi) checks the arguments and calls these.

from libc.errno cimport EBUSY, ENOMEM


cdef long block_head(pglist_data *pgdat, unsigned long pfn) noexcept nogil:
    # The head of the free, pcp or allocated block holding pfn, or -1.
    cdef int o, size
    cdef unsigned long head
    cdef page *p
    for o in range(NR_PAGE_ORDERS):
        head = pfn & ~((1UL << o) - 1)
        p = pfn_to_page(pgdat, head)
        if p.flags & PG_buddy:
            size = 1 << p.private
        elif p.flags & PG_pcp:
            size = 1 << pgdat.pindex_order[p.pindex]
        elif p.flags & PG_allocated:
            size = 1 << p.order
        else:
            continue
        if head + size > pfn:
            return <long>head
    return -1


cdef inline unsigned long block_size(pglist_data *pgdat, page *p) noexcept nogil:
    if p.flags & PG_buddy:
        return 1UL << p.private
    if p.flags & PG_pcp:
        return 1UL << pgdat.pindex_order[p.pindex]
    if p.flags & PG_allocated:
        return 1UL << p.order
    return 1


cdef page *alloc_migration_target(cpu_state *cs, pglist_data *pgdat, page *src, unsigned int gfp,
                                  bint pin, int cpu) noexcept nogil:
    # alloc_migration_target: the caller's gfp for an order-0 source; for a
    # THP source no reclaim, GFP_TRANSHUGE added, the source's order, and
    # __GFP_COMP (__folio_alloc). Then __alloc_pages applies
    # current_gfp_context: under memalloc_pin_save() __GFP_MOVABLE goes.
    # The owner token moves with the data.
    cdef int order = src.order
    cdef alloc_context ac
    if order:
        gfp = (gfp & ~(GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM)) | GFP_TRANSHUGE | GFP_COMP
    if pin:
        gfp &= ~GFP_MOVABLE
    prepare_alloc_pages(pgdat, gfp, &ac)
    return __alloc_pages(cs, pgdat, &ac, order, cpu, src.owner)


cdef long migrate_folio(cpu_state *cs, pglist_data *pgdat, unsigned long src_pfn, unsigned int gfp,
                        bint pin, int cpu) noexcept nogil:
    """Move an allocated, unpinned block to a new target and free the source
    the kernel's way (migrate_folio_move + migrate_folio_done -> free_unref_page).
    The target keeps the source's LRU and compound state. Returns the new pfn or -1."""
    cdef page *src = pfn_to_page(pgdat, src_pfn)
    cdef int order = src.order
    cdef unsigned long keep = src.flags & (PG_lru | PG_head)
    cdef page *dst = alloc_migration_target(cs, pgdat, src, gfp, pin, cpu)
    if dst == NULL:
        return -1
    dst.flags = (dst.flags & ~(PG_lru | PG_head)) | keep
    __free_pages(cs, pgdat, src_pfn, order, cpu)
    return <long>page_to_pfn(pgdat, dst)


# ---- pageblock isolation (mm/page_isolation.c) ----

cdef long has_unmovable_pages(pglist_data *pgdat, zone *z, unsigned long start, unsigned long end,
                              int migratetype) noexcept nogil:
    """The first in-use page of [start, end) that can never move, or -1
    (has_unmovable_pages). A CMA block isolated for CMA is never refused."""
    cdef unsigned long pfn
    cdef page *p
    cdef long head
    # Unlike the kernel, pcpemu has no PageReserved, __PageMovable or hugetlb
    # pages: an in-use block is movable exactly when it is on the LRU.
    if get_pageblock_migratetype(pgdat, start) == MIGRATE_CMA:
        return -1 if migratetype == MIGRATE_CMA else <long>start
    pfn = start
    while pfn < end:
        head = block_head(pgdat, pfn)
        if head < 0:
            return <long>pfn        # a hole: PageReserved
        p = pfn_to_page(pgdat, <unsigned long>head)
        if (p.flags & PG_allocated) and not (p.flags & PG_lru) and z.idx != ZONE_MOVABLE:
            return <long>pfn
        pfn = <unsigned long>head + block_size(pgdat, p)
    return -1


cdef void split_large_buddy(cpu_state *cs, pglist_data *pgdat, zone *z, unsigned long pfn,
                            int order) noexcept nogil:
    # Free a block larger than a pageblock back one pageblock at a time, each
    # on its own block's list (split_large_buddy).
    cdef unsigned long end = pfn + (1UL << order)
    while pfn < end:
        __free_one_page(cs, pgdat, pfn_to_page(pgdat, pfn), pfn, z, PAGEBLOCK_ORDER,
                        get_pageblock_migratetype(pgdat, pfn), False)
        pfn += PAGEBLOCK_NR_PAGES


cdef void move_freepages_block_isolate(cpu_state *cs, pglist_data *pgdat, zone *z, unsigned long start,
                                       int new_mt) noexcept nogil:
    """Retype a pageblock and move its free pages along; a free buddy larger than
    the block is split into pageblocks first (move_freepages_block_isolate)."""
    cdef long big = block_head(pgdat, start & ~((1UL << MAX_PAGE_ORDER) - 1))
    cdef page *p
    cdef int order
    if big >= 0:
        p = pfn_to_page(pgdat, <unsigned long>big)
        if (p.flags & PG_buddy) and <int>p.private > PAGEBLOCK_ORDER and \
                <unsigned long>big + (1UL << p.private) > start:
            order = <int>p.private
            del_page_from_free_list(p, z, order, p.mt)
            set_pageblock_migratetype(cs, pgdat, start, new_mt)
            split_large_buddy(cs, pgdat, z, <unsigned long>big, order)
            return
    __move_freepages_block(pgdat, z, start, new_mt)
    set_pageblock_migratetype(cs, pgdat, start, new_mt)


cdef long set_migratetype_isolate(cpu_state *cs, pglist_data *pgdat, unsigned long block, unsigned long start,
                                  unsigned long end, int migratetype) noexcept nogil:
    """Isolate the pageblock at block for the range [start, end)
    (set_migratetype_isolate): 0, or the blocking pfn + 1 (an unmovable page
    in the range's part of the block, or the block is already isolated)."""
    cdef zone *z = page_zone(pgdat, block)
    cdef long bad
    spin_lock_zone(cs, pgdat, z, LOCK_ISOLATION)
    if get_pageblock_migratetype(pgdat, block) == MIGRATE_ISOLATE:
        spin_unlock_zone(z)
        return <long>block + 1
    bad = has_unmovable_pages(pgdat, z, max(block, start), min(end, block + PAGEBLOCK_NR_PAGES), migratetype)
    if bad >= 0:
        spin_unlock_zone(z)
        return bad + 1
    move_freepages_block_isolate(cs, pgdat, z, block, MIGRATE_ISOLATE)
    z.nr_isolate_pageblock += 1
    spin_unlock_zone(z)
    return 0


cdef void unset_migratetype_isolate(cpu_state *cs, pglist_data *pgdat, unsigned long start,
                                    int migratetype) noexcept nogil:
    """Give an isolated pageblock back its type (unset_migratetype_isolate): a
    whole free pageblock is re-freed so it merges with its buddy, anything
    else moves back list by list."""
    cdef zone *z = page_zone(pgdat, start)
    cdef page *p = pfn_to_page(pgdat, start)
    spin_lock_zone(cs, pgdat, z, LOCK_ISOLATION)
    if (p.flags & PG_buddy) and <int>p.private == PAGEBLOCK_ORDER:
        __del_page_from_free_list(p, z, PAGEBLOCK_ORDER)
        set_pageblock_migratetype(cs, pgdat, start, migratetype)
        __free_one_page(cs, pgdat, p, start, z, PAGEBLOCK_ORDER, migratetype, False)
    else:
        __move_freepages_block(pgdat, z, start, migratetype)
        set_pageblock_migratetype(cs, pgdat, start, migratetype)
    z.nr_isolate_pageblock -= 1
    spin_unlock_zone(z)


cdef long start_isolate_page_range(cpu_state *cs, pglist_data *pgdat, unsigned long start, unsigned long end,
                                   int migratetype) noexcept nogil:
    """Isolate every pageblock of [start, end) (start_isolate_page_range).
    Returns -1, or the pfn that made a block refuse; then nothing stays isolated."""
    cdef unsigned long first = start & ~(PAGEBLOCK_NR_PAGES - 1), pfn = first
    cdef long bad = 0
    while pfn < end:
        bad = set_migratetype_isolate(cs, pgdat, pfn, start, end, migratetype)
        if bad:
            break
        pfn += PAGEBLOCK_NR_PAGES
    if bad:
        while pfn > first:
            pfn -= PAGEBLOCK_NR_PAGES
            unset_migratetype_isolate(cs, pgdat, pfn, migratetype)
    return bad - 1 if bad else -1


cdef void undo_isolate_page_range(cpu_state *cs, pglist_data *pgdat, unsigned long start, unsigned long end,
                                  int migratetype) noexcept nogil:
    """Give every pageblock of [start, end) back its type (undo_isolate_page_range)."""
    cdef unsigned long pfn = start & ~(PAGEBLOCK_NR_PAGES - 1)
    while pfn < end:
        unset_migratetype_isolate(cs, pgdat, pfn, migratetype)
        pfn += PAGEBLOCK_NR_PAGES


cdef int alloc_contig_migrate_range(cpu_state *cs, pglist_data *pgdat, unsigned long start, unsigned long end,
                                    unsigned int gfp, int cpu, list moved):
    """Migrate the movable (LRU, unpinned) blocks out of [start, end), lowest
    first (__alloc_contig_migrate_range), appending (old pfn, new pfn) to
    moved. Unlike the kernel, which retries a cluster of 32 pages 5 times
    before -EBUSY, migration stops at the first pinned block.
    Returns 0, -EBUSY or -ENOMEM."""
    cdef unsigned long pfn = start
    cdef long head, new
    cdef page *p
    while pfn < end:
        head = block_head(pgdat, pfn)
        p = pfn_to_page(pgdat, <unsigned long>head)
        pfn = <unsigned long>head + block_size(pgdat, p)
        if not (p.flags & PG_allocated) or not (p.flags & PG_lru):
            continue        # free, or not isolatable from the LRU: skipped
        if p._pincount:
            return -EBUSY
        new = migrate_folio(cs, pgdat, <unsigned long>head, gfp, False, cpu)
        if new < 0:
            return -ENOMEM
        moved.append((head, new))
    return 0


cdef long test_pages_isolated(pglist_data *pgdat, unsigned long start, unsigned long end) noexcept nogil:
    """-1 if every pageblock of [start, end) is isolated and every page in it
    is free in the buddy, else the first pfn that is not (test_pages_isolated)."""
    cdef unsigned long pfn = start & ~(PAGEBLOCK_NR_PAGES - 1)
    cdef long head
    cdef page *p
    while pfn < end:
        if get_pageblock_migratetype(pgdat, pfn) != MIGRATE_ISOLATE:
            return max(pfn, start)
        pfn += PAGEBLOCK_NR_PAGES
    pfn = start
    while pfn < end:
        head = block_head(pgdat, pfn)
        p = pfn_to_page(pgdat, <unsigned long>head)
        if not (p.flags & PG_buddy):
            return pfn
        pfn = <unsigned long>head + block_size(pgdat, p)
    return -1


cdef void free_isolated_range(cpu_state *cs, pglist_data *pgdat, zone *z, unsigned long pfn,
                              unsigned long end) noexcept nogil:
    # Give [pfn, end) of an isolated block back to the isolate lists, in the
    # largest aligned pieces.
    cdef int order
    while pfn < end:
        order = min(<int>MAX_PAGE_ORDER, __builtin_ctzl(pfn) if pfn else <int>MAX_PAGE_ORDER)
        while pfn + (1UL << order) > end:
            order -= 1
        __free_one_page(cs, pgdat, pfn_to_page(pgdat, pfn), pfn, z, order, MIGRATE_ISOLATE, False)
        pfn += 1UL << order


cdef void claim_range(pglist_data *pgdat, unsigned long pfn, unsigned long end, uint64_t owner) noexcept nogil:
    # Unlike the kernel, which hands back order-0 pages, the range is held as
    # the largest aligned allocated blocks, all with one owner token.
    cdef int order
    cdef page *p
    while pfn < end:
        order = min(<int>MAX_PAGE_ORDER, __builtin_ctzl(pfn) if pfn else <int>MAX_PAGE_ORDER)
        while pfn + (1UL << order) > end:
            order -= 1
        p = pfn_to_page(pgdat, pfn)
        p.flags = PG_allocated
        p._refcount = 1
        p._pincount = 0
        p.order = <uint8_t>order
        p.owner = owner
        p.private = 0
        p.cpu = -1
        pfn += 1UL << order


cdef void isolate_freepages_range(cpu_state *cs, pglist_data *pgdat, unsigned long start, unsigned long end,
                                  uint64_t owner) noexcept nogil:
    """Take the free pages of the isolated range [start, end) for owner; the parts
    of free blocks outside the range stay free (isolate_freepages_range and the
    free-back of alloc_contig_range). The caller has checked test_pages_isolated."""
    cdef zone *z = page_zone(pgdat, start)
    cdef unsigned long pfn = start, head, size
    cdef page *p
    spin_lock_zone(cs, pgdat, z, LOCK_ISOLATION)
    while pfn < end:
        head = <unsigned long>block_head(pgdat, pfn)
        p = pfn_to_page(pgdat, head)
        size = 1UL << p.private
        # Isolated free pages are not counted as free: nothing to account.
        __del_page_from_free_list(p, z, <int>p.private)
        free_isolated_range(cs, pgdat, z, head, start if head < start else head)
        free_isolated_range(cs, pgdat, z, end, head + size if head + size > end else end)
        pfn = head + size
    claim_range(pgdat, start, end, owner)
    spin_unlock_zone(z)


cdef void free_contig_range(cpu_state *cs, pglist_data *pgdat, unsigned long start, unsigned long end,
                            int cpu) noexcept nogil:
    """Free a range claimed by isolate_freepages_range block by block (free_contig_range)."""
    cdef unsigned long pfn = start
    cdef int order
    while pfn < end:
        order = pfn_to_page(pgdat, pfn).order
        __free_pages(cs, pgdat, pfn, order, cpu)
        pfn += 1UL << order
