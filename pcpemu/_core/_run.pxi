# The op-stream executor: validate the whole stream, then run it without the GIL.
# (With slots disjoint per CPU, any interleaving of per-CPU streams keeps each
# slot's alloc/free order, so smp validates their concatenation.)

cdef inline bint op_allocates(const pcpemu_op *op) noexcept nogil:
    # OP_ALLOC and OP_ALLOC_BULK fill their slot; OP_FREE empties it.
    return op.op == OP_ALLOC or op.op == OP_ALLOC_BULK


cdef inline int reveal_error(const pcpemu_op *op) noexcept nogil:
    # An OP_PCP_REVEAL's order, zone and lists (its gfp is no gfp mask).
    if op.order > MAX_PAGE_ORDER:
        return PE_BAD_ORDER
    if PCP_REVEAL_ZONE(op.gfp) >= MAX_NR_ZONES:
        return PE_BAD_ZONE
    if PCP_REVEAL_FROM(op.gfp) >= MIGRATE_PCPTYPES or PCP_REVEAL_TO(op.gfp) >= MIGRATE_PCPTYPES:
        return PE_BAD_MIGRATETYPE
    if PCP_REVEAL_FROM_ORDER(op.gfp) > MAX_PAGE_ORDER:
        return PE_BAD_ORDER
    return PE_BAD_GFP if op.gfp >> 17 else PE_OK


cdef enum:
    SLOT_UNREAD = 0xFF          # validate_ops: a slot the stream has not named yet
    SLOT_FAILED_STATE = 0xFE    # validate_ops: a slot whose allocation failed in an earlier run
    # A slot's pfn after its allocation failed: its free is skipped (FREE_SKIPPED),
    # in this stream or a later one, and it can take a new allocation.
    SLOT_FAILED = -2


cdef inline int op_gfp_error(const pcpemu_op *op) noexcept nogil:
    # An allocation's gfp: the gfp bits, and for OP_ALLOC a traced zone (OP_GFP_ZONE).
    if op.op == OP_ALLOC and OP_GFP_ZONE(op.gfp) <= MAX_NR_ZONES:
        return check_gfp(op.gfp & ~OP_GFP_ZONE_MASK)
    return check_gfp(op.gfp)


cdef int op_error(const pcpemu_op *op, int nr_cpus, Py_ssize_t nslots, const uint8_t *state) noexcept nogil:
    # Why validate_ops refused an op: the first rule it breaks, in this order.
    if op.op >= NR_OPS:
        return PE_BAD_OP
    if op.cpu >= nr_cpus:
        return PE_BAD_CPU
    if op.order > MAX_PAGE_ORDER or (op.op == OP_ALLOC_BULK and op.order != 0):
        return PE_BAD_ORDER
    if op.op == OP_PCP_REVEAL:
        return reveal_error(op)
    if op.op != OP_FREE and op_gfp_error(op):
        return PE_BAD_GFP
    if <uint64_t>op.slot >= <uint64_t>nslots:
        return PE_BAD_SLOT
    if op.op != OP_FREE:
        return PE_SLOT_BUSY
    return PE_SLOT_EMPTY if state[op.slot] == 0 else PE_FREE_ORDER


cdef int validate_ops(pglist_data *pgdat, const pcpemu_op *ops, Py_ssize_t n, const int64_t *slots,
                      Py_ssize_t nslots, Py_ssize_t *bad) noexcept nogil:
    # Replays slot occupancy: each slot alternates alloc and free, orders
    # match. state[slot] is 0 for an empty slot, else 1 + the block's order;
    # SLOT_UNREAD until the stream first names the slot (most slots of a long
    # replay are not in a given stream, and reading their pages costs a miss each).
    cdef uint8_t *state = <uint8_t *>malloc(nslots if nslots else 1)
    cdef int nr_cpus = pgdat.nr_cpus, held, is_free, code
    cdef Py_ssize_t i
    cdef const pcpemu_op *op
    if state == NULL:
        bad[0] = 0
        return PE_NOMEM
    memset(state, SLOT_UNREAD, nslots)
    for i in range(n):
        op = &ops[i]
        if op.op == OP_FREE or op_allocates(op):
            if op.cpu < nr_cpus and op.order <= MAX_PAGE_ORDER and <uint64_t>op.slot < <uint64_t>nslots \
                    and (op.op == OP_FREE or op_gfp_error(op) == PE_OK) and (op.op != OP_ALLOC_BULK or op.order == 0):
                # An alloc needs an empty slot, a free one holding its order; a slot
                # whose allocation failed takes either.
                if state[op.slot] == SLOT_UNREAD:
                    state[op.slot] = SLOT_FAILED_STATE if slots[op.slot] == SLOT_FAILED else \
                        0 if slots[op.slot] < 0 else 1 + pfn_to_page(pgdat, slots[op.slot]).order
                is_free = op.op == OP_FREE
                held = 1 + op.order
                if state[op.slot] == held * is_free or state[op.slot] == SLOT_FAILED_STATE:
                    state[op.slot] = <uint8_t>(held - held * is_free)
                    continue
        elif op.op < NR_OPS and op.cpu < nr_cpus \
                and (op.op != OP_PCP_REVEAL or reveal_error(op) == PE_OK):
            continue
        bad[0] = i
        code = op_error(op, nr_cpus, nslots, state)
        free(state)
        return code
    free(state)
    return 0


