# Multi-CPU runs (pcpemu.smp): a deterministic virtual-time scheduler that
# prices every op with a cost model, and a real-thread executor with real
# spinlocks. Both run op streams whose slots are disjoint per CPU.

# Indexes of the cost vector smp.CostModel.as_array() builds.
cdef enum:
    COST_OP = 0             # ns of an op outside zone->lock (pcp hit path)
    COST_CACHELINE = 1      # ns per pcp cacheline touched
    COST_LOCK = 2           # ns to take and release an uncontended zone->lock
    COST_PAGE = 3           # ns per page moved under zone->lock
    COST_REMOTE = 4         # ns per cacheline fetched from another CPU
    COST_ZONE_LINES = 5     # zone cachelines (lock word, free_area) that follow the lock
    COST_SMT_CORES = 6      # physical cores; 0: one core per CPU
    COST_SMT_SLOWDOWN = 7   # factor on the work outside the lock of a CPU whose sibling runs
    NR_COSTS = 8


cdef struct vt_event:
    double time
    int cpu


cdef inline bint vt_before(vt_event a, vt_event b) noexcept nogil:
    # Equal times pop in CPU order, so a run is the same bit for bit.
    return a.time < b.time or (a.time == b.time and a.cpu < b.cpu)


cdef void vt_push(vt_event *heap, int *n, vt_event e) noexcept nogil:
    cdef int i = n[0], parent
    n[0] += 1
    while i > 0:
        parent = (i - 1) >> 1
        if not vt_before(e, heap[parent]):
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = e


cdef vt_event vt_pop(vt_event *heap, int *n) noexcept nogil:
    cdef vt_event top = heap[0], last
    cdef int i = 0, child
    n[0] -= 1
    last = heap[n[0]]
    while True:
        child = 2 * i + 1
        if child >= n[0]:
            break
        if child + 1 < n[0] and vt_before(heap[child + 1], heap[child]):
            child += 1
        if not vt_before(heap[child], last):
            break
        heap[i] = heap[child]
        i = child
    heap[i] = last
    return top


cdef struct vt_lock:
    double free_at          # virtual time zone->lock is next free
    int holder              # CPU that held it last, -1: nobody yet
    uint64_t remote_lines   # zone cachelines moved between CPUs with the lock


cdef double vt_price(const double *cost, vt_lock *lk, int cpu, double now,
                     uint64_t acq, uint64_t pages, int lines, int remote_pcp_lines, double smt,
                     double *wait_ret, double *hold_ret) noexcept nogil:
    # The virtual time at which an op that started at now on cpu ends: its
    # work outside the lock, then, if it took zone->lock, a wait for the lock
    # and the hold. Unlike a real lock, the lock is granted in the order ops
    # are dispatched (their start times), not the order they reach it.
    cdef double t = now + smt * (cost[COST_OP] + cost[COST_CACHELINE] * lines) \
        + cost[COST_REMOTE] * remote_pcp_lines
    cdef double start, hold
    wait_ret[0] = -1.0
    hold_ret[0] = -1.0
    if acq == 0:
        return t
    hold = cost[COST_LOCK] * acq + cost[COST_PAGE] * pages
    if lk.holder >= 0 and lk.holder != cpu:
        hold += cost[COST_REMOTE] * cost[COST_ZONE_LINES]
        lk.remote_lines += <uint64_t>cost[COST_ZONE_LINES]
    start = t if t > lk.free_at else lk.free_at
    lk.free_at = start + hold
    lk.holder = cpu
    wait_ret[0] = start - t
    hold_ret[0] = hold
    return start + hold


cdef inline double smt_factor(const double *cost, int cpu, int nr_cpus) noexcept nogil:
    # CPU c runs on core c % cores; its sibling threads are c +- cores.
    cdef int cores = <int>cost[COST_SMT_CORES]
    if cores <= 0 or nr_cpus <= cores:
        return 1.0
    if cpu >= cores or cpu + cores < nr_cpus:
        return cost[COST_SMT_SLOWDOWN]
    return 1.0


