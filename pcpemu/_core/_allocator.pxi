# The binding: class Allocator, the only object Python holds of the core, and
# what it hands back (dtypes, views, the error table). pcpemu.machine.Machine
# is its one caller: Machine converts Python types (names to indices, numpy
# integers to int, bools refused), the methods here check what the values
# mean (ranges, states) and report a refusal as an enum pcpemu_error code,
# which raise_error turns into the exception of the one table below.

from .errors import (BadCpuError, BadOrderError, BadOwnerError, BadPfnError, DoubleFreeError, NotAllocatedError,
                     OpStreamError, PcpemuError, StreamGfpError, UnknownGfpError, UnknownMigratetypeError,
                     UnknownZoneError, WrongOrderError)
# The names the messages use are the kernel's, as pcpemu.kernel.gfp spells them.
from .kernel.gfp import MIGRATETYPE_NAMES, ZONE_NAMES

# ---- names and dtypes ----

ITEM_NAMES = ("ALLOC_FAILED", "ZONE_LOCK",
              "ZONE_LOCK_PAGES", "PCP_REFILL", "PCP_REFILL_PAGES", "PCP_DRAIN", "PCP_DRAIN_PAGES",
              "PCP_TRYLOCK_FAIL", "PCP_HIGH_CHANGE", "PGALLOC_FALLBACK", "PGSTEAL_BLOCK",
              "PAGEBLOCK_CHANGE", "CMA_TO_NONMOVABLE", "ZONE_BELOW_HIGH_SET", "WMARK_BOOST",
              "SLOWPATH", "SLOWPATH_DRAIN", "DRAIN_ALL", "PCP_DECAY", "ZONE_FALLBACK", "FREE_SKIPPED",
              "ZONE_LOCK_CONTENDED", "ZONE_LOCK_SPINS", "PCPB_ROUTED_FREE", "PCPB_PHASE0_PAGES",
              "PCPB_PHASE1_BLOCKS", "PCPB_PHASE2_PAGES", "PCPB_PHASE3_PAGES", "PCPB_MERGES", "PCPB_DRAIN_CHUNKS",
              "PCPB_OWNED_SCANNED", "PCPB_OWNED_SKIPPED", "PCPB_RELEASED")
assert len(ITEM_NAMES) == NR_PCPEMU_ITEMS
LOCK_SITE_NAMES = ("rmqueue_bulk", "free_pcppages_bulk", "free_one_page", "rmqueue_buddy", "isolation",
                   "highatomic")
assert len(LOCK_SITE_NAMES) == NR_LOCK_SITES
PCP_OP_NAMES = ("alloc", "free", "drain")
assert len(PCP_OP_NAMES) == NR_PCP_OPS
OP_NAMES = ("alloc", "free", "drain", "drain_all", "decay", "alloc_bulk", "pcp_reveal")
assert len(OP_NAMES) == NR_OPS
assert len(MIGRATETYPE_NAMES) == MIGRATE_TYPES and len(ZONE_NAMES) == MAX_NR_ZONES
#: Why contig_range_blockers says an in-use block cannot move.
BLOCK_UNMOVABLE = 1
BLOCK_PINNED = 2
DEBUG = bool(PCPEMU_DEBUG_BUILD)


