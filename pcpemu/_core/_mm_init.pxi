# Boot (mm/mm_init.c, v6.10): the node's memory map and tables, each zone's
# free lists and pcp pagesets, the zonelists, and all memory freed to the
# buddy. Watermarks, lowmem reserves and pcp batch/high come in from
# pcpemu.kernel.watermark (ZoneParams), which derives them as the kernel does.

cdef size_t offset_of(void *field, void *base) noexcept:
    return <size_t>(<char *>field - <char *>base)


cdef size_t pcp_alloc_size(int nr_lists, int cacheline) noexcept:
    # roundup(offsetof(lists) + nr_lists * sizeof(list_head), cacheline): what
    # the kernel's ____cacheline_aligned_in_smp per-CPU array gives each pcp.
    cdef per_cpu_pages p
    cdef size_t size = offset_of(&p.lists[0], &p) + nr_lists * sizeof(list_head)
    return (size + cacheline - 1) // cacheline * cacheline


cdef int alloc_node_mem_map(pglist_data *pgdat, unsigned long nr_pages, int nr_cpus) noexcept:
    """The struct page array, pageblock and zone maps, zones and CPU counters
    (alloc_node_mem_map and the boot allocations around it); 0 or PE_NOMEM.
    What was allocated before a failure is freed by free_node_mem_map."""
    cdef size_t mem_bytes = nr_pages * sizeof(page)
    cdef unsigned long nblocks = (nr_pages >> MAX_PAGE_ORDER) + 1
    cdef void *zones = NULL
    # The page array is mmap'd: untouched pages cost nothing until used.
    # No MADV_HUGEPAGE: boot touches one struct page in 1024, and huge
    # pages would make it zero the whole array (measured 2.5 s vs 0.3 s
    # for 64 GiB).
    pgdat.mem_map = <page *>mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if <void *>pgdat.mem_map == MAP_FAILED:
        pgdat.mem_map = NULL
        return PE_NOMEM
    pgdat.node_spanned_pages = nr_pages
    pgdat.pageblock_mt = <uint8_t *>malloc((nr_pages >> PAGEBLOCK_ORDER) + 1)
    pgdat.block_zone = <uint8_t *>malloc(nblocks)
    if posix_memalign(&zones, 64, MAX_NR_ZONES * sizeof(zone)) == 0:
        memset(zones, 0, MAX_NR_ZONES * sizeof(zone))   # free_node_mem_map reads it after any failure below
        pgdat.node_zones = <zone *>zones
    if posix_memalign(<void **>&pgdat.cpu, 64, nr_cpus * sizeof(cpu_state)) != 0:
        pgdat.cpu = NULL
    if pgdat.pageblock_mt == NULL or pgdat.block_zone == NULL or pgdat.node_zones == NULL or pgdat.cpu == NULL:
        return PE_NOMEM
    memset(pgdat.block_zone, 0xff, nblocks)
    memset(pgdat.cpu, 0, nr_cpus * sizeof(cpu_state))
    pgdat.nr_cpus = nr_cpus
    return PE_OK


cdef void free_node_mem_map(pglist_data *pgdat) noexcept nogil:
    cdef int zi
    if pgdat.mem_map != NULL:
        munmap(pgdat.mem_map, pgdat.node_spanned_pages * sizeof(page))
    if pgdat.node_zones != NULL:
        for zi in range(MAX_NR_ZONES):
            free(pgdat.node_zones[zi].per_cpu_pageset)
    free(pgdat.node_zones)
    free(pgdat.pageblock_mt)
    free(pgdat.block_zone)
    free(pgdat.cpu)
    pgdat.mem_map = NULL
    pgdat.node_zones = NULL
    pgdat.pageblock_mt = NULL
    pgdat.block_zone = NULL
    pgdat.cpu = NULL


cdef void zone_init_free_lists(zone *z) noexcept nogil:
    cdef int order, mt
    for order in range(NR_PAGE_ORDERS):
        for mt in range(MIGRATE_TYPES):
            INIT_LIST_HEAD(&z.free_area[order].free_list[mt])
        z.free_area[order].nr_free = 0