cdef void vt_run(pglist_data *pgdat, const pcpemu_op *ops, const int64_t *starts, int nr_streams,
                 int64_t *slots, const double *cost, double *clock, double *wait, double *hold,
                 int64_t *results, vt_lock *lk, vt_event *heap, int64_t *pos, int32_t *pcp_toucher,
                 uint64_t *remote_pcp, uint8_t *born, int *waiters) noexcept nogil:
    cdef int nheap = 0, nwait = 0, cpu, c, lines, remote, owner
    cdef vt_event e
    cdef const pcpemu_op *op
    cdef cpu_state *cs
    cdef uint64_t acq0, pages0, drains0, routed0
    cdef int64_t i
    cdef alloc_context ac
    ac.zonelist = NULL          # prepared at the first allocation
    ac.op_gfp = 0
    for cpu in range(nr_streams):
        pos[cpu] = starts[cpu]
        if starts[cpu] < starts[cpu + 1]:
            e.time = clock[cpu]
            e.cpu = cpu
            vt_push(heap, &nheap, e)
    # With shared slots, check_op_stream has seen every free after its
    # allocation in the concatenated streams: a CPU only waits for a lower
    # numbered one, which never waits for it, so waiters always wake.
    while nheap:
        e = vt_pop(heap, &nheap)
        cpu = e.cpu
        i = pos[cpu]
        op = &ops[i]
        if born != NULL and op.op == OP_FREE and slots[op.slot] < 0 and not born[op.slot]:
            # Shared slots: a free of a block another CPU has not allocated
            # yet waits, off the run queue, until the next allocation.
            waiters[nwait] = cpu
            nwait += 1
            continue
        pos[cpu] += 1
        cs = &pgdat.cpu[op.cpu]
        acq0 = cs.item[<int>ZONE_LOCK]
        pages0 = cs.item[<int>ZONE_LOCK_PAGES]
        routed0 = cs.item[<int>PCPB_ROUTED_FREE]
        drains0 = cs.item[<int>SLOWPATH_DRAIN]
        cs.touched = 0
        if pgdat.trace != NULL:
            pgdat.trace.op = i
        results[i] = run_op(pgdat, op, slots, &ac)
        lines = nr_lines(cs.touched)
        # The pcp whose lines the op touched; they come from another CPU's
        # cache when another CPU touched that pcp last.
        owner = pgdat.pcpb.last_route if cs.item[<int>PCPB_ROUTED_FREE] != routed0 else op.cpu
        remote = 0
        if lines and pcp_toucher[owner] != op.cpu:
            remote = lines
            remote_pcp[0] += lines
        if lines:
            pcp_toucher[owner] = op.cpu
        if op.op == OP_DRAIN_ALL or cs.item[<int>SLOWPATH_DRAIN] != drains0:
            for c in range(pgdat.nr_cpus):
                if c != op.cpu:
                    pcp_toucher[c] = op.cpu
        clock[cpu] = vt_price(cost, lk, op.cpu, clock[cpu], cs.item[<int>ZONE_LOCK] - acq0,
                              cs.item[<int>ZONE_LOCK_PAGES] - pages0, lines, remote,
                              smt_factor(cost, op.cpu, nr_streams), &wait[i], &hold[i])
        if pos[cpu] < starts[cpu + 1]:
            e.time = clock[cpu]
            vt_push(heap, &nheap, e)
        if born != NULL and op_allocates(op):
            born[op.slot] = 1
            # Wake the waiters: they resume when this allocation is done.
            for c in range(nwait):
                e.cpu = waiters[c]
                e.time = clock[cpu] if clock[cpu] > clock[waiters[c]] else clock[waiters[c]]
                clock[e.cpu] = e.time
                vt_push(heap, &nheap, e)
            nwait = 0
    if pgdat.trace != NULL:
        pgdat.trace.op = -1


cdef tuple smp_run_virtual(pglist_data *pgdat, ops, const int64_t[::1] starts, int64_t[::1] slots,
                           const double[::1] cost, bint shared_slots):
    """Run per-CPU op streams, validated by the caller, in virtual-time order;
    stream k is ops[starts[k]:starts[k + 1]]. Returns (clock per stream, wait
    and hold per op (-1: no zone->lock), results, remote zone lines, remote
    pcp lines).

    With shared_slots a CPU may free a slot another CPU allocates: the free
    waits, in virtual time, until the allocation has run."""
    cdef int nr = starts.shape[0] - 1
    cdef Py_ssize_t n = len(ops)
    cdef const uint8_t[::1] raw
    cdef vt_lock lk
    clock = np.zeros(nr, dtype=np.float64)
    wait = np.full(n, -1.0)
    hold = np.full(n, -1.0)
    results = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return clock, wait, hold, results, 0, 0
    raw = ops.view(np.uint8).reshape(-1)
    cdef double[::1] clock_v = clock, wait_v = wait, hold_v = hold
    cdef int64_t[::1] res_v = results
    cdef vt_event[::1] heap_v
    heap = np.zeros(nr, dtype=[("time", "f8"), ("cpu", "i4"), ("_pad", "i4")])
    pos = np.zeros(nr, dtype=np.int64)
    toucher = np.arange(pgdat.nr_cpus, dtype=np.int32)     # each pcp starts in its own CPU's cache
    cdef int64_t[::1] pos_v = pos
    cdef int32_t[::1] toucher_v = toucher
    cdef uint8_t[::1] heap_raw = heap.view(np.uint8)
    cdef uint64_t remote_pcp = 0
    born = np.zeros(slots.shape[0] if shared_slots else 1, dtype=np.uint8)
    waiters = np.zeros(nr, dtype=np.intc)
    cdef uint8_t[::1] born_v = born
    cdef int[::1] waiters_v = waiters
    assert heap.dtype.itemsize == sizeof(vt_event)
    lk.free_at = 0.0
    lk.holder = -1
    lk.remote_lines = 0
    with nogil:
        vt_run(pgdat, <const pcpemu_op *>&raw[0], &starts[0], nr, &slots[0], &cost[0], &clock_v[0],
               &wait_v[0], &hold_v[0], &res_v[0], &lk, <vt_event *>&heap_raw[0], &pos_v[0], &toucher_v[0],
               &remote_pcp, &born_v[0] if shared_slots else NULL, &waiters_v[0])
    return clock, wait, hold, results, lk.remote_lines, remote_pcp