def cpu_state_dtype():
    """numpy dtype of struct cpu_state, with the C offsets."""
    cdef cpu_state d
    cdef void *b = &d
    fields = [  # (name, shape, offset); every field is uint64_t
        ("touched", (), offset_of(&d.touched, b)),
        ("item", (NR_PCPEMU_ITEMS,), offset_of(&d.item, b)),
        ("alloc", (NR_PAGE_ORDERS, MIGRATE_TYPES), offset_of(&d.alloc, b)),
        ("alloc_fail", (NR_PAGE_ORDERS, MIGRATE_TYPES), offset_of(&d.alloc_fail, b)),
        ("free", (NR_PAGE_ORDERS,), offset_of(&d.free, b)),
        ("pcp_hit", (NR_PAGE_ORDERS,), offset_of(&d.pcp_hit, b)),
        ("pcp_miss", (NR_PAGE_ORDERS,), offset_of(&d.pcp_miss, b)),
        ("pcp_refill_blocks", (NR_PAGE_ORDERS,), offset_of(&d.pcp_refill_blocks, b)),
        ("cma_pages_to", (MIGRATE_TYPES,), offset_of(&d.cma_pages_to, b)),
        ("lock_site", (NR_LOCK_SITES,), offset_of(&d.lock_site, b)),
        ("lock_site_pages", (NR_LOCK_SITES,), offset_of(&d.lock_site_pages, b)),
        ("cl_hist", (NR_PCP_OPS, CL_HIST), offset_of(&d.cl_hist, b)),
        ("owner_seq", (), offset_of(&d.owner_seq, b)),
    ]
    return np.dtype({"names": [f[0] for f in fields], "formats": [("<u8", f[1]) for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": sizeof(cpu_state)})


CPU_STATE_DTYPE = cpu_state_dtype()
#: dtype of one op of an op stream (struct pcpemu_op).
OP_DTYPE = np.dtype({"names": ["op", "order", "cpu", "gfp", "slot"],
                     "formats": ["u1", "u1", "<u2", "<u4", "<i8"],
                     "offsets": [0, 1, 2, 4, 8], "itemsize": 16})
assert OP_DTYPE.itemsize == sizeof(pcpemu_op)
#: Allocated blocks, as Allocator.allocated_blocks lists them.
BLOCK_DTYPE = np.dtype([("pfn", "<i8"), ("order", "<i8"), ("owner", "<u8"), ("pincount", "<i8"),
                        ("lru", "?"), ("compound", "?")])


def pcp_struct_layout(int nr_lists, int cacheline=64):
    """Offsets of the compiled struct per_cpu_pages and the size pcpemu allocates.

    :return: ``{"offsets": {field: offset}, "sizeof_fixed": offsetof(lists),
        "sizeof_list_head": 16, "alloc_size": roundup(..., cacheline)}``
    """
    cdef per_cpu_pages p
    cdef void *b = &p
    fixed = offset_of(&p.lists[0], b)
    offsets = {"lock": offset_of(&p.lock, b), "count": offset_of(&p.count, b), "high": offset_of(&p.high, b),
               "high_min": offset_of(&p.high_min, b), "high_max": offset_of(&p.high_max, b),
               "batch": offset_of(&p.batch, b), "flags": offset_of(&p.flags, b),
               "alloc_factor": offset_of(&p.alloc_factor, b), "expire": offset_of(&p.expire, b),
               "free_count": offset_of(&p.free_count, b), "lists": fixed}
    return {"offsets": offsets, "sizeof_fixed": fixed, "sizeof_list_head": sizeof(list_head),
            "alloc_size": pcp_alloc_size(nr_lists, cacheline)}


# ---- the one error path ----

#: enum pcpemu_error -> (exception class, message after "what: "). The
#: message fields come from raise_error's keywords and the machine's bounds.
ERRORS = {
    PE_BAD_PFN: (BadPfnError, "pfn {pfn!r} is outside 0..{last_pfn:#x}"),
    PE_BAD_RANGE: (BadPfnError, "[{start:#x}, {end:#x}) is not a range of pfns in 0..{last_pfn:#x}"),
    PE_BAD_ORDER: (BadOrderError, "order outside 0..{max_order}: {order!r}"),
    PE_BAD_CPU: (BadCpuError, "cpu out of range: {cpu!r} is not in 0..{last_cpu}"),
    PE_BAD_OWNER: (BadOwnerError, "owner token {owner!r} must be an int in 1..2**64-1"),
    PE_BAD_ZONE: (UnknownZoneError, "zone {zone!r} is not populated; populated zones: {populated}"),
    PE_BAD_MIGRATETYPE: (UnknownMigratetypeError, "migratetype {migratetype!r} is not one of {migratetypes}"),
    PE_BAD_PINDEX: (UnknownMigratetypeError, "pindex {pindex!r} is outside 0..{last_pindex}"),
    PE_BAD_GFP: (UnknownGfpError, "gfp {gfp:#x} has bits above __GFP_ZEROTAGS ({gfp_bits:#x}) or both __GFP_MOVABLE "
                 "and __GFP_RECLAIMABLE, which the kernel treats as a bug (gfp_migratetype)"),
    PE_DOUBLE_FREE: (DoubleFreeError, "pfn {pfn:#x} is already free (block at {head:#x})"),
    PE_NOT_ALLOCATED: (NotAllocatedError, "pfn {pfn:#x} was never allocated"),
    PE_TAIL_PAGE: (NotAllocatedError, "pfn {pfn:#x} is inside the block allocated at {head:#x}, not its head"),
    PE_WRONG_ORDER: (WrongOrderError, "pfn {pfn:#x} was allocated with another order than {order}"),
    PE_PINNED: (NotAllocatedError, "pfn {pfn:#x} is pinned (FOLL_PIN); unpin it first"),
    PE_BAD_OP: (OpStreamError, "unknown op code"),
    PE_BAD_SLOT: (OpStreamError, "slot out of range"),
    PE_SLOT_BUSY: (OpStreamError, "alloc into a slot that holds a live allocation"),
    PE_SLOT_EMPTY: (OpStreamError, "free of a slot that holds no allocation"),
    PE_FREE_ORDER: (OpStreamError, "free order differs from the order the slot was allocated with"),
    PE_BAD_STREAM: (OpStreamError, "ops must be a numpy array of pcpemu.OP_DTYPE, got {got}"),
    PE_TRACE_ON: (PcpemuError, "a trace is already on; tracing sessions do not nest"),
    PE_TRACE_OFF: (PcpemuError, "no trace is on"),
    PE_TRACE_THREADED: (PcpemuError, "tracing needs a single-threaded run; real threads would race on the buffer"),
    PE_THREADS_TRACED: (PcpemuError, "real threads cannot run while a trace is on: they would race on its buffer"),
    PE_TOO_MANY_LISTS: (PcpemuError, "{nr_lists} pcp lists exceed the emulator's bound of {max_lists}"),
    PE_BAD_COSTS: (PcpemuError, "cost vector has {got} entries, not {want}"),
    PE_NOMEM: (MemoryError, "the host is out of memory"),
}
assert sorted(ERRORS) == list(range(1, NR_PCPEMU_ERRORS))


def raise_error(int code, str what, bint stream=False, **fields):
    """Raise the exception of an enum pcpemu_error code: the one raise site.

    :param what: the message's prefix (the call, or the op of a stream).
    :param stream: the code refuses an op of a stream: whatever the op's
        fault, the stream is malformed (OpStreamError).
    :param fields: the values the code's message names.
    """
    cls, text = ERRORS[code]
    if stream:
        cls = StreamGfpError if cls is UnknownGfpError else OpStreamError
    raise cls(f"{what}: " + text.format(**fields))


cdef inline int check_cpu(pglist_data *pgdat, int cpu) noexcept nogil:
    return PE_OK if 0 <= cpu < pgdat.nr_cpus else PE_BAD_CPU

cdef inline int check_order(int order) noexcept nogil:
    return PE_OK if 0 <= order <= MAX_PAGE_ORDER else PE_BAD_ORDER

cdef inline int check_pfn(pglist_data *pgdat, long pfn) noexcept nogil:
    return PE_OK if 0 <= pfn < <long>pgdat.node_spanned_pages else PE_BAD_PFN

cdef inline int check_zone(pglist_data *pgdat, int zi) noexcept nogil:
    return PE_OK if 0 <= zi < MAX_NR_ZONES and pgdat.node_zones[zi].managed_pages else PE_BAD_ZONE

cdef inline int check_migratetype(int mt) noexcept nogil:
    return PE_OK if 0 <= mt < MIGRATE_TYPES else PE_BAD_MIGRATETYPE


cdef class Allocator:
    """One emulated node: its pages, zones, per-CPU pcp lists and counters.

    Arguments are ints (Machine converts); each method checks what they mean
    and raises through raise_error, with the node unchanged.
    """

    cdef pglist_data pgdat
    cdef void *pcp_mem
    cdef size_t pcp_size

    def __cinit__(self):
        memset(&self.pgdat, 0, sizeof(pglist_data))
        self.pcp_mem = NULL

    def __init__(self, unsigned long nr_pages, zones, unsigned long cma_base, unsigned long cma_pages,
                 int nr_cpus, pindex, pindex_order, int cacheline, long boost_factor,
                 int batch_scale_max, bint pcp_cma, bint free_high_batch, bint freelist_hygiene,
                 int reclaim, boot_pageset, int rules=0):
        cdef pglist_data *pgdat = &self.pgdat
        cdef int i, order, mt, nr_lists = len(pindex_order)
        if nr_lists > MAX_PCP_LISTS:
            self.raise_error(PE_TOO_MANY_LISTS, "boot", nr_lists=nr_lists, max_lists=MAX_PCP_LISTS)
        if alloc_node_mem_map(pgdat, nr_pages, nr_cpus):
            self.raise_error(PE_NOMEM, f"boot: {nr_pages} struct page mirrors")
        pgdat.nr_pcp_lists = nr_lists
        pgdat.cacheline_shift = (<unsigned long>cacheline).bit_length() - 1
        pgdat.pcp_batch_scale_max = batch_scale_max
        pgdat.watermark_boost_factor = boost_factor
        pgdat.pcp_cma = pcp_cma
        pgdat.freelist_hygiene = freelist_hygiene
        pgdat.reclaim = reclaim
        pgdat.rules = rules
        pgdat.next_owner = 1ULL << 62      # tokens pcpemu makes; callers' own are below
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                pgdat.pindex[order][mt] = pindex[order][mt]
        for i in range(nr_lists):
            pgdat.pindex_order[i] = pindex_order[i]
        self.pcp_size = pcp_alloc_size(nr_lists, cacheline)
        if free_area_init(pgdat, &self.pcp_mem, self.pcp_size, zones, nr_lists, free_high_batch):
            self.raise_error(PE_NOMEM, "boot: the pcp lists")
        memmap_init(pgdat, zones, cma_base, cma_pages, boot_pageset)

    def __dealloc__(self):
        free_node_mem_map(&self.pgdat)
        free(self.pcp_mem)
        trace_free(&self.pgdat)
        pcpb_free(&self.pgdat)

    # ---- errors ----

    def raise_error(self, int code, str what, bint stream=False, **fields):
        """raise_error with this node's bounds (last pfn, CPU, pcp list; populated zones)."""
        bounds = {"last_pfn": self.pgdat.node_spanned_pages - 1, "max_order": MAX_PAGE_ORDER, "gfp_bits": GFP_BITS_MASK,
                  "last_cpu": self.pgdat.nr_cpus - 1, "last_pindex": self.pgdat.nr_pcp_lists - 1,
                  "migratetypes": ", ".join(MIGRATETYPE_NAMES),
                  "populated": ", ".join(ZONE_NAMES[zi] for zi in range(<int>MAX_NR_ZONES)
                                         if self.pgdat.node_zones != NULL
                                         and self.pgdat.node_zones[zi].managed_pages)}
        bounds.update(fields)
        raise_error(code, what, stream, **bounds)

    def check_cpu(self, int cpu, str what):
        """Raise the error of a bad CPU, or return."""
        self.check_cpu_arg(cpu, what)

    cdef int check_cpu_arg(self, int cpu, str what) except -1:
        if check_cpu(&self.pgdat, cpu):
            self.raise_error(PE_BAD_CPU, what, cpu=cpu)
        return 0

    cdef int check_zone_arg(self, int zi, str what) except -1:
        if check_zone(&self.pgdat, zi):
            self.raise_error(PE_BAD_ZONE, what, zone=ZONE_NAMES[zi] if 0 <= zi < MAX_NR_ZONES else zi)
        return 0

    cdef int check_pfn_arg(self, long pfn, str what) except -1:
        if check_pfn(&self.pgdat, pfn):
            self.raise_error(PE_BAD_PFN, what, pfn=pfn)
        return 0

    cdef int check_order_arg(self, int order, str what) except -1:
        if check_order(order):
            self.raise_error(PE_BAD_ORDER, what, order=order)
        return 0

    # ---- entry points ----

    def alloc_pages(self, unsigned int gfp, int order, int cpu, owner=None):
        """Allocate; the pfn of the block or -1. owner None draws a fresh token."""
        cdef page *p
        cdef alloc_context ac
        cdef uint64_t token
        if check_order(order) or check_cpu(&self.pgdat, cpu) or check_gfp(gfp):
            self.check_order_arg(order, "alloc_pages")
            self.check_cpu_arg(cpu, "alloc_pages")
            self.raise_error(PE_BAD_GFP, "alloc_pages", gfp=gfp)
        if owner is None:
            token = self.pgdat.next_owner
            self.pgdat.next_owner += 1
        elif 0 < owner < 1 << 64:
            token = owner
        else:
            self.raise_error(PE_BAD_OWNER, "alloc_pages", owner=owner)
        # The GIL stays held: one call is too short to gain from releasing it.
        prepare_alloc_pages(&self.pgdat, gfp, &ac)
        p = __alloc_pages(&self.pgdat.cpu[cpu], &self.pgdat, &ac, order, cpu, token)
        return -1 if p == NULL else <long>page_to_pfn(&self.pgdat, p)

    def alloc_pages_bulk_one(self, unsigned int gfp, int cpu):
        """One order-0 page as alloc_pages_bulk takes it; the pfn or -1."""
        cdef page *p
        cdef alloc_context ac
        cdef uint64_t token
        if check_cpu(&self.pgdat, cpu) or check_gfp(gfp):
            self.check_cpu_arg(cpu, "alloc_pages_bulk")
            self.raise_error(PE_BAD_GFP, "alloc_pages_bulk", gfp=gfp)
        token = self.pgdat.next_owner
        self.pgdat.next_owner += 1
        prepare_alloc_pages(&self.pgdat, gfp, &ac)
        p = alloc_pages_bulk_one(&self.pgdat.cpu[cpu], &self.pgdat, &ac, cpu, token)
        return -1 if p == NULL else <long>page_to_pfn(&self.pgdat, p)

    def free_pages(self, long pfn, int order, int cpu):
        """Free an allocated block; raises (leaving everything unchanged) if it cannot be."""
        cdef unsigned long head = <unsigned long>pfn
        cdef int code = check_cpu(&self.pgdat, cpu)
        if code == PE_OK:
            code = check_pfn(&self.pgdat, pfn)
        if code == PE_OK:
            code = check_order(order)
        if code == PE_OK:
            code = check_free(&self.pgdat, <unsigned long>pfn, order, &head)
        if code:
            self.raise_error(code, "free_pages", pfn=pfn, order=order, cpu=cpu, head=head)
        __free_pages(&self.pgdat.cpu[cpu], &self.pgdat, <unsigned long>pfn, order, cpu)

    def drain_pages(self, int cpu, int by_cpu):
        """Empty one CPU's pcp lists, counted on by_cpu (drain_pages)."""
        self.check_cpu_arg(cpu, "drain_pages")
        self.check_cpu_arg(by_cpu, "drain_pages")
        drain_pages(&self.pgdat.cpu[by_cpu], &self.pgdat, cpu)

    def drain_pages_zone(self, int zi, int cpu):
        """Empty one CPU's pcp lists of one zone, on that CPU (drain_local_pages(zone))."""
        self.check_zone_arg(zi, "drain_pages_zone")
        self.check_cpu_arg(cpu, "drain_pages_zone")
        drain_pages_zone(&self.pgdat.cpu[cpu], &self.pgdat, cpu, &self.pgdat.node_zones[zi])

    def drain_all_pages(self, int zi, int by_cpu):
        """Empty every CPU's pcp lists of one zone, or all with zi -1 (drain_all_pages)."""
        if zi != -1:
            self.check_zone_arg(zi, "drain_all_pages")
        self.check_cpu_arg(by_cpu, "drain_all_pages")
        drain_all_pages(&self.pgdat.cpu[by_cpu], &self.pgdat, zi)

    def set_reclaim_active(self, bint active):
        """Set or clear ZONE_RECLAIM_ACTIVE on every managed zone, as kswapd's
        balance_pgdat does while it runs (set_reclaim_active, clear_reclaim_active)."""
        cdef int zi
        for zi in range(MAX_NR_ZONES):
            if self.pgdat.node_zones[zi].managed_pages:
                if active:
                    self.pgdat.node_zones[zi].flags |= ZONE_RECLAIM_ACTIVE
                else:
                    self.pgdat.node_zones[zi].flags &= ~ZONE_RECLAIM_ACTIVE

    def decay_pcp_high(self, int cpu):
        """One vmstat tick on a CPU: decay_pcp_high of each populated zone's pcp."""
        cdef int zi
        self.check_cpu_arg(cpu, "decay_pcp_high")
        for zi in range(MAX_NR_ZONES):
            if self.pgdat.node_zones[zi].per_cpu_pageset != NULL:
                decay_pcp_high(&self.pgdat.cpu[cpu], &self.pgdat, &self.pgdat.node_zones[zi],
                               self.pgdat.node_zones[zi].per_cpu_pageset[cpu])

    def set_pcp_locked(self, int zi, int cpu, bint locked):
        """Hold or release a pcp lock, as a remote drain or an IRQ would (tests)."""
        self.check_zone_arg(zi, "set_pcp_locked")
        self.check_cpu_arg(cpu, "set_pcp_locked")
        self.pgdat.node_zones[zi].per_cpu_pageset[cpu].lock.locked = locked

    # ---- op streams ----

    cdef int validate(self, ops, int64_t[::1] slots) except -1:
        # Check a whole stream before any op runs; raise naming the first bad op.
        cdef const uint8_t[::1] raw
        cdef Py_ssize_t n = len(ops), bad = -1
        cdef int code
        if n == 0:
            return 0
        raw = ops.view(np.uint8).reshape(-1)
        with nogil:
            code = validate_ops(&self.pgdat, <const pcpemu_op *>&raw[0], n, &slots[0], slots.shape[0], &bad)
        if code:
            op = ops[bad]
            name = OP_NAMES[op["op"]] if op["op"] < NR_OPS else f"op{int(op['op'])}"
            gfp = int(op["gfp"])
            # An OP_PCP_REVEAL's gfp holds a zone and two pcp lists' migratetypes.
            mt = PCP_REVEAL_FROM(gfp) if PCP_REVEAL_FROM(gfp) >= MIGRATE_PCPTYPES else PCP_REVEAL_TO(gfp)
            self.raise_error(code, f"op {bad} ({name} cpu={int(op['cpu'])} order={int(op['order'])} "
                                   f"slot={int(op['slot'])})", True, cpu=int(op["cpu"]), order=int(op["order"]),
                             gfp=gfp, zone=PCP_REVEAL_ZONE(gfp), migratetype=mt,
                             migratetypes=", ".join(MIGRATETYPE_NAMES[:MIGRATE_PCPTYPES]))
        return 0

    def run(self, ops, int64_t[::1] slots, int64_t[::1] results):
        """Validate, then execute an op stream (Machine.run): a C-contiguous
        OP_DTYPE array, results as long as it."""
        cdef const uint8_t[::1] raw
        cdef Py_ssize_t n = len(ops)
        if n == 0:
            return
        self.validate(ops, slots)
        raw = ops.view(np.uint8).reshape(-1)
        with nogil:
            run_ops(&self.pgdat, <const pcpemu_op *>&raw[0], n, &slots[0], &results[0])

    def run_virtual(self, ops, const int64_t[::1] starts, int64_t[::1] slots, const double[::1] cost,
                    bint shared_slots=False):
        """Per-CPU op streams in virtual-time order (pcpemu.runs.smp.run_virtual);
        see smp_run_virtual for what it returns."""
        if cost.shape[0] != NR_COSTS:
            self.raise_error(PE_BAD_COSTS, "run_virtual", got=cost.shape[0], want=NR_COSTS)
        self.validate(ops, slots)
        return smp_run_virtual(&self.pgdat, ops, starts, slots, cost, shared_slots)

    def validate_streams(self, ops, int64_t[::1] slots):
        """Check a concatenated op stream before threads run parts of it."""
        self.validate(ops, slots)

    def set_threaded(self, bint on):
        """Switch the locks to real spinlocks (real threads) or back to plain flags."""
        if on and self.pgdat.trace != NULL:
            self.raise_error(PE_THREADS_TRACED, "run_threads")
        self.pgdat.threaded = on

    def run_thread(self, ops, int64_t[::1] slots, int64_t[::1] results, int[::1] gate, uint8_t[::1] born=None):
        """One thread's part of streams checked by validate_streams; see smp_run_thread.
        With born (one byte per slot, shared by the threads) the streams may
        free each other's slots: a free waits until its allocation has run."""
        return smp_run_thread(&self.pgdat, ops, slots, results, gate, &born[0] if born is not None else NULL)

    # ---- the pcp_buddy policy (_pcp_buddy.pxi) ----

    def pcpb_enable(self):
        """Switch a freshly booted node to the pcp_buddy policy."""
        if self.pgdat.pcpb == NULL and pcpb_init(&self.pgdat):
            self.raise_error(PE_NOMEM, "pcp_buddy")

    def pcpb_state(self):
        """What pcp_buddy holds now (see pcpb_state), or None under the classic pcp."""
        return pcpb_state(&self.pgdat)

    def pageblock_census(self):
        """Free, mixed and all pageblocks; CMA pages allocated and in all (see pageblock_census)."""
        return pageblock_census(&self.pgdat)

    # ---- tracing ----

    def trace_start(self):
        """Turn the kmem tracepoints on with an empty buffer."""
        cdef int code = trace_start(&self.pgdat)
        if code:
            self.raise_error(code, "tracing")

    def trace_stop(self):
        """Turn the tracepoints off; the events as a CORE_EVENT_DTYPE array."""
        cdef pcpemu_trace *t = self.pgdat.trace
        if t == NULL:
            self.raise_error(PE_TRACE_OFF, "tracing")
        out = np.empty(t.len, dtype=CORE_EVENT_DTYPE)
        cdef uint8_t[::1] raw = out.view(np.uint8).reshape(-1)
        if t.len:
            memcpy(&raw[0], t.ev, t.len * sizeof(pcpemu_event))
        lost = t.lost
        trace_free(&self.pgdat)
        if lost:
            self.raise_error(PE_NOMEM, "tracing: the trace buffer could not grow; events were lost")
        return out

    # ---- migration, pinning, isolation (_isolate.pxi) ----

    def allocated_blocks(self):
        """Every allocated block, lowest pfn first, as a BLOCK_DTYPE array."""
        cdef pglist_data *pgdat = &self.pgdat
        cdef unsigned long pfn = 0
        cdef page *p
        rows = []
        while pfn < pgdat.node_spanned_pages:
            p = pfn_to_page(pgdat, pfn)
            if p.flags & PG_allocated:
                rows.append((pfn, p.order, p.owner, p._pincount, (p.flags & PG_lru) != 0, (p.flags & PG_head) != 0))
            pfn += block_size(pgdat, p)
        return np.array(rows, dtype=BLOCK_DTYPE)

    def allocated_head(self, long pfn):
        """(order, owner, pincount, lru) of the allocated block headed at pfn, or None."""
        cdef page *p
        self.check_pfn_arg(pfn, "allocated_head")
        p = pfn_to_page(&self.pgdat, pfn)
        if not (p.flags & PG_allocated):
            return None
        return p.order, p.owner, p._pincount, (p.flags & PG_lru) != 0

    def pin_page(self, long pfn, int delta):
        """Add delta to an allocated head's FOLL_PIN count (try_grab_folio /
        unpin_user_page)."""
        cdef page *p
        self.check_pfn_arg(pfn, "pin_page")
        p = pfn_to_page(&self.pgdat, pfn)
        if not (p.flags & PG_allocated):
            self.raise_error(PE_NOT_ALLOCATED, "pin_page", pfn=pfn)
        p._pincount += delta

    def new_owner(self):
        """A fresh owner token, as alloc_pages draws them."""
        self.pgdat.next_owner += 1
        return self.pgdat.next_owner - 1

    def migrate_block(self, long pfn, unsigned int gfp, bint pin, int cpu):
        """migrate_pages of one allocated, unpinned block, inside memalloc_pin_save()
        when pin; the new pfn, or -1 when no target (-ENOMEM)."""
        cdef page *p
        self.check_cpu_arg(cpu, "migrate_pages")
        self.check_pfn_arg(pfn, "migrate_pages")
        p = pfn_to_page(&self.pgdat, pfn)
        if not (p.flags & PG_allocated):
            self.raise_error(PE_NOT_ALLOCATED, "migrate_pages", pfn=pfn)
        if p._pincount:
            self.raise_error(PE_PINNED, "migrate_pages", pfn=pfn)
        return migrate_folio(&self.pgdat.cpu[cpu], &self.pgdat, pfn, gfp, pin, cpu)

    cdef int check_range(self, long start, long end, str what) except -1:
        if end <= start or check_pfn(&self.pgdat, start) or check_pfn(&self.pgdat, end - 1):
            self.raise_error(PE_BAD_RANGE, what, start=start, end=end)
        return 0

    def start_isolate_page_range(self, long start, long end, int migratetype, int cpu):
        """Isolate every pageblock of [start, end) (start_isolate_page_range):
        -1, or the pfn that made a block refuse; then nothing stays isolated."""
        self.check_range(start, end, "start_isolate_page_range")
        self.check_cpu_arg(cpu, "start_isolate_page_range")
        if check_migratetype(migratetype):
            self.raise_error(PE_BAD_MIGRATETYPE, "start_isolate_page_range", migratetype=migratetype)
        return start_isolate_page_range(&self.pgdat.cpu[cpu], &self.pgdat, start, end, migratetype)

    def undo_isolate_page_range(self, long start, long end, int migratetype, int cpu):
        """Give every pageblock of [start, end) back its type (undo_isolate_page_range)."""
        self.check_range(start, end, "undo_isolate_page_range")
        self.check_cpu_arg(cpu, "undo_isolate_page_range")
        if check_migratetype(migratetype):
            self.raise_error(PE_BAD_MIGRATETYPE, "undo_isolate_page_range", migratetype=migratetype)
        undo_isolate_page_range(&self.pgdat.cpu[cpu], &self.pgdat, start, end, migratetype)

    def contig_range_blockers(self, long start, long end):
        """In-use blocks of [start, end) migration cannot move: [(head, order, owner, BLOCK_*)]."""
        cdef unsigned long pfn
        cdef long head
        cdef page *p
        self.check_range(start, end, "contig_range_blockers")
        pfn = start
        out = []
        while pfn < <unsigned long>end:
            head = block_head(&self.pgdat, pfn)
            p = pfn_to_page(&self.pgdat, <unsigned long>head)
            if p.flags & PG_allocated:
                if p._pincount:
                    out.append((head, p.order, p.owner, BLOCK_PINNED))
                elif not (p.flags & PG_lru):
                    out.append((head, p.order, p.owner, BLOCK_UNMOVABLE))
            pfn = <unsigned long>head + block_size(&self.pgdat, p)
        return out

    def alloc_contig_migrate_range(self, long start, long end, unsigned int gfp, int cpu):
        """(0 | -EBUSY | -ENOMEM, [(old pfn, new pfn), ...]); see alloc_contig_migrate_range."""
        self.check_range(start, end, "alloc_contig_migrate_range")
        self.check_cpu_arg(cpu, "alloc_contig_migrate_range")
        moved = []
        ret = alloc_contig_migrate_range(&self.pgdat.cpu[cpu], &self.pgdat, start, end, gfp, cpu, moved)
        return ret, moved

    def test_pages_isolated(self, long start, long end):
        """-1 when [start, end) is isolated and free, else the first pfn that is not."""
        self.check_range(start, end, "test_pages_isolated")
        return test_pages_isolated(&self.pgdat, start, end)

    def isolate_freepages_range(self, long start, long end, uint64_t owner, int cpu):
        """Take the free pages of an isolated range checked by test_pages_isolated, for owner."""
        self.check_range(start, end, "isolate_freepages_range")
        self.check_cpu_arg(cpu, "isolate_freepages_range")
        cdef long busy = test_pages_isolated(&self.pgdat, start, end)
        if busy >= 0:
            self.raise_error(PE_NOT_ALLOCATED, "isolate_freepages_range", pfn=busy)
        isolate_freepages_range(&self.pgdat.cpu[cpu], &self.pgdat, start, end, owner)

    def free_contig_range(self, long start, long end, int cpu):
        """Free a range isolate_freepages_range claimed, block by block (free_contig_range)."""
        cdef unsigned long pfn, dummy
        cdef int code
        self.check_range(start, end, "free_contig_range")
        self.check_cpu_arg(cpu, "free_contig_range")
        pfn = start
        while pfn < <unsigned long>end:     # every block must be freeable before any is freed
            code = check_free(&self.pgdat, pfn, pfn_to_page(&self.pgdat, pfn).order, &dummy)
            if code:
                self.raise_error(code, "free_contig_range", pfn=pfn, head=dummy, order=0)
            pfn += 1UL << pfn_to_page(&self.pgdat, pfn).order
        free_contig_range(&self.pgdat.cpu[cpu], &self.pgdat, start, end, cpu)

    # ---- a traced kernel's starting state (_seed.pxi, pcpemu.runs.kstate) ----

    def seed_zone(self, int zi, const uint8_t[::1] block_types, const int64_t[::1] pfns, const int8_t[::1] orders,
                  const int64_t[::1] up, uint64_t owner):
        seed_zone(&self.pgdat, zi, block_types, pfns, orders, up, owner)

    def seed_pcp(self, int zi, int cpu, int pindex, Py_ssize_t n, int high, uint64_t owner):
        return seed_pcp(&self.pgdat, zi, cpu, pindex, n, high, owner)

    def pcp_untraced_move(self, int zi, int cpu, long delta, int pindex):
        self.check_zone_arg(zi, "pcp_untraced_move")
        self.check_cpu_arg(cpu, "pcp_untraced_move")
        if not 0 <= pindex < self.pgdat.nr_pcp_lists:
            self.raise_error(PE_BAD_PINDEX, "pcp_untraced_move", pindex=pindex)
        return pcp_untraced_move(&self.pgdat, zi, cpu, delta, pindex)

    def pcp_untraced_take(self, int zi, int cpu, int pindex, long nr_blocks):
        self.check_zone_arg(zi, "pcp_untraced_take")
        self.check_cpu_arg(cpu, "pcp_untraced_take")
        if not 0 <= pindex < self.pgdat.nr_pcp_lists:
            self.raise_error(PE_BAD_PINDEX, "pcp_untraced_take", pindex=pindex)
        return pcp_untraced_take(&self.pgdat, zi, cpu, pindex, nr_blocks)

    def pcp_untraced_relist(self, int zi, int cpu, int pindex, int migratetype, long nr_blocks):
        self.check_zone_arg(zi, "pcp_untraced_relist")
        self.check_cpu_arg(cpu, "pcp_untraced_relist")
        if not 0 <= pindex < self.pgdat.nr_pcp_lists:
            self.raise_error(PE_BAD_PINDEX, "pcp_untraced_relist", pindex=pindex)
        if not 0 <= migratetype < MIGRATE_PCPTYPES:
            self.raise_error(PE_BAD_MIGRATETYPE, "pcp_untraced_relist", migratetype=migratetype)
        return pcp_untraced_relist(&self.pgdat, zi, cpu, pindex, migratetype, nr_blocks)

    def pcp_set_alloc_factor(self, int zi, int cpu, int alloc_factor):
        cdef per_cpu_pages *pcp
        self.check_zone_arg(zi, "pcp_set_alloc_factor")
        self.check_cpu_arg(cpu, "pcp_set_alloc_factor")
        pcp = self.pgdat.node_zones[zi].per_cpu_pageset[cpu]
        before = pcp.alloc_factor
        pcp.alloc_factor = <uint8_t>alloc_factor
        return before

    def pcp_set_free_high_at(self, int zi, int cpu, int free_count):
        self.check_zone_arg(zi, "pcp_set_free_high_at")
        self.check_cpu_arg(cpu, "pcp_set_free_high_at")
        before = self.pgdat.cpu[cpu].free_high_at[zi]
        self.pgdat.cpu[cpu].free_high_at[zi] = free_count
        return before

    def take_untraced(self, int zi, int mt, int order, Py_ssize_t n, uint64_t owner, int64_t[::1] cursor):
        out = np.empty(n, np.int64)
        return out[:take_untraced(&self.pgdat, zi, mt, order, out, owner, cursor)]

    def claim_untraced_pageblock(self, int zi, int mt, uint64_t owner, int64_t[::1] cursor):
        return claim_untraced_pageblock(&self.pgdat, zi, mt, owner, cursor)

    def grow_zone(self, int zi, unsigned long nr_pages, zp, int cpu, bint on_demand):
        grow_zone(&self.pgdat, zi, nr_pages, zp, cpu, on_demand)

    def reset_stats(self):
        reset_stats(&self.pgdat)

    # ---- views ----

    @property
    def pcp_alloc_size(self):
        """Bytes each CPU's struct per_cpu_pages takes, cacheline-rounded."""
        return self.pcp_size

    def stats_array(self):
        """A copy of every CPU's counters as a CPU_STATE_DTYPE array."""
        cdef const uint8_t[::1] raw = <uint8_t[:self.pgdat.nr_cpus * sizeof(cpu_state)]><uint8_t *>self.pgdat.cpu
        return np.frombuffer(bytes(raw), dtype=CPU_STATE_DTYPE).copy()

    def zone_state(self, int zi):
        """Counters and free-list lengths of one populated zone."""
        cdef zone *z
        cdef list_head *h
        cdef list_head *e
        cdef int o, mt, n
        self.check_zone_arg(zi, "zone_state")
        z = &self.pgdat.node_zones[zi]
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
                "watermark": [z._watermark[o] for o in range(NR_WMARK)], "flags": z.flags,
                "nr_isolate_pageblock": z.nr_isolate_pageblock,
                "nr_reserved_highatomic": z.nr_reserved_highatomic, "nr_free_highatomic": z.nr_free_highatomic}

    def free_list_pfns(self, int zi, int order, int mt):
        """The pfns on one free list, head first."""
        cdef list_head *h
        cdef list_head *e
        self.check_zone_arg(zi, "free_list")
        self.check_order_arg(order, "free_list")
        if check_migratetype(mt):
            self.raise_error(PE_BAD_MIGRATETYPE, "free_list", migratetype=mt)
        h = &self.pgdat.node_zones[zi].free_area[order].free_list[mt]
        e = h.next
        out = []
        while e != h:
            out.append(page_to_pfn(&self.pgdat, lru_to_page(e)))
            e = e.next
        return out

    def poke(self, str field, long a, long b=0, long c=0):
        """Test-only hook (tests/test_check.py): write one field of the state,
        unchecked, so a test can break an invariant on purpose.

        Page fields (a = pfn, b = value): flags, private, refcount, owner, cpu,
        pindex, order, mt, pageblock. free_list_add (a = pfn, b = order, c =
        migratetype) and pcp_list_add (a = pfn, b = cpu, c = pindex) move the
        page onto that list of its zone. nr_free (a = zone, b = order, c = value),
        nr_free_pages (a = zone, b = value), pcp_count (a = zone, b = cpu, c = value).
        """
        cdef page *p
        cdef zone *z
        if field in ("nr_free", "nr_free_pages", "pcp_count"):
            z = &self.pgdat.node_zones[a]
            if field == "nr_free":
                z.free_area[b].nr_free = c
            elif field == "nr_free_pages":
                z.vm_stat[<int>NR_FREE_PAGES] = b
            else:
                z.per_cpu_pageset[b].count = c
            return
        p = pfn_to_page(&self.pgdat, a)
        z = page_zone(&self.pgdat, a)
        if field in ("free_list_add", "pcp_list_add"):
            if p.flags & (PG_buddy | PG_pcp):
                list_del(&p.lru)
            if field == "free_list_add":
                list_add(&p.lru, &z.free_area[b].free_list[c])
            else:
                list_add(&p.lru, &z.per_cpu_pageset[b].lists[c])
        elif field == "pageblock":
            self.pgdat.pageblock_mt[a >> PAGEBLOCK_ORDER] = b
        elif field == "flags":
            p.flags = b
        elif field == "private":
            p.private = b
        elif field == "refcount":
            p._refcount = b
        elif field == "owner":
            p.owner = b
        elif field == "cpu":
            p.cpu = b
        elif field == "pindex":
            p.pindex = b
        elif field == "order":
            p.order = b
        elif field == "mt":
            p.mt = b
        else:
            raise ValueError(f"poke: unknown field {field!r}")

    def pcp_state(self, int zi, int cpu):
        """The fields of one CPU's struct per_cpu_pages for a zone."""
        cdef per_cpu_pages *pcp
        self.check_zone_arg(zi, "pcp_state")
        self.check_cpu_arg(cpu, "pcp_state")
        pcp = self.pgdat.node_zones[zi].per_cpu_pageset[cpu]
        return {"count": pcp.count, "high": pcp.high, "high_min": pcp.high_min, "high_max": pcp.high_max,
                "batch": pcp.batch, "flags": pcp.flags, "alloc_factor": pcp.alloc_factor,
                "free_count": pcp.free_count, "locked": pcp.lock.locked,
                "decayed_high": decayed_pcp_high(pcp),
                "free_high_min_count": free_high_min_count(&self.pgdat.cpu[cpu], &self.pgdat, pcp,
                                                           &self.pgdat.node_zones[zi], pcp.batch),
                "address": <size_t>pcp}

    def pcp_list_pfns(self, int zi, int cpu, int pindex):
        """The pfns on one pcp list, head (next to be allocated) first."""
        cdef list_head *h
        cdef list_head *e
        self.check_zone_arg(zi, "pcp_list")
        self.check_cpu_arg(cpu, "pcp_list")
        if not 0 <= pindex < self.pgdat.nr_pcp_lists:
            self.raise_error(PE_BAD_PINDEX, "pcp_list", pindex=pindex)
        h = &self.pgdat.node_zones[zi].per_cpu_pageset[cpu].lists[pindex]
        e = h.next
        out = []
        while e != h:
            out.append(page_to_pfn(&self.pgdat, lru_to_page(e)))
            e = e.next
        return out

    def zone_of_pfn(self, long pfn):
        """Zone index of a pfn, or -1 for a pfn in no zone."""
        cdef zone *z
        self.check_pfn_arg(pfn, "zone_of_pfn")
        z = page_zone(&self.pgdat, pfn)
        if z == NULL or <unsigned long>pfn < z.zone_start_pfn or <unsigned long>pfn >= z.zone_start_pfn + z.spanned_pages:
            return -1
        return z.idx

    def pageblock_migratetype(self, long pfn):
        self.check_pfn_arg(pfn, "pageblock_migratetype")
        return get_pageblock_migratetype(&self.pgdat, pfn)

    def pageblock_types(self):
        """A copy of the pageblock migratetype array."""
        cdef unsigned long n = self.pgdat.node_spanned_pages >> PAGEBLOCK_ORDER
        return np.frombuffer(bytes(<uint8_t[:n]>self.pgdat.pageblock_mt), dtype=np.uint8).copy() if n else np.zeros(0, np.uint8)

    def order_to_pindex(self, int mt, int order):
        """The pcp list of (migratetype, order), or -1 when the order has none (order_to_pindex)."""
        self.check_order_arg(order, "order_to_pindex")
        if check_migratetype(mt):
            self.raise_error(PE_BAD_MIGRATETYPE, "order_to_pindex", migratetype=mt)
        return order_to_pindex(&self.pgdat, mt, order)

    def block_head(self, long pfn):
        """The head of the free, pcp or allocated block holding pfn, or -1."""
        self.check_pfn_arg(pfn, "block_head")
        return block_head(&self.pgdat, pfn)

    def page_state(self, long pfn):
        """Raw fields of one struct page mirror; "size": the pages of the block
        it heads (0 for a page that heads none)."""
        cdef page *p
        self.check_pfn_arg(pfn, "page_state")
        p = pfn_to_page(&self.pgdat, pfn)
        return {"flags": p.flags, "private": p.private, "refcount": p._refcount, "pincount": p._pincount,
                "owner": p.owner, "cpu": p.cpu, "pindex": p.pindex, "order": p.order,
                "buddy": (p.flags & PG_buddy) != 0, "pcp": (p.flags & PG_pcp) != 0,
                "allocated": (p.flags & PG_allocated) != 0, "compound": (p.flags & PG_head) != 0}

    def check(self):
        """None, or a message naming the first broken invariant."""
        cdef char buf[512]
        cdef int rc
        with nogil:
            rc = check_node(&self.pgdat, buf, sizeof(buf))
        return None if rc == 0 else buf.decode()
