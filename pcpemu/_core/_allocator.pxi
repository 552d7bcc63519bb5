# The Python face of the core: boot, checked entry points, views for procfs
# and tests. Everything here holds the GIL; the work it calls does not need it.

from .errors import (BadOrderError, BadPfnError, DoubleFreeError, NotAllocatedError,
                     OpStreamError, PcpemuError, WrongOrderError)

_ITEM_NAMES = ("ALLOC_FAILED", "ZONE_LOCK",
               "ZONE_LOCK_PAGES", "PCP_REFILL", "PCP_REFILL_PAGES", "PCP_DRAIN", "PCP_DRAIN_PAGES",
               "PCP_TRYLOCK_FAIL", "PCP_HIGH_CHANGE", "PGALLOC_FALLBACK", "PGSTEAL_BLOCK",
               "PAGEBLOCK_CHANGE", "CMA_TO_NONMOVABLE", "ZONE_BELOW_HIGH_SET", "WMARK_BOOST",
               "SLOWPATH", "SLOWPATH_DRAIN", "DRAIN_ALL", "PCP_DECAY", "ZONE_FALLBACK", "FREE_SKIPPED",
               "ZONE_LOCK_CONTENDED", "ZONE_LOCK_SPINS")
assert len(_ITEM_NAMES) == NR_PCPEMU_ITEMS
ITEM_NAMES = _ITEM_NAMES
LOCK_SITE_NAMES = ("rmqueue_bulk", "free_pcppages_bulk", "free_one_page", "rmqueue_buddy", "isolation",
                   "highatomic")
assert len(LOCK_SITE_NAMES) == NR_LOCK_SITES
PCP_OP_NAMES = ("alloc", "free", "drain")


cdef void _free_range(pglist_data *pgdat, zone *z, unsigned long pfn, unsigned long end,
                      int max_order) noexcept nogil:
    # Free [pfn, end) in the largest aligned blocks up to max_order
    # (__free_pages_memory), each to the tail of its list.
    cdef int order
    while pfn < end:
        order = max_order if pfn == 0 else min(max_order, __builtin_ctzl(pfn))
        while pfn + (1UL << order) > end:
            order -= 1
        __free_one_page(NULL, pgdat, pfn_to_page(pgdat, pfn), pfn, z, order,
                        get_pageblock_migratetype(pgdat, pfn), True)
        pfn += 1UL << order


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


cdef size_t _offset(void *field, void *base):
    return <size_t>(<char *>field - <char *>base)