cdef void init_zone(zone *z, zp):
    # zone_init_internals and the watermarks of setup_per_zone_wmarks, from
    # the ZoneParams that pcpemu.kernel.watermark computed.
    cdef int i
    z.idx = zp.idx
    for i in range(NR_WMARK):
        z._watermark[i] = zp.watermark[i]
    for i in range(MAX_NR_ZONES):
        z.lowmem_reserve[i] = zp.lowmem_reserve[i]
    z.zone_start_pfn = zp.start_pfn
    z.spanned_pages = zp.spanned
    z.present_pages = zp.present
    z.managed_pages = zp.managed
    z.managed_start = zp.free_start
    z.managed_end = zp.free_start + zp.managed
    z.cma_pages = zp.cma_pages
    z.pageset_batch = zp.batch
    z.pageset_high_min = zp.high_min
    z.pageset_high_max = zp.high_max
    zone_init_free_lists(z)


cdef void per_cpu_pages_init(per_cpu_pages *pcp, zone *z, int nr_lists, bint free_high_batch) noexcept nogil:
    # per_cpu_pages_init, then pageset_update with the zone's batch and high
    # bounds; PCPF_FREE_HIGH_BATCH as zone_pcp_update_cacheinfo sets it.
    cdef int i
    for i in range(nr_lists):
        INIT_LIST_HEAD(&pcp.lists[i])
    pcp.batch = z.pageset_batch
    pcp.high_min = z.pageset_high_min
    pcp.high_max = z.pageset_high_max
    if free_high_batch:
        pcp.flags = PCPF_FREE_HIGH_BATCH


cdef void build_zonelists(pglist_data *pgdat) noexcept nogil:
    # One node: each zonelist holds the populated zones from its highest
    # zone down to DMA (build_zonerefs_node).
    cdef int hi, zi, k
    for hi in range(MAX_NR_ZONES):
        k = 0
        for zi in range(hi, -1, -1):
            if pgdat.node_zones[zi].managed_pages:
                pgdat.zonelists[hi][k] = &pgdat.node_zones[zi]
                k += 1
        pgdat.zonelists[hi][k] = NULL


cdef void __free_pages_memory(pglist_data *pgdat, zone *z, unsigned long pfn, unsigned long end,
                              int max_order) noexcept nogil:
    # Free [pfn, end) in the largest aligned blocks up to max_order
    # (__free_pages_memory), each to the tail of its list, under zone->lock as
    # __free_pages_core -> __free_pages_ok takes it. The lock is taken without
    # counting it, so that boot leaves every counter at 0.
    cdef int order
    z.lock.locked = 1
    while pfn < end:
        order = max_order if pfn == 0 else min(max_order, __builtin_ctzl(pfn))
        while pfn + (1UL << order) > end:
            order -= 1
        __free_one_page(NULL, pgdat, pfn_to_page(pgdat, pfn), pfn, z, order,
                        get_pageblock_migratetype(pgdat, pfn), True)
        pfn += 1UL << order
    spin_unlock_zone(z)


cdef void pageset_update_zone(pglist_data *pgdat, zone *z, int batch, int high_min, int high_max) noexcept nogil:
    # pageset_update on every CPU: batch, high_min and high_max; pcp->high is
    # left for the next clamp (zone_set_pageset_high_and_batch).
    cdef int cpu
    cdef per_cpu_pages *pcp
    for cpu in range(pgdat.nr_cpus):
        pcp = z.per_cpu_pageset[cpu]
        pcp.batch, pcp.high_min, pcp.high_max = batch, high_min, high_max


cdef void cma_activate_area(pglist_data *pgdat, zone *z, unsigned long start, unsigned long end,
                            boot_pageset) noexcept:
    # core_initcall cma_activate_area: each pageblock, in rising pfn order,
    # becomes CMA and is freed as one order-9 block by the boot CPU
    # (init_cma_reserved_pageblock -> __free_pages -> free_unref_page), with
    # the pcp values of that moment: batch and high from the managed pages
    # without CMA and the low watermark still 0 (boot_pageset). A drain puts
    # the blocks at the heads of the CMA lists; the last block can stay on
    # CPU 0's pcp list. postcore_initcall init_per_zone_wmark_min then sets the
    # watermarks, and zone_pcp_update the final batch and high limits.
    cdef unsigned long pfn
    cdef int batch = z.pageset_batch, high_min = z.pageset_high_min, high_max = z.pageset_high_max
    pageset_update_zone(pgdat, z, boot_pageset[0], boot_pageset[1], boot_pageset[2])
    for pfn in range(start, end, PAGEBLOCK_NR_PAGES):
        set_pageblock_migratetype(NULL, pgdat, pfn, MIGRATE_CMA)
        free_unref_page(&pgdat.cpu[0], pgdat, pfn_to_page(pgdat, pfn), pfn, PAGEBLOCK_ORDER, 0)
    pageset_update_zone(pgdat, z, batch, high_min, high_max)