cdef extern from *:
    """
    #include <sched.h>
    #include <time.h>
    static inline void smp_gate_arrive_and_wait(int *gate)
    {
        __atomic_fetch_add(&gate[0], 1, __ATOMIC_ACQ_REL);
        while (!__atomic_load_n(&gate[1], __ATOMIC_ACQUIRE))
            pcpemu_cpu_relax();
    }
    static inline void smp_gate_open_c(int *gate)
    {
        __atomic_store_n(&gate[1], 1, __ATOMIC_RELEASE);
    }
    /* Shared slots on real threads: a free waits until the slot's
     * allocation has run (born); the release store publishes the slot. */
    static inline void smp_wait_born(const uint8_t *born)
    {
        while (!__atomic_load_n(born, __ATOMIC_ACQUIRE))
            sched_yield();      /* the allocating thread may need this CPU */
    }
    static inline void smp_set_born(uint8_t *born)
    {
        __atomic_store_n(born, 1, __ATOMIC_RELEASE);
    }
    static inline double smp_monotonic(void)
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    """
    void smp_gate_arrive_and_wait(int *gate) nogil
    void smp_gate_open_c(int *gate) nogil
    void smp_wait_born(const uint8_t *born) nogil
    void smp_set_born(uint8_t *born) nogil
    double smp_monotonic() nogil


cdef void run_ops_shared(pglist_data *pgdat, const pcpemu_op *ops, Py_ssize_t n, int64_t *slots,
                         int64_t *results, uint8_t *born) noexcept nogil:
    # run_ops for streams that free each other's slots: every free waits for
    # its allocation, on this thread or another.
    cdef Py_ssize_t i
    cdef alloc_context ac
    ac.zonelist = NULL
    ac.op_gfp = 0
    for i in range(n):
        if ops[i].op == OP_FREE:
            smp_wait_born(&born[ops[i].slot])
        results[i] = run_op(pgdat, &ops[i], slots, &ac)
        if op_allocates(&ops[i]):
            smp_set_born(&born[ops[i].slot])


cdef double smp_run_thread(pglist_data *pgdat, ops, int64_t[::1] slots, int64_t[::1] results, int[::1] gate,
                           uint8_t *born_p):
    """Run one thread's stream, validated by the caller, without the GIL.

    The thread counts itself in gate[0] and spins until gate[1] is set, so all
    threads start together; returns the CLOCK_MONOTONIC time it finished.
    With born (one byte per slot, shared by the threads) the streams may free
    each other's slots: a free waits until its allocation has run."""
    cdef const uint8_t[::1] raw
    cdef Py_ssize_t n = len(ops)
    cdef double end
    raw = ops.view(np.uint8).reshape(-1)
    with nogil:
        smp_gate_arrive_and_wait(&gate[0])
        if n and born_p != NULL:
            run_ops_shared(pgdat, <const pcpemu_op *>&raw[0], n, &slots[0], &results[0], born_p)
        elif n:
            run_ops(pgdat, <const pcpemu_op *>&raw[0], n, &slots[0], &results[0])
        end = smp_monotonic()
    return end


def smp_gate_open(int[::1] gate):
    """Start the threads waiting at the gate; returns the CLOCK_MONOTONIC start time."""
    smp_gate_open_c(&gate[0])
    return smp_monotonic()