cdef inline void prepare_op_alloc(pglist_data *pgdat, unsigned int op_gfp, alloc_context *ac) noexcept nogil:
    # prepare_alloc_pages for an op's gfp; with a traced zone (OP_GFP_ZONE) the
    # zonelist walk starts there, the preferred zone (and so ALLOC_NOFRAGMENT) the
    # gfp's own. A zone not in the zonelist leaves the whole list.
    cdef zone **zref
    cdef unsigned int want = OP_GFP_ZONE(op_gfp)
    prepare_alloc_pages(pgdat, op_gfp & ~OP_GFP_ZONE_MASK, ac)
    ac.op_gfp = op_gfp
    if want:
        zref = ac.zonelist
        while zref[0] != NULL and zref[0].idx != <int>want - 1:
            zref += 1
        if zref[0] != NULL:
            ac.zonelist = zref


cdef inline int64_t run_alloc(pglist_data *pgdat, const pcpemu_op *op, int64_t *slots,
                              alloc_context *ac) noexcept nogil:
    cdef cpu_state *cs = &pgdat.cpu[op.cpu]
    cdef page *p
    cdef int64_t pfn
    cdef uint64_t owner
    if pgdat.threaded:
        # Per-CPU tokens: a shared counter would bounce a cacheline between
        # the threads on every allocation. Bit 63 keeps them apart from
        # next_owner's.
        owner = (1ULL << 63) | (<uint64_t>op.cpu << 40) | cs.owner_seq
        cs.owner_seq += 1
    else:
        owner = pgdat.next_owner
        pgdat.next_owner += 1
    if ac.zonelist == NULL or op.gfp != ac.op_gfp:
        prepare_op_alloc(pgdat, op.gfp, ac)
    if op.op == OP_ALLOC_BULK:
        p = alloc_pages_bulk_one(cs, pgdat, ac, op.cpu, owner)
    else:
        p = __alloc_pages(cs, pgdat, ac, op.order, op.cpu, owner)
    if p == NULL:
        slots[op.slot] = SLOT_FAILED
        return -1
    pfn = <int64_t>page_to_pfn(pgdat, p)
    slots[op.slot] = pfn
    return pfn


cdef inline int64_t run_free(pglist_data *pgdat, const pcpemu_op *op, int64_t *slots) noexcept nogil:
    cdef cpu_state *cs = &pgdat.cpu[op.cpu]
    cdef int64_t pfn = slots[op.slot]
    if pfn < 0:
        cs.item[<int>FREE_SKIPPED] += 1
        slots[op.slot] = -1
        return -1
    if op.gfp & OP_FREE_PCP_LOCKED:
        free_pages_pcp_locked(cs, pgdat, <unsigned long>pfn, op.order)
    else:
        __free_pages(cs, pgdat, <unsigned long>pfn, op.order, op.cpu)
    slots[op.slot] = -1
    return pfn


cdef void run_drain(pglist_data *pgdat, const pcpemu_op *op) noexcept nogil:
    cdef cpu_state *cs = &pgdat.cpu[op.cpu]
    cdef int zi
    if op.op == OP_DRAIN:
        drain_pages(cs, pgdat, op.cpu)
    elif op.op == OP_DRAIN_ALL:
        drain_all_pages(cs, pgdat, -1)
    else:
        for zi in range(MAX_NR_ZONES):
            if pgdat.node_zones[zi].per_cpu_pageset != NULL:
                decay_pcp_high(cs, pgdat, &pgdat.node_zones[zi], pgdat.node_zones[zi].per_cpu_pageset[op.cpu])


cdef inline int64_t run_op(pglist_data *pgdat, const pcpemu_op *op, int64_t *slots,
                           alloc_context *ac) noexcept nogil:
    # One op of a stream; the pfn it allocated or freed, or -1. ac holds the
    # alloc_context of the last gfp seen (its zonelist NULL before the first).
    if op_allocates(op):
        return run_alloc(pgdat, op, slots, ac)
    if op.op == OP_FREE:
        return run_free(pgdat, op, slots)
    if op.op == OP_PCP_REVEAL:
        pcp_reveal(pgdat, op)
        return -1
    run_drain(pgdat, op)
    return -1


cdef void run_ops(pglist_data *pgdat, const pcpemu_op *ops, Py_ssize_t n, int64_t *slots,
                  int64_t *results) noexcept nogil:
    cdef Py_ssize_t i
    cdef alloc_context ac
    ac.zonelist = NULL          # prepared at the first allocation
    ac.op_gfp = 0
    for i in range(n):
        if pgdat.trace != NULL:
            pgdat.trace.op = i      # the op the tracepoints it fires name
        results[i] = run_op(pgdat, &ops[i], slots, &ac)
    if pgdat.trace != NULL:
        pgdat.trace.op = -1
