# Machine.check(): every invariant of the allocator state, first failure named.

from libc.stdio cimport snprintf


cdef inline bint _may_mix(int list_mt, int block_mt) noexcept nogil:
    # v6.9 rules: a free list may hold pages of another pageblock type, but
    # CMA and isolated pages never leave (or enter) their own lists.
    return (list_mt != MIGRATE_CMA and list_mt != MIGRATE_ISOLATE and block_mt != MIGRATE_CMA
            and block_mt != MIGRATE_ISOLATE)


cdef int _check_free_lists(pglist_data *pgdat, zone *z, char *buf, size_t n,
                           unsigned long *nr_blocks) noexcept nogil:
    cdef int o, mt, bmt
    cdef unsigned long blocks, pfn, buddy_pfn
    cdef long free_pages = 0, free_cma = 0, free_highatomic = 0
    cdef list_head *h
    cdef list_head *e
    cdef page *p
    cdef page *buddy
    for o in range(NR_PAGE_ORDERS):
        blocks = 0
        for mt in range(MIGRATE_TYPES):
            h = &z.free_area[o].free_list[mt]
            e = h.next
            while e != h:
                p = lru_to_page(e)
                pfn = page_to_pfn(pgdat, p)
                if not (p.flags & PG_buddy) or <int>p.private != o:
                    snprintf(buf, n, "zone %d: pfn %#lx on the order-%d free list has flags %#lx order %lu",
                             z.idx, pfn, o, p.flags, p.private)
                    return -1
                if pfn & ((1UL << o) - 1) or pfn < z.zone_start_pfn or pfn + (1UL << o) > z.zone_start_pfn + z.spanned_pages:
                    snprintf(buf, n, "zone %d: free block %#lx order %d is misaligned or outside the zone", z.idx, pfn, o)
                    return -1
                bmt = get_pageblock_migratetype(pgdat, pfn)
                if p.mt != mt or (bmt != mt and (pgdat.freelist_hygiene or not _may_mix(mt, bmt))):
                    snprintf(buf, n, "zone %d: free block %#lx order %d on the type-%d list (recorded %d), "
                             "its pageblock is type %d", z.idx, pfn, o, mt, p.mt, bmt)
                    return -1
                # Within a pageblock buddies always merge. Across pageblocks
                # the kernel moves free blocks between lists without merging
                # them (isolation, unreserve_highatomic_pageblock, steals), so
                # free buddies of order >= pageblock_order may stay apart.
                if o < PAGEBLOCK_ORDER and mt != MIGRATE_ISOLATE:
                    buddy_pfn = pfn ^ (1UL << o)
                    buddy = pfn_to_page(pgdat, buddy_pfn)
                    if (buddy.flags & PG_buddy) and <int>buddy.private == o:
                        snprintf(buf, n, "zone %d: free buddies %#lx and %#lx of order %d are not merged",
                                 z.idx, pfn, buddy_pfn, o)
                        return -1
                if mt != MIGRATE_ISOLATE:
                    free_pages += 1L << o
                    if mt == MIGRATE_CMA:
                        free_cma += 1L << o
                    elif mt == MIGRATE_HIGHATOMIC:
                        free_highatomic += 1L << o
                blocks += 1
                e = e.next
        if blocks != z.free_area[o].nr_free:
            snprintf(buf, n, "zone %d: free_area[%d].nr_free is %lu but its lists hold %lu blocks",
                     z.idx, o, z.free_area[o].nr_free, blocks)
            return -1
        nr_blocks[0] += blocks
    if free_pages != z.vm_stat[<int>NR_FREE_PAGES] or free_cma != z.vm_stat[<int>NR_FREE_CMA_PAGES]:
        snprintf(buf, n, "zone %d: NR_FREE_PAGES %ld NR_FREE_CMA_PAGES %ld, but the free lists hold %ld and %ld",
                 z.idx, z.vm_stat[<int>NR_FREE_PAGES], z.vm_stat[<int>NR_FREE_CMA_PAGES], free_pages, free_cma)
        return -1
    if free_highatomic != <long>z.nr_free_highatomic:
        snprintf(buf, n, "zone %d: nr_free_highatomic %lu, but the highatomic free lists hold %ld",
                 z.idx, z.nr_free_highatomic, free_highatomic)
        return -1
    return 0


