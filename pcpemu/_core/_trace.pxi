# kmem tracepoints (include/trace/events/kmem.h, v6.10), fired where the
# kernel fires them. The kernel guards each with a static key; here each is one
# predictable test of pgdat.trace, and a hit is recorded with the stream op it
# happened in (pcpemu.Machine.tracing turns them on).

cdef void trace_record(cpu_state *cs, pglist_data *pgdat, int kind, long pfn, int order, int mt,
                       unsigned int gfp, int fallback_order, int fallback_mt, int percpu_refill,
                       int change_ownership) noexcept nogil:
    cdef pcpemu_trace *t = pgdat.trace
    cdef pcpemu_event *ev
    cdef size_t cap
    if t.len == t.cap:
        cap = t.cap * 2 if t.cap else 4096
        ev = <pcpemu_event *>realloc(t.ev, cap * sizeof(pcpemu_event))
        if ev == NULL:
            t.lost = 1
            return
        t.ev = ev
        t.cap = cap
    ev = &t.ev[t.len]
    t.len += 1
    ev.op = t.op
    ev.pfn = pfn
    ev.gfp = gfp
    ev.cpu = <uint16_t>(cs - pgdat.cpu)
    ev.kind = <uint8_t>kind
    ev.order = <int8_t>order
    ev.migratetype = <int8_t>mt
    ev.fallback_order = <int8_t>fallback_order
    ev.fallback_migratetype = <int8_t>fallback_mt
    ev.percpu_refill = <int8_t>percpu_refill
    ev.change_ownership = <int8_t>change_ownership


cdef inline void trace_mm_page_alloc(cpu_state *cs, pglist_data *pgdat, page *p, int order,
                                     unsigned int gfp, int mt) noexcept nogil:
    # The end of __alloc_pages, for a failure too (pfn -1).
    if pgdat.trace != NULL:
        trace_record(cs, pgdat, MM_PAGE_ALLOC, -1 if p == NULL else <long>page_to_pfn(pgdat, p),
                     order, mt, gfp, -1, -1, -1, -1)

cdef inline void trace_mm_page_free(cpu_state *cs, pglist_data *pgdat, unsigned long pfn,
                                    int order) noexcept nogil:
    # free_pages_prepare: every free, before the block is queued anywhere.
    if pgdat.trace != NULL:
        trace_record(cs, pgdat, MM_PAGE_FREE, pfn, order, -1, 0, -1, -1, -1, -1)

cdef inline void trace_mm_page_pcpu_drain(cpu_state *cs, pglist_data *pgdat, unsigned long pfn, int order,
                                          int mt) noexcept nogil:
    # free_pcppages_bulk, once per block given back to the buddy.
    if pgdat.trace != NULL:
        trace_record(cs, pgdat, MM_PAGE_PCPU_DRAIN, pfn, order, mt, 0, -1, -1, -1, -1)

cdef inline void trace_mm_page_alloc_zone_locked(cpu_state *cs, pglist_data *pgdat, page *p, int order,
                                                 int mt, bint percpu_refill) noexcept nogil:
    # __rmqueue_smallest on success; mt is the free list the block came from.
    if pgdat.trace != NULL:
        trace_record(cs, pgdat, MM_PAGE_ALLOC_ZONE_LOCKED, <long>page_to_pfn(pgdat, p), order, mt, 0,
                     -1, -1, percpu_refill, -1)

cdef inline void trace_mm_page_alloc_extfrag(cpu_state *cs, pglist_data *pgdat, page *p, int alloc_order,
                                             int fallback_order, int alloc_mt, int fallback_mt) noexcept nogil:
    # The end of __rmqueue_fallback; change_ownership reads the pageblock's type now.
    cdef unsigned long pfn
    if pgdat.trace != NULL:
        pfn = page_to_pfn(pgdat, p)
        trace_record(cs, pgdat, MM_PAGE_ALLOC_EXTFRAG, <long>pfn, alloc_order, alloc_mt, 0, fallback_order,
                     fallback_mt, -1, get_pageblock_migratetype(pgdat, pfn) == alloc_mt)


cdef void trace_free(pglist_data *pgdat) noexcept nogil:
    if pgdat.trace != NULL:
        free(pgdat.trace.ev)
        free(pgdat.trace)
        pgdat.trace = NULL


def event_dtype():
    """numpy dtype of struct pcpemu_event, with the C offsets."""
    cdef pcpemu_event e
    cdef char *b = <char *>&e
    fields = [("op", "<i8", <char *>&e.op - b), ("pfn", "<i8", <char *>&e.pfn - b),
              ("gfp", "<u4", <char *>&e.gfp - b), ("cpu", "<u2", <char *>&e.cpu - b),
              ("kind", "u1", <char *>&e.kind - b), ("order", "i1", <char *>&e.order - b),
              ("migratetype", "i1", <char *>&e.migratetype - b),
              ("fallback_order", "i1", <char *>&e.fallback_order - b),
              ("fallback_migratetype", "i1", <char *>&e.fallback_migratetype - b),
              ("percpu_refill", "i1", <char *>&e.percpu_refill - b),
              ("change_ownership", "i1", <char *>&e.change_ownership - b)]
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": sizeof(pcpemu_event)})


CORE_EVENT_DTYPE = event_dtype()


def trace_rows(raw, dtype):
    """The core's events (a CORE_EVENT_DTYPE array, as trace_stop returns them) as rows
    of dtype, pcpemu.kernel.ftrace.EVENT_DTYPE (the C Event row): timestamp 0, line -1."""
    check_event_dtype(dtype)
    if raw.dtype != CORE_EVENT_DTYPE:
        raise TypeError(f"trace_rows takes CORE_EVENT_DTYPE events, not {raw.dtype}")
    cdef const uint8_t[::1] src = np.ascontiguousarray(raw).view(np.uint8)
    cdef Py_ssize_t i, n = len(raw)
    out = np.empty(n, dtype)
    if n == 0:
        return out
    cdef uint8_t[::1] dst = out.view(np.uint8)
    cdef const pcpemu_event *ev = <const pcpemu_event *>&src[0]
    cdef Event *row = <Event *>&dst[0]
    with nogil:
        for i in range(n):
            row[i].kind = ev[i].kind
            row[i].cpu = ev[i].cpu
            row[i].pfn = ev[i].pfn
            row[i].order = ev[i].order
            row[i].migratetype = ev[i].migratetype
            row[i].gfp = ev[i].gfp
            row[i].timestamp = 0
            row[i].line = -1
            row[i].fallback_order = ev[i].fallback_order
            row[i].fallback_migratetype = ev[i].fallback_migratetype
            row[i].percpu_refill = ev[i].percpu_refill
            row[i].change_ownership = ev[i].change_ownership
            row[i].kswapd = 0
    return out


cdef int trace_start(pglist_data *pgdat) noexcept nogil:
    """Turn the tracepoints on with an empty buffer; 0 or a PE_* code."""
    cdef pcpemu_trace *t
    if pgdat.trace != NULL:
        return PE_TRACE_ON
    if pgdat.threaded:
        return PE_TRACE_THREADED
    t = <pcpemu_trace *>calloc(1, sizeof(pcpemu_trace))
    if t == NULL:
        return PE_NOMEM
    t.op = -1
    pgdat.trace = t
    return PE_OK