cdef void memmap_init(pglist_data *pgdat, zones, unsigned long cma_base, unsigned long cma_pages, boot_pageset):
    # memmap_init() sets a pageblock Movable at each pageblock-aligned pfn of
    # memory; other blocks keep type 0, Unmovable (a block whose first pfn is
    # no memory, as pfn 0 of x86_64's DMA zone). The managed pages but CMA are
    # freed to the tails of the buddy lists from low to high pfn in the largest
    # aligned blocks (memblock_free_all -> __free_pages_memory); then
    # cma_activate_area releases the CMA area.
    cdef unsigned long b, cma_lo, cma_hi, start, end
    cdef zone *z
    memset(pgdat.pageblock_mt, MIGRATE_UNMOVABLE, (pgdat.node_spanned_pages >> PAGEBLOCK_ORDER) + 1)
    for zp in zones:
        if zp.managed:
            end = zp.free_start + zp.managed
            for b in range((zp.start_pfn + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER,
                           (end + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER):
                pgdat.pageblock_mt[b] = MIGRATE_MOVABLE
    for zp in zones:
        if not zp.managed:
            continue
        start, end = zp.free_start, zp.free_start + zp.managed
        # Only the managed pages' blocks: zones may share a MAX_ORDER block
        # where the pages of one of them are never seen by the buddy.
        for b in range(start >> MAX_PAGE_ORDER, ((end - 1) >> MAX_PAGE_ORDER) + 1):
            pgdat.block_zone[b] = zp.idx
        z = &pgdat.node_zones[<int>zp.idx]
        cma_lo = min(max(cma_base, start), end)
        cma_hi = min(max(cma_base + cma_pages, start), end)
        __free_pages_memory(pgdat, z, start, cma_lo, MAX_PAGE_ORDER)
        __free_pages_memory(pgdat, z, cma_hi, end, MAX_PAGE_ORDER)
        if cma_hi > cma_lo:
            cma_activate_area(pgdat, z, cma_lo, cma_hi, boot_pageset)
    # Boot is not part of any measured workload.
    memset(pgdat.cpu, 0, pgdat.nr_cpus * sizeof(cpu_state))


cdef int free_area_init(pglist_data *pgdat, void **pcp_mem, size_t pcp_size, zones, int nr_lists,
                        bint free_high_batch):
    """Each zone's fields, free lists and pcp pagesets (free_area_init_core,
    setup_zone_pageset), one cacheline-aligned pcp per CPU per populated zone
    in pcp_mem; then the zonelists. 0 or PE_NOMEM."""
    cdef int cpu, i = 0, nr_cpus = pgdat.nr_cpus
    cdef zone *z
    cdef per_cpu_pages *pcp
    populated = [zp for zp in zones if zp.managed]
    cdef size_t total = max(1, len(populated)) * nr_cpus * pcp_size
    if posix_memalign(pcp_mem, 1 << pgdat.cacheline_shift, total) != 0:
        pcp_mem[0] = NULL
        return PE_NOMEM
    memset(pcp_mem[0], 0, total)
    for zp in zones:
        z = &pgdat.node_zones[<int>zp.idx]
        init_zone(z, zp)
        z.rules = pgdat.rules
        if not zp.managed:
            continue
        z.per_cpu_pageset = <per_cpu_pages **>malloc(nr_cpus * sizeof(void *))
        if z.per_cpu_pageset == NULL:
            return PE_NOMEM
        for cpu in range(nr_cpus):
            pcp = <per_cpu_pages *>(<char *>pcp_mem[0] + i * pcp_size)
            i += 1
            per_cpu_pages_init(pcp, z, nr_lists, free_high_batch)
            z.per_cpu_pageset[cpu] = pcp
    build_zonelists(pgdat)
    return PE_OK