cdef int _check_pcp(pglist_data *pgdat, zone *z, char *buf, size_t n, unsigned long *nr_blocks) noexcept nogil:
    cdef int cpu, i, order
    cdef long count
    cdef per_cpu_pages *pcp
    cdef list_head *h
    cdef list_head *e
    cdef page *p
    cdef unsigned long pfn
    for cpu in range(pgdat.nr_cpus):
        pcp = z.per_cpu_pageset[cpu]
        count = 0
        for i in range(pgdat.nr_pcp_lists):
            order = pgdat.pindex_order[i]
            h = &pcp.lists[i]
            e = h.next
            while e != h:
                p = lru_to_page(e)
                pfn = page_to_pfn(pgdat, p)
                if p.flags != PG_pcp or p.cpu != cpu or p.pindex != i:
                    snprintf(buf, n, "zone %d cpu %d: pfn %#lx on pcp list %d has flags %#lx cpu %d pindex %d",
                             z.idx, cpu, pfn, i, p.flags, p.cpu, p.pindex)
                    return -1
                if pfn & ((1UL << order) - 1) or page_zone(pgdat, pfn) != z:
                    snprintf(buf, n, "zone %d cpu %d: pcp block %#lx order %d is misaligned or in another zone",
                             z.idx, cpu, pfn, order)
                    return -1
                count += 1L << order
                nr_blocks[0] += 1
                e = e.next
        # pcp->high is not checked against [high_min, high_max]: zone_pcp_update
        # leaves it for the next clamp (nr_pcp_high, nr_pcp_alloc) to correct.
        if count != pcp.count:
            snprintf(buf, n, "zone %d cpu %d: pcp->count is %d but its lists hold %ld pages", z.idx, cpu, pcp.count, count)
            return -1
    return 0


cdef int _check_coverage(pglist_data *pgdat, zone *z, char *buf, size_t n,
                         unsigned long *nr_heads) noexcept nogil:
    # Every managed page of the zone belongs to exactly one block: free, on a
    # pcp list, or allocated; the pages inside a block carry no state.
    cdef unsigned long pfn = z.managed_start, end = z.managed_end, size, q
    cdef page *p
    while pfn < end:
        p = pfn_to_page(pgdat, pfn)
        if p.flags & PG_buddy:
            size = 1UL << p.private
            nr_heads[0] += 1
        elif p.flags & PG_pcp:
            size = 1UL << pgdat.pindex_order[p.pindex]
            nr_heads[0] += 1
        elif p.flags & PG_allocated:
            size = 1UL << p.order
            if p._refcount < 1 or p.owner == 0:
                snprintf(buf, n, "allocated block %#lx has refcount %d owner %lu", pfn, p._refcount, p.owner)
                return -1
        else:
            snprintf(buf, n, "zone %d: pfn %#lx is in no block (not free, not on a pcp list, not allocated)",
                     z.idx, pfn)
            return -1
        if pfn & (size - 1) or pfn + size > end:
            snprintf(buf, n, "zone %d: block %#lx of %lu pages is misaligned or crosses the zone end", z.idx, pfn, size)
            return -1
        for q in range(pfn + 1, pfn + size):
            if pfn_to_page(pgdat, q).flags:
                snprintf(buf, n, "pfn %#lx inside the block at %#lx has flags %#lx", q, pfn,
                         pfn_to_page(pgdat, q).flags)
                return -1
        pfn += size
    return 0


cdef int check_node(pglist_data *pgdat, char *buf, size_t n) noexcept nogil:
    cdef int zi
    cdef zone *z
    cdef unsigned long listed, heads
    for zi in range(MAX_NR_ZONES):
        z = &pgdat.node_zones[zi]
        if not z.managed_pages:
            continue
        listed = 0
        heads = 0
        if _check_free_lists(pgdat, z, buf, n, &listed) or _check_pcp(pgdat, z, buf, n, &listed):
            return -1
        if _check_coverage(pgdat, z, buf, n, &heads):
            return -1
        if heads != listed:
            snprintf(buf, n, "zone %d: %lu free or pcp block heads, but %lu blocks on lists", zi, heads, listed)
            return -1
    return 0