def cpu_state_dtype():
    """numpy dtype of struct cpu_state, with the C offsets."""
    cdef cpu_state d
    cdef void *b = &d
    fields = [  # (name, shape, offset); every field is uint64_t
        ("touched", (), _offset(&d.touched, b)),
        ("item", (NR_PCPEMU_ITEMS,), _offset(&d.item, b)),
        ("alloc", (NR_PAGE_ORDERS, MIGRATE_TYPES), _offset(&d.alloc, b)),
        ("alloc_fail", (NR_PAGE_ORDERS, MIGRATE_TYPES), _offset(&d.alloc_fail, b)),
        ("free", (NR_PAGE_ORDERS,), _offset(&d.free, b)),
        ("pcp_hit", (NR_PAGE_ORDERS,), _offset(&d.pcp_hit, b)),
        ("pcp_miss", (NR_PAGE_ORDERS,), _offset(&d.pcp_miss, b)),
        ("pcp_refill_blocks", (NR_PAGE_ORDERS,), _offset(&d.pcp_refill_blocks, b)),
        ("cma_pages_to", (MIGRATE_TYPES,), _offset(&d.cma_pages_to, b)),
        ("lock_site", (NR_LOCK_SITES,), _offset(&d.lock_site, b)),
        ("lock_site_pages", (NR_LOCK_SITES,), _offset(&d.lock_site_pages, b)),
        ("cl_hist", (NR_PCP_OPS, CL_HIST), _offset(&d.cl_hist, b)),
        ("owner_seq", (), _offset(&d.owner_seq, b)),
    ]
    return np.dtype({"names": [f[0] for f in fields], "formats": [("<u8", f[1]) for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": sizeof(cpu_state)})


CPU_STATE_DTYPE = cpu_state_dtype()
OP_DTYPE = np.dtype({"names": ["op", "order", "cpu", "gfp", "slot"],
                     "formats": ["u1", "u1", "<u2", "<u4", "<i8"],
                     "offsets": [0, 1, 2, 4, 8], "itemsize": 16})
assert OP_DTYPE.itemsize == sizeof(pcpemu_op)


cdef size_t pcp_alloc_size(int nr_lists, int cacheline):
    # roundup(offsetof(lists) + nr_lists * sizeof(list_head), cacheline): what
    # the kernel's ____cacheline_aligned_in_smp per-CPU array gives each pcp.
    cdef per_cpu_pages p
    cdef size_t size = _offset(&p.lists[0], &p) + nr_lists * sizeof(list_head)
    return (size + cacheline - 1) // cacheline * cacheline


def pcp_struct_layout(int nr_lists, int cacheline=64):
    """Offsets of the compiled struct per_cpu_pages and the size pcpemu allocates.

    :return: ``{"offsets": {field: offset}, "sizeof_fixed": offsetof(lists),
        "sizeof_list_head": 16, "alloc_size": roundup(..., cacheline)}``
    """
    cdef per_cpu_pages p
    cdef void *b = &p
    fixed = _offset(&p.lists[0], b)
    offsets = {"lock": _offset(&p.lock, b), "count": _offset(&p.count, b), "high": _offset(&p.high, b),
               "high_min": _offset(&p.high_min, b), "high_max": _offset(&p.high_max, b),
               "batch": _offset(&p.batch, b), "flags": _offset(&p.flags, b),
               "alloc_factor": _offset(&p.alloc_factor, b), "expire": _offset(&p.expire, b),
               "free_count": _offset(&p.free_count, b), "lists": fixed}
    return {"offsets": offsets, "sizeof_fixed": fixed, "sizeof_list_head": sizeof(list_head),
            "alloc_size": pcp_alloc_size(nr_lists, cacheline)}


def _raise_code(int code, unsigned long pfn, int order, unsigned long head, str what="free_pages"):
    if code == PE_BAD_PFN:
        raise BadPfnError(f"{what}: pfn {pfn:#x} is outside the emulated memory")
    if code == PE_BAD_ORDER:
        raise BadOrderError(f"{what}: order {order} is outside 0..{MAX_PAGE_ORDER}")
    if code == PE_DOUBLE_FREE:
        raise DoubleFreeError(f"{what}: pfn {pfn:#x} is already free (block at {head:#x})")
    if code == PE_NOT_ALLOCATED:
        raise NotAllocatedError(f"{what}: pfn {pfn:#x} was never allocated")
    if code == PE_TAIL_PAGE:
        raise NotAllocatedError(f"{what}: pfn {pfn:#x} is inside the block allocated at {head:#x}, not its head")
    if code == PE_WRONG_ORDER:
        raise WrongOrderError(f"{what}: pfn {pfn:#x} was allocated with another order than {order}")
    if code == PE_PINNED:
        raise NotAllocatedError(f"{what}: pfn {pfn:#x} is pinned (FOLL_PIN); unpin it first")
    if code == PE_BAD_CPU:
        raise PcpemuError(f"{what}: no such CPU")
    raise PcpemuError(f"{what}: error code {code}")


cdef class Allocator:
    """One emulated node: its pages, zones, per-CPU pcp lists and counters."""

    cdef pglist_data pgdat
    cdef void *zones_mem
    cdef void *pcp_mem
    cdef size_t pcp_size

    def __cinit__(self):
        self.zones_mem = NULL
        self.pcp_mem = NULL
        self.pgdat.mem_map = NULL
        self.pgdat.pageblock_mt = NULL
        self.pgdat.block_zone = NULL
        self.pgdat.cpu = NULL

    def __init__(self, unsigned long nr_pages, zones, unsigned long cma_base, unsigned long cma_pages,
                 int nr_cpus, pindex, pindex_order, int cacheline, long boost_factor,
                 int batch_scale_max, bint pcp_cma, bint free_high_batch):
        cdef pglist_data *pgdat = &self.pgdat
        cdef size_t mem_bytes = nr_pages * sizeof(page)
        cdef int zi, cpu, i, nr_lists = len(pindex_order), order, mt
        cdef zone *z
        cdef per_cpu_pages *pcp
        cdef unsigned long nblocks
        if nr_lists > MAX_PCP_LISTS:
            raise PcpemuError(f"{nr_lists} pcp lists exceed the emulator's bound of {MAX_PCP_LISTS}")
        memset(pgdat, 0, sizeof(pglist_data))
        pgdat.node_spanned_pages = nr_pages
        pgdat.nr_cpus = nr_cpus
        pgdat.nr_pcp_lists = nr_lists
        pgdat.cacheline_shift = (<unsigned long>cacheline).bit_length() - 1
        pgdat.pcp_batch_scale_max = batch_scale_max
        pgdat.watermark_boost_factor = boost_factor
        pgdat.pcp_cma = pcp_cma
        pgdat.next_owner = 1ULL << 62      # tokens pcpemu makes; callers' own are below
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                pgdat.pindex[order][mt] = pindex[order][mt]
        for i in range(nr_lists):
            pgdat.pindex_order[i] = pindex_order[i]
        # The page array is mmap'd: untouched pages cost nothing until used.
        # No MADV_HUGEPAGE: boot touches one struct page in 1024, and huge
        # pages would make it zero the whole array (measured 2.5 s vs 0.3 s
        # for 64 GiB).
        pgdat.mem_map = <page *>mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if <void *>pgdat.mem_map == MAP_FAILED:
            pgdat.mem_map = NULL
            raise MemoryError(f"cannot map {mem_bytes} bytes for {nr_pages} struct page mirrors")
        pgdat.pageblock_mt = <uint8_t *>malloc((nr_pages >> PAGEBLOCK_ORDER) + 1)
        nblocks = (nr_pages >> MAX_PAGE_ORDER) + 1
        pgdat.block_zone = <uint8_t *>malloc(nblocks)
        if posix_memalign(&self.zones_mem, 64, MAX_NR_ZONES * sizeof(zone)) != 0:
            self.zones_mem = NULL
        else:
            memset(self.zones_mem, 0, MAX_NR_ZONES * sizeof(zone))     # __dealloc__ reads it
        if posix_memalign(<void **>&pgdat.cpu, 64, nr_cpus * sizeof(cpu_state)) != 0:
            pgdat.cpu = NULL
        if pgdat.pageblock_mt == NULL or pgdat.block_zone == NULL or self.zones_mem == NULL or pgdat.cpu == NULL:
            raise MemoryError("cannot allocate the node's tables")
        memset(pgdat.block_zone, 0xff, nblocks)
        memset(pgdat.cpu, 0, nr_cpus * sizeof(cpu_state))
        pgdat.node_zones = <zone *>self.zones_mem
        self.pcp_size = pcp_alloc_size(nr_lists, cacheline)
        populated = [zp for zp in zones if zp.managed]
        if posix_memalign(&self.pcp_mem, cacheline, max(1, len(populated)) * nr_cpus * self.pcp_size) != 0:
            self.pcp_mem = NULL
            raise MemoryError("cannot allocate the pcp lists")
        memset(self.pcp_mem, 0, max(1, len(populated)) * nr_cpus * self.pcp_size)
        i = 0
        for zp in zones:
            z = &pgdat.node_zones[zp.idx]
            self._init_zone(z, zp)
            if not zp.managed:
                continue
            z.per_cpu_pageset = <per_cpu_pages **>malloc(nr_cpus * sizeof(void *))
            if z.per_cpu_pageset == NULL:
                raise MemoryError("cannot allocate the pcp pointers")
            for cpu in range(nr_cpus):
                pcp = <per_cpu_pages *>(<char *>self.pcp_mem + i * self.pcp_size)
                i += 1
                for mt in range(nr_lists):
                    INIT_LIST_HEAD(&pcp.lists[mt])
                pcp.batch = zp.batch
                pcp.high_min = zp.high_min
                pcp.high_max = zp.high_max
                if free_high_batch:
                    pcp.flags = PCPF_FREE_HIGH_BATCH
                z.per_cpu_pageset[cpu] = pcp
        build_zonelists(pgdat)
        self._memmap_init(zones, cma_base, cma_pages)

    cdef void _init_zone(self, zone *z, zp):
        cdef int i, mt
        z.idx = zp.idx
        for i in range(4):
            z._watermark[i] = zp.watermark[i]
        for i in range(MAX_NR_ZONES):
            z.lowmem_reserve[i] = zp.lowmem_reserve[i]
        z.zone_start_pfn = zp.start_pfn
        z.spanned_pages = zp.spanned
        z.present_pages = zp.managed
        z.managed_pages = zp.managed
        z.cma_pages = zp.cma_pages
        z.pageset_batch = zp.batch
        z.pageset_high_min = zp.high_min
        z.pageset_high_max = zp.high_max
        for i in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                INIT_LIST_HEAD(&z.free_area[i].free_list[mt])

    cdef void _memmap_init(self, zones, unsigned long cma_base, unsigned long cma_pages):
        # Every pageblock starts Movable, the CMA range CMA; then all memory
        # is freed to the buddy from low to high pfn in the largest aligned
        # blocks (memmap_init, cma_activate_area, __free_pages_memory).
        # Unlike the kernel, CMA pageblocks are released straight into the
        # buddy too, not through free_unref_page.
        cdef pglist_data *pgdat = &self.pgdat
        cdef unsigned long b, cma_lo, cma_hi
        cdef int zi
        memset(pgdat.pageblock_mt, MIGRATE_MOVABLE, (pgdat.node_spanned_pages >> PAGEBLOCK_ORDER) + 1)
        for b in range(cma_base >> PAGEBLOCK_ORDER, (cma_base + cma_pages) >> PAGEBLOCK_ORDER):
            pgdat.pageblock_mt[b] = MIGRATE_CMA
        for zp in zones:
            if not zp.managed:
                continue
            for b in range(zp.start_pfn >> MAX_PAGE_ORDER, ((zp.start_pfn + zp.spanned - 1) >> MAX_PAGE_ORDER) + 1):
                pgdat.block_zone[b] = zp.idx
            zi = zp.idx
            end = zp.start_pfn + zp.spanned
            # The CMA area is freed apart, a pageblock at a time, as
            # cma_activate_area() does after the rest of memory.
            cma_lo = min(max(cma_base, zp.start_pfn), end)
            cma_hi = min(max(cma_base + cma_pages, zp.start_pfn), end)
            for pfn, end, max_order in ((zp.start_pfn, cma_lo, MAX_PAGE_ORDER), (cma_hi, end, MAX_PAGE_ORDER),
                                        (cma_lo, cma_hi, PAGEBLOCK_ORDER)):
                _free_range(pgdat, &pgdat.node_zones[zi], pfn, end, max_order)

    def __dealloc__(self):
        # Also after an __init__ that raised half-way: through zones_mem, not
        # pgdat.node_zones, which is set only once every table exists.
        cdef int zi
        cdef zone *zones = <zone *>self.zones_mem
        if self.pgdat.mem_map != NULL:
            munmap(self.pgdat.mem_map, self.pgdat.node_spanned_pages * sizeof(page))
        if zones != NULL:
            for zi in range(MAX_NR_ZONES):
                free(zones[zi].per_cpu_pageset)
        free(self.zones_mem)
        free(self.pcp_mem)
        free(self.pgdat.pageblock_mt)
        free(self.pgdat.block_zone)
        free(self.pgdat.cpu)
        trace_free(&self.pgdat)

    # ---- entry points ----

    def alloc_pages(self, unsigned int gfp, int order, int cpu, uint64_t owner=0):
        """Allocate; the pfn of the block or -1. Arguments are checked by the caller."""
        cdef page *p
        cdef alloc_context ac
        if owner == 0:
            owner = self.pgdat.next_owner
            self.pgdat.next_owner += 1
        with nogil:
            prepare_alloc_pages(&self.pgdat, gfp, &ac)
            p = __alloc_pages(&self.pgdat.cpu[cpu], &self.pgdat, &ac, order, cpu, owner)
        return -1 if p == NULL else <long>page_to_pfn(&self.pgdat, p)

    def free_pages(self, unsigned long pfn, int order, int cpu):
        """Free an allocated block; raises (leaving everything unchanged) if it cannot be."""
        cdef unsigned long head = pfn
        cdef int code = check_free(&self.pgdat, pfn, order, &head)
        if code:
            _raise_code(code, pfn, order, head)
        with nogil:
            __free_pages(&self.pgdat.cpu[cpu], &self.pgdat, pfn, order, cpu)

    def drain_pages(self, int cpu, int by_cpu):
        drain_pages(&self.pgdat.cpu[by_cpu], &self.pgdat, cpu)

    def drain_all_pages(self, int zone_idx, int by_cpu):
        drain_all_pages(&self.pgdat.cpu[by_cpu], &self.pgdat, zone_idx)

    def decay_pcp_high(self, int cpu):
        cdef int zi
        for zi in range(MAX_NR_ZONES):
            if self.pgdat.node_zones[zi].per_cpu_pageset != NULL:
                decay_pcp_high(&self.pgdat.cpu[cpu], &self.pgdat, &self.pgdat.node_zones[zi],
                               self.pgdat.node_zones[zi].per_cpu_pageset[cpu])

    def set_pcp_locked(self, int zone_idx, int cpu, bint locked):
        """Hold or release a pcp lock, as a remote drain or an IRQ would (tests, smp)."""
        self.pgdat.node_zones[zone_idx].per_cpu_pageset[cpu].lock.locked = locked

    def set_zone_flag(self, int zone_idx, str name, bint on):
        cdef unsigned long bit = {"ZONE_BELOW_HIGH": ZONE_BELOW_HIGH, "ZONE_RECLAIM_ACTIVE": ZONE_RECLAIM_ACTIVE,
                                  "ZONE_BOOSTED_WATERMARK": ZONE_BOOSTED_WATERMARK}[name]
        if on:
            self.pgdat.node_zones[zone_idx].flags |= bit
        else:
            self.pgdat.node_zones[zone_idx].flags &= ~bit

    def set_pageblock_migratetype(self, unsigned long pfn, int mt):
        set_pageblock_migratetype(NULL, &self.pgdat, pfn, mt)

    # ---- views ----

    @property
    def nr_pages(self):
        return self.pgdat.node_spanned_pages

    @property
    def nr_pcp_lists(self):
        return self.pgdat.nr_pcp_lists

    @property
    def pcp_alloc_size(self):
        return self.pcp_size

    def stats_array(self):
        """A copy of every CPU's counters as a CPU_STATE_DTYPE array."""
        cdef const uint8_t[::1] raw = <uint8_t[:self.pgdat.nr_cpus * sizeof(cpu_state)]><uint8_t *>self.pgdat.cpu
        return np.frombuffer(bytes(raw), dtype=CPU_STATE_DTYPE).copy()

    def zone_state(self, int zi):
        """Counters and free-list lengths of one zone."""
        cdef zone *z = &self.pgdat.node_zones[zi]
        cdef list_head *h
        cdef list_head *e
        cdef int o, mt, n
        lengths = np.zeros((NR_PAGE_ORDERS, MIGRATE_TYPES), dtype=np.int64)
        for o in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                h = &z.free_area[o].free_list[mt]
                e = h.next
                n = 0
                while e != h:
                    n += 1
                    e = e.next
                lengths[o, mt] = n
        return {"nr_free_pages": z.vm_stat[<int>NR_FREE_PAGES], "nr_free_cma": z.vm_stat[<int>NR_FREE_CMA_PAGES],
                "nr_free": [z.free_area[o].nr_free for o in range(NR_PAGE_ORDERS)],
                "free_lists": lengths, "watermark_boost": z.watermark_boost,
                "watermark": [z._watermark[o] for o in range(4)], "flags": z.flags,
                "nr_isolate_pageblock": z.nr_isolate_pageblock,
                "nr_reserved_highatomic": z.nr_reserved_highatomic}

    def free_list_pfns(self, int zi, int order, int mt):
        """The pfns on one free list, head first."""
        cdef list_head *h = &self.pgdat.node_zones[zi].free_area[order].free_list[mt]
        cdef list_head *e = h.next
        out = []
        while e != h:
            out.append(page_to_pfn(&self.pgdat, lru_to_page(e)))
            e = e.next
        return out

    def pcp_state(self, int zi, int cpu):
        cdef per_cpu_pages *pcp = self.pgdat.node_zones[zi].per_cpu_pageset[cpu]
        return {"count": pcp.count, "high": pcp.high, "high_min": pcp.high_min, "high_max": pcp.high_max,
                "batch": pcp.batch, "flags": pcp.flags, "alloc_factor": pcp.alloc_factor,
                "free_count": pcp.free_count, "locked": pcp.lock.locked,
                "address": <size_t>pcp}

    def pcp_list_pfns(self, int zi, int cpu, int pindex):
        """The pfns on one pcp list, head (next to be allocated) first."""
        cdef list_head *h = &self.pgdat.node_zones[zi].per_cpu_pageset[cpu].lists[pindex]
        cdef list_head *e = h.next
        out = []
        while e != h:
            out.append(page_to_pfn(&self.pgdat, lru_to_page(e)))
            e = e.next
        return out

    def zone_of_pfn(self, unsigned long pfn):
        """Zone index of a pfn, or -1 for a pfn in no zone."""
        cdef zone *z
        if pfn >= self.pgdat.node_spanned_pages:
            return -1
        z = page_zone(&self.pgdat, pfn)
        if z == NULL or pfn < z.zone_start_pfn or pfn >= z.zone_start_pfn + z.spanned_pages:
            return -1
        return z.idx

    def pageblock_migratetype(self, unsigned long pfn):
        return get_pageblock_migratetype(&self.pgdat, pfn)

    def pageblock_types(self):
        """A copy of the pageblock migratetype array."""
        cdef unsigned long n = self.pgdat.node_spanned_pages >> PAGEBLOCK_ORDER
        return np.frombuffer(bytes(<uint8_t[:n]>self.pgdat.pageblock_mt), dtype=np.uint8).copy() if n else np.zeros(0, np.uint8)

    def page_state(self, unsigned long pfn):
        """Raw fields of one struct page mirror."""
        cdef page *p = pfn_to_page(&self.pgdat, pfn)
        return {"flags": p.flags, "private": p.private, "refcount": p._refcount, "pincount": p._pincount,
                "owner": p.owner, "cpu": p.cpu, "pindex": p.pindex, "order": p.order}

    def check(self):
        """None, or a message naming the first broken invariant."""
        cdef char buf[512]
        cdef int rc
        with nogil:
            rc = check_node(&self.pgdat, buf, sizeof(buf))
        return None if rc == 0 else buf.decode()

    def run(self, ops, int64_t[::1] slots, int64_t[::1] results):
        """Execute an op stream (see pcpemu.machine.Machine.run)."""
        cdef const uint8_t[::1] raw
        cdef Py_ssize_t n = len(ops)
        if ops.dtype != OP_DTYPE or not ops.flags.c_contiguous:
            raise OpStreamError(f"ops must be a C-contiguous array of dtype OP_DTYPE, got {ops.dtype}")
        if results.shape[0] < n:
            raise OpStreamError("results array shorter than the op stream")
        if n == 0:
            return
        check_op_stream(self, ops, slots)
        raw = ops.view(np.uint8).reshape(-1)
        with nogil:
            run_ops(&self.pgdat, <const pcpemu_op *>&raw[0], n, &slots[0], &results[0])
